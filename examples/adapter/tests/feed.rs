//! The adapter against moto's SQS: a FIFO change feed and a standard acks queue per test,
//! changes put as the outbox puts them (`MessageGroupId` = `Change::group_id`,
//! `MessageDeduplicationId` = the change id), acks read back from the acks queue and checked
//! against `Ack::parse` and the published JSON Schema.

use b24_example_adapter::config::sqs_client;
use b24_example_adapter::{Ack, AckSink, Adapter, Batch, Channel, DeliveryError, JsonlChannel};
use b24_state::changes::{
    Change, ChangeType, ChatRef, DialogChange, ImIds, MessageChange, PortalChange, UserRef, SCHEMA,
};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

const MEMBER: &str = "a1b2c3";

/// A change of `t` about `subject` (its id: 64 hex digits, distinct per type and subject).
fn change(t: ChangeType, subject: i64) -> Change {
    Change {
        schema: SCHEMA.into(),
        id: format!("{:032x}{:032x}", t as u128, subject),
        change_type: t,
        member_id: MEMBER.into(),
        domain: Some("example.bitrix24.com".into()),
        epoch: 1,
        connector: Some("myconnector".into()),
        connector_as_sent: Some("MyConnector".into()),
        line: Some(107),
        occurred_at: Some(1_700_000_000),
        recorded_at: Some(1_700_000_001),
        message: None,
        dialog: None,
        portal: None,
    }
}

/// An operator message change of Bitrix24 message `im_message` in the external chat `chat`.
fn message(t: ChangeType, chat: &str, im_message: i64, ids: &[&str]) -> Change {
    let mut c = change(t, im_message);
    c.message = Some(MessageChange {
        im: ImIds {
            chat_id: Some(1807),
            message_id: im_message,
        },
        chat: ChatRef {
            id: Some(chat.into()),
        },
        author_user_id: Some(27),
        text: (t != ChangeType::MessageDeleted).then(|| format!("text of {im_message}")),
        text_truncated: false,
        files: Vec::new(),
        files_truncated: false,
        params: Default::default(),
        ids: ids.iter().map(|s| s.to_string()).collect(),
        revision: 0,
        edited_at: None,
        edited_by: None,
    });
    c
}

/// A channel that records what it delivered and fails the first attempt of some messages.
#[derive(Default)]
struct Recorder {
    /// (external chat, Bitrix24 message id, type), in delivery order.
    delivered: Vec<(String, i64, ChangeType)>,
    /// Bitrix24 message ids whose next delivery fails.
    fail_once: HashSet<i64>,
    attempts: usize,
}

impl Channel for Recorder {
    async fn deliver(
        &mut self,
        change: &Change,
        m: &MessageChange,
    ) -> Result<Vec<String>, DeliveryError> {
        self.attempts += 1;
        if self.fail_once.remove(&m.im.message_id) {
            return Err(DeliveryError("the messenger answered 503".into()));
        }
        let chat = m.chat.id.clone().unwrap_or_default();
        self.delivered
            .push((chat, m.im.message_id, change.change_type));
        Ok(vec![format!("ext-{}", m.im.message_id)])
    }
}

/// A client of the shared moto server.
async fn moto() -> aws_sdk_sqs::Client {
    let moto = b24_local::shared_moto_endpoint();
    sqs_client(&format!("{moto}/123456789012/any")).await
}

/// A fresh FIFO queue on the shared moto server (visibility timeout 1 s: retries come fast).
async fn queue(name: &str) -> (aws_sdk_sqs::Client, String) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let sqs = moto().await;
    let name = format!("adapter-{name}-{}.fifo", std::process::id());
    let url = sqs
        .create_queue()
        .queue_name(name)
        .attributes(A::FifoQueue, "true")
        .attributes(A::ContentBasedDeduplication, "false")
        .attributes(A::VisibilityTimeout, "1")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    (sqs, url)
}

/// A fresh acks queue (a standard queue, as the stack's `AcksQueue`).
async fn acks_queue(name: &str) -> String {
    moto()
        .await
        .create_queue()
        .queue_name(format!("adapter-{name}-acks-{}", std::process::id()))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

/// An adapter of the change feed `url`, acking to `acks_url`.
async fn adapter<C: Channel>(url: &str, acks_url: &str, channel: C) -> Adapter<C> {
    let acks = AckSink::new(sqs_client(acks_url).await, acks_url);
    Adapter::new(sqs_client(url).await, url, channel, acks)
}

fn ack_schema() -> jsonschema::Validator {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/state/schema/b24.ack.v1.json"
    );
    let text = std::fs::read_to_string(path).expect("the JSON Schema file");
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).expect("a valid JSON Schema")
}

/// Every ack on the acks queue (received and deleted), in no particular order; each checked
/// against the JSON Schema and `Ack::parse` (what the acks function does with it).
async fn acks_on(url: &str) -> Vec<Ack> {
    let sqs = moto().await;
    let schema = ack_schema();
    let mut acks = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .send()
            .await
            .unwrap();
        if out.messages().is_empty() {
            return acks;
        }
        for m in out.messages() {
            let body = m.body().unwrap_or_default();
            let json: Value = serde_json::from_str(body).expect("an ack is JSON");
            let errors: Vec<String> = schema.iter_errors(&json).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{body}\nis not b24.ack.v1: {errors:?}");
            let ack = Ack::parse(body).expect("the acks function accepts it");
            ack.validate().unwrap();
            acks.push(ack);
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .unwrap();
        }
    }
}

/// (im.message_id, external ids, external chat) of each ack, sorted.
fn ack_ids(acks: &[Ack]) -> Vec<(i64, Vec<String>, String)> {
    let mut ids: Vec<_> = acks
        .iter()
        .map(|a| (a.im.message_id, a.message_ids.clone(), a.chat_id.clone()))
        .collect();
    ids.sort();
    ids
}

fn ext(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

async fn put_raw(sqs: &aws_sdk_sqs::Client, url: &str, body: &str, group: &str, dedup: &str) {
    sqs.send_message()
        .queue_url(url)
        .message_body(body)
        .message_group_id(group)
        .message_deduplication_id(dedup)
        .send()
        .await
        .unwrap();
}

/// Puts `c` as the outbox does.
async fn put(sqs: &aws_sdk_sqs::Client, url: &str, c: &Change) {
    put_raw(sqs, url, &c.to_json_string(), &c.group_id(), &c.id).await;
}

/// Runs the adapter until the queue is idle for 2 s; the batches summed.
async fn drain<C: Channel>(adapter: &mut Adapter<C>) -> Batch {
    let mut sum = Batch::default();
    adapter
        .run(Some(Duration::from_secs(2)), |b| {
            sum.received += b.received;
            sum.delivered.extend(b.delivered.iter().cloned());
            sum.handled += b.handled;
            sum.duplicates += b.duplicates;
            sum.invalid += b.invalid;
            sum.failed += b.failed;
            sum.held_back += b.held_back;
            sum.acks.extend(b.acks.iter().cloned());
            sum.acks_resent += b.acks_resent;
            sum.acks_failed += b.acks_failed;
        })
        .await
        .unwrap();
    sum
}

/// The bodies still on the queue (received, not deleted).
async fn left_on(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(3)
        .send()
        .await
        .unwrap();
    out.messages()
        .iter()
        .map(|m| m.body().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn a_change_published_again_after_the_fifo_window_is_delivered_and_acked_once() {
    let (sqs, url) = queue("dedup").await;
    let acks_url = acks_queue("dedup").await;
    let first = message(ChangeType::MessageCreated, "chat-a", 501, &[]);
    let second = message(ChangeType::MessageCreated, "chat-a", 502, &[]);
    put(&sqs, &url, &first).await;
    // Published again at once under another dedup id: SQS keeps it, in the same batch.
    let copy = format!("{}-copy", first.id);
    put_raw(
        &sqs,
        &url,
        &first.to_json_string(),
        &first.group_id(),
        &copy,
    )
    .await;
    put(&sqs, &url, &second).await;
    // The same dedup id again within the window: SQS itself drops it.
    put(&sqs, &url, &first).await;
    let mut adapter = adapter(&url, &acks_url, Recorder::default()).await;
    let sum = drain(&mut adapter).await;
    assert_eq!(sum.delivered, [first.id.as_str(), second.id.as_str()]);
    assert_eq!((sum.received, sum.duplicates), (3, 1));
    assert_eq!(sum.acks.len(), 2, "{:?}", sum.acks);

    // Published again after SQS's 5 minutes: a new dedup id, so SQS keeps it.
    let again = first.to_json_string();
    for later in ["later", "later2"] {
        let dedup = format!("{}-{later}", first.id);
        put_raw(&sqs, &url, &again, &first.group_id(), &dedup).await;
    }
    let sum = drain(&mut adapter).await;
    assert_eq!((sum.received, sum.duplicates), (2, 2));
    assert!(sum.delivered.is_empty() && sum.acks.is_empty());
    let ids: Vec<i64> = adapter.channel().delivered.iter().map(|d| d.1).collect();
    assert_eq!(ids, [501, 502], "each change reached the channel once");
    assert_eq!(
        ack_ids(&acks_on(&acks_url).await),
        [
            (501, ext(&["ext-501"]), "chat-a".to_string()),
            (502, ext(&["ext-502"]), "chat-a".to_string()),
        ],
        "one ack per message, none for the copies"
    );
    assert!(
        left_on(&sqs, &url).await.is_empty(),
        "duplicates are deleted"
    );
}

#[tokio::test]
async fn each_chat_keeps_its_order() {
    let (sqs, url) = queue("order").await;
    let acks_url = acks_queue("order").await;
    use ChangeType::{MessageCreated as C, MessageDeleted as D, MessageEdited as E};
    let plan = [
        (C, "chat-a", 1),
        (C, "chat-b", 11),
        (E, "chat-a", 1),
        (C, "chat-a", 2),
        (E, "chat-b", 11),
        (D, "chat-a", 1),
        (C, "chat-b", 12),
        (D, "chat-b", 11),
        (E, "chat-a", 2),
        (C, "chat-a", 3),
        (C, "chat-b", 13),
        (D, "chat-a", 3),
    ];
    for (t, chat, id) in plan {
        put(&sqs, &url, &message(t, chat, id, &["ext"])).await;
    }
    let mut adapter = adapter(&url, &acks_url, Recorder::default()).await;
    let sum = drain(&mut adapter).await;
    assert_eq!(sum.delivered.len(), plan.len());
    for chat in ["chat-a", "chat-b"] {
        let want: Vec<_> = plan
            .iter()
            .filter(|p| p.1 == chat)
            .map(|p| (p.2, p.0))
            .collect();
        let got: Vec<_> = adapter
            .channel()
            .delivered
            .iter()
            .filter(|d| d.0 == chat)
            .map(|d| (d.1, d.2))
            .collect();
        assert_eq!(got, want, "{chat}");
    }
    let acked = plan.iter().filter(|p| p.0 != D).count();
    assert_eq!(acks_on(&acks_url).await.len(), acked, "created and edited");
}

#[tokio::test]
async fn a_failed_delivery_stays_on_the_queue_and_holds_back_its_chat() {
    let (sqs, url) = queue("failure").await;
    let acks_url = acks_queue("failure").await;
    let a1 = message(ChangeType::MessageCreated, "chat-a", 1, &[]);
    let a2 = message(ChangeType::MessageCreated, "chat-a", 2, &[]);
    let b1 = message(ChangeType::MessageCreated, "chat-b", 11, &[]);
    for c in [&a1, &a2, &b1] {
        put(&sqs, &url, c).await;
    }
    let recorder = Recorder {
        fail_once: HashSet::from([1]),
        ..Recorder::default()
    };
    let mut adapter = adapter(&url, &acks_url, recorder).await;
    let batch = adapter.poll(1).await.unwrap();
    assert_eq!(batch.received, 3, "one batch has both chats");
    assert_eq!((batch.failed, batch.held_back), (1, 1));
    assert_eq!(
        batch.delivered,
        [b1.id.as_str()],
        "chat-b is not held up by chat-a"
    );
    assert_eq!(adapter.channel().attempts, 2, "a2 was not tried before a1");
    assert_eq!(
        ack_ids(&batch.acks),
        [(11, ext(&["ext-11"]), "chat-b".into())]
    );

    // a1 comes back after the visibility timeout, then a2.
    let sum = drain(&mut adapter).await;
    assert_eq!(sum.delivered, [a1.id.as_str(), a2.id.as_str()]);
    let order: Vec<i64> = adapter.channel().delivered.iter().map(|d| d.1).collect();
    assert_eq!(order, [11, 1, 2]);
    let acked: Vec<i64> = ack_ids(&acks_on(&acks_url).await)
        .into_iter()
        .map(|a| a.0)
        .collect();
    assert_eq!(acked, [1, 2, 11], "no ack for the failed attempt");
    assert!(left_on(&sqs, &url).await.is_empty());
}

#[tokio::test]
async fn an_acks_queue_failure_leaves_the_change_and_the_retry_acks_without_delivering_again() {
    let (sqs, url) = queue("ackfail").await;
    // The acks queue's URL, but the queue is gone: SendMessageBatch fails (QueueDoesNotExist).
    let acks_url = acks_queue("ackfail").await;
    sqs.delete_queue()
        .queue_url(&acks_url)
        .send()
        .await
        .unwrap();
    let created = message(ChangeType::MessageCreated, "chat-a", 601, &[]);
    let edited = message(ChangeType::MessageEdited, "chat-b", 701, &["ext-701"]);
    let deleted = message(ChangeType::MessageDeleted, "chat-c", 801, &["ext-801"]);
    for c in [&created, &edited, &deleted] {
        put(&sqs, &url, c).await;
    }
    let mut adapter = adapter(&url, &acks_url, Recorder::default()).await;
    let batch = adapter
        .poll(1)
        .await
        .expect("an acks queue error does not end the run");
    assert_eq!(batch.received, 3);
    assert_eq!(batch.delivered.len(), 3, "the channel took all three");
    assert_eq!((batch.acks.len(), batch.acks_failed), (0, 2));

    // The acks queue is back; the two changes come back after the visibility timeout (1 s).
    let back = moto()
        .await
        .create_queue()
        .queue_name(acks_url.rsplit('/').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(back.queue_url.as_deref(), Some(acks_url.as_str()));
    let sum = drain(&mut adapter).await;
    assert!(sum.delivered.is_empty(), "not delivered again: {sum:?}");
    assert_eq!((sum.received, sum.acks_resent), (2, 2), "{sum:?}");
    assert_eq!((sum.acks.len(), sum.acks_failed), (2, 0));
    let delivered: Vec<i64> = adapter.channel().delivered.iter().map(|d| d.1).collect();
    assert_eq!(
        delivered,
        [601, 701, 801],
        "each message reached the channel once"
    );

    let on_queue = acks_on(&acks_url).await;
    assert_eq!(
        ack_ids(&on_queue),
        [
            (601, ext(&["ext-601"]), "chat-a".to_string()),
            (701, ext(&["ext-701"]), "chat-b".to_string()),
        ]
    );
    let mut sent = sum.acks.clone();
    sent.sort_by_key(|a| a.im.message_id);
    let mut got = on_queue;
    got.sort_by_key(|a| a.im.message_id);
    assert_eq!(got, sent, "the acks built at delivery (same delivered_at)");
    assert!(left_on(&sqs, &url).await.is_empty(), "acked, then deleted");

    // Once acked, a later copy is only a duplicate.
    let dedup = format!("{}-later", created.id);
    put_raw(
        &sqs,
        &url,
        &created.to_json_string(),
        &created.group_id(),
        &dedup,
    )
    .await;
    let sum = drain(&mut adapter).await;
    assert_eq!((sum.duplicates, sum.acks.len(), sum.acks_resent), (1, 0, 0));
    assert!(acks_on(&acks_url).await.is_empty());
}

#[tokio::test]
async fn an_invalid_body_is_left_on_the_queue_and_other_groups_go_on() {
    let (sqs, url) = queue("invalid").await;
    let acks_url = acks_queue("invalid").await;
    put_raw(&sqs, &url, "not json", "a1b2c3:chat:bad", "bad-1").await;
    let valid = message(ChangeType::MessageCreated, "chat-b", 11, &[]);
    put(&sqs, &url, &valid).await;
    let not_a_change = json!({"schema": SCHEMA, "id": "x"}).to_string();
    put_raw(&sqs, &url, &not_a_change, "a1b2c3:chat:other", "bad-2").await;
    let mut other = message(ChangeType::MessageCreated, "chat-c", 21, &[]);
    other.schema = "b24.change.v2".into();
    put(&sqs, &url, &other).await;

    let mut adapter = adapter(&url, &acks_url, Recorder::default()).await;
    let batch = adapter.poll(1).await.unwrap();
    assert_eq!((batch.received, batch.invalid), (4, 3));
    assert_eq!(batch.delivered, [valid.id.as_str()]);
    // They come back (and are left again); a bounded run still ends: they are not progress.
    let sum = tokio::time::timeout(Duration::from_secs(30), drain(&mut adapter))
        .await
        .expect("the run ends although invalid bodies keep coming back");
    assert!(sum.invalid >= 3 && sum.delivered.is_empty(), "{sum:?}");
    let mut left = left_on(&sqs, &url).await;
    left.sort();
    let mut want = vec!["not json".to_string(), not_a_change, other.to_json_string()];
    want.sort();
    assert_eq!(left, want, "invalid bodies stay for the dead-letter queue");
    assert_eq!(
        acks_on(&acks_url).await.len(),
        1,
        "only the valid one is acked"
    );
}

#[tokio::test]
async fn only_operator_messages_reach_the_channel_and_new_and_edited_ones_are_acked() {
    let (sqs, url) = queue("types").await;
    let acks_url = acks_queue("types").await;
    let created = message(ChangeType::MessageCreated, "channel-123", 501, &[]);
    let edited = message(ChangeType::MessageEdited, "channel-123", 501, &["ext-501"]);
    // Delivered, but without Bitrix24's chat id an ack cannot be built: none (a log line).
    let mut no_chat = message(ChangeType::MessageCreated, "channel-123", 502, &[]);
    no_chat.message.as_mut().unwrap().im.chat_id = None;
    let mut dialog = change(ChangeType::DialogStarted, 900);
    dialog.dialog = Some(DialogChange {
        session_id: 900,
        parent_id: None,
        chat: ChatRef {
            id: Some("channel-123".into()),
        },
        user: UserRef {
            id: Some("u-1".into()),
        },
        close_term: None,
        status: "open".into(),
        started_at: Some(1_700_000_000),
        finished_at: None,
    });
    let mut portal = change(ChangeType::PortalUninstalled, 0);
    portal.portal = Some(PortalChange {
        installed: false,
        version: None,
        previous_version: None,
        app_status: None,
        client_endpoint: None,
        language_id: None,
        clean: Some(false),
    });
    let others = [
        dialog,
        change(ChangeType::ConnectorDisconnected, 1),
        change(ChangeType::LineDeleted, 107),
        portal,
    ];
    for c in [&created, &edited, &no_chat].into_iter().chain(&others) {
        put(&sqs, &url, c).await;
    }
    let mut adapter = adapter(&url, &acks_url, Recorder::default()).await;
    let sum = drain(&mut adapter).await;
    assert_eq!(
        sum.delivered,
        [created.id.as_str(), edited.id.as_str(), no_chat.id.as_str()]
    );
    assert_eq!(sum.handled, others.len());
    let delivered = &adapter.channel().delivered;
    assert_eq!(
        delivered.iter().map(|d| d.2).collect::<Vec<_>>(),
        [
            ChangeType::MessageCreated,
            ChangeType::MessageEdited,
            ChangeType::MessageCreated
        ]
    );

    // Two acks, for the new message and its edit, as the acks function will read them.
    let [new, edit] = &sum.acks[..] else {
        panic!("two acks expected: {:?}", sum.acks)
    };
    for ack in [new, edit] {
        assert_eq!(ack.schema, "b24.ack.v1");
        assert_eq!(
            (ack.member_id.as_str(), ack.connector.as_str(), ack.line),
            (MEMBER, "MyConnector", 107),
            "the connector as Bitrix24 sent it"
        );
        assert_eq!((ack.im.chat_id, ack.im.message_id), (1807, 501));
        assert_eq!(ack.message_ids, ["ext-501"], "the channel's ids");
        assert_eq!(ack.chat_id, "channel-123");
        assert!(ack.delivered_at > 1_700_000_000);
    }
    let mut on_queue = acks_on(&acks_url).await;
    on_queue.sort_by_key(|a| a.delivered_at);
    let mut sent = sum.acks.clone();
    sent.sort_by_key(|a| a.delivered_at);
    assert_eq!(on_queue.len(), 2);
    assert!(on_queue.iter().all(|a| sent.contains(a)), "{on_queue:?}");
    assert!(
        left_on(&sqs, &url).await.is_empty(),
        "every change was deleted, the one without an ack too"
    );
}

#[tokio::test]
async fn the_jsonl_channel_writes_one_line_per_delivered_message() {
    let (sqs, url) = queue("jsonl").await;
    let acks_url = acks_queue("jsonl").await;
    put(
        &sqs,
        &url,
        &message(ChangeType::MessageCreated, "chat-a", 7, &[]),
    )
    .await;
    put(&sqs, &url, &change(ChangeType::LineDeleted, 107)).await;
    put(
        &sqs,
        &url,
        &message(ChangeType::MessageDeleted, "chat-a", 7, &["jsonl-7"]),
    )
    .await;
    let mut adapter = adapter(&url, &acks_url, JsonlChannel::new(Vec::new())).await;
    let sum = drain(&mut adapter).await;
    assert_eq!(sum.acks.len(), 1);
    assert_eq!(sum.acks[0].message_ids, ["jsonl-7"]);
    assert_eq!(
        ack_ids(&acks_on(&acks_url).await),
        [(7, ext(&["jsonl-7"]), "chat-a".to_string())]
    );
    let text = String::from_utf8(adapter.channel().get_ref().clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["type"], "message.created");
    assert_eq!(lines[0]["text"], "text of 7");
    assert_eq!(lines[1]["type"], "message.deleted");
    assert_eq!(lines[1]["ids"], json!(["jsonl-7"]));
    assert_eq!(lines[1]["im"], json!({"chat_id": 1807, "message_id": 7}));
}

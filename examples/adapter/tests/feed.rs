//! The adapter against moto's SQS: a FIFO queue per test, changes put as the outbox puts them
//! (`MessageGroupId` = `Change::group_id`, `MessageDeduplicationId` = the change id).

use b24_example_adapter::config::sqs_client;
use b24_example_adapter::{Adapter, Batch, Channel, DeliveryError, JsonlChannel};
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

/// A fresh FIFO queue on the shared moto server (visibility timeout 1 s: retries come fast).
async fn queue(name: &str) -> (aws_sdk_sqs::Client, String) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let moto = b24_local::shared_moto_endpoint();
    let sqs = sqs_client(&format!("{moto}/123456789012/any")).await;
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
async fn a_change_published_again_after_the_fifo_window_is_delivered_once() {
    let (sqs, url) = queue("dedup").await;
    let first = message(ChangeType::MessageCreated, "chat-a", 501, &[]);
    let second = message(ChangeType::MessageCreated, "chat-a", 502, &[]);
    put(&sqs, &url, &first).await;
    put(&sqs, &url, &second).await;
    // The same dedup id again within the window: SQS itself drops it.
    put(&sqs, &url, &first).await;
    let mut adapter = Adapter::new(sqs_client(&url).await, &url, Recorder::default());
    let sum = drain(&mut adapter).await;
    assert_eq!(sum.delivered, [first.id.as_str(), second.id.as_str()]);

    // Published again after SQS's 5 minutes: a new dedup id, so SQS keeps it.
    let again = first.to_json_string();
    put_raw(
        &sqs,
        &url,
        &again,
        &first.group_id(),
        &format!("{}-later", first.id),
    )
    .await;
    put_raw(
        &sqs,
        &url,
        &again,
        &first.group_id(),
        &format!("{}-later2", first.id),
    )
    .await;
    let sum = drain(&mut adapter).await;
    assert_eq!((sum.received, sum.duplicates), (2, 2));
    assert!(sum.delivered.is_empty() && sum.acks.is_empty());
    let ids: Vec<i64> = adapter.channel().delivered.iter().map(|d| d.1).collect();
    assert_eq!(ids, [501, 502], "each change reached the channel once");
    assert!(
        left_on(&sqs, &url).await.is_empty(),
        "duplicates are deleted"
    );
}

#[tokio::test]
async fn each_chat_keeps_its_order() {
    let (sqs, url) = queue("order").await;
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
    let mut adapter = Adapter::new(sqs_client(&url).await, &url, Recorder::default());
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
}

#[tokio::test]
async fn a_failed_delivery_stays_on_the_queue_and_holds_back_its_chat() {
    let (sqs, url) = queue("failure").await;
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
    let mut adapter = Adapter::new(sqs_client(&url).await, &url, recorder);
    let batch = adapter.poll(1).await.unwrap();
    assert_eq!(batch.received, 3, "one batch has both chats");
    assert_eq!((batch.failed, batch.held_back), (1, 1));
    assert_eq!(
        batch.delivered,
        [b1.id.as_str()],
        "chat-b is not held up by chat-a"
    );
    assert_eq!(adapter.channel().attempts, 2, "a2 was not tried before a1");

    // a1 comes back after the visibility timeout, then a2.
    let sum = drain(&mut adapter).await;
    assert_eq!(sum.delivered, [a1.id.as_str(), a2.id.as_str()]);
    let order: Vec<i64> = adapter.channel().delivered.iter().map(|d| d.1).collect();
    assert_eq!(order, [11, 1, 2]);
    assert!(left_on(&sqs, &url).await.is_empty());
}

#[tokio::test]
async fn an_invalid_body_is_left_on_the_queue_and_other_groups_go_on() {
    let (sqs, url) = queue("invalid").await;
    put_raw(&sqs, &url, "not json", "a1b2c3:chat:bad", "bad-1").await;
    let valid = message(ChangeType::MessageCreated, "chat-b", 11, &[]);
    put(&sqs, &url, &valid).await;
    let not_a_change = json!({"schema": SCHEMA, "id": "x"}).to_string();
    put_raw(&sqs, &url, &not_a_change, "a1b2c3:chat:other", "bad-2").await;
    let mut other = message(ChangeType::MessageCreated, "chat-c", 21, &[]);
    other.schema = "b24.change.v2".into();
    put(&sqs, &url, &other).await;

    let mut adapter = Adapter::new(sqs_client(&url).await, &url, Recorder::default());
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
}

#[tokio::test]
async fn only_operator_messages_reach_the_channel_and_new_ones_are_acked() {
    let (sqs, url) = queue("types").await;
    let created = message(ChangeType::MessageCreated, "channel-123", 501, &[]);
    let edited = message(ChangeType::MessageEdited, "channel-123", 501, &["ext-501"]);
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
    for c in [&created, &edited].into_iter().chain(&others) {
        put(&sqs, &url, c).await;
    }
    let mut adapter = Adapter::new(sqs_client(&url).await, &url, Recorder::default());
    let sum = drain(&mut adapter).await;
    assert_eq!(sum.delivered, [created.id.as_str(), edited.id.as_str()]);
    assert_eq!(sum.handled, others.len());
    let delivered = &adapter.channel().delivered;
    assert_eq!(
        delivered.iter().map(|d| d.2).collect::<Vec<_>>(),
        [ChangeType::MessageCreated, ChangeType::MessageEdited]
    );

    // One ack, for the new message only.
    let [ack] = &sum.acks[..] else {
        panic!("one ack expected: {:?}", sum.acks)
    };
    assert_eq!(
        (ack.member_id.as_str(), ack.connector.as_deref(), ack.line),
        (MEMBER, Some("MyConnector"), Some(107))
    );
    assert_eq!((ack.im.chat_id, ack.im.message_id), (Some(1807), 501));
    assert_eq!(ack.message_ids, ["ext-501"], "the channel's ids");
    assert_eq!(ack.chat_id.as_deref(), Some("channel-123"));
    let params = ack.status_delivery_params();
    let want = json!({
        "CONNECTOR": "MyConnector",
        "LINE": 107,
        "MESSAGES": [{
            "im": {"chat_id": 1807, "message_id": 501},
            "message": {"id": ["ext-501"], "date": ack.delivered_at},
            "chat": {"id": "channel-123"},
        }],
    });
    assert_eq!(params, want);
    assert!(
        left_on(&sqs, &url).await.is_empty(),
        "every change was deleted"
    );
}

#[tokio::test]
async fn the_jsonl_channel_writes_one_line_per_delivered_message() {
    let (sqs, url) = queue("jsonl").await;
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
    let mut adapter = Adapter::new(sqs_client(&url).await, &url, JsonlChannel::new(Vec::new()));
    let sum = drain(&mut adapter).await;
    assert_eq!(sum.acks.len(), 1);
    assert_eq!(sum.acks[0].message_ids, ["jsonl-7"]);
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

//! Delivery acks: the product's `b24.ack.v1` ([`Ack`], JSON Schema
//! `shared/state/schema/b24.ack.v1.json`), built from a delivered change and sent to the stack's
//! acks queue by [`AckSink`].
//!
//! Bitrix24 shows an operator message as not delivered until the connector calls
//! `imconnector.send.status.delivery`. The adapter does not call Bitrix24: it sends one ack per
//! delivered message to the acks queue (`AcksQueueUrl`), and the receiver's `acks` function
//! groups them per portal, connector and line into that REST call (in `batch`es, within the
//! portal's rate limit).
//!
//! Which changes get an ack: [`is_acked`].

use crate::adapter::sdk_error;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use b24_state::changes::{Change, ChangeType, MessageChange};
use std::fmt;

pub use b24_state::acks::{Ack, AckError, AckIm, SCHEMA};

/// Whether a delivered change of type `t` is acked.
///
/// - `message.created` (Bitrix24's `OnImConnectorMessageAdd`): yes — until the ack the operator
///   sees the message as not delivered.
/// - `message.edited` (`OnImConnectorMessageUpdate`): yes. Bitrix24's docs for that event say
///   to call `imconnector.send.status.delivery` after processing it, to mark the message as
///   updated in the external channel, with the message's external ids (the old REST docs: the
///   ids are returned even when they did not change).
/// - `message.deleted` (`OnImConnectorMessageDelete`): no; its docs do not ask for a status.
pub fn is_acked(t: ChangeType) -> bool {
    matches!(t, ChangeType::MessageCreated | ChangeType::MessageEdited)
}

/// Why a delivered change has no ack (it is still deleted from the queue: retrying cannot
/// give it the missing fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoAck {
    /// The change lacks a field the ack needs.
    Missing(&'static str),
    /// The ack would not be a valid `b24.ack.v1` (the acks function would drop it).
    Invalid(AckError),
}

impl fmt::Display for NoAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoAck::Missing(field) => write!(f, "the change has no {field}"),
            NoAck::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for NoAck {}

/// The ack of the operator message `message` of `change`, delivered at `delivered_at` (Unix
/// seconds) with the channel's ids `external_ids`.
///
/// The ids come from the change: `member_id`, `connector_as_sent` (the connector exactly as
/// Bitrix24 sent it: the REST call's `CONNECTOR`), `line`, `message.im`, and `message.chat.id`
/// (the external chat). A change without one of them, or an ack that would not validate (e.g.
/// the channel returned no id, or more than 50), gives [`NoAck`].
pub fn delivery_ack(
    change: &Change,
    message: &MessageChange,
    external_ids: Vec<String>,
    delivered_at: i64,
) -> Result<Ack, NoAck> {
    let connector = change
        .connector_as_sent
        .clone()
        .ok_or(NoAck::Missing("connector_as_sent"))?;
    let line = change.line.ok_or(NoAck::Missing("line"))?;
    let chat_id = message
        .im
        .chat_id
        .ok_or(NoAck::Missing("message.im.chat_id"))?;
    let external_chat = message
        .chat
        .id
        .clone()
        .ok_or(NoAck::Missing("message.chat.id"))?;
    let ack = Ack {
        schema: SCHEMA.into(),
        member_id: change.member_id.clone(),
        connector,
        line,
        im: AckIm {
            chat_id,
            message_id: message.im.message_id,
        },
        message_ids: external_ids,
        chat_id: external_chat,
        delivered_at,
    };
    ack.validate().map_err(NoAck::Invalid)?;
    Ok(ack)
}

/// Most messages in one `SendMessageBatch`.
const SQS_BATCH: usize = 10;

/// Sends acks to the stack's acks queue (an SQS standard queue): one SQS message per ack, its
/// body [`Ack::to_json_string`].
pub struct AckSink {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl AckSink {
    /// A sink sending to `queue_url` with `sqs`.
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        AckSink {
            sqs,
            queue_url: queue_url.into(),
        }
    }

    /// The queue URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends `acks` (`SendMessageBatch`, 10 at a time). The result has one entry per ack, in
    /// order: `Ok` when SQS took it, else why not (the caller keeps its change on the change
    /// feed, to send the ack again when the change comes back).
    pub async fn send(&self, acks: &[Ack]) -> Vec<Result<(), String>> {
        let mut results = Vec::with_capacity(acks.len());
        for chunk in acks.chunks(SQS_BATCH) {
            results.extend(self.send_batch(chunk).await);
        }
        results
    }

    async fn send_batch(&self, acks: &[Ack]) -> Vec<Result<(), String>> {
        let entries = acks.iter().enumerate().map(|(i, ack)| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(ack.to_json_string())
                .build()
        });
        let entries = match entries.collect::<Result<Vec<_>, _>>() {
            Ok(e) => e,
            Err(e) => return vec![Err(e.to_string()); acks.len()],
        };
        let out = match self
            .sqs
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let reason = format!("sending acks to {}: {}", self.queue_url, sdk_error(&e));
                return vec![Err(reason); acks.len()];
            }
        };
        entry_results(acks.len(), &out)
    }
}

/// Per entry `0..n` of a `SendMessageBatch`: sent, or why not. An entry SQS names in neither
/// list was not sent; a failure under an id that was not sent fails them all.
fn entry_results(
    n: usize,
    out: &aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput,
) -> Vec<Result<(), String>> {
    let mut results = vec![Err("the acks queue did not answer for this ack".to_string()); n];
    for s in out.successful() {
        if let Some(r) = s
            .id()
            .parse::<usize>()
            .ok()
            .and_then(|i| results.get_mut(i))
        {
            *r = Ok(());
        }
    }
    for f in out.failed() {
        let reason = format!(
            "the acks queue refused an ack: {} {}",
            f.code(),
            f.message().unwrap_or_default()
        );
        match f
            .id()
            .parse::<usize>()
            .ok()
            .and_then(|i| results.get_mut(i))
        {
            Some(r) => *r = Err(reason),
            None => return vec![Err(reason); n],
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use b24_state::changes::{ChatRef, ImIds};

    fn created() -> Change {
        let message = MessageChange {
            im: ImIds {
                chat_id: Some(1807),
                message_id: 501,
            },
            chat: ChatRef {
                id: Some("channel-123".into()),
            },
            author_user_id: Some(27),
            text: Some("hello".into()),
            text_truncated: false,
            files: Vec::new(),
            files_truncated: false,
            params: Default::default(),
            ids: Vec::new(),
            revision: 0,
            edited_at: None,
            edited_by: None,
        };
        Change {
            schema: b24_state::changes::SCHEMA.into(),
            id: "ab".repeat(32),
            change_type: ChangeType::MessageCreated,
            member_id: "a1b2c3".into(),
            domain: None,
            epoch: 1,
            connector: Some("myconnector".into()),
            connector_as_sent: Some("MyConnector".into()),
            line: Some(107),
            occurred_at: Some(1_700_000_000),
            recorded_at: Some(1_700_000_001),
            message: Some(message),
            dialog: None,
            portal: None,
        }
    }

    fn ack_of(c: &Change, ids: &[&str]) -> Result<Ack, NoAck> {
        let ids = ids.iter().map(|s| s.to_string()).collect();
        delivery_ack(c, c.message.as_ref().unwrap(), ids, 1_773_759_200)
    }

    #[test]
    fn the_ack_takes_its_ids_from_the_change_and_the_channel() {
        let ack = ack_of(&created(), &["ext-501"]).unwrap();
        let want = Ack {
            schema: "b24.ack.v1".into(),
            member_id: "a1b2c3".into(),
            connector: "MyConnector".into(),
            line: 107,
            im: AckIm {
                chat_id: 1807,
                message_id: 501,
            },
            message_ids: vec!["ext-501".into()],
            chat_id: "channel-123".into(),
            delivered_at: 1_773_759_200,
        };
        assert_eq!(ack, want);
        assert_eq!(Ack::parse(&ack.to_json_string()), Ok(want));
    }

    #[test]
    fn a_change_without_what_an_ack_needs_has_none() {
        let without = |f: fn(&mut Change)| {
            let mut c = created();
            f(&mut c);
            ack_of(&c, &["ext-501"]).unwrap_err()
        };
        assert_eq!(
            without(|c| c.connector_as_sent = None),
            NoAck::Missing("connector_as_sent")
        );
        assert_eq!(without(|c| c.line = None), NoAck::Missing("line"));
        assert_eq!(
            without(|c| c.message.as_mut().unwrap().im.chat_id = None),
            NoAck::Missing("message.im.chat_id")
        );
        assert_eq!(
            without(|c| c.message.as_mut().unwrap().chat.id = None),
            NoAck::Missing("message.chat.id")
        );
        // What the acks function would drop is not sent.
        let invalid = |ids: &[&str]| match ack_of(&created(), ids) {
            Err(NoAck::Invalid(AckError::Invalid { field, .. })) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(invalid(&[]), "message_ids");
        assert_eq!(invalid(&["x"; 51]), "message_ids");
        assert_eq!(invalid(&["a\nb"]), "message_ids");
        let mut c = created();
        c.connector_as_sent = Some("My Connector".into());
        assert!(matches!(
            ack_of(&c, &["x"]),
            Err(NoAck::Invalid(AckError::Invalid {
                field: "connector",
                ..
            }))
        ));
        assert_eq!(
            without(|c| c.line = None).to_string(),
            "the change has no line"
        );
    }

    #[test]
    fn a_batch_answer_is_read_per_entry() {
        use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
        use aws_sdk_sqs::types::{BatchResultErrorEntry, SendMessageBatchResultEntry};
        let sent = |id: &str| {
            SendMessageBatchResultEntry::builder()
                .id(id)
                .message_id("m")
                .md5_of_message_body("x")
                .build()
                .unwrap()
        };
        let failed = |id: &str| {
            BatchResultErrorEntry::builder()
                .id(id)
                .sender_fault(false)
                .code("InternalError")
                .build()
                .unwrap()
        };
        let out = SendMessageBatchOutput::builder()
            .successful(sent("0"))
            .successful(sent("2"))
            .failed(failed("1"))
            .build()
            .unwrap();
        let results = entry_results(4, &out);
        assert_eq!(results[0], Ok(()));
        assert!(results[1].as_ref().unwrap_err().contains("InternalError"));
        assert_eq!(results[2], Ok(()));
        assert!(results[3].is_err(), "not answered: not sent");
        let odd = SendMessageBatchOutput::builder()
            .successful(sent("0"))
            .failed(failed("x"))
            .build()
            .unwrap();
        assert!(entry_results(1, &odd).iter().all(Result::is_err));
    }

    #[test]
    fn new_and_edited_messages_are_acked_deleted_ones_not() {
        assert!(is_acked(ChangeType::MessageCreated));
        assert!(is_acked(ChangeType::MessageEdited));
        assert!(!is_acked(ChangeType::MessageDeleted));
        assert!(!is_acked(ChangeType::DialogStarted));
    }
}

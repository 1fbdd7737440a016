//! The delivery ack of an operator message: what Bitrix24's `imconnector.send.status.delivery`
//! needs to mark the message delivered (until then the operator sees it as not delivered).
//!
//! **Next stage, not done here:** the adapter sends each [`Ack`] as JSON to the product's SQS
//! queue `acks`, and the product calls `imconnector.send.status.delivery` on the portal with
//! [`Ack::status_delivery_params`]. This example only builds the ack: the loop returns it in
//! [`Batch::acks`](crate::adapter::Batch::acks) and the binary prints it to stderr.

use b24_state::changes::{Change, ImIds, MessageChange};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One delivered operator message, for `imconnector.send.status.delivery`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The portal.
    pub member_id: String,
    /// Connector ID exactly as Bitrix24 sent it (the method's `CONNECTOR`).
    pub connector: Option<String>,
    /// Open line ID (`LINE`).
    pub line: Option<i64>,
    /// The message inside Bitrix24, passed back as received (`im`).
    pub im: ImIds,
    /// The message's IDs in the external system (`message.id`).
    pub message_ids: Vec<String>,
    /// The chat in the external system (`chat.id`).
    pub chat_id: Option<String>,
    /// When the channel took the message (Unix seconds; `message.date`).
    pub delivered_at: i64,
}

/// The ack of the operator message `message` of the `message.created` change `change`,
/// delivered at `delivered_at` with the channel's IDs `external_ids`.
///
/// This is where `imconnector.send.status.delivery` will go: the next stage sends the ack to
/// the `acks` queue; for now it is only returned.
pub fn delivery_ack(
    change: &Change,
    message: &MessageChange,
    external_ids: Vec<String>,
    delivered_at: i64,
) -> Ack {
    Ack {
        member_id: change.member_id.clone(),
        connector: change
            .connector_as_sent
            .clone()
            .or_else(|| change.connector.clone()),
        line: change.line,
        im: message.im.clone(),
        message_ids: external_ids,
        chat_id: message.chat.id.clone(),
        delivered_at,
    }
}

impl Ack {
    /// The parameters of `imconnector.send.status.delivery` for this one message:
    /// `CONNECTOR`, `LINE`, `MESSAGES[] = {im: {chat_id, message_id}, message: {id: [...],
    /// date}, chat: {id}}`.
    pub fn status_delivery_params(&self) -> Value {
        json!({
            "CONNECTOR": self.connector,
            "LINE": self.line,
            "MESSAGES": [{
                "im": self.im,
                "message": { "id": self.message_ids, "date": self.delivered_at },
                "chat": { "id": self.chat_id },
            }],
        })
    }
}

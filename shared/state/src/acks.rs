//! The delivery ack contract, `b24.ack.v1`: what a vendor's adapter sends to the `acks` queue
//! once it delivered a message to the customer's channel. The `acks` function groups them per
//! portal, connector and line into Bitrix24's `imconnector.send.status.delivery`.
//!
//! JSON Schema: `shared/state/schema/b24.ack.v1.json`. The ids come from the `message.created`
//! (or `message.edited`) change the adapter delivered: `im` and `chat` as in the change,
//! `message_ids` the external ids the adapter's channel gave the message.

use crate::schema::MemberId;
use serde::{Deserialize, Serialize};

/// The `schema` of every ack.
pub const SCHEMA: &str = "b24.ack.v1";

/// Most external message ids in one ack.
pub const MAX_MESSAGE_IDS: usize = 50;
/// Longest external id (message or chat).
pub const MAX_ID_LEN: usize = 255;

/// One delivered message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The portal.
    pub member_id: String,
    /// The connector, as Bitrix24 sent it (the change's `connector_as_sent`).
    pub connector: String,
    /// The open line.
    pub line: i64,
    /// The message inside Bitrix24 (the change's `message.im`).
    pub im: AckIm,
    /// The message's ids in the external channel (at least one).
    pub message_ids: Vec<String>,
    /// The chat in the external channel (the change's `message.chat.id`).
    pub chat_id: String,
    /// When the channel took the message (Unix seconds).
    pub delivered_at: i64,
}

/// `im.chat_id` / `im.message_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckIm {
    /// The open-line chat in Bitrix24.
    pub chat_id: i64,
    /// The message in Bitrix24.
    pub message_id: i64,
}

/// Why an ack is refused (it is dropped, never retried: retrying cannot make it valid).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// Not JSON of the ack's shape.
    #[error("not a b24.ack.v1 document: {0}")]
    Malformed(String),
    /// A field breaks a rule.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule.
        reason: &'static str,
    },
}

impl Ack {
    /// Parses and validates one ack.
    pub fn parse(body: &str) -> Result<Ack, AckError> {
        let ack: Ack = serde_json::from_str(body).map_err(|e| {
            // Only the kind and the position: serde's own message quotes the offending value
            // (an adapter's mistyped field may hold anything, a token included).
            let kind = match e.classify() {
                serde_json::error::Category::Syntax => "not JSON",
                serde_json::error::Category::Eof => "truncated JSON",
                serde_json::error::Category::Data => {
                    "a field missing, unknown or of the wrong type"
                }
                serde_json::error::Category::Io => "unreadable",
            };
            AckError::Malformed(format!("{kind} (line {}, column {})", e.line(), e.column()))
        })?;
        ack.validate()?;
        Ok(ack)
    }

    /// Checks every field (the ack becomes part of a REST call and of a grouping key).
    pub fn validate(&self) -> Result<(), AckError> {
        let bad = |field, reason| Err(AckError::Invalid { field, reason });
        if self.schema != SCHEMA {
            return bad("schema", "must be b24.ack.v1");
        }
        if MemberId::new(&self.member_id).is_err() {
            return bad("member_id", "1-64 characters of [0-9a-z_-]");
        }
        if !b24_events::is_valid_connector_id(&self.connector) {
            return bad("connector", "1-64 characters of [0-9A-Za-z_.-]");
        }
        if self.line <= 0 {
            return bad("line", "a positive integer");
        }
        if self.im.chat_id <= 0 || self.im.message_id <= 0 {
            return bad("im", "chat_id and message_id are positive integers");
        }
        if self.message_ids.is_empty() || self.message_ids.len() > MAX_MESSAGE_IDS {
            return bad("message_ids", "1 to 50 ids");
        }
        let id_ok =
            |s: &str| !s.is_empty() && s.len() <= MAX_ID_LEN && !s.chars().any(char::is_control);
        if !self.message_ids.iter().all(|s| id_ok(s)) {
            return bad("message_ids", "1-255 characters, no control characters");
        }
        if !id_ok(&self.chat_id) {
            return bad("chat_id", "1-255 characters, no control characters");
        }
        if self.delivered_at <= 0 {
            return bad("delivered_at", "Unix seconds");
        }
        Ok(())
    }

    /// The ack as one line of JSON.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(self).expect("an ack always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack() -> Ack {
        Ack {
            schema: SCHEMA.into(),
            member_id: "a223c6b3710f85df22e9377d6c4f7553".into(),
            connector: "MyConnector".into(),
            line: 107,
            im: AckIm {
                chat_id: 1807,
                message_id: 501,
            },
            message_ids: vec!["ext-501".into()],
            chat_id: "channel-123".into(),
            delivered_at: 1_773_759_200,
        }
    }

    #[test]
    fn valid_acks_round_trip_and_hostile_ones_are_refused() {
        let a = ack();
        assert_eq!(Ack::parse(&a.to_json_string()).unwrap(), a);
        let refused = |f: fn(&mut Ack)| {
            let mut a = ack();
            f(&mut a);
            Ack::parse(&a.to_json_string()).unwrap_err()
        };
        assert!(matches!(
            refused(|a| a.member_id = "victim#MSG#3".into()),
            AckError::Invalid {
                field: "member_id",
                ..
            }
        ));
        assert!(matches!(
            refused(|a| a.connector = "a b".into()),
            AckError::Invalid {
                field: "connector",
                ..
            }
        ));
        assert!(matches!(
            refused(|a| a.line = 0),
            AckError::Invalid { field: "line", .. }
        ));
        assert!(matches!(
            refused(|a| a.im.message_id = -1),
            AckError::Invalid { field: "im", .. }
        ));
        assert!(matches!(
            refused(|a| a.message_ids.clear()),
            AckError::Invalid {
                field: "message_ids",
                ..
            }
        ));
        assert!(matches!(
            refused(|a| a.message_ids = vec!["x".into(); 51]),
            AckError::Invalid {
                field: "message_ids",
                ..
            }
        ));
        assert!(matches!(
            refused(|a| a.chat_id = "x\ny".into()),
            AckError::Invalid {
                field: "chat_id",
                ..
            }
        ));
        assert!(matches!(
            refused(|a| a.schema = "b24.ack.v2".into()),
            AckError::Invalid {
                field: "schema",
                ..
            }
        ));
        assert!(matches!(
            Ack::parse("{\"schema\":1}"),
            Err(AckError::Malformed(_))
        ));
        assert!(matches!(
            Ack::parse(&format!("{}x", ack().to_json_string())),
            Err(AckError::Malformed(_))
        ));
        let extra = ack()
            .to_json_string()
            .replacen('{', "{\"access_token\":\"t\",", 1);
        assert!(
            matches!(Ack::parse(&extra), Err(AckError::Malformed(_))),
            "unknown fields are refused"
        );
    }
}

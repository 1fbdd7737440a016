//! Batch commands for what the product calls: binding its event handlers (`event.bind`) and
//! reporting deliveries (`imconnector.send.status.delivery`).

use serde_json::{json, Value};

use crate::batch::Command;

/// `event.bind` commands, one per `(event, handler URL)`, named `bind_{i}_{EVENT}` in order.
/// Run them with [`crate::RestClient::batch`] (at most 50 per batch) without `halt`; a command
/// whose error [`crate::MethodError::is_already_bound`] is bound already, which is success.
pub fn event_bind_commands<E: AsRef<str>, H: AsRef<str>>(handlers: &[(E, H)]) -> Vec<Command> {
    handlers
        .iter()
        .enumerate()
        .map(|(i, (event, handler))| {
            let event = event.as_ref();
            let tag: String = event
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(60)
                .collect::<String>()
                .to_ascii_uppercase();
            Command::new(
                format!("bind_{i}_{tag}"),
                "event.bind",
                json!({"EVENT": event, "HANDLER": handler.as_ref()}),
            )
        })
        .collect()
}

/// One message delivered to the external channel, for
/// `imconnector.send.status.delivery`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// `im.chat_id`: the Open Line chat in Bitrix24.
    pub chat_id: i64,
    /// `im.message_id`: the message in Bitrix24.
    pub message_id: i64,
    /// `message.id`: the message's id(s) in the external channel — always sent as an array,
    /// even for one (the docs); must not be empty (an empty array leaves no field).
    pub external_ids: Vec<String>,
    /// `message.date`: Unix time of the delivery, when known.
    pub date: Option<i64>,
    /// `chat.id`: the chat's id in the external channel.
    pub external_chat_id: String,
}

impl Delivered {
    fn to_json(&self) -> Value {
        let mut message = json!({"id": self.external_ids});
        if let Some(date) = self.date {
            message["date"] = json!(date);
        }
        json!({
            "im": {"chat_id": self.chat_id, "message_id": self.message_id},
            "message": message,
            "chat": {"id": self.external_chat_id},
        })
    }
}

/// An `imconnector.send.status.delivery` command named `name`: `CONNECTOR`, `LINE` and
/// `MESSAGES[] = {im: {chat_id, message_id}, message: {id: […], date}, chat: {id}}`.
pub fn delivery_command(name: &str, connector: &str, line: i64, messages: &[Delivered]) -> Command {
    let messages: Vec<Value> = messages.iter().map(Delivered::to_json).collect();
    Command::new(
        name,
        "imconnector.send.status.delivery",
        json!({"CONNECTOR": connector, "LINE": line, "MESSAGES": messages}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_commands_carry_event_and_handler() {
        let cmds = event_bind_commands(&[
            ("OnImConnectorMessageAdd", "https://h.example/m"),
            ("OnImConnectorMessageAdd", "https://h.example/n"),
        ]);
        assert_eq!(cmds[0].name, "bind_0_ONIMCONNECTORMESSAGEADD");
        assert_eq!(cmds[1].name, "bind_1_ONIMCONNECTORMESSAGEADD");
        assert_eq!(cmds[1].method, "event.bind");
        assert_eq!(
            cmds[1].params,
            json!({"EVENT": "OnImConnectorMessageAdd", "HANDLER": "https://h.example/n"})
        );
    }

    #[test]
    fn delivery_messages_have_the_documented_shape() {
        let c = delivery_command(
            "d1",
            "my_connector",
            107,
            &[Delivered {
                chat_id: 1807,
                message_id: 86497,
                external_ids: vec!["ext-1".into()],
                date: Some(1738065600),
                external_chat_id: "channel-123".into(),
            }],
        );
        assert_eq!(c.method, "imconnector.send.status.delivery");
        assert_eq!(
            c.params,
            json!({"CONNECTOR": "my_connector", "LINE": 107, "MESSAGES": [{
                "im": {"chat_id": 1807, "message_id": 86497},
                "message": {"id": ["ext-1"], "date": 1738065600},
                "chat": {"id": "channel-123"}}]})
        );
    }
}

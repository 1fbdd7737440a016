//! Real-shaped wire bodies, built as JSON the way live portals shape them and encoded exactly
//! as PHP's `http_build_query` sends them ([`b24_events::encode::php_form`]).
#![allow(dead_code)] // each test crate uses a different part

use b24_events::{decode, encode, DecodeError, Event};
use serde_json::{json, Value};

/// A real-shaped portal `member_id` (32 lower-case hex).
pub const MEMBER_ID: &str = "7d1c0b9e8f3a4d2c6b5a49382716f0e1";

/// A cloud portal's `auth` block as events carry it (every scalar a string).
pub fn auth() -> Value {
    json!({
        "access_token": "e1a6b3670071f6a900669dda00000001000007a8c1a1e3f2b6b0d0c4e7f1a2b3c4d5e6",
        "expires": "1733315945",
        "expires_in": "3600",
        "scope": "imconnector,imopenlines,im",
        "domain": "example.bitrix24.ru",
        "server_endpoint": "https://oauth.bitrix.info/rest/",
        "status": "L",
        "client_endpoint": "https://example.bitrix24.ru/rest/",
        "member_id": MEMBER_ID,
        "user_id": "1",
        "application_token": "0c5e9f7a3b1d4e6f8a2c4e6f8a0b2d4f"
    })
}

/// One `MESSAGES` element of an operator's message.
pub fn message_item(message_id: u32) -> Value {
    json!({
        "im": {"chat_id": "2481", "message_id": message_id.to_string()},
        "message": {"user_id": "27", "text": "[b]Ольга:[/b][br] Добрый день!"},
        "chat": {"id": "1234567"}
    })
}

/// An `ONIMCONNECTORMESSAGEADD` carrying `messages`.
pub fn message_add(messages: Vec<Value>) -> Value {
    json!({
        "event": "ONIMCONNECTORMESSAGEADD",
        "event_handler_id": "41",
        "data": {"CONNECTOR": "mycompany_chat", "LINE": "3", "MESSAGES": messages},
        "ts": "1733312345",
        "auth": auth()
    })
}

/// One `DATA` element of a Dialog* event.
pub fn dialog_item(session_id: u32) -> Value {
    json!({
        "connector": {
            "connector_id": "mycompany_chat", "line_id": "3",
            "chat_id": "65a1f0c2b7e4d91a2c3b4d5e", "user_id": "5f1d7c0e9b3a4c2d8e6f1a2b3c4d5e6f"
        },
        "session": {"id": session_id.to_string(), "closed": "N", "parent_id": "0", "close_term": "1440"},
        "chat": {"id": "65a1f0c2b7e4d91a2c3b4d5e"},
        "user": {"id": "5f1d7c0e9b3a4c2d8e6f1a2b3c4d5e6f"}
    })
}

/// An `ONIMCONNECTORDIALOGSTART` carrying `dialogs`.
pub fn dialog_start(dialogs: Vec<Value>) -> Value {
    json!({
        "event": "ONIMCONNECTORDIALOGSTART",
        "eventId": "18",
        "data": {"CONNECTOR": "mycompany_chat", "LINE": "3", "DATA": dialogs},
        "ts": "1733312345",
        "auth": auth()
    })
}

/// An `ONIMCONNECTORSTATUSDELETE` for `connector` (lower-case wire keys, as sent today).
pub fn status_delete(connector: &str) -> Value {
    json!({
        "event": "ONIMCONNECTORSTATUSDELETE",
        "event_handler_id": "44",
        "data": {"connector": connector, "line": "3"},
        "ts": "1733312345",
        "auth": auth()
    })
}

/// Sets `value` at the JSON pointer `pointer`, creating objects on the way.
pub fn set(doc: &mut Value, pointer: &str, value: Value) {
    let mut cur = doc;
    for part in pointer.trim_start_matches('/').split('/') {
        cur = match cur {
            Value::Array(items) => &mut items[part.parse::<usize>().expect("array index")],
            other => {
                if !other.is_object() {
                    *other = json!({});
                }
                other
                    .as_object_mut()
                    .unwrap()
                    .entry(part.to_owned())
                    .or_insert(Value::Null)
            }
        };
    }
    *cur = value;
}

/// The form body PHP's `http_build_query` makes of `wire`.
pub fn form(wire: &Value) -> String {
    encode::php_form(wire)
}

/// Decodes `wire` as PHP would send it (form) and, checking both agree, as JSON.
pub fn decode_both(wire: &Value) -> Result<Event, DecodeError> {
    let from_form = decode(
        form(wire).as_bytes(),
        Some("application/x-www-form-urlencoded"),
    );
    let from_json = decode(&serde_json::to_vec(wire).unwrap(), Some("application/json"));
    assert_eq!(from_form, from_json, "form and JSON decode differently");
    from_form
}

/// Decodes `wire` as PHP would send it, expecting success.
pub fn ok(wire: &Value) -> Event {
    decode_both(wire).unwrap_or_else(|e| panic!("{e}\n{}", form(wire)))
}

/// Decodes `wire` as PHP would send it, expecting an error.
pub fn err(wire: &Value) -> DecodeError {
    match decode_both(wire) {
        Ok(e) => panic!("decoded: {e:?}"),
        Err(e) => e,
    }
}

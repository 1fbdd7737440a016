//! Encoding events back to the wire: PHP `http_build_query` form bodies, and the wire-shaped
//! JSON of a typed [`Event`]. Used by tests, the `b24-events` CLI and benchmarks.

use crate::kind::EventKind;
use crate::model::*;
use crate::tree::float_to_string;
use serde_json::{json, Map, Value};

/// PHP `http_build_query($value)` of a wire-shaped JSON value (RFC 1738 encoding, the default).
///
/// Nested keys become brackets (`data[MESSAGES][0][im][chat_id]`), brackets and everything
/// but `A-Z a-z 0-9 - _ .` are percent-encoded (`%5B`/`%5D`), spaces become `+`. Like PHP:
/// `true`/`false` become `1`/`0`, `null` and empty arrays/objects leave no key, integral
/// numbers are printed without a fraction. Keys come out in the value's map order, which is
/// insertion order like PHP's arrays (the workspace enables serde_json's `preserve_order`;
/// without it serde_json maps are sorted). A scalar top-level value gives `""`.
pub fn php_form(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let mut key = String::new();
                urlencode_into(&mut key, k);
                build(&mut out, key, v);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                build(&mut out, i.to_string(), v);
            }
        }
        _ => {}
    }
    out
}

/// Appends `key=value` pairs for `v` under the already-encoded `key`. Iterative, so a deeply
/// nested value cannot overflow the stack.
fn build(out: &mut String, key: String, v: &Value) {
    let mut stack: Vec<(String, &Value)> = vec![(key, v)];
    while let Some((key, v)) = stack.pop() {
        let scalar = match v {
            Value::Null => continue,
            Value::Bool(b) => (if *b { "1" } else { "0" }).to_owned(),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => i.to_string(),
                (_, Some(u), _) => u.to_string(),
                (_, _, Some(f)) => float_to_string(f),
                _ => n.to_string(),
            },
            Value::String(s) => s.clone(),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate().rev() {
                    stack.push((format!("{key}%5B{i}%5D"), item));
                }
                continue;
            }
            Value::Object(map) => {
                let children: Vec<_> = map.iter().collect();
                for (k, item) in children.into_iter().rev() {
                    let mut child = format!("{key}%5B");
                    urlencode_into(&mut child, k);
                    child.push_str("%5D");
                    stack.push((child, item));
                }
                continue;
            }
        };
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&key);
        out.push('=');
        urlencode_into(out, &scalar);
    }
}

/// PHP `urlencode`: `A-Za-z0-9-_.` kept, space → `+`, every other byte `%XX` (upper case).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    urlencode_into(&mut out, s);
    out
}

fn urlencode_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
}

/// The wire-shaped JSON of an event, as Bitrix24 would send it (shaped like the Bitrix24 docs'
/// examples, `tests/fixtures/f*.json`): upper-case `CONNECTOR`/`LINE`/`MESSAGES` for Message*,
/// `DATA` and `eventId` for Dialog*, lower-case `connector`/`line` for StatusDelete, a scalar
/// `data` for LineDelete, `Y`/`N` and `1`/`0` flags, every scalar a string.
///
/// **This exposes the tokens**: the result carries `auth[access_token]` etc. It exists to
/// build test and demo bodies; never log it.
pub fn wire_json(event: &Event) -> Value {
    let mut top = Map::new();
    let kind = event.kind();
    top.insert("event".into(), json!(kind.code()));
    if let Some(id) = event.handler_id {
        let key = match kind {
            EventKind::DialogStart | EventKind::DialogFinish => "eventId",
            _ => "event_handler_id",
        };
        top.insert(key.into(), json!(id.to_string()));
    }
    let data = wire_data(kind, &event.data);
    if !data.is_null() {
        top.insert("data".into(), data);
    }
    if let Some(ts) = event.ts {
        top.insert("ts".into(), json!(ts.to_string()));
    }
    top.insert("auth".into(), wire_auth(&event.auth));
    Value::Object(top)
}

fn put(map: &mut Map<String, Value>, key: &str, v: Option<impl ToString>) {
    if let Some(v) = v {
        map.insert(key.to_owned(), Value::String(v.to_string()));
    }
}

fn yn(b: Option<bool>) -> Option<&'static str> {
    b.map(|b| if b { "Y" } else { "N" })
}

fn wire_auth(a: &Auth) -> Value {
    let mut m = Map::new();
    put(
        &mut m,
        "access_token",
        a.access_token.as_ref().map(|s| s.expose()),
    );
    put(&mut m, "expires", a.expires);
    put(&mut m, "expires_in", a.expires_in);
    if !a.scope.is_empty() {
        // `, ` as in the docs' examples; `,` when that would not fit the scope limit (the
        // decoded list came from at most MAX_SCOPE_BYTES, so single separators always fit).
        let mut scope = a.scope.join(", ");
        if scope.len() > crate::MAX_SCOPE_BYTES {
            scope = a.scope.join(",");
        }
        put(&mut m, "scope", Some(scope));
    }
    put(&mut m, "domain", a.domain.as_deref());
    put(&mut m, "server_endpoint", a.server_endpoint.as_deref());
    put(&mut m, "status", a.status.as_deref());
    put(&mut m, "client_endpoint", a.client_endpoint.as_deref());
    put(&mut m, "member_id", Some(&a.member_id));
    put(&mut m, "user_id", a.user_id);
    put(
        &mut m,
        "refresh_token",
        a.refresh_token.as_ref().map(|s| s.expose()),
    );
    put(
        &mut m,
        "application_token",
        a.application_token.as_ref().map(|s| s.expose()),
    );
    Value::Object(m)
}

fn non_empty(m: Map<String, Value>) -> Option<Value> {
    (!m.is_empty()).then_some(Value::Object(m))
}

fn wire_data(kind: EventKind, data: &EventData) -> Value {
    let mut m = Map::new();
    match data {
        EventData::MessageAdd(d) | EventData::MessageUpdate(d) | EventData::MessageDelete(d) => {
            let connector = d.connector_as_sent.as_deref().or(d.connector.as_deref());
            put(&mut m, "CONNECTOR", connector);
            put(&mut m, "LINE", d.line);
            let items: Vec<Value> = d.messages.iter().map(|i| wire_message(kind, i)).collect();
            if !items.is_empty() {
                m.insert("MESSAGES".into(), Value::Array(items));
            }
        }
        EventData::DialogStart(d) | EventData::DialogFinish(d) => {
            let connector = d.connector_as_sent.as_deref().or(d.connector.as_deref());
            put(&mut m, "CONNECTOR", connector);
            put(&mut m, "LINE", d.line);
            let items: Vec<Value> = d.dialogs.iter().map(wire_dialog).collect();
            if !items.is_empty() {
                m.insert("DATA".into(), Value::Array(items));
            }
        }
        EventData::StatusDelete(d) => {
            put(&mut m, "connector", Some(&d.connector_as_sent));
            put(&mut m, "line", Some(d.line));
        }
        EventData::LineDelete(d) => return Value::String(d.line.to_string()),
        EventData::AppInstall(d) | EventData::AppUpdate(d) => {
            put(&mut m, "VERSION", d.version.as_deref());
            put(&mut m, "PREVIOUS_VERSION", d.previous_version.as_deref());
            put(&mut m, "ACTIVE", yn(d.active));
            put(&mut m, "INSTALLED", yn(d.installed));
            put(&mut m, "LANGUAGE_ID", d.language_id.as_deref());
        }
        EventData::AppUninstall(d) => {
            put(&mut m, "LANGUAGE_ID", d.language_id.as_deref());
            put(&mut m, "CLEAN", Some(if d.clean { "1" } else { "0" }));
        }
    }
    non_empty(m).unwrap_or(Value::Null)
}

fn wire_message(kind: EventKind, i: &MessageItem) -> Value {
    let mut item = Map::new();
    let mut im = Map::new();
    put(&mut im, "chat_id", Some(i.im.chat_id));
    put(&mut im, "message_id", Some(i.im.message_id));
    item.insert("im".into(), Value::Object(im));
    let mut msg = Map::new();
    match (kind, i.message.ids.as_slice()) {
        (EventKind::MessageAdd, _) | (_, []) => {}
        // Delete sends a single scalar, Update an array (as the Bitrix24 docs show them).
        (EventKind::MessageDelete, [one]) => put(&mut msg, "id", Some(one)),
        (_, ids) => {
            msg.insert("id".into(), json!(ids));
        }
    }
    put(&mut msg, "user_id", i.message.user_id);
    put(&mut msg, "text", i.message.text.as_deref());
    let files: Vec<Value> = i
        .message
        .files
        .iter()
        .filter_map(|f| {
            let mut m = Map::new();
            put(&mut m, "id", f.id.as_deref());
            put(&mut m, "name", f.name.as_deref());
            put(&mut m, "type", f.file_type.as_deref());
            put(&mut m, "mime", f.mime.as_deref());
            put(&mut m, "link", f.link.as_deref());
            put(&mut m, "downloadLink", f.download_link.as_deref());
            put(&mut m, "size", f.size);
            put(&mut m, "sizef", f.size_formatted.as_deref());
            put(&mut m, "width", f.width);
            put(&mut m, "height", f.height);
            non_empty(m)
        })
        .collect();
    if !files.is_empty() {
        msg.insert("files".into(), Value::Array(files));
    }
    if !i.message.params.is_empty() {
        let params: Map<String, Value> = i
            .message
            .params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        msg.insert("params".into(), Value::Object(params));
    }
    if let Some(v) = non_empty(msg) {
        item.insert("message".into(), v);
    }
    let mut chat = Map::new();
    put(&mut chat, "id", i.chat.id.as_deref());
    if let Some(v) = non_empty(chat) {
        item.insert("chat".into(), v);
    }
    Value::Object(item)
}

fn wire_dialog(d: &DialogItem) -> Value {
    let mut item = Map::new();
    let mut c = Map::new();
    let c_id = &d.connector;
    let connector = c_id
        .connector_id_as_sent
        .as_deref()
        .or(c_id.connector_id.as_deref());
    put(&mut c, "connector_id", connector);
    put(&mut c, "line_id", d.connector.line_id);
    put(&mut c, "chat_id", d.connector.chat_id.as_deref());
    put(&mut c, "user_id", d.connector.user_id.as_deref());
    if let Some(v) = non_empty(c) {
        item.insert("connector".into(), v);
    }
    let mut s = Map::new();
    put(&mut s, "id", Some(d.session.id));
    put(&mut s, "closed", yn(d.session.closed));
    put(&mut s, "parent_id", d.session.parent_id);
    put(&mut s, "close_term", d.session.close_term);
    item.insert("session".into(), Value::Object(s));
    let mut chat = Map::new();
    put(&mut chat, "id", d.chat.id.as_deref());
    if let Some(v) = non_empty(chat) {
        item.insert("chat".into(), v);
    }
    let mut user = Map::new();
    put(&mut user, "id", d.user.id.as_deref());
    if let Some(v) = non_empty(user) {
        item.insert("user".into(), v);
    }
    Value::Object(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn php_urlencode() {
        assert_eq!(urlencode("a b*~-_.!"), "a+b%2A%7E-_.%21");
        assert_eq!(urlencode("Ж"), "%D0%96");
    }

    #[test]
    fn http_build_query_shape() {
        let v = json!({"a": {"b": [1, true, null, "x y"], "e": []}, "c": 1.0, "d": false});
        assert_eq!(
            php_form(&v),
            "a%5Bb%5D%5B0%5D=1&a%5Bb%5D%5B1%5D=1&a%5Bb%5D%5B3%5D=x+y&c=1&d=0"
        );
    }
}

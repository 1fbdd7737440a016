//! Typed extraction from the wire tree: one code path for form and JSON bodies.

use crate::error::{sanitize, DecodeError, Limits};
use crate::kind::EventKind;
use crate::model::*;
use crate::secret::Secret;
use crate::tree::{self, MapNode, Node, MAX_DEPTH_CAP};

/// Longest accepted value of any field but message text, in bytes. IDs, codes and endpoints
/// become DynamoDB keys (a sort key holds at most 1024 bytes) and attributes (an item at most
/// 400 KB), and no real value comes near it. Longer values are a 400 naming the field; in the
/// undocumented `message.files` they are dropped instead.
pub const MAX_FIELD_BYTES: usize = 512;
const FIELD_LIMIT_TEXT: &str = "value of at most 512 bytes";

/// Decodes one webhook body with the default [`Limits`].
///
/// `content_type` is the request's `Content-Type` header: `application/x-www-form-urlencoded`
/// (also when `None` or empty, with or without parameters such as `; charset=utf-8`) or
/// `application/json`, in any letter case. Anything else is
/// [`DecodeError::UnsupportedContentType`].
pub fn decode(body: &[u8], content_type: Option<&str>) -> Result<Event, DecodeError> {
    decode_with(body, content_type, &Limits::default())
}

/// Decodes one webhook body with explicit [`Limits`]. See [`decode`].
pub fn decode_with(
    body: &[u8],
    content_type: Option<&str>,
    limits: &Limits,
) -> Result<Event, DecodeError> {
    if body.len() > limits.max_body_bytes {
        return Err(DecodeError::TooLarge {
            limit: limits.max_body_bytes,
            size: body.len(),
        });
    }
    let wire = WireFormat::from_content_type(content_type)?;
    let max_depth = limits.max_depth.min(MAX_DEPTH_CAP);
    let root = match wire {
        WireFormat::Form => tree::from_form(body, max_depth, limits.max_keys)?,
        WireFormat::Json => tree::from_json(body, max_depth, limits.max_keys)?,
    };
    extract(&root)
}

/// The two wire forms a body can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireFormat {
    /// `application/x-www-form-urlencoded` with PHP bracket keys (what Bitrix24 sends).
    Form,
    /// `application/json` (accepted as a fallback).
    Json,
}

impl WireFormat {
    /// Picks the wire form from a `Content-Type` header value (`None` or empty means form).
    pub fn from_content_type(content_type: Option<&str>) -> Result<WireFormat, DecodeError> {
        let media = content_type
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        if media.is_empty() || media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            Ok(WireFormat::Form)
        } else if media.eq_ignore_ascii_case("application/json") {
            Ok(WireFormat::Json)
        } else {
            Err(DecodeError::UnsupportedContentType {
                media_type: sanitize(&media.to_ascii_lowercase()),
            })
        }
    }
}

/// A wire path, rendered only when an error needs it (`data[MESSAGES][0][im][chat_id]`).
#[derive(Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    key: &'a str,
}

impl<'a> Path<'a> {
    const ROOT: Path<'static> = Path {
        parent: None,
        key: "",
    };

    fn child(&'a self, key: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            key,
        }
    }

    fn render(&self) -> String {
        let mut keys = Vec::new();
        let mut p = Some(self);
        while let Some(cur) = p {
            if cur.parent.is_some() {
                keys.push(cur.key);
            }
            p = cur.parent;
        }
        let mut out = String::new();
        for (i, k) in keys.iter().rev().enumerate() {
            if i == 0 {
                out.push_str(k);
            } else {
                out.push('[');
                out.push_str(k);
                out.push(']');
            }
        }
        out
    }

    fn missing(&self, key: &str) -> DecodeError {
        DecodeError::missing(&self.child(key).render())
    }
}

/// A map at a path: the lookups every field goes through.
#[derive(Clone, Copy)]
struct At<'a> {
    map: &'a MapNode<'a>,
    path: &'a Path<'a>,
}

impl<'a> At<'a> {
    /// The scalar under `key`: `None` when absent or empty (PHP sends null as ""). At most
    /// [`MAX_FIELD_BYTES`]: IDs, codes and endpoints become storage keys and attributes.
    fn str(&self, key: &str) -> Result<Option<&'a str>, DecodeError> {
        match self.long_str(key)? {
            Some(s) if s.len() > MAX_FIELD_BYTES => Err(self.invalid(key, FIELD_LIMIT_TEXT)),
            other => Ok(other),
        }
    }

    /// Like [`At::str`] without the field limit: for message text (the body limit applies; the
    /// state crate truncates what it stores).
    fn long_str(&self, key: &str) -> Result<Option<&'a str>, DecodeError> {
        match self.map.get(key) {
            None => Ok(None),
            Some((_, Node::Scalar(s))) if s.is_empty() => Ok(None),
            Some((_, Node::Scalar(s))) => Ok(Some(s)),
            Some((k, Node::Map(_))) => Err(DecodeError::invalid(
                &self.path.child(k).render(),
                "single value",
            )),
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, DecodeError> {
        Ok(self.str(key)?.map(str::to_owned))
    }

    fn lower(&self, key: &str) -> Result<Option<String>, DecodeError> {
        Ok(self.str(key)?.map(str::to_lowercase))
    }

    fn int(&self, key: &str) -> Result<Option<i64>, DecodeError> {
        match self.str(key)? {
            None => Ok(None),
            Some(s) => parse_int(s)
                .map(Some)
                .ok_or_else(|| self.invalid(key, "integer")),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, DecodeError> {
        match self.str(key)? {
            None => Ok(None),
            Some(s) => parse_bool(s)
                .map(Some)
                .ok_or_else(|| self.invalid(key, "boolean")),
        }
    }

    fn req_str(&self, key: &str) -> Result<&'a str, DecodeError> {
        self.str(key)?.ok_or_else(|| self.path.missing(key))
    }

    fn req_int(&self, key: &str) -> Result<i64, DecodeError> {
        self.int(key)?.ok_or_else(|| self.path.missing(key))
    }

    /// The map under `key`: `None` when absent or empty.
    fn map(&self, key: &str) -> Result<Option<(&'a str, &'a MapNode<'a>)>, DecodeError> {
        match self.map.get(key) {
            None => Ok(None),
            Some((_, Node::Scalar(s))) if s.is_empty() => Ok(None),
            Some((k, Node::Scalar(_))) => {
                Err(DecodeError::invalid(&self.path.child(k).render(), "map"))
            }
            Some((k, Node::Map(m))) => Ok(Some((k, m))),
        }
    }

    /// The wire key `key` is actually spelled with, for error paths.
    fn invalid(&self, key: &str, expected: &'static str) -> DecodeError {
        let spelled = self.map.get(key).map(|(k, _)| k).unwrap_or(key);
        DecodeError::invalid(&self.path.child(spelled).render(), expected)
    }
}

fn parse_int(s: &str) -> Option<i64> {
    s.trim_matches(|c: char| c.is_ascii_whitespace())
        .parse()
        .ok()
}

fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
    if ["y", "1", "true"].iter().any(|t| s.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if ["n", "0", "false"]
        .iter()
        .any(|t| s.eq_ignore_ascii_case(t))
    {
        Some(false)
    } else {
        None
    }
}

/// Splits a scope string on commas and/or whitespace, dropping empty parts.
pub(crate) fn split_scope(s: &str) -> Vec<String> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn extract(root: &MapNode<'_>) -> Result<Event, DecodeError> {
    let path = Path::ROOT;
    let top = At {
        map: root,
        path: &path,
    };

    let code = top.req_str("event")?;
    let kind = EventKind::from_code(code).ok_or_else(|| DecodeError::UnsupportedEvent {
        code: sanitize(&code.trim().to_ascii_uppercase()),
    })?;

    let handler_id = match top.int("event_handler_id")? {
        Some(id) => Some(id),
        None => top.int("eventId")?,
    };
    let ts = top.int("ts")?;
    let auth = extract_auth(top)?;
    let data = match kind {
        EventKind::MessageAdd | EventKind::MessageUpdate | EventKind::MessageDelete => {
            EventData::Messages(extract_messages(top, kind)?)
        }
        EventKind::DialogStart | EventKind::DialogFinish => {
            EventData::Dialogs(extract_dialogs(top)?)
        }
        EventKind::StatusDelete => EventData::StatusDelete(extract_status_delete(top)?),
        EventKind::LineDelete => EventData::LineDelete(extract_line_delete(top)?),
        EventKind::AppInstall | EventKind::AppUpdate => EventData::App(extract_app(top)?),
        EventKind::AppUninstall => EventData::AppUninstall(extract_app_uninstall(top)?),
    };
    Ok(Event {
        kind,
        handler_id,
        ts,
        auth,
        data,
    })
}

fn extract_auth(top: At<'_>) -> Result<Auth, DecodeError> {
    let Some((key, map)) = top.map("auth")? else {
        return Err(DecodeError::missing("auth[member_id]"));
    };
    let path = top.path.child(key);
    let a = At { map, path: &path };
    let secret =
        |k: &str| -> Result<Option<Secret>, DecodeError> { Ok(a.str(k)?.map(Secret::new)) };
    Ok(Auth {
        member_id: a.req_str("member_id")?.to_owned(),
        domain: a.string("domain")?,
        client_endpoint: a.string("client_endpoint")?,
        server_endpoint: a.string("server_endpoint")?,
        status: a.string("status")?,
        scope: a.str("scope")?.map(split_scope).unwrap_or_default(),
        user_id: a.int("user_id")?,
        expires: a.int("expires")?,
        expires_in: a.int("expires_in")?,
        access_token: secret("access_token")?,
        refresh_token: secret("refresh_token")?,
        application_token: secret("application_token")?,
    })
}

/// Runs `f` on each element of the list under `key` (index order); elements must be maps.
fn each_item<'a, T>(
    at: At<'a>,
    keys: &[&str],
    mut f: impl FnMut(At<'_>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let mut found = None;
    for k in keys {
        if let Some(m) = at.map(k)? {
            found = Some(m);
            break;
        }
    }
    let Some((key, list)) = found else {
        return Ok(Vec::new());
    };
    let list_path = at.path.child(key);
    let items = list.list_items();
    let mut out = Vec::with_capacity(items.len());
    for (index, node) in items {
        let item_path = list_path.child(index);
        match node {
            Node::Map(map) => out.push(f(At {
                map,
                path: &item_path,
            })?),
            Node::Scalar(s) if s.is_empty() => {}
            Node::Scalar(_) => return Err(DecodeError::invalid(&item_path.render(), "map")),
        }
    }
    Ok(out)
}

/// Looks up a sub-map and runs `f` on it, or on an empty map when it is absent.
fn with_map<'a, T>(
    at: At<'a>,
    key: &'a str,
    f: impl FnOnce(At<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    static EMPTY: MapNode<'static> = MapNode::EMPTY;
    let (spelled, map) = at.map(key)?.unwrap_or((key, &EMPTY));
    let path = at.path.child(spelled);
    f(At { map, path: &path })
}

fn extract_messages(top: At<'_>, kind: EventKind) -> Result<MessagesData, DecodeError> {
    with_map(top, "data", |d| {
        Ok(MessagesData {
            connector: d.lower("CONNECTOR")?,
            line: d.int("LINE")?,
            messages: each_item(d, &["MESSAGES", "DATA"], |item| {
                extract_message_item(item, kind)
            })?,
        })
    })
}

fn extract_message_item(item: At<'_>, kind: EventKind) -> Result<MessageItem, DecodeError> {
    let im = with_map(item, "im", |im| {
        Ok(ImRef {
            chat_id: im.req_int("chat_id")?,
            message_id: im.req_int("message_id")?,
        })
    })?;
    let message = with_map(item, "message", |m| {
        Ok(MessageBody {
            user_id: m.int("user_id")?,
            text: m.long_str("text")?.map(str::to_owned),
            ids: if kind == EventKind::MessageAdd {
                Vec::new()
            } else {
                extract_ids(m)?
            },
            files: extract_files(m),
        })
    })?;
    let chat = with_map(item, "chat", |c| {
        Ok(ExternalChat {
            id: c.string("id")?,
        })
    })?;
    Ok(MessageItem { im, message, chat })
}

/// `message.id`: an array (Update) or a single scalar (Delete), normalised to a list.
fn extract_ids(m: At<'_>) -> Result<Vec<String>, DecodeError> {
    match m.map.get("id") {
        None => Ok(Vec::new()),
        Some((_, Node::Scalar(s))) if s.is_empty() => Ok(Vec::new()),
        Some((_, Node::Scalar(s))) => Ok(vec![s.to_string()]),
        Some((k, Node::Map(list))) => {
            let list_path = m.path.child(k);
            let mut ids = Vec::new();
            for (index, node) in list.list_items() {
                match node {
                    Node::Scalar(s) if s.is_empty() => {}
                    Node::Scalar(s) => ids.push(s.to_string()),
                    Node::Map(_) => {
                        return Err(DecodeError::invalid(
                            &list_path.child(index).render(),
                            "single value",
                        ))
                    }
                }
            }
            Ok(ids)
        }
    }
}

/// `message.files` is undocumented: read leniently, skipping anything of an unexpected shape
/// rather than failing the whole event.
fn extract_files(m: At<'_>) -> Vec<FileRef> {
    let Some((_, Node::Map(list))) = m.map.get("files") else {
        return Vec::new();
    };
    let text = |f: &MapNode<'_>, k: &str| match f.get(k) {
        Some((_, Node::Scalar(s))) if !s.is_empty() && s.len() <= MAX_FIELD_BYTES => {
            Some(s.to_string())
        }
        _ => None,
    };
    list.list_items()
        .into_iter()
        .filter_map(|(_, node)| match node {
            Node::Map(f) => Some(FileRef {
                name: text(f, "name"),
                file_type: text(f, "type"),
                link: text(f, "link"),
                size: text(f, "size").and_then(|s| parse_int(&s)),
            }),
            Node::Scalar(_) => None,
        })
        // An entry with none of the four fields carries nothing.
        .filter(|f| {
            f.name.is_some() || f.file_type.is_some() || f.link.is_some() || f.size.is_some()
        })
        .collect()
}

fn extract_dialogs(top: At<'_>) -> Result<DialogsData, DecodeError> {
    with_map(top, "data", |d| {
        Ok(DialogsData {
            connector: d.lower("CONNECTOR")?,
            line: d.int("LINE")?,
            dialogs: each_item(d, &["DATA"], extract_dialog_item)?,
        })
    })
}

fn extract_dialog_item(item: At<'_>) -> Result<DialogItem, DecodeError> {
    Ok(DialogItem {
        connector: with_map(item, "connector", |c| {
            Ok(DialogConnector {
                connector_id: c.lower("connector_id")?,
                line_id: c.int("line_id")?,
                chat_id: c.string("chat_id")?,
                user_id: c.string("user_id")?,
            })
        })?,
        session: with_map(item, "session", |s| {
            Ok(Session {
                id: s.req_int("id")?,
                closed: s.bool("closed")?,
                parent_id: s.int("parent_id")?,
                close_term: s.int("close_term")?,
            })
        })?,
        chat: with_map(item, "chat", |c| {
            Ok(ExternalChat {
                id: c.string("id")?,
            })
        })?,
        user: with_map(item, "user", |u| {
            Ok(ExternalUser {
                id: u.string("id")?,
            })
        })?,
    })
}

fn extract_status_delete(top: At<'_>) -> Result<StatusDeleteData, DecodeError> {
    with_map(top, "data", |d| {
        Ok(StatusDeleteData {
            connector: d.req_str("connector")?.to_lowercase(),
            line: d.req_int("line")?,
        })
    })
}

fn extract_line_delete(top: At<'_>) -> Result<LineDeleteData, DecodeError> {
    match top.map.get("data") {
        Some((k, Node::Scalar(s))) if !s.is_empty() => match parse_int(s) {
            Some(line) => Ok(LineDeleteData { line }),
            None => Err(DecodeError::invalid(k, "integer")),
        },
        Some((k, Node::Map(map))) => {
            let path = top.path.child(k);
            let d = At { map, path: &path };
            let line = match d.int("LINE_ID")? {
                Some(line) => line,
                None => d.req_int("LINE")?,
            };
            Ok(LineDeleteData { line })
        }
        _ => Err(DecodeError::missing("data")),
    }
}

fn extract_app(top: At<'_>) -> Result<AppData, DecodeError> {
    with_map(top, "data", |d| {
        Ok(AppData {
            version: d.string("VERSION")?,
            active: d.bool("ACTIVE")?,
            installed: d.bool("INSTALLED")?,
            language_id: d.string("LANGUAGE_ID")?,
        })
    })
}

fn extract_app_uninstall(top: At<'_>) -> Result<AppUninstallData, DecodeError> {
    with_map(top, "data", |d| {
        Ok(AppUninstallData {
            language_id: d.string("LANGUAGE_ID")?,
            clean: d.bool("CLEAN")?.unwrap_or(false),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        use WireFormat::*;
        for (ct, want) in [
            (None, Ok(Form)),
            (Some(""), Ok(Form)),
            (Some("application/x-www-form-urlencoded"), Ok(Form)),
            (
                Some("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
                Ok(Form),
            ),
            (Some("application/json"), Ok(Json)),
            (Some("APPLICATION/JSON;charset=utf-8"), Ok(Json)),
        ] {
            assert_eq!(WireFormat::from_content_type(ct), want, "{ct:?}");
        }
        let err = WireFormat::from_content_type(Some("text/plain")).unwrap_err();
        assert_eq!(err.status(), 415);
        assert_eq!(err.to_string(), "unsupported content type text/plain");
    }

    #[test]
    fn scope_split() {
        assert_eq!(
            split_scope("imconnector, imopenlines"),
            ["imconnector", "imopenlines"]
        );
        assert_eq!(
            split_scope(" crm,placement ,,user_brief\t x "),
            ["crm", "placement", "user_brief", "x"]
        );
        assert!(split_scope(" , ").is_empty());
    }

    #[test]
    fn bools() {
        for t in ["Y", "y", "1", "true", "TRUE"] {
            assert_eq!(parse_bool(t), Some(true));
        }
        for f in ["N", "n", "0", "false"] {
            assert_eq!(parse_bool(f), Some(false));
        }
        assert_eq!(parse_bool("yes"), None);
    }

    #[test]
    fn paths_render() {
        let root = Path::ROOT;
        let d = root.child("data");
        let m = d.child("MESSAGES");
        let i = m.child("0");
        assert_eq!(i.child("im").render(), "data[MESSAGES][0][im]");
        assert_eq!(root.child("event").render(), "event");
    }
}

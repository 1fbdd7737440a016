//! Typed extraction from the wire tree: one code path for form and JSON bodies.

use crate::error::{sanitize, DecodeError, Limits};
use crate::kind::EventKind;
use crate::model::*;
use crate::secret::Secret;
use crate::tree::{self, MapNode, Node, MAX_DEPTH_CAP};
use std::collections::BTreeMap;

/// Longest accepted value of any field but message text, in bytes. IDs, codes and endpoints
/// become DynamoDB keys (a sort key holds at most 1024 bytes) and attributes (an item at most
/// 400 KB), and no real value comes near it. Longer values are a 400 naming the field; in the
/// undocumented `message.files` they are dropped instead.
pub const MAX_FIELD_BYTES: usize = 512;
const FIELD_LIMIT_TEXT: &str = "value of at most 512 bytes";
/// Longest accepted `auth[scope]`, in bytes: every documented scope joined is about 450 bytes,
/// and an app holding all of them must never be refused.
pub const MAX_SCOPE_BYTES: usize = 4096;
const SCOPE_LIMIT_TEXT: &str = "value of at most 4096 bytes";
/// Longest kept file link or `downloadLink` (longer ones are dropped, like other overlong
/// values of the undocumented `message.files`).
const MAX_LINK_BYTES: usize = 2048;
/// Most `message.params` entries kept, and the longest kept key and value (undocumented data:
/// anything beyond is dropped, never an error).
const MAX_PARAMS: usize = 64;
const MAX_PARAM_KEY_BYTES: usize = 128;
const MAX_PARAM_VALUE_BYTES: usize = 4096;
/// Longest accepted `member_id`.
pub const MAX_MEMBER_ID_BYTES: usize = 64;
const MEMBER_ID_RULE: &str = "member_id of 1 to 64 characters from [0-9a-z_-]";
/// Longest accepted connector ID.
pub const MAX_CONNECTOR_BYTES: usize = 64;
const CONNECTOR_RULE: &str = "connector ID of 1 to 64 characters from [0-9A-Za-z_.-]";

/// Whether `id` may be a portal's `member_id`: 1–64 characters of `[0-9a-z_-]` (real ones are
/// 32 lower-case hex). It becomes part of storage keys, so it can never hold a key separator.
pub fn is_valid_member_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_MEMBER_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'_' || b == b'-')
}

/// Whether `id` may be a connector ID: 1–64 characters of `[0-9A-Za-z_.-]` (Bitrix24 allows
/// letters, digits and `_`; portals send them in either case). It becomes part of a storage
/// key, so it can never hold a key separator.
pub fn is_valid_connector_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CONNECTOR_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

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
    extract(&root, limits.max_items)
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

    /// A connector ID: `(lower-cased, as sent)`, validated (it becomes part of a key).
    fn connector(&self, key: &str) -> Result<Option<(String, String)>, DecodeError> {
        match self.str(key)? {
            None => Ok(None),
            Some(s) if is_valid_connector_id(s) => Ok(Some((s.to_ascii_lowercase(), s.to_owned()))),
            Some(_) => Err(self.invalid(key, CONNECTOR_RULE)),
        }
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

fn extract(root: &MapNode<'_>, max_items: usize) -> Result<Event, DecodeError> {
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
        EventKind::MessageAdd => EventData::MessageAdd(extract_messages(top, kind, max_items)?),
        EventKind::MessageUpdate => {
            EventData::MessageUpdate(extract_messages(top, kind, max_items)?)
        }
        EventKind::MessageDelete => {
            EventData::MessageDelete(extract_messages(top, kind, max_items)?)
        }
        EventKind::DialogStart => EventData::DialogStart(extract_dialogs(top, max_items)?),
        EventKind::DialogFinish => EventData::DialogFinish(extract_dialogs(top, max_items)?),
        EventKind::StatusDelete => EventData::StatusDelete(extract_status_delete(top)?),
        EventKind::LineDelete => EventData::LineDelete(extract_line_delete(top)?),
        EventKind::AppInstall => EventData::AppInstall(extract_app(top)?),
        EventKind::AppUpdate => EventData::AppUpdate(extract_app(top)?),
        EventKind::AppUninstall => EventData::AppUninstall(extract_app_uninstall(top)?),
    };
    Ok(Event {
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
    let member_id = a.req_str("member_id")?;
    if !is_valid_member_id(member_id) {
        return Err(a.invalid("member_id", MEMBER_ID_RULE));
    }
    let scope = match a.long_str("scope")? {
        Some(s) if s.len() > MAX_SCOPE_BYTES => return Err(a.invalid("scope", SCOPE_LIMIT_TEXT)),
        Some(s) => split_scope(s),
        None => Vec::new(),
    };
    Ok(Auth {
        member_id: member_id.to_owned(),
        domain: a.string("domain")?,
        client_endpoint: a.string("client_endpoint")?,
        server_endpoint: a.string("server_endpoint")?,
        status: a.string("status")?,
        scope,
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
    max_items: usize,
    mut f: impl FnMut(At<'_>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let mut found = None;
    for k in keys {
        match at.map(k)? {
            // An empty list is no list (PHP sends no key for an empty array, so a JSON `[]`
            // must not hide the legacy key either).
            Some((_, m)) if m.is_empty() => {}
            Some(m) => {
                found = Some(m);
                break;
            }
            None => {}
        }
    }
    let Some((key, list)) = found else {
        return Ok(Vec::new());
    };
    let list_path = at.path.child(key);
    let items = list.list_items();
    if items.len() > max_items {
        return Err(DecodeError::TooManyItems {
            field: list_path.render(),
            count: items.len(),
            limit: max_items,
        });
    }
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

fn extract_messages(
    top: At<'_>,
    kind: EventKind,
    max_items: usize,
) -> Result<MessagesData, DecodeError> {
    with_map(top, "data", |d| {
        let (connector, connector_as_sent) = d.connector("CONNECTOR")?.unzip();
        Ok(MessagesData {
            connector,
            connector_as_sent,
            line: d.int("LINE")?,
            messages: each_item(d, &["MESSAGES", "DATA"], max_items, |item| {
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
            params: extract_params(m),
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

/// A scalar of the undocumented `message.files` / `message.params`: `None` when absent, empty,
/// a map, or longer than `limit` (dropped rather than failing the whole event).
fn lenient<'m>(f: &'m MapNode<'_>, key: &str, limit: usize) -> Option<&'m str> {
    match f.get(key) {
        Some((_, Node::Scalar(s))) if !s.is_empty() && s.len() <= limit => Some(s),
        _ => None,
    }
}

/// `message.files` is undocumented: read leniently, skipping anything of an unexpected shape
/// rather than failing the whole event.
fn extract_files(m: At<'_>) -> Vec<FileRef> {
    let Some((_, Node::Map(list))) = m.map.get("files") else {
        return Vec::new();
    };
    let text = |f: &MapNode<'_>, k: &str| lenient(f, k, MAX_FIELD_BYTES).map(str::to_owned);
    let int = |f: &MapNode<'_>, k: &str| lenient(f, k, MAX_FIELD_BYTES).and_then(parse_int);
    let link = |f: &MapNode<'_>, k: &str| lenient(f, k, MAX_LINK_BYTES).map(strip_token_params);
    list.list_items()
        .into_iter()
        .filter_map(|(_, node)| match node {
            Node::Map(f) => Some(FileRef {
                id: text(f, "id"),
                name: text(f, "name"),
                file_type: text(f, "type"),
                mime: text(f, "mime"),
                link: link(f, "link"),
                download_link: link(f, "downloadLink").or_else(|| link(f, "download_link")),
                size: int(f, "size"),
                size_formatted: text(f, "sizef"),
                width: int(f, "width"),
                height: int(f, "height"),
            }),
            Node::Scalar(_) => None,
        })
        // An entry with none of the fields carries nothing.
        .filter(|f| *f != FileRef::default())
        .collect()
}

/// Query parameters that carry a token (a portal's `downloadLink` carries the viewing user's
/// OAuth token as `auth`).
const TOKEN_PARAMS: [&str; 4] = ["auth", "access_token", "refresh_token", "application_token"];

/// Removes every token query parameter ([`TOKEN_PARAMS`]) from a link, so no token is ever
/// kept. A parameter counts as a token when the name PHP would read from it is one of them:
/// after percent-decoding, with `.` and space read as `_`, ignoring a trailing `[...]`, in any
/// case, and also after an HTML-escaped separator (`&amp;auth=`). Everything else (the
/// `token=disk|...` file reference, other parameters, the path, the fragment) is kept as sent.
///
/// The link is read as pieces separated by `?`, `&` and `#`, so a token is found wherever it
/// hides: in the query, in the fragment (`/x#/page?auth=...`), or after a stray `&` in the
/// path. Removing a piece keeps the link's shape: the first kept piece of the query starts
/// with `?`, the first kept piece of the fragment with `#`, a removed `?` passes on to the
/// next `&`. Stripping a stripped link changes nothing.
fn strip_token_params(link: &str) -> String {
    let Some(start) = link.find(['?', '&', '#']) else {
        return link.to_owned();
    };
    let mut out = String::with_capacity(link.len());
    out.push_str(&link[..start]);
    // Where a piece is: in the path (before any `?`/`#`), the query, or the fragment.
    #[derive(Clone, Copy, PartialEq)]
    enum Zone {
        Path,
        Query,
        Fragment,
    }
    let mut zone = Zone::Path;
    let (mut query_open, mut fragment_open) = (false, false);
    // The delimiter of a removed `?`/`#` piece, taken over by the next kept `&` piece.
    let mut pending = None;
    let mut rest = &link[start..];
    while let Some(delimiter) = rest.chars().next() {
        let body = &rest[1..];
        let end = body.find(['?', '&', '#']).unwrap_or(body.len());
        let (piece, next) = body.split_at(end);
        rest = next;
        let entered = match (zone, delimiter) {
            (Zone::Path, '?') => Some(Zone::Query),
            (Zone::Path | Zone::Query, '#') => Some(Zone::Fragment),
            _ => None,
        };
        if let Some(z) = entered {
            zone = z;
            pending = None;
        }
        if is_token_param(piece) {
            if delimiter != '&' {
                pending = Some(delimiter);
            }
            continue;
        }
        let d = match zone {
            Zone::Path => delimiter,
            Zone::Query | Zone::Fragment => {
                let (opened, opener) = if zone == Zone::Query {
                    (&mut query_open, '?')
                } else {
                    (&mut fragment_open, '#')
                };
                let d = match (*opened, delimiter) {
                    (false, _) => opener,
                    (true, '&') => pending.unwrap_or('&'),
                    (true, d) => d,
                };
                *opened = true;
                d
            }
        };
        pending = None;
        out.push(d);
        out.push_str(piece);
    }
    out
}

/// Whether the query pair `name=value` names a token parameter (see [`strip_token_params`]).
fn is_token_param(pair: &str) -> bool {
    let raw = pair.split('=').next().unwrap_or("").as_bytes();
    // The name as PHP reads it: `+` is a space, `%XX` a byte.
    let mut name = Vec::with_capacity(raw.len());
    let hex = |b: &u8| (*b as char).to_digit(16).map(|d| d as u8);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => match (raw.get(i + 1).and_then(hex), raw.get(i + 2).and_then(hex)) {
                (Some(h), Some(l)) => {
                    name.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => name.push(b'%'),
            },
            b'+' => name.push(b' '),
            b => name.push(b),
        }
        i += 1;
    }
    let mut name: &[u8] = &name;
    while let Some(rest) = strip_prefix_ignore_case(name, b"amp;") {
        name = rest;
    }
    // PHP skips leading spaces, ends the base name at `[`, and reads `.` and space as `_`.
    while let [b' ', rest @ ..] = name {
        name = rest;
    }
    let base = name.split(|&b| b == b'[').next().unwrap_or_default();
    TOKEN_PARAMS.iter().any(|t| {
        t.len() == base.len()
            && t.bytes().zip(base).all(|(t, &b)| {
                let b = if b == b'.' || b == b' ' { b'_' } else { b };
                t == b.to_ascii_lowercase()
            })
    })
}

fn strip_prefix_ignore_case<'s>(s: &'s [u8], prefix: &[u8]) -> Option<&'s [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// `message.params` is undocumented: a string map as sent (empty values kept). Dropped, never
/// an error: values that are not scalars (nested maps) or longer than
/// [`MAX_PARAM_VALUE_BYTES`], empty keys, keys longer than [`MAX_PARAM_KEY_BYTES`] or holding
/// a bracket (no PHP form can carry them back), and every entry beyond the first
/// [`MAX_PARAMS`] kept ones.
fn extract_params(m: At<'_>) -> BTreeMap<String, String> {
    let Some((_, Node::Map(params))) = m.map.get("params") else {
        return BTreeMap::new();
    };
    params
        .children
        .iter()
        .filter(|(k, _)| !k.is_empty() && k.len() <= MAX_PARAM_KEY_BYTES && !k.contains(['[', ']']))
        .filter_map(|(k, v)| match v {
            Node::Scalar(s) if s.len() <= MAX_PARAM_VALUE_BYTES => {
                Some((k.to_owned(), s.to_string()))
            }
            _ => None,
        })
        .take(MAX_PARAMS)
        .collect()
}

fn extract_dialogs(top: At<'_>, max_items: usize) -> Result<DialogsData, DecodeError> {
    with_map(top, "data", |d| {
        let (connector, connector_as_sent) = d.connector("CONNECTOR")?.unzip();
        Ok(DialogsData {
            connector,
            connector_as_sent,
            line: d.int("LINE")?,
            dialogs: each_item(d, &["DATA"], max_items, extract_dialog_item)?,
        })
    })
}

fn extract_dialog_item(item: At<'_>) -> Result<DialogItem, DecodeError> {
    Ok(DialogItem {
        connector: with_map(item, "connector", |c| {
            let (connector_id, connector_id_as_sent) = c.connector("connector_id")?.unzip();
            Ok(DialogConnector {
                connector_id,
                connector_id_as_sent,
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
        let (connector, connector_as_sent) = d
            .connector("connector")?
            .ok_or_else(|| d.path.missing("connector"))?;
        Ok(StatusDeleteData {
            connector,
            connector_as_sent,
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
            previous_version: d.string("PREVIOUS_VERSION")?,
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
    fn token_params_are_stripped_from_links_everything_else_kept() {
        for (link, want) in [
            (
                "/rest/download.json?auth=SECRET&token=disk%7CaWQ9MTIz",
                "/rest/download.json?token=disk%7CaWQ9MTIz",
            ),
            (
                "/rest/download.json?token=disk%7Cx&auth=SECRET",
                "/rest/download.json?token=disk%7Cx",
            ),
            ("https://p/x?auth=SECRET", "https://p/x"),
            ("https://p/x?auth=SECRET#frag", "https://p/x#frag"),
            ("https://p/x?a=1&access_token=S&b=2", "https://p/x?a=1&b=2"),
            (
                "https://p/x?refresh_token=S&application_token=S",
                "https://p/x",
            ),
            // The name PHP would read: escaped, `.`/space as `_`, arrays, any case, `&amp;`.
            ("https://p/x?%61uth=S&k=1", "https://p/x?k=1"),
            ("https://p/x?access.token=S&k=1", "https://p/x?k=1"),
            ("https://p/x?access+token=S&k=1", "https://p/x?k=1"),
            ("https://p/x?auth%5B%5D=S&auth[0]=S&k=1", "https://p/x?k=1"),
            ("https://p/x?AUTH=S&k=1", "https://p/x?k=1"),
            ("https://p/x?k=1&amp;auth=S", "https://p/x?k=1"),
            ("https://p/x?auth", "https://p/x"),
            // Not token parameters: kept byte for byte.
            (
                "https://p/x?author=a&oauth=b&x=auth",
                "https://p/x?author=a&oauth=b&x=auth",
            ),
            ("https://p/x", "https://p/x"),
            ("https://p/x?", "https://p/x?"),
            ("https://p/x?a=1&&b=%", "https://p/x?a=1&&b=%"),
            ("https://p/x#?auth=S", "https://p/x#"),
            // In the fragment too, and the shape stays (found by the fuzz target).
            ("/x.json?auth=S#t?auth=S", "/x.json#t"),
            ("/x?k=1#/page?auth=S&m=2", "/x?k=1#/page?m=2"),
            ("/x#auth=S&m=2", "/x#m=2"),
            ("/x?auth=S#", "/x#"),
            ("/x#a#auth=S?b", "/x#a?b"),
            // After a stray `&` in the path; other `&` in a path are kept.
            ("/x.json&auth=S", "/x.json"),
            ("/files/a&b.png?auth=S&k=1", "/files/a&b.png?k=1"),
        ] {
            let stripped = strip_token_params(link);
            assert_eq!(stripped, want, "{link}");
            assert_eq!(
                strip_token_params(&stripped),
                stripped,
                "idempotent: {link}"
            );
        }
    }

    #[test]
    fn scope_limit_text_matches_the_constant() {
        assert!(SCOPE_LIMIT_TEXT.ends_with(&format!(" {MAX_SCOPE_BYTES} bytes")));
        assert!(FIELD_LIMIT_TEXT.ends_with(&format!(" {MAX_FIELD_BYTES} bytes")));
        assert!(MEMBER_ID_RULE.contains(&format!(" {MAX_MEMBER_ID_BYTES} ")));
        assert!(CONNECTOR_RULE.contains(&format!(" {MAX_CONNECTOR_BYTES} ")));
    }

    #[test]
    fn identifier_rules() {
        assert!(is_valid_member_id("bac1cd5c8940947a75e0d71b1a84e348"));
        assert!(is_valid_member_id("a-b_c"));
        assert!(is_valid_member_id(&"a".repeat(64)));
        for bad in [
            "",
            "A",
            "a#b",
            "a b",
            "a.b",
            "..",
            "a\0",
            "а",
            &"a".repeat(65),
        ] {
            assert!(!is_valid_member_id(bad), "{bad:?}");
        }
        assert!(is_valid_connector_id("OL_0"));
        assert!(is_valid_connector_id("my.connector-1"));
        assert!(is_valid_connector_id(&"C".repeat(64)));
        for bad in ["", "a#b", "a b", "a\n", "ß", "a/b", &"c".repeat(65)] {
            assert!(!is_valid_connector_id(bad), "{bad:?}");
        }
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

//! The change feed's contract, `b24.change.v1`, and its derivation from the table's stream.
//!
//! A change is what a vendor's adapter acts on: a message created, edited or deleted, a dialog
//! started or finished, a connector disconnected, a line deleted, a portal installed, updated or
//! uninstalled. [`derive`] decides it from one stream record — the record's old and new image,
//! nothing else — so the feed follows the state's ownership rules and carries none of the
//! table's private layout (ranks, truncation bookkeeping, event records, token hashes).
//!
//! Rules (the table tests in this module and in `tests/changes.rs` hold them):
//! - Only a change of something a vendor acts on publishes: a duplicate or `stale` event writes
//!   nothing or nothing relevant, a late MessageAdd after an edit only sets the author and time,
//!   an older edit only counts a revision, event records, purge markers, "seen" connector
//!   records and every deletion (purge, TTL) publish nothing.
//! - A message whose first record comes from its edit (Update before Add) is one
//!   `message.created` with the edited text; a message whose first record is its delete is one
//!   `message.deleted` and never a `message.created`. After `message.deleted` nothing else of
//!   that message is published.
//! - A dialog whose first record is its finish is `dialog.started` then `dialog.finished` (the
//!   finish proves the start), so every arrival order of Start and Finish publishes the same
//!   two changes.
//! - The same change always has the same [`Change::id`] (derived from what identifies it, never
//!   from the time it was derived), so a redelivered stream record is deduplicated by id.
//! - No token, token hash or other secret is ever part of a change.

use crate::item::Item;
use crate::portal::sha256_hex;
use crate::schema::record_type;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The `schema` of every change.
pub const SCHEMA: &str = "b24.change.v1";

/// The record types a change can come from: the outbox's stream filter passes only these.
pub const SOURCE_RECORD_TYPES: &[&str] = &[
    record_type::MESSAGE,
    record_type::SESSION,
    record_type::CONNECTOR,
    record_type::LINE,
    record_type::PORTAL,
];

/// The outbox's event source filter (Lambda `FilterCriteria` pattern): inserts and updates of
/// the record types a change can come from. Deletions never publish, so they are not even
/// delivered. `template.yaml` must carry exactly this pattern (a test compares them).
pub const STREAM_FILTER: &str = r#"{"eventName":["INSERT","MODIFY"],"dynamodb":{"NewImage":{"record_type":{"S":["message","session","connector","line","portal"]}}}}"#;

/// What happened.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::VariantArray,
)]
pub enum ChangeType {
    /// A message exists (from its MessageAdd, or from its first edit when that came first).
    #[serde(rename = "message.created")]
    MessageCreated,
    /// A newer edit replaced the message's text, files, params or external ids.
    #[serde(rename = "message.edited")]
    MessageEdited,
    /// The message was deleted (terminal).
    #[serde(rename = "message.deleted")]
    MessageDeleted,
    /// A dialog session started.
    #[serde(rename = "dialog.started")]
    DialogStarted,
    /// A dialog session finished (terminal).
    #[serde(rename = "dialog.finished")]
    DialogFinished,
    /// The connector was disconnected from a line.
    #[serde(rename = "connector.disconnected")]
    ConnectorDisconnected,
    /// An open line was deleted (terminal).
    #[serde(rename = "line.deleted")]
    LineDeleted,
    /// The app was installed on the portal (first install, or a verified reinstall: a new epoch).
    #[serde(rename = "portal.installed")]
    PortalInstalled,
    /// A newer install/update of the installed app (e.g. a new version); bindings must be redone.
    #[serde(rename = "portal.updated")]
    PortalUpdated,
    /// The app was uninstalled from the portal.
    #[serde(rename = "portal.uninstalled")]
    PortalUninstalled,
}

impl ChangeType {
    /// The wire name (`message.created`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::MessageCreated => "message.created",
            ChangeType::MessageEdited => "message.edited",
            ChangeType::MessageDeleted => "message.deleted",
            ChangeType::DialogStarted => "dialog.started",
            ChangeType::DialogFinished => "dialog.finished",
            ChangeType::ConnectorDisconnected => "connector.disconnected",
            ChangeType::LineDeleted => "line.deleted",
            ChangeType::PortalInstalled => "portal.installed",
            ChangeType::PortalUpdated => "portal.updated",
            ChangeType::PortalUninstalled => "portal.uninstalled",
        }
    }
}

impl std::fmt::Display for ChangeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change event (`b24.change.v1`). Documented field by field in `shared/state/docs.md`;
/// `shared/state/schema/b24.change.v1.json` is its JSON Schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Stable identity of the change (64 hex digits): the deduplication key.
    pub id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub change_type: ChangeType,
    /// The portal.
    pub member_id: String,
    /// The portal's address (from its install), when known.
    pub domain: Option<String>,
    /// The installation generation the change belongs to.
    pub epoch: i64,
    /// Connector ID, lower-cased (as used for keys), when the change concerns one.
    pub connector: Option<String>,
    /// Connector ID exactly as Bitrix24 sent it.
    pub connector_as_sent: Option<String>,
    /// Open line ID, when the change concerns one.
    pub line: Option<i64>,
    /// `ts` of the Bitrix24 event the change comes from (Unix seconds), when it had one.
    pub occurred_at: Option<i64>,
    /// When the receiver stored it (Unix seconds).
    pub recorded_at: Option<i64>,
    /// For `message.*`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<MessageChange>,
    /// For `dialog.*`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dialog: Option<DialogChange>,
    /// For `portal.*`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub portal: Option<PortalChange>,
}

/// The message of a `message.*` change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageChange {
    /// The message inside Bitrix24.
    pub im: ImIds,
    /// The chat in the external system.
    pub chat: ChatRef,
    /// The Bitrix24 user who wrote it (`0` for automatic messages); absent once deleted.
    pub author_user_id: Option<i64>,
    /// The text with BB-codes; absent on `message.deleted`.
    pub text: Option<String>,
    /// Whether the text was cut to the stored limit.
    pub text_truncated: bool,
    /// Files as Bitrix24 described them (no token in any link); empty on `message.deleted`.
    pub files: Vec<Value>,
    /// Whether files were left out (more than the stored limit).
    pub files_truncated: bool,
    /// `message.params` as sent (string map).
    pub params: Map<String, Value>,
    /// External message IDs (the connector's own IDs for the message).
    pub ids: Vec<String>,
    /// How many edits the message has seen.
    pub revision: i64,
    /// `ts` of the winning edit, when edited.
    pub edited_at: Option<i64>,
    /// Who made the winning edit.
    pub edited_by: Option<i64>,
}

/// `im.chat_id` / `im.message_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImIds {
    /// Open-line chat ID in Bitrix24.
    pub chat_id: Option<i64>,
    /// Message ID in Bitrix24.
    pub message_id: i64,
}

/// The chat in the external system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRef {
    /// External chat ID.
    pub id: Option<String>,
}

/// The session of a `dialog.*` change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DialogChange {
    /// Open-line session ID.
    pub session_id: i64,
    /// The previous session of the chat.
    pub parent_id: Option<i64>,
    /// The chat in the external system.
    pub chat: ChatRef,
    /// The external user.
    pub user: UserRef,
    /// Minutes until the session closes by itself.
    pub close_term: Option<i64>,
    /// `open` or `closed` (the session's state when the change was derived).
    pub status: String,
    /// `ts` of DialogStart, once it arrived.
    pub started_at: Option<i64>,
    /// `ts` of DialogFinish, once it arrived.
    pub finished_at: Option<i64>,
}

/// The external user of a dialog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    /// External user ID.
    pub id: Option<String>,
}

/// The portal of a `portal.*` change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortalChange {
    /// Installed after this change.
    pub installed: bool,
    /// App version.
    pub version: Option<String>,
    /// App version before an update (ONAPPUPDATE's `PREVIOUS_VERSION`).
    pub previous_version: Option<String>,
    /// App status (`F`, `L`, `S`, ...).
    pub app_status: Option<String>,
    /// The portal's REST endpoint.
    pub client_endpoint: Option<String>,
    /// The portal's language.
    pub language_id: Option<String>,
    /// `portal.uninstalled`: the user asked to delete the app's data (`CLEAN=1`; the receiver
    /// purges the portal's records).
    pub clean: Option<bool>,
}

impl Change {
    /// SQS FIFO `MessageGroupId`: one portal's chat (external chat ID, else the Bitrix24 chat)
    /// for messages and dialogs, one portal's line for connector and line changes, the portal
    /// for portal changes. At most 128 characters of SQS's allowed set: an external chat ID
    /// that is long or has other characters is replaced by a hash of it.
    pub fn group_id(&self) -> String {
        let chat = |external: Option<&str>, fallback: String| match external {
            Some(id) if group_safe(id) => format!("{}:chat:{id}", self.member_id),
            Some(id) => format!(
                "{}:chat#{}",
                self.member_id,
                &sha256_hex(id.as_bytes())[..32]
            ),
            None => format!("{}:{fallback}", self.member_id),
        };
        let line = || match self.line {
            Some(l) => format!("{}:line:{l}", self.member_id),
            None => format!("{}:portal", self.member_id),
        };
        match self.change_type {
            ChangeType::MessageCreated | ChangeType::MessageEdited | ChangeType::MessageDeleted => {
                match &self.message {
                    Some(m) => chat(
                        m.chat.id.as_deref(),
                        match m.im.chat_id {
                            Some(c) => format!("im:{c}"),
                            None => "im:unknown".into(),
                        },
                    ),
                    None => line(),
                }
            }
            ChangeType::DialogStarted | ChangeType::DialogFinished => match &self.dialog {
                Some(d) => chat(d.chat.id.as_deref(), format!("session:{}", d.session_id)),
                None => line(),
            },
            ChangeType::ConnectorDisconnected | ChangeType::LineDeleted => line(),
            ChangeType::PortalInstalled
            | ChangeType::PortalUpdated
            | ChangeType::PortalUninstalled => format!("{}:portal", self.member_id),
        }
    }

    /// Shortens the change until its JSON is at most `max_bytes` (SQS and EventBridge refuse
    /// larger messages): first the message text (cut at a character boundary, marked
    /// `text_truncated`), then its files and params (marked `files_truncated`). Real messages
    /// are far below the limit; only a pathological text (e.g. 64 KiB of characters JSON
    /// escapes six-fold) ever gets here.
    pub fn fit_within(&mut self, max_bytes: usize) {
        let mut len = self.to_json_string().len();
        while len > max_bytes {
            let Some(m) = self.message.as_mut() else {
                return;
            };
            match m.text.as_mut() {
                Some(text) if !text.is_empty() => {
                    // Cut at least the excess (JSON grows at most six bytes per byte of text).
                    let excess = len - max_bytes;
                    let keep = text.len().saturating_sub(excess.max(text.len() / 8).max(1));
                    let mut cut = keep.min(text.len());
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                    m.text_truncated = true;
                }
                _ if !m.files.is_empty() || !m.params.is_empty() => {
                    m.files.clear();
                    m.params.clear();
                    m.files_truncated = true;
                }
                _ => return,
            }
            len = self.to_json_string().len();
        }
    }

    /// The change as one line of JSON.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(self).expect("a change always serializes")
    }
}

/// An external chat ID usable as is in a group ID.
fn group_safe(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 48
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b'+'))
}

/// The changes one stream record publishes, in order. `old` and `new` are the record's images
/// as plain JSON (absent for an insert or a removal); `portal_domain` is the portal's domain
/// for records that do not carry it (the outbox reads it from the portal record). Malformed
/// or foreign images publish nothing.
pub fn derive(old: Option<&Item>, new: Option<&Item>, portal_domain: Option<&str>) -> Vec<Change> {
    // Deletions (purge, TTL) never publish: a vendor is told of uninstalls, not of clean-up.
    let Some(new) = new else {
        return Vec::new();
    };
    let old = old.filter(|o| !o.is_empty());
    let Some(kind) = str_of(new, "record_type") else {
        return Vec::new();
    };
    if old.is_some_and(|o| str_of(o, "record_type") != Some(kind)) {
        return Vec::new();
    }
    let Some(base) = Base::of(new, portal_domain) else {
        return Vec::new();
    };
    match kind {
        record_type::MESSAGE => message(old, new, &base),
        record_type::SESSION => dialog(old, new, &base),
        record_type::CONNECTOR => connector(old, new, &base),
        record_type::LINE => line(old, new, &base),
        record_type::PORTAL => portal(old, new, &base),
        _ => Vec::new(),
    }
}

/// What every change of one record shares.
struct Base {
    member_id: String,
    domain: Option<String>,
    epoch: i64,
    connector: Option<String>,
    connector_as_sent: Option<String>,
    line: Option<i64>,
    recorded_at: Option<i64>,
}

impl Base {
    fn of(new: &Item, portal_domain: Option<&str>) -> Option<Base> {
        // Only our records carry a valid member_id (keys are built from it): anything else is
        // not a portal's record and publishes nothing.
        let member_id = crate::MemberId::new(str_of(new, "member_id")?).ok()?;
        Some(Base {
            member_id: member_id.as_str().to_string(),
            domain: str_of(new, "domain").or(portal_domain).map(str::to_string),
            epoch: int_of(new, "epoch").unwrap_or(0),
            connector: str_of(new, "connector").map(str::to_string),
            connector_as_sent: str_of(new, "connector_as_sent")
                .or(str_of(new, "connector"))
                .map(str::to_string),
            line: int_of(new, "line"),
            recorded_at: int_of(new, "updated_at"),
        })
    }

    /// A change whose identity is `subject` (with the type, portal and epoch).
    fn change(&self, t: ChangeType, subject: Value, occurred_at: Option<i64>) -> Change {
        let identity = json!([t.as_str(), self.member_id, self.epoch, subject]).to_string();
        Change {
            schema: SCHEMA.to_string(),
            id: sha256_hex(identity.as_bytes()),
            change_type: t,
            member_id: self.member_id.clone(),
            domain: self.domain.clone(),
            epoch: self.epoch,
            connector: self.connector.clone(),
            connector_as_sent: self.connector_as_sent.clone(),
            line: self.line,
            occurred_at,
            recorded_at: self.recorded_at,
            message: None,
            dialog: None,
            portal: None,
        }
    }
}

fn str_of<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(Value::as_str)
}

fn int_of(item: &Item, k: &str) -> Option<i64> {
    item.get(k).and_then(Value::as_i64)
}

fn bool_of(item: &Item, k: &str) -> Option<bool> {
    item.get(k).and_then(Value::as_bool)
}

fn message(old: Option<&Item>, new: &Item, base: &Base) -> Vec<Change> {
    let Some(message_id) = int_of(new, "message_id") else {
        return Vec::new();
    };
    let deleted = |i: &Item| str_of(i, "status") == Some("deleted");
    let t = match old {
        // Nothing is published after the tombstone (it is terminal anyway).
        Some(o) if deleted(o) => return Vec::new(),
        _ if deleted(new) => ChangeType::MessageDeleted,
        None => ChangeType::MessageCreated,
        // Only a newer winning edit changes what the vendor shows; a late MessageAdd (author,
        // time) or an older edit (revision count) does not.
        Some(o) if o.get("edit_rank") != new.get("edit_rank") => ChangeType::MessageEdited,
        Some(_) => return Vec::new(),
    };
    let (subject, occurred_at) = match t {
        ChangeType::MessageEdited => (
            json!([message_id, new.get("edit_rank")]),
            int_of(new, "edited_at"),
        ),
        ChangeType::MessageDeleted => (json!([message_id]), int_of(new, "deleted_at")),
        _ => (
            json!([message_id]),
            int_of(new, "added_at").or(int_of(new, "edited_at")),
        ),
    };
    let mut c = base.change(t, subject, occurred_at);
    let strings = |k: &str| -> Vec<String> {
        new.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    c.message = Some(MessageChange {
        im: ImIds {
            chat_id: int_of(new, "chat_id"),
            message_id,
        },
        chat: ChatRef {
            id: str_of(new, "external_chat_id").map(str::to_string),
        },
        author_user_id: int_of(new, "author_user_id"),
        text: str_of(new, "text").map(str::to_string),
        text_truncated: bool_of(new, "text_truncated").unwrap_or(false),
        files: new
            .get("files")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        files_truncated: bool_of(new, "files_truncated").unwrap_or(false),
        params: new
            .get("params")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        ids: strings("ids"),
        revision: int_of(new, "revisions").unwrap_or(0),
        edited_at: int_of(new, "edited_at"),
        edited_by: int_of(new, "edited_by"),
    });
    vec![c]
}

fn dialog(old: Option<&Item>, new: &Item, base: &Base) -> Vec<Change> {
    let Some(session_id) = int_of(new, "session_id") else {
        return Vec::new();
    };
    let closed = |i: &Item| bool_of(i, "closed") == Some(true);
    let types: &[ChangeType] = match old {
        None if closed(new) => &[ChangeType::DialogStarted, ChangeType::DialogFinished],
        None => &[ChangeType::DialogStarted],
        Some(o) if !closed(o) && closed(new) => &[ChangeType::DialogFinished],
        Some(_) => &[],
    };
    let d = DialogChange {
        session_id,
        parent_id: int_of(new, "parent_id"),
        chat: ChatRef {
            id: str_of(new, "external_chat_id").map(str::to_string),
        },
        user: UserRef {
            id: str_of(new, "external_user_id").map(str::to_string),
        },
        close_term: int_of(new, "close_term"),
        status: if closed(new) { "closed" } else { "open" }.to_string(),
        started_at: int_of(new, "started_at"),
        finished_at: int_of(new, "finished_at"),
    };
    types
        .iter()
        .map(|&t| {
            let occurred_at = match t {
                ChangeType::DialogFinished => d.finished_at,
                _ => d.started_at.or(d.finished_at),
            };
            let mut c = base.change(t, json!([session_id]), occurred_at);
            c.dialog = Some(d.clone());
            c
        })
        .collect()
}

fn connector(old: Option<&Item>, new: &Item, base: &Base) -> Vec<Change> {
    if str_of(new, "status") != Some("disconnected") {
        return Vec::new();
    }
    // Each disconnection (a newer StatusDelete) is its own change; anything else is not.
    let rank = new.get("disconnect_rank");
    if old.is_some_and(|o| {
        str_of(o, "status") == Some("disconnected") && o.get("disconnect_rank") == rank
    }) {
        return Vec::new();
    }
    vec![base.change(
        ChangeType::ConnectorDisconnected,
        json!([base.line, base.connector, rank]),
        int_of(new, "disconnected_at"),
    )]
}

fn line(old: Option<&Item>, new: &Item, base: &Base) -> Vec<Change> {
    let gone = |i: &Item| str_of(i, "status") == Some("line_deleted");
    if !gone(new) || old.is_some_and(gone) {
        return Vec::new();
    }
    vec![base.change(
        ChangeType::LineDeleted,
        json!([base.line]),
        int_of(new, "deleted_at"),
    )]
}

fn portal(old: Option<&Item>, new: &Item, base: &Base) -> Vec<Change> {
    let installed = |i: &Item| bool_of(i, "installed") == Some(true);
    let same_epoch = |o: &Item| int_of(o, "epoch") == int_of(new, "epoch");
    let (t, subject, occurred_at) = match old {
        _ if installed(new) && !old.is_some_and(|o| installed(o) && same_epoch(o)) => (
            ChangeType::PortalInstalled,
            json!([]),
            int_of(new, "installed_at"),
        ),
        Some(o) if installed(new) && o.get("install_rank") != new.get("install_rank") => (
            ChangeType::PortalUpdated,
            json!([new.get("install_rank")]),
            int_of(new, "installed_at"),
        ),
        Some(o) if installed(o) && !installed(new) => (
            ChangeType::PortalUninstalled,
            json!([]),
            int_of(new, "uninstalled_at"),
        ),
        _ => return Vec::new(),
    };
    let mut c = base.change(t, subject, occurred_at);
    // The portal record is not about a line or connector.
    c.line = None;
    c.connector = None;
    c.connector_as_sent = None;
    let text = |k: &str| str_of(new, k).map(str::to_string);
    c.portal = Some(PortalChange {
        installed: installed(new),
        version: text("version"),
        previous_version: text("previous_version"),
        app_status: text("app_status"),
        client_endpoint: text("client_endpoint"),
        language_id: text("language_id").or_else(|| text("uninstall_language_id")),
        clean: match t {
            ChangeType::PortalUninstalled => bool_of(new, "uninstall_clean"),
            _ => None,
        },
    });
    vec![c]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(v: Value) -> Item {
        v.as_object().cloned().unwrap()
    }

    fn msg(extra: Value) -> Item {
        let mut m = item(json!({
            "pk": "PORTAL#p#MSG#3", "sk": "MSG#000000000007", "record_type": "message",
            "member_id": "p", "epoch": 1, "updated_at": 100, "message_id": 7, "chat_id": 1807,
            "line": 107, "connector": "myconnector", "connector_as_sent": "MyConnector",
            "external_chat_id": "channel-123"
        }));
        m.extend(item(extra));
        m
    }

    fn types(v: &[Change]) -> Vec<ChangeType> {
        v.iter().map(|c| c.change_type).collect()
    }

    #[test]
    fn a_message_is_created_edited_and_deleted_once_each() {
        let added = msg(
            json!({"status": "sent", "text": "hi", "added_at": 10, "author_user_id": 27, "revisions": 0}),
        );
        let c = derive(None, Some(&added), Some("x.bitrix24.ru"));
        assert_eq!(types(&c), [ChangeType::MessageCreated]);
        let m = c[0].message.as_ref().unwrap();
        assert_eq!(
            (m.text.as_deref(), m.author_user_id, m.revision),
            (Some("hi"), Some(27), 0)
        );
        assert_eq!(c[0].occurred_at, Some(10));
        assert_eq!(c[0].domain.as_deref(), Some("x.bitrix24.ru"));
        assert_eq!(c[0].connector_as_sent.as_deref(), Some("MyConnector"));

        let edited = msg(
            json!({"status": "edited", "text": "hello", "added_at": 10, "edit_rank": "r2", "edited_at": 12, "revisions": 1}),
        );
        let c = derive(Some(&added), Some(&edited), None);
        assert_eq!(types(&c), [ChangeType::MessageEdited]);
        assert_eq!(
            c[0].message.as_ref().unwrap().text.as_deref(),
            Some("hello")
        );
        assert_eq!(c[0].occurred_at, Some(12));

        // An older edit: only the revision count moves.
        let older = msg(
            json!({"status": "edited", "text": "hello", "added_at": 10, "edit_rank": "r2", "edited_at": 12, "revisions": 2}),
        );
        assert!(derive(Some(&edited), Some(&older), None).is_empty());

        let deleted = msg(json!({"status": "deleted", "deleted_at": 20, "ids": ["e1"]}));
        let c = derive(Some(&older), Some(&deleted), None);
        assert_eq!(types(&c), [ChangeType::MessageDeleted]);
        assert_eq!(c[0].message.as_ref().unwrap().text, None);
        assert_eq!(c[0].message.as_ref().unwrap().ids, ["e1"]);
        // Anything after the tombstone (a newer delete, late writes): nothing.
        let again = msg(json!({"status": "deleted", "deleted_at": 25, "ids": ["e1"]}));
        assert!(derive(Some(&deleted), Some(&again), None).is_empty());
    }

    #[test]
    fn an_edit_first_is_created_and_a_late_add_is_nothing() {
        let edited = msg(
            json!({"status": "edited", "text": "v2", "edit_rank": "r", "edited_at": 12, "revisions": 1}),
        );
        let c = derive(None, Some(&edited), None);
        assert_eq!(types(&c), [ChangeType::MessageCreated]);
        assert_eq!(c[0].message.as_ref().unwrap().text.as_deref(), Some("v2"));
        assert_eq!(c[0].occurred_at, Some(12));
        let late_add = msg(
            json!({"status": "edited", "text": "v2", "edit_rank": "r", "edited_at": 12, "revisions": 1, "added_at": 10, "author_user_id": 27, "updated_at": 130}),
        );
        assert!(derive(Some(&edited), Some(&late_add), None).is_empty());
    }

    #[test]
    fn a_delete_first_is_deleted_and_never_created() {
        let deleted = msg(json!({"status": "deleted", "deleted_at": 20}));
        assert_eq!(
            types(&derive(None, Some(&deleted), None)),
            [ChangeType::MessageDeleted]
        );
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = msg(json!({"status": "sent", "text": "hi", "added_at": 10}));
        let later = msg(json!({"status": "sent", "text": "hi", "added_at": 10, "updated_at": 999}));
        let c1 = derive(None, Some(&a), None);
        let c2 = derive(None, Some(&later), None);
        assert_eq!(
            c1[0].id, c2[0].id,
            "the time of derivation is not part of the id"
        );
        let e1 = msg(json!({"status": "edited", "edit_rank": "r1"}));
        let e2 = msg(json!({"status": "edited", "edit_rank": "r2"}));
        let d1 = derive(Some(&a), Some(&e1), None);
        let d2 = derive(Some(&e1), Some(&e2), None);
        assert_ne!(d1[0].id, d2[0].id, "each edit is its own change");
        assert_ne!(c1[0].id, d1[0].id);
        assert_eq!(c1[0].id.len(), 64);
    }

    #[test]
    fn dialogs_start_and_finish_in_either_order() {
        let base = json!({"pk": "PORTAL#p", "sk": "SESSION#000000000900", "record_type": "session",
            "member_id": "p", "epoch": 1, "session_id": 900, "external_chat_id": "c", "line": 107});
        let mut open = item(base.clone());
        open.extend(item(
            json!({"status": "open", "closed": false, "started_at": 5}),
        ));
        let mut closed = item(base.clone());
        closed.extend(item(
            json!({"status": "closed", "closed": true, "started_at": 5, "finished_at": 9}),
        ));
        let start_first = [
            derive(None, Some(&open), None),
            derive(Some(&open), Some(&closed), None),
        ]
        .concat();
        let mut finish_only = item(base);
        finish_only.extend(item(
            json!({"status": "closed", "closed": true, "finished_at": 9}),
        ));
        let finish_first = [
            derive(None, Some(&finish_only), None),
            derive(Some(&finish_only), Some(&closed), None),
        ]
        .concat();
        let ids = |v: &[Change]| {
            v.iter()
                .map(|c| (c.change_type, c.id.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            types(&start_first),
            [ChangeType::DialogStarted, ChangeType::DialogFinished]
        );
        assert_eq!(ids(&start_first), ids(&finish_first));
    }

    #[test]
    fn portals_install_update_and_uninstall() {
        let p = |v: Value| {
            let mut i = item(
                json!({"pk": "PORTAL#p", "sk": "PORTAL", "record_type": "portal",
                "member_id": "p", "domain": "x.bitrix24.ru", "token_hash": "ab".repeat(32)}),
            );
            i.extend(item(v));
            i
        };
        let installed = p(
            json!({"installed": true, "epoch": 1, "install_rank": "a", "installed_at": 1, "version": "1"}),
        );
        let c = derive(None, Some(&installed), None);
        assert_eq!(types(&c), [ChangeType::PortalInstalled]);
        assert_eq!(c[0].domain.as_deref(), Some("x.bitrix24.ru"));
        assert!(
            !c[0].to_json_string().contains(&"ab".repeat(32)),
            "no token hash"
        );
        let updated = p(
            json!({"installed": true, "epoch": 1, "install_rank": "b", "installed_at": 2, "version": "2"}),
        );
        assert_eq!(
            types(&derive(Some(&installed), Some(&updated), None)),
            [ChangeType::PortalUpdated]
        );
        assert!(derive(Some(&updated), Some(&updated), None).is_empty());
        let gone = p(
            json!({"installed": false, "epoch": 1, "install_rank": "b", "uninstalled_at": 3, "uninstall_clean": true}),
        );
        let c = derive(Some(&updated), Some(&gone), None);
        assert_eq!(types(&c), [ChangeType::PortalUninstalled]);
        assert_eq!(c[0].portal.as_ref().unwrap().clean, Some(true));
        // Facts of a stale install written to an uninstalled portal: nothing.
        let facts =
            p(json!({"installed": false, "epoch": 1, "install_rank": "c", "uninstalled_at": 3}));
        assert!(derive(Some(&gone), Some(&facts), None).is_empty());
        // A verified reinstall: a new epoch is installed again.
        let again =
            p(json!({"installed": true, "epoch": 2, "install_rank": "d", "installed_at": 4}));
        let c = derive(Some(&gone), Some(&again), None);
        assert_eq!(types(&c), [ChangeType::PortalInstalled]);
        assert_ne!(c[0].id, derive(None, Some(&installed), None)[0].id);
    }

    #[test]
    fn removals_event_records_and_foreign_images_publish_nothing() {
        let a = msg(json!({"status": "sent"}));
        assert!(derive(Some(&a), None, None).is_empty());
        let event = item(json!({"record_type": "event", "member_id": "p", "epoch": 1}));
        assert!(derive(None, Some(&event), None).is_empty());
        let purge = item(
            json!({"record_type": "purge", "member_id": "p", "epoch": 1, "status": "pending"}),
        );
        assert!(derive(None, Some(&purge), None).is_empty());
        let no_member = item(json!({"record_type": "message", "message_id": 1}));
        assert!(derive(None, Some(&no_member), None).is_empty());
        let seen = item(
            json!({"record_type": "connector", "member_id": "p", "epoch": 1, "line": 1, "connector": "c", "status": "active"}),
        );
        assert!(derive(None, Some(&seen), None).is_empty());
        // A record that changed its type is not ours to interpret.
        assert!(derive(Some(&seen), Some(&a), None).is_empty());
    }

    #[test]
    fn connectors_and_lines() {
        let c = |v: Value| {
            let mut i = item(
                json!({"record_type": "connector", "member_id": "p", "epoch": 1, "line": 7, "connector": "c", "connector_as_sent": "C"}),
            );
            i.extend(item(v));
            i
        };
        let active = c(json!({"status": "active"}));
        let off =
            c(json!({"status": "disconnected", "disconnect_rank": "r1", "disconnected_at": 5}));
        assert_eq!(
            types(&derive(Some(&active), Some(&off), None)),
            [ChangeType::ConnectorDisconnected]
        );
        assert!(derive(Some(&off), Some(&off), None).is_empty());
        let again =
            c(json!({"status": "disconnected", "disconnect_rank": "r2", "disconnected_at": 9}));
        assert_eq!(
            types(&derive(Some(&off), Some(&again), None)),
            [ChangeType::ConnectorDisconnected]
        );
        let line = item(
            json!({"record_type": "line", "member_id": "p", "epoch": 1, "line": 7, "status": "line_deleted", "deleted_at": 3}),
        );
        assert_eq!(
            types(&derive(None, Some(&line), None)),
            [ChangeType::LineDeleted]
        );
        assert!(derive(Some(&line), Some(&line), None).is_empty());
    }

    #[test]
    fn group_ids_fit_sqs() {
        let mut long = msg(json!({"status": "sent"}));
        long.insert("external_chat_id".into(), json!("чат/".repeat(40)));
        let c = &derive(None, Some(&long), None)[0];
        let g = c.group_id();
        assert!(g.len() <= 128 && g.is_ascii(), "{g}");
        assert!(g.starts_with("p:chat#"));
        let plain = &derive(None, Some(&msg(json!({"status": "sent"}))), None)[0];
        assert_eq!(plain.group_id(), "p:chat:channel-123");
    }

    #[test]
    fn the_filter_names_every_source_record_type() {
        let f: Value = serde_json::from_str(STREAM_FILTER).unwrap();
        let listed: Vec<&str> = f["dynamodb"]["NewImage"]["record_type"]["S"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(listed, SOURCE_RECORD_TYPES);
    }
}

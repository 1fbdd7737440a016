//! Pure transition logic: an [`Event`] → the writes it causes. No I/O.
//!
//! [`plan`] turns one event into a [`Plan`]: an idempotency key, the secret-free event record,
//! and conditional [`Update`]s whose conditions encode the ownership rules of the crate docs, so
//! that any arrival order of the same set of events yields the same records. [`run`] executes a
//! plan exactly once against any [`Backend`] (DynamoDB, or memory in the unit tests) and
//! classifies the outcome.

use crate::error::StoreError;
use crate::item::{Cond, Item, Key, Put, Update, Write};
use crate::portal::{hash_token, sha256_hex};
use crate::schema;
use crate::Outcome;
use b24_events::{Event, EventData, EventKind, MessageItem};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Texts longer than this (bytes of UTF-8) are cut at a character boundary and flagged
/// `text_truncated`, so a message record stays far below DynamoDB's 400 KB item limit.
pub const TEXT_LIMIT_BYTES: usize = 64 * 1024;
/// At most this many external IDs are kept per message (`ids_truncated` beyond).
pub const MAX_IDS: usize = 100;
/// External IDs longer than this are cut (`ids_truncated`).
pub const ID_LIMIT_BYTES: usize = 1024;
/// At most this many `files` entries are kept per message (`files_truncated` beyond).
pub const MAX_FILES: usize = 100;
/// The normalized event stored in an event record is reduced (texts cut, then files dropped,
/// then `data` omitted) until its JSON fits in this many bytes (`event_truncated`).
pub const EVENT_JSON_LIMIT_BYTES: usize = 256 * 1024;
/// State writes per transaction (DynamoDB allows 100 actions and 4 MB; 50 × 64 KiB texts plus
/// the event record stay under 4 MB). Events with more items are applied in several
/// transactions, each with its own event record (`part` n of `parts`).
pub const MAX_WRITES_PER_TRANSACTION: usize = 50;
/// Default TTL of event records.
pub const DEFAULT_EVENT_TTL_DAYS: i64 = 30;
/// `TransactionConflict` retries before giving up with [`StoreError::Contention`].
pub const MAX_CONFLICT_RETRIES: u32 = 8;

/// Whether a state write decides the outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The event's own fact (message, session, line, connector status, portal). If every
    /// primary write is refused by its condition the event is `stale`.
    Primary,
    /// A side fact (the connector seen on a line): unconditional, idempotent, rides along with
    /// the primary writes and is dropped when the event is stale.
    Seen,
}

/// One state change of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct StateWrite {
    /// The update to try first.
    pub update: Update,
    /// What to write instead when `update`'s condition fails and the fallback's own condition
    /// holds on the current item (e.g. an older edit still counts as a revision).
    pub fallback: Option<Update>,
    /// Primary or side fact.
    pub role: Role,
    /// ONAPPUNINSTALL with `CLEAN=1`: purge the portal when this write (not its fallback) commits.
    pub purge_portal: bool,
}

impl StateWrite {
    fn primary(update: Update) -> Self {
        StateWrite {
            update,
            fallback: None,
            role: Role::Primary,
            purge_portal: false,
        }
    }
    fn seen(update: Update) -> Self {
        StateWrite {
            update,
            fallback: None,
            role: Role::Seen,
            purge_portal: false,
        }
    }
    fn or_else(mut self, fallback: Update) -> Self {
        self.fallback = Some(fallback);
        self
    }
}

/// One transaction's worth of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    /// Key of the event record (`attribute_not_exists` makes the chunk exactly-once).
    pub record_key: Key,
    /// The event record without its `outcome` (added when the outcome is known).
    pub record: Item,
    /// State changes.
    pub writes: Vec<StateWrite>,
}

/// Everything one event causes.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The portal.
    pub member_id: String,
    /// The canonical idempotency key (JSON array of the event's natural identity).
    pub idempotency_key: String,
    /// SHA-256 hex of `idempotency_key` (the event record's sort key).
    pub key_hash: String,
    /// One or more transactions (more only beyond [`MAX_WRITES_PER_TRANSACTION`]).
    pub chunks: Vec<Chunk>,
}

// ---------------------------------------------------------------------------------------------

/// Cuts `s` to at most `limit` bytes at a character boundary.
pub fn truncate_text(s: &str, limit: usize) -> (String, bool) {
    if s.len() <= limit {
        return (s.to_string(), false);
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (s[..end].to_string(), true)
}

/// A sortable rank: `ts` zero-padded, then a hash of what distinguishes facts with equal `ts`
/// (ties are broken deterministically).
pub fn rank(ts: Option<i64>, discriminator: &str) -> String {
    format!(
        "{:020}#{}",
        ts.unwrap_or(0).max(0),
        &sha256_hex(discriminator.as_bytes())[..16]
    )
}

fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map(Into::into).unwrap_or(Value::Null)
}

struct Content {
    text: String,
    text_truncated: bool,
    ids: Vec<String>,
    ids_truncated: bool,
    files: Value,
    files_truncated: bool,
}

fn content(m: &MessageItem) -> Content {
    let (text, text_truncated) =
        truncate_text(m.message.text.as_deref().unwrap_or(""), TEXT_LIMIT_BYTES);
    let (ids, ids_truncated) = cap_ids(&m.message.ids);
    let files_truncated = m.message.files.len() > MAX_FILES;
    let files = serde_json::to_value(&m.message.files[..m.message.files.len().min(MAX_FILES)])
        .expect("files serialize");
    Content {
        text,
        text_truncated,
        ids,
        ids_truncated,
        files,
        files_truncated,
    }
}

fn cap_ids(ids: &[String]) -> (Vec<String>, bool) {
    let mut cut = ids.len() > MAX_IDS;
    let v = ids
        .iter()
        .take(MAX_IDS)
        .map(|i| {
            let (s, t) = truncate_text(i, ID_LIMIT_BYTES);
            cut |= t;
            s
        })
        .collect();
    (v, cut)
}

/// The normalized event reduced to fit [`EVENT_JSON_LIMIT_BYTES`]; `true` when reduced.
pub fn bounded_event_json(event: &Event) -> (Value, bool) {
    let mut v = event.to_json();
    let size = |v: &Value| {
        serde_json::to_string(v)
            .map(|s| s.len())
            .unwrap_or(usize::MAX)
    };
    if size(&v) <= EVENT_JSON_LIMIT_BYTES {
        return (v, false);
    }
    let n = match &event.data {
        EventData::Messages(m) => m.messages.len().max(1),
        _ => 1,
    };
    let per_text = (EVENT_JSON_LIMIT_BYTES / 2 / n).min(TEXT_LIMIT_BYTES);
    if let Some(items) = v
        .pointer_mut("/data/messages")
        .and_then(Value::as_array_mut)
    {
        for it in items.iter_mut() {
            if let Some(t) = it.pointer_mut("/message/text") {
                if let Some(s) = t.as_str() {
                    *t = Value::String(truncate_text(s, per_text).0);
                }
            }
        }
    }
    if size(&v) <= EVENT_JSON_LIMIT_BYTES {
        return (v, true);
    }
    if let Some(items) = v
        .pointer_mut("/data/messages")
        .and_then(Value::as_array_mut)
    {
        for it in items.iter_mut() {
            if let Some(f) = it.pointer_mut("/message/files") {
                *f = json!([]);
            }
        }
    }
    if size(&v) <= EVENT_JSON_LIMIT_BYTES {
        return (v, true);
    }
    v["data"] = json!({"omitted": "too large to store"});
    (v, true)
}

/// The canonical idempotency key of an event (see the crate docs).
pub fn idempotency_key(event: &Event) -> String {
    let member = &event.auth.member_id;
    let code = event.kind.code();
    let v = match (&event.kind, &event.data) {
        (EventKind::MessageAdd, EventData::Messages(d)) => {
            let ids: BTreeSet<i64> = d.messages.iter().map(|m| m.im.message_id).collect();
            json!([code, member, ids])
        }
        (EventKind::MessageUpdate, EventData::Messages(d)) => {
            let items: BTreeSet<String> = d
                .messages
                .iter()
                .map(|m| {
                    json!([m.im.message_id, event.ts, m.message.text, m.message.ids]).to_string()
                })
                .collect();
            json!([code, member, items])
        }
        (EventKind::MessageDelete, EventData::Messages(d)) => {
            let items: BTreeSet<String> = d
                .messages
                .iter()
                .map(|m| json!([m.im.message_id, m.message.ids]).to_string())
                .collect();
            json!([code, member, items])
        }
        (_, EventData::Dialogs(d)) => {
            let ids: BTreeSet<i64> = d.dialogs.iter().map(|x| x.session.id).collect();
            json!([code, member, ids])
        }
        (_, EventData::StatusDelete(s)) => json!([code, member, s.connector, s.line, event.ts]),
        (_, EventData::LineDelete(l)) => json!([code, member, l.line]),
        (_, EventData::App(_)) | (_, EventData::AppUninstall(_)) => {
            json!([code, member, event.ts, token_hash(event)])
        }
        // A kind/data mismatch cannot come out of the decoder; key it on the whole event.
        _ => json!([code, member, event.to_json_string()]),
    };
    v.to_string()
}

fn token_hash(event: &Event) -> String {
    event
        .auth
        .application_token
        .as_ref()
        .filter(|t| !t.is_empty())
        .map(hash_token)
        .unwrap_or_default()
}

/// Builds the plan of one event received at `now` (Unix seconds).
pub fn plan(event: &Event, now: i64, ttl_days: i64) -> Plan {
    let member = event.auth.member_id.clone();
    let idempotency_key = idempotency_key(event);
    let key_hash = sha256_hex(idempotency_key.as_bytes());
    let (mut primaries, seen) = state_writes(event, now);
    let (event_json, event_truncated) = bounded_event_json(event);

    let mut groups: Vec<Vec<StateWrite>> = Vec::new();
    while primaries.len() > MAX_WRITES_PER_TRANSACTION {
        let rest = primaries.split_off(MAX_WRITES_PER_TRANSACTION);
        groups.push(std::mem::replace(&mut primaries, rest));
    }
    groups.push(primaries);
    groups[0].extend(seen);
    let parts = groups.len();

    let chunks = groups
        .into_iter()
        .enumerate()
        .map(|(i, writes)| {
            let hash = if i == 0 {
                key_hash.clone()
            } else {
                sha256_hex(format!("{idempotency_key}#part{i}").as_bytes())
            };
            let record_key = Key {
                pk: schema::event_pk(&member, &hash),
                sk: schema::event_sk(&hash),
            };
            let mut record = Item::new();
            record.insert("record_type".into(), "event".into());
            record.insert("member_id".into(), member.clone().into());
            record.insert("event_code".into(), event.kind.code().into());
            record.insert("idempotency_key".into(), hash.into());
            record.insert("received_at".into(), now.into());
            record.insert(
                schema::TTL_ATTRIBUTE.into(),
                (now + ttl_days * 86_400).into(),
            );
            if i == 0 {
                record.insert("event".into(), event_json.clone());
                record.insert("event_truncated".into(), event_truncated.into());
            } else {
                record.insert("part_of".into(), key_hash.clone().into());
            }
            if parts > 1 {
                record.insert("part".into(), (i as i64).into());
                record.insert("parts".into(), (parts as i64).into());
            }
            Chunk {
                record_key,
                record,
                writes,
            }
        })
        .collect();

    Plan {
        member_id: member,
        idempotency_key,
        key_hash,
        chunks,
    }
}

/// The primary and the "seen" writes of an event.
fn state_writes(event: &Event, now: i64) -> (Vec<StateWrite>, Vec<StateWrite>) {
    let member = event.auth.member_id.as_str();
    let ts = event.ts;
    let mut primaries = Vec::new();
    let mut seen: BTreeMap<Key, StateWrite> = BTreeMap::new();
    let mut see = |line: Option<i64>, connector: Option<&str>| {
        if let (Some(line), Some(c)) = (line, connector) {
            let key = Key {
                pk: schema::portal_pk(member),
                sk: schema::connector_sk(line, c),
            };
            let u = Update::new(key.clone())
                .set("record_type", "connector")
                .set("member_id", member)
                .set("connector", c)
                .set("line", line)
                .keep("status", "active");
            seen.insert(key, StateWrite::seen(u));
        }
    };

    match (&event.kind, &event.data) {
        (
            kind @ (EventKind::MessageAdd | EventKind::MessageUpdate | EventKind::MessageDelete),
            EventData::Messages(d),
        ) => {
            see(d.line, d.connector.as_deref());
            let mut by_id: BTreeMap<i64, Vec<&MessageItem>> = BTreeMap::new();
            for m in &d.messages {
                by_id.entry(m.im.message_id).or_default().push(m);
            }
            for (id, items) in by_id {
                let key = Key {
                    pk: schema::message_pk(member, id),
                    sk: schema::message_sk(id),
                };
                let first = items[0];
                let identity = |u: Update| {
                    u.set("record_type", "message")
                        .set("member_id", member)
                        .set("message_id", id)
                        .keep("chat_id", first.im.chat_id)
                        .keep_some("line", d.line)
                        .keep_some("connector", d.connector.clone())
                        .keep_some("external_chat_id", first.chat.id.clone())
                        .set("updated_at", now)
                };
                match kind {
                    EventKind::MessageAdd => {
                        // Two items for one message in one event: the larger canonical JSON wins.
                        let m = items
                            .iter()
                            .max_by_key(|m| serde_json::to_string(m).unwrap_or_default())
                            .expect("non-empty group");
                        let c = content(m);
                        let u = identity(Update::new(key))
                            .set("author_user_id", opt(m.message.user_id))
                            .set("added_at", opt(ts))
                            .keep("status", "sent")
                            .keep("text", c.text)
                            .keep("text_truncated", c.text_truncated)
                            .keep("files", c.files)
                            .keep("files_truncated", c.files_truncated)
                            .keep("ids", json!([]))
                            .keep("revisions", 0)
                            .when(Cond::Absent("deleted_at"));
                        primaries.push(StateWrite::primary(u));
                    }
                    EventKind::MessageUpdate => {
                        let mut edits: BTreeMap<String, &MessageItem> = BTreeMap::new();
                        for m in &items {
                            let r = rank(ts, &json!([m.message.text, m.message.ids]).to_string());
                            edits.insert(r, m);
                        }
                        let n = edits.len() as i64;
                        let (r, m) = edits.into_iter().next_back().expect("non-empty group");
                        let c = content(m);
                        let u = identity(Update::new(key.clone()))
                            .set("status", "edited")
                            .set("text", c.text)
                            .set("text_truncated", c.text_truncated)
                            .set("files", c.files)
                            .set("files_truncated", c.files_truncated)
                            .set("ids", c.ids)
                            .set("ids_truncated", c.ids_truncated)
                            .set("edited_at", opt(ts))
                            .set("edited_by", opt(m.message.user_id))
                            .set("edit_rank", r.clone())
                            .add("revisions", n)
                            .when(Cond::Absent("deleted_at"))
                            .when(Cond::AbsentOrBelow("edit_rank", r));
                        // An older edit does not change the text but is still a revision.
                        let older = identity(Update::new(key))
                            .add("revisions", n)
                            .when(Cond::Absent("deleted_at"));
                        primaries.push(StateWrite::primary(u).or_else(older));
                    }
                    _ => {
                        let all_ids: BTreeSet<String> = items
                            .iter()
                            .flat_map(|m| m.message.ids.iter().cloned())
                            .collect();
                        let all_ids: Vec<String> = all_ids.into_iter().collect();
                        let r = rank(ts, &json!(all_ids).to_string());
                        let (ids, ids_truncated) = cap_ids(&all_ids);
                        let u = identity(Update::new(key))
                            .set("status", "deleted")
                            .set("deleted_at", opt(ts))
                            .set("delete_rank", r.clone())
                            .set("ids", ids)
                            .set("ids_truncated", ids_truncated)
                            .remove(&[
                                "text",
                                "text_truncated",
                                "files",
                                "files_truncated",
                                "author_user_id",
                                "added_at",
                                "edited_at",
                                "edited_by",
                                "edit_rank",
                                "revisions",
                            ])
                            .when(Cond::AbsentOrBelow("delete_rank", r));
                        primaries.push(StateWrite::primary(u));
                    }
                }
            }
        }
        (kind @ (EventKind::DialogStart | EventKind::DialogFinish), EventData::Dialogs(d)) => {
            let mut by_id: BTreeMap<i64, &b24_events::DialogItem> = BTreeMap::new();
            for x in &d.dialogs {
                let keep_larger = by_id.get(&x.session.id).is_some_and(|y| {
                    serde_json::to_string(y).unwrap_or_default()
                        >= serde_json::to_string(x).unwrap_or_default()
                });
                if !keep_larger {
                    by_id.insert(x.session.id, x);
                }
            }
            for (id, x) in by_id {
                let line = x.connector.line_id.or(d.line);
                let connector = x
                    .connector
                    .connector_id
                    .clone()
                    .or_else(|| d.connector.clone());
                see(line, connector.as_deref());
                let key = Key {
                    pk: schema::portal_pk(member),
                    sk: schema::session_sk(id),
                };
                let fields: [(&'static str, Value); 6] = [
                    ("line", opt(line)),
                    ("connector", opt(connector)),
                    (
                        "external_chat_id",
                        opt(x.connector.chat_id.clone().or_else(|| x.chat.id.clone())),
                    ),
                    (
                        "external_user_id",
                        opt(x.connector.user_id.clone().or_else(|| x.user.id.clone())),
                    ),
                    ("parent_id", opt(x.session.parent_id)),
                    ("close_term", opt(x.session.close_term)),
                ];
                let mut u = Update::new(key)
                    .set("record_type", "session")
                    .set("member_id", member)
                    .set("session_id", id)
                    .set("updated_at", now);
                if *kind == EventKind::DialogStart {
                    // DialogStart owns the session's descriptive fields and `started_at`;
                    // it never reopens a closed session.
                    for (a, v) in fields {
                        u = u.set(a, v);
                    }
                    u = u
                        .set("started_at", opt(ts))
                        .keep("status", "open")
                        .keep("closed", false);
                } else {
                    for (a, v) in fields {
                        if !v.is_null() {
                            u = u.keep(a, v);
                        }
                    }
                    u = u
                        .set("finished_at", opt(ts))
                        .set("status", "closed")
                        .set("closed", true);
                }
                primaries.push(StateWrite::primary(u));
            }
        }
        (EventKind::StatusDelete, EventData::StatusDelete(s)) => {
            let r = rank(ts, "");
            let u = Update::new(Key {
                pk: schema::portal_pk(member),
                sk: schema::connector_sk(s.line, &s.connector),
            })
            .set("record_type", "connector")
            .set("member_id", member)
            .set("connector", s.connector.as_str())
            .set("line", s.line)
            .set("status", "disconnected")
            .set("disconnected_at", opt(ts))
            .set("disconnect_rank", r.clone())
            .set("updated_at", now)
            .when(Cond::AbsentOrBelow("disconnect_rank", r));
            primaries.push(StateWrite::primary(u));
        }
        (EventKind::LineDelete, EventData::LineDelete(l)) => {
            let u = Update::new(Key {
                pk: schema::portal_pk(member),
                sk: schema::line_sk(l.line),
            })
            .set("record_type", "line")
            .set("member_id", member)
            .set("line", l.line)
            .set("status", "line_deleted")
            .set("deleted_at", opt(ts))
            .set("updated_at", now);
            primaries.push(StateWrite::primary(u));
        }
        (EventKind::AppInstall | EventKind::AppUpdate, EventData::App(a)) => {
            let th = token_hash(event);
            let r = rank(ts, &format!("{}#{th}", event.kind.code()));
            let base = |installed: bool| {
                let mut u = Update::new(portal_key(member))
                    .set("record_type", "portal")
                    .set("member_id", member)
                    .set("domain", opt(event.auth.domain.clone()))
                    .set("client_endpoint", opt(event.auth.client_endpoint.clone()))
                    .set("server_endpoint", opt(event.auth.server_endpoint.clone()))
                    .set("app_status", opt(event.auth.status.clone()))
                    .set("version", opt(a.version.clone()))
                    .set("active", opt(a.active))
                    .set("install_finished", opt(a.installed))
                    .set("language_id", opt(a.language_id.clone()))
                    .set("token_hash", th.clone())
                    .set("installed_at", opt(ts))
                    .set("install_event", event.kind.code())
                    .set("install_rank", r.clone())
                    .set("updated_at", now)
                    .when(Cond::AbsentOrBelow("install_rank", r.clone()));
                if installed {
                    u = u
                        .set("installed", true)
                        .when(Cond::AbsentOrBelow("uninstall_rank", r.clone()));
                }
                u
            };
            // Newer than every install and uninstall: installed. Newer than every install
            // but older than an uninstall: the install facts only.
            primaries.push(StateWrite::primary(base(true)).or_else(base(false)));
        }
        (EventKind::AppUninstall, EventData::AppUninstall(a)) => {
            let r = rank(ts, &format!("{}#{}", event.kind.code(), token_hash(event)));
            let base = |latest: bool| {
                let mut u = Update::new(portal_key(member))
                    .set("record_type", "portal")
                    .set("member_id", member)
                    .set("uninstalled_at", opt(ts))
                    .set("uninstall_rank", r.clone())
                    .set("uninstall_clean", a.clean)
                    .set("updated_at", now)
                    .keep("installed", false)
                    .keep("token_hash", "")
                    .when(Cond::AbsentOrBelow("uninstall_rank", r.clone()));
                if latest {
                    u.keep.retain(|(k, _)| *k != "installed");
                    u = u
                        .set("installed", false)
                        .when(Cond::AbsentOrBelow("install_rank", r.clone()));
                }
                u
            };
            let mut w = StateWrite::primary(base(true)).or_else(base(false));
            // Purge only when this uninstall is the portal's latest app event: a late
            // CLEAN=1 must not wipe a reinstalled portal.
            w.purge_portal = a.clean;
            primaries.push(w);
        }
        _ => {}
    }
    (primaries, seen.into_values().collect())
}

fn portal_key(member: &str) -> Key {
    Key {
        pk: schema::portal_pk(member),
        sk: schema::PORTAL_SK.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------

/// Why one action of a cancelled transaction failed.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// This action was fine (or not evaluated).
    None,
    /// Its condition failed; the item as it was (`ALL_OLD`), when returned.
    ConditionFailed(Option<Item>),
    /// `TransactionConflict`: another transaction was writing the item.
    Conflict,
    /// Anything else (code and message).
    Other(String),
}

/// The result of one transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum TxResult {
    /// Every action was written.
    Committed,
    /// Nothing was written; one reason per action, in order.
    Cancelled(Vec<Reason>),
}

/// What [`run`] needs from a store.
pub trait Backend: Send + Sync {
    /// One atomic `TransactWriteItems` of `writes` (each condition checked; `ALL_OLD` on failure).
    fn transact(
        &self,
        writes: Vec<Write>,
    ) -> impl std::future::Future<Output = Result<TxResult, StoreError>> + Send;
    /// Whether this process wrote the "seen" record `key` recently (then it is left out of the
    /// transaction: it only ever sets `status` if unset, and writing it on every event would
    /// make every event of a line contend for one item).
    fn seen_recently(&self, _key: &Key) -> bool {
        false
    }
    /// Remembers that the "seen" record `key` was written.
    fn mark_seen(&self, _key: &Key) {}
    /// Deletes every record of the portal (by Query on its partitions, never Scan).
    fn purge_portal(
        &self,
        member_id: &str,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send;
}

/// Executes a plan exactly once and classifies it. See the crate docs ("Outcomes").
pub async fn run<B: Backend>(backend: &B, plan: &Plan) -> Result<Outcome, StoreError> {
    let mut outcomes = Vec::with_capacity(plan.chunks.len());
    let mut purge = false;
    for chunk in &plan.chunks {
        let (o, p) = run_chunk(backend, chunk).await?;
        outcomes.push(o);
        purge |= p;
    }
    if purge {
        backend.purge_portal(&plan.member_id).await?;
    }
    Ok(if outcomes.contains(&Outcome::Applied) {
        Outcome::Applied
    } else if outcomes.iter().all(|o| *o == Outcome::Duplicate) {
        Outcome::Duplicate
    } else {
        Outcome::Stale
    })
}

struct Pending {
    update: Update,
    fallback: Option<Update>,
    role: Role,
    purge: bool,
}

async fn run_chunk<B: Backend>(backend: &B, chunk: &Chunk) -> Result<(Outcome, bool), StoreError> {
    let mut pending: Vec<Pending> = chunk
        .writes
        .iter()
        .filter(|w| !(w.role == Role::Seen && backend.seen_recently(&w.update.key)))
        .map(|w| Pending {
            update: w.update.clone(),
            fallback: w.fallback.clone(),
            role: w.role,
            purge: w.purge_portal,
        })
        .collect();
    let mut conflicts = 0u32;
    let mut rounds = 0usize;
    loop {
        rounds += 1;
        if rounds > chunk.writes.len() * 2 + 3 + MAX_CONFLICT_RETRIES as usize {
            // Cannot happen: every round drops or replaces a write, or counts a conflict.
            return Err(StoreError::Corrupt {
                what: "transaction keeps failing its conditions".into(),
            });
        }
        let applied = pending.iter().any(|p| p.role == Role::Primary);
        if !applied {
            pending.clear();
        }
        let outcome = if applied {
            Outcome::Applied
        } else {
            Outcome::Stale
        };
        let mut record = chunk.record.clone();
        record.insert("pk".into(), chunk.record_key.pk.clone().into());
        record.insert("sk".into(), chunk.record_key.sk.clone().into());
        record.insert("outcome".into(), outcome.as_str().into());
        let mut writes = vec![Write::Put(Put {
            key: chunk.record_key.clone(),
            item: record,
            condition: vec![Cond::ItemAbsent],
        })];
        writes.extend(pending.iter().map(|p| Write::Update(p.update.clone())));

        match backend.transact(writes).await? {
            TxResult::Committed => {
                for p in pending.iter().filter(|p| p.role == Role::Seen) {
                    backend.mark_seen(&p.update.key);
                }
                return Ok((outcome, pending.iter().any(|p| p.purge)));
            }
            TxResult::Cancelled(reasons) => {
                if matches!(reasons.first(), Some(Reason::ConditionFailed(_))) {
                    return Ok((Outcome::Duplicate, false));
                }
                if let Some(Reason::Other(why)) =
                    reasons.iter().find(|r| matches!(r, Reason::Other(_)))
                {
                    return Err(StoreError::Rejected {
                        operation: "TransactWriteItems",
                        cause: why.clone(),
                    });
                }
                let failed: Vec<(usize, Option<Item>)> = reasons
                    .iter()
                    .enumerate()
                    .skip(1)
                    .filter_map(|(i, r)| match r {
                        Reason::ConditionFailed(old) => Some((i - 1, old.clone())),
                        _ => None,
                    })
                    .collect();
                if failed.is_empty() {
                    // Only TransactionConflict: retry the same transaction after a jittered pause.
                    conflicts += 1;
                    if conflicts > MAX_CONFLICT_RETRIES {
                        return Err(StoreError::Contention {
                            attempts: conflicts,
                        });
                    }
                    let base = 10u64 << conflicts.min(5);
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(base / 2..=base))).await;
                    continue;
                }
                // Refused by newer or terminal facts: try the fallback if it applies to the
                // item as it is, else drop the write. Highest index first keeps indexes valid.
                for (i, old) in failed.into_iter().rev() {
                    let Some(p) = pending.get_mut(i) else {
                        continue;
                    };
                    match p.fallback.take() {
                        Some(f) if old.is_none() || f.condition_holds(old.as_ref()) => {
                            p.update = f;
                            p.purge = false;
                        }
                        _ => {
                            pending.remove(i);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_utf8_boundaries() {
        let (t, cut) = truncate_text("яяя", 5);
        assert_eq!((t.as_str(), cut), ("яя", true));
        assert_eq!(truncate_text("abc", 3), ("abc".to_string(), false));
    }

    #[test]
    fn ranks_order_by_ts_then_hash() {
        assert!(rank(Some(9), "z") < rank(Some(10), "a"));
        assert_eq!(rank(Some(10), "a"), rank(Some(10), "a"));
        assert_ne!(rank(Some(10), "a"), rank(Some(10), "b"));
    }

    #[test]
    fn conditions_match_dynamodb_semantics() {
        let mut item = Item::new();
        item.insert("edit_rank".into(), "00000000000000000010#aa".into());
        assert!(
            Cond::AbsentOrBelow("edit_rank", "00000000000000000011#00".into()).eval(Some(&item))
        );
        assert!(
            !Cond::AbsentOrBelow("edit_rank", "00000000000000000010#aa".into()).eval(Some(&item))
        );
        assert!(Cond::AbsentOrBelow("other", "x".into()).eval(Some(&item)));
        assert!(Cond::ItemAbsent.eval(None) && !Cond::ItemAbsent.eval(Some(&item)));
        assert!(!Cond::Absent("edit_rank").eval(Some(&item)));
    }

    #[test]
    fn if_not_exists_reads_the_old_item() {
        let key = Key {
            pk: "p".into(),
            sk: "s".into(),
        };
        let u = Update::new(key)
            .keep("text", "add")
            .set("n", 1)
            .add("revisions", 2);
        let first = u.apply_to(None);
        assert_eq!(first["text"], "add");
        assert_eq!(first["revisions"], 2);
        let mut old = first.clone();
        old.insert("text".into(), "edit".into());
        let second = u.apply_to(Some(&old));
        assert_eq!(second["text"], "edit");
        assert_eq!(second["revisions"], 4);
    }
}

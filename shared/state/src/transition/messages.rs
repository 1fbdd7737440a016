//! MessageAdd / MessageUpdate / MessageDelete: identity and writes of the message record.
//!
//! Ownership: MessageAdd owns the author and `added_at`, and sets text/files/params only if no
//! edit set them; the edit with the highest rank owns text, files, params and ids; a delete
//! turns the record into a tombstone (terminal). Several items for one message in one event
//! are merged, since DynamoDB allows one action per item in a transaction.

use super::{hash_tie, opt, rank, truncate_text, EventPlan, StateWrite, Writes};
use super::{ID_LIMIT_BYTES, MAX_FILES, MAX_IDS, PARAMS_LIMIT_BYTES, TEXT_LIMIT_BYTES};
use crate::item::{Cond, Key, Update};
use crate::schema;
use crate::Outcome;
use b24_events::{MessageItem, MessagesData};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// What a message record stores of an item's content, within the record limits.
struct Content {
    text: String,
    text_truncated: bool,
    ids: Vec<String>,
    ids_truncated: bool,
    files: Value,
    files_truncated: bool,
    params: Value,
    params_truncated: bool,
}

fn content(m: &MessageItem) -> Content {
    let (text, text_truncated) =
        truncate_text(m.message.text.as_deref().unwrap_or(""), TEXT_LIMIT_BYTES);
    let (ids, ids_truncated) = cap_ids(&m.message.ids);
    let files_truncated = m.message.files.len() > MAX_FILES;
    let files = serde_json::to_value(&m.message.files[..m.message.files.len().min(MAX_FILES)])
        .unwrap_or_else(|_| json!([]));
    let (params, params_truncated) = cap_params(&m.message.params);
    Content {
        text,
        text_truncated,
        ids,
        ids_truncated,
        files,
        files_truncated,
        params,
        params_truncated,
    }
}

pub(super) fn cap_ids(ids: &[String]) -> (Vec<String>, bool) {
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

/// Whole entries in key order while the JSON stays under [`PARAMS_LIMIT_BYTES`].
fn cap_params(params: &BTreeMap<String, String>) -> (Value, bool) {
    let mut out = Map::new();
    let mut size = 2;
    let mut cut = false;
    for (k, v) in params {
        let entry = k.len() + v.len() + 6;
        if size + entry > PARAMS_LIMIT_BYTES {
            cut = true;
            continue;
        }
        size += entry;
        out.insert(k.clone(), Value::String(v.clone()));
    }
    (Value::Object(out), cut)
}

/// The items of an event grouped by Bitrix24 message ID (in ID order).
fn by_message(d: &MessagesData) -> BTreeMap<i64, Vec<&MessageItem>> {
    let mut by_id: BTreeMap<i64, Vec<&MessageItem>> = BTreeMap::new();
    for m in &d.messages {
        by_id.entry(m.im.message_id).or_default().push(m);
    }
    by_id
}

/// The message record's key; its partition follows the chat of the event's first item for
/// the message (a message belongs to one chat).
fn key(w: &Writes<'_>, id: i64, first: &MessageItem) -> Key {
    Key {
        pk: schema::message_pk(w.member, first.im.chat_id),
        sk: schema::message_sk(id),
    }
}

/// The identity attributes every message write carries (kept when already set).
fn identity(w: &Writes<'_>, d: &MessagesData, id: i64, first: &MessageItem, key: Key) -> Update {
    w.record(key, schema::record_type::MESSAGE)
        .set("message_id", id)
        .keep("chat_id", first.im.chat_id)
        .keep_some("line", d.line)
        .keep_some("connector", d.connector.clone())
        .keep_some("connector_as_sent", d.connector_as_sent.clone())
        .keep_some("external_chat_id", first.chat.id.clone())
}

/// MessageAdd: identity = the set of `im.message_id`s.
pub(super) fn add(d: &MessagesData, w: &mut Writes<'_>) -> EventPlan {
    w.see(
        d.line,
        d.connector.as_deref(),
        d.connector_as_sent.as_deref(),
    );
    let ids: BTreeSet<i64> = d.messages.iter().map(|m| m.im.message_id).collect();
    let mut primaries = Vec::new();
    for (id, items) in by_message(d) {
        let first = items[0];
        // Two items for one message in one event: the larger canonical JSON wins.
        let m = items
            .iter()
            .max_by_key(|m| serde_json::to_string(m).unwrap_or_default())
            .copied()
            .unwrap_or(first);
        let c = content(m);
        let u = identity(w, d, id, first, key(w, id, first))
            .set("author_user_id", opt(m.message.user_id))
            .set("added_at", opt(w.ts))
            .keep("status", "sent")
            .keep("text", c.text)
            .keep("text_truncated", c.text_truncated)
            .keep("files", c.files)
            .keep("files_truncated", c.files_truncated)
            .keep("params", c.params)
            .keep("params_truncated", c.params_truncated)
            .keep("ids", json!([]))
            .keep("revisions", 0)
            .when(Cond::Absent("deleted_at"));
        primaries.push(StateWrite::primary(u));
    }
    EventPlan {
        identity: json!(ids),
        primaries,
        writes_portal: false,
    }
}

/// MessageUpdate: identity = each (`im.message_id`, `ts`, text, ids).
pub(super) fn update(d: &MessagesData, w: &mut Writes<'_>) -> EventPlan {
    w.see(
        d.line,
        d.connector.as_deref(),
        d.connector_as_sent.as_deref(),
    );
    let identity_items: BTreeSet<String> = d
        .messages
        .iter()
        .map(|m| json!([m.im.message_id, w.ts, m.message.text, m.message.ids]).to_string())
        .collect();
    let mut primaries = Vec::new();
    for (id, items) in by_message(d) {
        let first = items[0];
        let mut edits: BTreeMap<String, &MessageItem> = BTreeMap::new();
        for m in &items {
            let r = rank(
                w.ts,
                &hash_tie(&json!([m.message.text, m.message.ids]).to_string()),
            );
            edits.insert(r, m);
        }
        let n = edits.len() as i64;
        let Some((r, m)) = edits.into_iter().next_back() else {
            continue;
        };
        let c = content(m);
        let u = identity(w, d, id, first, key(w, id, first))
            .set("status", "edited")
            .set("text", c.text)
            .set("text_truncated", c.text_truncated)
            .set("files", c.files)
            .set("files_truncated", c.files_truncated)
            .set("params", c.params)
            .set("params_truncated", c.params_truncated)
            .set("ids", c.ids)
            .set("ids_truncated", c.ids_truncated)
            .set("edited_at", opt(w.ts))
            .set("edited_by", opt(m.message.user_id))
            .set("edit_rank", r.clone())
            .add("revisions", n)
            .when(Cond::Absent("deleted_at"))
            .when(Cond::AbsentOrBelow("edit_rank", r));
        // An older edit does not change the text but is still a revision.
        let older = identity(w, d, id, first, key(w, id, first))
            .add("revisions", n)
            .when(Cond::Absent("deleted_at"));
        primaries.push(StateWrite::primary(u).or_else(older, Outcome::Applied));
    }
    EventPlan {
        identity: json!(identity_items),
        primaries,
        writes_portal: false,
    }
}

/// MessageDelete: identity = each (`im.message_id`, ids).
pub(super) fn delete(d: &MessagesData, w: &mut Writes<'_>) -> EventPlan {
    w.see(
        d.line,
        d.connector.as_deref(),
        d.connector_as_sent.as_deref(),
    );
    let identity_items: BTreeSet<String> = d
        .messages
        .iter()
        .map(|m| json!([m.im.message_id, m.message.ids]).to_string())
        .collect();
    let mut primaries = Vec::new();
    for (id, items) in by_message(d) {
        let first = items[0];
        let all_ids: BTreeSet<String> = items
            .iter()
            .flat_map(|m| m.message.ids.iter().cloned())
            .collect();
        let all_ids: Vec<String> = all_ids.into_iter().collect();
        let r = rank(w.ts, &hash_tie(&json!(all_ids).to_string()));
        let (ids, ids_truncated) = cap_ids(&all_ids);
        let u = identity(w, d, id, first, key(w, id, first))
            .set("status", "deleted")
            .set("deleted_at", opt(w.ts))
            .set("delete_rank", r.clone())
            .set("ids", ids)
            .set("ids_truncated", ids_truncated)
            .remove(&[
                "text",
                "text_truncated",
                "files",
                "files_truncated",
                "params",
                "params_truncated",
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
    EventPlan {
        identity: json!(identity_items),
        primaries,
        writes_portal: false,
    }
}

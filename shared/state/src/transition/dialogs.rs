//! DialogStart / DialogFinish: identity and writes of the session record.
//!
//! Ownership: DialogStart owns the session's descriptive fields and `started_at`, and opens the
//! session only if nothing set its status (a late start never reopens a closed session);
//! DialogFinish owns `finished_at` and closes it (terminal), filling descriptive fields only if
//! unset.

use super::{opt, EventPlan, StateWrite, Writes};
use crate::item::Key;
use crate::schema;
use b24_events::{DialogItem, DialogsData};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Start,
    Finish,
}

pub(super) fn start(d: &DialogsData, w: &mut Writes<'_>) -> EventPlan {
    plan(d, w, Which::Start)
}

pub(super) fn finish(d: &DialogsData, w: &mut Writes<'_>) -> EventPlan {
    plan(d, w, Which::Finish)
}

/// Identity = the set of `session.id`s (with the event code, added by the caller).
fn plan(d: &DialogsData, w: &mut Writes<'_>, which: Which) -> EventPlan {
    let ids: BTreeSet<i64> = d.dialogs.iter().map(|x| x.session.id).collect();
    // Several items for one session in one event: the larger canonical JSON wins.
    let mut by_id: BTreeMap<i64, &DialogItem> = BTreeMap::new();
    for x in &d.dialogs {
        let keep_larger = by_id.get(&x.session.id).is_some_and(|y| {
            serde_json::to_string(y).unwrap_or_default()
                >= serde_json::to_string(x).unwrap_or_default()
        });
        if !keep_larger {
            by_id.insert(x.session.id, x);
        }
    }
    let mut primaries = Vec::new();
    for (id, x) in by_id {
        let line = x.connector.line_id.or(d.line);
        let (connector, as_sent) = match &x.connector.connector_id {
            Some(c) => (Some(c.clone()), x.connector.connector_id_as_sent.clone()),
            None => (d.connector.clone(), d.connector_as_sent.clone()),
        };
        w.see(line, connector.as_deref(), as_sent.as_deref());
        let key = Key {
            pk: schema::portal_pk(w.member),
            sk: schema::session_sk(id),
        };
        let fields: [(&'static str, Value); 7] = [
            ("line", opt(line)),
            ("connector", opt(connector)),
            ("connector_as_sent", opt(as_sent)),
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
        let mut u = w
            .record(key, schema::record_type::SESSION)
            .set("session_id", id);
        match which {
            Which::Start => {
                for (a, v) in fields {
                    u = u.set(a, v);
                }
                u = u
                    .set("started_at", opt(w.ts))
                    .keep("status", "open")
                    .keep("closed", false);
            }
            Which::Finish => {
                for (a, v) in fields {
                    if !v.is_null() {
                        u = u.keep(a, v);
                    }
                }
                u = u
                    .set("finished_at", opt(w.ts))
                    .set("status", "closed")
                    .set("closed", true);
            }
        }
        primaries.push(StateWrite::primary(u));
    }
    EventPlan {
        identity: json!(ids),
        primaries,
        writes_portal: false,
    }
}

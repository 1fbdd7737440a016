//! StatusDelete / LineDelete: the connector-on-a-line and line records.
//!
//! Ownership: StatusDelete owns `disconnected_at` and `status = disconnected` (the newest wins);
//! LineDelete owns the line's terminal `line_deleted`. Bitrix24 sends no "connected" event, so a
//! disconnected connector stays so until the records are purged.

use super::{hash_tie, opt, rank, EventPlan, StateWrite, Writes};
use crate::item::{Cond, Key};
use crate::schema;
use b24_events::{LineDeleteData, StatusDeleteData};
use serde_json::json;

/// StatusDelete: identity = (connector, line, `ts`).
pub(super) fn status_delete(s: &StatusDeleteData, w: &mut Writes<'_>) -> EventPlan {
    let r = rank(w.ts, &hash_tie(""));
    let u = w
        .record(
            Key {
                pk: schema::portal_pk(w.member),
                sk: schema::connector_sk(s.line, &s.connector),
            },
            schema::record_type::CONNECTOR,
        )
        .set("connector", s.connector.as_str())
        .set("connector_as_sent", s.connector_as_sent.as_str())
        .set("line", s.line)
        .set("status", "disconnected")
        .set("disconnected_at", opt(w.ts))
        .set("disconnect_rank", r.clone())
        .when(Cond::AbsentOrBelow("disconnect_rank", r));
    EventPlan {
        identity: json!([s.connector, s.line, w.ts]),
        primaries: vec![StateWrite::primary(u)],
        writes_portal: false,
    }
}

/// LineDelete: identity = the line.
pub(super) fn line_delete(l: &LineDeleteData, w: &mut Writes<'_>) -> EventPlan {
    let u = w
        .record(
            Key {
                pk: schema::portal_pk(w.member),
                sk: schema::line_sk(l.line),
            },
            schema::record_type::LINE,
        )
        .set("line", l.line)
        .set("status", "line_deleted")
        .set("deleted_at", opt(w.ts));
    EventPlan {
        identity: json!([l.line]),
        primaries: vec![StateWrite::primary(u)],
        writes_portal: false,
    }
}

//! ONAPPINSTALL / ONAPPUPDATE / ONAPPUNINSTALL: the portal record (and the purge marker).
//!
//! Every write carries the event's [`Authorization`](super::Authorization) as the guard of the
//! portal update itself, so a token change or a reinstall lands only if the portal is still
//! exactly as it was when the change was verified.
//!
//! Ordering: the newest `ts` wins; at equal `ts` an uninstall wins over an update, and an
//! update over an install (a same-second install and uninstall always end uninstalled,
//! whatever their arrival order); equal kind and `ts` are broken by the token hash. The answer
//! always matches the stored effect: `applied` means the portal's installed state is now what
//! the event says; an event that lost is `stale` (an install newer than every other install
//! but older than an uninstall still records its descriptive facts, such as the version, so the
//! record is the same whatever the arrival order).

use super::{hash_tie, opt, rank, EventPlan, StateWrite, Writes};
use crate::item::{Cond, Item, Put, Write};
use crate::schema;
use crate::Outcome;
use b24_events::{AppData, AppUninstallData, EventKind};
use serde_json::json;

/// The tie-break order of app events at equal `ts`.
fn order(kind: EventKind) -> u8 {
    match kind {
        EventKind::AppInstall => 0,
        EventKind::AppUpdate => 1,
        EventKind::AppUninstall => 2,
        EventKind::MessageAdd
        | EventKind::MessageUpdate
        | EventKind::MessageDelete
        | EventKind::DialogStart
        | EventKind::DialogFinish
        | EventKind::StatusDelete
        | EventKind::LineDelete => 0,
    }
}

fn app_rank(kind: EventKind, w: &Writes<'_>) -> String {
    let th = w.authorization.token_hash().as_str();
    rank(
        w.ts,
        &format!(
            "{}#{}",
            order(kind),
            hash_tie(&format!("{}#{th}", kind.code()))
        ),
    )
}

/// ONAPPINSTALL / ONAPPUPDATE: identity = (`ts`, token hash).
pub(super) fn install(kind: EventKind, a: &AppData, w: &mut Writes<'_>) -> EventPlan {
    let r = app_rank(kind, w);
    let guard = w.authorization.portal_guard();
    let th = w.authorization.token_hash().as_str().to_string();
    // The endpoint the OAuth server named for this portal when the install was verified that
    // way; otherwise the event's claim (only ever used against the stored domain).
    let client_endpoint = w
        .verified_client_endpoint
        .map(str::to_string)
        .or_else(|| w.auth.client_endpoint.clone());
    // The install's descriptive facts: the newest install/update owns them.
    let facts = |u: crate::item::Update| {
        u.set("domain", opt(w.auth.domain.clone()))
            .set("client_endpoint", opt(client_endpoint.clone()))
            .set("server_endpoint", opt(w.auth.server_endpoint.clone()))
            .set("app_status", opt(w.auth.status.clone()))
            .set("installed_at", opt(w.ts))
            .set("install_event", kind.code())
            .set("install_rank", r.clone())
            .set("version", opt(a.version.clone()))
            .set("previous_version", opt(a.previous_version.clone()))
            .set("active", opt(a.active))
            .set("install_finished", opt(a.installed))
            .set("language_id", opt(a.language_id.clone()))
            .guarded(&guard)
            .when(Cond::AbsentOrBelow("install_rank", r.clone()))
    };
    // Newer than every install and uninstall: the portal is installed with this token.
    let install = facts(w.record(schema::portal_key(w.member), schema::record_type::PORTAL))
        .set("token_hash", th.clone())
        .set("installed", true)
        .when(Cond::AbsentOrBelow("uninstall_rank", r.clone()));
    // Newer than every install but older than an uninstall: only the facts (the record stays
    // the same whatever the arrival order); the portal stays uninstalled and keeps its token
    // and epoch, so the answer is `stale`.
    let facts_only =
        facts(crate::item::Update::new(schema::portal_key(w.member))).set("updated_at", w.now);
    EventPlan {
        identity: json!([w.ts, th]),
        primaries: vec![StateWrite::primary(install).or_else(facts_only, Outcome::Stale)],
        writes_portal: true,
    }
}

/// ONAPPUNINSTALL: identity = (`ts`, token hash). With `CLEAN=1` it also writes the purge
/// marker of the portal's epoch, which drives the purge off the request path.
pub(super) fn uninstall(a: &AppUninstallData, w: &mut Writes<'_>) -> EventPlan {
    let r = app_rank(EventKind::AppUninstall, w);
    let guard = w.authorization.portal_guard();
    let th = w.authorization.token_hash().as_str().to_string();
    let mut u = w
        .record(schema::portal_key(w.member), schema::record_type::PORTAL)
        .set("installed", false)
        .set("uninstalled_at", opt(w.ts))
        .set("uninstall_rank", r.clone())
        .set("uninstall_clean", a.clean)
        .set("uninstall_language_id", opt(a.language_id.clone()))
        .guarded(&guard)
        .when(Cond::AbsentOrBelow("uninstall_rank", r.clone()))
        .when(Cond::AbsentOrBelow("install_rank", r));
    let mut write = None;
    if a.clean {
        u = u.set("purge_epoch", w.epoch);
        let key = crate::item::Key {
            pk: schema::portal_pk(w.member),
            sk: schema::purge_sk(w.epoch),
        };
        let mut item = Item::new();
        item.insert("pk".into(), key.pk.clone().into());
        item.insert("sk".into(), key.sk.clone().into());
        item.insert("record_type".into(), schema::record_type::PURGE.into());
        item.insert("member_id".into(), w.member.as_str().into());
        item.insert("epoch".into(), w.epoch.into());
        item.insert("status".into(), "pending".into());
        item.insert("requested_at".into(), w.now.into());
        item.insert("updated_at".into(), w.now.into());
        item.insert("step".into(), 0.into());
        item.insert("deleted".into(), 0.into());
        write = Some(Write::Put(Put {
            key,
            item,
            condition: Vec::new(),
        }));
    }
    let mut primary = StateWrite::primary(u);
    if let Some(marker) = write {
        primary = primary.with(marker);
    }
    EventPlan {
        identity: json!([w.ts, th]),
        primaries: vec![primary],
        writes_portal: true,
    }
}

//! Scenarios run against both stores (MemoryStore in `memory.rs`, DynamoDB Local in `dynamodb.rs`).
//! `make` returns an empty store; one store may be shared by several portals.

use super::*;
use b24_events::EventKind::*;
use b24_state::Outcome::*;

fn normalize(records: Vec<Value>, member: &str) -> (Vec<Value>, Vec<String>) {
    let s = serde_json::to_string(&records)
        .unwrap()
        .replace(member, "M");
    state_and_event_keys(serde_json::from_str(&s).unwrap())
}

fn one<'a>(records: &'a [Value], t: &str) -> &'a Value {
    let v = find(records, t);
    assert_eq!(v.len(), 1, "expected one {t} record in {records:#?}");
    v[0]
}

/// Each of the ten events on an empty portal: `applied`, and the documented records.
pub async fn ten_events_on_empty(make: impl AsyncFn() -> Db) {
    let db = make().await;
    for (i, e) in all_ten("x").into_iter().enumerate() {
        let member = format!("empty{i}");
        let mut e = e;
        e.auth.member_id = member.clone();
        assert_eq!(db.apply(&e, 5000).await, Applied, "{}", e.kind());
        let r = db.records(&member).await;
        let ev = one(&r, "event");
        assert_eq!(ev["outcome"], "applied");
        assert_eq!(ev["event_code"], e.kind().code());
        assert_eq!(
            ev["event"],
            e.to_json(),
            "event record holds the normalized event"
        );
        assert_eq!(ev["expires_at"], 5000 + 30 * 86400);
        let text = serde_json::to_string(&r).unwrap();
        assert!(
            !text.contains(TOKEN)
                && !text.contains("refresh-secret-value")
                && !text.contains("c978b990"),
            "no secrets stored"
        );
        match e.kind() {
            MessageAdd => {
                let m = one(&r, "message");
                assert_eq!(m["status"], "sent");
                assert_eq!(m["text"], "[b]Светлана:[/b] [br]Добрый день!");
                assert_eq!(m["message_id"], 86497);
                assert_eq!(m["chat_id"], 1807);
                assert_eq!(m["line"], LINE);
                assert_eq!(m["connector"], CONNECTOR);
                assert_eq!(m["external_chat_id"], "channel-123");
                assert_eq!(m["author_user_id"], 27);
                assert_eq!(m["added_at"], 1000);
                assert_eq!(m["revisions"], 0);
                assert_eq!(m["text_truncated"], false);
                assert_eq!(one(&r, "connector")["status"], "active");
            }
            MessageUpdate => {
                let m = one(&r, "message");
                assert_eq!(m["status"], "edited");
                assert_eq!(m["text"], "edited");
                assert_eq!(m["ids"], serde_json::json!(["ext-msg-005"]));
                assert_eq!(m["edited_at"], 1010);
                assert_eq!(m["revisions"], 1);
                assert!(m.get("added_at").is_none());
            }
            MessageDelete => {
                let m = one(&r, "message");
                assert_eq!(m["status"], "deleted");
                assert_eq!(m["deleted_at"], 1020);
                assert_eq!(m["ids"], serde_json::json!(["ext-msg-006"]));
                assert!(m.get("text").is_none());
            }
            DialogStart => {
                let s = one(&r, "session");
                assert_eq!(s["status"], "open");
                assert_eq!(s["closed"], false);
                assert_eq!(s["started_at"], 1030);
                assert_eq!(s["session_id"], 501);
                assert_eq!(s["external_user_id"], "ext-user-1");
                assert_eq!(s["close_term"], 1440);
            }
            DialogFinish => {
                let s = one(&r, "session");
                assert_eq!(s["status"], "closed");
                assert_eq!(s["closed"], true);
                assert_eq!(s["finished_at"], 1040);
                assert!(s.get("started_at").is_none());
            }
            StatusDelete => {
                let c = one(&r, "connector");
                assert_eq!(c["status"], "disconnected");
                assert_eq!(c["disconnected_at"], 1050);
            }
            LineDelete => {
                let l = one(&r, "line");
                assert_eq!(l["status"], "line_deleted");
                assert_eq!(l["deleted_at"], 1060);
            }
            AppInstall | AppUpdate => {
                let p = one(&r, "portal");
                assert_eq!(p["installed"], true);
                assert_eq!(p["token_hash"], b24_state::hash_token(&Secret::new(TOKEN)));
                assert_eq!(p["domain"], "some-domain.bitrix24.ru");
                assert_eq!(
                    p["client_endpoint"],
                    "https://some-domain.bitrix24.ru/rest/"
                );
                assert_eq!(p["app_status"], "F");
                assert_eq!(p["version"], if e.kind() == AppInstall { "1" } else { "2" });
            }
            AppUninstall => {
                let p = one(&r, "portal");
                assert_eq!(p["installed"], false);
                assert_eq!(p["uninstalled_at"], 1080);
            }
        }
        // The same event again is a duplicate and changes nothing.
        assert_eq!(db.apply(&e, 5001).await, Duplicate, "{}", e.kind());
        assert_eq!(db.records(&member).await, r);
    }
}

/// Each of the ten events on a populated portal.
pub async fn ten_events_on_populated(make: impl AsyncFn() -> Db) {
    let db = make().await;
    for (i, e) in all_ten("x").into_iter().enumerate() {
        let member = format!("pop{i}");
        let base = [
            app(AppInstall, &member, TOKEN, 500, "0"),
            msg_add(&member, 86497, 600, "hello"),
            msg_add(&member, 86498, 610, "to be deleted"),
            dialog(DialogStart, &member, 502, 620),
        ];
        for b in &base {
            assert_eq!(db.apply(b, 4000).await, Applied);
        }
        let mut e = e;
        e.auth.member_id = member.clone();
        // The same message ID as the populated add: the same event identity.
        let expected = if e.kind() == MessageAdd {
            Duplicate
        } else {
            Applied
        };
        assert_eq!(db.apply(&e, 5000).await, expected, "{}", e.kind());
        let r = db.records(&member).await;
        assert_eq!(
            find(&r, "event").len(),
            if e.kind() == MessageAdd { 4 } else { 5 }
        );
        let msg = |id: i64| {
            r.iter()
                .find(|x| x["record_type"] == "message" && x["message_id"] == id)
                .unwrap()
                .clone()
        };
        match e.kind() {
            MessageAdd => assert_eq!(msg(86497)["text"], "hello"),
            MessageUpdate => {
                let m = msg(86497);
                assert_eq!(
                    (
                        m["status"].as_str(),
                        m["text"].as_str(),
                        m["revisions"].as_i64()
                    ),
                    (Some("edited"), Some("edited"), Some(1))
                );
                assert_eq!(m["added_at"], 600);
                assert_eq!(m["author_user_id"], 27);
            }
            MessageDelete => {
                let m = msg(86498);
                assert_eq!(m["status"], "deleted");
                assert!(m.get("text").is_none() && m.get("added_at").is_none());
                assert_eq!(m["external_chat_id"], "channel-123");
            }
            DialogStart => {
                assert_eq!(find(&r, "session").len(), 2);
                assert!(find(&r, "session").iter().all(|s| s["status"] == "open"));
            }
            DialogFinish => {
                let s = one(&r, "session");
                assert_eq!(
                    (
                        s["status"].as_str(),
                        s["started_at"].as_i64(),
                        s["finished_at"].as_i64()
                    ),
                    (Some("closed"), Some(620), Some(1040))
                );
            }
            StatusDelete => assert_eq!(one(&r, "connector")["status"], "disconnected"),
            LineDelete => {
                assert_eq!(one(&r, "line")["status"], "line_deleted");
                assert_eq!(one(&r, "connector")["status"], "active");
            }
            AppInstall | AppUpdate => {
                let p = one(&r, "portal");
                assert_eq!(p["installed"], true);
                assert_eq!(p["version"], if e.kind() == AppInstall { "1" } else { "2" });
            }
            AppUninstall => {
                let p = one(&r, "portal");
                assert_eq!(p["installed"], false);
                assert_eq!(p["version"], "0", "uninstall keeps the install facts");
                assert_eq!(find(&r, "message").len(), 2, "no purge without CLEAN=1");
            }
        }
    }
}

/// Every arrival order of `events` (for portal `M`, rewritten per order) ends in the same records.
pub async fn same_final_state(db: &Db, tag: &str, events: Vec<Event>) -> Vec<Value> {
    let mut reference: Option<(Vec<Value>, Vec<String>)> = None;
    for (i, order) in permutations(&events).into_iter().enumerate() {
        let member = format!("{tag}-perm{i}");
        for (j, e) in order.iter().enumerate() {
            let mut e = e.clone();
            e.auth.member_id = member.clone();
            db.apply(&e, 10_000 + i as i64 * 100 + j as i64).await;
        }
        let got = normalize(db.records(&member).await, &member);
        match &reference {
            None => reference = Some(got),
            Some(r) => {
                if got.0 != r.0 {
                    panic!(
                        "order {i} {:?} differs from order 0:\n{}",
                        order.iter().map(|e| e.kind()).collect::<Vec<_>>(),
                        diff(&r.0, &got.0)
                    );
                }
                // Outcomes may differ with the order (an add after a delete is stale).
                let strip = |v: &[String]| {
                    let mut v: Vec<String> = v
                        .iter()
                        .map(|k| k.replace("\"stale\"", "\"applied\""))
                        .collect();
                    v.sort();
                    v
                };
                assert_eq!(strip(&got.1), strip(&r.1), "event records");
            }
        }
    }
    reference.unwrap().0
}

fn diff(a: &[Value], b: &[Value]) -> String {
    let mut out = String::new();
    if a.len() != b.len() {
        out.push_str(&format!("{} vs {} records\n", a.len(), b.len()));
    }
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x.as_object().unwrap(), y.as_object().unwrap());
        for k in x.keys().chain(y.keys()) {
            if x.get(k) != y.get(k) {
                out.push_str(&format!(
                    "{} {k}: {:?} vs {:?}\n",
                    x["sk"],
                    x.get(k),
                    y.get(k)
                ));
            }
        }
    }
    out
}

pub async fn message_orders(make: impl AsyncFn() -> Db) {
    let db = make().await;
    let m = "M";
    // Add + two edits: the highest ts wins, both edits count.
    let state = same_final_state(
        &db,
        "edits",
        vec![
            msg_add(m, 7, 100, "original"),
            msg_update(m, 7, 120, "second edit", &["e2"]),
            msg_update(m, 7, 110, "first edit", &["e1"]),
        ],
    )
    .await;
    let msg = state
        .iter()
        .find(|r| r["record_type"] == "message")
        .unwrap();
    assert_eq!(msg["text"], "second edit");
    assert_eq!(msg["ids"], serde_json::json!(["e2"]));
    assert_eq!(msg["revisions"], 2);
    assert_eq!(msg["status"], "edited");
    assert_eq!(msg["added_at"], 100);

    // Two edits with the same ts: ties broken deterministically.
    same_final_state(
        &db,
        "tie",
        vec![
            msg_update(m, 8, 110, "a", &["x"]),
            msg_update(m, 8, 110, "b", &["x"]),
            msg_add(m, 8, 100, "original"),
        ],
    )
    .await;

    // Add, two edits, delete: a tombstone whatever the order.
    let state = same_final_state(
        &db,
        "del",
        vec![
            msg_add(m, 9, 100, "original"),
            msg_update(m, 9, 110, "first edit", &["e1"]),
            msg_update(m, 9, 120, "second edit", &["e1"]),
            msg_delete(m, 9, 130, &["e1"]),
        ],
    )
    .await;
    let msg = state
        .iter()
        .find(|r| r["record_type"] == "message")
        .unwrap();
    assert_eq!(msg["status"], "deleted");
    assert_eq!(msg["deleted_at"], 130);
    assert_eq!(msg["ids"], serde_json::json!(["e1"]));
    for gone in [
        "text",
        "revisions",
        "edited_at",
        "edit_rank",
        "added_at",
        "files",
    ] {
        assert!(msg.get(gone).is_none(), "tombstone keeps no {gone}: {msg}");
    }
    for kept in [
        "message_id",
        "chat_id",
        "line",
        "connector",
        "external_chat_id",
    ] {
        assert!(msg.get(kept).is_some(), "tombstone keeps {kept}");
    }
}

pub async fn dialog_orders(make: impl AsyncFn() -> Db) {
    let db = make().await;
    let state = same_final_state(
        &db,
        "dlg",
        vec![
            dialog(DialogStart, "M", 77, 100),
            dialog(DialogFinish, "M", 77, 200),
        ],
    )
    .await;
    let s = state
        .iter()
        .find(|r| r["record_type"] == "session")
        .unwrap();
    assert_eq!(
        (s["status"].as_str(), s["closed"].as_bool()),
        (Some("closed"), Some(true))
    );
    assert_eq!(
        (s["started_at"].as_i64(), s["finished_at"].as_i64()),
        (Some(100), Some(200))
    );
    // A late start on a closed session is applied (records started_at) but never reopens.
    let finish = dialog(DialogFinish, "late", 78, 200);
    let start = dialog(DialogStart, "late", 78, 100);
    assert_eq!(db.apply(&finish, 1).await, Applied);
    assert_eq!(db.apply(&start, 2).await, Applied);
    let r = db.records("late").await;
    assert_eq!(one(&r, "session")["status"], "closed");
}

/// App events after a first install, in every order. Uninstall facts of an event the portal
/// check refuses (its token was replaced first) are not recorded, so the records are compared
/// on what an installation is: installed, version, token.
pub async fn app_orders(make: impl AsyncFn() -> Db) {
    let db = make().await;
    let portal_view = |r: &[Value]| {
        let p = r.iter().find(|r| r["record_type"] == "portal").unwrap();
        (
            p["installed"].as_bool(),
            p["version"].as_str().map(str::to_string),
            p["token_hash"].as_str().map(str::to_string),
        )
    };
    for (tag, rest, expect) in [
        (
            "upd",
            vec![
                app(AppUpdate, "M", TOKEN, 150, "2"),
                uninstall("M", TOKEN, 200, false),
            ],
            (Some(false), "2", TOKEN),
        ),
        (
            "reinst",
            vec![
                uninstall("M", TOKEN, 200, false),
                app(AppInstall, "M", "new-token", 300, "2"),
            ],
            (Some(true), "2", "new-token"),
        ),
    ] {
        let mut views = Vec::new();
        for (i, order) in permutations(&rest).into_iter().enumerate() {
            let member = format!("app-{tag}{i}");
            let first = app(AppInstall, &member, TOKEN, 100, "1");
            assert_eq!(db.apply(&first, 1).await, Applied);
            for (j, e) in order.iter().enumerate() {
                let mut e = e.clone();
                e.auth.member_id = member.clone();
                db.try_apply(&e, 10 + j as i64).await;
            }
            views.push(portal_view(&db.records(&member).await));
        }
        let want = (
            expect.0,
            Some(expect.1.to_string()),
            Some(b24_state::hash_token(&Secret::new(expect.2))),
        );
        assert!(views.iter().all(|v| *v == want), "{tag}: {views:?}");
    }
}

/// A same-second install and uninstall: the uninstall wins whatever the order, and each
/// answer says what it did to the stored state.
pub async fn same_second_install_and_uninstall(make: impl AsyncFn() -> Db) {
    let db = make().await;
    // In order: the install applies (installed), then the uninstall applies (uninstalled).
    let m = "same-a";
    assert_eq!(
        db.apply(&app(AppInstall, m, TOKEN, 50, "0"), 1).await,
        Applied
    );
    assert_eq!(
        db.apply(&app(AppInstall, m, TOKEN, 100, "1"), 2).await,
        Applied
    );
    assert_eq!(db.apply(&uninstall(m, TOKEN, 100, false), 3).await, Applied);
    assert_eq!(one(&db.records(m).await, "portal")["installed"], false);
    // Reversed: the uninstall applies; the same-second install is verified (a reinstall)
    // but loses the tie, so it is stale and the portal stays uninstalled.
    let m = "same-b";
    assert_eq!(
        db.apply(&app(AppInstall, m, TOKEN, 50, "0"), 1).await,
        Applied
    );
    assert_eq!(db.apply(&uninstall(m, TOKEN, 100, false), 2).await, Applied);
    assert_eq!(
        db.apply(&app(AppInstall, m, TOKEN, 100, "1"), 3).await,
        Stale
    );
    let p = one(&db.records(m).await, "portal").clone();
    assert_eq!(p["installed"], false);
    assert_eq!(
        p["version"], "1",
        "the stale install still records its facts"
    );
    // Ten rounds with fresh portals: always the same answer for the same order.
    for i in 0..10 {
        let m = format!("same-r{i}");
        assert_eq!(
            db.apply(&app(AppInstall, &m, TOKEN, 50, "0"), 1).await,
            Applied
        );
        assert_eq!(
            db.apply(&app(AppUpdate, &m, TOKEN, 100, "1"), 2).await,
            Applied
        );
        assert_eq!(
            db.apply(&uninstall(&m, TOKEN, 100, false), 3).await,
            Applied
        );
        assert_eq!(one(&db.records(&m).await, "portal")["installed"], false);
    }
}

pub async fn stale_outcomes(make: impl AsyncFn() -> Db) {
    let db = make().await;
    let m = "stale";
    assert_eq!(db.apply(&msg_delete(m, 1, 200, &["x"]), 1).await, Applied);
    let before = without_receive_time(db.records(m).await);
    assert_eq!(db.apply(&msg_add(m, 1, 100, "late add"), 2).await, Stale);
    assert_eq!(
        db.apply(&msg_update(m, 1, 150, "late edit", &["x"]), 3)
            .await,
        Stale
    );
    let after = db.records(m).await;
    let (state_before, _) = state_and_event_keys(before);
    let (state_after, _) = state_and_event_keys(after.clone());
    assert_eq!(
        state_before, state_after,
        "stale events leave state as it is"
    );
    let outcomes: Vec<&str> = find(&after, "event")
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "stale").count(), 2);
    // An older app event after a newer one.
    assert_eq!(
        db.apply(&app(AppInstall, m, TOKEN, 500, "5"), 4).await,
        Applied
    );
    assert_eq!(
        db.apply(&app(AppUpdate, m, TOKEN, 400, "4"), 5).await,
        Stale
    );
    assert_eq!(db.apply(&status_delete(m, 10), 6).await, Applied);
    assert_eq!(db.apply(&status_delete(m, 5), 7).await, Stale);
}

pub async fn multi_item_events(make: impl AsyncFn() -> Db) {
    let db = make().await;
    let m = "multi";
    // Three items, two for the same message (CORE delete sends several elements per message).
    let e = messages(
        MessageDelete,
        m,
        100,
        vec![
            item(1, None, &["a"]),
            item(1, None, &["b"]),
            item(2, None, &["c"]),
        ],
    );
    assert_eq!(db.apply(&e, 1).await, Applied);
    let r = db.records(m).await;
    let msgs = find(&r, "message");
    assert_eq!(msgs.len(), 2);
    assert_eq!(
        msgs.iter().find(|x| x["message_id"] == 1).unwrap()["ids"],
        serde_json::json!(["a", "b"])
    );
    // As many items as one event may carry: one transaction, every message written once.
    let max = b24_state::transition::MAX_ITEMS_PER_EVENT as i64;
    let items: Vec<_> = (1000..1000 + max)
        .map(|i| item(i, Some("bulk"), &[]))
        .collect();
    let e = messages(MessageAdd, m, 200, items);
    assert_eq!(db.apply(&e, 2).await, Applied);
    assert_eq!(db.apply(&e, 3).await, Duplicate);
    let r = db.records(m).await;
    assert_eq!(find(&r, "message").len(), 2 + max as usize);
    let adds: Vec<_> = find(&r, "event")
        .into_iter()
        .filter(|x| x["event_code"] == "ONIMCONNECTORMESSAGEADD")
        .collect();
    assert_eq!(adds.len(), 1);
}

pub async fn long_text_is_truncated(make: impl AsyncFn() -> Db) {
    let db = make().await;
    let text = "я".repeat(300_000); // 600 KB of UTF-8
    assert_eq!(db.apply(&msg_add("long", 1, 100, &text), 1).await, Applied);
    let r = db.records("long").await;
    let m = one(&r, "message");
    assert_eq!(m["text_truncated"], true);
    let stored = m["text"].as_str().unwrap();
    assert!(stored.len() <= b24_state::transition::TEXT_LIMIT_BYTES && stored.len() > 60_000);
    let ev = one(&r, "event");
    assert_eq!(ev["event_truncated"], true);
}

pub async fn clean_uninstall_purges_only_that_portal(make: impl AsyncFn() -> Db) {
    let db = make().await;
    for member in ["purge-me", "keep-me"] {
        for e in all_ten(member)
            .into_iter()
            .filter(|e| e.kind() != AppUninstall)
        {
            db.apply(&e, 1).await;
        }
        assert!(db.records(member).await.len() >= 10);
    }
    let keep_before = db.records("keep-me").await;
    // A late CLEAN=1 uninstall (older than the last install/update) is stale: no purge.
    assert_eq!(
        db.apply(&uninstall("purge-me", TOKEN, 950, true), 2).await,
        Stale
    );
    assert_eq!(db.purge("purge-me").await, 0);
    assert!(db.records("purge-me").await.len() >= 10);
    assert_eq!(
        db.apply(&uninstall("purge-me", TOKEN, 2000, true), 3).await,
        Applied
    );
    // Answered at once; the purge runs in bounded steps afterwards.
    assert!(db.records("purge-me").await.len() >= 10);
    let steps = db.purge("purge-me").await;
    assert!(steps >= 1, "{steps}");
    let left = db.records("purge-me").await;
    let kinds: Vec<&str> = left
        .iter()
        .map(|r| r["record_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["portal", "purge"],
        "only the tombstone and the marker are left"
    );
    assert_eq!(left[0]["installed"], false);
    assert_eq!(left[1]["status"], "done");
    assert_eq!(db.records("keep-me").await, keep_before);
    // The purge is idempotent.
    assert_eq!(db.purge("purge-me").await, 0);
}

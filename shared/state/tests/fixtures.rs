//! The decoder's real wire fixtures (shared/events/tests/fixtures/*.form), decoded and applied:
//! each sent 10 times concurrently to DynamoDB Local → exactly one state change and one event
//! record; the same sequentially against MemoryStore.

mod common;
use b24_events::EventKind;
use b24_state::{
    testing, Applied, Authorization, Context, MemberId, MemoryStore, Outcome, Store, TokenHash,
};
use common::*;
use std::path::PathBuf;
use std::sync::Arc;

fn is_clean_uninstall(e: &b24_events::Event) -> bool {
    matches!(&e.data, b24_events::EventData::AppUninstall(u) if u.clean)
}

fn fixtures() -> Vec<(String, b24_events::Event)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events/tests/fixtures");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("events fixtures") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("form") {
            continue;
        }
        let body = std::fs::read(&path).unwrap();
        let event = b24_events::decode(&body, Some("application/x-www-form-urlencoded"))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            event,
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 14,
        "expected the decoder's fixtures in {}",
        dir.display()
    );
    out
}

fn token_of(e: &b24_events::Event) -> String {
    e.auth
        .application_token
        .as_ref()
        .map(|t| t.expose().to_string())
        .unwrap_or_default()
}

/// The authorization the pipeline would use for `e` right after `install` registered the
/// portal with the same token (epoch 1).
fn installed_ctx(e: &b24_events::Event, now: i64) -> Context {
    Context {
        member: MemberId::new(&e.auth.member_id).unwrap(),
        authorization: Authorization::Installed {
            token_hash: TokenHash::of(e.auth.application_token.as_ref()).unwrap(),
            epoch: 1,
        },
        received_at: now,
        event_ttl_days: 30,
        verified_client_endpoint: None,
    }
}

#[tokio::test]
async fn every_fixture_applies_once_in_memory() {
    let db = Db::Mem(MemoryStore::new());
    for (i, (name, mut e)) in fixtures().into_iter().enumerate() {
        e.auth.member_id = format!("fx{i}");
        let install = app(
            EventKind::AppInstall,
            &e.auth.member_id,
            &token_of(&e),
            1,
            "0",
        );
        assert_eq!(db.apply(&install, 1).await, Outcome::Applied, "{name}");
        assert_eq!(db.apply(&e, 2).await, Outcome::Applied, "{name}");
        if is_clean_uninstall(&e) {
            // The purge runs off the request path; once it has, only the portal tombstone
            // and the purge marker are left, and the same event again is refused.
            db.purge(&e.auth.member_id).await;
            let left: Vec<String> = db
                .records(&e.auth.member_id)
                .await
                .iter()
                .map(|r| r["record_type"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(left, ["portal", "purge"], "{name}");
            let Db::Mem(store) = &db else { unreachable!() };
            assert_eq!(
                store.apply(&e, &installed_ctx(&e, 3)).await.unwrap(),
                Applied::Unauthorized,
                "{name}"
            );
            continue;
        }
        assert_eq!(db.apply(&e, 3).await, Outcome::Duplicate, "{name}");
        let r = db.records(&e.auth.member_id).await;
        assert_eq!(find(&r, "event").len(), 2, "{name}");
        let text = serde_json::to_string(&r).unwrap();
        for secret in [
            &e.auth.application_token,
            &e.auth.access_token,
            &e.auth.refresh_token,
        ]
        .into_iter()
        .flatten()
        {
            assert!(
                !text.contains(secret.expose()),
                "{name}: a token was stored"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fixture_sent_ten_times_concurrently_applies_once() {
    let store = Arc::new(testing::fresh_store().await);
    let db = Db::Ddb(testing::fresh_store_on(store.table()));
    for (i, (name, mut e)) in fixtures().into_iter().enumerate() {
        let member = format!("fx{i}");
        e.auth.member_id = member.clone();
        let install = app(EventKind::AppInstall, &member, &token_of(&e), 1, "0");
        assert_eq!(db.apply(&install, 1).await, Outcome::Applied, "{name}");
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (s, e) = (store.clone(), e.clone());
                tokio::spawn(async move { s.apply(&e, &installed_ctx(&e, 2)).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(
                t.await
                    .unwrap()
                    .unwrap_or_else(|err| panic!("{name}: {err}")),
            );
        }
        let applied = outcomes
            .iter()
            .filter(|o| **o == Applied::Outcome(Outcome::Applied))
            .count();
        assert_eq!(applied, 1, "{name}: {outcomes:?}");
        if is_clean_uninstall(&e) {
            // The copies that lost the race to the uninstall are refused (the portal is no
            // longer installed) or duplicates; none applies a second time.
            assert!(
                outcomes.iter().all(|o| matches!(
                    o,
                    Applied::Outcome(Outcome::Applied | Outcome::Duplicate) | Applied::Unauthorized
                )),
                "{name}: {outcomes:?}"
            );
            db.purge(&member).await;
            assert_eq!(db.records(&member).await.len(), 2, "{name}");
            continue;
        }
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Applied::Outcome(Outcome::Applied | Outcome::Duplicate))),
            "{name}: {outcomes:?}"
        );
        let r = db.records(&member).await;
        assert_eq!(find(&r, "event").len(), 2, "{name}: install + this event");
        if e.kind().family() == b24_events::Family::Messages {
            let msgs = find(&r, "message");
            assert!(!msgs.is_empty(), "{name}");
            for m in msgs {
                assert!(m["revisions"].as_i64().unwrap_or(0) <= 1, "{name}: {m}");
            }
        }
    }
}

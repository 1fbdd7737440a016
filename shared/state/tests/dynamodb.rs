//! The same scenarios against DynamoDB Local, plus what only a real DynamoDB shows:
//! concurrency, request counts, the registry over DynamoDB, the table schema.
//!
//! Needs DynamoDB Local: `scripts/ddb-local.sh install` (started on demand by
//! `b24_state::testing`), or `AWS_ENDPOINT_URL` pointing at a running one.

mod common;
use b24_events::{EventKind, Secret};
use b24_state::testing;
use b24_state::{
    Applied, AuthCheck, Authorization, Context, DynamoStore, MemberId, Outcome, PortalRegistry,
    Store, StoreError, TokenHash,
};
use common::scenarios::*;
use common::*;
use std::sync::Arc;
use std::time::Duration;

async fn ddb() -> Db {
    Db::Ddb(testing::fresh_store().await)
}

#[tokio::test]
async fn each_event_on_an_empty_portal() {
    ten_events_on_empty(ddb).await;
}
#[tokio::test]
async fn each_event_on_a_populated_portal() {
    ten_events_on_populated(ddb).await;
}
#[tokio::test]
async fn message_events_in_any_order() {
    message_orders(ddb).await;
}
#[tokio::test]
async fn dialog_events_in_any_order() {
    dialog_orders(ddb).await;
}
#[tokio::test]
async fn app_events_in_any_order() {
    app_orders(ddb).await;
}
#[tokio::test]
async fn same_second_install_and_uninstall_answer_what_they_did() {
    same_second_install_and_uninstall(ddb).await;
}
#[tokio::test]
async fn stale_events_change_nothing() {
    stale_outcomes(ddb).await;
}
#[tokio::test]
async fn events_with_several_items() {
    multi_item_events(ddb).await;
}
#[tokio::test]
async fn long_texts_are_truncated() {
    long_text_is_truncated(ddb).await;
}
#[tokio::test]
async fn clean_uninstall_purges_that_portal_only() {
    clean_uninstall_purges_only_that_portal(ddb).await;
}

fn ctx_for(e: &b24_events::Event, epoch: i64, now: i64) -> Context {
    Context {
        member: MemberId::new(&e.auth.member_id).unwrap(),
        authorization: Authorization::Installed {
            token_hash: TokenHash::of(e.auth.application_token.as_ref()).unwrap(),
            epoch,
        },
        received_at: now,
        event_ttl_days: 30,
        verified_client_endpoint: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_event_ten_times_concurrently_applies_once() {
    let store = Arc::new(testing::fresh_store().await);
    let db = Db::Ddb(testing::fresh_store_on(store.table()));
    for (i, e) in all_ten("x").into_iter().enumerate() {
        let member = format!("conc{i}");
        db.apply(&app(EventKind::AppInstall, &member, TOKEN, 1, "0"), 1)
            .await;
        let before = db.records(&member).await;
        let mut e = e;
        e.auth.member_id = member.clone();
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (s, e) = (store.clone(), e.clone());
                tokio::spawn(async move { s.apply(&e, &ctx_for(&e, 1, 2)).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(
                t.await
                    .unwrap()
                    .unwrap_or_else(|err| panic!("{}: {err}", e.kind())),
            );
        }
        let applied = outcomes
            .iter()
            .filter(|o| **o == Applied::Outcome(Outcome::Applied))
            .count();
        let dups = outcomes
            .iter()
            .filter(|o| **o == Applied::Outcome(Outcome::Duplicate))
            .count();
        if e.kind() == EventKind::AppUninstall {
            // The copies that lose to the uninstall find the portal uninstalled: refused.
            assert_eq!(applied, 1, "{}: {outcomes:?}", e.kind());
        } else {
            assert_eq!((applied, dups), (1, 9), "{}: {outcomes:?}", e.kind());
        }
        let after = db.records(&member).await;
        assert_eq!(
            find(&after, "event").len(),
            find(&before, "event").len() + 1,
            "{}",
            e.kind()
        );
        // Exactly one state change: the same records as applying the event once.
        let single = Db::Ddb(testing::fresh_store().await);
        single
            .apply(&app(EventKind::AppInstall, &member, TOKEN, 1, "0"), 1)
            .await;
        single.apply(&e, 2).await;
        assert_eq!(
            state_and_event_keys(after),
            state_and_event_keys(single.records(&member).await),
            "{}",
            e.kind()
        );
    }
}

#[tokio::test]
async fn common_path_is_one_request_with_the_portal_cached() {
    let store = Arc::new(testing::fresh_store().await);
    let db = Db::Ddb(testing::fresh_store_on(store.table()));
    db.apply(&app(EventKind::AppInstall, MEMBER, TOKEN, 1, "1"), 1)
        .await;
    let registry = PortalRegistry::new(store.clone(), Duration::from_secs(60), 16);
    let member = MemberId::new(MEMBER).unwrap();
    let token = TokenHash::of(Some(&Secret::new(TOKEN))).unwrap();
    assert!(matches!(
        registry.check(&member, Some(&token)).await.unwrap(),
        AuthCheck::Verified(_)
    ));
    for i in 0..5 {
        let before = store.request_count();
        let AuthCheck::Verified(p) = registry.check(&member, Some(&token)).await.unwrap() else {
            panic!("verified from the cache")
        };
        let e = msg_add(MEMBER, 100 + i, 10 + i, "hi");
        assert_eq!(
            store.apply(&e, &ctx_for(&e, p.epoch, 2)).await.unwrap(),
            Applied::Outcome(Outcome::Applied)
        );
        assert_eq!(
            store.request_count() - before,
            1,
            "auth from cache + one TransactWriteItems (the portal check rides in it)"
        );
    }
    assert!(store.write_units() > 0.0, "consumed capacity is reported");
}

#[tokio::test]
async fn registry_checks_tokens() {
    let store = Arc::new(testing::fresh_store().await);
    let db = Db::Ddb(testing::fresh_store_on(store.table()));
    let registry = PortalRegistry::new(store.clone(), Duration::from_secs(300), 16);
    let hash = |t: &str| TokenHash::of(Some(&Secret::new(t)));
    let (right, wrong) = (hash(TOKEN).unwrap(), hash("not-the-token").unwrap());
    let member = MemberId::new(MEMBER).unwrap();
    let nobody = MemberId::new("nobody").unwrap();

    assert_eq!(
        registry.check(&nobody, Some(&right)).await.unwrap(),
        AuthCheck::UnknownPortal
    );
    assert_eq!(registry.cached_len(), 0, "unknown portals are never cached");

    db.apply(&app(EventKind::AppInstall, MEMBER, TOKEN, 100, "1"), 1)
        .await;
    assert!(
        matches!(registry.check(&member, Some(&right)).await.unwrap(), AuthCheck::Verified(p) if p.version.as_deref() == Some("1"))
    );
    assert!(matches!(
        registry.check(&member, Some(&wrong)).await.unwrap(),
        AuthCheck::TokenMismatch(_)
    ));
    assert!(matches!(
        registry.check(&member, None).await.unwrap(),
        AuthCheck::TokenMismatch(_)
    ));
    assert!(hash("").is_none(), "an empty token never authenticates");

    // Rotated token while the cache still holds the old record: never refused.
    db.apply(
        &app(EventKind::AppUpdate, MEMBER, "rotated-token", 200, "2"),
        2,
    )
    .await;
    let rotated = hash("rotated-token").unwrap();
    assert!(
        matches!(registry.check(&member, Some(&rotated)).await.unwrap(), AuthCheck::Verified(p) if p.version.as_deref() == Some("2"))
    );
    assert!(matches!(
        registry.check(&member, Some(&right)).await.unwrap(),
        AuthCheck::TokenMismatch(_)
    ));

    // Uninstalled.
    db.apply(&uninstall(MEMBER, "rotated-token", 300, false), 3)
        .await;
    registry.invalidate(&member);
    assert!(matches!(
        registry.check(&member, Some(&rotated)).await.unwrap(),
        AuthCheck::Uninstalled(_)
    ));
    assert_eq!(
        registry.cached_len(),
        0,
        "uninstalled portals are not cached"
    );
    assert_eq!(registry.store().get_portal(&nobody).await.unwrap(), None);
}

#[tokio::test]
async fn create_table_is_idempotent_and_matches_the_spec() {
    let client = testing::client();
    let table = testing::fresh_table(&client).await;
    b24_state::create_table(&client, &table).await.unwrap();
    let d = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let t = d.table().unwrap();
    let spec = b24_state::schema::table_spec();
    let keys: Vec<(String, String)> = t
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_string(),
                k.key_type().as_str().to_string(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            (spec.partition_key.name.to_string(), "HASH".to_string()),
            (spec.sort_key.name.to_string(), "RANGE".to_string())
        ]
    );
    let stream = t.stream_specification().unwrap();
    assert_eq!(
        stream.stream_view_type().unwrap().as_str(),
        spec.stream_view_type
    );
    let ttl = client
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description().unwrap().attribute_name(),
        Some(spec.ttl_attribute)
    );
}

#[tokio::test]
async fn unavailable_dynamodb_is_reported_as_unavailable() {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "d", "d", None, None, "t",
        ))
        .endpoint_url("http://127.0.0.1:9") // discard port: connection refused
        .build();
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(conf), "t");
    let e = msg_add(MEMBER, 1, 1, "x");
    let err = store.apply(&e, &ctx_for(&e, 1, 1)).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
    assert!(!err.to_string().contains(TOKEN));
    // A missing table is a configuration problem, not "unavailable" and not the input's fault.
    let store = DynamoStore::new(testing::client(), "no-such-table");
    let err = store
        .get_portal(&MemberId::new(MEMBER).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Misconfigured { .. }), "{err}");
    assert!(!err.is_invalid_input());
}

//! The pipeline over the real DynamoDB adapter (DynamoDB Local): what only a real store
//! shows — the portal check inside the transaction, an unreachable endpoint.

mod common;

use b24_events::Family;
use b24_state::DynamoStore;
use common::*;
use serde_json::json;
use std::sync::Arc;

async fn harness() -> Harness<DynamoStore> {
    let store = b24_state::testing::fresh_store().await;
    let config = test_config(store.table(), None, Some(CLIENT_ID));
    Harness {
        store: Arc::new(store),
        metrics: Capture::default(),
        config,
        parker: MemoryParker::default(),
    }
}

#[tokio::test]
async fn events_land_once_and_a_revoked_token_never_does_on_dynamodb() {
    let logs = Capture::default();
    let _guard = capture_logs(&logs);
    let h = harness().await;
    let m = member("ddb");
    let app = h.pipeline(Family::App);
    let body = form(&install(
        &m,
        &app_token(1),
        &access_token(1),
        "https://some-domain.bitrix24.ru/rest/",
    ));
    assert_eq!(
        post(&app, &body).await,
        (200, json!({"outcome": "applied"}))
    );
    let warm = h.pipeline(Family::Messages);
    let add = form(&message_add(&m, &app_token(1), 1));
    assert_eq!(
        post(&warm, &add).await,
        (200, json!({"outcome": "applied"}))
    );
    assert_eq!(
        post(&warm, &add).await,
        (200, json!({"outcome": "duplicate"}))
    );
    // Uninstall through another instance; the warm one still has the portal cached.
    let body = form(&uninstall(&m, &app_token(1), 1_773_800_000, true));
    assert_eq!(
        post(&app, &body).await,
        (200, json!({"outcome": "applied"}))
    );
    let late = form(&message_add(&m, &app_token(1), 2));
    assert_eq!(post(&warm, &late).await.0, 401);
    b24_state::testing::run_purges(&*h.store, &m, 10)
        .await
        .unwrap();
    let records = h.store.portal_records(&member_id(&m)).await.unwrap();
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["record_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["portal", "purge"]);
    assert_no_secrets(&logs, &h.metrics, &records);
}

#[tokio::test]
async fn unreachable_dynamodb_answers_503_without_secrets() {
    let logs = Capture::default();
    let _guard = capture_logs(&logs);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "d", "d", None, None, "test",
        ))
        .endpoint_url(format!("http://127.0.0.1:{closed}"))
        .build();
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(conf), "nowhere");
    let h = Harness {
        store: Arc::new(store),
        metrics: Capture::default(),
        config: test_config("nowhere", None, None),
        parker: MemoryParker::default(),
    };
    let messages = h.pipeline(Family::Messages);
    let body = form(&message_add(&member("down"), &app_token(1), 1));
    // Parked, unauthenticated (the portal could not be read), answered fast.
    let started = std::time::Instant::now();
    let (status, answer) = post(&messages, &body).await;
    assert_eq!((status, answer), (202, json!({"outcome": "parked"})));
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    let parked = h.parker.taken();
    assert_eq!(parked.len(), 1);
    assert!(parked[0].authorization.is_none());
    assert!(h.metrics.text().contains("\"Parked\":1"));
    // And when the parked queue is down too: 503, logged with the event's identity.
    h.parker.set_failing(true);
    let (status, answer) = post(&messages, &body).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("storage_unavailable"))
    );
    assert!(h.metrics.text().contains("\"StorageErrors\":1"));
    assert!(logs
        .text()
        .contains("event could not be stored or parked: lost"));
    let bodies: Vec<String> = parked.iter().map(|p| p.to_body()).collect();
    let as_values: Vec<serde_json::Value> = bodies
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_no_secrets(&logs, &h.metrics, &as_values);
}

//! The real pipeline, fed API Gateway HTTP API (payload v2) requests, applying events to
//! DynamoDB Local. Every test captures its log lines and its metrics and checks that no
//! secret appears in them.

mod common;

use b24_events::Family;
use common::*;
use serde_json::json;

/// A fresh table on DynamoDB Local and the captures of one test.
async fn harness(max_body_bytes: Option<usize>) -> Harness {
    let store = b24_state::testing::fresh_store().await;
    let config = test_config(store.table(), max_body_bytes);
    Harness {
        store: std::sync::Arc::new(store),
        metrics: Capture::default(),
        config,
    }
}

/// Fails when a secret of these tests shows up in logs, metrics or answers.
fn assert_no_secrets(logs: &Capture, h: &Harness) {
    let logs = logs.text();
    assert!(
        !logs.contains(SECRET_MARK),
        "a token leaked into the logs:\n{logs}"
    );
    let metrics = h.metrics.text();
    assert!(
        !metrics.contains(SECRET_MARK),
        "a token leaked into the metrics"
    );
}

/// The request log lines (one per request) as JSON.
fn request_lines(logs: &Capture) -> Vec<serde_json::Value> {
    logs.text()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "request")
        .collect()
}

/// One test's captures, store and an installed portal (token `app_token(1)`).
struct Case {
    logs: Capture,
    _guard: tracing::subscriber::DefaultGuard,
    h: Harness,
    m: String,
}

async fn case(tag: &str, max_body_bytes: Option<usize>) -> Case {
    case_at(tag, max_body_bytes, "https://some-domain.bitrix24.ru/rest/").await
}

/// Like [`case`], the portal's stored `client_endpoint` being `endpoint`.
async fn case_at(tag: &str, max_body_bytes: Option<usize>, endpoint: &str) -> Case {
    let logs = Capture::default();
    let _guard = capture_logs(&logs);
    let h = harness(max_body_bytes).await;
    let m = member(tag);
    install_portal(&h, &m, &app_token(1), endpoint).await;
    Case { logs, _guard, h, m }
}

async fn install_portal(h: &Harness, member: &str, token: &str, endpoint: &str) {
    let app = h.pipeline(Family::App);
    let body = form(&install(member, token, &access_token(1), endpoint));
    let (status, answer) = post(&app, &body).await;
    assert_eq!((status, answer), (200, json!({"outcome": "applied"})));
}

#[tokio::test]
async fn form_body_is_applied_once_then_answered_duplicate() {
    let Case { logs, _guard, h, m } = case("form", None).await;
    let messages = h.pipeline(Family::Messages);
    let body = form(&message_add(&m, &app_token(1), 86497));
    assert!(body.contains("data%5BMESSAGES%5D%5B0%5D%5Bim%5D%5Bchat_id%5D=1807"));
    let first = post(&messages, &body).await;
    assert_eq!(first, (200, json!({"outcome": "applied"})));
    let second = post(&messages, &body).await;
    assert_eq!(second, (200, json!({"outcome": "duplicate"})));

    let lines = request_lines(&logs);
    let last = &lines.last().unwrap()["fields"];
    assert_eq!(last["event"], "ONIMCONNECTORMESSAGEADD");
    assert_eq!(last["family"], "messages");
    assert_eq!(last["member_id"], m.as_str());
    assert_eq!(last["domain"], "some-domain.bitrix24.ru");
    assert_eq!(last["line"], 107);
    assert_eq!(last["outcome"], "duplicate");
    assert_eq!(last["status"], 200);
    assert!(last["duration_ms"].is_number());
    let emf: Vec<serde_json::Value> = h
        .metrics
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(emf.last().unwrap()["Duplicates"], 1);
    assert_eq!(emf.last().unwrap()["Outcome"], "duplicate");
    assert_no_secrets(&logs, &h);
}

#[tokio::test]
async fn base64_and_json_bodies_are_decoded() {
    let Case { logs, _guard, h, m } = case("b64", None).await;
    let messages = h.pipeline(Family::Messages);
    let body = form(&message_add(&m, &app_token(1), 1));
    let request = apigw(
        "POST",
        Family::Messages,
        Some("application/x-www-form-urlencoded"),
        body.as_bytes(),
        true,
    );
    assert_eq!(
        read(messages.handle(request).await.unwrap()),
        (200, json!({"outcome": "applied"}))
    );
    // Without a content type the body is taken as a form, as Bitrix24 sends it.
    let body = form(&message_add(&m, &app_token(1), 2));
    let request = apigw("POST", Family::Messages, None, body.as_bytes(), false);
    assert_eq!(
        read(messages.handle(request).await.unwrap()),
        (200, json!({"outcome": "applied"}))
    );
    let body = message_add(&m, &app_token(1), 3).to_string();
    let request = apigw(
        "POST",
        Family::Messages,
        Some("application/json; charset=utf-8"),
        body.as_bytes(),
        false,
    );
    assert_eq!(
        read(messages.handle(request).await.unwrap()),
        (200, json!({"outcome": "applied"}))
    );
    assert_no_secrets(&logs, &h);
}

#[tokio::test]
async fn bad_requests_get_clear_4xx_answers() {
    let Case { logs, _guard, h, m } = case("bad", Some(4096)).await;
    let messages = h.pipeline(Family::Messages);
    let good = form(&message_add(&m, &app_token(1), 7));

    let response = messages
        .handle(apigw("GET", Family::Messages, None, b"", false))
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(read(response).0, 405);

    let huge = format!("{good}&pad={}", "x".repeat(5000));
    let (status, answer) = post(&messages, &huge).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (413, Some("payload_too_large"))
    );

    let (status, answer) = read(
        messages
            .handle(apigw(
                "POST",
                Family::Messages,
                Some("text/xml"),
                good.as_bytes(),
                false,
            ))
            .await
            .unwrap(),
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (415, Some("unsupported_media_type"))
    );

    let (status, answer) = post(&messages, "%%%garbage&&=").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("bad_request"))
    );
    assert!(answer["reason"].as_str().unwrap().len() > 3);

    let binary = apigw(
        "POST",
        Family::Messages,
        None,
        &[0xff, 0xfe, 0x00, 0x9c, b'[', b']'],
        true,
    );
    assert_eq!(read(messages.handle(binary).await.unwrap()).0, 400);

    let crm = good.replace("ONIMCONNECTORMESSAGEADD", "ONCRMDEALADD");
    let (status, answer) = post(&messages, &crm).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (422, Some("unsupported_event"))
    );
    assert!(answer["reason"].as_str().unwrap().contains("ONCRMDEALADD"));

    let app = h.pipeline(Family::App);
    let (status, answer) = post(&app, &good).await;
    assert_eq!(status, 422);
    assert_eq!(answer["error"], "wrong_family");
    assert!(answer["reason"]
        .as_str()
        .unwrap()
        .contains("/bitrix24/messages"));

    // Nothing stored was lost or corrupted by all that: the real event still applies once.
    let (status, answer) = post(&messages, &good).await;
    assert_eq!((status, answer), (200, json!({"outcome": "applied"})));
    let statuses: Vec<u64> = request_lines(&logs)
        .iter()
        .map(|l| l["fields"]["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![200, 405, 413, 415, 400, 400, 422, 422, 200]);
    let emf = h.metrics.text();
    assert_eq!(
        emf.lines()
            .filter(|l| l.contains("\"DecodeFailures\":1"))
            .count(),
        6
    );
    assert_no_secrets(&logs, &h);
}

#[tokio::test]
async fn authentication_failures_answer_401_the_same_way() {
    let Case { logs, _guard, h, m } = case("auth", None).await;
    let messages = h.pipeline(Family::Messages);

    let wrong = form(&message_add(&m, &app_token(2), 1));
    let unknown = form(&message_add(&member("nobody"), &app_token(1), 1));
    let mut no_token = message_add(&m, "", 1);
    no_token["auth"]
        .as_object_mut()
        .unwrap()
        .remove("application_token");
    let no_token = form(&no_token);
    let mut answers = Vec::new();
    for body in [&wrong, &unknown, &no_token] {
        answers.push(post(&messages, body).await);
    }
    for a in &answers {
        assert_eq!(
            a,
            &(
                401,
                json!({"error": "unauthorized", "reason": "authentication failed"})
            )
        );
    }
    let reasons: Vec<String> = request_lines(&logs)
        .iter()
        .skip(1)
        .map(|l| l["fields"]["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        reasons,
        ["token_mismatch", "unknown_portal", "missing_token"]
    );
    let emf = h.metrics.text();
    assert_eq!(
        emf.lines()
            .filter(|l| l.contains("\"AuthFailures\":1"))
            .count(),
        3
    );

    // Uninstalled portals are refused too, and the right token still works before that.
    let ok = form(&message_add(&m, &app_token(1), 1));
    assert_eq!(post(&messages, &ok).await.0, 200);
    let uninstall = json!({
        "event": "ONAPPUNINSTALL", "data": {"LANGUAGE_ID": "ru", "CLEAN": "0"}, "ts": "1773800000",
        "auth": {"domain": "some-domain.bitrix24.ru", "member_id": m, "application_token": app_token(1),
                 "client_endpoint": "https://some-domain.bitrix24.ru/rest/", "server_endpoint": "https://oauth.bitrix24.tech/rest/"}
    });
    let app = h.pipeline(Family::App);
    assert_eq!(post(&app, &form(&uninstall)).await.0, 200);
    // Another function instance learns of the uninstall when its cached portal expires
    // (PORTAL_CACHE_TTL_SECONDS); a fresh instance sees it at once.
    let messages = h.pipeline(Family::Messages);
    let again = form(&message_add(&m, &app_token(1), 2));
    assert_eq!(post(&messages, &again).await.0, 401);
    assert_eq!(
        request_lines(&logs).last().unwrap()["fields"]["reason"],
        "uninstalled_portal"
    );
    assert_no_secrets(&logs, &h);
}

#[tokio::test]
async fn token_change_needs_app_info_on_the_stored_endpoint() {
    let (endpoint, fake) = fake_app_info(access_token(3), 2).await;
    let Case { logs, _guard, h, m } = case_at("takeover", None, &endpoint).await;
    let app = h.pipeline(Family::App);
    let messages = h.pipeline(Family::Messages);

    // A forger with a new token and an access token the portal does not know: refused, and
    // the event's own client_endpoint (the forger's) is never called.
    let forged = install(
        &m,
        &app_token(2),
        &access_token(2),
        "https://attacker.example/rest/",
    );
    assert_eq!(post(&app, &form(&forged)).await.0, 401);
    let old = form(&message_add(&m, &app_token(1), 1));
    assert_eq!(post(&messages, &old).await.0, 200);

    // A real reinstall: the portal confirms the access token, the new token replaces the old.
    let reinstall = install(&m, &app_token(3), &access_token(3), &endpoint);
    let answer = post(&app, &form(&reinstall)).await;
    assert_eq!(answer, (200, json!({"outcome": "applied"})));
    let seen = fake.await.unwrap();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|l| l.starts_with("POST /rest/app.info")),
        "{seen:?}"
    );
    let new = form(&message_add(&m, &app_token(3), 2));
    assert_eq!(post(&messages, &new).await.0, 200);
    let stale_cache = form(&message_add(&m, &app_token(1), 3));
    assert_eq!(post(&messages, &stale_cache).await.0, 401);
    assert_no_secrets(&logs, &h);
}

#[tokio::test]
async fn unreachable_verifier_refuses_the_token_change() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{closed}/rest/");
    let Case { logs, _guard, h, m } = case_at("unreachable", None, &endpoint).await;
    let app = h.pipeline(Family::App);
    let change = install(&m, &app_token(2), &access_token(2), &endpoint);
    assert_eq!(post(&app, &form(&change)).await.0, 401);
    assert_eq!(
        request_lines(&logs).last().unwrap()["fields"]["reason"],
        "token_change_not_verified"
    );
    let messages = h.pipeline(Family::Messages);
    let old = form(&message_add(&m, &app_token(1), 1));
    assert_eq!(post(&messages, &old).await.0, 200);
    assert_no_secrets(&logs, &h);
}

#[tokio::test]
async fn storage_down_answers_503_without_secrets() {
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
    let store = b24_state::DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(conf), "nowhere");
    let h = Harness {
        store: std::sync::Arc::new(store),
        metrics: Capture::default(),
        config: test_config("nowhere", None),
    };
    let messages = h.pipeline(Family::Messages);
    let body = form(&message_add(&member("down"), &app_token(1), 1));
    let (status, answer) = post(&messages, &body).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("storage_unavailable"))
    );
    assert!(h.metrics.text().contains("\"StorageErrors\":1"));
    assert_no_secrets(&logs, &h);
}

#[tokio::test]
async fn without_a_verifier_token_changes_are_refused() {
    let Case { logs, _guard, h, m } = case("noverifier", None).await;
    let mut config = h.config.clone();
    config.family = Family::App;
    let sink = std::sync::Arc::new(std::sync::Mutex::new(h.metrics.clone()));
    let app = b24_pipeline::Pipeline::new(
        &config,
        h.store.clone(),
        b24_pipeline::RefuseTokenChanges,
        b24_pipeline::Metrics::with_sink("Test", sink),
    );
    let change = install(
        &m,
        &app_token(2),
        &access_token(2),
        "https://some-domain.bitrix24.ru/rest/",
    );
    assert_eq!(post(&app, &form(&change)).await.0, 401);
    // The unchanged token still installs (an update with the same token needs no verification).
    let same = install(
        &m,
        &app_token(1),
        &access_token(2),
        "https://some-domain.bitrix24.ru/rest/",
    );
    assert_eq!(post(&app, &form(&same)).await.0, 200);
    assert_no_secrets(&logs, &h);
}

#[tokio::test]
async fn largest_events_within_the_limits_are_stored_and_overlong_fields_are_400() {
    let Case { logs, _guard, h, m } = case("large", None).await;
    let messages = h.pipeline(Family::Messages);

    // Every field at its limit: long ids, files and a long text. The state crate truncates
    // what does not fit an item; the answer is never a 5xx.
    let long = "x".repeat(b24_events::MAX_FIELD_BYTES);
    let mut event = message_add(&m, &app_token(1), 42);
    let msg = &mut event["data"]["MESSAGES"][0];
    msg["message"]["text"] = json!("Ж".repeat(120_000));
    msg["message"]["id"] = json!((0..150)
        .map(|i| format!("{i}{long}")[..long.len()].to_string())
        .collect::<Vec<_>>());
    msg["message"]["files"] = json!((0..120)
        .map(|_| json!({"name": long, "type": "file", "link": long, "size": "1"}))
        .collect::<Vec<_>>());
    msg["chat"]["id"] = json!(long);
    let body = form(&event);
    assert!(body.len() < 1024 * 1024, "{}", body.len());
    assert_eq!(
        post(&messages, &body).await,
        (200, json!({"outcome": "applied"}))
    );
    assert_eq!(
        post(&messages, &body).await,
        (200, json!({"outcome": "duplicate"}))
    );

    // One byte over a field limit: a 400 naming the field, and nothing is stored.
    let mut event = message_add(&m, &app_token(1), 43);
    event["data"]["CONNECTOR"] = json!(format!("{long}x"));
    let (status, answer) = post(&messages, &form(&event)).await;
    assert_eq!(status, 400);
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("data[CONNECTOR]"),
        "{answer}"
    );
    let mut event = message_add(&format!("{long}x"), &app_token(1), 44);
    event["auth"]["domain"] = json!("d");
    let (status, answer) = post(&messages, &form(&event)).await;
    assert_eq!(status, 400);
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("auth[member_id]"),
        "{answer}"
    );
    let records = h.store.portal_records(&m).await.unwrap();
    assert!(
        records.iter().all(|r| r["message_id"] != 43),
        "nothing stored for the refused event"
    );
    assert_no_secrets(&logs, &h);
}

//! The real pipeline, fed API Gateway HTTP API (payload v2) events, applying events to a
//! `MemoryStore` (the DynamoDB adapter is proven in `dynamodb.rs` and the state crate). Every
//! test captures its log lines and its metrics and checks that no secret appears in them.

mod common;

use b24_events::{EventKind, Family};
use b24_fixtures::Fixture;
use b24_state::MemoryStore;
use common::*;
use serde_json::json;

/// One test's captures, store and an installed portal (token `app_token(1)`).
struct Case {
    logs: Capture,
    _guard: tracing::subscriber::DefaultGuard,
    h: Harness<MemoryStore>,
    m: String,
}

impl Case {
    fn assert_no_secrets(&self) {
        assert_no_secrets(&self.logs, &self.h.metrics, &self.h.store.all_records());
    }
}

async fn case(tag: &str, max_body_bytes: Option<usize>) -> Case {
    case_at(
        tag,
        max_body_bytes,
        "https://some-domain.bitrix24.ru/rest/",
        Some(CLIENT_ID),
    )
    .await
}

/// Like [`case`], the portal's stored `client_endpoint` being `endpoint`.
async fn case_at(
    tag: &str,
    max_body_bytes: Option<usize>,
    endpoint: &str,
    client_id: Option<&str>,
) -> Case {
    let logs = Capture::default();
    let _guard = capture_logs(&logs);
    let h = Harness::memory(max_body_bytes, client_id);
    let m = member(tag);
    install_portal(&h, &m, &app_token(1), endpoint).await;
    Case { logs, _guard, h, m }
}

async fn install_portal(h: &Harness<MemoryStore>, member: &str, token: &str, endpoint: &str) {
    let app = h.pipeline(Family::App);
    let body = form(&install(member, token, &access_token(1), endpoint));
    let (status, answer) = post(&app, &body).await;
    assert_eq!((status, answer), (200, json!({"outcome": "applied"})));
}

#[tokio::test]
async fn form_body_is_applied_once_then_answered_duplicate() {
    let c = case("form", None).await;
    let messages = c.h.pipeline(Family::Messages);
    let body = form(&message_add(&c.m, &app_token(1), 86497));
    assert!(body.contains("data%5BMESSAGES%5D%5B0%5D%5Bim%5D%5Bchat_id%5D=1807"));
    let first = post(&messages, &body).await;
    assert_eq!(first, (200, json!({"outcome": "applied"})));
    let second = post(&messages, &body).await;
    assert_eq!(second, (200, json!({"outcome": "duplicate"})));

    let lines = request_lines(&c.logs);
    let last = &lines.last().unwrap()["fields"];
    assert_eq!(last["event"], "ONIMCONNECTORMESSAGEADD");
    assert_eq!(last["family"], "messages");
    assert_eq!(last["member_id"], c.m.as_str());
    assert_eq!(last["domain"], "some-domain.bitrix24.ru");
    assert_eq!(last["line"], 107);
    assert_eq!(last["outcome"], "duplicate");
    assert_eq!(last["status"], 200);
    assert!(last["duration_ms"].is_number());
    let emf: Vec<serde_json::Value> =
        c.h.metrics
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(emf.last().unwrap()["Duplicates"], 1);
    assert_eq!(emf.last().unwrap()["Outcome"], "duplicate");
    c.assert_no_secrets();
}

#[tokio::test]
async fn base64_and_json_bodies_are_decoded() {
    let c = case("b64", None).await;
    let messages = c.h.pipeline(Family::Messages);
    let body = form(&message_add(&c.m, &app_token(1), 1));
    let request = apigw(
        "POST",
        Family::Messages,
        Some("application/x-www-form-urlencoded"),
        body.as_bytes(),
        true,
    );
    assert_eq!(
        read(messages.handle(request).await),
        (200, json!({"outcome": "applied"}))
    );
    // Without a content type the body is taken as a form, as Bitrix24 sends it.
    let body = form(&message_add(&c.m, &app_token(1), 2));
    let request = apigw("POST", Family::Messages, None, body.as_bytes(), false);
    assert_eq!(
        read(messages.handle(request).await),
        (200, json!({"outcome": "applied"}))
    );
    let body = message_add(&c.m, &app_token(1), 3).to_string();
    let request = apigw(
        "POST",
        Family::Messages,
        Some("application/json; charset=utf-8"),
        body.as_bytes(),
        false,
    );
    assert_eq!(
        read(messages.handle(request).await),
        (200, json!({"outcome": "applied"}))
    );
    c.assert_no_secrets();
}

#[tokio::test]
async fn bad_requests_get_clear_4xx_answers() {
    let c = case("bad", Some(4096)).await;
    let messages = c.h.pipeline(Family::Messages);
    let good = form(&message_add(&c.m, &app_token(1), 7));

    let response = messages
        .handle(apigw("GET", Family::Messages, None, b"", false))
        .await;
    assert_eq!(response.headers["allow"], "POST");
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
            .await,
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
    assert_eq!(read(messages.handle(binary).await).0, 400);

    let crm = good.replace("ONIMCONNECTORMESSAGEADD", "ONCRMDEALADD");
    let (status, answer) = post(&messages, &crm).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (422, Some("unsupported_event"))
    );
    assert!(answer["reason"].as_str().unwrap().contains("ONCRMDEALADD"));

    let app = c.h.pipeline(Family::App);
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
    let statuses: Vec<u64> = request_lines(&c.logs)
        .iter()
        .skip(1)
        .map(|l| l["fields"]["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![405, 413, 415, 400, 400, 422, 422, 200]);
    let emf = c.h.metrics.text();
    assert_eq!(
        emf.lines()
            .filter(|l| l.contains("\"DecodeFailures\":1"))
            .count(),
        6
    );
    c.assert_no_secrets();
}

/// `isBase64Encoded: true` with a body that is not base64 — lambda_http's conversion would
/// panic on it (a process abort in release builds) — and payloads that are not API Gateway
/// events at all: a 400 with a reason, and the next request is served as usual.
#[tokio::test]
async fn invalid_base64_and_malformed_events_are_400_never_a_panic() {
    let c = case("b64bad", None).await;
    let messages = c.h.pipeline(Family::Messages);
    for body in ["%%%not base64%%%", "YWJj=ZGVm", "\u{0}\u{1}", "=", "Zm9v!"] {
        let (status, answer) = read(
            messages
                .handle(apigw_raw("POST", Family::Messages, None, body, true))
                .await,
        );
        assert_eq!(status, 400, "{body:?}");
        assert!(
            answer["reason"].as_str().unwrap().contains("base64"),
            "{answer}"
        );
    }
    for payload in [
        json!(null),
        json!([1, 2]),
        json!("text"),
        json!({"requestContext": {"http": {"method": 7}}}),
        json!({"body": {"not": "a string"}}),
    ] {
        let (status, answer) = read(messages.handle(payload.clone()).await);
        assert_eq!(status, 400, "{payload}");
        assert_eq!(answer["error"], "bad_request");
    }
    // A huge base64 body is refused before it is decoded.
    let huge = "A".repeat(8 * 1024 * 1024);
    let (status, _) = read(
        messages
            .handle(apigw_raw("POST", Family::Messages, None, &huge, true))
            .await,
    );
    assert_eq!(status, 413);
    let good = form(&message_add(&c.m, &app_token(1), 1));
    assert_eq!(post(&messages, &good).await.0, 200);
    c.assert_no_secrets();
}

#[tokio::test]
async fn authentication_failures_answer_401_the_same_way() {
    let c = case("auth", None).await;
    let messages = c.h.pipeline(Family::Messages);

    let wrong = form(&message_add(&c.m, &app_token(2), 1));
    let unknown = form(&message_add(&member("nobody"), &app_token(1), 1));
    let mut no_token = message_add(&c.m, "", 1);
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
    let reasons: Vec<String> = request_lines(&c.logs)
        .iter()
        .skip(1)
        .map(|l| l["fields"]["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        reasons,
        ["token_mismatch", "unknown_portal", "missing_token"]
    );
    let emf = c.h.metrics.text();
    assert_eq!(
        emf.lines()
            .filter(|l| l.contains("\"AuthFailures\":1"))
            .count(),
        3
    );

    // Uninstalled portals are refused too, and the right token still works before that.
    let ok = form(&message_add(&c.m, &app_token(1), 1));
    assert_eq!(post(&messages, &ok).await.0, 200);
    let app = c.h.pipeline(Family::App);
    assert_eq!(
        post(
            &app,
            &form(&uninstall(&c.m, &app_token(1), 1_773_800_000, false))
        )
        .await
        .0,
        200
    );
    // The same warm instance (its cache still says "installed") refuses at once: the portal
    // is checked inside the transaction.
    let again = form(&message_add(&c.m, &app_token(1), 2));
    assert_eq!(post(&messages, &again).await.0, 401);
    assert_eq!(
        request_lines(&c.logs).last().unwrap()["fields"]["reason"],
        "uninstalled_portal"
    );
    let msgs =
        c.h.records(&c.m)
            .await
            .into_iter()
            .filter(|r| r["record_type"] == "message" && r["message_id"] == 2)
            .count();
    assert_eq!(msgs, 0, "nothing recreated");
    c.assert_no_secrets();
}

/// A CLEAN=1 uninstall while another function instance still has the portal cached: the
/// revoked token never lands, nothing is recreated inside the purged portal, and the purge
/// runs off the request path.
#[tokio::test]
async fn an_event_right_after_a_clean_uninstall_is_refused_by_a_warm_instance() {
    let c = case("clean", None).await;
    let warm = c.h.pipeline(Family::Messages);
    for id in 1..=3 {
        let body = form(&message_add(&c.m, &app_token(1), id));
        assert_eq!(post(&warm, &body).await.0, 200);
    }
    assert_eq!(warm.registry().cached_len(), 1, "the portal is cached");
    let app = c.h.pipeline(Family::App);
    let (status, answer) = post(
        &app,
        &form(&uninstall(&c.m, &app_token(1), 1_773_800_000, true)),
    )
    .await;
    assert_eq!((status, answer), (200, json!({"outcome": "applied"})));
    // Answered at once; the records are still there until the purge runs.
    assert!(c.h.records(&c.m).await.len() > 3);

    let late = form(&message_add(&c.m, &app_token(1), 4));
    assert_eq!(post(&warm, &late).await.0, 401);
    b24_state::testing::run_purges(&*c.h.store, &c.m, 10)
        .await
        .unwrap();
    let late = form(&message_add(&c.m, &app_token(1), 5));
    assert_eq!(post(&warm, &late).await.0, 401);
    let left: Vec<String> =
        c.h.records(&c.m)
            .await
            .iter()
            .map(|r| r["record_type"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(
        left,
        ["portal", "purge"],
        "nothing recreated after the purge"
    );
    c.assert_no_secrets();
}

#[tokio::test]
async fn token_change_needs_app_info_for_our_client_id_on_the_stored_endpoint() {
    let (endpoint, fake) = fake_app_info(access_token(3), APP_INFO_FOR_US, 2).await;
    let c = case_at("takeover", None, &endpoint, Some(CLIENT_ID)).await;
    let app = c.h.pipeline(Family::App);
    let messages = c.h.pipeline(Family::Messages);

    // A forger with a new token and an access token the portal does not know: refused, and
    // the event's own client_endpoint (the forger's) is never called.
    let forged = install(
        &c.m,
        &app_token(2),
        &access_token(2),
        "https://attacker.example/rest/",
    );
    assert_eq!(post(&app, &form(&forged)).await.0, 401);
    let old = form(&message_add(&c.m, &app_token(1), 1));
    assert_eq!(post(&messages, &old).await.0, 200);

    // A real reinstall: the portal confirms the access token, the new token replaces the old.
    let reinstall = install(&c.m, &app_token(3), &access_token(3), &endpoint);
    let answer = post(&app, &form(&reinstall)).await;
    assert_eq!(answer, (200, json!({"outcome": "applied"})));
    let seen = fake.await.unwrap();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|l| l.starts_with("POST /rest/app.info")),
        "{seen:?}"
    );
    let new = form(&message_add(&c.m, &app_token(3), 2));
    assert_eq!(post(&messages, &new).await.0, 200);
    let stale_cache = form(&message_add(&c.m, &app_token(1), 3));
    assert_eq!(post(&messages, &stale_cache).await.0, 401);
    c.assert_no_secrets();
}

/// Any valid access token of any app on the portal gets a `{"result": ...}` from `app.info`:
/// it must never verify a token change, neither without a configured client id nor for
/// another application's code.
#[tokio::test]
async fn a_generic_app_info_answer_never_verifies_a_token_change() {
    for client_id in [None, Some(CLIENT_ID)] {
        let (endpoint, fake) = fake_app_info(access_token(2), APP_INFO_GENERIC, 1).await;
        let c = case_at("generic", None, &endpoint, client_id).await;
        let app = c.h.pipeline(Family::App);
        let takeover = install(&c.m, &app_token(2), &access_token(2), &endpoint);
        assert_eq!(post(&app, &form(&takeover)).await.0, 401, "{client_id:?}");
        assert_eq!(
            request_lines(&c.logs).last().unwrap()["fields"]["reason"],
            "token_change_not_verified"
        );
        // The old token still works; the new one never does.
        let messages = c.h.pipeline(Family::Messages);
        assert_eq!(
            post(&messages, &form(&message_add(&c.m, &app_token(1), 1)))
                .await
                .0,
            200
        );
        assert_eq!(
            post(&messages, &form(&message_add(&c.m, &app_token(2), 2)))
                .await
                .0,
            401
        );
        drop(fake);
        c.assert_no_secrets();
    }
}

/// After an uninstall (no CLEAN), an ONAPPINSTALL with the old token and a newer `ts` is a
/// reinstall: without proof it is refused, and the old token stays dead.
#[tokio::test]
async fn a_revive_with_the_old_token_is_refused_without_verification() {
    let c = case_at(
        "revive",
        None,
        "https://some-domain.bitrix24.ru/rest/",
        None,
    )
    .await;
    let app = c.h.pipeline(Family::App);
    assert_eq!(
        post(
            &app,
            &form(&uninstall(&c.m, &app_token(1), 1_773_800_000, false))
        )
        .await
        .0,
        200
    );
    let mut revive = install(&c.m, &app_token(1), &access_token(1), "https://x/rest/");
    revive["ts"] = json!("1773900000");
    assert_eq!(post(&app, &form(&revive)).await.0, 401);
    let messages = c.h.pipeline(Family::Messages);
    assert_eq!(
        post(&messages, &form(&message_add(&c.m, &app_token(1), 1)))
            .await
            .0,
        401
    );
    let portal =
        c.h.records(&c.m)
            .await
            .into_iter()
            .find(|r| r["record_type"] == "portal")
            .unwrap();
    assert_eq!(portal["installed"], false);
    c.assert_no_secrets();
}

/// The same revive, verified by app.info for our client id: accepted, under a new epoch.
#[tokio::test]
async fn a_verified_reinstall_after_uninstall_is_accepted() {
    let (endpoint, fake) = fake_app_info(access_token(5), APP_INFO_FOR_US, 1).await;
    let c = case_at("reinstall", None, &endpoint, Some(CLIENT_ID)).await;
    let app = c.h.pipeline(Family::App);
    assert_eq!(
        post(
            &app,
            &form(&uninstall(&c.m, &app_token(1), 1_773_800_000, false))
        )
        .await
        .0,
        200
    );
    let mut reinstall = install(&c.m, &app_token(5), &access_token(5), &endpoint);
    reinstall["ts"] = json!("1773900000");
    assert_eq!(
        post(&app, &form(&reinstall)).await,
        (200, json!({"outcome": "applied"}))
    );
    assert_eq!(fake.await.unwrap().len(), 1);
    let portal =
        c.h.records(&c.m)
            .await
            .into_iter()
            .find(|r| r["record_type"] == "portal")
            .unwrap();
    assert_eq!(
        (portal["installed"].clone(), portal["epoch"].clone()),
        (json!(true), json!(2))
    );
    let messages = c.h.pipeline(Family::Messages);
    assert_eq!(
        post(&messages, &form(&message_add(&c.m, &app_token(5), 1)))
            .await
            .0,
        200
    );
    c.assert_no_secrets();
}

/// An install and an uninstall with the same `ts`, ten times in each order: the uninstall
/// wins, and every answer says what it did to the stored portal.
#[tokio::test]
async fn same_second_install_and_uninstall_answers_match_the_state() {
    for round in 0..10 {
        for reversed in [false, true] {
            let (endpoint, _fake) = fake_app_info(access_token(1), APP_INFO_FOR_US, 2).await;
            let c = case_at("tie", None, &endpoint, Some(CLIENT_ID)).await;
            let app = c.h.pipeline(Family::App);
            let ts = 1_773_800_000 + round;
            let mut inst = install(&c.m, &app_token(1), &access_token(1), &endpoint);
            inst["ts"] = json!(ts.to_string());
            let uninst = uninstall(&c.m, &app_token(1), ts, false);
            let installed = |records: Vec<serde_json::Value>| {
                records
                    .into_iter()
                    .find(|r| r["record_type"] == "portal")
                    .unwrap()["installed"]
                    .clone()
            };
            if reversed {
                assert_eq!(post(&app, &form(&uninst)).await.1["outcome"], "applied");
                // A reinstall of an uninstalled portal: verified, but it loses the tie.
                assert_eq!(post(&app, &form(&inst)).await.1["outcome"], "stale");
            } else {
                assert_eq!(post(&app, &form(&inst)).await.1["outcome"], "applied");
                assert_eq!(installed(c.h.records(&c.m).await), json!(true));
                assert_eq!(post(&app, &form(&uninst)).await.1["outcome"], "applied");
            }
            assert_eq!(
                installed(c.h.records(&c.m).await),
                json!(false),
                "round {round}"
            );
        }
    }
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
    let c = case_at("unreachable", None, &endpoint, Some(CLIENT_ID)).await;
    let app = c.h.pipeline(Family::App);
    let change = install(&c.m, &app_token(2), &access_token(2), &endpoint);
    assert_eq!(post(&app, &form(&change)).await.0, 401);
    assert_eq!(
        request_lines(&c.logs).last().unwrap()["fields"]["reason"],
        "token_change_not_verified"
    );
    let messages = c.h.pipeline(Family::Messages);
    let old = form(&message_add(&c.m, &app_token(1), 1));
    assert_eq!(post(&messages, &old).await.0, 200);
    c.assert_no_secrets();
}

/// Storage down: the event is parked (202) with everything the redrive needs and no secret;
/// only when the parked queue is down too is the answer 503 (logged with the event's identity).
#[tokio::test]
async fn storage_down_parks_the_event_and_answers_202() {
    let c = case("down", None).await;
    let messages = c.h.pipeline(Family::Messages);
    // Warm the cache, so the portal check's authorization is known before storage fails.
    assert_eq!(
        post(&messages, &form(&message_add(&c.m, &app_token(1), 1)))
            .await
            .0,
        200
    );
    c.h.store
        .set_failure(Some(b24_state::StoreError::Unavailable {
            operation: "TransactWriteItems",
            cause: "connection failed".into(),
        }));
    let body = form(&message_add(&c.m, &app_token(1), 2));
    let (status, answer) = post(&messages, &body).await;
    assert_eq!((status, answer), (202, json!({"outcome": "parked"})));
    let parked = c.h.parker.taken();
    assert_eq!(parked.len(), 1);
    let p = &parked[0];
    assert_eq!(p.event_code, "ONIMCONNECTORMESSAGEADD");
    assert_eq!(p.member_id, c.m);
    assert_eq!(
        p.token_hash,
        b24_state::TokenHash::of(Some(&b24_events::Secret::new(app_token(1)))).unwrap()
    );
    assert!(p.reason.contains("connection failed"), "{}", p.reason);
    assert!(matches!(
        p.authorization,
        Some(b24_state::Authorization::Installed { epoch: 1, .. })
    ));
    let event = p.event().unwrap();
    assert_eq!(event.kind(), EventKind::MessageAdd);
    assert!(c.h.metrics.text().contains("\"Parked\":1"));
    let line = request_lines(&c.logs).last().unwrap().clone();
    assert_eq!(line["fields"]["outcome"], "parked");
    assert_eq!(line["fields"]["status"], 202);

    // An unknown portal while storage is down: parked unauthenticated.
    let other = form(&message_add(&member("unread"), &app_token(7), 3));
    assert_eq!(post(&messages, &other).await.0, 202);
    assert!(c.h.parker.taken()[1].authorization.is_none());

    // The parked queue down too: 503, and the error log names the event (never a token).
    c.h.parker.set_failing(true);
    let (status, answer) = post(&messages, &body).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("storage_unavailable"))
    );
    assert!(c.h.metrics.text().contains("\"StorageErrors\":1"));
    let errors: Vec<serde_json::Value> = c
        .logs
        .text()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["level"] == "ERROR")
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["fields"]["event"], "ONIMCONNECTORMESSAGEADD");
    assert_eq!(errors[0]["fields"]["member_id"], c.m.as_str());
    // Enough to tell the portal's operators which message was lost.
    assert_eq!(errors[0]["fields"]["line"], 107);
    assert_eq!(errors[0]["fields"]["connector"], "myconnector");
    assert_eq!(errors[0]["fields"]["item_ids"], "[2]");
    assert_eq!(errors[0]["fields"]["handler_id"], 555);

    // Storage back: the same event applies (the redrive would apply the parked copy).
    c.h.store.set_failure(None);
    c.h.parker.set_failing(false);
    assert_eq!(post(&messages, &body).await.0, 200);
    let parked_bodies: Vec<serde_json::Value> =
        c.h.parker
            .taken()
            .iter()
            .map(|p| serde_json::from_str(&p.to_body()).unwrap())
            .collect();
    assert_no_secrets(&c.logs, &c.h.metrics, &parked_bodies);
    c.assert_no_secrets();
}

/// A DynamoDB that hangs: the answer comes back within the storage budget, parked, instead of
/// waiting for the SDK's timeouts (Bitrix24 slows down a handler that answers slowly).
#[tokio::test]
async fn hanging_storage_is_parked_within_the_budget() {
    let c = case("hang", None).await;
    let messages = c.h.pipeline(Family::Messages);
    c.h.store
        .set_delay(Some(std::time::Duration::from_secs(30)));
    let started = std::time::Instant::now();
    let (status, answer) = post(&messages, &form(&message_add(&c.m, &app_token(1), 9))).await;
    let took = started.elapsed();
    assert_eq!((status, answer), (202, json!({"outcome": "parked"})));
    assert!(
        took < b24_pipeline::STORAGE_BUDGET + std::time::Duration::from_millis(500),
        "{took:?}"
    );
    assert!(c.h.parker.taken()[0].reason.contains("budget"));
    c.h.store.set_delay(None);
    c.assert_no_secrets();
}

#[tokio::test]
async fn without_a_verifier_token_changes_are_refused() {
    let c = case("noverifier", None).await;
    let app =
        c.h.pipeline_with(Family::App, b24_pipeline::RefuseTokenChanges);
    let change = install(
        &c.m,
        &app_token(2),
        &access_token(2),
        "https://some-domain.bitrix24.ru/rest/",
    );
    assert_eq!(post(&app, &form(&change)).await.0, 401);
    // The unchanged token still installs (an update with the same token needs no verification).
    let same = install(
        &c.m,
        &app_token(1),
        &access_token(2),
        "https://some-domain.bitrix24.ru/rest/",
    );
    assert_eq!(post(&app, &form(&same)).await.0, 200);
    c.assert_no_secrets();
}

#[tokio::test]
async fn largest_events_within_the_limits_are_stored_and_overlong_fields_are_400() {
    let c = case("large", None).await;
    let messages = c.h.pipeline(Family::Messages);

    // Every field at its limit: long ids, files and a long text. The state crate truncates
    // what does not fit an item; the answer is never a 5xx.
    let long = "x".repeat(b24_events::MAX_FIELD_BYTES);
    let mut event = message_add(&c.m, &app_token(1), 42);
    let msg = &mut event["data"]["MESSAGES"][0];
    msg["message"]["text"] = json!("Ж".repeat(120_000));
    msg["message"]["id"] = json!((0..150)
        .map(|i| format!("{i}{long}")[..long.len()].to_string())
        .collect::<Vec<_>>());
    msg["message"]["files"] = json!((0..120)
        .map(|_| json!({"name": long, "type": "file", "link": long, "size": "1"}))
        .collect::<Vec<_>>());
    msg["message"]["params"] = json!((0..64)
        .map(|i| (format!("P{i}"), json!("v".repeat(1000))))
        .collect::<serde_json::Map<_, _>>());
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
    let stored =
        c.h.records(&c.m)
            .await
            .into_iter()
            .find(|r| r["record_type"] == "message" && r["message_id"] == 42)
            .unwrap();
    assert_eq!(stored["params_truncated"], true);
    assert!(serde_json::to_string(&stored).unwrap().len() < 400 * 1024);

    // One byte over a field limit: a 400 naming the field, and nothing is stored.
    let mut event = message_add(&c.m, &app_token(1), 43);
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
    let records = c.h.records(&c.m).await;
    assert!(
        records.iter().all(|r| r["message_id"] != 43),
        "nothing stored for the refused event"
    );
    c.assert_no_secrets();
}

/// More items than one event may carry: 413 naming the list, nothing stored, quickly.
#[tokio::test]
async fn an_event_with_too_many_items_is_413() {
    let c = case("items", None).await;
    let messages = c.h.pipeline(Family::Messages);
    let items: Vec<_> = (0..4900)
        .map(|i| {
            let mut it = b24_fixtures::item(10_000 + i, None, &[]);
            it.message.user_id = None;
            it.chat.id = None;
            it
        })
        .collect();
    let body = b24_events::encode::php_form(&b24_events::encode::wire_json(
        &Fixture::new(EventKind::MessageAdd)
            .member(&c.m)
            .token(&app_token(1))
            .event_with_items(items),
    ));
    assert!(
        body.len() > 150_000 && body.len() < 1024 * 1024,
        "{}",
        body.len()
    );
    let started = std::time::Instant::now();
    let (status, answer) = post(&messages, &body).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (413, Some("payload_too_large"))
    );
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("data[MESSAGES]"),
        "{answer}"
    );
    eprintln!("4 900 messages refused in {:?}", started.elapsed());
    let fifty: Vec<_> = (0..50)
        .map(|i| b24_fixtures::item(20_000 + i, Some("x"), &[]))
        .collect();
    let body = b24_events::encode::php_form(&b24_events::encode::wire_json(
        &Fixture::new(EventKind::MessageAdd)
            .member(&c.m)
            .token(&app_token(1))
            .event_with_items(fifty),
    ));
    assert_eq!(post(&messages, &body).await.0, 200);
    let stored =
        c.h.records(&c.m)
            .await
            .into_iter()
            .filter(|r| r["record_type"] == "message")
            .count();
    assert_eq!(stored, 50);
    c.assert_no_secrets();
}

/// Installing a `member_id` that embeds another portal's key (`<victim>#MSG#3`) and
/// uninstalling it with CLEAN=1 used to purge the victim's partitions. Every alias is a 400
/// before any storage access, and the victim's records are unchanged.
#[tokio::test]
async fn member_ids_that_alias_another_portals_keys_are_refused() {
    let c = case("victim", None).await;
    let messages = c.h.pipeline(Family::Messages);
    for id in 1..=20 {
        let body = form(&message_add(&c.m, &app_token(1), id));
        assert_eq!(post(&messages, &body).await.0, 200);
    }
    let before = c.h.store.all_records();
    let app = c.h.pipeline(Family::App);
    let mut aliases: Vec<String> = (0..8).map(|s| format!("{}#MSG#{s}", c.m)).collect();
    aliases.extend((0..8).map(|s| format!("{}#EVENT#{s}", c.m)));
    aliases.extend([
        format!("{}#", c.m),
        format!("{}%23MSG%233", c.m),
        c.m.to_uppercase(),
        format!("{} ", c.m),
        format!("{}\u{0}", c.m),
        "x".repeat(65),
        "..".into(),
        "a/b".into(),
        "ｍember".into(),
    ]);
    for alias in &aliases {
        let (status, answer) = post(
            &app,
            &form(&install(
                alias,
                &app_token(9),
                &access_token(9),
                "https://x/rest/",
            )),
        )
        .await;
        assert_eq!(status, 400, "{alias:?}: {answer}");
        assert!(
            answer["reason"]
                .as_str()
                .unwrap()
                .contains("auth[member_id]"),
            "{answer}"
        );
        let (status, _) = post(
            &app,
            &form(&uninstall(alias, &app_token(9), 1_773_900_000, true)),
        )
        .await;
        assert_eq!(status, 400, "{alias:?}");
    }
    assert_eq!(c.h.store.all_records(), before, "nothing changed anywhere");
    // A dump of the victim holds only the victim's records.
    assert!(c
        .h
        .records(&c.m)
        .await
        .iter()
        .all(|r| r["member_id"] == c.m.as_str()));
    c.assert_no_secrets();
}

/// Real-shaped bodies with the schema v1.1 fields reach the records: message params, full
/// file objects (download link without its token), the connector as sent, the update's
/// previous version.
#[tokio::test]
async fn schema_v1_1_fields_from_real_shaped_bodies_are_stored() {
    let c = case("v11", None).await;
    let messages = c.h.pipeline(Family::Messages);
    let mut event = message_add(&c.m, &app_token(1), 77);
    event["data"]["CONNECTOR"] = json!("OL_0");
    let msg = &mut event["data"]["MESSAGES"][0]["message"];
    msg["user_id"] = json!("0");
    msg["text"] = json!("");
    msg["params"] = json!({"CLASS": "bx-messenger-content-item-ol-output", "IMOL_FORM": "like", "IMOL_VOTE": "3282", "IMOL_VOTE_TEXT": ""});
    msg["files"] = json!([{
        "name": "scan.png", "type": "image", "mime": "image/png", "link": "https://some-domain.bitrix24.ru/~AbCd",
        "width": "800", "height": "600", "size": "20580", "sizef": "20,1 КБ",
        "downloadLink": format!("/rest/download.json?auth={}&token=disk%7Cabc", access_token(7))
    }]);
    assert_eq!(post(&messages, &form(&event)).await.0, 200);
    let record =
        c.h.records(&c.m)
            .await
            .into_iter()
            .find(|r| r["record_type"] == "message" && r["message_id"] == 77)
            .unwrap();
    assert_eq!(record["connector"], "ol_0");
    assert_eq!(record["connector_as_sent"], "OL_0");
    assert_eq!(record["params"]["IMOL_FORM"], "like");
    assert_eq!(
        record["params"]["CLASS"],
        "bx-messenger-content-item-ol-output"
    );
    let file = &record["files"][0];
    assert_eq!(
        (
            file["mime"].as_str(),
            file["width"].as_i64(),
            file["height"].as_i64()
        ),
        (Some("image/png"), Some(800), Some(600))
    );
    assert_eq!(file["size_formatted"], "20,1 КБ");
    assert_eq!(
        file["download_link"],
        "/rest/download.json?token=disk%7Cabc"
    );

    let app = c.h.pipeline(Family::App);
    let update = Fixture::new(EventKind::AppUpdate)
        .member(&c.m)
        .token(&app_token(1))
        .version("2")
        .previous_version("1")
        .ts(1_773_800_000)
        .wire();
    assert_eq!(post(&app, &form(&update)).await.0, 200);
    let portal =
        c.h.records(&c.m)
            .await
            .into_iter()
            .find(|r| r["record_type"] == "portal")
            .unwrap();
    assert_eq!(
        (
            portal["version"].as_str(),
            portal["previous_version"].as_str()
        ),
        (Some("2"), Some("1"))
    );
    c.assert_no_secrets();
}

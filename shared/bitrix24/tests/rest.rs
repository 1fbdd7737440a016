//! Single REST calls against the fake Bitrix24, and against servers that misbehave.

mod common;

use std::time::{Duration, Instant};

use b24_fake_bitrix24::RateLimit;
use b24_rest::{RestError, Secret};
use common::*;
use serde_json::{json, Value};

fn token(t: &str) -> Secret {
    Secret::new(t)
}

#[tokio::test]
async fn a_call_returns_its_result() {
    bounded(async {
        let (fake, creds) = start().await;
        let info = rest()
            .call(&creds.client_endpoint, &token(&creds.access_token), "app.info", &Value::Null)
            .await
            .expect("app.info");
        assert_eq!(info["CODE"], CLIENT_ID);
        assert_eq!(info["INSTALLED"], true);
        let bound = rest()
            .call(
                &creds.client_endpoint,
                &token(&creds.access_token),
                "event.bind",
                &json!({"EVENT": "OnAppTest", "HANDLER": "http://127.0.0.1:9/h", "auth": "ignored"}),
            )
            .await
            .expect("event.bind");
        assert_eq!(bound, true);
        assert_eq!(fake.bindings(MEMBER).unwrap()[0].event, "ONAPPTEST");
        // The token went as `auth` in a JSON body (the fake logs the method, auth redacted).
        let last = fake.calls().into_iter().last().unwrap();
        assert_eq!((last.method.as_str(), last.outcome.as_str()), ("event.bind", "ok"));
        assert_eq!(last.params["auth"], b24_fake_bitrix24::REDACTED);
    })
    .await
}

#[tokio::test]
async fn an_expired_token_is_expired_token_and_a_refresh_fixes_it() {
    bounded(async {
        let (fake, creds) = start().await;
        fake.expire_access_tokens(MEMBER).unwrap();
        let e = rest()
            .call(
                &creds.client_endpoint,
                &token(&creds.access_token),
                "app.info",
                &Value::Null,
            )
            .await
            .unwrap_err();
        assert_eq!(e, RestError::ExpiredToken);
        assert!(!e.is_retryable());
        assert_clean(&e);
        // What the caller does: refresh, then retry once.
        let grant = oauth(&fake)
            .refresh(&app(), &token(&creds.refresh_token))
            .await
            .unwrap();
        assert!(rest()
            .call(
                &grant.client_endpoint,
                &grant.access_token,
                "app.info",
                &Value::Null
            )
            .await
            .is_ok());
        // Expiry by the clock, too.
        fake.advance_clock(Duration::from_secs(3601));
        assert_eq!(
            rest()
                .call(
                    &grant.client_endpoint,
                    &grant.access_token,
                    "app.info",
                    &Value::Null
                )
                .await,
            Err(RestError::ExpiredToken)
        );
    })
    .await
}

#[tokio::test]
async fn an_unknown_or_another_portals_token_is_invalid_token() {
    bounded(async {
        let (fake, creds) = start().await;
        let other = fake.initial_credentials()[1].clone();
        let rest = rest();
        for t in [
            format!("{MARK}-not-issued-0001"),
            other.access_token.clone(),
        ] {
            let e = rest
                .call(&creds.client_endpoint, &token(&t), "app.info", &Value::Null)
                .await
                .unwrap_err();
            assert_eq!(e, RestError::InvalidToken);
            assert_clean(&e);
        }
        // NO_AUTH_FOUND (no token at all) is the same for the caller.
        assert_eq!(
            rest.call(&creds.client_endpoint, &token(""), "app.info", &Value::Null)
                .await,
            Err(RestError::InvalidToken)
        );
    })
    .await
}

#[tokio::test]
async fn query_limit_exceeded_is_rate_limited() {
    bounded(async {
        let (fake, creds) = start().await;
        fake.set_rate_limit(
            MEMBER,
            Some(RateLimit {
                drain_per_second: 2.0,
                capacity: 3,
            }),
        )
        .unwrap();
        let (rest, t) = (rest(), token(&creds.access_token));
        for _ in 0..3 {
            rest.call(&creds.client_endpoint, &t, "app.info", &Value::Null)
                .await
                .unwrap();
        }
        let e = rest
            .call(&creds.client_endpoint, &t, "app.info", &Value::Null)
            .await
            .unwrap_err();
        assert_eq!(e, RestError::RateLimited);
        assert!(e.is_retryable());
        assert_clean(&e);
        // The (frozen) clock drains the bucket: half a second is one request.
        fake.advance_clock(Duration::from_millis(500));
        assert!(rest
            .call(&creds.client_endpoint, &t, "app.info", &Value::Null)
            .await
            .is_ok());
        assert_eq!(
            rest.call(&creds.client_endpoint, &t, "app.info", &Value::Null)
                .await,
            Err(RestError::RateLimited)
        );
    })
    .await
}

#[tokio::test]
async fn method_errors_keep_their_code_and_description() {
    bounded(async {
        let (_fake, creds) = start().await;
        let t = token(&creds.access_token);
        let e = rest()
            .call(&creds.client_endpoint, &t, "crm.deal.list", &Value::Null)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            RestError::Method {
                code: "ERROR_METHOD_NOT_FOUND".into(),
                description: "Method not found!".into()
            }
        );
        let e = rest()
            .call(
                &creds.client_endpoint,
                &t,
                "event.bind",
                &json!({"HANDLER": "http://127.0.0.1:9/h"}),
            )
            .await
            .unwrap_err();
        assert_eq!(e.method_error().unwrap().code, "ERROR_ARGUMENT");
        assert_clean(&e);
    })
    .await
}

#[tokio::test]
async fn a_plain_http_endpoint_is_refused_without_allow_insecure() {
    bounded(async {
        let (fake, creds) = start().await;
        let strict = b24_rest::RestClient::new(b24_rest::RestConfig::default()).unwrap();
        let e = strict
            .call(
                &creds.client_endpoint,
                &token(&creds.access_token),
                "app.info",
                &Value::Null,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&e, RestError::InvalidRequest(m) if m.contains("not https")),
            "{e:?}"
        );
        assert!(fake.calls().is_empty(), "nothing reached the fake");
    })
    .await
}

#[tokio::test]
async fn a_stalled_portal_is_unavailable_within_the_timeout() {
    bounded(async {
        let base = stalling_server().await;
        let started = Instant::now();
        let e = rest_with(quick())
            .call(
                &format!("{base}/rest/"),
                &token("LEAKMARK-access-0001"),
                "app.info",
                &Value::Null,
            )
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert_eq!(e, RestError::Unavailable("timeout".into()));
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert_clean(&e);
    })
    .await
}

#[tokio::test]
async fn a_huge_answer_is_malformed_not_buffered() {
    bounded(async {
        let endless = endless_body_server().await;
        let e = rest_with(quick_body_only())
            .call(&format!("{endless}/rest/"), &token("LEAKMARK-access-0001"), "app.info", &Value::Null)
            .await
            .unwrap_err();
        assert_eq!(e, RestError::Malformed("answer over 65536 bytes".into()));
        let declared = raw_server(|_| {
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 10000000000\r\n\r\n{".to_vec()
        })
        .await;
        let e = rest_with(quick())
            .call(&format!("{declared}/rest/"), &token("LEAKMARK-access-0001"), "app.info", &Value::Null)
            .await
            .unwrap_err();
        assert_eq!(e, RestError::Malformed("answer over 65536 bytes".into()));
    })
    .await
}

#[tokio::test]
async fn redirects_are_not_followed_and_5xx_pages_are_unavailable() {
    bounded(async {
        let (fake, creds) = start().await;
        let to_fake = format!("{}app.info", creds.client_endpoint);
        let redirect =
            raw_server(move |_| http_answer(307, &format!("location: {to_fake}\r\n"), "")).await;
        let e = rest()
            .call(
                &format!("{redirect}/rest/"),
                &token(&creds.access_token),
                "app.info",
                &Value::Null,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, RestError::Malformed(_)), "{e:?}");
        assert!(fake.calls().is_empty(), "the redirect was followed");
        let gateway = raw_server(|_| http_answer(502, "", "<html>Bad gateway</html>")).await;
        let e = rest()
            .call(
                &format!("{gateway}/rest/"),
                &token(&creds.access_token),
                "app.info",
                &Value::Null,
            )
            .await
            .unwrap_err();
        assert_eq!(e, RestError::Unavailable("HTTP 502".into()));
    })
    .await
}

#[tokio::test]
async fn a_token_echoed_by_the_server_stays_out_of_errors() {
    bounded(async {
        let echo = raw_server(|_| {
            http_answer(
                400,
                "",
                r#"{"error":"ERROR_X","error_description":"token LEAKMARK-access-0001 refused"}"#,
            )
        })
        .await;
        let e = rest()
            .call(
                &format!("{echo}/rest/"),
                &token("LEAKMARK-access-0001"),
                "app.info",
                &Value::Null,
            )
            .await
            .unwrap_err();
        assert_eq!(
            e,
            RestError::Method {
                code: "ERROR_X".into(),
                description: "token [redacted] refused".into()
            }
        );
        assert_clean(&e);
    })
    .await
}

//! No token and no client secret in any error's `Display`/`Debug`, nor in any log line this
//! crate writes, across every failure the fake Bitrix24 can produce. Every token the fake
//! issues starts with `LEAKMARK`, and so does the client secret.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use b24_fake_bitrix24::RateLimit;
use b24_rest::{event_bind_commands, ClientCredentials, Command, Secret, StaticSecret};
use common::*;
use serde_json::Value;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_error_or_log_line() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("the only subscriber of this test binary");

    bounded(async {
        let (fake, creds) = start().await;
        let (oauth, rest) = (oauth(&fake), rest());
        let mut errors: Vec<String> = Vec::new();
        let mut keep = |e: &dyn std::fmt::Debug, d: &dyn std::fmt::Display| {
            errors.push(format!("{d} / {e:?}"));
        };

        // OAuth: a good refresh, a spent token, a wrong secret, a revoked token.
        let grant = oauth
            .refresh(&app(), &Secret::new(creds.refresh_token.clone()))
            .await
            .unwrap();
        let spent = oauth
            .refresh(&app(), &Secret::new(creds.refresh_token.clone()))
            .await
            .unwrap_err();
        keep(&spent, &spent);
        let wrong = ClientCredentials::new(CLIENT_ID, StaticSecret::new("LEAKMARK-wrong-secret"));
        let e = oauth
            .refresh(&wrong, &grant.refresh_token)
            .await
            .unwrap_err();
        keep(&e, &e);
        fake.revoke_refresh_tokens(MEMBER).unwrap();
        let e = oauth
            .refresh(&app(), &grant.refresh_token)
            .await
            .unwrap_err();
        keep(&e, &e);

        // REST: ok, a method error, a batch with per-command errors, rate limited, invalid,
        // expired (single and batch).
        let t = &grant.access_token;
        let ep = &grant.client_endpoint;
        rest.call(ep, t, "app.info", &Value::Null).await.unwrap();
        let e = rest
            .call(ep, t, "no.such.method", &Value::Null)
            .await
            .unwrap_err();
        keep(&e, &e);
        let bind = event_bind_commands(&[
            ("OnAppTest", "http://127.0.0.1:9/h"),
            ("OnAppTest", "http://127.0.0.1:9/h"),
        ]);
        let answer = rest.batch(ep, t, &bind, false).await.unwrap();
        assert_eq!(answer.errors.len(), 1);
        keep(&answer, &format!("{:?}", answer.errors));
        fake.set_rate_limit(
            MEMBER,
            Some(RateLimit {
                drain_per_second: 0.0,
                capacity: 1,
            }),
        )
        .unwrap();
        rest.call(ep, t, "app.info", &Value::Null).await.unwrap();
        let e = rest
            .call(ep, t, "app.info", &Value::Null)
            .await
            .unwrap_err();
        keep(&e, &e);
        fake.set_rate_limit(MEMBER, None).unwrap();
        let other = fake.initial_credentials()[1].access_token.clone();
        let e = rest
            .call(ep, &Secret::new(other), "app.info", &Value::Null)
            .await
            .unwrap_err();
        keep(&e, &e);
        fake.expire_access_tokens(MEMBER).unwrap();
        let e = rest
            .call(ep, t, "app.info", &Value::Null)
            .await
            .unwrap_err();
        keep(&e, &e);
        let e = rest
            .batch(ep, t, &[Command::new("a", "app.info", Value::Null)], false)
            .await
            .unwrap_err();
        keep(&e, &e);

        // Transport: a portal and a token endpoint that never answer.
        let stall = stalling_server().await;
        let e = rest_with(quick())
            .call(&format!("{stall}/rest/"), t, "app.info", &Value::Null)
            .await
            .unwrap_err();
        keep(&e, &e);
        let e = oauth_at(&format!("{stall}/oauth/token/"), quick())
            .refresh(&app(), &grant.refresh_token)
            .await
            .unwrap_err();
        keep(&e, &e);

        // Values that hold tokens print none either.
        keep(&grant, &format!("{:?}", app()));
        assert_eq!(errors.len(), 12);
        for shown in &errors {
            assert!(
                !shown.contains(MARK),
                "a secret leaked into an error: {shown}"
            );
        }
        // Fake's own call log is redacted too (what the product sent is never stored whole).
        assert!(fake
            .calls()
            .iter()
            .all(|c| !c.params.to_string().contains(MARK)));
    })
    .await;

    tokio::time::sleep(Duration::from_millis(50)).await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("OAuth tokens refreshed"),
        "log lines were captured: {text}"
    );
    assert!(
        text.contains("Bitrix24 call failed"),
        "log lines were captured: {text}"
    );
    for line in text.lines() {
        assert!(
            !line.contains(MARK),
            "a secret leaked into a log line: {line}"
        );
    }
}

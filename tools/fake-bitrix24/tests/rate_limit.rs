//! The per-portal leaky bucket: burst, refusal, drain, run-time changes.

mod common;

use std::time::Duration;

use b24_fake_bitrix24::RateLimit;
use common::*;
use serde_json::Value;

#[tokio::test]
async fn burst_of_fifty_then_query_limit_exceeded_then_drains() {
    bounded(async {
        // A frozen clock (explicit here, though `start` freezes it too): the bucket drains
        // only through `advance_clock`, never while the 50 requests run, however slow the
        // machine is.
        let (fake, creds) = start_with(|c| c.freeze_clock = true).await;
        let (ep, t) = (&creds.client_endpoint, &creds.access_token);
        for i in 0..50 {
            let (status, a) = rest(ep, t, "app.info", Value::Null).await;
            assert_eq!(status, 200, "request {i}: {a}");
        }
        let (status, a) = rest(ep, t, "app.info", Value::Null).await;
        assert_eq!(
            (status, a["error"].as_str()),
            (503, Some("QUERY_LIMIT_EXCEEDED"))
        );
        assert_eq!(a["error_description"], "Too many requests");
        // Real time passing drains nothing (on wall time 0.6 s would drain one request).
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(rest(ep, t, "app.info", Value::Null).await.0, 503);
        // Another portal has its own bucket.
        let other = fake.initial_credentials()[1].clone();
        assert_eq!(
            rest(
                &other.client_endpoint,
                &other.access_token,
                "app.info",
                Value::Null
            )
            .await
            .0,
            200
        );
        // One second drains two requests.
        fake.advance_clock(Duration::from_secs(1));
        assert_eq!(rest(ep, t, "app.info", Value::Null).await.0, 200);
        assert_eq!(rest(ep, t, "app.info", Value::Null).await.0, 200);
        assert_eq!(rest(ep, t, "app.info", Value::Null).await.0, 503);
        // Refused requests do not count: 25 s later the whole burst is back.
        fake.advance_clock(Duration::from_secs(25));
        for _ in 0..50 {
            assert_eq!(rest(ep, t, "app.info", Value::Null).await.0, 200);
        }
        assert_eq!(rest(ep, t, "app.info", Value::Null).await.0, 503);
    })
    .await
}

#[tokio::test]
async fn rate_limit_changes_at_run_time_and_over_http() {
    bounded(async {
        let (fake, creds) = start().await;
        let (ep, t) = (&creds.client_endpoint, &creds.access_token);
        fake.set_rate_limit(
            MEMBER,
            Some(RateLimit {
                drain_per_second: 0.0,
                capacity: 1,
            }),
        )
        .unwrap();
        assert_eq!(rest(ep, t, "app.info", Value::Null).await.0, 200);
        assert_eq!(rest(ep, t, "app.info", Value::Null).await.0, 503);
        fake.set_rate_limit(MEMBER, None).unwrap();
        for _ in 0..100 {
            assert_eq!(rest(ep, t, "app.info", Value::Null).await.0, 200);
        }
        let url = format!("{}/_fake/portals/{MEMBER}/rate-limit", fake.base_url());
        let (status, _) = post_json(
            &url,
            &serde_json::json!({"drain_per_second": 0, "capacity": 1}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(rest(ep, t, "app.info", Value::Null).await.0, 200);
        assert_eq!(rest(ep, t, "app.info", Value::Null).await.0, 503);
        let url = format!("{}/_fake/rate-limit", fake.base_url());
        assert_eq!(post_json(&url, &Value::Null).await.0, 200);
        assert_eq!(rest(ep, t, "app.info", Value::Null).await.0, 200);
        assert!(fake.portals().iter().all(|p| p.rate_limit.is_none()));
        let (status, _) = post_json(
            &url,
            &serde_json::json!({"drain_per_second": -1, "capacity": 1}),
        )
        .await;
        assert_eq!(status, 400);
    })
    .await
}

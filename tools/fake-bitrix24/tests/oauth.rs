//! The OAuth token endpoint: rotation, races, expiry, client checks, answer shape.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn refresh_rotates_and_a_spent_token_is_invalid_grant() {
    bounded(async {
        let (fake, creds) = start().await;
        let (status, first) = refresh(&fake, CLIENT_ID, SECRET, &creds.refresh_token).await;
        assert_eq!(status, 200, "{first}");
        let new_refresh = first["refresh_token"].as_str().unwrap();
        assert_ne!(new_refresh, creds.refresh_token);
        assert_ne!(
            first["access_token"],
            Value::from(creds.access_token.clone())
        );

        let (status, again) = refresh(&fake, CLIENT_ID, SECRET, &creds.refresh_token).await;
        assert_eq!(
            (status, again["error"].as_str()),
            (400, Some("invalid_grant"))
        );

        let (status, next) = refresh(&fake, CLIENT_ID, SECRET, new_refresh).await;
        assert_eq!(status, 200, "{next}");
        // The new access token works on the portal's REST endpoint.
        let token = next["access_token"].as_str().unwrap();
        let (status, info) = rest(&creds.client_endpoint, token, "app.info", Value::Null).await;
        assert_eq!(status, 200, "{info}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_refreshes_with_one_token_give_exactly_one_success() {
    bounded(async {
        let (fake, creds) = start().await;
        let url = refresh_url(&fake, CLIENT_ID, SECRET, &creds.refresh_token);
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(20));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (url, start) = (url.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    get(&url).await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        let ok = answers.iter().filter(|(s, _)| *s == 200).count();
        let grant = answers
            .iter()
            .filter(|(s, v)| *s == 400 && v["error"] == "invalid_grant")
            .count();
        assert_eq!((ok, grant), (1, 19), "{answers:?}");
        let oauth_calls = fake
            .calls()
            .iter()
            .filter(|c| c.method == "oauth/token")
            .count();
        assert_eq!(oauth_calls, 20);
    })
    .await
}

#[tokio::test]
async fn answer_has_the_documented_fields_and_domain_is_the_oauth_host() {
    bounded(async {
        let (fake, creds) = start().await;
        let (status, a) = refresh(&fake, CLIENT_ID, SECRET, &creds.refresh_token).await;
        assert_eq!(status, 200);
        let keys: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "access_token",
                "client_endpoint",
                "domain",
                "expires",
                "expires_in",
                "member_id",
                "refresh_token",
                "scope",
                "server_endpoint",
                "status",
                "user_id"
            ]
        );
        let host = fake.base_url().trim_start_matches("http://").to_string();
        assert_eq!(a["domain"], Value::from(host));
        assert_ne!(a["domain"], Value::from(creds.domain.clone()));
        assert_eq!(
            a["client_endpoint"],
            Value::from(fake.client_endpoint(MEMBER))
        );
        assert_eq!(a["member_id"], MEMBER);
        assert_eq!(a["expires_in"], 3600);
        assert_eq!(a["scope"], "imconnector,imopenlines");
        assert_eq!(a["status"], "L");
        assert_eq!(a["user_id"], 1);
        let expires = a["expires"].as_i64().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((expires - now - 3600).abs() <= 5, "{expires} vs {now}");
        assert!(a["access_token"].as_str().unwrap().starts_with(PREFIX));
        assert!(a["refresh_token"].as_str().unwrap().starts_with(PREFIX));
    })
    .await
}

#[tokio::test]
async fn wrong_secret_or_unknown_client_is_invalid_client_and_spends_nothing() {
    bounded(async {
        let (fake, creds) = start().await;
        let (status, a) = refresh(&fake, CLIENT_ID, "wrong", &creds.refresh_token).await;
        assert_eq!((status, a["error"].as_str()), (401, Some("invalid_client")));
        let (status, a) = refresh(&fake, "local.other", SECRET, &creds.refresh_token).await;
        assert_eq!((status, a["error"].as_str()), (401, Some("invalid_client")));
        let (status, _) = refresh(&fake, CLIENT_ID, SECRET, &creds.refresh_token).await;
        assert_eq!(
            status, 200,
            "the token was not spent by the failed attempts"
        );
    })
    .await
}

#[tokio::test]
async fn expired_revoked_and_unknown_refresh_tokens_are_invalid_grant() {
    bounded(async {
        let (fake, creds) =
            start_with(|c| c.refresh_token_lifetime = Duration::from_secs(100)).await;
        fake.advance_clock(Duration::from_secs(101));
        let (status, a) = refresh(&fake, CLIENT_ID, SECRET, &creds.refresh_token).await;
        assert_eq!((status, a["error"].as_str()), (400, Some("invalid_grant")));

        let (fake, creds) = start().await;
        assert_eq!(fake.revoke_refresh_tokens(MEMBER).unwrap(), 1);
        let (status, a) = refresh(&fake, CLIENT_ID, SECRET, &creds.refresh_token).await;
        assert_eq!((status, a["error"].as_str()), (400, Some("invalid_grant")));
        let (status, a) = refresh(&fake, CLIENT_ID, SECRET, "FAKETOKnever-issued").await;
        assert_eq!((status, a["error"].as_str()), (400, Some("invalid_grant")));
    })
    .await
}

#[tokio::test]
async fn post_form_is_accepted_and_bad_requests_are_invalid_request() {
    bounded(async {
        let (fake, creds) = start().await;
        let form = serde_urlencoded::to_string([
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("refresh_token", creds.refresh_token.as_str()),
        ])
        .unwrap();
        let response = client()
            .post(fake.oauth_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);

        let (status, a) = get(&format!("{}?grant_type=refresh_token", fake.oauth_url())).await;
        assert_eq!(
            (status, a["error"].as_str()),
            (400, Some("invalid_request"))
        );
        let url = format!(
            "{}?grant_type=authorization_code&client_id={CLIENT_ID}&client_secret={SECRET}&code=x",
            fake.oauth_url()
        );
        let (status, a) = get(&url).await;
        assert_eq!(
            (status, a["error"].as_str()),
            (400, Some("invalid_request"))
        );
    })
    .await
}

//! The OAuth refresh against the fake Bitrix24's token endpoint, and against servers that
//! misbehave.

mod common;

use std::time::{Duration, Instant};

use b24_rest::{
    ClientCredentials, ClientSecretSource, ConfigError, OAuthClient, OAuthConfig, OAuthError,
    Secret, SecretError, StaticSecret, DEFAULT_TOKEN_URL,
};
use common::*;

#[tokio::test]
async fn refresh_rotates_the_pair_and_spends_the_old_refresh_token() {
    bounded(async {
        let (fake, creds) = start().await;
        let oauth = oauth(&fake);
        let old = Secret::new(creds.refresh_token.clone());
        let grant = oauth.refresh(&app(), &old).await.expect("refresh");
        assert_ne!(grant.refresh_token.expose(), creds.refresh_token);
        assert_ne!(grant.access_token.expose(), creds.access_token);
        assert!(grant.refresh_token.expose().starts_with(MARK));
        assert_eq!(grant.member_id, MEMBER);
        assert_eq!(grant.client_endpoint, fake.client_endpoint(MEMBER));
        assert_eq!(grant.scope.as_deref(), Some("imconnector,imopenlines"));
        assert_eq!(grant.status.as_deref(), Some("L"));
        assert_eq!(grant.user_id, Some(1));
        assert!(grant.server_endpoint.is_some());
        assert!(
            grant.expires_at >= creds.expires,
            "{} < {}",
            grant.expires_at,
            creds.expires
        );
        assert!(
            !format!("{grant:?}").contains(MARK),
            "Grant's Debug shows a token"
        );

        // The old refresh token is spent.
        let again = oauth.refresh(&app(), &old).await.unwrap_err();
        assert_eq!(again, OAuthError::InvalidGrant);
        assert_clean(&again);
        // The new pair works: its access token on REST, its refresh token for the next refresh.
        let info = rest()
            .call(
                &grant.client_endpoint,
                &grant.access_token,
                "app.info",
                &serde_json::Value::Null,
            )
            .await
            .expect("the new access token works");
        assert_eq!(info["CODE"], CLIENT_ID);
        let next = oauth
            .refresh(&app(), &grant.refresh_token)
            .await
            .expect("second refresh");
        assert_ne!(next.refresh_token, grant.refresh_token);
    })
    .await
}

#[tokio::test]
async fn a_wrong_secret_or_client_id_is_invalid_client_and_spends_nothing() {
    bounded(async {
        let (fake, creds) = start().await;
        let oauth = oauth(&fake);
        let token = Secret::new(creds.refresh_token.clone());
        let wrong_secret = ClientCredentials::new(CLIENT_ID, StaticSecret::new("LEAKMARK-wrong"));
        let e = oauth.refresh(&wrong_secret, &token).await.unwrap_err();
        assert_eq!(e, OAuthError::InvalidClient);
        assert!(!e.is_retryable());
        assert_clean(&e);
        let wrong_id = ClientCredentials::new("local.other.app", StaticSecret::new(SECRET));
        assert_eq!(
            oauth.refresh(&wrong_id, &token).await.unwrap_err(),
            OAuthError::InvalidClient
        );
        // invalid_client is checked first: the refresh token is still good.
        assert!(oauth.refresh(&app(), &token).await.is_ok());
    })
    .await
}

#[tokio::test]
async fn a_revoked_refresh_token_is_invalid_grant() {
    bounded(async {
        let (fake, creds) = start().await;
        assert_eq!(fake.revoke_refresh_tokens(MEMBER).unwrap(), 1);
        let e = oauth(&fake)
            .refresh(&app(), &Secret::new(creds.refresh_token.clone()))
            .await
            .unwrap_err();
        assert_eq!(e, OAuthError::InvalidGrant);
        assert!(!e.is_retryable());
        assert_clean(&e);
        // An empty token never leaves the process.
        let before = fake.calls().len();
        let e = oauth(&fake)
            .refresh(&app(), &Secret::new(""))
            .await
            .unwrap_err();
        assert_eq!(e, OAuthError::InvalidGrant);
        assert_eq!(fake.calls().len(), before);
    })
    .await
}

#[tokio::test]
async fn another_token_url_is_refused_without_allow_local() {
    bounded(async {
        let (fake, _) = start().await;
        let guarded = OAuthConfig {
            token_url: Some(fake.oauth_url()),
            allow_local: false,
            ..OAuthConfig::default()
        };
        assert!(matches!(
            OAuthClient::new(guarded),
            Err(ConfigError::TokenUrl(_))
        ));
        let https_elsewhere = OAuthConfig {
            token_url: Some("https://oauth.example.com/oauth/token/".into()),
            ..OAuthConfig::default()
        };
        assert!(matches!(
            OAuthClient::new(https_elsewhere),
            Err(ConfigError::TokenUrl(_))
        ));
        assert_eq!(
            OAuthClient::new(OAuthConfig::default())
                .unwrap()
                .token_url(),
            DEFAULT_TOKEN_URL
        );
        assert!(fake.calls().is_empty(), "nothing reached the fake");
        // With the explicit flag the fake is used.
        assert_eq!(oauth(&fake).token_url(), fake.oauth_url());
    })
    .await
}

#[tokio::test]
async fn a_stalled_token_endpoint_is_unavailable_within_the_timeout() {
    bounded(async {
        let base = stalling_server().await;
        let oauth = oauth_at(&format!("{base}/oauth/token/"), quick());
        let started = Instant::now();
        let e = oauth
            .refresh(&app(), &Secret::new("LEAKMARK-refresh-0001"))
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(matches!(e, OAuthError::Unavailable(_)), "{e:?}");
        assert!(e.is_retryable());
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert_clean(&e);
    })
    .await
}

#[tokio::test]
async fn a_huge_token_answer_is_malformed_not_buffered() {
    bounded(async {
        let endless = endless_body_server().await;
        let e = oauth_at(&format!("{endless}/oauth/token/"), common::quick_body_only())
            .refresh(&app(), &Secret::new("LEAKMARK-refresh-0001"))
            .await
            .unwrap_err();
        assert_eq!(e, OAuthError::Malformed("answer over 65536 bytes".into()));
        // A declared length over the bound is refused before reading.
        let declared = raw_server(|_| {
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 10000000000\r\n\r\n{".to_vec()
        })
        .await;
        let e = oauth_at(&format!("{declared}/oauth/token/"), quick())
            .refresh(&app(), &Secret::new("LEAKMARK-refresh-0001"))
            .await
            .unwrap_err();
        assert_eq!(e, OAuthError::Malformed("answer over 65536 bytes".into()));
    })
    .await
}

#[tokio::test]
async fn a_grant_with_an_unusable_client_endpoint_is_malformed() {
    bounded(async {
        let body = r#"{"access_token":"LEAKMARK-a","refresh_token":"LEAKMARK-r","expires":1780319382,
            "expires_in":3600,"member_id":"m1","client_endpoint":"https://x.bitrix24.eu/rest"}"#;
        let url = raw_server(move |_| http_answer(200, "", body)).await;
        let e = oauth_at(&format!("{url}/oauth/token/"), quick())
            .refresh(&app(), &Secret::new("LEAKMARK-refresh-0001"))
            .await
            .unwrap_err();
        assert!(matches!(&e, OAuthError::Malformed(m) if m.contains("client_endpoint")), "{e:?}");
        assert_clean(&e);
    })
    .await
}

#[tokio::test]
async fn the_request_is_the_documented_get_and_an_echoed_secret_stays_out_of_errors() {
    bounded(async {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let record = seen.clone();
        // A server that puts the refresh token it received into the error code.
        let url = raw_server(move |request| {
            *record.lock().unwrap() = request.to_string();
            http_answer(400, "", r#"{"error":"LEAKMARK-refresh-0001","error_description":"LEAKMARK-client-secret-0001"}"#)
        })
        .await;
        let e = oauth_at(&format!("{url}/oauth/token/"), quick())
            .refresh(&app(), &Secret::new("LEAKMARK-refresh-0001"))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            OAuthError::Rejected {
                status: 400,
                code: "unrecognised".into()
            }
        );
        assert_clean(&e);
        let request = seen.lock().unwrap().clone();
        let line = request.lines().next().unwrap();
        assert!(line.starts_with("GET /oauth/token/?grant_type=refresh_token&client_id=local.b24rest.test&client_secret=LEAKMARK-client-secret-0001&refresh_token=LEAKMARK-refresh-0001 "), "{line}");
    })
    .await
}

/// A source that always fails.
struct BrokenSecret;

impl ClientSecretSource for BrokenSecret {
    async fn client_secret(&self) -> Result<Secret, SecretError> {
        Err(SecretError::Unavailable("SSM timeout".into()))
    }
}

#[tokio::test]
async fn an_unreadable_client_secret_fails_before_any_request() {
    bounded(async {
        let (fake, creds) = start().await;
        let e = oauth(&fake)
            .refresh(
                &ClientCredentials::new(CLIENT_ID, BrokenSecret),
                &Secret::new(creds.refresh_token.clone()),
            )
            .await
            .unwrap_err();
        assert_eq!(
            e,
            OAuthError::ClientSecret(SecretError::Unavailable("SSM timeout".into()))
        );
        assert!(e.is_retryable());
        assert!(fake.calls().is_empty());
    })
    .await
}

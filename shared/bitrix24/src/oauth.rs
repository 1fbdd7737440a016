//! The OAuth refresh (`settings/oauth/auto-renewal.md`): `GET
//! https://oauth.bitrix.info/oauth/token/?grant_type=refresh_token&client_id=…&client_secret=…&refresh_token=…`
//! answers a new access token **and a new refresh token**; the presented refresh token is
//! spent.

use std::time::{SystemTime, UNIX_EPOCH};

use b24_events::Secret;
use serde_json::Value;

use crate::answer::{clean, error_of};
use crate::config::{ConfigError, HttpLimits};
use crate::endpoint;
use crate::http::{self, ReadError};
use crate::secret::{ClientCredentials, ClientSecretSource, SecretError};

/// Bitrix24's OAuth token endpoint, the only one used unless [`OAuthConfig::allow_local`].
pub const DEFAULT_TOKEN_URL: &str = "https://oauth.bitrix.info/oauth/token/";

/// Settings of an [`OAuthClient`]. `OAuthConfig::default()` is production: Bitrix24's token
/// endpoint, connect 3 s, whole request 10 s, answers up to 64 KiB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthConfig {
    /// Another token endpoint (the fake Bitrix24's `{base}/oauth/token/`). Refused unless
    /// `allow_local`, except [`DEFAULT_TOKEN_URL`] itself.
    pub token_url: Option<String>,
    /// Local tests and the dev stack only: allows `token_url`, plain `http` there, and `http`
    /// `client_endpoint`s in the answers.
    pub allow_local: bool,
    /// Timeouts and the answer bound.
    pub limits: HttpLimits,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            token_url: None,
            allow_local: false,
            limits: HttpLimits {
                connect_timeout: std::time::Duration::from_secs(3),
                timeout: std::time::Duration::from_secs(10),
                max_body_bytes: 64 * 1024,
            },
        }
    }
}

impl OAuthConfig {
    /// For local tests: `token_url` with `allow_local`, default limits.
    pub fn local(token_url: impl Into<String>) -> Self {
        OAuthConfig {
            token_url: Some(token_url.into()),
            allow_local: true,
            ..OAuthConfig::default()
        }
    }
}

/// What a successful refresh hands back. `Debug` shows no token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The new access token (1 hour).
    pub access_token: Secret,
    /// The new refresh token (180 days). Store it at once: the one presented is spent.
    pub refresh_token: Secret,
    /// Unix time the access token expires at (`expires`, else now + `expires_in`).
    pub expires_at: i64,
    /// The portal's `member_id`.
    pub member_id: String,
    /// The portal's REST base, e.g. `https://x.bitrix24.eu/rest/` (checked: http(s), ends in
    /// `/`, https unless `allow_local`).
    pub client_endpoint: String,
    /// The OAuth server's REST base, as answered.
    pub server_endpoint: Option<String>,
    /// Granted scopes, comma-separated, as answered.
    pub scope: Option<String>,
    /// The app's status (`L`, `F`, `P`, …).
    pub status: Option<String>,
    /// The user the tokens belong to.
    pub user_id: Option<i64>,
}

/// Why a refresh failed. Never contains a token or the client secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// `invalid_grant`: the refresh token is spent, revoked or expired. If another process may
    /// have refreshed with the same token, re-read the stored pair; otherwise the portal must
    /// reinstall the application.
    #[error("invalid_grant: the refresh token is spent, revoked or expired")]
    InvalidGrant,
    /// `invalid_client`: the `client_id` or `client_secret` is wrong (configuration).
    #[error("invalid_client: client_id or client_secret refused")]
    InvalidClient,
    /// Another OAuth error (`invalid_request`, `invalid_scope`, …).
    #[error("OAuth server refused the refresh: {code} (HTTP {status})")]
    Rejected {
        /// HTTP status of the answer.
        status: u16,
        /// The `error` code.
        code: String,
    },
    /// The client secret could not be read.
    #[error("client secret unavailable: {0}")]
    ClientSecret(#[from] SecretError),
    /// Connection, timeout, 5xx: retryable.
    #[error("OAuth server unavailable: {0}")]
    Unavailable(String),
    /// The answer is not a usable grant (not JSON, fields missing, a bad `client_endpoint`,
    /// too large, …).
    #[error("OAuth answer malformed: {0}")]
    Malformed(String),
}

impl OAuthError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            OAuthError::Unavailable(_) => true,
            OAuthError::ClientSecret(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// Refreshes OAuth tokens at Bitrix24's token endpoint. Cheap to clone; build one per process.
#[derive(Clone, Debug)]
pub struct OAuthClient {
    http: reqwest::Client,
    token_url: reqwest::Url,
    allow_local: bool,
    max_body_bytes: usize,
}

impl OAuthClient {
    /// A client for `config`. Refuses a `token_url` other than [`DEFAULT_TOKEN_URL`] unless
    /// `allow_local`, and any token URL that is not `https` (`http` too with `allow_local`)
    /// or has credentials, a query or a fragment.
    pub fn new(config: OAuthConfig) -> Result<OAuthClient, ConfigError> {
        let text = config.token_url.as_deref().unwrap_or(DEFAULT_TOKEN_URL);
        if text != DEFAULT_TOKEN_URL && !config.allow_local {
            return Err(ConfigError::TokenUrl(
                "only https://oauth.bitrix.info/oauth/token/ unless allow_local",
            ));
        }
        let url = reqwest::Url::parse(text).map_err(|_| ConfigError::TokenUrl("not a URL"))?;
        match url.scheme() {
            "https" => {}
            "http" if config.allow_local => {}
            _ => return Err(ConfigError::TokenUrl("not https")),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError::TokenUrl("no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ConfigError::TokenUrl("credentials in the URL"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ConfigError::TokenUrl("query or fragment in the URL"));
        }
        let http = http::client(&config.limits, !config.allow_local)?;
        Ok(OAuthClient {
            http,
            token_url: url,
            allow_local: config.allow_local,
            max_body_bytes: config.limits.max_body_bytes,
        })
    }

    /// The token endpoint in use.
    pub fn token_url(&self) -> &str {
        self.token_url.as_str()
    }

    /// Trades `refresh_token` for a new pair. The presented token is spent once the server has
    /// answered, whatever happens to the answer afterwards: store [`Grant::refresh_token`]
    /// before anything else. An empty `refresh_token` is [`OAuthError::InvalidGrant`] without
    /// a request.
    pub async fn refresh<S: ClientSecretSource>(
        &self,
        client: &ClientCredentials<S>,
        refresh_token: &Secret,
    ) -> Result<Grant, OAuthError> {
        if refresh_token.is_empty() {
            return Err(OAuthError::InvalidGrant);
        }
        let client_secret = client.secret.client_secret().await?;
        let secrets = [client_secret.expose(), refresh_token.expose()];
        let query = serde_urlencoded::to_string([
            ("grant_type", "refresh_token"),
            ("client_id", client.client_id.as_str()),
            ("client_secret", client_secret.expose()),
            ("refresh_token", refresh_token.expose()),
        ])
        .map_err(|_| OAuthError::Malformed("request not encodable".into()))?;
        let mut url = self.token_url.clone();
        url.set_query(Some(&query));
        let answer = http::send(self.http.get(url), self.max_body_bytes)
            .await
            .map_err(|e| match e {
                ReadError::Transport(kind) => OAuthError::Unavailable(kind.into()),
                ReadError::TooLarge(max) => {
                    OAuthError::Malformed(format!("answer over {max} bytes"))
                }
            })?;
        let outcome = self.interpret(answer.status, &answer.body, &secrets);
        match &outcome {
            Ok(grant) => tracing::debug!(member_id = %grant.member_id, "OAuth tokens refreshed"),
            Err(e) => tracing::debug!(error = %e, "OAuth refresh failed"),
        }
        outcome
    }

    fn interpret(&self, status: u16, body: &[u8], secrets: &[&str]) -> Result<Grant, OAuthError> {
        let value: Option<Value> = serde_json::from_slice(body).ok();
        if let Some(e) = value.as_ref().and_then(|v| error_of(v, secrets)) {
            return Err(match e.code.as_str() {
                "invalid_grant" => OAuthError::InvalidGrant,
                "invalid_client" => OAuthError::InvalidClient,
                _ if status >= 500 => OAuthError::Unavailable(format!("HTTP {status} {}", e.code)),
                _ => OAuthError::Rejected {
                    status,
                    code: e.code,
                },
            });
        }
        if status >= 500 || status == 429 {
            return Err(OAuthError::Unavailable(format!("HTTP {status}")));
        }
        if status != 200 {
            return Err(OAuthError::Malformed(format!(
                "HTTP {status} without an error"
            )));
        }
        let value = value.ok_or_else(|| OAuthError::Malformed("not JSON".into()))?;
        grant(&value, self.allow_local, secrets)
    }
}

/// The grant in a 200 answer.
fn grant(value: &Value, allow_http: bool, secrets: &[&str]) -> Result<Grant, OAuthError> {
    let malformed = |what: &str| OAuthError::Malformed(what.to_string());
    if !value.is_object() {
        return Err(malformed("not a JSON object"));
    }
    let text = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let access_token = text("access_token").ok_or_else(|| malformed("no access_token"))?;
    let refresh_token = text("refresh_token").ok_or_else(|| malformed("no refresh_token"))?;
    let member_id = text("member_id")
        .filter(|m| {
            m.len() <= 128
                && m.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
        .ok_or_else(|| malformed("no usable member_id"))?;
    let client_endpoint = text("client_endpoint").ok_or_else(|| malformed("no client_endpoint"))?;
    endpoint::client_endpoint(client_endpoint, allow_http)
        .map_err(|why| OAuthError::Malformed(format!("client_endpoint: {why}")))?;
    let expires_at = match (
        integer(value.get("expires")),
        integer(value.get("expires_in")),
    ) {
        (Some(at), _) if at > 0 => at,
        (_, Some(lifetime)) if lifetime > 0 => now().saturating_add(lifetime),
        _ => return Err(malformed("no expires or expires_in")),
    };
    let optional = |key: &str| text(key).map(|s| clean(s, secrets, 2048));
    Ok(Grant {
        access_token: Secret::new(access_token),
        refresh_token: Secret::new(refresh_token),
        expires_at,
        member_id: member_id.to_string(),
        client_endpoint: client_endpoint.to_string(),
        server_endpoint: optional("server_endpoint"),
        scope: optional("scope"),
        status: optional("status"),
        user_id: integer(value.get("user_id")),
    })
}

/// A JSON integer or a decimal string (PHP answers either).
fn integer(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer() -> Value {
        json!({"access_token":"a-tok","client_endpoint":"https://x.bitrix24.eu/rest/",
            "domain":"oauth.bitrix.info","expires":1780319382,"expires_in":3600,"member_id":"m1",
            "refresh_token":"r-tok","scope":"imconnector,imopenlines",
            "server_endpoint":"https://oauth.bitrix.info/rest/","status":"L","user_id":"7"})
    }

    #[test]
    fn the_token_url_is_fixed_unless_allow_local() {
        assert_eq!(
            OAuthClient::new(OAuthConfig::default())
                .unwrap()
                .token_url(),
            DEFAULT_TOKEN_URL
        );
        let explicit_default = OAuthConfig {
            token_url: Some(DEFAULT_TOKEN_URL.into()),
            ..OAuthConfig::default()
        };
        assert!(OAuthClient::new(explicit_default).is_ok());
        for url in [
            "https://evil.example/oauth/token/",
            "http://oauth.bitrix.info/oauth/token/",
            "http://127.0.0.1:1/oauth/token/",
        ] {
            let config = OAuthConfig {
                token_url: Some(url.into()),
                allow_local: false,
                ..OAuthConfig::default()
            };
            assert!(
                matches!(OAuthClient::new(config), Err(ConfigError::TokenUrl(_))),
                "{url}"
            );
        }
        assert!(OAuthClient::new(OAuthConfig::local("http://127.0.0.1:1/oauth/token/")).is_ok());
        for bad in [
            "ftp://127.0.0.1/oauth/token/",
            "http://u:p@127.0.0.1/oauth/token/",
            "http://127.0.0.1/oauth/token/?x=1",
            "not a url",
        ] {
            assert!(
                matches!(
                    OAuthClient::new(OAuthConfig::local(bad)),
                    Err(ConfigError::TokenUrl(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn grants_are_read_and_checked() {
        let g = grant(&answer(), false, &[]).unwrap();
        assert_eq!(g.access_token.expose(), "a-tok");
        assert_eq!(g.refresh_token.expose(), "r-tok");
        assert_eq!((g.expires_at, g.user_id), (1780319382, Some(7)));
        assert_eq!(g.member_id, "m1");
        assert_eq!(g.status.as_deref(), Some("L"));
        assert!(!format!("{g:?}").contains("-tok"));

        let mut only_lifetime = answer();
        only_lifetime.as_object_mut().unwrap().remove("expires");
        let g = grant(&only_lifetime, false, &[]).unwrap();
        assert!((g.expires_at - now() - 3600).abs() <= 60);

        for (key, bad) in [
            ("client_endpoint", json!("http://x.bitrix24.eu/rest/")),
            ("client_endpoint", json!("https://x.bitrix24.eu/rest")),
            ("client_endpoint", json!("javascript:alert(1)")),
            ("access_token", json!("")),
            ("refresh_token", json!(null)),
            ("member_id", json!(5)),
            ("member_id", json!("m1\nforged log line")),
        ] {
            let mut v = answer();
            v[key] = bad.clone();
            assert!(
                matches!(grant(&v, false, &[]), Err(OAuthError::Malformed(_))),
                "{key} = {bad}"
            );
        }
        let mut local = answer();
        local["client_endpoint"] = json!("http://127.0.0.1:9/portal/m1/rest/");
        assert!(grant(&local, true, &[]).is_ok());
    }

    #[test]
    fn error_answers_are_classified() {
        let c = OAuthClient::new(OAuthConfig::default()).unwrap();
        let body = |code: &str| format!(r#"{{"error":"{code}","error_description":"x"}}"#);
        assert_eq!(
            c.interpret(400, body("invalid_grant").as_bytes(), &[]),
            Err(OAuthError::InvalidGrant)
        );
        assert_eq!(
            c.interpret(401, body("invalid_client").as_bytes(), &[]),
            Err(OAuthError::InvalidClient)
        );
        assert_eq!(
            c.interpret(400, body("invalid_request").as_bytes(), &[]),
            Err(OAuthError::Rejected {
                status: 400,
                code: "invalid_request".into()
            })
        );
        assert!(c.interpret(502, b"<html>", &[]).unwrap_err().is_retryable());
        assert!(c
            .interpret(503, body("temporarily_unavailable").as_bytes(), &[])
            .unwrap_err()
            .is_retryable());
        assert!(matches!(
            c.interpret(200, b"<html>", &[]),
            Err(OAuthError::Malformed(_))
        ));
        assert!(matches!(
            c.interpret(302, b"", &[]),
            Err(OAuthError::Malformed(_))
        ));
    }
}

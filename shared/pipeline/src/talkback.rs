//! Talking back to Bitrix24 on a portal's behalf: the app's OAuth credentials (client id, the
//! client secret from SSM read on first use), the token vault (KMS-sealed, one refresh per
//! portal at a time) and the REST client, put together as [`Bitrix24`]; and [`OAuthVerifier`],
//! which verifies every ONAPPINSTALL/ONAPPUPDATE by refreshing its `refresh_token` with the
//! OAuth server and keeps the new pair.
//!
//! Configured by `BITRIX24_CLIENT_ID` + `BITRIX24_CLIENT_SECRET_PARAMETER` (+ `TOKENS_KMS_KEY_ID`);
//! without them nothing here runs and installs follow the `app.info` rules
//! ([`crate::AppInfoVerifier`]).

use crate::config::ConfigError;
use crate::verifier::{InstallVerifier, Verified, VerifyError};
use b24_events::{Event, Secret};
use b24_rest::{
    BatchAnswer, ClientCredentials, ClientSecretSource, Command, OAuthClient, OAuthConfig,
    OAuthError, RestClient, RestConfig, RestError, SsmParameter,
};
use b24_state::vault::{
    AccessToken, Cipher, KmsCipher, RefreshError, Refresher, Tokens, Vault, VaultError,
};
use b24_state::{MemberId, Portal};

/// What talking back needs from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TalkbackConfig {
    /// `BITRIX24_CLIENT_ID`.
    pub client_id: String,
    /// `BITRIX24_CLIENT_SECRET_PARAMETER`: the SSM SecureString holding the client secret.
    pub secret_parameter: String,
    /// `TOKENS_KMS_KEY_ID`: the key that seals the vault.
    pub kms_key_id: String,
    /// `BITRIX24_OAUTH_URL`: another OAuth token endpoint, honoured only with
    /// `VERIFIER_ALLOW_INSECURE=true` (local tests: the fake Bitrix24).
    pub oauth_url: Option<String>,
    /// `VERIFIER_ALLOW_INSECURE`: plain-HTTP endpoints and a local OAuth URL (never in AWS).
    pub allow_local: bool,
}

impl TalkbackConfig {
    /// `None` when the client id or the secret parameter is not set (talking back is off).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let (Some(client_id), Some(secret_parameter)) = (
            get("BITRIX24_CLIENT_ID"),
            get("BITRIX24_CLIENT_SECRET_PARAMETER"),
        ) else {
            return Ok(None);
        };
        let kms_key_id = get("TOKENS_KMS_KEY_ID").ok_or_else(|| ConfigError {
            variable: "TOKENS_KMS_KEY_ID",
            reason: "is required with BITRIX24_CLIENT_SECRET_PARAMETER (the vault's key)".into(),
        })?;
        let allow_local = match get("VERIFIER_ALLOW_INSECURE").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(ConfigError {
                    variable: "VERIFIER_ALLOW_INSECURE",
                    reason: "must be true or false".into(),
                })
            }
        };
        let oauth_url = get("BITRIX24_OAUTH_URL");
        if oauth_url.is_some() && !allow_local {
            return Err(ConfigError {
                variable: "BITRIX24_OAUTH_URL",
                reason: "only for local tests (with VERIFIER_ALLOW_INSECURE=true); the OAuth host is fixed"
                    .into(),
            });
        }
        Ok(Some(TalkbackConfig {
            client_id,
            secret_parameter,
            kms_key_id,
            oauth_url,
            allow_local,
        }))
    }

    /// From the process environment.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }
}

/// Why talking to a portal failed. Never contains a token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TalkError {
    /// The vault could not hand out a token (none stored, needs a reinstall, unavailable).
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The REST call failed.
    #[error(transparent)]
    Rest(#[from] RestError),
}

impl TalkError {
    /// Whether a later attempt may succeed (unavailable, rate limited, a refresh in progress).
    pub fn is_retryable(&self) -> bool {
        match self {
            TalkError::Vault(VaultError::Unavailable(_) | VaultError::Busy) => true,
            TalkError::Vault(
                VaultError::NotFound | VaultError::NeedsReinstall | VaultError::Corrupt,
            ) => false,
            TalkError::Rest(e) => e.is_retryable(),
        }
    }
}

/// The OAuth server as the vault's [`Refresher`]: the answer must name the portal asked for.
pub struct OAuthRefresher<'a, S> {
    oauth: &'a OAuthClient,
    app: &'a ClientCredentials<S>,
}

impl<S: ClientSecretSource> Refresher for OAuthRefresher<'_, S> {
    async fn refresh(
        &self,
        member: &MemberId,
        refresh_token: &Secret,
    ) -> Result<Tokens, RefreshError> {
        match self.oauth.refresh(self.app, refresh_token).await {
            Ok(grant) if grant.member_id == member.as_str() => Ok(Tokens {
                access_token: grant.access_token,
                refresh_token: grant.refresh_token,
                access_expires_at: grant.expires_at,
                client_endpoint: grant.client_endpoint,
            }),
            Ok(_) => Err(RefreshError::Unavailable(
                "the OAuth answer names another portal".into(),
            )),
            Err(OAuthError::InvalidGrant) => Err(RefreshError::InvalidGrant),
            Err(e) => Err(RefreshError::Unavailable(e.to_string())),
        }
    }
}

/// Everything needed to call a portal as the installed app.
pub struct Bitrix24<S = SsmParameter, C = KmsCipher> {
    /// The token vault.
    pub vault: Vault<C>,
    oauth: OAuthClient,
    rest: RestClient,
    app: ClientCredentials<S>,
}

impl Bitrix24 {
    /// From the configuration and the AWS environment (DynamoDB, KMS and SSM clients are built
    /// here, without a network call; the secret is read on first use).
    pub fn from_config(
        config: &TalkbackConfig,
        env: &b24_state::AwsEnv,
        table: &str,
    ) -> Result<Self, crate::InitError> {
        let timeouts = b24_state::Timeouts::BACKGROUND;
        let ddb = b24_state::dynamodb_client(env, timeouts);
        let kms = b24_state::vault::kms_client(env, timeouts);
        let ssm = ssm_client(env, timeouts);
        let oauth_config = match &config.oauth_url {
            Some(url) => OAuthConfig::local(url.clone()),
            None => OAuthConfig::default(),
        };
        let rest_config = if config.allow_local {
            RestConfig::local()
        } else {
            RestConfig::default()
        };
        let config_error = |e: b24_rest::ConfigError| ConfigError {
            variable: "BITRIX24_OAUTH_URL",
            reason: e.to_string(),
        };
        Ok(Bitrix24::new(
            Vault::new(ddb, table, KmsCipher::new(kms, config.kms_key_id.clone())),
            OAuthClient::new(oauth_config).map_err(config_error)?,
            RestClient::new(rest_config).map_err(config_error)?,
            ClientCredentials::new(
                config.client_id.clone(),
                SsmParameter::new(ssm, config.secret_parameter.clone()),
            ),
        ))
    }
}

impl<S: ClientSecretSource, C: Cipher> Bitrix24<S, C> {
    /// From its parts (tests pass a static secret or another cipher).
    pub fn new(
        vault: Vault<C>,
        oauth: OAuthClient,
        rest: RestClient,
        app: ClientCredentials<S>,
    ) -> Self {
        Bitrix24 {
            vault,
            oauth,
            rest,
            app,
        }
    }

    fn refresher(&self) -> OAuthRefresher<'_, S> {
        OAuthRefresher {
            oauth: &self.oauth,
            app: &self.app,
        }
    }

    /// Runs `commands` in one `batch` on `member`'s portal with the vault's token; an
    /// `expired_token` (or `invalid_token`) answer refreshes once and retries.
    pub async fn batch(
        &self,
        member: &MemberId,
        commands: &[Command],
    ) -> Result<BatchAnswer, TalkError> {
        let refresher = self.refresher();
        let token = self.vault.access_token(member, &refresher, now()).await?;
        match self
            .rest
            .batch(&token.client_endpoint, &token.token, commands, false)
            .await
        {
            Err(RestError::ExpiredToken | RestError::InvalidToken) => {
                let fresh = self.retry_token(member, &token).await?;
                Ok(self
                    .rest
                    .batch(&fresh.client_endpoint, &fresh.token, commands, false)
                    .await?)
            }
            other => Ok(other?),
        }
    }

    /// Calls `method` alone (not in a `batch`) on `member`'s portal with the vault's token; an
    /// `expired_token` (or `invalid_token`) answer refreshes once and retries. For parameters a
    /// `batch` would alter: Bitrix24 replaces `$result[...]` in batch commands.
    pub async fn call(
        &self,
        member: &MemberId,
        method: &str,
        params: &serde_json::Value,
    ) -> Result<serde_json::Value, TalkError> {
        let refresher = self.refresher();
        let token = self.vault.access_token(member, &refresher, now()).await?;
        match self
            .rest
            .call(&token.client_endpoint, &token.token, method, params)
            .await
        {
            Err(RestError::ExpiredToken | RestError::InvalidToken) => {
                let fresh = self.retry_token(member, &token).await?;
                Ok(self
                    .rest
                    .call(&fresh.client_endpoint, &fresh.token, method, params)
                    .await?)
            }
            other => Ok(other?),
        }
    }

    async fn retry_token(
        &self,
        member: &MemberId,
        seen: &AccessToken,
    ) -> Result<AccessToken, TalkError> {
        Ok(self
            .vault
            .refresh_after_expired(member, &self.refresher(), seen, now())
            .await?)
    }

    /// Verifies an install: refreshes its `refresh_token` (spending it), checks that the
    /// answer names `member`, and stores the new pair in the vault before anything uses it.
    pub async fn verify_install(
        &self,
        member: &MemberId,
        refresh_token: &Secret,
    ) -> Result<String, VerifyError> {
        let grant = self
            .oauth
            .refresh(&self.app, refresh_token)
            .await
            .map_err(|e| match e {
                OAuthError::InvalidGrant => {
                    VerifyError::BadAnswer("refresh_token refused (invalid_grant)")
                }
                OAuthError::InvalidClient => {
                    VerifyError::NotConfigured("the OAuth server refused our client_id/secret")
                }
                other => VerifyError::Unreachable(other.to_string()),
            })?;
        if grant.member_id != member.as_str() {
            return Err(VerifyError::OtherPortal);
        }
        let endpoint = grant.client_endpoint.clone();
        let tokens = Tokens {
            access_token: grant.access_token,
            refresh_token: grant.refresh_token,
            access_expires_at: grant.expires_at,
            client_endpoint: grant.client_endpoint,
        };
        // The install is genuine (the OAuth server vouched for it), so it is applied (or
        // parked) even when the vault cannot take the pair right now; only talking back to
        // this portal then waits for its next install or update (the refresh token is spent).
        if let Err(e) = self.vault.store(member, &tokens, now()).await {
            tracing::error!(
                member_id = %member,
                error = %e,
                "verified install: its tokens could not be stored; talking back to this portal needs its next install or update"
            );
        }
        Ok(endpoint)
    }
}

/// An SSM client from `env` (endpoint `AWS_ENDPOINT_URL_SSM`, else `AWS_ENDPOINT_URL`).
pub fn ssm_client(env: &b24_state::AwsEnv, timeouts: b24_state::Timeouts) -> aws_sdk_ssm::Client {
    b24_state::aws_client!(aws_sdk_ssm, "SSM", env, timeouts)
}

/// Verifies every ONAPPINSTALL/ONAPPUPDATE — first installs, same-token updates and token
/// changes alike — through the OAuth server ([`Bitrix24::verify_install`]). The portal's
/// stored endpoint becomes the one the OAuth server named, never the event's. A replayed
/// install is refused: its refresh token was spent by the first delivery.
pub struct OAuthVerifier<S = SsmParameter, C = KmsCipher> {
    b24: std::sync::Arc<Bitrix24<S, C>>,
    /// The last few verifications, by a hash of (member, application token, refresh token):
    /// the pipeline re-authenticates an event once when the portal changed under it, and the
    /// event's refresh token is spent by then. Hand-rolled: a handful of entries, no eviction
    /// policy worth a crate.
    recent: std::sync::Mutex<std::collections::VecDeque<(String, Verified)>>,
}

/// Verifications remembered for the re-authentication of the same event.
const RECENT_VERIFICATIONS: usize = 8;

impl<S, C> OAuthVerifier<S, C> {
    /// Verifies with `b24`.
    pub fn new(b24: std::sync::Arc<Bitrix24<S, C>>) -> Self {
        OAuthVerifier {
            b24,
            recent: Default::default(),
        }
    }
}

impl<S: ClientSecretSource + 'static, C: Cipher + 'static> InstallVerifier for OAuthVerifier<S, C> {
    async fn verify(
        &self,
        event: &Event,
        _portal: Option<&Portal>,
    ) -> Result<Verified, VerifyError> {
        let refresh_token = event
            .auth
            .refresh_token
            .as_ref()
            .filter(|t| !t.is_empty())
            .ok_or(VerifyError::BadAnswer("the event carries no refresh_token"))?;
        let member = MemberId::new(&event.auth.member_id).map_err(|_| VerifyError::OtherPortal)?;
        let key = b24_state::hash_token(&Secret::new(format!(
            "{member}\n{}\n{}",
            event
                .auth
                .application_token
                .as_ref()
                .map(|t| t.expose())
                .unwrap_or(""),
            refresh_token.expose()
        )));
        let remembered = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone());
        if let Some(v) = remembered {
            return Ok(v);
        }
        let endpoint = self.b24.verify_install(&member, refresh_token).await?;
        let verified = Verified {
            client_endpoint: Some(endpoint),
        };
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT_VERIFICATIONS {
            recent.pop_front();
        }
        recent.push_back((key, verified.clone()));
        Ok(verified)
    }

    fn verifies_first_installs(&self) -> bool {
        true
    }

    fn verifies_every_install(&self) -> bool {
        true
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Option<TalkbackConfig>, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TalkbackConfig::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn talking_back_needs_both_the_client_id_and_the_secret_and_the_oauth_host_is_fixed() {
        assert_eq!(config(&[]).unwrap(), None);
        assert_eq!(config(&[("BITRIX24_CLIENT_ID", "app.1")]).unwrap(), None);
        assert_eq!(
            config(&[("BITRIX24_CLIENT_SECRET_PARAMETER", "/s")]).unwrap(),
            None
        );
        let base = [
            ("BITRIX24_CLIENT_ID", "app.1"),
            ("BITRIX24_CLIENT_SECRET_PARAMETER", "/s"),
        ];
        assert_eq!(
            config(&base).unwrap_err().variable,
            "TOKENS_KMS_KEY_ID",
            "the vault's key is required"
        );
        let with_key = [base[0], base[1], ("TOKENS_KMS_KEY_ID", "arn:key")];
        let c = config(&with_key).unwrap().unwrap();
        assert_eq!((c.oauth_url, c.allow_local), (None, false));
        // Another OAuth host only with the explicit local-test switch.
        let redirected = [
            with_key[0],
            with_key[1],
            with_key[2],
            ("BITRIX24_OAUTH_URL", "https://evil.example/oauth/token/"),
        ];
        assert_eq!(
            config(&redirected).unwrap_err().variable,
            "BITRIX24_OAUTH_URL"
        );
        let local = [
            redirected[0],
            redirected[1],
            redirected[2],
            ("BITRIX24_OAUTH_URL", "http://127.0.0.1:5100/oauth/token/"),
            ("VERIFIER_ALLOW_INSECURE", "true"),
        ];
        let c = config(&local).unwrap().unwrap();
        assert_eq!(
            c.oauth_url.as_deref(),
            Some("http://127.0.0.1:5100/oauth/token/")
        );
        let bad = [
            with_key[0],
            with_key[1],
            with_key[2],
            ("VERIFIER_ALLOW_INSECURE", "yes"),
        ];
        assert_eq!(
            config(&bad).unwrap_err().variable,
            "VERIFIER_ALLOW_INSECURE"
        );
    }
}

//! The token vault: per portal, the app's OAuth refresh token and its latest access token,
//! sealed with KMS, in the portal's partition (`PORTAL#{member_id}` / `TOKENS`).
//!
//! - **Sealed.** The tokens are one KMS `Encrypt` of a small JSON document, with the
//!   encryption context `{"member_id": …}`: a sealed blob copied onto another portal's record
//!   does not open. The record holds no token in clear, and a dump shows the blob as `null`.
//! - **One refresh per portal at a time.** A refresh token is single use (Bitrix24 hands out a
//!   new one with every refresh), so two concurrent refreshes would spend it twice and the
//!   second would read `invalid_grant`. A refresher first claims a short lease on the record's
//!   `version` (a conditional write); the others wait for the version to move and use the new
//!   pair. The new pair is stored (conditional on the version it was refreshed from) before
//!   anybody uses it.
//! - **`invalid_grant` marks the portal `needs_reinstall`**: nothing can talk to it any more
//!   until the app is installed again (a new install stores a new pair).

use crate::error::StoreError;
use crate::schema::{self, record_type, MemberId};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use aws_sdk_kms::error::ProvideErrorMetadata as _;
use b24_events::Secret;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// Sort key of the vault record in the portal's partition.
pub const TOKENS_SK: &str = "TOKENS";

/// Refresh an access token this long before it expires (Bitrix24's live 3600 s).
pub const REFRESH_MARGIN_SECONDS: i64 = 300;

/// How long a refresher holds the lease (the OAuth call is bounded well below it).
pub const LEASE_SECONDS: i64 = 20;

/// A portal's tokens, in clear (only in memory, only as [`Secret`]s).
#[derive(Clone, Debug)]
pub struct Tokens {
    /// The latest access token.
    pub access_token: Secret,
    /// The refresh token that has not been spent yet.
    pub refresh_token: Secret,
    /// When the access token expires (Unix seconds).
    pub access_expires_at: i64,
    /// The portal's REST endpoint, as the OAuth server named it.
    pub client_endpoint: String,
}

/// An access token to call a portal with.
#[derive(Clone, Debug)]
pub struct AccessToken {
    /// The token.
    pub token: Secret,
    /// The portal's REST endpoint.
    pub client_endpoint: String,
    /// The vault record's version it came from (pass it to [`Vault::refresh_after_expired`]).
    pub version: i64,
    /// When it expires (Unix seconds).
    pub expires_at: i64,
}

/// Whether the vault can still talk to the portal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaultStatus {
    /// Tokens present.
    Ok,
    /// The refresh token was refused (`invalid_grant`): the app must be installed again.
    NeedsReinstall,
}

impl VaultStatus {
    /// `ok` or `needs_reinstall` (as stored).
    pub fn as_str(self) -> &'static str {
        match self {
            VaultStatus::Ok => "ok",
            VaultStatus::NeedsReinstall => "needs_reinstall",
        }
    }
}

/// Why the vault could not hand out a token. Never contains a token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// No tokens for this portal (not installed with a verified install, or uninstalled).
    #[error("no tokens stored for this portal")]
    NotFound,
    /// The refresh token was refused: the app must be reinstalled on the portal.
    #[error("the portal's refresh token was refused (invalid_grant): it needs a reinstall")]
    NeedsReinstall,
    /// DynamoDB or KMS failed, or the OAuth server was unreachable; retry later.
    #[error("token vault unavailable: {0}")]
    Unavailable(String),
    /// Another refresh of this portal did not finish within the lease.
    #[error("another refresh of this portal is still running")]
    Busy,
    /// The sealed tokens do not open (a record copied from another portal, a wrong key).
    #[error("the stored tokens do not decrypt for this portal")]
    Corrupt,
}

impl From<StoreError> for VaultError {
    fn from(e: StoreError) -> Self {
        VaultError::Unavailable(e.to_string())
    }
}

/// Seals and opens the tokens of one portal.
pub trait Cipher: Send + Sync {
    /// Encrypts `plaintext` bound to `member`.
    fn seal(
        &self,
        member: &MemberId,
        plaintext: &[u8],
    ) -> impl Future<Output = Result<Vec<u8>, VaultError>> + Send;
    /// Decrypts what [`Cipher::seal`] produced for the same `member`.
    fn open(
        &self,
        member: &MemberId,
        sealed: &[u8],
    ) -> impl Future<Output = Result<Vec<u8>, VaultError>> + Send;
}

/// KMS `Encrypt`/`Decrypt` with the encryption context `{"member_id": member}`.
pub struct KmsCipher {
    client: aws_sdk_kms::Client,
    key_id: String,
}

/// The encryption context key.
pub const CONTEXT_KEY: &str = "member_id";

impl KmsCipher {
    /// Seals with `key_id` (an id, ARN or alias).
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        KmsCipher {
            client,
            key_id: key_id.into(),
        }
    }
}

fn kms_reason<E>(e: &aws_sdk_kms::error::SdkError<E>) -> String
where
    E: aws_sdk_kms::error::ProvideErrorMetadata,
{
    match e {
        aws_sdk_kms::error::SdkError::ServiceError(s) => {
            s.err().code().unwrap_or("KMS error").to_string()
        }
        aws_sdk_kms::error::SdkError::TimeoutError(_) => "KMS timeout".into(),
        aws_sdk_kms::error::SdkError::DispatchFailure(_) => "KMS unreachable".into(),
        _ => "KMS error".into(),
    }
}

impl Cipher for KmsCipher {
    async fn seal(&self, member: &MemberId, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(aws_sdk_kms::primitives::Blob::new(plaintext))
            .encryption_context(CONTEXT_KEY, member.as_str())
            .send()
            .await
            .map_err(|e| VaultError::Unavailable(kms_reason(&e)))?;
        out.ciphertext_blob
            .map(|b| b.into_inner())
            .ok_or_else(|| VaultError::Unavailable("KMS returned no ciphertext".into()))
    }

    async fn open(&self, member: &MemberId, sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(sealed))
            .encryption_context(CONTEXT_KEY, member.as_str())
            .send()
            .await
            .map_err(|e| match &e {
                aws_sdk_kms::error::SdkError::ServiceError(s)
                    if matches!(
                        s.err().code(),
                        Some("InvalidCiphertextException" | "IncorrectKeyException")
                    ) =>
                {
                    VaultError::Corrupt
                }
                _ => VaultError::Unavailable(kms_reason(&e)),
            })?;
        out.plaintext
            .map(|b| b.into_inner())
            .ok_or_else(|| VaultError::Unavailable("KMS returned no plaintext".into()))
    }
}

/// A KMS client from `env` with `timeouts` (endpoint `AWS_ENDPOINT_URL_KMS`, else
/// `AWS_ENDPOINT_URL`), on the shared HTTPS client.
pub fn kms_client(env: &crate::AwsEnv, timeouts: crate::Timeouts) -> aws_sdk_kms::Client {
    crate::aws_client!(aws_sdk_kms, "KMS", env, timeouts)
}

/// Why a refresh failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// The refresh token is spent, revoked or expired: the portal needs a reinstall.
    #[error("invalid_grant")]
    InvalidGrant,
    /// The OAuth server could not be asked (or refused our client credentials); retry later.
    #[error("refresh failed: {0}")]
    Unavailable(String),
}

/// Exchanges a refresh token for a new pair (the OAuth server; a fake in tests).
pub trait Refresher: Send + Sync {
    /// Refreshes `refresh_token` of `member`. The answer must name `member` (the implementation
    /// checks it).
    fn refresh(
        &self,
        member: &MemberId,
        refresh_token: &Secret,
    ) -> impl Future<Output = Result<Tokens, RefreshError>> + Send;
}

/// What the vault record says without opening it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultEntry {
    /// Bumped by every stored pair.
    pub version: i64,
    /// Whether the tokens still work.
    pub status: VaultStatus,
    /// When the stored access token expires.
    pub access_expires_at: i64,
    /// The portal's REST endpoint.
    pub client_endpoint: String,
    sealed: Vec<u8>,
    lease_until: Option<i64>,
}

/// The plaintext that is sealed (short keys: it is only ever read by this module).
#[derive(serde::Serialize, serde::Deserialize)]
struct Plain {
    a: String,
    r: String,
}

/// The vault on the receiver's table.
pub struct Vault<C> {
    client: Client,
    table: String,
    cipher: C,
    owner: String,
}

impl<C: Cipher> Vault<C> {
    /// The vault on `table`, sealing with `cipher`.
    pub fn new(client: Client, table: impl Into<String>, cipher: C) -> Self {
        Vault {
            client,
            table: table.into(),
            cipher,
            owner: format!("{:016x}", fastrand::u64(..)),
        }
    }

    fn key(member: &MemberId) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                "pk".to_string(),
                AttributeValue::S(schema::portal_pk(member)),
            ),
            ("sk".to_string(), AttributeValue::S(TOKENS_SK.to_string())),
        ])
    }

    /// The record's state, without opening the tokens.
    pub async fn entry(&self, member: &MemberId) -> Result<Option<VaultEntry>, VaultError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(member)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("GetItem", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let n = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
        };
        let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        Ok(Some(VaultEntry {
            version: n("version").unwrap_or(0),
            status: match s("status").as_deref() {
                Some("needs_reinstall") => VaultStatus::NeedsReinstall,
                _ => VaultStatus::Ok,
            },
            access_expires_at: n("access_expires_at").unwrap_or(0),
            client_endpoint: s("client_endpoint").unwrap_or_default(),
            sealed: item
                .get("sealed")
                .and_then(|v| v.as_b().ok())
                .map(|b| b.as_ref().to_vec())
                .unwrap_or_default(),
            lease_until: n("lease_until"),
        }))
    }

    async fn seal(&self, member: &MemberId, tokens: &Tokens) -> Result<Vec<u8>, VaultError> {
        let plain = serde_json::to_vec(&Plain {
            a: tokens.access_token.expose().to_string(),
            r: tokens.refresh_token.expose().to_string(),
        })
        .map_err(|_| VaultError::Corrupt)?;
        self.cipher.seal(member, &plain).await
    }

    async fn open(&self, member: &MemberId, entry: &VaultEntry) -> Result<Tokens, VaultError> {
        let plain = self.cipher.open(member, &entry.sealed).await?;
        let p: Plain = serde_json::from_slice(&plain).map_err(|_| VaultError::Corrupt)?;
        Ok(Tokens {
            access_token: Secret::new(p.a),
            refresh_token: Secret::new(p.r),
            access_expires_at: entry.access_expires_at,
            client_endpoint: entry.client_endpoint.clone(),
        })
    }

    /// Stores a new pair (a verified install or update): replaces whatever was there, clears
    /// `needs_reinstall` and any lease. Returns the new version.
    pub async fn store(
        &self,
        member: &MemberId,
        tokens: &Tokens,
        now: i64,
    ) -> Result<i64, VaultError> {
        let sealed = self.seal(member, tokens).await?;
        self.write(member, tokens, sealed, now, None).await
    }

    /// Writes a sealed pair; `from_version`: only if the record is still at that version.
    async fn write(
        &self,
        member: &MemberId,
        tokens: &Tokens,
        sealed: Vec<u8>,
        now: i64,
        from_version: Option<i64>,
    ) -> Result<i64, VaultError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(member)))
            .update_expression(
                "SET record_type = :rt, member_id = :m, sealed = :s, access_expires_at = :x, \
                 client_endpoint = :e, #st = :ok, updated_at = :now \
                 ADD version :one REMOVE lease_until, lease_owner",
            )
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":rt", AttributeValue::S(record_type::TOKENS.into()))
            .expression_attribute_values(":m", AttributeValue::S(member.as_str().into()))
            .expression_attribute_values(
                ":s",
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(sealed)),
            )
            .expression_attribute_values(
                ":x",
                AttributeValue::N(tokens.access_expires_at.to_string()),
            )
            .expression_attribute_values(":e", AttributeValue::S(tokens.client_endpoint.clone()))
            .expression_attribute_values(":ok", AttributeValue::S(VaultStatus::Ok.as_str().into()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew);
        if let Some(v) = from_version {
            req = req
                .condition_expression("version = :v")
                .expression_attribute_values(":v", AttributeValue::N(v.to_string()));
        }
        match req.send().await {
            Ok(out) => Ok(out
                .attributes
                .and_then(|a| a.get("version").and_then(|v| v.as_n().ok()).cloned())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)),
            Err(e) if conditional_failed(&e) => Err(VaultError::Busy),
            Err(e) => Err(StoreError::from_sdk("UpdateItem", e).into()),
        }
    }

    /// Removes the portal's tokens (after an uninstall: Bitrix24 revoked them anyway).
    pub async fn delete(&self, member: &MemberId) -> Result<(), VaultError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(member)))
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("DeleteItem", e))?;
        Ok(())
    }

    /// An access token valid for at least [`REFRESH_MARGIN_SECONDS`], refreshing when needed.
    pub async fn access_token<R: Refresher>(
        &self,
        member: &MemberId,
        refresher: &R,
        now: i64,
    ) -> Result<AccessToken, VaultError> {
        self.token(member, refresher, now, None).await
    }

    /// After the portal answered `expired_token` to `seen`: a newer token if another caller
    /// stored one meanwhile, else a refresh.
    pub async fn refresh_after_expired<R: Refresher>(
        &self,
        member: &MemberId,
        refresher: &R,
        seen: &AccessToken,
        now: i64,
    ) -> Result<AccessToken, VaultError> {
        self.token(member, refresher, now, Some(seen.version)).await
    }

    async fn token<R: Refresher>(
        &self,
        member: &MemberId,
        refresher: &R,
        now: i64,
        expired_version: Option<i64>,
    ) -> Result<AccessToken, VaultError> {
        // Waiting for another refresher: up to its lease and a little more.
        let give_up = std::time::Instant::now() + Duration::from_secs(LEASE_SECONDS as u64 + 5);
        let mut pause = Duration::from_millis(50);
        loop {
            let entry = self.entry(member).await?.ok_or(VaultError::NotFound)?;
            if entry.status == VaultStatus::NeedsReinstall {
                return Err(VaultError::NeedsReinstall);
            }
            let usable = entry.access_expires_at > now + REFRESH_MARGIN_SECONDS
                && expired_version.is_none_or(|v| entry.version > v);
            if usable {
                let tokens = self.open(member, &entry).await?;
                return Ok(AccessToken {
                    token: tokens.access_token,
                    client_endpoint: tokens.client_endpoint,
                    version: entry.version,
                    expires_at: entry.access_expires_at,
                });
            }
            let leased = entry
                .lease_until
                .is_some_and(|until| until >= now_seconds());
            if !leased && self.claim(member, entry.version).await? {
                return self.refresh_claimed(member, refresher, &entry, now).await;
            }
            if std::time::Instant::now() > give_up {
                return Err(VaultError::Busy);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Claims the lease on `version`; `false` when somebody else holds it or the version moved.
    async fn claim(&self, member: &MemberId, version: i64) -> Result<bool, VaultError> {
        let now = now_seconds();
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(member)))
            .update_expression("SET lease_until = :until, lease_owner = :me")
            .condition_expression(
                "version = :v AND (attribute_not_exists(lease_until) OR lease_until < :now)",
            )
            .expression_attribute_values(
                ":until",
                AttributeValue::N((now + LEASE_SECONDS).to_string()),
            )
            .expression_attribute_values(":me", AttributeValue::S(self.owner.clone()))
            .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if conditional_failed(&e) => Ok(false),
            Err(e) => Err(StoreError::from_sdk("UpdateItem", e).into()),
        }
    }

    async fn refresh_claimed<R: Refresher>(
        &self,
        member: &MemberId,
        refresher: &R,
        entry: &VaultEntry,
        now: i64,
    ) -> Result<AccessToken, VaultError> {
        let current = match self.open(member, entry).await {
            Ok(t) => t,
            Err(e) => {
                self.release(member).await;
                return Err(e);
            }
        };
        match refresher.refresh(member, &current.refresh_token).await {
            Ok(new) => {
                let sealed = self.seal(member, &new).await?;
                // Conditional on the version refreshed from (not on the lease: whoever else
                // touched the record since could not have used the spent refresh token).
                let version = self
                    .write(member, &new, sealed, now, Some(entry.version))
                    .await?;
                Ok(AccessToken {
                    token: new.access_token,
                    client_endpoint: new.client_endpoint,
                    version,
                    expires_at: new.access_expires_at,
                })
            }
            Err(RefreshError::InvalidGrant) => {
                self.mark_needs_reinstall(member, entry.version).await?;
                Err(VaultError::NeedsReinstall)
            }
            Err(RefreshError::Unavailable(reason)) => {
                self.release(member).await;
                // The stored token may still be valid for a while: better than nothing.
                if entry.access_expires_at > now + 30 && entry.version > 0 {
                    return Ok(AccessToken {
                        token: current.access_token,
                        client_endpoint: current.client_endpoint,
                        version: entry.version,
                        expires_at: entry.access_expires_at,
                    });
                }
                Err(VaultError::Unavailable(reason))
            }
        }
    }

    async fn mark_needs_reinstall(
        &self,
        member: &MemberId,
        version: i64,
    ) -> Result<(), VaultError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(member)))
            .update_expression("SET #st = :nr REMOVE lease_until, lease_owner")
            .condition_expression("version = :v AND lease_owner = :me")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(
                ":nr",
                AttributeValue::S(VaultStatus::NeedsReinstall.as_str().into()),
            )
            .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
            .expression_attribute_values(":me", AttributeValue::S(self.owner.clone()))
            .send()
            .await;
        match res {
            Ok(_) => {
                tracing::warn!(member_id = %member, "refresh token refused (invalid_grant): the portal needs a reinstall");
                Ok(())
            }
            // A newer pair was stored meanwhile: that one wins.
            Err(e) if conditional_failed(&e) => Ok(()),
            Err(e) => Err(StoreError::from_sdk("UpdateItem", e).into()),
        }
    }

    /// Gives the lease back (best effort: it expires anyway).
    async fn release(&self, member: &MemberId) {
        let _ = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(member)))
            .update_expression("REMOVE lease_until, lease_owner")
            .condition_expression("lease_owner = :me")
            .expression_attribute_values(":me", AttributeValue::S(self.owner.clone()))
            .send()
            .await;
    }
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn conditional_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(
    e: &aws_sdk_dynamodb::error::SdkError<E>,
) -> bool {
    matches!(e, aws_sdk_dynamodb::error::SdkError::ServiceError(s)
        if s.err().code() == Some("ConditionalCheckFailedException"))
}

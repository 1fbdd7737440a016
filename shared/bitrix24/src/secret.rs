//! The application's client secret: where it comes from ([`ClientSecretSource`]), read from
//! SSM Parameter Store on first use and kept in memory ([`SsmParameter`]), or given directly
//! ([`StaticSecret`], tests).

use std::future::Future;
use std::sync::Arc;

use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::operation::get_parameter::GetParameterError;
use b24_events::Secret;
use tokio::sync::OnceCell;

/// Why the client secret could not be had. Never contains the secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The parameter does not exist (configuration error: not retryable).
    #[error("SSM parameter {name} not found")]
    NotFound {
        /// The parameter's name.
        name: String,
    },
    /// SSM refused the read (access denied, KMS key unusable, …: not retryable).
    #[error("SSM refused reading parameter {name}: {code}")]
    Refused {
        /// The parameter's name.
        name: String,
        /// The service's error code, e.g. `AccessDeniedException`, `InvalidKeyId`.
        code: String,
    },
    /// The parameter exists but has no value.
    #[error("SSM parameter {name} is empty")]
    Empty {
        /// The parameter's name.
        name: String,
    },
    /// SSM could not be reached or failed (timeout, throttling, internal error): retryable.
    #[error("SSM unavailable: {0}")]
    Unavailable(String),
}

impl SecretError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SecretError::Unavailable(_))
    }
}

/// Where the application's `client_secret` comes from.
///
/// Implementors may write `async fn client_secret(&self) -> Result<Secret, SecretError>`; the
/// returned future must be `Send` (Lambda handlers run on a multi-threaded runtime).
pub trait ClientSecretSource: Send + Sync {
    /// The client secret.
    fn client_secret(&self) -> impl Future<Output = Result<Secret, SecretError>> + Send;
}

impl<S: ClientSecretSource> ClientSecretSource for Arc<S> {
    fn client_secret(&self) -> impl Future<Output = Result<Secret, SecretError>> + Send {
        (**self).client_secret()
    }
}

/// A secret given directly (tests, local runs).
#[derive(Clone, Debug)]
pub struct StaticSecret(Secret);

impl StaticSecret {
    /// This secret.
    pub fn new(secret: impl Into<String>) -> Self {
        StaticSecret(Secret::new(secret))
    }
}

impl ClientSecretSource for StaticSecret {
    async fn client_secret(&self) -> Result<Secret, SecretError> {
        Ok(self.0.clone())
    }
}

/// A `SecureString` parameter of SSM Parameter Store, read (`GetParameter`,
/// `WithDecryption=true`) on first use — not at construction, so a cold start that needs no
/// refresh never calls SSM — and then kept in memory for the life of the process. Concurrent
/// first callers share one read; a failed read is not kept, the next call tries again.
///
/// A rotated secret is picked up by new processes (Lambda recycles them); share one
/// `SsmParameter` (e.g. in an `Arc`) for the whole process.
pub struct SsmParameter {
    client: aws_sdk_ssm::Client,
    name: String,
    cached: OnceCell<Secret>,
}

impl SsmParameter {
    /// The parameter `name` (a name or an ARN), read through `client` when first needed.
    pub fn new(client: aws_sdk_ssm::Client, name: impl Into<String>) -> Self {
        SsmParameter {
            client,
            name: name.into(),
            cached: OnceCell::new(),
        }
    }

    /// The parameter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the value has been read already.
    pub fn is_cached(&self) -> bool {
        self.cached.initialized()
    }

    async fn read(&self) -> Result<Secret, SecretError> {
        let answer = self
            .client
            .get_parameter()
            .name(&self.name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        let value = answer
            .parameter()
            .and_then(|p| p.value())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| SecretError::Empty {
                name: self.name.clone(),
            })?;
        tracing::debug!(parameter = %self.name, "client secret read from SSM");
        Ok(Secret::new(value))
    }

    fn error<R>(&self, e: SdkError<GetParameterError, R>) -> SecretError {
        let name = self.name.clone();
        match e {
            SdkError::ServiceError(service) => match service.into_err() {
                GetParameterError::ParameterNotFound(_)
                | GetParameterError::ParameterVersionNotFound(_) => SecretError::NotFound { name },
                GetParameterError::InternalServerError(_) => {
                    SecretError::Unavailable("SSM internal error".into())
                }
                other => {
                    let code = other.code().unwrap_or("unknown error");
                    if code.contains("Throttl") || code == "RequestLimitExceeded" {
                        SecretError::Unavailable(format!("SSM {code}"))
                    } else {
                        SecretError::Refused {
                            name,
                            code: code.to_string(),
                        }
                    }
                }
            },
            SdkError::TimeoutError(_) => SecretError::Unavailable("SSM timeout".into()),
            SdkError::DispatchFailure(_) => SecretError::Unavailable("SSM unreachable".into()),
            SdkError::ResponseError(_) => SecretError::Unavailable("SSM answer unreadable".into()),
            _ => SecretError::Unavailable("SSM request failed".into()),
        }
    }
}

impl ClientSecretSource for SsmParameter {
    async fn client_secret(&self) -> Result<Secret, SecretError> {
        self.cached.get_or_try_init(|| self.read()).await.cloned()
    }
}

impl std::fmt::Debug for SsmParameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsmParameter")
            .field("name", &self.name)
            .field("cached", &self.is_cached())
            .finish()
    }
}

/// The application's OAuth credentials: its `client_id` and where its `client_secret` comes
/// from (by default an [`SsmParameter`]).
#[derive(Clone, Debug)]
pub struct ClientCredentials<S = SsmParameter> {
    /// `client_id` (the application code, e.g. `local.6650c4b3e6d1a2.12345678`).
    pub client_id: String,
    /// The `client_secret`'s source.
    pub secret: S,
}

impl<S: ClientSecretSource> ClientCredentials<S> {
    /// Credentials of application `client_id` with its secret from `secret`.
    pub fn new(client_id: impl Into<String>, secret: S) -> Self {
        ClientCredentials {
            client_id: client_id.into(),
            secret,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_secrets_answer_and_never_print() {
        let creds = ClientCredentials::new("app.1", Arc::new(StaticSecret::new("s3cr3t-value")));
        assert_eq!(
            creds.secret.client_secret().await.unwrap().expose(),
            "s3cr3t-value"
        );
        assert!(!format!("{creds:?}").contains("s3cr3t"));
    }
}

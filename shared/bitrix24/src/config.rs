//! What both HTTP clients are configured with, and the configuration errors.

use std::time::Duration;

/// Timeouts and the answer bound of one HTTP client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Bound on establishing the connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Bound on the whole request: connect, send, and read the entire answer.
    pub timeout: Duration,
    /// Largest answer body read; a longer one is refused without being buffered whole.
    pub max_body_bytes: usize,
}

/// Why a client could not be built. Never contains a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The OAuth token URL is not allowed (another URL than the default without
    /// `allow_local`, not http(s), credentials or a query in it, …).
    #[error("OAuth token URL refused: {0}")]
    TokenUrl(&'static str),
    /// A limit makes no sense (zero timeout or body bound).
    #[error("invalid limit: {0}")]
    Limits(&'static str),
    /// The HTTP client could not be built (TLS backend).
    #[error("HTTP client: {0}")]
    Client(String),
}

impl HttpLimits {
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.connect_timeout.is_zero() || self.timeout.is_zero() {
            return Err(ConfigError::Limits("timeouts must be positive"));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::Limits("max_body_bytes must be positive"));
        }
        Ok(())
    }
}

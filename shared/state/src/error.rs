//! [`StoreError`]: why a state operation failed. Messages name the cause and never carry secrets
//! (the store never sends or receives a token; only its SHA-256 hash).

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// Why a state operation failed. Each variant is one way to react: the webhook path answers
/// [`StoreError::Invalid`] with 4xx (the input's fault) and keeps every other kind for a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The input cannot be stored: DynamoDB refused the request as invalid (ValidationException,
    /// an item over 400 KB...) or an identifier is not allowed in a key. Retrying never helps.
    #[error("invalid input for {operation}: {cause}")]
    Invalid {
        /// The operation (`TransactWriteItems`, `keys`, ...).
        operation: &'static str,
        /// The cause, e.g. `ValidationException: Item size has exceeded the maximum allowed size`.
        cause: String,
    },
    /// DynamoDB could not be reached or did not answer in time, throttled the request, or
    /// answered with a 5xx. Retrying later may succeed. A timeout may have committed.
    #[error("DynamoDB unavailable during {operation}: {cause}")]
    Unavailable {
        /// The DynamoDB operation.
        operation: &'static str,
        /// The cause, e.g. `ThrottlingException: ...` or `timeout`.
        cause: String,
    },
    /// DynamoDB refused the request for a reason of the deployment, not of the input
    /// (permissions, a missing table, bad credentials). Retrying after the fix succeeds.
    #[error("DynamoDB refused {operation}: {cause}")]
    Misconfigured {
        /// The DynamoDB operation.
        operation: &'static str,
        /// The cause, e.g. `ResourceNotFoundException: Requested resource not found`.
        cause: String,
    },
    /// `TransactionConflict` persisted after every retry.
    #[error("TransactionConflict persisted after {attempts} attempts")]
    Contention {
        /// How many attempts were made.
        attempts: u32,
    },
    /// A stored record does not have the expected shape.
    #[error("corrupt record: {what}")]
    Corrupt {
        /// Which record and what is wrong.
        what: String,
    },
    /// Configuration (e.g. `TABLE_NAME` missing).
    #[error("state store configuration: {0}")]
    Config(String),
}

impl StoreError {
    /// Whether the failure is the input's fault (never worth a retry).
    pub fn is_invalid_input(&self) -> bool {
        match self {
            StoreError::Invalid { .. } => true,
            StoreError::Unavailable { .. }
            | StoreError::Misconfigured { .. }
            | StoreError::Contention { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Config(_) => false,
        }
    }

    /// Classifies an SDK error by its kind and the service's error code (the one place where
    /// DynamoDB's codes are interpreted).
    pub fn from_sdk<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match &err {
            SdkError::TimeoutError(_) => StoreError::Unavailable {
                operation,
                cause: "timeout".into(),
            },
            SdkError::DispatchFailure(d) => StoreError::Unavailable {
                operation,
                cause: if d.is_timeout() {
                    "connect timeout".into()
                } else if d.is_io() {
                    "connection failed".into()
                } else {
                    "dispatch failure".into()
                },
            },
            SdkError::ResponseError(_) => StoreError::Unavailable {
                operation,
                cause: "unreadable response".into(),
            },
            SdkError::ServiceError(s) => {
                let code = s.err().code().unwrap_or("unknown");
                let message = s.err().message().unwrap_or("");
                let status = s.raw().status().as_u16();
                let cause = if message.is_empty() {
                    format!("{code} (HTTP {status})")
                } else {
                    format!("{code}: {message} (HTTP {status})")
                };
                classify(operation, code, status, cause)
            }
            _ => StoreError::Misconfigured {
                operation,
                cause: aws_sdk_dynamodb::error::DisplayErrorContext(&err).to_string(),
            },
        }
    }
}

fn classify(operation: &'static str, code: &str, status: u16, cause: String) -> StoreError {
    match code {
        "ValidationException" | "SerializationException" => {
            StoreError::Invalid { operation, cause }
        }
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "TransactionInProgressException"
        | "LimitExceededException" => StoreError::Unavailable { operation, cause },
        _ if status >= 500 => StoreError::Unavailable { operation, cause },
        _ => StoreError::Misconfigured { operation, cause },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_classify_by_kind() {
        let c = |code, status| classify("Op", code, status, "x".into());
        assert!(matches!(
            c("ValidationException", 400),
            StoreError::Invalid { .. }
        ));
        assert!(matches!(
            c("ThrottlingException", 400),
            StoreError::Unavailable { .. }
        ));
        assert!(matches!(c("Whatever", 503), StoreError::Unavailable { .. }));
        assert!(matches!(
            c("ResourceNotFoundException", 400),
            StoreError::Misconfigured { .. }
        ));
        assert!(matches!(
            c("AccessDeniedException", 400),
            StoreError::Misconfigured { .. }
        ));
        assert!(c("ValidationException", 400).is_invalid_input());
        assert!(!c("ThrottlingException", 400).is_invalid_input());
    }
}

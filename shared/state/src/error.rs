//! [`StoreError`]: why a state operation failed. Messages name the cause and never carry secrets
//! (the store never sends or receives a token; only its SHA-256 hash).

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use std::fmt;

/// Why a state operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// DynamoDB could not be reached or did not answer in time, throttled the request, or
    /// answered with a 5xx. Retrying later may succeed (the pipeline answers 503).
    Unavailable {
        /// The DynamoDB operation (`TransactWriteItems`, ...).
        operation: &'static str,
        /// The cause, e.g. `ThrottlingException: ...` or `timeout`.
        cause: String,
    },
    /// DynamoDB refused the request (validation, permissions, missing table...): a bug or a
    /// configuration error, not worth retrying.
    Rejected {
        /// The DynamoDB operation.
        operation: &'static str,
        /// The cause, e.g. `ResourceNotFoundException: Requested resource not found`.
        cause: String,
    },
    /// `TransactionConflict` persisted after every retry.
    Contention {
        /// How many attempts were made.
        attempts: u32,
    },
    /// A stored record does not have the expected shape.
    Corrupt {
        /// Which record and what is wrong.
        what: String,
    },
    /// Configuration (e.g. `TABLE_NAME` missing).
    Config(String),
}

impl StoreError {
    /// Whether this is a transient failure (throttling, network, 5xx, timeout).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    /// Classifies an SDK error.
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
                cause: format!("dispatch failure: {:?}", d.as_connector_error()),
            },
            SdkError::ResponseError(_) => StoreError::Unavailable {
                operation,
                cause: "unreadable response".into(),
            },
            SdkError::ServiceError(s) => {
                let code = s.err().code().unwrap_or("unknown").to_string();
                let message = s.err().message().unwrap_or("").to_string();
                let status = s.raw().status().as_u16();
                let cause = if message.is_empty() {
                    format!("{code} (HTTP {status})")
                } else {
                    format!("{code}: {message} (HTTP {status})")
                };
                let transient = status >= 500
                    || matches!(
                        code.as_str(),
                        "ProvisionedThroughputExceededException"
                            | "ThrottlingException"
                            | "RequestLimitExceeded"
                            | "InternalServerError"
                            | "ServiceUnavailable"
                            | "TransactionInProgressException"
                            | "LimitExceededException"
                    );
                if transient {
                    StoreError::Unavailable { operation, cause }
                } else {
                    StoreError::Rejected { operation, cause }
                }
            }
            _ => StoreError::Rejected {
                operation,
                cause: format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&err)),
            },
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable { operation, cause } => {
                write!(f, "DynamoDB unavailable during {operation}: {cause}")
            }
            StoreError::Rejected { operation, cause } => {
                write!(f, "DynamoDB rejected {operation}: {cause}")
            }
            StoreError::Contention { attempts } => {
                write!(f, "TransactionConflict persisted after {attempts} attempts")
            }
            StoreError::Corrupt { what } => write!(f, "corrupt record: {what}"),
            StoreError::Config(what) => write!(f, "state store configuration: {what}"),
        }
    }
}

impl std::error::Error for StoreError {}

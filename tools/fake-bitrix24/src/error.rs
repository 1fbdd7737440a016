//! The one error type of the library API (wire errors are answers, see [`crate::answer`]).

use thiserror::Error;

/// Why a call on the fake's library API (or its control endpoints) failed.
#[derive(Debug, Error)]
pub enum FakeError {
    /// No portal with this `member_id` is known.
    #[error("unknown portal {0}")]
    UnknownPortal(String),
    /// No application with this `client_id` is known.
    #[error("unknown application {0}")]
    UnknownApp(String),
    /// An application or portal with this identifier already exists.
    #[error("{0} already exists")]
    Duplicate(String),
    /// A specification or control request is not usable; the text names the field.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The listening socket could not be bound.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        /// The requested port (0 = any).
        port: u16,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// The HTTP client used by the event sender could not be built.
    #[error("http client: {0}")]
    Client(String),
}

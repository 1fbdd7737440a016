//! Every answer the receiver gives, and the one place that maps it to an HTTP status.
//!
//! Bitrix24 never retries a delivery, so each answer is deliberate: 200 for every accepted
//! event (`applied`, `duplicate`, `stale`), a 4xx with a reason for bad input, 401 for every
//! authentication failure (the same body whatever the cause), and 503 only when storage is down.

use b24_state::Outcome;
use lambda_http::{Body, Response};
use serde_json::json;

/// Why a request was not applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not a POST.
    MethodNotAllowed,
    /// The body is larger than the configured limit.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A content type other than form-urlencoded or JSON.
    UnsupportedContentType(String),
    /// The body does not decode; the reason names the field.
    Undecodable(String),
    /// An event code this product does not handle.
    UnsupportedEvent(String),
    /// An event sent to another family's route.
    WrongFamily {
        /// The event code.
        event: &'static str,
        /// The route that serves it.
        route: &'static str,
    },
    /// Authentication failed (unknown portal, uninstalled portal, wrong or missing token,
    /// unverifiable token change). The cause is logged, never answered.
    Unauthorized(AuthFailure),
    /// DynamoDB refused the event's writes as invalid (e.g. an item over 400 KB that the
    /// decoder's and the state crate's limits did not prevent); nothing was written.
    Unstorable(String),
    /// DynamoDB is unreachable or throttling; the event was not applied.
    StorageUnavailable,
}

/// The logged cause of a 401. Callers get the same answer for every cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No portal with this `member_id` is registered.
    UnknownPortal,
    /// The portal uninstalled the app.
    Uninstalled,
    /// The presented `application_token` is not the stored one.
    TokenMismatch,
    /// The event carries no `application_token`.
    MissingToken,
    /// An install/update would replace the token, and `app.info` did not confirm it.
    VerificationFailed,
}

impl AuthFailure {
    /// The cause as written in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::UnknownPortal => "unknown_portal",
            AuthFailure::Uninstalled => "uninstalled_portal",
            AuthFailure::TokenMismatch => "token_mismatch",
            AuthFailure::MissingToken => "missing_token",
            AuthFailure::VerificationFailed => "token_change_not_verified",
        }
    }
}

impl Rejection {
    /// The HTTP status of this rejection.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::MethodNotAllowed => 405,
            Rejection::TooLarge { .. } => 413,
            Rejection::UnsupportedContentType(_) => 415,
            Rejection::Undecodable(_) => 400,
            Rejection::UnsupportedEvent(_)
            | Rejection::WrongFamily { .. }
            | Rejection::Unstorable(_) => 422,
            Rejection::Unauthorized(_) => 401,
            Rejection::StorageUnavailable => 503,
        }
    }

    /// The machine-readable error code in the answer body.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::MethodNotAllowed => "method_not_allowed",
            Rejection::TooLarge { .. } => "payload_too_large",
            Rejection::UnsupportedContentType(_) => "unsupported_media_type",
            Rejection::Undecodable(_) => "bad_request",
            Rejection::UnsupportedEvent(_) => "unsupported_event",
            Rejection::WrongFamily { .. } => "wrong_family",
            Rejection::Unstorable(_) => "unstorable_event",
            Rejection::Unauthorized(_) => "unauthorized",
            Rejection::StorageUnavailable => "storage_unavailable",
        }
    }

    /// The human-readable reason in the answer body (never contains a secret).
    pub fn reason(&self) -> String {
        match self {
            Rejection::MethodNotAllowed => "only POST is accepted".into(),
            Rejection::TooLarge { limit } => format!("body larger than {limit} bytes"),
            Rejection::UnsupportedContentType(r)
            | Rejection::Undecodable(r)
            | Rejection::UnsupportedEvent(r) => r.clone(),
            Rejection::Unstorable(cause) => format!("the event cannot be stored: {cause}"),
            Rejection::WrongFamily { event, route } => {
                format!("{event} is served by POST {route}")
            }
            Rejection::Unauthorized(_) => "authentication failed".into(),
            Rejection::StorageUnavailable => "storage unavailable, event not applied".into(),
        }
    }

    /// The metric outcome label of a rejection.
    pub fn outcome_label(&self) -> &'static str {
        "rejected"
    }
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The event was accepted (applied, a duplicate, or stale).
    Accepted(Outcome),
    /// The event was not applied.
    Rejected(Rejection),
}

impl Answer {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Answer::Accepted(_) => 200,
            Answer::Rejected(r) => r.status(),
        }
    }

    /// `applied` / `duplicate` / `stale` / `rejected`.
    pub fn outcome_label(&self) -> &'static str {
        match self {
            Answer::Accepted(o) => o.as_str(),
            Answer::Rejected(r) => r.outcome_label(),
        }
    }

    /// The JSON body: `{"outcome": ...}` or `{"error": ..., "reason": ...}`.
    pub fn body(&self) -> serde_json::Value {
        match self {
            Answer::Accepted(o) => json!({ "outcome": o.as_str() }),
            Answer::Rejected(r) => json!({ "error": r.code(), "reason": r.reason() }),
        }
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response<Body> {
        let mut builder = Response::builder()
            .status(self.status())
            .header("content-type", "application/json");
        if matches!(self, Answer::Rejected(Rejection::MethodNotAllowed)) {
            builder = builder.header("allow", "POST");
        }
        builder
            .body(Body::from(self.body().to_string()))
            .expect("static status and headers always build a response")
    }
}

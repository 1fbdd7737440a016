//! Every answer the receiver gives, and the one place that maps it to an HTTP status and to
//! the metric flags.
//!
//! Bitrix24 never retries a delivery, so each answer is deliberate: 200 for every accepted
//! event (`applied`, `duplicate`, `stale`), 202 `parked` for an event storage could not take
//! (it is applied later by the redrive), a 4xx with a reason for bad input, 401 for every
//! authentication failure (the same body whatever the cause), and 503 only when both storage
//! and the parked queue are down.

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::HeaderValue;
use b24_events::DecodeError;
use b24_state::Outcome;
use serde_json::json;

/// Why a request was not applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not a POST.
    MethodNotAllowed,
    /// The body (or the number of items in it) is larger than the limit.
    TooLarge(String),
    /// A content type other than form-urlencoded or JSON.
    UnsupportedContentType(String),
    /// The request or its body does not decode; the reason names the field.
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
    /// DynamoDB refused the event's writes as invalid (the decoder's and the state crate's
    /// limits are meant to make this impossible); nothing was written.
    Unstorable(String),
    /// DynamoDB could not take the event and the `parked` queue could not either: the event may
    /// be lost (on a timeout it may have been applied after all).
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
    /// An install/update would replace the token (or reinstall an uninstalled portal), and it
    /// could not be proven to belong to this application.
    VerificationFailed,
    /// The portal record changed between authentication and the write (an uninstall, a purge
    /// or a token change won the race); the event was not applied.
    Revoked,
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
            AuthFailure::Revoked => "portal_changed",
        }
    }
}

impl From<&DecodeError> for Rejection {
    fn from(e: &DecodeError) -> Self {
        let reason = e.to_string();
        match e {
            DecodeError::TooLarge { .. } | DecodeError::TooManyItems { .. } => {
                Rejection::TooLarge(reason)
            }
            DecodeError::UnsupportedContentType { .. } => Rejection::UnsupportedContentType(reason),
            DecodeError::UnsupportedEvent { .. } => Rejection::UnsupportedEvent(reason),
            DecodeError::TooDeep { .. }
            | DecodeError::TooManyKeys { .. }
            | DecodeError::Json { .. }
            | DecodeError::NotAnObject
            | DecodeError::Missing { .. }
            | DecodeError::Invalid { .. } => Rejection::Undecodable(reason),
        }
    }
}

impl Rejection {
    /// The HTTP status of this rejection.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::MethodNotAllowed => 405,
            Rejection::TooLarge(_) => 413,
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
            Rejection::TooLarge(_) => "payload_too_large",
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
            Rejection::TooLarge(r)
            | Rejection::UnsupportedContentType(r)
            | Rejection::Undecodable(r)
            | Rejection::UnsupportedEvent(r) => r.clone(),
            Rejection::Unstorable(cause) => format!("the event cannot be stored: {cause}"),
            Rejection::WrongFamily { event, route } => {
                format!("{event} is served by POST {route}")
            }
            Rejection::Unauthorized(_) => "authentication failed".into(),
            Rejection::StorageUnavailable => {
                "storage and the parked queue are unavailable; the event may not be applied".into()
            }
        }
    }
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The event was accepted (applied, a duplicate, or stale).
    Accepted(Outcome),
    /// Storage could not take the event; it was parked on the `parked` queue and will be applied
    /// by the redrive (202).
    Parked,
    /// The event was not applied.
    Rejected(Rejection),
}

/// What one answer contributes to the per-request metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// A 401.
    pub auth_failure: bool,
    /// A 400/413/415/422 about the input.
    pub decode_failure: bool,
    /// A duplicate.
    pub duplicate: bool,
    /// A stale event.
    pub stale: bool,
    /// Storage could not take the event, and parking failed too (503).
    pub storage_error: bool,
    /// Storage could not take the event; it was parked (202).
    pub parked: bool,
}

impl Answer {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Answer::Accepted(_) => 200,
            Answer::Parked => 202,
            Answer::Rejected(r) => r.status(),
        }
    }

    /// `applied` / `duplicate` / `stale` / `rejected`.
    pub fn outcome_label(&self) -> &'static str {
        match self {
            Answer::Accepted(o) => o.as_str(),
            Answer::Parked => "parked",
            Answer::Rejected(_) => "rejected",
        }
    }

    /// The metric flags of this answer.
    pub fn flags(&self) -> Flags {
        match self {
            Answer::Accepted(Outcome::Applied) => Flags::default(),
            Answer::Accepted(Outcome::Duplicate) => Flags {
                duplicate: true,
                ..Flags::default()
            },
            Answer::Accepted(Outcome::Stale) => Flags {
                stale: true,
                ..Flags::default()
            },
            Answer::Parked => Flags {
                parked: true,
                ..Flags::default()
            },
            Answer::Rejected(r) => match r {
                Rejection::Unauthorized(_) => Flags {
                    auth_failure: true,
                    ..Flags::default()
                },
                Rejection::TooLarge(_)
                | Rejection::UnsupportedContentType(_)
                | Rejection::Undecodable(_)
                | Rejection::UnsupportedEvent(_)
                | Rejection::WrongFamily { .. }
                | Rejection::Unstorable(_) => Flags {
                    decode_failure: true,
                    ..Flags::default()
                },
                Rejection::StorageUnavailable => Flags {
                    storage_error: true,
                    ..Flags::default()
                },
                Rejection::MethodNotAllowed => Flags::default(),
            },
        }
    }

    /// The JSON body: `{"outcome": ...}` or `{"error": ..., "reason": ...}`.
    pub fn body(&self) -> serde_json::Value {
        match self {
            Answer::Accepted(o) => json!({ "outcome": o.as_str() }),
            Answer::Parked => json!({ "outcome": "parked" }),
            Answer::Rejected(r) => json!({ "error": r.code(), "reason": r.reason() }),
        }
    }

    /// The API Gateway HTTP API (payload 2.0) response.
    pub fn into_response(self) -> ApiGatewayV2httpResponse {
        let mut response = ApiGatewayV2httpResponse::default();
        response.status_code = i64::from(self.status());
        response
            .headers
            .insert("content-type", HeaderValue::from_static("application/json"));
        if matches!(self, Answer::Rejected(Rejection::MethodNotAllowed)) {
            response
                .headers
                .insert("allow", HeaderValue::from_static("POST"));
        }
        if let Answer::Rejected(Rejection::Unstorable(cause)) = &self {
            tracing::error!(cause = %cause, "DynamoDB refused an event's writes");
        }
        response.body = Some(Body::Text(self.body().to_string()));
        response
    }
}

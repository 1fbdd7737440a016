//! The answers Bitrix24 gives, in one place: the error codes, their HTTP statuses and texts, the
//! success envelope and its `time` object. Sources are named per constructor (paths in
//! `bitrix24/b24restdocs`); where the docs give no text, the chosen one is marked "not documented".

use serde_json::{json, Map, Value};

use crate::clock::iso8601;

/// An error answer: an HTTP status and the body `{"error": …, "error_description": …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorAnswer {
    /// HTTP status code.
    pub status: u16,
    /// The `error` code.
    pub error: String,
    /// The `error_description` text.
    pub description: String,
}

impl ErrorAnswer {
    fn new(status: u16, error: &str, description: impl Into<String>) -> Self {
        ErrorAnswer {
            status,
            error: error.to_string(),
            description: description.into(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": self.error, "error_description": self.description})
    }

    /// 401 `expired_token` (`_includes/system-errors.md`, `settings/oauth/auto-renewal.md`).
    pub(crate) fn expired_token() -> Self {
        Self::new(
            401,
            "expired_token",
            "The access token provided has expired",
        )
    }

    /// 401 `invalid_token`: unknown, revoked or another portal's token. Code as in
    /// `settings/cloud-and-on-premise/on-premise/custom-auth-provider.md`; status and text not
    /// documented (the status matches `expired_token`).
    pub(crate) fn invalid_token() -> Self {
        Self::new(401, "invalid_token", "The access token provided is invalid")
    }

    /// 401 `NO_AUTH_FOUND`: no `auth` at all (`_includes/system-errors.md`).
    pub(crate) fn no_auth() -> Self {
        Self::new(401, "NO_AUTH_FOUND", "Wrong authorization data")
    }

    /// 503 `QUERY_LIMIT_EXCEEDED` (`limits.md`, `_includes/system-errors.md`).
    pub(crate) fn query_limit_exceeded() -> Self {
        Self::new(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
    }

    /// 404 `ERROR_METHOD_NOT_FOUND` (code and status: `api-reference/rest-v3.md`; text not
    /// documented).
    pub(crate) fn method_not_found() -> Self {
        Self::new(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
    }

    /// 403 `insufficient_scope` (`_includes/system-errors.md`).
    pub(crate) fn insufficient_scope() -> Self {
        Self::new(
            403,
            "insufficient_scope",
            "The request requires higher privileges than provided by the access token",
        )
    }

    /// 400 `ERROR_ARGUMENT` "Argument 'X' is null or empty"
    /// (`api-reference/imopenlines/imconnector/imconnector-send-status-delivery.md`).
    pub(crate) fn argument_null(name: &str) -> Self {
        Self::new(
            400,
            "ERROR_ARGUMENT",
            format!("Argument '{name}' is null or empty"),
        )
    }

    /// 400 `ERROR_ARGUMENT` with another text (shape errors inside `MESSAGES`: not documented,
    /// the text names the field).
    pub(crate) fn argument(description: impl Into<String>) -> Self {
        Self::new(400, "ERROR_ARGUMENT", description)
    }

    /// 400 `ERROR_EVENT_NOT_FOUND` (`api-reference/events/event-bind.md`).
    pub(crate) fn event_not_found() -> Self {
        Self::new(400, "ERROR_EVENT_NOT_FOUND", "Event not found")
    }

    /// 400 `ERROR_CORE` for the same event + handler + `auth_type` bound twice
    /// (`api-reference/events/event-bind.md` of the Russian docs; `test-handler.md`).
    pub(crate) fn handler_already_bound() -> Self {
        Self::new(
            400,
            "ERROR_CORE",
            "Unable to set event handler: Handler already binded",
        )
    }

    /// 400 `ERROR_WRONG_HANDLER_URL`: no host, or a host without a dot (Russian `event-bind.md`).
    pub(crate) fn wrong_handler_url() -> Self {
        Self::new(400, "ERROR_WRONG_HANDLER_URL", "Wrong handler URL")
    }

    /// 400 `ERROR_UNSUPPORTED_PROTOCOL`: a scheme other than http/https (Russian `event-bind.md`).
    pub(crate) fn unsupported_protocol() -> Self {
        Self::new(
            400,
            "ERROR_UNSUPPORTED_PROTOCOL",
            "Unsupported handler protocol",
        )
    }

    /// `ERROR_BATCH_LENGTH_EXCEEDED` for each command past the 50th
    /// (`settings/how-to-call-rest-api/batch.md`).
    pub(crate) fn batch_length_exceeded() -> Self {
        Self::new(
            400,
            "ERROR_BATCH_LENGTH_EXCEEDED",
            "Max batch length exceeded",
        )
    }

    /// `ERROR_BATCH_METHOD_NOT_ALLOWED` for `batch` inside `batch` (`batch.md`).
    pub(crate) fn batch_method_not_allowed() -> Self {
        Self::new(
            405,
            "ERROR_BATCH_METHOD_NOT_ALLOWED",
            "Method is not allowed for batch usage",
        )
    }

    /// 400 `INVALID_REQUEST` for a body that cannot be read (not documented for this cause).
    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(400, "INVALID_REQUEST", description)
    }

    /// 404 for a REST path naming no portal of the fake (fake only: a real portal is a host).
    pub(crate) fn portal_not_found() -> Self {
        Self::new(
            404,
            "PORTAL_NOT_FOUND",
            "No such portal on this fake Bitrix24",
        )
    }

    /// 404 for a path the fake does not serve (fake only).
    pub(crate) fn not_found() -> Self {
        Self::new(404, "NOT_FOUND", "No such endpoint on this fake Bitrix24")
    }

    /// 405 for an HTTP method other than GET/POST (fake only).
    pub(crate) fn method_not_allowed() -> Self {
        Self::new(405, "METHOD_NOT_ALLOWED", "Use GET or POST")
    }

    /// 413 for a body over the fake's limit (fake only).
    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "REQUEST_TOO_LARGE",
            format!("Request body over {limit} bytes"),
        )
    }

    /// 408 for a body that does not arrive in time (fake only).
    pub(crate) fn body_timeout() -> Self {
        Self::new(408, "REQUEST_TIMEOUT", "Request body not received in time")
    }

    /// OAuth 400 `invalid_request` (`settings/oauth/error-codes.md`; text not documented).
    pub(crate) fn oauth_invalid_request(description: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", description)
    }

    /// OAuth 401 `invalid_client`: unknown `client_id` or wrong `client_secret`
    /// (`settings/oauth/error-codes.md`; status and text not documented).
    pub(crate) fn oauth_invalid_client() -> Self {
        Self::new(401, "invalid_client", "Invalid client_id or client_secret")
    }

    /// OAuth 400 `invalid_grant`: unknown, spent, revoked or expired `refresh_token`
    /// (`settings/oauth/error-codes.md`; status and text not documented).
    pub(crate) fn oauth_invalid_grant() -> Self {
        Self::new(
            400,
            "invalid_grant",
            "The refresh_token is invalid, expired, revoked or already used",
        )
    }
}

/// The `time` object of every successful REST answer (`api-reference/data-types.md#time`).
pub(crate) fn time_object(start: f64, finish: f64) -> Value {
    let round = |x: f64| (x * 1e6).round() / 1e6;
    json!({
        "start": round(start),
        "finish": round(finish),
        "duration": round(finish - start),
        "processing": round(finish - start),
        "date_start": iso8601(start.floor() as i64),
        "date_finish": iso8601(finish.floor() as i64),
        "operating_reset_at": start.floor() as i64 + 600,
        "operating": 0,
    })
}

/// What a method returns: `result`, and `total`/`next` for list methods.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MethodResult {
    pub result: Value,
    pub total: Option<u64>,
    pub next: Option<u64>,
}

impl MethodResult {
    pub(crate) fn new(result: Value) -> Self {
        MethodResult {
            result,
            total: None,
            next: None,
        }
    }

    /// The success envelope `{"result": …, ["total", "next",] "time": {…}}`.
    pub(crate) fn envelope(self, start: f64, finish: f64) -> Value {
        let mut body = Map::new();
        body.insert("result".into(), self.result);
        if let Some(total) = self.total {
            body.insert("total".into(), total.into());
        }
        if let Some(next) = self.next {
            body.insert("next".into(), next.into());
        }
        body.insert("time".into(), time_object(start, finish));
        Value::Object(body)
    }
}

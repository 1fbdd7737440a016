//! What the fake hands out and records: credentials, bindings, deliveries, handler answers,
//! the call log. All serialize to the JSON of the control endpoints.

use serde::Serialize;
use serde_json::Value;

use crate::rate_limit::RateLimit;

/// The credentials Bitrix24 hands an installed application (the `auth` of ONAPPINSTALL, plus
/// `expires`, `user_id`): what [`crate::FakeBitrix24::add_portal`] returns.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InstallCredentials {
    /// OAuth access token (valid for `expires_in` seconds).
    pub access_token: String,
    /// OAuth refresh token (single use, 180 days by default).
    pub refresh_token: String,
    /// Unix time at which `access_token` expires.
    pub expires: i64,
    /// Lifetime of `access_token` in seconds.
    pub expires_in: i64,
    /// The token every event to this portal's handlers carries.
    pub application_token: String,
    /// The portal's REST base on the fake: `{base}/portal/{member_id}/rest/`.
    pub client_endpoint: String,
    /// The OAuth server's REST base: `{base}/rest/` (nothing is served there).
    pub server_endpoint: String,
    /// The portal's domain.
    pub domain: String,
    /// The portal's `member_id`.
    pub member_id: String,
    /// Granted scopes, comma-separated.
    pub scope: String,
    /// App status (`L`, `F`, …).
    pub status: String,
    /// The user the tokens belong to.
    pub user_id: u64,
}

/// One `event.bind` registration.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Binding {
    /// The handler id, sent as `event_handler_id`.
    pub id: u64,
    /// Event name, upper case as Bitrix24 stores it (`ONIMCONNECTORMESSAGEADD`).
    pub event: String,
    /// Handler URL; empty for an offline binding.
    pub handler: String,
    /// `auth_type` (user id the handler is authorised as; 0 = the user who caused the event).
    pub auth_type: u64,
    /// Whether it is an offline binding (`event_type=offline`).
    pub offline: bool,
}

/// One accepted `imconnector.send.status.delivery` call.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Delivery {
    /// Unix time of the call (fake clock).
    pub at: i64,
    /// `CONNECTOR` as sent.
    pub connector: String,
    /// `LINE`.
    pub line: i64,
    /// One entry per element of `MESSAGES`, in order.
    pub messages: Vec<DeliveredMessage>,
    /// The `cmd` key when the call came inside a `batch`.
    pub batch_command: Option<String>,
}

/// One element of `MESSAGES` of a delivery.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeliveredMessage {
    /// `im.chat_id`.
    pub chat_id: i64,
    /// `im.message_id`.
    pub message_id: i64,
    /// `message.id` (external ids).
    pub external_ids: Vec<String>,
    /// `message.date`, when sent.
    pub date: Option<i64>,
    /// `chat.id` (external chat id).
    pub external_chat_id: String,
}

/// What one handler answered to an event POST.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HandlerResponse {
    /// The event name sent (upper case).
    pub event: String,
    /// The binding's id (`event_handler_id`); `None` for ONAPPINSTALL sent by `install`.
    pub event_handler_id: Option<u64>,
    /// The URL posted to.
    pub url: String,
    /// HTTP status of the answer; `None` when there was none.
    pub status: Option<u16>,
    /// The answer body (first 64 KiB, lossy UTF-8).
    pub body: String,
    /// Why there was no answer (connection refused, timeout, …).
    pub error: Option<String>,
}

/// What `install` did: the fresh credentials and the install handler's answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InstallDelivery {
    /// The credentials sent in the ONAPPINSTALL `auth` block.
    pub credentials: InstallCredentials,
    /// The install handler's answer.
    pub response: HandlerResponse,
}

/// A portal as the control endpoints list it (no tokens).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PortalInfo {
    /// `member_id`.
    pub member_id: String,
    /// `domain`.
    pub domain: String,
    /// The installed application.
    pub client_id: String,
    /// Granted scopes.
    pub scope: Vec<String>,
    /// The user tokens are issued for.
    pub user_id: u64,
    /// `false` after `uninstall`.
    pub installed: bool,
    /// The REST base on the fake.
    pub client_endpoint: String,
    /// The portal's REST limit (`None` = off).
    pub rate_limit: Option<RateLimit>,
    /// Number of bindings.
    pub bindings: usize,
    /// Number of recorded deliveries.
    pub deliveries: usize,
}

/// Which side of the fake a call log entry is about.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CallKind {
    /// A REST call received (a `batch` command is its own entry too).
    Rest,
    /// An OAuth token request received.
    Oauth,
    /// An event POST the fake sent to a handler.
    Event,
}

/// One entry of the call log. Every token and secret in `params` reads `[token]`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallRecord {
    /// Position in the log, from 1.
    pub seq: u64,
    /// Unix time with fraction (fake clock).
    pub time: f64,
    /// REST, OAuth or event.
    pub kind: CallKind,
    /// The portal, when known.
    pub member_id: Option<String>,
    /// REST method (lower case), `oauth/token`, or the event name.
    pub method: String,
    /// Parameters as received (REST, OAuth) or sent (event: URL and handler id), redacted.
    pub params: Value,
    /// HTTP status answered (REST, OAuth) or received (event); `None` for a batch command
    /// or an unanswered event.
    pub http_status: Option<u16>,
    /// `ok`, or the error code (REST, OAuth), or `http_<status>`/`unreachable` (event).
    pub outcome: String,
    /// The `cmd` key of a command run inside a `batch`.
    pub batch_command: Option<String>,
}

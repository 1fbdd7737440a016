//! What the fake is started with: its settings, the applications and the portals it knows.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rate_limit::RateLimit;

/// Settings of a [`crate::FakeBitrix24`]. `FakeConfig::default()` listens on a free port of
/// 127.0.0.1 and knows no application or portal yet.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Marker put in front of every token the fake issues (access, refresh, application), so
    /// tests can grep logs and records for leaks. Empty by default.
    pub token_prefix: String,
    /// Applications known from the start.
    pub apps: Vec<AppSpec>,
    /// Portals with the application installed from the start (their apps must be in `apps`).
    pub portals: Vec<PortalSpec>,
    /// The REST limit of every portal; `None` turns it off. Default: 2 requests/s, burst 50.
    pub rate_limit: Option<RateLimit>,
    /// Lifetime of an access token (Bitrix24: 1 hour).
    pub access_token_lifetime: Duration,
    /// Lifetime of a refresh token (Bitrix24: 180 days).
    pub refresh_token_lifetime: Duration,
    /// `domain` of the OAuth answer: Bitrix24 puts the OAuth server's host there
    /// (`oauth.bitrix.info`). Default: the fake's own `127.0.0.1:port`.
    pub oauth_domain: Option<String>,
    /// Largest request body read; larger ones get 413.
    pub max_body_bytes: usize,
    /// Bound on reading a request's headers and on reading its body; a keep-alive connection
    /// idle this long is closed.
    pub request_timeout: Duration,
    /// Bound on each POST of the event sender to a handler (connect, send, read the answer).
    pub handler_timeout: Duration,
    /// Freeze the fake's clock at start: time (token expiry, the rate limit's drain, the
    /// `time` of answers) then moves only through `advance_clock`, so timing-sensitive tests do
    /// not depend on the machine's speed. Default `false`: wall time (plus `advance_clock`).
    pub freeze_clock: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            port: 0,
            token_prefix: String::new(),
            apps: Vec::new(),
            portals: Vec::new(),
            rate_limit: Some(RateLimit::CLOUD),
            access_token_lifetime: Duration::from_secs(3600),
            refresh_token_lifetime: Duration::from_secs(180 * 86_400),
            oauth_domain: None,
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(10),
            handler_timeout: Duration::from_secs(10),
            freeze_clock: false,
        }
    }
}

/// An application registered with the OAuth server (a local or a Marketplace app).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppSpec {
    /// `client_id` (the application code of `settings/oauth/index.md`).
    pub client_id: String,
    /// `client_secret`.
    pub client_secret: String,
    /// `CODE` answered by `app.info`. Default: the `client_id` (what a local app shows).
    #[serde(default)]
    pub code: Option<String>,
    /// `VERSION` answered by `app.info` and sent in ONAPPINSTALL. Default 1.
    #[serde(default = "default_version")]
    pub version: u32,
    /// App status (`STATUS` of `app.info`, `status` of the OAuth answer and events):
    /// `L` local (default), `F` free, `D` demo, `T` trial, `P` paid, `S` subscription.
    #[serde(default = "default_status")]
    pub status: String,
}

impl AppSpec {
    /// An application with this id and secret and the defaults above.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        AppSpec {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            code: None,
            version: default_version(),
            status: default_status(),
        }
    }

    /// The `CODE` of `app.info`.
    pub fn code(&self) -> &str {
        self.code.as_deref().unwrap_or(&self.client_id)
    }
}

fn default_version() -> u32 {
    1
}

fn default_status() -> String {
    "L".into()
}

/// A portal (one Bitrix24 account) with an application installed on it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortalSpec {
    /// `member_id`. Over HTTP it may be left out: a random one is made.
    #[serde(default)]
    pub member_id: String,
    /// The installed application. Over HTTP it may be left out when exactly one app is known.
    #[serde(default)]
    pub client_id: String,
    /// The portal's `domain`. Default `<first 8 chars of member_id>.bitrix24.test`.
    #[serde(default)]
    pub domain: Option<String>,
    /// Scopes granted to the application. Default `imconnector`, `imopenlines`.
    #[serde(default = "default_scope")]
    pub scope: Vec<String>,
    /// The user the tokens are issued for (`user_id`). Default 1.
    #[serde(default = "default_user")]
    pub user_id: u64,
    /// `LANGUAGE_ID` of app events. Default `en`.
    #[serde(default = "default_language")]
    pub language: String,
}

impl PortalSpec {
    /// A portal with this `member_id` running application `client_id`, defaults otherwise.
    pub fn new(member_id: impl Into<String>, client_id: impl Into<String>) -> Self {
        PortalSpec {
            member_id: member_id.into(),
            client_id: client_id.into(),
            domain: None,
            scope: default_scope(),
            user_id: default_user(),
            language: default_language(),
        }
    }

    /// The domain, or the default made from the `member_id`.
    pub fn domain(&self) -> String {
        self.domain.clone().unwrap_or_else(|| {
            let short: String = self.member_id.chars().take(8).collect();
            format!("{}.bitrix24.test", short.to_ascii_lowercase())
        })
    }
}

fn default_scope() -> Vec<String> {
    vec!["imconnector".into(), "imopenlines".into()]
}

fn default_user() -> u64 {
    1
}

fn default_language() -> String {
    "en".into()
}

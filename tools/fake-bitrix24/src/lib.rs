//! A fake Bitrix24 REST + OAuth server for tests and the local dev stack.
//!
//! It serves, on 127.0.0.1, what the product calls on Bitrix24 — the OAuth token endpoint
//! (refresh with rotation), the REST methods `app.info`, `event.bind`/`unbind`/`get`,
//! `imconnector.send.status.delivery` and `batch`, with Bitrix24's error answers, per-portal
//! leaky-bucket rate limit and token expiry — and it sends what Bitrix24 sends: events, as PHP
//! form bodies, to the bound handlers. Everything it receives is recorded, tokens redacted.
//!
//! ```no_run
//! # async fn demo() -> Result<(), b24_fake_bitrix24::FakeError> {
//! use b24_fake_bitrix24::{AppSpec, FakeBitrix24, FakeConfig, PortalSpec};
//!
//! let fake = FakeBitrix24::start(FakeConfig::default()).await?;
//! fake.add_app(AppSpec::new("local.app.1", "secret"))?;
//! let creds = fake.add_portal(PortalSpec::new("member1", "local.app.1"))?;
//! // The product calls creds.client_endpoint + "app.info", refreshes at fake.oauth_url(), …
//! let answers = fake.send_event("member1", "OnImConnectorMessageAdd", &serde_json::json!({})).await?;
//! # let _ = (creds, answers); Ok(()) }
//! ```
//!
//! See the crate's README for the exact answers and the `/_fake/` control endpoints.

mod answer;
mod call_log;
mod clock;
mod config;
mod control;
mod error;
mod events;
mod oauth;
mod params;
pub mod php_form;
mod rate_limit;
mod records;
mod rest;
mod server;
mod shared;
mod tokens;
mod world;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use answer::ErrorAnswer;
pub use call_log::REDACTED;
pub use config::{AppSpec, FakeConfig, PortalSpec};
pub use error::FakeError;
pub use events::EventOptions;
pub use rate_limit::RateLimit;
pub use records::{
    Binding, CallKind, CallRecord, DeliveredMessage, Delivery, HandlerResponse, InstallCredentials,
    InstallDelivery, PortalInfo,
};

use shared::Shared;
use world::Settings;

/// A running fake Bitrix24. It serves until dropped (or [`FakeBitrix24::shutdown`]).
pub struct FakeBitrix24 {
    shared: Arc<Shared>,
    initial: Vec<InstallCredentials>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl FakeBitrix24 {
    /// Binds 127.0.0.1:`config.port` and starts serving on the current tokio runtime, with the
    /// configured applications and portals in place.
    pub async fn start(config: FakeConfig) -> Result<FakeBitrix24, FakeError> {
        if config.rate_limit.is_some_and(|l| !l.is_valid()) {
            return Err(FakeError::InvalidInput("rate_limit".into()));
        }
        let lifetime_ok =
            |d: Duration| d >= Duration::from_secs(1) && d.as_secs() < i64::MAX as u64 / 4;
        if !lifetime_ok(config.access_token_lifetime) || !lifetime_ok(config.refresh_token_lifetime)
        {
            return Err(FakeError::InvalidInput(
                "token lifetimes: at least one second".into(),
            ));
        }
        let port = config.port;
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|source| FakeError::Bind { port, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| FakeError::Bind { port, source })?
            .port();
        let base_url = format!("http://127.0.0.1:{port}");
        let settings = Settings {
            base_url,
            token_prefix: config.token_prefix.clone(),
            access_lifetime: config.access_token_lifetime.as_secs() as i64,
            refresh_lifetime: config.refresh_token_lifetime.as_secs() as i64,
            oauth_domain: config
                .oauth_domain
                .clone()
                .unwrap_or_else(|| format!("127.0.0.1:{port}")),
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(config.handler_timeout)
            .timeout(config.handler_timeout)
            .user_agent("b24-fake-bitrix24")
            .build()
            .map_err(|e| FakeError::Client(e.to_string()))?;
        let (shared, initial) = Shared::new(settings, config, client)?;
        let shared = Arc::new(shared);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(server::serve(listener, shared.clone(), stopped));
        Ok(FakeBitrix24 {
            shared,
            initial,
            stop,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.shared.settings.base_url
    }

    /// The token endpoint to point the product at instead of
    /// `https://oauth.bitrix.info/oauth/token/`: `{base}/oauth/token/`.
    pub fn oauth_url(&self) -> String {
        format!("{}/oauth/token/", self.base_url())
    }

    /// A portal's REST base (`client_endpoint`): `{base}/portal/{member_id}/rest/`.
    pub fn client_endpoint(&self, member_id: &str) -> String {
        self.shared.settings.client_endpoint(member_id)
    }

    /// Credentials of the portals of [`FakeConfig::portals`], in order, as issued at start.
    pub fn initial_credentials(&self) -> &[InstallCredentials] {
        &self.initial
    }

    /// Registers an application with the OAuth server.
    pub fn add_app(&self, spec: AppSpec) -> Result<(), FakeError> {
        self.shared.add_app(spec)
    }

    /// Adds a portal with its application installed; returns the credentials Bitrix24 would
    /// hand the install (see [`InstallCredentials`]). No event is sent (see [`Self::install`]).
    pub fn add_portal(&self, spec: PortalSpec) -> Result<InstallCredentials, FakeError> {
        self.shared.add_portal(spec)
    }

    /// Every portal, without tokens.
    pub fn portals(&self) -> Vec<PortalInfo> {
        self.shared.portals()
    }

    /// The call log, oldest first (the last 20 000 entries).
    pub fn calls(&self) -> Vec<CallRecord> {
        self.shared.calls()
    }

    /// The portal's `event.bind` registrations, in binding order.
    pub fn bindings(&self, member_id: &str) -> Result<Vec<Binding>, FakeError> {
        self.shared.bindings(member_id)
    }

    /// The portal's accepted `imconnector.send.status.delivery` calls, oldest first.
    pub fn deliveries(&self, member_id: &str) -> Result<Vec<Delivery>, FakeError> {
        self.shared.deliveries(member_id)
    }

    /// Expires every access token of the portal now: the next REST call with one answers
    /// `expired_token`. Returns how many tokens were affected.
    pub fn expire_access_tokens(&self, member_id: &str) -> Result<usize, FakeError> {
        self.shared.expire_access_tokens(member_id)
    }

    /// Revokes every refresh token of the portal: the next refresh answers `invalid_grant`.
    pub fn revoke_refresh_tokens(&self, member_id: &str) -> Result<usize, FakeError> {
        self.shared.revoke_refresh_tokens(member_id)
    }

    /// Gives the portal a new `application_token` (as a reinstall does); returns it.
    pub fn rotate_application_token(&self, member_id: &str) -> Result<String, FakeError> {
        self.shared.rotate_application_token(member_id)
    }

    /// Sets one portal's REST limit (`None`: unlimited) and empties its bucket.
    pub fn set_rate_limit(
        &self,
        member_id: &str,
        limit: Option<RateLimit>,
    ) -> Result<(), FakeError> {
        self.shared.set_rate_limit(Some(member_id), limit)
    }

    /// Sets the REST limit of every portal, present and future, replacing per-portal limits.
    pub fn set_default_rate_limit(&self, limit: Option<RateLimit>) -> Result<(), FakeError> {
        self.shared.set_rate_limit(None, limit)
    }

    /// Moves the fake's clock forward: tokens expire and buckets drain as if `by` had passed.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.advance_clock(by)
    }

    /// Forgets everything and starts over from the configuration (clock included); returns the
    /// configured portals' fresh credentials.
    pub fn reset(&self) -> Result<Vec<InstallCredentials>, FakeError> {
        self.shared.reset()
    }

    /// Sends `event` (any case; sent upper case) with `data` to every online handler bound to
    /// it on the portal, one after the other, as Bitrix24's queue server POSTs it; returns each
    /// handler's answer. `data` is encoded as `data[...]` (a scalar as `data=…`, `null` not at
    /// all). The `auth` block carries a fresh access token valid for REST calls.
    pub async fn send_event(
        &self,
        member_id: &str,
        event: &str,
        data: &Value,
    ) -> Result<Vec<HandlerResponse>, FakeError> {
        self.send_event_with(member_id, event, data, EventOptions::default())
            .await
    }

    /// [`Self::send_event`] with options (e.g. an `auth` block without tokens).
    pub async fn send_event_with(
        &self,
        member_id: &str,
        event: &str,
        data: &Value,
        options: EventOptions,
    ) -> Result<Vec<HandlerResponse>, FakeError> {
        self.shared
            .send_event(member_id, event, data, options)
            .await
    }

    /// (Re)installs the app: drops the portal's bindings, issues fresh tokens and POSTs
    /// ONAPPINSTALL (with `access_token`, `refresh_token`, `application_token`, …) to
    /// `install_handler_url`. After [`Self::uninstall`] the portal also gets a new
    /// `application_token`.
    pub async fn install(
        &self,
        member_id: &str,
        install_handler_url: &str,
    ) -> Result<InstallDelivery, FakeError> {
        self.shared.install(member_id, install_handler_url).await
    }

    /// Uninstalls the app: POSTs ONAPPUNINSTALL (`CLEAN` = `clean`) to the handlers bound to
    /// it, then removes every binding and revokes every token of the portal.
    pub async fn uninstall(
        &self,
        member_id: &str,
        clean: bool,
    ) -> Result<Vec<HandlerResponse>, FakeError> {
        self.shared.uninstall(member_id, clean).await
    }

    /// Stops accepting connections and lets open ones finish (bounded).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FakeBitrix24 {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

//! Talking back to Bitrix24: the OAuth refresh, the REST client (single calls and `batch`),
//! and the application's client secret from SSM Parameter Store.
//!
//! - [`OAuthClient::refresh`] trades a refresh token for a new pair at
//!   [`DEFAULT_TOKEN_URL`] (the refresh token rotates: store the new one at once).
//! - [`RestClient::call`] and [`RestClient::batch`] call a portal's `client_endpoint`;
//!   [`event_bind_commands`] and [`delivery_command`] build the commands the product sends.
//! - [`SsmParameter`] reads the `client_secret` on first use and keeps it in memory.
//!
//! No error, log line or `Debug` output of this crate contains a token or the client secret:
//! tokens are [`Secret`]s, transport errors are described by kind (reqwest's own messages
//! carry the URL, and the OAuth URL carries the secrets), and every text a server sends back
//! is bounded and cleaned of the secrets the request carried.
//!
//! ```no_run
//! # async fn demo(grant_store: &mut Option<b24_rest::Grant>) -> Result<(), Box<dyn std::error::Error>> {
//! use b24_rest::*;
//!
//! let oauth = OAuthClient::new(OAuthConfig::default())?;
//! let rest = RestClient::new(RestConfig::default())?;
//! let app = ClientCredentials::new("local.abc.123", StaticSecret::new("client-secret"));
//! let grant = oauth.refresh(&app, &Secret::new("stored-refresh-token")).await?;
//! let answer = rest
//!     .batch(
//!         &grant.client_endpoint,
//!         &grant.access_token,
//!         &event_bind_commands(&[("OnImConnectorMessageAdd", "https://h.example/bitrix24/messages")]),
//!         false,
//!     )
//!     .await?;
//! let failed = answer.errors.values().filter(|e| !e.is_already_bound()).count();
//! *grant_store = Some(grant);
//! # let _ = failed; Ok(()) }
//! ```

mod answer;
mod batch;
mod config;
mod endpoint;
mod http;
mod methods;
mod oauth;
mod rest;
mod secret;

pub use answer::{MethodError, QUERY_LIMIT_EXCEEDED};
pub use b24_events::Secret;
pub use batch::{BatchAnswer, Command, MAX_BATCH_COMMANDS};
pub use config::{ConfigError, HttpLimits};
pub use methods::{delivery_command, event_bind_commands, Delivered};
pub use oauth::{Grant, OAuthClient, OAuthConfig, OAuthError, DEFAULT_TOKEN_URL};
pub use rest::{RestClient, RestConfig, RestError};
pub use secret::{ClientCredentials, ClientSecretSource, SecretError, SsmParameter, StaticSecret};

//! # b24-pipeline
//!
//! The HTTP glue shared by the four functions. One request, top to bottom:
//!
//! 1. **method**: POST only (405 otherwise);
//! 2. **size**: at most `MAX_BODY_BYTES` after API Gateway's base64 is undone (413);
//! 3. **decode** with `b24-events`: form (PHP brackets) or JSON (400 undecodable, 415 content
//!    type, 422 unsupported event);
//! 4. **family**: the event must belong to this function (422 naming the right route);
//! 5. **authenticate** per portal ([`auth`]; 401, the same answer for every cause);
//! 6. **apply** through `b24-state`: one DynamoDB transaction, exactly once (200 with
//!    `applied` / `duplicate` / `stale`; 503 when storage is unavailable);
//! 7. **answer**, log one JSON line and emit one EMF metrics record.
//!
//! The mapping from every outcome to an HTTP status lives in [`answer`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod answer;
pub mod auth;
pub mod config;
pub mod logging;
pub mod metrics;
mod pipeline;
pub mod verifier;

pub use answer::{Answer, AuthFailure, Rejection};
pub use config::{Config, ConfigError, VerifierConfig};
pub use metrics::Metrics;
pub use pipeline::Pipeline;
pub use verifier::{AppInfoVerifier, RefuseTokenChanges, TokenChangeVerifier, VerifyError};

use b24_events::Family;
use b24_state::DynamoStore;
use std::sync::Arc;

/// Everything a function's `main` builds once at start-up: configuration, logging, the
/// DynamoDB client (from the environment alone, see `b24_state::client_from_env_vars`), the
/// token-change verifier made by `verifier` and the metrics sink. Nothing here touches the
/// network; the first DynamoDB connection is made by the first request.
pub fn pipeline_from_env<V: TokenChangeVerifier>(
    family: Family,
    verifier: impl FnOnce(&Config) -> V,
) -> Result<Pipeline<DynamoStore, V>, lambda_http::Error> {
    logging::init();
    let config = Config::from_env(family)?;
    let client = b24_state::client_from_env_vars()?;
    let store = DynamoStore::new(client, config.table_name.clone())
        .with_event_ttl_days(config.event_ttl_days);
    let metrics = Metrics::stdout(config.metrics_namespace.clone());
    let verifier = verifier(&config);
    Ok(Pipeline::new(&config, Arc::new(store), verifier, metrics))
}

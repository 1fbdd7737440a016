//! # b24-pipeline
//!
//! The webhook glue shared by the four functions. One request, top to bottom:
//!
//! 1. **request**: the API Gateway HTTP API (2.0) payload, converted without trusting it
//!    ([`request`]; a malformed event or bad base64 is 400, never a panic);
//! 2. **method**: POST only (405 otherwise); **size**: at most `MAX_BODY_BYTES` after base64 (413);
//! 3. **decode** with `b24-events`: form (PHP brackets) or JSON (400 undecodable, 413 too many
//!    items, 415 content type, 422 unsupported event);
//! 4. **family**: the event must belong to this function (422 naming the right route);
//! 5. **authenticate** per portal ([`auth`]; 401, the same answer for every cause);
//! 6. **apply** through `b24-state`: one DynamoDB transaction that also checks the portal
//!    record, exactly once (200 with `applied` / `duplicate` / `stale`; 503 when storage is
//!    unavailable);
//! 7. **answer**, log one JSON line and emit one EMF metrics record.
//!
//! The mapping from every outcome to an HTTP status and to the metrics lives in [`answer`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod answer;
pub mod auth;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod park;
mod pipeline;
pub mod request;
pub mod talkback;
pub mod verifier;

pub use answer::{Answer, AuthFailure, Rejection};
pub use config::{
    optional_var, required_var, Config, ConfigError, ConsumerConfig, VerifierConfig,
    DEFAULT_METRICS_NAMESPACE,
};
pub use metrics::Metrics;
pub use park::{NoParking, ParkedEvent, Parker, SqsParker};
pub use pipeline::{Pipeline, STORAGE_BUDGET};
pub use request::WebhookRequest;
pub use talkback::{Bitrix24, OAuthVerifier, TalkError, TalkbackConfig};
pub use verifier::{AppInfoVerifier, InstallVerifier, RefuseTokenChanges, Verified, VerifyError};

use b24_events::Family;
use b24_state::DynamoStore;
use std::sync::Arc;

/// The error a function's `main` returns at start-up (configuration, client set-up).
pub type InitError = lambda_runtime::Error;

/// Everything a function's `main` builds once at start-up: configuration, logging, the
/// DynamoDB and SQS clients (from the environment alone, see `b24_state::AwsEnv`), the
/// install verifier made by `verifier` and the metrics sink. Nothing here touches the
/// network; the first DynamoDB connection is made by the first request.
pub fn pipeline_from_env<V: InstallVerifier, E: Into<InitError>>(
    family: Family,
    verifier: impl FnOnce(&Config) -> Result<V, E>,
) -> Result<Pipeline<DynamoStore, V, SqsParker>, InitError> {
    logging::init();
    logging::abort_on_panic();
    let config = Config::from_env(family)?;
    let env = b24_state::AwsEnv::from_env()?;
    let client = b24_state::dynamodb_client(&env, b24_state::Timeouts::WEBHOOK);
    let store = DynamoStore::new(client, config.table_name.clone());
    let parker = SqsParker::lazy(env, config.parked_queue_url.clone());
    let metrics = Metrics::stdout(config.metrics_namespace.clone());
    let verifier = verifier(&config).map_err(Into::into)?;
    Ok(Pipeline::with_parker(
        &config,
        Arc::new(store),
        verifier,
        parker,
        metrics,
    ))
}

/// Runs a webhook pipeline under the Lambda runtime until the execution environment ends.
pub async fn serve<S: b24_state::Store, V: InstallVerifier, P: Parker>(
    pipeline: Pipeline<S, V, P>,
) -> Result<(), InitError> {
    let pipeline = &pipeline;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            // Boxed: the request future nests deeply (decode → auth → transaction), and a
            // boxed future keeps the runtime's future types shallow for the compiler.
            let answer = Box::pin(pipeline.handle(event.payload)).await;
            Ok::<_, std::convert::Infallible>(answer)
        },
    ))
    .await
}

//! The binder function: the portal-tasks queue (portal.installed / portal.updated /
//! portal.uninstalled from the outbox) → every event of this stack bound with `event.bind` in
//! one `batch`, or the vault cleared (see `b24_consumers::binder`).

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use b24_consumers::binder::{self, Handlers};
use b24_pipeline::metrics::names;
use b24_pipeline::{Bitrix24, ConsumerConfig, InitError, Metrics, TalkbackConfig};
use b24_state::Timeouts;
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), InitError> {
    // Built once per execution environment, borrowed by every invocation.
    b24_pipeline::logging::init();
    b24_pipeline::logging::abort_on_panic();
    let config = ConsumerConfig::from_env(false)?;
    let env = b24_state::AwsEnv::from_env()?;
    let store = b24_state::DynamoStore::new(
        b24_state::dynamodb_client(&env, Timeouts::BACKGROUND),
        config.table_name.clone(),
    );
    let handlers = Handlers::new(b24_pipeline::required_var(
        "HANDLER_URL_TEMPLATE",
        " (the stack's handler URLs, with {family})",
    )?)?;
    // Without the client secret nothing can be bound: tasks are acknowledged and logged.
    let b24 = match TalkbackConfig::from_env()? {
        Some(t) => Some(Bitrix24::from_config(&t, &env, &config.table_name)?),
        None => None,
    };
    let metrics = Metrics::stdout(config.metrics_namespace.clone());
    let (store, handlers, b24, metrics) = (&store, &handlers, &b24, &metrics);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let Some(b24) = b24 else {
            tracing::warn!(
                tasks = event.payload.records.len(),
                "talking back is off (BITRIX24_CLIENT_SECRET_PARAMETER unset): events not bound"
            );
            return Ok(SqsBatchResponse::default());
        };
        let (response, report) = binder::handle(b24, store, handlers, event.payload, now()).await;
        metrics.emit_counts(
            "binder",
            &[
                (names::PORTALS_BOUND, report.bound as f64),
                (names::BINDER_RETRIES, report.retried as f64),
                (names::VAULTS_CLEARED, report.cleared as f64),
                (names::NEEDS_REINSTALL, report.needs_reinstall as f64),
            ],
        );
        Ok::<SqsBatchResponse, std::convert::Infallible>(response)
    }))
    .await
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

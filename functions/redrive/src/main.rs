//! The redrive function: the `parked` queue → each parked event authenticated and applied
//! through the very same transaction the webhook would have run (see
//! `b24_consumers::redrive`); failures are reported per message.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use b24_pipeline::metrics::names;
use b24_pipeline::{ConsumerConfig, InitError, Metrics};
use b24_state::Timeouts;
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), InitError> {
    // Built once per execution environment, borrowed by every invocation.
    b24_pipeline::logging::init();
    b24_pipeline::logging::abort_on_panic();
    let config = ConsumerConfig::from_env(true)?;
    let env = b24_state::AwsEnv::from_env()?;
    let store = b24_state::DynamoStore::new(
        b24_state::dynamodb_client(&env, Timeouts::BACKGROUND),
        config.table_name.clone(),
    );
    let visibility = b24_consumers::redrive::SqsVisibility::new(
        b24_pipeline::park::sqs_client(&env, Timeouts::BACKGROUND),
        config.parked_queue_url.clone().unwrap_or_default(),
    );
    let metrics = Metrics::stdout(config.metrics_namespace.clone());
    let ttl_days = config.event_ttl_days;
    let (store, visibility, metrics) = (&store, &visibility, &metrics);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let (response, report) =
            b24_consumers::redrive::handle(store, visibility, event.payload, ttl_days).await;
        metrics.emit_counts(
            "redrive",
            &[
                (names::REDRIVEN, report.redriven as f64),
                (names::REDRIVE_DUPLICATES, report.duplicates as f64),
                (names::PARKED_DROPPED, report.dropped as f64),
                (names::REDRIVE_RETRIES, report.retried as f64),
            ],
        );
        Ok::<SqsBatchResponse, std::convert::Infallible>(response)
    }))
    .await
}

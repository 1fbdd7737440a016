//! The redrive function: the `parked` queue → each parked event authenticated and applied
//! through the very same transaction the webhook would have run (see
//! `b24_consumers::redrive`); failures are reported per message.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use b24_pipeline::metrics::names;
use b24_pipeline::{InitError, Metrics};
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), InitError> {
    // Built once per execution environment, borrowed by every invocation.
    b24_pipeline::logging::init();
    b24_pipeline::logging::abort_on_panic();
    let var = |k: &'static str| std::env::var(k).map_err(|_| format!("{k} is not set"));
    let env = b24_state::AwsEnv::from_env()?;
    let store = b24_state::DynamoStore::new(
        b24_state::dynamodb_client(&env, b24_state::Timeouts::BACKGROUND),
        var("TABLE_NAME")?,
    );
    let visibility = b24_consumers::redrive::SqsVisibility::new(
        b24_pipeline::park::sqs_client(&env, b24_state::Timeouts::BACKGROUND),
        var("PARKED_QUEUE_URL")?,
    );
    let ttl_days = match std::env::var("EVENT_TTL_DAYS") {
        Ok(v) => v
            .parse::<i64>()
            .map_err(|_| "EVENT_TTL_DAYS must be a number")?,
        Err(_) => b24_state::transition::DEFAULT_EVENT_TTL_DAYS,
    };
    let metrics = Metrics::stdout(
        std::env::var("METRICS_NAMESPACE").unwrap_or_else(|_| "Bitrix24Receiver".into()),
    );
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

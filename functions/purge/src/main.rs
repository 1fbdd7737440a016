//! The purge function: the table's stream (pending purge markers only) → one bounded purge
//! step per marker and invocation (see `b24_consumers::purge`).

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::DynamoDbEventResponse;
use b24_pipeline::{InitError, Metrics};
use lambda_runtime::{service_fn, LambdaEvent};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), InitError> {
    // Built once per execution environment, borrowed by every invocation.
    b24_pipeline::logging::init();
    b24_pipeline::logging::abort_on_panic();
    let table = std::env::var("TABLE_NAME").map_err(|_| "TABLE_NAME is not set")?;
    let store = b24_state::DynamoStore::new(b24_state::client_from_env_vars()?, table);
    let metrics = Metrics::stdout(
        std::env::var("METRICS_NAMESPACE").unwrap_or_else(|_| "Bitrix24Receiver".into()),
    );
    let (store, metrics) = (&store, &metrics);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        let deadline = b24_consumers::budget_until(
            event.context.deadline,
            Duration::from_secs(3),
            Duration::from_secs(1),
        );
        let (response, report) = b24_consumers::purge::handle(store, event.payload, deadline).await;
        metrics.emit_counts(
            "purge",
            &[
                ("PurgeSteps", report.steps as f64),
                ("PurgeDeleted", report.deleted as f64),
                ("PurgesCompleted", report.completed as f64),
                ("PurgeFailures", report.failed as f64),
            ],
        );
        Ok::<DynamoDbEventResponse, std::convert::Infallible>(response)
    }))
    .await
}

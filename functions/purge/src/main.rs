//! The purge function: the table's stream (pending purge markers only) → one bounded purge
//! step per marker and invocation (see `b24_consumers::purge`).

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::DynamoDbEventResponse;
use b24_pipeline::metrics::names;
use b24_pipeline::{ConsumerConfig, InitError, Metrics};
use b24_state::Timeouts;
use lambda_runtime::{service_fn, LambdaEvent};
use std::time::Duration;

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
    let metrics = Metrics::stdout(config.metrics_namespace.clone());
    let (store, metrics) = (&store, &metrics);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        // Each step ends in time to record its cursor before the function's deadline.
        let deadline = b24_consumers::budget_until(
            event.context.deadline,
            Duration::from_secs(3),
            Duration::from_secs(1),
        );
        let (response, report) = b24_consumers::purge::handle(store, event.payload, deadline).await;
        metrics.emit_counts(
            "purge",
            &[
                (names::PURGE_STEPS, report.steps as f64),
                (names::PURGE_DELETED, report.deleted as f64),
                (names::PURGES_COMPLETED, report.completed as f64),
                (names::PURGE_FAILURES, report.failed as f64),
            ],
        );
        Ok::<DynamoDbEventResponse, std::convert::Infallible>(response)
    }))
    .await
}

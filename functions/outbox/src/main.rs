//! The outbox function: the table's stream (the record types a change can come from) → the
//! `b24.change.v1` events of every record, in order, on `changes.fifo` and, when
//! `CHANGES_EVENT_BUS` names one, an EventBridge bus; the portal changes also on
//! `PORTAL_TASKS_QUEUE_URL` for the binder (see `b24_consumers::outbox`).

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::DynamoDbEventResponse;
use b24_consumers::outbox::{self, EventBus, PortalDomains, Sinks, SqsFifo, SqsQueue, WithTasks};
use b24_pipeline::metrics::names;
use b24_pipeline::{ConsumerConfig, InitError, Metrics};
use b24_state::Timeouts;
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), InitError> {
    // Built once per execution environment, borrowed by every invocation.
    b24_pipeline::logging::init();
    b24_pipeline::logging::abort_on_panic();
    let config = ConsumerConfig::from_env(false)?;
    let queue_url = b24_pipeline::required_var("CHANGES_QUEUE_URL", " (the changes.fifo queue)")?;
    let env = b24_state::AwsEnv::from_env()?;
    let store = b24_state::DynamoStore::new(
        b24_state::dynamodb_client(&env, Timeouts::BACKGROUND),
        config.table_name.clone(),
    );
    let sqs = b24_pipeline::park::sqs_client(&env, Timeouts::BACKGROUND);
    let sinks = WithTasks {
        inner: Sinks {
            queue: SqsFifo::new(sqs.clone(), queue_url),
            bus: b24_pipeline::optional_var("CHANGES_EVENT_BUS").map(|bus| {
                EventBus::new(outbox::eventbridge_client(&env, Timeouts::BACKGROUND), bus)
            }),
        },
        // portal.* changes for the binder (events bound on install/update, vault cleared on
        // uninstall); unset: nobody talks back to Bitrix24.
        tasks: b24_pipeline::optional_var("PORTAL_TASKS_QUEUE_URL")
            .map(|url| SqsQueue::new(sqs, url)),
    };
    let domains = PortalDomains::new(store);
    let metrics = Metrics::stdout(config.metrics_namespace.clone());
    let (sinks, domains, metrics) = (&sinks, &domains, &metrics);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        let (response, report) = outbox::handle(sinks, domains, event.payload).await;
        metrics.emit_counts(
            "outbox",
            &[
                (names::CHANGES_PUBLISHED, report.published as f64),
                (names::UNREADABLE_RECORDS, report.unreadable as f64),
                (names::OUTBOX_FAILURES, report.failed as f64),
            ],
        );
        Ok::<DynamoDbEventResponse, std::convert::Infallible>(response)
    }))
    .await
}

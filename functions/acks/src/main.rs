//! The acks function: the acks queue (b24.ack.v1 from the vendor's adapter) →
//! `imconnector.send.status.delivery` in one `batch` per portal (see `b24_consumers::acks`);
//! failures are reported per message.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use b24_consumers::redrive::SqsVisibility;
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
    let queue_url = b24_pipeline::required_var("ACKS_QUEUE_URL", " (the acks queue)")?;
    let visibility = SqsVisibility::new(
        b24_pipeline::park::sqs_client(&env, Timeouts::BACKGROUND),
        queue_url,
    );
    // Without the client secret nothing can be reported: acks are dropped, counted, logged.
    let b24 = match TalkbackConfig::from_env()? {
        Some(t) => Some(Bitrix24::from_config(&t, &env, &config.table_name)?),
        None => None,
    };
    let metrics = Metrics::stdout(config.metrics_namespace.clone());
    let (visibility, b24, metrics) = (&visibility, &b24, &metrics);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let report = match b24 {
            Some(b24) => {
                let (response, report) =
                    b24_consumers::acks::handle(b24, visibility, event.payload).await;
                emit(metrics, &report);
                return Ok::<SqsBatchResponse, std::convert::Infallible>(response);
            }
            None => {
                tracing::error!(
                    acks = event.payload.records.len(),
                    "talking back is off (BITRIX24_CLIENT_SECRET_PARAMETER unset): acks dropped"
                );
                b24_consumers::acks::Report {
                    dropped: event.payload.records.len(),
                    ..Default::default()
                }
            }
        };
        emit(metrics, &report);
        Ok(SqsBatchResponse::default())
    }))
    .await
}

fn emit(metrics: &Metrics, report: &b24_consumers::acks::Report) {
    metrics.emit_counts(
        "acks",
        &[
            (names::ACKS_DELIVERED, report.delivered as f64),
            (names::ACKS_RETRIED, report.retried as f64),
            (names::ACKS_DROPPED, report.dropped as f64),
            (names::NEEDS_REINSTALL, report.needs_reinstall as f64),
        ],
    );
}

//! The purge consumer: DynamoDB stream records of pending purge markers → one bounded purge
//! step each (see `b24_state::purge`). The step writes its progress to the marker, and that
//! write is the stream record that triggers the next step, until the marker is `done`.

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use b24_state::purge::{self, Budget, Marker, PagedQuery, StepResult};
use b24_state::transition::Backend;
use std::time::Instant;

/// Records deleted at most per step (one step per invocation and marker).
pub const MAX_DELETES_PER_STEP: usize = 5_000;

/// The event source mapping's filter: only new or changed pending purge markers reach the
/// function (template.yaml repeats it; a test compares them).
pub const STREAM_FILTER: &str = r#"{"eventName":["INSERT","MODIFY"],"dynamodb":{"NewImage":{"record_type":{"S":["purge"]},"status":{"S":["pending"]}}}}"#;

/// What one invocation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Steps run.
    pub steps: usize,
    /// Records deleted.
    pub deleted: usize,
    /// Purges completed.
    pub completed: usize,
    /// Records that failed (left for a retry).
    pub failed: usize,
}

/// Runs one step for every pending purge marker in `event`, each bounded by
/// [`MAX_DELETES_PER_STEP`] and `deadline`. A failed step is reported as a batch item
/// failure (its sequence number), so the mapping retries from there.
pub async fn handle<S: Backend + PagedQuery>(
    store: &S,
    event: Event,
    deadline: Instant,
) -> (DynamoDbEventResponse, Report) {
    let mut response = DynamoDbEventResponse::default();
    let mut report = Report::default();
    for record in event.records {
        let sequence = record.change.sequence_number.clone();
        let image = serde_json::to_value(&record.change.new_image)
            .ok()
            .and_then(|v| b24_state::stream::image_to_item(&v));
        let Some(marker) = image.as_ref().and_then(Marker::from_item) else {
            // Not a purge marker: the filter should not have let it through; nothing to do.
            continue;
        };
        let budget = Budget {
            max_deletes: MAX_DELETES_PER_STEP,
            deadline,
        };
        match purge::step(store, &marker, budget).await {
            Ok(StepResult::Advanced { deleted, done }) => {
                report.steps += 1;
                report.deleted += deleted;
                report.completed += usize::from(done);
                tracing::info!(
                    member_id = %marker.member,
                    epoch = marker.epoch,
                    step = marker.step + 1,
                    deleted,
                    done,
                    "purge step"
                );
            }
            Ok(StepResult::NothingToDo) => {}
            Err(e) => {
                report.failed += 1;
                tracing::error!(
                    member_id = %marker.member,
                    epoch = marker.epoch,
                    error = %e,
                    "purge step failed; the record is retried"
                );
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = sequence;
                response.batch_item_failures.push(failure);
                // The mapping retries from the first failed record: stop here.
                break;
            }
        }
    }
    (response, report)
}

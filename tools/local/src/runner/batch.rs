//! Invoking the function with one batch and classifying the answer: the part of Lambda's event
//! source mappings that the SQS and stream sources share. Every outcome is counted and logged
//! here; what to do about it (delete, retry, bisect, give up) is each source's business.

use super::invoke::{error_summary, InvokeOutcome};
use super::response::{parse_batch_response, BatchResponse};
use super::Ctx;
use crate::LocalError;
use serde_json::{json, Value};
use std::time::Instant;

/// How an invocation of a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BatchOutcome {
    /// Every record succeeded.
    AllOk,
    /// `ReportBatchItemFailures` named these item identifiers (all in the batch, deduplicated).
    Partial(Vec<String>),
    /// The function failed, so the whole batch did.
    FunctionError {
        /// The `X-Amz-Function-Error` value.
        function_error: String,
        /// `errorType: errorMessage` of the error document, for the log.
        summary: String,
    },
    /// The batch response was unusable (why), so the whole batch failed.
    InvalidResponse(String),
}

/// Invokes `function` with the event `{"Records": records}`; with `report_batch_item_failures`
/// its result is read as a batch response, whose item identifiers `in_batch` recognises.
/// `Err` means the function could not be invoked at all (an invoke error, not an invocation).
pub(crate) async fn invoke_batch(
    ctx: &Ctx,
    function: &str,
    records: &[&Value],
    report_batch_item_failures: bool,
    in_batch: impl Fn(&str) -> bool,
) -> Result<BatchOutcome, LocalError> {
    let size = records.len();
    let payload = json!({ "Records": records }).to_string();
    let started = Instant::now();
    let outcome = match ctx.invoker.invoke(function, payload.as_bytes()).await {
        Ok(o) => o,
        Err(e) => {
            ctx.stat(|s| s.invoke_errors += 1);
            ctx.log_invocation(function, size, size, started, "invoke_error");
            return Err(e);
        }
    };
    ctx.stat(|s| s.invocations += 1);
    let body = match outcome {
        InvokeOutcome::FunctionError {
            function_error,
            payload,
        } => {
            ctx.stat(|s| s.function_errors += 1);
            ctx.log_invocation(function, size, size, started, "function_error");
            return Ok(BatchOutcome::FunctionError {
                function_error,
                summary: error_summary(&payload),
            });
        }
        InvokeOutcome::Ok(body) => body,
    };
    if !report_batch_item_failures {
        ctx.log_invocation(function, size, 0, started, "ok");
        return Ok(BatchOutcome::AllOk);
    }
    Ok(match parse_batch_response(&body, in_batch) {
        BatchResponse::AllOk => {
            ctx.log_invocation(function, size, 0, started, "ok");
            BatchOutcome::AllOk
        }
        BatchResponse::Failed(ids) => {
            let k = ids.len();
            ctx.stat(|s| s.item_failures += k as u64);
            ctx.log_invocation(function, size, k, started, "partial");
            BatchOutcome::Partial(ids)
        }
        BatchResponse::Invalid(why) => {
            ctx.stat(|s| s.function_errors += 1);
            ctx.log_invocation(function, size, size, started, "invalid_response");
            BatchOutcome::InvalidResponse(why)
        }
    })
}

//! # b24-consumers
//!
//! The handlers of the functions that consume the table's stream and the product's queues
//! (purge, redrive, outbox, and the two that talk back to Bitrix24: binder and acks).
//! Each takes the Lambda event type AWS sends (`aws_lambda_events`), does its work through the
//! state crate, and reports failures per record (`batchItemFailures`), so only what failed is
//! retried. The functions' `main.rs` only build clients and hand them to these.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acks;
pub mod binder;
pub mod outbox;
pub mod purge;
pub mod redrive;

use std::time::{Duration, Instant};

/// How long an invocation may still work: until `deadline_ms` (the Lambda deadline, Unix
/// milliseconds) minus `reserve`, at least `floor`.
pub fn budget_until(deadline_ms: u64, reserve: Duration, floor: Duration) -> Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    Instant::now() + left.saturating_sub(reserve).max(floor)
}

/// An AWS SDK error as a short reason for logs: the service's error code, or what failed in
/// transport. Never the request (it may carry message bodies).
pub fn sdk_reason<E: aws_sdk_sqs::error::ProvideErrorMetadata, R>(
    e: &aws_sdk_sqs::error::SdkError<E, R>,
) -> String {
    match e.as_service_error() {
        Some(s) => s.code().unwrap_or("service error").to_string(),
        None => match e {
            aws_sdk_sqs::error::SdkError::TimeoutError(_) => "timeout".into(),
            aws_sdk_sqs::error::SdkError::DispatchFailure(_) => "connection failed".into(),
            _ => "unreadable response".into(),
        },
    }
}

//! `b24-events changes`: reads the change feed (`changes.fifo`), prints one `b24.change.v1`
//! JSON object per line and deletes what it printed.
//!
//! A change is deleted only after its line was written and flushed, so a closed pipe or an
//! interrupted run leaves the unprinted changes on the queue (they come back after the queue's
//! visibility timeout, in order). Against `make dev` (moto on 127.0.0.1:5000) no argument and
//! no AWS credentials are needed; against AWS the standard credential chain and the queue's
//! region are used.

use crate::out_line;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use std::time::{Duration, Instant};

/// The change feed of `make dev` (stack `dev` on moto's default port).
pub const DEV_QUEUE_URL: &str = "http://127.0.0.1:5000/123456789012/dev-changes.fifo";

/// What `changes` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The queue URL.
    pub queue_url: String,
    /// Stop when no change arrived for this long (ignored with `follow`).
    pub wait: Duration,
    /// Never stop.
    pub follow: bool,
    /// Print at most this many changes.
    pub limit: Option<usize>,
}

/// Runs `changes`; `Err` is a one-line reason (or the closed-pipe marker).
pub fn run(options: &Options) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(receive(options))
}

/// Is `url` a queue on this machine (moto under `make dev`)?
fn local_endpoint(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split('/').next()?;
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .trim_matches(['[', ']']);
    matches!(host, "127.0.0.1" | "localhost" | "::1")
        .then(|| format!("{}{authority}", &url[..url.len() - rest.len()]))
}

/// The region of an AWS queue URL (`https://sqs.<region>.amazonaws.com/...`).
fn region_of(url: &str) -> Option<String> {
    let host = url.strip_prefix("https://")?.split('/').next()?;
    let region = host.strip_prefix("sqs.")?.split('.').next()?;
    (!region.is_empty()).then(|| region.to_string())
}

async fn client(queue_url: &str) -> aws_sdk_sqs::Client {
    let timeouts = aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        // Long polls take up to 20 s.
        .operation_attempt_timeout(Duration::from_secs(30))
        .build();
    if let Some(endpoint) = local_endpoint(queue_url) {
        // moto accepts any credentials; the environment's are not needed (nor sent to AWS).
        let conf = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "local", "local", None, None, "local",
            ))
            .endpoint_url(endpoint)
            .timeout_config(timeouts)
            .build();
        return aws_sdk_sqs::Client::from_conf(conf);
    }
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = region_of(queue_url) {
        loader = loader.region(aws_config::Region::new(region));
    }
    let shared = loader.load().await;
    let conf = aws_sdk_sqs::config::Builder::from(&shared)
        .timeout_config(timeouts)
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}

fn sdk_error<E: std::error::Error + 'static>(e: &aws_sdk_sqs::error::SdkError<E>) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

async fn receive(options: &Options) -> Result<(), String> {
    let sqs = client(&options.queue_url).await;
    let mut printed = 0usize;
    let mut last = Instant::now();
    loop {
        let left = options.limit.map(|l| l - printed);
        if left == Some(0) {
            return Ok(());
        }
        let wait = if options.follow {
            20
        } else {
            let remaining = options.wait.saturating_sub(last.elapsed());
            if remaining.is_zero() {
                return Ok(());
            }
            remaining.as_secs().clamp(1, 20) as i32
        };
        let out = sqs
            .receive_message()
            .queue_url(&options.queue_url)
            .max_number_of_messages(left.unwrap_or(10).min(10) as i32)
            .wait_time_seconds(wait)
            .send()
            .await
            .map_err(|e| format!("receiving from {}: {}", options.queue_url, sdk_error(&e)))?;
        let messages = out.messages();
        if messages.is_empty() {
            continue;
        }
        last = Instant::now();
        let mut done = Vec::new();
        let mut result = Ok(());
        for (i, m) in messages.iter().enumerate() {
            let body = m.body().unwrap_or_default();
            match serde_json::from_str::<serde_json::Value>(body) {
                Ok(change) => {
                    if let Err(e) = out_line(&change.to_string()) {
                        result = Err(e);
                        break;
                    }
                    printed += 1;
                    if let Some(handle) = m.receipt_handle() {
                        done.push(
                            DeleteMessageBatchRequestEntry::builder()
                                .id(i.to_string())
                                .receipt_handle(handle)
                                .build()
                                .map_err(|e| e.to_string())?,
                        );
                    }
                }
                // Not a change: left on the queue (its DLQ takes it after the receives allowed).
                Err(e) => eprintln!(
                    "warning: message {} is not JSON ({e}); left on the queue",
                    m.message_id().unwrap_or("?")
                ),
            }
        }
        if !done.is_empty() {
            let out = sqs
                .delete_message_batch()
                .queue_url(&options.queue_url)
                .set_entries(Some(done))
                .send()
                .await
                .map_err(|e| format!("deleting printed changes: {}", sdk_error(&e)))?;
            if let Some(f) = out.failed().first() {
                return Err(format!(
                    "{} printed changes were not deleted ({}); they will be received again",
                    out.failed().len(),
                    f.code()
                ));
            }
        }
        // What was printed is deleted first, also when the reader went away.
        result?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_aws_urls() {
        assert_eq!(
            local_endpoint(DEV_QUEUE_URL).as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(
            local_endpoint("http://localhost:4566/000/q.fifo").as_deref(),
            Some("http://localhost:4566")
        );
        assert_eq!(
            local_endpoint("https://sqs.eu-central-1.amazonaws.com/1/x.fifo"),
            None
        );
        // A host that merely starts with a loopback name is not local.
        assert_eq!(local_endpoint("http://127.0.0.1.evil.example/1/q"), None);
        assert_eq!(
            region_of("https://sqs.eu-central-1.amazonaws.com/1/x.fifo").as_deref(),
            Some("eu-central-1")
        );
        assert_eq!(region_of("http://127.0.0.1:5000/1/x"), None);
    }
}

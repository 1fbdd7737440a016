//! `b24-events changes`: reads the change feed (`changes.fifo`), prints one `b24.change.v1`
//! JSON object per line and deletes what it printed; `b24-events ack`: sends one
//! `b24.ack.v1` delivery ack to the acks queue.
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
/// The acks queue of `make dev`.
pub const DEV_ACKS_QUEUE_URL: &str = "http://127.0.0.1:5000/123456789012/dev-acks";

/// `b24-events ack`: the ack's fields (the ids come from the change that was delivered).
#[derive(clap::Args, Debug)]
pub struct AckArgs {
    /// The acks queue (default: $ACKS_QUEUE_URL, else make dev's queue).
    #[arg(long, value_name = "URL", env = "ACKS_QUEUE_URL", default_value = DEV_ACKS_QUEUE_URL)]
    queue_url: String,
    /// The portal (the change's member_id).
    #[arg(long)]
    member_id: String,
    /// The connector as Bitrix24 sent it (the change's connector_as_sent).
    #[arg(long)]
    connector: String,
    /// The open line.
    #[arg(long)]
    line: i64,
    /// im.chat_id of the message.
    #[arg(long)]
    chat_id: i64,
    /// im.message_id of the message.
    #[arg(long)]
    message_id: i64,
    /// The message's id in your channel (repeatable).
    #[arg(long = "external-id", required = true)]
    external_ids: Vec<String>,
    /// The chat's id in your channel (the change's message.chat.id).
    #[arg(long)]
    external_chat_id: String,
    /// When your channel took it (Unix seconds; default now).
    #[arg(long)]
    delivered_at: Option<i64>,
}

/// Validates the ack as the receiver will and sends it.
pub fn send_ack(a: &AckArgs) -> Result<(), String> {
    let ack = b24_state::acks::Ack {
        schema: b24_state::acks::SCHEMA.into(),
        member_id: a.member_id.clone(),
        connector: a.connector.clone(),
        line: a.line,
        im: b24_state::acks::AckIm {
            chat_id: a.chat_id,
            message_id: a.message_id,
        },
        message_ids: a.external_ids.clone(),
        chat_id: a.external_chat_id.clone(),
        delivered_at: a.delivered_at.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        }),
    };
    ack.validate().map_err(|e| e.to_string())?;
    let body = ack.to_json_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let id = runtime.block_on(async {
        let sqs = client(&a.queue_url).await;
        sqs.send_message()
            .queue_url(&a.queue_url)
            .message_body(&body)
            .send()
            .await
            .map_err(|e| format!("sending to {}: {}", a.queue_url, sdk_error(&e)))
            .map(|out| out.message_id.unwrap_or_default())
    })?;
    out_line(&format!("{body} {id}"))
}

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

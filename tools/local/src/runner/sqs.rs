//! The SQS event source: long-polls a queue and invokes the function with `SqsEvent` batches,
//! deleting what succeeded, as Lambda's SQS event source mapping does.

use super::batch::{invoke_batch, BatchOutcome};
use super::filter::FilterCriteria;
use super::Ctx;
use crate::LocalError;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName,
};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

/// An SQS queue as an event source (Lambda's `AWS::Lambda::EventSourceMapping` for SQS).
#[derive(Debug, Clone)]
pub struct SqsSource {
    /// Name in logs and reports (default `sqs:<queue name>`).
    pub name: String,
    /// The queue URL; or a queue name resolved with GetQueueUrl (`queue_name`).
    pub queue_url: Option<String>,
    /// The queue name, when no URL is given.
    pub queue_name: Option<String>,
    /// The function to invoke.
    pub function: String,
    /// Most messages per invocation, 1..=10000 (default 10; above 10 needs a batching window,
    /// as on AWS).
    pub batch_size: usize,
    /// `MaximumBatchingWindowInSeconds`: how long to gather a batch after the first message
    /// (default 0: one ReceiveMessage).
    pub batching_window: Duration,
    /// Long-poll wait per ReceiveMessage, 0..=20 s (default 20, as Lambda's pollers use).
    pub wait_seconds: i32,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]` (default off, as on AWS).
    pub report_batch_item_failures: bool,
    /// `FilterCriteria`: messages that match no pattern are deleted without an invocation.
    pub filters: FilterCriteria,
}

impl SqsSource {
    /// A source for the queue at `queue_url`, invoking `function`.
    pub fn new(queue_url: impl Into<String>, function: impl Into<String>) -> Self {
        let url: String = queue_url.into();
        let short = url.rsplit('/').next().unwrap_or(&url).to_string();
        SqsSource {
            name: format!("sqs:{short}"),
            queue_url: Some(url),
            queue_name: None,
            function: function.into(),
            batch_size: 10,
            batching_window: Duration::ZERO,
            wait_seconds: 20,
            report_batch_item_failures: false,
            filters: FilterCriteria::none(),
        }
    }

    /// A source for the queue named `queue_name` (resolved with GetQueueUrl at start).
    pub fn named(queue_name: impl Into<String>, function: impl Into<String>) -> Self {
        let name: String = queue_name.into();
        let mut s = SqsSource::new(String::new(), function);
        s.name = format!("sqs:{name}");
        s.queue_url = None;
        s.queue_name = Some(name);
        s
    }

    /// Sets the name used in logs and reports.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the batch size.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// Sets the batching window.
    pub fn batching_window(mut self, d: Duration) -> Self {
        self.batching_window = d;
        self
    }

    /// Sets the long-poll wait (seconds, 0..=20).
    pub fn wait_seconds(mut self, s: i32) -> Self {
        self.wait_seconds = s;
        self
    }

    /// Turns `ReportBatchItemFailures` on or off.
    pub fn report_batch_item_failures(mut self, on: bool) -> Self {
        self.report_batch_item_failures = on;
        self
    }

    /// Sets the filter criteria.
    pub fn filters(mut self, f: FilterCriteria) -> Self {
        self.filters = f;
        self
    }

    fn validate(&self) -> Result<(), LocalError> {
        let bad = |m: String| Err(LocalError::Config(format!("source {}: {m}", self.name)));
        if !(1..=10_000).contains(&self.batch_size) {
            return bad(format!(
                "batch_size {} is not in 1..=10000",
                self.batch_size
            ));
        }
        if self.batch_size > 10 && self.batching_window.is_zero() {
            return bad(
                "batch_size above 10 needs a batching window of at least 1 s (as on AWS)".into(),
            );
        }
        if self.batching_window > Duration::from_secs(300) {
            return bad("batching window above 300 s".into());
        }
        if !(0..=20).contains(&self.wait_seconds) {
            return bad(format!(
                "wait_seconds {} is not in 0..=20",
                self.wait_seconds
            ));
        }
        if self.function.is_empty() {
            return bad("no function".into());
        }
        Ok(())
    }

    pub(crate) async fn prepare(self, ctx: &Ctx) -> Result<SqsTask, LocalError> {
        self.validate()?;
        let sqs = &ctx.clients.sqs;
        let url = match (&self.queue_url, &self.queue_name) {
            (Some(u), _) if !u.is_empty() => u.clone(),
            (_, Some(n)) => sqs
                .get_queue_url()
                .queue_name(n)
                .send()
                .await
                .map_err(|e| LocalError::aws("sqs:GetQueueUrl", e))?
                .queue_url
                .ok_or_else(|| LocalError::Config(format!("queue {n} has no URL")))?,
            _ => {
                return Err(LocalError::Config(format!(
                    "source {}: give queue_url or queue_name",
                    self.name
                )))
            }
        };
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| LocalError::aws("sqs:GetQueueAttributes", e))?;
        let arn = attrs
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or_else(|| LocalError::Config(format!("queue {url} reports no QueueArn")))?;
        let region = arn
            .split(':')
            .nth(3)
            .filter(|r| !r.is_empty())
            .map_or_else(|| ctx.clients.region.clone(), str::to_string);
        Ok(SqsTask {
            src: self,
            url,
            arn,
            region,
        })
    }
}

pub(crate) struct SqsTask {
    src: SqsSource,
    url: String,
    arn: String,
    region: String,
}

impl SqsTask {
    pub(crate) async fn run(self, ctx: Ctx) {
        let mut failures_in_a_row = 0u32;
        while !ctx.stopping() {
            let msgs = match self.receive_batch(&ctx).await {
                Ok(m) => {
                    failures_in_a_row = 0;
                    m
                }
                Err(e) => {
                    failures_in_a_row += 1;
                    if failures_in_a_row <= 3 || failures_in_a_row.is_multiple_of(30) {
                        ctx.note(format!("receive failed (retrying): {e}"));
                    }
                    ctx.sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if msgs.is_empty() {
                if self.src.wait_seconds == 0 {
                    ctx.sleep(Duration::from_millis(200)).await;
                }
                continue;
            }
            let _busy = ctx.activity.busy();
            self.process(&ctx, msgs).await;
        }
    }

    /// One batch: up to `batch_size` messages, gathered for up to the batching window.
    async fn receive_batch(&self, ctx: &Ctx) -> Result<Vec<Message>, LocalError> {
        let mut out: Vec<Message> = Vec::new();
        let mut window_end: Option<Instant> = None;
        loop {
            let want = self.src.batch_size.saturating_sub(out.len()).clamp(1, 10);
            let wait = match window_end {
                None => self.src.wait_seconds,
                Some(end) => {
                    let left = end.saturating_duration_since(Instant::now()).as_secs();
                    i32::try_from(left.min(20)).unwrap_or(20)
                }
            };
            let call = ctx
                .clients
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(i32::try_from(want).unwrap_or(10))
                .wait_time_seconds(wait)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send();
            let mut stop = ctx.shutdown.clone();
            let resp = tokio::select! {
                r = call => r.map_err(|e| LocalError::aws("sqs:ReceiveMessage", e))?,
                _ = stop.wait_for(|s| *s) => return Ok(out),
            };
            let got = resp.messages.unwrap_or_default();
            let empty = got.is_empty();
            if !got.is_empty() && window_end.is_none() {
                window_end = Some(Instant::now() + self.src.batching_window);
            }
            out.extend(got);
            let Some(end) = window_end else {
                return Ok(out);
            };
            if out.len() >= self.src.batch_size
                || self.src.batching_window.is_zero()
                || Instant::now() >= end
                || (empty && wait == 0)
            {
                return Ok(out);
            }
        }
    }

    async fn process(&self, ctx: &Ctx, msgs: Vec<Message>) {
        let n = msgs.len() as u64;
        ctx.stat(|s| s.records_received += n);
        let mut matched: Vec<(Message, Value)> = Vec::new();
        let mut filtered: Vec<Message> = Vec::new();
        for m in msgs {
            let record = sqs_record(&m, &self.arn, &self.region);
            if self.src.filters.is_empty() || self.src.filters.matches(&filter_view(&record)) {
                matched.push((m, record));
            } else {
                filtered.push(m);
            }
        }
        if !filtered.is_empty() {
            let k = filtered.len() as u64;
            ctx.stat(|s| s.records_filtered += k);
            self.delete(ctx, filtered.iter()).await;
        }
        if matched.is_empty() {
            return;
        }
        let records: Vec<&Value> = matched.iter().map(|(_, r)| r).collect();
        let outcome = invoke_batch(
            ctx,
            &self.src.function,
            &records,
            self.src.report_batch_item_failures,
            |id| {
                matched
                    .iter()
                    .any(|(m, _)| m.message_id.as_deref() == Some(id))
            },
        )
        .await;
        let all = matched.iter().map(|(m, _)| m);
        match outcome {
            Err(e) => {
                ctx.note(format!(
                    "{e}; the messages reappear after their visibility timeout"
                ));
                ctx.sleep(Duration::from_secs(1)).await;
            }
            Ok(BatchOutcome::AllOk) => self.delete(ctx, all).await,
            Ok(BatchOutcome::Partial(failed)) => {
                let ok = all.filter(|m| {
                    !failed
                        .iter()
                        .any(|f| Some(f.as_str()) == m.message_id.as_deref())
                });
                self.delete(ctx, ok).await;
            }
            Ok(BatchOutcome::FunctionError { summary, .. }) => {
                ctx.note(format!("function error {summary}: nothing deleted"));
            }
            Ok(BatchOutcome::InvalidResponse(why)) => {
                ctx.note(format!("{why}: the whole batch failed, nothing deleted"));
            }
        }
    }

    async fn delete<'a>(&self, ctx: &Ctx, msgs: impl Iterator<Item = &'a Message>) {
        let handles: Vec<&str> = msgs.filter_map(|m| m.receipt_handle.as_deref()).collect();
        for chunk in handles.chunks(10) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, h)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(*h)
                        .build()
                        .ok()
                })
                .collect();
            let res = ctx
                .clients
                .sqs
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await;
            match res {
                Ok(out) => {
                    let ok = out.successful.len() as u64;
                    ctx.stat(|s| s.deleted += ok);
                    for f in out.failed {
                        ctx.note(format!("delete failed: {} {:?}", f.code, f.message));
                    }
                }
                Err(e) => ctx.note(format!("{}", LocalError::aws("sqs:DeleteMessageBatch", e))),
            }
        }
    }
}

/// The record Lambda filters on: the body as JSON when it is a JSON object or list.
fn filter_view(record: &Value) -> Value {
    let mut view = record.clone();
    if let Some(body) = record.get("body").and_then(Value::as_str) {
        if let Ok(parsed @ (Value::Object(_) | Value::Array(_))) = serde_json::from_str(body) {
            view["body"] = parsed;
        }
    }
    view
}

/// System attributes in the order Lambda's documented events list them; others follow sorted.
const ATTRIBUTE_ORDER: [&str; 9] = [
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "SenderId",
    "MessageDeduplicationId",
    "ApproximateFirstReceiveTimestamp",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
];

/// One record of the `SqsEvent` Lambda sends.
///
/// Hand-built rather than serialized from `aws_lambda_events::sqs::SqsMessage`: that type
/// writes `"md5OfMessageAttributes": null` and `"stringValue": null`/`"binaryValue": null`
/// where AWS omits the keys, and its `HashMap`s lose AWS's key order.
pub(crate) fn sqs_record(m: &Message, queue_arn: &str, region: &str) -> Value {
    let mut attributes = Map::new();
    if let Some(attrs) = &m.attributes {
        let mut rest: Vec<(&str, &String)> = Vec::new();
        for (k, v) in attrs {
            if !ATTRIBUTE_ORDER.contains(&k.as_str()) {
                rest.push((k.as_str(), v));
            }
        }
        for name in ATTRIBUTE_ORDER {
            if let Some(v) = attrs.get(&MessageSystemAttributeName::from(name)) {
                attributes.insert(name.to_string(), Value::String(v.clone()));
            }
        }
        rest.sort();
        for (k, v) in rest {
            attributes.insert(k.to_string(), Value::String(v.clone()));
        }
    }
    let mut message_attributes = Map::new();
    if let Some(ma) = &m.message_attributes {
        let mut names: Vec<&String> = ma.keys().collect();
        names.sort();
        for name in names {
            if let Some(v) = ma.get(name) {
                message_attributes.insert(name.clone(), message_attribute(v));
            }
        }
    }
    let mut r = Map::new();
    r.insert(
        "messageId".into(),
        json!(m.message_id.clone().unwrap_or_default()),
    );
    r.insert(
        "receiptHandle".into(),
        json!(m.receipt_handle.clone().unwrap_or_default()),
    );
    r.insert("body".into(), json!(m.body.clone().unwrap_or_default()));
    r.insert("attributes".into(), Value::Object(attributes));
    r.insert(
        "messageAttributes".into(),
        Value::Object(message_attributes),
    );
    if let Some(md5) = &m.md5_of_message_attributes {
        r.insert("md5OfMessageAttributes".into(), json!(md5));
    }
    r.insert(
        "md5OfBody".into(),
        json!(m.md5_of_body.clone().unwrap_or_default()),
    );
    r.insert("eventSource".into(), json!("aws:sqs"));
    r.insert("eventSourceARN".into(), json!(queue_arn));
    r.insert("awsRegion".into(), json!(region));
    Value::Object(r)
}

fn message_attribute(v: &MessageAttributeValue) -> Value {
    let b64 = |b: &aws_sdk_sqs::primitives::Blob| {
        base64::engine::general_purpose::STANDARD.encode(b.as_ref())
    };
    let mut a = Map::new();
    if let Some(s) = &v.string_value {
        a.insert("stringValue".into(), json!(s));
    }
    if let Some(b) = &v.binary_value {
        a.insert("binaryValue".into(), json!(b64(b)));
    }
    a.insert(
        "stringListValues".into(),
        json!(v.string_list_values.clone().unwrap_or_default()),
    );
    a.insert(
        "binaryListValues".into(),
        Value::Array(
            v.binary_list_values
                .iter()
                .flatten()
                .map(|b| Value::String(b64(b)))
                .collect(),
        ),
    );
    a.insert("dataType".into(), json!(v.data_type));
    Value::Object(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::primitives::Blob;

    #[test]
    fn record_has_aws_field_order_and_omits_absent_keys() {
        let m = Message::builder()
            .message_id("059f36b4-87a3-44ab-83d2-661975830a7d")
            .receipt_handle("AQEB")
            .body("test")
            .md5_of_body("098f6bcd4621d373cade4e832627b4f6")
            .attributes(
                MessageSystemAttributeName::SenderId,
                "AIDAIENQZJOLO23YVJ4VO",
            )
            .attributes(
                MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
                "1545082649185",
            )
            .attributes(MessageSystemAttributeName::SentTimestamp, "1545082649183")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "1")
            .message_attributes(
                "bin",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(b"1100".to_vec()))
                    .build()
                    .expect("attribute"),
            )
            .build();
        let r = sqs_record(
            &m,
            "arn:aws:sqs:us-east-2:123456789012:my-queue",
            "us-east-2",
        );
        let keys: Vec<&String> = r.as_object().expect("object").keys().collect();
        assert_eq!(
            keys,
            [
                "messageId",
                "receiptHandle",
                "body",
                "attributes",
                "messageAttributes",
                "md5OfBody",
                "eventSource",
                "eventSourceARN",
                "awsRegion"
            ]
        );
        let attr_keys: Vec<&String> = r["attributes"].as_object().expect("attrs").keys().collect();
        assert_eq!(
            attr_keys,
            [
                "ApproximateReceiveCount",
                "SentTimestamp",
                "SenderId",
                "ApproximateFirstReceiveTimestamp"
            ]
        );
        assert_eq!(
            r["messageAttributes"]["bin"],
            json!({"binaryValue": "MTEwMA==", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"})
        );
    }

    #[test]
    fn filters_see_json_bodies_as_json() {
        let r = json!({"body": "{\"kind\":\"a\"}"});
        assert_eq!(filter_view(&r)["body"]["kind"], "a");
        let plain = json!({"body": "hello"});
        assert_eq!(filter_view(&plain)["body"], "hello");
    }
}

//! The runner's JSON config file (`b24-local run --config runner.json`).
//!
//! ```json
//! {
//!   "invoke_url": "http://127.0.0.1:9000",
//!   "sources": [
//!     {"kind": "sqs", "queue_url": "${JOBS_QUEUE_URL}", "function": "b24-fn-worker",
//!      "batch_size": 10, "report_batch_item_failures": true},
//!     {"kind": "stream", "table": "bitrix24", "function": "b24-fn-projector",
//!      "starting_position": "TRIM_HORIZON", "batch_size": 100, "max_retries": 2, "bisect": true,
//!      "on_failure_queue_url": "${DLQ_URL}",
//!      "filters": [{"dynamodb": {"NewImage": {"record_type": {"S": ["message"]}}}}]}
//!   ]
//! }
//! ```
//!
//! `${NAME}` in any string value is replaced by the environment variable `NAME` (an unset
//! variable is an error). Unknown keys are errors, so a typo never goes unnoticed.

use super::filter::FilterCriteria;
use super::sqs::SqsSource;
use super::stream::{StartingPosition, StreamSource};
use super::Source;
use crate::LocalError;
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// The whole file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunnerConfig {
    /// Base URL of the Invoke API (default `http://127.0.0.1:9000`, `cargo lambda watch`'s).
    #[serde(default)]
    pub invoke_url: Option<String>,
    /// Per-invocation timeout in seconds (default 900).
    #[serde(default)]
    pub invoke_timeout_seconds: Option<u64>,
    /// Region for the clients (default `AWS_REGION`).
    #[serde(default)]
    pub region: Option<String>,
    /// SQS endpoint (default `AWS_ENDPOINT_URL_SQS`, else `AWS_ENDPOINT_URL`).
    #[serde(default)]
    pub sqs_endpoint: Option<String>,
    /// DynamoDB (and Streams) endpoint (default `AWS_ENDPOINT_URL_DYNAMODB`, else
    /// `AWS_ENDPOINT_URL`).
    #[serde(default)]
    pub dynamodb_endpoint: Option<String>,
    /// The event sources.
    pub sources: Vec<SourceConfig>,
}

/// One source in the file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    /// `"kind": "sqs"`.
    Sqs(SqsConfig),
    /// `"kind": "stream"`.
    Stream(StreamConfig),
}

/// An SQS source (see [`SqsSource`] for the meaning and defaults).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SqsConfig {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    queue_url: Option<String>,
    #[serde(default)]
    queue_name: Option<String>,
    function: String,
    #[serde(default)]
    batch_size: Option<usize>,
    #[serde(default)]
    batching_window_seconds: Option<u64>,
    #[serde(default)]
    wait_seconds: Option<i32>,
    #[serde(default)]
    report_batch_item_failures: Option<bool>,
    #[serde(default)]
    filters: Option<Value>,
    #[serde(default)]
    enabled: Option<bool>,
}

/// A DynamoDB stream source (see [`StreamSource`] for the meaning and defaults).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    stream_arn: Option<String>,
    function: String,
    #[serde(default)]
    batch_size: Option<usize>,
    #[serde(default)]
    starting_position: Option<String>,
    #[serde(default)]
    filters: Option<Value>,
    /// -1 (or absent): unbounded, as AWS.
    #[serde(default)]
    max_retries: Option<i64>,
    #[serde(default)]
    bisect: Option<bool>,
    #[serde(default)]
    on_failure_queue_url: Option<String>,
    /// -1 (or absent): no limit, as AWS.
    #[serde(default)]
    max_record_age_seconds: Option<i64>,
    #[serde(default)]
    report_batch_item_failures: Option<bool>,
    #[serde(default)]
    poll_interval_ms: Option<u64>,
    /// Keeps the shards' positions between runs (see `StreamSource::checkpoint_file`).
    #[serde(default)]
    checkpoint_file: Option<String>,
    #[serde(default)]
    batching_window_seconds: Option<u64>,
    #[serde(default)]
    function_arn: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
}

impl RunnerConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, LocalError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| LocalError::io(format!("reading {}", path.display()), e))?;
        Self::parse(&text).map_err(|e| match e {
            LocalError::Config(m) => LocalError::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses config text, expanding `${NAME}` in string values.
    pub fn parse(text: &str) -> Result<Self, LocalError> {
        let mut v: Value =
            serde_json::from_str(text).map_err(|e| LocalError::Config(e.to_string()))?;
        expand_env(&mut v)?;
        serde_json::from_value(v).map_err(|e| LocalError::Config(e.to_string()))
    }

    /// The enabled sources, checked.
    pub fn to_sources(&self) -> Result<Vec<Source>, LocalError> {
        let mut out = Vec::new();
        for s in &self.sources {
            match s {
                SourceConfig::Sqs(c) if c.enabled != Some(false) => out.push(c.to_source()?),
                SourceConfig::Stream(c) if c.enabled != Some(false) => out.push(c.to_source()?),
                _ => {}
            }
        }
        Ok(out)
    }
}

impl SqsConfig {
    fn to_source(&self) -> Result<Source, LocalError> {
        let mut s = match (&self.queue_url, &self.queue_name) {
            (Some(url), None) => SqsSource::new(url, &self.function),
            (None, Some(name)) => SqsSource::named(name, &self.function),
            _ => {
                return Err(LocalError::Config(
                    "an sqs source needs exactly one of queue_url and queue_name".into(),
                ))
            }
        };
        if let Some(n) = &self.name {
            s.name = n.clone();
        }
        if let Some(b) = self.batch_size {
            s.batch_size = b;
        }
        if let Some(w) = self.batching_window_seconds {
            s.batching_window = Duration::from_secs(w);
        }
        if let Some(w) = self.wait_seconds {
            s.wait_seconds = w;
        }
        s.report_batch_item_failures = self.report_batch_item_failures.unwrap_or(false);
        if let Some(f) = &self.filters {
            s.filters = FilterCriteria::from_json(f)?;
        }
        Ok(Source::Sqs(s))
    }
}

impl StreamConfig {
    fn to_source(&self) -> Result<Source, LocalError> {
        let mut s = match (&self.table, &self.stream_arn) {
            (Some(t), None) => StreamSource::table(t, &self.function),
            (None, Some(a)) => StreamSource::arn(a, &self.function),
            _ => {
                return Err(LocalError::Config(
                    "a stream source needs exactly one of table and stream_arn".into(),
                ))
            }
        };
        if let Some(n) = &self.name {
            s.name = n.clone();
        }
        if let Some(b) = self.batch_size {
            s.batch_size = b;
        }
        if let Some(p) = &self.starting_position {
            s.starting_position = p.parse::<StartingPosition>()?;
        }
        if let Some(f) = &self.filters {
            s.filters = FilterCriteria::from_json(f)?;
        }
        s.max_retries = match self.max_retries {
            None | Some(-1) => None,
            Some(n) => Some(u32::try_from(n).map_err(|_| {
                LocalError::Config(format!("max_retries {n}: use -1 (unbounded) or 0..=10000"))
            })?),
        };
        s.bisect = self.bisect.unwrap_or(false);
        s.on_failure_queue_url = self.on_failure_queue_url.clone();
        s.max_record_age = match self.max_record_age_seconds {
            None | Some(-1) => None,
            Some(n) => Some(Duration::from_secs(u64::try_from(n).map_err(|_| {
                LocalError::Config(format!(
                    "max_record_age_seconds {n}: use -1 (no limit) or a positive number"
                ))
            })?)),
        };
        s.report_batch_item_failures = self.report_batch_item_failures.unwrap_or(false);
        if let Some(ms) = self.poll_interval_ms {
            s.poll_interval = Duration::from_millis(ms);
        }
        if let Some(f) = &self.checkpoint_file {
            s.checkpoint_file = Some(f.into());
        }
        if let Some(w) = self.batching_window_seconds {
            s.batching_window = Duration::from_secs(w);
        }
        s.function_arn = self.function_arn.clone();
        Ok(Source::Stream(s))
    }
}

/// Replaces `${NAME}` in every string with the environment variable `NAME`.
fn expand_env(v: &mut Value) -> Result<(), LocalError> {
    match v {
        Value::String(s) if s.contains("${") => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let end = after
                    .find('}')
                    .ok_or_else(|| LocalError::Config(format!("unclosed ${{ in {s:?}")))?;
                let name = &after[..end];
                let val = std::env::var(name).map_err(|_| {
                    LocalError::Config(format!(
                        "environment variable {name} (used in the config) is not set"
                    ))
                })?;
                out.push_str(&val);
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Array(items) => items.iter_mut().try_for_each(expand_env)?,
        Value::Object(map) => map.values_mut().try_for_each(expand_env)?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        std::env::set_var(
            "B24_LOCAL_TEST_Q",
            "http://127.0.0.1:5000/000000000000/jobs",
        );
        let text = r#"{
          "invoke_url": "http://127.0.0.1:9000",
          "sources": [
            {"kind": "sqs", "queue_url": "${B24_LOCAL_TEST_Q}", "function": "worker",
             "batch_size": 5, "report_batch_item_failures": true,
             "filters": ["{\"body\": {\"kind\": [\"job\"]}}"]},
            {"kind": "stream", "table": "t", "function": "projector", "starting_position": "latest",
             "max_retries": 2, "bisect": true, "on_failure_queue_url": "http://q",
             "max_record_age_seconds": -1, "poll_interval_ms": 100,
             "filters": [{"dynamodb": {"NewImage": {"record_type": {"S": ["message"]}}}}]},
            {"kind": "stream", "table": "off", "function": "f", "enabled": false}
          ]
        }"#;
        let cfg = RunnerConfig::parse(text).expect("config");
        let sources = cfg.to_sources().expect("sources");
        assert_eq!(sources.len(), 2);
        let Source::Sqs(q) = &sources[0] else {
            panic!("sqs first")
        };
        assert_eq!(
            q.queue_url.as_deref(),
            Some("http://127.0.0.1:5000/000000000000/jobs")
        );
        assert_eq!(q.name, "sqs:jobs");
        assert_eq!(q.batch_size, 5);
        assert!(q.report_batch_item_failures);
        assert_eq!(q.filters.len(), 1);
        let Source::Stream(s) = &sources[1] else {
            panic!("stream second")
        };
        assert_eq!(s.starting_position, StartingPosition::Latest);
        assert_eq!(s.max_retries, Some(2));
        assert!(s.bisect);
        assert_eq!(s.max_record_age, None);
        assert_eq!(s.poll_interval, Duration::from_millis(100));
    }

    #[test]
    fn rejects_typos_and_bad_values() {
        for bad in [
            r#"{"sources": [{"kind": "sqs", "queue_url": "u", "function": "f", "batchsize": 1}]}"#,
            r#"{"sources": [{"kind": "kinesis", "function": "f"}]}"#,
            r#"{"sources": [], "invoke": "x"}"#,
            r#"{"sources": [{"kind": "sqs", "function": "f"}]}"#,
            r#"{"sources": [{"kind": "stream", "table": "t", "function": "f", "max_retries": -2}]}"#,
            r#"{"sources": [{"kind": "stream", "table": "t", "function": "f", "starting_position": "AT_TIMESTAMP"}]}"#,
            r#"{"sources": [{"kind": "sqs", "queue_url": "${B24_LOCAL_UNSET_VAR}", "function": "f"}]}"#,
        ] {
            let r = RunnerConfig::parse(bad).and_then(|c| c.to_sources());
            assert!(r.is_err(), "{bad} should be rejected");
        }
    }
}

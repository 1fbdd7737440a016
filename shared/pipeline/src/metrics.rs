//! CloudWatch metrics in Embedded Metric Format (EMF): one JSON line per request on stdout,
//! which CloudWatch Logs turns into metrics with no API call and no extra latency.
//!
//! Written by hand (about 100 lines) rather than with a metrics crate: we emit exactly one
//! record per request (or per consumer invocation) with fixed dimension sets, need no global
//! recorder or background flushing (Lambda may freeze the process right after the answer), and
//! tests capture the lines through an injectable sink.

use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Metric names, as the template's alarms and dashboard use them.
pub mod names {
    /// Every request (dimension `Family`).
    pub const REQUESTS: &str = "Requests";
    /// Requests answered 401.
    pub const AUTH_FAILURES: &str = "AuthFailures";
    /// Requests answered 400/413/415/422 (input that does not decode or does not belong here).
    pub const DECODE_FAILURES: &str = "DecodeFailures";
    /// Events seen before.
    pub const DUPLICATES: &str = "Duplicates";
    /// Events accepted but superseded by newer or terminal facts.
    pub const STALE_EVENTS: &str = "StaleEvents";
    /// Requests answered 503: storage and the parked queue were both unavailable.
    pub const STORAGE_ERRORS: &str = "StorageErrors";
    /// Requests parked (202): storage could not take the event, the redrive will.
    pub const PARKED: &str = "Parked";
    /// Handling time in milliseconds.
    pub const LATENCY: &str = "Latency";
    /// Events by `Family`, `Event` and `Outcome`.
    pub const EVENTS: &str = "Events";

    /// Consumers (dimension `Function`): purge steps run.
    pub const PURGE_STEPS: &str = "PurgeSteps";
    /// Records deleted by purges.
    pub const PURGE_DELETED: &str = "PurgeDeleted";
    /// Purges completed.
    pub const PURGES_COMPLETED: &str = "PurgesCompleted";
    /// Purge steps that failed (retried by the event source mapping).
    pub const PURGE_FAILURES: &str = "PurgeFailures";

    /// Parked events applied by the redrive (dimension `Function=redrive`).
    pub const REDRIVEN: &str = "Redriven";
    /// Of those, duplicates: they had committed at the webhook after all.
    pub const REDRIVE_DUPLICATES: &str = "RedriveDuplicates";
    /// Parked events dropped for good (unknown portal, revoked token, unverifiable, malformed).
    pub const PARKED_DROPPED: &str = "ParkedDropped";
    /// Parked events left on the queue for a later attempt (storage still unavailable).
    pub const REDRIVE_RETRIES: &str = "RedriveRetries";

    /// Change events published by the outbox (dimension `Function=outbox`).
    pub const CHANGES_PUBLISHED: &str = "ChangesPublished";
    /// Stream records the outbox could not read (nothing published for them).
    pub const UNREADABLE_RECORDS: &str = "UnreadableRecords";
    /// Outbox invocations that left a record for a retry (the queue or bus refused).
    pub const OUTBOX_FAILURES: &str = "OutboxFailures";

    /// Portals whose events the binder bound (dimension `Function=binder`).
    pub const PORTALS_BOUND: &str = "PortalsBound";
    /// Portal tasks left for a retry (Bitrix24 or the vault unavailable, rate limited).
    pub const BINDER_RETRIES: &str = "BinderRetries";
    /// Vaults cleared after an uninstall.
    pub const VAULTS_CLEARED: &str = "VaultsCleared";
    /// Portals whose refresh token was refused (`invalid_grant`): they need a reinstall
    /// (dimension `Function`, binder or acks).
    pub const NEEDS_REINSTALL: &str = "NeedsReinstall";
    /// Delivery acks reported to Bitrix24 (dimension `Function=acks`).
    pub const ACKS_DELIVERED: &str = "AcksDelivered";
    /// Acks left on the queue for a later attempt (rate limit, Bitrix24 unavailable).
    pub const ACKS_RETRIED: &str = "AcksRetried";
    /// Acks dropped for good (invalid, unknown or uninstalled portal, refused by Bitrix24).
    pub const ACKS_DROPPED: &str = "AcksDropped";

    /// Every metric a consumer function emits, with dimension `Function`.
    pub const CONSUMER_METRICS: &[&str] = &[
        PURGE_STEPS,
        PURGE_DELETED,
        PURGES_COMPLETED,
        PURGE_FAILURES,
        REDRIVEN,
        REDRIVE_DUPLICATES,
        PARKED_DROPPED,
        REDRIVE_RETRIES,
        CHANGES_PUBLISHED,
        UNREADABLE_RECORDS,
        OUTBOX_FAILURES,
        PORTALS_BOUND,
        BINDER_RETRIES,
        VAULTS_CLEARED,
        NEEDS_REINSTALL,
        ACKS_DELIVERED,
        ACKS_RETRIED,
        ACKS_DROPPED,
    ];
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Where EMF lines go: stdout in Lambda, a buffer in tests.
pub type Sink = Arc<Mutex<dyn Write + Send>>;

/// Emits one EMF record per request.
#[derive(Clone)]
pub struct Metrics {
    namespace: String,
    sink: Sink,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// What one request contributes to the metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestMetrics {
    /// `messages`, `dialogs`, `connector` or `app`.
    pub family: &'static str,
    /// The event code, or `unknown` when the body did not decode.
    pub event: String,
    /// `applied`, `duplicate`, `stale` or `rejected`.
    pub outcome: &'static str,
    /// The HTTP status answered.
    pub status: u16,
    /// What the answer counts as (from [`crate::Answer::flags`]).
    pub flags: crate::answer::Flags,
    /// Handling time.
    pub latency_ms: f64,
}

impl Metrics {
    /// Metrics to stdout under `namespace`.
    pub fn stdout(namespace: impl Into<String>) -> Self {
        Metrics::with_sink(namespace, Arc::new(Mutex::new(std::io::stdout())))
    }

    /// Metrics to any writer (tests).
    pub fn with_sink(namespace: impl Into<String>, sink: Sink) -> Self {
        Metrics {
            namespace: namespace.into(),
            sink,
        }
    }

    /// The EMF record of one request.
    pub fn record(&self, m: &RequestMetrics, timestamp_ms: u128) -> Value {
        let flag = |b: bool| if b { 1 } else { 0 };
        let f = m.flags;
        json!({
            "_aws": {
                "Timestamp": timestamp_ms as u64,
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [["Family"]],
                        "Metrics": [
                            {"Name": names::REQUESTS, "Unit": "Count"},
                            {"Name": names::AUTH_FAILURES, "Unit": "Count"},
                            {"Name": names::DECODE_FAILURES, "Unit": "Count"},
                            {"Name": names::DUPLICATES, "Unit": "Count"},
                            {"Name": names::STALE_EVENTS, "Unit": "Count"},
                            {"Name": names::STORAGE_ERRORS, "Unit": "Count"},
                            {"Name": names::PARKED, "Unit": "Count"},
                            {"Name": names::LATENCY, "Unit": "Milliseconds"}
                        ]
                    },
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [["Family", "Event", "Outcome"]],
                        "Metrics": [{"Name": names::EVENTS, "Unit": "Count"}]
                    }
                ]
            },
            "Family": m.family,
            "Event": m.event,
            "Outcome": m.outcome,
            "Status": m.status,
            names::REQUESTS: 1,
            names::AUTH_FAILURES: flag(f.auth_failure),
            names::DECODE_FAILURES: flag(f.decode_failure),
            names::DUPLICATES: flag(f.duplicate),
            names::STALE_EVENTS: flag(f.stale),
            names::STORAGE_ERRORS: flag(f.storage_error),
            names::PARKED: flag(f.parked),
            names::LATENCY: m.latency_ms,
            names::EVENTS: 1,
        })
    }

    /// Writes one EMF record of counters for a consumer function (dimension `Function`).
    pub fn emit_counts(&self, function: &str, counts: &[(&str, f64)]) {
        let directives: Vec<Value> = counts
            .iter()
            .map(|(name, _)| json!({"Name": name, "Unit": "Count"}))
            .collect();
        let mut record = json!({
            "_aws": {
                "Timestamp": now_ms() as u64,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [["Function"]],
                    "Metrics": directives
                }]
            },
            "Function": function,
        });
        for (name, value) in counts {
            record[*name] = json!(value);
        }
        self.write_line(&record.to_string());
    }

    fn write_line(&self, line: &str) {
        if let Ok(mut w) = self.sink.lock() {
            let _ = writeln!(w, "{line}");
            let _ = w.flush();
        }
    }

    /// Writes the record of one request as one line. A failing sink never fails the request.
    pub fn emit(&self, m: &RequestMetrics) {
        let line = self.record(m, now_ms()).to_string();
        self.write_line(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_is_valid_emf() {
        let m = Metrics::with_sink("NS", Arc::new(Mutex::new(Vec::new())));
        let r = m.record(
            &RequestMetrics {
                family: "messages",
                event: "ONIMCONNECTORMESSAGEADD".into(),
                outcome: "duplicate",
                status: 200,
                flags: crate::answer::Flags {
                    duplicate: true,
                    ..Default::default()
                },
                latency_ms: 3.5,
            },
            1,
        );
        // Every metric named in a directive is a top-level number; every dimension a string.
        for d in r["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
            for metric in d["Metrics"].as_array().unwrap() {
                assert!(r[metric["Name"].as_str().unwrap()].is_number());
            }
            for set in d["Dimensions"].as_array().unwrap() {
                for dim in set.as_array().unwrap() {
                    assert!(r[dim.as_str().unwrap()].is_string());
                }
            }
        }
        assert_eq!(r["Duplicates"], 1);
        assert_eq!(r["AuthFailures"], 0);
    }
}

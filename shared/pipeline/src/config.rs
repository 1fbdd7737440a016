//! Configuration, read from the environment once at start-up.
//!
//! A missing or malformed value fails at start-up with a message naming the variable, never on
//! the first request.

use b24_events::{Family, Limits};
use b24_state::transition::DEFAULT_EVENT_TTL_DAYS;
use b24_state::DEFAULT_PORTAL_CACHE_ENTRIES;
use std::time::Duration;

/// Everything a function needs to know, read once from the environment.
#[derive(Clone, Debug)]
pub struct Config {
    /// The family this function serves.
    pub family: Family,
    /// The DynamoDB table (`TABLE_NAME`, required).
    pub table_name: String,
    /// CloudWatch namespace of the EMF metrics (`METRICS_NAMESPACE`, default `Bitrix24Receiver`).
    pub metrics_namespace: String,
    /// Largest accepted body after base64 decoding (`MAX_BODY_BYTES`, default 1 MiB).
    pub max_body_bytes: usize,
    /// How long a portal record is served from memory (`PORTAL_CACHE_TTL_SECONDS`, default 30).
    pub portal_cache_ttl: Duration,
    /// How many installed portals are kept in memory at most (`PORTAL_CACHE_ENTRIES`, default
    /// 4096; least recently used evicted first).
    pub portal_cache_entries: usize,
    /// How long event records are kept (`EVENT_TTL_DAYS`, default 30).
    pub event_ttl_days: i64,
    /// Settings of the `app.info` verifier used on install/update token changes.
    pub verifier: VerifierConfig,
    /// The SQS queue events are parked on when storage cannot take them (`PARKED_QUEUE_URL`,
    /// required).
    pub parked_queue_url: String,
}

/// Settings of the install verifier.
#[derive(Clone, Debug)]
pub struct VerifierConfig {
    /// The application's client id (`BITRIX24_CLIENT_ID`). Without it no install that changes
    /// or restores a portal's token can be verified, so such installs are refused.
    pub client_id: Option<String>,
    /// Allows plain HTTP and loopback/private endpoints — for local tests only
    /// (`VERIFIER_ALLOW_INSECURE`, default `false`).
    pub allow_insecure: bool,
    /// Connect + request timeout (`VERIFIER_TIMEOUT_MS`, default 3000).
    pub timeout: Duration,
    /// Largest `app.info` answer read, in bytes.
    pub max_response_bytes: usize,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            client_id: None,
            allow_insecure: false,
            timeout: Duration::from_millis(3000),
            max_response_bytes: 64 * 1024,
        }
    }
}

/// A configuration value that is missing or does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {variable}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Reads trimmed, non-empty environment values and validates them, naming the variable.
struct Vars<F>(F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    fn get(&self, k: &str) -> Option<String> {
        (self.0)(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, k: &'static str, why: &str) -> Result<String, ConfigError> {
        self.get(k).ok_or_else(|| ConfigError {
            variable: k,
            reason: format!("is required{why}"),
        })
    }

    fn number(
        &self,
        k: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(ConfigError {
                    variable: k,
                    reason: format!("must be a whole number from {min} to {max}"),
                }),
            },
        }
    }

    fn flag(&self, k: &'static str) -> Result<bool, ConfigError> {
        match self.get(k).as_deref() {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
            Some(_) => Err(ConfigError {
                variable: k,
                reason: "must be true or false".into(),
            }),
        }
    }

    fn metrics_namespace(&self) -> String {
        self.get("METRICS_NAMESPACE")
            .unwrap_or_else(|| DEFAULT_METRICS_NAMESPACE.into())
    }

    fn event_ttl_days(&self) -> Result<i64, ConfigError> {
        Ok(self.number("EVENT_TTL_DAYS", DEFAULT_EVENT_TTL_DAYS as u64, 1, 3650)? as i64)
    }
}

/// The CloudWatch namespace of the metrics unless `METRICS_NAMESPACE` says otherwise.
pub const DEFAULT_METRICS_NAMESPACE: &str = "Bitrix24Receiver";

const PARKED_QUEUE_WHY: &str = " (the SQS queue events are parked on while storage is down)";

impl Config {
    /// Reads the configuration of `family` from the process environment.
    pub fn from_env(family: Family) -> Result<Config, ConfigError> {
        Config::from_lookup(family, |k| std::env::var(k).ok())
    }

    /// Reads the configuration from any key → value lookup (tests pass a map).
    pub fn from_lookup(
        family: Family,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let v = Vars(get);
        Ok(Config {
            family,
            table_name: v.required("TABLE_NAME", "")?,
            parked_queue_url: v.required("PARKED_QUEUE_URL", PARKED_QUEUE_WHY)?,
            metrics_namespace: v.metrics_namespace(),
            max_body_bytes: v.number(
                "MAX_BODY_BYTES",
                Limits::DEFAULT_MAX_BODY_BYTES as u64,
                1024,
                6 * 1024 * 1024,
            )? as usize,
            portal_cache_ttl: Duration::from_secs(v.number(
                "PORTAL_CACHE_TTL_SECONDS",
                30,
                0,
                3600,
            )?),
            portal_cache_entries: v.number(
                "PORTAL_CACHE_ENTRIES",
                DEFAULT_PORTAL_CACHE_ENTRIES as u64,
                1,
                1_000_000,
            )? as usize,
            event_ttl_days: v.event_ttl_days()?,
            verifier: VerifierConfig {
                client_id: v.get("BITRIX24_CLIENT_ID"),
                allow_insecure: v.flag("VERIFIER_ALLOW_INSECURE")?,
                timeout: match v.get("VERIFIER_TIMEOUT_MS") {
                    None => VerifierConfig::default().timeout,
                    Some(_) => {
                        Duration::from_millis(v.number("VERIFIER_TIMEOUT_MS", 0, 100, 20_000)?)
                    }
                },
                ..VerifierConfig::default()
            },
        })
    }
}

/// A required setting of a consumer from the process environment (trimmed, non-empty).
pub fn required_var(k: &'static str, why: &str) -> Result<String, ConfigError> {
    Vars(|k: &str| std::env::var(k).ok()).required(k, why)
}

/// An optional setting of a consumer from the process environment (`None` when unset or
/// empty).
pub fn optional_var(k: &str) -> Option<String> {
    Vars(|k: &str| std::env::var(k).ok()).get(k)
}

/// The configuration of a queue or stream consumer (redrive, purge, ...), read once at
/// start-up like the webhooks' [`Config`].
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// The DynamoDB table (`TABLE_NAME`, required).
    pub table_name: String,
    /// CloudWatch namespace of the EMF metrics (`METRICS_NAMESPACE`).
    pub metrics_namespace: String,
    /// How long event records are kept (`EVENT_TTL_DAYS`, default 30).
    pub event_ttl_days: i64,
    /// The parked queue (`PARKED_QUEUE_URL`), when the consumer has one.
    pub parked_queue_url: Option<String>,
}

impl ConsumerConfig {
    /// From the process environment; `needs_parked_queue` makes `PARKED_QUEUE_URL` required.
    pub fn from_env(needs_parked_queue: bool) -> Result<ConsumerConfig, ConfigError> {
        ConsumerConfig::from_lookup(needs_parked_queue, |k| std::env::var(k).ok())
    }

    /// From any key → value lookup (tests pass a map).
    pub fn from_lookup(
        needs_parked_queue: bool,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<ConsumerConfig, ConfigError> {
        let v = Vars(get);
        Ok(ConsumerConfig {
            table_name: v.required("TABLE_NAME", "")?,
            metrics_namespace: v.metrics_namespace(),
            event_ttl_days: v.event_ttl_days()?,
            parked_queue_url: match needs_parked_queue {
                true => Some(v.required("PARKED_QUEUE_URL", PARKED_QUEUE_WHY)?),
                false => v.get("PARKED_QUEUE_URL"),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn defaults_apply() {
        let c = Config::from_lookup(
            Family::App,
            lookup(&[("TABLE_NAME", "t"), ("PARKED_QUEUE_URL", "q")]),
        )
        .unwrap();
        assert_eq!(c.max_body_bytes, Limits::DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.portal_cache_entries, DEFAULT_PORTAL_CACHE_ENTRIES);
        assert_eq!(c.verifier.timeout, Duration::from_millis(3000));
        assert_eq!(c.portal_cache_ttl, Duration::from_secs(30));
        assert!(!c.verifier.allow_insecure);
        assert_eq!(c.metrics_namespace, "Bitrix24Receiver");
    }

    #[test]
    fn missing_table_and_bad_numbers_name_the_variable() {
        let e = Config::from_lookup(Family::App, lookup(&[])).unwrap_err();
        assert_eq!(e.variable, "TABLE_NAME");
        let e = Config::from_lookup(Family::App, lookup(&[("TABLE_NAME", "t")])).unwrap_err();
        assert_eq!(e.variable, "PARKED_QUEUE_URL");
        let base = [("TABLE_NAME", "t"), ("PARKED_QUEUE_URL", "q")];
        let e = Config::from_lookup(
            Family::App,
            lookup(&[base[0], base[1], ("MAX_BODY_BYTES", "lots")]),
        )
        .unwrap_err();
        assert_eq!(e.variable, "MAX_BODY_BYTES");
        let e = Config::from_lookup(
            Family::App,
            lookup(&[base[0], base[1], ("VERIFIER_ALLOW_INSECURE", "maybe")]),
        )
        .unwrap_err();
        assert_eq!(e.variable, "VERIFIER_ALLOW_INSECURE");
    }

    #[test]
    fn consumers_share_the_rules() {
        let c = ConsumerConfig::from_lookup(
            true,
            lookup(&[("TABLE_NAME", "t"), ("PARKED_QUEUE_URL", "q")]),
        )
        .unwrap();
        assert_eq!(c.event_ttl_days, DEFAULT_EVENT_TTL_DAYS);
        assert_eq!(c.metrics_namespace, DEFAULT_METRICS_NAMESPACE);
        assert_eq!(c.parked_queue_url.as_deref(), Some("q"));
        let e = ConsumerConfig::from_lookup(true, lookup(&[("TABLE_NAME", "t")])).unwrap_err();
        assert_eq!(e.variable, "PARKED_QUEUE_URL");
        assert!(ConsumerConfig::from_lookup(false, lookup(&[("TABLE_NAME", "t")])).is_ok());
        let e = ConsumerConfig::from_lookup(
            false,
            lookup(&[("TABLE_NAME", "t"), ("EVENT_TTL_DAYS", "0")]),
        )
        .unwrap_err();
        assert_eq!(e.variable, "EVENT_TTL_DAYS");
    }
}

//! AWS clients of a Lambda function, built from the environment alone.
//!
//! Lambda hands a function its region and credentials as environment variables
//! (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), valid for
//! the life of the execution environment. `aws_config::load_defaults` would find them too, but
//! it links the whole default provider chain (STS, profile files, IMDS, ...) into every
//! binary: reading four variables here keeps each arm64 `bootstrap` about a megabyte smaller
//! and does no I/O at start-up. `DynamoStore::from_env` (used by the `b24-state` tool on a
//! developer machine) keeps the full chain, profiles included.
//!
//! Endpoints follow the standard settings, so the local servers and AWS work the same way:
//! `AWS_ENDPOINT_URL_<SERVICE>` (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SQS`, ...), else
//! `AWS_ENDPOINT_URL`, else the regional AWS endpoint. Other crates build their service's
//! client from the same [`AwsEnv`].

use crate::StoreError;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::Client;
use std::time::Duration;

/// How long AWS calls may take: a connect timeout, a per-attempt timeout and a total (retries
/// included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP/TLS connect.
    pub connect: Duration,
    /// One attempt.
    pub attempt: Duration,
    /// The whole operation, retries included.
    pub total: Duration,
}

impl Timeouts {
    /// The webhook path: Bitrix24 calls slow handlers less often, with growing pauses, so a
    /// storage call gives up quickly (the event is then parked): connect 0.5 s, 1.5 s per
    /// attempt and in total. An attempt that timed out is never sent again: the server is
    /// most likely still working on it, and under overload a second copy of every slow
    /// request only doubles the load until nothing completes (the parked event is applied
    /// later instead). Fast failures (throttling, a refused connection) are still retried.
    pub const WEBHOOK: Timeouts = Timeouts {
        connect: Duration::from_millis(500),
        attempt: Duration::from_millis(1500),
        total: Duration::from_millis(1500),
    };
    /// Background consumers (redrive, purge, ...): connect 2 s, attempt 5 s, total 20 s.
    pub const BACKGROUND: Timeouts = Timeouts {
        connect: Duration::from_secs(2),
        attempt: Duration::from_secs(5),
        total: Duration::from_secs(20),
    };

    /// As the SDK's timeout configuration.
    pub fn config(self) -> aws_sdk_dynamodb::config::timeout::TimeoutConfig {
        aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.total)
            .build()
    }
}

/// The SDK timeout configuration of the webhook path ([`Timeouts::WEBHOOK`]).
pub fn timeouts() -> aws_sdk_dynamodb::config::timeout::TimeoutConfig {
    Timeouts::WEBHOOK.config()
}

/// Region, credentials and endpoints read from the environment once.
#[derive(Clone, Debug)]
pub struct AwsEnv {
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`).
    pub region: String,
    /// The credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    pub credentials: Credentials,
    endpoints: Vec<(String, String)>,
}

impl AwsEnv {
    /// From the process environment.
    pub fn from_env() -> Result<AwsEnv, StoreError> {
        AwsEnv::from_lookup(|k| std::env::var(k).ok())
    }

    /// From any key → value lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<AwsEnv, StoreError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let missing = |k: &str| StoreError::Config(format!("{k} is not set"));
        let region = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .ok_or_else(|| missing("AWS_REGION"))?;
        let key_id = get("AWS_ACCESS_KEY_ID").ok_or_else(|| missing("AWS_ACCESS_KEY_ID"))?;
        let secret =
            get("AWS_SECRET_ACCESS_KEY").ok_or_else(|| missing("AWS_SECRET_ACCESS_KEY"))?;
        let credentials = Credentials::new(
            key_id,
            secret,
            get("AWS_SESSION_TOKEN"),
            None,
            "environment",
        );
        let endpoints = [
            "DYNAMODB",
            "SQS",
            "KMS",
            "EVENTBRIDGE",
            "SSM",
            "SECRETS_MANAGER",
        ]
        .iter()
        .filter_map(|s| get(&format!("AWS_ENDPOINT_URL_{s}")).map(|v| (s.to_string(), v)))
        .chain(get("AWS_ENDPOINT_URL").map(|v| ("*".to_string(), v)))
        .collect();
        Ok(AwsEnv {
            region,
            credentials,
            endpoints,
        })
    }

    /// The endpoint of `service` (`DYNAMODB`, `SQS`, ...): its own variable, else
    /// `AWS_ENDPOINT_URL`; `None` = the regional AWS endpoint.
    pub fn endpoint(&self, service: &str) -> Option<&str> {
        let find = |k: &str| {
            self.endpoints
                .iter()
                .find(|(s, _)| s == k)
                .map(|(_, v)| v.as_str())
        };
        find(service).or_else(|| find("*"))
    }
}

/// A DynamoDB client from `env` with `timeouts`.
pub fn dynamodb_client(env: &AwsEnv, timeouts: Timeouts) -> Client {
    let mut builder = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(env.region.clone()))
        .credentials_provider(env.credentials.clone())
        .timeout_config(timeouts.config());
    if let Some(url) = env.endpoint("DYNAMODB") {
        builder = builder.endpoint_url(url);
    }
    Client::from_conf(builder.build())
}

/// A DynamoDB client for the webhook path from the process environment.
pub fn client_from_env_vars() -> Result<Client, StoreError> {
    Ok(dynamodb_client(&AwsEnv::from_env()?, Timeouts::WEBHOOK))
}

/// A DynamoDB client for the webhook path from any key → value lookup (tests pass a map).
pub fn client_from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Client, StoreError> {
    Ok(dynamodb_client(
        &AwsEnv::from_lookup(get)?,
        Timeouts::WEBHOOK,
    ))
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
    fn region_and_credentials_are_required() {
        let err = client_from_lookup(lookup(&[])).unwrap_err();
        assert!(err.to_string().contains("AWS_REGION"), "{err}");
        let err = client_from_lookup(lookup(&[("AWS_REGION", "eu-central-1")])).unwrap_err();
        assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");
    }

    #[test]
    fn region_and_endpoints_come_from_the_environment() {
        let env = AwsEnv::from_lookup(lookup(&[
            ("AWS_DEFAULT_REGION", "eu-central-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:8000"),
            ("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:5000"),
        ]))
        .unwrap();
        assert_eq!(env.region, "eu-central-1");
        assert_eq!(env.endpoint("SQS"), Some("http://127.0.0.1:5000"));
        assert_eq!(env.endpoint("DYNAMODB"), Some("http://127.0.0.1:8000"));
        let client = dynamodb_client(&env, Timeouts::WEBHOOK);
        assert_eq!(
            client.config().region().map(|r| r.as_ref()),
            Some("eu-central-1")
        );
    }
}

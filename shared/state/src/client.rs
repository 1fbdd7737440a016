//! The DynamoDB client of a Lambda function, built from the environment alone.
//!
//! Lambda hands a function its region and credentials as environment variables
//! (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), valid for
//! the life of the execution environment. `aws_config::load_defaults` would find them too, but
//! it links the whole default provider chain (STS, profile files, IMDS, ...) into every
//! binary: reading four variables here keeps each arm64 `bootstrap` about a megabyte smaller
//! and does no I/O at start-up. `DynamoStore::from_env` (used by the `b24-state` tool on a
//! developer machine) keeps the full chain, profiles included.
//!
//! The endpoint follows the standard settings, so DynamoDB Local and AWS work the same way:
//! `AWS_ENDPOINT_URL_DYNAMODB`, else `AWS_ENDPOINT_URL`, else the regional AWS endpoint.

use crate::StoreError;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::Client;
use std::time::Duration;

/// Timeouts of every DynamoDB call: Bitrix24's queue waits for our answer, so fail fast
/// (→ 503) rather than hang.
pub fn timeouts() -> aws_sdk_dynamodb::config::timeout::TimeoutConfig {
    aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(8))
        .build()
}

/// A DynamoDB client from the process environment (see the module docs).
pub fn client_from_env_vars() -> Result<Client, StoreError> {
    client_from_lookup(|k| std::env::var(k).ok())
}

/// A DynamoDB client from any key → value lookup (tests pass a map).
pub fn client_from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Client, StoreError> {
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
    let secret = get("AWS_SECRET_ACCESS_KEY").ok_or_else(|| missing("AWS_SECRET_ACCESS_KEY"))?;
    let credentials = Credentials::new(
        key_id,
        secret,
        get("AWS_SESSION_TOKEN"),
        None,
        "environment",
    );
    let mut builder = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(credentials)
        .timeout_config(timeouts());
    if let Some(url) = get("AWS_ENDPOINT_URL_DYNAMODB").or_else(|| get("AWS_ENDPOINT_URL")) {
        builder = builder.endpoint_url(url);
    }
    Ok(Client::from_conf(builder.build()))
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
    fn region_comes_from_the_environment() {
        let client = client_from_lookup(lookup(&[
            ("AWS_DEFAULT_REGION", "eu-central-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:8000"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8001"),
        ]))
        .unwrap();
        let conf = client.config();
        assert_eq!(conf.region().map(|r| r.as_ref()), Some("eu-central-1"));
        // The endpoint is exercised for real by the end-to-end test (functions → DynamoDB Local).
    }
}

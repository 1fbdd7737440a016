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
use aws_sdk_dynamodb::config::{Credentials, SharedHttpClient};
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder as HttpClientBuilder, ConnectorBuilder};
use std::sync::OnceLock;
use std::time::Duration;

/// The roots AWS service certificates chain to, compiled in: the five Amazon Trust Services
/// roots (Amazon Root CA 1–4 and Starfield Services Root CA – G2), the set Amazon Trust
/// Services recommends for custom trust stores (<https://www.amazontrust.com/repository/>).
///
/// The SDK's default client loads and parses the whole system trust store instead: on Debian
/// about 19 M of the 21.7 M instructions a function spent before its first poll (BENCHMARKS.md,
/// "Cold start"). Five certificates cost about 0.3 M.
const AMAZON_TRUST_SERVICES_ROOTS: &str = include_str!("amazon-trust-services-roots.pem");

/// The SDK's default HTTPS client (hyper 1, rustls with aws-lc, the SDK's cipher suites,
/// connector settings and proxy variables), trusting only [`AMAZON_TRUST_SERVICES_ROOTS`].
/// Built once per process and shared by every AWS client of it (DynamoDB, SQS, ...).
pub fn aws_http_client() -> SharedHttpClient {
    static CLIENT: OnceLock<SharedHttpClient> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let trust = TrustStore::empty()
                .with_native_roots(false)
                .with_pem_certificate(AMAZON_TRUST_SERVICES_ROOTS.as_bytes());
            let tls_context = TlsContext::builder()
                .with_trust_store(trust)
                .build()
                .expect("the compiled-in roots are valid PEM");
            HttpClientBuilder::new().build_with_connector_fn(move |settings, components| {
                let mut conn = ConnectorBuilder::default()
                    .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
                    .tls_context(tls_context.clone());
                conn.set_connector_settings(settings.cloned());
                if let Some(components) = components {
                    conn.set_sleep_impl(components.sleep_impl());
                }
                conn.set_proxy_config(Some(ProxyConfig::from_env()));
                conn.build()
            })
        })
        .clone()
}

/// An HTTPS endpoint override outside AWS (a proxy, an emulator with its own certificate):
/// trusted through the system store, as the SDK does by default.
fn custom_tls_endpoint(url: &str) -> bool {
    let Some(rest) = url
        .get(..8)
        .filter(|s| s.eq_ignore_ascii_case("https://"))
        .and_then(|_| url.get(8..))
    else {
        return false;
    };
    let host = rest.split(['/', ':', '?']).next().unwrap_or("");
    !(host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"))
}

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

    /// The HTTPS client for `service`'s client: the shared compiled-in-roots one
    /// ([`aws_http_client`]), or `None` (the SDK's default, the system trust store) when the
    /// service's endpoint is an HTTPS URL outside AWS.
    pub fn http_client(&self, service: &str) -> Option<SharedHttpClient> {
        match self.endpoint(service) {
            Some(url) if custom_tls_endpoint(url) => None,
            _ => Some(aws_http_client()),
        }
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

/// Builds a client of the AWS SDK crate `$sdk` for service `$service` (`"SQS"`, `"KMS"`, ...)
/// from an [`AwsEnv`] and [`Timeouts`]: region, credentials, the shared HTTPS client and the
/// service's endpoint override (`AWS_ENDPOINT_URL_<SERVICE>`, else `AWS_ENDPOINT_URL`). A
/// macro because every SDK crate has its own `Config` and `Client` types with the same builder.
#[macro_export]
macro_rules! aws_client {
    ($sdk:ident, $service:literal, $env:expr, $timeouts:expr) => {{
        let env: &$crate::AwsEnv = $env;
        let timeouts: $crate::Timeouts = $timeouts;
        let mut builder = $sdk::Config::builder()
            .behavior_version($sdk::config::BehaviorVersion::latest())
            .region($sdk::config::Region::new(env.region.clone()))
            .credentials_provider(env.credentials.clone())
            .timeout_config(timeouts.config());
        if let Some(http) = env.http_client($service) {
            builder = builder.http_client(http);
        }
        if let Some(url) = env.endpoint($service) {
            builder = builder.endpoint_url(url);
        }
        $sdk::Client::from_conf(builder.build())
    }};
}

/// A DynamoDB client from `env` with `timeouts`.
pub fn dynamodb_client(env: &AwsEnv, timeouts: Timeouts) -> Client {
    crate::aws_client!(aws_sdk_dynamodb, "DYNAMODB", env, timeouts)
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
        let err = AwsEnv::from_lookup(lookup(&[])).unwrap_err();
        assert!(err.to_string().contains("AWS_REGION"), "{err}");
        let err = AwsEnv::from_lookup(lookup(&[("AWS_REGION", "eu-central-1")])).unwrap_err();
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
        assert!(
            client.config().http_client().is_some(),
            "the compiled-in roots client is installed"
        );
    }

    #[test]
    fn only_https_endpoints_outside_aws_use_the_system_trust_store() {
        assert!(!custom_tls_endpoint("http://127.0.0.1:8000"));
        assert!(!custom_tls_endpoint(
            "https://dynamodb.eu-central-1.amazonaws.com"
        ));
        assert!(!custom_tls_endpoint(
            "HTTPS://dynamodb-fips.us-gov-west-1.amazonaws.com/"
        ));
        assert!(!custom_tls_endpoint(
            "https://dynamodb.cn-north-1.amazonaws.com.cn"
        ));
        assert!(custom_tls_endpoint("https://ddb.internal.example:8443"));
        assert!(custom_tls_endpoint("https://amazonaws.com.evil.example"));
        assert!(!custom_tls_endpoint("https:/"));
        assert!(!custom_tls_endpoint("ht"));
    }

    #[test]
    fn the_compiled_in_roots_are_the_five_amazon_trust_services_roots() {
        assert_eq!(
            AMAZON_TRUST_SERVICES_ROOTS
                .matches("-----BEGIN CERTIFICATE-----")
                .count(),
            5
        );
        // Building the client parses them (a bad PEM would panic here, not in a function).
        let _ = aws_http_client();
    }
}

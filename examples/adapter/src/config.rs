//! Where the change feed and the acks queue are, and how to reach them.
//!
//! A queue on this machine (moto under `make dev`) is reached directly with dummy credentials;
//! any other queue with the standard AWS chain (environment, profile, SSO, instance role...)
//! and the region named in its URL.

use std::time::Duration;

/// The change feed of `make dev` (stack `dev` on moto's default port).
pub const DEV_QUEUE_URL: &str = "http://127.0.0.1:5000/123456789012/dev-changes.fifo";

/// The acks queue of `make dev` (the stack's `AcksQueueUrl` output).
pub const DEV_ACKS_QUEUE_URL: &str = "http://127.0.0.1:5000/123456789012/dev-acks";

/// The change feed's URL: `CHANGES_QUEUE_URL`, else [`DEV_QUEUE_URL`].
pub fn queue_url_from_env() -> String {
    var_or("CHANGES_QUEUE_URL", DEV_QUEUE_URL)
}

/// The acks queue's URL: `ACKS_QUEUE_URL`, else [`DEV_ACKS_QUEUE_URL`].
pub fn acks_queue_url_from_env() -> String {
    var_or("ACKS_QUEUE_URL", DEV_ACKS_QUEUE_URL)
}

fn var_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// The endpoint (`http://127.0.0.1:5000`) of a queue URL on a loopback host, else `None`.
pub fn local_endpoint(url: &str) -> Option<String> {
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

/// An SQS client for `queue_url`.
pub async fn sqs_client(queue_url: &str) -> aws_sdk_sqs::Client {
    use aws_sdk_sqs::config::{timeout::TimeoutConfig, Credentials, Region};
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        // Long polls take up to 20 s.
        .operation_attempt_timeout(Duration::from_secs(30))
        .build();
    if let Some(endpoint) = local_endpoint(queue_url) {
        // moto accepts any credentials: the environment's are neither needed nor sent.
        let conf = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "local"))
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
            local_endpoint("http://[::1]:4566/000/q.fifo").as_deref(),
            Some("http://[::1]:4566")
        );
        let aws = "https://sqs.eu-central-1.amazonaws.com/1/x.fifo";
        assert_eq!(local_endpoint(aws), None);
        assert_eq!(local_endpoint("http://127.0.0.1.evil.example/1/q"), None);
        assert_eq!(region_of(aws).as_deref(), Some("eu-central-1"));
        assert_eq!(region_of(DEV_QUEUE_URL), None);
        assert_eq!(
            local_endpoint(DEV_ACKS_QUEUE_URL).as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(
            region_of("https://sqs.us-west-2.amazonaws.com/1/stack-acks").as_deref(),
            Some("us-west-2")
        );
    }
}

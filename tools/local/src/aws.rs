//! SDK clients built from environment variables by hand (no aws-config provider chain).
//!
//! Region `AWS_REGION` (default `us-east-1`), credentials `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN` (default `dummy`: these are local servers),
//! endpoint `AWS_ENDPOINT_URL_<SERVICE>` else `AWS_ENDPOINT_URL`, unless given explicitly.

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use std::time::Duration;

/// Region and credentials for the local servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsEnv {
    /// The region the clients sign for.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token, if any.
    pub session_token: Option<String>,
}

impl Default for AwsEnv {
    fn default() -> Self {
        AwsEnv {
            region: "us-east-1".into(),
            access_key_id: "dummy".into(),
            secret_access_key: "dummy".into(),
            session_token: None,
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl AwsEnv {
    /// From `AWS_REGION` (or `AWS_DEFAULT_REGION`), `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, with local defaults.
    pub fn from_env() -> Self {
        let d = AwsEnv::default();
        AwsEnv {
            region: env("AWS_REGION")
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .unwrap_or(d.region),
            access_key_id: env("AWS_ACCESS_KEY_ID").unwrap_or(d.access_key_id),
            secret_access_key: env("AWS_SECRET_ACCESS_KEY").unwrap_or(d.secret_access_key),
            session_token: env("AWS_SESSION_TOKEN"),
        }
    }

    fn credentials(&self) -> Credentials {
        Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.clone(),
            self.session_token.clone(),
            None,
            "b24-local",
        )
    }
}

/// The endpoint for a service: `AWS_ENDPOINT_URL_<SERVICE>` (e.g. `SQS`, `DYNAMODB`,
/// `DYNAMODB_STREAMS`) else `AWS_ENDPOINT_URL`.
pub fn endpoint_from_env(service: &str) -> Option<String> {
    env(&format!("AWS_ENDPOINT_URL_{service}")).or_else(|| env("AWS_ENDPOINT_URL"))
}

/// Endpoints for the three clients; `None` means "from the environment".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// SQS (moto).
    pub sqs: Option<String>,
    /// DynamoDB (DynamoDB Local); also used for DynamoDB Streams unless `streams` is set.
    pub dynamodb: Option<String>,
    /// DynamoDB Streams.
    pub streams: Option<String>,
}

/// The SQS, DynamoDB and DynamoDB Streams clients the runner uses.
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// DynamoDB (DescribeTable for the stream ARN).
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// DynamoDB Streams.
    pub streams: aws_sdk_dynamodbstreams::Client,
    /// The region they sign for.
    pub region: String,
}

// Above SQS's 20 s long poll, so a wait never times out, but a paused server does.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

impl AwsClients {
    /// Clients from the environment only.
    pub fn from_env() -> Self {
        Self::new(&AwsEnv::from_env(), &Endpoints::default())
    }

    /// Clients for `env`, with explicit endpoints where given (else `AWS_ENDPOINT_URL_*`).
    pub fn new(env: &AwsEnv, endpoints: &Endpoints) -> Self {
        let sqs_ep = endpoints.sqs.clone().or_else(|| endpoint_from_env("SQS"));
        let ddb_ep = endpoints
            .dynamodb
            .clone()
            .or_else(|| endpoint_from_env("DYNAMODB"));
        let streams_ep = endpoints
            .streams
            .clone()
            .or_else(|| env_service_only("DYNAMODB_STREAMS"))
            .or_else(|| ddb_ep.clone());
        AwsClients {
            sqs: sqs_client(env, sqs_ep.as_deref()),
            dynamodb: dynamodb_client(env, ddb_ep.as_deref()),
            streams: streams_client(env, streams_ep.as_deref()),
            region: env.region.clone(),
        }
    }
}

fn env_service_only(service: &str) -> Option<String> {
    env(&format!("AWS_ENDPOINT_URL_{service}"))
}

macro_rules! client_fn {
    ($(#[$doc:meta])* $name:ident, $krate:ident $(, $extra:expr)?) => {
        $(#[$doc])*
        pub fn $name(env: &AwsEnv, endpoint: Option<&str>) -> $krate::Client {
            let timeouts = $krate::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build();
            let mut conf = $krate::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(env.region.clone()))
                .credentials_provider(env.credentials())
                .timeout_config(timeouts);
            if let Some(ep) = endpoint {
                conf = conf.endpoint_url(ep);
            }
            $(conf = ($extra)(conf);)?
            $krate::Client::from_conf(conf.build())
        }
    };
}

client_fn!(
    /// An SQS client (`endpoint`, else the SDK's default for the region).
    sqs_client,
    aws_sdk_sqs
);
client_fn!(
    /// A DynamoDB client (`endpoint`, else the SDK's default for the region).
    dynamodb_client,
    aws_sdk_dynamodb
);
client_fn!(
    /// A DynamoDB Streams client (`endpoint`, else the SDK's default for the region). It
    /// repairs DynamoDB Local's empty maps in `GetRecords` answers (`{}` for `{"M":{}}`, which
    /// the SDK cannot parse; real DynamoDB is unaffected): see `stream_repair.rs`.
    streams_client,
    aws_sdk_dynamodbstreams,
    |conf: aws_sdk_dynamodbstreams::config::Builder| conf
        .interceptor(crate::stream_repair::EmptyMapRepair)
);

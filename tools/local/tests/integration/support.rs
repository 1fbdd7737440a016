//! Test support: a fake Invoke API endpoint, clients for the shared servers, helpers.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use b24_local::aws::{AwsClients, AwsEnv, Endpoints};
use b24_local::runner::{HttpInvoker, Runner, Source};
use b24_local::{shared_ddb_endpoint, shared_moto_endpoint};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// One recorded invocation.
#[derive(Debug, Clone)]
pub struct Call {
    pub function: String,
    pub event: Value,
}

/// What the fake function answers.
pub enum Reply {
    /// 200 with this JSON result.
    Ok(Value),
    /// cargo-lambda's function error: 500 with the runtime's error document.
    Error(&'static str),
    /// Any other status with an empty JSON body (e.g. 429: throttled, not invoked).
    Status(u16),
}

type Handler = dyn Fn(&Value, usize) -> Reply + Send + Sync;

/// A tiny HTTP server implementing `POST /2015-03-31/functions/{name}/invocations`: it
/// records every event and answers what the handler says (the handler also gets the call's
/// index, from 0).
pub struct FakeFunction {
    pub url: String,
    calls: Arc<Mutex<Vec<Call>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeFunction {
    pub async fn start(handler: impl Fn(&Value, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let task = {
            let calls = calls.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let calls = calls.clone();
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                            let calls = calls.clone();
                            let handler = handler.clone();
                            async move {
                                let path = req.uri().path().to_string();
                                let body = req.into_body().collect().await?.to_bytes();
                                let function = path
                                    .strip_prefix("/2015-03-31/functions/")
                                    .and_then(|p| p.strip_suffix("/invocations"))
                                    .map(str::to_string);
                                let Some(function) = function else {
                                    return Ok::<_, hyper::Error>(
                                        Response::builder()
                                            .status(404)
                                            .body(Full::new(Bytes::from_static(b"{}")))
                                            .expect("response"),
                                    );
                                };
                                let event: Value =
                                    serde_json::from_slice(&body).unwrap_or(Value::Null);
                                let index = {
                                    let mut c = calls.lock().expect("calls");
                                    c.push(Call {
                                        function,
                                        event: event.clone(),
                                    });
                                    c.len() - 1
                                };
                                let (status, body) = match handler(&event, index) {
                                    Reply::Ok(v) => (200, v.to_string()),
                                    Reply::Error(t) => (
                                        500,
                                        serde_json::json!({"errorType": t, "errorMessage": "test failure"})
                                            .to_string(),
                                    ),
                                    Reply::Status(code) => (code, "{}".to_string()),
                                };
                                Ok(Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .expect("response"))
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            })
        };
        FakeFunction { url, calls, task }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    /// The `Records` of every call, in order.
    pub fn batches(&self) -> Vec<Vec<Value>> {
        self.calls()
            .into_iter()
            .map(|c| c.event["Records"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// The `Records` of every call, one after the other.
    pub fn records(&self) -> Vec<Value> {
        self.batches().into_iter().flatten().collect()
    }
}

impl Drop for FakeFunction {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Clients for the process-wide DynamoDB Local and moto.
pub fn clients() -> AwsClients {
    let (ddb, moto) = std::thread::scope(|s| {
        let ddb = s.spawn(shared_ddb_endpoint);
        let moto = s.spawn(shared_moto_endpoint);
        (ddb.join().expect("ddb"), moto.join().expect("moto"))
    });
    AwsClients::new(
        &AwsEnv::default(),
        &Endpoints {
            sqs: Some(moto),
            dynamodb: Some(ddb),
            streams: None,
        },
    )
}

/// A runner for `src` that invokes through `f`'s Invoke API.
pub fn runner(c: &AwsClients, f: &FakeFunction, src: impl Into<Source>) -> Runner {
    Runner::new(c.clone(), Arc::new(HttpInvoker::new(&f.url))).source(src)
}

/// Creates the queue `name` with `attrs`; its URL.
pub async fn create_queue(
    c: &AwsClients,
    name: &str,
    attrs: &[(QueueAttributeName, &str)],
) -> String {
    let mut req = c.sqs.create_queue().queue_name(name);
    for (k, v) in attrs {
        req = req.attributes(k.clone(), *v);
    }
    req.send()
        .await
        .expect("create queue")
        .queue_url
        .expect("url")
}

/// Creates the on-demand table `name` with string keys `keys` (hash, then range if given) and,
/// with `stream`, a stream of that view type; its latest stream ARN.
pub async fn create_table(
    c: &aws_sdk_dynamodb::Client,
    name: &str,
    keys: &[&str],
    stream: Option<StreamViewType>,
) -> Option<String> {
    let mut req = c
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for (k, key_type) in keys.iter().zip([KeyType::Hash, KeyType::Range]) {
        req = req
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(*k)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attribute"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(*k)
                    .key_type(key_type)
                    .build()
                    .expect("key"),
            );
    }
    if let Some(view) = stream {
        req = req.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(view)
                .build()
                .expect("stream"),
        );
    }
    req.send()
        .await
        .expect("create table")
        .table_description
        .and_then(|t| t.latest_stream_arn)
}

/// A unique resource name.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

/// Runs a test body with an overall bound.
pub async fn bounded<F: Future<Output = ()>>(secs: u64, f: F) {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {secs} s"));
}

/// The keys of a JSON object, in order.
pub fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// The tree of object keys of `v` (values replaced by their JSON type), to compare shapes.
pub fn shape(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().take(1).map(shape).collect()),
        Value::String(_) => "string".into(),
        Value::Number(_) => "number".into(),
        Value::Bool(_) => "bool".into(),
        Value::Null => "null".into(),
    }
}

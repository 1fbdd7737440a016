//! Helpers of the handler tests: API Gateway HTTP API (payload v2) events, wire bodies from
//! the fixtures crate, a pipeline over `MemoryStore` (or DynamoDB Local where the adapter is
//! the point), log and metrics capture, and a fake Bitrix24 `app.info`.

#![allow(dead_code)]

use b24_events::{EventKind, Family};
use b24_fixtures::Fixture;
use b24_pipeline::park::{ParkError, ParkedEvent, Parker};
use b24_pipeline::{AppInfoVerifier, Config, InstallVerifier, Metrics, Pipeline};
use b24_state::{MemberId, MemoryStore, Store};
use base64::Engine;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Markers every secret in these tests carries, so a leak is easy to find in captured output.
pub const SECRET_MARK: &str = "SECRETVALUE";
/// The client id the fake `app.info` answers for.
pub const CLIENT_ID: &str = "vendor.connector";

pub fn app_token(n: u32) -> String {
    format!("apptoken{n}{SECRET_MARK}")
}

pub fn access_token(n: u32) -> String {
    format!("access{n}{SECRET_MARK}")
}

/// A shared in-memory writer for logs and metrics.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Installs a JSON log subscriber writing to `capture` for the current thread (the tests run
/// on tokio's current-thread runtime, so every log line of the test lands here).
pub fn capture_logs(capture: &Capture) -> tracing::subscriber::DefaultGuard {
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .finish();
    tracing::subscriber::set_default(subscriber)
}

/// An API Gateway HTTP API (payload format 2.0) invocation payload as Lambda delivers it.
pub fn apigw(
    method: &str,
    family: Family,
    content_type: Option<&str>,
    body: &[u8],
    base64: bool,
) -> Value {
    let body_text = if base64 {
        base64::engine::general_purpose::STANDARD.encode(body)
    } else {
        String::from_utf8(body.to_vec()).expect("non-base64 test bodies are UTF-8")
    };
    apigw_raw(method, family, content_type, &body_text, base64)
}

/// Like [`apigw`] with the body text exactly as given (e.g. invalid base64).
pub fn apigw_raw(
    method: &str,
    family: Family,
    content_type: Option<&str>,
    body_text: &str,
    base64: bool,
) -> Value {
    let path = family.route();
    let mut headers = json!({"host": "abc123.execute-api.eu-central-1.amazonaws.com", "user-agent": "Bitrix24 Webhook Engine"});
    if let Some(ct) = content_type {
        headers["content-type"] = json!(ct);
    }
    json!({
        "version": "2.0",
        "routeKey": format!("POST {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-central-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "Bitrix24 Webhook Engine"},
            "requestId": "req-1",
            "routeKey": format!("POST {path}"),
            "stage": "$default",
            "time": "24/Nov/2026:04:00:00 +0000",
            "timeEpoch": 1795492800000u64
        },
        "body": body_text,
        "isBase64Encoded": base64
    })
}

/// A POST with a form body.
pub fn form_post(family: Family, body: &str) -> Value {
    apigw(
        "POST",
        family,
        Some("application/x-www-form-urlencoded"),
        body.as_bytes(),
        false,
    )
}

/// Status, headers and JSON body of a response.
pub fn read(response: aws_lambda_events::apigw::ApiGatewayV2httpResponse) -> (u16, Value) {
    let status = response.status_code as u16;
    let body = match response.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => t,
        other => panic!("every answer is a JSON text body, got {other:?}"),
    };
    let body = serde_json::from_str(&body).expect("every answer is JSON");
    (status, body)
}

/// A wire-shaped ONAPPINSTALL (fixture F14) for `member`, with tokens and endpoint.
pub fn install(member: &str, app: &str, access: &str, endpoint: &str) -> Value {
    Fixture::new(EventKind::AppInstall)
        .member(member)
        .token(app)
        .access_token(access)
        .refresh_token(&format!("refresh{SECRET_MARK}"))
        .client_endpoint(endpoint)
        .ts(1_773_759_000)
        .version("1")
        .wire()
}

/// A wire-shaped ONAPPUNINSTALL (fixture F15) for `member`.
pub fn uninstall(member: &str, app: &str, ts: i64, clean: bool) -> Value {
    Fixture::new(EventKind::AppUninstall)
        .member(member)
        .token(app)
        .ts(ts)
        .clean(clean)
        .wire()
}

/// A wire-shaped ONIMCONNECTORMESSAGEADD (fixture F1) for `member`.
pub fn message_add(member: &str, app: &str, message_id: i64) -> Value {
    Fixture::new(EventKind::MessageAdd)
        .member(member)
        .token(app)
        .access_token(&access_token(9))
        .message_id(message_id)
        .handler(555)
        .wire()
}

/// The PHP `http_build_query` form of a wire-shaped event.
pub fn form(v: &Value) -> String {
    b24_events::encode::php_form(v)
}

/// A unique, valid portal id per test.
pub fn member(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{tag}-{:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn member_id(m: &str) -> MemberId {
    MemberId::new(m).expect("valid member id")
}

/// A parked queue in memory; can be told to fail like an unreachable SQS.
#[derive(Clone, Default)]
pub struct MemoryParker {
    pub parked: Arc<Mutex<Vec<ParkedEvent>>>,
    pub fail: Arc<std::sync::atomic::AtomicBool>,
}

impl MemoryParker {
    pub fn taken(&self) -> Vec<ParkedEvent> {
        self.parked.lock().unwrap().clone()
    }
    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Parker for MemoryParker {
    async fn park(&self, event: &ParkedEvent) -> Result<(), ParkError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ParkError::Send("connection failed".into()));
        }
        self.parked.lock().unwrap().push(event.clone());
        Ok(())
    }
}

/// Everything a handler test needs: a store, a parked queue and a configuration for its
/// pipelines.
pub struct Harness<S: Store> {
    pub store: Arc<S>,
    pub metrics: Capture,
    pub config: Config,
    pub parker: MemoryParker,
}

impl<S: Store> Harness<S> {
    /// A pipeline of `family` with the app.info verifier of the configuration. Each call is a
    /// new function instance (its own portal cache).
    pub fn pipeline(&self, family: Family) -> Pipeline<S, AppInfoVerifier, MemoryParker> {
        let mut config = self.config.clone();
        config.family = family;
        let verifier = AppInfoVerifier::new(config.verifier.clone());
        self.pipeline_with(family, verifier)
    }

    /// A pipeline of `family` with another verifier.
    pub fn pipeline_with<V: InstallVerifier>(
        &self,
        family: Family,
        verifier: V,
    ) -> Pipeline<S, V, MemoryParker> {
        let mut config = self.config.clone();
        config.family = family;
        let metrics = Metrics::with_sink("Test", Arc::new(Mutex::new(self.metrics.clone())));
        Pipeline::with_parker(
            &config,
            self.store.clone(),
            verifier,
            self.parker.clone(),
            metrics,
        )
    }
}

impl Harness<MemoryStore> {
    /// A harness over a fresh `MemoryStore`.
    pub fn memory(max_body_bytes: Option<usize>, client_id: Option<&str>) -> Self {
        Harness {
            store: Arc::new(MemoryStore::new()),
            metrics: Capture::default(),
            config: test_config("memory", max_body_bytes, client_id),
            parker: MemoryParker::default(),
        }
    }

    /// Every record of a portal.
    pub async fn records(&self, member: &str) -> Vec<Value> {
        self.store.portal_records(&member_id(member))
    }
}

/// A configuration for tests: a plain-HTTP loopback verifier is allowed (local fake app.info).
pub fn test_config(table: &str, max_body_bytes: Option<usize>, client_id: Option<&str>) -> Config {
    let table = table.to_string();
    let max = max_body_bytes.map(|m| m.to_string());
    let client_id = client_id.map(str::to_string);
    Config::from_lookup(Family::App, move |k| match k {
        "TABLE_NAME" => Some(table.clone()),
        "VERIFIER_ALLOW_INSECURE" => Some("true".into()),
        "VERIFIER_TIMEOUT_MS" => Some("1000".into()),
        "MAX_BODY_BYTES" => max.clone(),
        "BITRIX24_CLIENT_ID" => client_id.clone(),
        "PARKED_QUEUE_URL" => Some("memory://parked".into()),
        _ => None,
    })
    .expect("test configuration is valid")
}

/// What the fake `app.info` answers for the good token.
pub const APP_INFO_FOR_US: &str =
    r#"{"result":{"ID":5,"CODE":"vendor.connector","VERSION":1,"STATUS":"F","INSTALLED":true}}"#;
/// A valid answer for another application's token on the same portal.
pub const APP_INFO_GENERIC: &str =
    r#"{"result":{"ID":9,"CODE":"other.app","VERSION":3,"STATUS":"F","INSTALLED":true}}"#;

/// A fake Bitrix24 REST endpoint on 127.0.0.1 answering `app.info`: 200 with `answer` for
/// `good_token`, 401 `expired_token` otherwise. Serves at most `max_requests`, then stops.
pub async fn fake_app_info(
    good_token: String,
    answer: &'static str,
    max_requests: usize,
) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..max_requests {
            let accepted =
                tokio::time::timeout(std::time::Duration::from_secs(20), listener.accept()).await;
            let Ok(Ok((mut socket, _))) = accepted else {
                break;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read headers and the JSON body (Content-Length) of one request.
            loop {
                let n = socket.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&buf).to_string();
            seen.push(text.lines().next().unwrap_or("").to_string());
            let ok = text.contains(&format!("\"auth\":\"{good_token}\""));
            let (status, body) = if ok {
                ("200 OK", answer)
            } else {
                (
                    "401 Unauthorized",
                    r#"{"error":"expired_token","error_description":"The access token provided has expired."}"#,
                )
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
        seen
    });
    (format!("http://127.0.0.1:{}/rest/", addr.port()), handle)
}

/// POSTs a form body to `pipeline`'s own route and reads the answer.
pub async fn post<S: Store, V: InstallVerifier, P: Parker>(
    pipeline: &Pipeline<S, V, P>,
    body: &str,
) -> (u16, Value) {
    read(pipeline.handle(form_post(pipeline.family(), body)).await)
}

/// Fails when a secret of these tests shows up in logs, metrics or records.
pub fn assert_no_secrets(logs: &Capture, metrics: &Capture, records: &[Value]) {
    let logs = logs.text();
    assert!(
        !logs.contains(SECRET_MARK),
        "a token leaked into the logs:\n{logs}"
    );
    assert!(
        !metrics.text().contains(SECRET_MARK),
        "a token leaked into the metrics"
    );
    let records = serde_json::to_string(records).unwrap();
    assert!(
        !records.contains(SECRET_MARK),
        "a token leaked into the records"
    );
}

/// The request log lines (one per request) as JSON.
pub fn request_lines(logs: &Capture) -> Vec<Value> {
    logs.text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "request")
        .collect()
}

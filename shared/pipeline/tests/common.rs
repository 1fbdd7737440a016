//! Helpers of the handler tests: API Gateway HTTP API (payload v2) requests, wire bodies,
//! a pipeline over DynamoDB Local, log and metrics capture, and a fake Bitrix24 `app.info`.

#![allow(dead_code)]

use b24_events::Family;
use b24_pipeline::{AppInfoVerifier, Config, Metrics, Pipeline};
use b24_state::DynamoStore;
use base64::Engine;
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Markers every secret in these tests carries, so a leak is easy to find in captured output.
pub const SECRET_MARK: &str = "SECRETVALUE";

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

/// An API Gateway HTTP API (payload format 2.0) request as Lambda delivers it.
pub fn apigw(
    method: &str,
    family: Family,
    content_type: Option<&str>,
    body: &[u8],
    base64: bool,
) -> Request {
    let path = family.route();
    let mut headers = json!({"host": "abc123.execute-api.eu-central-1.amazonaws.com", "user-agent": "Bitrix24 Webhook Engine"});
    if let Some(ct) = content_type {
        headers["content-type"] = json!(ct);
    }
    let body_text = if base64 {
        base64::engine::general_purpose::STANDARD.encode(body)
    } else {
        String::from_utf8(body.to_vec()).expect("non-base64 test bodies are UTF-8")
    };
    let event = json!({
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
    });
    lambda_http::request::from_str(&event.to_string()).expect("valid API Gateway v2 request")
}

/// A POST with a form body.
pub fn form_post(family: Family, body: &str) -> Request {
    apigw(
        "POST",
        family,
        Some("application/x-www-form-urlencoded"),
        body.as_bytes(),
        false,
    )
}

/// Status and JSON body of a response.
pub fn read(response: Response<Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = serde_json::from_slice(response.body().as_ref()).expect("every answer is JSON");
    (status, body)
}

/// A wire-shaped ONAPPINSTALL (fixture F14) for `member`, with tokens and endpoint.
pub fn install(member: &str, app: &str, access: &str, endpoint: &str) -> Value {
    json!({
        "event": "ONAPPINSTALL",
        "data": {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "ru"},
        "ts": "1773759000",
        "auth": {
            "domain": "some-domain.bitrix24.ru", "scope": "imconnector imopenlines",
            "access_token": access, "refresh_token": format!("refresh{SECRET_MARK}"), "expires_in": "3600",
            "server_endpoint": "https://oauth.bitrix24.tech/rest/", "status": "F",
            "client_endpoint": endpoint, "member_id": member, "application_token": app
        }
    })
}

/// A wire-shaped ONIMCONNECTORMESSAGEADD (fixture F1) for `member`.
pub fn message_add(member: &str, app: &str, message_id: i64) -> Value {
    json!({
        "event": "ONIMCONNECTORMESSAGEADD",
        "event_handler_id": "555",
        "data": {"CONNECTOR": "myconnector", "LINE": "107", "MESSAGES": [{
            "im": {"chat_id": "1807", "message_id": message_id.to_string()},
            "message": {"user_id": "27", "text": "[b]Светлана Иванова:[/b] [br]Добрый день!"},
            "chat": {"id": "channel-123"}
        }]},
        "ts": "1773759161",
        "auth": {
            "access_token": access_token(9), "expires": "1773762761", "expires_in": "3600",
            "scope": "imconnector, imopenlines", "domain": "some-domain.bitrix24.ru",
            "server_endpoint": "https://oauth.bitrix24.tech/rest/", "status": "F",
            "client_endpoint": "https://some-domain.bitrix24.ru/rest/", "member_id": member,
            "user_id": "27", "application_token": app
        }
    })
}

/// The PHP `http_build_query` form of a wire-shaped event.
pub fn form(v: &Value) -> String {
    b24_events::encode::php_form(v)
}

/// A unique portal id per test.
pub fn member(tag: &str) -> String {
    format!("{tag}-{}", fastrand_id())
}

fn fastrand_id() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", n, std::process::id())
}

/// Everything a handler test needs.
pub struct Harness {
    pub store: Arc<DynamoStore>,
    pub metrics: Capture,
    pub config: Config,
}

impl Harness {
    pub fn pipeline(&self, family: Family) -> Pipeline<DynamoStore, AppInfoVerifier> {
        let mut config = self.config.clone();
        config.family = family;
        let verifier = AppInfoVerifier::new(config.verifier.clone());
        let metrics = Metrics::with_sink("Test", Arc::new(Mutex::new(self.metrics.clone())));
        Pipeline::new(&config, self.store.clone(), verifier, metrics)
    }
}

/// A configuration for tests: a plain-HTTP loopback verifier is allowed (local fake app.info).
pub fn test_config(table: &str, max_body_bytes: Option<usize>) -> Config {
    let table = table.to_string();
    let max = max_body_bytes.map(|m| m.to_string());
    Config::from_lookup(Family::App, move |k| match k {
        "TABLE_NAME" => Some(table.clone()),
        "VERIFIER_ALLOW_INSECURE" => Some("true".into()),
        "VERIFIER_TIMEOUT_MS" => Some("1000".into()),
        "MAX_BODY_BYTES" => max.clone(),
        _ => None,
    })
    .expect("test configuration is valid")
}

/// A fake Bitrix24 REST endpoint on 127.0.0.1 answering `app.info`: 200 with a result for
/// `good_token`, 401 `expired_token` otherwise. Serves at most `max_requests`, then stops.
pub async fn fake_app_info(
    good_token: String,
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
                (
                    "200 OK",
                    r#"{"result":{"ID":5,"CODE":"vendor.connector","VERSION":1,"STATUS":"F","INSTALLED":true}}"#,
                )
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
pub async fn post<S: b24_state::Store, V: b24_pipeline::TokenChangeVerifier>(
    pipeline: &Pipeline<S, V>,
    body: &str,
) -> (u16, Value) {
    let response = pipeline
        .handle(form_post(pipeline.family(), body))
        .await
        .expect("the pipeline never fails");
    read(response)
}

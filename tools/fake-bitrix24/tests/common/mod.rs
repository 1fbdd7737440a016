//! Shared test helpers: a started fake with one app and portal, HTTP helpers, a bound on
//! every test, and a capturing event handler.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use b24_fake_bitrix24::{AppSpec, FakeBitrix24, FakeConfig, InstallCredentials, PortalSpec};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub const CLIENT_ID: &str = "local.test.app";
pub const SECRET: &str = "test-client-secret-0001";
pub const MEMBER: &str = "a223c6b3710f85df22e9377d6c4f7553";
pub const OTHER_MEMBER: &str = "d897063e1ce7c5eb9f04b9751eef5915";
pub const PREFIX: &str = "FAKETOK";

/// Runs a test body under a hard time limit.
pub async fn bounded<F: Future<Output = T>, T>(f: F) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test took longer than 30 s")
}

/// A fake with app [`CLIENT_ID`] and portals [`MEMBER`], [`OTHER_MEMBER`]; tokens prefixed;
/// the clock frozen (time moves only through `advance_clock`), so no test depends on how fast
/// the machine runs it.
pub async fn start() -> (FakeBitrix24, InstallCredentials) {
    start_with(|_| {}).await
}

pub async fn start_with(edit: impl FnOnce(&mut FakeConfig)) -> (FakeBitrix24, InstallCredentials) {
    let mut config = FakeConfig {
        token_prefix: PREFIX.into(),
        apps: vec![AppSpec::new(CLIENT_ID, SECRET)],
        portals: vec![
            PortalSpec::new(MEMBER, CLIENT_ID),
            PortalSpec::new(OTHER_MEMBER, CLIENT_ID),
        ],
        freeze_clock: true,
        ..FakeConfig::default()
    };
    edit(&mut config);
    let fake = FakeBitrix24::start(config).await.expect("fake starts");
    let creds = fake.initial_credentials()[0].clone();
    (fake, creds)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, value)
}

/// POSTs `params` as JSON to `{client_endpoint}{method}` with `auth` = `token`.
pub async fn rest(endpoint: &str, token: &str, method: &str, params: Value) -> (u16, Value) {
    let mut body = params;
    body["auth"] = Value::String(token.to_string());
    let response = client()
        .post(format!("{endpoint}{method}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("REST call");
    answer(response).await
}

/// POSTs a raw form body to `{client_endpoint}{method}`.
pub async fn rest_form(endpoint: &str, method: &str, form: String) -> (u16, Value) {
    let response = client()
        .post(format!("{endpoint}{method}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("REST call");
    answer(response).await
}

/// GETs any URL and decodes the JSON answer.
pub async fn get(url: &str) -> (u16, Value) {
    answer(client().get(url).send().await.expect("GET")).await
}

/// POSTs JSON to any URL.
pub async fn post_json(url: &str, body: &Value) -> (u16, Value) {
    let request = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    answer(request.send().await.expect("POST")).await
}

/// `GET {oauth_url}?grant_type=refresh_token&…` as the docs show it.
pub async fn refresh(
    fake: &FakeBitrix24,
    client_id: &str,
    secret: &str,
    token: &str,
) -> (u16, Value) {
    get(&refresh_url(fake, client_id, secret, token)).await
}

pub fn refresh_url(fake: &FakeBitrix24, client_id: &str, secret: &str, token: &str) -> String {
    let query = serde_urlencoded::to_string([
        ("grant_type", "refresh_token"),
        ("client_id", client_id),
        ("client_secret", secret),
        ("refresh_token", token),
    ])
    .unwrap();
    format!("{}?{query}", fake.oauth_url())
}

/// One request an event handler received.
#[derive(Debug, Clone)]
pub struct Captured {
    pub path: String,
    pub content_type: String,
    pub body: String,
}

impl Captured {
    /// The raw (decoded) key/value pairs, in order, with no PHP interpretation.
    pub fn pairs(&self) -> Vec<(String, String)> {
        serde_urlencoded::from_str(&self.body).expect("form body")
    }

    pub fn field(&self, key: &str) -> Option<String> {
        self.pairs()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// Runs inside the handler before it answers (e.g. to call the fake back, as a product would).
pub type Hook = Arc<dyn Fn(Captured) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A local event handler on 127.0.0.1 that records every request and answers 200
/// `{"outcome":"applied"}`, optionally running a hook first (e.g. calling the fake back).
pub struct Handler {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Captured>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Handler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Handler {
    pub async fn start() -> Handler {
        Self::start_with_hook(None).await
    }

    pub async fn start_with_hook(hook: Option<Hook>) -> Handler {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Captured>>> = Arc::default();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = record.clone();
                let hook = hook.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let record = record.clone();
                        let hook = hook.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let content_type = req
                                .headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let captured = Captured {
                                path,
                                content_type,
                                body: String::from_utf8_lossy(&body).into_owned(),
                            };
                            record.lock().unwrap().push(captured.clone());
                            if let Some(hook) = hook {
                                hook(captured).await;
                            }
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                Bytes::from_static(br#"{"outcome":"applied"}"#),
                            )))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Handler { url, seen, task }
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.seen.lock().unwrap().clone()
    }
}

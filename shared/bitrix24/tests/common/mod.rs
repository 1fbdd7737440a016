//! Shared by the integration tests: a started fake Bitrix24 (clock frozen, every token
//! prefixed with [`MARK`]), clients for it, raw TCP servers that misbehave, and the leak check.
#![allow(dead_code)]

use std::fmt::{Debug, Display};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use b24_fake_bitrix24::{AppSpec, FakeBitrix24, FakeConfig, InstallCredentials, PortalSpec};
use b24_rest::{
    ClientCredentials, HttpLimits, OAuthClient, OAuthConfig, RestClient, RestConfig, StaticSecret,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const CLIENT_ID: &str = "local.b24rest.test";
/// The client secret; contains [`MARK`] so a leak of it is caught too.
pub const SECRET: &str = "LEAKMARK-client-secret-0001";
pub const MEMBER: &str = "a223c6b3710f85df22e9377d6c4f7553";
pub const OTHER_MEMBER: &str = "d897063e1ce7c5eb9f04b9751eef5915";
/// The fake's `token_prefix`: every token it issues starts with it.
pub const MARK: &str = "LEAKMARK";

/// Runs a test body under a hard time limit.
pub async fn bounded<F: Future<Output = T>, T>(f: F) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test took longer than 60 s")
}

/// A fake with app [`CLIENT_ID`] and portals [`MEMBER`], [`OTHER_MEMBER`], its clock frozen
/// (time moves only through `advance_clock`), tokens prefixed with [`MARK`].
pub async fn start() -> (FakeBitrix24, InstallCredentials) {
    let fake = FakeBitrix24::start(FakeConfig {
        token_prefix: MARK.into(),
        apps: vec![AppSpec::new(CLIENT_ID, SECRET)],
        portals: vec![
            PortalSpec::new(MEMBER, CLIENT_ID),
            PortalSpec::new(OTHER_MEMBER, CLIENT_ID),
        ],
        freeze_clock: true,
        ..FakeConfig::default()
    })
    .await
    .expect("fake starts");
    let creds = fake.initial_credentials()[0].clone();
    (fake, creds)
}

pub fn app() -> ClientCredentials<StaticSecret> {
    ClientCredentials::new(CLIENT_ID, StaticSecret::new(SECRET))
}

/// Short timeouts, for the tests of servers that stall.
pub fn quick() -> HttpLimits {
    HttpLimits {
        connect_timeout: Duration::from_millis(500),
        timeout: Duration::from_millis(700),
        max_body_bytes: 64 * 1024,
    }
}

pub fn oauth(fake: &FakeBitrix24) -> OAuthClient {
    OAuthClient::new(OAuthConfig::local(fake.oauth_url())).expect("OAuth client")
}

pub fn oauth_at(url: &str, limits: HttpLimits) -> OAuthClient {
    OAuthClient::new(OAuthConfig {
        limits,
        ..OAuthConfig::local(url)
    })
    .expect("OAuth client")
}

pub fn rest() -> RestClient {
    RestClient::new(RestConfig::local()).expect("REST client")
}

pub fn rest_with(limits: HttpLimits) -> RestClient {
    RestClient::new(RestConfig {
        allow_insecure: true,
        limits,
    })
    .expect("REST client")
}

/// Fails when the error's `Display` or `Debug` shows a token or the secret.
pub fn assert_clean(e: &(impl Display + Debug)) {
    let shown = format!("{e} / {e:?}");
    assert!(
        !shown.contains(MARK),
        "a secret leaked into an error: {shown}"
    );
}

/// A server on 127.0.0.1 that accepts connections and never answers (nor closes them).
/// Returns its base URL `http://127.0.0.1:P`.
pub async fn stalling_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    url
}

/// A server on 127.0.0.1 that answers every request with `respond(request text)` (raw
/// HTTP bytes) and closes the connection. Returns its base URL.
pub async fn raw_server(respond: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let respond = Arc::new(respond);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let respond = respond.clone();
            tokio::spawn(async move {
                let request = read_request(&mut stream).await;
                let _ = stream.write_all(&respond(&request)).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    url
}

/// A server that answers 200 with a body that never ends (until the client hangs up, or
/// 256 MiB). Returns its base URL.
pub async fn endless_body_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                read_request(&mut stream).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{\"result\":\"";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'a'; 64 * 1024];
                for _ in 0..4096 {
                    if stream.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// A raw HTTP answer.
pub fn http_answer(status: u16, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one request: the head, then `content-length` bytes of body (bounded).
async fn read_request(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&data).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return text;
            }
        }
        if data.len() > 1 << 20 {
            return text;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&data).to_string(),
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
}

/// Generous timeouts (a body that never ends must be cut by the size bound, not the clock).
pub fn quick_body_only() -> HttpLimits {
    HttpLimits {
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(30),
        max_body_bytes: 64 * 1024,
    }
}

//! The HTTP plumbing both clients share: a reqwest client that follows no redirects, ignores
//! proxies and is bounded in time, and a body reader bounded in size.
//!
//! Transport errors are described by kind only: reqwest's own messages carry the URL, and the
//! OAuth URL carries the client secret and the refresh token in its query string.

use crate::config::{ConfigError, HttpLimits};

/// A client with `limits`; plain `http` URLs are refused by the client itself when
/// `https_only`.
pub(crate) fn client(
    limits: &HttpLimits,
    https_only: bool,
) -> Result<reqwest::Client, ConfigError> {
    limits.check()?;
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(limits.connect_timeout)
        .timeout(limits.timeout)
        .no_proxy()
        .https_only(https_only)
        .user_agent(concat!("b24-rest/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConfigError::Client(describe(&e).to_string()))
}

/// An answer read whole.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why no whole answer was read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// Connection, TLS, timeout… (retryable).
    Transport(&'static str),
    /// The body is longer than the bound.
    TooLarge(usize),
}

/// Sends `request` and reads the answer, at most `max` bytes of body.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    max: usize,
) -> Result<Answer, ReadError> {
    let mut response = request
        .send()
        .await
        .map_err(|e| ReadError::Transport(describe(&e)))?;
    let status = response.status().as_u16();
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(ReadError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ReadError::Transport(describe(&e)))?
    {
        if body.len() + chunk.len() > max {
            return Err(ReadError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer { status, body })
}

/// A transport error by kind, without its URL.
pub(crate) fn describe(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_redirect() {
        "redirect refused"
    } else if e.is_body() || e.is_decode() {
        "answer body unreadable"
    } else if e.is_builder() {
        "request not buildable"
    } else {
        "transport error"
    }
}

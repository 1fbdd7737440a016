//! Invoking a function: the [`Invoker`] trait, the HTTP invoker for `cargo lambda watch`'s
//! invoke API, and an adapter for in-process closures.

use crate::LocalError;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed, sendable future (the trait stays object-safe without extra crates).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What one invocation returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeOutcome {
    /// The function returned normally; its JSON result (possibly empty).
    Ok(Vec<u8>),
    /// The function failed (returned an error, panicked, crashed).
    FunctionError {
        /// The `X-Amz-Function-Error` value: `Unhandled` unless the invoker reported another.
        function_error: String,
        /// The error document (`{"errorType":…,"errorMessage":…}`).
        payload: Vec<u8>,
    },
}

impl InvokeOutcome {
    /// A function error with `Unhandled` and this error document.
    pub fn unhandled(payload: impl Into<Vec<u8>>) -> Self {
        InvokeOutcome::FunctionError {
            function_error: "Unhandled".into(),
            payload: payload.into(),
        }
    }
}

/// Invokes functions synchronously (`RequestResponse`). `Err` means the function could not be
/// invoked at all — the runner retries that without counting a retry attempt, like AWS does
/// for throttles and service errors.
pub trait Invoker: Send + Sync {
    /// Invokes `function` with the event `payload` (JSON).
    fn invoke<'a>(
        &'a self,
        function: &'a str,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<InvokeOutcome, LocalError>>;
}

/// Invokes through the Lambda Invoke API of `cargo lambda watch` (or anything speaking it):
/// `POST {base}/2015-03-31/functions/{name}/invocations`.
///
/// cargo-lambda 1.9 answers 200 with the result, and 500 with the runtime's error document
/// (`{"errorType":…,"errorMessage":…}`) for a function error; AWS answers 200 with an
/// `X-Amz-Function-Error` header. Both are function errors here, as is any other 5xx; 404
/// (unknown function), 429 and other 4xx without an error document are invoke errors.
#[derive(Debug, Clone)]
pub struct HttpInvoker {
    base: String,
    timeout: Duration,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<bytes::Bytes>>,
}

impl HttpInvoker {
    /// An invoker for `base` (e.g. `http://127.0.0.1:9000`), with a 15-minute timeout per
    /// invocation (Lambda's maximum; the first invocation under `cargo lambda watch` compiles
    /// the function).
    pub fn new(base: impl Into<String>) -> Self {
        HttpInvoker {
            base: base.into().trim_end_matches('/').to_string(),
            timeout: Duration::from_secs(900),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sets the per-invocation timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn call(&self, function: &str, payload: &[u8]) -> Result<InvokeOutcome, LocalError> {
        let url = format!(
            "{}/2015-03-31/functions/{}/invocations",
            self.base,
            encode_path_segment(function)
        );
        let req = hyper::Request::post(&url)
            .header("content-type", "application/json")
            .header("x-amz-invocation-type", "RequestResponse")
            .body(Full::new(bytes::Bytes::copy_from_slice(payload)))
            .map_err(|e| LocalError::Invoke(format!("{url}: {e}")))?;
        let resp = tokio::time::timeout(self.timeout, async {
            let resp = self.client.request(req).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((parts, body))
        })
        .await
        .map_err(|_| LocalError::Invoke(format!("{url}: no answer within {:?}", self.timeout)))?
        .map_err(|e| LocalError::Invoke(format!("{url}: {e}")))?;
        let (parts, body) = resp;
        let header = parts
            .headers
            .get("x-amz-function-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        classify(parts.status.as_u16(), header, body.to_vec())
            .map_err(|why| LocalError::Invoke(format!("{url}: {why}")))
    }
}

impl Invoker for HttpInvoker {
    fn invoke<'a>(
        &'a self,
        function: &'a str,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<InvokeOutcome, LocalError>> {
        Box::pin(self.call(function, payload))
    }
}

/// Maps an Invoke API answer to an outcome; `Err` is an invoke (not function) error.
pub(crate) fn classify(
    status: u16,
    function_error_header: Option<String>,
    body: Vec<u8>,
) -> Result<InvokeOutcome, String> {
    if (200..300).contains(&status) {
        return Ok(match function_error_header {
            Some(function_error) => InvokeOutcome::FunctionError {
                function_error,
                payload: body,
            },
            None => InvokeOutcome::Ok(body),
        });
    }
    let doc: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let is_error_doc = doc
        .as_ref()
        .is_some_and(|d| d.get("errorType").is_some() || d.get("errorMessage").is_some());
    let snippet = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    match status {
        404 | 429 => Err(format!("HTTP {status}: {}", snippet())),
        500..=599 => Ok(InvokeOutcome::FunctionError {
            function_error: function_error_header.unwrap_or_else(|| "Unhandled".into()),
            payload: body,
        }),
        _ if is_error_doc => Ok(InvokeOutcome::FunctionError {
            function_error: function_error_header.unwrap_or_else(|| "Unhandled".into()),
            payload: body,
        }),
        _ => Err(format!("HTTP {status}: {}", snippet())),
    }
}

/// `errorType: errorMessage` of an error document, for log lines (at most 200 characters).
pub(crate) fn error_summary(payload: &[u8]) -> String {
    let doc: Option<serde_json::Value> = serde_json::from_slice(payload).ok();
    let field = |k: &str| {
        doc.as_ref()
            .and_then(|d| d.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let text = match (field("errorType"), field("errorMessage")) {
        (Some(t), Some(m)) => format!("{t}: {m}"),
        (Some(t), None) => t,
        (None, Some(m)) => m,
        (None, None) => String::from_utf8_lossy(payload).into_owned(),
    };
    text.chars().take(200).collect()
}

fn encode_path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An in-process invoker from a closure `(function, event) -> outcome`, for tests that run the
/// handler in the same process.
pub fn invoker_fn<F, Fut>(f: F) -> FnInvoker<F>
where
    F: Fn(String, serde_json::Value) -> Fut + Send + Sync,
    Fut: Future<Output = Result<InvokeOutcome, LocalError>> + Send + 'static,
{
    FnInvoker(f)
}

/// See [`invoker_fn`].
pub struct FnInvoker<F>(F);

impl<F, Fut> Invoker for FnInvoker<F>
where
    F: Fn(String, serde_json::Value) -> Fut + Send + Sync,
    Fut: Future<Output = Result<InvokeOutcome, LocalError>> + Send + 'static,
{
    fn invoke<'a>(
        &'a self,
        function: &'a str,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<InvokeOutcome, LocalError>> {
        let event = serde_json::from_slice(payload).unwrap_or(serde_json::Value::Null);
        Box::pin((self.0)(function.to_string(), event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_cargo_lambda_and_aws_answers() {
        assert_eq!(
            classify(200, None, b"{}".to_vec()),
            Ok(InvokeOutcome::Ok(b"{}".to_vec()))
        );
        let aws = classify(200, Some("Handled".into()), b"{}".to_vec());
        assert!(
            matches!(aws, Ok(InvokeOutcome::FunctionError { ref function_error, .. }) if function_error == "Handled")
        );
        let body = br#"{"errorType":"&str","errorMessage":"boom"}"#.to_vec();
        let cl = classify(500, None, body.clone());
        assert_eq!(cl, Ok(InvokeOutcome::unhandled(body)));
        assert!(matches!(
            classify(502, None, Vec::new()),
            Ok(InvokeOutcome::FunctionError { .. })
        ));
        assert!(classify(404, None, br#"{"title":"Missing function"}"#.to_vec()).is_err());
        assert!(classify(429, None, Vec::new()).is_err());
        assert!(classify(400, None, b"bad".to_vec()).is_err());
    }

    #[test]
    fn encodes_function_names() {
        assert_eq!(encode_path_segment("b24-fn_x.1"), "b24-fn_x.1");
        assert_eq!(encode_path_segment("a b/c"), "a%20b%2Fc");
    }
}

//! REST calls on a portal: `POST {client_endpoint}{method}` with a JSON body that carries the
//! access token as `auth`, single calls and `batch`.
//!
//! Nothing is retried here: on [`RestError::ExpiredToken`] the caller refreshes
//! ([`crate::OAuthClient::refresh`]) and retries once; on [`RestError::RateLimited`] and
//! [`RestError::Unavailable`] it retries later (the whole invocation, or a queue redelivery).

use b24_events::Secret;
use serde_json::{Map, Value};

use crate::answer::{error_of, MethodError, QUERY_LIMIT_EXCEEDED};
use crate::batch::{cmd_object, BatchAnswer, Command, MAX_BATCH_COMMANDS};
use crate::config::{ConfigError, HttpLimits};
use crate::endpoint;
use crate::http::{self, ReadError};

/// Settings of a [`RestClient`]. `RestConfig::default()` is production: https only,
/// connect 3 s, whole request 10 s, answers up to 1 MiB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestConfig {
    /// Local tests and the dev stack only: allows plain `http` endpoints (the fake Bitrix24).
    pub allow_insecure: bool,
    /// Timeouts and the answer bound.
    pub limits: HttpLimits,
}

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            allow_insecure: false,
            limits: HttpLimits {
                connect_timeout: std::time::Duration::from_secs(3),
                timeout: std::time::Duration::from_secs(10),
                max_body_bytes: 1 << 20,
            },
        }
    }
}

impl RestConfig {
    /// For local tests: plain `http` allowed, default limits.
    pub fn local() -> Self {
        RestConfig {
            allow_insecure: true,
            ..RestConfig::default()
        }
    }
}

/// Why a REST call failed. Never contains a token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    /// 401 `expired_token`: refresh the tokens and retry once.
    #[error("expired_token: the access token has expired")]
    ExpiredToken,
    /// 401 `invalid_token` or `NO_AUTH_FOUND`: the token is not (or no longer) this portal's;
    /// refreshing may help once, else the app was uninstalled.
    #[error("invalid_token: the access token is not valid for this portal")]
    InvalidToken,
    /// 503 `QUERY_LIMIT_EXCEEDED` (2 requests/s per portal, burst 50): retry later.
    #[error("QUERY_LIMIT_EXCEEDED: the portal's rate limit is reached")]
    RateLimited,
    /// The method failed (an error answer other than the above, status below 500).
    #[error("method error {code}: {description}")]
    Method {
        /// `error`, e.g. `ERROR_METHOD_NOT_FOUND`.
        code: String,
        /// `error_description` (cleaned: bounded, no token).
        description: String,
    },
    /// Connection, timeout, 5xx: retryable.
    #[error("Bitrix24 unavailable: {0}")]
    Unavailable(String),
    /// The answer is not one Bitrix24 gives (not JSON, no `result`, too large, …).
    #[error("Bitrix24 answer malformed: {0}")]
    Malformed(String),
    /// More than [`MAX_BATCH_COMMANDS`] commands in one batch (a programming error: split
    /// them); nothing was sent.
    #[error("more than 50 commands in one batch")]
    TooManyCommands,
    /// The request cannot be made as asked (the endpoint is not https or not a REST base,
    /// a bad method or command name, parameters not an object); nothing was sent.
    #[error("request refused: {0}")]
    InvalidRequest(String),
}

impl RestError {
    /// Whether trying again later (without refreshing) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RestError::RateLimited | RestError::Unavailable(_))
    }

    /// The method error, for [`RestError::Method`].
    pub fn method_error(&self) -> Option<MethodError> {
        match self {
            RestError::Method { code, description } => Some(MethodError {
                code: code.clone(),
                description: description.clone(),
            }),
            _ => None,
        }
    }
}

/// Calls Bitrix24 REST methods. Cheap to clone; build one per process.
#[derive(Clone, Debug)]
pub struct RestClient {
    http: reqwest::Client,
    allow_insecure: bool,
    max_body_bytes: usize,
}

impl RestClient {
    /// A client for `config`.
    pub fn new(config: RestConfig) -> Result<RestClient, ConfigError> {
        Ok(RestClient {
            http: http::client(&config.limits, !config.allow_insecure)?,
            allow_insecure: config.allow_insecure,
            max_body_bytes: config.limits.max_body_bytes,
        })
    }

    /// Calls `method` with `params` (a JSON object, or `null` for none; an `auth` key in it is
    /// replaced by `token`) on the portal whose REST base is `client_endpoint`
    /// (`https://x.bitrix24.eu/rest/`); returns the answer's `result`.
    pub async fn call(
        &self,
        client_endpoint: &str,
        token: &Secret,
        method: &str,
        params: &Value,
    ) -> Result<Value, RestError> {
        let body = match params {
            Value::Null => Map::new(),
            Value::Object(map) => map.clone(),
            _ => return Err(RestError::InvalidRequest("params must be an object".into())),
        };
        let mut answer = self.post(client_endpoint, token, method, body).await?;
        answer
            .get_mut("result")
            .map(Value::take)
            .ok_or_else(|| RestError::Malformed("no result".into()))
    }

    /// Runs up to 50 `commands` in one `batch` request (one request for the rate limit).
    /// With `halt`, Bitrix24 stops at the first failing command. An expired or invalid token
    /// fails the whole batch ([`RestError::ExpiredToken`], …) as a single call would; method
    /// errors come back per command in [`BatchAnswer::errors`]. No commands: an empty answer,
    /// without a request.
    pub async fn batch(
        &self,
        client_endpoint: &str,
        token: &Secret,
        commands: &[Command],
        halt: bool,
    ) -> Result<BatchAnswer, RestError> {
        if commands.len() > MAX_BATCH_COMMANDS {
            return Err(RestError::TooManyCommands);
        }
        let cmd = cmd_object(commands).map_err(RestError::InvalidRequest)?;
        if cmd.is_empty() {
            return Ok(BatchAnswer::default());
        }
        let mut body = Map::new();
        body.insert("halt".into(), Value::from(u8::from(halt)));
        body.insert("cmd".into(), Value::Object(cmd));
        let answer = self.post(client_endpoint, token, "batch", body).await?;
        let result = answer
            .get("result")
            .ok_or_else(|| RestError::Malformed("no result".into()))?;
        BatchAnswer::from_result(result, &[token.expose()]).map_err(RestError::Malformed)
    }

    /// POSTs `body` + `auth` as JSON and returns the answer object, or the error it carries.
    async fn post(
        &self,
        client_endpoint: &str,
        token: &Secret,
        method: &str,
        mut body: Map<String, Value>,
    ) -> Result<Value, RestError> {
        let base = endpoint::client_endpoint(client_endpoint, self.allow_insecure)
            .map_err(|why| RestError::InvalidRequest(format!("client_endpoint: {why}")))?;
        let url = endpoint::method_url(&base, method)
            .map_err(|why| RestError::InvalidRequest(why.into()))?;
        body.insert("auth".into(), Value::String(token.expose().to_string()));
        let request = self.http.post(url).json(&Value::Object(body));
        let answer = http::send(request, self.max_body_bytes)
            .await
            .map_err(|e| match e {
                ReadError::Transport(kind) => RestError::Unavailable(kind.into()),
                ReadError::TooLarge(max) => {
                    RestError::Malformed(format!("answer over {max} bytes"))
                }
            });
        let outcome = answer.and_then(|a| interpret(a.status, &a.body, token));
        match &outcome {
            Ok(_) => tracing::debug!(method, "Bitrix24 call ok"),
            Err(e) => tracing::debug!(method, error = %e, "Bitrix24 call failed"),
        }
        outcome
    }
}

/// The answer object of a successful call, or the error an answer carries.
fn interpret(status: u16, body: &[u8], token: &Secret) -> Result<Value, RestError> {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(e) = value.as_ref().and_then(|v| error_of(v, &[token.expose()])) {
        return Err(match e.code.as_str() {
            "expired_token" => RestError::ExpiredToken,
            "invalid_token" | "NO_AUTH_FOUND" => RestError::InvalidToken,
            QUERY_LIMIT_EXCEEDED => RestError::RateLimited,
            _ if status >= 500 => RestError::Unavailable(format!("HTTP {status} {}", e.code)),
            _ => RestError::Method {
                code: e.code,
                description: e.description,
            },
        });
    }
    if status >= 500 || status == 429 {
        return Err(RestError::Unavailable(format!("HTTP {status}")));
    }
    if !(200..300).contains(&status) {
        return Err(RestError::Malformed(format!(
            "HTTP {status} without an error"
        )));
    }
    match value {
        Some(v @ Value::Object(_)) => Ok(v),
        Some(_) => Err(RestError::Malformed("not a JSON object".into())),
        None => Err(RestError::Malformed("not JSON".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(status: u16, code: &str) -> RestError {
        let body = json!({"error": code, "error_description": "d"}).to_string();
        interpret(status, body.as_bytes(), &Secret::new("tok")).unwrap_err()
    }

    #[test]
    fn error_answers_are_classified() {
        assert_eq!(err(401, "expired_token"), RestError::ExpiredToken);
        assert_eq!(err(401, "invalid_token"), RestError::InvalidToken);
        assert_eq!(err(401, "NO_AUTH_FOUND"), RestError::InvalidToken);
        assert_eq!(err(503, "QUERY_LIMIT_EXCEEDED"), RestError::RateLimited);
        assert!(err(500, "INTERNAL_SERVER_ERROR").is_retryable());
        let m = err(400, "ERROR_CORE");
        assert_eq!(m.method_error().unwrap().code, "ERROR_CORE");
        assert!(!m.is_retryable());
        let t = Secret::new("tok");
        assert!(matches!(
            interpret(502, b"<html>", &t),
            Err(RestError::Unavailable(_))
        ));
        assert!(matches!(
            interpret(200, b"<html>", &t),
            Err(RestError::Malformed(_))
        ));
        assert!(matches!(
            interpret(200, b"[1]", &t),
            Err(RestError::Malformed(_))
        ));
        assert!(matches!(
            interpret(301, b"", &t),
            Err(RestError::Malformed(_))
        ));
        assert_eq!(interpret(200, br#"{"result":1}"#, &t).unwrap()["result"], 1);
    }

    #[tokio::test]
    async fn bad_requests_are_refused_before_sending() {
        let c = RestClient::new(RestConfig::default()).unwrap();
        let t = Secret::new("tok");
        let r = c
            .call("http://x.bitrix24.eu/rest/", &t, "app.info", &Value::Null)
            .await;
        assert!(matches!(r, Err(RestError::InvalidRequest(_))), "{r:?}");
        let r = c
            .call(
                "https://x.bitrix24.eu/rest/",
                &t,
                "../../oauth",
                &Value::Null,
            )
            .await;
        assert!(matches!(r, Err(RestError::InvalidRequest(_))), "{r:?}");
        let r = c
            .call("https://x.bitrix24.eu/rest/", &t, "app.info", &json!([1]))
            .await;
        assert!(matches!(r, Err(RestError::InvalidRequest(_))), "{r:?}");
        let many: Vec<Command> = (0..51)
            .map(|i| Command::new(format!("c{i}"), "app.info", Value::Null))
            .collect();
        let r = c
            .batch("https://x.bitrix24.eu/rest/", &t, &many, false)
            .await;
        assert_eq!(r, Err(RestError::TooManyCommands));
        let none = c.batch("https://x.bitrix24.eu/rest/", &t, &[], false).await;
        assert_eq!(none, Ok(BatchAnswer::default()));
    }
}

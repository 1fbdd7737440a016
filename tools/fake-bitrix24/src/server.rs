//! The HTTP side: accept loop, per-request limits, and routing to OAuth, REST and control.
//!
//! Every connection is HTTP/1.1 with a header-read timeout; every body is read with a size
//! limit and a deadline; at most [`MAX_CONNECTIONS`] connections are served at once.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::answer::ErrorAnswer;
use crate::control;
use crate::php_form::parse_query;
use crate::shared::Shared;
use crate::{oauth, rest};

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 256;

/// Serves until `stop` changes or its sender is dropped.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = stop.changed() => break,
            p = permits.clone().acquire_owned() => p,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            // Out of file descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let shared = shared.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let timeout = shared.config.request_timeout;
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(shared, req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                }
            }
        });
    }
}

enum Route<'a> {
    OAuth,
    Rest { member_id: &'a str, method: &'a str },
    Control(Vec<&'a str>),
    NotFound,
}

fn route(path: &str) -> Route<'_> {
    if path == "/oauth/token/" || path == "/oauth/token" {
        return Route::OAuth;
    }
    if let Some(rest) = path.strip_prefix("/_fake/") {
        return Route::Control(rest.split('/').filter(|s| !s.is_empty()).collect());
    }
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["", "portal", member_id, "rest", method]
            if !member_id.is_empty() && !method.is_empty() =>
        {
            Route::Rest { member_id, method }
        }
        _ => Route::NotFound,
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let is_json = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    let limit = shared.config.max_body_bytes;
    let deadline = shared.config.request_timeout;
    let body = match tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return error_response(&ErrorAnswer::too_large(limit));
        }
        Ok(Err(_)) => {
            return error_response(&ErrorAnswer::invalid_request("Unreadable request body"))
        }
        Err(_) => return error_response(&ErrorAnswer::body_timeout()),
    };
    match route(&path) {
        Route::NotFound => error_response(&ErrorAnswer::not_found()),
        Route::Control(segments) => {
            let (status, value) =
                control::handle(&shared, &parts.method, &segments, &query, &body).await;
            json_response(status, &value)
        }
        Route::OAuth | Route::Rest { .. }
            if !matches!(parts.method, Method::GET | Method::POST) =>
        {
            error_response(&ErrorAnswer::method_not_allowed())
        }
        Route::OAuth => match request_params(&query, &body, is_json) {
            Ok(params) => {
                let now = shared.clock.now();
                let (status, value) =
                    oauth::token(&mut shared.world(), &shared.settings, now, params);
                json_response(status, &value)
            }
            Err(e) => error_response(&e),
        },
        Route::Rest { member_id, method } => match request_params(&query, &body, is_json) {
            Ok(params) => {
                let now = shared.clock.now();
                let (status, value) =
                    rest::call(&mut shared.world(), now, member_id, method, params);
                json_response(status, &value)
            }
            Err(e) => error_response(&e),
        },
    }
}

/// Query string and body merged as PHP's `$_REQUEST` would be (body fields win). The body is
/// JSON when the content type says so, else a form.
fn request_params(
    query: &str,
    body: &[u8],
    is_json: bool,
) -> Result<Map<String, Value>, ErrorAnswer> {
    let mut params = parse_query(query).map_err(ErrorAnswer::invalid_request)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(params);
    }
    let fields = if is_json {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(ErrorAnswer::invalid_request("JSON body must be an object")),
            Err(_) => {
                return Err(ErrorAnswer::invalid_request(
                    "Request body is not valid JSON",
                ))
            }
        }
    } else {
        parse_query(&String::from_utf8_lossy(body)).map_err(ErrorAnswer::invalid_request)?
    };
    params.extend(fields);
    Ok(params)
}

pub(crate) fn json_response(status: u16, value: &Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn error_response(e: &ErrorAnswer) -> Response<Full<Bytes>> {
    json_response(e.status, &e.body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(route("/oauth/token/"), Route::OAuth));
        assert!(matches!(
            route("/portal/abc/rest/app.info.json"),
            Route::Rest {
                member_id: "abc",
                method: "app.info.json"
            }
        ));
        assert!(matches!(route("/portal//rest/x"), Route::NotFound));
        assert!(matches!(route("/portal/a/rest/x/y"), Route::NotFound));
        assert!(
            matches!(route("/_fake/portals/a/bindings"), Route::Control(s) if s == ["portals", "a", "bindings"])
        );
    }

    #[test]
    fn body_fields_win_over_the_query_string() {
        let p = request_params("auth=q&x=1", br#"{"auth":"b"}"#, true).unwrap();
        assert_eq!(Value::Object(p), serde_json::json!({"auth":"b","x":"1"}));
        assert_eq!(
            request_params("", b"{", true).unwrap_err().error,
            "INVALID_REQUEST"
        );
        assert_eq!(
            request_params("", b"[1]", true).unwrap_err().error,
            "INVALID_REQUEST"
        );
        let form = request_params("", b"a[b]=1", false).unwrap();
        assert_eq!(Value::Object(form), serde_json::json!({"a":{"b":"1"}}));
    }
}

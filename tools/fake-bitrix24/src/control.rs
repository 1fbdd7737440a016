//! The `/_fake/…` control and observation endpoints (JSON), for processes other than the test
//! that owns the [`crate::FakeBitrix24`] handle — the local dev stack, shell scripts.

use std::time::Duration;

use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::{AppSpec, PortalSpec};
use crate::error::FakeError;
use crate::events::EventOptions;
use crate::php_form::parse_query;
use crate::rate_limit::RateLimit;
use crate::shared::Shared;

/// Serves one control request; returns the HTTP status and the JSON body.
pub(crate) async fn handle(
    shared: &Shared,
    method: &Method,
    segments: &[&str],
    query: &str,
    body: &[u8],
) -> (u16, Value) {
    match dispatch(shared, method, segments, query, body).await {
        Ok(value) => (200, value),
        Err(Failure::NotFound) => (404, json!({"error": "no such control endpoint"})),
        Err(Failure::Fake(e)) => {
            let status = match e {
                FakeError::UnknownPortal(_) | FakeError::UnknownApp(_) => 404,
                FakeError::Duplicate(_) => 409,
                _ => 400,
            };
            (status, json!({"error": e.to_string()}))
        }
    }
}

enum Failure {
    NotFound,
    Fake(FakeError),
}

impl From<FakeError> for Failure {
    fn from(e: FakeError) -> Self {
        Failure::Fake(e)
    }
}

fn to_json<T: serde::Serialize>(value: T) -> Result<Value, Failure> {
    serde_json::to_value(value).map_err(|e| Failure::Fake(FakeError::InvalidInput(e.to_string())))
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Failure> {
    serde_json::from_slice(body)
        .map_err(|e| Failure::Fake(FakeError::InvalidInput(format!("JSON body: {e}"))))
}

/// A JSON body, or `null` when there is none.
fn optional_json(body: &[u8]) -> Result<Value, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(Value::Null)
    } else {
        parse(body)
    }
}

#[derive(Deserialize)]
struct InstallRequest {
    url: String,
}

#[derive(Deserialize, Default)]
struct UninstallRequest {
    #[serde(default)]
    clean: bool,
}

#[derive(Deserialize)]
struct AdvanceRequest {
    seconds: f64,
}

async fn dispatch(
    shared: &Shared,
    method: &Method,
    segments: &[&str],
    query: &str,
    body: &[u8],
) -> Result<Value, Failure> {
    let get = method == Method::GET;
    let post = method == Method::POST;
    match segments {
        ["health"] if get => Ok(json!({"ok": true, "base_url": shared.settings.base_url})),
        ["calls"] if get => {
            let q = parse_query(query).unwrap_or_default();
            let member = q
                .get("member_id")
                .and_then(Value::as_str)
                .map(str::to_string);
            let calls: Vec<_> = shared
                .calls()
                .into_iter()
                .filter(|c| member.is_none() || c.member_id == member)
                .collect();
            to_json(calls)
        }
        ["apps"] if post => {
            let spec: AppSpec = parse(body)?;
            shared.add_app(spec.clone())?;
            to_json(spec)
        }
        ["portals"] if get => to_json(shared.portals()),
        ["portals"] if post => to_json(shared.add_portal(parse::<PortalSpec>(body)?)?),
        ["portals", m] if get => to_json(shared.portal(m)?),
        ["portals", m, "bindings"] if get => to_json(shared.bindings(m)?),
        ["portals", m, "deliveries"] if get => to_json(shared.deliveries(m)?),
        ["portals", m, "expire-access-tokens"] if post => {
            Ok(json!({"expired": shared.expire_access_tokens(m)?}))
        }
        ["portals", m, "revoke-refresh-tokens"] if post => {
            Ok(json!({"revoked": shared.revoke_refresh_tokens(m)?}))
        }
        ["portals", m, "rotate-application-token"] if post => {
            Ok(json!({"application_token": shared.rotate_application_token(m)?}))
        }
        ["portals", m, "rate-limit"] if post => {
            let limit: Option<RateLimit> = parse(body)?;
            shared.set_rate_limit(Some(m), limit)?;
            Ok(json!({"rate_limit": limit}))
        }
        ["rate-limit"] if post => {
            let limit: Option<RateLimit> = parse(body)?;
            shared.set_rate_limit(None, limit)?;
            Ok(json!({"rate_limit": limit}))
        }
        ["portals", m, "events", event] if post => {
            let data = optional_json(body)?;
            let q = parse_query(query).unwrap_or_default();
            let with_token = q
                .get("with_access_token")
                .and_then(Value::as_str)
                .is_none_or(|v| v != "0" && v != "false");
            let options = EventOptions {
                with_access_token: with_token,
            };
            to_json(shared.send_event(m, event, &data, options).await?)
        }
        ["portals", m, "install"] if post => {
            let request: InstallRequest = parse(body)?;
            to_json(shared.install(m, &request.url).await?)
        }
        ["portals", m, "uninstall"] if post => {
            let request: UninstallRequest = match optional_json(body)? {
                Value::Null => UninstallRequest::default(),
                v => serde_json::from_value(v)
                    .map_err(|e| Failure::Fake(FakeError::InvalidInput(e.to_string())))?,
            };
            to_json(shared.uninstall(m, request.clean).await?)
        }
        ["clock", "advance"] if post => {
            let request: AdvanceRequest = parse(body)?;
            let by = Duration::try_from_secs_f64(request.seconds)
                .map_err(|_| FakeError::InvalidInput("seconds: a non-negative number".into()))?;
            shared.advance_clock(by);
            Ok(json!({"now": shared.clock.now()}))
        }
        ["reset"] if post => to_json(shared.reset()?),
        _ => Err(Failure::NotFound),
    }
}

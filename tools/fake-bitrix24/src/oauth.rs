//! The OAuth server's token endpoint, `GET|POST {base}/oauth/token/` (`settings/oauth/
//! auto-renewal.md`, `settings/oauth/error-codes.md`). Only `grant_type=refresh_token` is served.

use serde_json::{Map, Value};

use crate::answer::ErrorAnswer;
use crate::params::text;
use crate::records::CallKind;
use crate::world::{Settings, World};

/// The `method` of OAuth entries in the call log.
pub(crate) const LOG_METHOD: &str = "oauth/token";

/// Serves one token request (query string and form body merged); returns status and body.
pub(crate) fn token(
    world: &mut World,
    settings: &Settings,
    now: f64,
    params: Map<String, Value>,
) -> (u16, Value) {
    let (member_id, outcome) = refresh(world, settings, now.floor() as i64, &params);
    let (status, body, code) = match outcome {
        Ok(answer) => (200, answer, "ok".to_string()),
        Err(e) => (e.status, e.body(), e.error),
    };
    world.log(
        now,
        CallKind::Oauth,
        member_id.as_deref(),
        LOG_METHOD,
        Value::Object(params),
        Some(status),
        &code,
        None,
    );
    (status, body)
}

fn refresh(
    world: &mut World,
    settings: &Settings,
    now: i64,
    params: &Map<String, Value>,
) -> (Option<String>, Result<Value, ErrorAnswer>) {
    let field = |name: &str| {
        params
            .get(name)
            .and_then(text)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ErrorAnswer::oauth_invalid_request(format!("Missing parameter: {name}")))
    };
    let required = (|| {
        let grant_type = field("grant_type")?;
        let client_id = field("client_id")?;
        let client_secret = field("client_secret")?;
        Ok::<_, ErrorAnswer>((grant_type, client_id, client_secret))
    })();
    let (grant_type, client_id, client_secret) = match required {
        Ok(fields) => fields,
        Err(e) => return (None, Err(e)),
    };
    if grant_type != "refresh_token" {
        let e = ErrorAnswer::oauth_invalid_request(
            "Unsupported grant_type: this fake serves refresh_token only",
        );
        return (None, Err(e));
    }
    let refresh_token = match field("refresh_token") {
        Ok(t) => t,
        Err(e) => return (None, Err(e)),
    };
    world.refresh(settings, now, &client_id, &client_secret, &refresh_token)
}

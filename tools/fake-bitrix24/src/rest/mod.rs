//! REST calls on `{client_endpoint}{method}`: portal → rate limit → access token → method, then
//! one call log entry. `batch` runs its commands through the same method table.

mod app_info;
mod batch;
mod bindings;
mod delivery;

use serde_json::{Map, Value};

use crate::answer::{ErrorAnswer, MethodResult};
use crate::params;
use crate::records::CallKind;
use crate::world::{AuthContext, World};

/// Serves one REST request: returns the HTTP status and the JSON body.
pub(crate) fn call(
    world: &mut World,
    now: f64,
    member_id: &str,
    method: &str,
    params: Map<String, Value>,
) -> (u16, Value) {
    let method = normalize(method);
    let outcome = run(world, now, member_id, &method, &params);
    let (status, body, code) = match outcome {
        Ok(result) => (200, result.envelope(now, now), "ok".to_string()),
        Err(e) => (e.status, e.body(), e.error),
    };
    let portal = world.portals.contains_key(member_id).then_some(member_id);
    world.log(
        now,
        CallKind::Rest,
        portal,
        &method,
        Value::Object(params),
        Some(status),
        &code,
        None,
    );
    (status, body)
}

/// Bitrix24 method names are case-insensitive and may end in `.json`.
pub(crate) fn normalize(method: &str) -> String {
    let lower = method.trim().to_ascii_lowercase();
    lower.strip_suffix(".json").unwrap_or(&lower).to_string()
}

fn run(
    world: &mut World,
    now: f64,
    member_id: &str,
    method: &str,
    params: &Map<String, Value>,
) -> Result<MethodResult, ErrorAnswer> {
    let portal = world
        .portals
        .get_mut(member_id)
        .ok_or_else(ErrorAnswer::portal_not_found)?;
    if !portal.bucket.admit(now) {
        return Err(ErrorAnswer::query_limit_exceeded());
    }
    let token = params
        .get("auth")
        .and_then(params::text)
        .filter(|t| !t.is_empty())
        .ok_or_else(ErrorAnswer::no_auth)?;
    let ctx = world.authenticate(member_id, &token, now.floor() as i64)?;
    if method == "batch" {
        return batch::run(world, now, &ctx, params);
    }
    call_method(world, now, &ctx, method, params, None)
}

/// The method table shared by single calls and `batch` commands.
fn call_method(
    world: &mut World,
    now: f64,
    ctx: &AuthContext,
    method: &str,
    params: &Map<String, Value>,
    batch_command: Option<&str>,
) -> Result<MethodResult, ErrorAnswer> {
    match method {
        "app.info" => app_info::app_info(world, ctx),
        "event.bind" => bindings::bind(world, ctx, params),
        "event.unbind" => bindings::unbind(world, ctx, params),
        "event.get" => bindings::list(world, ctx),
        "imconnector.send.status.delivery" => {
            require_scope(ctx, "imopenlines")?;
            delivery::record(world, now, ctx, params, batch_command)
        }
        _ => Err(ErrorAnswer::method_not_found()),
    }
}

fn require_scope(ctx: &AuthContext, scope: &str) -> Result<(), ErrorAnswer> {
    if ctx.scopes.iter().any(|s| s == scope) {
        Ok(())
    } else {
        Err(ErrorAnswer::insufficient_scope())
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn method_names_are_case_insensitive_with_optional_json_suffix() {
        assert_eq!(normalize("App.Info.json"), "app.info");
        assert_eq!(normalize("batch"), "batch");
    }
}

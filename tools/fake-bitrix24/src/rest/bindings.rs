//! `event.bind`, `event.unbind`, `event.get` (`api-reference/events/event-*.md`), checked in the
//! order Bitrix24 checks: `EVENT`, `EVENT_TYPE`, `HANDLER`, the handler URL, the event and its
//! scope, then uniqueness of event + handler + `auth_type`.

use serde_json::{json, Map, Value};

use crate::answer::{ErrorAnswer, MethodResult};
use crate::params::{get, integer, non_empty_text, text};
use crate::records::Binding;
use crate::world::{AuthContext, World, MAX_BINDINGS};

/// Events the fake knows, with the scope an application needs to bind them (`None`: any app).
const EVENTS: &[(&str, Option<&str>)] = &[
    ("ONAPPINSTALL", None),
    ("ONAPPUPDATE", None),
    ("ONAPPUNINSTALL", None),
    ("ONAPPTEST", None),
    ("ONAPPPAYMENT", None),
    ("ONOFFLINEEVENT", None),
    ("ONIMCONNECTORMESSAGEADD", Some("imconnector")),
    ("ONIMCONNECTORMESSAGEUPDATE", Some("imconnector")),
    ("ONIMCONNECTORMESSAGEDELETE", Some("imconnector")),
    ("ONIMCONNECTORDIALOGSTART", Some("imconnector")),
    ("ONIMCONNECTORDIALOGFINISH", Some("imconnector")),
    ("ONIMCONNECTORSTATUSDELETE", Some("imconnector")),
    ("ONIMCONNECTORLINEDELETE", Some("imconnector")),
];

/// Events that cannot be bound offline.
const ONLINE_ONLY: &[&str] = &["ONOFFLINEEVENT"];

struct Target {
    event: String,
    offline: bool,
    handler: String,
}

/// `EVENT`, `EVENT_TYPE` and `HANDLER`, validated as both bind and unbind do.
fn target(params: &Map<String, Value>) -> Result<Target, ErrorAnswer> {
    let event = non_empty_text(params, "EVENT")
        .ok_or_else(|| ErrorAnswer::argument_null("EVENT"))?
        .to_ascii_uppercase();
    let event_type = get(params, "EVENT_TYPE")
        .and_then(text)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let offline = match event_type.as_str() {
        "" | "online" => false,
        "offline" => true,
        _ => {
            return Err(ErrorAnswer::argument(
                "Value must be one of {online|offline}",
            ))
        }
    };
    let handler = if offline {
        String::new()
    } else {
        non_empty_text(params, "HANDLER").ok_or_else(|| ErrorAnswer::argument_null("HANDLER"))?
    };
    Ok(Target {
        event,
        offline,
        handler,
    })
}

/// The handler URL must be http(s) with a host that has a dot (so `localhost` is refused, as
/// by Bitrix24; use `127.0.0.1`).
fn check_handler_url(handler: &str) -> Result<(), ErrorAnswer> {
    let url = url::Url::parse(handler).map_err(|_| ErrorAnswer::wrong_handler_url())?;
    match url.host_str() {
        Some(host) if host.contains('.') => {}
        _ => return Err(ErrorAnswer::wrong_handler_url()),
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ErrorAnswer::unsupported_protocol());
    }
    Ok(())
}

/// `event.bind` → `true`.
pub(super) fn bind(
    world: &mut World,
    ctx: &AuthContext,
    params: &Map<String, Value>,
) -> Result<MethodResult, ErrorAnswer> {
    let target = target(params)?;
    // `auth_type` is read with PHP's intval: anything but a number is 0.
    let auth_type = if target.offline {
        0
    } else {
        get(params, "AUTH_TYPE")
            .and_then(integer)
            .unwrap_or(0)
            .max(0) as u64
    };
    if !target.handler.is_empty() {
        check_handler_url(&target.handler)?;
    }
    let known = EVENTS.iter().find(|(name, _)| *name == target.event);
    match known {
        Some((_, Some(scope))) if !ctx.scopes.iter().any(|s| s == scope) => {
            return Err(ErrorAnswer::event_not_found())
        }
        Some(_) => {}
        None => return Err(ErrorAnswer::event_not_found()),
    }
    if target.offline && ONLINE_ONLY.contains(&target.event.as_str()) {
        return Err(ErrorAnswer::argument(
            "Offline event cannot be registered for this event.",
        ));
    }
    let id = world.next_binding_id;
    let portal = world
        .portals
        .get_mut(&ctx.member_id)
        .ok_or_else(ErrorAnswer::invalid_token)?;
    let duplicate = portal.bindings.iter().any(|b| {
        b.event == target.event && b.handler == target.handler && b.auth_type == auth_type
    });
    if duplicate {
        return Err(ErrorAnswer::handler_already_bound());
    }
    if portal.bindings.len() >= MAX_BINDINGS {
        return Err(ErrorAnswer {
            status: 400,
            error: "ERROR_CORE".into(),
            description: "Unable to set event handler: too many handlers on this fake".into(),
        });
    }
    portal.bindings.push(Binding {
        id,
        event: target.event,
        handler: target.handler,
        auth_type,
        offline: target.offline,
    });
    world.next_binding_id += 1;
    Ok(MethodResult::new(Value::Bool(true)))
}

/// `event.unbind` → `{"count": N}`. `auth_type` filters only when given.
pub(super) fn unbind(
    world: &mut World,
    ctx: &AuthContext,
    params: &Map<String, Value>,
) -> Result<MethodResult, ErrorAnswer> {
    let target = target(params)?;
    let auth_type = if target.offline {
        None
    } else {
        get(params, "AUTH_TYPE").map(|v| integer(v).unwrap_or(0).max(0) as u64)
    };
    let portal = world
        .portals
        .get_mut(&ctx.member_id)
        .ok_or_else(ErrorAnswer::invalid_token)?;
    let before = portal.bindings.len();
    portal.bindings.retain(|b| {
        let hit = b.event == target.event
            && b.handler == target.handler
            && b.offline == target.offline
            && auth_type.is_none_or(|a| a == b.auth_type);
        !hit
    });
    let count = before - portal.bindings.len();
    Ok(MethodResult::new(json!({ "count": count })))
}

/// `event.get` → the list, online bindings as `{event, handler, auth_type (string), offline: 0}`,
/// offline ones as `{event, connector_id, offline: 1}`.
pub(super) fn list(world: &World, ctx: &AuthContext) -> Result<MethodResult, ErrorAnswer> {
    let portal = world
        .portals
        .get(&ctx.member_id)
        .ok_or_else(ErrorAnswer::invalid_token)?;
    let items: Vec<Value> = portal
        .bindings
        .iter()
        .map(|b| {
            if b.offline {
                json!({"event": b.event, "connector_id": "", "offline": 1})
            } else {
                json!({"event": b.event, "handler": b.handler,
                       "auth_type": b.auth_type.to_string(), "offline": 0})
            }
        })
        .collect();
    Ok(MethodResult::new(Value::Array(items)))
}

#[cfg(test)]
mod tests {
    use super::check_handler_url;

    #[test]
    fn handler_urls_are_checked_like_bitrix24() {
        assert!(check_handler_url("http://127.0.0.1:9000/bitrix24/messages").is_ok());
        assert!(check_handler_url("https://example.com/h").is_ok());
        let code = |u: &str| check_handler_url(u).unwrap_err().error;
        assert_eq!(code("http://localhost:9000/h"), "ERROR_WRONG_HANDLER_URL");
        assert_eq!(code("example.com/h"), "ERROR_WRONG_HANDLER_URL");
        assert_eq!(code("ftp://example.com/h"), "ERROR_UNSUPPORTED_PROTOCOL");
    }
}

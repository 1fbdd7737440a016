//! The event sender: builds the form bodies Bitrix24's queue server POSTs to handlers (PHP
//! `http_build_query`, bracket keys, every scalar a string: the product's own encoder,
//! `b24_events::encode::php_form`) and sends them.
//!
//! Field order follows the docs' examples: `event`, `event_handler_id`, `data`, `ts`, `auth`,
//! with `auth` as in the raw body of the official PHP SDK's test (access_token, expires,
//! expires_in, scope, domain, server_endpoint, status, client_endpoint, member_id, user_id,
//! application_token); ONAPPINSTALL's `auth` as fixture `api-reference/common/events/
//! on-app-install.md`, ONAPPUNINSTALL's as `on-app-uninstall.md`.

use b24_events::encode::php_form;
use serde_json::{Map, Value};

use crate::error::FakeError;
use crate::records::{Binding, HandlerResponse, InstallCredentials};
use crate::world::{Portal, Settings, World};

/// Most of a handler's answer kept.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How an event is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventOptions {
    /// Put a fresh access token (with `expires`, `expires_in`, `user_id`) in `auth`, as for an
    /// event a user caused. `false` sends `auth` without tokens, as for events of robots,
    /// business processes and agents. Default `true`.
    pub with_access_token: bool,
}

impl Default for EventOptions {
    fn default() -> Self {
        EventOptions {
            with_access_token: true,
        }
    }
}

/// One POST to make.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub member_id: String,
    pub event: String,
    pub handler_id: Option<u64>,
    pub url: String,
    pub body: String,
}

fn check_event_name(event: &str) -> Result<String, FakeError> {
    let ok = !event.is_empty()
        && event.len() <= 100
        && event
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(event.to_ascii_uppercase())
    } else {
        Err(FakeError::InvalidInput(
            "event name: letters, digits and '_' only".into(),
        ))
    }
}

fn installed<'a>(world: &'a World, member_id: &str) -> Result<&'a Portal, FakeError> {
    let portal = world.portal(member_id)?;
    if portal.installed {
        Ok(portal)
    } else {
        Err(FakeError::InvalidInput(format!(
            "portal {member_id} is not installed"
        )))
    }
}

/// Bodies for every online handler bound to `event` on the portal.
pub(crate) fn prepare_event(
    world: &mut World,
    settings: &Settings,
    now: i64,
    member_id: &str,
    event: &str,
    data: &Value,
    options: EventOptions,
) -> Result<Vec<Outgoing>, FakeError> {
    let event = check_event_name(event)?;
    let bindings: Vec<Binding> = installed(world, member_id)?
        .bindings
        .iter()
        .filter(|b| b.event == event && !b.offline)
        .cloned()
        .collect();
    let mut out = Vec::with_capacity(bindings.len());
    for binding in bindings {
        let auth = match event.as_str() {
            "ONAPPINSTALL" => {
                let creds = world.issue_credentials(settings, now, member_id)?;
                install_auth(&creds)
            }
            "ONAPPUNINSTALL" => uninstall_auth(world, settings, member_id)?,
            _ => event_auth(world, settings, now, member_id, &binding, options)?,
        };
        out.push(Outgoing {
            member_id: member_id.to_string(),
            body: body(&event, Some(binding.id), data, now, auth),
            event: event.clone(),
            handler_id: Some(binding.id),
            url: binding.handler,
        });
    }
    Ok(out)
}

/// ONAPPINSTALL to `url` with fresh credentials. A (re)install starts without bindings, as
/// Bitrix24 drops an app's handlers on reinstall and update; after `uninstall` the portal gets
/// a new `application_token`.
pub(crate) fn prepare_install(
    world: &mut World,
    settings: &Settings,
    now: i64,
    member_id: &str,
    url: &str,
) -> Result<(InstallCredentials, Outgoing), FakeError> {
    let parsed = url::Url::parse(url).map_err(|_| FakeError::InvalidInput("url".into()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(FakeError::InvalidInput("url: http or https".into()));
    }
    let reinstall = !world.portal(member_id)?.installed;
    if reinstall {
        world.rotate_application_token(settings, member_id)?;
    }
    let portal = world.portal_mut(member_id)?;
    portal.installed = true;
    portal.bindings.clear();
    let creds = world.issue_credentials(settings, now, member_id)?;
    let portal = world.portal(member_id)?;
    let version = world
        .apps
        .get(&portal.spec.client_id)
        .map_or(1, |a| a.spec.version);
    let data = object([
        ("VERSION", version.to_string()),
        ("ACTIVE", "Y".into()),
        ("INSTALLED", "Y".into()),
        ("LANGUAGE_ID", portal.spec.language.clone()),
    ]);
    let outgoing = Outgoing {
        member_id: member_id.to_string(),
        event: "ONAPPINSTALL".into(),
        handler_id: None,
        url: url.to_string(),
        body: body("ONAPPINSTALL", None, &data, now, install_auth(&creds)),
    };
    Ok((creds, outgoing))
}

/// ONAPPUNINSTALL to the handlers bound to it, then the app is gone: bindings removed, every
/// token revoked, REST answers `invalid_token`.
pub(crate) fn prepare_uninstall(
    world: &mut World,
    settings: &Settings,
    now: i64,
    member_id: &str,
    clean: bool,
) -> Result<Vec<Outgoing>, FakeError> {
    let portal = installed(world, member_id)?;
    let data = object([
        ("LANGUAGE_ID", portal.spec.language.clone()),
        ("CLEAN", if clean { "1" } else { "0" }.to_string()),
    ]);
    let auth = uninstall_auth(world, settings, member_id)?;
    let out = portal
        .bindings
        .iter()
        .filter(|b| b.event == "ONAPPUNINSTALL" && !b.offline)
        .map(|b| Outgoing {
            member_id: member_id.to_string(),
            event: "ONAPPUNINSTALL".into(),
            handler_id: Some(b.id),
            url: b.handler.clone(),
            body: body("ONAPPUNINSTALL", Some(b.id), &data, now, auth.clone()),
        })
        .collect();
    let portal = world.portal_mut(member_id)?;
    portal.installed = false;
    portal.bindings.clear();
    world.revoke_all(member_id);
    Ok(out)
}

fn object<const N: usize>(fields: [(&str, String); N]) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect(),
    )
}

fn body(
    event: &str,
    handler_id: Option<u64>,
    data: &Value,
    ts: i64,
    auth: Map<String, Value>,
) -> String {
    let mut form = Map::new();
    form.insert("event".into(), event.into());
    if let Some(id) = handler_id {
        form.insert("event_handler_id".into(), id.to_string().into());
    }
    if !data.is_null() {
        form.insert("data".into(), data.clone());
    }
    form.insert("ts".into(), ts.to_string().into());
    form.insert("auth".into(), Value::Object(auth));
    php_form(&Value::Object(form))
}

fn push(auth: &mut Map<String, Value>, key: &str, value: impl ToString) {
    auth.insert(key.into(), Value::String(value.to_string()));
}

/// The `auth` block of an ordinary event.
fn event_auth(
    world: &mut World,
    settings: &Settings,
    now: i64,
    member_id: &str,
    binding: &Binding,
    options: EventOptions,
) -> Result<Map<String, Value>, FakeError> {
    let user = if binding.auth_type > 0 {
        binding.auth_type
    } else {
        world.portal(member_id)?.spec.user_id
    };
    let token = if options.with_access_token {
        Some(world.issue_access(settings, now, member_id, Some(user))?)
    } else {
        None
    };
    let portal = world.portal(member_id)?;
    let status = app_status(world, portal);
    let mut auth = Map::new();
    if let Some((access_token, expires)) = &token {
        push(&mut auth, "access_token", access_token);
        push(&mut auth, "expires", expires);
        push(&mut auth, "expires_in", settings.access_lifetime);
    }
    push(&mut auth, "scope", portal.spec.scope.join(","));
    push(&mut auth, "domain", portal.spec.domain());
    push(&mut auth, "server_endpoint", settings.server_endpoint());
    push(&mut auth, "status", status);
    push(
        &mut auth,
        "client_endpoint",
        settings.client_endpoint(member_id),
    );
    push(&mut auth, "member_id", member_id);
    if token.is_some() {
        push(&mut auth, "user_id", user);
    }
    push(&mut auth, "application_token", &portal.application_token);
    Ok(auth)
}

/// ONAPPINSTALL's `auth`, field for field as `on-app-install.md` shows it.
fn install_auth(creds: &InstallCredentials) -> Map<String, Value> {
    let mut auth = Map::new();
    push(&mut auth, "domain", &creds.domain);
    push(&mut auth, "scope", &creds.scope);
    push(&mut auth, "access_token", &creds.access_token);
    push(&mut auth, "refresh_token", &creds.refresh_token);
    push(&mut auth, "expires_in", creds.expires_in);
    push(&mut auth, "server_endpoint", &creds.server_endpoint);
    push(&mut auth, "status", &creds.status);
    push(&mut auth, "client_endpoint", &creds.client_endpoint);
    push(&mut auth, "member_id", &creds.member_id);
    push(&mut auth, "application_token", &creds.application_token);
    auth
}

/// ONAPPUNINSTALL's `auth`: no tokens, the app's rights are already gone.
fn uninstall_auth(
    world: &World,
    settings: &Settings,
    member_id: &str,
) -> Result<Map<String, Value>, FakeError> {
    let portal = world.portal(member_id)?;
    let mut auth = Map::new();
    push(&mut auth, "domain", portal.spec.domain());
    push(&mut auth, "server_endpoint", settings.server_endpoint());
    push(
        &mut auth,
        "client_endpoint",
        settings.client_endpoint(member_id),
    );
    push(&mut auth, "member_id", member_id);
    push(&mut auth, "application_token", &portal.application_token);
    Ok(auth)
}

fn app_status(world: &World, portal: &Portal) -> String {
    world
        .apps
        .get(&portal.spec.client_id)
        .map_or_else(|| "L".into(), |a| a.spec.status.clone())
}

/// POSTs one body and reads the answer (bounded by the client's timeout and
/// [`MAX_ANSWER_BYTES`]). Never fails: an unreachable handler is an answer with `error`.
pub(crate) async fn post(client: &reqwest::Client, out: &Outgoing) -> HandlerResponse {
    let mut response = HandlerResponse {
        event: out.event.clone(),
        event_handler_id: out.handler_id,
        url: out.url.clone(),
        status: None,
        body: String::new(),
        error: None,
    };
    let sent = client
        .post(&out.url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(out.body.clone())
        .send()
        .await;
    let mut answer = match sent {
        Ok(a) => a,
        Err(e) => {
            response.error = Some(describe(&e));
            return response;
        }
    };
    response.status = Some(answer.status().as_u16());
    let mut bytes = Vec::new();
    loop {
        match answer.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_ANSWER_BYTES - bytes.len();
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if bytes.len() >= MAX_ANSWER_BYTES {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                response.error = Some(describe(&e));
                break;
            }
        }
    }
    response.body = String::from_utf8_lossy(&bytes).into_owned();
    response
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "transport error".into()
    }
}

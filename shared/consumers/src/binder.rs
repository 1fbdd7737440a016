//! The binder: the portal tasks the outbox hands over (`portal.installed`, `portal.updated`,
//! `portal.uninstalled`, as `b24.change.v1` JSON on the portal-tasks queue).
//!
//! - After a verified install or update it binds every event this stack serves (the seven
//!   connector events, ONAPPUPDATE, ONAPPUNINSTALL) to the stack's own URLs in one `batch` of
//!   `event.bind` calls — Bitrix24 drops an app's bindings on every update. "Handler already
//!   binded" counts as bound. The result is recorded on the portal (`BINDINGS` record, shown
//!   by `b24-state dump`).
//! - After an uninstall it clears the portal's vault (Bitrix24 revoked the tokens anyway).
//!
//! A task is checked against the portal's current record first, since the queue does not keep
//! order: an install task of an epoch that is no longer installed, or an uninstall task of a
//! portal that is installed again, does nothing.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use b24_events::{EventKind, Family};
use b24_pipeline::talkback::{Bitrix24, TalkError};
use b24_rest::{event_bind_commands, ClientSecretSource};
use b24_state::changes::{Change, ChangeType};
use b24_state::vault::{Cipher, VaultError};
use b24_state::{DynamoStore, MemberId, Store};
use serde_json::{json, Value};

/// The events this stack binds: every event it serves except ONAPPINSTALL (that handler is
/// the app's install URL in its settings, not a binding).
pub fn bound_events() -> Vec<EventKind> {
    EventKind::ALL
        .iter()
        .copied()
        .filter(|k| *k != EventKind::AppInstall)
        .collect()
}

/// The handler URL of each family: `template` with `{family}` replaced (the template passes
/// `https://{api}/bitrix24/{family}`).
#[derive(Clone, Debug)]
pub struct Handlers {
    template: String,
}

impl Handlers {
    /// From `HANDLER_URL_TEMPLATE`; it must contain `{family}` and be an http(s) URL.
    pub fn new(template: impl Into<String>) -> Result<Self, String> {
        let template = template.into();
        if !template.contains("{family}") {
            return Err("HANDLER_URL_TEMPLATE must contain {family}".into());
        }
        if !(template.starts_with("https://") || template.starts_with("http://")) {
            return Err("HANDLER_URL_TEMPLATE must be an http(s) URL".into());
        }
        Ok(Handlers { template })
    }

    /// The URL of `family`'s route.
    pub fn url(&self, family: Family) -> String {
        self.template.replace("{family}", family.as_str())
    }

    /// `(event.bind name, handler URL)` of every bound event.
    pub fn bindings(&self) -> Vec<(String, String)> {
        bound_events()
            .into_iter()
            .map(|k| (k.bind_name().to_string(), self.url(k.family())))
            .collect()
    }
}

/// What one invocation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Portals whose events were bound.
    pub bound: usize,
    /// Vaults cleared after an uninstall.
    pub cleared: usize,
    /// Tasks with nothing to do (stale, not ours, no tokens, needs a reinstall).
    pub skipped: usize,
    /// Portals found needing a reinstall.
    pub needs_reinstall: usize,
    /// Tasks left for a retry.
    pub retried: usize,
}

enum Fate {
    Bound,
    Cleared,
    Skipped(&'static str),
    NeedsReinstall,
    Retry(String),
}

/// Handles every task of `event`; failures are reported per message.
pub async fn handle<S: ClientSecretSource, C: Cipher>(
    b24: &Bitrix24<S, C>,
    store: &DynamoStore,
    handlers: &Handlers,
    event: SqsEvent,
    now: i64,
) -> (SqsBatchResponse, Report) {
    let mut response = SqsBatchResponse::default();
    let mut report = Report::default();
    for message in event.records {
        let id = message.message_id.clone().unwrap_or_default();
        let change = message
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str::<Change>(b).ok());
        let fate = match change {
            Some(change) => task(b24, store, handlers, &change, now).await,
            None => Fate::Skipped("not a change"),
        };
        match &fate {
            Fate::Bound => report.bound += 1,
            Fate::Cleared => report.cleared += 1,
            Fate::Skipped(why) => {
                tracing::info!(message_id = %id, reason = why, "portal task skipped");
                report.skipped += 1
            }
            Fate::NeedsReinstall => report.needs_reinstall += 1,
            Fate::Retry(why) => {
                tracing::warn!(message_id = %id, error = %why, "portal task retried later");
                report.retried += 1;
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
    }
    (response, report)
}

async fn task<S: ClientSecretSource, C: Cipher>(
    b24: &Bitrix24<S, C>,
    store: &DynamoStore,
    handlers: &Handlers,
    change: &Change,
    now: i64,
) -> Fate {
    let Ok(member) = MemberId::new(&change.member_id) else {
        return Fate::Skipped("invalid member_id");
    };
    let portal = match store.get_portal(&member).await {
        Ok(p) => p,
        Err(e) => return Fate::Retry(e.to_string()),
    };
    match change.change_type {
        ChangeType::PortalInstalled | ChangeType::PortalUpdated => {
            match portal {
                Some(p) if p.installed && p.epoch == change.epoch => {}
                _ => return Fate::Skipped("the portal is no longer installed in this epoch"),
            }
            bind(b24, store, handlers, &member, change, now).await
        }
        ChangeType::PortalUninstalled => {
            if portal.is_some_and(|p| p.installed) {
                return Fate::Skipped("installed again since");
            }
            match b24.vault.delete(&member).await {
                Ok(()) => {
                    tracing::info!(member_id = %member, "vault cleared after the uninstall");
                    Fate::Cleared
                }
                Err(e) => Fate::Retry(e.to_string()),
            }
        }
        ChangeType::MessageCreated
        | ChangeType::MessageEdited
        | ChangeType::MessageDeleted
        | ChangeType::DialogStarted
        | ChangeType::DialogFinished
        | ChangeType::ConnectorDisconnected
        | ChangeType::LineDeleted => Fate::Skipped("not a portal task"),
    }
}

async fn bind<S: ClientSecretSource, C: Cipher>(
    b24: &Bitrix24<S, C>,
    store: &DynamoStore,
    handlers: &Handlers,
    member: &MemberId,
    change: &Change,
    now: i64,
) -> Fate {
    let wanted = handlers.bindings();
    let commands = event_bind_commands(&wanted);
    let answer = match b24.batch(member, &commands).await {
        Ok(a) => a,
        Err(TalkError::Vault(VaultError::NotFound)) => {
            return Fate::Skipped("no tokens (the install was not verified through OAuth)")
        }
        Err(TalkError::Vault(VaultError::NeedsReinstall)) => {
            tracing::warn!(member_id = %member, "events not bound: the portal needs a reinstall");
            return Fate::NeedsReinstall;
        }
        Err(e) if e.is_retryable() => return Fate::Retry(e.to_string()),
        Err(e) => {
            tracing::error!(member_id = %member, error = %e, "events not bound");
            return Fate::Skipped("Bitrix24 refused the batch");
        }
    };
    let (mut bound, mut already, mut failed) = (Vec::new(), Vec::new(), serde_json::Map::new());
    let mut retry = false;
    for (command, (event, _)) in commands.iter().zip(&wanted) {
        match answer.outcome(&command.name) {
            Some(Ok(_)) => bound.push(event.clone()),
            Some(Err(e)) if e.is_already_bound() => already.push(event.clone()),
            Some(Err(e)) => {
                retry |= e.is_rate_limit();
                failed.insert(event.clone(), json!(e.code));
            }
            None => {
                retry = true;
                failed.insert(event.clone(), json!("not run"));
            }
        }
    }
    let record = json!({
        "epoch": change.epoch,
        "change_id": change.id,
        "bound_at": now,
        "handlers": wanted.iter().map(|(e, u)| json!({"event": e, "handler": u})).collect::<Vec<Value>>(),
        "bound": bound,
        "already_bound": already,
        "failed": failed,
    });
    if let Err(e) = store.put_bindings(member, &record).await {
        return Fate::Retry(e.to_string());
    }
    if retry {
        return Fate::Retry(format!("{} bindings not done yet", failed.len()));
    }
    if !failed.is_empty() {
        let failed = Value::Object(failed).to_string();
        tracing::error!(member_id = %member, failed = %failed, "some events could not be bound");
    } else {
        tracing::info!(member_id = %member, bound = bound.len(), already_bound = already.len(), "events bound");
    }
    Fate::Bound
}

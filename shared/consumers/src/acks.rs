//! The acks consumer: the adapter's delivery acks (`b24.ack.v1` on the acks queue) reported
//! to Bitrix24 as `imconnector.send.status.delivery`.
//!
//! A batch of messages is grouped per portal; each portal gets one `batch` request (one
//! request for its rate limit) with one command per connector and line (at most
//! [`MAX_MESSAGES_PER_COMMAND`] messages each, at most 50 commands). The outcome is per
//! message:
//! - reported → deleted;
//! - the portal's rate limit (`QUERY_LIMIT_EXCEEDED`), Bitrix24 or the vault unavailable →
//!   left on the queue with a growing visibility timeout (after `maxReceiveCount` the DLQ);
//! - an ack that is not valid, for a portal without tokens (not installed through a verified
//!   install, uninstalled) or one that needs a reinstall, or that Bitrix24 refused for its
//!   content → dropped with a log line and the `AcksDropped` metric (retrying cannot help).

use crate::redrive::{backoff, Visibility};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use b24_pipeline::talkback::{Bitrix24, TalkError};
use b24_rest::{delivery_command, ClientSecretSource, Command, Delivered, MAX_BATCH_COMMANDS};
use b24_state::acks::Ack;
use b24_state::vault::{Cipher, VaultError};
use b24_state::MemberId;
use std::collections::BTreeMap;

/// Most messages in one `imconnector.send.status.delivery` command.
pub const MAX_MESSAGES_PER_COMMAND: usize = 50;

/// What one invocation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Acks reported to Bitrix24.
    pub delivered: usize,
    /// Acks left on the queue for a later attempt.
    pub retried: usize,
    /// Acks dropped for good.
    pub dropped: usize,
    /// Portals found needing a reinstall.
    pub needs_reinstall: usize,
    /// `batch` requests sent.
    pub requests: usize,
}

/// One valid ack and the SQS message it came in.
struct Pending {
    ack: Ack,
    message_id: String,
    receipt: Option<String>,
    receives: u32,
}

/// Reports every ack of `event`; failures are reported per message.
pub async fn handle<S: ClientSecretSource, C: Cipher, V: Visibility>(
    b24: &Bitrix24<S, C>,
    visibility: &V,
    event: SqsEvent,
) -> (SqsBatchResponse, Report) {
    let mut report = Report::default();
    let mut retry: Vec<Pending> = Vec::new();
    // Per portal, per (connector, line): the acks, in arrival order.
    let mut by_portal: BTreeMap<String, BTreeMap<(String, i64), Vec<Pending>>> = BTreeMap::new();
    for message in event.records {
        let message_id = message.message_id.clone().unwrap_or_default();
        match Ack::parse(message.body.as_deref().unwrap_or("")) {
            Ok(ack) => {
                let receives = message
                    .attributes
                    .get("ApproximateReceiveCount")
                    .and_then(|n| n.parse::<u32>().ok())
                    .unwrap_or(1);
                by_portal
                    .entry(ack.member_id.clone())
                    .or_default()
                    .entry((ack.connector.clone(), ack.line))
                    .or_default()
                    .push(Pending {
                        ack,
                        message_id,
                        receipt: message.receipt_handle.clone(),
                        receives,
                    });
            }
            Err(e) => {
                tracing::warn!(message_id = %message_id, reason = %e, "ack dropped");
                report.dropped += 1;
            }
        }
    }
    for (member, lines) in by_portal {
        let member = MemberId::new(&member).expect("validated by Ack::parse");
        // Commands of at most MAX_MESSAGES_PER_COMMAND acks; batches of at most 50 commands.
        let mut commands: Vec<(Command, Vec<Pending>)> = Vec::new();
        for ((connector, line), acks) in lines {
            let mut acks = acks.into_iter().peekable();
            while acks.peek().is_some() {
                let chunk: Vec<Pending> = acks.by_ref().take(MAX_MESSAGES_PER_COMMAND).collect();
                let delivered: Vec<Delivered> = chunk
                    .iter()
                    .map(|p| Delivered {
                        chat_id: p.ack.im.chat_id,
                        message_id: p.ack.im.message_id,
                        external_ids: p.ack.message_ids.clone(),
                        date: Some(p.ack.delivered_at),
                        external_chat_id: p.ack.chat_id.clone(),
                    })
                    .collect();
                let name = format!("d{}", commands.len());
                commands.push((delivery_command(&name, &connector, line, &delivered), chunk));
            }
        }
        // Bitrix24 replaces `$result[...]` inside batch commands: ids that contain it would be
        // rewritten, so their commands are sent alone.
        let (alone, mut commands): (Vec<_>, Vec<_>) = commands
            .into_iter()
            .partition(|(cmd, _)| cmd.params.to_string().contains("$result"));
        for (cmd, group) in alone {
            report.requests += 1;
            match b24.call(&member, &cmd.method, &cmd.params).await {
                Ok(_) => report.delivered += group.len(),
                Err(TalkError::Rest(e)) if e.method_error().is_some_and(|m| !m.is_rate_limit()) => {
                    tracing::warn!(member_id = %member, code = %e, acks = group.len(), "Bitrix24 refused the delivery status; acks dropped");
                    report.dropped += group.len();
                }
                Err(e) if e.is_retryable() => retry.extend(group),
                Err(e) => {
                    if matches!(e, TalkError::Vault(VaultError::NeedsReinstall)) {
                        report.needs_reinstall += 1;
                    }
                    tracing::warn!(member_id = %member, error = %e, acks = group.len(), "acks dropped");
                    report.dropped += group.len();
                }
            }
        }
        while !commands.is_empty() {
            let rest = commands.split_off(commands.len().min(MAX_BATCH_COMMANDS));
            let batch = std::mem::replace(&mut commands, rest);
            let (cmds, groups): (Vec<Command>, Vec<Vec<Pending>>) = batch.into_iter().unzip();
            report.requests += 1;
            match b24.batch(&member, &cmds).await {
                Ok(answer) => {
                    for (cmd, group) in cmds.iter().zip(groups) {
                        match answer.outcome(&cmd.name) {
                            Some(Ok(_)) => {
                                report.delivered += group.len();
                                tracing::info!(member_id = %member, acks = group.len(), "delivery reported");
                            }
                            Some(Err(e)) if e.is_rate_limit() => retry.extend(group),
                            None => retry.extend(group),
                            Some(Err(e)) => {
                                tracing::warn!(member_id = %member, code = %e.code, acks = group.len(), "Bitrix24 refused the delivery status; acks dropped");
                                report.dropped += group.len();
                            }
                        }
                    }
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(member_id = %member, error = %e, "delivery status not reported yet; retried");
                    retry.extend(groups.into_iter().flatten());
                }
                Err(e) => {
                    let n: usize = groups.iter().map(Vec::len).sum();
                    if matches!(e, TalkError::Vault(VaultError::NeedsReinstall)) {
                        report.needs_reinstall += 1;
                    }
                    tracing::warn!(member_id = %member, error = %e, acks = n, "acks dropped");
                    report.dropped += n;
                }
            }
        }
    }
    let mut response = SqsBatchResponse::default();
    report.retried = retry.len();
    for p in retry {
        if let Some(receipt) = &p.receipt {
            if let Err(e) = visibility.hide(receipt, backoff(p.receives)).await {
                tracing::warn!(message_id = %p.message_id, error = %e, "visibility not changed");
            }
        }
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = p.message_id;
        response.batch_item_failures.push(failure);
    }
    (response, report)
}

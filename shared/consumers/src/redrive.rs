//! The redrive consumer: parked events (SQS queue `parked`) → the very same transaction the
//! webhook would have run.
//!
//! Each parked event is authenticated against the stored portal with the webhook's rules: the
//! authorization decided at the webhook (when the portal could be read) is checked again inside
//! the transaction; without one, or when that check fails, the portal is read and the presented
//! token hash compared in constant time (installed portal → its epoch; unknown portal and an
//! install → registration). Then it is applied with its original receive time, so an event that
//! had committed after all is a `duplicate`. Outcomes:
//!
//! - applied / duplicate / stale → done (deleted from the queue);
//! - storage unavailable → a batch item failure, and the message's visibility grows with each
//!   receive ([`backoff`]); after the queue's `maxReceiveCount` it moves to the DLQ;
//! - the portal is unknown, uninstalled, has another token, or the install would need a
//!   verification the redrive cannot do (the access token is never parked), or the message is
//!   malformed or unstorable → **dropped** with a log line and a metric: never applied, never
//!   retried forever.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use b24_events::EventKind;
use b24_pipeline::ParkedEvent;
use b24_state::{
    Applied, Authorization, Context, MemberId, Outcome, Portal, Store, StoreError, TokenHash,
};

/// Why a parked event was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a parked message, or its event does not read back.
    Malformed,
    /// No portal with this `member_id`.
    UnknownPortal,
    /// The portal is uninstalled (or purged).
    Uninstalled,
    /// The presented token is not the portal's.
    TokenMismatch,
    /// An install that would change the token: it needs the event's access token, which is
    /// never parked.
    Unverifiable,
    /// DynamoDB refused the writes as invalid.
    Unstorable,
}

impl DropReason {
    /// The reason as logged and as the metric dimension.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownPortal => "unknown_portal",
            DropReason::Uninstalled => "uninstalled_portal",
            DropReason::TokenMismatch => "token_mismatch",
            DropReason::Unverifiable => "token_change_not_verifiable",
            DropReason::Unstorable => "unstorable",
        }
    }
}

/// What happened to one parked event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Applied with this outcome (a duplicate means it had committed at the webhook after all).
    Redriven(Outcome),
    /// Dropped for good.
    Dropped(DropReason),
    /// Storage still unavailable: retried later.
    Retry(String),
}

/// The authorization the webhook rules give `kind` with `token` against `portal` (as read
/// now), or why it is refused.
pub fn decide(
    portal: Option<&Portal>,
    kind: EventKind,
    token: &TokenHash,
) -> Result<Authorization, DropReason> {
    match portal {
        Some(p) if p.installed && p.hash_matches(token) => Ok(Authorization::Installed {
            token_hash: token.clone(),
            epoch: p.epoch,
        }),
        None if kind.is_install() => Ok(Authorization::Register {
            token_hash: token.clone(),
        }),
        None => Err(DropReason::UnknownPortal),
        Some(_) if kind.is_install() => Err(DropReason::Unverifiable),
        Some(p) if !p.installed => Err(DropReason::Uninstalled),
        Some(_) => Err(DropReason::TokenMismatch),
    }
}

/// Applies one parked event (see the module docs).
pub async fn redrive_one<S: Store>(store: &S, parked: &ParkedEvent, ttl_days: i64) -> Fate {
    let Ok(event) = parked.event() else {
        return Fate::Dropped(DropReason::Malformed);
    };
    let Ok(member) = MemberId::new(&parked.member_id) else {
        return Fate::Dropped(DropReason::Malformed);
    };
    let kind = event.kind();
    let mut authorization = parked.authorization.clone();
    // Two rounds: the webhook's authorization, then (if the portal changed since) a fresh read.
    for _ in 0..2 {
        let a = match authorization.take() {
            Some(a) => a,
            None => match store.get_portal(&member).await {
                Ok(portal) => match decide(portal.as_ref(), kind, &parked.token_hash) {
                    Ok(a) => a,
                    Err(d) => return Fate::Dropped(d),
                },
                Err(e) => return fate_of(e),
            },
        };
        let ctx = Context {
            member: member.clone(),
            authorization: a,
            received_at: parked.received_at,
            event_ttl_days: ttl_days,
            verified_client_endpoint: parked.verified_client_endpoint.clone(),
        };
        match store.apply(&event, &ctx).await {
            Ok(Applied::Outcome(o)) => return Fate::Redriven(o),
            Ok(Applied::Unauthorized) => continue,
            Err(e) => return fate_of(e),
        }
    }
    // The fresh read authorized it but the transaction's check failed again: the portal keeps
    // changing; decide once more from what it is now.
    match store.get_portal(&member).await {
        Ok(portal) => match decide(portal.as_ref(), kind, &parked.token_hash) {
            Ok(_) => Fate::Retry("the portal changed during the redrive".into()),
            Err(d) => Fate::Dropped(d),
        },
        Err(e) => fate_of(e),
    }
}

fn fate_of(e: StoreError) -> Fate {
    if e.is_invalid_input() {
        Fate::Dropped(DropReason::Unstorable)
    } else {
        Fate::Retry(e.to_string())
    }
}

/// The visibility timeout after the `receive_count`-th failed attempt: 15 s, doubling, at most
/// 15 minutes (with the queue's `maxReceiveCount` of 30 a message is retried for about 6 h
/// before it moves to the DLQ).
pub fn backoff(receive_count: u32) -> i32 {
    let shift = receive_count.saturating_sub(1).min(10);
    (15i64 << shift).min(900) as i32
}

/// Changes a message's visibility (the growing back-off of failed redrives).
pub trait Visibility: Send + Sync {
    /// Hides the message with `receipt_handle` for `seconds`.
    fn hide(
        &self,
        receipt_handle: &str,
        seconds: i32,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

/// The parked queue's visibility through SQS `ChangeMessageVisibility`.
#[derive(Clone, Debug)]
pub struct SqsVisibility {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsVisibility {
    /// For the queue at `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        SqsVisibility {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl Visibility for SqsVisibility {
    async fn hide(&self, receipt_handle: &str, seconds: i32) -> Result<(), String> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
    }
}

/// What one invocation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Parked events applied (including duplicates and stale ones).
    pub redriven: usize,
    /// Of those, duplicates (they had committed at the webhook after all).
    pub duplicates: usize,
    /// Dropped for good.
    pub dropped: usize,
    /// Left on the queue for a later attempt.
    pub retried: usize,
}

/// Redrives every message of `event`; failures are reported per message.
pub async fn handle<S: Store, V: Visibility>(
    store: &S,
    visibility: &V,
    event: SqsEvent,
    ttl_days: i64,
) -> (SqsBatchResponse, Report) {
    let mut response = SqsBatchResponse::default();
    let mut report = Report::default();
    for message in event.records {
        let id = message.message_id.clone().unwrap_or_default();
        let fate = match message
            .body
            .as_deref()
            .map(ParkedEvent::from_body)
            .transpose()
        {
            Ok(Some(parked)) => {
                let fate = redrive_one(store, &parked, ttl_days).await;
                log(&parked, &fate, &message);
                fate
            }
            Ok(None) | Err(_) => {
                tracing::error!(message_id = %id, reason = "malformed", "parked message dropped");
                Fate::Dropped(DropReason::Malformed)
            }
        };
        match fate {
            Fate::Redriven(o) => {
                report.redriven += 1;
                report.duplicates += usize::from(o == Outcome::Duplicate);
            }
            Fate::Dropped(_) => report.dropped += 1,
            Fate::Retry(_) => {
                report.retried += 1;
                let receives = message
                    .attributes
                    .get("ApproximateReceiveCount")
                    .and_then(|n| n.parse::<u32>().ok())
                    .unwrap_or(1);
                if let Some(receipt) = &message.receipt_handle {
                    if let Err(e) = visibility.hide(receipt, backoff(receives)).await {
                        tracing::warn!(message_id = %id, error = %e, "visibility not changed");
                    }
                }
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
    }
    (response, report)
}

fn log(parked: &ParkedEvent, fate: &Fate, message: &SqsMessage) {
    let id = message.message_id.as_deref().unwrap_or("");
    match fate {
        Fate::Redriven(o) => tracing::info!(
            message_id = id,
            event = %parked.event_code,
            member_id = %parked.member_id,
            outcome = o.as_str(),
            parked_reason = %parked.reason,
            "parked event redriven"
        ),
        Fate::Dropped(d) => tracing::warn!(
            message_id = id,
            event = %parked.event_code,
            member_id = %parked.member_id,
            reason = d.as_str(),
            "parked event dropped"
        ),
        Fate::Retry(why) => tracing::warn!(
            message_id = id,
            event = %parked.event_code,
            member_id = %parked.member_id,
            error = %why,
            "storage still unavailable; parked event retried later"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_fifteen_minutes() {
        assert_eq!(
            (1..=8).map(backoff).collect::<Vec<_>>(),
            [15, 30, 60, 120, 240, 480, 900, 900]
        );
        assert_eq!(backoff(0), 15);
        assert_eq!(backoff(u32::MAX), 900);
    }

    #[test]
    fn decisions_follow_the_webhook_rules() {
        let t = TokenHash::from_hex(&"a".repeat(64)).unwrap();
        let other = TokenHash::from_hex(&"b".repeat(64)).unwrap();
        let installed = Portal {
            member_id: "m".into(),
            installed: true,
            token_hash: t.as_str().into(),
            epoch: 3,
            ..Portal::default()
        };
        assert_eq!(
            decide(Some(&installed), EventKind::MessageAdd, &t),
            Ok(Authorization::Installed {
                token_hash: t.clone(),
                epoch: 3
            })
        );
        assert_eq!(
            decide(Some(&installed), EventKind::MessageAdd, &other),
            Err(DropReason::TokenMismatch)
        );
        assert_eq!(
            decide(Some(&installed), EventKind::AppInstall, &other),
            Err(DropReason::Unverifiable)
        );
        assert_eq!(
            decide(None, EventKind::AppInstall, &t),
            Ok(Authorization::Register {
                token_hash: t.clone()
            })
        );
        assert_eq!(
            decide(None, EventKind::MessageAdd, &t),
            Err(DropReason::UnknownPortal)
        );
        let uninstalled = Portal {
            installed: false,
            ..installed
        };
        assert_eq!(
            decide(Some(&uninstalled), EventKind::MessageAdd, &t),
            Err(DropReason::Uninstalled)
        );
        assert_eq!(
            decide(Some(&uninstalled), EventKind::AppInstall, &t),
            Err(DropReason::Unverifiable)
        );
    }
}

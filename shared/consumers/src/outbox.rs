//! The outbox: the table's stream → change events (`b24.change.v1`, derived by
//! `b24_state::changes::derive`) → the `changes.fifo` queue (and optionally an EventBridge bus).
//!
//! Order and exactly-once on the queue: records are handled in stream order; changes are sent
//! in `SendMessageBatch` calls that never hold two changes of one message group, so a partly
//! failed call cannot reorder a group; at the first failure the handler stops and reports that
//! record (`batchItemFailures`), and the mapping retries from it. What was sent already is sent
//! again with the same `MessageDeduplicationId` (the change id), which SQS drops within its
//! five-minute deduplication window; adapters deduplicate by id beyond it.

use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use b24_state::changes::{self, Change};
use b24_state::{MemberId, Store, StoreError};
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The outbox's event source filter (see [`b24_state::changes::STREAM_FILTER`]).
pub const STREAM_FILTER: &str = changes::STREAM_FILTER;

/// Changes per `SendMessageBatch` (the SQS maximum).
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Bytes of message bodies per `SendMessageBatch` (SQS allows 1 MiB; kept under 256 KiB, the
/// limit of older queues and of EventBridge's `PutEvents`).
pub const MAX_BATCH_BYTES: usize = 250 * 1024;

/// Why publishing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The queue or bus did not take the changes (throttled, unavailable, access denied, ...).
    #[error("{sink} did not take {failed} of {sent} changes: {reason}")]
    Rejected {
        /// `SQS` or `EventBridge`.
        sink: &'static str,
        /// Changes refused (or unknown, when the whole call failed).
        failed: usize,
        /// Changes in the call.
        sent: usize,
        /// The service's error code or the transport error.
        reason: String,
    },
}

/// Where changes go.
pub trait Publisher: Send + Sync {
    /// Publishes `changes` (at most [`MAX_BATCH_ENTRIES`], at most one per message group, at
    /// most [`MAX_BATCH_BYTES`] of JSON) in order. `Err` when any of them was not taken.
    fn publish(&self, changes: &[Change]) -> impl Future<Output = Result<(), PublishError>> + Send;
}

/// The portal domains the changes carry (records other than the portal's do not hold it).
pub trait Domains: Send + Sync {
    /// The domain of `member`'s portal, if it has one.
    fn domain(
        &self,
        member: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// A portal record passed through the stream: its domain is the current one.
    fn remember(&self, member: &str, domain: Option<&str>);
}

/// [`Domains`] read from the portal records, cached (bounded, 10 minutes).
pub struct PortalDomains<S> {
    store: S,
    cache: Mutex<lru::LruCache<String, (Option<String>, Instant)>>,
}

/// How long a portal's domain is served from memory.
pub const DOMAIN_TTL: Duration = Duration::from_secs(600);

impl<S: Store> PortalDomains<S> {
    /// Domains of `store`'s portal records.
    pub fn new(store: S) -> Self {
        PortalDomains {
            store,
            cache: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(4096).expect("non-zero"),
            )),
        }
    }
}

impl<S: Store> Domains for PortalDomains<S> {
    async fn domain(&self, member: &str) -> Result<Option<String>, StoreError> {
        if let Some((d, at)) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(member)
        {
            if at.elapsed() < DOMAIN_TTL {
                return Ok(d.clone());
            }
        }
        let Ok(id) = MemberId::new(member) else {
            return Ok(None);
        };
        let domain = self.store.get_portal(&id).await?.and_then(|p| p.domain);
        self.remember(member, domain.as_deref());
        Ok(domain)
    }

    fn remember(&self, member: &str, domain: Option<&str>) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).put(
            member.to_string(),
            (domain.map(str::to_string), Instant::now()),
        );
    }
}

/// The FIFO queue `changes.fifo`.
pub struct SqsFifo {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsFifo {
    /// Publishes to `queue_url` with `client`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        SqsFifo {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl Publisher for SqsFifo {
    async fn publish(&self, changes: &[Change]) -> Result<(), PublishError> {
        send_batch(&self.client, &self.queue_url, changes, |c, entry| {
            entry
                .message_group_id(c.group_id())
                .message_deduplication_id(&c.id)
        })
        .await
    }
}

/// One `SendMessageBatch` of `changes` (their JSON as bodies, ids by position), each entry
/// completed by `fifo` (group and deduplication ids for a FIFO queue).
async fn send_batch(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    changes: &[Change],
    fifo: impl Fn(
        &Change,
        aws_sdk_sqs::types::builders::SendMessageBatchRequestEntryBuilder,
    ) -> aws_sdk_sqs::types::builders::SendMessageBatchRequestEntryBuilder,
) -> Result<(), PublishError> {
    let rejected = |failed: usize, reason: String| PublishError::Rejected {
        sink: "SQS",
        failed,
        sent: changes.len(),
        reason,
    };
    if changes.is_empty() {
        return Ok(());
    }
    let entries = changes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let entry = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(c.to_json_string());
            fifo(c, entry)
                .build()
                .map_err(|e| rejected(changes.len(), e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let out = client
        .send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| rejected(changes.len(), crate::sdk_reason(&e)))?;
    match out.failed().first() {
        None => Ok(()),
        Some(f) => Err(rejected(out.failed().len(), f.code().to_string())),
    }
}

/// An EventBridge bus: each change as an event, source [`EVENT_SOURCE`], detail-type its type.
pub struct EventBus {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

/// The `source` of the change events on EventBridge.
pub const EVENT_SOURCE: &str = "bitrix24.connector";

impl EventBus {
    /// Publishes to the bus named `bus` with `client`.
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        EventBus {
            client,
            bus: bus.into(),
        }
    }
}

impl Publisher for EventBus {
    async fn publish(&self, changes: &[Change]) -> Result<(), PublishError> {
        let rejected = |failed: usize, reason: String| PublishError::Rejected {
            sink: "EventBridge",
            failed,
            sent: changes.len(),
            reason,
        };
        let entries = changes
            .iter()
            .map(|c| {
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(EVENT_SOURCE)
                    .detail_type(c.change_type.as_str())
                    .detail(c.to_json_string())
                    .resources(format!("bitrix24:portal/{}", c.member_id))
                    .build()
            })
            .collect();
        let out = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| rejected(changes.len(), crate::sdk_reason(&e)))?;
        match out.failed_entry_count() {
            0 => Ok(()),
            n => Err(rejected(
                n as usize,
                out.entries()
                    .iter()
                    .find_map(|e| e.error_code())
                    .unwrap_or("failed")
                    .to_string(),
            )),
        }
    }
}

/// The queue, and the bus when configured.
pub struct Sinks<Q, B> {
    /// `changes.fifo`.
    pub queue: Q,
    /// The optional EventBridge bus (after the queue took the changes).
    pub bus: Option<B>,
}

impl<Q: Publisher, B: Publisher> Publisher for Sinks<Q, B> {
    async fn publish(&self, changes: &[Change]) -> Result<(), PublishError> {
        self.queue.publish(changes).await?;
        match &self.bus {
            Some(bus) => bus.publish(changes).await,
            None => Ok(()),
        }
    }
}

/// A standard SQS queue of the stack's own (the portal tasks: binding events, clearing the
/// vault): the changes that concern it, one message each.
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsQueue {
    /// Publishes to `queue_url` with `client`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl Publisher for SqsQueue {
    async fn publish(&self, changes: &[Change]) -> Result<(), PublishError> {
        send_batch(&self.client, &self.queue_url, changes, |_, entry| entry).await
    }
}

/// The changes the stack acts on itself: `portal.installed` / `portal.updated` (bind the
/// events) and `portal.uninstalled` (clear the vault).
pub fn is_portal_task(change: &Change) -> bool {
    use b24_state::changes::ChangeType as T;
    match change.change_type {
        T::PortalInstalled | T::PortalUpdated | T::PortalUninstalled => true,
        T::MessageCreated
        | T::MessageEdited
        | T::MessageDeleted
        | T::DialogStarted
        | T::DialogFinished
        | T::ConnectorDisconnected
        | T::LineDeleted => false,
    }
}

/// `inner`, then the portal tasks of the same changes on `tasks` (when configured). A task
/// that fails to go out fails the batch, so it is retried with the records (the feed's copies
/// are deduplicated by id).
pub struct WithTasks<P, T> {
    /// The feed (queue and bus).
    pub inner: P,
    /// The portal tasks queue.
    pub tasks: Option<T>,
}

impl<P: Publisher, T: Publisher> Publisher for WithTasks<P, T> {
    async fn publish(&self, changes: &[Change]) -> Result<(), PublishError> {
        self.inner.publish(changes).await?;
        let Some(tasks) = &self.tasks else {
            return Ok(());
        };
        let mine: Vec<Change> = changes
            .iter()
            .filter(|c| is_portal_task(c))
            .cloned()
            .collect();
        tasks.publish(&mine).await
    }
}

/// What one invocation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Stream records handled (published or publishing nothing).
    pub records: usize,
    /// Changes published.
    pub published: usize,
    /// Records whose images could not be read (logged; nothing published for them).
    pub unreadable: usize,
    /// Records left for a retry (0 or 1: the handler stops at the first failure).
    pub failed: usize,
}

/// A change waiting for the next `SendMessageBatch`, with the stream record it came from.
struct Pending {
    change: Change,
    record: usize,
}

/// Publishes the changes of every record of `event` in order; see the module doc.
pub async fn handle<P: Publisher, D: Domains>(
    publisher: &P,
    domains: &D,
    event: Event,
) -> (DynamoDbEventResponse, Report) {
    let mut report = Report::default();
    let sequences: Vec<String> = event
        .records
        .iter()
        .map(|r| r.change.sequence_number.clone().unwrap_or_default())
        .collect();
    let mut batch: Vec<Pending> = Vec::new();
    let mut failed_at: Option<usize> = None;
    'records: for (i, record) in event.records.iter().enumerate() {
        let changes = match changes_of(record, domains).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                report.unreadable += 1;
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(sequence = %sequences[i], error = %e, "portal domain unreadable; retried");
                // What earlier records left pending goes out first: the records before `i`
                // count as done once the failure is reported at `i`.
                failed_at = Some(match flush(publisher, &mut batch, &mut report).await {
                    Ok(()) => i,
                    Err(at) => at,
                });
                break;
            }
        };
        for mut change in changes {
            // A change too big for one message (a pathological text) is shortened, marked
            // truncated; a record that can never be published would block its shard.
            change.fit_within(MAX_BATCH_BYTES);
            let bytes = change.to_json_string().len();
            let group = change.group_id();
            let full = batch.len() == MAX_BATCH_ENTRIES
                || batch
                    .iter()
                    .map(|p| p.change.to_json_string().len())
                    .sum::<usize>()
                    + bytes
                    > MAX_BATCH_BYTES
                || batch.iter().any(|p| p.change.group_id() == group);
            if full {
                if let Err(at) = flush(publisher, &mut batch, &mut report).await {
                    failed_at = Some(at);
                    break 'records;
                }
            }
            batch.push(Pending { change, record: i });
        }
        report.records += 1;
    }
    if failed_at.is_none() {
        if let Err(at) = flush(publisher, &mut batch, &mut report).await {
            failed_at = Some(at);
        }
    }
    let mut response = DynamoDbEventResponse::default();
    if let Some(at) = failed_at {
        // Records from `at` on are retried (those before it are done): they are not counted.
        report.records = at;
        report.failed = 1;
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(sequences[at].clone());
        response.batch_item_failures.push(failure);
    }
    (response, report)
}

/// Sends the pending batch; on failure, the index of the earliest record in it.
async fn flush<P: Publisher>(
    publisher: &P,
    batch: &mut Vec<Pending>,
    report: &mut Report,
) -> Result<(), usize> {
    if batch.is_empty() {
        return Ok(());
    }
    let changes: Vec<Change> = batch.iter().map(|p| p.change.clone()).collect();
    match publisher.publish(&changes).await {
        Ok(()) => {
            report.published += changes.len();
            for c in &changes {
                tracing::info!(
                    id = %c.id,
                    change = c.change_type.as_str(),
                    member_id = %c.member_id,
                    line = c.line,
                    "change published"
                );
            }
            batch.clear();
            Ok(())
        }
        Err(e) => {
            let at = batch.iter().map(|p| p.record).min().unwrap_or(0);
            tracing::warn!(error = %e, "changes not published; the records are retried");
            Err(at)
        }
    }
}

/// The changes of one stream record; `None` when its images cannot be read.
async fn changes_of<D: Domains>(
    record: &EventRecord,
    domains: &D,
) -> Result<Option<Vec<Change>>, StoreError> {
    fn image(img: &impl serde::Serialize) -> Option<b24_state::item::Item> {
        b24_state::stream::image_to_item(&serde_json::to_value(img).ok()?)
    }
    let (Some(old), Some(new)) = (
        image(&record.change.old_image),
        image(&record.change.new_image),
    ) else {
        tracing::error!(
            sequence = ?record.change.sequence_number,
            "stream record images are not DynamoDB attribute maps; nothing published"
        );
        return Ok(None);
    };
    let (old, new) = (
        Some(old).filter(|m| !m.is_empty()),
        Some(new).filter(|m| !m.is_empty()),
    );
    let Some(n) = new.as_ref() else {
        return Ok(Some(Vec::new()));
    };
    let member = n.get("member_id").and_then(|v| v.as_str()).unwrap_or("");
    let domain = match n.get("record_type").and_then(|v| v.as_str()) {
        Some(b24_state::schema::record_type::PORTAL) => {
            let d = n.get("domain").and_then(|v| v.as_str());
            domains.remember(member, d);
            d.map(str::to_string)
        }
        Some(t) if changes::SOURCE_RECORD_TYPES.contains(&t) => domains.domain(member).await?,
        _ => None,
    };
    Ok(Some(changes::derive(
        old.as_ref(),
        new.as_ref(),
        domain.as_deref(),
    )))
}

/// An EventBridge client from `env` with `timeouts` (endpoint `AWS_ENDPOINT_URL_EVENTBRIDGE`,
/// else `AWS_ENDPOINT_URL`), on the shared HTTPS client.
pub fn eventbridge_client(
    env: &b24_state::AwsEnv,
    timeouts: b24_state::Timeouts,
) -> aws_sdk_eventbridge::Client {
    b24_state::aws_client!(aws_sdk_eventbridge, "EVENTBRIDGE", env, timeouts)
}

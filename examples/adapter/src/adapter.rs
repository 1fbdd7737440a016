//! The loop: receive a batch, and for each change in queue order parse it, drop it if already
//! handled, deliver or handle it; then send the acks of the delivered messages to the acks
//! queue, and delete from the change feed what was handled (and acked).
//!
//! Rules:
//! - A change is deleted only after it was handled (at least once: a crash in between delivers
//!   it again, and [`Seen`] or the channel's idempotency absorbs the repeat).
//! - A delivered message is deleted only after its ack is on the acks queue. When sending the
//!   ack fails, the change stays on the change feed; when it comes back, [`Seen`] has it as
//!   delivered with its ack pending: the ack is sent again, the message is not delivered again.
//! - Order is per message group (one portal's chat, line or portal). When a change of a group
//!   is left on the queue (its delivery failed, or its body is not a change), the later
//!   changes of that group in the batch are not handled: they are released (visibility 0) and
//!   SQS FIFO hands them out again only after the one left, in order. Other groups go on.
//! - The change left is retried after the queue's visibility timeout (60 s in the template);
//!   after `maxReceiveCount` (20) receives the queue's dead-letter queue takes it.

use crate::ack::{delivery_ack, is_acked, Ack, AckSink};
use crate::channel::Channel;
use crate::dedup::{Handled, Seen};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName,
};
use b24_state::changes::{Change, ChangeType, SCHEMA};
use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How many change ids [`Seen`] remembers.
pub const SEEN_CAPACITY: NonZeroUsize = NonZeroUsize::new(100_000).unwrap();

/// What one receive did.
#[derive(Debug, Default)]
pub struct Batch {
    /// Messages received.
    pub received: usize,
    /// Ids of the changes delivered to the channel, in order.
    pub delivered: Vec<String>,
    /// Changes handled without the channel (dialogs, connectors, lines, portals).
    pub handled: usize,
    /// Changes handled before (deleted, not handled again).
    pub duplicates: usize,
    /// Bodies that are not a `b24.change.v1` (left on the queue).
    pub invalid: usize,
    /// Deliveries that failed (left on the queue).
    pub failed: usize,
    /// Changes behind an invalid or failed one of their group (released, not handled).
    pub held_back: usize,
    /// The acks the acks queue took, in order (see [`crate::ack`]).
    pub acks: Vec<Ack>,
    /// Changes delivered before whose ack had not been sent: sent now, not delivered again.
    pub acks_resent: usize,
    /// Acks the acks queue did not take: their changes stay on the queue (delivered; the ack is
    /// sent again when they come back).
    pub acks_failed: usize,
}

/// What handling one change leaves to do.
enum Outcome {
    /// Handled: delete it.
    Done,
    /// Delivered: send this ack, then delete it.
    Ack(Ack),
}

/// Reads the change feed at `queue_url`, delivers operator messages to a [`Channel`] and sends
/// their acks to an [`AckSink`].
pub struct Adapter<C> {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    channel: C,
    acks: AckSink,
    seen: Seen,
}

impl<C: Channel> Adapter<C> {
    /// An adapter of the queue `queue_url`, read with `sqs`, delivering to `channel` and
    /// acking to `acks`.
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        queue_url: impl Into<String>,
        channel: C,
        acks: AckSink,
    ) -> Self {
        Adapter {
            sqs,
            queue_url: queue_url.into(),
            channel,
            acks,
            seen: Seen::new(SEEN_CAPACITY),
        }
    }

    /// The channel.
    pub fn channel(&self) -> &C {
        &self.channel
    }

    /// Polls until no change was handled for `idle` (`None`: forever; a change that keeps
    /// failing is not progress), calling `on_batch` after each non-empty batch. An error of the
    /// change feed ends the run (restart it: nothing is lost); one of the acks queue does not
    /// (the changes concerned stay on the feed and come back).
    pub async fn run(
        &mut self,
        idle: Option<Duration>,
        mut on_batch: impl FnMut(&Batch),
    ) -> Result<(), String> {
        let mut last = Instant::now();
        loop {
            let wait = match idle {
                None => 20,
                Some(idle) => match idle.saturating_sub(last.elapsed()) {
                    left if left.is_zero() => return Ok(()),
                    left => left.as_secs().clamp(1, 20) as i32,
                },
            };
            let batch = self.poll(wait).await?;
            if batch.received > 0 {
                on_batch(&batch);
            }
            // Only progress counts: a change that keeps failing does not keep the run going.
            if !batch.delivered.is_empty()
                || batch.handled > 0
                || batch.duplicates > 0
                || !batch.acks.is_empty()
            {
                last = Instant::now();
            }
        }
    }

    /// One receive of up to 10 messages (long poll of up to `wait_seconds`), handled in order.
    pub async fn poll(&mut self, wait_seconds: i32) -> Result<Batch, String> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .map_err(|e| format!("receiving from {}: {}", self.queue_url, sdk_error(&e)))?;
        let mut batch = Batch {
            received: out.messages().len(),
            ..Batch::default()
        };
        let (mut done, mut held_back) = (Vec::new(), Vec::new());
        // The delivered changes whose ack is to be sent: (change id, queue entry, ack).
        let mut to_ack: Vec<(String, (String, &str), Ack)> = Vec::new();
        let mut stopped = HashSet::new(); // groups with a change left on the queue
        for (i, m) in out.messages().iter().enumerate() {
            let group = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .map_or("", String::as_str);
            let entry = (i.to_string(), m.receipt_handle().unwrap_or_default());
            if stopped.contains(group) {
                batch.held_back += 1;
                held_back.push(entry);
                continue;
            }
            let acking: HashSet<&str> = to_ack.iter().map(|(id, ..)| id.as_str()).collect();
            match self
                .handle(m.body().unwrap_or_default(), &acking, &mut batch)
                .await
            {
                Ok((_, Outcome::Done)) => done.push(entry),
                Ok((id, Outcome::Ack(ack))) => to_ack.push((id, entry, ack)),
                Err(reason) => {
                    eprintln!("warning: {reason}; left on the queue, group {group} waits for it");
                    stopped.insert(group);
                }
            }
        }
        // The acks, after the channel delivered and before the changes are deleted.
        let acks: Vec<Ack> = to_ack.iter().map(|(.., ack)| ack.clone()).collect();
        let sent = self.acks.send(&acks).await;
        for ((id, entry, ack), result) in to_ack.into_iter().zip(sent) {
            match result {
                Ok(()) => {
                    self.seen.insert(&id);
                    batch.acks.push(ack);
                    done.push(entry);
                }
                Err(reason) => {
                    // Seen keeps it as AckPending: the retry sends the ack, without delivering.
                    eprintln!("warning: {reason}; change {id} (delivered) left on the queue");
                    batch.acks_failed += 1;
                }
            }
        }
        self.delete(done).await?;
        self.release(held_back).await?;
        Ok(batch)
    }

    /// Handles one body (`acking`: the changes of this batch whose ack is about to be sent);
    /// `Ok` gives the change id and what is left to do, `Err` leaves it on the queue.
    async fn handle(
        &mut self,
        body: &str,
        acking: &HashSet<&str>,
        batch: &mut Batch,
    ) -> Result<(String, Outcome), String> {
        let change = match serde_json::from_str::<Change>(body) {
            Ok(c) if c.schema == SCHEMA => Ok(c),
            Ok(c) => Err(format!("unknown schema {:?}", c.schema)),
            Err(e) => Err(format!("not a {SCHEMA} ({e})")),
        }
        .inspect_err(|_| batch.invalid += 1)?;
        match self.seen.get(&change.id) {
            None => {}
            // Delivered before, its ack not sent: send it now (once per batch), deliver nothing.
            Some(Handled::AckPending(ack)) if !acking.contains(change.id.as_str()) => {
                batch.acks_resent += 1;
                return Ok((change.id, Outcome::Ack(ack.clone())));
            }
            Some(_) => {
                batch.duplicates += 1;
                return Ok((change.id, Outcome::Done));
            }
        }
        // Exhaustive on purpose: a new change type is a compile error here, not silently ignored.
        let note = match change.change_type {
            ChangeType::MessageCreated | ChangeType::MessageEdited | ChangeType::MessageDeleted => {
                let outcome = self.deliver(&change, batch).await?;
                return Ok((change.id, outcome));
            }
            ChangeType::DialogStarted => "a dialog started (e.g. open a conversation)",
            ChangeType::DialogFinished => "a dialog finished (e.g. close the conversation)",
            ChangeType::ConnectorDisconnected => "stop sending for this line until reconnected",
            ChangeType::LineDeleted => "forget this line's chats",
            ChangeType::PortalInstalled => "a portal to serve",
            ChangeType::PortalUpdated => "redo the portal's connector bindings",
            ChangeType::PortalUninstalled => "forget the portal (and its data if `clean`)",
        };
        eprintln!("{} {}: {note}", change.change_type, change.member_id);
        batch.handled += 1;
        self.seen.insert(&change.id);
        Ok((change.id, Outcome::Done))
    }

    /// Sends an operator message change to the channel; a created or edited message gets an
    /// ack ([`is_acked`]).
    async fn deliver(&mut self, change: &Change, batch: &mut Batch) -> Result<Outcome, String> {
        let Some(message) = &change.message else {
            batch.invalid += 1;
            return Err(format!(
                "{} {} has no message",
                change.change_type, change.id
            ));
        };
        let ids = self
            .channel
            .deliver(change, message)
            .await
            .map_err(|e| format!("delivering {} {}: {e}", change.change_type, change.id))
            .inspect_err(|_| batch.failed += 1)?;
        batch.delivered.push(change.id.clone());
        if !is_acked(change.change_type) {
            self.seen.insert(&change.id);
            return Ok(Outcome::Done);
        }
        match delivery_ack(change, message, ids, unix_now()) {
            Ok(ack) => {
                // Remembered before it is sent: a retry must not deliver again.
                self.seen.ack_pending(&change.id, ack.clone());
                Ok(Outcome::Ack(ack))
            }
            Err(reason) => {
                eprintln!(
                    "warning: {} {} delivered without an ack: {reason}",
                    change.change_type, change.id
                );
                self.seen.insert(&change.id);
                Ok(Outcome::Done)
            }
        }
    }

    /// Deletes handled messages. A failed delete only means they come back (as duplicates).
    async fn delete(&self, entries: Vec<(String, &str)>) -> Result<(), String> {
        if entries.is_empty() {
            return Ok(());
        }
        let entries = entries.into_iter().map(|(id, handle)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(id)
                .receipt_handle(handle)
                .build()
        });
        let out = self
            .sqs
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(
                entries
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?,
            ))
            .send()
            .await
            .map_err(|e| format!("deleting handled changes: {}", sdk_error(&e)))?;
        for f in out.failed() {
            eprintln!(
                "warning: a handled change was not deleted ({}); it will come back",
                f.code()
            );
        }
        Ok(())
    }

    /// Makes held-back messages visible again at once: SQS FIFO returns them only after the
    /// change left before them in their group.
    async fn release(&self, entries: Vec<(String, &str)>) -> Result<(), String> {
        if entries.is_empty() {
            return Ok(());
        }
        let entries = entries.into_iter().map(|(id, handle)| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(id)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .build()
        });
        self.sqs
            .change_message_visibility_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(
                entries
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?,
            ))
            .send()
            .await
            .map_err(|e| format!("releasing held-back changes: {}", sdk_error(&e)))?;
        Ok(())
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An SDK error with its sources (the top level alone says only "service error").
pub(crate) fn sdk_error<E: std::error::Error + 'static>(
    e: &aws_sdk_sqs::error::SdkError<E>,
) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

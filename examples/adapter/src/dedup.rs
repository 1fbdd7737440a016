//! Which changes were already handled, by [`Change::id`](b24_state::changes::Change::id), and
//! which delivered ones still wait for their ack to reach the acks queue.
//!
//! SQS delivers at least once, and a FIFO queue drops a repeated `MessageDeduplicationId` only
//! within 5 minutes: a change published again later (the outbox retrying a stream record, a
//! redrive) arrives a second time with the same `id`. The adapter remembers the ids it handled
//! and drops a repeat.
//!
//! A delivered message has two effects: the channel's delivery, then its ack on the acks queue.
//! The change is deleted from the change feed only after both. When the ack could not be sent,
//! the change comes back; its id is then [`Handled::AckPending`] with the ack built at
//! delivery: the adapter sends that ack again and does **not** deliver again.
//!
//! This example keeps the most recent ids in memory (bounded: least recently seen evicted), so
//! a restart forgets them. A real adapter keeps them in its own store, in the same write as
//! the delivery's effect where it can, e.g. a DynamoDB conditional put
//! (`attribute_not_exists(change_id)`, with a TTL of a few weeks) of `{change_id, ack,
//! acked: false}`, then `acked = true` once the ack was sent: a failed condition is a
//! duplicate, or a pending ack to send again.

use b24_state::acks::Ack;
use lru::LruCache;
use std::num::NonZeroUsize;

/// What became of a change that was handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Done: a repeat is only deleted.
    Done,
    /// Delivered, but its ack is not on the acks queue yet: a repeat sends this ack (the same
    /// external ids and `delivered_at`) and is not delivered again.
    AckPending(Ack),
}

/// The ids of the most recently handled changes.
pub struct Seen {
    ids: LruCache<String, Handled>,
}

impl Seen {
    /// Remembers at most `capacity` ids.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Seen {
            ids: LruCache::new(capacity),
        }
    }

    /// What became of `id`, if it was handled (and keeps it remembered longer if so).
    pub fn get(&mut self, id: &str) -> Option<&Handled> {
        self.ids.get(id)
    }

    /// Whether `id` was handled (done or with its ack pending).
    pub fn contains(&mut self, id: &str) -> bool {
        self.ids.get(id).is_some()
    }

    /// Records `id` as done.
    pub fn insert(&mut self, id: &str) {
        self.ids.put(id.to_string(), Handled::Done);
    }

    /// Records `id` as delivered, its ack `ack` not sent yet.
    pub fn ack_pending(&mut self, id: &str, ack: Ack) {
        self.ids.put(id.to_string(), Handled::AckPending(ack));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_a_bounded_number_of_ids() {
        let mut seen = Seen::new(NonZeroUsize::new(2).unwrap());
        seen.insert("a");
        seen.insert("b");
        assert!(seen.contains("a"));
        seen.insert("c"); // evicts "b", the least recently seen
        assert!(seen.contains("a") && seen.contains("c") && !seen.contains("b"));
    }

    #[test]
    fn a_pending_ack_is_kept_until_done() {
        let mut seen = Seen::new(NonZeroUsize::new(2).unwrap());
        let ack = Ack {
            schema: b24_state::acks::SCHEMA.into(),
            member_id: "a1b2c3".into(),
            connector: "MyConnector".into(),
            line: 107,
            im: b24_state::acks::AckIm {
                chat_id: 1807,
                message_id: 501,
            },
            message_ids: vec!["ext-501".into()],
            chat_id: "channel-123".into(),
            delivered_at: 1_773_759_200,
        };
        seen.ack_pending("a", ack.clone());
        assert_eq!(seen.get("a"), Some(&Handled::AckPending(ack)));
        seen.insert("a");
        assert_eq!(seen.get("a"), Some(&Handled::Done));
        assert_eq!(seen.get("b"), None);
    }
}

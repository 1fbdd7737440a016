//! Which changes were already handled, by [`Change::id`](b24_state::changes::Change::id).
//!
//! SQS delivers at least once, and a FIFO queue drops a repeated `MessageDeduplicationId` only
//! within 5 minutes: a change published again later (the outbox retrying a stream record, a
//! redrive) arrives a second time with the same `id`. The adapter remembers the ids it handled
//! and drops a repeat.
//!
//! This example keeps the most recent ids in memory (bounded: least recently seen evicted), so
//! a restart forgets them. A real adapter keeps them in its own store, in the same write as
//! the delivery's effect where it can, e.g. a DynamoDB conditional put
//! (`attribute_not_exists(change_id)`, with a TTL of a few weeks): a failed condition is a
//! duplicate.

use lru::LruCache;
use std::num::NonZeroUsize;

/// The ids of the most recently handled changes.
pub struct Seen {
    ids: LruCache<String, ()>,
}

impl Seen {
    /// Remembers at most `capacity` ids.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Seen {
            ids: LruCache::new(capacity),
        }
    }

    /// Whether `id` was handled (and keeps it remembered longer if so).
    pub fn contains(&mut self, id: &str) -> bool {
        self.ids.get(id).is_some()
    }

    /// Records `id` as handled.
    pub fn insert(&mut self, id: &str) {
        self.ids.put(id.to_string(), ());
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
}

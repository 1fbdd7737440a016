//! Bitrix24's per-portal REST limit: a leaky bucket (`limits.md`).
//!
//! Every HTTP request adds 1 to a counter that drains at `drain_per_second`; a request that
//! would take the counter over `capacity` is refused with 503 `QUERY_LIMIT_EXCEEDED` and does
//! not count. So a quiet portal takes a burst of `capacity` requests, then `drain_per_second`.

use serde::{Deserialize, Serialize};

/// A leaky-bucket limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests drained per second (cloud plans: 2; Enterprise: 5).
    pub drain_per_second: f64,
    /// Burst size (cloud plans: 50; Enterprise: 250).
    pub capacity: u32,
}

impl RateLimit {
    /// Every cloud plan but Enterprise: 2/s, burst 50.
    pub const CLOUD: RateLimit = RateLimit {
        drain_per_second: 2.0,
        capacity: 50,
    };
    /// Enterprise plans: 5/s, burst 250.
    pub const ENTERPRISE: RateLimit = RateLimit {
        drain_per_second: 5.0,
        capacity: 250,
    };

    /// Whether the numbers make a limit (finite, non-negative drain; capacity ≥ 1).
    pub fn is_valid(&self) -> bool {
        self.drain_per_second.is_finite() && self.drain_per_second >= 0.0 && self.capacity >= 1
    }
}

/// One portal's bucket.
#[derive(Debug, Clone)]
pub(crate) struct LeakyBucket {
    limit: Option<RateLimit>,
    level: f64,
    updated: f64,
}

impl LeakyBucket {
    pub(crate) fn new(limit: Option<RateLimit>) -> Self {
        LeakyBucket {
            limit,
            level: 0.0,
            updated: 0.0,
        }
    }

    pub(crate) fn limit(&self) -> Option<RateLimit> {
        self.limit
    }

    /// Replaces the limit and empties the bucket.
    pub(crate) fn set_limit(&mut self, limit: Option<RateLimit>) {
        *self = LeakyBucket::new(limit);
    }

    /// Counts one request at `now` (Unix seconds) if it fits; `false` means refuse it.
    pub(crate) fn admit(&mut self, now: f64) -> bool {
        let Some(limit) = self.limit else {
            return true;
        };
        let elapsed = (now - self.updated).max(0.0);
        self.level = (self.level - elapsed * limit.drain_per_second).max(0.0);
        self.updated = now;
        if self.level + 1.0 > f64::from(limit.capacity) + 1e-9 {
            return false;
        }
        self.level += 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_drain() {
        let mut bucket = LeakyBucket::new(Some(RateLimit::CLOUD));
        let t = 1_000.0;
        assert!((0..50).all(|_| bucket.admit(t)));
        assert!(!bucket.admit(t));
        assert!(!bucket.admit(t + 0.4));
        assert!(bucket.admit(t + 0.5));
        assert!(!bucket.admit(t + 0.5));
        assert!(bucket.admit(t + 1.5) && bucket.admit(t + 1.5) && !bucket.admit(t + 1.5));
        assert!((0..50).all(|_| bucket.admit(t + 100.0)));
    }

    #[test]
    fn no_limit_admits_everything() {
        let mut bucket = LeakyBucket::new(None);
        assert!((0..10_000).all(|_| bucket.admit(0.0)));
    }
}

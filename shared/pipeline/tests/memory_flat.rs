//! A flood of requests for unknown portals (unauthenticated, each a different `member_id`)
//! must not grow a function's memory: unknown portals are never cached, and the cache of
//! installed ones is bounded. Measured with a counting allocator over live bytes.

mod common;

use b24_events::Family;
use common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[tokio::test(flavor = "current_thread")]
async fn memory_stays_flat_under_a_flood_of_unknown_portals() {
    let h = Harness::memory(None, None);
    let messages = h.pipeline(Family::Messages);
    let send = |i: usize| {
        let body = form(&message_add(&format!("unknown-{i:08}"), &app_token(1), 1));
        (body, i)
    };
    // Warm up (lazy statics, tracing, the metrics buffer is drained below).
    for i in 0..1000 {
        let (body, _) = send(i);
        assert_eq!(post(&messages, &body).await.0, 401);
    }
    h.metrics.0.lock().unwrap().clear();
    let before = LIVE.load(Ordering::Relaxed);
    for i in 1000..21_000 {
        let (body, _) = send(i);
        assert_eq!(post(&messages, &body).await.0, 401);
        if i % 1000 == 0 {
            // The metrics sink is a test buffer: drain it like stdout would be.
            h.metrics.0.lock().unwrap().clear();
        }
    }
    h.metrics.0.lock().unwrap().clear();
    let after = LIVE.load(Ordering::Relaxed);
    let growth = after - before;
    eprintln!("live bytes before {before}, after {after}: {growth:+} after 20 000 unknown portals");
    assert_eq!(messages.registry().cached_len(), 0);
    assert!(growth < 64 * 1024, "memory grew by {growth} bytes");
}

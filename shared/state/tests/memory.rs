//! The transition rules against the in-memory store (no database needed).

mod common;
use common::scenarios::*;
use common::*;

async fn mem() -> Db {
    Db::Mem(b24_state::MemoryStore::new())
}

#[tokio::test]
async fn each_event_on_an_empty_portal() {
    ten_events_on_empty(mem).await;
}
#[tokio::test]
async fn each_event_on_a_populated_portal() {
    ten_events_on_populated(mem).await;
}
#[tokio::test]
async fn message_events_in_any_order() {
    message_orders(mem).await;
}
#[tokio::test]
async fn dialog_events_in_any_order() {
    dialog_orders(mem).await;
}
#[tokio::test]
async fn app_events_in_any_order() {
    app_orders(mem).await;
}
#[tokio::test]
async fn same_second_install_and_uninstall_answer_what_they_did() {
    same_second_install_and_uninstall(mem).await;
}
#[tokio::test]
async fn stale_events_change_nothing() {
    stale_outcomes(mem).await;
}
#[tokio::test]
async fn events_with_several_items() {
    multi_item_events(mem).await;
}
#[tokio::test]
async fn long_texts_are_truncated() {
    long_text_is_truncated(mem).await;
}
#[tokio::test]
async fn clean_uninstall_purges_that_portal_only() {
    clean_uninstall_purges_only_that_portal(mem).await;
}

/// A backend that answers `TransactionConflict` a number of times before letting transactions
/// through (DynamoDB Local serializes transactions, so the retry path is tested here).
struct Conflicting {
    inner: b24_state::MemoryStore,
    conflicts_left: std::sync::atomic::AtomicU32,
}

impl b24_state::transition::Backend for Conflicting {
    async fn transact(
        &self,
        writes: Vec<b24_state::item::Write>,
    ) -> Result<b24_state::transition::TxResult, b24_state::StoreError> {
        use b24_state::transition::{Reason, TxResult};
        use std::sync::atomic::Ordering;
        if self
            .conflicts_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            let mut reasons = vec![Reason::None; writes.len()];
            reasons[writes.len() - 1] = Reason::Conflict;
            return Ok(TxResult::Cancelled(reasons));
        }
        self.inner.transact(writes).await
    }
}

#[tokio::test]
async fn transaction_conflicts_are_retried_then_classified() {
    use b24_state::transition::{plan, run, MAX_CONFLICT_RETRIES};
    use b24_state::{Applied, Outcome};
    // A first install: the only event that needs no portal record.
    let e = app(b24_events::EventKind::AppInstall, MEMBER, TOKEN, 100, "1");
    let ctx = b24_state::Context {
        member: b24_state::MemberId::new(MEMBER).unwrap(),
        authorization: b24_state::Authorization::Register {
            token_hash: b24_state::TokenHash::of(e.auth.application_token.as_ref()).unwrap(),
        },
        received_at: 1,
        event_ttl_days: 30,
        verified_client_endpoint: None,
    };
    let p = plan(&e, &ctx).unwrap();
    let b = Conflicting {
        inner: b24_state::MemoryStore::new(),
        conflicts_left: 3.into(),
    };
    assert_eq!(
        run(&b, &p).await.unwrap(),
        Applied::Outcome(Outcome::Applied)
    );
    assert_eq!(b.inner.transaction_count(), 1);
    // A retry after the event was applied by the conflicting writer is a duplicate (the
    // portal exists now, so the registration's guard fails too: refused, nothing written).
    b.conflicts_left
        .store(2, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(
        run(&b, &p).await.unwrap(),
        Applied::Outcome(Outcome::Duplicate) | Applied::Unauthorized
    ));
    // Conflict that outlasts every retry: an error, but not "unavailable" (never a 503 by itself).
    let b = Conflicting {
        inner: b24_state::MemoryStore::new(),
        conflicts_left: (MAX_CONFLICT_RETRIES + 5).into(),
    };
    let err = run(&b, &p).await.unwrap_err();
    assert!(
        matches!(err, b24_state::StoreError::Contention { .. }),
        "{err}"
    );
    assert!(!err.is_invalid_input());
    assert!(b.inner.all_records().is_empty());
}

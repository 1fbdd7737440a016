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

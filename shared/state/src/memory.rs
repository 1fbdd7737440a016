//! [`MemoryStore`]: the in-memory test double. It evaluates the same [`Write`]s as DynamoDB
//! (conditions, `if_not_exists`, `REMOVE`, `ADD`) atomically under one lock.

use crate::error::StoreError;
use crate::item::{Item, Key, Write};
use crate::portal::Portal;
use crate::schema;
use crate::transition::{self, Backend, Reason, TxResult};
use crate::{Outcome, Store};
use b24_events::Event;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// An in-memory [`Store`] with DynamoDB's transaction semantics.
#[derive(Debug, Default)]
pub struct MemoryStore {
    items: Mutex<BTreeMap<Key, Item>>,
    ttl_days: Option<i64>,
    transactions: AtomicU64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Every record of the portal, in key order.
    pub fn portal_records(&self, member_id: &str) -> Vec<serde_json::Value> {
        let parts = schema::portal_partitions(member_id);
        self.items
            .lock()
            .expect("memory store lock")
            .iter()
            .filter(|(k, _)| parts.contains(&k.pk))
            .map(|(_, v)| serde_json::Value::Object(v.clone()))
            .collect()
    }

    /// Every record of every portal.
    pub fn all_records(&self) -> Vec<serde_json::Value> {
        self.items
            .lock()
            .expect("memory store lock")
            .values()
            .map(|v| serde_json::Value::Object(v.clone()))
            .collect()
    }

    /// Inserts a record as is (tests).
    pub fn insert(&self, item: Item) {
        let key = Key {
            pk: item["pk"].as_str().unwrap_or_default().to_string(),
            sk: item["sk"].as_str().unwrap_or_default().to_string(),
        };
        self.items
            .lock()
            .expect("memory store lock")
            .insert(key, item);
    }

    /// Transactions attempted so far.
    pub fn transaction_count(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }
}

impl Backend for MemoryStore {
    async fn transact(&self, writes: Vec<Write>) -> Result<TxResult, StoreError> {
        self.transactions.fetch_add(1, Ordering::Relaxed);
        let mut items = self.items.lock().expect("memory store lock");
        let mut seen = std::collections::BTreeSet::new();
        for w in &writes {
            if !seen.insert(w.key().clone()) {
                return Err(StoreError::Rejected {
                    operation: "TransactWriteItems",
                    cause: "ValidationException: two actions on one item".into(),
                });
            }
        }
        let reasons: Vec<Reason> = writes
            .iter()
            .map(|w| {
                let old = items.get(w.key());
                let ok = match w {
                    Write::Put(p) => p.condition.iter().all(|c| c.eval(old)),
                    Write::Update(u) => u.condition_holds(old),
                };
                if ok {
                    Reason::None
                } else {
                    Reason::ConditionFailed(old.cloned())
                }
            })
            .collect();
        if reasons.iter().any(|r| *r != Reason::None) {
            return Ok(TxResult::Cancelled(reasons));
        }
        for w in writes {
            match w {
                Write::Put(p) => {
                    items.insert(p.key, p.item);
                }
                Write::Update(u) => {
                    let new = u.apply_to(items.get(&u.key));
                    items.insert(u.key, new);
                }
            }
        }
        Ok(TxResult::Committed)
    }

    async fn purge_portal(&self, member_id: &str) -> Result<(), StoreError> {
        let parts = schema::portal_partitions(member_id);
        self.items
            .lock()
            .expect("memory store lock")
            .retain(|k, _| !parts.contains(&k.pk));
        Ok(())
    }
}

impl Store for MemoryStore {
    async fn get_portal(&self, member_id: &str) -> Result<Option<Portal>, StoreError> {
        let key = Key {
            pk: schema::portal_pk(member_id),
            sk: schema::PORTAL_SK.into(),
        };
        let items = self.items.lock().expect("memory store lock");
        Ok(items.get(&key).and_then(Portal::from_item))
    }

    async fn apply(&self, event: &Event, now: i64) -> Result<Outcome, StoreError> {
        let plan = transition::plan(
            event,
            now,
            self.ttl_days.unwrap_or(transition::DEFAULT_EVENT_TTL_DAYS),
        );
        transition::run(self, &plan).await
    }
}

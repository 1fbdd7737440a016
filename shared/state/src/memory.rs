//! [`MemoryStore`]: the in-memory test double. It evaluates the same [`Write`]s as DynamoDB
//! (conditions, `if_not_exists`, `REMOVE`, `ADD`, condition checks, conditional deletes)
//! atomically under one lock, and can be told to fail like an unreachable DynamoDB.

use crate::error::StoreError;
use crate::item::{Item, Key, Write};
use crate::portal::Portal;
use crate::purge::{Page, PagedQuery, Projection};
use crate::schema::{self, MemberId};
use crate::transition::{self, Applied, Backend, Context, Reason, TxResult};
use crate::Store;
use b24_events::Event;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// An in-memory [`Store`] with DynamoDB's transaction semantics.
#[derive(Debug, Default)]
pub struct MemoryStore {
    items: Mutex<BTreeMap<Key, Item>>,
    transactions: AtomicU64,
    failure: Mutex<Option<StoreError>>,
    delay: Mutex<Option<std::time::Duration>>,
    stream: Mutex<Vec<StreamRecord>>,
}

/// One item change as the table's stream (`NEW_AND_OLD_IMAGES`) reports it: the images before
/// and after (`None` for an insert / a removal). Like DynamoDB, a write that leaves an item
/// byte for byte as it was reports nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamRecord {
    /// The item's key.
    pub key: Key,
    /// The image before the write.
    pub old: Option<Item>,
    /// The image after the write.
    pub new: Option<Item>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn items(&self) -> MutexGuard<'_, BTreeMap<Key, Item>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on every operation fails with `error` (`None`: works again). Simulates an
    /// unreachable, throttling or misconfigured DynamoDB.
    pub fn set_failure(&self, error: Option<StoreError>) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// From now on every operation first waits `delay` (`None`: no delay). Simulates a
    /// DynamoDB that hangs.
    pub fn set_delay(&self, delay: Option<std::time::Duration>) {
        *self.delay.lock().unwrap_or_else(|e| e.into_inner()) = delay;
    }

    async fn stall(&self) {
        let delay = *self.delay.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
    }

    fn fail(&self) -> Result<(), StoreError> {
        match &*self.failure.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Every record whose `member_id` attribute is the portal's, in key order.
    pub fn portal_records(&self, member: &MemberId) -> Vec<serde_json::Value> {
        let parts = schema::portal_partitions(member);
        self.items()
            .iter()
            .filter(|(k, v)| {
                parts.contains(&k.pk)
                    && v.get("member_id").and_then(|m| m.as_str()) == Some(member.as_str())
            })
            .map(|(_, v)| serde_json::Value::Object(v.clone()))
            .collect()
    }

    /// Every record of every portal.
    pub fn all_records(&self) -> Vec<serde_json::Value> {
        self.items()
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
        self.items().insert(key, item);
    }

    /// Every item change since the last call, in commit order (the stream of the table).
    pub fn take_stream(&self) -> Vec<StreamRecord> {
        std::mem::take(&mut *self.stream.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Transactions attempted so far.
    pub fn transaction_count(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }
}

impl Backend for MemoryStore {
    async fn transact(&self, writes: Vec<Write>) -> Result<TxResult, StoreError> {
        self.stall().await;
        self.fail()?;
        self.transactions.fetch_add(1, Ordering::Relaxed);
        if writes.len() > 100 {
            return Err(StoreError::Invalid {
                operation: "TransactWriteItems",
                cause: "ValidationException: more than 100 actions".into(),
            });
        }
        let mut items = self.items();
        let mut seen = BTreeSet::new();
        for w in &writes {
            if !seen.insert(w.key().clone()) {
                return Err(StoreError::Invalid {
                    operation: "TransactWriteItems",
                    cause: "ValidationException: two actions on one item".into(),
                });
            }
        }
        let reasons: Vec<Reason> = writes
            .iter()
            .map(|w| {
                let old = items.get(w.key());
                if w.condition_holds(old) {
                    Reason::None
                } else {
                    Reason::ConditionFailed(old.cloned())
                }
            })
            .collect();
        if reasons.iter().any(|r| *r != Reason::None) {
            return Ok(TxResult::Cancelled(reasons));
        }
        let mut stream = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        for w in writes {
            let (key, new) = match w {
                Write::Put(p) => (p.key, Some(p.item)),
                Write::Update(u) => {
                    let new = u.apply_to(items.get(&u.key));
                    (u.key, Some(new))
                }
                Write::Check(_) => continue,
                Write::Delete(d) => (d.key, None),
            };
            let old = match &new {
                Some(item) => items.insert(key.clone(), item.clone()),
                None => items.remove(&key),
            };
            if old != new {
                stream.push(StreamRecord { key, old, new });
            }
        }
        Ok(TxResult::Committed)
    }
}

impl PagedQuery for MemoryStore {
    async fn page(
        &self,
        pk: &str,
        after: Option<&str>,
        limit: usize,
        _projection: Projection,
    ) -> Result<Page, StoreError> {
        self.fail()?;
        let items = self.items();
        let mut out = Vec::new();
        let mut last = None;
        for (k, v) in items.iter().filter(|(k, _)| k.pk == pk) {
            if after.is_some_and(|a| k.sk.as_str() <= a) {
                continue;
            }
            if out.len() == limit {
                return Ok(Page {
                    items: out,
                    last_sk: last,
                });
            }
            last = Some(k.sk.clone());
            out.push(v.clone());
        }
        Ok(Page {
            items: out,
            last_sk: None,
        })
    }
}

impl Store for MemoryStore {
    async fn get_portal(&self, member: &MemberId) -> Result<Option<Portal>, StoreError> {
        self.stall().await;
        self.fail()?;
        let items = self.items();
        Ok(items
            .get(&schema::portal_key(member))
            .and_then(Portal::from_item))
    }

    async fn apply(&self, event: &Event, ctx: &Context) -> Result<Applied, StoreError> {
        let plan = transition::plan(event, ctx)?;
        transition::run(self, &plan).await
    }
}

//! The `CLEAN=1` purge, off the request path, in bounded and resumable steps.
//!
//! An ONAPPUNINSTALL with `CLEAN=1` that wins (it is the portal's latest app event) writes, in
//! its own transaction, a **purge marker** (`PORTAL#{member_id}` / `PURGE#{epoch}`,
//! `status = pending`) for the portal's current epoch, and is answered at once. The purge
//! function consumes the table's stream: each new or changed pending marker runs one
//! [`step`], which deletes records until its [`Budget`] is spent and then writes its cursor
//! back to the marker — that write is the stream record that triggers the next step. The last
//! step sets `status = done`.
//!
//! What is deleted: every record in the portal's partitions (Query only, never Scan) whose
//! `member_id` attribute is the portal's and whose `epoch` is at most the marker's, except the
//! portal record itself (kept as an uninstalled tombstone, so a late event with the old token is
//! refused and a reinstall has to be verified) and the purge markers. Each delete is
//! conditional on exactly that, so a record written or touched after a verified reinstall
//! (a newer epoch) survives even while an older purge is still running. Steps are idempotent:
//! a repeated step (a stream record delivered twice) finds nothing left to delete and its
//! marker update is refused by the step counter.

use crate::error::StoreError;
use crate::item::{Cond, Delete, Item, Key, Update, Write};
use crate::schema::{self, MemberId};
use crate::transition::{conflict_pause, Backend, Reason, TxResult};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Records read per Query page.
pub const PAGE_SIZE: usize = 100;
/// Deletes per transaction.
pub const DELETES_PER_TRANSACTION: usize = 25;

/// One page of a partition, in sort-key order.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// The items (at least `pk`, `sk`, `member_id`, `epoch`, `record_type` when present).
    pub items: Vec<Item>,
    /// The sort key to continue after, when the partition has more.
    pub last_sk: Option<String>,
}

/// Which attributes a page carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projection {
    /// `pk`, `sk`, `member_id`, `epoch`, `record_type`: what deciding a delete needs.
    PurgeKeys,
    /// Every attribute.
    Full,
}

/// Paged reads of one partition (Query on the partition key, consistent).
pub trait PagedQuery: Send + Sync {
    /// Up to `limit` items of partition `pk` with a sort key after `after`.
    fn page(
        &self,
        pk: &str,
        after: Option<&str>,
        limit: usize,
        projection: Projection,
    ) -> impl std::future::Future<Output = Result<Page, StoreError>> + Send;
}

/// Where a purge continues.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Index into [`schema::portal_partitions`].
    pub partition: usize,
    /// Sort key to continue after within that partition.
    pub after: Option<String>,
}

/// A purge marker as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The portal.
    pub member: MemberId,
    /// The epoch whose records are purged.
    pub epoch: i64,
    /// Steps done so far.
    pub step: i64,
    /// Records deleted so far.
    pub deleted: i64,
    /// Where the next step continues.
    pub cursor: Cursor,
    /// `status = done`.
    pub done: bool,
}

impl Marker {
    /// Reads a marker record; `None` when `item` is not a valid purge marker.
    pub fn from_item(item: &Item) -> Option<Marker> {
        if item.get("record_type").and_then(Value::as_str) != Some(schema::record_type::PURGE) {
            return None;
        }
        let member = MemberId::new(item.get("member_id")?.as_str()?).ok()?;
        let n = |k: &str| item.get(k).and_then(Value::as_i64);
        Some(Marker {
            member,
            epoch: n("epoch")?,
            step: n("step").unwrap_or(0),
            deleted: n("deleted").unwrap_or(0),
            cursor: Cursor {
                partition: n("cursor_partition").unwrap_or(0).max(0) as usize,
                after: item
                    .get("cursor_after")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            },
            done: item.get("status").and_then(Value::as_str) == Some("done"),
        })
    }

    /// The marker's key.
    pub fn key(&self) -> Key {
        Key {
            pk: schema::portal_pk(&self.member),
            sk: schema::purge_sk(self.epoch),
        }
    }
}

/// How much one step may do.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Stop after this many deletes.
    pub max_deletes: usize,
    /// Stop once this instant has passed (checked between transactions).
    pub deadline: Instant,
}

impl Budget {
    /// A budget of `max_deletes` deletes or `time`, whichever comes first.
    pub fn new(max_deletes: usize, time: Duration) -> Self {
        Budget {
            max_deletes,
            deadline: Instant::now() + time,
        }
    }
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepResult {
    /// Deleted `deleted` records and advanced the marker; `done` when nothing is left.
    Advanced {
        /// Records deleted by this step.
        deleted: usize,
        /// The purge is complete.
        done: bool,
    },
    /// The marker was already done, or another step advanced it first.
    NothingToDo,
}

/// Runs one bounded step of the purge `marker` describes and records its progress.
pub async fn step<B: Backend + PagedQuery>(
    backend: &B,
    marker: &Marker,
    budget: Budget,
) -> Result<StepResult, StoreError> {
    if marker.done {
        return Ok(StepResult::NothingToDo);
    }
    let partitions = schema::portal_partitions(&marker.member);
    let mut cursor = marker.cursor.clone();
    let mut deleted = 0usize;
    while cursor.partition < partitions.len() {
        if deleted >= budget.max_deletes || Instant::now() >= budget.deadline {
            break;
        }
        let pk = &partitions[cursor.partition];
        let page = backend
            .page(
                pk,
                cursor.after.as_deref(),
                PAGE_SIZE,
                Projection::PurgeKeys,
            )
            .await?;
        let keys: Vec<Key> = page
            .items
            .iter()
            .filter(|item| purgeable(item, marker))
            .filter_map(key_of)
            .collect();
        for chunk in keys.chunks(DELETES_PER_TRANSACTION) {
            deleted += delete_chunk(backend, marker, chunk).await?;
        }
        match page.last_sk {
            Some(sk) => cursor.after = Some(sk),
            None => {
                cursor.partition += 1;
                cursor.after = None;
            }
        }
    }
    let done = cursor.partition >= partitions.len();
    let mut u = Update::new(marker.key())
        .set("step", marker.step + 1)
        .set("cursor_partition", cursor.partition as i64)
        .set("status", if done { "done" } else { "pending" })
        .set(
            "updated_at",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        )
        .add("deleted", deleted as i64)
        .when(Cond::Equals("step", Value::from(marker.step)));
    u = match cursor.after {
        Some(after) => u.set("cursor_after", after),
        None => u.remove(&["cursor_after"]),
    };
    match backend.transact(vec![Write::Update(u)]).await? {
        TxResult::Committed => Ok(StepResult::Advanced { deleted, done }),
        TxResult::Cancelled(_) => Ok(StepResult::NothingToDo),
    }
}

/// Whether `item` belongs to the purged generation of the marker's portal.
fn purgeable(item: &Item, marker: &Marker) -> bool {
    let record_type = item.get("record_type").and_then(Value::as_str);
    // The portal record and the markers stay; the vault is cleared by the binder after any
    // uninstall (a purge of the old epoch must never delete the tokens a reinstall just
    // stored: the vault record has no epoch of its own).
    if matches!(
        record_type,
        Some(schema::record_type::PORTAL)
            | Some(schema::record_type::PURGE)
            | Some(schema::record_type::TOKENS)
    ) {
        return false;
    }
    item.get("member_id").and_then(Value::as_str) == Some(marker.member.as_str())
        && Cond::AbsentOrAtMost("epoch", marker.epoch).eval(Some(item))
}

fn key_of(item: &Item) -> Option<Key> {
    Some(Key {
        pk: item.get("pk")?.as_str()?.to_string(),
        sk: item.get("sk")?.as_str()?.to_string(),
    })
}

/// Deletes the records of `keys` that still belong to the purged generation; returns how many.
async fn delete_chunk<B: Backend>(
    backend: &B,
    marker: &Marker,
    keys: &[Key],
) -> Result<usize, StoreError> {
    let condition = vec![
        Cond::Equals("member_id", Value::String(marker.member.as_str().into())),
        Cond::AbsentOrAtMost("epoch", marker.epoch),
    ];
    let mut keys = keys.to_vec();
    let mut conflicts = 0u32;
    while !keys.is_empty() {
        let writes = keys
            .iter()
            .map(|k| {
                Write::Delete(Delete {
                    key: k.clone(),
                    condition: condition.clone(),
                })
            })
            .collect();
        match backend.transact(writes).await? {
            TxResult::Committed => return Ok(keys.len()),
            TxResult::Cancelled(reasons) => {
                if let Some(Reason::Other(why)) =
                    reasons.iter().find(|r| matches!(r, Reason::Other(_)))
                {
                    return Err(StoreError::Invalid {
                        operation: "TransactWriteItems",
                        cause: why.clone(),
                    });
                }
                let before = keys.len();
                // A record that no longer matches (touched under a newer epoch, or already
                // gone) is kept; the rest is deleted in the next round.
                let mut i = 0;
                keys.retain(|_| {
                    let keep = !matches!(reasons.get(i), Some(Reason::ConditionFailed(_)));
                    i += 1;
                    keep
                });
                if keys.len() == before {
                    conflicts += 1;
                    conflict_pause(conflicts).await?;
                }
            }
        }
    }
    Ok(0)
}

/// The purge markers of `member` that are not done yet.
pub async fn pending_markers<B: PagedQuery>(
    backend: &B,
    member: &MemberId,
) -> Result<Vec<Marker>, StoreError> {
    let pk = schema::portal_pk(member);
    let mut out = Vec::new();
    let mut after = Some("PURGE#".to_string());
    loop {
        let page = backend
            .page(&pk, after.as_deref(), PAGE_SIZE, Projection::Full)
            .await?;
        let mut past_markers = false;
        for item in &page.items {
            match item.get("sk").and_then(Value::as_str) {
                Some(sk) if sk.starts_with("PURGE#") => {
                    if let Some(m) = Marker::from_item(item).filter(|m| !m.done) {
                        out.push(m);
                    }
                }
                _ => past_markers = true,
            }
        }
        match page.last_sk {
            Some(sk) if !past_markers => after = Some(sk),
            _ => return Ok(out),
        }
    }
}

/// Runs every pending purge of `member` to completion, each step bounded by `per_step`
/// deletes and `step_time` (for operators resuming a stalled purge, and for tests). Returns
/// the number of steps run.
pub async fn run_pending<B: Backend + PagedQuery>(
    backend: &B,
    member: &MemberId,
    per_step: usize,
    step_time: Duration,
) -> Result<usize, StoreError> {
    let mut steps = 0usize;
    loop {
        let markers = pending_markers(backend, member).await?;
        if markers.is_empty() {
            return Ok(steps);
        }
        for m in markers {
            step(backend, &m, Budget::new(per_step.max(1), step_time)).await?;
            steps += 1;
        }
        if steps > 1_000_000 {
            return Err(StoreError::Corrupt {
                what: "purge does not finish".into(),
            });
        }
    }
}

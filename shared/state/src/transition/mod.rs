//! Pure transition logic: an [`Event`] → the writes it causes. No I/O.
//!
//! [`plan`] turns one authorized event into a [`Plan`]: an idempotency key, the secret-free
//! event record, the authorization check on the portal record, and conditional [`Update`]s
//! whose conditions encode the ownership rules of the crate docs, so that any arrival order of
//! the same set of events yields the same records. [`run`] executes a plan exactly once against
//! any [`Backend`] (DynamoDB, or memory in the unit tests) and classifies the outcome.
//!
//! Each event's identity (idempotency key) and writes live together in the module of its family
//! ([`messages`], [`dialogs`], [`connector`], [`app`]); [`plan`] dispatches on
//! [`EventData`] with one exhaustive `match`, so a new event type does not compile until it has
//! both.

mod app;
mod connector;
mod dialogs;
mod messages;

use crate::error::StoreError;
use crate::item::{Check, Cond, Item, Key, Put, Update, Write};
use crate::portal::{sha256_hex, TokenHash};
use crate::schema::{self, MemberId};
use crate::Outcome;
use b24_events::{Event, EventData, EventKind};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Texts longer than this (bytes of UTF-8) are cut at a character boundary and flagged
/// `text_truncated`, so a message record stays far below DynamoDB's 400 KB item limit.
pub const TEXT_LIMIT_BYTES: usize = 64 * 1024;
/// At most this many external IDs are kept per message (`ids_truncated` beyond).
pub const MAX_IDS: usize = 100;
/// External IDs longer than this are cut (`ids_truncated`).
pub const ID_LIMIT_BYTES: usize = 1024;
/// At most this many `files` entries are kept per message (`files_truncated` beyond).
pub const MAX_FILES: usize = 100;
/// `message.params` is kept up to this many bytes of JSON per message (`params_truncated`
/// beyond; whole entries are dropped, in key order).
pub const PARAMS_LIMIT_BYTES: usize = 8 * 1024;
/// The normalized event stored in an event record is reduced (texts cut, then files dropped,
/// then `data` omitted) until its JSON fits in this many bytes (`event_truncated`).
pub const EVENT_JSON_LIMIT_BYTES: usize = 256 * 1024;
/// Most items (messages or dialogs) one event may carry. The decoder refuses more (413) by
/// default; the state crate refuses them too, so one event is always one transaction:
/// 50 state writes + the event record + the portal check + the connector record stay under
/// DynamoDB's 100 actions, and the body limit keeps it under 4 MB.
pub const MAX_ITEMS_PER_EVENT: usize = 50;
/// Default TTL of event records.
pub const DEFAULT_EVENT_TTL_DAYS: i64 = 30;
/// `TransactionConflict` retries before giving up with [`StoreError::Contention`].
pub const MAX_CONFLICT_RETRIES: u32 = 8;

/// Before retrying a transaction after its `conflicts`-th `TransactionConflict`: a jittered
/// pause growing from 5–10 ms to 160–320 ms, or `Contention` past [`MAX_CONFLICT_RETRIES`].
pub(crate) async fn conflict_pause(conflicts: u32) -> Result<(), StoreError> {
    if conflicts > MAX_CONFLICT_RETRIES {
        return Err(StoreError::Contention {
            attempts: conflicts,
        });
    }
    let base = 10u64 << conflicts.min(5);
    tokio::time::sleep(Duration::from_millis(fastrand::u64(base / 2..=base))).await;
    Ok(())
}

/// What the portal record must look like for an event to land: checked inside the transaction
/// that applies the event, so neither a warm cache in another function instance nor a race
/// with an uninstall or a token change can let it through. Serializes (token hash and epoch
/// only, no secret) so a parked event can be redriven under the same authorization.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Authorization {
    /// The portal is installed with this token under this epoch. Every event of an installed
    /// portal (and an install/update that keeps the token) is applied under this.
    Installed {
        /// The presented token's hash.
        token_hash: TokenHash,
        /// The portal's epoch as read.
        epoch: i64,
    },
    /// A first install: no portal record exists yet.
    Register {
        /// The presented token's hash, stored as the portal's.
        token_hash: TokenHash,
    },
    /// A verified token change or reinstall: the portal record is still exactly as it was read
    /// when the change was verified; the presented token replaces the stored one and the epoch
    /// grows by one.
    Replace {
        /// The presented (new) token's hash.
        token_hash: TokenHash,
        /// The portal as read.
        from: PortalState,
    },
}

/// The authorization-relevant part of a portal record as it was read.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortalState {
    /// Stored token hash (empty when none).
    pub token_hash: String,
    /// Installed or not.
    pub installed: bool,
    /// Epoch (0 for records written before epochs existed).
    pub epoch: i64,
}

impl Authorization {
    /// The presented token's hash.
    pub fn token_hash(&self) -> &TokenHash {
        match self {
            Authorization::Installed { token_hash, .. }
            | Authorization::Register { token_hash }
            | Authorization::Replace { token_hash, .. } => token_hash,
        }
    }

    /// The epoch the event's records are written under.
    pub fn epoch(&self) -> i64 {
        match self {
            Authorization::Installed { epoch, .. } => *epoch,
            Authorization::Register { .. } => 1,
            Authorization::Replace { from, .. } => from.epoch + 1,
        }
    }

    /// The conditions on the portal record.
    pub(crate) fn portal_guard(&self) -> Vec<Cond> {
        match self {
            Authorization::Installed { token_hash, epoch } => vec![
                Cond::Equals("installed", Value::Bool(true)),
                Cond::Equals("token_hash", Value::String(token_hash.as_str().into())),
                epoch_is(*epoch),
            ],
            Authorization::Register { .. } => vec![Cond::ItemAbsent],
            Authorization::Replace { from, .. } => vec![
                Cond::ItemPresent,
                if from.token_hash.is_empty() {
                    Cond::EqualsOrAbsent("token_hash", Value::String(String::new()))
                } else {
                    Cond::Equals("token_hash", Value::String(from.token_hash.clone()))
                },
                if from.installed {
                    Cond::Equals("installed", Value::Bool(true))
                } else {
                    Cond::EqualsOrAbsent("installed", Value::Bool(false))
                },
                epoch_is(from.epoch),
            ],
        }
    }
}

fn epoch_is(epoch: i64) -> Cond {
    if epoch == 0 {
        Cond::EqualsOrAbsent("epoch", Value::from(0))
    } else {
        Cond::Equals("epoch", Value::from(epoch))
    }
}

/// Everything [`plan`] needs besides the event.
#[derive(Clone, Debug)]
pub struct Context {
    /// The portal (validated).
    pub member: MemberId,
    /// Why the event may land (checked in the transaction).
    pub authorization: Authorization,
    /// When the event was received (Unix seconds): `updated_at`, `received_at`, TTLs. A
    /// redriven event keeps its original receive time, so it produces the very same writes.
    pub received_at: i64,
    /// Days event records are kept.
    pub event_ttl_days: i64,
    /// For an install verified through Bitrix24's OAuth server: the portal's REST endpoint as
    /// that server named it. Stored instead of the event's (sender-controlled) claim.
    pub verified_client_endpoint: Option<String>,
}

/// Whether a state write decides the outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The event's own fact (message, session, line, connector status, portal). If every
    /// primary write is refused by its condition the event is `stale`.
    Primary,
    /// A side fact (the connector seen on a line): unconditional, idempotent, rides along with
    /// the primary writes and is dropped when the event is stale.
    Seen,
}

/// One state change of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct StateWrite {
    /// The update to try first.
    pub update: Update,
    /// What to write instead when `update`'s condition fails and the fallback's own condition
    /// holds on the current item (an older edit still counts as a revision; an install that
    /// lost to a newer uninstall still records its descriptive facts).
    pub fallback: Option<Update>,
    /// The outcome when only the fallback is written: `Applied` for an older edit (it changes
    /// the revision count as answered), `Stale` for an app event whose effect lost.
    pub fallback_outcome: Outcome,
    /// Primary or side fact.
    pub role: Role,
    /// Writes that ride along only when `update` itself (not its fallback) is written: the
    /// purge marker of a `CLEAN=1` uninstall.
    pub companions: Vec<Write>,
}

impl StateWrite {
    fn primary(update: Update) -> Self {
        StateWrite {
            update,
            fallback: None,
            fallback_outcome: Outcome::Applied,
            role: Role::Primary,
            companions: Vec::new(),
        }
    }
    fn seen(update: Update) -> Self {
        StateWrite {
            update,
            fallback: None,
            fallback_outcome: Outcome::Applied,
            role: Role::Seen,
            companions: Vec::new(),
        }
    }
    fn or_else(mut self, fallback: Update, outcome: Outcome) -> Self {
        self.fallback = Some(fallback);
        self.fallback_outcome = outcome;
        self
    }
    fn with(mut self, companion: Write) -> Self {
        self.companions.push(companion);
        self
    }
}

/// Everything one event causes: one transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The portal.
    pub member: MemberId,
    /// The epoch the records are written under.
    pub epoch: i64,
    /// The canonical idempotency key (JSON array of the event's natural identity).
    pub idempotency_key: String,
    /// SHA-256 hex of `idempotency_key` (the event record's sort key).
    pub key_hash: String,
    /// Key of the event record (`attribute_not_exists` makes the plan exactly-once).
    pub record_key: Key,
    /// The event record without its `outcome` (added when the outcome is known).
    pub record: Item,
    /// The authorization check on the portal record, for events that do not write it.
    pub check: Option<Check>,
    /// State changes.
    pub writes: Vec<StateWrite>,
}

/// What one event's family module returns: its identity and its writes.
pub(crate) struct EventPlan {
    /// The natural identity (the idempotency key without code and portal).
    pub identity: Value,
    /// Primary writes.
    pub primaries: Vec<StateWrite>,
    /// Whether the primaries write the portal record (app events carry the authorization
    /// guard on that update; other events get a separate check).
    pub writes_portal: bool,
}

/// Shared by the family modules: the context every write carries.
pub(crate) struct Writes<'a> {
    pub member: &'a MemberId,
    pub auth: &'a b24_events::Auth,
    pub verified_client_endpoint: Option<&'a str>,
    pub authorization: &'a Authorization,
    pub epoch: i64,
    pub now: i64,
    pub ts: Option<i64>,
    seen: BTreeMap<Key, StateWrite>,
}

impl Writes<'_> {
    /// An update of `key` carrying the attributes every state record has.
    pub fn record(&self, key: Key, record_type: &'static str) -> Update {
        Update::new(key)
            .set("record_type", record_type)
            .set("member_id", self.member.as_str())
            .set("epoch", self.epoch)
            .set("updated_at", self.now)
    }

    /// The connector was seen on a line (idempotent upsert; `status` only if unset).
    pub fn see(&mut self, line: Option<i64>, connector: Option<&str>, as_sent: Option<&str>) {
        if let (Some(line), Some(c)) = (line, connector) {
            let key = Key {
                pk: schema::portal_pk(self.member),
                sk: schema::connector_sk(line, c),
            };
            let u = self
                .record(key.clone(), schema::record_type::CONNECTOR)
                .set("connector", c)
                .keep_some("connector_as_sent", as_sent)
                .set("line", line)
                .keep("status", "active");
            self.seen.insert(key, StateWrite::seen(u));
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// Cuts `s` to at most `limit` bytes at a character boundary.
pub fn truncate_text(s: &str, limit: usize) -> (String, bool) {
    if s.len() <= limit {
        return (s.to_string(), false);
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (s[..end].to_string(), true)
}

/// A sortable rank: `ts` zero-padded, then a tie-breaker (compared as a string).
pub fn rank(ts: Option<i64>, tie: &str) -> String {
    format!("{:020}#{tie}", ts.unwrap_or(0).max(0))
}

/// A tie-breaker from a hash of what distinguishes facts with equal `ts`.
pub fn hash_tie(discriminator: &str) -> String {
    sha256_hex(discriminator.as_bytes())[..16].to_string()
}

pub(crate) fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map(Into::into).unwrap_or(Value::Null)
}

/// The normalized event reduced to fit [`EVENT_JSON_LIMIT_BYTES`]; `true` when reduced.
pub fn bounded_event_json(event: &Event) -> (Value, bool) {
    let mut v = event.to_json();
    let size = |v: &Value| {
        serde_json::to_string(v)
            .map(|s| s.len())
            .unwrap_or(usize::MAX)
    };
    if size(&v) <= EVENT_JSON_LIMIT_BYTES {
        return (v, false);
    }
    let n = match &event.data {
        EventData::MessageAdd(m) | EventData::MessageUpdate(m) | EventData::MessageDelete(m) => {
            m.messages.len().max(1)
        }
        EventData::DialogStart(_)
        | EventData::DialogFinish(_)
        | EventData::StatusDelete(_)
        | EventData::LineDelete(_)
        | EventData::AppInstall(_)
        | EventData::AppUpdate(_)
        | EventData::AppUninstall(_) => 1,
    };
    let per_text = (EVENT_JSON_LIMIT_BYTES / 2 / n).min(TEXT_LIMIT_BYTES);
    if let Some(list) = v
        .pointer_mut("/data/messages")
        .and_then(Value::as_array_mut)
    {
        for it in list.iter_mut() {
            if let Some(t) = it.pointer_mut("/message/text") {
                if let Some(s) = t.as_str() {
                    *t = Value::String(truncate_text(s, per_text).0);
                }
            }
        }
    }
    if size(&v) <= EVENT_JSON_LIMIT_BYTES {
        return (v, true);
    }
    if let Some(list) = v
        .pointer_mut("/data/messages")
        .and_then(Value::as_array_mut)
    {
        for it in list.iter_mut() {
            for field in ["/message/files", "/message/params"] {
                if let Some(f) = it.pointer_mut(field) {
                    *f = if field.ends_with("files") {
                        json!([])
                    } else {
                        json!({})
                    };
                }
            }
        }
    }
    if size(&v) <= EVENT_JSON_LIMIT_BYTES {
        return (v, true);
    }
    v["data"] = json!({"omitted": "too large to store"});
    (v, true)
}

/// The canonical idempotency key of an event under `ctx` (see the crate docs).
pub fn idempotency_key(event: &Event, ctx: &Context) -> String {
    let identity = event_plan_identity(event, ctx);
    json!([event.kind().code(), ctx.member.as_str(), identity]).to_string()
}

fn event_plan_identity(event: &Event, ctx: &Context) -> Value {
    let mut w = writes_for(event, ctx);
    dispatch(event, &mut w).identity
}

fn writes_for<'a>(event: &'a Event, ctx: &'a Context) -> Writes<'a> {
    Writes {
        member: &ctx.member,
        auth: &event.auth,
        verified_client_endpoint: ctx.verified_client_endpoint.as_deref(),
        authorization: &ctx.authorization,
        epoch: ctx.authorization.epoch(),
        now: ctx.received_at,
        ts: event.ts,
        seen: BTreeMap::new(),
    }
}

/// The one place that knows every event: identity and writes per kind.
fn dispatch(event: &Event, w: &mut Writes<'_>) -> EventPlan {
    match &event.data {
        EventData::MessageAdd(d) => messages::add(d, w),
        EventData::MessageUpdate(d) => messages::update(d, w),
        EventData::MessageDelete(d) => messages::delete(d, w),
        EventData::DialogStart(d) => dialogs::start(d, w),
        EventData::DialogFinish(d) => dialogs::finish(d, w),
        EventData::StatusDelete(d) => connector::status_delete(d, w),
        EventData::LineDelete(d) => connector::line_delete(d, w),
        EventData::AppInstall(d) => app::install(EventKind::AppInstall, d, w),
        EventData::AppUpdate(d) => app::install(EventKind::AppUpdate, d, w),
        EventData::AppUninstall(d) => app::uninstall(d, w),
    }
}

/// How many items an event carries (messages or dialogs; 1 for the others).
pub fn item_count(event: &Event) -> usize {
    match &event.data {
        EventData::MessageAdd(m) | EventData::MessageUpdate(m) | EventData::MessageDelete(m) => {
            m.messages.len()
        }
        EventData::DialogStart(d) | EventData::DialogFinish(d) => d.dialogs.len(),
        EventData::StatusDelete(_)
        | EventData::LineDelete(_)
        | EventData::AppInstall(_)
        | EventData::AppUpdate(_)
        | EventData::AppUninstall(_) => 1,
    }
}

/// Builds the plan of one event under `ctx`.
pub fn plan(event: &Event, ctx: &Context) -> Result<Plan, StoreError> {
    if item_count(event) > MAX_ITEMS_PER_EVENT {
        return Err(StoreError::Invalid {
            operation: "plan",
            cause: format!("more than {MAX_ITEMS_PER_EVENT} items in one event"),
        });
    }
    if event.auth.member_id != ctx.member.as_str() {
        return Err(StoreError::Invalid {
            operation: "plan",
            cause: "the event's member_id is not the context's portal".into(),
        });
    }
    let mut w = writes_for(event, ctx);
    let EventPlan {
        identity,
        primaries,
        writes_portal,
    } = dispatch(event, &mut w);
    let seen: Vec<StateWrite> = std::mem::take(&mut w.seen).into_values().collect();
    let epoch = w.epoch;

    let idempotency_key = json!([event.kind().code(), ctx.member.as_str(), identity]).to_string();
    let key_hash = sha256_hex(idempotency_key.as_bytes());
    let (event_json, event_truncated) = bounded_event_json(event);
    let record_key = Key {
        pk: schema::event_pk(&ctx.member, &key_hash),
        sk: schema::event_sk(&key_hash),
    };
    let mut record = Item::new();
    record.insert("record_type".into(), schema::record_type::EVENT.into());
    record.insert("member_id".into(), ctx.member.as_str().into());
    record.insert("epoch".into(), epoch.into());
    record.insert("event_code".into(), event.kind().code().into());
    record.insert("idempotency_key".into(), key_hash.clone().into());
    record.insert("received_at".into(), ctx.received_at.into());
    record.insert(
        schema::TTL_ATTRIBUTE.into(),
        (ctx.received_at + ctx.event_ttl_days * 86_400).into(),
    );
    record.insert("event".into(), event_json);
    record.insert("event_truncated".into(), event_truncated.into());

    let check = (!writes_portal).then(|| Check {
        key: schema::portal_key(&ctx.member),
        guard: ctx.authorization.portal_guard(),
    });
    let mut writes = primaries;
    writes.extend(seen);
    Ok(Plan {
        member: ctx.member.clone(),
        epoch,
        idempotency_key,
        key_hash,
        record_key,
        record,
        check,
        writes,
    })
}

// ---------------------------------------------------------------------------------------------

/// Why one action of a cancelled transaction failed.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// This action was fine (or not evaluated).
    None,
    /// Its condition failed; the item as it was (`ALL_OLD`), when returned.
    ConditionFailed(Option<Item>),
    /// `TransactionConflict`: another transaction was writing the item.
    Conflict,
    /// Anything else (code and message).
    Other(String),
}

/// The result of one transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum TxResult {
    /// Every action was written.
    Committed,
    /// Nothing was written; one reason per action, in order.
    Cancelled(Vec<Reason>),
}

/// What [`run`] needs from a store.
pub trait Backend: Send + Sync {
    /// One atomic `TransactWriteItems` of `writes` (each condition checked; `ALL_OLD` on failure).
    fn transact(
        &self,
        writes: Vec<Write>,
    ) -> impl std::future::Future<Output = Result<TxResult, StoreError>> + Send;
    /// Whether this process wrote the "seen" record `key` under `epoch` recently (then it is
    /// left out of the transaction: it only ever sets `status` if unset, and writing it on
    /// every event would make every event of a line contend for one item).
    fn seen_recently(&self, _epoch: i64, _key: &Key) -> bool {
        false
    }
    /// Remembers that the "seen" record `key` was written under `epoch`.
    fn mark_seen(&self, _epoch: i64, _key: &Key) {}
}

/// What [`run`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The event was accepted with this outcome.
    Outcome(Outcome),
    /// The portal record did not match the authorization (uninstalled, purged, another token,
    /// another epoch): nothing was written.
    Unauthorized,
}

struct Pending {
    update: Update,
    fallback: Option<Update>,
    fallback_outcome: Outcome,
    /// `update` is the fallback now.
    fell_back: bool,
    role: Role,
    companions: Vec<Write>,
}

/// Executes a plan exactly once and classifies it. See the crate docs ("Outcomes").
pub async fn run<B: Backend>(backend: &B, plan: &Plan) -> Result<Applied, StoreError> {
    let mut pending: Vec<Pending> = plan
        .writes
        .iter()
        .filter(|w| !(w.role == Role::Seen && backend.seen_recently(plan.epoch, &w.update.key)))
        .map(|w| Pending {
            update: w.update.clone(),
            fallback: w.fallback.clone(),
            fallback_outcome: w.fallback_outcome,
            fell_back: false,
            role: w.role,
            companions: w.companions.clone(),
        })
        .collect();
    let mut conflicts = 0u32;
    let mut rounds = 0usize;
    loop {
        rounds += 1;
        if rounds > plan.writes.len() * 2 + 3 + MAX_CONFLICT_RETRIES as usize {
            // Cannot happen: every round drops or replaces a write, or counts a conflict.
            return Err(StoreError::Corrupt {
                what: "transaction keeps failing its conditions".into(),
            });
        }
        let applied = pending.iter().any(|p| p.role == Role::Primary);
        if !applied {
            // Stale: only the event record is written (the portal guard still applies: a stale
            // event of a revoked portal is refused, not recorded).
            pending.clear();
        }
        let outcome = if pending.iter().any(|p| {
            p.role == Role::Primary && (!p.fell_back || p.fallback_outcome == Outcome::Applied)
        }) {
            Outcome::Applied
        } else {
            Outcome::Stale
        };
        let mut record = plan.record.clone();
        record.insert("pk".into(), plan.record_key.pk.clone().into());
        record.insert("sk".into(), plan.record_key.sk.clone().into());
        record.insert("outcome".into(), outcome.as_str().into());
        let mut writes = vec![Write::Put(Put {
            key: plan.record_key.clone(),
            item: record,
            condition: vec![Cond::ItemAbsent],
        })];
        // Index of each action's origin, to read the cancellation reasons back.
        let mut origin: Vec<Origin> = vec![Origin::Record];
        match &plan.check {
            Some(check) => {
                writes.push(Write::Check(check.clone()));
                origin.push(Origin::Check);
            }
            None if !applied => {
                // An app event that is stale: its guard rides on a check of the portal record.
                if let Some(guard) = plan.writes.iter().find(|w| w.role == Role::Primary) {
                    writes.push(Write::Check(Check {
                        key: guard.update.key.clone(),
                        guard: guard.update.guard.clone(),
                    }));
                    origin.push(Origin::Check);
                }
            }
            None => {}
        }
        for (i, p) in pending.iter().enumerate() {
            writes.push(Write::Update(p.update.clone()));
            origin.push(Origin::Write(i));
            for c in &p.companions {
                writes.push(c.clone());
                origin.push(Origin::Companion);
            }
        }

        match backend.transact(writes).await? {
            TxResult::Committed => {
                for p in pending.iter().filter(|p| p.role == Role::Seen) {
                    backend.mark_seen(plan.epoch, &p.update.key);
                }
                return Ok(Applied::Outcome(outcome));
            }
            TxResult::Cancelled(reasons) => {
                if let Some(Reason::Other(why)) =
                    reasons.iter().find(|r| matches!(r, Reason::Other(_)))
                {
                    return Err(StoreError::Invalid {
                        operation: "TransactWriteItems",
                        cause: why.clone(),
                    });
                }
                // This very event was applied before: nothing changes whatever the portal
                // looks like now (a redriven event that had committed is a duplicate).
                if matches!(reasons.first(), Some(Reason::ConditionFailed(_))) {
                    return Ok(Applied::Outcome(Outcome::Duplicate));
                }
                let mut failed: Vec<(usize, Option<Item>)> = Vec::new();
                for (reason, from) in reasons.iter().zip(&origin) {
                    let Reason::ConditionFailed(old) = reason else {
                        continue;
                    };
                    match from {
                        Origin::Check => return Ok(Applied::Unauthorized),
                        Origin::Record | Origin::Companion => {}
                        Origin::Write(i) => {
                            // The guard fails (the portal changed under us) or only the
                            // ordering condition (a newer fact won).
                            if let Some(p) = pending.get(*i) {
                                if !crate::item::all_hold(&p.update.guard, old.as_ref()) {
                                    return Ok(Applied::Unauthorized);
                                }
                            }
                            failed.push((*i, old.clone()));
                        }
                    }
                }
                if failed.is_empty() {
                    // Only TransactionConflict: retry the same transaction after a jittered pause.
                    conflicts += 1;
                    conflict_pause(conflicts).await?;
                    continue;
                }
                // Refused by newer or terminal facts: try the fallback if it applies to the
                // item as it is, else drop the write. Highest index first keeps indexes valid.
                failed.sort_by_key(|(i, _)| *i);
                for (i, old) in failed.into_iter().rev() {
                    let Some(p) = pending.get_mut(i) else {
                        continue;
                    };
                    match p.fallback.take() {
                        Some(f) if old.is_none() || f.condition_holds(old.as_ref()) => {
                            p.update = f;
                            p.fell_back = true;
                            p.companions.clear();
                        }
                        _ => {
                            pending.remove(i);
                        }
                    }
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Origin {
    Record,
    Check,
    Write(usize),
    Companion,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_utf8_boundaries() {
        let (t, cut) = truncate_text("яяя", 5);
        assert_eq!((t.as_str(), cut), ("яя", true));
        assert_eq!(truncate_text("abc", 3), ("abc".to_string(), false));
    }

    #[test]
    fn ranks_order_by_ts_then_tie() {
        assert!(rank(Some(9), "z") < rank(Some(10), "a"));
        assert_eq!(rank(Some(10), "a"), rank(Some(10), "a"));
        assert!(rank(Some(10), "0#x") < rank(Some(10), "2#a"));
    }
}

//! [`DynamoStore`]: the DynamoDB adapter.

use crate::error::StoreError;
use crate::item::{Cond, Item, Key, Update, Write};
use crate::portal::Portal;
use crate::purge::{Page, PagedQuery, Projection};
use crate::schema::{self, MemberId};
use crate::transition::{self, Applied, Backend, Context, Reason, TxResult};
use crate::Store;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, ReturnConsumedCapacity,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use b24_events::Event;
use serde_json::{Number, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The DynamoDB-backed [`Store`] (one table, see [`crate::schema`]).
#[derive(Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
    requests: AtomicU64,
    write_milli_units: AtomicU64,
    seen: Mutex<HashMap<(i64, Key), Instant>>,
}

/// How long this process trusts that it wrote a connector's "seen" record.
const SEEN_TTL: Duration = Duration::from_secs(600);
/// Entries kept at most in the "seen" cache (cleared when full).
const SEEN_CAPACITY: usize = 10_000;

impl DynamoStore {
    /// A store on `table` using `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            requests: AtomicU64::new(0),
            write_milli_units: AtomicU64::new(0),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// A store on the table named by `TABLE_NAME`, with the standard AWS configuration from the
    /// environment (credentials, region, `AWS_ENDPOINT_URL`).
    pub async fn from_env() -> Result<Self, StoreError> {
        let table = std::env::var(schema::TABLE_NAME_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| StoreError::Config(format!("{} is not set", schema::TABLE_NAME_ENV)))?;
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let conf = aws_sdk_dynamodb::config::Builder::from(&config)
            .timeout_config(crate::Timeouts::BACKGROUND.config())
            .build();
        Ok(DynamoStore::new(Client::from_conf(conf), table))
    }

    /// Records what binding the stack's events on `member`'s portal did (`record`: a JSON
    /// object), replacing the previous result: `PORTAL#{member}` / `BINDINGS`.
    pub async fn put_bindings(&self, member: &MemberId, record: &Value) -> Result<(), StoreError> {
        let Some(fields) = record.as_object() else {
            return Err(StoreError::Invalid {
                operation: "PutItem",
                cause: "bindings must be an object".into(),
            });
        };
        let mut item: HashMap<String, AttributeValue> =
            fields.iter().map(|(k, v)| (k.clone(), to_av(v))).collect();
        item.insert("pk".into(), AttributeValue::S(schema::portal_pk(member)));
        item.insert("sk".into(), AttributeValue::S(schema::BINDINGS_SK.into()));
        item.insert(
            "record_type".into(),
            AttributeValue::S(schema::record_type::BINDINGS.into()),
        );
        item.insert(
            "member_id".into(),
            AttributeValue::S(member.as_str().into()),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("PutItem", e))?;
        Ok(())
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// DynamoDB requests sent so far (every attempt, including retries).
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Write capacity units consumed by transactions so far (`ReturnConsumedCapacity=TOTAL`).
    pub fn write_units(&self) -> f64 {
        self.write_milli_units.load(Ordering::Relaxed) as f64 / 1000.0
    }

    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Every record of the portal as plain JSON: a Query of each of its partitions, keeping
    /// only items whose `member_id` attribute is the portal's.
    pub async fn portal_records(&self, member: &MemberId) -> Result<Vec<Value>, StoreError> {
        let mut out = Vec::new();
        for pk in schema::portal_partitions(member) {
            let mut after: Option<String> = None;
            loop {
                let page = self.query_page(&pk, after.as_deref(), 500, false).await?;
                out.extend(
                    page.items
                        .into_iter()
                        .filter(|i| {
                            i.get("member_id").and_then(Value::as_str) == Some(member.as_str())
                        })
                        .map(Value::Object),
                );
                match page.last_sk {
                    Some(sk) => after = Some(sk),
                    None => break,
                }
            }
        }
        Ok(out)
    }

    async fn query_page(
        &self,
        pk: &str,
        after: Option<&str>,
        limit: usize,
        purge_attributes_only: bool,
    ) -> Result<Page, StoreError> {
        let start = after.map(|sk| {
            HashMap::from([
                (
                    schema::PARTITION_KEY.to_string(),
                    AttributeValue::S(pk.to_string()),
                ),
                (
                    schema::SORT_KEY.to_string(),
                    AttributeValue::S(sk.to_string()),
                ),
            ])
        });
        let mut q = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", schema::PARTITION_KEY)
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()))
            .consistent_read(true)
            .limit(limit.clamp(1, 1000) as i32)
            .set_exclusive_start_key(start);
        if purge_attributes_only {
            q = q
                .projection_expression("#pk, #sk, #m, #e, #t")
                .expression_attribute_names("#sk", schema::SORT_KEY)
                .expression_attribute_names("#m", "member_id")
                .expression_attribute_names("#e", "epoch")
                .expression_attribute_names("#t", "record_type");
        }
        self.count();
        let out = q
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("Query", e))?;
        let items = out.items().iter().map(item_from_av).collect();
        let last_sk = out
            .last_evaluated_key()
            .and_then(|k| k.get(schema::SORT_KEY))
            .and_then(|v| v.as_s().ok())
            .cloned();
        Ok(Page { items, last_sk })
    }
}

impl PagedQuery for DynamoStore {
    async fn page(
        &self,
        pk: &str,
        after: Option<&str>,
        limit: usize,
        projection: Projection,
    ) -> Result<Page, StoreError> {
        self.query_page(pk, after, limit, projection == Projection::PurgeKeys)
            .await
    }
}

impl Store for DynamoStore {
    async fn get_portal(&self, member: &MemberId) -> Result<Option<Portal>, StoreError> {
        self.count();
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_av(&schema::portal_key(member))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("GetItem", e))?;
        match out.item() {
            None => Ok(None),
            Some(item) => Portal::from_item(&item_from_av(item))
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt {
                    what: format!("portal record of {member} has no member_id"),
                }),
        }
    }

    async fn apply(&self, event: &Event, ctx: &Context) -> Result<Applied, StoreError> {
        let plan = transition::plan(event, ctx)?;
        transition::run(self, &plan).await
    }
}

impl Backend for DynamoStore {
    fn seen_recently(&self, epoch: i64, key: &Key) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(&(epoch, key.clone()))
            .is_some_and(|at| at.elapsed() < SEEN_TTL)
    }

    fn mark_seen(&self, epoch: i64, key: &Key) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= SEEN_CAPACITY {
            seen.clear();
        }
        seen.insert((epoch, key.clone()), Instant::now());
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<TxResult, StoreError> {
        let items: Vec<TransactWriteItem> = writes
            .iter()
            .map(|w| transact_item(&self.table, w))
            .collect();
        self.count();
        let res = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match res {
            Ok(out) => {
                tracing::debug!(consumed = ?out.consumed_capacity(), "TransactWriteItems");
                let units: f64 = out
                    .consumed_capacity()
                    .iter()
                    .map(|c| {
                        c.write_capacity_units()
                            .or(c.capacity_units())
                            .unwrap_or(0.0)
                    })
                    .sum();
                self.write_milli_units
                    .fetch_add((units * 1000.0).round() as u64, Ordering::Relaxed);
                Ok(TxResult::Committed)
            }
            Err(e) => {
                let cancelled = e.as_service_error().and_then(|s| match s {
                    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => Some(c.cancellation_reasons().to_vec()),
                    _ => None,
                });
                let Some(reasons) = cancelled else {
                    return Err(StoreError::from_sdk("TransactWriteItems", e));
                };
                let mut out = Vec::with_capacity(reasons.len());
                for r in reasons {
                    let code = r.code().unwrap_or("None");
                    out.push(match code {
                        "None" => Reason::None,
                        "ConditionalCheckFailed" => {
                            Reason::ConditionFailed(r.item().map(item_from_av))
                        }
                        "TransactionConflict" => Reason::Conflict,
                        "ThrottlingError" | "ProvisionedThroughputExceeded" => {
                            return Err(StoreError::Unavailable {
                                operation: "TransactWriteItems",
                                cause: format!("{code}: {}", r.message().unwrap_or("")),
                            })
                        }
                        other => Reason::Other(format!("{other}: {}", r.message().unwrap_or(""))),
                    });
                }
                Ok(TxResult::Cancelled(out))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

fn key_av(key: &Key) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            schema::PARTITION_KEY.to_string(),
            AttributeValue::S(key.pk.clone()),
        ),
        (
            schema::SORT_KEY.to_string(),
            AttributeValue::S(key.sk.clone()),
        ),
    ])
}

#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, attr: &str) -> String {
        if let Some((p, _)) = self.names.iter().find(|(_, a)| a.as_str() == attr) {
            return p.clone();
        }
        let p = format!("#a{}", self.names.len());
        self.names.insert(p.clone(), attr.to_string());
        p
    }
    fn value(&mut self, v: AttributeValue) -> String {
        let p = format!(":v{}", self.values.len());
        self.values.insert(p.clone(), v);
        p
    }
    fn condition(&mut self, conds: &[Cond]) -> Option<String> {
        let parts: Vec<String> = conds
            .iter()
            .map(|c| match c {
                Cond::ItemAbsent => {
                    format!("attribute_not_exists({})", self.name(schema::PARTITION_KEY))
                }
                Cond::ItemPresent => {
                    format!("attribute_exists({})", self.name(schema::PARTITION_KEY))
                }
                Cond::Equals(a, v) => {
                    let n = self.name(a);
                    let v = self.value(to_av(v));
                    format!("{n} = {v}")
                }
                Cond::EqualsOrAbsent(a, v) => {
                    let n = self.name(a);
                    let v = self.value(to_av(v));
                    format!("(attribute_not_exists({n}) OR {n} = {v})")
                }
                Cond::AbsentOrAtMost(a, x) => {
                    let n = self.name(a);
                    let v = self.value(AttributeValue::N(x.to_string()));
                    format!("(attribute_not_exists({n}) OR {n} <= {v})")
                }
                Cond::Absent(a) => format!("attribute_not_exists({})", self.name(a)),
                Cond::AbsentOrBelow(a, r) => {
                    let n = self.name(a);
                    let v = self.value(AttributeValue::S(r.clone()));
                    format!("(attribute_not_exists({n}) OR {n} < {v})")
                }
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join(" AND "))
    }
}

fn update_expression(u: &Update, e: &mut Expr) -> String {
    let mut set = Vec::new();
    for (a, v) in &u.set {
        let (n, v) = (e.name(a), e.value(to_av(v)));
        set.push(format!("{n} = {v}"));
    }
    for (a, v) in &u.keep {
        let (n, v) = (e.name(a), e.value(to_av(v)));
        set.push(format!("{n} = if_not_exists({n}, {v})"));
    }
    let mut expr = String::new();
    if !set.is_empty() {
        expr.push_str("SET ");
        expr.push_str(&set.join(", "));
    }
    if !u.remove.is_empty() {
        let r: Vec<String> = u.remove.iter().map(|a| e.name(a)).collect();
        expr.push_str(" REMOVE ");
        expr.push_str(&r.join(", "));
    }
    if !u.add.is_empty() {
        let r: Vec<String> = u
            .add
            .iter()
            .map(|(a, n)| {
                let (a, v) = (e.name(a), e.value(AttributeValue::N(n.to_string())));
                format!("{a} {v}")
            })
            .collect();
        expr.push_str(" ADD ");
        expr.push_str(&r.join(", "));
    }
    expr
}

fn transact_item(table: &str, w: &Write) -> TransactWriteItem {
    let mut e = Expr::default();
    match w {
        Write::Put(p) => {
            let cond = e.condition(&p.condition);
            let item: HashMap<String, AttributeValue> =
                p.item.iter().map(|(k, v)| (k.clone(), to_av(v))).collect();
            let put = Put::builder()
                .table_name(table)
                .set_item(Some(item))
                .set_condition_expression(cond)
                .set_expression_attribute_names((!e.names.is_empty()).then_some(e.names))
                .set_expression_attribute_values((!e.values.is_empty()).then_some(e.values))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .expect("put has table and item");
            TransactWriteItem::builder().put(put).build()
        }
        Write::Check(c) => {
            let cond = e
                .condition(&c.guard)
                .unwrap_or_else(|| format!("attribute_exists({})", e.name(schema::PARTITION_KEY)));
            let check = ConditionCheck::builder()
                .table_name(table)
                .set_key(Some(key_av(&c.key)))
                .condition_expression(cond)
                .set_expression_attribute_names((!e.names.is_empty()).then_some(e.names))
                .set_expression_attribute_values((!e.values.is_empty()).then_some(e.values))
                .build()
                .expect("condition check has table, key and condition");
            TransactWriteItem::builder().condition_check(check).build()
        }
        Write::Delete(d) => {
            let cond = e.condition(&d.condition);
            let delete = Delete::builder()
                .table_name(table)
                .set_key(Some(key_av(&d.key)))
                .set_condition_expression(cond)
                .set_expression_attribute_names((!e.names.is_empty()).then_some(e.names))
                .set_expression_attribute_values((!e.values.is_empty()).then_some(e.values))
                .build()
                .expect("delete has table and key");
            TransactWriteItem::builder().delete(delete).build()
        }
        Write::Update(u) => {
            let expr = update_expression(u, &mut e);
            let conds: Vec<Cond> = u.conditions().cloned().collect();
            let cond = e.condition(&conds);
            let upd = aws_sdk_dynamodb::types::Update::builder()
                .table_name(table)
                .set_key(Some(key_av(&u.key)))
                .update_expression(expr)
                .set_condition_expression(cond)
                .set_expression_attribute_names((!e.names.is_empty()).then_some(e.names))
                .set_expression_attribute_values((!e.values.is_empty()).then_some(e.values))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .expect("update has table, key and expression");
            TransactWriteItem::builder().update(upd).build()
        }
    }
}

/// JSON → DynamoDB attribute value.
pub fn to_av(v: &Value) -> AttributeValue {
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(a) => AttributeValue::L(a.iter().map(to_av).collect()),
        Value::Object(m) => {
            AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), to_av(v))).collect())
        }
    }
}

/// A DynamoDB number as JSON: an integer when it is one, else a float, else (out of range)
/// its text.
pub(crate) fn number_from_av(n: &str) -> Value {
    n.parse::<i64>()
        .map(Value::from)
        .ok()
        .or_else(|| {
            n.parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
        })
        .unwrap_or_else(|| Value::String(n.to_string()))
}

/// DynamoDB attribute value → JSON (sets become arrays, binaries are dropped as `null`).
pub fn from_av(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => number_from_av(n),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::L(l) => Value::Array(l.iter().map(from_av).collect()),
        AttributeValue::M(m) => Value::Object(item_from_av(m)),
        AttributeValue::Ss(s) => Value::Array(s.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(s) => Value::Array(
            s.iter()
                .map(|n| from_av(&AttributeValue::N(n.clone())))
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// A DynamoDB item → a JSON map with keys in sorted order.
pub fn item_from_av(m: &HashMap<String, AttributeValue>) -> Item {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    keys.into_iter()
        .map(|k| (k.clone(), from_av(&m[k])))
        .collect()
}

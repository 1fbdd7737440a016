//! The store-neutral write model: items as JSON maps, conditional updates, puts, checks and
//! deletes.
//!
//! [`crate::transition`] produces these; [`crate::DynamoStore`] turns them into DynamoDB
//! expressions and [`crate::MemoryStore`] evaluates them in memory with the same meaning, so the
//! transition rules are tested without a database and run unchanged against DynamoDB.

use serde_json::{Map, Value};

/// One record: attribute name → value (numbers, strings, booleans, null, lists, maps).
pub type Item = Map<String, Value>;

/// Primary key of a record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Partition key.
    pub pk: String,
    /// Sort key.
    pub sk: String,
}

/// One conjunct of a write condition, with DynamoDB's semantics.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    /// The item does not exist (`attribute_not_exists(pk)`).
    ItemAbsent,
    /// The item exists (`attribute_exists(pk)`).
    ItemPresent,
    /// `attribute_not_exists(attr)`.
    Absent(&'static str),
    /// `attribute_not_exists(attr) OR attr < :rank` (string order): a newer fact wins.
    AbsentOrBelow(&'static str, String),
    /// `attr = :value` (a missing attribute is not equal to anything).
    Equals(&'static str, Value),
    /// `attribute_not_exists(attr) OR attr = :value` (records written before `attr` existed).
    EqualsOrAbsent(&'static str, Value),
    /// `attribute_not_exists(attr) OR attr <= :n` (numbers).
    AbsentOrAtMost(&'static str, i64),
}

impl Cond {
    /// Evaluates the conjunct on the current item (`None` = no item).
    pub fn eval(&self, item: Option<&Item>) -> bool {
        let attr = |a: &str| item.and_then(|i| i.get(a));
        match self {
            Cond::ItemAbsent => item.is_none(),
            Cond::ItemPresent => item.is_some(),
            Cond::Absent(a) => attr(a).is_none(),
            Cond::AbsentOrBelow(a, rank) => match attr(a) {
                None => true,
                Some(Value::String(s)) => s.as_str() < rank.as_str(),
                Some(_) => false,
            },
            Cond::Equals(a, v) => attr(a).is_some_and(|have| same_value(have, v)),
            Cond::EqualsOrAbsent(a, v) => attr(a).is_none_or(|have| same_value(have, v)),
            Cond::AbsentOrAtMost(a, n) => match attr(a) {
                None => true,
                Some(v) => v.as_i64().is_some_and(|have| have <= *n),
            },
        }
    }
}

/// DynamoDB equality: numbers compare by value, everything else structurally.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Whether every conjunct holds.
pub fn all_hold(conds: &[Cond], item: Option<&Item>) -> bool {
    conds.iter().all(|c| c.eval(item))
}

/// An update of one item: `SET`, `SET a = if_not_exists(a, v)`, `REMOVE`, `ADD`, under a condition
/// (the conjunction of `guard` and `condition`; empty = unconditional). Creates the item when
/// missing.
///
/// `guard` is the authorization part (the portal is still installed with the presented token):
/// when it fails the event is refused. `condition` is the ordering part (a newer fact wins):
/// when it fails the write is superseded.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    /// The item.
    pub key: Key,
    /// `SET a = :v`.
    pub set: Vec<(&'static str, Value)>,
    /// `SET a = if_not_exists(a, :v)`: the value is kept when another event already set it.
    pub keep: Vec<(&'static str, Value)>,
    /// `REMOVE a`.
    pub remove: Vec<&'static str>,
    /// `ADD a :n` (numbers).
    pub add: Vec<(&'static str, i64)>,
    /// Authorization conjuncts: all must hold, or the event is refused.
    pub guard: Vec<Cond>,
    /// Ordering conjuncts: all must hold, or the write is superseded.
    pub condition: Vec<Cond>,
}

impl Update {
    /// An unconditional, empty update of `key`.
    pub fn new(key: Key) -> Self {
        Update {
            key,
            set: Vec::new(),
            keep: Vec::new(),
            remove: Vec::new(),
            add: Vec::new(),
            guard: Vec::new(),
            condition: Vec::new(),
        }
    }
    pub(crate) fn set(mut self, a: &'static str, v: impl Into<Value>) -> Self {
        self.set.push((a, v.into()));
        self
    }
    pub(crate) fn keep(mut self, a: &'static str, v: impl Into<Value>) -> Self {
        self.keep.push((a, v.into()));
        self
    }
    pub(crate) fn keep_some<T: Into<Value>>(self, a: &'static str, v: Option<T>) -> Self {
        match v {
            Some(v) => self.keep(a, v),
            None => self,
        }
    }
    pub(crate) fn remove(mut self, attrs: &[&'static str]) -> Self {
        self.remove.extend_from_slice(attrs);
        self
    }
    pub(crate) fn add(mut self, a: &'static str, n: i64) -> Self {
        self.add.push((a, n));
        self
    }
    pub(crate) fn when(mut self, c: Cond) -> Self {
        self.condition.push(c);
        self
    }
    pub(crate) fn guarded(mut self, guard: &[Cond]) -> Self {
        self.guard.extend_from_slice(guard);
        self
    }

    /// Every conjunct, guard first.
    pub fn conditions(&self) -> impl Iterator<Item = &Cond> {
        self.guard.iter().chain(&self.condition)
    }

    /// Whether the whole condition holds for the current item.
    pub fn condition_holds(&self, item: Option<&Item>) -> bool {
        self.conditions().all(|c| c.eval(item))
    }

    /// Applies the update to the current item (the condition is not checked here).
    /// As in DynamoDB, `if_not_exists` looks at the item before the update.
    pub fn apply_to(&self, old: Option<&Item>) -> Item {
        let mut item = old.cloned().unwrap_or_default();
        item.insert("pk".into(), Value::String(self.key.pk.clone()));
        item.insert("sk".into(), Value::String(self.key.sk.clone()));
        for (a, v) in &self.set {
            item.insert((*a).into(), v.clone());
        }
        for (a, v) in &self.keep {
            if old.and_then(|o| o.get(*a)).is_none() {
                item.insert((*a).into(), v.clone());
            }
        }
        for a in &self.remove {
            item.remove(*a);
        }
        for (a, n) in &self.add {
            let cur = old
                .and_then(|o| o.get(*a))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            item.insert((*a).into(), Value::from(cur + n));
        }
        item
    }
}

/// A put of a whole item (event records, purge markers), under a condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Put {
    /// The item's key (also inside `item` as `pk`/`sk`).
    pub key: Key,
    /// The item.
    pub item: Item,
    /// All must hold.
    pub condition: Vec<Cond>,
}

/// A condition on an item that is not written (`ConditionCheck`): the portal record is checked
/// this way in every transaction that applies an event to an installed portal.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// The item.
    pub key: Key,
    /// All must hold, or the event is refused.
    pub guard: Vec<Cond>,
}

/// A conditional delete (the purge).
#[derive(Clone, Debug, PartialEq)]
pub struct Delete {
    /// The item.
    pub key: Key,
    /// All must hold, or the item is kept.
    pub condition: Vec<Cond>,
}

/// One action of a transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Put a whole item.
    Put(Put),
    /// Update an item.
    Update(Update),
    /// Check an item without writing it.
    Check(Check),
    /// Delete an item.
    Delete(Delete),
}

impl Write {
    /// The item this action touches.
    pub fn key(&self) -> &Key {
        match self {
            Write::Put(p) => &p.key,
            Write::Update(u) => &u.key,
            Write::Check(c) => &c.key,
            Write::Delete(d) => &d.key,
        }
    }

    /// Whether this action's whole condition holds on the current item.
    pub fn condition_holds(&self, item: Option<&Item>) -> bool {
        match self {
            Write::Put(p) => all_hold(&p.condition, item),
            Write::Update(u) => u.condition_holds(item),
            Write::Check(c) => all_hold(&c.guard, item),
            Write::Delete(d) => all_hold(&d.condition, item),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(v: Value) -> Item {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn conditions_match_dynamodb_semantics() {
        let it =
            item(json!({"edit_rank": "00000000000000000010#aa", "epoch": 3, "installed": true}));
        assert!(Cond::AbsentOrBelow("edit_rank", "00000000000000000011#00".into()).eval(Some(&it)));
        assert!(
            !Cond::AbsentOrBelow("edit_rank", "00000000000000000010#aa".into()).eval(Some(&it))
        );
        assert!(Cond::AbsentOrBelow("other", "x".into()).eval(Some(&it)));
        assert!(Cond::ItemAbsent.eval(None) && !Cond::ItemAbsent.eval(Some(&it)));
        assert!(!Cond::Absent("edit_rank").eval(Some(&it)));
        assert!(Cond::Equals("epoch", json!(3)).eval(Some(&it)));
        assert!(Cond::Equals("epoch", json!(3.0)).eval(Some(&it)));
        assert!(!Cond::Equals("epoch", json!("3")).eval(Some(&it)));
        assert!(!Cond::Equals("missing", json!(null)).eval(Some(&it)));
        assert!(!Cond::Equals("epoch", json!(3)).eval(None));
        assert!(Cond::AbsentOrAtMost("epoch", 3).eval(Some(&it)));
        assert!(!Cond::AbsentOrAtMost("epoch", 2).eval(Some(&it)));
        assert!(Cond::AbsentOrAtMost("nope", 0).eval(Some(&it)));
    }

    #[test]
    fn if_not_exists_reads_the_old_item() {
        let key = Key {
            pk: "p".into(),
            sk: "s".into(),
        };
        let u = Update::new(key)
            .keep("text", "add")
            .set("n", 1)
            .add("revisions", 2);
        let first = u.apply_to(None);
        assert_eq!(first["text"], "add");
        assert_eq!(first["revisions"], 2);
        let mut old = first.clone();
        old.insert("text".into(), "edit".into());
        let second = u.apply_to(Some(&old));
        assert_eq!(second["text"], "edit");
        assert_eq!(second["revisions"], 4);
    }
}

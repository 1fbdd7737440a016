//! The store-neutral write model: items as JSON maps, conditional updates and puts.
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

/// One conjunct of a write condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    /// The item does not exist (`attribute_not_exists(pk)`).
    ItemAbsent,
    /// `attribute_not_exists(attr)`.
    Absent(&'static str),
    /// `attribute_not_exists(attr) OR attr < :rank` (string order): a newer fact wins.
    AbsentOrBelow(&'static str, String),
}

impl Cond {
    /// Evaluates the conjunct on the current item (`None` = no item).
    pub fn eval(&self, item: Option<&Item>) -> bool {
        match self {
            Cond::ItemAbsent => item.is_none(),
            Cond::Absent(a) => item.and_then(|i| i.get(*a)).is_none(),
            Cond::AbsentOrBelow(a, rank) => match item.and_then(|i| i.get(*a)) {
                None => true,
                Some(Value::String(s)) => s.as_str() < rank.as_str(),
                Some(_) => false,
            },
        }
    }
}

/// An update of one item: `SET`, `SET a = if_not_exists(a, v)`, `REMOVE`, `ADD`, under a condition
/// (the conjunction of `condition`; empty = unconditional). Creates the item when missing.
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
    /// All must hold.
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

    /// Whether the condition holds for the current item.
    pub fn condition_holds(&self, item: Option<&Item>) -> bool {
        self.condition.iter().all(|c| c.eval(item))
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

/// A put of a whole item (the event record), under a condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Put {
    /// The item's key (also inside `item` as `pk`/`sk`).
    pub key: Key,
    /// The item.
    pub item: Item,
    /// All must hold.
    pub condition: Vec<Cond>,
}

/// One action of a transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Put a whole item.
    Put(Put),
    /// Update an item.
    Update(Update),
}

impl Write {
    /// The item this action touches.
    pub fn key(&self) -> &Key {
        match self {
            Write::Put(p) => &p.key,
            Write::Update(u) => &u.key,
        }
    }
}

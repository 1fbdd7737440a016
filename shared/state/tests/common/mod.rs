//! Event builders and record helpers shared by the state tests.
#![allow(dead_code)]

use b24_events::*;
use b24_state::testing::apply_trusted;
use b24_state::{Applied, DynamoStore, MemberId, MemoryStore, Outcome};

pub mod scenarios;
use serde_json::Value;

pub const MEMBER: &str = b24_fixtures::MEMBER;
pub const OTHER: &str = "0000aaaa1111bbbb2222cccc3333dddd";
pub const TOKEN: &str = b24_fixtures::APP_TOKEN;
pub const CONNECTOR: &str = b24_fixtures::CONNECTOR;
pub const LINE: i64 = b24_fixtures::LINE;

pub use b24_fixtures::{item, Fixture};

pub fn messages(kind: EventKind, member: &str, ts: i64, items: Vec<MessageItem>) -> Event {
    Fixture::new(kind)
        .member(member)
        .ts(ts)
        .handler(555)
        .event_with_items(items)
}

pub fn msg_add(member: &str, msg: i64, ts: i64, text: &str) -> Event {
    messages(
        EventKind::MessageAdd,
        member,
        ts,
        vec![item(msg, Some(text), &[])],
    )
}

pub fn msg_update(member: &str, msg: i64, ts: i64, text: &str, ids: &[&str]) -> Event {
    messages(
        EventKind::MessageUpdate,
        member,
        ts,
        vec![item(msg, Some(text), ids)],
    )
}

pub fn msg_delete(member: &str, msg: i64, ts: i64, ids: &[&str]) -> Event {
    messages(
        EventKind::MessageDelete,
        member,
        ts,
        vec![item(msg, None, ids)],
    )
}

pub fn dialog(kind: EventKind, member: &str, session: i64, ts: i64) -> Event {
    Fixture::new(kind)
        .member(member)
        .session(session)
        .ts(ts)
        .external_user("ext-user-1")
        .close_term(1440)
        .event()
}

pub fn status_delete(member: &str, ts: i64) -> Event {
    Fixture::new(EventKind::StatusDelete)
        .member(member)
        .ts(ts)
        .event()
}

pub fn line_delete(member: &str, ts: i64) -> Event {
    Fixture::new(EventKind::LineDelete)
        .member(member)
        .ts(ts)
        .event()
}

pub fn app(kind: EventKind, member: &str, token: &str, ts: i64, version: &str) -> Event {
    Fixture::new(kind)
        .member(member)
        .token(token)
        .ts(ts)
        .version(version)
        .refresh_token("refresh-secret-value")
        .event()
}

pub fn uninstall(member: &str, token: &str, ts: i64, clean: bool) -> Event {
    Fixture::new(EventKind::AppUninstall)
        .member(member)
        .token(token)
        .ts(ts)
        .clean(clean)
        .event()
}

/// One of each of the ten events, for `member`.
pub fn all_ten(member: &str) -> Vec<Event> {
    vec![
        msg_add(member, 86497, 1000, "[b]Светлана:[/b] [br]Добрый день!"),
        msg_update(member, 86497, 1010, "edited", &["ext-msg-005"]),
        msg_delete(member, 86498, 1020, &["ext-msg-006"]),
        dialog(EventKind::DialogStart, member, 501, 1030),
        dialog(EventKind::DialogFinish, member, 502, 1040),
        status_delete(member, 1050),
        line_delete(member, 1060),
        app(EventKind::AppInstall, member, TOKEN, 900, "1"),
        app(EventKind::AppUpdate, member, TOKEN, 1070, "2"),
        uninstall(member, TOKEN, 1080, false),
    ]
}

/// Receive-time attributes: the only ones allowed to differ between arrival orders.
pub const RECEIVE_TIME: [&str; 3] = ["updated_at", "received_at", "expires_at"];

pub fn without_receive_time(records: Vec<Value>) -> Vec<Value> {
    records
        .into_iter()
        .map(|mut r| {
            if let Some(m) = r.as_object_mut() {
                for a in RECEIVE_TIME {
                    m.remove(a);
                }
            }
            r
        })
        .collect()
}

pub fn is_event(r: &Value) -> bool {
    r["record_type"] == "event"
}

/// State records (sorted, receive times removed) and the event records (code, outcome, event), sorted.
pub fn state_and_event_keys(records: Vec<Value>) -> (Vec<Value>, Vec<String>) {
    let (events, mut state): (Vec<Value>, Vec<Value>) = without_receive_time(records)
        .into_iter()
        .partition(is_event);
    state.sort_by_key(|r| format!("{}|{}", r["pk"], r["sk"]));
    let mut keys: Vec<String> = events
        .iter()
        .map(|r| format!("{}|{}|{}", r["event_code"], r["outcome"], r["event"]))
        .collect();
    keys.sort();
    (state, keys)
}

pub fn find<'a>(records: &'a [Value], record_type: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["record_type"] == record_type)
        .collect()
}

/// Either store, with the same "all records of a portal" view.
pub enum Db {
    Mem(MemoryStore),
    Ddb(DynamoStore),
}

impl Db {
    /// Applies `e` as an accepting pipeline would; `None` when the portal check refused it.
    pub async fn try_apply(&self, e: &Event, now: i64) -> Option<Outcome> {
        let applied = match self {
            Db::Mem(s) => apply_trusted(s, e, now, 30).await,
            Db::Ddb(s) => apply_trusted(s, e, now, 30).await,
        }
        .unwrap_or_else(|err| panic!("apply {}: {err}", e.kind()));
        match applied {
            Applied::Outcome(o) => Some(o),
            Applied::Unauthorized => None,
        }
    }
    pub async fn apply(&self, e: &Event, now: i64) -> Outcome {
        self.try_apply(e, now)
            .await
            .unwrap_or_else(|| panic!("apply {}: refused by the portal check", e.kind()))
    }
    pub async fn records(&self, member: &str) -> Vec<Value> {
        let m = MemberId::new(member).expect("valid member id");
        match self {
            Db::Mem(s) => s.portal_records(&m),
            Db::Ddb(s) => s.portal_records(&m).await.expect("portal_records"),
        }
    }
    pub async fn purge(&self, member: &str) -> usize {
        match self {
            Db::Mem(s) => b24_state::testing::run_purges(s, member, 50).await,
            Db::Ddb(s) => b24_state::testing::run_purges(s, member, 50).await,
        }
        .expect("purge")
    }
}

/// Every permutation of `items` (Heap's algorithm).
pub fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    fn go<T: Clone>(k: usize, a: &mut Vec<T>, out: &mut Vec<Vec<T>>) {
        if k <= 1 {
            out.push(a.clone());
            return;
        }
        go(k - 1, a, out);
        for i in 0..k - 1 {
            if k.is_multiple_of(2) {
                a.swap(i, k - 1);
            } else {
                a.swap(0, k - 1);
            }
            go(k - 1, a, out);
        }
    }
    let mut a = items.to_vec();
    let mut out = Vec::new();
    go(a.len(), &mut a, &mut out);
    out
}

//! Event builders and record helpers shared by the state tests.
#![allow(dead_code)]

use b24_events::*;
use b24_state::{DynamoStore, MemoryStore, Outcome, Store};

pub mod scenarios;
use serde_json::Value;

pub const MEMBER: &str = "bac1cd5c8940947a75e0d71b1a84e348";
pub const OTHER: &str = "0000aaaa1111bbbb2222cccc3333dddd";
pub const TOKEN: &str = "831c76b092f9f135d9b6b36c3a720757";
pub const CONNECTOR: &str = "myconnector";
pub const LINE: i64 = 107;

pub fn auth(member: &str, token: &str) -> Auth {
    Auth {
        member_id: member.into(),
        domain: Some("some-domain.bitrix24.ru".into()),
        client_endpoint: Some("https://some-domain.bitrix24.ru/rest/".into()),
        server_endpoint: Some("https://oauth.bitrix24.tech/rest/".into()),
        status: Some("F".into()),
        scope: vec!["imconnector".into(), "imopenlines".into()],
        user_id: Some(27),
        expires: None,
        expires_in: Some(3600),
        access_token: Some(Secret::new("c978b990071b0008440001b0895f697a")),
        refresh_token: None,
        application_token: Some(Secret::new(token)),
    }
}

fn event(kind: EventKind, member: &str, ts: i64, data: EventData) -> Event {
    Event {
        kind,
        handler_id: Some(555),
        ts: Some(ts),
        auth: auth(member, TOKEN),
        data,
    }
}

pub fn item(msg: i64, text: Option<&str>, ids: &[&str]) -> MessageItem {
    MessageItem {
        im: ImRef {
            chat_id: 1807,
            message_id: msg,
        },
        message: MessageBody {
            user_id: Some(27),
            text: text.map(str::to_string),
            ids: ids.iter().map(|s| s.to_string()).collect(),
            files: vec![],
        },
        chat: ExternalChat {
            id: Some("channel-123".into()),
        },
    }
}

pub fn messages(kind: EventKind, member: &str, ts: i64, items: Vec<MessageItem>) -> Event {
    event(
        kind,
        member,
        ts,
        EventData::Messages(MessagesData {
            connector: Some(CONNECTOR.into()),
            line: Some(LINE),
            messages: items,
        }),
    )
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
    event(
        kind,
        member,
        ts,
        EventData::Dialogs(DialogsData {
            connector: Some(CONNECTOR.into()),
            line: Some(LINE),
            dialogs: vec![DialogItem {
                connector: DialogConnector {
                    connector_id: Some(CONNECTOR.into()),
                    line_id: Some(LINE),
                    chat_id: Some("ext-chat-1".into()),
                    user_id: Some("ext-user-1".into()),
                },
                session: Session {
                    id: session,
                    closed: Some(kind == EventKind::DialogFinish),
                    parent_id: Some(0),
                    close_term: Some(1440),
                },
                chat: ExternalChat {
                    id: Some("ext-chat-1".into()),
                },
                user: ExternalUser {
                    id: Some("ext-user-1".into()),
                },
            }],
        }),
    )
}

pub fn status_delete(member: &str, ts: i64) -> Event {
    event(
        EventKind::StatusDelete,
        member,
        ts,
        EventData::StatusDelete(StatusDeleteData {
            connector: CONNECTOR.into(),
            line: LINE,
        }),
    )
}

pub fn line_delete(member: &str, ts: i64) -> Event {
    event(
        EventKind::LineDelete,
        member,
        ts,
        EventData::LineDelete(LineDeleteData { line: LINE }),
    )
}

pub fn app(kind: EventKind, member: &str, token: &str, ts: i64, version: &str) -> Event {
    let mut e = event(
        kind,
        member,
        ts,
        EventData::App(AppData {
            version: Some(version.into()),
            active: Some(true),
            installed: Some(true),
            language_id: Some("ru".into()),
        }),
    );
    e.handler_id = None;
    e.auth.application_token = Some(Secret::new(token));
    e.auth.refresh_token = Some(Secret::new("refresh-secret-value"));
    e
}

pub fn uninstall(member: &str, token: &str, ts: i64, clean: bool) -> Event {
    let mut e = event(
        EventKind::AppUninstall,
        member,
        ts,
        EventData::AppUninstall(AppUninstallData {
            language_id: Some("ru".into()),
            clean,
        }),
    );
    e.auth = Auth {
        member_id: member.into(),
        domain: Some("some-domain.bitrix24.ru".into()),
        client_endpoint: Some("https://some-domain.bitrix24.ru/rest/".into()),
        server_endpoint: Some("https://oauth.bitrix24.tech/rest/".into()),
        application_token: Some(Secret::new(token)),
        ..Auth::default()
    };
    e
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
    pub async fn apply(&self, e: &Event, now: i64) -> Outcome {
        match self {
            Db::Mem(s) => s.apply(e, now).await,
            Db::Ddb(s) => s.apply(e, now).await,
        }
        .unwrap_or_else(|err| panic!("apply {}: {err}", e.kind))
    }
    pub async fn records(&self, member: &str) -> Vec<Value> {
        match self {
            Db::Mem(s) => s.portal_records(member),
            Db::Ddb(s) => s.portal_records(member).await.expect("portal_records"),
        }
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

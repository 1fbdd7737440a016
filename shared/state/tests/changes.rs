//! The change feed's derivation over real transitions: events applied to `MemoryStore`, its
//! stream (old and new image of every committed write) turned into changes by
//! `b24_state::changes::derive`, exactly as the outbox does with DynamoDB's stream. Every
//! change is validated against the published JSON Schema.

mod common;
use b24_events::EventKind::*;
use b24_events::{Event, EventKind};
use b24_state::changes::{self, Change, ChangeType};
use b24_state::MemoryStore;
use common::*;
use std::collections::BTreeMap;

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/b24.change.v1.json"
    ))
    .expect("the JSON Schema file");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::validator_for(&schema).expect("a valid JSON Schema")
}

/// Applies `events` in order to a fresh store and returns the changes of every write, in
/// commit order, each validated against the schema.
async fn feed(events: &[Event]) -> Vec<Change> {
    let store = MemoryStore::new();
    let v = schema();
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        b24_state::testing::apply_trusted(&store, e, 10_000 + i as i64, 30)
            .await
            .expect("apply");
        for r in store.take_stream() {
            for c in changes::derive(r.old.as_ref(), r.new.as_ref(), Some("portal.bitrix24.ru")) {
                let json = serde_json::to_value(&c).unwrap();
                let errors: Vec<String> = v.iter_errors(&json).map(|e| e.to_string()).collect();
                assert!(
                    errors.is_empty(),
                    "{json:#}\ndoes not match the schema: {errors:?}"
                );
                let text = json.to_string();
                assert!(!text.contains(TOKEN), "no application token in a change");
                assert!(!text.contains("token_hash"), "no token hash in a change");
                let hash = b24_state::hash_token(&b24_events::Secret::new(TOKEN.to_string()));
                assert!(!text.contains(&hash), "no token hash");
                out.push(c);
            }
        }
    }
    out
}

fn of_type(changes: &[Change], t: ChangeType) -> Vec<&Change> {
    changes.iter().filter(|c| c.change_type == t).collect()
}

fn text(c: &Change) -> Option<&str> {
    c.message.as_ref().and_then(|m| m.text.as_deref())
}

/// What the rules say one arrival order publishes for one message (a model, written from the
/// contract's rules, that the derivation over real transitions must match).
#[derive(Debug, PartialEq)]
enum Expect {
    Created(String),
    Edited(String),
    Deleted,
}

fn model(order: &[Event]) -> Vec<Expect> {
    let mut out = Vec::new();
    let (mut exists, mut deleted, mut best_edit): (bool, bool, Option<i64>) = (false, false, None);
    for e in order {
        if deleted {
            break;
        }
        let ts = e.ts.unwrap();
        let (b24_events::EventData::MessageAdd(d)
        | b24_events::EventData::MessageUpdate(d)
        | b24_events::EventData::MessageDelete(d)) = &e.data
        else {
            unreachable!()
        };
        let t = d.messages[0].message.text.clone().unwrap_or_default();
        match e.kind() {
            MessageDelete => {
                out.push(Expect::Deleted);
                deleted = true;
            }
            MessageAdd if !exists => {
                exists = true;
                out.push(Expect::Created(t));
            }
            MessageAdd => {}
            MessageUpdate if !exists => {
                exists = true;
                best_edit = Some(ts);
                out.push(Expect::Created(t));
            }
            MessageUpdate if best_edit.is_none_or(|b| ts > b) => {
                best_edit = Some(ts);
                out.push(Expect::Edited(t));
            }
            _ => {}
        }
    }
    out
}

fn observed(changes: &[Change]) -> Vec<Expect> {
    changes
        .iter()
        .map(|c| match c.change_type {
            ChangeType::MessageCreated => Expect::Created(text(c).unwrap_or("").to_string()),
            ChangeType::MessageEdited => Expect::Edited(text(c).unwrap_or("").to_string()),
            ChangeType::MessageDeleted => Expect::Deleted,
            other => panic!("unexpected {other}"),
        })
        .collect()
}

#[tokio::test]
async fn every_order_of_add_edits_and_delete_follows_the_rules() {
    let m = "orders";
    let events = vec![
        msg_add(m, 9, 100, "original"),
        msg_update(m, 9, 110, "first edit", &["e1"]),
        msg_update(m, 9, 120, "second edit", &["e1"]),
        msg_delete(m, 9, 130, &["e1"]),
    ];
    let orders = permutations(&events);
    assert_eq!(orders.len(), 24);
    // The identity of each fact is the same in every order.
    let mut ids: BTreeMap<(ChangeType, String), std::collections::BTreeSet<String>> =
        BTreeMap::new();
    for order in &orders {
        let changes = feed(order).await;
        let labels: Vec<&str> = order.iter().map(|e| e.kind().code()).collect();
        assert_eq!(observed(&changes), model(order), "order {labels:?}");
        // Exactly one deletion, and it is the last change of the message.
        assert_eq!(of_type(&changes, ChangeType::MessageDeleted).len(), 1);
        assert_eq!(
            changes.last().unwrap().change_type,
            ChangeType::MessageDeleted
        );
        // A delete first: never a creation.
        if order[0].kind() == MessageDelete {
            assert!(of_type(&changes, ChangeType::MessageCreated).is_empty());
        }
        assert!(of_type(&changes, ChangeType::MessageCreated).len() <= 1);
        for c in &changes {
            let key = match c.change_type {
                ChangeType::MessageEdited => text(c).unwrap_or("").to_string(),
                _ => String::new(),
            };
            ids.entry((c.change_type, key))
                .or_default()
                .insert(c.id.clone());
            assert_eq!(c.group_id(), format!("{m}:chat:channel-123"));
            assert_eq!(c.message.as_ref().unwrap().im.message_id, 9);
        }
        let all: std::collections::BTreeSet<&str> = changes.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(all.len(), changes.len(), "every change has its own id");
    }
    for ((t, k), set) in ids {
        assert_eq!(
            set.len(),
            1,
            "{t} {k:?}: one id whatever the order, got {set:?}"
        );
    }
}

#[tokio::test]
async fn without_a_delete_the_last_change_shows_the_final_message() {
    let m = "final";
    let events = vec![
        msg_add(m, 5, 100, "original"),
        msg_update(m, 5, 110, "first edit", &["e1"]),
        msg_update(m, 5, 120, "second edit", &["e2"]),
    ];
    for order in permutations(&events) {
        let changes = feed(&order).await;
        assert_eq!(observed(&changes), model(&order));
        let last = changes.last().unwrap().message.as_ref().unwrap();
        assert_eq!(last.text.as_deref(), Some("second edit"));
        assert_eq!(last.ids, ["e2"]);
        assert_eq!(of_type(&changes, ChangeType::MessageCreated).len(), 1);
    }
}

#[tokio::test]
async fn start_and_finish_publish_the_same_changes_in_either_order() {
    let m = "dialogs";
    let events = vec![
        dialog(DialogStart, m, 900, 100),
        dialog(DialogFinish, m, 900, 200),
    ];
    let mut seen = Vec::new();
    for order in permutations(&events) {
        let changes = feed(&order).await;
        let mut set: Vec<(ChangeType, String)> = changes
            .iter()
            .filter(|c| c.dialog.is_some())
            .map(|c| (c.change_type, c.id.clone()))
            .collect();
        set.sort();
        seen.push(set);
        let finished = of_type(&changes, ChangeType::DialogFinished);
        assert_eq!(finished.len(), 1);
        let d = finished[0].dialog.as_ref().unwrap();
        assert_eq!((d.session_id, d.status.as_str()), (900, "closed"));
        assert_eq!(finished[0].occurred_at, Some(200));
    }
    assert_eq!(seen[0].len(), 2);
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
}

#[tokio::test]
async fn duplicates_stale_events_and_late_adds_publish_nothing() {
    let m = "quiet";
    let add = msg_add(m, 3, 100, "hello");
    let changes = feed(&[add.clone(), add.clone(), add.clone()]).await;
    assert_eq!(changes.len(), 1, "a duplicate writes nothing: {changes:?}");
    // A late add after an edit sets only author and time.
    let changes = feed(&[
        msg_update(m, 4, 110, "edited", &["x"]),
        msg_add(m, 4, 100, "orig"),
    ])
    .await;
    assert_eq!(observed(&changes), [Expect::Created("edited".into())]);
    // Stale: an add after the delete.
    let changes = feed(&[msg_delete(m, 6, 130, &[]), msg_add(m, 6, 100, "late")]).await;
    assert_eq!(observed(&changes), [Expect::Deleted]);
    // An older edit after a newer one: a revision, not a change.
    let changes = feed(&[
        msg_add(m, 8, 100, "a"),
        msg_update(m, 8, 120, "newer", &[]),
        msg_update(m, 8, 110, "older", &[]),
    ])
    .await;
    assert_eq!(
        observed(&changes),
        [Expect::Created("a".into()), Expect::Edited("newer".into())]
    );
}

#[tokio::test]
async fn the_whole_lifecycle_of_a_portal() {
    let m = "life";
    let events = vec![
        app(AppInstall, m, TOKEN, 50, "1"),
        msg_add(m, 1, 100, "hi"),
        dialog(DialogStart, m, 900, 101),
        dialog(DialogFinish, m, 900, 102),
        status_delete(m, 103),
        line_delete(m, 104),
        app(AppUpdate, m, TOKEN, 105, "2"),
        uninstall(m, TOKEN, 106, true),
    ];
    let changes = feed(&events).await;
    let types: Vec<&str> = changes.iter().map(|c| c.change_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "portal.installed",
            "message.created",
            "dialog.started",
            "dialog.finished",
            "connector.disconnected",
            "line.deleted",
            "portal.updated",
            "portal.uninstalled"
        ]
    );
    let installed = &changes[0];
    assert_eq!(installed.domain.as_deref(), Some("some-domain.bitrix24.ru"));
    assert_eq!(
        installed.portal.as_ref().unwrap().version.as_deref(),
        Some("1")
    );
    let updated = &changes[6];
    assert_eq!(
        updated.portal.as_ref().unwrap().version.as_deref(),
        Some("2")
    );
    assert_eq!(changes[7].portal.as_ref().unwrap().clean, Some(true));
    assert_eq!(changes[1].domain.as_deref(), Some("portal.bitrix24.ru"));
    assert_eq!(changes[4].connector.as_deref(), Some(CONNECTOR));
    assert_eq!(changes[5].line, Some(LINE));
    // Every type of the contract is covered by this lifecycle and the message tests.
    let covered: std::collections::BTreeSet<ChangeType> =
        changes.iter().map(|c| c.change_type).collect();
    for t in <ChangeType as strum::VariantArray>::VARIANTS {
        assert!(
            covered.contains(t)
                || matches!(t, ChangeType::MessageEdited | ChangeType::MessageDeleted),
            "{t} not covered"
        );
    }
}

#[tokio::test]
async fn a_purge_publishes_nothing() {
    let m = "purged";
    let store = MemoryStore::new();
    for (i, e) in [
        app(AppInstall, m, TOKEN, 50, "1"),
        msg_add(m, 1, 100, "hi"),
        uninstall(m, TOKEN, 106, true),
    ]
    .iter()
    .enumerate()
    {
        b24_state::testing::apply_trusted(&store, e, 10_000 + i as i64, 30)
            .await
            .unwrap();
    }
    store.take_stream();
    b24_state::testing::run_purges(&store, m, 50).await.unwrap();
    let records = store.take_stream();
    assert!(
        records.iter().any(|r| r.new.is_none()),
        "the purge deleted records"
    );
    let published: Vec<Change> = records
        .iter()
        .flat_map(|r| changes::derive(r.old.as_ref(), r.new.as_ref(), None))
        .collect();
    assert!(published.is_empty(), "{published:?}");
}

#[test]
fn every_change_type_is_in_the_schema() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/b24.change.v1.json"
    ))
    .unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let listed: Vec<&str> = schema["properties"]["type"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let ours: Vec<&str> = <ChangeType as strum::VariantArray>::VARIANTS
        .iter()
        .map(|t| t.as_str())
        .collect();
    assert_eq!(listed, ours);
    let _ = EventKind::ALL;
}

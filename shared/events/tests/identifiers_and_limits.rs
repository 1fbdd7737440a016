//! Values that become parts of storage keys (`PORTAL#{member_id}`,
//! `...#CONNECTOR#{connector}`) can never carry a key separator or anything outside their
//! character set, and one event's size is bounded — tested on real-shaped bodies encoded as
//! PHP's `http_build_query` sends them. Every refusal names the field, never the value.

mod common;

use b24_events::{decode, decode_with, DecodeError, EventData, Limits, MAX_SCOPE_BYTES};
use common::*;
use serde_json::{json, Value};
use std::time::Instant;

/// Asserts a 400 whose reason names `field` and echoes nothing of `value`.
fn assert_refused(wire: &Value, field: &str, value: &str) {
    let e = err(wire);
    let reason = e.to_string();
    assert_eq!(e.status(), 400, "{value:?}: {reason}");
    assert!(
        reason.contains(field),
        "{value:?}: {reason} should name {field}"
    );
    let echoed = value.len() >= 3 && reason.contains(value);
    assert!(!echoed, "{value:?} echoed in {reason}");
}

#[test]
fn scope_of_4096_bytes_decodes_4097_is_400_naming_auth_scope() {
    let scope = |len: usize| {
        let mut s = "imconnector,imopenlines,".repeat(len / 24 + 1);
        s.truncate(len);
        s
    };
    let mut wire = message_add(vec![message_item(1)]);
    set(&mut wire, "/auth/scope", json!(scope(MAX_SCOPE_BYTES)));
    assert_eq!(MAX_SCOPE_BYTES, 4096);
    assert!(!ok(&wire).auth.scope.is_empty());

    set(&mut wire, "/auth/scope", json!(scope(MAX_SCOPE_BYTES + 1)));
    let e = err(&wire);
    assert_eq!(e.status(), 400);
    assert_eq!(
        e.to_string(),
        "invalid auth[scope]: expected a value of at most 4096 bytes"
    );
}

#[test]
fn member_id_attacks_are_400_naming_auth_member_id() {
    let attacks = [
        // Key separators: would address another portal's partitions.
        "victim#MSG#3".to_owned(),
        "victim#EVENT#0".to_owned(),
        "7d1c0b9e8f3a4d2c#".to_owned(),
        // Upper case, spaces, NUL (`%00` on the wire), control characters.
        MEMBER_ID.to_ascii_uppercase(),
        format!("{MEMBER_ID} "),
        format!(" {MEMBER_ID}"),
        "7d1c0b9e 8f3a4d2c".to_owned(),
        format!("{MEMBER_ID}\0"),
        format!("{MEMBER_ID}\n"),
        // Length: 65 characters.
        "a".repeat(65),
        // Unicode look-alikes: Cyrillic "а", fullwidth digits, a zero-width space.
        MEMBER_ID.replacen('a', "а", 1),
        MEMBER_ID.replacen('7', "７", 1),
        format!("{MEMBER_ID}\u{200b}"),
        // Path tricks and other punctuation.
        "..".to_owned(),
        "../victim".to_owned(),
        "victim.x".to_owned(),
        "victim/x".to_owned(),
        "victim%23x".to_owned(),
    ];
    for attack in &attacks {
        let mut wire = message_add(vec![message_item(1)]);
        set(&mut wire, "/auth/member_id", json!(attack));
        assert_refused(&wire, "auth[member_id]", attack);
        let e = err(&wire);
        assert!(
            matches!(&e, DecodeError::Invalid { field, .. } if field == "auth[member_id]"),
            "{attack:?}: {e:?}"
        );
    }
    let mut wire = message_add(vec![message_item(1)]);
    set(&mut wire, "/auth/member_id", json!("victim#MSG#3"));
    assert_eq!(
        err(&wire).to_string(),
        "invalid auth[member_id]: expected a member_id of 1 to 64 characters from [0-9a-z_-]"
    );
    // `%00` exactly as it arrives on the wire.
    let body =
        form(&message_add(vec![message_item(1)])).replace(MEMBER_ID, &format!("{MEMBER_ID}%00"));
    let e = decode(body.as_bytes(), None).unwrap_err();
    assert!(e.to_string().contains("auth[member_id]"), "{e}");

    // Empty is missing (PHP sends null as an empty value).
    let mut wire = message_add(vec![message_item(1)]);
    set(&mut wire, "/auth/member_id", json!(""));
    assert_eq!(
        err(&wire),
        DecodeError::Missing {
            field: "auth[member_id]".into()
        }
    );
    // The limits themselves are fine.
    for good in ["a".repeat(64), "0".to_owned(), "portal-1_a".to_owned()] {
        let mut wire = message_add(vec![message_item(1)]);
        set(&mut wire, "/auth/member_id", json!(good));
        assert_eq!(ok(&wire).auth.member_id, good);
    }
}

#[test]
fn connector_attacks_are_400_naming_the_connector_field() {
    let attacks = [
        "a#b".to_owned(),
        "x#CONNECTOR#y".to_owned(),
        "mycompany_chat#LINE#000000000001".to_owned(),
        "a\u{1}b".to_owned(),
        "a\nb".to_owned(),
        "a\tb".to_owned(),
        "a\0b".to_owned(),
        "my chat".to_owned(),
        "mуchat".to_owned(), // Cyrillic "у"
        "a/b".to_owned(),
        "c".repeat(65),
    ];
    for attack in &attacks {
        // Messages: data[CONNECTOR].
        let mut wire = message_add(vec![message_item(1)]);
        set(&mut wire, "/data/CONNECTOR", json!(attack));
        assert_refused(&wire, "data[CONNECTOR]", attack);

        // Dialogs: data[CONNECTOR] and each item's connector_id.
        let mut wire = dialog_start(vec![dialog_item(900)]);
        set(&mut wire, "/data/CONNECTOR", json!(attack));
        assert_refused(&wire, "data[CONNECTOR]", attack);
        let mut wire = dialog_start(vec![dialog_item(900)]);
        set(
            &mut wire,
            "/data/DATA/0/connector/connector_id",
            json!(attack),
        );
        assert_refused(&wire, "data[DATA][0][connector][connector_id]", attack);

        // StatusDelete: data[connector] (and its legacy upper-case spelling).
        assert_refused(&status_delete(attack), "data[connector]", attack);
        let mut wire = status_delete("x");
        set(
            &mut wire,
            "/data",
            json!({"CONNECTOR": attack, "LINE": "3"}),
        );
        assert_refused(&wire, "data[CONNECTOR]", attack);
    }
    let mut wire = message_add(vec![message_item(1)]);
    set(&mut wire, "/data/CONNECTOR", json!("x#CONNECTOR#y"));
    assert_eq!(
        err(&wire).to_string(),
        "invalid data[CONNECTOR]: expected a connector ID of 1 to 64 characters from [0-9A-Za-z_.-]"
    );
    // The limits themselves are fine.
    for good in [
        "c".repeat(64),
        "OL_0".to_owned(),
        "my.connector-2".to_owned(),
    ] {
        let e = ok(&status_delete(&good));
        assert_eq!(e.connector(), Some(good.to_ascii_lowercase().as_str()));
    }
}

#[test]
fn fifty_messages_decode_fifty_one_are_413_too_many_items_naming_data_messages() {
    let items = |n: u32| (0..n).map(message_item).collect::<Vec<_>>();
    let e = ok(&message_add(items(50)));
    assert_eq!(
        e.to_json()["data"]["messages"].as_array().unwrap().len(),
        50
    );

    let e = err(&message_add(items(51)));
    assert_eq!(
        e,
        DecodeError::TooManyItems {
            field: "data[MESSAGES]".into(),
            count: 51,
            limit: 50
        }
    );
    assert_eq!(e.status(), 413);
    assert_eq!(
        e.to_string(),
        "too many items in data[MESSAGES]: 51 (limit 50)"
    );

    // The legacy `DATA` key of Message* events, and Dialog* `DATA`.
    let mut wire = message_add(vec![]);
    set(&mut wire, "/data/DATA", json!(items(51)));
    let e = err(&wire);
    assert!(matches!(&e, DecodeError::TooManyItems { field, .. } if field == "data[DATA]"));
    let dialogs = |n: u32| (0..n).map(|i| dialog_item(900 + i)).collect::<Vec<_>>();
    let EventData::DialogStart(d) = ok(&dialog_start(dialogs(50))).data else {
        panic!()
    };
    assert_eq!(d.dialogs.len(), 50);
    let e = err(&dialog_start(dialogs(51)));
    assert_eq!(e.status(), 413);
    assert_eq!(e.to_string(), "too many items in data[DATA]: 51 (limit 50)");

    // The limit is the caller's to set.
    let limits = Limits {
        max_items: 2,
        ..Limits::default()
    };
    let body = form(&message_add(items(3)));
    let e = decode_with(body.as_bytes(), None, &limits).unwrap_err();
    assert!(matches!(
        e,
        DecodeError::TooManyItems {
            count: 3,
            limit: 2,
            ..
        }
    ));
}

#[test]
fn body_of_190_kb_with_4900_messages_is_refused_quickly() {
    // As small as a message can be on the wire: one pair each, so the body stays under the
    // body and key limits and it is the item limit that refuses it.
    let mut body = form(&message_add(vec![]));
    for i in 0..4_900 {
        body.push_str(&format!("&data[MESSAGES][{i}][im][chat_id]=2481"));
    }
    assert!((180_000..200_000).contains(&body.len()), "{}", body.len());
    let t = Instant::now();
    let e = decode(body.as_bytes(), None).unwrap_err();
    let elapsed = t.elapsed();
    println!(
        "{} KB body with 4 900 messages refused in {elapsed:?}",
        body.len() / 1000
    );
    assert_eq!(
        e,
        DecodeError::TooManyItems {
            field: "data[MESSAGES]".into(),
            count: 4_900,
            limit: 50
        }
    );
    assert_eq!(e.status(), 413);
}

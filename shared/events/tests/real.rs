//! Bodies shaped like what live portals post to connector handlers — beyond the docs'
//! examples — encoded exactly as PHP's `http_build_query` sends them. (The fixtures
//! `tests/fixtures/real_*` are a few of them frozen, with their normalized JSON.)

mod common;

use b24_events::{encode, EventData, EventKind, FileRef, MessagesData, MAX_SCOPE_BYTES};
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn messages(e: &b24_events::Event) -> &MessagesData {
    match &e.data {
        EventData::MessageAdd(m) | EventData::MessageUpdate(m) | EventData::MessageDelete(m) => m,
        other => panic!("not messages: {other:?}"),
    }
}

/// A message item with `message` replaced by `message`.
fn item_with(message: Value) -> Value {
    let mut item = message_item(99211);
    set(&mut item, "/message", message);
    item
}

#[test]
fn automatic_open_lines_message_keeps_class_param_user_id_0_and_raw_newlines() {
    let text = "Здравствуйте!\nМы получили ваше сообщение.\r\nОператор ответит в ближайшее время.";
    let wire = message_add(vec![item_with(json!({
        "user_id": "0",
        "text": text,
        "params": {"CLASS": "bx-messenger-content-item-ol-output"}
    }))]);
    let body = form(&wire);
    // As PHP sends it: the raw line breaks percent-encoded, the param a bracket key.
    assert!(body.contains("%21%0A%D0%9C"), "{body}");
    assert!(body.contains("%0D%0A"), "{body}");
    assert!(body.contains(
        "&data%5BMESSAGES%5D%5B0%5D%5Bmessage%5D%5Bparams%5D%5BCLASS%5D=bx-messenger-content-item-ol-output&"
    ));
    let e = ok(&wire);
    let m = &messages(&e).messages[0].message;
    assert_eq!(m.user_id, Some(0), "user 0 is the system, not missing");
    assert_eq!(m.text.as_deref(), Some(text));
    assert_eq!(
        m.params,
        BTreeMap::from([(
            "CLASS".to_owned(),
            "bx-messenger-content-item-ol-output".to_owned()
        )])
    );
    let json = e.to_json();
    assert_eq!(json["data"]["messages"][0]["message"]["user_id"], 0);
    assert_eq!(
        json["data"]["messages"][0]["message"]["params"]["CLASS"],
        "bx-messenger-content-item-ol-output"
    );
}

#[test]
fn rating_request_keeps_every_imol_param_including_empty_ones() {
    let params = json!({
        "CLASS": "bx-messenger-content-item-ol-output",
        "IMOL_FORM": "like",
        "IMOL_VOTE": "1573",
        "IMOL_VOTE_SID": "1573",
        "IMOL_VOTE_TEXT": "Пожалуйста, оцените качество обслуживания",
        "IMOL_VOTE_LIKE": "Понравилось",
        "IMOL_VOTE_DISLIKE": "Не понравилось",
        "IMOL_TIME_LIMIT_VOTE": "",
        "IMOL_DATE_CLOSE_VOTE": ""
    });
    let wire = message_add(vec![item_with(json!({
        "user_id": "0",
        "text": "Пожалуйста, оцените качество обслуживания:\n1 — понравилось\n0 — не понравилось",
        "params": params
    }))]);
    let body = form(&wire);
    // PHP sends an empty string as an empty value (only null leaves no key).
    assert!(
        body.contains("%5Bparams%5D%5BIMOL_TIME_LIMIT_VOTE%5D=&"),
        "{body}"
    );
    let e = ok(&wire);
    let got = &messages(&e).messages[0].message.params;
    let want: BTreeMap<String, String> = serde_json::from_value(params).unwrap();
    assert_eq!(got, &want);
    assert_eq!(
        got["IMOL_DATE_CLOSE_VOTE"], "",
        "empty values are kept as sent"
    );
    assert_eq!(got.len(), 9);
}

#[test]
fn on_premise_auth_without_tokens_scope_or_status_decodes() {
    let mut wire = message_add(vec![message_item(1)]);
    set(
        &mut wire,
        "/auth",
        json!({
            "domain": "crm.example.local",
            "client_endpoint": "https://crm.example.local/rest/",
            "server_endpoint": "https://oauth.bitrix.info/rest/",
            "member_id": "3b9f2e71c04d5a68e1f7b2c9d0a43e56"
        }),
    );
    let e = ok(&wire);
    assert_eq!(e.auth.member_id, "3b9f2e71c04d5a68e1f7b2c9d0a43e56");
    assert_eq!(e.auth.domain.as_deref(), Some("crm.example.local"));
    assert!(e.auth.scope.is_empty());
    assert_eq!(e.auth.status, None);
    assert_eq!(e.auth.user_id, None);
    assert!(e.auth.access_token.is_none() && e.auth.refresh_token.is_none());
    assert!(e.auth.application_token.is_none());
    let json = e.to_json();
    assert_eq!(json["auth"]["scope"], json!([]));
    assert_eq!(json["auth"]["status"], Value::Null);
    assert_eq!(json["auth"]["has_application_token"], false);
}

fn file_message() -> Value {
    let mut wire = message_add(vec![item_with(json!({
        "user_id": "27",
        "text": "",
        "files": [
            {
                "id": "8841",
                "name": "screenshot.png",
                "type": "image",
                "mime": "image/png",
                "link": "https://example.bitrix24.ru/~Xq1Zt",
                "width": "1280",
                "height": "720",
                "size": "20583",
                "sizef": "20,1 КБ",
                "downloadLink": "/rest/download.json?auth=SECRETTOKEN&token=disk%7CaWQ9ODg0MSZfPTFhMmIzYzRk%7CImRvd25sb2FkIg%3D%3D"
            },
            {
                "name": "Договор №14.pdf",
                "type": "file",
                "mime": "application/pdf",
                "link": "https://example.bitrix24.ru/~Rb7Pw",
                "size": "1835008",
                "sizef": "1,75 МБ",
                "downloadLink": "https://example.bitrix24.ru/rest/download.json?token=disk%7CaWQ9ODg0Mg&auth=SECRETTOKEN#page=2"
            }
        ]
    }))]);
    // The viewing user's token is the event's own access token.
    set(&mut wire, "/auth/access_token", json!("SECRETTOKEN"));
    wire
}

#[test]
fn file_message_with_empty_text_keeps_every_file_field() {
    let e = ok(&file_message());
    let m = &messages(&e).messages[0].message;
    assert_eq!(m.text, None, "empty text is null");
    assert_eq!(
        m.files,
        [
            FileRef {
                id: Some("8841".into()),
                name: Some("screenshot.png".into()),
                file_type: Some("image".into()),
                mime: Some("image/png".into()),
                link: Some("https://example.bitrix24.ru/~Xq1Zt".into()),
                download_link: Some(
                    "/rest/download.json?token=disk%7CaWQ9ODg0MSZfPTFhMmIzYzRk%7CImRvd25sb2FkIg%3D%3D"
                        .into()
                ),
                size: Some(20583),
                size_formatted: Some("20,1 КБ".into()),
                width: Some(1280),
                height: Some(720),
            },
            FileRef {
                id: None,
                name: Some("Договор №14.pdf".into()),
                file_type: Some("file".into()),
                mime: Some("application/pdf".into()),
                link: Some("https://example.bitrix24.ru/~Rb7Pw".into()),
                download_link: Some(
                    "https://example.bitrix24.ru/rest/download.json?token=disk%7CaWQ9ODg0Mg#page=2"
                        .into()
                ),
                size: Some(1835008),
                size_formatted: Some("1,75 МБ".into()),
                width: None,
                height: None,
            },
        ]
    );
    let file = &e.to_json()["data"]["messages"][0]["message"]["files"][0];
    for key in [
        "id",
        "name",
        "type",
        "mime",
        "link",
        "download_link",
        "size",
        "size_formatted",
        "width",
        "height",
    ] {
        assert!(!file[key].is_null(), "{key}");
    }
    assert_eq!(file["size_formatted"], "20,1 КБ");
}

#[test]
fn download_link_token_appears_nowhere_in_the_normalized_event() {
    let wire = file_message();
    assert!(
        form(&wire).contains("auth%3DSECRETTOKEN"),
        "the wire has it"
    );
    let e = ok(&wire);
    for out in [
        e.to_json_string(),
        serde_json::to_string_pretty(&e).unwrap(),
        format!("{e:?}"),
        format!("{:#?}", e.data),
    ] {
        assert!(!out.contains("SECRETTOKEN"), "{out}");
    }
    // The token parameter goes from `link` too, under any spelling PHP would read as `auth`.
    let mut wire = file_message();
    set(
        &mut wire,
        "/data/MESSAGES/0/message/files/0/link",
        json!("https://example.bitrix24.ru/disk/showFile/8841/?%61uth=SECRETTOKEN&ncc=1"),
    );
    set(
        &mut wire,
        "/data/MESSAGES/0/message/files/1/downloadLink",
        json!("/rest/download.json?token=disk%7Cx&amp;auth=SECRETTOKEN&access_token=SECRETTOKEN"),
    );
    let e = ok(&wire);
    let files = &messages(&e).messages[0].message.files;
    assert_eq!(
        files[0].link.as_deref(),
        Some("https://example.bitrix24.ru/disk/showFile/8841/?ncc=1")
    );
    assert_eq!(
        files[1].download_link.as_deref(),
        Some("/rest/download.json?token=disk%7Cx")
    );
    assert!(!e.to_json_string().contains("SECRETTOKEN"));
    // And the frozen fixture of this shape says the same.
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/real_message_add_file.expected.json"
    ))
    .unwrap();
    assert!(fixture.contains("\"download_link\": \"/rest/download.json?token=disk%7C"));
    assert!(!fixture.contains("SECRETTOKEN"));
}

#[test]
fn connector_ol_0_is_kept_as_sent_and_lower_cased_for_keys() {
    // Messages: data[CONNECTOR].
    let mut wire = message_add(vec![message_item(1)]);
    set(&mut wire, "/data/CONNECTOR", json!("OL_0"));
    let e = ok(&wire);
    assert_eq!(e.connector(), Some("ol_0"));
    assert_eq!(messages(&e).connector_as_sent.as_deref(), Some("OL_0"));
    let json = e.to_json();
    assert_eq!(json["data"]["connector"], "ol_0");
    assert_eq!(json["data"]["connector_as_sent"], "OL_0");
    // Echoed back as sent.
    assert!(encode::php_form(&encode::wire_json(&e)).contains("data%5BCONNECTOR%5D=OL_0&"));

    // Dialogs: data[CONNECTOR] and every item's connector_id.
    let mut wire = dialog_start(vec![dialog_item(900)]);
    set(&mut wire, "/data/CONNECTOR", json!("OL_0"));
    set(
        &mut wire,
        "/data/DATA/0/connector/connector_id",
        json!("OL_0"),
    );
    let e = ok(&wire);
    let EventData::DialogStart(d) = &e.data else {
        panic!()
    };
    assert_eq!(d.connector.as_deref(), Some("ol_0"));
    assert_eq!(d.connector_as_sent.as_deref(), Some("OL_0"));
    let c = &d.dialogs[0].connector;
    assert_eq!(c.connector_id.as_deref(), Some("ol_0"));
    assert_eq!(c.connector_id_as_sent.as_deref(), Some("OL_0"));

    // StatusDelete: data[connector].
    let e = ok(&status_delete("OL_0"));
    let EventData::StatusDelete(s) = &e.data else {
        panic!()
    };
    assert_eq!(
        (s.connector.as_str(), s.connector_as_sent.as_str()),
        ("ol_0", "OL_0")
    );
    assert_eq!(e.connector(), Some("ol_0"));
}

#[test]
fn chat_ids_as_numbers_or_24_and_32_hex_strings_are_kept_as_strings() {
    let ids = [
        (json!(1234567), "1234567"),
        (json!("1234567"), "1234567"),
        (
            json!("65a1f0c2b7e4d91a2c3b4d5e"),
            "65a1f0c2b7e4d91a2c3b4d5e",
        ),
        (
            json!("5f1d7c0e9b3a4c2d8e6f1a2b3c4d5e6f"),
            "5f1d7c0e9b3a4c2d8e6f1a2b3c4d5e6f",
        ),
        // A messenger user ID (Telegram-style, negative for groups).
        (json!(-1001234567890_i64), "-1001234567890"),
    ];
    for (id, want) in &ids {
        let mut item = message_item(1);
        set(&mut item, "/chat/id", id.clone());
        let e = ok(&message_add(vec![item]));
        assert_eq!(messages(&e).messages[0].chat.id.as_deref(), Some(*want));
        assert_eq!(e.to_json()["data"]["messages"][0]["chat"]["id"], *want);

        let mut item = dialog_item(900);
        set(&mut item, "/connector/chat_id", id.clone());
        set(&mut item, "/chat/id", id.clone());
        set(&mut item, "/user/id", id.clone());
        let e = ok(&dialog_start(vec![item]));
        let EventData::DialogStart(d) = &e.data else {
            panic!()
        };
        let d = &d.dialogs[0];
        assert_eq!(d.connector.chat_id.as_deref(), Some(*want));
        assert_eq!(d.chat.id.as_deref(), Some(*want));
        assert_eq!(d.user.id.as_deref(), Some(*want));
    }
}

#[test]
fn app_update_carries_previous_version() {
    let wire = json!({
        "event": "ONAPPUPDATE",
        "event_handler_id": "3",
        "data": {"VERSION": "7", "PREVIOUS_VERSION": "6", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "ru"},
        "ts": "1733400000",
        "auth": auth()
    });
    let e = ok(&wire);
    assert_eq!(e.kind(), EventKind::AppUpdate);
    let EventData::AppUpdate(app) = &e.data else {
        panic!()
    };
    assert_eq!(app.version.as_deref(), Some("7"));
    assert_eq!(app.previous_version.as_deref(), Some("6"));
    assert_eq!(e.to_json()["data"]["previous_version"], "6");
    // An install has none: null.
    let mut wire = wire;
    set(&mut wire, "/event", json!("ONAPPINSTALL"));
    set(&mut wire, "/data/PREVIOUS_VERSION", Value::Null);
    let e = ok(&wire);
    assert_eq!(e.to_json()["data"]["previous_version"], Value::Null);
}

/// Every scope the Bitrix24 REST docs list (the scopes table with its three deprecated task
/// scopes, and the scopes named only on method pages).
const EVERY_DOCUMENTED_SCOPE: &[&str] = &[
    "ai_admin",
    "biconnector",
    "bizproc",
    "booking",
    "calendar",
    "call",
    "cashbox",
    "catalog",
    "crm",
    "documentgenerator",
    "crm.documentgenerator",
    "delivery",
    "department",
    "disk",
    "entity",
    "im",
    "imbot",
    "imopenlines",
    "landing",
    "lists",
    "log",
    "mailservice",
    "messageservice",
    "pay_system",
    "pull",
    "rpa",
    "sale",
    "sign.b2e",
    "sonet_group",
    "socialnetwork",
    "task",
    "telephony",
    "timeman",
    "user",
    "user_brief",
    "user_basic",
    "user.userfield",
    "userfieldconfig",
    "userconsent",
    "vote",
    "tasks",
    "tasks_extended",
    "tasksmobile",
    "imconnector",
    "placement",
    "intranet",
    "basic",
    "humanresources.hcmlink",
];

#[test]
fn scope_listing_every_documented_scope_decodes() {
    for separator in [",", ", ", " "] {
        let scope = EVERY_DOCUMENTED_SCOPE.join(separator);
        assert!(
            scope.len() >= 450 && scope.len() <= MAX_SCOPE_BYTES,
            "{}",
            scope.len()
        );
        let mut wire = message_add(vec![message_item(1)]);
        set(&mut wire, "/auth/scope", json!(scope));
        let e = ok(&wire);
        assert_eq!(e.auth.scope, EVERY_DOCUMENTED_SCOPE, "{separator:?}");
    }
}

#[test]
fn params_nested_map_overlong_value_or_100_entries_are_dropped_never_an_error() {
    let item = |params: Value| {
        message_add(vec![item_with(json!({
            "user_id": "0", "text": "x", "params": params
        }))])
    };
    let params_of = |wire: &Value| messages(&ok(wire)).messages[0].message.params.clone();

    // A nested map (e.g. an attachment structure) is dropped; its siblings stay.
    let got = params_of(&item(json!({
        "CLASS": "bx-messenger-content-item-ol-output",
        "ATTACH": [{"ID": "1", "BLOCKS": [{"MESSAGE": "hi"}]}],
        "IS_ERROR": "N"
    })));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["CLASS", "IS_ERROR"],
        "nested map dropped"
    );

    // An overlong value (or key) is dropped; 4096 bytes are kept.
    let got = params_of(&item(json!({
        "richUrlPreview": "x".repeat(4097),
        "url": "y".repeat(4096),
        "K".repeat(129): "1",
        "CLASS": "c"
    })));
    assert_eq!(got.keys().collect::<Vec<_>>(), ["CLASS", "url"]);

    // 100 entries: the first 64 in wire order are kept, the rest dropped.
    let many: serde_json::Map<String, Value> = (0..100)
        .map(|i| (format!("IS_P{i:03}"), json!(i.to_string())))
        .collect();
    let got = params_of(&item(Value::Object(many)));
    assert_eq!(got.len(), 64);
    assert!(got.contains_key("IS_P000") && got.contains_key("IS_P063"));
    assert!(!got.contains_key("IS_P064"));

    // `params` that is not a map at all is no params.
    assert!(params_of(&item(json!("CLASS"))).is_empty());
    assert!(params_of(&item(json!([]))).is_empty());
}

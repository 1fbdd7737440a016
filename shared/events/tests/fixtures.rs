//! Fixtures as real wire bodies: `tests/fixtures/<name>.form` is PHP 8.2
//! `http_build_query(json_decode(<name>.json, true))` (RFC 1738, `%5B`/`%5D`, `+` for space),
//! `<name>.json` is the same event as JSON, `<name>.expected.json` is the normalized event.
//! `f*` are the Bitrix24 docs' examples (current, historical and legacy pages); `real_*` are
//! shaped like bodies live portals post (automatic Open Lines messages with `params`, rating
//! requests, an on-premise `auth` block without tokens, scope or status, files with every
//! field, connector `OL_0`, hex chat IDs, ONAPPUPDATE with `PREVIOUS_VERSION` and a scope
//! listing every documented scope).
//! Set `BLESS=1` to rewrite the expected files (then review the diff by hand).

use b24_events::{decode, encode, EventKind};
use std::path::PathBuf;

const FIXTURES: &[(&str, EventKind)] = &[
    ("f01_message_add", EventKind::MessageAdd),
    ("f02_dialog_start", EventKind::DialogStart),
    ("f03_message_update", EventKind::MessageUpdate),
    ("f04_message_delete", EventKind::MessageDelete),
    ("f05_dialog_finish", EventKind::DialogFinish),
    ("f06_status_delete", EventKind::StatusDelete),
    ("f07_line_delete", EventKind::LineDelete),
    ("f11_message_add_historical", EventKind::MessageAdd),
    ("f12_message_update_legacy_data", EventKind::MessageUpdate),
    ("f13_message_delete_legacy_data", EventKind::MessageDelete),
    ("f14_app_install", EventKind::AppInstall),
    ("f15_app_uninstall", EventKind::AppUninstall),
    ("f27_message_add_legacy_en", EventKind::MessageAdd),
    ("f28_message_delete_legacy_ru", EventKind::MessageDelete),
    ("real_message_add_automatic", EventKind::MessageAdd),
    ("real_message_add_rating_request", EventKind::MessageAdd),
    ("real_message_add_file", EventKind::MessageAdd),
    ("real_app_update", EventKind::AppUpdate),
];

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_fixture_decodes_the_same_from_form_and_json() {
    for (name, kind) in FIXTURES {
        let form = decode(&read(&format!("{name}.form")), None)
            .unwrap_or_else(|e| panic!("{name}.form: {e}"));
        let json = decode(&read(&format!("{name}.json")), Some("application/json"))
            .unwrap_or_else(|e| panic!("{name}.json: {e}"));
        assert_eq!(form, json, "{name}: form and JSON differ");
        assert_eq!(form.kind(), *kind, "{name}");

        let normalized = serde_json::to_string_pretty(&form).unwrap() + "\n";
        let expected_path = path(&format!("{name}.expected.json"));
        if std::env::var_os("BLESS").is_some() {
            std::fs::write(&expected_path, &normalized).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{name}.expected.json: {e} (run with BLESS=1)"));
        assert_eq!(normalized, expected, "{name}: normalized JSON changed");
    }
}

/// Our encoder produces byte for byte what PHP's `http_build_query` made of the same JSON
/// (the `.form` files were made by PHP 8.2 from the `.json` files, whose key order they keep:
/// serde_json's `preserve_order` feature is on in the workspace).
#[test]
fn encoder_matches_php_http_build_query() {
    for (name, _) in FIXTURES {
        let php = String::from_utf8(read(&format!("{name}.form"))).unwrap();
        let value: serde_json::Value =
            serde_json::from_slice(&read(&format!("{name}.json"))).unwrap();
        let ours = encode::php_form(&value);
        assert_eq!(ours, php, "{name}");
    }
}

/// Hand check of a few pairs against PHP semantics (as in the raw body of the official PHP
/// SDK's test fixture: `%5B`/`%5D`, `%2C+`, `%3A%2F%2F`).
#[test]
fn form_fixture_spot_checks() {
    let f1 = String::from_utf8(read("f01_message_add.form")).unwrap();
    assert!(f1.starts_with(
        "event=ONIMCONNECTORMESSAGEADD&event_handler_id=555&data%5BCONNECTOR%5D=myconnector&"
    ));
    assert!(f1.contains("&data%5BMESSAGES%5D%5B0%5D%5Bim%5D%5Bchat_id%5D=1807&"));
    assert!(f1.contains("&auth%5Bscope%5D=imconnector%2C+imopenlines&"));
    assert!(f1.contains("&auth%5Bserver_endpoint%5D=https%3A%2F%2Foauth.bitrix24.tech%2Frest%2F&"));
    // "[b]Светлана" → %5Bb%5D then UTF-8 bytes of С (D0 A1).
    assert!(f1.contains("%5Bmessage%5D%5Btext%5D=%5Bb%5D%D0%A1%D0%B2"));
    let f7 = String::from_utf8(read("f07_line_delete.form")).unwrap();
    assert!(f7.contains("&data=107&"));
    let f3 = String::from_utf8(read("f03_message_update.form")).unwrap();
    assert!(f3.contains("&data%5BMESSAGES%5D%5B0%5D%5Bmessage%5D%5Bid%5D%5B0%5D=ext-msg-005&"));
}

/// The only raw form body Bitrix24 itself publishes (a CRM event, the test fixture of the
/// official PHP SDK): parsed, then refused as unsupported with 422.
#[test]
fn raw_body_of_the_php_sdk_test_fixture_is_an_unsupported_event() {
    let body = "event=ONCRMCONTACTADD&event_handler_id=58&data%5BFIELDS%5D%5BID%5D=134806&ts=1727018926&auth%5Baccess_token%5D=be45f0660071849a0058f18a000000010000077261ef50fc26f1357adbd86a052c9e48&auth%5Bexpires%5D=1727022526&auth%5Bexpires_in%5D=3600&auth%5Bscope%5D=crm%2Cplacement%2Cuser_brief&auth%5Bdomain%5D=bitrix24-php-sdk-playground.bitrix24.com&auth%5Bserver_endpoint%5D=https%3A%2F%2Foauth.bitrix.info%2Frest%2F&auth%5Bstatus%5D=L&auth%5Bclient_endpoint%5D=https%3A%2F%2Fbitrix24-php-sdk-playground.bitrix24.com%2Frest%2F&auth%5Bmember_id%5D=010b6886ebc205e43ae65000ee00addb&auth%5Buser_id%5D=1&auth%5Bapplication_token%5D=3c6c9248ec54af6bea1159b43ee0ab32";
    let err = decode(body.as_bytes(), Some("application/x-www-form-urlencoded")).unwrap_err();
    assert_eq!(err.status(), 422);
    assert_eq!(err.to_string(), "unsupported event ONCRMCONTACTADD");
    // The same body as an app event parses fully (auth scope "crm,placement,user_brief").
    let body = body.replace("ONCRMCONTACTADD", "ONAPPUPDATE");
    let event = decode(body.as_bytes(), None).unwrap();
    assert_eq!(event.auth.scope, ["crm", "placement", "user_brief"]);
    assert_eq!(event.auth.user_id, Some(1));
    assert_eq!(event.handler_id, Some(58));
}

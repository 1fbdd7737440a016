//! One test per wire quirk: every way real or documented Bitrix24 bodies differ from one
//! another.

use b24_events::{decode, DecodeError, EventData, EventKind};

const AUTH: &str = "auth[member_id]=m1&auth[application_token]=tok";

fn form(body: &str) -> Result<b24_events::Event, DecodeError> {
    decode(body.as_bytes(), None)
}

fn ok(body: &str) -> b24_events::Event {
    form(body).unwrap_or_else(|e| panic!("{body}: {e}"))
}

fn messages(e: &b24_events::Event) -> &b24_events::MessagesData {
    match &e.data {
        EventData::MessageAdd(m) | EventData::MessageUpdate(m) | EventData::MessageDelete(m) => m,
        other => panic!("not messages: {other:?}"),
    }
}

const MSG: &str = "data[MESSAGES][0][im][chat_id]=1&data[MESSAGES][0][im][message_id]=2";

#[test]
fn messages_under_legacy_data_key() {
    let e = ok(&format!(
        "event=ONIMCONNECTORMESSAGEUPDATE&{AUTH}&data[DATA][0][im][chat_id]=1&data[DATA][0][im][message_id]=2&data[DATA][0][message][id][0]=x"
    ));
    let m = messages(&e);
    assert_eq!(m.messages.len(), 1);
    assert_eq!(m.messages[0].message.ids, ["x"]);
}

#[test]
fn empty_messages_list_in_json_does_not_hide_the_legacy_data_key() {
    // PHP sends no key for an empty array, so form and JSON agree.
    let j = decode(
        br#"{"event":"ONIMCONNECTORMESSAGEUPDATE","auth":{"member_id":"m1"},"data":{"MESSAGES":[],"DATA":[{"im":{"chat_id":1,"message_id":2}}]}}"#,
        Some("application/json"),
    )
    .unwrap();
    assert_eq!(messages(&j).messages.len(), 1);
    let f = ok("event=ONIMCONNECTORMESSAGEUPDATE&auth[member_id]=m1&data[DATA][0][im][chat_id]=1&data[DATA][0][im][message_id]=2");
    assert_eq!(f, j);
}

#[test]
fn message_id_array_or_scalar_becomes_a_list() {
    let e = ok(&format!("event=ONIMCONNECTORMESSAGEUPDATE&{AUTH}&{MSG}&data[MESSAGES][0][message][id][0]=a&data[MESSAGES][0][message][id][1]=b"));
    assert_eq!(messages(&e).messages[0].message.ids, ["a", "b"]);
    let e = ok(&format!(
        "event=ONIMCONNECTORMESSAGEDELETE&{AUTH}&{MSG}&data[MESSAGES][0][message][id]=a"
    ));
    assert_eq!(messages(&e).messages[0].message.ids, ["a"]);
    let e = ok(&format!(
        "event=ONIMCONNECTORMESSAGEDELETE&{AUTH}&{MSG}&data[MESSAGES][0][message][id]="
    ));
    assert!(messages(&e).messages[0].message.ids.is_empty());
}

#[test]
fn message_ids_always_empty_for_message_add() {
    let e = ok(&format!(
        "event=ONIMCONNECTORMESSAGEADD&{AUTH}&{MSG}&data[MESSAGES][0][message][id][0]=a"
    ));
    assert!(messages(&e).messages[0].message.ids.is_empty());
}

#[test]
fn message_list_sorted_by_index_with_gaps() {
    let e = ok(&format!(
        "event=ONIMCONNECTORMESSAGEADD&{AUTH}&data[MESSAGES][10][im][chat_id]=1&data[MESSAGES][10][im][message_id]=30&data[MESSAGES][2][im][chat_id]=1&data[MESSAGES][2][im][message_id]=20&data[MESSAGES][99999999999][im][chat_id]=1&data[MESSAGES][99999999999][im][message_id]=40"
    ));
    let ids: Vec<i64> = messages(&e)
        .messages
        .iter()
        .map(|m| m.im.message_id)
        .collect();
    assert_eq!(ids, [20, 30, 40]);
}

#[test]
fn append_brackets_build_lists() {
    let e = ok(&format!(
        "event=ONIMCONNECTORMESSAGEUPDATE&{AUTH}&{MSG}&data[MESSAGES][0][message][id][]=a&data[MESSAGES][0][message][id][]=b"
    ));
    assert_eq!(messages(&e).messages[0].message.ids, ["a", "b"]);
}

#[test]
fn brackets_raw_or_percent_encoded_and_plus_as_space() {
    let a = ok(&format!(
        "event=ONIMCONNECTORMESSAGEADD&{AUTH}&{MSG}&data[MESSAGES][0][message][text]=a+b%20c"
    ));
    let b = ok(&format!(
        "event=ONIMCONNECTORMESSAGEADD&{AUTH}&data%5BMESSAGES%5D%5B0%5D%5Bim%5D%5Bchat_id%5D=1&data%5bMESSAGES%5d%5b0%5d%5bim%5d%5bmessage_id%5d=2&data%5BMESSAGES%5D%5B0%5D%5Bmessage%5D%5Btext%5D=a+b%20c"
    ));
    assert_eq!(a, b);
    assert_eq!(
        messages(&a).messages[0].message.text.as_deref(),
        Some("a b c")
    );
}

#[test]
fn status_delete_keys_in_lower_or_upper_case() {
    let lower = ok(&format!(
        "event=ONIMCONNECTORSTATUSDELETE&{AUTH}&data[connector]=MyConn&data[line]=7"
    ));
    let upper = ok(&format!(
        "event=ONIMCONNECTORSTATUSDELETE&{AUTH}&data[CONNECTOR]=MyConn&data[LINE]=7"
    ));
    assert_eq!(lower, upper);
    assert_eq!(lower.connector(), Some("myconn"));
    let EventData::StatusDelete(s) = &lower.data else {
        panic!()
    };
    assert_eq!(s.connector_as_sent, "MyConn");
    assert_eq!(lower.line(), Some(7));
}

#[test]
fn keys_looked_up_case_insensitively_exact_match_preferred() {
    let e = ok(&format!(
        "event=ONIMCONNECTORSTATUSDELETE&{AUTH}&data[Connector]=x&data[connector]=y&data[LINE]=1"
    ));
    assert_eq!(e.connector(), Some("y"));
    let e = ok("EVENT=onappinstall&AUTH[MEMBER_ID]=m");
    assert_eq!(e.auth.member_id, "m");
}

#[test]
fn line_delete_scalar_data() {
    let e = ok(&format!("event=ONIMCONNECTORLINEDELETE&{AUTH}&data=107"));
    assert_eq!(e.line(), Some(107));
}

#[test]
fn line_delete_legacy_line_id_and_line() {
    assert_eq!(
        ok(&format!(
            "event=ONIMCONNECTORLINEDELETE&{AUTH}&data[LINE_ID]=5"
        ))
        .line(),
        Some(5)
    );
    assert_eq!(
        ok(&format!(
            "event=ONIMCONNECTORLINEDELETE&{AUTH}&data[LINE]=6"
        ))
        .line(),
        Some(6)
    );
    let err = form(&format!("event=ONIMCONNECTORLINEDELETE&{AUTH}")).unwrap_err();
    assert_eq!(err.to_string(), "missing data");
}

#[test]
fn event_id_or_event_handler_id_is_the_handler_id() {
    assert_eq!(
        ok(&format!("event=ONAPPINSTALL&{AUTH}&event_handler_id=5")).handler_id,
        Some(5)
    );
    assert_eq!(
        ok(&format!("event=ONIMCONNECTORDIALOGSTART&{AUTH}&eventId=6")).handler_id,
        Some(6)
    );
    assert_eq!(ok(&format!("event=ONAPPINSTALL&{AUTH}")).handler_id, None);
}

#[test]
fn event_code_in_any_case() {
    for code in [
        "onimconnectormessageadd",
        "OnImConnectorMessageAdd",
        "ONIMCONNECTORMESSAGEADD",
    ] {
        assert_eq!(
            ok(&format!("event={code}&{AUTH}")).kind(),
            EventKind::MessageAdd
        );
    }
}

#[test]
fn unsupported_event_is_422_naming_the_code() {
    let err = form(&format!("event=ONCRMDEALADD&{AUTH}")).unwrap_err();
    assert_eq!(err.status(), 422);
    assert_eq!(err.to_string(), "unsupported event ONCRMDEALADD");
    // Sanitized and truncated.
    let err = form(&format!("event=bad%0Acode%20{}&{AUTH}", "x".repeat(500))).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("unsupported event BADCODEXXX"), "{msg}");
    assert!(msg.len() < 100 && !msg.contains('\n'));
}

#[test]
fn integers_converted_with_error_naming_the_field() {
    let err = form(&format!(
        "event=ONIMCONNECTORMESSAGEADD&{AUTH}&data[MESSAGES][0][im][chat_id]=12x&data[MESSAGES][0][im][message_id]=2"
    ))
    .unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(
        err.to_string(),
        "invalid integer in data[MESSAGES][0][im][chat_id]"
    );
    let err = form(&format!("event=ONAPPINSTALL&{AUTH}&ts=soon")).unwrap_err();
    assert_eq!(err.to_string(), "invalid integer in ts");
    let err = form(&format!("event=ONAPPINSTALL&{AUTH}&auth[user_id]=x")).unwrap_err();
    assert_eq!(err.to_string(), "invalid integer in auth[user_id]");
}

#[test]
fn empty_string_for_optional_field_is_none() {
    let e = ok(&format!(
        "event=ONAPPINSTALL&{AUTH}&ts=&auth[domain]=&auth[user_id]=&data[VERSION]=&data[ACTIVE]="
    ));
    assert_eq!(e.ts, None);
    assert_eq!(e.auth.domain, None);
    assert_eq!(e.auth.user_id, None);
    let EventData::AppInstall(app) = &e.data else {
        panic!()
    };
    assert_eq!(app.version, None);
    assert_eq!(app.active, None);
}

#[test]
fn connector_ids_lower_cased() {
    let e = ok(&format!(
        "event=ONIMCONNECTORDIALOGSTART&{AUTH}&data[CONNECTOR]=MyConn&data[DATA][0][connector][connector_id]=MyConn&data[DATA][0][session][id]=1"
    ));
    let EventData::DialogStart(d) = &e.data else {
        panic!()
    };
    assert_eq!(d.connector.as_deref(), Some("myconn"));
    assert_eq!(d.connector_as_sent.as_deref(), Some("MyConn"));
    assert_eq!(
        d.dialogs[0].connector.connector_id.as_deref(),
        Some("myconn")
    );
    assert_eq!(
        d.dialogs[0].connector.connector_id_as_sent.as_deref(),
        Some("MyConn")
    );
    let e = ok(&format!(
        "event=ONIMCONNECTORMESSAGEADD&{AUTH}&data[CONNECTOR]=ABC"
    ));
    assert_eq!(e.connector(), Some("abc"));
    assert_eq!(messages(&e).connector_as_sent.as_deref(), Some("ABC"));
}

#[test]
fn scope_split_on_commas_and_whitespace() {
    let e = ok(&format!(
        "event=ONAPPINSTALL&{AUTH}&auth[scope]=imconnector%2C+imopenlines+crm%2C%2Cim"
    ));
    assert_eq!(e.auth.scope, ["imconnector", "imopenlines", "crm", "im"]);
    let e = ok(&format!("event=ONAPPINSTALL&{AUTH}"));
    assert!(e.auth.scope.is_empty());
}

#[test]
fn missing_optional_auth_fields_are_none() {
    let e = ok("event=ONAPPUNINSTALL&auth[member_id]=m");
    assert_eq!(e.auth.domain, None);
    assert_eq!(e.auth.access_token, None);
    assert_eq!(e.auth.refresh_token, None);
    assert_eq!(e.auth.application_token, None);
    assert_eq!(e.auth.expires_in, None);
    let json = e.to_json();
    assert_eq!(json["auth"]["has_application_token"], false);
    assert_eq!(json["auth"]["domain"], serde_json::Value::Null);
}

#[test]
fn undocumented_message_files_kept() {
    let e = ok(&format!(
        "event=ONIMCONNECTORMESSAGEADD&{AUTH}&{MSG}&data[MESSAGES][0][message][files][0][name]=a.png&data[MESSAGES][0][message][files][0][type]=image&data[MESSAGES][0][message][files][0][link]=https%3A%2F%2Fx%2Fa&data[MESSAGES][0][message][files][0][size]=123&data[MESSAGES][0][message][files][0][width]=10&data[MESSAGES][0][message][files][1]=junk"
    ));
    let files = &messages(&e).messages[0].message.files;
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].name.as_deref(), Some("a.png"));
    assert_eq!(files[0].file_type.as_deref(), Some("image"));
    assert_eq!(files[0].link.as_deref(), Some("https://x/a"));
    assert_eq!(files[0].size, Some(123));
    assert_eq!(files[0].width, Some(10));
    assert_eq!(files[0].height, None);
    assert_eq!(
        e.to_json()["data"]["messages"][0]["message"]["files"][0]["type"],
        "image"
    );
}

#[test]
fn y_n_and_1_0_and_true_false_are_booleans() {
    for (v, want) in [
        ("Y", true),
        ("N", false),
        ("1", true),
        ("0", false),
        ("true", true),
        ("false", false),
    ] {
        let e = ok(&format!(
            "event=ONAPPINSTALL&{AUTH}&data[ACTIVE]={v}&data[INSTALLED]={v}"
        ));
        let EventData::AppInstall(app) = &e.data else {
            panic!()
        };
        assert_eq!(app.active, Some(want), "{v}");
        assert_eq!(app.installed, Some(want), "{v}");
    }
    let err = form(&format!("event=ONAPPINSTALL&{AUTH}&data[ACTIVE]=maybe")).unwrap_err();
    assert_eq!(err.to_string(), "invalid boolean in data[ACTIVE]");
    let e = ok(&format!("event=ONIMCONNECTORDIALOGFINISH&{AUTH}&data[DATA][0][session][id]=1&data[DATA][0][session][closed]=Y"));
    let EventData::DialogFinish(d) = &e.data else {
        panic!()
    };
    assert_eq!(d.dialogs[0].session.closed, Some(true));
}

#[test]
fn clean_1_or_0() {
    let clean = |v: &str| {
        let e = ok(&format!("event=ONAPPUNINSTALL&{AUTH}{v}"));
        let EventData::AppUninstall(u) = e.data else {
            panic!()
        };
        u.clean
    };
    assert!(clean("&data[CLEAN]=1"));
    assert!(!clean("&data[CLEAN]=0"));
    assert!(!clean(""));
}

#[test]
fn required_fields_missing() {
    let cases = [
        ("auth[member_id]=m", "missing event"),
        ("event=ONAPPINSTALL", "missing auth[member_id]"),
        (
            "event=ONAPPINSTALL&auth[member_id]=",
            "missing auth[member_id]",
        ),
        ("event=ONAPPINSTALL&auth=x", "invalid auth: expected a map"),
        (
            "event=ONIMCONNECTORMESSAGEADD&auth[member_id]=m&data[MESSAGES][0][im][chat_id]=1",
            "missing data[MESSAGES][0][im][message_id]",
        ),
        (
            "event=ONIMCONNECTORMESSAGEDELETE&auth[member_id]=m&data[MESSAGES][3][chat][id]=1",
            "missing data[MESSAGES][3][im][chat_id]",
        ),
        (
            "event=ONIMCONNECTORDIALOGSTART&auth[member_id]=m&data[DATA][0][chat][id]=1",
            "missing data[DATA][0][session][id]",
        ),
        (
            "event=ONIMCONNECTORSTATUSDELETE&auth[member_id]=m&data[line]=1",
            "missing data[connector]",
        ),
        (
            "event=ONIMCONNECTORSTATUSDELETE&auth[member_id]=m&data[connector]=c",
            "missing data[line]",
        ),
        (
            "event=ONIMCONNECTORMESSAGEADD&auth[member_id]=m&data[MESSAGES]=x",
            "invalid data[MESSAGES]: expected a map",
        ),
        (
            "event=ONAPPINSTALL&auth[member_id]=m&auth[domain][x]=1",
            "invalid auth[domain]: expected a single value",
        ),
    ];
    for (body, want) in cases {
        let err = form(body).unwrap_err();
        assert_eq!(err.to_string(), want, "{body}");
        assert_eq!(err.status(), 400, "{body}");
    }
}

#[test]
fn unknown_keys_ignored() {
    let e = ok(&format!(
        "event=ONIMCONNECTORMESSAGEADD&{AUTH}&{MSG}&extra=1&data[MESSAGES][0][message][params][CLASS]=x&data[MESSAGES][0][user][id]=5&data[MESSAGES][x][im][chat_id]=z"
    ));
    assert_eq!(messages(&e).messages.len(), 1);
    // (`params` is kept since schema v1.1; `user` stays ignored.)
    assert_eq!(messages(&e).messages[0].message.params["CLASS"], "x");
}

#[test]
fn json_and_form_decode_identically() {
    let f = ok(&format!("event=ONIMCONNECTORMESSAGEDELETE&{AUTH}&ts=5&data[LINE]=3&{MSG}&data[MESSAGES][0][message][id]=e"));
    let j = decode(
        br#"{"event":"ONIMCONNECTORMESSAGEDELETE","ts":5,"data":{"LINE":"3","MESSAGES":[{"im":{"chat_id":1,"message_id":"2"},"message":{"id":"e"}}]},"auth":{"member_id":"m1","application_token":"tok"}}"#,
        Some("application/json; charset=utf-8"),
    )
    .unwrap();
    assert_eq!(f, j);
}

#[test]
fn content_type_with_charset_and_any_case() {
    let body = format!("event=ONAPPINSTALL&{AUTH}");
    for ct in [
        None,
        Some(""),
        Some("application/x-www-form-urlencoded; charset=UTF-8"),
        Some("APPLICATION/X-WWW-FORM-URLENCODED"),
    ] {
        decode(body.as_bytes(), ct).unwrap();
    }
    let err = decode(body.as_bytes(), Some("multipart/form-data; boundary=x")).unwrap_err();
    assert_eq!(err.status(), 415);
    assert_eq!(
        err.to_string(),
        "unsupported content type multipart/form-data"
    );
}

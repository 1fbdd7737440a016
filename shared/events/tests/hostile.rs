//! Hostile input: errors, never panics, bounded work.

use b24_events::{decode, decode_with, DecodeError, Limits};
use std::time::{Duration, Instant};

const CTS: [Option<&str>; 2] = [None, Some("application/json")];

#[test]
fn garbage_gives_errors_not_panics() {
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"&&&===&".to_vec(),
        b"[[[[]]]]".to_vec(),
        b"{".to_vec(),
        b"null".to_vec(),
        b"[1,2]".to_vec(),
        b"\"event\"".to_vec(),
        b"%".to_vec(),
        b"%zz=%%&a[=b&]=c&[x]=y&a]]]=1".to_vec(),
        b"event[]=ONAPPINSTALL&auth[member_id]=m".to_vec(),
        b"{\"event\":{\"a\":1},\"auth\":{\"member_id\":\"m\"}}".to_vec(),
        b"{\"event\":\"ONAPPINSTALL\",\"auth\":[\"m\"]}".to_vec(),
        b"{\"event\":\"ONAPPINSTALL\",\"auth\":{\"member_id\":\"m\"}} trailing".to_vec(),
        (0u8..=255).collect(),
    ];
    for body in &bodies {
        for ct in CTS {
            let err = decode(body, ct).unwrap_err();
            assert_eq!(
                err.status(),
                400,
                "{:?} {ct:?}: {err}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

#[test]
fn invalid_utf8_is_decoded_lossily_or_refused() {
    // Form: bytes are percent-decoded then read as lossy UTF-8.
    let e = decode(
        b"event=ONAPPINSTALL&auth[member_id]=m&auth[domain]=d%FF%FE&data[VERSION]=\xff1",
        None,
    )
    .unwrap();
    assert_eq!(e.auth.domain.as_deref(), Some("d\u{fffd}\u{fffd}"));
    let b24_events::EventData::AppInstall(app) = &e.data else {
        panic!()
    };
    assert_eq!(app.version.as_deref(), Some("\u{fffd}1"));
    // Not in an identifier: a member_id is never "repaired" into a valid one.
    let err = decode(b"event=ONAPPINSTALL&auth[member_id]=m%FF%FE", None).unwrap_err();
    assert_eq!(err.status(), 400);
    assert!(err.to_string().contains("auth[member_id]"), "{err}");
    // JSON: invalid UTF-8 is a syntax error.
    let err = decode(b"{\"event\":\"\xff\"}", Some("application/json")).unwrap_err();
    assert!(
        err.to_string().starts_with("invalid JSON body at line 1"),
        "{err}"
    );
}

#[test]
fn deep_nesting_is_refused() {
    let key = "a".to_string() + &"[x]".repeat(100_000);
    let err = decode(format!("{key}=1").as_bytes(), None).unwrap_err();
    assert_eq!(err, DecodeError::TooDeep { limit: 32 });
    assert_eq!(err.to_string(), "body nested too deep (limit 32)");

    let json = "[".repeat(100_000) + &"]".repeat(100_000);
    let err = decode(json.as_bytes(), Some("application/json")).unwrap_err();
    assert_eq!(err, DecodeError::TooDeep { limit: 32 });
    let json = "{\"a\":".repeat(50_000) + "1" + &"}".repeat(50_000);
    let err = decode(json.as_bytes(), Some("application/json")).unwrap_err();
    assert_eq!(err, DecodeError::TooDeep { limit: 32 });

    // A caller asking for more still gets at most 100 (stack safety).
    let limits = Limits {
        max_depth: usize::MAX,
        max_body_bytes: usize::MAX,
        ..Limits::default()
    };
    let err = decode_with(format!("{key}=1").as_bytes(), None, &limits).unwrap_err();
    assert_eq!(err, DecodeError::TooDeep { limit: 100 });
    let json = "[".repeat(100_000) + &"]".repeat(100_000);
    let err = decode_with(json.as_bytes(), Some("application/json"), &limits).unwrap_err();
    assert!(matches!(err, DecodeError::TooDeep { .. }), "{err}");
}

#[test]
fn hundred_thousand_keys_is_refused_quickly() {
    let mut body = String::from("event=ONAPPINSTALL&auth[member_id]=m");
    for i in 0..100_000 {
        body.push_str(&format!("&data[x][{i}]=1"));
    }
    let limits = Limits {
        max_body_bytes: usize::MAX,
        ..Limits::default()
    };
    let t = Instant::now();
    let err = decode_with(body.as_bytes(), None, &limits).unwrap_err();
    assert_eq!(err, DecodeError::TooManyKeys { limit: 10_000 });
    assert_eq!(err.to_string(), "too many keys (limit 10000)");

    let json = format!("{{\"a\":[{}]}}", vec!["1"; 100_000].join(","));
    let err = decode_with(json.as_bytes(), Some("application/json"), &limits).unwrap_err();
    assert_eq!(err, DecodeError::TooManyKeys { limit: 10_000 });
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // Just under the limit is fine and still fast.
    let mut body = String::from("event=ONAPPINSTALL&auth[member_id]=m");
    for i in 0..9_990 {
        body.push_str(&format!("&k{i}[{i}][a]=1"));
    }
    let t = Instant::now();
    decode(body.as_bytes(), None).unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn huge_index_allocates_nothing() {
    let body = "event=ONIMCONNECTORMESSAGEUPDATE&auth[member_id]=m&data[MESSAGES][99999999999][im][chat_id]=1&data[MESSAGES][99999999999][im][message_id]=2&data[MESSAGES][99999999999][message][id][9223372036854775807]=x&data[MESSAGES][99999999999][message][id][]=y&data[MESSAGES][-5][im][chat_id]=3&data[MESSAGES][-5][im][message_id]=4";
    let e = decode(body.as_bytes(), None).unwrap();
    let b24_events::EventData::MessageUpdate(m) = &e.data else {
        panic!()
    };
    assert_eq!(m.messages.len(), 2);
    assert_eq!(m.messages[0].im.message_id, 4);
    assert_eq!(m.messages[1].message.ids, ["x"]);
}

#[test]
fn body_size_limit_is_413() {
    let body = vec![b'a'; 1024 * 1024 + 1];
    let err = decode(&body, None).unwrap_err();
    assert_eq!(err.status(), 413);
    assert_eq!(
        err.to_string(),
        "body too large: 1048577 bytes (limit 1048576)"
    );
    let limits = Limits {
        max_body_bytes: 10,
        ..Limits::default()
    };
    assert_eq!(
        decode_with(b"event=ONAPPINSTALL", None, &limits)
            .unwrap_err()
            .status(),
        413
    );
}

#[test]
fn long_repeated_keys_stay_linear() {
    // One map with 10k distinct keys and a lookup miss per optional field.
    let mut body = String::from("event=ONAPPINSTALL&auth[member_id]=m");
    for i in 0..9_990 {
        body.push_str(&format!("&data[K{i}]=1"));
    }
    let t = Instant::now();
    decode(body.as_bytes(), None).unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn overlong_fields_are_refused_but_long_text_is_kept() {
    let base = "event=ONIMCONNECTORMESSAGEADD&auth%5Bmember_id%5D=m1&auth%5Bapplication_token%5D=t\
                &data%5BCONNECTOR%5D=c&data%5BLINE%5D=1\
                &data%5BMESSAGES%5D%5B0%5D%5Bim%5D%5Bchat_id%5D=1\
                &data%5BMESSAGES%5D%5B0%5D%5Bim%5D%5Bmessage_id%5D=2";
    let long = "x".repeat(b24_events::MAX_FIELD_BYTES + 1);
    for (field, wire) in [
        ("auth[member_id]", "auth%5Bmember_id%5D"),
        ("data[CONNECTOR]", "data%5BCONNECTOR%5D"),
        (
            "data[MESSAGES][0][chat][id]",
            "data%5BMESSAGES%5D%5B0%5D%5Bchat%5D%5Bid%5D",
        ),
    ] {
        let body = format!("{base}&{wire}={long}");
        let err = decode(body.as_bytes(), None).unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains(field), "{err}");
        assert!(
            !err.to_string().contains(&long),
            "the value is never echoed"
        );
    }
    let text = "Ж".repeat(100_000);
    let body = format!("{base}&data%5BMESSAGES%5D%5B0%5D%5Bmessage%5D%5Btext%5D={text}");
    let event = decode(body.as_bytes(), None).expect("long text is not a field limit");
    let b24_events::EventData::MessageAdd(m) = event.data else {
        panic!("messages")
    };
    assert_eq!(m.messages[0].message.text.as_deref(), Some(text.as_str()));
    // In the undocumented files list an overlong value is dropped, not fatal (links may be
    // up to 2048 bytes, the other file fields up to MAX_FIELD_BYTES).
    let long_link = "x".repeat(2049);
    let body = format!("{base}&data%5BMESSAGES%5D%5B0%5D%5Bmessage%5D%5Bfiles%5D%5B0%5D%5Blink%5D={long_link}&data%5BMESSAGES%5D%5B0%5D%5Bmessage%5D%5Bfiles%5D%5B0%5D%5Bname%5D=a.png&data%5BMESSAGES%5D%5B0%5D%5Bmessage%5D%5Bfiles%5D%5B0%5D%5Bmime%5D={long}");
    let event = decode(body.as_bytes(), None).unwrap();
    let b24_events::EventData::MessageAdd(m) = event.data else {
        panic!("messages")
    };
    assert_eq!(m.messages[0].message.files[0].link, None);
    assert_eq!(m.messages[0].message.files[0].mime, None);
    assert_eq!(
        m.messages[0].message.files[0].name.as_deref(),
        Some("a.png")
    );
}

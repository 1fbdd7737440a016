//! Property: any typed event, encoded the PHP way (and as JSON), decodes back to itself.

use b24_events::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

/// Non-empty text, including spaces, brackets, `&`, `=`, `+`, `%` and Cyrillic.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 \\[\\]&=+%/:.,\"'\\n\u{0400}-\u{04ff}-]{1,24}"
}
fn ident() -> impl Strategy<Value = String> {
    "[a-z0-9_]{1,12}"
}
fn opt_text() -> impl Strategy<Value = Option<String>> {
    option::of(text())
}
fn int() -> impl Strategy<Value = i64> {
    any::<i64>()
}
fn secret() -> impl Strategy<Value = Option<Secret>> {
    option::of("[a-z0-9]{8,40}".prop_map(Secret::new))
}

fn auth() -> impl Strategy<Value = Auth> {
    (
        "[a-f0-9]{1,32}",
        (opt_text(), opt_text(), opt_text(), opt_text()),
        vec("[a-z_]{1,10}", 0..4),
        (option::of(int()), option::of(int()), option::of(int())),
        (secret(), secret(), secret()),
    )
        .prop_map(
            |(
                member_id,
                (domain, client_endpoint, server_endpoint, status),
                scope,
                (user_id, expires, expires_in),
                (access_token, refresh_token, application_token),
            )| Auth {
                member_id,
                domain,
                client_endpoint,
                server_endpoint,
                status,
                scope,
                user_id,
                expires,
                expires_in,
                access_token,
                refresh_token,
                application_token,
            },
        )
}

fn file() -> impl Strategy<Value = FileRef> {
    (text(), opt_text(), opt_text(), option::of(0i64..1 << 40)).prop_map(
        |(name, file_type, link, size)| FileRef {
            name: Some(name),
            file_type,
            link,
            size,
        },
    )
}

fn message(kind: EventKind) -> impl Strategy<Value = MessageItem> {
    let ids = if kind == EventKind::MessageAdd {
        vec(text(), 0..1).boxed()
    } else {
        vec(text(), 0..4).boxed()
    };
    (
        int(),
        int(),
        option::of(int()),
        opt_text(),
        ids,
        vec(file(), 0..3),
        opt_text(),
    )
        .prop_map(
            |(chat_id, message_id, user_id, text, ids, files, chat)| MessageItem {
                im: ImRef {
                    chat_id,
                    message_id,
                },
                message: MessageBody {
                    user_id,
                    text,
                    ids,
                    files,
                },
                chat: ExternalChat { id: chat },
            },
        )
}

fn dialog() -> impl Strategy<Value = DialogItem> {
    (
        (
            option::of(ident()),
            option::of(int()),
            opt_text(),
            opt_text(),
        ),
        (
            int(),
            option::of(any::<bool>()),
            option::of(int()),
            option::of(int()),
        ),
        opt_text(),
        opt_text(),
    )
        .prop_map(
            |(
                (connector_id, line_id, chat_id, user_id),
                (id, closed, parent_id, close_term),
                chat,
                user,
            )| DialogItem {
                connector: DialogConnector {
                    connector_id,
                    line_id,
                    chat_id,
                    user_id,
                },
                session: Session {
                    id,
                    closed,
                    parent_id,
                    close_term,
                },
                chat: ExternalChat { id: chat },
                user: ExternalUser { id: user },
            },
        )
}

fn data(kind: EventKind) -> BoxedStrategy<EventData> {
    match kind {
        EventKind::MessageAdd | EventKind::MessageUpdate | EventKind::MessageDelete => (
            option::of(ident()),
            option::of(int()),
            vec(message(kind), 0..4),
        )
            .prop_map(|(connector, line, messages)| {
                EventData::Messages(MessagesData {
                    connector,
                    line,
                    messages,
                })
            })
            .boxed(),
        EventKind::DialogStart | EventKind::DialogFinish => {
            (option::of(ident()), option::of(int()), vec(dialog(), 0..3))
                .prop_map(|(connector, line, dialogs)| {
                    EventData::Dialogs(DialogsData {
                        connector,
                        line,
                        dialogs,
                    })
                })
                .boxed()
        }
        EventKind::StatusDelete => (ident(), int())
            .prop_map(|(connector, line)| {
                EventData::StatusDelete(StatusDeleteData { connector, line })
            })
            .boxed(),
        EventKind::LineDelete => int()
            .prop_map(|line| EventData::LineDelete(LineDeleteData { line }))
            .boxed(),
        EventKind::AppInstall | EventKind::AppUpdate => (
            opt_text(),
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::of(ident()),
        )
            .prop_map(|(version, active, installed, language_id)| {
                EventData::App(AppData {
                    version,
                    active,
                    installed,
                    language_id,
                })
            })
            .boxed(),
        EventKind::AppUninstall => (option::of(ident()), any::<bool>())
            .prop_map(|(language_id, clean)| {
                EventData::AppUninstall(AppUninstallData { language_id, clean })
            })
            .boxed(),
    }
}

fn event() -> impl Strategy<Value = Event> {
    proptest::sample::select(EventKind::ALL.to_vec()).prop_flat_map(|kind| {
        (option::of(int()), option::of(int()), auth(), data(kind)).prop_map(
            move |(handler_id, ts, auth, data)| Event {
                kind,
                handler_id,
                ts,
                auth,
                data,
            },
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn php_form_roundtrip(event in event()) {
        let wire = encode::wire_json(&event);
        let form = encode::php_form(&wire);
        let back = decode(form.as_bytes(), Some("application/x-www-form-urlencoded"))
            .map_err(|e| TestCaseError::fail(format!("{e}\n{form}")))?;
        prop_assert_eq!(&back, &event);

        let json = serde_json::to_vec(&wire).unwrap();
        let back = decode(&json, Some("application/json"))
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(&back, &event);
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in vec(any::<u8>(), 0..512), json in any::<bool>()) {
        let ct = if json { Some("application/json") } else { None };
        let _ = decode(&body, ct);
    }

    #[test]
    fn arbitrary_bracket_forms_never_panic(pairs in vec(("[a-zA-Z\\[\\]0-9_%]{0,20}", "[a-zA-Z0-9%+]{0,8}"), 0..40)) {
        let mut body = String::from("event=ONIMCONNECTORMESSAGEUPDATE&auth[member_id]=m");
        for (k, v) in pairs {
            body.push('&');
            body.push_str(&k);
            body.push('=');
            body.push_str(&v);
        }
        let _ = decode(body.as_bytes(), None);
    }
}

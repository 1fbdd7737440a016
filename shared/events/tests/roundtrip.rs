//! Property: any typed event, encoded the PHP way (and as JSON), decodes back to itself.

use b24_events::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Non-empty text, including spaces, brackets, `&`, `=`, `+`, `%` and Cyrillic.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 \\[\\]&=+%/:.,\"'\\n\u{0400}-\u{04ff}-]{1,24}"
}
fn ident() -> impl Strategy<Value = String> {
    "[a-z0-9_]{1,12}"
}
/// A valid `member_id` (1–64 of `[0-9a-z_-]`), mostly shaped like real ones (32 hex).
fn member_id() -> impl Strategy<Value = String> {
    prop_oneof!["[a-f0-9]{32}", "[0-9a-z_-]{1,64}"]
}
/// A connector ID as a portal may send it (any case, `[0-9A-Za-z_.-]`, 1–64), with the
/// lower-cased form the decoder keys on.
fn connector() -> impl Strategy<Value = (String, String)> {
    prop_oneof!["[a-z0-9_]{1,12}", "OL_[0-9]{1,3}", "[0-9A-Za-z_.-]{1,64}"]
        .prop_map(|sent| (sent.to_ascii_lowercase(), sent))
}
/// `message.params`: keys without brackets (no PHP form carries those), values possibly empty.
fn params() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(
        prop_oneof![
            "(CLASS|IMOL_FORM|IMOL_VOTE|IMOL_VOTE_SID|IMOL_VOTE_TEXT|url|IS_[A-Z]{1,6})",
            "[a-zA-Z0-9 &=+%/:.,\"'\n\u{0400}-\u{04ff}_-]{1,16}",
        ],
        "[a-zA-Z0-9 \\[\\]&=+%/:.,\"'\n\u{0400}-\u{04ff}-]{0,24}",
        0..5,
    )
}
/// A file link without token parameters (those are stripped by design, see hostile.rs and
/// real.rs): query parameter names start with `p`, which no token parameter does.
fn link() -> impl Strategy<Value = String> {
    "(https://[a-z]{1,8}\\.example)?/[a-zA-Z0-9/._%-]{0,16}(\\?p[a-z]{0,4}=[a-zA-Z0-9%|.]{0,8}(&p[a-z]{0,4}=[a-z0-9]{0,5}){0,2})?(#[a-z]{0,4})?"
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
        member_id(),
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
    (
        (option::of("[0-9]{1,9}"), text(), opt_text(), opt_text()),
        (option::of(link()), option::of(link())),
        (option::of(0i64..1 << 40), opt_text()),
        (option::of(int()), option::of(int())),
    )
        .prop_map(
            |(
                (id, name, file_type, mime),
                (link, download_link),
                (size, size_formatted),
                (width, height),
            )| FileRef {
                id,
                name: Some(name),
                file_type,
                mime,
                link,
                download_link,
                size,
                size_formatted,
                width,
                height,
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
        params(),
        opt_text(),
    )
        .prop_map(
            |(chat_id, message_id, user_id, text, ids, files, params, chat)| MessageItem {
                im: ImRef {
                    chat_id,
                    message_id,
                },
                message: MessageBody {
                    user_id,
                    text,
                    ids,
                    files,
                    params,
                },
                chat: ExternalChat { id: chat },
            },
        )
}

fn dialog() -> impl Strategy<Value = DialogItem> {
    (
        (
            option::of(connector()),
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
                (connector, line_id, chat_id, user_id),
                (id, closed, parent_id, close_term),
                chat,
                user,
            )| DialogItem {
                connector: DialogConnector {
                    connector_id: connector.as_ref().map(|(lower, _)| lower.clone()),
                    connector_id_as_sent: connector.map(|(_, sent)| sent),
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

fn messages_data(kind: EventKind) -> impl Strategy<Value = MessagesData> {
    (
        option::of(connector()),
        option::of(int()),
        vec(message(kind), 0..4),
    )
        .prop_map(|(connector, line, messages)| MessagesData {
            connector: connector.as_ref().map(|(lower, _)| lower.clone()),
            connector_as_sent: connector.map(|(_, sent)| sent),
            line,
            messages,
        })
}

fn dialogs_data() -> impl Strategy<Value = DialogsData> {
    (
        option::of(connector()),
        option::of(int()),
        vec(dialog(), 0..3),
    )
        .prop_map(|(connector, line, dialogs)| DialogsData {
            connector: connector.as_ref().map(|(lower, _)| lower.clone()),
            connector_as_sent: connector.map(|(_, sent)| sent),
            line,
            dialogs,
        })
}

fn app_data() -> impl Strategy<Value = AppData> {
    (
        (opt_text(), opt_text()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(ident()),
    )
        .prop_map(
            |((version, previous_version), active, installed, language_id)| AppData {
                version,
                previous_version,
                active,
                installed,
                language_id,
            },
        )
}

/// The data of any kind: the variant is the kind.
fn data(kind: EventKind) -> BoxedStrategy<EventData> {
    match kind {
        EventKind::MessageAdd => messages_data(kind).prop_map(EventData::MessageAdd).boxed(),
        EventKind::MessageUpdate => messages_data(kind)
            .prop_map(EventData::MessageUpdate)
            .boxed(),
        EventKind::MessageDelete => messages_data(kind)
            .prop_map(EventData::MessageDelete)
            .boxed(),
        EventKind::DialogStart => dialogs_data().prop_map(EventData::DialogStart).boxed(),
        EventKind::DialogFinish => dialogs_data().prop_map(EventData::DialogFinish).boxed(),
        EventKind::StatusDelete => (connector(), int())
            .prop_map(|((connector, connector_as_sent), line)| {
                EventData::StatusDelete(StatusDeleteData {
                    connector,
                    connector_as_sent,
                    line,
                })
            })
            .boxed(),
        EventKind::LineDelete => int()
            .prop_map(|line| EventData::LineDelete(LineDeleteData { line }))
            .boxed(),
        EventKind::AppInstall => app_data().prop_map(EventData::AppInstall).boxed(),
        EventKind::AppUpdate => app_data().prop_map(EventData::AppUpdate).boxed(),
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
        prop_assert_eq!(back.kind(), back.data.kind());

        let json = serde_json::to_vec(&wire).unwrap();
        let back = decode(&json, Some("application/json"))
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(&back, &event);
    }

    #[test]
    fn file_links_lose_every_token_parameter_and_stripping_is_stable(
        pieces in vec(
            (
                prop_oneof![Just('?'), Just('&'), Just('#')],
                prop_oneof![
                    Just("auth=SECRET"),
                    Just("AUTH=SECRET"),
                    Just("%61uth=SECRET"),
                    Just("amp;auth=SECRET"),
                    Just("auth%5B%5D=SECRET"),
                    Just("access_token=SECRET"),
                    Just("access.token=SECRET"),
                    Just("refresh_token=SECRET"),
                    Just("application_token=SECRET"),
                    Just("auth"),
                    Just("token=disk%7CaWQ9ODg0MQ"),
                    Just("p=1"),
                    Just("/page"),
                    Just(""),
                ],
            ),
            0..8,
        )
    ) {
        let mut link = String::from("/rest/download.json");
        for (delimiter, piece) in &pieces {
            link.push(*delimiter);
            link.push_str(piece);
        }
        let wire = serde_json::json!({
            "event": "ONIMCONNECTORMESSAGEADD",
            "data": {"MESSAGES": [{
                "im": {"chat_id": "1", "message_id": "2"},
                "message": {"files": [{"name": "a.png", "downloadLink": link, "link": link}]}
            }]},
            "auth": {"member_id": "m1"}
        });
        let event = decode(encode::php_form(&wire).as_bytes(), None)
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let json = event.to_json_string();
        prop_assert!(!json.contains("SECRET"), "{} -> {}", link, json);
        let debug = format!("{:?}", event);
        prop_assert!(!debug.contains("SECRET"));
        // What is kept decodes to itself again.
        let again = decode(encode::php_form(&encode::wire_json(&event)).as_bytes(), None)
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(again, event);
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

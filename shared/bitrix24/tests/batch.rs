//! `batch` against the fake Bitrix24: event bindings (one already bound), deliveries, an
//! expired token, the 50-command limit.

mod common;

use b24_rest::{
    delivery_command, event_bind_commands, Command, Delivered, RestError, Secret,
    MAX_BATCH_COMMANDS,
};
use common::*;
use serde_json::{json, Value};

const HANDLER: &str = "http://127.0.0.1:9000/bitrix24/events";

#[tokio::test]
async fn three_bindings_and_an_already_bound_one_in_one_batch() {
    bounded(async {
        let (fake, creds) = start().await;
        let t = Secret::new(creds.access_token.clone());
        // Bound before: the batch's fourth command meets it.
        rest()
            .batch(
                &creds.client_endpoint,
                &t,
                &event_bind_commands(&[("OnImConnectorMessageUpdate", HANDLER)]),
                false,
            )
            .await
            .unwrap();
        let commands = event_bind_commands(&[
            ("OnImConnectorMessageAdd", HANDLER),
            ("OnImConnectorDialogStart", HANDLER),
            ("OnImConnectorDialogFinish", HANDLER),
            ("OnImConnectorMessageUpdate", HANDLER),
        ]);
        let answer = rest()
            .batch(&creds.client_endpoint, &t, &commands, false)
            .await
            .expect("batch");
        for c in &commands[..3] {
            assert_eq!(
                answer.outcome(&c.name),
                Some(Ok(&json!(true))),
                "{}",
                c.name
            );
        }
        let again = answer.outcome(&commands[3].name).unwrap().unwrap_err();
        assert!(again.is_already_bound(), "{again:?}");
        assert!(!again.is_rate_limit());
        assert_eq!(answer.errors.len(), 1);
        let mut events: Vec<String> = fake
            .bindings(MEMBER)
            .unwrap()
            .into_iter()
            .map(|b| b.event)
            .collect();
        events.sort();
        assert_eq!(
            events,
            [
                "ONIMCONNECTORDIALOGFINISH",
                "ONIMCONNECTORDIALOGSTART",
                "ONIMCONNECTORMESSAGEADD",
                "ONIMCONNECTORMESSAGEUPDATE"
            ]
        );
        // Other method errors are not "already bound".
        let bad = rest()
            .batch(
                &creds.client_endpoint,
                &t,
                &event_bind_commands(&[("OnNoSuchEvent", HANDLER)]),
                false,
            )
            .await
            .unwrap();
        let e = bad.errors.values().next().unwrap();
        assert_eq!(e.code, "ERROR_EVENT_NOT_FOUND");
        assert!(!e.is_already_bound());
    })
    .await
}

#[tokio::test]
async fn delivery_commands_are_recorded_by_the_fake() {
    bounded(async {
        let (fake, creds) = start().await;
        let t = Secret::new(creds.access_token.clone());
        let message = |n: i64| Delivered {
            chat_id: 1807,
            message_id: 86_000 + n,
            external_ids: vec![format!("ext-{n}"), format!("ext-{n}-b")],
            date: (n % 2 == 0).then_some(1_738_065_600 + n),
            external_chat_id: "channel 123/ü".into(),
        };
        let commands = vec![
            delivery_command("d1", "my_connector", 107, &[message(1), message(2)]),
            delivery_command("d2", "my_connector", 108, &[message(3)]),
        ];
        let answer = rest()
            .batch(&creds.client_endpoint, &t, &commands, true)
            .await
            .expect("batch");
        assert!(answer.errors.is_empty(), "{:?}", answer.errors);
        assert_eq!(answer.results["d1"], json!({"SUCCESS": true, "DATA": []}));
        let deliveries = fake.deliveries(MEMBER).unwrap();
        assert_eq!(deliveries.len(), 2);
        let d1 = &deliveries[0];
        assert_eq!(
            (d1.batch_command.as_deref(), d1.connector.as_str(), d1.line),
            (Some("d1"), "my_connector", 107)
        );
        assert_eq!(d1.messages.len(), 2);
        let m = &d1.messages[1];
        assert_eq!((m.chat_id, m.message_id), (1807, 86_002));
        assert_eq!(m.external_ids, ["ext-2", "ext-2-b"]);
        assert_eq!(m.date, Some(1_738_065_602));
        assert_eq!(m.external_chat_id, "channel 123/ü");
        assert_eq!(d1.messages[0].date, None);
        assert_eq!(
            (deliveries[1].line, deliveries[1].messages[0].message_id),
            (108, 86_003)
        );
    })
    .await
}

#[tokio::test]
async fn halt_stops_at_the_first_failing_command() {
    bounded(async {
        let (_fake, creds) = start().await;
        let t = Secret::new(creds.access_token.clone());
        let commands = vec![
            Command::new("a", "app.info", Value::Null),
            Command::new("b", "no.such.method", Value::Null),
            Command::new("c", "event.get", Value::Null),
        ];
        let halted = rest()
            .batch(&creds.client_endpoint, &t, &commands, true)
            .await
            .unwrap();
        assert!(halted.outcome("a").unwrap().is_ok());
        assert_eq!(
            halted.outcome("b").unwrap().unwrap_err().code,
            "ERROR_METHOD_NOT_FOUND"
        );
        assert_eq!(halted.outcome("c"), None);
        let all = rest()
            .batch(&creds.client_endpoint, &t, &commands, false)
            .await
            .unwrap();
        assert_eq!(all.outcome("c"), Some(Ok(&json!([]))));
    })
    .await
}

#[tokio::test]
async fn an_expired_token_fails_the_whole_batch() {
    bounded(async {
        let (fake, creds) = start().await;
        fake.expire_access_tokens(MEMBER).unwrap();
        let commands = vec![
            Command::new("a", "app.info", Value::Null),
            delivery_command(
                "d",
                "my_connector",
                107,
                &[Delivered {
                    chat_id: 1,
                    message_id: 2,
                    external_ids: vec!["x".into()],
                    date: None,
                    external_chat_id: "c".into(),
                }],
            ),
        ];
        let e = rest()
            .batch(
                &creds.client_endpoint,
                &Secret::new(creds.access_token.clone()),
                &commands,
                false,
            )
            .await
            .unwrap_err();
        assert_eq!(e, RestError::ExpiredToken);
        assert_clean(&e);
        assert!(fake.deliveries(MEMBER).unwrap().is_empty());
    })
    .await
}

#[tokio::test]
async fn more_than_fifty_commands_are_refused_before_sending() {
    bounded(async {
        let (fake, creds) = start().await;
        let t = Secret::new(creds.access_token.clone());
        let handlers: Vec<(String, String)> = (0..=MAX_BATCH_COMMANDS)
            .map(|i| ("OnAppTest".to_string(), format!("http://127.0.0.1:9/h{i}")))
            .collect();
        let commands = event_bind_commands(&handlers);
        let e = rest()
            .batch(&creds.client_endpoint, &t, &commands, false)
            .await
            .unwrap_err();
        assert_eq!(e, RestError::TooManyCommands);
        assert!(fake.calls().is_empty(), "nothing was sent");
        // Fifty is fine, and one request for the rate limit.
        let answer = rest()
            .batch(
                &creds.client_endpoint,
                &t,
                &commands[..MAX_BATCH_COMMANDS],
                false,
            )
            .await
            .unwrap();
        assert_eq!(answer.results.len(), MAX_BATCH_COMMANDS);
        assert_eq!(fake.bindings(MEMBER).unwrap().len(), MAX_BATCH_COMMANDS);
        // Duplicate names are a programming error too.
        let twice = vec![commands[0].clone(), commands[0].clone()];
        assert!(matches!(
            rest()
                .batch(&creds.client_endpoint, &t, &twice, false)
                .await,
            Err(RestError::InvalidRequest(_))
        ));
    })
    .await
}

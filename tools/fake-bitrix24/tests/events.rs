//! The event sender, install and uninstall: bodies as Bitrix24 builds them (PHP form, bracket
//! keys, every scalar a string), to every bound handler.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn event_body_decodes_as_a_php_form_with_bracket_keys_and_string_scalars() {
    bounded(async {
        let (fake, creds) = start().await;
        let handler = Handler::start().await;
        let (ep, t) = (&creds.client_endpoint, &creds.access_token);
        rest(ep, t, "event.bind", json!({"event": "OnImConnectorMessageAdd", "handler": handler.url})).await;
        rest(ep, t, "event.bind", json!({"event": "OnImConnectorMessageAdd", "handler": format!("{}2", handler.url)})).await;
        rest(ep, t, "event.bind", json!({"event": "OnImConnectorDialogStart", "handler": handler.url})).await;
        let data = json!({
            "CONNECTOR": "myconnector",
            "LINE": 107,
            "MESSAGES": [{"im": {"chat_id": 1807, "message_id": 86497},
                          "message": {"user_id": 27, "text": "[b]Иван:[/b] [br]a&b=c+d", "files": []},
                          "chat": {"id": "channel-123"}}],
            "FLAG": true,
            "NOTHING": null
        });
        let answers = fake.send_event(MEMBER, "OnImConnectorMessageAdd", &data).await.unwrap();
        assert_eq!(answers.len(), 2, "only the two MessageAdd handlers");
        assert!(answers.iter().all(|a| a.status == Some(200) && a.body == r#"{"outcome":"applied"}"#));
        let bindings = fake.bindings(MEMBER).unwrap();
        assert_eq!(answers[0].event_handler_id, Some(bindings[0].id));

        let seen = handler.requests();
        assert_eq!(seen.len(), 2);
        let req = &seen[0];
        assert_eq!(req.content_type, "application/x-www-form-urlencoded");
        // Brackets are percent-encoded on the wire, as http_build_query does.
        assert!(req.body.starts_with("event=ONIMCONNECTORMESSAGEADD&event_handler_id="), "{}", req.body);
        assert!(req.body.contains("data%5BMESSAGES%5D%5B0%5D%5Bim%5D%5Bchat_id%5D=1807"));
        let keys: Vec<String> = req.pairs().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "event", "event_handler_id",
                "data[CONNECTOR]", "data[LINE]",
                "data[MESSAGES][0][im][chat_id]", "data[MESSAGES][0][im][message_id]",
                "data[MESSAGES][0][message][user_id]", "data[MESSAGES][0][message][text]",
                "data[MESSAGES][0][chat][id]", "data[FLAG]",
                "ts",
                "auth[access_token]", "auth[expires]", "auth[expires_in]", "auth[scope]", "auth[domain]",
                "auth[server_endpoint]", "auth[status]", "auth[client_endpoint]", "auth[member_id]",
                "auth[user_id]", "auth[application_token]",
            ]
        );
        assert_eq!(req.field("event_handler_id"), Some(bindings[0].id.to_string()));
        assert_eq!(req.field("data[LINE]").as_deref(), Some("107"));
        assert_eq!(req.field("data[FLAG]").as_deref(), Some("1"));
        assert_eq!(req.field("data[MESSAGES][0][message][text]").as_deref(), Some("[b]Иван:[/b] [br]a&b=c+d"));
        assert_eq!(req.field("auth[member_id]").as_deref(), Some(MEMBER));
        assert_eq!(req.field("auth[application_token]"), Some(creds.application_token.clone()));
        assert_eq!(req.field("auth[client_endpoint]"), Some(creds.client_endpoint.clone()));
        assert_eq!(req.field("auth[domain]"), Some(creds.domain.clone()));
        assert_eq!(req.field("auth[expires_in]").as_deref(), Some("3600"));
        assert_eq!(req.field("auth[scope]").as_deref(), Some("imconnector,imopenlines"));
        assert!(req.field("ts").unwrap().parse::<i64>().is_ok());
        // Read back as PHP's parse_str would: nested arrays whose every leaf is a string.
        let parsed = Value::Object(b24_fake_bitrix24::php_form::parse_query(&req.body).unwrap());
        fn all_strings(v: &Value) -> bool {
            match v {
                Value::Object(m) => m.values().all(all_strings),
                Value::String(_) => true,
                _ => false,
            }
        }
        assert!(all_strings(&parsed), "{parsed}");
        assert_eq!(parsed["data"]["MESSAGES"]["0"]["im"]["chat_id"], "1807");
        assert_eq!(parsed["auth"]["user_id"], "1");
        // The event's access token works for REST calls.
        let token = req.field("auth[access_token]").unwrap();
        assert!(token.starts_with(PREFIX));
        assert_eq!(rest(ep, &token, "app.info", Value::Null).await.0, 200);
    })
    .await
}

#[tokio::test]
async fn event_without_tokens_and_scalar_data() {
    bounded(async {
        let (fake, creds) = start().await;
        let handler = Handler::start().await;
        rest(
            &creds.client_endpoint,
            &creds.access_token,
            "event.bind",
            json!({"event": "OnImConnectorLineDelete", "handler": handler.url}),
        )
        .await;
        let options = b24_fake_bitrix24::EventOptions {
            with_access_token: false,
        };
        fake.send_event_with(MEMBER, "ONIMCONNECTORLINEDELETE", &json!(107), options)
            .await
            .unwrap();
        let req = &handler.requests()[0];
        assert_eq!(req.field("data").as_deref(), Some("107"));
        assert!(req.field("auth[access_token]").is_none() && req.field("auth[user_id]").is_none());
        assert!(req.field("auth[application_token]").is_some());
        // Nothing bound: nobody is called; unknown portal: an error.
        assert!(fake
            .send_event(MEMBER, "OnAppTest", &Value::Null)
            .await
            .unwrap()
            .is_empty());
        assert!(fake
            .send_event("nobody", "OnAppTest", &Value::Null)
            .await
            .is_err());
        assert!(fake
            .send_event(MEMBER, "bad name!", &Value::Null)
            .await
            .is_err());
    })
    .await
}

#[tokio::test]
async fn install_sends_onappinstall_and_the_installer_can_bind_every_event_meanwhile() {
    bounded(async {
        let (fake, _creds) = start().await;
        let events = Handler::start().await;
        let events_url = events.url.clone();
        // The "product": on ONAPPINSTALL it binds every connector event with the event's token.
        let hook: Hook = Arc::new(move |captured: Captured| {
            let events_url = events_url.clone();
            Box::pin(async move {
                let endpoint = captured.field("auth[client_endpoint]").unwrap();
                let token = captured.field("auth[access_token]").unwrap();
                for event in [
                    "OnImConnectorMessageAdd",
                    "OnImConnectorMessageUpdate",
                    "OnAppUninstall",
                ] {
                    let (status, a) = rest(
                        &endpoint,
                        &token,
                        "event.bind",
                        json!({"event": event, "handler": events_url}),
                    )
                    .await;
                    assert_eq!(status, 200, "{a}");
                }
            })
        });
        let installer = Handler::start_with_hook(Some(hook)).await;
        let delivery = fake.install(MEMBER, &installer.url).await.unwrap();
        assert_eq!(delivery.response.status, Some(200));
        assert_eq!(delivery.response.event, "ONAPPINSTALL");

        let req = &installer.requests()[0];
        let keys: Vec<String> = req.pairs().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "event",
                "data[VERSION]",
                "data[ACTIVE]",
                "data[INSTALLED]",
                "data[LANGUAGE_ID]",
                "ts",
                "auth[domain]",
                "auth[scope]",
                "auth[access_token]",
                "auth[refresh_token]",
                "auth[expires_in]",
                "auth[server_endpoint]",
                "auth[status]",
                "auth[client_endpoint]",
                "auth[member_id]",
                "auth[application_token]",
            ]
        );
        assert_eq!(req.field("event").as_deref(), Some("ONAPPINSTALL"));
        assert_eq!(req.field("data[VERSION]").as_deref(), Some("1"));
        assert_eq!(
            req.field("auth[refresh_token]"),
            Some(delivery.credentials.refresh_token.clone())
        );
        let bound: Vec<String> = fake
            .bindings(MEMBER)
            .unwrap()
            .into_iter()
            .map(|b| b.event)
            .collect();
        assert_eq!(
            bound,
            [
                "ONIMCONNECTORMESSAGEADD",
                "ONIMCONNECTORMESSAGEUPDATE",
                "ONAPPUNINSTALL"
            ]
        );

        // The install's refresh token works.
        let (status, _) = refresh(
            &fake,
            CLIENT_ID,
            SECRET,
            &delivery.credentials.refresh_token,
        )
        .await;
        assert_eq!(status, 200);

        // Uninstall: ONAPPUNINSTALL without tokens, then everything is gone.
        let answers = fake.uninstall(MEMBER, true).await.unwrap();
        assert_eq!(answers.len(), 1);
        let req = events.requests().pop().unwrap();
        assert_eq!(req.field("event").as_deref(), Some("ONAPPUNINSTALL"));
        assert_eq!(req.field("data[CLEAN]").as_deref(), Some("1"));
        let keys: Vec<String> = req
            .pairs()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("auth"))
            .collect();
        assert_eq!(
            keys,
            [
                "auth[domain]",
                "auth[server_endpoint]",
                "auth[client_endpoint]",
                "auth[member_id]",
                "auth[application_token]"
            ]
        );
        assert!(fake.bindings(MEMBER).unwrap().is_empty());
        let a = rest(
            &delivery.credentials.client_endpoint,
            &delivery.credentials.access_token,
            "app.info",
            Value::Null,
        )
        .await;
        assert_eq!((a.0, a.1["error"].as_str()), (401, Some("invalid_token")));

        // Reinstall: a new application token.
        let again = fake.install(MEMBER, &installer.url).await.unwrap();
        assert_ne!(
            again.credentials.application_token,
            delivery.credentials.application_token
        );
    })
    .await
}

#[tokio::test]
async fn unreachable_handler_is_reported_not_fatal() {
    bounded(async {
        let (fake, creds) =
            start_with(|c| c.handler_timeout = std::time::Duration::from_secs(2)).await;
        // A port that was just free: connection refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        rest(
            &creds.client_endpoint,
            &creds.access_token,
            "event.bind",
            json!({"event": "OnAppTest", "handler": format!("http://127.0.0.1:{port}/gone")}),
        )
        .await;
        let answers = fake
            .send_event(MEMBER, "OnAppTest", &json!({"QUERY": {"any": "data"}}))
            .await
            .unwrap();
        assert_eq!(answers[0].status, None);
        assert!(answers[0].error.is_some());
        assert_eq!(fake.calls().last().unwrap().outcome, "unreachable");
    })
    .await
}

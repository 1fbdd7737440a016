//! REST calls: authentication errors, parameter encodings, app.info, event.*, delivery.

mod common;

use common::*;
use serde_json::{json, Value};

fn error(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["error"].as_str().unwrap_or(""))
}

#[tokio::test]
async fn expired_access_token_is_expired_token_401_until_refreshed() {
    bounded(async {
        let (fake, creds) = start().await;
        let ok = rest(
            &creds.client_endpoint,
            &creds.access_token,
            "app.info",
            Value::Null,
        )
        .await;
        assert_eq!(ok.0, 200);
        assert_eq!(fake.expire_access_tokens(MEMBER).unwrap(), 1);
        let a = rest(
            &creds.client_endpoint,
            &creds.access_token,
            "app.info",
            Value::Null,
        )
        .await;
        assert_eq!(error(&a), (401, "expired_token"));
        assert_eq!(
            a.1["error_description"],
            "The access token provided has expired"
        );

        let (_, fresh) = refresh(&fake, CLIENT_ID, SECRET, &creds.refresh_token).await;
        let token = fresh["access_token"].as_str().unwrap();
        let a = rest(&creds.client_endpoint, token, "app.info", Value::Null).await;
        assert_eq!(a.0, 200);
    })
    .await
}

#[tokio::test]
async fn access_token_expires_after_an_hour_of_fake_time() {
    bounded(async {
        let (fake, creds) = start().await;
        fake.advance_clock(std::time::Duration::from_secs(3601));
        let a = rest(
            &creds.client_endpoint,
            &creds.access_token,
            "event.get",
            Value::Null,
        )
        .await;
        assert_eq!(error(&a), (401, "expired_token"));
    })
    .await
}

#[tokio::test]
async fn unknown_foreign_and_missing_tokens_are_refused() {
    bounded(async {
        let (fake, creds) = start().await;
        let other = fake.initial_credentials()[1].clone();
        let a = rest(
            &creds.client_endpoint,
            "FAKETOKnope",
            "app.info",
            Value::Null,
        )
        .await;
        assert_eq!(error(&a), (401, "invalid_token"));
        // A token of portal B presented to portal A.
        let a = rest(
            &creds.client_endpoint,
            &other.access_token,
            "app.info",
            Value::Null,
        )
        .await;
        assert_eq!(error(&a), (401, "invalid_token"));
        let a = get(&format!("{}app.info", creds.client_endpoint)).await;
        assert_eq!(error(&a), (401, "NO_AUTH_FOUND"));
        let a = get(&format!(
            "{}/portal/nosuchportal/rest/app.info?auth=x",
            fake.base_url()
        ))
        .await;
        assert_eq!(error(&a), (404, "PORTAL_NOT_FOUND"));
    })
    .await
}

#[tokio::test]
async fn params_come_as_json_form_or_query_and_the_json_suffix_is_optional() {
    bounded(async {
        let (_fake, creds) = start().await;
        let ep = &creds.client_endpoint;
        let t = &creds.access_token;
        let bind = |handler: &str| json!({"event": "OnImConnectorMessageAdd", "handler": handler});
        assert_eq!(
            rest(ep, t, "event.bind", bind("http://127.0.0.1:1/a"))
                .await
                .0,
            200
        );
        let form = format!(
            "auth={t}&EVENT=OnImConnectorMessageUpdate&HANDLER=http%3A%2F%2F127.0.0.1%3A1%2Fb"
        );
        let a = rest_form(ep, "event.bind.json", form).await;
        assert_eq!(a.0, 200, "{}", a.1);
        assert_eq!(a.1["result"], true);
        let a = get(&format!("{ep}event.get.json?auth={t}")).await;
        assert_eq!(a.0, 200);
        assert_eq!(a.1["result"].as_array().unwrap().len(), 2);
        assert!(a.1["time"]["start"].is_f64() && a.1["time"]["date_start"].is_string());
        let a = rest(ep, t, "Event.Get", Value::Null).await;
        assert_eq!(a.1["result"].as_array().unwrap().len(), 2);
    })
    .await
}

#[tokio::test]
async fn app_info_answers_like_bitrix24() {
    bounded(async {
        let (_fake, creds) = start().await;
        let (status, a) = rest(
            &creds.client_endpoint,
            &creds.access_token,
            "app.info",
            Value::Null,
        )
        .await;
        assert_eq!(status, 200);
        let r = &a["result"];
        assert_eq!(r["ID"], 1);
        assert_eq!(r["CODE"], CLIENT_ID);
        assert_eq!(r["VERSION"], 1);
        assert_eq!(r["STATUS"], "L");
        assert_eq!(r["INSTALLED"], true);
        assert_eq!(r["PAYMENT_EXPIRED"], "N");
        assert!(r["DAYS"].is_null());
        assert_eq!(r["LANGUAGE_ID"], "en");
        assert!(a["time"].is_object());
    })
    .await
}

#[tokio::test]
async fn unknown_method_is_error_method_not_found_404() {
    bounded(async {
        let (_fake, creds) = start().await;
        let a = rest(
            &creds.client_endpoint,
            &creds.access_token,
            "crm.deal.list",
            Value::Null,
        )
        .await;
        assert_eq!(error(&a), (404, "ERROR_METHOD_NOT_FOUND"));
    })
    .await
}

#[tokio::test]
async fn binding_the_same_handler_twice_is_the_real_error_and_event_get_lists_bindings() {
    bounded(async {
        let (fake, creds) = start().await;
        let (ep, t) = (&creds.client_endpoint, &creds.access_token);
        let handler = "https://receiver.example.com/bitrix24/messages";
        let params = json!({"event": "OnImConnectorMessageAdd", "handler": handler});
        let a = rest(ep, t, "event.bind", params.clone()).await;
        assert_eq!((a.0, &a.1["result"]), (200, &json!(true)));
        let a = rest(ep, t, "event.bind", params.clone()).await;
        assert_eq!(error(&a), (400, "ERROR_CORE"));
        assert_eq!(
            a.1["error_description"],
            "Unable to set event handler: Handler already binded"
        );
        // Same event and handler for another user is a different binding.
        let mut for_user = params.clone();
        for_user["auth_type"] = json!(15);
        assert_eq!(rest(ep, t, "event.bind", for_user).await.0, 200);
        let offline = json!({"event": "OnAppUpdate", "event_type": "offline"});
        assert_eq!(rest(ep, t, "event.bind", offline).await.0, 200);

        let (status, list) = rest(ep, t, "event.get", Value::Null).await;
        assert_eq!(status, 200);
        assert_eq!(
            list["result"],
            json!([
                {"event": "ONIMCONNECTORMESSAGEADD", "handler": handler, "auth_type": "0", "offline": 0},
                {"event": "ONIMCONNECTORMESSAGEADD", "handler": handler, "auth_type": "15", "offline": 0},
                {"event": "ONAPPUPDATE", "connector_id": "", "offline": 1}
            ])
        );
        assert_eq!(fake.bindings(MEMBER).unwrap().len(), 3);
        assert!(fake.bindings(OTHER_MEMBER).unwrap().is_empty());

        let a = rest(ep, t, "event.unbind", params).await;
        assert_eq!(a.1["result"], json!({"count": 2}));
        assert_eq!(fake.bindings(MEMBER).unwrap().len(), 1);
    })
    .await
}

#[tokio::test]
async fn event_bind_checks_its_arguments_in_bitrix24_order() {
    bounded(async {
        let (fake, creds) = start().await;
        let (ep, t) = (&creds.client_endpoint, &creds.access_token);
        let cases = [
            (
                json!({}),
                "ERROR_ARGUMENT",
                "Argument 'EVENT' is null or empty",
            ),
            (
                json!({"event": "OnAppTest"}),
                "ERROR_ARGUMENT",
                "Argument 'HANDLER' is null or empty",
            ),
            (
                json!({"event": "OnAppTest", "event_type": "x", "handler": "http://a.b/"}),
                "ERROR_ARGUMENT",
                "Value must be one of {online|offline}",
            ),
            (
                json!({"event": "OnAppTest", "handler": "http://localhost:9000/"}),
                "ERROR_WRONG_HANDLER_URL",
                "Wrong handler URL",
            ),
            (
                json!({"event": "OnAppTest", "handler": "ftp://a.example/"}),
                "ERROR_UNSUPPORTED_PROTOCOL",
                "Unsupported handler protocol",
            ),
            (
                json!({"event": "OnCrmDealAdd", "handler": "http://a.example/"}),
                "ERROR_EVENT_NOT_FOUND",
                "Event not found",
            ),
        ];
        for (params, code, text) in cases {
            let a = rest(ep, t, "event.bind", params.clone()).await;
            assert_eq!(error(&a), (400, code), "{params}");
            assert_eq!(a.1["error_description"], text, "{params}");
        }
        // Without the imconnector scope the connector events do not exist for the app.
        let narrow = fake
            .add_portal({
                let mut p = b24_fake_bitrix24::PortalSpec::new("narrowscope", CLIENT_ID);
                p.scope = vec!["imopenlines".into()];
                p
            })
            .unwrap();
        let params = json!({"event": "OnImConnectorMessageAdd", "handler": "http://a.example/"});
        let a = rest(
            &narrow.client_endpoint,
            &narrow.access_token,
            "event.bind",
            params,
        )
        .await;
        assert_eq!(error(&a), (400, "ERROR_EVENT_NOT_FOUND"));
    })
    .await
}

fn delivery_params() -> Value {
    json!({
        "CONNECTOR": "myconnector",
        "LINE": 107,
        "MESSAGES": [{
            "im": {"chat_id": 323, "message_id": 85911},
            "message": {"id": ["ext-msg-1007"], "date": 1738065600},
            "chat": {"id": "channel-123"}
        }]
    })
}

#[tokio::test]
async fn delivery_status_is_recorded_with_its_messages() {
    bounded(async {
        let (fake, creds) = start().await;
        let a = rest(
            &creds.client_endpoint,
            &creds.access_token,
            "imconnector.send.status.delivery",
            delivery_params(),
        )
        .await;
        assert_eq!(a.0, 200, "{}", a.1);
        assert_eq!(a.1["result"], json!({"SUCCESS": true, "DATA": []}));

        // The same as a PHP form body, all scalars strings.
        let form = format!(
            "auth={}&CONNECTOR=myconnector&LINE=107&MESSAGES%5B0%5D%5Bim%5D%5Bchat_id%5D=1807\
             &MESSAGES%5B0%5D%5Bim%5D%5Bmessage_id%5D=86497&MESSAGES%5B0%5D%5Bmessage%5D%5Bid%5D%5B0%5D=ext-1\
             &MESSAGES%5B0%5D%5Bmessage%5D%5Bid%5D%5B1%5D=ext-2&MESSAGES%5B0%5D%5Bchat%5D%5Bid%5D=channel-123",
            creds.access_token
        );
        let a = rest_form(&creds.client_endpoint, "imconnector.send.status.delivery", form).await;
        assert_eq!(a.0, 200, "{}", a.1);

        let deliveries = fake.deliveries(MEMBER).unwrap();
        assert_eq!(deliveries.len(), 2);
        let first = &deliveries[0];
        assert_eq!((first.connector.as_str(), first.line), ("myconnector", 107));
        let m = &first.messages[0];
        assert_eq!((m.chat_id, m.message_id, m.date), (323, 85911, Some(1738065600)));
        assert_eq!((m.external_ids.clone(), m.external_chat_id.as_str()), (vec!["ext-msg-1007".to_string()], "channel-123"));
        let m = &deliveries[1].messages[0];
        assert_eq!((m.chat_id, m.message_id, m.date), (1807, 86497, None));
        assert_eq!(m.external_ids, ["ext-1", "ext-2"]);
    })
    .await
}

#[tokio::test]
async fn delivery_with_missing_or_malformed_fields_is_error_argument() {
    bounded(async {
        let (fake, creds) = start().await;
        let call = |p: Value| {
            rest(
                &creds.client_endpoint,
                &creds.access_token,
                "imconnector.send.status.delivery",
                p,
            )
        };
        let mut no_connector = delivery_params();
        no_connector.as_object_mut().unwrap().remove("CONNECTOR");
        let a = call(no_connector).await;
        assert_eq!(error(&a), (400, "ERROR_ARGUMENT"));
        assert_eq!(
            a.1["error_description"],
            "Argument 'CONNECTOR' is null or empty"
        );
        let mut empty = delivery_params();
        empty["MESSAGES"] = json!([]);
        assert_eq!(
            call(empty).await.1["error_description"],
            "Argument 'MESSAGES' is null or empty"
        );
        let mut scalar_id = delivery_params();
        scalar_id["MESSAGES"][0]["message"]["id"] = json!("ext-msg-1007");
        let a = call(scalar_id).await;
        assert_eq!(error(&a), (400, "ERROR_ARGUMENT"));
        assert!(a.1["error_description"]
            .as_str()
            .unwrap()
            .contains("MESSAGES[0][message][id]"));
        let mut bad_chat = delivery_params();
        bad_chat["MESSAGES"][0]["im"]["chat_id"] = json!("abc");
        let a = call(bad_chat).await;
        assert!(a.1["error_description"]
            .as_str()
            .unwrap()
            .contains("[im][chat_id]"));
        assert!(fake.deliveries(MEMBER).unwrap().is_empty());

        // Without the imopenlines scope: insufficient_scope.
        let narrow = fake
            .add_portal({
                let mut p = b24_fake_bitrix24::PortalSpec::new("connectoronly", CLIENT_ID);
                p.scope = vec!["imconnector".into()];
                p
            })
            .unwrap();
        let a = rest(
            &narrow.client_endpoint,
            &narrow.access_token,
            "imconnector.send.status.delivery",
            delivery_params(),
        )
        .await;
        assert_eq!(error(&a), (403, "insufficient_scope"));
    })
    .await
}

#[tokio::test]
async fn malformed_requests_get_error_answers() {
    bounded(async {
        let (fake, creds) = start_with(|c| c.max_body_bytes = 4096).await;
        let url = format!("{}app.info", creds.client_endpoint);
        let send = |body: Vec<u8>, ct: &'static str| {
            client()
                .post(url.clone())
                .header("content-type", ct)
                .body(body)
                .send()
        };
        let r = send(b"{not json".to_vec(), "application/json")
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let r = send(vec![b'a'; 5000], "application/x-www-form-urlencoded")
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 413);
        let r = send(
            vec![0xff, 0xfe, b'=', b'['],
            "application/x-www-form-urlencoded",
        )
        .await
        .unwrap();
        assert_eq!(r.status().as_u16(), 401, "garbage form: no auth");
        let deep = format!("auth={}&a{}=1", creds.access_token, "[x]".repeat(40));
        let r = send(deep.into_bytes(), "application/x-www-form-urlencoded")
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let r = client().delete(url.clone()).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 405);
        let a = get(&format!("{}/nowhere", fake.base_url())).await;
        assert_eq!(a.0, 404);
        // Still serving.
        let a = rest(
            &creds.client_endpoint,
            &creds.access_token,
            "app.info",
            Value::Null,
        )
        .await;
        assert_eq!(a.0, 200);
    })
    .await
}

//! `batch`: mixed results, halt, the 50-command limit, token failure, references, rate counting.

mod common;

use common::*;
use serde_json::{json, Value};

const DELIVERY: &str = "imconnector.send.status.delivery?CONNECTOR=myconnector&LINE=107\
    &MESSAGES[0][im][chat_id]=1807&MESSAGES[0][im][message_id]=86497\
    &MESSAGES[0][message][id][0]=ext-1&MESSAGES[0][message][date]=1738065600&MESSAGES[0][chat][id]=channel-123";

#[tokio::test]
async fn batch_returns_results_and_errors_per_command() {
    bounded(async {
        let (fake, creds) = start().await;
        let cmd = json!({
            "app": "app.info",
            "bind": "event.bind?event=OnImConnectorMessageAdd&handler=http%3A%2F%2F127.0.0.1%3A9000%2Fm",
            "bind_again": "event.bind?event=OnImConnectorMessageAdd&handler=http%3A%2F%2F127.0.0.1%3A9000%2Fm",
            "deliver": DELIVERY,
            "nope": "crm.deal.list",
            "nested": "batch?cmd[x]=app.info",
            "list": "event.get",
        });
        let (status, a) = rest(&creds.client_endpoint, &creds.access_token, "batch", json!({"halt": 0, "cmd": cmd})).await;
        assert_eq!(status, 200, "{a}");
        let r = &a["result"];
        assert_eq!(r["result"]["app"]["CODE"], CLIENT_ID);
        assert_eq!(r["result"]["bind"], true);
        assert_eq!(r["result"]["deliver"], json!({"SUCCESS": true, "DATA": []}));
        assert_eq!(r["result"]["list"].as_array().unwrap().len(), 1);
        assert_eq!(
            r["result_error"],
            json!({
                "bind_again": {"error": "ERROR_CORE", "error_description": "Unable to set event handler: Handler already binded"},
                "nope": {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"},
                "nested": {"error": "ERROR_BATCH_METHOD_NOT_ALLOWED", "error_description": "Method is not allowed for batch usage"}
            })
        );
        assert_eq!(r["result_total"], json!([]));
        assert_eq!(r["result_next"], json!([]));
        let times: Vec<&String> = r["result_time"].as_object().unwrap().keys().collect();
        assert_eq!(times, ["app", "bind", "deliver", "list"]);
        assert!(a["time"].is_object());

        let deliveries = fake.deliveries(MEMBER).unwrap();
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].batch_command.as_deref(), Some("deliver"));
        assert_eq!(deliveries[0].messages[0].external_ids, ["ext-1"]);
        // The log has the batch and each of its commands.
        let calls = fake.calls();
        assert_eq!(calls.iter().filter(|c| c.method == "batch" && c.batch_command.is_none()).count(), 1);
        assert_eq!(calls.iter().filter(|c| c.batch_command.is_some()).count(), 7);
    })
    .await
}

#[tokio::test]
async fn halt_stops_at_the_first_error() {
    bounded(async {
        let (_fake, creds) = start().await;
        let cmd = json!({"a": "app.info", "b": "no.such.method", "c": "event.get"});
        let (_, a) = rest(
            &creds.client_endpoint,
            &creds.access_token,
            "batch",
            json!({"halt": 1, "cmd": cmd}),
        )
        .await;
        let r = &a["result"];
        assert_eq!(
            r["result"].as_object().unwrap().keys().collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(
            r["result_error"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["b"]
        );
    })
    .await
}

#[tokio::test]
async fn commands_past_the_fiftieth_fail_with_error_batch_length_exceeded() {
    bounded(async {
        let (_fake, creds) = start().await;
        // As a list: keys 0…52, so the successes render as a JSON list.
        let cmd: Vec<Value> = (0..53).map(|_| json!("app.info")).collect();
        let (status, a) = rest(
            &creds.client_endpoint,
            &creds.access_token,
            "batch",
            json!({"cmd": cmd}),
        )
        .await;
        assert_eq!(status, 200);
        let r = &a["result"];
        assert_eq!(r["result"].as_array().unwrap().len(), 50);
        let errors = r["result_error"].as_object().unwrap();
        assert_eq!(errors.keys().collect::<Vec<_>>(), ["50", "51", "52"]);
        assert_eq!(errors["50"]["error"], "ERROR_BATCH_LENGTH_EXCEEDED");
        assert_eq!(
            errors["50"]["error_description"],
            "Max batch length exceeded"
        );
    })
    .await
}

#[tokio::test]
async fn an_expired_token_fails_the_whole_batch_like_a_single_call() {
    bounded(async {
        let (fake, creds) = start().await;
        fake.expire_access_tokens(MEMBER).unwrap();
        let (status, a) = rest(
            &creds.client_endpoint,
            &creds.access_token,
            "batch",
            json!({"cmd": {"a": "app.info", "d": DELIVERY}}),
        )
        .await;
        assert_eq!((status, a["error"].as_str()), (401, Some("expired_token")));
        assert!(a.get("result").is_none());
        assert!(fake.deliveries(MEMBER).unwrap().is_empty());
    })
    .await
}

#[tokio::test]
async fn batch_as_a_php_form_with_result_references() {
    bounded(async {
        let (fake, creds) = start().await;
        // cmd[name]=method?urlencoded-params, the batch itself form-encoded (double encoding).
        let bind = "event.bind?event=OnAppTest&handler=http%3A%2F%2F127.0.0.1%3A9000%2Fapp%2F$result[info][ID]";
        let form = format!(
            "auth={}&halt=0&cmd%5Binfo%5D=app.info&cmd%5Bbind%5D={}",
            creds.access_token,
            b24_fake_bitrix24::php_form::urlencode(bind)
        );
        let (status, a) = rest_form(&creds.client_endpoint, "batch", form).await;
        assert_eq!(status, 200, "{a}");
        assert_eq!(a["result"]["result"]["bind"], true, "{a}");
        assert_eq!(fake.bindings(MEMBER).unwrap()[0].handler, "http://127.0.0.1:9000/app/1");
    })
    .await
}

#[tokio::test]
async fn a_batch_is_one_request_for_the_rate_limit() {
    bounded(async {
        let (fake, creds) = start().await;
        fake.set_rate_limit(
            MEMBER,
            Some(b24_fake_bitrix24::RateLimit {
                drain_per_second: 0.0,
                capacity: 2,
            }),
        )
        .unwrap();
        let cmd: Vec<Value> = (0..50).map(|_| json!("app.info")).collect();
        let (status, _) = rest(
            &creds.client_endpoint,
            &creds.access_token,
            "batch",
            json!({"cmd": cmd}),
        )
        .await;
        assert_eq!(status, 200);
        let (status, _) = rest(
            &creds.client_endpoint,
            &creds.access_token,
            "app.info",
            Value::Null,
        )
        .await;
        assert_eq!(
            status, 200,
            "50 commands counted once, so one request is left"
        );
        let (status, a) = rest(
            &creds.client_endpoint,
            &creds.access_token,
            "app.info",
            Value::Null,
        )
        .await;
        assert_eq!(
            (status, a["error"].as_str()),
            (503, Some("QUERY_LIMIT_EXCEEDED"))
        );
    })
    .await
}

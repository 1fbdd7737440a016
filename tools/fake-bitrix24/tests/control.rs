//! The `/_fake/` endpoints, as the local dev stack uses them.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn control_endpoints_drive_a_portal_lifecycle() {
    bounded(async {
        let (fake, _creds) = start().await;
        let base = format!("{}/_fake", fake.base_url());
        assert_eq!(get(&format!("{base}/health")).await.1["ok"], true);

        let (status, _) = post_json(&format!("{base}/apps"), &json!({"client_id": "app.two", "client_secret": "s2", "status": "F"})).await;
        assert_eq!(status, 200);
        let (status, _) = post_json(&format!("{base}/apps"), &json!({"client_id": "app.two", "client_secret": "s2"})).await;
        assert_eq!(status, 409);
        let (status, creds) = post_json(&format!("{base}/portals"), &json!({"member_id": "portal3", "client_id": "app.two"})).await;
        assert_eq!(status, 200, "{creds}");
        assert_eq!(creds["client_endpoint"], Value::from(fake.client_endpoint("portal3")));
        assert_eq!(creds["status"], "F");
        assert_eq!(creds["expires_in"], 3600);
        for key in ["access_token", "refresh_token", "application_token", "server_endpoint", "domain", "scope", "expires", "user_id"] {
            assert!(creds.get(key).is_some(), "{key}");
        }
        let (status, _) = post_json(&format!("{base}/portals"), &json!({"member_id": "bad id!"})).await;
        assert_eq!(status, 400);

        let handler = Handler::start().await;
        let endpoint = creds["client_endpoint"].as_str().unwrap();
        let token = creds["access_token"].as_str().unwrap();
        rest(endpoint, token, "event.bind", json!({"event": "OnImConnectorMessageAdd", "handler": handler.url})).await;
        let (status, bindings) = get(&format!("{base}/portals/portal3/bindings")).await;
        assert_eq!(status, 200);
        assert_eq!(bindings[0]["event"], "ONIMCONNECTORMESSAGEADD");

        let (status, answers) = post_json(&format!("{base}/portals/portal3/events/OnImConnectorMessageAdd"),
            &json!({"CONNECTOR": "c", "LINE": 1})).await;
        assert_eq!(status, 200, "{answers}");
        assert_eq!(answers[0]["status"], 200);
        assert_eq!(handler.requests()[0].field("data[CONNECTOR]").as_deref(), Some("c"));

        let params = json!({"CONNECTOR": "c", "LINE": 1, "MESSAGES": [{"im": {"chat_id": 1, "message_id": 2},
            "message": {"id": ["x"], "date": 1}, "chat": {"id": "ch"}}]});
        rest(endpoint, token, "imconnector.send.status.delivery", params).await;
        let (_, deliveries) = get(&format!("{base}/portals/portal3/deliveries")).await;
        assert_eq!(deliveries[0]["messages"][0]["external_ids"], json!(["x"]));

        let (_, expired) = post_json(&format!("{base}/portals/portal3/expire-access-tokens"), &Value::Null).await;
        assert!(expired["expired"].as_u64().unwrap() >= 1);
        assert_eq!(rest(endpoint, token, "app.info", Value::Null).await.1["error"], "expired_token");
        let (_, revoked) = post_json(&format!("{base}/portals/portal3/revoke-refresh-tokens"), &Value::Null).await;
        assert_eq!(revoked["revoked"], 1);
        let (_, rotated) = post_json(&format!("{base}/portals/portal3/rotate-application-token"), &Value::Null).await;
        assert_ne!(rotated["application_token"], creds["application_token"]);

        let (status, info) = get(&format!("{base}/portals/portal3")).await;
        assert_eq!((status, info["bindings"].as_u64(), info["deliveries"].as_u64()), (200, Some(1), Some(1)));
        assert!(info.get("access_token").is_none());
        let (_, list) = get(&format!("{base}/portals")).await;
        assert_eq!(list.as_array().unwrap().len(), 3);

        let installer = Handler::start().await;
        let (status, installed) = post_json(&format!("{base}/portals/portal3/install"), &json!({"url": installer.url})).await;
        assert_eq!(status, 200, "{installed}");
        assert_eq!(installer.requests()[0].field("event").as_deref(), Some("ONAPPINSTALL"));
        let (status, _) = post_json(&format!("{base}/portals/portal3/uninstall"), &json!({"clean": false})).await;
        assert_eq!(status, 200);
        assert_eq!(get(&format!("{base}/portals/portal3")).await.1["installed"], false);

        let (_, now) = post_json(&format!("{base}/clock/advance"), &json!({"seconds": 60})).await;
        assert!(now["now"].as_f64().is_some());
        assert_eq!(get(&format!("{base}/portals/nobody/bindings")).await.0, 404);
        assert_eq!(get(&format!("{base}/nothing")).await.0, 404);

        let (status, fresh) = post_json(&format!("{base}/reset"), &Value::Null).await;
        assert_eq!(status, 200);
        assert_eq!(fresh.as_array().unwrap().len(), 2, "the two configured portals, new credentials");
        assert_eq!(get(&format!("{base}/portals")).await.1.as_array().unwrap().len(), 2);
        assert!(fake.calls().is_empty());
    })
    .await
}

//! The call log records every call with its outcome and never a token or secret.

mod common;

use b24_fake_bitrix24::CallKind;
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn call_log_records_calls_and_redacts_every_token() {
    bounded(async {
        let (fake, creds) = start().await;
        let handler = Handler::start().await;
        let ep = &creds.client_endpoint;
        rest(ep, &creds.access_token, "app.info", Value::Null).await;
        rest(
            ep,
            &creds.access_token,
            "event.bind",
            json!({"event": "OnImConnectorMessageAdd", "handler": handler.url}),
        )
        .await;
        let form = format!(
            "auth={}&x[access_token]={}",
            creds.access_token, creds.refresh_token
        );
        rest_form(ep, "event.get", form).await;
        let batch = json!({"cmd": {"a": format!("app.info?auth={}", creds.access_token)}});
        rest(ep, &creds.access_token, "batch", batch).await;
        rest(ep, "FAKETOKbogus-but-long", "app.info", Value::Null).await;
        let (_, fresh) = refresh(&fake, CLIENT_ID, SECRET, &creds.refresh_token).await;
        refresh(&fake, CLIENT_ID, SECRET, &creds.refresh_token).await;
        fake.send_event(
            MEMBER,
            "OnImConnectorMessageAdd",
            &json!({"CONNECTOR": "c"}),
        )
        .await
        .unwrap();

        let calls = fake.calls();
        let text = serde_json::to_string(&calls).unwrap();
        for secret in [
            creds.access_token.as_str(),
            creds.refresh_token.as_str(),
            creds.application_token.as_str(),
            fresh["access_token"].as_str().unwrap(),
            fresh["refresh_token"].as_str().unwrap(),
            SECRET,
        ] {
            assert!(
                !text.contains(secret),
                "{secret} leaked into the call log: {text}"
            );
        }
        assert!(!text.contains(PREFIX), "a prefixed token leaked: {text}");
        assert!(text.contains("[token]"));

        let kinds: Vec<(CallKind, &str, &str)> = calls
            .iter()
            .map(|c| (c.kind, c.method.as_str(), c.outcome.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (CallKind::Rest, "app.info", "ok"),
                (CallKind::Rest, "event.bind", "ok"),
                (CallKind::Rest, "event.get", "ok"),
                (CallKind::Rest, "app.info", "ok"),
                (CallKind::Rest, "batch", "ok"),
                (CallKind::Rest, "app.info", "invalid_token"),
                (CallKind::Oauth, "oauth/token", "ok"),
                (CallKind::Oauth, "oauth/token", "invalid_grant"),
                (CallKind::Event, "ONIMCONNECTORMESSAGEADD", "ok"),
            ]
        );
        assert!(calls.iter().all(|c| c.member_id.as_deref() == Some(MEMBER)));
        assert_eq!(calls[0].http_status, Some(200));
        assert_eq!(calls[3].batch_command.as_deref(), Some("a"));
        assert_eq!(calls[0].params, json!({"auth": "[token]"}));
        assert!(calls.windows(2).all(|w| w[0].seq < w[1].seq));

        // The same log over HTTP, filtered by portal.
        let (status, over_http) = get(&format!(
            "{}/_fake/calls?member_id={MEMBER}",
            fake.base_url()
        ))
        .await;
        assert_eq!(status, 200);
        assert_eq!(over_http.as_array().unwrap().len(), calls.len());
    })
    .await
}

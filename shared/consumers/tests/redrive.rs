//! The redrive against real servers: parked events on a moto SQS queue, delivered by the local
//! event-source runner exactly as the template's mapping is configured, applied to DynamoDB
//! Local. Committed-after-all events become duplicates, new ones apply, the ones that can never
//! authenticate are dropped (not retried forever), and a storage failure leaves the message on
//! the queue with a growing visibility timeout.

use aws_lambda_events::sqs::SqsEvent;
use b24_consumers::redrive::{self, SqsVisibility};
use b24_events::{EventKind, Secret};
use b24_fixtures::Fixture;
use b24_local::runner::{invoker_fn, InvokeOutcome, Runner, SqsSource};
use b24_pipeline::park::{sqs_client, Parker, SqsParker};
use b24_pipeline::ParkedEvent;
use b24_state::testing::{apply_trusted, fresh_store};
use b24_state::{Authorization, AwsEnv, DynamoStore, MemberId, Timeouts, TokenHash};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn env(sqs: &str) -> AwsEnv {
    let sqs = sqs.to_string();
    AwsEnv::from_lookup(move |k| match k {
        "AWS_REGION" => Some("us-east-1".into()),
        "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("test".into()),
        "AWS_ENDPOINT_URL_SQS" => Some(sqs.clone()),
        _ => None,
    })
    .unwrap()
}

fn parked(e: &b24_events::Event, token: &str, authorization: Option<Authorization>) -> ParkedEvent {
    ParkedEvent::new(
        e,
        TokenHash::of(Some(&Secret::new(token))).unwrap(),
        1_700_000_000,
        "test".into(),
        authorization,
        None,
    )
}

async fn queue(client: &aws_sdk_sqs::Client, name: &str) -> String {
    client
        .create_queue()
        .queue_name(name)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "2",
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_events_are_redriven_dropped_or_retried_through_the_runner() {
    let moto = b24_local::shared_moto_endpoint();
    let sqs = sqs_client(&env(&moto), Timeouts::BACKGROUND);
    let url = queue(&sqs, &format!("parked-{}", std::process::id())).await;
    let store = Arc::new(fresh_store().await);
    let m = "redrive-portal";
    let install = Fixture::new(EventKind::AppInstall).member(m).ts(10).event();
    apply_trusted(&*store, &install, 1, 30).await.unwrap();
    let installed = |token: &str| Authorization::Installed {
        token_hash: TokenHash::of(Some(&Secret::new(token))).unwrap(),
        epoch: 1,
    };
    let token = b24_fixtures::APP_TOKEN;

    // 1. committed at the webhook after all (a timeout): applied now → duplicate on redrive.
    let committed = Fixture::new(EventKind::MessageAdd)
        .member(m)
        .message_id(1)
        .event();
    let p1 = parked(&committed, token, Some(installed(token)));
    let ctx = b24_state::Context {
        member: MemberId::new(m).unwrap(),
        authorization: installed(token),
        received_at: p1.received_at,
        event_ttl_days: 30,
        verified_client_endpoint: None,
    };
    b24_state::Store::apply(&*store, &committed, &ctx)
        .await
        .unwrap();
    // 2. never applied, authorization known → applied.
    let fresh = Fixture::new(EventKind::MessageAdd)
        .member(m)
        .message_id(2)
        .event();
    // 3. parked unauthenticated (the portal could not be read) → authenticated now, applied.
    let unread = Fixture::new(EventKind::MessageAdd)
        .member(m)
        .message_id(3)
        .event();
    // 4. poison: an unknown portal, a wrong token, a token-changing install → dropped.
    let unknown = Fixture::new(EventKind::MessageAdd)
        .member("nobody-here")
        .message_id(4)
        .event();
    let forged = Fixture::new(EventKind::MessageAdd)
        .member(m)
        .token("forged")
        .message_id(5)
        .event();
    let takeover = Fixture::new(EventKind::AppInstall)
        .member(m)
        .token("new-token")
        .ts(99)
        .event();
    let parker = SqsParker::new(sqs.clone(), &url);
    for p in [
        p1,
        parked(&fresh, token, Some(installed(token))),
        parked(&unread, token, None),
        parked(&unknown, token, None),
        parked(&forged, "forged", None),
        parked(&takeover, "new-token", None),
    ] {
        parker.park(&p).await.unwrap();
    }
    // A message that is no parked event at all.
    sqs.send_message()
        .queue_url(&url)
        .message_body("{\"not\": \"parked\"}")
        .send()
        .await
        .unwrap();

    let reports = Arc::new(Mutex::new(Vec::new()));
    let (s, r, vis) = (
        store.clone(),
        reports.clone(),
        Arc::new(SqsVisibility::new(sqs.clone(), &url)),
    );
    let invoker = invoker_fn(move |_f, event| {
        let (s, r, vis) = (s.clone(), r.clone(), vis.clone());
        async move {
            let event: SqsEvent = serde_json::from_value(event).expect("AWS's SqsEvent shape");
            let (response, report) = redrive::handle(&*s, &*vis, event, 30).await;
            r.lock().unwrap().push(report);
            Ok(InvokeOutcome::Ok(serde_json::to_vec(&response).unwrap()))
        }
    });
    let clients = b24_local::aws::AwsClients::new(
        &b24_local::aws::AwsEnv::from_env(),
        &b24_local::aws::Endpoints {
            sqs: Some(moto.clone()),
            dynamodb: Some(b24_state::testing::endpoint()),
            streams: None,
        },
    );
    Runner::new(clients, Arc::new(invoker))
        .source(
            SqsSource::new(&url, "b24-fn-redrive")
                .batch_size(10)
                .wait_seconds(1)
                .report_batch_item_failures(true),
        )
        .run_until_idle(Duration::from_secs(3), Duration::from_secs(60))
        .await
        .unwrap();
    let total = reports
        .lock()
        .unwrap()
        .iter()
        .fold(redrive::Report::default(), |a, b| redrive::Report {
            redriven: a.redriven + b.redriven,
            duplicates: a.duplicates + b.duplicates,
            dropped: a.dropped + b.dropped,
            retried: a.retried + b.retried,
        });
    assert_eq!(
        total,
        redrive::Report {
            redriven: 3,
            duplicates: 1,
            dropped: 4,
            retried: 0
        }
    );
    let records = store
        .portal_records(&MemberId::new(m).unwrap())
        .await
        .unwrap();
    let ids: Vec<i64> = records
        .iter()
        .filter(|r| r["record_type"] == "message")
        .filter_map(|r| r["message_id"].as_i64())
        .collect();
    assert_eq!(ids, [1, 2, 3], "the poison never applied");
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let count = |k: aws_sdk_sqs::types::QueueAttributeName| {
        attrs
            .attributes()
            .and_then(|a| a.get(&k))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages),
        "0"
    );
    assert_eq!(
        count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        "0",
        "dropped messages are deleted, not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_still_down_leaves_the_message_with_a_growing_visibility_timeout() {
    let moto = b24_local::shared_moto_endpoint();
    let sqs = sqs_client(&env(&moto), Timeouts::BACKGROUND);
    let url = queue(&sqs, &format!("parked-down-{}", std::process::id())).await;
    // A store whose DynamoDB is unreachable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = DynamoStore::new(
        b24_state::testing::client_at(&format!("http://127.0.0.1:{closed}")),
        "down",
    );
    let e = Fixture::new(EventKind::MessageAdd).member("m-down").event();
    SqsParker::new(sqs.clone(), &url)
        .park(&parked(&e, b24_fixtures::APP_TOKEN, None))
        .await
        .unwrap();
    let received = sqs
        .receive_message()
        .queue_url(&url)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    let msg = &received.messages()[0];
    let event: SqsEvent = serde_json::from_value(serde_json::json!({"Records": [{
        "messageId": msg.message_id(), "receiptHandle": msg.receipt_handle(), "body": msg.body(),
        "attributes": {"ApproximateReceiveCount": "3"}, "messageAttributes": {},
        "eventSource": "aws:sqs", "awsRegion": "us-east-1"
    }]}))
    .unwrap();
    let vis = SqsVisibility::new(sqs.clone(), &url);
    let (response, report) = redrive::handle(&down, &vis, event, 30).await;
    assert_eq!(report.retried, 1);
    assert_eq!(
        response.batch_item_failures[0].item_identifier,
        msg.message_id().unwrap()
    );
    assert_eq!(redrive::backoff(3), 60);
    // Hidden for the back-off (60 s), not the queue's 2 s: not receivable now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = sqs
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert!(again.messages().is_empty(), "the visibility timeout grew");
}

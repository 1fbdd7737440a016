//! The SQS event source against moto.

use crate::support::{bounded, clients, create_queue, keys, runner, unique, FakeFunction, Reply};
use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use b24_local::aws::AwsClients;
use b24_local::runner::{FilterCriteria, SqsSource, StopReason};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// Creates the queue; its URL and ARN.
async fn queue(
    c: &AwsClients,
    name: &str,
    attrs: &[(QueueAttributeName, &str)],
) -> (String, String) {
    let url = create_queue(c, name, attrs).await;
    let arn = c
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes")
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("arn");
    (url, arn)
}

/// (visible, in flight) messages.
async fn counts(c: &AwsClients, url: &str) -> (u64, u64) {
    let a = c
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("attributes")
        .attributes
        .unwrap_or_default();
    let n = |k: QueueAttributeName| a.get(&k).and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
    (
        n(QueueAttributeName::ApproximateNumberOfMessages),
        n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

async fn send(c: &AwsClients, url: &str, body: &str) -> String {
    c.sqs
        .send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .expect("send")
        .message_id
        .expect("id")
}

/// The bodies of `records`.
fn bodies(records: &[Value]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r["body"].as_str().expect("body"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_event_has_every_field_lambda_sends() {
    bounded(60, async {
        let c = clients();
        let (url, arn) = queue(&c, &unique("evt"), &[]).await;
        let sent = c
            .sqs
            .send_message()
            .queue_url(&url)
            .message_body("hello")
            .message_attributes(
                "str",
                MessageAttributeValue::builder().data_type("String").string_value("v").build().expect("attr"),
            )
            .message_attributes(
                "num",
                MessageAttributeValue::builder().data_type("Number").string_value("42").build().expect("attr"),
            )
            .message_attributes(
                "bin",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(b"1100".to_vec()))
                    .build()
                    .expect("attr"),
            )
            .send()
            .await
            .expect("send");
        let f = FakeFunction::start(|_, _| Reply::Ok(json!({}))).await;
        let report = runner(&c, &f, SqsSource::new(&url, "fn-sqs").wait_seconds(1))
            .run_until_idle(Duration::from_millis(1500), Duration::from_secs(30))
            .await
            .expect("run");
        assert_eq!(report.stop, StopReason::Idle);
        let calls = f.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].function, "fn-sqs");
        assert_eq!(keys(&calls[0].event), ["Records"]);
        let records = f.batches().remove(0);
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(
            keys(r),
            [
                "messageId", "receiptHandle", "body", "attributes", "messageAttributes",
                "md5OfMessageAttributes", "md5OfBody", "eventSource", "eventSourceARN", "awsRegion"
            ]
        );
        assert_eq!(r["messageId"], json!(sent.message_id.clone().expect("id")));
        assert!(!r["receiptHandle"].as_str().expect("handle").is_empty());
        assert_eq!(r["body"], "hello");
        assert_eq!(
            keys(&r["attributes"]),
            ["ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"]
        );
        assert_eq!(r["attributes"]["ApproximateReceiveCount"], "1");
        for k in ["SentTimestamp", "ApproximateFirstReceiveTimestamp"] {
            let ms: u64 = r["attributes"][k].as_str().expect(k).parse().expect("epoch ms");
            assert!(ms > 1_700_000_000_000, "{k} {ms}");
        }
        assert!(!r["attributes"]["SenderId"].as_str().expect("sender").is_empty());
        assert_eq!(
            r["messageAttributes"],
            json!({
                "bin": {"binaryValue": "MTEwMA==", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
                "num": {"stringValue": "42", "stringListValues": [], "binaryListValues": [], "dataType": "Number"},
                "str": {"stringValue": "v", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
            })
        );
        assert_eq!(r["md5OfBody"], json!(sent.md5_of_message_body.expect("md5")));
        assert_eq!(r["md5OfBody"], "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(r["md5OfMessageAttributes"], json!(sent.md5_of_message_attributes.expect("md5")));
        assert_eq!(r["eventSource"], "aws:sqs");
        assert_eq!(r["eventSourceARN"], json!(arn));
        assert_eq!(r["awsRegion"], "us-east-1");
        // What a Rust handler reads with aws_lambda_events.
        let ev: aws_lambda_events::event::sqs::SqsEvent =
            serde_json::from_value(calls[0].event.clone()).expect("SqsEvent");
        let m = &ev.records[0];
        assert_eq!(m.body.as_deref(), Some("hello"));
        assert_eq!(m.event_source_arn.as_deref(), Some(arn.as_str()));
        assert_eq!(m.attributes.get("ApproximateReceiveCount").map(String::as_str), Some("1"));
        assert_eq!(m.message_attributes["num"].string_value.as_deref(), Some("42"));
        // Success deletes the message.
        assert_eq!(counts(&c, &url).await, (0, 0));
        assert_eq!(report.sources[0].deleted, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_fifo_event_has_group_dedup_and_sequence() {
    bounded(60, async {
        let c = clients();
        let (url, _) = queue(
            &c,
            &format!("{}.fifo", unique("fifo")),
            &[(QueueAttributeName::FifoQueue, "true")],
        )
        .await;
        for (body, dedup) in [("first", "d1"), ("second", "d2")] {
            c.sqs
                .send_message()
                .queue_url(&url)
                .message_body(body)
                .message_group_id("g1")
                .message_deduplication_id(dedup)
                .send()
                .await
                .expect("send");
        }
        let f = FakeFunction::start(|_, _| Reply::Ok(Value::Null)).await;
        runner(&c, &f, SqsSource::new(&url, "fn-fifo").wait_seconds(1))
            .run_until_idle(Duration::from_millis(1500), Duration::from_secs(30))
            .await
            .expect("run");
        let records = f.records();
        assert_eq!(bodies(&records), ["first", "second"]);
        for (r, dedup) in records.iter().zip(["d1", "d2"]) {
            assert_eq!(
                keys(&r["attributes"]),
                [
                    "ApproximateReceiveCount",
                    "SentTimestamp",
                    "SequenceNumber",
                    "MessageGroupId",
                    "SenderId",
                    "MessageDeduplicationId",
                    "ApproximateFirstReceiveTimestamp"
                ]
            );
            assert_eq!(r["attributes"]["MessageGroupId"], "g1");
            assert_eq!(r["attributes"]["MessageDeduplicationId"], dedup);
            assert!(r["attributes"]["SequenceNumber"]
                .as_str()
                .expect("seq")
                .parse::<u128>()
                .is_ok());
            assert!(r.get("md5OfMessageAttributes").is_none());
            assert_eq!(r["messageAttributes"], json!({}));
        }
        assert_eq!(counts(&c, &url).await, (0, 0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_partial_batch_failure_deletes_only_successes() {
    bounded(60, async {
        let c = clients();
        let (url, _) = queue(
            &c,
            &unique("partial"),
            &[(QueueAttributeName::VisibilityTimeout, "1")],
        )
        .await;
        let mut ids = HashMap::new();
        for b in ["a", "b", "c"] {
            ids.insert(b, send(&c, &url, b).await);
        }
        // "b" fails on its first delivery only.
        let f = FakeFunction::start(|ev, _| {
            let failures: Vec<Value> = ev["Records"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["body"] == "b" && r["attributes"]["ApproximateReceiveCount"] == "1")
                .map(|r| json!({"itemIdentifier": r["messageId"]}))
                .collect();
            Reply::Ok(json!({ "batchItemFailures": failures }))
        })
        .await;
        let report = runner(
            &c,
            &f,
            SqsSource::new(&url, "fn-partial")
                .wait_seconds(1)
                .report_batch_item_failures(true),
        )
        .run_until_idle(Duration::from_millis(3000), Duration::from_secs(40))
        .await
        .expect("run");
        let batches = f.batches();
        assert_eq!(batches.len(), 2, "{batches:?}");
        let mut sorted = bodies(&batches[0]);
        sorted.sort();
        assert_eq!(sorted, ["a", "b", "c"]);
        // Only the failed message came back, after the queue's 1 s visibility timeout.
        assert_eq!(batches[1].len(), 1);
        assert_eq!(batches[1][0]["body"], "b");
        assert_eq!(batches[1][0]["messageId"], json!(ids["b"]));
        assert_eq!(batches[1][0]["attributes"]["ApproximateReceiveCount"], "2");
        assert_eq!(counts(&c, &url).await, (0, 0));
        let s = &report.sources[0];
        assert_eq!((s.invocations, s.item_failures, s.deleted), (2, 1, 3));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_function_error_deletes_nothing_and_leaves_visibility_alone() {
    bounded(60, async {
        let c = clients();
        let (url, _) = queue(
            &c,
            &unique("fnerr"),
            &[(QueueAttributeName::VisibilityTimeout, "4")],
        )
        .await;
        send(&c, &url, "x").await;
        send(&c, &url, "y").await;
        let f = FakeFunction::start(|_, _| Reply::Error("Boom")).await;
        let report = runner(&c, &f, SqsSource::new(&url, "fn-err").wait_seconds(1))
            .run_until_idle(Duration::from_millis(1000), Duration::from_secs(30))
            .await
            .expect("run");
        assert_eq!(f.calls().len(), 1);
        assert_eq!(report.sources[0].function_errors, 1);
        assert_eq!(report.sources[0].deleted, 0);
        // Still in flight: the runner did not make them visible again.
        assert_eq!(counts(&c, &url).await, (0, 2));
        // They come back once the queue's visibility timeout has passed.
        let mut back = Vec::new();
        for _ in 0..10 {
            let out = c
                .sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send()
                .await
                .expect("receive");
            back.extend(out.messages.unwrap_or_default());
            if back.len() == 2 {
                break;
            }
        }
        assert_eq!(back.len(), 2);
        for m in back {
            let n = m.attributes.and_then(|a| {
                a.get(&MessageSystemAttributeName::ApproximateReceiveCount)
                    .cloned()
            });
            assert_eq!(n.as_deref(), Some("2"));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_invalid_batch_response_fails_the_whole_batch() {
    bounded(60, async {
        let c = clients();
        let (url, _) = queue(
            &c,
            &unique("invalid"),
            &[(QueueAttributeName::VisibilityTimeout, "30")],
        )
        .await;
        send(&c, &url, "m1").await;
        send(&c, &url, "m2").await;
        let f = FakeFunction::start(|_, _| {
            Reply::Ok(json!({"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]}))
        })
        .await;
        let report = runner(
            &c,
            &f,
            SqsSource::new(&url, "fn-inv")
                .wait_seconds(1)
                .report_batch_item_failures(true),
        )
        .run_until_idle(Duration::from_millis(1000), Duration::from_secs(30))
        .await
        .expect("run");
        assert_eq!(report.sources[0].deleted, 0);
        assert_eq!(report.sources[0].function_errors, 1);
        assert_eq!(counts(&c, &url).await, (0, 2));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_filters_delete_non_matching_messages() {
    bounded(60, async {
        let c = clients();
        let (url, _) = queue(&c, &unique("filter"), &[]).await;
        send(&c, &url, r#"{"kind":"job","n":3}"#).await;
        send(&c, &url, r#"{"kind":"other"}"#).await;
        send(&c, &url, "plain text").await;
        let f = FakeFunction::start(|_, _| Reply::Ok(json!({}))).await;
        let filters =
            FilterCriteria::from_strs(&[r#"{"body":{"kind":["job"],"n":[{"numeric":[">",1]}]}}"#])
                .expect("filter");
        let report = runner(
            &c,
            &f,
            SqsSource::new(&url, "fn-filter")
                .wait_seconds(1)
                .filters(filters),
        )
        .run_until_idle(Duration::from_millis(1500), Duration::from_secs(30))
        .await
        .expect("run");
        let records = f.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["body"], r#"{"kind":"job","n":3}"#);
        let s = &report.sources[0];
        assert_eq!(
            (s.records_received, s.records_filtered, s.deleted),
            (3, 2, 3)
        );
        assert_eq!(counts(&c, &url).await, (0, 0));
    })
    .await;
}

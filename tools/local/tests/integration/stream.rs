//! The DynamoDB Streams event source against DynamoDB Local (on-failure queue on moto).

use crate::support::{
    self, bounded, clients, create_queue, create_table, keys, shape, unique, FakeFunction, Reply,
};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue as Av, StreamViewType};
use b24_local::aws::AwsClients;
use b24_local::runner::{
    invoker_fn, FilterCriteria, InvokeOutcome, RunReport, Runner, StartingPosition, StopReason,
    StreamSource,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A table with `pk`/`sk` string keys and a NEW_AND_OLD_IMAGES stream; returns the stream ARN.
async fn table(c: &AwsClients, name: &str) -> String {
    create_table(
        &c.dynamodb,
        name,
        &["pk", "sk"],
        Some(StreamViewType::NewAndOldImages),
    )
    .await
    .expect("stream arn")
}

fn s(v: &str) -> Av {
    Av::S(v.into())
}

async fn put(c: &AwsClients, t: &str, item: Vec<(&str, Av)>) {
    let item: HashMap<String, Av> = item.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    c.dynamodb
        .put_item()
        .table_name(t)
        .set_item(Some(item))
        .send()
        .await
        .expect("put");
}

async fn put_n(
    c: &AwsClients,
    t: &str,
    n: usize,
    extra: impl Fn(usize) -> Vec<(&'static str, Av)>,
) {
    for i in 0..n {
        let mut item = vec![("pk", s("p")), ("sk", s(&format!("r{i}")))];
        item.extend(extra(i));
        put(c, t, item).await;
    }
}

fn runner(c: &AwsClients, f: &FakeFunction, src: StreamSource) -> Runner {
    support::runner(c, f, src.poll_interval(Duration::from_millis(100)))
}

const IDLE: Duration = Duration::from_millis(1200);
const MAX: Duration = Duration::from_secs(40);

/// Runs `src` against `f` until idle.
async fn run(c: &AwsClients, f: &FakeFunction, src: StreamSource) -> RunReport {
    runner(c, f, src)
        .run_until_idle(IDLE, MAX)
        .await
        .expect("run")
}

fn sk_of(r: &Value) -> String {
    let d = &r["dynamodb"];
    let img = if d.get("NewImage").is_some() {
        &d["NewImage"]
    } else {
        &d["Keys"]
    };
    img["sk"]["S"].as_str().unwrap_or_default().to_string()
}

/// AWS's documented example record (Lambda developer guide, "Using AWS Lambda with Amazon
/// DynamoDB"), INSERT and MODIFY.
fn documented_example() -> Value {
    json!({"Records": [
        {"eventID": "1", "eventVersion": "1.0",
         "dynamodb": {"Keys": {"Id": {"N": "101"}}, "NewImage": {"Message": {"S": "New item!"}, "Id": {"N": "101"}},
                      "StreamViewType": "NEW_AND_OLD_IMAGES", "SequenceNumber": "111", "SizeBytes": 26},
         "awsRegion": "us-west-2", "eventName": "INSERT",
         "eventSourceARN": "arn:aws:dynamodb:us-east-2:123456789012:table/my-table/stream/2024-06-10T19:26:16.525",
         "eventSource": "aws:dynamodb"},
        {"eventID": "2", "eventVersion": "1.0",
         "dynamodb": {"OldImage": {"Message": {"S": "New item!"}, "Id": {"N": "101"}}, "SequenceNumber": "222",
                      "Keys": {"Id": {"N": "101"}}, "SizeBytes": 59,
                      "NewImage": {"Message": {"S": "This item has changed"}, "Id": {"N": "101"}},
                      "StreamViewType": "NEW_AND_OLD_IMAGES"},
         "awsRegion": "us-west-2", "eventName": "MODIFY",
         "eventSourceARN": "arn:aws:dynamodb:us-east-2:123456789012:table/my-table/stream/2024-06-10T19:26:16.525",
         "eventSource": "aws:dynamodb"}
    ]})
}

/// The `sk` of every record, batch by batch.
fn sks(f: &FakeFunction) -> Vec<Vec<String>> {
    f.batches()
        .iter()
        .map(|b| b.iter().map(sk_of).collect())
        .collect()
}

/// (`eventName`, `sk`) of each record.
fn events(recs: &[Value]) -> Vec<(String, String)> {
    recs.iter()
        .map(|r| {
            (
                r["eventName"].as_str().unwrap_or_default().to_string(),
                sk_of(r),
            )
        })
        .collect()
}

/// `pairs` as owned strings, to compare with [`events`].
fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The on-failure records in `dlq` (one ReceiveMessage of at most `max`).
async fn on_failure_records(c: &AwsClients, dlq: &str, max: i32) -> Vec<Value> {
    c.sqs
        .receive_message()
        .queue_url(dlq)
        .max_number_of_messages(max)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default()
        .iter()
        .map(|m| serde_json::from_str(m.body.as_deref().expect("body")).expect("json"))
        .collect()
}

/// The key set of `v` and of its `dynamodb` object, sorted.
fn key_sets(v: &Value) -> (Vec<String>, Vec<String>) {
    let mut a = keys(v);
    let mut b = keys(&v["dynamodb"]);
    a.sort();
    b.sort();
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_event_shape_for_insert_modify_remove() {
    bounded(60, async {
        let c = clients();
        let t = unique("shape");
        let arn = table(&c, &t).await;
        put(
            &c,
            &t,
            vec![
                ("pk", s("p1")),
                ("sk", s("s1")),
                ("s", s("x")),
                ("n", Av::N("1".into())),
                ("b", Av::B(Blob::new(vec![0, 1, 42, 65]))),
                ("t", Av::Bool(true)),
                ("z", Av::Null(true)),
                ("m", Av::M(HashMap::from([("k".to_string(), s("v"))]))),
                ("l", Av::L(vec![Av::N("2".into()), s("a")])),
                ("ss", Av::Ss(vec!["a".into(), "b".into()])),
                ("ns", Av::Ns(vec!["1".into(), "2".into()])),
                ("bs", Av::Bs(vec![Blob::new(vec![65, 42, 1, 0])])),
            ],
        )
        .await;
        c.dynamodb
            .update_item()
            .table_name(&t)
            .key("pk", s("p1"))
            .key("sk", s("s1"))
            .update_expression("SET s = :v")
            .expression_attribute_values(":v", s("y"))
            .send()
            .await
            .expect("update");
        c.dynamodb.delete_item().table_name(&t).key("pk", s("p1")).key("sk", s("s1")).send().await.expect("delete");

        let f = FakeFunction::start(|_, _| Reply::Ok(Value::Null)).await;
        let report = run(&c, &f, StreamSource::table(&t, "fn-shape")).await;
        assert_eq!(report.stop, StopReason::Idle);
        let calls = f.calls();
        assert_eq!(calls.len(), 1, "one batch of three");
        let recs = calls[0].event["Records"].as_array().expect("records").clone();
        let names: Vec<&str> = recs.iter().map(|r| r["eventName"].as_str().expect("name")).collect();
        assert_eq!(names, ["INSERT", "MODIFY", "REMOVE"]);
        let new_image = json!({
            "b": {"B": "AAEqQQ=="}, "bs": {"BS": ["QSoBAA=="]}, "l": {"L": [{"N": "2"}, {"S": "a"}]},
            "m": {"M": {"k": {"S": "v"}}}, "n": {"N": "1"}, "ns": {"NS": ["1", "2"]}, "pk": {"S": "p1"},
            "s": {"S": "x"}, "sk": {"S": "s1"}, "ss": {"SS": ["a", "b"]}, "t": {"BOOL": true}, "z": {"NULL": true}
        });
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("now").as_secs() as i64;
        let mut last_seq = 0u128;
        for r in &recs {
            assert_eq!(
                keys(r),
                ["eventID", "eventName", "eventVersion", "eventSource", "awsRegion", "dynamodb", "eventSourceARN"]
            );
            assert!(!r["eventID"].as_str().expect("id").is_empty());
            assert_eq!(r["eventVersion"], "1.1");
            assert_eq!(r["eventSource"], "aws:dynamodb");
            assert!(!r["awsRegion"].as_str().expect("region").is_empty());
            assert_eq!(r["eventSourceARN"], json!(arn));
            let d = &r["dynamodb"];
            let t = d["ApproximateCreationDateTime"].as_i64().expect("epoch seconds as an integer");
            assert!((now - 180..=now + 5).contains(&t), "{t} vs {now}");
            assert_eq!(d["Keys"], json!({"pk": {"S": "p1"}, "sk": {"S": "s1"}}));
            let seq: u128 = d["SequenceNumber"].as_str().expect("seq").parse().expect("numeric seq");
            assert!(seq > last_seq);
            last_seq = seq;
            assert!(d["SizeBytes"].as_u64().expect("size") > 0);
            assert_eq!(d["StreamViewType"], "NEW_AND_OLD_IMAGES");
        }
        let dk = |r: &Value| keys(&r["dynamodb"]);
        let base = ["ApproximateCreationDateTime", "Keys"];
        let tail = ["SequenceNumber", "SizeBytes", "StreamViewType"];
        let with = |mid: &[&str]| -> Vec<String> { base.iter().chain(mid).chain(&tail).map(|s| s.to_string()).collect() };
        assert_eq!(dk(&recs[0]), with(&["NewImage"]));
        assert_eq!(dk(&recs[1]), with(&["NewImage", "OldImage"]));
        assert_eq!(dk(&recs[2]), with(&["OldImage"]));
        assert_eq!(recs[0]["dynamodb"]["NewImage"], new_image);
        assert_eq!(recs[1]["dynamodb"]["OldImage"], new_image);
        assert_eq!(recs[1]["dynamodb"]["NewImage"]["s"], json!({"S": "y"}));
        assert_eq!(recs[2]["dynamodb"]["OldImage"]["s"], json!({"S": "y"}));

        // Same keys as AWS's documented records, plus ApproximateCreationDateTime (which real
        // events carry; the documented example leaves it out).
        let doc = documented_example();
        for (ours, theirs) in recs.iter().zip(doc["Records"].as_array().expect("doc")) {
            let (top, dyn_) = key_sets(ours);
            let (dtop, mut ddyn) = key_sets(theirs);
            assert_eq!(top, dtop);
            ddyn.insert(0, "ApproximateCreationDateTime".into());
            assert_eq!(dyn_, ddyn);
            assert_eq!(shape(&ours["dynamodb"]["SizeBytes"]), shape(&theirs["dynamodb"]["SizeBytes"]));
            assert_eq!(shape(&ours["dynamodb"]["SequenceNumber"]), shape(&theirs["dynamodb"]["SequenceNumber"]));
        }
        // What a Rust handler reads with aws_lambda_events.
        let ev: aws_lambda_events::event::dynamodb::Event =
            serde_json::from_value(calls[0].event.clone()).expect("DynamoDB Event");
        assert_eq!(ev.records.len(), 3);
        assert_eq!(ev.records[1].event_name, "MODIFY");
        assert_eq!(ev.records[2].change.size_bytes, recs[2]["dynamodb"]["SizeBytes"].as_i64().expect("size"));
        assert_eq!(ev.records[0].event_source_arn.as_deref(), Some(arn.as_str()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_filters_drop_non_matching_records() {
    bounded(60, async {
        let c = clients();
        let t = unique("filter");
        table(&c, &t).await;
        let item = |sk: &str, kind: &str, extra: Vec<(&'static str, Av)>| {
            let mut v = vec![("pk", s("p")), ("sk", s(sk)), ("record_type", s(kind))];
            v.extend(extra);
            v
        };
        put(&c, &t, item("m1", "message", vec![])).await; // 1 INSERT message: P1
        put(&c, &t, item("s1", "session", vec![("flag", Av::Bool(true))])).await; // 2 no
        put(&c, &t, item("vip#1", "session", vec![("n", Av::N("11".into()))])).await; // 3 P2
        put(&c, &t, item("vip#2", "session", vec![("n", Av::N("5".into()))])).await; // 4 no (n <= 10)
        put(&c, &t, item("m1", "message", vec![("text", s("edited"))])).await; // 5 MODIFY: no
        let del = |sk: &'static str| c.dynamodb.delete_item().table_name(&t).key("pk", s("p")).key("sk", s(sk)).send();
        del("s1").await.expect("delete"); // 6 REMOVE of a flagged non-message: P3
        del("m1").await.expect("delete"); // 7 REMOVE of a message: no
        let filters = FilterCriteria::from_json(&json!([
            {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"record_type": {"S": ["message"]}}}},
            "{\"dynamodb\":{\"NewImage\":{\"sk\":{\"S\":[{\"prefix\":\"vip#\"}]},\"n\":{\"N\":[{\"numeric\":[\">\",10]}]}}}}",
            {"Pattern": "{\"eventName\":[\"REMOVE\"],\"dynamodb\":{\"OldImage\":{\"record_type\":{\"S\":[{\"anything-but\":[\"message\"]}]},\"flag\":{\"BOOL\":[{\"exists\":true}]}}}}"}
        ]))
        .expect("filters");
        let f = FakeFunction::start(|_, _| Reply::Ok(json!({}))).await;
        let report = run(&c, &f, StreamSource::table(&t, "fn-filter").filters(filters)).await;
        let got = events(&f.records());
        let want = owned(&[("INSERT", "m1"), ("INSERT", "vip#1"), ("REMOVE", "s1")]);
        assert_eq!(got, want);
        let s = &report.sources[0];
        assert_eq!((s.records_received, s.records_filtered), (7, 4));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_partial_failure_is_retried_from_the_failed_sequence_number() {
    bounded(60, async {
        let c = clients();
        let t = unique("partial");
        table(&c, &t).await;
        put_n(&c, &t, 5, |_| vec![]).await;
        // The first call reports r4 and r2 as failed: the retry starts at r2.
        let f = FakeFunction::start(|ev, i| {
            let seq_of = |sk: &str| {
                ev["Records"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|r| r["dynamodb"]["Keys"]["sk"]["S"] == sk)
                    .map(|r| r["dynamodb"]["SequenceNumber"].clone())
            };
            if i == 0 {
                Reply::Ok(json!({"batchItemFailures": [{"itemIdentifier": seq_of("r4")}, {"itemIdentifier": seq_of("r2")}]}))
            } else {
                Reply::Ok(json!({"batchItemFailures": []}))
            }
        })
        .await;
        let report = run(&c, &f, StreamSource::table(&t, "fn-partial").report_batch_item_failures(true)).await;
        let batches = sks(&f);
        assert_eq!(batches, [vec!["r0", "r1", "r2", "r3", "r4"], vec!["r2", "r3", "r4"]]);
        let s = &report.sources[0];
        assert_eq!((s.invocations, s.item_failures, s.discarded), (2, 2, 0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_bisect_and_bounded_retries_end_in_an_on_failure_record() {
    bounded(60, async {
        let c = clients();
        let t = unique("bisect");
        let arn = table(&c, &t).await;
        let dlq = create_queue(&c, &unique("onfail"), &[]).await;
        put_n(&c, &t, 4, |i| if i == 2 { vec![("poison", Av::Bool(true))] } else { vec![] }).await;
        let f = FakeFunction::start(|ev, _| {
            let poisoned = ev["Records"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["dynamodb"]["NewImage"].get("poison").is_some());
            if poisoned { Reply::Error("Poison") } else { Reply::Ok(json!({})) }
        })
        .await;
        let report = run(
            &c,
            &f,
            StreamSource::table(&t, "fn-bisect").bisect(true).max_retries(Some(1)).on_failure_queue_url(&dlq),
        )
        .await;
        let batches = sks(&f);
        assert_eq!(
            batches,
            [
                vec!["r0", "r1", "r2", "r3"], // fails: bisect
                vec!["r0", "r1"],             // ok
                vec!["r2", "r3"],             // fails: bisect
                vec!["r2"],                   // fails: retry 1 of 1
                vec!["r2"],                   // fails: retries exhausted -> on-failure
                vec!["r3"],                   // ok
            ]
        );
        let s = &report.sources[0];
        assert_eq!((s.invocations, s.function_errors, s.discarded, s.on_failure_sent), (6, 4, 1, 1));

        let mut msgs = on_failure_records(&c, &dlq, 10).await;
        assert_eq!(msgs.len(), 1);
        let rec = msgs.remove(0);
        let r2 = f.batches()[3][0].clone();
        let seq = r2["dynamodb"]["SequenceNumber"].clone();
        let shard = c
            .streams
            .describe_stream()
            .stream_arn(&arn)
            .send()
            .await
            .expect("describe")
            .stream_description
            .and_then(|d| d.shards)
            .and_then(|s| s.into_iter().next())
            .and_then(|s| s.shard_id)
            .expect("shard");
        assert_eq!(keys(&rec), ["requestContext", "responseContext", "version", "timestamp", "DDBStreamBatchInfo"]);
        let rc = &rec["requestContext"];
        assert_eq!(keys(rc), ["requestId", "functionArn", "condition", "approximateInvokeCount"]);
        assert_eq!(rc["requestId"].as_str().expect("id").len(), 36);
        assert_eq!(rc["functionArn"], "arn:aws:lambda:us-east-1:000000000000:function:fn-bisect");
        assert_eq!(rc["condition"], "RetryAttemptsExhausted");
        assert_eq!(rc["approximateInvokeCount"], 2);
        assert_eq!(rec["responseContext"], json!({"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}));
        assert_eq!(rec["version"], "1.0");
        let ts = rec["timestamp"].as_str().expect("timestamp");
        assert!(ts.len() == 24 && ts.ends_with('Z') && &ts[19..20] == ".", "{ts}");
        let info = &rec["DDBStreamBatchInfo"];
        assert_eq!(info["shardId"], json!(shard));
        assert_eq!(info["startSequenceNumber"], seq);
        assert_eq!(info["endSequenceNumber"], seq);
        assert_eq!(info["batchSize"], 1);
        assert_eq!(info["streamArn"], json!(arn));
        for k in ["approximateArrivalOfFirstRecord", "approximateArrivalOfLastRecord"] {
            let v = info[k].as_str().expect(k);
            assert!(v.len() == 20 && v.ends_with('Z'), "{k} {v}");
        }
        // Exactly the shape of AWS's documented invocation record for stream sources.
        let documented = json!({
            "requestContext": {"requestId": "316aa6d0-8154-xmpl-9af7-85d5f4a6bc81",
                "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:myfunction",
                "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 1},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": "2019-11-14T00:13:49.717Z",
            "DDBStreamBatchInfo": {"shardId": "shardId-00000001573689847184-864758bb",
                "startSequenceNumber": "800000000003126276362", "endSequenceNumber": "800000000003126276362",
                "approximateArrivalOfFirstRecord": "2019-11-14T00:13:19Z",
                "approximateArrivalOfLastRecord": "2019-11-14T00:13:19Z",
                "batchSize": 1,
                "streamArn": "arn:aws:dynamodb:us-east-2:123456789012:table/mytable/stream/2019-10-29T21:50:10.467"}
        });
        assert_eq!(shape(&rec), shape(&documented));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_records_older_than_the_maximum_age_go_to_the_destination() {
    bounded(60, async {
        let c = clients();
        let t = unique("age");
        table(&c, &t).await;
        let dlq = create_queue(&c, &unique("aged"), &[]).await;
        put_n(&c, &t, 3, |_| vec![]).await;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let f = FakeFunction::start(|_, _| Reply::Ok(json!({}))).await;
        let report = run(
            &c,
            &f,
            StreamSource::table(&t, "fn-age")
                .max_record_age(Some(Duration::from_secs(1)))
                .on_failure_queue_url(&dlq),
        )
        .await;
        assert!(f.calls().is_empty());
        assert_eq!(report.sources[0].discarded, 3);
        // At most 1: ReceiveMessage's default.
        let mut msgs = on_failure_records(&c, &dlq, 1).await;
        assert_eq!(msgs.len(), 1);
        let rec = msgs.remove(0);
        assert_eq!(rec["requestContext"]["condition"], "RecordAgeExceeded");
        assert_eq!(rec["requestContext"]["approximateInvokeCount"], 0);
        assert!(rec.get("responseContext").is_none());
        assert_eq!(rec["DDBStreamBatchInfo"]["batchSize"], 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_latest_skips_older_records_trim_horizon_reads_them() {
    bounded(60, async {
        let c = clients();
        let t = unique("pos");
        table(&c, &t).await;
        put(&c, &t, vec![("pk", s("p")), ("sk", s("old0"))]).await;
        put(&c, &t, vec![("pk", s("p")), ("sk", s("old1"))]).await;
        let latest = FakeFunction::start(|_, _| Reply::Ok(json!({}))).await;
        let handle = runner(
            &c,
            &latest,
            StreamSource::table(&t, "fn-latest").starting_position(StartingPosition::Latest),
        )
        .start()
        .await
        .expect("start");
        put(&c, &t, vec![("pk", s("p")), ("sk", s("new0"))]).await;
        let report = handle.until_idle(IDLE, MAX).await;
        assert_eq!(report.stop, StopReason::Idle);
        let got: Vec<String> = latest.records().iter().map(sk_of).collect();
        assert_eq!(got, ["new0"]);

        let trim = FakeFunction::start(|_, _| Reply::Ok(json!({}))).await;
        run(
            &c,
            &trim,
            StreamSource::table(&t, "fn-trim").starting_position(StartingPosition::TrimHorizon),
        )
        .await;
        let got: Vec<String> = trim.records().iter().map(sk_of).collect();
        assert_eq!(got, ["old0", "old1", "new0"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_file_resumes_after_what_an_earlier_run_processed() {
    bounded(90, async {
        let c = clients();
        let t = unique("ckpt");
        table(&c, &t).await;
        let dir = std::env::temp_dir().join(format!("b24-ckpt-{}", unique("d")));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("positions.json");
        put(&c, &t, vec![("pk", s("p")), ("sk", s("a"))]).await;
        let src = || {
            let mut s = StreamSource::table(&t, "fn-ckpt");
            s.checkpoint_file = Some(file.clone());
            s
        };
        let first = FakeFunction::start(|_, _| Reply::Ok(json!({}))).await;
        run(&c, &first, src()).await;
        assert_eq!(first.records().iter().map(sk_of).collect::<Vec<_>>(), ["a"]);
        assert!(file.exists(), "positions written");
        // A restarted runner sees only what came after.
        put(&c, &t, vec![("pk", s("p")), ("sk", s("b"))]).await;
        let second = FakeFunction::start(|_, _| Reply::Ok(json!({}))).await;
        run(&c, &second, src()).await;
        assert_eq!(
            second.records().iter().map(sk_of).collect::<Vec<_>>(),
            ["b"]
        );
        // Positions of another stream (another table) are ignored: TRIM_HORIZON.
        let other = unique("ckpt2");
        table(&c, &other).await;
        put(&c, &other, vec![("pk", s("p")), ("sk", s("x"))]).await;
        let third = FakeFunction::start(|_, _| Reply::Ok(json!({}))).await;
        let mut s3 = StreamSource::table(&other, "fn-ckpt");
        s3.checkpoint_file = Some(file.clone());
        run(&c, &third, s3).await;
        assert_eq!(third.records().iter().map(sk_of).collect::<Vec<_>>(), ["x"]);
        // A corrupt file is ignored too.
        std::fs::write(&file, b"{not json").unwrap();
        let fourth = FakeFunction::start(|_, _| Reply::Ok(json!({}))).await;
        let mut s4 = StreamSource::table(&t, "fn-ckpt");
        s4.checkpoint_file = Some(file.clone());
        run(&c, &fourth, s4).await;
        assert_eq!(
            fourth.records().iter().map(sk_of).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_batches_respect_the_batch_size() {
    bounded(60, async {
        let c = clients();
        let t = unique("size");
        table(&c, &t).await;
        put_n(&c, &t, 7, |_| vec![]).await;
        let f = FakeFunction::start(|_, _| Reply::Ok(json!({}))).await;
        run(&c, &f, StreamSource::table(&t, "fn-size").batch_size(3)).await;
        let sizes: Vec<usize> = f.batches().iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 3, 1]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_invoke_errors_are_retried_without_using_retry_attempts() {
    bounded(60, async {
        let c = clients();
        let t = unique("throttle");
        table(&c, &t).await;
        put_n(&c, &t, 2, |_| vec![]).await;
        // Throttled twice (429: not invoked), then fine: nothing is given up on even with
        // MaximumRetryAttempts 0.
        let f = FakeFunction::start(|_, i| {
            if i < 2 {
                Reply::Status(429)
            } else {
                Reply::Ok(json!({}))
            }
        })
        .await;
        let report = run(
            &c,
            &f,
            StreamSource::table(&t, "fn-throttle").max_retries(Some(0)),
        )
        .await;
        let s = &report.sources[0];
        assert_eq!((s.invoke_errors, s.invocations, s.discarded), (2, 1, 0));
        assert_eq!(f.calls().len(), 3);
        assert_eq!(f.batches()[2].len(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_source_with_an_in_process_invoker() {
    bounded(60, async {
        let c = clients();
        let t = unique("inproc");
        table(&c, &t).await;
        put_n(&c, &t, 3, |_| vec![]).await;
        let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = seen.clone();
        let invoker = invoker_fn(move |function: String, event: Value| {
            let sink = sink.clone();
            async move {
                assert_eq!(function, "in-process");
                for r in event["Records"].as_array().into_iter().flatten() {
                    sink.lock().expect("seen").push(sk_of(r));
                }
                Ok(InvokeOutcome::Ok(b"null".to_vec()))
            }
        });
        let report = Runner::new(c.clone(), Arc::new(invoker))
            .source(StreamSource::table(&t, "in-process").poll_interval(Duration::from_millis(100)))
            .on_event(|_| {})
            .run_until_idle(IDLE, MAX)
            .await
            .expect("run");
        assert_eq!(*seen.lock().expect("seen"), ["r0", "r1", "r2"]);
        assert_eq!(report.invocations(), 1);
    })
    .await;
}

/// DynamoDB Local writes empty maps in stream records as `{}` (not `{"M":{}}`), which the SDK
/// cannot parse; the streams client repairs them, so such records are delivered, in AWS's
/// shape, at top level, nested in maps and in lists, in new and old images.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_delivers_empty_maps_as_m() {
    bounded(60, async {
        let c = clients();
        let t = unique("emptymap");
        table(&c, &t).await;
        let empty = || Av::M(HashMap::new());
        let nested = || Av::M(HashMap::from([("inner".to_string(), empty())]));
        let list = || Av::L(vec![empty(), s("x"), Av::L(vec![empty()]), nested()]);
        put(
            &c,
            &t,
            vec![("pk", s("p")), ("sk", s("top")), ("params", empty())],
        )
        .await;
        put(
            &c,
            &t,
            vec![("pk", s("p")), ("sk", s("nested")), ("outer", nested())],
        )
        .await;
        put(
            &c,
            &t,
            vec![("pk", s("p")), ("sk", s("list")), ("items", list())],
        )
        .await;
        c.dynamodb
            .update_item()
            .table_name(&t)
            .key("pk", s("p"))
            .key("sk", s("top"))
            .update_expression("SET n = :v")
            .expression_attribute_values(":v", Av::N("1".into()))
            .send()
            .await
            .expect("update");
        c.dynamodb
            .delete_item()
            .table_name(&t)
            .key("pk", s("p"))
            .key("sk", s("list"))
            .send()
            .await
            .expect("delete");

        let f = FakeFunction::start(|_, _| Reply::Ok(json!({}))).await;
        let report = run(&c, &f, StreamSource::table(&t, "fn-empty-map")).await;
        assert_eq!(report.stop, StopReason::Idle);
        let recs = f.records();
        let got = events(&recs);
        let want = owned(&[
            ("INSERT", "top"),
            ("INSERT", "nested"),
            ("INSERT", "list"),
            ("MODIFY", "top"),
            ("REMOVE", "list"),
        ]);
        assert_eq!(got, want);
        let m = json!({"M": {}});
        let nested_json = json!({"M": {"inner": {"M": {}}}});
        let list_json =
            json!({"L": [{"M": {}}, {"S": "x"}, {"L": [{"M": {}}]}, {"M": {"inner": {"M": {}}}}]});
        let d = |i: usize| &recs[i]["dynamodb"];
        assert_eq!(d(0)["NewImage"]["params"], m);
        assert_eq!(d(1)["NewImage"]["outer"], nested_json);
        assert_eq!(d(2)["NewImage"]["items"], list_json);
        assert_eq!(d(3)["OldImage"]["params"], m);
        assert_eq!(d(3)["NewImage"]["params"], m);
        assert_eq!(d(3)["NewImage"]["n"], json!({"N": "1"}));
        assert_eq!(d(4)["OldImage"]["items"], list_json);
        assert!(d(4).get("NewImage").is_none());
        // Exactly as serialized to the function, too.
        let sent: String = f.calls().iter().map(|c| c.event.to_string()).collect();
        assert_eq!(sent.matches(r#""params":{"M":{}}"#).count(), 3, "{sent}");
        assert!(
            sent.contains(r#""outer":{"M":{"inner":{"M":{}}}}"#),
            "{sent}"
        );
        assert!(
            !sent.contains(r#""params":{}"#) && !sent.contains(r#""inner":{}"#),
            "{sent}"
        );
        let s0 = &report.sources[0];
        assert_eq!((s0.records_received, s0.discarded), (5, 0));
        // What a Rust handler reads with aws_lambda_events.
        for call in f.calls() {
            let _: aws_lambda_events::event::dynamodb::Event =
                serde_json::from_value(call.event).expect("DynamoDB Event");
        }
    })
    .await;
}

//! The CLEAN=1 purge through the real stream of DynamoDB Local, played by the local event
//! source runner exactly as the template's event source mapping is configured: 20 000 records
//! purged in bounded steps, each invocation well inside the functions' timeout, nothing of
//! another portal touched.

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use b24_events::EventKind;
use b24_fixtures::Fixture;
use b24_local::runner::{invoker_fn, FilterCriteria, InvokeOutcome, Runner, StreamSource};
use b24_state::testing::{apply_trusted, fresh_store};
use b24_state::{Applied, DynamoStore, MemberId, Outcome};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The functions' timeout (template parameter `FunctionTimeoutSeconds`, default 10 s).
const FUNCTION_TIMEOUT: Duration = Duration::from_secs(10);

async fn bulk_insert(store: &DynamoStore, member: &str, n: usize) {
    let items: Vec<WriteRequest> = (0..n)
        .map(|i| {
            let id = 1_000_000 + i as i64;
            let item = serde_json::json!({
                "pk": b24_state::schema::message_pk(&MemberId::new(member).unwrap(), id),
                "sk": b24_state::schema::message_sk(id),
                "record_type": "message", "member_id": member, "epoch": 1, "message_id": id,
                "text": "bulk", "updated_at": 1
            });
            let av = item
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), b24_state::to_av(v)))
                .collect();
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(av)).build().unwrap())
                .build()
        })
        .collect();
    let chunks: Vec<Vec<WriteRequest>> = items.chunks(25).map(|c| c.to_vec()).collect();
    let client = store.client().clone();
    let table = store.table().to_string();
    let mut tasks = tokio::task::JoinSet::new();
    for group in chunks.chunks(chunks.len().div_ceil(8)) {
        let (client, table, group) = (client.clone(), table.clone(), group.to_vec());
        tasks.spawn(async move {
            for mut batch in group {
                while !batch.is_empty() {
                    let out = client
                        .batch_write_item()
                        .request_items(&table, batch)
                        .send()
                        .await
                        .expect("batch write");
                    batch = out
                        .unprocessed_items()
                        .and_then(|u| u.get(&table))
                        .cloned()
                        .unwrap_or_default();
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20000_record_purge_completes_in_steps_within_the_function_timeout() {
    let store = Arc::new(fresh_store().await);
    let (big, other) = ("bulk-portal", "other-portal");
    for m in [big, other] {
        let install = Fixture::new(EventKind::AppInstall)
            .member(m)
            .ts(100)
            .event();
        assert_eq!(
            apply_trusted(&*store, &install, 1, 30).await.unwrap(),
            Applied::Outcome(Outcome::Applied)
        );
    }
    bulk_insert(&store, big, 20_000).await;
    bulk_insert(&store, other, 100).await;
    let other_before = store
        .portal_records(&MemberId::new(other).unwrap())
        .await
        .unwrap();

    let uninstall = Fixture::new(EventKind::AppUninstall)
        .member(big)
        .ts(200)
        .clean(true)
        .event();
    let started = Instant::now();
    assert_eq!(
        apply_trusted(&*store, &uninstall, 2, 30).await.unwrap(),
        Applied::Outcome(Outcome::Applied)
    );
    let answered = started.elapsed();
    assert!(
        answered < Duration::from_secs(2),
        "answered in {answered:?}"
    );

    let durations = Arc::new(Mutex::new(Vec::new()));
    let (s, d) = (store.clone(), durations.clone());
    let invoker = invoker_fn(move |_function, event| {
        let (s, d) = (s.clone(), d.clone());
        async move {
            let event: aws_lambda_events::dynamodb::Event =
                serde_json::from_value(event).expect("the runner sends AWS's event shape");
            let t = Instant::now();
            let deadline = Instant::now() + FUNCTION_TIMEOUT - Duration::from_secs(3);
            let (response, _report) = b24_consumers::purge::handle(&*s, event, deadline).await;
            d.lock().unwrap().push(t.elapsed());
            Ok(InvokeOutcome::Ok(serde_json::to_vec(&response).unwrap()))
        }
    });
    let source = StreamSource::table(store.table(), "b24-fn-purge")
        .filters(FilterCriteria::from_strs(&[b24_consumers::purge::STREAM_FILTER]).unwrap())
        .report_batch_item_failures(true)
        .bisect(true)
        .max_retries(Some(10));
    let report = Runner::new(
        b24_local::aws::AwsClients::new(
            &b24_local::aws::AwsEnv::from_env(),
            &b24_local::aws::Endpoints {
                sqs: None,
                dynamodb: Some(b24_state::testing::endpoint()),
                streams: None,
            },
        ),
        Arc::new(invoker),
    )
    .source(source)
    .run_until_idle(Duration::from_secs(3), Duration::from_secs(180))
    .await
    .expect("runner");
    let took = started.elapsed();

    let left = store
        .portal_records(&MemberId::new(big).unwrap())
        .await
        .unwrap();
    let kinds: Vec<&str> = left
        .iter()
        .map(|r| r["record_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["portal", "purge"],
        "only the tombstone and the marker"
    );
    assert_eq!(left[1]["status"], "done");
    assert!(
        left[1]["deleted"].as_i64().unwrap() >= 20_000,
        "{}",
        left[1]
    );
    let durations = durations.lock().unwrap().clone();
    let slowest = durations.iter().max().copied().unwrap_or_default();
    eprintln!(
        "purge of 20 000 records: {} steps, slowest {slowest:?}, total {took:?}, {} invocations",
        durations.len(),
        report.invocations()
    );
    assert!(durations.len() >= 4, "bounded steps: {durations:?}");
    assert!(slowest < FUNCTION_TIMEOUT, "a step took {slowest:?}");
    assert_eq!(
        store
            .portal_records(&MemberId::new(other).unwrap())
            .await
            .unwrap(),
        other_before,
        "the other portal is untouched"
    );
}

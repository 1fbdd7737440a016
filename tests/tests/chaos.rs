//! Chaos and burst runs of lossless ingest (`make chaos`; a short form runs in `make test`).
//!
//! Real parts: DynamoDB Local (paused with SIGSTOP, or stopped and restarted on its data
//! directory), moto's SQS, the webhook pipeline with the functions' real timeouts and the SQS
//! parker, and the redrive handler driven by the local event-source runner as the template's
//! mapping is configured. Each concurrent sender plays one function instance (its own portal
//! cache), as Lambda runs one request per instance.
//!
//! `CHAOS_SCALE=full` runs the sizes (300 events at 8 concurrency with a 10 s outage,
//! 1000 events at 64 concurrency); anything else the short form. Numbers are printed as one
//! `CHAOS` line per scenario (for BENCHMARKS.md).

use aws_lambda_events::sqs::SqsEvent;
use b24_consumers::redrive::{self, SqsVisibility};
use b24_events::{EventKind, Family};
use b24_fixtures::Fixture;
use b24_local::runner::{invoker_fn, InvokeOutcome, Runner, SqsSource};
use b24_local::{DdbOptions, DynamoDbLocal, Moto};
use b24_pipeline::park::{sqs_client, SqsParker};
use b24_pipeline::{Config, Metrics, Pipeline, RefuseTokenChanges};
use b24_state::{AwsEnv, DynamoStore, MemberId, Timeouts};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MEMBER: &str = "chaos-portal";

fn full() -> bool {
    std::env::var("CHAOS_SCALE").is_ok_and(|s| s == "full")
}

struct Stack {
    ddb: Mutex<DynamoDbLocal>,
    _moto: Moto,
    env: AwsEnv,
    table: String,
    queue: String,
    dlq: String,
    sqs: aws_sdk_sqs::Client,
    /// What every redrive invocation reported, summed.
    redriven: Arc<Mutex<redrive::Report>>,
}

fn aws_env(ddb: &str, sqs: &str) -> AwsEnv {
    let (ddb, sqs) = (ddb.to_string(), sqs.to_string());
    AwsEnv::from_lookup(move |k| match k {
        "AWS_REGION" => Some("us-east-1".into()),
        "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("chaos".into()),
        "AWS_ENDPOINT_URL_DYNAMODB" => Some(ddb.clone()),
        "AWS_ENDPOINT_URL_SQS" => Some(sqs.clone()),
        _ => None,
    })
    .unwrap()
}

/// The functions' WARN and ERROR lines (parked, lost, redrive retries) go to
/// `CHAOS_FUNCTION_LOG` when set, so a failed run can be read afterwards.
fn log_to_file() {
    use tracing_subscriber::prelude::*;
    let Some(path) = std::env::var_os("CHAOS_FUNCTION_LOG") else {
        return;
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("CHAOS_FUNCTION_LOG");
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_filter(tracing_subscriber::filter::LevelFilter::WARN);
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

async fn stack(tag: &str, persistent: bool) -> Stack {
    log_to_file();
    let data = std::env::temp_dir().join(format!("b24-chaos-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let ddb = DynamoDbLocal::start(DdbOptions {
        data_dir: persistent.then(|| {
            std::fs::create_dir_all(&data).unwrap();
            data.clone()
        }),
        ..DdbOptions::default()
    })
    .expect("DynamoDB Local");
    let moto = Moto::start(None).expect("moto");
    let env = aws_env(&ddb.endpoint(), &moto.endpoint());
    let client = b24_state::dynamodb_client(&env, Timeouts::BACKGROUND);
    let table = format!("chaos-{tag}");
    b24_state::create_table(&client, &table).await.unwrap();
    let sqs = sqs_client(&env, Timeouts::BACKGROUND);
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{tag}-parked-dlq"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let queue = sqs
        .create_queue()
        .queue_name(format!("{tag}-parked"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "30",
        )
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "30"}).to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    Stack {
        ddb: Mutex::new(ddb),
        _moto: moto,
        env,
        table,
        queue,
        dlq,
        sqs,
        redriven: Arc::default(),
    }
}

impl Stack {
    fn config(&self, family: Family) -> Config {
        let (table, queue) = (self.table.clone(), self.queue.clone());
        Config::from_lookup(family, move |k| match k {
            "TABLE_NAME" => Some(table.clone()),
            "PARKED_QUEUE_URL" => Some(queue.clone()),
            _ => None,
        })
        .unwrap()
    }

    /// One function instance, as `main` builds it: webhook timeouts, the SQS parker.
    fn instance(&self, family: Family) -> Pipeline<DynamoStore, RefuseTokenChanges, SqsParker> {
        let config = self.config(family);
        let store = DynamoStore::new(
            b24_state::dynamodb_client(&self.env, Timeouts::WEBHOOK),
            self.table.clone(),
        );
        let parker = SqsParker::lazy(self.env.clone(), &self.queue);
        let sink: b24_pipeline::metrics::Sink = Arc::new(Mutex::new(std::io::sink()));
        Pipeline::with_parker(
            &config,
            Arc::new(store),
            RefuseTokenChanges,
            parker,
            Metrics::with_sink("Chaos", sink),
        )
    }

    fn store(&self) -> DynamoStore {
        DynamoStore::new(
            b24_state::dynamodb_client(&self.env, Timeouts::BACKGROUND),
            self.table.clone(),
        )
    }

    /// The redrive, as the template's mapping runs it, until stopped.
    async fn redrive(&self) -> b24_local::runner::RunHandle {
        let store = Arc::new(self.store());
        let vis = Arc::new(SqsVisibility::new(self.sqs.clone(), &self.queue));
        let totals = self.redriven.clone();
        let invoker = invoker_fn(move |_f, event| {
            let (store, vis, totals) = (store.clone(), vis.clone(), totals.clone());
            async move {
                let event: SqsEvent = serde_json::from_value(event).expect("SqsEvent");
                let (response, report) = redrive::handle(&*store, &*vis, event, 30).await;
                {
                    let mut t = totals.lock().unwrap();
                    t.redriven += report.redriven;
                    t.duplicates += report.duplicates;
                    t.dropped += report.dropped;
                    t.retried += report.retried;
                }
                Ok(InvokeOutcome::Ok(serde_json::to_vec(&response).unwrap()))
            }
        });
        let clients = b24_local::aws::AwsClients::new(
            &b24_local::aws::AwsEnv::from_env(),
            &b24_local::aws::Endpoints {
                sqs: self.env.endpoint("SQS").map(str::to_string),
                dynamodb: self.env.endpoint("DYNAMODB").map(str::to_string),
                streams: None,
            },
        );
        Runner::new(clients, Arc::new(invoker))
            .on_event(|_| {})
            .source(
                SqsSource::new(&self.queue, "b24-fn-redrive")
                    .batch_size(10)
                    .wait_seconds(1)
                    .report_batch_item_failures(true),
            )
            .start()
            .await
            .expect("runner")
    }

    async fn queue_len(&self, url: &str) -> usize {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .unwrap();
        let a = attrs.attributes().unwrap();
        [
            aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
            aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|k| a.get(k).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0))
        .sum()
    }

    async fn install(&self) {
        let app = self.instance(Family::App);
        let body = Fixture::new(EventKind::AppInstall).member(MEMBER).form();
        let (status, _) = send(&app, &body).await;
        assert_eq!(status, 200);
    }

    async fn message_records(&self) -> (usize, Vec<Value>) {
        let records = self
            .store()
            .portal_records(&MemberId::new(MEMBER).unwrap())
            .await
            .unwrap();
        let messages = records
            .iter()
            .filter(|r| r["record_type"] == "message")
            .count();
        let adds = records
            .into_iter()
            .filter(|r| r["event_code"] == "ONIMCONNECTORMESSAGEADD")
            .collect();
        (messages, adds)
    }
}

async fn send<P: b24_pipeline::Parker>(
    p: &Pipeline<DynamoStore, RefuseTokenChanges, P>,
    body: &str,
) -> (u16, Duration) {
    let payload = json!({
        "version": "2.0", "rawPath": p.family().route(),
        "headers": {"content-type": "application/x-www-form-urlencoded"},
        "requestContext": {"http": {"method": "POST", "path": p.family().route()}},
        "body": body, "isBase64Encoded": false
    });
    let t = Instant::now();
    let response = p.handle(payload).await;
    (response.status_code as u16, t.elapsed())
}

/// What one scenario saw.
#[derive(Default)]
struct Tally {
    by_status: std::collections::BTreeMap<u16, usize>,
    slowest_during_outage: Duration,
    slowest: Duration,
}

/// Sends `n` distinct MessageAdd events from `concurrency` instances; `chaos` runs alongside
/// (it flips `outage` while storage is broken).
async fn run_load(
    stack: &Arc<Stack>,
    n: usize,
    concurrency: usize,
    first_id: i64,
    outage: Arc<std::sync::atomic::AtomicBool>,
) -> Tally {
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (stack, next, tally, outage) =
            (stack.clone(), next.clone(), tally.clone(), outage.clone());
        tasks.spawn(async move {
            let instance = stack.instance(Family::Messages);
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let body = Fixture::new(EventKind::MessageAdd)
                    .member(MEMBER)
                    .message_id(first_id + i as i64)
                    .text(&format!("chaos message {i}"))
                    .ts(1_773_800_000 + i as i64)
                    .form();
                let during = outage.load(Ordering::SeqCst);
                let (status, took) = send(&instance, &body).await;
                {
                    let mut t = tally.lock().unwrap();
                    *t.by_status.entry(status).or_default() += 1;
                    t.slowest = t.slowest.max(took);
                    if during || outage.load(Ordering::SeqCst) {
                        t.slowest_during_outage = t.slowest_during_outage.max(took);
                    }
                }
                // A steady stream rather than one burst: the outage lands mid-stream.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    Arc::try_unwrap(tally)
        .ok()
        .expect("every sender finished")
        .into_inner()
        .unwrap()
}

async fn drain(stack: &Stack, deadline: Duration) -> Duration {
    let t = Instant::now();
    loop {
        if stack.queue_len(&stack.queue).await == 0 {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < deadline,
            "the parked queue did not drain within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outage {
    Pause,
    Stop,
}

async fn outage_scenario(kind: Outage) {
    let (n, concurrency, outage_len) = if full() {
        (300, 8, Duration::from_secs(10))
    } else {
        (60, 4, Duration::from_secs(3))
    };
    let tag = format!("{kind:?}").to_lowercase();
    let stack = Arc::new(stack(&tag, kind == Outage::Stop).await);
    stack.install().await;
    let runner = stack.redrive().await;
    let outage = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = run_load(&stack, n, concurrency, 10_000, outage.clone());
    let (tally, ()) = tokio::join!(load, async {
        // Let part of the stream through first, then break storage mid-stream.
        tokio::time::sleep(Duration::from_millis(if full() { 1500 } else { 600 })).await;
        outage.store(true, Ordering::SeqCst);
        match kind {
            Outage::Pause => stack.ddb.lock().unwrap().pause().unwrap(),
            Outage::Stop => stack.ddb.lock().unwrap().stop(),
        }
        tokio::time::sleep(outage_len).await;
        match kind {
            Outage::Pause => stack.ddb.lock().unwrap().resume().unwrap(),
            // Same port and data directory: the table survives.
            Outage::Stop => stack.ddb.lock().unwrap().restart().unwrap(),
        }
        outage.store(false, Ordering::SeqCst);
    });
    finish(&stack, &tag, n, concurrency, outage_len, tally, runner).await;
}

async fn finish(
    stack: &Stack,
    tag: &str,
    n: usize,
    concurrency: usize,
    outage_len: Duration,
    tally: Tally,
    runner: b24_local::runner::RunHandle,
) {
    let drain_time = drain(stack, Duration::from_secs(if full() { 240 } else { 120 })).await;
    runner.stop().await;
    let (messages, adds) = stack.message_records().await;
    let parked = tally.by_status.get(&202).copied().unwrap_or(0);
    let report = *stack.redriven.lock().unwrap();
    println!(
        "CHAOS scenario={tag} events={n} concurrency={concurrency} outage_s={} answers={:?} \
         parked={parked} redriven={} redrive_duplicates={} redrive_retries={} dropped={} \
         slowest_during_outage_ms={} slowest_ms={} drain_after_outage_s={:.1} \
         message_records={messages} dlq={}",
        outage_len.as_secs(),
        tally.by_status,
        report.redriven,
        report.duplicates,
        report.retried,
        report.dropped,
        tally.slowest_during_outage.as_millis(),
        tally.slowest.as_millis(),
        drain_time.as_secs_f64(),
        stack.queue_len(&stack.dlq).await,
    );
    assert!(
        tally.by_status.keys().all(|s| *s == 200 || *s == 202),
        "every answer is 200 or 202: {:?}",
        tally.by_status
    );
    assert_eq!(messages, n, "exactly {n} message records");
    assert_eq!(adds.len(), n, "one event record per event");
    assert!(
        adds.iter().all(|r| r["outcome"] == "applied"),
        "every event record says applied"
    );
    assert_eq!(stack.queue_len(&stack.dlq).await, 0, "nothing in the DLQ");
    assert_eq!(
        report.redriven, parked,
        "every parked event was redriven once"
    );
    assert_eq!(report.dropped, 0, "nothing dropped");
    assert!(
        tally.slowest_during_outage < Duration::from_secs(3),
        "slowest answer during the outage {:?}",
        tally.slowest_during_outage
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "chaos run: `make chaos` (scripts/chaos.sh); a short form runs in `make test`"]
async fn outage_with_dynamodb_paused_loses_nothing() {
    outage_scenario(Outage::Pause).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "chaos run: `make chaos` (scripts/chaos.sh); a short form runs in `make test`"]
async fn outage_with_dynamodb_stopped_and_restarted_loses_nothing() {
    outage_scenario(Outage::Stop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "chaos run: `make chaos` (scripts/chaos.sh); a short form runs in `make test`"]
async fn a_burst_loses_nothing_and_never_answers_5xx() {
    let (n, concurrency) = if full() { (1000, 64) } else { (200, 32) };
    let stack = Arc::new(stack("burst", false).await);
    stack.install().await;
    let runner = stack.redrive().await;
    let outage = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tally = run_load(&stack, n, concurrency, 30_000, outage).await;
    finish(
        &stack,
        "burst",
        n,
        concurrency,
        Duration::ZERO,
        tally,
        runner,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "chaos run: `make chaos` (scripts/chaos.sh); a short form runs in `make test`"]
async fn a_poison_parked_message_is_dropped_not_retried_forever() {
    let stack = stack("poison", false).await;
    stack.install().await;
    let runner = stack.redrive().await;
    let forged = Fixture::new(EventKind::MessageAdd)
        .member("no-such-portal")
        .message_id(7)
        .event();
    let parked = b24_pipeline::ParkedEvent::new(
        &forged,
        b24_state::TokenHash::of(forged.auth.application_token.as_ref()).unwrap(),
        1,
        "test".into(),
        None,
        None,
    );
    stack
        .sqs
        .send_message()
        .queue_url(&stack.queue)
        .message_body(parked.to_body())
        .send()
        .await
        .unwrap();
    let t = drain(&stack, Duration::from_secs(30)).await;
    runner.stop().await;
    let report = *stack.redriven.lock().unwrap();
    println!(
        "CHAOS scenario=poison dropped={} retries={} dropped_after_ms={}",
        report.dropped,
        report.retried,
        t.as_millis()
    );
    assert_eq!(
        report.dropped, 1,
        "dropped and counted (the ParkedDropped metric)"
    );
    assert_eq!(report.retried, 0, "never retried");
    assert_eq!(report.redriven, 0);
    assert_eq!(stack.queue_len(&stack.dlq).await, 0);
    let m = b24_state::Store::get_portal(&stack.store(), &MemberId::new("no-such-portal").unwrap())
        .await
        .unwrap();
    assert!(m.is_none(), "never applied");
}

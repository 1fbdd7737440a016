//! The launchers: DynamoDB Local and moto lifecycles, the watchdog, the CLI's server commands
//! and the runner binary.

use crate::support::{bounded, clients, create_queue, create_table, unique, FakeFunction, Reply};
use aws_sdk_dynamodb::types::{AttributeValue, StreamViewType};
use b24_local::aws::{dynamodb_client, AwsEnv};
use b24_local::{DdbOptions, DynamoDbLocal, LocalError, Moto};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// JVM starts are heavy on two cores: one launcher test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().next() != Some("Z"))
        })
        .unwrap_or(false)
}

fn wait_gone(pid: u32, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !alive(pid)
}

/// Pids of processes (not the `sh` watchdogs, whose arguments repeat the server's) whose
/// command line contains every one of `parts`.
fn pids_with(parts: &[&str]) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim() == "sh" {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if parts.iter().all(|p| args.iter().any(|a| a == p)) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

fn temp_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique(name));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn quick_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    // A 1.5 s operation bound so a paused server shows up as a timeout.
    let c = dynamodb_client(&AwsEnv::default(), Some(endpoint));
    let conf = c
        .config()
        .to_builder()
        .timeout_config(
            aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_millis(1500))
                .build(),
        )
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

async fn table_names(c: &aws_sdk_dynamodb::Client) -> Vec<String> {
    c.list_tables()
        .send()
        .await
        .expect("list")
        .table_names
        .unwrap_or_default()
}

async fn queue_count(sqs: &aws_sdk_sqs::Client) -> usize {
    sqs.list_queues()
        .send()
        .await
        .expect("list")
        .queue_urls
        .unwrap_or_default()
        .len()
}

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn ddb_pause_resume_and_restart_keep_a_persistent_table() {
    let _one = one_at_a_time();
    current_thread().block_on(bounded(120, async {
        let dir = temp_dir("ddb-data");
        let mut ddb = DynamoDbLocal::start(DdbOptions {
            data_dir: Some(dir.clone()),
            ..DdbOptions::default()
        })
        .expect("start");
        let endpoint = ddb.endpoint();
        assert!(endpoint.starts_with("http://127.0.0.1:"));
        let c = dynamodb_client(&AwsEnv::default(), Some(&endpoint));
        let quick = quick_client(&endpoint);
        create_table(&c, "persist", &["pk"], None).await;
        c.put_item()
            .table_name("persist")
            .item("pk", AttributeValue::S("k1".into()))
            .send()
            .await
            .expect("put");

        // Another server on the same port is refused, not silently shared.
        let clash = DynamoDbLocal::start(DdbOptions {
            port: Some(ddb.port()),
            ..DdbOptions::default()
        });
        assert!(matches!(clash, Err(LocalError::Server { .. })), "{clash:?}");

        ddb.pause().expect("pause");
        assert!(
            quick.list_tables().send().await.is_err(),
            "a paused server must not answer"
        );
        ddb.resume().expect("resume");
        assert!(quick.list_tables().send().await.is_ok());

        let old_pid = ddb.pid();
        ddb.restart().expect("restart");
        assert_eq!(ddb.endpoint(), endpoint, "same port after restart");
        assert_ne!(ddb.pid(), old_pid);
        assert!(!alive(old_pid));
        let tables = table_names(&c).await;
        assert_eq!(tables, ["persist"]);
        let item = c
            .get_item()
            .table_name("persist")
            .key("pk", AttributeValue::S("k1".into()))
            .send()
            .await
            .expect("get");
        assert!(item.item.is_some(), "the item survived the restart");

        let pid = ddb.pid();
        ddb.stop();
        assert!(!ddb.is_running());
        assert!(wait_gone(pid, Duration::from_secs(5)));
        let _ = std::fs::remove_dir_all(dir);
    }));
}

#[test]
fn ddb_in_memory_restart_starts_empty() {
    let _one = one_at_a_time();
    current_thread().block_on(bounded(120, async {
        let mut ddb = DynamoDbLocal::start(DdbOptions::default()).expect("start");
        let c = dynamodb_client(&AwsEnv::default(), Some(&ddb.endpoint()));
        create_table(&c, "gone", &["pk"], None).await;
        ddb.restart().expect("restart");
        let tables = table_names(&c).await;
        assert!(tables.is_empty());
        let pid = ddb.pid();
        drop(ddb);
        assert!(
            wait_gone(pid, Duration::from_secs(5)),
            "drop stops the server"
        );
    }));
}

/// A `b24-local` child, killed if a test fails before it does.
struct Cli(Option<Child>);

impl Cli {
    fn take(&mut self) -> Child {
        self.0.take().expect("child")
    }

    /// SIGKILLs the CLI (no chance to stop its server) and reaps it.
    fn sigkill(&mut self) {
        let mut child = self.take();
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            // SIGTERM: the CLI stops its server.
            // SAFETY: kill(2) with a pid we own.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

/// Starts `b24-local <args>` and returns it with the endpoint line it printed.
fn spawn_cli(args: &[&str]) -> (Cli, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_b24-local"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn b24-local");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read line");
    let endpoint = line
        .trim()
        .strip_prefix("AWS_ENDPOINT_URL=")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (Cli(Some(child)), endpoint)
}

fn port_of(endpoint: &str) -> String {
    endpoint.rsplit(':').next().expect("port").to_string()
}

#[test]
fn watchdog_kills_dynamodb_local_when_its_owner_is_sigkilled() {
    let _one = one_at_a_time();
    let (mut cli, endpoint) = spawn_cli(&["ddb"]);
    let port = port_of(&endpoint);
    let java = pids_with(&["LoopbackDynamoDBLocal", "-port", &port]);
    assert_eq!(java.len(), 1, "one DynamoDB Local on {port}");
    cli.sigkill();
    assert!(
        wait_gone(java[0], Duration::from_secs(10)),
        "java {} outlived its owner",
        java[0]
    );
    assert!(pids_with(&["LoopbackDynamoDBLocal", "-port", &port]).is_empty());
}

#[test]
fn watchdog_kills_moto_when_its_owner_is_sigkilled_and_sigterm_stops_cleanly() {
    let (mut cli, endpoint) = spawn_cli(&["moto"]);
    let port = port_of(&endpoint);
    let moto = pids_with(&["-p", &port, "127.0.0.1"]);
    assert_eq!(moto.len(), 1, "one moto on {port}");
    cli.sigkill();
    assert!(
        wait_gone(moto[0], Duration::from_secs(10)),
        "moto outlived its owner"
    );

    let (mut cli, endpoint) = spawn_cli(&["moto"]);
    let port = port_of(&endpoint);
    let moto = pids_with(&["-p", &port, "127.0.0.1"]);
    assert_eq!(moto.len(), 1);
    let child = cli.take();
    // SAFETY: kill(2) with a pid we own.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_child(child, Duration::from_secs(10));
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    assert!(wait_gone(moto[0], Duration::from_secs(5)));
}

fn wait_child(mut child: Child, within: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("child did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn moto_reset_wipes_state() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut moto = Moto::start(None).expect("moto");
    let sqs = b24_local::aws::sqs_client(&AwsEnv::default(), Some(&moto.endpoint()));
    rt.block_on(async {
        sqs.create_queue()
            .queue_name("wiped")
            .send()
            .await
            .expect("create");
        let n = queue_count(&sqs).await;
        assert_eq!(n, 1);
    });
    moto.reset().expect("reset");
    rt.block_on(async {
        let n = queue_count(&sqs).await;
        assert_eq!(n, 0);
    });
    let pid = moto.pid();
    moto.stop();
    assert!(wait_gone(pid, Duration::from_secs(5)));
}

#[test]
fn shared_endpoints_are_started_once() {
    let a = b24_local::shared_ddb_endpoint();
    let b = b24_local::shared_ddb_endpoint();
    assert_eq!(a, b);
    assert_eq!(
        b24_local::shared_moto_endpoint(),
        b24_local::shared_moto_endpoint()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_run_with_a_config_file_drives_both_kinds_of_source() {
    bounded(90, async {
        let c = clients();
        let queue = create_queue(&c, &unique("cli"), &[]).await;
        c.sqs.send_message().queue_url(&queue).message_body("from the queue").send().await.expect("send");
        let t = unique("cli");
        create_table(&c.dynamodb, &t, &["pk"], Some(StreamViewType::NewImage)).await;
        c.dynamodb.put_item().table_name(&t).item("pk", AttributeValue::S("x".into())).send().await.expect("put");
        let f = FakeFunction::start(|_, _| Reply::Ok(serde_json::json!({}))).await;
        let dir = temp_dir("cli");
        let config = dir.join("runner.json");
        let text = serde_json::json!({
            "invoke_url": f.url,
            "sources": [
                {"kind": "sqs", "name": "q", "queue_url": "${B24_TEST_QUEUE}", "function": "fn-q", "wait_seconds": 1},
                {"kind": "stream", "name": "s", "table": t, "function": "fn-s", "poll_interval_ms": 100}
            ]
        });
        std::fs::write(&config, text.to_string()).expect("write config");
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_b24-local"))
            .args(["run", "--config"])
            .arg(&config)
            .args(["--until-idle", "1.5", "--max-seconds", "30"])
            .env("B24_TEST_QUEUE", &queue)
            .env("AWS_ENDPOINT_URL_SQS", b24_local::shared_moto_endpoint())
            .env("AWS_ENDPOINT_URL_DYNAMODB", b24_local::shared_ddb_endpoint())
            .env_remove("AWS_ENDPOINT_URL")
            .output()
            .await
            .expect("run b24-local");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("outcome=")).collect();
        assert_eq!(lines.len(), 2, "{stderr}");
        for (source, function) in [("q", "fn-q"), ("s", "fn-s")] {
            let prefix = format!("b24-local run: source={source} function={function} batch=1 failures=0 duration_ms=");
            assert!(lines.iter().any(|l| l.starts_with(&prefix) && l.ends_with(" outcome=ok")), "{stderr}");
        }
        let mut functions: Vec<String> = f.calls().into_iter().map(|c| c.function).collect();
        functions.sort();
        assert_eq!(functions, ["fn-q", "fn-s"]);
        let _ = std::fs::remove_dir_all(dir);
    })
    .await;
}

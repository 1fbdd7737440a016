//! `b24-coldstart`: instructions a Lambda function spends in its cold start — **init** (exec
//! to the first `GET /next`) and **first invoke** (event in → response posted) — counted by
//! callgrind on a fake Lambda Runtime API, against DynamoDB Local, for the real function and a
//! naive SDK hello side by side. See `tools/coldstart/README.md`.
//!
//! ```sh
//! cargo run --release -p b24-coldstart -- \
//!     --function-bin target/release/b24-fn-messages --naive-bin PATH
//! ```

mod callgrind;
mod event;
mod runtime_api;

use callgrind::{measure, Measurement, Run};
use runtime_api::Invocation;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Cold-start instruction counts of a Lambda function binary (see tools/coldstart/README.md).
#[derive(clap::Parser)]
#[command(name = "b24-coldstart")]
struct Args {
    /// The messages function (release b24-fn-messages) to measure.
    #[arg(long)]
    function_bin: PathBuf,
    /// The naive SDK hello (default: build tools/coldstart/naive-hello).
    #[arg(long)]
    naive_bin: Option<PathBuf>,
    /// Also measure another build of the messages function, NAME=PATH (repeatable).
    #[arg(long = "variant", value_parser = parse_variant)]
    variants: Vec<(String, PathBuf)>,
    /// b24-fn-app, installs the portal (default: next to --function-bin).
    #[arg(long)]
    app_bin: Option<PathBuf>,
    /// b24-events, builds the wire bodies (default: next to --function-bin).
    #[arg(long)]
    events_bin: Option<PathBuf>,
    /// b24-state, creates the table (default: next to --function-bin).
    #[arg(long)]
    state_bin: Option<PathBuf>,
    /// Cold starts per binary; the table shows the median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=50))]
    runs: u16,
    /// Use this DynamoDB Local instead of starting one (b24-local's launcher).
    #[arg(long)]
    ddb_endpoint: Option<String>,
    /// The repository (default: two levels above this crate).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))]
    repo: PathBuf,
    /// JSON results (default: <target dir>/coldstart/results.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Dumps and logs (default: a new directory under /tmp, removed afterwards unless --keep
    /// or --annotate).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work directory.
    #[arg(long)]
    keep: bool,
    /// Write `callgrind_annotate --inclusive=yes` of every dump (top 60).
    #[arg(long)]
    annotate: bool,
    /// Send the body as text (isBase64Encoded false) instead of base64.
    #[arg(long = "text-body", action = clap::ArgAction::SetFalse)]
    base64: bool,
    /// Bound on each cold start, in seconds.
    #[arg(long = "timeout", default_value_t = 300, value_parser = clap::value_parser!(u64).range(10..=3600))]
    timeout_secs: u64,
}

fn parse_variant(v: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = v.split_once('=').ok_or("--variant needs NAME=PATH")?;
    Ok((name.to_string(), PathBuf::from(path)))
}

/// Runs a helper command with a bound; returns stdout.
fn run_bounded(cmd: &mut Command, what: &str, timeout: Duration) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!(
        "b24-coldstart-cmd-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).map_err(|e| e.to_string())?)
        .stderr(std::fs::File::create(&err_path).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!("{what}: timed out after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        return Err(format!("{what}: {status}: {}", err.trim()));
    }
    Ok(out)
}

fn sibling(of: &Path, name: &str) -> PathBuf {
    of.parent().unwrap_or(Path::new(".")).join(name)
}

fn require(path: &Path, what: &str) -> Result<PathBuf, String> {
    if path.is_file() {
        std::fs::canonicalize(path).map_err(|e| e.to_string())
    } else {
        Err(format!("{what} not found: {}", path.display()))
    }
}

const MEMBER_ID: &str = "c01d5a7a8940947a75e0d71b1a84e348";
const APP_TOKEN: &str = "831c76b092f9f135d9b6b36c3a720757";
/// A fixed event time, so every run builds the same bytes (only `message_id` varies).
const EVENT_TS: &str = "1796155200";

/// What one binary is measured as.
struct Target {
    name: String,
    bin: PathBuf,
    function_name: &'static str,
    is_function: bool,
}

fn lambda_env(
    function_name: &str,
    endpoint: &str,
    table: &str,
    home: &Path,
) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_FUNCTION_NAME", function_name),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/coldstart"),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/12/01/[$LATEST]0123456789abcdef",
        ),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("AWS_REGION", "eu-central-1"),
        ("AWS_DEFAULT_REGION", "eu-central-1"),
        // DynamoDB Local namespaces tables by access key: every process uses these.
        ("AWS_ACCESS_KEY_ID", "AKIDCOLDSTART"),
        ("AWS_SECRET_ACCESS_KEY", "coldstart-secret-access-key"),
        ("AWS_SESSION_TOKEN", "coldstart-session-token"),
        ("AWS_ENDPOINT_URL", endpoint),
        ("TABLE_NAME", table),
        // Required by the webhook functions; never called while DynamoDB answers.
        (
            "PARKED_QUEUE_URL",
            "https://sqs.eu-central-1.amazonaws.com/123456789012/coldstart-parked",
        ),
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime"),
        ("_HANDLER", "bootstrap"),
        ("TZ", ":UTC"),
        ("LANG", "en_US.UTF-8"),
        ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin"),
        ("HOME", home.to_str().unwrap_or("/tmp")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn m(n: u64) -> f64 {
    n as f64 / 1e6
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let valgrind = Command::new("valgrind")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    json!({"nproc": nproc, "cpu": cpu, "arch": std::env::consts::ARCH, "valgrind": valgrind})
}

fn build_naive(repo: &Path, timeout: Duration) -> Result<PathBuf, String> {
    let manifest = repo.join("tools/coldstart/naive-hello/Cargo.toml");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("tools/coldstart/naive-hello/target"));
    eprintln!(
        "b24-coldstart: building the naive hello ({})",
        manifest.display()
    );
    run_bounded(
        Command::new("cargo")
            .arg("build")
            .arg("--release")
            .arg("--locked")
            .arg("--manifest-path")
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &target),
        "cargo build (naive-hello)",
        timeout.max(Duration::from_secs(1800)),
    )?;
    Ok(target.join("release/naive-hello"))
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    match real_main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("b24-coldstart: {e}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(args: Args) -> Result<(), String> {
    let timeout = Duration::from_secs(args.timeout_secs);
    let repo = std::fs::canonicalize(&args.repo)
        .map_err(|e| format!("repository {}: {e}", args.repo.display()))?;
    for tool in ["valgrind", "callgrind_control"] {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("{tool} not found: {e}"))?;
    }
    let function_bin = require(&args.function_bin, "--function-bin")?;
    let app_bin = require(
        &args
            .app_bin
            .clone()
            .unwrap_or_else(|| sibling(&function_bin, "b24-fn-app")),
        "b24-fn-app (--app-bin)",
    )?;
    let events_bin = require(
        &args
            .events_bin
            .clone()
            .unwrap_or_else(|| sibling(&function_bin, "b24-events")),
        "b24-events (--events-bin)",
    )?;
    let state_bin = require(
        &args
            .state_bin
            .clone()
            .unwrap_or_else(|| sibling(&function_bin, "b24-state")),
        "b24-state (--state-bin)",
    )?;
    let naive_bin = match &args.naive_bin {
        Some(p) => require(p, "--naive-bin")?,
        None => require(&build_naive(&repo, timeout)?, "naive-hello")?,
    };
    let mut targets = vec![Target {
        name: "function".into(),
        bin: function_bin.clone(),
        function_name: "b24-fn-messages",
        is_function: true,
    }];
    for (name, path) in &args.variants {
        targets.push(Target {
            name: name.clone(),
            bin: require(path, &format!("--variant {name}"))?,
            function_name: "b24-fn-messages",
            is_function: true,
        });
    }
    targets.push(Target {
        name: "naive".into(),
        bin: naive_bin,
        function_name: "naive-hello",
        is_function: false,
    });

    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let work = match &args.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("b24-coldstart-{}-{stamp}", std::process::id())),
    };
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let work = std::fs::canonicalize(&work).map_err(|e| e.to_string())?;
    let home = work.join("home");
    std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
    eprintln!("b24-coldstart: work directory {}", work.display());

    let result = measure_all(
        &args,
        &repo,
        &work,
        &home,
        &targets,
        &app_bin,
        &events_bin,
        &state_bin,
        stamp,
    );
    // Kept after a failure: the error names files in it.
    if result.is_ok() && !(args.keep || args.annotate) && args.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn measure_all(
    args: &Args,
    repo: &Path,
    work: &Path,
    home: &Path,
    targets: &[Target],
    app_bin: &Path,
    events_bin: &Path,
    state_bin: &Path,
    stamp: u64,
) -> Result<(), String> {
    // DynamoDB Local: our own instance unless one is given (stopped when `_ddb` drops).
    let (_ddb, endpoint) = match &args.ddb_endpoint {
        Some(e) => (None, e.clone()),
        None => {
            let d = b24_local::DynamoDbLocal::start(b24_local::DdbOptions {
                root: Some(repo.to_path_buf()),
                ..b24_local::DdbOptions::default()
            })
            .map_err(|e| format!("{e} (or pass --ddb-endpoint)"))?;
            let e = d.endpoint();
            (Some(d), e)
        }
    };
    eprintln!("b24-coldstart: DynamoDB Local at {endpoint}");
    // A fresh table per harness run (same name length every time).
    let table = format!("b24-coldstart-{stamp:010}");
    let env_for = |function_name: &str| lambda_env(function_name, &endpoint, &table, home);
    let helper_env = env_for("b24-coldstart");
    let helper = |bin: &Path| {
        let mut c = Command::new(bin);
        c.env_clear().envs(helper_env.iter().map(|(k, v)| (k, v)));
        c
    };
    run_bounded(
        helper(state_bin).arg("create-table"),
        "b24-state create-table",
        Duration::from_secs(60),
    )?;

    let body_of = |event: &str, extra: &[&str]| -> Result<Vec<u8>, String> {
        let out = run_bounded(
            helper(events_bin)
                .args(["send", "--print-body", "--event", event])
                .args(["--member-id", MEMBER_ID, "--application-token", APP_TOKEN])
                .args(["--ts", EVENT_TS])
                .args(extra),
            "b24-events send --print-body",
            Duration::from_secs(30),
        )?;
        Ok(out.trim_end_matches(['\r', '\n']).as_bytes().to_vec())
    };

    // Install the portal with the real app function (natively, not measured).
    let install = body_of("OnAppInstall", &[])?;
    let installed = measure(Run {
        label: "install",
        bin: app_bin,
        env: &env_for("b24-fn-app"),
        invocation: Invocation {
            request_id: "install-0001".into(),
            payload: event::apigw_v2("/bitrix24/app", &install, args.base64, "install-0001"),
        },
        dir: work,
        timeout: Duration::from_secs(60),
        callgrind: false,
    })?;
    if installed.status != Some(200) {
        return Err(format!(
            "installing the portal failed: {:?} {}",
            installed.status, installed.answer
        ));
    }
    eprintln!("b24-coldstart: portal installed: {}", installed.answer);

    // Measure: runs × targets, interleaved; each function run sends a new message
    // (`message_id` with the same number of digits), so each one is `applied`.
    let mut results: Vec<Vec<Measurement>> = targets.iter().map(|_| Vec::new()).collect();
    let mut message_id = 86500u64;
    for run in 0..usize::from(args.runs) {
        for (t, target) in targets.iter().enumerate() {
            message_id += 1;
            let body = body_of(
                "OnImConnectorMessageAdd",
                &["--message-id", &message_id.to_string()],
            )?;
            let request_id = format!("{:08x}-c01d-4000-8000-{:012x}", run, message_id);
            let label = format!("{}-{}", target.name, run + 1);
            eprintln!(
                "b24-coldstart: {label}: {} under callgrind",
                target.bin.display()
            );
            let r = measure(Run {
                label: &label,
                bin: &target.bin,
                env: &env_for(target.function_name),
                invocation: Invocation {
                    request_id: request_id.clone(),
                    payload: event::apigw_v2("/bitrix24/messages", &body, args.base64, &request_id),
                },
                dir: work,
                timeout: Duration::from_secs(args.timeout_secs),
                callgrind: true,
            })?;
            let ok =
                r.status == Some(200) && (!target.is_function || r.answer.contains("\"applied\""));
            eprintln!(
                "b24-coldstart: {label}: init {:.2} M, first invoke {:.2} M, answer {:?} {}",
                m(r.init),
                m(r.first_invoke),
                r.status,
                r.answer
            );
            if !ok {
                return Err(format!(
                    "{label}: unexpected answer {:?} {} (logs in {})",
                    r.status,
                    r.answer,
                    work.display()
                ));
            }
            if args.annotate {
                for (dump, part) in r.dumps.iter().zip(["init", "invoke"]) {
                    let out = Command::new("callgrind_annotate")
                        .arg("--inclusive=yes")
                        .arg(dump)
                        .output()
                        .map_err(|e| format!("callgrind_annotate: {e}"))?;
                    let text: String = String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .take(90)
                        .map(|l| format!("{l}\n"))
                        .collect();
                    let _ = std::fs::write(work.join(format!("{label}.{part}.annotate.txt")), text);
                }
            }
            results[t].push(r);
        }
    }

    // Report.
    let naive_idx = targets.len() - 1;
    let summary = |ms: &[Measurement]| {
        let init = median(ms.iter().map(|r| r.init).collect());
        let inv = median(ms.iter().map(|r| r.first_invoke).collect());
        let tot = median(ms.iter().map(|r| r.init + r.first_invoke).collect());
        (init, inv, tot)
    };
    let (n_init, n_inv, n_tot) = summary(&results[naive_idx]);
    println!();
    println!(
        "cold start, instructions (callgrind, median of {} runs; M = 10^6)",
        args.runs
    );
    println!(
        "{:<22} {:>8} {:>14} {:>9} {:>15} {:>12}",
        "binary", "init M", "first inv. M", "total M", "total / naive", "size bytes"
    );
    let mut rows = Vec::new();
    for (t, target) in targets.iter().enumerate() {
        let (init, inv, tot) = summary(&results[t]);
        let size = std::fs::metadata(&target.bin).map(|m| m.len()).unwrap_or(0);
        let ratio = tot as f64 / n_tot as f64;
        println!(
            "{:<22} {:>8.2} {:>14.2} {:>9.2} {:>14.3}x {:>12}",
            target.name,
            m(init),
            m(inv),
            m(tot),
            ratio,
            size
        );
        let spread = |f: &dyn Fn(&Measurement) -> u64| {
            let v: Vec<u64> = results[t].iter().map(f).collect();
            json!({"min": v.iter().min(), "max": v.iter().max(), "runs": v})
        };
        rows.push(json!({
            "name": target.name,
            "binary": target.bin,
            "size_bytes": size,
            "init": init,
            "first_invoke": inv,
            "total": tot,
            "ratio_total_vs_naive": ratio,
            "ratio_init_vs_naive": init as f64 / n_init as f64,
            "ratio_first_invoke_vs_naive": inv as f64 / n_inv as f64,
            "init_runs": spread(&|r| r.init),
            "first_invoke_runs": spread(&|r| r.first_invoke),
            "total_runs": spread(&|r| r.init + r.first_invoke),
            "remainder_runs": spread(&|r| r.remainder),
            "answer": {"status": results[t][0].status, "body": results[t][0].answer},
        }));
    }
    println!("target: function total <= 0.5 x naive total");
    let report = json!({
        "what": "instructions (callgrind Ir, all threads) from exec to the first GET /next (init) \
                 and from the first invocation to its response post (first_invoke); \
                 median over runs",
        "unit": "instructions",
        "runs": args.runs,
        "event": "ONIMCONNECTORMESSAGEADD, API Gateway HTTP API payload 2.0, \
                  form body from `b24-events send --print-body`",
        "body_base64": args.base64,
        "machine": machine(),
        "results": rows,
    });
    let out = match &args.out {
        Some(p) => p.clone(),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("target"))
            .join("coldstart/results.json"),
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap() + "\n")
        .map_err(|e| format!("{}: {e}", out.display()))?;
    println!("JSON: {}", out.display());
    if args.keep || args.annotate {
        println!("dumps and logs: {}", work.display());
    }
    Ok(())
}

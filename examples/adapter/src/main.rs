//! `b24-example-adapter`: the example adapter against `CHANGES_QUEUE_URL`, acking to
//! `ACKS_QUEUE_URL` (defaults: the queues of `make dev`).
//!
//! ```text
//! b24-example-adapter [--once | --idle SECONDS] [--out FILE.jsonl]
//! ```
//! - no option: runs until stopped;
//! - `--idle N`: stops once no change was handled for N seconds;
//! - `--once`: handles one batch (up to 10 changes, waiting up to 20 s for it);
//! - `--out FILE`: the stand-in channel appends to FILE instead of printing to stdout.

use b24_example_adapter::config::{acks_queue_url_from_env, queue_url_from_env, sqs_client};
use b24_example_adapter::{AckSink, Adapter, Batch, Channel, JsonlChannel};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: b24-example-adapter [--once | --idle SECONDS] [--out FILE.jsonl]
Reads CHANGES_QUEUE_URL, sends acks to ACKS_QUEUE_URL (defaults: the queues of `make dev`).";

#[derive(Default)]
struct Args {
    once: bool,
    idle: Option<Duration>,
    out: Option<PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--once" => args.once = true,
            "--idle" => {
                let n = it.next().and_then(|n| n.parse().ok());
                args.idle = Some(Duration::from_secs(n.ok_or("--idle needs seconds")?));
            }
            "--out" => args.out = Some(it.next().ok_or("--out needs a file")?.into()),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// Logs a batch, and the acks the acks queue took.
fn report(batch: &Batch) {
    eprintln!(
        "received {}: delivered {}, handled {}, duplicates {}, invalid {}, failed {}, held back {}; \
         acks sent {} (resent {}), not sent {}",
        batch.received,
        batch.delivered.len(),
        batch.handled,
        batch.duplicates,
        batch.invalid,
        batch.failed,
        batch.held_back,
        batch.acks.len(),
        batch.acks_resent,
        batch.acks_failed
    );
    for ack in &batch.acks {
        eprintln!("ack sent: {}", ack.to_json_string());
    }
}

async fn run(args: &Args, channel: impl Channel) -> Result<(), String> {
    let queue_url = queue_url_from_env();
    let acks_url = acks_queue_url_from_env();
    eprintln!("reading {queue_url}, acking to {acks_url}");
    let acks = AckSink::new(sqs_client(&acks_url).await, acks_url);
    let mut adapter = Adapter::new(sqs_client(&queue_url).await, queue_url, channel, acks);
    if args.once {
        let batch = adapter.poll(20).await?;
        report(&batch);
        return Ok(());
    }
    adapter.run(args.idle, report).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{}{USAGE}", if e.is_empty() { e } else { format!("{e}\n") });
            return ExitCode::from(2);
        }
    };
    let result = match &args.out {
        None => run(&args, JsonlChannel::stdout()).await,
        Some(path) => match JsonlChannel::append(path) {
            Ok(channel) => run(&args, channel).await,
            Err(e) => Err(format!("cannot open {}: {e}", path.display())),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

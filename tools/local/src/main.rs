//! `b24-local`: install and run the local AWS stand-ins, and run event sources against
//! `cargo lambda watch`. See tools/local/README.md.

use b24_local::aws::{AwsClients, AwsEnv, Endpoints};
use b24_local::runner::{
    FilterCriteria, HttpInvoker, RunReport, Runner, RunnerConfig, Source, SqsSource,
    StartingPosition, StopReason, StreamSource,
};
use b24_local::{
    install_ddb, install_moto, repo_root, DdbOptions, DynamoDbLocal, LocalError, Moto,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "b24-local",
    version,
    about = "Local AWS stand-ins for development and tests"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install DynamoDB Local (.tools/ddb) and/or moto (.venv-moto); idempotent.
    Install {
        #[arg(value_enum)]
        what: InstallWhat,
    },
    /// Run DynamoDB Local on 127.0.0.1 until SIGINT/SIGTERM; prints AWS_ENDPOINT_URL=… when ready.
    Ddb {
        /// Port (default: a free one).
        #[arg(long)]
        port: Option<u16>,
        /// Keep tables in this directory (-dbPath) instead of in memory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// One database for every credential and region (-sharedDb).
        #[arg(long)]
        shared_db: bool,
    },
    /// Run moto's server on 127.0.0.1 until SIGINT/SIGTERM; prints AWS_ENDPOINT_URL=… when ready.
    Moto {
        /// Port (default: a free one).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Play Lambda's event source mappings: poll SQS queues / DynamoDB streams and invoke
    /// functions through the Invoke API (cargo lambda watch).
    Run(Box<RunArgs>),
}

#[derive(Clone, Copy, ValueEnum)]
enum InstallWhat {
    Ddb,
    Moto,
    All,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct RunArgs {
    /// A JSON config file with several sources (see README).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    source: Option<RunSource>,
    #[command(flatten)]
    common: RunCommon,
}

#[derive(Args)]
struct RunCommon {
    /// Invoke API base URL (default: the config's, else http://127.0.0.1:9000).
    #[arg(long, global = true)]
    invoke_url: Option<String>,
    /// Per-invocation timeout in seconds (default 900).
    #[arg(long, global = true)]
    invoke_timeout: Option<u64>,
    /// Exit 0 once nothing arrived for this many seconds (after draining).
    #[arg(long, global = true)]
    until_idle: Option<f64>,
    /// Stop after this many seconds at most (exit 3 if --until-idle was not reached by then).
    #[arg(long, global = true)]
    max_seconds: Option<f64>,
}

#[derive(Subcommand)]
enum RunSource {
    /// One SQS queue.
    Sqs {
        /// Queue URL.
        #[arg(long, required_unless_present = "queue_name")]
        queue_url: Option<String>,
        /// Queue name (resolved with GetQueueUrl), instead of a URL.
        #[arg(long, conflicts_with = "queue_url")]
        queue_name: Option<String>,
        /// Function name.
        #[arg(long)]
        function: String,
        /// Messages per invocation (1..=10000; above 10 needs --batching-window).
        #[arg(long, default_value_t = 10)]
        batch_size: usize,
        /// Seconds to gather a batch after the first message.
        #[arg(long, default_value_t = 0)]
        batching_window: u64,
        /// Long-poll wait per ReceiveMessage (0..=20).
        #[arg(long, default_value_t = 20)]
        wait_seconds: i32,
        /// FunctionResponseTypes: ReportBatchItemFailures.
        #[arg(long)]
        report_batch_item_failures: bool,
        /// A filter pattern (JSON); repeat for several (OR-ed).
        #[arg(long = "filter")]
        filters: Vec<String>,
    },
    /// One DynamoDB stream.
    Stream {
        /// Table whose latest stream to read.
        #[arg(long, required_unless_present = "stream_arn")]
        table: Option<String>,
        /// Stream ARN, instead of a table.
        #[arg(long, conflicts_with = "table")]
        stream_arn: Option<String>,
        /// Function name.
        #[arg(long)]
        function: String,
        /// Records per invocation (1..=10000).
        #[arg(long, default_value_t = 100)]
        batch_size: usize,
        /// TRIM_HORIZON or LATEST.
        #[arg(long, default_value = "TRIM_HORIZON")]
        starting_position: String,
        /// A filter pattern (JSON); repeat for several (OR-ed).
        #[arg(long = "filter")]
        filters: Vec<String>,
        /// MaximumRetryAttempts (-1: unbounded).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        max_retries: i64,
        /// BisectBatchOnFunctionError.
        #[arg(long)]
        bisect: bool,
        /// On-failure destination queue URL.
        #[arg(long)]
        on_failure_queue_url: Option<String>,
        /// MaximumRecordAgeInSeconds (-1: no limit).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        max_record_age: i64,
        /// FunctionResponseTypes: ReportBatchItemFailures.
        #[arg(long)]
        report_batch_item_failures: bool,
        /// Milliseconds between empty polls of a shard.
        #[arg(long, default_value_t = 250)]
        poll_interval_ms: u64,
        /// Seconds to gather a batch after the first record.
        #[arg(long, default_value_t = 0)]
        batching_window: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Install { what } => install(what),
        Cmd::Ddb {
            port,
            data_dir,
            shared_db,
        } => serve_ddb(port, data_dir, shared_db),
        Cmd::Moto { port } => serve_moto(port),
        Cmd::Run(args) => run(*args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("b24-local: {e}");
            ExitCode::from(2)
        }
    }
}

fn install(what: InstallWhat) -> Result<ExitCode, LocalError> {
    let root = repo_root();
    if matches!(what, InstallWhat::Ddb | InstallWhat::All) {
        let t = Instant::now();
        let inst = install_ddb(&root)?;
        eprintln!(
            "b24-local: DynamoDB Local installed ({}) in {:.1} s",
            inst.jar_dir.display(),
            t.elapsed().as_secs_f64()
        );
    }
    if matches!(what, InstallWhat::Moto | InstallWhat::All) {
        let t = Instant::now();
        let bin = install_moto(&root)?;
        eprintln!(
            "b24-local: moto installed ({}) in {:.1} s",
            bin.display(),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> Result<tokio::runtime::Runtime, LocalError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| LocalError::Io {
            context: "starting the async runtime".into(),
            source,
        })
}

/// Installs SIGINT and SIGTERM handlers now (so a signal that arrives before the first poll is
/// not fatal) and returns a future that completes on either. Needs a runtime context.
fn termination() -> Result<impl std::future::Future<Output = ()>, LocalError> {
    use tokio::signal::unix::{signal, SignalKind};
    let handler = |kind| {
        signal(kind).map_err(|source| LocalError::Io {
            context: "installing signal handlers".into(),
            source,
        })
    };
    let mut int = handler(SignalKind::interrupt())?;
    let mut term = handler(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// Prints the endpoint line once the signal handlers are in place, then waits for a signal or
/// for the server to die.
fn serve(endpoint: &str, alive: impl Fn() -> bool) -> Result<ExitCode, LocalError> {
    let rt = runtime()?;
    let died = rt.block_on(async {
        let stop = termination()?;
        println!("AWS_ENDPOINT_URL={endpoint}");
        let _ = std::io::stdout().flush();
        Ok::<_, LocalError>(tokio::select! {
            _ = stop => false,
            _ = async {
                while alive() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            } => true,
        })
    })?;
    Ok(if died {
        eprintln!("b24-local: the server exited on its own");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn serve_ddb(
    port: Option<u16>,
    data_dir: Option<PathBuf>,
    shared_db: bool,
) -> Result<ExitCode, LocalError> {
    let mut server = DynamoDbLocal::start(DdbOptions {
        port,
        data_dir,
        shared_db,
        ..DdbOptions::default()
    })?;
    let code = serve(&server.endpoint(), || server.is_running());
    if !server.is_running() {
        eprint!("{}", server.log());
    }
    server.stop();
    code
}

fn serve_moto(port: Option<u16>) -> Result<ExitCode, LocalError> {
    let mut server = Moto::start(port)?;
    let code = serve(&server.endpoint(), || server.is_running());
    server.stop();
    code
}

fn secs(s: f64, what: &str) -> Result<Duration, LocalError> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| LocalError::Config(format!("{what} {s} is not a duration")))
}

fn run(args: RunArgs) -> Result<ExitCode, LocalError> {
    let (sources, mut invoke_url, timeout, endpoints, region) = match (&args.config, args.source) {
        (Some(path), None) => {
            let cfg = RunnerConfig::load(path)?;
            let endpoints = Endpoints {
                sqs: cfg.sqs_endpoint.clone(),
                dynamodb: cfg.dynamodb_endpoint.clone(),
                streams: None,
            };
            (
                cfg.to_sources()?,
                cfg.invoke_url.clone(),
                cfg.invoke_timeout_seconds,
                endpoints,
                cfg.region.clone(),
            )
        }
        (None, Some(src)) => (
            vec![source_from_flags(src)?],
            None,
            None,
            Endpoints::default(),
            None,
        ),
        _ => {
            return Err(LocalError::Config(
                "give --config FILE or a source: `run sqs …` / `run stream …`".into(),
            ))
        }
    };
    if args.common.invoke_url.is_some() {
        invoke_url = args.common.invoke_url.clone();
    }
    let timeout = args.common.invoke_timeout.or(timeout).unwrap_or(900);
    let idle = args
        .common
        .until_idle
        .map(|s| secs(s, "--until-idle"))
        .transpose()?;
    let max = args
        .common
        .max_seconds
        .map(|s| secs(s, "--max-seconds"))
        .transpose()?;
    let mut env = AwsEnv::from_env();
    if let Some(r) = region {
        env.region = r;
    }
    let invoker = HttpInvoker::new(invoke_url.unwrap_or_else(|| "http://127.0.0.1:9000".into()))
        .with_timeout(Duration::from_secs(timeout));
    let rt = runtime()?;
    let report: RunReport = rt.block_on(async {
        let stop = termination()?;
        let clients = AwsClients::new(&env, &endpoints);
        let handle = Runner::new(clients, std::sync::Arc::new(invoker))
            .sources(sources)
            .start()
            .await?;
        Ok::<_, LocalError>(handle.run_until(idle, max, stop).await)
    })?;
    for s in &report.sources {
        eprintln!(
            "b24-local run: done source={} invocations={} received={} filtered={} function_errors={} item_failures={} deleted={} discarded={} on_failure_sent={}",
            s.name, s.invocations, s.records_received, s.records_filtered, s.function_errors,
            s.item_failures, s.deleted, s.discarded, s.on_failure_sent
        );
    }
    Ok(match report.stop {
        StopReason::MaxDuration if idle.is_some() => {
            eprintln!("b24-local run: not idle within --max-seconds");
            ExitCode::from(3)
        }
        _ => ExitCode::SUCCESS,
    })
}

fn source_from_flags(src: RunSource) -> Result<Source, LocalError> {
    Ok(match src {
        RunSource::Sqs {
            queue_url,
            queue_name,
            function,
            batch_size,
            batching_window,
            wait_seconds,
            report_batch_item_failures,
            filters,
        } => {
            let s = match (queue_url, queue_name) {
                (Some(u), _) => SqsSource::new(u, function),
                (None, Some(n)) => SqsSource::named(n, function),
                (None, None) => {
                    return Err(LocalError::Config("--queue-url or --queue-name".into()))
                }
            };
            Source::Sqs(
                s.batch_size(batch_size)
                    .batching_window(Duration::from_secs(batching_window))
                    .wait_seconds(wait_seconds)
                    .report_batch_item_failures(report_batch_item_failures)
                    .filters(FilterCriteria::from_strs(&filters)?),
            )
        }
        RunSource::Stream {
            table,
            stream_arn,
            function,
            batch_size,
            starting_position,
            filters,
            max_retries,
            bisect,
            on_failure_queue_url,
            max_record_age,
            report_batch_item_failures,
            poll_interval_ms,
            batching_window,
        } => {
            let mut s = match (table, stream_arn) {
                (Some(t), _) => StreamSource::table(t, function),
                (None, Some(a)) => StreamSource::arn(a, function),
                (None, None) => return Err(LocalError::Config("--table or --stream-arn".into())),
            };
            s = s
                .batch_size(batch_size)
                .starting_position(starting_position.parse::<StartingPosition>()?)
                .filters(FilterCriteria::from_strs(&filters)?)
                .bisect(bisect)
                .report_batch_item_failures(report_batch_item_failures)
                .poll_interval(Duration::from_millis(poll_interval_ms))
                .batching_window(Duration::from_secs(batching_window));
            s.max_retries = match max_retries {
                -1 => None,
                n => Some(u32::try_from(n).map_err(|_| {
                    LocalError::Config(format!("--max-retries {n}: -1 or 0..=10000"))
                })?),
            };
            s.max_record_age = match max_record_age {
                -1 => None,
                n => Some(Duration::from_secs(u64::try_from(n).map_err(|_| {
                    LocalError::Config(format!("--max-record-age {n}: -1 or seconds"))
                })?)),
            };
            s.on_failure_queue_url = on_failure_queue_url;
            Source::Stream(s)
        }
    })
}

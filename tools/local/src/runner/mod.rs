//! The local event-source runner: it plays Lambda's event source mappings for SQS queues and
//! DynamoDB streams, invoking functions through an [`Invoker`] (normally [`HttpInvoker`] on
//! `cargo lambda watch`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), b24_local::LocalError> {
//! use b24_local::aws::AwsClients;
//! use b24_local::runner::{HttpInvoker, Runner, SqsSource, StreamSource, StartingPosition};
//! use std::{sync::Arc, time::Duration};
//!
//! let report = Runner::new(AwsClients::from_env(), Arc::new(HttpInvoker::new("http://127.0.0.1:9000")))
//!     .source(SqsSource::new("http://127.0.0.1:5000/000000000000/jobs", "b24-fn-worker").batch_size(5))
//!     .source(StreamSource::table("bitrix24", "b24-fn-projector").starting_position(StartingPosition::TrimHorizon))
//!     .run_until_idle(Duration::from_secs(2), Duration::from_secs(60))
//!     .await?;
//! assert_eq!(report.stop, b24_local::runner::StopReason::Idle);
//! # Ok(()) }
//! ```

mod batch;
mod config;
mod filter;
mod invoke;
mod response;
mod sqs;
mod stream;
mod stream_json;

pub use config::{RunnerConfig, SourceConfig};
pub use filter::{FilterCriteria, Pattern};
pub use invoke::{invoker_fn, BoxFuture, FnInvoker, HttpInvoker, InvokeOutcome, Invoker};
pub use sqs::SqsSource;
pub use stream::{StartingPosition, StreamSource};
pub use stream_json::attribute_value_json;

use crate::aws::AwsClients;
use crate::LocalError;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One event source.
#[derive(Debug, Clone)]
pub enum Source {
    /// An SQS queue.
    Sqs(SqsSource),
    /// A DynamoDB stream.
    Stream(StreamSource),
}

impl From<SqsSource> for Source {
    fn from(s: SqsSource) -> Self {
        Source::Sqs(s)
    }
}

impl From<StreamSource> for Source {
    fn from(s: StreamSource) -> Self {
        Source::Stream(s)
    }
}

impl Source {
    /// The source's name (in logs and reports).
    pub fn name(&self) -> &str {
        match self {
            Source::Sqs(s) => &s.name,
            Source::Stream(s) => &s.name,
        }
    }
}

/// One invocation, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationLog {
    /// The source's name.
    pub source: String,
    /// The function invoked.
    pub function: String,
    /// Records in the batch.
    pub batch_size: usize,
    /// Records reported or counted as failed (the whole batch on a function error).
    pub failures: usize,
    /// Wall-clock duration of the invocation.
    pub duration_ms: u128,
    /// `ok`, `partial`, `function_error`, `invalid_response` or `invoke_error`.
    pub outcome: &'static str,
}

impl fmt::Display for InvocationLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "b24-local run: source={} function={} batch={} failures={} duration_ms={} outcome={}",
            self.source,
            self.function,
            self.batch_size,
            self.failures,
            self.duration_ms,
            self.outcome
        )
    }
}

/// What the runner reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerEvent {
    /// An invocation finished.
    Invocation(InvocationLog),
    /// Anything else worth a line: AWS errors, on-failure records, discarded records.
    Note {
        /// The source's name.
        source: String,
        /// What happened.
        message: String,
    },
}

impl fmt::Display for RunnerEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunnerEvent::Invocation(i) => i.fmt(f),
            RunnerEvent::Note { source, message } => {
                write!(f, "b24-local run: source={source} {message}")
            }
        }
    }
}

/// Receives every [`RunnerEvent`]; the default prints one line per event on stderr.
pub type EventSink = Arc<dyn Fn(&RunnerEvent) + Send + Sync>;

/// Per-source counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceReport {
    /// The source's name.
    pub name: String,
    /// Invocations made (function errors included, invoke errors not).
    pub invocations: u64,
    /// Records (messages) received from the source.
    pub records_received: u64,
    /// Records dropped by the filter criteria.
    pub records_filtered: u64,
    /// Invocations that ended in a function error (or an invalid batch response).
    pub function_errors: u64,
    /// Attempts that could not invoke the function at all.
    pub invoke_errors: u64,
    /// Items reported in `batchItemFailures`.
    pub item_failures: u64,
    /// SQS messages deleted (processed or filtered out).
    pub deleted: u64,
    /// Stream records given up on (retries exhausted or too old).
    pub discarded: u64,
    /// On-failure records sent to the destination queue.
    pub on_failure_sent: u64,
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Nothing arrived for the idle period.
    Idle,
    /// The overall time bound passed.
    MaxDuration,
    /// [`RunHandle::stop`] or the stop future (a signal) ended it.
    Stopped,
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// Why it ended.
    pub stop: StopReason,
    /// How long it ran.
    pub elapsed: Duration,
    /// One entry per source, in the order they were added.
    pub sources: Vec<SourceReport>,
}

impl RunReport {
    /// The report of the source named `name`.
    pub fn source(&self, name: &str) -> Option<&SourceReport> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// Invocations over all sources.
    pub fn invocations(&self) -> u64 {
        self.sources.iter().map(|s| s.invocations).sum()
    }
}

/// When anything last arrived, and how many sources hold records right now.
#[derive(Debug)]
pub(crate) struct Activity {
    last: Mutex<Instant>,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            last: Mutex::new(Instant::now()),
            busy: AtomicUsize::new(0),
        }
    }

    pub(crate) fn touch(&self) {
        if let Ok(mut l) = self.last.lock() {
            *l = Instant::now();
        }
    }

    /// Marks the caller busy until the guard drops (records in hand: never idle).
    pub(crate) fn busy(self: &Arc<Self>) -> BusyGuard {
        self.touch();
        self.busy.fetch_add(1, Ordering::SeqCst);
        BusyGuard(self.clone())
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::SeqCst) > 0 {
            return None;
        }
        self.last.lock().ok().map(|l| l.elapsed())
    }

    fn reset(&self) {
        self.touch();
    }
}

pub(crate) struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a source task needs.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) clients: AwsClients,
    pub(crate) invoker: Arc<dyn Invoker>,
    pub(crate) activity: Arc<Activity>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) sink: EventSink,
    pub(crate) stats: Arc<Mutex<SourceReport>>,
    pub(crate) name: String,
}

impl Ctx {
    pub(crate) fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Sleeps for `d`, or less when the run is stopping; returns whether it is stopping.
    pub(crate) async fn sleep(&self, d: Duration) -> bool {
        let mut rx = self.shutdown.clone();
        if *rx.borrow() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => self.stopping(),
            _ = rx.wait_for(|s| *s) => true,
        }
    }

    pub(crate) fn stat(&self, f: impl FnOnce(&mut SourceReport)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }

    pub(crate) fn note(&self, message: impl Into<String>) {
        (self.sink)(&RunnerEvent::Note {
            source: self.name.clone(),
            message: message.into(),
        });
    }

    pub(crate) fn log_invocation(
        &self,
        function: &str,
        batch_size: usize,
        failures: usize,
        started: Instant,
        outcome: &'static str,
    ) {
        (self.sink)(&RunnerEvent::Invocation(InvocationLog {
            source: self.name.clone(),
            function: function.to_string(),
            batch_size,
            failures,
            duration_ms: started.elapsed().as_millis(),
            outcome,
        }));
    }
}

/// Runs several sources in one process.
pub struct Runner {
    clients: AwsClients,
    invoker: Arc<dyn Invoker>,
    sources: Vec<Source>,
    sink: EventSink,
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

fn stderr_sink() -> EventSink {
    Arc::new(|e: &RunnerEvent| eprintln!("{e}"))
}

impl Runner {
    /// A runner with no sources yet, logging to stderr.
    pub fn new(clients: AwsClients, invoker: Arc<dyn Invoker>) -> Self {
        Runner {
            clients,
            invoker,
            sources: Vec::new(),
            sink: stderr_sink(),
        }
    }

    /// Adds a source.
    pub fn source(mut self, source: impl Into<Source>) -> Self {
        self.sources.push(source.into());
        self
    }

    /// Adds several sources.
    pub fn sources(mut self, sources: impl IntoIterator<Item = Source>) -> Self {
        self.sources.extend(sources);
        self
    }

    /// Sends every event to `sink` instead of stderr.
    pub fn on_event(mut self, sink: impl Fn(&RunnerEvent) + Send + Sync + 'static) -> Self {
        self.sink = Arc::new(sink);
        self
    }

    /// Resolves every source (queue ARNs, stream ARNs, `LATEST` positions) and starts polling.
    /// When this returns, a `LATEST` stream source sees every record written afterwards.
    pub async fn start(self) -> Result<RunHandle, LocalError> {
        if self.sources.is_empty() {
            return Err(LocalError::Config("no sources to run".into()));
        }
        let mut names = std::collections::HashSet::new();
        for s in &self.sources {
            if !names.insert(s.name().to_string()) {
                return Err(LocalError::Config(format!(
                    "two sources are named {:?}; give them distinct names",
                    s.name()
                )));
            }
        }
        let (tx, rx) = watch::channel(false);
        let activity = Arc::new(Activity::new());
        let mut prepared = Vec::new();
        let mut stats = Vec::new();
        for source in self.sources {
            let st = Arc::new(Mutex::new(SourceReport {
                name: source.name().to_string(),
                ..SourceReport::default()
            }));
            let ctx = Ctx {
                clients: self.clients.clone(),
                invoker: self.invoker.clone(),
                activity: activity.clone(),
                shutdown: rx.clone(),
                sink: self.sink.clone(),
                stats: st.clone(),
                name: source.name().to_string(),
            };
            // Every source is resolved before any starts polling.
            let task: BoxFuture<'static, ()> = match source {
                Source::Sqs(s) => Box::pin(s.prepare(&ctx).await?.run(ctx)),
                Source::Stream(s) => Box::pin(s.prepare(&ctx).await?.run(ctx)),
            };
            prepared.push(task);
            stats.push(st);
        }
        let tasks = prepared.into_iter().map(tokio::spawn).collect();
        activity.reset();
        Ok(RunHandle {
            shutdown: tx,
            tasks,
            stats,
            activity,
            started: Instant::now(),
        })
    }

    /// Starts, then runs until nothing arrived for `idle` (and nothing is being processed),
    /// or until `max` passed.
    pub async fn run_until_idle(
        self,
        idle: Duration,
        max: Duration,
    ) -> Result<RunReport, LocalError> {
        Ok(self.start().await?.until_idle(idle, max).await)
    }
}

/// A running [`Runner`].
#[derive(Debug)]
pub struct RunHandle {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    stats: Vec<Arc<Mutex<SourceReport>>>,
    activity: Arc<Activity>,
    started: Instant,
}

/// How long stopping waits for in-flight invocations before aborting them.
const STOP_GRACE: Duration = Duration::from_secs(10);

impl RunHandle {
    /// The counters so far.
    pub fn report(&self, stop: StopReason) -> RunReport {
        RunReport {
            stop,
            elapsed: self.started.elapsed(),
            sources: self
                .stats
                .iter()
                .map(|s| s.lock().map(|s| s.clone()).unwrap_or_default())
                .collect(),
        }
    }

    /// Runs until idle for `idle` or `max` passed.
    pub async fn until_idle(self, idle: Duration, max: Duration) -> RunReport {
        self.run_until(Some(idle), Some(max), std::future::pending::<()>())
            .await
    }

    /// Runs until idle for `idle` (if given), `max` passed (if given) or `stop` completes
    /// (e.g. SIGINT/SIGTERM), then stops gracefully: in-flight invocations finish (up to 10 s).
    pub async fn run_until(
        self,
        idle: Option<Duration>,
        max: Option<Duration>,
        stop: impl Future<Output = ()>,
    ) -> RunReport {
        let deadline = max.map(|m| self.started + m);
        tokio::pin!(stop);
        let reason = loop {
            if let (Some(idle), Some(for_)) = (idle, self.activity.idle_for()) {
                if for_ >= idle {
                    break StopReason::Idle;
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break StopReason::MaxDuration;
            }
            if self.tasks.iter().all(JoinHandle::is_finished) {
                break StopReason::Stopped;
            }
            tokio::select! {
                _ = &mut stop => break StopReason::Stopped,
                _ = tokio::time::sleep(Duration::from_millis(25)) => {}
            }
        };
        self.finish(reason).await
    }

    /// Stops now (gracefully) and returns the report.
    pub async fn stop(self) -> RunReport {
        self.finish(StopReason::Stopped).await
    }

    async fn finish(mut self, reason: StopReason) -> RunReport {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        for task in &mut self.tasks {
            if tokio::time::timeout_at(deadline, &mut *task).await.is_err() {
                task.abort();
            }
        }
        self.report(reason)
    }
}

impl Drop for RunHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn invocation_log_is_one_line() {
        let l = InvocationLog {
            source: "jobs".into(),
            function: "fn".into(),
            batch_size: 3,
            failures: 1,
            duration_ms: 12,
            outcome: "partial",
        };
        assert_eq!(
            l.to_string(),
            "b24-local run: source=jobs function=fn batch=3 failures=1 duration_ms=12 outcome=partial"
        );
    }
}

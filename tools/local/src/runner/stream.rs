//! The DynamoDB Streams event source: reads every shard in order and invokes the function with
//! `DynamoDBEvent` batches, with Lambda's stream error handling (partial batch responses,
//! bisection, bounded retries, maximum record age, on-failure destination).

use super::batch::{invoke_batch, BatchOutcome};
use super::filter::FilterCriteria;
use super::stream_json::{stream_rec, StreamRec};
use super::Ctx;
use crate::util::{now_millis, rfc3339, uuid_v4};
use crate::LocalError;
use aws_sdk_dynamodbstreams::operation::get_records::GetRecordsError;
use aws_sdk_dynamodbstreams::operation::get_shard_iterator::GetShardIteratorError;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Where to start reading a stream (Lambda's `StartingPosition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingPosition {
    /// The oldest record still in the stream.
    TrimHorizon,
    /// Only records written after the source started.
    Latest,
}

impl FromStr for StartingPosition {
    type Err = LocalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().replace('-', "_").as_str() {
            "TRIM_HORIZON" => Ok(StartingPosition::TrimHorizon),
            "LATEST" => Ok(StartingPosition::Latest),
            other => Err(LocalError::Config(format!(
                "starting position {other}: DynamoDB streams take TRIM_HORIZON or LATEST"
            ))),
        }
    }
}

/// A DynamoDB stream as an event source (Lambda's event source mapping for DynamoDB).
#[derive(Debug, Clone)]
pub struct StreamSource {
    /// Name in logs and reports (default `stream:<table>`).
    pub name: String,
    /// The table whose latest stream to read (DescribeTable → `LatestStreamArn`).
    pub table: Option<String>,
    /// The stream ARN, instead of a table.
    pub stream_arn: Option<String>,
    /// The function to invoke.
    pub function: String,
    /// Most records per invocation, 1..=10000 (default 100, as on AWS).
    pub batch_size: usize,
    /// `TRIM_HORIZON` (default) or `LATEST`.
    pub starting_position: StartingPosition,
    /// `FilterCriteria`: records that match no pattern are skipped and count as processed.
    pub filters: FilterCriteria,
    /// `MaximumRetryAttempts`: `None` retries until success (AWS's default -1).
    pub max_retries: Option<u32>,
    /// `BisectBatchOnFunctionError`.
    pub bisect: bool,
    /// The on-failure destination (an SQS queue URL) for records given up on.
    pub on_failure_queue_url: Option<String>,
    /// `MaximumRecordAgeInSeconds`: older records are given up on (`None`: no limit).
    pub max_record_age: Option<Duration>,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]` (default off, as on AWS).
    pub report_batch_item_failures: bool,
    /// Pause between empty polls of a shard (default 250 ms: Lambda polls 4 times a second).
    pub poll_interval: Duration,
    /// `MaximumBatchingWindowInSeconds` (default 0).
    pub batching_window: Duration,
    /// The function ARN written into on-failure records (default
    /// `arn:aws:lambda:<region>:000000000000:function:<function>`).
    pub function_arn: Option<String>,
    /// Where the shards' positions are kept between runs (an AWS mapping keeps its position
    /// too): a restarted runner resumes after what it processed instead of replaying the
    /// stream. Ignored when it belongs to another stream.
    pub checkpoint_file: Option<std::path::PathBuf>,
}

/// The positions a runner persisted: the stream they belong to, shard id → sequence number.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Checkpoints {
    stream_arn: String,
    shards: BTreeMap<String, String>,
}

impl Checkpoints {
    fn load(path: &std::path::Path, arn: &str) -> BTreeMap<String, String> {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Checkpoints>(&b).ok())
            .filter(|c| c.stream_arn == arn)
            .map(|c| c.shards)
            .unwrap_or_default()
    }

    /// Written to a temporary file and renamed: a crash never leaves half a file.
    fn save(path: &std::path::Path, arn: &str, shards: &BTreeMap<String, String>) {
        let c = Checkpoints {
            stream_arn: arn.to_string(),
            shards: shards.clone(),
        };
        let tmp = path.with_extension("tmp");
        let ok = serde_json::to_vec(&c)
            .ok()
            .and_then(|b| std::fs::write(&tmp, b).ok())
            .and_then(|()| std::fs::rename(&tmp, path).ok());
        if ok.is_none() {
            eprintln!("b24-local run: could not write {}", path.display());
        }
    }
}

const SHARD_REFRESH: Duration = Duration::from_secs(5);

impl StreamSource {
    /// A source for `table`'s stream, invoking `function`.
    pub fn table(table: impl Into<String>, function: impl Into<String>) -> Self {
        let table: String = table.into();
        StreamSource {
            name: format!("stream:{table}"),
            table: Some(table),
            stream_arn: None,
            function: function.into(),
            batch_size: 100,
            starting_position: StartingPosition::TrimHorizon,
            filters: FilterCriteria::none(),
            max_retries: None,
            bisect: false,
            on_failure_queue_url: None,
            max_record_age: None,
            report_batch_item_failures: false,
            poll_interval: Duration::from_millis(250),
            batching_window: Duration::ZERO,
            function_arn: None,
            checkpoint_file: None,
        }
    }

    /// A source for the stream `stream_arn`, invoking `function`.
    pub fn arn(stream_arn: impl Into<String>, function: impl Into<String>) -> Self {
        let arn: String = stream_arn.into();
        let mut s = StreamSource::table(String::new(), function);
        s.name = format!("stream:{}", arn.split('/').nth(1).unwrap_or(&arn));
        s.table = None;
        s.stream_arn = Some(arn);
        s
    }

    /// Sets the name used in logs and reports.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the batch size.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// Sets the starting position.
    pub fn starting_position(mut self, p: StartingPosition) -> Self {
        self.starting_position = p;
        self
    }

    /// Sets the filter criteria.
    pub fn filters(mut self, f: FilterCriteria) -> Self {
        self.filters = f;
        self
    }

    /// Sets `MaximumRetryAttempts` (`None`: unbounded).
    pub fn max_retries(mut self, n: Option<u32>) -> Self {
        self.max_retries = n;
        self
    }

    /// Turns `BisectBatchOnFunctionError` on or off.
    pub fn bisect(mut self, on: bool) -> Self {
        self.bisect = on;
        self
    }

    /// Sets the on-failure destination queue.
    pub fn on_failure_queue_url(mut self, url: impl Into<String>) -> Self {
        self.on_failure_queue_url = Some(url.into());
        self
    }

    /// Sets `MaximumRecordAgeInSeconds`.
    pub fn max_record_age(mut self, d: Option<Duration>) -> Self {
        self.max_record_age = d;
        self
    }

    /// Turns `ReportBatchItemFailures` on or off.
    pub fn report_batch_item_failures(mut self, on: bool) -> Self {
        self.report_batch_item_failures = on;
        self
    }

    /// Sets the pause between empty polls.
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// Sets the batching window.
    pub fn batching_window(mut self, d: Duration) -> Self {
        self.batching_window = d;
        self
    }

    fn validate(&self) -> Result<(), LocalError> {
        let bad = |m: String| Err(LocalError::Config(format!("source {}: {m}", self.name)));
        if !(1..=10_000).contains(&self.batch_size) {
            return bad(format!(
                "batch_size {} is not in 1..=10000",
                self.batch_size
            ));
        }
        if self.max_retries.is_some_and(|n| n > 10_000) {
            return bad("max_retries above 10000".into());
        }
        if self.batching_window > Duration::from_secs(300) {
            return bad("batching window above 300 s".into());
        }
        if self
            .max_record_age
            .is_some_and(|a| a.is_zero() || a > Duration::from_secs(604_800))
        {
            return bad("max record age must be 1..=604800 s".into());
        }
        if self.function.is_empty() {
            return bad("no function".into());
        }
        if self.poll_interval.is_zero() {
            return bad("poll interval must be above 0".into());
        }
        Ok(())
    }

    pub(crate) async fn prepare(self, ctx: &Ctx) -> Result<StreamTask, LocalError> {
        self.validate()?;
        let arn = match (&self.stream_arn, &self.table) {
            (Some(a), _) if !a.is_empty() => a.clone(),
            (_, Some(t)) if !t.is_empty() => {
                let out = ctx
                    .clients
                    .dynamodb
                    .describe_table()
                    .table_name(t)
                    .send()
                    .await
                    .map_err(|e| LocalError::aws("dynamodb:DescribeTable", e))?;
                let table = out.table.ok_or_else(|| {
                    LocalError::Config(format!("DescribeTable {t} returned no table"))
                })?;
                let enabled = table
                    .stream_specification
                    .as_ref()
                    .map(|s| s.stream_enabled);
                match (table.latest_stream_arn, enabled) {
                    (Some(a), Some(true) | None) => a,
                    _ => {
                        return Err(LocalError::Config(format!(
                            "table {t} has no enabled stream (StreamSpecification)"
                        )))
                    }
                }
            }
            _ => {
                return Err(LocalError::Config(format!(
                    "source {}: give a table or a stream_arn",
                    self.name
                )))
            }
        };
        let function_arn = self.function_arn.clone().unwrap_or_else(|| {
            format!(
                "arn:aws:lambda:{}:000000000000:function:{}",
                ctx.clients.region, self.function
            )
        });
        let mut task = StreamTask {
            src: self,
            arn,
            function_arn,
            region: ctx.clients.region.clone(),
            shards: BTreeMap::new(),
            last_refresh: Instant::now(),
            positions: Default::default(),
        };
        let saved = task
            .src
            .checkpoint_file
            .as_deref()
            .map(|p| Checkpoints::load(p, &task.arn))
            .unwrap_or_default();
        *task.positions.lock().unwrap_or_else(|e| e.into_inner()) = saved.clone();
        for sh in task.describe_shards(ctx).await? {
            let latest = task.src.starting_position == StartingPosition::Latest;
            let mut shard = Shard::new(sh.id, sh.parent, task.src.starting_position);
            shard.checkpoint = saved.get(&shard.id).cloned();
            if shard.checkpoint.is_some() {
                // Resumes after what an earlier run processed (trimmed: TRIM_HORIZON).
                task.shards.insert(shard.id.clone(), shard);
                continue;
            }
            if latest && sh.closed {
                shard.finished = true;
            } else if latest {
                // Fixed now, so every record written after start() returns is seen.
                shard.iterator = Some(task.shard_iterator(ctx, &shard).await?);
            }
            task.shards.insert(shard.id.clone(), shard);
        }
        Ok(task)
    }
}

#[derive(Debug)]
struct Shard {
    id: String,
    parent: Option<String>,
    iterator: Option<String>,
    /// The last sequence number processed (or skipped by the filters).
    checkpoint: Option<String>,
    start: StartingPosition,
    finished: bool,
    /// Consecutive failures reading it, for the log.
    failures: Failures,
}

impl Shard {
    fn new(id: String, parent: Option<String>, start: StartingPosition) -> Self {
        Shard {
            id,
            parent,
            iterator: None,
            checkpoint: None,
            start,
            finished: false,
            failures: Failures::default(),
        }
    }

    /// Where reading resumes, for the log.
    fn position(&self) -> String {
        match (&self.checkpoint, self.start) {
            (Some(seq), _) => format!("after sequence number {seq}"),
            (None, StartingPosition::TrimHorizon) => "at TRIM_HORIZON".into(),
            (None, StartingPosition::Latest) => "at LATEST".into(),
        }
    }
}

/// Consecutive failures polling a shard while it stays at one position.
#[derive(Debug, Default)]
struct Failures {
    position: String,
    count: u32,
    since: Option<Instant>,
    last_loud: Option<Instant>,
}

/// Failures at one position logged one by one; then quiet (a blip retries by itself).
const FAILURES_LOGGED: u32 = 3;
/// Failures at one position after which the shard counts as stuck: logged loudly, once a
/// `STUCK_LOG_EVERY`, until it moves on. Retrying goes on regardless: a transient error must
/// not skip records.
const STUCK_AFTER: u32 = 10;
const STUCK_LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, PartialEq, Eq)]
enum FailureLog {
    /// Log this failure.
    Each,
    /// Log that the shard is stuck.
    Stuck { count: u32, stuck_for: Duration },
    /// Say nothing.
    Quiet,
}

impl Failures {
    /// Counts one failure at `position`; what to log about it.
    fn record(&mut self, position: &str, now: Instant) -> FailureLog {
        if self.count == 0 || self.position != position {
            *self = Failures {
                position: position.to_string(),
                count: 0,
                since: Some(now),
                last_loud: None,
            };
        }
        self.count = self.count.saturating_add(1);
        if self.count <= FAILURES_LOGGED {
            return FailureLog::Each;
        }
        let due = self
            .last_loud
            .is_none_or(|t| now.saturating_duration_since(t) >= STUCK_LOG_EVERY);
        if self.count >= STUCK_AFTER && due {
            self.last_loud = Some(now);
            return FailureLog::Stuck {
                count: self.count,
                stuck_for: self
                    .since
                    .map_or(Duration::ZERO, |s| now.saturating_duration_since(s)),
            };
        }
        FailureLog::Quiet
    }
}

struct ShardInfo {
    id: String,
    parent: Option<String>,
    closed: bool,
}

/// A batch being worked on: its records, retries used, invocations of exactly these records.
struct Attempt {
    recs: Vec<StreamRec>,
    retries: u32,
    invokes: u32,
}

/// The last invocation of a batch given up on, for the on-failure record.
struct LastInvoke {
    request_id: String,
    function_error: Option<String>,
}

pub(crate) struct StreamTask {
    src: StreamSource,
    arn: String,
    function_arn: String,
    region: String,
    shards: BTreeMap<String, Shard>,
    last_refresh: Instant,
    /// The persisted positions (with `checkpoint_file`).
    positions: std::sync::Mutex<BTreeMap<String, String>>,
}

impl StreamTask {
    async fn describe_shards(&self, ctx: &Ctx) -> Result<Vec<ShardInfo>, LocalError> {
        let mut out = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let resp = ctx
                .clients
                .streams
                .describe_stream()
                .stream_arn(&self.arn)
                .set_exclusive_start_shard_id(start.clone())
                .send()
                .await
                .map_err(|e| LocalError::aws("dynamodbstreams:DescribeStream", e))?;
            let Some(desc) = resp.stream_description else {
                break;
            };
            for sh in desc.shards.unwrap_or_default() {
                if let Some(id) = sh.shard_id {
                    out.push(ShardInfo {
                        id,
                        parent: sh.parent_shard_id,
                        closed: sh
                            .sequence_number_range
                            .is_some_and(|r| r.ending_sequence_number.is_some()),
                    });
                }
            }
            match desc.last_evaluated_shard_id {
                Some(last) if Some(&last) != start.as_ref() => start = Some(last),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn shard_iterator(&self, ctx: &Ctx, shard: &Shard) -> Result<String, SdkIterError> {
        let req = ctx
            .clients
            .streams
            .get_shard_iterator()
            .stream_arn(&self.arn)
            .shard_id(&shard.id);
        let req = match (&shard.checkpoint, shard.start) {
            (Some(seq), _) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(seq),
            (None, StartingPosition::TrimHorizon) => {
                req.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            (None, StartingPosition::Latest) => req.shard_iterator_type(ShardIteratorType::Latest),
        };
        match req.send().await {
            Ok(out) => out.shard_iterator.ok_or(SdkIterError::Gone),
            Err(e) => Err(match e.as_service_error() {
                Some(GetShardIteratorError::ResourceNotFoundException(_)) => SdkIterError::Gone,
                Some(GetShardIteratorError::TrimmedDataAccessException(_)) => SdkIterError::Trimmed,
                _ => SdkIterError::Other(LocalError::aws("dynamodbstreams:GetShardIterator", e)),
            }),
        }
    }

    async fn refresh(&mut self, ctx: &Ctx) {
        self.last_refresh = Instant::now();
        match self.describe_shards(ctx).await {
            Ok(list) => {
                for sh in list {
                    // Shards that appear after start hold only new records.
                    self.shards.entry(sh.id.clone()).or_insert_with(|| {
                        Shard::new(sh.id, sh.parent, StartingPosition::TrimHorizon)
                    });
                }
            }
            Err(e) => ctx.note(format!("listing shards failed (retrying): {e}")),
        }
    }

    /// Shards to read now: unfinished, and their parent (if still listed) finished, so records
    /// of a key are delivered in order across shard splits.
    fn ready_shards(&self) -> Vec<String> {
        self.shards
            .values()
            .filter(|s| !s.finished)
            .filter(|s| {
                s.parent
                    .as_ref()
                    .and_then(|p| self.shards.get(p))
                    .is_none_or(|p| p.finished)
            })
            .map(|s| s.id.clone())
            .collect()
    }

    pub(crate) async fn run(mut self, ctx: Ctx) {
        while !ctx.stopping() {
            if self.last_refresh.elapsed() >= SHARD_REFRESH {
                self.refresh(&ctx).await;
            }
            let mut got = false;
            for id in self.ready_shards() {
                if ctx.stopping() {
                    break;
                }
                let Some(mut shard) = self.shards.remove(&id) else {
                    continue;
                };
                let res = self.poll_shard(&ctx, &mut shard).await;
                let finished = shard.finished;
                let failed = match res {
                    Ok(read) => {
                        shard.failures = Failures::default();
                        got |= read;
                        false
                    }
                    Err(e) => {
                        // The SDK's error context holds the whole response body (up to 1 MB).
                        let e = clip(&e.to_string(), 2000);
                        let at = shard.position();
                        match shard.failures.record(&at, Instant::now()) {
                            FailureLog::Each => ctx.note(format!("shard {id}: {e} (retrying)")),
                            FailureLog::Stuck { count, stuck_for } => ctx.note(format!(
                                "ERROR: shard {id} is STUCK {at}: {count} failures in a row for \
                                 {} s, nothing past this point is delivered; still retrying \
                                 (no record is skipped), logged once a minute. Last error: {e}",
                                stuck_for.as_secs()
                            )),
                            FailureLog::Quiet => {}
                        }
                        true
                    }
                };
                self.shards.insert(id.clone(), shard);
                if failed {
                    ctx.sleep(Duration::from_secs(1)).await;
                }
                if finished {
                    // A closed shard is done: look for its children now.
                    self.refresh(&ctx).await;
                }
            }
            if !got {
                ctx.sleep(self.src.poll_interval).await;
            }
        }
    }

    /// Reads one batch's worth from `shard` and processes it; whether anything was read.
    async fn poll_shard(&self, ctx: &Ctx, shard: &mut Shard) -> Result<bool, LocalError> {
        if shard.iterator.is_none() {
            match self.shard_iterator(ctx, shard).await {
                Ok(it) => shard.iterator = Some(it),
                Err(SdkIterError::Gone) => {
                    shard.finished = true;
                    return Ok(false);
                }
                Err(SdkIterError::Trimmed) => {
                    ctx.note(format!(
                        "shard {}: position trimmed, restarting at TRIM_HORIZON",
                        shard.id
                    ));
                    shard.checkpoint = None;
                    shard.start = StartingPosition::TrimHorizon;
                    return Ok(false);
                }
                Err(SdkIterError::Other(e)) => return Err(e),
            }
        }
        let batch = self.src.batch_size;
        let mut raw: Vec<Record> = Vec::new();
        let mut ended = false;
        let mut window_end: Option<Instant> = None;
        while let Some(it) = shard.iterator.clone() {
            let want = batch.saturating_sub(raw.len()).clamp(1, 1000);
            let res = ctx
                .clients
                .streams
                .get_records()
                .shard_iterator(it)
                .limit(i32::try_from(want).unwrap_or(1000))
                .send()
                .await;
            let out = match res {
                Ok(out) => out,
                Err(e) => {
                    match e.as_service_error() {
                        // Iterators expire after 15 minutes: a new one starts after the
                        // checkpoint once what was read is processed.
                        Some(GetRecordsError::ExpiredIteratorException(_)) => shard.iterator = None,
                        Some(GetRecordsError::TrimmedDataAccessException(_)) => {
                            shard.iterator = None;
                            shard.checkpoint = None;
                            shard.start = StartingPosition::TrimHorizon;
                        }
                        Some(GetRecordsError::ResourceNotFoundException(_)) => {
                            shard.iterator = None;
                            ended = true;
                        }
                        _ if raw.is_empty() => {
                            return Err(LocalError::aws("dynamodbstreams:GetRecords", e))
                        }
                        _ => {}
                    }
                    break;
                }
            };
            let page = out.records.unwrap_or_default();
            let full = page.len() >= want;
            shard.iterator = out.next_shard_iterator;
            if shard.iterator.is_none() {
                ended = true;
            }
            if !page.is_empty() && window_end.is_none() {
                window_end = Some(Instant::now() + self.src.batching_window);
            }
            raw.extend(page);
            if ended || raw.len() >= batch {
                break;
            }
            if full {
                continue;
            }
            match window_end {
                Some(end) if Instant::now() < end => {
                    if ctx
                        .sleep(
                            self.src
                                .poll_interval
                                .min(end.saturating_duration_since(Instant::now())),
                        )
                        .await
                    {
                        break;
                    }
                }
                _ => break,
            }
        }
        if raw.is_empty() {
            if ended {
                shard.finished = true;
            }
            return Ok(false);
        }
        let _busy = ctx.activity.busy();
        let n = raw.len() as u64;
        ctx.stat(|s| s.records_received += n);
        let recs: Vec<StreamRec> = raw
            .iter()
            .filter_map(|r| stream_rec(r, &self.arn, &self.region))
            .collect();
        let last = recs.last().map(|r| r.seq.clone());
        let (matched, skipped): (Vec<StreamRec>, Vec<StreamRec>) = recs
            .into_iter()
            .partition(|r| self.src.filters.matches(&r.json));
        if !skipped.is_empty() {
            let k = skipped.len() as u64;
            ctx.stat(|s| s.records_filtered += k);
        }
        for chunk in matched.chunks(batch) {
            if !self.process_batch(ctx, &shard.id, chunk.to_vec()).await {
                return Ok(true);
            }
        }
        if last.is_some() {
            shard.checkpoint = last;
            if let (Some(path), Some(seq)) = (&self.src.checkpoint_file, &shard.checkpoint) {
                let mut positions = self.positions.lock().unwrap_or_else(|e| e.into_inner());
                positions.insert(shard.id.clone(), seq.clone());
                Checkpoints::save(path, &self.arn, &positions);
            }
        }
        if ended {
            shard.finished = true;
        }
        Ok(true)
    }

    /// Delivers one batch with Lambda's error handling; `false` when stopped midway.
    async fn process_batch(&self, ctx: &Ctx, shard_id: &str, recs: Vec<StreamRec>) -> bool {
        let src = &self.src;
        let mut work = VecDeque::from([Attempt {
            recs,
            retries: 0,
            invokes: 0,
        }]);
        let mut backoff = Duration::from_millis(500);
        let mut last: Option<LastInvoke> = None;
        while let Some(mut a) = work.pop_front() {
            if ctx.stopping() {
                return false;
            }
            if let Some(max_age) = src.max_record_age {
                let now = now_millis();
                let max_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
                let old = a
                    .recs
                    .iter()
                    .take_while(|r| now.saturating_sub(r.created_ms) > max_ms)
                    .count();
                if old > 0 {
                    let aged: Vec<StreamRec> = a.recs.drain(..old).collect();
                    let prev = last.take().filter(|_| a.invokes > 0);
                    self.give_up(ctx, shard_id, &aged, "RecordAgeExceeded", a.invokes, prev)
                        .await;
                }
                if a.recs.is_empty() {
                    continue;
                }
            }
            let records: Vec<&Value> = a.recs.iter().map(|r| &r.json).collect();
            let request_id = uuid_v4();
            let size = a.recs.len();
            let outcome = invoke_batch(
                ctx,
                &src.function,
                &records,
                src.report_batch_item_failures,
                |id| a.recs.iter().any(|r| r.seq == id),
            )
            .await;
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => {
                    // Not invoked (connection refused, throttled, unknown function): retried
                    // without using a retry attempt, as AWS does for errors before invocation.
                    ctx.note(format!("{e}; retrying in {backoff:?}"));
                    work.push_front(a);
                    if ctx.sleep(backoff).await {
                        return false;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(500);
            a.invokes += 1;
            let function_error = match outcome {
                BatchOutcome::AllOk => continue,
                BatchOutcome::Partial(ids) => {
                    // Retried from the lowest failed sequence number; the records before it
                    // are done.
                    let from = a
                        .recs
                        .iter()
                        .position(|r| ids.contains(&r.seq))
                        .unwrap_or(0);
                    let rest: Vec<StreamRec> = a.recs.split_off(from);
                    let retried = Attempt {
                        recs: rest,
                        retries: a.retries + 1,
                        invokes: a.invokes,
                    };
                    if self.retries_left(a.retries) {
                        work.push_front(retried);
                    } else {
                        let li = LastInvoke {
                            request_id,
                            function_error: None,
                        };
                        self.give_up(
                            ctx,
                            shard_id,
                            &retried.recs,
                            "RetryAttemptsExhausted",
                            a.invokes,
                            Some(li),
                        )
                        .await;
                    }
                    last = None;
                    continue;
                }
                BatchOutcome::FunctionError {
                    function_error,
                    summary,
                } => {
                    ctx.note(format!("function error {summary} on {size} records"));
                    Some(function_error)
                }
                BatchOutcome::InvalidResponse(why) => {
                    ctx.note(format!("{why}: the whole batch failed"));
                    None
                }
            };
            // The whole batch failed (counted as a function error by invoke_batch).
            let li = LastInvoke {
                request_id,
                function_error: function_error.clone(),
            };
            if src.bisect && a.recs.len() > 1 {
                // Splitting does not use a retry attempt.
                let second = a.recs.split_off(a.recs.len() / 2);
                work.push_front(Attempt {
                    recs: second,
                    retries: a.retries,
                    invokes: 0,
                });
                work.push_front(Attempt {
                    recs: a.recs,
                    retries: a.retries,
                    invokes: 0,
                });
                last = Some(li);
            } else if self.retries_left(a.retries) {
                a.retries += 1;
                work.push_front(a);
                last = Some(li);
                if ctx.sleep(Duration::from_millis(50)).await {
                    return false;
                }
            } else {
                self.give_up(
                    ctx,
                    shard_id,
                    &a.recs,
                    "RetryAttemptsExhausted",
                    a.invokes,
                    Some(li),
                )
                .await;
                last = None;
            }
        }
        true
    }

    fn retries_left(&self, used: u32) -> bool {
        self.src.max_retries.is_none_or(|max| used < max)
    }

    /// Records given up on: the on-failure record (AWS's shape for stream sources) to the
    /// destination queue, or a log line when there is none. Built by hand: `aws_lambda_events`
    /// has no type for this record.
    async fn give_up(
        &self,
        ctx: &Ctx,
        shard_id: &str,
        recs: &[StreamRec],
        condition: &str,
        invokes: u32,
        last: Option<LastInvoke>,
    ) {
        let (Some(first), Some(end)) = (recs.first(), recs.last()) else {
            return;
        };
        let n = recs.len();
        ctx.stat(|s| s.discarded += n as u64);
        let Some(queue) = &self.src.on_failure_queue_url else {
            ctx.note(format!(
                "gave up on {n} records {}..{} ({condition}); no on-failure destination",
                first.seq, end.seq
            ));
            return;
        };
        let mut request = Map::new();
        request.insert(
            "requestId".into(),
            json!(last.as_ref().map_or_else(uuid_v4, |l| l.request_id.clone())),
        );
        request.insert("functionArn".into(), json!(self.function_arn));
        request.insert("condition".into(), json!(condition));
        request.insert("approximateInvokeCount".into(), json!(invokes));
        let mut record = Map::new();
        record.insert("requestContext".into(), Value::Object(request));
        if let Some(l) = &last {
            let mut response = Map::new();
            // The Invoke API answers 200 for function errors too.
            response.insert("statusCode".into(), json!(200));
            response.insert("executedVersion".into(), json!("$LATEST"));
            if let Some(fe) = &l.function_error {
                response.insert("functionError".into(), json!(fe));
            }
            record.insert("responseContext".into(), Value::Object(response));
        }
        record.insert("version".into(), json!("1.0"));
        record.insert("timestamp".into(), json!(rfc3339(now_millis(), true)));
        record.insert(
            "DDBStreamBatchInfo".into(),
            json!({
                "shardId": shard_id,
                "startSequenceNumber": first.seq,
                "endSequenceNumber": end.seq,
                "approximateArrivalOfFirstRecord": rfc3339(first.created_ms, false),
                "approximateArrivalOfLastRecord": rfc3339(end.created_ms, false),
                "batchSize": n,
                "streamArn": self.arn,
            }),
        );
        let body = Value::Object(record).to_string();
        for attempt in 1..=3 {
            match ctx
                .clients
                .sqs
                .send_message()
                .queue_url(queue)
                .message_body(&body)
                .send()
                .await
            {
                Ok(_) => {
                    ctx.stat(|s| s.on_failure_sent += 1);
                    ctx.note(format!(
                        "gave up on {n} records {}..{} ({condition}); on-failure record sent to {queue}",
                        first.seq, end.seq
                    ));
                    return;
                }
                Err(e) if attempt == 3 => ctx.note(format!(
                    "gave up on {n} records ({condition}); sending the on-failure record failed: {}",
                    LocalError::aws("sqs:SendMessage", e)
                )),
                Err(_) => {
                    if ctx.sleep(Duration::from_millis(200 * attempt)).await {
                        return;
                    }
                }
            }
        }
    }
}

enum SdkIterError {
    Gone,
    Trimmed,
    Other(LocalError),
}

impl From<SdkIterError> for LocalError {
    fn from(e: SdkIterError) -> Self {
        match e {
            SdkIterError::Gone => LocalError::Config("shard not found".into()),
            SdkIterError::Trimmed => LocalError::Config("shard position trimmed".into()),
            SdkIterError::Other(e) => e,
        }
    }
}

/// `s` cut to at most `max` bytes (on a character boundary), saying how much was left out.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &s[..end], s.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_clipped() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("abcdef", 4), "abcd… (2 more bytes)");
        assert_eq!(clip("ééé", 3), "é… (4 more bytes)");
    }

    #[test]
    fn failures_at_one_position_are_logged_loudly_once_a_minute() {
        let t0 = Instant::now();
        let mut f = Failures::default();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let logs: Vec<FailureLog> = (0..STUCK_AFTER as u64)
            .map(|i| f.record("at TRIM_HORIZON", at(i)))
            .collect();
        assert_eq!(
            logs[..3],
            [FailureLog::Each, FailureLog::Each, FailureLog::Each]
        );
        assert!(
            logs[3..9].iter().all(|l| *l == FailureLog::Quiet),
            "{logs:?}"
        );
        assert_eq!(
            logs[9],
            FailureLog::Stuck {
                count: 10,
                stuck_for: Duration::from_secs(9)
            }
        );
        // Then once a minute, however often it fails.
        for s in 10..69 {
            assert_eq!(f.record("at TRIM_HORIZON", at(s)), FailureLog::Quiet, "{s}");
        }
        assert_eq!(
            f.record("at TRIM_HORIZON", at(69)),
            FailureLog::Stuck {
                count: 70,
                stuck_for: Duration::from_secs(69)
            }
        );
        assert_eq!(f.record("at TRIM_HORIZON", at(70)), FailureLog::Quiet);
        // A new position starts over.
        assert_eq!(
            f.record("after sequence number 5", at(71)),
            FailureLog::Each
        );
        assert_eq!(f.count, 1);
        // So does a success (the task resets the tracker).
        f = Failures::default();
        assert_eq!(
            f.record("after sequence number 5", at(72)),
            FailureLog::Each
        );
    }
}

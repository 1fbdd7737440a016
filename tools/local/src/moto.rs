//! moto's server (`moto[server]` 5.2.5 in a repo-local venv `.venv-moto`) on 127.0.0.1 only:
//! SQS (standard and FIFO), EventBridge, KMS, SSM and Secrets Manager.

use crate::ddb::run_checked;
use crate::net::http_status;
use crate::root::{repo_root, which};
use crate::server::{shared_endpoint, Launch, LoopbackServer, SharedCell};
use crate::LocalError;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The pinned requirement `install_moto` installs.
pub const MOTO_REQUIREMENT: &str = "moto[server]==5.2.5";
const MOTO_VERSION: &str = "5.2.5";

/// `.venv-moto` under `root`.
pub fn moto_venv(root: &Path) -> PathBuf {
    root.join(".venv-moto")
}

/// Whether the venv has moto 5.2.5 with the server's Flask parts (no import of moto itself: fast).
fn moto_ready(venv: &Path) -> bool {
    let python = venv.join("bin/python");
    if !python.is_file() || !venv.join("bin/moto_server").is_file() {
        return false;
    }
    let check = format!(
        "import importlib.metadata as m, flask, flask_cors, sys; \
         sys.exit(0 if m.version('moto') == '{MOTO_VERSION}' else 1)"
    );
    Command::new(python)
        .args(["-c", &check])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The `moto_server` executable under `root`, or [`LocalError::NotInstalled`].
pub fn find_moto(root: &Path) -> Result<PathBuf, LocalError> {
    let venv = moto_venv(root);
    let bin = venv.join("bin/moto_server");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(LocalError::NotInstalled {
            what: "moto",
            dir: venv,
            fix: "moto",
        })
    }
}

/// Installs moto into `root/.venv-moto` (idempotent): `python3 -m venv .venv-moto`, then
/// `.venv-moto/bin/pip install 'moto[server]==5.2.5'` unless that version (with flask and
/// flask-cors, which the `server` extra brings) is already there.
pub fn install_moto(root: &Path) -> Result<PathBuf, LocalError> {
    let venv = moto_venv(root);
    if moto_ready(&venv) {
        return find_moto(root);
    }
    if !venv.join("bin/python").is_file() {
        let python = which("python3").ok_or(LocalError::MissingProgram {
            program: "python3",
            why: "creates the moto venv",
        })?;
        let mut cmd = Command::new(python);
        cmd.args(["-m", "venv"]).arg(&venv);
        run_checked(cmd, "python3 -m venv .venv-moto")?;
    }
    let mut cmd = Command::new(venv.join("bin/pip"));
    cmd.args([
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        MOTO_REQUIREMENT,
    ]);
    run_checked(cmd, "pip install moto[server]==5.2.5")?;
    if !moto_ready(&venv) {
        return Err(LocalError::Server {
            what: "moto install",
            detail: format!(
                "{MOTO_REQUIREMENT} installed but moto_server, flask or flask_cors is missing in {}",
                venv.display()
            ),
        });
    }
    find_moto(root)
}

/// A moto server bound to 127.0.0.1, killed when dropped (and by its watchdog when this
/// process dies).
#[derive(Debug)]
pub struct Moto {
    bin: PathBuf,
    root: PathBuf,
    server: LoopbackServer,
}

impl Moto {
    /// Starts `moto_server -H 127.0.0.1 -p PORT` (a free port when `None`) and waits until it
    /// answers (usually under a second).
    pub fn start(port: Option<u16>) -> Result<Self, LocalError> {
        Self::start_in(&repo_root(), port)
    }

    /// [`Moto::start`] with the venv under `root`.
    pub fn start_in(root: &Path, port: Option<u16>) -> Result<Self, LocalError> {
        let bin = find_moto(root)?;
        let mut server = LoopbackServer::new("moto", port, Duration::from_secs(2))?;
        server.spawn(|port| {
            Ok(Launch {
                program: bin.clone(),
                args: ["-H", "127.0.0.1", "-p", &port.to_string()]
                    .map(Into::into)
                    .to_vec(),
                cwd: root.to_path_buf(),
                log: root
                    .join(".tools/moto")
                    .join(format!("moto-{}-{port}.log", std::process::id())),
                ready_path: "/moto-api/",
                ready_timeout: Duration::from_secs(30),
            })
        })?;
        Ok(Moto {
            bin,
            root: root.to_path_buf(),
            server,
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

    /// The server's pid (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// Whether the server process is alive.
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// Wipes every resource of every service (`POST /moto-api/reset`).
    pub fn reset(&self) -> Result<(), LocalError> {
        reset_moto(&self.endpoint())
    }

    /// Stops the server (SIGTERM, SIGKILL after 5 s). Idempotent.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Stops and starts the server again on the same port (all state is lost: moto keeps it in
    /// memory).
    pub fn restart(&mut self) -> Result<(), LocalError> {
        self.stop();
        let fresh = Moto::start_in(&self.root, Some(self.port()))?;
        *self = fresh;
        Ok(())
    }

    /// The `moto_server` executable in use.
    pub fn program(&self) -> &Path {
        &self.bin
    }
}

/// `POST {endpoint}/moto-api/reset` on a loopback moto (`http://127.0.0.1:PORT`).
pub fn reset_moto(endpoint: &str) -> Result<(), LocalError> {
    let port = endpoint
        .strip_prefix("http://127.0.0.1:")
        .or_else(|| endpoint.strip_prefix("http://localhost:"))
        .map(|p| p.trim_end_matches('/'))
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| {
            LocalError::Config(format!(
                "moto endpoint {endpoint} is not http://127.0.0.1:PORT"
            ))
        })?;
    match http_status(port, "POST", "/moto-api/reset", Duration::from_secs(10)) {
        Some(200) => Ok(()),
        other => Err(LocalError::Server {
            what: "moto",
            detail: format!("POST /moto-api/reset answered {other:?}"),
        }),
    }
}

static SHARED_MOTO: SharedCell<Moto> = OnceLock::new();

/// The moto endpoint shared by every test of this process: `MOTO_ENDPOINT` when set (not
/// `AWS_ENDPOINT_URL`, which in this repository points at DynamoDB Local), else one moto server
/// started on first use and killed by its watchdog when the process ends. Panics with the fix
/// (`run \`b24-local install moto\``) when moto is not installed.
pub fn shared_moto_endpoint() -> String {
    shared_endpoint(
        &SHARED_MOTO,
        &["MOTO_ENDPOINT"],
        "shared moto server",
        || Moto::start(None),
        Moto::endpoint,
    )
}

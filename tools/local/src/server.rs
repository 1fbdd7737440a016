//! What the DynamoDB Local and moto launchers share: a supervised server on one 127.0.0.1
//! port (started and waited for until it answers HTTP, stopped, started again on the same
//! port), and the process-wide instance tests share.

use crate::net::{free_port, http_status, port_is_free};
use crate::process::Supervised;
use crate::LocalError;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How to start a server process.
pub(crate) struct Launch {
    /// The executable.
    pub(crate) program: PathBuf,
    /// Its arguments.
    pub(crate) args: Vec<OsString>,
    /// Its working directory.
    pub(crate) cwd: PathBuf,
    /// Where its stdout and stderr go.
    pub(crate) log: PathBuf,
    /// The path probed with `GET` until anything answers HTTP.
    pub(crate) ready_path: &'static str,
    /// How long to wait for that.
    pub(crate) ready_timeout: Duration,
}

/// A server on a fixed 127.0.0.1 port under the watchdog, stopped when dropped.
#[derive(Debug)]
pub(crate) struct LoopbackServer {
    what: &'static str,
    port: u16,
    process: Option<Supervised>,
    /// SIGTERM-to-SIGKILL grace when dropped or when a start fails.
    quiet_grace: Duration,
}

/// SIGTERM-to-SIGKILL grace of [`LoopbackServer::stop`].
const STOP_GRACE: Duration = Duration::from_secs(5);

impl LoopbackServer {
    /// A server named `what` (in errors) on `port`, or on a free port when `None`; not started.
    pub(crate) fn new(
        what: &'static str,
        port: Option<u16>,
        quiet_grace: Duration,
    ) -> Result<Self, LocalError> {
        let port = match port {
            Some(p) => p,
            None => free_port()?,
        };
        Ok(LoopbackServer {
            what,
            port,
            process: None,
            quiet_grace,
        })
    }

    /// Starts what `launch(port)` describes and waits until it answers HTTP; refused when
    /// something already listens on the port, stopped again when it never answers.
    pub(crate) fn spawn(
        &mut self,
        launch: impl FnOnce(u16) -> Result<Launch, LocalError>,
    ) -> Result<(), LocalError> {
        if !port_is_free(self.port) {
            return Err(self.error(format!("127.0.0.1:{} is already in use", self.port)));
        }
        let l = launch(self.port)?;
        let process = Supervised::spawn(&l.program, &l.args, &l.cwd, &l.log)?;
        let ready = wait_ready(&process, self.port, l.ready_path, l.ready_timeout);
        self.process = Some(process);
        if let Err(detail) = ready {
            self.stop_quietly();
            return Err(self.error(detail));
        }
        Ok(())
    }

    fn error(&self, detail: String) -> LocalError {
        LocalError::Server {
            what: self.what,
            detail,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The server's pid (0 once stopped).
    pub(crate) fn pid(&self) -> u32 {
        self.process.as_ref().map_or(0, Supervised::pid)
    }

    /// Whether the server process is alive.
    pub(crate) fn is_running(&self) -> bool {
        self.process.as_ref().is_some_and(Supervised::is_running)
    }

    /// The last `max` bytes of the server's log (empty once stopped).
    pub(crate) fn log_tail(&self, max: usize) -> String {
        self.process
            .as_ref()
            .map(|s| s.log_tail(max))
            .unwrap_or_default()
    }

    /// The running process, or an error saying it is stopped.
    pub(crate) fn running(&self) -> Result<&Supervised, LocalError> {
        self.process
            .as_ref()
            .ok_or_else(|| self.error("stopped".into()))
    }

    /// Stops the server (SIGTERM, SIGKILL after 5 s). Idempotent.
    pub(crate) fn stop(&mut self) {
        if let Some(mut s) = self.process.take() {
            s.stop(STOP_GRACE);
        }
    }

    fn stop_quietly(&mut self) {
        if let Some(mut s) = self.process.take() {
            s.stop(self.quiet_grace);
        }
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.stop_quietly();
    }
}

/// Polls until the server answers HTTP on `path`, exits, or `timeout` passes.
fn wait_ready(server: &Supervised, port: u16, path: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if http_status(port, "GET", path, Duration::from_millis(500)).is_some() {
            return Ok(());
        }
        if !server.is_running() {
            return Err(format!(
                "exited before answering on 127.0.0.1:{port}; log {}:\n{}",
                server.log_path().display(),
                server.log_tail(4000)
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "did not answer on 127.0.0.1:{port} within {timeout:?}; log:\n{}",
                server.log_tail(4000)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The endpoint the tests of this process share, and the server behind it when this process
/// started one (kept until the process ends, when its watchdog kills it).
pub(crate) struct Shared<T> {
    endpoint: String,
    _server: Option<Mutex<T>>,
}

/// Where a [`shared_endpoint`] lives.
pub(crate) type SharedCell<T> = OnceLock<Result<Shared<T>, String>>;

/// The endpoint every test of this process shares: the first of `env_vars` that is set and
/// not blank, else the endpoint of the server `start` starts on first use. Panics with the
/// error, prefixed with `what`, when starting fails — tests never skip silently.
pub(crate) fn shared_endpoint<T: Send>(
    cell: &'static SharedCell<T>,
    env_vars: &[&str],
    what: &str,
    start: impl FnOnce() -> Result<T, LocalError>,
    endpoint: impl FnOnce(&T) -> String,
) -> String {
    let shared = cell.get_or_init(|| {
        for var in env_vars {
            if let Some(v) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
                return Ok(Shared {
                    endpoint: v.trim().to_string(),
                    _server: None,
                });
            }
        }
        start()
            .map(|s| Shared {
                endpoint: endpoint(&s),
                _server: Some(Mutex::new(s)),
            })
            .map_err(|e| e.to_string())
    });
    match shared {
        Ok(s) => s.endpoint.clone(),
        Err(e) => panic!("{what}: {e}"),
    }
}

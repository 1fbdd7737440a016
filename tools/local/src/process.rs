//! A server process under a watchdog that kills it when its owner goes away.
//!
//! The server runs as a child of a tiny `sh` watchdog whose stdin is a pipe. Only the owner
//! (this process) holds the pipe's write end (close-on-exec, so no other child inherits it).
//! However the owner ends — `stop()`, a panic, `exit`, SIGKILL — the kernel closes that end,
//! the watchdog's `read` sees end-of-file and it kills the server. Because the watchdog is the
//! server's parent and does not reap it before that, the server's pid cannot be recycled while
//! we signal it (pause, resume, stop).

use crate::LocalError;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The watchdog: starts the server ("$@") with its output appended to the log ($1), prints its
/// pid, waits for end-of-file on stdin, then kills the server, reaps it and removes the log.
const WATCHDOG: &str = r#"log=$1; shift
"$@" </dev/null >>"$log" 2>&1 &
j=$!
echo "$j"
while read -r _; do :; done
kill -KILL "$j" 2>/dev/null
wait "$j" 2>/dev/null
rm -f "$log"
exit 0"#;

/// A running server process and its watchdog.
#[derive(Debug)]
pub(crate) struct Supervised {
    watchdog: Child,
    guard: Option<ChildStdin>,
    pid: u32,
    log: PathBuf,
}

impl Supervised {
    /// Starts `program args…` in `cwd` under the watchdog, output appended to `log`.
    pub(crate) fn spawn(
        program: &Path,
        args: &[OsString],
        cwd: &Path,
        log: &Path,
    ) -> Result<Self, LocalError> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| LocalError::io(format!("creating {}", dir.display()), e))?;
        }
        std::fs::write(log, b"")
            .map_err(|e| LocalError::io(format!("creating {}", log.display()), e))?;
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("b24-local-watchdog")
            .arg(log)
            .arg(program)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| LocalError::io(format!("starting {}", program.display()), e))?;
        let guard = watchdog.stdin.take();
        let pid = watchdog
            .stdout
            .take()
            .and_then(|out| {
                let mut line = String::new();
                BufReader::new(out).read_line(&mut line).ok()?;
                line.trim().parse::<u32>().ok()
            })
            .filter(|pid| *pid > 1);
        let Some(pid) = pid else {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
            return Err(LocalError::Server {
                what: "watchdog",
                detail: format!("could not start {}", program.display()),
            });
        };
        Ok(Supervised {
            watchdog,
            guard,
            pid,
            log: log.to_path_buf(),
        })
    }

    /// The server's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The server's log file.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// Whether the server is still alive (not exited, not a zombie).
    pub(crate) fn is_running(&self) -> bool {
        process_alive(self.pid)
    }

    /// Sends `signal` to the server.
    pub(crate) fn signal(&self, signal: i32) -> Result<(), LocalError> {
        if !self.is_running() {
            return Err(LocalError::Server {
                what: "server",
                detail: format!("pid {} is not running", self.pid),
            });
        }
        send_signal(self.pid, signal)
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) the server and waits until every thread of it
    /// has done so (signal delivery to a busy multi-threaded process is not instant).
    pub(crate) fn set_stopped(&self, stopped: bool) -> Result<(), LocalError> {
        self.signal(if stopped {
            libc::SIGSTOP
        } else {
            libc::SIGCONT
        })?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while all_threads_stopped(self.pid) != stopped {
            if Instant::now() >= deadline {
                return Err(LocalError::Server {
                    what: "server",
                    detail: format!(
                        "pid {} did not {} within 5 s",
                        self.pid,
                        if stopped { "stop" } else { "continue" }
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// The last `max` bytes of the server's log.
    pub(crate) fn log_tail(&self, max: usize) -> String {
        log_tail(&self.log, max)
    }

    /// Stops the server: SIGTERM (and SIGCONT, in case it is paused), SIGKILL after `grace`;
    /// then releases the watchdog and reaps it. Idempotent.
    pub(crate) fn stop(&mut self, grace: Duration) {
        if self.guard.is_none() {
            return;
        }
        if self.is_running() {
            let _ = send_signal(self.pid, libc::SIGTERM);
            let _ = send_signal(self.pid, libc::SIGCONT);
            let deadline = Instant::now() + grace;
            while self.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.is_running() {
                let _ = send_signal(self.pid, libc::SIGKILL);
            }
        }
        // End-of-file for the watchdog: it kills (a no-op by now), reaps the server and exits.
        drop(self.guard.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.watchdog.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.watchdog.kill();
                    let _ = self.watchdog.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// The state letter of a `/proc/.../stat` file (the first field after the command name).
fn stat_state(path: &str) -> Option<String> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().next().map(str::to_string)
}

/// Whether every thread of `pid` is stopped (state `T`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for t in tasks.flatten() {
        any = true;
        let path = t.path().join("stat");
        if stat_state(&path.to_string_lossy()).as_deref() != Some("T") {
            return false;
        }
    }
    any
}

/// Whether `pid` exists and is not a zombie (Linux `/proc`).
pub(crate) fn process_alive(pid: u32) -> bool {
    stat_state(&format!("/proc/{pid}/stat")).is_some_and(|s| s != "Z" && s != "X")
}

fn send_signal(pid: u32, signal: i32) -> Result<(), LocalError> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| LocalError::Server {
        what: "server",
        detail: format!("pid {pid} out of range"),
    })?;
    // SAFETY: kill(2) takes plain integers and has no memory effects.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(LocalError::io(
            format!("signal {signal} to pid {pid}"),
            std::io::Error::last_os_error(),
        ))
    }
}

/// The last `max` bytes of a file, lossily decoded (empty when unreadable).
pub(crate) fn log_tail(path: &Path, max: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

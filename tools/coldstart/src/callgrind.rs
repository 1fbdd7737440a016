//! One cold start under `valgrind --tool=callgrind`, split exactly into init and first invoke.
//!
//! Method: the function runs under callgrind with collection on from the first instruction
//! (the dynamic loader included). When its first `GET /next` reaches the fake Runtime API, the
//! server — before answering — runs `callgrind_control --dump=init PID`, which dumps and zeroes
//! the counters while the function is blocked waiting for the answer. When the function posts
//! its response the server again dumps (`first-invoke`) before it acknowledges the post. So
//! `init` = every instruction from `execve` to the first `/next` request, `first invoke` =
//! from reading the event to posting the answer (decode, auth, DynamoDB calls, log and
//! metrics lines, response serialization). Then the process is stopped with SIGTERM; callgrind
//! writes a last dump (the remainder: the ack of the post, the second `/next`, exit), which is
//! reported but in neither figure. All threads are counted (`--separate-threads=no`).

use crate::runtime_api::{Call, Hook, Invocation, RuntimeApi};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The result of one measured cold start.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Instructions from exec to the first `/next` request.
    pub init: u64,
    /// Instructions from the first `/next` answer to the response post.
    pub first_invoke: u64,
    /// Instructions after the response post until exit (not part of either figure).
    pub remainder: u64,
    /// The status code in the function's answer (API Gateway v2 response), if any.
    pub status: Option<u64>,
    /// The answer's body (or the error post's body).
    pub answer: String,
    /// The dump files: init, first invoke.
    pub dumps: [PathBuf; 2],
}

/// How to run a function for one measurement.
pub struct Run<'a> {
    /// A label (file names).
    pub label: &'a str,
    /// The function binary.
    pub bin: &'a Path,
    /// The complete environment of the function (nothing else is inherited).
    pub env: &'a [(String, String)],
    /// The one invocation served.
    pub invocation: Invocation,
    /// Where dumps and logs go.
    pub dir: &'a Path,
    /// Bound on the whole run.
    pub timeout: Duration,
    /// `false`: run natively (no callgrind), e.g. to install the portal.
    pub callgrind: bool,
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn dump(prefix: &Path, pid: u32, what: &str) {
    let status = Command::new("callgrind_control")
        .arg(format!("--vgdb-prefix={}", prefix.display()))
        .arg(format!("--dump={what}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("b24-coldstart: callgrind_control --dump={what} {pid} failed: {status:?}");
    }
}

/// Runs one cold start; returns the counts (zero when `callgrind` is off).
pub fn measure(run: Run<'_>) -> Result<Measurement, String> {
    let vgdb_prefix = run.dir.join(format!("vgdb-{}", run.label));
    let out_base = run.dir.join(format!("callgrind.out.{}", run.label));
    let pid_cell: Arc<Mutex<Option<u32>>> = Arc::new(Mutex::new(None));
    let hook: Hook = if run.callgrind {
        let pid_cell = Arc::clone(&pid_cell);
        let prefix = vgdb_prefix.clone();
        Box::new(move |call: &Call| {
            let what = match call {
                Call::Next(1) => "init",
                Call::Next(_) => return,
                _ => "first-invoke",
            };
            let started = Instant::now();
            let pid = loop {
                if let Some(p) = *pid_cell.lock().unwrap() {
                    break Some(p);
                }
                if started.elapsed() > Duration::from_secs(10) {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            if let Some(pid) = pid {
                dump(&prefix, pid, what);
            }
        })
    } else {
        Box::new(|_: &Call| {})
    };
    let function_name = run
        .env
        .iter()
        .find(|(k, _)| k == "AWS_LAMBDA_FUNCTION_NAME")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "function".into());
    let request_id = run.invocation.request_id.clone();
    let (api, calls) = RuntimeApi::start(vec![run.invocation], &function_name, hook)
        .map_err(|e| format!("fake Runtime API: {e}"))?;

    let mut cmd = if run.callgrind {
        // Resolved on the harness's PATH: the function's environment is cleared below.
        let valgrind = which("valgrind", &std::env::var("PATH").unwrap_or_default())
            .ok_or("valgrind not found on PATH")?;
        let mut c = Command::new(valgrind);
        c.arg("--tool=callgrind")
            .arg("--dump-instr=no")
            .arg("--dump-line=no")
            .arg("--vgdb=yes")
            .arg(format!("--vgdb-prefix={}", vgdb_prefix.display()))
            .arg(format!("--callgrind-out-file={}.%p", out_base.display()))
            .arg(format!(
                "--log-file={}",
                run.dir
                    .join(format!("valgrind.{}.log", run.label))
                    .display()
            ))
            .arg(run.bin);
        c
    } else {
        Command::new(run.bin)
    };
    // The function sees only `env` (plus the Runtime API address).
    cmd.env_clear();
    for (k, v) in run.env {
        cmd.env(k, v);
    }
    cmd.env("AWS_LAMBDA_RUNTIME_API", api.addr());
    let stdout = std::fs::File::create(run.dir.join(format!("{}.stdout", run.label)))
        .map_err(|e| e.to_string())?;
    let stderr = std::fs::File::create(run.dir.join(format!("{}.stderr", run.label)))
        .map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr));
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", run.bin.display()))?;
    let pid = child.id();
    *pid_cell.lock().unwrap() = Some(pid);
    let mut child = KillOnDrop(child);

    let deadline = Instant::now() + run.timeout;
    let mut answer: Option<Call> = None;
    let mut second_next = false;
    while !second_next {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "{}: timed out after {:?} (answer so far: {:?}); see {}",
                run.label,
                run.timeout,
                answer.is_some(),
                run.dir.display()
            ));
        }
        // After the answer, wait a bounded time for the second /next (it proves the runtime
        // loop went back to polling); stop anyway if it does not come.
        let wait = if answer.is_some() {
            left.min(Duration::from_secs(30))
        } else {
            left.min(Duration::from_millis(500))
        };
        match calls.recv_timeout(wait) {
            Ok(Call::Next(1)) => {}
            Ok(Call::Next(_)) => second_next = true,
            Ok(c @ Call::Response { .. }) | Ok(c @ Call::InvocationError { .. }) => {
                answer = Some(c)
            }
            Ok(c @ Call::InitError { .. }) => {
                answer = Some(c);
                break;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if answer.is_some() {
                    break;
                }
                if let Ok(Some(status)) = child.0.try_wait() {
                    return Err(format!(
                        "{}: the function exited ({status}) before answering; see {}",
                        run.label,
                        run.dir.display()
                    ));
                }
            }
            Err(_) => return Err("fake Runtime API stopped".into()),
        }
    }
    // Stop: SIGTERM (callgrind writes its final dump), bounded, then SIGKILL.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let stop_deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(_)) = child.0.try_wait() {
            break;
        }
        if Instant::now() > stop_deadline {
            let _ = child.0.kill();
            let _ = child.0.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(api);

    let (status, body, ok_kind) = match &answer {
        Some(Call::Response {
            body,
            request_id: id,
        }) => {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let status = v.get("statusCode").and_then(|s| s.as_u64());
            let text = v
                .get("body")
                .and_then(|b| b.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
            (status, text, id == &request_id)
        }
        Some(Call::InvocationError {
            body,
            request_id: id,
        }) => (
            None,
            format!("invocation {id} error: {}", String::from_utf8_lossy(body)),
            false,
        ),
        Some(Call::InitError { body }) => (
            None,
            format!("init error: {}", String::from_utf8_lossy(body)),
            false,
        ),
        _ => (None, "no answer".into(), false),
    };
    if !ok_kind {
        return Err(format!("{}: {body}", run.label));
    }
    if !run.callgrind {
        return Ok(Measurement {
            init: 0,
            first_invoke: 0,
            remainder: 0,
            status,
            answer: body,
            dumps: [PathBuf::new(), PathBuf::new()],
        });
    }
    let part = |n: Option<u32>| -> PathBuf {
        match n {
            Some(n) => PathBuf::from(format!("{}.{pid}.{n}", out_base.display())),
            None => PathBuf::from(format!("{}.{pid}", out_base.display())),
        }
    };
    let init_file = part(Some(1));
    let invoke_file = part(Some(2));
    let init = total_of(&init_file)?;
    let first_invoke = total_of(&invoke_file)?;
    let remainder = total_of(&part(None)).unwrap_or(0);
    Ok(Measurement {
        init,
        first_invoke,
        remainder,
        status,
        answer: body,
        dumps: [init_file, invoke_file],
    })
}

/// The `summary:` (or `totals:`) instruction count of a callgrind output file.
pub fn total_of(path: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no summary in {}", path.display()))
}

fn which(name: &str, path: &str) -> Option<PathBuf> {
    path.split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

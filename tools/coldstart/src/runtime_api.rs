//! A fake Lambda Runtime API (the `2018-06-01` interface) on 127.0.0.1.
//!
//! - `GET /2018-06-01/runtime/invocation/next` serves the queued invocations one by one; once
//!   the queue is empty it holds the request open (the function then waits there, idle, as it
//!   would in a frozen execution environment) until the server is stopped.
//! - `POST /2018-06-01/runtime/invocation/{id}/response`, `.../{id}/error` and
//!   `/2018-06-01/runtime/init/error` are recorded and answered `202 {"status":"OK"}`.
//!
//! Before the server answers a `/next` or a response/error post it calls the [`Hook`] with what
//! just arrived and waits for it to return. The harness dumps callgrind's counters there, so the
//! function is blocked on its socket at the exact point of the split (no instruction of the
//! next phase can slip into the previous count).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the function did on the Runtime API.
#[derive(Clone, Debug)]
pub enum Call {
    /// The `n`-th `GET .../invocation/next` (1-based) arrived.
    Next(usize),
    /// `POST .../invocation/{id}/response` with this body.
    Response { request_id: String, body: Vec<u8> },
    /// `POST .../invocation/{id}/error` with this body.
    InvocationError { request_id: String, body: Vec<u8> },
    /// `POST .../init/error` with this body.
    InitError { body: Vec<u8> },
}

/// Called (on the connection's thread) before the server answers a call.
pub type Hook = Box<dyn Fn(&Call) + Send + Sync>;

/// One queued invocation.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// `Lambda-Runtime-Aws-Request-Id`.
    pub request_id: String,
    /// The event JSON.
    pub payload: Vec<u8>,
}

struct Shared {
    queue: Mutex<VecDeque<Invocation>>,
    nexts: Mutex<usize>,
    hook: Hook,
    calls: Mutex<Sender<Call>>,
    stop: AtomicBool,
    function_arn: String,
}

/// A running fake Runtime API. Stopped (and its port closed) on drop.
pub struct RuntimeApi {
    addr: String,
    shared: Arc<Shared>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl RuntimeApi {
    /// Starts the server on a free 127.0.0.1 port with `invocations` queued. Every call is also
    /// sent to the returned receiver (after the hook ran).
    pub fn start(
        invocations: Vec<Invocation>,
        function_name: &str,
        hook: Hook,
    ) -> std::io::Result<(RuntimeApi, Receiver<Call>)> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?.to_string();
        let (tx, rx) = channel();
        let shared = Arc::new(Shared {
            queue: Mutex::new(invocations.into()),
            nexts: Mutex::new(0),
            hook,
            calls: Mutex::new(tx),
            stop: AtomicBool::new(false),
            function_arn: format!(
                "arn:aws:lambda:eu-central-1:123456789012:function:{function_name}"
            ),
        });
        let s = Arc::clone(&shared);
        let acceptor = thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let s = Arc::clone(&s);
                        thread::spawn(move || {
                            let _ = serve(stream, &s);
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Ok((
            RuntimeApi {
                addr,
                shared,
                acceptor: Some(acceptor),
            },
            rx,
        ))
    }

    /// `127.0.0.1:PORT`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

fn serve(stream: TcpStream, s: &Shared) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    // Bounded reads, so held connections notice `stop`.
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let req = match read_request(&mut reader, s)? {
            Some(r) => r,
            None => return Ok(()),
        };
        let path = req.path.split('?').next().unwrap_or("");
        let rest = path.strip_prefix("/2018-06-01/runtime/");
        match (req.method.as_str(), rest) {
            ("GET", Some("invocation/next")) => {
                let n = {
                    let mut n = s.nexts.lock().unwrap();
                    *n += 1;
                    *n
                };
                let call = Call::Next(n);
                (s.hook)(&call);
                let _ = s.calls.lock().unwrap().send(call);
                let inv = s.queue.lock().unwrap().pop_front();
                match inv {
                    Some(inv) => write_invocation(&mut out, &inv, &s.function_arn)?,
                    None => {
                        // Nothing queued: hold the request until the server stops.
                        while !s.stop.load(Ordering::SeqCst) {
                            thread::sleep(Duration::from_millis(20));
                        }
                        return Ok(());
                    }
                }
            }
            ("POST", Some(r)) => {
                let call = if r == "init/error" {
                    Some(Call::InitError { body: req.body })
                } else if let Some(id) = r
                    .strip_prefix("invocation/")
                    .and_then(|x| x.strip_suffix("/response"))
                {
                    Some(Call::Response {
                        request_id: id.to_string(),
                        body: req.body,
                    })
                } else if let Some(id) = r
                    .strip_prefix("invocation/")
                    .and_then(|x| x.strip_suffix("/error"))
                {
                    Some(Call::InvocationError {
                        request_id: id.to_string(),
                        body: req.body,
                    })
                } else {
                    None
                };
                match call {
                    Some(call) => {
                        (s.hook)(&call);
                        let _ = s.calls.lock().unwrap().send(call);
                        write_response(&mut out, "202 Accepted", &[], br#"{"status":"OK"}"#)?;
                    }
                    None => write_response(&mut out, "404 Not Found", &[], b"{}")?,
                }
            }
            _ => write_response(&mut out, "404 Not Found", &[], b"{}")?,
        }
    }
}

/// Reads one HTTP/1.1 request (Content-Length or chunked body). `None` at EOF or on stop.
fn read_request(r: &mut BufReader<TcpStream>, s: &Shared) -> std::io::Result<Option<Request>> {
    let mut head = Vec::new();
    // Request line + headers, tolerant of read timeouts while idle.
    loop {
        let mut line = Vec::new();
        loop {
            match r.read_until(b'\n', &mut line) {
                Ok(0) => return Ok(None),
                Ok(_) => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if s.stop.load(Ordering::SeqCst) {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if line == b"\r\n" || line == b"\n" {
            if head.is_empty() {
                continue; // stray CRLF between requests
            }
            break;
        }
        head.push(String::from_utf8_lossy(&line).trim_end().to_string());
    }
    let mut first = head[0].split_whitespace();
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let header = |name: &str| {
        head[1..].iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let mut body = Vec::new();
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        read_exact_patient(r, &mut body, s)?;
    } else if header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let mut size_line = Vec::new();
            read_line_patient(r, &mut size_line, s)?;
            let size_txt = String::from_utf8_lossy(&size_line);
            let size_txt = size_txt.trim().split(';').next().unwrap_or("0");
            let size = usize::from_str_radix(size_txt, 16).unwrap_or(0);
            if size == 0 {
                // Trailers until an empty line.
                loop {
                    let mut t = Vec::new();
                    read_line_patient(r, &mut t, s)?;
                    if t == b"\r\n" || t == b"\n" || t.is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            read_exact_patient(r, &mut body[start..], s)?;
            let mut crlf = Vec::new();
            read_line_patient(r, &mut crlf, s)?;
        }
    }
    Ok(Some(Request { method, path, body }))
}

fn read_line_patient(
    r: &mut BufReader<TcpStream>,
    buf: &mut Vec<u8>,
    s: &Shared,
) -> std::io::Result<()> {
    loop {
        match r.read_until(b'\n', buf) {
            Ok(_) => return Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) && !s.stop.load(Ordering::SeqCst) => {}
            Err(e) => return Err(e),
        }
    }
}

fn read_exact_patient(
    r: &mut BufReader<TcpStream>,
    mut buf: &mut [u8],
    s: &Shared,
) -> std::io::Result<()> {
    while !buf.is_empty() {
        match r.read(buf) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) && !s.stop.load(Ordering::SeqCst) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_invocation(out: &mut TcpStream, inv: &Invocation, arn: &str) -> std::io::Result<()> {
    let deadline_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
        + 900_000;
    let deadline = deadline_ms.to_string();
    let headers = [
        ("Content-Type", "application/json"),
        ("Lambda-Runtime-Aws-Request-Id", inv.request_id.as_str()),
        ("Lambda-Runtime-Deadline-Ms", deadline.as_str()),
        ("Lambda-Runtime-Invoked-Function-Arn", arn),
        (
            "Lambda-Runtime-Trace-Id",
            "Root=1-674c7a00-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=0;Lineage=1:0a1b2c3d:0",
        ),
    ];
    write_response(out, "200 OK", &headers, &inv.payload)
}

fn write_response(
    out: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut msg = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        msg.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        msg.push_str("Content-Type: application/json\r\n");
    }
    msg.push_str("Date: Tue, 01 Dec 2026 20:00:00 GMT\r\n");
    msg.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = msg.into_bytes();
    bytes.extend_from_slice(body);
    out.write_all(&bytes)?;
    out.flush()
}

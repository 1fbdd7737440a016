//! `b24-events`: decode, encode and send Bitrix24 event bodies.
//!
//! - `b24-events decode [--content-type TYPE] [FILE|-]` prints the normalized event (schema v1).
//! - `b24-events decode --lines FILE` decodes one body per line, one JSON object per line.
//! - `b24-events encode [FILE|-]` turns a wire-shaped JSON event into a PHP form body.
//! - `b24-events send --url URL --event CODE ...` POSTs a realistic event to a handler.
//! - `b24-events changes [--queue-url URL] [--wait S] [--follow]` prints the change feed.
//! - `b24-events ack --member-id M --connector C --line L --chat-id N --message-id N ...` sends
//!   one delivery ack to the acks queue.
//!
//! Exit codes: 0 success; 1 `send` got a non-2xx answer; 2 usage, input or connection error.

mod changes;

use b24_events::{decode, encode, Event, EventKind};
use b24_fixtures::Fixture;
use clap::{Args, Parser, Subcommand};
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Decode, encode and send Bitrix24 connector and app event bodies.
#[derive(Parser, Debug)]
#[command(name = "b24-events", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once
enum Command {
    /// Decode a webhook body and print the normalized event JSON (schema v1).
    ///
    /// Without --content-type, a body starting with `{` is read as JSON, anything else as
    /// application/x-www-form-urlencoded. Exit 2 with one `error: <reason>` line on stderr
    /// when the body does not decode.
    Decode {
        /// Content-Type header of the body (e.g. `application/json`).
        #[arg(long, value_name = "TYPE")]
        content_type: Option<String>,
        /// Decode one body per line; print one compact JSON object per line
        /// (`{"error": "..."}` for a bad line) and exit 0.
        #[arg(long)]
        lines: bool,
        /// The body file; `-` or nothing for stdin.
        file: Option<PathBuf>,
    },
    /// Encode a wire-shaped JSON event (like the docs' examples) as PHP http_build_query does.
    Encode {
        /// The JSON file; `-` or nothing for stdin.
        file: Option<PathBuf>,
    },
    /// Build a realistic event body and POST it to a handler URL.
    ///
    /// Prints `<status> <answer body>`; exit 0 on 2xx, 1 on another status, 2 on a usage or
    /// connection error. Tokens are never printed, except by --print-body.
    Send(SendArgs),
    /// Send one delivery ack (b24.ack.v1) to the acks queue: the receiver reports it to
    /// Bitrix24 as imconnector.send.status.delivery.
    ///
    /// Against `make dev` no queue URL is needed. Prints the ack's JSON and the SQS message id.
    Ack(changes::AckArgs),
    /// Print the change feed: one b24.change.v1 JSON object per line, deleting what was printed.
    ///
    /// Against `make dev` no argument is needed. Against AWS, pass the stack's ChangesQueueUrl
    /// output (the standard AWS credential chain is used).
    Changes {
        /// The changes.fifo queue (default: $CHANGES_QUEUE_URL, else make dev's queue).
        #[arg(long, value_name = "URL", env = "CHANGES_QUEUE_URL", default_value = changes::DEV_QUEUE_URL)]
        queue_url: String,
        /// Stop after this many seconds without a new change.
        #[arg(long, value_name = "SECONDS", default_value_t = 5)]
        wait: u64,
        /// Keep printing changes as they arrive (until interrupted).
        #[arg(long)]
        follow: bool,
        /// Stop after printing this many changes.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
}

#[derive(Args, Debug)]
struct SendArgs {
    /// Handler URL (http or https).
    #[arg(long, required_unless_present = "print_body")]
    url: Option<String>,
    /// Event code or event.bind name, any case (`ONIMCONNECTORMESSAGEADD`, `OnAppInstall`).
    #[arg(long)]
    event: String,
    /// auth[member_id] (the portal).
    #[arg(long, default_value = "bac1cd5c8940947a75e0d71b1a84e348")]
    member_id: String,
    /// auth[application_token].
    #[arg(long, default_value = "831c76b092f9f135d9b6b36c3a720757")]
    application_token: String,
    /// auth[access_token] (not sent with ONAPPUNINSTALL unless given).
    #[arg(long)]
    access_token: Option<String>,
    /// auth[refresh_token] of ONAPPINSTALL/ONAPPUPDATE (default: the fixture's).
    #[arg(long)]
    refresh_token: Option<String>,
    /// auth[domain].
    #[arg(long, default_value = "some-domain.bitrix24.ru")]
    domain: String,
    /// auth[client_endpoint] (default `https://<domain>/rest/`).
    #[arg(long)]
    client_endpoint: Option<String>,
    /// Open line ID.
    #[arg(long, default_value_t = 107)]
    line: i64,
    /// Connector ID.
    #[arg(long, default_value = "myconnector")]
    connector: String,
    /// Bitrix24 chat ID (im.chat_id) for Message*; external chat ID for Dialog*.
    #[arg(long)]
    chat_id: Option<i64>,
    /// Bitrix24 message ID (im.message_id).
    #[arg(long)]
    message_id: Option<i64>,
    /// Message text (BB-codes allowed).
    #[arg(long)]
    text: Option<String>,
    /// External message ID (message.id) for MessageUpdate/Delete.
    #[arg(long, default_value = "ext-msg-005")]
    external_id: String,
    /// Open-line session ID for Dialog*.
    #[arg(long, default_value_t = 3282)]
    session_id: i64,
    /// Event time, Unix seconds (default: now).
    #[arg(long)]
    ts: Option<i64>,
    /// ONAPPUNINSTALL: the user asked to delete the app's data (CLEAN=1).
    #[arg(long)]
    clean: bool,
    /// App version for ONAPPINSTALL/ONAPPUPDATE.
    #[arg(long, default_value = "1.0.0")]
    version: String,
    /// Send the body as application/json instead of a form.
    #[arg(long)]
    json: bool,
    /// Print the body (tokens included) instead of sending it.
    #[arg(long)]
    print_body: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode {
            content_type,
            lines,
            file,
        } => run_decode(content_type.as_deref(), lines, file),
        Command::Encode { file } => run_encode(file),
        Command::Send(args) => run_send(&args),
        Command::Ack(args) => changes::send_ack(&args).map(|()| ExitCode::SUCCESS),
        Command::Changes {
            queue_url,
            wait,
            follow,
            limit,
        } => changes::run(&changes::Options {
            queue_url,
            wait: Duration::from_secs(wait),
            follow,
            limit,
        })
        .map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        // The reader went away (`b24-events decode --lines … | head`): stop quietly, as Unix
        // tools do.
        Err(msg) if msg == BROKEN_PIPE => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {}", one_line(&msg));
            ExitCode::from(2)
        }
    }
}

/// The error text of a closed stdout (never printed).
const BROKEN_PIPE: &str = "\u{0}broken pipe";

/// Writes one line to stdout; a closed pipe becomes [`BROKEN_PIPE`].
fn out_line(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(io_error)
}

fn io_error(e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        BROKEN_PIPE.to_string()
    } else {
        e.to_string()
    }
}

fn one_line(s: &str) -> String {
    s.split(['\r', '\n']).collect::<Vec<_>>().join(" ")
}

fn read_input(file: Option<PathBuf>) -> Result<Vec<u8>, String> {
    match file {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        }
        _ => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
            Ok(buf)
        }
    }
}

/// A file's trailing newline is not part of the body.
fn trim_newline(body: &[u8]) -> &[u8] {
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    body.strip_suffix(b"\r").unwrap_or(body)
}

fn content_type_for<'a>(given: Option<&'a str>, body: &[u8]) -> Option<&'a str> {
    given.or_else(|| {
        body.iter()
            .find(|b| !b.is_ascii_whitespace())
            .filter(|&&b| b == b'{')
            .map(|_| "application/json")
    })
}

fn run_decode(
    content_type: Option<&str>,
    lines: bool,
    file: Option<PathBuf>,
) -> Result<ExitCode, String> {
    if lines {
        return decode_lines(content_type, file);
    }
    let input = read_input(file)?;
    let body = trim_newline(&input);
    let event = decode(body, content_type_for(content_type, body)).map_err(|e| e.to_string())?;
    let pretty = serde_json::to_string_pretty(&event).map_err(|e| e.to_string())?;
    out_line(&pretty)?;
    Ok(ExitCode::SUCCESS)
}

/// `decode --lines`: streams the input (one body in memory at a time, lines found with
/// `memchr` by `read_until`) and serializes each event straight into the buffered stdout.
fn decode_lines(content_type: Option<&str>, file: Option<PathBuf>) -> Result<ExitCode, String> {
    let mut input: Box<dyn BufRead> = match file {
        Some(p) if p.as_os_str() != "-" => Box::new(std::io::BufReader::with_capacity(
            64 * 1024,
            std::fs::File::open(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
        )),
        _ => Box::new(std::io::stdin().lock()),
    };
    // Buffered: stdout is line-buffered, one write per body would dominate the run.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("cannot read input: {e}"))?;
        if n == 0 {
            break;
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match decode(line, content_type_for(content_type, line)) {
            Ok(event) => serde_json::to_writer(&mut out, &event),
            Err(e) => {
                serde_json::to_writer(&mut out, &serde_json::json!({ "error": e.to_string() }))
            }
        }
        .map_err(|e| io_error(e.into()))?;
        out.write_all(b"\n").map_err(io_error)?;
    }
    out.flush().map_err(io_error)?;
    Ok(ExitCode::SUCCESS)
}

fn run_encode(file: Option<PathBuf>) -> Result<ExitCode, String> {
    let input = read_input(file)?;
    let value: serde_json::Value = serde_json::from_slice(&input)
        .map_err(|e| format!("invalid JSON at line {} column {}", e.line(), e.column()))?;
    if !value.is_object() {
        return Err("the JSON input is not an object".into());
    }
    out_line(&encode::php_form(&value))?;
    Ok(ExitCode::SUCCESS)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Builds the typed event the way Bitrix24 would send it (the fixtures crate's docs examples,
/// F1–F7, F14, F15, with the command line's overrides).
fn build_event(a: &SendArgs) -> Result<Event, String> {
    let kind = EventKind::from_code(&a.event).ok_or_else(|| {
        format!(
            "unknown event {:?}; expected one of: {}",
            a.event,
            EventKind::ALL
                .iter()
                .map(|k| k.bind_name())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let mut f = Fixture::new(kind)
        .member(&a.member_id)
        .token(&a.application_token)
        .domain(&a.domain)
        .line(a.line)
        .connector(&a.connector)
        .session(a.session_id)
        .clean(a.clean)
        .version(&a.version)
        .ts(a.ts.unwrap_or_else(now));
    if kind != EventKind::MessageAdd {
        f = f.external_ids(&[a.external_id.as_str()]);
    }
    if let Some(t) = &a.refresh_token {
        f = f.refresh_token(t);
    }
    if let Some(t) = &a.access_token {
        f = f.access_token(t);
    }
    if let Some(e) = &a.client_endpoint {
        f = f.client_endpoint(e);
    }
    if let Some(c) = a.chat_id {
        f = f.chat_id(c);
    }
    if let Some(m) = a.message_id {
        f = f.message_id(m);
    }
    if let Some(t) = &a.text {
        f = f.text(t);
    }
    Ok(f.event())
}

fn run_send(a: &SendArgs) -> Result<ExitCode, String> {
    let event = build_event(a)?;
    let wire = encode::wire_json(&event);
    let (content_type, body) = if a.json {
        ("application/json", wire.to_string())
    } else {
        ("application/x-www-form-urlencoded", encode::php_form(&wire))
    };
    if a.print_body {
        out_line(&body)?;
        return Ok(ExitCode::SUCCESS);
    }
    let url = a.url.as_deref().ok_or("--url is required")?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut response = agent
        .post(url)
        .header("Content-Type", content_type)
        .send(body.as_bytes())
        .map_err(|e| format!("request to {url} failed: {e}"))?;
    let status = response.status().as_u16();
    let answer = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("reading the answer failed: {e}"))?;
    out_line(&format!("{status} {}", answer.trim_end()))?;
    Ok(if (200..300).contains(&status) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

//! `b24-events`: decode, encode and send Bitrix24 event bodies.
//!
//! - `b24-events decode [--content-type TYPE] [FILE|-]` prints the normalized event (schema v1).
//! - `b24-events decode --lines FILE` decodes one body per line, one JSON object per line.
//! - `b24-events encode [FILE|-]` turns a wire-shaped JSON event into a PHP form body.
//! - `b24-events send --url URL --event CODE ...` POSTs a realistic event to a handler.
//!
//! Exit codes: 0 success; 1 `send` got a non-2xx answer; 2 usage, input or connection error.

use b24_events::{
    decode, encode, AppData, AppUninstallData, Auth, DialogConnector, DialogItem, DialogsData,
    Event, EventData, EventKind, ExternalChat, ExternalUser, ImRef, LineDeleteData, MessageBody,
    MessageItem, MessagesData, Secret, Session, StatusDeleteData,
};
use clap::{Args, Parser, Subcommand};
use std::io::{Read, Write};
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
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("error: {}", one_line(&msg));
            ExitCode::from(2)
        }
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
    let input = read_input(file)?;
    if lines {
        let mut out = std::io::stdout().lock();
        for line in input.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let json = match decode(line, content_type_for(content_type, line)) {
                Ok(event) => event.to_json_string(),
                Err(e) => serde_json::json!({ "error": e.to_string() }).to_string(),
            };
            writeln!(out, "{json}").map_err(|e| e.to_string())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let body = trim_newline(&input);
    let event = decode(body, content_type_for(content_type, body)).map_err(|e| e.to_string())?;
    let pretty = serde_json::to_string_pretty(&event).map_err(|e| e.to_string())?;
    println!("{pretty}");
    Ok(ExitCode::SUCCESS)
}

fn run_encode(file: Option<PathBuf>) -> Result<ExitCode, String> {
    let input = read_input(file)?;
    let value: serde_json::Value = serde_json::from_slice(&input)
        .map_err(|e| format!("invalid JSON at line {} column {}", e.line(), e.column()))?;
    if !value.is_object() {
        return Err("the JSON input is not an object".into());
    }
    println!("{}", encode::php_form(&value));
    Ok(ExitCode::SUCCESS)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Builds the typed event the way Bitrix24 would send it (fixtures F1–F7, F14, F15).
fn build_event(a: &SendArgs) -> Result<Event, String> {
    let kind = EventKind::from_code(&a.event).ok_or_else(|| {
        format!(
            "unknown event {:?}; expected one of: {}",
            a.event,
            EventKind::ALL.map(|k| k.bind_name()).join(", ")
        )
    })?;
    use EventKind::*;
    let ts = a.ts.unwrap_or_else(now);
    let connector = a.connector.to_lowercase();
    let user_event = matches!(
        kind,
        MessageAdd | MessageUpdate | MessageDelete | StatusDelete | LineDelete
    );
    let with_refresh = matches!(kind, DialogStart | DialogFinish | AppInstall | AppUpdate);
    let access_token = match (&a.access_token, kind) {
        (Some(t), _) => Some(t.clone()),
        (None, AppUninstall) => None,
        (None, DialogStart | DialogFinish | AppInstall | AppUpdate) => {
            Some("s6p6eclrvim6da22ft9ch94ekreb52lv".to_owned())
        }
        (None, _) => Some("c978b990071b0008440001b0895f697a".to_owned()),
    };
    let uninstall = kind == AppUninstall;
    let auth = Auth {
        member_id: a.member_id.clone(),
        domain: Some(a.domain.clone()),
        client_endpoint: Some(
            a.client_endpoint
                .clone()
                .unwrap_or_else(|| format!("https://{}/rest/", a.domain)),
        ),
        server_endpoint: Some("https://oauth.bitrix24.tech/rest/".into()),
        status: (!uninstall).then(|| "F".into()),
        scope: if uninstall {
            Vec::new()
        } else if matches!(kind, DialogStart | DialogFinish) {
            vec!["imconnector".into()]
        } else {
            vec!["imconnector".into(), "imopenlines".into()]
        },
        user_id: user_event.then_some(27),
        expires: user_event.then_some(ts + 3600),
        expires_in: (!uninstall).then_some(3600),
        access_token: access_token.map(Secret::new),
        refresh_token: with_refresh.then(|| Secret::new("4s386p3q0tr8dy89xvmt96234v3dljg8")),
        application_token: Some(Secret::new(a.application_token.clone())),
    };
    let (handler_id, data) = match kind {
        MessageAdd | MessageUpdate | MessageDelete => {
            let (handler, message_id, text, ids) = match kind {
                MessageAdd => (
                    555,
                    86497,
                    Some("[b]Светлана Иванова:[/b] [br]Добрый день!"),
                    vec![],
                ),
                MessageUpdate => (
                    557,
                    86501,
                    Some("[b]Светлана Иванова:[/b][br] Какие у вас вопросы?"),
                    vec![a.external_id.clone()],
                ),
                _ => (559, 86501, None, vec![a.external_id.clone()]),
            };
            let item = MessageItem {
                im: ImRef {
                    chat_id: a.chat_id.unwrap_or(1807),
                    message_id: a.message_id.unwrap_or(message_id),
                },
                message: MessageBody {
                    user_id: (kind == MessageAdd).then_some(27),
                    text: a.text.clone().or(text.map(str::to_owned)),
                    ids,
                    files: vec![],
                },
                chat: ExternalChat {
                    id: Some("channel-123".into()),
                },
            };
            (
                Some(handler),
                EventData::Messages(MessagesData {
                    connector: Some(connector),
                    line: Some(a.line),
                    messages: vec![item],
                }),
            )
        }
        DialogStart | DialogFinish => {
            let chat = a.chat_id.unwrap_or(8).to_string();
            let item = DialogItem {
                connector: DialogConnector {
                    connector_id: Some(connector.clone()),
                    line_id: Some(a.line),
                    chat_id: Some(chat.clone()),
                    user_id: Some("0".into()),
                },
                session: Session {
                    id: a.session_id,
                    closed: Some(kind == DialogFinish),
                    parent_id: Some(0),
                    close_term: Some(10),
                },
                chat: ExternalChat { id: Some(chat) },
                user: ExternalUser {
                    id: Some("0".into()),
                },
            };
            (
                Some(1),
                EventData::Dialogs(DialogsData {
                    connector: Some(connector),
                    line: Some(a.line),
                    dialogs: vec![item],
                }),
            )
        }
        StatusDelete => (
            Some(561),
            EventData::StatusDelete(StatusDeleteData {
                connector,
                line: a.line,
            }),
        ),
        LineDelete => (
            Some(563),
            EventData::LineDelete(LineDeleteData { line: a.line }),
        ),
        AppInstall | AppUpdate => (
            None,
            EventData::App(AppData {
                version: Some(a.version.clone()),
                active: Some(true),
                installed: Some(true),
                language_id: Some("ru".into()),
            }),
        ),
        AppUninstall => (
            None,
            EventData::AppUninstall(AppUninstallData {
                language_id: Some("ru".into()),
                clean: a.clean,
            }),
        ),
    };
    Ok(Event {
        kind,
        handler_id,
        ts: Some(ts),
        auth,
        data,
    })
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
        println!("{body}");
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
    println!("{status} {}", answer.trim_end());
    Ok(if (200..300).contains(&status) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

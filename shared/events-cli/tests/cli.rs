//! Runs the built `b24-events` binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_b24-events");

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events/tests/fixtures")
}

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn decode_every_fixture() {
    let mut n = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.ends_with(".expected.json") {
            continue;
        }
        let out = run(&["decode", path.to_str().unwrap()], b"");
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let stem = name.trim_end_matches(".form").trim_end_matches(".json");
        let expected_path = fixtures().join(format!("{stem}.expected.json"));
        let expected: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&expected_path).unwrap()).unwrap();
        assert_eq!(json, expected, "{name}");
        n += 1;
    }
    assert_eq!(n, 36);
}

#[test]
fn decode_from_stdin_with_content_type() {
    let body = std::fs::read(fixtures().join("f06_status_delete.json")).unwrap();
    let out = run(
        &["decode", "--content-type", "application/json", "-"],
        &body,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("\"event\": \"ONIMCONNECTORSTATUSDELETE\""));
}

#[test]
fn decode_garbage_exits_2_with_one_error_line() {
    for (args, body) in [
        (vec!["decode"], &b"garbage\nmore"[..]),
        (
            vec!["decode", "--content-type", "application/json"],
            b"{nope",
        ),
        (vec!["decode", "--content-type", "text/plain"], b"event=x"),
        (vec!["decode"], b"event=ONCRMDEALADD&auth[member_id]=m"),
    ] {
        let out = run(&args, body);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(stdout(&out).is_empty());
    }
    let out = run(&["decode"], b"event=ONCRMDEALADD&auth[member_id]=m");
    assert_eq!(stderr(&out), "error: unsupported event ONCRMDEALADD\n");
    let out = run(&["decode", "/nonexistent/file"], b"");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn decode_lines() {
    let f1 = std::fs::read_to_string(fixtures().join("f01_message_add.form")).unwrap();
    let f7 = std::fs::read_to_string(fixtures().join("f07_line_delete.json")).unwrap();
    let f7 =
        serde_json::to_string(&serde_json::from_str::<serde_json::Value>(&f7).unwrap()).unwrap();
    let input = format!("{f1}\n\ngarbage\r\n{f7}\n");
    let dir = std::env::temp_dir().join(format!("b24-events-lines-{}", std::process::id()));
    std::fs::write(&dir, input).unwrap();
    let out = run(&["decode", "--lines", dir.to_str().unwrap()], b"");
    std::fs::remove_file(&dir).ok();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["event"], "ONIMCONNECTORMESSAGEADD");
    assert_eq!(lines[1]["error"], "missing event");
    assert_eq!(lines[2]["data"]["line"], 107);
}

#[test]
fn encode_matches_php_pairs() {
    let json = std::fs::read(fixtures().join("f03_message_update.json")).unwrap();
    let out = run(&["encode"], &json);
    assert!(out.status.success(), "{}", stderr(&out));
    let php = std::fs::read_to_string(fixtures().join("f03_message_update.form")).unwrap();
    let mut a: Vec<String> = stdout(&out)
        .trim_end()
        .split('&')
        .map(str::to_owned)
        .collect();
    let mut b: Vec<String> = php.split('&').map(str::to_owned).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    let out = run(&["encode"], b"[1]");
    assert_eq!(out.status.code(), Some(2));
}

/// A one-shot HTTP server: answers `status` to the first request, hands back its headers and body.
fn one_shot_server(status: &str) -> (String, mpsc::Receiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/bitrix24/messages",
        listener.local_addr().unwrap()
    );
    let status = status.to_owned();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            head.push_str(&line);
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let answer = "{\"outcome\":\"applied\"}";
        let mut stream = reader.into_inner();
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
            answer.len()
        )
        .unwrap();
        tx.send((head, body)).unwrap();
    });
    (url, rx)
}

#[test]
fn send_posts_a_decodable_form_body() {
    let (url, rx) = one_shot_server("200 OK");
    let out = run(
        &[
            "send",
            "--url",
            &url,
            "--event",
            "OnImConnectorMessageAdd",
            "--member-id",
            "portal1",
            "--application-token",
            "SECRETAPPTOKEN",
            "--line",
            "9",
            "--connector",
            "MyConn",
            "--chat-id",
            "11",
            "--message-id",
            "12",
            "--text",
            "Привет [b]мир[/b] & co",
            "--ts",
            "1700000000",
        ],
        b"",
    );
    let (head, body) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "200 {\"outcome\":\"applied\"}\n");
    assert!(!stdout(&out).contains("SECRETAPPTOKEN") && !stderr(&out).contains("SECRETAPPTOKEN"));
    assert!(
        head.starts_with("POST /bitrix24/messages HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/x-www-form-urlencoded\r\n"),
        "{head}"
    );
    let body_text = String::from_utf8(body.clone()).unwrap();
    assert!(
        body_text.contains("data%5BMESSAGES%5D%5B0%5D%5Bim%5D%5Bchat_id%5D=11"),
        "{body_text}"
    );

    let event = b24_events::decode(&body, Some("application/x-www-form-urlencoded")).unwrap();
    assert_eq!(event.kind(), b24_events::EventKind::MessageAdd);
    assert_eq!(event.auth.member_id, "portal1");
    assert_eq!(
        event.auth.application_token.as_ref().unwrap().expose(),
        "SECRETAPPTOKEN"
    );
    assert_eq!(event.ts, Some(1_700_000_000));
    assert_eq!(event.handler_id, Some(555));
    assert_eq!(event.line(), Some(9));
    assert_eq!(event.connector(), Some("myconn"));
    let b24_events::EventData::MessageAdd(m) = &event.data else {
        panic!()
    };
    assert_eq!(m.messages[0].im.chat_id, 11);
    assert_eq!(m.messages[0].im.message_id, 12);
    assert_eq!(
        m.messages[0].message.text.as_deref(),
        Some("Привет [b]мир[/b] & co")
    );
}

#[test]
fn send_non_2xx_exits_1_and_json_mode() {
    let (url, rx) = one_shot_server("401 Unauthorized");
    let out = run(
        &[
            "send",
            "--url",
            &url,
            "--event",
            "onimconnectorlinedelete",
            "--line",
            "5",
            "--json",
        ],
        b"",
    );
    let (head, body) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("401 "));
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: application/json\r\n"));
    let event = b24_events::decode(&body, Some("application/json")).unwrap();
    assert_eq!(event.line(), Some(5));
}

#[test]
fn send_every_event_print_body_decodes() {
    for kind in b24_events::EventKind::ALL {
        for name in [
            kind.code().to_owned(),
            kind.bind_name().to_owned(),
            kind.code().to_lowercase(),
        ] {
            let out = run(&["send", "--event", &name, "--print-body", "--clean"], b"");
            assert!(out.status.success(), "{name}: {}", stderr(&out));
            let event = b24_events::decode(stdout(&out).trim_end().as_bytes(), None)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(event.kind(), *kind);
            assert_eq!(event.auth.member_id, "bac1cd5c8940947a75e0d71b1a84e348");
            assert!(event.auth.application_token.is_some());
        }
    }
}

#[test]
fn send_usage_and_connection_errors_exit_2() {
    let out = run(
        &[
            "send",
            "--url",
            "http://127.0.0.1:1/",
            "--event",
            "ONCRMDEALADD",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: unknown event"));
    let out = run(&["send", "--event", "OnAppInstall"], b"");
    assert_eq!(out.status.code(), Some(2), "--url required");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    let out = run(
        &[
            "send",
            "--url",
            &url,
            "--event",
            "OnAppInstall",
            "--application-token",
            "TOPSECRET",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: ") && !err.contains("TOPSECRET"),
        "{err}"
    );
}

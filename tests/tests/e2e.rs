//! End to end: the local stack (DynamoDB Local + the four real function binaries under
//! `cargo lambda watch`) driven through a whole portal lifecycle by `b24-events send`.
//!
//! `scripts/e2e.sh` (part of `make test`) starts the stack, passes its URLs in `E2E_*`
//! variables, runs this test with `--ignored`, and stops everything afterwards. Under a plain
//! `cargo test` it is ignored: it needs the running stack.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

struct Stack {
    urls: [(String, String); 4],
    ddb: String,
    table: String,
    function_log: PathBuf,
}

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run this test through `make e2e`"))
}

impl Stack {
    fn from_env() -> Stack {
        Stack {
            urls: [
                ("messages".into(), env("E2E_URL_MESSAGES")),
                ("dialogs".into(), env("E2E_URL_DIALOGS")),
                ("connector".into(), env("E2E_URL_CONNECTOR")),
                ("app".into(), env("E2E_URL_APP")),
            ],
            ddb: env("E2E_DDB_ENDPOINT"),
            table: env("E2E_TABLE_NAME"),
            function_log: PathBuf::from(env("E2E_FUNCTION_LOG")),
        }
    }

    fn url(&self, family: &str) -> &str {
        &self
            .urls
            .iter()
            .find(|(f, _)| f == family)
            .expect("known family")
            .1
    }

    /// Runs `b24-events send` and returns (HTTP status, JSON answer).
    fn send(&self, family: &str, args: &[&str]) -> (u16, Value) {
        let output = Command::new(cli())
            .arg("send")
            .arg("--url")
            .arg(self.url(family))
            .args(args)
            .output()
            .expect("b24-events runs");
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let (status, body) = stdout.split_once(' ').unwrap_or_else(|| {
            panic!(
                "unexpected output {stdout:?}, stderr {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        let status: u16 = status.parse().expect("status first");
        assert_eq!(
            output.status.success(),
            (200..300).contains(&status),
            "exit code follows the status"
        );
        (status, serde_json::from_str(body).expect("JSON answer"))
    }

    async fn records(&self, member: &str) -> Vec<Value> {
        let config = aws_config_for(&self.ddb).await;
        let store =
            b24_state::DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), self.table.clone());
        let member = b24_state::MemberId::new(member).expect("valid member id");
        store
            .portal_records(&member)
            .await
            .expect("DynamoDB Local answers")
    }
}

async fn aws_config_for(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local", "local", None, None, "e2e",
        ))
        .load()
        .await
}

/// The `b24-events` binary `cargo build --workspace` put next to this test's directory.
fn cli() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let debug = exe.parent().and_then(|d| d.parent()).expect("target/debug");
    let cli = debug.join("b24-events");
    assert!(
        cli.exists(),
        "{} missing: run `cargo build --workspace --bins`",
        cli.display()
    );
    cli
}

fn outcome(answer: &(u16, Value)) -> (u16, &str) {
    (
        answer.0,
        answer.1["outcome"]
            .as_str()
            .or(answer.1["error"].as_str())
            .unwrap_or("?"),
    )
}

fn find<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["record_type"] == kind)
        .collect()
}

/// The pids of the running `b24-fn-<name>` processes.
fn function_pids(name: &str) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-f", &format!("target/debug/b24-fn-{name}$")])
        .output()
        .expect("pgrep runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// An API Gateway payload whose body is marked base64 but is not: lambda_http's conversion
/// would panic on it (a process abort in release builds, and the functions abort on any panic
/// everywhere). Sent straight to the Invoke API, as API Gateway would.
#[test]
#[ignore = "needs the local stack: run `make e2e` (scripts/e2e.sh)"]
fn invalid_base64_is_400_and_the_function_process_survives() {
    let invoke = env("E2E_INVOKE_URL");
    let url = format!("{invoke}/2015-03-31/functions/b24-fn-messages/invocations");
    let payload = serde_json::json!({
        "version": "2.0", "routeKey": "POST /bitrix24/messages", "rawPath": "/bitrix24/messages",
        "rawQueryString": "", "headers": {"content-type": "application/x-www-form-urlencoded"},
        "requestContext": {"http": {"method": "POST", "path": "/bitrix24/messages",
            "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "x"},
            "requestId": "bad-b64", "routeKey": "POST /bitrix24/messages", "stage": "$default"},
        "body": "%%% this is not base64 %%%", "isBase64Encoded": true
    });
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(120)))
        .build()
        .into();
    let before = function_pids("messages");
    assert_eq!(before.len(), 1, "one messages process: {before:?}");
    for _ in 0..3 {
        let mut response = agent
            .post(&url)
            .header("content-type", "application/json")
            .send(payload.to_string().as_bytes())
            .expect("invoke API answers");
        assert_eq!(response.status().as_u16(), 200, "the invocation succeeded");
        let answer: Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(answer["statusCode"], 400, "{answer}");
        let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert!(
            body["reason"].as_str().unwrap().contains("base64"),
            "{body}"
        );
    }
    assert_eq!(function_pids("messages"), before, "the process never died");
}

#[tokio::test]
#[ignore = "needs the local stack: run `make e2e` (scripts/e2e.sh)"]
async fn whole_portal_lifecycle_through_the_local_stack() {
    let stack = Stack::from_env();
    let member = format!("e2e{}", std::process::id());
    let token = "e2e-application-token-0001";
    let auth = ["--member-id", member.as_str(), "--application-token", token];
    let with = |extra: &[&str]| -> Vec<String> {
        auth.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let send = |family: &str, args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        stack.send(family, &refs)
    };

    // Install, and the same install delivered twice.
    let install = with(&["--event", "OnAppInstall", "--ts", "1773759000"]);
    assert_eq!(outcome(&send("app", install.clone())), (200, "applied"));
    assert_eq!(outcome(&send("app", install)), (200, "duplicate"));

    // A message: add (twice), edit, and a second message added and deleted.
    let add = with(&[
        "--event",
        "ONIMCONNECTORMESSAGEADD",
        "--message-id",
        "1001",
        "--text",
        "[b]Оператор:[/b] [br]Добрый день!",
        "--ts",
        "1773759100",
    ]);
    assert_eq!(outcome(&send("messages", add.clone())), (200, "applied"));
    assert_eq!(outcome(&send("messages", add)), (200, "duplicate"));
    let edit = with(&[
        "--event",
        "ONIMCONNECTORMESSAGEUPDATE",
        "--message-id",
        "1001",
        "--external-id",
        "ext-1001",
        "--text",
        "Исправлено",
        "--ts",
        "1773759200",
    ]);
    assert_eq!(outcome(&send("messages", edit)), (200, "applied"));
    let add2 = with(&[
        "--event",
        "ONIMCONNECTORMESSAGEADD",
        "--message-id",
        "1002",
        "--text",
        "to be deleted",
        "--ts",
        "1773759300",
    ]);
    assert_eq!(outcome(&send("messages", add2)), (200, "applied"));
    let delete2 = with(&[
        "--event",
        "ONIMCONNECTORMESSAGEDELETE",
        "--message-id",
        "1002",
        "--external-id",
        "ext-1002",
        "--ts",
        "1773759400",
    ]);
    assert_eq!(outcome(&send("messages", delete2)), (200, "applied"));

    // A dialog opened and closed; a late duplicate start changes nothing.
    let start = with(&[
        "--event",
        "ONIMCONNECTORDIALOGSTART",
        "--session-id",
        "3282",
        "--ts",
        "1773759500",
    ]);
    assert_eq!(outcome(&send("dialogs", start.clone())), (200, "applied"));
    let finish = with(&[
        "--event",
        "ONIMCONNECTORDIALOGFINISH",
        "--session-id",
        "3282",
        "--ts",
        "1773759600",
    ]);
    assert_eq!(outcome(&send("dialogs", finish)), (200, "applied"));
    assert_eq!(outcome(&send("dialogs", start)), (200, "duplicate"));

    // Rejections: wrong family, wrong token, a takeover attempt (the verifier cannot confirm
    // it: the stored endpoint is not reachable from here), garbage.
    let wrong_family = with(&["--event", "ONIMCONNECTORLINEDELETE", "--line", "107"]);
    assert_eq!(
        outcome(&send("messages", wrong_family)),
        (422, "wrong_family")
    );
    let forged = [
        "--member-id",
        member.as_str(),
        "--application-token",
        "forged-token",
        "--event",
        "ONIMCONNECTORMESSAGEADD",
        "--message-id",
        "1003",
    ];
    assert_eq!(
        outcome(&stack.send("messages", &forged)),
        (401, "unauthorized")
    );
    let takeover = [
        "--member-id",
        member.as_str(),
        "--application-token",
        "forged-token",
        "--event",
        "ONAPPINSTALL",
        "--client-endpoint",
        "https://attacker.example/rest/",
    ];
    assert_eq!(
        outcome(&stack.send("app", &takeover)),
        (401, "unauthorized")
    );

    // The connector is disconnected from line 107, then the line is deleted.
    let status = with(&[
        "--event",
        "ONIMCONNECTORSTATUSDELETE",
        "--line",
        "107",
        "--ts",
        "1773759700",
    ]);
    assert_eq!(outcome(&send("connector", status)), (200, "applied"));
    let line = with(&[
        "--event",
        "ONIMCONNECTORLINEDELETE",
        "--line",
        "107",
        "--ts",
        "1773759800",
    ]);
    assert_eq!(outcome(&send("connector", line)), (200, "applied"));

    // The table holds exactly what happened.
    let records = stack.records(&member).await;
    let portal = find(&records, "portal");
    assert_eq!(portal.len(), 1, "{records:#?}");
    assert_eq!(portal[0]["installed"], true);
    assert!(portal[0].get("token_hash").is_some_and(|h| h != token));
    let messages = find(&records, "message");
    let m1001 = messages
        .iter()
        .find(|m| m["message_id"] == 1001)
        .expect("message 1001");
    assert_eq!(m1001["status"], "edited", "{m1001:#}");
    assert_eq!(m1001["text"], "Исправлено");
    let m1002 = messages
        .iter()
        .find(|m| m["message_id"] == 1002)
        .expect("message 1002");
    assert_eq!(m1002["status"], "deleted", "{m1002:#}");
    assert!(
        m1002.get("text").is_none_or(Value::is_null),
        "a tombstone keeps no text: {m1002}"
    );
    let sessions = find(&records, "session");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["status"], "closed");
    let connectors = find(&records, "connector");
    assert_eq!(connectors.len(), 1);
    assert_eq!(connectors[0]["status"], "disconnected", "{connectors:#?}");
    let lines = find(&records, "line");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["status"], "line_deleted", "{lines:#?}");
    let events = find(&records, "event");
    assert_eq!(
        events.len(),
        9,
        "one event record per accepted, non-duplicate event: {events:#?}"
    );
    let dump = serde_json::to_string(&records).unwrap();
    assert!(!dump.contains(token), "the table never holds a token");

    // Uninstall with CLEAN=1: answered at once; the purge function, driven by the table's
    // stream through the event-source runner, deletes the portal's records in steps.
    let uninstall = with(&["--event", "ONAPPUNINSTALL", "--clean", "--ts", "1773759900"]);
    assert_eq!(outcome(&send("app", uninstall)), (200, "applied"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let left = loop {
        let left = stack.records(&member).await;
        let kinds: Vec<&str> = left
            .iter()
            .map(|r| r["record_type"].as_str().unwrap_or("?"))
            .collect();
        if kinds == ["portal", "purge"] && left[1]["status"] == "done" {
            break left;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the purge did not finish: {kinds:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert_eq!(left[0]["installed"], false, "{left:#?}");
    // The purged portal's old token is refused; nothing is recreated.
    let late = with(&["--event", "ONIMCONNECTORMESSAGEADD", "--message-id", "1004"]);
    assert_eq!(outcome(&send("messages", late)), (401, "unauthorized"));
    assert_eq!(stack.records(&member).await.len(), 2);

    // No token in anything the functions logged.
    let log = std::fs::read_to_string(&stack.function_log).expect("function log");
    assert!(
        log.contains("\"status\":200"),
        "the functions logged their requests"
    );
    for secret in [token, "forged-token"] {
        assert!(
            !log.contains(secret),
            "a token leaked into the function logs"
        );
    }
}

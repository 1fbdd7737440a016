//! End to end: the local stack (DynamoDB Local + the four real function binaries under
//! `cargo lambda watch`) driven through a whole portal lifecycle by `b24-events send`.
//!
//! `scripts/e2e.sh` (part of `make test`) starts the stack, passes its URLs in `E2E_*`
//! variables, runs this test with `--ignored`, and stops everything afterwards. Under a plain
//! `cargo test` it is ignored: it needs the running stack.
//!
//! The change feed is read from the stack's `changes.fifo` (moto) as an adapter would: every
//! change is validated against the JSON Schema and checked for secrets.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

struct Stack {
    urls: [(String, String); 4],
    ddb: String,
    table: String,
    function_log: PathBuf,
    /// The fake Bitrix24 the functions talk back to.
    fake: String,
}

/// The marker every token the stack's fake Bitrix24 issues starts with (scripts/stack.sh).
const TOKEN_MARKER: &str = "LEAKCHECK";

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
            fake: env("E2E_FAKE_B24_URL"),
        }
    }

    /// A JSON request to the fake Bitrix24's control API.
    fn fake(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build()
            .into();
        let url = format!("{}{path}", self.fake);
        let mut response = match (method, body) {
            ("GET", _) => agent.get(&url).call(),
            (_, Some(b)) => agent
                .post(&url)
                .header("content-type", "application/json")
                .send(b.to_string().as_bytes()),
            (_, None) => agent.post(&url).send_empty(),
        }
        .expect("the fake Bitrix24 answers");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap()
    }

    /// Registers `member` on the fake and installs the app there: the fake sends ONAPPINSTALL
    /// (with a real refresh token) to the app function, which verifies it by refreshing.
    /// Returns the installation's application_token and the app function's answer.
    fn install(&self, member: &str) -> (String, (u16, Value)) {
        self.fake(
            "POST",
            "/_fake/portals",
            Some(serde_json::json!({"member_id": member})),
        );
        let delivery = self.fake(
            "POST",
            &format!("/_fake/portals/{member}/install"),
            Some(serde_json::json!({"url": self.url("app")})),
        );
        let token = delivery["credentials"]["application_token"]
            .as_str()
            .unwrap()
            .to_string();
        let r = &delivery["response"];
        let status = r["status"].as_u64().unwrap_or(0) as u16;
        let body =
            serde_json::from_str(r["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
        (token, (status, body))
    }

    /// Waits until the fake holds `want` of the portal's bindings (the binder's work).
    async fn bindings(&self, member: &str, want: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let b = self.fake("GET", &format!("/_fake/portals/{member}/bindings"), None);
            let b = b.as_array().cloned().unwrap_or_default();
            if b.len() >= want || Instant::now() > deadline {
                return b;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
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

/// The stack's change feed (`changes.fifo` on moto), read as an adapter reads it.
struct Feed {
    sqs: aws_sdk_sqs::Client,
    url: String,
    schema: jsonschema::Validator,
}

impl Feed {
    async fn from_env() -> Feed {
        let endpoint = env("E2E_SQS_ENDPOINT");
        let config = aws_config_for(&endpoint).await;
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/state/schema/b24.change.v1.json"
        ))
        .expect("the JSON Schema file");
        let schema = serde_json::from_str(&text).expect("schema is JSON");
        Feed {
            sqs: aws_sdk_sqs::Client::new(&config),
            url: env("E2E_CHANGES_QUEUE_URL"),
            schema: jsonschema::validator_for(&schema).expect("valid schema"),
        }
    }

    /// The changes of `member` in the order received, once `want` of them arrived and then
    /// nothing more for `quiet` (or the deadline passed). Deletes everything it receives.
    async fn changes_of(&self, member: &str, want: usize, quiet: Duration) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut got = Vec::new();
        let mut last = Instant::now();
        while Instant::now() < deadline && (got.len() < want || last.elapsed() < quiet) {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(
                    aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
                )
                .send()
                .await
                .expect("moto answers");
            for m in out.messages() {
                let body = m.body().expect("a body");
                let change: Value = serde_json::from_str(body).expect("a change is JSON");
                if let Err(e) = self.schema.validate(&change) {
                    panic!("change does not match b24.change.v1: {e}: {change}");
                }
                let group = m
                    .attributes()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                    })
                    .cloned();
                self.sqs
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(m.receipt_handle().expect("handle"))
                    .send()
                    .await
                    .expect("delete");
                if change["member_id"] == member {
                    let mut change = change;
                    change["_group"] = group.map(Value::String).unwrap_or(Value::Null);
                    got.push(change);
                    last = Instant::now();
                }
            }
        }
        got
    }
}

/// `type` and the id that says which thing it is about (message, session, line, portal).
fn what(change: &Value) -> String {
    let t = change["type"].as_str().unwrap_or("?");
    let about = if let Some(m) = change.get("message") {
        m["im"]["message_id"].to_string()
    } else if let Some(d) = change.get("dialog") {
        d["session_id"].to_string()
    } else if t.starts_with("portal") {
        "portal".into()
    } else {
        change["line"].to_string()
    };
    format!("{t} {about}")
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
    // Installed through the fake Bitrix24: ONAPPINSTALL carries a real refresh token, the app
    // function verifies it with the (fake) OAuth server and keeps the new pair in the vault.
    let (token, installed) = stack.install(&member);
    assert_eq!(outcome(&installed), (200, "applied"), "{installed:?}");
    let token = token.as_str();
    let auth = ["--member-id", member.as_str(), "--application-token", token];
    let with = |extra: &[&str]| -> Vec<String> {
        auth.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let send = |family: &str, args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        stack.send(family, &refs)
    };

    // Forged installs, with the right application_token: a refresh token the OAuth server
    // does not know (a replay of a spent one looks the same), and a valid refresh token of
    // another portal. Both are refused: every install is verified through OAuth.
    let forged = with(&[
        "--event",
        "OnAppInstall",
        "--refresh-token",
        "not-a-real-refresh-token",
    ]);
    assert_eq!(outcome(&send("app", forged)), (401, "unauthorized"));
    let other = format!("{member}x");
    let other_creds = stack.fake(
        "POST",
        "/_fake/portals",
        Some(serde_json::json!({"member_id": other})),
    );
    let foreign = with(&[
        "--event",
        "OnAppInstall",
        "--refresh-token",
        other_creds["refresh_token"].as_str().unwrap(),
    ]);
    assert_eq!(outcome(&send("app", foreign)), (401, "unauthorized"));
    // A first install is verified too: a new member_id with a made-up refresh token.
    let squatter = format!("{member}sq");
    let squat = [
        "--member-id",
        squatter.as_str(),
        "--application-token",
        "squatter-token",
        "--event",
        "OnAppInstall",
        "--refresh-token",
        "made-up-refresh-token",
    ];
    assert_eq!(outcome(&stack.send("app", &squat)), (401, "unauthorized"));
    assert!(
        stack.records(&squatter).await.is_empty(),
        "nothing registered"
    );
    // A genuine refresh token with a forged client_endpoint: accepted (the OAuth server
    // vouches for the portal), and the stored endpoint is the one the OAuth server named.
    // (The foreign attempt above spent that refresh token: the fake issues a fresh pair; its
    // own ONAPPINSTALL goes to a closed port.)
    let fresh = stack.fake(
        "POST",
        &format!("/_fake/portals/{other}/install"),
        Some(serde_json::json!({"url": "http://127.0.0.1:9/x"})),
    );
    let creds = &fresh["credentials"];
    let genuine: Vec<String> = [
        "--member-id",
        other.as_str(),
        "--application-token",
        creds["application_token"].as_str().unwrap(),
        "--event",
        "OnAppInstall",
        "--refresh-token",
        creds["refresh_token"].as_str().unwrap(),
        "--client-endpoint",
        "https://attacker.example/rest/",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let refs: Vec<&str> = genuine.iter().map(String::as_str).collect();
    assert_eq!(outcome(&stack.send("app", &refs)), (200, "applied"));
    let stored = stack.records(&other).await;
    let portal_rec = find(&stored, "portal");
    assert_eq!(
        portal_rec[0]["client_endpoint"], other_creds["client_endpoint"],
        "the OAuth server's endpoint, never the event's: {portal_rec:#?}"
    );

    // The binder bound every event this stack serves to the stack's own URLs.
    let bindings = stack.bindings(&member, 9).await;
    let bound: std::collections::BTreeSet<String> = bindings
        .iter()
        .map(|b| b["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bound.len(), 9, "{bindings:#?}");
    for b in &bindings {
        let event = b["event"].as_str().unwrap();
        let family = b24_events::EventKind::ALL
            .iter()
            .find(|k| k.bind_name().eq_ignore_ascii_case(event))
            .expect("a served event")
            .family();
        assert_eq!(b["handler"], stack.url(family.as_str()), "{event}");
    }
    let records = stack.records(&member).await;
    let binding = find(&records, "bindings");
    assert_eq!(
        binding.len(),
        1,
        "the binding result is on the portal: {records:#?}"
    );
    assert_eq!(
        binding[0]["bound"].as_array().map(Vec::len),
        Some(9),
        "{:#}",
        binding[0]
    );

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

    // The adapter acks message 1001: the acks function reports it to the portal.
    let ack = Command::new(cli())
        .args([
            "ack",
            "--member-id",
            &member,
            "--connector",
            "myconnector",
            "--line",
            "107",
            "--chat-id",
            "1807",
            "--message-id",
            "1001",
            "--external-id",
            "ext-1001",
            "--external-chat-id",
            "channel-123",
        ])
        .output()
        .expect("b24-events ack runs");
    assert!(
        ack.status.success(),
        "{}",
        String::from_utf8_lossy(&ack.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let delivered = loop {
        let d = stack.fake("GET", &format!("/_fake/portals/{member}/deliveries"), None);
        if d.as_array().is_some_and(|d| !d.is_empty()) || Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let text = delivered.to_string();
    assert!(
        text.contains("1001") && text.contains("ext-1001"),
        "{delivered:#}"
    );

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
    let vault = find(&records, "tokens");
    assert_eq!(vault.len(), 1, "the vault holds the portal's tokens");
    assert_eq!(vault[0]["status"], "ok");
    let dump = serde_json::to_string(&records).unwrap();
    assert!(!dump.contains(token), "the table never holds a token");
    assert!(
        !dump.contains(TOKEN_MARKER),
        "no token of the fake in the table: {dump}"
    );

    // Uninstall with CLEAN=1, sent by the fake Bitrix24 to the handler the binder bound:
    // answered at once; the purge function, driven by the table's stream through the
    // event-source runner, deletes the portal's records in steps, the binder the vault.
    let answers = stack.fake(
        "POST",
        &format!("/_fake/portals/{member}/uninstall"),
        Some(serde_json::json!({"clean": true})),
    );
    let answers = answers.as_array().expect("handler answers");
    assert_eq!(
        answers.len(),
        1,
        "one bound ONAPPUNINSTALL handler: {answers:#?}"
    );
    assert_eq!(answers[0]["status"], 200, "{answers:#?}");
    assert!(
        answers[0]["body"].as_str().unwrap().contains("applied"),
        "{answers:#?}"
    );
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

    // The change feed: exactly the lifecycle's changes, each once, in order per chat/line.
    let changes = Feed::from_env()
        .await
        .changes_of(&member, 10, Duration::from_secs(3))
        .await;
    let mut per_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in &changes {
        per_group
            .entry(c["_group"].as_str().expect("a FIFO group").to_string())
            .or_default()
            .push(what(c));
    }
    // The fixtures' messages and dialog name different external chats.
    let group_of = |prefix: &str| -> String {
        changes
            .iter()
            .find(|c| c["type"].as_str().is_some_and(|t| t.starts_with(prefix)))
            .and_then(|c| c["_group"].as_str())
            .unwrap_or_else(|| panic!("no {prefix} change: {changes:#?}"))
            .to_string()
    };
    let (message_chat, dialog_chat) = (group_of("message."), group_of("dialog."));
    assert!(
        message_chat.starts_with(&format!("{member}:chat")),
        "{message_chat}"
    );
    assert!(
        dialog_chat.starts_with(&format!("{member}:chat")),
        "{dialog_chat}"
    );
    let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::from([
        (
            format!("{member}:portal"),
            list(&["portal.installed portal", "portal.uninstalled portal"]),
        ),
        (
            format!("{member}:line:107"),
            list(&["connector.disconnected 107", "line.deleted 107"]),
        ),
    ]);
    want.entry(message_chat).or_default().extend(list(&[
        "message.created 1001",
        "message.edited 1001",
        "message.created 1002",
        "message.deleted 1002",
    ]));
    want.entry(dialog_chat)
        .or_default()
        .extend(list(&["dialog.started 3282", "dialog.finished 3282"]));
    assert_eq!(per_group, want, "changes per group, in order: {changes:#?}");
    let edited = changes
        .iter()
        .find(|c| c["type"] == "message.edited")
        .unwrap();
    assert_eq!(edited["message"]["text"], "Исправлено", "{edited:#}");
    let uninstalled = changes
        .iter()
        .find(|c| c["type"] == "portal.uninstalled")
        .unwrap();
    assert_eq!(uninstalled["portal"]["clean"], true, "{uninstalled:#}");
    let feed_text = serde_json::to_string(&changes).unwrap();
    assert!(!feed_text.contains(token), "a token in the change feed");
    assert!(
        !feed_text.contains("token_hash"),
        "a token hash in the change feed"
    );

    // No token in anything the functions logged.
    let log = std::fs::read_to_string(&stack.function_log).expect("function log");
    assert!(
        log.contains("\"status\":200"),
        "the functions logged their requests"
    );
    for secret in [
        token,
        "forged-token",
        TOKEN_MARKER,
        "not-a-real-refresh-token",
    ] {
        assert!(
            !log.contains(secret),
            "a token leaked into the function logs"
        );
    }
}

/// 50 copies of one MessageAdd sent at once (Bitrix24 retrying, a replay flood) make one
/// change on the feed; so do 50 copies of its edit.
#[tokio::test]
#[ignore = "needs the local stack: run `make e2e` (scripts/e2e.sh)"]
async fn fifty_concurrent_duplicates_make_one_change() {
    let stack = Stack::from_env();
    let feed = Feed::from_env().await;
    let member = format!("e2edup{}", std::process::id());
    let (token, installed) = stack.install(&member);
    assert_eq!(outcome(&installed), (200, "applied"), "{installed:?}");
    let auth = [
        "--member-id".to_string(),
        member.clone(),
        "--application-token".into(),
        token,
    ];
    let args = |extra: &[&str]| -> Vec<String> {
        auth.iter()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    for (event, ts) in [
        ("ONIMCONNECTORMESSAGEADD", "1773760100"),
        ("ONIMCONNECTORMESSAGEUPDATE", "1773760200"),
    ] {
        let one = args(&[
            "--event",
            event,
            "--message-id",
            "7001",
            "--text",
            &format!("{event} text"),
            "--ts",
            ts,
        ]);
        let outcomes: Vec<(u16, String)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..50)
                .map(|_| {
                    let one = one.clone();
                    let stack = &stack;
                    s.spawn(move || {
                        let refs: Vec<&str> = one.iter().map(String::as_str).collect();
                        let (status, answer) = stack.send("messages", &refs);
                        (
                            status,
                            answer["outcome"].as_str().unwrap_or("?").to_string(),
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("sender"))
                .collect()
        });
        let applied = outcomes.iter().filter(|o| o.1 == "applied").count();
        let duplicates = outcomes.iter().filter(|o| o.1 == "duplicate").count();
        assert_eq!((applied, duplicates), (1, 49), "{event}: {outcomes:?}");
    }
    let changes = feed.changes_of(&member, 3, Duration::from_secs(3)).await;
    // One portal group and one chat group: compared as a set (no order across groups).
    let mut whats: Vec<String> = changes.iter().map(what).collect();
    whats.sort();
    assert_eq!(
        whats,
        [
            "message.created 7001",
            "message.edited 7001",
            "portal.installed portal"
        ],
        "{changes:#?}"
    );
}

/// `make bench` (BENCH=changes, scripts/bench.sh): 1000 MessageAdd events at 8 concurrency;
/// for each, the time from sending it (the commit happens before its answer) and from its
/// answer to its `message.created` change being received from `changes.fifo`. Prints p50/p99.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark on the local stack: make bench BENCH=changes"]
async fn change_feed_latency() {
    let stack = Stack::from_env();
    let feed = Feed::from_env().await;
    let n: i64 = std::env::var("E2E_LATENCY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let member = format!("lat{}", std::process::id());
    let (token, installed) = stack.install(&member);
    assert_eq!(outcome(&installed), (200, "applied"), "{installed:?}");
    feed.changes_of(&member, 1, Duration::from_millis(500))
        .await;

    let url = stack.url("messages").to_string();
    let start = Instant::now();
    let sent: std::sync::Arc<std::sync::Mutex<BTreeMap<i64, (Duration, Duration)>>> =
        Default::default();
    let senders: Vec<_> = (0..8)
        .map(|w| {
            let (url, member, sent, token) =
                (url.clone(), member.clone(), sent.clone(), token.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(30)))
                    .build()
                    .into();
                for id in (1..=n).filter(|i| i % 8 == w) {
                    let body = b24_fixtures::Fixture::new(b24_events::EventKind::MessageAdd)
                        .member(&member)
                        .token(&token)
                        .message_id(100_000 + id)
                        .chat_id(1000 + id % 50)
                        .external_chat(&format!("chat-{}", id % 50))
                        .ts(1_773_800_000 + id)
                        .form();
                    let t0 = start.elapsed();
                    let status = agent
                        .post(&url)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .send(body.as_bytes())
                        .expect("the function answers")
                        .status()
                        .as_u16();
                    assert_eq!(status, 200);
                    sent.lock()
                        .unwrap()
                        .insert(100_000 + id, (t0, start.elapsed()));
                }
            })
        })
        .collect();
    // Receive while sending.
    let mut seen: BTreeMap<i64, Duration> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while (seen.len() as i64) < n && Instant::now() < deadline {
        let out = feed
            .sqs
            .receive_message()
            .queue_url(&feed.url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("moto answers");
        let at = start.elapsed();
        let mut delete = Vec::new();
        for (i, m) in out.messages().iter().enumerate() {
            let change: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            if change["member_id"] == member.as_str() && change["type"] == "message.created" {
                let id = change["message"]["im"]["message_id"].as_i64().unwrap();
                assert!(
                    seen.insert(id, at).is_none(),
                    "message {id} published twice"
                );
            }
            delete.push(
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap())
                    .build()
                    .unwrap(),
            );
        }
        if !delete.is_empty() {
            feed.sqs
                .delete_message_batch()
                .queue_url(&feed.url)
                .set_entries(Some(delete))
                .send()
                .await
                .expect("delete");
        }
    }
    for s in senders {
        s.join().expect("sender");
    }
    let sent = sent.lock().unwrap();
    assert_eq!(seen.len() as i64, n, "every event's change arrived");
    let mut from_send: Vec<f64> = Vec::new();
    let mut from_answer: Vec<f64> = Vec::new();
    for (id, at) in &seen {
        let (t0, t1) = sent[id];
        from_send.push((at.saturating_sub(t0)).as_secs_f64() * 1000.0);
        from_answer.push((at.saturating_sub(t1)).as_secs_f64() * 1000.0);
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    println!(
        "change feed latency over {n} events at 8 concurrency (total {:.1} s): \
         send→visible p50 {:.0} ms p99 {:.0} ms max {:.0} ms; answer→visible p50 {:.0} ms p99 {:.0} ms",
        start.elapsed().as_secs_f64(),
        pct(&mut from_send, 0.5),
        pct(&mut from_send, 0.99),
        pct(&mut from_send, 1.0),
        pct(&mut from_answer, 0.5),
        pct(&mut from_answer, 0.99),
    );
}

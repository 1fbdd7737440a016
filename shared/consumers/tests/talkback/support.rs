//! Shared by `tests/talkback.rs`: one fake Bitrix24 per test (every token it issues starts
//! with [`MARK`]), a fresh DynamoDB Local table, a fresh moto KMS key, the product's
//! `Bitrix24` on them, the global TRACE log capture and the leak checks.
#![allow(dead_code)]

use aws_lambda_events::sqs::SqsEvent;
use b24_consumers::binder::Handlers;
use b24_events::{EventKind, Secret};
use b24_fake_bitrix24::{
    AppSpec, CallKind, CallRecord, FakeBitrix24, FakeConfig, InstallCredentials, PortalSpec,
};
use b24_pipeline::talkback::Bitrix24;
use b24_rest::{ClientCredentials, OAuthClient, OAuthConfig, RestClient, RestConfig, StaticSecret};
use b24_state::changes::Change;
use b24_state::vault::{KmsCipher, Vault, VaultEntry};
use b24_state::{AwsEnv, DynamoStore, MemberId, Timeouts};
use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The fake's `token_prefix`: every access, refresh and application token starts with it.
pub const MARK: &str = "TBKLEAKMARK";
pub const CLIENT_ID: &str = "local.talkback.test";
/// The client secret carries the marker too, so a leak of it is caught as well.
pub const SECRET: &str = "TBKLEAKMARK-client-secret-0001";
/// The handler URL template (the fake refuses hosts without a dot; 127.0.0.1 has three).
pub const TEMPLATE: &str = "http://127.0.0.1:9/lambda-url/b24-fn-{family}/bitrix24/{family}";
/// Where the fake posts ONAPPINSTALL on `install` (nothing listens: reported, not an error).
pub const INSTALL_URL: &str = "http://127.0.0.1:9/bitrix24/app";

pub type B24 = Bitrix24<StaticSecret, KmsCipher>;

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn member(m: &str) -> MemberId {
    MemberId::new(m).expect("a valid member_id")
}

pub fn app() -> ClientCredentials<StaticSecret> {
    ClientCredentials::new(CLIENT_ID, StaticSecret::new(SECRET))
}

/// Runs a test body under a hard time limit (a retry loop fails the test, not CI).
pub async fn bounded<F: Future<Output = T>, T>(f: F) -> T {
    tokio::time::timeout(Duration::from_secs(240), f)
        .await
        .expect("test took longer than 240 s")
}

// ---------------------------------------------------------------------------------------------
// Logs: one global subscriber for the whole test binary, every target at TRACE, JSON lines
// (one event per line, with its target) into a buffer.

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

/// Installs the capture (once); every test calls it first.
pub fn capture_logs() {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(buf.clone());
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("the only subscriber of this test binary");
        buf
    });
}

/// Every line captured so far.
pub fn log_text() -> String {
    capture_logs();
    let buf = LOGS.get().unwrap().lock().unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Leak checks.

/// The forms a secret may take in a text: as is, base64 (standard and URL-safe alphabets, at
/// each of the three byte alignments: only the characters that depend on the secret alone),
/// percent-encoded (every byte, upper and lower hex; and form encoding, which keeps
/// alphanumerics), JSON-escaped (serde's, and every character as `\uXXXX`).
pub fn forms(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_string()];
    let len = secret.len();
    for engine in [
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for pad in 0..3usize {
            let mut bytes = vec![0u8; pad];
            bytes.extend_from_slice(secret.as_bytes());
            let enc = engine.encode(&bytes);
            let start = (pad * 8).div_ceil(6);
            let end = ((pad + len) * 8) / 6;
            if end > start + 4 {
                out.push(enc[start..end].to_string());
            }
        }
    }
    let pct_upper: String = secret.bytes().map(|b| format!("%{b:02X}")).collect();
    out.push(pct_upper.clone());
    out.push(pct_upper.to_ascii_lowercase());
    let form: String = secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"*-._".contains(&b) {
                (b as char).to_string()
            } else if b == b' ' {
                "+".into()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    out.push(form);
    let json = serde_json::to_string(secret).unwrap();
    out.push(json[1..json.len() - 1].to_string());
    out.push(
        secret
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect(),
    );
    out.push(
        secret
            .chars()
            .map(|c| format!("\\u{:04X}", c as u32))
            .collect(),
    );
    out.sort();
    out.dedup();
    out
}

/// The first form of any of `secrets` found in `haystack` (bytes: lossy UTF-8, which keeps
/// every ASCII byte): (the secret, the form, the context).
pub fn find_leak(haystack: &[u8], secrets: &[String]) -> Option<(String, String, String)> {
    let text = String::from_utf8_lossy(haystack);
    for secret in secrets {
        for form in forms(secret) {
            if let Some(at) = text.find(form.as_str()) {
                let from = floor_char(&text, at.saturating_sub(200));
                let to = floor_char(&text, (at + form.len() + 200).min(text.len()));
                return Some((secret.clone(), form, text[from..to].to_string()));
            }
        }
    }
    None
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A DynamoDB item as text: strings and numbers as they are, binaries as their bytes (lossy
/// UTF-8) and as base64, the rest recursively.
pub fn av_text(v: &aws_sdk_dynamodb::types::AttributeValue, out: &mut String) {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    match v {
        A::S(s) | A::N(s) => out.push_str(s),
        A::B(b) => {
            out.push_str(&String::from_utf8_lossy(b.as_ref()));
            out.push(' ');
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(b.as_ref()));
        }
        A::Ss(l) | A::Ns(l) => l.iter().for_each(|s| {
            out.push_str(s);
            out.push(' ');
        }),
        A::Bs(l) => l.iter().for_each(|b| {
            out.push_str(&String::from_utf8_lossy(b.as_ref()));
            out.push(' ');
        }),
        A::L(l) => l.iter().for_each(|i| {
            av_text(i, out);
            out.push(' ');
        }),
        A::M(m) => m.iter().for_each(|(k, i)| {
            out.push_str(k);
            out.push('=');
            av_text(i, out);
            out.push(' ');
        }),
        other => out.push_str(&format!("{other:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// AWS.

pub fn aws_env() -> AwsEnv {
    let moto = b24_local::shared_moto_endpoint();
    AwsEnv::from_lookup(move |k| match k {
        "AWS_REGION" => Some("us-east-1".into()),
        "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("test".into()),
        "AWS_ENDPOINT_URL_KMS" | "AWS_ENDPOINT_URL_SQS" => Some(moto.clone()),
        _ => None,
    })
    .unwrap()
}

static QUEUES: AtomicU64 = AtomicU64::new(0);

/// A fresh moto SQS queue `talkback-{pid}-{n}-{name}` with this visibility timeout.
pub async fn queue(sqs: &aws_sdk_sqs::Client, name: &str, visibility: u32) -> String {
    let name = format!(
        "talkback-{}-{}-{name}",
        std::process::id(),
        QUEUES.fetch_add(1, Ordering::Relaxed)
    );
    sqs.create_queue()
        .queue_name(name)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            visibility.to_string(),
        )
        .send()
        .await
        .expect("moto SQS answers")
        .queue_url
        .unwrap()
}

/// Sends `bodies` to the queue, ten per `SendMessageBatch`.
pub async fn send_all(sqs: &aws_sdk_sqs::Client, url: &str, bodies: &[String]) {
    for (n, chunk) in bodies.chunks(10).enumerate() {
        let mut req = sqs.send_message_batch().queue_url(url);
        for (i, body) in chunk.iter().enumerate() {
            req = req.entries(
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(format!("e{n}-{i}"))
                    .message_body(body)
                    .build()
                    .unwrap(),
            );
        }
        let out = req.send().await.expect("SendMessageBatch");
        assert!(out.failed().is_empty(), "{:?}", out.failed());
    }
}

/// `(visible, in flight)` message counts of the queue.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> (String, String) {
    use aws_sdk_sqs::types::QueueAttributeName as Q;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(Q::All)
        .send()
        .await
        .unwrap();
    let get = |k: Q| {
        attrs
            .attributes()
            .and_then(|a| a.get(&k))
            .cloned()
            .unwrap_or_default()
    };
    (
        get(Q::ApproximateNumberOfMessages),
        get(Q::ApproximateNumberOfMessagesNotVisible),
    )
}

/// The runner's AWS clients (moto SQS, DynamoDB Local).
pub fn runner_clients() -> b24_local::aws::AwsClients {
    b24_local::aws::AwsClients::new(
        &b24_local::aws::AwsEnv::from_env(),
        &b24_local::aws::Endpoints {
            sqs: Some(b24_local::shared_moto_endpoint()),
            dynamodb: Some(b24_state::testing::endpoint()),
            streams: None,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Lambda events and messages.

/// An SQS event as AWS sends it: `(message id, body)`; no receipt handle (no visibility call).
pub fn sqs_event(messages: &[(String, Option<String>)]) -> SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| {
            json!({
                "messageId": id, "receiptHandle": null, "body": body,
                "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                "eventSource": "aws:sqs", "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("AWS's SqsEvent shape")
}

static CHANGES: AtomicU64 = AtomicU64::new(1);

/// A `b24.change.v1` portal task (checked to parse as the product's `Change`).
pub fn change(member: &str, change_type: &str, epoch: i64) -> String {
    let id = format!("{:064x}", CHANGES.fetch_add(1, Ordering::Relaxed));
    let body = json!({
        "schema": b24_state::changes::SCHEMA, "id": id, "type": change_type,
        "member_id": member, "domain": null, "epoch": epoch, "connector": null,
        "connector_as_sent": null, "line": null, "occurred_at": now(), "recorded_at": now(),
        "portal": {"installed": change_type != "portal.uninstalled", "version": "1",
            "previous_version": null, "app_status": "L", "client_endpoint": null,
            "language_id": null, "clean": null}
    })
    .to_string();
    serde_json::from_str::<Change>(&body).expect("a b24.change.v1 the binder reads");
    body
}

/// A valid `b24.ack.v1` (as JSON, to be made hostile by the caller).
pub fn ack(member: &str, line: i64, message_id: i64) -> Value {
    json!({
        "schema": "b24.ack.v1", "member_id": member, "connector": "tbconn", "line": line,
        "im": {"chat_id": 1000 + line, "message_id": message_id},
        "message_ids": [format!("ext-{message_id}")], "chat_id": format!("chan-{line}"),
        "delivered_at": now()
    })
}

// ---------------------------------------------------------------------------------------------
// The harness.

/// One test's world: a fake Bitrix24, a table, a KMS key, the product's `Bitrix24` on them.
pub struct Harness {
    pub fake: FakeBitrix24,
    pub b24: Arc<B24>,
    pub store: Arc<DynamoStore>,
    pub ddb: aws_sdk_dynamodb::Client,
    pub table: String,
    pub sqs: aws_sdk_sqs::Client,
    /// A second OAuth client, to ask the fake about refresh tokens directly.
    pub oauth: OAuthClient,
    pub handlers: Handlers,
    /// Every token the fake handed this test directly (checked in all forms, and their
    /// random part without the marker).
    pub known: Mutex<Vec<String>>,
    /// Queues this test made.
    pub queues: Mutex<Vec<String>>,
}

impl Harness {
    /// A fake (clock frozen or not), a fresh table and KMS key.
    pub async fn start(freeze_clock: bool) -> Harness {
        capture_logs();
        let fake = FakeBitrix24::start(FakeConfig {
            token_prefix: MARK.into(),
            apps: vec![AppSpec::new(CLIENT_ID, SECRET)],
            freeze_clock,
            ..FakeConfig::default()
        })
        .await
        .expect("the fake starts");
        let ddb = b24_state::testing::client();
        let table = b24_state::testing::fresh_table(&ddb).await;
        let env = aws_env();
        let kms = b24_state::vault::kms_client(&env, Timeouts::BACKGROUND);
        let key = kms
            .create_key()
            .description("talkback test")
            .send()
            .await
            .expect("moto KMS answers")
            .key_metadata
            .unwrap()
            .key_id;
        let b24 = Bitrix24::new(
            Vault::new(ddb.clone(), table.clone(), KmsCipher::new(kms, key)),
            OAuthClient::new(OAuthConfig::local(fake.oauth_url())).unwrap(),
            RestClient::new(RestConfig::local()).unwrap(),
            app(),
        );
        let sqs = b24_pipeline::park::sqs_client(&env, Timeouts::BACKGROUND);
        Harness {
            oauth: OAuthClient::new(OAuthConfig::local(fake.oauth_url())).unwrap(),
            fake,
            b24: Arc::new(b24),
            store: Arc::new(DynamoStore::new(ddb.clone(), table.clone())),
            ddb,
            table,
            sqs,
            handlers: Handlers::new(TEMPLATE).unwrap(),
            known: Mutex::new(vec![SECRET.to_string()]),
            queues: Mutex::new(Vec::new()),
        }
    }

    fn remember(&self, creds: &InstallCredentials) {
        self.known.lock().unwrap().extend([
            creds.access_token.clone(),
            creds.refresh_token.clone(),
            creds.application_token.clone(),
        ]);
    }

    /// A new portal at the fake with the app installed; its credentials.
    pub fn portal(&self, m: &str) -> InstallCredentials {
        let creds = self
            .fake
            .add_portal(PortalSpec::new(m, CLIENT_ID))
            .expect("add_portal");
        self.remember(&creds);
        creds
    }

    /// `fake.install` (bindings dropped, fresh credentials); the new credentials.
    pub async fn reinstall_at_fake(&self, m: &str) -> InstallCredentials {
        let delivery = self.fake.install(m, INSTALL_URL).await.expect("install");
        self.remember(&delivery.credentials);
        delivery.credentials
    }

    /// The portal record installed in the table, as a trusted ONAPPINSTALL with the fake's
    /// application token would leave it (epoch 1 on a first install).
    pub async fn register(&self, m: &str, creds: &InstallCredentials) {
        let install = b24_fixtures::Fixture::new(EventKind::AppInstall)
            .member(m)
            .token(&creds.application_token)
            .ts(now())
            .event();
        b24_state::testing::apply_trusted(&*self.store, &install, now(), 30)
            .await
            .expect("install applied");
    }

    /// A portal at the fake, installed in the table, its tokens verified and stored in the
    /// vault (version 1).
    pub async fn install(&self, m: &str) -> InstallCredentials {
        let creds = self.portal(m);
        self.register(m, &creds).await;
        self.b24
            .verify_install(&member(m), &Secret::new(creds.refresh_token.clone()))
            .await
            .expect("the install verifies");
        creds
    }

    pub async fn entry(&self, m: &str) -> Option<VaultEntry> {
        self.b24.vault.entry(&member(m)).await.expect("vault entry")
    }

    /// The last call log position.
    pub fn last_seq(&self) -> u64 {
        self.fake.calls().last().map_or(0, |c| c.seq)
    }

    /// Calls after `seq`.
    pub fn calls_since(&self, seq: u64) -> Vec<CallRecord> {
        self.fake
            .calls()
            .into_iter()
            .filter(|c| c.seq > seq)
            .collect()
    }

    /// The requests (not the batch's per-command entries) after `seq`, as `kind method outcome`.
    pub fn requests_since(&self, seq: u64) -> Vec<String> {
        self.calls_since(seq)
            .into_iter()
            .filter(|c| c.batch_command.is_none())
            .map(|c| {
                let kind = match c.kind {
                    CallKind::Rest => "rest",
                    CallKind::Oauth => "oauth",
                    CallKind::Event => "event",
                };
                format!("{kind} {} {}", c.method, c.outcome)
            })
            .collect()
    }

    /// Remembers a queue for the leak check.
    pub fn track_queue(&self, url: &str) {
        self.queues.lock().unwrap().push(url.to_string());
    }

    /// The secrets to look for: the marker, the client secret, and every token the fake
    /// handed this test directly, also without the marker (its random part).
    pub fn secrets(&self) -> Vec<String> {
        let mut out = vec![MARK.to_string()];
        for t in self.known.lock().unwrap().iter() {
            out.push(t.clone());
            if let Some(tail) = t.strip_prefix(MARK) {
                if tail.len() >= 16 {
                    out.push(tail.to_string());
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The whole table as text, one line per item.
    pub async fn table_text(&self) -> (String, Vec<Vec<u8>>) {
        let mut text = String::new();
        let mut sealed = Vec::new();
        let mut start: Option<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> = None;
        loop {
            let page = self
                .ddb
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .expect("scan");
            for item in page.items() {
                for (k, v) in item {
                    text.push_str(k);
                    text.push('=');
                    av_text(v, &mut text);
                    text.push(' ');
                    if k == "sealed" {
                        if let Ok(b) = v.as_b() {
                            sealed.push(b.as_ref().to_vec());
                        }
                    }
                }
                text.push('\n');
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        (text, sealed)
    }

    /// Bodies of every message still on this test's queues (peeked without hiding them).
    pub async fn queue_text(&self) -> String {
        let mut text = String::new();
        let urls = self.queues.lock().unwrap().clone();
        for url in urls {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .visibility_timeout(0)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive");
            for m in got.messages() {
                text.push_str(m.body().unwrap_or(""));
                text.push('\n');
            }
        }
        text
    }

    /// No secret of this test in any log line captured so far (every test's, every target, at
    /// TRACE), the table, a sealed blob or a queue.
    pub async fn assert_no_leaks(&self) {
        let secrets = self.secrets();
        let logs = log_text();
        if let Some((s, f, ctx)) = find_leak(logs.as_bytes(), &secrets) {
            panic!("a secret in the logs: {s:?} as {f:?} in …{ctx}…");
        }
        let (table, sealed) = self.table_text().await;
        if let Some((s, f, ctx)) = find_leak(table.as_bytes(), &secrets) {
            panic!("a secret in the table: {s:?} as {f:?} in …{ctx}…");
        }
        for blob in &sealed {
            if let Some((s, f, _)) = find_leak(blob, &secrets) {
                panic!("a secret in a KMS-sealed blob: {s:?} as {f:?}");
            }
        }
        let queues = self.queue_text().await;
        if let Some((s, f, ctx)) = find_leak(queues.as_bytes(), &secrets) {
            panic!("a secret on a queue: {s:?} as {f:?} in …{ctx}…");
        }
    }
}

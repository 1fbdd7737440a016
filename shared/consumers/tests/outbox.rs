//! The outbox (`b24_consumers::outbox`): the table's stream → `b24.change.v1` changes → the
//! `changes.fifo` queue and the optional EventBridge bus.
//!
//! - [`captured`]: the stream records of one portal's whole lifecycle, captured from DynamoDB
//!   Local exactly as the local event-source runner hands them to the function
//!   (`tests/fixtures/stream/*.json`; the ignored `capture_stream_fixtures` compares them with a
//!   fresh capture, and rewrites them with `B24_CAPTURE_STREAM=1`), run through
//!   `outbox::handle` with an in-memory publisher: the exact changes, schema-valid, without
//!   secrets; what the mapping's filter drops and records of other types publish nothing.
//! - [`servers`]: DynamoDB Local's stream → the runner (the template's filter, partial batch
//!   responses, bisection) → `outbox::handle` → moto's FIFO queue and EventBridge bus, whose
//!   rule forwards to an SQS queue.
//! - [`retry`]: a failed publish reports the earliest record of the failed batch; retried from
//!   it, as Lambda does, every change lands once (SQS FIFO deduplication, on moto too).
//! - [`hostile`]: records the table never holds (foreign images, separators in keys, 400 KB
//!   texts, removals, 100 records of one chat): no panic, nothing published for what is not a
//!   change, every `SendMessageBatch` within SQS's limits.
//!
//! Servers (DynamoDB Local, moto) are started on demand by `b24_local`; only `servers` and the
//! capture need them.

mod support {
    use aws_lambda_events::dynamodb::Event;
    use b24_consumers::outbox::{Domains, PublishError, Publisher, MAX_BATCH_BYTES};
    use b24_consumers::outbox::{MAX_BATCH_ENTRIES, STREAM_FILTER};
    use b24_events::EventKind::{self, *};
    use b24_events::{FileRef, Secret};
    use b24_fixtures::Fixture;
    use b24_state::changes::Change;
    use b24_state::item::Item;
    use b24_state::testing::{apply_trusted, RawStore};
    use b24_state::{Applied, Outcome, StoreError};
    use serde_json::{json, Map, Value};
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    pub const MEMBER: &str = b24_fixtures::MEMBER;
    /// The domain the portal's install carries.
    pub const DOMAIN: &str = b24_fixtures::DOMAIN;
    /// What the in-memory [`FixedDomains`] answers (so a change shows where its domain came from).
    pub const LOOKED_UP: &str = "looked-up.bitrix24.ru";
    pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/stream");
    /// Every secret the lifecycle's events carry.
    pub const SECRETS: [&str; 5] = [
        b24_fixtures::APP_TOKEN,
        b24_fixtures::USER_ACCESS_TOKEN,
        b24_fixtures::INSTALL_ACCESS_TOKEN,
        b24_fixtures::REFRESH_TOKEN,
        "4s386p3q0tr8dy89", // a prefix of the refresh token: no part of it either
    ];
    /// The events' `ts` base. Received in 2030: DynamoDB Local's TTL would remove event
    /// records received in the past of its clock right away (the records expire after 30 days).
    pub const T0: i64 = 1_899_999_000;

    /// The SHA-256 of the application token: stored in the portal record, never in a change.
    pub fn token_hash() -> String {
        b24_state::hash_token(&Secret::new(b24_fixtures::APP_TOKEN.to_string()))
    }

    /// One step of the lifecycle: the event, and the changes it must publish as
    /// (type, `MessageGroupId`).
    pub struct Step {
        pub name: &'static str,
        pub event: b24_events::Event,
        pub expect: Vec<(&'static str, String)>,
    }

    impl Step {
        /// `tests/fixtures/stream/NN-name.json`.
        pub fn file(&self, i: usize) -> String {
            format!("{FIXTURES}/{:02}-{}.json", i + 1, self.name)
        }
    }

    /// When step `i` is received (the records' `updated_at`).
    pub fn received_at(i: usize) -> i64 {
        1_900_000_000 + 10 * i as i64
    }

    pub fn group(suffix: &str) -> String {
        format!("{MEMBER}:{suffix}")
    }

    /// A portal's life: installed, messages added (once twice), edited and deleted, a dialog,
    /// an app update, the connector disconnected, the line deleted, uninstalled with CLEAN=1.
    pub fn lifecycle() -> Vec<Step> {
        let f = |k: EventKind, ts: i64| Fixture::new(k).member(MEMBER).ts(T0 + ts);
        let file = FileRef {
            id: Some("4711".into()),
            name: Some("счёт.pdf".into()),
            file_type: Some("file".into()),
            mime: Some("application/pdf".into()),
            link: Some("https://some-domain.bitrix24.ru/~f4711".into()),
            download_link: Some("/rest/download.json?id=4711".into()),
            size: Some(20_582),
            size_formatted: Some("20,1 КБ".into()),
            width: None,
            height: None,
        };
        let add = f(MessageAdd, 100)
            .message_id(86497)
            .files(vec![file])
            .param("CLASS", "bx-messenger-content-item-ol-output");
        let edit = f(MessageUpdate, 200)
            .message_id(86497)
            .text("[b]Светлана Иванова:[/b] [br]Добрый день! Чем помочь?")
            .external_ids(&["ext-msg-004"]);
        let dialog = |k, ts| {
            f(k, ts)
                .session(3282)
                .external_user("ext-user-1")
                .close_term(1440)
        };
        let chat = "chat:channel-123";
        // step(name, event, the change it publishes: type and group within the portal)
        vec![
            step(
                "install",
                f(AppInstall, 0),
                Some(("portal.installed", "portal")),
            ),
            step("message-add", add.clone(), Some(("message.created", chat))),
            step("message-add-duplicate", add, None),
            step("message-edit", edit, Some(("message.edited", chat))),
            step(
                "second-message-add",
                f(MessageAdd, 300)
                    .message_id(86498)
                    .text("Второе сообщение"),
                Some(("message.created", chat)),
            ),
            step(
                "second-message-delete",
                f(MessageDelete, 400)
                    .message_id(86498)
                    .external_ids(&["ext-msg-006"]),
                Some(("message.deleted", chat)),
            ),
            step(
                "dialog-start",
                dialog(DialogStart, 500),
                Some(("dialog.started", "chat:8")),
            ),
            step(
                "dialog-finish",
                dialog(DialogFinish, 600),
                Some(("dialog.finished", "chat:8")),
            ),
            step(
                "app-update",
                f(AppUpdate, 650).version("1.1.0").previous_version("1.0.0"),
                Some(("portal.updated", "portal")),
            ),
            step(
                "connector-status-delete",
                f(StatusDelete, 700),
                Some(("connector.disconnected", "line:107")),
            ),
            step(
                "line-delete",
                f(LineDelete, 800),
                Some(("line.deleted", "line:107")),
            ),
            step(
                "uninstall",
                f(AppUninstall, 900).clean(true),
                Some(("portal.uninstalled", "portal")),
            ),
        ]
    }

    fn step(name: &'static str, event: Fixture, change: Option<(&'static str, &str)>) -> Step {
        Step {
            name,
            event: event.event(),
            expect: change.map(|(t, g)| (t, group(g))).into_iter().collect(),
        }
    }

    /// Applies step `i` as the webhook would (a duplicate for the repeated add).
    pub async fn apply_step<S: RawStore>(store: &S, i: usize, step: &Step) {
        let applied = apply_trusted(store, &step.event, received_at(i), 30)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", step.name));
        let want = match step.name {
            "message-add-duplicate" => Outcome::Duplicate,
            _ => Outcome::Applied,
        };
        assert_eq!(applied, Applied::Outcome(want), "{}", step.name);
    }

    pub async fn apply_lifecycle<S: RawStore>(store: &S) {
        for (i, step) in lifecycle().iter().enumerate() {
            apply_step(store, i, step).await;
        }
    }

    /// (type, group) of every change.
    pub fn kinds(changes: &[Change]) -> Vec<(&'static str, String)> {
        changes
            .iter()
            .map(|c| (c.change_type.as_str(), c.group_id()))
            .collect()
    }

    pub fn schema() -> jsonschema::Validator {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../state/schema/b24.change.v1.json"
        );
        let text = std::fs::read_to_string(path).expect("the JSON Schema file");
        let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
        jsonschema::validator_for(&schema).expect("a valid JSON Schema")
    }

    /// Asserts `change` (as published: its JSON line) matches the schema and holds no secret.
    pub fn check_change(v: &jsonschema::Validator, change: &Change) {
        let text = change.to_json_string();
        let json: Value = serde_json::from_str(&text).unwrap();
        let errors: Vec<String> = v.iter_errors(&json).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{json:#}\nis not b24.change.v1: {errors:?}"
        );
        assert_no_secret(&text, "a change");
    }

    pub fn assert_no_secret(text: &str, what: &str) {
        for s in SECRETS {
            assert!(!text.contains(s), "{what} holds a token in clear ({s})");
        }
        if what == "a change" {
            assert!(!text.contains(&token_hash()), "{what} holds the token hash");
            assert!(!text.contains("token"), "{what} names a token: {text}");
        }
    }

    /// A [`Publisher`] that keeps every call (as SQS would receive them) and checks the
    /// publisher contract of each: at most 10 changes, one per message group, 250 KiB.
    #[derive(Default)]
    pub struct Recorder {
        calls: Mutex<Vec<Vec<Change>>>,
    }

    impl Recorder {
        pub fn calls(&self) -> Vec<Vec<Change>> {
            self.calls.lock().unwrap().clone()
        }
        /// Every change published, in order.
        pub fn changes(&self) -> Vec<Change> {
            self.calls().concat()
        }
    }

    impl Publisher for Recorder {
        async fn publish(&self, changes: &[Change]) -> Result<(), PublishError> {
            self.calls.lock().unwrap().push(changes.to_vec());
            Ok(())
        }
    }

    /// Why a call breaks the publisher contract, if it does.
    pub fn contract_breach(call: &[Change]) -> Option<String> {
        let bytes: usize = call.iter().map(|c| c.to_json_string().len()).sum();
        let groups: BTreeSet<String> = call.iter().map(Change::group_id).collect();
        if call.is_empty() || call.len() > MAX_BATCH_ENTRIES {
            Some(format!("{} entries", call.len()))
        } else if groups.len() != call.len() {
            Some(format!("two changes of one group in {groups:?}"))
        } else if bytes > MAX_BATCH_BYTES {
            Some(format!("{bytes} bytes (limit {MAX_BATCH_BYTES})"))
        } else {
            None
        }
    }

    pub fn assert_contract(calls: &[Vec<Change>]) {
        for (i, call) in calls.iter().enumerate() {
            if let Some(why) = contract_breach(call) {
                panic!("call {i}: {why}");
            }
        }
    }

    /// How a [`Flaky`] call fails.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Fail {
        /// Refused: nothing sent (throttled, unavailable).
        Before,
        /// Sent, but the answer was lost (a timeout): the caller cannot know it was taken.
        After,
    }

    /// A publisher failing the calls listed (1-based) as told, passing the others to `inner`.
    pub struct Flaky<P> {
        pub inner: P,
        plan: Vec<(usize, Fail)>,
        calls: AtomicUsize,
        /// Changes `inner` was given (resends included).
        pub sent: AtomicUsize,
    }

    impl<P> Flaky<P> {
        pub fn new(inner: P, plan: &[(usize, Fail)]) -> Self {
            Flaky {
                inner,
                plan: plan.to_vec(),
                calls: AtomicUsize::new(0),
                sent: AtomicUsize::new(0),
            }
        }
    }

    impl<P: Publisher> Publisher for Flaky<P> {
        async fn publish(&self, changes: &[Change]) -> Result<(), PublishError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let fail = self.plan.iter().find(|(k, _)| *k == n).map(|(_, f)| *f);
            let refused = || PublishError::Rejected {
                sink: "SQS",
                failed: changes.len(),
                sent: changes.len(),
                reason: format!("call {n} fails ({fail:?})"),
            };
            if fail == Some(Fail::Before) {
                return Err(refused());
            }
            self.sent.fetch_add(changes.len(), Ordering::SeqCst);
            self.inner.publish(changes).await?;
            match fail {
                Some(Fail::After) => Err(refused()),
                _ => Ok(()),
            }
        }
    }

    /// [`Domains`] answering [`LOOKED_UP`] (or failing for one member), keeping what it was
    /// told.
    #[derive(Default)]
    pub struct FixedDomains {
        pub fail_for: Option<String>,
        pub remembered: Mutex<Vec<(String, Option<String>)>>,
    }

    impl Domains for FixedDomains {
        async fn domain(&self, member: &str) -> Result<Option<String>, StoreError> {
            match &self.fail_for {
                Some(m) if m == member => Err(StoreError::Unavailable {
                    operation: "GetItem",
                    cause: "throttled".into(),
                }),
                _ => Ok(Some(LOOKED_UP.to_string())),
            }
        }
        fn remember(&self, member: &str, domain: Option<&str>) {
            self.remembered
                .lock()
                .unwrap()
                .push((member.to_string(), domain.map(str::to_string)));
        }
    }

    // -----------------------------------------------------------------------------------------
    // Stream records.

    /// The fixture file as JSON.
    pub fn load_json(path: &str) -> Value {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e} (capture with B24_CAPTURE_STREAM=1)"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The fixture file as the Lambda event the function receives.
    pub fn load(path: &str) -> Event {
        serde_json::from_value(load_json(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// `{"Records": records}` as the function receives it.
    pub fn event(records: Vec<Value>) -> Event {
        serde_json::from_value(json!({ "Records": records })).expect("AWS's DynamoDB event")
    }

    /// The first record's plain `NewImage` of `record_type` in a fixture file: a template for
    /// records the table would hold.
    pub fn template(file: &str, record_type: &str) -> Item {
        let json = load_json(&format!("{FIXTURES}/{file}"));
        json["Records"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| b24_state::stream::image_to_item(&r["dynamodb"]["NewImage"]))
            .find(|i| i.get("record_type") == Some(&json!(record_type)))
            .unwrap_or_else(|| panic!("no {record_type} record in {file}"))
    }

    /// A plain JSON value in DynamoDB's attribute-value JSON.
    pub fn av(v: &Value) -> Value {
        match v {
            Value::String(s) => json!({ "S": s }),
            Value::Number(n) => json!({ "N": n.to_string() }),
            Value::Bool(b) => json!({ "BOOL": b }),
            Value::Null => json!({ "NULL": true }),
            Value::Array(a) => json!({ "L": a.iter().map(av).collect::<Vec<_>>() }),
            Value::Object(m) => json!({ "M": image(m) }),
        }
    }

    /// A plain item as a stream image.
    pub fn image(item: &Map<String, Value>) -> Value {
        Value::Object(item.iter().map(|(k, v)| (k.clone(), av(v))).collect())
    }

    /// One stream record as the runner builds it (`eventName` INSERT, MODIFY or REMOVE), with
    /// images already in attribute-value JSON (or anything else, for hostile records).
    pub fn raw_record(seq: u64, name: &str, old: Option<Value>, new: Option<Value>) -> Value {
        let keys = |i: &Option<Value>| {
            i.as_ref()
                .and_then(|i| Some(json!({"pk": i.get("pk")?.clone(), "sk": i.get("sk")?.clone()})))
        };
        let mut d = Map::new();
        d.insert("ApproximateCreationDateTime".into(), json!(1_900_000_000));
        d.insert(
            "Keys".into(),
            keys(&new).or_else(|| keys(&old)).unwrap_or(json!({})),
        );
        if let Some(n) = new {
            d.insert("NewImage".into(), n);
        }
        if let Some(o) = old {
            d.insert("OldImage".into(), o);
        }
        d.insert("SequenceNumber".into(), json!(sequence(seq)));
        d.insert("SizeBytes".into(), json!(100));
        d.insert("StreamViewType".into(), json!("NEW_AND_OLD_IMAGES"));
        json!({
            "eventID": format!("e{seq}"), "eventName": name, "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": "us-east-1", "dynamodb": d,
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/2026-01-01T00:00:00.000"
        })
    }

    /// The sequence number [`raw_record`] gives record `seq`.
    pub fn sequence(seq: u64) -> String {
        format!("{:021}", 1000 + seq)
    }

    /// A record of plain items: INSERT without `old`, MODIFY with it, REMOVE without `new`.
    pub fn record(seq: u64, old: Option<&Item>, new: Option<&Item>) -> Value {
        let name = match (old, new) {
            (_, None) => "REMOVE",
            (None, Some(_)) => "INSERT",
            (Some(_), Some(_)) => "MODIFY",
        };
        raw_record(seq, name, old.map(image), new.map(image))
    }

    /// A message record (from the captured one) of `chat` with `message_id` and `text`.
    pub fn message(chat: &str, message_id: i64, text: &str) -> Item {
        let mut m = template("02-message-add.json", "message");
        m.insert("external_chat_id".into(), json!(chat));
        m.insert("message_id".into(), json!(message_id));
        m.insert("sk".into(), json!(format!("MSG#{message_id:012}")));
        m.insert("text".into(), json!(text));
        m
    }

    /// The mapping's filter, as the runner applies it.
    pub fn filter() -> b24_local::runner::FilterCriteria {
        b24_local::runner::FilterCriteria::from_strs(&[STREAM_FILTER]).unwrap()
    }
}

mod captured {
    //! The captured lifecycle, handled without servers.
    use crate::support::*;
    use b24_consumers::outbox::{self, Report};
    use b24_state::changes::{Change, SOURCE_RECORD_TYPES};
    use serde_json::{json, Value};
    use std::path::Path;

    /// Handles `event` with a [`Recorder`] and [`FixedDomains`]: the changes and the report.
    async fn run(event: aws_lambda_events::dynamodb::Event) -> (Vec<Change>, Report) {
        let portals = event
            .records
            .iter()
            .filter(|r| {
                serde_json::to_value(&r.change.new_image).unwrap()["record_type"]["S"] == "portal"
            })
            .count();
        let (rec, domains) = (Recorder::default(), FixedDomains::default());
        let (response, report) = outbox::handle(&rec, &domains, event).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        assert_contract(&rec.calls());
        // Each portal record passing by tells the domain cache its current domain.
        let told = domains.remembered.lock().unwrap().clone();
        assert_eq!(
            told,
            vec![(MEMBER.to_string(), Some(DOMAIN.to_string())); portals]
        );
        (rec.changes(), report)
    }

    /// Every step's file through the handler: its changes, in lifecycle order.
    async fn per_step() -> Vec<Change> {
        let v = schema();
        let mut all = Vec::new();
        for (i, step) in lifecycle().iter().enumerate() {
            let path = step.file(i);
            if step.expect.is_empty() && !Path::new(&path).exists() {
                // It wrote nothing: no record, no invocation (the capture checks that).
                continue;
            }
            let event = load(&path);
            let n = event.records.len();
            assert!(n > 0, "{path}: a file is one invocation, never empty");
            let (changes, report) = run(event).await;
            assert_eq!(kinds(&changes), step.expect, "{}", step.name);
            let want = Report {
                records: n,
                published: step.expect.len(),
                unreadable: 0,
                failed: 0,
            };
            assert_eq!(report, want, "{}", step.name);
            for c in &changes {
                check_change(&v, c);
                assert_eq!(c.recorded_at, Some(received_at(i)), "{}", step.name);
            }
            all.extend(changes);
        }
        all
    }

    #[tokio::test]
    async fn every_step_publishes_exactly_its_changes() {
        let all = per_step().await;
        let want: Vec<(&str, String)> = lifecycle().into_iter().flat_map(|s| s.expect).collect();
        assert_eq!(kinds(&all), want);
        let ids: std::collections::BTreeSet<&str> = all.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids.len(), all.len(), "every change has its own id");

        let [installed, created, edited, created2, deleted, started, finished, updated, disconnected, line, uninstalled] =
            &all[..]
        else {
            panic!("{} changes", all.len())
        };
        for c in &all {
            assert_eq!((c.member_id.as_str(), c.epoch), (MEMBER, 1));
            let portal = c.change_type.as_str().starts_with("portal.");
            // The portal record carries its domain; the others are looked up.
            let domain = if portal { DOMAIN } else { LOOKED_UP };
            assert_eq!(c.domain.as_deref(), Some(domain), "{}", c.change_type);
            if !portal {
                assert_eq!(c.line, Some(b24_fixtures::LINE));
                // A deleted line is about the line, not a connector.
                let connector = (c != line).then_some(b24_fixtures::CONNECTOR);
                assert_eq!(c.connector.as_deref(), connector, "{}", c.change_type);
            }
        }
        let p = installed.portal.as_ref().unwrap();
        assert_eq!((p.installed, p.version.as_deref()), (true, Some("1.0.0")));
        assert_eq!(installed.line, None);
        let p = updated.portal.as_ref().unwrap();
        assert_eq!(
            (p.version.as_deref(), p.previous_version.as_deref()),
            (Some("1.1.0"), Some("1.0.0"))
        );
        let p = uninstalled.portal.as_ref().unwrap();
        assert_eq!((p.installed, p.clean), (false, Some(true)));

        let m = created.message.as_ref().unwrap();
        assert_eq!((m.im.chat_id, m.im.message_id), (Some(1807), 86497));
        assert_eq!(m.chat.id.as_deref(), Some("channel-123"));
        assert_eq!(
            m.text.as_deref(),
            Some("[b]Светлана Иванова:[/b] [br]Добрый день!")
        );
        assert_eq!((m.author_user_id, m.revision), (Some(27), 0));
        assert_eq!(m.files.len(), 1);
        assert_eq!(m.files[0]["name"], "счёт.pdf");
        assert_eq!(
            m.params.get("CLASS"),
            Some(&json!("bx-messenger-content-item-ol-output"))
        );
        let e = edited.message.as_ref().unwrap();
        assert_eq!(e.im.message_id, 86497);
        assert_eq!(
            e.text.as_deref(),
            Some("[b]Светлана Иванова:[/b] [br]Добрый день! Чем помочь?")
        );
        assert_eq!(
            (e.revision, e.ids.as_slice()),
            (1, &["ext-msg-004".to_string()][..])
        );
        assert_eq!(edited.occurred_at, Some(T0 + 200));
        assert_ne!(edited.id, created.id);
        let m = created2.message.as_ref().unwrap();
        assert_eq!(
            (m.im.message_id, m.text.as_deref()),
            (86498, Some("Второе сообщение"))
        );
        let d = deleted.message.as_ref().unwrap();
        assert_eq!((d.im.message_id, d.text.as_deref()), (86498, None));
        assert_eq!(deleted.occurred_at, Some(T0 + 400));
        let s = started.dialog.as_ref().unwrap();
        assert_eq!((s.session_id, s.status.as_str()), (3282, "open"));
        assert_eq!(s.user.id.as_deref(), Some("ext-user-1"));
        let f = finished.dialog.as_ref().unwrap();
        assert_eq!((f.session_id, f.status.as_str()), (3282, "closed"));
        assert_eq!(finished.occurred_at, Some(T0 + 600));
        assert_eq!(disconnected.occurred_at, Some(T0 + 700));
        assert_eq!(line.occurred_at, Some(T0 + 800));
        assert_eq!(uninstalled.occurred_at, Some(T0 + 900));
    }

    #[tokio::test]
    async fn the_whole_lifecycle_in_one_batch_publishes_the_same_changes() {
        let batch = load(&format!("{FIXTURES}/lifecycle.json"));
        let n = batch.records.len();
        let (changes, report) = run(batch).await;
        assert_eq!(changes, per_step().await);
        assert_eq!((report.records, report.published), (n, changes.len()));
    }

    #[tokio::test]
    async fn filtered_records_and_other_record_types_publish_nothing() {
        let json = load_json(&format!("{FIXTURES}/lifecycle.json"));
        let records = json["Records"].as_array().unwrap().clone();
        let filter = filter();
        let (mut others, mut dropped, mut publishing) = (Vec::new(), 0, 0);
        for r in &records {
            let t = r["dynamodb"]["NewImage"]["record_type"]["S"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let (changes, report) = run(event(vec![r.clone()])).await;
            assert_eq!((report.records, report.unreadable), (1, 0));
            if !SOURCE_RECORD_TYPES.contains(&t.as_str()) {
                assert!(changes.is_empty(), "a {t} record published {changes:?}");
                others.push(t.clone());
            }
            if !filter.matches(r) {
                dropped += 1;
                assert!(
                    changes.is_empty(),
                    "the mapping drops a record that publishes"
                );
            }
            publishing += usize::from(!changes.is_empty());
        }
        // Not vacuous: an event record per applied step, the purge marker, filtered records.
        let events = others.iter().filter(|t| *t == "event").count();
        assert_eq!(events, lifecycle().len() - 1, "{others:?}");
        assert!(others.iter().any(|t| t == "purge"), "{others:?}");
        assert_eq!(
            dropped,
            others.len(),
            "the filter drops exactly the other types"
        );
        assert_eq!(publishing, 11);
    }

    #[test]
    fn the_fixtures_hold_no_token_in_clear_but_the_hash_is_there_to_leak() {
        let mut files: Vec<_> = std::fs::read_dir(FIXTURES)
            .expect("tests/fixtures/stream")
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 12, "{files:?}");
        let mut hash_seen = false;
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            assert_no_secret(&text, &f.display().to_string());
            hash_seen |= text.contains(&token_hash());
            let json: Value = serde_json::from_str(&text).unwrap();
            assert!(json["Records"].is_array(), "{}", f.display());
        }
        // The portal record stores the token's hash: the change checks above are not vacuous.
        assert!(hash_seen, "no record holds the token hash");
    }
}

mod capture {
    //! Capturing the lifecycle's stream records from DynamoDB Local through the runner.
    use crate::support::*;
    use b24_local::runner::{
        invoker_fn, FilterCriteria, InvokeOutcome, Runner, StartingPosition, StreamSource,
    };
    use b24_state::testing::fresh_store;
    use serde_json::{json, Value};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// The runner's clients: DynamoDB Local (and its streams).
    pub fn runner_clients() -> b24_local::aws::AwsClients {
        b24_local::aws::AwsClients::new(
            &b24_local::aws::AwsEnv::from_env(),
            &b24_local::aws::Endpoints {
                sqs: None,
                dynamodb: Some(b24_state::testing::endpoint()),
                streams: None,
            },
        )
    }

    /// A runner for `table` whose function keeps every event it is handed.
    fn recording(table: &str, start: StartingPosition) -> (Runner, Arc<Mutex<Vec<Value>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let invoker = invoker_fn(move |_f, event| {
            s.lock().unwrap().push(event);
            async { Ok(InvokeOutcome::Ok(b"{\"batchItemFailures\":[]}".to_vec())) }
        });
        let source = StreamSource::table(table, "b24-fn-outbox")
            .starting_position(start)
            .filters(FilterCriteria::none())
            .poll_interval(Duration::from_millis(50));
        let runner = Runner::new(runner_clients(), Arc::new(invoker)).source(source);
        (runner, seen)
    }

    /// What differs from one capture to the next: sequence numbers, ids, times, the table.
    fn normalized(mut event: Value) -> Value {
        for r in event["Records"].as_array_mut().unwrap() {
            r["eventID"] = json!("<id>");
            r["eventSourceARN"] = json!("<arn>");
            r["dynamodb"]["SequenceNumber"] = json!("<seq>");
            r["dynamodb"]["ApproximateCreationDateTime"] = json!(0);
        }
        event
    }

    fn sequences(events: &[Value]) -> Vec<String> {
        events
            .iter()
            .flat_map(|e| e["Records"].as_array().unwrap().clone())
            .map(|r| {
                r["dynamodb"]["SequenceNumber"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    /// Writes `event` to `path` (capture) or compares it with the committed file.
    fn keep(path: &str, event: &Value, write: bool) {
        let text = serde_json::to_string_pretty(event).unwrap() + "\n";
        assert_no_secret(&text, path);
        if write {
            std::fs::write(path, text).unwrap();
        } else {
            assert_eq!(
                normalized(load_json(path)),
                normalized(event.clone()),
                "{path} is stale: capture again with B24_CAPTURE_STREAM=1"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "DynamoDB Local; compares tests/fixtures/stream, B24_CAPTURE_STREAM=1 rewrites it"]
    async fn capture_stream_fixtures() {
        let write = std::env::var("B24_CAPTURE_STREAM").is_ok_and(|v| v == "1");
        if write {
            std::fs::create_dir_all(FIXTURES).unwrap();
        }
        let store = fresh_store().await;
        let mut per_step = Vec::new();
        for (i, step) in lifecycle().iter().enumerate() {
            // Each step's records as the mapping hands them over right after its write.
            let (runner, seen) = recording(store.table(), StartingPosition::Latest);
            let handle = runner.start().await.unwrap();
            apply_step(&store, i, step).await;
            handle
                .until_idle(Duration::from_millis(1500), Duration::from_secs(30))
                .await;
            let events = seen.lock().unwrap().clone();
            let path = step.file(i);
            if step.name == "message-add-duplicate" {
                assert!(events.is_empty(), "a duplicate writes nothing: {events:?}");
                assert!(!std::path::Path::new(&path).exists(), "{path}");
                continue;
            }
            assert_eq!(events.len(), 1, "{}: one invocation", step.name);
            for r in events[0]["Records"].as_array().unwrap() {
                let d = &r["dynamodb"];
                let img = d.get("NewImage").unwrap_or(&d["OldImage"]);
                let at = img
                    .get("updated_at")
                    .or(img.get("received_at"))
                    .and_then(|v| v["N"].as_str());
                assert_eq!(at, Some(received_at(i).to_string().as_str()), "{r:#}");
            }
            keep(&path, &events[0], write);
            per_step.extend(events);
        }
        // The whole stream in one go, as the mapping would hand it after an outage.
        let (runner, seen) = recording(store.table(), StartingPosition::TrimHorizon);
        runner
            .run_until_idle(Duration::from_millis(1500), Duration::from_secs(30))
            .await
            .unwrap();
        let all = seen.lock().unwrap().clone();
        assert_eq!(all.len(), 1, "one batch of at most 100 records");
        assert_eq!(sequences(&all), sequences(&per_step), "the same records");
        keep(&format!("{FIXTURES}/lifecycle.json"), &all[0], write);
    }
}

mod servers {
    //! DynamoDB Local → runner → outbox → moto (FIFO queue, EventBridge bus → SQS).
    use crate::capture::runner_clients;
    use crate::support::*;
    use aws_sdk_sqs::types::{MessageSystemAttributeName as Attr, QueueAttributeName as Q};
    use b24_consumers::outbox::{self, EventBus, PortalDomains, Publisher, Report, Sinks, SqsFifo};
    use b24_local::runner::{invoker_fn, InvokeOutcome, RunReport, Runner, StreamSource};
    use b24_state::changes::Change;
    use b24_state::testing::{fresh_store, fresh_store_on};
    use b24_state::Timeouts;
    use serde_json::Value;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    pub struct Moto {
        pub sqs: aws_sdk_sqs::Client,
        pub events: aws_sdk_eventbridge::Client,
    }

    pub fn moto() -> Moto {
        let e = b24_local::shared_moto_endpoint();
        let env = b24_state::AwsEnv::from_lookup(move |k| match k {
            "AWS_REGION" => Some("us-east-1".into()),
            "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("test".into()),
            "AWS_ENDPOINT_URL_SQS" | "AWS_ENDPOINT_URL_EVENTBRIDGE" => Some(e.clone()),
            _ => None,
        })
        .unwrap();
        Moto {
            sqs: b24_pipeline::park::sqs_client(&env, Timeouts::BACKGROUND),
            events: outbox::eventbridge_client(&env, Timeouts::BACKGROUND),
        }
    }

    /// A resource name no other test (of this or another run on a shared moto) uses.
    pub fn unique(name: &str) -> String {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{name}-{}-{n}-{nanos}", std::process::id())
    }

    /// `changes.fifo` as the template declares it.
    pub async fn fifo_queue(sqs: &aws_sdk_sqs::Client) -> String {
        sqs.create_queue()
            .queue_name(format!("{}.fifo", unique("changes")))
            .attributes(Q::FifoQueue, "true")
            .attributes(Q::ContentBasedDeduplication, "false")
            .attributes(Q::DeduplicationScope, "messageGroup")
            .attributes(Q::FifoThroughputLimit, "perMessageGroupId")
            .attributes(Q::VisibilityTimeout, "60")
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap()
    }

    /// A bus whose rule (source `bitrix24.connector`) targets a new standard queue: (bus,
    /// queue URL).
    async fn bus_to_queue(m: &Moto) -> (String, String) {
        let bus = unique("changes-bus");
        let url = m
            .sqs
            .create_queue()
            .queue_name(unique("bus-target"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let attrs = m
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(Q::QueueArn)
            .send()
            .await
            .unwrap();
        let arn = attrs.attributes().unwrap()[&Q::QueueArn].clone();
        m.events.create_event_bus().name(&bus).send().await.unwrap();
        m.events
            .put_rule()
            .name("all-changes")
            .event_bus_name(&bus)
            .event_pattern(format!(r#"{{"source":["{}"]}}"#, outbox::EVENT_SOURCE))
            .send()
            .await
            .unwrap();
        let target = aws_sdk_eventbridge::types::Target::builder()
            .id("queue")
            .arn(arn)
            .build()
            .unwrap();
        m.events
            .put_targets()
            .rule("all-changes")
            .event_bus_name(&bus)
            .targets(target)
            .send()
            .await
            .unwrap();
        (bus, url)
    }

    /// Every message of the queue, in receive order (each deleted once received).
    pub async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
        let mut out = Vec::new();
        let mut empty = 0;
        while empty < 2 {
            let got = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(Attr::All)
                .send()
                .await
                .unwrap();
            let msgs = got.messages().to_vec();
            empty = if msgs.is_empty() { empty + 1 } else { 0 };
            for m in &msgs {
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
            out.extend(msgs);
        }
        out
    }

    /// The changes on the FIFO queue, checking each message's group and deduplication id.
    pub fn fifo_changes(msgs: &[aws_sdk_sqs::types::Message]) -> Vec<Change> {
        let v = schema();
        msgs.iter()
            .map(|m| {
                let c: Change = serde_json::from_str(m.body().unwrap()).unwrap();
                check_change(&v, &c);
                let attr = |a: Attr| m.attributes().and_then(|x| x.get(&a)).cloned();
                assert_eq!(attr(Attr::MessageGroupId), Some(c.group_id()));
                assert_eq!(attr(Attr::MessageDeduplicationId), Some(c.id.clone()));
                c
            })
            .collect()
    }

    /// The types of each message group, in order.
    pub fn by_group(kinds: &[(&'static str, String)]) -> BTreeMap<String, Vec<&'static str>> {
        let mut m: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (t, g) in kinds {
            m.entry(g.clone()).or_default().push(t);
        }
        m
    }

    /// Asserts the queue holds each change of the lifecycle exactly once, in order per group.
    pub fn assert_lifecycle_once(changes: &[Change]) {
        let want: Vec<(&str, String)> = lifecycle().into_iter().flat_map(|s| s.expect).collect();
        assert_eq!(by_group(&kinds(changes)), by_group(&want));
        let ids: std::collections::BTreeSet<&str> = changes.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids.len(), want.len(), "each change once");
        for c in changes {
            assert_eq!(
                c.domain.as_deref(),
                Some(DOMAIN),
                "read from the portal record"
            );
        }
    }

    /// Runs the mapping (as the template configures it) over `table`'s stream into `publisher`.
    pub async fn run_outbox<P: Publisher + 'static>(
        table: &str,
        publisher: Arc<P>,
    ) -> (RunReport, Vec<(Vec<String>, Report)>) {
        let domains = Arc::new(PortalDomains::new(fresh_store_on(table)));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let c = calls.clone();
        let invoker = invoker_fn(move |_f, event: Value| {
            let (p, d, c) = (publisher.clone(), domains.clone(), c.clone());
            async move {
                let event = serde_json::from_value(event).expect("AWS's DynamoDB event");
                let (response, report) = outbox::handle(&*p, &*d, event).await;
                let failed = response
                    .batch_item_failures
                    .iter()
                    .filter_map(|f| f.item_identifier.clone())
                    .collect();
                c.lock().unwrap().push((failed, report));
                Ok(InvokeOutcome::Ok(serde_json::to_vec(&response).unwrap()))
            }
        });
        let source = StreamSource::table(table, "b24-fn-outbox")
            .filters(crate::support::filter())
            .batch_size(100)
            .report_batch_item_failures(true)
            .bisect(true)
            .max_retries(Some(10))
            .poll_interval(Duration::from_millis(100));
        let report = Runner::new(runner_clients(), Arc::new(invoker))
            .source(source)
            .run_until_idle(Duration::from_secs(2), Duration::from_secs(90))
            .await
            .unwrap();
        let calls = calls.lock().unwrap().clone();
        (report, calls)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_lifecycle_reaches_the_fifo_queue_and_the_bus_through_the_runner() {
        let m = moto();
        let fifo = fifo_queue(&m.sqs).await;
        let (bus, target) = bus_to_queue(&m).await;
        let store = fresh_store().await;
        apply_lifecycle(&store).await;
        let sinks = Arc::new(Sinks {
            queue: SqsFifo::new(m.sqs.clone(), &fifo),
            bus: Some(EventBus::new(m.events.clone(), &bus)),
        });
        let (report, calls) = run_outbox(store.table(), sinks).await;
        let src = &report.sources[0];
        assert_eq!((src.function_errors, src.item_failures), (0, 0), "{src:?}");
        assert!(
            src.records_filtered > 0,
            "event records are filtered out: {src:?}"
        );
        let published: usize = calls.iter().map(|(_, r)| r.published).sum();
        assert_eq!(published, 11, "{calls:?}");

        let changes = fifo_changes(&drain(&m.sqs, &fifo).await);
        assert_lifecycle_once(&changes);
        // The live stack produces what the captured fixtures do.
        let mut fixture_ids: Vec<String> = Vec::new();
        for (i, step) in lifecycle().iter().enumerate() {
            if std::path::Path::new(&step.file(i)).exists() {
                let rec = Recorder::default();
                outbox::handle(&rec, &FixedDomains::default(), load(&step.file(i))).await;
                fixture_ids.extend(rec.changes().into_iter().map(|c| c.id));
            }
        }
        let mut live: Vec<String> = changes.iter().map(|c| c.id.clone()).collect();
        fixture_ids.sort();
        live.sort();
        assert_eq!(
            live, fixture_ids,
            "the fixtures are stale: capture them again"
        );

        // The bus's copy, forwarded by the rule.
        let events = drain(&m.sqs, &target).await;
        let mut seen = BTreeMap::new();
        for e in &events {
            let e: Value = serde_json::from_str(e.body().unwrap()).unwrap();
            assert_eq!(e["source"], outbox::EVENT_SOURCE, "{e:#}");
            assert_eq!(e["detail-type"], e["detail"]["type"], "{e:#}");
            assert_eq!(
                e["resources"],
                serde_json::json!([format!("bitrix24:portal/{MEMBER}")])
            );
            let c: Change = serde_json::from_value(e["detail"].clone()).unwrap();
            assert!(
                seen.insert(c.id.clone(), c).is_none(),
                "one event per change"
            );
        }
        let on_queue: BTreeMap<String, Change> =
            changes.into_iter().map(|c| (c.id.clone(), c)).collect();
        assert_eq!(seen, on_queue, "the bus carries the same changes");
    }
}

mod retry {
    //! Failed publishes: what is reported, and what the retry leaves on the queue.
    use crate::servers::{
        assert_lifecycle_once, drain, fifo_changes, fifo_queue, moto, run_outbox,
    };
    use crate::support::*;
    use b24_consumers::outbox::{self, Report, SqsFifo};
    use b24_state::changes::Change;
    use b24_state::testing::fresh_store;
    use serde_json::{json, Value};
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    /// r0: an event record (nothing); r1, r3: chat a; r2: chat b; r4: a dialog whose first
    /// record is its finish (started + finished, one group); r5: the portal's uninstall. The
    /// handler sends [a1, b2], [a3, started4], [finished4, uninstalled5].
    fn records() -> Vec<Value> {
        let event = template("01-install.json", "event");
        let mut dialog = template("08-dialog-finish.json", "session");
        dialog.insert("session_id".into(), json!(4000));
        dialog.insert("started_at".into(), Value::Null);
        let installed = template("01-install.json", "portal");
        let uninstalled = template("12-uninstall.json", "portal");
        vec![
            record(0, None, Some(&event)),
            record(1, None, Some(&message("a", 1, "one"))),
            record(2, None, Some(&message("b", 2, "two"))),
            record(3, None, Some(&message("a", 3, "three"))),
            record(4, None, Some(&dialog)),
            record(5, Some(&installed), Some(&uninstalled)),
        ]
    }

    const ALL: [&str; 6] = [
        "message.created",
        "message.created",
        "message.created",
        "dialog.started",
        "dialog.finished",
        "portal.uninstalled",
    ];

    /// Deduplicated by id, as the FIFO queue does within five minutes.
    fn dedup(sent: Vec<Change>) -> Vec<Change> {
        let mut seen = std::collections::BTreeSet::new();
        sent.into_iter()
            .filter(|c| seen.insert(c.id.clone()))
            .collect()
    }

    #[tokio::test]
    async fn the_earliest_record_of_the_failed_batch_is_reported_and_the_retry_completes_it() {
        // (failing call, record reported, records done, changes published before it)
        for (call, at, published) in [(1, 1, 0), (2, 3, 2), (3, 4, 4)] {
            for mode in [Fail::Before, Fail::After] {
                let what = format!("call {call} fails {mode:?}");
                let queue = Flaky::new(Recorder::default(), &[(call, mode)]);
                let domains = FixedDomains::default();
                let (response, report) = outbox::handle(&queue, &domains, event(records())).await;
                let failed: Vec<_> = response
                    .batch_item_failures
                    .iter()
                    .map(|f| f.item_identifier.clone().unwrap())
                    .collect();
                assert_eq!(failed, [sequence(at as u64)], "{what}");
                let want = Report {
                    records: at,
                    published,
                    unreadable: 0,
                    failed: 1,
                };
                assert_eq!(report, want, "{what}");
                // Lambda retries from the reported record.
                let (response, report) =
                    outbox::handle(&queue, &domains, event(records()[at..].to_vec())).await;
                assert!(response.batch_item_failures.is_empty(), "{what}");
                assert_eq!(report.records, 6 - at, "{what}");
                let sent = queue.inner.changes();
                let landed = dedup(sent.clone());
                assert_eq!(
                    landed
                        .iter()
                        .map(|c| c.change_type.as_str())
                        .collect::<Vec<_>>(),
                    ALL,
                    "{what}: each change once, in order"
                );
                assert_contract(&queue.inner.calls());
                // At least once: only what may have been taken is sent again.
                let resent = sent.len() - landed.len();
                let expect_resent = match (call, mode) {
                    // The failed call's changes (and started4 again for call 3).
                    (_, Fail::After) => [2, 2, 3][call - 1],
                    (3, Fail::Before) => 1, // started4 went out with [a3, started4]
                    _ => 0,
                };
                assert_eq!(resent, expect_resent, "{what}: {sent:#?}");
            }
        }
    }

    #[tokio::test]
    async fn a_domain_lookup_failure_loses_no_pending_change() {
        let mut other = message("c", 9, "other portal");
        other.insert("member_id".into(), json!("other-portal"));
        let records = vec![
            record(1, None, Some(&message("a", 1, "one"))),
            record(2, None, Some(&other)),
        ];
        let queue = Recorder::default();
        let domains = FixedDomains {
            fail_for: Some("other-portal".into()),
            ..FixedDomains::default()
        };
        let (response, report) = outbox::handle(&queue, &domains, event(records.clone())).await;
        let failed = response.batch_item_failures[0].item_identifier.clone();
        let retried_from = records
            .iter()
            .position(|r| r["dynamodb"]["SequenceNumber"].as_str() == failed.as_deref())
            .unwrap();
        // Whatever is reported, the records before it must have been published.
        assert_eq!(report.records, retried_from);
        assert_eq!(
            queue.changes().len(),
            retried_from,
            "the change of record 1 is neither published nor retried"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn moto_drops_a_resent_deduplication_id_within_its_group() {
        let m = moto();
        let url = fifo_queue(&m.sqs).await;
        for (group, body) in [("g1", "first"), ("g1", "resent"), ("g2", "other group")] {
            m.sqs
                .send_message()
                .queue_url(&url)
                .message_group_id(group)
                .message_deduplication_id("same-id")
                .message_body(body)
                .send()
                .await
                .unwrap();
        }
        let bodies: Vec<String> = drain(&m.sqs, &url)
            .await
            .iter()
            .map(|m| m.body().unwrap().to_string())
            .collect();
        // moto 5.2.5 deduplicates queue-wide: it ignores DeduplicationScope=messageGroup (AWS
        // would deliver "other group" too). Change ids are unique across groups, so the
        // outbox does not depend on the scope; the resend within the group must be dropped.
        assert_eq!(bodies.first().map(String::as_str), Some("first"));
        assert!(!bodies.iter().any(|b| b == "resent"), "{bodies:?}");
        // The control: another deduplication id in the group is another message.
        m.sqs
            .send_message()
            .queue_url(&url)
            .message_group_id("g1")
            .message_deduplication_id("another-id")
            .message_body("second")
            .send()
            .await
            .unwrap();
        let again = drain(&m.sqs, &url).await;
        assert_eq!(again.len(), 1, "{again:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_publishes_are_retried_through_the_runner_and_land_once() {
        let m = moto();
        let fifo = fifo_queue(&m.sqs).await;
        let store = fresh_store().await;
        apply_lifecycle(&store).await;
        // Lost answers (sent, reported failed) and refusals, on the first invocations.
        let plan = [(1, Fail::After), (2, Fail::Before), (4, Fail::After)];
        let queue = Arc::new(Flaky::new(SqsFifo::new(m.sqs.clone(), &fifo), &plan));
        let (report, calls) = run_outbox(store.table(), queue.clone()).await;
        let src = &report.sources[0];
        assert_eq!((src.item_failures, src.function_errors), (3, 0), "{src:?}");
        let failures: Vec<usize> = calls.iter().map(|(f, r)| f.len() + r.failed).collect();
        assert_eq!(
            failures,
            [2, 2, 2, 0],
            "three partial failures, then done: {calls:?}"
        );
        let changes = fifo_changes(&drain(&m.sqs, &fifo).await);
        assert_lifecycle_once(&changes);
        let sent = queue.sent.load(Ordering::SeqCst);
        assert!(
            sent > changes.len(),
            "resends happened ({sent}) and were dropped"
        );
    }
}

mod hostile {
    //! Records the table never holds.
    use crate::support::*;
    use b24_consumers::outbox::{self, Report, MAX_BATCH_BYTES};
    use b24_state::changes::Change;
    use b24_state::item::Item;
    use serde_json::{json, Value};

    async fn run(records: Vec<Value>) -> (Recorder, Report) {
        let (rec, domains) = (Recorder::default(), FixedDomains::default());
        let (response, report) = outbox::handle(&rec, &domains, event(records)).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        (rec, report)
    }

    fn with(base: &Item, k: &str, v: Value) -> Item {
        let mut i = base.clone();
        i.insert(k.into(), v);
        i
    }

    #[tokio::test]
    async fn images_that_are_not_attribute_maps_never_reach_the_handler() {
        let msg = message("a", 1, "x");
        for bad in [
            json!("a string"),
            json!([1, 2]),
            json!(42),
            Value::Object(msg.clone()), // plain JSON, not attribute values
            json!({"record_type": {"Q": "message"}}),
            json!({"record_type": {"S": "message", "N": "1"}}),
            json!({"record_type": {}}),
            json!({"blob": {"B": "not base64!"}}),
        ] {
            let r = raw_record(1, "INSERT", None, Some(bad.clone()));
            let e = serde_json::from_value::<aws_lambda_events::dynamodb::Event>(
                json!({ "Records": [r] }),
            );
            // The runtime answers a deserialization error: a function error, bisected and
            // retried by the mapping; never a panic, never a publish.
            assert!(e.is_err(), "{bad} deserialized");
        }
        // Null images are absent ones; odd but valid attribute values are handled.
        let odd = json!({
            "pk": {"S": "PORTAL#x"}, "sk": {"S": "MSG#1"}, "record_type": {"S": "message"},
            "member_id": {"NULL": true}, "message_id": {"N": "not a number"},
            "nested": {"M": {"l": {"L": [{"BS": ["AA=="]}, {"NS": ["1", "1e400"]}]}}}
        });
        let (rec, report) = run(vec![
            raw_record(1, "INSERT", Some(Value::Null), Some(odd)),
            raw_record(2, "MODIFY", Some(Value::Null), Some(Value::Null)),
            raw_record(
                3,
                "INSERT",
                None,
                Some(image(&with(&msg, "message_id", json!("7")))),
            ),
        ])
        .await;
        assert_eq!(rec.changes(), []);
        assert_eq!((report.records, report.unreadable), (3, 0));
    }

    #[tokio::test]
    async fn without_a_record_type_or_with_an_unknown_one_nothing_is_published() {
        let msg = message("a", 1, "x");
        let mut untyped = msg.clone();
        untyped.remove("record_type");
        let mut records = vec![
            record(1, None, Some(&untyped)),
            record(
                2,
                Some(&untyped),
                Some(&with(&untyped, "status", json!("deleted"))),
            ),
        ];
        for (i, t) in ["widget", "MESSAGE", "message ", "", "event", "purge"]
            .iter()
            .enumerate()
        {
            records.push(record(
                10 + i as u64,
                None,
                Some(&with(&msg, "record_type", json!(t))),
            ));
        }
        records.push(record(20, None, Some(&with(&msg, "record_type", json!(7)))));
        // A record that changed its type is not ours to interpret.
        let line = template("11-line-delete.json", "line");
        records.push(record(21, Some(&line), Some(&msg)));
        let n = records.len();
        let (rec, report) = run(records).await;
        assert_eq!(rec.changes(), []);
        assert_eq!(report.records, n);
        // The control: the same message record does publish.
        let (rec, _) = run(vec![record(1, None, Some(&msg))]).await;
        assert_eq!(rec.changes().len(), 1);
    }

    /// SQS's `MessageGroupId`: 1 to 128 characters, ASCII letters, digits and punctuation.
    fn sqs_group_id(g: &str) -> bool {
        (1..=128).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_graphic())
    }

    const FOREIGN_MEMBERS: [&str; 6] = ["p#x", "p:chat:x", "p x", "портал", "", "x\u{0}y"];

    #[tokio::test]
    async fn member_ids_with_separators_never_panic_nor_disturb_the_others() {
        let msg = message("a", 1, "x");
        let portal = template("01-install.json", "portal");
        let long = "x".repeat(200);
        for member in FOREIGN_MEMBERS.iter().copied().chain([long.as_str()]) {
            let records = vec![
                record(1, None, Some(&message("a", 1, "before"))),
                record(2, None, Some(&with(&msg, "member_id", json!(member)))),
                record(3, None, Some(&with(&portal, "member_id", json!(member)))),
                record(4, None, Some(&message("a", 4, "after"))),
            ];
            let (rec, report) = run(records).await;
            assert_eq!((report.records, report.failed), (4, 0), "{member:?}");
            assert_contract(&rec.calls());
            // The portal's own changes are all there, in order, whatever sits between them.
            let ours: Vec<i64> = rec
                .changes()
                .iter()
                .filter(|c| c.member_id == MEMBER)
                .map(|c| c.message.as_ref().unwrap().im.message_id)
                .collect();
            assert_eq!(ours, [1, 4], "{member:?}");
        }
    }

    #[tokio::test]
    async fn a_member_id_that_is_no_portal_s_publishes_nothing() {
        let msg = message("a", 1, "x");
        let long = "x".repeat(200);
        for member in FOREIGN_MEMBERS.iter().copied().chain([long.as_str()]) {
            let r = record(1, None, Some(&with(&msg, "member_id", json!(member))));
            let (rec, _) = run(vec![r]).await;
            for c in rec.changes() {
                let g = c.group_id();
                assert!(
                    sqs_group_id(&g),
                    "{member:?}: SQS refuses the group id {g:?}"
                );
            }
            assert_eq!(rec.changes(), [], "{member:?}: not a portal's change");
        }
    }

    #[tokio::test]
    async fn removals_publish_nothing() {
        let msg = message("a", 1, "x");
        let mut records = vec![record(1, Some(&msg), None)];
        for (i, (file, t)) in [
            ("01-install.json", "portal"),
            ("07-dialog-start.json", "session"),
            ("10-connector-status-delete.json", "connector"),
            ("11-line-delete.json", "line"),
            ("01-install.json", "event"),
            ("12-uninstall.json", "purge"),
        ]
        .iter()
        .enumerate()
        {
            records.push(record(2 + i as u64, Some(&template(file, t)), None));
        }
        // A TTL removal, as DynamoDB's service principal writes it.
        let mut ttl = record(9, Some(&template("01-install.json", "event")), None);
        ttl["userIdentity"] = json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"});
        records.push(ttl);
        // A MODIFY whose new image is empty (the runner's empty-map repair case).
        records.push(raw_record(10, "MODIFY", Some(image(&msg)), Some(json!({}))));
        let n = records.len();
        let (rec, report) = run(records).await;
        assert_eq!(rec.changes(), []);
        assert_eq!(
            (report.records, report.unreadable, report.failed),
            (n, 0, 0)
        );
    }

    #[tokio::test]
    async fn a_400_kb_text_never_panics_and_keeps_the_feed_in_order() {
        let big = "ж".repeat(200 * 1024); // 400 KiB of UTF-8
        let records = vec![
            record(1, None, Some(&message("a", 1, "before"))),
            record(2, None, Some(&message("b", 2, &big))),
            record(3, None, Some(&message("c", 3, "after"))),
        ];
        let (rec, report) = run(records).await;
        assert_eq!((report.records, report.published), (3, 3));
        let ids: Vec<i64> = rec
            .changes()
            .iter()
            .map(|c| c.message.as_ref().unwrap().im.message_id)
            .collect();
        assert_eq!(ids, [1, 2, 3]);
        // The oversized change is shortened to fit one message, and says so.
        let calls = rec.calls();
        for call in &calls {
            let bytes: usize = call.iter().map(|c| c.to_json_string().len()).sum();
            assert!(bytes <= MAX_BATCH_BYTES, "a call of {bytes} bytes");
        }
        let m = rec.changes()[1].message.clone().unwrap();
        assert!(m.text_truncated, "the cut text is marked truncated");
        let text = m.text.unwrap();
        assert!(
            text.len() < big.len() && big.starts_with(&text),
            "a prefix of the text"
        );
    }

    #[tokio::test]
    async fn no_call_exceeds_the_batch_byte_limit() {
        // Through the real write path: a 64 KiB text (the state's limit, kept whole) of
        // control characters, each escaped as \u0001 (6 bytes) in the change's JSON.
        let store = b24_state::MemoryStore::new();
        let text = "\u{1}".repeat(64 * 1024);
        let f = |k| b24_fixtures::Fixture::new(k).member(MEMBER);
        let add = f(b24_events::EventKind::MessageAdd).text(&text).event();
        for (i, e) in [f(b24_events::EventKind::AppInstall).event(), add]
            .iter()
            .enumerate()
        {
            b24_state::testing::apply_trusted(&store, e, 1_900_000_000 + i as i64, 30)
                .await
                .unwrap();
        }
        let records = store
            .take_stream()
            .iter()
            .enumerate()
            .map(|(i, r)| record(i as u64, r.old.as_ref(), r.new.as_ref()))
            .collect();
        let (rec, _) = run(records).await;
        assert_contract(&rec.calls());
        // And the 400 KB text of a foreign record.
        let big = "ж".repeat(200 * 1024);
        let (rec, _) = run(vec![record(1, None, Some(&message("b", 2, &big)))]).await;
        assert_contract(&rec.calls());
    }

    #[tokio::test]
    async fn a_hundred_records_of_one_chat_are_sent_one_per_call_in_order() {
        let records: Vec<Value> = (0..100)
            .map(|i| record(i, None, Some(&message("one-chat", 1000 + i as i64, "hi"))))
            .collect();
        let (rec, report) = run(records).await;
        assert_eq!((report.records, report.published), (100, 100));
        let calls = rec.calls();
        assert_eq!(
            calls.len(),
            100,
            "one group never twice in one SendMessageBatch"
        );
        assert_contract(&calls);
        let ids: Vec<i64> = calls
            .iter()
            .flatten()
            .map(|c| c.message.as_ref().unwrap().im.message_id)
            .collect();
        assert_eq!(ids, (1000..1100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_hundred_records_of_many_chats_fill_batches_within_sqs_limits() {
        // Small: cut at ten entries. Large (40 KiB each): cut by bytes first.
        for (text, chats) in [("hi".to_string(), 100), ("я".repeat(20 * 1024), 10)] {
            let records: Vec<Value> = (0..100)
                .map(|i| {
                    let chat = format!("chat-{}", i % chats);
                    record(i, None, Some(&message(&chat, 1000 + i as i64, &text)))
                })
                .collect();
            let (rec, report) = run(records).await;
            assert_eq!(report.published, 100);
            let calls = rec.calls();
            assert_contract(&calls);
            let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
            let bytes = |c: &[Change]| c.iter().map(|c| c.to_json_string().len()).sum::<usize>();
            // Tight: a call ends only where the next change could not join it.
            for w in calls.windows(2) {
                let next = &w[1][0];
                let full = w[0].len() == 10
                    || w[0].iter().any(|c| c.group_id() == next.group_id())
                    || bytes(&w[0]) + next.to_json_string().len() > MAX_BATCH_BYTES;
                assert!(full, "a call was cut early: {sizes:?}");
            }
            let most = *sizes.iter().max().unwrap();
            match chats {
                100 => assert_eq!(sizes, [10; 10]),
                _ => assert!((2..10).contains(&most), "cut by bytes: {sizes:?}"),
            }
            let order: Vec<i64> = calls
                .concat()
                .iter()
                .map(|c: &Change| c.message.as_ref().unwrap().im.message_id)
                .collect();
            assert_eq!(order, (1000..1100).collect::<Vec<_>>(), "stream order kept");
        }
    }
}

//! Talking back to Bitrix24 on real parts: the token vault (DynamoDB Local + moto KMS), the
//! product's `Bitrix24` (OAuth refresh + REST `batch`), the binder and the acks consumer,
//! against the fake Bitrix24 (every token it issues starts with [`MARK`]), driven directly
//! or through the local event-source runner from moto SQS.
//!
//! 1. [`refresh`]: 20 concurrent callers with an expired token make exactly one refresh; an
//!    `expired_token` answer mid-batch refreshes once and retries; concurrent ones share it.
//! 2. [`reinstall`]: `invalid_grant` marks the portal `needs_reinstall` (binder and acks stop
//!    talking to it, without retry loops) until a new verified install.
//! 3. [`verify`]: another portal's, a spent or an unknown refresh token stores nothing.
//! 4. [`bindings`]: bound after the install, bound again after the update dropped them,
//!    `already_bound` when nothing was dropped.
//! 5. [`rate_limit`]: 120 acks under a rate limit of 1 request/s drain without loss or
//!    duplicate through the runner.
//! 6. [`hostile`]: malformed acks and tasks, unknown portals, stale epochs: nothing reaches the
//!    fake, nothing is retried, nothing panics.
//! 7. [`leaks`]: no token in any log line (TRACE, every target), record, queue or sealed blob,
//!    in clear, base64, URL-encoded or JSON-escaped.
//!
//! Every test ends with [`Harness::assert_no_leaks`] (the global log capture so far, its table,
//! its sealed blobs, its queues).

#[path = "talkback/support.rs"]
mod support;

use support::*;

mod refresh {
    use super::*;
    use b24_rest::{Command, OAuthError, Secret};
    use b24_state::vault::{Tokens, VaultStatus};
    use serde_json::Value;

    fn commands() -> Vec<Command> {
        vec![
            Command::new("info", "app.info", Value::Null),
            Command::new("events", "event.get", Value::Null),
        ]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn twenty_concurrent_batches_with_an_expired_token_refresh_exactly_once() {
        bounded(async {
            let h = Harness::start(false).await;
            let m = "tbrace";
            let creds = h.portal(m);
            h.register(m, &creds).await;
            // The vault holds the install's pair, its access token expired (here and at the fake).
            let stored = Tokens {
                access_token: Secret::new(creds.access_token.clone()),
                refresh_token: Secret::new(creds.refresh_token.clone()),
                access_expires_at: now() - 10,
                client_endpoint: creds.client_endpoint.clone(),
            };
            assert_eq!(h.b24.vault.store(&member(m), &stored, now()).await, Ok(1));
            assert!(h.fake.expire_access_tokens(m).unwrap() >= 1);
            let before = h.last_seq();
            let tasks: Vec<_> = (0..20)
                .map(|_| {
                    let b24 = h.b24.clone();
                    tokio::spawn(async move { b24.batch(&member(m), &commands()).await })
                })
                .collect();
            for t in tasks {
                let answer = t.await.unwrap().expect("every caller succeeds");
                assert_eq!(answer.results["info"]["CODE"], CLIENT_ID, "{answer:?}");
                assert!(answer.outcome("events").unwrap().is_ok(), "{answer:?}");
            }
            let requests = h.requests_since(before);
            let oauth: Vec<_> = requests.iter().filter(|r| r.starts_with("oauth")).collect();
            assert_eq!(
                oauth,
                ["oauth oauth/token ok"],
                "exactly one refresh: {requests:?}"
            );
            let batches: Vec<_> = requests.iter().filter(|r| r.starts_with("rest")).collect();
            assert_eq!(batches.len(), 20, "{requests:?}");
            assert!(
                batches.iter().all(|b| *b == "rest batch ok"),
                "no batch went out with the expired token: {requests:?}"
            );
            let entry = h.entry(m).await.unwrap();
            assert_eq!((entry.version, entry.status), (2, VaultStatus::Ok));
            assert!(entry.access_expires_at > now() + 3000);
            // The refresh token the vault held is spent at the fake now.
            assert_eq!(
                h.oauth
                    .refresh(&app(), &Secret::new(creds.refresh_token.clone()))
                    .await
                    .unwrap_err(),
                OAuthError::InvalidGrant
            );
            h.assert_no_leaks().await;
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_token_answer_mid_batch_refreshes_once_and_retries() {
        bounded(async {
            let h = Harness::start(false).await;
            let m = "tbexpired";
            h.install(m).await;
            let v = h.entry(m).await.unwrap();
            assert_eq!(v.version, 1);
            assert!(
                v.access_expires_at > now() + 3000,
                "the vault thinks it valid"
            );
            h.fake.expire_access_tokens(m).unwrap();
            let before = h.last_seq();
            let answer = h
                .b24
                .batch(&member(m), &commands())
                .await
                .expect("refreshed and retried");
            assert_eq!(answer.results["info"]["CODE"], CLIENT_ID);
            assert_eq!(
                h.requests_since(before),
                [
                    "rest batch expired_token",
                    "oauth oauth/token ok",
                    "rest batch ok"
                ]
            );
            let after = h.entry(m).await.unwrap();
            assert_eq!((after.version, after.status), (2, VaultStatus::Ok));
            // The new token is used from now on: no further refresh.
            let before = h.last_seq();
            h.b24.batch(&member(m), &commands()).await.unwrap();
            assert_eq!(h.requests_since(before), ["rest batch ok"]);
            h.assert_no_leaks().await;
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_expired_token_answers_share_one_refresh() {
        bounded(async {
            let h = Harness::start(false).await;
            let m = "tbexpiredmany";
            h.install(m).await;
            h.fake.expire_access_tokens(m).unwrap();
            let before = h.last_seq();
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let b24 = h.b24.clone();
                    tokio::spawn(async move { b24.batch(&member(m), &commands()).await })
                })
                .collect();
            for t in tasks {
                t.await.unwrap().expect("every caller succeeds");
            }
            let requests = h.requests_since(before);
            let oauth = requests.iter().filter(|r| r.starts_with("oauth")).count();
            assert_eq!(oauth, 1, "one refresh for all: {requests:?}");
            assert!(
                !requests
                    .iter()
                    .any(|r| r == "oauth oauth/token invalid_grant"),
                "{requests:?}"
            );
            let ok = requests.iter().filter(|r| *r == "rest batch ok").count();
            assert_eq!(ok, 8, "{requests:?}");
            assert_eq!(h.entry(m).await.unwrap().version, 2);
            h.assert_no_leaks().await;
        })
        .await
    }
}

mod reinstall {
    use super::*;
    use aws_lambda_events::sqs::SqsEvent;
    use b24_consumers::{acks, binder};
    use b24_pipeline::talkback::TalkError;
    use b24_rest::{Command, Secret};
    use b24_state::vault::{VaultError, VaultStatus};
    use serde_json::Value;

    /// Fails the test on any visibility change (nothing here may be retried).
    pub struct NoVisibility;

    impl b24_consumers::redrive::Visibility for NoVisibility {
        async fn hide(&self, _: &str, seconds: i32) -> Result<(), String> {
            panic!("nothing may be retried here (asked to hide for {seconds} s)");
        }
    }

    fn acks_event(m: &str, n: i64) -> SqsEvent {
        sqs_event(
            &(0..n)
                .map(|i| (format!("ack-{i}"), Some(ack(m, 7, 500 + i).to_string())))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn invalid_grant_marks_needs_reinstall_until_a_new_verified_install() {
        bounded(async {
            let h = Harness::start(false).await;
            let m = "tbgrant";
            h.install(m).await;
            h.fake.revoke_refresh_tokens(m).unwrap();
            h.fake.expire_access_tokens(m).unwrap();
            let info = [Command::new("info", "app.info", Value::Null)];

            let before = h.last_seq();
            assert_eq!(
                h.b24.batch(&member(m), &info).await.unwrap_err(),
                TalkError::Vault(VaultError::NeedsReinstall)
            );
            assert_eq!(
                h.requests_since(before),
                [
                    "rest batch expired_token",
                    "oauth oauth/token invalid_grant"
                ]
            );
            assert_eq!(
                h.entry(m).await.unwrap().status,
                VaultStatus::NeedsReinstall
            );
            assert_eq!(VaultStatus::NeedsReinstall.as_str(), "needs_reinstall");

            // Nobody talks to the portal any more: not the next batch, not the binder, not acks.
            let before = h.last_seq();
            assert_eq!(
                h.b24.batch(&member(m), &info).await.unwrap_err(),
                TalkError::Vault(VaultError::NeedsReinstall)
            );
            let task = sqs_event(&[("task-1".into(), Some(change(m, "portal.installed", 1)))]);
            let (response, report) =
                binder::handle(&*h.b24, &h.store, &h.handlers, task, now()).await;
            assert_eq!(
                report,
                binder::Report {
                    needs_reinstall: 1,
                    ..Default::default()
                }
            );
            assert!(response.batch_item_failures.is_empty(), "not retried");
            let (response, report) = acks::handle(&*h.b24, &NoVisibility, acks_event(m, 3)).await;
            assert_eq!(
                (
                    report.dropped,
                    report.needs_reinstall,
                    report.retried,
                    report.delivered
                ),
                (3, 1, 0, 0),
                "{report:?}"
            );
            assert!(response.batch_item_failures.is_empty(), "not retried");
            assert!(
                h.requests_since(before).is_empty(),
                "nothing called: {:?}",
                h.requests_since(before)
            );
            assert!(h.fake.bindings(m).unwrap().is_empty());
            assert!(h.fake.deliveries(m).unwrap().is_empty());

            // The app is installed again: a verified install stores a new pair and clears it.
            let creds = h.reinstall_at_fake(m).await;
            h.b24
                .verify_install(&member(m), &Secret::new(creds.refresh_token.clone()))
                .await
                .expect("the reinstall verifies");
            let entry = h.entry(m).await.unwrap();
            assert_eq!(entry.status, VaultStatus::Ok);
            h.b24.batch(&member(m), &info).await.expect("talking again");
            let task = sqs_event(&[("task-2".into(), Some(change(m, "portal.installed", 1)))]);
            let (_, report) = binder::handle(&*h.b24, &h.store, &h.handlers, task, now()).await;
            assert_eq!(report.bound, 1, "{report:?}");
            let (_, report) = acks::handle(&*h.b24, &NoVisibility, acks_event(m, 3)).await;
            assert_eq!(report.delivered, 3, "{report:?}");
            h.assert_no_leaks().await;
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn twenty_concurrent_callers_on_a_revoked_portal_make_one_refresh_attempt() {
        bounded(async {
            let h = Harness::start(false).await;
            let m = "tbgrantmany";
            h.install(m).await;
            h.fake.revoke_refresh_tokens(m).unwrap();
            h.fake.expire_access_tokens(m).unwrap();
            let before = h.last_seq();
            let tasks: Vec<_> = (0..20)
                .map(|_| {
                    let b24 = h.b24.clone();
                    tokio::spawn(async move {
                        b24.batch(&member(m), &[Command::new("i", "app.info", Value::Null)])
                            .await
                    })
                })
                .collect();
            for t in tasks {
                assert_eq!(
                    t.await.unwrap().unwrap_err(),
                    TalkError::Vault(VaultError::NeedsReinstall)
                );
            }
            let requests = h.requests_since(before);
            let oauth: Vec<_> = requests.iter().filter(|r| r.starts_with("oauth")).collect();
            assert_eq!(oauth, ["oauth oauth/token invalid_grant"], "{requests:?}");
            assert!(
                requests
                    .iter()
                    .all(|r| r.starts_with("oauth") || r == "rest batch expired_token"),
                "{requests:?}"
            );
            let entry = h.entry(m).await.unwrap();
            assert_eq!(
                (entry.status, entry.version),
                (VaultStatus::NeedsReinstall, 1)
            );
            h.assert_no_leaks().await;
        })
        .await
    }
}

mod verify {
    use super::*;
    use b24_pipeline::VerifyError;
    use b24_rest::{OAuthError, Secret};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_portals_refresh_token_is_refused_and_stores_nothing() {
        bounded(async {
            let h = Harness::start(false).await;
            let (a, b) = ("tbverifya", "tbverifyb");
            let _ca = h.portal(a);
            let cb = h.portal(b);
            let before = h.last_seq();
            assert_eq!(
                h.b24
                    .verify_install(&member(a), &Secret::new(cb.refresh_token.clone()))
                    .await
                    .unwrap_err(),
                VerifyError::OtherPortal
            );
            assert_eq!(h.requests_since(before), ["oauth oauth/token ok"]);
            assert!(h.entry(a).await.is_none(), "nothing stored for a");
            assert!(h.entry(b).await.is_none(), "nothing stored for b");
            // (The attempt spent b's refresh token: the pair the fake answered is discarded.)
            assert_eq!(
                h.oauth
                    .refresh(&app(), &Secret::new(cb.refresh_token.clone()))
                    .await
                    .unwrap_err(),
                OAuthError::InvalidGrant
            );
            h.assert_no_leaks().await;
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_genuine_install_is_verified_even_when_the_vault_cannot_store_its_tokens() {
        bounded(async {
            let h = Harness::start(false).await;
            let m = "tbverifynovault";
            let creds = h.portal(m);
            // The same parts, but a table that does not exist: every vault write fails.
            let broken = b24_pipeline::Bitrix24::new(
                b24_state::vault::Vault::new(
                    h.ddb.clone(),
                    "no-such-table",
                    b24_state::vault::KmsCipher::new(
                        b24_state::vault::kms_client(&aws_env(), b24_state::Timeouts::BACKGROUND),
                        "alias/none",
                    ),
                ),
                b24_rest::OAuthClient::new(b24_rest::OAuthConfig::local(h.fake.oauth_url()))
                    .unwrap(),
                b24_rest::RestClient::new(b24_rest::RestConfig::local()).unwrap(),
                app(),
            );
            let endpoint = broken
                .verify_install(&member(m), &Secret::new(creds.refresh_token.clone()))
                .await
                .expect("the OAuth server vouched: the install is not refused");
            assert_eq!(endpoint, creds.client_endpoint);
            assert!(h.entry(m).await.is_none());
            h.assert_no_leaks().await;
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_install_re_authenticated_is_not_refused_for_its_spent_token() {
        use b24_pipeline::InstallVerifier;
        bounded(async {
            let h = Harness::start(false).await;
            let m = "tbverifytwice";
            let creds = h.portal(m);
            let verifier = b24_pipeline::OAuthVerifier::new(h.b24.clone());
            let event = b24_fixtures::Fixture::new(b24_events::EventKind::AppInstall)
                .member(m)
                .token(&creds.application_token)
                .refresh_token(&creds.refresh_token)
                .event();
            let first = verifier.verify(&event, None).await.expect("verified");
            let before = h.last_seq();
            // The pipeline re-authenticates an event once when the portal changed under it.
            let again = verifier.verify(&event, None).await.expect("still verified");
            assert_eq!(first, again);
            assert!(h.requests_since(before).is_empty(), "no second refresh");
            // The same refresh token with another application_token is a new claim: refused.
            let mut other = event.clone();
            other.auth.application_token = Some(Secret::new("attacker-application-token"));
            assert!(verifier.verify(&other, None).await.is_err());
            h.assert_no_leaks().await;
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_spent_unknown_or_empty_refresh_token_is_refused_and_stores_nothing() {
        bounded(async {
            let h = Harness::start(false).await;
            let m = "tbverifyspent";
            let creds = h.portal(m);
            // Spent (a replayed install): somebody refreshed with it already.
            h.oauth
                .refresh(&app(), &Secret::new(creds.refresh_token.clone()))
                .await
                .unwrap();
            let unknown = format!("{MARK}{}", "0".repeat(64));
            h.known.lock().unwrap().push(unknown.clone());
            for token in [creds.refresh_token.clone(), unknown, String::new()] {
                let e = h
                    .b24
                    .verify_install(&member(m), &Secret::new(token))
                    .await
                    .unwrap_err();
                assert!(matches!(e, VerifyError::BadAnswer(_)), "{e:?}");
                assert!(!format!("{e} {e:?}").contains(MARK));
                assert!(h.entry(m).await.is_none(), "nothing stored");
            }
            let outcomes: Vec<_> = h
                .fake
                .calls()
                .into_iter()
                .filter(|c| c.method == "oauth/token")
                .map(|c| c.outcome)
                .collect();
            // The empty one is refused without a request.
            assert_eq!(outcomes, ["ok", "invalid_grant", "invalid_grant"]);
            h.assert_no_leaks().await;
        })
        .await
    }
}

mod bindings {
    use super::*;
    use b24_consumers::binder;
    use serde_json::Value;

    async fn bindings_record(h: &Harness, m: &str) -> Value {
        h.store
            .portal_records(&member(m))
            .await
            .unwrap()
            .into_iter()
            .find(|r| r["record_type"] == "bindings")
            .expect("a BINDINGS record")
    }

    fn names(v: &Value) -> Vec<String> {
        let mut n: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bindings_are_redone_after_an_update_and_already_bound_is_fine() {
        bounded(async {
            let h = Harness::start(false).await;
            let m = "tbbind";
            h.install(m).await;
            let wanted = h.handlers.bindings();
            assert_eq!(wanted.len(), 9);
            let mut expected: Vec<(String, String)> = wanted
                .iter()
                .map(|(e, u)| (e.to_ascii_uppercase(), u.clone()))
                .collect();
            expected.sort();
            let at_fake = |h: &Harness| {
                let mut b: Vec<(String, String)> = h
                    .fake
                    .bindings(m)
                    .unwrap()
                    .into_iter()
                    .map(|b| (b.event, b.handler))
                    .collect();
                b.sort();
                b
            };
            let run = |body: String| {
                let h = &h;
                async move {
                    let event = sqs_event(&[("task".into(), Some(body))]);
                    binder::handle(&*h.b24, &h.store, &h.handlers, event, now()).await
                }
            };
            let bound_only = binder::Report {
                bound: 1,
                ..Default::default()
            };

            // 1. The install: all nine bound.
            let (response, report) = run(change(m, "portal.installed", 1)).await;
            assert_eq!(report, bound_only);
            assert!(response.batch_item_failures.is_empty());
            assert_eq!(at_fake(&h), expected);
            let record = bindings_record(&h, m).await;
            assert_eq!(names(&record["bound"]).len(), 9, "{record}");
            assert!(names(&record["already_bound"]).is_empty(), "{record}");
            assert_eq!(record["failed"], serde_json::json!({}), "{record}");
            assert_eq!(record["epoch"], 1);

            // 2. An update: Bitrix24 drops the app's bindings; the portal.updated task rebinds.
            h.reinstall_at_fake(m).await;
            assert!(
                h.fake.bindings(m).unwrap().is_empty(),
                "dropped by the update"
            );
            let (response, report) = run(change(m, "portal.updated", 1)).await;
            assert_eq!(report, bound_only);
            assert!(response.batch_item_failures.is_empty());
            assert_eq!(at_fake(&h), expected);
            let record = bindings_record(&h, m).await;
            assert_eq!(names(&record["bound"]).len(), 9, "{record}");
            assert!(names(&record["already_bound"]).is_empty(), "{record}");

            // 3. Another task with everything in place: "already binded" is success.
            let before = h.last_seq();
            let (response, report) = run(change(m, "portal.updated", 1)).await;
            assert_eq!(report, bound_only);
            assert!(response.batch_item_failures.is_empty());
            assert_eq!(at_fake(&h), expected, "no duplicate binding");
            let record = bindings_record(&h, m).await;
            assert!(names(&record["bound"]).is_empty(), "{record}");
            let mut all: Vec<String> = wanted.iter().map(|(e, _)| e.clone()).collect();
            all.sort();
            assert_eq!(names(&record["already_bound"]), all, "{record}");
            assert_eq!(record["failed"], serde_json::json!({}), "{record}");
            let commands: Vec<String> = h
                .calls_since(before)
                .into_iter()
                .filter(|c| c.batch_command.is_some())
                .map(|c| c.outcome)
                .collect();
            assert_eq!(commands, vec!["ERROR_CORE".to_string(); 9]);
            h.assert_no_leaks().await;
        })
        .await
    }
}

mod rate_limit {
    use super::*;
    use aws_lambda_events::sqs::SqsEvent;
    use b24_consumers::acks;
    use b24_consumers::redrive::{SqsVisibility, Visibility};
    use b24_fake_bitrix24::RateLimit;
    use b24_local::runner::{invoker_fn, InvokeOutcome, Runner, SqsSource};
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Hides a retried message for 1 s whatever back-off the handler asked (recorded).
    struct QuickVisibility {
        inner: SqsVisibility,
        asked: Mutex<Vec<i32>>,
    }

    impl Visibility for QuickVisibility {
        async fn hide(&self, receipt: &str, seconds: i32) -> Result<(), String> {
            self.asked.lock().unwrap().push(seconds);
            self.inner.hide(receipt, 1).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rate_limited_acks_drain_through_the_runner_without_loss_or_duplicate() {
        bounded(async {
            // Wall clock (not frozen): the bucket drains while the runner works.
            let h = Harness::start(false).await;
            let m = "tbratelimit";
            h.install(m).await;
            h.fake
                .set_rate_limit(
                    m,
                    Some(RateLimit {
                        drain_per_second: 1.0,
                        capacity: 1,
                    }),
                )
                .unwrap();
            let url = queue(&h.sqs, "acks", 6).await;
            h.track_queue(&url);
            // 120 acks over 60 lines: 60 commands for 100 acks, two batch requests per portal.
            let bodies: Vec<String> = (0..120)
                .map(|i| ack(m, 1 + (i % 60), 10_000 + i).to_string())
                .collect();
            send_all(&h.sqs, &url, &bodies).await;

            let reports = Arc::new(Mutex::new(Vec::<acks::Report>::new()));
            let vis = Arc::new(QuickVisibility {
                inner: SqsVisibility::new(h.sqs.clone(), &url),
                asked: Mutex::new(Vec::new()),
            });
            let (b24, r, v) = (h.b24.clone(), reports.clone(), vis.clone());
            let invoker = invoker_fn(move |_f, event| {
                let (b24, r, v) = (b24.clone(), r.clone(), v.clone());
                async move {
                    let event: SqsEvent = serde_json::from_value(event).expect("SqsEvent");
                    let (response, report) = acks::handle(&*b24, &*v, event).await;
                    r.lock().unwrap().push(report);
                    Ok(InvokeOutcome::Ok(serde_json::to_vec(&response).unwrap()))
                }
            });
            let run = Runner::new(runner_clients(), Arc::new(invoker))
                .source(
                    SqsSource::new(&url, "b24-fn-acks")
                        .batch_size(100)
                        .batching_window(Duration::from_secs(1))
                        .wait_seconds(1)
                        .report_batch_item_failures(true),
                )
                .run_until_idle(Duration::from_secs(4), Duration::from_secs(150))
                .await
                .unwrap();
            assert_eq!(run.stop, b24_local::runner::StopReason::Idle, "{run:?}");

            let reports = reports.lock().unwrap().clone();
            let sum = |f: fn(&acks::Report) -> usize| reports.iter().map(f).sum::<usize>();
            assert_eq!(sum(|r| r.delivered), 120, "{reports:?}");
            assert_eq!(sum(|r| r.dropped), 0, "{reports:?}");
            assert_eq!(sum(|r| r.needs_reinstall), 0, "{reports:?}");
            assert!(sum(|r| r.retried) >= 1, "the limit was hit: {reports:?}");
            assert!(!vis.asked.lock().unwrap().is_empty());

            let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
            for d in h.fake.deliveries(m).unwrap() {
                for msg in d.messages {
                    *seen.entry(msg.message_id).or_default() += 1;
                    assert_eq!(msg.external_ids, [format!("ext-{}", msg.message_id)]);
                }
            }
            assert_eq!(seen.len(), 120, "every ack delivered");
            let twice: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
            assert!(twice.is_empty(), "delivered more than once: {twice:?}");
            assert!(
                h.fake
                    .calls()
                    .iter()
                    .any(|c| c.method == "batch" && c.outcome == "QUERY_LIMIT_EXCEEDED"),
                "the fake refused at least one batch"
            );
            assert_eq!(
                queue_depth(&h.sqs, &url).await,
                ("0".into(), "0".into()),
                "nothing left"
            );
            h.assert_no_leaks().await;
        })
        .await
    }
}

mod hostile {
    use super::reinstall::NoVisibility;
    use super::*;
    use aws_lambda_events::sqs::SqsEvent;
    use b24_consumers::{acks, binder};
    use b24_events::EventKind;
    use b24_local::runner::{invoker_fn, InvokeOutcome, Runner, SqsSource};
    use serde_json::{json, Value};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Acks that must be dropped before anything is asked of Bitrix24 (or the vault).
    fn hostile_acks(m: &str) -> Vec<(&'static str, Option<String>)> {
        let with = |f: &dyn Fn(&mut Value)| {
            let mut a = ack(m, 7, 900);
            f(&mut a);
            Some(a.to_string())
        };
        vec![
            (
                "member_id with #",
                with(&|a| a["member_id"] = json!(format!("{m}#TOKENS"))),
            ),
            (
                "member_id with :",
                with(&|a| a["member_id"] = json!(format!("{m}:x"))),
            ),
            (
                "member_id with spaces",
                with(&|a| a["member_id"] = json!(format!(" {m} "))),
            ),
            (
                "member_id upper case",
                with(&|a| a["member_id"] = json!(m.to_ascii_uppercase())),
            ),
            (
                "an access_token field",
                with(&|a| a["access_token"] = json!("adapter-token-0001")),
            ),
            (
                "51 external ids",
                with(&|a| {
                    a["message_ids"] = json!((0..51).map(|i| format!("x{i}")).collect::<Vec<_>>())
                }),
            ),
            ("no external id", with(&|a| a["message_ids"] = json!([]))),
            (
                "a 300 KB body",
                with(&|a| a["message_ids"] = json!(["x".repeat(300 * 1024)])),
            ),
            (
                "a control character",
                with(&|a| a["chat_id"] = json!("chan\n1")),
            ),
            ("line 0", with(&|a| a["line"] = json!(0))),
            ("line as text", with(&|a| a["line"] = json!("7"))),
            (
                "another schema",
                with(&|a| a["schema"] = json!("b24.ack.v2")),
            ),
            (
                "a connector with /",
                with(&|a| a["connector"] = json!("../x")),
            ),
            (
                "a duplicate member_id key",
                Some(ack(m, 7, 900).to_string().replacen(
                    '{',
                    "{\"member_id\":\"tbsomeoneelse\",",
                    1,
                )),
            ),
            ("not JSON", Some("not json {".into())),
            ("a JSON array", Some("[1,2]".into())),
            ("empty", Some(String::new())),
            ("no body", None),
            ("300 KB of not JSON", Some("{".repeat(300 * 1024))),
        ]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_acks_reach_nothing_and_are_dropped_not_retried() {
        bounded(async {
            let h = Harness::start(false).await;
            let m = "tbhostileacks";
            h.install(m).await;
            let before = h.last_seq();
            let mut messages: Vec<(String, Option<String>)> = hostile_acks(m)
                .into_iter()
                .map(|(name, body)| (name.to_string(), body))
                .collect();
            let hostile = messages.len();
            // A valid ack of a portal without tokens (never verified, or gone).
            messages.push((
                "unknown portal".into(),
                Some(ack("tbnobody", 7, 901).to_string()),
            ));
            let (response, report) =
                acks::handle(&*h.b24, &NoVisibility, sqs_event(&messages)).await;
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
            assert_eq!(
                (
                    report.dropped,
                    report.retried,
                    report.delivered,
                    report.needs_reinstall
                ),
                (hostile + 1, 0, 0, 0),
                "{report:?}"
            );
            assert!(
                h.requests_since(before).is_empty(),
                "nothing reached the fake: {:?}",
                h.requests_since(before)
            );

            // Next to a valid ack: only the valid one is reported, once.
            messages.push(("valid".into(), Some(ack(m, 7, 902).to_string())));
            let (response, report) =
                acks::handle(&*h.b24, &NoVisibility, sqs_event(&messages)).await;
            assert!(response.batch_item_failures.is_empty());
            assert_eq!(
                (report.delivered, report.dropped),
                (1, hostile + 1),
                "{report:?}"
            );
            assert_eq!(h.requests_since(before), ["rest batch ok"]);
            let delivered: Vec<i64> = h
                .fake
                .deliveries(m)
                .unwrap()
                .into_iter()
                .flat_map(|d| d.messages)
                .map(|d| d.message_id)
                .collect();
            assert_eq!(delivered, [902]);
            h.assert_no_leaks().await;
        })
        .await
    }

    /// Sets up: `installed` (epoch 1, tokens), `gone` (tokens, then uninstalled), `never`
    /// (no record at all). Returns the tasks that must be skipped without a call.
    async fn task_world(h: &Harness) -> Vec<(String, Option<String>)> {
        let (installed, gone) = ("tbtaskinstalled", "tbtaskgone");
        h.install(installed).await;
        let creds = h.install(gone).await;
        let uninstall = b24_fixtures::Fixture::new(EventKind::AppUninstall)
            .member(gone)
            .token(&creds.application_token)
            .ts(now() + 1)
            .event();
        b24_state::testing::apply_trusted(&*h.store, &uninstall, now() + 1, 30)
            .await
            .unwrap();
        let mut created: Value =
            serde_json::from_str(&change(installed, "portal.installed", 1)).unwrap();
        created["type"] = json!("message.created");
        let mut victim: Value =
            serde_json::from_str(&change(installed, "portal.installed", 1)).unwrap();
        victim["member_id"] = json!(format!("{installed}#TOKENS"));
        let mut unknown_type: Value =
            serde_json::from_str(&change(installed, "portal.installed", 1)).unwrap();
        unknown_type["type"] = json!("portal.hijacked");
        vec![
            ("not JSON".into(), Some("hello".into())),
            ("empty object".into(), Some("{}".into())),
            ("no body".into(), None),
            (
                "300 KB".into(),
                Some(format!("\"{}\"", "x".repeat(300 * 1024))),
            ),
            ("an ack".into(), Some(ack(installed, 7, 1).to_string())),
            ("message.created".into(), Some(created.to_string())),
            ("unknown type".into(), Some(unknown_type.to_string())),
            ("member_id with #".into(), Some(victim.to_string())),
            (
                "another epoch".into(),
                Some(change(installed, "portal.installed", 2)),
            ),
            (
                "an older epoch".into(),
                Some(change(installed, "portal.updated", 0)),
            ),
            (
                "uninstalled portal".into(),
                Some(change(gone, "portal.installed", 1)),
            ),
            (
                "unknown portal".into(),
                Some(change("tbtasknever", "portal.installed", 1)),
            ),
            // An uninstall task of a portal installed (again): its vault must stay.
            (
                "uninstall of an installed portal".into(),
                Some(change(installed, "portal.uninstalled", 1)),
            ),
        ]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_and_stale_tasks_reach_nothing_and_are_skipped_not_retried() {
        bounded(async {
            let h = Harness::start(false).await;
            let tasks = task_world(&h).await;
            let n = tasks.len();
            let before = h.last_seq();
            let (response, report) =
                binder::handle(&*h.b24, &h.store, &h.handlers, sqs_event(&tasks), now()).await;
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
            assert_eq!(
                report,
                binder::Report {
                    skipped: n,
                    ..Default::default()
                }
            );
            assert!(
                h.requests_since(before).is_empty(),
                "nothing reached the fake: {:?}",
                h.requests_since(before)
            );
            assert!(h.fake.bindings("tbtaskinstalled").unwrap().is_empty());
            assert!(h.fake.bindings("tbtaskgone").unwrap().is_empty());
            assert!(
                h.entry("tbtaskinstalled").await.is_some(),
                "the vault stays"
            );
            assert!(
                !h.store
                    .portal_records(&member("tbtaskinstalled"))
                    .await
                    .unwrap()
                    .iter()
                    .any(|r| r["record_type"] == "bindings"),
                "no BINDINGS record written"
            );
            // The genuine uninstall task clears the uninstalled portal's vault, still without a call.
            let clear = sqs_event(&[(
                "clear".into(),
                Some(change("tbtaskgone", "portal.uninstalled", 1)),
            )]);
            let (_, report) = binder::handle(&*h.b24, &h.store, &h.handlers, clear, now()).await;
            assert_eq!(report.cleared, 1, "{report:?}");
            assert!(h.entry("tbtaskgone").await.is_none());
            assert!(h.requests_since(before).is_empty());
            h.assert_no_leaks().await;
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_messages_through_the_runner_are_deleted_not_looped() {
        bounded(async {
            let h = Harness::start(false).await;
            let tasks = task_world(&h).await;
            let m = "tbtaskinstalled";
            let acks_url = queue(&h.sqs, "hostile-acks", 2).await;
            let tasks_url = queue(&h.sqs, "hostile-tasks", 2).await;
            h.track_queue(&acks_url);
            h.track_queue(&tasks_url);
            // What SQS accepts (at most 256 KB, some body).
            let fits = |b: &Option<String>| {
                b.as_ref()
                    .is_some_and(|b| !b.is_empty() && b.len() < 200 * 1024)
            };
            let mut ack_bodies: Vec<String> = hostile_acks(m)
                .into_iter()
                .filter_map(|(_, b)| b.filter(|b| fits(&Some(b.clone()))))
                .collect();
            ack_bodies.push(ack("tbnobody", 7, 901).to_string());
            let task_bodies: Vec<String> = tasks
                .into_iter()
                .filter_map(|(_, b)| b.filter(|b| fits(&Some(b.clone()))))
                .collect();
            send_all(&h.sqs, &acks_url, &ack_bodies).await;
            send_all(&h.sqs, &tasks_url, &task_bodies).await;

            let acks_reports = Arc::new(Mutex::new(Vec::<acks::Report>::new()));
            let binder_reports = Arc::new(Mutex::new(Vec::<binder::Report>::new()));
            let (b24, store, handlers) = (h.b24.clone(), h.store.clone(), h.handlers.clone());
            let (ar, br) = (acks_reports.clone(), binder_reports.clone());
            let vis = Arc::new(b24_consumers::redrive::SqsVisibility::new(
                h.sqs.clone(),
                &acks_url,
            ));
            let invoker = invoker_fn(move |f, event| {
                let (b24, store, handlers) = (b24.clone(), store.clone(), handlers.clone());
                let (ar, br, vis) = (ar.clone(), br.clone(), vis.clone());
                async move {
                    let event: SqsEvent = serde_json::from_value(event).expect("SqsEvent");
                    let response = if f == "b24-fn-acks" {
                        let (response, report) = acks::handle(&*b24, &*vis, event).await;
                        ar.lock().unwrap().push(report);
                        response
                    } else {
                        let (response, report) =
                            binder::handle(&*b24, &store, &handlers, event, now()).await;
                        br.lock().unwrap().push(report);
                        response
                    };
                    Ok(InvokeOutcome::Ok(serde_json::to_vec(&response).unwrap()))
                }
            });
            let before = h.last_seq();
            let run = Runner::new(runner_clients(), Arc::new(invoker))
                .source(
                    SqsSource::new(&acks_url, "b24-fn-acks")
                        .wait_seconds(1)
                        .report_batch_item_failures(true),
                )
                .source(
                    SqsSource::new(&tasks_url, "b24-fn-binder")
                        .wait_seconds(1)
                        .report_batch_item_failures(true),
                )
                .run_until_idle(Duration::from_secs(4), Duration::from_secs(60))
                .await
                .unwrap();
            assert_eq!(run.stop, b24_local::runner::StopReason::Idle, "{run:?}");
            let failures: u64 = run
                .sources
                .iter()
                .map(|s| s.item_failures + s.function_errors)
                .sum();
            assert_eq!(failures, 0, "{run:?}");
            let received: u64 = run.sources.iter().map(|s| s.records_received).sum();
            assert_eq!(
                received as usize,
                ack_bodies.len() + task_bodies.len(),
                "each received once: {run:?}"
            );
            let dropped: usize = acks_reports.lock().unwrap().iter().map(|r| r.dropped).sum();
            assert_eq!(dropped, ack_bodies.len());
            let skipped: usize = binder_reports
                .lock()
                .unwrap()
                .iter()
                .map(|r| r.skipped)
                .sum();
            assert_eq!(skipped, task_bodies.len());
            assert!(
                h.requests_since(before).is_empty(),
                "{:?}",
                h.requests_since(before)
            );
            for url in [&acks_url, &tasks_url] {
                assert_eq!(queue_depth(&h.sqs, url).await, ("0".into(), "0".into()));
            }
            h.assert_no_leaks().await;
        })
        .await
    }

    /// Delivers `acks` of portal `m` and returns the external ids and chat ids the fake
    /// recorded, per Bitrix24 message id.
    async fn delivered_ids(
        h: &Harness,
        m: &str,
        acks: Vec<Value>,
    ) -> std::collections::BTreeMap<i64, (Vec<String>, String)> {
        let event = sqs_event(
            &acks
                .iter()
                .enumerate()
                .map(|(i, a)| (format!("id{i}"), Some(a.to_string())))
                .collect::<Vec<_>>(),
        );
        let (response, report) = acks::handle(&*h.b24, &NoVisibility, event).await;
        assert!(response.batch_item_failures.is_empty(), "{report:?}");
        assert_eq!(report.delivered, acks.len(), "{report:?}");
        h.fake
            .deliveries(m)
            .unwrap()
            .into_iter()
            .flat_map(|d| d.messages)
            .map(|d| (d.message_id, (d.external_ids, d.external_chat_id)))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ack_ids_with_form_syntax_reach_the_fake_verbatim() {
        bounded(async {
            let h = Harness::start(false).await;
            let m = "tbinject";
            h.install(m).await;
            // Ids that would add or change parameters if the batch command were not encoded.
            let ids = [
                "x&CONNECTOR=evil",
                "y&MESSAGES[1][im][chat_id]=1",
                "a]b[c",
                "p%26q+r s",
                "?cmd[z]=app.info",
                "\\u0000-not-a-control",
                "日本語-ид",
            ];
            let mut acks = Vec::new();
            for (i, id) in ids.iter().enumerate() {
                let mut a = ack(m, 5, 300 + i as i64);
                a["message_ids"] = json!([id, format!("plain-{i}")]);
                a["chat_id"] = json!(format!("chat&LINE=999#{id}"));
                acks.push(a);
            }
            let got = delivered_ids(&h, m, acks).await;
            assert_eq!(got.len(), ids.len(), "{got:?}");
            for (i, id) in ids.iter().enumerate() {
                let (external, chat) = &got[&(300 + i as i64)];
                assert_eq!(external, &[id.to_string(), format!("plain-{i}")]);
                assert_eq!(chat, &format!("chat&LINE=999#{id}"));
            }
            let deliveries = h.fake.deliveries(m).unwrap();
            assert!(deliveries
                .iter()
                .all(|d| d.connector == "tbconn" && d.line == 5));
            h.assert_no_leaks().await;
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ack_ids_that_look_like_batch_references_reach_the_fake_verbatim() {
        bounded(async {
            let h = Harness::start(false).await;
            let m = "tbinjectref";
            h.install(m).await;
            // Two lines: two commands, d0 (line 1) runs before d1 (line 2).
            let first = ack(m, 1, 401);
            let mut second = ack(m, 2, 402);
            second["message_ids"] = json!(["ref-$result[d0][SUCCESS]"]);
            second["chat_id"] = json!("chat-$result[d0][SUCCESS]");
            let got = delivered_ids(&h, m, vec![first, second]).await;
            assert_eq!(
                got[&402],
                (
                    vec!["ref-$result[d0][SUCCESS]".to_string()],
                    "chat-$result[d0][SUCCESS]".to_string()
                ),
                "what the ack said is what Bitrix24 recorded"
            );
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_ack_does_not_echo_its_values_in_the_log() {
        bounded(async {
            let h = Harness::start(false).await;
            let m = "tbhostileecho";
            h.install(m).await;
            // An adapter that put a secret where a number belongs (a distinct marker: the
            // fake's marker must stay out of the global log capture).
            let value = "ADAPTERSECRET-1f2e3d4c5b6a79880011223344556677";
            let mut a = ack(m, 7, 1);
            a["line"] = serde_json::json!(value);
            let (_, report) = acks::handle(
                &*h.b24,
                &NoVisibility,
                sqs_event(&[("echo".into(), Some(a.to_string()))]),
            )
            .await;
            assert_eq!(report.dropped, 1);
            let logs = log_text();
            let line = logs
                .lines()
                .find(|l| l.contains("ack dropped") && l.contains("\"echo\""));
            assert!(line.is_some(), "the drop is logged");
            assert!(
                !logs.contains("ADAPTERSECRET"),
                "the ack's value is in the log: {}",
                line.unwrap()
            );
        })
        .await
    }
}

mod leaks {
    use super::*;
    use b24_consumers::{acks, binder};
    use b24_rest::{Command, Secret};
    use serde_json::Value;

    #[test]
    fn the_encoded_forms_are_the_ones_a_leak_would_take() {
        use base64::Engine as _;
        let secret = format!("{MARK}0123456789abcdef");
        for pad in 0..3 {
            let mut text = "x".repeat(pad);
            text.push_str(&secret);
            text.push_str("yz");
            for engine in [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::URL_SAFE,
            ] {
                let encoded = engine.encode(text.as_bytes());
                assert!(
                    find_leak(encoded.as_bytes(), &[MARK.to_string()]).is_some(),
                    "base64 at offset {pad}: {encoded}"
                );
            }
        }
        let json = serde_json::to_string(&serde_json::json!({ "t": secret })).unwrap();
        assert!(find_leak(json.as_bytes(), &[MARK.to_string()]).is_some());
        let pct: String = MARK.bytes().map(|b| format!("%{b:02x}")).collect();
        assert!(find_leak(pct.as_bytes(), &[MARK.to_string()]).is_some());
        assert!(find_leak(b"nothing here", &[MARK.to_string()]).is_none());
    }

    /// The whole life of a portal in one test: install, an expired token mid-batch, 20
    /// concurrent refreshers, binding, acks, invalid_grant, reinstall; then every captured log
    /// line (every target at TRACE, the SDK's request and response lines included), every
    /// record, every sealed blob and every queue is searched for the tokens.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_token_in_logs_records_queues_or_sealed_blobs() {
        bounded(async {
            let h = Harness::start(false).await;
            let m = "tbnoleak";
            let info = [Command::new("info", "app.info", Value::Null)];
            h.install(m).await;
            h.fake.expire_access_tokens(m).unwrap();
            h.b24.batch(&member(m), &info).await.unwrap();
            let tasks: Vec<_> = (0..20)
                .map(|_| {
                    let b24 = h.b24.clone();
                    tokio::spawn(async move {
                        b24.batch(&member(m), &[Command::new("e", "event.get", Value::Null)])
                            .await
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            let (_, report) = binder::handle(
                &*h.b24,
                &h.store,
                &h.handlers,
                sqs_event(&[("t".into(), Some(change(m, "portal.installed", 1)))]),
                now(),
            )
            .await;
            assert_eq!(report.bound, 1);
            let url = queue(&h.sqs, "noleak-acks", 5).await;
            h.track_queue(&url);
            let acks_event = sqs_event(
                &(0..5)
                    .map(|i| (format!("a{i}"), Some(ack(m, 3, 70 + i).to_string())))
                    .collect::<Vec<_>>(),
            );
            let vis = b24_consumers::redrive::SqsVisibility::new(h.sqs.clone(), &url);
            let (_, report) = acks::handle(&*h.b24, &vis, acks_event.clone()).await;
            assert_eq!(report.delivered, 5);
            h.fake.revoke_refresh_tokens(m).unwrap();
            h.fake.expire_access_tokens(m).unwrap();
            assert!(h.b24.batch(&member(m), &info).await.is_err());
            let (_, report) = acks::handle(&*h.b24, &vis, acks_event).await;
            assert_eq!(report.needs_reinstall, 1);
            let creds = h.reinstall_at_fake(m).await;
            h.b24
                .verify_install(&member(m), &Secret::new(creds.refresh_token.clone()))
                .await
                .unwrap();
            h.b24.batch(&member(m), &info).await.unwrap();

            // The sealed blob is there, and holds no token in any form.
            let (table, sealed) = h.table_text().await;
            assert!(
                table.contains("TOKENS") && table.contains("BINDINGS"),
                "{table}"
            );
            assert_eq!(sealed.len(), 1);
            assert!(sealed[0].len() > 64);
            // And the logs did see the flows (the capture works).
            let logs = log_text();
            assert!(
                logs.contains("events bound"),
                "the binder's line is captured"
            );
            assert!(
                logs.contains("delivery reported"),
                "the acks' line is captured"
            );
            assert!(logs.contains("\"level\":\"TRACE\""), "TRACE is captured");
            assert!(
                logs.contains("TrentService.Encrypt") && logs.contains("TrentService.Decrypt"),
                "the SDK's TRACE lines of the vault's KMS calls are captured"
            );
            h.assert_no_leaks().await;
        })
        .await
    }
}

//! Measures DynamoDB requests and write units per event against DynamoDB Local
//! (`cargo run -p b24-benches --example ddb_costs`, part of `make bench`); the numbers go into
//! BENCHMARKS.md.

use b24_events::{Event, EventKind, Secret};
use b24_fixtures::{item, Fixture, APP_TOKEN as TOKEN};
use b24_state::{
    testing, Applied, AuthCheck, Authorization, Context, DynamoStore, MemberId, PortalRegistry,
    Store, TokenHash,
};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn ctx(e: &Event, epoch: i64) -> Context {
    Context {
        member: MemberId::new(&e.auth.member_id).expect("valid member id"),
        authorization: Authorization::Installed {
            token_hash: TokenHash::of(e.auth.application_token.as_ref()).expect("token"),
            epoch,
        },
        received_at: 5,
        event_ttl_days: 30,
        verified_client_endpoint: None,
    }
}

fn msg(kind: EventKind, member: &str, id: i64, ts: i64, text: Option<&str>, ids: &[&str]) -> Event {
    Fixture::new(kind)
        .member(member)
        .ts(ts)
        .event_with_items(vec![item(id, text, ids)])
}

async fn measure(store: &DynamoStore, e: &Event) -> (String, u64, f64, Duration) {
    let (r0, w0, t0) = (store.request_count(), store.write_units(), Instant::now());
    let outcome = match store.apply(e, &ctx(e, 1)).await.expect("apply") {
        Applied::Outcome(o) => o.as_str().to_string(),
        Applied::Unauthorized => "unauthorized".to_string(),
    };
    (
        outcome,
        store.request_count() - r0,
        store.write_units() - w0,
        t0.elapsed(),
    )
}

/// DynamoDB's item size: attribute names + values (numbers ≈ 1 + digits/2, lists/maps 3 + 1 per element).
fn size(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 1,
        Value::Number(n) => 1 + n.to_string().trim_start_matches('-').len().div_ceil(2),
        Value::String(s) => s.len(),
        Value::Array(a) => 3 + a.iter().map(|x| 1 + size(x)).sum::<usize>(),
        Value::Object(m) => 3 + m.iter().map(|(k, x)| 1 + k.len() + size(x)).sum::<usize>(),
    }
}

fn item_size(v: &Value) -> usize {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, x)| k.len() + size(x))
        .sum()
}

/// Write units of the last transaction as real DynamoDB bills them: 2 per started KB of each
/// item written (the larger of the old and new image).
fn billed_units(
    e: &Event,
    stale: bool,
    seen: &mut std::collections::HashSet<b24_state::item::Key>,
    before: &[Value],
    after: &[Value],
) -> u64 {
    let p = b24_state::transition::plan(e, &ctx(e, 1)).expect("plan");
    let find = |recs: &[Value], pk: &str, sk: &str| {
        recs.iter()
            .find(|r| r["pk"] == pk && r["sk"] == sk)
            .map(item_size)
            .unwrap_or(0)
    };
    let mut units = 0;
    let mut keys = vec![p.record_key.clone()];
    if !stale {
        // A "seen" write is sent once per process (DynamoStore remembers it).
        keys.extend(
            p.writes
                .iter()
                .filter(|w| {
                    w.role == b24_state::transition::Role::Primary
                        || seen.insert(w.update.key.clone())
                })
                .map(|w| w.update.key.clone()),
        );
    }
    for k in keys {
        let s = find(before, &k.pk, &k.sk).max(find(after, &k.pk, &k.sk));
        if s > 0 {
            units += 2 * s.div_ceil(1024) as u64;
        }
    }
    // The portal check of the transaction: a ConditionCheck in TransactWriteItems is billed
    // like a transactional write of the checked item (2 WCU per started KB).
    if p.check.is_some() {
        let portal = find(after, &b24_state::schema::portal_pk(&p.member), "PORTAL");
        units += 2 * portal.div_ceil(1024).max(1) as u64;
    }
    units
}

#[tokio::main]
async fn main() {
    let store = Arc::new(testing::fresh_store().await);
    let registry = PortalRegistry::new(store.clone(), Duration::from_secs(60), 64);
    let member = "bench";
    let install = Fixture::new(EventKind::AppInstall)
        .member(member)
        .ts(1)
        .version("1")
        .event();
    testing::apply_trusted(&*store, &install, 1, 30)
        .await
        .unwrap();
    let token = TokenHash::of(Some(&Secret::new(TOKEN))).unwrap();
    let m = MemberId::new(member).unwrap();
    assert!(matches!(
        registry.check(&m, Some(&token)).await.unwrap(),
        AuthCheck::Verified(_)
    ));

    let mut seen = std::collections::HashSet::new();
    let mut rows: Vec<(String, Event)> = Vec::new();
    for e in b24_fixtures::all_ten(member) {
        if !matches!(e.kind(), EventKind::AppUninstall | EventKind::AppInstall) {
            rows.push((e.kind().code().to_string(), e));
        }
    }
    rows.push((
        "ONIMCONNECTORMESSAGEADD, 10 KB text".into(),
        msg(
            EventKind::MessageAdd,
            member,
            9001,
            2000,
            Some(&"x".repeat(10_000)),
            &[],
        ),
    ));
    rows.push((
        "ONIMCONNECTORMESSAGEADD, 3 messages".into(),
        Fixture::new(EventKind::MessageAdd)
            .member(member)
            .ts(2001)
            .event_with_items(vec![
                item(9101, Some("a"), &[]),
                item(9102, Some("b"), &[]),
                item(9103, Some("c"), &[]),
            ]),
    ));
    rows.push((
        "ONIMCONNECTORMESSAGEADD again (duplicate)".into(),
        b24_fixtures::all_ten(member).remove(0),
    ));
    rows.push((
        "ONIMCONNECTORMESSAGEUPDATE, older edit (revision only)".into(),
        msg(
            EventKind::MessageUpdate,
            member,
            86497,
            1005,
            Some("older"),
            &["e0"],
        ),
    ));
    rows.push((
        "ONIMCONNECTORMESSAGEADD after delete (stale)".into(),
        msg(EventKind::MessageAdd, member, 86498, 999, Some("late"), &[]),
    ));
    rows.push((
        "ONAPPUNINSTALL".into(),
        Fixture::new(EventKind::AppUninstall)
            .member(member)
            .ts(3000)
            .event(),
    ));

    println!("| event | outcome | auth requests (cache warm) | state requests | WCU, DynamoDB Local | WCU, billed by DynamoDB (computed) |");
    println!("|---|---|---|---|---|---|");
    for (label, e) in rows {
        let r0 = store.request_count();
        registry
            .check(
                &m,
                TokenHash::of(e.auth.application_token.as_ref()).as_ref(),
            )
            .await
            .unwrap();
        let auth_requests = store.request_count() - r0;
        let before = store.portal_records(&m).await.unwrap();
        let (outcome, requests, units, _t) = measure(&store, &e).await;
        let after = store.portal_records(&m).await.unwrap();
        let billed = if outcome == "duplicate" {
            0
        } else {
            billed_units(&e, outcome == "stale", &mut seen, &before, &after)
        };
        println!("| {label} | {outcome} | {auth_requests} | {requests} | {units} | {billed} |");
        if matches!(e.kind(), EventKind::AppInstall | EventKind::AppUpdate) {
            registry.invalidate(&m);
            registry.check(&m, Some(&token)).await.unwrap();
        }
    }

    // Latency of the common path on DynamoDB Local (one TransactWriteItems), for orientation only.
    let store = Arc::new(testing::fresh_store().await);
    testing::apply_trusted(&*store, &install, 1, 30)
        .await
        .unwrap();
    let registry = PortalRegistry::new(store.clone(), Duration::from_secs(60), 64);
    let n = 300;
    let r0 = store.request_count();
    let t0 = Instant::now();
    for i in 0..n {
        registry.check(&m, Some(&token)).await.unwrap();
        let e = msg(
            EventKind::MessageAdd,
            member,
            20_000 + i,
            3000 + i,
            Some("hello"),
            &[],
        );
        store.apply(&e, &ctx(&e, 1)).await.unwrap();
    }
    println!(
        "\ncommon path (cached auth + MessageAdd), {n} sequential events on DynamoDB Local: {:.2} ms/event, {:.3} requests/event",
        t0.elapsed().as_secs_f64() * 1000.0 / n as f64,
        (store.request_count() - r0) as f64 / n as f64
    );
}

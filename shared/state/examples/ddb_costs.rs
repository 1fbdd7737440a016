//! Measures DynamoDB requests and write units per event against DynamoDB Local
//! (`cargo run -p b24-state --example ddb_costs`); the numbers go into BENCHMARKS.md.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use b24_events::{Event, EventKind, Secret};
use b24_state::{testing, AuthCheck, DynamoStore, PortalRegistry, Store};
use common::*;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn measure(store: &DynamoStore, e: &Event) -> (String, u64, f64, Duration) {
    let (r0, w0, t0) = (store.request_count(), store.write_units(), Instant::now());
    let outcome = store.apply(e, 5).await.expect("apply");
    (
        outcome.as_str().to_string(),
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
    let p = b24_state::transition::plan(e, 5, 30);
    let find = |recs: &[Value], pk: &str, sk: &str| {
        recs.iter()
            .find(|r| r["pk"] == pk && r["sk"] == sk)
            .map(item_size)
            .unwrap_or(0)
    };
    let mut units = 0;
    for c in &p.chunks {
        let mut keys = vec![c.record_key.clone()];
        if !stale {
            // A "seen" write is sent once per process (DynamoStore remembers it).
            keys.extend(
                c.writes
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
    }
    units
}

#[tokio::main]
async fn main() {
    let store = Arc::new(testing::fresh_store().await);
    let registry = PortalRegistry::new(store.clone(), Duration::from_secs(60));
    let member = "bench";
    store
        .apply(&app(EventKind::AppInstall, member, TOKEN, 1, "1"), 1)
        .await
        .unwrap();
    let token = Secret::new(TOKEN);
    assert!(matches!(
        registry.check(member, Some(&token)).await.unwrap(),
        AuthCheck::Verified(_)
    ));

    let mut seen = std::collections::HashSet::new();
    let mut rows: Vec<(String, Event)> = Vec::new();
    for e in all_ten(member) {
        if e.kind != EventKind::AppUninstall {
            rows.push((e.kind.code().to_string(), e));
        }
    }
    rows.push((
        "ONIMCONNECTORMESSAGEADD, 10 KB text".into(),
        msg_add(member, 9001, 2000, &"x".repeat(10_000)),
    ));
    rows.push((
        "ONIMCONNECTORMESSAGEADD, 3 messages".into(),
        messages(
            EventKind::MessageAdd,
            member,
            2001,
            vec![
                item(9101, Some("a"), &[]),
                item(9102, Some("b"), &[]),
                item(9103, Some("c"), &[]),
            ],
        ),
    ));
    rows.push((
        "ONIMCONNECTORMESSAGEADD again (duplicate)".into(),
        msg_add(member, 86497, 1000, "[b]Светлана:[/b] [br]Добрый день!"),
    ));
    rows.push((
        "ONIMCONNECTORMESSAGEUPDATE, older edit (revision only)".into(),
        msg_update(member, 86497, 1005, "older", &["e0"]),
    ));
    rows.push((
        "ONIMCONNECTORMESSAGEADD after delete (stale)".into(),
        msg_add(member, 86498, 999, "late"),
    ));
    rows.push((
        "ONAPPUNINSTALL".into(),
        uninstall(member, TOKEN, 3000, false),
    ));

    println!("| event | outcome | auth requests (cache warm) | state requests | WCU, DynamoDB Local | WCU, billed by DynamoDB (computed) |");
    println!("|---|---|---|---|---|---|");
    for (label, e) in rows {
        let r0 = store.request_count();
        registry
            .check(member, e.auth.application_token.as_ref())
            .await
            .unwrap();
        let auth_requests = store.request_count() - r0;
        let before = store.portal_records(member).await.unwrap();
        let (outcome, requests, units, _t) = measure(&store, &e).await;
        let after = store.portal_records(member).await.unwrap();
        let billed = if outcome == "duplicate" {
            0
        } else {
            billed_units(&e, outcome == "stale", &mut seen, &before, &after)
        };
        println!("| {label} | {outcome} | {auth_requests} | {requests} | {units} | {billed} |");
        if matches!(e.kind, EventKind::AppInstall | EventKind::AppUpdate) {
            registry.invalidate(member);
            registry.check(member, Some(&token)).await.unwrap();
        }
    }

    // Latency of the common path on DynamoDB Local (one TransactWriteItems), for orientation only.
    let store = Arc::new(testing::fresh_store().await);
    store
        .apply(&app(EventKind::AppInstall, member, TOKEN, 1, "1"), 1)
        .await
        .unwrap();
    let registry = PortalRegistry::new(store.clone(), Duration::from_secs(60));
    let n = 300;
    let r0 = store.request_count();
    let t0 = Instant::now();
    for i in 0..n {
        registry.check(member, Some(&token)).await.unwrap();
        store
            .apply(&msg_add(member, 20_000 + i, 3000 + i, "hello"), 6)
            .await
            .unwrap();
    }
    println!(
        "\ncommon path (cached auth + MessageAdd), {n} sequential events on DynamoDB Local: {:.2} ms/event, {:.3} requests/event",
        t0.elapsed().as_secs_f64() * 1000.0 / n as f64,
        (store.request_count() - r0) as f64 / n as f64
    );
}

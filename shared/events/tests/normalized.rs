//! The normalized JSON reads back into the same event (what a parked event relies on), tokens
//! excepted: they are never part of it.

use b24_events::{decode, Event};
use std::path::PathBuf;

fn without_tokens(mut e: Event) -> Event {
    e.auth.access_token = None;
    e.auth.refresh_token = None;
    e.auth.application_token = None;
    e
}

#[test]
fn every_fixture_reads_back_from_its_normalized_json() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("form") {
            continue;
        }
        let event = decode(&std::fs::read(&path).unwrap(), None).unwrap();
        let back = Event::from_normalized(&event.to_json())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(back, without_tokens(event), "{}", path.display());
        assert_eq!(
            back.to_json(),
            Event::from_normalized(&back.to_json()).unwrap().to_json()
        );
        n += 1;
    }
    assert!(n >= 18, "{n} fixtures");
}

#[test]
fn malformed_normalized_events_are_errors_not_panics() {
    for v in [
        serde_json::json!(null),
        serde_json::json!({"event": "ONCRMDEALADD", "auth": {"member_id": "m"}, "data": {}}),
        serde_json::json!({"event": "ONIMCONNECTORMESSAGEADD", "auth": {"member_id": "m"}, "data": 1}),
        serde_json::json!({"event": "ONAPPINSTALL", "auth": {"member_id": "a#b"}, "data": {}}),
        serde_json::json!({"event": "ONIMCONNECTORLINEDELETE", "auth": {}, "data": {"line": 1}}),
    ] {
        assert!(Event::from_normalized(&v).is_err(), "{v}");
    }
}

//! The published `b24.ack.v1` JSON Schema and `Ack::parse` agree: what one accepts the other
//! accepts, on valid and hostile documents.

use b24_state::acks::Ack;
use serde_json::{json, Value};

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/b24.ack.v1.json"
    ))
    .expect("the JSON Schema file");
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).expect("a valid schema")
}

fn valid() -> Value {
    json!({"schema": "b24.ack.v1", "member_id": "a223c6b3710f85df22e9377d6c4f7553",
           "connector": "OL_0", "line": 107, "im": {"chat_id": 1807, "message_id": 501},
           "message_ids": ["ext-501"], "chat_id": "channel-123", "delivered_at": 1773759200})
}

#[test]
fn schema_and_parser_agree() {
    let v = schema();
    let mut cases = vec![(valid(), true)];
    let variants: Vec<(&str, Value)> = vec![
        ("member_id", json!("victim#MSG#3")),
        ("member_id", json!("")),
        ("connector", json!("a/b")),
        ("line", json!(0)),
        ("line", json!("107")),
        ("im", json!({"chat_id": 1807})),
        ("im", json!({"chat_id": 1807, "message_id": 0})),
        ("message_ids", json!([])),
        ("message_ids", json!(["a\u{0000}b"])),
        ("message_ids", json!(vec!["x"; 51])),
        ("message_ids", json!(["x".repeat(256)])),
        ("chat_id", json!("")),
        ("chat_id", json!("line\nbreak")),
        ("delivered_at", json!(-5)),
        ("schema", json!("b24.ack.v2")),
        ("access_token", json!("secret")),
    ];
    for (field, value) in variants {
        let mut doc = valid();
        doc[field] = value;
        cases.push((doc, false));
    }
    for (doc, ok) in cases {
        assert_eq!(v.is_valid(&doc), ok, "schema on {doc}");
        assert_eq!(Ack::parse(&doc.to_string()).is_ok(), ok, "parser on {doc}");
    }
}

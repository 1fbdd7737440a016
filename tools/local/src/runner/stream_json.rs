//! DynamoDB stream records as the JSON Lambda sends (`DynamoDBEvent` records).
//!
//! Hand-built rather than serialized from `aws_lambda_events::dynamodb::EventRecord`: that type
//! always writes `NewImage`/`OldImage` (as `{}` where AWS omits them), `userIdentity`,
//! `recordFormat` and `tableName` as `null`, and `ApproximateCreationDateTime` as a float,
//! none of which AWS's events contain.

use aws_sdk_dynamodbstreams::types::{AttributeValue, Record};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// A stream record ready to deliver: its sequence number, creation time and event JSON.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StreamRec {
    pub(crate) seq: String,
    /// `ApproximateCreationDateTime` in epoch milliseconds (DynamoDB Local: whole minutes).
    pub(crate) created_ms: i64,
    pub(crate) json: Value,
}

/// A DynamoDB attribute value in DynamoDB's JSON (`{"S":"x"}`, `{"N":"1"}`, `{"BOOL":true}`,
/// `{"NULL":true}`, `{"M":{…}}`, `{"L":[…]}`, `{"SS":[…]}`, `{"NS":[…]}`, `{"B":"<base64>"}`,
/// `{"BS":[…]}`), map keys sorted.
pub fn attribute_value_json(v: &AttributeValue) -> Value {
    let b64 = |b: &aws_sdk_dynamodbstreams::primitives::Blob| {
        Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
    };
    match v {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => json!({ "B": b64(b) }),
        AttributeValue::Ss(l) => json!({ "SS": l }),
        AttributeValue::Ns(l) => json!({ "NS": l }),
        AttributeValue::Bs(l) => json!({ "BS": l.iter().map(b64).collect::<Vec<_>>() }),
        AttributeValue::M(m) => json!({ "M": item_json(m) }),
        AttributeValue::L(l) => {
            json!({ "L": l.iter().map(attribute_value_json).collect::<Vec<_>>() })
        }
        AttributeValue::Null(b) => json!({ "NULL": b }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        _ => json!({}),
    }
}

/// An item (attribute name → value) as a JSON object with sorted keys.
pub(crate) fn item_json(item: &HashMap<String, AttributeValue>) -> Value {
    let mut names: Vec<&String> = item.keys().collect();
    names.sort();
    let mut m = Map::new();
    for n in names {
        if let Some(v) = item.get(n) {
            m.insert(n.clone(), attribute_value_json(v));
        }
    }
    Value::Object(m)
}

/// One record as Lambda delivers it; `None` for a record without a sequence number.
pub(crate) fn stream_rec(r: &Record, stream_arn: &str, default_region: &str) -> Option<StreamRec> {
    let sr = r.dynamodb.as_ref()?;
    let seq = sr.sequence_number.clone()?;
    let created_secs = sr
        .approximate_creation_date_time
        .map_or_else(|| crate::util::now_millis() / 1000, |t| t.secs());
    let mut d = Map::new();
    d.insert("ApproximateCreationDateTime".into(), json!(created_secs));
    d.insert(
        "Keys".into(),
        sr.keys.as_ref().map_or_else(|| json!({}), item_json),
    );
    if let Some(img) = &sr.new_image {
        d.insert("NewImage".into(), item_json(img));
    }
    if let Some(img) = &sr.old_image {
        d.insert("OldImage".into(), item_json(img));
    }
    d.insert("SequenceNumber".into(), json!(seq));
    d.insert("SizeBytes".into(), json!(sr.size_bytes.unwrap_or(0)));
    if let Some(v) = &sr.stream_view_type {
        d.insert("StreamViewType".into(), json!(v.as_str()));
    }
    let mut e = Map::new();
    e.insert(
        "eventID".into(),
        json!(r.event_id.clone().unwrap_or_default()),
    );
    e.insert(
        "eventName".into(),
        json!(r
            .event_name
            .as_ref()
            .map(|n| n.as_str())
            .unwrap_or_default()),
    );
    e.insert(
        "eventVersion".into(),
        json!(r.event_version.clone().unwrap_or_else(|| "1.1".into())),
    );
    e.insert(
        "eventSource".into(),
        json!(r
            .event_source
            .clone()
            .unwrap_or_else(|| "aws:dynamodb".into())),
    );
    e.insert(
        "awsRegion".into(),
        json!(r
            .aws_region
            .clone()
            .unwrap_or_else(|| default_region.to_string())),
    );
    if let Some(id) = &r.user_identity {
        e.insert(
            "userIdentity".into(),
            json!({
                "type": id.r#type.clone().unwrap_or_default(),
                "principalId": id.principal_id.clone().unwrap_or_default(),
            }),
        );
    }
    e.insert("dynamodb".into(), Value::Object(d));
    e.insert("eventSourceARN".into(), json!(stream_arn));
    Some(StreamRec {
        seq,
        created_ms: created_secs.saturating_mul(1000),
        json: Value::Object(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodbstreams::primitives::{Blob, DateTime};
    use aws_sdk_dynamodbstreams::types::{Identity, OperationType, StreamRecord, StreamViewType};

    #[test]
    fn every_attribute_type() {
        let m = HashMap::from([
            ("s".to_string(), AttributeValue::S("x".into())),
            ("n".to_string(), AttributeValue::N("1.5".into())),
            (
                "b".to_string(),
                AttributeValue::B(Blob::new(vec![0, 1, 42, 65])),
            ),
            ("t".to_string(), AttributeValue::Bool(true)),
            ("z".to_string(), AttributeValue::Null(true)),
            (
                "ss".to_string(),
                AttributeValue::Ss(vec!["a".into(), "b".into()]),
            ),
            ("ns".to_string(), AttributeValue::Ns(vec!["1".into()])),
            (
                "bs".to_string(),
                AttributeValue::Bs(vec![Blob::new(vec![65, 42, 1, 0])]),
            ),
            (
                "l".to_string(),
                AttributeValue::L(vec![AttributeValue::N("2".into())]),
            ),
            (
                "m".to_string(),
                AttributeValue::M(HashMap::from([(
                    "k".to_string(),
                    AttributeValue::S("v".into()),
                )])),
            ),
        ]);
        assert_eq!(
            item_json(&m).to_string(),
            json!({
                "b": {"B": "AAEqQQ=="}, "bs": {"BS": ["QSoBAA=="]}, "l": {"L": [{"N": "2"}]},
                "m": {"M": {"k": {"S": "v"}}}, "n": {"N": "1.5"}, "ns": {"NS": ["1"]},
                "s": {"S": "x"}, "ss": {"SS": ["a", "b"]}, "t": {"BOOL": true}, "z": {"NULL": true}
            })
            .to_string()
        );
    }

    #[test]
    fn ttl_delete_keeps_user_identity_and_omits_new_image() {
        let keys = HashMap::from([("Id".to_string(), AttributeValue::N("101".into()))]);
        let r = Record::builder()
            .event_id("1")
            .event_name(OperationType::Remove)
            .event_version("1.1")
            .event_source("aws:dynamodb")
            .aws_region("us-west-2")
            .user_identity(
                Identity::builder()
                    .r#type("Service")
                    .principal_id("dynamodb.amazonaws.com")
                    .build(),
            )
            .dynamodb(
                StreamRecord::builder()
                    .approximate_creation_date_time(DateTime::from_secs(1_480_642_020))
                    .set_keys(Some(keys.clone()))
                    .set_old_image(Some(keys))
                    .sequence_number("222")
                    .size_bytes(59)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build(),
            )
            .build();
        let rec = stream_rec(&r, "arn:stream", "x").expect("record");
        assert_eq!(rec.seq, "222");
        assert_eq!(
            rec.json.to_string(),
            json!({
                "eventID": "1", "eventName": "REMOVE", "eventVersion": "1.1",
                "eventSource": "aws:dynamodb", "awsRegion": "us-west-2",
                "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"},
                "dynamodb": {
                    "ApproximateCreationDateTime": 1480642020,
                    "Keys": {"Id": {"N": "101"}}, "OldImage": {"Id": {"N": "101"}},
                    "SequenceNumber": "222", "SizeBytes": 59, "StreamViewType": "NEW_AND_OLD_IMAGES"
                },
                "eventSourceARN": "arn:stream"
            })
            .to_string()
        );
    }
}

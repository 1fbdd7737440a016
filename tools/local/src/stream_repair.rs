//! Repairs DynamoDB Local's `GetRecords` answers before the SDK reads them.
//!
//! DynamoDB Local (3.3.0) writes an empty map attribute in stream records as `{}` instead of
//! `{"M":{}}`, at top level and inside `M` values and `L` elements, e.g.
//! `"NewImage":{"params":{},"nested":{"M":{"inner":{}}}}` for an item that holds
//! `"params":{"M":{}}`. `{}` is no attribute value (a union with no member), so the SDK fails
//! the whole `GetRecords` call with "failed to parse JSON: Union did not contain a valid
//! variant" and the stream can never be read past such a record. Real DynamoDB sends
//! `{"M":{}}` and is unaffected: the repair only ever rewrites `{}` attribute values, which a
//! correct server never sends, so the interceptor is safe on any endpoint.
//!
//! [`EmptyMapRepair`] is an SDK interceptor on the DynamoDB Streams client: for `GetRecords`
//! answers it buffers the body and, inside every record's `Keys`, `NewImage` and `OldImage`
//! (recursively through `M` values and `L` elements), replaces each `{}` attribute value by
//! `{"M":{}}`. A body that needs no repair (or is not JSON) is passed on byte for byte.

use aws_sdk_dynamodbstreams::config::interceptors::BeforeDeserializationInterceptorContextMut;
use aws_sdk_dynamodbstreams::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use hyper::body::{Body, Frame};
use serde_json::{Map, Value};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The interceptor (see the module documentation).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct EmptyMapRepair;

impl Intercept for EmptyMapRepair {
    fn name(&self) -> &'static str {
        "DynamoDbLocalEmptyMapRepair"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let get_records = cfg
            .load::<Metadata>()
            .is_some_and(|m| m.name() == "GetRecords");
        let response = context.response_mut();
        if !get_records || !response.status().is_success() {
            return Ok(());
        }
        // The body is still a stream here (the SDK reads it after this hook): wrap it in one
        // that reads it whole and repairs it. Content-Length no longer holds once repaired.
        response.headers_mut().remove("content-length");
        let body = response.take_body();
        *response.body_mut() = SdkBody::from_body_1_x(RepairBody {
            inner: Some(body),
            buf: Vec::new(),
        });
        Ok(())
    }
}

/// A body that reads `inner` to its end, then yields it (repaired) as one data frame.
struct RepairBody {
    inner: Option<SdkBody>,
    buf: Vec<u8>,
}

impl Body for RepairBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(Pin::new(inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // A JSON answer has no trailers worth keeping.
                    if let Ok(data) = frame.into_data() {
                        this.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    this.inner = None;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    this.inner = None;
                    let raw = std::mem::take(&mut this.buf);
                    let out = repair_get_records(&raw).unwrap_or(raw);
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_none()
    }
}

/// The repaired `GetRecords` answer, or `None` when `body` needs no repair (or is not JSON).
pub(crate) fn repair_get_records(body: &[u8]) -> Option<Vec<u8>> {
    let mut doc: Value = serde_json::from_slice(body).ok()?;
    let mut changed = false;
    for rec in doc
        .get_mut("Records")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let Some(d) = rec.get_mut("dynamodb").and_then(Value::as_object_mut) else {
            continue;
        };
        for image in ["Keys", "NewImage", "OldImage"] {
            if let Some(Value::Object(item)) = d.get_mut(image) {
                changed |= repair_item(item);
            }
        }
    }
    if !changed {
        return None;
    }
    serde_json::to_vec(&doc).ok()
}

/// An attribute map (name → attribute value).
fn repair_item(item: &mut Map<String, Value>) -> bool {
    let mut changed = false;
    for v in item.values_mut() {
        changed |= repair_value(v);
    }
    changed
}

/// One attribute value: `{}` becomes `{"M":{}}`; `M` values and `L` elements are repaired too.
fn repair_value(v: &mut Value) -> bool {
    let Value::Object(o) = v else {
        return false;
    };
    if o.is_empty() {
        o.insert("M".into(), Value::Object(Map::new()));
        return true;
    }
    let mut changed = false;
    if let Some(Value::Object(m)) = o.get_mut("M") {
        changed |= repair_item(m);
    }
    if let Some(Value::Array(l)) = o.get_mut("L") {
        for e in l {
            changed |= repair_value(e);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_maps_become_m_at_every_depth() {
        // Verbatim from DynamoDB Local 3.3.0 (an item with empty maps and lists).
        let raw = br#"{"Records":[{"eventID":"d7fd","eventName":"INSERT","eventVersion":"1.1","eventSource":"aws:dynamodb","awsRegion":"ddblocal","dynamodb":{"ApproximateCreationDateTime":1796164800.000,"Keys":{"pk":{"S":"a"}},"NewImage":{"ss":{"S":""},"el":{"L":[]},"pk":{"S":"a"},"params":{},"list":{"L":[{},{"L":[]},{"S":""}]},"nested":{"M":{"inner":{}}}},"SequenceNumber":"000000000000000000001","SizeBytes":56,"StreamViewType":"NEW_AND_OLD_IMAGES"}}],"NextShardIterator":"it"}"#;
        let fixed: Value =
            serde_json::from_slice(&repair_get_records(raw).expect("repaired")).expect("json");
        let mut want: Value = serde_json::from_slice(raw).expect("json");
        want["Records"][0]["dynamodb"]["NewImage"] = json!({
            "ss": {"S": ""}, "el": {"L": []}, "pk": {"S": "a"}, "params": {"M": {}},
            "list": {"L": [{"M": {}}, {"L": []}, {"S": ""}]}, "nested": {"M": {"inner": {"M": {}}}}
        });
        assert_eq!(fixed, want);
        // Key order is kept.
        let keys: Vec<&String> = fixed["Records"][0]["dynamodb"]["NewImage"]
            .as_object()
            .expect("image")
            .keys()
            .collect();
        assert_eq!(keys, ["ss", "el", "pk", "params", "list", "nested"]);
    }

    #[test]
    fn keys_and_old_image_are_repaired_too() {
        let raw = json!({"Records": [{"dynamodb": {
            "Keys": {"k": {}}, "OldImage": {"o": {"L": [{"M": {"x": {}}}]}}, "NewImage": {"n": {"S": "x"}}
        }}]});
        let fixed: Value = serde_json::from_slice(
            &repair_get_records(raw.to_string().as_bytes()).expect("repaired"),
        )
        .expect("json");
        assert_eq!(
            fixed["Records"][0]["dynamodb"]["Keys"],
            json!({"k": {"M": {}}})
        );
        assert_eq!(
            fixed["Records"][0]["dynamodb"]["OldImage"],
            json!({"o": {"L": [{"M": {"x": {"M": {}}}}]}})
        );
        assert_eq!(
            fixed["Records"][0]["dynamodb"]["NewImage"],
            json!({"n": {"S": "x"}})
        );
    }

    #[test]
    fn correct_answers_and_other_json_are_left_alone() {
        for raw in [
            r#"{"Records":[{"dynamodb":{"Keys":{"pk":{"S":"a"}},"NewImage":{"m":{"M":{}},"l":{"L":[{"M":{}}]}}}}],"NextShardIterator":"x"}"#,
            r#"{"Records":[],"NextShardIterator":"x"}"#,
            // Outside the images an empty object is not an attribute value.
            r#"{"Records":[{"dynamodb":{"Keys":{}},"userIdentity":{}}],"Other":{}}"#,
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ExpiredIteratorException","message":"x"}"#,
            "not json",
            "",
        ] {
            assert_eq!(repair_get_records(raw.as_bytes()), None, "{raw}");
        }
    }

    #[tokio::test]
    async fn the_body_is_buffered_and_repaired() {
        use http_body_util::BodyExt;
        let raw = r#"{"Records":[{"dynamodb":{"NewImage":{"p":{}}}}]}"#;
        let body = RepairBody {
            inner: Some(SdkBody::from(raw)),
            buf: Vec::new(),
        };
        let out = body.collect().await.expect("body").to_bytes();
        assert_eq!(
            std::str::from_utf8(&out).expect("utf8"),
            r#"{"Records":[{"dynamodb":{"NewImage":{"p":{"M":{}}}}}]}"#
        );
    }
}

//! Reading a function's `ReportBatchItemFailures` answer the way Lambda does.
//!
//! Hand-parsed rather than deserialized into `aws_lambda_events`' `SqsBatchResponse` /
//! `DynamoDbEventResponse`: those reject `null` or missing `batchItemFailures` (which Lambda
//! treats as success) and cannot tell an empty `itemIdentifier` (a failed batch) from a valid one.

use serde_json::Value;

/// What a batch response says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BatchResponse {
    /// Every item succeeded.
    AllOk,
    /// These item identifiers failed (in the order returned, deduplicated).
    Failed(Vec<String>),
    /// The response is unusable, so the whole batch failed (the reason is logged).
    Invalid(String),
}

/// Interprets `payload` as Lambda does with `FunctionResponseTypes: [ReportBatchItemFailures]`:
/// complete success for an empty or `null` response or `batchItemFailures` that is empty or
/// `null`; complete failure for invalid JSON, a failure without an `itemIdentifier` (missing,
/// `null`, empty, misspelt key) or with one that is not in the batch.
pub(crate) fn parse_batch_response(
    payload: &[u8],
    in_batch: impl Fn(&str) -> bool,
) -> BatchResponse {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return BatchResponse::AllOk;
    }
    let doc: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return BatchResponse::Invalid(format!("response is not JSON: {e}")),
    };
    let failures = match &doc {
        Value::Null => return BatchResponse::AllOk,
        Value::Object(o) => match o.get("batchItemFailures") {
            None | Some(Value::Null) => return BatchResponse::AllOk,
            Some(Value::Array(items)) => items,
            Some(other) => {
                return BatchResponse::Invalid(format!("batchItemFailures is not a list: {other}"))
            }
        },
        other => return BatchResponse::Invalid(format!("response is not an object: {other}")),
    };
    let mut ids: Vec<String> = Vec::new();
    for item in failures {
        let id = match item.get("itemIdentifier") {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => {
                return BatchResponse::Invalid(format!(
                    "batch item failure without a usable itemIdentifier: {item}"
                ))
            }
        };
        if !in_batch(id) {
            return BatchResponse::Invalid(format!("itemIdentifier {id} is not in the batch"));
        }
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    if ids.is_empty() {
        BatchResponse::AllOk
    } else {
        BatchResponse::Failed(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(p: &str) -> BatchResponse {
        parse_batch_response(p.as_bytes(), |id| id == "a" || id == "b")
    }

    #[test]
    fn success_forms() {
        for p in [
            "",
            " ",
            "null",
            "{}",
            r#"{"batchItemFailures":[]}"#,
            r#"{"batchItemFailures":null}"#,
        ] {
            assert_eq!(parse(p), BatchResponse::AllOk, "{p:?}");
        }
    }

    #[test]
    fn failures_and_invalid_forms() {
        assert_eq!(
            parse(r#"{"batchItemFailures":[{"itemIdentifier":"b"},{"itemIdentifier":"b"}]}"#),
            BatchResponse::Failed(vec!["b".into()])
        );
        for p in [
            "not json",
            r#""ok""#,
            r#"{"batchItemFailures":{}}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifer":"a"}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":"zzz"}]}"#,
        ] {
            assert!(matches!(parse(p), BatchResponse::Invalid(_)), "{p}");
        }
    }
}

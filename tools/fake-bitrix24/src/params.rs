//! Reading request parameters the way Bitrix24's PHP does: upper-case-insensitive names, and
//! numbers that may arrive as JSON numbers or as form strings.

use serde_json::{Map, Value};

/// The value of `name`, matched case-insensitively (Bitrix24 methods upper-case their keys).
pub(crate) fn get<'a>(params: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    params.get(name).or_else(|| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// A scalar as text (`7` and `"7"` both give `7`); `None` for containers and `null`.
pub(crate) fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        _ => None,
    }
}

/// A non-empty scalar parameter as text.
pub(crate) fn non_empty_text(params: &Map<String, Value>, name: &str) -> Option<String> {
    get(params, name)
        .and_then(text)
        .filter(|s| !s.trim().is_empty())
}

/// An integer given as a JSON integer or as a decimal string (surrounding spaces allowed).
pub(crate) fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The elements of a list: a JSON array, or the object a PHP form makes of `x[0]=…&x[1]=…`.
pub(crate) fn items(value: &Value) -> Option<Vec<&Value>> {
    match value {
        Value::Array(items) => Some(items.iter().collect()),
        Value::Object(map) => Some(map.values().collect()),
        _ => None,
    }
}

/// A flag the way the docs describe `halt`: `true`/`1` (and `Y`) set, anything else not.
pub(crate) fn flag(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => {
            matches!(s.trim().to_ascii_lowercase().as_str(), "1" | "true" | "y")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_come_as_numbers_or_strings() {
        assert_eq!(integer(&json!(107)), Some(107));
        assert_eq!(integer(&json!(" 107 ")), Some(107));
        assert_eq!(integer(&json!("1.5")), None);
        assert_eq!(integer(&json!(1.5)), None);
        assert_eq!(integer(&json!([1])), None);
    }

    #[test]
    fn names_match_in_any_case_and_lists_in_both_shapes() {
        let Value::Object(p) = json!({"connector":"x","M":{"0":1,"1":2}}) else {
            unreachable!()
        };
        assert_eq!(non_empty_text(&p, "CONNECTOR").as_deref(), Some("x"));
        assert_eq!(items(get(&p, "m").unwrap()).unwrap().len(), 2);
        assert!(flag(Some(&json!("1"))) && flag(Some(&json!(true))) && !flag(Some(&json!("0"))));
    }
}

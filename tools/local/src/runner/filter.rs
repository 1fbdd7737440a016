//! Lambda event filtering (`FilterCriteria`): the EventBridge-pattern subset Lambda supports.
//!
//! A record is delivered when it matches **any** pattern (no patterns: everything matches);
//! records that match none are dropped and count as processed (for SQS they are deleted), as AWS
//! does. Supported: exact values (strings, numbers, `true`/`false`, `null`, `""`), `prefix`,
//! `suffix` (also with `equals-ignore-case` inside), `equals-ignore-case`, `anything-but`
//! (a value, a list, or `prefix`/`suffix`/`equals-ignore-case`), `exists`, `numeric` (one or
//! two comparisons), nested keys, `$or`, and several patterns OR-ed. Arrays in the record match
//! when any element does. `numeric` also matches the string of a DynamoDB number
//! (`{"N": "42"}`), which Lambda compares as a number. Anything else (`cidr`, `wildcard`, …) is
//! rejected when the pattern is parsed, never silently ignored.

use crate::LocalError;
use serde_json::Value;

/// A list of filter patterns; see the module docs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilterCriteria {
    patterns: Vec<Pattern>,
}

/// One compiled filter pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern(ObjPattern);

#[derive(Debug, Clone, PartialEq)]
struct ObjPattern {
    fields: Vec<(String, FieldPattern)>,
    ors: Vec<Vec<ObjPattern>>,
}

#[derive(Debug, Clone, PartialEq)]
enum FieldPattern {
    Nested(ObjPattern),
    Leaf(Vec<Matcher>),
}

#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    Equals(Value),
    Prefix(String, bool),
    Suffix(String, bool),
    EqualsIgnoreCase(String),
    AnythingBut(Vec<Matcher>),
    Exists(bool),
    Numeric(Vec<(NumOp, f64)>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum NumOp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

fn err(msg: impl Into<String>) -> LocalError {
    LocalError::Config(format!("filter pattern: {}", msg.into()))
}

impl FilterCriteria {
    /// No patterns: every record matches.
    pub fn none() -> Self {
        Self::default()
    }

    /// From the forms a config may use: a list whose elements are pattern objects, pattern
    /// strings (JSON text, as in a SAM template) or `{"Pattern": "<JSON text>"}`; or the whole
    /// `{"Filters": [...]}` object.
    pub fn from_json(value: &Value) -> Result<Self, LocalError> {
        let list = match value {
            Value::Null => return Ok(Self::none()),
            Value::Array(items) => items.as_slice(),
            Value::Object(o) if o.contains_key("Filters") => match o.get("Filters") {
                Some(Value::Array(items)) => items.as_slice(),
                _ => return Err(err("`Filters` must be a list")),
            },
            Value::Object(_) | Value::String(_) => std::slice::from_ref(value),
            _ => return Err(err("expected a list of patterns")),
        };
        let patterns = list
            .iter()
            .map(Pattern::from_json)
            .collect::<Result<_, _>>()?;
        Ok(FilterCriteria { patterns })
    }

    /// From pattern strings (JSON text each).
    pub fn from_strs<S: AsRef<str>>(patterns: &[S]) -> Result<Self, LocalError> {
        let patterns = patterns
            .iter()
            .map(|p| Pattern::parse(p.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(FilterCriteria { patterns })
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The number of patterns.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Whether `record` should be delivered.
    pub fn matches(&self, record: &Value) -> bool {
        self.patterns.is_empty() || self.patterns.iter().any(|p| p.matches(record))
    }
}

impl Pattern {
    /// Parses one pattern from its JSON text.
    pub fn parse(text: &str) -> Result<Self, LocalError> {
        let v: Value = serde_json::from_str(text).map_err(|e| err(format!("{e} in {text}")))?;
        Ok(Pattern(parse_obj(&v)?))
    }

    /// From a pattern object, a pattern string or `{"Pattern": "<text>"}`.
    pub fn from_json(v: &Value) -> Result<Self, LocalError> {
        match v {
            Value::String(text) => Self::parse(text),
            Value::Object(o) if o.len() == 1 && o.contains_key("Pattern") => match o.get("Pattern")
            {
                Some(Value::String(text)) => Self::parse(text),
                Some(obj @ Value::Object(_)) => Ok(Pattern(parse_obj(obj)?)),
                _ => Err(err("`Pattern` must be a string")),
            },
            Value::Object(_) => Ok(Pattern(parse_obj(v)?)),
            _ => Err(err(format!("a pattern must be an object, got {v}"))),
        }
    }

    /// Whether `record` matches this pattern.
    pub fn matches(&self, record: &Value) -> bool {
        match_obj(&self.0, Some(record))
    }
}

fn parse_obj(v: &Value) -> Result<ObjPattern, LocalError> {
    let Value::Object(map) = v else {
        return Err(err(format!("expected an object, got {v}")));
    };
    let mut fields = Vec::new();
    let mut ors = Vec::new();
    for (k, val) in map {
        if k == "$or" {
            let Value::Array(alts) = val else {
                return Err(err("`$or` must be a list of patterns"));
            };
            if alts.len() < 2 {
                return Err(err("`$or` needs at least two patterns"));
            }
            ors.push(alts.iter().map(parse_obj).collect::<Result<_, _>>()?);
            continue;
        }
        let fp = match val {
            Value::Object(_) => FieldPattern::Nested(parse_obj(val)?),
            Value::Array(ms) => {
                if ms.is_empty() {
                    return Err(err(format!("`{k}` has an empty list of values")));
                }
                FieldPattern::Leaf(ms.iter().map(parse_matcher).collect::<Result<_, _>>()?)
            }
            _ => {
                return Err(err(format!(
                    "the value of `{k}` must be a list (e.g. [{val}]) or an object"
                )))
            }
        };
        fields.push((k.clone(), fp));
    }
    Ok(ObjPattern { fields, ors })
}

fn string_arg(op: &str, v: &Value) -> Result<(String, bool), LocalError> {
    match v {
        Value::String(s) => Ok((s.clone(), false)),
        Value::Object(o) if o.len() == 1 => match o.get("equals-ignore-case") {
            Some(Value::String(s)) => Ok((s.to_lowercase(), true)),
            _ => Err(err(format!("`{op}` takes a string"))),
        },
        _ => Err(err(format!("`{op}` takes a string"))),
    }
}

fn parse_matcher(v: &Value) -> Result<Matcher, LocalError> {
    let obj = match v {
        Value::Object(o) => o,
        Value::Array(_) => return Err(err("nested lists are not allowed")),
        scalar => return Ok(Matcher::Equals(scalar.clone())),
    };
    let mut it = obj.iter();
    let (Some((op, arg)), None) = (it.next(), it.next()) else {
        return Err(err(format!("a matcher has exactly one operator, got {v}")));
    };
    Ok(match op.as_str() {
        "prefix" => {
            let (s, ic) = string_arg(op, arg)?;
            Matcher::Prefix(s, ic)
        }
        "suffix" => {
            let (s, ic) = string_arg(op, arg)?;
            Matcher::Suffix(s, ic)
        }
        "equals-ignore-case" => match arg {
            Value::String(s) => Matcher::EqualsIgnoreCase(s.to_lowercase()),
            _ => return Err(err("`equals-ignore-case` takes a string")),
        },
        "exists" => match arg {
            Value::Bool(b) => Matcher::Exists(*b),
            _ => return Err(err("`exists` takes true or false")),
        },
        "anything-but" => Matcher::AnythingBut(match arg {
            Value::Array(vals) => vals
                .iter()
                .map(|x| match x {
                    Value::Object(_) | Value::Array(_) => {
                        Err(err("`anything-but` lists hold plain values"))
                    }
                    s => Ok(Matcher::Equals(s.clone())),
                })
                .collect::<Result<_, _>>()?,
            Value::Object(o) if o.len() == 1 => match o.get("equals-ignore-case") {
                Some(Value::Array(vals)) => vals
                    .iter()
                    .map(|x| match x {
                        Value::String(s) => Ok(Matcher::EqualsIgnoreCase(s.to_lowercase())),
                        _ => Err(err("`equals-ignore-case` takes strings")),
                    })
                    .collect::<Result<_, _>>()?,
                _ => match parse_matcher(arg)? {
                    inner @ (Matcher::Prefix(..)
                    | Matcher::Suffix(..)
                    | Matcher::EqualsIgnoreCase(_)) => vec![inner],
                    _ => {
                        return Err(err(
                            "`anything-but` takes a value, a list, prefix, suffix or equals-ignore-case",
                        ))
                    }
                },
            },
            Value::Object(_) => return Err(err("`anything-but` object has one operator")),
            s => vec![Matcher::Equals(s.clone())],
        }),
        "numeric" => {
            let Value::Array(parts) = arg else {
                return Err(err("`numeric` takes a list like [\">\", 0, \"<=\", 5]"));
            };
            if parts.is_empty() || parts.len() % 2 != 0 || parts.len() > 4 {
                return Err(err("`numeric` takes one or two (operator, number) pairs"));
            }
            let mut conds = Vec::new();
            for pair in parts.chunks(2) {
                let op = match pair[0].as_str() {
                    Some("=") => NumOp::Eq,
                    Some("<") => NumOp::Lt,
                    Some("<=") => NumOp::Le,
                    Some(">") => NumOp::Gt,
                    Some(">=") => NumOp::Ge,
                    _ => return Err(err(format!("unknown numeric operator {}", pair[0]))),
                };
                let n = pair[1]
                    .as_f64()
                    .ok_or_else(|| err(format!("`numeric` needs numbers, got {}", pair[1])))?;
                conds.push((op, n));
            }
            Matcher::Numeric(conds)
        }
        other => {
            return Err(err(format!(
                "operator `{other}` is not supported by this runner"
            )))
        }
    })
}

fn match_obj(p: &ObjPattern, v: Option<&Value>) -> bool {
    let field = |k: &str| v.and_then(|v| v.as_object()).and_then(|o| o.get(k));
    p.fields.iter().all(|(k, fp)| match_field(k, fp, field(k)))
        && p.ors
            .iter()
            .all(|alts| alts.iter().any(|alt| match_obj(alt, v)))
}

fn match_field(key: &str, fp: &FieldPattern, v: Option<&Value>) -> bool {
    match fp {
        FieldPattern::Nested(o) => match v {
            Some(Value::Array(items)) => items.iter().any(|i| match_obj(o, Some(i))),
            other => match_obj(o, other),
        },
        FieldPattern::Leaf(ms) => ms.iter().any(|m| match_leaf(key, m, v)),
    }
}

fn match_leaf(key: &str, m: &Matcher, v: Option<&Value>) -> bool {
    match (m, v) {
        (Matcher::Exists(want), v) => *want == v.is_some_and(|v| !v.is_object()),
        (_, None) => false,
        (_, Some(Value::Array(items))) => items.iter().any(|i| match_scalar(key, m, i)),
        (_, Some(v)) => match_scalar(key, m, v),
    }
}

fn match_scalar(key: &str, m: &Matcher, v: &Value) -> bool {
    match m {
        Matcher::Equals(p) => match (p, v) {
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (a, b) => a == b,
        },
        Matcher::Prefix(s, ic) => v.as_str().is_some_and(|x| {
            if *ic {
                x.to_lowercase().starts_with(s.as_str())
            } else {
                x.starts_with(s.as_str())
            }
        }),
        Matcher::Suffix(s, ic) => v.as_str().is_some_and(|x| {
            if *ic {
                x.to_lowercase().ends_with(s.as_str())
            } else {
                x.ends_with(s.as_str())
            }
        }),
        Matcher::EqualsIgnoreCase(s) => v.as_str().is_some_and(|x| x.to_lowercase() == *s),
        Matcher::AnythingBut(inner) => !inner.iter().any(|i| match_scalar(key, i, v)),
        Matcher::Exists(_) => false,
        Matcher::Numeric(conds) => {
            let n = match v {
                Value::Number(n) => n.as_f64(),
                // A DynamoDB number travels as a string: {"N": "42"}.
                Value::String(s) if key == "N" => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            n.is_some_and(|n| {
                conds.iter().all(|(op, x)| match op {
                    NumOp::Eq => n == *x,
                    NumOp::Lt => n < *x,
                    NumOp::Le => n <= *x,
                    NumOp::Gt => n > *x,
                    NumOp::Ge => n >= *x,
                })
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crit(patterns: &[&str]) -> FilterCriteria {
        FilterCriteria::from_strs(patterns).expect("pattern")
    }

    fn ddb(name: &str, new: Value) -> Value {
        json!({"eventName": name, "dynamodb": {"Keys": {"pk": {"S": "p"}}, "NewImage": new}})
    }

    #[test]
    fn nested_exact_value_like_the_templates() {
        let c = crit(&[r#"{"dynamodb":{"NewImage":{"record_type":{"S":["message"]}}}}"#]);
        assert!(c.matches(&ddb("INSERT", json!({"record_type": {"S": "message"}}))));
        assert!(!c.matches(&ddb("INSERT", json!({"record_type": {"S": "session"}}))));
        assert!(!c.matches(&ddb("REMOVE", Value::Null)));
    }

    #[test]
    fn operators() {
        let m = |p: &str, v: Value| crit(&[p]).matches(&v);
        assert!(m(r#"{"a":[{"prefix":"msg#"}]}"#, json!({"a": "msg#1"})));
        assert!(!m(r#"{"a":[{"prefix":"msg#"}]}"#, json!({"a": "ses#1"})));
        assert!(m(
            r#"{"a":[{"prefix":{"equals-ignore-case":"MSG"}}]}"#,
            json!({"a": "msg#1"})
        ));
        assert!(m(r#"{"a":[{"suffix":".png"}]}"#, json!({"a": "x.png"})));
        assert!(m(
            r#"{"a":[{"equals-ignore-case":"ABC"}]}"#,
            json!({"a": "abc"})
        ));
        assert!(m(
            r#"{"a":[{"anything-but":["x","y"]}]}"#,
            json!({"a": "z"})
        ));
        assert!(!m(
            r#"{"a":[{"anything-but":["x","y"]}]}"#,
            json!({"a": "x"})
        ));
        assert!(!m(r#"{"a":[{"anything-but":"x"}]}"#, json!({"b": 1})));
        assert!(m(
            r#"{"a":[{"anything-but":{"prefix":"tmp"}}]}"#,
            json!({"a": "keep"})
        ));
        assert!(!m(
            r#"{"a":[{"anything-but":{"prefix":"tmp"}}]}"#,
            json!({"a": "tmp1"})
        ));
        let ic = r#"{"a":[{"anything-but":{"equals-ignore-case":["X","y"]}}]}"#;
        assert!(!m(ic, json!({"a": "x"})));
        assert!(m(ic, json!({"a": "z"})));
        assert!(m(r#"{"a":[{"exists":true}]}"#, json!({"a": 0})));
        assert!(!m(r#"{"a":[{"exists":true}]}"#, json!({"b": 0})));
        assert!(m(r#"{"a":[{"exists":false}]}"#, json!({"b": 0})));
        assert!(m(r#"{"x":{"a":[{"exists":false}]}}"#, json!({"b": 0})));
        assert!(m(r#"{"n":[{"numeric":[">",0,"<=",5]}]}"#, json!({"n": 5})));
        assert!(!m(r#"{"n":[{"numeric":[">",0,"<=",5]}]}"#, json!({"n": 0})));
        assert!(!m(r#"{"n":[{"numeric":[">",0]}]}"#, json!({"n": "3"})));
        assert!(m(
            r#"{"q":{"N":[{"numeric":["=",300]}]}}"#,
            json!({"q": {"N": "300"}})
        ));
        assert!(m(r#"{"a":[1]}"#, json!({"a": 1.0})));
        assert!(!m(r#"{"a":["1"]}"#, json!({"a": 1})));
        assert!(m(r#"{"a":[null]}"#, json!({"a": null})));
        assert!(!m(r#"{"a":[null]}"#, json!({})));
        assert!(m(r#"{"a":[""]}"#, json!({"a": ""})));
        assert!(m(r#"{"a":[true]}"#, json!({"a": true})));
        assert!(m(r#"{"tags":["b"]}"#, json!({"tags": ["a", "b"]})));
        assert!(m(
            r#"{"l":{"k":["v"]}}"#,
            json!({"l": [{"k": "w"}, {"k": "v"}]})
        ));
    }

    #[test]
    fn or_and_several_patterns() {
        let c = crit(&[r#"{"eventName":["INSERT"]}"#, r#"{"eventName":["REMOVE"]}"#]);
        assert!(c.matches(&json!({"eventName": "REMOVE"})));
        assert!(!c.matches(&json!({"eventName": "MODIFY"})));
        let or = crit(&[r#"{"$or":[{"a":["1"]},{"b":["2"]}],"c":["3"]}"#]);
        assert!(or.matches(&json!({"b": "2", "c": "3"})));
        assert!(!or.matches(&json!({"b": "2", "c": "4"})));
        assert!(!or.matches(&json!({"a": "2", "c": "3"})));
        assert!(FilterCriteria::none().matches(&json!({})));
    }

    #[test]
    fn accepted_forms_and_rejections() {
        let forms = json!([
            {"eventName": ["INSERT"]},
            "{\"eventName\": [\"MODIFY\"]}",
            {"Pattern": "{\"eventName\": [\"REMOVE\"]}"}
        ]);
        let c = FilterCriteria::from_json(&forms).expect("forms");
        assert_eq!(c.len(), 3);
        for n in ["INSERT", "MODIFY", "REMOVE"] {
            assert!(c.matches(&json!({ "eventName": n })));
        }
        let wrapped = json!({"Filters": [{"Pattern": "{\"a\":[\"1\"]}"}]});
        assert_eq!(
            FilterCriteria::from_json(&wrapped).expect("wrapped").len(),
            1
        );
        for bad in [
            r#"{"a":"x"}"#,
            r#"{"a":[{"cidr":"10.0.0.0/8"}]}"#,
            r#"{"a":[{"numeric":[">"]}]}"#,
            r#"{"a":[{"numeric":["~",1]}]}"#,
            r#"{"a":[{"prefix":1}]}"#,
            r#"{"a":[]}"#,
            r#"{"$or":[{"a":["1"]}]}"#,
            "not json",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}

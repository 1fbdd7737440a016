//! `batch` (`settings/how-to-call-rest-api/batch.md`): up to 50 commands `method?query` in one
//! HTTP request (one request for the rate limit too), run in order under the batch's token.
//!
//! The answer is `{"result": {"result", "result_error", "result_total", "result_next",
//! "result_time"}}`, each keyed by command name and, as PHP's `json_encode` renders arrays,
//! `[]` when empty and a list when the keys are exactly 0…n-1. Commands past the 50th each fail
//! with `ERROR_BATCH_LENGTH_EXCEEDED`; `batch` inside `batch` with
//! `ERROR_BATCH_METHOD_NOT_ALLOWED`; `halt` stops at the first failing command. Values of the
//! form `$result[cmd][field]…` are replaced by that earlier command's result.

use serde_json::{json, Map, Value};

use super::{call_method, normalize};
use crate::answer::{time_object, ErrorAnswer, MethodResult};
use crate::params::{flag, get};
use crate::php_form::parse_query;
use crate::records::CallKind;
use crate::world::{AuthContext, World};

/// Most commands run per batch.
pub(crate) const MAX_COMMANDS: usize = 50;

pub(super) fn run(
    world: &mut World,
    now: f64,
    ctx: &AuthContext,
    params: &Map<String, Value>,
) -> Result<MethodResult, ErrorAnswer> {
    let halt = flag(get(params, "halt"));
    let commands: Vec<(String, Value)> = match get(params, "cmd") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v.clone()))
            .collect(),
        Some(_) => return Err(ErrorAnswer::argument("Argument 'cmd' must be an array")),
    };
    let mut results = Map::new();
    let mut errors = Map::new();
    let mut totals = Map::new();
    let mut nexts = Map::new();
    let mut times = Map::new();
    for (n, (name, command)) in commands.into_iter().enumerate() {
        let (method, params, outcome) = if n >= MAX_COMMANDS {
            (
                String::new(),
                Value::Null,
                Err(ErrorAnswer::batch_length_exceeded()),
            )
        } else {
            run_command(world, now, ctx, &name, &command, &results)
        };
        if n < MAX_COMMANDS {
            let code = outcome
                .as_ref()
                .map_or_else(|e| e.error.clone(), |_| "ok".into());
            world.log(
                now,
                CallKind::Rest,
                Some(&ctx.member_id),
                &method,
                params,
                None,
                &code,
                Some(&name),
            );
        }
        match outcome {
            Ok(r) => {
                results.insert(name.clone(), r.result);
                if let Some(total) = r.total {
                    totals.insert(name.clone(), total.into());
                }
                if let Some(next) = r.next {
                    nexts.insert(name.clone(), next.into());
                }
                times.insert(name, time_object(now, now));
            }
            Err(e) => {
                errors.insert(name, e.body());
                if halt {
                    break;
                }
            }
        }
    }
    Ok(MethodResult::new(json!({
        "result": php_array(results),
        "result_error": php_array(errors),
        "result_total": php_array(totals),
        "result_next": php_array(nexts),
        "result_time": php_array(times),
    })))
}

/// Parses and runs one command; returns its method and parameters for the call log too.
fn run_command(
    world: &mut World,
    now: f64,
    ctx: &AuthContext,
    name: &str,
    command: &Value,
    results: &Map<String, Value>,
) -> (String, Value, Result<MethodResult, ErrorAnswer>) {
    let Some(text) = command.as_str() else {
        let e = ErrorAnswer::argument("A command must be a string 'method?parameters'");
        return (String::new(), command.clone(), Err(e));
    };
    let (method, query) = text.trim().split_once('?').unwrap_or((text.trim(), ""));
    let method = normalize(method);
    let mut params = match parse_query(query) {
        Ok(p) => p,
        Err(reason) => {
            let e = ErrorAnswer::invalid_request(reason);
            return (method, Value::String(query.into()), Err(e));
        }
    };
    // The batch's own token authorises every command.
    params.remove("auth");
    for value in params.values_mut() {
        resolve_references(value, results);
    }
    let logged = Value::Object(params.clone());
    let outcome = if method == "batch" {
        Err(ErrorAnswer::batch_method_not_allowed())
    } else {
        call_method(world, now, ctx, &method, &params, Some(name))
    };
    (method, logged, outcome)
}

/// PHP arrays in JSON: empty → `[]`, keys exactly 0…n-1 → a list, else an object.
fn php_array(map: Map<String, Value>) -> Value {
    let sequential = map
        .keys()
        .enumerate()
        .all(|(i, k)| k.parse::<usize>().ok() == Some(i));
    if sequential {
        Value::Array(map.into_iter().map(|(_, v)| v).collect())
    } else {
        Value::Object(map)
    }
}

/// Replaces `$result[cmd][a][0]` references with earlier results: a value that is exactly one
/// reference takes the referenced value itself; references inside longer text take its text.
/// Unknown references are left as they are.
fn resolve_references(value: &mut Value, results: &Map<String, Value>) {
    match value {
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| resolve_references(v, results)),
        Value::String(s) if s.contains("$result[") => {
            if let Some((found, len)) = reference_at(s, results) {
                if len == s.len() {
                    *value = found;
                    return;
                }
            }
            *s = substitute(s, results);
        }
        _ => {}
    }
}

fn substitute(s: &str, results: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("$result[") {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        match reference_at(tail, results) {
            Some((found, len)) => {
                out.push_str(&crate::params::text(&found).unwrap_or_default());
                rest = &tail[len..];
            }
            None => {
                out.push_str("$result[");
                rest = &tail["$result[".len()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The value referenced at the start of `s` (which starts with `$result[`) and the length of
/// the reference text.
fn reference_at(s: &str, results: &Map<String, Value>) -> Option<(Value, usize)> {
    let mut pos = "$result".len();
    let mut current: Option<&Value> = None;
    while s[pos..].starts_with('[') {
        let close = s[pos..].find(']')? + pos;
        let key = &s[pos + 1..close];
        current = Some(match current {
            None => results.get(key)?,
            Some(Value::Object(m)) => m.get(key)?,
            Some(Value::Array(a)) => a.get(key.parse::<usize>().ok()?)?,
            Some(_) => return None,
        });
        pos = close + 1;
    }
    current.map(|v| (v.clone(), pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn php_arrays_render_like_json_encode() {
        assert_eq!(php_array(Map::new()), json!([]));
        let Value::Object(seq) = json!({"0":"a","1":"b"}) else {
            unreachable!()
        };
        assert_eq!(php_array(seq), json!(["a", "b"]));
        let Value::Object(named) = json!({"0":"a","2":"b"}) else {
            unreachable!()
        };
        assert_eq!(php_array(named), json!({"0":"a","2":"b"}));
    }

    #[test]
    fn references_take_earlier_results() {
        let Value::Object(results) = json!({"app":{"ID":5,"L":[{"X":"y"}]}}) else {
            unreachable!()
        };
        let mut v = json!({"a":"$result[app][ID]","b":"id=$result[app][ID];x=$result[app][L][0][X]",
            "c":"$result[none][ID]","d":"$result[app][L]"});
        resolve_references(&mut v, &results);
        assert_eq!(
            v,
            json!({"a":5,"b":"id=5;x=y","c":"$result[none][ID]","d":[{"X":"y"}]})
        );
    }
}

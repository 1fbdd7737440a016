//! `batch` (`settings/how-to-call-rest-api/batch.md`): up to 50 commands
//! `cmd[name]=method?params` in one request, their parameters PHP-bracket encoded; the answer
//! `result.result{name: …}` and `result.result_error{name: {error, error_description}}`.

use std::collections::BTreeMap;

use b24_events::encode::php_form;
use serde_json::{Map, Value};

use crate::answer::{error_of, MethodError};
use crate::endpoint::check_method;

/// Most commands Bitrix24 runs in one batch (the rest would fail with
/// `ERROR_BATCH_LENGTH_EXCEEDED`).
pub const MAX_BATCH_COMMANDS: usize = 50;

/// Longest command name.
const MAX_NAME_LEN: usize = 100;

/// One command of a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// The key of its result (`cmd[name]`): letters, digits, `_` and `-`, unique in a batch.
    pub name: String,
    /// The REST method, e.g. `event.bind`.
    pub method: String,
    /// Its parameters: a JSON object (or `null` for none). Encoded like PHP's
    /// `http_build_query`: nested keys as brackets, `true`/`false` as `1`/`0`, and `null` and
    /// empty arrays leave no field.
    pub params: Value,
}

impl Command {
    /// A command.
    pub fn new(name: impl Into<String>, method: impl Into<String>, params: Value) -> Self {
        Command {
            name: name.into(),
            method: method.into(),
            params,
        }
    }

    /// `method?params` as the `cmd[name]` value.
    pub(crate) fn encode(&self) -> Result<String, String> {
        check_method(&self.method).map_err(|why| format!("command {}: {why}", self.name))?;
        match &self.params {
            Value::Null => Ok(self.method.clone()),
            Value::Object(map) if map.is_empty() => Ok(self.method.clone()),
            Value::Object(_) => {
                let query = php_form(&self.params);
                if query.is_empty() {
                    Ok(self.method.clone())
                } else {
                    Ok(format!("{}?{query}", self.method))
                }
            }
            _ => Err(format!("command {}: params must be an object", self.name)),
        }
    }
}

/// The `cmd` object of a batch: names checked (non-empty, unique, letters, digits, `_`, `-`).
pub(crate) fn cmd_object(commands: &[Command]) -> Result<Map<String, Value>, String> {
    let mut cmd = Map::new();
    for c in commands {
        let name_ok = !c.name.is_empty()
            && c.name.len() <= MAX_NAME_LEN
            && c.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err("command names: letters, digits, '_' and '-' only".into());
        }
        if cmd.contains_key(&c.name) {
            return Err(format!("command name {} used twice", c.name));
        }
        cmd.insert(c.name.clone(), Value::String(c.encode()?));
    }
    Ok(cmd)
}

/// What a batch answered, per command name. A command in neither map did not run (`halt`
/// stopped the batch before it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchAnswer {
    /// The `result` of every command that succeeded.
    pub results: BTreeMap<String, Value>,
    /// The error of every command that failed.
    pub errors: BTreeMap<String, MethodError>,
}

impl BatchAnswer {
    /// The outcome of command `name`; `None` when it did not run.
    pub fn outcome(&self, name: &str) -> Option<Result<&Value, &MethodError>> {
        match (self.results.get(name), self.errors.get(name)) {
            (_, Some(e)) => Some(Err(e)),
            (Some(r), None) => Some(Ok(r)),
            (None, None) => None,
        }
    }

    /// Reads the `result` of a batch answer (`{"result": {...}, "result_error": {...}, …}`).
    pub(crate) fn from_result(result: &Value, secrets: &[&str]) -> Result<BatchAnswer, String> {
        if !result.is_object() {
            return Err("batch result is not an object".into());
        }
        let results = php_entries(result.get("result"))?.into_iter().collect();
        let mut errors = BTreeMap::new();
        for (name, e) in php_entries(result.get("result_error"))? {
            let e = error_of(&e, secrets)
                .ok_or_else(|| format!("batch error of {name} has no error code"))?;
            errors.insert(name, e);
        }
        Ok(BatchAnswer { results, errors })
    }
}

/// The entries of a PHP array as `json_encode` renders it: an object, a list when the keys
/// are exactly 0…n-1 (so `[]` when empty), or absent.
fn php_entries(value: Option<&Value>) -> Result<Vec<(String, Value)>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => Ok(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        Some(Value::Array(items)) => Ok(items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v.clone()))
            .collect()),
        Some(_) => Err("batch result is not an array".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commands_are_php_bracket_encoded() {
        let c = Command::new(
            "d",
            "imconnector.send.status.delivery",
            json!({"CONNECTOR":"my c","LINE":107,"MESSAGES":[{"im":{"chat_id":1,"message_id":2},
                "message":{"id":["x&y"],"date":null},"chat":{"id":"c"}}]}),
        );
        assert_eq!(
            c.encode().unwrap(),
            "imconnector.send.status.delivery?CONNECTOR=my+c&LINE=107\
             &MESSAGES%5B0%5D%5Bim%5D%5Bchat_id%5D=1&MESSAGES%5B0%5D%5Bim%5D%5Bmessage_id%5D=2\
             &MESSAGES%5B0%5D%5Bmessage%5D%5Bid%5D%5B0%5D=x%26y&MESSAGES%5B0%5D%5Bchat%5D%5Bid%5D=c"
        );
        assert_eq!(
            Command::new("a", "app.info", Value::Null).encode().unwrap(),
            "app.info"
        );
        assert!(Command::new("a", "app.info", json!([1])).encode().is_err());
        assert!(Command::new("a", "../x", Value::Null).encode().is_err());
    }

    #[test]
    fn names_must_be_unique_and_plain() {
        let a = Command::new("a", "app.info", Value::Null);
        assert!(cmd_object(&[a.clone(), a.clone()]).is_err());
        assert!(cmd_object(&[Command::new("a[b]", "app.info", Value::Null)]).is_err());
        assert!(cmd_object(&[Command::new("", "app.info", Value::Null)]).is_err());
        assert_eq!(
            cmd_object(&[a]).unwrap(),
            *json!({"a": "app.info"}).as_object().unwrap()
        );
    }

    #[test]
    fn answers_in_both_php_array_shapes() {
        let a = BatchAnswer::from_result(
            &json!({"result": {"x": true}, "result_error": {"y": {"error": "ERROR_CORE",
                "error_description": "Unable to set event handler: Handler already binded"}},
                "result_total": [], "result_next": [], "result_time": {}}),
            &[],
        )
        .unwrap();
        assert_eq!(a.outcome("x"), Some(Ok(&json!(true))));
        assert!(a.outcome("y").unwrap().unwrap_err().is_already_bound());
        assert_eq!(a.outcome("z"), None);
        let listed =
            BatchAnswer::from_result(&json!({"result": ["a", "b"], "result_error": []}), &[])
                .unwrap();
        assert_eq!(listed.results["1"], "b");
        assert!(listed.errors.is_empty());
        assert!(BatchAnswer::from_result(&json!({"result_error": {"y": "oops"}}), &[]).is_err());
        assert!(BatchAnswer::from_result(&json!("x"), &[]).is_err());
    }
}

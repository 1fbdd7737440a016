//! PHP forms: `parse_str` for what clients send.
//!
//! Bitrix24 is PHP: a form body `cmd[a]=x&MESSAGES[0][im][chat_id]=1` arrives as nested arrays
//! whose every leaf is a string. The building side (`http_build_query`, for the events the fake
//! sends) is the product's own encoder, `b24_events::encode::php_form`: one encoder, checked
//! against PHP's output in `shared/events`. The parser stays the fake's own: it plays
//! Bitrix24's PHP receiving what the product sends, and the product's decoder cannot be that
//! independent referee (it is one of the things under test, and it builds typed events rather
//! than PHP's `$_REQUEST` arrays, with PHP's odd-key rules and limits).

use serde_json::{Map, Value};

/// PHP's `urlencode` (the product's: `b24_events::encode::urlencode`), for tests that build
/// PHP forms by hand.
pub use b24_events::encode::urlencode;

/// Most fields one form may carry (PHP's `max_input_vars` is 1000 by default; Bitrix24 raises it).
pub const MAX_FIELDS: usize = 10_000;
/// Deepest bracket nesting accepted (PHP's `max_input_nesting_level` is 64).
pub const MAX_DEPTH: usize = 32;

/// Decodes a query string or form body like PHP's `parse_str`.
///
/// `a[b][]=1&a[b][]=2&c=3` becomes `{"a":{"b":{"0":"1","1":"2"}},"c":"3"}`: containers are
/// JSON objects with the PHP keys (numeric keys included, in arrival order), leaves are strings.
/// A key without a name before its first bracket is dropped, as PHP drops it. Fails (with a
/// reason) beyond [`MAX_FIELDS`] fields or [`MAX_DEPTH`] levels.
pub fn parse_query(input: &str) -> Result<Map<String, Value>, &'static str> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(input).map_err(|_| "undecodable form body")?;
    if pairs.len() > MAX_FIELDS {
        return Err("too many form fields");
    }
    let mut root = Map::new();
    for (key, value) in pairs {
        let Some((base, path)) = split_key(&key) else {
            continue;
        };
        if path.len() > MAX_DEPTH {
            return Err("form keys nested too deep");
        }
        insert(&mut root, base, &path, value);
    }
    Ok(root)
}

/// `a[b][]` → (`a`, [`b`, ``]). As in PHP: spaces and dots in the name before the first bracket
/// become `_`, an opening bracket that never closes makes the whole key a plain name with that
/// bracket turned into `_`, and text after the last complete bracket group is ignored.
fn split_key(key: &str) -> Option<(String, Vec<String>)> {
    let Some(open) = key.find('[') else {
        return (!key.is_empty()).then(|| (php_name(key), Vec::new()));
    };
    if open == 0 {
        return None;
    }
    let base = &key[..open];
    let mut rest = &key[open..];
    let mut path = Vec::new();
    while let Some(after_open) = rest.strip_prefix('[') {
        match after_open.find(']') {
            Some(close) => {
                path.push(after_open[..close].to_string());
                rest = &after_open[close + 1..];
            }
            None if path.is_empty() => {
                return Some((php_name(&key.replacen('[', "_", 1)), Vec::new()));
            }
            None => break,
        }
    }
    Some((php_name(base), path))
}

/// PHP turns spaces and dots of a variable name into underscores.
fn php_name(name: &str) -> String {
    name.replace([' ', '.'], "_")
}

fn insert(root: &mut Map<String, Value>, base: String, path: &[String], value: String) {
    let mut cur = root.entry(base).or_insert(Value::Null);
    for segment in path {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = match cur {
            Value::Object(map) => {
                let key = if segment.is_empty() {
                    next_index(map).to_string()
                } else {
                    segment.clone()
                };
                map.entry(key).or_insert(Value::Null)
            }
            other => other,
        };
    }
    *cur = Value::String(value);
}

/// PHP's next free integer key for `[]`: one more than the largest integer key, else 0.
fn next_index(map: &Map<String, Value>) -> i64 {
    map.keys()
        .filter_map(|k| k.parse::<i64>().ok())
        .max()
        .map_or(0, |m| m.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_nests_bracket_keys_with_string_leaves() {
        let map = parse_query(
            "CONNECTOR=my&LINE=107&MESSAGES%5B0%5D%5Bim%5D%5Bchat_id%5D=1807&MESSAGES[0][message][id][]=x&MESSAGES[0][message][id][]=y",
        )
        .unwrap();
        assert_eq!(
            Value::Object(map),
            json!({"CONNECTOR":"my","LINE":"107","MESSAGES":{"0":{"im":{"chat_id":"1807"},
                "message":{"id":{"0":"x","1":"y"}}}}})
        );
    }

    #[test]
    fn parse_follows_php_for_odd_keys() {
        let map = parse_query("[x]=1&a[=2&b[c]tail=3&d=1&d[e]=4&f[5]=a&f[]=b&g+h=%7E").unwrap();
        assert_eq!(
            Value::Object(map),
            json!({"a_":"2","b":{"c":"3"},"d":{"e":"4"},"f":{"5":"a","6":"b"},"g_h":"~"})
        );
    }

    #[test]
    fn parse_refuses_absurd_nesting_and_size() {
        let deep = format!("a{}=1", "[x]".repeat(MAX_DEPTH + 1));
        assert!(parse_query(&deep).is_err());
        let many = vec!["k=v"; MAX_FIELDS + 1].join("&");
        assert!(parse_query(&many).is_err());
    }

    use b24_events::encode::php_form;

    #[test]
    fn the_shared_builder_makes_what_event_handlers_expect() {
        let data = json!({"event":"ONAPPTEST","data":{"QUERY":{"any":"data d~"},"LIST":[1,true,false,null],"E":[]},
            "auth":{"scope":"crm,placement","client_endpoint":"https://x.bitrix24.com/rest/"}});
        assert_eq!(
            php_form(&data),
            "event=ONAPPTEST&data%5BQUERY%5D%5Bany%5D=data+d%7E&data%5BLIST%5D%5B0%5D=1&data%5BLIST%5D%5B1%5D=1\
             &data%5BLIST%5D%5B2%5D=0&auth%5Bscope%5D=crm%2Cplacement\
             &auth%5Bclient_endpoint%5D=https%3A%2F%2Fx.bitrix24.com%2Frest%2F"
        );
    }

    #[test]
    fn build_then_parse_round_trips_as_strings() {
        let data = json!({"data":{"MESSAGES":[{"im":{"chat_id":1807},"message":{"text":"[b]Я:[/b] a&b=c"}}]}});
        let back = parse_query(&php_form(&data)).unwrap();
        assert_eq!(
            Value::Object(back),
            json!({"data":{"MESSAGES":{"0":{"im":{"chat_id":"1807"},"message":{"text":"[b]Я:[/b] a&b=c"}}}}})
        );
    }
}

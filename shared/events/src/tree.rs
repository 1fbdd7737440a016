//! The generic wire tree: both wire forms (PHP form and JSON) are first turned into a [`Node`]
//! tree, then [`crate::decode`] extracts the typed event from the tree once. So form and JSON
//! bodies behave identically.
//!
//! Limits are enforced while scanning, before anything big is built:
//! - form: the pair count is checked before each pair is inserted, and the bracket depth of a key
//!   is checked before its path is walked;
//! - JSON: a streaming `serde` visitor counts entries and depth as it goes.
//!
//! Nothing here recurses over untrusted depth except `Drop` and the JSON visitor, both bounded by
//! [`MAX_DEPTH_CAP`].

use crate::error::DecodeError;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;

/// Hard cap on `Limits::max_depth`: tree depth is bounded by this whatever the caller asks
/// (it keeps recursive drops and serde_json's own recursion safe).
pub(crate) const MAX_DEPTH_CAP: usize = 100;

/// A wire value: every scalar is a string (as PHP sends it), containers are maps whose keys
/// are the wire keys (list indices are decimal keys).
#[derive(Debug, PartialEq)]
pub(crate) enum Node {
    Scalar(String),
    Map(MapNode),
}

/// A container node.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct MapNode {
    pub(crate) children: BTreeMap<String, Node>,
    /// PHP's "next free integer key" for `a[]=` appends.
    next_index: i64,
}

impl MapNode {
    /// Exact key first, then an ASCII case-insensitive match.
    pub(crate) fn get<'a>(&'a self, key: &str) -> Option<(&'a str, &'a Node)> {
        if let Some((k, v)) = self.children.get_key_value(key) {
            return Some((k.as_str(), v));
        }
        self.children
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(k, v)| (k.as_str(), v))
    }

    /// The children with canonical integer keys, sorted by index (gaps allowed). Other keys
    /// are ignored.
    pub(crate) fn list_items(&self) -> Vec<(&str, &Node)> {
        let mut items: Vec<(i64, &str, &Node)> = self
            .children
            .iter()
            .filter_map(|(k, v)| php_int_key(k).map(|i| (i, k.as_str(), v)))
            .collect();
        items.sort_by_key(|(i, _, _)| *i);
        items.into_iter().map(|(_, k, v)| (k, v)).collect()
    }

    fn note_key(&mut self, key: &str) {
        if let Some(i) = php_int_key(key) {
            if i >= self.next_index {
                self.next_index = i.saturating_add(1);
            }
        }
    }
}

/// PHP turns a key into an integer key when it is a canonical decimal integer that fits.
pub(crate) fn php_int_key(key: &str) -> Option<i64> {
    let digits = key.strip_prefix('-').unwrap_or(key);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
        || key == "-0"
    {
        return None;
    }
    key.parse().ok()
}

/// Splits a PHP form key into its base name and bracket segments, like PHP's
/// `php_register_variable_ex`. Returns `None` for keys PHP drops (empty base name).
fn split_key(key: &str) -> Option<(String, Vec<&str>)> {
    // PHP skips leading spaces of the name.
    let key = key.trim_start_matches(' ');
    let (base, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if base.is_empty() {
        return None;
    }
    // In the base name PHP turns ' ' and '.' into '_'.
    let mut base: String = base
        .chars()
        .map(|c| if c == ' ' || c == '.' { '_' } else { c })
        .collect();
    let mut segments = Vec::new();
    while let Some(inner) = rest.strip_prefix('[') {
        match inner.find(']') {
            Some(end) => {
                segments.push(&inner[..end]);
                rest = &inner[end + 1..];
            }
            None => {
                if segments.is_empty() {
                    // An unmatched first '[' becomes '_' and the rest is part of the name.
                    base.push('_');
                    base.push_str(inner);
                }
                break;
            }
        }
        // Anything after a ']' that does not open a new segment is ignored.
    }
    Some((base, segments))
}

/// Builds the tree from a form body with PHP `parse_str` semantics.
pub(crate) fn from_form(
    body: &[u8],
    max_depth: usize,
    max_keys: usize,
) -> Result<MapNode, DecodeError> {
    let mut root = MapNode::default();
    let mut count = 0usize;
    for (key, value) in form_urlencoded::parse(body) {
        if key.is_empty() {
            continue;
        }
        count += 1;
        if count > max_keys {
            return Err(DecodeError::TooManyKeys { limit: max_keys });
        }
        let Some((base, segments)) = split_key(&key) else {
            continue;
        };
        if 1 + segments.len() > max_depth {
            return Err(DecodeError::TooDeep { limit: max_depth });
        }
        insert(&mut root, &base, &segments, value.into_owned());
    }
    Ok(root)
}

/// Inserts one pair; PHP semantics: a scalar on the way is replaced by a map, the last value wins.
fn insert(root: &mut MapNode, base: &str, segments: &[&str], value: String) {
    let mut map = root;
    let mut key: String = base.to_owned();
    for seg in segments {
        map.note_key(&key);
        let child = map
            .children
            .entry(key)
            .or_insert_with(|| Node::Map(MapNode::default()));
        if let Node::Scalar(_) = child {
            *child = Node::Map(MapNode::default());
        }
        let Node::Map(next) = child else {
            unreachable!("just made a map")
        };
        map = next;
        key = if seg.is_empty() {
            // `a[]=` appends at PHP's next free index; PHP drops the pair when none is left.
            if map.next_index == i64::MAX {
                return;
            }
            map.next_index.to_string()
        } else {
            (*seg).to_owned()
        };
    }
    map.note_key(&key);
    map.children.insert(key, Node::Scalar(value));
}

/// Builds the tree from a JSON body. The top level must be an object.
pub(crate) fn from_json(
    body: &[u8],
    max_depth: usize,
    max_keys: usize,
) -> Result<MapNode, DecodeError> {
    let state = JsonState {
        keys: Cell::new(0),
        max_keys,
        max_depth,
        violation: Cell::new(None),
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let node = match (NodeSeed {
        state: &state,
        depth: 0,
    })
    .deserialize(&mut de)
    {
        Ok(node) => node,
        Err(e) => {
            if let Some(v) = state.violation.take() {
                return Err(v);
            }
            if e.to_string().contains("recursion limit") {
                return Err(DecodeError::TooDeep { limit: max_depth });
            }
            return Err(DecodeError::Json {
                line: e.line(),
                column: e.column(),
            });
        }
    };
    if let Err(e) = de.end() {
        return Err(DecodeError::Json {
            line: e.line(),
            column: e.column(),
        });
    }
    match node {
        Node::Map(m) => Ok(m),
        Node::Scalar(_) => Err(DecodeError::NotAnObject),
    }
}

struct JsonState {
    keys: Cell<usize>,
    max_keys: usize,
    max_depth: usize,
    violation: Cell<Option<DecodeError>>,
}

impl JsonState {
    fn fail<E: serde::de::Error>(&self, err: DecodeError) -> E {
        let msg = err.to_string();
        self.violation.set(Some(err));
        E::custom(msg)
    }

    fn count<E: serde::de::Error>(&self) -> Result<(), E> {
        let n = self.keys.get() + 1;
        self.keys.set(n);
        if n > self.max_keys {
            return Err(self.fail(DecodeError::TooManyKeys {
                limit: self.max_keys,
            }));
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct NodeSeed<'s> {
    state: &'s JsonState,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = Node;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
}

impl NodeSeed<'_> {
    fn enter<E: serde::de::Error>(self) -> Result<Self, E> {
        let depth = self.depth + 1;
        if depth > self.state.max_depth {
            return Err(self.state.fail(DecodeError::TooDeep {
                limit: self.state.max_depth,
            }));
        }
        Ok(NodeSeed {
            state: self.state,
            depth,
        })
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        // PHP's http_build_query sends true/false as 1/0.
        Ok(Node::Scalar(if v { "1" } else { "0" }.to_owned()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(float_to_string(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(v))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        // PHP sends null as an empty value.
        Ok(Node::Scalar(String::new()))
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar(String::new()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let inner = self.enter()?;
        let mut map = MapNode::default();
        let mut i: i64 = 0;
        while let Some(node) = seq.next_element_seed(inner)? {
            self.state.count()?;
            let key = i.to_string();
            map.note_key(&key);
            map.children.insert(key, node);
            i += 1;
        }
        Ok(Node::Map(map))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Node, A::Error> {
        let inner = self.enter()?;
        let mut map = MapNode::default();
        while let Some(key) = access.next_key::<String>()? {
            self.state.count()?;
            let node = access.next_value_seed(inner)?;
            map.note_key(&key);
            map.children.insert(key, node);
        }
        Ok(Node::Map(map))
    }
}

/// A JSON number as PHP would print it: integral values without a fraction.
pub(crate) fn float_to_string(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar<'a>(m: &'a MapNode, path: &[&str]) -> Option<&'a str> {
        let mut node = m.children.get(path[0])?;
        for p in &path[1..] {
            match node {
                Node::Map(m) => node = m.children.get(*p)?,
                Node::Scalar(_) => return None,
            }
        }
        match node {
            Node::Scalar(s) => Some(s),
            Node::Map(_) => None,
        }
    }

    #[test]
    fn php_keys() {
        let m = from_form(
            b"a%5Bb%5D%5B0%5D=x+y&c[]=1&c[]=2&c[7]=3&c[]=4&d.e=5&f[g=6",
            32,
            100,
        )
        .unwrap();
        assert_eq!(scalar(&m, &["a", "b", "0"]), Some("x y"));
        assert_eq!(scalar(&m, &["c", "0"]), Some("1"));
        assert_eq!(scalar(&m, &["c", "1"]), Some("2"));
        assert_eq!(scalar(&m, &["c", "8"]), Some("4"));
        assert_eq!(scalar(&m, &["d_e"]), Some("5"));
        assert_eq!(scalar(&m, &["f_g"]), Some("6"));
    }

    #[test]
    fn last_value_wins() {
        let m = from_form(b"a=1&a[b]=2", 32, 100).unwrap();
        assert_eq!(scalar(&m, &["a", "b"]), Some("2"));
        let m = from_form(b"a[b]=2&a=1", 32, 100).unwrap();
        assert_eq!(scalar(&m, &["a"]), Some("1"));
    }

    #[test]
    fn int_keys() {
        assert_eq!(php_int_key("0"), Some(0));
        assert_eq!(php_int_key("-3"), Some(-3));
        assert_eq!(php_int_key("01"), None);
        assert_eq!(php_int_key("-0"), None);
        assert_eq!(php_int_key("99999999999999999999"), None);
        assert_eq!(php_int_key(""), None);
    }

    #[test]
    fn json_tree() {
        let m = from_json(br#"{"a":[true,null,1.0,2.5,{"b":"c"}]}"#, 32, 100).unwrap();
        assert_eq!(scalar(&m, &["a", "0"]), Some("1"));
        assert_eq!(scalar(&m, &["a", "1"]), Some(""));
        assert_eq!(scalar(&m, &["a", "2"]), Some("1"));
        assert_eq!(scalar(&m, &["a", "3"]), Some("2.5"));
        assert_eq!(scalar(&m, &["a", "4", "b"]), Some("c"));
    }
}

//! The generic wire tree: both wire forms (PHP form and JSON) are first turned into a [`Node`]
//! tree, then [`crate::decode`] extracts the typed event from the tree once. So form and JSON
//! bodies behave identically.
//!
//! Limits are enforced while scanning, before anything big is built:
//! - form: the pair count is checked before each pair is inserted, and the bracket depth of a key
//!   while it is split (splitting stops at the limit), before its path is walked;
//! - JSON: a streaming `serde` visitor counts entries and depth as it goes.
//!
//! The form scanner is the hot path of the whole crate (see BENCHMARKS.md "Decoding"): one pass
//! over the body, bracket keys split in place, keys and values borrowed from the body unless
//! they have to be decoded. The tree borrows from the body (`Node<'a>`).
//!
//! Nothing here recurses over untrusted depth except `Drop` and the JSON visitor, both bounded by
//! [`MAX_DEPTH_CAP`].

use crate::error::DecodeError;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;

/// Hard cap on `Limits::max_depth`: tree depth is bounded by this whatever the caller asks
/// (it keeps recursive drops and serde_json's own recursion safe).
pub(crate) const MAX_DEPTH_CAP: usize = 100;

/// A wire value: every scalar is a string (as PHP sends it), containers are maps whose keys
/// are the wire keys (list indices are decimal keys).
///
/// Keys and scalars borrow from the body whenever the wire bytes are the text itself (no
/// percent-escape, no `+`, valid UTF-8; for JSON: no backslash escape), so most of a body is
/// never copied into the tree.
#[derive(Debug)]
pub(crate) enum Node<'a> {
    Scalar(Cow<'a, str>),
    Map(MapNode<'a>),
}

/// A container node.
#[derive(Debug, Default)]
pub(crate) struct MapNode<'a> {
    pub(crate) children: Children<'a>,
    /// PHP's "next free integer key" for `a[]=` appends.
    next_index: i64,
}

/// The children of a map: unique keys in insertion order.
///
/// Hand-rolled instead of a `BTreeMap`/`HashMap`: wire maps are tiny (2–12 keys), where a
/// linear scan over a `Vec` beats hashing or tree walks, and it needs one allocation instead
/// of one per node. A map that grows past [`INDEX_AT`] keys (only hostile bodies do) gets a
/// `HashMap` index, so inserting and looking up stay O(1) and 10 000 keys in one map cost
/// linear work.
#[derive(Debug, Default)]
pub(crate) struct Children<'a> {
    entries: Vec<(Cow<'a, str>, Node<'a>)>,
    // Boxed on purpose: 8 bytes instead of 48 in every map (the index exists only in maps of
    // hostile bodies), which keeps tree entries small.
    #[allow(clippy::box_collection)]
    index: Option<Box<HashMap<Cow<'a, str>, usize>>>,
}

/// Number of keys from which a map keeps a hash index.
const INDEX_AT: usize = 16;

impl<'a> Children<'a> {
    const EMPTY: Children<'static> = Children {
        entries: Vec::new(),
        index: None,
    };

    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.entries.iter().position(|(k, _)| k.as_ref() == key),
        }
    }

    /// Appends a child whose key is known not to be present yet; returns its position.
    fn push_new(&mut self, key: Cow<'a, str>, node: Node<'a>) -> usize {
        let i = self.entries.len();
        if i == 0 {
            // Wire maps have 1–12 keys (`auth` has 12): one allocation, no regrowth, for
            // the sizes Bitrix24 sends.
            self.entries.reserve(12);
        }
        if let Some(index) = &mut self.index {
            index.insert(key.clone(), i);
        } else if i + 1 >= INDEX_AT {
            let mut index = HashMap::with_capacity(2 * INDEX_AT);
            for (j, (k, _)) in self.entries.iter().enumerate() {
                index.insert(k.clone(), j);
            }
            index.insert(key.clone(), i);
            self.index = Some(Box::new(index));
        }
        self.entries.push((key, node));
        i
    }

    /// Inserts or replaces (the last value wins, the key keeps its first position).
    fn insert(&mut self, key: Cow<'a, str>, node: Node<'a>) {
        match self.position(&key) {
            Some(i) => self.entries[i].1 = node,
            None => {
                self.push_new(key, node);
            }
        }
    }

    /// The child under exactly `key` (generic like `BTreeMap::get`).
    #[cfg(test)]
    pub(crate) fn get<Q: AsRef<str> + ?Sized>(&self, key: &Q) -> Option<&Node<'a>> {
        self.position(key.as_ref()).map(|i| &self.entries[i].1)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Node<'a>)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v))
    }
}

impl<'a> MapNode<'a> {
    /// An empty map, for `static`s.
    pub(crate) const EMPTY: MapNode<'static> = MapNode {
        children: Children::EMPTY,
        next_index: 0,
    };

    /// Whether the map has no children.
    pub(crate) fn is_empty(&self) -> bool {
        self.children.entries.is_empty()
    }

    /// Exact key first, then an ASCII case-insensitive match (the smallest such key in byte
    /// order when several differ only in case, as a sorted map would give).
    pub(crate) fn get(&self, key: &str) -> Option<(&str, &Node<'a>)> {
        if let Some(i) = self.children.position(key) {
            let (k, v) = &self.children.entries[i];
            return Some((k.as_ref(), v));
        }
        self.children
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .min_by(|a, b| a.0.cmp(b.0))
    }

    /// The children with canonical integer keys, sorted by index (gaps allowed). Other keys
    /// are ignored.
    pub(crate) fn list_items(&self) -> Vec<(&str, &Node<'a>)> {
        let mut items: Vec<(&str, &Node<'a>)> = Vec::with_capacity(self.children.entries.len());
        let mut sorted = true;
        let mut last = i64::MIN;
        for (k, v) in self.children.iter() {
            if let Some(i) = php_int_key(k) {
                sorted &= items.is_empty() || i > last;
                last = i;
                items.push((k, v));
            }
        }
        // Wire lists come in index order; only sort (re-parsing the keys) when they do not.
        if !sorted {
            items.sort_by_cached_key(|(k, _)| php_int_key(k));
        }
        items
    }

    fn note_key(&mut self, key: &str) {
        if let Some(i) = php_int_key(key) {
            if i >= self.next_index {
                self.next_index = i.saturating_add(1);
            }
        }
    }

    /// The map under `key`, created (or replacing a scalar: PHP semantics) when needed.
    fn child_map(&mut self, key: Cow<'a, str>) -> &mut MapNode<'a> {
        self.note_key(&key);
        let i = match self.children.position(&key) {
            Some(i) => i,
            None => self.children.push_new(key, Node::Map(MapNode::default())),
        };
        let child = &mut self.children.entries[i].1;
        if let Node::Scalar(_) = child {
            *child = Node::Map(MapNode::default());
        }
        match child {
            Node::Map(m) => m,
            Node::Scalar(_) => unreachable!("just made a map"),
        }
    }
}

/// PHP turns a key into an integer key when it is a canonical decimal integer that fits.
pub(crate) fn php_int_key(key: &str) -> Option<i64> {
    // Fast reject: most keys are names.
    match key.as_bytes().first() {
        Some(b'0'..=b'9' | b'-') => {}
        _ => return None,
    }
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

/// Splits a (percent-decoded) PHP form key into its base name and bracket segments, like
/// PHP's `php_register_variable_ex`. Returns `None` for keys PHP drops (empty base name), and
/// stops early with `Err` once there are more than `max_segments` segments.
///
/// This is the general path; [`split_raw_key`] handles the common shape without decoding.
fn split_key<'k>(
    key: &'k str,
    max_segments: usize,
    segments: &mut Vec<Cow<'k, str>>,
) -> Result<Option<()>, ()> {
    // PHP skips leading spaces of the name.
    let key = key.trim_start_matches(' ');
    let (base, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if base.is_empty() {
        return Ok(None);
    }
    // In the base name PHP turns ' ' and '.' into '_'.
    let mut base: String = base
        .chars()
        .map(|c| if c == ' ' || c == '.' { '_' } else { c })
        .collect();
    let first = segments.len();
    segments.push(Cow::Borrowed(""));
    while let Some(inner) = rest.strip_prefix('[') {
        match inner.find(']') {
            Some(end) => {
                if segments.len() - first > max_segments {
                    return Err(());
                }
                segments.push(Cow::Borrowed(&inner[..end]));
                rest = &inner[end + 1..];
            }
            None => {
                if segments.len() - first == 1 {
                    // An unmatched first '[' becomes '_' and the rest is part of the name.
                    base.push('_');
                    base.push_str(inner);
                }
                break;
            }
        }
        // Anything after a ']' that does not open a new segment is ignored.
    }
    segments[first] = Cow::Owned(base);
    Ok(Some(()))
}

/// Byte classes for the form scanner (one table lookup per byte in the hot loops).
///
/// Hand-rolled instead of `form_urlencoded::parse` + a generic splitter: that crate decodes
/// every key and value byte by byte into a fresh `Vec` and copies again for lossy UTF-8, and
/// the key then has to be scanned a second time for brackets. Here one pass over the body
/// finds the pairs, splits bracket keys in place and borrows everything that needs no
/// decoding. (No dependency such as `memchr` is added: the pieces scanned are short, and the
/// long ones are percent-encoded text that has to be decoded byte by byte anyway.)
const BASE_SPECIAL: u8 = 1; // ends or complicates a base name: = & [ % + space . and >= 0x80
const SEG_SPECIAL: u8 = 2; // ends or complicates a bracket segment: = & [ ] % + and >= 0x80
const VALUE_SPECIAL: u8 = 4; // ends a value or needs decoding: & % +

const fn byte_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0x80;
    while b < 256 {
        t[b] = BASE_SPECIAL | SEG_SPECIAL;
        b += 1;
    }
    t[b'=' as usize] = BASE_SPECIAL | SEG_SPECIAL;
    t[b'&' as usize] = BASE_SPECIAL | SEG_SPECIAL | VALUE_SPECIAL;
    t[b'%' as usize] = BASE_SPECIAL | SEG_SPECIAL | VALUE_SPECIAL;
    t[b'+' as usize] = BASE_SPECIAL | SEG_SPECIAL | VALUE_SPECIAL;
    t[b'[' as usize] = BASE_SPECIAL | SEG_SPECIAL;
    t[b']' as usize] = SEG_SPECIAL;
    t[b' ' as usize] = BASE_SPECIAL;
    t[b'.' as usize] = BASE_SPECIAL;
    t
}

static CLASS: [u8; 256] = byte_classes();

/// `%XX` hex digit values; 0xFF for a non-hex byte.
const fn hex_values() -> [u8; 256] {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
}

static HEX: [u8; 256] = hex_values();

/// Whether `body[i..]` starts with `%5B` (`open`) or `%5D` (any case).
#[inline]
fn bracket_escape(body: &[u8], i: usize, open: bool) -> bool {
    let want = if open { b'B' } else { b'D' };
    i + 2 < body.len() && body[i + 1] == b'5' && (body[i + 2] & !0x20) == want
}

/// The end of the key starting at or before `i`: the first `=` or `&` (or the end).
#[inline]
fn key_end(body: &[u8], mut i: usize) -> usize {
    while i < body.len() && body[i] != b'=' && body[i] != b'&' {
        i += 1;
    }
    i
}

/// The body as text, for borrowing slices from it; `None` when it is not valid UTF-8 (then
/// slices are checked one by one).
#[derive(Clone, Copy)]
struct Source<'a> {
    bytes: &'a [u8],
    text: Option<&'a str>,
}

impl<'a> Source<'a> {
    #[inline]
    fn str(&self, a: usize, b: usize) -> Option<&'a str> {
        match self.text {
            Some(t) => t.get(a..b),
            None => std::str::from_utf8(&self.bytes[a..b]).ok(),
        }
    }
}

/// What [`scan_key`] found.
enum KeyScan {
    /// The base name and segments are on the segment stack, borrowed from the body.
    Split,
    /// More than `max_segments` segments.
    TooDeep,
    /// Not the common shape: the caller decodes the key and takes the general path.
    General,
}

/// The fast path of [`split_key`], on the raw body, for the keys Bitrix24 actually sends
/// (`data%5BMESSAGES%5D%5B0%5D%5Bim%5D%5Bchat_id%5D`): ASCII, the only escapes are bracket
/// escapes (`%5B`/`%5D`, any case, or raw brackets), no `+`, no space or `.` in the base name,
/// every `[` closed before the next one opens. For such a key the percent-decoded key's base
/// name and segments are exactly the raw bytes between the bracket tokens, so they are
/// borrowed from the body: the key is never decoded or copied.
///
/// It earns its place: with every key sent through the general path instead, a MessageAdd
/// body costs 74 % more instructions and `decode --lines` falls back to PHP's speed
/// (BENCHMARKS.md, "The CLI's decode --lines").
///
/// Returns where the key ends (the `=` or `&` after it, or the end of the body) and the
/// outcome. The base name (possibly empty) is pushed first, then the segments.
fn scan_key<'a>(
    src: Source<'a>,
    start: usize,
    max_segments: usize,
    segments: &mut Vec<Cow<'a, str>>,
) -> (usize, KeyScan) {
    let body = src.bytes;
    let n = body.len();
    let mut i = start;
    // Base name: up to the first opening bracket.
    while i < n {
        let b = body[i];
        if CLASS[b as usize] & BASE_SPECIAL == 0 {
            i += 1;
            continue;
        }
        match b {
            b'=' | b'&' | b'[' => break,
            b'%' if bracket_escape(body, i, true) => break,
            _ => return (key_end(body, i), KeyScan::General),
        }
    }
    let Some(base) = src.str(start, i) else {
        return (key_end(body, i), KeyScan::General);
    };
    segments.push(Cow::Borrowed(base));
    if base.is_empty() {
        // PHP drops the pair whatever follows.
        return (key_end(body, i), KeyScan::Split);
    }
    let mut count = 0usize;
    loop {
        // At `i`: an opening bracket, or the end of the key.
        let open = match body.get(i) {
            None | Some(b'=' | b'&') => return (i, KeyScan::Split),
            Some(b'[') => 1,
            Some(b'%') if bracket_escape(body, i, true) => 3,
            // Something after a `]` that does not open a segment: PHP ignores the rest.
            Some(_) => return (key_end(body, i), KeyScan::Split),
        };
        let seg_start = i + open;
        let mut j = seg_start;
        let close = loop {
            if j == n {
                break None;
            }
            let b = body[j];
            if CLASS[b as usize] & SEG_SPECIAL == 0 {
                j += 1;
                continue;
            }
            match b {
                b'=' | b'&' => break None,
                b']' => break Some(1),
                b'%' if bracket_escape(body, j, false) => break Some(3),
                _ => return (key_end(body, j), KeyScan::General),
            }
        };
        let Some(close) = close else {
            // An unmatched `[`: ignored after a segment; as the first one PHP makes it part
            // of the name, which the general path knows how to do.
            let scan = if count == 0 {
                KeyScan::General
            } else {
                KeyScan::Split
            };
            return (j, scan);
        };
        count += 1;
        if count > max_segments {
            return (key_end(body, j), KeyScan::TooDeep);
        }
        let Some(seg) = src.str(seg_start, j) else {
            return (key_end(body, j), KeyScan::General);
        };
        segments.push(Cow::Borrowed(seg));
        i = j + close;
    }
}

/// Percent-decodes the value starting at `body[start]` up to the next `&` into `scratch`,
/// like the `form_urlencoded` crate (and PHP): `+` is a space, `%XX` a byte, a `%` not
/// followed by two hex digits stays as it is. Returns where the value ends.
fn percent_decode_value(body: &[u8], start: usize, scratch: &mut Vec<u8>) -> usize {
    scratch.clear();
    // At most one byte out per byte in: no reallocation while decoding (the buffer is reused
    // for every value of the body, so this allocates at most once per body).
    let rest = &body[start..];
    scratch.reserve(rest.len());
    let mut i = 0;
    while i < rest.len() {
        let b = rest[i];
        if CLASS[b as usize] & VALUE_SPECIAL == 0 {
            scratch.push(b);
            i += 1;
        } else if b == b'%' {
            // `%XX`, else a literal `%`.
            let (h, l) = match rest.get(i + 1..i + 3) {
                Some(&[h, l]) => (HEX[h as usize], HEX[l as usize]),
                _ => (0xFF, 0xFF),
            };
            if h | l < 16 {
                scratch.push(h << 4 | l);
                i += 3;
            } else {
                scratch.push(b'%');
                i += 1;
            }
        } else if b == b'+' {
            scratch.push(b' ');
            i += 1;
        } else {
            // `&`: the end of the value.
            break;
        }
    }
    start + i
}

/// `scratch` as an exact-size `String` (lossy UTF-8: invalid sequences become U+FFFD).
fn owned_text(scratch: &[u8]) -> String {
    match std::str::from_utf8(scratch) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(scratch).into_owned(),
    }
}

/// Borrows `body[a..b]` as text (lossy UTF-8 copy when it is not valid).
fn plain_text(src: Source<'_>, a: usize, b: usize) -> Cow<'_, str> {
    match src.str(a, b) {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(String::from_utf8_lossy(&src.bytes[a..b]).into_owned()),
    }
}

/// Builds the tree from a form body with PHP `parse_str` semantics.
///
/// Pairs are split on `&`, key and value on the first `=`; empty keys are skipped. The pair
/// count is checked before each pair is inserted and the segment count while the key is
/// split, so a hostile body costs work linear in its size.
pub(crate) fn from_form(
    body: &[u8],
    max_depth: usize,
    max_keys: usize,
) -> Result<MapNode<'_>, DecodeError> {
    let src = Source {
        bytes: body,
        text: std::str::from_utf8(body).ok(),
    };
    let n = body.len();
    let mut root = MapNode::default();
    let mut count = 0usize;
    // Reused for every pair: the base name and bracket segments of the current key, and the
    // percent-decoding buffer.
    let mut segments: Vec<Cow<'_, str>> = Vec::with_capacity(8);
    let mut scratch: Vec<u8> = Vec::new();
    let max_segments = max_depth.saturating_sub(1);
    let mut pos = 0;
    while pos < n {
        let start = pos;
        if body[start] == b'&' || body[start] == b'=' {
            // An empty key: skip the pair.
            pos = start + 1;
            if body[start] == b'=' {
                while pos < n && body[pos] != b'&' {
                    pos += 1;
                }
                pos += 1;
            }
            continue;
        }
        count += 1;
        if count > max_keys {
            return Err(DecodeError::TooManyKeys { limit: max_keys });
        }
        segments.clear();
        let (key_end, scan) = scan_key(src, start, max_segments, &mut segments);
        // The value: up to the next `&`. It is decoded right away when it needs decoding
        // (into the scratch buffer: only kept if the key is), else borrowed.
        let value_start = if key_end < n && body[key_end] == b'=' {
            key_end + 1
        } else {
            key_end
        };
        let special = body[value_start..]
            .iter()
            .position(|&b| CLASS[b as usize] & VALUE_SPECIAL != 0)
            .map_or(n, |p| value_start + p);
        let (value_end, value_plain) = if special == n || body[special] == b'&' {
            (special, true)
        } else {
            (percent_decode_value(body, value_start, &mut scratch), false)
        };
        pos = value_end + 1;
        match scan {
            KeyScan::TooDeep => return Err(DecodeError::TooDeep { limit: max_depth }),
            KeyScan::Split => {}
            KeyScan::General => {
                // Rare: decode the key in its own buffer (the scratch buffer may hold the
                // value) and split it the general way; the segments become owned.
                let mut raw_key = Vec::new();
                percent_decode_value(&body[..key_end], start, &mut raw_key);
                let key = String::from_utf8_lossy(&raw_key);
                let mut split: Vec<Cow<'_, str>> = Vec::new();
                match split_key(&key, max_segments, &mut split) {
                    Err(()) => return Err(DecodeError::TooDeep { limit: max_depth }),
                    Ok(None) => continue,
                    Ok(Some(())) => {}
                }
                segments.clear();
                segments.extend(split.into_iter().map(|s| Cow::Owned(s.into_owned())));
            }
        }
        if segments[0].is_empty() {
            // PHP drops keys with an empty base name.
            continue;
        }
        if segments.len() > max_depth {
            return Err(DecodeError::TooDeep { limit: max_depth });
        }
        let value = if value_plain {
            plain_text(src, value_start, value_end)
        } else {
            Cow::Owned(owned_text(&scratch))
        };
        insert(&mut root, &mut segments, value);
    }
    Ok(root)
}

/// Inserts one pair (`path[0]` is the base name, then the bracket segments); PHP semantics:
/// a scalar on the way is replaced by a map, the last value wins, `[]` appends.
fn insert<'a>(root: &mut MapNode<'a>, path: &mut [Cow<'a, str>], value: Cow<'a, str>) {
    let Some((base, segments)) = path.split_first_mut() else {
        return;
    };
    let mut map = root;
    let mut key = std::mem::take(base);
    for seg in segments {
        map = map.child_map(key);
        let seg = std::mem::take(seg);
        key = if seg.is_empty() {
            // `a[]=` appends at PHP's next free index; PHP drops the pair when none is left.
            if map.next_index == i64::MAX {
                return;
            }
            Cow::Owned(map.next_index.to_string())
        } else {
            seg
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
) -> Result<MapNode<'_>, DecodeError> {
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
    type Value = Node<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
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
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node<'de>, E> {
        // PHP's http_build_query sends true/false as 1/0.
        Ok(Node::Scalar(Cow::Borrowed(if v { "1" } else { "0" })))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node<'de>, E> {
        Ok(Node::Scalar(Cow::Owned(v.to_string())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
        Ok(Node::Scalar(Cow::Owned(v.to_string())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node<'de>, E> {
        Ok(Node::Scalar(Cow::Owned(float_to_string(v))))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Scalar(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node<'de>, E> {
        Ok(Node::Scalar(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node<'de>, E> {
        Ok(Node::Scalar(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        // PHP sends null as an empty value.
        Ok(Node::Scalar(Cow::Borrowed("")))
    }
    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Scalar(Cow::Borrowed("")))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let inner = self.enter()?;
        let mut map = MapNode::default();
        let mut i: i64 = 0;
        while let Some(node) = seq.next_element_seed(inner)? {
            self.state.count()?;
            // Index keys are unique by construction: no lookup needed.
            map.children.push_new(Cow::Owned(i.to_string()), node);
            i += 1;
        }
        map.next_index = i;
        Ok(Node::Map(map))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Node<'de>, A::Error> {
        let inner = self.enter()?;
        let mut map = MapNode::default();
        while let Some(key) = access.next_key_seed(KeySeed)? {
            self.state.count()?;
            let node = access.next_value_seed(inner)?;
            map.note_key(&key);
            map.children.insert(key, node);
        }
        Ok(Node::Map(map))
    }
}

/// A JSON object key, borrowed from the body when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
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

    /// The reference: PHP `parse_str` done the plain way — split pairs, percent-decode the
    /// whole key and value (lossy UTF-8), split the decoded key, insert. The scanner's fast
    /// paths (bracket keys split in place, borrowed slices) must build the same tree.
    fn reference(body: &[u8], max_depth: usize) -> Result<MapNode<'static>, DecodeError> {
        let mut root = MapNode::default();
        for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let eq = pair.iter().position(|&b| b == b'=').unwrap_or(pair.len());
            let (k, v) = (&pair[..eq], pair.get(eq + 1..).unwrap_or_default());
            if k.is_empty() {
                continue;
            }
            let mut buf = Vec::new();
            percent_decode_value(k, 0, &mut buf);
            let key = String::from_utf8_lossy(&buf).into_owned();
            percent_decode_value(v, 0, &mut buf);
            let value = String::from_utf8_lossy(&buf).into_owned();
            let mut segments = Vec::new();
            match split_key(&key, max_depth.saturating_sub(1), &mut segments) {
                Err(()) => return Err(DecodeError::TooDeep { limit: max_depth }),
                Ok(None) => continue,
                Ok(Some(())) => {}
            }
            if segments.len() > max_depth {
                return Err(DecodeError::TooDeep { limit: max_depth });
            }
            let mut owned: Vec<Cow<'static, str>> = segments
                .into_iter()
                .map(|s| Cow::Owned(s.into_owned()))
                .collect();
            insert(&mut root, &mut owned, Cow::Owned(value));
        }
        Ok(root)
    }

    #[test]
    fn scanner_matches_the_plain_algorithm() {
        // Keys and values built from pieces that hit every branch of the scanner: raw and
        // escaped brackets in any case, unmatched brackets, `+`, spaces and dots, stray `%`,
        // escapes of brackets inside segments, non-ASCII raw and escaped, invalid UTF-8.
        const PIECES: &[&str] = &[
            "a", "data", "MESSAGES", "0", "01", "-1", "[", "]", "%5B", "%5b", "%5D", "%5d", "[]",
            "%5B%5D", "+", " ", ".", "%", "%2", "%41", "%2E", "%20", "%5", "Ж", "%D0%96", "%FF",
            "ÿ", "=", "%3D", "%26", "_", "x.y", "%5B0%5D", "[a][b]", "]]", "[[",
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..20_000 {
            let mut body = String::new();
            for _ in 0..1 + next(4) {
                if !body.is_empty() {
                    body.push('&');
                }
                for _ in 0..next(8) {
                    body.push_str(PIECES[next(PIECES.len())]);
                }
                if next(4) > 0 {
                    body.push('=');
                    for _ in 0..next(4) {
                        body.push_str(PIECES[next(PIECES.len())]);
                    }
                }
            }
            let mut body = body.into_bytes();
            if let Some(i) = body.iter().position(|&b| b == 0xC3) {
                body[i + 1] = 0xFF; // "ÿ" is C3 BF: make those bodies invalid UTF-8
            }
            for depth in [32, 3, 1] {
                let ours = from_form(&body, depth, 100).map(|m| format!("{m:?}"));
                let plain = reference(&body, depth).map(|m| format!("{m:?}"));
                assert_eq!(
                    ours,
                    plain,
                    "{:?} depth {depth}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
    }
}

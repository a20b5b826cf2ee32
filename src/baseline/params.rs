//! What a tool's parameters normally look like. Arguments are flattened to dotted paths
//! (`filter.state`; an array is summarised by its length, `items.#len`), and each path learns
//! by the kind of value it carries:
//! - numbers: moments, quantile markers, clean range and drift ([`NumberStats`]: a tail
//!   model on a scale chosen from the data);
//! - strings, booleans and null: the set of values seen, while there are few of them
//!   ([`ValueSet`]); past [`Limits::values`] distinct values (or one longer than
//!   [`Limits::value_len`]) the path is free text and learns its shape instead ([`TextShape`]:
//!   length and character classes).
//!
//! **Memory is bounded** by the policy's [`Limits`]: at most `keys_per_tool` paths per tool
//! (and `keys` per tenant), `values` values of at most `value_len` bytes per path, paths of at
//! most `path_len` bytes, nesting at most `depth` deep. A tool whose keys are data (ids as
//! object keys) fills its paths and then stops learning new ones.
//!
//! Strings holding a redaction marker are skipped: `secret_in_payload` has reported them, and
//! a fingerprint is not a value worth learning.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::exact_f64;
use super::limits::Limits;
use super::stats::NumberStats;
use super::trust::{Trust, novelty};

/// Marks a string the redactor rewrote.
const REDACTED: &str = "[REDACTED:";

/// How parameters are judged. Part of the detector's config; the memory bounds are
/// [`Limits`], beside it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ParamsConfig {
    /// Calls of a tool before a key it has never had is `novel_param_key`: until then the
    /// tool is still showing its optional parameters.
    pub key_warmup_calls: u64,
    /// Samples of a number (or of a free-text length) before its model is trusted. Below
    /// about 100 the markers on a tail rest on a handful of values and no tail model is
    /// calibrated (`baseline::stats`' test `young_streams_judged_as_the_detector_does`).
    pub min_samples: u64,
    /// A number beyond its clean range is `param_out_of_range` when its model puts the
    /// probability of a value at least that extreme below `alpha`: the false-alarm rate per
    /// judged value of a stream whose tail is as heavy as the model assumes, and an upper
    /// bound for lighter ones (see `baseline::stats`).
    pub alpha: f64,
    /// Weighted samples without a new value before a value set is stable and a new value is
    /// `novel_param_value`; likewise without a new character class before a free-text path's
    /// classes are, and a new one is `param_out_of_range`.
    pub stable_after: f64,
    /// A tenant's tool map, a tool's keys and a parameter's value set are settled, and
    /// something new in them is news, only while the estimated probability of something new
    /// (`trust::novelty`: things seen in one hour only, over the tenant's hours of use for the
    /// tool map, over the tool's calls or the path's samples for keys and values) is at most
    /// this. 0.05 takes 18 hours of use with nothing rare seen.
    pub novelty_rate: f64,
}

impl Default for ParamsConfig {
    fn default() -> Self {
        ParamsConfig {
            key_warmup_calls: 50,
            min_samples: 100,
            alpha: 1e-6,
            stable_after: 100.0,
            novelty_rate: 0.05,
        }
    }
}

/// One scalar found while flattening.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Leaf<'a> {
    /// A number, or an array's length (at `path.#len`).
    Number(f64),
    Text(&'a str),
    /// `true`, `false` or `null`: categorical by nature.
    Flag(&'static str),
}

impl Leaf<'_> {
    /// The value as a category, for value sets.
    pub fn category(&self) -> Option<&str> {
        match self {
            Leaf::Number(_) => None,
            Leaf::Text(s) => Some(s),
            Leaf::Flag(s) => Some(s),
        }
    }
}

/// String equality for the short strings paths and values are: lengths first, then the bytes
/// eight at a time, inline. `==` calls `memcmp` for every comparison, which costs more than
/// the comparison itself at these lengths (it was a tenth of the hot path's time).
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let (mut a_words, mut b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut a_words).zip(&mut b_words) {
        if u64::from_ne_bytes(x.try_into().unwrap_or_default()) != u64::from_ne_bytes(y.try_into().unwrap_or_default())
        {
            return false;
        }
    }
    a_words.remainder().iter().zip(b_words.remainder()).all(|(x, y)| x == y)
}

/// True for a string the redactor rewrote (in whole or in part).
pub fn is_redacted(s: &str) -> bool {
    // A byte scan first: most strings have no '[' and skip the substring search's setup.
    s.as_bytes().contains(&b'[') && s.contains(REDACTED)
}

/// Calls `visit(path, leaf)` for every scalar of a params object, in key order, without
/// allocating per leaf: one path buffer is extended and truncated as the walk goes. Paths
/// longer than `limits.path_len` and objects deeper than `limits.depth` are skipped.
pub fn flatten(params: &Value, limits: &Limits, mut visit: impl FnMut(&str, Leaf<'_>)) {
    if let Value::Object(map) = params {
        let mut path = String::with_capacity(64);
        walk_object(map, &mut path, 0, limits, &mut visit);
    }
}

fn walk_object(
    map: &Map<String, Value>,
    path: &mut String,
    depth: usize,
    limits: &Limits,
    visit: &mut impl FnMut(&str, Leaf<'_>),
) {
    for (key, value) in map {
        let len = path.len();
        if len > 0 {
            path.push('.');
        }
        path.push_str(key);
        if path.len() <= limits.path_len {
            walk_value(value, path, depth, limits, visit);
        }
        path.truncate(len);
    }
}

fn walk_value(value: &Value, path: &mut String, depth: usize, limits: &Limits, visit: &mut impl FnMut(&str, Leaf<'_>)) {
    match value {
        Value::Object(map) if depth + 1 < limits.depth => walk_object(map, path, depth + 1, limits, visit),
        Value::Object(_) => {}
        Value::Array(items) => {
            let len = path.len();
            path.push_str(".#len");
            visit(path, Leaf::Number(items.len() as f64));
            path.truncate(len);
        }
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                visit(path, Leaf::Number(x));
            }
        }
        Value::String(s) => visit(path, Leaf::Text(s)),
        Value::Bool(b) => visit(path, Leaf::Flag(if *b { "true" } else { "false" })),
        Value::Null => visit(path, Leaf::Flag("null")),
    }
}

/// Every path of one tool.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ParamsBaseline {
    /// Sorted by path: a binary search finds a path, and snapshots are byte-stable.
    paths: Vec<(Box<str>, PathStats)>,
}

/// What one path has shown. Kinds are boxed and created on first use: most paths carry one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PathStats {
    /// The key's own novelty: `novel_param_key` until trusted.
    pub key: Trust,
    /// Observations of this path, every kind and weight.
    pub samples: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<Box<NumberStats>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Box<ValueSet>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Box<TextShape>>,
}

impl ParamsBaseline {
    /// Folds one call's params in. A new path is learned while the tool has fewer than
    /// `limits.keys_per_tool` and `room` (what the tenant's `limits.keys` leaves) is not used
    /// up; returns the paths added and the new paths kept out.
    pub fn observe(&mut self, params: &Value, hour: i64, weight: f64, limits: &Limits, room: usize) -> (usize, usize) {
        let mut hint = 0;
        let (mut added, mut dropped) = (0, 0);
        flatten(params, limits, |path, leaf| {
            let found = self.position(path, hint);
            let stats = match found {
                Ok(i) => {
                    hint = i + 1;
                    let stats = &mut self.paths[i].1;
                    stats.key.observe(hour, weight);
                    stats
                }
                Err(i) if self.paths.len() >= limits.keys_per_tool || added >= room => {
                    hint = i;
                    dropped += 1;
                    return;
                }
                Err(i) => {
                    hint = i + 1;
                    added += 1;
                    let stats = PathStats {
                        key: Trust::new(hour, weight),
                        samples: 0,
                        number: None,
                        values: None,
                        text: None,
                    };
                    // Exact growth: a tool's paths settle early, and slack would stay forever.
                    self.paths.reserve_exact(1);
                    self.paths.insert(i, (path.into(), stats));
                    &mut self.paths[i].1
                }
            };
            stats.observe(leaf, hour, weight, limits);
        });
        (added, dropped)
    }

    /// Learns a call a person marked a false positive, on top of the reduced weight it was
    /// first learned with (`learned`): its keys, values and character classes become trusted,
    /// and its numbers count with the rest of a full weight.
    pub fn absorb(&mut self, params: &Value, learned: f64, limits: &Limits) {
        let extra = (1.0 - learned).clamp(0.0, 1.0);
        flatten(params, limits, |path, leaf| {
            if let Ok(i) = self.position(path, 0) {
                self.paths[i].1.absorb(leaf, extra);
            }
        });
    }

    /// Paths imported from a reviewed baseline (the first `max_paths`, by path).
    pub fn seeded(paths: impl IntoIterator<Item = (String, PathStats)>, max_paths: usize) -> Self {
        let mut paths: Vec<(Box<str>, PathStats)> = paths.into_iter().map(|(p, s)| (p.into_boxed_str(), s)).collect();
        paths.sort_by(|a, b| a.0.cmp(&b.0));
        paths.dedup_by(|a, b| a.0 == b.0);
        paths.truncate(max_paths);
        ParamsBaseline { paths }
    }

    pub fn path(&self, path: &str) -> Option<&PathStats> {
        self.position(path, 0).ok().map(|i| &self.paths[i].1)
    }

    /// [`Self::path`] for a walk in [`flatten`] order: `hint` is where the previous path was
    /// found, plus one. Flattening visits keys nearly in sorted order, so the next path is
    /// usually right there and one comparison replaces a binary search.
    pub fn path_after(&self, path: &str, hint: &mut usize) -> Option<&PathStats> {
        let found = self.position(path, *hint);
        *hint = found.map_or_else(|i| i, |i| i + 1);
        found.ok().map(|i| &self.paths[i].1)
    }

    fn position(&self, path: &str, hint: usize) -> Result<usize, usize> {
        match self.paths.get(hint) {
            Some((p, _)) if same(p, path) => Ok(hint),
            _ => self.paths.binary_search_by(|(p, _)| (**p).cmp(path)),
        }
    }

    /// Every path, in order.
    pub fn paths(&self) -> impl Iterator<Item = (&str, &PathStats)> {
        self.paths.iter().map(|(p, s)| (&**p, s))
    }

    /// How many paths are learned.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Heap bytes held, approximately (allocations at their capacity, allocator overhead not
    /// counted): the figure behind "memory per (tenant, tool)".
    pub fn heap_bytes(&self) -> usize {
        self.paths.capacity() * std::mem::size_of::<(Box<str>, PathStats)>()
            + self.paths.iter().map(|(p, s)| p.len() + s.heap_bytes()).sum::<usize>()
    }
}

impl PathStats {
    fn observe(&mut self, leaf: Leaf<'_>, hour: i64, weight: f64, limits: &Limits) {
        self.samples += 1;
        match leaf {
            Leaf::Number(x) => self.number.get_or_insert_default().add(x, weight),
            Leaf::Text(s) if is_redacted(s) => {}
            Leaf::Text(_) | Leaf::Flag(_) => {
                let value = leaf.category().unwrap_or_default();
                if let Some(text) = &mut self.text {
                    text.add(value, hour, weight);
                    return;
                }
                let values = self.values.get_or_insert_default();
                if values.add(value, hour, weight, limits) == Added::Overflow {
                    let mut text = TextShape::seeded(values);
                    text.add(value, hour, weight);
                    self.text = Some(Box::new(text));
                    self.values = None;
                }
            }
        }
    }

    fn absorb(&mut self, leaf: Leaf<'_>, extra: f64) {
        self.key.absorb();
        match leaf {
            Leaf::Number(x) => {
                if let Some(number) = &mut self.number {
                    number.add(x, extra);
                }
            }
            Leaf::Text(s) if is_redacted(s) => {}
            Leaf::Text(_) | Leaf::Flag(_) => {
                let value = leaf.category().unwrap_or_default();
                if let Some(text) = &mut self.text {
                    text.absorb(value, extra);
                } else if let Some(values) = &mut self.values {
                    values.absorb(value);
                }
            }
        }
    }

    /// `number`, `category`, `text`, or `mixed` when the path has carried more than one.
    pub fn kind(&self) -> &'static str {
        match (self.number.is_some(), self.values.is_some(), self.text.is_some()) {
            (true, false, false) => "number",
            (false, true, false) => "category",
            (false, false, true) => "text",
            (false, false, false) => "empty",
            _ => "mixed",
        }
    }

    fn heap_bytes(&self) -> usize {
        let number = self.number.as_ref().map_or(0, |_| std::mem::size_of::<NumberStats>());
        let values = self.values.as_ref().map_or(0, |v| v.heap_bytes());
        let text = self.text.as_ref().map_or(0, |t| t.heap_bytes());
        number + values + text
    }
}

#[derive(Debug, PartialEq)]
enum Added {
    Kept,
    /// Not kept: the set is full of trusted values and this one raised a finding.
    Dropped,
    /// The path has more values than a set holds: it is free text.
    Overflow,
}

/// The values of a low-cardinality path, each with its trust.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ValueSet {
    /// Sorted by value.
    values: Vec<(Box<str>, Trust)>,
    /// Weighted samples since a value was last added by a clean observation: the set is
    /// stable, and new values are findings, once this reaches `stable_after`. Values added by
    /// flagged observations do not reset it, so an attacker cannot unsettle the set by
    /// sending new values.
    #[serde(with = "exact_f64")]
    since_new: f64,
}

impl ValueSet {
    fn add(&mut self, value: &str, hour: i64, weight: f64, limits: &Limits) -> Added {
        let clean = weight >= 1.0;
        match self.find(value) {
            Ok(i) => {
                self.values[i].1.observe(hour, weight);
                self.since_new += weight;
                Added::Kept
            }
            Err(_) if value.len() > limits.value_len => {
                if clean {
                    Added::Overflow
                } else {
                    Added::Dropped
                }
            }
            Err(mut i) => {
                if self.values.len() >= limits.values {
                    // Make room by forgetting the least trusted value not yet trusted: an
                    // attacker's values, which then have to start over.
                    let evict = self
                        .values
                        .iter()
                        .enumerate()
                        .filter(|(_, (_, t))| !t.is_trusted())
                        .min_by(|a, b| a.1.1.value().total_cmp(&b.1.1.value()))
                        .map(|(j, _)| j);
                    match evict {
                        Some(j) => {
                            self.values.remove(j);
                            if j < i {
                                i -= 1;
                            }
                        }
                        None if clean => return Added::Overflow,
                        None => return Added::Dropped,
                    }
                }
                self.values.reserve_exact(1);
                self.values.insert(i, (value.into(), Trust::new(hour, weight)));
                self.since_new = if clean { 0.0 } else { self.since_new + weight };
                Added::Kept
            }
        }
    }

    /// A set imported from a reviewed baseline: each value with whether it is known; stable
    /// sets start stable under `stable_after`. At most `max_values` are kept.
    pub fn seeded(
        values: impl IntoIterator<Item = (String, Trust)>,
        stable: bool,
        stable_after: f64,
        max_values: usize,
    ) -> Self {
        let mut values: Vec<(Box<str>, Trust)> = values.into_iter().map(|(v, t)| (v.into_boxed_str(), t)).collect();
        values.sort_by(|a, b| a.0.cmp(&b.0));
        values.dedup_by(|a, b| a.0 == b.0);
        values.truncate(max_values);
        ValueSet {
            values,
            since_new: if stable { stable_after } else { 0.0 },
        }
    }

    /// Trusts a value already in the set (one dropped from a full set stays out).
    fn absorb(&mut self, value: &str) {
        if let Ok(i) = self.find(value) {
            self.values[i].1.absorb();
        }
    }

    pub fn get(&self, value: &str) -> Option<&Trust> {
        self.find(value).ok().map(|i| &self.values[i].1)
    }

    /// The value's index, or where it would go. Most sets hold a handful of values: a scan
    /// that compares lengths first beats a binary search's string comparisons there.
    fn find(&self, value: &str) -> Result<usize, usize> {
        if self.values.len() <= 8 {
            if let Some(i) = self.values.iter().position(|(v, _)| same(v, value)) {
                return Ok(i);
            }
            return Err(self.values.partition_point(|(v, _)| **v < *value));
        }
        self.values.binary_search_by(|(v, _)| (**v).cmp(value))
    }

    pub fn is_stable(&self, stable_after: f64) -> bool {
        self.since_new >= stable_after
    }

    /// The estimated probability that the path's next sample is a value never seen
    /// (`trust::novelty`, Good–Turing's n1 / N), over its `samples`: singletons are counted at
    /// the grain of hours (a value repeated in its first hour is one sighting), and values an
    /// attacker showed (never trusted) are no evidence of rare ones.
    pub fn novelty(&self, samples: u64) -> f64 {
        novelty(self.values.iter().filter(|(_, t)| t.is_singleton()).count(), samples)
    }

    /// Every value with its trust, in order.
    pub fn values(&self) -> impl Iterator<Item = (&str, &Trust)> {
        self.values.iter().map(|(v, t)| (&**v, t))
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.values.capacity() * std::mem::size_of::<(Box<str>, Trust)>()
            + self.values.iter().map(|(v, _)| v.len()).sum::<usize>()
    }
}

/// Character classes of free text, one bit each.
pub const CLASSES: [&str; 11] = [
    "lowercase letters",
    "uppercase letters",
    "digits",
    "whitespace",
    "'-', '_' or '.'",
    "'/' or ':'",
    "URL punctuation (@+=%&?#~,)",
    "quotes",
    "shell or SQL metacharacters (;|$<>(){}[]\\*!^)",
    "non-ASCII characters",
    "control characters",
];

/// The class of every byte, as an index into [`CLASSES`]: a table, because free text is
/// classified twice per call (judged, then learned) and a match per byte costs four times more.
const CLASS_OF_BYTE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = match c {
            b'a'..=b'z' => 0,
            b'A'..=b'Z' => 1,
            b'0'..=b'9' => 2,
            b' ' | b'\t' | b'\n' | b'\r' => 3,
            b'-' | b'_' | b'.' => 4,
            b'/' | b':' => 5,
            b'@' | b'+' | b'=' | b'%' | b'&' | b'?' | b'#' | b'~' | b',' => 6,
            b'\'' | b'"' | b'`' => 7,
            b';' | b'|' | b'$' | b'<' | b'>' | b'(' | b')' | b'{' | b'}' | b'[' | b']' | b'\\' | b'*' | b'!' | b'^' => {
                8
            }
            0x80..=0xff => 9,
            _ => 10,
        };
        b += 1;
    }
    table
};

/// The character classes present in `s`, as a bit set over [`CLASSES`].
pub fn classes_of(s: &str) -> u16 {
    s.bytes().fold(0u16, |mask, b| mask | 1 << CLASS_OF_BYTE[b as usize])
}

/// The names of the classes in `mask`, in [`CLASSES`] order.
pub fn class_names(mask: u16) -> Vec<&'static str> {
    (0..CLASSES.len())
        .filter(|c| mask & (1 << c) != 0)
        .map(|c| CLASSES[c])
        .collect()
}

/// The shape of a free-text path: its length as a numeric stream, and which character classes
/// it is made of.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TextShape {
    pub length: NumberStats,
    /// Classes trusted (seen through a clean hour).
    classes: u16,
    /// Classes seen but not trusted yet, each with its trust.
    pending: Vec<(u8, Trust)>,
    /// Weighted samples since a clean observation last showed a class never seen before: the
    /// classes are stable, and a new one is a finding, once this reaches `stable_after` (as
    /// for a value set). Free text shows its rarer classes late (a digit in one query in ten),
    /// and a class that has not shown up in that many samples is rare enough to be news.
    #[serde(with = "exact_f64")]
    since_new: f64,
}

impl TextShape {
    /// A path that just turned out to be free text starts from the values it held: each
    /// trusted value as one clean sample of length and classes.
    fn seeded(values: &ValueSet) -> Self {
        let mut shape = TextShape::default();
        for (value, trust) in values.values() {
            if trust.is_trusted() {
                shape.length.add(value.len() as f64, 1.0);
                shape.classes |= classes_of(value);
            }
        }
        shape
    }

    fn add(&mut self, value: &str, hour: i64, weight: f64) {
        self.length.add(value.len() as f64, weight);
        let new = classes_of(value) & !self.classes;
        let mut unseen = false;
        for class in (0..CLASSES.len() as u8).filter(|c| new & (1 << c) != 0) {
            let trust = match self.pending.iter_mut().find(|(c, _)| *c == class) {
                Some((_, trust)) => {
                    trust.observe(hour, weight);
                    *trust
                }
                None => {
                    unseen = true;
                    let trust = Trust::new(hour, weight);
                    self.pending.push((class, trust));
                    trust
                }
            };
            if trust.is_trusted() {
                self.classes |= 1 << class;
                self.pending.retain(|(c, _)| *c != class);
            }
        }
        // A class first shown by a flagged observation does not unsettle the shape: an
        // attacker cannot make new classes unremarkable by sending them.
        self.since_new = if unseen && weight >= 1.0 {
            0.0
        } else {
            self.since_new + weight
        };
    }

    /// A shape imported from a reviewed baseline: its lengths and trusted classes, stable after
    /// `since_new` weighted samples without a new class.
    pub fn imported(length: NumberStats, classes: u16, since_new: f64) -> Self {
        TextShape {
            length,
            classes,
            pending: Vec::new(),
            since_new,
        }
    }

    fn absorb(&mut self, value: &str, extra: f64) {
        self.length.add(value.len() as f64, extra);
        self.classes |= classes_of(value);
        let classes = self.classes;
        self.pending.retain(|(c, _)| classes & (1 << c) == 0);
    }

    /// The trusted classes.
    pub fn classes(&self) -> u16 {
        self.classes
    }

    /// True once no new class has shown up in `stable_after` weighted samples.
    pub fn is_stable(&self, stable_after: f64) -> bool {
        self.since_new >= stable_after
    }

    /// The trust of a class seen but not yet trusted.
    pub fn pending(&self, class: u8) -> Option<&Trust> {
        self.pending.iter().find(|(c, _)| *c == class).map(|(_, t)| t)
    }

    fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.pending.capacity() * std::mem::size_of::<(u8, Trust)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const L: Limits = Limits::DEFAULT;

    #[track_caller]
    fn check_flatten(params: Value, expect: &[&str]) {
        let mut actual = Vec::new();
        flatten(&params, &L, |path, leaf| actual.push(format!("{path}={leaf:?}")));
        assert_eq!(actual, expect);
    }

    #[test]
    fn same_is_string_equality() {
        let words = [
            "",
            "a",
            "ab",
            "orders",
            "orderz",
            "invoices",
            "invoicesX",
            "filter.state",
            "filter.statf",
            "é",
            "e",
        ];
        for a in words {
            for b in words {
                assert_eq!(same(a, b), a == b, "{a:?} {b:?}");
            }
        }
        let long = "x".repeat(100);
        assert!(same(&long, &"x".repeat(100)));
        assert!(!same(&long, &format!("{}y", "x".repeat(99))));
    }

    #[test]
    fn params_flatten_to_dotted_paths_with_arrays_by_length() {
        check_flatten(
            json!({"table": "orders", "limit": 50, "filter": {"state": "open", "draft": false, "tags": ["a", "b"]},
                   "cursor": null}),
            &[
                "cursor=Flag(\"null\")",
                "filter.draft=Flag(\"false\")",
                "filter.state=Text(\"open\")",
                "filter.tags.#len=Number(2.0)",
                "limit=Number(50.0)",
                "table=Text(\"orders\")",
            ],
        );
        check_flatten(json!({}), &[]);
        check_flatten(json!([1, 2]), &[]);
    }

    #[test]
    fn deep_nesting_and_long_paths_are_cut_off() {
        let mut deep = json!(1);
        for _ in 0..20 {
            deep = json!({ "d": deep });
        }
        let mut leaves = 0;
        flatten(&deep, &L, |_, _| leaves += 1);
        assert_eq!(leaves, 0, "a leaf deeper than L.depth is not visited");
        let mut shallow = json!(1);
        for _ in 0..L.depth {
            shallow = json!({ "d": shallow });
        }
        let mut paths = Vec::new();
        flatten(&shallow, &L, |p, _| paths.push(p.to_owned()));
        assert_eq!(paths, [["d"; L.depth].join(".")]);
        let long = "k".repeat(L.path_len + 1);
        check_flatten(json!({ long: 1, "ok": 2 }), &["ok=Number(2.0)"]);
    }

    #[test]
    fn the_policys_limits_set_depth_path_and_value_lengths() {
        let limits = Limits {
            depth: 2,
            path_len: 5,
            value_len: 3,
            ..L
        };
        let params = json!({"a": {"b": {"c": 1}, "d": "xyz"}, "longkey": 1, "v": "long"});
        let mut paths = Vec::new();
        flatten(&params, &limits, |p, _| paths.push(p.to_owned()));
        assert_eq!(paths, ["a.d", "v"], "a.b.c is 3 deep, longkey 7 bytes");
        let mut p = ParamsBaseline::default();
        p.observe(&params, 0, 1.0, &limits, usize::MAX);
        assert_eq!(p.path("a.d").unwrap().kind(), "category", "3 bytes is kept");
        assert_eq!(p.path("v").unwrap().kind(), "text", "4 bytes makes it free text");
    }

    #[test]
    fn memory_is_bounded_whatever_the_agent_sends() {
        let mut p = ParamsBaseline::default();
        for i in 0..1_000 {
            let params = json!({ format!("key_{i}"): format!("value {i} {}", "x".repeat(i % 100)),
                                 "free": format!("v{i}"), "n": i });
            p.observe(&params, i as i64, 1.0, &L, usize::MAX);
        }
        assert_eq!(p.paths().count(), L.keys_per_tool);
        assert_eq!(p.observe(&json!({"one_more": 1}), 0, 1.0, &L, usize::MAX), (0, 1));
        let mut q = ParamsBaseline::default();
        let three = json!({"a": 1, "b": 2, "c": 3});
        assert_eq!(q.observe(&three, 0, 1.0, &L, 2), (2, 1), "the tenant's room is used up");
        assert_eq!(q.len(), 2);
        let free = p.path("free").unwrap();
        assert_eq!(free.kind(), "text", "more than L.values distinct values is free text");
        assert!(free.values.is_none());
        assert!(p.heap_bytes() < 64 * 1024, "{} bytes", p.heap_bytes());
    }

    #[test]
    fn a_full_value_set_makes_room_by_forgetting_untrusted_values() {
        let mut set = ValueSet::default();
        for i in 0..3 {
            let expect = if i < 2 { Added::Kept } else { Added::Overflow };
            assert_eq!(set.add(&format!("v{i}"), 0, 1.0, &Limits { values: 2, ..L }), expect);
        }
        let mut set = ValueSet::default();
        for i in 0..L.values {
            assert_eq!(set.add(&format!("v{i}"), 0, 1.0, &L), Added::Kept);
        }
        assert_eq!(
            set.add("attack-1", 1, 0.1, &L),
            Added::Dropped,
            "nothing untrusted to forget"
        );
        let mut set = ValueSet::default();
        for i in 0..L.values - 1 {
            set.add(&format!("v{i}"), 0, 1.0, &L);
        }
        assert_eq!(set.add("attack-1", 1, 0.1, &L), Added::Kept);
        assert_eq!(set.add("attack-2", 1, 0.1, &L), Added::Kept);
        assert!(set.get("attack-1").is_none() && set.get("attack-2").is_some());
        assert_eq!(set.len(), L.values);
        assert_eq!(set.add("legit-new", 2, 1.0, &L), Added::Kept, "evicts attack-2");
        assert_eq!(set.add("legit-newer", 2, 1.0, &L), Added::Overflow);
    }

    #[test]
    fn flagged_values_do_not_unsettle_a_stable_set() {
        let mut set = ValueSet::default();
        for i in 0..60 {
            set.add(["open", "closed"][i % 2], 0, 1.0, &L);
        }
        assert!(set.is_stable(50.0));
        for i in 0..20 {
            set.add(&format!("evil-{i}"), 1, 0.1, &L);
        }
        assert!(set.is_stable(50.0));
        set.add("merged", 2, 1.0, &L);
        assert!(!set.is_stable(50.0));
    }

    #[test]
    fn free_text_learns_its_classes_through_trust() {
        let mut shape = TextShape::default();
        shape.add("hello-world", 0, 1.0);
        assert_eq!(shape.classes(), classes_of("a-"));
        shape.add("x; drop", 1, 0.1);
        assert_eq!(shape.classes(), classes_of("a-"), "flagged classes are pending");
        assert!(shape.pending(3).is_some() && shape.pending(8).is_some());
        shape.add("a b", 2, 1.0);
        assert_eq!(
            shape.classes(),
            classes_of("a- "),
            "whitespace earned trust in a clean hour"
        );
    }

    #[test]
    fn character_classes() {
        assert_eq!(classes_of(""), 0);
        let names = |s: &str| class_names(classes_of(s));
        assert_eq!(names("abc-123"), ["lowercase letters", "digits", "'-', '_' or '.'"]);
        assert_eq!(
            names("' OR 1=1; --"),
            [
                "uppercase letters",
                "digits",
                "whitespace",
                "'-', '_' or '.'",
                "URL punctuation (@+=%&?#~,)",
                "quotes",
                "shell or SQL metacharacters (;|$<>(){}[]\\*!^)"
            ]
        );
        assert_eq!(names("é\u{1}"), ["non-ASCII characters", "control characters"]);
    }

    #[test]
    fn redacted_strings_are_not_learned() {
        let mut p = ParamsBaseline::default();
        p.observe(
            &json!({"token": "[REDACTED:github_token:0123456789abcdef]"}),
            0,
            1.0,
            &L,
            usize::MAX,
        );
        let token = p.path("token").unwrap();
        assert_eq!(token.samples, 1);
        assert_eq!(token.kind(), "empty");
    }
}

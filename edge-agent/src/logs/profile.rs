//! What a template's sampled records carry besides their body: attribute
//! profiles, sensitive values and duplicate fields, accumulated per
//! template since the previous report (`LogTemplate.attributes`,
//! `.sensitive`, `.duplicate_fields`).
//!
//! Work is split in two so the miner's lock is held only for counting:
//! [`Facts::of`] runs the recognisers and compares values for one record
//! (regular expressions, substring searches) before the lock is taken, and
//! [`Profile::add`] folds those facts into the template's profile under it
//! (redacting a finding's example there, once per finding and window).
//!
//! # Locations
//!
//! A place in a record is named as in the protocol: `body`,
//! `attribute:<key>`, or `trace_id`, the record's own trace id (OTLP's
//! `LogRecord.trace_id`, as 32 hex digits).
//!
//! # Duplicate fields
//!
//! A pair of locations is a duplicate when, on every sampled record of the
//! template (since the previous report) where both are present, they carry
//! the same value:
//! - two attributes with equal non-empty values: `keep` is the
//!   conventional spelling (snake_case or dotted lower case over
//!   camelCase), else the one first in the record; `duplicate` is the
//!   other, `bytes` its key and value;
//! - an attribute whose value (at least [`MIN_BODY_DUPLICATE`] bytes)
//!   appears verbatim in the body: `keep` is the attribute, `duplicate` is
//!   `body` (the body repeats a value the record already carries as a
//!   field), `bytes` the value's; on a record where the value is shorter
//!   than that, the attribute counts as absent (nothing can be told);
//! - the record's trace id and an attribute carrying it, or the body
//!   containing it: `keep` is `trace_id`, `duplicate` the attribute or
//!   `body`.
//!
//! A pair is only tracked from a record where one of its locations is seen
//! for the first time in the window: before that, the two could have been
//! present and different on a record nobody remembered. A pair that once
//! differs is disqualified and stays so until the profile is reported.
//!
//! # Bounds
//!
//! At most [`MAX_KEYS`] attribute keys per template (records with more
//! keys are counted in `keys_overflowed`), [`MAX_EXAMPLES`] examples per
//! key, [`MAX_FINDINGS`] findings and [`MAX_PAIRS`] tracked pairs; values
//! are already cut at extraction ([`Attribute::new`]). Values a recogniser
//! flags are never examples: only the redacted finding leaves the edge.

use std::collections::{HashMap, HashSet};

use tero_proto::controlplane::{AttributeProfile, DuplicateField, SensitiveFinding};
use tero_sdk::templates::{Sensitive, recognise, redacted_example, truncate};

/// Attributes read from one record; the rest are ignored.
pub const MAX_RECORD_ATTRIBUTES: usize = 32;
/// Bytes kept of an attribute key.
pub const MAX_KEY_BYTES: usize = 128;
/// Bytes kept of an attribute value (what recognisers and comparisons
/// see); its full length still counts in the profile's bytes.
pub const MAX_VALUE_BYTES: usize = 1024;
/// Attribute keys profiled per template.
pub const MAX_KEYS: usize = 32;
/// Distinct examples per key, and their bytes.
pub const MAX_EXAMPLES: usize = 5;
pub const MAX_EXAMPLE_BYTES: usize = 128;
/// (kind, location) findings per template, and the bytes of their example.
pub const MAX_FINDINGS: usize = 16;
pub const MAX_FINDING_EXAMPLE_BYTES: usize = 256;
/// Duplicate-field candidates tracked per template.
pub const MAX_PAIRS: usize = 32;
/// Shortest attribute value that counts as repeated when found in a body:
/// shorter ones (`200`, `true`) appear in bodies by chance.
pub const MIN_BODY_DUPLICATE: usize = 8;

pub const BODY: &str = "body";
pub const TRACE_ID: &str = "trace_id";

/// One attribute of a record, its value rendered as text and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub key: String,
    pub value: String,
    /// Bytes of the key and value as sent, before cutting.
    pub bytes: u64,
}

impl Attribute {
    pub fn new(key: &str, value: &str) -> Self {
        Attribute {
            key: truncate(key, MAX_KEY_BYTES).to_owned(),
            value: truncate(value, MAX_VALUE_BYTES).to_owned(),
            bytes: (key.len() + value.len()) as u64,
        }
    }
}

/// Adds an attribute unless the record already has [`MAX_RECORD_ATTRIBUTES`]
/// or one of the same key (the first wins); false when it was not added.
pub fn push_attribute(attributes: &mut Vec<Attribute>, key: &str, value: &str) -> bool {
    if attributes.len() >= MAX_RECORD_ATTRIBUTES || key.is_empty() {
        return false;
    }
    let key = truncate(key, MAX_KEY_BYTES);
    if attributes.iter().any(|a| a.key == key) {
        return false;
    }
    attributes.push(Attribute::new(key, value));
    true
}

/// The scalar members of a JSON object as attributes, nested objects
/// flattened with dotted keys (`http.status`), arrays and nulls skipped.
pub fn json_attributes(
    prefix: &str,
    object: &serde_json::Map<String, serde_json::Value>,
    out: &mut Vec<Attribute>,
) {
    use serde_json::Value;
    /// Depth of nested objects read: a deeper value is rarely a field a
    /// policy names.
    const MAX_DEPTH: usize = 4;
    fn walk(
        prefix: &str,
        object: &serde_json::Map<String, Value>,
        depth: usize,
        out: &mut Vec<Attribute>,
    ) {
        for (key, value) in object {
            if out.len() >= MAX_RECORD_ATTRIBUTES {
                return;
            }
            let key = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                Value::String(s) => {
                    push_attribute(out, &key, s);
                }
                Value::Number(n) => {
                    push_attribute(out, &key, &n.to_string());
                }
                Value::Bool(b) => {
                    push_attribute(out, &key, if *b { "true" } else { "false" });
                }
                Value::Object(inner) if depth < MAX_DEPTH => walk(&key, inner, depth + 1, out),
                _ => {}
            }
        }
    }
    walk(prefix, object, 1, out);
}

/// The location of an attribute.
pub fn attribute_location(key: &str) -> String {
    format!("attribute:{key}")
}

/// What one record says, worked out before the miner's lock.
#[derive(Debug, Default)]
pub struct Facts {
    attributes: Vec<AttributeFacts>,
    trace_id: Option<String>,
    trace_in_body: bool,
    body_findings: Vec<Sensitive>,
    /// The body (as searched) when it holds a finding: its redacted
    /// example is made only if its finding has none yet.
    flagged_body: Option<String>,
    /// Indices `(i, j)`, `i < j`, of attributes with equal non-empty values.
    equal: Vec<(usize, usize)>,
}

#[derive(Debug)]
struct AttributeFacts {
    key: String,
    value: String,
    bytes: u64,
    /// Kinds a recogniser found in the value (deduplicated).
    findings: Vec<Sensitive>,
    /// The value cut for display, when no recogniser fired on it.
    example: Option<String>,
    /// The value is long enough and appears in the body.
    in_body: bool,
}

fn kinds(text: &str) -> Vec<Sensitive> {
    let mut kinds: Vec<Sensitive> = recognise(text).into_iter().map(|f| f.kind).collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// `value` cut to [`MAX_EXAMPLE_BYTES`] with an ellipsis.
fn cut(value: &str) -> String {
    if value.len() <= MAX_EXAMPLE_BYTES {
        return value.to_owned();
    }
    let mut s = truncate(value, MAX_EXAMPLE_BYTES - '…'.len_utf8()).to_owned();
    s.push('…');
    s
}

impl Facts {
    pub fn of(body: &str, attributes: &[Attribute], trace_id: Option<&str>) -> Facts {
        // What the miner tokenises of a body is what is searched.
        let body = truncate(body, tero_sdk::templates::MAX_BODY_BYTES);
        let body_findings = kinds(body);
        let flagged_body = (!body_findings.is_empty()).then(|| body.to_owned());
        let attributes: Vec<AttributeFacts> = attributes
            .iter()
            .map(|a| {
                let findings = kinds(&a.value);
                let flagged = !findings.is_empty();
                AttributeFacts {
                    key: a.key.clone(),
                    value: a.value.clone(),
                    bytes: a.bytes,
                    // Unflagged, the value is what `redact` leaves as it is
                    // (the sdk guarantees the two agree), so cutting it is
                    // its redacted example.
                    example: (!flagged).then(|| cut(&a.value)),
                    findings,
                    in_body: a.value.len() >= MIN_BODY_DUPLICATE && body.contains(a.value.as_str()),
                }
            })
            .collect();
        let mut equal = Vec::new();
        for (i, a) in attributes.iter().enumerate() {
            if a.value.is_empty() {
                continue;
            }
            for (j, b) in attributes.iter().enumerate().skip(i + 1) {
                if a.value == b.value {
                    equal.push((i, j));
                }
            }
        }
        let trace_id = trace_id.filter(|t| !t.is_empty()).map(str::to_owned);
        Facts {
            trace_in_body: trace_id.as_deref().is_some_and(|t| body.contains(t)),
            trace_id,
            attributes,
            body_findings,
            flagged_body,
            equal,
        }
    }

    fn attribute(&self, key: &str) -> Option<&AttributeFacts> {
        self.attributes.iter().find(|a| a.key == key)
    }
}

#[derive(Debug, Clone, Default)]
struct KeyStats {
    records: u64,
    bytes: u64,
    examples: Vec<String>,
    more_values: bool,
}

#[derive(Debug, Clone, Default)]
struct FindingStats {
    records: u64,
    example: String,
}

/// Where a pair's values are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Place {
    Body,
    TraceId,
    Attribute(String),
}

impl Place {
    fn location(&self) -> String {
        match self {
            Place::Body => BODY.to_owned(),
            Place::TraceId => TRACE_ID.to_owned(),
            Place::Attribute(key) => attribute_location(key),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct PairStats {
    records: u64,
    bytes: u64,
    disqualified: bool,
}

/// One template's profile since the previous report.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    records: u64,
    /// Records with a trace id.
    trace_records: u64,
    keys: HashMap<String, KeyStats>,
    findings: HashMap<(Sensitive, String), FindingStats>,
    /// `(keep, duplicate)`.
    pairs: HashMap<(Place, Place), PairStats>,
    /// Attribute occurrences, findings and pairs that found no room.
    overflowed: u64,
}

/// A pair's state on one record.
enum Seen {
    Absent,
    Equal { bytes: u64 },
    Different,
}

impl Profile {
    /// Whether `place` was seen on an earlier record of the window.
    fn seen_before(&self, place: &Place) -> bool {
        match place {
            Place::Body => self.records > 0,
            Place::TraceId => self.trace_records > 0,
            Place::Attribute(key) => self.keys.get(key).is_some_and(|k| k.records > 0),
        }
    }

    fn state(facts: &Facts, keep: &Place, duplicate: &Place) -> Seen {
        let attr = |place: &Place| match place {
            Place::Attribute(key) => facts.attribute(key),
            _ => None,
        };
        match (keep, duplicate) {
            (Place::Attribute(_), Place::Body) => match attr(keep) {
                Some(a) if a.in_body => Seen::Equal {
                    bytes: a.value.len() as u64,
                },
                Some(a) if a.value.len() >= MIN_BODY_DUPLICATE => Seen::Different,
                // Too short to tell: as if absent.
                _ => Seen::Absent,
            },
            (Place::TraceId, Place::Body) => match &facts.trace_id {
                None => Seen::Absent,
                Some(t) if facts.trace_in_body => Seen::Equal {
                    bytes: t.len() as u64,
                },
                Some(_) => Seen::Different,
            },
            (Place::TraceId, Place::Attribute(_)) => match (&facts.trace_id, attr(duplicate)) {
                (Some(t), Some(a)) if *t == a.value => Seen::Equal { bytes: a.bytes },
                (Some(_), Some(_)) => Seen::Different,
                _ => Seen::Absent,
            },
            (Place::Attribute(_), Place::Attribute(_)) => match (attr(keep), attr(duplicate)) {
                (Some(k), Some(d)) if !k.value.is_empty() && k.value == d.value => {
                    Seen::Equal { bytes: d.bytes }
                }
                (Some(_), Some(_)) => Seen::Different,
                _ => Seen::Absent,
            },
            _ => Seen::Absent,
        }
    }

    /// Folds one record's facts in.
    pub fn add(&mut self, facts: &Facts) {
        // Pairs already tracked: counted where equal, disqualified where not.
        for ((keep, duplicate), stats) in &mut self.pairs {
            if stats.disqualified {
                continue;
            }
            match Self::state(facts, keep, duplicate) {
                Seen::Absent => {}
                Seen::Equal { bytes } => {
                    stats.records += 1;
                    stats.bytes += bytes;
                }
                Seen::Different => stats.disqualified = true,
            }
        }
        // New candidates, before this record's keys count as seen.
        for (keep, duplicate) in candidates(facts) {
            let key = (keep, duplicate);
            if self.pairs.contains_key(&key) {
                continue;
            }
            let (keep, duplicate) = &key;
            let trackable = |p: &Place| match p {
                Place::Attribute(k) => self.keys.contains_key(k) || self.keys.len() < MAX_KEYS,
                _ => true,
            };
            if !trackable(keep) || !trackable(duplicate) {
                continue;
            }
            if self.seen_before(keep) && self.seen_before(duplicate) {
                // They may have differed on a record nobody remembered.
                continue;
            }
            if self.pairs.len() >= MAX_PAIRS {
                self.overflowed += 1;
                continue;
            }
            let Seen::Equal { bytes } = Self::state(facts, keep, duplicate) else {
                continue;
            };
            self.pairs.insert(
                key,
                PairStats {
                    records: 1,
                    bytes,
                    disqualified: false,
                },
            );
        }

        self.records += 1;
        if facts.trace_id.is_some() {
            self.trace_records += 1;
        }
        for a in &facts.attributes {
            if !self.keys.contains_key(&a.key) && self.keys.len() >= MAX_KEYS {
                self.overflowed += 1;
                continue;
            }
            let stats = self.keys.entry(a.key.clone()).or_default();
            stats.records += 1;
            stats.bytes += a.bytes;
            if let Some(example) = &a.example {
                add_example(stats, example);
            }
            for kind in &a.findings {
                self.finding(*kind, attribute_location(&a.key), &a.value);
            }
        }
        if let Some(body) = &facts.flagged_body {
            for kind in &facts.body_findings {
                self.finding(*kind, BODY.to_owned(), body);
            }
        }
    }

    /// Counts a finding; `text` is redacted for its example only when it
    /// has none yet (once per finding and window, not per record).
    fn finding(&mut self, kind: Sensitive, location: String, text: &str) {
        let key = (kind, location);
        if !self.findings.contains_key(&key) && self.findings.len() >= MAX_FINDINGS {
            self.overflowed += 1;
            return;
        }
        let stats = self.findings.entry(key).or_default();
        stats.records += 1;
        if stats.example.is_empty() {
            stats.example = redacted_example(text, MAX_FINDING_EXAMPLE_BYTES);
        }
    }

    /// Adds another profile of the same event type (a template merged into
    /// this one). A pair one side tracked and the other could have seen
    /// (both its locations were present there) but did not is dropped: it
    /// may have differed there.
    pub fn absorb(&mut self, other: Profile) {
        let mine: HashSet<(Place, Place)> = self.pairs.keys().cloned().collect();
        for (pair, stats) in &mut self.pairs {
            if !other.pairs.contains_key(pair)
                && other.seen_before(&pair.0)
                && other.seen_before(&pair.1)
            {
                stats.disqualified = true;
            }
        }
        for (pair, stats) in other.pairs {
            match self.pairs.get_mut(&pair) {
                Some(mine) => {
                    mine.records += stats.records;
                    mine.bytes += stats.bytes;
                    mine.disqualified |= stats.disqualified;
                }
                None if mine.contains(&pair) => {}
                None => {
                    let disqualified = stats.disqualified
                        || (self.seen_before(&pair.0) && self.seen_before(&pair.1));
                    if self.pairs.len() >= MAX_PAIRS {
                        self.overflowed += 1;
                        continue;
                    }
                    self.pairs.insert(
                        pair,
                        PairStats {
                            disqualified,
                            ..stats
                        },
                    );
                }
            }
        }
        for (key, stats) in other.keys {
            if !self.keys.contains_key(&key) && self.keys.len() >= MAX_KEYS {
                self.overflowed += stats.records;
                continue;
            }
            let mine = self.keys.entry(key).or_default();
            mine.records += stats.records;
            mine.bytes += stats.bytes;
            mine.more_values |= stats.more_values;
            for example in &stats.examples {
                add_example(mine, example);
            }
        }
        for (key, stats) in other.findings {
            if !self.findings.contains_key(&key) && self.findings.len() >= MAX_FINDINGS {
                self.overflowed += stats.records;
                continue;
            }
            let mine = self.findings.entry(key).or_default();
            mine.records += stats.records;
            if mine.example.is_empty() {
                mine.example = stats.example;
            }
        }
        self.records += other.records;
        self.trace_records += other.trace_records;
        self.overflowed += other.overflowed;
    }

    /// What did not fit its bounds.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// The profile as the protocol's fields, most frequent first.
    pub fn report(
        self,
    ) -> (
        Vec<AttributeProfile>,
        Vec<SensitiveFinding>,
        Vec<DuplicateField>,
    ) {
        let mut attributes: Vec<AttributeProfile> = self
            .keys
            .into_iter()
            .map(|(key, s)| AttributeProfile {
                key,
                records: s.records,
                bytes: s.bytes,
                examples: s.examples,
                more_values: s.more_values,
            })
            .collect();
        attributes.sort_by(|a, b| b.records.cmp(&a.records).then_with(|| a.key.cmp(&b.key)));
        let mut sensitive: Vec<SensitiveFinding> = self
            .findings
            .into_iter()
            .map(|((kind, location), s)| SensitiveFinding {
                kind: kind.name().to_owned(),
                location,
                records: s.records,
                example: s.example,
            })
            .collect();
        sensitive.sort_by(|a, b| {
            b.records
                .cmp(&a.records)
                .then_with(|| a.location.cmp(&b.location))
                .then_with(|| a.kind.cmp(&b.kind))
        });
        let mut duplicates: Vec<DuplicateField> = self
            .pairs
            .into_iter()
            .filter(|(_, s)| !s.disqualified && s.records > 0)
            .map(|((keep, duplicate), s)| DuplicateField {
                keep: keep.location(),
                duplicate: duplicate.location(),
                records: s.records,
                bytes: s.bytes,
            })
            .collect();
        duplicates.sort_by(|a, b| {
            b.bytes
                .cmp(&a.bytes)
                .then_with(|| a.keep.cmp(&b.keep))
                .then_with(|| a.duplicate.cmp(&b.duplicate))
        });
        (attributes, sensitive, duplicates)
    }
}

fn add_example(stats: &mut KeyStats, example: &str) {
    if stats.examples.iter().any(|e| e == example) {
        return;
    }
    if stats.examples.len() < MAX_EXAMPLES {
        stats.examples.push(example.to_owned());
    } else {
        stats.more_values = true;
    }
}

/// Whether `key` is spelled the conventional way for attributes: no
/// upper-case letters (snake_case, dotted), unlike camelCase.
fn conventional(key: &str) -> bool {
    !key.bytes().any(|b| b.is_ascii_uppercase())
}

/// `(keep, duplicate)` pairs equal on this record.
fn candidates(facts: &Facts) -> Vec<(Place, Place)> {
    let mut out = Vec::new();
    for &(i, j) in &facts.equal {
        let (a, b) = (&facts.attributes[i], &facts.attributes[j]);
        // `i` came first in the record: it is kept unless only `j` is
        // spelled the conventional way.
        let (keep, duplicate) = if !conventional(&a.key) && conventional(&b.key) {
            (b, a)
        } else {
            (a, b)
        };
        out.push((
            Place::Attribute(keep.key.clone()),
            Place::Attribute(duplicate.key.clone()),
        ));
    }
    for a in &facts.attributes {
        if a.in_body {
            out.push((Place::Attribute(a.key.clone()), Place::Body));
        }
        if facts.trace_id.as_deref() == Some(a.value.as_str()) {
            out.push((Place::TraceId, Place::Attribute(a.key.clone())));
        }
    }
    if facts.trace_in_body {
        out.push((Place::TraceId, Place::Body));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Vec<Attribute> {
        pairs.iter().map(|(k, v)| Attribute::new(k, v)).collect()
    }

    /// A record: its body, attributes and trace id.
    type Rec<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);

    fn profile(records: &[Rec<'_>]) -> Profile {
        let mut p = Profile::default();
        for (body, a, trace) in records {
            p.add(&Facts::of(body, &attrs(a), *trace));
        }
        p
    }

    fn duplicates(p: Profile) -> Vec<(String, String, u64, u64)> {
        let (_, _, d) = p.report();
        let mut d: Vec<_> = d
            .into_iter()
            .map(|d| (d.keep, d.duplicate, d.records, d.bytes))
            .collect();
        d.sort();
        d
    }

    #[test]
    fn attributes_are_profiled_with_bounded_redacted_examples() {
        let long = "x".repeat(300);
        let mut records: Vec<(String, Vec<(&str, String)>)> = Vec::new();
        for i in 0..8 {
            records.push((
                "GET done".into(),
                vec![("http.route", format!("/r/{i}")), ("note", long.clone())],
            ));
        }
        let mut p = Profile::default();
        for (body, a) in &records {
            let a: Vec<Attribute> = a.iter().map(|(k, v)| Attribute::new(k, v)).collect();
            p.add(&Facts::of(body, &a, None));
        }
        let (attributes, sensitive, _) = p.report();
        assert!(sensitive.is_empty());
        let route = attributes.iter().find(|a| a.key == "http.route").unwrap();
        assert_eq!(route.records, 8);
        assert_eq!(route.bytes, 8 * ("http.route".len() + 4) as u64);
        assert_eq!(route.examples, ["/r/0", "/r/1", "/r/2", "/r/3", "/r/4"]);
        assert!(route.more_values);
        let note = attributes.iter().find(|a| a.key == "note").unwrap();
        assert_eq!(note.examples.len(), 1);
        assert!(note.examples[0].len() <= MAX_EXAMPLE_BYTES && note.examples[0].ends_with('…'));
        assert!(!note.more_values);
    }

    #[test]
    fn flagged_values_become_findings_never_examples() {
        let p = profile(&[
            (
                "mail sent",
                &[("to", "jane@example.com"), ("lang", "en")],
                None,
            ),
            (
                "mail sent",
                &[("to", "bob@example.org"), ("lang", "en")],
                None,
            ),
            ("login from 10.1.2.3 ok", &[("lang", "en")], None),
        ]);
        let (attributes, sensitive, _) = p.report();
        let to = attributes.iter().find(|a| a.key == "to").unwrap();
        assert_eq!(to.records, 2);
        assert!(to.examples.is_empty(), "{to:?}");
        let found: Vec<(&str, &str, u64, &str)> = sensitive
            .iter()
            .map(|f| {
                (
                    f.kind.as_str(),
                    f.location.as_str(),
                    f.records,
                    f.example.as_str(),
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                ("email", "attribute:to", 2, "<email>"),
                ("ip_address", "body", 1, "login from <ip> ok"),
            ]
        );
    }

    #[test]
    fn duplicates_hold_on_every_record_where_both_are_present() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let p = profile(&[
            (
                "order 77 placed by user-1234567",
                &[
                    ("userId", "user-1234567"),
                    ("user_id", "user-1234567"),
                    ("trace", trace),
                    ("status", "ok"),
                ],
                Some(trace),
            ),
            (
                "order 78 placed by user-7654321",
                &[
                    ("userId", "user-7654321"),
                    ("user_id", "user-7654321"),
                    ("trace", trace),
                    ("status", "ok"),
                ],
                Some(trace),
            ),
            // Only one of the pair: neither confirms nor disqualifies.
            (
                "order 79 placed by guest",
                &[("user_id", "guest"), ("status", "ok")],
                None,
            ),
        ]);
        assert_eq!(
            duplicates(p),
            [
                ("attribute:userId".into(), "body".into(), 2, 24),
                (
                    "attribute:user_id".into(),
                    "attribute:userId".into(),
                    2,
                    2 * ("userId".len() + 12) as u64
                ),
                ("attribute:user_id".into(), "body".into(), 2, 24),
                ("trace_id".into(), "attribute:trace".into(), 2, 2 * (5 + 32)),
            ],
            "user_id/userId, user_id in the body and the trace id copied; `status` and `user_id=guest` are too short or alone"
        );
    }

    #[test]
    fn a_pair_that_differs_once_is_not_a_duplicate() {
        let p = profile(&[
            ("a", &[("from", "eu-west-1a"), ("to", "eu-west-1a")], None),
            ("b", &[("from", "eu-west-1a"), ("to", "us-east-1b")], None),
            ("c", &[("from", "eu-west-1a"), ("to", "eu-west-1a")], None),
        ]);
        assert!(duplicates(p).is_empty());
        // Present and different first, equal later: never tracked.
        let p = profile(&[
            ("a", &[("from", "x1"), ("to", "y1")], None),
            ("b", &[("from", "x2"), ("to", "x2")], None),
        ]);
        assert!(duplicates(p).is_empty());
        // The trace id in the body, then not.
        let t = "0af7651916cd43dd8448eb211c80319c";
        let p = profile(&[
            (&format!("trace {t} done") as &str, &[], Some(t)),
            ("done", &[], Some(t)),
        ]);
        assert!(duplicates(p).is_empty());
        let p = profile(&[(&format!("trace {t} done") as &str, &[], Some(t))]);
        assert_eq!(duplicates(p), [("trace_id".into(), "body".into(), 1, 32)]);
    }

    #[test]
    fn merging_profiles_keeps_only_what_held_on_both_sides() {
        let mut a = profile(&[("x", &[("user_id", "u-1"), ("userId", "u-1")], None)]);
        let b = profile(&[("y", &[("user_id", "u-2"), ("userId", "u-3")], None)]);
        a.absorb(b);
        assert!(duplicates(a).is_empty(), "differed on the merged side");
        let mut a = profile(&[("x", &[("user_id", "u-1"), ("userId", "u-1")], None)]);
        let b = profile(&[("y", &[("user_id", "u-2"), ("userId", "u-2")], None)]);
        a.absorb(b);
        assert_eq!(
            duplicates(a),
            [("attribute:user_id".into(), "attribute:userId".into(), 2, 18)]
        );
        let mut a = profile(&[("x", &[("k", "v")], None)]);
        a.absorb(profile(&[("y", &[("k", "w"), ("mail", "a@b.io")], None)]));
        let (attributes, sensitive, _) = a.report();
        assert_eq!(attributes.iter().find(|a| a.key == "k").unwrap().records, 2);
        assert_eq!(sensitive.len(), 1);
    }

    #[test]
    fn hostile_records_stay_within_the_bounds() {
        let mut p = Profile::default();
        for i in 0..500 {
            let a: Vec<Attribute> = (0..MAX_RECORD_ATTRIBUTES)
                .map(|j| Attribute::new(&format!("k{i}-{j}"), &format!("same-value-{i}")))
                .collect();
            let body = format!("x same-value-{i} a{i}@example.com +44 20 7946 {i:04}");
            p.add(&Facts::of(&body, &a, Some(&format!("{i:032x}"))));
        }
        assert!(p.keys.len() <= MAX_KEYS);
        assert!(p.pairs.len() <= MAX_PAIRS);
        assert!(p.findings.len() <= MAX_FINDINGS);
        assert!(p.overflowed() > 0);
        let (attributes, _, _) = p.report();
        assert!(attributes.iter().all(|a| a.examples.len() <= MAX_EXAMPLES));
    }

    #[test]
    fn json_objects_flatten_to_bounded_attributes() {
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"user_id": "u-1", "ok": true, "n": 3.5, "http": {"route": "/a", "status": 200},
                "tags": ["x"], "none": null}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        json_attributes("", &object, &mut out);
        let got: Vec<(&str, &str)> = out
            .iter()
            .map(|a| (a.key.as_str(), a.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("http.route", "/a"),
                ("http.status", "200"),
                ("n", "3.5"),
                ("ok", "true"),
                ("user_id", "u-1")
            ]
        );
        let mut many = Vec::new();
        for i in 0..100 {
            push_attribute(&mut many, &format!("k{i}"), "v");
        }
        assert_eq!(many.len(), MAX_RECORD_ATTRIBUTES);
        let a = Attribute::new(&"k".repeat(500), &"v".repeat(5000));
        assert_eq!(
            (a.key.len(), a.value.len(), a.bytes),
            (MAX_KEY_BYTES, MAX_VALUE_BYTES, 5500)
        );
    }
}

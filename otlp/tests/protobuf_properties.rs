//! Differential properties of the protobuf codec on generated requests.
//!
//! Requests are generated as shapes and encoded by a small encoder of this
//! test (independent of the codec), with unknown fields at every level,
//! optional resources and scopes, and arbitrary Unicode text. Policies drop
//! or transform records by a `fate` attribute, so the expected output is
//! known exactly: the same encoder applied to the shape with dropped records
//! removed, emptied scope and resource entries pruned, and the transformed
//! field changed. Comparing bytes proves at once that unknown fields
//! survive, untouched records are copied byte for byte, pruning is right
//! and nothing else moves; the output must also decode with prost, and the
//! counts and per-policy drop statistics must match the shape.

mod common;

use proptest::collection::vec;
use proptest::prelude::*;
use tero_otlp::{Format, Output, Signal, convert};
use tero_sdk::policy::Format as PolicyFormat;

// ------------------------------------------------------------- encoding

#[derive(Debug, Clone)]
enum Unknown {
    Varint(u32, u64),
    Fixed64(u32, u64),
    Fixed32(u32, u32),
    Bytes(u32, Vec<u8>),
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

fn put_len(out: &mut Vec<u8>, number: u32, content: &[u8]) {
    put_key(out, number, 2);
    put_varint(out, content.len() as u64);
    out.extend_from_slice(content);
}

fn put_unknowns(out: &mut Vec<u8>, unknowns: &[Unknown]) {
    for u in unknowns {
        match u {
            Unknown::Varint(n, v) => {
                put_key(out, *n, 0);
                put_varint(out, *v);
            }
            Unknown::Fixed64(n, v) => {
                put_key(out, *n, 1);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Unknown::Fixed32(n, v) => {
                put_key(out, *n, 5);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Unknown::Bytes(n, b) => put_len(out, *n, b),
        }
    }
}

fn string_value(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    put_len(&mut out, 1, s.as_bytes());
    out
}

fn key_value(key: &str, value: &str, unknowns: &[Unknown]) -> Vec<u8> {
    let mut out = Vec::new();
    put_len(&mut out, 1, key.as_bytes());
    put_len(&mut out, 2, &string_value(value));
    put_unknowns(&mut out, unknowns);
    out
}

/// A record of any signal: what decides its fate, and the bytes it
/// encodes to before and after the codec.
trait RecordShape {
    /// Dropped by the test's policies.
    fn dropped(&self) -> bool;
    /// Changed (not dropped) by the test's policies.
    fn changed(&self) -> bool;
    fn encode(&self, after_policies: bool) -> Vec<u8>;
    /// What it counts as in `Counts::records_in`.
    fn points(&self) -> u64 {
        1
    }
}

/// Attributes of a resource or scope, and its unknown fields.
type ContainerMessage = (Vec<(String, String)>, Vec<Unknown>);

#[derive(Debug, Clone)]
struct Entry<R> {
    message: Option<ContainerMessage>,
    items: Vec<R>,
    schema_url: String,
    head: Vec<Unknown>,
    tail: Vec<Unknown>,
}

#[derive(Debug, Clone)]
struct Request<R> {
    resources: Vec<Entry<Entry<R>>>,
    head: Vec<Unknown>,
    tail: Vec<Unknown>,
}

/// An optional resource or scope: a message with attributes (field 1 of
/// `Resource`, field 3 of `InstrumentationScope`) and unknown fields.
fn encode_message(
    attributes: &[(String, String)],
    attr_field: u32,
    unknowns: &[Unknown],
) -> Vec<u8> {
    let mut out = Vec::new();
    if attr_field == 3 {
        put_len(&mut out, 1, b"scope-name");
    }
    for (k, v) in attributes {
        put_len(&mut out, attr_field, &key_value(k, v, &[]));
    }
    put_unknowns(&mut out, unknowns);
    out
}

fn encode_entry<T>(
    entry: &Entry<T>,
    attr_field: u32,
    items: impl Iterator<Item = Vec<u8>>,
) -> Vec<u8> {
    let mut out = Vec::new();
    put_unknowns(&mut out, &entry.head);
    if let Some((attributes, unknowns)) = &entry.message {
        put_len(
            &mut out,
            1,
            &encode_message(attributes, attr_field, unknowns),
        );
    }
    for item in items {
        put_len(&mut out, 2, &item);
    }
    if !entry.schema_url.is_empty() {
        put_len(&mut out, 3, entry.schema_url.as_bytes());
    }
    put_unknowns(&mut out, &entry.tail);
    out
}

impl<R: RecordShape> Request<R> {
    fn records(&self) -> impl Iterator<Item = &R> {
        self.resources
            .iter()
            .flat_map(|r| &r.items)
            .flat_map(|s| &s.items)
    }

    /// The request as sent (`after_policies` false), or as the codec must
    /// write it.
    fn encode(&self, after_policies: bool) -> Vec<u8> {
        let mut out = Vec::new();
        put_unknowns(&mut out, &self.head);
        for resource in &self.resources {
            let scopes: Vec<Vec<u8>> = resource
                .items
                .iter()
                .filter(|scope| {
                    // A scope entry whose records all go is pruned.
                    !after_policies
                        || scope.items.is_empty()
                        || scope.items.iter().any(|r| !r.dropped())
                })
                .map(|scope| {
                    let records = scope
                        .items
                        .iter()
                        .filter(|r| !after_policies || !r.dropped())
                        .map(|r| r.encode(after_policies));
                    encode_entry(scope, 3, records)
                })
                .collect();
            // So is a resource entry whose scope entries all go.
            if after_policies && !resource.items.is_empty() && scopes.is_empty() {
                continue;
            }
            put_len(&mut out, 1, &encode_entry(resource, 1, scopes.into_iter()));
        }
        put_unknowns(&mut out, &self.tail);
        out
    }
}

// ----------------------------------------------------------- strategies

fn unknown() -> impl Strategy<Value = Unknown> {
    let number = 17u32..5000;
    prop_oneof![
        (number.clone(), any::<u64>()).prop_map(|(n, v)| Unknown::Varint(n, v)),
        (number.clone(), any::<u64>()).prop_map(|(n, v)| Unknown::Fixed64(n, v)),
        (number.clone(), any::<u32>()).prop_map(|(n, v)| Unknown::Fixed32(n, v)),
        (number, vec(any::<u8>(), 0..12)).prop_map(|(n, b)| Unknown::Bytes(n, b)),
    ]
}

fn unknowns() -> impl Strategy<Value = Vec<Unknown>> {
    vec(unknown(), 0..3)
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,10}"
}

fn attributes() -> impl Strategy<Value = Vec<(String, String)>> {
    // Keys never collide with `fate` or `secret`.
    vec(("[a-e]{1,3}", text()), 0..3)
}

fn entry<R: std::fmt::Debug>(
    items: impl Strategy<Value = Vec<R>>,
) -> impl Strategy<Value = Entry<R>> {
    (
        proptest::option::of((attributes(), unknowns())),
        items,
        prop_oneof![Just(String::new()), text()],
        unknowns(),
        unknowns(),
    )
        .prop_map(|(message, items, schema_url, head, tail)| Entry {
            message,
            items,
            schema_url,
            head,
            tail,
        })
}

fn request<R: std::fmt::Debug + Clone>(
    record: impl Strategy<Value = R>,
) -> impl Strategy<Value = Request<R>> {
    (
        vec(entry(vec(entry(vec(record, 0..5)), 0..3)), 0..4),
        unknowns(),
        unknowns(),
    )
        .prop_map(|(resources, head, tail)| Request {
            resources,
            head,
            tail,
        })
}

// ---------------------------------------------------------------- logs

#[derive(Debug, Clone)]
struct LogShape {
    /// The `fate` attribute: "", "keep", "drop" or "redact".
    fate: &'static str,
    secret: Option<String>,
    body: String,
    attributes: Vec<(String, String)>,
    head: Vec<Unknown>,
    tail: Vec<Unknown>,
    secret_unknowns: Vec<Unknown>,
}

impl RecordShape for LogShape {
    fn dropped(&self) -> bool {
        self.fate == "drop"
    }

    fn changed(&self) -> bool {
        // Redaction leaves an empty value alone: empty counts as missing.
        self.fate == "redact" && self.secret.as_ref().is_some_and(|s| !s.is_empty())
    }

    fn encode(&self, after_policies: bool) -> Vec<u8> {
        let mut out = Vec::new();
        put_unknowns(&mut out, &self.head);
        put_key(&mut out, 1, 1);
        out.extend_from_slice(&1_700_000_000_000_000_000u64.to_le_bytes());
        put_len(&mut out, 3, b"INFO");
        put_len(&mut out, 5, &string_value(&self.body));
        if !self.fate.is_empty() {
            put_len(&mut out, 6, &key_value("fate", self.fate, &[]));
        }
        for (k, v) in &self.attributes {
            put_len(&mut out, 6, &key_value(k, v, &[]));
        }
        if let Some(secret) = &self.secret {
            let value = if after_policies && self.changed() {
                "[REDACTED]"
            } else {
                secret.as_str()
            };
            put_len(
                &mut out,
                6,
                &key_value("secret", value, &self.secret_unknowns),
            );
        }
        put_len(&mut out, 9, &[7; 16]);
        put_unknowns(&mut out, &self.tail);
        out
    }
}

fn log_record() -> impl Strategy<Value = LogShape> {
    (
        prop_oneof![Just(""), Just("keep"), Just("drop"), Just("redact")],
        proptest::option::of(text()),
        text(),
        attributes(),
        unknowns(),
        unknowns(),
        unknowns(),
    )
        .prop_map(
            |(fate, secret, body, attributes, head, tail, secret_unknowns)| LogShape {
                fate,
                secret,
                body,
                attributes,
                head,
                tail,
                secret_unknowns,
            },
        )
}

const LOG_POLICIES: &str = r#"{"policies": [
  {"id": "drop", "name": "drop", "log": {"match": [{"log_attribute": "fate", "exact": "drop"}], "keep": "none"}},
  {"id": "keep", "name": "keep", "log": {"match": [{"log_attribute": "fate", "exact": "keep"}], "keep": "all"}},
  {"id": "redact", "name": "redact", "log": {"match": [{"log_attribute": "fate", "exact": "redact"}], "keep": "all",
   "transform": {"redact": [{"log_attribute": "secret"}]}}}
]}"#;

// -------------------------------------------------------------- metrics

#[derive(Debug, Clone)]
struct MetricShape {
    name: &'static str,
    points: Vec<Vec<Unknown>>,
    head: Vec<Unknown>,
    tail: Vec<Unknown>,
}

impl RecordShape for MetricShape {
    fn dropped(&self) -> bool {
        self.name == "drop.me"
    }

    fn changed(&self) -> bool {
        false
    }

    fn points(&self) -> u64 {
        self.points.len() as u64
    }

    fn encode(&self, _after_policies: bool) -> Vec<u8> {
        let mut out = Vec::new();
        put_unknowns(&mut out, &self.head);
        put_len(&mut out, 1, self.name.as_bytes());
        let mut gauge = Vec::new();
        for unknowns in &self.points {
            let mut point = Vec::new();
            put_len(&mut point, 7, &key_value("host", "a", &[]));
            put_key(&mut point, 4, 1);
            point.extend_from_slice(&1.5f64.to_bits().to_le_bytes());
            put_unknowns(&mut point, unknowns);
            put_len(&mut gauge, 1, &point);
        }
        put_len(&mut out, 5, &gauge);
        put_unknowns(&mut out, &self.tail);
        out
    }
}

fn metric() -> impl Strategy<Value = MetricShape> {
    (
        prop_oneof![Just("keep.me"), Just("drop.me"), Just("other")],
        vec(unknowns(), 0..3),
        unknowns(),
        unknowns(),
    )
        .prop_map(|(name, points, head, tail)| MetricShape {
            name,
            points,
            head,
            tail,
        })
}

const METRIC_POLICIES: &str = r#"{"policies": [
  {"id": "drop", "name": "drop", "metric": {"match": [{"metric_field": "name", "exact": "drop.me"}], "keep": false}},
  {"id": "keep", "name": "keep", "metric": {"match": [{"metric_field": "name", "exact": "keep.me"}], "keep": true}}
]}"#;

// --------------------------------------------------------------- traces

#[derive(Debug, Clone)]
struct SpanShape {
    /// The `fate` attribute: "", "drop" (sampled at 0 %) or "sample" (at
    /// 100 %, which records `th:0` in the tracestate).
    fate: &'static str,
    name: String,
    head: Vec<Unknown>,
    tail: Vec<Unknown>,
}

impl RecordShape for SpanShape {
    fn dropped(&self) -> bool {
        self.fate == "drop"
    }

    fn changed(&self) -> bool {
        self.fate == "sample"
    }

    fn encode(&self, after_policies: bool) -> Vec<u8> {
        let mut out = Vec::new();
        put_unknowns(&mut out, &self.head);
        put_len(&mut out, 1, &[0xab; 16]);
        put_len(&mut out, 2, &[0xcd; 8]);
        put_len(&mut out, 5, self.name.as_bytes());
        if !self.fate.is_empty() {
            put_len(&mut out, 9, &key_value("fate", self.fate, &[]));
        }
        put_unknowns(&mut out, &self.tail);
        if after_policies && self.changed() {
            // A tracestate the span did not have goes at its end.
            put_len(&mut out, 3, b"ot=th:0");
        }
        out
    }
}

fn span() -> impl Strategy<Value = SpanShape> {
    (
        prop_oneof![Just(""), Just("drop"), Just("sample")],
        text(),
        unknowns(),
        unknowns(),
    )
        .prop_map(|(fate, name, head, tail)| SpanShape {
            fate,
            name,
            head,
            tail,
        })
}

const TRACE_POLICIES: &str = r#"{"policies": [
  {"id": "drop", "name": "drop", "trace": {"match": [{"span_attribute": "fate", "exact": "drop"}], "keep": {"percentage": 0}}},
  {"id": "sample", "name": "sample", "trace": {"match": [{"span_attribute": "fate", "exact": "sample"}], "keep": {"percentage": 100}}}
]}"#;

// ---------------------------------------------------------------- check

fn check<R: RecordShape>(
    signal: Signal,
    policies: &str,
    request: &Request<R>,
) -> Result<(), TestCaseError> {
    let (engine, _registry) = common::engine_from(policies, PolicyFormat::Json);
    let payload = request.encode(false);
    let filtered = tero_otlp::filter(&engine, Format::OtlpProtobuf, signal, &payload)
        .map_err(|e| TestCaseError::fail(format!("valid request refused: {e}")))?;

    let records: Vec<&R> = request.records().collect();
    let dropped: Vec<&&R> = records.iter().filter(|r| r.dropped()).collect();
    let expected = if !records.is_empty() && dropped.len() == records.len() {
        Output::AllDropped
    } else if dropped.is_empty() && !records.iter().any(|r| r.changed()) {
        Output::Unchanged
    } else {
        Output::Rewritten(request.encode(true))
    };
    prop_assert_eq!(&filtered.output, &expected);
    if let Output::Rewritten(bytes) = &filtered.output {
        prop_assert!(convert::protobuf_to_json(signal, bytes).is_ok());
    }

    let size = |r: &R| r.encode(false).len() as u64;
    let counts = filtered.counts;
    prop_assert_eq!(
        counts.records_in,
        records.iter().map(|r| r.points()).sum::<u64>()
    );
    prop_assert_eq!(
        counts.records_dropped,
        dropped.iter().map(|r| r.points()).sum::<u64>()
    );
    prop_assert_eq!(
        counts.protobuf_bytes_in,
        records.iter().map(|r| size(r)).sum::<u64>()
    );
    let drop_stats = engine
        .policies()
        .iter()
        .find(|p| p.id == "drop")
        .map(|p| p.runtime.stats.peek())
        .unwrap_or_default();
    prop_assert_eq!(drop_stats.records_dropped, counts.records_dropped);
    prop_assert_eq!(
        drop_stats.bytes_dropped,
        dropped.iter().map(|r| size(r)).sum::<u64>()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn logs_keep_everything_but_what_policies_change(request in request(log_record())) {
        check(Signal::Log, LOG_POLICIES, &request)?;
    }

    #[test]
    fn metrics_keep_everything_but_what_policies_drop(request in request(metric())) {
        check(Signal::Metric, METRIC_POLICIES, &request)?;
    }

    #[test]
    fn spans_keep_everything_but_what_sampling_changes(request in request(span())) {
        check(Signal::Trace, TRACE_POLICIES, &request)?;
    }
}

//! `to_authoring` is the inverse of the loader: every policy shape, shown
//! in the authoring form (YAML or JSON) and read back by `parse_policies`,
//! is the same policy. Checked over thousands of generated policies that
//! cover every matcher kind, selector, enum value, keep form, transform,
//! sampling option, label and extension, with literals chosen to trip a
//! YAML reader (`"200"`, `"true"`, `"null"`, `"~"`, multi-line text…).

use prost::Message as _;
use tero_sdk::policy::{Format, parse_policies, to_authoring, to_authoring_yaml};
use tero_sdk::proto::otel;
use tero_sdk::proto::policy::{
    self as pb, log_matcher, metric_matcher, numeric_value, policy::Target, trace_matcher, value,
};

/// Strings a YAML emitter must quote to keep them strings.
const TRICKY: &[&str] = &[
    "",
    "200",
    "-1",
    "1.5",
    "1e3",
    "0x1F",
    "true",
    "false",
    "yes",
    "no",
    "on",
    "off",
    "null",
    "~",
    ".inf",
    ".nan",
    " lead",
    "trail ",
    "a: b",
    "- x",
    "#c",
    "multi\nline",
    "tab\there",
    "quote'\"",
    "✓ ünïcode",
    "[x]",
    "{y}",
    "*anchor",
    "&ref",
    "!tag",
    "%p",
    "@a",
    "`b`",
    "route",
    "http.response.status_code",
    "^/(healthz|readyz)$",
];

struct Gen(fastrand::Rng);

impl Gen {
    fn bool(&mut self) -> bool {
        self.0.bool()
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.0.usize(..items.len())].clone()
    }

    fn string(&mut self) -> String {
        if self.0.u8(..4) == 0 {
            let len = self.0.usize(..12);
            (0..len).map(|_| self.0.alphanumeric()).collect()
        } else {
            self.pick(TRICKY).to_owned()
        }
    }

    fn double(&mut self) -> f64 {
        match self.0.u8(..10) {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => self.0.i64(-1000..1000) as f64,
            4 => -0.0,
            5 => 1e300,
            6 => f64::MIN_POSITIVE,
            _ => (self.0.f64() - 0.5) * 10f64.powi(self.0.i32(-8..12)),
        }
    }

    fn int(&mut self) -> i64 {
        match self.0.u8(..4) {
            0 => i64::MIN,
            1 => i64::MAX,
            _ => self.0.i64(-100_000..100_000),
        }
    }

    fn path(&mut self) -> pb::AttributePath {
        let len = self.pick(&[0usize, 1, 1, 1, 2, 3]);
        pb::AttributePath {
            path: (0..len).map(|_| self.string()).collect(),
        }
    }

    fn enum_of(&mut self, values: &[i32]) -> i32 {
        self.pick(values)
    }

    fn value(&mut self) -> pb::Value {
        use value::Value as V;
        let v = match self.0.u8(..6) {
            0 => V::BoolValue(self.bool()),
            1 => V::IntValue(self.int()),
            2 => V::DoubleValue(self.double()),
            3 => V::BytesValue((0..self.0.usize(..8)).map(|_| self.0.u8(..)).collect()),
            4 => V::HexValue(self.pick(&["", "0a1b", "DEADBEEF", "zz"]).to_owned()),
            _ => V::StringValue(self.string()),
        };
        pb::Value { value: Some(v) }
    }

    fn numeric(&mut self) -> pb::NumericValue {
        let v = if self.bool() {
            numeric_value::Value::IntValue(self.int())
        } else {
            numeric_value::Value::DoubleValue(self.double())
        };
        pb::NumericValue { value: Some(v) }
    }
}

/// Generates the match member of any of the three matcher messages.
macro_rules! gen_match {
    ($g:expr, $m:path) => {{
        use $m as M;
        match $g.0.u8(..11) {
            0 => M::Exact($g.string()),
            1 => M::Regex($g.string()),
            2 => M::Exists($g.bool()),
            3 => M::StartsWith($g.string()),
            4 => M::EndsWith($g.string()),
            5 => M::Contains($g.string()),
            6 => M::Equals($g.value()),
            7 => M::Gt($g.numeric()),
            8 => M::Gte($g.numeric()),
            9 => M::Lt($g.numeric()),
            _ => M::Lte($g.numeric()),
        }
    }};
}

fn all<E: Copy + Into<i32>>(values: &[E]) -> Vec<i32> {
    values.iter().map(|&v| v.into()).collect()
}

fn metric_matcher(g: &mut Gen) -> pb::MetricMatcher {
    use metric_matcher::Field as F;
    let field = match g.0.u8(..7) {
        0 => Some(F::MetricField(g.enum_of(&all(&[
            pb::MetricField::Unspecified,
            pb::MetricField::Name,
            pb::MetricField::Description,
            pb::MetricField::Unit,
            pb::MetricField::ResourceSchemaUrl,
            pb::MetricField::ScopeSchemaUrl,
            pb::MetricField::ScopeName,
            pb::MetricField::ScopeVersion,
        ])))),
        1 => Some(F::DatapointAttribute(g.path())),
        2 => Some(F::ResourceAttribute(g.path())),
        3 => Some(F::ScopeAttribute(g.path())),
        4 => Some(F::MetricType(g.enum_of(&all(&[
            pb::MetricType::Unspecified,
            pb::MetricType::Gauge,
            pb::MetricType::Sum,
            pb::MetricType::Histogram,
            pb::MetricType::ExponentialHistogram,
            pb::MetricType::Summary,
        ])))),
        5 => Some(F::AggregationTemporality(g.enum_of(&all(&[
            pb::AggregationTemporality::Unspecified,
            pb::AggregationTemporality::Delta,
            pb::AggregationTemporality::Cumulative,
        ])))),
        _ => None,
    };
    // An enum selector without a match reads as `exists: true` (the one
    // shape the authoring form cannot tell apart), so it always has one.
    let needs_match = matches!(field, Some(F::MetricType(_) | F::AggregationTemporality(_)));
    let r#match = (needs_match || g.0.u8(..8) != 0).then(|| gen_match!(g, metric_matcher::Match));
    pb::MetricMatcher {
        field,
        r#match,
        negate: g.bool(),
        case_insensitive: g.bool(),
    }
}

const LOG_FIELDS: &[pb::LogField] = &[
    pb::LogField::Unspecified,
    pb::LogField::Body,
    pb::LogField::SeverityText,
    pb::LogField::TraceId,
    pb::LogField::SpanId,
    pb::LogField::EventName,
    pb::LogField::ResourceSchemaUrl,
    pb::LogField::ScopeSchemaUrl,
];

/// Generates any of the log selector oneofs (they share one shape).
macro_rules! gen_log_sel {
    ($g:expr, $t:path, $f:ident, $l:ident, $r:ident, $s:ident) => {{
        use $t as T;
        match $g.0.u8(..5) {
            0 => Some(T::$f($g.enum_of(&all(LOG_FIELDS)))),
            1 => Some(T::$l($g.path())),
            2 => Some(T::$r($g.path())),
            3 => Some(T::$s($g.path())),
            _ => None,
        }
    }};
}

fn log_target(g: &mut Gen) -> pb::LogTarget {
    let r#match = (0..g.0.usize(..4))
        .map(|_| pb::LogMatcher {
            field: gen_log_sel!(
                g,
                pb::log_matcher::Field,
                LogField,
                LogAttribute,
                ResourceAttribute,
                ScopeAttribute
            ),
            r#match: (g.0.u8(..8) != 0).then(|| gen_match!(g, log_matcher::Match)),
            negate: g.bool(),
            case_insensitive: g.bool(),
        })
        .collect();
    let sample_key = g.bool().then(|| pb::LogSampleKey {
        field: gen_log_sel!(
            g,
            pb::log_sample_key::Field,
            LogField,
            LogAttribute,
            ResourceAttribute,
            ScopeAttribute
        ),
    });
    let transform = g.bool().then(|| pb::LogTransform {
        remove: (0..g.0.usize(..3))
            .map(|_| pb::LogRemove {
                field: gen_log_sel!(
                    g,
                    pb::log_remove::Field,
                    LogField,
                    LogAttribute,
                    ResourceAttribute,
                    ScopeAttribute
                ),
            })
            .collect(),
        redact: (0..g.0.usize(..3))
            .map(|_| pb::LogRedact {
                field: gen_log_sel!(
                    g,
                    pb::log_redact::Field,
                    LogField,
                    LogAttribute,
                    ResourceAttribute,
                    ScopeAttribute
                ),
                replacement: if g.bool() {
                    "[REDACTED]".into()
                } else {
                    g.string()
                },
                regex: g.bool().then(|| g.string()),
            })
            .collect(),
        rename: (0..g.0.usize(..3))
            .map(|_| pb::LogRename {
                from: gen_log_sel!(
                    g,
                    pb::log_rename::From,
                    FromLogField,
                    FromLogAttribute,
                    FromResourceAttribute,
                    FromScopeAttribute
                ),
                to: g.string(),
                upsert: g.bool(),
            })
            .collect(),
        add: (0..g.0.usize(..3))
            .map(|_| pb::LogAdd {
                field: gen_log_sel!(
                    g,
                    pb::log_add::Field,
                    LogField,
                    LogAttribute,
                    ResourceAttribute,
                    ScopeAttribute
                ),
                value: g.string(),
                upsert: g.bool(),
            })
            .collect(),
    });
    let keep = g.pick(&[
        "", "all", "none", "25%", "0%", "100%", "10/s", "1000/m", "x",
    ]);
    pb::LogTarget {
        r#match,
        keep: keep.to_owned(),
        transform,
        sample_key,
    }
}

fn trace_matcher(g: &mut Gen) -> pb::TraceMatcher {
    use trace_matcher::Field as F;
    let field = match g.0.u8(..10) {
        0 => Some(F::TraceField(g.enum_of(&all(&[
            pb::TraceField::Unspecified,
            pb::TraceField::Name,
            pb::TraceField::TraceId,
            pb::TraceField::SpanId,
            pb::TraceField::ParentSpanId,
            pb::TraceField::TraceState,
            pb::TraceField::ResourceSchemaUrl,
            pb::TraceField::ScopeSchemaUrl,
            pb::TraceField::ScopeName,
            pb::TraceField::ScopeVersion,
        ])))),
        1 => Some(F::SpanAttribute(g.path())),
        2 => Some(F::ResourceAttribute(g.path())),
        3 => Some(F::ScopeAttribute(g.path())),
        4 => Some(F::SpanKind(g.enum_of(&all(&[
            pb::SpanKind::Unspecified,
            pb::SpanKind::Internal,
            pb::SpanKind::Server,
            pb::SpanKind::Client,
            pb::SpanKind::Producer,
            pb::SpanKind::Consumer,
        ])))),
        5 => Some(F::SpanStatus(g.enum_of(&all(&[
            pb::SpanStatusCode::Unspecified,
            pb::SpanStatusCode::Ok,
            pb::SpanStatusCode::Error,
        ])))),
        6 => Some(F::EventName(g.string())),
        7 => Some(F::EventAttribute(g.path())),
        8 => Some(F::LinkTraceId(g.string())),
        _ => None,
    };
    let needs_match = matches!(field, Some(F::SpanKind(_) | F::SpanStatus(_)));
    let r#match = (needs_match || g.0.u8(..8) != 0).then(|| gen_match!(g, trace_matcher::Match));
    pb::TraceMatcher {
        field,
        r#match,
        negate: g.bool(),
        case_insensitive: g.bool(),
    }
}

fn sampling(g: &mut Gen) -> pb::TraceSamplingConfig {
    let percentage = match g.0.u8(..6) {
        0 => 0.0,
        1 => 100.0,
        2 => g.0.u8(..=100) as f32,
        3 => f32::NAN,
        _ => g.0.f32() * 100.0,
    };
    let modes = all(&[
        pb::SamplingMode::Unspecified,
        pb::SamplingMode::HashSeed,
        pb::SamplingMode::Proportional,
        pb::SamplingMode::Equalizing,
    ]);
    pb::TraceSamplingConfig {
        percentage,
        mode: g.bool().then(|| g.enum_of(&modes)),
        sampling_precision: g.bool().then(|| g.0.u32(..20)),
        hash_seed: g.bool().then(|| g.0.u32(..)),
        fail_closed: g.bool().then(|| g.bool()),
    }
}

fn label(g: &mut Gen) -> otel::KeyValue {
    use otel::any_value::Value as A;
    let value = match g.0.u8(..8) {
        0 => A::BoolValue(g.bool()),
        1 => A::IntValue(g.int()),
        2 => A::DoubleValue(g.0.f64() * 1000.0),
        // Not scalars: the whole list is then shown in OTLP JSON.
        3 if g.0.u8(..4) == 0 => A::BytesValue(vec![1, 2, 255]),
        4 if g.0.u8(..4) == 0 => A::ArrayValue(otel::ArrayValue {
            values: vec![otel::AnyValue {
                value: Some(A::StringValue(g.string())),
            }],
        }),
        _ => A::StringValue(g.string()),
    };
    otel::KeyValue {
        key: g
            .pick(&["team", "tero.mode", "tero.source", "env", "200", "a.b"])
            .into(),
        value: Some(otel::AnyValue { value: Some(value) }),
    }
}

fn extension(g: &mut Gen) -> pb::Extension {
    let config = match g.0.u8(..4) {
        0 => Vec::new(),
        1 => br#"{"a":[1,2],"b":"x"}"#.to_vec(),
        2 => b"{ not compact }".to_vec(),
        _ => (0..g.0.usize(..16)).map(|_| g.0.u8(..)).collect(),
    };
    pb::Extension {
        r#type: g.string(),
        version: g.pick(&["", "1", "v2.0"]).into(),
        config,
        mode: g.0.i32(0..=5),
    }
}

fn policy(g: &mut Gen) -> pb::Policy {
    let target = match g.0.u8(..4) {
        0 => Some(Target::Metric(pb::MetricTarget {
            r#match: (0..g.0.usize(..4)).map(|_| metric_matcher(g)).collect(),
            keep: g.bool(),
        })),
        1 => Some(Target::Log(log_target(g))),
        2 => Some(Target::Trace(pb::TraceTarget {
            r#match: (0..g.0.usize(..4)).map(|_| trace_matcher(g)).collect(),
            keep: g.bool().then(|| sampling(g)),
        })),
        _ => None,
    };
    pb::Policy {
        id: g.string(),
        name: g.string(),
        description: g.string(),
        enabled: g.bool(),
        created_at_unix_nano: if g.bool() { 0 } else { g.0.u64(..) },
        modified_at_unix_nano: if g.bool() { 0 } else { g.0.u64(..) },
        labels: (0..g.0.usize(..4)).map(|_| label(g)).collect(),
        target,
        extensions: (0..g.0.usize(..3)).map(|_| extension(g)).collect(),
    }
}

/// Labels are a set: the map form does not keep their order. Compared as
/// encoded bytes so that NaN literals compare equal to themselves.
fn canonical(mut p: pb::Policy) -> Vec<u8> {
    p.labels.sort_by(|a, b| a.key.cmp(&b.key));
    p.encode_to_vec()
}

fn read_back(text: &str, format: Format) -> pb::Policy {
    let loaded = parse_policies(text, format)
        .unwrap_or_else(|e| panic!("the authoring form does not parse: {e}\n{text}"));
    assert!(
        loaded.rejected.is_empty() && loaded.warnings.is_empty(),
        "rejected {:?}, warnings {:?}\n{text}",
        loaded.rejected,
        loaded.warnings
    );
    assert_eq!(loaded.policies.len(), 1, "{text}");
    loaded.policies.into_iter().next().expect("one policy")
}

#[test]
fn every_policy_shape_reads_back_as_itself_from_yaml_and_json() {
    let mut g = Gen(fastrand::Rng::with_seed(18));
    for i in 0..4000 {
        let original = policy(&mut g);
        let yaml = to_authoring_yaml(&original);
        let from_yaml = read_back(&yaml, Format::Yaml);
        assert!(
            canonical(from_yaml.clone()) == canonical(original.clone()),
            "case {i}: YAML round trip differs\n{yaml}\noriginal: {original:#?}\nread back: {from_yaml:#?}"
        );
        let json = serde_json::to_string(&to_authoring(&original)).expect("serializes");
        let from_json = read_back(&json, Format::Json);
        assert!(
            canonical(from_json.clone()) == canonical(original.clone()),
            "case {i}: JSON round trip differs\n{json}\noriginal: {original:#?}\nread back: {from_json:#?}"
        );
    }
}

#[test]
fn the_authoring_form_is_what_authors_write() {
    let text = r#"
id: drop-probes
name: Drop probe latency
metric:
  match:
    - metric_field: name
      exact: http_server_request_duration_seconds
    - datapoint_attribute: route
      regex: '^/(healthz|readyz)$'
    - datapoint_attribute: code
      equals: 200
    - datapoint_attribute: [a, b]
      equals: '200'
    - metric_type: histogram
  keep: false
"#;
    let policy = read_back(text, Format::Yaml);
    let shown = to_authoring_yaml(&policy);
    assert_eq!(
        shown,
        r#"id: drop-probes
name: Drop probe latency
metric:
  match:
  - metric_field: name
    exact: http_server_request_duration_seconds
  - datapoint_attribute: route
    regex: ^/(healthz|readyz)$
  - datapoint_attribute: code
    equals: 200
  - datapoint_attribute:
    - a
    - b
    equals: '200'
  - metric_type: histogram
  keep: false
"#
    );
    for wire in [
        "metricField",
        "datapointAttribute",
        "intValue",
        "path:",
        "METRIC_",
    ] {
        assert!(!shown.contains(wire), "{wire} in\n{shown}");
    }
}

#[test]
fn logs_traces_labels_and_extensions_are_shown_in_their_short_forms() {
    let text = r#"
id: logs
enabled: false
labels: {team: payments, tero.mode: shadow, weight: 3}
log:
  match:
    - log_field: severity_text
      exact: DEBUG
    - log_attribute: [http, status]
      gte: 500
  keep: 10%
  sample_key: {log_attribute: user_id}
  transform:
    redact: [{log_attribute: password}]
    rename: [{from_log_attribute: usr, to: user, upsert: true}]
extensions:
  - type: x.example
    config: {threshold: 3}
"#;
    let shown = to_authoring_yaml(&read_back(text, Format::Yaml));
    for expected in [
        "enabled: false",
        "labels:\n  team: payments\n  tero.mode: shadow\n  weight: 3\n",
        "- log_field: severity_text\n",
        "gte: 500",
        "keep: 10%",
        "sample_key:\n    log_attribute: user_id",
        "- log_attribute: password\n",
        "from_log_attribute: usr",
        "config:\n    threshold: 3",
    ] {
        assert!(shown.contains(expected), "{expected:?} not in\n{shown}");
    }
    // The redaction's default replacement is not spelled out.
    assert!(!shown.contains("REDACTED"), "{shown}");

    let trace = read_back(
        "id: t\ntrace:\n  match: [{span_kind: server}, {span_status: error, negate: true}]\n  keep: 12.5\n",
        Format::Yaml,
    );
    let shown = to_authoring_yaml(&trace);
    assert!(shown.contains("- span_kind: server\n"), "{shown}");
    assert!(
        shown.contains("span_status: error\n    negate: true"),
        "{shown}"
    );
    assert!(shown.contains("keep: 12.5"), "{shown}");
}

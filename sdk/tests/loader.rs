//! policy-format.md §8: the authoring formats (YAML, JSON) and the proto3 JSON of the
//! sync protocol, all decoded by `parse_policies`, and the worked examples of
//! §10 loading, validating and behaving as described.

mod common;

use common::TestMetric;
use std::borrow::Cow;

use tero_sdk::engine::{
    Decision, Engine, FieldValue, LogSelector, LogView, LogViewMut, StatsRegistry,
};
use tero_sdk::policy::{
    Format, LoadError, LoadedPolicies, parse_policies, parse_policy_value, validate, validate_all,
};
use tero_sdk::proto::otel;
use tero_sdk::proto::policy::{
    self as pb, log_matcher, metric_matcher, numeric_value, policy::Target, trace_matcher, value,
};

// ---------------------------------------------------------------------------
// helpers

fn load(text: &str, format: Format) -> LoadedPolicies {
    let loaded = parse_policies(text, format).expect("the document parses");
    assert!(
        loaded.rejected.is_empty(),
        "rejected: {:?}",
        loaded.rejected
    );
    loaded
}

fn yaml(text: &str) -> Vec<pb::Policy> {
    load(text, Format::Yaml).policies
}

fn one_yaml(text: &str) -> pb::Policy {
    let mut policies = yaml(text);
    assert_eq!(policies.len(), 1);
    policies.remove(0)
}

fn assert_all_valid(policies: &[pb::Policy]) {
    let invalid = validate_all(policies);
    assert!(invalid.is_empty(), "{invalid:?}");
}

fn metric_target(p: &pb::Policy) -> &pb::MetricTarget {
    match &p.target {
        Some(Target::Metric(t)) => t,
        other => panic!("expected a metric target, got {other:?}"),
    }
}

fn log_target(p: &pb::Policy) -> &pb::LogTarget {
    match &p.target {
        Some(Target::Log(t)) => t,
        other => panic!("expected a log target, got {other:?}"),
    }
}

fn trace_target(p: &pb::Policy) -> &pb::TraceTarget {
    match &p.target {
        Some(Target::Trace(t)) => t,
        other => panic!("expected a trace target, got {other:?}"),
    }
}

fn path(segments: &[&str]) -> pb::AttributePath {
    pb::AttributePath {
        path: segments.iter().map(|s| s.to_string()).collect(),
    }
}

/// The single log matcher of a policy built from one YAML matcher body.
fn log_matcher_of(matcher: &str) -> pb::LogMatcher {
    let p = one_yaml(&format!(
        "id: p\nname: p\nlog:\n  match:\n    - {matcher}\n  keep: none\n"
    ));
    log_target(&p).r#match[0].clone()
}

fn metric_matcher_of(matcher: &str) -> pb::MetricMatcher {
    let p = one_yaml(&format!(
        "id: p\nname: p\nmetric:\n  match:\n    - {matcher}\n  keep: false\n"
    ));
    metric_target(&p).r#match[0].clone()
}

fn trace_matcher_of(matcher: &str) -> pb::TraceMatcher {
    let p = one_yaml(&format!(
        "id: p\nname: p\ntrace:\n  match:\n    - {matcher}\n"
    ));
    trace_target(&p).r#match[0].clone()
}

fn equals_of(literal: &str) -> value::Value {
    match log_matcher_of(&format!("log_attribute: a\n      equals: {literal}")).r#match {
        Some(log_matcher::Match::Equals(pb::Value { value: Some(v) })) => v,
        other => panic!("expected equals, got {other:?}"),
    }
}

// A log record as the engine sees it (metrics: common::TestMetric).

fn metric(
    name: &'static str,
    kind: pb::MetricType,
    attrs: &[(&'static str, &'static str)],
) -> TestMetric {
    TestMetric {
        name,
        kind,
        attrs: attrs.to_vec(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Attr {
    Str(String),
    Int(i64),
    Double(f64),
    Map(Vec<(String, Attr)>),
}

fn s(v: &str) -> Attr {
    Attr::Str(v.to_owned())
}

#[derive(Debug, Clone, Default)]
struct TestLog {
    body: Option<String>,
    severity_text: Option<String>,
    trace_id: Option<Vec<u8>>,
    attributes: Vec<(String, Attr)>,
    resource: Vec<(String, Attr)>,
}

fn lookup<'a>(attrs: &'a [(String, Attr)], path: &[String]) -> Option<&'a Attr> {
    let (first, rest) = path.split_first()?;
    let value = attrs.iter().find(|(k, _)| k == first).map(|(_, v)| v)?;
    match (rest.is_empty(), value) {
        (true, v) => Some(v),
        (false, Attr::Map(inner)) => lookup(inner, rest),
        (false, _) => None,
    }
}

fn field_value(v: &Attr) -> FieldValue<'_> {
    match v {
        Attr::Str(s) => FieldValue::str(s),
        Attr::Int(i) => FieldValue::Int(*i),
        Attr::Double(d) => FieldValue::Double(*d),
        Attr::Map(_) => FieldValue::Opaque,
    }
}

impl TestLog {
    fn attr(&self, key: &str) -> Option<&Attr> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn keys(&self) -> Vec<&str> {
        self.attributes.iter().map(|(k, _)| k.as_str()).collect()
    }
}

impl LogView for TestLog {
    fn get(&self, selector: &LogSelector) -> Option<FieldValue<'_>> {
        match selector {
            LogSelector::Field(pb::LogField::Body) => self.body.as_deref().map(FieldValue::str),
            LogSelector::Field(pb::LogField::SeverityText) => {
                self.severity_text.as_deref().map(FieldValue::str)
            }
            LogSelector::Field(pb::LogField::TraceId) => self
                .trace_id
                .as_deref()
                .map(|b| FieldValue::Bytes(Cow::Borrowed(b))),
            LogSelector::LogAttribute(p) => lookup(&self.attributes, p).map(field_value),
            LogSelector::ResourceAttribute(p) => lookup(&self.resource, p).map(field_value),
            _ => None,
        }
    }
}

/// Mutations on flat (single-segment) log attributes and the body.
impl LogViewMut for TestLog {
    fn remove(&mut self, selector: &LogSelector) -> bool {
        match selector {
            LogSelector::Field(pb::LogField::Body) => self.body.take().is_some(),
            LogSelector::LogAttribute(p) if p.len() == 1 => {
                let before = self.attributes.len();
                self.attributes.retain(|(k, _)| *k != p[0]);
                before != self.attributes.len()
            }
            _ => false,
        }
    }

    fn set(&mut self, selector: &LogSelector, value: &str, overwrite: bool) -> bool {
        match selector {
            LogSelector::Field(pb::LogField::Body) => {
                if self.body.is_some() && !overwrite {
                    return false;
                }
                self.body = Some(value.to_owned());
                true
            }
            LogSelector::LogAttribute(p) if p.len() == 1 => {
                match self.attributes.iter_mut().find(|(k, _)| *k == p[0]) {
                    Some(_) if !overwrite => false,
                    Some((_, v)) => {
                        *v = s(value);
                        true
                    }
                    None => {
                        self.attributes.push((p[0].clone(), s(value)));
                        true
                    }
                }
            }
            _ => false,
        }
    }

    fn rename(&mut self, from: &LogSelector, to: &str, upsert: bool) -> bool {
        let LogSelector::LogAttribute(p) = from else {
            return false;
        };
        if p.len() != 1 || self.attr(&p[0]).is_none() {
            return false;
        }
        if self.attr(to).is_some() {
            if !upsert {
                return false;
            }
            self.attributes.retain(|(k, _)| k != to);
        }
        let pos = self
            .attributes
            .iter()
            .position(|(k, _)| *k == p[0])
            .expect("checked above");
        let (_, v) = self.attributes.remove(pos);
        self.attributes.push((to.to_owned(), v));
        true
    }
}

// ---------------------------------------------------------------------------
// file shapes

const METRIC_POLICY_BODY: &str = "name: drop go
metric:
  match:
    - metric_field: name
      starts_with: go_
  keep: false
";

#[test]
fn yaml_with_policies_wrapper() {
    let policies = yaml(
        "policies:
  - id: a
    name: first
    metric:
      match:
        - metric_field: name
          starts_with: go_
      keep: false
  - id: b
    name: second
    log:
      match:
        - log_field: body
          contains: debug
      keep: none
",
    );
    let ids: Vec<&str> = policies.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_all_valid(&policies);

    let m = &metric_target(&policies[0]).r#match[0];
    assert_eq!(
        m.field,
        Some(metric_matcher::Field::MetricField(
            pb::MetricField::Name as i32
        ))
    );
    assert_eq!(
        m.r#match,
        Some(metric_matcher::Match::StartsWith("go_".into()))
    );
    assert!(!metric_target(&policies[0]).keep);
    assert_eq!(log_target(&policies[1]).keep, "none");
}

#[test]
fn yaml_multi_document() {
    let policies = yaml(&format!(
        "id: a\n{METRIC_POLICY_BODY}---\nid: b\n{METRIC_POLICY_BODY}---\npolicies:\n  - id: c\n    name: c\n    log:\n      match:\n        - log_field: body\n          exists: true\n---\n"
    ));
    let ids: Vec<&str> = policies.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_all_valid(&policies);
    assert_eq!(metric_target(&policies[0]), metric_target(&policies[1]));
}

#[test]
fn single_policy_yaml_without_wrapper() {
    let p = one_yaml(&format!("id: solo\n{METRIC_POLICY_BODY}"));
    assert_eq!(p.id, "solo");
    assert_eq!(p.name, "drop go");
    assert!(validate(&p).is_ok());
}

#[test]
fn authoring_json() {
    let json = r#"{"policies": [
        {"id": "m", "name": "m",
         "metric": {"match": [{"metric_field": "name", "starts_with": "go_"},
                              {"datapoint_attribute": ["env"], "exact": "dev"}],
                    "keep": false}},
        {"id": "l", "name": "l",
         "log": {"match": [{"log_attribute": "http.method", "equals": "GET"}],
                 "keep": "10%", "sample_key": {"log_field": "trace_id"}}}
    ]}"#;
    let policies = load(json, Format::Json).policies;
    assert_eq!(policies.len(), 2);
    assert_all_valid(&policies);
    let m = metric_target(&policies[0]);
    assert_eq!(
        m.r#match[1].field,
        Some(metric_matcher::Field::DatapointAttribute(path(&["env"])))
    );
    let l = log_target(&policies[1]);
    assert_eq!(
        l.r#match[0].field,
        Some(log_matcher::Field::LogAttribute(path(&["http.method"])))
    );
    assert_eq!(l.keep, "10%");
    assert_eq!(
        l.sample_key,
        Some(pb::LogSampleKey {
            field: Some(pb::log_sample_key::Field::LogField(
                pb::LogField::TraceId as i32
            ))
        })
    );

    // A bare list of policies and a bare policy are accepted too.
    let list = load(
        r#"[{"id": "x", "name": "x", "log": {"match": [{"log_field": "body", "exists": true}]}}]"#,
        Format::Json,
    );
    assert_eq!(list.policies.len(), 1);
    let bare = load(
        r#"{"id": "x", "name": "x", "log": {"match": [{"log_field": "body", "exists": true}]}}"#,
        Format::Json,
    );
    assert_eq!(list.policies, bare.policies);
}

/// A `SyncResponse` in proto3 JSON as a server sends it: camelCase keys,
/// numeric enums, `{"path": [...]}`, 64-bit integers as strings.
const SYNC_RESPONSE_JSON: &str = r#"{
  "policies": [
    {"id": "metric-1", "name": "Metric", "description": "d", "enabled": true,
     "createdAtUnixNano": "1700000000000000001", "modifiedAtUnixNano": "1700000000000000002",
     "labels": [{"key": "team", "value": {"stringValue": "obs"}}],
     "metric": {"match": [
        {"metricField": 1, "startsWith": "go_", "negate": false, "caseInsensitive": false},
        {"datapointAttribute": {"path": ["route"]}, "regex": "^/(healthz|readyz)$"},
        {"metricType": 2, "exists": true},
        {"aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE", "exists": true},
        {"resourceAttribute": {"path": ["k8s", "namespace"]}, "gte": {"intValue": "1700000000000000003"}},
        {"scopeAttribute": {"path": ["x"]}, "lt": {"doubleValue": 0.5}}],
      "keep": false}},
    {"id": "log-1", "name": "Log", "enabled": true,
     "log": {"match": [
        {"logField": 2, "equals": {"stringValue": "INFO"}, "caseInsensitive": true},
        {"logAttribute": {"path": ["http", "status"]}, "equals": {"intValue": "200"}},
        {"resourceAttribute": {"path": ["service.name"]}, "equals": {"doubleValue": 1.5}},
        {"scopeAttribute": {"path": ["flag"]}, "equals": {"boolValue": true}},
        {"logField": 3, "equals": {"hexValue": "DEADBEEF"}},
        {"logField": "LOG_FIELD_SPAN_ID", "equals": {"bytesValue": "3q2+7w=="}}],
      "keep": "5%",
      "sampleKey": {"logField": 3},
      "transform": {
        "remove": [{"logAttribute": {"path": ["secret"]}}],
        "redact": [{"logField": 1, "replacement": "[X]", "regex": "\\d+"}],
        "rename": [{"fromLogAttribute": {"path": ["a"]}, "to": "b", "upsert": true}],
        "add": [{"resourceAttribute": {"path": ["tag"]}, "value": "v", "upsert": false}]}}},
    {"id": "trace-1", "name": "Trace", "enabled": true,
     "extensions": [{"type": "com.usetero/s3-dump", "version": "1.0.0", "config": "e30=", "mode": 2}],
     "trace": {"match": [
        {"spanKind": 2, "exists": true},
        {"spanStatus": 2, "exists": false},
        {"traceField": 1, "contains": "GET"},
        {"spanAttribute": {"path": ["http.route"]}, "endsWith": "/x"},
        {"eventName": "exception", "exists": true},
        {"eventAttribute": {"path": ["exception.type"]}, "exact": "Boom"},
        {"linkTraceId": "0af7651916cd43dd8448eb211c80319c", "exists": true}],
      "keep": {"percentage": 12.5, "mode": 2, "samplingPrecision": 6, "hashSeed": 7, "failClosed": false}}}
  ],
  "hash": "abc123",
  "syncTimestampUnixNano": "1700000000000000000",
  "recommendedSyncIntervalSeconds": 30,
  "syncType": 1,
  "errorMessage": "",
  "extensionConfigs": []
}"#;

#[test]
fn proto3_json_sync_response_loads_like_the_wire_decoder() {
    let loaded = load(SYNC_RESPONSE_JSON, Format::Json);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.policies.len(), 3);
    assert_all_valid(&loaded.policies);

    // The lenient decoder and the generated proto3 JSON decoder agree.
    let wire: pb::SyncResponse = serde_json::from_str(SYNC_RESPONSE_JSON).unwrap();
    assert_eq!(loaded.policies, wire.policies);
}

#[test]
fn proto3_json_sync_response_details() {
    let policies = load(SYNC_RESPONSE_JSON, Format::Json).policies;
    let p = &policies[0];
    assert_eq!(p.created_at_unix_nano, 1_700_000_000_000_000_001);
    assert_eq!(p.modified_at_unix_nano, 1_700_000_000_000_000_002);
    assert_eq!(p.labels[0].key, "team");
    let m = metric_target(p);
    assert_eq!(
        m.r#match[2].field,
        Some(metric_matcher::Field::MetricType(
            pb::MetricType::Sum as i32
        ))
    );
    assert_eq!(
        m.r#match[3].field,
        Some(metric_matcher::Field::AggregationTemporality(
            pb::AggregationTemporality::Cumulative as i32
        ))
    );
    assert_eq!(
        m.r#match[4].r#match,
        Some(metric_matcher::Match::Gte(pb::NumericValue {
            value: Some(numeric_value::Value::IntValue(1_700_000_000_000_000_003))
        }))
    );

    let l = log_target(&policies[1]);
    assert_eq!(
        l.r#match[4].r#match,
        Some(log_matcher::Match::Equals(pb::Value {
            value: Some(value::Value::HexValue("DEADBEEF".into()))
        }))
    );
    assert_eq!(
        l.r#match[5].r#match,
        Some(log_matcher::Match::Equals(pb::Value {
            value: Some(value::Value::BytesValue(vec![0xde, 0xad, 0xbe, 0xef]))
        }))
    );
    let t = l.transform.as_ref().unwrap();
    assert_eq!(t.redact[0].regex.as_deref(), Some("\\d+"));
    assert_eq!(
        t.rename[0].from,
        Some(pb::log_rename::From::FromLogAttribute(path(&["a"])))
    );

    let tr = &policies[2];
    assert_eq!(tr.extensions[0].config, b"{}");
    assert_eq!(tr.extensions[0].mode, pb::ExtensionMode::Dropped as i32);
    let keep = trace_target(tr).keep.unwrap();
    assert_eq!(keep.percentage, 12.5);
    assert_eq!(keep.mode, Some(pb::SamplingMode::Proportional as i32));
    assert_eq!(keep.sampling_precision, Some(6));
    assert_eq!(keep.hash_seed, Some(7));
    assert_eq!(keep.fail_closed, Some(false));
}

#[test]
fn server_serialised_sync_response_loads_back_unchanged() {
    // What a server emits (pbjson: every default present) must load as the
    // same policies, without warnings.
    let wire: pb::SyncResponse = serde_json::from_str(SYNC_RESPONSE_JSON).unwrap();
    let emitted = serde_json::to_string_pretty(&wire).unwrap();
    let loaded = load(&emitted, Format::Json);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.policies, wire.policies);
    // YAML is a superset of JSON: the same text loads as YAML too.
    let as_yaml = load(&emitted, Format::Yaml);
    assert_eq!(as_yaml.policies, wire.policies);
}

#[test]
fn camel_case_and_snake_case_keys_are_equivalent() {
    let snake = one_yaml(
        "id: p
name: p
log:
  match:
    - log_field: severity_text
      starts_with: warn
      case_insensitive: true
    - resource_attribute: service.name
      ends_with: -api
  keep: 20%
  sample_key:
    log_attribute: [request, id]
  transform:
    rename:
      - from_log_attribute: a
        to: b
        upsert: true
",
    );
    let camel = one_yaml(
        "id: p
name: p
log:
  match:
    - logField: severity_text
      startsWith: warn
      caseInsensitive: true
    - resourceAttribute: service.name
      endsWith: -api
  keep: 20%
  sampleKey:
    logAttribute: [request, id]
  transform:
    rename:
      - fromLogAttribute: a
        to: b
        upsert: true
",
    );
    assert_eq!(snake, camel);
    let m = &log_target(&snake).r#match[0];
    assert!(m.case_insensitive);

    let snake = one_yaml(
        "id: t\nname: t\ntrace:\n  match:\n    - span_kind: server\n  keep:\n    percentage: 5\n    sampling_precision: 3\n    hash_seed: 9\n    fail_closed: false\n",
    );
    let camel = one_yaml(
        "id: t\nname: t\ntrace:\n  match:\n    - spanKind: server\n  keep:\n    percentage: 5\n    samplingPrecision: 3\n    hashSeed: 9\n    failClosed: false\n",
    );
    assert_eq!(snake, camel);
    let keep = trace_target(&snake).keep.unwrap();
    assert_eq!(
        (keep.sampling_precision, keep.hash_seed, keep.fail_closed),
        (Some(3), Some(9), Some(false))
    );
}

// ---------------------------------------------------------------------------
// enum spellings and attribute paths

#[test]
fn enum_spellings_full_name_suffix_any_case_and_number() {
    use metric_matcher::Field as MF;
    for spelling in ["METRIC_TYPE_GAUGE", "gauge", "Gauge", "1", "'1'"] {
        assert_eq!(
            metric_matcher_of(&format!("metric_type: {spelling}")).field,
            Some(MF::MetricType(pb::MetricType::Gauge as i32)),
            "{spelling}"
        );
    }
    assert_eq!(
        metric_matcher_of("metric_type: exponential_histogram").field,
        Some(MF::MetricType(pb::MetricType::ExponentialHistogram as i32))
    );
    assert_eq!(
        metric_matcher_of("aggregation_temporality: cumulative").field,
        Some(MF::AggregationTemporality(
            pb::AggregationTemporality::Cumulative as i32
        ))
    );
    assert_eq!(
        metric_matcher_of("metric_field: SCOPE_VERSION\n      exact: v1").field,
        Some(MF::MetricField(pb::MetricField::ScopeVersion as i32))
    );

    use log_matcher::Field as LF;
    for spelling in [
        "LOG_FIELD_SEVERITY_TEXT",
        "severity_text",
        "SEVERITY_TEXT",
        "2",
    ] {
        assert_eq!(
            log_matcher_of(&format!("log_field: {spelling}\n      exact: INFO")).field,
            Some(LF::LogField(pb::LogField::SeverityText as i32)),
            "{spelling}"
        );
    }
    assert_eq!(
        log_matcher_of("log_field: body\n      exists: true").field,
        Some(LF::LogField(pb::LogField::Body as i32))
    );

    use trace_matcher::Field as TF;
    for (spelling, kind) in [
        ("CONSUMER", pb::SpanKind::Consumer),
        ("consumer", pb::SpanKind::Consumer),
        ("SPAN_KIND_SERVER", pb::SpanKind::Server),
        ("3", pb::SpanKind::Client),
    ] {
        assert_eq!(
            trace_matcher_of(&format!("span_kind: {spelling}")).field,
            Some(TF::SpanKind(kind as i32)),
            "{spelling}"
        );
    }
    for (spelling, status) in [
        ("error", pb::SpanStatusCode::Error),
        ("ok", pb::SpanStatusCode::Ok),
        ("OK", pb::SpanStatusCode::Ok),
        ("unset", pb::SpanStatusCode::Unspecified),
        ("SPAN_STATUS_CODE_UNSET", pb::SpanStatusCode::Unspecified),
        ("SPAN_STATUS_CODE_ERROR", pb::SpanStatusCode::Error),
        ("2", pb::SpanStatusCode::Error),
    ] {
        assert_eq!(
            trace_matcher_of(&format!("span_status: {spelling}")).field,
            Some(TF::SpanStatus(status as i32)),
            "{spelling}"
        );
    }
    assert_eq!(
        trace_matcher_of("trace_field: trace_state\n      contains: 'ot='").field,
        Some(TF::TraceField(pb::TraceField::TraceState as i32))
    );

    for (spelling, mode) in [
        ("proportional", pb::SamplingMode::Proportional),
        ("SAMPLING_MODE_EQUALIZING", pb::SamplingMode::Equalizing),
        ("Hash_Seed", pb::SamplingMode::HashSeed),
        ("1", pb::SamplingMode::HashSeed),
    ] {
        let p = one_yaml(&format!(
            "id: t\nname: t\ntrace:\n  match:\n    - span_kind: server\n  keep:\n    percentage: 10\n    mode: {spelling}\n"
        ));
        assert_eq!(
            trace_target(&p).keep.unwrap().mode,
            Some(mode as i32),
            "{spelling}"
        );
    }
}

#[test]
fn unknown_enum_spelling_rejects_the_policy() {
    let loaded = parse_policies(
        "id: p\nname: p\nmetric:\n  match:\n    - metric_type: gauges\n  keep: false\n",
        Format::Yaml,
    )
    .unwrap();
    assert!(loaded.policies.is_empty());
    assert_eq!(loaded.rejected.len(), 1);
    assert_eq!(loaded.rejected[0].id.as_deref(), Some("p"));
    assert_eq!(
        loaded.rejected[0].errors[0].field_path(),
        "metric.match[0].metric_type"
    );
}

#[test]
fn attribute_path_forms() {
    use log_matcher::Field as LF;
    let cases: [(&str, &[&str]); 6] = [
        ("env", &["env"]),
        ("http.method", &["http.method"]),
        ("[http, method]", &["http", "method"]),
        ("['http.method']", &["http.method"]),
        ("{path: [http, method]}", &["http", "method"]),
        ("{\"path\": [\"a\"]}", &["a"]),
    ];
    for (written, expected) in cases {
        assert_eq!(
            log_matcher_of(&format!("log_attribute: {written}\n      exists: true")).field,
            Some(LF::LogAttribute(path(expected))),
            "{written}"
        );
    }
    // The nested and the flat dotted form address different fields.
    assert_ne!(
        log_matcher_of("log_attribute: [http, method]\n      exists: true").field,
        log_matcher_of("log_attribute: http.method\n      exists: true").field
    );
}

#[test]
fn nested_and_flat_paths_select_different_attributes() {
    let engine = Engine::compile(
        &yaml(
            "policies:
  - id: nested
    name: nested
    log:
      match:
        - log_attribute: [http, method]
          exact: GET
      keep: none
",
        ),
        &StatsRegistry::new(),
    );
    let mut nested = TestLog {
        attributes: vec![("http".into(), Attr::Map(vec![("method".into(), s("GET"))]))],
        ..Default::default()
    };
    let mut flat = TestLog {
        attributes: vec![("http.method".into(), s("GET"))],
        ..Default::default()
    };
    assert_eq!(engine.evaluate_log(&mut nested), Decision::Drop);
    assert_eq!(engine.evaluate_log(&mut flat), Decision::NoMatch);
}

// ---------------------------------------------------------------------------
// typed literals

#[test]
fn equals_scalar_shorthands_pick_the_variant_from_the_literal() {
    use value::Value as V;
    assert_eq!(equals_of("true"), V::BoolValue(true));
    assert_eq!(equals_of("false"), V::BoolValue(false));
    assert_eq!(equals_of("200"), V::IntValue(200));
    assert_eq!(equals_of("-3"), V::IntValue(-3));
    assert_eq!(equals_of("0.5"), V::DoubleValue(0.5));
    assert_eq!(equals_of("200.0"), V::DoubleValue(200.0));
    assert_eq!(equals_of("foo"), V::StringValue("foo".into()));
    assert_eq!(equals_of("'200'"), V::StringValue("200".into()));
    assert_eq!(equals_of("'true'"), V::StringValue("true".into()));
    assert_eq!(
        equals_of("9007199254740993"),
        V::IntValue(9_007_199_254_740_993),
        "int64 keeps full precision"
    );
}

#[test]
fn equals_canonical_typed_forms() {
    use value::Value as V;
    assert_eq!(equals_of("{int_value: 5}"), V::IntValue(5));
    assert_eq!(
        equals_of("{int_value: '1700000000000000001'}"),
        V::IntValue(1_700_000_000_000_000_001)
    );
    assert_eq!(equals_of("{intValue: 7}"), V::IntValue(7));
    assert_eq!(equals_of("{double_value: 2}"), V::DoubleValue(2.0));
    assert_eq!(equals_of("{bool_value: true}"), V::BoolValue(true));
    assert_eq!(
        equals_of("{string_value: '200'}"),
        V::StringValue("200".into())
    );
    assert_eq!(
        equals_of("{hex_value: DEADbeef}"),
        V::HexValue("DEADbeef".into())
    );
    assert_eq!(
        equals_of("{bytes_value: '3q2+7w=='}"),
        V::BytesValue(vec![0xde, 0xad, 0xbe, 0xef])
    );
}

#[test]
fn comparator_literals() {
    use numeric_value::Value as N;
    let cmp = |m: &str| match log_matcher_of(&format!("log_attribute: a\n      {m}")).r#match {
        Some(log_matcher::Match::Gt(v)) => ("gt", v.value.unwrap()),
        Some(log_matcher::Match::Gte(v)) => ("gte", v.value.unwrap()),
        Some(log_matcher::Match::Lt(v)) => ("lt", v.value.unwrap()),
        Some(log_matcher::Match::Lte(v)) => ("lte", v.value.unwrap()),
        other => panic!("expected a comparator, got {other:?}"),
    };
    assert_eq!(cmp("gte: 500"), ("gte", N::IntValue(500)));
    assert_eq!(cmp("gt: 0.5"), ("gt", N::DoubleValue(0.5)));
    assert_eq!(cmp("lt: -1"), ("lt", N::IntValue(-1)));
    assert_eq!(
        cmp("lte: 1700000000000000001"),
        ("lte", N::IntValue(1_700_000_000_000_000_001))
    );
    assert_eq!(cmp("gt: {int_value: '42'}"), ("gt", N::IntValue(42)));
    assert_eq!(cmp("gt: {double_value: 1.5}"), ("gt", N::DoubleValue(1.5)));
}

#[test]
fn typed_equality_compares_ints_and_doubles_numerically() {
    let engine = Engine::compile(
        &yaml(
            "id: p\nname: p\nlog:\n  match:\n    - log_attribute: code\n      equals: 200\n  keep: none\n",
        ),
        &StatsRegistry::new(),
    );
    let with = |v: Attr| TestLog {
        attributes: vec![("code".into(), v)],
        ..Default::default()
    };
    assert_eq!(
        engine.evaluate_log(&mut with(Attr::Int(200))),
        Decision::Drop
    );
    assert_eq!(
        engine.evaluate_log(&mut with(Attr::Double(200.0))),
        Decision::Drop
    );
    assert_eq!(engine.evaluate_log(&mut with(s("200"))), Decision::NoMatch);
    assert_eq!(
        engine.evaluate_log(&mut with(Attr::Int(201))),
        Decision::NoMatch
    );
}

// ---------------------------------------------------------------------------
// defaults

#[test]
fn metric_type_selector_without_match_means_exists_true() {
    let implicit =
        one_yaml("id: p\nname: p\nmetric:\n  match:\n    - metric_type: gauge\n  keep: false\n");
    assert!(validate(&implicit).is_ok());
    let engine = Engine::compile(&[implicit], &StatsRegistry::new());
    assert!(!engine.evaluate_metric(&metric("a", pb::MetricType::Gauge, &[])));
    assert!(engine.evaluate_metric(&metric("a", pb::MetricType::Sum, &[])));
    assert!(
        !engine
            .metric_verdict(&metric("a", pb::MetricType::Sum, &[]))
            .matched()
    );

    let differs = one_yaml(
        "id: p\nname: p\nmetric:\n  match:\n    - metric_type: gauge\n      exists: false\n  keep: false\n",
    );
    let engine = Engine::compile(&[differs], &StatsRegistry::new());
    assert!(engine.evaluate_metric(&metric("a", pb::MetricType::Gauge, &[])));
    assert!(!engine.evaluate_metric(&metric("a", pb::MetricType::Histogram, &[])));
}

#[test]
fn omitted_enum_selector_match_is_filled_in_as_exists_true() {
    let implicit =
        one_yaml("id: p\nname: p\nmetric:\n  match:\n    - metric_type: gauge\n  keep: false\n");
    let explicit = one_yaml(
        "id: p\nname: p\nmetric:\n  match:\n    - metric_type: gauge\n      exists: true\n  keep: false\n",
    );
    assert_eq!(
        metric_target(&implicit).r#match[0].r#match,
        Some(metric_matcher::Match::Exists(true))
    );
    assert_eq!(implicit, explicit);
}

#[test]
fn enabled_defaults_to_true() {
    let on =
        one_yaml("id: p\nname: p\nlog:\n  match:\n    - log_field: body\n      exists: true\n");
    assert!(on.enabled);
    let off = one_yaml(
        "id: p\nname: p\nenabled: false\nlog:\n  match:\n    - log_field: body\n      exists: true\n",
    );
    assert!(!off.enabled);
    let json = load(
        r#"{"id": "p", "name": "p", "log": {"match": [{"logField": 1, "exists": true}]}}"#,
        Format::Json,
    );
    assert!(json.policies[0].enabled);

    // A disabled policy exists for reporting but not for matching.
    let engine = Engine::compile(&[off], &StatsRegistry::new());
    assert_eq!(engine.policies().len(), 1);
    assert_eq!(engine.log_policy_count(), 0);
}

#[test]
fn metric_keep_defaults_to_true_in_authoring_files() {
    let p =
        one_yaml("id: p\nname: p\nmetric:\n  match:\n    - metric_field: name\n      exact: a\n");
    assert!(metric_target(&p).keep);
}

#[test]
fn unquoted_percentage_keep_in_yaml() {
    let p = one_yaml(
        "id: p\nname: p\nlog:\n  match:\n    - log_field: body\n      exists: true\n  keep: 50%\n",
    );
    assert_eq!(log_target(&p).keep, "50%");
    assert!(validate(&p).is_ok());
    for keep in ["20/10s", "5/m", "none", "all", "0.5%"] {
        let p = one_yaml(&format!(
            "id: p\nname: p\nlog:\n  match:\n    - log_field: body\n      exists: true\n  keep: {keep}\n"
        ));
        assert_eq!(log_target(&p).keep, keep);
        assert!(validate(&p).is_ok(), "{keep}");
    }
}

#[test]
fn redact_replacement_defaults_to_redacted_marker() {
    let p = one_yaml(
        "id: p\nname: p\nlog:\n  match:\n    - log_field: body\n      exists: true\n  transform:\n    redact:\n      - log_attribute: password\n",
    );
    let redact = &log_target(&p).transform.as_ref().unwrap().redact[0];
    assert_eq!(redact.replacement, "[REDACTED]");
    assert_eq!(redact.regex, None);
}

// ---------------------------------------------------------------------------
// §10 worked examples, verbatim

const EXAMPLE_10_1: &str = r#"policies:
  - id: metrics-drop-probe-latency
    name: Drop latency series of probe routes
    description: Probe endpoints dominate series count and are never graphed.
    metric:
      match:
        - metric_field: name
          exact: http_server_request_duration_seconds
        - datapoint_attribute: route
          regex: '^/(healthz|readyz|livez)$'
      keep: false
  - id: metrics-drop-scrape-internals
    name: Drop exporter self-instrumentation
    metric:
      match:
        - metric_field: name
          starts_with: promhttp_
        - metric_type: sum          # counters only; match omitted = exists: true
      keep: false
"#;

const EXAMPLE_10_1_JSON: &str = r#"{"id":"metrics-drop-probe-latency","name":"Drop latency series of probe routes",
 "description":"Probe endpoints dominate series count and are never graphed.","enabled":true,
 "metric":{"match":[
   {"metricField":1,"exact":"http_server_request_duration_seconds"},
   {"datapointAttribute":{"path":["route"]},"regex":"^/(healthz|readyz|livez)$"}],
  "keep":false}}"#;

const EXAMPLE_10_2: &str = r#"policies:
  - id: logs-drop-kube-probes
    name: Drop successful kube-probe request logs
    log:
      match:
        - log_attribute: [user_agent, original]     # nested map user_agent -> original
          starts_with: kube-probe/
        - log_attribute: http.response.status_code  # flat dotted key
          equals: 200
      keep: none
  - id: logs-sample-search-info
    name: Keep 5% of search-api INFO logs per trace
    log:
      match:
        - resource_attribute: service.name
          equals: search-api
        - log_field: severity_text
          equals: INFO
          case_insensitive: true
      keep: "5%"
      sample_key:
        log_field: trace_id
  - id: logs-ratelimit-conn-refused
    name: Limit connection-refused floods
    log:
      match:
        - log_field: body
          contains: connection refused
      keep: 20/10s
"#;

const EXAMPLE_10_3: &str = r#"id: logs-redact-card-numbers
name: Mask card numbers and credentials
log:
  match:
    - log_field: body
      regex: '\b(?:\d[ -]?){12}\d{4}\b'
  transform:
    remove:
      - log_attribute: http.request.header.authorization
    redact:
      - log_field: body
        regex: '\b(?:\d[ -]?){12}(\d{4})\b'
        replacement: '[CARD ****${1}]'
    add:
      - log_attribute: redaction.applied
        value: "card"
        upsert: true
"#;

#[test]
fn example_10_1_loads_and_validates() {
    let loaded = load(EXAMPLE_10_1, Format::Yaml);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.policies.len(), 2);
    assert_all_valid(&loaded.policies);
    let probe = &loaded.policies[0];
    assert_eq!(probe.id, "metrics-drop-probe-latency");
    assert!(probe.enabled);
    assert_eq!(
        metric_target(probe).r#match[1].field,
        Some(metric_matcher::Field::DatapointAttribute(path(&["route"])))
    );
    assert_eq!(
        metric_target(&loaded.policies[1]).r#match[1].field,
        Some(metric_matcher::Field::MetricType(
            pb::MetricType::Sum as i32
        ))
    );
}

#[test]
fn example_10_1_yaml_and_its_proto3_json_are_the_same_policy() {
    let from_yaml = yaml(EXAMPLE_10_1).remove(0);
    let value: serde_json::Value = serde_json::from_str(EXAMPLE_10_1_JSON).unwrap();
    let from_json = parse_policy_value(&value).expect("decodes");
    assert_eq!(from_json, from_yaml);
    let from_wire: pb::Policy = serde_json::from_str(EXAMPLE_10_1_JSON).unwrap();
    assert_eq!(from_wire, from_yaml);
}

#[test]
fn example_10_1_behaves_as_described() {
    let registry = StatsRegistry::new();
    let engine = Engine::compile(&yaml(EXAMPLE_10_1), &registry);
    use pb::MetricType::{Histogram, Sum};
    let latency = "http_server_request_duration_seconds";
    assert!(!engine.evaluate_metric(&metric(latency, Histogram, &[("route", "/healthz")])));
    assert!(!engine.evaluate_metric(&metric(latency, Histogram, &[("route", "/livez")])));
    assert!(engine.evaluate_metric(&metric(latency, Histogram, &[("route", "/api/healthz")])));
    assert!(engine.evaluate_metric(&metric(latency, Histogram, &[])));
    assert!(!engine.evaluate_metric(&metric("promhttp_metric_handler_requests_total", Sum, &[])));
    assert!(engine.evaluate_metric(&metric(
        "promhttp_metric_handler_requests_in_flight",
        pb::MetricType::Gauge,
        &[]
    )));
    let stats = registry.take_all();
    let hits: Vec<(&str, u64)> = stats
        .iter()
        .map(|(id, d)| (id.as_str(), d.match_hits))
        .collect();
    assert_eq!(
        hits,
        [
            ("metrics-drop-probe-latency", 2),
            ("metrics-drop-scrape-internals", 1)
        ]
    );
}

#[test]
fn example_10_2_loads_and_validates() {
    let loaded = load(EXAMPLE_10_2, Format::Yaml);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let policies = loaded.policies;
    assert_eq!(policies.len(), 3);
    assert_all_valid(&policies);

    let probes = log_target(&policies[0]);
    assert_eq!(
        probes.r#match[0].field,
        Some(log_matcher::Field::LogAttribute(path(&[
            "user_agent",
            "original"
        ])))
    );
    assert_eq!(
        probes.r#match[1].field,
        Some(log_matcher::Field::LogAttribute(path(&[
            "http.response.status_code"
        ])))
    );
    assert_eq!(
        probes.r#match[1].r#match,
        Some(log_matcher::Match::Equals(pb::Value {
            value: Some(value::Value::IntValue(200))
        }))
    );
    let sample = log_target(&policies[1]);
    assert_eq!(sample.keep, "5%");
    assert!(sample.r#match[1].case_insensitive);
    assert_eq!(
        sample.sample_key.as_ref().unwrap().field,
        Some(pb::log_sample_key::Field::LogField(
            pb::LogField::TraceId as i32
        ))
    );
    assert_eq!(log_target(&policies[2]).keep, "20/10s");
}

#[test]
fn example_10_2_behaves_as_described() {
    let registry = StatsRegistry::new();
    let engine = Engine::compile(&yaml(EXAMPLE_10_2), &registry);
    assert_eq!(engine.log_policy_count(), 3);

    let probe = || TestLog {
        body: Some("GET /healthz connection refused upstream".into()),
        attributes: vec![
            (
                "user_agent".into(),
                Attr::Map(vec![("original".into(), s("kube-probe/1.29"))]),
            ),
            ("http.response.status_code".into(), Attr::Int(200)),
        ],
        ..Default::default()
    };
    // Matches both the `none` policy and the rate limit: dropped by `none`,
    // which gets the hit; the rate-limit policy records a miss.
    assert_eq!(engine.evaluate_log(&mut probe()), Decision::Drop);
    let stats = registry.take_all();
    let counts: Vec<(&str, u64, u64)> = stats
        .iter()
        .map(|(id, d)| (id.as_str(), d.match_hits, d.match_misses))
        .collect();
    assert_eq!(
        counts,
        [
            ("logs-drop-kube-probes", 1, 0),
            ("logs-ratelimit-conn-refused", 0, 1)
        ]
    );

    // A failed probe (500) is not dropped by the probe policy.
    let mut failed = probe();
    failed.body = Some("probe failed".into());
    failed.attributes[1].1 = Attr::Int(500);
    assert_eq!(engine.evaluate_log(&mut failed), Decision::NoMatch);

    // Sampling keyed on the trace id: low 56 bits all ones ⇒ kept at 5 %,
    // all zeros ⇒ dropped; severity matched case-insensitively.
    let search = |trace_low: u8, severity: &str| TestLog {
        body: Some("query".into()),
        severity_text: Some(severity.into()),
        trace_id: Some([vec![0x12; 9], vec![trace_low; 7]].concat()),
        resource: vec![("service.name".into(), s("search-api"))],
        ..Default::default()
    };
    assert_eq!(
        engine.evaluate_log(&mut search(0xff, "info")),
        Decision::Keep
    );
    assert_eq!(
        engine.evaluate_log(&mut search(0x00, "INFO")),
        Decision::Drop
    );
    assert_eq!(
        engine.evaluate_log(&mut search(0x00, "DEBUG")),
        Decision::NoMatch
    );
}

#[test]
fn example_10_3_loads_validates_and_redacts() {
    let loaded = load(EXAMPLE_10_3, Format::Yaml);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.policies.len(), 1);
    let policy = &loaded.policies[0];
    assert_eq!(policy.id, "logs-redact-card-numbers");
    assert!(validate(policy).is_ok());
    let target = log_target(policy);
    assert_eq!(target.keep, "");
    let transform = target.transform.as_ref().unwrap();
    assert_eq!(transform.redact[0].replacement, "[CARD ****${1}]");
    assert_eq!(
        transform.redact[0].regex.as_deref(),
        Some(r"\b(?:\d[ -]?){12}(\d{4})\b")
    );
    assert!(transform.add[0].upsert);

    let registry = StatsRegistry::new();
    let engine = Engine::compile(&loaded.policies, &registry);
    let mut record = TestLog {
        body: Some("charged card 4111 1111 1111 1234 ok".into()),
        attributes: vec![
            ("http.request.header.authorization".into(), s("Bearer x")),
            ("user".into(), s("u1")),
        ],
        ..Default::default()
    };
    assert_eq!(engine.evaluate_log(&mut record), Decision::Keep);
    assert_eq!(
        record.body.as_deref(),
        Some("charged card [CARD ****1234] ok")
    );
    assert_eq!(record.keys(), ["user", "redaction.applied"]);
    assert_eq!(record.attr("redaction.applied"), Some(&s("card")));

    let mut clean = TestLog {
        body: Some("no card here 1234".into()),
        ..Default::default()
    };
    assert_eq!(engine.evaluate_log(&mut clean), Decision::NoMatch);
    assert_eq!(clean.body.as_deref(), Some("no card here 1234"));
}

// ---------------------------------------------------------------------------
// warnings, errors and rejections

#[test]
fn unknown_keys_are_warnings_not_errors() {
    let with_extras = load(
        "id: p
name: p
colour: red
metric:
  match:
    - metric_field: name
      exact: a
      flavour: x
  keep: false
  priority: 3
",
        Format::Yaml,
    );
    assert_eq!(with_extras.policies.len(), 1);
    assert_eq!(with_extras.warnings.len(), 3, "{:?}", with_extras.warnings);
    let all = with_extras.warnings.join("\n");
    assert!(all.contains("colour"), "{all}");
    assert!(all.contains("metric.match[0].flavour"), "{all}");
    assert!(all.contains("metric.priority"), "{all}");

    let plain = one_yaml(
        "id: p\nname: p\nmetric:\n  match:\n    - metric_field: name\n      exact: a\n  keep: false\n",
    );
    assert_eq!(with_extras.policies[0], plain);
    assert!(validate(&plain).is_ok());
}

#[test]
fn invalid_yaml_is_a_load_error() {
    let err = parse_policies("policies:\n  - id: a\n   name: [unclosed\n", Format::Yaml)
        .expect_err("not YAML");
    assert!(matches!(err, LoadError::Yaml(_)), "{err:?}");
    assert!(err.to_string().starts_with("invalid YAML"), "{err}");
}

#[test]
fn invalid_json_is_a_load_error() {
    let err =
        parse_policies(r#"{"policies": [{"id": "a",}]}"#, Format::Json).expect_err("not JSON");
    assert!(matches!(err, LoadError::Json(_)), "{err:?}");
}

#[test]
fn wrong_document_shape_is_a_load_error() {
    for doc in ["policies: 5\n", "just a string\n", "42\n"] {
        let err = parse_policies(doc, Format::Yaml).expect_err(doc);
        assert!(matches!(err, LoadError::Shape(_)), "{doc}: {err:?}");
    }
}

#[test]
fn an_undecodable_policy_is_rejected_alone() {
    let loaded = parse_policies(
        "policies:
  - id: good-1
    name: g1
    log:
      match:
        - log_field: body
          exists: true
  - id: bad
    name: bad
    log:
      match:
        - log_field: bodyy
          exists: true
  - id: good-2
    name: g2
    metric:
      match:
        - metric_field: name
          exact: a
      keep: false
  - name: nameless
    trace: 7
",
        Format::Yaml,
    )
    .unwrap();
    let ids: Vec<&str> = loaded.policies.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["good-1", "good-2"]);
    assert_all_valid(&loaded.policies);

    assert_eq!(loaded.rejected.len(), 2, "{:?}", loaded.rejected);
    let bad = &loaded.rejected[0];
    assert_eq!((bad.index, bad.id.as_deref()), (1, Some("bad")));
    assert_eq!(bad.errors.len(), 1);
    assert_eq!(bad.errors[0].field_path(), "log.match[0].log_field");
    assert!(
        bad.to_string()
            .starts_with("policy \"bad\": log.match[0].log_field: ")
    );

    let anonymous = &loaded.rejected[1];
    assert_eq!((anonymous.index, anonymous.id.as_deref()), (3, None));
    assert!(
        anonymous.to_string().starts_with("policy #3: "),
        "{anonymous}"
    );
}

#[test]
fn two_targets_reject_the_policy() {
    let loaded = parse_policies(
        "id: both\nname: both\nlog:\n  match:\n    - log_field: body\n      exists: true\nmetric:\n  match:\n    - metric_field: name\n      exact: a\n",
        Format::Yaml,
    )
    .unwrap();
    assert!(loaded.policies.is_empty());
    assert_eq!(loaded.rejected[0].id.as_deref(), Some("both"));
    assert_eq!(loaded.rejected[0].errors[0].field_path(), "target");
}

#[test]
fn parse_policy_value_decodes_one_policy() {
    let value = serde_json::json!({
        "id": "api", "name": "from an API body",
        "trace": {"match": [{"span_kind": "server"}], "keep": {"percentage": 0}}
    });
    let p = parse_policy_value(&value).expect("decodes");
    assert_eq!(p.id, "api");
    assert!(validate(&p).is_ok());
    assert_eq!(trace_target(&p).keep.unwrap().percentage, 0.0);

    let bad = serde_json::json!({"id": "api", "name": "x", "trace": {"match": [{"span_kind": "sideways"}]}});
    let rejected = parse_policy_value(&bad).expect_err("unknown span kind");
    assert_eq!(rejected.id.as_deref(), Some("api"));
    assert_eq!(rejected.errors[0].field_path(), "trace.match[0].span_kind");
}

#[test]
fn labels_map_and_extension_config_object() {
    let p = one_yaml(
        "id: p
name: p
labels:
  team: obs
  tier: 1
extensions:
  - type: com.usetero/s3-dump
    version: 1.0.0
    mode: dropped
    config:
      bucket: logs
log:
  match:
    - log_field: body
      exists: true
",
    );
    let labels: Vec<(&str, &otel::AnyValue)> = p
        .labels
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_ref().unwrap()))
        .collect();
    assert_eq!(labels.len(), 2);
    assert_eq!(labels[0].0, "team");
    assert_eq!(
        labels[0].1.value,
        Some(otel::any_value::Value::StringValue("obs".into()))
    );
    assert_eq!(labels[1].1.value, Some(otel::any_value::Value::IntValue(1)));

    let ext = &p.extensions[0];
    assert_eq!(ext.r#type, "com.usetero/s3-dump");
    assert_eq!(ext.version, "1.0.0");
    assert_eq!(ext.mode, pb::ExtensionMode::Dropped as i32);
    let config: serde_json::Value = serde_json::from_slice(&ext.config).expect("JSON bytes");
    assert_eq!(config, serde_json::json!({"bucket": "logs"}));
    assert!(validate(&p).is_ok());
}

#[test]
fn string_matchers_take_unquoted_yaml_scalars_as_text() {
    assert_eq!(
        log_matcher_of("log_attribute: code\n      exact: 200").r#match,
        Some(log_matcher::Match::Exact("200".into()))
    );
    assert_eq!(
        log_matcher_of("log_attribute: flag\n      starts_with: true").r#match,
        Some(log_matcher::Match::StartsWith("true".into()))
    );
}

#[test]
fn proto3_json_numbers_in_either_json_form() {
    // proto3 JSON parsers accept 64-bit ints as numbers and floats/uint32 as
    // strings.
    let text = r#"{"policies": [{"id": "t", "name": "t", "enabled": true,
        "createdAtUnixNano": 1700000000000000001,
        "trace": {"match": [{"spanKind": "SPAN_KIND_SERVER", "exists": true}],
                  "keep": {"percentage": "12.5", "samplingPrecision": "6", "hashSeed": 7}}}]}"#;
    let loaded = load(text, Format::Json);
    let p = &loaded.policies[0];
    assert_eq!(p.created_at_unix_nano, 1_700_000_000_000_000_001);
    let keep = trace_target(p).keep.unwrap();
    assert_eq!(keep.percentage, 12.5);
    assert_eq!(keep.sampling_precision, Some(6));
    assert_eq!(keep.hash_seed, Some(7));
    let wire: pb::SyncResponse = serde_json::from_str(text).unwrap();
    assert_eq!(loaded.policies, wire.policies);
}

#[test]
fn proto3_json_bytes_accept_url_safe_and_unpadded_base64() {
    let text = r#"{"policies": [{"id": "b", "name": "b", "enabled": true,
        "extensions": [{"type": "com.usetero/s3-dump", "version": "1.0.0", "config": "eyJidWNrZXQiOiJiIn0"}],
        "log": {"match": [{"logField": 3, "equals": {"bytesValue": "3q2-7w"}}], "keep": "none"}}]}"#;
    let wire: pb::SyncResponse = serde_json::from_str(text).unwrap();
    assert_eq!(wire.policies[0].extensions[0].config, b"{\"bucket\":\"b\"}");
    let loaded = parse_policies(text, Format::Json).unwrap();
    assert!(loaded.rejected.is_empty(), "{:?}", loaded.rejected);
    assert_eq!(loaded.policies, wire.policies);
}

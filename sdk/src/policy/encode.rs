//! Policy → the authoring form: the inverse of the [`super::authoring`]
//! decoder, so that what tools show is what authors write and what
//! `parse_policies` reads back as the same policy.
//!
//! The output spells enums as lower-case suffixes (`metric_field: name`),
//! attribute paths of one segment as a bare string, typed literals as
//! scalars where the scalar decodes to the same type (`equals: 200` is an
//! integer, `equals: "200"` a string), labels as a map, and leaves out
//! what the decoder would fill in anyway. Values no scalar can carry
//! (bytes, hex, non-finite doubles, labels that are not scalars) keep their
//! explicit object form, which the decoder also reads.
//!
//! Keys are emitted in the order an author reads them (id, name, …,
//! target), which is why the result is a YAML value: its mappings keep
//! their order, and it serializes as JSON just as well.

use base64::Engine as _;
use serde_yaml_ng::{Mapping, Value as Y};
use tero_proto::otel;
use tero_proto::policy::{self as pb, policy::Target};

use super::enums::{LenientEnum, authoring_name};
use crate::engine::compile::LogSel;

/// The policy in the authoring form, as a value (serializable as YAML or
/// JSON).
pub fn to_authoring(policy: &pb::Policy) -> Y {
    let mut m = Map::default();
    m.put("id", policy.id.as_str());
    m.put_nonempty("name", &policy.name);
    m.put_nonempty("description", &policy.description);
    // Absent means enabled.
    if !policy.enabled {
        m.put("enabled", false);
    }
    if !policy.labels.is_empty() {
        m.put("labels", labels(&policy.labels));
    }
    if policy.created_at_unix_nano != 0 {
        m.put("created_at_unix_nano", policy.created_at_unix_nano);
    }
    if policy.modified_at_unix_nano != 0 {
        m.put("modified_at_unix_nano", policy.modified_at_unix_nano);
    }
    match &policy.target {
        Some(Target::Metric(t)) => m.put("metric", metric_target(t)),
        Some(Target::Log(t)) => m.put("log", log_target(t)),
        Some(Target::Trace(t)) => m.put("trace", trace_target(t)),
        None => {}
    }
    if !policy.extensions.is_empty() {
        let items: Vec<Y> = policy.extensions.iter().map(extension).collect();
        m.put("extensions", items);
    }
    m.into()
}

/// The policy as an authoring YAML document.
pub fn to_authoring_yaml(policy: &pb::Policy) -> String {
    // Serializing a tree of strings, numbers and mappings cannot fail; the
    // fallback keeps this infallible for callers that only display it.
    serde_yaml_ng::to_string(&to_authoring(policy))
        .unwrap_or_else(|e| format!("# cannot show policy {:?}: {e}\n", policy.id))
}

/// An insertion-ordered mapping with string keys.
#[derive(Default)]
struct Map(Mapping);

impl Map {
    fn put(&mut self, key: &str, value: impl Into<Y>) {
        self.0.insert(Y::from(key), value.into());
    }

    fn put_nonempty(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.put(key, value);
        }
    }

    fn put_true(&mut self, key: &str, value: bool) {
        if value {
            self.put(key, true);
        }
    }
}

impl From<Map> for Y {
    fn from(m: Map) -> Y {
        Y::Mapping(m.0)
    }
}

fn enum_value<E: LenientEnum>(value: i32) -> Y {
    // An unknown number stays a number: the decoder then names it.
    authoring_name::<E>(value).map_or_else(|| Y::from(value), Y::from)
}

fn path(p: &pb::AttributePath) -> Y {
    match p.path.as_slice() {
        [one] => Y::from(one.as_str()),
        many => many.iter().map(String::as_str).collect(),
    }
}

/// A double as a number when it is finite (its shortest decimal reads back
/// as the same double), else as the proto3 JSON string the decoder reads.
fn double(d: f64) -> Option<Y> {
    d.is_finite().then(|| Y::from(d))
}

fn non_finite_name(d: f64) -> &'static str {
    if d.is_nan() {
        "NaN"
    } else if d > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

fn typed_value(v: &pb::Value) -> Y {
    use pb::value::Value as V;
    let mut m = Map::default();
    match &v.value {
        Some(V::BoolValue(b)) => return Y::from(*b),
        Some(V::IntValue(i)) => return Y::from(*i),
        Some(V::StringValue(s)) => return Y::from(s.as_str()),
        Some(V::DoubleValue(d)) => match double(*d) {
            Some(y) => return y,
            None => m.put("double_value", non_finite_name(*d)),
        },
        Some(V::BytesValue(b)) => m.put(
            "bytes_value",
            base64::engine::general_purpose::STANDARD.encode(b),
        ),
        Some(V::HexValue(h)) => m.put("hex_value", h.as_str()),
        None => {}
    }
    m.into()
}

fn numeric_value(v: &pb::NumericValue) -> Y {
    use pb::numeric_value::Value as N;
    let mut m = Map::default();
    match v.value {
        Some(N::IntValue(i)) => return Y::from(i),
        Some(N::DoubleValue(d)) => match double(d) {
            Some(y) => return y,
            None => m.put("double_value", non_finite_name(d)),
        },
        None => {}
    }
    m.into()
}

/// The match member, identical across the three matcher messages.
macro_rules! match_entry {
    ($m:expr, $t:path) => {{
        use $t as M;
        match $m {
            M::Exact(s) => ("exact", Y::from(s.as_str())),
            M::Regex(s) => ("regex", Y::from(s.as_str())),
            M::Exists(b) => ("exists", Y::from(*b)),
            M::StartsWith(s) => ("starts_with", Y::from(s.as_str())),
            M::EndsWith(s) => ("ends_with", Y::from(s.as_str())),
            M::Contains(s) => ("contains", Y::from(s.as_str())),
            M::Equals(v) => ("equals", typed_value(v)),
            M::Gt(v) => ("gt", numeric_value(v)),
            M::Gte(v) => ("gte", numeric_value(v)),
            M::Lt(v) => ("lt", numeric_value(v)),
            M::Lte(v) => ("lte", numeric_value(v)),
        }
    }};
}

/// One matcher: its selector, its match (left out where the decoder
/// would fill it in: `exists: true` under an enum selector) and its flags.
fn matcher(
    selector: Option<(&str, Y)>,
    r#match: Option<(&str, Y)>,
    implied_exists: bool,
    negate: bool,
    case_insensitive: bool,
) -> Y {
    let mut m = Map::default();
    if let Some((key, value)) = selector {
        m.put(key, value);
    }
    match r#match {
        Some((_, Y::Bool(true))) if implied_exists => {}
        Some((key, value)) => m.put(key, value),
        None => {}
    }
    m.put_true("negate", negate);
    m.put_true("case_insensitive", case_insensitive);
    m.into()
}

fn is_exists<T>(key: Option<&(&str, T)>) -> bool {
    key.is_some_and(|(k, _)| *k == "exists")
}

// ---- metric ----

fn metric_target(t: &pb::MetricTarget) -> Y {
    let mut m = Map::default();
    if !t.r#match.is_empty() {
        let items: Vec<Y> = t.r#match.iter().map(metric_matcher).collect();
        m.put("match", items);
    }
    m.put("keep", t.keep);
    m.into()
}

fn metric_matcher(mm: &pb::MetricMatcher) -> Y {
    use pb::metric_matcher::Field as F;
    let selector = mm.field.as_ref().map(|f| match f {
        F::MetricField(e) => ("metric_field", enum_value::<pb::MetricField>(*e)),
        F::DatapointAttribute(p) => ("datapoint_attribute", path(p)),
        F::ResourceAttribute(p) => ("resource_attribute", path(p)),
        F::ScopeAttribute(p) => ("scope_attribute", path(p)),
        F::MetricType(e) => ("metric_type", enum_value::<pb::MetricType>(*e)),
        F::AggregationTemporality(e) => (
            "aggregation_temporality",
            enum_value::<pb::AggregationTemporality>(*e),
        ),
    });
    let implied = matches!(
        mm.field,
        Some(F::MetricType(_) | F::AggregationTemporality(_))
    );
    let r#match = mm
        .r#match
        .as_ref()
        .map(|x| match_entry!(x, pb::metric_matcher::Match));
    let implied = implied && is_exists(r#match.as_ref());
    matcher(selector, r#match, implied, mm.negate, mm.case_insensitive)
}

// ---- log ----

/// The four log selectors, under their authoring keys (`prefix` is
/// `from_` for a rename's source).
fn log_selector(prefix: &str, sel: LogSel<'_>) -> (String, Y) {
    let (key, value) = match sel {
        LogSel::Field(e) => ("log_field", enum_value::<pb::LogField>(e)),
        LogSel::Log(p) => ("log_attribute", path(p)),
        LogSel::Resource(p) => ("resource_attribute", path(p)),
        LogSel::Scope(p) => ("scope_attribute", path(p)),
    };
    (format!("{prefix}{key}"), value)
}

fn put_log_selector(m: &mut Map, prefix: &str, sel: Option<LogSel<'_>>) {
    if let Some(sel) = sel {
        let (key, value) = log_selector(prefix, sel);
        m.put(&key, value);
    }
}

fn log_target(t: &pb::LogTarget) -> Y {
    let mut m = Map::default();
    if !t.r#match.is_empty() {
        let items: Vec<Y> = t.r#match.iter().map(log_matcher).collect();
        m.put("match", items);
    }
    m.put_nonempty("keep", &t.keep);
    if let Some(key) = &t.sample_key {
        let mut k = Map::default();
        put_log_selector(&mut k, "", key.field.as_ref().map(LogSel::from_sample_key));
        m.put("sample_key", k);
    }
    if let Some(transform) = &t.transform {
        m.put("transform", log_transform(transform));
    }
    m.into()
}

fn log_matcher(lm: &pb::LogMatcher) -> Y {
    let selector = lm
        .field
        .as_ref()
        .map(LogSel::from_matcher)
        .map(|s| log_selector("", s));
    let r#match = lm
        .r#match
        .as_ref()
        .map(|x| match_entry!(x, pb::log_matcher::Match));
    let selector = selector.as_ref().map(|(k, v)| (k.as_str(), v.clone()));
    matcher(selector, r#match, false, lm.negate, lm.case_insensitive)
}

fn log_transform(t: &pb::LogTransform) -> Y {
    let mut m = Map::default();
    if !t.remove.is_empty() {
        let items: Vec<Y> = t
            .remove
            .iter()
            .map(|r| {
                let mut o = Map::default();
                put_log_selector(&mut o, "", r.field.as_ref().map(LogSel::from_remove));
                o.into()
            })
            .collect();
        m.put("remove", items);
    }
    if !t.redact.is_empty() {
        let items: Vec<Y> = t
            .redact
            .iter()
            .map(|r| {
                let mut o = Map::default();
                put_log_selector(&mut o, "", r.field.as_ref().map(LogSel::from_redact));
                // The decoder fills in the spec's default when it is absent.
                if r.replacement != super::authoring::DEFAULT_REDACTION {
                    o.put("replacement", r.replacement.as_str());
                }
                if let Some(regex) = &r.regex {
                    o.put("regex", regex.as_str());
                }
                o.into()
            })
            .collect();
        m.put("redact", items);
    }
    if !t.rename.is_empty() {
        let items: Vec<Y> = t
            .rename
            .iter()
            .map(|r| {
                let from = r.from.as_ref().map(LogSel::from_rename);
                let mut o = Map::default();
                put_log_selector(&mut o, "from_", from);
                o.put("to", r.to.as_str());
                o.put_true("upsert", r.upsert);
                o.into()
            })
            .collect();
        m.put("rename", items);
    }
    if !t.add.is_empty() {
        let items: Vec<Y> = t
            .add
            .iter()
            .map(|a| {
                let mut o = Map::default();
                put_log_selector(&mut o, "", a.field.as_ref().map(LogSel::from_add));
                o.put("value", a.value.as_str());
                o.put_true("upsert", a.upsert);
                o.into()
            })
            .collect();
        m.put("add", items);
    }
    m.into()
}

// ---- trace ----

fn trace_target(t: &pb::TraceTarget) -> Y {
    let mut m = Map::default();
    if !t.r#match.is_empty() {
        let items: Vec<Y> = t.r#match.iter().map(trace_matcher).collect();
        m.put("match", items);
    }
    if let Some(keep) = &t.keep {
        m.put("keep", sampling(keep));
    }
    m.into()
}

/// A percentage as the number an author writes: `25`, or `0.1` (the
/// shortest decimal that reads back as the same `f32`).
fn percentage(p: f32) -> Y {
    if !p.is_finite() {
        return Y::from(non_finite_name(f64::from(p)));
    }
    if p.fract() == 0.0 && p.abs() < 1e9 {
        return Y::from(p as i64);
    }
    format!("{p}")
        .parse::<f64>()
        .map_or_else(|_| Y::from(f64::from(p)), Y::from)
}

fn sampling(cfg: &pb::TraceSamplingConfig) -> Y {
    let shorthand = cfg.mode.is_none()
        && cfg.sampling_precision.is_none()
        && cfg.hash_seed.is_none()
        && cfg.fail_closed.is_none()
        && cfg.percentage.is_finite();
    if shorthand {
        return percentage(cfg.percentage);
    }
    let mut m = Map::default();
    m.put("percentage", percentage(cfg.percentage));
    if let Some(mode) = cfg.mode {
        m.put("mode", enum_value::<pb::SamplingMode>(mode));
    }
    if let Some(p) = cfg.sampling_precision {
        m.put("sampling_precision", p);
    }
    if let Some(seed) = cfg.hash_seed {
        m.put("hash_seed", seed);
    }
    if let Some(f) = cfg.fail_closed {
        m.put("fail_closed", f);
    }
    m.into()
}

fn trace_matcher(tm: &pb::TraceMatcher) -> Y {
    use pb::trace_matcher::Field as F;
    let selector = tm.field.as_ref().map(|f| match f {
        F::TraceField(e) => ("trace_field", enum_value::<pb::TraceField>(*e)),
        F::SpanAttribute(p) => ("span_attribute", path(p)),
        F::ResourceAttribute(p) => ("resource_attribute", path(p)),
        F::ScopeAttribute(p) => ("scope_attribute", path(p)),
        F::SpanKind(e) => ("span_kind", enum_value::<pb::SpanKind>(*e)),
        F::SpanStatus(e) => ("span_status", enum_value::<pb::SpanStatusCode>(*e)),
        F::EventName(s) => ("event_name", Y::from(s.as_str())),
        F::EventAttribute(p) => ("event_attribute", path(p)),
        F::LinkTraceId(s) => ("link_trace_id", Y::from(s.as_str())),
    });
    let implied = matches!(tm.field, Some(F::SpanKind(_) | F::SpanStatus(_)));
    let r#match = tm
        .r#match
        .as_ref()
        .map(|x| match_entry!(x, pb::trace_matcher::Match));
    let implied = implied && is_exists(r#match.as_ref());
    matcher(selector, r#match, implied, tm.negate, tm.case_insensitive)
}

// ---- labels and extensions ----

/// A map of scalars when every label is one and no key repeats; else the
/// OTLP JSON list, which carries any value.
fn labels(labels: &[otel::KeyValue]) -> Y {
    use otel::any_value::Value as A;
    let mut map = Mapping::new();
    for kv in labels {
        let scalar = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(A::StringValue(s)) => Some(Y::from(s.as_str())),
            Some(A::BoolValue(b)) => Some(Y::from(*b)),
            Some(A::IntValue(i)) => Some(Y::from(*i)),
            Some(A::DoubleValue(d)) => double(*d),
            _ => None,
        };
        let key = Y::from(kv.key.as_str());
        match scalar {
            Some(value) if !map.contains_key(&key) => {
                map.insert(key, value);
            }
            _ => return otlp_labels(labels),
        }
    }
    Y::Mapping(map)
}

fn otlp_labels(labels: &[otel::KeyValue]) -> Y {
    serde_json::to_value(labels)
        .ok()
        .and_then(|json| serde_yaml_ng::to_value(json).ok())
        .unwrap_or(Y::Null)
}

fn extension(ext: &pb::Extension) -> Y {
    let mut m = Map::default();
    m.put("type", ext.r#type.as_str());
    m.put_nonempty("version", &ext.version);
    if ext.mode != 0 {
        m.put("mode", enum_value::<pb::ExtensionMode>(ext.mode));
    }
    if !ext.config.is_empty() {
        m.put("config", extension_config(&ext.config));
    }
    m.into()
}

/// A config the decoder would produce from a nested object (compact JSON
/// of an object or list) is shown as that object; other bytes as base64.
fn extension_config(config: &[u8]) -> Y {
    let nested = serde_json::from_slice::<serde_json::Value>(config)
        .ok()
        .filter(|v| v.is_object() || v.is_array())
        .filter(|v| v.to_string().as_bytes() == config)
        .and_then(|v| serde_yaml_ng::to_value(v).ok());
    nested.unwrap_or_else(|| Y::from(base64::engine::general_purpose::STANDARD.encode(config)))
}

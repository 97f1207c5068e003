//! OTLP JSON documents as engine record views.
//!
//! The runner works on the decoded JSON tree itself, so whatever the input
//! carries (unknown fields, default values, enum spellings) is written back
//! unchanged; only dropped records and transformed fields differ.

use std::borrow::Cow;

use base64::Engine as _;
use serde_json::{Value, json};
use tero_sdk::engine::{
    Engine, FieldValue, LogSelector, LogView, LogViewMut, MetricSelector, MetricView, SpanView,
    SpanViewMut, TraceSelector,
};
use tero_sdk::proto::policy::{LogField, MetricField, TraceField};

pub fn filter_logs(engine: &Engine, document: &mut Value) {
    filter(
        document,
        ["resourceLogs", "scopeLogs", "logRecords"],
        |ctx, record| {
            let mut view = LogRef { ctx, record };
            engine.evaluate_log(&mut view).keeps()
        },
    );
}

pub fn filter_metrics(engine: &Engine, document: &mut Value) {
    filter(
        document,
        ["resourceMetrics", "scopeMetrics", "metrics"],
        |ctx, metric| engine.evaluate_metric(&MetricRef { ctx, metric }),
    );
}

pub fn filter_spans(engine: &Engine, document: &mut Value) {
    filter(
        document,
        ["resourceSpans", "scopeSpans", "spans"],
        |ctx, span| {
            let mut view = SpanRef { ctx, span };
            engine.evaluate_span(&mut view).keeps()
        },
    );
}

/// The resource and scope a record belongs to.
struct Context<'a> {
    resource: &'a mut Value,
    resource_schema: String,
    scope: &'a mut Value,
    scope_schema: String,
}

/// Runs `keep` over every record, removing dropped records and then scope
/// and resource entries left empty by the drops.
fn filter(
    document: &mut Value,
    keys: [&str; 3],
    mut keep: impl FnMut(&mut Context<'_>, &mut Value) -> bool,
) {
    let [resources_key, scopes_key, records_key] = keys;
    let Some(resources) = document
        .get_mut(resources_key)
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    resources.retain_mut(|entry| {
        let resource_schema = str_field(entry, "schemaUrl").to_owned();
        let mut resource = entry
            .get_mut("resource")
            .map(Value::take)
            .unwrap_or(Value::Null);
        let Some(scopes) = entry.get_mut(scopes_key).and_then(Value::as_array_mut) else {
            restore(entry, "resource", resource);
            return true;
        };
        let had_scopes = !scopes.is_empty();
        scopes.retain_mut(|scope_entry| {
            let scope_schema = str_field(scope_entry, "schemaUrl").to_owned();
            let mut scope = scope_entry
                .get_mut("scope")
                .map(Value::take)
                .unwrap_or(Value::Null);
            let mut survives = true;
            if let Some(records) = scope_entry
                .get_mut(records_key)
                .and_then(Value::as_array_mut)
            {
                let had_records = !records.is_empty();
                let mut ctx = Context {
                    resource: &mut resource,
                    resource_schema: resource_schema.clone(),
                    scope: &mut scope,
                    scope_schema,
                };
                records.retain_mut(|record| keep(&mut ctx, record));
                survives = !(had_records && records.is_empty());
            }
            restore(scope_entry, "scope", scope);
            survives
        });
        let survives = !(had_scopes && scopes.is_empty());
        restore(entry, "resource", resource);
        survives
    });
}

fn restore(entry: &mut Value, key: &str, value: Value) {
    if !value.is_null()
        && let Some(map) = entry.as_object_mut()
    {
        map.insert(key.to_owned(), value);
    }
}

fn str_field<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn non_empty_str<'v>(v: &'v Value, key: &str) -> Option<FieldValue<'v>> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(FieldValue::str)
}

/// A hex id field (trace, span, parent span) as bytes.
fn hex_field<'v>(v: &'v Value, key: &str) -> Option<FieldValue<'v>> {
    let text = v.get(key)?.as_str().filter(|s| !s.is_empty())?;
    Some(match hex::decode(text) {
        Ok(bytes) => FieldValue::Bytes(Cow::Owned(bytes)),
        Err(_) => FieldValue::str(text),
    })
}

/// An OTLP JSON AnyValue.
fn any_value(v: &Value) -> Option<FieldValue<'_>> {
    let obj = v.as_object()?;
    let (key, inner) = obj.iter().next()?;
    Some(match key.as_str() {
        "stringValue" => FieldValue::str(inner.as_str()?),
        "boolValue" => FieldValue::Bool(inner.as_bool()?),
        "intValue" => FieldValue::Int(match inner {
            Value::String(s) => s.parse().ok()?,
            other => other.as_i64()?,
        }),
        "doubleValue" => FieldValue::Double(match inner {
            Value::String(s) => s.parse().ok()?,
            other => other.as_f64()?,
        }),
        "bytesValue" => FieldValue::Bytes(Cow::Owned(
            base64::engine::general_purpose::STANDARD
                .decode(inner.as_str()?)
                .ok()?,
        )),
        "arrayValue" | "kvlistValue" => FieldValue::Opaque,
        _ => return None,
    })
}

/// The AnyValue at `path` in an attribute list, descending through kvlists.
fn lookup<'v>(attributes: Option<&'v Value>, path: &[String]) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    let entry = attributes?
        .as_array()?
        .iter()
        .find(|kv| str_field(kv, "key") == first)?;
    let value = entry.get("value")?;
    if rest.is_empty() {
        return Some(value);
    }
    lookup(value.get("kvlistValue").and_then(|l| l.get("values")), rest)
}

fn attribute<'v>(owner: &'v Value, path: &[String]) -> Option<FieldValue<'v>> {
    lookup(owner.get("attributes"), path).and_then(any_value)
}

/// The attribute list that holds the last segment of `path`, created on the
/// way down when `create` is set.
fn list_mut<'v>(owner: &'v mut Value, path: &[String], create: bool) -> Option<&'v mut Vec<Value>> {
    let map = owner.as_object_mut()?;
    if !map.contains_key("attributes") {
        if !create {
            return None;
        }
        map.insert("attributes".into(), json!([]));
    }
    let mut list = map.get_mut("attributes")?.as_array_mut()?;
    for segment in &path[..path.len().saturating_sub(1)] {
        let position = match list.iter().position(|kv| str_field(kv, "key") == segment) {
            Some(p) => p,
            None if create => {
                list.push(json!({"key": segment, "value": {"kvlistValue": {"values": []}}}));
                list.len() - 1
            }
            None => return None,
        };
        list = list[position]
            .get_mut("value")?
            .get_mut("kvlistValue")?
            .get_mut("values")?
            .as_array_mut()?;
    }
    Some(list)
}

fn position(list: &[Value], key: &str) -> Option<usize> {
    list.iter().position(|kv| str_field(kv, "key") == key)
}

fn string_any_value(s: &str) -> Value {
    json!({"stringValue": s})
}

struct LogRef<'c, 'a> {
    ctx: &'c mut Context<'a>,
    record: &'c mut Value,
}

impl LogRef<'_, '_> {
    /// The JSON object owning the attribute list a selector addresses.
    fn owner<'s>(&'s mut self, selector: &'s LogSelector) -> Option<(&'s mut Value, &'s [String])> {
        match selector {
            LogSelector::LogAttribute(p) => Some((&mut *self.record, p)),
            LogSelector::ResourceAttribute(p) => Some((&mut *self.ctx.resource, p)),
            LogSelector::ScopeAttribute(p) => Some((&mut *self.ctx.scope, p)),
            LogSelector::Field(_) => None,
        }
    }

    fn field_key(field: LogField) -> Option<&'static str> {
        Some(match field {
            LogField::Body => "body",
            LogField::SeverityText => "severityText",
            LogField::TraceId => "traceId",
            LogField::SpanId => "spanId",
            LogField::EventName => "eventName",
            _ => return None,
        })
    }

    /// Takes a value out of the record, as an AnyValue.
    fn take(&mut self, selector: &LogSelector) -> Option<Value> {
        if let LogSelector::Field(field) = selector {
            let key = Self::field_key(*field)?;
            let map = self.record.as_object_mut()?;
            let value = map.remove(key)?;
            return match key {
                "body" => Some(value).filter(|v| any_value(v).is_some()),
                _ => value
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(string_any_value),
            };
        }
        let (owner, path) = self.owner(selector)?;
        let path = path.to_vec();
        let list = list_mut(owner, &path, false)?;
        let at = position(list, path.last()?)?;
        list.remove(at).get("value").cloned()
    }
}

impl LogView for LogRef<'_, '_> {
    fn get(&self, selector: &LogSelector) -> Option<FieldValue<'_>> {
        match selector {
            LogSelector::Field(LogField::Body) => self.record.get("body").and_then(any_value),
            LogSelector::Field(LogField::SeverityText) => {
                non_empty_str(self.record, "severityText")
            }
            LogSelector::Field(LogField::TraceId) => hex_field(self.record, "traceId"),
            LogSelector::Field(LogField::SpanId) => hex_field(self.record, "spanId"),
            LogSelector::Field(LogField::EventName) => non_empty_str(self.record, "eventName"),
            LogSelector::Field(LogField::ResourceSchemaUrl) => {
                Some(FieldValue::str(&self.ctx.resource_schema))
            }
            LogSelector::Field(LogField::ScopeSchemaUrl) => {
                Some(FieldValue::str(&self.ctx.scope_schema))
            }
            LogSelector::Field(_) => None,
            LogSelector::LogAttribute(p) => attribute(self.record, p),
            LogSelector::ResourceAttribute(p) => attribute(self.ctx.resource, p),
            LogSelector::ScopeAttribute(p) => attribute(self.ctx.scope, p),
        }
    }
}

impl LogViewMut for LogRef<'_, '_> {
    fn remove(&mut self, selector: &LogSelector) -> bool {
        self.take(selector).is_some()
    }

    fn set(&mut self, selector: &LogSelector, value: &str, overwrite: bool) -> bool {
        if let LogSelector::Field(field) = selector {
            let Some(key) = Self::field_key(*field) else {
                return false;
            };
            let present = self.get(selector).is_some();
            if present && !overwrite {
                return false;
            }
            let Some(map) = self.record.as_object_mut() else {
                return false;
            };
            let new = if key == "body" {
                string_any_value(value)
            } else {
                Value::String(value.to_owned())
            };
            map.insert(key.to_owned(), new);
            return true;
        }
        let Some((owner, path)) = self.owner(selector) else {
            return false;
        };
        let path = path.to_vec();
        let Some(list) = list_mut(owner, &path, true) else {
            return false;
        };
        let Some(last) = path.last() else {
            return false;
        };
        match position(list, last) {
            Some(_) if !overwrite => false,
            Some(at) => {
                list[at]["value"] = string_any_value(value);
                true
            }
            None => {
                list.push(json!({"key": last, "value": string_any_value(value)}));
                true
            }
        }
    }

    fn rename(&mut self, from: &LogSelector, to: &str, upsert: bool) -> bool {
        if self.get(from).is_none() {
            return false;
        }
        // The target lives in the same collection as the source; a top-level
        // field is renamed into the record's attributes.
        let (target_owner, prefix): (LogSelector, Vec<String>) = match from {
            LogSelector::Field(_) => (
                LogSelector::LogAttribute(vec![to.to_owned()].into()),
                Vec::new(),
            ),
            LogSelector::LogAttribute(p) => (
                LogSelector::LogAttribute(p.clone()),
                p[..p.len() - 1].to_vec(),
            ),
            LogSelector::ResourceAttribute(p) => (
                LogSelector::ResourceAttribute(p.clone()),
                p[..p.len() - 1].to_vec(),
            ),
            LogSelector::ScopeAttribute(p) => (
                LogSelector::ScopeAttribute(p.clone()),
                p[..p.len() - 1].to_vec(),
            ),
        };
        let mut target_path = prefix;
        target_path.push(to.to_owned());
        let target_exists = {
            let (owner, _) = self.owner(&target_owner).expect("attribute selector");
            lookup(owner.get("attributes"), &target_path).is_some()
        };
        if target_exists && !upsert {
            return false;
        }
        let Some(value) = self.take(from) else {
            return false;
        };
        let (owner, _) = self.owner(&target_owner).expect("attribute selector");
        let Some(list) = list_mut(owner, &target_path, true) else {
            return false;
        };
        match position(list, to) {
            Some(at) => list[at]["value"] = value,
            None => list.push(json!({"key": to, "value": value})),
        }
        true
    }
}

struct MetricRef<'c, 'a> {
    ctx: &'c Context<'a>,
    metric: &'c Value,
}

const METRIC_KINDS: [(&str, i64); 5] = [
    ("gauge", 1),
    ("sum", 2),
    ("histogram", 3),
    ("exponentialHistogram", 4),
    ("summary", 5),
];

impl MetricRef<'_, '_> {
    fn data(&self) -> Option<(&Value, i64)> {
        METRIC_KINDS
            .iter()
            .find_map(|(key, t)| self.metric.get(*key).map(|d| (d, *t)))
    }
}

fn enum_number(v: &Value, names: &[(&str, i64)]) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => names
            .iter()
            .find(|(name, _)| name == s)
            .map(|(_, n)| *n)
            .or_else(|| s.parse().ok()),
        _ => None,
    }
}

impl MetricView for MetricRef<'_, '_> {
    fn get(&self, selector: &MetricSelector) -> Option<FieldValue<'_>> {
        match selector {
            MetricSelector::Field(MetricField::Name) => non_empty_str(self.metric, "name"),
            MetricSelector::Field(MetricField::Description) => {
                non_empty_str(self.metric, "description")
            }
            MetricSelector::Field(MetricField::Unit) => non_empty_str(self.metric, "unit"),
            MetricSelector::Field(MetricField::ResourceSchemaUrl) => {
                Some(FieldValue::str(&self.ctx.resource_schema))
            }
            MetricSelector::Field(MetricField::ScopeSchemaUrl) => {
                Some(FieldValue::str(&self.ctx.scope_schema))
            }
            MetricSelector::Field(MetricField::ScopeName) => non_empty_str(self.ctx.scope, "name"),
            MetricSelector::Field(MetricField::ScopeVersion) => {
                non_empty_str(self.ctx.scope, "version")
            }
            MetricSelector::Field(_) => None,
            MetricSelector::DatapointAttribute(p) => {
                let first = self.data()?.0.get("dataPoints")?.as_array()?.first()?;
                attribute(first, p)
            }
            MetricSelector::ResourceAttribute(p) => attribute(self.ctx.resource, p),
            MetricSelector::ScopeAttribute(p) => attribute(self.ctx.scope, p),
            MetricSelector::Type => self.data().map(|(_, t)| FieldValue::Int(t)),
            MetricSelector::Temporality => {
                let (data, t) = self.data()?;
                if t == 1 || t == 5 {
                    return None;
                }
                let names = [
                    ("AGGREGATION_TEMPORALITY_DELTA", 1),
                    ("AGGREGATION_TEMPORALITY_CUMULATIVE", 2),
                ];
                enum_number(data.get("aggregationTemporality")?, &names)
                    .filter(|&n| n != 0)
                    .map(FieldValue::Int)
            }
        }
    }
}

struct SpanRef<'c, 'a> {
    ctx: &'c mut Context<'a>,
    span: &'c mut Value,
}

const SPAN_KINDS: [(&str, i64); 6] = [
    ("SPAN_KIND_UNSPECIFIED", 0),
    ("SPAN_KIND_INTERNAL", 1),
    ("SPAN_KIND_SERVER", 2),
    ("SPAN_KIND_CLIENT", 3),
    ("SPAN_KIND_PRODUCER", 4),
    ("SPAN_KIND_CONSUMER", 5),
];
const STATUS_CODES: [(&str, i64); 3] = [
    ("STATUS_CODE_UNSET", 0),
    ("STATUS_CODE_OK", 1),
    ("STATUS_CODE_ERROR", 2),
];

fn events(span: &Value) -> impl Iterator<Item = &Value> {
    span.get("events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

impl SpanView for SpanRef<'_, '_> {
    fn get(&self, selector: &TraceSelector) -> Option<FieldValue<'_>> {
        let span: &Value = self.span;
        match selector {
            TraceSelector::Field(TraceField::Name) => non_empty_str(span, "name"),
            TraceSelector::Field(TraceField::TraceId) => hex_field(span, "traceId"),
            TraceSelector::Field(TraceField::SpanId) => hex_field(span, "spanId"),
            TraceSelector::Field(TraceField::ParentSpanId) => hex_field(span, "parentSpanId"),
            TraceSelector::Field(TraceField::TraceState) => non_empty_str(span, "traceState"),
            TraceSelector::Field(TraceField::ResourceSchemaUrl) => {
                Some(FieldValue::str(&self.ctx.resource_schema))
            }
            TraceSelector::Field(TraceField::ScopeSchemaUrl) => {
                Some(FieldValue::str(&self.ctx.scope_schema))
            }
            TraceSelector::Field(TraceField::ScopeName) => non_empty_str(self.ctx.scope, "name"),
            TraceSelector::Field(TraceField::ScopeVersion) => {
                non_empty_str(self.ctx.scope, "version")
            }
            TraceSelector::Field(_) => None,
            TraceSelector::SpanAttribute(p) => attribute(span, p),
            TraceSelector::ResourceAttribute(p) => attribute(self.ctx.resource, p),
            TraceSelector::ScopeAttribute(p) => attribute(self.ctx.scope, p),
            TraceSelector::Kind => Some(FieldValue::Int(
                span.get("kind")
                    .and_then(|k| enum_number(k, &SPAN_KINDS))
                    .unwrap_or(0),
            )),
            TraceSelector::Status => Some(FieldValue::Int(
                span.get("status")
                    .and_then(|s| s.get("code"))
                    .and_then(|c| enum_number(c, &STATUS_CODES))
                    .unwrap_or(0),
            )),
            TraceSelector::EventName(name) => events(span)
                .any(|e| str_field(e, "name") == &**name)
                .then(|| FieldValue::Str(Cow::Owned(name.to_string()))),
            TraceSelector::EventAttribute(p) => events(span).find_map(|e| attribute(e, p)),
            TraceSelector::LinkTraceId(id) => {
                let links = span.get("links").and_then(Value::as_array)?;
                links
                    .iter()
                    .any(|l| hex::decode(str_field(l, "traceId")).is_ok_and(|b| b == **id))
                    .then(|| FieldValue::Bytes(Cow::Owned(id.to_vec())))
            }
        }
    }
}

impl SpanViewMut for SpanRef<'_, '_> {
    fn set_trace_state(&mut self, trace_state: String) {
        if let Some(map) = self.span.as_object_mut() {
            map.insert("traceState".into(), Value::String(trace_state));
        }
    }
}

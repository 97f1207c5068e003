//! The generated types to OTLP JSON.

use base64::Engine as _;
use serde_json::{Map, Number, Value, json};
use tero_proto::otel::{AnyValue, InstrumentationScope, KeyValue, any_value};
use tero_proto::otlp_collector::logs::v1::ExportLogsServiceRequest;
use tero_proto::otlp_collector::metrics::v1::ExportMetricsServiceRequest;
use tero_proto::otlp_collector::trace::v1::ExportTraceServiceRequest;
use tero_proto::otlp_logs::LogRecord;
use tero_proto::otlp_metrics::{
    Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint,
    SummaryDataPoint, exemplar, exponential_histogram_data_point, metric, number_data_point,
};
use tero_proto::otlp_resource::Resource;
use tero_proto::otlp_trace::Span;

/// Builds a JSON object, leaving out members with default values.
#[derive(Default)]
struct Out(Map<String, Value>);

impl Out {
    fn put(mut self, name: &str, value: Value) -> Self {
        self.0.insert(name.to_owned(), value);
        self
    }

    fn string(self, name: &str, value: &str) -> Self {
        if value.is_empty() {
            return self;
        }
        self.put(name, Value::String(value.to_owned()))
    }

    /// A 64-bit integer, as a string.
    fn u64(self, name: &str, value: u64) -> Self {
        if value == 0 {
            return self;
        }
        self.put(name, Value::String(value.to_string()))
    }

    fn number(self, name: &str, value: i64) -> Self {
        if value == 0 {
            return self;
        }
        self.put(name, json!(value))
    }

    fn bool(self, name: &str, value: bool) -> Self {
        if !value {
            return self;
        }
        self.put(name, Value::Bool(true))
    }

    fn double(self, name: &str, value: f64) -> Self {
        if value == 0.0 {
            return self;
        }
        self.put(name, double_json(value))
    }

    fn optional_double(self, name: &str, value: Option<f64>) -> Self {
        match value {
            Some(v) => self.put(name, double_json(v)),
            None => self,
        }
    }

    fn id(self, name: &str, value: &[u8]) -> Self {
        if value.is_empty() {
            return self;
        }
        self.put(name, Value::String(hex::encode(value)))
    }

    fn list<T>(self, name: &str, items: &[T], item: impl Fn(&T) -> Value) -> Self {
        if items.is_empty() {
            return self;
        }
        self.put(name, Value::Array(items.iter().map(item).collect()))
    }

    fn message<T>(self, name: &str, value: Option<&T>, write: impl FnOnce(&T) -> Value) -> Self {
        match value {
            Some(v) => self.put(name, write(v)),
            None => self,
        }
    }

    fn attributes(self, name: &str, attributes: &[KeyValue]) -> Self {
        self.list(name, attributes, key_value_to_json)
    }

    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

fn double_json(value: f64) -> Value {
    match Number::from_f64(value) {
        Some(n) => Value::Number(n),
        None if value.is_nan() => json!("NaN"),
        None if value > 0.0 => json!("Infinity"),
        None => json!("-Infinity"),
    }
}

fn key_value_to_json(kv: &KeyValue) -> Value {
    Out::default()
        .put("key", Value::String(kv.key.clone()))
        .message("value", kv.value.as_ref(), any_value_to_json)
        .done()
}

fn any_value_to_json(v: &AnyValue) -> Value {
    use any_value::Value as V;
    let out = Out::default();
    match &v.value {
        None => out,
        Some(V::StringValue(s)) => out.put("stringValue", json!(s)),
        Some(V::BoolValue(b)) => out.put("boolValue", json!(b)),
        Some(V::IntValue(i)) => out.put("intValue", json!(i.to_string())),
        Some(V::DoubleValue(d)) => out.put("doubleValue", double_json(*d)),
        Some(V::BytesValue(b)) => out.put(
            "bytesValue",
            json!(base64::engine::general_purpose::STANDARD.encode(b)),
        ),
        Some(V::ArrayValue(a)) => out.put(
            "arrayValue",
            Out::default()
                .list("values", &a.values, any_value_to_json)
                .done(),
        ),
        Some(V::KvlistValue(l)) => out.put(
            "kvlistValue",
            Out::default().attributes("values", &l.values).done(),
        ),
    }
    .done()
}

fn resource_to_json(r: &Resource) -> Value {
    Out::default()
        .attributes("attributes", &r.attributes)
        .number("droppedAttributesCount", r.dropped_attributes_count.into())
        .list("entityRefs", &r.entity_refs, |e| {
            Out::default()
                .string("schemaUrl", &e.schema_url)
                .string("type", &e.r#type)
                .list("idKeys", &e.id_keys, |k| json!(k))
                .list("descriptionKeys", &e.description_keys, |k| json!(k))
                .done()
        })
        .done()
}

fn scope_to_json(s: &InstrumentationScope) -> Value {
    Out::default()
        .string("name", &s.name)
        .string("version", &s.version)
        .attributes("attributes", &s.attributes)
        .number("droppedAttributesCount", s.dropped_attributes_count.into())
        .done()
}

/// The three-level layout every signal shares; the top-level array is
/// always written, so the document names its signal.
fn entry_json(
    resource: Option<&Resource>,
    scopes_key: &str,
    scopes: Vec<Value>,
    schema_url: &str,
) -> Value {
    Out::default()
        .message("resource", resource, resource_to_json)
        .put(scopes_key, Value::Array(scopes))
        .string("schemaUrl", schema_url)
        .done()
}

fn scope_entry_json(
    scope: Option<&InstrumentationScope>,
    records_key: &str,
    records: Vec<Value>,
    schema_url: &str,
) -> Value {
    Out::default()
        .message("scope", scope, scope_to_json)
        .put(records_key, Value::Array(records))
        .string("schemaUrl", schema_url)
        .done()
}

/// An export request as `LogsData` JSON.
pub fn logs_to_json(request: &ExportLogsServiceRequest) -> Value {
    let resources = request.resource_logs.iter().map(|r| {
        let scopes = r.scope_logs.iter().map(|s| {
            let records = s.log_records.iter().map(log_record_to_json).collect();
            scope_entry_json(s.scope.as_ref(), "logRecords", records, &s.schema_url)
        });
        entry_json(
            r.resource.as_ref(),
            "scopeLogs",
            scopes.collect(),
            &r.schema_url,
        )
    });
    json!({ "resourceLogs": resources.collect::<Vec<_>>() })
}

fn log_record_to_json(l: &LogRecord) -> Value {
    Out::default()
        .u64("timeUnixNano", l.time_unix_nano)
        .u64("observedTimeUnixNano", l.observed_time_unix_nano)
        .number("severityNumber", l.severity_number.into())
        .string("severityText", &l.severity_text)
        .message("body", l.body.as_ref(), any_value_to_json)
        .attributes("attributes", &l.attributes)
        .number("droppedAttributesCount", l.dropped_attributes_count.into())
        .number("flags", l.flags.into())
        .id("traceId", &l.trace_id)
        .id("spanId", &l.span_id)
        .string("eventName", &l.event_name)
        .done()
}

/// An export request as `TracesData` JSON.
pub fn traces_to_json(request: &ExportTraceServiceRequest) -> Value {
    let resources = request.resource_spans.iter().map(|r| {
        let scopes = r.scope_spans.iter().map(|s| {
            let spans = s.spans.iter().map(span_to_json).collect();
            scope_entry_json(s.scope.as_ref(), "spans", spans, &s.schema_url)
        });
        entry_json(
            r.resource.as_ref(),
            "scopeSpans",
            scopes.collect(),
            &r.schema_url,
        )
    });
    json!({ "resourceSpans": resources.collect::<Vec<_>>() })
}

fn span_to_json(s: &Span) -> Value {
    Out::default()
        .id("traceId", &s.trace_id)
        .id("spanId", &s.span_id)
        .string("traceState", &s.trace_state)
        .id("parentSpanId", &s.parent_span_id)
        .number("flags", s.flags.into())
        .string("name", &s.name)
        .number("kind", s.kind.into())
        .u64("startTimeUnixNano", s.start_time_unix_nano)
        .u64("endTimeUnixNano", s.end_time_unix_nano)
        .attributes("attributes", &s.attributes)
        .number("droppedAttributesCount", s.dropped_attributes_count.into())
        .list("events", &s.events, |e| {
            Out::default()
                .u64("timeUnixNano", e.time_unix_nano)
                .string("name", &e.name)
                .attributes("attributes", &e.attributes)
                .number("droppedAttributesCount", e.dropped_attributes_count.into())
                .done()
        })
        .number("droppedEventsCount", s.dropped_events_count.into())
        .list("links", &s.links, |l| {
            Out::default()
                .id("traceId", &l.trace_id)
                .id("spanId", &l.span_id)
                .string("traceState", &l.trace_state)
                .attributes("attributes", &l.attributes)
                .number("droppedAttributesCount", l.dropped_attributes_count.into())
                .number("flags", l.flags.into())
                .done()
        })
        .number("droppedLinksCount", s.dropped_links_count.into())
        .message("status", s.status.as_ref(), |st| {
            Out::default()
                .string("message", &st.message)
                .number("code", st.code.into())
                .done()
        })
        .done()
}

/// An export request as `MetricsData` JSON.
pub fn metrics_to_json(request: &ExportMetricsServiceRequest) -> Value {
    let resources = request.resource_metrics.iter().map(|r| {
        let scopes = r.scope_metrics.iter().map(|s| {
            let metrics = s.metrics.iter().map(metric_to_json).collect();
            scope_entry_json(s.scope.as_ref(), "metrics", metrics, &s.schema_url)
        });
        entry_json(
            r.resource.as_ref(),
            "scopeMetrics",
            scopes.collect(),
            &r.schema_url,
        )
    });
    json!({ "resourceMetrics": resources.collect::<Vec<_>>() })
}

fn metric_to_json(m: &Metric) -> Value {
    use metric::Data;
    let out = Out::default()
        .string("name", &m.name)
        .string("description", &m.description)
        .string("unit", &m.unit)
        .attributes("metadata", &m.metadata);
    match &m.data {
        None => out,
        Some(Data::Gauge(g)) => out.put(
            "gauge",
            Out::default()
                .list("dataPoints", &g.data_points, number_point_to_json)
                .done(),
        ),
        Some(Data::Sum(s)) => out.put(
            "sum",
            Out::default()
                .list("dataPoints", &s.data_points, number_point_to_json)
                .number("aggregationTemporality", s.aggregation_temporality.into())
                .bool("isMonotonic", s.is_monotonic)
                .done(),
        ),
        Some(Data::Histogram(h)) => out.put(
            "histogram",
            Out::default()
                .list("dataPoints", &h.data_points, histogram_point_to_json)
                .number("aggregationTemporality", h.aggregation_temporality.into())
                .done(),
        ),
        Some(Data::ExponentialHistogram(e)) => out.put(
            "exponentialHistogram",
            Out::default()
                .list("dataPoints", &e.data_points, exponential_point_to_json)
                .number("aggregationTemporality", e.aggregation_temporality.into())
                .done(),
        ),
        Some(Data::Summary(s)) => out.put(
            "summary",
            Out::default()
                .list("dataPoints", &s.data_points, summary_point_to_json)
                .done(),
        ),
    }
    .done()
}

fn number_point_to_json(p: &NumberDataPoint) -> Value {
    use number_data_point::Value as V;
    let out = Out::default()
        .attributes("attributes", &p.attributes)
        .u64("startTimeUnixNano", p.start_time_unix_nano)
        .u64("timeUnixNano", p.time_unix_nano)
        .list("exemplars", &p.exemplars, exemplar_to_json)
        .number("flags", p.flags.into());
    match p.value {
        None => out,
        Some(V::AsDouble(d)) => out.put("asDouble", double_json(d)),
        Some(V::AsInt(i)) => out.put("asInt", json!(i.to_string())),
    }
    .done()
}

fn histogram_point_to_json(p: &HistogramDataPoint) -> Value {
    Out::default()
        .attributes("attributes", &p.attributes)
        .u64("startTimeUnixNano", p.start_time_unix_nano)
        .u64("timeUnixNano", p.time_unix_nano)
        .u64("count", p.count)
        .optional_double("sum", p.sum)
        .list("bucketCounts", &p.bucket_counts, |c| json!(c.to_string()))
        .list("explicitBounds", &p.explicit_bounds, |b| double_json(*b))
        .list("exemplars", &p.exemplars, exemplar_to_json)
        .number("flags", p.flags.into())
        .optional_double("min", p.min)
        .optional_double("max", p.max)
        .done()
}

fn exponential_point_to_json(p: &ExponentialHistogramDataPoint) -> Value {
    let buckets = |b: &exponential_histogram_data_point::Buckets| {
        Out::default()
            .number("offset", b.offset.into())
            .list("bucketCounts", &b.bucket_counts, |c| json!(c.to_string()))
            .done()
    };
    Out::default()
        .attributes("attributes", &p.attributes)
        .u64("startTimeUnixNano", p.start_time_unix_nano)
        .u64("timeUnixNano", p.time_unix_nano)
        .u64("count", p.count)
        .optional_double("sum", p.sum)
        .number("scale", p.scale.into())
        .u64("zeroCount", p.zero_count)
        .message("positive", p.positive.as_ref(), buckets)
        .message("negative", p.negative.as_ref(), buckets)
        .number("flags", p.flags.into())
        .list("exemplars", &p.exemplars, exemplar_to_json)
        .optional_double("min", p.min)
        .optional_double("max", p.max)
        .double("zeroThreshold", p.zero_threshold)
        .done()
}

fn summary_point_to_json(p: &SummaryDataPoint) -> Value {
    Out::default()
        .attributes("attributes", &p.attributes)
        .u64("startTimeUnixNano", p.start_time_unix_nano)
        .u64("timeUnixNano", p.time_unix_nano)
        .u64("count", p.count)
        .double("sum", p.sum)
        .list("quantileValues", &p.quantile_values, |q| {
            Out::default()
                .double("quantile", q.quantile)
                .double("value", q.value)
                .done()
        })
        .number("flags", p.flags.into())
        .done()
}

fn exemplar_to_json(e: &Exemplar) -> Value {
    use exemplar::Value as V;
    let out = Out::default()
        .attributes("filteredAttributes", &e.filtered_attributes)
        .u64("timeUnixNano", e.time_unix_nano)
        .id("spanId", &e.span_id)
        .id("traceId", &e.trace_id);
    match e.value {
        None => out,
        Some(V::AsDouble(d)) => out.put("asDouble", double_json(d)),
        Some(V::AsInt(i)) => out.put("asInt", json!(i.to_string())),
    }
    .done()
}

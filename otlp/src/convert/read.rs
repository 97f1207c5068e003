//! OTLP JSON to the generated types: lenient about what producers write,
//! precise about where a document is wrong.

use base64::Engine as _;
use serde_json::{Map, Value};
use tero_proto::otel::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use tero_proto::otlp_collector::logs::v1::ExportLogsServiceRequest;
use tero_proto::otlp_collector::metrics::v1::ExportMetricsServiceRequest;
use tero_proto::otlp_collector::trace::v1::ExportTraceServiceRequest;
use tero_proto::otlp_logs::{LogRecord, ResourceLogs, ScopeLogs};
use tero_proto::otlp_metrics::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, exponential_histogram_data_point, metric, number_data_point,
    summary_data_point,
};
use tero_proto::otlp_resource::Resource;
use tero_proto::otlp_trace::{ResourceSpans, ScopeSpans, Span, Status, span};

use super::{ConvertError, Result};

/// A JSON object being read, with its path for error messages.
struct Obj<'v> {
    map: &'v Map<String, Value>,
    path: String,
}

fn error(path: &str, problem: impl Into<String>) -> ConvertError {
    ConvertError::Json {
        path: path.into(),
        problem: problem.into(),
    }
}

fn obj<'v>(value: &'v Value, path: String) -> Result<Obj<'v>> {
    match value {
        Value::Object(map) => Ok(Obj { map, path }),
        other => Err(error(&path, format!("expected an object, found {other}"))),
    }
}

/// `fooBarBaz` as `foo_bar_baz`.
fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

impl<'v> Obj<'v> {
    /// A member by its camelCase name (or its snake_case one); `null` is
    /// absent.
    fn get(&self, name: &str) -> Option<&'v Value> {
        self.map
            .get(name)
            .or_else(|| self.map.get(&snake_case(name)))
            .filter(|v| !v.is_null())
    }

    fn path(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }

    fn string(&self, name: &str) -> Result<String> {
        match self.get(name) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(error(
                &self.path(name),
                format!("expected a string, found {other}"),
            )),
        }
    }

    fn strings(&self, name: &str) -> Result<Vec<String>> {
        self.list(name, |v, path| match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(error(&path, format!("expected a string, found {other}"))),
        })
    }

    fn bool(&self, name: &str) -> Result<bool> {
        match self.get(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(error(
                &self.path(name),
                format!("expected true or false, found {other}"),
            )),
        }
    }

    fn u64(&self, name: &str) -> Result<u64> {
        self.get(name)
            .map_or(Ok(0), |v| unsigned(v, &self.path(name)))
    }

    fn i64(&self, name: &str) -> Result<i64> {
        self.get(name)
            .map_or(Ok(0), |v| signed(v, &self.path(name)))
    }

    fn u32(&self, name: &str) -> Result<u32> {
        let v = self.u64(name)?;
        u32::try_from(v)
            .map_err(|_| error(&self.path(name), format!("{v} does not fit in 32 bits")))
    }

    fn i32(&self, name: &str) -> Result<i32> {
        let v = self.i64(name)?;
        i32::try_from(v)
            .map_err(|_| error(&self.path(name), format!("{v} does not fit in 32 bits")))
    }

    fn f64(&self, name: &str) -> Result<f64> {
        self.get(name)
            .map_or(Ok(0.0), |v| double(v, &self.path(name)))
    }

    fn optional_f64(&self, name: &str) -> Result<Option<f64>> {
        self.get(name)
            .map(|v| double(v, &self.path(name)))
            .transpose()
    }

    /// An enum, by name (from `names`, index = number) or number.
    fn enumeration(&self, name: &str, names: &[&str]) -> Result<i32> {
        let path = self.path(name);
        match self.get(name) {
            None => Ok(0),
            Some(Value::String(s)) => match names.iter().position(|n| n == s) {
                Some(number) => Ok(number as i32),
                None => s.parse().map_err(|_| {
                    error(
                        &path,
                        format!("unknown value {s:?}; expected one of {names:?}"),
                    )
                }),
            },
            Some(v) => i32::try_from(signed(v, &path)?)
                .map_err(|_| error(&path, "enum number does not fit in 32 bits")),
        }
    }

    /// A trace or span id: hex.
    fn id(&self, name: &str) -> Result<Vec<u8>> {
        let text = self.string(name)?;
        hex::decode(&text)
            .map_err(|e| error(&self.path(name), format!("{text:?} is not a hex id ({e})")))
    }

    fn list<T>(
        &self,
        name: &str,
        mut item: impl FnMut(&Value, String) -> Result<T>,
    ) -> Result<Vec<T>> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| item(v, format!("{}[{i}]", self.path(name))))
                .collect(),
            Some(other) => Err(error(
                &self.path(name),
                format!("expected an array, found {other}"),
            )),
        }
    }

    fn objects<T>(
        &self,
        name: &str,
        mut item: impl FnMut(&Obj<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.list(name, |v, path| item(&obj(v, path)?))
    }

    fn message<T>(
        &self,
        name: &str,
        read: impl FnOnce(&Obj<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        self.get(name)
            .map(|v| read(&obj(v, self.path(name))?))
            .transpose()
    }

    fn attributes(&self, name: &str) -> Result<Vec<KeyValue>> {
        self.objects(name, key_value_from_json)
    }
}

fn unsigned(v: &Value, path: &str) -> Result<u64> {
    let parsed = match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| error(path, format!("expected an unsigned integer, found {v}")))
}

fn signed(v: &Value, path: &str) -> Result<i64> {
    let parsed = match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| error(path, format!("expected an integer, found {v}")))
}

fn double(v: &Value, path: &str) -> Result<f64> {
    let parsed = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            other => other.parse().ok(),
        },
        _ => None,
    };
    parsed.ok_or_else(|| error(path, format!("expected a number, found {v}")))
}

fn key_value_from_json(o: &Obj<'_>) -> Result<KeyValue> {
    Ok(KeyValue {
        key: o.string("key")?,
        value: o.message("value", any_value_from_json)?,
    })
}

/// The first reader that finds its member: how a JSON oneof is read.
fn first_member<T>(readers: &[&dyn Fn() -> Result<Option<T>>]) -> Result<Option<T>> {
    for read in readers {
        if let Some(value) = read()? {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

fn any_value_from_json(o: &Obj<'_>) -> Result<AnyValue> {
    use any_value::Value as V;
    let present = |name: &str| o.get(name).is_some();
    let value = first_member::<V>(&[
        &|| match o.get("stringValue") {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(V::StringValue(s.clone()))),
            Some(other) => Err(error(
                &o.path("stringValue"),
                format!("expected a string, found {other}"),
            )),
        },
        &|| {
            present("boolValue")
                .then(|| o.bool("boolValue").map(V::BoolValue))
                .transpose()
        },
        &|| {
            present("intValue")
                .then(|| o.i64("intValue").map(V::IntValue))
                .transpose()
        },
        &|| {
            present("doubleValue")
                .then(|| o.f64("doubleValue").map(V::DoubleValue))
                .transpose()
        },
        &|| {
            if !present("bytesValue") {
                return Ok(None);
            }
            let text = o.string("bytesValue")?;
            base64::engine::general_purpose::STANDARD
                .decode(&text)
                .map(|bytes| Some(V::BytesValue(bytes)))
                .map_err(|e| error(&o.path("bytesValue"), format!("not base64 ({e})")))
        },
        &|| {
            let array = o.message("arrayValue", |a| {
                Ok(ArrayValue {
                    values: a.objects("values", any_value_from_json)?,
                })
            })?;
            Ok(array.map(V::ArrayValue))
        },
        &|| {
            let list = o.message("kvlistValue", |l| {
                Ok(KeyValueList {
                    values: l.attributes("values")?,
                })
            })?;
            Ok(list.map(V::KvlistValue))
        },
    ])?;
    Ok(AnyValue { value })
}

fn resource_from_json(o: &Obj<'_>) -> Result<Resource> {
    Ok(Resource {
        attributes: o.attributes("attributes")?,
        dropped_attributes_count: o.u32("droppedAttributesCount")?,
        entity_refs: o.objects("entityRefs", |e| {
            Ok(EntityRef {
                schema_url: e.string("schemaUrl")?,
                r#type: e.string("type")?,
                id_keys: e.strings("idKeys")?,
                description_keys: e.strings("descriptionKeys")?,
            })
        })?,
    })
}

fn scope_from_json(o: &Obj<'_>) -> Result<InstrumentationScope> {
    Ok(InstrumentationScope {
        name: o.string("name")?,
        version: o.string("version")?,
        attributes: o.attributes("attributes")?,
        dropped_attributes_count: o.u32("droppedAttributesCount")?,
    })
}

const SEVERITY_NUMBERS: [&str; 25] = [
    "SEVERITY_NUMBER_UNSPECIFIED",
    "SEVERITY_NUMBER_TRACE",
    "SEVERITY_NUMBER_TRACE2",
    "SEVERITY_NUMBER_TRACE3",
    "SEVERITY_NUMBER_TRACE4",
    "SEVERITY_NUMBER_DEBUG",
    "SEVERITY_NUMBER_DEBUG2",
    "SEVERITY_NUMBER_DEBUG3",
    "SEVERITY_NUMBER_DEBUG4",
    "SEVERITY_NUMBER_INFO",
    "SEVERITY_NUMBER_INFO2",
    "SEVERITY_NUMBER_INFO3",
    "SEVERITY_NUMBER_INFO4",
    "SEVERITY_NUMBER_WARN",
    "SEVERITY_NUMBER_WARN2",
    "SEVERITY_NUMBER_WARN3",
    "SEVERITY_NUMBER_WARN4",
    "SEVERITY_NUMBER_ERROR",
    "SEVERITY_NUMBER_ERROR2",
    "SEVERITY_NUMBER_ERROR3",
    "SEVERITY_NUMBER_ERROR4",
    "SEVERITY_NUMBER_FATAL",
    "SEVERITY_NUMBER_FATAL2",
    "SEVERITY_NUMBER_FATAL3",
    "SEVERITY_NUMBER_FATAL4",
];
const SPAN_KINDS: [&str; 6] = [
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
const STATUS_CODES: [&str; 3] = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];
const TEMPORALITIES: [&str; 3] = [
    "AGGREGATION_TEMPORALITY_UNSPECIFIED",
    "AGGREGATION_TEMPORALITY_DELTA",
    "AGGREGATION_TEMPORALITY_CUMULATIVE",
];

/// The three-level layout every signal shares.
fn entries_from_json<R, S, T>(
    document: &Value,
    keys: [&str; 3],
    record: impl Fn(&Obj<'_>) -> Result<T>,
    scope_entry: impl Fn(Option<InstrumentationScope>, Vec<T>, String) -> S,
    resource_entry: impl Fn(Option<Resource>, Vec<S>, String) -> R,
) -> Result<Vec<R>> {
    let [resources, scopes, records] = keys;
    let root = obj(document, "$".to_owned())?;
    root.objects(resources, |r| {
        let scope_entries = r.objects(scopes, |s| {
            Ok(scope_entry(
                s.message("scope", scope_from_json)?,
                s.objects(records, &record)?,
                s.string("schemaUrl")?,
            ))
        })?;
        Ok(resource_entry(
            r.message("resource", resource_from_json)?,
            scope_entries,
            r.string("schemaUrl")?,
        ))
    })
}

/// `LogsData` JSON as an export request.
pub fn logs_from_json(document: &Value) -> Result<ExportLogsServiceRequest> {
    let resource_logs = entries_from_json(
        document,
        ["resourceLogs", "scopeLogs", "logRecords"],
        log_record_from_json,
        |scope, log_records, schema_url| ScopeLogs {
            scope,
            log_records,
            schema_url,
        },
        |resource, scope_logs, schema_url| ResourceLogs {
            resource,
            scope_logs,
            schema_url,
        },
    )?;
    Ok(ExportLogsServiceRequest { resource_logs })
}

fn log_record_from_json(o: &Obj<'_>) -> Result<LogRecord> {
    Ok(LogRecord {
        time_unix_nano: o.u64("timeUnixNano")?,
        observed_time_unix_nano: o.u64("observedTimeUnixNano")?,
        severity_number: o.enumeration("severityNumber", &SEVERITY_NUMBERS)?,
        severity_text: o.string("severityText")?,
        body: o.message("body", any_value_from_json)?,
        attributes: o.attributes("attributes")?,
        dropped_attributes_count: o.u32("droppedAttributesCount")?,
        flags: o.u32("flags")?,
        trace_id: o.id("traceId")?,
        span_id: o.id("spanId")?,
        event_name: o.string("eventName")?,
    })
}

/// `TracesData` JSON as an export request.
pub fn traces_from_json(document: &Value) -> Result<ExportTraceServiceRequest> {
    let resource_spans = entries_from_json(
        document,
        ["resourceSpans", "scopeSpans", "spans"],
        span_from_json,
        |scope, spans, schema_url| ScopeSpans {
            scope,
            spans,
            schema_url,
        },
        |resource, scope_spans, schema_url| ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        },
    )?;
    Ok(ExportTraceServiceRequest { resource_spans })
}

fn span_from_json(o: &Obj<'_>) -> Result<Span> {
    Ok(Span {
        trace_id: o.id("traceId")?,
        span_id: o.id("spanId")?,
        trace_state: o.string("traceState")?,
        parent_span_id: o.id("parentSpanId")?,
        flags: o.u32("flags")?,
        name: o.string("name")?,
        kind: o.enumeration("kind", &SPAN_KINDS)?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        end_time_unix_nano: o.u64("endTimeUnixNano")?,
        attributes: o.attributes("attributes")?,
        dropped_attributes_count: o.u32("droppedAttributesCount")?,
        events: o.objects("events", |e| {
            Ok(span::Event {
                time_unix_nano: e.u64("timeUnixNano")?,
                name: e.string("name")?,
                attributes: e.attributes("attributes")?,
                dropped_attributes_count: e.u32("droppedAttributesCount")?,
            })
        })?,
        dropped_events_count: o.u32("droppedEventsCount")?,
        links: o.objects("links", |l| {
            Ok(span::Link {
                trace_id: l.id("traceId")?,
                span_id: l.id("spanId")?,
                trace_state: l.string("traceState")?,
                attributes: l.attributes("attributes")?,
                dropped_attributes_count: l.u32("droppedAttributesCount")?,
                flags: l.u32("flags")?,
            })
        })?,
        dropped_links_count: o.u32("droppedLinksCount")?,
        status: o.message("status", |s| {
            Ok(Status {
                message: s.string("message")?,
                code: s.enumeration("code", &STATUS_CODES)?,
            })
        })?,
    })
}

/// `MetricsData` JSON as an export request.
pub fn metrics_from_json(document: &Value) -> Result<ExportMetricsServiceRequest> {
    let resource_metrics = entries_from_json(
        document,
        ["resourceMetrics", "scopeMetrics", "metrics"],
        metric_from_json,
        |scope, metrics, schema_url| ScopeMetrics {
            scope,
            metrics,
            schema_url,
        },
        |resource, scope_metrics, schema_url| ResourceMetrics {
            resource,
            scope_metrics,
            schema_url,
        },
    )?;
    Ok(ExportMetricsServiceRequest { resource_metrics })
}

fn metric_from_json(o: &Obj<'_>) -> Result<Metric> {
    use metric::Data;
    let temporality = |d: &Obj<'_>| d.enumeration("aggregationTemporality", &TEMPORALITIES);
    let data = first_member::<Data>(&[
        &|| {
            let gauge = o.message("gauge", |g| {
                Ok(Gauge {
                    data_points: g.objects("dataPoints", number_point_from_json)?,
                })
            })?;
            Ok(gauge.map(Data::Gauge))
        },
        &|| {
            let sum = o.message("sum", |s| {
                Ok(Sum {
                    data_points: s.objects("dataPoints", number_point_from_json)?,
                    aggregation_temporality: temporality(s)?,
                    is_monotonic: s.bool("isMonotonic")?,
                })
            })?;
            Ok(sum.map(Data::Sum))
        },
        &|| {
            let histogram = o.message("histogram", |h| {
                Ok(Histogram {
                    data_points: h.objects("dataPoints", histogram_point_from_json)?,
                    aggregation_temporality: temporality(h)?,
                })
            })?;
            Ok(histogram.map(Data::Histogram))
        },
        &|| {
            let histogram = o.message("exponentialHistogram", |e| {
                Ok(ExponentialHistogram {
                    data_points: e.objects("dataPoints", exponential_point_from_json)?,
                    aggregation_temporality: temporality(e)?,
                })
            })?;
            Ok(histogram.map(Data::ExponentialHistogram))
        },
        &|| {
            let summary = o.message("summary", |s| {
                Ok(Summary {
                    data_points: s.objects("dataPoints", summary_point_from_json)?,
                })
            })?;
            Ok(summary.map(Data::Summary))
        },
    ])?;
    Ok(Metric {
        name: o.string("name")?,
        description: o.string("description")?,
        unit: o.string("unit")?,
        metadata: o.attributes("metadata")?,
        data,
    })
}

fn number_point_from_json(o: &Obj<'_>) -> Result<NumberDataPoint> {
    use number_data_point::Value as V;
    let value = if o.get("asDouble").is_some() {
        Some(V::AsDouble(o.f64("asDouble")?))
    } else if o.get("asInt").is_some() {
        Some(V::AsInt(o.i64("asInt")?))
    } else {
        None
    };
    Ok(NumberDataPoint {
        attributes: o.attributes("attributes")?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        time_unix_nano: o.u64("timeUnixNano")?,
        exemplars: o.objects("exemplars", exemplar_from_json)?,
        flags: o.u32("flags")?,
        value,
    })
}

fn histogram_point_from_json(o: &Obj<'_>) -> Result<HistogramDataPoint> {
    Ok(HistogramDataPoint {
        attributes: o.attributes("attributes")?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        time_unix_nano: o.u64("timeUnixNano")?,
        count: o.u64("count")?,
        sum: o.optional_f64("sum")?,
        bucket_counts: o.list("bucketCounts", |v, path| unsigned(v, &path))?,
        explicit_bounds: o.list("explicitBounds", |v, path| double(v, &path))?,
        exemplars: o.objects("exemplars", exemplar_from_json)?,
        flags: o.u32("flags")?,
        min: o.optional_f64("min")?,
        max: o.optional_f64("max")?,
    })
}

fn exponential_point_from_json(o: &Obj<'_>) -> Result<ExponentialHistogramDataPoint> {
    let buckets = |b: &Obj<'_>| {
        Ok(exponential_histogram_data_point::Buckets {
            offset: b.i32("offset")?,
            bucket_counts: b.list("bucketCounts", |v, path| unsigned(v, &path))?,
        })
    };
    Ok(ExponentialHistogramDataPoint {
        attributes: o.attributes("attributes")?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        time_unix_nano: o.u64("timeUnixNano")?,
        count: o.u64("count")?,
        sum: o.optional_f64("sum")?,
        scale: o.i32("scale")?,
        zero_count: o.u64("zeroCount")?,
        positive: o.message("positive", buckets)?,
        negative: o.message("negative", buckets)?,
        flags: o.u32("flags")?,
        exemplars: o.objects("exemplars", exemplar_from_json)?,
        min: o.optional_f64("min")?,
        max: o.optional_f64("max")?,
        zero_threshold: o.f64("zeroThreshold")?,
    })
}

fn summary_point_from_json(o: &Obj<'_>) -> Result<SummaryDataPoint> {
    Ok(SummaryDataPoint {
        attributes: o.attributes("attributes")?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        time_unix_nano: o.u64("timeUnixNano")?,
        count: o.u64("count")?,
        sum: o.f64("sum")?,
        quantile_values: o.objects("quantileValues", |q| {
            Ok(summary_data_point::ValueAtQuantile {
                quantile: q.f64("quantile")?,
                value: q.f64("value")?,
            })
        })?,
        flags: o.u32("flags")?,
    })
}

fn exemplar_from_json(o: &Obj<'_>) -> Result<Exemplar> {
    use exemplar::Value as V;
    let value = if o.get("asDouble").is_some() {
        Some(V::AsDouble(o.f64("asDouble")?))
    } else if o.get("asInt").is_some() {
        Some(V::AsInt(o.i64("asInt")?))
    } else {
        None
    };
    Ok(Exemplar {
        filtered_attributes: o.attributes("filteredAttributes")?,
        time_unix_nano: o.u64("timeUnixNano")?,
        span_id: o.id("spanId")?,
        trace_id: o.id("traceId")?,
        value,
    })
}

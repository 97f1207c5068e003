//! OTLP JSON to binary protobuf and back, through the generated types.
//!
//! For tests and tools that hold OTLP JSON (the conformance testcases, a
//! curl-able sample) and need to send or read the protobuf form. It is not
//! on any hot path: it builds the full `tero_proto` message trees.
//!
//! Reading accepts what OTLP/JSON producers write: camelCase or snake_case
//! member names, trace and span ids as hex, 64-bit integers as strings or
//! numbers, enums as names or numbers, `bytesValue` as base64, doubles as
//! numbers or the strings `NaN`, `Infinity`, `-Infinity`; `null` counts as
//! absent and unknown members are ignored. Writing produces OTLP JSON:
//! camelCase, hex ids, 64-bit integers as strings, enums as numbers,
//! default scalars left out, present messages kept (even when empty).

use base64::Engine as _;
use prost::Message as _;
use serde_json::{Map, Number, Value, json};
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

use crate::Signal;

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The JSON is not OTLP JSON; `path` names the offending member.
    #[error("{path}: {problem}")]
    Json { path: String, problem: String },
    /// The bytes are not the protobuf message of the signal.
    #[error("not a valid {message}: {source}")]
    Protobuf {
        message: &'static str,
        source: prost::DecodeError,
    },
}

type Result<T> = std::result::Result<T, ConvertError>;

/// An OTLP JSON document (`LogsData`, `TracesData` or `MetricsData`) of
/// `signal` as the encoded export request.
pub fn json_to_protobuf(signal: Signal, document: &Value) -> Result<Vec<u8>> {
    Ok(match signal {
        Signal::Log => logs_from_json(document)?.encode_to_vec(),
        Signal::Trace => traces_from_json(document)?.encode_to_vec(),
        Signal::Metric => metrics_from_json(document)?.encode_to_vec(),
    })
}

/// An encoded export request of `signal` as an OTLP JSON document.
pub fn protobuf_to_json(signal: Signal, payload: &[u8]) -> Result<Value> {
    let failed = |message| move |source| ConvertError::Protobuf { message, source };
    Ok(match signal {
        Signal::Log => logs_to_json(
            &ExportLogsServiceRequest::decode(payload)
                .map_err(failed("ExportLogsServiceRequest"))?,
        ),
        Signal::Trace => traces_to_json(
            &ExportTraceServiceRequest::decode(payload)
                .map_err(failed("ExportTraceServiceRequest"))?,
        ),
        Signal::Metric => metrics_to_json(
            &ExportMetricsServiceRequest::decode(payload)
                .map_err(failed("ExportMetricsServiceRequest"))?,
        ),
    })
}

// ================================================================ reading

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

// ================================================================ writing

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_round_trip_with_names_numbers_and_hex() {
        let doc = json!({"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
            "scopeLogs": [{
                "scope": {"name": "lib", "version": "1"},
                "logRecords": [{
                    "timeUnixNano": "1700000000000000001",
                    "severityNumber": "SEVERITY_NUMBER_WARN",
                    "severityText": "WARN",
                    "body": {"kvlistValue": {"values": [{"key": "n", "value": {"intValue": 7}}]}},
                    "traceId": "0102030405060708090a0b0c0d0e0f10",
                    "span_id": "0102030405060708",
                    "attributes": [{"key": "b", "value": {"bytesValue": "AAE="}}]
                }],
                "schemaUrl": "https://s"
            }]
        }]});
        let bytes = json_to_protobuf(Signal::Log, &doc).unwrap();
        let back = protobuf_to_json(Signal::Log, &bytes).unwrap();
        let record = &back["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(record["timeUnixNano"], "1700000000000000001");
        assert_eq!(record["severityNumber"], 13);
        assert_eq!(record["traceId"], "0102030405060708090a0b0c0d0e0f10");
        assert_eq!(record["spanId"], "0102030405060708");
        assert_eq!(
            record["body"]["kvlistValue"]["values"][0]["value"]["intValue"],
            "7"
        );
        assert_eq!(record["attributes"][0]["value"]["bytesValue"], "AAE=");
        assert_eq!(
            back["resourceLogs"][0]["scopeLogs"][0]["schemaUrl"],
            "https://s"
        );
    }

    #[test]
    fn bad_members_are_named() {
        let doc = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]});
        let err = json_to_protobuf(Signal::Trace, &doc)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("$.resourceSpans[0].scopeSpans[0].spans[0].traceId:"),
            "{err}"
        );
        let doc = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"sum": {"aggregationTemporality": "SOMETIMES"}}]}]}]});
        let err = json_to_protobuf(Signal::Metric, &doc)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("aggregationTemporality") && err.contains("SOMETIMES"),
            "{err}"
        );
    }

    #[test]
    fn garbage_bytes_are_an_error() {
        assert!(matches!(
            protobuf_to_json(Signal::Log, &[0x0a, 0x05, 1]),
            Err(ConvertError::Protobuf { .. })
        ));
    }
}

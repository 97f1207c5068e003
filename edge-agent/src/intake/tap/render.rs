//! A tap payload as NDJSON lines, one per record: `signal`, `format`, the
//! record as OTLP JSON (with its resource's attributes and its scope) or as
//! the Datadog object it was.
//!
//! Runs in the tap client's task, never on the intake's path. Protobuf
//! payloads are decoded into owned messages here, which is fine for a
//! preview of at most `limit` records.

use bytes::Bytes;
use prost::Message as _;
use serde_json::{Map, Value, json};
use tero_otlp::{Format, Signal};
use tero_proto::otel::{AnyValue, InstrumentationScope, KeyValue};

use super::TapPayload;
use crate::intake::route::{format_label, signal_label};

/// At most `limit` lines of `payload`, and how many.
pub fn lines(payload: &TapPayload, limit: usize) -> (Bytes, usize) {
    let records = records(payload, limit);
    let mut out = Vec::new();
    let signal = signal_label(payload.signal);
    let format = format_label(payload.format);
    let n = records.len();
    for (context, record) in records {
        let mut line = Map::new();
        line.insert("signal".into(), signal.into());
        line.insert("format".into(), format.into());
        if let Some(Context { resource, scope }) = context {
            line.insert("resource".into(), resource);
            line.insert("scope".into(), scope);
        }
        line.insert("record".into(), record);
        if serde_json::to_writer(&mut out, &Value::Object(line)).is_ok() {
            out.push(b'\n');
        }
    }
    (Bytes::from(out), n)
}

/// Where an OTLP record sits: its resource and scope.
#[derive(Clone)]
struct Context {
    resource: Value,
    scope: Value,
}

type Rendered = Vec<(Option<Context>, Value)>;

fn records(payload: &TapPayload, limit: usize) -> Rendered {
    let body = &payload.body[..];
    let rendered = match payload.format {
        Format::OtlpProtobuf => protobuf(payload.signal, body, limit),
        Format::OtlpJson => serde_json::from_slice(body)
            .ok()
            .map(|doc| otlp_json(payload.signal, &doc, limit)),
        Format::DatadogLogs => match serde_json::from_slice(body) {
            Ok(Value::Array(items)) => {
                Some(items.into_iter().take(limit).map(|v| (None, v)).collect())
            }
            _ => None,
        },
        Format::DatadogSeries => match serde_json::from_slice::<Value>(body) {
            Ok(mut doc) => match doc.get_mut("series").map(Value::take) {
                Some(Value::Array(items)) => {
                    Some(items.into_iter().take(limit).map(|v| (None, v)).collect())
                }
                _ => None,
            },
            Err(_) => None,
        },
    };
    // A payload the tap cannot read is shown as such rather than skipped:
    // it went upstream unchanged.
    rendered.unwrap_or_else(|| vec![(None, json!({"undecodable": true, "bytes": body.len()}))])
}

/// The OTLP JSON names of each signal's levels.
fn levels(signal: Signal) -> [&'static str; 3] {
    match signal {
        Signal::Log => ["resourceLogs", "scopeLogs", "logRecords"],
        Signal::Trace => ["resourceSpans", "scopeSpans", "spans"],
        Signal::Metric => ["resourceMetrics", "scopeMetrics", "metrics"],
    }
}

/// `key` in its camelCase spelling, else snake_case (both are OTLP JSON).
fn field<'a>(v: &'a Value, camel: &str) -> Option<&'a Value> {
    v.get(camel).or_else(|| v.get(snake(camel)))
}

fn snake(camel: &str) -> String {
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

fn items<'a>(v: &'a Value, camel: &str) -> &'a [Value] {
    field(v, camel)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn otlp_json(signal: Signal, doc: &Value, limit: usize) -> Rendered {
    let [outer, middle, inner] = levels(signal);
    let mut out = Vec::new();
    for resource in items(doc, outer) {
        for scope in items(resource, middle) {
            let context = Context {
                resource: json!({"attributes": field(resource, "resource")
                    .and_then(|r| field(r, "attributes"))
                    .cloned()
                    .unwrap_or(Value::Array(Vec::new()))}),
                scope: field(scope, "scope").cloned().unwrap_or(Value::Null),
            };
            for record in items(scope, inner) {
                if signal == Signal::Metric {
                    json_points(record, &context, &mut out, limit);
                } else {
                    out.push((Some(context.clone()), record.clone()));
                }
                if out.len() >= limit {
                    out.truncate(limit);
                    return out;
                }
            }
        }
    }
    out
}

/// A metric as one record per data point: the metric without its other
/// points.
fn json_points(metric: &Value, context: &Context, out: &mut Rendered, limit: usize) {
    for kind in [
        "gauge",
        "sum",
        "histogram",
        "exponentialHistogram",
        "summary",
    ] {
        let Some(data) = field(metric, kind) else {
            continue;
        };
        for point in items(data, "dataPoints") {
            let mut one = metric.clone();
            if let Some(obj) = one.as_object_mut() {
                let mut data = data.clone();
                if let Some(d) = data.as_object_mut() {
                    d.remove("data_points");
                    d.insert("dataPoints".into(), Value::Array(vec![point.clone()]));
                }
                obj.remove(&snake(kind));
                obj.insert(kind.into(), data);
            }
            out.push((Some(context.clone()), one));
            if out.len() >= limit {
                return;
            }
        }
    }
}

fn protobuf(signal: Signal, body: &[u8], limit: usize) -> Option<Rendered> {
    use tero_proto::otlp_collector::{logs, metrics, trace};
    let mut out = Vec::new();
    match signal {
        Signal::Log => {
            let request = logs::v1::ExportLogsServiceRequest::decode(body).ok()?;
            for r in &request.resource_logs {
                for s in &r.scope_logs {
                    let context =
                        context(r.resource.as_ref().map(|r| &r.attributes), s.scope.as_ref());
                    for record in &s.log_records {
                        out.push((Some(context.clone()), log_record(record)));
                        if out.len() >= limit {
                            return Some(out);
                        }
                    }
                }
            }
        }
        Signal::Trace => {
            let request = trace::v1::ExportTraceServiceRequest::decode(body).ok()?;
            for r in &request.resource_spans {
                for s in &r.scope_spans {
                    let context =
                        context(r.resource.as_ref().map(|r| &r.attributes), s.scope.as_ref());
                    for span in &s.spans {
                        out.push((Some(context.clone()), span_json(span)));
                        if out.len() >= limit {
                            return Some(out);
                        }
                    }
                }
            }
        }
        Signal::Metric => {
            let request = metrics::v1::ExportMetricsServiceRequest::decode(body).ok()?;
            for r in &request.resource_metrics {
                for s in &r.scope_metrics {
                    let context =
                        context(r.resource.as_ref().map(|r| &r.attributes), s.scope.as_ref());
                    for metric in &s.metrics {
                        for point in metric_points(metric) {
                            out.push((Some(context.clone()), point));
                            if out.len() >= limit {
                                return Some(out);
                            }
                        }
                    }
                }
            }
        }
    }
    Some(out)
}

fn context(attributes: Option<&Vec<KeyValue>>, scope: Option<&InstrumentationScope>) -> Context {
    Context {
        resource: json!({"attributes": attributes.map_or(Value::Array(Vec::new()), |a| attrs(a))}),
        scope: scope
            .and_then(|s| serde_json::to_value(s).ok())
            .unwrap_or(Value::Null),
    }
}

fn attrs(a: &[KeyValue]) -> Value {
    serde_json::to_value(a).unwrap_or(Value::Null)
}

fn any(v: Option<&AnyValue>) -> Value {
    v.and_then(|v| serde_json::to_value(v).ok())
        .unwrap_or(Value::Null)
}

/// Proto3 JSON writes 64-bit integers as strings.
fn u64s(n: u64) -> Value {
    Value::String(n.to_string())
}

fn hex_id(id: &[u8]) -> Value {
    Value::String(hex::encode(id))
}

fn log_record(r: &tero_proto::otlp_logs::LogRecord) -> Value {
    json!({
        "timeUnixNano": u64s(r.time_unix_nano),
        "observedTimeUnixNano": u64s(r.observed_time_unix_nano),
        "severityNumber": r.severity_number,
        "severityText": r.severity_text,
        "body": any(r.body.as_ref()),
        "attributes": attrs(&r.attributes),
        "droppedAttributesCount": r.dropped_attributes_count,
        "flags": r.flags,
        "traceId": hex_id(&r.trace_id),
        "spanId": hex_id(&r.span_id),
        "eventName": r.event_name,
    })
}

fn span_json(s: &tero_proto::otlp_trace::Span) -> Value {
    let events: Vec<Value> = s
        .events
        .iter()
        .map(|e| {
            json!({"timeUnixNano": u64s(e.time_unix_nano), "name": e.name,
                   "attributes": attrs(&e.attributes)})
        })
        .collect();
    let links: Vec<Value> = s
        .links
        .iter()
        .map(|l| {
            json!({"traceId": hex_id(&l.trace_id), "spanId": hex_id(&l.span_id),
                   "traceState": l.trace_state, "attributes": attrs(&l.attributes)})
        })
        .collect();
    json!({
        "traceId": hex_id(&s.trace_id),
        "spanId": hex_id(&s.span_id),
        "traceState": s.trace_state,
        "parentSpanId": hex_id(&s.parent_span_id),
        "flags": s.flags,
        "name": s.name,
        "kind": s.kind,
        "startTimeUnixNano": u64s(s.start_time_unix_nano),
        "endTimeUnixNano": u64s(s.end_time_unix_nano),
        "attributes": attrs(&s.attributes),
        "events": events,
        "links": links,
        "status": s.status.as_ref().map_or(Value::Null, |st| json!({"code": st.code, "message": st.message})),
    })
}

/// A metric as one JSON object per data point.
fn metric_points(m: &tero_proto::otlp_metrics::Metric) -> Vec<Value> {
    use tero_proto::otlp_metrics::metric::Data;
    use tero_proto::otlp_metrics::number_data_point::Value as Number;
    let number = |p: &tero_proto::otlp_metrics::NumberDataPoint| {
        let mut v = json!({
            "attributes": attrs(&p.attributes),
            "startTimeUnixNano": u64s(p.start_time_unix_nano),
            "timeUnixNano": u64s(p.time_unix_nano),
        });
        match p.value {
            Some(Number::AsDouble(d)) => v["asDouble"] = json!(d),
            Some(Number::AsInt(i)) => v["asInt"] = Value::String(i.to_string()),
            None => {}
        }
        v
    };
    let (kind, extra, points): (&str, Value, Vec<Value>) = match &m.data {
        Some(Data::Gauge(g)) => ("gauge", json!({}), g.data_points.iter().map(number).collect()),
        Some(Data::Sum(s)) => (
            "sum",
            json!({"aggregationTemporality": s.aggregation_temporality, "isMonotonic": s.is_monotonic}),
            s.data_points.iter().map(number).collect(),
        ),
        Some(Data::Histogram(h)) => (
            "histogram",
            json!({"aggregationTemporality": h.aggregation_temporality}),
            h.data_points
                .iter()
                .map(|p| {
                    json!({
                        "attributes": attrs(&p.attributes),
                        "startTimeUnixNano": u64s(p.start_time_unix_nano),
                        "timeUnixNano": u64s(p.time_unix_nano),
                        "count": u64s(p.count),
                        "sum": p.sum,
                        "bucketCounts": p.bucket_counts.iter().map(|c| u64s(*c)).collect::<Vec<_>>(),
                        "explicitBounds": p.explicit_bounds,
                        "min": p.min,
                        "max": p.max,
                    })
                })
                .collect(),
        ),
        Some(Data::ExponentialHistogram(h)) => (
            "exponentialHistogram",
            json!({"aggregationTemporality": h.aggregation_temporality}),
            h.data_points
                .iter()
                .map(|p| {
                    json!({
                        "attributes": attrs(&p.attributes),
                        "startTimeUnixNano": u64s(p.start_time_unix_nano),
                        "timeUnixNano": u64s(p.time_unix_nano),
                        "count": u64s(p.count),
                        "sum": p.sum,
                        "scale": p.scale,
                        "zeroCount": u64s(p.zero_count),
                        "min": p.min,
                        "max": p.max,
                    })
                })
                .collect(),
        ),
        Some(Data::Summary(s)) => (
            "summary",
            json!({}),
            s.data_points
                .iter()
                .map(|p| {
                    json!({
                        "attributes": attrs(&p.attributes),
                        "startTimeUnixNano": u64s(p.start_time_unix_nano),
                        "timeUnixNano": u64s(p.time_unix_nano),
                        "count": u64s(p.count),
                        "sum": p.sum,
                        "quantileValues": p.quantile_values.iter()
                            .map(|q| json!({"quantile": q.quantile, "value": q.value}))
                            .collect::<Vec<_>>(),
                    })
                })
                .collect(),
        ),
        None => return Vec::new(),
    };
    points
        .into_iter()
        .map(|point| {
            let mut data = extra.clone();
            data["dataPoints"] = Value::Array(vec![point]);
            let mut metric = json!({"name": m.name, "description": m.description, "unit": m.unit});
            metric[kind] = data;
            metric
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use tero_proto::otlp_collector::logs::v1::ExportLogsServiceRequest;
    use tero_proto::otlp_logs::{LogRecord, ResourceLogs, ScopeLogs};
    use tero_proto::otlp_resource::Resource;

    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(tero_proto::otel::any_value::Value::StringValue(
                    value.into(),
                )),
            }),
        }
    }

    fn parse(bytes: &Bytes) -> Vec<Value> {
        std::str::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn protobuf_logs_render_as_otlp_json_with_their_resource() {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "web")],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        LogRecord {
                            body: kv("", "first").value,
                            trace_id: vec![0xab; 16],
                            time_unix_nano: 1_700_000_000_000_000_000,
                            ..Default::default()
                        },
                        LogRecord::default(),
                        LogRecord::default(),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let payload = TapPayload {
            signal: Signal::Log,
            format: Format::OtlpProtobuf,
            body: Bytes::from(request.encode_to_vec()),
        };
        let (bytes, n) = lines(&payload, 2);
        assert_eq!(n, 2);
        let lines = parse(&bytes);
        assert_eq!(lines.len(), 2);
        let first = &lines[0];
        assert_eq!(first["signal"], "logs");
        assert_eq!(first["format"], "otlp_protobuf");
        assert_eq!(first["record"]["body"]["stringValue"], "first");
        assert_eq!(first["record"]["traceId"], "ab".repeat(16));
        assert_eq!(first["record"]["timeUnixNano"], "1700000000000000000");
        assert_eq!(
            first["resource"]["attributes"][0]["value"]["stringValue"],
            "web"
        );
    }

    #[test]
    fn json_and_datadog_payloads_render_record_by_record() {
        let otlp = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
            {"name":"m","gauge":{"dataPoints":[{"asDouble":1},{"asDouble":2}]}}]}]}]}"#;
        let payload = TapPayload {
            signal: Signal::Metric,
            format: Format::OtlpJson,
            body: Bytes::from_static(otlp),
        };
        let (bytes, n) = lines(&payload, 10);
        assert_eq!(n, 2);
        let rendered = parse(&bytes);
        assert_eq!(
            rendered[1]["record"]["gauge"]["dataPoints"][0]["asDouble"],
            2
        );
        assert_eq!(rendered[1]["record"]["name"], "m");

        let dd = TapPayload {
            signal: Signal::Log,
            format: Format::DatadogLogs,
            body: Bytes::from_static(br#"[{"message":"a"},{"message":"b"}]"#),
        };
        let (bytes, n) = lines(&dd, 1);
        assert_eq!(n, 1);
        assert_eq!(parse(&bytes)[0]["record"]["message"], "a");

        let junk = TapPayload {
            signal: Signal::Log,
            format: Format::OtlpJson,
            body: Bytes::from_static(b"not json"),
        };
        let (bytes, _) = lines(&junk, 5);
        assert_eq!(parse(&bytes)[0]["record"]["undecodable"], true);
    }
}

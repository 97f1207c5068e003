//! A tap payload as NDJSON lines, one per record: `signal`, `format`, the
//! record as OTLP JSON (with its resource's attributes and its scope) or as
//! the Datadog object it was.
//!
//! Runs in the tap client's task, never on the intake's path. Protobuf
//! payloads are converted whole to OTLP JSON (`tero_otlp::convert`, owned
//! message trees), which is fine for a preview.

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tero_otlp::{Format, Signal};

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
        Format::OtlpProtobuf => tero_otlp::convert::protobuf_to_json(payload.signal, body)
            .ok()
            .map(|doc| otlp_json(payload.signal, &doc, limit)),
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

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use tero_proto::otel::{AnyValue, KeyValue};
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

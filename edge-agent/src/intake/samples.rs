//! Pushed log records as samples for the template miner, so event types
//! and their volume reach the control plane without `POST /_edge/logs`.
//!
//! Bounded twice: a budget of `intake.log_samples_per_second` records,
//! refilled each second, and a payload is read for samples only while
//! there is budget. Reading is a second pass over the decoded payload that
//! keeps only bodies, severities, scalar attributes (bounded: see
//! [`crate::logs::profile`]) and trace ids (every other field is skipped;
//! attributes stay encoded slices of the payload until a record is
//! sampled), so at the default budget it happens about once a second,
//! whatever the push rate. Records are taken evenly across a payload, not just its head.
//! Kept and dropped records alike are samples: the miner describes what
//! the application logs, and the control plane weighs policies with it.

use std::borrow::Cow;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use prost::Message as _;
use tero_otlp::Format;

use crate::logs::profile::json_attributes;
use crate::logs::{Attribute, LogIntake, Record};

/// A token bucket of records, refilled to `per_second` each second.
pub struct SampleBudget {
    per_second: u32,
    state: Mutex<(Instant, u32)>,
}

impl SampleBudget {
    pub fn new(per_second: u32) -> Self {
        SampleBudget {
            per_second,
            state: Mutex::new((Instant::now(), per_second)),
        }
    }

    /// Takes up to `wanted` records' worth; 0 when the second's budget is
    /// spent.
    pub fn take(&self, wanted: usize) -> usize {
        if self.per_second == 0 || wanted == 0 {
            return 0;
        }
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (since, left) = &mut *state;
        if since.elapsed().as_secs() >= 1 {
            *since = Instant::now();
            *left = self.per_second;
        }
        let taken = (*left as usize).min(wanted);
        *left -= taken as u32;
        taken
    }

    /// True while some budget is left this second (cheap: no payload is
    /// read otherwise).
    pub fn has_room(&self) -> bool {
        self.take_peek() > 0
    }

    fn take_peek(&self) -> u32 {
        if self.per_second == 0 {
            return 0;
        }
        let state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.0.elapsed().as_secs() >= 1 {
            self.per_second
        } else {
            state.1
        }
    }
}

/// One log record's text, severity, attributes and trace id, borrowed
/// from the payload where it can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample<'a> {
    pub body: Cow<'a, str>,
    pub severity: Option<Cow<'a, str>>,
    /// Bounded: see [`crate::logs::profile`].
    pub attributes: Vec<Attribute>,
    /// Lower-case hex.
    pub trace_id: Option<String>,
    /// Protobuf: the record's `KeyValue`s still encoded (slices of the
    /// payload), read by [`Sample::read_attributes`] for the sampled
    /// records only.
    encoded_attributes: Vec<Bytes>,
}

impl<'a> Sample<'a> {
    fn new(body: Cow<'a, str>, severity: Option<Cow<'a, str>>) -> Self {
        Sample {
            body,
            severity,
            attributes: Vec::new(),
            trace_id: None,
            encoded_attributes: Vec::new(),
        }
    }

    /// Its attributes, read from the payload if they were left encoded.
    pub fn read_attributes(&self) -> Vec<Attribute> {
        if self.encoded_attributes.is_empty() {
            return self.attributes.clone();
        }
        let decoded: Vec<otlp_value::KeyValue> = self
            .encoded_attributes
            .iter()
            .take(crate::logs::profile::MAX_RECORD_ATTRIBUTES * 2)
            .filter_map(|kv| otlp_value::KeyValue::decode(kv.clone()).ok())
            .collect();
        otlp_value::attributes(&decoded)
    }
}

/// Feeds up to the budget's worth of `payload`'s records to `miner`;
/// returns how many were mined.
pub fn feed(budget: &SampleBudget, miner: &LogIntake, format: Format, payload: &Bytes) -> u64 {
    if !budget.has_room() {
        return 0;
    }
    let Some(samples) = extract(format, payload) else {
        return 0;
    };
    let n = budget.take(samples.len());
    if n == 0 {
        return 0;
    }
    let records: Vec<Record<'_>> = spread(&samples, n)
        .map(|s| Record {
            severity: s.severity.as_ref().map(|v| v.to_string()),
            attributes: s.read_attributes(),
            trace_id: s.trace_id.clone(),
            ..Record::line(Cow::Borrowed(s.body.as_ref()))
        })
        .collect();
    miner.mine(&records, None).accepted
}

/// `n` of `items`, evenly spaced.
pub(crate) fn spread<T>(items: &[T], n: usize) -> impl Iterator<Item = &T> {
    let len = items.len();
    (0..n.min(len)).map(move |i| &items[i * len / n.min(len).max(1)])
}

/// The log records of a payload, `None` when it is not a log payload or
/// cannot be read.
pub fn extract(format: Format, payload: &Bytes) -> Option<Vec<Sample<'static>>> {
    match format {
        Format::OtlpProtobuf => protobuf::extract(payload),
        Format::OtlpJson => otlp_json(payload),
        Format::DatadogLogs => datadog(payload),
        Format::DatadogSeries => None,
    }
}

/// OTLP's `SeverityNumber` ranges as their short names.
fn severity_name(number: i64) -> Option<&'static str> {
    Some(match number {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => return None,
    })
}

/// OTLP's `KeyValue` and scalar `AnyValue`s, decoded with prost: arrays,
/// maps and bytes are skipped (never materialised). Shared with the span
/// sampler.
pub(crate) mod otlp_value {
    use crate::logs::Attribute;
    use crate::logs::profile::push_attribute;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    /// `AnyValue`'s scalar members (a oneof on the wire: at most one is
    /// set). Strings are bytes: invalid UTF-8 is read lossily.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(bytes = "vec", optional, tag = "1")]
        pub string_value: Option<Vec<u8>>,
        #[prost(bool, optional, tag = "2")]
        pub bool_value: Option<bool>,
        #[prost(int64, optional, tag = "3")]
        pub int_value: Option<i64>,
        #[prost(double, optional, tag = "4")]
        pub double_value: Option<f64>,
    }

    impl AnyValue {
        /// The value as text, `None` for the kinds not read.
        pub fn text(&self) -> Option<String> {
            if let Some(s) = &self.string_value {
                return Some(String::from_utf8_lossy(s).into_owned());
            }
            if let Some(b) = self.bool_value {
                return Some(b.to_string());
            }
            if let Some(i) = self.int_value {
                return Some(i.to_string());
            }
            self.double_value.map(|d| d.to_string())
        }
    }

    /// `key_values` as bounded attributes.
    pub fn attributes(key_values: &[KeyValue]) -> Vec<Attribute> {
        let mut out = Vec::new();
        for kv in key_values {
            let Some(value) = kv.value.as_ref().and_then(AnyValue::text) else {
                continue;
            };
            push_attribute(&mut out, &String::from_utf8_lossy(&kv.key), &value);
            if out.len() >= crate::logs::profile::MAX_RECORD_ATTRIBUTES {
                break;
            }
        }
        out
    }

    /// A 16-byte trace id as hex; `None` when unset (empty or all zero).
    pub fn trace_id(bytes: &[u8]) -> Option<String> {
        (!bytes.is_empty() && bytes.iter().any(|&b| b != 0)).then(|| hex::encode(bytes))
    }
}

/// The few fields of `ExportLogsServiceRequest` samples need, decoded with
/// prost: every other field is skipped, never materialised.
mod protobuf {
    use std::borrow::Cow;

    use bytes::Bytes;
    use prost::Message as _;

    use super::otlp_value::{self, AnyValue};
    use super::{Sample, severity_name};

    #[derive(Clone, PartialEq, prost::Message)]
    struct LogsData {
        #[prost(message, repeated, tag = "1")]
        resource_logs: Vec<ResourceLogs>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct ResourceLogs {
        #[prost(message, repeated, tag = "2")]
        scope_logs: Vec<ScopeLogs>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct ScopeLogs {
        #[prost(message, repeated, tag = "2")]
        log_records: Vec<LogRecord>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct LogRecord {
        #[prost(int32, tag = "2")]
        severity_number: i32,
        /// Bytes, not string: a record with invalid UTF-8 is still a
        /// sample (read lossily).
        #[prost(bytes = "vec", tag = "3")]
        severity_text: Vec<u8>,
        #[prost(message, optional, tag = "5")]
        body: Option<AnyValue>,
        /// Left encoded: only the sampled records' are read.
        #[prost(bytes = "bytes", repeated, tag = "6")]
        attributes: Vec<Bytes>,
        #[prost(bytes = "vec", tag = "9")]
        trace_id: Vec<u8>,
    }

    pub fn extract(payload: &Bytes) -> Option<Vec<Sample<'static>>> {
        let data = LogsData::decode(payload.clone()).ok()?;
        let records = data
            .resource_logs
            .into_iter()
            .flat_map(|r| r.scope_logs)
            .flat_map(|s| s.log_records)
            .filter_map(|r| {
                // Only a string body is text to mine.
                let body = r.body?.string_value?;
                let severity = if r.severity_text.is_empty() {
                    severity_name(i64::from(r.severity_number)).map(Cow::Borrowed)
                } else {
                    Some(Cow::Owned(
                        String::from_utf8_lossy(&r.severity_text).into_owned(),
                    ))
                };
                Some(Sample {
                    encoded_attributes: r.attributes,
                    trace_id: otlp_value::trace_id(&r.trace_id),
                    ..Sample::new(
                        Cow::Owned(String::from_utf8_lossy(&body).into_owned()),
                        severity,
                    )
                })
            })
            .collect();
        Some(records)
    }
}

/// OTLP JSON through `tero_otlp`'s reader (which accepts what producers
/// write: camelCase or snake_case, hex ids, enums by name or number), then
/// read as protobuf. It builds the whole request, which is affordable at
/// the sampling rate: this runs only while the second's budget lasts.
fn otlp_json(payload: &[u8]) -> Option<Vec<Sample<'static>>> {
    let document: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let encoded = tero_otlp::convert::json_to_protobuf(tero_otlp::Signal::Log, &document).ok()?;
    protobuf::extract(&Bytes::from(encoded))
}

/// Members of a Datadog log that are not attributes of the event: the
/// message and status (its body and severity) and its time.
const DATADOG_NOT_ATTRIBUTES: [&str; 4] = ["message", "status", "timestamp", "date"];

/// Datadog logs: `message` is the body, `status` the severity; the other
/// members (`service`, `hostname`, `ddtags` as written, nested objects
/// flattened as `http.url`) are attributes.
fn datadog(payload: &[u8]) -> Option<Vec<Sample<'static>>> {
    let logs: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(payload).ok()?;
    Some(
        logs.into_iter()
            .filter_map(|mut log| {
                let serde_json::Value::String(body) = log.remove("message")? else {
                    return None;
                };
                let severity = match log.remove("status") {
                    Some(serde_json::Value::String(s)) => Some(Cow::Owned(s)),
                    _ => None,
                };
                for name in DATADOG_NOT_ATTRIBUTES {
                    log.remove(name);
                }
                let mut attributes = Vec::new();
                json_attributes("", &log, &mut attributes);
                Some(Sample {
                    attributes,
                    ..Sample::new(Cow::Owned(body), severity)
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use tero_proto::otlp_collector::logs::v1::ExportLogsServiceRequest;
    use tero_proto::otlp_logs::{LogRecord, ResourceLogs, ScopeLogs};

    use super::*;

    fn record(body: &str, severity_text: &str, severity_number: i32) -> LogRecord {
        LogRecord {
            body: Some(tero_proto::otel::AnyValue {
                value: Some(tero_proto::otel::any_value::Value::StringValue(body.into())),
            }),
            severity_text: severity_text.into(),
            severity_number,
            ..Default::default()
        }
    }

    #[test]
    fn protobuf_bodies_and_severities_are_read() {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        record("user 42 logged in", "", 9),
                        record("disk full", "error", 0),
                        LogRecord::default(),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let bytes = request.encode_to_vec();
        let samples = extract(Format::OtlpProtobuf, &Bytes::from(bytes.clone())).unwrap();
        assert_eq!(
            samples,
            [
                Sample::new("user 42 logged in".into(), Some("INFO".into())),
                Sample::new("disk full".into(), Some("error".into())),
            ]
        );
        assert!(extract(Format::OtlpProtobuf, &Bytes::copy_from_slice(b"\xff\xff")).is_none());
    }

    #[test]
    fn json_and_datadog_bodies_are_read() {
        let otlp = br#"{"resourceLogs":[{"resource":{},"scopeLogs":[{"logRecords":[
            {"body":{"stringValue":"a \"quoted\" line"},"severityNumber":"SEVERITY_NUMBER_WARN"},
            {"body":{"kvlistValue":{}},"severityText":"INFO"},
            {"body":{"stringValue":"plain"},"severityNumber":17}]}]}]}"#;
        let samples = extract(Format::OtlpJson, &Bytes::copy_from_slice(otlp)).unwrap();
        let got: Vec<(&str, Option<&str>)> = samples
            .iter()
            .map(|s| (s.body.as_ref(), s.severity.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("a \"quoted\" line", Some("WARN")),
                ("plain", Some("ERROR"))
            ]
        );
        let dd =
            br#"[{"message":"GET /health 200","status":"info","service":"web"},{"ddtags":"x"}]"#;
        let samples = extract(Format::DatadogLogs, &Bytes::copy_from_slice(dd)).unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].severity.as_deref(), Some("info"));
        assert!(extract(Format::DatadogSeries, &Bytes::copy_from_slice(b"{}")).is_none());
    }

    fn kv(key: &str, value: tero_proto::otel::any_value::Value) -> tero_proto::otel::KeyValue {
        tero_proto::otel::KeyValue {
            key: key.into(),
            value: Some(tero_proto::otel::AnyValue { value: Some(value) }),
        }
    }

    #[test]
    fn attributes_and_trace_ids_are_read_in_every_format() {
        use tero_proto::otel::any_value::Value as V;
        let mut with_attributes = record("paid", "INFO", 0);
        with_attributes.attributes = vec![
            kv("user_id", V::StringValue("u-1".into())),
            kv("attempt", V::IntValue(3)),
            kv("retry", V::BoolValue(true)),
            kv("ratio", V::DoubleValue(0.5)),
            kv("raw", V::BytesValue(vec![1, 2])),
        ];
        with_attributes.trace_id = vec![0xab; 16];
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![with_attributes],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let pairs = |s: &Sample<'_>| -> Vec<(String, String)> {
            s.read_attributes()
                .iter()
                .map(|a| (a.key.clone(), a.value.clone()))
                .collect()
        };
        let owned = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
        };
        let want = owned(&[
            ("user_id", "u-1"),
            ("attempt", "3"),
            ("retry", "true"),
            ("ratio", "0.5"),
        ]);
        let bytes = request.encode_to_vec();
        let samples = extract(Format::OtlpProtobuf, &Bytes::from(bytes.clone())).unwrap();
        assert_eq!(pairs(&samples[0]), want);
        assert_eq!(samples[0].trace_id.as_deref(), Some(&"ab".repeat(16)[..]));
        let json = serde_json::to_vec(&tero_otlp::convert::logs_to_json(&request)).unwrap();
        let samples = extract(Format::OtlpJson, &Bytes::copy_from_slice(&json)).unwrap();
        assert_eq!(
            pairs(&samples[0]),
            want,
            "{}",
            String::from_utf8_lossy(&json)
        );
        assert_eq!(samples[0].trace_id.as_deref(), Some(&"ab".repeat(16)[..]));

        let dd = br#"[{"message":"paid","status":"info","timestamp":1,"service":"web",
            "usr":{"id":"u-1","email":"a@b.io"},"ddtags":"env:prod","tags":["x"]}]"#;
        let samples = extract(Format::DatadogLogs, &Bytes::copy_from_slice(dd)).unwrap();
        assert_eq!(
            pairs(&samples[0]),
            owned(&[
                ("ddtags", "env:prod"),
                ("service", "web"),
                ("usr.email", "a@b.io"),
                ("usr.id", "u-1"),
            ])
        );
    }

    #[test]
    fn samples_reach_the_miner_within_the_budget() {
        let miner = LogIntake::new("web", &crate::config::LogsConfig::default()).unwrap();
        let records: Vec<LogRecord> = (0..50)
            .map(|i| record(&format!("user {i} logged in from 10.0.0.{i}"), "INFO", 0))
            .collect();
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let bytes = request.encode_to_vec();
        let budget = SampleBudget::new(10);
        assert_eq!(
            feed(
                &budget,
                &miner,
                Format::OtlpProtobuf,
                &Bytes::from(bytes.clone())
            ),
            10
        );
        assert_eq!(
            feed(
                &budget,
                &miner,
                Format::OtlpProtobuf,
                &Bytes::from(bytes.clone())
            ),
            0,
            "the second's budget is spent"
        );
        assert_eq!(miner.live_templates(), 1, "one event type");
        let report = miner.take_report();
        assert_eq!(report.templates[0].count, 10);
        assert_eq!(report.templates[0].severity, "INFO");
    }

    #[test]
    fn the_budget_is_per_second_and_spread_takes_evenly() {
        let budget = SampleBudget::new(5);
        assert_eq!(budget.take(3), 3);
        assert_eq!(budget.take(3), 2);
        assert_eq!(budget.take(3), 0);
        assert!(!budget.has_room());
        assert_eq!(SampleBudget::new(0).take(10), 0);
        let items: Vec<u32> = (0..10).collect();
        let picked: Vec<u32> = spread(&items, 5).copied().collect();
        assert_eq!(picked, [0, 2, 4, 6, 8]);
        let picked: Vec<u32> = spread(&items, 20).copied().collect();
        assert_eq!(picked.len(), 10);
    }
}

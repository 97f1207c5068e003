//! Pushed log records as samples for the template miner, so event types
//! and their volume reach the control plane without `POST /_edge/logs`.
//!
//! Bounded twice: a budget of `intake.log_samples_per_second` records,
//! refilled each second, and a payload is read for samples only while
//! there is budget. Reading is a second pass over the decoded payload that
//! keeps only bodies and severities (every other field is skipped), so at
//! the default budget it happens about once a second, whatever the push
//! rate. Records are taken evenly across a payload, not just its head.
//! Kept and dropped records alike are samples: the miner describes what
//! the application logs, and the control plane weighs policies with it.

use std::borrow::Cow;
use std::sync::Mutex;
use std::time::Instant;

use serde::Deserialize;
use tero_otlp::Format;

use crate::logs::{LogIntake, Record};

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

/// One log record's text and severity, borrowed from the payload where it
/// can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample<'a> {
    pub body: Cow<'a, str>,
    pub severity: Option<Cow<'a, str>>,
}

/// Feeds up to the budget's worth of `payload`'s records to `miner`;
/// returns how many were mined.
pub fn feed(budget: &SampleBudget, miner: &LogIntake, format: Format, payload: &[u8]) -> u64 {
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
            body: Cow::Borrowed(s.body.as_ref()),
            severity: s.severity.as_ref().map(|v| v.to_string()),
            time_unix_ms: 0,
        })
        .collect();
    miner.mine(&records, None).accepted
}

/// `n` of `items`, evenly spaced.
fn spread<T>(items: &[T], n: usize) -> impl Iterator<Item = &T> {
    let len = items.len();
    (0..n.min(len)).map(move |i| &items[i * len / n.min(len).max(1)])
}

/// The log records of a payload, `None` when it is not a log payload or
/// cannot be read.
pub fn extract(format: Format, payload: &[u8]) -> Option<Vec<Sample<'_>>> {
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

/// The few fields of `ExportLogsServiceRequest` samples need, decoded with
/// prost: every other field is skipped, never materialised.
mod protobuf {
    use std::borrow::Cow;

    use prost::Message as _;

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
    }

    /// `AnyValue`: only a string body is text to mine.
    #[derive(Clone, PartialEq, prost::Message)]
    struct AnyValue {
        #[prost(bytes = "vec", optional, tag = "1")]
        string_value: Option<Vec<u8>>,
    }

    pub fn extract(payload: &[u8]) -> Option<Vec<Sample<'static>>> {
        let data = LogsData::decode(payload).ok()?;
        let records = data
            .resource_logs
            .into_iter()
            .flat_map(|r| r.scope_logs)
            .flat_map(|s| s.log_records)
            .filter_map(|r| {
                let body = r.body?.string_value?;
                let severity = if r.severity_text.is_empty() {
                    severity_name(i64::from(r.severity_number)).map(Cow::Borrowed)
                } else {
                    Some(Cow::Owned(
                        String::from_utf8_lossy(&r.severity_text).into_owned(),
                    ))
                };
                Some(Sample {
                    body: Cow::Owned(String::from_utf8_lossy(&body).into_owned()),
                    severity,
                })
            })
            .collect();
        Some(records)
    }
}

#[derive(Deserialize)]
struct JsonLogsData<'a> {
    #[serde(default, rename = "resourceLogs", alias = "resource_logs", borrow)]
    resource_logs: Vec<JsonResourceLogs<'a>>,
}

#[derive(Deserialize)]
struct JsonResourceLogs<'a> {
    #[serde(default, rename = "scopeLogs", alias = "scope_logs", borrow)]
    scope_logs: Vec<JsonScopeLogs<'a>>,
}

#[derive(Deserialize)]
struct JsonScopeLogs<'a> {
    #[serde(default, rename = "logRecords", alias = "log_records", borrow)]
    log_records: Vec<JsonLogRecord<'a>>,
}

#[derive(Deserialize)]
struct JsonLogRecord<'a> {
    #[serde(default, rename = "severityText", alias = "severity_text", borrow)]
    severity_text: Option<Cow<'a, str>>,
    /// A number, or the enum's name (`SEVERITY_NUMBER_INFO`).
    #[serde(default, rename = "severityNumber", alias = "severity_number")]
    severity_number: Option<serde_json::Value>,
    #[serde(default, borrow)]
    body: Option<JsonAnyValue<'a>>,
}

#[derive(Deserialize)]
struct JsonAnyValue<'a> {
    #[serde(default, rename = "stringValue", alias = "string_value", borrow)]
    string_value: Option<Cow<'a, str>>,
}

fn otlp_json(payload: &[u8]) -> Option<Vec<Sample<'_>>> {
    let data: JsonLogsData<'_> = serde_json::from_slice(payload).ok()?;
    let records = data
        .resource_logs
        .into_iter()
        .flat_map(|r| r.scope_logs)
        .flat_map(|s| s.log_records)
        .filter_map(|r| {
            let body = r.body?.string_value?;
            let severity = r.severity_text.filter(|s| !s.is_empty()).or_else(|| {
                let number = match r.severity_number? {
                    serde_json::Value::Number(n) => n.as_i64()?,
                    serde_json::Value::String(s) => {
                        return s
                            .strip_prefix("SEVERITY_NUMBER_")
                            .map(|name| Cow::Owned(name.to_owned()));
                    }
                    _ => return None,
                };
                severity_name(number).map(Cow::Borrowed)
            });
            Some(Sample { body, severity })
        })
        .collect();
    Some(records)
}

#[derive(Deserialize)]
struct DatadogLog<'a> {
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
}

fn datadog(payload: &[u8]) -> Option<Vec<Sample<'_>>> {
    let logs: Vec<DatadogLog<'_>> = serde_json::from_slice(payload).ok()?;
    Some(
        logs.into_iter()
            .filter_map(|l| {
                Some(Sample {
                    body: l.message?,
                    severity: l.status,
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
        let samples = extract(Format::OtlpProtobuf, &bytes).unwrap();
        assert_eq!(
            samples,
            [
                Sample {
                    body: "user 42 logged in".into(),
                    severity: Some("INFO".into())
                },
                Sample {
                    body: "disk full".into(),
                    severity: Some("error".into())
                },
            ]
        );
        assert!(extract(Format::OtlpProtobuf, b"\xff\xff").is_none());
    }

    #[test]
    fn json_and_datadog_bodies_are_read() {
        let otlp = br#"{"resourceLogs":[{"resource":{},"scopeLogs":[{"logRecords":[
            {"body":{"stringValue":"a \"quoted\" line"},"severityNumber":"SEVERITY_NUMBER_WARN"},
            {"body":{"kvlistValue":{}},"severityText":"INFO"},
            {"body":{"stringValue":"plain"},"severityNumber":17}]}]}]}"#;
        let samples = extract(Format::OtlpJson, otlp).unwrap();
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
        let samples = extract(Format::DatadogLogs, dd).unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].severity.as_deref(), Some("info"));
        assert!(extract(Format::DatadogSeries, b"{}").is_none());
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
        assert_eq!(feed(&budget, &miner, Format::OtlpProtobuf, &bytes), 10);
        assert_eq!(
            feed(&budget, &miner, Format::OtlpProtobuf, &bytes),
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

//! Helpers shared by the protobuf codec's integration tests.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::path::PathBuf;

use serde_json::{Map, Value};
use tero_otlp::Signal;
use tero_sdk::engine::{Engine, StatsRegistry};
use tero_sdk::policy::{Format, parse_policies};

/// The conformance suite's folder (`TERO_CONFORMANCE_DIR`, else
/// `../shared/conformance` next to the checkout) and its testcases.
pub fn conformance_testcases() -> PathBuf {
    let dir = std::env::var_os("TERO_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance")
        });
    let nested = dir.join("testcases");
    if nested.is_dir() { nested } else { dir }
}

/// An engine over a policy document (JSON or YAML text), with the
/// counters of the load itself cleared, as the conformance runner does.
pub fn engine(policies: &str, format: Format) -> (Engine, StatsRegistry) {
    let loaded = parse_policies(policies, format).expect("policy document parses");
    let registry = StatsRegistry::new();
    let engine = Engine::compile(&loaded.policies, &registry);
    registry.take_all();
    (engine, registry)
}

/// The signal of an OTLP JSON document, from its top-level key.
pub fn signal_of(document: &Value) -> Option<Signal> {
    [
        ("resourceLogs", Signal::Log),
        ("resourceMetrics", Signal::Metric),
        ("resourceSpans", Signal::Trace),
    ]
    .into_iter()
    .find(|(key, _)| {
        !matches!(
            document.get(*key),
            None | Some(Value::Null | Value::Bool(false))
        )
    })
    .map(|(_, signal)| signal)
}

/// Records in an OTLP JSON document: log records, spans, or metric data
/// points.
pub fn record_count(signal: Signal, document: &Value) -> u64 {
    let keys = match signal {
        Signal::Log => ["resourceLogs", "scopeLogs", "logRecords"],
        Signal::Trace => ["resourceSpans", "scopeSpans", "spans"],
        Signal::Metric => ["resourceMetrics", "scopeMetrics", "metrics"],
    };
    let items = |v: &Value, key: &str| -> Vec<Value> {
        v.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut total = 0;
    for resource in items(document, keys[0]) {
        for scope in items(&resource, keys[1]) {
            for record in items(&scope, keys[2]) {
                total += match signal {
                    Signal::Metric => [
                        "gauge",
                        "sum",
                        "histogram",
                        "exponentialHistogram",
                        "summary",
                    ]
                    .iter()
                    .filter_map(|kind| record.get(*kind))
                    .map(|data| items(data, "dataPoints").len() as u64)
                    .sum(),
                    _ => 1,
                };
            }
        }
    }
    total
}

// The conformance harness's normalisation (check.py), so that encoder
// choices without meaning (defaults present or absent, enum names or
// numbers, 64-bit integers as strings or numbers) do not count.

const ZERO_ENUM_NAMES: [&str; 4] = [
    "SEVERITY_NUMBER_UNSPECIFIED",
    "STATUS_CODE_UNSET",
    "SPAN_KIND_UNSPECIFIED",
    "AGGREGATION_TEMPORALITY_UNSPECIFIED",
];

fn enum_number(name: &str) -> Option<u64> {
    const FIXED: [(&str, u64); 9] = [
        ("SPAN_KIND_INTERNAL", 1),
        ("SPAN_KIND_SERVER", 2),
        ("SPAN_KIND_CLIENT", 3),
        ("SPAN_KIND_PRODUCER", 4),
        ("SPAN_KIND_CONSUMER", 5),
        ("STATUS_CODE_OK", 1),
        ("STATUS_CODE_ERROR", 2),
        ("AGGREGATION_TEMPORALITY_DELTA", 1),
        ("AGGREGATION_TEMPORALITY_CUMULATIVE", 2),
    ];
    if let Some((_, n)) = FIXED.iter().find(|(n, _)| *n == name) {
        return Some(*n);
    }
    let level = name.strip_prefix("SEVERITY_NUMBER_")?;
    let levels = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
    for (i, base) in levels.iter().enumerate() {
        for (j, suffix) in ["", "2", "3", "4"].iter().enumerate() {
            if level == format!("{base}{suffix}") {
                return Some((i * 4 + j + 1) as u64);
            }
        }
    }
    None
}

fn is_default(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Bool(true) => false,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || ZERO_ENUM_NAMES.contains(&s.as_str()),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// check.py's `normalize`, bottom-up.
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, child) in map {
                let child = normalize(child);
                if is_default(&child) {
                    continue;
                }
                let child = match &child {
                    Value::String(s) => enum_number(s).map(Value::from).unwrap_or(child),
                    _ => child,
                };
                out.insert(key.clone(), child);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            // Longer than u64: left as digits, on both sides alike.
            s.parse::<u64>()
                .map(Value::from)
                .unwrap_or_else(|_| v.clone())
        }
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e18 => {
                Value::from(f as i64)
            }
            _ => v.clone(),
        },
        other => other.clone(),
    }
}

pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

//! Helpers shared by the codec tests: engines from policy documents, policy
//! counters by id, the conformance suite's testcases, and the harness's
//! normalisation of OTLP JSON.

#![allow(dead_code)] // each test binary uses its own part

use std::path::PathBuf;

use serde_json::{Map, Number, Value};
use tero_otlp::Signal;
use tero_sdk::engine::{Engine, StatsDelta, StatsRegistry};
use tero_sdk::policy::{self, Format};

/// Compiles the policies of a YAML document; every one must be valid.
pub fn engine(yaml: &str) -> Engine {
    let loaded = policy::parse_policies(yaml, Format::Yaml).expect("policy YAML parses");
    assert!(loaded.rejected.is_empty(), "{:?}", loaded.rejected);
    let engine = Engine::compile(&loaded.policies, &StatsRegistry::new());
    for info in engine.policies() {
        assert!(info.errors.is_empty(), "{}: {:?}", info.id, info.errors);
    }
    engine
}

/// The counters of policy `id`.
pub fn stats(engine: &Engine, id: &str) -> StatsDelta {
    engine
        .policies()
        .iter()
        .find(|p| p.id == id)
        .unwrap_or_else(|| panic!("no policy {id}"))
        .runtime
        .stats
        .peek()
}

/// The public conformance suite: `TERO_CONFORMANCE_DIR`, or `shared/`
/// next to the checkout.
pub fn conformance_dir() -> PathBuf {
    let dir = std::env::var_os("TERO_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance")
        });
    assert!(
        dir.join("testcases").is_dir(),
        "conformance suite not found at {}: check out shared/ next to the repository or set TERO_CONFORMANCE_DIR",
        dir.display()
    );
    dir
}

const ENUM_NUMBERS: [(&str, u64); 9] = [
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

const ZERO_ENUM_NAMES: [&str; 4] = [
    "SEVERITY_NUMBER_UNSPECIFIED",
    "STATUS_CODE_UNSET",
    "SPAN_KIND_UNSPECIFIED",
    "AGGREGATION_TEMPORALITY_UNSPECIFIED",
];

fn enum_number(name: &str) -> Option<u64> {
    if let Some((_, n)) = ENUM_NUMBERS.iter().find(|(n, _)| *n == name) {
        return Some(*n);
    }
    let rest = name.strip_prefix("SEVERITY_NUMBER_")?;
    let levels = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
    for (i, level) in levels.iter().enumerate() {
        for (j, suffix) in ["", "2", "3", "4"].iter().enumerate() {
            if rest == format!("{level}{suffix}") {
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

/// check.py's `normalize`: default members dropped (bottom-up), enum names
/// as numbers, digit strings as integers, integral floats as integers.
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
                    Value::String(s) => enum_number(s).map_or(child.clone(), Value::from),
                    _ => child,
                };
                out.insert(key.clone(), child);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            // Digit strings too long for u64 stay strings on both sides.
            s.parse::<u64>().map_or(v.clone(), Value::from)
        }
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.is_finite() && f == f.floor() && f.abs() < 9.0e18 => {
                Value::Number(Number::from(f as i64))
            }
            _ => v.clone(),
        },
        other => other.clone(),
    }
}

/// The conformance suite's folder (`TERO_CONFORMANCE_DIR`, else
/// `../shared/conformance` next to the checkout) and its testcases.
pub fn conformance_testcases() -> PathBuf {
    conformance_dir().join("testcases")
}

/// An engine over a policy document (JSON or YAML text), with the
/// counters of the load itself cleared, as the conformance runner does.
pub fn engine_from(policies: &str, format: Format) -> (Engine, StatsRegistry) {
    let loaded = policy::parse_policies(policies, format).expect("policy document parses");
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

pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

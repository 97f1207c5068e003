//! OTLP JSON log requests through the codec: decode, evaluate, re-encode.
//!
//! A 1 MiB `LogsData` request (resources of 8 services, 20 records each,
//! bodies and attributes as applications write them) against no policies
//! and against 1,000 log policies in the engine bench's mix: service +
//! severity, body substrings, body regexes, an attribute, and service
//! prefixes, with keeps `none`, `10%`, `all`, `100/s`; one in twenty also
//! redacts an attribute, so some kept records are rewritten.
//!
//! Run: `cargo bench -p tero-otlp --bench json`. After criterion's own
//! figures a summary prints MB/s of request bytes per core (best of 5) for
//! both cases and their ratio.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use serde_json::json;
use tero_otlp::Signal;
use tero_sdk::engine::{Engine, StatsRegistry};
use tero_sdk::proto::policy::{self as pb, LogField};

const SERVICES: [&str; 8] = [
    "checkout",
    "cart",
    "search",
    "payments",
    "auth",
    "inventory",
    "shipping",
    "gateway",
];
const TARGET_BYTES: usize = 1 << 20;

fn string_attr(key: &str, value: &str) -> serde_json::Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// About 1 MiB of OTLP JSON logs.
fn request() -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(19);
    let mut resources = Vec::new();
    let mut size = 0;
    let mut r = 0usize;
    while size < TARGET_BYTES {
        let service = format!("svc-{}", rng.usize(..400) / 5);
        let records: Vec<_> = (0..20)
            .map(|i| {
                let k = rng.usize(..4_000);
                let body = match i % 4 {
                    0 => format!("GET /internal/probe/{k} 200 1ms"),
                    1 => format!("job {k} finished in 35ms with 0 errors"),
                    2 => format!("upstream timeout after 30s talking to svc-{k}"),
                    _ => format!("user {k} added item {} to the cart", i * 7),
                };
                let severity = ["INFO", "DEBUG", "WARN", "ERROR"][i % 4];
                let method = ["GET", "POST"][i % 2];
                json!({
                    "timeUnixNano": format!("{}", 1_700_000_000_000_000_000u64 + (r * 20 + i) as u64),
                    "severityNumber": 9,
                    "severityText": severity,
                    "body": {"stringValue": body},
                    "attributes": [
                        string_attr("http.route", &format!("/v1/resource/{}", rng.usize(..2_000))),
                        string_attr("http.request.method", method),
                        string_attr("user.id", &format!("u-{k}")),
                        {"key": "http.response.status_code", "value": {"intValue": "200"}},
                    ],
                    "traceId": format!("{:032x}", rng.u128(..)),
                    "spanId": format!("{:016x}", rng.u64(..)),
                })
            })
            .collect();
        let resource = json!({
            "resource": {"attributes": [
                string_attr("service.name", &service),
                string_attr("service.namespace", SERVICES[r % SERVICES.len()]),
                string_attr("host.name", &format!("node-{}", r % 31)),
            ]},
            "scopeLogs": [{"scope": {"name": "app.logger", "version": "2.1.0"}, "logRecords": records}],
        });
        size += resource.to_string().len();
        resources.push(resource);
        r += 1;
    }
    serde_json::to_vec(&json!({"resourceLogs": resources})).expect("serializes")
}

fn matcher(field: pb::log_matcher::Field, m: pb::log_matcher::Match) -> pb::LogMatcher {
    pb::LogMatcher {
        field: Some(field),
        r#match: Some(m),
        negate: false,
        case_insensitive: false,
    }
}

fn path(key: &str) -> pb::AttributePath {
    pb::AttributePath {
        path: vec![key.to_owned()],
    }
}

/// `n` log policies in the engine bench's mix.
fn policies(n: usize) -> Vec<pb::Policy> {
    use pb::log_matcher::{Field as F, Match as M};
    (0..n)
        .map(|i| {
            let service = F::ResourceAttribute(path("service.name"));
            let matchers = match i * 5 / n {
                0 => vec![
                    matcher(service, M::Exact(format!("svc-{}", i / 5))),
                    matcher(
                        F::LogField(LogField::SeverityText as i32),
                        M::Exact("DEBUG".into()),
                    ),
                ],
                1 => vec![matcher(
                    F::LogField(LogField::Body as i32),
                    M::Contains(format!("job {i} finished")),
                )],
                2 => vec![matcher(
                    F::LogField(LogField::Body as i32),
                    M::Regex(format!("^GET /internal/probe/{i}( |$)")),
                )],
                3 => vec![matcher(
                    F::LogAttribute(path("http.route")),
                    M::Exact(format!("/v1/resource/{i}")),
                )],
                _ => vec![
                    matcher(service, M::StartsWith(format!("batch-{i}-"))),
                    matcher(
                        F::LogField(LogField::Body as i32),
                        M::Contains("timeout".into()),
                    ),
                ],
            };
            let keep = ["none", "10%", "all", "100/s", "none"][i % 5].to_owned();
            let transform = (i % 20 == 2).then(|| pb::LogTransform {
                redact: vec![pb::LogRedact {
                    field: Some(pb::log_redact::Field::LogAttribute(path("user.id"))),
                    replacement: "[REDACTED]".into(),
                    ..Default::default()
                }],
                ..Default::default()
            });
            pb::Policy {
                id: format!("log-{i:05}"),
                name: format!("log-{i:05}"),
                enabled: true,
                target: Some(pb::policy::Target::Log(pb::LogTarget {
                    r#match: matchers,
                    keep,
                    transform,
                    ..Default::default()
                })),
                ..Default::default()
            }
        })
        .collect()
}

fn run(engine: &Engine, payload: &[u8]) -> usize {
    match tero_otlp::json::filter(engine, Signal::Log, payload) {
        Ok(filtered) => filtered.counts.records_dropped as usize,
        Err(e) => panic!("the bench request is valid: {e}"),
    }
}

fn bench(c: &mut Criterion) {
    let payload = request();
    let mut group = c.benchmark_group("otlp_json_logs_1mib");
    group.throughput(Throughput::Bytes(payload.len() as u64));
    for n in [0, 1_000] {
        let engine = Engine::compile(&policies(n), &StatsRegistry::new());
        group.bench_function(format!("{n}_policies"), |b| {
            b.iter(|| run(&engine, black_box(&payload)))
        });
    }
    group.finish();
}

/// Best-of-five MB/s of request bytes.
fn rate(bytes: usize, mut f: impl FnMut() -> usize) -> f64 {
    let mut best = 0.0f64;
    for _ in 0..5 {
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < Duration::from_millis(500) {
            black_box(f());
            calls += 1;
        }
        best = best.max(calls as f64 * bytes as f64 / 1e6 / start.elapsed().as_secs_f64());
    }
    best
}

fn summary() {
    let payload = request();
    let records = payload.len(); // for the header only
    println!("\n== summary: OTLP JSON logs, {records} bytes per request, one core, best of 5 ==");
    let mut rates = Vec::new();
    for n in [0, 1_000] {
        let engine = Engine::compile(&policies(n), &StatsRegistry::new());
        let filtered = tero_otlp::json::filter(&engine, Signal::Log, &payload).expect("valid");
        let mbps = rate(payload.len(), || run(&engine, &payload));
        println!(
            "{n:>5} policies: {mbps:>8.1} MB/s  ({} records, {} dropped, output {})",
            filtered.counts.records_in,
            filtered.counts.records_dropped,
            match filtered.output {
                tero_otlp::Output::Unchanged => "unchanged".to_owned(),
                tero_otlp::Output::AllDropped => "all dropped".to_owned(),
                tero_otlp::Output::Rewritten(b) => format!("rewritten, {} bytes", b.len()),
            }
        );
        rates.push(mbps);
    }
    println!("ratio 1000 policies / none: {:.2}", rates[1] / rates[0]);
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}

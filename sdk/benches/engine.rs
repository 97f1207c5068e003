//! Engine throughput against 10, 1,000 and 10,000 policies.
//!
//! The policy mix is what real sets hold: exact metric names, name
//! prefixes, regexes, and name + label (or resource) combinations; log
//! policies on severity, body substrings, body regexes and attributes. The
//! records are mostly unmatched, as in production, with a share that hits.
//!
//! Run: `cargo bench -p tero-sdk --bench engine`. After criterion's own
//! figures, a summary prints evaluations per second per size and the ratio
//! of the 10,000-policy throughput to the 10-policy baseline measured in the
//! same run.

use std::borrow::Cow;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use tero_sdk::engine::{
    Engine, FieldValue, LogSelector, LogView, LogViewMut, MetricSelector, MetricView, StatsRegistry,
};
use tero_sdk::proto::policy::{self as pb, LogField, MetricField};

const SIZES: [usize; 3] = [10, 1_000, 10_000];
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
const SUBSYSTEMS: [&str; 10] = [
    "http_server",
    "http_client",
    "grpc_server",
    "db_pool",
    "cache",
    "queue",
    "jvm",
    "go",
    "process",
    "kafka",
];
const MEASURES: [&str; 8] = [
    "requests_total",
    "request_duration_seconds",
    "errors_total",
    "bytes_total",
    "connections",
    "latency_ms",
    "inflight",
    "retries_total",
];

fn metric_name(i: usize) -> String {
    format!(
        "{}_{}_{}",
        SUBSYSTEMS[i % SUBSYSTEMS.len()],
        MEASURES[(i / SUBSYSTEMS.len()) % MEASURES.len()],
        i / 80
    )
}

fn matcher(field: pb::metric_matcher::Field, m: pb::metric_matcher::Match) -> pb::MetricMatcher {
    pb::MetricMatcher {
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

fn policy(id: String, target: pb::policy::Target) -> pb::Policy {
    pb::Policy {
        name: id.clone(),
        id,
        enabled: true,
        target: Some(target),
        ..Default::default()
    }
}

/// `n` metric policies: 40 % exact names, 20 % prefixes, 15 % regexes,
/// 25 % name + label or resource attribute.
fn metric_policies(n: usize) -> Vec<pb::Policy> {
    use pb::metric_matcher::{Field as F, Match as M};
    let mut rng = fastrand::Rng::with_seed(7);
    (0..n)
        .map(|i| {
            let name = metric_name(rng.usize(..4 * n.max(100)));
            // The same mix at every size: spread the 20 kinds over 0..n.
            let matchers = match i * 20 / n {
                0..=7 => vec![matcher(
                    F::MetricField(MetricField::Name as i32),
                    M::Exact(name),
                )],
                8..=11 => vec![matcher(
                    F::MetricField(MetricField::Name as i32),
                    M::StartsWith(name),
                )],
                12..=14 => vec![matcher(
                    F::MetricField(MetricField::Name as i32),
                    M::Regex(format!("^{}_(count|sum|bucket)$", name)),
                )],
                15..=17 => vec![
                    matcher(F::MetricField(MetricField::Name as i32), M::Exact(name)),
                    matcher(
                        F::DatapointAttribute(path("route")),
                        M::Exact(format!("/api/v{}/items", i % 7)),
                    ),
                ],
                _ => vec![
                    matcher(
                        F::ResourceAttribute(path("service.name")),
                        M::Exact(SERVICES[i % SERVICES.len()].to_owned()),
                    ),
                    matcher(
                        F::MetricField(MetricField::Name as i32),
                        M::StartsWith(name),
                    ),
                ],
            };
            policy(
                format!("metric-{i:05}"),
                pb::policy::Target::Metric(pb::MetricTarget {
                    r#match: matchers,
                    keep: i % 3 != 0,
                }),
            )
        })
        .collect()
}

fn log_matcher(field: pb::log_matcher::Field, m: pb::log_matcher::Match) -> pb::LogMatcher {
    pb::LogMatcher {
        field: Some(field),
        r#match: Some(m),
        negate: false,
        case_insensitive: false,
    }
}

/// `n` log policies on services, severities, body text and attributes.
fn log_policies(n: usize) -> Vec<pb::Policy> {
    use pb::log_matcher::{Field as F, Match as M};
    (0..n)
        .map(|i| {
            let service = F::ResourceAttribute(path("service.name"));
            let matchers = match i * 5 / n {
                0 => vec![
                    log_matcher(service, M::Exact(format!("svc-{}", i / 5))),
                    log_matcher(
                        F::LogField(LogField::SeverityText as i32),
                        M::Exact("DEBUG".into()),
                    ),
                ],
                1 => vec![log_matcher(
                    F::LogField(LogField::Body as i32),
                    M::Contains(format!("job {} finished", i)),
                )],
                2 => vec![log_matcher(
                    F::LogField(LogField::Body as i32),
                    M::Regex(format!("^GET /internal/probe/{i}( |$)")),
                )],
                3 => vec![log_matcher(
                    F::LogAttribute(path("http.route")),
                    M::Exact(format!("/v1/resource/{i}")),
                )],
                _ => vec![
                    log_matcher(service, M::StartsWith(format!("batch-{i}-"))),
                    log_matcher(
                        F::LogField(LogField::Body as i32),
                        M::Contains("timeout".into()),
                    ),
                ],
            };
            let keep = ["none", "10%", "all", "100/s", "none"][i % 5].to_owned();
            policy(
                format!("log-{i:05}"),
                pb::policy::Target::Log(pb::LogTarget {
                    r#match: matchers,
                    keep,
                    ..Default::default()
                }),
            )
        })
        .collect()
}

struct Datapoint {
    name: String,
    service: &'static str,
    labels: Vec<(&'static str, String)>,
}

impl MetricView for Datapoint {
    fn get(&self, selector: &MetricSelector) -> Option<FieldValue<'_>> {
        match selector {
            MetricSelector::Field(MetricField::Name) => Some(FieldValue::str(&self.name)),
            MetricSelector::Type => Some(FieldValue::Int(2)),
            MetricSelector::DatapointAttribute(p) => self
                .labels
                .iter()
                .find(|(k, _)| *k == p[0])
                .map(|(_, v)| FieldValue::str(v)),
            MetricSelector::ResourceAttribute(p) if p[0] == "service.name" => {
                Some(FieldValue::str(self.service))
            }
            _ => None,
        }
    }
}

fn datapoints(n_policies: usize) -> Vec<Datapoint> {
    let mut rng = fastrand::Rng::with_seed(11);
    (0..1024)
        .map(|i| Datapoint {
            name: metric_name(rng.usize(..4 * n_policies.max(100))),
            service: SERVICES[i % SERVICES.len()],
            labels: vec![
                ("route", format!("/api/v{}/items", i % 9)),
                ("method", ["GET", "POST"][i % 2].to_owned()),
                ("status", ["200", "404", "500"][i % 3].to_owned()),
                ("instance", format!("10.0.0.{}:9100", i % 32)),
                ("job", "app".to_owned()),
                ("pod", format!("app-{}", i % 17)),
            ],
        })
        .collect()
}

struct LogRecord {
    body: String,
    severity: &'static str,
    service: String,
    attributes: Vec<(&'static str, String)>,
}

impl LogView for LogRecord {
    fn get(&self, selector: &LogSelector) -> Option<FieldValue<'_>> {
        match selector {
            LogSelector::Field(LogField::Body) => Some(FieldValue::Str(Cow::Borrowed(&self.body))),
            LogSelector::Field(LogField::SeverityText) => Some(FieldValue::str(self.severity)),
            LogSelector::ResourceAttribute(p) if p[0] == "service.name" => {
                Some(FieldValue::str(&self.service))
            }
            LogSelector::LogAttribute(p) => self
                .attributes
                .iter()
                .find(|(k, _)| *k == p[0])
                .map(|(_, v)| FieldValue::str(v)),
            _ => None,
        }
    }
}

impl LogViewMut for LogRecord {
    fn remove(&mut self, _: &LogSelector) -> bool {
        false
    }
    fn set(&mut self, _: &LogSelector, _: &str, _: bool) -> bool {
        false
    }
    fn rename(&mut self, _: &LogSelector, _: &str, _: bool) -> bool {
        false
    }
}

fn log_records(n_policies: usize) -> Vec<LogRecord> {
    let mut rng = fastrand::Rng::with_seed(13);
    (0..1024)
        .map(|i| {
            let k = rng.usize(..4 * n_policies.max(100));
            LogRecord {
                body: match i % 4 {
                    0 => format!("GET /internal/probe/{k} 200 1ms"),
                    1 => format!("job {k} finished in 35ms with 0 errors"),
                    2 => format!("upstream timeout after 30s talking to svc-{k}"),
                    _ => format!("user {k} added item {} to the cart", i * 7),
                },
                severity: ["INFO", "DEBUG", "WARN", "ERROR"][i % 4],
                service: format!("svc-{}", k / 5),
                attributes: vec![
                    ("http.route", format!("/v1/resource/{k}")),
                    ("http.method", "GET".into()),
                ],
            }
        })
        .collect()
}

fn bench_metrics(c: &mut Criterion) {
    let mut group = c.benchmark_group("metric_datapoint");
    for n in SIZES {
        let engine = Engine::compile(&metric_policies(n), &StatsRegistry::new());
        let points = datapoints(n);
        group.throughput(Throughput::Elements(points.len() as u64));
        group.bench_function(format!("{n}_policies"), |b| {
            b.iter(|| {
                points
                    .iter()
                    .filter(|p| engine.evaluate_metric(black_box(*p)))
                    .count()
            })
        });
    }
    group.finish();
}

fn bench_logs(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_record");
    for n in SIZES {
        let engine = Engine::compile(&log_policies(n), &StatsRegistry::new());
        let mut records = log_records(n);
        group.throughput(Throughput::Elements(records.len() as u64));
        group.bench_function(format!("{n}_policies"), |b| {
            b.iter(|| {
                records
                    .iter_mut()
                    .map(|r| engine.evaluate_log(black_box(r)).keeps() as usize)
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

/// Best-of-five evaluations per second of `f`, which evaluates `per_call`
/// records per call.
fn rate(per_call: usize, mut f: impl FnMut() -> usize) -> f64 {
    let mut best = 0.0f64;
    for _ in 0..5 {
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < Duration::from_millis(300) {
            black_box(f());
            calls += 1;
        }
        best = best.max((calls as f64 * per_call as f64) / start.elapsed().as_secs_f64());
    }
    best
}

fn summary() {
    println!("\n== summary: evaluations per second (one core), best of 5 ==");
    println!(
        "{:<16} {:>14} {:>12} {:>14} {:>12}",
        "policies", "metric dp/s", "ns/metric", "log rec/s", "ns/log"
    );
    let mut metric_rates = Vec::new();
    let mut log_rates = Vec::new();
    for n in SIZES {
        let metric_engine = Engine::compile(&metric_policies(n), &StatsRegistry::new());
        let points = datapoints(n);
        let m = rate(points.len(), || {
            points
                .iter()
                .filter(|p| metric_engine.evaluate_metric(*p))
                .count()
        });
        let log_engine = Engine::compile(&log_policies(n), &StatsRegistry::new());
        let mut records = log_records(n);
        let l = rate(records.len(), || {
            records
                .iter_mut()
                .map(|r| log_engine.evaluate_log(r).keeps() as usize)
                .sum::<usize>()
        });
        println!(
            "{:<16} {:>14.0} {:>12.1} {:>14.0} {:>12.1}",
            n,
            m,
            1e9 / m,
            l,
            1e9 / l
        );
        metric_rates.push(m);
        log_rates.push(l);
    }
    let ratio = |r: &[f64]| r[2] / r[0];
    println!(
        "ratio 10000/10 throughput: metric {:.2}, log {:.2} (target >= 0.33)",
        ratio(&metric_rates),
        ratio(&log_rates)
    );
    println!(
        "metric datapoint vs 1000 policies: {:.0} ns (target < 1000 ns)",
        1e9 / metric_rates[1]
    );
}

criterion_group!(benches, bench_metrics, bench_logs);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}

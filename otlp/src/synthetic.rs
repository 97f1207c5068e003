//! Realistic OTLP log traffic and log policy sets, for benchmarks and load
//! tests (the codec's criterion bench, the Edge's intake load test), so
//! that every figure in BENCHMARKS.md about pushed logs is measured on the
//! same workload.
//!
//! Records: HTTP access lines, application messages, health checks and
//! debug noise, 7-9 attributes each, trace context, from [`SERVICES`]
//! services. Policies: the mix real sets hold: exact and regex matches on
//! the body, severity, service and attribute conditions; keeps `none`,
//! `10%`, `all` and `100/s`; a few policies that redact or remove
//! attributes on a few per cent of records. About a fifth of the records is
//! dropped by [`log_policies`]`(1000)`.

use prost::Message as _;
use tero_proto::otel::{AnyValue, InstrumentationScope, KeyValue, any_value};
use tero_proto::otlp_collector::logs::v1::ExportLogsServiceRequest;
use tero_proto::otlp_logs::{LogRecord, ResourceLogs, ScopeLogs};
use tero_proto::otlp_resource::Resource;

/// Services the records come from (`svc-0` …).
pub const SERVICES: usize = 16;

fn string(s: impl Into<String>) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

fn attr(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value,
    }
}

fn service(i: usize) -> String {
    format!("svc-{i}")
}

const ROUTES: [&str; 6] = [
    "/api/v1/users/{id}",
    "/api/v1/orders/{id}",
    "/api/v1/cart",
    "/api/v1/search",
    "/v1/resource/{id}",
    "/internal/metrics",
];

/// One log record of the mix; `n` picks its kind and values.
fn record(rng: &mut fastrand::Rng, n: u64) -> LogRecord {
    let kind = rng.u32(..100);
    let (severity_number, severity) = match rng.u32(..100) {
        0..=69 => (9, "INFO"),
        70..=84 => (5, "DEBUG"),
        85..=94 => (13, "WARN"),
        _ => (17, "ERROR"),
    };
    let route = ROUTES[rng.usize(..ROUTES.len())];
    let status = [200, 200, 200, 201, 204, 304, 404, 500][rng.usize(..8)];
    let body = match kind {
        0..=39 => format!(
            "GET {} {status} {}ms bytes={} ua=\"Mozilla/5.0 (X11; Linux x86_64)\"",
            route.replace("{id}", &rng.u32(1..100_000).to_string()),
            rng.u32(1..900),
            rng.u32(100..90_000)
        ),
        40..=54 => format!(
            "payment processed for order {} amount={}.{:02} currency=EUR",
            rng.u64(1..10_000_000),
            rng.u32(1..500),
            rng.u32(..100)
        ),
        55..=64 => "health check ok".to_owned(),
        65..=74 => format!(
            "cache miss for key user:{} in region eu-west-1",
            rng.u32(..1_000_000)
        ),
        75..=84 => format!(
            "job {} finished in {}ms with {} items",
            rng.u32(..5_000),
            rng.u32(1..60_000),
            rng.u32(..1000)
        ),
        85..=92 => format!(
            "connection timeout to db-{} after {}ms, retrying (attempt {})",
            rng.u32(..8),
            rng.u32(100..5000),
            rng.u32(1..5)
        ),
        _ => format!("GET /internal/probe/{} 200 1ms", rng.u32(..3_000)),
    };
    let mut attributes = vec![
        attr(
            "http.method",
            string(["GET", "POST", "PUT"][rng.usize(..3)]),
        ),
        attr("http.route", string(route)),
        attr(
            "http.status_code",
            Some(AnyValue {
                value: Some(any_value::Value::IntValue(status)),
            }),
        ),
        attr("user.id", string(format!("u-{}", rng.u32(..200_000)))),
        attr(
            "request.id",
            string(format!("{:016x}{:016x}", rng.u64(..), rng.u64(..))),
        ),
        attr("thread.name", string(format!("worker-{}", rng.u32(..64)))),
        attr("code.function", string("handle_request")),
    ];
    if rng.u32(..100) < 4 {
        attributes.push(attr(
            "user.email",
            string(format!("someone{}@example.com", rng.u32(..10_000))),
        ));
    }
    if rng.u32(..100) < 2 {
        attributes.push(attr(
            "http.request.header.authorization",
            string("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJl"),
        ));
    }
    let now = 1_700_000_000_000_000_000 + n * 1_000_000;
    LogRecord {
        time_unix_nano: now,
        observed_time_unix_nano: now + 1_500_000,
        severity_number,
        severity_text: severity.to_owned(),
        body: string(body),
        attributes,
        dropped_attributes_count: 0,
        flags: 1,
        trace_id: rng.u128(..).to_le_bytes().to_vec(),
        span_id: rng.u64(..).to_le_bytes().to_vec(),
        event_name: String::new(),
    }
}

/// About `target_bytes` of log records from [`SERVICES`] services, as an
/// encoded `ExportLogsServiceRequest`. Deterministic (fixed seed).
pub fn log_request(target_bytes: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(19);
    let mut entries: Vec<ResourceLogs> = (0..SERVICES)
        .map(|i| ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    attr("service.name", string(service(i))),
                    attr("service.version", string("1.4.2")),
                    attr("host.name", string(format!("ip-10-0-{i}-17"))),
                    attr("k8s.namespace.name", string("production")),
                    attr(
                        "k8s.pod.name",
                        string(format!("{}-7f9c5d-x2k{i}", service(i))),
                    ),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "io.opentelemetry.logback".into(),
                    version: "2.1.0".into(),
                    ..Default::default()
                }),
                log_records: Vec::new(),
                schema_url: String::new(),
            }],
            schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
        })
        .collect();
    let mut size = 0;
    let mut n = 0;
    while size < target_bytes {
        let r = record(&mut rng, n);
        size += r.encoded_len() + 3;
        entries[rng.usize(..SERVICES)].scope_logs[0]
            .log_records
            .push(r);
        n += 1;
    }
    ExportLogsServiceRequest {
        resource_logs: entries,
    }
    .encode_to_vec()
}

/// `n` log policies: the mix of real sets, mostly not matching any one
/// record, a few matching many.
pub fn log_policies(n: usize) -> String {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut keep = ["none", "10%", "all", "100/s", "none"][i % 5];
        let (matchers, transform) = match i % 20 {
            // Transforms on a few per cent of records.
            0 if i == 0 => (
                r#"[{"log_attribute": "user.email", "exists": true}]"#.to_owned(),
                r#", "transform": {"redact": [{"log_attribute": "user.email", "regex": "^[^@]+", "replacement": "***"}]}"#,
            ),
            0 if i == 20 => (
                r#"[{"log_attribute": "http.request.header.authorization", "exists": true}]"#
                    .to_owned(),
                r#", "transform": {"remove": [{"log_attribute": "http.request.header.authorization"}]}"#,
            ),
            // Traffic everybody drops: health checks, debug of some services.
            0 if i == 40 => (
                r#"[{"log_field": "body", "exact": "health check ok"}]"#.to_owned(),
                "",
            ),
            0..=3 => (
                format!(
                    r#"[{{"resource_attribute": "service.name", "exact": "{}"}}, {{"log_field": "severity_text", "exact": "DEBUG"}}]"#,
                    service(i % (SERVICES * 4))
                ),
                "",
            ),
            4..=6 => (
                format!(r#"[{{"log_field": "body", "contains": "job {i} finished"}}]"#),
                "",
            ),
            7..=9 => (
                format!(r#"[{{"log_field": "body", "regex": "^GET /internal/probe/{i}( |$)"}}]"#),
                "",
            ),
            10..=12 => (
                format!(r#"[{{"log_attribute": "http.route", "exact": "/v1/resource/{i}"}}]"#),
                "",
            ),
            13..=14 => (
                format!(
                    r#"[{{"log_attribute": "user.id", "exact": "u-{}"}}, {{"log_field": "severity_text", "exact": "ERROR"}}]"#,
                    i * 7
                ),
                "",
            ),
            15..=16 => (
                format!(
                    r#"[{{"resource_attribute": "service.name", "starts_with": "batch-{i}-"}}, {{"log_field": "body", "contains": "timeout"}}]"#
                ),
                "",
            ),
            17..=18 => (
                format!(
                    r#"[{{"log_field": "body", "regex": "order {i}\\d* amount"}}, {{"log_field": "severity_text", "exact": "INFO"}}]"#
                ),
                "",
            ),
            _ => (
                format!(
                    r#"[{{"log_attribute": "thread.name", "exact": "worker-{}"}}, {{"log_field": "body", "starts_with": "cache miss for key user:{i}"}}]"#,
                    i % 64
                ),
                "",
            ),
        };
        if !transform.is_empty() {
            keep = "all";
        }
        out.push(format!(
            r#"{{"id": "log-{i:04}", "name": "log {i}", "log": {{"match": {matchers}, "keep": "{keep}"{transform}}}}}"#
        ));
    }
    format!(r#"{{"policies": [{}]}}"#, out.join(",\n"))
}

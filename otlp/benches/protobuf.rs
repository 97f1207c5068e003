//! The protobuf codec on a 1 MiB `ExportLogsServiceRequest`, one core.
//!
//! Workload: realistic log records (HTTP access lines, application
//! messages, health checks, debug noise; 7-9 attributes each, trace
//! context) from 16 services, against 1,000 log policies of the mix real
//! sets hold: exact and regex matches on the body, severity, service and
//! attribute conditions; keeps `none`, `10%`, `all` and `100/s`; a few
//! policies that redact or remove attributes on a few per cent of records.
//! About a fifth of the records is dropped, so the output is rewritten.
//!
//! Run: `cargo bench -p tero-otlp --bench protobuf`. After criterion's own
//! figures a summary prints MB/s (10^6 bytes of request per second) for
//! decode + evaluate + re-encode with the 1,000 policies, for the same
//! request through an engine with no policies (the baseline: validation
//! and the walk), and their ratio.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use prost::Message as _;
use tero_otlp::synthetic::{log_policies, log_request};
use tero_otlp::{Format, Output, Signal};
use tero_proto::otlp_collector::logs::v1::ExportLogsServiceRequest;
use tero_sdk::engine::{Engine, StatsRegistry};
use tero_sdk::policy::{Format as PolicyFormat, parse_policies};

const TARGET_BYTES: usize = 1 << 20;
const POLICIES: usize = 1_000;

fn engine(n: usize) -> Engine {
    let loaded =
        parse_policies(&log_policies(n), PolicyFormat::Json).expect("bench policies parse");
    assert!(loaded.rejected.is_empty(), "{:?}", loaded.rejected);
    let engine = Engine::compile(&loaded.policies, &StatsRegistry::new());
    let broken: Vec<_> = engine
        .policies()
        .iter()
        .filter(|p| !p.errors.is_empty())
        .map(|p| (&p.id, p.error_messages()))
        .collect();
    assert!(broken.is_empty(), "{broken:?}");
    engine
}

fn filter(engine: &Engine, payload: &[u8]) -> usize {
    let filtered = tero_otlp::filter(engine, Format::OtlpProtobuf, Signal::Log, payload)
        .expect("the bench request is valid");
    match filtered.output {
        Output::Unchanged => payload.len(),
        Output::Rewritten(bytes) => bytes.len(),
        Output::AllDropped => 0,
    }
}

fn bench(c: &mut Criterion) {
    let payload = log_request(TARGET_BYTES);
    let mut group = c.benchmark_group("otlp_protobuf_logs_1MiB");
    group.throughput(Throughput::Bytes(payload.len() as u64));
    let with_policies = engine(POLICIES);
    group.bench_function("1000_policies", |b| {
        b.iter(|| filter(&with_policies, black_box(&payload)))
    });
    let without = Engine::empty();
    group.bench_function("no_policies", |b| {
        b.iter(|| filter(&without, black_box(&payload)))
    });
    group.finish();
}

/// CPU time of the calling thread in nanoseconds (Linux), so that figures
/// taken on a busy machine still describe one core; `None` elsewhere.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Best-of-five MB/s of `f` over a `len`-byte payload: per second of this
/// thread's CPU time when the platform tells it, else of wall time.
fn rate(len: usize, mut f: impl FnMut() -> usize) -> f64 {
    let mut best = 0.0f64;
    for _ in 0..5 {
        let start = Instant::now();
        let cpu_start = thread_cpu_ns();
        let mut calls = 0u64;
        while start.elapsed() < Duration::from_millis(500) {
            black_box(f());
            calls += 1;
        }
        let seconds = match (cpu_start, thread_cpu_ns()) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
            _ => start.elapsed().as_secs_f64(),
        };
        best = best.max(calls as f64 * len as f64 / seconds / 1e6);
    }
    best
}

fn summary() {
    let payload = log_request(TARGET_BYTES);
    let with_policies = engine(POLICIES);
    let filtered = tero_otlp::filter(&with_policies, Format::OtlpProtobuf, Signal::Log, &payload)
        .expect("the bench request is valid");
    let out_len = match &filtered.output {
        Output::Rewritten(bytes) => bytes.len(),
        Output::Unchanged => payload.len(),
        Output::AllDropped => 0,
    };
    let edited = with_policies
        .policies()
        .iter()
        .map(|p| p.runtime.stats.peek())
        .map(|d| d.redact_hits + d.remove_hits)
        .sum::<u64>();
    println!(
        "\n== summary: 1 MiB ExportLogsServiceRequest, one core, best of 5 ({}) ==",
        if thread_cpu_ns().is_some() {
            "per second of thread CPU time"
        } else {
            "per second of wall time"
        }
    );
    println!(
        "request: {} bytes, {} records; with {POLICIES} policies: {} dropped ({:.1} %), {} transformed, output {} bytes",
        payload.len(),
        filtered.counts.records_in,
        filtered.counts.records_dropped,
        100.0 * filtered.counts.records_dropped as f64 / filtered.counts.records_in as f64,
        edited,
        out_len
    );
    let with = rate(payload.len(), || filter(&with_policies, &payload));
    let without_engine = Engine::empty();
    let without = rate(payload.len(), || filter(&without_engine, &payload));
    println!("decode + evaluate + re-encode, {POLICIES} policies: {with:.0} MB/s (target >= 300)");
    println!("same request, no policies (baseline):       {without:.0} MB/s");
    println!("ratio with/without: {:.2}", with / without);
    let prost = rate(payload.len(), || {
        ExportLogsServiceRequest::decode(payload.as_slice())
            .map(|r| r.resource_logs.len())
            .unwrap_or(0)
    });
    println!("(reference: prost decode into owned types: {prost:.0} MB/s)");
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `--profile-time` runs are for profilers: the summary would only blur
    // their picture.
    if !std::env::args().any(|a| a == "--profile-time") {
        summary();
    }
}

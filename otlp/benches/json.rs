//! OTLP JSON log requests through the codec: decode, evaluate, re-encode.
//!
//! The workload of the protobuf bench (`tero_otlp::synthetic`), in OTLP
//! JSON: a request of about 1 MiB against no policies and against the same
//! 1,000 log policies, so the two codecs' figures compare.
//!
//! Run: `cargo bench -p tero-otlp --bench json`. After criterion's own
//! figures a summary prints MB/s of request bytes per core (best of 5) for
//! both cases and their ratio.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use tero_otlp::synthetic::{log_policies, log_request};
use tero_otlp::{Signal, convert};
use tero_sdk::engine::{Engine, StatsRegistry};
use tero_sdk::policy::{Format as PolicyFormat, parse_policies};

const TARGET_BYTES: usize = 1 << 20;

/// The protobuf bench's workload in OTLP JSON: about 1 MiB of it.
fn request() -> Vec<u8> {
    // The JSON form is larger than the protobuf one; scale so the JSON
    // request is about TARGET_BYTES.
    let document = convert::protobuf_to_json(Signal::Log, &log_request(TARGET_BYTES * 100 / 216))
        .expect("the synthetic request converts");
    serde_json::to_vec(&document).expect("serializes")
}

fn engine(n: usize) -> Engine {
    let loaded =
        parse_policies(&log_policies(n), PolicyFormat::Json).expect("bench policies parse");
    Engine::compile(&loaded.policies, &StatsRegistry::new())
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
        let engine = engine(n);
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
        let engine = engine(n);
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

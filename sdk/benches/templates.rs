//! Template-miner throughput against a baseline measured in the same run.
//!
//! Workload: the generated corpus of the template tests (38 event types,
//! 17 services, plain text, logfmt, JSON, access logs; 64 bytes a line on
//! average), 65,536 lines per pass. The baseline splits each line into
//! whitespace tokens and counts them, the least a tokenising miner must do.
//! "warm" feeds lines to a miner that has already seen the corpus (the
//! steady state of a long-running edge), "cold" starts a new miner every
//! pass (template creation, examples and redaction included).
//!
//! Run: `cargo bench -p tero-sdk --bench templates`. After criterion's own
//! figures, a summary prints lines per second (best of 5 runs of 300 ms on
//! one core) and the ratio of each miner figure to the baseline.

#[path = "../tests/templates/corpus.rs"]
mod corpus;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use tero_sdk::templates::{Miner, MinerConfig};

const LINES: usize = 65_536;

struct Workload {
    lines: Vec<(&'static str, String)>,
}

fn workload() -> Workload {
    Workload {
        lines: corpus::corpus(1, LINES)
            .into_iter()
            .map(|l| (l.service, l.body))
            .collect(),
    }
}

fn baseline(w: &Workload) -> usize {
    w.lines
        .iter()
        .map(|(_, body)| black_box(body.as_str()).split_ascii_whitespace().count())
        .sum()
}

fn feed(miner: &mut Miner, w: &Workload) -> usize {
    let mut found = 0;
    for (i, (service, body)) in w.lines.iter().enumerate() {
        if miner.observe(service, body, None, i as i64).is_some() {
            found += 1;
        }
    }
    found
}

fn new_miner() -> Miner {
    Miner::new(MinerConfig::default()).unwrap_or_else(|e| panic!("default config: {e}"))
}

fn warm_miner(w: &Workload) -> Miner {
    let mut m = new_miner();
    feed(&mut m, w);
    m
}

fn bench(c: &mut Criterion) {
    let w = workload();
    let mut group = c.benchmark_group("templates");
    group.throughput(Throughput::Elements(w.lines.len() as u64));
    group.bench_function("baseline_split", |b| b.iter(|| baseline(&w)));
    let mut warm = warm_miner(&w);
    group.bench_function("miner_warm", |b| b.iter(|| feed(&mut warm, &w)));
    group.bench_function("miner_cold", |b| {
        b.iter(|| {
            let mut m = new_miner();
            feed(&mut m, &w)
        })
    });
    group.finish();
}

/// Best-of-five lines per second of `f`, which handles `per_call` lines
/// per call.
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
    let w = workload();
    let bytes: usize = w.lines.iter().map(|(_, b)| b.len()).sum();
    println!(
        "\n== summary: lines per second (one core), best of 5; {} lines, {:.1} bytes/line ==",
        w.lines.len(),
        bytes as f64 / w.lines.len() as f64
    );
    let base = rate(w.lines.len(), || baseline(&w));
    let mut warm = warm_miner(&w);
    let templates = warm.len();
    let hot = rate(w.lines.len(), || feed(&mut warm, &w));
    let cold = rate(w.lines.len(), || {
        let mut m = new_miner();
        feed(&mut m, &w)
    });
    println!(
        "{:<16} {:>14} {:>10} {:>8}",
        "case", "lines/s", "ns/line", "ratio"
    );
    for (name, r) in [
        ("baseline_split", base),
        ("miner_warm", hot),
        ("miner_cold", cold),
    ] {
        println!("{name:<16} {r:>14.0} {:>10.1} {:>8.3}", 1e9 / r, r / base);
    }
    println!("templates: {templates}; target: miner_warm >= 1,000,000 lines/s");
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}

//! Streaming filter throughput on a 10 MiB realistic exposition.
//!
//! `cargo bench -p tero-edge --bench filter`
//!
//! Besides criterion's per-benchmark output, prints a summary with MB/s
//! and ratios to two baselines measured in the same run: a plain line
//! split (memchr over the same chunks, the least any line filter must do)
//! and the same filter with no policies (parsing and family tracking
//! only), so the cost of 1,000 policies shows on its own.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{CHUNK, SIZE, best_of, chunks, engine, filter_once};
use criterion::{Criterion, Throughput};
use tero_edge::synthetic;

fn split_lines(input: &[Bytes]) -> usize {
    let mut lines = 0;
    for chunk in input {
        lines += memchr::memchr_iter(b'\n', chunk).count();
    }
    lines
}

fn main() {
    let body = synthetic::exposition(SIZE, 400);
    let input = chunks(&body);
    let bytes = body.len() as u64;
    let engines = [(0usize, engine(0)), (1_000, engine(1_000))];

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    let mut group = c.benchmark_group("scrape_filter_10MiB");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("line_split_baseline", |b| b.iter(|| split_lines(&input)));
    for (n, engine) in &engines {
        let mut out = Vec::new();
        group.bench_function(format!("filter_{n}_policies"), |b| {
            b.iter(|| filter_once(engine, &input, &mut out))
        });
    }
    group.finish();
    c.final_summary();

    // Summary: best of several whole-body runs, one core.
    let mb = bytes as f64 / 1e6;
    let baseline = best_of(15, || {
        std::hint::black_box(split_lines(&input));
    });
    println!(
        "\nsummary ({:.1} MiB exposition, {} lines, {}-byte chunks):",
        bytes as f64 / 1048576.0,
        split_lines(&input),
        CHUNK
    );
    println!(
        "  line split baseline      {:>8.0} MB/s",
        mb / baseline.as_secs_f64()
    );
    let mut out = Vec::new();
    let mut unfiltered = None;
    for (n, engine) in &engines {
        let mut kept = 0;
        let t = best_of(15, || kept = filter_once(engine, &input, &mut out));
        let zero = *unfiltered.get_or_insert(t);
        println!(
            "  filter, {n:>5} policies    {:>8.0} MB/s  vs line split {:.3}  vs 0 policies {:.3}  output {:.1}% of input",
            mb / t.as_secs_f64(),
            baseline.as_secs_f64() / t.as_secs_f64(),
            zero.as_secs_f64() / t.as_secs_f64(),
            100.0 * kept as f64 / bytes as f64
        );
    }
}

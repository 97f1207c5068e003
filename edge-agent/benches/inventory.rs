//! What inventorying a scrape costs, next to filtering it.
//!
//! `cargo bench -p tero-edge --bench inventory`
//!
//! An edge inventories at most one scrape per sampling period (default one
//! a minute), on top of filtering it. This measures, on the same 10 MiB
//! exposition and in the same run, the filter with 1,000 policies (the
//! baseline: what every scrape pays) and the inventory collector, and
//! prints their ratio, the amortised overhead at common scrape intervals,
//! and the size of the bounded report the edge sends.

mod common;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::{CHUNK, SIZE, best_of, chunks, engine, filter_once};
use criterion::{Criterion, Throughput};
use prost::Message;
use tero_edge::exposition::Format;
use tero_edge::synthetic;
use tero_prometheus::inventory::{
    CollectorOptions, InventoryWindow, ScrapeInventory, WindowOptions,
};

fn inventory_once(input: &[Bytes]) -> ScrapeInventory {
    let mut inventory = ScrapeInventory::new(CollectorOptions::new(Format::Text));
    for chunk in input {
        inventory.push(chunk);
    }
    inventory.finish();
    inventory
}

fn main() {
    let body = synthetic::exposition(SIZE, 400);
    let input = chunks(&body);
    let bytes = body.len() as u64;
    let engine = engine(1_000);

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    let mut group = c.benchmark_group("inventory_10MiB");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("filter_1000_policies", |b| {
        b.iter(|| filter_once(&engine, &input, &mut Vec::new()))
    });
    group.bench_function("inventory_collector", |b| b.iter(|| inventory_once(&input)));
    group.finish();
    c.final_summary();

    let mb = bytes as f64 / 1e6;
    let filter = best_of(10, || {
        std::hint::black_box(filter_once(&engine, &input, &mut Vec::new()));
    });
    let collect = best_of(10, || {
        std::hint::black_box(inventory_once(&input));
    });
    let ratio = collect.as_secs_f64() / filter.as_secs_f64();
    println!(
        "\nsummary ({:.1} MiB exposition, {}-byte chunks, one core):",
        bytes as f64 / 1048576.0,
        CHUNK
    );
    println!(
        "  filter, 1000 policies (baseline)  {:>7.0} MB/s  {:>7.1} ms",
        mb / filter.as_secs_f64(),
        filter.as_secs_f64() * 1e3
    );
    println!(
        "  inventory collector               {:>7.0} MB/s  {:>7.1} ms  = {ratio:.2} x the filter",
        mb / collect.as_secs_f64(),
        collect.as_secs_f64() * 1e3
    );
    // At most one scrape a minute is inventoried (the default sampling
    // period): per minute, the filter runs on every scrape and the
    // collector once.
    for (interval, per_minute) in [("15 s", 4.0), ("30 s", 2.0), ("60 s", 1.0)] {
        let filter_ms = filter.as_secs_f64() * 1e3 * per_minute;
        let collect_ms = collect.as_secs_f64() * 1e3;
        println!(
            "  scrapes every {interval}: per minute filter {filter_ms:>5.1} ms + inventory {collect_ms:>5.1} ms \
             = {:+.0}% CPU, {:.3}% of one core",
            100.0 * collect_ms / filter_ms,
            100.0 * (filter_ms + collect_ms) / 60_000.0
        );
    }

    // The bounded report: absorb one scrape, then take what would be sent.
    let mut window = InventoryWindow::new(WindowOptions::default(), SystemTime::now());
    window.record_scrape();
    let scrape = inventory_once(&input);
    let families = scrape.families().count();
    window.absorb(scrape, SystemTime::now());
    let report = window.take_report(SystemTime::now());
    println!(
        "  report: {} families ({} in the scrape, {} omitted), {} bytes encoded ({:.2}% of one scrape)",
        report.families.len(),
        families,
        report.families_omitted,
        report.encoded_len(),
        100.0 * report.encoded_len() as f64 / bytes as f64
    );
}

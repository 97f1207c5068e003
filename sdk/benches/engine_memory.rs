//! Matcher memory of the compiled engine with ordinary regex policies.
//!
//! Each policy pairs a metric-name regex `^team{i}_[a-z0-9_]{1,100}_(seconds|bytes|total)$`
//! with a label regex `^/api/v[0-9]+/.{0,200}$`: the set that took an Edge
//! to 258 MB (issue 16). The same policies written with `[ -~]` instead of
//! `.` are the baseline, measured in the same run. Heap is counted by this
//! binary's global allocator (live bytes, exact); RSS is what the kernel
//! reports and includes the allocator's retained pages.
//!
//! Phases, per policy count: compile; evaluate a realistic set of series on
//! several threads (lazy DFA caches grow per thread, on use); reload a few
//! times with edited policies, evaluating each time; prune back to 6
//! policies.
//!
//! Run: `cargo bench -p tero-sdk --bench engine_memory`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use tero_sdk::engine::{EngineHandle, FieldValue, MetricSelector, MetricView};
use tero_sdk::proto::policy::{self as pb, MetricField};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(live, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let live =
                    LIVE.fetch_add(new_size - layout.size(), Relaxed) + new_size - layout.size();
                PEAK.fetch_max(live, Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const THREADS: usize = 4;
const RELOADS: usize = 5;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn matcher(field: pb::metric_matcher::Field, regex: String) -> pb::MetricMatcher {
    pb::MetricMatcher {
        field: Some(field),
        r#match: Some(pb::metric_matcher::Match::Regex(regex)),
        negate: false,
        case_insensitive: false,
    }
}

/// `n` policies; `any` is how the label regex says "any character";
/// `edit` varies the set from one reload to the next.
fn policies(n: usize, any: &str, edit: usize) -> Vec<pb::Policy> {
    (0..n)
        .map(|i| {
            let id = format!("team-{i:05}-{edit}");
            pb::Policy {
                name: id.clone(),
                id,
                enabled: true,
                target: Some(pb::policy::Target::Metric(pb::MetricTarget {
                    r#match: vec![
                        matcher(
                            pb::metric_matcher::Field::MetricField(MetricField::Name as i32),
                            format!("^team{i}_[a-z0-9_]{{1,100}}_(seconds|bytes|total)$"),
                        ),
                        matcher(
                            pb::metric_matcher::Field::DatapointAttribute(pb::AttributePath {
                                path: vec!["path".into()],
                            }),
                            format!("^/api/v[0-9]+/{any}{{0,{}}}$", 200 - edit),
                        ),
                    ],
                    keep: false,
                })),
                ..Default::default()
            }
        })
        .collect()
}

struct Series {
    name: String,
    path: String,
}

impl MetricView for Series {
    fn get(&self, selector: &MetricSelector) -> Option<FieldValue<'_>> {
        match selector {
            MetricSelector::Field(MetricField::Name) => Some(FieldValue::str(&self.name)),
            MetricSelector::DatapointAttribute(p) if p[0] == "path" => {
                Some(FieldValue::str(&self.path))
            }
            _ => None,
        }
    }
}

/// Series of every team's families, a third of them unmatched, with API
/// paths of varied length (some past the 200-character bound).
fn series(n: usize) -> Vec<Series> {
    let mut rng = fastrand::Rng::with_seed(5);
    let units = ["seconds", "bytes", "total", "ratio"];
    (0..20_000)
        .map(|i| {
            let team = rng.usize(..n);
            let tail: String = (0..rng.usize(0..240)).map(|_| rng.alphanumeric()).collect();
            Series {
                name: format!(
                    "team{team}_http_server_request_{}_{}",
                    i % 7,
                    units[i % units.len()]
                ),
                path: format!("/api/v{}/{tail}", i % 3),
            }
        })
        .collect()
}

fn evaluate(handle: &EngineHandle, series: &[Series]) -> usize {
    let chunk = series.len().div_ceil(THREADS);
    std::thread::scope(|s| {
        let workers: Vec<_> = series
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let engine = handle.load();
                    part.iter().filter(|p| !engine.evaluate_metric(*p)).count()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    })
}

struct Row {
    label: String,
    compiled: usize,
    evaluated: usize,
    reloaded: usize,
    pruned: usize,
    peak: usize,
    rss: usize,
    compile_ms: u128,
}

fn measure(n: usize, any: &str, label: &str) -> Row {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let handle = EngineHandle::new();
    let series = series(n);
    let base = LIVE.load(Relaxed);
    let start = Instant::now();
    handle.replace(&policies(n, any, 0));
    let compile_ms = start.elapsed().as_millis();
    let compiled = LIVE.load(Relaxed) - base;
    let dropped = evaluate(&handle, &series);
    let evaluated = LIVE.load(Relaxed) - base;
    // As an Edge does, counts are taken before each reload: the counters
    // of removed policies are then released with them.
    for edit in 1..=RELOADS {
        handle.registry().take_all();
        handle.replace(&policies(n, any, edit));
        evaluate(&handle, &series);
    }
    let reloaded = LIVE.load(Relaxed) - base;
    handle.registry().take_all();
    handle.replace(&policies(6, any, 0));
    evaluate(&handle, &series);
    let pruned = LIVE.load(Relaxed).saturating_sub(base);
    let row = Row {
        label: format!("{n} × {label}"),
        compiled,
        evaluated,
        reloaded,
        pruned,
        peak: PEAK.load(Relaxed) - base,
        rss: rss(),
        compile_ms,
    };
    eprintln!("  ({label}: {dropped} of {} series dropped)", series.len());
    row
}

fn main() {
    // Criterion-style flags (`--bench`, filters) are accepted and ignored.
    let rows: Vec<Row> = [1_000, 10_000]
        .into_iter()
        .flat_map(|n| {
            [
                measure(n, "[ -~]", "[ -~] (baseline)"),
                measure(n, ".", "."),
            ]
        })
        .collect();
    println!(
        "\n| policies | heap compiled | after {THREADS}-thread eval | after {RELOADS} reloads | pruned to 6 | peak | process RSS | compile |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.2} MiB | {:.1} MiB | {:.1} MiB | {} ms |",
            r.label,
            mib(r.compiled),
            mib(r.evaluated),
            mib(r.reloaded),
            mib(r.pruned),
            mib(r.peak),
            mib(r.rss),
            r.compile_ms
        );
    }
}

//! Realistic synthetic expositions and policy sets, for benchmarks, load
//! tests and demos. Deterministic: the same arguments give the same bytes.
//!
//! The mix follows what service exporters emit: counters and gauges with
//! five to eight labels, and classic histograms with twelve buckets, whose
//! lines dominate the byte count.

use std::fmt::Write as _;

const BUCKETS: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const CODES: [&str; 5] = ["200", "201", "404", "429", "500"];

/// The name of family `i` of the synthetic exposition.
pub fn family_name(i: usize) -> String {
    match i % 3 {
        0 => format!("svc{}_requests_total", i / 3),
        1 => format!("svc{}_queue_depth", i / 3),
        _ => format!("svc{}_request_duration_seconds", i / 3),
    }
}

/// Text 0.0.4 of at least `target_bytes`: families cycle counter, gauge,
/// histogram, each with `series_per_family` label sets.
pub fn exposition(target_bytes: usize, series_per_family: usize) -> Vec<u8> {
    let mut all = Vec::with_capacity(target_bytes + 64 * 1024);
    render(target_bytes, series_per_family, 64 * 1024, &mut |piece| {
        all.extend_from_slice(piece)
    });
    all
}

/// Renders the same exposition as [`exposition`], handing it to `sink`
/// in pieces of about `piece_bytes` as it is formatted, the way an
/// exporter streams its response.
pub fn render(
    target_bytes: usize,
    series_per_family: usize,
    piece_bytes: usize,
    sink: &mut dyn FnMut(&[u8]),
) {
    let mut out = String::with_capacity(piece_bytes + 16 * 1024);
    let mut rendered = 0;
    let mut family = 0;
    while rendered + out.len() < target_bytes {
        let name = family_name(family);
        let kind = ["counter", "gauge", "histogram"][family % 3];
        let _ = writeln!(out, "# HELP {name} Synthetic {kind} number {family}.");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for s in 0..series_per_family {
            let labels = format!(
                "service=\"checkout-{}\",instance=\"10.0.{}.{}:8080\",method=\"{}\",code=\"{}\",route=\"/api/v1/items/{}\"{}",
                family % 7,
                s / 250,
                s % 250,
                METHODS[s % METHODS.len()],
                CODES[(s / 4) % CODES.len()],
                s % 17,
                if s % 3 == 0 {
                    ",region=\"eu-west-1\",zone=\"eu-west-1a\""
                } else {
                    ""
                }
            );
            match kind {
                "histogram" => {
                    for (b, le) in BUCKETS.iter().enumerate() {
                        let _ = writeln!(
                            out,
                            "{name}_bucket{{{labels},le=\"{le}\"}} {}",
                            (b + 1) * (s + 3)
                        );
                    }
                    let _ = writeln!(out, "{name}_sum{{{labels}}} {}.{}", s * 7, family % 10);
                    let _ = writeln!(out, "{name}_count{{{labels}}} {}", 12 * (s + 3));
                }
                _ => {
                    let _ = writeln!(out, "{name}{{{labels}}} {}", (s * 31 + family) % 100_000);
                }
            }
            if out.len() >= piece_bytes {
                rendered += out.len();
                sink(out.as_bytes());
                out.clear();
            }
        }
        family += 1;
    }
    if !out.is_empty() {
        sink(out.as_bytes());
    }
}

/// `count` metric policies in YAML: about 7 in 10 exact-name drops of
/// families the exposition does not have, 2 in 10 regex drops, the rest
/// name-plus-label drops; one in 50 hits a family the exposition has.
pub fn policies_yaml(count: usize) -> String {
    let mut out = String::from("policies:\n");
    for i in 0..count {
        let hits = i % 50 == 0;
        let target = if hits {
            family_name(i / 50 * 3 + (i / 50) % 3)
        } else {
            format!("absent_family_{i}_total")
        };
        let _ = writeln!(
            out,
            "  - id: p{i:05}\n    name: policy {i}\n    metric:\n      match:"
        );
        match i % 10 {
            0..=6 => {
                let _ = writeln!(
                    out,
                    "        - metric_field: name\n          exact: {target}"
                );
            }
            7 | 8 => {
                let re = if hits {
                    format!("^{target}$")
                } else {
                    format!("^absent_{i}_.*")
                };
                let _ = writeln!(
                    out,
                    "        - metric_field: name\n          regex: \"{re}\""
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "        - metric_field: name\n          exact: {target}\n        - datapoint_attribute: code\n          exact: \"500\""
                );
            }
        }
        let _ = writeln!(out, "      keep: false");
    }
    out
}

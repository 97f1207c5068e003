//! Hostile input for the exposition reader, the streaming filter and the
//! inventory collector: whatever an upstream sends (arbitrary bytes, lines
//! that look almost like exposition, any chunking, any caps), nothing
//! panics and the filter's output stays well-formed.
//!
//! Bounded case counts, so CI runs them in seconds on every build.

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use tero_prometheus::exposition::{
    FamilyType, Format, LabelIter, Line, decode_escapes, parse_line,
};
use tero_prometheus::filter::{FilterOptions, Resource, ScrapeFilter};
use tero_prometheus::inventory::{CollectorOptions, ScrapeInventory};
use tero_sdk::Engine;
use tero_sdk::engine::StatsRegistry;
use tero_sdk::policy::{Format as PolicyFormat, parse_policies};

/// Policies that read every field the filter can decode, so every decoding
/// path runs.
const POLICIES: &str = r#"
policies:
  - id: by-name
    name: by-name
    metric:
      match:
        - {metric_field: name, regex: '^d'}
      keep: false
  - id: by-label
    name: by-label
    metric:
      match:
        - {datapoint_attribute: a, exact: 'x'}
      keep: false
  - id: by-help
    name: by-help
    metric:
      match:
        - {metric_field: description, regex: 'drop'}
      keep: false
  - id: by-unit
    name: by-unit
    metric:
      match:
        - {metric_field: unit, exact: seconds}
      keep: false
  - id: by-type
    name: by-type
    metric:
      match:
        - {metric_type: histogram}
        - {datapoint_attribute: le, exists: true}
      keep: false
"#;

/// Compiled once: every case filters through the same set.
fn engine() -> Arc<Engine> {
    static ENGINE: std::sync::OnceLock<Arc<Engine>> = std::sync::OnceLock::new();
    ENGINE.get_or_init(compile).clone()
}

fn compile() -> Arc<Engine> {
    let loaded = parse_policies(POLICIES, PolicyFormat::Yaml).expect("policies parse");
    assert!(loaded.rejected.is_empty(), "{:?}", loaded.rejected);
    let engine = Engine::compile(&loaded.policies, &StatsRegistry::new());
    for p in engine.policies() {
        assert!(p.errors.is_empty(), "{}: {:?}", p.id, p.error_messages());
    }
    Arc::new(engine)
}

/// Bytes that are mostly exposition syntax: names, braces, quotes,
/// escapes, `#` keywords, numbers, CR/LF, and some anything-at-all.
fn exposition_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"# HELP ".to_vec()),
        Just(b"# TYPE ".to_vec()),
        Just(b"# UNIT ".to_vec()),
        Just(b"# EOF".to_vec()),
        Just(b"# ".to_vec()),
        Just(b"histogram".to_vec()),
        Just(b"summary".to_vec()),
        Just(b"counter".to_vec()),
        Just(b"d_bucket".to_vec()),
        Just(b"_total".to_vec()),
        Just(b"metric".to_vec()),
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"=".to_vec()),
        Just(b",".to_vec()),
        Just(b"le=\"+Inf\"".to_vec()),
        Just(b"quantile=\"0.5\"".to_vec()),
        Just(b"a=\"x\"".to_vec()),
        Just(b" 1".to_vec()),
        Just(b" NaN".to_vec()),
        Just(b" # {t=\"1\"} 2".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b" ".to_vec()),
        Just("é\u{fffd}".as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 1..8),
    ];
    prop::collection::vec(token, 0..120).prop_map(|t| t.concat())
}

fn any_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => exposition_bytes(),
        1 => prop::collection::vec(any::<u8>(), 0..600),
    ]
}

#[derive(Debug, Clone)]
struct Run {
    input: Vec<u8>,
    om: bool,
    chunks: Vec<usize>,
    max_line_bytes: usize,
    max_output_bytes: u64,
    hold_long_lines: bool,
    /// `Some(n)`: the input cap cuts after `n` bytes.
    cut_at: Option<usize>,
}

fn run() -> impl Strategy<Value = Run> {
    (
        any_input(),
        any::<bool>(),
        prop::collection::vec(1usize..64, 1..8),
        prop_oneof![Just(4096usize), 8usize..48],
        prop_oneof![Just(0u64), 1u64..400],
        any::<bool>(),
        prop::option::of(0usize..700),
    )
        .prop_map(
            |(input, om, chunks, max_line_bytes, max_output_bytes, hold_long_lines, cut_at)| Run {
                input,
                om,
                chunks,
                max_line_bytes,
                max_output_bytes,
                hold_long_lines,
                cut_at,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_line_reader_never_panics(line in any_input()) {
        match parse_line(&line) {
            Line::Sample(sample) => {
                let _ = sample.name.decoded();
                let mut scratch = Vec::new();
                for kind in [FamilyType::Histogram, FamilyType::Summary, FamilyType::Untyped] {
                    let _ = sample.series_identity(kind, &mut scratch);
                }
                let mut labels = LabelIter::new(sample.labels);
                for pair in &mut labels {
                    let _ = pair.value();
                    let _ = pair.name_is("le");
                }
                let _ = labels.failed();
            }
            Line::Metadata(meta) => {
                let _ = meta.name.decoded();
                let _ = FamilyType::from_word(meta.value);
                let _ = decode_escapes(meta.value, true);
            }
            _ => {}
        }
        let _ = decode_escapes(&line, false);
        let mut labels = LabelIter::new(&line);
        for pair in &mut labels {
            let _ = pair.value();
        }
    }

    #[test]
    fn the_filter_never_panics_and_its_output_is_well_formed(r in run()) {
        let engine = engine();
        let format = if r.om { Format::OpenMetrics } else { Format::Text };
        let opts = FilterOptions {
            max_line_bytes: r.max_line_bytes,
            max_output_bytes: r.max_output_bytes,
            hold_long_lines: r.hold_long_lines,
            ..FilterOptions::new(format)
        };
        let mut filter = ScrapeFilter::new(engine, Arc::new(Resource::default()), opts);
        let mut inventory = ScrapeInventory::new(CollectorOptions {
            max_line_bytes: r.max_line_bytes,
            ..CollectorOptions::new(format)
        });
        let input = match r.cut_at {
            Some(n) => &r.input[..n.min(r.input.len())],
            None => &r.input[..],
        };
        let mut segments = Vec::new();
        let mut at = 0;
        for size in r.chunks.iter().cycle() {
            if at >= input.len() {
                break;
            }
            let end = (at + size).min(input.len());
            let chunk = Bytes::copy_from_slice(&input[at..end]);
            inventory.push(&chunk);
            filter.push(&chunk, &mut segments);
            at = end;
        }
        let cut = match r.cut_at {
            Some(_) => {
                inventory.cut_input();
                filter.cut_input(&mut segments).is_ok()
            }
            None => {
                inventory.finish();
                filter.finish(&mut segments);
                true
            }
        };
        prop_assert!(cut || !r.hold_long_lines, "holding long lines, a cut always succeeds");
        let out = segments.concat();
        prop_assert_eq!(filter.counters().bytes_out, out.len() as u64);
        if cut {
            prop_assert!(out.is_empty() || out.ends_with(b"\n"), "ends on a line boundary");
            if r.om {
                prop_assert!(out.ends_with(b"# EOF\n") || out.ends_with(b"# EOF\r\n"));
            }
        }
        let _ = inventory.into_families();
    }
}

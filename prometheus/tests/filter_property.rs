//! Property test of the streaming scrape filter against a straightforward
//! model (`docs/spec/prometheus-edge.md` §1–4, 12).
//!
//! Random expositions (Prometheus text and OpenMetrics; every family type,
//! histograms with several buckets, summaries, quoted UTF-8 names, label
//! values with escapes, quotes, `#` and braces, optional HELP/TYPE/UNIT,
//! comments, CRLF, a missing final LF) are filtered through random drop
//! policies in random chunk sizes. The model knows which series every line
//! belongs to, so the expected output is simply the input without the lines
//! of dropped series and without the metadata of families that lost every
//! series.

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};
use tero_prometheus::exposition::{Format, Line, parse_line};
use tero_prometheus::filter::{FilterOptions, Resource, ScrapeFilter};
use tero_sdk::Engine;
use tero_sdk::engine::StatsRegistry;
use tero_sdk::policy::{Format as PolicyFormat, parse_policies};

// ---------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------

/// Label values as written and as a policy sees them (escapes decoded).
/// The last one is empty, which counts as missing.
const VALUES: &[(&str, &str)] = &[
    ("v1", "v1"),
    ("v2", "v2"),
    (r"C:\\tmp", r"C:\tmp"),
    (r#"say \"hi\""#, r#"say "hi""#),
    ("x # y", "x # y"),
    ("{br}", "{br}"),
    ("a,b=c} 1", "a,b=c} 1"),
    (r"l1\nl2", "l1\nl2"),
    ("", ""),
];
/// Values a label policy may ask for (non-empty).
const POLICY_VALUES: usize = 8;

/// Identity label keys of generated series.
const KEYS: &[&str] = &["a", "b", "path"];
/// Keys a label policy may ask for: `le` and `quantile` are structure.
const POLICY_KEYS: &[&str] = &["a", "b", "path", "le", "quantile"];

/// HELP texts as written; the last one is empty (absent).
const HELPS: &[&str] = &[
    "Plain help.",
    r"Back\\slash",
    r"Multi\nline",
    r#"Say \"hi\""#,
    "",
];
const POLICY_HELPS: usize = 4;

const BUCKETS: &[&str] = &["0.1", "1", "+Inf"];
const QUANTILES: &[&str] = &["0.5", "0.9"];
const STATES: &[&str] = &["s1", "s2"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Untyped,
    Counter,
    Histogram,
    Summary,
    Info,
    StateSet,
    GaugeHistogram,
}

/// The OTel metric type a family maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Otel {
    Gauge,
    Sum,
    Histogram,
    Summary,
}

impl Otel {
    fn word(self) -> &'static str {
        match self {
            Otel::Gauge => "gauge",
            Otel::Sum => "sum",
            Otel::Histogram => "histogram",
            Otel::Summary => "summary",
        }
    }
}

impl Kind {
    fn otel(self) -> Otel {
        match self {
            Kind::Gauge | Kind::Untyped => Otel::Gauge,
            Kind::Counter | Kind::Info | Kind::StateSet => Otel::Sum,
            Kind::Histogram | Kind::GaugeHistogram => Otel::Histogram,
            Kind::Summary => Otel::Summary,
        }
    }

    fn type_word(self, om: bool) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Untyped if om => "unknown",
            Kind::Untyped => "untyped",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
            Kind::Info => "info",
            Kind::StateSet => "stateset",
            Kind::GaugeHistogram => "gaugehistogram",
        }
    }

    /// Text formats only know the Prometheus types.
    fn for_format(self, om: bool) -> Kind {
        match self {
            Kind::Info if !om => Kind::Gauge,
            Kind::StateSet if !om => Kind::Untyped,
            Kind::GaugeHistogram if !om => Kind::Histogram,
            k => k,
        }
    }
}

// ---------------------------------------------------------------------------
// Random cases
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct SeriesSpec {
    /// Value index per identity key (`None`: label absent).
    labels: [Option<usize>; 3],
    le_first: bool,
    created: bool,
    exemplar: bool,
    timestamp: bool,
}

#[derive(Debug, Clone)]
struct FamilySpec {
    kind: Kind,
    quoted: bool,
    /// Named `<previous family>_in_flight`, untyped or gauge.
    in_flight: bool,
    help: Option<usize>,
    type_line: bool,
    unit: bool,
    type_first: bool,
    comment: bool,
    series: Vec<SeriesSpec>,
}

#[derive(Debug, Clone)]
enum MatcherSpec {
    /// A family's name (index modulo a few more than the families: some
    /// name nothing).
    Name(usize),
    Type(Otel),
    Label(usize, usize),
    Description(usize),
}

#[derive(Debug, Clone)]
struct PolicySpec {
    matchers: Vec<MatcherSpec>,
    keep: bool,
}

#[derive(Debug, Clone)]
struct Case {
    om: bool,
    crlf: bool,
    final_lf: bool,
    eof_line: bool,
    families: Vec<FamilySpec>,
    policies: Vec<PolicySpec>,
    chunks: Vec<usize>,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Gauge),
        Just(Kind::Untyped),
        Just(Kind::Counter),
        Just(Kind::Histogram),
        Just(Kind::Summary),
        Just(Kind::Info),
        Just(Kind::StateSet),
        Just(Kind::GaugeHistogram),
    ]
}

fn otel() -> impl Strategy<Value = Otel> {
    prop_oneof![
        Just(Otel::Gauge),
        Just(Otel::Sum),
        Just(Otel::Histogram),
        Just(Otel::Summary),
    ]
}

fn series() -> impl Strategy<Value = SeriesSpec> {
    (
        prop::array::uniform3(prop::option::of(0..VALUES.len())),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(labels, le_first, created, exemplar, timestamp)| SeriesSpec {
                labels,
                le_first,
                created,
                exemplar,
                timestamp,
            },
        )
}

fn family() -> impl Strategy<Value = FamilySpec> {
    (
        kind(),
        prop::bool::weighted(0.25),
        prop::bool::weighted(0.25),
        prop::option::of(0..HELPS.len()),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.2),
        prop::collection::vec(series(), 0..4),
    )
        .prop_map(
            |(kind, quoted, in_flight, help, type_line, unit, type_first, comment, series)| {
                FamilySpec {
                    kind,
                    quoted,
                    in_flight,
                    help,
                    type_line,
                    unit,
                    type_first,
                    comment,
                    series,
                }
            },
        )
}

fn matcher() -> impl Strategy<Value = MatcherSpec> {
    prop_oneof![
        3 => (0usize..8).prop_map(MatcherSpec::Name),
        1 => otel().prop_map(MatcherSpec::Type),
        3 => (0..POLICY_KEYS.len(), 0..POLICY_VALUES).prop_map(|(k, v)| MatcherSpec::Label(k, v)),
        1 => (0..POLICY_HELPS).prop_map(MatcherSpec::Description),
    ]
}

fn policy() -> impl Strategy<Value = PolicySpec> {
    (
        prop::collection::vec(matcher(), 1..3),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(matchers, keep)| PolicySpec { matchers, keep })
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.7),
        prop::bool::weighted(0.8),
        prop::collection::vec(family(), 1..6),
        prop::collection::vec(policy(), 0..4),
        prop::collection::vec(1usize..48, 1..6),
    )
        .prop_map(
            |(om, crlf, final_lf, eof_line, families, policies, chunks)| Case {
                om,
                // OpenMetrics is LF only.
                crlf: crlf && !om,
                final_lf,
                eof_line,
                families,
                policies,
                chunks,
            },
        )
}

// ---------------------------------------------------------------------------
// Rendering and the model
// ---------------------------------------------------------------------------

/// Decodes HELP escapes (`\\`, `\n`; `\"` in OpenMetrics only).
fn decode_help(raw: &str, om: bool) -> String {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if om => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// What the model knows of one rendered family.
struct Family {
    /// The name policies see.
    name: String,
    otel: Otel,
    /// Decoded HELP, `None` if absent or empty.
    help: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Comment,
    Metadata { family: usize },
    Sample { family: usize, dropped: bool },
}

struct Rendered {
    lines: Vec<(String, Role)>,
    families: Vec<Family>,
}

fn quote_name(name: &str) -> bool {
    name.contains('.')
}

fn meta_name(name: &str) -> String {
    if quote_name(name) {
        format!("\"{name}\"")
    } else {
        name.to_owned()
    }
}

/// `name{labels} rest`, with the name inside the braces when quoted.
fn sample_line(name: &str, labels: &[(String, String)], rest: &str) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    if quote_name(name) {
        let mut inner = vec![format!("\"{name}\"")];
        inner.extend(pairs);
        format!("{{{}}} {rest}", inner.join(", "))
    } else if pairs.is_empty() {
        format!("{name} {rest}")
    } else {
        format!("{name}{{{}}} {rest}", pairs.join(","))
    }
}

fn matches(
    m: &MatcherSpec,
    fam: &Family,
    labels: &[(usize, usize)],
    names: &[String],
    om: bool,
) -> bool {
    match m {
        MatcherSpec::Name(i) => names.get(*i).is_some_and(|n| *n == fam.name),
        MatcherSpec::Type(t) => fam.otel == *t,
        MatcherSpec::Label(k, v) => {
            let key = POLICY_KEYS[*k];
            // le/quantile are never attributes; generated label keys are
            // a, b and path only.
            let Some(key_index) = KEYS.iter().position(|x| *x == key) else {
                return false;
            };
            labels.iter().any(|&(ki, vi)| {
                ki == key_index && !VALUES[vi].1.is_empty() && VALUES[vi].1 == VALUES[*v].1
            })
        }
        MatcherSpec::Description(h) => fam.help.as_deref() == Some(&decode_help(HELPS[*h], om)),
    }
}

/// Names the policies' name matchers refer to: the families' names, and a
/// few that name nothing.
fn policy_names(families: &[Family]) -> Vec<String> {
    let mut names: Vec<String> = families.iter().map(|f| f.name.clone()).collect();
    while names.len() < 8 {
        names.push(format!("absent_{}", names.len()));
    }
    names
}

fn render(case: &Case) -> Rendered {
    let om = case.om;
    // First pass: names, types and HELP of every family.
    let mut families: Vec<Family> = Vec::new();
    let mut kinds = Vec::new();
    let mut bases = Vec::new();
    for (i, spec) in case.families.iter().enumerate() {
        let mut kind = spec.kind.for_format(om);
        let base = if spec.in_flight && i > 0 {
            if !matches!(kind, Kind::Gauge | Kind::Untyped) {
                kind = Kind::Untyped;
            }
            format!("{}_in_flight", families[i - 1].name)
        } else if spec.quoted {
            format!("fam.{i}")
        } else {
            format!("fam_{i}")
        };
        // Text counters are named with `_total` (R-1.5).
        let name = if kind == Kind::Counter && !om {
            format!("{base}_total")
        } else {
            base.clone()
        };
        let help = spec
            .help
            .map(|h| decode_help(HELPS[h], om))
            .filter(|h| !h.is_empty());
        families.push(Family {
            name,
            otel: kind.otel(),
            help,
        });
        kinds.push(kind);
        bases.push(base);
    }
    let names = policy_names(&families);
    let dropped = |fam: usize, labels: &[(usize, usize)]| {
        case.policies.iter().any(|p| {
            !p.keep
                && p.matchers
                    .iter()
                    .all(|m| matches(m, &families[fam], labels, &names, om))
        })
    };

    let mut lines: Vec<(String, Role)> = Vec::new();
    for (f, spec) in case.families.iter().enumerate() {
        let kind = kinds[f];
        let base = &bases[f];
        let name = &families[f].name;
        if spec.comment && !om {
            lines.push((
                format!("# comment {f} with {{braces}}, \"quotes\" and # signs"),
                Role::Comment,
            ));
        }
        let meta = Role::Metadata { family: f };
        let mut metadata = Vec::new();
        if let Some(h) = spec.help {
            let raw = HELPS[h];
            let line = if raw.is_empty() {
                format!("# HELP {}", meta_name(name))
            } else {
                format!("# HELP {} {raw}", meta_name(name))
            };
            metadata.push(line);
        }
        let typed = spec.type_line || !matches!(kind, Kind::Gauge | Kind::Untyped);
        if typed {
            let line = format!("# TYPE {} {}", meta_name(name), kind.type_word(om));
            if spec.type_first {
                metadata.insert(0, line);
            } else {
                metadata.push(line);
            }
        }
        if spec.unit && om {
            metadata.push(format!("# UNIT {} seconds", meta_name(name)));
        }
        lines.extend(metadata.into_iter().map(|l| (l, meta)));

        for (s, series) in spec.series.iter().enumerate() {
            let ids: Vec<(usize, usize)> = series
                .labels
                .iter()
                .enumerate()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
            let labels: Vec<(String, String)> = ids
                .iter()
                .map(|&(k, v)| (KEYS[k].to_owned(), VALUES[v].0.to_owned()))
                .collect();
            let role = Role::Sample {
                family: f,
                dropped: dropped(f, &ids),
            };
            let ts = if !series.timestamp {
                String::new()
            } else if om {
                " 1700000000.5".to_owned()
            } else {
                " 1700000000000".to_owned()
            };
            let value = format!("{}{ts}", s + 1);
            let exemplar = if om && series.exemplar {
                " # {trace_id=\"abc\",note=\"a # b\"} 0.5 1700000000.1"
            } else {
                ""
            };
            let with = |extra: (&str, &str)| {
                let mut l = labels.clone();
                let pair = (extra.0.to_owned(), extra.1.to_owned());
                if series.le_first {
                    l.insert(0, pair);
                } else {
                    l.push(pair);
                }
                l
            };
            let mut push = |line: String| lines.push((line, role));
            match kind {
                Kind::Gauge | Kind::Untyped => push(sample_line(name, &labels, &value)),
                Kind::Counter => {
                    let total = if om {
                        format!("{base}_total")
                    } else {
                        name.clone()
                    };
                    push(sample_line(&total, &labels, &format!("{value}{exemplar}")));
                    if om && series.created {
                        push(sample_line(&format!("{base}_created"), &labels, "1.6e9"));
                    }
                }
                Kind::Histogram | Kind::GaugeHistogram => {
                    for le in BUCKETS {
                        push(sample_line(
                            &format!("{base}_bucket"),
                            &with(("le", le)),
                            &format!("{value}{exemplar}"),
                        ));
                    }
                    let (sum, count) = if kind == Kind::Histogram {
                        ("_sum", "_count")
                    } else {
                        ("_gsum", "_gcount")
                    };
                    push(sample_line(&format!("{base}{sum}"), &labels, "0.5"));
                    push(sample_line(&format!("{base}{count}"), &labels, &value));
                    if om && series.created && kind == Kind::Histogram {
                        push(sample_line(&format!("{base}_created"), &labels, "1.6e9"));
                    }
                }
                Kind::Summary => {
                    for q in QUANTILES {
                        push(sample_line(base, &with(("quantile", q)), &value));
                    }
                    push(sample_line(&format!("{base}_sum"), &labels, "0.5"));
                    push(sample_line(&format!("{base}_count"), &labels, &value));
                    if om && series.created {
                        push(sample_line(&format!("{base}_created"), &labels, "1.6e9"));
                    }
                }
                Kind::Info => push(sample_line(&format!("{base}_info"), &labels, "1")),
                Kind::StateSet => {
                    for state in STATES {
                        push(sample_line(base, &with(("state", state)), "1"));
                    }
                }
            }
        }
    }
    Rendered { lines, families }
}

/// The scrape body and the output the model expects.
fn input_and_expected(case: &Case, rendered: &Rendered) -> (String, String) {
    let eol = if case.crlf { "\r\n" } else { "\n" };
    let kept_family: Vec<bool> = (0..rendered.families.len())
        .map(|f| {
            rendered
                .lines
                .iter()
                .any(|(_, r)| matches!(r, Role::Sample { family, dropped: false } if *family == f))
        })
        .collect();
    let mut input = String::new();
    let mut expected = String::new();
    for (line, role) in &rendered.lines {
        input.push_str(line);
        input.push_str(eol);
        let keep = match role {
            Role::Comment => true,
            Role::Metadata { family } => kept_family[*family],
            Role::Sample { dropped, .. } => !dropped,
        };
        if keep {
            expected.push_str(line);
            expected.push_str(eol);
        }
    }
    if case.om {
        if case.eof_line {
            input.push_str("# EOF\n");
        }
        expected.push_str("# EOF\n");
    }
    if !case.final_lf && input.ends_with('\n') {
        // The final line arrives without LF (a CRLF line keeps its CR) and
        // leaves with one.
        input.pop();
    }
    (input, expected)
}

fn policies_json(case: &Case, rendered: &Rendered) -> String {
    let names = policy_names(&rendered.families);
    let policies: Vec<Value> = case
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let matchers: Vec<Value> = p
                .matchers
                .iter()
                .map(|m| match m {
                    MatcherSpec::Name(n) => {
                        json!({"metric_field": "name", "exact": names[*n]})
                    }
                    MatcherSpec::Type(t) => json!({"metric_type": t.word()}),
                    MatcherSpec::Label(k, v) => {
                        json!({"datapoint_attribute": POLICY_KEYS[*k], "exact": VALUES[*v].1})
                    }
                    MatcherSpec::Description(h) => {
                        json!({"metric_field": "description", "exact": decode_help(HELPS[*h], case.om)})
                    }
                })
                .collect();
            json!({
                "id": format!("p{i}"),
                "name": format!("policy {i}"),
                "metric": {"match": matchers, "keep": p.keep},
            })
        })
        .collect();
    json!({ "policies": policies }).to_string()
}

fn compile(json: &str) -> Arc<Engine> {
    let loaded = parse_policies(json, PolicyFormat::Json).expect("policies parse");
    assert!(loaded.rejected.is_empty(), "{:?}", loaded.rejected);
    let engine = Engine::compile(&loaded.policies, &StatsRegistry::new());
    for info in engine.policies() {
        assert!(info.errors.is_empty(), "{:?}", info.error_messages());
    }
    Arc::new(engine)
}

fn run(engine: &Arc<Engine>, om: bool, input: &[u8], sizes: &[usize]) -> Vec<u8> {
    let format = if om {
        Format::OpenMetrics
    } else {
        Format::Text
    };
    let mut filter = ScrapeFilter::new(
        engine.clone(),
        Arc::new(Resource::default()),
        FilterOptions::new(format),
    );
    let mut segments = Vec::new();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= input.len() {
            break;
        }
        let end = at.saturating_add(*size).min(input.len());
        filter.push(&Bytes::copy_from_slice(&input[at..end]), &mut segments);
        at = end;
    }
    filter.finish(&mut segments);
    assert_eq!(filter.counters().truncated, None);
    assert_eq!(filter.counters().lines_unparsed, 0);
    assert_eq!(filter.counters().lines_oversized, 0);
    segments.concat()
}

/// Every line is a sample, metadata or (text only) a comment; OpenMetrics
/// ends with exactly one `# EOF`.
fn assert_valid_exposition(out: &[u8], om: bool) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(out);
    prop_assert!(
        out.is_empty() || out.ends_with(b"\n"),
        "no final LF: {text:?}"
    );
    let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
    let lines = &lines[..lines.len() - 1];
    let mut eofs = 0;
    for (i, line) in lines.iter().enumerate() {
        match parse_line(line) {
            Line::Sample(_) | Line::Metadata(_) => {}
            Line::Comment => prop_assert!(!om, "comment in OpenMetrics: {text:?}"),
            Line::Eof if om => {
                eofs += 1;
                prop_assert_eq!(i, lines.len() - 1, "line after # EOF: {:?}", text);
            }
            Line::Eof => {}
            other => {
                return Err(TestCaseError::fail(format!(
                    "output line {:?} is {other:?}",
                    String::from_utf8_lossy(line)
                )));
            }
        }
    }
    if om {
        prop_assert_eq!(eofs, 1, "OpenMetrics output needs one # EOF: {:?}", text);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn filter_removes_exactly_the_dropped_series(case in case()) {
        let rendered = render(&case);
        let (input, expected) = input_and_expected(&case, &rendered);
        // The generator itself writes valid expositions.
        assert_valid_exposition(
            format!("{input}{}", if input.ends_with('\n') || input.is_empty() { "" } else { "\n" })
                .as_bytes(),
            case.om && case.eof_line,
        )?;
        let engine = compile(&policies_json(&case, &rendered));

        let whole = run(&engine, case.om, input.as_bytes(), &[usize::MAX]);
        prop_assert_eq!(
            String::from_utf8_lossy(&whole),
            expected.as_str(),
            "one chunk; input:\n{}",
            input
        );
        let chunked = run(&engine, case.om, input.as_bytes(), &case.chunks);
        prop_assert_eq!(
            String::from_utf8_lossy(&chunked),
            expected.as_str(),
            "chunks {:?}; input:\n{}",
            &case.chunks,
            input
        );
        assert_valid_exposition(&chunked, case.om)?;
        let bytewise = run(&engine, case.om, input.as_bytes(), &[1]);
        prop_assert_eq!(
            String::from_utf8_lossy(&bytewise),
            expected.as_str(),
            "1-byte chunks; input:\n{}",
            input
        );
    }
}

//! Filter-level tests of `docs/spec/prometheus-edge.md` §1–4, 7, 8, 10 and 12.
//!
//! Every scrape is run as one chunk and again split at every byte offset
//! and in 1, 2, 3 and 7 byte chunks: the output (and the scrape counters)
//! must not depend on where the network happened to cut the body.

use std::sync::Arc;

use bytes::Bytes;
use tero_sdk::Engine;
use tero_sdk::engine::{StatsDelta, StatsRegistry};
use tero_sdk::policy::{Format as PolicyFormat, parse_policies};

use super::*;
use crate::exposition::{Format, Line, parse_line};

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

struct Policies {
    engine: Arc<Engine>,
    registry: StatsRegistry,
}

impl Policies {
    fn stats(&self, id: &str) -> StatsDelta {
        self.registry.runtime(id).stats.peek()
    }
}

/// Compiles a YAML policy file; every policy must be valid.
fn compile(yaml: &str) -> Policies {
    let loaded = parse_policies(yaml, PolicyFormat::Yaml).expect("policy YAML parses");
    assert!(
        loaded.rejected.is_empty(),
        "rejected policies: {:?}",
        loaded.rejected
    );
    let registry = StatsRegistry::new();
    let engine = Engine::compile(&loaded.policies, &registry);
    for info in engine.policies() {
        assert!(
            info.errors.is_empty(),
            "policy {} invalid: {:?}",
            info.id,
            info.error_messages()
        );
    }
    assert!(
        engine.metric_policy_count() > 0,
        "no metric policy in {yaml}"
    );
    Policies {
        engine: Arc::new(engine),
        registry,
    }
}

/// One metric policy in the authoring YAML shape; `matchers` are flow
/// mappings such as `{metric_field: name, exact: foo}`.
fn policy(id: &str, keep: bool, matchers: &[&str]) -> String {
    let mut s = format!("  - id: {id}\n    name: {id}\n    metric:\n      match:\n");
    for m in matchers {
        s.push_str(&format!("        - {m}\n"));
    }
    s.push_str(&format!("      keep: {keep}\n"));
    s
}

fn drop_policy(id: &str, matchers: &[&str]) -> String {
    policy(id, false, matchers)
}

fn policies(items: &[String]) -> Policies {
    compile(&format!("policies:\n{}", items.concat()))
}

/// Shorthand: one drop policy.
fn dropping(matchers: &[&str]) -> Policies {
    policies(&[drop_policy("p", matchers)])
}

fn text() -> FilterOptions {
    FilterOptions::new(Format::Text)
}

fn om() -> FilterOptions {
    FilterOptions::new(Format::OpenMetrics)
}

#[derive(Debug)]
struct Run {
    out: Vec<u8>,
    segments: Vec<Bytes>,
    counters: ScrapeCounters,
}

impl Run {
    fn text(&self) -> String {
        String::from_utf8(self.out.clone()).expect("output is UTF-8")
    }
}

/// Feeds `chunks` (each a fresh `Bytes`) and finishes the scrape.
fn run_chunks(engine: &Arc<Engine>, opts: FilterOptions, chunks: &[&[u8]]) -> Run {
    run_owned(
        engine,
        opts,
        chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect(),
    )
}

fn run_owned(engine: &Arc<Engine>, opts: FilterOptions, chunks: Vec<Bytes>) -> Run {
    let mut filter = ScrapeFilter::new(engine.clone(), Arc::new(Resource::default()), opts);
    let mut segments = Vec::new();
    for chunk in &chunks {
        filter.push(chunk, &mut segments);
    }
    filter.finish(&mut segments);
    let out = segments.concat();
    assert_eq!(
        filter.counters().bytes_out,
        out.len() as u64,
        "bytes_out must count what was written"
    );
    Run {
        out,
        segments,
        counters: *filter.counters(),
    }
}

/// The chunkings every scrape is checked under.
fn chunkings(len: usize, every_offset: bool) -> Vec<(String, Vec<usize>)> {
    let mut all = Vec::new();
    if every_offset {
        for k in 1..len {
            all.push((format!("split at byte {k}"), vec![k]));
        }
    }
    for size in [1usize, 2, 3, 7] {
        let cuts = (1..len).filter(|i| i % size == 0).collect();
        all.push((format!("{size}-byte chunks"), cuts));
    }
    all
}

fn split_at<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::with_capacity(cuts.len() + 1);
    let mut from = 0;
    for &cut in cuts {
        chunks.push(&input[from..cut]);
        from = cut;
    }
    chunks.push(&input[from..]);
    chunks
}

fn assert_same(reference: &Run, other: &Run, what: &str) {
    assert_eq!(
        String::from_utf8_lossy(&other.out),
        String::from_utf8_lossy(&reference.out),
        "output differs for {what}"
    );
    assert_eq!(
        other.counters, reference.counters,
        "counters differ for {what}"
    );
}

/// Filters `input` as one chunk and under every chunking; all must agree.
fn filter_with(p: &Policies, opts: FilterOptions, input: &[u8]) -> Run {
    let whole = run_chunks(&p.engine, opts, &[input]);
    for (what, cuts) in chunkings(input.len(), input.len() <= 8 * 1024) {
        let run = run_chunks(&p.engine, opts, &split_at(input, &cuts));
        assert_same(&whole, &run, &what);
    }
    whole
}

fn filter(p: &Policies, opts: FilterOptions, input: &str) -> Run {
    filter_with(p, opts, input.as_bytes())
}

/// Asserts output and returns the run for further checks.
#[track_caller]
fn expect(p: &Policies, opts: FilterOptions, input: &str, expected: &str) -> Run {
    let run = filter(p, opts, input);
    assert_eq!(run.text(), expected, "input:\n{input}");
    run
}

/// Stats of one scrape under a fresh registry, checked equal under the
/// fixed-size chunkings.
fn stats_once(
    yaml_items: &[String],
    opts: FilterOptions,
    input: &str,
    ids: &[&str],
) -> (Run, Vec<StatsDelta>) {
    let mut reference = None;
    for size in [0usize, 1, 2, 3, 7] {
        let p = policies(yaml_items);
        let chunks: Vec<&[u8]> = if size == 0 {
            vec![input.as_bytes()]
        } else {
            input.as_bytes().chunks(size).collect()
        };
        let run = run_chunks(&p.engine, opts, &chunks);
        let stats: Vec<StatsDelta> = ids.iter().map(|id| p.stats(id)).collect();
        match &reference {
            None => reference = Some((run, stats)),
            Some((r, s)) => {
                assert_same(r, &run, &format!("{size}-byte chunks"));
                assert_eq!(&stats, s, "stats differ for {size}-byte chunks");
            }
        }
    }
    reference.unwrap()
}

fn assert_lines_parse(out: &[u8]) {
    for line in out.split_inclusive(|&b| b == b'\n') {
        assert!(line.ends_with(b"\n"), "unterminated line {line:?}");
        let content = &line[..line.len() - 1];
        assert!(
            !matches!(parse_line(content), Line::Invalid),
            "invalid output line {:?}",
            String::from_utf8_lossy(content)
        );
    }
}

// ---------------------------------------------------------------------------
// §1 Mapping lines to policy fields
// ---------------------------------------------------------------------------

#[test]
fn name_is_the_family_name_from_type_help_or_the_sample() {
    let p = dropping(&["{metric_field: name, exact: foo}"]);
    // TYPE names the family; the histogram's samples are members.
    expect(
        &p,
        text(),
        "# HELP foo Foo.\n# TYPE foo histogram\nfoo_bucket{le=\"+Inf\"} 1\nfoo_sum 1\nfoo_count 1\nbar 1\n",
        "bar 1\n",
    );
    // HELP alone names the family.
    expect(&p, text(), "# HELP foo Foo.\nfoo 1\nbar 2\n", "bar 2\n");
    // No metadata: the sample name.
    expect(&p, text(), "foo{a=\"1\"} 1\nfoo_total 2\n", "foo_total 2\n");
    // A sample name that is not the family name itself is not matched by
    // an exact policy on the sample name.
    let p = dropping(&["{metric_field: name, exact: foo_bucket}"]);
    let input = "# TYPE foo histogram\nfoo_bucket{le=\"+Inf\"} 1\nfoo_sum 1\nfoo_count 1\n";
    expect(&p, text(), input, input);
}

#[test]
fn metric_type_gauge_matches_only_gauge_families() {
    let input = "\
# TYPE c counter
c 1
# TYPE g gauge
g 2
# TYPE u untyped
u 3
no_type 4
# TYPE h histogram
h_bucket{le=\"+Inf\"} 1
h_sum 1
h_count 1
# TYPE s summary
s{quantile=\"0.5\"} 1
s_sum 1
s_count 1
";
    let p = dropping(&["{metric_type: gauge}"]);
    expect(
        &p,
        text(),
        input,
        "\
# TYPE c counter
c 1
# TYPE h histogram
h_bucket{le=\"+Inf\"} 1
h_sum 1
h_count 1
# TYPE s summary
s{quantile=\"0.5\"} 1
s_sum 1
s_count 1
",
    );
    let p = dropping(&["{metric_type: sum}"]);
    expect(
        &p,
        text(),
        input,
        &input.replace("# TYPE c counter\nc 1\n", ""),
    );
    let p = dropping(&["{metric_type: histogram}"]);
    expect(
        &p,
        text(),
        input,
        &input.replace(
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "",
        ),
    );
    let p = dropping(&["{metric_type: summary}"]);
    expect(
        &p,
        text(),
        input,
        &input.replace(
            "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 1\ns_count 1\n",
            "",
        ),
    );
    // Not an existence test: a type no family has drops nothing.
    let p = dropping(&["{metric_type: exponential_histogram}"]);
    expect(&p, text(), input, input);
}

#[test]
fn openmetrics_types_and_temporality_follow_the_type_table() {
    let input = "\
# TYPE c counter
c_total 1
# TYPE i info
i_info{v=\"1\"} 1
# TYPE st stateset
st{st=\"a\"} 1
# TYPE gh gaugehistogram
gh_bucket{le=\"+Inf\"} 1
gh_gcount 1
gh_gsum 1
# TYPE h histogram
h_bucket{le=\"+Inf\"} 1
h_count 1
# TYPE g gauge
g 1
# TYPE s summary
s_count 1
# TYPE k unknown
k 1
# EOF
";
    let without = |families: &[&str]| {
        let mut out = String::new();
        let mut skip = false;
        for line in input.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                skip = families.contains(&name);
            }
            if line == "# EOF" {
                skip = false;
            }
            if !skip {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    };
    let p = dropping(&["{metric_type: sum}"]);
    expect(&p, om(), input, &without(&["c", "i", "st"]));
    let p = dropping(&["{metric_type: histogram}"]);
    expect(&p, om(), input, &without(&["gh", "h"]));
    let p = dropping(&["{metric_type: gauge}"]);
    expect(&p, om(), input, &without(&["g", "k"]));
    let p = dropping(&["{metric_type: summary}"]);
    expect(&p, om(), input, &without(&["s"]));
    let p = dropping(&["{aggregation_temporality: cumulative}"]);
    expect(&p, om(), input, &without(&["c", "i", "st", "h"]));
    let p = dropping(&["{aggregation_temporality: cumulative, exists: false}"]);
    expect(&p, om(), input, &without(&["gh", "g", "s", "k"]));
}

#[test]
fn description_matches_the_decoded_help_of_this_family() {
    // Text: `\\` and `\n` decode, `\"` stays as written.
    let p = dropping(&[r#"{metric_field: description, exact: "Line one\nC:\\tmp \\\"q\\\""}"#]);
    expect(
        &p,
        text(),
        "# HELP a Line one\\nC:\\\\tmp \\\"q\\\"\na 1\n# HELP b Line one\\nC:\\\\tmp \"q\"\nb 2\n",
        "# HELP b Line one\\nC:\\\\tmp \"q\"\nb 2\n",
    );
    // OpenMetrics also decodes `\"`.
    let p = dropping(&[r#"{metric_field: description, exact: "say \"hi\" \\ there"}"#]);
    expect(
        &p,
        om(),
        "# HELP a say \\\"hi\\\" \\\\ there\n# TYPE a gauge\na 1\n# TYPE b gauge\nb 2\n# EOF\n",
        "# TYPE b gauge\nb 2\n# EOF\n",
    );
    // The HELP of this family only: b has none and is not matched.
    let p = dropping(&["{metric_field: description, exists: true}"]);
    expect(
        &p,
        text(),
        "# HELP a A.\n# TYPE a gauge\na 1\n# TYPE b gauge\nb 2\nc 3\n",
        "# TYPE b gauge\nb 2\nc 3\n",
    );
}

#[test]
fn empty_help_is_absent() {
    let p = dropping(&["{metric_field: description, exists: true}"]);
    let input = "# HELP a \na 1\n# HELP b\nb 2\n";
    expect(&p, text(), input, input);
}

#[test]
fn unit_comes_from_the_openmetrics_unit_line() {
    let p = dropping(&["{metric_field: unit, exact: seconds}"]);
    expect(
        &p,
        om(),
        "# TYPE a_seconds gauge\n# UNIT a_seconds seconds\na_seconds 1\n# TYPE b_bytes gauge\n# UNIT b_bytes bytes\nb_bytes 2\n# TYPE c gauge\nc 3\n# EOF\n",
        "# TYPE b_bytes gauge\n# UNIT b_bytes bytes\nb_bytes 2\n# TYPE c gauge\nc 3\n# EOF\n",
    );
    // Text formats have no UNIT: the field is absent.
    let p = dropping(&["{metric_field: unit, exists: true}"]);
    let input = "# TYPE c gauge\nc 3\n";
    expect(&p, text(), input, input);
}

#[test]
fn label_values_are_escape_decoded_before_matching() {
    let p = policies(&[
        drop_policy("path", &[r"{datapoint_attribute: path, exact: 'C:\tmp'}"]),
        drop_policy(
            "quote",
            &[r#"{datapoint_attribute: msg, exact: 'say "hi"'}"#],
        ),
        drop_policy(
            "newline",
            &[r#"{datapoint_attribute: text, exact: "l1\nl2"}"#],
        ),
    ]);
    let input = r#"m{path="C:\\tmp"} 1
m{path="C:/tmp"} 2
m{msg="say \"hi\""} 3
m{msg="say hi"} 4
m{text="l1\nl2"} 5
m{text="l1 l2"} 6
"#;
    // Kept lines leave exactly as written (escapes intact).
    expect(
        &p,
        text(),
        input,
        "m{path=\"C:/tmp\"} 2\nm{msg=\"say hi\"} 4\nm{text=\"l1 l2\"} 6\n",
    );
}

#[test]
fn le_and_quantile_are_not_attributes() {
    let p = policies(&[
        drop_policy("le", &["{datapoint_attribute: le, exact: '0.5'}"]),
        drop_policy("le-exists", &["{datapoint_attribute: le, exists: true}"]),
        drop_policy(
            "quantile",
            &["{datapoint_attribute: quantile, exists: true}"],
        ),
    ]);
    let input = "\
# TYPE h histogram
h_bucket{path=\"/a\",le=\"0.5\"} 1
h_bucket{path=\"/a\",le=\"+Inf\"} 2
h_sum{path=\"/a\"} 3
h_count{path=\"/a\"} 2
# TYPE s summary
s{path=\"/a\",quantile=\"0.5\"} 1
s{path=\"/a\",quantile=\"0.9\"} 2
s_sum{path=\"/a\"} 3
s_count{path=\"/a\"} 2
";
    expect(&p, text(), input, input);
    let om_input = format!("{input}# EOF\n");
    expect(&p, om(), &om_input, &om_input);
}

#[test]
fn no_pseudo_attributes_shadow_labels() {
    let p = policies(&[
        drop_policy("v", &["{datapoint_attribute: value, exists: true}"]),
        drop_policy("l", &["{datapoint_attribute: labels, exists: true}"]),
        drop_policy("t", &["{datapoint_attribute: timestamp, exists: true}"]),
        drop_policy("n", &["{datapoint_attribute: __name__, exists: true}"]),
    ]);
    let input = "a{x=\"1\"} 1 1700000000000\nb 2\n";
    expect(&p, text(), input, input);
    // A real label of that name is matched.
    expect(&p, text(), "c{value=\"x\"} 1\nd 1\n", "d 1\n");
}

#[test]
fn resource_attributes_come_from_the_edge() {
    let p = dropping(&[
        "{resource_attribute: service.name, exact: checkout}",
        "{metric_field: name, exact: a}",
    ]);
    let input = "a 1\nb 2\n";
    let run_with = |resource: Resource| {
        let mut f = ScrapeFilter::new(p.engine.clone(), Arc::new(resource), text());
        let mut segs = Vec::new();
        f.push(&Bytes::from_static(input.as_bytes()), &mut segs);
        f.finish(&mut segs);
        String::from_utf8(segs.concat()).unwrap()
    };
    assert_eq!(
        run_with(Resource::new([(
            "service.name".to_owned(),
            "checkout".to_owned()
        )])),
        "b 2\n"
    );
    assert_eq!(run_with(Resource::default()), input);
    // Another value of the attribute does not match.
    assert_eq!(
        run_with(Resource::new([("service.name".to_owned(), "x".to_owned())])),
        input
    );
}

// ---------------------------------------------------------------------------
// §2 Family tracking and metadata
// ---------------------------------------------------------------------------

#[test]
fn metadata_leaves_just_before_the_first_kept_line() {
    let p = dropping(&["{datapoint_attribute: x, exact: drop}"]);
    expect(
        &p,
        text(),
        "# HELP a A.\n# TYPE a gauge\na{x=\"drop\"} 1\na{x=\"drop\"} 2\na{x=\"keep\"} 3\na{x=\"drop\"} 4\na{x=\"keep\"} 5\n",
        "# HELP a A.\n# TYPE a gauge\na{x=\"keep\"} 3\na{x=\"keep\"} 5\n",
    );
    // Original order, whatever it is, each line once.
    expect(
        &p,
        om(),
        "# TYPE a gauge\n# UNIT a seconds\n# HELP a A.\na{x=\"drop\"} 1\na{x=\"keep\"} 2\n# EOF\n",
        "# TYPE a gauge\n# UNIT a seconds\n# HELP a A.\na{x=\"keep\"} 2\n# EOF\n",
    );
}

#[test]
fn metadata_after_emission_is_written_in_place() {
    let p = dropping(&["{datapoint_attribute: x, exact: drop}"]);
    let input = "# TYPE a gauge\na 1\n# HELP a Late help.\na{x=\"drop\"} 2\na 3\n";
    expect(
        &p,
        text(),
        input,
        "# TYPE a gauge\na 1\n# HELP a Late help.\na 3\n",
    );
}

#[test]
fn fully_dropped_family_emits_no_metadata_including_unit() {
    let p = dropping(&["{metric_field: name, exact: a_seconds}"]);
    expect(
        &p,
        om(),
        "# HELP a_seconds A.\n# TYPE a_seconds gauge\n# UNIT a_seconds seconds\na_seconds{x=\"1\"} 1\na_seconds{x=\"2\"} 2\n# HELP b B.\n# TYPE b gauge\nb 1\n# EOF\n",
        "# HELP b B.\n# TYPE b gauge\nb 1\n# EOF\n",
    );
    expect(
        &p,
        text(),
        "# HELP a_seconds A.\n# TYPE a_seconds gauge\na_seconds 1\n# HELP b B.\nb 1\n",
        "# HELP b B.\nb 1\n",
    );
    // A family with metadata and no sample at all emits nothing either.
    expect(
        &p,
        text(),
        "# HELP a_seconds A.\n# TYPE a_seconds gauge\n",
        "",
    );
}

#[test]
fn next_untyped_family_inherits_nothing() {
    let input = "\
# HELP http_requests Total requests.
# TYPE http_requests counter
http_requests{code=\"200\"} 5
http_requests{code=\"500\"} 1
http_requests_in_flight 3
";
    let expected = "http_requests_in_flight 3\n";
    // Family A dropped by name: in_flight is not a member.
    let p = dropping(&["{metric_field: name, exact: http_requests}"]);
    expect(&p, text(), input, expected);
    // Dropped by type: in_flight is untyped (GAUGE), not A's counter.
    let p = dropping(&["{metric_type: sum}"]);
    expect(&p, text(), input, expected);
    // Dropped by HELP: in_flight has no description.
    let p = dropping(&["{metric_field: description, exact: Total requests.}"]);
    expect(&p, text(), input, expected);
    // And the other way round: a policy on in_flight's own facts.
    let p = dropping(&["{metric_field: name, exact: http_requests_in_flight}"]);
    expect(
        &p,
        text(),
        input,
        &input.replace("http_requests_in_flight 3\n", ""),
    );
    let p = dropping(&["{metric_type: gauge}"]);
    expect(
        &p,
        text(),
        input,
        &input.replace("http_requests_in_flight 3\n", ""),
    );
}

#[test]
fn a_metadata_line_of_another_family_starts_a_new_family() {
    // a's HELP is pending when b's TYPE arrives: a's HELP is discarded.
    let p = dropping(&["{metric_field: name, exact: a}"]);
    expect(
        &p,
        text(),
        "# HELP a A.\n# TYPE b gauge\nb 1\n",
        "# TYPE b gauge\nb 1\n",
    );
    // b does not get a's HELP.
    let p = dropping(&["{metric_field: description, exact: A.}"]);
    expect(
        &p,
        text(),
        "# HELP a A.\n# TYPE b gauge\nb 1\n",
        "# TYPE b gauge\nb 1\n",
    );
}

#[test]
fn comments_pass_through_verbatim() {
    let p = dropping(&["{metric_field: name, exact: a}"]);
    expect(
        &p,
        text(),
        "# a plain comment\n#no space\na 1\n# HELPx not metadata\n#\nb 2\n",
        "# a plain comment\n#no space\n# HELPx not metadata\n#\nb 2\n",
    );
}

#[test]
fn oversized_metadata_is_emitted_whole_and_unfiltered() {
    let p = dropping(&["{metric_field: name, exact: a}"]);
    let help = "x".repeat(100);
    let input = format!("# HELP a {help}\n# TYPE a gauge\na 1\nb 2\n");
    let opts = FilterOptions {
        max_metadata_bytes: 64,
        ..text()
    };
    let run = filter(&p, opts, &input);
    assert_eq!(
        run.text(),
        format!("# HELP a {help}\n# TYPE a gauge\nb 2\n"),
        "pending metadata over the buffer leaves whole, never truncated"
    );
    assert_lines_parse(&run.out);
}

// ---------------------------------------------------------------------------
// §3 Histograms and summaries as one unit
// ---------------------------------------------------------------------------

const HISTOGRAM: &str = "\
# HELP http_request_duration_seconds Latency.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{method=\"GET\",le=\"0.1\"} 1
http_request_duration_seconds_bucket{method=\"GET\",le=\"0.5\"} 2
http_request_duration_seconds_bucket{method=\"GET\",le=\"+Inf\"} 3
http_request_duration_seconds_sum{method=\"GET\"} 0.7
http_request_duration_seconds_count{method=\"GET\"} 3
http_request_duration_seconds_bucket{method=\"POST\",le=\"0.1\"} 0
http_request_duration_seconds_bucket{method=\"POST\",le=\"0.5\"} 1
http_request_duration_seconds_bucket{method=\"POST\",le=\"+Inf\"} 1
http_request_duration_seconds_sum{method=\"POST\"} 0.3
http_request_duration_seconds_count{method=\"POST\"} 1
up 1
";

fn lines_with(input: &str, needle: &str, keep: bool) -> String {
    input
        .split_inclusive('\n')
        .filter(|l| l.contains(needle) == keep)
        .collect()
}

#[test]
fn histogram_lines_are_dropped_together_by_family_name() {
    let p = dropping(&["{metric_field: name, exact: http_request_duration_seconds}"]);
    let run = expect(&p, text(), HISTOGRAM, "up 1\n");
    assert_eq!(run.counters.lines_dropped, 10);
    // OpenMetrics with _created.
    let om_input = HISTOGRAM
        .replace(
            "http_request_duration_seconds_count{method=\"GET\"} 3\n",
            "http_request_duration_seconds_count{method=\"GET\"} 3\nhttp_request_duration_seconds_created{method=\"GET\"} 1.6e9\n",
        )
        + "# EOF\n";
    expect(&p, om(), &om_input, "up 1\n# EOF\n");
    // A name policy on a member sample name matches nothing.
    let p = dropping(&["{metric_field: name, exact: http_request_duration_seconds_bucket}"]);
    expect(&p, text(), HISTOGRAM, HISTOGRAM);
}

#[test]
fn histogram_series_dropped_by_label_keep_all_their_lines_together() {
    let p = dropping(&["{datapoint_attribute: method, exact: GET}"]);
    expect(
        &p,
        text(),
        HISTOGRAM,
        &lines_with(HISTOGRAM, "\"GET\"", false),
    );
    let p = dropping(&["{datapoint_attribute: method, exact: POST}"]);
    expect(
        &p,
        text(),
        HISTOGRAM,
        &lines_with(HISTOGRAM, "\"POST\"", false),
    );
}

#[test]
fn summary_lines_are_one_unit() {
    let input = "\
# TYPE rpc summary
rpc{svc=\"a\",quantile=\"0.5\"} 1
rpc{svc=\"a\",quantile=\"0.9\"} 2
rpc_sum{svc=\"a\"} 3
rpc_count{svc=\"a\"} 4
rpc_created{svc=\"a\"} 5
rpc{svc=\"b\",quantile=\"0.5\"} 1
rpc{svc=\"b\",quantile=\"0.9\"} 2
rpc_sum{svc=\"b\"} 3
rpc_count{svc=\"b\"} 4
rpc_created{svc=\"b\"} 5
# EOF
";
    let p = dropping(&["{datapoint_attribute: svc, exact: a}"]);
    let run = expect(&p, om(), input, &lines_with(input, "\"a\"", false));
    assert_eq!(run.counters.lines_dropped, 5);
    let p = dropping(&["{metric_field: name, exact: rpc}"]);
    expect(&p, om(), input, "# EOF\n");
}

#[test]

fn hits_and_drops_are_counted_once_per_series() {
    // Typical client output: `le` last.
    let items = [
        drop_policy("drop-get", &["{datapoint_attribute: method, exact: GET}"]),
        policy(
            "keep-hist",
            true,
            &["{metric_field: name, exact: http_request_duration_seconds}"],
        ),
    ];
    let (run, stats) = stats_once(&items, text(), HISTOGRAM, &["drop-get", "keep-hist"]);
    assert_eq!(run.text(), lines_with(HISTOGRAM, "\"GET\"", false));
    assert_eq!(run.counters.series_dropped, 1, "GET histogram");
    assert_eq!(run.counters.series_kept, 2, "POST histogram and up");
    let dropped_bytes = lines_with(HISTOGRAM, "\"GET\"", true).len() as u64;
    let (drop, keep) = (stats[0], stats[1]);
    assert_eq!(
        (drop.match_hits, drop.match_misses),
        (1, 0),
        "drop-get: one series dropped"
    );
    // keep-hist matched GET (lost to drop-get: miss) and POST (kept: hit).
    assert_eq!((keep.match_hits, keep.match_misses), (1, 1), "keep-hist");
    assert_eq!(drop.records_dropped, 1);
    assert_eq!(drop.bytes_dropped, dropped_bytes);
    assert_eq!(keep.records_dropped, 0);
}

#[test]
fn hits_are_counted_once_per_series_with_le_first() {
    let input = HISTOGRAM.replace("{method=\"GET\",le=\"0.1\"}", "{le=\"0.1\",method=\"GET\"}");
    let input = input.replace("{method=\"GET\",le=\"0.5\"}", "{le=\"0.5\",method=\"GET\"}");
    let input = input.replace(
        "{method=\"GET\",le=\"+Inf\"}",
        "{le=\"+Inf\",method=\"GET\"}",
    );
    let items = [drop_policy(
        "drop-get",
        &["{datapoint_attribute: method, exact: GET}"],
    )];
    let (run, stats) = stats_once(&items, text(), &input, &["drop-get"]);
    assert_eq!(run.text(), lines_with(&input, "\"GET\"", false));
    assert_eq!(stats[0].match_hits, 1);
    assert_eq!(stats[0].records_dropped, 1);
    assert_eq!(
        stats[0].bytes_dropped,
        lines_with(&input, "\"GET\"", true).len() as u64
    );
}

#[test]

fn summary_hits_are_counted_once_per_series() {
    let input = "\
# TYPE rpc summary
rpc{svc=\"a\",quantile=\"0.5\"} 1
rpc{svc=\"a\",quantile=\"0.9\"} 2
rpc_sum{svc=\"a\"} 3
rpc_count{svc=\"a\"} 4
";
    let items = [drop_policy("p", &["{metric_field: name, exact: rpc}"])];
    let (run, stats) = stats_once(&items, text(), input, &["p"]);
    assert_eq!(run.text(), "");
    assert_eq!(run.counters.series_dropped, 1);
    assert_eq!(stats[0].match_hits, 1);
    assert_eq!(stats[0].records_dropped, 1);
    assert_eq!(stats[0].bytes_dropped, input.len() as u64 - 19);
}

#[test]
fn histogram_lines_that_are_not_contiguous_get_one_decision_counted_once() {
    let input = "\
# TYPE h histogram
h_bucket{le=\"1\",a=\"1\"} 1
h_bucket{le=\"1\",a=\"2\"} 1
h_bucket{le=\"+Inf\",a=\"1\"} 2
h_bucket{le=\"+Inf\",a=\"2\"} 2
h_sum{a=\"1\"} 1
h_sum{a=\"2\"} 1
h_count{a=\"1\"} 2
h_count{a=\"2\"} 2
";
    let items = [drop_policy("p", &["{datapoint_attribute: a, exact: '1'}"])];
    let (run, stats) = stats_once(&items, text(), input, &["p"]);
    assert_eq!(run.text(), lines_with(input, "a=\"1\"", false));
    assert_eq!(run.counters.series_dropped, 1);
    assert_eq!(stats[0].match_hits, 1, "one series, one hit");
    assert_eq!(stats[0].records_dropped, 1);
}

#[test]

fn openmetrics_counter_lines_that_are_not_contiguous_are_counted_once() {
    let input = "\
# TYPE foo counter
foo_total{a=\"1\"} 1
foo_total{a=\"2\"} 2
foo_created{a=\"1\"} 1.6e9
foo_created{a=\"2\"} 1.6e9
# EOF
";
    let items = [drop_policy("p", &["{metric_field: name, exact: foo}"])];
    let (run, stats) = stats_once(&items, om(), input, &["p"]);
    assert_eq!(run.text(), "# EOF\n");
    assert_eq!(run.counters.series_dropped, 2);
    assert_eq!(stats[0].match_hits, 2, "two series, two hits");
    assert_eq!(stats[0].records_dropped, 2);
}

#[test]
fn openmetrics_counter_created_follows_its_series_counted_once() {
    let input = "\
# TYPE foo counter
foo_total{a=\"1\"} 1
foo_created{a=\"1\"} 1.6e9
foo_total{a=\"2\"} 2
foo_created{a=\"2\"} 1.6e9
# EOF
";
    let items = [drop_policy("p", &["{datapoint_attribute: a, exact: '1'}"])];
    let (run, stats) = stats_once(&items, om(), input, &["p"]);
    assert_eq!(run.text(), lines_with(input, "a=\"1\"", false));
    assert_eq!(stats[0].match_hits, 1);
    assert_eq!(stats[0].records_dropped, 1);
    assert_eq!(
        stats[0].bytes_dropped,
        lines_with(input, "a=\"1\"", true).len() as u64
    );
}

#[test]
fn stateset_states_are_separate_series() {
    let input = "\
# TYPE feature stateset
feature{env=\"x\",feature=\"a\"} 1
feature{env=\"x\",feature=\"b\"} 0
# EOF
";
    let items = [drop_policy(
        "p",
        &["{datapoint_attribute: feature, exact: a}"],
    )];
    let (run, stats) = stats_once(&items, om(), input, &["p"]);
    assert_eq!(
        run.text(),
        "# TYPE feature stateset\nfeature{env=\"x\",feature=\"b\"} 0\n# EOF\n"
    );
    assert_eq!(stats[0].match_hits, 1);
    let items = [drop_policy("p", &["{metric_field: name, exact: feature}"])];
    let (run, stats) = stats_once(&items, om(), input, &["p"]);
    assert_eq!(run.text(), "# EOF\n");
    assert_eq!(stats[0].match_hits, 2, "each state is its own point");
}

// ---------------------------------------------------------------------------
// §4 Exposition formats
// ---------------------------------------------------------------------------

#[test]
fn openmetrics_counter_family_name_has_no_total_suffix() {
    let input = "\
# HELP foo Foo.
# TYPE foo counter
foo_total{a=\"1\"} 1 # {trace_id=\"abc\"} 1 1.6e9
foo_created{a=\"1\"} 1.6e9
foo_total{a=\"2\"} 2
foo_created{a=\"2\"} 1.6e9
bar_total 1
# EOF
";
    let p = dropping(&["{metric_field: name, exact: foo}"]);
    expect(&p, om(), input, "bar_total 1\n# EOF\n");
    let p = dropping(&["{metric_field: name, exact: foo_total}"]);
    expect(&p, om(), input, input);
    // _created follows its own series' decision.
    let p = dropping(&["{datapoint_attribute: a, exact: '2'}"]);
    expect(&p, om(), input, &lines_with(input, "a=\"2\"", false));
}

#[test]
fn text_counter_family_is_named_with_total() {
    let input = "# HELP foo_total Foo.\n# TYPE foo_total counter\nfoo_total 1\n";
    let p = dropping(&["{metric_field: name, exact: foo_total}"]);
    expect(&p, text(), input, "");
    let p = dropping(&["{metric_field: name, regex: '^foo(_total)?$'}"]);
    expect(&p, text(), input, "");
    expect(
        &p,
        om(),
        "# TYPE foo counter\nfoo_total 1\n# EOF\n",
        "# EOF\n",
    );
}

#[test]
fn exemplars_stay_with_their_line() {
    let input = "\
# TYPE h histogram
h_bucket{a=\"1\",le=\"0.01\"} 0
h_bucket{a=\"1\",le=\"0.1\"} 6 # {trace_id=\"abc\"} 0.0006 1.66e9
h_bucket{a=\"1\",le=\"+Inf\"} 8 # {trace_id=\"def\",note=\"a # b\"} 2.5
h_sum{a=\"1\"} 3.2
h_count{a=\"1\"} 8
h_bucket{a=\"2\",le=\"0.01\"} 0 # {trace_id=\"x\"} 0.001
h_bucket{a=\"2\",le=\"+Inf\"} 1
h_sum{a=\"2\"} 0.2
h_count{a=\"2\"} 1
# EOF
";
    let p = dropping(&["{datapoint_attribute: a, exact: '2'}"]);
    expect(&p, om(), input, &lines_with(input, "a=\"2\"", false));
    // Exemplar labels are not series labels.
    let p = dropping(&["{datapoint_attribute: trace_id, exists: true}"]);
    expect(&p, om(), input, input);
    // Exemplar on a counter; the exemplar is not a timestamp.
    let p = dropping(&["{datapoint_attribute: x, exact: drop}"]);
    let counter = "# TYPE c counter\nc_total{x=\"keep\"} 1 1700000000 # {trace_id=\"t\"} 1 1700000000\nc_total{x=\"drop\"} 1 # {trace_id=\"u\"} 1\n# EOF\n";
    expect(
        &p,
        om(),
        counter,
        "# TYPE c counter\nc_total{x=\"keep\"} 1 1700000000 # {trace_id=\"t\"} 1 1700000000\n# EOF\n",
    );
}

#[test]
fn quoted_utf8_names_and_tricky_label_values() {
    let p = policies(&[
        drop_policy(
            "quoted",
            &[
                "{metric_field: name, exact: my.metric}",
                r#"{datapoint_attribute: my.label, exact: 'a # b {c} "d", e=f'}"#,
            ],
        ),
        drop_policy(
            "bare",
            &[r#"{datapoint_attribute: v, exact: 'x # {y} "z"'}"#],
        ),
        drop_policy("esc-name", &[r#"{metric_field: name, exact: 'we"ird'}"#]),
    ]);
    let input = r#"# HELP "my.metric" Dotted name.
# TYPE "my.metric" gauge
{"my.metric", "my.label"="a # b {c} \"d\", e=f"} 1
{"my.metric", "my.label"="keep"} 2
{"my.metric"} 3
plain{v="x # {y} \"z\""} 3
plain{v="x # {y} \"z\" "} 4
plain{"quoted.key"="}{", v="keep"} 5
# TYPE "we\"ird" gauge
{"we\"ird"} 1
"#;
    let expected = r#"# HELP "my.metric" Dotted name.
# TYPE "my.metric" gauge
{"my.metric", "my.label"="keep"} 2
{"my.metric"} 3
plain{v="x # {y} \"z\" "} 4
plain{"quoted.key"="}{", v="keep"} 5
"#;
    let run = expect(&p, text(), input, expected);
    assert_eq!(run.counters.lines_unparsed, 0);
    // A quoted-name family is tracked: its metadata goes when all of it goes.
    let p = dropping(&["{metric_field: name, exact: my.metric}"]);
    expect(
        &p,
        text(),
        input,
        "plain{v=\"x # {y} \\\"z\\\"\"} 3\nplain{v=\"x # {y} \\\"z\\\" \"} 4\nplain{\"quoted.key\"=\"}{\", v=\"keep\"} 5\n# TYPE \"we\\\"ird\" gauge\n{\"we\\\"ird\"} 1\n",
    );
}

#[test]
fn openmetrics_all_dropped_is_exactly_eof() {
    let input = "# HELP a A.\n# TYPE a gauge\n# UNIT a seconds\na 1\n# TYPE b counter\nb_total 1\nb_created 1\n# EOF\n";
    let p = policies(&[
        drop_policy("a", &["{metric_field: name, exact: a}"]),
        drop_policy("b", &["{metric_field: name, exact: b}"]),
    ]);
    let run = expect(&p, om(), input, "# EOF\n");
    assert_eq!(run.counters.truncated, None);
    // Also without the input's own terminator.
    expect(&p, om(), input.trim_end_matches("# EOF\n"), "# EOF\n");
    // And for an empty body.
    expect(&p, om(), "", "# EOF\n");
}

#[test]
fn openmetrics_ends_with_exactly_one_eof() {
    let p = dropping(&["{metric_field: name, exact: x}"]);
    // Missing terminator is added.
    expect(&p, om(), "a 1\n", "a 1\n# EOF\n");
    // Nothing after the terminator is emitted.
    expect(&p, om(), "a 1\n# EOF\nb 2\n# EOF\n", "a 1\n# EOF\n");
    // A final `# EOF` without LF.
    expect(&p, om(), "a 1\n# EOF", "a 1\n# EOF\n");
}

#[test]
fn text_eof_line_is_an_ordinary_comment() {
    let p = dropping(&["{metric_field: name, exact: x}"]);
    let input = "a 1\n# EOF\nb 2\n";
    expect(&p, text(), input, input);
}

#[test]
fn final_line_without_lf_gets_lf() {
    let p = dropping(&["{metric_field: name, exact: x}"]);
    expect(&p, text(), "a 1\nb 2", "a 1\nb 2\n");
    expect(&p, text(), "# a comment", "# a comment\n");
    expect(&p, text(), "a 1\r\nb 2\r", "a 1\r\nb 2\r\n");
    let p = dropping(&["{metric_field: name, exact: b}"]);
    expect(&p, text(), "a 1\nb 2", "a 1\n");
    expect(
        &p,
        om(),
        "# TYPE a gauge\na 1",
        "# TYPE a gauge\na 1\n# EOF\n",
    );
}

#[test]
fn crlf_lines_are_parsed_and_emitted_as_received() {
    let input = "# HELP foo Foo help.\r\n# TYPE foo counter\r\nfoo{a=\"1\"} 1\r\nfoo{a=\"2\"} 2\r\n# HELP bar Bar.\r\n# TYPE bar gauge\r\nbar 1\r\n# comment\r\nbaz 1\r\n";
    let p = policies(&[
        // Needs TYPE `counter\r` read as counter.
        drop_policy(
            "sum-2",
            &["{metric_type: sum}", "{datapoint_attribute: a, exact: '2'}"],
        ),
        // Needs the HELP without its CR.
        drop_policy("help", &["{metric_field: description, exact: Bar.}"]),
        // Needs the sample name without CR.
        drop_policy("baz", &["{metric_field: name, exact: baz}"]),
    ]);
    expect(
        &p,
        text(),
        input,
        "# HELP foo Foo help.\r\n# TYPE foo counter\r\nfoo{a=\"1\"} 1\r\n# comment\r\n",
    );
    let om_input =
        "# TYPE foo counter\r\nfoo_total{a=\"1\"} 1\r\nfoo_total{a=\"2\"} 2\r\n# EOF\r\n";
    expect(
        &p,
        om(),
        om_input,
        "# TYPE foo counter\r\nfoo_total{a=\"1\"} 1\r\n# EOF\r\n",
    );
}

#[test]
fn unparseable_lines_are_emitted_verbatim_and_counted() {
    let p = dropping(&["{metric_field: name, exact: foo}"]);
    let input = "good 1\nfoo{a=\"1\" 1\n1foo 2\n# TYPE 9bad counter\nfoo\nfoo{a=1} 2\nfoo{a=\"1\"} 3\nafter 1\n";
    let run = expect(
        &p,
        text(),
        input,
        "good 1\nfoo{a=\"1\" 1\n1foo 2\n# TYPE 9bad counter\nfoo\nfoo{a=1} 2\nafter 1\n",
    );
    assert_eq!(run.counters.lines_unparsed, 5);
    assert_eq!(run.counters.lines_sample, 3);
    assert_eq!(run.counters.series_dropped, 1);
}

#[test]
fn blank_lines_in_text_pass_through() {
    let p = dropping(&["{metric_field: name, exact: x}"]);
    let input = "a 1\n\nb 2\n  \n";
    expect(&p, text(), input, input);
}

// ---------------------------------------------------------------------------
// §7 Long lines
// ---------------------------------------------------------------------------

fn huge_line(name: &str, bytes: usize) -> String {
    let mut line = format!("{name}{{pod=\"p0\",drop=\"yes\"");
    let mut i = 0;
    while line.len() < bytes {
        line.push_str(&format!(
            ",label_{i}=\"value with {{braces}}, # and \\\"quotes\\\" {i}\""
        ));
        i += 1;
    }
    line.push_str("} 1\n");
    line
}

fn long_line_scrape() -> (String, String, String) {
    let big = huge_line("kube_pod_labels", 100 * 1024);
    let input = format!(
        "# HELP kube_pod_labels Labels.\n# TYPE kube_pod_labels gauge\n{big}kube_pod_labels{{pod=\"p1\"}} 1\nother_metric{{drop=\"yes\"}} 2\nother_metric{{drop=\"no\"}} 3\n"
    );
    let expected = format!(
        "# HELP kube_pod_labels Labels.\n# TYPE kube_pod_labels gauge\n{big}other_metric{{drop=\"no\"}} 3\n"
    );
    (input, expected, big)
}

fn long_line_policies() -> Policies {
    policies(&[
        drop_policy("name", &["{metric_field: name, exact: kube_pod_labels}"]),
        drop_policy("label", &["{datapoint_attribute: drop, exact: 'yes'}"]),
    ])
}

#[test]
fn line_of_100_kib_passes_whole_and_unfiltered_in_one_chunk() {
    let (input, expected, _) = long_line_scrape();
    let p = long_line_policies();
    let run = run_chunks(&p.engine, text(), &[input.as_bytes()]);
    assert_eq!(run.text(), expected);
    assert_eq!(run.counters.lines_oversized, 1);
    assert_eq!(run.counters.series_dropped, 2);
    assert_eq!(run.counters.truncated, None);
    assert_lines_parse(&run.out);
}

#[test]
fn line_of_100_kib_spanning_many_chunks_is_the_same() {
    let (input, expected, big) = long_line_scrape();
    let p = long_line_policies();
    let whole = run_chunks(&p.engine, text(), &[input.as_bytes()]);
    assert_eq!(whole.text(), expected);
    let bytes = input.as_bytes();
    for size in [1usize, 2, 3, 7, 100, 4095, 4096, 4097, 8192, 65536] {
        let chunks: Vec<&[u8]> = bytes.chunks(size).collect();
        let run = run_chunks(&p.engine, text(), &chunks);
        assert_same(&whole, &run, &format!("{size}-byte chunks"));
    }
    // Two chunks cut anywhere around the long line's start and end and
    // at scattered offsets inside it.
    let start = input.find("kube_pod_labels{pod=\"p0\"").unwrap();
    let end = start + big.len();
    let mut cuts: Vec<usize> = (start.saturating_sub(70)..start + 300).collect();
    cuts.extend((start..end).step_by(997));
    cuts.extend(end - 300..(end + 120).min(bytes.len()));
    for cut in cuts {
        let run = run_chunks(&p.engine, text(), &[&bytes[..cut], &bytes[cut..]]);
        assert_same(&whole, &run, &format!("split at byte {cut}"));
    }
}

#[test]
fn oversized_lines_with_a_small_line_buffer_at_every_split() {
    let opts = FilterOptions {
        max_line_bytes: 32,
        ..text()
    };
    let p = dropping(&["{datapoint_attribute: drop, exact: 'yes'}"]);
    let big = "big{drop=\"yes\",aaaaaaaaaaaaaaaaaaaaaaaa=\"bbbbbbbbbbbbbbbbbbbbbbb\"} 1\n";
    let input = format!(
        "a{{drop=\"yes\"}} 1\na{{drop=\"no\"}} 2\n{big}{big}c{{drop=\"yes\"}} 3\nc{{drop=\"no\"}} 4\n"
    );
    let run = filter(&p, opts, &input);
    assert_eq!(
        run.text(),
        format!("a{{drop=\"no\"}} 2\n{big}{big}c{{drop=\"no\"}} 4\n")
    );
    assert_eq!(run.counters.lines_oversized, 2);
}

#[test]
fn line_buffer_boundary_is_exact() {
    let opts = FilterOptions {
        max_line_bytes: 16,
        ..text()
    };
    let p = dropping(&["{metric_field: name, exact: x}"]);
    let fits = "x{a=\"1234567\"} 1";
    let over = "x{a=\"12345678\"} 1";
    let crlf_over = "x{a=\"1234567\"} 1\r";
    assert_eq!((fits.len(), over.len(), crlf_over.len()), (16, 17, 17));
    let input = format!("{fits}\n{over}\n{fits}\n{crlf_over}\n{fits}\n");
    let run = filter(&p, opts, &input);
    assert_eq!(run.text(), format!("{over}\n{crlf_over}\n"));
    assert_eq!(run.counters.lines_oversized, 2);
    assert_eq!(run.counters.lines_dropped, 3);
}

#[test]
fn oversized_line_flushes_its_own_family_metadata_first() {
    let opts = FilterOptions {
        max_line_bytes: 32,
        ..text()
    };
    let p = dropping(&["{metric_field: name, exact: b}"]);
    let big = "b{l=\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"} 1\n";
    let input = format!("# HELP b Big.\n# TYPE b gauge\n{big}b{{l=\"x\"}} 2\n");
    let run = filter(&p, opts, &input);
    assert_eq!(run.text(), format!("# HELP b Big.\n# TYPE b gauge\n{big}"));
}

#[test]

fn oversized_line_of_a_new_family_does_not_release_dropped_metadata() {
    let opts = FilterOptions {
        max_line_bytes: 32,
        ..text()
    };
    let p = dropping(&["{metric_field: name, exact: a}"]);
    let big = "b{l=\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"} 1\n";
    let input = format!("# HELP a Dropped.\n# TYPE a gauge\na 1\n{big}");
    let run = filter(&p, opts, &input);
    assert_eq!(run.text(), big);
}

#[test]

fn oversized_line_keeps_family_tracking_at_every_split() {
    let opts = FilterOptions {
        max_line_bytes: 32,
        ..text()
    };
    let big = "big_total{l=\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"} 1\n";
    let input = format!(
        "# HELP big Big counter.\n# TYPE big counter\n{big}big_total{{l=\"small\"}} 2\nother 1\n"
    );
    let expected = format!("# HELP big Big counter.\n# TYPE big counter\n{big}other 1\n");
    let p = dropping(&["{metric_type: sum}"]);
    let run = filter(&p, opts, &input);
    assert_eq!(run.text(), expected);
    let p = dropping(&["{metric_field: description, exact: Big counter.}"]);
    let run = filter(&p, opts, &input);
    assert_eq!(run.text(), expected);
}

#[test]
fn final_oversized_line_without_lf_gets_lf() {
    let opts = FilterOptions {
        max_line_bytes: 16,
        ..text()
    };
    let p = dropping(&["{metric_field: name, exact: x}"]);
    let big = "big{l=\"aaaaaaaaaaaaaaaaaaaa\"} 1";
    let run = filter(&p, opts, &format!("a 1\n{big}"));
    assert_eq!(run.text(), format!("a 1\n{big}\n"));
    assert_eq!(run.counters.lines_oversized, 1);
}

#[test]
fn oversized_line_in_openmetrics_keeps_the_eof() {
    let opts = FilterOptions {
        max_line_bytes: 16,
        ..om()
    };
    let p = dropping(&["{metric_field: name, exact: x}"]);
    let big = "big{l=\"aaaaaaaaaaaaaaaaaaaa\"} 1\n";
    let input = format!("x 1\n{big}y 2\n# EOF\n");
    let run = filter(&p, opts, &input);
    assert_eq!(run.text(), format!("{big}y 2\n# EOF\n"));
}

// ---------------------------------------------------------------------------
// §8 Byte caps and truncation
// ---------------------------------------------------------------------------

#[test]
fn output_cap_cuts_text_on_a_line_boundary() {
    let p = dropping(&["{datapoint_attribute: x, exact: drop}"]);
    let input = "# HELP a A.\n# TYPE a gauge\na{x=\"1\"} 1\na{x=\"drop\"} 2\na{x=\"3\"} 3\n# a comment\nb 1\n";
    let full = expect(&p, text(), input, &input.replace("a{x=\"drop\"} 2\n", ""));
    assert_eq!(full.counters.truncated, None);
    // Units that leave together: metadata travels with the first kept line.
    let units = [
        "# HELP a A.\n# TYPE a gauge\na{x=\"1\"} 1\n",
        "a{x=\"3\"} 3\n",
        "# a comment\n",
        "b 1\n",
    ];
    for cap in 1..=full.out.len() + 2 {
        let opts = FilterOptions {
            max_output_bytes: cap as u64,
            ..text()
        };
        let mut expected = String::new();
        for unit in units {
            if expected.len() + unit.len() > cap {
                break;
            }
            expected.push_str(unit);
        }
        let run = filter(&p, opts, input);
        assert_eq!(run.text(), expected, "cap {cap}");
        assert!(run.out.len() <= cap);
        let truncated = cap < full.out.len();
        assert_eq!(
            run.counters.truncated,
            truncated.then_some(Limit::Output),
            "cap {cap}"
        );
    }
}

#[test]
fn output_cap_cuts_openmetrics_and_ends_with_eof() {
    let p = dropping(&["{datapoint_attribute: x, exact: drop}"]);
    let input = "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"drop\"} 2\na{x=\"3\"} 3\n# TYPE b counter\nb_total 1\nb_created 1.6e9\n# EOF\n";
    let full = expect(&p, om(), input, &input.replace("a{x=\"drop\"} 2\n", ""));
    let units = [
        "# TYPE a gauge\na{x=\"1\"} 1\n",
        "a{x=\"3\"} 3\n",
        "# TYPE b counter\nb_total 1\n",
        "b_created 1.6e9\n",
    ];
    for cap in 6..=full.out.len() + 2 {
        let opts = FilterOptions {
            max_output_bytes: cap as u64,
            ..om()
        };
        let mut expected = String::new();
        for unit in units {
            if expected.len() + unit.len() + 6 > cap {
                break;
            }
            expected.push_str(unit);
        }
        expected.push_str("# EOF\n");
        let run = filter(&p, opts, input);
        assert_eq!(run.text(), expected, "cap {cap}");
        assert!(run.out.len() <= cap, "cap {cap}");
        assert_eq!(run.text().matches("# EOF").count(), 1);
        let truncated = cap < full.out.len();
        assert_eq!(
            run.counters.truncated,
            truncated.then_some(Limit::Output),
            "cap {cap}"
        );
    }
}

#[test]
fn output_cap_counts_metadata_written_in_place() {
    // Metadata written after the family's first kept line is capped like
    // any other line.
    let p = dropping(&["{metric_field: name, exact: x}"]);
    let input = "# TYPE a gauge\na 1\n# HELP a Late help.\na 2\n";
    let opts = FilterOptions {
        max_output_bytes: 25,
        ..text()
    };
    let run = filter(&p, opts, input);
    assert_eq!(run.text(), "# TYPE a gauge\na 1\n");
    assert_eq!(run.counters.truncated, Some(Limit::Output));
}

#[test]
fn output_cap_with_an_oversized_line_overshoots_by_at_most_that_line() {
    // Streaming cannot know a long line's length before it is started:
    // whether it starts depends on how much of it had arrived, but the
    // output always ends on a line boundary and overshoots by at most the
    // long line.
    let p = dropping(&["{metric_field: name, exact: x}"]);
    let big = "big{l=\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"} 1\n";
    for (base, eof) in [(text(), ""), (om(), "# EOF\n")] {
        let input = format!("a 1\nx 2\n{big}b 3\n{eof}");
        let full = format!("a 1\n{big}b 3\n{eof}");
        let caps = (6..full.len()).step_by(7).chain([full.len() - 1]);
        for cap in caps {
            let opts = FilterOptions {
                max_line_bytes: 16,
                max_output_bytes: cap as u64,
                ..base
            };
            let bytes = input.as_bytes();
            let mut all = vec![("one chunk".to_owned(), vec![])];
            all.extend(chunkings(bytes.len(), true));
            for (what, cuts) in all {
                let run = run_chunks(&p.engine, opts, &split_at(bytes, &cuts));
                let out = run.text();
                assert_eq!(
                    run.counters.truncated,
                    Some(Limit::Output),
                    "cap {cap} {what}"
                );
                assert!(
                    out.is_empty() || out.ends_with('\n'),
                    "cap {cap} {what}: {out:?}"
                );
                let body = out.strip_suffix(eof).expect("ends with the terminator");
                assert!(full.starts_with(body), "cap {cap} {what}: {out:?}");
                assert_eq!(out.matches("# EOF").count(), eof.len().min(1));
                assert!(
                    out.len() <= cap || (body.ends_with(big) && out.len() - big.len() <= cap),
                    "cap {cap} {what}: {} bytes",
                    out.len()
                );
            }
        }
    }
}

#[test]

fn output_cap_holds_with_a_crlf_eof() {
    let p = dropping(&["{metric_field: name, exact: x}"]);
    let input = "a 1\r\nb 2\r\n# EOF\r\n";
    for cap in 6..=input.len() {
        let opts = FilterOptions {
            max_output_bytes: cap as u64,
            ..om()
        };
        let run = filter(&p, opts, input);
        assert!(run.out.len() <= cap, "cap {cap}: {:?}", run.text());
        assert!(run.text().ends_with("# EOF\r\n") || run.text().ends_with("# EOF\n"));
    }
}

/// Pushes `input` (in the given chunks), then cuts the input.
fn cut_after(p: &Policies, opts: FilterOptions, chunks: &[&[u8]]) -> (String, ScrapeCounters) {
    let mut f = ScrapeFilter::new(p.engine.clone(), Arc::new(Resource::default()), opts);
    let mut segs = Vec::new();
    for c in chunks {
        f.push(&Bytes::copy_from_slice(c), &mut segs);
    }
    f.cut_input(&mut segs).expect("cut on a line boundary");
    let out = String::from_utf8(segs.concat()).unwrap();
    assert_eq!(f.counters().bytes_out, out.len() as u64);
    (out, *f.counters())
}

#[test]
fn input_cut_drops_the_unfinished_line() {
    let p = dropping(&["{metric_field: name, exact: d}"]);
    let cases: [(FilterOptions, &str, &str); 5] = [
        (text(), "a 1\nb 2\nc 3", "a 1\nb 2\n"),
        (text(), "a 1\nb 2\n", "a 1\nb 2\n"),
        // The dropped family's pending metadata never leaves.
        (text(), "a 1\n# TYPE d gauge\nd 1\ne", "a 1\n"),
        (
            om(),
            "# TYPE a gauge\na 1\na{x=\"2\"} 2",
            "# TYPE a gauge\na 1\n# EOF\n",
        ),
        (om(), "# TYPE d gauge\nd 1\n", "# EOF\n"),
    ];
    for (opts, input, expected) in cases {
        let bytes = input.as_bytes();
        let (whole, counters) = cut_after(&p, opts, &[bytes]);
        assert_eq!(whole, expected, "{input:?}");
        assert_eq!(counters.truncated, Some(Limit::Input));
        for (what, cuts) in chunkings(bytes.len(), true) {
            let (out, c) = cut_after(&p, opts, &split_at(bytes, &cuts));
            assert_eq!(out, expected, "{input:?} {what}");
            assert_eq!(c, counters, "{input:?} {what}");
        }
    }
}

#[test]
fn input_cut_after_openmetrics_eof_adds_nothing() {
    let p = dropping(&["{metric_field: name, exact: x}"]);
    let (out, _) = cut_after(&p, om(), &[b"a 1\n# EOF\n"]);
    assert_eq!(out, "a 1\n# EOF\n");
}

#[test]
fn input_cut_inside_a_streaming_oversized_line_is_an_error() {
    let p = dropping(&["{metric_field: name, exact: x}"]);
    let opts = FilterOptions {
        max_line_bytes: 16,
        ..text()
    };
    let mut f = ScrapeFilter::new(p.engine.clone(), Arc::new(Resource::default()), opts);
    let mut segs = Vec::new();
    f.push(
        &Bytes::from_static(b"a 1\nbig{l=\"aaaaaaaaaaaaaaaaaaaaaaaaa"),
        &mut segs,
    );
    assert!(f.cut_input(&mut segs).is_err());
    // Once the oversized line is complete, the cut is clean again.
    let mut f = ScrapeFilter::new(p.engine.clone(), Arc::new(Resource::default()), opts);
    let mut segs = Vec::new();
    f.push(
        &Bytes::from_static(b"a 1\nbig{l=\"aaaaaaaaaaaaaaaaaaaaaaaaa\"} 1\nb"),
        &mut segs,
    );
    assert!(f.cut_input(&mut segs).is_ok());
    assert_eq!(
        segs.concat(),
        b"a 1\nbig{l=\"aaaaaaaaaaaaaaaaaaaaaaaaa\"} 1\n"
    );
}

#[test]
fn held_long_lines_filter_exactly_as_streamed_ones() {
    let p = dropping(&["{datapoint_attribute: drop, exact: 'yes'}"]);
    let big = "big{drop=\"no\",aaaaaaaaaaaaaaaaaaaaaaaa=\"bbbbbbbbbbbbbbbbbbbbbbb\"} 1\n";
    let input = format!(
        "# TYPE big gauge\n{big}a{{drop=\"yes\"}} 1\n{big}a{{drop=\"no\"}} 2\n{}",
        big.trim_end()
    );
    for base in [text(), om()] {
        let streamed = FilterOptions {
            max_line_bytes: 32,
            ..base
        };
        let held = FilterOptions {
            hold_long_lines: true,
            ..streamed
        };
        let reference = filter(&p, streamed, &input);
        let run = filter(&p, held, &input);
        assert_same(&reference, &run, "held instead of streamed");
        assert_eq!(run.counters.lines_oversized, 3);
    }
}

#[test]
fn input_cut_inside_a_held_long_line_drops_it_whole() {
    let p = dropping(&["{metric_field: name, exact: x}"]);
    let big = format!("big{{l=\"{}\"}} 1\n", "a".repeat(100));
    let input = format!("a 1\n{big}b 2\n");
    let bytes = input.as_bytes();
    for (base, eof) in [(text(), ""), (om(), "# EOF\n")] {
        let opts = FilterOptions {
            max_line_bytes: 16,
            hold_long_lines: true,
            ..base
        };
        // Every cap from inside the long line to just before its LF.
        for cap in 5..4 + big.len() {
            let expected = format!("a 1\n{eof}");
            let (out, c) = cut_after(&p, opts, &[&bytes[..cap]]);
            assert_eq!(out, expected, "cap {cap}");
            assert_eq!(c.truncated, Some(Limit::Input));
            assert_eq!(c.lines_oversized, 0, "a dropped line is not counted");
            for (what, cuts) in chunkings(cap, false) {
                let (out, _) = cut_after(&p, opts, &split_at(&bytes[..cap], &cuts));
                assert_eq!(out, expected, "cap {cap}, {what}");
            }
        }
        // A cap just after its LF keeps it.
        let cap = 4 + big.len();
        let (out, _) = cut_after(&p, opts, &[&bytes[..cap]]);
        assert_eq!(out, format!("a 1\n{big}{eof}"));
    }
}

// ---------------------------------------------------------------------------
// §12 Zero copy
// ---------------------------------------------------------------------------

fn within(segment: &Bytes, chunk: &Bytes) -> bool {
    let s = segment.as_ptr() as usize;
    let c = chunk.as_ptr() as usize;
    s >= c && s + segment.len() <= c + chunk.len()
}

#[test]
fn kept_lines_are_slices_of_the_input_chunk() {
    let p = dropping(&["{datapoint_attribute: x, exact: drop}"]);
    let input = Bytes::from_static(
        b"# HELP a A.\n# TYPE a gauge\na{x=\"drop\"} 1\na{x=\"1\"} 2\na{x=\"2\"} 3\n# c\nb{x=\"drop\"} 4\nb 5\n",
    );
    let run = run_owned(&p.engine, text(), vec![input.clone()]);
    assert_eq!(
        run.text(),
        "# HELP a A.\n# TYPE a gauge\na{x=\"1\"} 2\na{x=\"2\"} 3\n# c\nb 5\n"
    );
    assert!(!run.segments.is_empty());
    for seg in &run.segments {
        assert!(within(seg, &input), "segment {seg:?} was copied");
    }
    // Chunks cut on line boundaries: every segment lies in one chunk.
    let chunks: Vec<Bytes> = input
        .split_inclusive(|&b| b == b'\n')
        .map(|l| input.slice_ref(l))
        .collect();
    let run = run_owned(&p.engine, text(), chunks.clone());
    for seg in &run.segments {
        assert!(
            chunks.iter().any(|c| within(seg, c)),
            "segment {seg:?} was copied"
        );
    }
    // OpenMetrics: everything but the synthetic `# EOF` is borrowed.
    let input = Bytes::from_static(b"# TYPE a gauge\na 1\na{x=\"drop\"} 2\n");
    let run = run_owned(&p.engine, om(), vec![input.clone()]);
    assert_eq!(run.text(), "# TYPE a gauge\na 1\n# EOF\n");
    let (last, rest) = run.segments.split_last().unwrap();
    assert_eq!(&last[..], b"# EOF\n");
    for seg in rest {
        assert!(within(seg, &input), "segment {seg:?} was copied");
    }
}

// ---------------------------------------------------------------------------
// Shadow policies and scrape accounting
// ---------------------------------------------------------------------------

/// A metric policy labelled `tero.mode: shadow`.
fn shadow_policy(id: &str, keep: bool, matchers: &[&str]) -> String {
    policy(id, keep, matchers).replacen(
        "    metric:\n",
        "    labels: {tero.mode: shadow}\n    metric:\n",
        1,
    )
}

#[test]
fn a_shadow_drop_keeps_every_line_and_counts_what_it_would_drop() {
    let items = [shadow_policy(
        "s",
        false,
        &["{datapoint_attribute: method, exact: GET}"],
    )];
    let (run, stats) = stats_once(&items, text(), HISTOGRAM, &["s"]);
    assert_eq!(run.text(), HISTOGRAM, "nothing is dropped");
    assert_eq!(run.counters.series_dropped, 0);
    assert_eq!(run.counters.lines_dropped, 0);
    let s = stats[0];
    assert_eq!((s.match_hits, s.match_misses), (1, 0), "one series");
    assert_eq!(s.records_dropped, 1);
    assert_eq!(
        s.bytes_dropped,
        lines_with(HISTOGRAM, "\"GET\"", true).len() as u64,
        "every line of the series, once"
    );
    assert_eq!(s.scrapes, 1);

    // Lines of one series that are not adjacent are counted once too.
    let input = "\
# TYPE h histogram
h_bucket{le=\"1\",a=\"1\"} 1
h_bucket{le=\"1\",a=\"2\"} 1
h_bucket{le=\"+Inf\",a=\"1\"} 2
h_bucket{le=\"+Inf\",a=\"2\"} 2
h_sum{a=\"1\"} 1
h_sum{a=\"2\"} 1
";
    let items = [shadow_policy(
        "s",
        false,
        &["{datapoint_attribute: a, exact: '1'}"],
    )];
    let (run, stats) = stats_once(&items, text(), input, &["s"]);
    assert_eq!(run.text(), input);
    assert_eq!((stats[0].match_hits, stats[0].records_dropped), (1, 1));
    assert_eq!(
        stats[0].bytes_dropped,
        lines_with(input, "a=\"1\"", true).len() as u64
    );
}

#[test]
fn shadows_count_only_what_the_enforced_set_still_keeps() {
    let enforced = drop_policy("drop-get", &["{datapoint_attribute: method, exact: GET}"]);
    let shadow = shadow_policy(
        "a-shadow",
        false,
        &["{metric_field: name, exact: http_request_duration_seconds}"],
    );
    let ids = ["drop-get", "a-shadow"];
    let (alone, alone_stats) = stats_once(std::slice::from_ref(&enforced), text(), HISTOGRAM, &ids);
    let (run, stats) = stats_once(&[enforced, shadow], text(), HISTOGRAM, &ids);
    assert_eq!(run.text(), alone.text(), "the shadow changes no output");
    assert_eq!(run.counters, alone.counters);
    assert_eq!(
        stats[0], alone_stats[0],
        "the enforced policy counts as it did alone"
    );
    let s = stats[1];
    // Evaluated on both series (hits), but only POST, which is still sent,
    // is what enforcing it would remove.
    assert_eq!((s.match_hits, s.match_misses), (2, 0));
    assert_eq!(s.records_dropped, 1);
    assert_eq!(
        s.bytes_dropped,
        lines_with(HISTOGRAM, "\"POST\"", true).len() as u64
    );
}

#[test]
fn a_scrape_counts_once_when_it_completes_or_is_cut() {
    let p = policies(&[
        drop_policy("e", &["{metric_field: name, exact: d}"]),
        shadow_policy("s", false, &["{metric_field: name, exact: a}"]),
    ]);
    let scrapes = |p: &Policies| (p.stats("e").scrapes, p.stats("s").scrapes);
    let new =
        |p: &Policies| ScrapeFilter::new(p.engine.clone(), Arc::new(Resource::default()), text());
    let mut segs = Vec::new();

    // Completed, and ended again by a confused caller: one scrape.
    let mut f = new(&p);
    f.push(&Bytes::from_static(b"a 1\nd 2\n"), &mut segs);
    assert_eq!(scrapes(&p), (0, 0), "not before it ends");
    f.finish(&mut segs);
    f.finish(&mut segs);
    assert_eq!(scrapes(&p), (1, 1));

    // Cut at the input cap: it counts, once, even if finished afterwards.
    let mut f = new(&p);
    f.push(&Bytes::from_static(b"a 1\nd"), &mut segs);
    f.cut_input(&mut segs).expect("cut on a line boundary");
    f.finish(&mut segs);
    assert_eq!(scrapes(&p), (2, 2));

    // Aborted inside an oversized line, or never ended: no scrape.
    let opts = FilterOptions {
        max_line_bytes: 8,
        ..text()
    };
    let mut f = ScrapeFilter::new(p.engine.clone(), Arc::new(Resource::default()), opts);
    f.push(&Bytes::from_static(b"a 1\na{l=\"long label\""), &mut segs);
    assert!(f.cut_input(&mut segs).is_err());
    let mut f = new(&p);
    f.push(&Bytes::from_static(b"a 1\n"), &mut segs);
    drop(f);
    assert_eq!(scrapes(&p), (2, 2));
    assert_eq!(p.stats("s").match_hits, 4, "series evaluated still count");
}

#[test]
fn a_scrapes_drops_reach_the_counters_with_the_scrape_itself() {
    // A statistics report can be taken at any moment; mid-scrape it must
    // not carry bytes of a scrape it does not count.
    let p = policies(&[
        drop_policy("e", &["{metric_field: name, exact: d}"]),
        shadow_policy("s", false, &["{metric_field: name, exact: a}"]),
    ]);
    let counted = |p: &Policies, id: &str| {
        let s = p.stats(id);
        (s.scrapes, s.records_dropped, s.bytes_dropped)
    };
    let new =
        |p: &Policies| ScrapeFilter::new(p.engine.clone(), Arc::new(Resource::default()), text());
    let mut segs = Vec::new();

    let mut f = new(&p);
    f.push(&Bytes::from_static(b"a 1\nd 2\nd{x=\"y\"} 3\n"), &mut segs);
    assert_eq!(counted(&p, "e"), (0, 0, 0), "nothing before it ends");
    assert_eq!(counted(&p, "s"), (0, 0, 0));
    f.finish(&mut segs);
    assert_eq!(counted(&p, "e"), (1, 2, 15));
    assert_eq!(counted(&p, "s"), (1, 1, 4));

    // Aborted: no scrape, but what it dropped was dropped.
    let mut f = new(&p);
    f.push(&Bytes::from_static(b"d 5\n"), &mut segs);
    drop(f);
    assert_eq!(counted(&p, "e"), (1, 3, 19));
}

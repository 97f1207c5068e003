use super::*;

fn selectors(expr: &str) -> Vec<Selector> {
    match extract(expr) {
        Extraction::Parsed(s) => s,
        other => panic!("{expr} did not parse: {other:?}"),
    }
}

fn grafana(expr: &str, templating: &Templating) -> Vec<Selector> {
    match extract_with(expr, templating) {
        Extraction::Parsed(s) => s,
        other => panic!("{expr} did not parse: {other:?}"),
    }
}

fn metric(selectors: &[Selector], name: &str) -> Selector {
    selectors
        .iter()
        .find(|s| s.name == SelectorName::Metric(name.to_string()))
        .cloned()
        .unwrap_or_else(|| panic!("no selector for {name} in {selectors:?}"))
}

fn labels(s: &Selector) -> Vec<&str> {
    s.labels.iter().map(String::as_str).collect()
}

fn unknown_regex(s: &Selector) -> &str {
    match &s.name {
        SelectorName::Unknown { regex, .. } => regex,
        other => panic!("expected an unknown name, got {other:?}"),
    }
}

#[test]
fn histogram_quantile_reads_bucket_with_grouping_labels_and_le() {
    let s = selectors(
        "histogram_quantile(0.9, sum by (le, job) (rate(http_request_duration_seconds_bucket[5m])))",
    );
    assert_eq!(s.len(), 1);
    let bucket = metric(&s, "http_request_duration_seconds_bucket");
    assert_eq!(labels(&bucket), ["job", "le"]);
    assert!(!bucket.any_label);
}

#[test]
fn histogram_quantile_needs_le_even_when_not_grouped() {
    let s = selectors("histogram_quantile(0.99, rate(rpc_seconds_bucket[1m]))");
    assert_eq!(labels(&metric(&s, "rpc_seconds_bucket")), ["le"]);
}

#[test]
fn aggregation_by_and_without_and_matchers_are_read() {
    let s = selectors(
        r#"sum without (instance, pod) (rate(http_requests_total{code=~"5..", method!="GET"}[5m]))
               / ignoring (code) sum by (job) (rate(http_requests_total[5m]))"#,
    );
    let r = metric(&s, "http_requests_total");
    // Both sides are read, and each side keeps its own grouping.
    let all: BTreeSet<&str> = s
        .iter()
        .flat_map(|s| s.labels.iter().map(String::as_str))
        .collect();
    assert_eq!(
        all.into_iter().collect::<Vec<_>>(),
        ["code", "instance", "job", "method", "pod"]
    );
    assert!(r.labels.contains("code"));
    let rhs = &s[1];
    assert_eq!(labels(rhs), ["code", "job"]);
}

#[test]
fn binary_matching_labels_reach_both_sides() {
    let s = selectors(
        "sum by (job) (rate(errors_total[5m])) * on (job) group_left (team, owner) service_info",
    );
    assert_eq!(
        labels(&metric(&s, "errors_total")),
        ["job", "owner", "team"]
    );
    assert_eq!(
        labels(&metric(&s, "service_info")),
        ["job", "owner", "team"]
    );
    let s = selectors("a > on (x) group_right (y) b");
    assert_eq!(labels(&metric(&s, "a")), ["x", "y"]);
}

#[test]
fn nested_subqueries_and_functions_reach_their_selectors() {
    let s = selectors(
        r#"max_over_time(deriv(rate(queue_depth_total{queue="q"}[1m])[10m:30s])[1h:]) + absent(up{job="x"} offset 5m)"#,
    );
    assert_eq!(s.len(), 2);
    assert_eq!(labels(&metric(&s, "queue_depth_total")), ["queue"]);
    assert_eq!(labels(&metric(&s, "up")), ["job"]);
}

#[test]
fn label_functions_name_labels() {
    let s = selectors(r#"label_replace(up{job="api"}, "host", "$1", "instance", "(.*):.*")"#);
    assert_eq!(labels(&metric(&s, "up")), ["host", "instance", "job"]);
    let s = selectors(r#"label_join(node_info, "id", "/", "cluster", "node")"#);
    assert_eq!(labels(&metric(&s, "node_info")), ["cluster", "id", "node"]);
    // `count_values` names an output label, not one that is read.
    let s = selectors(r#"count_values("version", build_info)"#);
    assert!(metric(&s, "build_info").labels.is_empty());
}

#[test]
fn name_matchers_give_names_and_patterns() {
    let s = selectors(r#"{__name__="up", job="x"} + {"my.metric"}"#);
    assert_eq!(labels(&metric(&s, "up")), ["job"]);
    metric(&s, "my.metric");
    let s = selectors(r#"sum by (job) ({__name__=~"node_cpu_.*|node_load1"})"#);
    assert_eq!(s.len(), 1);
    assert_eq!(
        s[0].name,
        SelectorName::Pattern("^(?:node_cpu_.*|node_load1)$".to_string())
    );
    assert_eq!(labels(&s[0]), ["job"]);
}

#[test]
fn selection_by_labels_alone_reads_unknown_names() {
    let s = selectors(r#"count({job="batch"})"#);
    assert_eq!(unknown_regex(&s[0]), ANY_NAME);
    assert_eq!(labels(&s[0]), ["job"]);
}

#[test]
fn or_matchers_read_every_group() {
    let s = selectors(r#"foo{a="1" or b="2"}"#);
    assert_eq!(labels(&metric(&s, "foo")), ["a", "b"]);
}

#[test]
fn info_reads_target_info() {
    let s = selectors(r#"info(rate(http_server_requests_total[5m]))"#);
    metric(&s, "http_server_requests_total");
    assert_eq!(labels(&metric(&s, "target_info")), ["instance", "job"]);
    let s = selectors(r#"info(up, {k8s_cluster_name=~".+"})"#);
    assert_eq!(
        labels(&metric(&s, "target_info")),
        ["instance", "job", "k8s_cluster_name"]
    );
}

#[test]
fn legacy_holt_winters_still_parses() {
    let s = selectors("holt_winters(disk_free_bytes[1h], 0.3, 0.3)");
    metric(&s, "disk_free_bytes");
}

#[test]
fn template_variables_in_ranges_offsets_and_values() {
    let t = Templating::grafana();
    let s = grafana(
        r#"sum by (pod) (rate(container_cpu_usage_seconds_total{namespace=~"$namespace", pod="${pod:regex}"}[$__rate_interval] offset $shift))"#,
        &t,
    );
    assert_eq!(s.len(), 1);
    assert_eq!(
        labels(&metric(&s, "container_cpu_usage_seconds_total")),
        ["namespace", "pod"]
    );
    for expr in [
        "rate(x_total[[[interval]]])",
        "rate(x_total[${__range}])",
        "max_over_time(x_total[$__range:$__interval])",
        "increase(x_total[$__auto_interval_period]) / $__interval_ms",
        "x_total @ $__to",
    ] {
        let s = grafana(expr, &t);
        assert_eq!(s.len(), 1, "{expr}");
        metric(&s, "x_total");
    }
}

#[test]
fn grafana_regex_group_references_are_not_variables() {
    let t = Templating::grafana();
    let s = grafana(r#"label_replace(up, "host", "$1", "instance", "(.*)")"#, &t);
    assert_eq!(labels(&metric(&s, "up")), ["host", "instance"]);
}

#[test]
fn variable_in_the_name_position_is_unknown() {
    let t = Templating::grafana();
    let s = grafana(r#"sum(rate({__name__=~"$metric", job="x"}[5m]))"#, &t);
    assert_eq!(s.len(), 1);
    assert_eq!(unknown_regex(&s[0]), ANY_NAME);
    match &s[0].name {
        SelectorName::Unknown { reason, .. } => assert!(reason.contains("$metric"), "{reason}"),
        _ => unreachable!(),
    }
    let s = grafana(r#"$metric{job="x"}"#, &t);
    assert_eq!(unknown_regex(&s[0]), ANY_NAME);
    let s = grafana(r#"rate(${prefix}_requests_total[5m])"#, &t);
    assert_eq!(unknown_regex(&s[0]), "^(?:.*_requests_total)$");
    let s = grafana(r#"{__name__="node_${resource}_bytes"}"#, &t);
    assert_eq!(unknown_regex(&s[0]), "^(?:node_.*_bytes)$");
    let s = grafana("$metric", &t);
    assert_eq!(unknown_regex(&s[0]), ANY_NAME);
}

#[test]
fn metric_name_variable_hint_bounds_the_names() {
    let t = Templating::grafana().with_hint(
        "metric",
        VariableHint::MetricNames("^(?:node_.*)$".to_string()),
    );
    let s = grafana(r#"rate($metric[5m])"#, &t);
    assert_eq!(unknown_regex(&s[0]), "^(?:node_.*)$");
}

#[test]
fn numeric_variables_are_not_metric_names() {
    let t = Templating::grafana();
    // Known only by trying: `topk` needs a scalar.
    let s = grafana("topk($n, rate(requests_total[5m]))", &t);
    assert_eq!(s.len(), 1);
    metric(&s, "requests_total");
    // Without a hint a bare comparison operand may be a metric.
    let s = grafana("requests_total > $threshold", &t);
    assert_eq!(s.len(), 2);
    let t = t.with_hint("threshold", VariableHint::Number);
    let s = grafana("requests_total > $threshold", &t);
    assert_eq!(s.len(), 1);
}

#[test]
fn variable_label_reads_any_label() {
    let t = Templating::grafana();
    let s = grafana("sum by ($group) (rate(requests_total[5m]))", &t);
    assert!(metric(&s, "requests_total").any_label);
    let s = grafana(r#"requests_total{$key="x", job="a"}"#, &t);
    let r = metric(&s, "requests_total");
    assert!(r.any_label);
    assert_eq!(labels(&r), ["job"]);
    let s = grafana("sum by (job) (rate(requests_total[5m]))", &t);
    assert!(!metric(&s, "requests_total").any_label);
}

#[test]
fn pathological_nesting_does_not_overflow_the_stack() {
    // Tokio's worker threads have 2 MiB stacks.
    let run = |expr: String| {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || extract(&expr))
            .expect("spawns")
            .join()
            .expect("no overflow")
    };
    let limit = vec!["a"; MAX_OPERATORS / 2].join(" + ");
    let deep = format!(
        "{}b{}",
        "(".repeat(MAX_OPERATORS / 2),
        ")".repeat(MAX_OPERATORS / 2)
    );
    for expr in [limit.clone(), format!("{limit} + {deep}")] {
        match run(expr) {
            Extraction::Parsed(s) => assert!(!s.is_empty()),
            other => panic!("{other:?}"),
        }
    }
    match run(vec!["a"; 100_000].join(" + ")) {
        Extraction::Unparsed { possible_names, .. } => assert_eq!(possible_names, ["a"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn arbitrary_input_never_panics() {
    // Fragments that exercise every scanner state, glued at random
    // (a fixed LCG, so failures reproduce).
    const PIECES: &[&str] = &[
        "$",
        "${",
        "}",
        "[[",
        "]]",
        "[",
        "]",
        "\\",
        "\"",
        "'",
        "`",
        "é",
        "€",
        "#",
        "\n",
        "{",
        "(",
        ")",
        "=~",
        "!=",
        ",",
        " ",
        "by",
        "offset",
        "@",
        "-",
        "x",
        "__name__",
        "5m",
        ":",
        "$__interval",
        "[[v]]",
        "${v:raw}",
        "rate",
        "sum",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let grafana = Templating::grafana();
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..(state % 24) {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            text.push_str(PIECES[(state >> 33) as usize % PIECES.len()]);
        }
        let _ = extract(&text);
        let _ = extract_with(&text, &grafana);
    }
}

#[test]
fn rule_files_have_no_template_variables() {
    match extract("rate(x_total[$__rate_interval])") {
        Extraction::Unparsed { possible_names, .. } => assert_eq!(possible_names, ["x_total"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unparsable_query_yields_its_identifiers() {
    match extract(
        r#"sum(rate(api_errors_total{code="500"}[5m]) by (job) / on(job) api_requests_total"#,
    ) {
        Extraction::Unparsed {
            error,
            possible_names,
            possible_patterns,
        } => {
            assert!(!error.is_empty());
            assert_eq!(possible_names, ["api_errors_total", "api_requests_total"]);
            assert!(possible_patterns.is_empty());
        }
        other => panic!("{other:?}"),
    }
    match extract(r#"sum({__name__=~"node_.*"}) by (job))"#) {
        Extraction::Unparsed {
            possible_names,
            possible_patterns,
            ..
        } => {
            assert!(possible_names.is_empty(), "{possible_names:?}");
            assert_eq!(possible_patterns, ["^(?:node_.*)$"]);
        }
        other => panic!("{other:?}"),
    }
    let t = Templating::grafana();
    match extract_with(r#"rate($metric{job="$job"}[$__interval]"#, &t) {
        Extraction::Unparsed {
            possible_names,
            possible_patterns,
            ..
        } => {
            assert!(possible_names.is_empty(), "{possible_names:?}");
            assert_eq!(possible_patterns, [ANY_NAME]);
        }
        other => panic!("{other:?}"),
    }
}

//! A real Prometheus scrapes applications through `tero-edge`; its HTTP API
//! must show exactly the series the policies keep — for a plain, a gzip
//! and an OpenMetrics upstream.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tero_e2e::fixtures::{OPENMETRICS, TEXT};
use tero_e2e::prometheus::Prometheus;
use tero_e2e::upstream::{Compression, Upstream};
use tero_e2e::{Edge, http_get, wait_for};

fn exposition(openmetrics: bool) -> String {
    let counter_family = if openmetrics {
        "http_requests"
    } else {
        "http_requests_total"
    };
    let mut s = format!(
        "# HELP {counter_family} Requests served.\n# TYPE {counter_family} counter\n\
         http_requests_total{{method=\"GET\",code=\"200\"}} 1027\n\
         http_requests_total{{method=\"POST\",code=\"500\"}} 3\n\
         # HELP debug_cache_entries Entries in the debug cache.\n# TYPE debug_cache_entries gauge\n\
         debug_cache_entries{{cache=\"a\"}} 12\ndebug_cache_entries{{cache=\"b\"}} 7\n\
         # HELP request_duration_seconds Latency.\n# TYPE request_duration_seconds histogram\n"
    );
    for route in ["/a", "/b"] {
        for le in ["0.1", "0.5", "1", "+Inf"] {
            s.push_str(&format!(
                "request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} 4\n"
            ));
        }
        s.push_str(&format!(
            "request_duration_seconds_sum{{route=\"{route}\"}} 1.5\n"
        ));
        s.push_str(&format!(
            "request_duration_seconds_count{{route=\"{route}\"}} 4\n"
        ));
    }
    s.push_str(
        "# HELP user_sessions Open sessions.\n# TYPE user_sessions gauge\n\
         user_sessions{tier=\"public\"} 40\nuser_sessions{tier=\"internal\"} 2\n\
         # HELP rpc_latency_seconds RPC latency.\n# TYPE rpc_latency_seconds summary\n\
         rpc_latency_seconds{quantile=\"0.5\"} 0.01\nrpc_latency_seconds{quantile=\"0.9\"} 0.05\n\
         rpc_latency_seconds_sum 12\nrpc_latency_seconds_count 900\n",
    );
    if openmetrics {
        s.push_str("# EOF\n");
    }
    s
}

const POLICIES: &str = r#"
policies:
  - id: drop-debug
    name: Drop debug families
    metric:
      match:
        - metric_field: name
          regex: "^debug_"
      keep: false
  - id: drop-latency-histogram
    name: Drop the request latency histogram
    metric:
      match:
        - metric_field: name
          exact: request_duration_seconds
      keep: false
  - id: drop-internal-sessions
    name: Drop internal sessions
    metric:
      match:
        - datapoint_attribute: tier
          exact: internal
      keep: false
  - id: bucket-bound-is-not-an-attribute
    name: A policy on le matches nothing
    metric:
      match:
        - datapoint_attribute: le
          exact: "0.5"
      keep: false
"#;

/// The series Prometheus must hold for one job, as `name{k="v",…}`.
fn expected_series() -> BTreeSet<String> {
    [
        r#"http_requests_total{code="200",method="GET"}"#,
        r#"http_requests_total{code="500",method="POST"}"#,
        r#"user_sessions{tier="public"}"#,
        r#"rpc_latency_seconds{quantile="0.5"}"#,
        r#"rpc_latency_seconds{quantile="0.9"}"#,
        "rpc_latency_seconds_sum{}",
        "rpc_latency_seconds_count{}",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

fn series_key(labels: &serde_json::Map<String, Value>) -> Option<String> {
    let name = labels.get("__name__")?.as_str()?;
    if name == "up" || name.starts_with("scrape_") {
        return None;
    }
    let mut pairs: Vec<String> = labels
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "__name__" | "job" | "instance"))
        .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    Some(format!("{name}{{{}}}", pairs.join(",")))
}

/// The series Prometheus holds for `job`, once it has made three
/// successful scrapes of it (so every kept series has been ingested).
fn series_after_three_good_scrapes(prom: &Prometheus, job: &str) -> BTreeSet<String> {
    wait_for(
        Duration::from_secs(60),
        &format!("3 good scrapes of {job}"),
        || {
            let value = prom.value(&format!("sum_over_time(up{{job=\"{job}\"}}[1m])"))??;
            (value >= 3.0).then_some(())
        },
    );
    let v = prom
        .series(&format!("{{job=\"{job}\"}}"))
        .expect("series API");
    v["data"]
        .as_array()
        .expect("series list")
        .iter()
        .filter_map(|s| series_key(s.as_object()?))
        .collect()
}

#[test]
fn prometheus_sees_exactly_the_kept_series() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let policy_file = dir.path().join("policies.yaml");
    std::fs::write(&policy_file, POLICIES).unwrap();

    let upstreams = [
        (
            "plain",
            Upstream::start(exposition(false).into_bytes(), TEXT, Compression::None),
        ),
        (
            "gzip",
            Upstream::start(exposition(false).into_bytes(), TEXT, Compression::Gzip),
        ),
        (
            "openmetrics",
            Upstream::start(
                exposition(true).into_bytes(),
                OPENMETRICS,
                Compression::Gzip,
            ),
        ),
    ];
    let edges: Vec<(&str, Edge)> = upstreams
        .iter()
        .map(|(job, up)| {
            let config = json!({
                "upstream_url": up.url(),
                "service": {"name": format!("app-{job}")},
                "policy_providers": [{"id": "local", "type": "file", "path": policy_file}],
            });
            (
                *job,
                Edge::start(config, dir.clone(), &format!("edge-{job}")),
            )
        })
        .collect();

    let jobs: Vec<(&str, SocketAddr)> = edges
        .iter()
        .map(|(job, edge)| (*job, edge.addr()))
        .collect();
    let prom = Prometheus::start(dir.path(), &jobs);

    for (job, _) in &edges {
        let seen = series_after_three_good_scrapes(&prom, job);
        assert_eq!(seen, expected_series(), "series of job {job}");

        let up = prom.query(&format!("up{{job=\"{job}\"}}")).unwrap();
        assert_eq!(up["data"]["result"][0]["value"][1], "1", "{job} is up");
    }

    // The gzip upstreams were really compressed and decoded by the Edge.
    for (job, edge) in &edges {
        let text = http_get(&edge.url("/_edge/metrics"), &[]).unwrap().text();
        let value = |series: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("{series} missing in self-metrics:\n{text}"))
        };
        let wire = value("edge_scrape_bytes_total{direction=\"in_wire\"}");
        let decoded = value("edge_scrape_bytes_total{direction=\"in_decoded\"}");
        if *job == "plain" {
            assert_eq!(wire, decoded, "{job}: identity body");
        } else {
            assert!(
                wire < decoded,
                "{job}: gzip body decoded ({wire} < {decoded})"
            );
        }
        assert!(value("edge_scrape_series_total{decision=\"dropped\"}") > 0.0);
        assert!(
            value("edge_policy_series_dropped_total{policy_id=\"drop-latency-histogram\"}") >= 2.0
        );
        assert_eq!(
            value("edge_policy_match_hits_total{policy_id=\"bucket-bound-is-not-an-attribute\"}"),
            0.0
        );
    }
}

/// The input cap falling inside a long line (issue 16): the Edge ends the
/// response cleanly before that line, so Prometheus records a successful
/// scrape with the series before it instead of an aborted one.
#[test]
fn a_long_line_across_the_input_cap_still_gives_prometheus_a_good_scrape() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let policy_file = dir.path().join("policies.yaml");
    std::fs::write(&policy_file, POLICIES).unwrap();
    let with_long_line = |openmetrics: bool| -> (String, usize) {
        let full = exposition(openmetrics);
        let at = full
            .find("# HELP rpc_latency_seconds")
            .expect("the summary");
        let long = format!("user_sessions{{tier=\"{}\"}} 1\n", "x".repeat(3000));
        (format!("{}{long}{}", &full[..at], &full[at..]), at + 1000)
    };
    let (text, text_cap) = with_long_line(false);
    let (om, om_cap) = with_long_line(true);
    let upstreams = [
        (
            "capped_plain",
            Upstream::start(text.into_bytes(), TEXT, Compression::None),
            text_cap,
        ),
        (
            "capped_openmetrics",
            Upstream::start(om.into_bytes(), OPENMETRICS, Compression::Gzip),
            om_cap,
        ),
    ];
    let edges: Vec<(&str, Edge)> = upstreams
        .iter()
        .map(|(job, up, cap)| {
            let config = json!({
                "upstream_url": up.url(),
                "service": {"name": format!("app-{job}")},
                "prometheus": {"max_input_bytes_per_scrape": cap, "max_line_bytes": 256},
                "policy_providers": [{"id": "local", "type": "file", "path": policy_file}],
            });
            (
                *job,
                Edge::start(config, dir.clone(), &format!("edge-{job}")),
            )
        })
        .collect();
    let jobs: Vec<(&str, SocketAddr)> = edges
        .iter()
        .map(|(job, edge)| (*job, edge.addr()))
        .collect();
    let prom = Prometheus::start(dir.path(), &jobs);
    let expected: BTreeSet<String> = [
        r#"http_requests_total{code="200",method="GET"}"#,
        r#"http_requests_total{code="500",method="POST"}"#,
        r#"user_sessions{tier="public"}"#,
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    for (job, edge) in &edges {
        let seen = series_after_three_good_scrapes(&prom, job);
        assert_eq!(seen, expected, "series of job {job}: those before the cut");
        let text = edge.self_metrics();
        assert!(
            text.contains("edge_scrapes_total{result=\"aborted\"} 0\n"),
            "{job}: no scrape aborted:\n{text}"
        );
    }
}

//! The scrape proxy end to end (prometheus-edge.md §5, 6, 8, 9, 11, 13, 15,
//! 17): a real `tero-edge` between these tests and a stand-in exporter
//! that compresses, answers protobuf or errors, hangs, or resets.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tero_e2e::fixtures::{DROP_DEBUG, EXPOSITION, OPENMETRICS, TEXT, WITHOUT_DEBUG};
use tero_e2e::upstream::{Behaviour, Compression, Upstream, UpstreamSpec, encode};
use tero_e2e::{Edge, HttpResponse, free_port, http_get, http_request, metric_value, wait_for};

const PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
/// What Prometheus 3 sends with native histograms enabled.
const PROMETHEUS_ACCEPT: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,*/*;q=0.1";

fn temp_dir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().expect("temp dir"))
}

/// An Edge with [`DROP_DEBUG`] loaded from a file, `prometheus` settings
/// merged in.
fn filtering_edge(
    upstream_url: &str,
    dir: &Arc<tempfile::TempDir>,
    name: &str,
    prometheus: Value,
) -> Edge {
    filtering_edge_with(upstream_url, dir, name, prometheus, json!({}))
}

/// As [`filtering_edge`], with `extra` top-level keys.
fn filtering_edge_with(
    upstream_url: &str,
    dir: &Arc<tempfile::TempDir>,
    name: &str,
    prometheus: Value,
    extra: Value,
) -> Edge {
    let policy_file: PathBuf = dir.path().join(format!("{name}-policies.yaml"));
    std::fs::write(&policy_file, DROP_DEBUG).unwrap();
    let mut config = json!({
        "upstream_url": upstream_url,
        "service": {"name": name},
        "prometheus": prometheus,
        "policy_providers": [{"id": "local", "type": "file", "path": policy_file}],
    });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    let edge = Edge::start(config, dir.clone(), name);
    assert_eq!(
        edge.self_metric("edge_policies_loaded{signal=\"metric\"}"),
        1.0,
        "the policy file is loaded once the Edge is ready"
    );
    edge
}

/// An Edge without any policy provider: the raw fast path.
fn passthrough_edge(upstream_url: &str, dir: &Arc<tempfile::TempDir>, name: &str) -> Edge {
    let config = json!({"upstream_url": upstream_url, "service": {"name": name}});
    Edge::start(config, dir.clone(), name)
}

fn gunzip(body: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::MultiGzDecoder::new(body)
        .read_to_string(&mut out)
        .expect("a valid gzip body");
    out
}

fn scrape(edge: &Edge, headers: &[(&str, &str)]) -> HttpResponse {
    http_get(&edge.url("/metrics"), headers).expect("scrape through the Edge")
}

fn assert_filtered_response(r: &HttpResponse, gzip: bool, expected: &str, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    assert!(
        r.header("content-length").is_none(),
        "{what}: a filtered body has no Content-Length, got {:?}",
        r.header("content-length")
    );
    let vary = r.header("vary").unwrap_or_default().to_ascii_lowercase();
    assert!(
        vary.contains("accept-encoding"),
        "{what}: Vary: Accept-Encoding, got {vary:?}"
    );
    if gzip {
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{what}");
        assert_eq!(gunzip(&r.body), expected, "{what}: gzip body");
    } else {
        assert_eq!(r.header("content-encoding"), None, "{what}");
        assert_eq!(r.text(), expected, "{what}: identity body");
    }
}

/// A compressed upstream is decoded, filtered, and re-encoded as the
/// client asked (R-6.1–6.4).
fn compressed_upstream_is_filtered(compression: Compression) {
    let token = compression.token().unwrap();
    let up = UpstreamSpec::new(EXPOSITION, TEXT)
        .compression(compression)
        .start();
    let dir = temp_dir();
    let edge = filtering_edge(&up.url(), &dir, &format!("edge-{compression:?}"), json!({}));

    let r = scrape(&edge, &[("Accept-Encoding", "gzip")]);
    assert_filtered_response(&r, true, WITHOUT_DEBUG, &format!("{compression:?} → gzip"));
    let asked = up.last_request().unwrap();
    let ae = asked.header("accept-encoding").unwrap_or_default();
    assert!(
        ae.contains(token),
        "the Edge asks upstream for {token}: Accept-Encoding {ae:?}"
    );

    let r = scrape(&edge, &[]);
    assert_filtered_response(
        &r,
        false,
        WITHOUT_DEBUG,
        &format!("{compression:?} → identity"),
    );
    let r = scrape(&edge, &[("Accept-Encoding", "identity")]);
    assert_filtered_response(
        &r,
        false,
        WITHOUT_DEBUG,
        &format!("{compression:?} → identity"),
    );
    assert_eq!(up.requests.load(std::sync::atomic::Ordering::Relaxed), 3);

    // The upstream really sent the compressed form, and the Edge decoded it.
    let text = edge.self_metrics();
    let wire = metric_value(&text, "edge_scrape_bytes_total{direction=\"in_wire\"}").unwrap();
    let decoded = metric_value(&text, "edge_scrape_bytes_total{direction=\"in_decoded\"}").unwrap();
    assert_eq!(
        wire,
        3.0 * encode(EXPOSITION.as_bytes(), compression).len() as f64
    );
    assert_eq!(decoded, 3.0 * EXPOSITION.len() as f64);
    assert_eq!(
        metric_value(&text, "edge_scrape_series_total{decision=\"dropped\"}"),
        Some(6.0)
    );
    assert_eq!(
        metric_value(&text, "edge_scrapes_total{result=\"ok\"}"),
        Some(3.0)
    );
}

#[test]
fn gzip_upstream_is_decoded_and_filtered() {
    compressed_upstream_is_filtered(Compression::Gzip);
}

#[test]
fn multi_frame_zstd_upstream_is_decoded_and_filtered() {
    compressed_upstream_is_filtered(Compression::Zstd);
}

#[test]
fn zlib_deflate_upstream_is_decoded_and_filtered() {
    compressed_upstream_is_filtered(Compression::Deflate);
}

#[test]
fn raw_deflate_upstream_is_decoded_and_filtered() {
    compressed_upstream_is_filtered(Compression::DeflateRaw);
}

#[test]
fn protobuf_first_accept_is_not_forwarded() {
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let dir = temp_dir();
    let edge = filtering_edge(&up.url(), &dir, "edge-accept", json!({}));
    let r = scrape(
        &edge,
        &[
            ("Accept", PROMETHEUS_ACCEPT),
            ("X-Prometheus-Scrape-Timeout-Seconds", "5"),
            ("User-Agent", "Prometheus/3.0.0"),
        ],
    );
    assert_filtered_response(&r, false, WITHOUT_DEBUG, "protobuf-first Accept");
    let asked = up.last_request().unwrap();
    let accept = asked.header("accept").expect("an Accept header upstream");
    assert!(
        !accept.to_ascii_lowercase().contains("protobuf"),
        "upstream must not be offered protobuf: {accept:?}"
    );
    assert!(
        accept.contains("text/plain;version=1.0.0;escaping=allow-utf-8;q=0.6"),
        "text entry kept with its escaping and q (R-5.1, R-5.4): {accept:?}"
    );
    assert!(
        accept.contains("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5"),
        "OpenMetrics entry kept: {accept:?}"
    );
    assert!(!accept.contains("*/*"), "*/* made explicit: {accept:?}");
    assert_eq!(
        asked.header("x-prometheus-scrape-timeout-seconds"),
        Some("5"),
        "the scrape timeout is forwarded (R-9.1)"
    );
    assert_eq!(asked.header("user-agent"), Some("Prometheus/3.0.0"));
    assert_eq!(
        asked.header("host"),
        Some(up.addr.to_string().as_str()),
        "Host is the upstream authority (R-11.2)"
    );
}

/// A binary body full of bytes a line filter would mangle: LF bytes, NUL,
/// invalid UTF-8, and a "line" a text filter would drop.
fn protobuf_body() -> Vec<u8> {
    let mut b = vec![0x0a, 0x13];
    b.extend_from_slice(b"debug_cache_entries");
    b.extend_from_slice(&[0x12, 0x00, 0xff, 0xfe, 0x0a, 0x0a, 0x00]);
    b.extend_from_slice(b"\ndebug_cache_entries{cache=\"a\"} 12\n");
    b.extend((0u8..=255).rev());
    b.extend_from_slice(b"\x0a\x0d\x0a");
    b
}

#[test]
fn protobuf_answer_is_relayed_byte_identical_and_unfiltered() {
    let body = protobuf_body();
    let up = UpstreamSpec::new(body.clone(), PROTOBUF).start();
    let dir = temp_dir();
    let edge = filtering_edge(&up.url(), &dir, "edge-protobuf", json!({}));
    let r = scrape(&edge, &[("Accept", PROMETHEUS_ACCEPT)]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, body, "protobuf relayed byte for byte (R-5.2)");
    assert_eq!(r.header("content-type"), Some(PROTOBUF));
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(
        edge.self_metric("edge_scrape_unfiltered_total{reason=\"content_type\"}"),
        1.0
    );
    assert_eq!(
        edge.self_metric("edge_scrape_series_total{decision=\"dropped\"}"),
        0.0,
        "nothing of a protobuf body goes through the text filter"
    );
}

#[test]
fn zero_metric_policies_is_a_byte_identical_passthrough() {
    let up = UpstreamSpec::new(EXPOSITION, TEXT)
        .compression(Compression::Gzip)
        .start();
    let dir = temp_dir();
    let edge = passthrough_edge(&up.url(), &dir, "edge-no-policies");

    // Client accepts gzip: the upstream's gzip bytes and headers, untouched,
    // and the client's Accept and Accept-Encoding forwarded verbatim (R-13.1).
    let r = scrape(
        &edge,
        &[("Accept", PROMETHEUS_ACCEPT), ("Accept-Encoding", "gzip")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("content-type"), Some(TEXT));
    assert_eq!(
        r.body,
        encode(EXPOSITION.as_bytes(), Compression::Gzip),
        "the upstream's gzip bytes, unchanged"
    );
    assert_eq!(gunzip(&r.body), EXPOSITION, "nothing dropped");
    let asked = up.last_request().unwrap();
    assert_eq!(asked.header("accept"), Some(PROMETHEUS_ACCEPT));
    assert_eq!(asked.header("accept-encoding"), Some("gzip"));

    // Client without Accept-Encoding: identity from upstream, unchanged.
    let r = scrape(&edge, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.text(), EXPOSITION);
    assert_eq!(
        edge.self_metric("edge_scrape_unfiltered_total{reason=\"no_policies\"}"),
        2.0
    );

    // A policy set without metric policies is still zero metric policies.
    let log_only = dir.path().join("log-only.yaml");
    std::fs::write(
        &log_only,
        r#"
policies:
  - id: drop-debug-logs
    name: Drop debug logs
    log:
      match:
        - log_field: severity_text
          exact: DEBUG
      keep: none
"#,
    )
    .unwrap();
    let edge = Edge::start(
        json!({
            "upstream_url": up.url(),
            "policy_providers": [{"id": "local", "type": "file", "path": log_only}],
        }),
        dir.clone(),
        "edge-log-only",
    );
    assert_eq!(
        edge.self_metric("edge_policies_loaded{signal=\"log\"}"),
        1.0
    );
    let r = scrape(&edge, &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.body, encode(EXPOSITION.as_bytes(), Compression::Gzip));
}

#[test]
fn hung_exporter_gets_504_before_the_prometheus_timeout() {
    let up = UpstreamSpec::new(EXPOSITION, TEXT)
        .behaviour(Behaviour::HangBeforeHeaders)
        .start();
    let dir = temp_dir();
    let edge = filtering_edge(&up.url(), &dir, "edge-hung", json!({}));
    let url = edge.url("/metrics");
    let scrape = std::thread::spawn(move || {
        let started = Instant::now();
        let r = http_get(&url, &[("X-Prometheus-Scrape-Timeout-Seconds", "1")]);
        (r, started.elapsed())
    });
    // While the scrape hangs, liveness answers at once (R-11.5).
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let health = http_get(&edge.url("/_health"), &[]).unwrap();
    assert_eq!(health.status, 200);
    assert!(started.elapsed() < Duration::from_millis(500));

    let (r, elapsed) = scrape.join().unwrap();
    let r = r.expect("an answer, not a dropped connection");
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        elapsed < Duration::from_millis(1500),
        "504 within the scrape timeout, took {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(700),
        "the Edge waited for the exporter most of the 1 s timeout, took {elapsed:?}"
    );
    assert!(
        r.text().contains(&up.addr.to_string()),
        "the body names the upstream: {}",
        r.text()
    );
    assert_eq!(
        up.last_request()
            .unwrap()
            .header("x-prometheus-scrape-timeout-seconds"),
        Some("1")
    );
    assert_eq!(
        edge.self_metric("edge_scrapes_total{result=\"timeout\"}"),
        1.0
    );
    assert_eq!(
        edge.self_metric("edge_upstream_errors_total{kind=\"timeout\"}"),
        1.0
    );
}

#[test]
fn upstream_down_gives_502_naming_it_while_health_stays_ok() {
    let port = free_port();
    let dir = temp_dir();
    let edge = filtering_edge(
        &format!("http://127.0.0.1:{port}"),
        &dir,
        "edge-down",
        json!({}),
    );
    let r = scrape(&edge, &[]);
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.text().contains(&format!("127.0.0.1:{port}")),
        "the body names the upstream: {}",
        r.text()
    );
    let started = Instant::now();
    let health = http_get(&edge.url("/_health"), &[]).unwrap();
    assert_eq!(health.status, 200);
    let v: Value = serde_json::from_slice(&health.body).expect("JSON health body");
    assert_eq!(v["status"], "ok");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(
        edge.self_metric("edge_scrapes_total{result=\"upstream_error\"}"),
        1.0
    );
    assert_eq!(
        edge.self_metric("edge_upstream_errors_total{kind=\"connect\"}"),
        1.0
    );

    // The raw fast path fails the same way, never with an empty 200.
    let edge = passthrough_edge(&format!("http://127.0.0.1:{port}"), &dir, "edge-down-raw");
    let r = scrape(&edge, &[]);
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains(&format!("127.0.0.1:{port}")));
}

#[test]
fn upstream_reset_mid_body_aborts_the_client_response() {
    // Headers and the first three lines, then the exporter goes away.
    let head_len = EXPOSITION
        .match_indices('\n')
        .nth(2)
        .map(|(i, _)| i + 1)
        .unwrap();
    let up = UpstreamSpec::new(EXPOSITION, TEXT)
        .behaviour(Behaviour::ResetAfter(head_len))
        .start();
    let dir = temp_dir();
    for (edge, what) in [
        (
            filtering_edge(&up.url(), &dir, "edge-reset", json!({})),
            "filtered",
        ),
        (
            passthrough_edge(&up.url(), &dir, "edge-reset-raw"),
            "passthrough",
        ),
    ] {
        for ae in ["identity", "gzip"] {
            match http_get(&edge.url("/metrics"), &[("Accept-Encoding", ae)]) {
                Err(_) => {}
                Ok(r) => panic!(
                    "{what}/{ae}: a broken upstream body must not end cleanly; got {} with {} bytes: {:?}",
                    r.status,
                    r.body.len(),
                    r.text()
                ),
            }
        }
        wait_for(Duration::from_secs(2), "reset counted", || {
            (edge.self_metric("edge_upstream_errors_total{kind=\"reset\"}") == 2.0).then_some(())
        });
        assert_eq!(edge.self_metric("edge_scrapes_total{result=\"ok\"}"), 0.0);
    }
}

#[test]
fn non_2xx_upstream_status_is_relayed_with_its_body() {
    let up = UpstreamSpec::new(EXPOSITION, TEXT).status(503).start();
    let dir = temp_dir();
    let edge = filtering_edge(&up.url(), &dir, "edge-503", json!({}));
    let r = scrape(&edge, &[]);
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), EXPOSITION, "body relayed unfiltered (R-9.3)");
    assert_eq!(r.header("content-type"), Some(TEXT));
    assert_eq!(
        edge.self_metric("edge_upstream_errors_total{kind=\"status\"}"),
        1.0
    );
    assert_eq!(
        edge.self_metric("edge_scrapes_total{result=\"upstream_error\"}"),
        1.0
    );
}

#[test]
fn non_2xx_compressed_body_reaches_the_client_in_an_encoding_it_accepts() {
    // The Edge asked upstream for gzip on the client's behalf; an error
    // page in gzip must not reach a client that only accepts identity.
    let up = UpstreamSpec::new(EXPOSITION, TEXT)
        .status(500)
        .compression(Compression::Gzip)
        .start();
    let dir = temp_dir();
    let edge = filtering_edge(&up.url(), &dir, "edge-500-gzip", json!({}));
    let r = scrape(&edge, &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.status, 500);
    let body = match r.header("content-encoding") {
        Some("gzip") => gunzip(&r.body),
        None => r.text(),
        other => panic!("unexpected Content-Encoding {other:?}"),
    };
    assert_eq!(body, EXPOSITION);

    let out_before = edge.self_metric("edge_scrape_bytes_total{direction=\"out_decoded\"}");
    let in_wire_before = edge.self_metric("edge_scrape_bytes_total{direction=\"in_wire\"}");
    let r = scrape(&edge, &[("Accept-Encoding", "identity")]);
    assert_eq!(r.status, 500);
    assert_eq!(
        r.header("content-encoding"),
        None,
        "the client accepts identity only"
    );
    assert_eq!(r.text(), EXPOSITION);
    // The decoded relay is counted like any other: gzip in, plain out.
    let sent = EXPOSITION.len() as f64;
    wait_for(Duration::from_secs(3), "the decoded relay counted", || {
        let out = edge.self_metric("edge_scrape_bytes_total{direction=\"out_decoded\"}");
        (out - out_before == sent).then_some(())
    });
    let gzip_len = encode(EXPOSITION.as_bytes(), Compression::Gzip).len() as f64;
    assert_eq!(
        edge.self_metric("edge_scrape_bytes_total{direction=\"in_wire\"}") - in_wire_before,
        gzip_len
    );
}

/// `n` kept gauge series after a dropped debug family, and the expected
/// filtered output.
fn big_exposition(openmetrics: bool) -> (String, String) {
    let mut dropped = String::from("# HELP debug_queue Debug.\n# TYPE debug_queue gauge\n");
    for i in 0..20 {
        dropped.push_str(&format!("debug_queue{{shard=\"{i}\"}} {i}\n"));
    }
    let mut kept = String::from("# HELP worker_busy Busy workers.\n# TYPE worker_busy gauge\n");
    for i in 0..100 {
        kept.push_str(&format!("worker_busy{{pool=\"p{i:03}\"}} {i}\n"));
    }
    if openmetrics {
        kept.push_str("# EOF\n");
    }
    (format!("{dropped}{kept}"), kept)
}

fn assert_truncation_counted(edge: &Edge) {
    assert_eq!(
        edge.self_metric("edge_scrape_truncated_total{limit=\"output\"}"),
        1.0
    );
    assert_eq!(
        edge.self_metric("edge_scrape_truncated_total{limit=\"input\"}"),
        0.0
    );
    assert_eq!(
        edge.self_metric("edge_scrapes_total{result=\"truncated\"}"),
        1.0
    );
    wait_for(
        Duration::from_secs(3),
        "a truncation warning in the log",
        || edge.process.log().contains("truncated").then_some(()),
    );
}

#[test]
fn output_cap_cuts_text_on_a_line_boundary() {
    const CAP: usize = 600;
    let (input, expected) = big_exposition(false);
    let up = UpstreamSpec::new(input, TEXT).start();
    let dir = temp_dir();
    let edge = filtering_edge(
        &up.url(),
        &dir,
        "edge-cap-text",
        json!({"max_output_bytes_per_scrape": CAP}),
    );
    let r = scrape(&edge, &[]);
    assert_eq!(r.status, 200);
    let mut out = r.text();
    // The optional trailing comment of R-8.3 is not part of the data.
    if let Some(at) = out.find("# edge: truncated") {
        out.truncate(at);
    }
    assert!(!out.is_empty() && out.len() <= CAP, "{} bytes", out.len());
    assert!(out.len() + 40 > CAP, "the cap, not less, is used: {out:?}");
    assert!(out.ends_with('\n'), "ends on a line boundary: {out:?}");
    assert!(
        expected.starts_with(&out),
        "output is a line-aligned prefix of the filtered scrape:\n{out}"
    );
    assert_truncation_counted(&edge);
}

#[test]
fn output_cap_cuts_openmetrics_on_a_line_boundary_with_eof() {
    const CAP: usize = 600;
    let (input, expected) = big_exposition(true);
    let up = UpstreamSpec::new(input, OPENMETRICS).start();
    let dir = temp_dir();
    let edge = filtering_edge(
        &up.url(),
        &dir,
        "edge-cap-om",
        json!({"max_output_bytes_per_scrape": CAP}),
    );
    let r = scrape(&edge, &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let out = gunzip(&r.body);
    assert!(out.len() <= CAP, "{} bytes", out.len());
    let data = out
        .strip_suffix("# EOF\n")
        .unwrap_or_else(|| panic!("OpenMetrics output ends with # EOF: {out:?}"));
    assert!(!data.contains("# EOF"), "exactly one # EOF: {out:?}");
    assert!(!data.is_empty() && data.ends_with('\n'), "{out:?}");
    assert!(
        expected.starts_with(data) && data.len() + 40 < expected.len(),
        "a line-aligned proper prefix of the filtered scrape:\n{out}"
    );
    assert_truncation_counted(&edge);
}

/// An exposition whose long line (over `max_line_bytes`) straddles `cap`:
/// the input, the cap, and the filtered output up to the line before it.
fn long_line_across_the_cap(openmetrics: bool) -> (String, u64, String) {
    let (mut input, _) = big_exposition(false);
    let before_long = input.len();
    let long = format!("worker_busy{{pool=\"{}\"}} 1\n", "x".repeat(3000));
    input.push_str(&long);
    input.push_str("worker_idle 3\n");
    if openmetrics {
        input.push_str("# EOF\n");
    }
    // A prefix of the kept family, up to the long line.
    let (_, kept) = big_exposition(false);
    let mut expected = kept;
    if openmetrics {
        expected.push_str("# EOF\n");
    }
    (input, (before_long + 1000) as u64, expected)
}

#[test]
fn input_cap_inside_a_long_line_cuts_before_it_and_completes_the_response() {
    let dir = temp_dir();
    for (om, content_type) in [(false, TEXT), (true, OPENMETRICS)] {
        let (input, cap, expected) = long_line_across_the_cap(om);
        // Identity with a Content-Length over the cap (known in advance) and
        // gzip (found out while reading) take the two paths to the cut.
        for compression in [Compression::None, Compression::Gzip] {
            let up = UpstreamSpec::new(input.clone(), content_type)
                .compression(compression)
                .start();
            let name = format!("edge-long-cut-{om}-{compression:?}").to_lowercase();
            let edge = filtering_edge(
                &up.url(),
                &dir,
                &name,
                json!({"max_input_bytes_per_scrape": cap, "max_line_bytes": 256}),
            );
            let what = format!("openmetrics {om}, upstream {compression:?}");
            let r = http_get(&edge.url("/metrics"), &[("Accept-Encoding", "identity")])
                .unwrap_or_else(|e| panic!("{what}: the response must complete: {e}"));
            assert_eq!(r.status, 200, "{what}");
            assert_eq!(r.text(), expected, "{what}: cut before the long line");
            if compression == Compression::None {
                assert_eq!(r.header("x-edge-truncated"), Some("input"), "{what}");
            }
            wait_for(Duration::from_secs(3), "the scrape counted", || {
                let truncated = edge.self_metric("edge_scrapes_total{result=\"truncated\"}");
                (truncated == 1.0).then_some(())
            });
            assert_eq!(
                edge.self_metric("edge_scrapes_total{result=\"aborted\"}"),
                0.0,
                "{what}"
            );
            assert_eq!(
                edge.self_metric("edge_scrape_truncated_total{limit=\"input\"}"),
                1.0,
                "{what}"
            );
        }
    }
}

#[test]
fn truncation_trailer_reaches_a_client_that_reads_trailers() {
    use std::io::Write as _;
    let (input, cap, expected) = long_line_across_the_cap(false);
    // gzip upstream: the cut is found while reading, after the headers.
    let up = UpstreamSpec::new(input, TEXT)
        .compression(Compression::Gzip)
        .start();
    let dir = temp_dir();
    let edge = filtering_edge(
        &up.url(),
        &dir,
        "edge-trailer",
        json!({"max_input_bytes_per_scrape": cap, "max_line_bytes": 256}),
    );
    let mut conn = std::net::TcpStream::connect(edge.addr()).expect("connect to the Edge");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: edge\r\nTE: trailers\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).expect("a complete response");
    let raw = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("trailer: x-edge-truncated"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(
        body.ends_with("\r\n0\r\nx-edge-truncated: input\r\n\r\n"),
        "the last chunk carries the trailer: {:?}",
        &body[body.len().saturating_sub(80)..]
    );
    assert!(
        body.contains("worker_busy{pool=\"p099\"} 99\n") && !body.contains("xxxx"),
        "{expected:?} and not the long line"
    );
}

#[test]
fn sub_paths_and_queries_go_under_the_upstream_base_path() {
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let dir = temp_dir();
    let edge = filtering_edge_with(
        &format!("{}/app/metrics", up.url()),
        &dir,
        "edge-paths",
        json!({}),
        json!({"intake": {"relay_other_paths": false}}),
    );
    for (path, upstream_path) in [
        ("/metrics/sub?x=1", "/app/metrics/sub?x=1"),
        (
            "/metrics?module=http_2xx&target=a.example",
            "/app/metrics?module=http_2xx&target=a.example",
        ),
        ("/metrics", "/app/metrics"),
    ] {
        let r = http_get(&edge.url(path), &[]).unwrap();
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.text(), WITHOUT_DEBUG, "{path} is a filtered scrape");
        assert_eq!(
            up.last_request().unwrap().path_and_query,
            upstream_path,
            "{path}"
        );
    }
    // Reserved paths, and with relaying off unknown ones, never reach the
    // upstream.
    let before = up.recorded().len();
    for path in ["/other", "/_edge/nothing", "/metricsx"] {
        let r = http_get(&edge.url(path), &[]).unwrap();
        assert_eq!(r.status, 404, "{path}");
    }
    assert_eq!(up.recorded().len(), before);
}

#[test]
fn head_is_forwarded_without_body_or_length() {
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let dir = temp_dir();
    for edge in [
        filtering_edge(&up.url(), &dir, "edge-head", json!({})),
        passthrough_edge(&up.url(), &dir, "edge-head-raw"),
    ] {
        let r = http_request("HEAD", &edge.url("/metrics"), &[]).unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        assert_eq!(r.header("content-type"), Some(TEXT));
        assert_eq!(
            r.header("content-length"),
            None,
            "HEAD answers carry no Content-Length (R-11.4)"
        );
        assert_eq!(up.last_request().unwrap().method, "HEAD");
        // The Edge still serves GET afterwards.
        let r = scrape(&edge, &[]);
        assert_eq!(r.status, 200);
        assert_eq!(up.last_request().unwrap().method, "GET");
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Splits `k="v",…}rest` (the text after `{`) into the label text and
/// `rest`, checking names, quoting and escapes.
fn split_labels<'a>(inner: &'a str, line: &str) -> (&'a str, &'a str) {
    let b = inner.as_bytes();
    let mut i = 0;
    loop {
        if b.get(i) == Some(&b'}') {
            return (&inner[..i], &inner[i + 1..]);
        }
        let key_start = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        assert!(
            is_metric_name(&inner[key_start..i]),
            "label name in {line:?}"
        );
        i += 1;
        assert_eq!(b.get(i), Some(&b'"'), "quoted label value in {line:?}");
        i += 1;
        loop {
            match b.get(i) {
                None => panic!("unterminated label value in {line:?}"),
                Some(b'\\') => {
                    assert!(
                        matches!(b.get(i + 1), Some(b'\\' | b'"' | b'n')),
                        "bad escape in {line:?}"
                    );
                    i += 2;
                }
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(_) => i += 1,
            }
        }
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {}
            other => panic!("{other:?} after a label value in {line:?}"),
        }
    }
}

/// Checks a Prometheus text 0.0.4 exposition strictly enough to catch a
/// malformed line; returns the sample lines as `(name, labels, value)`.
fn parse_text_exposition(text: &str) -> Vec<(String, String, f64)> {
    let mut types: std::collections::HashMap<String, String> = Default::default();
    let mut seen = std::collections::HashSet::new();
    let mut samples = Vec::new();
    assert!(text.ends_with('\n'), "ends with a newline");
    for line in text.lines() {
        assert!(!line.is_empty(), "no blank lines");
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().unwrap_or_default();
            assert!(is_metric_name(name), "metadata names a metric: {line:?}");
            match kind {
                "HELP" => {}
                "TYPE" => {
                    let t = parts.next().unwrap_or_default();
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                        "{line:?}"
                    );
                    assert!(
                        types.insert(name.to_owned(), t.to_owned()).is_none(),
                        "one TYPE per family: {line:?}"
                    );
                }
                _ => panic!("unexpected comment {line:?}"),
            }
            continue;
        }
        assert!(!line.starts_with('#'), "{line:?}");
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("{line:?}"));
        let name = &line[..name_end];
        assert!(is_metric_name(name), "{line:?}");
        let (labels, rest) = match line[name_end..].strip_prefix('{') {
            Some(inner) => split_labels(inner, line),
            None => ("", &line[name_end..]),
        };
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("a space before the value: {line:?}"));
        let mut fields = value.split(' ');
        let v = match fields.next().unwrap() {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value {v:?}: {line:?}")),
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .unwrap_or_else(|_| panic!("bad timestamp: {line:?}"));
        }
        assert!(fields.next().is_none(), "{line:?}");
        let family = [name]
            .into_iter()
            .chain(name.strip_suffix("_bucket"))
            .chain(name.strip_suffix("_sum"))
            .chain(name.strip_suffix("_count"))
            .find(|f| types.contains_key(*f));
        assert!(family.is_some(), "{name} has a TYPE before it: {line:?}");
        assert!(
            seen.insert(format!("{name}{{{labels}}}")),
            "duplicate series {line:?}"
        );
        samples.push((name.to_owned(), labels.to_owned(), v));
    }
    assert!(!samples.is_empty());
    samples
}

#[test]
fn self_metrics_are_valid_prometheus_text() {
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::Gzip);
    let dir = temp_dir();
    let edge = filtering_edge(&up.url(), &dir, "edge-self", json!({}));
    for _ in 0..3 {
        let r = scrape(&edge, &[("Accept-Encoding", "gzip")]);
        assert_eq!(r.status, 200);
    }
    let r = http_get(&edge.url("/_edge/metrics"), &[]).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|ct| ct.starts_with("text/plain")),
        "{:?}",
        r.header("content-type")
    );
    let samples = parse_text_exposition(&r.text());
    let get = |name: &str, labels: &str| -> f64 {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .unwrap_or_else(|| panic!("{name}{{{labels}}} missing:\n{}", r.text()))
            .2
    };
    assert_eq!(get("edge_scrapes_total", "result=\"ok\""), 3.0);
    assert_eq!(get("edge_scrape_series_total", "decision=\"dropped\""), 6.0);
    assert_eq!(get("edge_scrape_series_total", "decision=\"kept\""), 9.0);
    assert_eq!(get("edge_scrape_duration_seconds_count", ""), 3.0);
    assert_eq!(
        get(
            "edge_policy_series_dropped_total",
            "policy_id=\"drop-debug\""
        ),
        6.0
    );
    assert_eq!(
        get("edge_policy_sync_total", "provider=\"local\",result=\"ok\""),
        1.0
    );
    assert!(get("edge_build_info", "version=\"0.1.0\"") == 1.0);

    // The real Prometheus tooling agrees, when it is installed.
    if let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(&r.body).unwrap();
        let out = child.wait_with_output().unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "promtool check metrics rejects /_edge/metrics: {report}"
        );
    }
}

#[test]
fn scrapes_beyond_the_concurrency_bound_get_503_with_retry_after() {
    let up = UpstreamSpec::new(EXPOSITION, TEXT)
        .behaviour(Behaviour::HangBeforeHeaders)
        .start();
    let dir = temp_dir();
    let edge = filtering_edge(
        &up.url(),
        &dir,
        "edge-busy",
        json!({"max_concurrent_scrapes": 1}),
    );
    let url = edge.url("/metrics");
    let first =
        std::thread::spawn(move || http_get(&url, &[("X-Prometheus-Scrape-Timeout-Seconds", "2")]));
    // Once the first scrape holds the only slot, the next one is refused.
    wait_for(Duration::from_secs(5), "the first scrape upstream", || {
        up.last_request().map(|_| ())
    });
    let refused = http_get(&edge.url("/metrics"), &[]).unwrap();
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(edge.self_metric("edge_scrape_rejected_total"), 1.0);
    // Health and self-metrics are not scrapes and are never refused.
    assert_eq!(http_get(&edge.url("/_health"), &[]).unwrap().status, 200);

    let first = first.join().unwrap().expect("an answer");
    assert_eq!(first.status, 504);
}

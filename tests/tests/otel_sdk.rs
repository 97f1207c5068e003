//! Real OpenTelemetry exporters through a real `tero-edge`: the Python SDK
//! (`opentelemetry-sdk` with the OTLP/HTTP and OTLP/gRPC exporters from
//! PyPI, `tests/fixtures/otel/send.py`) sends logs and spans to the Edge,
//! whose policies come from a real control plane; the Edge forwards to a
//! recording upstream. The test asserts the exact records kept, the
//! redactions, the sampling ratios within a stated tolerance, and the
//! statistics and volume the control plane stores.
//!
//! The SDK comes from `TERO_OTEL_PYTHON` (`.ci/run` installs it into a
//! venv) or a `python3` that can import it; without either the test is
//! skipped with a notice, unless `TERO_REQUIRE_OTEL=1`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use serde_json::{Value, json};
use tero_e2e::cli::tero_json_at;
use tero_e2e::control_plane::ControlPlane;
use tero_e2e::otel::{attribute, text};
use tero_e2e::push_sink::{PushSink, Reply};
use tero_e2e::{Edge, wait_for};
use tero_proto::otel::any_value::Value as Any;
use tero_proto::otlp_collector::logs::v1::ExportLogsServiceRequest;
use tero_proto::otlp_collector::trace::v1::ExportTraceServiceRequest;
use tero_proto::otlp_logs::LogRecord;
use tero_proto::otlp_trace::Span;

/// Records of each kind the script sends per run (see send.py): a debug
/// line, a sign-in line carrying an e-mail address and a payment line
/// with a request id; and per span kind, a health check and a checkout.
const PER_KIND: usize = 150;

const POLICIES: &str = r#"
policies:
  - id: drop-debug
    name: Drop debug logs
    log:
      match:
        - log_field: severity_text
          exact: DEBUG
      keep: none
  - id: redact-email
    name: Redact e-mail addresses in sign-in lines
    log:
      match:
        - log_attribute: kind
          exact: signin
      transform:
        redact:
          - log_field: body
            regex: "[A-Za-z0-9._%+-]+@example\\.com"
            replacement: "<email>"
  - id: sample-payments
    name: Keep half of the payment lines, by request id
    log:
      match:
        - log_attribute: kind
          exact: payment
      keep: 50%
      sample_key:
        log_attribute: request.id
  - id: sample-health-spans
    name: Keep a quarter of health-check spans
    trace:
      match:
        - trace_field: name
          exact: GET /healthz
      keep:
        percentage: 25
"#;

fn send(python: &PathBuf, edge: &Edge, protocol: &str) {
    let script = tero_e2e::otel::script("send.py");
    let output = Command::new(python)
        .arg(&script)
        .args(["--endpoint", &format!("http://{}", edge.addr())])
        .args(["--protocol", protocol])
        .args(["--logs", &PER_KIND.to_string()])
        .args(["--spans", &PER_KIND.to_string()])
        // The exporters must not find a proxy or other settings here.
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "send.py --protocol {protocol} failed:\n{}\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        edge.process.log()
    );
}

/// Everything that reached the upstream: log records and spans.
fn delivered(sink: &PushSink) -> (Vec<LogRecord>, Vec<Span>) {
    let (mut logs, mut spans) = (Vec::new(), Vec::new());
    for request in sink.received() {
        match request.path_and_query.as_str() {
            "/v1/logs" => {
                let decoded = ExportLogsServiceRequest::decode(request.body.as_slice())
                    .expect("the Edge forwards valid OTLP logs");
                logs.extend(
                    decoded
                        .resource_logs
                        .into_iter()
                        .flat_map(|r| r.scope_logs)
                        .flat_map(|s| s.log_records),
                );
            }
            "/v1/traces" => {
                let decoded = ExportTraceServiceRequest::decode(request.body.as_slice())
                    .expect("the Edge forwards valid OTLP traces");
                spans.extend(
                    decoded
                        .resource_spans
                        .into_iter()
                        .flat_map(|r| r.scope_spans)
                        .flat_map(|s| s.spans),
                );
            }
            other => panic!("unexpected upstream request to {other}"),
        }
    }
    (logs, spans)
}

/// A sample key's randomness: the low 56 bits of its FNV-1a-64 hash.
fn keyed_randomness(key: &str) -> u64 {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    hash & ((1 << 56) - 1)
}

fn int(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

#[test]
fn python_sdk_exporters_through_the_edge_keep_redact_sample_and_report() {
    let Some(python) = tero_e2e::otel::python() else {
        return;
    };
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let sink = PushSink::start();
    // An OTLP collector answers an export with an empty response message.
    sink.reply(Reply::new(200, "application/x-protobuf", Vec::new()));
    let cp = ControlPlane::start(dir.clone(), "cp-otel");
    let policy_file = dir.path().join("policies.yaml");
    std::fs::write(&policy_file, POLICIES).expect("write policies");
    let applied = tero_e2e::cli::tero_at(
        &cp,
        &[
            "policy",
            "apply",
            "-f",
            policy_file.to_str().expect("utf-8 path"),
        ],
    );
    applied.ok();
    let key = cp.create_key("otel-edge");
    let edge = Edge::start(
        json!({
            "upstream_url": sink.url(),
            "service": {"name": "checkout", "instance_id": "otel-edge-0"},
            "policy_providers": [cp.grpc_provider(&key)],
        }),
        dir.clone(),
        "edge-otel",
    );
    wait_for(
        Duration::from_secs(20),
        "the Edge holding the 4 policies",
        || {
            let policies = edge.policies();
            let loaded = policies["policies"].as_array()?.len();
            (loaded == 4).then_some(())
        },
    );

    send(&python, &edge, "http");
    send(&python, &edge, "grpc");

    let (logs, spans) = delivered(&sink);
    let runs = 2;
    let of_kind = |kind: &str| -> Vec<&LogRecord> {
        logs.iter()
            .filter(|r| attribute(r, "kind") == Some(kind))
            .collect()
    };

    // Debug lines: all dropped.
    assert!(of_kind("debug").is_empty(), "debug lines reached upstream");
    assert!(
        logs.iter().all(|r| r.severity_text != "DEBUG"),
        "a DEBUG record reached upstream"
    );

    // Sign-in lines: all kept, the address redacted, nothing else changed.
    let signins = of_kind("signin");
    assert_eq!(signins.len(), runs * PER_KIND, "every sign-in line is kept");
    for record in &signins {
        assert_eq!(text(record.body.as_ref()), Some("user <email> signed in"));
        assert_eq!(record.severity_text, "INFO");
        let seq = attribute(record, "seq");
        assert!(seq.is_none(), "seq is an int attribute, not a string");
    }

    // Payment lines: half kept, by request id, so both runs (same ids)
    // keep exactly the same ones: those whose randomness (policy-format.md
    // §4.3: the low 56 bits of FNV-1a-64 of the key) is at or above the
    // 50 % threshold.
    let payments = of_kind("payment");
    let mut kept: Vec<String> = payments
        .iter()
        .map(|r| attribute(r, "request.id").unwrap_or_default().to_owned())
        .collect();
    kept.sort_unstable();
    let mut expected: Vec<String> = (0..PER_KIND)
        .map(|i| format!("req-{i:05}"))
        .filter(|id| keyed_randomness(id) >= 1 << 55)
        .flat_map(|id| [id.clone(), id])
        .collect();
    expected.sort_unstable();
    assert_eq!(kept, expected, "the payments kept are the keyed sample's");
    let ratio = expected.len() as f64 / (runs * PER_KIND) as f64;
    assert!(
        (0.35..=0.70).contains(&ratio),
        "a 50 % keyed sample kept {ratio:.2} of 150 ids"
    );
    assert_eq!(
        logs.len(),
        signins.len() + payments.len(),
        "nothing but the kept lines reached upstream"
    );

    // Spans: every checkout kept untouched; a quarter of the health checks
    // kept (tolerance 10-40 % of 300, random trace ids), each carrying the
    // applied threshold in its tracestate.
    let checkouts: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "POST /checkout")
        .collect();
    assert_eq!(
        checkouts.len(),
        runs * PER_KIND,
        "every checkout span is kept"
    );
    assert!(checkouts.iter().all(|s| s.trace_state.is_empty()));
    let health: Vec<&Span> = spans.iter().filter(|s| s.name == "GET /healthz").collect();
    let ratio = health.len() as f64 / (runs * PER_KIND) as f64;
    assert!(
        (0.10..=0.40).contains(&ratio),
        "health-check spans kept {} of {} ({ratio:.2}), outside 0.10-0.40",
        health.len(),
        runs * PER_KIND
    );
    for span in &health {
        assert!(
            span.trace_state.contains("ot=th:c"),
            "a sampled span records its 25 % threshold: {:?}",
            span.trace_state
        );
    }

    // What the control plane stores: the drops, and the volume the edge saw.
    let debug_lines = (runs * PER_KIND) as i64;
    let stats = wait_for(Duration::from_secs(20), "drop-debug statistics", || {
        let stats = tero_json_at(&cp, &["stats", "drop-debug", "--since", "1h"]);
        (int(&stats["volumeShare"]["recordsSeen"]) >= 3 * debug_lines
            && int(&stats["total"]["hits"]) >= debug_lines)
            .then_some(stats)
    });
    assert_eq!(int(&stats["total"]["hits"]), debug_lines, "{stats}");
    assert_eq!(
        int(&stats["total"]["seriesDropped"]),
        debug_lines,
        "{stats}"
    );
    assert!(int(&stats["total"]["bytesDropped"]) > 0, "{stats}");
    let share = &stats["volumeShare"];
    assert_eq!(int(&share["recordsSeen"]), 3 * debug_lines, "{stats}");
    assert_eq!(int(&share["recordsDropped"]), debug_lines, "{stats}");
    let redactions = wait_for(Duration::from_secs(20), "redact-email statistics", || {
        let stats = tero_json_at(&cp, &["stats", "redact-email", "--since", "1h"]);
        (int(&stats["total"]["hits"]) >= debug_lines).then_some(stats)
    });
    assert_eq!(
        int(&redactions["total"]["hits"]),
        debug_lines,
        "{redactions}"
    );
    let spans_stats = wait_for(
        Duration::from_secs(20),
        "sample-health-spans statistics",
        || {
            let stats = tero_json_at(&cp, &["stats", "sample-health-spans", "--since", "1h"]);
            let total = &stats["total"];
            (int(&total["hits"]) >= debug_lines).then_some(stats)
        },
    );
    // The deciding policy hits whether it samples a span in or out.
    let total = &spans_stats["total"];
    assert_eq!(int(&total["hits"]), debug_lines, "{spans_stats}");
    assert_eq!(
        int(&total["seriesDropped"]),
        debug_lines - health.len() as i64,
        "{spans_stats}"
    );
}

/// What reached the upstream, as `(kind, seq)` of each log record.
fn delivered_lines(sink: &PushSink) -> Vec<(String, i64)> {
    let (logs, _) = delivered(sink);
    logs.iter()
        .map(|r| {
            let seq = r
                .attributes
                .iter()
                .find(|kv| kv.key == "seq")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Any::IntValue(n) => Some(*n),
                    _ => None,
                });
            (
                attribute(r, "kind").unwrap_or_default().to_owned(),
                seq.unwrap_or(-1),
            )
        })
        .collect()
}

#[test]
fn an_exporter_retrying_through_an_upstream_outage_delivers_every_record_once() {
    let Some(python) = tero_e2e::otel::python() else {
        return;
    };
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let policies = dir.path().join("policies.yaml");
    std::fs::write(&policies, POLICIES).expect("write policies");
    // The upstream is down when the exporter starts sending.
    let port = tero_e2e::free_port();
    let edge = Edge::start(
        json!({
            "upstream_url": format!("http://127.0.0.1:{port}"),
            "service": {"name": "checkout", "instance_id": "otel-outage-0"},
            "policy_providers": [{"id": "local", "type": "file", "path": policies}],
        }),
        dir.clone(),
        "edge-outage",
    );
    let script = tero_e2e::otel::script("send.py");
    let sender = Command::new(&python)
        .arg(&script)
        .args(["--endpoint", &format!("http://{}", edge.addr())])
        .args(["--protocol", "http", "--logs", "40"])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    // The Edge refused at least one export as retryable (502 +
    // Retry-After) before the upstream comes back.
    wait_for(Duration::from_secs(20), "a refused export", || {
        let text = edge.self_metrics();
        text.lines()
            .any(|l| l.starts_with("edge_intake_requests_total{") && l.contains("upstream_failed"))
            .then_some(())
    });
    let sink = PushSink::start_on(port);
    sink.reply(Reply::new(200, "application/x-protobuf", Vec::new()));
    let output = sender.wait_with_output().expect("python finishes");
    assert!(
        output.status.success(),
        "the exporter gave up:\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        edge.process.log()
    );

    // Every sign-in and payment line the policies keep arrived, once; no
    // debug line did.
    let mut lines = delivered_lines(&sink);
    lines.sort();
    let mut expected: Vec<(String, i64)> = (0..40)
        .map(|i| ("signin".to_owned(), i))
        .chain(
            (0..40)
                .filter(|i| keyed_randomness(&format!("req-{i:05}")) >= 1 << 55)
                .map(|i| ("payment".to_owned(), i)),
        )
        .collect();
    expected.sort();
    assert_eq!(lines, expected, "each kept line delivered exactly once");
}

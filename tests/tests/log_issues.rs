//! Issues for logs and traces, end to end: an application instrumented
//! with the OpenTelemetry Python SDK (`tests/fixtures/otel/app.py`) pushes
//! logs and spans through a real `tero-edge` to a recording sink; the edge
//! reports its log templates and span patterns to a real
//! `tero-control-plane`, which classifies them (the embedded classifier,
//! or the OpenAI provider against a local server speaking its API),
//! raises issues with estimates and recommended policies, and measures
//! the policies once accepted through the real `tero` CLI.
//!
//! The application plants, per request: a kube-probe health-check log, a
//! debug line in plain text (the level only in the message), an order line
//! whose `message` attribute carries an e-mail address (and the user id
//! twice), a health-check span and a checkout span. Every figure asserted
//! is computed here from what the application sent (requests per phase);
//! nothing is read back from the product to compare with itself.
//!
//! Skipped with a notice without the Python SDK, unless
//! `TERO_REQUIRE_OTEL=1` (as `.ci/run` sets).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message as _;
use serde_json::{Value, json};
use tero_e2e::cli::{json_u64, tero_at, tero_json_at};
use tero_e2e::control_plane::ControlPlane;
use tero_e2e::fake_openai::FakeOpenAi;
use tero_e2e::otel::attribute;
use tero_e2e::push_sink::{PushSink, Reply};
use tero_e2e::{Edge, wait_for};
use tero_proto::otlp_collector::logs::v1::ExportLogsServiceRequest;
use tero_proto::otlp_logs::LogRecord;

const SERVICE: &str = "shop";
const INSTANCE: &str = "shop-edge-0";
/// What distinguishes the planted e-mail addresses (`zq<n>x.buyer@…`):
/// found anywhere in the control plane's files, an address leaked.
const EMAIL_MARK: &[u8] = b"x.buyer@";

/// Runs the application for `requests` requests tagged `phase`.
fn run_app(python: &Path, edge: &Edge, phase: &str, requests: usize) {
    let script = tero_e2e::otel::script("app.py");
    let output = Command::new(python)
        .arg(&script)
        .args(["--endpoint", &format!("http://{}", edge.addr())])
        .args(["--requests", &requests.to_string()])
        .args(["--phase", phase, "--service", SERVICE])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "app.py --phase {phase} failed:\n{}\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        edge.process.log()
    );
}

/// Every log record that reached the sink.
fn delivered_logs(sink: &PushSink) -> Vec<LogRecord> {
    sink.received()
        .iter()
        .filter(|r| r.path_and_query == "/v1/logs")
        .flat_map(|r| {
            ExportLogsServiceRequest::decode(r.body.as_slice())
                .expect("the edge forwards valid OTLP logs")
                .resource_logs
                .into_iter()
                .flat_map(|r| r.scope_logs)
                .flat_map(|s| s.log_records)
        })
        .collect()
}

/// Records of `kind` from `phase` that reached the sink.
fn delivered<'a>(logs: &'a [LogRecord], phase: &str, kind: &str) -> Vec<&'a LogRecord> {
    logs.iter()
        .filter(|r| attribute(r, "phase") == Some(phase) && attribute(r, "kind") == Some(kind))
        .collect()
}

fn issues(cp: &ControlPlane) -> Vec<Value> {
    let listed = tero_json_at(cp, &["issues", "list", "--service", SERVICE]);
    listed["issues"]
        .as_array()
        .or_else(|| listed.as_array())
        .cloned()
        .unwrap_or_default()
}

fn of_kind(issues: &[Value], kind: &str) -> Vec<Value> {
    issues
        .iter()
        .filter(|i| i["kind"] == kind)
        .cloned()
        .collect()
}

/// One policy's impact, from `tero impact POLICY -o json`.
fn impact(cp: &ControlPlane, policy_id: &str) -> Value {
    let all = tero_json_at(cp, &["impact", policy_id]);
    let list = all.as_array().expect("impact -o json is an array");
    assert_eq!(list.len(), 1, "{all}");
    list[0].clone()
}

/// Whether the edge runs `policy_id` in `mode` (`active` or `shadow`).
fn edge_runs(edge: &Edge, policy_id: &str, mode: &str) -> bool {
    edge.policies()["policies"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["id"] == policy_id && p["mode"] == mode))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn within(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= expected * tolerance
}

/// Waits until the control plane has counted the application's event
/// types: `logs` log records and `spans` spans sampled (the test's edge
/// samples every record).
fn wait_for_event_types(cp: &ControlPlane, logs: u64, spans: u64) {
    wait_for(
        Duration::from_secs(30),
        "templates and span patterns",
        || {
            let listed = tero_json_at(cp, &["classify", "list", "--service", SERVICE]);
            let events = listed.as_array()?.clone();
            let count = |kind: &str| -> u64 {
                events
                    .iter()
                    .filter(|e| e["kind"] == kind)
                    .map(|e| json_u64(&e["count"]))
                    .sum()
            };
            (count("log") >= logs && count("span") >= spans).then_some(())
        },
    );
}

/// Every file under the control plane's data directory, and no planted
/// address in any of them (the database, its WAL, anything else).
fn assert_no_address_stored(cp: &ControlPlane) {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, files);
            } else {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&cp.dir.path().join(&cp.name), &mut files);
    assert!(!files.is_empty(), "the control plane stores something");
    for file in files {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes.windows(EMAIL_MARK.len()).any(|w| w == EMAIL_MARK),
            "a planted e-mail address reached the control plane's store: {}",
            file.display()
        );
    }
}

fn start_edge(cp: &ControlPlane, sink: &PushSink, dir: &Arc<tempfile::TempDir>) -> Edge {
    let key = cp.create_key("shop-edge");
    Edge::start(
        json!({
            "upstream_url": sink.url(),
            "service": {"name": SERVICE, "instance_id": INSTANCE},
            "policy_providers": [cp.grpc_provider(&key)],
            "inventory": {"interval_secs": 1},
            // Every record is a sample, so the template counts are exact.
            "intake": {"log_samples_per_second": 100000, "span_samples_per_second": 100000},
        }),
        dir.clone(),
        "edge-shop",
    )
}

fn started_sink() -> PushSink {
    let sink = PushSink::start();
    sink.reply(Reply::new(200, "application/x-protobuf", Vec::new()));
    sink
}

#[test]
fn planted_log_and_trace_waste_is_found_accepted_measured_and_redacted() {
    let Some(python) = tero_e2e::otel::python() else {
        return;
    };
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let sink = started_sink();
    let cp = ControlPlane::start(dir.clone(), "cp-logs");
    let edge = start_edge(&cp, &sink, &dir);

    // 1. The application runs; the edge reports what it sampled.
    const FIRST: usize = 300;
    run_app(&python, &edge, "a", FIRST);
    wait_for_event_types(&cp, 3 * FIRST as u64, 2 * FIRST as u64);
    let logs = delivered_logs(&sink);
    assert_eq!(
        delivered(&logs, "a", "health").len(),
        FIRST,
        "no policy yet: everything reaches the sink"
    );

    // 2. Classification with the embedded classifier raises the issues.
    tero_at(&cp, &["classify", "run"]).ok();
    let found = wait_for(Duration::from_secs(60), "log and span issues", || {
        let all = issues(&cp);
        let kinds = [
            "health_check_logs",
            "debug_logs",
            "sensitive_log_data",
            "health_check_spans",
        ];
        kinds
            .iter()
            .all(|k| !of_kind(&all, k).is_empty())
            .then_some(all)
    });
    let listing = serde_json::to_string_pretty(&found).unwrap_or_default();
    // Exactly one issue per planted waste; the order line and the checkout
    // span are business traffic and raise no waste issue.
    for kind in ["health_check_logs", "debug_logs", "health_check_spans"] {
        assert_eq!(of_kind(&found, kind).len(), 1, "{kind}: {listing}");
    }
    for kind in [
        "bot_logs",
        "synthetic_logs",
        "noisy_logs",
        "synthetic_spans",
    ] {
        assert!(of_kind(&found, kind).is_empty(), "{kind}: {listing}");
    }

    let health_summary = of_kind(&found, "health_check_logs").remove(0);
    let health_id = health_summary["id"].as_str().expect("an id").to_owned();
    let health = tero_json_at(&cp, &["issues", "show", &health_id]);
    let evidence = &health["evidence"];
    // A third of the records the service sent are health checks.
    let share = evidence["volumeShare"].as_f64().unwrap_or_default();
    assert!(
        within(share, 1.0 / 3.0, 0.05),
        "volume share {share}: {health}"
    );
    let per_day = json_u64(&health["estimate"]["recordsPerDay"]);
    assert!(per_day > 0, "an estimate in records per day: {health}");
    assert_eq!(json_u64(&evidence["recordsPerDay"]), per_day, "{health}");
    assert!(
        health["estimate"]["costPerMonth"]
            .as_f64()
            .unwrap_or_default()
            > 0.0
    );
    assert_eq!(evidence["category"], "health_check", "{health}");
    assert!(
        health["provenance"]["classifier"]
            .as_str()
            .is_some_and(|c| c.starts_with("embedded/")),
        "{health}"
    );
    let examples = evidence["exampleRecords"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!examples.is_empty(), "example records: {health}");
    assert!(
        examples
            .iter()
            .all(|e| e.as_str().is_some_and(|e| e.contains("/healthz"))),
        "{health}"
    );
    let edges = evidence["edges"].as_array().cloned().unwrap_or_default();
    assert_eq!(edges, [json!(INSTANCE)], "{health}");
    // The recommended policy drops the template's records, scoped to the
    // service.
    let policy = &health["recommended"]["policy"];
    assert_eq!(policy["log"]["keep"], "none", "{health}");
    assert!(
        health["recommended"]["scope"].to_string().contains(SERVICE),
        "{health}"
    );

    let debug = of_kind(&found, "debug_logs").remove(0);
    let debug = tero_json_at(&cp, &["issues", "show", debug["id"].as_str().expect("id")]);
    assert_eq!(debug["evidence"]["category"], "debug_noise", "{debug}");
    assert!(
        within(
            debug["evidence"]["volumeShare"]
                .as_f64()
                .unwrap_or_default(),
            1.0 / 3.0,
            0.05
        ),
        "{debug}"
    );

    let sensitive = of_kind(&found, "sensitive_log_data");
    let sensitive = sensitive
        .iter()
        .find(|i| i["subject"] == "attribute:message")
        .unwrap_or_else(|| panic!("a finding on the message attribute: {listing}"));
    assert_eq!(sensitive["domain"], "compliance", "{sensitive}");
    let sensitive_id = sensitive["id"].as_str().expect("id").to_owned();
    let sensitive = tero_json_at(&cp, &["issues", "show", &sensitive_id]);
    let redact = &sensitive["recommended"]["policy"]["log"]["transform"]["redact"];
    assert!(
        redact.as_array().is_some_and(|r| !r.is_empty()),
        "a redaction, never a drop: {sensitive}"
    );
    let keep = &sensitive["recommended"]["policy"]["log"]["keep"];
    assert!(keep.is_null() || keep == "all", "{sensitive}");

    // The user id written twice: the camelCase copy goes.
    let duplicated = of_kind(&found, "duplicated_log_fields");
    let duplicated = duplicated
        .iter()
        .find(|i| i["subject"] == "attribute:userId")
        .unwrap_or_else(|| panic!("userId duplicating user_id: {listing}"));
    let duplicated = tero_json_at(
        &cp,
        &["issues", "show", duplicated["id"].as_str().expect("id")],
    );
    let remove = &duplicated["recommended"]["policy"]["log"]["transform"]["remove"];
    assert!(
        remove.to_string().contains("userId") && !remove.to_string().contains("user_id"),
        "{duplicated}"
    );

    // The health-check spans get a trace sampling policy that keeps none
    // of them (failing ones excepted).
    let spans = of_kind(&found, "health_check_spans").remove(0);
    let spans = tero_json_at(&cp, &["issues", "show", spans["id"].as_str().expect("id")]);
    let trace = &spans["recommended"]["policy"]["trace"];
    assert!(trace.is_object(), "{spans}");
    assert!(
        trace["match"].to_string().contains("GET /healthz"),
        "{spans}"
    );
    assert!(
        trace["keep"]["percentage"].as_f64().unwrap_or_default() == 0.0,
        "{spans}"
    );
    eprintln!("issues found: {listing}");

    // 3. Accepted in shadow: delivered and counted, nothing dropped.
    let accepted = tero_json_at(&cp, &["issues", "accept", &health_id]);
    let policy_id = accepted["issue"]["policyId"]
        .as_str()
        .expect("a policy id")
        .to_owned();
    wait_for(
        Duration::from_secs(30),
        "the edge running it in shadow",
        || edge_runs(&edge, &policy_id, "shadow").then_some(()),
    );
    const SHADOW: usize = 200;
    run_app(&python, &edge, "b", SHADOW);
    let logs = delivered_logs(&sink);
    assert_eq!(
        delivered(&logs, "b", "health").len(),
        SHADOW,
        "shadow drops nothing"
    );
    let shadow = wait_for(Duration::from_secs(30), "the shadow impact", || {
        let impact = impact(&cp, &policy_id);
        (json_u64(&impact["recordsDropped"]) >= SHADOW as u64).then_some(impact)
    });
    assert_eq!(shadow["mode"], "shadow", "{shadow}");
    assert_eq!(shadow["signal"], "log", "{shadow}");
    let would = json_u64(&shadow["recordsDropped"]) as f64;
    assert!(
        within(would, SHADOW as f64, 0.05),
        "would drop {would} of {SHADOW} health-check records: {shadow}"
    );

    // 4. Promoted to active: the health checks stop reaching the sink; the
    // other records still do. The active measurement starts on a fresh
    // minute; the application runs once it has.
    let promoted = tero_json_at(&cp, &["issues", "accept", &health_id, "--mode", "active"]);
    assert_eq!(
        promoted["issue"]["remediation"], "policy_active",
        "{promoted}"
    );
    wait_for(Duration::from_secs(30), "the edge enforcing it", || {
        edge_runs(&edge, &policy_id, "active").then_some(())
    });
    let since = impact(&cp, &policy_id)["measuredSinceUnixMs"]
        .as_str()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or_default();
    let wait = (since - now_ms()).max(0) as u64 + 1_500;
    std::thread::sleep(Duration::from_millis(wait));
    const ACTIVE: usize = 200;
    run_app(&python, &edge, "c", ACTIVE);
    let logs = delivered_logs(&sink);
    assert!(
        delivered(&logs, "c", "health").is_empty(),
        "an active policy drops the health checks"
    );
    assert_eq!(delivered(&logs, "c", "debug").len(), ACTIVE);
    assert_eq!(delivered(&logs, "c", "order").len(), ACTIVE);
    let active = wait_for(Duration::from_secs(30), "the active impact", || {
        let impact = impact(&cp, &policy_id);
        (impact["mode"] == "active" && json_u64(&impact["recordsDropped"]) >= ACTIVE as u64)
            .then_some(impact)
    });
    let dropped = json_u64(&active["recordsDropped"]) as f64;
    assert!(
        within(dropped, ACTIVE as f64, 0.05),
        "dropped {dropped} of {ACTIVE} health-check records: {active}"
    );
    assert!(json_u64(&active["bytesDropped"]) > 0, "{active}");

    // 5. The compliance issue, accepted active, redacts the addresses.
    let redacting = tero_json_at(
        &cp,
        &["issues", "accept", &sensitive_id, "--mode", "active"],
    );
    let redact_id = redacting["issue"]["policyId"]
        .as_str()
        .expect("a policy id")
        .to_owned();
    wait_for(Duration::from_secs(30), "the edge redacting", || {
        edge_runs(&edge, &redact_id, "active").then_some(())
    });
    const REDACTED: usize = 50;
    run_app(&python, &edge, "d", REDACTED);
    let logs = delivered_logs(&sink);
    let orders = delivered(&logs, "d", "order");
    assert_eq!(orders.len(), REDACTED, "a redaction keeps every record");
    for order in &orders {
        let message = attribute(order, "message").unwrap_or_default();
        assert!(
            message.starts_with("receipt sent to ") && !message.contains("x.buyer@"),
            "the address is redacted: {message:?}"
        );
    }

    // 6. No address ever reached the control plane's store.
    assert_no_address_stored(&cp);
}

#[test]
fn an_ai_classifier_raises_the_same_issues_and_sees_no_address() {
    let Some(python) = tero_e2e::otel::python() else {
        return;
    };
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let fake = FakeOpenAi::start();
    let sink = started_sink();
    let url = fake.url();
    let cp = ControlPlane::start_with(
        dir.clone(),
        "cp-logs-ai",
        None,
        &[
            "--classifier",
            "openai",
            "--classifier-base-url",
            &url,
            "--classifier-api-key",
            "sk-test",
            "--classify-interval-secs",
            "0",
        ],
    );
    let edge = start_edge(&cp, &sink, &dir);
    const REQUESTS: usize = 120;
    run_app(&python, &edge, "a", REQUESTS);
    wait_for_event_types(&cp, 3 * REQUESTS as u64, 2 * REQUESTS as u64);
    tero_at(&cp, &["classify", "run"]).ok();
    assert!(fake.requests() > 0, "the provider was asked");
    let found = wait_for(
        Duration::from_secs(60),
        "issues from the AI classifier",
        || {
            let all = issues(&cp);
            (!of_kind(&all, "health_check_logs").is_empty()
                && !of_kind(&all, "debug_logs").is_empty())
            .then_some(all)
        },
    );
    for kind in ["health_check_logs", "debug_logs"] {
        let issue = of_kind(&found, kind).remove(0);
        let shown = tero_json_at(&cp, &["issues", "show", issue["id"].as_str().expect("id")]);
        assert!(
            shown["provenance"]["classifier"]
                .as_str()
                .is_some_and(|c| c.starts_with("openai/")),
            "{shown}"
        );
        assert!(
            within(
                shown["evidence"]["volumeShare"]
                    .as_f64()
                    .unwrap_or_default(),
                1.0 / 3.0,
                0.05
            ),
            "{shown}"
        );
        assert!(shown["recommended"]["policy"]["log"].is_object(), "{shown}");
    }
    for body in fake.bodies() {
        assert!(
            !body.contains("x.buyer@"),
            "an address was sent to the provider: {body}"
        );
    }
    assert_no_address_stored(&cp);
}

//! Classification end to end: log samples posted to a real `tero-edge`
//! (reported with its inventory) and submitted through the real `tero`
//! CLI, metric families from the edge's inventory, a real
//! `tero-control-plane` classifying them with the OpenAI provider against a
//! local server speaking that API (the real one cannot be reached here),
//! and the promise that makes cost scale with diversity: a second run, a
//! restarted control plane, and another replica make no provider call.
//!
//! The expected event types are counted here from the corpus this test
//! generates; nothing is read back from the product to compare with itself.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tero_e2e::cli::{json_u64, tero_at, tero_json_at};
use tero_e2e::control_plane::{ControlPlane, PgDatabase, request_bytes};
use tero_e2e::fake_openai::{FakeOpenAi, INPUT_TOKENS_PER_EVENT, OUTPUT_TOKENS_PER_REPLY};
use tero_e2e::fixtures::TEXT;
use tero_e2e::upstream::{Compression, Upstream};
use tero_e2e::{Edge, wait_for};

const SERVICE: &str = "checkout";
/// Event types per request (the OpenAI provider's default batch).
const BATCH: u64 = 20;
/// A secret and an address that appear in the logs and must never reach
/// the provider.
const SECRET: &str = "sk_live_51HxYzAbCdEfGh1234567890QwErTy";
const EMAIL: &str = "jane.doe@example.com";

const METRICS: &str = "# HELP http_requests_total Requests served.\n\
# TYPE http_requests_total counter\n\
http_requests_total{code=\"200\"} 10\n\
http_requests_total{code=\"500\"} 1\n\
# HELP debug_loop_iterations Iterations of the debug loop.\n\
# TYPE debug_loop_iterations gauge\n\
debug_loop_iterations 7\n";
const FAMILIES: u64 = 2;

/// The event types the edge's logs hold, one line shape each: the
/// variable parts vary from line to line.
fn edge_lines(round: usize, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for i in 0..n {
        let k = round * 1000 + i;
        lines.push(format!("GET /healthz returned 200 in {} ms", k % 97));
        lines.push(format!(
            "login succeeded for user u{k} from 10.1.{}.{}",
            k % 200,
            k % 250
        ));
        lines.push(format!("order {} shipped via carrier dhl", 500_000 + k));
        lines.push(format!(
            "payment {} declined for {EMAIL} using key {SECRET}",
            9_000 + k
        ));
    }
    lines
}
const EDGE_TEMPLATES: u64 = 4;

/// The event types submitted through the API (another service's logs).
fn api_lines(round: usize, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for i in 0..n {
        let k = round * 1000 + i;
        lines.push(format!("DEBUG cache warmup step {k} done"));
        lines.push(format!(
            "retrying connection to db-{} after {} ms",
            k % 7,
            k * 3
        ));
        lines.push(format!("invoice {} emailed", 77_000 + k));
    }
    lines
}
const API_TEMPLATES: u64 = 3;

fn event_types(cp: &ControlPlane, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["classify", "list"];
    args.extend(extra);
    let listed = tero_json_at(cp, &args);
    listed
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("a JSON array of event types: {listed}"))
}

fn submit_api_logs(cp: &ControlPlane, dir: &std::path::Path, round: usize, n: usize) {
    let file = dir.join(format!("api-{round}.log"));
    std::fs::write(&file, api_lines(round, n).join("\n")).expect("write log file");
    let file = file.display().to_string();
    tero_at(cp, &["logs", "submit", &file, "--service", "billing"]).ok();
}

fn post_edge_logs(edge: &Edge, lines: &[String]) {
    let body = lines.join("\n");
    let resp = request_bytes(
        "POST",
        &edge.url("/_edge/logs"),
        &[("content-type", "text/plain")],
        Some(body.as_bytes()),
    )
    .expect("post logs to the edge");
    assert_eq!(resp.status, 202, "{}", resp.text());
}

/// Waits until the control plane counts `lines` log lines for `service`.
fn wait_for_lines(cp: &ControlPlane, service: &str, lines: u64) {
    wait_for(Duration::from_secs(30), "log lines counted", || {
        let listed = event_types(cp, &["--service", service, "--kind", "log"]);
        let counted: u64 = listed.iter().map(|e| json_u64(&e["count"])).sum();
        (counted == lines).then_some(())
    });
}

fn classifier_args(fake: &FakeOpenAi) -> Vec<String> {
    vec![
        "--classifier".into(),
        "openai".into(),
        "--classifier-base-url".into(),
        fake.url(),
        "--classifier-api-key".into(),
        "sk-test".into(),
        "--classify-interval-secs".into(),
        "0".into(),
    ]
}

fn start_cp(
    dir: &Arc<tempfile::TempDir>,
    name: &str,
    port: Option<u16>,
    database_url: Option<&str>,
    fake: &FakeOpenAi,
) -> ControlPlane {
    let args = classifier_args(fake);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match port {
        Some(port) => ControlPlane::start_on(port, dir.clone(), name, database_url, &args),
        None => ControlPlane::start_with(dir.clone(), name, database_url, &args),
    }
}

#[test]
fn event_types_are_classified_once_across_runs_and_restarts() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let fake = FakeOpenAi::start();
    let up = Upstream::start(METRICS.as_bytes().to_vec(), TEXT, Compression::None);
    let mut cp = start_cp(&dir, "cp-classify", None, None, &fake);
    let key = cp.create_key("checkout-edge");
    let edge = Edge::start(
        json!({
            "upstream_url": up.url(),
            "service": {"name": SERVICE, "instance_id": "checkout-0"},
            "policy_providers": [cp.grpc_provider(&key)],
            "inventory": {"interval_secs": 1, "sample_every_secs": 1},
        }),
        dir.clone(),
        "edge-checkout",
    );

    // Logs through the edge, logs through the CLI, a scrape for the
    // inventory.
    let first = edge_lines(0, 25);
    post_edge_logs(&edge, &first);
    submit_api_logs(&cp, dir.path(), 0, 20);
    let scraped = tero_e2e::http_get(&edge.url("/metrics"), &[]).expect("scrape the edge");
    assert_eq!(scraped.status, 200);
    wait_for_lines(&cp, SERVICE, first.len() as u64);
    wait_for_lines(&cp, "billing", 60);
    wait_for(Duration::from_secs(30), "the edge's inventory", || {
        let (status, body) = cp.api("GET", &format!("/api/v1/inventory/{SERVICE}"), None);
        (status == 200 && body["families"].as_array().is_some_and(|f| f.len() == 2)).then_some(())
    });
    let logs = event_types(&cp, &["--kind", "log"]);
    assert_eq!(
        logs.len() as u64,
        EDGE_TEMPLATES + API_TEMPLATES,
        "one event type per line shape: {logs:#?}"
    );
    assert!(fake.requests() == 0, "nothing is classified before a run");

    // The first run sends every event type once, in batches.
    let expected = EDGE_TEMPLATES + API_TEMPLATES + FAMILIES;
    let run = tero_json_at(&cp, &["classify", "run"]);
    assert_eq!(json_u64(&run["eventTypes"]), expected, "{run}");
    assert_eq!(json_u64(&run["submitted"]), expected, "{run}");
    assert_eq!(json_u64(&run["classified"]), expected, "{run}");
    assert_eq!(json_u64(&run["cached"]), 0, "{run}");
    let calls = expected.div_ceil(BATCH);
    assert_eq!(fake.requests(), calls);
    let usage = &run["usage"][0];
    assert!(
        usage["classifier"]
            .as_str()
            .is_some_and(|c| c.starts_with("openai/")),
        "{run}"
    );
    assert_eq!(
        json_u64(&usage["inputTokens"]),
        expected * INPUT_TOKENS_PER_EVENT
    );
    assert_eq!(
        json_u64(&usage["outputTokens"]),
        calls * OUTPUT_TOKENS_PER_REPLY
    );
    assert_eq!(json_u64(&usage["requests"]), calls);

    // Only masked samples left the control plane.
    let sent = fake.bodies().join("\n");
    assert!(sent.contains("healthz"), "event types were sent");
    assert!(!sent.contains(SECRET), "a secret reached the provider");
    assert!(
        !sent.contains(EMAIL),
        "an e-mail address reached the provider"
    );

    // The classifications, as the fake model decided them.
    let health: Vec<Value> = event_types(&cp, &["--category", "health_check"]);
    assert_eq!(health.len(), 1, "{health:#?}");
    assert!(
        health[0]["name"]
            .as_str()
            .unwrap_or_default()
            .contains("healthz")
    );
    let status = tero_json_at(&cp, &["classify", "status"]);
    assert_eq!(json_u64(&status["eventTypes"]), expected, "{status}");
    assert_eq!(json_u64(&status["classified"]), expected, "{status}");
    assert_eq!(
        json_u64(&status["usage"][0]["inputTokens"]),
        expected * INPUT_TOKENS_PER_EVENT
    );
    let table = tero_at(&cp, &["classify", "status"]).ok();
    assert!(table.contains("openai/"), "{table}");

    // A second run: everything is answered by the cache.
    let again = tero_json_at(&cp, &["classify", "run"]);
    assert_eq!(json_u64(&again["cached"]), expected, "{again}");
    assert_eq!(json_u64(&again["submitted"]), 0, "{again}");
    assert_eq!(fake.requests(), calls, "the second run called the provider");

    // More lines of the same shapes, through a restarted control plane:
    // its miner starts afresh, the edge's keeps going.
    let port = cp.port;
    cp.process.terminate(Duration::from_secs(10));
    let cp = start_cp(&dir, "cp-classify", Some(port), None, &fake);
    let second = edge_lines(1, 10);
    post_edge_logs(&edge, &second);
    submit_api_logs(&cp, dir.path(), 1, 5);
    wait_for_lines(&cp, SERVICE, (first.len() + second.len()) as u64);
    wait_for_lines(&cp, "billing", 75);
    let after = tero_json_at(&cp, &["classify", "run"]);
    assert_eq!(json_u64(&after["eventTypes"]), expected, "{after}");
    assert_eq!(json_u64(&after["submitted"]), 0, "{after}");
    assert_eq!(
        fake.requests(),
        calls,
        "a restart made the provider be called again"
    );
    drop(edge);
}

#[test]
fn replicas_share_fingerprints_and_classifications() {
    let Some(db) = PgDatabase::create("tero_classify") else {
        return;
    };
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let fake = FakeOpenAi::start();
    let a = start_cp(&dir, "cp-a", None, Some(&db.url), &fake);
    let b = start_cp(&dir, "cp-b", None, Some(&db.url), &fake);

    submit_api_logs(&a, dir.path(), 0, 20);
    let run = tero_json_at(&a, &["classify", "run"]);
    assert_eq!(json_u64(&run["submitted"]), API_TEMPLATES, "{run}");
    assert_eq!(fake.requests(), 1);

    // The same shapes with other values, mined by the other replica.
    submit_api_logs(&b, dir.path(), 3, 7);
    wait_for_lines(&b, "billing", 81);
    let run = tero_json_at(&b, &["classify", "run"]);
    assert_eq!(json_u64(&run["eventTypes"]), API_TEMPLATES, "{run}");
    assert_eq!(json_u64(&run["cached"]), API_TEMPLATES, "{run}");
    assert_eq!(fake.requests(), 1, "replica b classified again");
    let listed = event_types(&b, &["--service", "billing"]);
    assert!(
        listed.iter().all(|e| e["classification"]["classifier"]
            .as_str()
            .is_some_and(|c| c.starts_with("openai/"))),
        "{listed:#?}"
    );
}

//! The two halves together: a real `tero-edge` polling a real
//! `tero-control-plane` over `POST /v1/policy/sync`, in both encodings.
//! Policies managed through the admin API filter the Edge's scrapes, the
//! Edge's statistics arrive exactly, and the runtime view shows the Edge
//! running the set it should.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tero_e2e::control_plane::ControlPlane;
use tero_e2e::fixtures::{EXPOSITION, TEXT, WITHOUT_DEBUG};
use tero_e2e::upstream::{Compression, Upstream};
use tero_e2e::{Edge, http_get, wait_for};

fn scrape(edge: &Edge) -> String {
    let r = http_get(&edge.url("/metrics"), &[]).expect("scrape through the Edge");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        other => other.as_i64().unwrap_or(0),
    }
}

fn family_names(inventory: &Value) -> Vec<String> {
    inventory["families"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str().map(str::to_owned))
        .collect()
}

fn run(encoding: &str) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    // Edges honour the interval the control plane recommends.
    let cp = ControlPlane::start_with(
        dir.clone(),
        &format!("cp-{encoding}"),
        None,
        &["--sync-interval-secs", "1"],
    );
    let key = cp.create_key("edge-e2e");
    let (status, created) = cp.api(
        "POST",
        "/api/v1/policies",
        Some(&json!({"policy": {
            "id": "drop-debug",
            "name": "Drop debug families",
            "metric": {"match": [{"metricField": 1, "startsWith": "debug_"}], "keep": false}
        }})),
    );
    assert_eq!(status, 200, "{created}");

    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let instance = format!("edge-{encoding}-0");
    let edge = Edge::start(
        json!({
            "upstream_url": up.url(),
            "service": {"name": "checkout", "namespace": "shop", "version": "1.0.0", "instance_id": instance},
            "policy_providers": [{
                "id": "cp",
                "type": "http",
                "url": cp.url("/v1/policy/sync"),
                "headers": [{"name": "Authorization", "value": format!("Bearer {key}")}],
                "poll_interval_secs": 1,
                "encoding": encoding,
            }],
            "inventory": {"interval_secs": 1, "sample_every_secs": 1},
        }),
        dir.clone(),
        &format!("edge-{encoding}"),
    );

    // Every scrape that comes back filtered matched the policy twice (the
    // two debug series).
    let mut filtered = 0;
    wait_for(
        Duration::from_secs(10),
        "policy from the control plane applied",
        || (scrape(&edge) == WITHOUT_DEBUG).then_some(()),
    );
    filtered += 1;
    for _ in 0..5 {
        assert_eq!(scrape(&edge), WITHOUT_DEBUG);
        filtered += 1;
    }
    let stats = wait_for(Duration::from_secs(10), "statistics stored", || {
        let (_, stats) = cp.api("GET", "/api/v1/policies/drop-debug/stats", None);
        (int(&stats["total"]["hits"]) >= 2 * filtered).then_some(stats)
    });
    assert_eq!(int(&stats["total"]["hits"]), 2 * filtered, "{stats}");
    // A miss is a match lost to a stricter policy: none with one policy.
    assert_eq!(int(&stats["total"]["misses"]), 0, "{stats}");
    assert_eq!(
        edge.self_metric("edge_policy_match_hits_total{policy_id=\"drop-debug\"}") as i64,
        2 * filtered,
        "the control plane stores what the Edge counted"
    );

    // The runtime view: polling, running what it should.
    let view = wait_for(Duration::from_secs(10), "edge in the runtime view", || {
        let (status, edge) = cp.api("GET", &format!("/api/v1/edges/{instance}"), None);
        (status == 200 && edge["appliedHash"] == edge["desiredHash"] && edge["appliedHash"] != "")
            .then_some(edge)
    });
    assert_eq!(view["transport"], "TRANSPORT_POLL", "{view}");
    assert_eq!(view["state"], "EDGE_STATE_CONNECTED", "{view}");
    assert_eq!(view["serviceName"], "checkout");
    // The inventory travels over HTTP too, with what the Edge saw before
    // filtering: the dropped family is in it.
    let inventory = wait_for(Duration::from_secs(10), "inventory over HTTP", || {
        let (status, inventory) = cp.api("GET", "/api/v1/inventory/checkout", None);
        (status == 200 && inventory["instances"][0] == instance.as_str()).then_some(inventory)
    });
    assert!(
        family_names(&inventory).contains(&"debug_cache_entries".to_owned()),
        "{inventory}"
    );

    let (_, deployment) = cp.api("GET", "/api/v1/policies/drop-debug/deployment", None);
    assert_eq!(
        (
            deployment["targeted"].as_u64(),
            deployment["applied"].as_u64()
        ),
        (Some(1), Some(1)),
        "{deployment}"
    );

    // An update through the API reaches the Edge; so does a disable.
    let (status, updated) = cp.api(
        "PUT",
        "/api/v1/policies/drop-debug",
        Some(&json!({
            "policy": {
                "id": "drop-debug",
                "name": "Drop the fd gauge",
                "metric": {"match": [{"metricField": 1, "exact": "process_open_fds"}], "keep": false}
            },
            "expectedRevision": created["revision"],
        })),
    );
    assert_eq!(status, 200, "{updated}");
    wait_for(Duration::from_secs(10), "updated policy applied", || {
        let body = scrape(&edge);
        (body.contains("debug_cache_entries") && !body.contains("process_open_fds 42"))
            .then_some(())
    });
    let (status, _) = cp.api(
        "POST",
        "/api/v1/policies/drop-debug/disable",
        Some(&json!({})),
    );
    assert_eq!(status, 200);
    wait_for(
        Duration::from_secs(10),
        "disabled policy gone from the Edge",
        || (scrape(&edge) == EXPOSITION).then_some(()),
    );

    // With its key revoked the Edge is refused, and keeps serving the last
    // set it was given (fail-open, never unfiltered by surprise).
    let (status, _) = cp.api(
        "POST",
        "/api/v1/policies/drop-debug/enable",
        Some(&json!({})),
    );
    assert_eq!(status, 200);
    wait_for(Duration::from_secs(10), "re-enabled", || {
        (!scrape(&edge).contains("process_open_fds 42")).then_some(())
    });
    let (_, keys) = cp.api("GET", "/api/v1/keys", None);
    let key_id = keys["keys"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = cp.api("DELETE", &format!("/api/v1/keys/{key_id}"), None);
    assert_eq!(status, 200);
    wait_for(Duration::from_secs(10), "edge sees the refusal", || {
        let p = edge.policies();
        let error = p["providers"]
            .as_array()?
            .iter()
            .find(|pr| pr["id"] == "cp")?["last_error"]
            .as_str()?
            .to_owned();
        error.contains("401").then_some(())
    });
    assert!(!scrape(&edge).contains("process_open_fds 42"));
}

#[test]
fn an_edge_polling_with_json_runs_the_control_planes_policies() {
    run("json");
}

#[test]
fn an_edge_polling_with_protobuf_runs_the_control_planes_policies() {
    run("protobuf");
}

/// A grpc provider whose stream port cannot be reached (as behind an
/// HTTP/1.1-only proxy) polls for its policies and sends its inventory
/// over HTTP instead.
#[test]
fn an_edge_whose_grpc_port_is_unreachable_reports_its_inventory_over_http() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let cp = ControlPlane::start_with(
        dir.clone(),
        "cp-fallback",
        None,
        &["--sync-interval-secs", "1"],
    );
    let key = cp.create_key("edge-fallback");
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let closed = tero_e2e::free_port();
    let instance = "edge-fallback-0";
    let edge = Edge::start(
        json!({
            "upstream_url": up.url(),
            "service": {"name": "payments", "instance_id": instance},
            "policy_providers": [{
                "id": "cp",
                "type": "grpc",
                "url": format!("http://127.0.0.1:{closed}"),
                "poll_url": cp.url("/v1/policy/sync"),
                "headers": [{"name": "Authorization", "value": format!("Bearer {key}")}],
                "poll_interval_secs": 1,
            }],
            "inventory": {"interval_secs": 1, "sample_every_secs": 1},
        }),
        dir.clone(),
        "edge-fallback",
    );
    let inventory = wait_for(
        Duration::from_secs(20),
        "inventory over the HTTP fallback",
        || {
            scrape(&edge);
            let (status, inventory) = cp.api("GET", "/api/v1/inventory/payments", None);
            (status == 200 && inventory["instances"][0] == instance).then_some(inventory)
        },
    );
    let mut names = family_names(&inventory);
    names.sort();
    assert_eq!(
        names,
        [
            "debug_cache_entries",
            "http_requests_total",
            "process_open_fds"
        ],
        "{inventory}"
    );
    // The runtime view agrees the edge is polling.
    let (_, view) = cp.api("GET", &format!("/api/v1/edges/{instance}"), None);
    assert_eq!(view["transport"], "TRANSPORT_POLL", "{view}");
}

/// The README's log-sample walkthrough as shipped: a control plane, an
/// edge key, `examples/edge/control-plane.json` unmodified (only the
/// environment it reads), and `curl --data-binary`'s Content-Type.
#[test]
fn log_samples_reach_the_edge_with_the_shipped_example_config() {
    use tero_e2e::control_plane::request_bytes;
    use tero_e2e::{Process, binary, free_port};

    let dir = Arc::new(tempfile::tempdir().unwrap());
    let cp = ControlPlane::start(dir.clone(), "cp-logs-example");
    let key = cp.create_key("checkout");
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let port = free_port().to_string();
    let metrics_url = up.url();
    let cp_url = cp.endpoint();
    let mut cmd = std::process::Command::new(binary("tero-edge"));
    cmd.arg("examples/edge/control-plane.json")
        .current_dir(root);
    tero_e2e::set_env(
        &mut cmd,
        &[
            ("TERO_EDGE_KEY", &key),
            ("TERO_CONTROL_PLANE_URL", &cp_url),
            ("APP_METRICS_URL", &metrics_url),
            ("TERO_LISTEN_ADDRESS", "127.0.0.1"),
            ("TERO_LISTEN_PORT", &port),
            ("RUST_LOG", "info"),
        ],
    );
    let _edge = Process::spawn("edge-logs-example", &mut cmd, dir.path());
    let url = format!("http://127.0.0.1:{port}/_edge/logs");
    let body = b"GET /healthz 200\nuser 42 logged in\nuser 43 logged in\n";
    let accepted = wait_for(Duration::from_secs(20), "log samples accepted", || {
        let r = request_bytes(
            "POST",
            &url,
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(body),
        )
        .ok()?;
        assert_ne!(r.status, 415, "curl's Content-Type is text: {}", r.text());
        (r.status == 202).then(|| r.text())
    });
    let answer: Value = serde_json::from_str(&accepted).expect("JSON answer");
    assert_eq!(answer["accepted"], 3, "{answer}");
    assert_eq!(answer["templates"], 2, "{answer}");
}

/// A grpc provider's lines are logged under its own kind, including those
/// its fallback poller's shared code writes ("new policy set applied").
#[test]
fn a_grpc_provider_logs_as_grpc() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let cp = ControlPlane::start(dir.clone(), "cp-log-target");
    let key = cp.create_key("checkout");
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let config = json!({
        "upstream_url": up.url(),
        "service": {"name": "checkout"},
        "policy_providers": [cp.grpc_provider(&key)],
    });
    let edge = Edge::start_with_env(
        config,
        dir.clone(),
        "edge-log-target",
        &[("TERO_LOG_FORMAT", "json")],
    );
    let applied: Value = wait_for(Duration::from_secs(20), "policy set applied", || {
        edge.process
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["fields"]["message"] == "new policy set applied")
    });
    assert_eq!(applied["target"], "tero_edge::providers::grpc", "{applied}");
    let log = edge.process.log();
    assert!(!log.contains("tero_edge::providers::http"), "{log}");
}

//! Volume (spec 1.7.1: what the edge saw before its policies) from a real
//! `tero-edge` scraping a real upstream to a real `tero-control-plane`:
//! every filtered scrape's data points (one per series) stored exactly
//! once, over the push stream when acknowledgements are lost and the edge
//! reconnects, and over HTTP polling across a control-plane crash. Towards
//! a server that knows only the spec, a failed sync's volume is never sent
//! again.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tero_e2e::ack_cutter::AckCutter;
use tero_e2e::control_plane::ControlPlane;
use tero_e2e::fixtures::{DROP_DEBUG, EXPOSITION, TEXT, WITHOUT_DEBUG};
use tero_e2e::sync_server::{Failure, SyncServer, response_from_yaml};
use tero_e2e::upstream::{Compression, Upstream};
use tero_e2e::{Edge, http_get, wait_for};

/// Series in [`EXPOSITION`]: the data points one filtered scrape adds.
const SERIES_PER_SCRAPE: i64 = 5;
/// Series `drop-debug` drops per scrape.
const DROPPED_PER_SCRAPE: i64 = 2;
const CP_ARGS: &[&str] = &["--sync-interval-secs", "1", "--heartbeat-secs", "1"];

fn tempdir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().expect("temporary directory"))
}

fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        other => other.as_i64().unwrap_or(0),
    }
}

fn create_drop_debug(cp: &ControlPlane) {
    let (status, body) = cp.api(
        "POST",
        "/api/v1/policies",
        Some(&json!({"policy": {
            "id": "drop-debug",
            "name": "Drop debug families",
            "metric": {"match": [{"metricField": 1, "startsWith": "debug_"}], "keep": false}
        }})),
    );
    assert_eq!(status, 200, "{body}");
}

fn edge_config(upstream: &Upstream, instance: &str, provider: Value) -> Value {
    json!({
        "upstream_url": upstream.url(),
        "service": {"name": "checkout", "namespace": "shop", "version": "1.0.0", "instance_id": instance},
        "policy_providers": [provider],
    })
}

/// Waits until the edge runs `drop-debug`, without scraping (scrapes
/// count).
fn wait_policy(edge: &Edge) {
    wait_for(Duration::from_secs(10), "policy applied", || {
        edge.policies()["policies"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["id"] == "drop-debug"))
            .then_some(())
    });
}

/// `n` scrapes, each filtered by `drop-debug`.
fn scrape(edge: &Edge, n: i64) {
    for _ in 0..n {
        let r = http_get(&edge.url("/metrics"), &[]).expect("scrape through the edge");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), WITHOUT_DEBUG, "scrape not filtered");
    }
}

/// The edge's own count of the metric data points it saw.
fn counted(edge: &Edge) -> i64 {
    edge.self_metric("edge_volume_records_total{signal=\"metric\"}") as i64
}

/// `(metric data points, hits of drop-debug)` the control plane stored
/// for `instance`, as the runtime view and the statistics show them.
fn stored(cp: &ControlPlane, instance: &str) -> (i64, i64) {
    let (status, edge) = cp.api("GET", &format!("/api/v1/edges/{instance}"), None);
    let points = if status == 200 {
        int(&edge["volumeLastHour"]["metricDataPoints"])
    } else {
        0
    };
    let (status, stats) = cp.api("GET", "/api/v1/policies/drop-debug/stats", None);
    assert_eq!(status, 200, "{stats}");
    (points, int(&stats["total"]["hits"]))
}

/// Waits until the control plane holds exactly `expected` for `instance`,
/// failing at once if it ever holds more (counted twice), then checks it
/// stays so over a few report intervals.
fn assert_stored_exactly(cp: &ControlPlane, instance: &str, expected: (i64, i64)) {
    wait_for(Duration::from_secs(20), "volume stored exactly", || {
        let now = stored(cp, instance);
        assert!(
            now.0 <= expected.0 && now.1 <= expected.1,
            "counted twice: stored {now:?}, expected {expected:?}"
        );
        (now == expected).then_some(())
    });
    let hold = Instant::now();
    while hold.elapsed() < Duration::from_secs(3) {
        assert_eq!(stored(cp, instance), expected, "stored totals changed");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `kill -9`, then reaped.
fn crash(cp: ControlPlane) {
    let status = Command::new("kill")
        .args(["-KILL", &cp.process.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -9 {}", cp.process.pid());
    drop(cp);
}

/// The stream's statistics reports, each acknowledged only after the
/// control plane stored it: the relay withholds the first two
/// acknowledgements and cuts the connection, so the edge resends a report
/// that is already stored (once on a new stream, once on a fallback poll).
/// Its volume is stored once, and every later scrape's too.
#[test]
fn stream_volume_is_stored_exactly_when_acknowledgements_are_lost() {
    let dir = tempdir();
    let cp = ControlPlane::start_with(dir.clone(), "cp", None, CP_ARGS);
    let key = cp.create_key("edge");
    create_drop_debug(&cp);
    let relay = AckCutter::start(cp.addr(), 2);
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let mut provider = cp.grpc_provider(&key);
    provider["url"] = relay.endpoint().into();
    // Polls while the stream is down go straight to the control plane.
    provider["poll_url"] = cp.endpoint().into();
    provider["reconnect_min_secs"] = 0.2.into();
    provider["reconnect_max_secs"] = 1.into();
    let instance = "edge-volume-stream";
    let edge = Edge::start(edge_config(&up, instance, provider), dir.clone(), "edge");
    wait_policy(&edge);

    let mut scrapes = 0;
    scrape(&edge, 3);
    scrapes += 3;
    wait_for(
        Duration::from_secs(20),
        "two acknowledgements withheld",
        || (relay.cut() >= 2).then_some(()),
    );
    scrape(&edge, 4);
    scrapes += 4;
    let expected = (SERIES_PER_SCRAPE * scrapes, DROPPED_PER_SCRAPE * scrapes);
    assert_eq!(counted(&edge), expected.0, "the edge's own count");
    assert_stored_exactly(&cp, instance, expected);
    let log = edge.process.log();
    assert!(
        log.matches("policy stream open").count() >= 2,
        "the edge reconnected: {log}"
    );
    // The share of volume the policy drops follows: 2 of 5 series.
    let (_, stats) = cp.api("GET", "/api/v1/policies/drop-debug/stats", None);
    assert_eq!(stats["volumeShare"]["share"].as_f64(), Some(0.4), "{stats}");
}

/// HTTP polling to a Tero control plane: the control plane echoes each
/// report's name, so the edge resends a report's volume with the report
/// after a failed sync, and it is stored once. Across a crash with scrapes
/// while the control plane is down, nothing is lost or counted twice.
#[test]
fn poll_volume_is_stored_exactly_across_a_control_plane_crash() {
    let dir = tempdir();
    let cp = ControlPlane::start_with(dir.clone(), "cp", None, CP_ARGS);
    let port = cp.port;
    let key = cp.create_key("edge");
    create_drop_debug(&cp);
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let provider = json!({
        "id": "cp",
        "type": "http",
        "url": cp.url("/v1/policy/sync"),
        "headers": [{"name": "Authorization", "value": format!("Bearer {key}")}],
        "poll_interval_secs": 1,
        "encoding": "json",
    });
    let instance = "edge-volume-poll";
    let edge = Edge::start(edge_config(&up, instance, provider), dir.clone(), "edge");
    wait_policy(&edge);

    scrape(&edge, 3);
    assert_stored_exactly(&cp, instance, (15, 6));
    crash(cp);
    // While it is down: syncs fail, their reports wait.
    scrape(&edge, 3);
    wait_for(Duration::from_secs(10), "a failed sync", || {
        let p = edge.policies();
        p["providers"][0]["last_error"].as_str().map(|_| ())
    });
    let cp = ControlPlane::start_on(port, dir.clone(), "cp", None, CP_ARGS);
    scrape(&edge, 2);
    assert_eq!(counted(&edge), 40, "the edge's own count");
    assert_stored_exactly(&cp, instance, (40, 16));
}

/// A server that knows only the spec (it does not echo report names)
/// never gets the volume of a failed sync again: the retry repeats the
/// report's policy deltas (at-least-once, as the protocol has it) but not
/// its volume. Every data point the edge saw went out exactly once.
#[test]
fn a_spec_only_server_never_gets_a_failed_syncs_volume_again() {
    let dir = tempdir();
    let server = SyncServer::start(response_from_yaml(DROP_DEBUG, "h1"));
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let provider = json!({
        "id": "spec",
        "type": "http",
        "url": server.url(),
        "poll_interval_secs": 1,
        "encoding": "protobuf",
    });
    let edge = Edge::start(edge_config(&up, "edge-spec", provider), dir.clone(), "edge");
    wait_policy(&edge);

    // Fail syncs until one that carried volume failed; its report is then
    // retried.
    let failed_with_volume = |server: &SyncServer| {
        server
            .requests()
            .iter()
            .any(|r| !r.acknowledged() && r.request.volume.is_some())
    };
    let mut armed = 0;
    wait_for(Duration::from_secs(20), "a failed sync with volume", || {
        let failed = server
            .requests()
            .iter()
            .filter(|r| !r.acknowledged())
            .count();
        if failed >= armed {
            server.fail_next(&[Failure::Internal]);
            armed += 1;
        }
        scrape(&edge, 1);
        failed_with_volume(&server).then_some(())
    });
    scrape(&edge, 2);
    let total = counted(&edge);
    let sent = |server: &SyncServer| -> i64 {
        server
            .requests()
            .iter()
            .filter_map(|r| r.request.volume.as_ref())
            .map(|v| v.metric_data_points)
            .sum()
    };
    wait_for(Duration::from_secs(20), "every data point sent", || {
        let now = sent(&server);
        assert!(now <= total, "sent {now} > counted {total}");
        (now == total).then_some(())
    });

    let requests = server.requests();
    let report = |r: &tero_e2e::sync_server::Recorded| {
        r.headers
            .iter()
            .find(|(k, _)| k == "tero-stats-report")
            .map(|(_, v)| v.clone())
    };
    let failed = requests
        .iter()
        .find(|r| !r.acknowledged() && r.request.volume.is_some())
        .expect("a failed sync with volume");
    let name = report(failed).expect("a failed sync names its report");
    let attempts: Vec<_> = requests
        .iter()
        .filter(|r| report(r).as_deref() == Some(name.as_str()))
        .collect();
    assert!(attempts.len() >= 2, "the report was retried: {name}");
    assert_eq!(
        attempts
            .iter()
            .filter(|r| r.request.volume.is_some())
            .count(),
        1,
        "only the first attempt of {name} carried volume"
    );
    assert_eq!(
        attempts[1].request.policy_statuses, failed.request.policy_statuses,
        "the retry repeats the report's policy deltas"
    );
    assert!(
        attempts.last().is_some_and(|r| r.acknowledged()),
        "the report got through"
    );
}

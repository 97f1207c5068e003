//! Policy providers end to end (prometheus-edge.md §16, policy-format.md
//! §2): a real `tero-edge` with a policy file the tests edit and a fake
//! control plane that records every `SyncRequest` and can be told to fail.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tero_e2e::fixtures::{DROP_DEBUG, EXPOSITION, TEXT, WITHOUT_DEBUG};
use tero_e2e::sync_server::{Failure, Outcome, Recorded, SyncServer, response_from_yaml};
use tero_e2e::upstream::{Compression, Upstream};
use tero_e2e::{Edge, http_get, wait_for};
use tero_proto::policy::PolicyStage;

/// Same id as [`DROP_DEBUG`], different content: drops the two
/// `http_requests_total` series instead.
const DROP_DEBUG_ID_ON_REQUESTS: &str = r#"
policies:
  - id: drop-debug
    name: Same id, other family
    metric:
      match:
        - metric_field: name
          exact: http_requests_total
      keep: false
"#;

/// [`EXPOSITION`] under [`DROP_DEBUG_ID_ON_REQUESTS`].
const WITHOUT_REQUESTS: &str = r#"# HELP debug_cache_entries Entries in the debug cache.
# TYPE debug_cache_entries gauge
debug_cache_entries{cache="a"} 12
debug_cache_entries{cache="b"} 7
# HELP process_open_fds Open file descriptors.
# TYPE process_open_fds gauge
process_open_fds 42
"#;

/// Drops the `process_open_fds` series.
const DROP_FDS: &str = r#"
policies:
  - id: drop-fds
    name: Drop the fd gauge
    metric:
      match:
        - metric_field: name
          exact: process_open_fds
      keep: false
"#;

/// [`EXPOSITION`] under [`DROP_FDS`].
const WITHOUT_FDS: &str = r#"# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{code="200"} 1027
http_requests_total{code="500"} 3
# HELP debug_cache_entries Entries in the debug cache.
# TYPE debug_cache_entries gauge
debug_cache_entries{cache="a"} 12
debug_cache_entries{cache="b"} 7
"#;

fn temp_dir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().expect("temp dir"))
}

fn upstream() -> Upstream {
    Upstream::start(EXPOSITION.into(), TEXT, Compression::None)
}

/// Writes a file the way a config-map update does: complete, then renamed
/// into place.
fn write_atomically(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn scrape(edge: &Edge) -> String {
    let r = http_get(&edge.url("/metrics"), &[]).expect("scrape through the Edge");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

fn provider<'a>(policies: &'a Value, id: &str) -> &'a Value {
    policies["providers"]
        .as_array()
        .expect("providers list")
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("provider {id} in {policies:#}"))
}

fn policy<'a>(policies: &'a Value, id: &str) -> &'a Value {
    policies["policies"]
        .as_array()
        .expect("policies list")
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("policy {id} in {policies:#}"))
}

fn ready(edge: &Edge) -> u16 {
    http_get(&edge.url("/_ready"), &[]).unwrap().status
}

fn http_edge(
    up: &Upstream,
    server: &SyncServer,
    dir: &Arc<tempfile::TempDir>,
    name: &str,
    poll_interval_secs: u64,
    extra: Value,
) -> Edge {
    http_edge_at(up, &server.url(), dir, name, poll_interval_secs, extra)
}

/// [`http_edge`] for a sync URL that may have no server behind it.
fn http_edge_at(
    up: &Upstream,
    url: &str,
    dir: &Arc<tempfile::TempDir>,
    name: &str,
    poll_interval_secs: u64,
    extra: Value,
) -> Edge {
    let mut provider = json!({
        "id": "cp",
        "type": "http",
        "url": url,
        "poll_interval_secs": poll_interval_secs,
    });
    if let (Some(p), Some(extra)) = (provider.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    let config = json!({
        "upstream_url": up.url(),
        "service": {
            "name": "checkout",
            "namespace": "shop",
            "version": "1.2.3",
            "instance_id": format!("{name}-0"),
        },
        "policy_providers": [provider],
    });
    Edge::start(config, dir.clone(), name)
}

fn acknowledged(requests: &[Recorded]) -> impl Iterator<Item = &Recorded> {
    requests.iter().filter(|r| r.acknowledged())
}

#[test]
fn policy_file_created_after_start_is_picked_up() {
    let up = upstream();
    let dir = temp_dir();
    let path = dir.path().join("policies.yaml");
    let edge = Edge::start(
        json!({
            "upstream_url": up.url(),
            "policy_providers": [{"id": "local", "type": "file", "path": path}],
        }),
        dir.clone(),
        "edge-late-file",
    );
    // Missing at start: ready (fail-open), nothing filtered, the reason shown.
    assert_eq!(ready(&edge), 200);
    assert_eq!(scrape(&edge), EXPOSITION);
    let p = edge.policies();
    let local = provider(&p, "local");
    assert_eq!(local["loaded"], false);
    assert!(
        local["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("policies.yaml")),
        "{local:#}"
    );

    write_atomically(&path, DROP_DEBUG);
    wait_for(
        Duration::from_secs(5),
        "the new policy file applied",
        || (scrape(&edge) == WITHOUT_DEBUG).then_some(()),
    );
    assert_eq!(ready(&edge), 200);
    let p = edge.policies();
    let local = provider(&p, "local");
    assert_eq!(local["loaded"], true, "{local:#}");
    assert_eq!(local["last_error"], Value::Null, "{local:#}");
    assert_eq!(policy(&p, "drop-debug")["provider"], "local");
    assert_eq!(
        edge.self_metric("edge_policy_provider_up{provider=\"local\",transport=\"file\"}"),
        1.0
    );
}

/// Issue 16: a policy removed from the set used to keep its series in
/// `/_edge/metrics` for the life of the process.
#[test]
fn a_removed_policy_leaves_the_self_metrics() {
    let up = upstream();
    let dir = temp_dir();
    let path = dir.path().join("policies.yaml");
    let both = format!(
        "{DROP_FDS}  - id: drop-debug\n    name: Drop debug\n    metric:\n      match:\n        - metric_field: name\n          starts_with: debug_\n      keep: false\n"
    );
    std::fs::write(&path, both).unwrap();
    let edge = Edge::start(
        json!({
            "upstream_url": up.url(),
            "policy_providers": [{"id": "local", "type": "file", "path": path}],
        }),
        dir.clone(),
        "edge-removed-policy",
    );
    let body = scrape(&edge);
    assert!(!body.contains("debug_cache_entries"), "{body}");
    let hits = "edge_policy_match_hits_total{policy_id=\"drop-debug\"}";
    assert!(edge.self_metric(hits) >= 2.0);

    write_atomically(&path, DROP_FDS);
    wait_for(Duration::from_secs(5), "the shorter set applied", || {
        (scrape(&edge) == WITHOUT_FDS).then_some(())
    });
    let metrics = edge.self_metrics();
    assert!(
        !metrics.contains("policy_id=\"drop-debug\""),
        "the removed policy's series are gone:\n{metrics}"
    );
    assert!(
        metrics.contains("edge_policy_match_hits_total{policy_id=\"drop-fds\"}"),
        "{metrics}"
    );
}

#[test]
fn bad_policy_file_edit_keeps_the_last_good_policies() {
    let up = upstream();
    let dir = temp_dir();
    let path = dir.path().join("policies.yaml");
    std::fs::write(&path, DROP_DEBUG).unwrap();
    let edge = Edge::start(
        json!({
            "upstream_url": up.url(),
            "policy_providers": [{"id": "local", "type": "file", "path": path}],
        }),
        dir.clone(),
        "edge-bad-edit",
    );
    assert_eq!(scrape(&edge), WITHOUT_DEBUG);
    let generation = edge.policies()["generation"].clone();
    assert!(generation.is_u64(), "{generation}");

    // A syntax error: the whole edit is rejected, the last good set stays.
    write_atomically(
        &path,
        "policies:\n  - id: drop-debug\n    metric: {match: [\n",
    );
    let error = wait_for(Duration::from_secs(5), "the bad edit reported", || {
        let p = edge.policies();
        provider(&p, "local")["last_error"]
            .as_str()
            .map(str::to_owned)
    });
    assert!(error.contains("policies.yaml"), "{error}");
    assert_eq!(
        scrape(&edge),
        WITHOUT_DEBUG,
        "last good policies still apply"
    );
    let p = edge.policies();
    assert_eq!(p["generation"], generation, "no reload on a bad edit");
    assert_eq!(provider(&p, "local")["loaded"], true);
    assert_eq!(ready(&edge), 200);
    assert!(edge.self_metric("edge_policy_sync_total{provider=\"local\",result=\"error\"}") >= 1.0);
    assert_eq!(
        edge.self_metric("edge_policy_provider_up{provider=\"local\",transport=\"file\"}"),
        0.0
    );

    // One invalid policy next to a valid one: the valid one applies, the
    // invalid one is inert and listed with its error (R-16.2).
    write_atomically(
        &path,
        &format!(
            "{DROP_FDS}  - id: broken-regex\n    name: Unclosed group\n    metric:\n      match:\n        - metric_field: name\n          regex: \"(debug\"\n      keep: false\n"
        ),
    );
    wait_for(Duration::from_secs(5), "the mixed edit applied", || {
        (scrape(&edge) == WITHOUT_FDS).then_some(())
    });
    let p = edge.policies();
    assert_ne!(p["generation"], generation);
    assert_eq!(provider(&p, "local")["last_error"], Value::Null);
    let broken = policy(&p, "broken-regex");
    assert_eq!(broken["applied"], false, "{broken:#}");
    assert!(
        !broken["errors"].as_array().unwrap().is_empty(),
        "{broken:#}"
    );
    assert_eq!(policy(&p, "drop-fds")["applied"], true);
    assert_eq!(edge.self_metric("edge_policy_errors"), 1.0);
}

#[test]
fn later_http_provider_wins_a_duplicate_id() {
    let up = upstream();
    let dir = temp_dir();
    let path = dir.path().join("policies.yaml");
    std::fs::write(&path, DROP_DEBUG).unwrap();
    let server = SyncServer::start(response_from_yaml(DROP_DEBUG_ID_ON_REQUESTS, "cp-1"));
    let edge = Edge::start(
        json!({
            "upstream_url": up.url(),
            "service": {"name": "checkout", "instance_id": "dup-0"},
            "policy_providers": [
                {"id": "local", "type": "file", "path": path},
                {"id": "cp", "type": "http", "url": server.url(), "poll_interval_secs": 1},
            ],
        }),
        dir.clone(),
        "edge-duplicate",
    );
    // The control plane's copy applies: debug kept, http_requests dropped.
    assert_eq!(scrape(&edge), WITHOUT_REQUESTS);
    let p = edge.policies();
    assert_eq!(policy(&p, "drop-debug")["provider"], "cp");
    assert_eq!(policy(&p, "drop-debug")["name"], "Same id, other family");
    assert_eq!(
        p["shadowed"],
        json!([{"id": "drop-debug", "provider": "local", "overridden_by": "cp"}]),
        "{p:#}"
    );
    assert_eq!(p["policies"].as_array().unwrap().len(), 1);

    // Its hits are reported to the provider that owns the winning copy.
    wait_for(Duration::from_secs(5), "hits synced to cp", || {
        let total: i64 = acknowledged(&server.requests())
            .map(|r| r.hits("drop-debug"))
            .sum();
        (total == 2).then_some(())
    });
}

fn sync_carries_identity_and_hits(encoding: &str) {
    let up = upstream();
    let dir = temp_dir();
    let server = SyncServer::start(response_from_yaml(DROP_DEBUG, "hash-1"));
    let name = format!("edge-sync-{encoding}");
    let edge = http_edge(
        &up,
        &server,
        &dir,
        &name,
        1,
        json!({
            "encoding": encoding,
            "headers": [{"name": "Authorization", "value": "Bearer test-key"}],
        }),
    );
    // Ready means the first sync's set is applied.
    assert_eq!(scrape(&edge), WITHOUT_DEBUG);

    let requests = server.requests();
    let first = &requests[0];
    assert_eq!(first.protobuf, encoding == "protobuf");
    assert!(first.request.full_sync, "the first sync is a full sync");
    assert_eq!(first.request.last_successful_hash, "");
    assert_eq!(
        first.resource_attribute("service.instance.id").as_deref(),
        Some(format!("{name}-0").as_str())
    );
    assert_eq!(
        first.resource_attribute("service.name").as_deref(),
        Some("checkout")
    );
    assert_eq!(
        first.resource_attribute("service.namespace").as_deref(),
        Some("shop")
    );
    assert_eq!(
        first.resource_attribute("service.version").as_deref(),
        Some("1.2.3")
    );
    let meta = first.request.client_metadata.as_ref().unwrap();
    assert_eq!(
        meta.supported_policy_stages,
        vec![
            PolicyStage::MetricFilter as i32,
            PolicyStage::LogFilter as i32,
            PolicyStage::LogTransform as i32,
            PolicyStage::TraceSampling as i32,
        ],
        "scrapes run metric policies, pushes log and trace ones"
    );
    assert!(
        first
            .headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == "Bearer test-key"),
        "configured headers are sent: {:?}",
        first.headers
    );

    for _ in 0..2 {
        assert_eq!(scrape(&edge), WITHOUT_DEBUG);
    }
    // Three scrapes, two dropped series each: six hits, reported once.
    let with_hits = wait_for(Duration::from_secs(5), "a sync with match_hits", || {
        server
            .requests()
            .into_iter()
            .find(|r| r.hits("drop-debug") > 0)
    });
    let status = with_hits
        .request
        .policy_statuses
        .iter()
        .find(|s| s.id == "drop-debug")
        .unwrap();
    assert_eq!(status.match_misses, 0);
    assert!(status.errors.is_empty());
    assert!(!with_hits.request.full_sync);
    assert_eq!(with_hits.request.last_successful_hash, "hash-1");
    assert_eq!(
        with_hits.request.last_sync_timestamp_unix_nano, 1_700_000_000_000_000_000,
        "echo of the last response's sync timestamp"
    );
    // One more sync after it: the counts are not reported twice.
    let n = server.requests().len();
    wait_for(Duration::from_secs(5), "another sync", || {
        (server.requests().len() > n + 1).then_some(())
    });
    let total: i64 = server.requests().iter().map(|r| r.hits("drop-debug")).sum();
    assert_eq!(total, 6);
}

/// Issue 16 over polling: a policy whose regex cannot join the others'
/// (here the one that pushes a field's shared automaton over its budget)
/// is reported with its reason in the statuses of the next sync, errored in
/// `/_edge/policies`, and the other policies run.
#[test]
fn a_policy_that_does_not_fit_with_the_others_is_reported_in_the_poll_statuses() {
    let up = upstream();
    let dir = temp_dir();
    let mut yaml = String::from("policies:\n");
    for (i, p) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        yaml.push_str(&format!(
            "  - id: heavy-{i}\n    name: heavy\n    metric:\n      match:\n        - metric_field: name\n          regex: '^{p}(\\w{{170}}){{100}}$'\n      keep: false\n"
        ));
    }
    yaml.push_str(DROP_FDS.trim_start().trim_start_matches("policies:\n"));
    let server = SyncServer::start(response_from_yaml(&yaml, "hash-heavy"));
    let edge = http_edge(&up, &server, &dir, "edge-heavy-poll", 1, json!({}));
    assert_eq!(scrape(&edge), WITHOUT_FDS, "the ordinary policy runs");
    let p = edge.policies();
    let errors = policy(&p, "heavy-4")["errors"].as_array().unwrap().clone();
    assert_eq!(errors.len(), 1, "{p:#}");
    assert!(
        policy(&p, "heavy-3")["errors"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let reported = wait_for(Duration::from_secs(5), "a sync reporting the error", || {
        server.requests().into_iter().find_map(|r| {
            r.request
                .policy_statuses
                .iter()
                .find(|s| s.id == "heavy-4" && !s.errors.is_empty())
                .cloned()
        })
    });
    assert!(
        reported.errors[0].contains("does not fit in this field's shared automaton"),
        "{reported:?}"
    );
    assert_eq!(edge.self_metric("edge_policy_errors"), 1.0);
}

#[test]
fn json_sync_requests_carry_identity_stages_and_match_hits() {
    sync_carries_identity_and_hits("json");
}

#[test]
fn protobuf_sync_requests_carry_identity_stages_and_match_hits() {
    sync_carries_identity_and_hits("protobuf");
}

#[test]
fn failed_syncs_keep_their_counts_for_the_next_acknowledged_one() {
    let up = upstream();
    let dir = temp_dir();
    let server = SyncServer::start(response_from_yaml(DROP_DEBUG, "hash-1"));
    let edge = http_edge(&up, &server, &dir, "edge-sync-fail", 1, json!({}));
    // Failures armed before any scrape: every count is earned after the
    // last acknowledged sync that precedes them.
    server.fail_next(&[
        Failure::Unavailable {
            retry_after_secs: 2,
        },
        Failure::Internal,
    ]);
    assert_eq!(scrape(&edge), WITHOUT_DEBUG);
    let mut scrapes = 1;
    let failed = |n: usize| {
        server
            .requests()
            .into_iter()
            .filter(|r| !r.acknowledged())
            .nth(n - 1)
    };
    for _ in 0..3 {
        assert_eq!(scrape(&edge), WITHOUT_DEBUG);
        scrapes += 1;
    }
    let first_failure = wait_for(Duration::from_secs(5), "the first failed sync", || {
        failed(1)
    });
    assert_eq!(
        first_failure.outcome,
        Outcome::Failed(Failure::Unavailable {
            retry_after_secs: 2
        })
    );
    // Policies stay while the control plane fails (R-16.2).
    for _ in 0..2 {
        assert_eq!(scrape(&edge), WITHOUT_DEBUG);
        scrapes += 1;
    }
    let second_failure = wait_for(Duration::from_secs(6), "the second failed sync", || {
        failed(2)
    });
    let gap = second_failure.at - first_failure.at;
    assert!(
        gap >= Duration::from_millis(1900),
        "Retry-After: 2 is honoured, retried after {gap:?}"
    );
    assert_eq!(scrape(&edge), WITHOUT_DEBUG);
    scrapes += 1;
    let success = wait_for(Duration::from_secs(5), "a sync after the failures", || {
        server
            .requests()
            .into_iter()
            .find(|r| r.acknowledged() && r.at > second_failure.at)
    });

    let expected = 2 * scrapes;
    // A failed report is sealed: every retry repeats it unchanged, under the
    // same `tero-stats-report` name, so a server that stored it before the
    // failure counts it once. Counts earned meanwhile wait for the next one.
    let report_id = |r: &Recorded| {
        r.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("tero-stats-report"))
            .map(|(_, v)| v.clone())
    };
    assert!(first_failure.hits("drop-debug") >= 2 * 4);
    assert_eq!(
        second_failure.hits("drop-debug"),
        first_failure.hits("drop-debug")
    );
    assert_eq!(success.hits("drop-debug"), first_failure.hits("drop-debug"));
    let sealed = report_id(&first_failure).expect("the report is named");
    assert!(
        sealed.ends_with("/1"),
        "the first report of this session: {sealed}"
    );
    assert_eq!(report_id(&second_failure).as_ref(), Some(&sealed));
    assert_eq!(report_id(&success).as_ref(), Some(&sealed));
    // One more acknowledged sync: every dropped series counted exactly once.
    wait_for(Duration::from_secs(5), "one more acknowledged sync", || {
        server
            .requests()
            .into_iter()
            .find(|r| r.acknowledged() && r.at > success.at)
    });
    let requests = server.requests();
    let before_failures: i64 = requests
        .iter()
        .filter(|r| r.at < first_failure.at)
        .map(|r| r.hits("drop-debug"))
        .sum();
    assert_eq!(before_failures, 0, "no scrape happened before the failures");
    let acked: i64 = acknowledged(&requests).map(|r| r.hits("drop-debug")).sum();
    assert_eq!(acked, expected);
    assert_eq!(
        edge.self_metric("edge_scrape_series_total{decision=\"dropped\"}"),
        expected as f64
    );
    let p = edge.policies();
    let cp = provider(&p, "cp");
    assert_eq!(cp["syncs_failed"], 2, "{cp:#}");
    assert_eq!(cp["last_error"], Value::Null, "{cp:#}");
    assert_eq!(
        edge.self_metric("edge_policy_sync_total{provider=\"cp\",result=\"error\"}"),
        2.0
    );
}

#[test]
fn same_hash_does_not_reload_and_a_new_hash_does() {
    let up = upstream();
    let dir = temp_dir();
    let server = SyncServer::start(response_from_yaml(DROP_DEBUG, "same"));
    let edge = http_edge(&up, &server, &dir, "edge-hash", 1, json!({}));
    assert_eq!(scrape(&edge), WITHOUT_DEBUG);
    let generation = edge.policies()["generation"].clone();

    // Different content under the same hash: the client trusts the hash.
    server.set_response(response_from_yaml(DROP_FDS, "same"));
    let seen = server.requests().len();
    wait_for(Duration::from_secs(6), "two more syncs", || {
        (server.requests().len() >= seen + 2).then_some(())
    });
    let p = edge.policies();
    assert_eq!(p["generation"], generation, "same hash, no reload");
    assert_eq!(provider(&p, "cp")["hash"], "same");
    assert_eq!(scrape(&edge), WITHOUT_DEBUG);
    for r in &server.requests()[1..] {
        assert_eq!(r.request.last_successful_hash, "same");
        assert!(!r.request.full_sync);
    }

    // A new hash replaces the provider's set.
    server.set_response(response_from_yaml(DROP_FDS, "changed"));
    wait_for(Duration::from_secs(5), "the new set applied", || {
        (scrape(&edge) == WITHOUT_FDS).then_some(())
    });
    let p = edge.policies();
    assert_ne!(p["generation"], generation);
    assert_eq!(provider(&p, "cp")["hash"], "changed");
    let last = wait_for(
        Duration::from_secs(5),
        "a sync reporting the new hash",
        || {
            server
                .requests()
                .into_iter()
                .find(|r| r.request.last_successful_hash == "changed")
        },
    );
    assert!(!last.request.full_sync);
}

#[test]
fn a_response_without_hash_is_not_reloaded_on_every_sync() {
    let up = upstream();
    let dir = temp_dir();
    // A server that leaves `hash` empty: the client hashes the set itself.
    let server = SyncServer::start(response_from_yaml(DROP_DEBUG, ""));
    let edge = http_edge(&up, &server, &dir, "edge-no-hash", 1, json!({}));
    assert_eq!(scrape(&edge), WITHOUT_DEBUG);
    let generation = edge.policies()["generation"].clone();
    let seen = server.requests().len();
    wait_for(Duration::from_secs(6), "two more syncs", || {
        (server.requests().len() >= seen + 2).then_some(())
    });
    assert_eq!(
        edge.policies()["generation"],
        generation,
        "the same set, resent without a hash, must not be recompiled"
    );
    let hashes: Vec<String> = server.requests()[1..]
        .iter()
        .map(|r| r.request.last_successful_hash.clone())
        .collect();
    assert!(
        hashes.iter().all(|h| !h.is_empty() && *h == hashes[0]),
        "{hashes:?}"
    );
}

#[test]
fn recommended_sync_interval_is_honoured() {
    let up = upstream();
    let dir = temp_dir();
    let mut response = response_from_yaml(DROP_DEBUG, "hash-1");
    response.recommended_sync_interval_seconds = 1;
    let server = SyncServer::start(response);
    // Configured hourly; the server asks for every second (R-16.3).
    let edge = http_edge(&up, &server, &dir, "edge-recommended", 3600, json!({}));
    wait_for(
        Duration::from_secs(5),
        "syncs at the recommended interval",
        || (server.requests().len() >= 3).then_some(()),
    );
    let requests = server.requests();
    let gap = requests[2].at - requests[1].at;
    assert!(
        gap >= Duration::from_millis(900) && gap < Duration::from_secs(3),
        "{gap:?}"
    );
    assert_eq!(scrape(&edge), WITHOUT_DEBUG);
}

#[test]
fn sigterm_sends_a_final_sync_with_the_last_counts_and_exits_0() {
    let up = upstream();
    let dir = temp_dir();
    let server = SyncServer::start(response_from_yaml(DROP_DEBUG, "hash-1"));
    // A long interval: only the initial sync happens before SIGTERM.
    let mut edge = http_edge(&up, &server, &dir, "edge-sigterm", 3600, json!({}));
    for _ in 0..4 {
        assert_eq!(scrape(&edge), WITHOUT_DEBUG);
    }
    assert_eq!(server.requests().len(), 1, "only the initial sync so far");

    let started = Instant::now();
    let status = edge
        .process
        .terminate(Duration::from_secs(10))
        .expect("tero-edge exits after SIGTERM");
    assert!(status.success(), "clean exit, got {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 2, "initial sync plus the final one");
    let last = &requests[1];
    assert!(last.acknowledged());
    assert_eq!(last.hits("drop-debug"), 8, "4 scrapes × 2 dropped series");
    assert_eq!(last.request.last_successful_hash, "hash-1");
    assert!(
        edge.process.log().contains("final statistics sync sent"),
        "{}",
        edge.process.log()
    );
}

#[test]
fn an_edge_restarted_while_the_server_is_down_serves_the_persisted_set() {
    let up = upstream();
    let dir = temp_dir();
    let state_dir = dir.path().join("state");
    let extra = json!({"state_dir": state_dir});
    let server = SyncServer::start(response_from_yaml(DROP_DEBUG, "v1"));
    let url = server.url();
    {
        let edge = http_edge(&up, &server, &dir, "edge-persist-a", 1, extra.clone());
        assert_eq!(scrape(&edge), WITHOUT_DEBUG);
        assert!(state_dir.join("cp.last-good.pb").exists(), "set persisted");
        assert_eq!(provider(&edge.policies(), "cp")["transport"], "http");
    }
    // The first Edge is gone; so is the server.
    drop(server);

    let edge = http_edge_at(&up, &url, &dir, "edge-persist-b", 1, extra);
    assert_eq!(ready(&edge), 200);
    assert_eq!(
        scrape(&edge),
        WITHOUT_DEBUG,
        "filtering with the persisted set"
    );
    let p = edge.policies();
    assert_eq!(provider(&p, "cp")["hash"], "v1");
    assert_eq!(provider(&p, "cp")["transport"], "persisted");
    assert!(edge.process.log().contains("persisted policy set"));

    // Without a state_dir there is nothing to fall back to.
    let bare = http_edge_at(&up, &url, &dir, "edge-persist-c", 1, json!({}));
    assert_eq!(scrape(&bare), EXPOSITION);
}

/// `tero-edge CONFIG --check-config`, with its exit status and everything
/// it printed.
fn check_config(config: &Path, cwd: &Path) -> (bool, String) {
    let out = std::process::Command::new(tero_e2e::binary("tero-edge"))
        .arg(config)
        .arg("--check-config")
        .current_dir(cwd)
        // What examples/edge/control-plane.json reads (unset stops start-up).
        .env("TERO_EDGE_KEY", "tero_ek_example")
        .output()
        .expect("run tero-edge --check-config");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), text)
}

#[test]
fn check_config_loads_and_compiles_the_referenced_policy_files() {
    let dir = temp_dir();
    let policies = dir.path().join("policies.yaml");
    let config = dir.path().join("config.json");
    let write_config = || {
        let json = json!({
            "upstream_url": "http://127.0.0.1:8080",
            "policy_providers": [{"id": "local", "type": "file", "path": policies}],
        });
        std::fs::write(&config, json.to_string()).unwrap();
    };
    write_config();

    let (ok, text) = check_config(&config, dir.path());
    assert!(!ok, "a missing policy file is not OK: {text}");
    assert!(text.contains("policy_providers[0] (local)"), "{text}");
    assert!(text.contains("policies.yaml"), "names the file: {text}");

    std::fs::write(
        &policies,
        r#"
policies:
  - id: drop-debug
    name: fine
    metric:
      match: [{metric_field: name, starts_with: debug_}]
      keep: false
  - id: bad-regex
    name: broken
    metric:
      match: [{metric_field: name, regex: "([unclosed"}]
      keep: false
"#,
    )
    .unwrap();
    let (ok, text) = check_config(&config, dir.path());
    assert!(!ok, "an invalid regex is not OK: {text}");
    for part in ["policies.yaml", "\"bad-regex\"", "metric.match[0].regex"] {
        assert!(text.contains(part), "names {part}: {text}");
    }
    assert!(
        !text.contains("drop-debug"),
        "valid policies are not listed: {text}"
    );

    std::fs::write(&policies, DROP_DEBUG).unwrap();
    let (ok, text) = check_config(&config, dir.path());
    assert!(ok, "{text}");
    assert!(text.contains("OK"), "{text}");
    assert!(text.contains("1 policies in files compiled"), "{text}");
}

#[test]
fn the_shipped_example_config_checks_ok() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    for example in [
        "examples/edge/config.json",
        "examples/edge/control-plane.json",
        "examples/edge/otlp.json",
        "examples/edge/datadog.json",
    ] {
        let (ok, text) = check_config(Path::new(example), root);
        assert!(ok, "{example}: {text}");
    }
}

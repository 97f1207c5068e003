//! Faults between a real `tero-edge` on the push stream (provider type
//! `grpc`) and real `tero-control-plane` processes: a replica crashing under
//! its subscribed edges, a control plane restarted on the same port and data
//! directory, an edge restarted while its control plane is down, and
//! statistics that stay exact across crashes.
//!
//! Every wait is bounded; crashes are `kill -9`.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tero_e2e::control_plane::{ControlPlane, PgDatabase};
use tero_e2e::fixtures::{EXPOSITION, TEXT, WITHOUT_DEBUG};
use tero_e2e::upstream::{Compression, Upstream};
use tero_e2e::{Edge, free_port, http_get, wait_for};

/// Edges honour the recommended poll interval; heartbeats every second so
/// a dead stream shows quickly on both sides.
const CP_ARGS: &[&str] = &["--sync-interval-secs", "1", "--heartbeat-secs", "1"];
/// The edge's reconnect backoff bounds, in seconds.
const RECONNECT_MIN: f64 = 0.2;
const RECONNECT_MAX: f64 = 2.0;
/// [`EXPOSITION`] with `process_open_fds` dropped instead of the debug family.
const WITHOUT_FDS: &str = r#"# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{code="200"} 1027
http_requests_total{code="500"} 3
# HELP debug_cache_entries Entries in the debug cache.
# TYPE debug_cache_entries gauge
debug_cache_entries{cache="a"} 12
debug_cache_entries{cache="b"} 7
"#;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn tempdir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().expect("temporary directory"))
}

/// An admin call that must succeed; returns the JSON body.
fn call(cp: &ControlPlane, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, body) = cp.api(method, path, body.as_ref());
    assert_eq!(status, 200, "{method} {path}: {body}");
    body
}

fn drop_debug() -> Value {
    json!({
        "id": "drop-debug",
        "name": "Drop debug families",
        "metric": {"match": [{"metricField": 1, "startsWith": "debug_"}], "keep": false}
    })
}

fn drop_fds() -> Value {
    json!({
        "id": "drop-debug",
        "name": "Drop the fd gauge",
        "metric": {"match": [{"metricField": 1, "exact": "process_open_fds"}], "keep": false}
    })
}

/// Creates `drop-debug`; returns its revision.
fn create_drop_debug(cp: &ControlPlane) -> Value {
    call(
        cp,
        "POST",
        "/api/v1/policies",
        Some(json!({"policy": drop_debug()})),
    )["revision"]
        .clone()
}

/// Replaces `drop-debug` by the fd-dropping version.
fn switch_to_drop_fds(cp: &ControlPlane) {
    let (_, current) = cp.api("GET", "/api/v1/policies/drop-debug", None);
    let revision = current["revision"].clone();
    assert!(!revision.is_null(), "{current}");
    call(
        cp,
        "PUT",
        "/api/v1/policies/drop-debug",
        Some(json!({"policy": drop_fds(), "expectedRevision": revision})),
    );
}

fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        other => other.as_i64().unwrap_or(0),
    }
}

/// A grpc provider on `cp` with the test's timings.
fn grpc_provider(cp: &ControlPlane, key: &str) -> Value {
    json!({
        "id": "cp",
        "type": "grpc",
        "url": cp.endpoint(),
        "headers": [{"name": "Authorization", "value": format!("Bearer {key}")}],
        "poll_interval_secs": 1,
        "stats_interval_secs": 1,
        "reconnect_min_secs": RECONNECT_MIN,
        "reconnect_max_secs": RECONNECT_MAX,
    })
}

fn edge_config(upstream: &Upstream, instance: &str, provider: Value) -> Value {
    json!({
        "upstream_url": upstream.url(),
        "service": {"name": "checkout", "namespace": "shop", "version": "1.0.0", "instance_id": instance},
        "policy_providers": [provider],
    })
}

/// One scrape through the edge: it must answer 200.
fn scrape(edge: &Edge) -> String {
    let r = http_get(&edge.url("/metrics"), &[]).expect("scrape through the edge");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

/// One scrape that must come back without the debug family.
fn scrape_filtered(edge: &Edge) {
    let body = scrape(edge);
    assert_eq!(
        body, WITHOUT_DEBUG,
        "scrape not filtered by the last policies"
    );
}

/// The provider's entry in `/_edge/policies`.
fn provider(edge: &Edge) -> Value {
    let p = edge.policies();
    p["providers"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["id"] == "cp").cloned())
        .unwrap_or_else(|| panic!("provider cp missing: {p}"))
}

fn transport(edge: &Edge) -> String {
    provider(edge)["transport"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn wait_transport(edge: &Edge, want: &str, within: Duration) -> Duration {
    let start = Instant::now();
    wait_for(within, &format!("edge transport {want:?}"), || {
        (transport(edge) == want).then_some(())
    });
    start.elapsed()
}

/// `/_edge/metrics` says the provider is up on `transport`.
fn assert_up_on(edge: &Edge, transport: &str, up: f64) {
    let series = format!("edge_policy_provider_up{{provider=\"cp\",transport=\"{transport}\"}}");
    assert_eq!(edge.self_metric(&series), up, "{series}");
}

/// `kill -9`: the process gets no chance to say goodbye.
fn crash(cp: ControlPlane) {
    let status = Command::new("kill")
        .args(["-KILL", &cp.process.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -9 {}", cp.process.pid());
    // Dropping reaps it (and its port is free for the restart).
    drop(cp);
}

/// `(hits, seriesDropped, bytesDropped)` of `drop-debug` as stored.
fn stored(cp: &ControlPlane) -> (i64, i64, i64) {
    let stats = call(cp, "GET", "/api/v1/policies/drop-debug/stats", None);
    let t = &stats["total"];
    (
        int(&t["hits"]),
        int(&t["seriesDropped"]),
        int(&t["bytesDropped"]),
    )
}

/// `(hits, series dropped, bytes dropped)` of `drop-debug` as the edge
/// counted them.
fn counted(edge: &Edge) -> (i64, i64, i64) {
    let text = edge.self_metrics();
    let read = |name: &str| {
        let series = format!("{name}{{policy_id=\"drop-debug\"}}");
        tero_e2e::metric_value(&text, &series)
            .unwrap_or_else(|| panic!("{series} missing:\n{text}")) as i64
    };
    (
        read("edge_policy_match_hits_total"),
        read("edge_policy_series_dropped_total"),
        read("edge_policy_bytes_dropped_total"),
    )
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// Two replicas on one database; edges stream from A and poll B when A is
/// gone. A crashes: every scrape meanwhile is filtered with the last set,
/// the edges fall back to polling B, and a change made through B reaches
/// them that way.
#[test]
fn a_crashed_replica_leaves_its_edges_filtering_and_polling_the_other() {
    let Some(db) = PgDatabase::create("tero_edge_faults") else {
        return;
    };
    let started = Instant::now();
    let dir = tempdir();
    let a = ControlPlane::start_with(dir.clone(), "a", Some(&db.url), CP_ARGS);
    let b = ControlPlane::start_with(dir.clone(), "b", Some(&db.url), CP_ARGS);
    let key = a.create_key("fleet");
    create_drop_debug(&a);

    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let edges: Vec<Edge> = (0..2)
        .map(|i| {
            let mut provider = grpc_provider(&a, &key);
            provider["poll_url"] = b.url("/v1/policy/sync").into();
            Edge::start(
                edge_config(&up, &format!("edge-{i}"), provider),
                dir.clone(),
                &format!("edge-{i}"),
            )
        })
        .collect();
    for edge in &edges {
        wait_transport(edge, "stream", Duration::from_secs(10));
        wait_for(Duration::from_secs(10), "policy applied", || {
            (scrape(edge) == WITHOUT_DEBUG).then_some(())
        });
        assert_up_on(edge, "stream", 1.0);
    }

    crash(a);
    let crashed = Instant::now();
    // Scrapes all through the outage: every one answered and filtered,
    // until both edges poll B.
    let mut scrapes = 0;
    wait_for(Duration::from_secs(10), "both edges polling B", || {
        for edge in &edges {
            scrape_filtered(edge);
            scrapes += 1;
        }
        edges.iter().all(|e| transport(e) == "poll").then_some(())
    });
    eprintln!(
        "edges polling B {:?} after A crashed ({scrapes} filtered scrapes meanwhile)",
        crashed.elapsed()
    );
    for edge in &edges {
        // The transport flips to poll before the first poll has answered.
        wait_for(Duration::from_secs(10), "provider up on poll", || {
            let series = "edge_policy_provider_up{provider=\"cp\",transport=\"poll\"}";
            (edge.self_metric(series) == 1.0).then_some(())
        });
        assert!(
            edge.process
                .log()
                .contains("policy stream unavailable; polling until it is back"),
            "{}",
            edge.process.log()
        );
    }

    // Every count stored once, whichever path carried it: reports on A's
    // stream before the crash (one perhaps stored but never acknowledged),
    // then protobuf polls to B naming the same reports (hits, and the Tero
    // extension fields for series and bytes dropped).
    let counted_total = edges
        .iter()
        .map(counted)
        .fold((0, 0, 0), |a, c| (a.0 + c.0, a.1 + c.1, a.2 + c.2));
    wait_for(Duration::from_secs(10), "statistics stored exactly", || {
        let now = stored(&b);
        assert!(
            now.0 <= counted_total.0 && now.1 <= counted_total.1 && now.2 <= counted_total.2,
            "stored {now:?} > counted {counted_total:?}"
        );
        (now == counted_total).then_some(())
    });

    // A change through B arrives by polling; scrapes stay answered and
    // filtered with one set or the other meanwhile.
    switch_to_drop_fds(&b);
    for edge in &edges {
        wait_for(
            Duration::from_secs(10),
            "the change made on B applied",
            || {
                let body = scrape(edge);
                assert!(body == WITHOUT_DEBUG || body == WITHOUT_FDS, "{body}");
                (body == WITHOUT_FDS).then_some(())
            },
        );
        assert_eq!(transport(edge), "poll", "A is still down");
    }
    for i in 0..2 {
        wait_for(Duration::from_secs(10), "B's view of the edge", || {
            let (status, view) = b.api("GET", &format!("/api/v1/edges/edge-{i}"), None);
            (status == 200
                && view["transport"] == "TRANSPORT_POLL"
                && view["appliedHash"] == view["desiredHash"])
                .then_some(view)
        });
    }
    // Polling on for more than three poll intervals with nothing new to
    // say, the edges still show as connected.
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_millis(3500) {
        for edge in &edges {
            assert_eq!(scrape(edge), WITHOUT_FDS);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 0..2 {
        let (_, view) = b.api("GET", &format!("/api/v1/edges/edge-{i}"), None);
        assert_eq!(view["state"], "EDGE_STATE_CONNECTED", "{view}");
        assert_eq!(view["transport"], "TRANSPORT_POLL", "{view}");
        assert_eq!(view["appliedHash"], view["desiredHash"], "{view}");
    }
    eprintln!("crashed replica test took {:?}", started.elapsed());
    drop(edges);
    drop(b);
    drop(db);
}

/// One control plane on SQLite, stopped and started again on the same port
/// and data directory. A change made while it was away (by a second process
/// on the same data directory) is applied once the edge re-subscribes,
/// which it does within its backoff bound.
#[test]
fn a_restarted_control_plane_gets_its_edges_back_on_the_stream() {
    let started = Instant::now();
    let dir = tempdir();
    let cp = ControlPlane::start_with(dir.clone(), "cp", None, CP_ARGS);
    let port = cp.port;
    let key = cp.create_key("edge");
    create_drop_debug(&cp);
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let edge = Edge::start(
        edge_config(&up, "edge-r", grpc_provider(&cp, &key)),
        dir.clone(),
        "edge-r",
    );
    wait_transport(&edge, "stream", Duration::from_secs(10));
    wait_for(Duration::from_secs(10), "policy applied", || {
        (scrape(&edge) == WITHOUT_DEBUG).then_some(())
    });
    let first_hash = provider(&edge)["hash"].as_str().unwrap().to_owned();

    // A clean stop: open streams end with UNAVAILABLE.
    let mut cp = cp;
    let status = cp
        .process
        .terminate(Duration::from_secs(15))
        .expect("control plane stops on SIGTERM");
    assert!(status.success(), "{status:?}");
    drop(cp);
    wait_for(Duration::from_secs(10), "edge sees the stream gone", || {
        scrape_filtered(&edge);
        provider(&edge)["last_error"].is_string().then_some(())
    });
    // While it is away, the policy changes: a second process on the same
    // data directory (another port; the edge does not know it) writes it.
    let other = ControlPlane::start_with(dir.clone(), "cp", None, CP_ARGS);
    switch_to_drop_fds(&other);
    drop(other);
    scrape_filtered(&edge);

    let cp = ControlPlane::start_on(port, dir.clone(), "cp", None, CP_ARGS);
    let back = Instant::now();
    let took = wait_transport(
        &edge,
        "stream",
        Duration::from_secs_f64(RECONNECT_MAX + 3.0),
    );
    eprintln!("edge back on the stream {took:?} after the restart");
    wait_for(Duration::from_secs(5), "the change applied", || {
        (scrape(&edge) == WITHOUT_FDS).then_some(())
    });
    eprintln!("change applied {:?} after the restart", back.elapsed());
    let hash = provider(&edge)["hash"].as_str().unwrap().to_owned();
    assert_ne!(hash, first_hash);
    let view = wait_for(Duration::from_secs(5), "runtime view converged", || {
        let (status, view) = cp.api("GET", "/api/v1/edges/edge-r", None);
        (status == 200 && view["appliedHash"] == view["desiredHash"] && view["appliedHash"] == hash)
            .then_some(view)
    });
    assert_eq!(view["transport"], "TRANSPORT_STREAM", "{view}");
    assert_eq!(view["state"], "EDGE_STATE_CONNECTED", "{view}");
    assert_up_on(&edge, "stream", 1.0);
    eprintln!("restart test took {:?}", started.elapsed());
}

/// An edge restarted while its control plane is down serves the set it
/// persisted, and goes back to the stream when the control plane returns.
#[test]
fn an_edge_restarted_while_the_control_plane_is_down_serves_the_persisted_set() {
    let started = Instant::now();
    let dir = tempdir();
    let state_dir = dir.path().join("edge-state");
    let cp = ControlPlane::start_with(dir.clone(), "cp", None, CP_ARGS);
    let port = cp.port;
    let key = cp.create_key("edge");
    create_drop_debug(&cp);
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let mut provider_config = grpc_provider(&cp, &key);
    provider_config["state_dir"] = state_dir.to_str().unwrap().into();
    let config = edge_config(&up, "edge-p", provider_config);

    let mut edge = Edge::start(config.clone(), dir.clone(), "edge-p1");
    wait_transport(&edge, "stream", Duration::from_secs(10));
    wait_for(Duration::from_secs(10), "policy applied", || {
        (scrape(&edge) == WITHOUT_DEBUG).then_some(())
    });
    assert!(state_dir.join("cp.last-good.pb").exists(), "set persisted");

    crash(cp);
    let status = edge
        .process
        .terminate(Duration::from_secs(10))
        .expect("edge exits on SIGTERM with its control plane down");
    assert!(status.success(), "{status:?}");
    drop(edge);

    let edge = Edge::start(config, dir.clone(), "edge-p2");
    // The very first scrape after /_ready is filtered.
    scrape_filtered(&edge);
    let p = provider(&edge);
    assert_eq!(p["transport"], "persisted", "{p}");
    assert_eq!(p["loaded"], true, "{p}");
    assert!(
        edge.process
            .log()
            .contains("serving the persisted policy set until the server answers"),
        "{}",
        edge.process.log()
    );
    assert_up_on(&edge, "persisted", 0.0);
    // It keeps serving that set while the stream and the polls fail.
    wait_for(Duration::from_secs(10), "failed reconnects", || {
        scrape_filtered(&edge);
        (provider(&edge)["syncs_failed"].as_u64() >= Some(3)).then_some(())
    });
    assert_eq!(transport(&edge), "persisted");

    let cp = ControlPlane::start_on(port, dir.clone(), "cp", None, CP_ARGS);
    let took = wait_transport(
        &edge,
        "stream",
        Duration::from_secs_f64(RECONNECT_MAX + 3.0),
    );
    eprintln!("restarted edge on the stream {took:?} after the control plane came back");
    scrape_filtered(&edge);
    assert_up_on(&edge, "stream", 1.0);
    drop(cp);
    eprintln!("persisted-set test took {:?}", started.elapsed());
}

/// A known number of filtered scrapes, with the control plane crashed and
/// restarted twice in between (some scrapes while it is down): the stored
/// totals equal the edge's counters and the expected totals exactly, stay
/// equal (nothing counted twice), and SIGTERM's final flush delivers the
/// last scrapes.
#[test]
fn statistics_stay_exact_across_control_plane_crashes() {
    let started = Instant::now();
    let dir = tempdir();
    let cp = ControlPlane::start_with(dir.clone(), "cp", None, CP_ARGS);
    let port = cp.port;
    let key = cp.create_key("edge");
    create_drop_debug(&cp);
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    // Reports travel on the stream and, while it is down, on the fallback
    // polls to the same (restarted) control plane.
    let provider_config = grpc_provider(&cp, &key);
    let mut edge = Edge::start(
        edge_config(&up, "edge-s", provider_config),
        dir.clone(),
        "edge-s",
    );
    wait_transport(&edge, "stream", Duration::from_secs(10));
    // Applied: wait on the edge's view, not by scraping (scrapes count).
    wait_for(Duration::from_secs(10), "policy applied", || {
        edge.policies()["policies"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["id"] == "drop-debug"))
            .then_some(())
    });

    // Each filtered scrape: 2 hits, 2 series, and the bytes of the two
    // debug series (measured on the first).
    let mut scrapes: i64 = 0;
    let mut scrape_n = |edge: &Edge, n: i64| {
        for _ in 0..n {
            scrape_filtered(edge);
        }
        scrapes += n;
        scrapes
    };
    let n = scrape_n(&edge, 1);
    let (hits, series, bytes_per_scrape) = counted(&edge);
    assert_eq!((hits, series), (2, 2));
    assert!(bytes_per_scrape > 0);
    let expected = |n: i64| (2 * n, 2 * n, bytes_per_scrape * n);
    assert_eq!(counted(&edge), expected(n));

    scrape_n(&edge, 4);
    wait_for(Duration::from_secs(10), "first reports stored", || {
        (stored(&cp).0 > 0).then_some(())
    });
    scrape_n(&edge, 3);
    crash(cp);
    // While it is down.
    scrape_n(&edge, 3);
    let cp = ControlPlane::start_on(port, dir.clone(), "cp", None, CP_ARGS);
    scrape_n(&edge, 3);
    wait_transport(
        &edge,
        "stream",
        Duration::from_secs_f64(RECONNECT_MAX + 3.0),
    );
    scrape_n(&edge, 2);
    // The second crash right after scrapes, a report possibly in flight.
    crash(cp);
    scrape_n(&edge, 2);
    let cp = ControlPlane::start_on(port, dir.clone(), "cp", None, CP_ARGS);
    let n = scrape_n(&edge, 2);
    wait_transport(
        &edge,
        "stream",
        Duration::from_secs_f64(RECONNECT_MAX + 3.0),
    );

    assert_eq!(counted(&edge), expected(n), "the edge's own counters");
    let arrived = Instant::now();
    wait_for(Duration::from_secs(10), "stored totals exact", || {
        let s = stored(&cp);
        assert!(
            s.0 <= expected(n).0 && s.1 <= expected(n).1 && s.2 <= expected(n).2,
            "counted twice: stored {s:?}, expected {:?}",
            expected(n)
        );
        (s == expected(n)).then_some(())
    });
    eprintln!(
        "{n} scrapes' statistics stored exactly {:?} after the last restart",
        arrived.elapsed()
    );
    // Several stats intervals more: still exact (no report counted twice).
    // The edge is idle meanwhile, and its stream stays up for more than
    // three of the control plane's heartbeat intervals.
    let opened = edge.process.log().matches("policy stream open").count();
    let hold = Instant::now();
    while hold.elapsed() < Duration::from_millis(3500) {
        assert_eq!(stored(&cp), expected(n), "stored totals changed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(transport(&edge), "stream");
    let log = edge.process.log();
    assert_eq!(
        log.matches("policy stream open").count(),
        opened,
        "an idle stream was dropped:\n{log}"
    );

    // Right after a report is stored (so the next one is a stats interval
    // away), a few more scrapes and SIGTERM: the final flush carries them.
    let n = scrape_n(&edge, 1);
    wait_for(Duration::from_secs(5), "report stored", || {
        (stored(&cp) == expected(n)).then_some(())
    });
    let n = scrape_n(&edge, 3);
    assert_eq!(counted(&edge), expected(n));
    let status = edge
        .process
        .terminate(Duration::from_secs(10))
        .expect("edge exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    assert_eq!(
        stored(&cp),
        expected(n),
        "the final flush delivered the last scrapes"
    );
    let log = edge.process.log();
    assert!(log.contains("final statistics report stored"), "{log}");
    eprintln!("{n} scrapes; statistics test took {:?}", started.elapsed());
    drop(cp);
}

/// Runs SQL on the test database (blocking).
fn pg(url: &str, statements: &[&str]) {
    use sqlx::Connection;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            for sql in statements {
                sqlx::query(sql).execute(&mut conn).await.expect(sql);
            }
            conn.close().await.expect("close");
        });
}

/// The control plane's connections are cut and come back `read_only` (or
/// writable again): a cheap way to make its store refuse writes for a while.
fn set_read_only(db_url: &str, read_only: bool) {
    let name = db_url.rsplit_once('/').expect("database name").1;
    let set = if read_only {
        format!("ALTER DATABASE \"{name}\" SET default_transaction_read_only = on")
    } else {
        format!("ALTER DATABASE \"{name}\" RESET default_transaction_read_only")
    };
    let cut = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    );
    // This session writes whatever the database's default.
    pg(
        db_url,
        &["SET default_transaction_read_only = off", &set, &cut],
    );
}

/// The control plane cannot store a report for a while (its database
/// refuses writes) while the stream stays up: the report is not
/// acknowledged, the edge sends it again, and it is counted once.
#[test]
fn a_report_the_control_plane_could_not_store_is_sent_again_on_the_same_stream() {
    let Some(db) = PgDatabase::create("tero_edge_faults_store") else {
        return;
    };
    let started = Instant::now();
    let dir = tempdir();
    let cp = ControlPlane::start_with(dir.clone(), "cp", Some(&db.url), CP_ARGS);
    let key = cp.create_key("edge");
    create_drop_debug(&cp);
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let mut provider_config = grpc_provider(&cp, &key);
    provider_config["poll_url"] = format!("http://127.0.0.1:{}/v1/policy/sync", free_port()).into();
    let edge = Edge::start(
        edge_config(&up, "edge-w", provider_config),
        dir.clone(),
        "edge-w",
    );
    wait_transport(&edge, "stream", Duration::from_secs(10));
    wait_for(Duration::from_secs(10), "policy applied", || {
        edge.policies()["policies"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["id"] == "drop-debug"))
            .then_some(())
    });
    let opened = edge.process.log().matches("policy stream open").count();

    set_read_only(&db.url, true);
    for _ in 0..3 {
        scrape_filtered(&edge);
    }
    wait_for(
        Duration::from_secs(10),
        "a report refused by the store",
        || {
            cp.process
                .log()
                .contains("statistics report not stored")
                .then_some(())
        },
    );
    set_read_only(&db.url, false);
    let restored = Instant::now();
    let expected = counted(&edge);
    assert_eq!(expected.0, 6);
    wait_for(Duration::from_secs(15), "the report stored once", || {
        let (_, stats) = cp.api("GET", "/api/v1/policies/drop-debug/stats", None);
        let t = &stats["total"];
        let s = (
            int(&t["hits"]),
            int(&t["seriesDropped"]),
            int(&t["bytesDropped"]),
        );
        assert!(s.0 <= expected.0, "counted twice: {s:?} > {expected:?}");
        (s == expected).then_some(())
    });
    eprintln!(
        "stored {:?} after the database took writes again",
        restored.elapsed()
    );
    assert_eq!(transport(&edge), "stream");
    assert_eq!(
        edge.process.log().matches("policy stream open").count(),
        opened,
        "stored on the same stream"
    );
    eprintln!("store-failure test took {:?}", started.elapsed());
    drop(edge);
    drop(cp);
    drop(db);
}

//! The Edge's HTTP surface: the scrape proxy and `/_edge/*` under hostile
//! headers, bodies and connections.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tero_e2e::fixtures::{DROP_DEBUG, EXPOSITION, TEXT, WITHOUT_DEBUG};
use tero_e2e::upstream::{Compression, Upstream};
use tero_e2e::{Edge, free_port, http_get, wait_for};

fn temp_dir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().expect("temp dir"))
}

/// An Edge in front of `upstream_url` with [`DROP_DEBUG`] loaded from a
/// file; `extra` is merged into the config.
fn filtering_edge(
    upstream_url: &str,
    dir: &Arc<tempfile::TempDir>,
    name: &str,
    extra: Value,
) -> Edge {
    let policy_file: PathBuf = dir.path().join(format!("{name}-policies.yaml"));
    std::fs::write(&policy_file, DROP_DEBUG).unwrap();
    let mut config = json!({
        "upstream_url": upstream_url,
        "service": {"name": name},
        "policy_providers": [{"id": "local", "type": "file", "path": policy_file}],
    });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            config.insert(k.clone(), v.clone());
        }
    }
    Edge::start(config, dir.clone(), name)
}

// ---------------------------------------------------------------------------
// X-Prometheus-Scrape-Timeout-Seconds
// ---------------------------------------------------------------------------

#[test]
fn absurd_scrape_timeout_headers_get_a_scrape_not_a_dropped_connection() {
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let dir = temp_dir();
    let filtering = filtering_edge(&up.url(), &dir, "edge-timeout-header", json!({}));
    let passthrough = Edge::start(
        json!({"upstream_url": up.url(), "service": {"name": "edge-timeout-header-raw"}}),
        dir.clone(),
        "edge-timeout-header-raw",
    );
    for (edge, expected) in [(&filtering, WITHOUT_DEBUG), (&passthrough, EXPOSITION)] {
        for value in [
            "1e20",
            "1e308",
            "18446744073709551616",
            "1.8446744073709552e19",
            "inf",
            "-inf",
            "NaN",
            "-1",
            "0",
            "1e-300",
            "ten",
            "",
        ] {
            let r = http_get(
                &edge.url("/metrics"),
                &[("X-Prometheus-Scrape-Timeout-Seconds", value)],
            )
            .unwrap_or_else(|e| panic!("{value:?}: the Edge must answer: {e}"));
            assert_eq!(r.status, 200, "{value:?}: {}", r.text());
            assert_eq!(r.text(), expected, "{value:?}");
        }
        // The process is still there and counted every scrape.
        assert_eq!(edge.self_metric("edge_scrapes_total{result=\"ok\"}"), 12.0);
        assert!(
            !edge.process.log().contains("panicked"),
            "{}",
            edge.process.log()
        );
    }
}

// ---------------------------------------------------------------------------
// Credentials in upstream_url
// ---------------------------------------------------------------------------

#[test]
fn credentials_in_the_upstream_url_are_never_shown() {
    const SECRET: &str = "s3cret-token";
    let dir = temp_dir();
    // Nothing listens there: every scrape is a 502 naming the upstream.
    let dead = free_port();
    let upstream_url =
        format!("http://scraper:{SECRET}@127.0.0.1:{dead}/metrics?module=x&token={SECRET}");
    let edge = filtering_edge(&upstream_url, &dir, "edge-credentials", json!({}));
    for path in [
        "/metrics",
        "/metrics/sub",
        "/metrics?token=client-s3cret-token",
    ] {
        let r = http_get(&edge.url(path), &[]).expect("a 502 answer");
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        let body = r.text();
        assert!(!body.contains(SECRET), "{path}: {body}");
        assert!(
            body.contains(&format!("http://***@127.0.0.1:{dead}/metrics")),
            "{path}: the upstream is still named: {body}"
        );
        assert!(body.contains("token=***"), "{path}: {body}");
    }
    for path in ["/_edge/metrics", "/_edge/policies", "/_ready", "/_health"] {
        let r = http_get(&edge.url(path), &[]).expect(path);
        assert!(!r.text().contains(SECRET), "{path}: {}", r.text());
    }
    wait_for(Duration::from_secs(3), "the failures logged", || {
        edge.process
            .log()
            .contains("upstream request failed")
            .then_some(())
    });
    let log = edge.process.log();
    assert!(log.contains("tero-edge started"), "{log}");
    assert!(!log.contains(SECRET), "the log shows no credential:\n{log}");
}

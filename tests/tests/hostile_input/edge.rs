//! The Edge's HTTP surface: the scrape proxy and `/_edge/*` under hostile
//! headers, bodies and connections.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tero_e2e::fixtures::{DROP_DEBUG, EXPOSITION, TEXT, WITHOUT_DEBUG};
use tero_e2e::upstream::{Compression, Upstream};
use tero_e2e::{Edge, free_port, http_get, metric_value, wait_for};

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

// ---------------------------------------------------------------------------
// Connections: slow heads, idle keep-alive, too many
// ---------------------------------------------------------------------------

/// Reads until the Edge closes the connection (EOF or reset); everything
/// read before. Fails if it stays open for 20 s.
fn read_until_closed(conn: &mut TcpStream) -> Vec<u8> {
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the connection is still open: {e}")
            }
            Err(_) => return got,
        }
    }
}

#[test]
fn slow_request_heads_are_closed_while_scrapes_go_on() {
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let dir = temp_dir();
    let edge = filtering_edge(
        &up.url(),
        &dir,
        "edge-slowloris",
        json!({"header_read_timeout_secs": 0.5, "idle_timeout_secs": 60}),
    );
    // Twenty clients that start a request and never finish its head, one
    // that trickles a header line a byte at a time, one that never sends.
    let mut stalled: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut c = TcpStream::connect(edge.addr()).unwrap();
            write!(c, "GET /metrics HTTP/1.1\r\nHost: edge\r\nX-Slow-{i}: ").unwrap();
            c
        })
        .collect();
    stalled.push(TcpStream::connect(edge.addr()).unwrap());
    let trickler = {
        let addr = edge.addr();
        std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            let head = b"GET /metrics HTTP/1.1\r\nHost: edge\r\nX-Trickle: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            for b in head {
                if c.write_all(&[*b]).is_err() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // The head never completed, yet the connection is still open.
            false
        })
    };
    // Meanwhile a scrape is served as usual.
    let r = http_get(&edge.url("/metrics"), &[]).expect("a scrape");
    assert_eq!((r.status, r.text().as_str()), (200, WITHOUT_DEBUG));
    for c in &mut stalled {
        assert!(read_until_closed(c).is_empty(), "closed without an answer");
    }
    assert!(trickler.join().unwrap(), "the trickling client was cut off");
    wait_for(Duration::from_secs(5), "the closes counted", || {
        let closed =
            edge.self_metric("edge_connections_closed_total{reason=\"header_read_timeout\"}");
        (closed >= 22.0).then_some(())
    });
    // Only the connection asking is open now.
    wait_for(Duration::from_secs(5), "the slots given back", || {
        (edge.self_metric("edge_connections_open") == 1.0).then_some(())
    });
    let r = http_get(&edge.url("/metrics"), &[]).expect("a scrape after");
    assert_eq!(r.status, 200);
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let dir = temp_dir();
    let edge = filtering_edge(
        &up.url(),
        &dir,
        "edge-idle",
        json!({"header_read_timeout_secs": 30, "idle_timeout_secs": 0.5}),
    );
    let mut idle: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut c = TcpStream::connect(edge.addr()).unwrap();
            // A complete keep-alive request; /_health has a known length.
            write!(c, "GET /_health HTTP/1.1\r\nHost: edge\r\n\r\n").unwrap();
            c
        })
        .collect();
    for c in &mut idle {
        let answer = String::from_utf8(read_until_closed(c)).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.ends_with("}"),
            "the whole answer, then the close: {answer}"
        );
    }
    wait_for(Duration::from_secs(5), "the closes counted", || {
        let closed = edge.self_metric("edge_connections_closed_total{reason=\"idle_timeout\"}");
        (closed >= 10.0).then_some(())
    });
    assert_eq!(
        edge.self_metric("edge_connections_closed_total{reason=\"header_read_timeout\"}"),
        0.0
    );
}

#[test]
fn connections_over_the_limit_are_refused_and_counted() {
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let dir = temp_dir();
    let edge = filtering_edge(
        &up.url(),
        &dir,
        "edge-max-connections",
        json!({"max_connections": 4, "header_read_timeout_secs": 60}),
    );
    // Each held connection proves it holds a slot by being served on it
    // (and then stays open, keep-alive). A connection an earlier request
    // left behind may still be freeing its slot, so a held one that is
    // refused tries again.
    let held: Vec<TcpStream> = (0..4)
        .map(|_| {
            wait_for(Duration::from_secs(5), "a connection served", || {
                let mut conn = TcpStream::connect(edge.addr()).ok()?;
                conn.write_all(b"GET /_health HTTP/1.1\r\nHost: edge\r\n\r\n")
                    .ok()?;
                conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                let mut head = [0u8; 12];
                conn.read_exact(&mut head).ok()?;
                head.starts_with(b"HTTP/1.1 200").then_some(conn)
            })
        })
        .collect();
    // The fifth is answered 503 and closed (the kernel accepted it; the
    // Edge does not keep it).
    let mut fifth = TcpStream::connect(edge.addr()).unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(&mut fifth)).into_owned();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
        "{answer}"
    );
    // So is a scrape: a 503, or a reset if the close came first.
    if let Ok(r) = http_get(&edge.url("/metrics"), &[]) {
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    drop(held);
    let refused = wait_for(Duration::from_secs(5), "a slot free again", || {
        http_get(&edge.url("/_edge/metrics"), &[])
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| metric_value(&r.text(), "edge_connections_refused_total"))
    });
    assert!(refused >= 2.0, "both refusals counted: {refused}");
    let r = http_get(&edge.url("/metrics"), &[]).expect("a scrape once slots are free");
    assert_eq!((r.status, r.text().as_str()), (200, WITHOUT_DEBUG));
}

#[test]
fn a_client_that_stops_reading_its_scrape_is_closed_and_frees_the_scrape() {
    // Far more than socket buffers hold, relayed as it comes.
    let line = "filler_metric{shard=\"0123456789abcdef0123456789abcdef\"} 1\n";
    let body = line.repeat(64 * 1024 * 1024 / line.len());
    let up = Upstream::start(body.into_bytes(), TEXT, Compression::None);
    let dir = temp_dir();
    let edge = Edge::start(
        json!({"upstream_url": up.url(), "service": {"name": "edge-slow-reader"},
               "idle_timeout_secs": 0.5}),
        dir.clone(),
        "edge-slow-reader",
    );
    let mut reader = TcpStream::connect(edge.addr()).unwrap();
    write!(reader, "GET /metrics HTTP/1.1\r\nHost: edge\r\n\r\n").unwrap();
    // Read the head and a little, then stop reading.
    let mut first = [0u8; 1024];
    reader
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = reader.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    wait_for(
        Duration::from_secs(20),
        "the stalled response closed",
        || {
            let closed = edge.self_metric("edge_connections_closed_total{reason=\"idle_timeout\"}");
            (closed >= 1.0).then_some(())
        },
    );
    // Its scrape ended, giving back its slot: counted as aborted, since the
    // client never got the whole body.
    wait_for(
        Duration::from_secs(5),
        "the scrape counted as aborted",
        || (edge.self_metric("edge_scrapes_total{result=\"aborted\"}") == 1.0).then_some(()),
    );
}

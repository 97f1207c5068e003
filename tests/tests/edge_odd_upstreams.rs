//! Exporters that speak a little differently from a client library's
//! `/metrics`: an HTTP/1.0 server (Python's `http.server`), and a text
//! exposition served as `application/octet-stream` (a static file server)
//! or under another type that names no format.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tero_e2e::fixtures::{DROP_DEBUG, EXPOSITION, WITHOUT_DEBUG};
use tero_e2e::upstream::UpstreamSpec;
use tero_e2e::{Edge, http_get};

fn temp_dir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().expect("temp dir"))
}

/// An Edge in front of `upstream_url`, with [`DROP_DEBUG`] loaded when
/// `filtering`.
fn edge(upstream_url: &str, dir: &Arc<tempfile::TempDir>, name: &str, filtering: bool) -> Edge {
    let mut config = json!({"upstream_url": upstream_url, "service": {"name": name}});
    if filtering {
        let policy_file: PathBuf = dir.path().join(format!("{name}-policies.yaml"));
        std::fs::write(&policy_file, DROP_DEBUG).unwrap();
        config["policy_providers"] = json!([{"id": "local", "type": "file", "path": policy_file}]);
    }
    let edge = Edge::start(config, dir.clone(), name);
    if filtering {
        assert_eq!(
            edge.self_metric("edge_policies_loaded{signal=\"metric\"}"),
            1.0
        );
    }
    edge
}

/// A server answering every request in HTTP/1.0 and closing the
/// connection, as Python's `http.server` does; with or without a
/// Content-Length.
fn http10_upstream(content_length: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let mut response = String::from(
                "HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.12\r\nContent-Type: text/plain; version=0.0.4\r\n",
            );
            if content_length {
                response.push_str(&format!("Content-Length: {}\r\n", EXPOSITION.len()));
            }
            response.push_str("\r\n");
            response.push_str(EXPOSITION);
            let _ = stream.write_all(response.as_bytes());
        }
    });
    addr
}

/// Two scrapes over one HTTP/1.1 connection; the version and body of each
/// answer. The second fails if the Edge closed the connection.
fn two_scrapes_on_one_connection(edge: &Edge) -> Vec<(Version, String)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let stream = tokio::net::TcpStream::connect(edge.addr())
            .await
            .expect("connect to the Edge");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        let mut answers = Vec::new();
        for i in 0..2 {
            let request = Request::get("/metrics")
                .header("host", "edge")
                .body(Empty::<Bytes>::new())
                .unwrap();
            sender
                .ready()
                .await
                .unwrap_or_else(|e| panic!("scrape {i}: connection closed by the Edge: {e}"));
            let response = sender
                .send_request(request)
                .await
                .unwrap_or_else(|e| panic!("scrape {i} on the same connection failed: {e}"));
            let version = response.version();
            let body = response.into_body().collect().await.expect("body");
            answers.push((
                version,
                String::from_utf8_lossy(&body.to_bytes()).into_owned(),
            ));
        }
        answers
    })
}

#[test]
fn an_http10_upstream_does_not_make_the_edge_answer_http10() {
    for (content_length, filtering, expected) in [
        (true, false, EXPOSITION),
        (false, false, EXPOSITION),
        (true, true, WITHOUT_DEBUG),
        (false, true, WITHOUT_DEBUG),
    ] {
        let what = format!("content-length {content_length}, filtering {filtering}");
        let upstream = http10_upstream(content_length);
        let dir = temp_dir();
        let edge = edge(
            &format!("http://{upstream}"),
            &dir,
            &format!("edge-http10-{content_length}-{filtering}"),
            filtering,
        );
        for (version, body) in two_scrapes_on_one_connection(&edge) {
            assert_eq!(version, Version::HTTP_11, "{what}");
            assert_eq!(body, expected, "{what}");
        }
    }
}

#[test]
fn a_text_exposition_served_as_octet_stream_is_sniffed_and_filtered() {
    for content_type in ["application/octet-stream", "application/x-unknown"] {
        let up = UpstreamSpec::new(EXPOSITION, content_type).start();
        let dir = temp_dir();
        let edge = edge(&up.url(), &dir, "edge-sniff-text", true);
        let r = http_get(&edge.url("/metrics"), &[]).expect("scrape");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), WITHOUT_DEBUG, "{content_type}: filtered");
        assert_eq!(r.header("content-type"), Some(content_type));
        assert_eq!(
            edge.self_metric("edge_scrape_format_total{by=\"sniffed\"}"),
            1.0
        );
        assert_eq!(
            edge.self_metric("edge_scrape_unfiltered_total{reason=\"content_type\"}"),
            0.0
        );
        assert!(edge.self_metric("edge_scrape_series_total{decision=\"dropped\"}") > 0.0);
    }
}

#[test]
fn a_binary_body_served_as_octet_stream_passes_unchanged() {
    let mut body = vec![0x0a, 0x13];
    body.extend_from_slice(b"debug_cache_entries");
    body.extend_from_slice(&[0x12, 0x00, 0xff, 0xfe, 0x0a]);
    body.extend_from_slice(b"\ndebug_cache_entries{cache=\"a\"} 12\n");
    body.extend((0u8..=255).rev());
    for content_type in ["application/octet-stream", "application/json"] {
        let up = UpstreamSpec::new(body.clone(), content_type).start();
        let dir = temp_dir();
        let edge = edge(&up.url(), &dir, "edge-sniff-binary", true);
        let r = http_get(&edge.url("/metrics"), &[]).expect("scrape");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, body, "{content_type}: relayed byte for byte");
        assert_eq!(r.header("content-type"), Some(content_type));
        assert_eq!(
            edge.self_metric("edge_scrape_format_total{by=\"unrecognized\"}"),
            1.0
        );
        assert_eq!(
            edge.self_metric("edge_scrape_unfiltered_total{reason=\"content_type\"}"),
            1.0
        );
    }
    // A typed exposition is counted as known from its type.
    let up = UpstreamSpec::new(EXPOSITION, tero_e2e::fixtures::TEXT).start();
    let dir = temp_dir();
    let edge = edge(&up.url(), &dir, "edge-typed", true);
    let r = http_get(&edge.url("/metrics"), &[]).expect("scrape");
    assert_eq!(r.text(), WITHOUT_DEBUG);
    assert_eq!(
        edge.self_metric("edge_scrape_format_total{by=\"content_type\"}"),
        1.0
    );
}

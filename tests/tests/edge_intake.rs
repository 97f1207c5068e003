//! The push intake end to end: a real `tero-edge` between clients (plain
//! HTTP, a tonic OTLP/gRPC client, hand-made h2c calls) and a backend sink
//! that records every request it receives, on ports chosen at run time.
//!
//! Payloads the Edge has no codec for yet (Datadog, OTLP JSON, until
//! theirs land) are "undecodable" to it and go upstream as they came; the
//! tests on them assert what holds either way (bytes and headers forwarded
//! intact, limits, failures, relays, the tap). Policies act on OTLP
//! protobuf.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message as _;
use serde_json::json;
use tero_e2e::push_sink::{PushSink, Received, Reply};
use tero_e2e::{Edge, HttpResponse, free_port, http_get, http_post, http_send, wait_for};
use tero_proto::otlp_collector::logs::v1::logs_service_client::LogsServiceClient;
use tero_proto::otlp_collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use tero_proto::otlp_logs::{LogRecord, ResourceLogs, ScopeLogs};

fn temp_dir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().expect("temp dir"))
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(body).expect("gzip");
    e.finish().expect("gzip")
}

fn edge(config: serde_json::Value, dir: &Arc<tempfile::TempDir>, name: &str) -> Edge {
    Edge::start(config, dir.clone(), name)
}

fn log_record(body: &str, severity: &str) -> LogRecord {
    LogRecord {
        body: Some(tero_proto::otel::AnyValue {
            value: Some(tero_proto::otel::any_value::Value::StringValue(body.into())),
        }),
        severity_text: severity.into(),
        ..Default::default()
    }
}

fn logs_request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A self-metric's value, 0 when absent.
fn self_metric(edge: &Edge, series: &str) -> f64 {
    tero_e2e::metric_value(&edge.self_metrics(), series).unwrap_or(0.0)
}

fn only_request(sink: &PushSink) -> Received {
    let received = sink.received();
    assert_eq!(
        received.len(),
        1,
        "exactly one request upstream: {received:#?}"
    );
    received
        .into_iter()
        .next()
        .unwrap_or_else(|| unreachable!())
}

const DD_LOGS: &str = r#"[{"message":"GET /health 200","status":"info","service":"web","ddsource":"nginx","hostname":"h1","ddtags":"env:prod"},{"message":"disk full","status":"error","service":"web"}]"#;
const DD_SERIES: &str = r#"{"series":[{"metric":"system.load.1","type":3,"points":[{"timestamp":1636629071,"value":0.7}],"tags":["env:prod"]}]}"#;

#[test]
fn datadog_pushes_reach_upstream_with_their_headers_and_bytes_intact() {
    let dir = temp_dir();
    let sink = PushSink::start();
    sink.reply(Reply::new(202, "application/json", "{}").header("x-backend", "dd"));
    let edge = edge(json!({"upstream_url": sink.url()}), &dir, "edge-dd");

    let body = gzip(DD_LOGS.as_bytes());
    let r = http_post(
        &edge.url("/api/v2/logs?dd-request-id=7"),
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
            ("dd-api-key", "abc123"),
            ("dd-evp-origin", "agent"),
            ("connection", "x-private"),
            ("x-private", "hop"),
        ],
        &body,
    )
    .expect("push Datadog logs");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.text(), "{}");
    assert_eq!(
        r.header("x-backend"),
        Some("dd"),
        "upstream's headers come back"
    );

    let got = only_request(&sink);
    assert_eq!(got.method, "POST");
    assert_eq!(got.path_and_query, "/api/v2/logs?dd-request-id=7");
    assert_eq!(got.header("dd-api-key"), Some("abc123"));
    assert_eq!(got.header("dd-evp-origin"), Some("agent"));
    assert_eq!(got.header("content-encoding"), Some("gzip"));
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(
        got.header("content-length").map(str::to_owned),
        Some(body.len().to_string())
    );
    assert_eq!(got.header("x-private"), None, "hop-by-hop headers stay");
    assert_eq!(got.body, body, "no policy: the bytes as sent");

    // Series, deflate-encoded (as Datadog agents send them).
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(DD_SERIES.as_bytes()).unwrap();
    let series = z.finish().unwrap();
    let r = http_post(
        &edge.url("/api/v2/series"),
        &[
            ("content-type", "application/json"),
            ("content-encoding", "deflate"),
            ("dd-api-key", "abc123"),
        ],
        &series,
    )
    .expect("push Datadog series");
    assert_eq!(r.status, 202, "{}", r.text());
    let got = sink.received().pop().expect("series forwarded");
    assert_eq!(got.path_and_query, "/api/v2/series");
    assert_eq!(got.header("content-encoding"), Some("deflate"));
    assert_eq!(got.body, series);
    let text = edge.self_metrics();
    for format in ["datadog_logs", "datadog_series"] {
        let series =
            format!("edge_intake_requests_total{{format=\"{format}\",outcome=\"forwarded\"}}");
        assert_eq!(
            tero_e2e::metric_value(&text, &series),
            Some(1.0),
            "{series}"
        );
    }
}

#[test]
fn per_signal_urls_take_their_signal() {
    let dir = temp_dir();
    let base = PushSink::start();
    let logs = PushSink::start();
    let edge = edge(
        json!({"upstream_url": base.url(), "logs_url": format!("{}/custom/logs", logs.url())}),
        &dir,
        "edge-routes",
    );
    let pb = [("content-type", "application/x-protobuf")];
    let body = logs_request(vec![log_record("hello", "INFO")]).encode_to_vec();
    assert_eq!(
        http_post(&edge.url("/v1/logs"), &pb, &body).unwrap().status,
        200
    );
    assert_eq!(
        http_post(&edge.url("/v1/traces"), &pb, b"").unwrap().status,
        200
    );
    assert_eq!(only_request(&logs).path_and_query, "/custom/logs");
    assert_eq!(only_request(&logs).body, body);
    assert_eq!(only_request(&base).path_and_query, "/v1/traces");
}

#[test]
fn bodies_over_the_limits_are_refused_with_413_naming_the_limit() {
    let dir = temp_dir();
    let sink = PushSink::start();
    let edge = edge(
        json!({"upstream_url": sink.url(), "max_body_size": 4096, "max_decoded_bytes": 65536}),
        &dir,
        "edge-limits",
    );
    let json_ct = ("content-type", "application/json");
    let r = http_post(&edge.url("/v1/logs"), &[json_ct], &[b' '; 5000]).unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(
        r.text().contains("max_body_size (4096 bytes"),
        "{}",
        r.text()
    );

    // Small on the wire, too large decoded.
    let wire = gzip(&vec![b' '; 100_000]);
    assert!(wire.len() < 4096);
    let r = http_post(
        &edge.url("/api/v2/logs"),
        &[json_ct, ("content-encoding", "gzip")],
        &wire,
    )
    .unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(
        r.text().contains("max_decoded_bytes (65536 bytes"),
        "{}",
        r.text()
    );

    // A body without a declared length is cut at the limit too.
    let r = chunked_post(&edge, "/v1/logs", &vec![b'x'; 10_000]);
    assert_eq!(r.0, 413, "{}", r.1);
    assert!(sink.received().is_empty(), "nothing refused went upstream");
    assert_eq!(
        self_metric(
            &edge,
            "edge_intake_requests_total{format=\"otlp_json\",outcome=\"refused\"}"
        ),
        2.0,
        "the two over max_body_size"
    );

    // Media types and encodings the intake does not read.
    let r = http_post(
        &edge.url("/v1/logs"),
        &[("content-type", "text/plain")],
        b"x",
    )
    .unwrap();
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(r.text().contains("application/x-protobuf"), "{}", r.text());
    let r = http_post(
        &edge.url("/v1/logs"),
        &[json_ct, ("content-encoding", "br")],
        b"x",
    )
    .unwrap();
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(r.text().contains("gzip, zstd"), "{}", r.text());
    let r = http_get(&edge.url("/v1/logs"), &[]).unwrap();
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
}

/// A POST with `Transfer-Encoding: chunked` (no length), status and body.
fn chunked_post(edge: &Edge, path: &str, body: &[u8]) -> (u16, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(edge.addr()).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let chunks: Vec<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>> = body
            .chunks(1000)
            .map(|c| Ok(hyper::body::Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let req = http::Request::post(path)
            .header("host", "edge")
            .header("content-type", "application/json")
            .body(http_body_util::StreamBody::new(futures_util::stream::iter(
                chunks,
            )))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
}

/// Peak resident memory of a process, from /proc.
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib * 1024
}

#[test]
fn a_gzip_bomb_costs_one_bounded_buffer_and_gets_413() {
    let dir = temp_dir();
    let sink = PushSink::start();
    let edge = edge(json!({"upstream_url": sink.url()}), &dir, "edge-bomb");
    // 512 MiB of zeros in under 1 MiB: one gzip member of 1 MiB of zeros,
    // repeated (a multi-member gzip stream, which decoders must read on).
    let member = gzip(&vec![0u8; 1 << 20]);
    let bomb: Vec<u8> = member
        .iter()
        .copied()
        .cycle()
        .take(member.len() * 512)
        .collect();
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let before = peak_rss_bytes(edge.process.pid());
    for _ in 0..3 {
        let r = http_post(
            &edge.url("/v1/logs"),
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "gzip"),
            ],
            &bomb,
        )
        .unwrap();
        assert_eq!(r.status, 413, "{}", r.text());
        assert!(
            r.text().contains("max_decoded_bytes (16777216"),
            "{}",
            r.text()
        );
    }
    let after = peak_rss_bytes(edge.process.pid());
    // The decoded limit is 16 MiB; the bomb expands to 512 MiB.
    assert!(
        after.saturating_sub(before) < 64 << 20,
        "peak RSS grew by {} MiB",
        after.saturating_sub(before) >> 20
    );
    assert!(sink.received().is_empty());
}

#[test]
fn upstream_down_answers_retryable_and_delivers_once_it_is_back() {
    let dir = temp_dir();
    let port = free_port();
    let edge = edge(
        json!({"upstream_url": format!("http://127.0.0.1:{port}"),
               "intake": {"upstream_timeout_secs": 1}}),
        &dir,
        "edge-down",
    );
    let body = logs_request(vec![log_record("payment declined", "WARN")]).encode_to_vec();
    let push = || {
        http_post(
            &edge.url("/v1/logs"),
            &[("content-type", "application/x-protobuf")],
            &body,
        )
        .expect("the edge answers")
    };
    let r = push();
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        r.text().contains(&format!("127.0.0.1:{port}")),
        "{}",
        r.text()
    );

    // Back: the client's retry is delivered, once.
    let sink = PushSink::start_on(port);
    let r = push();
    assert_eq!(r.status, 200, "{}", r.text());
    let got = only_request(&sink);
    assert_eq!(got.body, body);

    // Slow: a 504 the client retries, too.
    sink.reply(Reply::new(200, "application/x-protobuf", "").delay(Duration::from_secs(5)));
    let r = push();
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    // Upstream's own refusal is passed back as it is.
    sink.reply(Reply::new(503, "text/plain", "overloaded").header("retry-after", "30"));
    let r = push();
    assert_eq!((r.status, r.text().as_str()), (503, "overloaded"));
    assert_eq!(r.header("retry-after"), Some("30"));
    assert_eq!(
        self_metric(
            &edge,
            "edge_intake_requests_total{format=\"otlp_protobuf\",outcome=\"upstream_failed\"}"
        ),
        2.0
    );
}

#[test]
fn malformed_bodies_are_forwarded_unchanged_and_counted() {
    let dir = temp_dir();
    let sink = PushSink::start();
    let edge = edge(json!({"upstream_url": sink.url()}), &dir, "edge-malformed");
    let garbage = b"\xff\xff\xff\x0fnot protobuf at all";
    let r = http_post(
        &edge.url("/v1/logs"),
        &[("content-type", "application/x-protobuf")],
        garbage,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // A body that is not even valid gzip goes as it came, encoding and all.
    let not_gzip = b"\x1f\x8b\x08\x00broken";
    let r = http_post(
        &edge.url("/v1/traces"),
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        not_gzip,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let received = sink.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].body, garbage);
    assert_eq!(received[1].body, not_gzip);
    assert_eq!(received[1].header("content-encoding"), Some("gzip"));
    let text = edge.self_metrics();
    for format in ["otlp_protobuf", "otlp_json"] {
        let series = format!("edge_intake_undecodable_total{{format=\"{format}\"}}");
        assert_eq!(
            tero_e2e::metric_value(&text, &series),
            Some(1.0),
            "{series}"
        );
    }
}

#[test]
fn other_paths_are_relayed_unchanged_and_the_scrape_path_still_scrapes() {
    let dir = temp_dir();
    let sink = PushSink::start();
    sink.reply(Reply::new(200, "application/json", r#"{"valid":true}"#).header("x-from", "sink"));
    let edge = edge(json!({"upstream_url": sink.url()}), &dir, "edge-relay");
    let r = tero_e2e::http_get(
        &edge.url("/api/v1/validate?probe=1"),
        &[("dd-api-key", "k1"), ("accept", "application/json")],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), r#"{"valid":true}"#);
    assert_eq!(r.header("x-from"), Some("sink"));
    let r = http_send(
        "PUT",
        &edge.url("/intake/custom"),
        &[("x-k", "v")],
        b"payload",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let received = sink.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        (
            received[0].method.as_str(),
            received[0].path_and_query.as_str()
        ),
        ("GET", "/api/v1/validate?probe=1")
    );
    assert_eq!(received[0].header("dd-api-key"), Some("k1"));
    assert_eq!(
        (
            received[1].method.as_str(),
            received[1].path_and_query.as_str()
        ),
        ("PUT", "/intake/custom")
    );
    assert_eq!(received[1].body, b"payload");
    // The Edge's own paths are never relayed.
    let r = http_get(&edge.url("/_edge/nothing"), &[]).unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(sink.received().len(), 2);
    // The scrape path is the scrape's: upstream's /metrics, filtered.
    sink.reply(Reply::new(200, "text/plain; version=0.0.4", "up 1\n"));
    let r = http_get(&edge.url("/metrics"), &[]).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "up 1\n"));
    assert_eq!(sink.received()[2].path_and_query, "/metrics");
    assert_eq!(
        self_metric(&edge, "edge_intake_relayed_total{result=\"ok\"}"),
        2.0
    );
}

fn grpc_endpoint(edge: &Edge) -> String {
    format!("http://127.0.0.1:{}", edge.port)
}

#[test]
fn grpc_export_round_trips_and_upstream_failures_become_unavailable() {
    let dir = temp_dir();
    let sink = PushSink::start();
    let partial = ExportLogsServiceResponse {
        partial_success: Some(ExportLogsPartialSuccess {
            rejected_log_records: 1,
            error_message: "one was too old".into(),
        }),
    };
    sink.reply(Reply::new(
        200,
        "application/x-protobuf",
        partial.encode_to_vec(),
    ));
    let edge = edge(json!({"upstream_url": sink.url()}), &dir, "edge-grpc");
    let request = logs_request(vec![
        log_record("user 1 logged in", "INFO"),
        log_record("user 2 logged in", "INFO"),
    ]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client = LogsServiceClient::connect(grpc_endpoint(&edge))
            .await
            .expect("connect over h2c");
        let mut call = tonic::Request::new(request.clone());
        call.metadata_mut()
            .insert("authorization", "Bearer secret-token".parse().unwrap());
        call.metadata_mut()
            .insert("x-api-key", "k-9".parse().unwrap());
        let answer = client.export(call).await.expect("a successful export");
        assert_eq!(answer.into_inner(), partial, "upstream's partial success");

        let got = only_request(&sink);
        assert_eq!(got.method, "POST");
        assert_eq!(got.path_and_query, "/v1/logs", "OTLP/HTTP upstream");
        assert_eq!(got.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(got.header("authorization"), Some("Bearer secret-token"));
        assert_eq!(got.header("x-api-key"), Some("k-9"));
        assert_eq!(got.header("grpc-timeout"), None);
        assert_eq!(got.body, request.encode_to_vec(), "the same message bytes");

        for (http, code) in [
            (503, tonic::Code::Unavailable),
            (429, tonic::Code::Unavailable),
            (400, tonic::Code::InvalidArgument),
            (401, tonic::Code::Unauthenticated),
            (403, tonic::Code::PermissionDenied),
            (413, tonic::Code::ResourceExhausted),
            (500, tonic::Code::Internal),
        ] {
            sink.reply(Reply::new(http, "text/plain", "backend says no"));
            let status = client
                .export(request.clone())
                .await
                .expect_err("a failed export");
            assert_eq!(status.code(), code, "{http}: {status:?}");
            assert!(status.message().contains("backend says no"), "{status:?}");
        }
    });
    drop(sink);
    rt.block_on(async {
        let mut client = LogsServiceClient::connect(grpc_endpoint(&edge))
            .await
            .expect("connect");
        let status = client
            .export(request.clone())
            .await
            .expect_err("upstream is gone");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    });
}

#[test]
fn grpc_calls_the_edge_does_not_serve_are_unimplemented_and_gzip_is_read() {
    let dir = temp_dir();
    let sink = PushSink::start();
    sink.reply(Reply::new(200, "application/x-protobuf", ""));
    let edge = edge(json!({"upstream_url": sink.url()}), &dir, "edge-grpc-raw");
    let message = logs_request(vec![log_record("compressed", "INFO")]).encode_to_vec();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, trailers) = rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(grpc_endpoint(&edge))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let status = health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect_err("not a service of the edge");
        assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");

        // A gzip-compressed message, by hand (flag 1, grpc-encoding gzip).
        let compressed = gzip(&message);
        let mut framed = vec![1u8];
        framed.extend((compressed.len() as u32).to_be_bytes());
        framed.extend(&compressed);
        let stream = tokio::net::TcpStream::connect(edge.addr()).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = http::Request::post(format!(
            "http://{}/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            edge.addr()
        ))
        .header("content-type", "application/grpc")
        .header("grpc-encoding", "gzip")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(framed)))
        .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let http_status = resp.status();
        let collected = resp.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap_or_default();
        (http_status, trailers)
    });
    assert_eq!(status, 200);
    assert_eq!(
        trailers.get("grpc-status").and_then(|v| v.to_str().ok()),
        Some("0"),
        "{trailers:?}"
    );
    let got = only_request(&sink);
    assert_eq!(got.header("content-encoding"), Some("gzip"));
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&got.body[..]), &mut plain)
        .unwrap();
    assert_eq!(plain, message);
}

const DROP_ALL_INFO: &str = r#"{"policies": [{"id": "drop-info", "name": "drop INFO logs",
  "log": {"match": [{"log_field": "severity_text", "exact": "INFO"}], "keep": "none"}}]}"#;

#[test]
fn all_dropped_pushes_are_answered_without_calling_upstream() {
    let dir = temp_dir();
    let policies = dir.path().join("policies.json");
    std::fs::write(&policies, DROP_ALL_INFO).unwrap();
    let sink = PushSink::start();
    let edge = edge(
        json!({"upstream_url": sink.url(),
               "policy_providers": [{"id": "f", "type": "file", "path": policies}]}),
        &dir,
        "edge-dropall",
    );
    let request = logs_request(vec![log_record("a", "INFO"), log_record("b", "INFO")]);
    let r = http_post(
        &edge.url("/v1/logs"),
        &[("content-type", "application/x-protobuf")],
        &request.encode_to_vec(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    assert!(r.body.is_empty(), "an empty ExportLogsServiceResponse");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client = LogsServiceClient::connect(grpc_endpoint(&edge))
            .await
            .unwrap();
        let answer = client.export(request.clone()).await.expect("status 0");
        assert_eq!(answer.into_inner(), ExportLogsServiceResponse::default());
    });
    assert!(sink.received().is_empty(), "upstream was not called");
    assert_eq!(
        self_metric(
            &edge,
            "edge_intake_requests_total{format=\"otlp_protobuf\",outcome=\"all_dropped\"}"
        ),
        2.0
    );
    assert_eq!(
        self_metric(
            &edge,
            "edge_intake_records_total{signal=\"log\",decision=\"dropped\"}"
        ),
        4.0
    );
    // The volume the next sync reports: every record seen, before policies.
    assert_eq!(
        self_metric(&edge, "edge_volume_records_total{signal=\"log\"}"),
        4.0
    );
    assert!(self_metric(&edge, "edge_volume_bytes_total{signal=\"log\"}") > 0.0);
    // A mixed batch: only the kept record goes upstream.
    let mixed = logs_request(vec![log_record("a", "INFO"), log_record("kept", "ERROR")]);
    let r = http_post(
        &edge.url("/v1/logs"),
        &[("content-type", "application/x-protobuf")],
        &mixed.encode_to_vec(),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let got = only_request(&sink);
    let forwarded = ExportLogsServiceRequest::decode(&got.body[..]).unwrap();
    assert_eq!(
        forwarded,
        logs_request(vec![log_record("kept", "ERROR")]),
        "the kept record, nothing else changed"
    );
}

/// Reads a tap stream (NDJSON) until it ends.
fn read_tap(url: String) -> std::thread::JoinHandle<Result<HttpResponse, String>> {
    std::thread::spawn(move || http_get(&url, &[]))
}

#[test]
fn the_tap_streams_pushed_records_when_on_and_only_to_loopback() {
    let dir = temp_dir();
    let sink = PushSink::start();
    let off = edge(json!({"upstream_url": sink.url()}), &dir, "edge-tap-off");
    let r = http_get(&off.url("/_edge/tap/pre"), &[]).unwrap();
    assert_eq!(r.status, 404);
    assert!(r.text().contains("tap_enabled"), "{}", r.text());

    let on = edge(
        json!({"upstream_url": sink.url(), "tap_enabled": true, "listen_address": "0.0.0.0"}),
        &dir,
        "edge-tap-on",
    );
    let r = http_get(&on.url("/_edge/tap/pre?limit=0"), &[]).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    for stage in ["pre", "post"] {
        let reader = read_tap(on.url(&format!("/_edge/tap/{stage}?limit=3&signal=logs")));
        // Pushes until the tap has its three records: the tap listens from
        // when its request is served, which the test cannot see.
        wait_for(Duration::from_secs(20), "the tap's records", || {
            let pushed = http_post(
                &on.url("/api/v2/logs"),
                &[("content-type", "application/json")],
                DD_LOGS.as_bytes(),
            )
            .unwrap();
            assert_eq!(pushed.status, 200);
            reader.is_finished().then_some(())
        });
        let r = reader.join().unwrap().expect("the tap answers");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
        let lines: Vec<serde_json::Value> = r
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(lines.len(), 3, "{}", r.text());
        assert_eq!(lines[0]["signal"], "logs");
        assert_eq!(lines[0]["format"], "datadog_logs");
        assert_eq!(lines[0]["record"]["message"], "GET /health 200");
        assert_eq!(lines[1]["record"]["message"], "disk full");
    }
    // From another address than loopback, refused.
    if let Some(ip) = non_loopback_address() {
        let r = http_get(&format!("http://{ip}:{}/_edge/tap/pre", on.port), &[]).unwrap();
        assert_eq!(r.status, 403, "{}", r.text());
        assert!(r.text().contains("tap_allow_remote"), "{}", r.text());
    } else {
        eprintln!("no non-loopback address here; the remote refusal is covered by unit tests");
    }
}

/// An address of this machine that is not loopback, if it has one.
fn non_loopback_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // Connecting a UDP socket sends nothing; it picks the local address.
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn pushed_logs_reach_the_control_plane_as_event_types() {
    use tero_e2e::cli::{json_u64, tero_json_at};
    use tero_e2e::control_plane::ControlPlane;

    let dir = temp_dir();
    let sink = PushSink::start();
    let cp = ControlPlane::start(dir.clone(), "cp-samples");
    let key = cp.create_key("push-edge");
    let edge = edge(
        json!({
            "upstream_url": sink.url(),
            "service": {"name": "pusher", "instance_id": "pusher-0"},
            "policy_providers": [cp.grpc_provider(&key)],
            "inventory": {"interval_secs": 1, "sample_every_secs": 1},
            "intake": {"log_samples_per_second": 1000},
        }),
        &dir,
        "edge-samples",
    );
    // Two event types, with what varies varying.
    let records: Vec<LogRecord> = (0..10)
        .flat_map(|i| {
            [
                log_record(&format!("user {i} logged in from 10.0.0.{i}"), "INFO"),
                log_record(&format!("order {} shipped", 1000 + i), "INFO"),
            ]
        })
        .collect();
    let r = http_post(
        &edge.url("/v1/logs"),
        &[("content-type", "application/x-protobuf")],
        &logs_request(records).encode_to_vec(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let types = wait_for(
        Duration::from_secs(30),
        "event types from pushed logs",
        || {
            let listed = tero_json_at(
                &cp,
                &["classify", "list", "--service", "pusher", "--kind", "log"],
            );
            let types = listed.as_array().cloned().unwrap_or_default();
            let lines: u64 = types.iter().map(|t| json_u64(&t["count"])).sum();
            (lines == 20).then_some(types)
        },
    );
    assert_eq!(types.len(), 2, "{types:#?}");
    assert_eq!(self_metric(&edge, "edge_intake_log_samples_total"), 20.0);
}

#[test]
fn many_concurrent_pushes_wait_for_room_instead_of_adding_up_in_memory() {
    let dir = temp_dir();
    let sink = PushSink::start();
    // A slow backend: without a bound, every push would be in the Edge at
    // once.
    sink.reply(Reply::new(200, "application/x-protobuf", "").delay(Duration::from_millis(300)));
    let edge = edge(json!({"upstream_url": sink.url()}), &dir, "edge-many");
    let body: Arc<Vec<u8>> = Arc::new((0..1_000_000u32).map(|i| (i % 251) as u8).collect());
    let before = peak_rss_bytes(edge.process.pid());
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let (url, body) = (edge.url("/v1/logs"), body.clone());
            std::thread::spawn(move || {
                http_post(&url, &[("content-type", "application/x-protobuf")], &body)
                    .map(|r| r.status)
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), Ok(200));
    }
    let after = peak_rss_bytes(edge.process.pid());
    // 50 MiB were pushed at once; the Edge held at most its 16 MiB budget
    // of them, plus one payload per decode step.
    assert!(
        after.saturating_sub(before) < 32 << 20,
        "peak RSS grew by {} MiB",
        after.saturating_sub(before) >> 20
    );
    let received = sink.received();
    assert_eq!(received.len(), 50);
    assert!(received.iter().all(|r| r.body == *body));
}

#[test]
fn the_tap_shows_what_a_policy_does_to_live_traffic() {
    let dir = temp_dir();
    let policies = dir.path().join("policies.json");
    std::fs::write(&policies, DROP_ALL_INFO).unwrap();
    let sink = PushSink::start();
    let edge = edge(
        json!({"upstream_url": sink.url(), "tap_enabled": true,
               "policy_providers": [{"id": "f", "type": "file", "path": policies}]}),
        &dir,
        "edge-tap-policy",
    );
    let pre = read_tap(edge.url("/_edge/tap/pre?limit=2"));
    let post = read_tap(edge.url("/_edge/tap/post?limit=1"));
    let batch = logs_request(vec![log_record("a", "INFO"), log_record("kept", "ERROR")]);
    wait_for(Duration::from_secs(20), "both taps' records", || {
        let r = http_post(
            &edge.url("/v1/logs"),
            &[("content-type", "application/x-protobuf")],
            &batch.encode_to_vec(),
        )
        .unwrap();
        assert_eq!(r.status, 200);
        (pre.is_finished() && post.is_finished()).then_some(())
    });
    let bodies = |reader: std::thread::JoinHandle<Result<HttpResponse, String>>| {
        let r = reader.join().unwrap().expect("the tap answers");
        r.text()
            .lines()
            .map(|l| {
                let line: serde_json::Value = serde_json::from_str(l).unwrap();
                assert_eq!(line["format"], "otlp_protobuf");
                line["record"]["body"]["stringValue"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(bodies(pre), ["a", "kept"]);
    assert_eq!(bodies(post), ["kept"], "the INFO record is dropped");
}

//! Compatibility with the published `policy-rs` clients: their captured
//! first-sync requests (tests/fixtures/policy-rs-1.8.2, see its README)
//! replayed byte for byte against a real control plane, over HTTP/1.1 in
//! both encodings and over gRPC on HTTP/2.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use serde_json::{Value, json};
use tero_e2e::control_plane::ControlPlane;
use tero_e2e::wait_for;
use tero_proto::policy::SyncResponse;
use tero_sdk::policy::policy_set_hash;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/policy-rs-1.8.2");

/// The fields `policy-rs` 1.8.2's JSON decoder accepts in a `Policy`
/// (it rejects any other, as its error message lists).
const POLICY_RS_POLICY_FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "enabled",
    "createdAtUnixNano",
    "modifiedAtUnixNano",
    "labels",
    "log",
    "metric",
    "trace",
];

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture")
}

/// A control plane whose admin token is the one in the captured requests,
/// holding one policy for the captured identity's service and one not.
fn control_plane() -> ControlPlane {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let cp = ControlPlane::start(dir, "policy-rs");
    assert_eq!(
        cp.admin_token, "test-admin-policy-rs",
        "the token the fixtures carry"
    );
    for (id, service) in [("drop-debug", "checkout"), ("other-service", "cart")] {
        let (status, body) = cp.api(
            "POST",
            "/api/v1/policies",
            Some(&json!({
                "policy": {"id": id, "name": id,
                           "metric": {"match": [{"metricField": 1, "startsWith": "debug_"}], "keep": false}},
                "scope": {"matchers": [{"key": "service.name", "values": [service]}]}
            })),
        );
        assert_eq!(status, 200, "{body}");
    }
    cp
}

fn connect(cp: &ControlPlane) -> TcpStream {
    let stream = TcpStream::connect(cp.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Sends a captured HTTP/1.1 request; returns (status, headers, body).
fn replay_http1(cp: &ControlPlane, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = connect(cp);
    stream.write_all(request).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("content-length");
            if buf.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                return (status, head, buf[end + 4..end + 4 + length].to_vec());
            }
        }
        let n = stream.read(&mut chunk).expect("response");
        assert!(
            n > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn check_answer(answer: &SyncResponse) {
    let ids: Vec<&str> = answer.policies.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["drop-debug"], "the checkout instance's scoped set");
    assert_eq!(answer.hash, policy_set_hash(&answer.policies));
    assert!(answer.policies[0].enabled);
    assert!(answer.recommended_sync_interval_seconds > 0);
    assert!(answer.sync_timestamp_unix_nano > 0);
}

#[test]
fn policy_rs_http_json_request_gets_an_answer_it_accepts() {
    let cp = control_plane();
    let (status, head, body) = replay_http1(&cp, &fixture("http-json.request"));
    assert_eq!(status, 200, "{head}\n{}", String::from_utf8_lossy(&body));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let value: Value = serde_json::from_slice(&body).unwrap();
    for policy in value["policies"].as_array().unwrap() {
        for key in policy.as_object().unwrap().keys() {
            assert!(
                POLICY_RS_POLICY_FIELDS.contains(&key.as_str()),
                "policy-rs rejects a policy with field {key:?}: {policy}"
            );
        }
    }
    check_answer(&serde_json::from_value(value).unwrap());

    // The edge it described is now in the runtime view, polling.
    let edge = wait_for(
        Duration::from_secs(10),
        "policy-rs client in the runtime view",
        || {
            let (status, edge) = cp.api("GET", "/api/v1/edges/policy-rs-compat-1", None);
            (status == 200).then_some(edge)
        },
    );
    assert_eq!(edge["serviceName"], "checkout");
    assert_eq!(edge["transport"], "TRANSPORT_POLL");
}

#[test]
fn policy_rs_http_protobuf_request_gets_a_protobuf_answer() {
    let cp = control_plane();
    let (status, head, body) = replay_http1(&cp, &fixture("http-protobuf.request"));
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/x-protobuf"),
        "{head}"
    );
    check_answer(&SyncResponse::decode(body.as_slice()).unwrap());
}

/// One HTTP/2 frame: (type, flags, stream id, payload).
fn read_frame(stream: &mut TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).ok()?;
    let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let stream_id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).ok()?;
    Some((header[3], header[4], stream_id, payload))
}

#[test]
fn policy_rs_grpc_request_gets_its_policies() {
    const DATA: u8 = 0;
    const HEADERS: u8 = 1;
    const RST_STREAM: u8 = 3;
    const GOAWAY: u8 = 7;
    const END_STREAM: u8 = 1;
    let cp = control_plane();
    let mut stream = connect(&cp);
    stream.write_all(&fixture("grpc.request")).unwrap();

    // The client's first call is stream 1: collect its DATA until the
    // trailers (HEADERS with END_STREAM) close it.
    let mut message = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no complete answer on stream 1");
        let (kind, flags, id, payload) = read_frame(&mut stream).expect("a frame");
        match (kind, id) {
            (RST_STREAM, 1) => panic!("server reset the call: {payload:?}"),
            (GOAWAY, _) => panic!("server refused the connection: {payload:?}"),
            (DATA, 1) => message.extend_from_slice(&payload),
            (HEADERS, 1) if flags & END_STREAM != 0 => break,
            _ => {}
        }
    }
    // gRPC framing: compressed flag, big-endian length, message.
    assert!(message.len() > 5, "a response message");
    assert_eq!(message[0], 0, "uncompressed");
    let len = u32::from_be_bytes([message[1], message[2], message[3], message[4]]) as usize;
    check_answer(&SyncResponse::decode(&message[5..5 + len]).unwrap());
}

//! The control plane's edge-facing endpoints (Sync over gRPC and HTTP,
//! Subscribe, inventory and log reports) under a hostile edge key.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use serde_json::{Value, json};
use tero_e2e::control_plane::{ControlPlane, request_bytes, request_json};
use tero_e2e::{metric_value, wait_for};
use tero_proto::controlplane::edge_message::Message as EdgeMsg;
use tero_proto::controlplane::edge_service_client::EdgeServiceClient;
use tero_proto::controlplane::server_message::Message as ServerMsg;
use tero_proto::controlplane::{EdgeMessage, Hello, PolicyCounters, StatsReport};
use tero_proto::otel::{AnyValue, KeyValue, any_value};
use tero_proto::policy::policy_service_client::PolicyServiceClient;
use tero_proto::policy::{ClientMetadata, PolicySyncStatus, SyncRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

// ---------------------------------------------------------------- helpers

fn start(name: &str, args: &[&str]) -> ControlPlane {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    ControlPlane::start_with(dir, name, None, args)
}

fn create_policy(cp: &ControlPlane, id: &str) {
    let body = json!({"policy": {
        "id": id,
        "name": format!("drop {id}"),
        "metric": {"match": [{"metricField": 1, "regex": format!("^{id}_")}], "keep": false}
    }});
    let (status, created) = cp.api("POST", "/api/v1/policies", Some(&body));
    assert_eq!(status, 200, "create {id}: {created}");
}

/// Creates an edge key: `(id, secret)`.
fn create_key(cp: &ControlPlane, name: &str) -> (String, String) {
    let (status, body) = cp.api("POST", "/api/v1/keys", Some(&json!({ "name": name })));
    assert_eq!(status, 200, "create key: {body}");
    (
        body["key"]["id"].as_str().expect("key id").to_owned(),
        body["secret"].as_str().expect("secret").to_owned(),
    )
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

fn metadata(service: &str, instance: &str) -> ClientMetadata {
    ClientMetadata {
        resource_attributes: vec![
            kv("service.name", service),
            kv("service.instance.id", instance),
        ],
        ..Default::default()
    }
}

fn json_metadata(service: &str, instance: &str) -> Value {
    json!({"resourceAttributes": [
        {"key": "service.name", "value": {"stringValue": service}},
        {"key": "service.instance.id", "value": {"stringValue": instance}},
    ]})
}

/// A JSON Sync with an edge key: `(status, body)`.
fn sync_json(cp: &ControlPlane, key: &str, body: &Value) -> (u16, Value) {
    let bearer = format!("Bearer {key}");
    request_json(
        "POST",
        &cp.url("/v1/policy/sync"),
        &[("authorization", &bearer)],
        Some(body),
    )
}

/// A proto3 JSON 64-bit integer (a string) or a plain number.
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("not a number: {v}")),
        Value::Number(n) => n.as_i64().unwrap_or_else(|| panic!("not an i64: {v}")),
        _ => 0,
    }
}

fn self_metric(cp: &ControlPlane, series: &str) -> f64 {
    let text = tero_e2e::http_get(&cp.url("/metrics"), &[])
        .expect("GET /metrics")
        .text();
    metric_value(&text, series).unwrap_or(0.0)
}

/// The total of one counter of a policy's statistics, asserting the
/// endpoint answers.
fn total(cp: &ControlPlane, policy: &str, counter: &str) -> i64 {
    let (status, stats) = cp.api("GET", &format!("/api/v1/policies/{policy}/stats"), None);
    assert_eq!(status, 200, "stats of {policy}: {stats}");
    int(&stats["total"][counter])
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn authed<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii key"),
    );
    request
}

/// Opens a push stream for `instance`, says hello and reads up to the
/// first heartbeat; returns the request side and the responses.
async fn subscribe(
    cp: &ControlPlane,
    key: &str,
    instance: &str,
) -> Result<
    (
        mpsc::Sender<EdgeMessage>,
        tonic::Streaming<tero_proto::controlplane::ServerMessage>,
    ),
    tonic::Status,
> {
    let mut client = EdgeServiceClient::connect(cp.endpoint())
        .await
        .expect("gRPC connect");
    let (tx, rx) = mpsc::channel(16);
    tx.send(EdgeMessage {
        message: Some(EdgeMsg::Hello(Hello {
            client_metadata: Some(metadata("checkout", instance)),
            ..Default::default()
        })),
    })
    .await
    .expect("queue hello");
    let mut inbound = client
        .subscribe(authed(ReceiverStream::new(rx), key))
        .await?
        .into_inner();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), inbound.message())
            .await
            .expect("a message within 10 s")?
            .and_then(|m| m.message);
        match message {
            Some(ServerMsg::Heartbeat(_)) => return Ok((tx, inbound)),
            Some(_) => continue,
            None => return Err(tonic::Status::unavailable("stream ended")),
        }
    }
}

// ------------------------------------------------ counters (issue 16, #2)

/// Two `matchHits` of i64::MAX made SQLite store a REAL, and every read of
/// the policy's statistics failed with 500 for the whole retention.
#[test]
fn absurd_counters_are_refused_and_statistics_keep_answering() {
    let cp = start("cp-absurd-counters", &[]);
    create_policy(&cp, "counted");
    let (_, key) = create_key(&cp, "hostile");
    let sync = |statuses: Value| {
        let body = json!({
            "clientMetadata": json_metadata("checkout", "edge-counters"),
            "policyStatuses": statuses,
        });
        let (status, resp) = sync_json(&cp, &key, &body);
        assert_eq!(status, 200, "an edge keeps getting its policies: {resp}");
    };
    for _ in 0..2 {
        sync(json!([{"id": "counted", "matchHits": i64::MAX.to_string()}]));
    }
    sync(json!([{"id": "counted", "teroBytesDropped": "-3", "matchHits": "1"}]));
    sync(json!([{"id": "counted", "matchHits": "5", "matchMisses": "2"}]));

    // Over gRPC as well.
    runtime().block_on(async {
        let mut client = PolicyServiceClient::connect(cp.endpoint())
            .await
            .expect("gRPC connect");
        let request = SyncRequest {
            client_metadata: Some(metadata("checkout", "edge-counters")),
            policy_statuses: vec![PolicySyncStatus {
                id: "counted".into(),
                match_misses: i64::MAX,
                ..Default::default()
            }],
            ..Default::default()
        };
        client
            .sync(authed(request, &key))
            .await
            .expect("gRPC Sync answered");
    });

    assert_eq!(total(&cp, "counted", "hits"), 5);
    assert_eq!(total(&cp, "counted", "misses"), 2);
    let (status, impact) = cp.api("GET", "/api/v1/impact", None);
    assert_eq!(status, 200, "impact: {impact}");
    assert_eq!(
        self_metric(
            &cp,
            "tero_cp_edge_statuses_ignored_total{reason=\"invalid_counter\"}"
        ),
        4.0
    );
    assert!(
        cp.process.log().contains("counters out of bounds"),
        "the refusal is logged with its reason"
    );
}

/// Volume (spec 1.7.1) a hostile key holder sends: negative and absurd
/// counts, over HTTP JSON, gRPC Sync and the push stream. Each volume is
/// refused whole (never clamped into a made-up figure), the rest of the
/// sync is stored, the stream report is acknowledged (so not resent for
/// ever), and the runtime view still answers with the sane volume only.
#[test]
fn absurd_volume_is_refused_and_the_runtime_view_keeps_answering() {
    let cp = start("cp-absurd-volume", &[]);
    create_policy(&cp, "counted");
    let (_, key) = create_key(&cp, "hostile");
    let instance = "edge-volume";
    let sync = |volume: Value| {
        let body = json!({
            "clientMetadata": json_metadata("checkout", instance),
            "policyStatuses": [{"id": "counted", "matchHits": "1"}],
            "volume": volume,
        });
        let (status, resp) = sync_json(&cp, &key, &body);
        assert_eq!(status, 200, "an edge keeps getting its policies: {resp}");
    };
    sync(json!({"metricDataPoints": i64::MAX.to_string()}));
    sync(json!({"logRecords": "-1", "metricDataPoints": "5"}));
    sync(json!({"spanBytes": "1099511627777"}));
    // A sane one, counted.
    sync(json!({"metricDataPoints": "7"}));
    runtime().block_on(async {
        let mut client = PolicyServiceClient::connect(cp.endpoint())
            .await
            .expect("gRPC connect");
        let request = SyncRequest {
            client_metadata: Some(metadata("checkout", instance)),
            volume: Some(tero_proto::policy::VolumeStats {
                log_bytes: i64::MIN,
                ..Default::default()
            }),
            ..Default::default()
        };
        client
            .sync(authed(request, &key))
            .await
            .expect("gRPC Sync answered");
        let (tx, mut inbound) = subscribe(&cp, &key, "edge-volume-stream")
            .await
            .expect("stream opened");
        tx.send(EdgeMessage {
            message: Some(EdgeMsg::Stats(StatsReport {
                seq: 1,
                session: "s".into(),
                policies: Vec::new(),
                volume: Some(tero_proto::policy::VolumeStats {
                    spans: i64::MAX,
                    ..Default::default()
                }),
            })),
        })
        .await
        .expect("send report");
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), inbound.message())
                .await
                .expect("an answer within 10 s")
                .expect("stream open")
                .and_then(|m| m.message);
            if let Some(ServerMsg::StatsAck(ack)) = message {
                assert_eq!(ack.seq, 1, "acknowledged, so not resent");
                break;
            }
        }
    });
    assert_eq!(total(&cp, "counted", "hits"), 4, "the statuses were stored");
    assert_eq!(self_metric(&cp, "tero_cp_edge_volumes_refused_total"), 5.0);
    assert!(
        cp.process.log().contains("volume refused"),
        "the refusal is logged with its reason"
    );
    let edge = wait_for(Duration::from_secs(10), "the edge registered", || {
        let (status, edge) = cp.api("GET", &format!("/api/v1/edges/{instance}"), None);
        (status == 200).then_some(edge)
    });
    assert_eq!(
        int(&edge["volumeLastHour"]["metricDataPoints"]),
        7,
        "{edge}"
    );
    assert_eq!(int(&edge["volumeLastHour"]["spans"]), 0, "{edge}");
    let (status, listed) = cp.api("GET", "/api/v1/edges", None);
    assert_eq!(status, 200, "{listed}");
    let (status, stats) = cp.api("GET", "/api/v1/policies/counted/stats", None);
    assert_eq!(status, 200, "{stats}");
    assert_eq!(int(&stats["volumeShare"]["recordsSeen"]), 7, "{stats}");
}

// ------------------------------------- unknown policies (issue 16, #3)

/// One Sync with 100,000 statuses for made-up policies stalled the admin
/// API and stored rows for every id.
#[test]
fn statuses_for_unknown_policies_are_not_stored() {
    let cp = start("cp-unknown-statuses", &[]);
    create_policy(&cp, "real");
    let (_, key) = create_key(&cp, "hostile");

    // 19,999 made-up ids (one of them 512 KiB long) and one real policy.
    let mut statuses: Vec<Value> = (0..19_998)
        .map(|i| json!({"id": format!("ghost-{i}"), "matchHits": "7", "errors": ["boom"]}))
        .collect();
    statuses.push(json!({"id": "x".repeat(1 << 19), "matchHits": "7"}));
    statuses.push(json!({"id": "real", "matchHits": "3", "errors": ["e".repeat(100_000)]}));
    let body = json!({
        "clientMetadata": json_metadata("checkout", "edge-ghosts"),
        "policyStatuses": statuses,
    });
    let bytes = serde_json::to_vec(&body).expect("json");
    assert!(bytes.len() < 2 << 20, "under the body limit");

    // An admin call made while the sync is in flight is answered.
    std::thread::scope(|s| {
        let edge = s.spawn(|| sync_json(&cp, &key, &body));
        for _ in 0..5 {
            let (status, listed) = cp.api("GET", "/api/v1/policies", None);
            assert_eq!(status, 200, "admin API during a hostile sync: {listed}");
        }
        let (status, resp) = edge.join().expect("sync thread");
        assert_eq!(status, 200, "{resp}");
    });
    assert_eq!(
        self_metric(
            &cp,
            "tero_cp_edge_statuses_ignored_total{reason=\"unknown_policy\"}"
        ),
        19_999.0
    );
    assert_eq!(total(&cp, "real", "hits"), 3);

    // Over HTTP protobuf and gRPC, and on the push stream, the same.
    let ghost = |id: &str| PolicySyncStatus {
        id: id.into(),
        match_hits: 11,
        errors: vec!["boom".into()],
        ..Default::default()
    };
    let request = SyncRequest {
        client_metadata: Some(metadata("checkout", "edge-ghosts-2")),
        policy_statuses: vec![ghost("ghost-proto")],
        ..Default::default()
    };
    let bearer = format!("Bearer {key}");
    let resp = request_bytes(
        "POST",
        &cp.url("/v1/policy/sync"),
        &[
            ("authorization", &bearer),
            ("content-type", "application/x-protobuf"),
        ],
        Some(&request.encode_to_vec()),
    )
    .expect("protobuf sync");
    assert_eq!(resp.status, 200, "{}", resp.text());
    runtime().block_on(async {
        let mut client = PolicyServiceClient::connect(cp.endpoint())
            .await
            .expect("gRPC connect");
        let request = SyncRequest {
            policy_statuses: vec![ghost("ghost-grpc")],
            ..request.clone()
        };
        client
            .sync(authed(request, &key))
            .await
            .expect("gRPC Sync answered");
        let (tx, mut inbound) = subscribe(&cp, &key, "edge-ghost-stream")
            .await
            .expect("stream opened");
        tx.send(EdgeMessage {
            message: Some(EdgeMsg::Stats(StatsReport {
                seq: 1,
                session: "s".into(),
                policies: vec![PolicyCounters {
                    policy_id: "ghost-stream".into(),
                    hits: 13,
                    ..Default::default()
                }],
                volume: None,
            })),
        })
        .await
        .expect("send report");
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), inbound.message())
                .await
                .expect("an answer within 10 s")
                .expect("stream open")
                .and_then(|m| m.message);
            if let Some(ServerMsg::StatsAck(ack)) = message {
                assert_eq!(ack.seq, 1, "acknowledged, so not resent");
                break;
            }
        }
    });
    assert_eq!(
        self_metric(
            &cp,
            "tero_cp_edge_statuses_ignored_total{reason=\"unknown_policy\"}"
        ),
        20_002.0
    );

    // Nothing was stored under those ids: a policy created with one of them
    // later starts from zero.
    for id in ["ghost-0", "ghost-proto", "ghost-grpc", "ghost-stream"] {
        create_policy(&cp, id);
        assert_eq!(total(&cp, id, "hits"), 0, "{id}");
    }
    // The edge's errors name only the real policy, and are bounded.
    let edge = wait_for(Duration::from_secs(10), "the edge registered", || {
        let (status, edge) = cp.api("GET", "/api/v1/edges/edge-ghosts", None);
        (status == 200).then_some(edge)
    });
    let errors = edge["policyErrors"].as_array().expect("policyErrors");
    assert_eq!(errors.len(), 1, "{:?}", errors.first());
    assert_eq!(errors[0]["policyId"], "real");
    let kept = errors[0]["errors"][0].as_str().expect("an error");
    assert!(
        kept.len() < 2048,
        "an error is truncated: {} bytes",
        kept.len()
    );

    // More statuses than any edge has: refused, naming the bound.
    let too_many: Vec<Value> = (0..20_001)
        .map(|i| json!({"id": format!("p{i}")}))
        .collect();
    let (status, err) = sync_json(
        &cp,
        &key,
        &json!({"clientMetadata": json_metadata("checkout", "edge-ghosts"), "policyStatuses": too_many}),
    );
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["code"], "INVALID_ARGUMENT");
    assert!(
        err["message"].as_str().unwrap_or("").contains("20000"),
        "{err}"
    );
}

// ------------------------------------------- oversize bodies (issue 16, #11)

/// Sends a request head announcing `length` bytes (or chunked, when
/// `None`, streaming chunks until the server stops reading) and returns
/// the status and the JSON body of the answer.
fn oversize(
    cp: &ControlPlane,
    path: &str,
    token: Option<&str>,
    length: Option<usize>,
) -> (u16, Value) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut stream = std::net::TcpStream::connect(cp.addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut head =
        format!("POST {path} HTTP/1.1\r\nhost: cp\r\ncontent-type: application/json\r\n");
    if let Some(token) = token {
        head.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    match length {
        Some(n) => head.push_str(&format!("content-length: {n}\r\n\r\n")),
        None => head.push_str("transfer-encoding: chunked\r\n\r\n"),
    }
    stream.write_all(head.as_bytes()).expect("write head");
    let writer = length.is_none().then(|| {
        let mut stream = stream.try_clone().expect("clone");
        std::thread::spawn(move || {
            let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
            // Until the server has answered and closed: 4 MiB at most.
            for _ in 0..64 {
                if stream.write_all(chunk.as_bytes()).is_err() {
                    return;
                }
            }
            let _ = stream.write_all(b"0\r\n\r\n");
        })
    });
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
    let mut content_length = 0;
    let mut content_type = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("a header");
        match name.to_ascii_lowercase().as_str() {
            "content-length" => content_length = value.trim().parse().expect("length"),
            "content-type" => content_type = value.trim().to_owned(),
            _ => {}
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).expect("body");
    drop(reader);
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    assert_eq!(content_type, "application/json", "status {status}");
    (status, serde_json::from_slice(&body).expect("a JSON error"))
}

/// Bodies over 2 MiB got a plain-text 413 before authentication.
#[test]
fn oversize_bodies_get_the_json_error_after_authentication() {
    let cp = start("cp-oversize", &[]);
    let (_, key) = create_key(&cp, "edge");
    let big = Some(3 << 20);
    for path in ["/v1/policy/sync", "/api/v1/policies", "/api/v1/inventory"] {
        let (status, err) = oversize(&cp, path, None, big);
        assert_eq!(
            (status, err["code"].as_str()),
            (401, Some("UNAUTHENTICATED")),
            "{path}: {err}"
        );
        let (status, err) = oversize(&cp, path, Some("tero_ek_wrong"), big);
        assert_eq!(status, 401, "{path}: {err}");
    }
    // An edge key on the admin API: forbidden, whatever the size.
    let (status, err) = oversize(&cp, "/api/v1/policies", Some(&key), big);
    assert_eq!(
        (status, err["code"].as_str()),
        (403, Some("PERMISSION_DENIED")),
        "{err}"
    );
    // Authenticated: the documented JSON error, announced or streamed.
    for (path, token) in [
        ("/v1/policy/sync", key.as_str()),
        ("/api/v1/policies", cp.admin_token.as_str()),
    ] {
        for length in [big, None] {
            let (status, err) = oversize(&cp, path, Some(token), length);
            assert_eq!(status, 413, "{path} {length:?}: {err}");
            assert_eq!(err["code"], "RESOURCE_EXHAUSTED", "{err}");
            assert!(
                err["message"].as_str().unwrap_or("").contains("2097152"),
                "names the limit: {err}"
            );
        }
    }
    // Inventory reports have their own, larger bound.
    let (status, err) = oversize(&cp, "/api/v1/inventory", Some(&key), Some(65 << 20));
    assert_eq!(
        (status, err["code"].as_str()),
        (413, Some("RESOURCE_EXHAUSTED")),
        "{err}"
    );
    // The server still serves.
    let (status, _) = cp.api("GET", "/api/v1/policies", None);
    assert_eq!(status, 200);
}

// ----------------------------------------- impersonation (issue 16, #4)

/// A Sync from another key declaring the same `service.instance.id` took
/// the real edge's record over: its service, hash and key, and its scoped
/// policies showed `targeted: 0`.
#[test]
fn another_key_cannot_take_an_instance_over() {
    let cp = start("cp-impersonation", &[]);
    let body = json!({
        "policy": {
            "id": "checkout-only",
            "name": "checkout only",
            "metric": {"match": [{"metricField": 1, "regex": "^debug_"}], "keep": false}
        },
        "scope": {"matchers": [{"key": "service.name", "operator": "SCOPE_OPERATOR_IN", "values": ["checkout"]}]}
    });
    let (status, created) = cp.api("POST", "/api/v1/policies", Some(&body));
    assert_eq!(status, 200, "{created}");
    let (real_id, real) = create_key(&cp, "checkout-edges");
    let (evil_id, evil) = create_key(&cp, "other-team");
    let poll = |key: &str, service: &str| {
        sync_json(
            &cp,
            key,
            &json!({"clientMetadata": json_metadata(service, "edge-real")}),
        )
    };
    assert_eq!(poll(&real, "checkout").0, 200);

    // Another key claiming the instance: refused over every transport.
    let (status, err) = poll(&evil, "evil");
    assert_eq!(
        (status, err["code"].as_str()),
        (403, Some("PERMISSION_DENIED")),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .unwrap_or("")
            .contains("another API key"),
        "{err}"
    );
    runtime().block_on(async {
        let mut client = PolicyServiceClient::connect(cp.endpoint())
            .await
            .expect("gRPC connect");
        let request = SyncRequest {
            client_metadata: Some(metadata("evil", "edge-real")),
            ..Default::default()
        };
        let status = client
            .sync(authed(request, &evil))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        let refused = subscribe(&cp, &evil, "edge-real")
            .await
            .expect_err("stream refused");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    });
    // The real edge keeps polling; its record, and its policy's targeting,
    // are its own, and the refused claim shows.
    assert_eq!(poll(&real, "checkout").0, 200);
    let edge = wait_for(Duration::from_secs(10), "the conflict recorded", || {
        let (status, edge) = cp.api("GET", "/api/v1/edges/edge-real", None);
        (status == 200 && edge["conflictingKeyId"] == evil_id.as_str()).then_some(edge)
    });
    assert_eq!(edge["apiKeyId"], real_id.as_str(), "{edge}");
    assert_eq!(edge["serviceName"], "checkout", "{edge}");
    assert!(int(&edge["conflictUnixMs"]) > 0, "{edge}");
    let (_, deployment) = cp.api("GET", "/api/v1/policies/checkout-only/deployment", None);
    assert_eq!(deployment["targeted"], 1, "{deployment}");
    assert_eq!(
        self_metric(&cp, "tero_cp_instance_claims_refused_total"),
        3.0
    );

    // Revoking the bound key frees the instance id for another key.
    let (status, _) = cp.api("DELETE", &format!("/api/v1/keys/{real_id}"), None);
    assert_eq!(status, 200);
    let (status, resp) = poll(&evil, "checkout");
    assert_eq!(status, 200, "{resp}");
    wait_for(
        Duration::from_secs(10),
        "the instance moved to the new key",
        || {
            let (_, edge) = cp.api("GET", "/api/v1/edges/edge-real", None);
            (edge["apiKeyId"] == evil_id.as_str()).then_some(())
        },
    );
}

// ------------------------------------------ connections (issue 16, #10)

/// Whether the server closed `stream` (EOF or reset) within `within`;
/// anything it sends first is read and ignored.
fn closed_by_server(stream: &mut std::net::TcpStream, within: Duration) -> bool {
    use std::io::Read;
    let deadline = std::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        stream
            .set_read_timeout(Some(left.min(Duration::from_millis(200))))
            .expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
}

/// An HTTP/1.1 keep-alive request on `stream`, its answer read.
fn keep_alive_request(stream: &mut std::net::TcpStream) {
    use std::io::{Read, Write};
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: cp\r\n\r\n")
        .expect("request");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).expect("response");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
}

/// 200 slowloris connections were held for a minute and 2,000 idle ones
/// never closed: header and idle timeouts close them, push streams (idle
/// between messages, but a request in flight) stay open.
#[test]
fn slow_and_idle_connections_are_closed_but_push_streams_stay() {
    use std::io::Write;
    let cp = start(
        "cp-timeouts",
        &[
            "--header-read-timeout-secs",
            "1",
            "--idle-timeout-secs",
            "1",
            "--heartbeat-secs",
            "1",
        ],
    );
    let key = cp.create_key("edge");
    let connect = || std::net::TcpStream::connect(cp.addr()).expect("connect");
    // Slowloris: headers never finished, over HTTP/1.1 and (a preface and
    // nothing more) HTTP/2; and a connection that never says anything.
    let mut slow = connect();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: cp\r\nx-slow: 1")
        .expect("partial head");
    let mut h2 = connect();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .expect("preface");
    let mut silent = connect();
    // Idle: one request, then nothing.
    let mut idle = connect();
    keep_alive_request(&mut idle);

    // Meanwhile a push stream, idle between heartbeats, lives on.
    let beats = runtime().block_on(async {
        let (tx, mut inbound) = subscribe(&cp, &key, "edge-timeouts")
            .await
            .expect("stream opened");
        // The edge's heartbeats: the stream is live, the connection has no
        // other request.
        let beating = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let beat = EdgeMessage {
                    message: Some(EdgeMsg::Heartbeat(Default::default())),
                };
                if tx.send(beat).await.is_err() {
                    return;
                }
            }
        });
        let mut beats = 0;
        while beats < 4 {
            let message = tokio::time::timeout(Duration::from_secs(10), inbound.message())
                .await
                .expect("a message within 10 s")
                .expect("the stream stays open")
                .and_then(|m| m.message);
            if let Some(ServerMsg::Heartbeat(_)) = message {
                beats += 1;
            }
        }
        beating.abort();
        beats
    });
    assert_eq!(beats, 4);

    for (what, stream) in [
        ("slow HTTP/1.1 headers", &mut slow),
        ("HTTP/2 preface only", &mut h2),
        ("silent", &mut silent),
        ("idle keep-alive", &mut idle),
    ] {
        assert!(
            closed_by_server(stream, Duration::from_secs(10)),
            "{what}: still open"
        );
    }
    let closed = |reason: &str| {
        self_metric(
            &cp,
            &format!("tero_cp_connections_closed_total{{reason=\"{reason}\"}}"),
        )
    };
    // Over HTTP/1.1 the header timeout also bounds the wait for the next
    // request, so the idle keep-alive connection may be counted either way.
    let by_timeout = closed("header_timeout") + closed("idle");
    assert!(by_timeout >= 4.0, "{by_timeout}");

    // An HTTP/2 (gRPC) connection left idle after a call is closed too.
    runtime().block_on(async {
        let mut client = PolicyServiceClient::connect(cp.endpoint())
            .await
            .expect("gRPC connect");
        client
            .sync(authed(SyncRequest::default(), &key))
            .await
            .expect("gRPC Sync answered");
        let idle_before = closed("idle");
        tokio::task::block_in_place(|| {
            wait_for(
                Duration::from_secs(10),
                "the idle gRPC connection closed",
                || (closed("idle") > idle_before).then_some(()),
            )
        });
        drop(client);
    });
}

#[test]
fn connections_beyond_the_limit_are_refused() {
    let cp = start("cp-max-connections", &["--max-connections", "3"]);
    let mut held: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(cp.addr()).expect("connect");
            keep_alive_request(&mut stream);
            stream
        })
        .collect();
    let mut extra = std::net::TcpStream::connect(cp.addr()).expect("connect");
    assert!(
        closed_by_server(&mut extra, Duration::from_secs(10)),
        "a fourth connection is closed at once"
    );
    // The held ones still work; once one goes, others are served again.
    keep_alive_request(&mut held[0]);
    held.pop();
    let refused = wait_for(Duration::from_secs(10), "a free connection slot", || {
        tero_e2e::http_get(&cp.url("/metrics"), &[])
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| metric_value(&r.text(), "tero_cp_connections_refused_total"))
    });
    assert!(refused >= 1.0, "{refused}");
}

/// The registry stores an edge's instance id and metadata: both are bounded.
#[test]
fn oversize_edge_identities_are_refused() {
    let cp = start("cp-identities", &[]);
    let (_, key) = create_key(&cp, "hostile");
    let long_id = "i".repeat(2_000);
    let (status, err) = sync_json(
        &cp,
        &key,
        &json!({"clientMetadata": json_metadata("checkout", &long_id)}),
    );
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{err}"
    );
    assert!(
        err["message"].as_str().unwrap_or("").contains("1024"),
        "{err}"
    );
    let mut meta = json_metadata("checkout", "edge-fat");
    meta["labels"] = json!([{"key": "blob", "value": {"stringValue": "x".repeat(100_000)}}]);
    let (status, err) = sync_json(&cp, &key, &json!({ "clientMetadata": meta }));
    assert_eq!(
        (status, err["field"].as_str()),
        (400, Some("client_metadata")),
        "{err}"
    );
    let refused = runtime().block_on(subscribe(&cp, &key, &long_id));
    let status = refused.expect_err("stream refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    // Neither was registered.
    let (_, edges) = cp.api("GET", "/api/v1/edges", None);
    assert_eq!(edges["edges"].as_array().map_or(0, Vec::len), 0, "{edges}");
}

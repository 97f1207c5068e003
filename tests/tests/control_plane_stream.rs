//! The push stream `tero.controlplane.v1.EdgeService/Subscribe` against a
//! real `tero-control-plane`: snapshots offered, acknowledged and coalesced,
//! NACKs, statistics counted once, heartbeats, key revocation, graceful
//! shutdown, and two replicas sharing one PostgreSQL database.
//!
//! A small test edge speaks the protocol by hand, so every message the
//! server sends is seen and every wait is bounded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use serde_json::{Value, json};
use tero_e2e::control_plane::{ControlPlane, PgDatabase, request_json};
use tero_e2e::wait_for;
use tero_proto::controlplane::edge_message::Message as EdgeMsg;
use tero_proto::controlplane::edge_service_client::EdgeServiceClient;
use tero_proto::controlplane::server_message::Message as ServerMsg;
use tero_proto::controlplane::{
    Ack, EdgeMessage, Heartbeat, Hello, Nack, PolicyCounters, PolicyError, ServerMessage,
    StatsReport,
};
use tero_proto::otel::{AnyValue, KeyValue, any_value};
use tero_proto::policy::{ClientMetadata, SyncResponse};
use tero_sdk::policy::policy_set_hash;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

/// The longest any single expected message may take.
const RECV: Duration = Duration::from_secs(5);
/// How long the registry may take to show what an edge did (it flushes
/// every second).
const REGISTRY: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn tempdir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().expect("temporary directory"))
}

/// Runs blocking helpers (HTTP calls, process control) without stalling the
/// runtime's other tasks; the tests use the multi-threaded runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn start(name: &str, args: &[&str]) -> (Arc<tempfile::TempDir>, ControlPlane) {
    let dir = tempdir();
    let cp = blocking(|| ControlPlane::start_with(dir.clone(), name, None, args));
    (dir, cp)
}

/// An admin call that must succeed; returns the JSON body.
fn call(cp: &ControlPlane, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, body) = blocking(|| cp.api(method, path, body.as_ref()));
    assert_eq!(status, 200, "{method} {path}: {body}");
    body
}

/// The admin view of something, polled until `check` accepts it.
fn wait_view(cp: &ControlPlane, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    blocking(|| {
        wait_for(REGISTRY, what, || {
            let (status, body) = cp.api("GET", path, None);
            (status == 200 && check(&body)).then_some(body)
        })
    })
}

/// A metric policy dropping `^<id>_`, as an operator would post it.
fn create_policy(cp: &ControlPlane, id: &str) -> Value {
    call(
        cp,
        "POST",
        "/api/v1/policies",
        Some(json!({"policy": {
            "id": id,
            "name": format!("drop {id}"),
            "metric": {"match": [{"metricField": 1, "regex": format!("^{id}_")}], "keep": false}
        }})),
    )
}

/// Creates an edge key: `(id, secret)`.
fn create_key(cp: &ControlPlane, name: &str) -> (String, String) {
    let body = call(cp, "POST", "/api/v1/keys", Some(json!({ "name": name })));
    (
        body["key"]["id"].as_str().expect("key id").to_owned(),
        body["secret"].as_str().expect("secret").to_owned(),
    )
}

/// A proto3 JSON 64-bit integer (a string) or a plain number.
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("not an integer: {v}")),
        Value::Number(n) => n.as_i64().expect("integer"),
        _ => 0,
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

fn metadata(instance: &str) -> ClientMetadata {
    service_metadata("checkout", instance)
}

fn service_metadata(service: &str, instance: &str) -> ClientMetadata {
    ClientMetadata {
        resource_attributes: vec![
            kv("service.name", service),
            kv("service.instance.id", instance),
        ],
        ..Default::default()
    }
}

fn hello(instance: &str, last_hash: &str, last_failed_hash: &str) -> Hello {
    Hello {
        client_metadata: Some(metadata(instance)),
        last_hash: last_hash.into(),
        last_failed_hash: last_failed_hash.into(),
    }
}

/// A snapshot as the edge received it.
#[derive(Debug)]
struct Offer {
    nonce: u64,
    hash: String,
    response: SyncResponse,
}

impl Offer {
    fn ids(&self) -> Vec<&str> {
        self.response
            .policies
            .iter()
            .map(|p| p.id.as_str())
            .collect()
    }

    /// The hash names exactly the policies it carries.
    fn check_hash(&self) {
        assert_eq!(self.hash, policy_set_hash(&self.response.policies));
        assert_eq!(self.response.hash, self.hash);
    }
}

/// One edge's side of a push stream.
struct TestEdge {
    instance: String,
    tx: mpsc::Sender<EdgeMessage>,
    rx: tonic::Streaming<ServerMessage>,
    keep_alive: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestEdge {
    fn drop(&mut self) {
        if let Some(task) = self.keep_alive.take() {
            task.abort();
        }
    }
}

impl TestEdge {
    /// Opens a stream with `key` (none: no credentials) and says `hello`.
    async fn connect(cp: &ControlPlane, key: Option<&str>, hello: Hello) -> Result<Self, Status> {
        Self::open(cp, key, Some(hello)).await
    }

    /// Opens a stream, saying `hello` first if given.
    async fn open(
        cp: &ControlPlane,
        key: Option<&str>,
        hello: Option<Hello>,
    ) -> Result<Self, Status> {
        let instance = hello
            .as_ref()
            .and_then(|h| h.client_metadata.as_ref())
            .as_ref()
            .and_then(|m| {
                m.resource_attributes
                    .iter()
                    .find(|kv| kv.key == "service.instance.id")
            })
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                any_value::Value::StringValue(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        let mut client = tokio::time::timeout(RECV, EdgeServiceClient::connect(cp.endpoint()))
            .await
            .expect("gRPC connect timed out")
            .expect("gRPC connect");
        let (tx, outbound) = mpsc::channel(16);
        if let Some(hello) = hello {
            tx.send(EdgeMessage {
                message: Some(EdgeMsg::Hello(hello)),
            })
            .await
            .expect("queue hello");
        }
        let mut request = tonic::Request::new(ReceiverStream::new(outbound));
        if let Some(key) = key {
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {key}").parse().expect("ascii"),
            );
        }
        let response = tokio::time::timeout(RECV, client.subscribe(request))
            .await
            .expect("Subscribe timed out")?;
        Ok(TestEdge {
            instance,
            tx,
            rx: response.into_inner(),
            keep_alive: None,
        })
    }

    /// A fresh edge holding nothing, subscribed with `key`.
    async fn subscribe(cp: &ControlPlane, key: &str, instance: &str) -> Self {
        Self::connect(cp, Some(key), hello(instance, "", ""))
            .await
            .unwrap_or_else(|s| panic!("Subscribe for {instance}: {s:?}"))
    }

    /// Sends a heartbeat every `period` from now on, as a live edge does.
    fn keep_alive(mut self, period: Duration) -> Self {
        let tx = self.tx.clone();
        self.keep_alive = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let beat = EdgeMessage {
                    message: Some(EdgeMsg::Heartbeat(Heartbeat { sent_at_unix_ms: 0 })),
                };
                if tx.send(beat).await.is_err() {
                    return;
                }
            }
        }));
        self
    }

    async fn send(&self, message: EdgeMsg) {
        self.tx
            .send(EdgeMessage {
                message: Some(message),
            })
            .await
            .expect("stream request side closed");
    }

    /// The next server message within `within`: `None` if nothing came,
    /// `Err` when the stream ended (a clean end is `Code::Ok`).
    async fn recv(&mut self, within: Duration) -> Option<Result<ServerMsg, Status>> {
        match tokio::time::timeout(within, self.rx.message()).await {
            Err(_) => None,
            Ok(Ok(Some(m))) => Some(Ok(m.message.expect("empty ServerMessage"))),
            Ok(Ok(None)) => Some(Err(Status::new(Code::Ok, "stream ended"))),
            Ok(Err(status)) => Some(Err(status)),
        }
    }

    /// The next message that is not a heartbeat; panics after `RECV`.
    async fn next(&mut self) -> ServerMsg {
        let deadline = Instant::now() + RECV;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                None => panic!("{}: nothing from the server within {RECV:?}", self.instance),
                Some(Err(status)) => panic!("{}: stream ended: {status:?}", self.instance),
                Some(Ok(ServerMsg::Heartbeat(_))) => continue,
                Some(Ok(message)) => return message,
            }
        }
    }

    /// The next snapshot, decoded.
    async fn snapshot(&mut self) -> Offer {
        match self.next().await {
            ServerMsg::Snapshot(s) => Offer {
                nonce: s.nonce,
                hash: s.hash,
                response: SyncResponse::decode(s.sync_response).expect("SyncResponse"),
            },
            other => panic!("{}: expected a snapshot, got {other:?}", self.instance),
        }
    }

    async fn ack(&self, offer: &Offer) {
        self.send(EdgeMsg::Ack(Ack {
            nonce: offer.nonce,
            hash: offer.hash.clone(),
        }))
        .await;
    }

    async fn nack(&self, offer: &Offer, errors: Vec<PolicyError>, message: &str) {
        self.send(EdgeMsg::Nack(Nack {
            nonce: offer.nonce,
            hash: offer.hash.clone(),
            errors,
            message: message.into(),
        }))
        .await;
    }

    /// Sends a statistics report and returns the seq the server acknowledged.
    async fn stats(&mut self, session: &str, seq: u64, policies: Vec<PolicyCounters>) -> u64 {
        self.send(EdgeMsg::Stats(StatsReport {
            seq,
            policies,
            session: session.into(),
            volume: None,
        }))
        .await;
        match self.next().await {
            ServerMsg::StatsAck(ack) => ack.seq,
            other => panic!("{}: expected a StatsAck, got {other:?}", self.instance),
        }
    }

    /// Asserts that nothing but heartbeats arrives for `window`; returns how
    /// many heartbeats did.
    async fn quiet(&mut self, window: Duration) -> usize {
        let deadline = Instant::now() + window;
        let mut beats = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return beats;
            }
            match self.recv(left).await {
                None => return beats,
                Some(Ok(ServerMsg::Heartbeat(_))) => beats += 1,
                Some(Ok(other)) => panic!("{}: expected silence, got {other:?}", self.instance),
                Some(Err(status)) => panic!("{}: stream ended: {status:?}", self.instance),
            }
        }
    }

    /// Waits for the stream to end, skipping heartbeats; returns its status.
    async fn closed(&mut self, within: Duration) -> Status {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                None => panic!("{}: stream still open after {within:?}", self.instance),
                Some(Ok(ServerMsg::Heartbeat(_))) => continue,
                Some(Ok(other)) => panic!("{}: expected the end, got {other:?}", self.instance),
                Some(Err(status)) => return status,
            }
        }
    }
}

/// How a Subscribe with `key` is refused: at the call or as the first
/// message.
async fn refusal(cp: &ControlPlane, key: Option<&str>, instance: &str) -> Status {
    match TestEdge::connect(cp, key, hello(instance, "", "")).await {
        Err(status) => status,
        Ok(mut edge) => match edge.recv(RECV).await {
            Some(Err(status)) => status,
            other => panic!("Subscribe with {key:?} accepted: {other:?}"),
        },
    }
}

fn counters(policy: &str, hits: i64, misses: i64, bytes: i64, series: i64) -> PolicyCounters {
    PolicyCounters {
        policy_id: policy.into(),
        hits,
        misses,
        bytes_dropped: bytes,
        series_dropped: series,
        errors: Vec::new(),
        ..Default::default()
    }
}

/// `(hits, misses, bytes_dropped, series_dropped)` of a policy, all time.
fn totals(cp: &ControlPlane, policy: &str) -> (i64, i64, i64, i64) {
    let body = call(cp, "GET", &format!("/api/v1/policies/{policy}/stats"), None);
    let t = &body["total"];
    (
        int(&t["hits"]),
        int(&t["misses"]),
        int(&t["bytesDropped"]),
        int(&t["seriesDropped"]),
    )
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_created_through_the_api_reaches_a_subscribed_edge_and_shows_as_applied() {
    let (_dir, cp) = start("cp", &[]);
    let key = blocking(|| cp.create_key("fleet"));
    let mut edge = TestEdge::subscribe(&cp, &key, "edge-1").await;

    let first = edge.snapshot().await;
    assert!(first.ids().is_empty(), "{first:?}");
    first.check_hash();
    edge.ack(&first).await;

    create_policy(&cp, "drop-debug");
    let second = edge.snapshot().await;
    assert_eq!(second.ids(), ["drop-debug"]);
    second.check_hash();
    assert_ne!(second.hash, first.hash);
    assert!(
        second.nonce > first.nonce,
        "{} > {}",
        second.nonce,
        first.nonce
    );
    let policy = &second.response.policies[0];
    assert!(policy.enabled, "created enabled: {policy:?}");
    edge.ack(&second).await;

    let deployment = wait_view(
        &cp,
        "/api/v1/policies/drop-debug/deployment",
        "deployment targeted 1, applied 1",
        |d| d["targeted"] == 1 && d["applied"] == 1,
    );
    assert_eq!(deployment["pending"], 0, "{deployment}");
    assert_eq!(deployment["failed"], json!([]), "{deployment}");

    let view = wait_view(&cp, "/api/v1/edges/edge-1", "edge applied", |e| {
        e["appliedHash"] == second.hash.as_str()
    });
    assert_eq!(view["transport"], "TRANSPORT_STREAM", "{view}");
    assert_eq!(view["state"], "EDGE_STATE_CONNECTED", "{view}");
    assert_eq!(view["desiredHash"], second.hash.as_str(), "{view}");
    assert_eq!(view["replica"], "cp", "{view}");
    assert_eq!(view["serviceName"], "checkout", "{view}");
    assert_eq!(view["policyErrors"], json!([]), "{view}");

    // The same edge falling back to polling gets the same set and hash.
    drop(edge);
    let bearer = format!("Bearer {key}");
    let request = json!({
        "clientMetadata": {"resourceAttributes": [
            {"key": "service.name", "value": {"stringValue": "checkout"}},
            {"key": "service.instance.id", "value": {"stringValue": "edge-1"}}
        ]},
        "lastSuccessfulHash": second.hash,
    });
    let view = blocking(|| {
        wait_for(REGISTRY, "edge shown as polling", || {
            let (status, sync) = request_json(
                "POST",
                &cp.url("/v1/policy/sync"),
                &[("authorization", &bearer)],
                Some(&request),
            );
            assert_eq!(status, 200, "{sync}");
            assert_eq!(sync["hash"], second.hash.as_str(), "{sync}");
            let (_, view) = cp.api("GET", "/api/v1/edges/edge-1", None);
            (view["transport"] == "TRANSPORT_POLL").then_some(view)
        })
    });
    assert_eq!(view["appliedHash"], second.hash.as_str(), "{view}");
    assert_eq!(view["state"], "EDGE_STATE_CONNECTED", "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_a_snapshot_is_unacknowledged_coalesce_into_one() {
    let (_dir, cp) = start("cp", &[]);
    let key = blocking(|| cp.create_key("fleet"));
    create_policy(&cp, "p0");
    let mut edge = TestEdge::subscribe(&cp, &key, "edge-1").await;
    let first = edge.snapshot().await;
    assert_eq!(first.ids(), ["p0"]);

    // Not acknowledged yet: three changes, and the edge hears nothing.
    for id in ["p1", "p2", "p3"] {
        create_policy(&cp, id);
    }
    // (At most the one heartbeat that follows the answer to a hello.)
    assert!(edge.quiet(Duration::from_millis(800)).await <= 1);

    // An answer to a nonce never sent changes nothing.
    edge.send(EdgeMsg::Ack(Ack {
        nonce: first.nonce + 100,
        hash: first.hash.clone(),
    }))
    .await;
    edge.quiet(Duration::from_millis(300)).await;

    edge.ack(&first).await;
    let next = edge.snapshot().await;
    assert_eq!(next.ids(), ["p0", "p1", "p2", "p3"]);
    assert_eq!(next.nonce, first.nonce + 1);
    next.check_hash();
    edge.ack(&next).await;
    // Exactly one: nothing follows once it is acknowledged.
    edge.quiet(Duration::from_millis(800)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_already_holding_the_current_set_is_not_sent_it_again() {
    let (_dir, cp) = start("cp", &["--heartbeat-secs", "1"]);
    let key = blocking(|| cp.create_key("fleet"));
    create_policy(&cp, "p1");
    let mut first = TestEdge::subscribe(&cp, &key, "edge-a")
        .await
        .keep_alive(Duration::from_millis(500));
    let current = first.snapshot().await;
    first.ack(&current).await;

    let mut edge = TestEdge::connect(&cp, Some(&key), hello("edge-b", &current.hash, ""))
        .await
        .expect("Subscribe")
        .keep_alive(Duration::from_millis(500));
    let beats = edge.quiet(Duration::from_millis(2500)).await;
    assert!(
        beats >= 1,
        "heartbeats within 2.5 s at 1 s intervals: {beats}"
    );

    let view = wait_view(&cp, "/api/v1/edges/edge-b", "edge-b registered", |e| {
        e["desiredHash"] == current.hash.as_str()
    });
    assert_eq!(view["appliedHash"], current.hash.as_str(), "{view}");
    assert_eq!(view["transport"], "TRANSPORT_STREAM", "{view}");

    // The stream is live: the next change does arrive.
    create_policy(&cp, "p2");
    let next = edge.snapshot().await;
    assert_eq!(next.ids(), ["p1", "p2"]);
    assert_eq!(next.nonce, 1, "the first snapshot on this stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacks_record_policy_errors_and_a_refused_set_is_not_offered_again() {
    let (_dir, cp) = start("cp", &["--heartbeat-secs", "1"]);
    let key = blocking(|| cp.create_key("fleet"));
    create_policy(&cp, "good");
    let mut edge = TestEdge::subscribe(&cp, &key, "edge-1")
        .await
        .keep_alive(Duration::from_millis(400));
    let s1 = edge.snapshot().await;
    edge.ack(&s1).await;

    // Applied except one policy.
    create_policy(&cp, "bad");
    let s2 = edge.snapshot().await;
    assert_eq!(s2.ids(), ["bad", "good"]);
    let reason = "regex: compiled size exceeds the limit";
    edge.nack(
        &s2,
        vec![PolicyError {
            policy_id: "bad".into(),
            errors: vec![reason.into()],
        }],
        "",
    )
    .await;
    let view = wait_view(&cp, "/api/v1/edges/edge-1", "policy errors recorded", |e| {
        e["appliedHash"] == s2.hash.as_str()
            && e["policyErrors"].as_array().is_some_and(|a| !a.is_empty())
    });
    assert_eq!(
        view["policyErrors"],
        json!([{"policyId": "bad", "errors": [reason]}]),
        "{view}"
    );
    let bad = call(&cp, "GET", "/api/v1/policies/bad/deployment", None);
    assert_eq!(bad["targeted"], 1, "{bad}");
    assert_eq!(bad["applied"], 0, "{bad}");
    assert_eq!(
        bad["failed"],
        json!([{"instanceId": "edge-1", "errors": [reason]}]),
        "{bad}"
    );
    let good = call(&cp, "GET", "/api/v1/policies/good/deployment", None);
    assert_eq!(
        (&good["targeted"], &good["applied"]),
        (&json!(1), &json!(1)),
        "{good}"
    );
    // Nothing is re-offered: the edge runs that hash.
    edge.quiet(Duration::from_millis(500)).await;

    // Refused as a whole: that hash is not offered again.
    create_policy(&cp, "huge");
    let s3 = edge.snapshot().await;
    assert_eq!(s3.ids(), ["bad", "good", "huge"]);
    edge.nack(&s3, vec![], "out of memory compiling the set")
        .await;
    edge.quiet(Duration::from_millis(1500)).await;
    let view = wait_view(&cp, "/api/v1/edges/edge-1", "refusal recorded", |e| {
        e["lastFailedHash"] == s3.hash.as_str()
    });
    assert_eq!(
        view["appliedHash"],
        s2.hash.as_str(),
        "still runs s2: {view}"
    );
    assert!(
        view["policyErrors"]
            .as_array()
            .expect("policyErrors")
            .iter()
            .any(|e| e["errors"] == json!(["out of memory compiling the set"])),
        "{view}"
    );
    let huge = call(&cp, "GET", "/api/v1/policies/huge/deployment", None);
    assert_eq!(
        (&huge["targeted"], &huge["pending"]),
        (&json!(1), &json!(1)),
        "{huge}"
    );

    // Nor to the same edge reconnecting with it as its last failed hash.
    drop(edge);
    let mut edge = TestEdge::connect(&cp, Some(&key), hello("edge-1", &s2.hash, &s3.hash))
        .await
        .expect("Subscribe")
        .keep_alive(Duration::from_millis(400));
    edge.quiet(Duration::from_millis(1200)).await;

    // Until the set changes.
    create_policy(&cp, "after");
    let s4 = edge.snapshot().await;
    assert_eq!(s4.ids(), ["after", "bad", "good", "huge"]);
    assert_ne!(s4.hash, s3.hash);
    edge.ack(&s4).await;
    let view = wait_view(&cp, "/api/v1/edges/edge-1", "s4 applied", |e| {
        e["appliedHash"] == s4.hash.as_str()
    });
    assert_eq!(
        view["policyErrors"],
        json!([]),
        "a full ACK clears errors: {view}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_hello_on_an_open_stream_re_evaluates_the_edges_set_and_identity() {
    let (_dir, cp) = start("cp", &[]);
    let key = blocking(|| cp.create_key("fleet"));
    create_policy(&cp, "all");
    call(
        &cp,
        "POST",
        "/api/v1/policies",
        Some(json!({
            "policy": {
                "id": "cart-only",
                "name": "cart only",
                "metric": {"match": [{"metricField": 1, "regex": "^cart_"}], "keep": false}
            },
            "scope": {"matchers": [
                {"key": "service.name", "operator": "SCOPE_OPERATOR_IN", "values": ["cart"]}
            ]}
        })),
    );
    let mut edge = TestEdge::subscribe(&cp, &key, "edge-1").await;
    let s1 = edge.snapshot().await;
    assert_eq!(s1.ids(), ["all"], "checkout is not in the cart scope");
    edge.ack(&s1).await;

    // The same process now declares itself part of the cart service.
    edge.send(EdgeMsg::Hello(Hello {
        client_metadata: Some(service_metadata("cart", "edge-1")),
        last_hash: s1.hash.clone(),
        last_failed_hash: String::new(),
    }))
    .await;
    let s2 = edge.snapshot().await;
    assert_eq!(s2.ids(), ["all", "cart-only"]);
    s2.check_hash();
    edge.ack(&s2).await;

    let view = wait_view(&cp, "/api/v1/edges/edge-1", "edge applied s2", |e| {
        e["appliedHash"] == s2.hash.as_str()
    });
    assert_eq!(
        view["serviceName"], "cart",
        "the registry follows the new hello: {view}"
    );
    let deployment = wait_view(
        &cp,
        "/api/v1/policies/cart-only/deployment",
        "cart-only applied",
        |d| d["applied"] == 1,
    );
    assert_eq!(deployment["targeted"], 1, "{deployment}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_end_the_stream_with_invalid_argument() {
    let (_dir, cp) = start("cp", &[]);
    let key = blocking(|| cp.create_key("fleet"));

    // The first message must be a hello.
    let mut edge = TestEdge::open(&cp, Some(&key), None)
        .await
        .expect("Subscribe");
    edge.send(EdgeMsg::Ack(Ack {
        nonce: 1,
        hash: "x".into(),
    }))
    .await;
    let status = edge.closed(RECV).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // A hello must name the instance.
    let anonymous = Hello {
        client_metadata: Some(ClientMetadata {
            resource_attributes: vec![kv("service.name", "checkout")],
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut edge = TestEdge::connect(&cp, Some(&key), anonymous)
        .await
        .expect("Subscribe");
    let status = edge.closed(RECV).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("service.instance.id"),
        "{status:?}"
    );

    // And cannot change it on an open stream.
    let mut edge = TestEdge::subscribe(&cp, &key, "edge-1").await;
    let s = edge.snapshot().await;
    edge.ack(&s).await;
    edge.send(EdgeMsg::Hello(hello("edge-2", &s.hash, "")))
        .await;
    let status = edge.closed(RECV).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_reports_are_acknowledged_and_counted_exactly_once() {
    let (_dir, cp) = start("cp", &[]);
    let key = blocking(|| cp.create_key("fleet"));
    create_policy(&cp, "drop-debug");
    let mut edge = TestEdge::subscribe(&cp, &key, "edge-1").await;
    let s = edge.snapshot().await;
    edge.ack(&s).await;

    let seq1 = vec![counters("drop-debug", 5, 1, 100, 2)];
    let seq2 = vec![counters("drop-debug", 7, 0, 50, 1)];
    assert_eq!(edge.stats("session-a", 1, seq1.clone()).await, 1);
    assert_eq!(edge.stats("session-a", 2, seq2.clone()).await, 2);
    assert_eq!(totals(&cp, "drop-debug"), (12, 1, 150, 3));

    // Retries (after a lost StatsAck) are acknowledged but not counted.
    assert_eq!(edge.stats("session-a", 2, seq2).await, 2);
    assert_eq!(edge.stats("session-a", 1, seq1).await, 1);
    assert_eq!(totals(&cp, "drop-debug"), (12, 1, 150, 3));

    // A restarted edge starts again at 1 with a new session: counted.
    assert_eq!(
        edge.stats("session-b", 1, vec![counters("drop-debug", 11, 2, 0, 0)])
            .await,
        1
    );
    assert_eq!(totals(&cp, "drop-debug"), (23, 3, 150, 3));

    // The same report on a new stream (the edge reconnected) is still a retry.
    drop(edge);
    let mut edge = TestEdge::connect(&cp, Some(&key), hello("edge-1", &s.hash, ""))
        .await
        .expect("Subscribe");
    assert_eq!(
        edge.stats("session-b", 1, vec![counters("drop-debug", 11, 2, 0, 0)])
            .await,
        1
    );
    assert_eq!(totals(&cp, "drop-debug"), (23, 3, 150, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_key_closes_its_streams_and_refuses_it_afterwards() {
    let (_dir, cp) = start("cp", &[]);
    let (key_id, secret) = create_key(&cp, "doomed");
    let other = blocking(|| cp.create_key("other"));
    let mut edge = TestEdge::subscribe(&cp, &secret, "edge-1").await;
    let s = edge.snapshot().await;
    edge.ack(&s).await;
    let mut bystander = TestEdge::subscribe(&cp, &other, "edge-2").await;
    let s = bystander.snapshot().await;
    bystander.ack(&s).await;

    let revoked_at = Instant::now();
    let key = call(&cp, "DELETE", &format!("/api/v1/keys/{key_id}"), None);
    assert_ne!(int(&key["revokedAtUnixMs"]), 0, "{key}");
    let status = edge.closed(Duration::from_secs(2)).await;
    let took = revoked_at.elapsed();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    eprintln!("stream closed {took:?} after the revocation was requested");

    // Another key's stream stays open.
    bystander.quiet(Duration::from_millis(300)).await;

    let status = refusal(&cp, Some(&secret), "edge-1").await;
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "revoked key: {status:?}"
    );
    let status = refusal(&cp, None, "edge-3").await;
    assert_eq!(status.code(), Code::Unauthenticated, "no key: {status:?}");
    let status = refusal(&cp, Some("tero_ek_0123456789abcdef"), "edge-3").await;
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "unknown key: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_before_the_hello_does_not_get_a_stream() {
    let (_dir, cp) = start("cp", &[]);
    let (key_id, secret) = create_key(&cp, "doomed");
    // Authenticated, but the edge has not said hello yet.
    let mut edge = TestEdge::open(&cp, Some(&secret), None)
        .await
        .expect("Subscribe accepted before the hello");
    edge.quiet(Duration::from_millis(200)).await;
    call(&cp, "DELETE", &format!("/api/v1/keys/{key_id}"), None);
    // The server may have closed the stream already: sending may fail.
    let _ = edge
        .tx
        .send(EdgeMessage {
            message: Some(EdgeMsg::Hello(hello("edge-1", "", ""))),
        })
        .await;
    let status = edge.closed(Duration::from_secs(2)).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_flow_and_a_silent_edge_is_dropped() {
    let (_dir, cp) = start("cp", &["--heartbeat-secs", "1"]);
    let key = blocking(|| cp.create_key("fleet"));

    // Silent: says hello and then nothing at all, not even an ACK.
    let opened = Instant::now();
    let mut silent = TestEdge::subscribe(&cp, &key, "silent").await;
    let silent = tokio::spawn(async move {
        let mut beats = 0;
        let mut snapshots = 0;
        loop {
            match silent.recv(Duration::from_secs(6)).await {
                None => panic!("silent edge still connected after 6 s"),
                Some(Ok(ServerMsg::Heartbeat(h))) => {
                    assert!(h.sent_at_unix_ms > 0, "{h:?}");
                    beats += 1;
                }
                Some(Ok(ServerMsg::Snapshot(_))) => snapshots += 1,
                Some(Ok(other)) => panic!("unexpected {other:?}"),
                Some(Err(status)) => return (status, opened.elapsed(), beats, snapshots),
            }
        }
    });

    // Live: answers, and keeps sending heartbeats.
    let mut live = TestEdge::subscribe(&cp, &key, "live")
        .await
        .keep_alive(Duration::from_millis(500));
    let s = live.snapshot().await;
    live.ack(&s).await;
    let beats = live.quiet(Duration::from_millis(4500)).await;
    assert!(beats >= 3, "heartbeats in 4.5 s at 1 s intervals: {beats}");

    let (status, after, beats, snapshots) = silent.await.expect("silent edge task");
    eprintln!("silent edge dropped after {after:?}, {beats} heartbeats received");
    assert_eq!(snapshots, 1, "one snapshot, never acknowledged");
    assert!(beats >= 2, "heartbeats before being dropped: {beats}");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        after >= Duration::from_millis(2500) && after <= Duration::from_millis(4500),
        "dropped after {after:?} (3 intervals of 1 s)"
    );

    let view = wait_view(&cp, "/api/v1/edges/silent", "silent edge stale", |e| {
        e["state"] == "EDGE_STATE_STALE"
    });
    assert_eq!(view["transport"], "TRANSPORT_STREAM", "{view}");
    let view = call(&cp, "GET", "/api/v1/edges/live", None);
    assert_eq!(view["state"], "EDGE_STATE_CONNECTED", "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_streams_with_unavailable_and_exits_cleanly() {
    let drain = Duration::from_secs(5);
    let (_dir, mut cp) = start("cp", &["--drain-timeout", "5"]);
    let key = blocking(|| cp.create_key("fleet"));
    let mut ends = Vec::new();
    for instance in ["edge-1", "edge-2"] {
        let mut edge = TestEdge::subscribe(&cp, &key, instance).await;
        let s = edge.snapshot().await;
        edge.ack(&s).await;
        ends.push(tokio::spawn(async move {
            edge.closed(Duration::from_secs(8)).await
        }));
    }
    // And one still to say hello: it must not hold up the shutdown.
    let mut mute = TestEdge::open(&cp, Some(&key), None)
        .await
        .expect("Subscribe accepted before the hello");
    mute.quiet(Duration::from_millis(100)).await;
    ends.push(tokio::spawn(async move {
        mute.closed(Duration::from_secs(8)).await
    }));

    let sent = Instant::now();
    let exit = blocking(|| cp.process.terminate(drain + Duration::from_secs(3)));
    let took = sent.elapsed();
    let exit = exit.expect("the control plane did not exit after SIGTERM");
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        took < drain,
        "exited after {took:?}, drain timeout {drain:?}"
    );
    eprintln!("exited {took:?} after SIGTERM");
    for end in ends {
        let status = end.await.expect("edge task");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    let log = cp.process.log();
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains("still open after the drain timeout"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_share_changes_and_revocations() {
    let Some(db) = blocking(|| PgDatabase::create("tero_stream")) else {
        return;
    };
    let dir = tempdir();
    let a = blocking(|| ControlPlane::start_with(dir.clone(), "a", Some(&db.url), &[]));
    let b = blocking(|| ControlPlane::start_with(dir.clone(), "b", Some(&db.url), &[]));
    let (key_id, secret) = create_key(&a, "fleet");

    let mut edge = TestEdge::subscribe(&b, &secret, "edge-1").await;
    let s1 = edge.snapshot().await;
    edge.ack(&s1).await;

    // Created through A, delivered by B within a second.
    let requested = Instant::now();
    create_policy(&a, "drop-debug");
    let created = Instant::now();
    let s2 = tokio::time::timeout(Duration::from_secs(1), edge.snapshot())
        .await
        .unwrap_or_else(|_| panic!("no snapshot on B within 1 s of the create on A"));
    let took = created.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    eprintln!(
        "policy created on A reached the edge on B {took:?} after the create response ({:?} after the request)",
        requested.elapsed()
    );
    assert_eq!(s2.ids(), ["drop-debug"]);
    s2.check_hash();
    edge.ack(&s2).await;

    // A's API sees the edge B serves.
    let view = wait_view(
        &a,
        "/api/v1/edges/edge-1",
        "edge applied, seen from A",
        |e| e["appliedHash"] == s2.hash.as_str(),
    );
    assert_eq!(view["replica"], "b", "{view}");
    assert_eq!(view["transport"], "TRANSPORT_STREAM", "{view}");
    assert_eq!(view["state"], "EDGE_STATE_CONNECTED", "{view}");
    let deployment = wait_view(
        &a,
        "/api/v1/policies/drop-debug/deployment",
        "deployment seen from A",
        |d| d["applied"] == 1,
    );
    assert_eq!(deployment["targeted"], 1, "{deployment}");

    // Revoked through A, closed on B.
    let revoked = Instant::now();
    call(&a, "DELETE", &format!("/api/v1/keys/{key_id}"), None);
    let status = edge.closed(Duration::from_secs(2)).await;
    let took = revoked.elapsed();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    eprintln!("key revoked on A closed the stream on B after {took:?}");
    let status = refusal(&b, Some(&secret), "edge-1").await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    drop((a, b));
    drop(db);
}

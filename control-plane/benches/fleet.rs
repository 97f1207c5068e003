//! Fleet benchmark: one real `tero-control-plane` process and a simulated
//! fleet of edges in this process.
//!
//! ```sh
//! cargo bench -p tero-control-plane --bench fleet
//! ```
//!
//! Cargo builds the control plane binary (bench profile, as optimised as
//! release) before running this, and `CARGO_BIN_EXE_tero-control-plane`
//! points at it. The control plane runs on a free loopback port with SQLite
//! in a temporary directory, then:
//!
//! 1. 1,000 metric policies (distinct exact-name drop rules) are created
//!    through the admin API, and an edge API key;
//! 2. `FLEET_EDGES` (default 10,000) edges open a `Subscribe` stream each,
//!    spread over `FLEET_CONNECTIONS` (default 100) HTTP/2 connections, say
//!    hello, receive their snapshot and ACK it: time to connect all, and the
//!    control plane's RSS per connected edge;
//! 3. `FLEET_UPDATES` (default 5) times, one policy is updated and the time
//!    from just before the PUT until each edge has ACKed the new snapshot is
//!    measured (the first update makes the snapshot a few bytes larger, the
//!    others keep its size); between updates the bench waits until the
//!    control plane is idle (the edge registry is flushed to SQLite after
//!    each change), and reports how long that took;
//! 4. with the streams closed, 64 HTTP/1.1 keep-alive clients post Sync
//!    requests carrying the current hash for `FLEET_LOAD_SECS` (default 5)
//!    seconds, protobuf then JSON, against the same load on `GET /healthz`.
//!
//! The simulated edges decode only the nonce and hash of what the server
//! sends (prost skips the encoded `SyncResponse`), so the simulator stays
//! cheap; the server does all of its real work. The simulator and the
//! control plane share the machine's cores, as the output says.
//!
//! `FLEET_PERF=DIR` records `perf record -g` profiles of the control plane
//! during the connect and update phases into DIR (for investigation; the
//! figures are then perturbed).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use prost::Message as _;
use tero_proto::controlplane::edge_message::Message as EdgeMsg;
use tero_proto::controlplane::{Ack, EdgeMessage, Heartbeat, Hello};
use tero_proto::otel::{AnyValue, KeyValue, any_value::Value};
use tero_proto::policy::{ClientMetadata, PolicyStage, SyncRequest};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

const POLICIES: usize = 1_000;
const SERVICES: usize = 8;
const LOAD_CLIENTS: usize = 64;
const ADMIN_CLIENTS: usize = 16;
const ADMIN_TOKEN: &str = "fleet-bench-admin-token";
const SUBSCRIBE: &str = "/tero.controlplane.v1.EdgeService/Subscribe";
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

const TARGET_P99: Duration = Duration::from_secs(2);
const TARGET_KIB_PER_EDGE: f64 = 100.0;
const TARGET_SYNC_RPS: f64 = 5_000.0;

/// What the simulated edges decode of `ServerMessage`: the snapshot's nonce
/// and hash, and whether it is a heartbeat. Field numbers mirror
/// `tero/controlplane/v1/edge.proto`; everything else (the encoded
/// `SyncResponse`, stats acks) is skipped by prost.
mod lite {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerMessage {
        #[prost(oneof = "Msg", tags = "1, 2")]
        pub message: Option<Msg>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Msg {
        #[prost(message, tag = "1")]
        Snapshot(Snapshot),
        #[prost(message, tag = "2")]
        Heartbeat(Empty),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Snapshot {
        #[prost(uint64, tag = "1")]
        pub nonce: u64,
        #[prost(string, tag = "2")]
        pub hash: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Empty {}
}

type Codec = tonic_prost::ProstCodec<EdgeMessage, lite::ServerMessage>;

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

// ---------------------------------------------------------------------------
// The control plane process.

struct ControlPlane {
    child: Child,
    port: u16,
    dir: Option<tempfile::TempDir>,
    log: PathBuf,
}

impl ControlPlane {
    fn start() -> ControlPlane {
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_tero-control-plane"));
        assert!(
            binary.exists(),
            "{} is missing: run `cargo build --release -p tero-control-plane`",
            binary.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("tero-fleet-bench-")
            .tempdir()
            .expect("temporary directory");
        let port = free_port();
        let log = dir.path().join("control-plane.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(&binary)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--heartbeat-secs")
            .arg("30")
            .arg("--replica-id")
            .arg("fleet-bench")
            .env("TERO_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        ControlPlane {
            child,
            port,
            dir: Some(dir),
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM, then up to 15 s for a clean stop; returns the exit status.
    fn stop(&mut self) -> String {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.to_string(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return "killed after 15 s without stopping".into();
                }
            }
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The process's (RSS KiB, user+system CPU seconds) from /proc.
fn proc_stats(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let cpu = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect::<Vec<_>>())
        .and_then(|f| Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?))
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (rss, cpu / ticks)
}

fn raise_fd_limit() -> libc::rlim_t {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain get/setrlimit on a stack value.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

/// Waits until the control plane has been idle (under 5 % of a core) for
/// 1.2 s, at most 20 s: background work such as the edge-registry flush
/// must not spill into the next measurement. Returns how long it took and
/// the CPU the server spent meanwhile.
async fn settle(pid: u32) -> (Duration, f64) {
    let start = Instant::now();
    let (_, cpu_start) = proc_stats(pid);
    let mut last = cpu_start;
    let mut quiet = 0;
    while quiet < 6 && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, cpu) = proc_stats(pid);
        quiet = if cpu - last <= 0.01 { quiet + 1 } else { 0 };
        last = cpu;
    }
    // The quiet tail is not part of the settling.
    let elapsed = start
        .elapsed()
        .saturating_sub(Duration::from_millis(200 * quiet));
    (elapsed, last - cpu_start)
}

/// `perf record` of the control plane while alive, when `FLEET_PERF` names
/// a directory (for investigating the server, not for the figures).
struct Perf(Option<Child>);

impl Perf {
    fn start(pid: u32, phase: &str) -> Perf {
        let Ok(dir) = std::env::var("FLEET_PERF") else {
            return Perf(None);
        };
        let out = PathBuf::from(dir).join(format!("{phase}.perf.data"));
        let child = Command::new("perf")
            .args(["record", "-F", "499", "-g", "-p", &pid.to_string(), "-o"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| eprintln!("perf record: {e}"))
            .ok();
        // Let perf attach before the phase starts.
        std::thread::sleep(Duration::from_millis(300));
        Perf(child)
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGINT);
            }
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.1 client: one keep-alive connection per worker.

struct Http {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
}

struct Reply {
    status: u16,
    body: Bytes,
}

impl Http {
    async fn connect(addr: SocketAddr) -> Http {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect to the control plane");
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Http {
            sender,
            host: addr.to_string(),
        }
    }

    async fn send(&mut self, request: http::Request<Full<Bytes>>) -> Result<Reply, String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Reply { status, body })
    }

    /// Sends a request and reads the body without keeping it; returns the
    /// status and the body's length.
    async fn send_drain(
        &mut self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<(u16, usize), String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut len = 0;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(|e| e.to_string())?.into_data() {
                len += data.len();
            }
        }
        Ok((status, len))
    }

    async fn admin(
        &mut self,
        method: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.host)
            .header(http::header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request");
        let reply = self
            .send(request)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let value = serde_json::from_slice(&reply.body)
            .unwrap_or_else(|_| String::from_utf8_lossy(&reply.body).into_owned().into());
        (reply.status, value)
    }
}

/// A revision from a ManagedPolicy (64-bit integers are strings in proto3 JSON).
fn revision_of(policy: &serde_json::Value) -> u64 {
    match &policy["revision"] {
        serde_json::Value::String(s) => s.parse().expect("revision"),
        serde_json::Value::Number(n) => n.as_u64().expect("revision"),
        other => panic!("no revision in {policy}: {other}"),
    }
}

fn policy_body(i: usize, version: usize) -> serde_json::Value {
    let id = format!("p-{i:04}");
    let name = if version == 0 {
        format!("metric_{i:04}")
    } else {
        format!("metric_{i:04}_v{version}")
    };
    serde_json::json!({
        "id": id,
        "name": id,
        "metric": {"match": [{"metricField": 1, "exact": name}], "keep": false}
    })
}

async fn create_policies(addr: SocketAddr) -> Vec<u64> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..ADMIN_CLIENTS {
        let next = Arc::clone(&next);
        workers.spawn(async move {
            let mut http = Http::connect(addr).await;
            let mut made = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= POLICIES {
                    return made;
                }
                let body = serde_json::json!({ "policy": policy_body(i, 0) });
                let (status, reply) = http.admin("POST", "/api/v1/policies", &body).await;
                assert_eq!(status, 200, "create policy {i}: {reply}");
                made.push((i, revision_of(&reply)));
            }
        });
    }
    let mut revisions = vec![0; POLICIES];
    while let Some(made) = workers.join_next().await {
        for (i, rev) in made.expect("policy worker") {
            revisions[i] = rev;
        }
    }
    revisions
}

// ---------------------------------------------------------------------------
// The simulated edges.

fn kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value)),
        }),
    }
}

fn metadata(instance: String, service: usize) -> ClientMetadata {
    ClientMetadata {
        supported_policy_stages: vec![PolicyStage::MetricFilter as i32],
        resource_attributes: vec![
            kv("service.name", format!("service-{service}")),
            kv("service.instance.id", instance),
            kv("service.namespace", "fleet-bench".into()),
            kv("service.version", "1.0.0".into()),
        ],
        ..Default::default()
    }
}

/// An edge ACKed snapshot `hash` at `at`.
struct Acked {
    edge: u32,
    hash: Arc<str>,
    at: Instant,
}

#[derive(Default)]
struct Counters {
    /// Streams still open.
    alive: AtomicUsize,
    /// Streams that ended with an error (or never opened).
    failed: AtomicUsize,
    snapshots: AtomicUsize,
    heartbeats: AtomicUsize,
}

async fn run_edge(
    edge: u32,
    channel: Channel,
    bearer: MetadataValue<tonic::metadata::Ascii>,
    acks: mpsc::UnboundedSender<Acked>,
    counters: Arc<Counters>,
) -> Result<(), String> {
    let (tx, rx) = mpsc::channel::<EdgeMessage>(4);
    let hello = EdgeMessage {
        message: Some(EdgeMsg::Hello(Hello {
            client_metadata: Some(metadata(
                format!("fleet-edge-{edge:05}"),
                edge as usize % SERVICES,
            )),
            last_hash: String::new(),
            last_failed_hash: String::new(),
        })),
    };
    tx.send(hello).await.map_err(|e| e.to_string())?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request.metadata_mut().insert("authorization", bearer);
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| e.to_string())?;
    let response = grpc
        .streaming(
            request,
            PathAndQuery::from_static(SUBSCRIBE),
            Codec::default(),
        )
        .await
        .map_err(|s| format!("subscribe: {s}"))?;
    counters.alive.fetch_add(1, Ordering::Relaxed);
    let mut inbound = response.into_inner();
    let result = loop {
        let message = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break Ok(()),
            Err(status) => break Err(format!("stream: {status}")),
        };
        match message.message {
            Some(lite::Msg::Snapshot(snapshot)) => {
                counters.snapshots.fetch_add(1, Ordering::Relaxed);
                let hash: Arc<str> = snapshot.hash.as_str().into();
                let ack = EdgeMessage {
                    message: Some(EdgeMsg::Ack(Ack {
                        nonce: snapshot.nonce,
                        hash: snapshot.hash,
                    })),
                };
                if tx.send(ack).await.is_err() {
                    break Ok(());
                }
                let _ = acks.send(Acked {
                    edge,
                    hash,
                    at: Instant::now(),
                });
            }
            Some(lite::Msg::Heartbeat(_)) => {
                counters.heartbeats.fetch_add(1, Ordering::Relaxed);
                let beat = EdgeMessage {
                    message: Some(EdgeMsg::Heartbeat(Heartbeat { sent_at_unix_ms: 0 })),
                };
                if tx.send(beat).await.is_err() {
                    break Ok(());
                }
            }
            None => {}
        }
    };
    counters.alive.fetch_sub(1, Ordering::Relaxed);
    result
}

// ---------------------------------------------------------------------------
// Statistics.

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

struct Round {
    /// The first new hash ACKed.
    hash: Option<Arc<str>>,
    put: Duration,
    latencies: Vec<Duration>,
    expected: usize,
    hashes: usize,
}

/// Updates policy p-0000 and waits until every open stream has ACKed a
/// snapshot received after the update started.
async fn update_round(
    addr: SocketAddr,
    round: usize,
    revision: &mut u64,
    acks: &mut mpsc::UnboundedReceiver<Acked>,
    edges: usize,
    counters: &Counters,
    old_hash: &str,
) -> Round {
    while acks.try_recv().is_ok() {}
    let expected = counters.alive.load(Ordering::Relaxed);
    let mut http = Http::connect(addr).await;
    let body = serde_json::json!({
        "policy": policy_body(0, round),
        "expectedRevision": revision.to_string(),
    });
    let started = Instant::now();
    let (status, reply) = http.admin("PUT", "/api/v1/policies/p-0000", &body).await;
    let put = started.elapsed();
    assert_eq!(status, 200, "update policy: {reply}");
    *revision = revision_of(&reply);

    let mut acked: Vec<Option<Duration>> = vec![None; edges];
    let mut hashes: Vec<Arc<str>> = Vec::new();
    let mut count = 0;
    let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
    while count < expected {
        let event = tokio::select! {
            e = acks.recv() => e,
            _ = tokio::time::sleep_until(deadline) => None,
        };
        let Some(event) = event else { break };
        if event.at < started || &*event.hash == old_hash {
            continue;
        }
        let slot = &mut acked[event.edge as usize];
        if slot.is_none() {
            *slot = Some(event.at - started);
            count += 1;
            if !hashes.contains(&event.hash) {
                hashes.push(event.hash);
            }
        }
    }
    let mut latencies: Vec<Duration> = acked.into_iter().flatten().collect();
    latencies.sort_unstable();
    Round {
        hash: hashes.first().cloned(),
        put,
        latencies,
        expected,
        hashes: hashes.len(),
    }
}

// ---------------------------------------------------------------------------
// Load: closed-loop keep-alive HTTP/1.1 clients.

#[derive(Clone)]
struct Template {
    method: http::Method,
    path: &'static str,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    body: Bytes,
}

impl Template {
    fn request(&self, host: &str) -> http::Request<Full<Bytes>> {
        let mut builder = http::Request::builder()
            .method(self.method.clone())
            .uri(self.path)
            .header(http::header::HOST, host);
        for (k, v) in &self.headers {
            builder = builder.header(k, v);
        }
        builder.body(Full::new(self.body.clone())).expect("request")
    }
}

struct Load {
    requests: u64,
    errors: u64,
    bytes: u64,
    elapsed: Duration,
}

impl Load {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

async fn load(
    addr: SocketAddr,
    template: Template,
    clients: usize,
    warmup: Duration,
    run: Duration,
) -> Load {
    let template = Arc::new(template);
    let start = Instant::now() + warmup;
    let end = start + run;
    let mut workers = JoinSet::new();
    for _ in 0..clients {
        let template = Arc::clone(&template);
        workers.spawn(async move {
            let mut http = Http::connect(addr).await;
            let (mut requests, mut errors, mut bytes) = (0u64, 0u64, 0u64);
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let counted = now >= start;
                match http.send_drain(template.request(&http.host)).await {
                    Ok((200, len)) if counted => {
                        requests += 1;
                        bytes += len as u64;
                    }
                    Ok((200, _)) => {}
                    Ok(_) | Err(_) if counted => errors += 1,
                    _ => {}
                }
            }
            (requests, errors, bytes)
        });
    }
    let mut total = Load {
        requests: 0,
        errors: 0,
        bytes: 0,
        elapsed: run,
    };
    while let Some(done) = workers.join_next().await {
        let (r, e, b) = done.expect("load worker");
        total.requests += r;
        total.errors += e;
        total.bytes += b;
    }
    total
}

// ---------------------------------------------------------------------------

fn main() {
    // `cargo bench` passes `--bench`; anything else is ignored.
    let edges = env_usize("FLEET_EDGES", 10_000);
    let connections = env_usize("FLEET_CONNECTIONS", 100).clamp(1, edges.max(1));
    let updates = env_usize("FLEET_UPDATES", 5);
    let load_secs = env_usize("FLEET_LOAD_SECS", 5) as u64;
    let fds = raise_fd_limit();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut cp = ControlPlane::start();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(bench(
            &cp,
            edges,
            connections,
            updates,
            load_secs,
            fds,
            cores,
        ))
    }));
    runtime.shutdown_timeout(Duration::from_secs(5));
    let stopped = cp.stop();
    if outcome.is_err() {
        eprintln!(
            "control plane log ({}):\n{}",
            cp.log.display(),
            cp.log_tail()
        );
    }
    println!("control plane stopped (SIGTERM): {stopped}");
    drop(cp);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(tcp) = tokio::net::TcpStream::connect(addr).await {
            drop(tcp);
            let mut http = Http::connect(addr).await;
            let request = http::Request::builder()
                .uri("/readyz")
                .header(http::header::HOST, addr.to_string())
                .body(Full::new(Bytes::new()))
                .expect("request");
            if let Ok(Reply { status: 200, .. }) = http.send(request).await {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the control plane did not become ready in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn bench(
    cp: &ControlPlane,
    edges: usize,
    connections: usize,
    updates: usize,
    load_secs: u64,
    fds: libc::rlim_t,
    cores: usize,
) {
    let addr = cp.addr();
    let pid = cp.pid();
    let mut out = std::io::stdout();
    println!("== tero-control-plane fleet benchmark ==");
    println!(
        "machine: {cores} cores, shared by the control plane and this simulator (both on tokio's \
         multi-thread runtime); other work on the machine adds noise"
    );
    println!(
        "setup: {edges} edges over {connections} HTTP/2 connections, {POLICIES} metric policies, \
         SQLite in a temp dir, heartbeat 30 s, RLIMIT_NOFILE {fds}, control plane pid {pid} on {addr}"
    );
    wait_ready(addr).await;
    let (rss_idle, _) = proc_stats(pid);

    // 1. Policies and a key.
    let t = Instant::now();
    let mut revisions = create_policies(addr).await;
    let created_in = t.elapsed();
    let mut http = Http::connect(addr).await;
    let (status, key) = http
        .admin(
            "POST",
            "/api/v1/keys",
            &serde_json::json!({"name": "bench"}),
        )
        .await;
    assert_eq!(status, 200, "create key: {key}");
    let secret = key["secret"].as_str().expect("secret").to_owned();
    let bearer: MetadataValue<_> = format!("Bearer {secret}").parse().expect("bearer");
    println!(
        "\n[setup] {POLICIES} policies created in {:.2} s ({ADMIN_CLIENTS} concurrent admin clients, {:.0}/s)",
        created_in.as_secs_f64(),
        POLICIES as f64 / created_in.as_secs_f64()
    );
    settle(pid).await;
    let (rss_before, cpu_before) = proc_stats(pid);
    println!(
        "[setup] control plane RSS: {} KiB idle, {} KiB with {POLICIES} policies",
        rss_idle, rss_before
    );

    // 2. Connect the fleet.
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .expect("HTTP/2 connection");
        channels.push(channel);
    }
    let counters = Arc::new(Counters::default());
    let (ack_tx, mut acks) = mpsc::unbounded_channel();
    let mut fleet = JoinSet::new();
    let perf = Perf::start(pid, "connect");
    let t = Instant::now();
    for edge in 0..edges {
        let channel = channels[edge % connections].clone();
        let bearer = bearer.clone();
        let acks = ack_tx.clone();
        let counters = Arc::clone(&counters);
        fleet.spawn(async move {
            let result = run_edge(edge as u32, channel, bearer, acks, Arc::clone(&counters)).await;
            if let Err(e) = &result
                && counters.failed.fetch_add(1, Ordering::Relaxed) < 5
            {
                eprintln!("edge {edge}: {e}");
            }
        });
    }
    drop(ack_tx);
    let mut initial_hash: Option<Arc<str>> = None;
    let mut connect_latencies = Vec::with_capacity(edges);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while connect_latencies.len() < edges
        && counters.failed.load(Ordering::Relaxed) + connect_latencies.len() < edges
    {
        let event = tokio::select! {
            e = acks.recv() => e,
            _ = tokio::time::sleep_until(deadline) => None,
            _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
        };
        let Some(event) = event else { break };
        connect_latencies.push(event.at - t);
        initial_hash.get_or_insert(event.hash);
    }
    let connect_time = t.elapsed();
    // Counted from the ACK events: an edge reports its ACK before it bumps
    // the counter.
    let connected = connect_latencies.len();
    connect_latencies.sort_unstable();
    println!(
        "\n[connect] {connected}/{edges} edges subscribed, got their snapshot and ACKed it in {:.2} s \
         ({:.0} edges/s; per edge from the start: p50 {}, p99 {}, max {}); {} failed",
        connect_time.as_secs_f64(),
        connected as f64 / connect_time.as_secs_f64(),
        ms(percentile(&connect_latencies, 50.0)),
        ms(percentile(&connect_latencies, 99.0)),
        ms(percentile(&connect_latencies, 100.0)),
        counters.failed.load(Ordering::Relaxed),
    );
    drop(perf);
    let (settled_in, settle_cpu) = settle(pid).await;
    let (rss_after, cpu_after) = proc_stats(pid);
    let per_edge = (rss_after.saturating_sub(rss_before)) as f64 / connected.max(1) as f64;
    println!(
        "[memory] control plane RSS {rss_before} KiB before, {rss_after} KiB with {connected} edges: \
         {per_edge:.1} KiB per edge (target < {TARGET_KIB_PER_EDGE:.0} KiB: {}); \
         server CPU while connecting and settling: {:.2} s (busy {:.2} s after the last ACK, {:.2} s CPU)",
        verdict(per_edge < TARGET_KIB_PER_EDGE),
        cpu_after - cpu_before,
        settled_in.as_secs_f64(),
        settle_cpu,
    );
    let _ = out.flush();

    // 3. Updates.
    let mut old_hash = initial_hash.map(|h| h.to_string()).unwrap_or_default();
    let mut all = Vec::new();
    let mut converged_all = 0;
    let mut expected_all = 0;
    println!(
        "\n[update] PUT one policy, then time until each edge has received the new snapshot and ACKed it \
         (from just before the PUT)"
    );
    let perf = Perf::start(pid, "updates");
    for round in 1..=updates {
        let (_, cpu0) = proc_stats(pid);
        let r = update_round(
            addr,
            round,
            &mut revisions[0],
            &mut acks,
            edges,
            &counters,
            &old_hash,
        )
        .await;
        let (_, cpu1) = proc_stats(pid);
        let (settled_in, settle_cpu) = settle(pid).await;
        println!(
            "  update {round}: {}/{} converged; p50 {}, p99 {}, max {}; PUT answered in {}; \
             {} distinct new hash(es); server CPU {:.2} s, then busy {:.2} s more ({:.2} s CPU)",
            r.latencies.len(),
            r.expected,
            ms(percentile(&r.latencies, 50.0)),
            ms(percentile(&r.latencies, 99.0)),
            ms(percentile(&r.latencies, 100.0)),
            ms(r.put),
            r.hashes,
            cpu1 - cpu0,
            settled_in.as_secs_f64(),
            settle_cpu,
        );
        converged_all += r.latencies.len();
        expected_all += r.expected;
        all.extend(r.latencies);
        if let Some(hash) = &r.hash {
            old_hash = hash.to_string();
        }
        let _ = out.flush();
    }
    drop(perf);
    let (rss_updated, _) = proc_stats(pid);
    all.sort_unstable();
    let p99 = percentile(&all, 99.0);
    println!(
        "  snapshots received by the fleet: {}, server heartbeats: {}, streams open: {}; \
         control plane RSS {rss_updated} KiB",
        counters.snapshots.load(Ordering::Relaxed),
        counters.heartbeats.load(Ordering::Relaxed),
        counters.alive.load(Ordering::Relaxed),
    );
    println!(
        "  all {updates} updates: {converged_all}/{expected_all} converged; p50 {}, p99 {}, max {} \
         (target p99 < {:.0} s: {})",
        ms(percentile(&all, 50.0)),
        ms(p99),
        ms(percentile(&all, 100.0)),
        TARGET_P99.as_secs_f64(),
        verdict(p99 < TARGET_P99 && converged_all == expected_all),
    );

    // The current hash, for the Sync requests: one poll as edge 0.
    let sync_meta = metadata("fleet-sync-edge".into(), 0);
    let first = SyncRequest {
        client_metadata: Some(sync_meta.clone()),
        ..Default::default()
    };
    let request = http::Request::builder()
        .method("POST")
        .uri("/v1/policy/sync")
        .header(http::header::HOST, addr.to_string())
        .header(http::header::AUTHORIZATION, format!("Bearer {secret}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(&first).expect("json"),
        )))
        .expect("request");
    let reply = Http::connect(addr).await.send(request).await.expect("sync");
    assert_eq!(reply.status, 200, "sync: {:?}", reply.body);
    let current: serde_json::Value = serde_json::from_slice(&reply.body).expect("sync JSON");
    let hash = current["hash"].as_str().expect("hash").to_owned();

    // Close the fleet before the Sync load.
    fleet.abort_all();
    while fleet.join_next().await.is_some() {}
    drop(channels);
    settle(pid).await;
    let (rss_closed, _) = proc_stats(pid);
    println!("\n[memory] control plane RSS after the streams closed: {rss_closed} KiB");

    // 4. Sync throughput against /healthz.
    let auth = http::HeaderValue::from_str(&format!("Bearer {secret}")).expect("header");
    let sync = SyncRequest {
        client_metadata: Some(sync_meta),
        last_successful_hash: hash.clone(),
        ..Default::default()
    };
    let protobuf = Template {
        method: http::Method::POST,
        path: "/v1/policy/sync",
        headers: vec![
            (http::header::AUTHORIZATION, auth.clone()),
            (
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-protobuf"),
            ),
            (
                http::header::ACCEPT,
                http::HeaderValue::from_static("application/x-protobuf"),
            ),
        ],
        body: Bytes::from(sync.encode_to_vec()),
    };
    let json = Template {
        method: http::Method::POST,
        path: "/v1/policy/sync",
        headers: vec![
            (http::header::AUTHORIZATION, auth),
            (
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            ),
        ],
        body: Bytes::from(serde_json::to_vec(&sync).expect("json")),
    };
    let healthz = Template {
        method: http::Method::GET,
        path: "/healthz",
        headers: Vec::new(),
        body: Bytes::new(),
    };
    println!(
        "\n[sync] {LOAD_CLIENTS} HTTP/1.1 keep-alive clients, closed loop, {load_secs} s each after 1 s \
         warm-up; streams closed; SyncRequest for one edge with last_successful_hash = current hash"
    );
    let warmup = Duration::from_secs(1);
    let run = Duration::from_secs(load_secs);
    let mut results = Vec::new();
    for (name, template) in [
        ("GET /healthz", healthz),
        ("Sync protobuf", protobuf),
        ("Sync JSON", json),
    ] {
        let (_, cpu0) = proc_stats(pid);
        let r = load(addr, template, LOAD_CLIENTS, warmup, run).await;
        let (_, cpu1) = proc_stats(pid);
        println!(
            "  {name:<14} {:>9.0} req/s  ({} requests, {} errors, {:.1} KiB per response, server CPU {:.2} s over {:.0} s wall)",
            r.rps(),
            r.requests,
            r.errors,
            r.bytes as f64 / r.requests.max(1) as f64 / 1024.0,
            cpu1 - cpu0,
            (warmup + run).as_secs_f64(),
        );
        results.push(r.rps());
        let _ = out.flush();
    }
    let (healthz_rps, pb_rps, json_rps) = (results[0], results[1], results[2]);
    println!(
        "  sync/healthz ratio: protobuf {:.2}, JSON {:.2}",
        pb_rps / healthz_rps,
        json_rps / healthz_rps
    );

    println!("\n== summary (targets) ==");
    println!(
        "  connect {connected}/{edges} edges: {:.2} s",
        connect_time.as_secs_f64()
    );
    println!(
        "  update latency p99 {} over {updates} updates, {converged_all}/{expected_all} converged (target < 2 s): {}",
        ms(p99),
        verdict(p99 < TARGET_P99 && converged_all == expected_all)
    );
    println!(
        "  memory {per_edge:.1} KiB per edge (target < {TARGET_KIB_PER_EDGE:.0} KiB): {}",
        verdict(per_edge < TARGET_KIB_PER_EDGE)
    );
    println!(
        "  Sync protobuf {pb_rps:.0} req/s (target >= {TARGET_SYNC_RPS:.0}): {}; JSON {json_rps:.0} req/s: {}",
        verdict(pb_rps >= TARGET_SYNC_RPS),
        verdict(json_rps >= TARGET_SYNC_RPS)
    );
    println!(
        "  sync/healthz ratio: protobuf {:.2}, JSON {:.2}",
        pb_rps / healthz_rps,
        json_rps / healthz_rps
    );
    let _ = out.flush();
}

//! How `tero-edge` and `tero-control-plane` observe themselves, seen from
//! outside: spans exported over OTLP (gRPC and HTTP/protobuf) to a receiver
//! run by the test, continuing the caller's W3C trace and flushed on
//! SIGTERM; the control plane's `GET /metrics` with real edges attached;
//! the Edge's process self-metrics; `--version`; and JSON log lines.
//!
//! Every process runs on loopback on ports chosen at run time.

use std::collections::BTreeSet;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use serde_json::{Value, json};
use tero_e2e::control_plane::ControlPlane;
use tero_e2e::fixtures::{EXPOSITION, TEXT, WITHOUT_DEBUG};
use tero_e2e::upstream::{Compression, Upstream};
use tero_e2e::{Edge, binary, http_get, metric_value, wait_for};
use tero_proto::controlplane::ListPoliciesRequest;
use tero_proto::controlplane::admin_service_client::AdminServiceClient;

/// The version both binaries are built with (one workspace version).
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// How long an exported span may take to reach the receiver (the batch
/// processor runs every 200 ms here).
const SPAN_WAIT: Duration = Duration::from_secs(10);
const EXIT_WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn tempdir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().expect("temporary directory"))
}

/// `bytes` random bytes as lowercase hex (never all zeros, which W3C
/// forbids).
fn random_hex(bytes: usize) -> String {
    let mut out = String::new();
    while out.len() < bytes * 2 {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        out.push_str(&format!("{:016x}", h.finish() | 1));
    }
    out.truncate(bytes * 2);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A W3C trace context the test sends: ids as hex.
#[derive(Debug, Clone)]
struct TraceParent {
    trace_id: String,
    span_id: String,
    sampled: bool,
}

impl TraceParent {
    fn new() -> Self {
        TraceParent {
            trace_id: random_hex(16),
            span_id: random_hex(8),
            sampled: true,
        }
    }

    fn unsampled() -> Self {
        TraceParent {
            sampled: false,
            ..Self::new()
        }
    }

    fn header(&self) -> String {
        let flags = if self.sampled { "01" } else { "00" };
        format!("00-{}-{}-{flags}", self.trace_id, self.span_id)
    }
}

/// One span as a receiver got it, with its resource.
#[derive(Debug, Clone)]
struct Received {
    resource: Vec<KeyValue>,
    span: Span,
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn str_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key)? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attrs, key)? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

impl Received {
    fn name(&self) -> &str {
        &self.span.name
    }

    fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    fn attr_str(&self, key: &str) -> Option<&str> {
        str_attr(&self.span.attributes, key)
    }

    fn attr_int(&self, key: &str) -> Option<i64> {
        int_attr(&self.span.attributes, key)
    }

    fn resource_str(&self, key: &str) -> Option<&str> {
        str_attr(&self.resource, key)
    }
}

fn flatten(requests: &[ExportTraceServiceRequest]) -> Vec<Received> {
    let mut out = Vec::new();
    for request in requests {
        for rs in &request.resource_spans {
            let resource = rs
                .resource
                .as_ref()
                .map(|r| r.attributes.clone())
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    out.push(Received {
                        resource: resource.clone(),
                        span: span.clone(),
                    });
                }
            }
        }
    }
    out
}

fn describe(spans: &[Received]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{:?} trace={} parent={}",
                s.name(),
                s.trace_id(),
                s.parent_span_id()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A runtime of its own for a receiver, so the tests stay synchronous.
fn receiver_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("receiver runtime")
}

/// An OTLP/gRPC trace receiver: records every export request.
struct GrpcReceiver {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl GrpcReceiver {
    fn start() -> GrpcReceiver {
        let runtime = receiver_runtime();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the OTLP receiver");
        let addr = listener.local_addr().expect("receiver address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let incoming = futures_util::stream::unfold(listener, |l| async move {
            let accepted = l.accept().await.map(|(s, _)| s);
            Some((accepted, l))
        });
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Collector(requests.clone())))
                .serve_with_incoming(incoming),
        );
        GrpcReceiver {
            addr,
            requests,
            runtime: Some(runtime),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spans(&self) -> Vec<Received> {
        flatten(&self.requests.lock().unwrap())
    }

    /// Waits for a span named `name` in trace `trace_id`.
    fn wait_span(&self, name: &str, trace_id: &str) -> Received {
        wait_span(|| self.spans(), name, trace_id)
    }
}

impl Drop for GrpcReceiver {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A POST the HTTP receiver got.
#[derive(Debug, Clone)]
struct HttpExport {
    path: String,
    content_type: String,
    request: ExportTraceServiceRequest,
}

/// An OTLP/HTTP (protobuf) trace receiver.
struct HttpReceiver {
    addr: SocketAddr,
    exports: Arc<Mutex<Vec<HttpExport>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl HttpReceiver {
    fn start() -> HttpReceiver {
        let runtime = receiver_runtime();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the OTLP receiver");
        let addr = listener.local_addr().expect("receiver address");
        let exports = Arc::new(Mutex::new(Vec::new()));
        let log = exports.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let content_type = req
                                .headers()
                                .get(header::CONTENT_TYPE)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned();
                            let body = req.into_body().collect().await?.to_bytes();
                            let status = match ExportTraceServiceRequest::decode(body) {
                                Ok(request) if path == "/v1/traces" => {
                                    log.lock().unwrap().push(HttpExport {
                                        path,
                                        content_type,
                                        request,
                                    });
                                    StatusCode::OK
                                }
                                Ok(_) => StatusCode::NOT_FOUND,
                                Err(_) => StatusCode::BAD_REQUEST,
                            };
                            let answer = ExportTraceServiceResponse::default().encode_to_vec();
                            Ok::<_, hyper::Error>(
                                Response::builder()
                                    .status(status)
                                    .header(header::CONTENT_TYPE, "application/x-protobuf")
                                    .body(Full::new(Bytes::from(answer)))
                                    .expect("response"),
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        HttpReceiver {
            addr,
            exports,
            runtime: Some(runtime),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn exports(&self) -> Vec<HttpExport> {
        self.exports.lock().unwrap().clone()
    }

    fn spans(&self) -> Vec<Received> {
        let requests: Vec<_> = self.exports().into_iter().map(|e| e.request).collect();
        flatten(&requests)
    }

    fn wait_span(&self, name: &str, trace_id: &str) -> Received {
        wait_span(|| self.spans(), name, trace_id)
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn wait_span(spans: impl Fn() -> Vec<Received>, name: &str, trace_id: &str) -> Received {
    let deadline = Instant::now() + SPAN_WAIT;
    loop {
        let all = spans();
        if let Some(s) = all
            .iter()
            .find(|s| s.name() == name && s.trace_id() == trace_id)
        {
            return s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no span {name:?} in trace {trace_id} within {SPAN_WAIT:?}; received:\n{}",
            describe(&all)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The variables that send spans to `endpoint` over `protocol`, exported
/// every 200 ms.
fn otlp_env<'a>(endpoint: &'a str, protocol: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ]
}

/// Checks what every span a binary exports must carry: its name and
/// version on the resource, a server kind, a sane time range.
fn assert_exported_by(span: &Received, service: &str) {
    assert_eq!(
        span.resource_str("service.name"),
        Some(service),
        "{:?}",
        span.resource
    );
    assert_eq!(
        span.resource_str("service.version"),
        Some(VERSION),
        "{:?}",
        span.resource
    );
    assert_eq!(span.span.kind, SpanKind::Server as i32, "{:?}", span.span);
    assert_eq!(span.span.span_id.len(), 8, "{:?}", span.span);
    assert!(
        span.span.start_time_unix_nano > 0
            && span.span.end_time_unix_nano >= span.span.start_time_unix_nano,
        "{:?}",
        span.span
    );
}

fn assert_exits_cleanly(process: &mut tero_e2e::Process) {
    let status = process
        .terminate(EXIT_WAIT)
        .unwrap_or_else(|| panic!("{} did not exit on SIGTERM", process.name));
    assert_eq!(
        status.code(),
        Some(0),
        "{} exit status; log:\n{}",
        process.name,
        process.log()
    );
}

/// Every sample line of a Prometheus text exposition belongs to a family
/// declared once with `# TYPE`, and its value parses.
fn check_exposition(text: &str) {
    let mut families = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().expect("family name");
            assert!(
                families.insert(name.to_owned()),
                "family {name} declared twice:\n{text}"
            );
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("malformed sample {line:?}"));
        assert!(
            value.parse::<f64>().is_ok(),
            "value of {line:?} is not a number"
        );
        let name = series.split('{').next().unwrap();
        let declared = families.contains(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| families.contains(base))
            });
        assert!(declared, "{line:?} has no # TYPE before it:\n{text}");
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The `process_*` families, read as a Prometheus client library writes
/// them, for a process started at or after `started` (Unix seconds).
fn assert_process_metrics(text: &str, started: f64) {
    let value = |series: &str| {
        metric_value(text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}"))
    };
    assert!(value("process_resident_memory_bytes") > 1_000_000.0);
    assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
    let fds = value("process_open_fds");
    assert!(fds >= 3.0 && fds <= value("process_max_fds"), "{fds}");
    assert!(value("process_threads") >= 1.0);
    assert!(value("process_cpu_seconds_total") >= 0.0);
    let start = value("process_start_time_seconds");
    assert!(
        start >= started - 2.0 && start <= now_secs() + 1.0,
        "process_start_time_seconds {start}, test started the process at {started}"
    );
    for (family, kind) in [
        ("process_resident_memory_bytes", "gauge"),
        ("process_cpu_seconds_total", "counter"),
        ("process_start_time_seconds", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} {kind}\n")),
            "{family} is a {kind}:\n{text}"
        );
    }
}

fn cp_metrics(cp: &ControlPlane) -> String {
    let r = http_get(&cp.url("/metrics"), &[]).expect("GET /metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{:?}",
        r.header("content-type")
    );
    r.text()
}

fn value(text: &str, series: &str) -> f64 {
    metric_value(text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}"))
}

/// The `tero_cp_requests_total` series (`name{labels}`) in an exposition.
fn request_series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with("tero_cp_requests_total{"))
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_owned()))
        .collect()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// `ListPolicies` over gRPC with `token` and an optional `traceparent`.
fn grpc_list_policies(
    cp: &ControlPlane,
    token: &str,
    traceparent: Option<&TraceParent>,
) -> Result<usize, tonic::Status> {
    block_on(async {
        let mut client = AdminServiceClient::connect(cp.endpoint())
            .await
            .expect("connect over h2c");
        let mut request = tonic::Request::new(ListPoliciesRequest::default());
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
        if let Some(tp) = traceparent {
            request
                .metadata_mut()
                .insert("traceparent", tp.header().parse().expect("ascii"));
        }
        client
            .list_policies(request)
            .await
            .map(|r| r.into_inner().policies.len())
    })
}

/// One scrape through the Edge with extra headers; must answer 200.
fn scrape_with(edge: &Edge, headers: &[(&str, &str)]) -> String {
    let r = http_get(&edge.url("/metrics"), headers).expect("scrape through the Edge");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

// ---------------------------------------------------------------------------
// Spans
// ---------------------------------------------------------------------------

#[test]
fn the_control_plane_exports_request_spans_over_otlp_grpc_continuing_the_callers_trace() {
    let receiver = GrpcReceiver::start();
    let endpoint = receiver.endpoint();
    let dir = tempdir();
    let mut cp =
        ControlPlane::start_with_env(dir, "cp-otlp-grpc", &[], &otlp_env(&endpoint, "grpc"));
    let bearer = cp.bearer();

    // An admin call carrying the caller's trace context.
    let parent = TraceParent::new();
    let tp = parent.header();
    let r = http_get(
        &cp.url("/api/v1/policies"),
        &[("authorization", &bearer), ("traceparent", &tp)],
    )
    .expect("GET /api/v1/policies");
    assert_eq!(r.status, 200, "{}", r.text());

    let span = receiver.wait_span("GET /api/v1/policies", &parent.trace_id);
    assert_exported_by(&span, "tero-control-plane");
    assert_eq!(span.parent_span_id(), parent.span_id, "child of the caller");
    assert_ne!(hex(&span.span.span_id), parent.span_id, "a span of its own");
    assert_eq!(span.attr_int("http.response.status_code"), Some(200));
    assert_eq!(span.attr_str("http.route"), Some("/api/v1/policies"));
    assert_eq!(span.attr_str("http.request.method"), Some("GET"));
    assert_eq!(span.attr_str("rpc.system"), None, "not a gRPC call");

    // Without a traceparent the request starts a trace of its own; an
    // error status is recorded as it was answered.
    let r = http_get(&cp.url("/api/v1/keys"), &[]).expect("GET /api/v1/keys");
    assert_eq!(r.status, 401, "no credentials: {}", r.text());
    let root = wait_for(SPAN_WAIT, "span of GET /api/v1/keys", || {
        receiver
            .spans()
            .into_iter()
            .find(|s| s.name() == "GET /api/v1/keys")
    });
    assert_exported_by(&root, "tero-control-plane");
    assert!(root.span.parent_span_id.is_empty(), "{:?}", root.span);
    assert_eq!(root.span.trace_id.len(), 16);
    assert_ne!(root.trace_id(), parent.trace_id);
    assert_eq!(root.attr_int("http.response.status_code"), Some(401));

    // gRPC: the trace context travels as metadata (HTTP/2 headers).
    let grpc_parent = TraceParent::new();
    let n = grpc_list_policies(&cp, &cp.admin_token, Some(&grpc_parent))
        .expect("ListPolicies with the admin token");
    assert_eq!(n, 0);
    let method = "/tero.controlplane.v1.AdminService/ListPolicies";
    let grpc = receiver.wait_span(&format!("POST {method}"), &grpc_parent.trace_id);
    assert_exported_by(&grpc, "tero-control-plane");
    assert_eq!(grpc.parent_span_id(), grpc_parent.span_id);
    assert_eq!(grpc.attr_str("rpc.system"), Some("grpc"));
    assert_eq!(grpc.attr_str("http.route"), Some(method));
    assert_eq!(grpc.attr_int("http.response.status_code"), Some(200));

    // A refused gRPC call carries its status in the response headers.
    let refused_parent = TraceParent::new();
    let err = grpc_list_policies(&cp, "wrong-token", Some(&refused_parent))
        .expect_err("a wrong token is refused");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    let refused = receiver.wait_span(&format!("POST {method}"), &refused_parent.trace_id);
    assert_eq!(
        refused.attr_int("rpc.grpc.status_code"),
        Some(tonic::Code::Unauthenticated as i64),
        "{:?}",
        refused.span.attributes
    );

    // The last request before SIGTERM is exported on the way out.
    let last = TraceParent::new();
    let r = http_get(
        &cp.url("/api/v1/policies"),
        &[("authorization", &bearer), ("traceparent", &last.header())],
    )
    .expect("GET /api/v1/policies");
    assert_eq!(r.status, 200);
    assert_exits_cleanly(&mut cp.process);
    let spans = receiver.spans();
    assert!(
        spans
            .iter()
            .any(|s| s.name() == "GET /api/v1/policies" && s.trace_id() == last.trace_id),
        "the span of the request before SIGTERM was lost; received:\n{}",
        describe(&spans)
    );
    // Every export came from this one service.
    for s in spans {
        assert_eq!(s.resource_str("service.name"), Some("tero-control-plane"));
    }
}

#[test]
fn the_edge_exports_scrape_spans_over_otlp_http_and_flushes_them_on_sigterm() {
    let receiver = HttpReceiver::start();
    let endpoint = receiver.endpoint();
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let dir = tempdir();
    let mut edge = Edge::start_with_env(
        json!({"upstream_url": up.url(), "service": {"name": "checkout"}}),
        dir,
        "edge-otlp-http",
        &otlp_env(&endpoint, "http/protobuf"),
    );

    let first = TraceParent::new();
    assert_eq!(
        scrape_with(&edge, &[("traceparent", &first.header())]),
        EXPOSITION
    );
    let span = receiver.wait_span("scrape", &first.trace_id);
    assert_exported_by(&span, "tero-edge");
    assert_eq!(span.parent_span_id(), first.span_id);
    assert_eq!(span.attr_str("result"), Some("ok"), "{:?}", span.span);
    assert_eq!(span.attr_str("url.path"), Some("/metrics"));
    let exports = receiver.exports();
    assert!(!exports.is_empty());
    for e in &exports {
        assert_eq!(e.path, "/v1/traces");
        assert_eq!(e.content_type, "application/x-protobuf");
    }

    // A failed scrape is a span too, with its result.
    drop(up);
    let failed = TraceParent::new();
    let r = http_get(&edge.url("/metrics"), &[("traceparent", &failed.header())])
        .expect("scrape with the upstream gone");
    assert_ne!(r.status, 200, "{}", r.text());
    let failed_span = receiver.wait_span("scrape", &failed.trace_id);
    assert_eq!(
        failed_span.attr_str("result"),
        Some("upstream_error"),
        "{:?}",
        failed_span.span
    );

    // The caller decided not to sample: nothing is exported for it.
    let unsampled = TraceParent::unsampled();
    http_get(
        &edge.url("/metrics"),
        &[("traceparent", &unsampled.header())],
    )
    .expect("scrape");

    // The last scrape right before SIGTERM: its span is still queued (the
    // batch goes out every 200 ms) and must be sent on the way out.
    let last = TraceParent::new();
    http_get(&edge.url("/metrics"), &[("traceparent", &last.header())]).expect("scrape");
    let queued = !receiver
        .spans()
        .iter()
        .any(|s| s.trace_id() == last.trace_id);
    assert_exits_cleanly(&mut edge.process);
    if !queued {
        eprintln!("note: the last span was exported before SIGTERM; the flush went untested");
    }
    let spans = receiver.spans();
    assert!(
        spans
            .iter()
            .any(|s| s.name() == "scrape" && s.trace_id() == last.trace_id),
        "the span of the scrape before SIGTERM was lost; received:\n{}",
        describe(&spans)
    );
    assert!(
        !spans.iter().any(|s| s.trace_id() == unsampled.trace_id),
        "an unsampled trace was exported:\n{}",
        describe(&spans)
    );

    // The same, leaving nothing to timing: an Edge whose batches would go
    // out only every minute sends its queued span when told to stop.
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let mut env = otlp_env(&endpoint, "http/protobuf");
    env[2].1 = "60000";
    let mut edge = Edge::start_with_env(
        json!({"upstream_url": up.url(), "service": {"name": "checkout"}}),
        tempdir(),
        "edge-otlp-flush",
        &env,
    );
    let queued = TraceParent::new();
    assert_eq!(
        scrape_with(&edge, &[("traceparent", &queued.header())]),
        EXPOSITION
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !receiver
            .spans()
            .iter()
            .any(|s| s.trace_id() == queued.trace_id),
        "exported before the schedule delay: the test cannot see the flush"
    );
    assert_exits_cleanly(&mut edge.process);
    let flushed = receiver.wait_span("scrape", &queued.trace_id);
    assert_exported_by(&flushed, "tero-edge");
    assert_eq!(flushed.attr_str("result"), Some("ok"));
}

// ---------------------------------------------------------------------------
// Self-metrics
// ---------------------------------------------------------------------------

#[test]
fn the_control_plane_metrics_follow_a_real_edge_and_stay_bounded() {
    let dir = tempdir();
    let started = now_secs();
    let cp = ControlPlane::start(dir.clone(), "cp-metrics");
    let key = cp.create_key("edge-metrics");

    // Requests to /api/v1/policies the test makes, by response code.
    let mut ok = 0;
    let (status, body) = cp.api(
        "POST",
        "/api/v1/policies",
        Some(&json!({"policy": {
            "id": "drop-debug",
            "name": "Drop debug families",
            "metric": {"match": [{"metricField": 1, "startsWith": "debug_"}], "keep": false}
        }})),
    );
    assert_eq!(status, 200, "{body}");
    ok += 1;
    for _ in 0..3 {
        let (status, body) = cp.api("GET", "/api/v1/policies", None);
        assert_eq!(status, 200, "{body}");
        ok += 1;
    }
    let r = http_get(&cp.url("/api/v1/policies"), &[]).expect("unauthenticated call");
    assert_eq!(r.status, 401);

    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let mut edge = Edge::start(
        json!({
            "upstream_url": up.url(),
            "service": {"name": "checkout", "instance_id": "edge-metrics-0"},
            "policy_providers": [cp.grpc_provider(&key)],
        }),
        dir.clone(),
        "edge-metrics",
    );
    wait_for(
        Duration::from_secs(10),
        "policy applied by the edge",
        || (scrape_with(&edge, &[]) == WITHOUT_DEBUG).then_some(()),
    );
    for _ in 0..3 {
        assert_eq!(scrape_with(&edge, &[]), WITHOUT_DEBUG);
    }

    let text = wait_for(Duration::from_secs(10), "statistics stored", || {
        let text = cp_metrics(&cp);
        (metric_value(&text, "tero_cp_stats_reports_total{outcome=\"stored\"}")? >= 1.0)
            .then_some(text)
    });
    check_exposition(&text);
    assert_eq!(value(&text, "tero_cp_push_streams"), 1.0);
    assert_eq!(value(&text, "tero_cp_edges{transport=\"stream\"}"), 1.0);
    assert_eq!(value(&text, "tero_cp_edges{transport=\"poll\"}"), 0.0);
    assert!(value(&text, "tero_cp_snapshots_total{event=\"offered\"}") >= 1.0);
    assert!(value(&text, "tero_cp_snapshots_total{event=\"acked\"}") >= 1.0);
    assert_eq!(
        value(&text, "tero_cp_snapshots_total{event=\"nacked\"}"),
        0.0
    );
    assert_eq!(
        value(&text, "tero_cp_stats_reports_total{outcome=\"failed\"}"),
        0.0
    );
    assert_eq!(value(&text, "tero_cp_streams_refused_total"), 0.0);
    assert_eq!(value(&text, "tero_cp_policies"), 1.0);
    assert!(value(&text, "tero_cp_catalog_generation") >= 1.0);
    let policies = "protocol=\"http\",route=\"/api/v1/policies\"";
    assert_eq!(
        value(
            &text,
            &format!("tero_cp_requests_total{{{policies},code=\"200\"}}")
        ),
        f64::from(ok)
    );
    assert_eq!(
        value(
            &text,
            &format!("tero_cp_requests_total{{{policies},code=\"401\"}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            &format!("tero_cp_request_duration_seconds_count{{{policies}}}")
        ),
        f64::from(ok + 1)
    );
    assert_eq!(
        value(
            &text,
            "tero_cp_requests_total{protocol=\"http\",route=\"/api/v1/keys\",code=\"200\"}"
        ),
        1.0
    );
    // The push stream started successfully once.
    assert_eq!(
        value(
            &text,
            "tero_cp_requests_total{protocol=\"grpc\",route=\"/tero.controlplane.v1.EdgeService/Subscribe\",code=\"0\"}"
        ),
        1.0
    );
    // The scrape rendering this is itself in flight.
    assert!(value(&text, "tero_cp_requests_in_flight") >= 1.0);
    assert_process_metrics(&text, started);
    assert_eq!(
        value(
            &text,
            &format!("tero_cp_build_info{{version=\"{VERSION}\"}}")
        ),
        1.0
    );
    // The scrape before this one was counted under its route.
    assert!(
        value(
            &cp_metrics(&cp),
            "tero_cp_requests_total{protocol=\"http\",route=\"/metrics\",code=\"200\"}"
        ) >= 1.0
    );

    // A scanner probing made-up paths adds one series, however many paths
    // (with or without a gRPC content type, on made-up or real services).
    let before = request_series(&cp_metrics(&cp));
    let probe = random_hex(4);
    for i in 0..300 {
        let path = format!("/probe-{probe}-{i}");
        let r = http_get(&cp.url(&path), &[]).expect("unknown path");
        assert_eq!(r.status, 404, "{path}");
    }
    for i in 0..300 {
        // Half on made-up services, half made-up methods of a real one.
        let path = if i % 2 == 0 {
            format!("/probe.{probe}.Service{i}/Method")
        } else {
            format!("/tero.controlplane.v1.AdminService/Probe{probe}{i}")
        };
        let r = tero_e2e::control_plane::request_bytes(
            "POST",
            &cp.url(&path),
            &[("content-type", "application/grpc")],
            Some(&[0, 0, 0, 0, 0]),
        )
        .expect("unknown gRPC method");
        assert_eq!(r.header("grpc-status"), Some("12"), "{path}: UNIMPLEMENTED");
    }
    let text = cp_metrics(&cp);
    assert!(
        !text.contains(&probe),
        "a probed path became a label: {:#?}",
        text.lines()
            .filter(|l| l.contains(&probe))
            .take(5)
            .collect::<Vec<_>>()
    );
    let added: BTreeSet<_> = request_series(&text).difference(&before).cloned().collect();
    let unmatched_http =
        "tero_cp_requests_total{protocol=\"http\",route=\"unmatched\",code=\"404\"}";
    let unmatched_grpc =
        "tero_cp_requests_total{protocol=\"grpc\",route=\"unmatched\",code=\"12\"}";
    assert!(
        added.is_subset(&BTreeSet::from([
            unmatched_http.to_owned(),
            unmatched_grpc.to_owned()
        ])),
        "the probes added {} series: {added:#?}",
        added.len()
    );
    assert_eq!(value(&text, unmatched_http), 300.0);
    assert_eq!(value(&text, unmatched_grpc), 300.0);
    let series_count = text
        .lines()
        .filter(|l| l.starts_with("tero_cp_request_duration_seconds_count{"))
        .count();
    assert!(series_count < 20, "{series_count} latency series:\n{text}");

    // The edge goes away: its stream closes, and it is no edge of any kind.
    assert_exits_cleanly(&mut edge.process);
    let text = wait_for(Duration::from_secs(10), "push stream closed", || {
        let text = cp_metrics(&cp);
        (metric_value(&text, "tero_cp_push_streams")? == 0.0).then_some(text)
    });
    assert_eq!(value(&text, "tero_cp_edges{transport=\"stream\"}"), 0.0);
    assert_eq!(
        value(&text, "tero_cp_edges{transport=\"poll\"}"),
        0.0,
        "an edge whose stream closed is counted as polling"
    );
    // As the runtime view has it: a streaming edge, no longer connected.
    wait_for(Duration::from_secs(10), "edge stale in the view", || {
        let (status, view) = cp.api("GET", "/api/v1/edges/edge-metrics-0", None);
        (status == 200
            && view["transport"] == "TRANSPORT_STREAM"
            && view["state"] == "EDGE_STATE_STALE")
            .then_some(())
    });
}

#[test]
fn the_edge_self_metrics_include_process_families_and_build_info() {
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let dir = tempdir();
    let started = now_secs();
    let edge = Edge::start(
        json!({"upstream_url": up.url(), "service": {"name": "checkout"}}),
        dir,
        "edge-self-metrics",
    );
    // The app's own process_* series pass through untouched.
    assert_eq!(scrape_with(&edge, &[]), EXPOSITION);
    let text = edge.self_metrics();
    check_exposition(&text);
    assert_process_metrics(&text, started);
    assert_eq!(
        value(&text, &format!("edge_build_info{{version=\"{VERSION}\"}}")),
        1.0
    );
    assert_eq!(value(&text, "edge_scrapes_total{result=\"ok\"}"), 1.0);
    assert_eq!(value(&text, "edge_scrape_duration_seconds_count"), 1.0);
    assert_eq!(
        value(&text, "edge_scrape_duration_seconds_bucket{le=\"+Inf\"}"),
        1.0
    );
    // Each process family is measured in this process, not copied from the
    // app (whose exposition says 42 open fds).
    let pid = edge.process.pid();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as f64)
        .unwrap_or(f64::NAN);
    let reported = value(&text, "process_open_fds");
    assert!(
        fds.is_nan() || (reported - fds).abs() <= 8.0,
        "process_open_fds {reported}, /proc/{pid}/fd holds {fds}"
    );
}

// ---------------------------------------------------------------------------
// Command line and logs
// ---------------------------------------------------------------------------

#[test]
fn both_binaries_print_their_name_and_version() {
    for name in ["tero-edge", "tero-control-plane"] {
        let out = Command::new(binary(name))
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("run {name}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name} --version: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.trim_end(), format!("{name} {VERSION}"));
    }
}

/// Each line of `log` parsed as a JSON object with a level and a message.
fn json_lines(log: &str, process: &str) -> Vec<Value> {
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{process} wrote a line that is not JSON ({e}): {l}"));
            assert!(v["level"].is_string(), "{process}: no level in {l}");
            assert!(
                v["fields"]["message"].is_string(),
                "{process}: no fields.message in {l}"
            );
            v
        })
        .collect();
    assert!(!lines.is_empty(), "{process} logged nothing");
    lines
}

fn find_message<'a>(lines: &'a [Value], needle: &str) -> Option<&'a Value> {
    lines.iter().find(|v| {
        v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(needle))
    })
}

#[test]
fn both_binaries_log_json_lines_when_asked() {
    let dir = tempdir();
    let mut cp = ControlPlane::start_with(dir.clone(), "cp-json", None, &["--log-format", "json"]);
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    // The environment variable, and a config warning logged at start-up.
    let mut edge = Edge::start_with_env(
        json!({"upstream_url": up.url(), "service": {"name": "checkout"}, "colour": "blue"}),
        dir,
        "edge-json",
        &[("TERO_LOG_FORMAT", "json")],
    );
    assert_eq!(scrape_with(&edge, &[]), EXPOSITION);
    assert_exits_cleanly(&mut edge.process);
    assert_exits_cleanly(&mut cp.process);

    let lines = json_lines(&cp.process.log(), "tero-control-plane");
    let serving = find_message(&lines, "tero-control-plane serving gRPC and HTTP")
        .unwrap_or_else(|| panic!("no serving line in {lines:#?}"));
    assert_eq!(serving["level"], "INFO");
    assert_eq!(
        serving["fields"]["listen"].as_str(),
        Some(cp.addr().to_string().as_str()),
        "{serving}"
    );
    assert!(find_message(&lines, "stopped").is_some(), "{lines:#?}");

    let lines = json_lines(&edge.process.log(), "tero-edge");
    let started = find_message(&lines, "tero-edge started")
        .unwrap_or_else(|| panic!("no start line in {lines:#?}"));
    assert_eq!(started["level"], "INFO");
    assert_eq!(
        started["fields"]["listen"].as_str(),
        Some(edge.addr().to_string().as_str()),
        "{started}"
    );
    let warning = find_message(&lines, "colour")
        .unwrap_or_else(|| panic!("no warning about the unknown key in {lines:#?}"));
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert!(
        find_message(&lines, "tero-edge stopped").is_some(),
        "{lines:#?}"
    );
}

//! The Edge's HTTP server: routes, the scrape proxy and the admin
//! endpoints.
//!
//! `/_health` answers before anything else and never touches upstream or
//! policies; `/_edge/*` is reserved for the Edge itself (`/_edge/logs`
//! takes log samples, `/_edge/tap/*` is the push intake's tap); `/metrics`
//! and its sub-paths are scrapes; everything else is the push intake's
//! ([`crate::intake`]: OTLP, Datadog, and relays of other paths). The
//! proxy knows nothing about policies: it hands the upstream body to the
//! filter and streams back what comes out.

mod admin;
mod body;
mod conn;
mod guard;
pub(crate) mod layers;
mod negotiate;
mod plan;
mod scrape;
mod source;
mod transform;
mod upstream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use conn::{ConnLimits, Ended, Slot, TrackedBody, Watch, WatchedStream};

use crate::config::Config;
use crate::filter::Resource;
use crate::intake::Intake;
use crate::inventory::Inventory;
use crate::logs::LogIntake;
use crate::registry::PolicyRegistry;
use crate::spans::SpanPatterns;
use crate::telemetry::EdgeMetrics;

pub(crate) use layers::Deadline;
pub use negotiate::{accepts_gzip, rewrite_accept, strip_hop_by_hop};
pub use source::Encoding;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// hyper's per-connection read/write buffer bound.
const IO_BUFFER_BYTES: usize = 64 * 1024;
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;
pub type UpstreamClient = Client<HttpConnector, Empty<Bytes>>;

/// What every request handler shares.
pub struct EdgeState {
    pub config: Arc<Config>,
    pub registry: Arc<PolicyRegistry>,
    pub metrics: Arc<EdgeMetrics>,
    pub resource: Arc<Resource>,
    pub client: UpstreamClient,
    pub scrapes: Arc<Semaphore>,
    /// The metric inventory, when it is reported somewhere.
    pub inventory: Option<Arc<Inventory>>,
    /// Log-sample intake (`POST /_edge/logs`): only with an inventory,
    /// whose reports carry its templates.
    pub logs: Option<Arc<LogIntake>>,
    /// Span patterns of sampled pushed traces: only with an inventory,
    /// whose reports carry them.
    pub spans: Option<Arc<SpanPatterns>>,
    /// The push intake (OTLP, Datadog) and relayed requests.
    pub intake: Intake,
}

impl EdgeState {
    pub fn new(
        config: Arc<Config>,
        registry: Arc<PolicyRegistry>,
        resource: Arc<Resource>,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.prometheus.connect_timeout()));
        connector.set_nodelay(true);
        // A bounded read buffer bounds what one scrape holds of its
        // upstream body, whatever the response size.
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(32)
            .http1_max_buf_size(IO_BUFFER_BYTES)
            .build(connector);
        let scrapes = Arc::new(Semaphore::new(config.prometheus.max_concurrent_scrapes));
        let reported = config.inventory.destination(&config).is_some();
        let logs = (reported && config.logs.enabled)
            .then(|| {
                // The service the control plane files reports under (the
                // `service.name` of the edge's identity): part of every
                // template's fingerprint.
                let service = config.service.name.clone().unwrap_or_default();
                LogIntake::new(service, &config.logs)
                    .inspect_err(|e| tracing::warn!(error = %e, "log intake off"))
                    .ok()
            })
            .flatten()
            .map(Arc::new);
        // Under the same service as the log templates: part of every
        // pattern's fingerprint.
        let spans = reported.then(|| {
            Arc::new(SpanPatterns::new(
                config.service.name.clone().unwrap_or_default(),
            ))
        });
        let inventory = reported.then(|| {
            Arc::new(
                Inventory::new(&config.inventory)
                    .with_logs(logs.clone())
                    .with_spans(spans.clone()),
            )
        });
        EdgeState {
            intake: Intake::new(&config),
            config,
            registry,
            metrics: Arc::new(EdgeMetrics::default()),
            resource,
            client,
            scrapes,
            inventory,
            logs,
            spans,
        }
    }
}

/// A complete (non-streamed) response.
pub(crate) fn full_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ResponseBody> {
    let mut resp = Response::new(
        Full::new(body.into())
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub(crate) fn text_response(status: StatusCode, body: String) -> Response<ResponseBody> {
    full_response(status, "text/plain; charset=utf-8", body)
}

/// Routes a request; a handler that panics answers 500 instead of
/// dropping the connection (no request should reach a panic, but a client
/// must not be left without an answer if one does).
async fn handle(
    state: Arc<EdgeState>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<ResponseBody> {
    use futures_util::FutureExt as _;
    match std::panic::AssertUnwindSafe(route(state, req, peer))
        .catch_unwind()
        .await
    {
        Ok(resp) => resp,
        Err(_) => {
            tracing::error!("request handler panicked; answered 500");
            text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "tero-edge: internal error\n".into(),
            )
        }
    }
}

async fn route(
    state: Arc<EdgeState>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<ResponseBody> {
    let path = req.uri().path();
    if path == "/_health" {
        return admin::health();
    }
    if path == "/_ready" {
        return admin::ready(&state);
    }
    if path == "/_edge/metrics" {
        return admin::metrics(&state);
    }
    if path == "/_edge/policies" {
        return admin::policies(&state);
    }
    if path == "/_edge/logs" {
        return admin::logs(&state, req).await;
    }
    if path.starts_with("/_edge/") || path == "/_edge" {
        if path.starts_with("/_edge/tap/") {
            return crate::intake::tap::handle(&state, &req, peer);
        }
        return text_response(
            StatusCode::NOT_FOUND,
            "tero-edge: no such endpoint\n".into(),
        );
    }
    if path == "/metrics" || path.starts_with("/metrics/") {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut resp = text_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "tero-edge: scrapes are GET or HEAD\n".into(),
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        return scrape::handle(state, req).await;
    }
    // Pushes (OTLP, Datadog), and every other path relayed upstream.
    crate::intake::handle(state, req, peer).await
}

/// Serves until `shutdown` is cancelled, then drains in-flight requests
/// for at most `drain`. Each connection holds one of `max_connections`
/// slots and is closed when it is slow to send a request head or stays idle
/// (see [`conn`]).
pub async fn serve(
    listener: TcpListener,
    state: Arc<EdgeState>,
    shutdown: CancellationToken,
    drain: Duration,
) -> std::io::Result<()> {
    let limits = ConnLimits::from_config(&state.config);
    let connections = TaskTracker::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(IO_BUFFER_BYTES);
    loop {
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Some(slot) = Slot::take(&state.metrics, limits.max_connections) else {
            // Accepted only to be closed: a refused connection costs no task
            // and no buffer. The 503 goes out if the socket takes it at once.
            let _ = stream.try_write(conn::REFUSED);
            tracing::debug!(%peer, max_connections = limits.max_connections, "connection refused: too many open");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let watch = Watch::new();
        let service = {
            let state = state.clone();
            let watch = watch.clone();
            service_fn(move |req| {
                let request = watch.request_started();
                let state = state.clone();
                async move {
                    let resp = handle(state, req, peer).await;
                    Ok::<_, Infallible>(resp.map(|body| TrackedBody::new(body, request)))
                }
            })
        };
        let io = TokioIo::new(WatchedStream::new(stream, watch.clone()));
        let conn = builder.serve_connection(io, service).into_owned();
        let state = state.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut conn = std::pin::pin!(conn);
            let ended = conn::watch(conn.as_mut(), &watch, &limits, &shutdown, |c| {
                c.graceful_shutdown()
            })
            .await;
            match ended {
                Ended::Done(Ok(())) => {}
                Ended::Done(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                Ended::TimedOut(reason) => {
                    state.metrics.connection_timed_out(reason);
                    tracing::debug!(%peer, reason = reason.label(), "connection closed by the Edge");
                }
            }
        });
    }
    drop(listener);
    state.intake.closing.cancel();
    connections.close();
    tokio::select! {
        () = connections.wait() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(drain) => tracing::warn!(drain_secs = drain.as_secs_f64(), "drain timeout; closing remaining connections"),
    }
    Ok(())
}

/// An Edge served on a loopback port, for tests that go through HTTP.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub struct TestEdge {
        pub addr: SocketAddr,
        pub state: Arc<EdgeState>,
        stop: CancellationToken,
    }

    impl TestEdge {
        pub async fn start(config: Config) -> Self {
            let registry = Arc::new(crate::providers::registry_for(&config));
            let resource = Arc::new(Resource::new(Vec::new()));
            let state = Arc::new(EdgeState::new(Arc::new(config), registry, resource));
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("loopback port");
            let addr = listener.local_addr().expect("bound address");
            let stop = CancellationToken::new();
            tokio::spawn(serve(
                listener,
                state.clone(),
                stop.clone(),
                Duration::from_secs(1),
            ));
            TestEdge { addr, state, stop }
        }

        /// Status and body of one request.
        pub async fn request(
            &self,
            method: Method,
            path_and_query: &str,
            content_type: Option<&str>,
            body: impl Into<Bytes>,
        ) -> (StatusCode, String) {
            let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            let mut req = Request::builder()
                .method(method)
                .uri(format!("http://{}{path_and_query}", self.addr));
            if let Some(ct) = content_type {
                req = req.header(header::CONTENT_TYPE, ct);
            }
            let req = req.body(Full::new(body.into())).expect("a valid request");
            let resp = client.request(req).await.expect("the edge answers");
            let status = resp.status();
            let body = resp.into_body().collect().await.expect("a body").to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    }

    impl Drop for TestEdge {
        fn drop(&mut self) {
            self.stop.cancel();
        }
    }
}

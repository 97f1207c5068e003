//! One listener for everything: gRPC over HTTP/2 and JSON over HTTP/1.1
//! (or h2), with TLS when configured. hyper-util's auto builder picks the
//! protocol per connection; the router sends gRPC calls to the tonic
//! services and everything else to the HTTP routes.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tero_proto::controlplane::admin_service_server::AdminServiceServer;
use tero_proto::controlplane::classify_service_server::ClassifyServiceServer;
use tero_proto::controlplane::edge_service_server::SERVICE_NAME as EDGE_SERVICE;
use tero_proto::controlplane::inventory_service_server::InventoryServiceServer;
use tero_proto::controlplane::issues_service_server::IssuesServiceServer;
use tero_proto::policy::policy_service_server::PolicyServiceServer;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::api::admin::AdminGrpc;
use crate::api::classify::ClassifyGrpc;
use crate::api::inventory::InventoryGrpc;
use crate::api::issues::IssuesGrpc;
use crate::api::stream;
use crate::api::sync::SyncGrpc;
use crate::api::{State, http};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("TLS: cannot read {path}: {reason}")]
    TlsFile { path: String, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
}

/// The whole application: gRPC services, health, reflection and HTTP routes.
pub async fn app(state: State) -> Result<Router, ServerError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AdminServiceServer<AdminGrpc>>().await;
    health.set_serving::<PolicyServiceServer<SyncGrpc>>().await;
    health
        .set_serving::<IssuesServiceServer<IssuesGrpc>>()
        .await;
    health
        .set_serving::<InventoryServiceServer<InventoryGrpc>>()
        .await;
    health
        .set_serving::<ClassifyServiceServer<ClassifyGrpc>>()
        .await;
    health
        .set_service_status(EDGE_SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tero_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let grpc = tonic::service::Routes::new(AdminServiceServer::new(AdminGrpc(state.clone())))
        .add_service(PolicyServiceServer::new(SyncGrpc(state.clone())))
        .add_service(
            IssuesServiceServer::new(IssuesGrpc(state.clone()))
                .max_decoding_message_size(crate::api::issues::MAX_USAGE_BYTES + 64 * 1024),
        )
        // Inventories carry label sketches (up to 4 KiB each).
        .add_service(
            InventoryServiceServer::new(InventoryGrpc(state.clone()))
                .max_decoding_message_size(crate::api::inventory::MAX_REPORT_BYTES),
        )
        .add_service(
            ClassifyServiceServer::new(ClassifyGrpc(state.clone()))
                .max_decoding_message_size(crate::api::classify::MAX_REQUEST_BYTES),
        )
        .add_service(health_service)
        .add_service(reflection)
        .into_axum_router();
    // The push stream has its own handler: see `stream::subscribe`.
    let edge = Router::new()
        .route(
            stream::SUBSCRIBE_PATH,
            axum::routing::post(stream::subscribe),
        )
        .with_state(state.clone());
    Ok(http::router(state.clone())
        .merge(edge)
        .merge(grpc)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::metrics::observe,
        )))
}

async fn not_found(req: axum::extract::Request) -> axum::response::Response {
    let grpc = req
        .headers()
        .get(::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        return tonic::Status::unimplemented(format!("no such method: {}", req.uri().path()))
            .into_http::<axum::body::Body>()
            .into_response();
    }
    crate::api::ApiError::NotFound(format!(
        "no such endpoint: {} {}",
        req.method(),
        req.uri().path()
    ))
    .into_response()
}

/// Loads a PEM certificate chain and key for the listener.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<TlsAcceptor, ServerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let file_err = |path: &std::path::Path, e: &dyn std::fmt::Display| ServerError::TlsFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, &e))?;
    if certs.is_empty() {
        return Err(file_err(cert, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ServerError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Bounds on the connections one replica holds.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at most; beyond, new ones are closed at once.
    pub max_connections: usize,
    /// Time a connection has for its TLS handshake and its first request's
    /// headers, and an HTTP/1.1 connection for each request's headers.
    pub header_read_timeout: Duration,
    /// Time a connection may stay open with no request in flight. A push
    /// stream is a request in flight for its whole life, so it is never
    /// idle; HTTP/2 keep-alive pings close dead peers.
    pub idle_timeout: Duration,
}

/// Counts for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    pub open: AtomicU64,
    pub refused: AtomicU64,
    pub closed_header_timeout: AtomicU64,
    pub closed_idle: AtomicU64,
}

/// What one connection is doing, shared by its requests and its watchdog.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// Milliseconds after `opened` when the last request ended.
    quiet_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            quiet_since_ms: AtomicU64::new(0),
        })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Why the connection should be closed now, if it should.
    fn expired(&self, limits: &ConnectionLimits) -> Option<Expiry> {
        if self.in_flight.load(Relaxed) > 0 {
            return None;
        }
        let open_for = self.opened.elapsed();
        if self.requests.load(Relaxed) == 0 {
            return (open_for >= limits.header_read_timeout).then_some(Expiry::Header);
        }
        let quiet_since = Duration::from_millis(self.quiet_since_ms.load(Relaxed));
        (open_for.saturating_sub(quiet_since) >= limits.idle_timeout).then_some(Expiry::Idle)
    }
}

enum Expiry {
    Header,
    Idle,
}

/// A request in flight: from its headers until its response body is done
/// (or dropped), so a streaming response counts for as long as it streams.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let elapsed = self.0.opened.elapsed().as_millis() as u64;
        self.0.quiet_since_ms.store(elapsed, Relaxed);
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A response body holding its request's [`InFlight`].
struct TrackedBody {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves until `shutdown`, then lets open connections finish for up to
/// `drain`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    shutdown: CancellationToken,
    drain: Duration,
    limits: ConnectionLimits,
    counters: Arc<ConnectionCounters>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        // HTTP/2 keep-alive pings need a timer; without one hyper panics on
        // every HTTP/2 (so every gRPC) connection.
        .timer(TokioTimer::new())
        .max_concurrent_streams(16_384)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: pause, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            counters.refused.fetch_add(1, Relaxed);
            tracing::debug!(%peer, max = limits.max_connections, "connection refused: at the limit");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        counters.open.fetch_add(1, Relaxed);
        let connection = Connection {
            builder: Arc::clone(&builder),
            app: app.clone(),
            limits,
            counters: Arc::clone(&counters),
            shutdown: shutdown.clone(),
            peer,
        };
        let tls = tls.clone();
        connections.spawn(async move {
            let _slot = slot;
            match tls {
                None => connection.run(tcp).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(tcp);
                    match tokio::time::timeout(limits.header_read_timeout, handshake).await {
                        Ok(Ok(stream)) => connection.run(stream).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            connection
                                .counters
                                .closed_header_timeout
                                .fetch_add(1, Relaxed);
                        }
                    }
                }
            }
            connection.counters.open.fetch_sub(1, Relaxed);
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(drain, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain,
            "connections still open after the drain timeout; closing them"
        );
    }
}

/// One accepted connection and what it needs to be served.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    limits: ConnectionLimits,
    counters: Arc<ConnectionCounters>,
    shutdown: CancellationToken,
    peer: std::net::SocketAddr,
}

impl Connection {
    /// Serves the connection until it ends, closing it when it times out
    /// and gracefully on shutdown.
    async fn run<I>(&self, io: I)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new();
        let app = self.app.clone();
        let tracked = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let in_flight = tracked.begin();
            let call = app.clone().oneshot(req);
            async move {
                let response = call.await?;
                Ok::<_, std::convert::Infallible>(response.map(|inner| TrackedBody {
                    inner,
                    _in_flight: in_flight,
                }))
            }
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        // Checked a few times per timeout, so a connection outlives its
        // timeout by at most a quarter of it.
        let period = (self
            .limits
            .header_read_timeout
            .min(self.limits.idle_timeout)
            / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(5));
        let mut check = tokio::time::interval(period);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut draining = false;
        // After an idle close: when to stop waiting for the connection.
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        // hyper's own HTTP/1.1 header timeout.
                        if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout) {
                            self.counters.closed_header_timeout.fetch_add(1, Relaxed);
                        }
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                // Open requests finish; the server's drain timeout bounds it.
                _ = self.shutdown.cancelled(), if !draining => {
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                }
                _ = check.tick(), if !draining && deadline.is_none() => {
                    match activity.expired(&self.limits) {
                        None => {}
                        Some(Expiry::Header) => {
                            // Not one whole request yet: nothing to finish.
                            self.counters.closed_header_timeout.fetch_add(1, Relaxed);
                            tracing::debug!(peer = %self.peer, "connection closed: no request within the header timeout");
                            return;
                        }
                        Some(Expiry::Idle) => {
                            self.counters.closed_idle.fetch_add(1, Relaxed);
                            tracing::debug!(peer = %self.peer, "connection closed: idle");
                            // GOAWAY on HTTP/2; a request racing it is served.
                            conn.as_mut().graceful_shutdown();
                            deadline = Some(tokio::time::Instant::now() + self.limits.header_read_timeout);
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() && !draining => {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Timeouts already passed, and not soon to.
    const SHORT: ConnectionLimits = ConnectionLimits {
        max_connections: 10,
        header_read_timeout: Duration::from_millis(50),
        idle_timeout: Duration::from_millis(50),
    };
    const LONG: ConnectionLimits = ConnectionLimits {
        max_connections: 10,
        header_read_timeout: Duration::from_secs(3600),
        idle_timeout: Duration::from_secs(3600),
    };

    #[test]
    fn a_connection_expires_without_a_request_or_when_idle_never_while_one_is_open() {
        let activity = Activity::new();
        assert!(activity.expired(&LONG).is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(activity.expired(&SHORT), Some(Expiry::Header)));

        // A request in flight (a push stream, say) holds it open however long.
        let stream = activity.begin();
        std::thread::sleep(Duration::from_millis(600));
        assert!(activity.expired(&SHORT).is_none());
        drop(stream);
        // Quiet from the end of the last request, not from the start (the
        // connection is older than this idle timeout).
        let half_second = ConnectionLimits {
            idle_timeout: Duration::from_millis(500),
            ..LONG
        };
        assert!(activity.expired(&half_second).is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(activity.expired(&SHORT), Some(Expiry::Idle)));
    }
}

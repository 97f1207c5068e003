//! One listener for everything: gRPC over HTTP/2 and JSON over HTTP/1.1
//! (or h2), with TLS when configured. hyper-util's auto builder picks the
//! protocol per connection; the router sends gRPC calls to the tonic
//! services and everything else to the HTTP routes.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tero_proto::controlplane::admin_service_server::AdminServiceServer;
use tero_proto::controlplane::classify_service_server::ClassifyServiceServer;
use tero_proto::controlplane::edge_service_server::SERVICE_NAME as EDGE_SERVICE;
use tero_proto::controlplane::inventory_service_server::InventoryServiceServer;
use tero_proto::controlplane::issues_service_server::IssuesServiceServer;
use tero_proto::policy::policy_service_server::PolicyServiceServer;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

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

/// Serves until `shutdown`, then lets open connections finish for up to
/// `drain`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        // HTTP/2 keep-alive pings need a timer; without one hyper panics on
        // every HTTP/2 (so every gRPC) connection.
        .timer(TokioTimer::new())
        .max_concurrent_streams(16_384)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        match tls.clone() {
            None => {
                tokio::spawn(async move {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    let stream =
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain,
            "connections still open after the drain timeout; closing them"
        );
    }
}

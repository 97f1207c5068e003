//! The push intake: OTLP/HTTP (`POST /v1/{logs,traces,metrics}`, protobuf
//! or JSON), OTLP/gRPC (the collector Export services, h2c on the same
//! port) and Datadog (`POST /api/v2/logs`, `/api/v2/series`), run through
//! the loaded log, trace and metric policies and forwarded upstream; any
//! other path is relayed unchanged.
//!
//! One module per step of a push:
//! [`route`] (which push a request is) → [`body`] (limits, decompression)
//! → [`apply`] (the codecs of `tero-otlp`, volume, tap, samples) →
//! [`forward`] (destination, headers, upstream, the answer). [`http`] and
//! [`grpc`] string the steps together for each protocol and say what each
//! failure means to its clients; [`relay`] passes everything else;
//! [`tap`] streams records before and after policies; [`samples`] feeds
//! the template miner (and [`crate::spans`] the span patterns);
//! [`metrics`] counts.
//!
//! gRPC is accepted and OTLP/HTTP spoken upstream: an Export message is
//! forwarded as `POST {upstream}/v1/{signal}` with the same protobuf bytes,
//! and upstream's answer becomes the gRPC response. One upstream protocol
//! keeps one client, one set of destination keys and one failure table;
//! every OTLP backend takes OTLP/HTTP.

pub mod apply;
pub mod body;
pub mod budget;
pub mod forward;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod relay;
pub mod route;
pub mod samples;
pub mod tap;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ::http::{HeaderMap, Request, Response};
use hyper::body::Incoming;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::{ServiceBuilder, ServiceExt as _};

use crate::config::Config;
use crate::proxy::layers::{self, ConcurrencyLimitLayer, DeadlineLayer, TraceLayer};
use crate::proxy::{EdgeState, ResponseBody};
use route::Route;

/// What every push shares.
pub struct Intake {
    pub client: forward::PushClient,
    /// Pushes in flight (`intake.max_concurrent_requests`).
    pub permits: Arc<Semaphore>,
    /// Push body bytes in memory (`intake.max_buffered_bytes`).
    pub buffers: budget::ByteBudget,
    /// Decode-filter-encode steps running at once.
    pub processing: Arc<Semaphore>,
    pub tap: tap::Tap,
    pub samples: samples::SampleBudget,
    /// Spans of pushed traces read into span patterns.
    pub span_samples: samples::SampleBudget,
    /// Cancelled when the Edge starts draining: tap streams, which
    /// otherwise wait for traffic indefinitely, end then.
    pub closing: CancellationToken,
}

impl Intake {
    pub fn new(config: &Config) -> Self {
        Intake {
            client: forward::client(config.intake.upstream_timeout),
            permits: Arc::new(Semaphore::new(config.intake.max_concurrent_requests)),
            buffers: budget::ByteBudget::new(config.intake.max_buffered_bytes),
            processing: budget::processing_slots(),
            tap: tap::Tap::default(),
            samples: samples::SampleBudget::new(config.intake.log_samples_per_second),
            span_samples: samples::SampleBudget::new(config.intake.span_samples_per_second),
            closing: CancellationToken::new(),
        }
    }
}

/// Serves a request that is neither a scrape nor the Edge's own: a push,
/// or a request relayed upstream.
pub async fn handle(
    state: Arc<EdgeState>,
    req: Request<Incoming>,
    _peer: SocketAddr,
) -> Response<ResponseBody> {
    match Route::of(req.method(), req.uri().path(), req.headers()) {
        Route::Push(push) => http::handle(state, req, push).await,
        Route::Grpc(signal) => grpc::handle(state, req, Some(signal)).await,
        Route::GrpcUnknown => grpc::handle(state, req, None).await,
        Route::WrongMethod => http::wrong_method(),
        Route::Relay => relay::handle(state, req).await,
    }
}

/// Runs `handler` under the layers every request the Edge works on for a
/// client shares (as scrapes do): a span, a permit of the intake's
/// concurrency limit (`refuse` answers when none is left) and a deadline
/// of `budget`.
pub(crate) async fn layered<H, F>(
    state: Arc<EdgeState>,
    req: Request<Incoming>,
    span: tracing::Span,
    refuse: fn() -> Response<ResponseBody>,
    budget: Duration,
    handler: H,
) -> Response<ResponseBody>
where
    H: Fn(Arc<EdgeState>, Request<Incoming>) -> F + Clone + Send + 'static,
    F: Future<Output = Response<ResponseBody>> + Send + 'static,
{
    let metrics = state.metrics.clone();
    let permits = state.intake.permits.clone();
    let service = ServiceBuilder::new()
        .layer(TraceLayer::new(move |_: &Request<Incoming>| span.clone()))
        .layer(ConcurrencyLimitLayer::new(permits, move || {
            metrics.intake.rejected_busy();
            refuse()
        }))
        .layer(DeadlineLayer::new(move |_: &HeaderMap| budget))
        .service_fn(move |req| {
            let state = state.clone();
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler(state, req).await) }
        });
    // Boxed where the stack's types are concrete (see the scrape's).
    let response: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(service.oneshot(req));
    layers::infallible(response.await)
}

//! Tower layers every request the Edge works on for a client shares: a
//! trace span, a limit on requests in flight and a deadline.
//!
//! Kept apart from the scrape so that another intake (OTLP) stacks the
//! same three, in the same order, linkerd2-proxy style: one concern per
//! layer, each testable alone. What they hold lasts as long as the
//! response *body*, not its head: a scrape is in flight, and its span open,
//! until its last byte is sent or the client goes away. So the span and
//! the permit ride in a [`Holding`] body, unlike tower's own limit and
//! trace layers, which let go once the head is ready.
//!
//! The deadline layer only fixes the instant: what passing it means (a
//! 504 before the first byte, an abort after it) is the handler's, and
//! [`Deadline::within`] is the one way to wait under it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, SizeHint};
use tero_observability::propagation::continue_trace;
use tokio::sync::Semaphore;
use tower::{Layer, Service};
use tracing::Instrument as _;

use super::{BoxError, ResponseBody};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A response body that keeps `T` alive until the body is done with.
pub struct Holding<T> {
    body: ResponseBody,
    _held: T,
}

impl<T: Send + Unpin + 'static> Holding<T> {
    pub fn wrap(body: ResponseBody, held: T) -> ResponseBody {
        Holding { body, _held: held }.boxed_unsync()
    }
}

impl<T: Unpin> Body for Holding<T> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

// --- Trace ---------------------------------------------------------------

/// Opens a span per request (joining the client's trace when it sent a
/// `traceparent`), runs the handler in it and keeps it open until the
/// response body is dropped, so an exported span covers the whole
/// response, not just the time to its head.
#[derive(Clone)]
pub struct TraceLayer<M> {
    make_span: M,
}

impl<M> TraceLayer<M> {
    pub fn new(make_span: M) -> Self {
        TraceLayer { make_span }
    }
}

impl<S, M: Clone> Layer<S> for TraceLayer<M> {
    type Service = Trace<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace {
            inner,
            make_span: self.make_span.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Trace<S, M> {
    inner: S,
    make_span: M,
}

impl<S, M, B> Service<Request<B>> for Trace<S, M>
where
    S: Service<Request<B>, Response = Response<ResponseBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    M: Fn(&Request<B>) -> tracing::Span,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let span = (self.make_span)(&req);
        continue_trace(&span, req.headers());
        let response = span.in_scope(|| self.inner.call(req));
        Box::pin(async move {
            let response = response.instrument(span.clone()).await?;
            Ok(response.map(|body| Holding::wrap(body, span)))
        })
    }
}

// --- Concurrency limit ---------------------------------------------------

/// At most `permits` requests in flight; one more is answered at once by
/// `refuse` rather than queued, because a client that retries (Prometheus
/// scrapes again next interval) is better served by a fast refusal than by
/// a slot freed after its own timeout.
#[derive(Clone)]
pub struct ConcurrencyLimitLayer<R> {
    permits: Arc<Semaphore>,
    refuse: R,
}

impl<R> ConcurrencyLimitLayer<R> {
    pub fn new(permits: Arc<Semaphore>, refuse: R) -> Self {
        ConcurrencyLimitLayer { permits, refuse }
    }
}

impl<S, R: Clone> Layer<S> for ConcurrencyLimitLayer<R> {
    type Service = ConcurrencyLimit<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit {
            inner,
            permits: self.permits.clone(),
            refuse: self.refuse.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ConcurrencyLimit<S, R> {
    inner: S,
    permits: Arc<Semaphore>,
    refuse: R,
}

impl<S, R, B> Service<Request<B>> for ConcurrencyLimit<S, R>
where
    S: Service<Request<B>, Response = Response<ResponseBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Fn() -> Response<ResponseBody>,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            let refused = (self.refuse)();
            return Box::pin(std::future::ready(Ok(refused)));
        };
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| Holding::wrap(body, permit)))
        })
    }
}

// --- Deadline ------------------------------------------------------------

/// When a request's work must be done by, fixed as it arrives; handlers
/// find it in the request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: tokio::time::Instant,
    budget: Duration,
}

impl Deadline {
    pub fn after(budget: Duration) -> Self {
        Deadline {
            at: tokio::time::Instant::now() + budget,
            budget,
        }
    }

    /// The instant it passes.
    pub fn at(&self) -> tokio::time::Instant {
        self.at
    }

    /// The time the request was given, for messages.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// `future`, cut off at the deadline.
    pub fn within<F: Future>(&self, future: F) -> tokio::time::Timeout<F> {
        tokio::time::timeout_at(self.at, future)
    }
}

/// Puts a [`Deadline`] in each request's extensions, `budget` from now;
/// `budget` reads what the client asked for (a timeout header) and bounds
/// it.
#[derive(Clone)]
pub struct DeadlineLayer<F> {
    budget: F,
}

impl<F> DeadlineLayer<F> {
    pub fn new(budget: F) -> Self {
        DeadlineLayer { budget }
    }
}

impl<S, F: Clone> Layer<S> for DeadlineLayer<F> {
    type Service = WithDeadline<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        WithDeadline {
            inner,
            budget: self.budget.clone(),
        }
    }
}

#[derive(Clone)]
pub struct WithDeadline<S, F> {
    inner: S,
    budget: F,
}

impl<S, F, B> Service<Request<B>> for WithDeadline<S, F>
where
    S: Service<Request<B>>,
    F: Fn(&HeaderMap) -> Duration,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let deadline = Deadline::after((self.budget)(req.headers()));
        req.extensions_mut().insert(deadline);
        self.inner.call(req)
    }
}

/// Unwraps a stack's result whose error cannot happen.
pub fn infallible<T>(result: Result<T, Infallible>) -> T {
    match result {
        Ok(t) => t,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use tower::{ServiceBuilder, ServiceExt as _};

    use super::*;
    use crate::proxy::text_response;

    fn ok(_: Request<()>) -> std::future::Ready<Result<Response<ResponseBody>, Infallible>> {
        std::future::ready(Ok(text_response(StatusCode::OK, "ok".into())))
    }

    #[tokio::test]
    async fn a_permit_is_held_until_the_response_body_is_dropped() {
        let permits = Arc::new(Semaphore::new(1));
        let refuse = || text_response(StatusCode::SERVICE_UNAVAILABLE, String::new());
        let stack = || {
            ServiceBuilder::new()
                .layer(ConcurrencyLimitLayer::new(permits.clone(), refuse))
                .service_fn(ok)
        };
        let first = infallible(stack().oneshot(Request::new(())).await);
        assert_eq!(first.status(), StatusCode::OK);
        let second = infallible(stack().oneshot(Request::new(())).await);
        assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(first);
        let third = infallible(stack().oneshot(Request::new(())).await);
        assert_eq!(third.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn the_deadline_is_in_the_request_extensions() {
        let stack = ServiceBuilder::new()
            .layer(DeadlineLayer::new(|_: &HeaderMap| Duration::from_secs(7)))
            .service_fn(|req: Request<()>| async move {
                let budget = req.extensions().get::<Deadline>().map(Deadline::budget);
                Ok::<_, Infallible>(budget)
            });
        let budget = infallible(stack.oneshot(Request::new(())).await);
        assert_eq!(budget, Some(Duration::from_secs(7)));
    }
}

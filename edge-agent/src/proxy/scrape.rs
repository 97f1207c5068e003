//! One scrape, as typed steps: build the upstream request, fetch its
//! head, decide a plan, and answer with a body that carries the plan out.
//!
//! The steps live in their own modules ([`super::upstream`],
//! [`super::plan`], [`super::body`] and [`super::transform`]); this one
//! strings them together and says what each failure before the first byte
//! means to the client: a 4xx for a request the Edge cannot send, a 502 or
//! 504 naming the (redacted) upstream otherwise. Failures after the first
//! byte are the body's. The concurrency limit, the deadline and the span
//! around it all are [`super::layers`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use tower::{ServiceBuilder, ServiceExt as _};

use super::body::{ScrapeBody, Source};
use super::guard::ScrapeGuard;
use super::layers::{self, ConcurrencyLimitLayer, Deadline, DeadlineLayer, TraceLayer};
use super::plan::{self, ClientAsk, FilterPlan, Plan, Refusal};
use super::source::{BodySource, Encoding};
use super::transform::{Filtering, Identity};
use super::upstream::{self, UpstreamRequest};
use super::{EdgeState, ResponseBody, text_response};
use crate::exposition::sniff::{SNIFF_BYTES, looks_like_text};
use crate::filter::{FilterOptions, ScrapeFilter};
use crate::inventory::WireTee;
use crate::telemetry::{FormatSource, ScrapeResult, Unfiltered, UpstreamError};

/// Serves a scrape through the layers every client request shares.
pub async fn handle(state: Arc<EdgeState>, req: Request<Incoming>) -> Response<ResponseBody> {
    let configured = state.config.prometheus.scrape_timeout();
    let metrics = state.metrics.clone();
    let service = ServiceBuilder::new()
        .layer(TraceLayer::new(span))
        .layer(ConcurrencyLimitLayer::new(
            state.scrapes.clone(),
            move || {
                metrics.rejected_busy();
                busy()
            },
        ))
        .layer(DeadlineLayer::new(move |headers: &HeaderMap| {
            upstream::budget(headers, configured)
        }))
        .service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(scrape(state, req).await) }
        });
    // Boxed here, where the stack's types are concrete: proving the
    // future `Send` through its closures' higher-ranked lifetimes inside
    // an `async fn` is beyond today's compiler.
    let response: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(service.oneshot(req));
    layers::infallible(response.await)
}

fn span(req: &Request<Incoming>) -> tracing::Span {
    tracing::info_span!(
        "scrape",
        otel.kind = "server",
        http.request.method = %req.method(),
        url.path = req.uri().path(),
        result = tracing::field::Empty,
    )
}

fn busy() -> Response<ResponseBody> {
    let mut resp = text_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "tero-edge: too many scrapes in flight; retry shortly\n".into(),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

async fn scrape(state: Arc<EdgeState>, req: Request<Incoming>) -> Response<ResponseBody> {
    let deadline = req
        .extensions()
        .get::<Deadline>()
        .copied()
        .unwrap_or_else(|| Deadline::after(state.config.prometheus.scrape_timeout()));
    let mut guard = ScrapeGuard::new(state.metrics.clone(), deadline);
    if let Some(inventory) = &state.inventory {
        inventory.record_scrape();
    }
    let (parts, _body) = req.into_parts();
    let engine = state.registry.engine();
    let filtering = engine.metric_policy_count() > 0;
    let upstream = match UpstreamRequest::build(&state.config.upstream, &parts, filtering) {
        Ok(upstream) => upstream,
        Err(e) => {
            guard.finish(ScrapeResult::Rejected);
            return text_response(e.status(), format!("tero-edge: {e}\n"));
        }
    };
    let shown = upstream.shown.clone();
    let response = match fetch(&state, &mut guard, upstream).await {
        Ok(response) => response,
        Err(refused) => return refused,
    };
    let (mut head, body) = response.into_parts();
    // The response is the Edge's, in the Edge's HTTP version: an HTTP/1.0
    // exporter (Python's http.server) must not make the Edge answer
    // HTTP/1.0, which closes the client's connection after every scrape.
    // hyper still answers an HTTP/1.0 client in its own version.
    head.version = http::Version::HTTP_11;
    super::negotiate::strip_hop_by_hop(&mut head.headers);
    let client = ClientAsk::of(&parts.method, &parts.headers);
    let input_cap = state.config.prometheus.max_input_bytes_per_scrape;
    let plan = Plan::decide(filtering, &client, &head, input_cap);
    if let Some(reason) = plan.unfiltered_reason() {
        match reason {
            Unfiltered::ContentType => unrecognized(&state, &shown, &head),
            Unfiltered::Status => {
                state.metrics.upstream_error(UpstreamError::Status);
                state.metrics.unfiltered(reason);
            }
            Unfiltered::NoPolicies | Unfiltered::Encoding => state.metrics.unfiltered(reason),
        }
    }
    let ctx = Answer {
        state: &state,
        guard,
        client: &client,
        shown,
        head,
    };
    match plan {
        Plan::Relay { inventory, .. } => ctx.relay(body, inventory),
        Plan::Decode { encoding, .. } => ctx.decode(body, encoding).await,
        Plan::Filter(filter) => {
            state.metrics.body_format(FormatSource::ContentType);
            ctx.filter(body, filter, engine).await
        }
        Plan::Sniff(filter) => ctx.sniff(body, filter, engine).await,
        Plan::Refuse(refusal) => ctx.refuse(refusal),
    }
}

/// Counts and logs a body whose format the Edge does not recognise, which
/// goes out unfiltered.
fn unrecognized(state: &EdgeState, shown: &str, head: &http::response::Parts) {
    state.metrics.body_format(FormatSource::Unrecognized);
    state.metrics.unfiltered(Unfiltered::ContentType);
    let content_type = head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    tracing::info!(upstream = %shown, content_type = ?content_type, "body format cannot be filtered; relayed unfiltered");
}

/// Sends the upstream request and waits for its head; a failure becomes
/// the client's answer.
async fn fetch(
    state: &EdgeState,
    guard: &mut ScrapeGuard,
    upstream: UpstreamRequest,
) -> Result<Response<Incoming>, Response<ResponseBody>> {
    let UpstreamRequest { request, shown } = upstream;
    let deadline = *guard.deadline();
    match deadline.within(state.client.request(request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => {
            state.metrics.upstream_error(UpstreamError::Connect);
            guard.finish(ScrapeResult::UpstreamError);
            let reason = error_chain(&e);
            tracing::warn!(upstream = %shown, error = %reason, "upstream request failed");
            Err(text_response(
                StatusCode::BAD_GATEWAY,
                format!("tero-edge: upstream {shown} failed: {reason}\n"),
            ))
        }
        Err(_) => {
            let timeout = deadline.budget();
            state.metrics.upstream_error(UpstreamError::Timeout);
            guard.finish(ScrapeResult::Timeout);
            tracing::warn!(upstream = %shown, timeout_secs = timeout.as_secs_f64(), "upstream timed out");
            Err(text_response(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "tero-edge: upstream {shown} did not answer within {:.3}s\n",
                    timeout.as_secs_f64()
                ),
            ))
        }
    }
}

/// Upstream's answer head, and what the response to the client is made
/// from; each way of answering takes upstream's body.
struct Answer<'a> {
    state: &'a Arc<EdgeState>,
    guard: ScrapeGuard,
    client: &'a ClientAsk,
    /// The upstream URI, redacted.
    shown: String,
    head: http::response::Parts,
}

impl Answer<'_> {
    /// Upstream's response as it came, inventoried on the way when
    /// `inventory` names its format and an inventory is due.
    fn relay(
        self,
        body: Incoming,
        inventory: Option<crate::exposition::Format>,
    ) -> Response<ResponseBody> {
        if self.client.is_head {
            return head_only(self.guard, self.head);
        }
        let tee = match (&self.state.inventory, inventory) {
            (Some(inventory), Some(format)) => {
                let coding = self
                    .head
                    .headers
                    .get(header::CONTENT_ENCODING)
                    .and_then(|v| v.to_str().ok());
                inventory
                    .start(format)
                    .and_then(|scrape| WireTee::new(scrape, coding))
                    .map(|tee| (tee, inventory.clone()))
            }
            _ => None,
        };
        let transform = Identity::new(self.head.status.is_success(), tee);
        let body = ScrapeBody::new(self.guard, self.shown, Source::wire(body), transform);
        Response::from_parts(self.head, body.into_response_body())
    }

    /// Upstream's response, decoded for a client that does not take the
    /// encoding the Edge asked for on its behalf.
    async fn decode(mut self, body: Incoming, encoding: Encoding) -> Response<ResponseBody> {
        if self.client.is_head {
            plan::decoded_headers(&mut self.head.headers);
            return head_only(self.guard, self.head);
        }
        // Not `open`: a body that cannot be started here has always been
        // a plain 502 with no upstream-error count, a timeout included.
        let source = match self
            .guard
            .deadline()
            .within(BodySource::new(body, encoding))
            .await
        {
            Ok(Ok(source)) => source,
            _ => {
                self.guard.finish(ScrapeResult::UpstreamError);
                return text_response(
                    StatusCode::BAD_GATEWAY,
                    "tero-edge: cannot read the upstream body\n".into(),
                );
            }
        };
        self.relay_decoded(source, encoding)
    }

    /// The decoded body as it reads, unfiltered; its headers say it is no
    /// longer encoded if it was.
    fn relay_decoded(mut self, source: BodySource, encoding: Encoding) -> Response<ResponseBody> {
        if encoding != Encoding::Identity {
            plan::decoded_headers(&mut self.head.headers);
        }
        let transform = Identity::new(self.head.status.is_success(), None);
        let body = ScrapeBody::new(self.guard, self.shown, Source::Decoded(source), transform);
        Response::from_parts(self.head, body.into_response_body())
    }

    /// Upstream's body through the policies.
    async fn filter(
        mut self,
        body: Incoming,
        plan: FilterPlan,
        engine: Arc<tero_sdk::Engine>,
    ) -> Response<ResponseBody> {
        if self.client.is_head {
            self.guard.finish(ScrapeResult::Ok);
            return filtered_response(&plan, &self.head, empty_body());
        }
        match self.open(body, plan.encoding).await {
            Ok(source) => self.filter_source(plan, engine, source),
            Err(refused) => refused,
        }
    }

    /// A body served under a type naming no format: filtered as text if
    /// its start reads like the text format, else relayed as it came
    /// (decoded if it was compressed, since the Edge had to decode it to
    /// look).
    async fn sniff(
        mut self,
        body: Incoming,
        plan: FilterPlan,
        engine: Arc<tero_sdk::Engine>,
    ) -> Response<ResponseBody> {
        if self.client.is_head {
            // Nothing to look at: upstream's head, as a relay answers it.
            return head_only(self.guard, self.head);
        }
        let mut source = match self.open(body, plan.encoding).await {
            Ok(source) => source,
            Err(refused) => return refused,
        };
        let prefix = match self.guard.deadline().within(source.peek(SNIFF_BYTES)).await {
            Ok(Ok(prefix)) => prefix,
            Ok(Err(e)) => return self.unreadable(&e.to_string()),
            Err(_) => return self.late(),
        };
        let metrics = &self.state.metrics;
        if looks_like_text(&prefix) {
            metrics.body_format(FormatSource::Sniffed);
            tracing::debug!(upstream = %self.shown, "body served without an exposition type reads as text; filtered");
            return self.filter_source(plan, engine, source);
        }
        unrecognized(self.state, &self.shown, &self.head);
        self.relay_decoded(source, plan.encoding)
    }

    /// Starts reading (and decoding) upstream's body under the deadline.
    async fn open(
        &mut self,
        body: Incoming,
        encoding: Encoding,
    ) -> Result<BodySource, Response<ResponseBody>> {
        match self
            .guard
            .deadline()
            .within(BodySource::new(body, encoding))
            .await
        {
            Ok(Ok(source)) => Ok(source),
            Ok(Err(e)) => Err(self.unreadable(&e.to_string())),
            Err(_) => Err(self.late()),
        }
    }

    fn unreadable(&mut self, reason: &str) -> Response<ResponseBody> {
        self.state.metrics.upstream_error(UpstreamError::Reset);
        self.guard.finish(ScrapeResult::UpstreamError);
        text_response(
            StatusCode::BAD_GATEWAY,
            format!("tero-edge: upstream {}: {reason}\n", self.shown),
        )
    }

    fn late(&mut self) -> Response<ResponseBody> {
        self.state.metrics.upstream_error(UpstreamError::Timeout);
        self.guard.finish(ScrapeResult::Timeout);
        text_response(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "tero-edge: upstream {} did not send its body within {:.3}s\n",
                self.shown,
                self.guard.deadline().budget().as_secs_f64()
            ),
        )
    }

    /// The decoded body through the policies.
    fn filter_source(
        self,
        plan: FilterPlan,
        engine: Arc<tero_sdk::Engine>,
        source: BodySource,
    ) -> Response<ResponseBody> {
        let prometheus = &self.state.config.prometheus;
        let mut options = FilterOptions::new(plan.format);
        options.max_line_bytes = prometheus.max_line_bytes;
        options.max_output_bytes = prometheus.max_output_bytes_per_scrape;
        options.hold_long_lines = plan.may_cut;
        let filter = ScrapeFilter::new(engine, self.state.resource.clone(), options);
        let inventory = self.state.inventory.as_ref().and_then(|inventory| {
            let scrape = inventory.start(plan.format)?;
            Some((scrape, inventory.clone()))
        });
        let transform = Filtering::new(
            filter,
            plan.gzip_out,
            prometheus.max_input_bytes_per_scrape,
            inventory,
            self.shown.clone(),
            self.state.registry.clone(),
        );
        let head = self.head;
        let body = ScrapeBody::new(self.guard, self.shown, Source::Decoded(source), transform);
        filtered_response(&plan, &head, body.into_response_body())
    }

    /// A 502 for a body nobody can read.
    fn refuse(mut self, refusal: Refusal) -> Response<ResponseBody> {
        self.guard.finish(ScrapeResult::UpstreamError);
        let message = match refusal {
            Refusal::Undecodable { coding } => {
                self.state.metrics.upstream_error(UpstreamError::Decode);
                format!(
                    "tero-edge: upstream {} answered with Content-Encoding {coding:?}, which neither the Edge nor the client can decode\n",
                    self.shown
                )
            }
            Refusal::NotAccepted { coding, .. } => format!(
                "tero-edge: upstream answered with Content-Encoding {coding:?}, which the client does not accept\n"
            ),
        };
        text_response(StatusCode::BAD_GATEWAY, message)
    }
}

/// A filtered answer: upstream's status, the headers the plan makes of
/// upstream's.
fn filtered_response(
    plan: &FilterPlan,
    upstream: &http::response::Parts,
    body: ResponseBody,
) -> Response<ResponseBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = upstream.status;
    *resp.headers_mut() = plan.headers(&upstream.headers);
    resp
}

fn empty_body() -> ResponseBody {
    Empty::new().map_err(|e| match e {}).boxed_unsync()
}

/// A HEAD answer: upstream's headers, no body, no length.
fn head_only(mut guard: ScrapeGuard, mut head: http::response::Parts) -> Response<ResponseBody> {
    head.headers.remove(header::CONTENT_LENGTH);
    guard.finish_relayed(head.status.is_success());
    Response::from_parts(head, empty_body())
}

/// An error with its causes, for messages users read.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

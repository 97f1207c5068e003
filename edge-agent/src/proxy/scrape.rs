//! One scrape: ask upstream, then stream its body through the filter.
//!
//! The response body is a pull stream: hyper asks for the next frame when
//! the client has drained the last one, and only then is upstream read, so
//! a slow Prometheus slows the exporter instead of filling memory. Failures
//! before the first byte become 502/504 with a body naming the upstream;
//! failures after it abort the response, because a clean end of a broken
//! body would be recorded as a successful scrape.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use futures_util::stream;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Body as _;
use hyper::body::{Frame, Incoming};
use tero_observability::propagation::continue_trace;
use tero_prometheus::inventory::ScrapeInventory;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant as TokioInstant;
use tracing::Instrument as _;

use super::negotiate::{self, DECODABLE_ENCODINGS};
use super::source::{BodySource, Encoding, SourceError};
use super::{BoxError, EdgeState, ResponseBody, text_response};
use crate::config::Redacted;
use crate::exposition::Format;
use crate::filter::{FilterOptions, Limit, ScrapeFilter};
use crate::inventory::WireTee;
use crate::telemetry::{ScrapeResult, Unfiltered, UpstreamError};

const TIMEOUT_HEADER: &str = "x-prometheus-scrape-timeout-seconds";
const TRUNCATED_HEADER: &str = "x-edge-truncated";

/// Records a scrape's outcome when its response is finished or dropped
/// (a client that disconnects mid-body counts as aborted).
struct ScrapeRecord {
    state: Arc<EdgeState>,
    started: Instant,
    result: Option<ScrapeResult>,
    _permit: OwnedSemaphorePermit,
    /// Lives as long as the response body, so an exported span covers the
    /// whole scrape, not just the time to the first byte.
    span: tracing::Span,
}

impl ScrapeRecord {
    fn finish(&mut self, result: ScrapeResult) {
        if self.result.is_none() {
            self.result = Some(result);
        }
    }

    /// A relayed response ended: a success if upstream's status was one.
    fn finish_relayed(&mut self, status_ok: bool) {
        self.finish(if status_ok {
            ScrapeResult::Ok
        } else {
            ScrapeResult::UpstreamError
        });
    }
}

fn empty_body() -> ResponseBody {
    Empty::new().map_err(|e| match e {}).boxed_unsync()
}

/// A HEAD answer: upstream's headers, no body, no length.
fn head_response(
    mut record: ScrapeRecord,
    mut parts: http::response::Parts,
) -> Response<ResponseBody> {
    parts.headers.remove(header::CONTENT_LENGTH);
    record.finish_relayed(parts.status.is_success());
    Response::from_parts(parts, empty_body())
}

impl Drop for ScrapeRecord {
    fn drop(&mut self) {
        let result = self.result.unwrap_or(ScrapeResult::Aborted);
        self.span.record("result", result.label());
        self.state
            .metrics
            .scrape_finished(result, self.started.elapsed());
    }
}

/// The upstream deadline: Prometheus' timeout minus a margin,
/// never above the configured one. The header is the client's to write:
/// anything that is not a positive finite number of seconds is ignored,
/// and a huge one is clamped before it becomes a `Duration` (converting
/// `1e20` seconds would panic).
fn deadline(headers: &HeaderMap, configured: Duration) -> Duration {
    let Some(secs) = headers
        .get(TIMEOUT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
    else {
        return configured;
    };
    let margin = (secs * 0.1).min(0.5);
    let secs = (secs - margin).clamp(0.05, configured.as_secs_f64().max(0.05));
    Duration::try_from_secs_f64(secs).map_or(configured, |d| d.min(configured))
}

/// The upstream URI for a request path under `/metrics`: the
/// upstream base path plus the sub-path; the client's query wins over the
/// configured one.
fn upstream_uri(base: &Uri, request: &Uri) -> Result<Uri, http::Error> {
    let sub = request.path().strip_prefix("/metrics").unwrap_or("");
    let path = format!("{}{}", base.path().trim_end_matches('/'), sub);
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let query = request.query().or(base.query());
    let pq = match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    Uri::builder()
        .scheme(base.scheme_str().unwrap_or("http"))
        .authority(base.authority().map(|a| a.as_str()).unwrap_or(""))
        .path_and_query(pq)
        .build()
}

pub async fn handle(state: Arc<EdgeState>, req: Request<Incoming>) -> Response<ResponseBody> {
    let span = tracing::info_span!(
        "scrape",
        otel.kind = "server",
        http.request.method = %req.method(),
        url.path = req.uri().path(),
        result = tracing::field::Empty,
    );
    continue_trace(&span, req.headers());
    handle_in(state, req, span.clone()).instrument(span).await
}

async fn handle_in(
    state: Arc<EdgeState>,
    req: Request<Incoming>,
    span: tracing::Span,
) -> Response<ResponseBody> {
    let Ok(permit) = state.scrapes.clone().try_acquire_owned() else {
        state.metrics.rejected_busy();
        let mut resp = text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "tero-edge: too many scrapes in flight; retry shortly\n".into(),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    };
    let mut record = ScrapeRecord {
        state: state.clone(),
        started: Instant::now(),
        result: None,
        _permit: permit,
        span,
    };
    if let Some(inventory) = &state.inventory {
        inventory.record_scrape();
    }
    let (parts, _body) = req.into_parts();
    let header_bytes: usize = parts
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if parts.headers.len() > 100 || header_bytes > 64 * 1024 {
        record.finish(ScrapeResult::Rejected);
        return text_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "tero-edge: request headers too large\n".into(),
        );
    }
    let engine = state.registry.engine();
    let filtering = engine.metric_policy_count() > 0;
    let timeout = deadline(&parts.headers, state.config.prometheus.scrape_timeout());
    let deadline_at = TokioInstant::now() + timeout;
    let upstream = &state.config.upstream;

    let uri = match upstream_uri(upstream, &parts.uri) {
        Ok(u) => u,
        Err(e) => {
            record.finish(ScrapeResult::Rejected);
            return text_response(
                StatusCode::BAD_REQUEST,
                format!("tero-edge: bad request path: {e}\n"),
            );
        }
    };
    let mut headers = parts.headers.clone();
    negotiate::strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    if filtering {
        let accept = negotiate::rewrite_accept(
            parts
                .headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok()),
        );
        if let Ok(v) = HeaderValue::from_str(&accept) {
            headers.insert(header::ACCEPT, v);
        }
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static(DECODABLE_ENCODINGS),
        );
    }
    // The URI as error bodies and logs show it: its credentials masked.
    let shown = Redacted(&uri).to_string();
    let mut builder = Request::builder().method(parts.method.clone()).uri(uri);
    if let Some(h) = builder.headers_mut() {
        *h = headers;
    }
    let Ok(upstream_req) = builder.body(Empty::<Bytes>::new()) else {
        record.finish(ScrapeResult::Rejected);
        return text_response(
            StatusCode::BAD_REQUEST,
            "tero-edge: cannot build the upstream request\n".into(),
        );
    };

    let response = match tokio::time::timeout_at(deadline_at, state.client.request(upstream_req))
        .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            state.metrics.upstream_error(UpstreamError::Connect);
            record.finish(ScrapeResult::UpstreamError);
            let reason = error_chain(&e);
            tracing::warn!(upstream = %shown, error = %reason, "upstream request failed");
            return text_response(
                StatusCode::BAD_GATEWAY,
                format!("tero-edge: upstream {shown} failed: {reason}\n"),
            );
        }
        Err(_) => {
            state.metrics.upstream_error(UpstreamError::Timeout);
            record.finish(ScrapeResult::Timeout);
            tracing::warn!(upstream = %shown, timeout_secs = timeout.as_secs_f64(), "upstream timed out");
            return text_response(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "tero-edge: upstream {shown} did not answer within {:.3}s\n",
                    timeout.as_secs_f64()
                ),
            );
        }
    };

    let (mut up_parts, body) = response.into_parts();
    negotiate::strip_hop_by_hop(&mut up_parts.headers);
    let is_head = parts.method == Method::HEAD;
    let client_ae = parts
        .headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    let content_type = up_parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = Format::from_content_type(content_type);
    let unfiltered = match (filtering, up_parts.status.is_success(), format) {
        (false, _, _) => Some(Unfiltered::NoPolicies),
        (true, false, _) => {
            state.metrics.upstream_error(UpstreamError::Status);
            Some(Unfiltered::Status)
        }
        (true, true, None) => {
            tracing::info!(upstream = %shown, content_type = ?content_type, "body format cannot be filtered; relayed unfiltered");
            Some(Unfiltered::ContentType)
        }
        (true, true, Some(_)) => None,
    };
    let (Some(format), None) = (format, unfiltered) else {
        state
            .metrics
            .unfiltered(unfiltered.unwrap_or(Unfiltered::ContentType));
        // Without policies the body passes as it came; the inventory reads
        // it on the side (from its wire bytes, so identity or gzip only).
        let tee = match (&state.inventory, format) {
            (Some(inventory), Some(format))
                if !filtering && !is_head && up_parts.status.is_success() =>
            {
                let coding = up_parts
                    .headers
                    .get(header::CONTENT_ENCODING)
                    .and_then(|v| v.to_str().ok());
                WireTee::supports(coding)
                    .then(|| inventory.start(format))
                    .flatten()
                    .and_then(|scrape| WireTee::new(scrape, coding))
            }
            _ => None,
        };
        return relay_unfiltered(
            record,
            up_parts,
            body,
            deadline_at,
            is_head,
            filtering,
            client_ae.as_deref(),
            tee,
        )
        .await;
    };
    let encoding_header = up_parts
        .headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(encoding) = Encoding::from_header(encoding_header.as_deref()) else {
        let coding = encoding_header.unwrap_or_default();
        if negotiate::encoding_quality(client_ae.as_deref(), &coding) > 0.0 {
            state.metrics.unfiltered(Unfiltered::Encoding);
            return relay(record, up_parts, body, deadline_at, is_head, None);
        }
        state.metrics.upstream_error(UpstreamError::Decode);
        record.finish(ScrapeResult::UpstreamError);
        return text_response(
            StatusCode::BAD_GATEWAY,
            format!(
                "tero-edge: upstream {shown} answered with Content-Encoding {coding:?}, which neither the Edge nor the client can decode\n"
            ),
        );
    };

    let gzip_out = negotiate::accepts_gzip(client_ae.as_deref());
    let mut headers = up_parts.headers.clone();
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::CONTENT_ENCODING);
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzip_out {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    let input_cap = state.config.prometheus.max_input_bytes_per_scrape;
    let declared_len = up_parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if encoding == Encoding::Identity
        && input_cap > 0
        && declared_len.is_some_and(|l| l > input_cap)
    {
        headers.insert(TRUNCATED_HEADER, HeaderValue::from_static("input"));
    } else if wants_trailers(&parts.headers) {
        // HTTP/1.1 sends a trailer only when the client said it reads them
        // (`TE: trailers`) and the response announced it.
        headers.insert(header::TRAILER, HeaderValue::from_static(TRUNCATED_HEADER));
    }
    // A cut at the input cap must land on a line boundary, so a long line
    // is held until its end whenever a cut is possible: always, except for
    // an identity body whose length is known to fit.
    let may_cut = input_cap > 0
        && !(encoding == Encoding::Identity && declared_len.is_some_and(|l| l <= input_cap));
    let mut builder = Response::builder().status(up_parts.status);
    if let Some(h) = builder.headers_mut() {
        *h = headers;
    }
    if is_head {
        record.finish(ScrapeResult::Ok);
        return builder
            .body(empty_body())
            .unwrap_or_else(|_| text_response(StatusCode::INTERNAL_SERVER_ERROR, String::new()));
    }

    let source = match tokio::time::timeout_at(deadline_at, BodySource::new(body, encoding)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            state.metrics.upstream_error(UpstreamError::Reset);
            record.finish(ScrapeResult::UpstreamError);
            return text_response(
                StatusCode::BAD_GATEWAY,
                format!("tero-edge: upstream {shown}: {e}\n"),
            );
        }
        Err(_) => {
            state.metrics.upstream_error(UpstreamError::Timeout);
            record.finish(ScrapeResult::Timeout);
            return text_response(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "tero-edge: upstream {shown} did not send its body within {:.3}s\n",
                    timeout.as_secs_f64()
                ),
            );
        }
    };
    let mut options = FilterOptions::new(format);
    options.max_line_bytes = state.config.prometheus.max_line_bytes;
    options.max_output_bytes = state.config.prometheus.max_output_bytes_per_scrape;
    options.hold_long_lines = may_cut;
    let filter = ScrapeFilter::new(engine, state.resource.clone(), options);
    let inventory = state.inventory.as_ref().and_then(|i| i.start(format));
    let scrape = FilteredScrape {
        state: state.clone(),
        record,
        shown,
        source,
        filter,
        encoder: gzip_out
            .then(|| GzEncoder::new(Vec::with_capacity(16 * 1024), Compression::fast())),
        deadline: deadline_at,
        input_cap,
        decoded: 0,
        out_wire: 0,
        queue: VecDeque::new(),
        segments: Vec::new(),
        finished: false,
        failed: None,
        inventory,
    };
    // Reading upstream and filtering run in their own task, writing to the
    // client in the connection's: two cores share one scrape. The channel
    // is short, so backpressure still reaches upstream; a client
    // that goes away drops the receiver, which stops the producer.
    // The connection pulls frames; each pull reads and filters at most one
    // upstream chunk. (Filtering in a task of its own, handing frames over
    // a channel, measured 25 % slower: the hand-off costs more than the
    // overlap gains.)
    let body = StreamBody::new(stream::unfold(scrape, |mut s| async move {
        let frame = s.next_frame().await?;
        Some((frame, s))
    }));
    builder
        .body(body.boxed_unsync())
        .unwrap_or_else(|_| text_response(StatusCode::INTERNAL_SERVER_ERROR, String::new()))
}

/// The state of a filtered response body.
struct FilteredScrape {
    state: Arc<EdgeState>,
    record: ScrapeRecord,
    /// The upstream URI, redacted, for logs.
    shown: String,
    source: BodySource,
    filter: ScrapeFilter,
    encoder: Option<GzEncoder<Vec<u8>>>,
    deadline: TokioInstant,
    input_cap: u64,
    decoded: u64,
    out_wire: u64,
    queue: VecDeque<Frame<Bytes>>,
    segments: Vec<Bytes>,
    finished: bool,
    failed: Option<BoxError>,
    /// This scrape's inventory, when it was chosen for one: fed the
    /// decoded upstream chunks before the filter sees them.
    inventory: Option<ScrapeInventory>,
}

impl FilteredScrape {
    async fn next_frame(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        loop {
            if let Some(frame) = self.queue.pop_front() {
                if let Some(data) = frame.data_ref() {
                    self.out_wire += data.len() as u64;
                }
                return Some(Ok(frame));
            }
            if let Some(e) = self.failed.take() {
                return Some(Err(e));
            }
            if self.finished {
                return None;
            }
            self.step().await;
        }
    }

    /// Reads one chunk from upstream and queues what the filter emits.
    async fn step(&mut self) {
        let next = if self.filter.is_done() {
            Ok(Ok(None))
        } else {
            tokio::time::timeout_at(self.deadline, self.source.next_chunk()).await
        };
        match next {
            Ok(Ok(Some(chunk))) => {
                let room = if self.input_cap == 0 {
                    u64::MAX
                } else {
                    self.input_cap - self.decoded
                };
                if (chunk.len() as u64) <= room {
                    self.decoded += chunk.len() as u64;
                    if let Some(inventory) = &mut self.inventory {
                        inventory.push(&chunk);
                    }
                    self.filter.push(&chunk, &mut self.segments);
                    self.emit(false);
                } else {
                    let head = chunk.slice(..room as usize);
                    self.decoded += head.len() as u64;
                    if let Some(inventory) = &mut self.inventory {
                        inventory.push(&head);
                        inventory.cut_input();
                    }
                    self.filter.push(&head, &mut self.segments);
                    match self.filter.cut_input(&mut self.segments) {
                        Ok(()) => self.complete(),
                        Err(e) => self.abort(ScrapeResult::Aborted, e.into()),
                    }
                }
            }
            Ok(Ok(None)) => {
                if let Some(inventory) = &mut self.inventory {
                    // The filter may stop reading before upstream's end
                    // (its output cap, `# EOF`): what it left is unread.
                    if self.filter.is_done() {
                        inventory.cut_input();
                    } else {
                        inventory.finish();
                    }
                }
                self.filter.finish(&mut self.segments);
                self.complete();
            }
            Ok(Err(e)) => {
                let kind = match e {
                    SourceError::Reset(_) => UpstreamError::Reset,
                    SourceError::Decode { .. } => UpstreamError::Decode,
                };
                self.state.metrics.upstream_error(kind);
                tracing::warn!(upstream = %self.shown, error = %e, "scrape aborted mid-body");
                self.abort(ScrapeResult::Aborted, e.into());
            }
            Err(_) => {
                self.state.metrics.upstream_error(UpstreamError::Timeout);
                tracing::warn!(upstream = %self.shown, "scrape deadline passed mid-body; aborted");
                self.abort(
                    ScrapeResult::Timeout,
                    "upstream deadline passed mid-body".into(),
                );
            }
        }
    }

    /// Moves filter output into frames, compressing if negotiated.
    fn emit(&mut self, last: bool) {
        match &mut self.encoder {
            None => {
                for seg in self.segments.drain(..) {
                    if !seg.is_empty() {
                        self.queue.push_back(Frame::data(seg));
                    }
                }
            }
            Some(encoder) => {
                let mut wrote = false;
                for seg in self.segments.drain(..) {
                    wrote |= !seg.is_empty();
                    // Writing to a Vec cannot fail.
                    let _ = encoder.write_all(&seg);
                }
                if wrote || last {
                    let _ = encoder.flush();
                }
                let out = std::mem::take(encoder.get_mut());
                if !out.is_empty() {
                    self.queue.push_back(Frame::data(Bytes::from(out)));
                }
            }
        }
    }

    fn complete(&mut self) {
        self.emit(true);
        if let Some(encoder) = self.encoder.take()
            && let Ok(tail) = encoder.finish()
            && !tail.is_empty()
        {
            self.queue.push_back(Frame::data(Bytes::from(tail)));
        }
        let counters = *self.filter.counters();
        if let Some(limit) = counters.truncated {
            tracing::warn!(
                upstream = %self.shown,
                limit = limit.as_str(),
                bytes_read = self.decoded,
                bytes_written = counters.bytes_out,
                series_kept = counters.series_kept,
                series_dropped = counters.series_dropped,
                "scrape truncated at the {} byte cap",
                limit.as_str()
            );
            let mut trailers = HeaderMap::new();
            trailers.insert(
                TRUNCATED_HEADER,
                HeaderValue::from_static(match limit {
                    Limit::Input => "input",
                    Limit::Output => "output",
                }),
            );
            self.queue.push_back(Frame::trailers(trailers));
            self.record.finish(ScrapeResult::Truncated);
        } else {
            self.record.finish(ScrapeResult::Ok);
        }
        self.finished = true;
        self.account();
        // Inventoried up to where reading stopped: a capped scrape still
        // shows what was read of it.
        if let (Some(scrape), Some(inventory)) = (self.inventory.take(), &self.state.inventory) {
            inventory.absorb(scrape);
        }
    }

    fn abort(&mut self, result: ScrapeResult, error: BoxError) {
        // A broken body is not an inventory of anything.
        self.inventory = None;
        self.record.finish(result);
        self.queue.clear();
        self.finished = true;
        self.failed = Some(error);
        self.account();
    }

    fn account(&mut self) {
        let counters = self.filter.counters();
        let metrics = &self.state.metrics;
        metrics.add_filter(counters);
        let queued: u64 = self
            .queue
            .iter()
            .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
            .sum();
        metrics.add_bytes(
            self.source.wire_bytes(),
            self.decoded,
            counters.bytes_out,
            self.out_wire + queued,
        );
    }
}

/// Relays a response that is not filtered. When the Edge rewrote
/// `Accept-Encoding` (`asked_encodings`) and upstream used an encoding the
/// client did not ask for, the body is decoded on the way, so the client
/// never receives an encoding it cannot read.
#[allow(clippy::too_many_arguments)]
async fn relay_unfiltered(
    mut record: ScrapeRecord,
    mut parts: http::response::Parts,
    body: Incoming,
    deadline: TokioInstant,
    is_head: bool,
    asked_encodings: bool,
    client_accept_encoding: Option<&str>,
    tee: Option<WireTee>,
) -> Response<ResponseBody> {
    let coding = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty() && v != "identity");
    let Some(coding) = coding.filter(|c| {
        asked_encodings && negotiate::encoding_quality(client_accept_encoding, c) <= 0.0
    }) else {
        return relay(record, parts, body, deadline, is_head, tee);
    };
    let Some(encoding) = Encoding::from_header(Some(&coding)) else {
        record.finish(ScrapeResult::UpstreamError);
        return text_response(
            StatusCode::BAD_GATEWAY,
            format!(
                "tero-edge: upstream answered with Content-Encoding {coding:?}, which the client does not accept\n"
            ),
        );
    };
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if is_head {
        return head_response(record, parts);
    }
    let status_ok = parts.status.is_success();
    let source = match tokio::time::timeout_at(deadline, BodySource::new(body, encoding)).await {
        Ok(Ok(source)) => source,
        _ => {
            record.finish(ScrapeResult::UpstreamError);
            return text_response(
                StatusCode::BAD_GATEWAY,
                "tero-edge: cannot read the upstream body\n".into(),
            );
        }
    };
    /// Counts the bytes read (wire) and sent (decoded) when the body ends
    /// or is dropped, as the other relay paths do.
    struct Decoding {
        source: BodySource,
        record: ScrapeRecord,
        decoded: u64,
    }
    impl Drop for Decoding {
        fn drop(&mut self) {
            let d = self.decoded;
            let metrics = &self.record.state.metrics;
            metrics.add_bytes(self.source.wire_bytes(), d, d, d);
        }
    }
    let state = Decoding {
        source,
        record,
        decoded: 0,
    };
    let frames = stream::unfold(Some(state), move |state| async move {
        let mut state = state?;
        match tokio::time::timeout_at(deadline, state.source.next_chunk()).await {
            Ok(Ok(Some(chunk))) => {
                state.decoded += chunk.len() as u64;
                Some((Ok(Frame::data(chunk)), Some(state)))
            }
            Ok(Ok(None)) => {
                state.record.finish_relayed(status_ok);
                None
            }
            Ok(Err(e)) => Some((Err(Box::new(e) as BoxError), None)),
            Err(_) => {
                state.record.finish(ScrapeResult::Timeout);
                Some((Err("upstream deadline passed mid-body".into()), None))
            }
        }
    });
    Response::from_parts(parts, StreamBody::new(frames).boxed_unsync())
}

/// Relays upstream's response unchanged (fast path, non-2xx, unfilterable
/// formats), still bounded by the deadline and counted; `tee` inventories
/// the body on the way when it is due.
fn relay(
    record: ScrapeRecord,
    parts: http::response::Parts,
    body: Incoming,
    deadline: TokioInstant,
    is_head: bool,
    tee: Option<WireTee>,
) -> Response<ResponseBody> {
    let metrics = record.state.metrics.clone();
    if is_head {
        return head_response(record, parts);
    }
    let status_ok = parts.status.is_success();
    /// Counts what was relayed when the body ends or is dropped.
    struct Relay {
        body: Incoming,
        record: ScrapeRecord,
        bytes: u64,
        status_ok: bool,
        done: bool,
        tee: Option<WireTee>,
    }
    impl Relay {
        fn ended(&mut self) {
            self.record.finish_relayed(self.status_ok);
            if let (Some(tee), Some(inventory)) = (self.tee.take(), &self.record.state.inventory)
                && let Some(mut scrape) = tee.finish()
            {
                scrape.finish();
                inventory.absorb(scrape);
            }
        }
    }
    impl Drop for Relay {
        fn drop(&mut self) {
            let b = self.bytes;
            self.record.state.metrics.add_bytes(b, b, b, b);
        }
    }
    let state = Relay {
        body,
        record,
        bytes: 0,
        status_ok,
        done: false,
        tee,
    };
    let stream = stream::unfold(state, move |mut s| {
        let metrics = metrics.clone();
        async move {
            if s.done {
                return None;
            }
            match tokio::time::timeout_at(deadline, s.body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        s.bytes += d.len() as u64;
                        if let Some(tee) = &mut s.tee {
                            tee.push(d);
                        }
                    }
                    // hyper stops polling once Content-Length bytes are out.
                    if s.body.is_end_stream() {
                        s.ended();
                    }
                    Some((Ok(frame), s))
                }
                Ok(None) => {
                    s.ended();
                    None
                }
                Ok(Some(Err(e))) => {
                    metrics.upstream_error(UpstreamError::Reset);
                    s.done = true;
                    Some((Err(Box::new(e) as BoxError), s))
                }
                Err(_) => {
                    metrics.upstream_error(UpstreamError::Timeout);
                    s.record.finish(ScrapeResult::Timeout);
                    s.done = true;
                    Some((Err("upstream deadline passed mid-body".into()), s))
                }
            }
        }
    });
    Response::from_parts(parts, StreamBody::new(stream).boxed_unsync())
}

/// True if the client reads trailers (`TE: trailers`).
fn wants_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        #[test]
        fn any_scrape_timeout_header_gives_a_bounded_deadline(
            value in prop_oneof![
                any::<f64>().prop_map(|s| s.to_string()),
                any::<f64>().prop_map(|s| format!("{s:e}")),
                any::<u128>().prop_map(|s| s.to_string()),
                "[ -~]{0,40}",
                prop::collection::vec(any::<u8>(), 0..40)
                    .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            ],
            configured_ms in 1u64..3_600_000,
        ) {
            let configured = Duration::from_millis(configured_ms);
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(TIMEOUT_HEADER, v);
            }
            let d = deadline(&h, configured);
            prop_assert!(d <= configured);
            prop_assert!(d >= Duration::from_millis(50).min(configured));
        }

        #[test]
        fn any_te_header_is_read_without_panicking(te in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&te) {
                h.insert(header::TE, v);
            }
            let _ = wants_trailers(&h);
        }
    }

    #[test]
    fn deadline_takes_the_prometheus_header_minus_a_margin() {
        let mut h = HeaderMap::new();
        let configured = Duration::from_secs(10);
        assert_eq!(deadline(&h, configured), configured);
        h.insert(TIMEOUT_HEADER, HeaderValue::from_static("3"));
        assert_eq!(deadline(&h, configured), Duration::from_secs_f64(2.7));
        h.insert(TIMEOUT_HEADER, HeaderValue::from_static("30"));
        assert_eq!(deadline(&h, configured), configured);
        h.insert(TIMEOUT_HEADER, HeaderValue::from_static("junk"));
        assert_eq!(deadline(&h, configured), configured);
    }

    #[test]
    fn absurd_timeout_headers_fall_back_or_clamp_without_panicking() {
        let configured = Duration::from_secs(10);
        let mut h = HeaderMap::new();
        for absurd in [
            "1e20",
            "1e308",
            "18446744073709551616",
            "1.8e19",
            "inf",
            "-inf",
            "NaN",
            "-5",
            "0",
            "1e400",
            "",
        ] {
            h.insert(TIMEOUT_HEADER, HeaderValue::from_static(absurd));
            let d = deadline(&h, configured);
            assert!(d <= configured, "{absurd}: {d:?}");
            assert!(d >= Duration::from_millis(50), "{absurd}: {d:?}");
        }
        h.insert(TIMEOUT_HEADER, HeaderValue::from_static("1e-300"));
        assert_eq!(deadline(&h, configured), Duration::from_millis(50));
    }

    #[test]
    fn upstream_paths_keep_base_sub_path_and_query() {
        let base: Uri = "http://app:8080/custom?module=x".parse().unwrap();
        let u = |p: &str| {
            upstream_uri(&base, &p.parse().unwrap())
                .unwrap()
                .to_string()
        };
        assert_eq!(u("/metrics"), "http://app:8080/custom?module=x");
        assert_eq!(
            u("/metrics/sub?target=y"),
            "http://app:8080/custom/sub?target=y"
        );
        let plain: Uri = "http://app:8080/metrics".parse().unwrap();
        assert_eq!(
            upstream_uri(&plain, &"/metrics".parse().unwrap())
                .unwrap()
                .to_string(),
            "http://app:8080/metrics"
        );
    }
}

//! OTLP/HTTP and Datadog pushes: what each step's failure means to the
//! client.
//!
//! | Situation | Answer |
//! |---|---|
//! | OTLP `Content-Type` other than protobuf or JSON | 415 |
//! | `Content-Encoding` other than gzip, zstd, deflate, identity | 415 |
//! | Body over `max_body_size` / decoded over `max_decoded_bytes` | 413 naming the limit |
//! | Body not received within the deadline | 408 |
//! | Body undecodable | forwarded unchanged (counted) |
//! | Every record dropped by policies | 200 (OTLP) / 202 (Datadog), upstream not called |
//! | No destination configured for the signal | 404 naming the keys |
//! | Upstream unreachable / too slow | 502 / 504 with `Retry-After` |
//! | `intake.max_concurrent_requests` in flight | 503 with `Retry-After` |
//! | Upstream answered | its status, headers and body |

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use tero_otlp::Format;

use super::apply::{self, Applied, Payload};
use super::body::{self, BodyError};
use super::forward::{self, ForwardError, RETRY_AFTER_SECS};
use super::metrics::Outcome;
use super::route::{self, Push, signal_label};
use crate::proxy::{Deadline, EdgeState, ResponseBody, full_response, text_response};

/// Serves a push through the intake's layers.
pub async fn handle(
    state: Arc<EdgeState>,
    req: Request<Incoming>,
    push: Push,
) -> Response<ResponseBody> {
    let span = tracing::info_span!(
        "push",
        otel.kind = "server",
        url.path = req.uri().path(),
        signal = signal_label(push.signal),
    );
    let budget = state.config.intake.upstream_timeout;
    super::layered(state, req, span, busy, budget, move |state, req| {
        serve(state, req, push)
    })
    .await
}

/// The answer at the concurrency limit.
pub fn busy() -> Response<ResponseBody> {
    let mut resp = text_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "tero-edge: too many pushes in flight (intake.max_concurrent_requests); retry shortly\n"
            .into(),
    );
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECS),
    );
    resp
}

/// A push path asked with another method than POST.
pub fn wrong_method() -> Response<ResponseBody> {
    let mut resp = text_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "tero-edge: pushes are POSTed\n".into(),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    resp
}

async fn serve(
    state: Arc<EdgeState>,
    req: Request<Incoming>,
    push: Push,
) -> Response<ResponseBody> {
    let deadline = req
        .extensions()
        .get::<Deadline>()
        .copied()
        .unwrap_or_else(|| Deadline::after(state.config.intake.upstream_timeout));
    let metrics = &state.metrics.intake;
    let (parts, incoming) = req.into_parts();
    // The format is known from the path for Datadog; an OTLP push with an
    // unknown content type is refused before its format is known, and
    // counted under protobuf, OTLP's default.
    let format = match push.format(&parts.headers) {
        Ok(f) => f,
        Err(e) => {
            metrics.request(Format::OtlpProtobuf, Outcome::Refused);
            return text_response(e.status(), format!("tero-edge: {e}\n"));
        }
    };
    let refused = |status: StatusCode, message: String| {
        metrics.request(format, Outcome::Refused);
        text_response(status, format!("tero-edge: {message}\n"))
    };
    let encoding = match route::content_encoding(&parts.headers) {
        Ok(e) => e,
        Err(e) => return refused(e.status(), e.to_string()),
    };
    let Some(upstream) = forward::destination(
        &state.config.intake,
        Some(push.signal),
        parts.uri.path(),
        parts.uri.query(),
    ) else {
        return refused(
            StatusCode::NOT_FOUND,
            format!(
                "no upstream for {} pushes; configure {}",
                signal_label(push.signal),
                forward::destination_key(Some(push.signal))
            ),
        );
    };
    let mut headers = match forward::upstream_headers(&parts.headers) {
        Ok(h) => h,
        Err(e) => return refused(e.status(), e.to_string()),
    };
    let limits = &state.config.intake;
    let declared = body::declared_length(&parts.headers);
    if declared.is_some_and(|n| n > limits.max_body_size) {
        let e = BodyError::TooLarge {
            limit: limits.max_body_size,
        };
        return refused(body_status(&e), e.to_string());
    }
    // Room for the body before a byte of it is read; held until it has
    // gone upstream (see `budget`).
    let reserve = declared.unwrap_or(limits.max_body_size);
    let Ok(Some(_buffered)) = deadline.within(state.intake.buffers.reserve(reserve)).await else {
        metrics.rejected_busy();
        return busy();
    };
    let wire = match deadline
        .within(body::read(incoming, declared, limits.max_body_size))
        .await
    {
        Ok(Ok(wire)) => wire,
        Ok(Err(e)) => return refused(body_status(&e), e.to_string()),
        Err(_) => {
            return refused(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {:.3}s",
                    deadline.budget().as_secs_f64()
                ),
            );
        }
    };
    let wire_bytes = wire.len() as u64;
    let payload = Payload {
        signal: push.signal,
        format,
        wire,
        encoding,
    };
    let (body, out_encoding, decoded_bytes) = match apply::run(&state, payload).await {
        Ok(Applied::AllDropped { decoded_bytes }) => {
            metrics.request(format, Outcome::AllDropped);
            metrics.bytes(wire_bytes, decoded_bytes, 0);
            return all_dropped(format);
        }
        Ok(Applied::Forward {
            body,
            encoding: out,
            decoded_bytes,
            ..
        }) => (body, out, decoded_bytes),
        Err(e) => return refused(body_status(&e), e.to_string()),
    };
    if out_encoding != encoding {
        headers.remove(header::CONTENT_ENCODING);
    }
    let out_bytes = body.len() as u64;
    let mut request = Request::new(Full::new(body).map_err(|e| match e {}).boxed_unsync());
    *request.method_mut() = parts.method;
    *request.uri_mut() = upstream;
    *request.headers_mut() = headers;
    match forward::send(&state.intake.client, request, &deadline).await {
        Ok(response) => {
            metrics.request(format, Outcome::Forwarded);
            metrics.bytes(wire_bytes, decoded_bytes, out_bytes);
            forward::pass_back(response, &deadline)
        }
        Err(e) => {
            metrics.request(format, Outcome::UpstreamFailed);
            metrics.bytes(wire_bytes, decoded_bytes, 0);
            log_failure(&e);
            forward::failure_response(&e)
        }
    }
}

fn body_status(e: &BodyError) -> StatusCode {
    match e {
        BodyError::TooLarge { .. } | BodyError::DecodedTooLarge { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        BodyError::Read(_) => StatusCode::BAD_REQUEST,
    }
}

pub(super) fn log_failure(e: &ForwardError) {
    tracing::warn!(error = %e, "push not delivered; the client is told to retry");
}

/// Success for a push whose every record policies dropped, in the shape
/// the client's API answers: OTLP an empty `Export*ServiceResponse` in the
/// request's encoding, Datadog its 202.
fn all_dropped(format: Format) -> Response<ResponseBody> {
    match format {
        Format::OtlpProtobuf => {
            full_response(StatusCode::OK, "application/x-protobuf", Bytes::new())
        }
        Format::OtlpJson => full_response(StatusCode::OK, "application/json", "{}"),
        Format::DatadogLogs => full_response(StatusCode::ACCEPTED, "application/json", "{}"),
        Format::DatadogSeries => {
            full_response(StatusCode::ACCEPTED, "application/json", r#"{"errors":[]}"#)
        }
    }
}

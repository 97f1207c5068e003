//! OTLP/gRPC: the collector services' `Export` on the Edge's port (h2c),
//! forwarded upstream as OTLP/HTTP.
//!
//! The request is one length-prefixed message (compressed when its flag
//! says so, with `grpc-encoding`); its bytes are filtered as OTLP protobuf
//! and sent as `POST {destination}/v1/{signal}` with
//! `Content-Type: application/x-protobuf` (and the message's compression as
//! `Content-Encoding`), carrying the caller's metadata as headers. A 2xx
//! answer's protobuf body becomes the response message (partial success
//! included) with `grpc-status: 0`; an HTTP failure becomes the gRPC status
//! an exporter acts on:
//!
//! | Upstream | gRPC status |
//! |---|---|
//! | unreachable, timeout, 429, 502, 503, 504 | `UNAVAILABLE` (14): exporters retry |
//! | 400 | `INVALID_ARGUMENT` (3) |
//! | 401 / 403 | `UNAUTHENTICATED` (16) / `PERMISSION_DENIED` (7) |
//! | 413 | `RESOURCE_EXHAUSTED` (8) |
//! | other | `INTERNAL` (13) |
//!
//! The Edge's own refusals: unknown method or `grpc-encoding` →
//! `UNIMPLEMENTED` (12); over `max_body_size` or `max_decoded_bytes` →
//! `RESOURCE_EXHAUSTED`; a malformed frame → `INTERNAL`; no permit →
//! `UNAVAILABLE`. When policies drop every record the answer is an empty
//! `Export*ServiceResponse` with status 0, and upstream is not called.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use futures_util::stream;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty, Full, LengthLimitError, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use tero_otlp::{Format, Signal};

use super::apply::{self, Applied, Payload};
use super::body::{self, BodyError};
use super::forward;
use super::metrics::Outcome;
use super::route::{otlp_http_path, signal_label};
use crate::proxy::{Deadline, EdgeState, Encoding, ResponseBody};

/// gRPC status codes the Edge answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidArgument = 3,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

/// The largest upstream answer taken as a response message: gRPC's
/// default maximum message size.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// What of a failed upstream's body goes into `grpc-message`.
const MAX_MESSAGE_BYTES: usize = 512;
/// The compressions the Edge reads, as `grpc-accept-encoding` lists them.
const ACCEPTED: &str = "gzip,zstd,deflate,identity";

/// Serves an Export call (`signal`), or refuses an unknown method.
pub async fn handle(
    state: Arc<EdgeState>,
    req: Request<Incoming>,
    signal: Option<Signal>,
) -> Response<ResponseBody> {
    let Some(signal) = signal else {
        return status(
            Code::Unimplemented,
            &format!(
                "tero-edge serves only the OTLP collector Export methods, not {}",
                req.uri().path()
            ),
        );
    };
    let span = tracing::info_span!(
        "grpc_export",
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = req.uri().path(),
        signal = signal_label(signal),
    );
    let configured = state.config.intake.upstream_timeout;
    let budget = grpc_timeout(req.headers()).map_or(configured, |t| t.min(configured));
    super::layered(state, req, span, busy, budget, move |state, req| {
        serve(state, req, signal)
    })
    .await
}

fn busy() -> Response<ResponseBody> {
    status(
        Code::Unavailable,
        "tero-edge: too many pushes in flight (intake.max_concurrent_requests); retry shortly",
    )
}

async fn serve(
    state: Arc<EdgeState>,
    req: Request<Incoming>,
    signal: Signal,
) -> Response<ResponseBody> {
    let deadline = req
        .extensions()
        .get::<Deadline>()
        .copied()
        .unwrap_or_else(|| Deadline::after(state.config.intake.upstream_timeout));
    let metrics = &state.metrics.intake;
    let format = Format::OtlpProtobuf;
    let refused = |code: Code, message: &str| {
        metrics.request(format, Outcome::Refused);
        status(code, &format!("tero-edge: {message}"))
    };
    let (parts, incoming) = req.into_parts();
    let Some(compression) = message_encoding(&parts.headers) else {
        let mut resp = refused(
            Code::Unimplemented,
            "unsupported grpc-encoding; send gzip, zstd, deflate or identity",
        );
        resp.headers_mut()
            .insert("grpc-accept-encoding", HeaderValue::from_static(ACCEPTED));
        return resp;
    };
    let Some(upstream) = forward::destination(
        &state.config.intake,
        Some(signal),
        otlp_http_path(signal),
        None,
    ) else {
        return refused(
            Code::Unimplemented,
            &format!(
                "no upstream for {} pushes; configure {}",
                signal_label(signal),
                forward::destination_key(Some(signal))
            ),
        );
    };
    let mut headers = match forward::upstream_headers(&parts.headers) {
        Ok(h) => http_headers(h),
        Err(e) => return refused(Code::ResourceExhausted, &e.to_string()),
    };
    let limits = &state.config.intake;
    // Room for the body before a byte of it is read; held until it has
    // gone upstream (see `budget`).
    let reserve = body::declared_length(&parts.headers)
        .unwrap_or(limits.max_body_size)
        .min(limits.max_body_size);
    let Ok(Some(_buffered)) = deadline.within(state.intake.buffers.reserve(reserve)).await else {
        metrics.rejected_busy();
        return busy();
    };
    let wire = match deadline
        .within(body::read(incoming, None, limits.max_body_size))
        .await
    {
        Ok(Ok(wire)) => wire,
        Ok(Err(e @ BodyError::TooLarge { .. })) => {
            return refused(Code::ResourceExhausted, &e.to_string());
        }
        Ok(Err(e)) => return refused(Code::Internal, &e.to_string()),
        Err(_) => return refused(Code::Unavailable, "the request did not arrive in time"),
    };
    let wire_bytes = wire.len() as u64;
    let (message, compressed) = match unframe(&wire) {
        Ok(m) => m,
        Err(e) => return refused(Code::Internal, &e),
    };
    let encoding = if compressed {
        if compression == Encoding::Identity {
            return refused(
                Code::Internal,
                "the message is flagged compressed but the call names no grpc-encoding",
            );
        }
        compression
    } else {
        Encoding::Identity
    };
    let payload = Payload {
        signal,
        format,
        wire: message,
        encoding,
    };
    let (body, out_encoding, decoded_bytes) = match apply::run(&state, payload).await {
        Ok(Applied::AllDropped { decoded_bytes }) => {
            metrics.request(format, Outcome::AllDropped);
            metrics.bytes(wire_bytes, decoded_bytes, 0);
            return ok(Bytes::new());
        }
        Ok(Applied::Forward {
            body,
            encoding,
            decoded_bytes,
            ..
        }) => (body, encoding, decoded_bytes),
        Err(e) => return refused(Code::ResourceExhausted, &e.to_string()),
    };
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    if let Some(token) = encoding_token(out_encoding) {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(token));
    }
    let out_bytes = body.len() as u64;
    let mut request = Request::new(Full::new(body).map_err(|e| match e {}).boxed_unsync());
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = upstream;
    *request.headers_mut() = headers;
    let response = match forward::send(&state.intake.client, request, &deadline).await {
        Ok(r) => r,
        Err(e) => {
            metrics.request(format, Outcome::UpstreamFailed);
            metrics.bytes(wire_bytes, decoded_bytes, 0);
            super::http::log_failure(&e);
            return status(Code::Unavailable, &format!("tero-edge: {e}"));
        }
    };
    let http_status = response.status();
    let protobuf = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.trim_start().starts_with("application/x-protobuf"));
    let limit = if http_status.is_success() {
        MAX_RESPONSE_BYTES
    } else {
        MAX_MESSAGE_BYTES * 4
    };
    let answer = deadline
        .within(Limited::new(response.into_body(), limit).collect())
        .await;
    let answer = match answer {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err("its answer was too large".to_owned()),
        Ok(Err(e)) => Err(format!("its answer broke off: {e}")),
        Err(_) => Err("its answer did not arrive in time".to_owned()),
    };
    metrics.request(format, Outcome::Forwarded);
    metrics.bytes(wire_bytes, decoded_bytes, out_bytes);
    match answer {
        // The partial-success message (or an empty one) as upstream sent it;
        // a body in another encoding carries nothing gRPC can return.
        Ok(body) if http_status.is_success() => ok(if protobuf { body } else { Bytes::new() }),
        Ok(body) => status(
            code_for(http_status),
            &format!(
                "upstream answered {}: {}",
                http_status.as_u16(),
                excerpt(&body)
            ),
        ),
        // The push reached upstream, which accepted it: its answer is what
        // is missing, so the status stays success.
        Err(_) if http_status.is_success() => ok(Bytes::new()),
        Err(e) => status(
            code_for(http_status),
            &format!("upstream answered {} and {e}", http_status.as_u16()),
        ),
    }
}

/// The gRPC status for an upstream HTTP status.
pub fn code_for(status: StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        413 => Code::ResourceExhausted,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// The caller's metadata as OTLP/HTTP headers: gRPC's own (`grpc-*`, the
/// gRPC content type, `te`) go; the rest (authorization, API keys) stay.
fn http_headers(mut headers: HeaderMap) -> HeaderMap {
    let grpc: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("grpc-"))
        .cloned()
        .collect();
    for name in grpc {
        headers.remove(name);
    }
    for name in [header::CONTENT_TYPE, header::TE, header::CONTENT_ENCODING] {
        headers.remove(name);
    }
    headers
}

/// The call's `grpc-encoding`; `None` for one the Edge cannot read.
fn message_encoding(headers: &HeaderMap) -> Option<Encoding> {
    match headers.get("grpc-encoding") {
        None => Some(Encoding::Identity),
        Some(v) => {
            let v = v.to_str().ok()?.trim();
            Encoding::from_header(Some(v))
        }
    }
}

fn encoding_token(encoding: Encoding) -> Option<&'static str> {
    match encoding {
        Encoding::Identity => None,
        Encoding::Gzip => Some("gzip"),
        Encoding::Deflate => Some("deflate"),
        Encoding::Zstd => Some("zstd"),
    }
}

/// The one message of a unary call, and whether it is compressed.
pub fn unframe(body: &Bytes) -> Result<(Bytes, bool), String> {
    if body.len() < 5 {
        return Err(format!(
            "the request holds {} bytes, less than a gRPC message prefix",
            body.len()
        ));
    }
    let compressed = match body[0] {
        0 => false,
        1 => true,
        flag => return Err(format!("invalid gRPC compressed flag {flag}")),
    };
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let rest = body.len() - 5;
    if len != rest {
        return Err(format!(
            "the message prefix says {len} bytes but {rest} follow (Export takes exactly one message)"
        ));
    }
    Ok((body.slice(5..), compressed))
}

/// `message` with its gRPC prefix, uncompressed.
pub fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    out.put_slice(message);
    out.freeze()
}

/// `grpc-timeout` (`<digits><unit>`), when the caller set one.
pub fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?.trim();
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn grpc_head(resp: &mut Response<ResponseBody>) {
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
}

/// A successful call: one message, then `grpc-status: 0`.
fn ok(message: Bytes) -> Response<ResponseBody> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = [
        Ok::<_, crate::proxy::BoxError>(Frame::data(frame(&message))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut resp = Response::new(StreamBody::new(stream::iter(frames)).boxed_unsync());
    grpc_head(&mut resp);
    resp
}

/// A failed call: a trailers-only response carrying the status.
pub fn status(code: Code, message: &str) -> Response<ResponseBody> {
    let mut resp = Response::new(Empty::new().map_err(|e| match e {}).boxed_unsync());
    grpc_head(&mut resp);
    let h = resp.headers_mut();
    h.insert("grpc-status", HeaderValue::from(code as u16));
    if let Ok(v) = HeaderValue::from_str(&percent_encode(message)) {
        h.insert("grpc-message", v);
    }
    resp
}

/// `grpc-message` is percent-encoded UTF-8.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The start of an upstream error body, as text.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_MESSAGE_BYTES)]);
    let text = text.trim();
    if text.is_empty() {
        "(no body)".into()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_are_named() {
        let framed = frame(b"hello");
        assert_eq!(&framed[..5], &[0, 0, 0, 0, 5]);
        assert_eq!(
            unframe(&framed).unwrap(),
            (Bytes::from_static(b"hello"), false)
        );
        let mut compressed = framed.to_vec();
        compressed[0] = 1;
        assert!(unframe(&Bytes::from(compressed)).unwrap().1);
        for bad in [
            &b"\x00\x00\x00"[..],
            b"\x02\x00\x00\x00\x00",
            b"\x00\x00\x00\x00\x09abc",
            b"\x00\x00\x00\x00\x01ab",
        ] {
            assert!(unframe(&Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn http_failures_map_to_the_codes_exporters_act_on() {
        let cases = [
            (429, Code::Unavailable),
            (502, Code::Unavailable),
            (503, Code::Unavailable),
            (504, Code::Unavailable),
            (400, Code::InvalidArgument),
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (413, Code::ResourceExhausted),
            (404, Code::Internal),
            (500, Code::Internal),
        ];
        for (http, code) in cases {
            assert_eq!(
                code_for(StatusCode::from_u16(http).unwrap()),
                code,
                "{http}"
            );
        }
    }

    #[test]
    fn timeouts_and_messages_follow_the_grpc_spec() {
        let mut h = HeaderMap::new();
        for (v, d) in [
            ("5S", Some(Duration::from_secs(5))),
            ("250m", Some(Duration::from_millis(250))),
            ("1H", Some(Duration::from_secs(3600))),
            ("12", None),
            ("S", None),
            ("1234567890S", None),
            ("5x", None),
        ] {
            h.insert("grpc-timeout", HeaderValue::from_static(v));
            assert_eq!(grpc_timeout(&h), d, "{v}");
        }
        assert_eq!(percent_encode("50% off\nnow é"), "50%25 off%0Anow %C3%A9");
    }

    #[test]
    fn grpc_metadata_goes_and_credentials_stay() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer t"),
            ("x-api-key", "k"),
            ("grpc-timeout", "5S"),
            ("grpc-encoding", "gzip"),
            ("content-type", "application/grpc"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        let out = http_headers(h);
        let mut names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["authorization", "x-api-key"]);
    }
}

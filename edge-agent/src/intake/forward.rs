//! Sending a push (or a relayed request) upstream, and bringing the
//! answer back.
//!
//! Where it goes: the signal's own URL when one is configured (`logs_url`,
//! `metrics_url`, `traces_url`), else `upstream_url` with the request's
//! path. What goes: the client's headers untouched (Authorization,
//! `DD-API-KEY`, …) except those that never cross a proxy and the length,
//! which the body sets. What comes back: upstream's status, headers (minus
//! hop-by-hop ones) and body, streamed under the request's deadline.
//!
//! The Edge never retries: a push that could not be delivered answers 502
//! or 504 with `Retry-After`, and the client's exporter retries. A retry
//! by the Edge could deliver a batch the client then sends again.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tero_otlp::Signal;

use crate::config::{IntakeConfig, PushTarget, Redacted};
use crate::proxy::{BoxError, Deadline, ResponseBody, strip_hop_by_hop};

/// A request body on its way upstream.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;
/// The intake's client: http:// and https:// (the public web roots), one
/// pool for every destination.
pub type PushClient = Client<HttpsConnector<HttpConnector>, UpstreamBody>;

/// Bounds of a client's request head: every header is copied upstream.
const MAX_HEADERS: usize = 100;
const MAX_HEADER_BYTES: usize = 64 * 1024;

pub fn client(connect_timeout: Duration) -> PushClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(crate::providers::client_config(None))
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(32)
        .build(connector)
}

/// Where a request goes: its signal's URL, else `upstream_url` with the
/// request's path; `None` when neither is configured.
pub fn destination(
    config: &IntakeConfig,
    signal: Option<Signal>,
    path: &str,
    query: Option<&str>,
) -> Option<Uri> {
    let own = signal.and_then(|s| match s {
        Signal::Log => config.logs.as_ref(),
        Signal::Metric => config.metrics.as_ref(),
        Signal::Trace => config.traces.as_ref(),
    });
    let target = own.or(config.upstream.as_ref())?;
    let uri = target.uri();
    let base_path = match target {
        PushTarget::Exact(u) => u.path().to_owned(),
        PushTarget::Base(u) => format!("{}{path}", u.path().trim_end_matches('/')),
    };
    // The configured query (which may carry a key) stays; the client's
    // follows it.
    let query = match (uri.query(), query.filter(|q| !q.is_empty())) {
        (Some(a), Some(b)) => Some(format!("{a}&{b}")),
        (Some(a), None) => Some(a.to_owned()),
        (None, Some(b)) => Some(b.to_owned()),
        (None, None) => None,
    };
    let path_and_query = match query {
        Some(q) => format!("{base_path}?{q}"),
        None => base_path,
    };
    Uri::builder()
        .scheme(uri.scheme_str().unwrap_or("http"))
        .authority(uri.authority()?.as_str())
        .path_and_query(path_and_query)
        .build()
        .ok()
}

/// The key a missing destination is configured with, for messages.
pub fn destination_key(signal: Option<Signal>) -> &'static str {
    match signal {
        Some(Signal::Log) => "upstream_url or logs_url",
        Some(Signal::Metric) => "upstream_url or metrics_url",
        Some(Signal::Trace) => "upstream_url or traces_url",
        None => "upstream_url",
    }
}

/// Why a request could not be sent or answered.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("request headers too large (at most {MAX_HEADERS} headers, {MAX_HEADER_BYTES} bytes)")]
    HeadersTooLarge,
    #[error("upstream {upstream} cannot be reached: {reason}")]
    Unreachable { upstream: String, reason: String },
    #[error("upstream {upstream} did not answer within {:.3}s", budget.as_secs_f64())]
    Timeout { upstream: String, budget: Duration },
}

impl ForwardError {
    pub fn status(&self) -> StatusCode {
        match self {
            ForwardError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ForwardError::Unreachable { .. } => StatusCode::BAD_GATEWAY,
            ForwardError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// True when a retry may succeed: answered with `Retry-After`.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ForwardError::Unreachable { .. } | ForwardError::Timeout { .. }
        )
    }
}

/// The client's headers as they go upstream: hop-by-hop ones, `Host`,
/// `Expect` and the length removed (the client sets `Host`, the body the
/// length).
pub fn upstream_headers(client: &HeaderMap) -> Result<HeaderMap, ForwardError> {
    let bytes: usize = client.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if client.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Err(ForwardError::HeadersTooLarge);
    }
    let mut headers = client.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    // The Edge answered the client's `Expect: 100-continue` itself; the
    // body goes upstream without waiting.
    headers.remove(header::EXPECT);
    Ok(headers)
}

/// Sends `request` and waits for upstream's head under `deadline`.
pub async fn send(
    client: &PushClient,
    request: Request<UpstreamBody>,
    deadline: &Deadline,
) -> Result<Response<Incoming>, ForwardError> {
    let upstream = Redacted(request.uri()).to_string();
    match deadline.within(client.request(request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(ForwardError::Unreachable {
            upstream,
            reason: error_chain(&e),
        }),
        Err(_) => Err(ForwardError::Timeout {
            upstream,
            budget: deadline.budget(),
        }),
    }
}

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

/// Upstream's answer as the client gets it: status, headers (minus
/// hop-by-hop ones) and body, the body cut off if `deadline` passes.
pub fn pass_back(response: Response<Incoming>, deadline: &Deadline) -> Response<ResponseBody> {
    let (mut head, body) = response.into_parts();
    strip_hop_by_hop(&mut head.headers);
    // The Edge's answer, in the Edge's HTTP version.
    head.version = http::Version::HTTP_11;
    Response::from_parts(head, DeadlineBody::new(body, deadline).boxed_unsync())
}

/// The answer to a push the Edge could not deliver: retryable ones carry
/// `Retry-After`, which OTLP exporters honour.
pub fn failure_response(error: &ForwardError) -> Response<ResponseBody> {
    let mut resp = crate::proxy::text_response(error.status(), format!("tero-edge: {error}\n"));
    if error.retryable() {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    resp
}

/// What a client is told to wait before retrying a push the Edge could
/// not deliver or had no room for.
pub const RETRY_AFTER_SECS: &str = "1";

/// An upstream body that fails once the request's deadline passes: a
/// stalled upstream cannot hold a client (and its permit) forever.
pub struct DeadlineBody {
    inner: Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl DeadlineBody {
    pub fn new(inner: Incoming, deadline: &Deadline) -> Self {
        DeadlineBody {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(deadline.at())),
        }
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err("upstream deadline passed mid-body".into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(doc: serde_json::Value) -> IntakeConfig {
        crate::config::Config::from_value(doc, &|_| None)
            .unwrap()
            .0
            .intake
    }

    #[test]
    fn pushes_go_to_their_signal_url_else_upstream_with_the_path() {
        let c = config(serde_json::json!({
            "upstream_url": "https://intake.example/base/?k=1",
            "logs_url": "http://logs:4318/custom/logs",
            "traces_url": "http://traces:4318",
        }));
        let dest = |signal, path, query| {
            destination(&c, signal, path, query)
                .map(|u| u.to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            dest(Some(Signal::Log), "/v1/logs", Some("x=2")),
            "http://logs:4318/custom/logs?x=2"
        );
        assert_eq!(
            dest(Some(Signal::Trace), "/v1/traces", None),
            "http://traces:4318/v1/traces"
        );
        assert_eq!(
            dest(Some(Signal::Metric), "/api/v2/series", Some("a=b")),
            "https://intake.example/base/api/v2/series?k=1&a=b"
        );
        assert_eq!(
            dest(None, "/api/v1/validate", None),
            "https://intake.example/base/api/v1/validate?k=1"
        );
    }

    #[test]
    fn metrics_url_alone_is_the_scrape_url_and_no_push_destination() {
        let c = config(serde_json::json!({"metrics_url": "http://app:8080/metrics"}));
        assert_eq!(
            destination(&c, Some(Signal::Metric), "/v1/metrics", None),
            None
        );
        assert_eq!(destination(&c, None, "/other", None), None);
        let c = config(serde_json::json!({"upstream_url": "http://app:8080",
            "metrics_url": "https://api.example/api/v2/series"}));
        assert_eq!(
            destination(&c, Some(Signal::Metric), "/api/v2/series", None)
                .unwrap()
                .to_string(),
            "https://api.example/api/v2/series"
        );
    }

    #[test]
    fn headers_pass_except_hop_by_hop_host_and_length() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer t"),
            ("dd-api-key", "k"),
            ("content-encoding", "gzip"),
            ("content-length", "10"),
            ("host", "edge:9090"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("te", "trailers"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        let up = upstream_headers(&h).unwrap();
        let names: Vec<&str> = up.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["authorization", "dd-api-key", "content-encoding"]);
    }
}

//! The request the Edge sends upstream for a scrape, built from the
//! client's request alone.
//!
//! Pure functions: no I/O and no shared state, so every rule a client's
//! path and headers go through (the sub-path and query, hop-by-hop headers,
//! the rewritten `Accept`, the scrape-timeout header) is tested here on
//! plain values. Sending it, and what a failure means, is the handler's.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::Empty;

use super::negotiate::{self, DECODABLE_ENCODINGS};
use crate::config::Redacted;

/// Prometheus' scrape timeout, in seconds, on every scrape it sends.
pub const TIMEOUT_HEADER: &str = "x-prometheus-scrape-timeout-seconds";

/// Bounds of a client's request head, beyond hyper's own buffer: a proxy
/// copies every header it forwards.
const MAX_HEADERS: usize = 100;
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The time a scrape may take upstream (R-9.1): Prometheus' timeout minus
/// a margin, never above the configured one. The header is the client's to
/// write: anything that is not a positive finite number of seconds is
/// ignored, and a huge one is clamped before it becomes a `Duration`
/// (converting `1e20` seconds would panic).
pub fn budget(headers: &HeaderMap, configured: Duration) -> Duration {
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

/// Why a client's request cannot be sent upstream; each is the client's
/// to fix, so each answers 4xx.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("request headers too large")]
    HeadersTooLarge,
    #[error("bad request path: {0}")]
    Path(http::Error),
    #[error("cannot build the upstream request")]
    Request,
}

impl BuildError {
    pub fn status(&self) -> StatusCode {
        match self {
            BuildError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            BuildError::Path(_) | BuildError::Request => StatusCode::BAD_REQUEST,
        }
    }
}

/// A request ready for the upstream client, and its URI as error bodies
/// and logs show it (credentials masked).
pub struct UpstreamRequest {
    pub request: Request<Empty<Bytes>>,
    pub shown: String,
}

impl UpstreamRequest {
    /// The upstream request for the client's `request` to `base`. With
    /// `filtering`, upstream is asked only for formats the filter parses
    /// and encodings the Edge decodes; without, the client's headers pass
    /// as they are, minus those that never cross a proxy.
    pub fn build(
        base: &Uri,
        request: &http::request::Parts,
        filtering: bool,
    ) -> Result<UpstreamRequest, BuildError> {
        let header_bytes: usize = request
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        if request.headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
            return Err(BuildError::HeadersTooLarge);
        }
        let uri = upstream_uri(base, &request.uri).map_err(BuildError::Path)?;
        let mut headers = request.headers.clone();
        negotiate::strip_hop_by_hop(&mut headers);
        headers.remove(header::HOST);
        headers.remove(header::CONTENT_LENGTH);
        if filtering {
            let accept = negotiate::rewrite_accept(
                request
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
        let shown = Redacted(&uri).to_string();
        let mut builder = Request::builder().method(request.method.clone()).uri(uri);
        if let Some(h) = builder.headers_mut() {
            *h = headers;
        }
        let request = builder
            .body(Empty::<Bytes>::new())
            .map_err(|_| BuildError::Request)?;
        Ok(UpstreamRequest { request, shown })
    }
}

/// The upstream URI for a request path under `/metrics` (R-11.4): the
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
            let d = budget(&h, configured);
            prop_assert!(d <= configured);
            prop_assert!(d >= Duration::from_millis(50).min(configured));
        }
    }

    #[test]
    fn deadline_takes_the_prometheus_header_minus_a_margin() {
        let mut h = HeaderMap::new();
        let configured = Duration::from_secs(10);
        assert_eq!(budget(&h, configured), configured);
        h.insert(TIMEOUT_HEADER, HeaderValue::from_static("3"));
        assert_eq!(budget(&h, configured), Duration::from_secs_f64(2.7));
        h.insert(TIMEOUT_HEADER, HeaderValue::from_static("30"));
        assert_eq!(budget(&h, configured), configured);
        h.insert(TIMEOUT_HEADER, HeaderValue::from_static("junk"));
        assert_eq!(budget(&h, configured), configured);
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
            let d = budget(&h, configured);
            assert!(d <= configured, "{absurd}: {d:?}");
            assert!(d >= Duration::from_millis(50), "{absurd}: {d:?}");
        }
        h.insert(TIMEOUT_HEADER, HeaderValue::from_static("1e-300"));
        assert_eq!(budget(&h, configured), Duration::from_millis(50));
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

    fn client_request(headers: &[(&str, &str)]) -> http::request::Parts {
        let mut req = Request::get("/metrics/sub?x=1");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_filtering_request_asks_only_for_what_the_filter_reads() {
        let base: Uri = "http://user:secret@app:8080/metrics".parse().unwrap();
        let parts = client_request(&[
            (
                "accept",
                "application/vnd.google.protobuf, text/plain;version=0.0.4",
            ),
            ("accept-encoding", "br"),
            ("host", "edge:9090"),
            ("connection", "x-private"),
            ("x-private", "1"),
            ("x-kept", "yes"),
        ]);
        let up = UpstreamRequest::build(&base, &parts, true).unwrap();
        let h = up.request.headers();
        assert_eq!(h["accept"], "text/plain;version=0.0.4");
        assert_eq!(h["accept-encoding"], DECODABLE_ENCODINGS);
        assert!(h.get("host").is_none() && h.get("x-private").is_none());
        assert!(h.get("connection").is_none());
        assert_eq!(h["x-kept"], "yes");
        assert_eq!(up.request.uri().path(), "/metrics/sub");
        assert!(!up.shown.contains("secret"), "{}", up.shown);

        let up = UpstreamRequest::build(&base, &parts, false).unwrap();
        assert_eq!(up.request.headers()["accept-encoding"], "br");
    }

    #[test]
    fn an_oversized_request_head_is_refused_before_anything_is_sent() {
        let base: Uri = "http://app:8080/metrics".parse().unwrap();
        let many: Vec<(String, String)> = (0..=MAX_HEADERS)
            .map(|i| (format!("x-h{i}"), "v".to_owned()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (&**k, &**v)).collect();
        let err = UpstreamRequest::build(&base, &client_request(&many), true)
            .err()
            .unwrap();
        assert_eq!(err.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
}

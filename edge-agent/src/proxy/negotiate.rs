//! Header rules of the proxy: which formats and encodings to ask upstream
//! for, what the client accepts, and which headers never cross a proxy.

use http::HeaderMap;
#[cfg(test)]
use http::header::HeaderValue;
use http::header::{self, HeaderName};

/// The encodings the Edge can decode, in the order it asks for them.
pub const DECODABLE_ENCODINGS: &str = "gzip, zstd, deflate";

/// Rewrites the client's `Accept` so upstream can only answer in a format
/// the filter parses (R-5.1): text and OpenMetrics entries stay with their
/// order, `q` and `escaping` parameters; protobuf and other types go;
/// `*/*` becomes an explicit low-priority text 0.0.4.
pub fn rewrite_accept(client: Option<&str>) -> String {
    const TEXT_FALLBACK: &str = "text/plain;version=0.0.4;q=0.1";
    let Some(client) = client.filter(|c| !c.trim().is_empty()) else {
        return "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5".into();
    };
    let mut kept: Vec<String> = Vec::new();
    for entry in client.split(',') {
        let entry = entry.trim();
        let media = entry.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("text/plain")
            || media.eq_ignore_ascii_case("application/openmetrics-text")
        {
            kept.push(entry.to_owned());
        } else if media == "*/*" || media.eq_ignore_ascii_case("text/*") {
            kept.push(TEXT_FALLBACK.to_owned());
        }
    }
    if kept.is_empty() {
        kept.push(TEXT_FALLBACK.to_owned());
    }
    kept.dedup();
    kept.join(",")
}

/// The `q` value of `coding` in an `Accept-Encoding` header (0 if absent;
/// `*` applies to codings not listed).
pub fn encoding_quality(accept_encoding: Option<&str>, coding: &str) -> f32 {
    let Some(ae) = accept_encoding else {
        return if coding == "identity" { 1.0 } else { 0.0 };
    };
    let mut star = None;
    for entry in ae.split(',') {
        let mut parts = entry.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok().filter(|q| q.is_finite()))
            .map_or(1.0, |q| q.clamp(0.0, 1.0));
        let same = name.eq_ignore_ascii_case(coding)
            || (coding == "gzip" && name.eq_ignore_ascii_case("x-gzip"));
        if same {
            return q;
        }
        if name == "*" {
            star = Some(q);
        }
    }
    match star {
        Some(q) => q,
        None if coding == "identity" => 1.0,
        None => 0.0,
    }
}

/// True if the client takes a gzip response.
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    encoding_quality(accept_encoding, "gzip") > 0.0
}

/// Removes hop-by-hop headers (R-11.1), including those named in
/// `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Header text as a client may write it: media types, codings,
    /// parameters, `q` values (valid, huge, negative, not numbers) and
    /// separators in any order, plus arbitrary visible ASCII.
    fn header_text() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("text/plain".to_owned()),
            Just("application/openmetrics-text".to_owned()),
            Just("application/vnd.google.protobuf".to_owned()),
            Just("*/*".to_owned()),
            Just("text/*".to_owned()),
            Just("gzip".to_owned()),
            Just("x-gzip".to_owned()),
            Just("identity".to_owned()),
            Just("*".to_owned()),
            Just(";".to_owned()),
            Just(",".to_owned()),
            Just(" ".to_owned()),
            Just("q=".to_owned()),
            Just("version=1.0.0".to_owned()),
            any::<f64>().prop_map(|q| q.to_string()),
            Just("1e400".to_owned()),
            Just("NaN".to_owned()),
            "[ -~]{0,12}",
        ];
        prop::collection::vec(token, 0..24).prop_map(|t| t.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn accept_rewriting_never_panics_and_yields_a_header(accept in header_text()) {
            let rewritten = rewrite_accept(Some(&accept));
            prop_assert!(HeaderValue::from_str(&rewritten).is_ok(), "{rewritten:?}");
            for entry in rewritten.split(',') {
                let media = entry.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
                prop_assert!(
                    media == "text/plain" || media == "application/openmetrics-text",
                    "{rewritten:?}"
                );
            }
        }

        #[test]
        fn accept_encoding_parsing_never_panics(ae in header_text(), coding in header_text()) {
            let q = encoding_quality(Some(&ae), &coding);
            prop_assert!((0.0..=1.0).contains(&q), "{q}");
            let _ = accepts_gzip(Some(&ae));
            let _ = crate::proxy::Encoding::from_header(Some(&ae));
        }

        #[test]
        fn hop_by_hop_stripping_never_panics(connection in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&connection) {
                h.insert(header::CONNECTION, v);
            }
            strip_hop_by_hop(&mut h);
            prop_assert!(!h.contains_key(header::CONNECTION));
        }
    }

    #[test]
    fn protobuf_is_never_requested() {
        let prometheus = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,*/*;q=0.1";
        assert_eq!(
            rewrite_accept(Some(prometheus)),
            "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.1"
        );
        assert_eq!(
            rewrite_accept(Some("application/vnd.google.protobuf")),
            "text/plain;version=0.0.4;q=0.1"
        );
        assert!(rewrite_accept(None).contains("text/plain"));
    }

    #[test]
    fn encoding_qualities() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, gzip;q=0.5")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("gzip;q=0, *")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
        assert!(accepts_gzip(Some("x-gzip")));
        assert_eq!(encoding_quality(Some("gzip"), "identity"), 1.0);
        assert_eq!(encoding_quality(Some("br;q=0.3"), "br"), 0.3);
        // Out-of-range or non-numeric weights do not leak out.
        assert_eq!(encoding_quality(Some("gzip;q=NaN"), "gzip"), 1.0);
        assert_eq!(encoding_quality(Some("gzip;q=-3"), "gzip"), 0.0);
        assert_eq!(encoding_quality(Some("gzip;q=1e30"), "gzip"), 1.0);
    }

    #[test]
    fn hop_by_hop_headers_go_including_named_ones() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("content-type", "text/plain".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
    }
}

//! Which push a request is, from its method, path and headers alone.
//!
//! Pure functions on plain values: every rule (the OTLP paths and content
//! types, the Datadog paths, the gRPC methods, the content encodings) is
//! tested here without a server.

use http::header::{self, HeaderMap};
use http::{Method, StatusCode};
use tero_otlp::{Format, Signal};

use crate::proxy::Encoding;

/// The gRPC Export method of each signal's OTLP collector service.
const GRPC_LOGS: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const GRPC_TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const GRPC_METRICS: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// What the intake does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// An OTLP/HTTP or Datadog push: filtered, then forwarded.
    Push(Push),
    /// An OTLP/gRPC Export call for `signal`.
    Grpc(Signal),
    /// A gRPC call to a method the Edge does not serve: `UNIMPLEMENTED`.
    GrpcUnknown,
    /// A push path asked with another method than POST: 405.
    WrongMethod,
    /// Anything else: relayed unchanged to `upstream_url`.
    Relay,
}

/// A push the intake filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Push {
    pub signal: Signal,
    /// What the path alone says: the content type decides between OTLP
    /// protobuf and JSON ([`Push::format`]).
    pub api: Api,
}

/// The API a push path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    OtlpHttp,
    DatadogLogs,
    DatadogSeries,
}

impl Route {
    pub fn of(method: &Method, path: &str, headers: &HeaderMap) -> Route {
        if is_grpc(headers) {
            return match path {
                GRPC_LOGS => Route::Grpc(Signal::Log),
                GRPC_TRACES => Route::Grpc(Signal::Trace),
                GRPC_METRICS => Route::Grpc(Signal::Metric),
                _ => Route::GrpcUnknown,
            };
        }
        let push = match path {
            "/v1/logs" => Push::otlp(Signal::Log),
            "/v1/traces" => Push::otlp(Signal::Trace),
            "/v1/metrics" => Push::otlp(Signal::Metric),
            "/api/v2/logs" => Push {
                signal: Signal::Log,
                api: Api::DatadogLogs,
            },
            "/api/v2/series" => Push {
                signal: Signal::Metric,
                api: Api::DatadogSeries,
            },
            _ => return Route::Relay,
        };
        if method == Method::POST {
            Route::Push(push)
        } else {
            Route::WrongMethod
        }
    }
}

impl Push {
    fn otlp(signal: Signal) -> Push {
        Push {
            signal,
            api: Api::OtlpHttp,
        }
    }

    /// The payload format, from the request's `Content-Type` for OTLP;
    /// Datadog paths are JSON whatever the header says (an odd body is
    /// forwarded unchanged like any undecodable one).
    pub fn format(&self, headers: &HeaderMap) -> Result<Format, Refusal> {
        match self.api {
            Api::DatadogLogs => Ok(Format::DatadogLogs),
            Api::DatadogSeries => Ok(Format::DatadogSeries),
            Api::OtlpHttp => {
                let raw = headers
                    .get(header::CONTENT_TYPE)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                let media = raw
                    .as_deref()
                    .and_then(|v| v.split(';').next())
                    .map(str::trim)
                    .unwrap_or_default();
                if media.eq_ignore_ascii_case("application/x-protobuf")
                    || media.eq_ignore_ascii_case("application/protobuf")
                {
                    Ok(Format::OtlpProtobuf)
                } else if media.eq_ignore_ascii_case("application/json") {
                    Ok(Format::OtlpJson)
                } else {
                    Err(Refusal::ContentType(raw.unwrap_or_default()))
                }
            }
        }
    }
}

/// True for a gRPC request (`application/grpc`, `application/grpc+proto`).
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.trim();
            ct.len() >= 16
                && ct.as_bytes()[..16].eq_ignore_ascii_case(b"application/grpc")
                && matches!(ct.as_bytes().get(16), None | Some(b'+' | b';'))
        })
}

/// The request's `Content-Encoding`: gzip, zstd, deflate or none.
pub fn content_encoding(headers: &HeaderMap) -> Result<Encoding, Refusal> {
    let values: Vec<&[u8]> = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    match values.as_slice() {
        [] => Ok(Encoding::Identity),
        [one] => std::str::from_utf8(one)
            .ok()
            .and_then(|v| Encoding::from_header(Some(v)))
            .ok_or_else(|| Refusal::Encoding(String::from_utf8_lossy(one).into_owned())),
        // Stacked codings (`gzip, zstd`) are legal HTTP and never sent by
        // an exporter: refused rather than guessed.
        _ => Err(Refusal::Encoding(
            values
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// Why a push is refused before anything is read; each names what to
/// change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "unsupported Content-Type {0:?}: OTLP/HTTP is application/x-protobuf or application/json"
    )]
    ContentType(String),
    #[error("unsupported Content-Encoding {0:?}: send gzip, zstd, deflate or no encoding")]
    Encoding(String),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    }
}

/// The OTLP/HTTP path of a signal, where a gRPC export is forwarded.
pub fn otlp_http_path(signal: Signal) -> &'static str {
    match signal {
        Signal::Log => "/v1/logs",
        Signal::Trace => "/v1/traces",
        Signal::Metric => "/v1/metrics",
    }
}

/// A format's label in self-metrics and tap lines.
pub fn format_label(format: Format) -> &'static str {
    match format {
        Format::OtlpProtobuf => "otlp_protobuf",
        Format::OtlpJson => "otlp_json",
        Format::DatadogLogs => "datadog_logs",
        Format::DatadogSeries => "datadog_series",
    }
}

/// A signal's plural, as OTLP paths and tap queries write it.
pub fn signal_label(signal: Signal) -> &'static str {
    match signal {
        Signal::Log => "logs",
        Signal::Trace => "traces",
        Signal::Metric => "metrics",
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn push_paths_are_posts_and_the_rest_is_relayed() {
        let none = HeaderMap::new();
        let post = |path| Route::of(&Method::POST, path, &none);
        assert_eq!(
            post("/v1/logs"),
            Route::Push(Push {
                signal: Signal::Log,
                api: Api::OtlpHttp
            })
        );
        assert_eq!(
            post("/api/v2/series"),
            Route::Push(Push {
                signal: Signal::Metric,
                api: Api::DatadogSeries
            })
        );
        assert_eq!(
            Route::of(&Method::GET, "/v1/traces", &none),
            Route::WrongMethod
        );
        for other in ["/v1/logs/", "/api/v1/validate", "/", "/v1/log"] {
            assert_eq!(post(other), Route::Relay, "{other}");
        }
    }

    #[test]
    fn grpc_is_known_by_its_content_type_and_method() {
        let grpc = headers(&[("content-type", "application/grpc+proto")]);
        assert_eq!(
            Route::of(&Method::POST, GRPC_TRACES, &grpc),
            Route::Grpc(Signal::Trace)
        );
        assert_eq!(
            Route::of(
                &Method::POST,
                "/grpc.health.v1.Health/Check",
                &headers(&[("content-type", "application/grpc")])
            ),
            Route::GrpcUnknown
        );
        // Not gRPC: a look-alike type, and the Export path over HTTP.
        let fake = headers(&[("content-type", "application/grpcx")]);
        assert_eq!(Route::of(&Method::POST, GRPC_LOGS, &fake), Route::Relay);
    }

    #[test]
    fn otlp_formats_come_from_the_content_type() {
        let push = Push::otlp(Signal::Log);
        let format = |ct: &'static str| push.format(&headers(&[("content-type", ct)]));
        assert_eq!(format("application/x-protobuf"), Ok(Format::OtlpProtobuf));
        assert_eq!(
            format("Application/JSON; charset=utf-8"),
            Ok(Format::OtlpJson)
        );
        let refused = format("text/plain").unwrap_err();
        assert_eq!(refused.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(refused.to_string().contains("application/x-protobuf"));
        assert!(push.format(&HeaderMap::new()).is_err());
        let dd = Push {
            signal: Signal::Log,
            api: Api::DatadogLogs,
        };
        assert_eq!(dd.format(&HeaderMap::new()), Ok(Format::DatadogLogs));
    }

    #[test]
    fn encodings_are_one_known_coding() {
        let enc = |pairs: &[(&'static str, &'static str)]| content_encoding(&headers(pairs));
        assert_eq!(enc(&[]), Ok(Encoding::Identity));
        assert_eq!(enc(&[("content-encoding", "GZIP")]), Ok(Encoding::Gzip));
        assert_eq!(enc(&[("content-encoding", "zstd")]), Ok(Encoding::Zstd));
        assert_eq!(
            enc(&[("content-encoding", "deflate")]),
            Ok(Encoding::Deflate)
        );
        assert_eq!(
            enc(&[("content-encoding", "identity")]),
            Ok(Encoding::Identity)
        );
        assert!(enc(&[("content-encoding", "br")]).is_err());
        assert!(enc(&[("content-encoding", "gzip"), ("content-encoding", "zstd")]).is_err());
    }
}

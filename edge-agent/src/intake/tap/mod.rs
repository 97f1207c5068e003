//! The tap: `GET /_edge/tap/pre` and `/_edge/tap/post` stream pushed
//! records as NDJSON, before and after policies, so a user can preview a
//! policy's effect on live traffic.
//!
//! The intake publishes whole decoded payloads (a reference count, not a
//! copy) on a small broadcast channel per stage, and only while a tap
//! client listens: with none, publishing is one atomic read. Records are
//! rendered in the tap client's own task, only as many as it asked for. The
//! channel holds a few payloads; a client that reads slower than pushes
//! arrive misses payloads (counted) and never slows the intake.
//!
//! Off by default (`tap_enabled`); on, it answers loopback clients only
//! unless `intake.tap_allow_remote` is set, since it shows live telemetry.

mod render;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use tero_otlp::{Format, Signal};
use tokio::sync::broadcast;

use crate::proxy::{EdgeState, ResponseBody, text_response};

/// Payloads a stage's channel holds for its slowest client.
const CHANNEL_PAYLOADS: usize = 4;
/// Records a tap request streams when it names no `limit`, and at most.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 10_000;

/// Before or after policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Pre,
    Post,
}

/// One decoded payload, as the intake saw it at a stage.
#[derive(Debug, Clone)]
pub struct TapPayload {
    pub signal: Signal,
    pub format: Format,
    pub body: Bytes,
}

/// The two channels.
pub struct Tap {
    pre: broadcast::Sender<Arc<TapPayload>>,
    post: broadcast::Sender<Arc<TapPayload>>,
}

impl Default for Tap {
    fn default() -> Self {
        Tap {
            pre: broadcast::channel(CHANNEL_PAYLOADS).0,
            post: broadcast::channel(CHANNEL_PAYLOADS).0,
        }
    }
}

impl Tap {
    fn sender(&self, stage: Stage) -> &broadcast::Sender<Arc<TapPayload>> {
        match stage {
            Stage::Pre => &self.pre,
            Stage::Post => &self.post,
        }
    }

    /// True while a client listens at `stage`.
    pub fn listening(&self, stage: Stage) -> bool {
        self.sender(stage).receiver_count() > 0
    }

    /// Offers a payload to the clients at `stage`, if any.
    pub fn publish(&self, stage: Stage, payload: impl FnOnce() -> TapPayload) {
        let sender = self.sender(stage);
        if sender.receiver_count() > 0 {
            // No receiver left since the check: nothing to do.
            let _ = sender.send(Arc::new(payload()));
        }
    }

    fn subscribe(&self, stage: Stage) -> broadcast::Receiver<Arc<TapPayload>> {
        self.sender(stage).subscribe()
    }
}

/// What a tap request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TapQuery {
    limit: usize,
    signal: Option<Signal>,
}

fn parse_query(query: Option<&str>) -> Result<TapQuery, String> {
    let mut out = TapQuery {
        limit: DEFAULT_LIMIT,
        signal: None,
    };
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "limit" => {
                out.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        format!("limit must be a number of records from 1 to {MAX_LIMIT}")
                    })?;
            }
            "signal" => {
                out.signal = Some(match value {
                    "logs" => Signal::Log,
                    "traces" => Signal::Trace,
                    "metrics" => Signal::Metric,
                    _ => return Err("signal must be logs, traces or metrics".into()),
                });
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?}: the tap takes limit and signal"
                ));
            }
        }
    }
    Ok(out)
}

/// Whether the tap answers a client at `peer`.
pub fn allowed(peer: SocketAddr, allow_remote: bool) -> bool {
    allow_remote
        || match peer.ip() {
            IpAddr::V4(v4) => v4.is_loopback(),
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        }
}

/// `GET /_edge/tap/{pre,post}`.
pub fn handle(
    state: &EdgeState,
    req: &Request<hyper::body::Incoming>,
    peer: SocketAddr,
) -> Response<ResponseBody> {
    let config = &state.config.intake;
    let stage = match req.uri().path() {
        "/_edge/tap/pre" => Stage::Pre,
        "/_edge/tap/post" => Stage::Post,
        _ => {
            return text_response(
                StatusCode::NOT_FOUND,
                "tero-edge: the tap is at /_edge/tap/pre and /_edge/tap/post\n".into(),
            );
        }
    };
    if !config.tap_enabled {
        return text_response(
            StatusCode::NOT_FOUND,
            "tero-edge: the tap is off (tap_enabled: false)\n".into(),
        );
    }
    if !allowed(peer, config.tap_allow_remote) {
        return text_response(
            StatusCode::FORBIDDEN,
            "tero-edge: the tap answers loopback clients only (intake.tap_allow_remote: false)\n"
                .into(),
        );
    }
    if req.method() != Method::GET {
        let mut resp = text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "tero-edge: the tap is read with GET\n".into(),
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return resp;
    }
    let query = match parse_query(req.uri().query()) {
        Ok(q) => q,
        Err(e) => return text_response(StatusCode::BAD_REQUEST, format!("tero-edge: {e}\n")),
    };
    let receiver = state.intake.tap.subscribe(stage);
    let metrics = state.metrics.clone();
    let lines = stream::unfold((receiver, query.limit), move |(mut receiver, left)| {
        let metrics = metrics.clone();
        async move {
            if left == 0 {
                return None;
            }
            loop {
                match receiver.recv().await {
                    Ok(payload) => {
                        if query.signal.is_some_and(|s| s != payload.signal) {
                            continue;
                        }
                        let (chunk, n) = render::lines(&payload, left);
                        if n == 0 {
                            continue;
                        }
                        let frame = Ok::<_, crate::proxy::BoxError>(Frame::data(chunk));
                        return Some((frame, (receiver, left - n)));
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        metrics.intake.tap_records_dropped(missed);
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    let mut resp = Response::new(StreamBody::new(lines).boxed_unsync());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_checked() {
        assert_eq!(
            parse_query(None),
            Ok(TapQuery {
                limit: 100,
                signal: None
            })
        );
        assert_eq!(
            parse_query(Some("limit=5&signal=logs")),
            Ok(TapQuery {
                limit: 5,
                signal: Some(Signal::Log)
            })
        );
        for bad in ["limit=0", "limit=10001", "limit=x", "signal=log", "foo=1"] {
            assert!(parse_query(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_loopback_peers_unless_allowed() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(allowed(at("127.0.0.1:5"), false));
        assert!(allowed(at("[::1]:5"), false));
        assert!(allowed(at("[::ffff:127.0.0.1]:5"), false));
        assert!(!allowed(at("10.0.0.7:5"), false));
        assert!(!allowed(at("[2001:db8::1]:5"), false));
        assert!(allowed(at("10.0.0.7:5"), true));
    }

    #[test]
    fn nothing_is_built_without_a_listener() {
        let tap = Tap::default();
        let mut built = false;
        tap.publish(Stage::Pre, || {
            built = true;
            TapPayload {
                signal: Signal::Log,
                format: Format::OtlpJson,
                body: Bytes::new(),
            }
        });
        assert!(!built);
        let mut rx = tap.subscribe(Stage::Post);
        assert!(tap.listening(Stage::Post) && !tap.listening(Stage::Pre));
        tap.publish(Stage::Post, || TapPayload {
            signal: Signal::Log,
            format: Format::OtlpJson,
            body: Bytes::from_static(b"{}"),
        });
        assert_eq!(rx.try_recv().unwrap().body, &b"{}"[..]);
    }
}

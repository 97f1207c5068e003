//! A stand-in application exposing `/metrics`: a real HTTP server on
//! loopback serving a fixed exposition, optionally compressed when the
//! client accepts it.
//!
//! Beyond the happy path it can misbehave the ways exporters do: answer a
//! non-2xx status, hang before sending headers, or send part of its body
//! and then drop the connection. Every request it receives is recorded
//! (method, path and query, headers) so tests can check what the Edge
//! asked for.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type UpstreamBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// gzip whenever the request's Accept-Encoding mentions gzip.
    Gzip,
    /// zstd (two frames, concatenated) whenever Accept-Encoding mentions zstd.
    Zstd,
    /// zlib-wrapped deflate (the RFC's "deflate") whenever Accept-Encoding
    /// mentions deflate.
    Deflate,
    /// Raw deflate without the zlib wrapper, labelled `deflate` as some
    /// servers do, whenever Accept-Encoding mentions deflate.
    DeflateRaw,
}

impl Compression {
    /// The `Content-Encoding` token, `None` for identity.
    pub fn token(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::Deflate | Compression::DeflateRaw => Some("deflate"),
        }
    }
}

/// `body` encoded as the upstream sends it for `compression`
/// (deterministic, so tests can compare bytes on the wire).
pub fn encode(body: &[u8], compression: Compression) -> Vec<u8> {
    match compression {
        Compression::None => body.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(body).expect("gzip");
            e.finish().expect("gzip")
        }
        Compression::Zstd => {
            // Two frames: a decoder that stops after the first loses data.
            let (a, b) = body.split_at(body.len() / 2);
            let mut out = zstd::stream::encode_all(a, 3).expect("zstd");
            out.extend(zstd::stream::encode_all(b, 3).expect("zstd"));
            out
        }
        Compression::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(body).expect("zlib");
            e.finish().expect("zlib")
        }
        Compression::DeflateRaw => {
            let mut e =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(body).expect("deflate");
            e.finish().expect("deflate")
        }
    }
}

/// How the upstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Headers and the whole body.
    Serve,
    /// Read the request, then never answer (an exporter stuck collecting).
    HangBeforeHeaders,
    /// Answer in full after this delay (a slow exporter).
    Delay(Duration),
    /// Headers, the first `n` bytes of the (encoded) body, a short pause,
    /// then the connection is dropped without finishing the body.
    ResetAfter(usize),
}

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path plus `?query` when present.
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What to serve; [`UpstreamSpec::start`] starts it.
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    body: Vec<u8>,
    content_type: Option<String>,
    compression: Compression,
    status: u16,
    behaviour: Behaviour,
}

impl UpstreamSpec {
    pub fn new(body: impl Into<Vec<u8>>, content_type: &str) -> Self {
        UpstreamSpec {
            body: body.into(),
            content_type: Some(content_type.to_owned()),
            compression: Compression::None,
            status: 200,
            behaviour: Behaviour::Serve,
        }
    }

    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn behaviour(mut self, behaviour: Behaviour) -> Self {
        self.behaviour = behaviour;
        self
    }

    pub fn start(self) -> Upstream {
        Upstream::serve(self)
    }
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    recorded: Arc<Mutex<Vec<RecordedRequest>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

fn full(bytes: Bytes) -> UpstreamBody {
    Full::new(bytes).map_err(|e| match e {}).boxed()
}

impl Upstream {
    pub fn start(body: Vec<u8>, content_type: &'static str, compression: Compression) -> Upstream {
        UpstreamSpec::new(body, content_type)
            .compression(compression)
            .start()
    }

    fn serve(spec: UpstreamSpec) -> Upstream {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("upstream runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let plain = Bytes::from(spec.body.clone());
        let encoded = Bytes::from(encode(&spec.body, spec.compression));
        let spec = Arc::new(spec);
        let requests = Arc::new(AtomicU64::new(0));
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let (counter, log) = (requests.clone(), recorded.clone());
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (plain, encoded, spec) = (plain.clone(), encoded.clone(), spec.clone());
                let (counter, log) = (counter.clone(), log.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        counter.fetch_add(1, Ordering::Relaxed);
                        log.lock().unwrap().push(RecordedRequest {
                            method: req.method().to_string(),
                            path_and_query: req
                                .uri()
                                .path_and_query()
                                .map(|p| p.as_str().to_owned())
                                .unwrap_or_default(),
                            headers: req
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                                })
                                .collect(),
                        });
                        let token = spec.compression.token();
                        let compress = token.is_some_and(|t| {
                            req.headers()
                                .get(header::ACCEPT_ENCODING)
                                .and_then(|v| v.to_str().ok())
                                .is_some_and(|v| v.contains(t))
                        });
                        let (plain, encoded, spec) = (plain.clone(), encoded.clone(), spec.clone());
                        async move {
                            let mut resp = Response::builder()
                                .status(StatusCode::from_u16(spec.status).expect("status"));
                            if let Some(ct) = &spec.content_type {
                                resp = resp.header(header::CONTENT_TYPE, ct.as_str());
                            }
                            let payload = if compress {
                                resp = resp.header(header::CONTENT_ENCODING, token.unwrap());
                                encoded
                            } else {
                                plain
                            };
                            let body = match spec.behaviour {
                                Behaviour::Serve => full(payload),
                                Behaviour::HangBeforeHeaders => {
                                    tokio::time::sleep(Duration::from_secs(3600)).await;
                                    full(payload)
                                }
                                Behaviour::Delay(delay) => {
                                    tokio::time::sleep(delay).await;
                                    full(payload)
                                }
                                Behaviour::ResetAfter(n) => {
                                    let head = payload.slice(..n.min(payload.len()));
                                    let frames = stream::unfold(0u8, move |step| {
                                        let head = head.clone();
                                        async move {
                                            match step {
                                                0 => Some((Ok(Frame::data(head)), 1)),
                                                1 => {
                                                    tokio::time::sleep(Duration::from_millis(150))
                                                        .await;
                                                    Some((
                                                        Err::<Frame<Bytes>, BoxError>(
                                                            "upstream resets the connection".into(),
                                                        ),
                                                        2,
                                                    ))
                                                }
                                                _ => None,
                                            }
                                        }
                                    });
                                    StreamBody::new(frames).boxed()
                                }
                            };
                            resp.body(body)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            requests,
            recorded,
            runtime: Some(runtime),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, oldest first.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.recorded.lock().unwrap().clone()
    }

    /// The most recent request.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.recorded.lock().unwrap().last().cloned()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

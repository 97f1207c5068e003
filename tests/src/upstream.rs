//! A stand-in application exposing `/metrics`: a real HTTP server on
//! loopback serving a fixed exposition, optionally gzip-compressed when the
//! client accepts it.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// gzip whenever the request's Accept-Encoding mentions gzip.
    Gzip,
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Upstream {
    pub fn start(body: Vec<u8>, content_type: &'static str, compression: Compression) -> Upstream {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("upstream runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let body = Bytes::from(body);
        let gz = Bytes::from({
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&body).expect("gzip");
            e.finish().expect("gzip")
        });
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (body, gz, counter) = (body.clone(), gz.clone(), counter.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        counter.fetch_add(1, Ordering::Relaxed);
                        let wants_gzip = req
                            .headers()
                            .get(header::ACCEPT_ENCODING)
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|v| v.contains("gzip"));
                        let mut resp =
                            Response::builder().header(header::CONTENT_TYPE, content_type);
                        let payload = if compression == Compression::Gzip && wants_gzip {
                            resp = resp.header(header::CONTENT_ENCODING, "gzip");
                            gz.clone()
                        } else {
                            body.clone()
                        };
                        let resp = resp.body(Full::new(payload));
                        async move { resp }
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
            runtime: Some(runtime),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

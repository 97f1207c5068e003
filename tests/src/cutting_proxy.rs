//! A gRPC (HTTP/2 cleartext) relay that loses the connection at the worst
//! moment: after the server has answered a chosen method, before the client
//! hears the answer.
//!
//! That is what a client sees when the control plane dies mid-call after
//! committing: the change happened, but the reply never arrived. Killing a
//! real process at exactly that instant cannot be timed from a test; the
//! relay makes it deterministic. Every other call is relayed unchanged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Notify;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Relayed = http_body_util::combinators::BoxBody<Bytes, BoxError>;

pub struct CuttingProxy {
    pub addr: SocketAddr,
    /// Calls to the chosen method that reached the server and whose answer
    /// was then withheld.
    pub cut: Arc<AtomicU64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl CuttingProxy {
    /// Relays to `upstream`; cuts the connection of the first `times` calls
    /// whose path ends with `/{method}`, once the server has answered.
    pub fn start(upstream: SocketAddr, method: &str, times: u64) -> CuttingProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let suffix: Arc<str> = Arc::from(format!("/{method}"));
        let cut = Arc::new(AtomicU64::new(0));
        let counter = cut.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (suffix, counter) = (suffix.clone(), counter.clone());
                tokio::spawn(async move {
                    let hang_up = Arc::new(Notify::new());
                    let signal = hang_up.clone();
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (suffix, counter, signal) =
                            (suffix.clone(), counter.clone(), signal.clone());
                        async move {
                            let chosen = req.uri().path().ends_with(&*suffix);
                            let resp = match relay(upstream, req).await {
                                Ok(resp) => resp,
                                Err(e) => unreachable_upstream(&e),
                            };
                            if chosen
                                && counter
                                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                        (n < times).then_some(n + 1)
                                    })
                                    .is_ok()
                            {
                                signal.notify_one();
                                std::future::pending::<()>().await;
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        // Dropping the connection closes the socket with
                        // the answer unsent.
                        () = hang_up.notified() => {}
                    }
                });
            }
        });
        CuttingProxy {
            addr,
            cut,
            runtime: Some(runtime),
        }
    }

    /// The `http://` endpoint clients use.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// What a gateway answers when the server behind it cannot be reached.
fn unreachable_upstream(error: &BoxError) -> Response<Relayed> {
    let mut resp = Response::new(
        Full::new(Bytes::from(error.to_string()))
            .map_err(|e| match e {})
            .boxed(),
    );
    *resp.status_mut() = http::StatusCode::BAD_GATEWAY;
    resp
}

/// One call, relayed whole: request body in, response body and trailers
/// (where gRPC puts its status) out.
async fn relay(
    upstream: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Relayed>, BoxError> {
    let stream = tokio::net::TcpStream::connect(upstream).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let resp = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await?;
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    let mut frames = vec![Ok(Frame::data(collected.to_bytes()))];
    // gRPC's status travels in trailers.
    frames.extend(trailers.map(|t| Ok(Frame::trailers(t))));
    Ok(Response::from_parts(
        parts,
        StreamBody::new(futures_util::stream::iter(frames)).boxed(),
    ))
}

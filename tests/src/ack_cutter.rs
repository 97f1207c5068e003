//! A relay for the edge's push stream that loses a statistics
//! acknowledgement at the worst moment: the control plane has stored a
//! report and answered with its `StatsAck`, and the relay drops the
//! connection instead of passing the ack on. The edge must then resend a
//! report the control plane already holds, which is what exactly-once
//! statistics are about; a crash cannot be timed to that instant, the relay
//! makes it deterministic.
//!
//! It speaks HTTP/2 cleartext both ways and relays every call; only the
//! server's messages on `Subscribe` are read, one gRPC message at a time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tero_proto::controlplane::ServerMessage;
use tero_proto::controlplane::server_message::Message as ServerMsg;
use tokio::sync::{Notify, mpsc};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Relayed = http_body_util::combinators::BoxBody<Bytes, BoxError>;

pub struct AckCutter {
    pub addr: SocketAddr,
    /// Acknowledgements withheld so far (each closed a connection).
    pub cut: Arc<AtomicU64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl AckCutter {
    /// Relays to `upstream`; withholds the first `times` `StatsAck`s.
    pub fn start(upstream: SocketAddr, times: u64) -> AckCutter {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("relay runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let cut = Arc::new(AtomicU64::new(0));
        let counter = cut.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let hang_up = Arc::new(Notify::new());
                    let signal = hang_up.clone();
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (counter, signal) = (counter.clone(), signal.clone());
                        async move {
                            let resp = relay(upstream, req, counter, times, signal)
                                .await
                                .unwrap_or_else(|e| bad_gateway(&e));
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        // Dropping the connection closes the socket: the
                        // ack never arrives.
                        () = hang_up.notified() => {}
                    }
                });
            }
        });
        AckCutter {
            addr,
            cut,
            runtime: Some(runtime),
        }
    }

    /// The `http://` endpoint edges use.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn cut(&self) -> u64 {
        self.cut.load(Ordering::SeqCst)
    }
}

impl Drop for AckCutter {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn bad_gateway(error: &BoxError) -> Response<Relayed> {
    let body = http_body_util::Full::new(Bytes::from(error.to_string()))
        .map_err(|e| match e {})
        .boxed();
    let mut resp = Response::new(body);
    *resp.status_mut() = http::StatusCode::BAD_GATEWAY;
    resp
}

/// One call, streamed both ways.
async fn relay(
    upstream: SocketAddr,
    req: Request<Incoming>,
    counter: Arc<AtomicU64>,
    times: u64,
    hang_up: Arc<Notify>,
) -> Result<Response<Relayed>, BoxError> {
    let stream = tokio::net::TcpStream::connect(upstream).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let watched = req.uri().path().ends_with("/Subscribe");
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    if !watched {
        return Ok(Response::from_parts(
            parts,
            body.map_err(|e| Box::new(e) as BoxError).boxed(),
        ));
    }
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(16);
    tokio::spawn(forward_messages(body, tx, counter, times, hang_up));
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (frame, rx))
    });
    Ok(Response::from_parts(parts, StreamBody::new(frames).boxed()))
}

/// Passes the server's messages on one at a time, except a `StatsAck` to
/// withhold: then the connection is hung up and nothing more is passed.
async fn forward_messages(
    mut body: Incoming,
    tx: mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
    counter: Arc<AtomicU64>,
    times: u64,
    hang_up: Arc<Notify>,
) {
    let mut pending = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                let _ = tx.send(Err(Box::new(e))).await;
                return;
            }
        };
        let frame = match frame.into_data() {
            Ok(data) => {
                pending.extend_from_slice(&data);
                while let Some(message) = next_message(&mut pending) {
                    if is_stats_ack(&message)
                        && counter
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                (n < times).then_some(n + 1)
                            })
                            .is_ok()
                    {
                        hang_up.notify_one();
                        return;
                    }
                    if tx.send(Ok(Frame::data(message))).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            Err(frame) => frame,
        };
        if tx.send(Ok(frame)).await.is_err() {
            return;
        }
    }
}

/// One whole gRPC message (5-byte prefix and body) off the front of
/// `pending`, when it holds one.
fn next_message(pending: &mut BytesMut) -> Option<Bytes> {
    if pending.len() < 5 {
        return None;
    }
    let len = (&pending[1..5]).get_u32() as usize;
    if pending.len() < 5 + len {
        return None;
    }
    Some(pending.split_to(5 + len).freeze())
}

fn is_stats_ack(message: &[u8]) -> bool {
    ServerMessage::decode(&message[5..])
        .is_ok_and(|m| matches!(m.message, Some(ServerMsg::StatsAck(_))))
}

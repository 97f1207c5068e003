//! What one client connection may hold: a slot under `max_connections`, a
//! header-read deadline and an idle deadline.
//!
//! hyper's own `header_read_timeout` starts whenever an HTTP/1 connection
//! waits for a request, so it would also be the keep-alive timeout; and
//! HTTP/2 has none. So the deadlines are kept here, from what the
//! connection reads and which requests are in flight:
//!
//! - **header read**: from the accept, or from the first byte of the next
//!   HTTP/1 request, until hyper hands the parsed request to the service. A
//!   client trickling a header byte by byte (slowloris) is closed when it
//!   passes, however active it looks.
//! - **idle**: no request in flight and none started since the last one
//!   ended, or a response the client has stopped reading (the socket has
//!   taken no byte since a write blocked). HTTP/1 connections are closed;
//!   HTTP/2 ones get a GOAWAY. A response waiting for a slow upstream is
//!   not idle: the scrape deadline bounds it.
//!
//! HTTP/2 is recognised by its connection preface; its frames (pings,
//! window updates) are not requests, so only the idle deadline applies.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::Config;
use crate::telemetry::{ConnectionClosed, EdgeMetrics};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// After an idle GOAWAY, how long an HTTP/2 client gets to hang up.
const IDLE_GRACE: Duration = Duration::from_secs(1);

/// The connection bounds of the Edge's server.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl ConnLimits {
    pub fn from_config(config: &Config) -> Self {
        ConnLimits {
            max_connections: config.max_connections,
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
        }
    }
}

/// The answer to a connection over the limit, written if the socket takes
/// it at once (the connection is closed either way).
pub const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 44\r\n\r\ntero-edge: too many connections; retry soon\n";

/// Holds one of the `max_connections` slots (counted in
/// `edge_connections_open`) until dropped.
pub struct Slot(Arc<EdgeMetrics>);

impl Slot {
    /// A slot, or `None` when all are taken (counted as refused).
    pub fn take(metrics: &Arc<EdgeMetrics>, max: usize) -> Option<Slot> {
        if metrics.connection_opened(max) {
            Some(Slot(metrics.clone()))
        } else {
            None
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    /// When the current request head began (or the connection was
    /// accepted); `None` while no head is being read.
    head_started: Option<Instant>,
    /// When the last request ended (or the connection was accepted), while
    /// none is in flight or being read.
    idle_since: Option<Instant>,
    /// Since when a write has been waiting for the client to read.
    write_blocked_since: Option<Instant>,
    /// The first bytes, until they tell HTTP/2 from HTTP/1.
    preface: Vec<u8>,
    protocol_known: bool,
    h2: bool,
}

/// What the connection has done, shared by its socket, its requests and
/// its watchdog.
#[derive(Debug)]
pub struct Watch {
    state: Mutex<State>,
    /// Wakes the watchdog when a deadline may have moved earlier.
    changed: Notify,
}

impl Watch {
    pub fn new() -> Arc<Watch> {
        let now = Instant::now();
        Arc::new(Watch {
            state: Mutex::new(State {
                in_flight: 0,
                head_started: Some(now),
                idle_since: None,
                write_blocked_since: None,
                preface: Vec::with_capacity(H2_PREFACE.len()),
                protocol_known: false,
                h2: false,
            }),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few plain fields, valid even if a holder panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self, bytes: &[u8]) {
        let mut s = self.lock();
        if !s.protocol_known {
            let want = H2_PREFACE.len() - s.preface.len();
            s.preface.extend_from_slice(&bytes[..want.min(bytes.len())]);
            if !H2_PREFACE.starts_with(&s.preface) {
                s.protocol_known = true;
            } else if s.preface.len() == H2_PREFACE.len() {
                s.protocol_known = true;
                s.h2 = true;
                s.head_started = None;
                s.idle_since = (s.in_flight == 0).then(Instant::now);
            }
            if s.protocol_known {
                s.preface = Vec::new();
            }
        }
        if !s.h2 && s.in_flight == 0 && s.head_started.is_none() {
            s.head_started = Some(Instant::now());
            s.idle_since = None;
            drop(s);
            self.changed.notify_one();
        }
    }

    /// hyper parsed a request and calls the service: the head is complete.
    pub fn request_started(self: &Arc<Self>) -> RequestGuard {
        let mut s = self.lock();
        s.in_flight += 1;
        s.head_started = None;
        s.idle_since = None;
        RequestGuard(self.clone())
    }

    fn request_ended(&self) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 && s.head_started.is_none() {
            s.idle_since = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    /// A write could not proceed (`blocked`) or made progress.
    fn wrote(&self, blocked: bool) {
        let mut s = self.lock();
        match (blocked, s.write_blocked_since) {
            (true, None) => {
                s.write_blocked_since = Some(Instant::now());
                drop(s);
                self.changed.notify_one();
            }
            (false, Some(_)) => s.write_blocked_since = None,
            _ => {}
        }
    }

    fn is_h2(&self) -> bool {
        self.lock().h2
    }

    /// The next deadline and what passing it means.
    fn deadline(&self, limits: &ConnLimits) -> Option<(Instant, ConnectionClosed)> {
        let s = self.lock();
        if let Some(blocked) = s.write_blocked_since {
            return Some((blocked + limits.idle_timeout, ConnectionClosed::IdleTimeout));
        }
        if let Some(started) = s.head_started {
            return Some((
                started + limits.header_read_timeout,
                ConnectionClosed::HeaderReadTimeout,
            ));
        }
        s.idle_since
            .map(|since| (since + limits.idle_timeout, ConnectionClosed::IdleTimeout))
    }
}

/// One request in flight; the response body holds it until it is sent.
#[derive(Debug)]
pub struct RequestGuard(Arc<Watch>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A response body holding its request's [`RequestGuard`] until hyper has
/// sent it (or dropped it with the connection).
pub struct TrackedBody {
    body: super::ResponseBody,
    _request: RequestGuard,
}

impl TrackedBody {
    pub fn new(body: super::ResponseBody, request: RequestGuard) -> Self {
        TrackedBody {
            body,
            _request: request,
        }
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = super::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The client socket, reporting what it reads to the [`Watch`].
pub struct WatchedStream {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl WatchedStream {
    pub fn new(inner: TcpStream, watch: Arc<Watch>) -> Self {
        WatchedStream { inner, watch }
    }
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && buf.filled().len() > before
        {
            self.watch.read(&buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch.wrote(polled.is_pending());
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch.wrote(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How a watched connection ended.
pub enum Ended {
    /// hyper finished it (the client hung up, or it drained).
    Done(Result<(), super::BoxError>),
    /// A deadline passed; the connection is dropped.
    TimedOut(ConnectionClosed),
}

/// Drives `conn` until it ends, a deadline passes or `shutdown` asks it to
/// drain. `graceful` starts hyper's graceful shutdown of `conn`.
pub async fn watch<F>(
    mut conn: Pin<&mut F>,
    watch: &Watch,
    limits: &ConnLimits,
    shutdown: &tokio_util::sync::CancellationToken,
    mut graceful: impl FnMut(Pin<&mut F>),
) -> Ended
where
    F: Future<Output = Result<(), super::BoxError>>,
{
    let mut draining = false;
    // After an idle GOAWAY: when the connection is dropped regardless.
    let mut hang_up_at: Option<Instant> = None;
    loop {
        let next = watch.deadline(limits);
        let wake = match (next.map(|(at, _)| at), hang_up_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ended = conn.as_mut() => {
                return if hang_up_at.is_some() {
                    Ended::TimedOut(ConnectionClosed::IdleTimeout)
                } else {
                    Ended::Done(ended)
                };
            }
            () = watch.changed.notified() => {}
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                graceful(conn.as_mut());
            }
            () = sleep => {
                let now = Instant::now();
                if hang_up_at.is_some_and(|at| at <= now) {
                    return Ended::TimedOut(ConnectionClosed::IdleTimeout);
                }
                match watch.deadline(limits) {
                    Some((at, ConnectionClosed::IdleTimeout)) if at <= now => {
                        // An HTTP/2 client is told to go (GOAWAY) and given a
                        // moment; an idle HTTP/1 connection has nothing to
                        // tell.
                        if watch.is_h2() && hang_up_at.is_none() {
                            graceful(conn.as_mut());
                            draining = true;
                            hang_up_at = Some(now + IDLE_GRACE);
                        } else {
                            return Ended::TimedOut(ConnectionClosed::IdleTimeout);
                        }
                    }
                    Some((at, reason)) if at <= now => return Ended::TimedOut(reason),
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnLimits {
        ConnLimits {
            max_connections: 4,
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        }
    }

    /// The reason of the next deadline, and whether it is `timeout` after
    /// a moment within `[from, to]`.
    fn next(w: &Watch, from: Instant, to: Instant) -> Option<ConnectionClosed> {
        let l = limits();
        let (at, reason) = w.deadline(&l)?;
        let timeout = match reason {
            ConnectionClosed::HeaderReadTimeout => l.header_read_timeout,
            ConnectionClosed::IdleTimeout => l.idle_timeout,
        };
        assert!(at >= from + timeout && at <= to + timeout, "{reason:?}");
        Some(reason)
    }

    #[test]
    fn header_clock_runs_from_accept_and_from_each_new_head() {
        use ConnectionClosed::*;
        let before = Instant::now();
        let w = Watch::new();
        let accepted = Instant::now();
        assert_eq!(next(&w, before, accepted), Some(HeaderReadTimeout));
        // Trickling bytes does not move it.
        std::thread::sleep(Duration::from_millis(5));
        w.read(b"GET / HT");
        assert_eq!(next(&w, before, accepted), Some(HeaderReadTimeout));
        let guard = w.request_started();
        assert_eq!(
            next(&w, before, accepted),
            None,
            "nothing runs out during a request"
        );
        w.read(b"GET /next");
        assert_eq!(
            next(&w, before, accepted),
            None,
            "pipelined bytes wait for the response"
        );
        let ending = Instant::now();
        drop(guard);
        let ended = Instant::now();
        assert_eq!(next(&w, ending, ended), Some(IdleTimeout));
        std::thread::sleep(Duration::from_millis(5));
        let reading = Instant::now();
        w.read(b"G");
        assert_eq!(next(&w, reading, Instant::now()), Some(HeaderReadTimeout));
    }

    #[test]
    fn a_response_the_client_does_not_read_is_idle() {
        use ConnectionClosed::*;
        let w = Watch::new();
        w.read(b"GET /metrics HTTP/1.1\r\n\r\n");
        let _request = w.request_started();
        w.wrote(false);
        let before = Instant::now();
        assert_eq!(
            next(&w, before, before),
            None,
            "writing, or waiting for upstream"
        );
        w.wrote(true);
        let blocked = Instant::now();
        assert_eq!(next(&w, before, blocked), Some(IdleTimeout));
        // Still blocked: the clock does not restart.
        w.wrote(true);
        assert_eq!(next(&w, before, blocked), Some(IdleTimeout));
        w.wrote(false);
        assert_eq!(next(&w, before, blocked), None, "the client reads again");
    }

    #[test]
    fn http2_connections_only_have_an_idle_clock() {
        use ConnectionClosed::*;
        let before = Instant::now();
        let w = Watch::new();
        w.read(&H2_PREFACE[..10]);
        assert_eq!(next(&w, before, Instant::now()), Some(HeaderReadTimeout));
        let preface = Instant::now();
        w.read(&H2_PREFACE[10..]);
        let known = Instant::now();
        assert_eq!(next(&w, preface, known), Some(IdleTimeout));
        // Frames between requests (pings, window updates) are not heads.
        w.read(b"\x00\x00\x08\x06\x00\x00\x00\x00\x00");
        assert_eq!(next(&w, preface, known), Some(IdleTimeout));
        assert!(w.is_h2());
        // An HTTP/1 request is not mistaken for one.
        let w = Watch::new();
        w.read(b"POST /_edge/logs HTTP/1.1\r\n");
        assert!(!w.is_h2());
    }

    #[test]
    fn slots_are_bounded_and_given_back() {
        let metrics = Arc::new(EdgeMetrics::default());
        let a = Slot::take(&metrics, 2).expect("first");
        let _b = Slot::take(&metrics, 2).expect("second");
        assert!(Slot::take(&metrics, 2).is_none(), "third refused");
        drop(a);
        assert!(Slot::take(&metrics, 2).is_some(), "a slot came back");
    }
}

#[cfg(test)]
mod served {
    use bytes::Bytes;
    use http::{Request, StatusCode};
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use serde_json::json;

    use super::*;
    use crate::proxy::testing::TestEdge;

    #[tokio::test]
    async fn h2c_is_served_across_pauses_longer_than_the_header_timeout_until_idle() {
        let (config, _) = Config::from_value(
            json!({"upstream_url": "http://127.0.0.1:9", "header_read_timeout_secs": 0.2,
                   "idle_timeout_secs": 0.6}),
            &|_| None,
        )
        .expect("a valid config");
        let edge = TestEdge::start(config).await;
        let stream = TcpStream::connect(edge.addr).await.expect("connect");
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2c handshake");
        let conn = tokio::spawn(conn);
        for _ in 0..3 {
            let req = Request::get(format!("http://{}/_health", edge.addr))
                .body(Empty::<Bytes>::new())
                .expect("a request");
            let resp = send.send_request(req).await.expect("an h2c answer");
            assert_eq!(resp.status(), StatusCode::OK);
            resp.into_body().collect().await.expect("a body");
            // Pings and window updates between requests are not a slow head.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Then nothing: the Edge sends GOAWAY and the connection ends.
        let _ = tokio::time::timeout(Duration::from_secs(10), conn)
            .await
            .expect("the idle h2c connection is closed");
        let metrics = edge.state.metrics.clone();
        let closed = |reason| {
            let text = metrics.render(&edge.state.registry);
            let series = format!("edge_connections_closed_total{{reason=\"{reason}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(series.as_str()).map(str::to_owned))
                .unwrap_or_default()
        };
        assert_eq!(closed("idle_timeout"), "1");
        assert_eq!(closed("header_read_timeout"), "0");
    }
}

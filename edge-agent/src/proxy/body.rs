//! The one streaming body of a scrape: upstream's body pulled through a
//! [`Transform`] under the scrape's deadline.
//!
//! The body is a pull stream: hyper asks for the next frame when the client
//! has drained the last one, and only then is upstream read, one chunk per
//! pull, in the connection's own task. So a slow Prometheus slows the
//! exporter instead of filling memory, and a client that goes away
//! drops the body, which stops the reading. (Filtering in a task of its
//! own, handing frames over a channel, measured 25 % slower: the hand-off
//! costs more than the overlap gains.)
//!
//! Whatever the transform (relay as it came, decode, filter and compress),
//! a broken or late upstream body ends the same way here: the failure is
//! counted, logged, and the response aborted, because a clean end of a
//! broken body would be recorded by Prometheus as a successful scrape. The
//! bytes are counted once, through the [`ScrapeGuard`], at the end or when
//! the body is dropped.

use std::collections::VecDeque;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::{Body as _, Frame, Incoming};

use super::guard::ScrapeGuard;
use super::source::{BodySource, SourceError};
use super::{BoxError, ResponseBody};
use crate::telemetry::{EdgeMetrics, ScrapeResult, UpstreamError};

/// Frames ready for the client, in order.
pub type Frames = VecDeque<Frame<Bytes>>;

/// What a transform says after taking a frame.
pub enum Flow {
    /// Read on.
    More,
    /// The output is complete; the scrape ended with this result.
    Done(ScrapeResult),
    /// The output cannot be completed validly: abort the response.
    Failed(ScrapeResult, BoxError),
}

/// Turns upstream's frames into the client's.
pub trait Transform: Send + 'static {
    /// Takes one frame from upstream, queueing what the client gets.
    fn push(&mut self, frame: Frame<Bytes>, out: &mut Frames) -> Flow;

    /// Upstream's body ended cleanly, or the transform needs no more of
    /// it: queues the rest of the output and says how the scrape ended.
    fn finish(&mut self, out: &mut Frames) -> ScrapeResult;

    /// The response is being aborted: drops what was kept for its end.
    fn abandon(&mut self) {}

    /// True once nothing more will be written: upstream need not be read
    /// further.
    fn is_done(&self) -> bool {
        false
    }

    /// Adds this body's counts to the metrics, given the bytes read from
    /// upstream (`wire_in`) and those sent or queued to the client
    /// (`wire_out`).
    fn account(&self, metrics: &EdgeMetrics, wire_in: u64, wire_out: u64);
}

/// Upstream's body: its frames as they came (a relay keeps upstream's
/// trailers and knows when a declared length is reached), or its decoded
/// chunks.
pub enum Source {
    Wire { body: Incoming, bytes: u64 },
    Decoded(BodySource),
}

impl Source {
    pub fn wire(body: Incoming) -> Self {
        Source::Wire { body, bytes: 0 }
    }

    /// The next frame; `None` at the clean end of the body.
    async fn next(&mut self) -> Result<Option<Frame<Bytes>>, SourceError> {
        match self {
            Source::Wire { body, bytes } => match body.frame().await {
                None => Ok(None),
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        *bytes += data.len() as u64;
                    }
                    Ok(Some(frame))
                }
                Some(Err(e)) => Err(SourceError::Reset(e.to_string())),
            },
            Source::Decoded(source) => Ok(source.next_chunk().await?.map(Frame::data)),
        }
    }

    /// True once upstream has sent its declared length: hyper stops
    /// polling a response once that many bytes are out, so its end must
    /// be seen now, not on a next pull that never comes.
    fn is_end(&self) -> bool {
        match self {
            Source::Wire { body, .. } => body.is_end_stream(),
            Source::Decoded(_) => false,
        }
    }

    fn wire_bytes(&self) -> u64 {
        match self {
            Source::Wire { bytes, .. } => *bytes,
            Source::Decoded(source) => source.wire_bytes(),
        }
    }
}

pub struct ScrapeBody<T: Transform> {
    guard: ScrapeGuard,
    /// The upstream URI, redacted, for logs.
    shown: String,
    source: Source,
    transform: T,
    queue: Frames,
    out_wire: u64,
    finished: bool,
    failed: Option<BoxError>,
}

impl<T: Transform> ScrapeBody<T> {
    pub fn new(guard: ScrapeGuard, shown: String, source: Source, transform: T) -> Self {
        ScrapeBody {
            guard,
            shown,
            source,
            transform,
            queue: VecDeque::new(),
            out_wire: 0,
            finished: false,
            failed: None,
        }
    }

    /// The body hyper polls.
    pub fn into_response_body(self) -> ResponseBody {
        StreamBody::new(stream::unfold(self, |mut s| async move {
            let frame = s.next_frame().await?;
            Some((frame, s))
        }))
        .boxed_unsync()
    }

    async fn next_frame(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        loop {
            if let Some(frame) = self.queue.pop_front() {
                if let Some(data) = frame.data_ref() {
                    self.out_wire += data.len() as u64;
                }
                return Some(Ok(frame));
            }
            if let Some(e) = self.failed.take() {
                return Some(Err(e));
            }
            if self.finished {
                return None;
            }
            self.step().await;
        }
    }

    /// Reads one frame from upstream and queues what the transform makes
    /// of it.
    async fn step(&mut self) {
        let next = if self.transform.is_done() {
            Ok(Ok(None))
        } else {
            self.guard.deadline().within(self.source.next()).await
        };
        match next {
            Ok(Ok(Some(frame))) => match self.transform.push(frame, &mut self.queue) {
                Flow::More if self.source.is_end() => {
                    let result = self.transform.finish(&mut self.queue);
                    self.complete(result);
                }
                Flow::More => {}
                Flow::Done(result) => self.complete(result),
                Flow::Failed(result, error) => self.abort(result, error),
            },
            Ok(Ok(None)) => {
                let result = self.transform.finish(&mut self.queue);
                self.complete(result);
            }
            Ok(Err(e)) => {
                let kind = match e {
                    SourceError::Reset(_) => UpstreamError::Reset,
                    SourceError::Decode { .. } => UpstreamError::Decode,
                };
                self.guard.metrics().upstream_error(kind);
                tracing::warn!(upstream = %self.shown, error = %e, "scrape aborted mid-body");
                self.abort(ScrapeResult::Aborted, e.into());
            }
            Err(_) => {
                self.guard.metrics().upstream_error(UpstreamError::Timeout);
                tracing::warn!(upstream = %self.shown, "scrape deadline passed mid-body; aborted");
                self.abort(
                    ScrapeResult::Timeout,
                    "upstream deadline passed mid-body".into(),
                );
            }
        }
    }

    fn complete(&mut self, result: ScrapeResult) {
        self.guard.finish(result);
        self.finished = true;
        self.account();
    }

    fn abort(&mut self, result: ScrapeResult, error: BoxError) {
        self.transform.abandon();
        self.guard.finish(result);
        self.queue.clear();
        self.finished = true;
        self.failed = Some(error);
        self.account();
    }

    /// Counts the body once; what is queued at the end counts as sent.
    fn account(&mut self) {
        let queued: u64 = self
            .queue
            .iter()
            .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
            .sum();
        let (wire_in, wire_out) = (self.source.wire_bytes(), self.out_wire + queued);
        let transform = &self.transform;
        self.guard
            .account(|metrics| transform.account(metrics, wire_in, wire_out));
    }
}

impl<T: Transform> Drop for ScrapeBody<T> {
    /// A body dropped before its end (the client went away) still counts
    /// what it read and sent.
    fn drop(&mut self) {
        self.account();
    }
}

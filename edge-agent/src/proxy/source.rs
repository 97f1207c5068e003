//! The upstream body as a sequence of decoded chunks.
//!
//! Identity bodies pass hyper's own buffers through untouched. Compressed
//! bodies are decoded by pulling at most one read buffer at a time, so a
//! decompression bomb costs one buffer, not its expanded size; the caller
//! enforces the decoded-size cap.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use async_compression::tokio::bufread::{DeflateDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio_util::io::StreamReader;

const READ_CHUNK: usize = 64 * 1024;

/// A `Content-Encoding` the Edge can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Deflate,
    Zstd,
}

impl Encoding {
    /// `None` for encodings the Edge cannot decode.
    pub fn from_header(value: Option<&str>) -> Option<Encoding> {
        let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Some(Encoding::Identity);
        };
        if v.eq_ignore_ascii_case("identity") {
            Some(Encoding::Identity)
        } else if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") {
            Some(Encoding::Gzip)
        } else if v.eq_ignore_ascii_case("deflate") {
            Some(Encoding::Deflate)
        } else if v.eq_ignore_ascii_case("zstd") {
            Some(Encoding::Zstd)
        } else {
            None
        }
    }
}

/// Why the body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("upstream connection failed mid-body: {0}")]
    Reset(String),
    #[error("cannot decode the {encoding:?} body: {message}")]
    Decode { encoding: Encoding, message: String },
}

type WireStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

enum Inner {
    Identity(WireStream),
    Decoded {
        reader: Pin<Box<dyn AsyncRead + Send>>,
        buf: BytesMut,
    },
}

/// Decoded chunks of one upstream body, counting wire bytes as they pass.
pub struct BodySource {
    inner: Inner,
    encoding: Encoding,
    wire_bytes: Arc<AtomicU64>,
    /// Chunks read ahead by [`BodySource::peek`], returned first.
    peeked: VecDeque<Bytes>,
}

fn data_frames(body: Incoming, wire: Arc<AtomicU64>) -> WireStream {
    Box::pin(body.into_data_stream().map(move |r| {
        r.inspect(|b| {
            wire.fetch_add(b.len() as u64, Relaxed);
        })
        .map_err(io::Error::other)
    }))
}

impl BodySource {
    pub async fn new(body: Incoming, encoding: Encoding) -> Result<BodySource, SourceError> {
        let wire_bytes = Arc::new(AtomicU64::new(0));
        let stream = data_frames(body, wire_bytes.clone());
        Self::from_wire(stream, wire_bytes, encoding).await
    }

    /// A source over wire frames already counted into `wire_bytes`.
    async fn from_wire(
        stream: WireStream,
        wire_bytes: Arc<AtomicU64>,
        encoding: Encoding,
    ) -> Result<BodySource, SourceError> {
        let inner = match encoding {
            Encoding::Identity => Inner::Identity(stream),
            _ => {
                let mut reader = BufReader::with_capacity(READ_CHUNK, StreamReader::new(stream));
                let reader: Pin<Box<dyn AsyncRead + Send>> = match encoding {
                    Encoding::Gzip => {
                        let mut d = GzipDecoder::new(reader);
                        d.multiple_members(true);
                        Box::pin(d)
                    }
                    Encoding::Zstd => {
                        let mut d = ZstdDecoder::new(reader);
                        d.multiple_members(true);
                        Box::pin(d)
                    }
                    Encoding::Deflate => {
                        // "deflate" is zlib-wrapped by the RFC, raw by some
                        // servers: the zlib header tells them apart.
                        let head = reader
                            .fill_buf()
                            .await
                            .map_err(|e| SourceError::Reset(e.to_string()))?;
                        let zlib = head.len() >= 2
                            && head[0] & 0x0f == 8
                            && (u16::from(head[0]) << 8 | u16::from(head[1])) % 31 == 0;
                        if zlib {
                            Box::pin(ZlibDecoder::new(reader))
                        } else {
                            Box::pin(DeflateDecoder::new(reader))
                        }
                    }
                    Encoding::Identity => unreachable!("handled above"),
                };
                Inner::Decoded {
                    reader,
                    buf: BytesMut::new(),
                }
            }
        };
        Ok(BodySource {
            inner,
            encoding,
            wire_bytes,
            peeked: VecDeque::new(),
        })
    }

    /// Compressed bytes received so far.
    pub fn wire_bytes(&self) -> u64 {
        self.wire_bytes.load(Relaxed)
    }

    /// The body's first decoded bytes, without consuming them: at least
    /// `want` bytes, fewer only at the end of the body. Not just the first
    /// line: a sniffer skips leading blank and comment lines, so the line
    /// that decides may come later, in a later chunk.
    /// The chunks read stay queued for [`BodySource::next_chunk`]; a
    /// prefix over several chunks is copied once to be looked at whole.
    pub async fn peek(&mut self, want: usize) -> Result<Bytes, SourceError> {
        let mut seen: usize = self.peeked.iter().map(Bytes::len).sum();
        while seen < want {
            match self.read_chunk().await? {
                Some(chunk) => {
                    seen += chunk.len();
                    self.peeked.push_back(chunk);
                }
                None => break,
            }
        }
        Ok(match self.peeked.len() {
            0 => Bytes::new(),
            1 => self.peeked[0].clone(),
            _ => self.peeked.iter().flatten().copied().collect(),
        })
    }

    /// The next decoded chunk; `None` at the clean end of the body.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, SourceError> {
        if let Some(chunk) = self.peeked.pop_front() {
            return Ok(Some(chunk));
        }
        self.read_chunk().await
    }

    async fn read_chunk(&mut self) -> Result<Option<Bytes>, SourceError> {
        match &mut self.inner {
            Inner::Identity(stream) => loop {
                match stream.next().await {
                    None => return Ok(None),
                    Some(Ok(b)) if b.is_empty() => continue,
                    Some(Ok(b)) => return Ok(Some(b)),
                    Some(Err(e)) => return Err(SourceError::Reset(e.to_string())),
                }
            },
            Inner::Decoded { reader, buf } => {
                buf.reserve(READ_CHUNK);
                match reader.read_buf(buf).await {
                    Ok(0) => Ok(None),
                    Ok(_) => Ok(Some(buf.split().freeze())),
                    Err(e) => {
                        // A transport failure surfaces through the decoder;
                        // its message says which.
                        let message = e.to_string();
                        if e.kind() == io::ErrorKind::InvalidData
                            || e.kind() == io::ErrorKind::UnexpectedEof
                        {
                            Err(SourceError::Decode {
                                encoding: self.encoding,
                                message,
                            })
                        } else {
                            Err(SourceError::Reset(message))
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::sniff::{SNIFF_BYTES, looks_like_text};

    /// An identity source whose body arrives as `chunks`, one frame each.
    async fn source(chunks: &[&'static [u8]]) -> BodySource {
        let frames: Vec<io::Result<Bytes>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        let stream: WireStream = Box::pin(futures_util::stream::iter(frames));
        BodySource::from_wire(stream, Arc::new(AtomicU64::new(0)), Encoding::Identity)
            .await
            .expect("an identity source")
    }

    #[tokio::test]
    async fn peek_reads_past_leading_comment_and_blank_lines() {
        let chunks: &[&'static [u8]] = &[
            b"# scraped by exporter 1.2\n",
            b"\n",
            b"up 1\n",
            b"down 0\n",
        ];
        let mut src = source(chunks).await;
        let prefix = src.peek(SNIFF_BYTES).await.expect("peek");
        assert_eq!(prefix, Bytes::from(chunks.concat()));
        assert!(looks_like_text(&prefix));
        // The peeked chunks still come out whole and in order.
        for want in chunks {
            let got = src.next_chunk().await.expect("chunk").expect("more");
            assert_eq!(got, Bytes::from_static(want));
        }
        assert!(src.next_chunk().await.expect("end").is_none());
    }

    #[tokio::test]
    async fn peek_judges_a_blank_then_sample_body_as_text() {
        let mut src = source(&[b"\n", b"\n", b"requests_total{code=\"200\"} 7\n"]).await;
        let prefix = src.peek(SNIFF_BYTES).await.expect("peek");
        assert!(looks_like_text(&prefix));
    }

    #[tokio::test]
    async fn peek_stops_at_want_bytes() {
        let mut src = source(&[b"aaaa", b"bbbb", b"cccc"]).await;
        assert_eq!(
            src.peek(6).await.expect("peek"),
            Bytes::from_static(b"aaaabbbb")
        );
        // A second peek reads nothing more.
        assert_eq!(
            src.peek(6).await.expect("peek"),
            Bytes::from_static(b"aaaabbbb")
        );
    }
}

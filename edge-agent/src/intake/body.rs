//! A push's body: read within `max_body_size` (bytes as they arrive),
//! decoded within `max_decoded_bytes`, and encoded again the way it came.
//!
//! The wire bytes are kept whole (at most `max_body_size`): a body the
//! codecs cannot read is forwarded exactly as it came. Decoding writes into
//! one buffer that never grows past the decoded limit, so a decompression
//! bomb costs that buffer and a 413, not its expanded size.

use std::io::{self, Read, Write as _};

use bytes::Bytes;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::proxy::Encoding;

/// The first allocation for a decoded body: the buffer doubles from here,
/// never past the limit.
const FIRST_DECODE_BUFFER: usize = 64 * 1024;
/// What one read from a decoder may fill.
const READ_CHUNK: usize = 64 * 1024;

/// Why a body could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error(
        "request body larger than max_body_size ({limit} bytes as sent); send smaller batches or raise max_body_size"
    )]
    TooLarge { limit: u64 },
    #[error(
        "request body larger than max_decoded_bytes ({limit} bytes once decompressed); send smaller batches or raise max_decoded_bytes"
    )]
    DecodedTooLarge { limit: u64 },
    #[error("could not read the request body: {0}")]
    Read(String),
}

/// Reads the whole body, refusing it as soon as it passes `limit` bytes
/// (at once when its declared `Content-Length` does).
pub async fn read(body: Incoming, declared: Option<u64>, limit: u64) -> Result<Bytes, BodyError> {
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, cap).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge { limit }),
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

/// The `Content-Length` a request declares, if it is a number.
pub fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse().ok())
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeFailure {
    /// Over the limit: refused with 413.
    #[error(transparent)]
    TooLarge(BodyError),
    /// Not valid in its encoding: forwarded as it came, like any body the
    /// codecs cannot read.
    #[error("invalid {encoding:?} body: {message}")]
    Corrupt { encoding: Encoding, message: String },
}

/// `wire` decoded from `encoding`, at most `limit` bytes. An identity body
/// is the same buffer, not a copy.
pub fn decode(encoding: Encoding, wire: &Bytes, limit: u64) -> Result<Bytes, DecodeFailure> {
    let too_large = || DecodeFailure::TooLarge(BodyError::DecodedTooLarge { limit });
    let result = match encoding {
        Encoding::Identity => {
            return if wire.len() as u64 > limit {
                Err(too_large())
            } else {
                Ok(wire.clone())
            };
        }
        Encoding::Gzip => bounded(flate2::read::MultiGzDecoder::new(&wire[..]), limit),
        // `deflate` is zlib by the RFC; some clients send it raw.
        Encoding::Deflate => {
            bounded(flate2::read::ZlibDecoder::new(&wire[..]), limit).or_else(|e| match e {
                Bounded::Io(_) => bounded(flate2::read::DeflateDecoder::new(&wire[..]), limit),
                over => Err(over),
            })
        }
        Encoding::Zstd => match zstd::stream::read::Decoder::with_buffer(&wire[..]) {
            Ok(decoder) => bounded(decoder, limit),
            Err(e) => Err(Bounded::Io(e)),
        },
    };
    match result {
        Ok(decoded) => Ok(Bytes::from(decoded)),
        Err(Bounded::Over) => Err(too_large()),
        Err(Bounded::Io(e)) => Err(DecodeFailure::Corrupt {
            encoding,
            message: e.to_string(),
        }),
    }
}

#[derive(Debug)]
enum Bounded {
    Over,
    Io(io::Error),
}

/// Reads `reader` to its end into one buffer of at most `limit` bytes.
fn bounded(mut reader: impl Read, limit: u64) -> Result<Vec<u8>, Bounded> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut out: Vec<u8> = Vec::new();
    loop {
        if out.len() == out.capacity() {
            if out.len() > limit {
                return Err(Bounded::Over);
            }
            // Doubling, but never past limit + 1 (the byte that proves the
            // body too large).
            let want = (out.len() * 2).max(FIRST_DECODE_BUFFER).min(limit + 1);
            out.reserve_exact(want - out.len());
        }
        let len = out.len();
        // Zeroed a read's worth at a time, not the whole spare capacity.
        let room = (out.capacity() - len).min(READ_CHUNK);
        out.resize(len + room, 0);
        match reader.read(&mut out[len..]) {
            Ok(0) => {
                out.truncate(len);
                return Ok(out);
            }
            Ok(n) => {
                out.truncate(len + n);
                if out.len() > limit {
                    return Err(Bounded::Over);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => out.truncate(len),
            Err(e) => return Err(Bounded::Io(e)),
        }
    }
}

/// `payload` encoded as a request with `encoding` carries it, at each
/// codec's fast level: a rewritten body costs upstream no more bandwidth
/// than the one the client sent, for little CPU.
pub fn encode(encoding: Encoding, payload: &[u8]) -> io::Result<Bytes> {
    let out = match encoding {
        Encoding::Identity => return Ok(Bytes::copy_from_slice(payload)),
        Encoding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(
                Vec::with_capacity(payload.len() / 4),
                flate2::Compression::fast(),
            );
            e.write_all(payload)?;
            e.finish()?
        }
        Encoding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(
                Vec::with_capacity(payload.len() / 4),
                flate2::Compression::fast(),
            );
            e.write_all(payload)?;
            e.finish()?
        }
        Encoding::Zstd => zstd::bulk::compress(payload, 1)?,
    };
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Encoding; 4] = [
        Encoding::Identity,
        Encoding::Gzip,
        Encoding::Deflate,
        Encoding::Zstd,
    ];

    #[test]
    fn every_encoding_round_trips() {
        let payload: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for encoding in ALL {
            let wire = encode(encoding, &payload).unwrap();
            let decoded = decode(encoding, &wire, 1 << 20).unwrap();
            assert_eq!(decoded, payload, "{encoding:?}");
        }
    }

    #[test]
    fn raw_deflate_is_read_too() {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b"raw deflate body").unwrap();
        let wire = Bytes::from(e.finish().unwrap());
        assert_eq!(
            decode(Encoding::Deflate, &wire, 1024).unwrap(),
            &b"raw deflate body"[..]
        );
    }

    #[test]
    fn a_bomb_stops_at_the_limit_with_one_bounded_buffer() {
        let zeros = vec![0u8; 64 << 20];
        for encoding in [Encoding::Gzip, Encoding::Zstd, Encoding::Deflate] {
            let wire = encode(encoding, &zeros).unwrap();
            assert!(wire.len() < 1 << 20, "{encoding:?}: {}", wire.len());
            match decode(encoding, &wire, 1 << 20) {
                Err(DecodeFailure::TooLarge(BodyError::DecodedTooLarge { limit })) => {
                    assert_eq!(limit, 1 << 20)
                }
                other => panic!("{encoding:?}: {other:?}"),
            }
        }
        // Exactly at the limit is fine; one byte over is not.
        let wire = encode(Encoding::Gzip, &zeros[..4096]).unwrap();
        assert_eq!(decode(Encoding::Gzip, &wire, 4096).unwrap().len(), 4096);
        assert!(decode(Encoding::Gzip, &wire, 4095).is_err());
        let plain = Bytes::from_static(b"12345");
        assert!(decode(Encoding::Identity, &plain, 4).is_err());
    }

    #[test]
    fn the_buffer_never_outgrows_the_limit() {
        let data = vec![7u8; 300_000];
        let out = bounded(&data[..], 300_000).unwrap();
        assert_eq!(out.len(), 300_000);
        assert!(out.capacity() <= 300_001, "{}", out.capacity());
    }

    #[test]
    fn corrupt_bodies_say_so() {
        let junk = Bytes::from_static(b"\x1f\x8b\x08\x00not gzip at all");
        for encoding in [Encoding::Gzip, Encoding::Zstd, Encoding::Deflate] {
            assert!(
                matches!(
                    decode(encoding, &junk, 1 << 20),
                    Err(DecodeFailure::Corrupt { .. })
                ),
                "{encoding:?}"
            );
        }
    }
}

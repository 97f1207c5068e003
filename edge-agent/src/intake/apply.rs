//! Policies over one pushed payload: decode, filter with the codec, count,
//! and say what to forward.
//!
//! Fail-open at every step: a body that cannot be decompressed or decoded
//! goes upstream exactly as it came (counted in
//! `edge_intake_undecodable_total`); only the size limits refuse a push.
//! Statistics follow the spec: per-policy counts are the codec's, the
//! `VolumeStats` of decoded payloads are added here, once per payload.
//! Around the codec sit the tap (before and after policies) and the log and
//! span samples for the template miner and span patterns, all costing
//! nothing when idle.

use std::sync::Arc;

use bytes::Bytes;
use tero_otlp::{Counts, Filtered, Format, Output, Signal};

use super::body::{self, BodyError, DecodeFailure};
use super::samples;
use super::tap::{Stage, TapPayload};
use crate::proxy::{EdgeState, Encoding};

/// Payloads at least this large (as received) are worked on in the
/// blocking pool, so a large batch does not hold up the connections that
/// share its worker thread; smaller ones are cheaper done in place.
const INLINE_BELOW_BYTES: usize = 16 * 1024;

/// One payload to work on.
pub struct Payload {
    pub signal: Signal,
    pub format: Format,
    /// The bytes as received, in `encoding`.
    pub wire: Bytes,
    pub encoding: Encoding,
}

/// What to send upstream, or that nothing need be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Send `body`, encoded with `encoding`.
    Forward {
        body: Bytes,
        encoding: Encoding,
        /// False when `body` is what the client sent.
        rewritten: bool,
        /// Decoded bytes, for self-metrics (0 when undecodable).
        decoded_bytes: u64,
    },
    /// Policies dropped every record: answer success without upstream.
    AllDropped { decoded_bytes: u64 },
}

/// Runs [`apply`] where it is cheapest: in place for small payloads, in
/// the blocking pool for large ones. A codec that panics (a bug) loses no
/// data: the payload is forwarded as it came, as an undecodable one is.
pub async fn run(state: &Arc<EdgeState>, payload: Payload) -> Result<Applied, BodyError> {
    let fallback = Applied::Forward {
        body: payload.wire.clone(),
        encoding: payload.encoding,
        rewritten: false,
        decoded_bytes: 0,
    };
    let format = payload.format;
    let done = if payload.wire.len() < INLINE_BELOW_BYTES {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| apply(state, &payload)))
            .map_err(|_| "panicked".to_owned())
    } else {
        // One step per core: waiting here holds only the wire bytes, which
        // the byte budget already counts.
        let slot = state.intake.processing.clone().acquire_owned().await.ok();
        let state = state.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            apply(&state, &payload)
        })
        .await
        .map_err(|e| e.to_string())
    };
    match done {
        Ok(result) => result,
        Err(e) => {
            tracing::error!(format = ?format, error = %e, "filtering a push failed; forwarded unchanged");
            state.metrics.intake.undecodable(format);
            Ok(fallback)
        }
    }
}

/// Decodes, filters and re-encodes one payload.
pub fn apply(state: &EdgeState, payload: &Payload) -> Result<Applied, BodyError> {
    let intake = &state.intake;
    let metrics = &state.metrics.intake;
    let unchanged = |decoded_bytes: u64| Applied::Forward {
        body: payload.wire.clone(),
        encoding: payload.encoding,
        rewritten: false,
        decoded_bytes,
    };
    let decoded = match body::decode(
        payload.encoding,
        &payload.wire,
        state.config.intake.max_decoded_bytes,
    ) {
        Ok(decoded) => decoded,
        Err(DecodeFailure::TooLarge(e)) => return Err(e),
        Err(e @ DecodeFailure::Corrupt { .. }) => {
            metrics.undecodable(payload.format);
            tracing::debug!(format = ?payload.format, error = %e, "push body cannot be decompressed; forwarded unchanged");
            return Ok(unchanged(0));
        }
    };
    let decoded_bytes = decoded.len() as u64;
    let tap_payload = |body: &Bytes| TapPayload {
        signal: payload.signal,
        format: payload.format,
        body: body.clone(),
    };
    intake.tap.publish(Stage::Pre, || tap_payload(&decoded));

    let engine = state.registry.engine();
    let filtered = match tero_otlp::filter(&engine, payload.format, payload.signal, &decoded) {
        Ok(filtered) => filtered,
        Err(e) => {
            metrics.undecodable(payload.format);
            tracing::debug!(format = ?payload.format, error = %e, "push body cannot be decoded; forwarded unchanged");
            intake.tap.publish(Stage::Post, || tap_payload(&decoded));
            return Ok(unchanged(decoded_bytes));
        }
    };
    let Filtered { output, counts } = filtered;
    count(state, payload.signal, &counts);
    mine(state, payload, &decoded);
    Ok(match output {
        Output::Unchanged => {
            intake.tap.publish(Stage::Post, || tap_payload(&decoded));
            unchanged(decoded_bytes)
        }
        Output::AllDropped => Applied::AllDropped { decoded_bytes },
        Output::Rewritten(kept) => {
            let kept = Bytes::from(kept);
            intake.tap.publish(Stage::Post, || tap_payload(&kept));
            let encoded = match payload.encoding {
                // No copy: the kept bytes are the body.
                Encoding::Identity => Ok(kept.clone()),
                other => body::encode(other, &kept),
            };
            match encoded {
                Ok(body) => Applied::Forward {
                    body,
                    encoding: payload.encoding,
                    rewritten: true,
                    decoded_bytes,
                },
                // Compressing into memory does not fail in practice; if it
                // did, the payload still goes, uncompressed.
                Err(e) => {
                    tracing::warn!(error = %e, "re-compressing a filtered push failed; sent uncompressed");
                    Applied::Forward {
                        body: kept,
                        encoding: Encoding::Identity,
                        rewritten: true,
                        decoded_bytes,
                    }
                }
            }
        }
    })
}

/// `VolumeStats` and self-metrics of a decoded payload.
fn count(state: &EdgeState, signal: Signal, counts: &Counts) {
    let volume = state.registry.volume();
    match signal {
        Signal::Log => volume.add_logs(counts.records_in, counts.protobuf_bytes_in),
        Signal::Trace => volume.add_spans(counts.records_in, counts.protobuf_bytes_in),
        Signal::Metric => {
            volume.add_metric_data_points(counts.records_in, counts.protobuf_bytes_in)
        }
    }
    state.metrics.intake.records(signal, counts);
}

/// Log records for the template miner and spans for the span patterns,
/// within their sample budgets.
fn mine(state: &EdgeState, payload: &Payload, decoded: &Bytes) {
    if payload.signal == Signal::Trace {
        let Some(patterns) = state.spans.as_ref().filter(|p| p.is_reporting()) else {
            return;
        };
        let sampled = crate::spans::feed(
            &state.intake.span_samples,
            patterns,
            payload.format,
            decoded,
        );
        if sampled > 0 {
            state.metrics.intake.span_samples(sampled);
        }
        return;
    }
    if payload.signal != Signal::Log {
        return;
    }
    let Some(miner) = state.logs.as_ref().filter(|m| m.is_reporting()) else {
        return;
    };
    let mined = samples::feed(&state.intake.samples, miner, payload.format, decoded);
    if mined > 0 {
        state.metrics.intake.log_samples(mined);
    }
}

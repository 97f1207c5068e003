//! Pushed telemetry through the policy engine: OTLP logs, traces and metrics
//! (binary protobuf and OTLP JSON) and Datadog logs and series.
//!
//! Every codec works the same way, because a push is on the hot path of the
//! application that sent it: walk the payload without building owned trees,
//! hand each record to the engine as a lazy view (it asks only for the
//! fields the loaded policies read), copy the byte ranges of kept records
//! unchanged, and re-encode only what a transform or the tracestate changed.
//! Nothing else about the payload changes: resource and scope attributes,
//! unknown fields and ordering pass through. Resource and scope entries left
//! empty by drops are removed, as the conformance runner does.
//!
//! The Edge's push intake and `tero-conformance` share these codecs, so the
//! semantics the conformance suite checks are the ones the Edge enforces.

pub mod convert;
pub mod datadog;
pub mod json;
pub mod protobuf;
pub mod synthetic;

use tero_sdk::engine::Engine;
pub use tero_sdk::policy::Signal;

/// How a payload is encoded, which decides the codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OTLP binary protobuf: `Export*ServiceRequest` (= `*Data`).
    OtlpProtobuf,
    /// OTLP JSON (hex trace and span ids, 64-bit integers as strings).
    OtlpJson,
    /// Datadog's `POST /api/v2/logs`: a JSON array of log objects.
    DatadogLogs,
    /// Datadog's `POST /api/v2/series`: `{"series": [...]}`.
    DatadogSeries,
}

/// What to send on after policies ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Nothing was dropped or changed: forward the original bytes.
    Unchanged,
    /// The payload without dropped records, changed records re-encoded.
    Rewritten(Vec<u8>),
    /// Policies dropped every record: answer success without forwarding.
    AllDropped,
}

/// What a payload held and what policies did to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records evaluated: log records, spans, or metric data points.
    pub records_in: u64,
    /// Of those, records dropped by enforced policies.
    pub records_dropped: u64,
    /// Uncompressed OTLP protobuf size of the records seen (the spec's
    /// `VolumeStats` bytes); 0 for encodings that are not OTLP protobuf.
    pub protobuf_bytes_in: u64,
}

/// The outcome of filtering one payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filtered {
    pub output: Output,
    pub counts: Counts,
}

/// A payload the codec could not read. The caller forwards it unchanged
/// (fail-open) and counts it.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed protobuf: {0}")]
    Protobuf(String),
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("unexpected shape: {0}")]
    Shape(String),
    #[error("{0:?} payloads of {1:?} are not supported")]
    Unsupported(Format, Signal),
}

/// Runs `engine`'s policies for `signal` over `payload`, counting hits,
/// misses and drops on the policies' counters (`records_dropped` and
/// `bytes_dropped`, bytes in the payload's own encoding).
pub fn filter(
    engine: &Engine,
    format: Format,
    signal: Signal,
    payload: &[u8],
) -> Result<Filtered, DecodeError> {
    match format {
        Format::OtlpProtobuf => protobuf::filter(engine, signal, payload),
        Format::OtlpJson => json::filter(engine, signal, payload),
        Format::DatadogLogs | Format::DatadogSeries => datadog::filter(engine, format, payload),
    }
}

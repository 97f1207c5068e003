//! OTLP binary protobuf: a borrowed walk of `Export*ServiceRequest`.

use tero_sdk::engine::Engine;

use crate::{DecodeError, Filtered, Format, Signal};

/// Filters an `Export{Logs,Trace,Metrics}ServiceRequest`.
pub fn filter(_engine: &Engine, signal: Signal, _payload: &[u8]) -> Result<Filtered, DecodeError> {
    Err(DecodeError::Unsupported(Format::OtlpProtobuf, signal))
}

//! OTLP JSON: a borrowed walk of `{Logs,Traces,Metrics}Data` documents.

use tero_sdk::engine::Engine;

use crate::{DecodeError, Filtered, Format, Signal};

/// Filters an OTLP JSON document.
pub fn filter(_engine: &Engine, signal: Signal, _payload: &[u8]) -> Result<Filtered, DecodeError> {
    Err(DecodeError::Unsupported(Format::OtlpJson, signal))
}

//! Datadog intake payloads: v2 logs and v2 series.

use tero_sdk::engine::Engine;

use crate::{DecodeError, Filtered, Format, Signal};

/// Filters a Datadog logs or series payload.
pub fn filter(_engine: &Engine, format: Format, _payload: &[u8]) -> Result<Filtered, DecodeError> {
    let signal = match format {
        Format::DatadogSeries => Signal::Metric,
        _ => Signal::Log,
    };
    Err(DecodeError::Unsupported(format, signal))
}

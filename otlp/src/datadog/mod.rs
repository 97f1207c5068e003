//! Datadog intake payloads: v2 logs and v2 series.
//!
//! The same borrowed walk as OTLP JSON: each log or series is shown to the
//! engine as a lazy view of its slice of the payload, kept ones are copied
//! as they arrived, and a log a transform changes is re-serialized. How
//! Datadog fields map onto policy fields is documented in
//! `docs/datadog.md`. Byte counts for volume are 0 (the spec allows only
//! OTLP protobuf sizes there); drops count the element's JSON length.

mod logs;
mod series;
mod tags;
mod value;

use tero_sdk::engine::Engine;

use crate::{DecodeError, Filtered, Format, Signal};

/// Filters a Datadog logs (`Format::DatadogLogs`) or series
/// (`Format::DatadogSeries`) payload.
pub fn filter(engine: &Engine, format: Format, payload: &[u8]) -> Result<Filtered, DecodeError> {
    match format {
        Format::DatadogLogs => logs::filter(engine, payload),
        Format::DatadogSeries => series::filter(engine, payload),
        Format::OtlpProtobuf | Format::OtlpJson => {
            Err(DecodeError::Unsupported(format, Signal::Log))
        }
    }
}

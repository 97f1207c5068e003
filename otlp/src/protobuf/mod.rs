//! OTLP binary protobuf: a borrowed walk of `Export*ServiceRequest`.
//!
//! A request (the same bytes as `LogsData`, `TracesData`, `MetricsData`) is
//! filtered in three steps, none of which builds owned trees:
//!
//! 1. [`validate`]: one pass over every tag, with no side effects, so a
//!    malformed payload is refused before any policy counts it (the caller
//!    forwards it unchanged).
//! 2. [`walk`]: each record is handed to the engine as a lazy view of its
//!    bytes ([`message`]); transforms and trace sampling re-encode only the
//!    record, resource or scope they change ([`edit`]).
//! 3. [`rewrite`]: when something changed, the output is the payload's own
//!    byte ranges for everything kept, the re-encoded messages, and new
//!    length prefixes for the entries around them. Unknown fields and
//!    ordering survive; emptied scope and resource entries are pruned.
//!
//! Dropped records are counted on their policy as `record_drop(1, size)`
//! (for metrics, the metric's data points), `size` being the record's
//! encoded message length (without its tag and length prefix), which is
//! also what [`crate::Counts::protobuf_bytes_in`] adds up.
//!
//! Where protobuf allows what OTLP JSON cannot say:
//! - A singular field written more than once reads as its last occurrence
//!   (protobuf's rule for scalars; for messages such as `body`, `resource`
//!   and `scope` protobuf would merge the occurrences, which no encoder
//!   produces). A rewritten message replaces the last occurrence and drops
//!   the others.
//! - A transform that writes a string into `trace_id` or `span_id` stores
//!   the id the string spells in hex, or else the string's bytes.

mod edit;
mod logs;
mod message;
mod metrics;
mod rewrite;
mod schema;
mod traces;
mod validate;
mod walk;
mod wire;

use tero_sdk::engine::Engine;

use crate::{Counts, DecodeError, Filtered, Output, Signal};

pub use validate::MAX_DEPTH;

/// Filters an `Export{Logs,Trace,Metrics}ServiceRequest` through `engine`'s
/// policies for `signal`.
///
/// Malformed input (framing, wire types, UTF-8 of known strings, messages
/// nested deeper than [`MAX_DEPTH`]) is refused with
/// [`DecodeError::Protobuf`] before any policy runs or counts.
pub fn filter(engine: &Engine, signal: Signal, payload: &[u8]) -> Result<Filtered, DecodeError> {
    validate::request(payload, signal)?;
    let mut counts = Counts::default();
    let changes = match signal {
        Signal::Log => logs::evaluate(engine, payload, &mut counts),
        Signal::Trace => traces::evaluate(engine, payload, &mut counts),
        Signal::Metric => metrics::evaluate(engine, payload, &mut counts),
    };
    engine.record_batch(signal);
    let output = if changes.is_empty() {
        Output::Unchanged
    } else if changes.records_kept == 0 {
        Output::AllDropped
    } else {
        Output::Rewritten(rewrite::rewrite(payload, &changes))
    };
    Ok(Filtered { output, counts })
}

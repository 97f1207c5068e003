//! OTLP JSON: a borrowed walk of `{Logs,Traces,Metrics}Data` documents.
//!
//! The payload is parsed once, down to its records: the resource and scope
//! arrays are taken apart, everything else (records included) stays a
//! borrowed slice. Each record is then shown to the engine as a lazy view:
//! nothing of it is parsed until a policy asks, then its members (values
//! left raw) and its attribute list in one pass, and then only the values
//! asked for; strings with escapes are decoded, the others borrowed.
//!
//! Kept records are written back as the bytes they arrived as; a record a
//! transform or the tracestate changes becomes an owned `Value`, is changed
//! with the conformance runner's semantics (`mutate`) and re-serialized.
//! A resource or scope a transform changes is changed once for the records
//! that follow it, and written back changed. Scope and resource entries
//! emptied by drops are removed; every other member, unknown ones included,
//! is copied in its order. Between members the output is compact: only the
//! whitespace of the envelope changes.

pub(crate) mod envelope;
mod logs;
mod metrics;
mod mutate;
mod node;
pub(crate) mod raw;
pub(crate) mod read;
mod traces;
mod walk;

use serde_json::error::Category;
use tero_sdk::engine::Engine;

use crate::{Counts, DecodeError, Filtered, Output, Signal};
use envelope::Fate;
use walk::Path;

/// The filtered document itself, for callers that need it even when every
/// record was dropped (the conformance runner writes the emptied document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilteredDocument {
    /// The document without dropped records, or `None` when nothing was
    /// dropped or changed (the payload is the output).
    pub rewritten: Option<Vec<u8>>,
    /// At least one record was evaluated and none was kept.
    pub all_dropped: bool,
    pub counts: Counts,
}

/// Filters an OTLP JSON document.
pub fn filter(engine: &Engine, signal: Signal, payload: &[u8]) -> Result<Filtered, DecodeError> {
    let document = filter_document(engine, signal, payload)?;
    let output = match document {
        FilteredDocument {
            all_dropped: true, ..
        } => Output::AllDropped,
        FilteredDocument {
            rewritten: Some(bytes),
            ..
        } => Output::Rewritten(bytes),
        FilteredDocument {
            rewritten: None, ..
        } => Output::Unchanged,
    };
    Ok(Filtered {
        output,
        counts: document.counts,
    })
}

/// Filters an OTLP JSON document and returns it, emptied or not.
///
/// Counts what policies did on their counters (drops with the record's
/// JSON length as bytes; a metric's drop counts its data points) and one
/// batch for `signal`. A payload that is not JSON, or whose top level is
/// not an object, is an error and counts nothing.
pub fn filter_document(
    engine: &Engine,
    signal: Signal,
    payload: &[u8],
) -> Result<FilteredDocument, DecodeError> {
    let text = utf8(payload)?;
    let path = match signal {
        Signal::Log => Path::LOGS,
        Signal::Metric => Path::METRICS,
        Signal::Trace => Path::SPANS,
    };
    let mut document = envelope::parse(text, &path.keys)
        .map_err(|e| json_error(e, "an OTLP JSON document is an object"))?;

    let mut counts = Counts::default();
    let mut evaluated = 0u64;
    let mut kept = 0u64;
    let changed = walk::walk(&mut document, &path, |resource, scope, record| {
        match signal {
            Signal::Log => logs::filter_record(engine, resource, scope, record, &mut counts),
            Signal::Metric => metrics::filter_record(engine, resource, scope, record, &mut counts),
            Signal::Trace => traces::filter_record(engine, resource, scope, record, &mut counts),
        }
        evaluated += 1;
        kept += u64::from(!matches!(record.fate, Fate::Dropped));
    });
    engine.record_batch(signal);

    Ok(FilteredDocument {
        rewritten: changed.then(|| envelope::render(&document, payload.len())),
        all_dropped: evaluated > 0 && kept == 0,
        counts,
    })
}

/// The payload as text: JSON is UTF-8, and checking it once here lets
/// every later parse of a slice skip the check.
pub(crate) fn utf8(payload: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(payload).map_err(|e| {
        DecodeError::Json(format!(
            "not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })
}

/// A parse error as a decode error: syntax is `Json`, a value of the wrong
/// type where the format needs one is `Shape` (with what was expected).
pub(crate) fn json_error(e: serde_json::Error, expected: &str) -> DecodeError {
    match e.classify() {
        Category::Data => DecodeError::Shape(format!("{e} ({expected})")),
        _ => DecodeError::Json(e.to_string()),
    }
}

//! What the engine needs from a record: field lookup by selector, and for
//! logs and spans the few mutations that transforms and sampling make.
//!
//! Implementations live with the data (the Edge's exposition parser, the
//! conformance runner's OTLP JSON); the engine never sees concrete types.
//! Lookups should be lazy: the engine asks only for the fields that loaded
//! policies reference.

use super::selector::{LogSelector, MetricSelector, TraceSelector};
use super::value::FieldValue;

/// A metric (or one series of it) as policies see it.
pub trait MetricView {
    /// The value of `selector`, or `None` when the field is absent.
    /// `MetricSelector::Type` answers with the `MetricType` number, and
    /// `MetricSelector::Temporality` with the `AggregationTemporality` number.
    fn get(&self, selector: &MetricSelector) -> Option<FieldValue<'_>>;
}

/// A log record as policies see it.
pub trait LogView {
    fn get(&self, selector: &LogSelector) -> Option<FieldValue<'_>>;
}

/// The mutations log transforms make. Every method reports whether it
/// changed the record, which feeds the per-stage hit/miss counters.
pub trait LogViewMut: LogView {
    /// Deletes the field. `false` if it was absent.
    fn remove(&mut self, selector: &LogSelector) -> bool;
    /// Sets the field to a string. An absent field is created (attributes
    /// are appended at the end of their list); a present one is overwritten
    /// only when `overwrite` is true. `false` if nothing changed.
    fn set(&mut self, selector: &LogSelector, value: &str, overwrite: bool) -> bool;
    /// Moves the field's value to the flat key `to` of the same collection.
    /// No-op (`false`) if the source is absent, or if `to` exists and
    /// `upsert` is false.
    fn rename(&mut self, from: &LogSelector, to: &str, upsert: bool) -> bool;
}

/// A span as policies see it.
pub trait SpanView {
    fn get(&self, selector: &TraceSelector) -> Option<FieldValue<'_>>;
}

/// The one mutation trace sampling makes: recording the applied threshold.
pub trait SpanViewMut: SpanView {
    fn set_trace_state(&mut self, trace_state: String);
}

//! Compiled field selectors, one enum per signal.
//!
//! A selector names a field without its operand, so that every matcher on
//! the same field lands in one group and the field is looked up once per
//! record, however many policies use it.

use std::sync::Arc;

use tero_proto::policy::{LogField, MetricField, TraceField};

/// A path into (possibly nested) attributes; see `AttributePath`.
pub type AttrPath = Arc<[String]>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MetricSelector {
    Field(MetricField),
    DatapointAttribute(AttrPath),
    ResourceAttribute(AttrPath),
    ScopeAttribute(AttrPath),
    /// The metric's `MetricType`, answered as its enum number.
    Type,
    /// The `AggregationTemporality`, absent for gauges and summaries.
    Temporality,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LogSelector {
    Field(LogField),
    LogAttribute(AttrPath),
    ResourceAttribute(AttrPath),
    ScopeAttribute(AttrPath),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TraceSelector {
    Field(TraceField),
    SpanAttribute(AttrPath),
    ResourceAttribute(AttrPath),
    ScopeAttribute(AttrPath),
    /// The `SpanKind` number.
    Kind,
    /// The `SpanStatusCode` number (0 for unset).
    Status,
    /// Present (with the name as value) iff the span has an event so named.
    EventName(Arc<str>),
    /// The attribute from the first event that carries it.
    EventAttribute(AttrPath),
    /// Present (with the id as value) iff some link points at this trace id.
    LinkTraceId(Arc<[u8]>),
}

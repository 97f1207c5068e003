//! Spans as the engine sees them; sampling's tracestate edit.
//!
//! As in the conformance runner: kind and status code default to 0 (unset),
//! an event selector matches the first event that has the name or the
//! attribute, and a link selector matches any link to the trace id.

use tero_sdk::engine::{Decision, Engine, FieldValue, SpanView, SpanViewMut, TraceSelector};
use tero_sdk::proto::policy::TraceField;

use super::edit::with_field;
use super::message::{Message, attribute_in};
use super::walk::{Changes, Context, RecordChange, walk};
use super::wire::{self, Value};
use crate::Counts;

// Span field numbers.
const TRACE_ID: u32 = 1;
const SPAN_ID: u32 = 2;
const TRACE_STATE: u32 = 3;
const PARENT_SPAN_ID: u32 = 4;
const NAME: u32 = 5;
const KIND: u32 = 6;
const ATTRIBUTES: u32 = 9;
const EVENTS: u32 = 11;
const LINKS: u32 = 13;
const STATUS: u32 = 15;
// Span.Event, Span.Link and Status field numbers.
const EVENT_NAME: u32 = 2;
const EVENT_ATTRIBUTES: u32 = 3;
const LINK_TRACE_ID: u32 = 1;
const STATUS_CODE: u32 = 3;
// InstrumentationScope field numbers.
const SCOPE_NAME: u32 = 1;
const SCOPE_VERSION: u32 = 2;

/// Evaluates every span of a validated `ExportTraceServiceRequest`.
pub(crate) fn evaluate(engine: &Engine, payload: &[u8], counts: &mut Counts) -> Changes {
    walk(payload, ATTRIBUTES, |ctx, span| {
        let size = span.original_len() as u64;
        counts.records_in += 1;
        counts.protobuf_bytes_in += size;
        let outcome = engine.decide_span(&mut SpanRecordView { ctx, span });
        if let Some(shadow) = outcome.shadow {
            engine.shadow_trace_stats(shadow).record_drop(1, size);
        }
        if outcome.decision == Decision::Drop {
            if let Some(winner) = outcome.winner {
                engine.trace_stats(winner).record_drop(1, size);
            }
            counts.records_dropped += 1;
            return Some(RecordChange::Drop);
        }
        span.take_edit().map(RecordChange::Edited)
    })
}

struct SpanRecordView<'v, 'a> {
    ctx: &'v Context<'a>,
    span: &'v mut Message<'a>,
}

impl SpanRecordView<'_, '_> {
    /// The contents of the span's length-delimited fields numbered
    /// `number` (events, links), in order.
    fn repeated(&self, number: u32) -> impl Iterator<Item = &[u8]> {
        let bytes = self.span.bytes().unwrap_or_default();
        wire::fields(bytes)
            .filter(move |f| f.number == number && f.is_len())
            .map(move |f| f.content(bytes))
    }
}

/// An enum field: proto enums are `int32`, so a varint is read as one.
fn enum_value(v: u64) -> i64 {
    i64::from(v as i32)
}

impl SpanView for SpanRecordView<'_, '_> {
    fn get(&self, selector: &TraceSelector) -> Option<FieldValue<'_>> {
        match selector {
            TraceSelector::Field(TraceField::Name) => self.span.text(NAME),
            TraceSelector::Field(TraceField::TraceId) => self.span.id(TRACE_ID),
            TraceSelector::Field(TraceField::SpanId) => self.span.id(SPAN_ID),
            TraceSelector::Field(TraceField::ParentSpanId) => self.span.id(PARENT_SPAN_ID),
            TraceSelector::Field(TraceField::TraceState) => self.span.text(TRACE_STATE),
            TraceSelector::Field(TraceField::ResourceSchemaUrl) => {
                Some(FieldValue::str(self.ctx.resource_schema))
            }
            TraceSelector::Field(TraceField::ScopeSchemaUrl) => {
                Some(FieldValue::str(self.ctx.scope_schema))
            }
            TraceSelector::Field(TraceField::ScopeName) => self.ctx.scope.text(SCOPE_NAME),
            TraceSelector::Field(TraceField::ScopeVersion) => self.ctx.scope.text(SCOPE_VERSION),
            TraceSelector::Field(_) => None,
            TraceSelector::SpanAttribute(p) => self.span.attribute(p),
            TraceSelector::ResourceAttribute(p) => self.ctx.resource.attribute(p),
            TraceSelector::ScopeAttribute(p) => self.ctx.scope.attribute(p),
            TraceSelector::Kind => Some(FieldValue::Int(
                self.span.varint(KIND).map_or(0, enum_value),
            )),
            TraceSelector::Status => {
                let code = self.span.len_field(STATUS).and_then(|status| {
                    wire::fields(status)
                        .filter(|f| f.number == STATUS_CODE)
                        .filter_map(|f| match f.value {
                            Value::Varint(v) => Some(enum_value(v)),
                            _ => None,
                        })
                        .last()
                });
                Some(FieldValue::Int(code.unwrap_or(0)))
            }
            TraceSelector::EventName(name) => self.repeated(EVENTS).find_map(|event| {
                let event_name = wire::last_len(event, EVENT_NAME).unwrap_or_default();
                (event_name == name.as_bytes())
                    .then(|| std::str::from_utf8(event_name).ok().map(FieldValue::str))
                    .flatten()
            }),
            TraceSelector::EventAttribute(p) => self
                .repeated(EVENTS)
                .find_map(|event| attribute_in(event, EVENT_ATTRIBUTES, p)),
            TraceSelector::LinkTraceId(id) => self.repeated(LINKS).find_map(|link| {
                let trace_id = wire::last_len(link, LINK_TRACE_ID).unwrap_or_default();
                (trace_id == &**id).then(|| FieldValue::Bytes(trace_id.into()))
            }),
        }
    }
}

impl SpanViewMut for SpanRecordView<'_, '_> {
    fn set_trace_state(&mut self, trace_state: String) {
        let current = self.span.string(TRACE_STATE).unwrap_or_default();
        if current == trace_state {
            return;
        }
        let bytes = self.span.bytes().unwrap_or_default();
        let edited = with_field(bytes, TRACE_STATE, Some(trace_state.as_bytes()));
        self.span.replace(edited);
    }
}

//! OTLP JSON spans as engine views.

use std::borrow::Cow;

use serde_json::Value;
use tero_sdk::engine::{Engine, FieldValue, SpanView, SpanViewMut, TraceSelector};
use tero_sdk::proto::policy::TraceField;

use super::envelope::{Fate, Record};
use super::mutate::Target;
use super::raw;
use super::read::{self, RawObject};
use super::walk::Context;
use crate::Counts;

const SPAN_KINDS: [(&str, i64); 6] = [
    ("SPAN_KIND_UNSPECIFIED", 0),
    ("SPAN_KIND_INTERNAL", 1),
    ("SPAN_KIND_SERVER", 2),
    ("SPAN_KIND_CLIENT", 3),
    ("SPAN_KIND_PRODUCER", 4),
    ("SPAN_KIND_CONSUMER", 5),
];

const STATUS_CODES: [(&str, i64); 3] = [
    ("STATUS_CODE_UNSET", 0),
    ("STATUS_CODE_OK", 1),
    ("STATUS_CODE_ERROR", 2),
];

/// Evaluates one span: drops it, or keeps it with the sampling threshold
/// recorded in its tracestate.
pub(crate) fn filter_record<'a>(
    engine: &Engine,
    resource: &Context<'a>,
    scope: &Context<'a>,
    record: &mut Record<'a>,
    counts: &mut Counts,
) {
    let mut view = Span {
        span: RawObject::new(record.raw),
        trace_state: None,
        resource,
        scope,
    };
    let outcome = engine.decide_span(&mut view);
    let bytes = record.raw.get().len() as u64;
    counts.records_in += 1;
    if let Some(shadow) = outcome.shadow {
        engine.shadow_trace_stats(shadow).record_drop(1, bytes);
    }
    if !outcome.decision.keeps() {
        if let Some(winner) = outcome.winner {
            engine.trace_stats(winner).record_drop(1, bytes);
        }
        counts.records_dropped += 1;
        record.fate = Fate::Dropped;
    } else if let Some(rewritten) = view.rewritten() {
        record.fate = Fate::Rewritten(rewritten);
    }
}

pub(crate) struct Span<'c, 'a> {
    span: RawObject<'a>,
    /// Set by sampling; written into the span when it is kept.
    trace_state: Option<String>,
    resource: &'c Context<'a>,
    scope: &'c Context<'a>,
}

impl Span<'_, '_> {
    /// The span with the tracestate sampling set, if that changes it.
    fn rewritten(&self) -> Option<Value> {
        let new = self.trace_state.as_deref()?;
        let old = self.span.member("traceState").and_then(raw::as_str);
        if old.as_deref() == Some(new) {
            return None;
        }
        let mut span = raw::to_value(self.span.raw())?;
        let map = span.as_object_mut()?;
        map.insert("traceState".into(), Value::String(new.to_owned()));
        Some(span)
    }

    fn events(&self) -> impl Iterator<Item = RawObject<'_>> {
        self.span
            .member("events")
            .map(raw::elements)
            .unwrap_or_default()
            .into_iter()
            .map(RawObject::new)
    }
}

impl SpanView for Span<'_, '_> {
    fn get(&self, selector: &TraceSelector) -> Option<FieldValue<'_>> {
        let span = &self.span;
        match selector {
            TraceSelector::Field(TraceField::Name) => span.non_empty_str("name"),
            TraceSelector::Field(TraceField::TraceId) => span.hex("traceId"),
            TraceSelector::Field(TraceField::SpanId) => span.hex("spanId"),
            TraceSelector::Field(TraceField::ParentSpanId) => span.hex("parentSpanId"),
            TraceSelector::Field(TraceField::TraceState) => match &self.trace_state {
                Some(state) => Some(FieldValue::str(state)).filter(|_| !state.is_empty()),
                None => span.non_empty_str("traceState"),
            },
            TraceSelector::Field(TraceField::ResourceSchemaUrl) => {
                Some(FieldValue::str(&self.resource.schema))
            }
            TraceSelector::Field(TraceField::ScopeSchemaUrl) => {
                Some(FieldValue::str(&self.scope.schema))
            }
            TraceSelector::Field(TraceField::ScopeName) => self.scope.node.non_empty_str("name"),
            TraceSelector::Field(TraceField::ScopeVersion) => {
                self.scope.node.non_empty_str("version")
            }
            TraceSelector::Field(_) => None,
            TraceSelector::SpanAttribute(p) => span.attribute(p),
            TraceSelector::ResourceAttribute(p) => self.resource.node.get(Target::Attribute(p)),
            TraceSelector::ScopeAttribute(p) => self.scope.node.get(Target::Attribute(p)),
            TraceSelector::Kind => Some(FieldValue::Int(
                span.member("kind")
                    .and_then(|k| read::raw_enum_number(k, &SPAN_KINDS))
                    .unwrap_or(0),
            )),
            TraceSelector::Status => Some(FieldValue::Int(
                span.member("status")
                    .and_then(|s| RawObject::new(s).member("code"))
                    .and_then(|c| read::raw_enum_number(c, &STATUS_CODES))
                    .unwrap_or(0),
            )),
            TraceSelector::EventName(name) => self
                .events()
                .any(|e| e.member("name").and_then(raw::as_str).unwrap_or_default() == **name)
                .then(|| FieldValue::Str(Cow::Owned(name.to_string()))),
            TraceSelector::EventAttribute(p) => self.events().find_map(|e| e.attribute(p)),
            TraceSelector::LinkTraceId(id) => {
                let links = span.member("links")?;
                if raw::kind(links) != raw::Kind::Array {
                    return None;
                }
                raw::elements(links)
                    .into_iter()
                    .any(|l| {
                        let text = RawObject::new(l)
                            .member("traceId")
                            .and_then(raw::as_str)
                            .unwrap_or_default();
                        hex::decode(text.as_bytes()).is_ok_and(|b| b == **id)
                    })
                    .then(|| FieldValue::Bytes(Cow::Owned(id.to_vec())))
            }
        }
    }
}

impl SpanViewMut for Span<'_, '_> {
    fn set_trace_state(&mut self, trace_state: String) {
        // Only an object can take the member (a span that is not one is
        // passed through as it is).
        if raw::kind(self.span.raw()) == raw::Kind::Object {
            self.trace_state = Some(trace_state);
        }
    }
}

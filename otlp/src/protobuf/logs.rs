//! Log records as the engine sees them, and the edits log transforms make.
//!
//! The semantics are the conformance runner's over OTLP JSON, field for
//! field: empty strings and ids count as missing, schema URLs are always
//! present (possibly empty), attribute paths take the first entry with each
//! key and descend through kvlists, new attributes go at the end of their
//! list, a rename moves the value within its own collection (a top-level
//! field is renamed into the record's attributes), and a change to the
//! resource or scope is seen by the records after it.

use std::borrow::Cow;

use tero_sdk::engine::{Decision, Engine, FieldValue, LogSelector, LogView, LogViewMut};
use tero_sdk::proto::policy::LogField;

use super::edit::{AttrEdit, edit_attribute, string_any_value, with_field};
use super::message::{Location, Message, any_value, locate};
use super::walk::{Changes, Context, RecordChange, walk};
use crate::Counts;

// LogRecord field numbers.
const SEVERITY_TEXT: u32 = 3;
const BODY: u32 = 5;
const ATTRIBUTES: u32 = 6;
const TRACE_ID: u32 = 9;
const SPAN_ID: u32 = 10;
const EVENT_NAME: u32 = 12;

/// Evaluates every log record of a validated `ExportLogsServiceRequest`.
pub(crate) fn evaluate(engine: &Engine, payload: &[u8], counts: &mut Counts) -> Changes {
    walk(payload, ATTRIBUTES, |ctx, record| {
        let size = record.original_len() as u64;
        counts.records_in += 1;
        counts.protobuf_bytes_in += size;
        let outcome = engine.decide_log(&mut LogRecordView { ctx, record });
        if let Some(shadow) = outcome.shadow {
            engine.shadow_log_stats(shadow).record_drop(1, size);
        }
        if outcome.decision == Decision::Drop {
            if let Some(winner) = outcome.winner {
                engine.log_stats(winner).record_drop(1, size);
            }
            counts.records_dropped += 1;
            return Some(RecordChange::Drop);
        }
        record.take_edit().map(RecordChange::Edited)
    })
}

/// Which message holds an attribute list.
#[derive(Clone, Copy)]
enum Owner {
    Record,
    Resource,
    Scope,
}

struct LogRecordView<'v, 'a> {
    ctx: &'v mut Context<'a>,
    record: &'v mut Message<'a>,
}

/// The LogRecord field a top-level selector names, if transforms can
/// change it.
fn field_number(field: LogField) -> Option<u32> {
    Some(match field {
        LogField::Body => BODY,
        LogField::SeverityText => SEVERITY_TEXT,
        LogField::TraceId => TRACE_ID,
        LogField::SpanId => SPAN_ID,
        LogField::EventName => EVENT_NAME,
        _ => return None,
    })
}

impl<'a> LogRecordView<'_, 'a> {
    fn owner(&self, owner: Owner) -> &Message<'a> {
        match owner {
            Owner::Record => self.record,
            Owner::Resource => &self.ctx.resource,
            Owner::Scope => &self.ctx.scope,
        }
    }

    fn owner_mut(&mut self, owner: Owner) -> &mut Message<'a> {
        match owner {
            Owner::Record => self.record,
            Owner::Resource => &mut self.ctx.resource,
            Owner::Scope => &mut self.ctx.scope,
        }
    }

    /// What is at `path` of `owner`'s attributes (`None`: no such message).
    fn locate(&self, owner: Owner, path: &[String]) -> Option<Location<'_>> {
        let message = self.owner(owner);
        Some(locate(message.bytes()?, message.attr_field(), path))
    }

    /// Applies an attribute edit; false when it changes nothing.
    fn edit(&mut self, owner: Owner, path: &[String], edit: AttrEdit<'_>) -> bool {
        let message = self.owner_mut(owner);
        let edited = message
            .bytes()
            .and_then(|bytes| edit_attribute(bytes, message.attr_field(), path, edit));
        match edited {
            Some(bytes) => {
                message.replace(bytes);
                true
            }
            None => false,
        }
    }

    /// Removes a value and returns it as an `AnyValue` content (`None`
    /// when there was nothing to take).
    fn take(&mut self, selector: &LogSelector) -> Option<Vec<u8>> {
        if let LogSelector::Field(field) = selector {
            let number = field_number(*field)?;
            let value = match number {
                BODY => self
                    .record
                    .len_field(BODY)
                    .filter(|v| any_value(v).is_some())
                    .map(<[u8]>::to_vec),
                TRACE_ID | SPAN_ID => self
                    .record
                    .len_field(number)
                    .filter(|id| !id.is_empty())
                    .map(|id| string_any_value(&hex::encode(id))),
                _ => self
                    .record
                    .string(number)
                    .filter(|s| !s.is_empty())
                    .map(string_any_value),
            }?;
            let bytes = self.record.bytes().unwrap_or_default();
            let without = with_field(bytes, number, None);
            self.record.replace(without);
            return Some(value);
        }
        let (owner, path) = attribute_owner(selector)?;
        let value = match self.locate(owner, path)? {
            Location::Found(value) => value.map(<[u8]>::to_vec),
            Location::Absent | Location::Blocked => return None,
        };
        self.edit(owner, path, AttrEdit::Remove);
        value
    }
}

/// The message and path of an attribute selector.
fn attribute_owner(selector: &LogSelector) -> Option<(Owner, &[String])> {
    match selector {
        LogSelector::LogAttribute(p) => Some((Owner::Record, p)),
        LogSelector::ResourceAttribute(p) => Some((Owner::Resource, p)),
        LogSelector::ScopeAttribute(p) => Some((Owner::Scope, p)),
        LogSelector::Field(_) => None,
    }
}

/// The bytes a string written to an id field stands for: the id it spells
/// in hex, or else the text itself.
fn id_bytes(value: &str) -> Cow<'_, [u8]> {
    match hex::decode(value) {
        Ok(bytes) => Cow::Owned(bytes),
        Err(_) => Cow::Borrowed(value.as_bytes()),
    }
}

impl LogView for LogRecordView<'_, '_> {
    fn get(&self, selector: &LogSelector) -> Option<FieldValue<'_>> {
        match selector {
            LogSelector::Field(LogField::Body) => self.record.len_field(BODY).and_then(any_value),
            LogSelector::Field(LogField::SeverityText) => self.record.text(SEVERITY_TEXT),
            LogSelector::Field(LogField::TraceId) => self.record.id(TRACE_ID),
            LogSelector::Field(LogField::SpanId) => self.record.id(SPAN_ID),
            LogSelector::Field(LogField::EventName) => self.record.text(EVENT_NAME),
            LogSelector::Field(LogField::ResourceSchemaUrl) => {
                Some(FieldValue::str(self.ctx.resource_schema))
            }
            LogSelector::Field(LogField::ScopeSchemaUrl) => {
                Some(FieldValue::str(self.ctx.scope_schema))
            }
            LogSelector::Field(_) => None,
            LogSelector::LogAttribute(p) => self.record.attribute(p),
            LogSelector::ResourceAttribute(p) => self.ctx.resource.attribute(p),
            LogSelector::ScopeAttribute(p) => self.ctx.scope.attribute(p),
        }
    }
}

impl LogViewMut for LogRecordView<'_, '_> {
    fn remove(&mut self, selector: &LogSelector) -> bool {
        self.take(selector).is_some()
    }

    fn set(&mut self, selector: &LogSelector, value: &str, overwrite: bool) -> bool {
        if let LogSelector::Field(field) = selector {
            let Some(number) = field_number(*field) else {
                return false;
            };
            if !overwrite && self.get(selector).is_some() {
                return false;
            }
            let content: Cow<'_, [u8]> = match number {
                BODY => Cow::Owned(string_any_value(value)),
                TRACE_ID | SPAN_ID => id_bytes(value),
                _ => Cow::Borrowed(value.as_bytes()),
            };
            let bytes = self.record.bytes().unwrap_or_default();
            let edited = with_field(bytes, number, Some(&content));
            self.record.replace(edited);
            return true;
        }
        let Some((owner, path)) = attribute_owner(selector) else {
            return false;
        };
        match self.locate(owner, path) {
            None | Some(Location::Blocked) => false,
            Some(Location::Found(_)) if !overwrite => false,
            Some(_) => self.edit(owner, path, AttrEdit::Put(&string_any_value(value))),
        }
    }

    fn rename(&mut self, from: &LogSelector, to: &str, upsert: bool) -> bool {
        if self.get(from).is_none() {
            return false;
        }
        // The target lives in the same collection as the source; a
        // top-level field is renamed into the record's attributes.
        let (owner, mut target) = match attribute_owner(from) {
            Some((owner, path)) => (owner, path[..path.len().saturating_sub(1)].to_vec()),
            None => (Owner::Record, Vec::new()),
        };
        target.push(to.to_owned());
        let target_exists = matches!(self.locate(owner, &target), Some(Location::Found(Some(_))));
        if target_exists && !upsert {
            return false;
        }
        let Some(value) = self.take(from) else {
            return false;
        };
        self.edit(owner, &target, AttrEdit::Put(&value))
    }
}

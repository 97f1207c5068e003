//! OTLP JSON log records as engine views.

use tero_sdk::engine::{Engine, FieldValue, LogSelector, LogView, LogViewMut};
use tero_sdk::proto::policy::LogField;

use super::envelope::{Fate, Record};
use super::mutate::Target;
use super::node::Node;
use super::read::RawObject;
use super::walk::Context;
use crate::Counts;

/// Evaluates one log record: drops it, or keeps it with whatever the
/// matching policies' transforms changed.
pub(crate) fn filter_record<'a>(
    engine: &Engine,
    resource: &mut Context<'a>,
    scope: &mut Context<'a>,
    record: &mut Record<'a>,
    counts: &mut Counts,
) {
    let mut node = Node::Raw(RawObject::new(record.raw));
    let mut view = LogRecord {
        record: &mut node,
        resource,
        scope,
    };
    let outcome = engine.decide_log(&mut view);
    let bytes = record.raw.get().len() as u64;
    counts.records_in += 1;
    if let Some(shadow) = outcome.shadow {
        engine.shadow_log_stats(shadow).record_drop(1, bytes);
    }
    if !outcome.decision.keeps() {
        if let Some(winner) = outcome.winner {
            engine.log_stats(winner).record_drop(1, bytes);
        }
        counts.records_dropped += 1;
        record.fate = Fate::Dropped;
    } else if let Some(value) = node.into_owned() {
        record.fate = Fate::Rewritten(value);
    }
}

/// A log record with the resource and scope it belongs to. Changes to the
/// resource or scope are seen by the records after it, as in the payload.
pub(crate) struct LogRecord<'v, 'a> {
    pub(crate) record: &'v mut Node<'a>,
    pub(crate) resource: &'v mut Context<'a>,
    pub(crate) scope: &'v mut Context<'a>,
}

impl<'v, 'a> LogRecord<'v, 'a> {
    /// The node a selector reads or writes, and what it addresses there.
    fn owner<'s>(&'s mut self, selector: &'s LogSelector) -> (&'s mut Node<'a>, Target<'s>) {
        match selector {
            LogSelector::Field(field) => (&mut *self.record, Target::Field(*field)),
            LogSelector::LogAttribute(p) => (&mut *self.record, Target::Attribute(p)),
            LogSelector::ResourceAttribute(p) => (&mut self.resource.node, Target::Attribute(p)),
            LogSelector::ScopeAttribute(p) => (&mut self.scope.node, Target::Attribute(p)),
        }
    }
}

impl LogView for LogRecord<'_, '_> {
    fn get(&self, selector: &LogSelector) -> Option<FieldValue<'_>> {
        match selector {
            LogSelector::Field(LogField::ResourceSchemaUrl) => {
                Some(FieldValue::str(&self.resource.schema))
            }
            LogSelector::Field(LogField::ScopeSchemaUrl) => {
                Some(FieldValue::str(&self.scope.schema))
            }
            LogSelector::Field(field) => self.record.get(Target::Field(*field)),
            LogSelector::LogAttribute(p) => self.record.get(Target::Attribute(p)),
            LogSelector::ResourceAttribute(p) => self.resource.node.get(Target::Attribute(p)),
            LogSelector::ScopeAttribute(p) => self.scope.node.get(Target::Attribute(p)),
        }
    }
}

impl LogViewMut for LogRecord<'_, '_> {
    fn remove(&mut self, selector: &LogSelector) -> bool {
        let (node, target) = self.owner(selector);
        node.remove(target)
    }

    fn set(&mut self, selector: &LogSelector, value: &str, overwrite: bool) -> bool {
        let (node, target) = self.owner(selector);
        node.set(target, value, overwrite)
    }

    fn rename(&mut self, from: &LogSelector, to: &str, upsert: bool) -> bool {
        let (node, target) = self.owner(from);
        node.rename(target, to, upsert)
    }
}

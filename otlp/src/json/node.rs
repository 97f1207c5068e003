//! A log record, resource or scope that stays a slice of the payload until
//! a transform changes it, and is then an owned `Value`.

use serde_json::Value;
use serde_json::value::RawValue;
use tero_sdk::engine::FieldValue;
use tero_sdk::proto::policy::LogField;

use super::mutate::{self, Target};
use super::raw;
use super::read::{self, RawObject};

pub(crate) enum Node<'a> {
    /// A resource or scope the payload does not have.
    Absent,
    Raw(RawObject<'a>),
    /// Converted for a transform: written out re-serialized.
    Owned(Value),
}

impl<'a> Node<'a> {
    pub(crate) fn new(raw: Option<&'a RawValue>) -> Self {
        raw.map_or(Node::Absent, |raw| Node::Raw(RawObject::new(raw)))
    }

    /// The owned value when a transform changed this node.
    pub(crate) fn into_owned(self) -> Option<Value> {
        match self {
            Node::Owned(v) => Some(v),
            _ => None,
        }
    }

    /// A top-level string member, non-empty (resource and scope names).
    pub(crate) fn non_empty_str(&self, key: &str) -> Option<FieldValue<'_>> {
        match self {
            Node::Absent => None,
            Node::Raw(o) => o.non_empty_str(key),
            Node::Owned(v) => read::non_empty_str(v, key),
        }
    }

    /// The value of a log record field or of an attribute path.
    pub(crate) fn get(&self, target: Target<'_>) -> Option<FieldValue<'_>> {
        match (self, target) {
            (Node::Absent, _) => None,
            (Node::Raw(o), Target::Field(field)) => match field {
                LogField::Body => o.member("body").and_then(read::raw_any_value),
                LogField::SeverityText => o.non_empty_str("severityText"),
                LogField::TraceId => o.hex("traceId"),
                LogField::SpanId => o.hex("spanId"),
                LogField::EventName => o.non_empty_str("eventName"),
                _ => None,
            },
            (Node::Raw(o), Target::Attribute(path)) => o.attribute(path),
            (Node::Owned(v), Target::Field(field)) => match field {
                LogField::Body => v.get("body").and_then(read::any_value),
                LogField::SeverityText => read::non_empty_str(v, "severityText"),
                LogField::TraceId => read::hex_field(v, "traceId"),
                LogField::SpanId => read::hex_field(v, "spanId"),
                LogField::EventName => read::non_empty_str(v, "eventName"),
                _ => None,
            },
            (Node::Owned(v), Target::Attribute(path)) => read::attribute(v, path),
        }
    }

    /// Whether an AnyValue is at `path` of the attributes (for renames: is
    /// the target taken?).
    pub(crate) fn has_attribute_value(&self, path: &[String]) -> bool {
        match self {
            Node::Absent => false,
            Node::Raw(o) => o.lookup(path).is_some(),
            Node::Owned(v) => read::lookup(v.get("attributes"), path).is_some(),
        }
    }

    /// False only when removing `target` certainly changes nothing, so the
    /// node can stay raw.
    fn may_hold(&self, target: Target<'_>) -> bool {
        match (self, target) {
            (Node::Absent, _) => false,
            (Node::Owned(_), _) => true,
            (Node::Raw(o), Target::Field(field)) => {
                mutate::field_key(field).is_some_and(|key| o.member(key).is_some())
            }
            (Node::Raw(o), Target::Attribute(path)) => {
                path.first().is_some_and(|first| o.has_entry(first))
            }
        }
    }

    /// The node as an owned value, converting it on the first change.
    fn owned(&mut self) -> Option<&mut Value> {
        if let Node::Raw(o) = self {
            *self = Node::Owned(raw::to_value(o.raw()));
        }
        match self {
            Node::Owned(v) => Some(v),
            _ => None,
        }
    }

    /// `LogViewMut::remove` on this node.
    pub(crate) fn remove(&mut self, target: Target<'_>) -> bool {
        if !self.may_hold(target) {
            return false;
        }
        self.owned()
            .is_some_and(|v| mutate::take(v, target).is_some())
    }

    /// `LogViewMut::set` on this node.
    pub(crate) fn set(&mut self, target: Target<'_>, value: &str, overwrite: bool) -> bool {
        let present = match target {
            Target::Field(_) => self.get(target).is_some(),
            Target::Attribute(path) => self.has_attribute_value(path),
        };
        // Nothing changes: the field is there and may not be overwritten
        // (or, for fields, is not one a transform may write).
        if present && !overwrite {
            return false;
        }
        if let Target::Field(field) = target
            && mutate::field_key(field).is_none()
        {
            return false;
        }
        let present = matches!(target, Target::Field(_)) && present;
        self.owned()
            .is_some_and(|v| mutate::set(v, target, value, overwrite, present))
    }

    /// `LogViewMut::rename` on this node.
    pub(crate) fn rename(&mut self, from: Target<'_>, to: &str, upsert: bool) -> bool {
        if self.get(from).is_none() {
            return false;
        }
        if !upsert && self.has_attribute_value(&mutate::rename_target(from, to)) {
            return false;
        }
        self.owned()
            .is_some_and(|v| mutate::rename(v, from, to, upsert))
    }
}

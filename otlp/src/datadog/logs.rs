//! Datadog logs (`POST /api/v2/logs`): a JSON array of log objects, or a
//! single object.
//!
//! The mapping onto policy fields is documented in `docs/datadog.md`:
//! `message` is the body, `status` the severity text, every other top-level
//! key a log attribute (nested objects by multi-segment paths, and a dotted
//! name such as `http.status_code` finds `{"http": {"status_code": …}}`
//! when no key is spelled so), `[ddtags, KEY]` one tag of `ddtags`, and
//! the resource attributes `service.name` and `host.name` are `service` and
//! `hostname`. Dropped logs are removed from the array, logs a transform
//! changes are re-serialized, and every other element is copied as it is.

use std::borrow::Cow;

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tero_sdk::engine::{Engine, FieldValue, LogSelector, LogView, LogViewMut};
use tero_sdk::proto::policy::LogField;

use super::tags;
use super::value::{raw_leaf, value_leaf};
use crate::json::raw::{self, Kind};
use crate::json::read::RawObject;
use crate::json::{json_error, utf8};
use crate::{Counts, DecodeError, Filtered, Output, Signal};

/// Keys that are fields, not attributes.
const BODY: &str = "message";
const SEVERITY: &str = "status";
const TAGS: &str = "ddtags";

/// Resource attributes and the log keys that hold them.
const RESOURCE_KEYS: [(&str, &str); 2] = [("service.name", "service"), ("host.name", "hostname")];

pub(crate) fn filter(engine: &Engine, payload: &[u8]) -> Result<Filtered, DecodeError> {
    let text = utf8(payload)?;
    let (logs, single) = parse(text)?;
    let mut counts = Counts::default();
    let mut fates = Vec::with_capacity(logs.len());
    for raw in &logs {
        fates.push(filter_log(engine, raw, &mut counts));
    }
    engine.record_batch(Signal::Log);

    let changed = fates.iter().any(|f| !matches!(f, Fate::Kept));
    let output = if !changed {
        Output::Unchanged
    } else if fates.iter().all(|f| matches!(f, Fate::Dropped)) {
        Output::AllDropped
    } else {
        Output::Rewritten(render(&logs, &fates, single, payload.len()))
    };
    Ok(Filtered { output, counts })
}

/// The log objects of a payload, and whether it was a single object.
fn parse(text: &str) -> Result<(Vec<&RawValue>, bool), DecodeError> {
    const EXPECTED: &str = "Datadog logs are a JSON array of objects, or one object";
    match text.trim_start().as_bytes().first() {
        Some(b'[') => serde_json::from_str::<Vec<&RawValue>>(text)
            .map(|logs| (logs, false))
            .map_err(|e| json_error(e, EXPECTED)),
        Some(b'{') => serde_json::from_str::<&RawValue>(text)
            .map(|log| (vec![log], true))
            .map_err(|e| json_error(e, EXPECTED)),
        _ => Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => DecodeError::Shape(EXPECTED.to_owned()),
            Err(e) => json_error(e, EXPECTED),
        }),
    }
}

enum Fate {
    Kept,
    Dropped,
    Rewritten(Value),
}

fn filter_log(engine: &Engine, raw: &RawValue, counts: &mut Counts) -> Fate {
    let mut log = DatadogLog::Raw(RawObject::plain(raw));
    let outcome = engine.decide_log(&mut log);
    let bytes = raw.get().len() as u64;
    counts.records_in += 1;
    if let Some(shadow) = outcome.shadow {
        engine.shadow_log_stats(shadow).record_drop(1, bytes);
    }
    if !outcome.decision.keeps() {
        if let Some(winner) = outcome.winner {
            engine.log_stats(winner).record_drop(1, bytes);
        }
        counts.records_dropped += 1;
        return Fate::Dropped;
    }
    match log {
        DatadogLog::Owned(value) => Fate::Rewritten(value),
        DatadogLog::Raw(_) => Fate::Kept,
    }
}

fn render(logs: &[&RawValue], fates: &[Fate], single: bool, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    if !single {
        out.push(b'[');
    }
    let mut first = true;
    for (raw, fate) in logs.iter().zip(fates) {
        if matches!(fate, Fate::Dropped) {
            continue;
        }
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        match fate {
            Fate::Rewritten(value) => raw::write_value(&mut out, value),
            _ => out.extend_from_slice(raw.get().as_bytes()),
        }
    }
    if !single {
        out.push(b']');
    }
    out
}

/// Where an attribute path lands in a log object.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// A (possibly nested) key.
    Key(Vec<String>),
    /// One tag of `ddtags`.
    Tag(String),
}

/// A log object: a slice of the payload until a transform changes it.
enum DatadogLog<'a> {
    Raw(RawObject<'a>),
    Owned(Value),
}

impl<'a> DatadogLog<'a> {
    /// The value at a key path, whatever its type.
    fn leaf(&self, path: &[String]) -> Option<Leaf<'_>> {
        let (first, rest) = path.split_first()?;
        match self {
            DatadogLog::Raw(o) => {
                let mut at = o.member(first)?;
                for segment in rest {
                    at = raw::member(&raw::members(at), segment)?;
                }
                Some(Leaf::Raw(at))
            }
            DatadogLog::Owned(v) => {
                let mut at = v.get(first)?;
                for segment in rest {
                    at = at.get(segment)?;
                }
                Some(Leaf::Owned(at))
            }
        }
    }

    fn read(&self, path: &[String]) -> Option<FieldValue<'_>> {
        match self.leaf(path)? {
            Leaf::Raw(raw) => raw_leaf(raw),
            Leaf::Owned(value) => value_leaf(value),
        }
    }

    /// The `ddtags` string, when the log has one.
    fn tag_list(&self) -> Option<Cow<'_, str>> {
        match self.leaf(&[TAGS.to_owned()])? {
            Leaf::Raw(raw) => raw::as_str(raw),
            Leaf::Owned(value) => value.as_str().map(Cow::Borrowed),
        }
    }

    /// Where `path` is in this log, if it is there: spelled as given, or
    /// else with dotted segments taken as nested keys.
    fn locate(&self, path: &[String]) -> Option<Place> {
        if let Some(place) = self.locate_exactly(path) {
            return Some(place);
        }
        if !path.iter().any(|s| s.contains('.')) {
            return None;
        }
        let split: Vec<String> = path
            .iter()
            .flat_map(|s| s.split('.'))
            .map(str::to_owned)
            .collect();
        self.locate_exactly(&split)
    }

    fn locate_exactly(&self, path: &[String]) -> Option<Place> {
        if let [first, tag] = path
            && first == TAGS
            && let Some(list) = self.tag_list()
        {
            return tags::find(&list, tag).map(|_| Place::Tag(tag.clone()));
        }
        self.leaf(path).map(|_| Place::Key(path.to_vec()))
    }

    /// Where a new attribute at `path` goes: a tag for `[ddtags, KEY]` when
    /// `ddtags` is a string or absent, else the key path as spelled.
    fn place_new(&self, path: &[String]) -> Place {
        if let [first, tag] = path
            && first == TAGS
            && (self.leaf(&path[..1]).is_none() || self.tag_list().is_some())
        {
            return Place::Tag(tag.clone());
        }
        Place::Key(path.to_vec())
    }

    fn read_place(&self, place: &Place) -> Option<FieldValue<'_>> {
        match place {
            Place::Key(path) => self.read(path),
            Place::Tag(key) => {
                let value = match self.tag_list()? {
                    Cow::Borrowed(list) => Cow::Borrowed(tags::find(list, key)?),
                    // `ddtags` with escapes: the decoded list is not kept.
                    Cow::Owned(list) => Cow::Owned(tags::find(&list, key)?.to_owned()),
                };
                Some(FieldValue::Str(value))
            }
        }
    }

    /// The log as an owned object, converted on the first change; `None`
    /// when it is not an object (or too deep to convert): it stays as is.
    fn object(&mut self) -> Option<&mut Map<String, Value>> {
        if let DatadogLog::Raw(o) = self {
            if raw::kind(o.raw()) != Kind::Object {
                return None;
            }
            *self = DatadogLog::Owned(raw::to_value(o.raw())?);
        }
        match self {
            DatadogLog::Owned(v) => v.as_object_mut(),
            DatadogLog::Raw(_) => None,
        }
    }

    fn remove_place(&mut self, place: &Place) -> Option<Value> {
        match place {
            Place::Key(path) => {
                // Absent: nothing to remove, and the log stays as it came.
                self.leaf(path)?;
                let (last, parents) = path.split_last()?;
                descend(self.object()?, parents, false)?.remove(last)
            }
            // Reported as removed: the tag list changed.
            Place::Tag(key) => {
                let list = self.tag_list()?.into_owned();
                let edited = tags::remove(&list, key)?;
                self.object()?.insert(TAGS.into(), Value::String(edited));
                Some(Value::Null)
            }
        }
    }

    fn write_place(&mut self, place: &Place, value: Value) -> bool {
        match place {
            Place::Key(path) => {
                let Some((last, parents)) = path.split_last() else {
                    return false;
                };
                let Some(object) = self.object() else {
                    return false;
                };
                let Some(parent) = descend(object, parents, true) else {
                    return false;
                };
                parent.insert(last.clone(), value);
                true
            }
            Place::Tag(key) => {
                let list = self.tag_list().map(|l| l.into_owned()).unwrap_or_default();
                let text = match &value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let Some(edited) = tags::set(&list, key, &text, true) else {
                    return false;
                };
                self.object()
                    .map(|o| o.insert(TAGS.into(), Value::String(edited)))
                    .is_some()
            }
        }
    }
}

/// The object at `parents` below `object`, created on the way when
/// `create` is set; `None` when a segment is missing (and not created) or
/// holds something other than an object.
fn descend<'m>(
    object: &'m mut Map<String, Value>,
    parents: &[String],
    create: bool,
) -> Option<&'m mut Map<String, Value>> {
    let mut at = object;
    for segment in parents {
        if !at.contains_key(segment) {
            if !create {
                return None;
            }
            at.insert(segment.clone(), Value::Object(Map::new()));
        }
        at = at.get_mut(segment)?.as_object_mut()?;
    }
    Some(at)
}

enum Leaf<'v> {
    Raw(&'v RawValue),
    Owned(&'v Value),
}

/// What a selector addresses in a Datadog log.
enum Target<'s> {
    /// A top-level key standing for a field (`message`, `status`, and for
    /// the resource attributes `service`, `hostname`).
    Key(&'static str),
    Attribute(&'s [String]),
    /// Nothing in a Datadog log: reads as absent, changes nothing.
    Nothing,
}

fn target(selector: &LogSelector) -> Target<'_> {
    match selector {
        LogSelector::Field(LogField::Body) => Target::Key(BODY),
        LogSelector::Field(LogField::SeverityText) => Target::Key(SEVERITY),
        LogSelector::Field(_) => Target::Nothing,
        LogSelector::LogAttribute(path) => match path.first().map(String::as_str) {
            Some(BODY | SEVERITY) | None => Target::Nothing,
            Some(_) => Target::Attribute(path),
        },
        LogSelector::ResourceAttribute(path) => {
            resource_key(path).map_or(Target::Nothing, Target::Key)
        }
        LogSelector::ScopeAttribute(_) => Target::Nothing,
    }
}

fn resource_key(path: &[String]) -> Option<&'static str> {
    let [name] = path else { return None };
    RESOURCE_KEYS
        .iter()
        .find(|(attribute, _)| attribute == name)
        .map(|(_, key)| *key)
}

impl LogView for DatadogLog<'_> {
    fn get(&self, selector: &LogSelector) -> Option<FieldValue<'_>> {
        match target(selector) {
            Target::Key(SEVERITY) => match self.read(&[SEVERITY.to_owned()])? {
                FieldValue::Str(s) if !s.is_empty() => Some(FieldValue::Str(s)),
                _ => None,
            },
            Target::Key(key) => self.read(&[key.to_owned()]),
            Target::Attribute(path) => self.read_place(&self.locate(path)?),
            Target::Nothing => None,
        }
    }
}

impl LogViewMut for DatadogLog<'_> {
    fn remove(&mut self, selector: &LogSelector) -> bool {
        let place = match target(selector) {
            Target::Key(key) => Place::Key(vec![key.to_owned()]),
            Target::Attribute(path) => match self.locate(path) {
                Some(place) => place,
                None => return false,
            },
            Target::Nothing => return false,
        };
        self.remove_place(&place).is_some()
    }

    fn set(&mut self, selector: &LogSelector, value: &str, overwrite: bool) -> bool {
        let (place, present) = match target(selector) {
            Target::Key(key) => (
                Place::Key(vec![key.to_owned()]),
                self.get(selector).is_some(),
            ),
            Target::Attribute(path) => match self.locate(path) {
                Some(place) => (place, true),
                None => (self.place_new(path), false),
            },
            Target::Nothing => return false,
        };
        if present && !overwrite {
            return false;
        }
        self.write_place(&place, Value::String(value.to_owned()))
    }

    fn rename(&mut self, from: &LogSelector, to: &str, upsert: bool) -> bool {
        if self.get(from).is_none() {
            return false;
        }
        let (source, target) = match target(from) {
            // A field renamed becomes a top-level attribute.
            Target::Key(key) if matches!(from, LogSelector::Field(_)) => (
                Place::Key(vec![key.to_owned()]),
                Place::Key(vec![to.to_owned()]),
            ),
            // A resource attribute moves only to the other one.
            Target::Key(key) => {
                let Some(other) = resource_key(&[to.to_owned()]) else {
                    return false;
                };
                (
                    Place::Key(vec![key.to_owned()]),
                    Place::Key(vec![other.to_owned()]),
                )
            }
            Target::Attribute(path) => match self.locate(path) {
                Some(Place::Key(p)) => {
                    let mut sibling = p[..p.len().saturating_sub(1)].to_vec();
                    sibling.push(to.to_owned());
                    (Place::Key(p), Place::Key(sibling))
                }
                Some(Place::Tag(key)) => {
                    let Some(list) = self.tag_list().map(|l| l.into_owned()) else {
                        return false;
                    };
                    let Some(edited) = tags::rename(&list, &key, to, upsert) else {
                        return false;
                    };
                    return self
                        .object()
                        .map(|o| o.insert(TAGS.into(), Value::String(edited)))
                        .is_some();
                }
                None => return false,
            },
            Target::Nothing => return false,
        };
        let Place::Key(target_path) = &target else {
            return false;
        };
        if self.leaf(target_path).is_some() && !upsert {
            return false;
        }
        let Some(value) = self.remove_place(&source) else {
            return false;
        };
        self.write_place(&target, value)
    }
}

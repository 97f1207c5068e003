//! Log transforms on owned OTLP JSON: the conformance runner's semantics,
//! unchanged, applied to the one object a transform touches (the record,
//! or its resource or scope).
//!
//! A target is a top-level field of the record or an attribute path of the
//! owner. Attributes are created at the end of their list (intermediate
//! kvlists on the way down), and a field renamed goes into the record's
//! attributes.

use serde_json::{Value, json};
use tero_sdk::proto::policy::LogField;

use super::read::{any_value, lookup, str_field};

/// What a log transform addresses within its owner.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'s> {
    Field(LogField),
    Attribute(&'s [String]),
}

/// The member of a log record holding `field`, for the fields a transform
/// may change (schema URLs are not the record's).
pub(crate) fn field_key(field: LogField) -> Option<&'static str> {
    Some(match field {
        LogField::Body => "body",
        LogField::SeverityText => "severityText",
        LogField::TraceId => "traceId",
        LogField::SpanId => "spanId",
        LogField::EventName => "eventName",
        _ => return None,
    })
}

fn string_any_value(s: &str) -> Value {
    json!({"stringValue": s})
}

fn position(list: &[Value], key: &str) -> Option<usize> {
    list.iter().position(|kv| str_field(kv, "key") == key)
}

/// The attribute list that holds the last segment of `path`, created on the
/// way down when `create` is set.
fn list_mut<'v>(owner: &'v mut Value, path: &[String], create: bool) -> Option<&'v mut Vec<Value>> {
    let map = owner.as_object_mut()?;
    if !map.contains_key("attributes") {
        if !create {
            return None;
        }
        map.insert("attributes".into(), json!([]));
    }
    let mut list = map.get_mut("attributes")?.as_array_mut()?;
    for segment in &path[..path.len().saturating_sub(1)] {
        let position = match position(list, segment) {
            Some(p) => p,
            None if create => {
                list.push(json!({"key": segment, "value": {"kvlistValue": {"values": []}}}));
                list.len() - 1
            }
            None => return None,
        };
        list = list[position]
            .get_mut("value")?
            .get_mut("kvlistValue")?
            .get_mut("values")?
            .as_array_mut()?;
    }
    Some(list)
}

/// Takes a value out of `owner`, as an AnyValue.
pub(crate) fn take(owner: &mut Value, target: Target<'_>) -> Option<Value> {
    match target {
        Target::Field(field) => {
            let key = field_key(field)?;
            let value = owner.as_object_mut()?.remove(key)?;
            match key {
                "body" => Some(value).filter(|v| any_value(v).is_some()),
                _ => value
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(string_any_value),
            }
        }
        Target::Attribute(path) => {
            let list = list_mut(owner, path, false)?;
            let at = position(list, path.last()?)?;
            list.remove(at).get("value").cloned()
        }
    }
}

/// Sets `target` to the string `value`; see `LogViewMut::set`. `present`
/// says whether the field currently has a value (as the view reads it).
pub(crate) fn set(
    owner: &mut Value,
    target: Target<'_>,
    value: &str,
    overwrite: bool,
    present: bool,
) -> bool {
    match target {
        Target::Field(field) => {
            let Some(key) = field_key(field) else {
                return false;
            };
            if present && !overwrite {
                return false;
            }
            let Some(map) = owner.as_object_mut() else {
                return false;
            };
            let new = if key == "body" {
                string_any_value(value)
            } else {
                Value::String(value.to_owned())
            };
            map.insert(key.to_owned(), new);
            true
        }
        Target::Attribute(path) => {
            let Some(list) = list_mut(owner, path, true) else {
                return false;
            };
            let Some(last) = path.last() else {
                return false;
            };
            match position(list, last) {
                Some(_) if !overwrite => false,
                Some(at) => {
                    list[at]["value"] = string_any_value(value);
                    true
                }
                None => {
                    list.push(json!({"key": last, "value": string_any_value(value)}));
                    true
                }
            }
        }
    }
}

/// The attribute path a rename of `from` to `to` writes: `to` beside the
/// source, or among the record's attributes for a top-level field.
pub(crate) fn rename_target(from: Target<'_>, to: &str) -> Vec<String> {
    let mut path = match from {
        Target::Field(_) => Vec::new(),
        Target::Attribute(p) => p[..p.len().saturating_sub(1)].to_vec(),
    };
    path.push(to.to_owned());
    path
}

/// Moves `from`'s value to the flat key `to` of the same collection; see
/// `LogViewMut::rename`. The caller checked that `from` has a value.
pub(crate) fn rename(owner: &mut Value, from: Target<'_>, to: &str, upsert: bool) -> bool {
    let target_path = rename_target(from, to);
    let target_exists = lookup(owner.get("attributes"), &target_path).is_some();
    if target_exists && !upsert {
        return false;
    }
    let Some(value) = take(owner, from) else {
        return false;
    };
    let Some(list) = list_mut(owner, &target_path, true) else {
        return false;
    };
    match position(list, to) {
        Some(at) => list[at]["value"] = value,
        None => list.push(json!({"key": to, "value": value})),
    }
    true
}

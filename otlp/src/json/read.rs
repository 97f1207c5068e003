//! OTLP JSON values as the engine sees them: AnyValues, attribute lists,
//! hex ids and enums, read either from a raw slice of the payload or from an
//! owned `Value` (a record a transform already changed).
//!
//! Both readers answer exactly alike; `tests/json_views.rs` checks that on
//! every record of the conformance suite. The owned reader is the reference:
//! it is the conformance runner's original code.

use std::borrow::Cow;
use std::cell::OnceCell;

use base64::Engine as _;
use serde_json::Value;
use serde_json::value::RawValue;
use tero_sdk::engine::FieldValue;

use super::raw::{self, Kind, Members};

// ─── Owned ────────────────────────────────────────────────────────────────

pub(crate) fn str_field<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn non_empty_str<'v>(v: &'v Value, key: &str) -> Option<FieldValue<'v>> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(FieldValue::str)
}

/// A hex id field (trace, span, parent span) as bytes; text that is not
/// hex is matched as the string it is.
pub(crate) fn hex_field<'v>(v: &'v Value, key: &str) -> Option<FieldValue<'v>> {
    let text = v.get(key)?.as_str().filter(|s| !s.is_empty())?;
    Some(hex_value(Cow::Borrowed(text)))
}

fn hex_value(text: Cow<'_, str>) -> FieldValue<'_> {
    match hex::decode(text.as_bytes()) {
        Ok(bytes) => FieldValue::Bytes(Cow::Owned(bytes)),
        Err(_) => FieldValue::Str(text),
    }
}

/// An OTLP JSON AnyValue. Like a parsed map, the alphabetically first
/// member decides (an AnyValue has exactly one).
pub(crate) fn any_value(v: &Value) -> Option<FieldValue<'_>> {
    let obj = v.as_object()?;
    let (key, inner) = obj.iter().next()?;
    Some(match key.as_str() {
        "stringValue" => FieldValue::str(inner.as_str()?),
        "boolValue" => FieldValue::Bool(inner.as_bool()?),
        "intValue" => FieldValue::Int(int_value(inner)?),
        "doubleValue" => FieldValue::Double(double_value(inner)?),
        "bytesValue" => FieldValue::Bytes(Cow::Owned(base64_value(inner.as_str()?)?)),
        "arrayValue" | "kvlistValue" => FieldValue::Opaque,
        _ => return None,
    })
}

/// 64-bit integers are strings in OTLP JSON; numbers are accepted too.
fn int_value(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        other => other.as_i64(),
    }
}

fn double_value(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => s.parse().ok(),
        other => other.as_f64(),
    }
}

fn base64_value(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// The AnyValue at `path` in an attribute list, descending through kvlists.
pub(crate) fn lookup<'v>(attributes: Option<&'v Value>, path: &[String]) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    let entry = attributes?
        .as_array()?
        .iter()
        .find(|kv| str_field(kv, "key") == first)?;
    let value = entry.get("value")?;
    if rest.is_empty() {
        return Some(value);
    }
    lookup(value.get("kvlistValue").and_then(|l| l.get("values")), rest)
}

/// The attribute at `path` of the object owning an `attributes` list.
pub(crate) fn attribute<'v>(owner: &'v Value, path: &[String]) -> Option<FieldValue<'v>> {
    lookup(owner.get("attributes"), path).and_then(any_value)
}

// ─── Raw ──────────────────────────────────────────────────────────────────

/// A non-empty string member.
pub(crate) fn raw_non_empty_str(raw: Option<&RawValue>) -> Option<FieldValue<'_>> {
    raw::as_str(raw?)
        .filter(|s| !s.is_empty())
        .map(FieldValue::Str)
}

/// A hex id member, as [`hex_field`] reads it.
pub(crate) fn raw_hex(raw: Option<&RawValue>) -> Option<FieldValue<'_>> {
    let text = raw::as_str(raw?).filter(|s| !s.is_empty())?;
    Some(hex_value(text))
}

/// An AnyValue, as [`any_value`] reads it.
pub(crate) fn raw_any_value(raw: &RawValue) -> Option<FieldValue<'_>> {
    let members = raw::members(raw);
    // A parsed map iterates its keys in order, and keeps the last of
    // duplicates: the same member is chosen here.
    let key = members.iter().map(|(k, _)| k).min()?;
    let inner = raw::member(&members, key)?;
    Some(match key.as_ref() {
        "stringValue" => FieldValue::Str(raw::as_str(inner)?),
        "boolValue" => FieldValue::Bool(raw::scalar(inner)?.as_bool()?),
        "intValue" => FieldValue::Int(match raw::kind(inner) {
            Kind::String => raw::as_str(inner)?.parse().ok()?,
            _ => raw::scalar(inner)?.as_i64()?,
        }),
        "doubleValue" => FieldValue::Double(match raw::kind(inner) {
            Kind::String => raw::as_str(inner)?.parse().ok()?,
            _ => raw::scalar(inner)?.as_f64()?,
        }),
        "bytesValue" => FieldValue::Bytes(Cow::Owned(base64_value(&raw::as_str(inner)?)?)),
        "arrayValue" | "kvlistValue" => FieldValue::Opaque,
        _ => return None,
    })
}

/// An enum given as its number, its name, or its number as a string.
pub(crate) fn raw_enum_number(raw: &RawValue, names: &[(&str, i64)]) -> Option<i64> {
    match raw::kind(raw) {
        Kind::String => {
            let s = raw::as_str(raw)?;
            names
                .iter()
                .find(|(name, _)| *name == s)
                .map(|(_, n)| *n)
                .or_else(|| s.parse().ok())
        }
        Kind::Scalar => match raw::scalar(raw)? {
            Value::Number(n) => n.as_i64(),
            _ => None,
        },
        _ => None,
    }
}

/// One entry of an attribute list: its key ("" when absent or not a
/// string, as [`str_field`] reads it) and its value.
pub(crate) struct Entry<'a> {
    key: Cow<'a, str>,
    value: Option<&'a RawValue>,
}

/// A raw attribute list, parsed one level; `None` when it is no array.
pub(crate) fn raw_entries(attributes: Option<&RawValue>) -> Option<Vec<Entry<'_>>> {
    let attributes = attributes?;
    if raw::kind(attributes) != Kind::Array {
        return None;
    }
    let mut members = Vec::new();
    let entries = raw::elements(attributes)
        .into_iter()
        .map(|kv| {
            members.clear();
            raw::members_into(kv, &mut members);
            Entry {
                key: raw::member(&members, "key")
                    .and_then(raw::as_str)
                    .unwrap_or(Cow::Borrowed("")),
                value: raw::member(&members, "value"),
            }
        })
        .collect();
    Some(entries)
}

/// [`lookup`] on a raw attribute list already parsed into entries.
pub(crate) fn raw_lookup<'a>(entries: &[Entry<'a>], path: &[String]) -> Option<&'a RawValue> {
    let (first, rest) = path.split_first()?;
    let entry = entries.iter().find(|e| e.key == first.as_str())?;
    let value = entry.value?;
    if rest.is_empty() {
        return Some(value);
    }
    let kvlist = raw::member(&raw::members(value), "kvlistValue")?;
    let values = raw::member(&raw::members(kvlist), "values");
    raw_lookup(&raw_entries(values)?, rest)
}

/// An object of the payload read lazily: its members are parsed on the
/// first question, its attribute list on the first attribute question, and
/// both are kept for the next ones.
pub(crate) struct RawObject<'a> {
    raw: &'a RawValue,
    members: OnceCell<Members<'a>>,
    attributes: OnceCell<Option<Vec<Entry<'a>>>>,
}

impl<'a> RawObject<'a> {
    pub(crate) fn new(raw: &'a RawValue) -> Self {
        RawObject {
            raw,
            members: OnceCell::new(),
            attributes: OnceCell::new(),
        }
    }

    pub(crate) fn raw(&self) -> &'a RawValue {
        self.raw
    }

    pub(crate) fn member(&self, key: &str) -> Option<&'a RawValue> {
        raw::member(self.members.get_or_init(|| raw::members(self.raw)), key)
    }

    pub(crate) fn non_empty_str(&self, key: &str) -> Option<FieldValue<'a>> {
        raw_non_empty_str(self.member(key))
    }

    pub(crate) fn hex(&self, key: &str) -> Option<FieldValue<'a>> {
        raw_hex(self.member(key))
    }

    fn entries(&self) -> Option<&[Entry<'a>]> {
        self.attributes
            .get_or_init(|| raw_entries(self.member("attributes")))
            .as_deref()
    }

    /// The AnyValue at `path` of this object's attributes.
    pub(crate) fn lookup(&self, path: &[String]) -> Option<&'a RawValue> {
        raw_lookup(self.entries()?, path)
    }

    pub(crate) fn attribute(&self, path: &[String]) -> Option<FieldValue<'a>> {
        self.lookup(path).and_then(raw_any_value)
    }

    /// Whether the top-level attribute list has an entry keyed `key`: when
    /// it has none, no attribute under `key` can be changed or removed.
    pub(crate) fn has_entry(&self, key: &str) -> bool {
        self.entries()
            .is_some_and(|entries| entries.iter().any(|e| e.key == key))
    }
}

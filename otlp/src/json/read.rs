//! OTLP JSON values as the engine sees them: AnyValues, attribute lists,
//! hex ids and enums, read either from a raw slice of the payload or from an
//! owned `Value` (a record a transform already changed).
//!
//! Both readers answer exactly alike (the unit tests of `node` check that
//! on records of every odd shape). The owned reader is the reference: it is
//! the conformance runner's original code.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt;

use base64::Engine as _;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use tero_sdk::engine::FieldValue;

use super::raw::{self, CowStr, Kind, Members};

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
    let mut de = serde_json::Deserializer::from_str(attributes?.get());
    // Validated already: an error reads as no list.
    de.deserialize_any(AttributesSeed).ok().flatten()
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
/// first question and kept. An OTLP object's `attributes` list is parsed
/// into entries in the same pass, since nearly every policy reads one.
pub(crate) struct RawObject<'a> {
    raw: &'a RawValue,
    /// Whether `attributes` is an OTLP attribute list (for Datadog logs it
    /// is a key like any other).
    otlp: bool,
    parsed: OnceCell<Parsed<'a>>,
}

#[derive(Default)]
struct Parsed<'a> {
    members: Members<'a>,
    /// `None` when there is no `attributes` array.
    attributes: Option<Vec<Entry<'a>>>,
}

impl<'a> RawObject<'a> {
    /// An OTLP object (record, resource, scope, data point, event).
    pub(crate) fn new(raw: &'a RawValue) -> Self {
        RawObject {
            raw,
            otlp: true,
            parsed: OnceCell::new(),
        }
    }

    /// A JSON object whose members are all plain members.
    pub(crate) fn plain(raw: &'a RawValue) -> Self {
        RawObject {
            raw,
            otlp: false,
            parsed: OnceCell::new(),
        }
    }

    pub(crate) fn raw(&self) -> &'a RawValue {
        self.raw
    }

    fn parsed(&self) -> &Parsed<'a> {
        self.parsed.get_or_init(|| {
            if raw::kind(self.raw) != Kind::Object {
                return Parsed::default();
            }
            let mut de = serde_json::Deserializer::from_str(self.raw.get());
            // Validated already: an error leaves the object empty.
            de.deserialize_map(ObjectVisitor { otlp: self.otlp })
                .unwrap_or_default()
        })
    }

    pub(crate) fn member(&self, key: &str) -> Option<&'a RawValue> {
        raw::member(&self.parsed().members, key)
    }

    pub(crate) fn non_empty_str(&self, key: &str) -> Option<FieldValue<'a>> {
        raw_non_empty_str(self.member(key))
    }

    pub(crate) fn hex(&self, key: &str) -> Option<FieldValue<'a>> {
        raw_hex(self.member(key))
    }

    fn entries(&self) -> Option<&[Entry<'a>]> {
        self.parsed().attributes.as_deref()
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

// ─── One-pass parsing ─────────────────────────────────────────────────────

/// An object's members, with an OTLP `attributes` list taken apart on the
/// way (as a parsed map would, the last of repeated members counts).
struct ObjectVisitor {
    otlp: bool,
}

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Parsed<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut parsed = Parsed::default();
        while let Some(CowStr(key)) = map.next_key()? {
            if self.otlp && key == "attributes" {
                parsed.attributes = map.next_value_seed(AttributesSeed)?;
            } else {
                parsed.members.push((key, map.next_value()?));
            }
        }
        Ok(parsed)
    }
}

/// Visitor methods for values of another type than the one expected:
/// consumed, and read as `Default` (absent).
macro_rules! other_types_are_default {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
}
pub(crate) use other_types_are_default;

/// An attribute list: entries when it is an array, else `None`.
struct AttributesSeed;

impl<'de> DeserializeSeed<'de> for AttributesSeed {
    type Value = Option<Vec<Entry<'de>>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AttributesSeed {
    type Value = Option<Vec<Entry<'de>>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an attribute list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(seq.size_hint().unwrap_or(8));
        while let Some(entry) = seq.next_element_seed(EntrySeed)? {
            entries.push(entry);
        }
        Ok(Some(entries))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map).map(|_| None)
    }

    other_types_are_default!();
}

/// `{"key": …, "value": …}`; anything else is an entry with key "" and no
/// value, as `str_field` and `get` read it.
struct EntrySeed;

impl Default for Entry<'_> {
    fn default() -> Self {
        Entry {
            key: Cow::Borrowed(""),
            value: None,
        }
    }
}

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = Entry<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = Entry<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an attribute")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entry = Entry::default();
        while let Some(CowStr(key)) = map.next_key()? {
            match key.as_ref() {
                "key" => entry.key = map.next_value_seed(StrOrEmpty)?,
                "value" => entry.value = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(entry)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| Entry::default())
    }

    other_types_are_default!();
}

/// A string, or "" for a value of any other type.
struct StrOrEmpty;

impl<'de> DeserializeSeed<'de> for StrOrEmpty {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrOrEmpty {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(""))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(""))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(""))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(""))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(""))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| Cow::Borrowed(""))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map).map(|_| Cow::Borrowed(""))
    }
}

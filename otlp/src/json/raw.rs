//! Reading JSON without building trees: a value stays a borrowed slice of
//! the payload (`&RawValue`) until someone asks what is inside, and then
//! only one level is parsed.
//!
//! Every slice handed to these functions was already validated by the
//! parser that cut it out of the payload, so reading it again cannot fail
//! on syntax; a value of another type than asked for reads as absent, the
//! way `serde_json::Value::get` and `as_str` answer.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// The members of an object in document order, values left raw.
pub(crate) type Members<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// A string, borrowed from the payload unless it holds escapes.
pub(crate) struct CowStr<'a>(pub Cow<'a, str>);

impl<'de> de::Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// What a raw value is, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Object,
    Array,
    String,
    /// Numbers, booleans and null.
    Scalar,
}

pub(crate) fn kind(raw: &RawValue) -> Kind {
    match raw.get().as_bytes().first() {
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        Some(b'"') => Kind::String,
        _ => Kind::Scalar,
    }
}

/// Appends the members of `raw` to `into`; nothing when it is no object.
pub(crate) fn members_into<'a>(raw: &'a RawValue, into: &mut Members<'a>) {
    if kind(raw) != Kind::Object {
        return;
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    // Validated already: an error leaves what was read so far.
    let _ = de.deserialize_map(MembersVisitor(into));
}

/// The members of `raw` (empty when it is no object).
pub(crate) fn members(raw: &RawValue) -> Members<'_> {
    let mut out = Vec::new();
    members_into(raw, &mut out);
    out
}

/// The value of `key`. Like a parsed map, the last of duplicate keys wins.
pub(crate) fn member<'a>(
    members: &[(Cow<'a, str>, &'a RawValue)],
    key: &str,
) -> Option<&'a RawValue> {
    members
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
}

/// The elements of `raw` (empty when it is no array).
pub(crate) fn elements(raw: &RawValue) -> Vec<&RawValue> {
    if kind(raw) != Kind::Array {
        return Vec::new();
    }
    serde_json::from_str(raw.get()).unwrap_or_default()
}

/// The number of elements of `raw` (0 when it is no array), counted
/// without collecting them.
pub(crate) fn len(raw: &RawValue) -> usize {
    if kind(raw) != Kind::Array {
        return 0;
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    de.deserialize_seq(FirstAndLen).map_or(0, |(_, len)| len)
}

/// The string `raw` holds.
pub(crate) fn as_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    if kind(raw) != Kind::String {
        return None;
    }
    serde_json::from_str::<CowStr>(raw.get()).ok().map(|s| s.0)
}

/// A number, boolean or null as a `Value` (no allocation); `None` for
/// strings, arrays and objects.
pub(crate) fn scalar(raw: &RawValue) -> Option<Value> {
    if kind(raw) != Kind::Scalar {
        return None;
    }
    serde_json::from_str(raw.get()).ok()
}

/// The whole value, owned: for the records a transform changes. `None`
/// when it nests deeper than a tree may (serde_json's recursion limit):
/// such a value is left as it is.
pub(crate) fn to_value(raw: &RawValue) -> Option<Value> {
    serde_json::from_str(raw.get()).ok()
}

struct MembersVisitor<'v, 'a>(&'v mut Members<'a>);

impl<'de> Visitor<'de> for MembersVisitor<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(CowStr(key)) = map.next_key()? {
            let value: &'de RawValue = map.next_value()?;
            self.0.push((key, value));
        }
        Ok(())
    }
}

/// Visits an array for its first element and its length.
pub(crate) struct FirstAndLen;

impl<'de> Visitor<'de> for FirstAndLen {
    type Value = (Option<&'de RawValue>, usize);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let Some(first) = seq.next_element::<&'de RawValue>()? else {
            return Ok((None, 0));
        };
        let mut len = 1;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            len += 1;
        }
        Ok((Some(first), len))
    }
}

/// Deserializes a value of unknown type into an owned `Value` from inside
/// a visitor that already dispatched on the type (for shapes that are not
/// what OTLP expects and are passed through unchanged).
pub(crate) struct ValueFrom;

impl ValueFrom {
    pub(crate) fn seq<'de, A: SeqAccess<'de>>(seq: A) -> Result<Value, A::Error> {
        de::Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))
    }
    pub(crate) fn map<'de, A: MapAccess<'de>>(map: A) -> Result<Value, A::Error> {
        de::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))
    }
}

/// Seed for a value captured raw: what `next_value::<&RawValue>()` does,
/// usable where a seed is required.
pub(crate) struct RawSeed;

impl<'de> DeserializeSeed<'de> for RawSeed {
    type Value = &'de RawValue;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        de::Deserialize::deserialize(deserializer)
    }
}

/// Writes `s` as a JSON string.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Writes an owned value.
pub(crate) fn write_value(out: &mut Vec<u8>, value: &Value) {
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> &RawValue {
        serde_json::from_str(text).expect("valid JSON")
    }

    #[test]
    fn members_keep_order_and_borrow_unescaped_keys() {
        let doc = raw(r#"{"b": 1, "a\u0041": "x", "b": [2]}"#);
        let m = members(doc);
        let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["b", "aA", "b"]);
        assert!(matches!(m[0].0, Cow::Borrowed(_)));
        assert!(matches!(m[1].0, Cow::Owned(_)));
        assert_eq!(member(&m, "b").map(RawValue::get), Some("[2]"));
    }

    #[test]
    fn wrong_types_read_as_absent() {
        assert!(members(raw("[1]")).is_empty());
        assert!(elements(raw("{}")).is_empty());
        assert_eq!(len(raw("[{}, 2, [3]]")), 3);
        assert_eq!(len(raw("{}")), 0);
        assert_eq!(as_str(raw("5")), None);
        assert_eq!(scalar(raw(r#""5""#)), None);
        assert_eq!(as_str(raw(r#""a\"b""#)).as_deref(), Some("a\"b"));
    }
}

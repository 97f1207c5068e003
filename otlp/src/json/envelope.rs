//! The OTLP JSON envelope (and Datadog's series one), parsed in one pass
//! down to the records:
//! `{resourceX: [{…, scopeX: [{…, records: [record, …]}]}]}`.
//!
//! Only the objects on the path to the records are taken apart; every other
//! member, and every record, stays a borrowed slice of the payload, and is
//! written back byte for byte. A member on the path that is not an array
//! (or an entry that is not an object) holds no records and is written back
//! as the value it is.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::raw::{self, CowStr, ValueFrom};

/// An object with its members in document order.
pub(crate) struct Object<'a> {
    pub(crate) members: Vec<(Cow<'a, str>, Member<'a>)>,
}

pub(crate) enum Member<'a> {
    /// Not on the path to the records: copied as it is.
    Raw(&'a RawValue),
    /// Not on the path, but replaced by a transform (a resource or scope).
    Replaced(Value),
    /// The array on the path: entries, or records at the last level.
    Array(Vec<Element<'a>>),
    /// On the path but not an array: holds no records.
    Other(Value),
}

pub(crate) enum Element<'a> {
    /// A resource or scope entry.
    Entry(Entry<'a>),
    Record(Record<'a>),
    /// An entry that is not an object.
    Other(Value),
}

pub(crate) struct Entry<'a> {
    pub(crate) object: Object<'a>,
    /// Dropped because policies emptied it.
    pub(crate) pruned: bool,
}

pub(crate) struct Record<'a> {
    pub(crate) raw: &'a RawValue,
    pub(crate) fate: Fate,
}

/// What policies did to a record.
pub(crate) enum Fate {
    Kept,
    Dropped,
    Rewritten(Value),
}

impl<'a> Object<'a> {
    /// The raw value of `key` (the last of duplicates, as a parsed map).
    pub(crate) fn raw(&self, key: &str) -> Option<&'a RawValue> {
        self.members.iter().rev().find_map(|(k, m)| match m {
            Member::Raw(raw) if k == key => Some(*raw),
            _ => None,
        })
    }

    /// The string member `key`, or "" (a missing schema URL).
    pub(crate) fn str(&self, key: &str) -> Cow<'a, str> {
        self.raw(key)
            .and_then(raw::as_str)
            .unwrap_or(Cow::Borrowed(""))
    }

    /// Replaces the member `key` that [`Object::raw`] reads.
    pub(crate) fn replace(&mut self, key: &str, value: Value) {
        if let Some((_, member)) = self
            .members
            .iter_mut()
            .rev()
            .find(|(k, m)| k == key && matches!(m, Member::Raw(_)))
        {
            *member = Member::Replaced(value);
        }
    }
}

/// Parses `text`, a document whose records sit at `path`
/// (`["resourceLogs", "scopeLogs", "logRecords"]`, or `["series"]` for a
/// Datadog series payload).
pub(crate) fn parse<'a>(text: &'a str, path: &[&str]) -> Result<Object<'a>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let object = de.deserialize_map(ObjectVisitor { path })?;
    de.end()?;
    Ok(object)
}

struct ObjectVisitor<'p> {
    /// Keys still to descend: the first is this object's path member.
    path: &'p [&'p str],
}

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = Object<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an OTLP JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while let Some(CowStr(key)) = map.next_key()? {
            let member = match self.path.split_first() {
                Some((first, rest)) if key == *first => map.next_value_seed(PathSeed { rest })?,
                _ => Member::Raw(map.next_value_seed(raw::RawSeed)?),
            };
            members.push((key, member));
        }
        Ok(Object { members })
    }
}

/// The value of a path member: an array of entries, or of records when
/// `rest` is empty.
struct PathSeed<'p> {
    rest: &'p [&'p str],
}

impl<'de> DeserializeSeed<'de> for PathSeed<'_> {
    type Value = Member<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PathSeed<'_> {
    type Value = Member<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut elements = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        if self.rest.is_empty() {
            while let Some(raw) = seq.next_element_seed(raw::RawSeed)? {
                elements.push(Element::Record(Record {
                    raw,
                    fate: Fate::Kept,
                }));
            }
        } else {
            while let Some(element) = seq.next_element_seed(EntrySeed { path: self.rest })? {
                elements.push(element);
            }
        }
        Ok(Member::Array(elements))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        ValueFrom::map(map).map(Member::Other)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Member::Other(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Member::Other(Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Member::Other(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Member::Other(Value::from(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Member::Other(Value::String(v.to_owned())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Member::Other(Value::Null))
    }
}

/// One element of an entry array: an object taken apart further, or
/// anything else kept as a value.
struct EntrySeed<'p> {
    path: &'p [&'p str],
}

impl<'de> DeserializeSeed<'de> for EntrySeed<'_> {
    type Value = Element<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed<'_> {
    type Value = Element<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let object = ObjectVisitor { path: self.path }.visit_map(map)?;
        Ok(Element::Entry(Entry {
            object,
            pruned: false,
        }))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        ValueFrom::seq(seq).map(Element::Other)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Element::Other(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Element::Other(Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Element::Other(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Element::Other(Value::from(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Element::Other(Value::String(v.to_owned())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Element::Other(Value::Null))
    }
}

/// Writes the document: raw members and kept records as they arrived,
/// rewritten records and replaced members re-serialized, dropped records
/// and pruned entries left out.
pub(crate) fn render(object: &Object<'_>, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    write_object(&mut out, object);
    out
}

fn write_object(out: &mut Vec<u8>, object: &Object<'_>) {
    out.push(b'{');
    for (i, (key, member)) in object.members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        raw::write_str(out, key);
        out.push(b':');
        match member {
            Member::Raw(raw) => out.extend_from_slice(raw.get().as_bytes()),
            Member::Replaced(value) | Member::Other(value) => raw::write_value(out, value),
            Member::Array(elements) => write_elements(out, elements),
        }
    }
    out.push(b'}');
}

fn write_elements(out: &mut Vec<u8>, elements: &[Element<'_>]) {
    out.push(b'[');
    let mut first = true;
    for element in elements {
        let mut separate = |out: &mut Vec<u8>| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
        };
        match element {
            Element::Entry(entry) if entry.pruned => {}
            Element::Entry(entry) => {
                separate(out);
                write_object(out, &entry.object);
            }
            Element::Record(record) => match &record.fate {
                Fate::Dropped => {}
                Fate::Kept => {
                    separate(out);
                    out.extend_from_slice(record.raw.get().as_bytes());
                }
                Fate::Rewritten(value) => {
                    separate(out);
                    raw::write_value(out, value);
                }
            },
            Element::Other(value) => {
                separate(out);
                raw::write_value(out, value);
            }
        }
    }
    out.push(b']');
}

//! One message (a record, a resource, a scope) as policies read it.
//!
//! A [`Message`] holds the message's bytes (borrowed from the payload until
//! a transform changes it) and, built on the first lookup, a small map of
//! where its fields are: the last occurrence of each singular field and the
//! entries of its attribute list. Every later lookup is then a slice, with
//! no further scan of the message; values are decoded only when asked for.
//! The map's buffers are reused from one record to the next, so the keep
//! path allocates nothing.

use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use std::ops::Range;

use tero_sdk::engine::FieldValue;

use super::wire::{self, Value};

/// Highest field number the map tracks; every OTLP field used by policies
/// is below it.
const TRACKED: usize = 17;

/// Where the last occurrence of a singular field is: its content (for
/// length-delimited fields) or its value bytes. Offsets are `u32` to keep
/// the map small; a message of 4 GiB or more reads as empty.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    body: u32,
    end: u32,
}

/// One `KeyValue` of the attribute list.
#[derive(Debug, Clone, Copy)]
struct Attr {
    key: (u32, u32),
    /// The `AnyValue` content, when the entry has one.
    value: Option<(u32, u32)>,
}

#[derive(Debug, Default)]
struct FieldMap {
    /// Bit `n` set: field `n` occurs; `slots[n]` is its last occurrence.
    present: u32,
    /// Bit `n` set: the last occurrence of field `n` is a varint.
    varints: u32,
    slots: [Slot; TRACKED],
    attrs: Vec<Attr>,
}

impl FieldMap {
    fn build(bytes: &[u8], attr_field: u32, mut attrs: Vec<Attr>) -> FieldMap {
        attrs.clear();
        let mut map = FieldMap {
            present: 0,
            varints: 0,
            slots: [Slot::default(); TRACKED],
            attrs,
        };
        if u32::try_from(bytes.len()).is_err() {
            return map;
        }
        for f in wire::fields(bytes) {
            let n = f.number as usize;
            if n >= TRACKED {
                continue;
            }
            if f.number == attr_field && f.is_len() {
                map.attrs.push(key_value(bytes, f.body, f.end));
                continue;
            }
            let bit = 1 << n;
            map.present |= bit;
            if matches!(f.value, Value::Varint(_)) {
                map.varints |= bit;
            } else {
                map.varints &= !bit;
            }
            map.slots[n] = Slot {
                body: f.body as u32,
                end: f.end as u32,
            };
        }
        map
    }

    fn slot(&self, number: u32) -> Option<Slot> {
        let n = number as usize;
        (n < TRACKED && self.present & (1 << n) != 0).then(|| self.slots[n])
    }
}

fn range((start, end): (u32, u32)) -> Range<usize> {
    start as usize..end as usize
}

/// The key and value of the `KeyValue` at `bytes[start..end]`. Encoders
/// write `key` then `value`, each with a one-byte tag and length: that
/// shape is read directly, anything else field by field.
#[inline]
fn key_value(bytes: &[u8], start: usize, end: usize) -> Attr {
    let kv = bytes.get(start..end).unwrap_or_default();
    if let [0x0a, key_len, rest @ ..] = kv
        && let Some((key, [0x12, value_len, value @ ..])) =
            rest.split_at_checked(usize::from(*key_len))
        && *key_len < 0x80
        && *value_len < 0x80
        && value.len() == usize::from(*value_len)
    {
        let key_start = (start + 2) as u32;
        let value_start = key_start + key.len() as u32 + 2;
        return Attr {
            key: (key_start, key_start + key.len() as u32),
            value: Some((value_start, end as u32)),
        };
    }
    let mut attr = Attr {
        key: (0, 0),
        value: None,
    };
    for f in wire::fields(kv) {
        let at = ((start + f.body) as u32, (start + f.end) as u32);
        match (f.number, f.value) {
            (1, Value::Len) => attr.key = at,
            (2, Value::Len) => attr.value = Some(at),
            _ => {}
        }
    }
    attr
}

/// A message of the payload, possibly re-encoded by transforms.
pub(crate) struct Message<'a> {
    original: Option<&'a [u8]>,
    edited: Option<Vec<u8>>,
    /// Field number of the message's `repeated KeyValue` attributes (0:
    /// none).
    attr_field: u32,
    map: OnceCell<FieldMap>,
    /// The attribute buffer of the previous map, reused by the next.
    spare: Cell<Vec<Attr>>,
}

impl<'a> Message<'a> {
    pub(crate) fn new(attr_field: u32) -> Self {
        Message {
            original: None,
            edited: None,
            attr_field,
            map: OnceCell::new(),
            spare: Cell::new(Vec::new()),
        }
    }

    /// Points at another message (`None`: the field is absent).
    pub(crate) fn reset(&mut self, original: Option<&'a [u8]>) {
        self.original = original;
        self.edited = None;
        self.forget_map();
    }

    fn forget_map(&mut self) {
        if let Some(map) = self.map.take() {
            self.spare.set(map.attrs);
        }
    }

    /// The message's current bytes; `None` when it is absent.
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        self.edited.as_deref().or(self.original)
    }

    /// Size of the message as received.
    pub(crate) fn original_len(&self) -> usize {
        self.original.map_or(0, <[u8]>::len)
    }

    /// Replaces the message's bytes with a re-encoded version.
    pub(crate) fn replace(&mut self, bytes: Vec<u8>) {
        self.edited = Some(bytes);
        self.forget_map();
    }

    /// The re-encoded bytes, if a transform changed the message.
    pub(crate) fn take_edit(&mut self) -> Option<Vec<u8>> {
        let edited = self.edited.take();
        self.forget_map();
        edited
    }

    pub(crate) fn attr_field(&self) -> u32 {
        self.attr_field
    }

    fn map(&self) -> &FieldMap {
        self.map.get_or_init(|| {
            FieldMap::build(
                self.bytes().unwrap_or_default(),
                self.attr_field,
                self.spare.take(),
            )
        })
    }

    /// The content of the last occurrence of length-delimited field
    /// `number` (the value bytes for other kinds).
    pub(crate) fn len_field(&self, number: u32) -> Option<&[u8]> {
        let slot = self.map().slot(number)?;
        self.bytes()?.get(range((slot.body, slot.end)))
    }

    /// The value of field `number` when its last occurrence is a varint.
    pub(crate) fn varint(&self, number: u32) -> Option<u64> {
        let map = self.map();
        let slot = map.slot(number)?;
        if map.varints & (1 << number) == 0 {
            return None;
        }
        let bytes = self.bytes()?;
        let mut pos = slot.body as usize;
        wire::read_varint(bytes, &mut pos, slot.end as usize).ok()
    }

    /// A string field, `None` when absent.
    pub(crate) fn string(&self, number: u32) -> Option<&str> {
        std::str::from_utf8(self.len_field(number)?).ok()
    }

    /// A string field as policies see it: empty counts as missing.
    pub(crate) fn text(&self, number: u32) -> Option<FieldValue<'_>> {
        self.string(number)
            .filter(|s| !s.is_empty())
            .map(FieldValue::str)
    }

    /// A bytes field (an id) as policies see it: empty counts as missing.
    pub(crate) fn id(&self, number: u32) -> Option<FieldValue<'_>> {
        self.len_field(number)
            .filter(|b| !b.is_empty())
            .map(|b| FieldValue::Bytes(Cow::Borrowed(b)))
    }

    /// The `AnyValue` content at `path` of the attribute list: the first
    /// entry with each key, descending through kvlists. `None` when a
    /// segment is missing, an intermediate value is not a kvlist, or the
    /// entry has no value.
    pub(crate) fn attribute_value(&self, path: &[String]) -> Option<&[u8]> {
        let (first, rest) = path.split_first()?;
        let bytes = self.bytes()?;
        let attr = self
            .map()
            .attrs
            .iter()
            .find(|a| bytes.get(range(a.key)) == Some(first.as_bytes()))?;
        let value = bytes.get(range(attr.value?))?;
        if rest.is_empty() {
            return Some(value);
        }
        match locate(kvlist(value)?, 1, rest) {
            Location::Found(value) => value,
            Location::Absent | Location::Blocked => None,
        }
    }

    /// The attribute at `path` as policies see it.
    pub(crate) fn attribute(&self, path: &[String]) -> Option<FieldValue<'_>> {
        self.attribute_value(path).and_then(any_value)
    }
}

/// An `AnyValue` as a field value: the oneof member set last wins, as in
/// protobuf. `None` when no member is set.
pub(crate) fn any_value(bytes: &[u8]) -> Option<FieldValue<'_>> {
    if let Some(text) = sole_string(bytes) {
        return std::str::from_utf8(text).ok().map(FieldValue::str);
    }
    let f = wire::fields(bytes)
        .filter(|f| (1..=7).contains(&f.number))
        .last()?;
    Some(match (f.number, f.value) {
        (1, Value::Len) => FieldValue::str(std::str::from_utf8(f.content(bytes)).ok()?),
        (2, Value::Varint(v)) => FieldValue::Bool(v != 0),
        (3, Value::Varint(v)) => FieldValue::Int(v as i64),
        (4, Value::Fixed64(v)) => FieldValue::Double(f64::from_bits(v)),
        (5 | 6, Value::Len) => FieldValue::Opaque,
        (7, Value::Len) => FieldValue::Bytes(Cow::Borrowed(f.content(bytes))),
        _ => return None,
    })
}

/// The string of an `AnyValue` that holds only a `string_value` shorter
/// than 16 KiB: the usual attribute value and body, read without a walk.
#[inline]
fn sole_string(bytes: &[u8]) -> Option<&[u8]> {
    match *bytes {
        [0x0a, len, ref rest @ ..] if len < 0x80 && rest.len() == usize::from(len) => Some(rest),
        [0x0a, low, high, ref rest @ ..]
            if low >= 0x80
                && high < 0x80
                && rest.len() == (usize::from(low & 0x7f) | usize::from(high) << 7) =>
        {
            Some(rest)
        }
        _ => None,
    }
}

/// The `KeyValueList` content of an `AnyValue` whose value is a kvlist.
pub(crate) fn kvlist(any_value: &[u8]) -> Option<&[u8]> {
    let f = wire::fields(any_value)
        .filter(|f| (1..=7).contains(&f.number))
        .last()?;
    (f.number == 6 && f.is_len()).then(|| f.content(any_value))
}

/// What is at a path of an attribute list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Location<'b> {
    /// The entry exists; its `AnyValue`, if it has one.
    Found(Option<&'b [u8]>),
    /// Some segment is missing (and could be created).
    Absent,
    /// An intermediate entry is not a kvlist (or has no value).
    Blocked,
}

/// Finds `path` in the `repeated KeyValue` field `list_field` of `message`:
/// the first entry with each key, descending through kvlists.
pub(crate) fn locate<'b>(message: &'b [u8], list_field: u32, path: &[String]) -> Location<'b> {
    let Some((first, rest)) = path.split_first() else {
        return Location::Absent;
    };
    let Some(entry) = find_entry(message, list_field, first) else {
        return Location::Absent;
    };
    let value = wire::last_len(entry.content(message), 2);
    if rest.is_empty() {
        return Location::Found(value);
    }
    match value.and_then(kvlist) {
        Some(list) => locate(list, 1, rest),
        None => Location::Blocked,
    }
}

/// The first `KeyValue` of `list_field` in `message` whose key is `key`.
pub(crate) fn find_entry(message: &[u8], list_field: u32, key: &str) -> Option<wire::Field> {
    wire::fields(message).find(|f| {
        f.number == list_field
            && f.is_len()
            && wire::last_len(f.content(message), 1).unwrap_or_default() == key.as_bytes()
    })
}

/// An attribute of the `repeated KeyValue` field `list_field` of `message`
/// as policies see it (used where no [`Message`] map exists: events, data
/// points).
pub(crate) fn attribute_in<'b>(
    message: &'b [u8],
    list_field: u32,
    path: &[String],
) -> Option<FieldValue<'b>> {
    match locate(message, list_field, path) {
        Location::Found(Some(value)) => any_value(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protobuf::wire::put_len_field;

    fn kv(key: &str, any: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_len_field(&mut out, 1, key.as_bytes());
        put_len_field(&mut out, 2, any);
        out
    }

    fn string_value(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        put_len_field(&mut out, 1, s.as_bytes());
        out
    }

    fn path(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nested_attributes_are_found_through_kvlists() {
        let inner = kv("b", &string_value("deep"));
        let mut list = Vec::new();
        put_len_field(&mut list, 1, &inner);
        let mut any = Vec::new();
        put_len_field(&mut any, 6, &list);
        let mut record = Vec::new();
        put_len_field(&mut record, 6, &kv("a", &any));
        put_len_field(&mut record, 6, &kv("a", &string_value("shadowed")));
        put_len_field(&mut record, 6, &kv("c", &string_value("flat")));

        let mut m = Message::new(6);
        m.reset(Some(&record));
        assert_eq!(
            m.attribute(&path(&["a", "b"])),
            Some(FieldValue::str("deep"))
        );
        assert_eq!(m.attribute(&path(&["c"])), Some(FieldValue::str("flat")));
        // The first entry named "a" is a kvlist: opaque, and nothing below
        // "c" since it is a string.
        assert_eq!(m.attribute(&path(&["a"])), Some(FieldValue::Opaque));
        assert_eq!(m.attribute(&path(&["c", "x"])), None);
        assert_eq!(locate(&record, 6, &path(&["c", "x"])), Location::Blocked);
        assert_eq!(locate(&record, 6, &path(&["z", "x"])), Location::Absent);
    }

    #[test]
    fn strings_read_the_same_with_one_and_two_byte_lengths() {
        for len in [0, 1, 127, 128, 300, 16_383, 16_384] {
            let text = "x".repeat(len);
            let any = string_value(&text);
            assert_eq!(any_value(&any), Some(FieldValue::str(&text)), "{len}");
        }
        // A string followed by another member is not a sole string.
        let mut both = string_value("x");
        both.extend_from_slice(&[2 << 3, 1]);
        assert_eq!(any_value(&both), Some(FieldValue::Bool(true)));
    }

    #[test]
    fn any_value_kinds_map_to_field_values() {
        let mut int = Vec::new();
        wire::put_varint(&mut int, 3 << 3);
        wire::put_varint(&mut int, (-5i64) as u64);
        assert_eq!(any_value(&int), Some(FieldValue::Int(-5)));
        let mut double = vec![4 << 3 | 1];
        double.extend_from_slice(&1.5f64.to_bits().to_le_bytes());
        assert_eq!(any_value(&double), Some(FieldValue::Double(1.5)));
        assert_eq!(any_value(&[2 << 3, 1]), Some(FieldValue::Bool(true)));
        assert_eq!(any_value(&[]), None);
        // The member set last wins.
        let mut both = string_value("x");
        both.extend_from_slice(&[2 << 3, 0]);
        assert_eq!(any_value(&both), Some(FieldValue::Bool(false)));
    }
}

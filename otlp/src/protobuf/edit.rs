//! Field-level edits of one message: the changed field is re-encoded, every
//! other field (unknown ones included) is copied byte for byte, and the
//! enclosing messages are re-framed up to the one being edited.
//!
//! Only transforms and trace sampling edit, on a small share of records, so
//! these functions favour clarity over avoiding an allocation.

use std::ops::Range;

use super::message::{find_entry, kvlist};
use super::wire::{self, put_len_field};

/// `message` with every occurrence of field `number` replaced by a single
/// length-delimited field holding `content`, or removed when `content` is
/// `None`. The new field takes the place of the last occurrence (the one
/// protobuf reads), or goes at the end.
pub(crate) fn with_field(message: &[u8], number: u32, content: Option<&[u8]>) -> Vec<u8> {
    let last = wire::fields(message)
        .filter(|f| f.number == number)
        .last()
        .map(|f| f.start);
    let mut out = Vec::with_capacity(message.len() + content.map_or(0, |c| c.len() + 6));
    let mut copier = Copier::new(message);
    for f in wire::fields(message) {
        if f.number != number {
            copier.keep(f.range(), &mut out);
            continue;
        }
        copier.flush(&mut out);
        if Some(f.start) == last
            && let Some(content) = content
        {
            put_len_field(&mut out, number, content);
        }
    }
    copier.flush(&mut out);
    if last.is_none()
        && let Some(content) = content
    {
        put_len_field(&mut out, number, content);
    }
    out
}

/// The `AnyValue` content holding a string.
pub(crate) fn string_any_value(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 6);
    put_len_field(&mut out, 1, s.as_bytes());
    out
}

/// What to do at the end of an attribute path.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AttrEdit<'v> {
    /// Remove the first entry with the key.
    Remove,
    /// Set the value (an `AnyValue` content): replace the first entry's
    /// value, or append an entry, creating kvlists on the way down.
    Put(&'v [u8]),
}

/// `message` with `edit` applied at `path` of its `repeated KeyValue`
/// field `list_field`; `None` when nothing changes (the entry to remove is
/// absent, or an intermediate value is not a kvlist).
pub(crate) fn edit_attribute(
    message: &[u8],
    list_field: u32,
    path: &[String],
    edit: AttrEdit<'_>,
) -> Option<Vec<u8>> {
    let (first, rest) = path.split_first()?;
    match find_entry(message, list_field, first) {
        Some(entry) => {
            let kv = entry.content(message);
            let new_entry = if rest.is_empty() {
                match edit {
                    AttrEdit::Remove => None,
                    AttrEdit::Put(value) => Some(with_field(kv, 2, Some(value))),
                }
            } else {
                let value = wire::last_len(kv, 2)?;
                let list = edit_attribute(kvlist(value)?, 1, rest, edit)?;
                let value = with_field(value, 6, Some(&list));
                Some(with_field(kv, 2, Some(&value)))
            };
            Some(splice(
                message,
                entry.range(),
                new_entry.map(|kv| (list_field, kv)),
            ))
        }
        None => {
            let AttrEdit::Put(value) = edit else {
                return None;
            };
            let mut kv = Vec::new();
            put_len_field(&mut kv, 1, first.as_bytes());
            if rest.is_empty() {
                put_len_field(&mut kv, 2, value);
            } else {
                let list = edit_attribute(&[], 1, rest, edit)?;
                let mut any = Vec::with_capacity(list.len() + 6);
                put_len_field(&mut any, 6, &list);
                put_len_field(&mut kv, 2, &any);
            }
            Some(append_to_list(message, list_field, &kv))
        }
    }
}

/// `message` with the field at `range` replaced by a length-delimited
/// field (`number`, content) or removed.
fn splice(message: &[u8], range: Range<usize>, replacement: Option<(u32, Vec<u8>)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    out.extend_from_slice(message.get(..range.start).unwrap_or_default());
    if let Some((number, content)) = replacement {
        put_len_field(&mut out, number, &content);
    }
    out.extend_from_slice(message.get(range.end..).unwrap_or_default());
    out
}

/// `message` with a new `KeyValue` after the last entry of `list_field`
/// (or at the end when the list is empty).
fn append_to_list(message: &[u8], list_field: u32, kv: &[u8]) -> Vec<u8> {
    let at = wire::fields(message)
        .filter(|f| f.number == list_field)
        .last()
        .map_or(message.len(), |f| f.end);
    let mut out = Vec::with_capacity(message.len() + kv.len() + 6);
    out.extend_from_slice(message.get(..at).unwrap_or_default());
    put_len_field(&mut out, list_field, kv);
    out.extend_from_slice(message.get(at..).unwrap_or_default());
    out
}

/// Copies runs of adjacent kept fields in one go.
struct Copier<'b> {
    source: &'b [u8],
    run: Option<Range<usize>>,
}

impl<'b> Copier<'b> {
    fn new(source: &'b [u8]) -> Self {
        Copier { source, run: None }
    }

    fn keep(&mut self, range: Range<usize>, out: &mut Vec<u8>) {
        match &mut self.run {
            Some(run) if run.end == range.start => run.end = range.end,
            _ => {
                self.flush(out);
                self.run = Some(range);
            }
        }
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        if let Some(run) = self.run.take() {
            out.extend_from_slice(self.source.get(run).unwrap_or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protobuf::message::{Location, locate};

    fn kv(key: &str, value: &str) -> Vec<u8> {
        let mut out = Vec::new();
        put_len_field(&mut out, 1, key.as_bytes());
        put_len_field(&mut out, 2, &string_any_value(value));
        out
    }

    fn path(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    fn value_at(message: &[u8], p: &[&str]) -> Option<Vec<u8>> {
        match locate(message, 6, &path(p)) {
            Location::Found(v) => v.map(<[u8]>::to_vec),
            _ => None,
        }
    }

    #[test]
    fn with_field_replaces_in_place_and_keeps_the_rest() {
        // field 3 "a", unknown field 99 varint 7, field 3 "b", field 5 "x"
        let mut m = Vec::new();
        put_len_field(&mut m, 3, b"a");
        wire::put_varint(&mut m, 99 << 3);
        m.push(7);
        put_len_field(&mut m, 3, b"b");
        put_len_field(&mut m, 5, b"x");
        let out = with_field(&m, 3, Some(b"new"));
        let mut want = Vec::new();
        wire::put_varint(&mut want, 99 << 3);
        want.push(7);
        put_len_field(&mut want, 3, b"new");
        put_len_field(&mut want, 5, b"x");
        assert_eq!(out, want);
        // Absent: appended; None: removed.
        let appended = with_field(&want, 12, Some(b"e"));
        assert!(appended.ends_with(&[12 << 3 | 2, 1, b'e']));
        let removed = with_field(&want, 3, None);
        assert_eq!(wire::fields(&removed).filter(|f| f.number == 3).count(), 0);
        assert_eq!(removed.len(), want.len() - 5);
    }

    #[test]
    fn put_creates_nested_kvlists_and_remove_takes_the_first_match() {
        let mut record = Vec::new();
        put_len_field(&mut record, 6, &kv("a", "1"));
        put_len_field(&mut record, 6, &kv("a", "2"));
        put_len_field(&mut record, 8, b"unknown-ish");

        let value = string_any_value("v");
        let nested = edit_attribute(&record, 6, &path(&["x", "y"]), AttrEdit::Put(&value)).unwrap();
        assert_eq!(value_at(&nested, &["x", "y"]), Some(value.clone()));
        // Appended after the last list entry, before the other field.
        let order: Vec<u32> = wire::fields(&nested).map(|f| f.number).collect();
        assert_eq!(order, [6, 6, 6, 8]);

        let removed = edit_attribute(&record, 6, &path(&["a"]), AttrEdit::Remove).unwrap();
        assert_eq!(value_at(&removed, &["a"]), Some(string_any_value("2")));
        assert!(edit_attribute(&record, 6, &path(&["zz"]), AttrEdit::Remove).is_none());
        // Through a non-kvlist: nothing.
        assert!(edit_attribute(&record, 6, &path(&["a", "b"]), AttrEdit::Put(&value)).is_none());
    }
}

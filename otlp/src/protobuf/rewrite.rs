//! Assembles the output from the payload and the walk's [`Changes`].
//!
//! The output is planned first as a list of segments: byte ranges of the
//! payload to copy (adjacent ranges merged, so a payload with few changes
//! is a handful of copies), re-encoded messages, and new length prefixes
//! for the resource and scope entries whose content changed. An entry
//! without changes is copied whole, prefix included; one whose records were
//! all dropped is left out, and so is a resource entry left without scope
//! entries, as the conformance runner does. The plan gives the exact output
//! size, so the output is written in one allocation.

use std::ops::Range;

use super::walk::{CONTAINER_MESSAGE, Changes, ENTRIES, RESOURCE_ENTRIES, RecordChange};
use super::wire::{self, Field, put_len_header};

enum Segment<'c> {
    Copy(Range<usize>),
    /// The tag and length of a length-delimited field.
    Header {
        number: u32,
        len: usize,
    },
    Bytes(&'c [u8]),
}

impl Segment<'_> {
    fn size(&self) -> usize {
        match self {
            Segment::Copy(r) => r.len(),
            Segment::Header { number, len } => wire::len_field_size(*number, *len) - len,
            Segment::Bytes(b) => b.len(),
        }
    }
}

/// What became of an entry.
enum Entry {
    /// Copied as it came.
    Unchanged,
    /// Re-framed with changed content.
    Changed,
    /// Left out: its records were all dropped.
    Pruned,
}

struct Plan<'p, 'c> {
    payload: &'p [u8],
    changes: &'c Changes,
    /// Index of the next record change to apply.
    next_record: usize,
    segments: Vec<Segment<'c>>,
}

impl<'p, 'c> Plan<'p, 'c> {
    fn copy(&mut self, range: Range<usize>) {
        if let Some(Segment::Copy(last)) = self.segments.last_mut()
            && last.end == range.start
        {
            last.end = range.end;
            return;
        }
        self.segments.push(Segment::Copy(range));
    }

    fn size_since(&self, mark: usize) -> usize {
        self.segments[mark..].iter().map(Segment::size).sum()
    }

    /// Plans a resource or scope entry (`field`) whose entries (scope
    /// entries or records) are planned by `entry`.
    fn container(
        &mut self,
        field: &Field,
        mut entry: impl FnMut(&mut Self, &Field) -> Entry,
    ) -> Entry {
        let mark = self.segments.len();
        self.segments.push(Segment::Header {
            number: field.number,
            len: 0,
        });
        let replacement = self.changes.container(field.body);
        // A rewritten resource or scope replaces the occurrence protobuf
        // reads (the last); other occurrences would merge into it.
        let last_message = replacement.and_then(|_| {
            wire::fields_in(self.payload, field)
                .filter(|f| f.number == CONTAINER_MESSAGE && f.is_len())
                .last()
                .map(|f| f.start)
        });
        let mut changed = replacement.is_some();
        let (mut had_entries, mut kept_any) = (false, false);
        for f in wire::fields_in(self.payload, field) {
            match (f.number, replacement) {
                (CONTAINER_MESSAGE, Some(new)) if f.is_len() => {
                    if Some(f.start) == last_message {
                        self.segments.push(Segment::Header {
                            number: CONTAINER_MESSAGE,
                            len: new.len(),
                        });
                        self.segments.push(Segment::Bytes(new));
                    }
                }
                (ENTRIES, _) if f.is_len() => {
                    had_entries = true;
                    match entry(self, &f) {
                        Entry::Unchanged => kept_any = true,
                        Entry::Changed => {
                            kept_any = true;
                            changed = true;
                        }
                        Entry::Pruned => changed = true,
                    }
                }
                _ => self.copy(f.range()),
            }
        }
        if had_entries && !kept_any {
            self.segments.truncate(mark);
            return Entry::Pruned;
        }
        if !changed {
            self.segments.truncate(mark);
            self.copy(field.range());
            return Entry::Unchanged;
        }
        let len = self.size_since(mark + 1);
        self.segments[mark] = Segment::Header {
            number: field.number,
            len,
        };
        Entry::Changed
    }

    fn record(&mut self, field: &Field) -> Entry {
        let change = self
            .changes
            .records
            .get(self.next_record)
            .filter(|(at, _)| *at == field.start);
        let Some((_, change)) = change else {
            self.copy(field.range());
            return Entry::Unchanged;
        };
        self.next_record += 1;
        match change {
            RecordChange::Drop => Entry::Pruned,
            RecordChange::Edited(bytes) => {
                self.segments.push(Segment::Header {
                    number: field.number,
                    len: bytes.len(),
                });
                self.segments.push(Segment::Bytes(bytes));
                Entry::Changed
            }
        }
    }

    fn write(&self) -> Vec<u8> {
        let total = self.size_since(0);
        let mut out = Vec::with_capacity(total);
        for segment in &self.segments {
            match segment {
                Segment::Copy(r) => {
                    out.extend_from_slice(self.payload.get(r.clone()).unwrap_or_default())
                }
                Segment::Header { number, len } => put_len_header(&mut out, *number, *len),
                Segment::Bytes(b) => out.extend_from_slice(b),
            }
        }
        out
    }
}

/// The payload with the walk's changes applied.
pub(crate) fn rewrite(payload: &[u8], changes: &Changes) -> Vec<u8> {
    let mut plan = Plan {
        payload,
        changes,
        next_record: 0,
        segments: Vec::new(),
    };
    for f in wire::fields(payload) {
        if f.number == RESOURCE_ENTRIES && f.is_len() {
            plan.container(&f, |plan, scope_entry| {
                plan.container(scope_entry, |plan, record| plan.record(record))
            });
        } else {
            plan.copy(f.range());
        }
    }
    plan.write()
}

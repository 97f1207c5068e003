//! Log transforms: remove, redact, rename, add.
//!
//! Applied only to kept records, by every matching policy in id order; each
//! policy runs remove, then redact, rename and add, ops in list order.

use super::record::LogViewMut;
use super::selector::LogSelector;
use super::stats::PolicyStats;
use super::value::FieldValue;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub(crate) struct Transform {
    pub(crate) remove: Vec<LogSelector>,
    pub(crate) redact: Vec<Redact>,
    pub(crate) rename: Vec<Rename>,
    pub(crate) add: Vec<Add>,
}

#[derive(Debug)]
pub(crate) struct Redact {
    pub(crate) selector: LogSelector,
    pub(crate) replacement: String,
    /// With a regex, every non-overlapping match is replaced, and the
    /// replacement is a template (`$1`, `${name}`, `$$`).
    pub(crate) regex: Option<regex::Regex>,
}

#[derive(Debug)]
pub(crate) struct Rename {
    pub(crate) from: LogSelector,
    pub(crate) to: String,
    pub(crate) upsert: bool,
}

#[derive(Debug)]
pub(crate) struct Add {
    pub(crate) selector: LogSelector,
    pub(crate) value: String,
    pub(crate) upsert: bool,
}

impl Transform {
    pub(crate) fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.redact.is_empty()
            && self.rename.is_empty()
            && self.add.is_empty()
    }
}

fn count(applied: bool, hit: &AtomicU64, miss: &AtomicU64) {
    if applied {
        hit.fetch_add(1, Relaxed);
    } else {
        miss.fetch_add(1, Relaxed);
    }
}

/// Runs all four stages of one policy's transform.
pub(crate) fn apply<R: LogViewMut + ?Sized>(t: &Transform, record: &mut R, stats: &PolicyStats) {
    apply_removes(t, record, stats);
    apply_redacts(t, record, stats);
    apply_renames(t, record, stats);
    apply_adds(t, record, stats);
}

fn apply_removes<R: LogViewMut + ?Sized>(t: &Transform, record: &mut R, stats: &PolicyStats) {
    for selector in &t.remove {
        let applied = record.remove(selector);
        count(applied, &stats.remove_hits, &stats.remove_misses);
    }
}

fn apply_redacts<R: LogViewMut + ?Sized>(t: &Transform, record: &mut R, stats: &PolicyStats) {
    for op in &t.redact {
        let applied = redact(op, record);
        count(applied, &stats.redact_hits, &stats.redact_misses);
    }
}

fn redact<R: LogViewMut + ?Sized>(op: &Redact, record: &mut R) -> bool {
    let replaced = match (&op.regex, record.get(&op.selector)) {
        (_, None) => return false,
        (_, Some(v)) if v.is_empty() => return false,
        (None, Some(_)) => op.replacement.clone(),
        (Some(regex), Some(FieldValue::Str(text))) => {
            if !regex.is_match(&text) {
                return false;
            }
            regex
                .replace_all(&text, op.replacement.as_str())
                .into_owned()
        }
        // A regex redaction of a non-string value is a no-op.
        (Some(_), Some(_)) => return false,
    };
    record.set(&op.selector, &replaced, true)
}

fn apply_renames<R: LogViewMut + ?Sized>(t: &Transform, record: &mut R, stats: &PolicyStats) {
    for op in &t.rename {
        let applied = record.rename(&op.from, &op.to, op.upsert);
        count(applied, &stats.rename_hits, &stats.rename_misses);
    }
}

fn apply_adds<R: LogViewMut + ?Sized>(t: &Transform, record: &mut R, stats: &PolicyStats) {
    for op in &t.add {
        let applied = record.set(&op.selector, &op.value, op.upsert);
        count(applied, &stats.add_hits, &stats.add_misses);
    }
}

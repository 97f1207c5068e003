//! The walk over an export request's containers: resource entries, scope
//! entries, records.
//!
//! Logs, traces and metrics share the layout and its field numbers
//! (`Export*ServiceRequest.resource_* = 1`; `Resource*`: `resource = 1`,
//! `scope_* = 2`, `schema_url = 3`; `Scope*`: `scope = 1`, records `= 2`,
//! `schema_url = 3`), so one walk serves all three. It hands every record to
//! the signal's evaluator with the record's resource and scope, and notes
//! what changed: which records were dropped or re-encoded, and which
//! resource and scope messages transforms rewrote. Nothing is copied here;
//! [`super::rewrite`] assembles the output from these notes.

use super::message::Message;
use super::wire::{self, Field};

/// `Export*ServiceRequest.resource_*`.
pub(crate) const RESOURCE_ENTRIES: u32 = 1;
/// `resource` of a resource entry, `scope` of a scope entry.
pub(crate) const CONTAINER_MESSAGE: u32 = 1;
/// Scope entries of a resource entry, records of a scope entry.
pub(crate) const ENTRIES: u32 = 2;
const SCHEMA_URL: u32 = 3;

/// Attribute list field of `Resource` and `InstrumentationScope`.
const RESOURCE_ATTRIBUTES: u32 = 1;
const SCOPE_ATTRIBUTES: u32 = 3;

/// The resource and scope of the records being evaluated. Transforms of
/// one record change them for the records after it, as in the conformance
/// runner.
pub(crate) struct Context<'a> {
    pub(crate) resource: Message<'a>,
    pub(crate) resource_schema: &'a str,
    pub(crate) scope: Message<'a>,
    pub(crate) scope_schema: &'a str,
}

/// What became of a record that is not copied as it came.
pub(crate) enum RecordChange {
    Drop,
    /// Kept, re-encoded as these bytes.
    Edited(Vec<u8>),
}

/// What the walk found to change, in payload order.
#[derive(Default)]
pub(crate) struct Changes {
    /// By the offset of the record's field (its tag) in the payload.
    pub(crate) records: Vec<(usize, RecordChange)>,
    /// Rewritten resource or scope messages, by the offset of the content
    /// of their resource or scope entry.
    pub(crate) containers: Vec<(usize, Vec<u8>)>,
    /// Records (messages) seen and kept.
    pub(crate) records_seen: u64,
    pub(crate) records_kept: u64,
}

impl Changes {
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty() && self.containers.is_empty()
    }

    /// The rewritten resource or scope of the entry whose content starts
    /// at `entry_body`.
    pub(crate) fn container(&self, entry_body: usize) -> Option<&[u8]> {
        self.containers
            .iter()
            .find(|(at, _)| *at == entry_body)
            .map(|(_, bytes)| bytes.as_slice())
    }
}

/// The last `resource`/`scope` message and `schema_url` of an entry.
fn entry_header(entry: &[u8]) -> (Option<&[u8]>, &str) {
    let mut message = None;
    let mut schema = "";
    for f in wire::fields(entry) {
        match f.number {
            CONTAINER_MESSAGE if f.is_len() => message = Some(f.content(entry)),
            SCHEMA_URL if f.is_len() => {
                schema = std::str::from_utf8(f.content(entry)).unwrap_or_default()
            }
            _ => {}
        }
    }
    (message, schema)
}

/// Length-delimited fields numbered `number` of the message at `field`.
fn entries<'p>(payload: &'p [u8], field: &Field, number: u32) -> impl Iterator<Item = Field> + 'p {
    wire::fields_in(payload, field).filter(move |f| f.number == number && f.is_len())
}

/// Walks every record of a validated request. `evaluate` gets the record
/// (whose attribute list is field `record_attributes`) with its context and
/// returns its change, `None` when the record is kept as it came.
pub(crate) fn walk<'a>(
    payload: &'a [u8],
    record_attributes: u32,
    mut evaluate: impl FnMut(&mut Context<'a>, &mut Message<'a>) -> Option<RecordChange>,
) -> Changes {
    let mut changes = Changes::default();
    let mut ctx = Context {
        resource: Message::new(RESOURCE_ATTRIBUTES),
        resource_schema: "",
        scope: Message::new(SCOPE_ATTRIBUTES),
        scope_schema: "",
    };
    let mut record = Message::new(record_attributes);
    let top = wire::fields(payload).filter(|f| f.number == RESOURCE_ENTRIES && f.is_len());
    for resource_entry in top {
        let (resource, schema) = entry_header(resource_entry.content(payload));
        ctx.resource.reset(resource);
        ctx.resource_schema = schema;
        for scope_entry in entries(payload, &resource_entry, ENTRIES) {
            let (scope, schema) = entry_header(scope_entry.content(payload));
            ctx.scope.reset(scope);
            ctx.scope_schema = schema;
            for field in entries(payload, &scope_entry, ENTRIES) {
                record.reset(Some(field.content(payload)));
                changes.records_seen += 1;
                let change = evaluate(&mut ctx, &mut record);
                if !matches!(change, Some(RecordChange::Drop)) {
                    changes.records_kept += 1;
                }
                if let Some(change) = change {
                    changes.records.push((field.start, change));
                }
            }
            if let Some(scope) = ctx.scope.take_edit() {
                changes.containers.push((scope_entry.body, scope));
            }
        }
        if let Some(resource) = ctx.resource.take_edit() {
            changes.containers.push((resource_entry.body, resource));
        }
    }
    changes
}

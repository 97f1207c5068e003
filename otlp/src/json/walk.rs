//! Visits every record of a parsed document with its resource and scope,
//! then removes the scope and resource entries its drops left empty and
//! puts back the resources and scopes a transform changed.

use std::borrow::Cow;

use super::envelope::{Element, Fate, Member, Object, Record};
use super::node::Node;

/// A resource or scope, as the records under it see it.
pub(crate) struct Context<'a> {
    pub(crate) node: Node<'a>,
    /// Its entry's `schemaUrl` ("" when absent).
    pub(crate) schema: Cow<'a, str>,
}

/// Which member names lead to the records, and which name the resource and
/// scope objects.
pub(crate) struct Path {
    pub(crate) keys: [&'static str; 3],
}

impl Path {
    pub(crate) const LOGS: Path = Path {
        keys: ["resourceLogs", "scopeLogs", "logRecords"],
    };
    pub(crate) const METRICS: Path = Path {
        keys: ["resourceMetrics", "scopeMetrics", "metrics"],
    };
    pub(crate) const SPANS: Path = Path {
        keys: ["resourceSpans", "scopeSpans", "spans"],
    };
}

/// Calls `visit` on every record; returns whether anything changed.
pub(crate) fn walk<'a>(
    document: &mut Object<'a>,
    path: &Path,
    mut visit: impl FnMut(&mut Context<'a>, &mut Context<'a>, &mut Record<'a>),
) -> bool {
    let [resources_key, scopes_key, records_key] = path.keys;
    let mut changed = false;
    for resources in path_arrays(document, resources_key) {
        for entry in resources.iter_mut().filter_map(entry_mut) {
            let mut resource = Context {
                node: Node::new(entry.object.raw("resource")),
                schema: entry.object.str("schemaUrl"),
            };
            let mut emptied = false;
            for scopes in path_arrays(&mut entry.object, scopes_key) {
                let had_scopes = !scopes.is_empty();
                for scope_entry in scopes.iter_mut().filter_map(entry_mut) {
                    let mut scope = Context {
                        node: Node::new(scope_entry.object.raw("scope")),
                        schema: scope_entry.object.str("schemaUrl"),
                    };
                    let mut records_emptied = false;
                    for records in path_arrays(&mut scope_entry.object, records_key) {
                        let had_records = !records.is_empty();
                        for record in records.iter_mut().filter_map(record_mut) {
                            visit(&mut resource, &mut scope, record);
                            changed |= !matches!(record.fate, Fate::Kept);
                        }
                        records_emptied |= had_records && records.iter().all(is_gone);
                    }
                    if let Some(value) = scope.node.into_owned() {
                        scope_entry.object.replace("scope", value);
                        changed = true;
                    }
                    scope_entry.pruned = records_emptied;
                }
                emptied |= had_scopes && scopes.iter().all(is_gone);
            }
            if let Some(value) = resource.node.into_owned() {
                entry.object.replace("resource", value);
                changed = true;
            }
            entry.pruned = emptied;
        }
    }
    changed
}

/// The arrays under `key` (one, unless the object repeats the key).
fn path_arrays<'o, 'a>(
    object: &'o mut Object<'a>,
    key: &'static str,
) -> impl Iterator<Item = &'o mut Vec<Element<'a>>> {
    object
        .members
        .iter_mut()
        .filter_map(move |(k, member)| match member {
            Member::Array(elements) if k == key => Some(elements),
            _ => None,
        })
}

fn entry_mut<'e, 'a>(element: &'e mut Element<'a>) -> Option<&'e mut super::envelope::Entry<'a>> {
    match element {
        Element::Entry(entry) => Some(entry),
        _ => None,
    }
}

fn record_mut<'e, 'a>(element: &'e mut Element<'a>) -> Option<&'e mut Record<'a>> {
    match element {
        Element::Record(record) => Some(record),
        _ => None,
    }
}

/// Whether an element is left out of the output.
fn is_gone(element: &Element<'_>) -> bool {
    match element {
        Element::Entry(entry) => entry.pruned,
        Element::Record(record) => matches!(record.fate, Fate::Dropped),
        Element::Other(_) => false,
    }
}

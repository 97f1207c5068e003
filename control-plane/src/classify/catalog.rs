//! Event types from what the control plane hears: metric families from the
//! edges' inventories and log templates from edge reports and submitted
//! samples, under fingerprints that every replica computes alike.
//!
//! A log template keeps the fingerprint of the line it started from
//! ([`tero_sdk::templates`]). A miner that starts the same event type from
//! another line (an edge after a restart, another replica) reports a new
//! fingerprint whose text a stored template already [`covers`]: it becomes
//! an alias of the stored one, so the event type keeps its classification.

use std::collections::BTreeSet;

use tero_proto::controlplane::{
    AttributeProfile, DuplicateField, EventType as StoredEvent, LogTemplate, SensitiveFinding,
    SpanPattern,
};
use tero_sdk::templates::{covers, fingerprint};

use crate::store::{StoredInventory, TemplateWrite};
use tero_classify::{EventKind, EventType};

pub const KIND_METRIC: &str = "metric";
pub const KIND_LOG: &str = "log";
pub const KIND_SPAN: &str = "span";

/// Redacted example records an event type keeps (evidence, and what a
/// recommended matcher is checked against).
pub const MAX_EXAMPLES: usize = 5;
/// Bytes of one stored example or attribute value (edges cut them shorter;
/// this bounds what a misbehaving one could make the store hold).
pub const MAX_EXAMPLE_BYTES: usize = 1024;
/// Attribute keys, sensitive findings and duplicate fields an event type
/// keeps; the ones with the most records win.
pub const MAX_FIELDS: usize = 64;
/// Distinct values kept per attribute.
pub const MAX_ATTRIBUTE_EXAMPLES: usize = 5;
/// Edges (instance ids) an event type names.
pub const MAX_EDGES: usize = 32;
/// Bytes of an attribute key or span kind.
pub const MAX_KEY_BYTES: usize = 256;
/// Attribute keys a span event type lists as its labels.
pub const MAX_SPAN_LABELS: usize = 64;

/// A metric family's fingerprint. The record separator (0x1E) cannot occur
/// in a masked log template, so metric and log fingerprints never meet.
pub fn metric_fingerprint(service: &str, family: &str) -> String {
    fingerprint(service, &format!("\u{1e}metric {family}"))
}

/// A hash of everything a classifier is shown about an event type except
/// examples and activity: when it changes, the cached classification no
/// longer applies.
pub fn definition(event: &StoredEvent) -> String {
    let mut labels: Vec<&str> = event.labels.iter().map(String::as_str).collect();
    labels.sort_unstable();
    let parts = [
        event.kind.as_str(),
        event.service.as_str(),
        event.name.as_str(),
        event.description.as_str(),
        event.metric_type.as_str(),
        &labels.join(","),
        event.severity.as_str(),
    ];
    fingerprint("definition", &parts.join("\u{1f}"))
}

/// The metric families of one service's latest inventories (one report per
/// instance), as event types: series and bytes per scrape summed over the
/// instances, label keys united.
pub fn metric_event_types(service: &str, inventories: &[StoredInventory]) -> Vec<StoredEvent> {
    let mut by_name: std::collections::BTreeMap<&str, (StoredEvent, BTreeSet<String>)> =
        Default::default();
    for inventory in inventories {
        let at = inventory.report.window_end_unix_ms;
        for family in &inventory.report.families {
            let (event, labels) = by_name.entry(family.name.as_str()).or_insert_with(|| {
                (
                    StoredEvent {
                        fingerprint: metric_fingerprint(service, &family.name),
                        kind: KIND_METRIC.to_string(),
                        service: service.to_string(),
                        name: family.name.clone(),
                        description: family.help.clone(),
                        metric_type: family.r#type.clone(),
                        first_seen_unix_ms: at,
                        last_seen_unix_ms: at,
                        ..Default::default()
                    },
                    BTreeSet::new(),
                )
            });
            event.count = event.count.saturating_add(family.series);
            event.bytes = event.bytes.saturating_add(family.sample_bytes);
            event.first_seen_unix_ms = event.first_seen_unix_ms.min(at);
            event.last_seen_unix_ms = event.last_seen_unix_ms.max(at);
            if event.description.is_empty() {
                event.description = family.help.clone();
            }
            labels.extend(family.labels.iter().map(|l| l.name.clone()));
        }
    }
    by_name
        .into_values()
        .map(|(mut event, labels)| {
            event.labels = labels.into_iter().collect();
            event
        })
        .collect()
}

/// A reported template as an event type carrying the report's activity.
pub fn log_event_type(service: &str, template: &LogTemplate) -> StoredEvent {
    StoredEvent {
        fingerprint: template.fingerprint.clone(),
        kind: KIND_LOG.to_string(),
        service: service.to_string(),
        name: template.text.clone(),
        severity: template.severity.clone(),
        count: template.count,
        bytes: template.bytes,
        first_seen_unix_ms: template.first_seen_unix_ms,
        last_seen_unix_ms: template.last_seen_unix_ms,
        examples: template.examples.clone(),
        attributes: template.attributes.clone(),
        sensitive: template.sensitive.clone(),
        duplicate_fields: template.duplicate_fields.clone(),
        ..Default::default()
    }
}

/// A span pattern's fingerprint. Edges compute it (`SpanPattern.fingerprint`);
/// one that sent none gets the same formula here, so a pattern keeps its
/// identity whoever names it.
pub fn span_fingerprint(service: &str, pattern: &SpanPattern) -> String {
    if !pattern.fingerprint.is_empty() {
        return pattern.fingerprint.clone();
    }
    fingerprint(
        service,
        &format!(
            "\u{1e}span {} {} {}",
            pattern.name, pattern.route, pattern.user_agent
        ),
    )
}

/// A reported span pattern as an event type carrying the report's
/// activity: named by the span name, labelled with its attribute keys.
pub fn span_event_type(service: &str, pattern: &SpanPattern) -> StoredEvent {
    let mut labels: Vec<String> = pattern
        .attribute_keys
        .iter()
        .map(|k| cut(k, MAX_KEY_BYTES))
        .collect();
    labels.sort_unstable();
    labels.dedup();
    labels.truncate(MAX_SPAN_LABELS);
    StoredEvent {
        fingerprint: span_fingerprint(service, pattern),
        kind: KIND_SPAN.to_string(),
        service: service.to_string(),
        name: cut(&pattern.name, MAX_EXAMPLE_BYTES),
        labels,
        count: pattern.count,
        bytes: pattern.bytes,
        first_seen_unix_ms: pattern.first_seen_unix_ms,
        last_seen_unix_ms: pattern.last_seen_unix_ms,
        examples: pattern.examples.clone(),
        span_kind: cut(&pattern.kind, MAX_KEY_BYTES),
        route: cut(&pattern.route, MAX_EXAMPLE_BYTES),
        user_agent: cut(&pattern.user_agent, MAX_EXAMPLE_BYTES),
        errors: pattern.errors,
        ..Default::default()
    }
}

/// How each reported span pattern is counted, given the service's stored
/// span event types: under its fingerprint, its attribute keys united with
/// the stored ones (so that the definition, and the classification, do
/// not flip between reports that saw different keys).
pub fn span_writes(
    service: &str,
    patterns: &[SpanPattern],
    known: &[crate::store::StoredEventType],
) -> Vec<TemplateWrite> {
    patterns
        .iter()
        .filter(|p| !p.name.is_empty() || !p.fingerprint.is_empty())
        .map(|pattern| {
            let mut event = span_event_type(service, pattern);
            if let Some(stored) = known
                .iter()
                .find(|k| k.event.fingerprint == event.fingerprint)
            {
                let mut labels: BTreeSet<String> = stored.event.labels.iter().cloned().collect();
                labels.extend(event.labels.drain(..));
                event.labels = labels.into_iter().take(MAX_SPAN_LABELS).collect();
                if event.route.is_empty() {
                    event.route = stored.event.route.clone();
                }
                if event.span_kind.is_empty() {
                    event.span_kind = stored.event.span_kind.clone();
                }
            }
            let definition = definition(&event);
            TemplateWrite {
                event,
                definition,
                alias_of: None,
            }
        })
        .collect()
}

/// Adds what `from` (one report's event type) saw on its records to
/// `into` (the stored event type): attribute, sensitive-value and
/// duplicate-field counts add up by key, examples and edges are united
/// without repeats, span errors add up. Everything stays bounded, so an
/// event type reported for years holds as much as one reported once.
pub fn absorb_observations(into: &mut StoredEvent, from: &StoredEvent) {
    for example in &from.examples {
        let example = cut(example, MAX_EXAMPLE_BYTES);
        if into.examples.len() < MAX_EXAMPLES && !into.examples.contains(&example) {
            into.examples.push(example);
        }
    }
    into.examples.truncate(MAX_EXAMPLES);
    for attribute in &from.attributes {
        match into.attributes.iter_mut().find(|a| a.key == attribute.key) {
            Some(stored) => {
                stored.records = stored.records.saturating_add(attribute.records);
                stored.bytes = stored.bytes.saturating_add(attribute.bytes);
                stored.more_values |= attribute.more_values;
                for value in &attribute.examples {
                    let value = cut(value, MAX_EXAMPLE_BYTES);
                    if stored.examples.contains(&value) {
                        continue;
                    }
                    if stored.examples.len() < MAX_ATTRIBUTE_EXAMPLES {
                        stored.examples.push(value);
                    } else {
                        stored.more_values = true;
                    }
                }
            }
            None => into.attributes.push(AttributeProfile {
                key: cut(&attribute.key, MAX_EXAMPLE_BYTES),
                examples: attribute
                    .examples
                    .iter()
                    .take(MAX_ATTRIBUTE_EXAMPLES)
                    .map(|v| cut(v, MAX_EXAMPLE_BYTES))
                    .collect(),
                more_values: attribute.more_values
                    || attribute.examples.len() > MAX_ATTRIBUTE_EXAMPLES,
                ..attribute.clone()
            }),
        }
    }
    keep_largest(&mut into.attributes, |a| a.records);
    for finding in &from.sensitive {
        match into
            .sensitive
            .iter_mut()
            .find(|s| s.kind == finding.kind && s.location == finding.location)
        {
            Some(stored) => {
                stored.records = stored.records.saturating_add(finding.records);
                if stored.example.is_empty() {
                    stored.example = cut(&finding.example, MAX_EXAMPLE_BYTES);
                }
            }
            None => into.sensitive.push(SensitiveFinding {
                kind: cut(&finding.kind, MAX_EXAMPLE_BYTES),
                location: cut(&finding.location, MAX_EXAMPLE_BYTES),
                records: finding.records,
                example: cut(&finding.example, MAX_EXAMPLE_BYTES),
            }),
        }
    }
    keep_largest(&mut into.sensitive, |s| s.records);
    for field in &from.duplicate_fields {
        match into
            .duplicate_fields
            .iter_mut()
            .find(|d| d.keep == field.keep && d.duplicate == field.duplicate)
        {
            Some(stored) => {
                stored.records = stored.records.saturating_add(field.records);
                stored.bytes = stored.bytes.saturating_add(field.bytes);
            }
            None => into.duplicate_fields.push(DuplicateField {
                keep: cut(&field.keep, MAX_EXAMPLE_BYTES),
                duplicate: cut(&field.duplicate, MAX_EXAMPLE_BYTES),
                ..field.clone()
            }),
        }
    }
    keep_largest(&mut into.duplicate_fields, |d| d.records);
    for edge in &from.edges {
        if into.edges.len() < MAX_EDGES && !into.edges.contains(edge) {
            into.edges.push(cut(edge, MAX_EXAMPLE_BYTES));
        }
    }
    into.errors = into.errors.saturating_add(from.errors);
}

/// Keeps the [`MAX_FIELDS`] entries with the most records, in their order.
fn keep_largest<T>(items: &mut Vec<T>, records: impl Fn(&T) -> u64) {
    if items.len() <= MAX_FIELDS {
        return;
    }
    let mut counts: Vec<u64> = items.iter().map(&records).collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let floor = counts[MAX_FIELDS - 1];
    // Ties at the floor: the earlier entries (the ones stored first) stay.
    let mut above = counts.iter().filter(|c| **c > floor).count();
    items.retain(|item| {
        let r = records(item);
        if r > floor {
            true
        } else if r == floor && above < MAX_FIELDS {
            above += 1;
            true
        } else {
            false
        }
    });
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Decides how each reported template is counted, given the service's
/// stored log event types (`known`, aliases included): under its own
/// fingerprint, or as an alias of the stored event type it turned out to
/// be. Templates merged into a reported one become its aliases.
pub fn template_writes(
    service: &str,
    templates: &[LogTemplate],
    known: &[crate::store::StoredEventType],
) -> Vec<TemplateWrite> {
    let canonical_of = |fp: &str| -> Option<String> {
        known.iter().find(|k| k.event.fingerprint == fp).map(|k| {
            if k.merged_into.is_empty() {
                k.event.fingerprint.clone()
            } else {
                k.merged_into.clone()
            }
        })
    };
    let mut writes = Vec::with_capacity(templates.len());
    for template in templates {
        let mut event = log_event_type(service, template);
        // A miner that saw fewer lines reports a more specific text than
        // the stored one: keep the general text, so that the definition
        // (and the classification) stays put.
        if let Some(stored) = known
            .iter()
            .find(|k| k.event.fingerprint == template.fingerprint && k.merged_into.is_empty())
            && covers(&stored.event.name, &template.text)
        {
            event.name = stored.event.name.clone();
        }
        let alias_of = match canonical_of(&template.fingerprint) {
            Some(canonical) => (canonical != template.fingerprint).then_some(canonical),
            None => known
                .iter()
                .find(|k| {
                    k.merged_into.is_empty()
                        && k.event.fingerprint != template.fingerprint
                        && covers(&k.event.name, &template.text)
                })
                .map(|k| k.event.fingerprint.clone()),
        };
        let target = alias_of
            .clone()
            .unwrap_or_else(|| template.fingerprint.clone());
        for merged in &template.merged_from {
            if merged == &target || canonical_of(merged).is_some_and(|c| c == target) {
                continue;
            }
            writes.push(TemplateWrite {
                event: StoredEvent {
                    fingerprint: merged.clone(),
                    kind: KIND_LOG.to_string(),
                    service: service.to_string(),
                    ..Default::default()
                },
                definition: String::new(),
                alias_of: Some(target.clone()),
            });
        }
        let definition = definition(&event);
        writes.push(TemplateWrite {
            event,
            definition,
            alias_of,
        });
    }
    writes
}

/// What a classifier is shown of a stored event type: the examples this
/// process holds for it (the latest report's), else the stored ones.
pub fn to_classifier_input(event: &StoredEvent, examples: Vec<String>) -> EventType {
    let examples = if examples.is_empty() {
        event.examples.clone()
    } else {
        examples
    };
    EventType {
        fingerprint: event.fingerprint.clone(),
        kind: match event.kind.as_str() {
            KIND_LOG => EventKind::Log,
            KIND_SPAN => EventKind::Span,
            _ => EventKind::Metric,
        },
        service: event.service.clone(),
        name: event.name.clone(),
        description: event.description.clone(),
        metric_type: event.metric_type.clone(),
        labels: event.labels.clone(),
        severity: (!event.severity.is_empty()).then(|| event.severity.clone()),
        examples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredEventType;
    use tero_proto::controlplane::{FamilyInventory, InventoryReport, LabelInventory};

    fn template(fp: &str, text: &str, count: u64) -> LogTemplate {
        LogTemplate {
            fingerprint: fp.to_string(),
            text: text.to_string(),
            count,
            bytes: count * 10,
            first_seen_unix_ms: 5,
            last_seen_unix_ms: 9,
            ..Default::default()
        }
    }

    fn stored(fp: &str, text: &str, merged_into: &str) -> StoredEventType {
        StoredEventType {
            event: StoredEvent {
                fingerprint: fp.to_string(),
                kind: KIND_LOG.to_string(),
                service: "svc".to_string(),
                name: text.to_string(),
                ..Default::default()
            },
            definition: String::new(),
            merged_into: merged_into.to_string(),
        }
    }

    #[test]
    fn metric_and_log_fingerprints_differ_and_are_stable() {
        assert_eq!(
            metric_fingerprint("svc", "http_requests_total"),
            metric_fingerprint("svc", "http_requests_total")
        );
        assert_ne!(
            metric_fingerprint("svc", "x"),
            fingerprint("svc", "metric x")
        );
        assert_ne!(metric_fingerprint("a", "x"), metric_fingerprint("b", "x"));
    }

    #[test]
    fn definition_changes_with_what_a_classifier_sees_only() {
        let base = StoredEvent {
            kind: KIND_METRIC.into(),
            service: "svc".into(),
            name: "m".into(),
            labels: vec!["b".into(), "a".into()],
            ..Default::default()
        };
        let reordered = StoredEvent {
            labels: vec!["a".into(), "b".into()],
            count: 99,
            ..base.clone()
        };
        assert_eq!(definition(&base), definition(&reordered));
        let described = StoredEvent {
            description: "help".into(),
            ..base.clone()
        };
        assert_ne!(definition(&base), definition(&described));
    }

    #[test]
    fn families_of_several_instances_add_up() {
        let report = |series: u64, labels: &[&str]| StoredInventory {
            instance_id: format!("i{series}"),
            received_at: 0,
            report: InventoryReport {
                window_end_unix_ms: series as i64,
                families: vec![FamilyInventory {
                    name: "m".into(),
                    r#type: "counter".into(),
                    help: "Requests.".into(),
                    series,
                    sample_bytes: series * 100,
                    labels: labels
                        .iter()
                        .map(|l| LabelInventory {
                            name: l.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        };
        let events = metric_event_types("svc", &[report(2, &["a"]), report(3, &["b", "a"])]);
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!((e.count, e.bytes), (5, 500));
        assert_eq!(e.labels, vec!["a".to_string(), "b".to_string()]);
        assert_eq!((e.first_seen_unix_ms, e.last_seen_unix_ms), (2, 3));
        assert_eq!(e.fingerprint, metric_fingerprint("svc", "m"));
    }

    #[test]
    fn a_template_covered_by_a_stored_one_becomes_its_alias() {
        let known = vec![stored("aaa", "user <*> logged in", "")];
        let writes = template_writes(
            "svc",
            &[
                template("bbb", "user carol logged in", 4),
                template("ccc", "disk full", 1),
            ],
            &known,
        );
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0].alias_of.as_deref(), Some("aaa"));
        assert_eq!(writes[0].event.count, 4);
        assert_eq!(writes[1].alias_of, None);
    }

    #[test]
    fn known_aliases_and_merged_templates_resolve_to_the_canonical_one() {
        let known = vec![stored("aaa", "a <*>", ""), stored("bbb", "a b", "aaa")];
        let mut t = template("bbb", "a b", 2);
        t.merged_from = vec!["zzz".into()];
        let writes = template_writes("svc", &[t], &known);
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0].event.fingerprint, "zzz");
        assert_eq!(writes[0].alias_of.as_deref(), Some("aaa"));
        assert_eq!(writes[1].alias_of.as_deref(), Some("aaa"));
    }

    #[test]
    fn a_more_specific_text_does_not_replace_the_stored_one() {
        let known = vec![stored("aaa", "key session:<*>", "")];
        let writes = template_writes("svc", &[template("aaa", "key session:<num>", 3)], &known);
        assert_eq!(writes[0].event.name, "key session:<*>");
        let writes = template_writes("svc", &[template("aaa", "key <*>", 3)], &known);
        assert_eq!(writes[0].event.name, "key <*>", "a more general text wins");
    }

    #[test]
    fn a_known_canonical_template_is_counted_under_itself() {
        let known = vec![stored("aaa", "a <*>", "")];
        let writes = template_writes("svc", &[template("aaa", "a <*>", 3)], &known);
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].alias_of, None);
    }

    fn observed(examples: &[&str], key: &str, records: u64) -> StoredEvent {
        StoredEvent {
            examples: examples.iter().map(|e| e.to_string()).collect(),
            attributes: vec![AttributeProfile {
                key: key.into(),
                records,
                bytes: records * 10,
                examples: vec![format!("v{records}")],
                more_values: false,
            }],
            sensitive: vec![SensitiveFinding {
                kind: "email".into(),
                location: format!("attribute:{key}"),
                records,
                example: "mail <email>".into(),
            }],
            duplicate_fields: vec![DuplicateField {
                keep: "attribute:user_id".into(),
                duplicate: "attribute:userId".into(),
                records,
                bytes: records * 4,
            }],
            edges: vec![format!("edge-{records}")],
            errors: records,
            ..Default::default()
        }
    }

    #[test]
    fn observations_add_up_by_key_and_examples_stay_distinct_and_bounded() {
        let mut stored = observed(&["a 1", "a 2"], "user", 3);
        absorb_observations(&mut stored, &observed(&["a 2", "a 3"], "user", 4));
        absorb_observations(&mut stored, &observed(&["a 4", "a 5", "a 6"], "path", 5));
        assert_eq!(stored.examples, ["a 1", "a 2", "a 3", "a 4", "a 5"]);
        let user = stored.attributes.iter().find(|a| a.key == "user").unwrap();
        assert_eq!((user.records, user.bytes), (7, 70));
        assert_eq!(user.examples, ["v3", "v4"]);
        assert_eq!(stored.attributes.len(), 2);
        assert_eq!(stored.sensitive.len(), 2, "one per (kind, location)");
        assert_eq!(stored.sensitive[0].records, 7);
        assert_eq!(stored.duplicate_fields.len(), 1);
        assert_eq!(
            (
                stored.duplicate_fields[0].records,
                stored.duplicate_fields[0].bytes
            ),
            (12, 48)
        );
        assert_eq!(stored.edges, ["edge-3", "edge-4", "edge-5"]);
        assert_eq!(stored.errors, 12);
    }

    #[test]
    fn every_list_an_edge_feeds_is_bounded() {
        let mut stored = StoredEvent::default();
        for i in 0..200u64 {
            let mut from = observed(&[&"x".repeat(5_000)], &format!("k{i}"), i + 1);
            from.attributes[0].examples = (0..20).map(|v| format!("{i}-{v}")).collect();
            from.edges = vec![format!("e{i}")];
            from.sensitive[0].location = format!("attribute:k{i}");
            from.duplicate_fields[0].duplicate = format!("attribute:k{i}");
            absorb_observations(&mut stored, &from);
        }
        assert_eq!(stored.examples.len(), 1);
        assert!(stored.examples[0].len() <= MAX_EXAMPLE_BYTES);
        assert_eq!(stored.attributes.len(), MAX_FIELDS);
        assert!(
            stored
                .attributes
                .iter()
                .all(|a| a.records > 200 - MAX_FIELDS as u64),
            "the attributes with the most records stay"
        );
        assert!(
            stored
                .attributes
                .iter()
                .all(|a| a.examples.len() <= MAX_ATTRIBUTE_EXAMPLES && a.more_values)
        );
        assert_eq!(stored.sensitive.len(), MAX_FIELDS);
        assert_eq!(stored.duplicate_fields.len(), MAX_FIELDS);
        assert_eq!(stored.edges.len(), MAX_EDGES);
    }

    fn pattern(name: &str, route: &str, keys: &[&str]) -> SpanPattern {
        SpanPattern {
            name: name.into(),
            kind: "server".into(),
            route: route.into(),
            user_agent: "kube-probe/1.29".into(),
            count: 12,
            bytes: 1_200,
            errors: 1,
            attribute_keys: keys.iter().map(|k| k.to_string()).collect(),
            examples: vec!["GET /healthz kind=server".into()],
            first_seen_unix_ms: 1,
            last_seen_unix_ms: 2,
            ..Default::default()
        }
    }

    #[test]
    fn a_span_pattern_becomes_a_span_event_type_with_a_stable_definition() {
        let p = pattern("GET /healthz", "/healthz", &["http.route", "http.method"]);
        let writes = span_writes("svc", std::slice::from_ref(&p), &[]);
        assert_eq!(writes.len(), 1);
        let e = &writes[0].event;
        assert_eq!(e.kind, KIND_SPAN);
        assert_eq!(e.name, "GET /healthz");
        assert_eq!(e.fingerprint, span_fingerprint("svc", &p));
        assert_eq!(
            e.fingerprint,
            fingerprint("svc", "\u{1e}span GET /healthz /healthz kube-probe/1.29")
        );
        assert_eq!(e.labels, ["http.method", "http.route"]);
        assert_eq!(
            (e.route.as_str(), e.span_kind.as_str()),
            ("/healthz", "server")
        );
        assert_eq!((e.count, e.bytes, e.errors), (12, 1_200, 1));
        let input = to_classifier_input(e, Vec::new());
        assert_eq!(input.kind, EventKind::Span);
        assert_eq!(input.examples, ["GET /healthz kind=server"]);

        // A later report that saw fewer keys keeps the stored ones, so the
        // definition (and the cached classification) holds.
        let known = vec![crate::store::StoredEventType {
            event: e.clone(),
            definition: writes[0].definition.clone(),
            merged_into: String::new(),
        }];
        let again = span_writes(
            "svc",
            &[pattern("GET /healthz", "/healthz", &["http.route"])],
            &known,
        );
        assert_eq!(again[0].definition, writes[0].definition);
        let sent = SpanPattern {
            fingerprint: "from-edge".into(),
            ..p
        };
        assert_eq!(
            span_writes("svc", &[sent], &[])[0].event.fingerprint,
            "from-edge"
        );
    }

    #[test]
    fn a_log_template_carries_its_observations() {
        let mut t = template("aaa", "user <*> in", 2);
        t.examples = vec!["user bob in".into()];
        t.attributes = observed(&[], "user", 2).attributes;
        let e = log_event_type("svc", &t);
        assert_eq!(e.examples, ["user bob in"]);
        assert_eq!(e.attributes.len(), 1);
        let input = to_classifier_input(&e, vec!["fresh".into()]);
        assert_eq!(input.examples, ["fresh"], "this process's examples first");
        assert_eq!(input.kind, EventKind::Log);
    }
}

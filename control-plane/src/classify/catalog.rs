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

use tero_proto::controlplane::{EventType as StoredEvent, LogTemplate};
use tero_sdk::templates::{covers, fingerprint};

use crate::store::{StoredInventory, TemplateWrite};
use tero_classify::{EventKind, EventType};

pub const KIND_METRIC: &str = "metric";
pub const KIND_LOG: &str = "log";

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
        ..Default::default()
    }
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

/// What a classifier is shown of a stored event type, with the examples
/// this process holds for it.
pub fn to_classifier_input(event: &StoredEvent, examples: Vec<String>) -> EventType {
    EventType {
        fingerprint: event.fingerprint.clone(),
        kind: if event.kind == KIND_LOG {
            EventKind::Log
        } else {
            EventKind::Metric
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
}

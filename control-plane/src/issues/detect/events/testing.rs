//! Builders, invariants and engine doubles for the log and trace detector
//! tests.

use std::collections::BTreeSet;
use std::sync::Arc;

use tero_proto::controlplane::{AttributeProfile, Classification, CreatePolicyRequest, EventType};
use tero_proto::policy::{LogField, TraceField};
use tero_sdk::Engine;
use tero_sdk::engine::{
    Decision, FieldValue, LogSelector, LogView, LogViewMut, SpanView, SpanViewMut, StatsRegistry,
    TraceSelector,
};
use tero_sdk::policy::validate;

use super::super::recommend::SERVICE_ATTRIBUTE;
use super::super::{Finding, Prices, Thresholds};
use super::{ClassifiedEvent, EventInventory, EventThresholds, ServiceVolume, detect, kind};
use crate::scope;

pub const SERVICE: &str = "checkout";

pub fn classification(verdict: &str, category: &str, confidence: f64) -> Classification {
    Classification {
        category: category.into(),
        verdict: verdict.into(),
        confidence,
        rationale: format!("looks like {category}"),
        classifier: "embedded/1".into(),
        classified_at_unix_ms: 1_000,
        run_id: 7,
    }
}

/// A log event type seen over an hour, classified as given.
pub fn log(
    fingerprint: &str,
    template: &str,
    examples: &[&str],
    count: u64,
    classified: Option<Classification>,
) -> ClassifiedEvent {
    ClassifiedEvent {
        event: EventType {
            fingerprint: fingerprint.into(),
            kind: "log".into(),
            service: SERVICE.into(),
            name: template.into(),
            severity: "INFO".into(),
            count,
            bytes: count * 100,
            first_seen_unix_ms: 0,
            last_seen_unix_ms: 3_600_000,
            examples: examples.iter().map(|e| e.to_string()).collect(),
            edges: vec!["edge-1".into()],
            ..Default::default()
        },
        run_id: classified.as_ref().map_or(0, |c| c.run_id),
        classification: classified,
    }
}

/// A span pattern seen over an hour.
pub fn span(
    fingerprint: &str,
    name: &str,
    route: &str,
    agent: &str,
    count: u64,
    classified: Option<Classification>,
) -> ClassifiedEvent {
    ClassifiedEvent {
        event: EventType {
            fingerprint: fingerprint.into(),
            kind: "span".into(),
            service: SERVICE.into(),
            name: name.into(),
            route: route.into(),
            user_agent: agent.into(),
            span_kind: "server".into(),
            count,
            bytes: count * 200,
            first_seen_unix_ms: 0,
            last_seen_unix_ms: 3_600_000,
            examples: vec![format!(
                "{name} kind=server status=unset http.route={route}"
            )],
            edges: vec!["edge-1".into()],
            ..Default::default()
        },
        run_id: classified.as_ref().map_or(0, |c| c.run_id),
        classification: classified,
    }
}

pub fn profile(key: &str, records: u64, values: &[&str]) -> AttributeProfile {
    AttributeProfile {
        key: key.into(),
        records,
        bytes: records * 20,
        examples: values.iter().map(|v| v.to_string()).collect(),
        more_values: false,
    }
}

/// One edge reporting 1 000 000 log records (200 MB) and 100 000 spans
/// (40 MB) a day.
pub fn inventory(events: Vec<ClassifiedEvent>) -> EventInventory {
    EventInventory {
        service: SERVICE.into(),
        events,
        volume: ServiceVolume {
            log_records_per_day: 1_000_000.0,
            log_bytes_per_day: 200_000_000.0,
            spans_per_day: 100_000.0,
            span_bytes_per_day: 40_000_000.0,
            edges: vec!["edge-1".into()],
            edges_reporting: 1,
        },
        from_unix_ms: 1_000,
        to_unix_ms: 3_601_000,
    }
}

pub fn run(inventory: &EventInventory) -> Vec<Finding> {
    run_with(inventory, &EventThresholds::default())
}

pub fn run_with(inventory: &EventInventory, events: &EventThresholds) -> Vec<Finding> {
    let findings = detect(
        inventory,
        events,
        &Thresholds::default(),
        &Prices::default(),
    );
    check_invariants(&findings);
    findings
}

/// Every recommended policy validates and is scoped; no two findings share
/// a key, a policy id or a change; a finding without a policy says why.
pub fn check_invariants(findings: &[Finding]) {
    let mut keys = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut targets = Vec::new();
    for f in findings {
        assert!(keys.insert((f.kind, f.subject.clone())), "key {f:?}");
        assert_eq!(f.service, SERVICE);
        assert_eq!(f.provenance.detector, f.kind);
        assert!(kind::ALL.contains(&f.kind), "{}", f.kind);
        assert!(["low", "medium", "high"].contains(&f.severity));
        let Some(recommended) = &f.recommended else {
            assert!(
                f.summary.contains("No policy is recommended"),
                "{} {}: {}",
                f.kind,
                f.subject,
                f.summary
            );
            continue;
        };
        let policy = recommended.policy.as_ref().expect("a policy");
        if let Err(e) = validate(policy) {
            panic!("{} {}: invalid policy: {e:?}", f.kind, f.subject);
        }
        scope::validate(recommended.scope.as_ref().expect("a scope")).unwrap();
        assert!(policy.enabled);
        assert!(ids.insert(policy.id.clone()), "id {}", policy.id);
        let target = policy.target.clone().unwrap();
        assert!(
            !targets.contains(&target),
            "two findings recommend the same change: {} {}",
            f.kind,
            f.subject
        );
        targets.push(target);
    }
}

pub fn find<'a>(findings: &'a [Finding], kind: &str, subject: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.kind == kind && f.subject == subject)
        .unwrap_or_else(|| panic!("no {kind} {subject} in {:?}", kinds(findings)))
}

pub fn kinds(findings: &[Finding]) -> Vec<(&'static str, &str)> {
    findings
        .iter()
        .map(|f| (f.kind, f.subject.as_str()))
        .collect()
}

/// The engine the edges run, with the recommended policies of `requests`.
pub fn engine(requests: &[&CreatePolicyRequest]) -> Engine {
    let policies: Vec<_> = requests
        .iter()
        .map(|r| {
            let p = r.policy.clone().expect("a policy");
            validate(&p).expect("valid");
            p
        })
        .collect();
    let engine = Engine::compile(&policies, &Arc::new(StatsRegistry::new()));
    for info in engine.policies() {
        assert!(info.errors.is_empty(), "{}: {:?}", info.id, info.errors);
    }
    engine
}

/// A log record: body, flat attributes and the service.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub service: String,
    pub body: String,
    pub attributes: Vec<(String, String)>,
}

impl Record {
    pub fn new(body: &str) -> Record {
        Record {
            service: SERVICE.into(),
            body: body.into(),
            attributes: Vec::new(),
        }
    }

    pub fn with(mut self, key: &str, value: &str) -> Record {
        self.attributes.push((key.into(), value.into()));
        self
    }

    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl LogView for Record {
    fn get(&self, selector: &LogSelector) -> Option<FieldValue<'_>> {
        match selector {
            LogSelector::Field(LogField::Body) => Some(FieldValue::str(&self.body)),
            LogSelector::LogAttribute(p) if p.len() == 1 => {
                self.attribute(&p[0]).map(FieldValue::str)
            }
            LogSelector::ResourceAttribute(p) if p.len() == 1 && p[0] == SERVICE_ATTRIBUTE => {
                Some(FieldValue::str(&self.service))
            }
            _ => None,
        }
    }
}

impl LogViewMut for Record {
    fn remove(&mut self, selector: &LogSelector) -> bool {
        match selector {
            LogSelector::LogAttribute(p) if p.len() == 1 => {
                let before = self.attributes.len();
                self.attributes.retain(|(k, _)| *k != p[0]);
                before != self.attributes.len()
            }
            _ => false,
        }
    }

    fn set(&mut self, selector: &LogSelector, value: &str, overwrite: bool) -> bool {
        match selector {
            LogSelector::Field(LogField::Body) if overwrite => {
                self.body = value.to_owned();
                true
            }
            LogSelector::LogAttribute(p) if p.len() == 1 => {
                match self.attributes.iter_mut().find(|(k, _)| *k == p[0]) {
                    Some((_, v)) if overwrite => {
                        *v = value.to_owned();
                        true
                    }
                    Some(_) => false,
                    None => {
                        self.attributes.push((p[0].clone(), value.to_owned()));
                        true
                    }
                }
            }
            _ => false,
        }
    }

    fn rename(&mut self, _: &LogSelector, _: &str, _: bool) -> bool {
        false
    }
}

/// A span: name, flat attributes, status, the service.
#[derive(Debug, Clone)]
pub struct Span {
    pub service: String,
    pub name: String,
    pub attributes: Vec<(String, String)>,
    /// `SpanStatusCode` number.
    pub status: i64,
    pub trace_id: Vec<u8>,
    pub trace_state: String,
}

impl Span {
    pub fn new(name: &str, attributes: &[(&str, &str)], status: i64) -> Span {
        Span {
            service: SERVICE.into(),
            name: name.into(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            status,
            trace_id: vec![0x5a; 16],
            trace_state: String::new(),
        }
    }
}

impl SpanView for Span {
    fn get(&self, selector: &TraceSelector) -> Option<FieldValue<'_>> {
        match selector {
            TraceSelector::Field(TraceField::Name) => Some(FieldValue::str(&self.name)),
            TraceSelector::Field(TraceField::TraceId) => Some(FieldValue::Bytes(
                std::borrow::Cow::Borrowed(&self.trace_id),
            )),
            TraceSelector::Field(TraceField::TraceState) => {
                Some(FieldValue::str(&self.trace_state)).filter(|_| !self.trace_state.is_empty())
            }
            TraceSelector::SpanAttribute(p) if p.len() == 1 => self
                .attributes
                .iter()
                .find(|(k, _)| *k == p[0])
                .map(|(_, v)| FieldValue::str(v)),
            TraceSelector::ResourceAttribute(p) if p.len() == 1 && p[0] == SERVICE_ATTRIBUTE => {
                Some(FieldValue::str(&self.service))
            }
            TraceSelector::Status => Some(FieldValue::Int(self.status)),
            TraceSelector::Kind => Some(FieldValue::Int(2)),
            _ => None,
        }
    }
}

impl SpanViewMut for Span {
    fn set_trace_state(&mut self, trace_state: String) {
        self.trace_state = trace_state;
    }
}

/// The decision `engine` makes on a copy of `record`, and the record as
/// it leaves.
pub fn through(engine: &Engine, record: &Record) -> (Decision, Record) {
    let mut r = record.clone();
    let d = engine.evaluate_log(&mut r);
    (d, r)
}

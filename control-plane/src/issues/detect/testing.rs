//! Test doubles and builders shared by the detector tests.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tero_proto::controlplane::{
    CreatePolicyRequest, FamilyInventory, LabelInventory, ServiceInventory,
};
use tero_proto::policy::{MetricField, MetricType};
use tero_sdk::Engine;
use tero_sdk::engine::{FieldValue, MetricSelector, MetricView, StatsRegistry};
use tero_sdk::policy::validate;
use tero_usage::{FamilyUsage, UsageLookup};

use super::recommend::SERVICE_ATTRIBUTE;
use super::{Finding, Prices, Thresholds, detect};

pub const SERVICE: &str = "checkout";

/// Usage sources answering from a table; families not in it are unused.
#[derive(Default)]
pub struct FakeUsage {
    pub sources: Vec<String>,
    pub families: HashMap<String, FamilyUsage>,
}

impl FakeUsage {
    /// No usage source imported at all.
    pub fn none() -> Self {
        FakeUsage::default()
    }

    /// One imported source that references nothing yet.
    pub fn imported() -> Self {
        FakeUsage {
            sources: vec!["rules.yaml".into()],
            ..Default::default()
        }
    }

    pub fn used(mut self, family: &str, labels: &[&str]) -> Self {
        self.families.insert(
            family.into(),
            FamilyUsage::Used {
                locations: vec![format!("rules.yaml: {family}:rate5m")],
                labels: labels
                    .iter()
                    .map(|l| l.to_string())
                    .collect::<BTreeSet<_>>(),
            },
        );
        self
    }

    pub fn unknown(mut self, family: &str) -> Self {
        self.families.insert(
            family.into(),
            FamilyUsage::Unknown {
                reason: "dashboard.json: unparsed query".into(),
            },
        );
        self
    }
}

impl UsageLookup for FakeUsage {
    fn source_names(&self) -> Vec<String> {
        self.sources.clone()
    }

    fn family(&self, name: &str, _kind: &str) -> FamilyUsage {
        self.families
            .get(name)
            .cloned()
            .unwrap_or(FamilyUsage::Unused)
    }
}

/// A family of `series` series of 100 bytes each.
pub fn family(name: &str, kind: &str, series: u64) -> FamilyInventory {
    FamilyInventory {
        name: name.into(),
        r#type: kind.into(),
        series,
        samples: series,
        sample_bytes: series * 100,
        ..Default::default()
    }
}

pub fn label(name: &str, cardinality: u64, series: u64, examples: &[&str]) -> LabelInventory {
    LabelInventory {
        name: name.into(),
        cardinality,
        examples: examples.iter().map(|e| e.to_string()).collect(),
        series,
        ..Default::default()
    }
}

/// One scrape a minute from two instances.
pub fn inventory(families: Vec<FamilyInventory>) -> ServiceInventory {
    ServiceInventory {
        service: SERVICE.into(),
        instances: vec!["i-1".into(), "i-2".into()],
        from_unix_ms: 1_000,
        to_unix_ms: 301_000,
        scrapes_per_minute: 1.0,
        families,
    }
}

/// Runs every detector with default thresholds and prices, checking what
/// must hold of any output.
pub fn run(inventory: &ServiceInventory, usage: &FakeUsage) -> Vec<Finding> {
    run_with(inventory, usage, &Thresholds::default())
}

pub fn run_with(
    inventory: &ServiceInventory,
    usage: &FakeUsage,
    thresholds: &Thresholds,
) -> Vec<Finding> {
    let findings = detect(inventory, usage, thresholds, &Prices::default());
    check_invariants(&findings);
    findings
}

/// Every recommended policy validates; no two findings share a key, a
/// policy id or a change; a finding without a policy says why.
pub fn check_invariants(findings: &[Finding]) {
    let mut keys = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut targets: Vec<&tero_proto::policy::policy::Target> = Vec::new();
    for f in findings {
        assert!(keys.insert((f.kind, f.subject.clone())), "key {f:?}");
        assert_eq!(f.service, SERVICE);
        assert_eq!(f.provenance.detector, f.kind);
        assert!(super::kind::ALL.contains(&f.kind));
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
        assert!(policy.enabled);
        assert!(ids.insert(policy.id.clone()), "id {}", policy.id);
        let target = policy.target.as_ref().unwrap();
        assert!(
            !targets.contains(&target),
            "two findings recommend the same change: {} {}",
            f.kind,
            f.subject
        );
        targets.push(target);
    }
}

pub fn find<'a>(findings: &'a [Finding], kind: &str, subject: &str) -> Option<&'a Finding> {
    findings
        .iter()
        .find(|f| f.kind == kind && f.subject == subject)
}

pub fn kinds(findings: &[Finding]) -> Vec<(&'static str, &str)> {
    findings
        .iter()
        .map(|f| (f.kind, f.subject.as_str()))
        .collect()
}

/// A series as the Prometheus edge shows it to policies (`le` and
/// `quantile` are never among `labels`).
pub struct Series<'a> {
    pub service: &'a str,
    pub family: &'a str,
    pub metric_type: MetricType,
    pub labels: &'a [(&'a str, &'a str)],
}

impl MetricView for Series<'_> {
    fn get(&self, selector: &MetricSelector) -> Option<FieldValue<'_>> {
        match selector {
            MetricSelector::Field(MetricField::Name) => Some(FieldValue::str(self.family)),
            MetricSelector::Type => Some(FieldValue::Int(self.metric_type as i64)),
            MetricSelector::DatapointAttribute(p) => self
                .labels
                .iter()
                .find(|(k, _)| p.len() == 1 && p[0] == *k)
                .map(|(_, v)| FieldValue::str(v)),
            MetricSelector::ResourceAttribute(p) if p.len() == 1 && p[0] == SERVICE_ATTRIBUTE => {
                Some(FieldValue::str(self.service))
            }
            _ => None,
        }
    }
}

/// The policy a finding recommends; panics when it recommends none.
pub fn recommended(finding: &Finding) -> &CreatePolicyRequest {
    finding.recommended.as_ref().unwrap_or_else(|| {
        panic!(
            "{} {} recommends no policy: {}",
            finding.kind, finding.subject, finding.summary
        )
    })
}

/// Whether `request`'s policy, compiled by the engine the edges run, drops
/// `series`.
pub fn drops(request: &CreatePolicyRequest, series: &Series) -> bool {
    let policy = request.policy.clone().expect("a policy");
    validate(&policy).expect("recommended policies are valid");
    let engine = Engine::compile(&[policy], &Arc::new(StatsRegistry::new()));
    !engine.evaluate_metric(series)
}

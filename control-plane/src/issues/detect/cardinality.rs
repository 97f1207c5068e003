//! `high_cardinality_label`: a label with at least `high_cardinality`
//! distinct values that no imported query reads.
//!
//! A v1 metric policy can drop series but not aggregate them, and removing
//! the label alone would make series collide (merged samples, broken
//! counters). So the recommendation drops the series that carry the label;
//! the lossless fix — a recording rule or instrumentation change that
//! aggregates the label away — is named in the summary. When the family is
//! read at all (or usage is unknown), dropping those series would empty
//! panels, so the severity is one step lower and no policy is recommended
//! (see `detect`'s module docs).

use super::recommend::DropPolicy;
use super::{Candidate, Ctx, Family, Finding, domain, estimate, kind, volume_clause};

pub(super) fn detect(ctx: &Ctx, family: &Family) -> Vec<Candidate> {
    let threshold = ctx.thresholds.high_cardinality;
    family
        .policy_labels()
        .filter(|l| l.cardinality >= threshold)
        .filter_map(|label| {
            let label_used = ctx.label_used(family, &label.name);
            if label_used == Some(true) {
                return None;
            }
            let name = family.name();
            let subject = format!("{name}{{{}}}", label.name);
            let estimate = estimate::label(
                family.inv,
                label,
                ctx.inventory.scrapes_per_minute,
                ctx.prices,
            );
            let mut severity = ctx.severity_for_cost(estimate.cost_per_month);
            let mut evidence = ctx.label_evidence(family, label);
            let mut summary = format!(
                "Label `{}` of `{name}` takes about {} distinct values (threshold {threshold}) \
                 and no imported query reads it. Dropping the series carrying it saves {}. \
                 Removing only the label is not a fix: without aggregation the \
                 series that differed only in `{}` would merge and corrupt each other; the \
                 lossless alternative is a recording rule (or instrumentation change) that \
                 aggregates `{}` away, after which the raw series can be dropped.",
                label.name,
                label.cardinality,
                volume_clause(&estimate),
                label.name,
                label.name,
            );
            if label_used.is_none() {
                evidence
                    .notes
                    .push("no usage source imported: label usage unknown".to_owned());
            }
            if family.possibly_used() {
                severity = severity.lower();
                summary.push(' ');
                summary.push_str(&family.usage_sentence());
            }
            let why = format!(
                "label {} has ~{} values and no query reads it",
                label.name, label.cardinality
            );
            let recommended = DropPolicy {
                kind: kind::HIGH_CARDINALITY_LABEL,
                service: ctx.service(),
                subject: &subject,
                family: name,
                family_type: &family.inv.r#type,
                label: Some(&label.name),
                short: "high-cardinality label",
                why: &why,
            }
            .request();
            Some(Candidate {
                finding: Finding {
                    kind: kind::HIGH_CARDINALITY_LABEL,
                    domain: domain::COST,
                    severity: severity.as_str(),
                    title: format!(
                        "`{name}` label `{}` has ~{} values",
                        label.name, label.cardinality
                    ),
                    summary,
                    service: ctx.service().to_owned(),
                    subject,
                    evidence,
                    provenance: ctx.provenance(
                        kind::HIGH_CARDINALITY_LABEL,
                        vec![format!("high_cardinality={threshold}")],
                    ),
                    estimate,
                    recommended: Some(recommended),
                    absorbed: Vec::new(),
                },
                family: name.to_owned(),
                label: Some(label.name.clone()),
                change: Vec::new(),
                possibly_used: family.possibly_used(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    fn api_requests(cardinality: u64) -> tero_proto::controlplane::FamilyInventory {
        let mut f = family("api_requests", "gauge", 2_000);
        f.labels = vec![
            label("path", cardinality, 1_000, &["/a", "/b"]),
            label("method", 4, 2_000, &["GET"]),
        ];
        f
    }

    fn high_card(findings: &[super::super::Finding]) -> Vec<&str> {
        findings
            .iter()
            .filter(|f| f.kind == "high_cardinality_label")
            .map(|f| f.subject.as_str())
            .collect()
    }

    #[test]
    fn the_threshold_is_inclusive() {
        let usage = FakeUsage::imported().used("api_requests", &[]);
        let below = run(&inventory(vec![api_requests(999)]), &usage);
        assert!(high_card(&below).is_empty());
        let at = run(&inventory(vec![api_requests(1_000)]), &usage);
        assert_eq!(high_card(&at), ["api_requests{path}"]);
    }

    #[test]
    fn a_label_read_by_a_query_is_not_reported() {
        let usage = FakeUsage::imported().used("api_requests", &["path"]);
        assert!(high_card(&run(&inventory(vec![api_requests(5_000)]), &usage)).is_empty());
        // Unknown usage: the label might be read.
        let usage = FakeUsage::imported().unknown("api_requests");
        assert!(high_card(&run(&inventory(vec![api_requests(5_000)]), &usage)).is_empty());
    }

    #[test]
    fn evidence_estimate_and_policy_cover_the_series_carrying_the_label() {
        let usage = FakeUsage::imported().used("api_requests", &["method"]);
        let findings = run(&inventory(vec![api_requests(5_000)]), &usage);
        let f = find(&findings, "high_cardinality_label", "api_requests{path}").unwrap();
        assert_eq!(f.domain, "cost");
        assert_eq!(f.evidence.labels.len(), 1);
        assert_eq!(f.evidence.labels[0].name, "path");
        assert_eq!(f.evidence.labels[0].cardinality, 5_000);
        assert!(!f.evidence.labels[0].used_in_queries);
        assert_eq!(f.evidence.example_series[0], "api_requests{path=\"/a\"}");
        assert_eq!(f.evidence.used_in, ["rules.yaml: api_requests:rate5m"]);
        // Half the series carry it: half of 2 000 × 100 bytes × 1440.
        assert_eq!(f.estimate.series, 1_000);
        assert_eq!(f.estimate.bytes_per_day, 144_000_000);
        assert_eq!(f.estimate.confidence, "medium");
        // $2.16 + $10 = $12.16: medium, one step lower because the family
        // is used.
        assert!((f.estimate.cost_per_month - 12.16).abs() < 1e-9);
        assert_eq!(f.severity, "low");
        assert!(f.summary.contains("recording rule"), "{}", f.summary);
        // The family is read: dropping the series carrying `path` would
        // change what the rule computes, so no policy is recommended.
        assert!(f.recommended.is_none());
        assert!(
            f.summary.contains("No policy is recommended")
                && f.summary.contains("aggregate `path` away"),
            "{}",
            f.summary
        );
    }

    #[test]
    fn without_usage_data_the_severity_is_lowered() {
        // Not known to be unused is treated like possibly used.
        let none = run(&inventory(vec![api_requests(5_000)]), &FakeUsage::none());
        let f = find(&none, "high_cardinality_label", "api_requests{path}").unwrap();
        assert_eq!(f.severity, "low");
        assert!(f.evidence.notes.iter().any(|n| n.contains("usage unknown")));
    }

    #[test]
    fn structural_labels_are_never_reported() {
        let mut h = family("rpc_seconds", "histogram", 10);
        h.labels = vec![label("le", 5_000, 10, &["0.1"])];
        let mut s = family("rpc_quantiles", "summary", 10);
        s.labels = vec![label("quantile", 5_000, 10, &["0.5"])];
        let usage = FakeUsage::imported()
            .used("rpc_seconds", &[])
            .used("rpc_quantiles", &[]);
        assert!(run(&inventory(vec![h, s]), &usage).is_empty());
    }
}

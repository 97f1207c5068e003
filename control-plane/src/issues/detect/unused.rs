//! `unused_metric`: families no imported dashboard, alert or rule
//! references.
//!
//! Only `FamilyUsage::Unused` qualifies, and only when at least one usage
//! source exists: without usage data nothing is known to be unused, and a
//! family an unparsed query or name pattern might read ("unknown") counts
//! as used.

use tero_usage::FamilyUsage;

use super::recommend::DropPolicy;
use super::{Candidate, Ctx, Family, domain, estimate, kind, volume_clause};

pub(super) fn detect(ctx: &Ctx, family: &Family) -> Option<Candidate> {
    if !matches!(family.usage, Some(FamilyUsage::Unused)) {
        return None;
    }
    let name = family.name();
    let estimate = estimate::family(family.inv, ctx.inventory.scrapes_per_minute, ctx.prices);
    if estimate.bytes_per_day < ctx.thresholds.min_unused_bytes_per_day {
        return None;
    }
    let severity = ctx.severity_for_cost(estimate.cost_per_month);
    let sources = ctx.sources.len();
    let mut evidence = ctx.family_evidence(family);
    evidence.notes.push(format!(
        "not referenced by any of {sources} usage source{}: {}",
        if sources == 1 { "" } else { "s" },
        ctx.sources.join(", ")
    ));
    let summary = format!(
        "No query in the {sources} imported usage source{} references `{name}` ({}). Dropping it \
         at the edge removes nothing anyone reads; keep it instead if it is queried outside those \
         sources (ad hoc, or from a dashboard not imported yet).",
        if sources == 1 { "" } else { "s" },
        volume_clause(&estimate),
    );
    let recommended = DropPolicy {
        kind: kind::UNUSED_METRIC,
        service: ctx.service(),
        subject: name,
        family: name,
        family_type: &family.inv.r#type,
        label: None,
        short: "unused",
        why: "no imported dashboard, alert or rule references it",
    }
    .request();
    Some(Candidate {
        finding: super::Finding {
            kind: kind::UNUSED_METRIC,
            domain: domain::COST,
            severity: severity.as_str(),
            title: format!("`{name}` is not used by any dashboard, alert or rule"),
            summary,
            service: ctx.service().to_owned(),
            subject: name.to_owned(),
            evidence,
            provenance: ctx.provenance(
                kind::UNUSED_METRIC,
                vec![format!(
                    "min_unused_bytes_per_day={}",
                    ctx.thresholds.min_unused_bytes_per_day
                )],
            ),
            estimate,
            recommended: Some(recommended),
            absorbed: Vec::new(),
        },
        family: name.to_owned(),
        label: None,
        change: Vec::new(),
        possibly_used: family.possibly_used(),
    })
}

#[cfg(test)]
mod tests {
    use tero_proto::policy::MetricType;

    use super::super::Thresholds;
    use super::super::testing::*;

    fn subjects(findings: &[super::super::Finding]) -> Vec<&str> {
        findings
            .iter()
            .filter(|f| f.kind == "unused_metric")
            .map(|f| f.subject.as_str())
            .collect()
    }

    #[test]
    fn only_families_no_source_references_are_unused() {
        let inv = inventory(vec![
            family("orders_created", "counter", 10),
            family("queue_depth", "gauge", 5),
            family("cache_hits", "counter", 5),
        ]);
        let usage = FakeUsage::imported()
            .used("orders_created", &[])
            .unknown("cache_hits");
        let findings = run(&inv, &usage);
        // Unknown counts as used.
        assert_eq!(subjects(&findings), ["queue_depth"]);
        let f = find(&findings, "unused_metric", "queue_depth").unwrap();
        assert_eq!(f.domain, "cost");
        assert_eq!(f.evidence.usage_sources, ["rules.yaml"]);
        assert!(f.evidence.used_in.is_empty());
        assert_eq!(f.evidence.series, 5);
        // 500 bytes a scrape, one scrape a minute.
        assert_eq!(f.estimate.bytes_per_day, 720_000);
        assert_eq!(f.estimate.confidence, "high");
        assert_eq!(f.severity, "low");
        assert_eq!(f.provenance.instances, ["i-1", "i-2"]);
        assert_eq!(f.provenance.inventory_to_unix_ms, 301_000);
        assert!(
            f.provenance
                .thresholds
                .contains(&"min_unused_bytes_per_day=0".to_owned())
        );
    }

    #[test]
    fn without_usage_sources_nothing_is_unused() {
        let inv = inventory(vec![family("queue_depth", "gauge", 5)]);
        assert!(subjects(&run(&inv, &FakeUsage::none())).is_empty());
    }

    #[test]
    fn the_recommendation_drops_the_whole_family_of_this_service() {
        let inv = inventory(vec![family("rpc_seconds", "histogram", 5)]);
        let findings = run(&inv, &FakeUsage::imported());
        let f = find(&findings, "unused_metric", "rpc_seconds").unwrap();
        let series = |service| Series {
            service,
            family: "rpc_seconds",
            metric_type: MetricType::Histogram,
            labels: &[("method", "get")],
        };
        assert!(drops(recommended(f), &series(SERVICE)));
        assert!(!drops(recommended(f), &series("other")));
    }

    #[test]
    fn min_bytes_per_day_is_an_inclusive_lower_bound() {
        // 500 bytes a scrape × 1440 scrapes = 720 000 bytes a day.
        let inv = inventory(vec![family("queue_depth", "gauge", 5)]);
        let at = Thresholds {
            min_unused_bytes_per_day: 720_000,
            ..Default::default()
        };
        assert_eq!(
            subjects(&run_with(&inv, &FakeUsage::imported(), &at)),
            ["queue_depth"]
        );
        let above = Thresholds {
            min_unused_bytes_per_day: 720_001,
            ..Default::default()
        };
        assert!(subjects(&run_with(&inv, &FakeUsage::imported(), &above)).is_empty());
    }

    #[test]
    fn severity_follows_cost() {
        // 10 000 series: $100 a month in series alone.
        let inv = inventory(vec![family("big", "gauge", 10_000)]);
        let findings = run(&inv, &FakeUsage::imported());
        assert_eq!(
            find(&findings, "unused_metric", "big").unwrap().severity,
            "high"
        );
    }

    #[test]
    fn families_without_series_are_skipped() {
        let inv = inventory(vec![family("empty", "gauge", 0)]);
        assert!(run(&inv, &FakeUsage::imported()).is_empty());
    }
}

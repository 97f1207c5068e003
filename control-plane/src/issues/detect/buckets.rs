//! `excessive_histogram_buckets`: histograms with more than `max_buckets`
//! bucket bounds.
//!
//! The right fix cannot be a v1 policy. The Prometheus edge hides the
//! structural `le` label from policies and gives every line of a histogram
//! series one decision (prometheus-edge.md; `SeriesView::label`
//! returns nothing for `le`), so single buckets cannot be dropped: a policy
//! can keep or drop whole series only. The finding therefore:
//!
//! - is always low severity: the only policy available drops data the
//!   service chose to export;
//! - recommends dropping the family as a stop-gap (what the estimate
//!   prices, since impact is verified against the recommended policy), and
//!   says in the summary that the real fix is fewer buckets in the
//!   instrumentation, suggesting at most `max_buckets / 2` bounds (every
//!   k-th of the current ones, `+Inf` kept) with what that would save;
//! - folds into `unused_metric` when nobody reads the family, because then
//!   the stop-gap and the fix coincide.

use super::recommend::DropPolicy;
use super::{
    Candidate, Ctx, Family, Finding, Severity, dollars, domain, estimate, human_bytes, kind,
    volume_clause,
};

const INF: &str = "+Inf";

pub(super) fn detect(ctx: &Ctx, family: &Family) -> Option<Candidate> {
    let max = ctx.thresholds.max_buckets;
    let buckets = family.inv.bucket_count;
    if !matches!(family.inv.r#type.as_str(), "histogram" | "gaugehistogram") || buckets <= max {
        return None;
    }
    let name = family.name();
    let target = (max / 2).max(2);
    let estimate = estimate::family(family.inv, ctx.inventory.scrapes_per_minute, ctx.prices);
    // Per series and scrape: one line per bucket plus `_sum` and `_count`.
    let share = f64::from(buckets.saturating_sub(target)) / f64::from(buckets + 2);
    let fix_bytes = (estimate.bytes_per_day as f64 * share).round() as u64;
    let fix_cost = estimate::cost_per_month(fix_bytes, 0, ctx.prices);
    let suggested = suggest_bounds(&family.inv.bucket_bounds, target as usize);

    let mut evidence = ctx.family_evidence(family);
    evidence.notes.push(format!(
        "{buckets} bucket bounds; re-instrumenting with {target} would save about {}/day ({})",
        human_bytes(fix_bytes),
        dollars(fix_cost)
    ));
    if !suggested.is_empty() {
        evidence
            .notes
            .push(format!("suggested bounds: {}", suggested.join(", ")));
    }
    let summary = format!(
        "`{name}` has {buckets} histogram buckets (threshold {max}), so every series writes \
         {buckets} bucket lines per scrape ({}). The real fix is fewer buckets in the \
         instrumentation: {target} bounds would cut about {:.0}% of its bytes ({}/day, {}) and \
         keep the family. A tero.policy.v1 policy cannot drop single buckets (the edge hides \
         `le` from policies and judges a histogram series as a whole), so dropping the \
         family is only a stop-gap. {}",
        volume_clause(&estimate),
        share * 100.0,
        human_bytes(fix_bytes),
        dollars(fix_cost),
        family.usage_sentence(),
    );
    let recommended = DropPolicy {
        kind: kind::EXCESSIVE_HISTOGRAM_BUCKETS,
        service: ctx.service(),
        subject: name,
        family: name,
        family_type: &family.inv.r#type,
        label: None,
        short: "too many histogram buckets, stop-gap",
        why: "too many histogram buckets; the real fix is fewer buckets in the instrumentation",
    }
    .request();
    Some(Candidate {
        finding: Finding {
            kind: kind::EXCESSIVE_HISTOGRAM_BUCKETS,
            domain: domain::COST,
            severity: Severity::Low.as_str(),
            title: format!("`{name}` has {buckets} histogram buckets"),
            summary,
            service: ctx.service().to_owned(),
            subject: name.to_owned(),
            evidence,
            provenance: ctx.provenance(
                kind::EXCESSIVE_HISTOGRAM_BUCKETS,
                vec![format!("max_buckets={max}")],
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

/// At most `target` bounds out of `bounds`: every k-th finite bound, always
/// the largest finite one, and `+Inf`.
fn suggest_bounds(bounds: &[String], target: usize) -> Vec<String> {
    let finite: Vec<&String> = bounds.iter().filter(|b| b.as_str() != INF).collect();
    if finite.is_empty() || target < 2 {
        return Vec::new();
    }
    let keep = target - 1;
    let step = finite.len().div_ceil(keep);
    let mut picked: Vec<String> = finite
        .iter()
        .rev()
        .step_by(step)
        .take(keep)
        .map(|b| b.to_string())
        .collect();
    picked.reverse();
    picked.push(INF.to_owned());
    picked
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn histogram(name: &str, buckets: u32) -> tero_proto::controlplane::FamilyInventory {
        let mut f = family(name, "histogram", 10);
        f.bucket_count = buckets;
        f.bucket_bounds = (1..buckets)
            .map(|i| format!("{}", f64::from(i) / 100.0))
            .chain([INF.to_owned()])
            .collect();
        f
    }

    #[test]
    fn more_than_max_buckets_is_reported() {
        let usage = FakeUsage::imported().used("rpc_seconds", &[]);
        let at = run(&inventory(vec![histogram("rpc_seconds", 30)]), &usage);
        assert!(at.is_empty());
        let above = run(&inventory(vec![histogram("rpc_seconds", 31)]), &usage);
        assert_eq!(
            kinds(&above),
            [("excessive_histogram_buckets", "rpc_seconds")]
        );
        let f = &above[0];
        assert_eq!(f.severity, "low");
        assert_eq!(f.evidence.bucket_count, 31);
        assert!(f.summary.contains("stop-gap"), "{}", f.summary);
        assert!(f.summary.contains("fewer buckets"), "{}", f.summary);
        assert!(f.summary.contains("It is used by 1 query"), "{}", f.summary);
        // The estimate prices the recommended policy: the whole family.
        assert_eq!(f.estimate.series, 10);
        assert_eq!(f.estimate.bytes_per_day, 1_440_000);
        // 15 bounds instead of 31: 16 of 33 lines per series.
        let fix = (1_440_000.0_f64 * 16.0 / 33.0).round() as u64;
        assert!(
            f.evidence.notes[0].contains(&human_bytes(fix)),
            "{:?}",
            f.evidence.notes
        );
    }

    #[test]
    fn only_histograms_are_judged() {
        let mut gauge = histogram("rpc_seconds", 50);
        gauge.r#type = "gauge".into();
        let usage = FakeUsage::imported().used("rpc_seconds", &[]);
        assert!(run(&inventory(vec![gauge]), &usage).is_empty());
        let mut gh = histogram("rpc_seconds", 50);
        gh.r#type = "gaugehistogram".into();
        assert_eq!(run(&inventory(vec![gh]), &usage).len(), 1);
    }

    #[test]
    fn an_unused_histogram_gets_one_issue_with_both_reasons() {
        let findings = run(
            &inventory(vec![histogram("rpc_seconds", 40)]),
            &FakeUsage::imported(),
        );
        assert_eq!(kinds(&findings), [("unused_metric", "rpc_seconds")]);
        assert!(
            findings[0]
                .evidence
                .notes
                .iter()
                .any(|n| n.contains("excessive_histogram_buckets")),
            "{:?}",
            findings[0].evidence.notes
        );
    }

    #[test]
    fn suggested_bounds_keep_inf_and_the_largest_bound() {
        let bounds: Vec<String> = ["1", "2", "3", "4", "5", "6", "7", INF]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(suggest_bounds(&bounds, 4), ["1", "4", "7", INF]);
        assert_eq!(suggest_bounds(&bounds, 15), bounds);
        assert!(suggest_bounds(&[INF.to_owned()], 4).is_empty());
        let suggested = suggest_bounds(&histogram("h", 61).bucket_bounds, 30);
        assert!(suggested.len() <= 30, "{}", suggested.len());
        assert_eq!(suggested.last().map(String::as_str), Some(INF));
    }
}

//! `duplicate_metric`: two families of one service that export the same
//! series — equal non-zero content hash (labels and values), equal type,
//! equal series count.
//!
//! Both families must carry labels (and the same label names). An
//! unlabelled family is one series whose hash is just its value, and many
//! unrelated counters sit at the same value (0) at once; that is a
//! coincidence, not a copy.
//!
//! Which one to drop, in order:
//! 1. the less used: referenced by name beats unknown (an unparsed query
//!    might read it) beats unused;
//! 2. the less conventional name: a `:` (reserved for recording rules) or
//!    upper-case letters;
//! 3. the longer name (`http_requests_total_v2` rather than
//!    `http_requests_total`), then the later one alphabetically, so the
//!    choice is stable.
//!
//! Three or more copies keep the best one and pair it with each other. The
//! subject is the pair's names, sorted, as `a=b`. When the family to drop
//! is unused, the `unused_metric` finding already drops it and this one is
//! folded into it.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use tero_usage::FamilyUsage;

use super::recommend::DropPolicy;
use super::{Candidate, Ctx, Family, Finding, domain, estimate, kind, volume_clause};

pub(super) fn detect(ctx: &Ctx) -> Vec<Candidate> {
    let mut groups: BTreeMap<(u64, &str, u64, Vec<&str>), Vec<&Family>> = BTreeMap::new();
    for family in &ctx.families {
        let inv = family.inv;
        if inv.content_hash == 0 || inv.labels.is_empty() {
            continue;
        }
        let mut labels: Vec<&str> = inv.labels.iter().map(|l| l.name.as_str()).collect();
        labels.sort_unstable();
        groups
            .entry((inv.content_hash, inv.r#type.as_str(), inv.series, labels))
            .or_default()
            .push(family);
    }
    let mut out = Vec::new();
    for mut group in groups.into_values().filter(|g| g.len() > 1) {
        group.sort_by_key(|f| keep_order(f));
        let (keeper, rest) = group.split_first().expect("two or more");
        out.extend(rest.iter().map(|dropped| finding(ctx, keeper, dropped)));
    }
    out
}

/// Smallest first: the family to keep.
fn keep_order<'a>(family: &'a Family) -> (Reverse<u8>, u8, usize, &'a str) {
    let usage = match &family.usage {
        Some(FamilyUsage::Used { .. }) => 2,
        Some(FamilyUsage::Unknown { .. }) | None => 1,
        Some(FamilyUsage::Unused) => 0,
    };
    let name = family.name();
    let unconventional =
        u8::from(name.contains(':')) + u8::from(name.chars().any(|c| c.is_ascii_uppercase()));
    (Reverse(usage), unconventional, name.len(), name)
}

fn finding(ctx: &Ctx, keeper: &Family, dropped: &Family) -> Candidate {
    let (keep, drop) = (keeper.name(), dropped.name());
    let subject = if keep < drop {
        format!("{keep}={drop}")
    } else {
        format!("{drop}={keep}")
    };
    let estimate = estimate::family(dropped.inv, ctx.inventory.scrapes_per_minute, ctx.prices);
    let mut severity = ctx.severity_for_cost(estimate.cost_per_month);
    let mut evidence = ctx.family_evidence(dropped);
    evidence.notes.push(format!(
        "same content hash {:016x}, type {} and {} series as `{keep}`",
        dropped.inv.content_hash, dropped.inv.r#type, dropped.inv.series
    ));
    if !keeper.locations().is_empty() {
        evidence.notes.push(format!(
            "`{keep}` is used in: {}",
            keeper.locations().join("; ")
        ));
    }
    let mut summary = format!(
        "`{drop}` and `{keep}` export identical series (same labels and values in the \
         inventoried scrape, {} series each). Keep `{keep}` and drop `{drop}` ({}).",
        dropped.inv.series,
        volume_clause(&estimate),
    );
    if dropped.possibly_used() {
        severity = severity.lower();
        summary.push_str(&format!(
            " {} Move those queries to `{keep}` before dropping it.",
            dropped.usage_sentence()
        ));
    }
    let why = format!("it exports the same series as {keep}");
    let recommended = DropPolicy {
        kind: kind::DUPLICATE_METRIC,
        service: ctx.service(),
        subject: &subject,
        family: drop,
        family_type: &dropped.inv.r#type,
        label: None,
        short: &format!("duplicate of {keep}"),
        why: &why,
    }
    .request();
    Candidate {
        finding: Finding {
            kind: kind::DUPLICATE_METRIC,
            domain: domain::COST,
            severity: severity.as_str(),
            title: format!("`{drop}` duplicates `{keep}`"),
            summary,
            service: ctx.service().to_owned(),
            subject,
            evidence,
            provenance: ctx.provenance(kind::DUPLICATE_METRIC, Vec::new()),
            estimate,
            recommended: Some(recommended),
            absorbed: Vec::new(),
        },
        family: drop.to_owned(),
        label: None,
        change: Vec::new(),
        possibly_used: dropped.possibly_used(),
    }
}

#[cfg(test)]
mod tests {
    use tero_proto::controlplane::FamilyInventory;

    use super::super::testing::*;
    use crate::issues::label_of;

    fn twin(name: &str, hash: u64) -> FamilyInventory {
        let mut f = family(name, "gauge", 20);
        f.content_hash = hash;
        f.labels = vec![label("route", 20, 20, &["/a"])];
        f
    }

    /// The family to drop, from the policy when there is one, else from
    /// the title (`` `drop` duplicates `keep` ``).
    fn dropped(f: &super::super::Finding) -> String {
        match &f.recommended {
            Some(r) => label_of(&r.policy.as_ref().unwrap().labels, "metric_family")
                .unwrap()
                .to_owned(),
            None => f.title.split('`').nth(1).unwrap().to_owned(),
        }
    }

    #[test]
    fn equal_hash_type_and_series_are_duplicates() {
        let usage = FakeUsage::imported()
            .used("http_inflight", &[])
            .used("http_inflight_v2", &[]);
        let findings = run(
            &inventory(vec![twin("http_inflight_v2", 7), twin("http_inflight", 7)]),
            &usage,
        );
        assert_eq!(
            kinds(&findings),
            [("duplicate_metric", "http_inflight=http_inflight_v2")]
        );
        let f = &findings[0];
        // Both used: the longer name goes, after its queries move.
        assert_eq!(dropped(f), "http_inflight_v2");
        assert!(f.summary.contains("Move those queries"), "{}", f.summary);
        assert_eq!(f.estimate.series, 20);
        // Queries read the one to drop: no policy until they move.
        assert!(f.recommended.is_none(), "{}", f.summary);
    }

    #[test]
    fn hash_type_and_series_must_all_match() {
        let usage = FakeUsage::none();
        let other_hash = inventory(vec![twin("a", 7), twin("b", 8)]);
        assert!(run(&other_hash, &usage).is_empty());

        let mut counter = twin("b", 7);
        counter.r#type = "counter".into();
        assert!(run(&inventory(vec![twin("a", 7), counter]), &usage).is_empty());

        let mut more = twin("b", 7);
        more.series = 21;
        assert!(run(&inventory(vec![twin("a", 7), more]), &usage).is_empty());

        let zero = inventory(vec![twin("a", 0), twin("b", 0)]);
        assert!(run(&zero, &usage).is_empty());

        let same = inventory(vec![twin("a", 7), twin("b", 7)]);
        assert_eq!(kinds(&run(&same, &usage)), [("duplicate_metric", "a=b")]);
    }

    #[test]
    fn unlabelled_families_are_never_duplicates() {
        let mut a = twin("errors_a_total", 7);
        let mut b = twin("errors_b_total", 7);
        a.labels.clear();
        b.labels.clear();
        assert!(run(&inventory(vec![a, b]), &FakeUsage::none()).is_empty());
    }

    #[test]
    fn the_used_one_is_kept() {
        // `a` is shorter, but only `zz_long_name` is read.
        let usage = FakeUsage::imported().used("zz_long_name", &[]).unknown("a");
        let findings = run(
            &inventory(vec![twin("a", 7), twin("zz_long_name", 7)]),
            &usage,
        );
        assert_eq!(kinds(&findings), [("duplicate_metric", "a=zz_long_name")]);
        assert_eq!(dropped(&findings[0]), "a");
    }

    #[test]
    fn the_longer_name_goes_when_usage_is_equal() {
        let findings = run(
            &inventory(vec![twin("a_requests_legacy", 7), twin("b_requests", 7)]),
            &FakeUsage::none(),
        );
        assert_eq!(dropped(&findings[0]), "a_requests_legacy");
    }

    #[test]
    fn recording_rule_style_names_are_dropped_first() {
        let findings = run(
            &inventory(vec![twin("job:x:rate", 7), twin("job_x_rate_long", 7)]),
            &FakeUsage::none(),
        );
        assert_eq!(dropped(&findings[0]), "job:x:rate");
    }

    #[test]
    fn an_unused_copy_is_reported_as_unused_with_its_twin_noted() {
        let usage = FakeUsage::imported().used("b", &[]);
        let findings = run(&inventory(vec![twin("a", 7), twin("b", 7)]), &usage);
        assert_eq!(kinds(&findings), [("unused_metric", "a")]);
        assert!(
            findings[0]
                .evidence
                .notes
                .iter()
                .any(|n| n.contains("duplicates `b`")),
            "{:?}",
            findings[0].evidence.notes
        );
    }

    #[test]
    fn three_copies_keep_one() {
        let findings = run(
            &inventory(vec![twin("m", 7), twin("m_copy", 7), twin("m_copy2", 7)]),
            &FakeUsage::none(),
        );
        assert_eq!(
            kinds(&findings),
            [
                ("duplicate_metric", "m=m_copy"),
                ("duplicate_metric", "m=m_copy2")
            ]
        );
    }
}

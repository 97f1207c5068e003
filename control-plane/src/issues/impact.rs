//! What a policy created from an issue measurably changed.
//!
//! Edges count, per policy, the bytes and series it dropped (or, in shadow
//! mode, would have dropped) and the scrapes it was evaluated in. Dividing
//! by scrapes gives the volume removed per scrape, whatever the scrape
//! interval and however long the policy has run, so it compares directly
//! with the inventory-based estimate the issue was accepted on.

use tero_proto::controlplane::{Issue, PolicyImpact, StatsBucket};

use super::IssueConfig;

/// `PolicyImpact.verdict`. A shadow policy drops nothing, so it can never
/// be `verified`: its verdicts say what enforcing it would do.
pub mod verdict {
    pub const MEASURING: &str = "measuring";
    pub const VERIFIED: &str = "verified";
    pub const BELOW_ESTIMATE: &str = "below_estimate";
    pub const WOULD_MEET_ESTIMATE: &str = "would_meet_estimate";
    pub const WOULD_FALL_BELOW_ESTIMATE: &str = "would_fall_below_estimate";
}

/// `PolicyImpact.mode`, in the words of `tero issues accept --mode`.
pub mod mode {
    pub const ACTIVE: &str = "active";
    pub const SHADOW: &str = "shadow";
}

const MINUTES_PER_DAY: f64 = 1440.0;

/// The impact of `policy_id`, linked to `issue`, active since
/// `active_since` with these statistics buckets.
pub fn measure(
    issue: &Issue,
    policy_id: &str,
    shadow: bool,
    active_since: i64,
    buckets: &[StatsBucket],
    config: &IssueConfig,
) -> PolicyImpact {
    let evidence = issue.evidence.clone().unwrap_or_default();
    let estimate = issue.estimate.clone().unwrap_or_default();
    let instances = issue
        .provenance
        .as_ref()
        .map_or(1, |p| p.instances.len().max(1)) as f64;
    let per_day = |per_scrape: f64| per_scrape * evidence.scrapes_per_minute * MINUTES_PER_DAY;

    let scrapes: i64 = buckets
        .iter()
        .fold(0i64, |sum, b| sum.saturating_add(b.scrapes));
    let bytes: i64 = buckets
        .iter()
        .fold(0i64, |sum, b| sum.saturating_add(b.bytes_dropped));
    let series: i64 = buckets
        .iter()
        .fold(0i64, |sum, b| sum.saturating_add(b.series_dropped));
    let (scrapes, bytes, series) = (
        scrapes.max(0) as u64,
        bytes.max(0) as u64,
        series.max(0) as u64,
    );

    // Inventory bytes are summed over the service's instances; statistics
    // are per instance-scrape, so scale back to the whole service.
    let per_scrape = if scrapes == 0 {
        0.0
    } else {
        bytes as f64 / scrapes as f64
    };
    let before = per_day(evidence.sample_bytes_per_scrape as f64);
    let dropped = per_day(per_scrape * instances);
    let ratio = if estimate.bytes_per_day == 0 {
        0.0
    } else {
        dropped / estimate.bytes_per_day as f64
    };
    let verdict = match (scrapes, shadow) {
        (s, _) if s < config.min_scrapes => verdict::MEASURING,
        (_, false) if ratio >= config.verify_ratio => verdict::VERIFIED,
        (_, true) if ratio >= config.verify_ratio => verdict::WOULD_MEET_ESTIMATE,
        (s, false) if s >= config.judge_after_scrapes => verdict::BELOW_ESTIMATE,
        (s, true) if s >= config.judge_after_scrapes => verdict::WOULD_FALL_BELOW_ESTIMATE,
        _ => verdict::MEASURING,
    };
    PolicyImpact {
        policy_id: policy_id.to_owned(),
        issue_id: issue.id.clone(),
        mode: if shadow { mode::SHADOW } else { mode::ACTIVE }.into(),
        active_since_unix_ms: active_since,
        before_bytes_per_day: before.round() as u64,
        before_series: evidence.series,
        scrapes,
        bytes_dropped: bytes,
        series_dropped: series,
        dropped_bytes_per_scrape: per_scrape.round() as u64,
        dropped_bytes_per_day: dropped.round() as u64,
        after_bytes_per_day: (before - dropped).max(0.0).round() as u64,
        estimate: Some(estimate),
        ratio,
        verdict: verdict.into(),
        // The window is the caller's (it chose the buckets).
        measured_since_unix_ms: 0,
        signal: "metric".into(),
        ..PolicyImpact::default()
    }
}

#[cfg(test)]
mod tests {
    use tero_proto::controlplane::{Evidence, ImpactEstimate, Provenance};

    use super::*;

    fn issue(bytes_per_scrape: u64, instances: usize) -> Issue {
        Issue {
            id: "ISS-1".into(),
            evidence: Some(Evidence {
                sample_bytes_per_scrape: bytes_per_scrape,
                scrapes_per_minute: 2.0,
                series: 10,
                ..Default::default()
            }),
            estimate: Some(ImpactEstimate {
                bytes_per_day: bytes_per_scrape * 2 * 1440,
                ..Default::default()
            }),
            provenance: Some(Provenance {
                instances: (0..instances).map(|i| format!("i-{i}")).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn bucket(scrapes: i64, bytes: i64) -> StatsBucket {
        StatsBucket {
            scrapes,
            bytes_dropped: bytes,
            series_dropped: scrapes * 10,
            ..Default::default()
        }
    }

    #[test]
    fn per_scrape_figures_compare_with_the_estimate() {
        let config = IssueConfig::default();
        // Two instances each dropping 500 B per scrape: 1000 B per service scrape.
        let impact = measure(
            &issue(1000, 2),
            "p",
            false,
            5,
            &[bucket(4, 2000), bucket(6, 3000)],
            &config,
        );
        assert_eq!(impact.scrapes, 10);
        assert_eq!(impact.dropped_bytes_per_scrape, 500);
        assert_eq!(impact.dropped_bytes_per_day, 1000 * 2 * 1440);
        assert_eq!(impact.after_bytes_per_day, 0);
        assert!((impact.ratio - 1.0).abs() < 1e-9);
        assert_eq!(impact.verdict, verdict::VERIFIED);
        assert_eq!(impact.mode, "active");
    }

    #[test]
    fn a_shadow_policy_is_never_verified() {
        let config = IssueConfig::default();
        let on = measure(
            &issue(1000, 1),
            "p",
            true,
            0,
            &[bucket(10, 10_000)],
            &config,
        );
        assert_eq!(on.mode, "shadow");
        assert!((on.ratio - 1.0).abs() < 1e-9);
        assert_eq!(on.verdict, verdict::WOULD_MEET_ESTIMATE);
        let short = measure(
            &issue(1000, 1),
            "p",
            true,
            0,
            &[bucket(30, 15_000)],
            &config,
        );
        assert_eq!(short.verdict, verdict::WOULD_FALL_BELOW_ESTIMATE);
    }

    #[test]
    fn too_few_scrapes_is_still_measuring_and_a_shortfall_is_flagged_late() {
        let config = IssueConfig::default();
        let early = measure(&issue(1000, 1), "p", true, 0, &[bucket(2, 2000)], &config);
        assert_eq!(early.verdict, verdict::MEASURING);
        assert_eq!(early.mode, "shadow");
        let short = measure(&issue(1000, 1), "p", false, 0, &[bucket(10, 5000)], &config);
        assert_eq!(
            short.verdict,
            verdict::MEASURING,
            "ratio 0.5 but not yet judged"
        );
        let flagged = measure(
            &issue(1000, 1),
            "p",
            false,
            0,
            &[bucket(30, 15000)],
            &config,
        );
        assert_eq!(flagged.verdict, verdict::BELOW_ESTIMATE);
        assert!((flagged.ratio - 0.5).abs() < 1e-9);
    }
}

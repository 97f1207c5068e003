//! What a policy created from an issue measurably changed.
//!
//! Edges count, per policy, the bytes and series it dropped (or, in shadow
//! mode, would have dropped) and the scrapes it was evaluated in. Dividing
//! by scrapes gives the volume removed per scrape, whatever the scrape
//! interval and however long the policy has run, so it compares directly
//! with the inventory-based estimate the issue was accepted on.
//!
//! Log and trace policies have no scrapes: edges count the records (log
//! records, spans) they dropped as they stream through, so [`measure_events`]
//! divides by the minutes measured instead and compares records per day with
//! the estimate. A redaction drops nothing: the records it rewrote (its
//! hits) are its figure.

use tero_proto::controlplane::{Issue, PolicyImpact, StatsBucket};
use tero_proto::policy::Policy;
use tero_proto::policy::policy::Target;

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
const MINUTE_MS: f64 = 60_000.0;

/// `PolicyImpact.signal`.
pub mod signal {
    pub const METRIC: &str = "metric";
    pub const LOG: &str = "log";
    pub const TRACE: &str = "trace";
}

/// The signal `policy` acts on; metric when it has no target (the only
/// kind of policy issues recommended before logs and traces).
pub fn signal_of(policy: Option<&Policy>) -> &'static str {
    match policy.and_then(|p| p.target.as_ref()) {
        Some(Target::Log(_)) => signal::LOG,
        Some(Target::Trace(_)) => signal::TRACE,
        Some(Target::Metric(_)) | None => signal::METRIC,
    }
}

/// A log policy that keeps every record and rewrites them (redacts,
/// removes a field): its effect is the records it rewrote, not dropped.
pub fn rewrites_only(policy: Option<&Policy>) -> bool {
    match policy.and_then(|p| p.target.as_ref()) {
        Some(Target::Log(log)) => {
            matches!(log.keep.trim(), "" | "all")
                && log.transform.as_ref().is_some_and(|t| {
                    !t.redact.is_empty()
                        || !t.remove.is_empty()
                        || !t.rename.is_empty()
                        || !t.add.is_empty()
                })
        }
        _ => false,
    }
}

/// What a log or trace policy's window looked like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventWindow {
    /// Start of the measurement (Unix ms; see `PolicyImpact.measured_since_unix_ms`).
    pub measured_since: i64,
    /// Now (Unix ms).
    pub now: i64,
    /// Records of the policy's signal the service's edges saw in the
    /// window; `None` when none of them reported volume.
    pub service_records: Option<f64>,
}

/// The impact of a log or trace policy `policy` (signal `signal`), linked
/// to `issue`, over `window` with these statistics buckets. Figures are per
/// minute of the window (at least one minute once it has begun) and per
/// day; the verdict waits for `config.min_scrapes` minutes before saying
/// anything and flags a shortfall after `config.judge_after_scrapes`
/// minutes, the thresholds metrics count in scrapes (one a minute is the
/// common scrape interval, so both wait about as long).
#[allow(clippy::too_many_arguments)]
pub fn measure_events(
    issue: &Issue,
    policy_id: &str,
    signal: &str,
    rewrites: bool,
    shadow: bool,
    active_since: i64,
    window: EventWindow,
    buckets: &[StatsBucket],
    config: &IssueConfig,
) -> PolicyImpact {
    let evidence = issue.evidence.clone().unwrap_or_default();
    let estimate = issue.estimate.clone().unwrap_or_default();
    let total = |f: fn(&StatsBucket) -> i64| {
        buckets
            .iter()
            .fold(0i64, |sum, b| sum.saturating_add(f(b)))
            .max(0) as u64
    };
    let records = if rewrites {
        total(|b| b.hits)
    } else {
        total(|b| b.series_dropped)
    };
    let bytes = total(|b| b.bytes_dropped);
    let elapsed = window.now.saturating_sub(window.measured_since);
    let minutes = if elapsed < 0 {
        // The window begins in the future (after a promotion): nothing is
        // counted yet.
        0.0
    } else {
        (elapsed as f64 / MINUTE_MS).max(1.0)
    };
    let per_minute = |n: u64| {
        if minutes > 0.0 {
            n as f64 / minutes
        } else {
            0.0
        }
    };
    let records_per_minute = per_minute(records);
    let records_per_day = records_per_minute * MINUTES_PER_DAY;
    let bytes_per_day = per_minute(bytes) * MINUTES_PER_DAY;
    let ratio = if estimate.records_per_day == 0 {
        0.0
    } else {
        records_per_day / estimate.records_per_day as f64
    };
    let min_minutes = config.min_scrapes as f64;
    let judge_minutes = config.judge_after_scrapes as f64;
    let verdict = match shadow {
        _ if minutes < min_minutes.max(1.0) => verdict::MEASURING,
        false if ratio >= config.verify_ratio => verdict::VERIFIED,
        true if ratio >= config.verify_ratio => verdict::WOULD_MEET_ESTIMATE,
        false if minutes >= judge_minutes => verdict::BELOW_ESTIMATE,
        true if minutes >= judge_minutes => verdict::WOULD_FALL_BELOW_ESTIMATE,
        _ => verdict::MEASURING,
    };
    let (share_before, share_dropped) = match window.service_records {
        Some(seen) if seen > 0.0 => (
            Some(evidence.volume_share),
            Some((records as f64 / seen).min(1.0)),
        ),
        _ => (None, None),
    };
    PolicyImpact {
        policy_id: policy_id.to_owned(),
        issue_id: issue.id.clone(),
        mode: if shadow { mode::SHADOW } else { mode::ACTIVE }.into(),
        active_since_unix_ms: active_since,
        before_bytes_per_day: evidence.bytes_per_day,
        bytes_dropped: bytes,
        series_dropped: total(|b| b.series_dropped),
        dropped_bytes_per_day: bytes_per_day.round() as u64,
        after_bytes_per_day: (evidence.bytes_per_day as f64 - bytes_per_day)
            .max(0.0)
            .round() as u64,
        estimate: Some(estimate),
        ratio,
        verdict: verdict.into(),
        measured_since_unix_ms: window.measured_since,
        signal: signal.to_owned(),
        records_dropped: records,
        records_per_minute,
        records_dropped_per_day: records_per_day.round() as u64,
        before_records_per_day: evidence.records_per_day,
        volume_share_before: share_before,
        volume_share_dropped: share_dropped,
        minutes_measured: minutes,
        ..PolicyImpact::default()
    }
}

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
        signal: signal::METRIC.into(),
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

    fn log_issue(records_per_day: u64, share: f64) -> Issue {
        Issue {
            id: "ISS-2".into(),
            kind: "health_check_logs".into(),
            evidence: Some(Evidence {
                records_per_day,
                bytes_per_day: records_per_day * 100,
                volume_share: share,
                ..Default::default()
            }),
            estimate: Some(ImpactEstimate {
                records_per_day,
                bytes_per_day: records_per_day * 100,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn dropped(minute: i64, records: i64) -> StatsBucket {
        StatsBucket {
            minute_unix_ms: minute,
            hits: records,
            series_dropped: records,
            bytes_dropped: records * 100,
            ..Default::default()
        }
    }

    const T0: i64 = 1_800_000_000_000;

    fn window(minutes: i64, seen: Option<f64>) -> EventWindow {
        EventWindow {
            measured_since: T0,
            now: T0 + minutes * 60_000,
            service_records: seen,
        }
    }

    fn log_measure(
        issue: &Issue,
        shadow: bool,
        rewrites: bool,
        window: EventWindow,
        buckets: &[StatsBucket],
    ) -> PolicyImpact {
        measure_events(
            issue,
            "p",
            signal::LOG,
            rewrites,
            shadow,
            T0,
            window,
            buckets,
            &IssueConfig::default(),
        )
    }

    #[test]
    fn log_records_dropped_per_minute_compare_with_the_estimate() {
        // 1440 records a day is one a minute; ten minutes drop ten.
        let issue = log_issue(1440, 0.25);
        let impact = log_measure(
            &issue,
            false,
            false,
            window(10, Some(40.0)),
            &[dropped(T0, 4), dropped(T0 + 60_000, 6)],
        );
        assert_eq!(impact.signal, "log");
        assert_eq!(impact.records_dropped, 10);
        assert!((impact.minutes_measured - 10.0).abs() < 1e-9);
        assert!((impact.records_per_minute - 1.0).abs() < 1e-9);
        assert_eq!(impact.records_dropped_per_day, 1440);
        assert_eq!(impact.dropped_bytes_per_day, 144_000);
        assert_eq!(impact.before_records_per_day, 1440);
        assert_eq!(impact.before_bytes_per_day, 144_000);
        assert_eq!(impact.after_bytes_per_day, 0);
        assert!((impact.ratio - 1.0).abs() < 1e-9);
        assert_eq!(impact.verdict, verdict::VERIFIED);
        assert_eq!(impact.volume_share_before, Some(0.25));
        assert_eq!(impact.volume_share_dropped, Some(0.25));
        assert_eq!(impact.measured_since_unix_ms, T0);
    }

    #[test]
    fn a_shadow_log_policy_would_meet_or_fall_below_and_is_never_verified() {
        let issue = log_issue(1440, 0.1);
        let meets = log_measure(&issue, true, false, window(5, None), &[dropped(T0, 5)]);
        assert_eq!(meets.mode, "shadow");
        assert_eq!(meets.verdict, verdict::WOULD_MEET_ESTIMATE);
        assert_eq!(meets.volume_share_before, None, "no volume reported");
        assert_eq!(meets.volume_share_dropped, None);
        let short = log_measure(&issue, true, false, window(40, None), &[dropped(T0, 10)]);
        assert_eq!(short.verdict, verdict::WOULD_FALL_BELOW_ESTIMATE);
    }

    #[test]
    fn a_log_policy_below_its_estimate_is_flagged_only_after_enough_minutes() {
        let issue = log_issue(1440, 0.1);
        let early = log_measure(&issue, false, false, window(2, None), &[dropped(T0, 2)]);
        assert_eq!(early.verdict, verdict::MEASURING, "two minutes is too few");
        let half = log_measure(&issue, false, false, window(10, None), &[dropped(T0, 5)]);
        assert!((half.ratio - 0.5).abs() < 1e-9);
        assert_eq!(half.verdict, verdict::MEASURING, "not yet judged");
        let flagged = log_measure(&issue, false, false, window(30, None), &[dropped(T0, 15)]);
        assert_eq!(flagged.verdict, verdict::BELOW_ESTIMATE);
        let future = EventWindow {
            measured_since: T0 + 60_000,
            now: T0,
            service_records: None,
        };
        let waiting = log_measure(&issue, false, false, future, &[]);
        assert_eq!(
            (waiting.minutes_measured, waiting.records_dropped),
            (0.0, 0)
        );
        assert_eq!(waiting.verdict, verdict::MEASURING);
    }

    #[test]
    fn a_redaction_counts_the_records_it_rewrote() {
        let issue = log_issue(1440, 0.5);
        let rewrote = StatsBucket {
            hits: 10,
            series_dropped: 0,
            bytes_dropped: 0,
            ..Default::default()
        };
        let impact = log_measure(&issue, false, true, window(10, Some(20.0)), &[rewrote]);
        assert_eq!(impact.records_dropped, 10);
        assert_eq!(impact.verdict, verdict::VERIFIED);
        assert_eq!(impact.volume_share_dropped, Some(0.5));
        // Read as a drop, the same counts would show nothing.
        let as_drop = log_measure(&issue, false, false, window(10, Some(20.0)), &[rewrote]);
        assert_eq!(as_drop.records_dropped, 0);
    }

    #[test]
    fn the_signal_and_a_rewrite_come_from_the_policy_target() {
        use tero_proto::policy::{LogRedact, LogTarget, LogTransform, MetricTarget, TraceTarget};
        let with = |target: Target| Policy {
            target: Some(target),
            ..Default::default()
        };
        let redact = with(Target::Log(LogTarget {
            keep: "all".into(),
            transform: Some(LogTransform {
                redact: vec![LogRedact::default()],
                ..Default::default()
            }),
            ..Default::default()
        }));
        let drop = with(Target::Log(LogTarget {
            keep: "none".into(),
            ..Default::default()
        }));
        assert_eq!(signal_of(Some(&redact)), signal::LOG);
        assert!(rewrites_only(Some(&redact)));
        assert!(!rewrites_only(Some(&drop)));
        assert_eq!(
            signal_of(Some(&with(Target::Trace(TraceTarget::default())))),
            signal::TRACE
        );
        assert_eq!(
            signal_of(Some(&with(Target::Metric(MetricTarget::default())))),
            signal::METRIC
        );
        assert_eq!(signal_of(None), signal::METRIC);
    }
}

//! A policy promoted from shadow to active is measured anew: the statistics
//! its shadow phase left in the minute of the change (and in reports that
//! arrive just after it) are not counted as what the active policy dropped.
//! The verdict that verifies it resolves the issue at once, whoever asks.

use tero_control_plane::issues::{Analyst, IssueConfig, MODE_LABEL, SHADOW_MODE, status};
use tero_control_plane::store::{CounterDelta, PolicyChange, StatsBatch, Store};
use tero_proto::controlplane::{Evidence, ImpactEstimate, Issue, Provenance, Scope};
use tero_proto::otel::{AnyValue, KeyValue, any_value::Value};
use tero_proto::policy::{
    MetricField, MetricMatcher, MetricTarget, Policy, metric_matcher, policy,
};

const POLICY: &str = "drop-debug-cache";
const BYTES_PER_SCRAPE: i64 = 1000;

fn shadow_policy() -> Policy {
    Policy {
        id: POLICY.into(),
        name: POLICY.into(),
        enabled: true,
        labels: vec![KeyValue {
            key: MODE_LABEL.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(SHADOW_MODE.into())),
            }),
        }],
        target: Some(policy::Target::Metric(MetricTarget {
            r#match: vec![MetricMatcher {
                field: Some(metric_matcher::Field::MetricField(MetricField::Name as i32)),
                r#match: Some(metric_matcher::Match::Exact("debug_cache_entries".into())),
                ..Default::default()
            }],
            keep: false,
        })),
        ..Default::default()
    }
}

fn bucket(minute: i64, scrapes: i64, bytes: i64) -> StatsBatch {
    StatsBatch {
        report: None,
        deltas: vec![CounterDelta {
            policy_id: POLICY.into(),
            minute,
            hits: scrapes,
            bytes_dropped: bytes,
            series_dropped: scrapes,
            scrapes,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_promoted_policy_is_measured_without_its_shadow_phase_and_resolved_at_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    let store = Store::open(&url).await.expect("open SQLite store");
    let created = store
        .create_policy(PolicyChange {
            policy: shadow_policy(),
            scope: Scope::default(),
            actor: "admin".into(),
            reason: "accepted in shadow".into(),
        })
        .await
        .expect("create the policy");
    let issue = store
        .save_issue(Issue {
            kind: "unused_metric".into(),
            domain: "cost".into(),
            severity: "low".into(),
            status: status::IN_PROGRESS.into(),
            remediation: status::SHADOW.into(),
            title: "debug_cache_entries is never queried".into(),
            service: "checkout".into(),
            subject: "debug_cache_entries".into(),
            policy_id: POLICY.into(),
            evidence: Some(Evidence {
                sample_bytes_per_scrape: BYTES_PER_SCRAPE as u64,
                scrapes_per_minute: 1.0,
                ..Default::default()
            }),
            estimate: Some(ImpactEstimate {
                bytes_per_day: BYTES_PER_SCRAPE as u64 * 1440,
                ..Default::default()
            }),
            provenance: Some(Provenance {
                instances: vec!["edge-1".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("save the issue");

    // Promoted: the mode label goes.
    let mut active = shadow_policy();
    active.labels.clear();
    store
        .update_policy(
            PolicyChange {
                policy: active,
                scope: Scope::default(),
                actor: "admin".into(),
                reason: "promote".into(),
            },
            created.revision,
        )
        .await
        .expect("promote");
    let promoted_at = store.policy_history(POLICY).await.expect("history")[0].at_unix_ms;
    let minute = promoted_at - promoted_at.rem_euclid(60_000);
    // The shadow phase's scrapes of the promotion's minute (nothing would
    // have been dropped in them), then the active policy dropping all.
    store
        .apply_stats(
            &[
                bucket(minute, 100, 0),
                bucket(minute + 120_000, 5, 5 * BYTES_PER_SCRAPE),
            ],
            promoted_at,
        )
        .await
        .expect("stats");

    let analyst = Analyst::new(store.clone(), IssueConfig::default());
    let impact = analyst
        .impact(&issue)
        .await
        .expect("impact")
        .expect("an active policy has an impact");
    assert_eq!(impact.mode, "active", "{impact:?}");
    assert_eq!(impact.scrapes, 5, "{impact:?}");
    assert_eq!(impact.dropped_bytes_per_scrape, BYTES_PER_SCRAPE as u64);
    assert_eq!(impact.verdict, "verified", "{impact:?}");
    // The window shown is the one measured: the first full minute that
    // begins at least 30 s after the promotion.
    let lag_end = promoted_at + 30_000;
    let window = lag_end + (60_000 - lag_end.rem_euclid(60_000)) % 60_000;
    assert!(window > minute && window <= minute + 120_000, "{window}");
    assert_eq!(impact.measured_since_unix_ms, window, "{impact:?}");
    // The verdict that says verified also resolved the issue.
    let resolved = store.get_issue(&issue.id).await.expect("issue");
    assert_eq!(resolved.status, status::RESOLVED, "{resolved:?}");
    assert_eq!(resolved.remediation, status::VERIFIED, "{resolved:?}");
    assert!(resolved.resolution.contains(POLICY), "{resolved:?}");
}

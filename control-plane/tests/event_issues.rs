//! Log and trace issues around their detectors: what the analyst hands
//! them (a service's classified log and span event types, its edges' volume
//! per day), that each family of issue kinds is reconciled on its own, and
//! that an accepted log policy is verified and revoked through the same
//! checks as a metric one.

use std::collections::BTreeMap;
use std::sync::Arc;

use tero_classify::{Chain, Embedded};
use tero_control_plane::classify::{Classifications, Trigger};
use tero_control_plane::issues::{Analyst, IssueConfig, status};
use tero_control_plane::store::{
    CounterDelta, EdgeRecord, EdgeVolume, PolicyChange, StatsBatch, Store, VolumeCounts, now_ms,
};
use tero_proto::controlplane::{
    Evidence, FamilyInventory, ImpactEstimate, InventoryReport, Issue, LogTemplate, Scope,
    SpanPattern, Transport,
};
use tero_proto::policy::{
    ClientMetadata, LogField, LogMatcher, LogTarget, Policy, log_matcher, policy,
};

const MINUTE: i64 = 60_000;

async fn open(dir: &tempfile::TempDir) -> Store {
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    Store::open(&url).await.expect("open SQLite store")
}

fn edge(instance: &str, service: &str, seen: i64) -> EdgeRecord {
    EdgeRecord {
        instance_id: instance.into(),
        service_name: service.into(),
        service_namespace: String::new(),
        service_version: String::new(),
        metadata: ClientMetadata::default(),
        transport: Transport::Stream,
        replica: "r".into(),
        api_key_id: "key".into(),
        first_seen: seen,
        last_seen: seen,
        connected: true,
        desired_hash: String::new(),
        applied_hash: String::new(),
        last_failed_hash: String::new(),
        policy_errors: BTreeMap::new(),
        refusal: None,
        conflict_key_id: String::new(),
        conflict_at: 0,
    }
}

fn volume(instance: &str, minute: i64, log_records: i64, spans: i64) -> StatsBatch {
    StatsBatch {
        report: None,
        deltas: Vec::new(),
        volume: Some(EdgeVolume {
            instance_id: instance.into(),
            minute,
            counts: VolumeCounts {
                log_records,
                log_bytes: log_records * 100,
                spans,
                span_bytes: spans * 200,
                ..Default::default()
            },
        }),
    }
}

fn report(templates: Vec<LogTemplate>, spans: Vec<SpanPattern>) -> InventoryReport {
    InventoryReport {
        session: "s".into(),
        seq: 1,
        log_templates: templates,
        span_patterns: spans,
        ..Default::default()
    }
}

fn template(service: &str, text: &str, severity: &str) -> LogTemplate {
    LogTemplate {
        fingerprint: tero_sdk::templates::fingerprint(service, text),
        text: text.into(),
        count: 50,
        bytes: 5_000,
        severity: severity.into(),
        examples: vec![text.replace("<num>", "7")],
        first_seen_unix_ms: now_ms(),
        last_seen_unix_ms: now_ms(),
        ..Default::default()
    }
}

fn healthz() -> SpanPattern {
    SpanPattern {
        fingerprint: "span-healthz".into(),
        name: "GET /healthz".into(),
        kind: "server".into(),
        route: "/healthz".into(),
        user_agent: "kube-probe/1.29".into(),
        count: 20,
        bytes: 4_000,
        attribute_keys: vec!["http.route".into()],
        examples: vec!["GET /healthz kind=server http.route=/healthz".into()],
        first_seen_unix_ms: now_ms(),
        last_seen_unix_ms: now_ms(),
        ..Default::default()
    }
}

fn open_issue(service: &str, kind: &str, subject: &str) -> Issue {
    Issue {
        kind: kind.into(),
        domain: "cost".into(),
        severity: "low".into(),
        status: status::OPEN.into(),
        title: format!("{kind} {subject}"),
        service: service.into(),
        subject: subject.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_analyst_gives_the_detectors_a_services_classified_events_and_volume_per_day() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(&dir).await;
    let classifications =
        Classifications::new(store.clone(), Chain::new(Box::new(Embedded::new())), None);
    let analyst = Analyst::new(store.clone(), IssueConfig::default());
    analyst.set_classifications(Arc::clone(&classifications));

    let now = now_ms();
    let minute = now - now.rem_euclid(MINUTE);
    // Two edges of checkout (one reporting volume ten minutes ago and now),
    // one of another service whose volume must not count.
    store
        .upsert_edges(&[
            edge("edge-a", "checkout", now),
            edge("edge-b", "checkout", now),
            edge("edge-c", "cart", now),
        ])
        .await
        .expect("edges");
    store
        .apply_stats(
            &[
                volume("edge-a", minute - 10 * MINUTE, 300, 60),
                volume("edge-a", minute, 100, 20),
                volume("edge-c", minute - 20 * MINUTE, 9_999, 9_999),
            ],
            now,
        )
        .await
        .expect("volume");
    assert!(
        classifications
            .record_report(
                "edge-a",
                "checkout",
                &report(
                    vec![
                        template("checkout", "DEBUG cache miss for key <num>", "DEBUG"),
                        template("checkout", "order <num> paid", "INFO"),
                        // Last seen two days ago: no longer analysed.
                        LogTemplate {
                            first_seen_unix_ms: now - 2 * 86_400_000,
                            last_seen_unix_ms: now - 2 * 86_400_000,
                            ..template("checkout", "legacy job <num> done", "INFO")
                        },
                    ],
                    vec![healthz()],
                ),
            )
            .await
            .expect("counted")
    );
    // Another service's events stay out.
    classifications
        .record_report(
            "edge-c",
            "cart",
            &report(
                vec![template("cart", "cart <num> emptied", "INFO")],
                Vec::new(),
            ),
        )
        .await
        .expect("counted");
    let run = classifications
        .run(Trigger::Api, "admin", false)
        .await
        .expect("run");

    let inventory = analyst
        .event_inventory("checkout", now)
        .await
        .expect("inventory")
        .expect("checkout has log and span event types");
    assert_eq!(inventory.service, "checkout");
    let mut kinds: Vec<(&str, &str)> = inventory
        .events
        .iter()
        .map(|e| (e.event.kind.as_str(), e.event.name.as_str()))
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            ("log", "DEBUG cache miss for key <num>"),
            ("log", "order <num> paid"),
            ("span", "GET /healthz"),
        ]
    );
    for e in &inventory.events {
        let c = e.classification.as_ref().expect("classified in the run");
        assert_eq!(e.run_id, run.id, "{e:?}");
        assert_eq!(c.run_id, run.id);
        assert_eq!(e.event.edges, ["edge-a"]);
        assert!(!e.event.examples.is_empty());
    }
    // 400 records and 80 spans since the first minute edge-a reported.
    let start = minute - 10 * MINUTE;
    let per_day = 86_400_000.0 / (now - start) as f64;
    let v = &inventory.volume;
    assert!(
        (v.log_records_per_day - 400.0 * per_day).abs() < 1e-6,
        "{v:?}"
    );
    assert!(
        (v.log_bytes_per_day - 40_000.0 * per_day).abs() < 1e-6,
        "{v:?}"
    );
    assert!((v.spans_per_day - 80.0 * per_day).abs() < 1e-6, "{v:?}");
    assert!(
        (v.span_bytes_per_day - 16_000.0 * per_day).abs() < 1e-6,
        "{v:?}"
    );
    assert_eq!(v.edges, ["edge-a", "edge-b"]);
    assert_eq!(v.edges_reporting, 1);
    assert_eq!((inventory.from_unix_ms, inventory.to_unix_ms), (start, now));

    assert!(
        analyst
            .event_inventory("nobody", now)
            .await
            .expect("inventory")
            .is_none(),
        "a service without event types has nothing to detect"
    );
}

#[tokio::test]
async fn metric_and_event_issues_are_reconciled_only_by_their_own_analysis() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(&dir).await;
    let classifications =
        Classifications::new(store.clone(), Chain::new(Box::new(Embedded::new())), None);
    let analyst = Analyst::new(store.clone(), IssueConfig::default());
    analyst.set_classifications(Arc::clone(&classifications));

    // checkout: event types, no metric inventory. cart: the other way round.
    classifications
        .record_report(
            "edge-a",
            "checkout",
            &report(
                vec![template("checkout", "order <num> paid", "INFO")],
                Vec::new(),
            ),
        )
        .await
        .expect("counted");
    let now = now_ms();
    store
        .put_inventory(
            "edge-c",
            "cart",
            &InventoryReport {
                session: "s".into(),
                seq: 1,
                window_start_unix_ms: now - 1_000,
                window_end_unix_ms: now,
                scrapes: 1,
                scrapes_inventoried: 1,
                families: vec![FamilyInventory {
                    name: "cart_items".into(),
                    r#type: "gauge".into(),
                    series: 1,
                    sample_bytes: 40,
                    ..Default::default()
                }],
                ..Default::default()
            },
            now,
        )
        .await
        .expect("inventory");
    let mut saved = Vec::new();
    for issue in [
        open_issue("checkout", "unused_metric", "checkout_latency"),
        open_issue("checkout", "debug_logs", "gone-fingerprint"),
        open_issue("cart", "debug_logs", "gone-fingerprint"),
        open_issue("cart", "unused_metric", "gone_family"),
    ] {
        saved.push(store.save_issue(issue).await.expect("save"));
    }
    analyst.analyse("checkout").await.expect("analyse checkout");
    analyst.analyse("cart").await.expect("analyse cart");
    let status_of = |i: usize| {
        let store = store.clone();
        let id = saved[i].id.clone();
        async move { store.get_issue(&id).await.expect("issue").status }
    };
    assert_eq!(
        status_of(0).await,
        status::OPEN,
        "an event-only pass leaves metric issues alone"
    );
    assert_eq!(
        status_of(1).await,
        status::RESOLVED,
        "the event pass resolves the event issue whose condition is gone"
    );
    assert_eq!(
        status_of(2).await,
        status::OPEN,
        "a metric-only pass leaves log issues alone"
    );
    assert_eq!(status_of(3).await, status::RESOLVED);
}

const POLICY: &str = "drop-healthz-logs";

fn log_policy(enabled: bool) -> Policy {
    Policy {
        id: POLICY.into(),
        name: POLICY.into(),
        enabled,
        target: Some(policy::Target::Log(LogTarget {
            r#match: vec![LogMatcher {
                field: Some(log_matcher::Field::LogField(LogField::Body as i32)),
                r#match: Some(log_matcher::Match::Regex("^GET /healthz ".into())),
                ..Default::default()
            }],
            keep: "none".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_log_policy_is_verified_from_records_dropped_and_revoked_when_disabled() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(&dir).await;
    let created = store
        .create_policy(PolicyChange {
            policy: log_policy(true),
            scope: Scope::default(),
            actor: "admin".into(),
            reason: "accepted".into(),
        })
        .await
        .expect("create the policy");
    // 14 400 records a day: 10 a minute.
    let issue = store
        .save_issue(Issue {
            status: status::IN_PROGRESS.into(),
            remediation: status::ACTIVE.into(),
            policy_id: POLICY.into(),
            evidence: Some(Evidence {
                records_per_day: 14_400,
                bytes_per_day: 1_440_000,
                volume_share: 0.5,
                ..Default::default()
            }),
            estimate: Some(ImpactEstimate {
                records_per_day: 14_400,
                bytes_per_day: 1_440_000,
                ..Default::default()
            }),
            ..open_issue("checkout", "health_check_logs", "fp-healthz")
        })
        .await
        .expect("save the issue");
    let history = store.policy_history(POLICY).await.expect("history");
    let since = history[0].at_unix_ms;
    let minute = since - since.rem_euclid(MINUTE);
    store
        .apply_stats(
            &[StatsBatch {
                report: None,
                deltas: vec![CounterDelta {
                    policy_id: POLICY.into(),
                    minute,
                    hits: 1_000,
                    series_dropped: 1_000,
                    bytes_dropped: 100_000,
                    ..Default::default()
                }],
                volume: None,
            }],
            now_ms(),
        )
        .await
        .expect("stats");
    // No minimum: the window is at least a minute, so 1000 records in it
    // are far above the estimate whatever time the test runs at.
    let config = IssueConfig {
        min_scrapes: 0,
        ..IssueConfig::default()
    };
    let analyst = Analyst::new(store.clone(), config);
    let impact = analyst
        .impact(&issue)
        .await
        .expect("impact")
        .expect("an active policy has an impact");
    assert_eq!(impact.signal, "log", "{impact:?}");
    assert_eq!(impact.records_dropped, 1_000);
    assert_eq!(impact.bytes_dropped, 100_000);
    assert_eq!(impact.before_records_per_day, 14_400);
    assert!(impact.minutes_measured >= 1.0, "{impact:?}");
    assert!(
        (impact.records_per_minute - 1_000.0 / impact.minutes_measured).abs() < 1e-9,
        "{impact:?}"
    );
    assert_eq!(impact.volume_share_dropped, None, "no edge reported volume");
    assert_eq!(impact.verdict, "verified", "{impact:?}");
    let resolved = store.get_issue(&issue.id).await.expect("issue");
    assert_eq!(
        (resolved.status.as_str(), resolved.remediation.as_str()),
        (status::RESOLVED, status::VERIFIED)
    );
    assert!(
        resolved.resolution.contains("log records"),
        "{}",
        resolved.resolution
    );

    // Disabled: the waste is back, the issue reopens.
    store
        .set_policy_enabled(POLICY, false, created.revision, "admin", "test")
        .await
        .expect("disable");
    analyst.verify_all().await.expect("verify");
    let reopened = store.get_issue(&issue.id).await.expect("issue");
    assert_eq!(
        (reopened.status.as_str(), reopened.remediation.as_str()),
        (status::OPEN, status::REVOKED)
    );
}

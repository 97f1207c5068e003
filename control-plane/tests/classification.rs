//! Classification runs over a real (SQLite) store: event types from metric
//! inventories and submitted log samples, the cache that makes a second run
//! free (across restarts too), reclassification on a changed definition,
//! fallback results, budgets, edge reports counted once, and the status.
//!
//! The classifier here is a counting one: the HTTP providers have their own
//! tests (`classify/tests/providers.rs`); this file is about what the control
//! plane does around them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tero_classify::{
    BatchResult, Category, Chain, Classification, Classifier, ClassifyError, ClassifyFuture,
    EventType, TokenUsage, Verdict,
};
use tero_control_plane::classify::{Classifications, RunError, Trigger};
use tero_control_plane::store::{Store, now_ms};
use tero_proto::controlplane::{
    AttributeProfile, DuplicateField, FamilyInventory, InventoryReport, LabelInventory,
    ListEventTypesRequest, LogSample, LogTemplate, SensitiveFinding, SpanPattern,
};

/// Classifies everything as debug noise (or fails), counting requests and
/// the event types it saw.
struct Counting {
    id: String,
    fail: Option<ClassifyError>,
    batch: usize,
    tokens_per_event: u64,
    requests: AtomicU64,
    seen: Mutex<Vec<String>>,
}

impl Counting {
    fn new(id: &str) -> Arc<Counting> {
        Arc::new(Counting {
            id: id.to_string(),
            fail: None,
            batch: 4,
            tokens_per_event: 10,
            requests: AtomicU64::new(0),
            seen: Mutex::new(Vec::new()),
        })
    }

    fn failing(id: &str, error: ClassifyError) -> Arc<Counting> {
        let mut c = Arc::into_inner(Counting::new(id)).expect("sole owner");
        c.fail = Some(error);
        Arc::new(c)
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

impl Classifier for Counting {
    fn id(&self) -> String {
        self.id.clone()
    }

    fn batch_size(&self) -> usize {
        self.batch
    }

    fn estimate_tokens(&self, batch: &[EventType]) -> u64 {
        self.tokens_per_event * batch.len() as u64
    }

    fn classify<'a>(&'a self, batch: &'a [EventType]) -> ClassifyFuture<'a> {
        Box::pin(async move {
            self.requests.fetch_add(1, Ordering::SeqCst);
            if let Some(e) = &self.fail {
                return Err(e.clone());
            }
            self.seen
                .lock()
                .expect("not poisoned")
                .extend(batch.iter().map(|e| e.fingerprint.clone()));
            Ok(BatchResult {
                classifications: batch
                    .iter()
                    .map(|e| Classification {
                        fingerprint: e.fingerprint.clone(),
                        category: if e.name.contains("health") {
                            Category::HealthCheck
                        } else {
                            Category::DebugNoise
                        },
                        verdict: Verdict::Waste,
                        confidence: 0.9,
                        rationale: format!("{} examples", e.examples.len()),
                        classifier: self.id.clone(),
                    })
                    .collect(),
                unclassified: Vec::new(),
                usage: TokenUsage {
                    input_tokens: self.tokens_per_event * batch.len() as u64,
                    output_tokens: 1,
                    requests: 1,
                },
            })
        })
    }
}

fn chain(primary: &Arc<Counting>) -> Chain {
    Chain::new(Box::new(Arc::clone(primary)))
}

async fn open(dir: &tempfile::TempDir) -> Store {
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    Store::open(&url).await.expect("open SQLite store")
}

fn samples(lines: &[String]) -> Vec<LogSample> {
    lines
        .iter()
        .map(|l| LogSample {
            body: l.clone(),
            severity: "INFO".into(),
            time_unix_ms: 0,
        })
        .collect()
}

/// Five event types, twenty lines each, the variable parts varying.
fn corpus(users: &[&str]) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, user) in users.iter().enumerate() {
        lines.push(format!("login succeeded for user {user} from 10.0.0.{i}"));
        lines.push(format!("GET /healthz returned 200 in {i} ms"));
        lines.push(format!("order {} shipped to {user}", 1000 + i));
        lines.push(format!("cache miss for key session:{i:08x}"));
        lines.push(format!("payment {} declined: insufficient funds", 77 + i));
    }
    lines
}

const USERS: [&str; 20] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "zoe",
];

async fn put_inventory(store: &Store, seq: u64, help: &str) {
    let now = now_ms();
    let report = InventoryReport {
        session: "s".into(),
        seq,
        window_start_unix_ms: now - 1_000,
        window_end_unix_ms: now,
        scrapes: 1,
        scrapes_inventoried: 1,
        families: vec![
            FamilyInventory {
                name: "http_requests_total".into(),
                r#type: "counter".into(),
                help: help.into(),
                series: 12,
                sample_bytes: 1_200,
                labels: vec![LabelInventory {
                    name: "path".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            FamilyInventory {
                name: "debug_loop_iterations".into(),
                r#type: "gauge".into(),
                series: 1,
                sample_bytes: 40,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    assert!(
        store
            .put_inventory("i-1", "checkout", &report, now)
            .await
            .expect("stored")
    );
}

#[tokio::test]
async fn a_second_run_makes_no_classifier_call_even_after_a_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(&dir).await;
    put_inventory(&store, 1, "Requests served.").await;
    let primary = Counting::new("counting/1");
    let classifications = Classifications::new(store.clone(), chain(&primary), None);
    let submitted = classifications
        .submit_logs("checkout", &samples(&corpus(&USERS)))
        .await
        .expect("submitted");
    assert_eq!(submitted.accepted, 100);
    assert_eq!((submitted.templates, submitted.new_templates), (5, 5));

    let first = classifications
        .run(Trigger::Api, "admin", false)
        .await
        .expect("run");
    assert_eq!(
        (first.event_types, first.cached, first.submitted),
        (7, 0, 7)
    );
    assert_eq!((first.classified, first.unclassified), (7, 0));
    assert_eq!(primary.requests(), 2, "7 event types in batches of 4");
    assert_eq!(first.usage.len(), 1);
    assert_eq!(first.usage[0].input_tokens, 70);
    // Log event types reach the classifier with their (redacted) examples.
    let logs = classifications
        .list(&ListEventTypesRequest {
            kind: "log".into(),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(logs.len(), 5);
    let total: u64 = logs.iter().map(|e| e.count).sum();
    assert_eq!(total, 100);
    for e in &logs {
        let c = e.classification.as_ref().expect("classified");
        assert_ne!(c.rationale, "0 examples", "{}", e.name);
        assert_eq!(c.run_id, first.id);
    }

    let second = classifications
        .run(Trigger::Api, "admin", false)
        .await
        .expect("run");
    assert_eq!((second.cached, second.submitted), (7, 0));
    assert_eq!(
        primary.requests(),
        2,
        "the second run is answered by the cache"
    );

    // A restarted control plane (fresh miner, fresh memory) on the same
    // database: the same event types, started from other lines, keep their
    // fingerprints and classifications.
    drop(classifications);
    store.close().await;
    let store = open(&dir).await;
    let restarted = Classifications::new(store.clone(), chain(&primary), None);
    let later = restarted
        .submit_logs("checkout", &samples(&corpus(&["yolanda", "xavier", "uma"])))
        .await
        .expect("submitted");
    assert_eq!(later.accepted, 15);
    let third = restarted
        .run(Trigger::Api, "admin", false)
        .await
        .expect("run");
    assert_eq!(
        (third.event_types, third.cached, third.submitted),
        (7, 7, 0)
    );
    assert_eq!(primary.requests(), 2, "no call after a restart either");
    let total: u64 = restarted
        .list(&ListEventTypesRequest {
            kind: "log".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .iter()
        .map(|e| e.count)
        .sum();
    assert_eq!(
        total, 115,
        "lines of a restarted miner count for the known event types"
    );

    // A changed HELP is a changed definition: that family alone is sent.
    put_inventory(&store, 2, "Requests served, by path.").await;
    let fourth = restarted
        .run(Trigger::Api, "admin", false)
        .await
        .expect("run");
    assert_eq!((fourth.cached, fourth.submitted), (6, 1));
    assert_eq!(primary.requests(), 3);
    // Forcing reclassifies everything.
    let forced = restarted
        .run(Trigger::Api, "admin", true)
        .await
        .expect("run");
    assert_eq!((forced.cached, forced.submitted), (0, 7));

    // Scheduled runs with nothing new leave no record.
    let before = restarted.status(100).await.expect("status").runs.len();
    let quiet = restarted
        .run(Trigger::Schedule, "schedule", false)
        .await
        .expect("run");
    assert_eq!(quiet.submitted, 0);
    assert_eq!(
        restarted.status(100).await.expect("status").runs.len(),
        before
    );
}

#[tokio::test]
async fn fallback_results_are_cached_for_the_chain() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(&dir).await;
    let primary = Counting::failing("broken/1", ClassifyError::Auth("401".into()));
    let fallback = Counting::new("fallback/1");
    let make = || {
        Classifications::new(
            store.clone(),
            chain(&primary).with_fallback(Box::new(Arc::clone(&fallback))),
            None,
        )
    };
    let classifications = make();
    classifications
        .submit_logs("svc", &samples(&corpus(&USERS[..4])))
        .await
        .expect("submitted");
    let run = classifications
        .run(Trigger::Api, "admin", false)
        .await
        .expect("run");
    assert_eq!((run.classified, run.fallbacks), (5, 2));
    assert_eq!(
        primary.requests(),
        1,
        "an auth failure is not retried per batch"
    );
    assert_eq!(fallback.requests(), 2);
    let status = classifications.status(0).await.expect("status");
    assert_eq!(status.primary, "broken/1");
    assert_eq!(status.fallback, "fallback/1");
    assert_eq!((status.classified, status.unclassified), (5, 0));

    let again = make().run(Trigger::Api, "admin", false).await.expect("run");
    assert_eq!((again.cached, again.submitted), (5, 0));
    assert_eq!((primary.requests(), fallback.requests()), (1, 2));

    // A chain without that fallback does not take its results as its own.
    let other = Counting::new("other/1");
    let solo = Classifications::new(store.clone(), chain(&other), None);
    let run = solo.run(Trigger::Api, "admin", false).await.expect("run");
    assert_eq!(run.submitted, 5);
}

#[tokio::test]
async fn a_budget_stops_the_run_and_usage_is_accounted() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(&dir).await;
    let primary = Counting::new("counting/1");
    let classifications =
        Classifications::new(store.clone(), chain(&primary).with_budget(50), None);
    classifications
        .submit_logs("svc", &samples(&corpus(&USERS)))
        .await
        .expect("submitted");
    put_inventory(&store, 1, "Requests.").await;
    let run = classifications
        .run(Trigger::Api, "admin", false)
        .await
        .expect("run");
    // Batches of 4 at 10 tokens each: the first fits (41 billed), the
    // second would not.
    assert!(run.stopped_by_budget);
    assert_eq!((run.classified, run.unclassified), (4, 3));
    assert_eq!(run.budget_tokens, 50);
    assert_eq!(run.unclassified_examples.len(), 3);
    assert!(
        run.unclassified_examples
            .iter()
            .all(|u| u.reason.contains("budget")),
        "{:?}",
        run.unclassified_examples
    );
    let unclassified = classifications
        .list(&ListEventTypesRequest {
            unclassified: true,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(unclassified.len(), 3);
    assert!(
        unclassified
            .iter()
            .all(|e| e.unclassified_reason.contains("budget"))
    );

    // The next run picks up where the budget stopped.
    let next = classifications
        .run(Trigger::Api, "admin", false)
        .await
        .expect("run");
    assert_eq!((next.cached, next.submitted, next.classified), (4, 3, 3));
    let status = classifications.status(0).await.expect("status");
    assert_eq!(status.usage.len(), 1);
    assert_eq!(status.usage[0].input_tokens, 70);
    assert_eq!(status.usage[0].output_tokens, 2);
    assert_eq!(status.usage[0].requests, 2);
    assert_eq!(status.runs.len(), 2);
    assert_eq!(status.runs[0].id, next.id, "newest first");
    assert_eq!((status.classified, status.unclassified), (7, 0));
    assert_eq!(status.categories.get("health_check"), Some(&1));
    assert_eq!(status.categories.get("debug_noise"), Some(&6));
    let health = classifications
        .list(&ListEventTypesRequest {
            category: "health_check".into(),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(health.len(), 1);
    assert!(health[0].name.contains("healthz"), "{}", health[0].name);
}

#[tokio::test]
async fn an_edge_report_is_counted_once_and_runs_do_not_overlap() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(&dir).await;
    let primary = Counting::new("counting/1");
    let classifications = Classifications::new(store.clone(), chain(&primary), None);
    let report = InventoryReport {
        session: "edge-session".into(),
        seq: 7,
        log_templates: vec![LogTemplate {
            fingerprint: tero_sdk::templates::fingerprint("svc", "job <num> done"),
            text: "job <num> done".into(),
            count: 40,
            bytes: 600,
            severity: "INFO".into(),
            examples: vec!["job 1 done".into()],
            first_seen_unix_ms: 1,
            last_seen_unix_ms: 2,
            merged_from: Vec::new(),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert!(
        classifications
            .record_report("i-1", "svc", &report)
            .await
            .expect("counted")
    );
    assert!(
        !classifications
            .record_report("i-1", "svc", &report)
            .await
            .expect("retry"),
        "a retried report is not counted again"
    );
    let next = InventoryReport {
        seq: 8,
        ..report.clone()
    };
    assert!(
        classifications
            .record_report("i-1", "svc", &next)
            .await
            .expect("counted")
    );
    let listed = classifications
        .list(&ListEventTypesRequest::default())
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].count, listed[0].bytes), (80, 1_200));

    // Another replica holding the lease makes a run wait its turn.
    assert!(
        store
            .try_lease("classification-run", "other-replica", now_ms(), 60_000)
            .await
            .expect("lease")
    );
    assert!(matches!(
        classifications.run(Trigger::Api, "admin", false).await,
        Err(RunError::Busy)
    ));
    assert_eq!(primary.requests(), 0);
    store
        .release_lease("classification-run", "other-replica")
        .await
        .expect("release");
    let run = classifications
        .run(Trigger::Api, "admin", false)
        .await
        .expect("run");
    assert_eq!(run.classified, 1);
    assert_eq!(primary.seen(), vec![listed[0].fingerprint.clone()]);
}

fn observed_template(
    fp_text: &str,
    text: &str,
    examples: &[&str],
    user_records: u64,
) -> LogTemplate {
    LogTemplate {
        fingerprint: tero_sdk::templates::fingerprint("svc", fp_text),
        text: text.into(),
        count: 10,
        bytes: 500,
        severity: "INFO".into(),
        examples: examples.iter().map(|e| e.to_string()).collect(),
        first_seen_unix_ms: 1,
        last_seen_unix_ms: 2,
        attributes: vec![AttributeProfile {
            key: "user_id".into(),
            records: user_records,
            bytes: user_records * 12,
            examples: vec!["<num>".into()],
            more_values: false,
        }],
        sensitive: vec![SensitiveFinding {
            kind: "email".into(),
            location: "body".into(),
            records: user_records,
            example: "login by <email>".into(),
        }],
        duplicate_fields: vec![DuplicateField {
            keep: "attribute:user_id".into(),
            duplicate: "attribute:userId".into(),
            records: user_records,
            bytes: user_records * 6,
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn what_edges_see_on_records_is_stored_once_per_report_and_merges_into_the_canonical_type() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(&dir).await;
    let primary = Counting::new("counting/1");
    let classifications = Classifications::new(store.clone(), chain(&primary), None);
    let report = |seq: u64, templates: Vec<LogTemplate>, spans: Vec<SpanPattern>| InventoryReport {
        session: "s".into(),
        seq,
        log_templates: templates,
        span_patterns: spans,
        ..Default::default()
    };
    let login = || {
        observed_template(
            "login by <*>",
            "login by <*>",
            &["login by <email>", "login by <email> again"],
            4,
        )
    };
    let first = report(1, vec![login()], Vec::new());
    assert!(
        classifications
            .record_report("edge-a", "svc", &first)
            .await
            .expect("counted")
    );
    assert!(
        !classifications
            .record_report("edge-a", "svc", &first)
            .await
            .expect("retry"),
        "a resent report adds nothing"
    );
    // Another edge reports the same template under another fingerprint
    // (its miner started from another line): an alias, merged.
    let alias = observed_template(
        "login by carol",
        "login by carol",
        &["login by <email> from x"],
        6,
    );
    assert!(
        classifications
            .record_report("edge-b", "svc", &report(1, vec![alias], Vec::new()))
            .await
            .expect("counted")
    );
    // Span patterns in their own report, and with templates in the next.
    let span = SpanPattern {
        fingerprint: "span-healthz".into(),
        name: "GET /healthz".into(),
        kind: "server".into(),
        route: "/healthz".into(),
        user_agent: "kube-probe/1.29".into(),
        count: 30,
        bytes: 3_000,
        attribute_keys: vec!["http.route".into(), "user_agent.original".into()],
        examples: vec!["GET /healthz kind=server status=ok".into()],
        first_seen_unix_ms: 1,
        last_seen_unix_ms: 2,
        ..Default::default()
    };
    let with_spans = report(2, vec![login()], vec![span.clone()]);
    assert!(
        classifications
            .record_report("edge-a", "svc", &with_spans)
            .await
            .expect("counted")
    );
    assert!(
        !classifications
            .record_report("edge-a", "svc", &with_spans)
            .await
            .expect("retry")
    );

    let logs = classifications
        .list(&ListEventTypesRequest {
            kind: "log".into(),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(logs.len(), 1, "the alias is not listed on its own");
    let log = &logs[0];
    assert_eq!((log.count, log.bytes), (30, 1_500));
    assert_eq!(
        log.examples,
        [
            "login by <email>",
            "login by <email> again",
            "login by <email> from x"
        ]
    );
    assert_eq!(log.attributes.len(), 1);
    assert_eq!(log.attributes[0].records, 4 + 6 + 4);
    assert_eq!(log.sensitive[0].records, 14);
    assert_eq!(
        (
            log.duplicate_fields[0].records,
            log.duplicate_fields[0].bytes
        ),
        (14, 84)
    );
    assert_eq!(log.edges, ["edge-a", "edge-b"]);

    let spans = classifications
        .list(&ListEventTypesRequest {
            kind: "span".into(),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(spans.len(), 1);
    let s = &spans[0];
    assert_eq!(s.fingerprint, "span-healthz");
    assert_eq!(
        (s.name.as_str(), s.route.as_str()),
        ("GET /healthz", "/healthz")
    );
    assert_eq!(s.labels, ["http.route", "user_agent.original"]);
    assert_eq!((s.count, s.bytes), (30, 3_000));
    assert_eq!(s.examples, ["GET /healthz kind=server status=ok"]);
    assert_eq!(s.edges, ["edge-a"]);

    // Both kinds are classified and counted by the status.
    let run = classifications
        .run(Trigger::Api, "admin", false)
        .await
        .expect("run");
    assert_eq!(run.classified, 2);
    let status = classifications.status(0).await.expect("status");
    assert_eq!((status.event_types, status.classified), (2, 2));

    // Examples survive a restart: they are stored, not only remembered.
    let restarted = Classifications::new(store.clone(), chain(&primary), None);
    let listed = restarted
        .list(&ListEventTypesRequest::default())
        .await
        .expect("list");
    assert!(listed.iter().all(|e| !e.examples.is_empty()));
}

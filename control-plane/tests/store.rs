//! The durable store against both backends: every scenario below runs once on
//! a SQLite file in a temporary directory and once on a fresh PostgreSQL
//! database (`scenario::sqlite` and `scenario::postgres`).
//!
//! PostgreSQL comes from `TERO_TEST_POSTGRES_URL` (default the local server,
//! user `postgres`, trust auth). Each test creates its own database and drops
//! it afterwards. When no server answers, the PostgreSQL variants print
//! `SKIPPED: …` and pass, unless `TERO_REQUIRE_POSTGRES` is set.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use sqlx::Connection;
use tero_control_plane::store::StoredUsage;
use tero_control_plane::store::{Activity, TemplateWrite};
use tero_control_plane::store::{
    Backend, CounterDelta, EdgeRecord, EdgeVolume, PolicyChange, PolicyFilter, StatsBatch, Store,
    StoreError, StoredKey, VolumeCounts, now_ms,
};
use tero_proto::controlplane::{
    ApiKey, FamilyInventory, InventoryReport, Issue, ManagedPolicy, Scope, ScopeMatcher,
    ScopeOperator, StatsBucket, Transport,
};
use tero_proto::controlplane::{Classification, ClassificationRun, EventType, ProviderUsage};
use tero_proto::otel::{AnyValue, KeyValue, any_value};
use tero_proto::policy::{
    ClientMetadata, LogField, LogMatcher, LogTarget, MetricField, MetricMatcher, MetricTarget,
    Policy, log_matcher, metric_matcher, policy,
};
use tero_sdk::policy::Signal;

// ---------------------------------------------------------------------------
// Harness: one test per scenario and backend.
// ---------------------------------------------------------------------------

/// `Err(pattern)` or a panic naming what came instead.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            other => panic!(
                "expected Err({}), got {:?}",
                stringify!($pattern),
                other
            ),
        }
    };
}

/// For each scenario `name`, a module `name` with the tests `sqlite` and
/// `postgres`, both running `name(&store)` on a fresh, migrated store.
macro_rules! store_tests {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (_dir, store) = super::open_sqlite().await;
                assert_eq!(store.backend(), super::Backend::Sqlite);
                super::run(&store, None, super::$scenario(&store)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some((db, store)) = super::open_postgres().await else {
                    return;
                };
                assert_eq!(store.backend(), super::Backend::Postgres);
                super::run(&store, Some(db), super::$scenario(&store)).await;
            }
        }
    )*};
}

store_tests!(
    create_and_get,
    update_with_revisions,
    enable_delete_and_recreate,
    history_newest_first,
    list_filters_and_pages,
    audit_log,
    api_keys,
    edges,
    stats,
    concurrent_updates,
    concurrent_stats_retries,
    stats_saturate,
    bad_stats_rows_are_read,
    edge_volume,
    edge_volume_saturates,
    inventories,
    issues_and_usage,
    event_types_and_templates,
    classifications_runs_and_leases,
);

/// Runs a scenario, closes the store and drops its PostgreSQL database
/// whatever happened, then re-raises a failure.
async fn run(
    store: &Store,
    db: Option<PgDatabase>,
    scenario: impl std::future::Future<Output = ()>,
) {
    let outcome = AssertUnwindSafe(scenario).catch_unwind().await;
    store.close().await;
    if let Some(db) = db {
        db.drop_database().await;
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn open_sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    let store = Store::open(&url).await.expect("open SQLite store");
    (dir, store)
}

/// A database created for one test.
struct PgDatabase {
    admin_url: String,
    name: String,
}

static PG_COUNTER: AtomicU32 = AtomicU32::new(0);

fn postgres_admin_url() -> String {
    std::env::var("TERO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database and a store on it, or `None` (after printing why) when
/// no server answers and `TERO_REQUIRE_POSTGRES` is unset.
async fn open_postgres() -> Option<(PgDatabase, Store)> {
    let admin_url = postgres_admin_url();
    let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
        Ok(conn) => conn,
        Err(e) if std::env::var_os("TERO_REQUIRE_POSTGRES").is_none() => {
            eprintln!(
                "SKIPPED: PostgreSQL at {admin_url} unavailable ({e}); \
                 set TERO_REQUIRE_POSTGRES=1 to fail instead"
            );
            return None;
        }
        Err(e) => panic!("PostgreSQL at {admin_url} unavailable: {e}"),
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!(
        "tero_store_{}_{}_{nanos:08x}",
        std::process::id(),
        PG_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    admin.close().await.ok();
    let base = admin_url
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(&admin_url);
    let db = PgDatabase {
        admin_url: admin_url.clone(),
        name,
    };
    match Store::open(&format!("{base}/{}", db.name)).await {
        Ok(store) => Some((db, store)),
        Err(e) => {
            db.drop_database().await;
            panic!("open PostgreSQL store: {e}");
        }
    }
}

impl PgDatabase {
    async fn drop_database(self) {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .expect("connect to drop the test database");
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("DROP DATABASE {}: {e}", self.name));
        admin.close().await.ok();
    }
}

// ---------------------------------------------------------------------------
// Builders.
// ---------------------------------------------------------------------------

fn label(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

fn string_label(key: &str, value: &str) -> KeyValue {
    label(key, any_value::Value::StringValue(value.into()))
}

fn string_labels(labels: &[(&str, &str)]) -> Vec<KeyValue> {
    labels.iter().map(|(k, v)| string_label(k, v)).collect()
}

/// Drops metrics whose name starts with `debug.`.
fn metric_policy(id: &str, labels: &[(&str, &str)]) -> Policy {
    Policy {
        id: id.into(),
        name: format!("policy {id}"),
        description: "drop debug metrics".into(),
        enabled: true,
        labels: string_labels(labels),
        target: Some(policy::Target::Metric(MetricTarget {
            r#match: vec![MetricMatcher {
                field: Some(metric_matcher::Field::MetricField(MetricField::Name as i32)),
                r#match: Some(metric_matcher::Match::StartsWith("debug.".into())),
                ..Default::default()
            }],
            keep: false,
        })),
        ..Default::default()
    }
}

/// Drops DEBUG logs.
fn log_policy(id: &str, labels: &[(&str, &str)]) -> Policy {
    Policy {
        id: id.into(),
        name: format!("policy {id}"),
        enabled: true,
        labels: string_labels(labels),
        target: Some(policy::Target::Log(LogTarget {
            r#match: vec![LogMatcher {
                field: Some(log_matcher::Field::LogField(LogField::SeverityText as i32)),
                r#match: Some(log_matcher::Match::Exact("DEBUG".into())),
                ..Default::default()
            }],
            keep: "none".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn scope(service: &str) -> Scope {
    Scope {
        matchers: vec![ScopeMatcher {
            key: "service.name".into(),
            operator: ScopeOperator::In as i32,
            values: vec![service.into()],
        }],
    }
}

fn change(policy: Policy, actor: &str, reason: &str) -> PolicyChange {
    PolicyChange {
        policy,
        scope: scope("checkout"),
        actor: actor.into(),
        reason: reason.into(),
    }
}

fn inner(managed: &ManagedPolicy) -> &Policy {
    managed
        .policy
        .as_ref()
        .expect("a stored policy has content")
}

fn ids(page: &[ManagedPolicy]) -> Vec<String> {
    page.iter().map(|p| inner(p).id.clone()).collect()
}

fn ms_to_nanos(ms: i64) -> u64 {
    u64::try_from(ms).expect("positive time") * 1_000_000
}

/// Lets the millisecond clock move on, so that a later change has a later
/// timestamp.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

// ---------------------------------------------------------------------------
// Scenarios.
// ---------------------------------------------------------------------------

async fn create_and_get(store: &Store) {
    store.ping().await.unwrap();
    assert!(store.all_policies().await.unwrap().is_empty());
    assert_err!(
        store.get_policy("p-create").await,
        StoreError::NotFound { kind: "policy", id } if id == "p-create"
    );

    let submitted = metric_policy("p-create", &[("team", "payments")]);
    let before = now_ms();
    let created = store
        .create_policy(change(submitted.clone(), "alice", "first cut"))
        .await
        .unwrap();
    let after = now_ms();

    assert_eq!(created.revision, 1);
    assert_eq!(created.created_by, "alice");
    assert_eq!(created.updated_by, "alice");
    assert!(
        (before..=after).contains(&created.created_at_unix_ms),
        "created_at {} outside [{before}, {after}]",
        created.created_at_unix_ms
    );
    assert_eq!(created.updated_at_unix_ms, created.created_at_unix_ms);
    assert_eq!(created.scope, Some(scope("checkout")));
    let mut expected = submitted.clone();
    expected.created_at_unix_nano = ms_to_nanos(created.created_at_unix_ms);
    expected.modified_at_unix_nano = ms_to_nanos(created.created_at_unix_ms);
    assert_eq!(created.policy.as_ref(), Some(&expected));

    // What was stored is what create returned, down to the nanosecond stamps.
    let fetched = store.get_policy("p-create").await.unwrap();
    assert_eq!(fetched, created);
    assert_ne!(inner(&fetched).created_at_unix_nano, 0);
    assert_eq!(store.all_policies().await.unwrap(), vec![created.clone()]);

    // A second create of the same id fails and changes nothing.
    let mut other = metric_policy("p-create", &[]);
    other.name = "impostor".into();
    assert_err!(
        store.create_policy(change(other, "bob", "again")).await,
        StoreError::AlreadyExists { kind: "policy", id } if id == "p-create"
    );
    assert_eq!(store.get_policy("p-create").await.unwrap(), created);
    let history = store.policy_history("p-create").await.unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].revision, 1);
    assert_eq!(history[0].action, "create");
}

async fn update_with_revisions(store: &Store) {
    let created = store
        .create_policy(change(
            metric_policy("p-upd", &[("team", "a")]),
            "alice",
            "first",
        ))
        .await
        .unwrap();
    tick().await;

    let mut next = metric_policy("p-upd", &[("team", "b")]);
    next.name = "renamed".into();
    // Whatever the author sends, creation time stays the store's.
    next.created_at_unix_nano = 42;
    if let Some(policy::Target::Metric(target)) = next.target.as_mut() {
        target.keep = true;
    }
    let updated = store
        .update_policy(
            PolicyChange {
                policy: next.clone(),
                scope: scope("billing"),
                actor: "bob".into(),
                reason: "move to billing".into(),
            },
            1,
        )
        .await
        .unwrap();

    assert_eq!(updated.revision, 2);
    assert_eq!(updated.created_by, "alice");
    assert_eq!(updated.updated_by, "bob");
    assert_eq!(updated.created_at_unix_ms, created.created_at_unix_ms);
    assert!(updated.updated_at_unix_ms > created.updated_at_unix_ms);
    assert_eq!(updated.scope, Some(scope("billing")));
    let mut expected = next.clone();
    expected.created_at_unix_nano = inner(&created).created_at_unix_nano;
    expected.modified_at_unix_nano = ms_to_nanos(updated.updated_at_unix_ms);
    assert_eq!(updated.policy.as_ref(), Some(&expected));
    assert!(inner(&updated).modified_at_unix_nano > inner(&created).modified_at_unix_nano);
    assert_eq!(store.get_policy("p-upd").await.unwrap(), updated);

    // The same change against the revision it was made on is now stale.
    let mut late = metric_policy("p-upd", &[]);
    late.name = "late".into();
    assert_err!(
        store.update_policy(change(late.clone(), "carol", "late"), 1).await,
        StoreError::StaleRevision { id, expected: 1, current: 2 } if id == "p-upd"
    );
    assert_err!(
        store.update_policy(change(late, "carol", "ahead"), 7).await,
        StoreError::StaleRevision {
            expected: 7,
            current: 2,
            ..
        }
    );
    assert_eq!(store.get_policy("p-upd").await.unwrap(), updated);
    assert_eq!(store.policy_history("p-upd").await.unwrap().len(), 2);

    assert_err!(
        store
            .update_policy(change(metric_policy("p-ghost", &[]), "bob", "x"), 1)
            .await,
        StoreError::NotFound { kind: "policy", id } if id == "p-ghost"
    );
    assert_err!(
        store.get_policy("p-ghost").await,
        StoreError::NotFound { .. }
    );
}

async fn enable_delete_and_recreate(store: &Store) {
    store
        .create_policy(change(metric_policy("p-life", &[]), "alice", "new"))
        .await
        .unwrap();

    // Expected revision 0 accepts whatever is current.
    let disabled = store
        .set_policy_enabled("p-life", false, 0, "bob", "noisy")
        .await
        .unwrap();
    assert_eq!(disabled.revision, 2);
    assert!(!inner(&disabled).enabled);
    assert_eq!(disabled.updated_by, "bob");
    assert_eq!(disabled.created_by, "alice");
    let fetched = store.get_policy("p-life").await.unwrap();
    assert_eq!(fetched, disabled);
    assert!(!inner(&fetched).enabled);

    // A wrong non-zero revision is refused and changes nothing.
    assert_err!(
        store
            .set_policy_enabled("p-life", true, 1, "carol", "stale")
            .await,
        StoreError::StaleRevision {
            expected: 1,
            current: 2,
            ..
        }
    );
    assert!(!inner(&store.get_policy("p-life").await.unwrap()).enabled);

    let enabled = store
        .set_policy_enabled("p-life", true, 2, "carol", "fixed")
        .await
        .unwrap();
    assert_eq!(enabled.revision, 3);
    assert!(inner(&enabled).enabled);
    assert_err!(
        store
            .set_policy_enabled("p-none", true, 0, "carol", "x")
            .await,
        StoreError::NotFound { kind: "policy", .. }
    );

    // Deletion names the current revision too.
    assert_err!(
        store.delete_policy("p-life", 2, "dave", "stale").await,
        StoreError::StaleRevision {
            expected: 2,
            current: 3,
            ..
        }
    );
    assert_eq!(store.get_policy("p-life").await.unwrap().revision, 3);
    assert_err!(
        store.delete_policy("p-none", 0, "dave", "x").await,
        StoreError::NotFound { .. }
    );
    let deleted_at = store
        .delete_policy("p-life", 3, "dave", "retired")
        .await
        .unwrap();
    assert_eq!(deleted_at, 4);
    assert_err!(
        store.get_policy("p-life").await,
        StoreError::NotFound { .. }
    );
    assert!(store.all_policies().await.unwrap().is_empty());
    assert_err!(
        store.delete_policy("p-life", 0, "dave", "twice").await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store
            .set_policy_enabled("p-life", true, 0, "dave", "gone")
            .await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store
            .update_policy(change(metric_policy("p-life", &[]), "dave", "gone"), 4)
            .await,
        StoreError::NotFound { .. }
    );

    // History outlives the policy, deletion included.
    let history = store.policy_history("p-life").await.unwrap();
    let revisions: Vec<u64> = history.iter().map(|r| r.revision).collect();
    assert_eq!(revisions, [4, 3, 2, 1]);
    assert_eq!(history[0].action, "delete");
    assert_eq!(history[0].author, "dave");
    assert_eq!(history[0].reason, "retired");
    assert_eq!(history[0].policy, None);
    assert_eq!(history[0].scope, None);
    assert!(history[1..].iter().all(|r| r.policy.is_some()));

    // A policy created again under the same id continues the numbering.
    let recreated = store
        .create_policy(change(metric_policy("p-life", &[]), "erin", "back"))
        .await
        .unwrap();
    assert_eq!(recreated.revision, 5);
    assert_eq!(recreated.created_by, "erin");
    assert_eq!(store.get_policy("p-life").await.unwrap(), recreated);
    let history = store.policy_history("p-life").await.unwrap();
    let actions: Vec<&str> = history.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["create", "delete", "enable", "disable", "create"]);
    assert_eq!(history[0].revision, 5);
    assert_eq!(history[0].author, "erin");

    let updated = store
        .update_policy(change(metric_policy("p-life", &[]), "erin", "again"), 5)
        .await
        .unwrap();
    assert_eq!(updated.revision, 6);
}

async fn history_newest_first(store: &Store) {
    assert_err!(
        store.policy_history("p-hist").await,
        StoreError::NotFound { kind: "policy", id } if id == "p-hist"
    );
    let original = metric_policy("p-hist", &[("team", "a")]);
    store
        .create_policy(change(original.clone(), "alice", "initial"))
        .await
        .unwrap();
    // Another policy's changes stay out of this one's history.
    store
        .create_policy(change(metric_policy("p-other", &[]), "zed", "noise"))
        .await
        .unwrap();
    tick().await;
    let mut renamed = original.clone();
    renamed.name = "tightened".into();
    store
        .update_policy(
            PolicyChange {
                policy: renamed,
                scope: scope("search"),
                actor: "bob".into(),
                reason: "tighten".into(),
            },
            1,
        )
        .await
        .unwrap();
    tick().await;
    store
        .set_policy_enabled("p-hist", false, 2, "carol", "incident 42")
        .await
        .unwrap();
    tick().await;
    store
        .delete_policy("p-hist", 3, "dave", "retire")
        .await
        .unwrap();

    let history = store.policy_history("p-hist").await.unwrap();
    assert_eq!(history.len(), 4, "{history:?}");
    let summary: Vec<(u64, &str, &str, &str)> = history
        .iter()
        .map(|r| {
            (
                r.revision,
                r.action.as_str(),
                r.author.as_str(),
                r.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (4, "delete", "dave", "retire"),
            (3, "disable", "carol", "incident 42"),
            (2, "update", "bob", "tighten"),
            (1, "create", "alice", "initial"),
        ]
    );
    assert!(history.iter().all(|r| r.policy_id == "p-hist"));
    assert!(
        history
            .windows(2)
            .all(|w| w[0].at_unix_ms > w[1].at_unix_ms),
        "times not newest first: {history:?}"
    );

    // Each revision holds the content after its change.
    let content = |i: usize| history[i].policy.as_ref().expect("content");
    assert_eq!(content(3).name, original.name);
    assert!(content(3).enabled);
    assert_eq!(history[3].scope, Some(scope("checkout")));
    assert_eq!(content(2).name, "tightened");
    assert!(content(2).enabled);
    assert_eq!(history[2].scope, Some(scope("search")));
    assert_eq!(content(1).name, "tightened");
    assert!(!content(1).enabled);
    assert_eq!(history[1].scope, Some(scope("search")));
    assert_eq!(history[0].policy, None);
    assert_eq!(
        content(3).created_at_unix_nano,
        content(1).created_at_unix_nano
    );
    assert!(content(1).modified_at_unix_nano > content(3).modified_at_unix_nano);

    let other = store.policy_history("p-other").await.unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].author, "zed");
}

async fn list_filters_and_pages(store: &Store) {
    let mut tier = metric_policy("pol-01", &[("team", "payments")]);
    tier.labels
        .push(label("tier", any_value::Value::IntValue(1)));
    let mut off_log = log_policy("pol-02", &[("team", "payments")]);
    off_log.enabled = false;
    let mut off_metric = metric_policy("pol-05", &[("team", "payments"), ("env", "prod")]);
    off_metric.enabled = false;
    let policies = [
        // Created out of order: listing is by id, not by age.
        log_policy("pol-04", &[]),
        tier,
        log_policy("pol-06", &[("env", "prod")]),
        off_log,
        off_metric,
        metric_policy("pol-03", &[("team", "search")]),
    ];
    for p in policies {
        store
            .create_policy(change(p, "alice", "seed"))
            .await
            .unwrap();
    }

    let all = ["pol-01", "pol-02", "pol-03", "pol-04", "pol-05", "pol-06"];
    let list = |filter: PolicyFilter| async move {
        let filter = PolicyFilter {
            page_size: 100,
            ..filter
        };
        let (page, next) = store.list_policies(&filter).await.unwrap();
        assert_eq!(next, None, "one page holds everything");
        ids(&page)
    };
    let by_label = |labels: &[(&str, Option<&str>)]| PolicyFilter {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect(),
        ..Default::default()
    };

    assert_eq!(list(PolicyFilter::default()).await, all);
    assert_eq!(
        list(by_label(&[("team", Some("payments"))])).await,
        ["pol-01", "pol-02", "pol-05"]
    );
    assert_eq!(
        list(by_label(&[("team", None)])).await,
        ["pol-01", "pol-02", "pol-03", "pol-05"]
    );
    assert_eq!(list(by_label(&[("env", None)])).await, ["pol-05", "pol-06"]);
    assert_eq!(
        list(by_label(&[("team", Some("payments")), ("env", None)])).await,
        ["pol-05"]
    );
    assert_eq!(list(by_label(&[("tier", Some("1"))])).await, ["pol-01"]);
    assert!(list(by_label(&[("team", Some("nobody"))])).await.is_empty());
    assert!(list(by_label(&[("owner", None)])).await.is_empty());

    let by_target = |target| PolicyFilter {
        target: Some(target),
        ..Default::default()
    };
    assert_eq!(
        list(by_target(Signal::Metric)).await,
        ["pol-01", "pol-03", "pol-05"]
    );
    assert_eq!(
        list(by_target(Signal::Log)).await,
        ["pol-02", "pol-04", "pol-06"]
    );
    assert!(list(by_target(Signal::Trace)).await.is_empty());

    let by_enabled = |enabled| PolicyFilter {
        enabled: Some(enabled),
        ..Default::default()
    };
    assert_eq!(
        list(by_enabled(true)).await,
        ["pol-01", "pol-03", "pol-04", "pol-06"]
    );
    assert_eq!(list(by_enabled(false)).await, ["pol-02", "pol-05"]);

    let combined = PolicyFilter {
        target: Some(Signal::Metric),
        enabled: Some(true),
        ..by_label(&[("team", Some("payments"))])
    };
    assert_eq!(list(combined).await, ["pol-01"]);

    // A disable shows in the enabled filter at once.
    store
        .set_policy_enabled("pol-01", false, 0, "bob", "pause")
        .await
        .unwrap();
    assert_eq!(
        list(by_enabled(false)).await,
        ["pol-01", "pol-02", "pol-05"]
    );

    assert_eq!(
        list(PolicyFilter {
            after_id: Some("pol-03".into()),
            ..Default::default()
        })
        .await,
        ["pol-04", "pol-05", "pol-06"]
    );

    // Walking the pages returns every policy once, in id order, and the
    // last page says there is nothing more (even when it is full).
    for page_size in 1..=7 {
        let mut seen = Vec::new();
        let mut after_id = None;
        let mut pages = 0;
        loop {
            let filter = PolicyFilter {
                page_size,
                after_id: after_id.clone(),
                ..Default::default()
            };
            let (page, next) = store.list_policies(&filter).await.unwrap();
            pages += 1;
            assert!(pages <= all.len(), "paging does not end");
            assert!(page.len() <= page_size);
            assert!(!page.is_empty(), "empty page before the end");
            seen.extend(ids(&page));
            match next {
                Some(next) => {
                    assert_eq!(page.len(), page_size, "a short page promised more");
                    assert_eq!(Some(&next), seen.last());
                    after_id = Some(next);
                }
                None => break,
            }
        }
        assert_eq!(seen, all, "page size {page_size}");
        assert_eq!(
            pages,
            all.len().div_ceil(page_size),
            "page size {page_size}"
        );
    }

    // Paging applies after filtering.
    let mut seen = Vec::new();
    let mut after_id = None;
    let mut pages = 0;
    loop {
        let filter = PolicyFilter {
            page_size: 1,
            after_id,
            ..by_target(Signal::Log)
        };
        let (page, next) = store.list_policies(&filter).await.unwrap();
        pages += 1;
        assert_eq!(page.len(), 1);
        seen.extend(ids(&page));
        match next {
            Some(next) => after_id = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["pol-02", "pol-04", "pol-06"]);
    assert_eq!(pages, 3);
}

async fn audit_log(store: &Store) {
    assert_eq!(store.audit_high_water().await.unwrap(), 0);
    assert!(store.list_audit(None, 0, 100).await.unwrap().is_empty());

    let mut marks = vec![0];
    // Each successful change raises the high-water mark; failures do not.
    macro_rules! raised {
        () => {{
            let hw = store.audit_high_water().await.unwrap();
            assert!(hw > *marks.last().unwrap(), "audit high water did not rise");
            marks.push(hw);
        }};
    }
    macro_rules! unchanged {
        () => {{
            let hw = store.audit_high_water().await.unwrap();
            assert_eq!(hw, *marks.last().unwrap(), "a failed change was audited");
        }};
    }

    store
        .create_policy(change(metric_policy("p-aud", &[]), "alice", "why not"))
        .await
        .unwrap();
    raised!();
    assert_err!(
        store
            .create_policy(change(metric_policy("p-aud", &[]), "mallory", "dup"))
            .await,
        StoreError::AlreadyExists { .. }
    );
    unchanged!();
    store
        .update_policy(change(metric_policy("p-aud", &[]), "bob", "edit"), 1)
        .await
        .unwrap();
    raised!();
    assert_err!(
        store
            .update_policy(change(metric_policy("p-aud", &[]), "mallory", "stale"), 1)
            .await,
        StoreError::StaleRevision { .. }
    );
    unchanged!();
    store
        .set_policy_enabled("p-aud", false, 0, "carol", "off")
        .await
        .unwrap();
    raised!();
    store
        .set_policy_enabled("p-aud", true, 0, "carol", "on")
        .await
        .unwrap();
    raised!();
    store
        .delete_policy("p-aud", 0, "dave", "bye")
        .await
        .unwrap();
    raised!();
    store
        .insert_api_key(&stored_key("k-aud", "ci", "hash-aud", 1_000))
        .await
        .unwrap();
    raised!();
    store.revoke_api_key("k-aud", "frank").await.unwrap();
    raised!();
    store.revoke_api_key("k-aud", "frank").await.unwrap();
    unchanged!();
    store
        .audit(
            "gina",
            "settings.change",
            "global",
            serde_json::json!({ "retention_days": 7 }),
        )
        .await
        .unwrap();
    raised!();

    let entries = store.list_audit(None, 0, 100).await.unwrap();
    let summary: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| (e.action.as_str(), e.actor.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("policy.create", "alice", "p-aud"),
            ("policy.update", "bob", "p-aud"),
            ("policy.disable", "carol", "p-aud"),
            ("policy.enable", "carol", "p-aud"),
            ("policy.delete", "dave", "p-aud"),
            ("api_key.create", "ci-admin", "k-aud"),
            ("api_key.revoke", "frank", "k-aud"),
            ("settings.change", "gina", "global"),
        ]
    );
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq as i64).collect();
    assert_eq!(seqs, marks[1..], "high water follows the newest entry");
    assert!(entries.iter().all(|e| e.at_unix_ms > 0));
    assert_eq!(entries[5].at_unix_ms, 1_000, "key creation time");

    let detail = |i: usize| -> serde_json::Value {
        serde_json::from_str(&entries[i].detail).expect("audit detail is JSON")
    };
    assert_eq!(detail(0)["revision"], 1);
    assert_eq!(detail(0)["reason"], "why not");
    assert_eq!(detail(0)["policy"]["id"], "p-aud");
    assert_eq!(detail(1)["revision"], 2);
    assert_eq!(detail(1)["reason"], "edit");
    assert_eq!(detail(4)["revision"], 5);
    assert_eq!(detail(4)["reason"], "bye");
    assert_eq!(detail(5)["name"], "ci");
    assert_eq!(detail(7)["retention_days"], 7);

    // By target, after a sequence number, and limited.
    let policy_entries = store.list_audit(Some("p-aud"), 0, 100).await.unwrap();
    assert_eq!(policy_entries, entries[..5]);
    let key_entries = store.list_audit(Some("k-aud"), 0, 100).await.unwrap();
    assert_eq!(key_entries, entries[5..7]);
    assert!(
        store
            .list_audit(Some("nothing"), 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.list_audit(None, entries[2].seq, 100).await.unwrap(),
        entries[3..]
    );
    assert_eq!(
        store
            .list_audit(Some("p-aud"), entries[1].seq, 2)
            .await
            .unwrap(),
        entries[2..4]
    );
    assert_eq!(
        store
            .list_audit(Some("k-aud"), entries[6].seq, 100)
            .await
            .unwrap(),
        []
    );
    assert_eq!(store.list_audit(None, 0, 3).await.unwrap(), entries[..3]);
    assert!(
        store
            .list_audit(None, entries[7].seq, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

fn stored_key(id: &str, name: &str, hash: &str, created_at: i64) -> StoredKey {
    StoredKey {
        key: ApiKey {
            id: id.into(),
            name: name.into(),
            prefix: format!("tero_{id}"),
            created_at_unix_ms: created_at,
            created_by: format!("{name}-admin"),
            last_used_unix_ms: 0,
            revoked_at_unix_ms: 0,
        },
        secret_hash: hash.into(),
    }
}

async fn api_keys(store: &Store) {
    assert!(store.list_api_keys(true).await.unwrap().is_empty());
    assert!(store.revoked_key_ids().await.unwrap().is_empty());

    // Inserted newest first: listing is by creation time.
    let k2 = stored_key("key-2", "search", "hash-2", 2_000);
    let k1 = stored_key("key-1", "payments", "hash-1", 1_000);
    store.insert_api_key(&k2).await.unwrap();
    store.insert_api_key(&k1).await.unwrap();
    assert!(
        store
            .insert_api_key(&stored_key("key-1", "again", "hash-9", 3_000))
            .await
            .is_err(),
        "a duplicate id is refused"
    );
    assert!(
        store
            .insert_api_key(&stored_key("key-9", "clash", "hash-1", 3_000))
            .await
            .is_err(),
        "a duplicate secret hash is refused"
    );

    let found = store.find_api_key_by_hash("hash-1").await.unwrap().unwrap();
    assert_eq!(found.key, k1.key);
    assert_eq!(found.secret_hash, "hash-1");
    assert!(
        store
            .find_api_key_by_hash("hash-x")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.list_api_keys(false).await.unwrap(),
        [k1.key.clone(), k2.key.clone()]
    );

    let before = now_ms();
    let revoked = store.revoke_api_key("key-1", "admin").await.unwrap();
    assert!(revoked.revoked_at_unix_ms >= before);
    assert_eq!(revoked.id, "key-1");
    assert_eq!(revoked.name, "payments");
    assert_eq!(
        store.list_api_keys(false).await.unwrap(),
        std::slice::from_ref(&k2.key)
    );
    let listed = store.list_api_keys(true).await.unwrap();
    assert_eq!(listed, [revoked.clone(), k2.key.clone()]);
    assert_eq!(store.revoked_key_ids().await.unwrap(), ["key-1"]);
    // A revoked key is still found by its hash, marked revoked.
    let found = store.find_api_key_by_hash("hash-1").await.unwrap().unwrap();
    assert_eq!(found.key.revoked_at_unix_ms, revoked.revoked_at_unix_ms);

    // Revoking again changes nothing, the time of revocation included.
    tick().await;
    let again = store.revoke_api_key("key-1", "admin").await.unwrap();
    assert_eq!(again, revoked);
    assert_eq!(store.revoked_key_ids().await.unwrap(), ["key-1"]);
    assert_err!(
        store.revoke_api_key("key-none", "admin").await,
        StoreError::NotFound { id, .. } if id == "key-none"
    );

    // last_used only moves forward.
    let last_used = |id: &'static str| async move {
        store
            .list_api_keys(true)
            .await
            .unwrap()
            .into_iter()
            .find(|k| k.id == id)
            .unwrap()
            .last_used_unix_ms
    };
    store.touch_api_keys(&[]).await.unwrap();
    store
        .touch_api_keys(&[("key-2".into(), 10_000)])
        .await
        .unwrap();
    assert_eq!(last_used("key-2").await, 10_000);
    assert_eq!(last_used("key-1").await, 0);
    store
        .touch_api_keys(&[("key-2".into(), 5_000)])
        .await
        .unwrap();
    assert_eq!(last_used("key-2").await, 10_000);
    store
        .touch_api_keys(&[
            ("key-2".into(), 20_000),
            ("key-1".into(), 7_000),
            ("key-unknown".into(), 1),
        ])
        .await
        .unwrap();
    assert_eq!(last_used("key-2").await, 20_000);
    assert_eq!(last_used("key-1").await, 7_000);
    let found = store.find_api_key_by_hash("hash-2").await.unwrap().unwrap();
    assert_eq!(found.key.last_used_unix_ms, 20_000);
    assert_eq!(found.key.revoked_at_unix_ms, 0);
}

fn edge(instance: &str, service: &str, replica: &str, first: i64, last: i64) -> EdgeRecord {
    EdgeRecord {
        instance_id: instance.into(),
        service_name: service.into(),
        service_namespace: "shop".into(),
        service_version: "1.0".into(),
        metadata: ClientMetadata {
            labels: string_labels(&[("zone", "eu-1")]),
            resource_attributes: string_labels(&[
                ("service.instance.id", instance),
                ("service.name", service),
            ]),
            ..Default::default()
        },
        transport: Transport::Stream,
        replica: replica.into(),
        api_key_id: "key-1".into(),
        first_seen: first,
        last_seen: last,
        connected: true,
        desired_hash: "h1".into(),
        applied_hash: "h1".into(),
        last_failed_hash: String::new(),
        policy_errors: BTreeMap::new(),
        refusal: None,
        conflict_key_id: String::new(),
        conflict_at: 0,
    }
}

async fn edges(store: &Store) {
    let instances = |edges: Vec<EdgeRecord>| -> Vec<String> {
        edges.into_iter().map(|e| e.instance_id).collect()
    };
    store.upsert_edges(&[]).await.unwrap();
    assert!(store.list_edges(None, 0, "", 100).await.unwrap().is_empty());

    let a = edge("edge-a", "checkout", "r1", 1_000, 1_000);
    let b = edge("edge-b", "checkout", "r2", 1_000, 5_000);
    let c = edge("edge-c", "search", "r1", 2_000, 2_000);
    store
        .upsert_edges(&[c.clone(), a.clone(), b.clone()])
        .await
        .unwrap();
    assert_eq!(store.get_edge("edge-a").await.unwrap(), a);
    assert_eq!(store.get_edge("edge-c").await.unwrap(), c);

    // A later write replaces everything but an earlier first_seen.
    let mut a2 = edge("edge-a", "checkout", "r2", 3_000, 6_000);
    a2.service_version = "2.0".into();
    a2.service_namespace = "shop-eu".into();
    a2.metadata.labels = string_labels(&[("zone", "eu-2"), ("tier", "gold")]);
    a2.transport = Transport::Poll;
    a2.api_key_id = "key-2".into();
    a2.connected = false;
    a2.desired_hash = "h2".into();
    a2.applied_hash = "h1".into();
    a2.last_failed_hash = "h2".into();
    a2.policy_errors = BTreeMap::from([
        ("pol-1".to_string(), vec!["bad regex".to_string()]),
        ("pol-2".to_string(), vec!["a".to_string(), "b".to_string()]),
    ]);
    a2.refusal = Some("snapshot refused".into());
    store.upsert_edges(&[a2.clone()]).await.unwrap();
    let stored = store.get_edge("edge-a").await.unwrap();
    assert_eq!(stored.first_seen, 1_000, "the earliest first_seen is kept");
    assert_eq!(
        stored,
        EdgeRecord {
            first_seen: 1_000,
            ..a2.clone()
        }
    );
    // An earlier first_seen does replace it.
    let mut a3 = a2.clone();
    a3.first_seen = 500;
    a3.conflict_key_id = "key-2".into();
    a3.conflict_at = 600;
    store.upsert_edges(&[a3.clone()]).await.unwrap();
    assert_eq!(store.get_edge("edge-a").await.unwrap(), a3);

    assert_eq!(
        instances(store.list_edges(None, 0, "", 100).await.unwrap()),
        ["edge-a", "edge-b", "edge-c"]
    );
    assert_eq!(
        instances(
            store
                .list_edges(Some("checkout"), 0, "", 100)
                .await
                .unwrap()
        ),
        ["edge-a", "edge-b"]
    );
    assert_eq!(
        instances(store.list_edges(Some("search"), 0, "", 100).await.unwrap()),
        ["edge-c"]
    );
    assert!(
        store
            .list_edges(Some("nothing"), 0, "", 100)
            .await
            .unwrap()
            .is_empty()
    );
    // seen_since is inclusive.
    assert_eq!(
        instances(store.list_edges(None, 5_000, "", 100).await.unwrap()),
        ["edge-a", "edge-b"]
    );
    assert_eq!(
        instances(store.list_edges(None, 5_001, "", 100).await.unwrap()),
        ["edge-a"]
    );
    assert_eq!(
        instances(
            store
                .list_edges(Some("search"), 2_001, "", 100)
                .await
                .unwrap()
        ),
        Vec::<String>::new()
    );
    // Paging by instance id.
    assert_eq!(
        instances(store.list_edges(None, 0, "", 2).await.unwrap()),
        ["edge-a", "edge-b"]
    );
    assert_eq!(
        instances(store.list_edges(None, 0, "edge-b", 2).await.unwrap()),
        ["edge-c"]
    );
    assert!(
        store
            .list_edges(None, 0, "edge-c", 2)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        instances(
            store
                .list_edges(Some("checkout"), 0, "edge-a", 10)
                .await
                .unwrap()
        ),
        ["edge-b"]
    );

    assert_err!(
        store.get_edge("edge-none").await,
        StoreError::NotFound { kind: "edge", id } if id == "edge-none"
    );

    // A restarted replica marks only its own edges disconnected.
    let d = edge("edge-d", "search", "r1", 2_000, 7_000);
    store.upsert_edges(std::slice::from_ref(&d)).await.unwrap();
    store.disconnect_replica_edges("r1").await.unwrap();
    assert_eq!(
        store.get_edge("edge-c").await.unwrap(),
        EdgeRecord {
            connected: false,
            ..c.clone()
        }
    );
    assert_eq!(
        store.get_edge("edge-d").await.unwrap(),
        EdgeRecord {
            connected: false,
            ..d.clone()
        }
    );
    assert_eq!(
        store.get_edge("edge-b").await.unwrap(),
        b,
        "r2's edge untouched"
    );
    assert_eq!(store.get_edge("edge-a").await.unwrap(), a3);

    // A fleet-sized batch spans several statements; every row lands, and
    // only rows newer than the stored ones change.
    let fleet: Vec<EdgeRecord> = (0..1_203)
        .map(|i| edge(&format!("fleet-{i:04}"), "fleet", "r3", 10_000, 10_000 + i))
        .collect();
    store.upsert_edges(&fleet).await.unwrap();
    let stored = store.list_edges(Some("fleet"), 0, "", 2_000).await.unwrap();
    assert_eq!(stored, fleet);
    let mut changed = fleet.clone();
    for (i, e) in changed.iter_mut().enumerate() {
        e.applied_hash = "h9".into();
        // Every other record is older than the stored one: ignored.
        e.last_seen += if i % 2 == 0 { 1 } else { -1 };
    }
    store.upsert_edges(&changed).await.unwrap();
    let stored = store.list_edges(Some("fleet"), 0, "", 2_000).await.unwrap();
    for (i, e) in stored.iter().enumerate() {
        let expected = if i % 2 == 0 { &changed[i] } else { &fleet[i] };
        assert_eq!(e, expected, "row {i}");
    }

    // One instance twice in a batch: its latest record, its earliest
    // first_seen.
    let early = edge("edge-twice", "search", "r1", 100, 8_000);
    let mut late = edge("edge-twice", "search", "r2", 900, 9_000);
    late.applied_hash = "h3".into();
    store.upsert_edges(&[late.clone(), early]).await.unwrap();
    assert_eq!(
        store.get_edge("edge-twice").await.unwrap(),
        EdgeRecord {
            first_seen: 100,
            ..late
        }
    );
}

const MINUTE: i64 = 60_000;

fn delta(policy_id: &str, minute: i64, hits: i64) -> CounterDelta {
    CounterDelta {
        policy_id: policy_id.into(),
        minute,
        hits,
        misses: 2 * hits,
        bytes_dropped: 100 * hits,
        series_dropped: 3 * hits,
        scrapes: 4 * hits,
    }
}

fn bucket(minute: i64, hits: i64) -> StatsBucket {
    StatsBucket {
        minute_unix_ms: minute,
        hits,
        misses: 2 * hits,
        bytes_dropped: 100 * hits,
        series_dropped: 3 * hits,
        scrapes: 4 * hits,
    }
}

fn report(instance: &str, session: &str, seq: u64, deltas: Vec<CounterDelta>) -> StatsBatch {
    StatsBatch {
        report: Some((instance.into(), session.into(), seq)),
        deltas,
        ..Default::default()
    }
}

fn poll(deltas: Vec<CounterDelta>) -> StatsBatch {
    StatsBatch {
        report: None,
        deltas,
        ..Default::default()
    }
}

/// Volume of `instance` in `minute`: `n` data points, and every other
/// count derived from `n`, so a mix-up of columns shows.
fn volume(instance: &str, minute: i64, n: i64) -> EdgeVolume {
    EdgeVolume {
        instance_id: instance.into(),
        minute,
        counts: counts(n),
    }
}

fn counts(n: i64) -> VolumeCounts {
    VolumeCounts {
        log_records: 2 * n,
        log_bytes: 200 * n,
        metric_data_points: n,
        metric_bytes: 0,
        spans: 3 * n,
        span_bytes: 300 * n,
    }
}

fn with_volume(mut batch: StatsBatch, v: EdgeVolume) -> StatsBatch {
    batch.volume = Some(v);
    batch
}

async fn stats(store: &Store) {
    let t0 = 28_333_334 * MINUTE;
    let now = t0 + 5 * MINUTE;
    let m1 = t0 + MINUTE;
    let m2 = t0 + 2 * MINUTE;
    let hits_at = |policy: &'static str, minute: i64| async move {
        let buckets = store
            .policy_stats(policy, minute, minute + 1)
            .await
            .unwrap();
        assert!(buckets.len() <= 1);
        buckets.first().map_or(0, |b| b.hits)
    };

    // Deltas for the same minute add up; batches without identity always apply.
    assert_eq!(
        store
            .apply_stats(&[poll(vec![delta("p1", t0, 1), delta("p2", t0, 10)])], now)
            .await
            .unwrap(),
        [true]
    );
    assert_eq!(
        store
            .apply_stats(&[poll(vec![delta("p1", t0, 5)])], now)
            .await
            .unwrap(),
        [true]
    );
    assert_eq!(
        store.policy_stats("p1", t0, t0 + MINUTE).await.unwrap(),
        [bucket(t0, 6)]
    );

    // A report is counted once: a retry (same seq) or an older one is skipped.
    let apply = |batch: StatsBatch| async move {
        let applied = store.apply_stats(&[batch], now).await.unwrap();
        assert_eq!(applied.len(), 1);
        applied[0]
    };
    assert!(apply(report("edge-1", "s-a", 1, vec![delta("p1", m1, 1)])).await);
    assert!(!apply(report("edge-1", "s-a", 1, vec![delta("p1", m1, 1)])).await);
    assert_eq!(hits_at("p1", m1).await, 1);
    assert!(apply(report("edge-1", "s-a", 2, vec![delta("p1", m1, 1)])).await);
    assert_eq!(hits_at("p1", m1).await, 2);
    assert!(!apply(report("edge-1", "s-a", 1, vec![delta("p1", m1, 1)])).await);
    assert!(!apply(report("edge-1", "s-a", 2, vec![delta("p1", m1, 1)])).await);
    assert_eq!(hits_at("p1", m1).await, 2);

    // Within one call too, and seq may skip ahead.
    assert_eq!(
        store
            .apply_stats(
                &[
                    report("edge-1", "s-a", 3, vec![delta("p1", m1, 1)]),
                    report("edge-1", "s-a", 3, vec![delta("p1", m1, 1)]),
                    report("edge-1", "s-a", 5, vec![delta("p1", m1, 1)]),
                    report("edge-1", "s-a", 4, vec![delta("p1", m1, 1)]),
                    poll(vec![delta("p1", m1, 1)]),
                ],
                now,
            )
            .await
            .unwrap(),
        [true, false, true, false, true]
    );
    assert_eq!(hits_at("p1", m1).await, 5);

    // A new session (a restarted edge) starts again at 1; sessions and
    // instances are independent.
    assert!(apply(report("edge-1", "s-b", 1, vec![delta("p1", m1, 10)])).await);
    assert_eq!(hits_at("p1", m1).await, 15);
    assert!(apply(report("edge-2", "s-a", 1, vec![delta("p1", m1, 100)])).await);
    assert_eq!(hits_at("p1", m1).await, 115);
    assert!(!apply(report("edge-1", "s-a", 5, vec![delta("p1", m1, 1)])).await);
    // A report without counters still advances its session.
    assert!(apply(report("edge-1", "s-b", 2, vec![])).await);
    assert!(!apply(report("edge-1", "s-b", 2, vec![delta("p1", m1, 1)])).await);
    assert_eq!(
        store.policy_stats("p1", m1, m1 + 1).await.unwrap(),
        [bucket(m1, 115)]
    );

    // Ranges are [from, to), oldest first, one policy only.
    assert!(apply(poll(vec![delta("p1", m2, 7)])).await);
    assert_eq!(
        store.policy_stats("p1", t0, m2 + MINUTE).await.unwrap(),
        [bucket(t0, 6), bucket(m1, 115), bucket(m2, 7)]
    );
    assert_eq!(
        store.policy_stats("p1", m1, m2).await.unwrap(),
        [bucket(m1, 115)]
    );
    assert_eq!(
        store.policy_stats("p1", t0 + 1, m2 + 1).await.unwrap(),
        [bucket(m1, 115), bucket(m2, 7)]
    );
    assert!(
        store
            .policy_stats("p1", m2 + 1, now)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.policy_stats("p2", 0, i64::MAX).await.unwrap(),
        [bucket(t0, 10)]
    );
    assert!(
        store
            .policy_stats("p-none", 0, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );

    // Pruning drops buckets before the cutoff, of every policy.
    assert_eq!(store.prune_stats(m1).await.unwrap(), 2);
    assert_eq!(
        store.policy_stats("p1", 0, i64::MAX).await.unwrap(),
        [bucket(m1, 115), bucket(m2, 7)]
    );
    assert!(
        store
            .policy_stats("p2", 0, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.prune_stats(m1).await.unwrap(), 0);
    // The report ledger (written at `now`) survived that cutoff...
    assert!(!apply(report("edge-1", "s-a", 5, vec![delta("p1", m1, 1)])).await);
    // ...and goes with a later one, together with the remaining buckets.
    assert_eq!(store.prune_stats(now + 1).await.unwrap(), 2);
    assert!(
        store
            .policy_stats("p1", 0, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(apply(report("edge-1", "s-a", 5, vec![delta("p1", m1, 1)])).await);
    assert_eq!(hits_at("p1", m1).await, 1);
}

async fn concurrent_updates(store: &Store) {
    // Two writers with the same expected revision: exactly one wins.
    const ROUNDS: u64 = 8;
    store
        .create_policy(change(metric_policy("p-race", &[]), "alice", "new"))
        .await
        .unwrap();
    for round in 0..ROUNDS {
        let expected = round + 1;
        let mut a = metric_policy("p-race", &[]);
        a.name = format!("a{round}");
        let mut b = metric_policy("p-race", &[]);
        b.name = format!("b{round}");
        let (ra, rb) = tokio::join!(
            store.update_policy(change(a, "alice", "race"), expected),
            store.update_policy(change(b, "bob", "race"), expected),
        );
        let (winner, loser) = match (ra, rb) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            other => panic!("round {round}: expected one winner, got {other:?}"),
        };
        assert_eq!(winner.revision, expected + 1);
        match loser {
            StoreError::StaleRevision {
                id,
                expected: e,
                current,
            } => {
                assert_eq!(id, "p-race");
                assert_eq!(e, expected);
                assert_eq!(current, expected + 1);
            }
            other => panic!("round {round}: the loser got {other:?}"),
        }
        let stored = store.get_policy("p-race").await.unwrap();
        assert_eq!(stored, winner, "the winner's content is stored");
    }
    let history = store.policy_history("p-race").await.unwrap();
    assert_eq!(history.len() as u64, ROUNDS + 1);
    let revisions: Vec<u64> = history.iter().map(|r| r.revision).collect();
    let expected: Vec<u64> = (1..=ROUNDS + 1).rev().collect();
    assert_eq!(revisions, expected);
    assert_eq!(
        store
            .list_audit(Some("p-race"), 0, 100)
            .await
            .unwrap()
            .len() as u64,
        ROUNDS + 1,
        "only the winners are audited"
    );

    // Two creates of one id: one wins, the other finds it exists.
    let (ra, rb) = tokio::join!(
        store.create_policy(change(metric_policy("p-twin", &[]), "alice", "mine")),
        store.create_policy(change(metric_policy("p-twin", &[]), "bob", "mine")),
    );
    match (ra, rb) {
        (Ok(w), Err(StoreError::AlreadyExists { .. }))
        | (Err(StoreError::AlreadyExists { .. }), Ok(w)) => {
            assert_eq!(w.revision, 1);
            assert_eq!(store.get_policy("p-twin").await.unwrap(), w);
        }
        other => panic!("expected one create to win, got {other:?}"),
    }
    assert_eq!(store.policy_history("p-twin").await.unwrap().len(), 1);

    // Expected revision 0 accepts any: concurrent toggles both apply.
    for round in 0..ROUNDS {
        let before = store.get_policy("p-race").await.unwrap().revision;
        let (ra, rb) = tokio::join!(
            store.set_policy_enabled("p-race", round % 2 == 0, 0, "alice", "toggle"),
            store.set_policy_enabled("p-race", round % 2 == 1, 0, "bob", "toggle"),
        );
        let (ra, rb) = (
            ra.unwrap_or_else(|e| panic!("round {round}: {e}")),
            rb.unwrap_or_else(|e| panic!("round {round}: {e}")),
        );
        let mut revisions = [ra.revision, rb.revision];
        revisions.sort_unstable();
        assert_eq!(revisions, [before + 1, before + 2]);
        assert_eq!(
            store.get_policy("p-race").await.unwrap().revision,
            before + 2
        );
    }

    // So does a deletion naming no revision, racing an update: whichever
    // goes first, the policy ends deleted, and the update either lands
    // before the deletion or finds nothing to update.
    for round in 0..ROUNDS {
        let id = format!("p-doomed-{round}");
        store
            .create_policy(change(metric_policy(&id, &[]), "alice", "new"))
            .await
            .unwrap();
        let (updated, deleted) = tokio::join!(
            store.update_policy(change(metric_policy(&id, &[]), "bob", "edit"), 1),
            store.delete_policy(&id, 0, "carol", "drop"),
        );
        let deleted = deleted.unwrap_or_else(|e| panic!("round {round}: {e}"));
        match updated {
            Ok(updated) => {
                assert_eq!(updated.revision, 2);
                assert_eq!(deleted, 3);
            }
            Err(StoreError::NotFound { .. }) => assert_eq!(deleted, 2),
            Err(e) => panic!("round {round}: the update got {e:?}"),
        }
        assert_err!(store.get_policy(&id).await, StoreError::NotFound { .. });
        let history = store.policy_history(&id).await.unwrap();
        assert_eq!(history[0].revision, deleted);
        assert_eq!(history[0].action, "delete");
        assert_eq!(history.len() as u64, deleted);
    }
}

async fn concurrent_stats_retries(store: &Store) {
    // A report delivered twice at once (a retry racing the original, say on
    // another replica) is still counted once.
    const ROUNDS: u64 = 8;
    let minute = 28_333_334 * MINUTE;
    for seq in 1..=ROUNDS {
        let batch = [report("edge-1", "s-a", seq, vec![delta("p1", minute, 1)])];
        let (ra, rb) = tokio::join!(
            store.apply_stats(&batch, minute),
            store.apply_stats(&batch, minute),
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let mut outcomes = [ra[0], rb[0]];
        outcomes.sort_unstable();
        assert_eq!(outcomes, [false, true], "seq {seq}: applied exactly once");
    }
    assert_eq!(
        store.policy_stats("p1", minute, minute + 1).await.unwrap(),
        [bucket(minute, ROUNDS as i64)]
    );
}

async fn stats_saturate(store: &Store) {
    // Issue 16: two reports of i64::MAX made SQLite store a REAL, which
    // failed every read of the policy's statistics from then on.
    let minute = 28_333_334 * MINUTE;
    let max = CounterDelta {
        policy_id: "p1".into(),
        minute,
        hits: i64::MAX,
        misses: i64::MAX,
        bytes_dropped: i64::MAX,
        series_dropped: i64::MAX,
        scrapes: i64::MAX,
    };
    for _ in 0..2 {
        let applied = store.apply_stats(&[poll(vec![max.clone()])], minute).await;
        assert_eq!(applied.unwrap(), [true]);
    }
    store
        .apply_stats(&[poll(vec![delta("p1", minute, 1)])], minute)
        .await
        .unwrap();
    let saturated = StatsBucket {
        minute_unix_ms: minute,
        hits: i64::MAX,
        misses: i64::MAX,
        bytes_dropped: i64::MAX,
        series_dropped: i64::MAX,
        scrapes: i64::MAX,
    };
    assert_eq!(
        store.policy_stats("p1", minute, minute + 1).await.unwrap(),
        [saturated]
    );
    // Below the bound, sums stay exact.
    let near = i64::MAX - 10;
    let mut first = delta("p2", minute, 0);
    first.hits = near;
    store
        .apply_stats(&[poll(vec![first])], minute)
        .await
        .unwrap();
    store
        .apply_stats(&[poll(vec![delta("p2", minute, 4)])], minute)
        .await
        .unwrap();
    let buckets = store.policy_stats("p2", minute, minute + 1).await.unwrap();
    assert_eq!((buckets[0].hits, buckets[0].misses), (near + 4, 8));
    store
        .apply_stats(&[poll(vec![delta("p2", minute, 20)])], minute)
        .await
        .unwrap();
    let buckets = store.policy_stats("p2", minute, minute + 1).await.unwrap();
    assert_eq!((buckets[0].hits, buckets[0].misses), (i64::MAX, 48));
}

async fn bad_stats_rows_are_read(store: &Store) {
    // A bucket written by an older version (a REAL after an overflow on
    // SQLite, a negative count): reads do not fail, and the bad counter is
    // read as the nearest valid count.
    let minute = 28_333_334 * MINUTE;
    let huge = if store.backend() == Backend::Sqlite {
        "1.8e19"
    } else {
        "5"
    };
    store
        .execute_unchecked(&format!(
            "INSERT INTO policy_stats (policy_id, minute, hits, misses, bytes_dropped, \
             series_dropped, scrapes) VALUES ('p1', {minute}, {huge}, -7, 3, 0, 1)"
        ))
        .await
        .unwrap();
    let read = store.policy_stats("p1", minute, minute + 1).await.unwrap();
    let expected_hits = if store.backend() == Backend::Sqlite {
        i64::MAX
    } else {
        5
    };
    assert_eq!(
        read,
        [StatsBucket {
            minute_unix_ms: minute,
            hits: expected_hits,
            misses: 0,
            bytes_dropped: 3,
            series_dropped: 0,
            scrapes: 1,
        }]
    );
    // Adding to it brings it back into bounds.
    store
        .apply_stats(&[poll(vec![delta("p1", minute, 1)])], minute)
        .await
        .unwrap();
    let read = store.policy_stats("p1", minute, minute + 1).await.unwrap();
    assert_eq!(read[0].hits, expected_hits.saturating_add(1));
    assert_eq!(read[0].bytes_dropped, 103);
}

async fn edge_volume(store: &Store) {
    let t0 = 28_333_334 * MINUTE;
    let now = t0 + 5 * MINUTE;
    let (m1, m2) = (t0 + MINUTE, t0 + 2 * MINUTE);
    let apply = |batch: StatsBatch| async move {
        let applied = store.apply_stats(&[batch], now).await.unwrap();
        applied[0]
    };
    let all =
        |from: i64, to: i64| async move { store.volume_by_edge(None, from, to).await.unwrap() };

    // Volume travels with its report: stored once, however often the
    // report is resent, even a report of volume alone.
    assert!(
        apply(with_volume(
            report("edge-1", "s", 1, vec![delta("p1", t0, 1)]),
            volume("edge-1", t0, 10)
        ))
        .await
    );
    assert!(
        !apply(with_volume(
            report("edge-1", "s", 1, vec![delta("p1", t0, 1)]),
            volume("edge-1", t0, 10)
        ))
        .await
    );
    assert!(
        apply(with_volume(
            report("edge-1", "s", 2, vec![]),
            volume("edge-1", t0, 5)
        ))
        .await
    );
    assert!(
        !apply(with_volume(
            report("edge-1", "s", 2, vec![]),
            volume("edge-1", t0, 5)
        ))
        .await
    );
    assert_eq!(
        all(t0, t0 + MINUTE).await,
        BTreeMap::from([("edge-1".to_owned(), counts(15))])
    );
    // A poll without a report name stores what it carries, every time (the
    // spec's clients never resend volume).
    assert!(apply(with_volume(poll(vec![]), volume("edge-1", m1, 1))).await);
    assert!(apply(with_volume(poll(vec![]), volume("edge-1", m1, 1))).await);
    // Other edges, other minutes.
    assert!(
        apply(with_volume(
            report("edge-2", "s", 1, vec![]),
            volume("edge-2", m1, 100)
        ))
        .await
    );
    assert!(apply(with_volume(poll(vec![]), volume("edge-3", m2, 1000))).await);

    // Per edge, one bucket per minute, oldest first; windows are [from, to).
    let buckets = store.edge_volume("edge-1", 0, i64::MAX).await.unwrap();
    assert_eq!(buckets, [volume("edge-1", t0, 15), volume("edge-1", m1, 2)]);
    assert_eq!(
        store.edge_volume("edge-1", m1, m2).await.unwrap(),
        [volume("edge-1", m1, 2)]
    );
    assert!(
        store
            .edge_volume("edge-none", 0, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        all(0, i64::MAX).await,
        BTreeMap::from([
            ("edge-1".to_owned(), counts(17)),
            ("edge-2".to_owned(), counts(100)),
            ("edge-3".to_owned(), counts(1000)),
        ])
    );
    assert_eq!(
        all(m1, m2).await,
        BTreeMap::from([
            ("edge-1".to_owned(), counts(2)),
            ("edge-2".to_owned(), counts(100))
        ])
    );
    // A page of the edge listing: instance ids first..=last.
    assert_eq!(
        store
            .volume_by_edge(Some(("edge-2", "edge-3")), 0, i64::MAX)
            .await
            .unwrap(),
        BTreeMap::from([
            ("edge-2".to_owned(), counts(100)),
            ("edge-3".to_owned(), counts(1000))
        ])
    );
    assert_eq!(
        store
            .volume_by_edge(Some(("edge-1", "edge-1")), m1, i64::MAX)
            .await
            .unwrap(),
        BTreeMap::from([("edge-1".to_owned(), counts(2))])
    );
    assert_eq!(counts(17).records(Signal::Log), 34);
    assert_eq!(counts(17).records(Signal::Metric), 17);
    assert_eq!(counts(17).records(Signal::Trace), 51);

    // Retention: buckets before the cutoff go, with the policies'.
    assert_eq!(
        store.prune_stats(m1).await.unwrap(),
        2,
        "one policy bucket and one volume bucket"
    );
    assert_eq!(
        all(0, i64::MAX).await,
        BTreeMap::from([
            ("edge-1".to_owned(), counts(2)),
            ("edge-2".to_owned(), counts(100)),
            ("edge-3".to_owned(), counts(1000)),
        ])
    );
    assert_eq!(store.prune_stats(now + 1).await.unwrap(), 3);
    assert!(all(0, i64::MAX).await.is_empty());
}

async fn edge_volume_saturates(store: &Store) {
    // Counts a hostile edge could pile up: a bucket saturates at i64::MAX,
    // and a sum over saturated buckets reads as i64::MAX, never fails.
    let minute = 28_333_334 * MINUTE;
    let max = VolumeCounts {
        log_records: i64::MAX,
        log_bytes: i64::MAX,
        metric_data_points: i64::MAX,
        metric_bytes: i64::MAX,
        spans: i64::MAX,
        span_bytes: i64::MAX,
    };
    for m in [minute, minute, minute + MINUTE] {
        let v = EdgeVolume {
            instance_id: "edge-1".into(),
            minute: m,
            counts: max,
        };
        let applied = store
            .apply_stats(&[with_volume(poll(vec![]), v)], minute)
            .await;
        assert_eq!(applied.unwrap(), [true]);
    }
    let buckets = store
        .edge_volume("edge-1", minute, minute + 1)
        .await
        .unwrap();
    assert_eq!(buckets[0].counts, max);
    let summed = store.volume_by_edge(None, 0, i64::MAX).await.unwrap();
    assert_eq!(summed["edge-1"], max);
    // Below the bound, a bucket stays exact.
    let near = i64::MAX - 10;
    let mut first = counts(0);
    first.metric_data_points = near;
    for c in [first, counts(4)] {
        let v = EdgeVolume {
            instance_id: "edge-2".into(),
            minute,
            counts: c,
        };
        store
            .apply_stats(&[with_volume(poll(vec![]), v)], minute)
            .await
            .unwrap();
    }
    let buckets = store
        .edge_volume("edge-2", minute, minute + 1)
        .await
        .unwrap();
    assert_eq!(buckets[0].counts.metric_data_points, near + 4);
    assert_eq!(buckets[0].counts.log_records, 8);
}

/// Managed PostgreSQL services require TLS (`sslmode=require`): the store
/// must be able to speak it. Skipped with a notice when the server has TLS
/// turned off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls() {
    let Some((db, plain)) = open_postgres().await else {
        return;
    };
    plain.close().await;
    let mut admin = sqlx::PgConnection::connect(&db.admin_url)
        .await
        .expect("connect");
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&mut admin)
        .await
        .expect("SHOW ssl");
    admin.close().await.ok();
    if ssl != "on" {
        eprintln!("SKIPPED: the PostgreSQL server has ssl = {ssl}");
        db.drop_database().await;
        return;
    }
    let base = db
        .admin_url
        .rsplit_once('/')
        .map(|(base, _)| base.to_owned())
        .unwrap_or_else(|| db.admin_url.clone());
    let url = format!("{base}/{}?sslmode=require", db.name);
    let opened = Store::open(&url).await;
    let store = match opened {
        Ok(store) => store,
        Err(e) => {
            db.drop_database().await;
            panic!("open the store with sslmode=require: {e}");
        }
    };
    run(&store, Some(db), async {
        assert_err!(
            store.get_policy("absent").await,
            StoreError::NotFound { .. }
        );
    })
    .await;
}

// ---------------------------------------------------------------------------
// Inventories, issues and usage sources
// ---------------------------------------------------------------------------

fn inventory(session: &str, seq: u64, end: i64, family: &str) -> InventoryReport {
    InventoryReport {
        session: session.into(),
        seq,
        window_start_unix_ms: end - 300_000,
        window_end_unix_ms: end,
        scrapes: 10,
        families: vec![FamilyInventory {
            name: family.into(),
            r#type: "gauge".into(),
            series: 3,
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn inventories(store: &Store) {
    let t = 1_700_000_000_000;
    assert_eq!(store.last_inventory_at().await.unwrap(), None);
    assert!(
        store
            .put_inventory("i-1", "api", &inventory("s", 1, t, "a"), t)
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_inventory("i-1", "api", &inventory("s", 1, t, "a"), t + 5)
            .await
            .unwrap(),
        "a retried report is stored once"
    );
    assert!(
        store
            .put_inventory(
                "i-1",
                "api",
                &inventory("s", 2, t + 300_000, "b"),
                t + 300_000
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .put_inventory("i-2", "api", &inventory("z", 1, t, "c"), t)
            .await
            .unwrap()
    );
    assert!(
        store
            .put_inventory("i-3", "web", &inventory("w", 1, t, "d"), t)
            .await
            .unwrap()
    );

    assert_eq!(store.last_inventory_at().await.unwrap(), Some(t + 300_000));

    // The newest report per instance of the service.
    let latest = store.latest_inventories("api", t - 1).await.unwrap();
    let got: Vec<(&str, &str)> = latest
        .iter()
        .map(|s| (s.instance_id.as_str(), s.report.families[0].name.as_str()))
        .collect();
    assert_eq!(got, vec![("i-1", "b"), ("i-2", "c")]);
    // Only windows that ended after `since`.
    let recent = store.latest_inventories("api", t).await.unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(
        store.inventoried_services(t - 1).await.unwrap(),
        vec!["api", "web"]
    );
    assert_eq!(
        store.count_inventoried_services(t - 1, "").await.unwrap(),
        2
    );
    assert_eq!(
        store
            .count_inventoried_services(t - 1, "web")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.count_inventoried_services(t - 1, "db").await.unwrap(),
        0
    );

    assert_eq!(store.prune_inventories(t + 1).await.unwrap(), 3);
    assert_eq!(store.inventoried_services(0).await.unwrap(), vec!["api"]);
}

async fn issues_and_usage(store: &Store) {
    let issue = |subject: &str, status: &str| Issue {
        kind: "unused_metric".into(),
        service: "api".into(),
        subject: subject.into(),
        status: status.into(),
        title: format!("{subject} is unused"),
        updated_at_unix_ms: 1,
        ..Default::default()
    };
    let a = store.save_issue(issue("a", "open")).await.unwrap();
    let b = store.save_issue(issue("b", "open")).await.unwrap();
    assert_ne!(a.id, b.id);
    assert!(a.id.starts_with("ISS-"), "{}", a.id);

    // The same key updates the issue in place and keeps its id.
    let mut again = issue("a", "in_progress");
    again.policy_id = "drop-a".into();
    let again = store.save_issue(again).await.unwrap();
    assert_eq!(again.id, a.id);
    let read = store.get_issue(&a.id).await.unwrap();
    assert_eq!(
        (read.status.as_str(), read.policy_id.as_str()),
        ("in_progress", "drop-a")
    );
    assert_eq!(read.title, "a is unused");

    // Updates take no number: the next new issue follows `b` (they made
    // numbers jump, ISS-6 then ISS-54).
    for n in 0..5 {
        let mut update = issue("a", "in_progress");
        update.policy_id = "drop-a".into();
        update.updated_at_unix_ms = 10 + n;
        store.save_issue(update).await.unwrap();
    }
    let c = store.save_issue(issue("c", "merged")).await.unwrap();
    let number = |id: &str| id.trim_start_matches("ISS-").parse::<i64>().unwrap();
    assert_eq!(number(&c.id), number(&b.id) + 1, "{} after {}", c.id, b.id);
    let actionable = store
        .list_issues_in("api", &["open", "in_progress"], "")
        .await
        .unwrap();
    assert_eq!(
        actionable.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
        vec![a.id.clone(), b.id.clone()]
    );
    assert_eq!(
        store.count_issues("api", "").await.unwrap(),
        vec![
            ("in_progress".to_owned(), 1),
            ("merged".to_owned(), 1),
            ("open".to_owned(), 1)
        ]
    );
    assert!(store.count_issues("web", "").await.unwrap().is_empty());

    let open = store.list_issues("", "open", "").await.unwrap();
    assert_eq!(
        open.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
        vec![b.id.clone()]
    );
    assert_eq!(store.list_issues("web", "", "").await.unwrap().len(), 0);
    assert_eq!(store.issues_of_service("api").await.unwrap().len(), 3);
    assert_eq!(
        store.issue_of_policy("drop-a").await.unwrap().map(|i| i.id),
        Some(a.id.clone())
    );
    assert_eq!(store.issue_of_policy("nope").await.unwrap(), None);
    assert_err!(
        store.get_issue("ISS-999").await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store.get_issue("garbage").await,
        StoreError::NotFound { .. }
    );

    let usage = |name: &str, parsed: &str| StoredUsage {
        name: name.into(),
        kind: "prometheus_rules".into(),
        imported_at: 5,
        imported_by: "admin".into(),
        parsed: parsed.into(),
    };
    store.put_usage(&usage("rules.yml", "{}")).await.unwrap();
    store.put_usage(&usage("dash.json", "{}")).await.unwrap();
    store
        .put_usage(&usage("rules.yml", "{\"v\":2}"))
        .await
        .unwrap();
    let listed = store.list_usage().await.unwrap();
    let got: Vec<(&str, &str)> = listed
        .iter()
        .map(|u| (u.name.as_str(), u.parsed.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![("dash.json", "{}"), ("rules.yml", "{\"v\":2}")],
        "same name replaces"
    );
    assert_eq!(store.count_usage_sources().await.unwrap(), 2);
}

fn log_event(fp: &str, text: &str, count: u64, first: i64, last: i64) -> EventType {
    EventType {
        fingerprint: fp.into(),
        kind: "log".into(),
        service: "api".into(),
        name: text.into(),
        count,
        bytes: count * 10,
        first_seen_unix_ms: first,
        last_seen_unix_ms: last,
        ..Default::default()
    }
}

fn write(event: EventType, alias_of: Option<&str>) -> TemplateWrite {
    TemplateWrite {
        event,
        definition: "d1".into(),
        alias_of: alias_of.map(str::to_string),
    }
}

async fn event_types_and_templates(store: &Store) {
    let t = 1_700_000_000_000;
    let first = vec![
        write(log_event("aaa", "user <*> logged in", 3, t, t + 10), None),
        write(log_event("bbb", "disk full", 1, t, t), None),
    ];
    assert!(
        store
            .apply_templates(Some(("i-1", "s", 1)), &first, t)
            .await
            .unwrap()
    );
    // A retried report changes nothing.
    assert!(
        !store
            .apply_templates(Some(("i-1", "s", 1)), &first, t + 1)
            .await
            .unwrap()
    );
    // The next report adds up, widens the times, and names an alias.
    let second = vec![
        write(
            log_event("aaa", "user <*> logged in", 2, t - 5, t + 20),
            None,
        ),
        write(
            log_event("ccc", "user carol logged in", 4, t + 30, t + 40),
            Some("aaa"),
        ),
    ];
    assert!(
        store
            .apply_templates(Some(("i-1", "s", 2)), &second, t + 2)
            .await
            .unwrap()
    );
    let aaa = store.get_event_type("aaa").await.unwrap().expect("stored");
    assert_eq!((aaa.event.count, aaa.event.bytes), (9, 90));
    assert_eq!(
        (aaa.event.first_seen_unix_ms, aaa.event.last_seen_unix_ms),
        (t - 5, t + 40)
    );
    assert_eq!(aaa.event.name, "user <*> logged in");
    let ccc = store
        .get_event_type("ccc")
        .await
        .unwrap()
        .expect("alias row");
    assert_eq!(ccc.merged_into, "aaa");
    assert_eq!(ccc.event.count, 0);
    // Listings leave aliases out; the per-service view keeps them.
    let listed: Vec<String> = store
        .event_types("api", "log")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.fingerprint)
        .collect();
    assert_eq!(listed, vec!["aaa".to_string(), "bbb".to_string()]);
    assert_eq!(
        store
            .log_event_types_with_aliases("api")
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(store.event_types("other", "").await.unwrap().is_empty());
    // Submitted samples have no receipt and always count.
    let third = vec![write(log_event("bbb", "disk full", 1, t, t), None)];
    assert!(store.apply_templates(None, &third, t).await.unwrap());
    assert!(store.apply_templates(None, &third, t).await.unwrap());
    let bbb = store.get_event_type("bbb").await.unwrap().expect("stored");
    assert_eq!(bbb.event.count, 3);

    // Metric families replace their activity.
    let metric = |series: u64, at: i64| EventType {
        fingerprint: "mmm".into(),
        kind: "metric".into(),
        service: "api".into(),
        name: "http_requests_total".into(),
        description: "Requests.".into(),
        count: series,
        first_seen_unix_ms: at,
        last_seen_unix_ms: at,
        ..Default::default()
    };
    store
        .put_event_type(&metric(10, t), "m1", Activity::Replace, t)
        .await
        .unwrap();
    store
        .put_event_type(&metric(4, t + 9), "m2", Activity::Replace, t + 9)
        .await
        .unwrap();
    let m = store.get_event_type("mmm").await.unwrap().expect("stored");
    assert_eq!(m.event.count, 4);
    assert_eq!(m.definition, "m2");
    assert_eq!(
        (m.event.first_seen_unix_ms, m.event.last_seen_unix_ms),
        (t, t + 9)
    );
    assert_eq!(store.event_types("", "metric").await.unwrap().len(), 1);

    // Receipts are pruned by age; a pruned report would count again.
    assert_eq!(store.prune_log_reports(t + 3).await.unwrap(), 2);
}

async fn classifications_runs_and_leases(store: &Store) {
    let t = 1_700_000_000_000;
    let classification = |classifier: &str, category: &str, at: i64| Classification {
        category: category.into(),
        verdict: "waste".into(),
        confidence: 0.75,
        rationale: "why".into(),
        classifier: classifier.into(),
        classified_at_unix_ms: at,
        run_id: 1,
    };
    store
        .put_classification("aaa", "d1", &classification("embedded/1", "debug_noise", t))
        .await
        .unwrap();
    store
        .put_classification(
            "aaa",
            "d2",
            &classification("openai/m/p1", "health_check", t + 1),
        )
        .await
        .unwrap();
    // Same key: replaced, not added.
    store
        .put_classification(
            "aaa",
            "d3",
            &classification("embedded/1", "operational", t + 2),
        )
        .await
        .unwrap();
    let all = store.classifications().await.unwrap();
    let aaa = &all["aaa"];
    assert_eq!(aaa.len(), 2);
    assert_eq!(aaa[0].classifier, "embedded/1", "newest first");
    assert_eq!(aaa[0].definition, "d3");
    assert_eq!(aaa[0].classification.category, "operational");
    assert_eq!(aaa[0].classification.confidence, 0.75);

    // Runs: started ones are not listed until finished; usage adds up.
    let first = store.start_classification_run(t).await.unwrap();
    let second = store.start_classification_run(t + 1).await.unwrap();
    assert!(second > first);
    assert!(
        store
            .recent_classification_runs(10)
            .await
            .unwrap()
            .is_empty()
    );
    let usage = |input: u64| ProviderUsage {
        classifier: "openai/m/p1".into(),
        input_tokens: input,
        output_tokens: 7,
        requests: 1,
    };
    for (id, input) in [(first, 100), (second, 50)] {
        let run = ClassificationRun {
            id,
            started_at_unix_ms: t,
            submitted: 3,
            usage: vec![usage(input)],
            ..Default::default()
        };
        store.finish_classification_run(&run).await.unwrap();
    }
    let runs = store.recent_classification_runs(1).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, second);
    let totals = store.classification_usage().await.unwrap();
    assert_eq!(totals.len(), 1);
    assert_eq!(
        (
            totals[0].input_tokens,
            totals[0].output_tokens,
            totals[0].requests
        ),
        (150, 14, 2)
    );

    // Leases: one holder at a time until expiry; renewal and release.
    assert!(store.try_lease("job", "a", t, 1_000).await.unwrap());
    assert!(!store.try_lease("job", "b", t + 10, 1_000).await.unwrap());
    assert!(
        store.try_lease("job", "a", t + 20, 1_000).await.unwrap(),
        "renewal"
    );
    assert!(!store.try_lease("job", "b", t + 1_010, 1_000).await.unwrap());
    assert!(
        store.try_lease("job", "b", t + 1_020, 1_000).await.unwrap(),
        "expired"
    );
    store.release_lease("job", "a").await.unwrap();
    assert!(!store.try_lease("job", "a", t + 1_030, 1_000).await.unwrap());
    store.release_lease("job", "b").await.unwrap();
    assert!(store.try_lease("job", "a", t + 1_040, 1_000).await.unwrap());
}

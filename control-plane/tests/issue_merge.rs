//! A finding folded into another issue is not a fixed one: the newcomer
//! saw `debug_metric` on a family resolved ("the condition no longer
//! holds") and still offered for accept once a usage source made it an
//! `unused_metric` finding. Here the analyst, over a real store, marks it
//! merged into the issue that reports it, accept refuses it with the
//! reason, numbers follow each other, and the issue that does carry a
//! policy is accepted in shadow by default, then promoted.

use tero_control_plane::api::admin::Admin;
use tero_control_plane::auth::Principal;
use tero_control_plane::issues::status;
use tero_control_plane::store::{Store, now_ms};
use tero_proto::controlplane::{
    AcceptIssueRequest, FamilyInventory, ImportUsageRequest, InventoryReport, Issue,
    ListIssuesRequest,
};

mod common;

const SERVICE: &str = "checkout";

fn report(seq: u64, families: &[&str]) -> InventoryReport {
    let now = now_ms();
    InventoryReport {
        session: "s".into(),
        seq,
        window_start_unix_ms: now - 300_000,
        window_end_unix_ms: now,
        scrapes: 10,
        scrapes_inventoried: 1,
        families: families
            .iter()
            .map(|name| FamilyInventory {
                name: (*name).into(),
                r#type: "gauge".into(),
                series: 50,
                samples: 50,
                sample_bytes: 5_000,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn number(issue: &Issue) -> u64 {
    issue.id.trim_start_matches("ISS-").parse().expect("ISS-n")
}

fn find<'a>(issues: &'a [Issue], kind: &str, subject: &str) -> &'a Issue {
    issues
        .iter()
        .find(|i| i.kind == kind && i.subject == subject)
        .unwrap_or_else(|| panic!("no {kind} on {subject} in {issues:#?}"))
}

#[tokio::test]
async fn a_folded_finding_is_merged_refused_and_numbers_do_not_jump() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    let store = Store::open(&url).await.expect("open SQLite store");
    let state = common::app_state(&store, "admin-token").await;
    let admin = Admin {
        state: &state,
        principal: Principal::Admin,
    };
    let analyst = &state.analyst;
    let accept = |id: &str, mode: &str| {
        admin.accept_issue(AcceptIssueRequest {
            id: id.into(),
            mode: mode.into(),
            reason: String::new(),
        })
    };

    // No usage source yet: a debug family is a debug_metric issue, with no
    // policy (whether anyone reads it is unknown), so accept is refused.
    store
        .put_inventory("i-1", SERVICE, &report(1, &["debug_queue_depth"]), now_ms())
        .await
        .expect("inventory");
    analyst.analyse(SERVICE).await.expect("analyse");
    let issues = store.issues_of_service(SERVICE).await.expect("issues");
    let debug = find(&issues, "debug_metric", "debug_queue_depth").clone();
    assert_eq!(debug.status, status::OPEN);
    assert!(debug.recommended.is_none(), "{debug:#?}");
    let refused = accept(&debug.id, "").await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("no recommended policy")),
        "{refused:?}"
    );

    // A rule file that never reads it: now it is unused, the stronger
    // finding, and the debug finding is folded into it.
    admin
        .import_usage(ImportUsageRequest {
            name: "rules.yml".into(),
            kind: String::new(),
            content: "groups:\n  - name: a\n    rules:\n      - record: r\n        expr: sum(http_requests_total)\n".into(),
        })
        .await
        .expect("import");
    for _ in 0..3 {
        analyst.analyse(SERVICE).await.expect("analyse");
    }
    let issues = store.issues_of_service(SERVICE).await.expect("issues");
    let unused = find(&issues, "unused_metric", "debug_queue_depth").clone();
    let merged = find(&issues, "debug_metric", "debug_queue_depth").clone();
    assert_eq!(merged.status, status::MERGED, "{merged:#?}");
    assert_eq!(merged.merged_into, unused.id);
    assert!(merged.resolution.is_empty(), "not resolved: {merged:#?}");
    assert_eq!(number(&unused), number(&debug) + 1, "{issues:#?}");
    let refused = accept(&merged.id, "").await;
    assert!(
        refused.as_ref().is_err_and(|e| {
            let e = e.to_string();
            e.contains("merged into") && e.contains(&unused.id)
        }),
        "{refused:?}"
    );

    // Re-analysing takes no numbers: the next new issue follows.
    store
        .put_inventory(
            "i-1",
            SERVICE,
            &report(2, &["debug_queue_depth", "legacy_jobs"]),
            now_ms(),
        )
        .await
        .expect("inventory");
    analyst.analyse(SERVICE).await.expect("analyse");
    let issues = store.issues_of_service(SERVICE).await.expect("issues");
    let legacy = find(&issues, "unused_metric", "legacy_jobs");
    assert_eq!(number(legacy), number(&unused) + 1, "{issues:#?}");

    // The default list: what still needs someone; the merged one is
    // counted, not listed.
    let listed = admin
        .list_issues(ListIssuesRequest {
            status: "open,in_progress".into(),
            ..Default::default()
        })
        .await
        .expect("list");
    assert!(listed.issues.iter().all(|i| i.status == status::OPEN));
    assert_eq!(listed.issues.len(), 2);
    assert_eq!(listed.status_counts.get("merged"), Some(&1));
    assert_eq!(listed.usage_sources, 1);
    assert_eq!(listed.inventoried_services, 1);
    assert!(listed.last_inventory_unix_ms > 0);
    let elsewhere = admin
        .list_issues(ListIssuesRequest {
            service: "billing".into(),
            ..Default::default()
        })
        .await
        .expect("list");
    assert!(elsewhere.issues.is_empty());
    assert_eq!(
        elsewhere.inventoried_services, 0,
        "billing has no inventory"
    );

    // The unused issue carries a policy: accepted in shadow by default,
    // then promoted with an explicit `active`.
    let shadow = accept(&unused.id, "").await.expect("accept");
    let issue = shadow.issue.expect("issue");
    assert_eq!(issue.remediation, status::SHADOW);
    let policy = shadow.policy.and_then(|p| p.policy).expect("policy");
    assert!(
        policy.labels.iter().any(|kv| kv.key == "tero.mode"),
        "{policy:#?}"
    );
    let active = accept(&unused.id, "active").await.expect("promote");
    assert_eq!(active.issue.expect("issue").remediation, status::ACTIVE);
    let policy = active.policy.expect("policy");
    assert_eq!(policy.revision, 2);
    let policy = policy.policy.expect("policy");
    assert!(policy.enabled);
    assert!(policy.labels.iter().all(|kv| kv.key != "tero.mode"));
    let again = accept(&unused.id, "active").await;
    assert!(
        again
            .as_ref()
            .is_err_and(|e| e.to_string().contains("already accepted")),
        "{again:?}"
    );
    state.shutdown.cancel();
}

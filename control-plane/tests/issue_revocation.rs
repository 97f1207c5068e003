//! A resolved issue holds only while its policy runs: disabled or deleted,
//! the waste is back, so the analyst reopens the issue (control-plane.md §2.4, resolved
//! → open, remediation `policy_revoked`); re-enabled, it is back in
//! progress; deleted, accepting the issue again creates a new policy.

use tero_control_plane::api::admin::Admin;
use tero_control_plane::auth::Principal;
use tero_control_plane::issues::{Analyst, IssueConfig, status};
use tero_control_plane::store::{PolicyChange, Store};
use tero_proto::controlplane::{AcceptIssueRequest, CreatePolicyRequest, Issue, Scope};
use tero_proto::policy::{
    MetricField, MetricMatcher, MetricTarget, Policy, metric_matcher, policy,
};

mod common;

const POLICY: &str = "drop-legacy-queue-depth";

fn recommended() -> Policy {
    Policy {
        id: POLICY.into(),
        name: POLICY.into(),
        enabled: true,
        target: Some(policy::Target::Metric(MetricTarget {
            r#match: vec![MetricMatcher {
                field: Some(metric_matcher::Field::MetricField(MetricField::Name as i32)),
                r#match: Some(metric_matcher::Match::Exact("legacy_queue_depth".into())),
                ..Default::default()
            }],
            keep: false,
        })),
        ..Default::default()
    }
}

/// An issue resolved by [`POLICY`], which exists and is enabled.
async fn resolved_issue(store: &Store) -> Issue {
    store
        .create_policy(PolicyChange {
            policy: recommended(),
            scope: Scope::default(),
            actor: "admin".into(),
            reason: "accepted".into(),
        })
        .await
        .expect("create the policy");
    store
        .save_issue(Issue {
            kind: "unused_metric".into(),
            domain: "cost".into(),
            severity: "low".into(),
            status: status::RESOLVED.into(),
            remediation: status::VERIFIED.into(),
            title: "legacy_queue_depth is never queried".into(),
            service: "checkout".into(),
            subject: "legacy_queue_depth".into(),
            policy_id: POLICY.into(),
            resolution: "policy removes 100% of the estimated volume".into(),
            resolved_at_unix_ms: 1,
            recommended: Some(CreatePolicyRequest {
                policy: Some(recommended()),
                scope: Some(Scope::default()),
                reason: String::new(),
            }),
            ..Default::default()
        })
        .await
        .expect("save the issue")
}

#[tokio::test]
async fn revoking_the_policy_reopens_the_issue_and_it_can_be_accepted_again() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    let store = Store::open(&url).await.expect("open SQLite store");
    let issue = resolved_issue(&store).await;
    let analyst = Analyst::new(store.clone(), IssueConfig::default());

    // Still running: still resolved.
    analyst.verify_all().await.expect("verify");
    let same = store.get_issue(&issue.id).await.expect("issue");
    assert_eq!(same.status, status::RESOLVED);

    // Disabled: the waste is back.
    let policy = store.get_policy(POLICY).await.expect("policy");
    let policy = store
        .set_policy_enabled(POLICY, false, policy.revision, "admin", "test")
        .await
        .expect("disable");
    analyst.verify_all().await.expect("verify");
    let reopened = store.get_issue(&issue.id).await.expect("issue");
    assert_eq!(reopened.status, status::OPEN);
    assert_eq!(reopened.remediation, status::REVOKED);
    assert_eq!(reopened.resolved_at_unix_ms, 0);
    assert!(reopened.resolution.is_empty());
    assert_eq!(reopened.policy_id, POLICY, "the link is kept");

    // Enabled again: back in progress, measured anew.
    let policy = store
        .set_policy_enabled(POLICY, true, policy.revision, "admin", "test")
        .await
        .expect("enable");
    analyst.verify_all().await.expect("verify");
    let resumed = store.get_issue(&issue.id).await.expect("issue");
    assert_eq!(resumed.status, status::IN_PROGRESS);
    assert_eq!(resumed.remediation, status::ACTIVE);

    // A live policy cannot be replaced by accepting again.
    let state = common::app_state(&store, "admin-token").await;
    let admin = Admin {
        state: &state,
        principal: Principal::Admin,
    };
    let mut open = resumed.clone();
    open.status = status::OPEN.into();
    store.save_issue(open).await.expect("save");
    let refused = admin
        .accept_issue(AcceptIssueRequest {
            id: issue.id.clone(),
            ..Default::default()
        })
        .await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("already accepted")),
        "{refused:?}"
    );

    // Deleted: reopened, and accepting creates the policy again.
    let mut resolved = store.get_issue(&issue.id).await.expect("issue");
    resolved.status = status::RESOLVED.into();
    resolved.remediation = status::VERIFIED.into();
    store.save_issue(resolved).await.expect("save");
    store
        .delete_policy(POLICY, policy.revision, "admin", "test")
        .await
        .expect("delete");
    analyst.verify_all().await.expect("verify");
    let reopened = store.get_issue(&issue.id).await.expect("issue");
    assert_eq!(
        (reopened.status.as_str(), reopened.remediation.as_str()),
        (status::OPEN, status::REVOKED)
    );
    let accepted = admin
        .accept_issue(AcceptIssueRequest {
            id: issue.id.clone(),
            ..Default::default()
        })
        .await
        .expect("accept again");
    let issue = accepted.issue.expect("issue");
    assert_eq!(issue.status, status::IN_PROGRESS);
    assert_eq!(issue.policy_id, POLICY);
    assert!(
        store.get_policy(POLICY).await.is_ok(),
        "the policy exists again"
    );
    state.shutdown.cancel();
}

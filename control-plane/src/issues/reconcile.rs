//! Turning a detector run into issue changes.
//!
//! Findings are keyed by (kind, service, subject). A new finding opens an
//! issue; a finding that persists refreshes the evidence of an open issue;
//! an open issue whose condition no longer holds is resolved; a resolved issue whose finding returns is reopened. Ignored
//! issues stay ignored, with fresh evidence. An accepted issue is left as it
//! was accepted: its policy's impact is measured against that evidence.

use std::collections::HashMap;

use tero_proto::controlplane::Issue;

use super::detect::Finding;
use super::status;

/// The issues to save after one run over a service.
pub fn reconcile(existing: &[Issue], findings: Vec<Finding>, now: i64) -> Vec<Issue> {
    let mut by_key: HashMap<(String, String), &Issue> = existing
        .iter()
        .map(|i| ((i.kind.clone(), i.subject.clone()), i))
        .collect();
    let mut changed = Vec::new();
    for finding in findings {
        match by_key.remove(&(finding.kind.to_owned(), finding.subject.clone())) {
            None => changed.push(open(finding, now)),
            Some(issue) => {
                if let Some(updated) = refresh(issue, finding, now) {
                    changed.push(updated);
                }
            }
        }
    }
    for issue in by_key.into_values() {
        if issue.status == status::OPEN {
            let mut resolved = issue.clone();
            resolved.status = status::RESOLVED.into();
            resolved.resolution = "the condition no longer holds in the latest inventory".into();
            resolved.resolved_at_unix_ms = now;
            resolved.updated_at_unix_ms = now;
            changed.push(resolved);
        }
    }
    changed
}

fn open(finding: Finding, now: i64) -> Issue {
    let mut issue = Issue {
        status: status::OPEN.into(),
        remediation: status::READY_TO_DEPLOY.into(),
        opened_at_unix_ms: now,
        ..Default::default()
    };
    apply(&mut issue, finding);
    issue.updated_at_unix_ms = now;
    issue
}

/// The issue with the finding's fresh evidence, or `None` if nothing a
/// reader would see changed.
fn refresh(issue: &Issue, finding: Finding, now: i64) -> Option<Issue> {
    if !issue.policy_id.is_empty() {
        // Accepted: its evidence and estimate are what the policy's impact
        // is measured against, so they stay as they were when accepted.
        return None;
    }
    let mut updated = issue.clone();
    apply(&mut updated, finding);
    if issue.status == status::RESOLVED {
        // A regression: the signal is back.
        updated.status = status::OPEN.into();
        updated.resolution = String::new();
        updated.resolved_at_unix_ms = 0;
    }
    let mut before = issue.clone();
    before.updated_at_unix_ms = 0;
    before.provenance = None;
    let mut after = updated.clone();
    after.updated_at_unix_ms = 0;
    after.provenance = None;
    if before == after {
        return None;
    }
    updated.updated_at_unix_ms = now;
    Some(updated)
}

fn apply(issue: &mut Issue, finding: Finding) {
    issue.kind = finding.kind.into();
    issue.domain = finding.domain.into();
    issue.severity = finding.severity.into();
    issue.title = finding.title;
    issue.summary = finding.summary;
    issue.service = finding.service;
    issue.subject = finding.subject;
    issue.evidence = Some(finding.evidence);
    issue.provenance = Some(finding.provenance);
    issue.estimate = Some(finding.estimate);
    issue.recommended = Some(finding.recommended);
}

#[cfg(test)]
mod tests {
    use tero_proto::controlplane::{CreatePolicyRequest, Evidence, ImpactEstimate, Provenance};

    use super::*;

    fn finding(subject: &str, series: u64) -> Finding {
        Finding {
            kind: "unused_metric",
            domain: "cost",
            severity: "low",
            title: format!("{subject} is never queried"),
            summary: String::new(),
            service: "api".into(),
            subject: subject.into(),
            evidence: Evidence {
                series,
                ..Default::default()
            },
            provenance: Provenance::default(),
            estimate: ImpactEstimate {
                series,
                ..Default::default()
            },
            recommended: CreatePolicyRequest::default(),
        }
    }

    fn saved(mut issues: Vec<Issue>) -> Vec<Issue> {
        for (i, issue) in issues.iter_mut().enumerate() {
            issue.id = format!("ISS-{}", i + 1);
        }
        issues
    }

    #[test]
    fn a_finding_opens_once_and_refreshes_only_on_change() {
        let opened = saved(reconcile(&[], vec![finding("a", 3)], 10));
        assert_eq!(opened.len(), 1);
        assert_eq!(
            (opened[0].status.as_str(), opened[0].opened_at_unix_ms),
            ("open", 10)
        );
        assert_eq!(opened[0].remediation, status::READY_TO_DEPLOY);

        assert!(
            reconcile(&opened, vec![finding("a", 3)], 20).is_empty(),
            "nothing changed"
        );
        let changed = reconcile(&opened, vec![finding("a", 5)], 30);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].id, "ISS-1");
        assert_eq!(changed[0].evidence.as_ref().map(|e| e.series), Some(5));
        assert_eq!(
            (changed[0].opened_at_unix_ms, changed[0].updated_at_unix_ms),
            (10, 30)
        );
    }

    #[test]
    fn a_gone_condition_resolves_and_its_return_reopens() {
        let opened = saved(reconcile(&[], vec![finding("a", 3), finding("b", 1)], 10));
        let resolved = reconcile(&opened, vec![finding("b", 1)], 20);
        assert_eq!(resolved.len(), 1);
        assert_eq!(
            (resolved[0].subject.as_str(), resolved[0].status.as_str()),
            ("a", "resolved")
        );
        assert_eq!(resolved[0].resolved_at_unix_ms, 20);

        let reopened = reconcile(&resolved, vec![finding("a", 3)], 30);
        assert_eq!(reopened[0].status, status::OPEN);
        assert_eq!(
            (
                reopened[0].resolved_at_unix_ms,
                reopened[0].resolution.as_str()
            ),
            (0, "")
        );
    }

    #[test]
    fn ignored_stays_ignored_and_accepted_stays_as_accepted() {
        let mut issues = saved(reconcile(&[], vec![finding("a", 3), finding("b", 3)], 10));
        issues[0].status = status::IGNORED.into();
        issues[1].status = status::IN_PROGRESS.into();
        issues[1].policy_id = "drop-b".into();

        let changed = reconcile(&issues, vec![finding("a", 9), finding("b", 9)], 20);
        assert_eq!(changed.len(), 1, "the accepted issue is not touched");
        assert_eq!(
            (changed[0].subject.as_str(), changed[0].status.as_str()),
            ("a", "ignored")
        );
        assert_eq!(changed[0].evidence.as_ref().map(|e| e.series), Some(9));

        // Neither is resolved when its finding disappears.
        assert!(reconcile(&issues, vec![], 30).is_empty());
    }
}

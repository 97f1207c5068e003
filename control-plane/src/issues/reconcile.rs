//! Turning a detector run into issue changes.
//!
//! Findings are keyed by (kind, service, subject). A new finding opens an
//! issue; a finding that persists refreshes the evidence of an open issue;
//! an open issue whose condition no longer holds is resolved; a resolved
//! issue whose finding returns is reopened. An open issue whose finding is
//! now folded into another (the same change, see `detect`) is not fixed:
//! it becomes `merged`, pointing at the issue that reports it, and reopens
//! if its finding stands alone again. Ignored issues stay ignored, with
//! fresh evidence. An accepted issue is left as it was accepted: its
//! policy's impact is measured against that evidence.

use std::collections::HashMap;

use tero_proto::controlplane::Issue;

use super::detect::Finding;
use super::status;

/// (kind, subject): what identifies an issue within a service.
pub type Key = (String, String);

/// An issue to save, and for a merged one, the issue it was folded into.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub issue: Issue,
    /// Set with status `merged`: the key of the issue to point
    /// `merged_into` at, whose id may be known only once it is saved.
    pub merged_into: Option<Key>,
}

impl Change {
    fn plain(issue: Issue) -> Change {
        Change {
            issue,
            merged_into: None,
        }
    }
}

/// The issues to save after one run over a service. Changes without
/// `merged_into` come first, so the issues merged ones point at are saved
/// (and numbered) before them.
pub fn reconcile(existing: &[Issue], findings: Vec<Finding>, now: i64) -> Vec<Change> {
    let mut by_key: HashMap<Key, &Issue> = existing
        .iter()
        .map(|i| ((i.kind.clone(), i.subject.clone()), i))
        .collect();
    let mut absorbed_by: HashMap<Key, Key> = HashMap::new();
    for finding in &findings {
        for (kind, subject) in &finding.absorbed {
            absorbed_by.insert(
                ((*kind).to_owned(), subject.clone()),
                (finding.kind.to_owned(), finding.subject.clone()),
            );
        }
    }
    let mut changed = Vec::new();
    for finding in findings {
        match by_key.remove(&(finding.kind.to_owned(), finding.subject.clone())) {
            None => changed.push(Change::plain(open(finding, now))),
            Some(issue) => {
                if let Some(updated) = refresh(issue, finding, now) {
                    changed.push(Change::plain(updated));
                }
            }
        }
    }
    let mut merged = Vec::new();
    for (key, issue) in by_key {
        let unaccepted = issue.policy_id.is_empty();
        match absorbed_by.remove(&key) {
            Some(winner)
                if issue.status == status::OPEN
                    || issue.status == status::MERGED
                    || (issue.status == status::RESOLVED && unaccepted) =>
            {
                let mut folded = issue.clone();
                folded.status = status::MERGED.into();
                folded.resolution = String::new();
                folded.resolved_at_unix_ms = 0;
                if folded != *issue {
                    folded.updated_at_unix_ms = now;
                }
                // Saved even when unchanged here: the winner's id is only
                // resolved by the caller, who skips it if it is the same.
                merged.push(Change {
                    issue: folded,
                    merged_into: Some(winner),
                });
            }
            Some(_) => {}
            None if issue.status == status::OPEN || issue.status == status::MERGED => {
                let mut resolved = issue.clone();
                resolved.status = status::RESOLVED.into();
                resolved.merged_into = String::new();
                resolved.resolution =
                    "the condition no longer holds in the latest inventory".into();
                resolved.resolved_at_unix_ms = now;
                resolved.updated_at_unix_ms = now;
                changed.push(Change::plain(resolved));
            }
            None => {}
        }
    }
    merged.sort_by(|a, b| a.issue.subject.cmp(&b.issue.subject));
    changed.extend(merged);
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
    if issue.status == status::RESOLVED || issue.status == status::MERGED {
        // A regression (the signal is back), or a finding that no longer
        // shares its change with another: its own issue again.
        updated.status = status::OPEN.into();
        updated.resolution = String::new();
        updated.resolved_at_unix_ms = 0;
        updated.merged_into = String::new();
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
    issue.recommended = finding.recommended;
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
            recommended: Some(CreatePolicyRequest::default()),
            absorbed: Vec::new(),
        }
    }

    /// The issues of a run, checking that only merged ones point anywhere.
    fn rec(existing: &[Issue], findings: Vec<Finding>, now: i64) -> Vec<Issue> {
        reconcile(existing, findings, now)
            .into_iter()
            .map(|c| {
                assert_eq!(c.merged_into.is_some(), c.issue.status == status::MERGED);
                c.issue
            })
            .collect()
    }

    fn saved(mut issues: Vec<Issue>) -> Vec<Issue> {
        for (i, issue) in issues.iter_mut().enumerate() {
            issue.id = format!("ISS-{}", i + 1);
        }
        issues
    }

    #[test]
    fn a_finding_opens_once_and_refreshes_only_on_change() {
        let opened = saved(rec(&[], vec![finding("a", 3)], 10));
        assert_eq!(opened.len(), 1);
        assert_eq!(
            (opened[0].status.as_str(), opened[0].opened_at_unix_ms),
            ("open", 10)
        );
        assert_eq!(opened[0].remediation, status::READY_TO_DEPLOY);

        assert!(
            rec(&opened, vec![finding("a", 3)], 20).is_empty(),
            "nothing changed"
        );
        let changed = rec(&opened, vec![finding("a", 5)], 30);
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
        let opened = saved(rec(&[], vec![finding("a", 3), finding("b", 1)], 10));
        let resolved = rec(&opened, vec![finding("b", 1)], 20);
        assert_eq!(resolved.len(), 1);
        assert_eq!(
            (resolved[0].subject.as_str(), resolved[0].status.as_str()),
            ("a", "resolved")
        );
        assert_eq!(resolved[0].resolved_at_unix_ms, 20);

        let reopened = rec(&resolved, vec![finding("a", 3)], 30);
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
        let mut issues = saved(rec(&[], vec![finding("a", 3), finding("b", 3)], 10));
        issues[0].status = status::IGNORED.into();
        issues[1].status = status::IN_PROGRESS.into();
        issues[1].policy_id = "drop-b".into();

        let changed = rec(&issues, vec![finding("a", 9), finding("b", 9)], 20);
        assert_eq!(changed.len(), 1, "the accepted issue is not touched");
        assert_eq!(
            (changed[0].subject.as_str(), changed[0].status.as_str()),
            ("a", "ignored")
        );
        assert_eq!(changed[0].evidence.as_ref().map(|e| e.series), Some(9));

        // Neither is resolved when its finding disappears.
        assert!(rec(&issues, vec![], 30).is_empty());
    }

    #[test]
    fn a_folded_finding_is_merged_not_resolved_and_comes_back_open() {
        let opened = saved(rec(&[], vec![finding("a", 3), finding("b", 1)], 10));
        // Next run, `b`'s finding is folded into `a`'s.
        let mut winner = finding("a", 3);
        winner.absorbed.push(("unused_metric", "b".into()));
        let changes = reconcile(&opened, vec![winner.clone()], 20);
        assert_eq!(changes.len(), 1);
        let merged = &changes[0];
        assert_eq!(merged.issue.id, "ISS-2");
        assert_eq!(merged.issue.status, status::MERGED);
        assert_eq!(merged.issue.resolved_at_unix_ms, 0);
        assert_eq!(
            merged.merged_into,
            Some(("unused_metric".to_owned(), "a".to_owned()))
        );

        // A resolution written before merges existed is corrected too.
        let mut stale = opened.clone();
        stale[1].status = status::RESOLVED.into();
        stale[1].resolution = "the condition no longer holds in the latest inventory".into();
        let changes = reconcile(&stale, vec![winner], 30);
        assert_eq!(changes[0].issue.status, status::MERGED);
        assert!(changes[0].issue.resolution.is_empty());

        // On its own again: open, pointing nowhere.
        let mut now_merged = opened.clone();
        now_merged[1].status = status::MERGED.into();
        now_merged[1].merged_into = "ISS-1".into();
        let back = rec(&now_merged, vec![finding("a", 3), finding("b", 1)], 40);
        assert_eq!(back.len(), 1);
        assert_eq!(
            (back[0].status.as_str(), back[0].merged_into.as_str()),
            ("open", "")
        );

        // Gone altogether: resolved.
        let gone = rec(&now_merged, vec![finding("a", 3)], 50);
        assert_eq!(gone[0].status, status::RESOLVED);
        assert!(gone[0].merged_into.is_empty());
    }

    #[test]
    fn accepted_and_ignored_issues_are_not_merged() {
        let mut issues = saved(rec(
            &[],
            vec![finding("a", 3), finding("b", 1), finding("c", 1)],
            10,
        ));
        issues[1].status = status::IN_PROGRESS.into();
        issues[1].policy_id = "drop-b".into();
        issues[2].status = status::IGNORED.into();
        let mut winner = finding("a", 3);
        winner.absorbed = vec![("unused_metric", "b".into()), ("unused_metric", "c".into())];
        assert!(reconcile(&issues, vec![winner], 20).is_empty());
    }
}

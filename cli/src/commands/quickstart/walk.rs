//! The loop quickstart walks once everything runs: a usage source is
//! imported, the edge's inventory turns into issues, one issue is accepted
//! in shadow (what it would drop is measured, nothing is dropped), then
//! made active, and its measured impact is compared with the estimate.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tero_sdk::client::Client;
use tero_sdk::proto::controlplane::{
    AcceptIssueRequest, ImportUsageRequest, Issue, ListIssuesRequest, PolicyImpact,
};

use crate::commands::issues::{print_impacts, print_list};
use crate::outln;

/// The sample application's rules (`examples/quickstart/rules.yaml`): what
/// its dashboards and alerts read. Everything else it exports is unused.
pub const RULES: &str = include_str!("../../../../examples/quickstart/rules.yaml");
/// The name the rules are imported under.
pub const RULES_NAME: &str = "quickstart-rules.yaml";
/// The family quickstart accepts the issue of: debug instrumentation,
/// found both unused and debug, whose fix no query can miss.
const DEBUG_FAMILY: &str = "debug_cache_lookups_total";
/// How long quickstart waits for issues and for a judged impact.
const WAIT: Duration = Duration::from_secs(30);
/// After a promotion the measurement restarts at the first full minute
/// that no shadow report can reach (up to 90 s after the change), so the
/// active impact needs longer.
const WAIT_AFTER_PROMOTION: Duration = Duration::from_secs(110);

pub async fn import_rules(client: &Client) -> anyhow::Result<()> {
    let source = client
        .import_usage(ImportUsageRequest {
            name: RULES_NAME.into(),
            kind: "prometheus_rules".into(),
            content: RULES.into(),
        })
        .await
        .context("importing the sample rules")?;
    outln!(
        "imported usage source {}: {} queries reading {}",
        source.name,
        source.queries,
        source.metrics.join(", ")
    );
    Ok(())
}

/// Waits for the detectors to find the debug family in the edge's first
/// inventories, then prints the open issues and returns them.
pub async fn issues(client: &Client, service: &str) -> anyhow::Result<Vec<Issue>> {
    let started = Instant::now();
    loop {
        let issues = client
            .list_issues(ListIssuesRequest {
                service: service.into(),
                status: "open".into(),
                kind: String::new(),
            })
            .await?;
        if issues.iter().any(|i| i.subject == DEBUG_FAMILY) {
            outln!(
                "\nissues found in {:.1} s (from the edge's inventory and the rules):",
                started.elapsed().as_secs_f64()
            );
            print_list(&issues);
            return Ok(issues);
        }
        if started.elapsed() > WAIT {
            bail!(
                "no issue about {DEBUG_FAMILY} within {} s: the edge reports its inventory \
                 every 2 s; see the logs",
                WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The issue quickstart accepts: the debug family's, else the first with a
/// recommended policy.
pub fn pick(issues: &[Issue]) -> Option<&Issue> {
    let acceptable = |i: &&Issue| i.recommended.as_ref().is_some_and(|r| r.policy.is_some());
    issues
        .iter()
        .filter(acceptable)
        .find(|i| i.subject == DEBUG_FAMILY)
        .or_else(|| issues.iter().find(acceptable))
}

/// Accepts `issue` in shadow and returns its policy's id.
pub async fn accept_in_shadow(client: &Client, issue: &Issue) -> anyhow::Result<String> {
    outln!("\n{}  {}\n{}", issue.id, issue.title, issue.summary);
    let accepted = client
        .accept_issue(AcceptIssueRequest {
            id: issue.id.clone(),
            mode: "shadow".into(),
            reason: "tero quickstart: measure what it would drop first".into(),
        })
        .await
        .with_context(|| format!("accepting {}", issue.id))?;
    let policy_id = accepted
        .issue
        .map(|i| i.policy_id)
        .filter(|id| !id.is_empty())
        .with_context(|| format!("accepting {} created no policy", issue.id))?;
    outln!(
        "\n$ tero issues accept {} --mode shadow\npolicy {policy_id} created in shadow: \
         the edge counts what it would drop and drops nothing",
        issue.id
    );
    Ok(policy_id)
}

/// Accepts the shadowed issue again as active, as `tero issues accept
/// --mode active` does: the control plane enforces its policy and records
/// the promotion on the issue; the measurement restarts.
pub async fn activate(client: &Client, issue_id: &str) -> anyhow::Result<()> {
    let accepted = client
        .accept_issue(AcceptIssueRequest {
            id: issue_id.into(),
            mode: "active".into(),
            reason: "tero quickstart: the shadow measurement matches the estimate".into(),
        })
        .await
        .with_context(|| format!("activating {issue_id}"))?;
    let policy_id = accepted.issue.map(|i| i.policy_id).unwrap_or_default();
    outln!(
        "\n$ tero issues accept {issue_id} --mode active\npolicy {policy_id} is now active: \
         enforced; its measurement restarts at the first full minute at least 30 s from now"
    );
    Ok(())
}

/// Waits until the impact of `policy_id` (in another mode than
/// `other_than`, when given: a promotion) has been judged (the control
/// plane answers `measuring` until it counts enough scrapes), prints it
/// and returns it.
pub async fn impact(
    client: &Client,
    policy_id: &str,
    other_than: Option<&str>,
) -> anyhow::Result<PolicyImpact> {
    let wait = if other_than.is_some() {
        WAIT_AFTER_PROMOTION
    } else {
        WAIT
    };
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < wait {
        let impacts = client.impact(policy_id).await?;
        if let Some(impact) = impacts
            .into_iter()
            .find(|i| other_than.is_none_or(|mode| i.mode != mode))
        {
            let judged = impact.verdict != "measuring";
            last = Some(impact);
            if judged {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let impact = last.with_context(|| {
        format!(
            "no impact of {policy_id} measured within {} s",
            wait.as_secs()
        )
    })?;
    outln!("\n$ tero impact {policy_id}");
    print_impacts(std::slice::from_ref(&impact));
    Ok(impact)
}

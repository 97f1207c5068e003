//! `tero issues list|show|accept|ignore` and `tero impact`: what the
//! detectors found, turning a finding into a policy, and what that policy
//! measurably changed.

use clap::{Subcommand, ValueEnum};
use tero_sdk::proto::controlplane::{AcceptIssueRequest, Issue, ListIssuesRequest, PolicyImpact};

use crate::Global;
use crate::output::{self, Table, structured};
use crate::policy_view::{self, PolicyAt};
use crate::{out, outln};

#[derive(Debug, Subcommand)]
pub enum IssuesCommand {
    /// Lists issues with their estimated monthly cost.
    List {
        /// Only issues of this service.
        #[arg(long)]
        service: Option<String>,
        /// open, in_progress, resolved or ignored.
        #[arg(long)]
        status: Option<String>,
        /// A detector, e.g. unused_metric or high_cardinality_label.
        #[arg(long)]
        kind: Option<String>,
    },
    /// Shows an issue: evidence, provenance, estimate and the recommended
    /// policy.
    Show { id: String },
    /// Creates the issue's recommended policy, linked to the issue.
    Accept {
        id: String,
        /// active: enforced now; draft: created disabled for review;
        /// shadow: delivered and counted, never enforced.
        #[arg(long, value_enum, default_value = "active")]
        mode: AcceptMode,
        /// Why, recorded in the policy's history and the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Dismisses an issue without remediation.
    Ignore {
        id: String,
        /// Why (required): recorded with who ignored it.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcceptMode {
    Active,
    Draft,
    Shadow,
}

impl AcceptMode {
    fn as_str(self) -> &'static str {
        match self {
            AcceptMode::Active => "active",
            AcceptMode::Draft => "draft",
            AcceptMode::Shadow => "shadow",
        }
    }
}

pub async fn run(cmd: IssuesCommand, global: &Global) -> anyhow::Result<()> {
    let client = global.client()?;
    match cmd {
        IssuesCommand::List {
            service,
            status,
            kind,
        } => {
            let issues = client
                .list_issues(ListIssuesRequest {
                    service: service.unwrap_or_default(),
                    status: status.unwrap_or_default(),
                    kind: kind.unwrap_or_default(),
                })
                .await?;
            if !policy_view::structured_each(global.output, &issues, recommended)? {
                print_list(&issues);
            }
        }
        IssuesCommand::Show { id } => {
            let issue = client.get_issue(&id).await?;
            if !policy_view::structured(global.output, &issue, &recommended(&issue))? {
                print_issue(&issue)?;
            }
        }
        IssuesCommand::Accept { id, mode, reason } => {
            let accepted = client
                .accept_issue(AcceptIssueRequest {
                    id,
                    mode: mode.as_str().into(),
                    reason: reason.unwrap_or_default(),
                })
                .await?;
            let policies = [
                recommended_at(&["issue", "recommended", "policy"], accepted.issue.as_ref()),
                (
                    &["policy", "policy"][..],
                    accepted.policy.as_ref().and_then(|m| m.policy.as_ref()),
                ),
            ];
            if !policy_view::structured(global.output, &accepted, &policies)? {
                let issue = accepted.issue.unwrap_or_default();
                outln!(
                    "{} accepted: policy {} created ({}); see `tero impact {}` once edges report",
                    issue.id,
                    issue.policy_id,
                    mode.as_str(),
                    issue.policy_id
                );
            }
        }
        IssuesCommand::Ignore { id, reason } => {
            let issue = client.ignore_issue(&id, &reason).await?;
            if !structured(global.output, &issue)? {
                outln!(
                    "{} ignored by {}: {}",
                    issue.id,
                    issue.ignored_by,
                    issue.ignored_reason
                );
            }
        }
    }
    Ok(())
}

/// `tero impact [POLICY_ID]`.
pub async fn impact(policy_id: Option<String>, global: &Global) -> anyhow::Result<()> {
    let client = global.client()?;
    let impacts = client.impact(policy_id.as_deref().unwrap_or("")).await?;
    if structured(global.output, &impacts)? {
        return Ok(());
    }
    print_impacts(&impacts);
    Ok(())
}

fn cost(issue: &Issue) -> String {
    issue
        .estimate
        .as_ref()
        .map_or("-".into(), |e| format!("${:.2}", e.cost_per_month))
}

pub(crate) fn print_list(issues: &[Issue]) {
    let mut table = Table::new(&[
        "ID",
        "SEVERITY",
        "STATUS",
        "KIND",
        "SERVICE",
        "SUBJECT",
        "COST/MONTH",
        "POLICY",
    ]);
    for issue in issues {
        table.row(vec![
            issue.id.clone(),
            issue.severity.clone(),
            issue.status.clone(),
            issue.kind.clone(),
            issue.service.clone(),
            issue.subject.clone(),
            cost(issue),
            dash(&issue.policy_id),
        ]);
    }
    table.print();
}

fn dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

/// Where an issue holds its recommended policy, for `-o yaml`.
fn recommended(issue: &Issue) -> Vec<PolicyAt<'_>> {
    vec![recommended_at(&["recommended", "policy"], Some(issue))]
}

fn recommended_at<'a>(at: &'a [&'a str], issue: Option<&'a Issue>) -> PolicyAt<'a> {
    let policy = issue.and_then(|i| i.recommended.as_ref()?.policy.as_ref());
    (at, policy)
}

fn print_issue(issue: &Issue) -> anyhow::Result<()> {
    outln!("{}  {}", issue.id, issue.title);
    outln!("{}", issue.summary);
    outln!();
    let mut table = Table::new(&["FIELD", "VALUE"]);
    let mut row = |k: &str, v: String| table.row(vec![k.into(), v]);
    row("kind", issue.kind.clone());
    row("domain", issue.domain.clone());
    row("severity", issue.severity.clone());
    row("status", issue.status.clone());
    row("remediation", dash(&issue.remediation));
    row("service", issue.service.clone());
    row("subject", issue.subject.clone());
    row("opened", output::time(issue.opened_at_unix_ms));
    row("policy", dash(&issue.policy_id));
    if !issue.ignored_by.is_empty() {
        row(
            "ignored",
            format!("by {}: {}", issue.ignored_by, issue.ignored_reason),
        );
    }
    if !issue.resolution.is_empty() {
        row("resolution", issue.resolution.clone());
    }
    if let Some(e) = &issue.estimate {
        row(
            "estimate",
            format!(
                "{} series, {}/day, ${:.2}/month ({} confidence)",
                e.series,
                output::bytes(e.bytes_per_day as i64),
                e.cost_per_month,
                e.confidence
            ),
        );
    }
    table.print();
    if let Some(e) = &issue.evidence {
        outln!();
        outln!("Evidence");
        outln!(
            "  {} series, {} per scrape, {:.1} scrapes/min",
            e.series,
            output::bytes(e.sample_bytes_per_scrape as i64),
            e.scrapes_per_minute
        );
        for label in &e.labels {
            outln!(
                "  label {}: {} distinct values{}, e.g. {}",
                label.name,
                label.cardinality,
                if label.used_in_queries {
                    " (used in queries)"
                } else {
                    ""
                },
                label.examples.join(", ")
            );
        }
        for line in &e.example_series {
            outln!("  {line}");
        }
        for note in &e.notes {
            outln!("  {note}");
        }
        if e.usage_sources.is_empty() {
            outln!("  usage sources consulted: none");
        } else {
            outln!("  usage sources consulted: {}", e.usage_sources.join(", "));
        }
        for used in &e.used_in {
            outln!("  used in {used}");
        }
    }
    if let Some(p) = &issue.provenance {
        outln!();
        outln!(
            "Provenance: detector {} ({}), {} instance(s), inventory {} – {}",
            p.detector,
            p.thresholds.join(", "),
            p.instances.len(),
            output::time(p.inventory_from_unix_ms),
            output::time(p.inventory_to_unix_ms)
        );
    }
    if let Some(policy) = issue.recommended.as_ref().and_then(|r| r.policy.as_ref()) {
        outln!();
        outln!(
            "Recommended policy (`tero issues accept {}` creates it):",
            issue.id
        );
        out!("{}", crate::policy_view::file_yaml(policy));
    }
    Ok(())
}

pub(crate) fn print_impacts(impacts: &[PolicyImpact]) {
    let mut table = Table::new(&[
        "POLICY",
        "ISSUE",
        "MODE",
        "SCRAPES",
        "DROPPED/SCRAPE",
        "DROPPED/DAY",
        "ESTIMATE/DAY",
        "RATIO",
        "VERDICT",
    ]);
    for impact in impacts {
        let estimate = impact.estimate.as_ref().map_or(0, |e| e.bytes_per_day);
        table.row(vec![
            impact.policy_id.clone(),
            impact.issue_id.clone(),
            impact.mode.clone(),
            impact.scrapes.to_string(),
            output::bytes(impact.dropped_bytes_per_scrape as i64),
            output::bytes(impact.dropped_bytes_per_day as i64),
            output::bytes(estimate as i64),
            format!("{:.0}%", impact.ratio * 100.0),
            impact.verdict.clone(),
        ]);
    }
    table.print();
}

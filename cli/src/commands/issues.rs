//! `tero issues list|show|accept|ignore` and `tero impact`: what the
//! detectors found, turning a finding into a policy, and what that policy
//! measurably changed.

use clap::{Subcommand, ValueEnum};
use tero_sdk::proto::controlplane::{
    AcceptIssueRequest, Evidence, Issue, ListIssuesRequest, ListIssuesResponse, PolicyImpact,
    Provenance,
};

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
        /// open, in_progress, resolved, ignored, merged, several separated
        /// by commas, or all. Default: open,in_progress (what still needs
        /// someone).
        #[arg(long, default_value = "open,in_progress")]
        status: String,
        /// A detector, e.g. unused_metric, high_cardinality_label,
        /// debug_logs, health_check_spans or sensitive_log_data.
        #[arg(long)]
        kind: Option<String>,
    },
    /// Shows an issue: evidence, provenance, estimate and the recommended
    /// policy.
    Show { id: String },
    /// Creates the issue's recommended policy, linked to the issue. In
    /// shadow by default: edges count what it would drop and drop nothing,
    /// so `tero impact` shows the effect before anything is removed.
    Accept {
        id: String,
        /// shadow: delivered and counted as "would drop", never enforced;
        /// active: enforced now; draft: created disabled for review.
        #[arg(long, value_enum, default_value = "shadow")]
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
            let listed = client
                .list_issues_response(ListIssuesRequest {
                    service: service.unwrap_or_default(),
                    status: status.clone(),
                    kind: kind.unwrap_or_default(),
                })
                .await?;
            if !policy_view::structured_each(global.output, &listed.issues, recommended)? {
                if listed.issues.is_empty() {
                    outln!("{}", why_empty(&listed, &status, now_ms()));
                } else {
                    print_list(&listed.issues);
                    if let Some(hidden) = hidden_note(&listed, &status) {
                        outln!("{hidden}");
                    }
                }
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
                // An accept either creates the policy or, promoting a
                // shadowed issue, updates it: a policy re-created after a
                // delete continues its revisions, so only an update tells.
                let promoted = accepted
                    .policy
                    .as_ref()
                    .is_some_and(|p| p.updated_at_unix_ms > p.created_at_unix_ms);
                let issue = accepted.issue.unwrap_or_default();
                outln!("{}", accepted_message(&issue, mode, promoted));
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whether `status` (the `--status` value) is the default filter.
fn default_filter(status: &str) -> bool {
    status == "open,in_progress"
}

/// Why a list came back empty, from what the control plane knows: no
/// inventory yet, none recent, a filter hiding issues, no usage source, or
/// nothing found.
fn why_empty(listed: &ListIssuesResponse, status: &str, now: i64) -> String {
    const FIRST_REPORT: &str = "Edges send their first inventory about 10 s after their first \
        scrape, then every inventory.interval_secs (default 300 s); `tero edges` shows which are \
        connected.";
    if listed.last_inventory_unix_ms == 0 {
        return format!("No issues: no edge has reported an inventory yet. {FIRST_REPORT}");
    }
    let last = format!(
        "the last inventory arrived {} ago",
        ago(now - listed.last_inventory_unix_ms)
    );
    if listed.inventoried_services == 0 {
        return format!(
            "No issues: no inventory recent enough to analyse for the service(s) listed \
             ({last}, from any service). {FIRST_REPORT}"
        );
    }
    let hidden: u32 = listed.status_counts.values().sum();
    if hidden > 0 {
        let all = if default_filter(status) {
            "no open or in-progress issues"
        } else {
            "no issues with that status"
        };
        return format!(
            "No issues shown: {all}; {}. `tero issues list --status all` lists them.",
            counts(listed)
        );
    }
    let services = listed.inventoried_services;
    let services = format!("{services} service{}", if services == 1 { "" } else { "s" });
    if listed.usage_sources == 0 {
        return format!(
            "No issues found in {services} ({last}). No usage source is imported, so no \
             metric can be called unused: `tero usage import FILE|DIR` (Prometheus rules, Grafana \
             dashboards)."
        );
    }
    format!("Nothing found: the detectors found no issue in {services} ({last}).")
}

/// `2 resolved, 1 merged`, from the counts per status.
fn counts(listed: &ListIssuesResponse) -> String {
    listed
        .status_counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(status, n)| format!("{n} {status}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Under a default list: how many issues the filter hid, if any.
fn hidden_note(listed: &ListIssuesResponse, status: &str) -> Option<String> {
    if !default_filter(status) {
        return None;
    }
    let shown = listed.issues.len() as u32;
    let total: u32 = listed.status_counts.values().sum();
    (total > shown).then(|| {
        format!(
            "({} more not shown: {}; `--status all` lists them)",
            total - shown,
            listed
                .status_counts
                .iter()
                .filter(|(s, n)| **n > 0 && !["open", "in_progress"].contains(&s.as_str()))
                .map(|(s, n)| format!("{n} {s}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// `45 s`, `3 min`, `2 h`, `4 d`.
fn ago(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        7200..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// What `accept` did, in the words `tero impact` uses.
fn accepted_message(issue: &Issue, mode: AcceptMode, promoted: bool) -> String {
    let policy = &issue.policy_id;
    if promoted {
        return format!(
            "{}: policy {policy} is now active (edges drop what it matches); its impact is \
             measured anew: `tero impact {policy}`.",
            issue.id
        );
    }
    match mode {
        AcceptMode::Shadow => format!(
            "{} accepted in shadow: policy {policy} created; edges count what it would drop and \
             drop nothing. `tero impact {policy}` shows the would-drop figures once edges \
             report; enforce it with `tero issues accept {} --mode active`.",
            issue.id, issue.id
        ),
        AcceptMode::Active => format!(
            "{} accepted: policy {policy} created, active (edges drop what it matches). \
             `tero impact {policy}` shows what it dropped once edges report.",
            issue.id
        ),
        AcceptMode::Draft => format!(
            "{} accepted as a draft: policy {policy} created disabled; nothing is delivered \
             until `tero policy enable {policy}`.",
            issue.id
        ),
    }
}

fn cost(issue: &Issue) -> String {
    issue
        .estimate
        .as_ref()
        .map_or("-".into(), |e| format!("${:.2}", e.cost_per_month))
}

/// Characters of a log template shown in a list's SUBJECT column.
const SUBJECT_CHARS: usize = 60;

/// What an issue is about, as a list shows it: a metric family (and
/// label) as is; a log or span event type by its template (its subject is
/// a fingerprint, which says nothing to a reader); a field finding by the
/// field and the template it was found in.
fn subject(issue: &Issue) -> String {
    let template = issue
        .evidence
        .as_ref()
        .map(|e| e.template.as_str())
        .unwrap_or_default();
    if template.is_empty() {
        return issue.subject.clone();
    }
    let template = cut(template, SUBJECT_CHARS);
    if issue.subject == "body" || issue.subject.starts_with("attribute:") {
        format!("{} in {template}", issue.subject)
    } else {
        template
    }
}

/// `s` cut to `max` characters, with an ellipsis when cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Log and span findings carry their template or measured records; metric
/// findings never do.
fn is_event_evidence(e: &Evidence) -> bool {
    !e.template.is_empty() || e.records_per_day > 0 || !e.category.is_empty()
}

/// The evidence of a log or span finding, one fact per line.
fn render_event_evidence(e: &Evidence) -> String {
    let one_line = |s: &str| output::escape_terminal(s, output::Keep::Nothing).into_owned();
    let mut lines = Vec::new();
    if !e.template.is_empty() {
        lines.push(format!("  template: {}", one_line(&e.template)));
    }
    let share = if e.volume_share > 0.0 {
        format!(", {:.1}% of the service's records", e.volume_share * 100.0)
    } else {
        String::new()
    };
    lines.push(format!(
        "  {} records/day, {}/day{share}",
        e.records_per_day,
        output::bytes(i64::try_from(e.bytes_per_day).unwrap_or(i64::MAX))
    ));
    if !e.severities.is_empty() {
        lines.push(format!("  severities: {}", e.severities.join(", ")));
    }
    if !e.category.is_empty() {
        let mut classified = format!(
            "  classified {} / {} (confidence {:.2})",
            e.category, e.verdict, e.confidence
        );
        if !e.rationale.is_empty() {
            classified.push_str(": ");
            classified.push_str(&one_line(&e.rationale));
        }
        lines.push(classified);
    }
    for s in &e.sensitive {
        let example = if s.example.is_empty() {
            String::new()
        } else {
            format!(", e.g. {}", one_line(&s.example))
        };
        lines.push(format!(
            "  sensitive: {} in {} on {} records{example}",
            s.kind, s.location, s.records
        ));
    }
    for d in &e.duplicate_fields {
        lines.push(format!(
            "  duplicate field: {} repeats {} on {} records ({} removable)",
            d.duplicate,
            d.keep,
            d.records,
            output::bytes(i64::try_from(d.bytes).unwrap_or(i64::MAX))
        ));
    }
    if !e.edges.is_empty() {
        lines.push(format!("  edges: {}", e.edges.join(", ")));
    }
    if !e.example_records.is_empty() {
        lines.push("  examples (redacted at the edge):".to_owned());
        for example in &e.example_records {
            lines.push(format!("    {}", one_line(example)));
        }
    }
    for note in &e.notes {
        lines.push(format!("  {note}"));
    }
    lines.join("\n")
}

/// Where a finding came from: the detector and, for log and span
/// findings, the classifier and run that decided them.
fn render_provenance(p: &Provenance) -> String {
    let mut line = format!("Provenance: detector {}", p.detector);
    if !p.thresholds.is_empty() {
        line.push_str(&format!(" ({})", p.thresholds.join(", ")));
    }
    if !p.classifier.is_empty() {
        line.push_str(&format!(
            ", classified by {} in run {}",
            p.classifier, p.classification_run
        ));
    }
    let (from, to) = (p.inventory_from_unix_ms, p.inventory_to_unix_ms);
    if p.classifier.is_empty() {
        line.push_str(&format!(
            ", {} instance(s), inventory {} – {}",
            p.instances.len(),
            output::time(from),
            output::time(to)
        ));
    } else {
        line.push_str(&format!(
            ", window {} – {}",
            output::time(from),
            output::time(to)
        ));
    }
    line
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
            subject(issue),
            cost(issue),
            output::dash(&issue.policy_id),
        ]);
    }
    table.print();
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
    if !issue.merged_into.is_empty() {
        row("merged into", issue.merged_into.clone());
    }
    row("remediation", output::dash(&issue.remediation));
    row("service", issue.service.clone());
    row("subject", issue.subject.clone());
    row("opened", output::time(issue.opened_at_unix_ms));
    row("updated", output::time(issue.updated_at_unix_ms));
    if issue.resolved_at_unix_ms > 0 {
        row("resolved", output::time(issue.resolved_at_unix_ms));
    }
    row("policy", output::dash(&issue.policy_id));
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
        let what = if e.records_per_day > 0 || e.series == 0 {
            format!("{} records/day", e.records_per_day)
        } else {
            format!("{} series", e.series)
        };
        row(
            "estimate",
            format!(
                "{what}, {}/day, ${:.2}/month ({} confidence)",
                output::bytes(e.bytes_per_day as i64),
                e.cost_per_month,
                e.confidence
            ),
        );
    }
    table.print();
    if let Some(e) = issue.evidence.as_ref().filter(|e| is_event_evidence(e)) {
        outln!();
        outln!("Evidence");
        outln!("{}", render_event_evidence(e));
    } else if let Some(e) = &issue.evidence {
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
        outln!("{}", render_provenance(p));
    }
    outln!();
    match issue.recommended.as_ref().and_then(|r| r.policy.as_ref()) {
        _ if issue.status == "merged" => outln!(
            "Merged into {}: accept that issue instead (`tero issues show {}`).",
            issue.merged_into,
            issue.merged_into
        ),
        None if issue.evidence.as_ref().is_some_and(is_event_evidence) => {
            outln!("No recommended policy; the summary says why.")
        }
        None => outln!(
            "No recommended policy: dropping these series would remove data that queries read \
             or may read; the summary says what to do instead."
        ),
        Some(policy) => {
            outln!(
                "Recommended policy (`tero issues accept {}` creates it, in shadow):",
                issue.id
            );
            out!("{}", crate::policy_view::file_yaml(policy));
        }
    }
    Ok(())
}

/// One table; a shadow policy's figures are what it would drop (it drops
/// nothing), so they read "would drop …" and its verdict never "verified".
pub(crate) fn print_impacts(impacts: &[PolicyImpact]) {
    outln!("{}", render_impacts(impacts));
}

fn render_impacts(impacts: &[PolicyImpact]) -> String {
    let (events, metrics): (Vec<&PolicyImpact>, Vec<&PolicyImpact>) = impacts
        .iter()
        .partition(|i| i.signal == "log" || i.signal == "trace");
    let mut tables = Vec::new();
    if !metrics.is_empty() || events.is_empty() {
        tables.push(render_metric_impacts(&metrics));
    }
    if !events.is_empty() {
        tables.push(render_event_impacts(&events));
    }
    tables.join("\n\n")
}

/// `12.5%`, or `-` when unset (no edge of the service reported volume).
fn share(share: Option<f64>) -> String {
    share.map_or("-".into(), |s| format!("{:.1}%", s * 100.0))
}

/// Log and trace policies: records (log records, spans) per minute and per
/// day rather than per scrape, and the share of the service's records.
fn render_event_impacts(impacts: &[&PolicyImpact]) -> String {
    let mut table = Table::new(&[
        "POLICY",
        "ISSUE",
        "SIGNAL",
        "MODE",
        "MEASURED SINCE",
        "MINUTES",
        "RECORDS/MIN",
        "RECORDS/DAY",
        "BYTES/DAY",
        "ESTIMATE/DAY",
        "SHARE BEFORE",
        "SHARE DROPPED",
        "RATIO",
        "VERDICT",
    ]);
    for impact in impacts {
        let estimate = impact.estimate.as_ref().map_or(0, |e| e.records_per_day);
        let would = if impact.mode == "shadow" {
            "would drop "
        } else {
            ""
        };
        table.row(vec![
            impact.policy_id.clone(),
            impact.issue_id.clone(),
            impact.signal.clone(),
            impact.mode.clone(),
            output::time(impact.measured_since_unix_ms),
            format!("{:.0}", impact.minutes_measured),
            format!("{would}{:.1}", impact.records_per_minute),
            format!("{would}{}", impact.records_dropped_per_day),
            format!(
                "{would}{}",
                output::bytes(i64::try_from(impact.dropped_bytes_per_day).unwrap_or(i64::MAX))
            ),
            estimate.to_string(),
            share(impact.volume_share_before),
            share(impact.volume_share_dropped),
            format!("{:.0}%", impact.ratio * 100.0),
            verdict_words(impact),
        ]);
    }
    table.render().trim_end().to_owned()
}

fn render_metric_impacts(impacts: &[&PolicyImpact]) -> String {
    let mut table = Table::new(&[
        "POLICY",
        "ISSUE",
        "MODE",
        "MEASURED SINCE",
        "SCRAPES",
        "DROPPED/SCRAPE",
        "DROPPED/DAY",
        "ESTIMATE/DAY",
        "RATIO",
        "VERDICT",
    ]);
    for impact in impacts {
        let estimate = impact.estimate.as_ref().map_or(0, |e| e.bytes_per_day);
        let shadow = impact.mode == "shadow";
        let figure = |bytes: u64| {
            let bytes = output::bytes(bytes as i64);
            if shadow {
                format!("would drop {bytes}")
            } else {
                bytes
            }
        };
        table.row(vec![
            impact.policy_id.clone(),
            impact.issue_id.clone(),
            impact.mode.clone(),
            output::time(impact.measured_since_unix_ms),
            impact.scrapes.to_string(),
            figure(impact.dropped_bytes_per_scrape),
            figure(impact.dropped_bytes_per_day),
            output::bytes(estimate as i64),
            format!("{:.0}%", impact.ratio * 100.0),
            verdict_words(impact),
        ]);
    }
    table.render().trim_end().to_owned()
}

/// The verdict as a reader should take it: a shadow policy is never
/// "verified", whatever an older control plane says, and a measurement that
/// has counted nothing yet says when it starts (after a promotion or a
/// re-enable that can be up to 90 s away).
fn verdict_words(impact: &PolicyImpact) -> String {
    let counted_nothing = if impact.signal == "log" || impact.signal == "trace" {
        impact.minutes_measured == 0.0
    } else {
        impact.scrapes == 0
    };
    match (impact.mode.as_str(), impact.verdict.as_str()) {
        (_, "measuring") if counted_nothing && impact.measured_since_unix_ms > 0 => {
            // The date is in MEASURED SINCE; the time is what one waits for.
            let time = output::time(impact.measured_since_unix_ms);
            let clock = time.split_once(' ').map_or(time.as_str(), |(_, t)| t);
            format!("measuring from {clock}")
        }
        ("shadow", "verified" | "would_meet_estimate") => "would meet estimate".into(),
        ("shadow", "below_estimate" | "would_fall_below_estimate") => {
            "would fall below estimate".into()
        }
        (_, v) => v.replace('_', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(counts: &[(&str, u32)], usage: u32, last: i64, services: u32) -> ListIssuesResponse {
        ListIssuesResponse {
            issues: Vec::new(),
            status_counts: counts.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect(),
            usage_sources: usage,
            last_inventory_unix_ms: last,
            inventoried_services: services,
        }
    }

    const NOW: i64 = 1_800_000_000_000;
    const DEFAULT: &str = "open,in_progress";

    #[test]
    fn an_empty_list_says_why() {
        let none_yet = why_empty(&listed(&[], 0, 0, 0), DEFAULT, NOW);
        assert!(
            none_yet.contains("no edge has reported an inventory yet")
                && none_yet.contains("first inventory about 10 s after"),
            "{none_yet}"
        );
        let stale = why_empty(&listed(&[], 1, NOW - 3 * 3_600_000, 0), DEFAULT, NOW);
        assert!(
            stale.contains("no inventory recent enough")
                && stale.contains("the last inventory arrived 3 h ago"),
            "{stale}"
        );
        let hidden = why_empty(
            &listed(&[("merged", 1), ("resolved", 2)], 1, NOW - 5_000, 1),
            DEFAULT,
            NOW,
        );
        assert!(
            hidden.contains("no open or in-progress issues; 1 merged, 2 resolved")
                && hidden.contains("--status all"),
            "{hidden}"
        );
        let no_usage = why_empty(&listed(&[], 0, NOW - 5_000, 2), DEFAULT, NOW);
        assert!(
            no_usage.contains("2 services (the last inventory arrived 5 s ago)")
                && no_usage.contains("No usage source is imported"),
            "{no_usage}"
        );
        let nothing = why_empty(&listed(&[], 1, NOW - 5_000, 1), DEFAULT, NOW);
        assert!(nothing.starts_with("Nothing found"), "{nothing}");
    }

    #[test]
    fn a_default_list_counts_what_it_hid() {
        let mut l = listed(&[("open", 1), ("merged", 2), ("ignored", 1)], 1, NOW, 1);
        l.issues.push(Issue::default());
        assert_eq!(
            hidden_note(&l, DEFAULT).as_deref(),
            Some("(3 more not shown: 1 ignored, 2 merged; `--status all` lists them)")
        );
        assert_eq!(hidden_note(&l, "all"), None);
    }

    fn impact(mode: &str, verdict: &str) -> PolicyImpact {
        PolicyImpact {
            policy_id: "p".into(),
            issue_id: "ISS-1".into(),
            mode: mode.into(),
            scrapes: 10,
            dropped_bytes_per_scrape: 2048,
            dropped_bytes_per_day: 3 * 1024 * 1024,
            ratio: 1.0,
            verdict: verdict.into(),
            ..Default::default()
        }
    }

    #[test]
    fn shadow_figures_read_would_drop_and_are_never_verified() {
        let table = render_impacts(&[impact("shadow", "verified")]);
        assert!(
            table.contains("would drop 2.0 KiB") && table.contains("would drop 3.0 MiB"),
            "{table}"
        );
        assert!(!table.contains("verified"), "{table}");
        assert!(table.contains("would meet estimate"), "{table}");
        let active = render_impacts(&[impact("active", "verified")]);
        assert!(
            !active.contains("would") && active.contains("verified"),
            "{active}"
        );
    }

    #[test]
    fn a_measurement_that_counted_nothing_yet_says_when_it_starts() {
        let from = 1_796_093_460_000; // 2026-12-01 02:51:00Z
        let waiting = PolicyImpact {
            scrapes: 0,
            measured_since_unix_ms: from,
            ..impact("active", "measuring")
        };
        let table = render_impacts(std::slice::from_ref(&waiting));
        let (head, row) = table.split_once('\n').expect("a header and a row");
        let column = head.find("MEASURED SINCE").expect("column");
        assert_eq!(&row[column..column + 20], "2026-12-01 02:51:00Z", "{table}");
        assert!(table.contains("measuring from 02:51:00Z"), "{table}");
        // Once it counts, the verdict is the control plane's word again.
        let counting = render_impacts(&[PolicyImpact {
            scrapes: 2,
            ..waiting.clone()
        }]);
        assert!(
            counting.contains("measuring") && !counting.contains("measuring from"),
            "{counting}"
        );
        // An older control plane sends no window: nothing is invented.
        let older = render_impacts(&[PolicyImpact {
            measured_since_unix_ms: 0,
            ..waiting
        }]);
        assert!(
            older.contains("measuring") && !older.contains("measuring from"),
            "{older}"
        );
    }

    fn log_evidence() -> Evidence {
        use tero_sdk::proto::controlplane::{DuplicateField, SensitiveFinding};
        Evidence {
            template: "GET /healthz <num>".into(),
            example_records: vec!["GET /healthz 200".into(), "bad\x1b[2Jline\nforged".into()],
            severities: vec!["INFO".into()],
            edges: vec!["edge-a".into(), "edge-b".into()],
            records_per_day: 86_400,
            bytes_per_day: 8_640_000,
            category: "health_check".into(),
            verdict: "waste".into(),
            confidence: 0.93,
            rationale: "kube-probe user agent on /healthz".into(),
            sensitive: vec![SensitiveFinding {
                kind: "email".into(),
                location: "attribute:user".into(),
                records: 12,
                example: "login by <email>".into(),
            }],
            duplicate_fields: vec![DuplicateField {
                keep: "attribute:user_id".into(),
                duplicate: "attribute:userId".into(),
                records: 40,
                bytes: 2048,
            }],
            volume_share: 0.25,
            ..Default::default()
        }
    }

    #[test]
    fn log_evidence_shows_what_the_finding_rests_on_one_line_each() {
        let text = render_event_evidence(&log_evidence());
        for expected in [
            "template: GET /healthz <num>",
            "86400 records/day, 8.2 MiB/day, 25.0% of the service's records",
            "severities: INFO",
            "classified health_check / waste (confidence 0.93): kube-probe user agent on /healthz",
            "sensitive: email in attribute:user on 12 records, e.g. login by <email>",
            "duplicate field: attribute:userId repeats attribute:user_id on 40 records (2.0 KiB removable)",
            "edges: edge-a, edge-b",
            "    GET /healthz 200",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
        // An example cannot forge a line or drive the terminal.
        assert!(!text.contains('\x1b'), "{text}");
        assert!(text.contains("bad\\u{1b}[2Jline\\nforged"), "{text}");
        assert!(is_event_evidence(&log_evidence()));
        assert!(!is_event_evidence(&Evidence {
            series: 10,
            ..Default::default()
        }));
    }

    #[test]
    fn provenance_names_the_classifier_and_run_of_log_findings() {
        let log = render_provenance(&Provenance {
            detector: "health_check_logs".into(),
            classifier: "embedded/1".into(),
            classification_run: 7,
            ..Default::default()
        });
        assert!(
            log.contains("detector health_check_logs, classified by embedded/1 in run 7"),
            "{log}"
        );
        let metric = render_provenance(&Provenance {
            detector: "unused_metric".into(),
            thresholds: vec!["high_cardinality=1000".into()],
            instances: vec!["i".into()],
            ..Default::default()
        });
        assert!(
            metric.contains("(high_cardinality=1000), 1 instance(s), inventory"),
            "{metric}"
        );
    }

    #[test]
    fn a_list_names_log_issues_by_template_and_field() {
        let mut issue = Issue {
            kind: "health_check_logs".into(),
            subject: "3f9a0c".into(),
            evidence: Some(log_evidence()),
            ..Default::default()
        };
        assert_eq!(subject(&issue), "GET /healthz <num>");
        issue.subject = "attribute:user".into();
        assert_eq!(subject(&issue), "attribute:user in GET /healthz <num>");
        issue.evidence.as_mut().unwrap().template = "x".repeat(100);
        assert_eq!(
            subject(&issue).chars().count(),
            "attribute:user in ".len() + 60
        );
        let metric = Issue {
            subject: "http_requests_total{path}".into(),
            ..Default::default()
        };
        assert_eq!(subject(&metric), "http_requests_total{path}");
    }

    #[test]
    fn log_impacts_show_records_per_minute_and_day_and_volume_shares() {
        use tero_sdk::proto::controlplane::ImpactEstimate;
        let log = PolicyImpact {
            policy_id: "drop-healthz".into(),
            issue_id: "ISS-9".into(),
            mode: "active".into(),
            signal: "log".into(),
            minutes_measured: 10.0,
            records_dropped: 600,
            records_per_minute: 60.0,
            records_dropped_per_day: 86_400,
            dropped_bytes_per_day: 8 * 1024 * 1024,
            volume_share_before: Some(0.25),
            volume_share_dropped: Some(0.249),
            estimate: Some(ImpactEstimate {
                records_per_day: 86_400,
                ..Default::default()
            }),
            ratio: 1.0,
            verdict: "verified".into(),
            ..Default::default()
        };
        let table = render_impacts(&[impact("active", "verified"), log.clone()]);
        let (metrics, logs) = table.split_once("\n\n").expect("two tables");
        assert!(
            metrics.contains("SCRAPES") && !metrics.contains("drop-healthz"),
            "{table}"
        );
        assert!(
            logs.contains("RECORDS/MIN") && logs.contains("SHARE DROPPED"),
            "{table}"
        );
        let row = logs.lines().nth(1).expect("a row");
        for cell in [
            "log", "60.0", "86400", "8.0 MiB", "25.0%", "24.9%", "100%", "verified",
        ] {
            assert!(row.contains(cell), "{cell:?} missing from {row}");
        }
        let shadow = render_impacts(&[PolicyImpact {
            mode: "shadow".into(),
            volume_share_before: None,
            volume_share_dropped: None,
            ..log
        }]);
        assert!(
            shadow.contains("would drop 60.0") && shadow.contains("would meet estimate"),
            "{shadow}"
        );
        assert!(!shadow.contains("SCRAPES"), "only log policies: one table");
        assert!(
            shadow.lines().nth(1).unwrap().contains(" - "),
            "no volume: {shadow}"
        );
    }

    #[derive(clap::Parser)]
    struct Wrap {
        #[command(subcommand)]
        cmd: IssuesCommand,
    }

    fn parse(args: &[&str]) -> IssuesCommand {
        use clap::Parser;
        Wrap::try_parse_from(std::iter::once("issues").chain(args.iter().copied()))
            .expect("parses")
            .cmd
    }

    #[test]
    fn accept_defaults_to_shadow_and_list_to_what_needs_someone() {
        let IssuesCommand::Accept { mode, .. } = parse(&["accept", "ISS-1"]) else {
            panic!("accept");
        };
        assert_eq!(mode, AcceptMode::Shadow);
        let IssuesCommand::Accept { mode, .. } = parse(&["accept", "ISS-1", "--mode", "active"])
        else {
            panic!("accept");
        };
        assert_eq!(mode, AcceptMode::Active);
        let IssuesCommand::List { status, .. } = parse(&["list"]) else {
            panic!("list");
        };
        assert_eq!(status, "open,in_progress");
    }

    #[test]
    fn accept_says_what_each_mode_does() {
        let issue = Issue {
            id: "ISS-3".into(),
            policy_id: "p".into(),
            ..Default::default()
        };
        let shadow = accepted_message(&issue, AcceptMode::Shadow, false);
        assert!(
            shadow.contains("in shadow") && shadow.contains("would drop and drop nothing"),
            "{shadow}"
        );
        assert!(shadow.contains("--mode active"), "{shadow}");
        assert!(accepted_message(&issue, AcceptMode::Active, true).contains("now active"));
    }
}

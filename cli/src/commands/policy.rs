//! `tero policy …`

use std::path::PathBuf;

use anyhow::bail;
use clap::Subcommand;
use tero_sdk::proto::controlplane::{
    DeletePolicyRequest, ListPoliciesRequest, ManagedPolicy, PolicyRevision, ScopeMatcher,
    ScopeOperator, SetPolicyEnabledRequest,
};
use tero_sdk::proto::policy::policy::Target;

use crate::Global;
use crate::output::{self, Table, structured};
use crate::policy_files;
use crate::policy_view;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Creates or updates the policies in FILE|DIR, showing the diff first.
    Apply(super::apply::ApplyArgs),
    /// Shows what `apply` would change, and changes nothing.
    Diff(super::apply::DiffArgs),
    /// Lists policies.
    List {
        /// Only policies with this label (`key` or `key=value`); repeatable.
        #[arg(short, long = "label")]
        labels: Vec<String>,
        /// Only enabled (true) or disabled (false) policies.
        #[arg(long)]
        enabled: Option<bool>,
        /// Only policies for this signal: metric, log or trace.
        #[arg(long)]
        target: Option<String>,
    },
    /// Shows a policy: its state, and its spec as the YAML a policy file
    /// holds. With -o yaml, prints that file alone (`tero policy get ID -o
    /// yaml > f.yaml && tero policy apply -f f.yaml` changes nothing but
    /// the tero.source label); -o json prints the API's JSON.
    Get { id: String },
    /// Deletes a policy.
    Delete {
        id: String,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Enables a policy.
    Enable {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Disables a policy (edges stop applying it; it stays stored).
    Disable {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Lists a policy's revisions, newest first.
    History { id: String },
    /// Validates FILE|DIR locally, with the control plane's own checks.
    Validate {
        #[arg(short = 'f', long = "file", required = true, value_name = "FILE|DIR")]
        files: Vec<PathBuf>,
    },
    /// Evaluates policies on a saved scrape (or a live /metrics) and shows
    /// what they would drop. Needs no control plane.
    Test(super::test::TestArgs),
}

pub async fn run(cmd: PolicyCommand, global: &Global) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Apply(args) => super::apply::apply(args, global).await,
        PolicyCommand::Diff(args) => super::apply::diff(args, global).await,
        PolicyCommand::Validate { files } => validate(&files, global),
        PolicyCommand::Test(args) => super::test::run(args, global).await,
        PolicyCommand::List {
            labels,
            enabled,
            target,
        } => {
            let client = global.client()?;
            let policies = client
                .list_all_policies(ListPoliciesRequest {
                    labels,
                    target: target.unwrap_or_default(),
                    enabled,
                    page_size: 500,
                    page_token: String::new(),
                })
                .await?;
            if !policy_view::structured_each(global.output, &policies, policy_view::managed)? {
                print_policies(&policies);
            }
            Ok(())
        }
        PolicyCommand::Get { id } => {
            let managed = global.client()?.get_policy(&id).await?;
            match global.output {
                output::Format::Yaml => print_policy_file(&managed)?,
                _ if structured(global.output, &managed)? => {}
                _ => print_policy(&managed),
            }
            Ok(())
        }
        PolicyCommand::Delete { id, reason } => {
            let deleted = global
                .client()?
                .delete_policy(DeletePolicyRequest {
                    id: id.clone(),
                    expected_revision: 0,
                    reason,
                })
                .await?;
            if !structured(global.output, &deleted)? {
                crate::outln!("policy {id} deleted (revision {})", deleted.revision);
            }
            Ok(())
        }
        PolicyCommand::Enable { id, reason } => set_enabled(global, id, true, reason).await,
        PolicyCommand::Disable { id, reason } => set_enabled(global, id, false, reason).await,
        PolicyCommand::History { id } => {
            let revisions = global.client()?.policy_history(&id).await?;
            if !policy_view::structured_each(global.output, &revisions, revision_policy)? {
                let mut table = Table::new(&["REVISION", "ACTION", "AUTHOR", "AT", "REASON"]);
                for r in &revisions {
                    table.row(vec![
                        r.revision.to_string(),
                        r.action.clone(),
                        r.author.clone(),
                        output::time(r.at_unix_ms),
                        r.reason.clone(),
                    ]);
                }
                table.print();
            }
            Ok(())
        }
    }
}

async fn set_enabled(
    global: &Global,
    id: String,
    enabled: bool,
    reason: String,
) -> anyhow::Result<()> {
    let policy = global
        .client()?
        .set_policy_enabled(SetPolicyEnabledRequest {
            id: id.clone(),
            enabled,
            expected_revision: 0,
            reason,
        })
        .await?;
    if !policy_view::structured(global.output, &policy, &policy_view::managed(&policy))? {
        let state = if enabled { "enabled" } else { "disabled" };
        crate::outln!("policy {id} {state} (revision {})", policy.revision);
    }
    Ok(())
}

/// Where a revision holds its policy, for `-o yaml`.
fn revision_policy(r: &PolicyRevision) -> Vec<policy_view::PolicyAt<'_>> {
    vec![(&["policy"], r.policy.as_ref())]
}

/// The signal a policy applies to.
pub fn target_name(target: Option<&Target>) -> &'static str {
    match target {
        Some(Target::Metric(_)) => "metric",
        Some(Target::Log(_)) => "log",
        Some(Target::Trace(_)) => "trace",
        None => "-",
    }
}

/// What edges do with a policy, in the words of `tero issues accept
/// --mode`: `active` (enforced), `shadow` (counted as would-drop, never
/// enforced; the `tero.mode=shadow` label) or `disabled`.
pub fn mode(policy: &tero_sdk::proto::policy::Policy) -> &'static str {
    tero_sdk::engine::mode_word(policy.enabled, tero_sdk::engine::is_shadow(policy))
}

/// `key=a|b`, `key!=a|b`, `key` (exists) or `!key` (absent).
fn scope_matcher(m: &ScopeMatcher) -> String {
    let values = m.values.join("|");
    match ScopeOperator::try_from(m.operator).unwrap_or(ScopeOperator::Unspecified) {
        ScopeOperator::NotIn => format!("{}!={values}", m.key),
        ScopeOperator::Exists => m.key.clone(),
        ScopeOperator::NotExists => format!("!{}", m.key),
        ScopeOperator::In | ScopeOperator::Unspecified => format!("{}={values}", m.key),
    }
}

/// One line: `service.name=a|b,env` or `all`.
fn scope_text(managed: &ManagedPolicy) -> String {
    managed
        .scope
        .as_ref()
        .map(|s| {
            s.matchers
                .iter()
                .map(scope_matcher)
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "all".into())
}

/// `policy get`: the object's fields, then its spec in the authoring form.
fn print_policy(managed: &ManagedPolicy) {
    let policy = managed.policy.clone().unwrap_or_default();
    let by = |who: &str| {
        if who.is_empty() {
            String::new()
        } else {
            format!(" by {who}")
        }
    };
    let mut table = Table::new(&["FIELD", "VALUE"]);
    let mut row = |k: &str, v: String| table.row(vec![k.into(), v]);
    row("id", policy.id.clone());
    row("name", policy.name.clone());
    row("target", target_name(policy.target.as_ref()).into());
    row("enabled", policy.enabled.to_string());
    row("revision", managed.revision.to_string());
    row("scope", scope_text(managed));
    row(
        "source",
        super::apply::source_of(&policy).unwrap_or("-").to_owned(),
    );
    row(
        "created",
        output::time(managed.created_at_unix_ms) + &by(&managed.created_by),
    );
    row(
        "updated",
        output::time(managed.updated_at_unix_ms) + &by(&managed.updated_by),
    );
    table.print();
    crate::outln!(
        "\nSpec (the policy file; `tero policy get {} -o yaml` prints it alone):",
        policy.id
    );
    crate::out!(
        "{}",
        policy_view::indented(&policy_view::file_yaml(&policy), 2)
    );
}

/// `policy get -o yaml`: the policy as a file `apply -f` reads back, with
/// what the file cannot carry (revision, scope, owner) as comments.
fn print_policy_file(managed: &ManagedPolicy) -> anyhow::Result<()> {
    let policy = managed.policy.clone().unwrap_or_default();
    let comment = format!(
        "# tero policy get {}: revision {}, scope {}, source {}",
        policy.id,
        managed.revision,
        scope_text(managed),
        super::apply::source_of(&policy).unwrap_or("-"),
    );
    // One line whatever the values hold: a line break would end the comment.
    crate::outln!(
        "{}",
        output::escape_terminal(&comment, output::Keep::Nothing)
    );
    structured(
        output::Format::Yaml,
        &tero_sdk::policy::to_authoring(&policy_view::file_form(&policy)),
    )?;
    Ok(())
}

fn print_policies(policies: &[ManagedPolicy]) {
    let mut table = Table::new(&[
        "ID", "NAME", "TARGET", "MODE", "REVISION", "SCOPE", "UPDATED",
    ]);
    for managed in policies {
        let policy = managed.policy.clone().unwrap_or_default();
        let scope = scope_text(managed);
        let mode = mode(&policy);
        table.row(vec![
            policy.id,
            policy.name,
            target_name(policy.target.as_ref()).into(),
            mode.into(),
            managed.revision.to_string(),
            scope,
            output::time(managed.updated_at_unix_ms),
        ]);
    }
    table.print();
}

fn validate(files: &[PathBuf], global: &Global) -> anyhow::Result<()> {
    let loaded = policy_files::load(files);
    for w in &loaded.warnings {
        crate::errln!("warning: {w}");
    }
    let report = serde_json::json!({
        "valid": loaded.problems.is_empty(),
        "policies": loaded.policies.iter().map(|s| serde_json::json!({
            "id": s.policy.id, "file": s.path.display().to_string(),
        })).collect::<Vec<_>>(),
        "errors": loaded.problems,
    });
    if !structured(global.output, &report)? {
        for problem in &loaded.problems {
            crate::errln!("error: {problem}");
        }
        if loaded.problems.is_empty() {
            let n = loaded.policies.len();
            crate::outln!("{n} {} valid", if n == 1 { "policy" } else { "policies" });
        }
    }
    if !loaded.problems.is_empty() {
        bail!("{} problem(s) found", loaded.problems.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(op: ScopeOperator, values: &[&str]) -> ScopeMatcher {
        ScopeMatcher {
            key: "service.name".into(),
            operator: op as i32,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    #[test]
    fn scope_matchers_show_their_operator() {
        assert_eq!(
            scope_matcher(&matcher(ScopeOperator::In, &["a", "b"])),
            "service.name=a|b"
        );
        assert_eq!(
            scope_matcher(&matcher(ScopeOperator::NotIn, &["a"])),
            "service.name!=a"
        );
        assert_eq!(
            scope_matcher(&matcher(ScopeOperator::Exists, &[])),
            "service.name"
        );
        assert_eq!(
            scope_matcher(&matcher(ScopeOperator::NotExists, &[])),
            "!service.name"
        );
    }
}

//! `tero policy apply` and `tero policy diff`: declarative, like
//! `kubectl apply`. The files are the truth: a policy they hold is created
//! or updated to match; with `--prune`, a policy this source applied
//! earlier that the files no longer hold is deleted.
//!
//! Ownership is a label: every applied policy carries `tero.source=NAME`
//! (`--source`, default the first path's name), and `--prune` only ever
//! deletes policies with that label, so policies created elsewhere (by
//! hand, by another repository, from an accepted issue) are never touched.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use similar::{ChangeTag, TextDiff};
use tero_sdk::Policy;
use tero_sdk::client::{Client, ClientError};
use tero_sdk::proto::controlplane::{
    CreatePolicyRequest, DeletePolicyRequest, ListPoliciesRequest, ManagedPolicy,
    UpdatePolicyRequest,
};
use tero_sdk::proto::otel::{AnyValue, KeyValue, any_value};

use crate::Global;
use crate::output::{Table, structured};
use crate::policy_files::{self, Sourced};

/// The label that records which source applied a policy.
pub const SOURCE_LABEL: &str = "tero.source";

#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// Policy files or directories (YAML or JSON); repeatable.
    #[arg(short = 'f', long = "file", required = true, value_name = "FILE|DIR")]
    pub files: Vec<PathBuf>,
    /// Also delete policies this source applied that the files no longer
    /// hold. Needs --source, so that two repositories whose directories
    /// share a name can never prune each other's policies.
    #[arg(long, requires = "source")]
    pub prune: bool,
    /// The name this set of files is known by (the `tero.source` label);
    /// default: the first path's file or directory name. Required with
    /// --prune.
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub diff: DiffArgs,
    /// Show the diff and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Why, for the audit log.
    #[arg(long, default_value = "applied by tero policy apply")]
    pub reason: String,
}

/// What a change does, with exactly the policies it needs.
#[derive(Debug, Clone)]
enum Step {
    Create(Policy),
    Update {
        desired: Policy,
        current: Box<ManagedPolicy>,
    },
    Delete(ManagedPolicy),
}

impl Step {
    fn name(&self) -> &'static str {
        match self {
            Step::Create(_) => "create",
            Step::Update { .. } => "update",
            Step::Delete(_) => "delete",
        }
    }

    fn sign(&self) -> char {
        match self {
            Step::Create(_) => '+',
            Step::Update { .. } => '~',
            Step::Delete(_) => '-',
        }
    }
}

fn step_name<S: serde::Serializer>(step: &Step, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(step.name())
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Change {
    #[serde(rename = "action", serialize_with = "step_name")]
    step: Step,
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    diff: String,
}

fn source_name(args: &DiffArgs) -> anyhow::Result<String> {
    if let Some(source) = &args.source {
        return Ok(source.clone());
    }
    let first = &args.files[0];
    let absolute = std::fs::canonicalize(first).unwrap_or_else(|_| first.clone());
    let name = if absolute.is_dir() {
        absolute.file_name()
    } else {
        absolute.file_stem()
    };
    name.and_then(|n| n.to_str())
        .map(str::to_owned)
        .filter(|n| !n.is_empty())
        .context("cannot name this source from its path: pass --source NAME")
}

fn with_source(mut policy: Policy, source: &str) -> Policy {
    policy.labels.retain(|kv| kv.key != SOURCE_LABEL);
    policy.labels.push(KeyValue {
        key: SOURCE_LABEL.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(source.into())),
        }),
    });
    policy
}

pub fn source_of(policy: &Policy) -> Option<&str> {
    policy
        .labels
        .iter()
        .find(|kv| kv.key == SOURCE_LABEL)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

/// What is compared: the fields an author writes, in a stable order.
fn comparable(policy: &Policy) -> Policy {
    let mut p = policy.clone();
    p.created_at_unix_nano = 0;
    p.modified_at_unix_nano = 0;
    p.labels.sort_by(|a, b| a.key.cmp(&b.key));
    p
}

/// The policy as its file would hold it (the authoring YAML), so a diff
/// reads like an edit of the file.
fn render(policy: &Policy) -> String {
    tero_sdk::policy::to_authoring_yaml(&comparable(policy))
}

fn unified(old: &str, new: &str) -> String {
    let diff = TextDiff::from_lines(old, new);
    let mut out = String::new();
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            ChangeTag::Delete => '-',
            ChangeTag::Insert => '+',
            ChangeTag::Equal => ' ',
        };
        out.push(sign);
        out.push(' ');
        out.push_str(change.value());
        if !change.value().ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

fn prefixed(text: &str, sign: char) -> String {
    text.lines().map(|l| format!("{sign} {l}\n")).collect()
}

async fn plan(args: &DiffArgs, client: &Client) -> anyhow::Result<(String, Vec<Change>)> {
    let files = policy_files::load_valid(&args.files, "nothing was applied")?;
    let source = source_name(args)?;
    let current: BTreeMap<String, ManagedPolicy> = client
        .list_all_policies(ListPoliciesRequest {
            page_size: 500,
            ..Default::default()
        })
        .await?
        .into_iter()
        .filter_map(|m| Some((m.policy.as_ref()?.id.clone(), m)))
        .collect();

    let mut changes = Vec::new();
    let mut wanted = std::collections::BTreeSet::new();
    for Sourced { path, policy } in files {
        let desired = with_source(policy, &source);
        wanted.insert(desired.id.clone());
        let file = Some(path.display().to_string());
        match current.get(&desired.id) {
            None => changes.push(Change {
                id: desired.id.clone(),
                file,
                diff: prefixed(&render(&desired), '+'),
                step: Step::Create(desired),
            }),
            Some(existing) => {
                let have = existing.policy.clone().unwrap_or_default();
                if comparable(&have) != comparable(&desired) {
                    changes.push(Change {
                        id: desired.id.clone(),
                        file,
                        diff: unified(&render(&have), &render(&desired)),
                        step: Step::Update {
                            desired,
                            current: Box::new(existing.clone()),
                        },
                    });
                }
            }
        }
    }
    if args.prune {
        for (id, existing) in &current {
            let policy = existing.policy.clone().unwrap_or_default();
            if !wanted.contains(id) && source_of(&policy) == Some(source.as_str()) {
                changes.push(Change {
                    id: id.clone(),
                    file: None,
                    diff: prefixed(&render(&policy), '-'),
                    step: Step::Delete(existing.clone()),
                });
            }
        }
    }
    Ok((source, changes))
}

fn show(changes: &[Change], source: &str, global: &Global, applied: bool) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct Report<'a> {
        source: &'a str,
        applied: bool,
        changes: &'a [Change],
    }
    if structured(
        global.output,
        &Report {
            source,
            applied,
            changes,
        },
    )? {
        return Ok(());
    }
    if changes.is_empty() {
        crate::outln!("no changes (source {source})");
        return Ok(());
    }
    for change in changes {
        let sign = change.step.sign();
        let from = change
            .file
            .as_deref()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        crate::outln!("{sign} {} policy {}{from}", change.step.name(), change.id);
        crate::out!("{}", change.diff);
    }
    let mut table = Table::new(&["ACTION", "POLICY"]);
    for change in changes {
        table.row(vec![change.step.name().into(), change.id.clone()]);
    }
    crate::outln!();
    table.print();
    Ok(())
}

pub async fn diff(args: DiffArgs, global: &Global) -> anyhow::Result<()> {
    let client = global.client()?;
    let (source, changes) = plan(&args, &client).await?;
    show(&changes, &source, global, false)
}

pub async fn apply(args: ApplyArgs, global: &Global) -> anyhow::Result<()> {
    let client = global.client()?;
    let (source, changes) = plan(&args.diff, &client).await?;
    if args.dry_run {
        return show(&changes, &source, global, false);
    }
    // Shown first, so what changed is on the terminal even if a step fails.
    if global.output == crate::output::Format::Table {
        show(&changes, &source, global, false)?;
    }
    for (done, change) in changes.iter().enumerate() {
        if let Err(e) = execute(&client, change, &args.reason).await {
            let what = format!("{} policy {}", change.step.name(), change.id);
            if !e.outcome_unknown() {
                return Err(anyhow::Error::new(e).context(what));
            }
            // Every step is planned against what is stored, so a step that
            // did take effect is simply not planned again.
            anyhow::bail!(
                "{what}: {e}\n\
                 The outcome of this change is unknown ({done} of {} change(s) were applied before it, \
                 none after it was tried). Re-applying is safe: `tero policy apply` compares the \
                 files with what is stored and makes only the changes still missing.",
                changes.len()
            );
        }
    }
    match global.output {
        crate::output::Format::Table => {
            if !changes.is_empty() {
                crate::outln!("\napplied {} change(s)", changes.len());
            }
            Ok(())
        }
        _ => show(&changes, &source, global, true),
    }
}

async fn execute(client: &Client, change: &Change, reason: &str) -> Result<(), ClientError> {
    match &change.step {
        Step::Create(desired) => {
            client
                .create_policy(CreatePolicyRequest {
                    policy: Some(desired.clone()),
                    scope: None,
                    reason: reason.into(),
                })
                .await?;
        }
        Step::Update { desired, current } => {
            client
                .update_policy(UpdatePolicyRequest {
                    policy: Some(desired.clone()),
                    // The files carry no scope: keep the one it has.
                    scope: current.scope.clone(),
                    expected_revision: current.revision,
                    reason: reason.into(),
                })
                .await?;
        }
        Step::Delete(current) => {
            client
                .delete_policy(DeletePolicyRequest {
                    id: change.id.clone(),
                    expected_revision: current.revision,
                    reason: reason.into(),
                })
                .await?;
        }
    }
    Ok(())
}

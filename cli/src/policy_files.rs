//! Policy files as `apply`, `validate` and `test` read them: YAML or JSON
//! files, or directories of them (recursively, in name order), decoded and
//! validated exactly as the control plane does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tero_sdk::Policy;
use tero_sdk::policy::{load_file, validate};

/// A policy and the file it came from.
#[derive(Debug, Clone)]
pub struct Sourced {
    pub path: PathBuf,
    pub policy: Policy,
}

#[derive(Debug, Default)]
pub struct Loaded {
    pub policies: Vec<Sourced>,
    /// One line per invalid policy or unreadable file, naming the file,
    /// the policy and the field, as the control plane would.
    pub problems: Vec<String>,
    /// Keys that were not understood (not fatal).
    pub warnings: Vec<String>,
}

fn is_policy_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Every policy file under `paths`: files as given, directories walked.
fn files(paths: &[PathBuf], problems: &mut Vec<String>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut out, problems);
        } else if path.exists() {
            out.push(path.clone());
        } else {
            problems.push(format!("{}: no such file or directory", path.display()));
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, problems: &mut Vec<String>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(format!("{}: {e}", dir.display()));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, out, problems);
        } else if is_policy_file(&path) {
            out.push(path);
        }
    }
}

/// Loads and validates every policy under `paths`.
pub fn load(paths: &[PathBuf]) -> Loaded {
    let mut loaded = Loaded::default();
    for path in files(paths, &mut loaded.problems) {
        let shown = path.display().to_string();
        match load_file(&path) {
            Ok(doc) => {
                for rejected in doc.rejected {
                    loaded.problems.push(format!("{shown}: {rejected}"));
                }
                for warning in doc.warnings {
                    loaded.warnings.push(format!("{shown}: {warning}"));
                }
                loaded
                    .policies
                    .extend(doc.policies.into_iter().map(|policy| Sourced {
                        path: path.clone(),
                        policy,
                    }));
            }
            Err(e) => loaded.problems.push(format!("{shown}: {e}")),
        }
    }
    // Each policy is checked on its own (as the control plane checks it),
    // and ids must be unique across all the files. Problems name the file
    // the offending policy is in; a duplicate also names the file that
    // holds the id first (an index into the concatenated files would mean
    // nothing to the reader).
    let mut first_seen: HashMap<&str, &Path> = HashMap::new();
    for Sourced { path, policy } in &loaded.policies {
        let mut reasons: Vec<String> = match validate(policy) {
            Ok(()) => Vec::new(),
            Err(invalid) => invalid.errors.iter().map(|e| e.to_string()).collect(),
        };
        match first_seen.get(policy.id.as_str()) {
            Some(first) => reasons.push(format!(
                "id: duplicate id (also used in {})",
                first.display()
            )),
            None => {
                first_seen.insert(policy.id.as_str(), path.as_path());
            }
        }
        if !reasons.is_empty() {
            loaded.problems.push(format!(
                "{}: policy {:?} is invalid: {}",
                path.display(),
                policy.id,
                reasons.join("; ")
            ));
        }
    }
    loaded
}

/// [`load`] for commands that need every policy valid: prints warnings and
/// problems to stderr, and fails naming how many problems there were.
pub fn load_valid(paths: &[PathBuf], what_happens: &str) -> anyhow::Result<Vec<Sourced>> {
    let loaded = load(paths);
    for w in &loaded.warnings {
        crate::errln!("warning: {w}");
    }
    if !loaded.problems.is_empty() {
        for problem in &loaded.problems {
            crate::errln!("error: {problem}");
        }
        anyhow::bail!(
            "{} problem(s) in the policy files; {what_happens}",
            loaded.problems.len()
        );
    }
    Ok(loaded.policies)
}

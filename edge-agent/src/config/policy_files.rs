//! `--check-config`'s look at what the config references: each file
//! provider's policy file is read, decoded and compiled with the SDK, as
//! the running Edge would, so a missing file or an invalid regex is found
//! before a deploy rather than in a log line after it.
//!
//! At run time the same problems do not stop the Edge (a missing file may
//! appear later, an invalid policy is skipped and the rest run); a check
//! is asked for precisely to hear about them.

use std::path::Path;

use tero_sdk::policy::{InvalidPolicy, LoadError, RejectedPolicy, load_file, validate_all};

use super::{Config, ProviderConfig};

/// A problem in a referenced policy file, naming the provider, the file,
/// and for a policy its id and field.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("policy_providers[{index}] ({id}): {source}")]
    Unreadable {
        index: usize,
        id: String,
        source: LoadError,
    },
    #[error("policy_providers[{index}] ({id}): {path}: {policy}")]
    Undecodable {
        index: usize,
        id: String,
        path: String,
        policy: RejectedPolicy,
    },
    #[error("policy_providers[{index}] ({id}): {path}: {policy}")]
    Invalid {
        index: usize,
        id: String,
        path: String,
        policy: InvalidPolicy,
    },
}

/// What the check found in the referenced policy files.
#[derive(Debug, Default)]
pub struct PolicyFileReport {
    /// Policies that load and compile, over all files.
    pub policies: usize,
    pub errors: Vec<PolicyFileError>,
    /// Keys the decoder did not understand (not fatal), with their file.
    pub warnings: Vec<String>,
}

/// Loads and compiles every file provider's policies.
pub fn check_policy_files(config: &Config) -> PolicyFileReport {
    let mut report = PolicyFileReport::default();
    for (index, provider) in config.providers.iter().enumerate() {
        if let ProviderConfig::File { id, path } = provider {
            check_file(index, id, path, &mut report);
        }
    }
    report
}

fn check_file(index: usize, id: &str, path: &Path, report: &mut PolicyFileReport) {
    let shown = path.display().to_string();
    let loaded = match load_file(path) {
        Ok(loaded) => loaded,
        Err(source) => {
            // The SDK names the file only when it cannot read it.
            let source = match source {
                LoadError::Io { .. } => source,
                other => LoadError::Shape(format!("{shown}: {other}")),
            };
            report.errors.push(PolicyFileError::Unreadable {
                index,
                id: id.to_owned(),
                source,
            });
            return;
        }
    };
    report
        .warnings
        .extend(loaded.warnings.iter().map(|w| format!("{shown}: {w}")));
    for policy in loaded.rejected {
        report.errors.push(PolicyFileError::Undecodable {
            index,
            id: id.to_owned(),
            path: shown.clone(),
            policy,
        });
    }
    let invalid = validate_all(&loaded.policies);
    report.policies += loaded.policies.len() - invalid.len();
    for policy in invalid {
        report.errors.push(PolicyFileError::Invalid {
            index,
            id: id.to_owned(),
            path: shown.clone(),
            policy,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(files: &[&Path]) -> Config {
        let providers: Vec<serde_json::Value> = files
            .iter()
            .enumerate()
            .map(|(i, p)| serde_json::json!({"id": format!("f{i}"), "type": "file", "path": p}))
            .collect();
        let json = serde_json::json!({
            "upstream_url": "http://127.0.0.1:8080",
            "policy_providers": providers,
        });
        let (config, _) = Config::from_value(json, &|_| None).expect("valid config");
        config
    }

    #[test]
    fn missing_file_and_invalid_regex_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.yaml");
        std::fs::write(
            &good,
            "policies:\n- id: drop-debug\n  name: drop debug\n  metric:\n    match:\n    - metric_field: name\n      regex: ^debug_\n    keep: false\n",
        )
        .unwrap();
        let bad = dir.path().join("bad.yaml");
        std::fs::write(
            &bad,
            "policies:\n- id: broken\n  name: broken\n  metric:\n    match:\n    - metric_field: name\n      regex: \"([bad\"\n    keep: false\n",
        )
        .unwrap();
        let missing = dir.path().join("missing.yaml");

        let report = check_policy_files(&config_with(&[&good]));
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.policies, 1);

        let report = check_policy_files(&config_with(&[&good, &bad, &missing]));
        assert_eq!(report.policies, 1);
        let messages: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        let regex = &messages[0];
        for part in [
            "policy_providers[1]",
            "bad.yaml",
            "\"broken\"",
            "metric.match[0].regex",
        ] {
            assert!(regex.contains(part), "{regex} names {part}");
        }
        assert!(
            messages[1].contains("policy_providers[2]"),
            "{}",
            messages[1]
        );
        assert!(messages[1].contains("missing.yaml"), "{}", messages[1]);
    }
}

//! Policies as people read and write them: the authoring YAML that
//! `tero policy apply -f` reads, never the proto3 wire form.
//!
//! `-o json` stays the API's proto3 JSON (what scripts and the HTTP API
//! share); `-o yaml` and tables show every policy in the authoring form, and
//! `tero policy get ID -o yaml` prints the policy alone, as a file that
//! `apply -f` takes back unchanged.

use serde::Serialize;
use serde_yaml_ng::Value as Yaml;
use tero_sdk::Policy;
use tero_sdk::policy::{to_authoring, to_authoring_yaml};
use tero_sdk::proto::controlplane::ManagedPolicy;

use crate::commands::apply::SOURCE_LABEL;
use crate::output::{self, Format};

/// The policy as a file holds it: without what the control plane sets
/// (timestamps) and without the `tero.source` label, which `apply` sets
/// from `--source` (so the file can be adopted by any repository).
pub fn file_form(policy: &Policy) -> Policy {
    let mut p = policy.clone();
    p.created_at_unix_nano = 0;
    p.modified_at_unix_nano = 0;
    p.labels.retain(|kv| kv.key != SOURCE_LABEL);
    p
}

/// The file form as authoring YAML.
pub fn file_yaml(policy: &Policy) -> String {
    to_authoring_yaml(&file_form(policy))
}

/// Where a document holds a policy: the path of keys to it, and the
/// policy itself (None where the document holds none).
pub type PolicyAt<'a> = (&'a [&'a str], Option<&'a Policy>);

/// `value` as `-o` asks: JSON as the API sends it; YAML with each policy
/// of `policies` in the authoring form. Returns false for a table, as
/// [`output::structured`] does.
pub fn structured<T: Serialize>(
    format: Format,
    value: &T,
    policies: &[PolicyAt<'_>],
) -> anyhow::Result<bool> {
    if format != Format::Yaml {
        return output::structured(format, value);
    }
    output::structured(format, &yaml_doc(value, policies)?)
}

/// A list as `-o` asks, `policies` telling where each item holds its
/// policies (see [`structured`]).
pub fn structured_each<'a, T: Serialize>(
    format: Format,
    items: &'a [T],
    policies: impl Fn(&'a T) -> Vec<PolicyAt<'a>>,
) -> anyhow::Result<bool> {
    if format != Format::Yaml {
        return output::structured(format, items);
    }
    let docs = items
        .iter()
        .map(|item| yaml_doc(item, &policies(item)))
        .collect::<anyhow::Result<Vec<Yaml>>>()?;
    output::structured(format, &docs)
}

/// Where a managed policy holds its policy.
pub fn managed(m: &ManagedPolicy) -> Vec<PolicyAt<'_>> {
    vec![(&["policy"], m.policy.as_ref())]
}

fn yaml_doc<T: Serialize>(value: &T, policies: &[PolicyAt<'_>]) -> anyhow::Result<Yaml> {
    let mut doc = serde_yaml_ng::to_value(value)?;
    for (at, policy) in policies {
        if let Some(policy) = policy {
            replace(&mut doc, at, to_authoring(policy));
        }
    }
    Ok(doc)
}

fn replace(doc: &mut Yaml, at: &[&str], with: Yaml) {
    let Some((last, parents)) = at.split_last() else {
        *doc = with;
        return;
    };
    let mut node = doc;
    for key in parents {
        match node.get_mut(*key) {
            Some(next) => node = next,
            None => return,
        }
    }
    if let Yaml::Mapping(map) = node {
        map.insert(Yaml::from(*last), with);
    }
}

/// `text` indented by `spaces`, for a policy shown inside other output.
pub fn indented(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tero_sdk::proto::otel::{AnyValue, KeyValue, any_value};

    fn label(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
        }
    }

    #[test]
    fn the_file_form_leaves_out_what_the_control_plane_and_apply_set() {
        let policy = Policy {
            id: "p".into(),
            enabled: true,
            created_at_unix_nano: 1,
            modified_at_unix_nano: 2,
            labels: vec![label(SOURCE_LABEL, "repo"), label("team", "a")],
            ..Default::default()
        };
        assert_eq!(file_yaml(&policy), "id: p\nlabels:\n  team: a\n");
    }
}

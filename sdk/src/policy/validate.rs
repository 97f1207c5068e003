//! Validation: the conditions of policy-format.md §7.1 that make a policy invalid.
//!
//! Validation *is* compilation: [`validate`] runs the same code the engine
//! uses to build its matchers, so a policy the control plane accepts is
//! exactly a policy every Edge can run, and the error strings agree.

use std::collections::HashMap;

use tero_proto::policy::Policy;

use super::error::{InvalidPolicy, PolicyError};

/// Checks one policy, returning every problem found.
pub fn validate(policy: &Policy) -> Result<(), InvalidPolicy> {
    match crate::engine::compile::check_policy(policy) {
        errors if errors.is_empty() => Ok(()),
        errors => Err(InvalidPolicy {
            policy_id: policy.id.clone(),
            errors,
        }),
    }
}

/// Checks a batch: every policy on its own, plus id uniqueness across the
/// batch. Returns the invalid ones; the others are usable.
pub fn validate_all(policies: &[Policy]) -> Vec<InvalidPolicy> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, policy) in policies.iter().enumerate() {
        let mut errors = crate::engine::compile::check_policy(policy);
        if let Some(first) = seen.insert(policy.id.as_str(), i) {
            errors.push(PolicyError::new(
                None,
                Vec::new(),
                Some("id"),
                format!("duplicate id (also used by policy #{first})"),
            ));
        }
        if !errors.is_empty() {
            out.push(InvalidPolicy {
                policy_id: policy.id.clone(),
                errors,
            });
        }
    }
    out
}

//! The canonical hash of a policy set (policy-format.md §2.5).
//!
//! SHA-256 over the policies sorted by id, each as deterministic binary
//! protobuf with a length prefix. Any content change changes the hash; the
//! same set hashes the same on every process, so the hash can serve as a
//! version between the control plane and its edges.

use prost::Message;
use sha2::{Digest, Sha256};
use tero_proto::policy::Policy;

/// Lowercase hex SHA-256 of `policies` in canonical order.
pub fn policy_set_hash(policies: &[Policy]) -> String {
    let mut ordered: Vec<&Policy> = policies.iter().collect();
    ordered.sort_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
    let mut hasher = Sha256::new();
    let mut buf = Vec::new();
    for policy in ordered {
        buf.clear();
        policy
            .encode_length_delimited(&mut buf)
            .expect("a Vec grows as needed");
        hasher.update(&buf);
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(id: &str, name: &str) -> Policy {
        Policy {
            id: id.into(),
            name: name.into(),
            enabled: true,
            ..Default::default()
        }
    }

    #[test]
    fn order_free_and_content_sensitive() {
        let a = policy_set_hash(&[policy("a", "x"), policy("b", "y")]);
        let b = policy_set_hash(&[policy("b", "y"), policy("a", "x")]);
        assert_eq!(a, b);
        assert_ne!(a, policy_set_hash(&[policy("a", "x"), policy("b", "z")]));
        let mut disabled = policy("a", "x");
        disabled.enabled = false;
        assert_ne!(a, policy_set_hash(&[disabled, policy("b", "y")]));
        assert_eq!(a.len(), 64);
    }
}

//! The policy model: loading policies from files and wire encodings, and
//! validating them.
//!
//! Policies are represented by the generated wire type
//! [`tero_proto::policy::Policy`] so that what is loaded, validated, stored
//! and sent is one and the same value; this module adds the lenient authoring
//! decoder, its inverse (the authoring form tools show) and the validation
//! rules on top.

mod authoring;
mod encode;
mod enums;
mod error;
mod hash;
mod validate;

pub use authoring::{
    Format, LoadError, LoadedPolicies, RejectedPolicy, load_file, parse_policies,
    parse_policy_value,
};
pub use encode::{to_authoring, to_authoring_yaml};
pub use error::{InvalidPolicy, PathSeg, PolicyError, Signal};
pub use hash::policy_set_hash;
pub use validate::{validate, validate_all};

use tero_proto::policy::{Policy, policy::Target};

/// The signal a policy targets, if it has a target.
pub fn signal_of(policy: &Policy) -> Option<Signal> {
    match policy.target.as_ref()? {
        Target::Log(_) => Some(Signal::Log),
        Target::Metric(_) => Some(Signal::Metric),
        Target::Trace(_) => Some(Signal::Trace),
    }
}

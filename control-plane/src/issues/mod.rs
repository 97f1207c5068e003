//! Issues: findings about a service's telemetry, with evidence, an impact
//! estimate and a recommended policy, and the measured impact of the
//! policies created from them.
//!
//! ```text
//! edge inventories ─▶ merge (per service) ─┐
//! usage sources ─▶ usage index ────────────┴▶ detect ─▶ reconcile ─▶ issues
//! classified log/span event types ─┐                          ▲
//! edge volume (per service) ───────┴▶ detect::events ─────────┘
//! accept ─▶ policy (labelled tero.issue_id) ─▶ edges ─▶ stats ─▶ impact ─▶ verified / flagged
//! ```

pub mod analyst;
pub mod detect;
pub mod impact;
pub mod merge;
pub mod reconcile;
pub mod window;

use tero_proto::otel::{AnyValue, KeyValue, any_value::Value};

pub use analyst::{Analyst, is_event_kind};

/// Issue statuses (`Issue.status`).
pub mod status {
    pub const OPEN: &str = "open";
    pub const IN_PROGRESS: &str = "in_progress";
    pub const RESOLVED: &str = "resolved";
    pub const IGNORED: &str = "ignored";
    /// Folded into another issue recommending the same change
    /// (`Issue.merged_into`): not fixed, reported there.
    pub const MERGED: &str = "merged";
    pub const ALL: [&str; 5] = [OPEN, IN_PROGRESS, RESOLVED, IGNORED, MERGED];

    /// Remediation states (`Issue.remediation`).
    pub const READY_TO_DEPLOY: &str = "ready_to_deploy";
    pub const DRAFT: &str = "policy_draft";
    pub const SHADOW: &str = "policy_shadow";
    pub const ACTIVE: &str = "policy_active";
    pub const VERIFIED: &str = "resolution_verified";
    pub const VERIFICATION_FAILED: &str = "verification_failed";
    pub const REVOKED: &str = "policy_revoked";
}

/// The label that links a policy to the issue it fixes.
pub const ISSUE_LABEL: &str = "tero.issue_id";
/// The label that marks a policy as shadow (counted, never enforced).
pub const MODE_LABEL: &str = "tero.mode";
pub const SHADOW_MODE: &str = "shadow";

/// How issues are detected, priced and verified.
#[derive(Debug, Clone)]
pub struct IssueConfig {
    pub thresholds: detect::Thresholds,
    /// What makes a log or span finding an issue.
    pub events: detect::events::EventThresholds,
    pub prices: detect::Prices,
    /// Inventories older than this are not merged (ms).
    pub lookback_ms: i64,
    /// The measured reduction must reach this share of the estimate for the
    /// resolution to count as verified.
    pub verify_ratio: f64,
    /// Scrapes to observe before judging an impact.
    pub min_scrapes: u64,
    /// Scrapes after which an impact still below the ratio is flagged.
    pub judge_after_scrapes: u64,
    /// Inventory reports are kept this long (ms) for baselines and history.
    pub inventory_retention_ms: i64,
}

impl Default for IssueConfig {
    fn default() -> Self {
        IssueConfig {
            thresholds: detect::Thresholds::default(),
            events: detect::events::EventThresholds::default(),
            prices: detect::Prices::default(),
            lookback_ms: 60 * 60 * 1000,
            verify_ratio: 0.8,
            min_scrapes: 3,
            judge_after_scrapes: 30,
            inventory_retention_ms: 7 * 24 * 60 * 60 * 1000,
        }
    }
}

pub(crate) fn string_label(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
    }
}

/// The string value of the first label `key` (tests read labels back).
#[cfg(test)]
pub(crate) fn label_of<'a>(labels: &'a [KeyValue], key: &str) -> Option<&'a str> {
    labels.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        }
    })
}

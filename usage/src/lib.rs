//! What people actually query: Prometheus rule files, Grafana dashboards and
//! a Prometheus server's rules, reduced to the metric families and labels
//! they reference.
//!
//! ```text
//! text ─▶ source (JSON or YAML, kind) ─▶ rules    ─┐
//!                                     └▶ grafana ──┴▶ promql (one query) ─▶ ParsedSource
//! ParsedSource, … ─▶ UsageIndex (UsageLookup) ─▶ the control plane's detectors
//! ```
//!
//! A library of its own: it knows nothing of the server or the store, which
//! keep the raw sources and hand them here to be read.
//!
//! The rule is conservative: a metric counts as used when in doubt. A query
//! that cannot be parsed, or a name built from a template variable, makes
//! the metrics it might reference "unknown", never "unused".

use std::collections::BTreeSet;

#[cfg(test)]
mod fixtures;
mod grafana;
pub mod index;
pub mod promql;
mod rules;
mod source;

pub use index::UsageIndex;
pub use source::{
    MetricReference, NamePattern, ParsedSource, SourceKind, UsageError, parse_source,
};

/// How one metric family is used across every imported source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FamilyUsage {
    /// Referenced by name. `locations` name the rules or panels
    /// (`<source>: <rule or panel>`); `labels` are the labels those queries
    /// read explicitly (matchers, `by`/`without`, `on`/`ignoring`,
    /// `group_left`/`group_right`, label functions, legend templates).
    Used {
        locations: Vec<String>,
        labels: BTreeSet<String>,
    },
    /// No source references it, and no unparsed query or name pattern might.
    Unused,
    /// A query that could not be parsed, or a name regex or template
    /// variable, may reference it: treated as used.
    Unknown { reason: String },
}

impl FamilyUsage {
    /// Whether a detector must treat the family as used.
    pub fn counts_as_used(&self) -> bool {
        !matches!(self, FamilyUsage::Unused)
    }
}

/// What detectors ask of the usage sources.
pub trait UsageLookup {
    /// The names of the sources consulted (empty: no usage data at all, so
    /// nothing can be called unused).
    fn source_names(&self) -> Vec<String>;
    /// How the family `name` of type `kind` (`counter`, `histogram`, …) is
    /// used; sample names (`_total`, `_bucket`, `_sum`, `_count`, `_created`)
    /// map to their family.
    fn family(&self, name: &str, kind: &str) -> FamilyUsage;
    /// Whether any query referencing the family reads `label` explicitly.
    fn label_used(&self, family: &str, kind: &str, label: &str) -> bool {
        match self.family(family, kind) {
            FamilyUsage::Used { labels, .. } => labels.contains(label),
            FamilyUsage::Unused => false,
            FamilyUsage::Unknown { .. } => true,
        }
    }
}

//! Every imported source folded into one lookup by metric family.

use std::collections::{BTreeSet, HashMap};

use regex::Regex;

use crate::source::{NamePattern, ParsedSource};
use crate::{FamilyUsage, UsageLookup};

/// At most this many reasons are spelled out in an `Unknown`.
const MAX_REASONS: usize = 3;

/// The usage of every family across a set of parsed sources.
#[derive(Debug, Clone, Default)]
pub struct UsageIndex {
    sources: Vec<String>,
    /// Sample or family name → the queries that name it.
    by_name: HashMap<String, Vec<NamedUse>>,
    patterns: Vec<CompiledPattern>,
    /// Labels read across all metrics (`label_values(job)`).
    unscoped_labels: BTreeSet<String>,
}

#[derive(Debug, Clone)]
struct NamedUse {
    name: String,
    location: String,
    labels: BTreeSet<String>,
    any_label: bool,
    possible: bool,
}

#[derive(Debug, Clone)]
struct CompiledPattern {
    /// `None`: the regex does not compile here (Go and Rust regexes differ
    /// at the edges), so it is taken to match anything, as a possibility.
    regex: Option<Regex>,
    pattern: NamePattern,
}

/// What the queries say about one family.
#[derive(Default)]
struct Resolution {
    locations: Vec<String>,
    labels: BTreeSet<String>,
    any_label: bool,
    reasons: Vec<String>,
}

impl UsageIndex {
    /// Indexes `(source name, parsed source)` pairs; the names are what
    /// [`UsageLookup::source_names`] reports.
    pub fn new<S: Into<String>>(sources: impl IntoIterator<Item = (S, ParsedSource)>) -> Self {
        let mut index = UsageIndex::default();
        for (name, parsed) in sources {
            index.sources.push(name.into());
            for reference in parsed.references {
                index
                    .by_name
                    .entry(reference.metric.clone())
                    .or_default()
                    .push(NamedUse {
                        name: reference.metric,
                        location: reference.location,
                        labels: reference.labels,
                        any_label: reference.any_label,
                        possible: reference.possible,
                    });
            }
            for pattern in parsed.name_patterns {
                index.patterns.push(CompiledPattern {
                    regex: Regex::new(&pattern.regex).ok(),
                    pattern,
                });
            }
            index.unscoped_labels.extend(parsed.unscoped_labels);
        }
        index
    }

    fn resolve(&self, family: &str, kind: &str) -> Resolution {
        let mut found = Resolution::default();
        let samples = sample_names(family, kind);
        for sample in &samples {
            for named in self.by_name.get(sample).into_iter().flatten() {
                if named.possible {
                    found.reasons.push(format!(
                        "{}: a query that could not be parsed mentions `{}`",
                        named.location, named.name
                    ));
                } else if !found.locations.contains(&named.location) {
                    found.locations.push(named.location.clone());
                }
                found.labels.extend(named.labels.iter().cloned());
                found.any_label |= named.any_label;
            }
        }
        for compiled in &self.patterns {
            let pattern = &compiled.pattern;
            let matches = match &compiled.regex {
                Some(regex) => samples.iter().any(|s| regex.is_match(s)),
                None => true,
            };
            if !matches {
                continue;
            }
            if pattern.wildcard || compiled.regex.is_none() {
                let why = if pattern.reason.is_empty() {
                    format!("names matching {}", pattern.regex)
                } else {
                    pattern.reason.clone()
                };
                found.reasons.push(format!("{}: {why}", pattern.location));
            } else if !found.locations.contains(&pattern.location) {
                found.locations.push(pattern.location.clone());
            }
            found.labels.extend(pattern.labels.iter().cloned());
            found.any_label |= pattern.any_label;
        }
        found
    }

    /// The family's usage, and whether some query may read any of its
    /// labels.
    fn usage(&self, name: &str, kind: &str) -> (FamilyUsage, bool) {
        if self.sources.is_empty() {
            let reason = "no usage sources have been imported".to_string();
            return (FamilyUsage::Unknown { reason }, true);
        }
        let found = self.resolve(name, kind);
        if !found.locations.is_empty() {
            let mut labels = found.labels;
            labels.extend(self.unscoped_labels.iter().cloned());
            let used = FamilyUsage::Used {
                locations: found.locations,
                labels,
            };
            return (used, found.any_label);
        }
        if found.reasons.is_empty() {
            return (FamilyUsage::Unused, false);
        }
        let mut reasons: Vec<String> = Vec::new();
        for reason in found.reasons {
            if !reasons.contains(&reason) {
                reasons.push(reason);
            }
        }
        let more = reasons.len().saturating_sub(MAX_REASONS);
        reasons.truncate(MAX_REASONS);
        let mut reason = reasons.join("; ");
        if more > 0 {
            reason.push_str(&format!("; and {more} more"));
        }
        (FamilyUsage::Unknown { reason }, true)
    }

    /// The names of the families' samples a query may name, for `kind`.
    pub fn sample_names(family: &str, kind: &str) -> Vec<String> {
        sample_names(family, kind)
    }
}

impl UsageLookup for UsageIndex {
    fn source_names(&self) -> Vec<String> {
        self.sources.clone()
    }

    fn family(&self, name: &str, kind: &str) -> FamilyUsage {
        self.usage(name, kind).0
    }

    /// A query that may read any label (a template variable in a label
    /// position, an ad hoc filter, an unparsed query) counts for every
    /// label.
    fn label_used(&self, family: &str, kind: &str, label: &str) -> bool {
        match self.usage(family, kind) {
            (FamilyUsage::Unused, _) => false,
            (FamilyUsage::Unknown { .. }, _) => true,
            (FamilyUsage::Used { labels, .. }, any_label) => any_label || labels.contains(label),
        }
    }
}

/// A family's own name plus the sample names its type exposes. A counter
/// family may be named with or without `_total` (text format vs
/// OpenMetrics), so both spellings lead to it. An unknown type may have any
/// of the suffixes: when in doubt a family counts as used.
fn sample_names(family: &str, kind: &str) -> Vec<String> {
    const COUNTER: &[&str] = &["_total", "_created"];
    const HISTOGRAM: &[&str] = &["_bucket", "_sum", "_count", "_created", "_gcount", "_gsum"];
    const SUMMARY: &[&str] = &["_sum", "_count", "_created"];
    const INFO: &[&str] = &["_info"];
    const ANY: &[&str] = &[
        "_total", "_created", "_bucket", "_sum", "_count", "_gcount", "_gsum", "_info",
    ];
    let kind = kind.to_ascii_lowercase();
    let suffixes: &[&str] = match kind.as_str() {
        "counter" => COUNTER,
        "histogram" | "gaugehistogram" | "gauge_histogram" => HISTOGRAM,
        "summary" => SUMMARY,
        "info" => INFO,
        "gauge" | "stateset" => &[],
        _ => ANY,
    };
    let mut names = vec![family.to_string()];
    names.extend(suffixes.iter().map(|s| format!("{family}{s}")));
    if kind == "counter"
        && let Some(base) = family.strip_suffix("_total")
    {
        names.push(format!("{base}_created"));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{SourceKind, parse_source};

    const RULES: &str = r#"
groups:
  - name: api
    rules:
      - alert: SlowRequests
        expr: |
          histogram_quantile(0.9, sum by (le, job) (rate(http_request_duration_seconds_bucket[5m]))) > 1
      - record: job:orders:rate5m
        expr: sum by (job) (rate(orders_total{status="paid"}[5m]))
      - alert: LegacyTotal
        expr: increase(payments_total[1h]) == 0
      - alert: Nodes
        expr: count({__name__=~"node_filesystem_.*", fstype!="tmpfs"}) by (mountpoint) > 0
"#;

    const DASHBOARD: &str = r#"{"title": "Users", "panels": [
        {"title": "Per user", "targets": [
          {"expr": "sum by (route) (rate(api_calls_total[5m]))", "legendFormat": "{{user_id}}"}]},
        {"title": "Picked", "targets": [{"expr": "sum(rate({__name__=~\"$metric\"}[5m]))"}]},
        {"title": "Broken", "targets": [{"expr": "sum(rate(cache_misses_total[5m]) by (cache)"}]}
    ]}"#;

    fn index(sources: &[(&str, &str)]) -> UsageIndex {
        UsageIndex::new(sources.iter().map(|(name, content)| {
            let parsed =
                parse_source(name, None, content).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name.to_string(), parsed)
        }))
    }

    fn used_labels(usage: FamilyUsage) -> Vec<String> {
        match usage {
            FamilyUsage::Used { labels, .. } => labels.into_iter().collect(),
            other => panic!("expected Used, got {other:?}"),
        }
    }

    #[test]
    fn histogram_bucket_resolves_to_its_family() {
        let idx = index(&[("rules.yml", RULES)]);
        match idx.family("http_request_duration_seconds", "histogram") {
            FamilyUsage::Used { locations, labels } => {
                assert_eq!(locations, ["rules.yml: group api / alert SlowRequests"]);
                assert_eq!(labels.into_iter().collect::<Vec<_>>(), ["job", "le"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(idx.label_used("http_request_duration_seconds", "histogram", "le"));
        assert!(!idx.label_used("http_request_duration_seconds", "histogram", "path"));
        // A gauge of that name has no `_bucket` series.
        assert_eq!(
            idx.family("http_request_duration_seconds", "gauge"),
            FamilyUsage::Unused
        );
    }

    #[test]
    fn counter_total_matches_in_both_spellings() {
        let idx = index(&[("rules.yml", RULES)]);
        // OpenMetrics family `orders`, text-format family `orders_total`.
        assert_eq!(
            used_labels(idx.family("orders", "counter")),
            ["job", "status"]
        );
        assert_eq!(
            used_labels(idx.family("orders_total", "counter")),
            ["job", "status"]
        );
        assert!(idx.family("payments_total", "counter").counts_as_used());
        assert!(idx.family("payments", "counter").counts_as_used());
        // A family `orders` of type gauge is not read through `orders_total`.
        assert_eq!(idx.family("orders", "gauge"), FamilyUsage::Unused);
    }

    #[test]
    fn a_family_referenced_nowhere_is_unused() {
        let idx = index(&[("rules.yml", RULES)]);
        assert_eq!(idx.family("process_open_fds", "gauge"), FamilyUsage::Unused);
        assert!(!idx.label_used("process_open_fds", "gauge", "job"));
        assert_eq!(idx.source_names(), ["rules.yml"]);
    }

    #[test]
    fn name_regex_matches_families_and_their_samples() {
        let idx = index(&[("rules.yml", RULES)]);
        assert_eq!(
            used_labels(idx.family("node_filesystem_avail_bytes", "gauge")),
            ["fstype", "mountpoint"]
        );
        assert_eq!(idx.family("node_load1", "gauge"), FamilyUsage::Unused);
    }

    #[test]
    fn template_variable_name_makes_everything_unknown_never_unused() {
        let idx = index(&[("dash.json", DASHBOARD)]);
        match idx.family("process_open_fds", "gauge") {
            FamilyUsage::Unknown { reason } => {
                assert!(reason.contains("dash.json: panel \"Picked\""), "{reason}");
                assert!(reason.contains("$metric"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(idx.label_used("process_open_fds", "gauge", "anything"));
        // A definite reference still wins.
        assert!(matches!(
            idx.family("api_calls", "counter"),
            FamilyUsage::Used { .. }
        ));
    }

    #[test]
    fn unparsable_query_makes_its_identifiers_unknown() {
        let idx = index(&[
            ("rules.yml", RULES),
            (
                "broken.json",
                r#"{"panels": [{"title": "Broken", "targets": [{"expr": "sum(rate(cache_misses_total[5m]) by (cache)"}]}]}"#,
            ),
        ]);
        match idx.family("cache_misses", "counter") {
            FamilyUsage::Unknown { reason } => {
                assert!(reason.contains("could not be parsed"), "{reason}");
                assert!(reason.contains("cache_misses_total"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(idx.label_used("cache_misses", "counter", "cache"));
        assert_eq!(idx.family("node_load1", "gauge"), FamilyUsage::Unused);
        // `by (cache)` is a label list, not a metric.
        assert_eq!(idx.family("cache", "gauge"), FamilyUsage::Unused);
    }

    #[test]
    fn legend_label_counts_as_read() {
        let idx = index(&[("dash.json", DASHBOARD)]);
        assert!(idx.label_used("api_calls", "counter", "user_id"));
        assert!(idx.label_used("api_calls", "counter", "route"));
        // The name wildcard in "Picked" reads no labels of api_calls.
        assert!(!idx.label_used("api_calls", "counter", "region"));
    }

    #[test]
    fn label_values_reads_metric_and_label() {
        let dash = r#"{"templating": {"list": [
            {"name": "instance", "type": "query", "query": "label_values(up{job=\"node\"}, instance)"},
            {"name": "pod", "type": "query", "query": "label_values(pod)"}]}, "panels": []}"#;
        let idx = index(&[("vars.json", dash)]);
        assert_eq!(
            used_labels(idx.family("up", "gauge")),
            ["instance", "job", "pod"]
        );
        assert!(idx.label_used("up", "gauge", "pod"));
        assert_eq!(idx.family("node_load1", "gauge"), FamilyUsage::Unused);
    }

    #[test]
    fn any_label_from_a_variable_label_position() {
        let dash = r#"{"panels": [{"title": "By", "targets": [{"expr": "sum by ($group) (rate(jobs_total[5m]))"}]}]}"#;
        let idx = index(&[("d.json", dash)]);
        assert!(idx.label_used("jobs", "counter", "queue"));
        let plain = r#"{"panels": [{"title": "By", "targets": [{"expr": "sum by (queue) (rate(jobs_total[5m]))"}]}]}"#;
        let idx = index(&[("d.json", plain)]);
        assert!(!idx.label_used("jobs", "counter", "worker"));
    }

    #[test]
    fn without_sources_nothing_is_unused() {
        let idx = UsageIndex::new(Vec::<(String, ParsedSource)>::new());
        assert!(idx.source_names().is_empty());
        assert!(matches!(
            idx.family("x", "gauge"),
            FamilyUsage::Unknown { .. }
        ));
    }

    #[test]
    fn stored_json_indexes_the_same() {
        let parsed =
            parse_source("rules.yml", Some(SourceKind::PrometheusRules), RULES).expect("parses");
        let stored = serde_json::to_string(&parsed).expect("encodes");
        let back: ParsedSource = serde_json::from_str(&stored).expect("decodes");
        let idx = UsageIndex::new([("rules.yml", back)]);
        assert_eq!(
            used_labels(idx.family("orders", "counter")),
            ["job", "status"]
        );
    }

    #[test]
    fn untyped_families_take_any_sample_suffix() {
        let names = UsageIndex::sample_names("rpc", "unknown");
        assert!(
            names.contains(&"rpc_bucket".to_string()) && names.contains(&"rpc_total".to_string())
        );
        assert_eq!(UsageIndex::sample_names("temp", "gauge"), ["temp"]);
        assert!(UsageIndex::sample_names("x_total", "counter").contains(&"x_created".to_string()));
    }
}

//! Metric detectors: pure functions from one service's merged inventory and
//! the usage sources to findings, each with evidence, an impact estimate and
//! a recommended `tero.policy.v1` policy.
//!
//! | Kind | Domain | Fires when |
//! |---|---|---|
//! | `unused_metric` | cost | usage sources exist and none references the family |
//! | `high_cardinality_label` | cost | a label has ≥ `high_cardinality` values and no query reads it |
//! | `excessive_histogram_buckets` | cost | a histogram has more than `max_buckets` bounds |
//! | `debug_metric` | cost, signal quality when used | name tokens or HELP say debug/test/… |
//! | `duplicate_metric` | cost | two labelled families export identical series |
//! | `id_label` | cost, compliance for personal-data names | id-shaped values, ≥ `id_label_cardinality` |
//!
//! Findings are keyed by (kind, service, subject): the subject is the family
//! name, `family{label}` for label findings, or `a=b` (sorted) for a pair of
//! duplicates, so that a finding that persists updates the same issue.
//!
//! One recommendation per change. Several detectors can arrive at the same
//! policy (an unused debug histogram with too many buckets is three reasons
//! to drop one family); a reviewer should get one issue with every reason,
//! not three issues whose policies collide. So findings whose recommended
//! policies match the same series are folded into the most certain one, in
//! this order:
//!
//! - family drops: `unused_metric` (usage proves nobody reads it), then
//!   `duplicate_metric`, `debug_metric`, `excessive_histogram_buckets`;
//! - label drops: `id_label` when it is a compliance finding (the domain
//!   changes who must review it), then `high_cardinality_label`, then a cost
//!   `id_label` (an id-shaped label that is also past the high-cardinality
//!   threshold is reported once, as high cardinality, with the shape noted).
//!
//! The folded findings' titles are kept as notes on the winner, and their
//! keys in [`Finding::absorbed`], so that an issue opened for one of them
//! earlier is marked merged rather than resolved. Label-level cost findings
//! of a family that is itself reported unused are folded into that finding
//! too: dropping the family removes them.
//!
//! Never a policy that removes what someone reads. A v1 policy can only drop
//! series, so when the family a finding's policy acts on is read by a usage
//! source, may be read (an unparsed query, a name pattern), or its usage is
//! unknown (no usage source imported), the finding recommends nothing
//! executable: `recommended` is `None` and the summary says why and what the
//! lossless fix is (aggregating the label away, moving the queries). The
//! change the policy would have made still keys the folding above.

mod buckets;
mod cardinality;
mod debug;
mod duplicate;
pub mod estimate;
pub mod events;
mod id_label;
pub mod recommend;
mod unused;

#[cfg(test)]
mod testing;

use std::collections::HashMap;

use prost::Message;
use tero_proto::controlplane::{
    CreatePolicyRequest, Evidence, FamilyInventory, ImpactEstimate, LabelCardinality,
    LabelInventory, Provenance, ServiceInventory,
};
use tero_proto::policy::policy::Target;
use tero_usage::{FamilyUsage, UsageLookup};

/// Detector names (`Issue.kind`).
pub mod kind {
    pub const UNUSED_METRIC: &str = "unused_metric";
    pub const HIGH_CARDINALITY_LABEL: &str = "high_cardinality_label";
    pub const EXCESSIVE_HISTOGRAM_BUCKETS: &str = "excessive_histogram_buckets";
    pub const DEBUG_METRIC: &str = "debug_metric";
    pub const DUPLICATE_METRIC: &str = "duplicate_metric";
    pub const ID_LABEL: &str = "id_label";
    pub const ALL: [&str; 6] = [
        UNUSED_METRIC,
        HIGH_CARDINALITY_LABEL,
        EXCESSIVE_HISTOGRAM_BUCKETS,
        DEBUG_METRIC,
        DUPLICATE_METRIC,
        ID_LABEL,
    ];
}

/// Issue domains (`Issue.domain`).
pub mod domain {
    pub const COST: &str = "cost";
    pub const COMPLIANCE: &str = "compliance";
    pub const SIGNAL_QUALITY: &str = "signal_quality";
}

/// Issue severity, ordered so that `max` picks the most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    /// The `Issue.severity` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }

    /// One step down: what a finding on telemetry someone reads gets, since
    /// acting on it needs a review first.
    pub fn lower(self) -> Severity {
        match self {
            Severity::High => Severity::Medium,
            Severity::Medium | Severity::Low => Severity::Low,
        }
    }
}

/// What makes a finding worth an issue.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Distinct values from which a label counts as high-cardinality
    /// (`high_cardinality_label`, inclusive). Default 1000.
    pub high_cardinality: u64,
    /// Distinct values from which an id-shaped label is reported
    /// (`id_label`, inclusive). Default 100.
    pub id_label_cardinality: u64,
    /// Histograms with more bucket bounds than this (`+Inf` included) are
    /// reported (`excessive_histogram_buckets`, exclusive). Default 30.
    pub max_buckets: u32,
    /// Unused families below this volume are not worth an issue (inclusive
    /// lower bound). Default 0: every unused family is reported.
    pub min_unused_bytes_per_day: u64,
    /// Estimated monthly cost (USD) from which a finding is high severity.
    /// Default 100.
    pub high_cost_per_month: f64,
    /// Estimated monthly cost (USD) from which a finding is medium severity.
    /// Default 10.
    pub medium_cost_per_month: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            high_cardinality: 1000,
            id_label_cardinality: 100,
            max_buckets: 30,
            min_unused_bytes_per_day: 0,
            high_cost_per_month: 100.0,
            medium_cost_per_month: 10.0,
        }
    }
}

/// The cost basis estimates are priced with.
#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    /// USD per GB (1e9 bytes) ingested. Default 0.50.
    pub per_gb: f64,
    /// USD per active series per month. Default 0.01.
    pub per_series_month: f64,
    /// USD per GB of log records and spans (`--price-per-gb-logs`).
    /// Default 0.50.
    pub per_gb_logs: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            per_gb: 0.50,
            per_series_month: 0.01,
            per_gb_logs: 0.50,
        }
    }
}

/// One detector result: what becomes (or refreshes) an issue.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// One of [`kind::ALL`] or [`events::kind::ALL`].
    pub kind: &'static str,
    /// One of the [`domain`] constants.
    pub domain: &'static str,
    /// [`Severity::as_str`].
    pub severity: &'static str,
    pub title: String,
    pub summary: String,
    pub service: String,
    /// Stable within (kind, service): `family`, `family{label}` or `a=b`.
    pub subject: String,
    pub evidence: Evidence,
    pub provenance: Provenance,
    pub estimate: ImpactEstimate,
    /// Valid, scoped to the service; the caller adds `tero.issue_id`.
    /// `None` when the change would remove series someone reads (see the
    /// module docs).
    pub recommended: Option<CreatePolicyRequest>,
    /// (kind, subject) of the findings folded into this one.
    pub absorbed: Vec<(&'static str, String)>,
}

/// Runs every detector over one service's inventory.
pub fn detect(
    inventory: &ServiceInventory,
    usage: &dyn UsageLookup,
    thresholds: &Thresholds,
    prices: &Prices,
) -> Vec<Finding> {
    let ctx = Ctx::new(inventory, usage, thresholds, prices);
    let mut candidates = Vec::new();
    for family in &ctx.families {
        candidates.extend(unused::detect(&ctx, family));
        candidates.extend(cardinality::detect(&ctx, family));
        candidates.extend(buckets::detect(&ctx, family));
        candidates.extend(debug::detect(&ctx, family));
        candidates.extend(id_label::detect(&ctx, family));
    }
    candidates.extend(duplicate::detect(&ctx));
    let candidates = candidates
        .into_iter()
        .map(|c| guard_usage(&ctx, c))
        .collect();
    settle(candidates)
}

/// Keys the candidate by the change its policy makes, then withholds the
/// policy when that change would remove series a query reads or may read.
fn guard_usage(ctx: &Ctx, mut candidate: Candidate) -> Candidate {
    candidate.change = candidate
        .finding
        .recommended
        .as_ref()
        .map(policy_key)
        .unwrap_or_default();
    if !candidate.possibly_used || candidate.finding.recommended.is_none() {
        return candidate;
    }
    let finding = &mut candidate.finding;
    finding.recommended = None;
    let why = if ctx.sources.is_empty() {
        "no usage source is imported, so nothing shows these series are unread"
    } else {
        "queries read these series or may read them (see above)"
    };
    let fix = match &candidate.label {
        Some(label) => format!(
            "The lossless fix is to aggregate `{label}` away (a recording rule, or the \
             instrumentation) so that queries read the aggregate; then the series carrying it \
             can be dropped."
        ),
        None => format!(
            "Move the queries off `{}` (or import the usage sources that show it unread), and \
             the detector will recommend the drop.",
            candidate.family
        ),
    };
    finding.summary.push_str(&format!(
        " No policy is recommended, because dropping would remove data people use: {why}. {fix}"
    ));
    candidate
}

/// A family with its usage looked up once.
struct Family<'a> {
    pub inv: &'a FamilyInventory,
    /// `None`: no usage source was imported, so nothing is known.
    pub usage: Option<FamilyUsage>,
}

impl Family<'_> {
    pub fn name(&self) -> &str {
        &self.inv.name
    }

    /// Used, possibly used, or not known to be unused: any of these makes a
    /// drop something to review rather than to apply.
    pub fn possibly_used(&self) -> bool {
        self.usage.as_ref().is_none_or(FamilyUsage::counts_as_used)
    }

    /// Whether queries are known to reference it by name.
    pub fn used(&self) -> bool {
        matches!(self.usage, Some(FamilyUsage::Used { .. }))
    }

    /// Where it is used, for evidence.
    pub fn locations(&self) -> &[String] {
        match &self.usage {
            Some(FamilyUsage::Used { locations, .. }) => locations,
            _ => &[],
        }
    }

    /// One sentence on how it is used, for summaries.
    pub fn usage_sentence(&self) -> String {
        match &self.usage {
            None => "No usage source has been imported, so whether queries read it is unknown."
                .to_owned(),
            Some(FamilyUsage::Unused) => "No imported query references it.".to_owned(),
            Some(FamilyUsage::Unknown { reason }) => {
                format!("It may be queried ({reason}), so it counts as used.")
            }
            Some(FamilyUsage::Used { locations, .. }) => {
                let shown: Vec<&str> = locations.iter().take(3).map(String::as_str).collect();
                let more = locations.len().saturating_sub(shown.len());
                let tail = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!(
                    "It is used by {} quer{} ({}{tail}).",
                    locations.len(),
                    if locations.len() == 1 { "y" } else { "ies" },
                    shown.join("; ")
                )
            }
        }
    }

    /// Labels a policy can select: the structural `le`/`quantile` are
    /// hidden from policies (prometheus-edge.md ), so never report them.
    pub fn policy_labels(&self) -> impl Iterator<Item = &LabelInventory> {
        let structural = match self.inv.r#type.as_str() {
            "histogram" | "gaugehistogram" => Some("le"),
            "summary" => Some("quantile"),
            _ => None,
        };
        self.inv
            .labels
            .iter()
            .filter(move |l| Some(l.name.as_str()) != structural)
    }
}

/// What every detector reads.
struct Ctx<'a> {
    pub inventory: &'a ServiceInventory,
    pub usage: &'a dyn UsageLookup,
    pub thresholds: &'a Thresholds,
    pub prices: &'a Prices,
    /// Usage source names; empty means no usage data.
    pub sources: Vec<String>,
    /// Families with something to drop (a family without series costs
    /// nothing and a policy on it would change nothing).
    pub families: Vec<Family<'a>>,
}

impl<'a> Ctx<'a> {
    pub fn new(
        inventory: &'a ServiceInventory,
        usage: &'a dyn UsageLookup,
        thresholds: &'a Thresholds,
        prices: &'a Prices,
    ) -> Self {
        let mut sources = usage.source_names();
        sources.sort();
        sources.dedup();
        let families = inventory
            .families
            .iter()
            .filter(|f| f.series > 0)
            .map(|inv| Family {
                inv,
                usage: (!sources.is_empty()).then(|| usage.family(&inv.name, &inv.r#type)),
            })
            .collect();
        Ctx {
            inventory,
            usage,
            thresholds,
            prices,
            sources,
            families,
        }
    }

    pub fn service(&self) -> &str {
        &self.inventory.service
    }

    /// `None` without usage data.
    pub fn label_used(&self, family: &Family, label: &str) -> Option<bool> {
        family.usage.as_ref()?;
        Some(
            self.usage
                .label_used(family.name(), &family.inv.r#type, label),
        )
    }

    pub fn severity_for_cost(&self, cost_per_month: f64) -> Severity {
        estimate::severity(cost_per_month, self.thresholds)
    }

    /// Evidence shared by family findings: volume, every selectable label,
    /// usage.
    pub fn family_evidence(&self, family: &Family) -> Evidence {
        let mut labels: Vec<LabelCardinality> = family
            .policy_labels()
            .map(|l| self.label_cardinality(family, l))
            .collect();
        labels.sort_by(|a, b| b.cardinality.cmp(&a.cardinality).then(a.name.cmp(&b.name)));
        Evidence {
            series: family.inv.series,
            sample_bytes_per_scrape: family.inv.sample_bytes,
            scrapes_per_minute: self.inventory.scrapes_per_minute,
            example_series: Vec::new(),
            labels,
            usage_sources: self.sources.clone(),
            used_in: family.locations().to_vec(),
            notes: Vec::new(),
            bucket_count: family.inv.bucket_count,
            ..Evidence::default()
        }
    }

    /// Evidence of a label finding: the family's volume, that one label and
    /// example selectors of the series carrying it.
    pub fn label_evidence(&self, family: &Family, label: &LabelInventory) -> Evidence {
        let mut evidence = self.family_evidence(family);
        evidence.labels = vec![self.label_cardinality(family, label)];
        evidence.example_series = label
            .examples
            .iter()
            .take(3)
            .map(|v| format!("{}{{{}={v:?}}}", family.name(), label.name))
            .collect();
        evidence
    }

    fn label_cardinality(&self, family: &Family, label: &LabelInventory) -> LabelCardinality {
        LabelCardinality {
            name: label.name.clone(),
            cardinality: label.cardinality,
            examples: label.examples.clone(),
            used_in_queries: self.label_used(family, &label.name).unwrap_or(false),
        }
    }

    /// `thresholds` are the detector's own; the severity bands apply to all.
    pub fn provenance(&self, detector: &str, thresholds: Vec<String>) -> Provenance {
        let t = self.thresholds;
        let mut all = thresholds;
        all.push(format!("high_cost_per_month={}", t.high_cost_per_month));
        all.push(format!("medium_cost_per_month={}", t.medium_cost_per_month));
        all.push(format!("per_gb={}", self.prices.per_gb));
        all.push(format!("per_series_month={}", self.prices.per_series_month));
        Provenance {
            detector: detector.to_owned(),
            thresholds: all,
            instances: self.inventory.instances.clone(),
            inventory_from_unix_ms: self.inventory.from_unix_ms,
            inventory_to_unix_ms: self.inventory.to_unix_ms,
            ..Provenance::default()
        }
    }
}

/// A finding with what [`settle`] needs to fold it.
struct Candidate {
    pub finding: Finding,
    /// The family the recommended policy acts on.
    pub family: String,
    /// The label whose series the policy drops; `None` for the whole family.
    pub label: Option<String>,
    /// What the policy would change (see [`policy_key`]); set by
    /// [`guard_usage`].
    pub change: Vec<u8>,
    /// [`Family::possibly_used`] of `family`, taken when the detector
    /// built the candidate with the family in hand.
    pub possibly_used: bool,
}

impl Candidate {
    fn label_scoped(&self) -> bool {
        self.label.is_some()
    }
}

/// Lower is more certain: the winner among findings with one policy.
fn rank(finding: &Finding) -> u8 {
    match (finding.kind, finding.domain) {
        (kind::UNUSED_METRIC, _) => 0,
        (kind::DUPLICATE_METRIC, _) => 1,
        (kind::DEBUG_METRIC, _) => 2,
        (kind::EXCESSIVE_HISTOGRAM_BUCKETS, _) => 3,
        (kind::ID_LABEL, domain::COMPLIANCE) => 0,
        (kind::HIGH_CARDINALITY_LABEL, _) => 1,
        _ => 2,
    }
}

/// What a recommended policy selects and does, independent of its id and
/// wording: equal keys mean the same change.
fn policy_key(request: &CreatePolicyRequest) -> Vec<u8> {
    match request.policy.as_ref().and_then(|p| p.target.as_ref()) {
        Some(Target::Metric(target)) => target.encode_to_vec(),
        _ => Vec::new(),
    }
}

fn fold_into(winner: &mut Finding, loser: Finding) {
    winner
        .evidence
        .notes
        .push(format!("also {}: {}", loser.kind, loser.title));
    winner.absorbed.push((loser.kind, loser.subject));
    winner.absorbed.extend(loser.absorbed);
}

/// One finding per recommended change (see the module docs), in a stable
/// order.
fn settle(mut candidates: Vec<Candidate>) -> Vec<Finding> {
    // Family findings first, so a label finding can fold into its family's
    // unused finding; then the most certain first, so it is the one kept.
    candidates.sort_by(|a, b| {
        a.label_scoped()
            .cmp(&b.label_scoped())
            .then_with(|| rank(&a.finding).cmp(&rank(&b.finding)))
            .then_with(|| a.finding.subject.cmp(&b.finding.subject))
    });
    let mut kept: Vec<Candidate> = Vec::new();
    let mut by_policy: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut unused: HashMap<String, usize> = HashMap::new();
    for candidate in candidates {
        if let Some(&i) = by_policy.get(&candidate.change) {
            fold_into(&mut kept[i].finding, candidate.finding);
            continue;
        }
        if candidate.label_scoped()
            && candidate.finding.domain == domain::COST
            && let Some(&i) = unused.get(&candidate.family)
        {
            fold_into(&mut kept[i].finding, candidate.finding);
            continue;
        }
        if candidate.finding.kind == kind::UNUSED_METRIC {
            unused.insert(candidate.family.clone(), kept.len());
        }
        by_policy.insert(candidate.change.clone(), kept.len());
        kept.push(candidate);
    }
    let mut findings: Vec<Finding> = kept.into_iter().map(|c| c.finding).collect();
    findings.sort_by(|a, b| a.subject.cmp(&b.subject).then(a.kind.cmp(b.kind)));
    findings
}

/// `1.2 GiB`, for summaries: the CLI's own unit function, so an issue's
/// summary and its estimate read the same.
pub(crate) use tero_sdk::units::binary_bytes as human_bytes;

/// `$12.34/month`, for summaries.
fn dollars(cost_per_month: f64) -> String {
    format!("${cost_per_month:.2}/month")
}

/// The volume clause every summary shares.
fn volume_clause(estimate: &ImpactEstimate) -> String {
    format!(
        "{} series, {}/day, about {}",
        estimate.series,
        human_bytes(estimate.bytes_per_day),
        dollars(estimate.cost_per_month)
    )
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    /// A small service with one finding of most kinds.
    fn checkout() -> ServiceInventory {
        let mut requests = family("http_requests_total", "counter", 100);
        requests.sample_bytes = 8_000;
        requests.labels = vec![
            label("path", 1_200, 100, &["/cart/1", "/cart/2"]),
            label("method", 3, 100, &["GET"]),
        ];
        let mut rpc = family("rpc_duration_seconds", "histogram", 10);
        rpc.bucket_count = 40;
        let mut inv = inventory(vec![
            requests,
            rpc,
            family("debug_queue_depth", "gauge", 50),
            family("cache_size", "gauge", 50),
        ]);
        inv.scrapes_per_minute = 2.0;
        inv
    }

    fn usage() -> FakeUsage {
        FakeUsage::imported()
            .used("http_requests_total", &["method"])
            .used("rpc_duration_seconds", &[])
            .unknown("cache_size")
    }

    #[test]
    fn a_small_service_yields_exactly_its_findings() {
        let findings = run(&checkout(), &usage());
        assert_eq!(
            kinds(&findings),
            [
                ("unused_metric", "debug_queue_depth"),
                ("high_cardinality_label", "http_requests_total{path}"),
                ("excessive_histogram_buckets", "rpc_duration_seconds"),
            ]
        );

        let unused = &findings[0];
        // 50 series × 100 bytes × 2 scrapes a minute × 1440 minutes.
        assert_eq!(unused.estimate.bytes_per_day, 14_400_000);
        // 14.4e6 × 30 / 1e9 × $0.50 + 50 × $0.01.
        assert!((unused.estimate.cost_per_month - 0.716).abs() < 1e-9);
        assert_eq!(unused.estimate.confidence, "high");
        assert!(
            unused
                .evidence
                .notes
                .iter()
                .any(|n| n.starts_with("also debug_metric")),
            "{:?}",
            unused.evidence.notes
        );

        let path = &findings[1];
        // Every series carries `path`: the whole family, nothing apportioned.
        assert_eq!(path.estimate.series, 100);
        assert_eq!(path.estimate.bytes_per_day, 23_040_000);
        assert!((path.estimate.cost_per_month - 1.3456).abs() < 1e-9);
        assert_eq!(path.estimate.confidence, "high");
        assert_eq!(path.evidence.scrapes_per_minute, 2.0);
        assert_eq!(path.evidence.sample_bytes_per_scrape, 8_000);

        assert_eq!(findings[2].severity, "low");

        // Only the unread family gets a policy: `path`'s series and the
        // histogram are read by the rules, so dropping them would empty them.
        assert!(unused.recommended.is_some());
        assert!(path.recommended.is_none() && findings[2].recommended.is_none());
        assert!(
            path.summary.contains("aggregate `path` away"),
            "{}",
            path.summary
        );
        // Summaries use the CLI's binary units: 14.4e6 bytes is 13.7 MiB.
        assert!(
            unused.summary.contains("13.7 MiB/day"),
            "{}",
            unused.summary
        );
    }

    #[test]
    fn output_does_not_depend_on_inventory_order() {
        let mut reversed = checkout();
        reversed.families.reverse();
        assert_eq!(run(&checkout(), &usage()), run(&reversed, &usage()));
    }

    #[test]
    fn without_usage_data_nothing_is_unused_and_the_rest_is_lowered() {
        let findings = run(&checkout(), &FakeUsage::none());
        assert_eq!(
            kinds(&findings),
            [
                ("debug_metric", "debug_queue_depth"),
                ("high_cardinality_label", "http_requests_total{path}"),
                ("excessive_histogram_buckets", "rpc_duration_seconds"),
            ]
        );
        for f in &findings {
            assert!(f.evidence.usage_sources.is_empty());
            assert!(f.evidence.labels.iter().all(|l| !l.used_in_queries));
        }
    }

    #[test]
    fn every_threshold_is_recorded_in_provenance() {
        let findings = run(&checkout(), &usage());
        let path = find(
            &findings,
            "high_cardinality_label",
            "http_requests_total{path}",
        )
        .unwrap();
        for t in [
            "high_cardinality=1000",
            "high_cost_per_month=100",
            "medium_cost_per_month=10",
            "per_gb=0.5",
            "per_series_month=0.01",
        ] {
            assert!(
                path.provenance.thresholds.contains(&t.to_owned()),
                "{t}: {:?}",
                path.provenance.thresholds
            );
        }
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_023), "1023 B");
        assert_eq!(human_bytes(1_536), "1.5 KiB");
        // 14.4e6 bytes: 13.7 MiB, as `tero issues show` prints the estimate.
        assert_eq!(human_bytes(14_400_000), "13.7 MiB");
        assert_eq!(dollars(0.716), "$0.72/month");
    }
}

//! Log and trace detectors: pure functions from one service's classified
//! event types (log templates, span patterns) and its edges' volume to
//! findings, each with evidence, an estimate and a recommended policy.
//!
//! The input ([`EventInventory`] and what it holds) is built from the
//! store by the analyst (`Analyst::event_inventory`); everything here is
//! free of I/O, so the detectors are tested on hand-built inventories.
//!
//! | Kind | Domain | Fires when | Recommended |
//! |---|---|---|---|
//! | `debug_logs` | cost | verdict `waste`, category `debug_noise` | `none` at DEBUG/TRACE level; else `1/s` from 10 records/s per edge, `10%` below |
//! | `health_check_logs`, `synthetic_logs`, `bot_logs`, `duplicate_logs` | cost | verdict `waste`, category `health_check`, `synthetic_test`, `bot_traffic`, `duplicate` | `none` |
//! | `noisy_logs` | signal quality | verdict `mixed` | `10%`, never a drop |
//! | `health_check_spans`, `synthetic_spans`, `bot_spans` | cost | a span pattern with verdict `waste`, category `health_check`, `synthetic_test`, `bot_traffic` | trace `percentage: 0`, failing spans kept |
//! | `sensitive_log_data` | compliance | the edges' recognisers flagged secrets or personal data in a field | keep all, `redact` per recogniser |
//! | `duplicated_log_fields` | cost | two attributes carry the same value | keep all, `remove` the duplicate |
//!
//! Classifications below `min_confidence`, verdicts `keep` and `unknown`,
//! and event types without measurable volume raise nothing. Span patterns
//! raise only the three waste kinds above: a trace policy can sample but
//! not transform, and a `mixed` or `debug_noise` span is better fixed in
//! the instrumentation than sampled blindly. Waste findings are keyed by
//! the event type's fingerprint, field findings by the field (`body`,
//! `attribute:<key>`). Matchers are checked against the stored
//! examples before they are recommended ([`matcher`]); when none passes, the
//! finding carries no policy and its summary says why. Findings recommending
//! the same change are folded into one, as for metrics. The output does not
//! depend on the order of the input.

mod estimate;
mod fields;
mod matcher;
mod recommend;
mod sensitive;
mod spans;
mod waste;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use prost::Message;
use tero_proto::controlplane::{Classification, EventType, Evidence, Provenance};
use tero_proto::policy::policy::Target;

use super::{Finding, Prices, Severity, Thresholds, human_bytes};
use estimate::{Signal, Totals, Volume};

/// Detector names for logs and traces (`Issue.kind`).
pub mod kind {
    pub const DEBUG_LOGS: &str = "debug_logs";
    pub const HEALTH_CHECK_LOGS: &str = "health_check_logs";
    pub const SYNTHETIC_LOGS: &str = "synthetic_logs";
    pub const BOT_LOGS: &str = "bot_logs";
    pub const DUPLICATE_LOGS: &str = "duplicate_logs";
    /// A `mixed` verdict: sample, never drop.
    pub const NOISY_LOGS: &str = "noisy_logs";
    pub const SENSITIVE_LOG_DATA: &str = "sensitive_log_data";
    pub const DUPLICATED_LOG_FIELDS: &str = "duplicated_log_fields";
    pub const HEALTH_CHECK_SPANS: &str = "health_check_spans";
    pub const SYNTHETIC_SPANS: &str = "synthetic_spans";
    pub const BOT_SPANS: &str = "bot_spans";
    pub const ALL: [&str; 11] = [
        DEBUG_LOGS,
        HEALTH_CHECK_LOGS,
        SYNTHETIC_LOGS,
        BOT_LOGS,
        DUPLICATE_LOGS,
        NOISY_LOGS,
        SENSITIVE_LOG_DATA,
        DUPLICATED_LOG_FIELDS,
        HEALTH_CHECK_SPANS,
        SYNTHETIC_SPANS,
        BOT_SPANS,
    ];
}

/// One stored log or span event type (`event.kind` is `log` or `span`;
/// canonical ones only, never aliases) with its classification valid for
/// the current classifier chain, if any.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClassifiedEvent {
    pub event: EventType,
    pub classification: Option<Classification>,
    /// The classification run that decided it (`Classification.run_id`).
    pub run_id: u64,
}

/// What the service's edges reported as volume (spec 1.7.1 `VolumeStats`)
/// over the window, per day. Zero when no edge of the service reported any.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceVolume {
    pub log_records_per_day: f64,
    pub log_bytes_per_day: f64,
    pub spans_per_day: f64,
    pub span_bytes_per_day: f64,
    /// Instance ids of the service's edges, and how many reported volume.
    pub edges: Vec<String>,
    pub edges_reporting: u32,
}

/// One service's log and span event types, as the detectors see them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventInventory {
    pub service: String,
    pub events: Vec<ClassifiedEvent>,
    pub volume: ServiceVolume,
    /// The window the volume covers (Unix ms).
    pub from_unix_ms: i64,
    pub to_unix_ms: i64,
}

/// What makes a log or span finding worth an issue.
#[derive(Debug, Clone, PartialEq)]
pub struct EventThresholds {
    /// Classifications below this confidence raise nothing
    /// (`--issue-min-confidence`). Default 0.7.
    pub min_confidence: f64,
}

impl Default for EventThresholds {
    fn default() -> Self {
        EventThresholds {
            min_confidence: 0.7,
        }
    }
}

/// Runs every log and trace detector over one service. `thresholds` gives
/// the severity bands shared with metrics; `prices.per_gb_logs` prices
/// log and span bytes.
pub fn detect(
    inventory: &EventInventory,
    events: &EventThresholds,
    thresholds: &Thresholds,
    prices: &Prices,
) -> Vec<Finding> {
    let ctx = Ctx::new(inventory, events, thresholds, prices);
    let mut candidates = Vec::new();
    for event in &ctx.logs {
        candidates.extend(waste::detect(&ctx, event));
    }
    for event in &ctx.spans {
        candidates.extend(spans::detect(&ctx, event));
    }
    candidates.extend(sensitive::detect(&ctx));
    candidates.extend(fields::detect(&ctx));
    settle(candidates)
}

/// What every detector reads: the inventory with its event types sorted
/// (by fingerprint, one per fingerprint) and the sampled totals per signal.
struct Ctx<'a> {
    pub inventory: &'a EventInventory,
    pub events: &'a EventThresholds,
    pub thresholds: &'a Thresholds,
    pub prices: &'a Prices,
    pub logs: Vec<&'a ClassifiedEvent>,
    pub spans: Vec<&'a ClassifiedEvent>,
    pub log_totals: Totals,
    pub span_totals: Totals,
}

impl<'a> Ctx<'a> {
    fn new(
        inventory: &'a EventInventory,
        events: &'a EventThresholds,
        thresholds: &'a Thresholds,
        prices: &'a Prices,
    ) -> Self {
        let mut sorted: Vec<&ClassifiedEvent> = inventory.events.iter().collect();
        sorted.sort_by(|a, b| {
            a.event
                .kind
                .cmp(&b.event.kind)
                .then_with(|| a.event.fingerprint.cmp(&b.event.fingerprint))
                .then_with(|| b.event.count.cmp(&a.event.count))
                .then_with(|| a.event.name.cmp(&b.event.name))
        });
        sorted.dedup_by(|b, a| {
            a.event.kind == b.event.kind && a.event.fingerprint == b.event.fingerprint
        });
        let mut ctx = Ctx {
            inventory,
            events,
            thresholds,
            prices,
            logs: Vec::new(),
            spans: Vec::new(),
            log_totals: Totals::default(),
            span_totals: Totals::default(),
        };
        for e in sorted {
            match e.event.kind.as_str() {
                "log" => {
                    ctx.log_totals.add(&e.event);
                    ctx.logs.push(e);
                }
                "span" => {
                    ctx.span_totals.add(&e.event);
                    ctx.spans.push(e);
                }
                _ => {}
            }
        }
        ctx
    }

    pub fn service(&self) -> &str {
        &self.inventory.service
    }

    pub fn totals(&self, signal: Signal) -> Totals {
        match signal {
            Signal::Log => self.log_totals,
            Signal::Span => self.span_totals,
        }
    }

    /// The whole event type's volume; `None` when not measurable.
    pub fn volume(&self, event: &ClassifiedEvent, signal: Signal) -> Option<Volume> {
        estimate::event_volume(
            &event.event,
            signal,
            self.totals(signal),
            &self.inventory.volume,
        )
    }

    /// The other event types of the signal: what a matcher must not match.
    pub fn others(&self, event: &ClassifiedEvent, signal: Signal) -> Vec<&'a EventType> {
        let all = match signal {
            Signal::Log => &self.logs,
            Signal::Span => &self.spans,
        };
        all.iter()
            .filter(|o| o.event.fingerprint != event.event.fingerprint)
            .map(|o| &o.event)
            .collect()
    }

    /// A classification that is confident enough to act on.
    pub fn confident(&self, event: &'a ClassifiedEvent) -> Option<&'a Classification> {
        event
            .classification
            .as_ref()
            .filter(|c| c.confidence >= self.events.min_confidence)
    }

    /// `thresholds` are the detector's own; the confidence threshold, the
    /// price and the severity bands apply to all.
    pub fn provenance(
        &self,
        detector: &str,
        thresholds: Vec<String>,
        classified: Option<(&Classification, u64)>,
        instances: Vec<String>,
    ) -> Provenance {
        let t = self.thresholds;
        let mut all = thresholds;
        all.push(format!("min_confidence={}", self.events.min_confidence));
        all.push(format!("per_gb_logs={}", self.prices.per_gb_logs));
        all.push(format!("high_cost_per_month={}", t.high_cost_per_month));
        all.push(format!("medium_cost_per_month={}", t.medium_cost_per_month));
        let instances = if instances.is_empty() {
            sorted_unique(self.inventory.volume.edges.iter().cloned())
        } else {
            instances
        };
        let (classifier, run) = match classified {
            Some((c, run)) => (c.classifier.clone(), if run > 0 { run } else { c.run_id }),
            None => (String::new(), 0),
        };
        Provenance {
            detector: detector.to_owned(),
            thresholds: all,
            instances,
            inventory_from_unix_ms: self.inventory.from_unix_ms,
            inventory_to_unix_ms: self.inventory.to_unix_ms,
            classifier,
            classification_run: run,
        }
    }
}

/// Example records shown in evidence.
const MAX_EXAMPLES: usize = 5;

/// Evidence of a finding on one whole event type.
fn event_evidence(event: &ClassifiedEvent, volume: &Volume, template: String) -> Evidence {
    let e = &event.event;
    let c = event.classification.clone().unwrap_or_default();
    Evidence {
        template,
        example_records: e.examples.iter().take(MAX_EXAMPLES).cloned().collect(),
        severities: if e.severity.is_empty() {
            Vec::new()
        } else {
            vec![e.severity.clone()]
        },
        edges: sorted_unique(e.edges.iter().cloned()),
        records_per_day: estimate::round(volume.records_per_day),
        bytes_per_day: estimate::round(volume.bytes_per_day),
        category: c.category,
        verdict: c.verdict,
        confidence: c.confidence,
        rationale: c.rationale,
        volume_share: volume.share,
        ..Evidence::default()
    }
}

fn sorted_unique(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = items.into_iter().filter(|s| !s.is_empty()).collect();
    v.sort();
    v.dedup();
    v
}

/// `about 1200 records/day, 3.4 MiB/day, $0.05/month`.
fn volume_clause(records_per_day: u64, bytes_per_day: u64, cost_per_month: f64) -> String {
    format!(
        "about {} records/day, {}/day, ${cost_per_month:.2}/month",
        records_per_day,
        human_bytes(bytes_per_day)
    )
}

/// A template or name shortened for titles.
fn short(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(MAX - 1).collect();
        format!("{cut}…")
    }
}

/// The sentence a finding without a policy ends with.
fn no_policy(why: &str) -> String {
    format!(" No policy is recommended: {why}.")
}

/// A finding with what [`settle`] needs to fold it.
struct Candidate {
    pub finding: Finding,
    /// Lower is more certain: the winner among findings with one change.
    pub rank: u8,
}

/// What a recommended policy selects and does, independent of its id and
/// wording: equal keys mean the same change. Empty without a policy.
fn change_key(finding: &Finding) -> Vec<u8> {
    match finding
        .recommended
        .as_ref()
        .and_then(|r| r.policy.as_ref())
        .and_then(|p| p.target.as_ref())
    {
        Some(Target::Log(t)) => t.encode_to_vec(),
        Some(Target::Trace(t)) => {
            let mut key = vec![b't'];
            key.extend(t.encode_to_vec());
            key
        }
        _ => Vec::new(),
    }
}

/// One finding per recommended change, in a stable order (subject, kind).
fn settle(mut candidates: Vec<Candidate>) -> Vec<Finding> {
    candidates.sort_by(|a, b| {
        a.rank
            .cmp(&b.rank)
            .then_with(|| a.finding.subject.cmp(&b.finding.subject))
            .then_with(|| a.finding.kind.cmp(b.finding.kind))
    });
    let mut kept: Vec<Finding> = Vec::new();
    let mut by_change: HashMap<Vec<u8>, usize> = HashMap::new();
    for candidate in candidates {
        let key = change_key(&candidate.finding);
        if !key.is_empty() {
            if let Some(&i) = by_change.get(&key) {
                let winner = &mut kept[i];
                let loser = candidate.finding;
                winner
                    .evidence
                    .notes
                    .push(format!("also {}: {}", loser.kind, loser.title));
                winner.absorbed.push((loser.kind, loser.subject));
                winner.absorbed.extend(loser.absorbed);
                continue;
            }
            by_change.insert(key, kept.len());
        }
        kept.push(candidate.finding);
    }
    kept.sort_by(|a, b| a.subject.cmp(&b.subject).then(a.kind.cmp(b.kind)));
    kept
}

/// Severity from the estimated monthly cost.
fn cost_severity(ctx: &Ctx, cost_per_month: f64) -> Severity {
    estimate::severity(cost_per_month, ctx.thresholds)
}

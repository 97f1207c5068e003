//! The compiled policy engine.
//!
//! [`Engine::compile`] turns a policy set into one immutable index per
//! signal; evaluating a record then costs a lookup per referenced field plus
//! work proportional to the matchers that fire, nearly independent of the
//! number of policies. [`EngineHandle`] holds the current engine behind an
//! atomic pointer, so evaluation never waits for a reload and a reload never
//! waits for evaluation.
//!
//! Semantics follow the `tero.policy.v1` spec and its conformance suite:
//! one winning policy per record (most restrictive keep, then lowest id),
//! hits for every matching policy when the record is kept, a hit for the
//! winner and misses for the others when it is dropped; transforms from
//! every matching policy on kept logs.
//!
//! Shadow policies (see [`shadow`]) compile into a set of their own that is
//! evaluated after the enforced set: they are counted as usual and name the
//! series they would drop, but never change a decision.

pub(crate) mod compile;
mod index;
mod keep;
mod matchers;
mod rate_limit;
mod record;
mod regex;
mod sampling;
mod scratch;
mod selector;
pub mod shadow;
mod stats;
mod transform;
mod value;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tero_proto::policy::{self as pb, TraceField};

pub use record::{LogView, LogViewMut, MetricView, SpanView, SpanViewMut};
pub use regex::{POLICY_REGEX_BUDGET, SHARED_REGEX_BUDGET};
pub use selector::{AttrPath, LogSelector, MetricSelector, TraceSelector};
pub use shadow::{SHADOW_CAPABILITY, declares_shadow, is_shadow, mode_word};
pub use stats::{
    PolicyRuntime, PolicyStats, StatsDelta, StatsRegistry, VolumeCounters, VolumeDelta,
};
pub use value::FieldValue;

use crate::policy::{PolicyError, Signal};
use compile::{CompiledTarget, MatcherSpec};
use index::{IndexBuilder, LeftOut, MatchIndex};
use keep::{LogKeep, Rank, TraceKeep};
use scratch::{with_matched, with_scratch};

/// What the engine knows about every policy it was given, valid or not.
#[derive(Debug, Clone)]
pub struct PolicyInfo {
    pub id: String,
    pub name: String,
    pub signal: Option<Signal>,
    pub enabled: bool,
    /// Labelled `tero.mode=shadow`: counted, never enforced.
    pub shadow: bool,
    /// Compile errors; a policy with errors is inert.
    pub errors: Vec<PolicyError>,
    pub runtime: Arc<PolicyRuntime>,
}

impl PolicyInfo {
    /// Errors in the form of `PolicySyncStatus.errors`.
    pub fn error_messages(&self) -> Vec<String> {
        self.errors
            .iter()
            .map(PolicyError::status_message)
            .collect()
    }
}

/// A compiled policy of one signal.
struct Slot<A> {
    id: Arc<str>,
    runtime: Arc<PolicyRuntime>,
    rank: Rank,
    action: A,
}

struct SignalSet<S, A> {
    index: MatchIndex<S>,
    slots: Vec<Slot<A>>,
}

impl<S, A> SignalSet<S, A> {
    /// The most restrictive matching policy; ties go to the lowest id, which
    /// is the lowest index because slots are sorted by id.
    fn winner(&self, matched: &[u32]) -> u32 {
        let mut best = matched[0];
        for &p in &matched[1..] {
            if self.slots[p as usize]
                .rank
                .cmp(&self.slots[best as usize].rank)
                .is_lt()
            {
                best = p;
            }
        }
        best
    }

    /// Writes the matching policies (ascending) to `matched` and returns
    /// the winner among them, if any policy matches.
    fn find<'r>(
        &self,
        lookup: impl FnMut(&S) -> Option<FieldValue<'r>>,
        matched: &mut Vec<u32>,
    ) -> Option<u32> {
        matched.clear();
        if self.slots.is_empty() {
            return None;
        }
        with_scratch(|scratch| self.index.matching(lookup, scratch, matched));
        (!matched.is_empty()).then(|| self.winner(matched))
    }

    /// Hit/miss accounting (policy-format.md §5.2).
    fn account(&self, matched: &[u32], winner: u32, kept: bool) {
        for &p in matched {
            let stats = &self.slots[p as usize].runtime.stats;
            if kept || p == winner {
                stats.hit()
            } else {
                stats.miss()
            }
        }
    }
}

impl<S> SignalSet<S, bool> {
    /// Evaluates and counts like an enforced set, but only reports the
    /// winner when it would drop: what a shadow set contributes.
    // Out of line: the enforced path's code stays as small as it was.
    #[inline(never)]
    fn would_drop<'r>(
        &self,
        lookup: impl FnMut(&S) -> Option<FieldValue<'r>>,
        matched: &mut Vec<u32>,
    ) -> Option<u32> {
        let winner = self.find(lookup, matched)?;
        let keep = self.slots[winner as usize].action;
        self.account(matched, winner, keep);
        (!keep).then_some(winner)
    }
}

struct LogAction {
    keep: LogKeep,
    sample_key: Option<LogSelector>,
    transform: transform::Transform,
}

/// An immutable, compiled policy set.
pub struct Engine {
    generation: u64,
    policies: Vec<PolicyInfo>,
    metric: SignalSet<MetricSelector, bool>,
    /// Shadow metric policies: a separate index, so the enforced set's
    /// winners and counts are exactly those it would have alone.
    shadow_metric: SignalSet<MetricSelector, bool>,
    log: SignalSet<LogSelector, LogAction>,
    /// Shadow log and trace policies: evaluated read-only on the record as
    /// it arrived, counted, never enforced and never transforming.
    shadow_log: SignalSet<LogSelector, LogAction>,
    trace: SignalSet<TraceSelector, TraceKeep>,
    shadow_trace: SignalSet<TraceSelector, TraceKeep>,
}

/// The outcome of evaluating a metric (or series).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricVerdict {
    pub keep: bool,
    /// Index of the winning policy among the engine's metric policies.
    winner: Option<u32>,
    matched: Box<[u32]>,
}

impl MetricVerdict {
    /// True when at least one policy matched.
    pub fn matched(&self) -> bool {
        self.winner.is_some()
    }
}

/// A counted metric decision that names its deciding policy without
/// allocating: what a streaming filter needs per series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesDecision {
    pub keep: bool,
    /// Index of the winning metric policy, for [`Engine::metric_stats`].
    pub winner: Option<u32>,
    /// Index of the winning shadow policy when it would drop the series
    /// (whatever `keep` says), for [`Engine::shadow_stats`].
    pub shadow: Option<u32>,
}

/// A counted log or span decision that names its deciding policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordOutcome {
    pub decision: Decision,
    /// Index of the winning enforced policy, for [`Engine::log_stats`] or
    /// [`Engine::trace_stats`].
    pub winner: Option<u32>,
    /// Index of the winning shadow policy when it would drop the record,
    /// for [`Engine::shadow_log_stats`] or [`Engine::shadow_trace_stats`].
    pub shadow: Option<u32>,
}

/// The outcome of evaluating a log record or span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No policy matched.
    NoMatch,
    Keep,
    Drop,
}

impl Decision {
    pub fn keeps(self) -> bool {
        !matches!(self, Decision::Drop)
    }
}

impl Engine {
    /// An engine with no policies.
    pub fn empty() -> Self {
        Engine::compile(&[], &StatsRegistry::new())
    }

    /// Compiles `policies`. Invalid policies are kept with their errors and
    /// are inert; the others compile and run. Counters come from `registry`,
    /// so a policy keeps its counts across recompiles.
    pub fn compile(policies: &[pb::Policy], registry: &StatsRegistry) -> Engine {
        let mut ordered: Vec<&pb::Policy> = policies.iter().collect();
        // Byte-wise id order: the tie-break and transform order of the spec.
        ordered.sort_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));

        let mut infos = Vec::with_capacity(ordered.len());
        let mut metric = SetBuilder::new(Signal::Metric);
        let mut shadow_metric = SetBuilder::new(Signal::Metric);
        let mut log = SetBuilder::new(Signal::Log);
        let mut shadow_log = SetBuilder::new(Signal::Log);
        let mut trace = SetBuilder::new(Signal::Trace);
        let mut shadow_trace = SetBuilder::new(Signal::Trace);
        let mut seen_ids = std::collections::HashSet::new();
        let mut sizes = compile::SizeMemo::default();

        for policy in ordered {
            let runtime = registry.runtime(&policy.id);
            let mut errors = Vec::new();
            if let Some(missing) = compile::missing_id(policy) {
                errors.push(missing);
            } else if !seen_ids.insert(policy.id.as_str()) {
                errors.push(PolicyError::new(
                    None,
                    Vec::new(),
                    Some("id"),
                    "duplicate id in this policy set",
                ));
            }
            let compiled = compile::compile_policy_with(policy, &mut sizes);
            let signal = crate::policy::signal_of(policy);
            let shadow = is_shadow(policy);
            let mut info = PolicyInfo {
                id: policy.id.clone(),
                name: policy.name.clone(),
                signal,
                enabled: policy.enabled,
                shadow,
                errors,
                runtime: runtime.clone(),
            };
            match compiled {
                Err(mut e) => info.errors.append(&mut e),
                Ok(_) if !info.errors.is_empty() || !policy.enabled => {}
                Ok(CompiledTarget::Metric { matchers, keep }) => {
                    let rank = if keep {
                        Rank::keep_all()
                    } else {
                        Rank::drop_all()
                    };
                    let set = if shadow {
                        &mut shadow_metric
                    } else {
                        &mut metric
                    };
                    set.add(&policy.id, runtime, rank, keep, matchers);
                }
                Ok(CompiledTarget::Log {
                    matchers,
                    keep,
                    sample_key,
                    transform,
                }) => {
                    if let LogKeep::Rate { limit, window_ms } = keep {
                        runtime.limiter.configure(limit, window_ms);
                    }
                    let set = if shadow { &mut shadow_log } else { &mut log };
                    set.add(
                        &policy.id,
                        runtime,
                        keep.rank(),
                        LogAction {
                            keep,
                            sample_key,
                            transform,
                        },
                        matchers,
                    );
                }
                Ok(CompiledTarget::Trace { matchers, keep }) => {
                    let set = if shadow {
                        &mut shadow_trace
                    } else {
                        &mut trace
                    };
                    set.add(&policy.id, runtime, keep.rank(), keep, matchers);
                }
            }
            infos.push(info);
        }
        let live: std::collections::HashSet<&str> = infos.iter().map(|i| i.id.as_str()).collect();
        registry.retain(&|id| live.contains(id));

        let (metric, mut failed) = metric.build();
        let (shadow_metric, more) = shadow_metric.build();
        failed.extend(more);
        let (log, more) = log.build();
        failed.extend(more);
        let (shadow_log, more) = shadow_log.build();
        failed.extend(more);
        let (trace, more) = trace.build();
        failed.extend(more);
        let (shadow_trace, more) = shadow_trace.build();
        failed.extend(more);
        for (id, error) in failed {
            tracing::warn!(policy = %id, error = %error, "policy left out of the matcher index; the other policies run");
            // The indexed copy of an id is the one without errors.
            if let Some(info) = infos
                .iter_mut()
                .find(|info| *info.id == *id && info.errors.is_empty())
            {
                info.errors.push(error);
            }
        }

        static GENERATION: AtomicU64 = AtomicU64::new(1);
        Engine {
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            policies: infos,
            metric,
            shadow_metric,
            log,
            shadow_log,
            trace,
            shadow_trace,
        }
    }

    /// A process-unique number for this compiled set (cache keys).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every policy given to [`Engine::compile`], in id order.
    pub fn policies(&self) -> &[PolicyInfo] {
        &self.policies
    }

    /// Number of enabled, valid metric policies, shadow ones included:
    /// what a data plane must evaluate (0 enables raw fast paths).
    pub fn metric_policy_count(&self) -> usize {
        self.metric.slots.len() + self.shadow_metric.slots.len()
    }

    /// Number of enabled, valid shadow metric policies.
    pub fn shadow_metric_policy_count(&self) -> usize {
        self.shadow_metric.slots.len()
    }

    pub fn log_policy_count(&self) -> usize {
        self.log.slots.len()
    }

    pub fn trace_policy_count(&self) -> usize {
        self.trace.slots.len()
    }

    /// The metric selectors loaded policies read: a view needs to decode
    /// only these fields.
    pub fn metric_selectors(&self) -> impl Iterator<Item = &MetricSelector> {
        self.metric
            .index
            .selectors()
            .chain(self.shadow_metric.index.selectors())
    }

    /// Counts one filtered scrape (or batch) for every active metric
    /// policy, shadow ones included. A data plane calls it once per unit of
    /// work it evaluated, so that counts divide into per-scrape figures.
    pub fn record_scrape(&self) {
        for slot in self.metric.slots.iter().chain(&self.shadow_metric.slots) {
            slot.runtime.stats.scrape();
        }
    }

    /// Counts one pushed batch (an export request) of `signal` for every
    /// policy of that signal, as [`Engine::record_scrape`] does for scrapes.
    pub fn record_batch(&self, signal: Signal) {
        match signal {
            Signal::Metric => self.record_scrape(),
            Signal::Log => {
                for slot in self.log.slots.iter().chain(&self.shadow_log.slots) {
                    slot.runtime.stats.scrape();
                }
            }
            Signal::Trace => {
                for slot in self.trace.slots.iter().chain(&self.shadow_trace.slots) {
                    slot.runtime.stats.scrape();
                }
            }
        }
    }

    /// Evaluates without counting. Pair with [`Engine::record_metric`]; a
    /// verdict can be cached for this engine generation. Shadow policies
    /// take no part: only [`Engine::decide_metric`] evaluates them.
    pub fn metric_verdict<V: MetricView + ?Sized>(&self, view: &V) -> MetricVerdict {
        with_matched(|matched| match self.metric.find(|s| view.get(s), matched) {
            None => MetricVerdict {
                keep: true,
                winner: None,
                matched: Box::default(),
            },
            Some(winner) => MetricVerdict {
                keep: self.metric.slots[winner as usize].action,
                winner: Some(winner),
                matched: matched.as_slice().into(),
            },
        })
    }

    /// Counts a verdict's hits and misses (once per evaluated series).
    pub fn record_metric(&self, verdict: &MetricVerdict) {
        if let Some(winner) = verdict.winner {
            self.metric.account(&verdict.matched, winner, verdict.keep);
        }
    }

    /// The counters of the policy that decided `verdict`, if any.
    pub fn metric_winner_stats(&self, verdict: &MetricVerdict) -> Option<&PolicyStats> {
        verdict
            .winner
            .map(|w| &self.metric.slots[w as usize].runtime.stats)
    }

    /// The id of the policy that decided `verdict`, if any.
    pub fn metric_winner_id(&self, verdict: &MetricVerdict) -> Option<&str> {
        verdict.winner.map(|w| &*self.metric.slots[w as usize].id)
    }

    /// Evaluates and counts like [`Engine::evaluate_metric`], and names the
    /// deciding policy so that a data plane can attribute what it drops
    /// (see [`Engine::metric_stats`]). Allocates nothing.
    ///
    /// Shadow policies are evaluated as a set of their own after the
    /// enforced one, and counted the same way; their winner is reported in
    /// `shadow` when it would drop. They never change `keep` or `winner`.
    pub fn decide_metric<V: MetricView + ?Sized>(&self, view: &V) -> SeriesDecision {
        with_matched(|matched| {
            let mut decision = match self.metric.find(|s| view.get(s), matched) {
                None => SeriesDecision {
                    keep: true,
                    winner: None,
                    shadow: None,
                },
                Some(winner) => {
                    let keep = self.metric.slots[winner as usize].action;
                    self.metric.account(matched, winner, keep);
                    SeriesDecision {
                        keep,
                        winner: Some(winner),
                        shadow: None,
                    }
                }
            };
            if !self.shadow_metric.slots.is_empty() {
                decision.shadow = self.shadow_metric.would_drop(|s| view.get(s), matched);
            }
            decision
        })
    }

    /// The counters of the metric policy a [`SeriesDecision`] names.
    pub fn metric_stats(&self, winner: u32) -> &PolicyStats {
        &self.metric.slots[winner as usize].runtime.stats
    }

    /// The counters of the shadow policy a [`SeriesDecision::shadow`]
    /// names: a data plane records there what the policy would drop.
    pub fn shadow_stats(&self, shadow: u32) -> &PolicyStats {
        &self.shadow_metric.slots[shadow as usize].runtime.stats
    }

    /// The id of the shadow policy a [`SeriesDecision::shadow`] names.
    pub fn shadow_id(&self, shadow: u32) -> &str {
        &self.shadow_metric.slots[shadow as usize].id
    }

    /// Evaluates and counts: true if the metric is kept.
    pub fn evaluate_metric<V: MetricView + ?Sized>(&self, view: &V) -> bool {
        self.decide_metric(view).keep
    }

    /// Evaluates a log record: decides keep, counts, and applies the
    /// transforms of every matching policy to a kept record.
    pub fn evaluate_log<V: LogViewMut + ?Sized>(&self, record: &mut V) -> Decision {
        self.decide_log(record).decision
    }

    /// Evaluates a log record like [`Engine::evaluate_log`] and names the
    /// deciding policy, so a data plane can attribute what it drops (see
    /// [`Engine::log_stats`]). Shadow log policies are evaluated first, on
    /// the record as it arrived, without changing it; `shadow` names the
    /// one that would drop it.
    pub fn decide_log<V: LogViewMut + ?Sized>(&self, record: &mut V) -> RecordOutcome {
        let shadow = if self.shadow_log.slots.is_empty() {
            None
        } else {
            with_matched(|matched| {
                let winner = self.shadow_log.find(|s| record.get(s), matched)?;
                let kept = log_keeps(&self.shadow_log.slots[winner as usize], &*record);
                self.shadow_log.account(matched, winner, kept);
                (!kept).then_some(winner)
            })
        };
        let (decision, winner) = with_matched(|matched| self.decide_log_in(record, matched));
        RecordOutcome {
            decision,
            winner,
            shadow,
        }
    }

    /// The counters of the enforced log policy a [`RecordOutcome`] names.
    pub fn log_stats(&self, winner: u32) -> &PolicyStats {
        &self.log.slots[winner as usize].runtime.stats
    }

    /// The counters of the shadow log policy a [`RecordOutcome::shadow`]
    /// names.
    pub fn shadow_log_stats(&self, shadow: u32) -> &PolicyStats {
        &self.shadow_log.slots[shadow as usize].runtime.stats
    }

    /// The counters of the enforced trace policy a [`RecordOutcome`] names.
    pub fn trace_stats(&self, winner: u32) -> &PolicyStats {
        &self.trace.slots[winner as usize].runtime.stats
    }

    /// The counters of the shadow trace policy a [`RecordOutcome::shadow`]
    /// names.
    pub fn shadow_trace_stats(&self, shadow: u32) -> &PolicyStats {
        &self.shadow_trace.slots[shadow as usize].runtime.stats
    }

    fn decide_log_in<V: LogViewMut + ?Sized>(
        &self,
        record: &mut V,
        matched: &mut Vec<u32>,
    ) -> (Decision, Option<u32>) {
        let Some(winner) = self.log.find(|s| record.get(s), matched) else {
            return (Decision::NoMatch, None);
        };
        let slot = &self.log.slots[winner as usize];
        let kept = log_keeps(slot, &*record);
        self.log.account(matched, winner, kept);
        if !kept {
            return (Decision::Drop, Some(winner));
        }
        // Policies in id order, each running its stages in the normative
        // order remove, redact, rename, add. (The spec's prose orders stages
        // across policies; the conformance suite, and every reference engine,
        // apply policy by policy, so later ids see earlier ids' results.)
        for &p in matched.iter() {
            let slot = &self.log.slots[p as usize];
            if !slot.action.transform.is_empty() {
                transform::apply(&slot.action.transform, record, &slot.runtime.stats);
            }
        }
        (Decision::Keep, Some(winner))
    }

    /// Evaluates a span: decides keep with consistent probability sampling,
    /// counts, and records the applied threshold in the tracestate.
    pub fn evaluate_span<V: SpanViewMut + ?Sized>(&self, span: &mut V) -> Decision {
        self.decide_span(span).decision
    }

    /// Evaluates a span like [`Engine::evaluate_span`] and names the
    /// deciding policy. Shadow trace policies are evaluated first, without
    /// writing the tracestate; `shadow` names the one that would drop it.
    pub fn decide_span<V: SpanViewMut + ?Sized>(&self, span: &mut V) -> RecordOutcome {
        let shadow = if self.shadow_trace.slots.is_empty() {
            None
        } else {
            with_matched(|matched| {
                let winner = self.shadow_trace.find(|s| span.get(s), matched)?;
                let mut read_only = ReadOnlySpan(&*span);
                let kept = sample_span(
                    &self.shadow_trace.slots[winner as usize].action,
                    &mut read_only,
                );
                self.shadow_trace.account(matched, winner, kept);
                (!kept).then_some(winner)
            })
        };
        with_matched(|matched| {
            let Some(winner) = self.trace.find(|s| span.get(s), matched) else {
                return RecordOutcome {
                    decision: Decision::NoMatch,
                    winner: None,
                    shadow,
                };
            };
            let kept = sample_span(&self.trace.slots[winner as usize].action, span);
            self.trace.account(matched, winner, kept);
            RecordOutcome {
                decision: if kept { Decision::Keep } else { Decision::Drop },
                winner: Some(winner),
                shadow,
            }
        })
    }
}

/// A span seen by a shadow policy: sampling reads it, and the tracestate it
/// would record is discarded.
struct ReadOnlySpan<'a, V: ?Sized>(&'a V);

impl<V: SpanView + ?Sized> SpanView for ReadOnlySpan<'_, V> {
    fn get(&self, selector: &TraceSelector) -> Option<FieldValue<'_>> {
        self.0.get(selector)
    }
}

impl<V: SpanView + ?Sized> SpanViewMut for ReadOnlySpan<'_, V> {
    fn set_trace_state(&mut self, _trace_state: String) {}
}

/// The keep decision of a matched log policy (sampling and rate limits
/// included). Reads the record, never changes it.
fn log_keeps<V: LogView + ?Sized>(slot: &Slot<LogAction>, record: &V) -> bool {
    match slot.action.keep {
        LogKeep::All => true,
        LogKeep::None => false,
        LogKeep::Percent(p) => match slot.action.sample_key.as_ref() {
            Some(key) => match record
                .get(key)
                .filter(|v| !v.is_empty())
                .as_ref()
                .and_then(FieldValue::key_text)
            {
                Some(text) => sampling::key_randomness(&text) >= sampling::threshold(p / 100.0),
                // No key value: keep (fail-open), as reference engines do.
                None => true,
            },
            None => fastrand::f64() * 100.0 < p,
        },
        LogKeep::Rate { limit, window_ms } => slot.runtime.limiter.admit(limit, window_ms),
    }
}

fn text_of(value: Option<FieldValue<'_>>) -> Option<String> {
    value
        .filter(|v| !v.is_empty())
        .and_then(|v| v.text().map(|t| t.into_owned()))
}

/// The keep decision of a trace policy (policy-format.md §1.6, OTel consistent
/// probability sampling), writing `th` into the tracestate of kept spans.
fn sample_span<V: SpanViewMut + ?Sized>(keep: &TraceKeep, span: &mut V) -> bool {
    let cfg = match keep {
        TraceKeep::Unconfigured => return true,
        TraceKeep::None => return false,
        TraceKeep::All => {
            let state = text_of(span.get(&TraceSelector::Field(TraceField::TraceState)))
                .unwrap_or_default();
            span.set_trace_state(sampling::with_threshold(&state, "0"));
            return true;
        }
        TraceKeep::Sample(cfg) => cfg,
    };
    let state =
        text_of(span.get(&TraceSelector::Field(TraceField::TraceState))).unwrap_or_default();
    let rv = sampling::ot_value(&state, "rv");
    let incoming = sampling::ot_value(&state, "th");
    // An upstream threshold the randomness contradicts: keep the span as it
    // is rather than act on inconsistent state.
    if let (Some(rv), Some(th)) = (rv, incoming)
        && rv < th
    {
        return true;
    }
    let trace_id = text_of(span.get(&TraceSelector::Field(TraceField::TraceId)));
    let id_randomness = || trace_id.as_deref().and_then(sampling::id_randomness);
    let (randomness, threshold) = match cfg.mode {
        pb::SamplingMode::Proportional => {
            let incoming_p = incoming.map_or(1.0, sampling::probability);
            (
                rv.or_else(id_randomness),
                sampling::threshold((cfg.probability * incoming_p).clamp(0.0, 1.0)),
            )
        }
        pb::SamplingMode::Equalizing => {
            if let Some(th) = incoming.filter(|&th| th >= cfg.threshold) {
                if rv.or_else(id_randomness).is_none() {
                    return !cfg.fail_closed;
                }
                span.set_trace_state(sampling::with_threshold(
                    &state,
                    &sampling::encode_threshold(th, cfg.precision),
                ));
                return true;
            }
            (rv.or_else(id_randomness), cfg.threshold)
        }
        _ => {
            let r = if cfg.hash_seed == 0 {
                rv.or_else(id_randomness)
            } else {
                trace_id.as_deref().filter(|id| id.len() >= 14).map(|id| {
                    sampling::fnv1a(&[id.as_bytes(), &cfg.hash_seed.to_le_bytes()])
                        & (sampling::MAX_THRESHOLD - 1)
                })
            };
            (r, cfg.threshold)
        }
    };
    let Some(r) = randomness else {
        return !cfg.fail_closed;
    };
    if r < threshold {
        return false;
    }
    span.set_trace_state(sampling::with_threshold(
        &state,
        &sampling::encode_threshold(threshold, cfg.precision),
    ));
    true
}

/// The policies of one set, indexed together once all are known.
struct SetBuilder<S, A> {
    signal: Signal,
    entries: Vec<(Slot<A>, Vec<MatcherSpec<S>>)>,
}

/// A policy a set could not index with the others, and why.
type Failed = (Arc<str>, PolicyError);

impl<S: Clone + Eq + std::hash::Hash, A> SetBuilder<S, A> {
    fn new(signal: Signal) -> Self {
        Self {
            signal,
            entries: Vec::new(),
        }
    }

    fn add(
        &mut self,
        id: &str,
        runtime: Arc<PolicyRuntime>,
        rank: Rank,
        action: A,
        matchers: Vec<MatcherSpec<S>>,
    ) {
        let slot = Slot {
            id: Arc::from(id),
            runtime,
            rank,
            action,
        };
        self.entries.push((slot, matchers));
    }

    fn index(
        entries: &[(Slot<A>, Vec<MatcherSpec<S>>)],
    ) -> Result<(MatchIndex<S>, Vec<LeftOut>), String> {
        let mut builder = IndexBuilder::new();
        for (_, matchers) in entries {
            let p = builder.policy();
            for m in matchers {
                builder.matcher(
                    p,
                    m.selector.clone(),
                    m.pattern.clone(),
                    m.negated,
                    m.location.clone(),
                );
            }
        }
        builder.build()
    }

    /// Indexes the policies together. One policy must never take the
    /// others down with it: a policy whose matchers do not fit in a shared
    /// automaton, or with which the index cannot be built at all, is left
    /// out and returned with its error, and the set is rebuilt without it.
    /// Policies are added in id order, so which one is left out does not
    /// depend on delivery order.
    fn build(self) -> (SignalSet<S, A>, Vec<Failed>) {
        let signal = self.signal;
        let mut entries = self.entries;
        let mut failed = Vec::new();
        loop {
            match Self::index(&entries) {
                Ok((index, left_out)) if left_out.is_empty() => {
                    let slots = entries.into_iter().map(|(slot, _)| slot).collect();
                    return (SignalSet { index, slots }, failed);
                }
                Ok((_, mut left_out)) => {
                    left_out.sort_by_key(|l| std::cmp::Reverse(l.policy));
                    for l in left_out {
                        let (slot, _) = entries.remove(l.policy as usize);
                        let error =
                            PolicyError::new(Some(signal), l.location, Some("regex"), l.reason);
                        failed.push((slot.id, error));
                    }
                }
                Err(reason) => {
                    // The shortest failing prefix ends with a policy that
                    // cannot join the ones before it.
                    let (mut builds, mut fails) = (0, entries.len());
                    while fails - builds > 1 {
                        let mid = builds + (fails - builds) / 2;
                        if Self::index(&entries[..mid]).is_ok() {
                            builds = mid;
                        } else {
                            fails = mid;
                        }
                    }
                    let (slot, _) = entries.remove(fails - 1);
                    let error = PolicyError::new(
                        Some(signal),
                        Vec::new(),
                        None,
                        format!(
                            "the Edge cannot index this policy's matchers with those of policies with lower ids ({reason}); this policy is not run"
                        ),
                    );
                    failed.push((slot.id, error));
                }
            }
        }
    }
}

/// The current engine, swapped atomically on reload.
pub struct EngineHandle {
    current: ArcSwap<Engine>,
    registry: StatsRegistry,
}

impl Default for EngineHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl EngineHandle {
    pub fn new() -> Self {
        Self {
            current: ArcSwap::from_pointee(Engine::empty()),
            registry: StatsRegistry::new(),
        }
    }

    /// The engine to evaluate with. Cheap; hold it for one unit of work (a
    /// scrape, a batch) so the whole unit sees one policy set.
    pub fn load(&self) -> Arc<Engine> {
        self.current.load_full()
    }

    /// Compiles `policies` and makes them current. Counters of ids present
    /// before and after carry over.
    pub fn replace(&self, policies: &[pb::Policy]) -> Arc<Engine> {
        let engine = Arc::new(Engine::compile(policies, &self.registry));
        self.current.store(engine.clone());
        engine
    }

    /// The counters behind every policy this handle has compiled.
    pub fn registry(&self) -> &StatsRegistry {
        &self.registry
    }
}

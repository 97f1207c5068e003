//! From field values to matching policies.
//!
//! A policy matches when all of its positive matchers hold and none of its
//! negated matchers' inner conditions hold (policy-format.md §3.1).
//!
//! Crediting every matcher that fires would make a common condition such
//! as `service.name = checkout`, shared by hundreds of policies, cost work
//! for each of them on every record. Instead each policy contributes one
//! *anchor*, its most selective positive matcher, to the per-field automata;
//! only when the anchor fires are the policy's remaining matchers checked
//! one by one. Evaluation cost then follows the number of candidate
//! policies, which stays small however many policies are loaded. Policies
//! without a positive matcher (all negated) are checked on every record;
//! they are rare.

use std::collections::HashMap;
use std::hash::Hash;

use rustc_hash::FxHashMap;

use super::matchers::{FieldIndex, MatcherId, Pattern, RegexCache, Single};
use super::scratch::Scratch;
use super::value::FieldValue;
use crate::policy::PathSeg;

pub(crate) struct MatchIndex<S> {
    selectors: Vec<S>,
    /// Per field, the automata over the anchors reading it.
    anchors: Vec<(usize, FieldIndex)>,
    /// Anchor matcher → its policy.
    anchor_policy: Vec<u32>,
    /// Per policy, the matchers checked after its anchor fired.
    residual: Vec<Vec<Residual>>,
    /// Policies without a positive matcher.
    unconditional: Vec<u32>,
}

struct Residual {
    selector: usize,
    test: Single,
    negated: bool,
}

/// Collects matchers while compiling.
pub(crate) struct IndexBuilder<S> {
    selectors: Vec<S>,
    slot_of: FxHashMap<S, usize>,
    policies: Vec<Vec<(usize, Pattern, bool)>>,
    /// Where each matcher is in its policy, as `policies` is laid out.
    locations: Vec<Vec<Vec<PathSeg>>>,
}

/// A policy the index had to leave out: which matcher, and why.
pub(crate) struct LeftOut {
    pub(crate) policy: u32,
    pub(crate) location: Vec<PathSeg>,
    pub(crate) reason: String,
}

/// How often a pattern class is expected to fire, relative to an exact
/// match; used to pick anchors.
fn firing_weight(pattern: &Pattern) -> u64 {
    use super::matchers::TextOp::*;
    match pattern {
        Pattern::Text { op: Exact, .. } | Pattern::Typed(_) | Pattern::Never => 1,
        Pattern::Text {
            op: Prefix | Suffix,
            ..
        } => 2,
        Pattern::Text {
            op: Contains | Regex,
            ..
        } => 3,
        Pattern::Compare(..) => 4,
        Pattern::Exists => 16,
    }
}

impl<S: Clone + Eq + Hash> IndexBuilder<S> {
    pub(crate) fn new() -> Self {
        Self {
            selectors: Vec::new(),
            slot_of: FxHashMap::default(),
            policies: Vec::new(),
            locations: Vec::new(),
        }
    }

    /// Registers a policy; its matchers follow through [`Self::matcher`].
    pub(crate) fn policy(&mut self) -> u32 {
        self.policies.push(Vec::new());
        self.locations.push(Vec::new());
        (self.policies.len() - 1) as u32
    }

    pub(crate) fn matcher(
        &mut self,
        policy: u32,
        selector: S,
        pattern: Pattern,
        negated: bool,
        location: Vec<PathSeg>,
    ) {
        let slot = match self.slot_of.get(&selector) {
            Some(&slot) => slot,
            None => {
                self.selectors.push(selector.clone());
                self.slot_of.insert(selector, self.selectors.len() - 1);
                self.selectors.len() - 1
            }
        };
        self.policies[policy as usize].push((slot, pattern, negated));
        self.locations[policy as usize].push(location);
    }

    /// Builds the index. Policies whose anchor did not fit in a shared
    /// automaton come back in the second member: they can never match in
    /// this index, and the caller rebuilds without them.
    pub(crate) fn build(self) -> Result<(MatchIndex<S>, Vec<LeftOut>), String> {
        // How many policies share each positive (field, pattern): an anchor
        // shared by many policies makes all of them candidates at once.
        let key = |slot: usize, p: &Pattern| format!("{slot}:{p:?}");
        let mut sharing: HashMap<String, u64> = HashMap::new();
        for matchers in &self.policies {
            for (slot, pattern, negated) in matchers {
                if !negated {
                    *sharing.entry(key(*slot, pattern)).or_default() += 1;
                }
            }
        }

        let mut groups: FxHashMap<usize, Vec<(MatcherId, Pattern)>> = FxHashMap::default();
        let mut group_order = Vec::new();
        let mut anchor_policy = Vec::new();
        let mut anchor_location = Vec::new();
        let mut residual = Vec::with_capacity(self.policies.len());
        let mut unconditional = Vec::new();
        let mut cache = RegexCache::default();
        let locations = self.locations;
        for (policy, matchers) in self.policies.into_iter().enumerate() {
            let anchor = matchers
                .iter()
                .enumerate()
                .filter(|(_, (_, _, negated))| !negated)
                .min_by_key(|(_, (slot, pattern, _))| {
                    sharing[&key(*slot, pattern)] * firing_weight(pattern)
                })
                .map(|(i, _)| i);
            let mut rest = Vec::new();
            for (i, (slot, pattern, negated)) in matchers.into_iter().enumerate() {
                if Some(i) == anchor {
                    let id = anchor_policy.len() as MatcherId;
                    anchor_policy.push(policy as u32);
                    anchor_location.push(locations[policy][i].clone());
                    groups
                        .entry(slot)
                        .or_insert_with(|| {
                            group_order.push(slot);
                            Vec::new()
                        })
                        .push((id, pattern));
                } else {
                    rest.push(Residual {
                        selector: slot,
                        test: Single::build(pattern, &mut cache)?,
                        negated,
                    });
                }
            }
            if anchor.is_none() {
                unconditional.push(policy as u32);
            }
            residual.push(rest);
        }
        let mut anchors = Vec::with_capacity(group_order.len());
        let mut left_out = Vec::new();
        for slot in group_order {
            let patterns = groups.remove(&slot).unwrap_or_default();
            let (index, rejected) = FieldIndex::build(patterns, &mut cache)?;
            anchors.push((slot, index));
            left_out.extend(rejected.into_iter().map(|(id, reason)| LeftOut {
                policy: anchor_policy[id as usize],
                location: anchor_location[id as usize].clone(),
                reason,
            }));
        }
        let index = MatchIndex {
            selectors: self.selectors,
            anchors,
            anchor_policy,
            residual,
            unconditional,
        };
        Ok((index, left_out))
    }
}

impl<S> MatchIndex<S> {
    /// Every selector the compiled policies read.
    pub(crate) fn selectors(&self) -> impl Iterator<Item = &S> {
        self.selectors.iter()
    }

    /// Writes the indices of matching policies, ascending, to `out`.
    pub(crate) fn matching<'r>(
        &self,
        mut lookup: impl FnMut(&S) -> Option<FieldValue<'r>>,
        scratch: &mut Scratch,
        out: &mut Vec<u32>,
    ) {
        out.clear();
        if self.residual.is_empty() {
            return;
        }
        scratch.begin(self.anchor_policy.len());
        for (slot, index) in &self.anchors {
            let value = lookup(&self.selectors[*slot]);
            index.collect(value.as_ref(), scratch);
        }
        // Each policy has one anchor and fired matchers are unique, so a
        // policy is examined at most once here.
        for &m in &scratch.fired {
            let policy = self.anchor_policy[m as usize];
            if self.residual_holds(policy, &mut lookup) {
                out.push(policy);
            }
        }
        for &policy in &self.unconditional {
            if self.residual_holds(policy, &mut lookup) {
                out.push(policy);
            }
        }
        out.sort_unstable();
    }

    fn residual_holds<'r>(
        &self,
        policy: u32,
        lookup: &mut impl FnMut(&S) -> Option<FieldValue<'r>>,
    ) -> bool {
        self.residual[policy as usize].iter().all(|r| {
            let value = lookup(&self.selectors[r.selector]);
            r.test.holds(value.as_ref()) != r.negated
        })
    }
}

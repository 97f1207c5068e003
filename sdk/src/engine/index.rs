//! From field values to matching policies.
//!
//! A policy matches when all of its positive matchers hold and none of its
//! negated matchers' inner conditions hold (spec §3.1). The index runs each
//! field's [`FieldIndex`] once, then credits or vetoes the owners of the
//! matchers that fired. Policies whose matchers are all negated are
//! candidates without any credit and are checked separately; they are rare.

use std::hash::Hash;

use rustc_hash::FxHashMap;

use super::matchers::{FieldIndex, MatcherId, Pattern};
use super::scratch::Scratch;
use super::value::FieldValue;

pub(crate) struct MatchIndex<S> {
    fields: Vec<(S, FieldIndex)>,
    matcher_policy: Vec<u32>,
    matcher_negated: Vec<bool>,
    /// Positive matchers each policy needs.
    required: Vec<u32>,
    /// Policies with no positive matcher.
    unconditional: Vec<u32>,
}

/// Collects matchers while compiling, grouped by field.
pub(crate) struct IndexBuilder<S> {
    groups: FxHashMap<S, Vec<(MatcherId, Pattern)>>,
    order: Vec<S>,
    matcher_policy: Vec<u32>,
    matcher_negated: Vec<bool>,
    required: Vec<u32>,
}

impl<S: Clone + Eq + Hash> IndexBuilder<S> {
    pub(crate) fn new() -> Self {
        Self {
            groups: FxHashMap::default(),
            order: Vec::new(),
            matcher_policy: Vec::new(),
            matcher_negated: Vec::new(),
            required: Vec::new(),
        }
    }

    /// Registers a policy; its matchers follow through [`Self::matcher`].
    pub(crate) fn policy(&mut self) -> u32 {
        self.required.push(0);
        (self.required.len() - 1) as u32
    }

    pub(crate) fn matcher(&mut self, policy: u32, selector: S, pattern: Pattern, negated: bool) {
        let id = self.matcher_policy.len() as MatcherId;
        self.matcher_policy.push(policy);
        self.matcher_negated.push(negated);
        if !negated {
            self.required[policy as usize] += 1;
        }
        match self.groups.get_mut(&selector) {
            Some(list) => list.push((id, pattern)),
            None => {
                self.order.push(selector.clone());
                self.groups.insert(selector, vec![(id, pattern)]);
            }
        }
    }

    pub(crate) fn build(mut self) -> Result<MatchIndex<S>, String> {
        let mut fields = Vec::with_capacity(self.order.len());
        for selector in self.order {
            let patterns = self.groups.remove(&selector).unwrap_or_default();
            fields.push((selector, FieldIndex::build(patterns)?));
        }
        let unconditional = (0..self.required.len() as u32)
            .filter(|&p| self.required[p as usize] == 0)
            .collect();
        Ok(MatchIndex {
            fields,
            matcher_policy: self.matcher_policy,
            matcher_negated: self.matcher_negated,
            required: self.required,
            unconditional,
        })
    }
}

impl<S> MatchIndex<S> {
    pub(crate) fn policy_count(&self) -> usize {
        self.required.len()
    }

    /// The selectors the compiled policies read, in first-use order.
    pub(crate) fn selectors(&self) -> impl Iterator<Item = &S> {
        self.fields.iter().map(|(s, _)| s)
    }

    /// Writes the indices of matching policies, ascending, to `out`.
    pub(crate) fn matching<'r>(
        &self,
        mut lookup: impl FnMut(&S) -> Option<FieldValue<'r>>,
        scratch: &mut Scratch,
        out: &mut Vec<u32>,
    ) {
        out.clear();
        if self.required.is_empty() {
            return;
        }
        scratch.begin(self.matcher_policy.len(), self.required.len());
        for (selector, index) in &self.fields {
            let value = lookup(selector);
            index.collect(value.as_ref(), scratch);
        }
        for i in 0..scratch.fired.len() {
            let m = scratch.fired[i] as usize;
            let policy = self.matcher_policy[m];
            if self.matcher_negated[m] {
                scratch.veto(policy)
            } else {
                scratch.credit(policy)
            }
        }
        for &p in &scratch.touched {
            let (hits, vetoed) = scratch.tally(p);
            if !vetoed && hits == self.required[p as usize] && hits > 0 {
                out.push(p);
            }
        }
        for &p in &self.unconditional {
            if !scratch.tally(p).1 {
                out.push(p);
            }
        }
        out.sort_unstable();
    }
}

//! Per-thread working memory for one evaluation.
//!
//! Resetting per-policy counters for every record would cost O(policies);
//! instead each slot carries the epoch in which it was last written and is
//! treated as zero when the epoch differs. Only slots touched by fired
//! matchers are ever read.

use std::cell::RefCell;

use super::matchers::MatcherId;

#[derive(Default)]
pub(crate) struct Scratch {
    epoch: u32,
    matcher_epoch: Vec<u32>,
    policy_epoch: Vec<u32>,
    policy_hits: Vec<u32>,
    policy_vetoed: Vec<bool>,
    /// Matchers whose inner condition held, each once.
    pub(crate) fired: Vec<MatcherId>,
    /// Policies with at least one fired matcher.
    pub(crate) touched: Vec<u32>,
    pub(crate) folded: String,
    pub(crate) reversed: String,
    pub(crate) candidates: Vec<u32>,
    pub(crate) literal_hits: Vec<u32>,
    pub(crate) matched: Vec<u32>,
}

impl Scratch {
    /// Starts an evaluation against an engine of the given dimensions.
    pub(crate) fn begin(&mut self, matchers: usize, policies: usize) {
        if self.matcher_epoch.len() < matchers {
            self.matcher_epoch.resize(matchers, 0);
        }
        if self.policy_epoch.len() < policies {
            self.policy_epoch.resize(policies, 0);
            self.policy_hits.resize(policies, 0);
            self.policy_vetoed.resize(policies, false);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            // Wrapped: stale stamps could collide with new epochs.
            self.matcher_epoch.iter_mut().for_each(|e| *e = 0);
            self.policy_epoch.iter_mut().for_each(|e| *e = 0);
            self.epoch = 1;
        }
        self.fired.clear();
        self.touched.clear();
    }

    /// Records that matcher `id`'s inner condition holds (idempotent).
    #[inline]
    pub(crate) fn fire(&mut self, id: MatcherId) {
        let slot = &mut self.matcher_epoch[id as usize];
        if *slot != self.epoch {
            *slot = self.epoch;
            self.fired.push(id);
        }
    }

    /// Counts a satisfied positive matcher of `policy`.
    #[inline]
    pub(crate) fn credit(&mut self, policy: u32) {
        let p = policy as usize;
        self.touch(p);
        self.policy_hits[p] += 1;
    }

    /// Marks `policy` as excluded by a negated matcher whose inner held.
    #[inline]
    pub(crate) fn veto(&mut self, policy: u32) {
        let p = policy as usize;
        self.touch(p);
        self.policy_vetoed[p] = true;
    }

    #[inline]
    fn touch(&mut self, p: usize) {
        if self.policy_epoch[p] != self.epoch {
            self.policy_epoch[p] = self.epoch;
            self.policy_hits[p] = 0;
            self.policy_vetoed[p] = false;
            self.touched.push(p as u32);
        }
    }

    /// (satisfied positive matchers, vetoed) for `policy` in this evaluation.
    #[inline]
    pub(crate) fn tally(&self, policy: u32) -> (u32, bool) {
        let p = policy as usize;
        if self.policy_epoch[p] == self.epoch {
            (self.policy_hits[p], self.policy_vetoed[p])
        } else {
            (0, false)
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch space. Re-entrant calls (a record
/// view that itself evaluates policies) get a fresh one instead of panicking.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        Err(_) => f(&mut Scratch::default()),
    })
}

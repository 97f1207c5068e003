//! Per-thread working memory for one evaluation.
//!
//! Resetting a "fired" flag per matcher for every record would cost
//! O(matchers); instead each slot carries the epoch in which it was last set
//! and counts as unset when the epoch differs.

use std::cell::RefCell;

use super::matchers::MatcherId;

#[derive(Default)]
pub(crate) struct Scratch {
    epoch: u32,
    matcher_epoch: Vec<u32>,
    /// Matchers whose inner condition held, each once.
    pub(crate) fired: Vec<MatcherId>,
    pub(crate) folded: String,
    pub(crate) reversed: String,
    pub(crate) candidates: Vec<u32>,
}

impl Scratch {
    /// Starts an evaluation against an index of `matchers` anchors.
    pub(crate) fn begin(&mut self, matchers: usize) {
        if self.matcher_epoch.len() < matchers {
            self.matcher_epoch.resize(matchers, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            // Wrapped: stale stamps could collide with new epochs.
            self.matcher_epoch.iter_mut().for_each(|e| *e = 0);
            self.epoch = 1;
        }
        self.fired.clear();
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
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
    static MATCHED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's buffer for the indices of matching
/// policies, kept apart from [`Scratch`] so that a caller can hold it while
/// mutating the record (transforms) after matching is done.
pub(crate) fn with_matched<R>(f: impl FnOnce(&mut Vec<u32>) -> R) -> R {
    MATCHED.with(|cell| match cell.try_borrow_mut() {
        Ok(mut matched) => f(&mut matched),
        Err(_) => f(&mut Vec::new()),
    })
}

/// Runs `f` with this thread's scratch space. Re-entrant calls (a record
/// view that itself evaluates policies) get a fresh one instead of panicking.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        Err(_) => f(&mut Scratch::default()),
    })
}

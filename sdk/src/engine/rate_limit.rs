//! Fixed-window rate limiting without locks.
//!
//! The window index and the count share one atomic word, so a check is one
//! compare-and-swap. State is per process (policy-format.md §4.4) and survives policy
//! reloads as long as the policy keeps the same limit.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    /// High 32 bits: window index; low 32 bits: records admitted in it.
    state: AtomicU64,
    /// The (limit, window) the state was built for; a change resets it.
    spec: AtomicU64,
}

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl RateLimiter {
    /// Adopts a limit, resetting the window if it differs from the last one.
    pub(crate) fn configure(&self, limit: u32, window_ms: u64) {
        let spec = (u64::from(limit) << 32) ^ window_ms;
        if self.spec.swap(spec, Ordering::AcqRel) != spec {
            self.state.store(0, Ordering::Release);
        }
    }

    /// Admits one record if the current window has room.
    pub(crate) fn admit(&self, limit: u32, window_ms: u64) -> bool {
        // Window indices start at 1 so that the zeroed state means "no window".
        let window = (now_ms() / window_ms.max(1) + 1) & 0xffff_ffff;
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            let (w, count) = (current >> 32, current & 0xffff_ffff);
            let next = if w != window {
                (window << 32) | 1
            } else if count < u64::from(limit) {
                current + 1
            } else {
                return false;
            };
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_per_window() {
        let limiter = RateLimiter::default();
        limiter.configure(3, 60_000);
        let admitted = (0..10).filter(|_| limiter.admit(3, 60_000)).count();
        assert_eq!(admitted, 3);
    }

    #[test]
    fn concurrent_admissions_never_exceed_the_limit() {
        let limiter = std::sync::Arc::new(RateLimiter::default());
        limiter.configure(1000, 60_000);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = limiter.clone();
                std::thread::spawn(move || (0..1000).filter(|_| l.admit(1000, 60_000)).count())
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 1000);
    }

    #[test]
    fn a_new_window_starts_over() {
        let limiter = RateLimiter::default();
        limiter.configure(1, 20);
        assert!(limiter.admit(1, 20));
        assert!(!limiter.admit(1, 20));
        std::thread::sleep(std::time::Duration::from_millis(45));
        assert!(limiter.admit(1, 20));
    }
}

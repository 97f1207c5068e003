//! What pushes may hold in memory at once.
//!
//! A push is filtered whole, so its body is held from the first byte read
//! to the last byte sent upstream. Two bounds keep the sum of those small
//! whatever the number of clients: a budget of body bytes
//! (`intake.max_buffered_bytes`) reserved before a body is read (its
//! declared length, else `max_body_size`) and kept until it has gone
//! upstream, and a limit of one decode-filter-encode step per core at a
//! time, each holding its decoded payload and output. A push that finds no
//! room waits, its body unread, so TCP holds the client back; if it waits
//! past its deadline it is answered 503 and the client retries.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A budget of bytes, counted in KiB (a semaphore counts in `u32`).
pub struct ByteBudget {
    permits: Arc<Semaphore>,
    total_kib: u32,
}

impl ByteBudget {
    pub fn new(bytes: u64) -> Self {
        let total_kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, Semaphore::MAX_PERMITS as u32);
        ByteBudget {
            permits: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// Waits for `bytes` of the budget (all of it for a body larger than
    /// the budget, which then goes alone), held until the permit drops.
    /// `None` only if the budget were closed, which it never is.
    pub async fn reserve(&self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_kib);
        self.permits.clone().acquire_many_owned(kib).await.ok()
    }
}

/// Decode-filter-encode steps at once: one per core, since each is CPU
/// work and more would only hold more payloads in memory.
pub fn processing_slots() -> Arc<Semaphore> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Arc::new(Semaphore::new(cores.max(2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_wait_for_room_and_a_large_one_takes_it_all() {
        let budget = ByteBudget::new(10 * 1024);
        let a = budget.reserve(6 * 1024).await.unwrap();
        let b = budget.reserve(4 * 1024).await.unwrap();
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), budget.reserve(1)).await;
        assert!(waiting.is_err(), "the budget is spent");
        drop(a);
        let c = budget.reserve(1).await.unwrap();
        drop(b);
        drop(c);
        // Larger than the whole budget: waits for all of it, then goes.
        let all = budget.reserve(1 << 30).await.unwrap();
        assert_eq!(all.num_permits(), 10);
    }
}

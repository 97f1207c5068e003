//! Per-policy counters that survive reloads and are read as deltas.
//!
//! Counters are plain atomics: evaluation increments them without locks, and
//! a reporter takes a delta with one `swap(0)` per counter, so no increment
//! is ever lost or counted twice even while evaluation runs. A report that
//! fails to send can be put back with [`PolicyStats::restore`]. The
//! [`StatsRegistry`] hands the same counters to every compiled engine that
//! contains the policy id, as the spec requires across reloads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use super::rate_limit::RateLimiter;

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Live counters of one policy.
        #[derive(Debug, Default)]
        pub struct PolicyStats {
            $(pub(crate) $name: AtomicU64,)*
        }

        /// A snapshot or delta of [`PolicyStats`].
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct StatsDelta {
            $(pub $name: u64,)*
        }

        impl PolicyStats {
            /// Reads and resets every counter (a delta since the last take).
            pub fn take(&self) -> StatsDelta {
                StatsDelta { $($name: self.$name.swap(0, Relaxed),)* }
            }

            /// Reads without resetting.
            pub fn peek(&self) -> StatsDelta {
                StatsDelta { $($name: self.$name.load(Relaxed),)* }
            }

            /// Adds a delta back, e.g. one whose report could not be sent.
            pub fn restore(&self, delta: &StatsDelta) {
                $(self.$name.fetch_add(delta.$name, Relaxed);)*
            }
        }

        impl StatsDelta {
            pub fn is_zero(&self) -> bool {
                true $(&& self.$name == 0)*
            }

            /// Sums two deltas (merging unsent reports).
            pub fn merge(&mut self, other: &StatsDelta) {
                $(self.$name += other.$name;)*
            }
        }
    };
}

counters!(
    match_hits,
    match_misses,
    remove_hits,
    remove_misses,
    redact_hits,
    redact_misses,
    rename_hits,
    rename_misses,
    add_hits,
    add_misses,
    // Filled in by data planes that know sizes (the Edge): what the policy
    // removed, per series/record and in bytes.
    records_dropped,
    bytes_dropped,
    // Filtered scrapes (or batches) the policy was loaded for, so that
    // per-scrape figures do not depend on the scrape interval.
    scrapes,
);

impl PolicyStats {
    #[inline]
    pub(crate) fn hit(&self) {
        self.match_hits.fetch_add(1, Relaxed);
    }

    #[inline]
    pub(crate) fn miss(&self) {
        self.match_misses.fetch_add(1, Relaxed);
    }

    #[inline]
    pub(crate) fn scrape(&self) {
        self.scrapes.fetch_add(1, Relaxed);
    }

    /// Counts what a winning drop removed (for a shadow policy: what it
    /// would have removed).
    #[inline]
    pub fn record_drop(&self, records: u64, bytes: u64) {
        self.records_dropped.fetch_add(records, Relaxed);
        self.bytes_dropped.fetch_add(bytes, Relaxed);
    }
}

/// Records entering evaluation per signal, matched or not: the spec's
/// `VolumeStats` (policy-format.md §1.8). Bytes are the uncompressed OTLP
/// protobuf size of the records as received; a data plane that sees another
/// encoding (Prometheus text, Datadog JSON, OTLP JSON) adds records only.
#[derive(Debug, Default)]
pub struct VolumeCounters {
    log_records: AtomicU64,
    log_bytes: AtomicU64,
    metric_data_points: AtomicU64,
    metric_bytes: AtomicU64,
    spans: AtomicU64,
    span_bytes: AtomicU64,
}

/// A delta of [`VolumeCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VolumeDelta {
    pub log_records: u64,
    pub log_bytes: u64,
    pub metric_data_points: u64,
    pub metric_bytes: u64,
    pub spans: u64,
    pub span_bytes: u64,
}

impl VolumeCounters {
    pub fn add_logs(&self, records: u64, bytes: u64) {
        self.log_records.fetch_add(records, Relaxed);
        self.log_bytes.fetch_add(bytes, Relaxed);
    }

    pub fn add_metric_data_points(&self, points: u64, bytes: u64) {
        self.metric_data_points.fetch_add(points, Relaxed);
        self.metric_bytes.fetch_add(bytes, Relaxed);
    }

    pub fn add_spans(&self, spans: u64, bytes: u64) {
        self.spans.fetch_add(spans, Relaxed);
        self.span_bytes.fetch_add(bytes, Relaxed);
    }

    /// Reads and resets (a delta since the last take).
    pub fn take(&self) -> VolumeDelta {
        VolumeDelta {
            log_records: self.log_records.swap(0, Relaxed),
            log_bytes: self.log_bytes.swap(0, Relaxed),
            metric_data_points: self.metric_data_points.swap(0, Relaxed),
            metric_bytes: self.metric_bytes.swap(0, Relaxed),
            spans: self.spans.swap(0, Relaxed),
            span_bytes: self.span_bytes.swap(0, Relaxed),
        }
    }

    /// Reads without resetting.
    pub fn peek(&self) -> VolumeDelta {
        VolumeDelta {
            log_records: self.log_records.load(Relaxed),
            log_bytes: self.log_bytes.load(Relaxed),
            metric_data_points: self.metric_data_points.load(Relaxed),
            metric_bytes: self.metric_bytes.load(Relaxed),
            spans: self.spans.load(Relaxed),
            span_bytes: self.span_bytes.load(Relaxed),
        }
    }

    /// Adds a delta back: one a report over an acknowledged channel could
    /// not deliver. (A plain sync must not: the spec forbids replaying the
    /// volume of a failed sync.)
    pub fn restore(&self, delta: &VolumeDelta) {
        self.add_logs(delta.log_records, delta.log_bytes);
        self.add_metric_data_points(delta.metric_data_points, delta.metric_bytes);
        self.add_spans(delta.spans, delta.span_bytes);
    }
}

impl VolumeDelta {
    pub fn is_zero(&self) -> bool {
        *self == VolumeDelta::default()
    }

    pub fn merge(&mut self, other: &VolumeDelta) {
        self.log_records += other.log_records;
        self.log_bytes += other.log_bytes;
        self.metric_data_points += other.metric_data_points;
        self.metric_bytes += other.metric_bytes;
        self.spans += other.spans;
        self.span_bytes += other.span_bytes;
    }

    /// The wire form, `None` when nothing was seen (the field stays unset).
    pub fn to_proto(&self) -> Option<tero_proto::policy::VolumeStats> {
        let wire = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        (!self.is_zero()).then(|| tero_proto::policy::VolumeStats {
            log_records: wire(self.log_records),
            log_bytes: wire(self.log_bytes),
            metric_data_points: wire(self.metric_data_points),
            metric_bytes: wire(self.metric_bytes),
            spans: wire(self.spans),
            span_bytes: wire(self.span_bytes),
        })
    }
}

/// Counters and limiter state that belong to a policy id, not to one
/// compiled engine.
#[derive(Debug, Default)]
pub struct PolicyRuntime {
    pub stats: PolicyStats,
    pub(crate) limiter: RateLimiter,
}

/// Hands out [`PolicyRuntime`]s by policy id.
#[derive(Debug, Default)]
pub struct StatsRegistry {
    runtimes: Mutex<HashMap<String, Arc<PolicyRuntime>>>,
    volume: VolumeCounters,
}

impl StatsRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// What the data plane saw, whatever the policies: reported with the
    /// per-policy counters.
    pub fn volume(&self) -> &VolumeCounters {
        &self.volume
    }

    /// The runtime of `id`, created on first use.
    pub fn runtime(&self, id: &str) -> Arc<PolicyRuntime> {
        let mut map = self.runtimes.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(id.to_owned()).or_default().clone()
    }

    /// Takes the delta of every known policy, skipping zero ones.
    pub fn take_all(&self) -> Vec<(String, StatsDelta)> {
        let map = self.runtimes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<(String, StatsDelta)> = map
            .iter()
            .map(|(id, rt)| (id.clone(), rt.stats.take()))
            .filter(|(_, d)| !d.is_zero())
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Puts back deltas that could not be delivered.
    pub fn restore(&self, deltas: &[(String, StatsDelta)]) {
        for (id, delta) in deltas {
            self.runtime(id).stats.restore(delta);
        }
    }

    /// Forgets policies that are no longer loaded, unless they still hold
    /// counts that have not been taken yet.
    pub fn retain(&self, live: &dyn Fn(&str) -> bool) {
        let mut map = self.runtimes.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|id, rt| live(id) || !rt.stats.peek().is_zero());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_is_a_delta_and_restore_puts_it_back() {
        let registry = StatsRegistry::new();
        let rt = registry.runtime("a");
        rt.stats.hit();
        rt.stats.hit();
        rt.stats.miss();
        let taken = registry.take_all();
        assert_eq!(taken.len(), 1);
        assert_eq!((taken[0].1.match_hits, taken[0].1.match_misses), (2, 1));
        assert!(registry.take_all().is_empty());
        registry.restore(&taken);
        rt.stats.hit();
        let again = registry.take_all();
        assert_eq!(again[0].1.match_hits, 3);
    }

    #[test]
    fn concurrent_increments_and_takes_lose_nothing() {
        let registry = Arc::new(StatsRegistry::new());
        let rt = registry.runtime("p");
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let rt = rt.clone();
                std::thread::spawn(move || (0..50_000).for_each(|_| rt.stats.hit()))
            })
            .collect();
        let mut total = 0;
        while workers.iter().any(|w| !w.is_finished()) {
            total += registry
                .take_all()
                .iter()
                .map(|(_, d)| d.match_hits)
                .sum::<u64>();
        }
        workers.into_iter().for_each(|w| w.join().unwrap());
        total += registry
            .take_all()
            .iter()
            .map(|(_, d)| d.match_hits)
            .sum::<u64>();
        assert_eq!(total, 200_000);
    }
}

//! Statistics ingestion with group commit.
//!
//! Handlers hand their deltas to one writer task and wait for the commit
//! that includes them, so a poll's response (or a stream's StatsAck) is
//! only sent once its counters are durable, while a busy fleet still costs
//! one transaction per batch of reports rather than one per report.

use std::collections::BTreeMap;
use std::sync::Arc;

use tero_proto::controlplane::PolicyCounters;
use tero_proto::policy::VolumeStats;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::store::{CounterDelta, EdgeVolume, StatsBatch, Store, StoreError, VolumeCounts, now_ms};

/// Reports waiting for a commit beyond this make callers wait for room.
const QUEUE: usize = 4096;
/// Reports per transaction at most.
const BATCH: usize = 512;
/// Buckets written per transaction at most (more only when one report
/// holds more): a transaction holds SQLite's only connection, so its
/// length is what an admin call may wait behind.
const BATCH_ROWS: usize = 4096;

type Job = (StatsBatch, oneshot::Sender<Result<bool, String>>);

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("statistics store is shutting down")]
    Closed,
    #[error("statistics could not be stored: {0}")]
    Store(String),
}

#[derive(Debug, Clone)]
pub struct Ingest {
    jobs: mpsc::Sender<Job>,
}

/// The largest delta one report may carry in any counter: 2^40 (about
/// 1.1 × 10^12 hits, or a TiB dropped, per policy per report). Far above
/// what an edge counts between two reports, and low enough that the sum of
/// every status of a request cannot overflow.
pub const MAX_COUNTER_DELTA: i64 = 1 << 40;

/// Why one policy's counters in a report were not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The id is not kept: it may be megabytes long.
    #[error("no such policy")]
    UnknownPolicy,
    #[error(
        "policy {policy_id:?}: {field} is {value}; counters are deltas from 0 to {MAX_COUNTER_DELTA}"
    )]
    InvalidCounter {
        policy_id: String,
        field: &'static str,
        value: i64,
    },
}

/// Why an edge's volume in a report was not stored. The report's other
/// counters are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeRefused {
    #[error(
        "volume.{field} is {value}; volume counts are deltas since the previous report, from 0 to {MAX_COUNTER_DELTA}"
    )]
    InvalidCount { field: &'static str, value: i64 },
}

/// Accumulates deltas per policy, and the edge's volume, for one report.
#[derive(Debug, Default)]
pub struct DeltaBuilder {
    by_policy: BTreeMap<String, CounterDelta>,
    /// (instance id, counts) of the reporting edge.
    volume: Option<(String, VolumeCounts)>,
    /// Why the report's volume was refused, if it was.
    pub volume_refused: Option<VolumeRefused>,
    /// Statuses refused because their policy does not exist.
    pub unknown: u64,
    /// Statuses refused for a negative or absurd counter, and the first
    /// reason (for the log).
    pub invalid: u64,
    pub first_invalid: Option<Refused>,
}

impl DeltaBuilder {
    /// Adds the counters an edge reported for one policy, unless the policy
    /// is not one `known` accepts or a counter is out of bounds: those are
    /// refused, counted here, and the rest of the report is stored.
    pub fn add_reported(
        &mut self,
        known: impl Fn(&str) -> bool,
        policy_id: &str,
        [hits, misses, bytes, series, scrapes]: [i64; 5],
    ) -> Result<(), Refused> {
        if !known(policy_id) {
            self.unknown += 1;
            return Err(Refused::UnknownPolicy);
        }
        let result = self.add_with_scrapes(policy_id, hits, misses, bytes, series, scrapes);
        if let Err(refused) = &result {
            self.invalid += 1;
            self.first_invalid.get_or_insert_with(|| refused.clone());
        }
        result
    }

    /// Adds a stream report's counters, scrapes included, with the checks of
    /// [`Self::add_reported`]. A shadow policy's drops are what it would have
    /// dropped; they are stored as drops, the policy's mode telling them
    /// apart.
    pub fn add_counters(
        &mut self,
        known: impl Fn(&str) -> bool,
        p: &PolicyCounters,
    ) -> Result<(), Refused> {
        self.add_reported(
            known,
            &p.policy_id,
            [
                p.hits,
                p.misses,
                p.bytes_dropped,
                p.series_dropped,
                p.scrapes,
            ],
        )
    }

    /// Adds counters with the scrapes they were counted over. A negative
    /// or absurd counter (a client bug, or a key holder trying to break the
    /// statistics) refuses the policy's whole entry.
    pub fn add_with_scrapes(
        &mut self,
        policy_id: &str,
        hits: i64,
        misses: i64,
        bytes: i64,
        series: i64,
        scrapes: i64,
    ) -> Result<(), Refused> {
        for (field, value) in [
            ("hits", hits),
            ("misses", misses),
            ("bytes_dropped", bytes),
            ("series_dropped", series),
            ("scrapes", scrapes),
        ] {
            if !(0..=MAX_COUNTER_DELTA).contains(&value) {
                return Err(Refused::InvalidCounter {
                    policy_id: policy_id.to_owned(),
                    field,
                    value,
                });
            }
        }
        if hits == 0 && misses == 0 && bytes == 0 && series == 0 && scrapes == 0 {
            return Ok(());
        }
        let d = self
            .by_policy
            .entry(policy_id.to_owned())
            .or_insert_with(|| CounterDelta {
                policy_id: policy_id.to_owned(),
                ..Default::default()
            });
        d.hits = d.hits.saturating_add(hits);
        d.misses = d.misses.saturating_add(misses);
        d.bytes_dropped = d.bytes_dropped.saturating_add(bytes);
        d.series_dropped = d.series_dropped.saturating_add(series);
        d.scrapes = d.scrapes.saturating_add(scrapes);
        Ok(())
    }

    /// Adds the volume edge `instance` reported (spec 1.7.1). Input from
    /// an edge key holder is low-trust: a negative or absurd count (beyond
    /// [`MAX_COUNTER_DELTA`], more than any edge sees between two reports)
    /// refuses the whole volume, as its other counts are then suspect too,
    /// and is remembered for the log. Nothing is stored for all zeros.
    pub fn add_volume(&mut self, instance: &str, v: &VolumeStats) -> Result<(), VolumeRefused> {
        for (field, value) in [
            ("log_records", v.log_records),
            ("log_bytes", v.log_bytes),
            ("metric_data_points", v.metric_data_points),
            ("metric_bytes", v.metric_bytes),
            ("spans", v.spans),
            ("span_bytes", v.span_bytes),
        ] {
            if !(0..=MAX_COUNTER_DELTA).contains(&value) {
                let refused = VolumeRefused::InvalidCount { field, value };
                self.volume_refused = Some(refused.clone());
                return Err(refused);
            }
        }
        let counts = VolumeCounts {
            log_records: v.log_records,
            log_bytes: v.log_bytes,
            metric_data_points: v.metric_data_points,
            metric_bytes: v.metric_bytes,
            spans: v.spans,
            span_bytes: v.span_bytes,
        };
        if !counts.is_zero() {
            let (_, total) = self
                .volume
                .get_or_insert_with(|| (instance.to_owned(), VolumeCounts::default()));
            total.saturating_add(&counts);
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.by_policy.is_empty() && self.volume.is_none()
    }

    pub fn build(self, report: Option<(String, String, u64)>) -> StatsBatch {
        let minute = now_ms() / 60_000 * 60_000;
        StatsBatch {
            volume: self.volume.map(|(instance_id, counts)| EdgeVolume {
                instance_id,
                minute,
                counts,
            }),
            report,
            deltas: self
                .by_policy
                .into_values()
                .map(|mut d| {
                    d.minute = minute;
                    d
                })
                .collect(),
        }
    }
}

impl Ingest {
    /// Starts the writer; it drains what is queued when `shutdown` fires.
    pub fn start(store: Store, shutdown: CancellationToken) -> (Self, tokio::task::JoinHandle<()>) {
        let (jobs, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(write_loop(store, rx, shutdown));
        (Ingest { jobs }, task)
    }

    /// Stores a batch and returns whether it was applied (`false`: a
    /// duplicate report, already counted).
    pub async fn submit(&self, batch: StatsBatch) -> Result<bool, IngestError> {
        let (done, wait) = oneshot::channel();
        self.jobs
            .send((batch, done))
            .await
            .map_err(|_| IngestError::Closed)?;
        match wait.await {
            Ok(Ok(applied)) => Ok(applied),
            Ok(Err(e)) => Err(IngestError::Store(e)),
            Err(_) => Err(IngestError::Closed),
        }
    }
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<Job>, shutdown: CancellationToken) {
    let store = Arc::new(store);
    loop {
        let first = tokio::select! {
            job = rx.recv() => job,
            _ = shutdown.cancelled() => {
                // Stop accepting, then store what is already queued.
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { return };
        let mut rows = first.0.rows();
        let mut jobs = vec![first];
        while jobs.len() < BATCH && rows < BATCH_ROWS {
            match rx.try_recv() {
                Ok(job) => {
                    rows += job.0.rows();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let batches: Vec<StatsBatch> = jobs.iter().map(|(b, _)| b.clone()).collect();
        match store.apply_stats(&batches, now_ms()).await {
            Ok(applied) => {
                for ((_, done), applied) in jobs.into_iter().zip(applied) {
                    let _ = done.send(Ok(applied));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, reports = jobs.len(), "storing statistics failed");
                let reason = e.to_string();
                for (_, done) in jobs {
                    let _ = done.send(Err(reason.clone()));
                }
            }
        }
    }
}

/// Deletes statistics older than the retention, hourly.
pub async fn prune_loop(store: Store, retention_days: u32, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let cutoff = now_ms() - i64::from(retention_days) * 86_400_000;
        match store.prune_stats(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(buckets = n, retention_days, "old statistics pruned"),
            Err(e) => tracing::warn!(error = %e, "pruning statistics failed"),
        }
    }
}

impl From<StoreError> for IngestError {
    fn from(e: StoreError) -> Self {
        IngestError::Store(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_out_of_bounds_refuse_the_entry_not_the_report() {
        let known = |id: &str| id == "p1" || id == "p2";
        let mut deltas = DeltaBuilder::default();
        assert!(deltas.add_reported(known, "p1", [5, 1, 0, 0, 1]).is_ok());
        assert!(
            deltas
                .add_reported(known, "p1", [MAX_COUNTER_DELTA, 0, 0, 0, 0])
                .is_ok()
        );
        assert_eq!(
            deltas.add_reported(known, "p2", [i64::MAX, 0, 0, 0, 0]),
            Err(Refused::InvalidCounter {
                policy_id: "p2".into(),
                field: "hits",
                value: i64::MAX,
            })
        );
        assert!(matches!(
            deltas.add_reported(known, "p2", [0, 0, -1, 0, 0]),
            Err(Refused::InvalidCounter {
                field: "bytes_dropped",
                ..
            })
        ));
        assert_eq!(
            deltas.add_reported(known, "ghost", [1, 0, 0, 0, 0]),
            Err(Refused::UnknownPolicy)
        );
        assert_eq!((deltas.unknown, deltas.invalid), (1, 2));
        let batch = deltas.build(None);
        assert_eq!(batch.deltas.len(), 1, "only p1 is stored");
        assert_eq!(batch.deltas[0].hits, MAX_COUNTER_DELTA + 5);
    }

    #[test]
    fn a_volume_with_a_negative_or_absurd_count_is_refused_whole() {
        let mut deltas = DeltaBuilder::default();
        let points = |n| VolumeStats {
            metric_data_points: n,
            ..Default::default()
        };
        assert!(deltas.add_volume("e", &VolumeStats::default()).is_ok());
        assert!(deltas.is_empty(), "all zeros store nothing");
        assert_eq!(
            deltas.add_volume("e", &points(-1)),
            Err(VolumeRefused::InvalidCount {
                field: "metric_data_points",
                value: -1,
            })
        );
        let absurd = VolumeStats {
            log_records: 3,
            span_bytes: i64::MAX,
            ..Default::default()
        };
        let refused = deltas.add_volume("e", &absurd).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("volume.span_bytes is 9223372036854775807"),
            "{refused}"
        );
        assert!(deltas.is_empty(), "nothing of a refused volume is kept");
        deltas.add_volume("e", &points(MAX_COUNTER_DELTA)).unwrap();
        deltas.add_volume("e", &points(MAX_COUNTER_DELTA)).unwrap();
        let volume = deltas.build(None).volume.expect("stored");
        assert_eq!(
            (
                volume.instance_id.as_str(),
                volume.counts.metric_data_points
            ),
            ("e", 2 * MAX_COUNTER_DELTA)
        );
        assert_eq!(volume.minute % 60_000, 0);
    }

    #[test]
    fn a_full_report_of_maximal_counters_cannot_overflow() {
        let mut deltas = DeltaBuilder::default();
        for _ in 0..crate::api::sync::MAX_STATUSES {
            deltas
                .add_reported(|_| true, "p", [MAX_COUNTER_DELTA; 5])
                .unwrap();
        }
        let batch = deltas.build(None);
        assert!(batch.deltas[0].hits < i64::MAX);
    }
}

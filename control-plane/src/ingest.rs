//! Statistics ingestion with group commit.
//!
//! Handlers hand their deltas to one writer task and wait for the commit
//! that includes them, so a poll's response (or a stream's StatsAck) is
//! only sent once its counters are durable, while a busy fleet still costs
//! one transaction per batch of reports rather than one per report.

use std::collections::BTreeMap;
use std::sync::Arc;

use tero_proto::controlplane::PolicyCounters;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::store::{CounterDelta, StatsBatch, Store, StoreError, now_ms};

/// Reports waiting for a commit beyond this make callers wait for room.
const QUEUE: usize = 4096;
/// Reports per transaction at most.
const BATCH: usize = 512;

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

/// Accumulates deltas per policy for one report.
#[derive(Debug, Default)]
pub struct DeltaBuilder {
    by_policy: BTreeMap<String, CounterDelta>,
}

impl DeltaBuilder {
    /// Adds a poll's counters (`PolicySyncStatus` carries no scrapes).
    pub fn add(&mut self, policy_id: &str, hits: i64, misses: i64, bytes: i64, series: i64) {
        self.add_with_scrapes(policy_id, hits, misses, bytes, series, 0);
    }

    /// Adds a stream report's counters, scrapes included. A shadow policy's
    /// drops are what it would have dropped; they are stored as drops, the
    /// policy's mode telling them apart.
    pub fn add_counters(&mut self, p: &PolicyCounters) {
        self.add_with_scrapes(
            &p.policy_id,
            p.hits,
            p.misses,
            p.bytes_dropped,
            p.series_dropped,
            p.scrapes,
        );
    }

    /// Adds counters with the scrapes they were counted over.
    pub fn add_with_scrapes(
        &mut self,
        policy_id: &str,
        hits: i64,
        misses: i64,
        bytes: i64,
        series: i64,
        scrapes: i64,
    ) {
        // Negative deltas are a client bug; they must not erase counts.
        let (hits, misses, bytes, series, scrapes) = (
            hits.max(0),
            misses.max(0),
            bytes.max(0),
            series.max(0),
            scrapes.max(0),
        );
        if hits == 0 && misses == 0 && bytes == 0 && series == 0 && scrapes == 0 {
            return;
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
    }

    pub fn is_empty(&self) -> bool {
        self.by_policy.is_empty()
    }

    pub fn build(self, report: Option<(String, String, u64)>) -> StatsBatch {
        let minute = now_ms() / 60_000 * 60_000;
        StatsBatch {
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
        let mut jobs = vec![first];
        while jobs.len() < BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
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

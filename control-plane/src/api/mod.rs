//! The control plane's services. Each has one implementation, called from
//! both transports: the gRPC service traits and the HTTP JSON routes are
//! thin adapters over the same functions, so the two can never disagree.

pub mod admin;
pub mod classify;
pub mod error;
pub mod http;
pub mod inventory;
pub mod issues;
pub mod stream;
pub mod sync;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::classify::Classifications;
use crate::feed::Feed;
use crate::ingest::{DeltaBuilder, Ingest, IngestError};
use crate::issues::Analyst;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::store::{StatsBatch, Store};

pub use error::ApiError;

/// Everything a request handler may need. Shared behind an `Arc`.
#[derive(Debug)]
pub struct AppState {
    pub store: Store,
    pub feed: Arc<Feed>,
    pub auth: Arc<Authenticator>,
    pub runtime: Arc<Runtime>,
    pub ingest: Ingest,
    pub heartbeat: Duration,
    /// Open push streams at most; beyond, new ones are told to retry later.
    pub stream_slots: Arc<Semaphore>,
    /// The number of `stream_slots` when none is taken.
    pub max_streams: usize,
    pub metrics: Metrics,
    /// Detectors, issue reconciliation and impact checks.
    pub analyst: Arc<Analyst>,
    /// Event types, log intake and classification runs.
    pub classifications: Arc<Classifications>,
    pub shutdown: CancellationToken,
}

impl AppState {
    /// Stores an edge's statistics, counting the outcome for `/metrics`.
    pub async fn store_stats(&self, batch: StatsBatch) -> Result<bool, IngestError> {
        let volume_of = batch
            .volume
            .as_ref()
            .filter(|v| {
                let c = &v.counts;
                c.log_records > 0 || c.spans > 0
            })
            .map(|v| v.instance_id.clone());
        let result = self.ingest.submit(batch).await;
        if let (Ok(true), Some(instance)) = (&result, volume_of) {
            // Log and span volume feeds the event detectors' estimates.
            self.analyst.volume_reported(&instance);
        }
        let fleet = &self.metrics.fleet;
        match result {
            Ok(true) => fleet.stats_reports_stored.fetch_add(1, Relaxed),
            Ok(false) => fleet.stats_reports_duplicate.fetch_add(1, Relaxed),
            Err(_) => fleet.stats_reports_failed.fetch_add(1, Relaxed),
        };
        result
    }

    /// Counts (and logs, once per report) the entries of an edge's report
    /// that were not stored, and a refused volume.
    pub fn note_refused(&self, instance: &str, deltas: &DeltaBuilder) {
        let fleet = &self.metrics.fleet;
        if deltas.unknown > 0 {
            fleet
                .statuses_unknown_policy
                .fetch_add(deltas.unknown, Relaxed);
            tracing::debug!(
                instance,
                statuses = deltas.unknown,
                "statistics for policies that do not exist ignored"
            );
        }
        if deltas.invalid > 0 {
            fleet
                .statuses_invalid_counter
                .fetch_add(deltas.invalid, Relaxed);
            if let Some(first) = &deltas.first_invalid {
                tracing::warn!(
                    instance,
                    statuses = deltas.invalid,
                    first = %first,
                    "statistics refused: counters out of bounds"
                );
            }
        }
        if let Some(refused) = &deltas.volume_refused {
            fleet.volumes_refused.fetch_add(1, Relaxed);
            tracing::warn!(instance, reason = %refused, "volume refused: counts out of bounds");
        }
    }
}

pub type State = Arc<AppState>;

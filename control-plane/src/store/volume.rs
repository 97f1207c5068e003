//! What edges saw, whatever their policies (spec 1.7.1 `VolumeStats`), per
//! edge in one-minute buckets.
//!
//! Buckets are written with the statistics report that carried them, in the
//! same transaction and behind the same report ledger (see `stats`), so a
//! resent report adds its volume once. Reads add buckets up in floating
//! point: exact up to 2^53 (far beyond any real window), and a sum over
//! many edges and a long window can never overflow, which an integer SUM
//! could on either backend.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;
use tero_proto::policy::VolumeStats;
use tero_sdk::policy::Signal;

use super::{Store, StoreError};

/// Records and bytes per signal. Never negative (ingest checks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VolumeCounts {
    pub log_records: i64,
    pub log_bytes: i64,
    pub metric_data_points: i64,
    pub metric_bytes: i64,
    pub spans: i64,
    pub span_bytes: i64,
}

impl VolumeCounts {
    pub fn is_zero(&self) -> bool {
        *self == VolumeCounts::default()
    }

    /// The records of `signal`.
    pub fn records(&self, signal: Signal) -> i64 {
        match signal {
            Signal::Log => self.log_records,
            Signal::Metric => self.metric_data_points,
            Signal::Trace => self.spans,
        }
    }

    pub fn saturating_add(&mut self, other: &VolumeCounts) {
        self.log_records = self.log_records.saturating_add(other.log_records);
        self.log_bytes = self.log_bytes.saturating_add(other.log_bytes);
        self.metric_data_points = self
            .metric_data_points
            .saturating_add(other.metric_data_points);
        self.metric_bytes = self.metric_bytes.saturating_add(other.metric_bytes);
        self.spans = self.spans.saturating_add(other.spans);
        self.span_bytes = self.span_bytes.saturating_add(other.span_bytes);
    }

    /// The wire form; `None` when nothing was reported.
    pub fn to_proto(&self) -> Option<VolumeStats> {
        (!self.is_zero()).then_some(VolumeStats {
            log_records: self.log_records,
            log_bytes: self.log_bytes,
            metric_data_points: self.metric_data_points,
            metric_bytes: self.metric_bytes,
            spans: self.spans,
            span_bytes: self.span_bytes,
        })
    }
}

/// Volume to add to one edge's bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeVolume {
    pub instance_id: String,
    /// Unix ms truncated to the minute.
    pub minute: i64,
    pub counts: VolumeCounts,
}

/// Adds to a bucket, saturating at `i64::MAX` in SQL as `policy_stats`
/// does (see `stats::UPSERT_BUCKET` for why).
const UPSERT_VOLUME: &str = "INSERT INTO edge_volume (instance_id, minute, log_records, \
     log_bytes, metric_data_points, metric_bytes, spans, span_bytes) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (instance_id, minute) DO UPDATE SET \
     log_records = CASE WHEN edge_volume.log_records > 9223372036854775807 - excluded.log_records \
         THEN 9223372036854775807 ELSE edge_volume.log_records + excluded.log_records END, \
     log_bytes = CASE WHEN edge_volume.log_bytes > 9223372036854775807 - excluded.log_bytes \
         THEN 9223372036854775807 ELSE edge_volume.log_bytes + excluded.log_bytes END, \
     metric_data_points = CASE WHEN edge_volume.metric_data_points > 9223372036854775807 - excluded.metric_data_points \
         THEN 9223372036854775807 ELSE edge_volume.metric_data_points + excluded.metric_data_points END, \
     metric_bytes = CASE WHEN edge_volume.metric_bytes > 9223372036854775807 - excluded.metric_bytes \
         THEN 9223372036854775807 ELSE edge_volume.metric_bytes + excluded.metric_bytes END, \
     spans = CASE WHEN edge_volume.spans > 9223372036854775807 - excluded.spans \
         THEN 9223372036854775807 ELSE edge_volume.spans + excluded.spans END, \
     span_bytes = CASE WHEN edge_volume.span_bytes > 9223372036854775807 - excluded.span_bytes \
         THEN 9223372036854775807 ELSE edge_volume.span_bytes + excluded.span_bytes END";

const SUMS: &str = "SUM(CAST(log_records AS DOUBLE PRECISION)) AS log_records, \
     SUM(CAST(log_bytes AS DOUBLE PRECISION)) AS log_bytes, \
     SUM(CAST(metric_data_points AS DOUBLE PRECISION)) AS metric_data_points, \
     SUM(CAST(metric_bytes AS DOUBLE PRECISION)) AS metric_bytes, \
     SUM(CAST(spans AS DOUBLE PRECISION)) AS spans, \
     SUM(CAST(span_bytes AS DOUBLE PRECISION)) AS span_bytes";

/// A count or a sum of counts: an integer as is, a floating-point sum
/// with `as`, which saturates (a sum past `i64::MAX` reads as the
/// maximum); a negative or unreadable value (a row written by hand) as 0.
fn sum(row: &AnyRow, column: &str) -> i64 {
    match row.try_get::<i64, _>(column) {
        Ok(v) => v.max(0),
        Err(_) => row
            .try_get::<f64, _>(column)
            .map_or(0, |v| (v as i64).max(0)),
    }
}

fn counts_of(row: &AnyRow) -> VolumeCounts {
    VolumeCounts {
        log_records: sum(row, "log_records"),
        log_bytes: sum(row, "log_bytes"),
        metric_data_points: sum(row, "metric_data_points"),
        metric_bytes: sum(row, "metric_bytes"),
        spans: sum(row, "spans"),
        span_bytes: sum(row, "span_bytes"),
    }
}

impl Store {
    /// Adds one edge's volume, inside the transaction of its report.
    pub(super) async fn add_volume(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        v: &EdgeVolume,
    ) -> Result<(), StoreError> {
        let c = &v.counts;
        sqlx::query(UPSERT_VOLUME)
            .bind(&v.instance_id)
            .bind(v.minute)
            .bind(c.log_records)
            .bind(c.log_bytes)
            .bind(c.metric_data_points)
            .bind(c.metric_bytes)
            .bind(c.spans)
            .bind(c.span_bytes)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Volume per edge over buckets with `from <= minute < to`, for edges
    /// with any, optionally only instance ids in `first..=last` (a page of
    /// the edge listing, which is ordered by instance id).
    pub async fn volume_by_edge(
        &self,
        instances: Option<(&str, &str)>,
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<String, VolumeCounts>, StoreError> {
        let rows = match instances {
            Some((first, last)) => {
                sqlx::query(&format!(
                    "SELECT instance_id, {SUMS} FROM edge_volume \
                     WHERE minute >= $1 AND minute < $2 AND instance_id >= $3 AND instance_id <= $4 \
                     GROUP BY instance_id"
                ))
                .bind(from)
                .bind(to)
                .bind(first)
                .bind(last)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT instance_id, {SUMS} FROM edge_volume \
                     WHERE minute >= $1 AND minute < $2 GROUP BY instance_id"
                ))
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter()
            .map(|row| Ok((row.try_get("instance_id")?, counts_of(row))))
            .collect()
    }

    /// One edge's buckets with `from <= minute < to`, oldest first.
    pub async fn edge_volume(
        &self,
        instance_id: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<EdgeVolume>, StoreError> {
        let rows = sqlx::query(
            "SELECT minute, log_records, log_bytes, metric_data_points, metric_bytes, spans, \
             span_bytes FROM edge_volume \
             WHERE instance_id = $1 AND minute >= $2 AND minute < $3 ORDER BY minute",
        )
        .bind(instance_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(EdgeVolume {
                    instance_id: instance_id.to_owned(),
                    minute: row.try_get("minute")?,
                    counts: counts_of(row),
                })
            })
            .collect()
    }
}

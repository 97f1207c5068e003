//! Per-policy activity in one-minute buckets, and the report ledger that
//! makes stream statistics (and the volume they carry) exactly-once.
//!
//! A stream report is named by (instance id, session, seq). It is applied
//! only if its seq is above the last one stored for that session, in the
//! same transaction that adds its counters, so a report retried after a lost
//! acknowledgement is recognised and acknowledged without being counted.

use sqlx::Row;
use sqlx::any::AnyRow;
use tero_proto::controlplane::StatsBucket;

use super::volume::EdgeVolume;
use super::{Store, StoreError};

/// Counters to add to one policy's bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterDelta {
    pub policy_id: String,
    /// The bucket: Unix ms truncated to the minute.
    pub minute: i64,
    pub hits: i64,
    pub misses: i64,
    pub bytes_dropped: i64,
    pub series_dropped: i64,
    /// Scrapes (or batches) the policy was evaluated in.
    pub scrapes: i64,
}

/// Deltas to store together, optionally guarded by a report identity.
#[derive(Debug, Clone, Default)]
pub struct StatsBatch {
    /// `(instance id, session, seq)` for stream reports and polls that name
    /// their report; `None` for other polls, whose protocol has no report
    /// identity.
    pub report: Option<(String, String, u64)>,
    pub deltas: Vec<CounterDelta>,
    /// What the edge saw in the report's interval, added with the report
    /// (so once, however often it is resent).
    pub volume: Option<EdgeVolume>,
}

impl StatsBatch {
    /// Rows the batch writes.
    pub fn rows(&self) -> usize {
        self.deltas.len() + usize::from(self.volume.is_some())
    }
}

/// Adds a delta to a bucket, saturating at `i64::MAX`. Written in SQL
/// rather than checked in Rust so that replicas adding to one bucket at once
/// stay correct: SQLite would otherwise turn an overflowing sum into a REAL
/// (which then fails every read of the bucket), PostgreSQL would refuse the
/// whole batch. Deltas are never negative (see `ingest`), so
/// `MAX - delta` cannot overflow; a bucket already past the bound (a REAL
/// written before this) is brought back to it.
const UPSERT_BUCKET: &str = "INSERT INTO policy_stats (policy_id, minute, hits, misses, \
     bytes_dropped, series_dropped, scrapes) VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (policy_id, minute) DO UPDATE SET \
     hits = CASE WHEN policy_stats.hits > 9223372036854775807 - excluded.hits \
         THEN 9223372036854775807 ELSE policy_stats.hits + excluded.hits END, \
     misses = CASE WHEN policy_stats.misses > 9223372036854775807 - excluded.misses \
         THEN 9223372036854775807 ELSE policy_stats.misses + excluded.misses END, \
     bytes_dropped = CASE WHEN policy_stats.bytes_dropped > 9223372036854775807 - excluded.bytes_dropped \
         THEN 9223372036854775807 ELSE policy_stats.bytes_dropped + excluded.bytes_dropped END, \
     series_dropped = CASE WHEN policy_stats.series_dropped > 9223372036854775807 - excluded.series_dropped \
         THEN 9223372036854775807 ELSE policy_stats.series_dropped + excluded.series_dropped END, \
     scrapes = CASE WHEN policy_stats.scrapes > 9223372036854775807 - excluded.scrapes \
         THEN 9223372036854775807 ELSE policy_stats.scrapes + excluded.scrapes END";

/// One counter of a bucket. A value that is not a non-negative integer
/// (a REAL left by an overflow before sums saturated, a negative number
/// written by hand) is read as the nearest valid count and logged, so one
/// bad row cannot fail the statistics of a policy for the whole retention.
fn read_counter(row: &AnyRow, policy_id: &str, minute: i64, column: &str) -> i64 {
    let value = match row.try_get::<i64, _>(column) {
        Ok(v) if v >= 0 => return v,
        Ok(v) => v as f64,
        // `as` saturates: a REAL beyond i64 reads as i64::MAX, NaN as 0.
        Err(_) => match row.try_get::<f64, _>(column) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(policy_id, minute, column, error = %e, "unreadable statistics counter read as 0");
                return 0;
            }
        },
    };
    let read = (value as i64).max(0);
    tracing::warn!(
        policy_id,
        minute,
        column,
        value,
        read,
        "invalid statistics counter read as {read}"
    );
    read
}

impl Store {
    /// Stores several batches in one transaction. Returns, per batch,
    /// whether it was applied (`false`: a duplicate report, skipped).
    pub async fn apply_stats(
        &self,
        batches: &[StatsBatch],
        now: i64,
    ) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut applied = Vec::with_capacity(batches.len());
        for batch in batches {
            if let Some((instance, session, seq)) = &batch.report {
                // One statement both checks and advances the ledger: a
                // duplicate racing in another transaction (a retry reaching
                // another replica) waits for this row and then finds its seq
                // no longer above the stored one, where a separate SELECT
                // would have let both through.
                let recorded = sqlx::query(
                    "INSERT INTO stats_sessions (instance_id, session, seq, updated_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (instance_id, session) \
                     DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at \
                     WHERE stats_sessions.seq < excluded.seq",
                )
                .bind(instance)
                .bind(session)
                .bind(*seq as i64)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if recorded.rows_affected() == 0 {
                    applied.push(false);
                    continue;
                }
            }
            for d in &batch.deltas {
                sqlx::query(UPSERT_BUCKET)
                    .bind(&d.policy_id)
                    .bind(d.minute)
                    .bind(d.hits)
                    .bind(d.misses)
                    .bind(d.bytes_dropped)
                    .bind(d.series_dropped)
                    .bind(d.scrapes)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(volume) = &batch.volume {
                Self::add_volume(&mut tx, volume).await?;
            }
            applied.push(true);
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// Buckets of one policy with `from <= minute < to`, oldest first.
    pub async fn policy_stats(
        &self,
        policy_id: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<StatsBucket>, StoreError> {
        let rows = sqlx::query(
            "SELECT minute, hits, misses, bytes_dropped, series_dropped, scrapes FROM policy_stats \
             WHERE policy_id = $1 AND minute >= $2 AND minute < $3 ORDER BY minute",
        )
        .bind(policy_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let minute = row.try_get("minute")?;
                let counter = |column: &str| read_counter(row, policy_id, minute, column);
                Ok(StatsBucket {
                    minute_unix_ms: minute,
                    hits: counter("hits"),
                    misses: counter("misses"),
                    bytes_dropped: counter("bytes_dropped"),
                    series_dropped: counter("series_dropped"),
                    scrapes: counter("scrapes"),
                })
            })
            .collect()
    }

    /// Drops buckets (policies' and edges' volume) and report ledgers
    /// older than `cutoff` (ms); returns the buckets dropped.
    pub async fn prune_stats(&self, cutoff: i64) -> Result<u64, StoreError> {
        let buckets = sqlx::query("DELETE FROM policy_stats WHERE minute < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        let volume = sqlx::query("DELETE FROM edge_volume WHERE minute < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM stats_sessions WHERE updated_at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(buckets.rows_affected() + volume.rows_affected())
    }
}

//! Metric inventories reported by edges, kept over time per service.
//!
//! Reports are stored as sent (encoded protobuf) under their report
//! identity, so a retried report is stored once; reading merges the latest
//! report of each instance of a service.

use prost::Message;
use sqlx::Row;
use tero_proto::controlplane::InventoryReport;

use super::{Store, StoreError};

/// One stored report with where it came from.
#[derive(Debug, Clone)]
pub struct StoredInventory {
    pub instance_id: String,
    pub received_at: i64,
    pub report: InventoryReport,
}

/// Decodes rows ordered by instance, keeping one report per instance (two
/// reports may share the newest time).
fn one_per_instance(rows: Vec<sqlx::any::AnyRow>) -> Result<Vec<StoredInventory>, StoreError> {
    let mut out: Vec<StoredInventory> = Vec::with_capacity(rows.len());
    for row in rows {
        let instance_id: String = row.try_get("instance_id")?;
        if out.last().is_some_and(|o| o.instance_id == instance_id) {
            continue;
        }
        let bytes: Vec<u8> = row.try_get("report")?;
        let report = InventoryReport::decode(bytes.as_slice())
            .map_err(|e| StoreError::corrupt("inventory report", e))?;
        out.push(StoredInventory {
            instance_id,
            received_at: row.try_get("received_at")?,
            report,
        });
    }
    Ok(out)
}

impl Store {
    /// Stores a report; `false` when this (instance, session, seq) was
    /// stored before (a retry).
    pub async fn put_inventory(
        &self,
        instance_id: &str,
        service: &str,
        report: &InventoryReport,
        now: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO inventory_reports (instance_id, session, seq, service, received_at, \
             window_start, window_end, report) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (instance_id, session, seq) DO NOTHING",
        )
        .bind(instance_id)
        .bind(&report.session)
        .bind(report.seq as i64)
        .bind(service)
        .bind(now)
        .bind(report.window_start_unix_ms)
        .bind(report.window_end_unix_ms)
        .bind(report.encode_to_vec())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    /// The newest report of every instance of `service` whose window ended
    /// after `since`.
    pub async fn latest_inventories(
        &self,
        service: &str,
        since: i64,
    ) -> Result<Vec<StoredInventory>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.instance_id, r.received_at, r.report FROM inventory_reports r \
             WHERE r.service = $1 AND r.window_end > $2 AND r.window_end = ( \
               SELECT MAX(o.window_end) FROM inventory_reports o \
               WHERE o.instance_id = r.instance_id AND o.service = r.service) \
             ORDER BY r.instance_id",
        )
        .bind(service)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        one_per_instance(rows)
    }

    /// Services with an inventory whose window ended after `since`.
    pub async fn inventoried_services(&self, since: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT service FROM inventory_reports WHERE window_end > $1 ORDER BY service",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("service").map_err(StoreError::from))
            .collect()
    }

    /// How many services reported an inventory whose window ended after
    /// `since`; only `service` counts when it is not empty.
    pub async fn count_inventoried_services(
        &self,
        since: i64,
        service: &str,
    ) -> Result<u32, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(DISTINCT service) FROM inventory_reports \
             WHERE window_end > $1 AND ($2 = '' OR service = $2)",
        )
        .bind(since)
        .bind(service)
        .fetch_one(&self.pool)
        .await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// When the newest report was received; `None` before the first.
    pub async fn last_inventory_at(&self) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT MAX(received_at) FROM inventory_reports")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Drops reports older than `before` (retention).
    pub async fn prune_inventories(&self, before: i64) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM inventory_reports WHERE received_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }
}

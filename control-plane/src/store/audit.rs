//! The audit log: who changed what, when and why. Append-only; policy
//! changes write their entry in the same transaction as the change.

use sqlx::Row;
use tero_proto::controlplane::AuditEvent;

use super::{Store, StoreError, now_ms};

/// An entry as the API returns it.
pub type AuditEntry = AuditEvent;

impl Store {
    pub(super) async fn audit_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        actor: &str,
        action: &str,
        target: &str,
        detail: serde_json::Value,
        at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(at)
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(detail.to_string())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Records an event that is not part of a larger transaction.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.audit_in(&mut tx, actor, action, target, detail, now_ms())
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Events after `after_seq` in order, optionally for one target.
    pub async fn list_audit(
        &self,
        target: Option<&str>,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = match target {
            Some(target) => {
                sqlx::query(
                    "SELECT seq, at, actor, action, target, detail FROM audit_log \
                     WHERE target = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                )
                .bind(target)
                .bind(after_seq as i64)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT seq, at, actor, action, target, detail FROM audit_log \
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(after_seq as i64)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get("seq")?;
                Ok(AuditEvent {
                    seq: seq as u64,
                    at_unix_ms: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }
}

impl Store {
    /// The newest audit sequence number: changes with it, whatever changed.
    pub async fn audit_high_water(&self) -> Result<i64, StoreError> {
        let max: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_log")
            .fetch_one(&self.pool)
            .await?;
        Ok(max.unwrap_or(0))
    }
}

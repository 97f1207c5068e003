//! Edge API keys: only a SHA-256 of each secret is stored. Keys are random
//! 256-bit values, so a fast hash is enough: there is nothing to brute-force
//! that a slow hash would protect.

use sqlx::Row;
use sqlx::any::AnyRow;
use tero_proto::controlplane::ApiKey;

use super::{KEY_CHANNEL, Store, StoreError, now_ms};

/// A key row, with the hash the authenticator compares against.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub key: ApiKey,
    pub secret_hash: String,
}

const SELECT_KEY: &str = "SELECT id, name, prefix, secret_hash, created_at, created_by, last_used, revoked_at FROM api_keys";

fn decode(row: &AnyRow) -> Result<StoredKey, StoreError> {
    Ok(StoredKey {
        key: ApiKey {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            prefix: row.try_get("prefix")?,
            created_at_unix_ms: row.try_get("created_at")?,
            created_by: row.try_get("created_by")?,
            last_used_unix_ms: row.try_get("last_used")?,
            revoked_at_unix_ms: row.try_get("revoked_at")?,
        },
        secret_hash: row.try_get("secret_hash")?,
    })
}

impl Store {
    pub async fn insert_api_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO api_keys (id, name, prefix, secret_hash, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.key.id)
        .bind(&key.key.name)
        .bind(&key.key.prefix)
        .bind(&key.secret_hash)
        .bind(key.key.created_at_unix_ms)
        .bind(&key.key.created_by)
        .execute(&mut *tx)
        .await?;
        self.audit_in(
            &mut tx,
            &key.key.created_by,
            "api_key.create",
            &key.key.id,
            serde_json::json!({ "name": key.key.name, "prefix": key.key.prefix }),
            key.key.created_at_unix_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_api_keys(&self, include_revoked: bool) -> Result<Vec<ApiKey>, StoreError> {
        let sql = if include_revoked {
            format!("{SELECT_KEY} ORDER BY created_at, id")
        } else {
            format!("{SELECT_KEY} WHERE revoked_at = 0 ORDER BY created_at, id")
        };
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(|r| decode(r).map(|k| k.key)).collect()
    }

    pub async fn find_api_key_by_hash(&self, hash: &str) -> Result<Option<StoredKey>, StoreError> {
        let row = sqlx::query(&format!("{SELECT_KEY} WHERE secret_hash = $1"))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Revokes a key (idempotent) and tells every replica to drop its streams.
    pub async fn revoke_api_key(&self, id: &str, actor: &str) -> Result<ApiKey, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!("{SELECT_KEY} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(mut key) = row.as_ref().map(decode).transpose()? else {
            return Err(StoreError::NotFound {
                kind: "API key",
                id: id.to_owned(),
            });
        };
        if key.key.revoked_at_unix_ms == 0 {
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            key.key.revoked_at_unix_ms = now;
            self.audit_in(
                &mut tx,
                actor,
                "api_key.revoke",
                id,
                serde_json::json!({ "name": key.key.name, "prefix": key.key.prefix }),
                now,
            )
            .await?;
            self.notify(&mut tx, KEY_CHANNEL, id).await?;
        }
        tx.commit().await?;
        Ok(key.key)
    }

    /// Whether the key is revoked (or unknown).
    pub async fn api_key_revoked(&self, id: &str) -> Result<bool, StoreError> {
        let revoked_at: Option<i64> =
            sqlx::query_scalar("SELECT revoked_at FROM api_keys WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(revoked_at.is_none_or(|at| at != 0))
    }

    /// Ids of revoked keys, for replicas refreshing their caches.
    pub async fn revoked_key_ids(&self) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM api_keys WHERE revoked_at <> 0")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Records when keys were last used; called in batches, not per request.
    pub async fn touch_api_keys(&self, used: &[(String, i64)]) -> Result<(), StoreError> {
        if used.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (id, at) in used {
            sqlx::query("UPDATE api_keys SET last_used = $1 WHERE id = $2 AND last_used < $1")
                .bind(*at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

//! Policies, their revisions and the optimistic concurrency that guards them.
//!
//! Every change runs in one transaction that writes the policy row, a
//! revision row and an audit entry, and announces the change to other
//! replicas. The UPDATE names the revision it read, so two writers racing on
//! one policy cannot both win: the loser sees `StaleRevision`. On PostgreSQL
//! the read also locks the row, so a change that names no revision (0) waits
//! for a racing one and applies on top of it instead of failing stale; SQLite
//! runs one transaction at a time anyway.

use prost::Message;
use sqlx::Row;
use sqlx::any::AnyRow;
use tero_proto::controlplane::{ManagedPolicy, PolicyRevision, Scope};
use tero_proto::policy::Policy;
use tero_sdk::policy::{Signal, signal_of};

use super::{Backend, POLICY_CHANNEL, Store, StoreError, is_unique_violation, now_ms};

/// A policy as an author submits it.
#[derive(Debug, Clone)]
pub struct PolicyChange {
    pub policy: Policy,
    pub scope: Scope,
    pub actor: String,
    pub reason: String,
}

/// What `list_policies` returns, applied in this order: labels, target,
/// enabled; then paging by id.
#[derive(Debug, Clone, Default)]
pub struct PolicyFilter {
    /// `(key, Some(value))` must equal; `(key, None)` must be present.
    pub labels: Vec<(String, Option<String>)>,
    pub target: Option<Signal>,
    pub enabled: Option<bool>,
    pub page_size: usize,
    /// Ids strictly after this one.
    pub after_id: Option<String>,
}

impl PolicyFilter {
    fn admits(&self, policy: &ManagedPolicy) -> bool {
        let Some(p) = policy.policy.as_ref() else {
            return false;
        };
        if let Some(enabled) = self.enabled
            && p.enabled != enabled
        {
            return false;
        }
        if let Some(target) = self.target
            && signal_of(p) != Some(target)
        {
            return false;
        }
        self.labels.iter().all(|(key, want)| {
            p.labels.iter().any(|kv| {
                kv.key == *key
                    && match want {
                        None => true,
                        Some(want) => {
                            crate::scope::string_value(kv).as_deref() == Some(want.as_str())
                        }
                    }
            })
        })
    }
}

const SELECT_POLICY: &str = "SELECT id, revision, spec, scope, created_by, updated_by, \
                             created_at, updated_at FROM policies";

fn decode_row(row: &AnyRow) -> Result<ManagedPolicy, StoreError> {
    let spec: Vec<u8> = row.try_get("spec")?;
    let scope: Vec<u8> = row.try_get("scope")?;
    let revision: i64 = row.try_get("revision")?;
    Ok(ManagedPolicy {
        policy: Some(
            Policy::decode(spec.as_slice()).map_err(|e| StoreError::corrupt("policy", e))?,
        ),
        scope: Some(Scope::decode(scope.as_slice()).map_err(|e| StoreError::corrupt("scope", e))?),
        revision: revision as u64,
        created_by: row.try_get("created_by")?,
        updated_by: row.try_get("updated_by")?,
        created_at_unix_ms: row.try_get("created_at")?,
        updated_at_unix_ms: row.try_get("updated_at")?,
    })
}

fn target_name(policy: &Policy) -> &'static str {
    signal_of(policy).map(Signal::as_str).unwrap_or("none")
}

fn ms_to_nanos(ms: i64) -> u64 {
    (ms.max(0) as u64).saturating_mul(1_000_000)
}

impl Store {
    /// The clause that locks the rows a read-modify-write transaction reads:
    /// SQLite has none and needs none (one connection, one writer).
    fn lock_for_update(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    /// Stores a new policy at revision 1 (or one past the last revision of a
    /// deleted policy with the same id, so history never repeats a number).
    pub async fn create_policy(&self, change: PolicyChange) -> Result<ManagedPolicy, StoreError> {
        let now = now_ms();
        let mut policy = change.policy;
        policy.created_at_unix_nano = ms_to_nanos(now);
        policy.modified_at_unix_nano = ms_to_nanos(now);
        let id = policy.id.clone();
        let spec = policy.encode_to_vec();
        let scope = change.scope.encode_to_vec();

        let mut tx = self.pool.begin().await?;
        let previous: Option<i64> =
            sqlx::query_scalar("SELECT MAX(revision) FROM policy_revisions WHERE policy_id = $1")
                .bind(&id)
                .fetch_one(&mut *tx)
                .await?;
        let revision = previous.unwrap_or(0) + 1;
        let inserted = sqlx::query(
            "INSERT INTO policies (id, revision, enabled, target, spec, scope, created_by, \
             updated_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $8)",
        )
        .bind(&id)
        .bind(revision)
        .bind(policy.enabled)
        .bind(target_name(&policy))
        .bind(&spec)
        .bind(&scope)
        .bind(&change.actor)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists { kind: "policy", id });
            }
            other => {
                other?;
            }
        }
        self.record_revision(
            &mut tx,
            &id,
            revision,
            "create",
            &change.actor,
            &change.reason,
            Some((&spec, &scope)),
            now,
        )
        .await?;
        self.audit_in(
            &mut tx,
            &change.actor,
            "policy.create",
            &id,
            serde_json::json!({ "revision": revision, "reason": change.reason, "policy": policy, "scope": change.scope }),
            now,
        )
        .await?;
        self.notify(&mut tx, POLICY_CHANNEL, &id).await?;
        tx.commit().await?;
        Ok(ManagedPolicy {
            policy: Some(policy),
            scope: Some(change.scope),
            revision: revision as u64,
            created_by: change.actor.clone(),
            updated_by: change.actor,
            created_at_unix_ms: now,
            updated_at_unix_ms: now,
        })
    }

    /// Replaces a policy's content and scope. `expected_revision` must be
    /// the current one.
    pub async fn update_policy(
        &self,
        change: PolicyChange,
        expected_revision: u64,
    ) -> Result<ManagedPolicy, StoreError> {
        let id = change.policy.id.clone();
        let PolicyChange {
            policy,
            scope,
            actor,
            reason,
        } = change;
        self.change_policy(
            &id,
            expected_revision,
            &actor,
            &reason,
            "update",
            |current| {
                let created = current.policy.as_ref().map(|p| p.created_at_unix_nano);
                let mut policy = policy;
                policy.created_at_unix_nano = created.unwrap_or_default();
                current.policy = Some(policy);
                current.scope = Some(scope);
            },
        )
        .await
    }

    /// Enables or disables a policy; `expected_revision` 0 accepts any.
    pub async fn set_policy_enabled(
        &self,
        id: &str,
        enabled: bool,
        expected_revision: u64,
        actor: &str,
        reason: &str,
    ) -> Result<ManagedPolicy, StoreError> {
        let action = if enabled { "enable" } else { "disable" };
        self.change_policy(id, expected_revision, actor, reason, action, |current| {
            if let Some(p) = current.policy.as_mut() {
                p.enabled = enabled;
            }
        })
        .await
    }

    async fn change_policy(
        &self,
        id: &str,
        expected_revision: u64,
        actor: &str,
        reason: &str,
        action: &str,
        apply: impl FnOnce(&mut ManagedPolicy),
    ) -> Result<ManagedPolicy, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "{SELECT_POLICY} WHERE id = $1{}",
            self.lock_for_update()
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let mut current = match row {
            Some(row) => decode_row(&row)?,
            None => {
                return Err(StoreError::NotFound {
                    kind: "policy",
                    id: id.to_owned(),
                });
            }
        };
        let read_revision = current.revision;
        if expected_revision != 0 && expected_revision != read_revision {
            return Err(StoreError::StaleRevision {
                id: id.to_owned(),
                expected: expected_revision,
                current: read_revision,
            });
        }
        apply(&mut current);
        let revision = read_revision + 1;
        let policy = current.policy.get_or_insert_with(Default::default);
        policy.modified_at_unix_nano = ms_to_nanos(now);
        let spec = policy.encode_to_vec();
        let scope = current.scope.clone().unwrap_or_default().encode_to_vec();
        let updated = sqlx::query(
            "UPDATE policies SET revision = $1, enabled = $2, target = $3, spec = $4, scope = $5, \
             updated_by = $6, updated_at = $7 WHERE id = $8 AND revision = $9",
        )
        .bind(revision as i64)
        .bind(policy.enabled)
        .bind(target_name(policy))
        .bind(&spec)
        .bind(&scope)
        .bind(actor)
        .bind(now)
        .bind(id)
        .bind(read_revision as i64)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            // Another writer committed between our read and our write.
            drop(tx);
            let current = self.get_policy(id).await?;
            return Err(StoreError::StaleRevision {
                id: id.to_owned(),
                expected: read_revision,
                current: current.revision,
            });
        }
        self.record_revision(
            &mut tx,
            id,
            revision as i64,
            action,
            actor,
            reason,
            Some((&spec, &scope)),
            now,
        )
        .await?;
        self.audit_in(
            &mut tx,
            actor,
            &format!("policy.{action}"),
            id,
            serde_json::json!({ "revision": revision, "reason": reason, "policy": current.policy, "scope": current.scope }),
            now,
        )
        .await?;
        self.notify(&mut tx, POLICY_CHANNEL, id).await?;
        tx.commit().await?;
        current.revision = revision;
        current.updated_by = actor.to_owned();
        current.updated_at_unix_ms = now;
        Ok(current)
    }

    /// Deletes a policy; its history stays. `expected_revision` 0 accepts any.
    /// Returns the revision that records the deletion.
    pub async fn delete_policy(
        &self,
        id: &str,
        expected_revision: u64,
        actor: &str,
        reason: &str,
    ) -> Result<u64, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let current: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT revision FROM policies WHERE id = $1{}",
            self.lock_for_update()
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(current) = current else {
            return Err(StoreError::NotFound {
                kind: "policy",
                id: id.to_owned(),
            });
        };
        if expected_revision != 0 && expected_revision != current as u64 {
            return Err(StoreError::StaleRevision {
                id: id.to_owned(),
                expected: expected_revision,
                current: current as u64,
            });
        }
        let deleted = sqlx::query("DELETE FROM policies WHERE id = $1 AND revision = $2")
            .bind(id)
            .bind(current)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            drop(tx);
            let now_current = self.get_policy(id).await?;
            return Err(StoreError::StaleRevision {
                id: id.to_owned(),
                expected: current as u64,
                current: now_current.revision,
            });
        }
        let revision = current + 1;
        self.record_revision(&mut tx, id, revision, "delete", actor, reason, None, now)
            .await?;
        self.audit_in(
            &mut tx,
            actor,
            "policy.delete",
            id,
            serde_json::json!({ "revision": revision, "reason": reason }),
            now,
        )
        .await?;
        self.notify(&mut tx, POLICY_CHANNEL, id).await?;
        tx.commit().await?;
        Ok(revision as u64)
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_revision(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        id: &str,
        revision: i64,
        action: &str,
        author: &str,
        reason: &str,
        content: Option<(&Vec<u8>, &Vec<u8>)>,
        at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO policy_revisions (policy_id, revision, action, author, at, reason, spec, scope) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(revision)
        .bind(action)
        .bind(author)
        .bind(at)
        .bind(reason)
        .bind(content.map(|c| c.0.clone()))
        .bind(content.map(|c| c.1.clone()))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub async fn get_policy(&self, id: &str) -> Result<ManagedPolicy, StoreError> {
        let row = sqlx::query(&format!("{SELECT_POLICY} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => decode_row(&row),
            None => Err(StoreError::NotFound {
                kind: "policy",
                id: id.to_owned(),
            }),
        }
    }

    /// One page of policies in id order, and the id to continue after when
    /// more may follow.
    pub async fn list_policies(
        &self,
        filter: &PolicyFilter,
    ) -> Result<(Vec<ManagedPolicy>, Option<String>), StoreError> {
        use futures_util::TryStreamExt;
        let page_size = filter.page_size.max(1);
        let sql = format!("{SELECT_POLICY} WHERE id > $1 ORDER BY id");
        let mut rows = sqlx::query(&sql)
            .bind(filter.after_id.clone().unwrap_or_default())
            .fetch(&self.pool);
        let mut page = Vec::new();
        while let Some(row) = rows.try_next().await? {
            let policy = decode_row(&row)?;
            if filter.admits(&policy) {
                if page.len() == page_size {
                    let last = page
                        .last()
                        .and_then(|p: &ManagedPolicy| p.policy.as_ref())
                        .map(|p| p.id.clone());
                    return Ok((page, last));
                }
                page.push(policy);
            }
        }
        Ok((page, None))
    }

    /// Every stored policy, enabled or not, for the snapshot builder.
    pub async fn all_policies(&self) -> Result<Vec<ManagedPolicy>, StoreError> {
        let rows = sqlx::query(&format!("{SELECT_POLICY} ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_row).collect()
    }

    /// `NotFound` unless the id has ever had a revision (deleted policies
    /// included).
    pub async fn policy_ever_existed(&self, id: &str) -> Result<(), StoreError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT revision FROM policy_revisions WHERE policy_id = $1 LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match found {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound {
                kind: "policy",
                id: id.to_owned(),
            }),
        }
    }

    /// A policy's revisions, newest first. Unknown ids are `NotFound`.
    pub async fn policy_history(&self, id: &str) -> Result<Vec<PolicyRevision>, StoreError> {
        let rows = sqlx::query(
            "SELECT revision, action, author, at, reason, spec, scope FROM policy_revisions \
             WHERE policy_id = $1 ORDER BY revision DESC",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound {
                kind: "policy",
                id: id.to_owned(),
            });
        }
        rows.iter()
            .map(|row| {
                let spec: Option<Vec<u8>> = row.try_get("spec")?;
                let scope: Option<Vec<u8>> = row.try_get("scope")?;
                let revision: i64 = row.try_get("revision")?;
                Ok(PolicyRevision {
                    policy_id: id.to_owned(),
                    revision: revision as u64,
                    action: row.try_get("action")?,
                    author: row.try_get("author")?,
                    at_unix_ms: row.try_get("at")?,
                    reason: row.try_get("reason")?,
                    policy: spec
                        .map(|s| Policy::decode(s.as_slice()))
                        .transpose()
                        .map_err(|e| StoreError::corrupt("policy revision", e))?,
                    scope: scope
                        .map(|s| Scope::decode(s.as_slice()))
                        .transpose()
                        .map_err(|e| StoreError::corrupt("policy revision scope", e))?,
                })
            })
            .collect()
    }
}

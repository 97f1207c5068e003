//! Issues and usage sources.
//!
//! An issue is stored whole (an encoded `Issue`) next to the columns it is
//! looked up by. `(kind, service, subject)` is unique: a detector finding
//! the same thing again updates its issue instead of opening another, and
//! an issue someone ignored stays ignored.

use prost::Message;
use sqlx::Row;
use tero_proto::controlplane::Issue;

use super::{Store, StoreError};

/// The issue key `ISS-<n>` of a row number.
pub fn issue_key(seq: i64) -> String {
    format!("ISS-{seq}")
}

fn parse_key(id: &str) -> Option<i64> {
    id.trim().strip_prefix("ISS-")?.parse().ok()
}

/// A usage source as stored: the extracted references as JSON.
#[derive(Debug, Clone)]
pub struct StoredUsage {
    pub name: String,
    pub kind: String,
    pub imported_at: i64,
    pub imported_by: String,
    pub parsed: String,
}

fn decode_issue(row: &sqlx::any::AnyRow) -> Result<Issue, StoreError> {
    let bytes: Vec<u8> = row.try_get("body")?;
    let mut issue = Issue::decode(bytes.as_slice()).map_err(|e| StoreError::corrupt("issue", e))?;
    issue.id = issue_key(row.try_get("seq")?);
    Ok(issue)
}

impl Store {
    /// Every issue of a service (any status), for reconciling findings.
    pub async fn issues_of_service(&self, service: &str) -> Result<Vec<Issue>, StoreError> {
        let rows = sqlx::query("SELECT seq, body FROM issues WHERE service = $1 ORDER BY seq")
            .bind(service)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_issue).collect()
    }

    /// Issues matching the filters (empty strings match everything).
    pub async fn list_issues(
        &self,
        service: &str,
        status: &str,
        kind: &str,
    ) -> Result<Vec<Issue>, StoreError> {
        let statuses: &[&str] = if status.is_empty() { &[] } else { &[status] };
        self.list_issues_in(service, statuses, kind).await
    }

    /// Issues of any of `statuses` (every status when empty), matching the
    /// other filters (empty strings match everything).
    pub async fn list_issues_in(
        &self,
        service: &str,
        statuses: &[&str],
        kind: &str,
    ) -> Result<Vec<Issue>, StoreError> {
        // `$1`, `$2` are the service and kind; the statuses follow as `$3…`.
        let mut sql = String::from(
            "SELECT seq, body FROM issues WHERE ($1 = '' OR service = $1) \
             AND ($2 = '' OR kind = $2)",
        );
        if !statuses.is_empty() {
            let placeholders: Vec<String> =
                (3..3 + statuses.len()).map(|n| format!("${n}")).collect();
            sql.push_str(&format!(" AND status IN ({})", placeholders.join(", ")));
        }
        sql.push_str(" ORDER BY seq");
        let mut query = sqlx::query(&sql).bind(service).bind(kind);
        for status in statuses {
            query = query.bind(*status);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(decode_issue).collect()
    }

    /// How many issues matching the filters each status has.
    pub async fn count_issues(
        &self,
        service: &str,
        kind: &str,
    ) -> Result<Vec<(String, u32)>, StoreError> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM issues WHERE ($1 = '' OR service = $1) \
             AND ($2 = '' OR kind = $2) GROUP BY status ORDER BY status",
        )
        .bind(service)
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.try_get("n")?;
                Ok((r.try_get("status")?, u32::try_from(n).unwrap_or(u32::MAX)))
            })
            .collect()
    }

    pub async fn get_issue(&self, id: &str) -> Result<Issue, StoreError> {
        let not_found = || StoreError::NotFound {
            kind: "issue",
            id: id.to_owned(),
        };
        let seq = parse_key(id).ok_or_else(not_found)?;
        let row = sqlx::query("SELECT seq, body FROM issues WHERE seq = $1")
            .bind(seq)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(not_found)?;
        decode_issue(&row)
    }

    /// The issue a policy was created from, if any.
    pub async fn issue_of_policy(&self, policy_id: &str) -> Result<Option<Issue>, StoreError> {
        let row =
            sqlx::query("SELECT seq, body FROM issues WHERE policy_id = $1 ORDER BY seq DESC")
                .bind(policy_id)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(decode_issue).transpose()
    }

    /// Inserts a new issue (its `id` is assigned) or replaces the stored
    /// one with the same key. Returns it with its id.
    ///
    /// Only a new issue takes a number: an `INSERT … ON CONFLICT DO UPDATE`
    /// consumes a sequence value even when it updates (SQLite's
    /// AUTOINCREMENT and PostgreSQL's sequences alike), so updating through
    /// it made issue numbers jump (ISS-6, then ISS-54). Known issues are
    /// updated in place; the upsert is left for the rare race of two
    /// replicas opening the same issue.
    pub async fn save_issue(&self, mut issue: Issue) -> Result<Issue, StoreError> {
        let body = {
            let mut stored = issue.clone();
            stored.id.clear();
            stored.encode_to_vec()
        };
        let updated = sqlx::query(
            "UPDATE issues SET status = $1, policy_id = $2, updated_at = $3, body = $4 \
             WHERE kind = $5 AND service = $6 AND subject = $7 RETURNING seq",
        )
        .bind(&issue.status)
        .bind(&issue.policy_id)
        .bind(issue.updated_at_unix_ms)
        .bind(&body)
        .bind(&issue.kind)
        .bind(&issue.service)
        .bind(&issue.subject)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = updated {
            issue.id = issue_key(row.try_get("seq")?);
            return Ok(issue);
        }
        let row = sqlx::query(
            "INSERT INTO issues (kind, service, subject, status, policy_id, updated_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (kind, service, subject) \
             DO UPDATE SET status = excluded.status, policy_id = excluded.policy_id, \
             updated_at = excluded.updated_at, body = excluded.body RETURNING seq",
        )
        .bind(&issue.kind)
        .bind(&issue.service)
        .bind(&issue.subject)
        .bind(&issue.status)
        .bind(&issue.policy_id)
        .bind(issue.updated_at_unix_ms)
        .bind(body)
        .fetch_one(&self.pool)
        .await?;
        issue.id = issue_key(row.try_get("seq")?);
        Ok(issue)
    }

    /// Stores a usage source, replacing one with the same name.
    pub async fn put_usage(&self, usage: &StoredUsage) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO usage_sources (name, kind, imported_at, imported_by, parsed) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, \
             imported_at = excluded.imported_at, imported_by = excluded.imported_by, \
             parsed = excluded.parsed",
        )
        .bind(&usage.name)
        .bind(&usage.kind)
        .bind(usage.imported_at)
        .bind(&usage.imported_by)
        .bind(&usage.parsed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a usage source and returns it as it was.
    pub async fn delete_usage(&self, name: &str) -> Result<StoredUsage, StoreError> {
        let row = sqlx::query(
            "DELETE FROM usage_sources WHERE name = $1 \
             RETURNING name, kind, imported_at, imported_by, parsed",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            kind: "usage source",
            id: name.to_owned(),
        })?;
        usage_of_row(&row)
    }

    /// How many usage sources are stored, without reading them.
    pub async fn count_usage_sources(&self) -> Result<u32, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM usage_sources")
            .fetch_one(&self.pool)
            .await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    pub async fn list_usage(&self) -> Result<Vec<StoredUsage>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, kind, imported_at, imported_by, parsed FROM usage_sources ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(usage_of_row).collect()
    }
}

fn usage_of_row(r: &sqlx::any::AnyRow) -> Result<StoredUsage, StoreError> {
    Ok(StoredUsage {
        name: r.try_get("name")?,
        kind: r.try_get("kind")?,
        imported_at: r.try_get("imported_at")?,
        imported_by: r.try_get("imported_by")?,
        parsed: r.try_get("parsed")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_keys_round_trip_and_reject_others() {
        assert_eq!(issue_key(12), "ISS-12");
        assert_eq!(parse_key("ISS-12"), Some(12));
        assert_eq!(parse_key(" ISS-3 "), Some(3));
        assert_eq!(parse_key("12"), None);
        assert_eq!(parse_key("ISS-x"), None);
    }
}

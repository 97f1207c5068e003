//! The persisted side of the edge registry. The live registry keeps edges
//! in memory and writes them here in batches, so a fleet's heartbeats cost
//! a few multi-row statements per flush rather than one per edge.

use std::collections::BTreeMap;

use prost::Message;
use sqlx::Row;
use sqlx::any::AnyRow;
use tero_proto::controlplane::Transport;
use tero_proto::policy::ClientMetadata;

use super::{Store, StoreError};

/// Parameters per row of `edges` written by [`Store::upsert_edges`].
const EDGE_COLUMNS: usize = 17;
/// Rows per statement: 8,500 parameters, well under SQLite's limit (32,766)
/// and PostgreSQL's (65,535), and large enough that a 10,000-edge flush is
/// 20 statements.
const EDGE_ROWS_PER_STATEMENT: usize = 500;

/// Per policy id, the errors an edge reported.
pub type PolicyErrors = BTreeMap<String, Vec<String>>;

/// One edge as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeRecord {
    pub instance_id: String,
    pub service_name: String,
    pub service_namespace: String,
    pub service_version: String,
    pub metadata: ClientMetadata,
    /// `Stream` or `Poll` (stored as the text `stream` or `poll`).
    pub transport: Transport,
    pub replica: String,
    pub api_key_id: String,
    pub first_seen: i64,
    pub last_seen: i64,
    /// Holds an open stream (as far as its replica last wrote).
    pub connected: bool,
    pub desired_hash: String,
    pub applied_hash: String,
    pub last_failed_hash: String,
    /// Per policy id, the errors the edge last reported.
    pub policy_errors: PolicyErrors,
    /// Why the edge refused `last_failed_hash` as a whole, until it applies
    /// a snapshot. Stored among `policy_errors` under the id `""`, which no
    /// policy has, as replicas have always stored it.
    pub refusal: Option<String>,
    /// The latest other API key that claimed this instance id (refused),
    /// and when (ms); empty and 0 when none did.
    pub conflict_key_id: String,
    pub conflict_at: i64,
}

// `connected` is read as an integer: sqlx's Any driver maps no SQLite
// BOOLEAN column (the whole row would fail to decode), and an expression has
// no declared type, so both backends hand back a plain integer.
const SELECT_EDGE: &str = "SELECT instance_id, service_name, service_namespace, service_version, \
     metadata, transport, replica, api_key_id, first_seen, last_seen, \
     CASE WHEN connected THEN 1 ELSE 0 END AS connected, desired_hash, \
     applied_hash, last_failed_hash, policy_errors, conflict_key_id, conflict_at FROM edges";

/// The `transport` column's text.
fn transport_text(transport: Transport) -> &'static str {
    match transport {
        Transport::Stream => "stream",
        Transport::Poll | Transport::Unspecified => "poll",
    }
}

fn transport_from_text(text: &str) -> Transport {
    if text == "stream" {
        Transport::Stream
    } else {
        Transport::Poll
    }
}

/// The `policy_errors` column: the per-policy errors as JSON, with the
/// refusal of a whole snapshot under the id `""`.
fn errors_json(edge: &EdgeRecord) -> Result<String, serde_json::Error> {
    match &edge.refusal {
        None => serde_json::to_string(&edge.policy_errors),
        Some(refusal) => {
            let mut all: BTreeMap<&str, &[String]> = edge
                .policy_errors
                .iter()
                .map(|(id, errors)| (id.as_str(), errors.as_slice()))
                .collect();
            all.insert("", std::slice::from_ref(refusal));
            serde_json::to_string(&all)
        }
    }
}

/// The per-policy errors and the refusal a `policy_errors` column holds.
fn errors_from_json(json: &str) -> Result<(PolicyErrors, Option<String>), serde_json::Error> {
    let mut errors: PolicyErrors = serde_json::from_str(json)?;
    let refusal = errors.remove("").map(|messages| messages.join("; "));
    Ok((errors, refusal))
}

fn decode(row: &AnyRow) -> Result<EdgeRecord, StoreError> {
    let metadata: Vec<u8> = row.try_get("metadata")?;
    let errors: String = row.try_get("policy_errors")?;
    let (policy_errors, refusal) =
        errors_from_json(&errors).map_err(|e| StoreError::corrupt("edge policy errors", e))?;
    let transport: String = row.try_get("transport")?;
    Ok(EdgeRecord {
        instance_id: row.try_get("instance_id")?,
        service_name: row.try_get("service_name")?,
        service_namespace: row.try_get("service_namespace")?,
        service_version: row.try_get("service_version")?,
        metadata: ClientMetadata::decode(metadata.as_slice())
            .map_err(|e| StoreError::corrupt("edge metadata", e))?,
        transport: transport_from_text(&transport),
        replica: row.try_get("replica")?,
        api_key_id: row.try_get("api_key_id")?,
        first_seen: row.try_get("first_seen")?,
        last_seen: row.try_get("last_seen")?,
        connected: row.try_get::<i64, _>("connected")? != 0,
        desired_hash: row.try_get("desired_hash")?,
        applied_hash: row.try_get("applied_hash")?,
        last_failed_hash: row.try_get("last_failed_hash")?,
        policy_errors,
        refusal,
        conflict_key_id: row.try_get("conflict_key_id")?,
        conflict_at: row.try_get("conflict_at")?,
    })
}

impl Store {
    /// Writes the given edges, keeping each one's earliest `first_seen`. A
    /// record older than the stored one is ignored: when an edge moves to
    /// another replica, the old replica's late flush cannot undo the news.
    ///
    /// Rows go [`EDGE_ROWS_PER_STATEMENT`] to an `INSERT`, each statement
    /// committed on its own: a fleet-wide change rewrites every edge's row,
    /// and one statement per row (10,000 after a policy update) kept a
    /// SQLite server busy for a second, with admin calls queued behind it.
    pub async fn upsert_edges(&self, edges: &[EdgeRecord]) -> Result<(), StoreError> {
        // A statement may not touch a row twice (PostgreSQL refuses), so a
        // batch holding one instance twice keeps its latest record, with
        // the earliest first_seen of the two.
        let mut latest: BTreeMap<&str, (&EdgeRecord, i64)> = BTreeMap::new();
        for edge in edges {
            let (kept, first_seen) = latest
                .entry(&edge.instance_id)
                .or_insert((edge, edge.first_seen));
            *first_seen = (*first_seen).min(edge.first_seen);
            if edge.last_seen >= kept.last_seen {
                *kept = edge;
            }
        }
        let rows: Vec<(&EdgeRecord, i64)> = latest.into_values().collect();
        for chunk in rows.chunks(EDGE_ROWS_PER_STATEMENT) {
            self.upsert_edge_rows(chunk).await?;
        }
        Ok(())
    }

    /// One statement writing `edges`, each with the first_seen to store.
    async fn upsert_edge_rows(&self, edges: &[(&EdgeRecord, i64)]) -> Result<(), StoreError> {
        let encoded = edges
            .iter()
            .map(|(edge, _)| {
                let errors =
                    errors_json(edge).map_err(|e| StoreError::corrupt("edge policy errors", e))?;
                Ok((edge.metadata.encode_to_vec(), errors))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // SQLite looks named parameters (`$7`) up one by one, which is
        // quadratic in a statement this long; `?` is bound by position.
        let positional = self.backend == super::Backend::Sqlite;
        let mut sql = String::with_capacity(600 + edges.len() * 80);
        sql.push_str(
            "INSERT INTO edges (instance_id, service_name, service_namespace, service_version, \
             metadata, transport, replica, api_key_id, first_seen, last_seen, connected, \
             desired_hash, applied_hash, last_failed_hash, policy_errors, conflict_key_id, \
             conflict_at) VALUES ",
        );
        for row in 0..edges.len() {
            if row > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for column in 0..EDGE_COLUMNS {
                if column > 0 {
                    sql.push_str(", ");
                }
                if positional {
                    sql.push('?');
                } else {
                    sql.push('$');
                    sql.push_str(&(row * EDGE_COLUMNS + column + 1).to_string());
                }
            }
            sql.push(')');
        }
        sql.push_str(
            " ON CONFLICT (instance_id) DO UPDATE SET service_name = excluded.service_name, \
             service_namespace = excluded.service_namespace, \
             service_version = excluded.service_version, metadata = excluded.metadata, \
             transport = excluded.transport, replica = excluded.replica, \
             api_key_id = excluded.api_key_id, \
             first_seen = CASE WHEN edges.first_seen < excluded.first_seen \
                 THEN edges.first_seen ELSE excluded.first_seen END, \
             last_seen = excluded.last_seen, connected = excluded.connected, \
             desired_hash = excluded.desired_hash, applied_hash = excluded.applied_hash, \
             last_failed_hash = excluded.last_failed_hash, \
             policy_errors = excluded.policy_errors, \
             conflict_key_id = excluded.conflict_key_id, conflict_at = excluded.conflict_at \
             WHERE excluded.last_seen >= edges.last_seen",
        );
        let mut query = sqlx::query(&sql);
        for ((edge, first_seen), (metadata, errors)) in edges.iter().zip(encoded) {
            query = query
                .bind(&edge.instance_id)
                .bind(&edge.service_name)
                .bind(&edge.service_namespace)
                .bind(&edge.service_version)
                .bind(metadata)
                .bind(transport_text(edge.transport))
                .bind(&edge.replica)
                .bind(&edge.api_key_id)
                .bind(*first_seen)
                .bind(edge.last_seen)
                .bind(edge.connected)
                .bind(&edge.desired_hash)
                .bind(&edge.applied_hash)
                .bind(&edge.last_failed_hash)
                .bind(errors)
                .bind(&edge.conflict_key_id)
                .bind(edge.conflict_at);
        }
        query.execute(&self.pool).await?;
        Ok(())
    }

    /// Edges seen at or after `seen_since` (ms), in instance-id order after
    /// `after_id`, at most `limit`.
    pub async fn list_edges(
        &self,
        service_name: Option<&str>,
        seen_since: i64,
        after_id: &str,
        limit: usize,
    ) -> Result<Vec<EdgeRecord>, StoreError> {
        let rows = match service_name {
            Some(service) => sqlx::query(&format!(
                "{SELECT_EDGE} WHERE service_name = $1 AND last_seen >= $2 AND instance_id > $3 \
                     ORDER BY instance_id LIMIT $4"
            ))
            .bind(service)
            .bind(seen_since)
            .bind(after_id)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?,
            None => {
                sqlx::query(&format!(
                    "{SELECT_EDGE} WHERE last_seen >= $1 AND instance_id > $2 \
                     ORDER BY instance_id LIMIT $3"
                ))
                .bind(seen_since)
                .bind(after_id)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(decode).collect()
    }

    pub async fn get_edge(&self, instance_id: &str) -> Result<EdgeRecord, StoreError> {
        let row = sqlx::query(&format!("{SELECT_EDGE} WHERE instance_id = $1"))
            .bind(instance_id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => decode(&row),
            None => Err(StoreError::NotFound {
                kind: "edge",
                id: instance_id.to_owned(),
            }),
        }
    }

    /// Marks every edge this replica had connected as disconnected: called
    /// at start-up, since a restart closed all of its streams.
    pub async fn disconnect_replica_edges(&self, replica: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE edges SET connected = $1 WHERE replica = $2 AND connected = $3")
            .bind(false)
            .bind(replica)
            .bind(true)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_columns_keep_their_text() {
        for (transport, text) in [(Transport::Stream, "stream"), (Transport::Poll, "poll")] {
            assert_eq!(transport_text(transport), text);
            assert_eq!(transport_from_text(text), transport);
        }
        assert_eq!(transport_text(Transport::Unspecified), "poll");
        assert_eq!(transport_from_text("carrier pigeon"), Transport::Poll);

        let mut edge = EdgeRecord {
            instance_id: "e".into(),
            service_name: String::new(),
            service_namespace: String::new(),
            service_version: String::new(),
            metadata: ClientMetadata::default(),
            transport: Transport::Stream,
            replica: "r1".into(),
            api_key_id: String::new(),
            first_seen: 0,
            last_seen: 0,
            connected: true,
            desired_hash: String::new(),
            applied_hash: String::new(),
            last_failed_hash: "h2".into(),
            policy_errors: BTreeMap::from([("p1".to_owned(), vec!["bad regex".to_owned()])]),
            refusal: Some("too many policies".into()),
            conflict_key_id: String::new(),
            conflict_at: 0,
        };
        let json = errors_json(&edge).unwrap();
        assert_eq!(json, r#"{"":["too many policies"],"p1":["bad regex"]}"#);
        assert_eq!(
            errors_from_json(&json).unwrap(),
            (edge.policy_errors.clone(), edge.refusal.clone())
        );
        edge.refusal = None;
        let json = errors_json(&edge).unwrap();
        assert_eq!(json, r#"{"p1":["bad regex"]}"#);
        assert_eq!(errors_from_json(&json).unwrap().1, None);
    }
}

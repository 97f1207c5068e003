//! Event types, their classifications, classification runs with their token
//! usage, and the lease that keeps runs from overlapping across replicas.
//!
//! The classification table is the cache of control-plane.md §6.5: one row per
//! (fingerprint, classifier version), valid while the event type's
//! definition hash is the one it was classified under. Of log records and
//! spans, event types keep the masked template, a few examples as the edge
//! sent them (redacted there: values the recognisers flag never leave it),
//! and counts of what was seen on them (attributes, sensitive values,
//! duplicate fields), all bounded (see `catalog::absorb_observations`).

use std::collections::HashMap;

use prost::Message;
use sqlx::Row;
use tero_proto::controlplane::{Classification, ClassificationRun, EventType, ProviderUsage};

use super::{Store, StoreError};
use crate::classify::catalog::absorb_observations;

/// How a write changes an event type's activity columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Log lines: counts add up, first/last seen widen.
    Add,
    /// Metric families: the latest inventory replaces what was there.
    Replace,
}

/// An event type as stored: activity in the message's fields, no
/// classification.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEventType {
    pub event: EventType,
    /// Hash of what a classifier sees; see [`crate::classify::catalog::definition`].
    pub definition: String,
    /// Non-empty when this fingerprint is another name of that event type.
    pub merged_into: String,
}

/// A cached classification with the definition it was made for.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredClassification {
    pub fingerprint: String,
    pub classifier: String,
    pub definition: String,
    pub classification: Classification,
}

fn decode_event_type(row: &sqlx::any::AnyRow) -> Result<StoredEventType, StoreError> {
    let body: Vec<u8> = row.try_get("body")?;
    let mut event =
        EventType::decode(body.as_slice()).map_err(|e| StoreError::corrupt("event type", e))?;
    event.count = row.try_get::<i64, _>("count")?.max(0) as u64;
    event.bytes = row.try_get::<i64, _>("bytes")?.max(0) as u64;
    event.first_seen_unix_ms = row.try_get("first_seen")?;
    event.last_seen_unix_ms = row.try_get("last_seen")?;
    Ok(StoredEventType {
        event,
        definition: row.try_get("definition")?,
        merged_into: row.try_get("merged_into")?,
    })
}

const EVENT_COLUMNS: &str =
    "fingerprint, definition, merged_into, count, bytes, first_seen, last_seen, body";

impl Store {
    /// Writes an event type under its fingerprint. The body (name, HELP,
    /// labels, …) and definition are replaced; the activity columns follow
    /// `activity`. A fingerprint already merged into another stays merged.
    pub async fn put_event_type(
        &self,
        event: &EventType,
        definition: &str,
        activity: Activity,
        now: i64,
    ) -> Result<(), StoreError> {
        put_event_type(&self.pool, event, definition, activity, now).await
    }

    /// Counts log templates and span patterns: new ones are stored, known
    /// ones (and aliases) add their activity, and what the report saw on
    /// their records (examples, attributes, sensitive values, duplicate
    /// fields, the edge) merges into the canonical event type. With a `receipt` (an edge report's instance,
    /// session and seq), a report seen before changes nothing and `false`
    /// comes back; all of it is one transaction, so a report is counted
    /// exactly once even when the answer to the edge is lost.
    pub async fn apply_templates(
        &self,
        receipt: Option<(&str, &str, u64)>,
        writes: &[TemplateWrite],
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some((instance, session, seq)) = receipt {
            let inserted = sqlx::query(
                "INSERT INTO log_reports (instance_id, session, seq, received_at)                  VALUES ($1, $2, $3, $4) ON CONFLICT (instance_id, session, seq) DO NOTHING",
            )
            .bind(instance)
            .bind(session)
            .bind(clamp(seq))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        for write in writes {
            // What the report saw on the records joins what is stored, in
            // the transaction the receipt guards, so it is added once.
            let target = write
                .alias_of
                .as_deref()
                .unwrap_or(&write.event.fingerprint);
            let stored = event_body(&mut *tx, target).await?;
            match &write.alias_of {
                None => {
                    let mut event = write.event.clone();
                    if let Some(mut stored) = stored {
                        absorb_observations(&mut stored, &write.event);
                        take_observations(&mut event, stored);
                    } else {
                        let mut fresh = EventType::default();
                        absorb_observations(&mut fresh, &write.event);
                        take_observations(&mut event, fresh);
                    }
                    put_event_type(&mut *tx, &event, &write.definition, Activity::Add, now).await?
                }
                Some(target) => {
                    if let Some(mut stored) = stored {
                        absorb_observations(&mut stored, &write.event);
                        set_event_body(&mut *tx, target, &stored).await?;
                    }
                    let mut alias = write.event.clone();
                    take_observations(&mut alias, EventType::default());
                    merge_event_type(&mut *tx, &alias, target, now).await?;
                    let e = &write.event;
                    add_event_activity(
                        &mut *tx,
                        target,
                        e.count,
                        e.bytes,
                        e.first_seen_unix_ms,
                        e.last_seen_unix_ms,
                        now,
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Drops the receipts of edge reports older than `before` (retention:
    /// an edge retries a report for minutes, not days).
    pub async fn prune_log_reports(&self, before: i64) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM log_reports WHERE received_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    pub async fn get_event_type(
        &self,
        fingerprint: &str,
    ) -> Result<Option<StoredEventType>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM event_types WHERE fingerprint = $1"
        ))
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_event_type).transpose()
    }

    /// Event types that are not aliases, by service and kind (empty: all),
    /// ordered by service, kind and fingerprint.
    pub async fn event_types(
        &self,
        service: &str,
        kind: &str,
    ) -> Result<Vec<StoredEventType>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM event_types WHERE merged_into = '' \
             AND ($1 = '' OR service = $1) AND ($2 = '' OR kind = $2) \
             ORDER BY service, kind, fingerprint"
        ))
        .bind(service)
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_event_type).collect()
    }

    /// Services with log or span event types active at or after `since`.
    pub async fn event_services(&self, since: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT service FROM event_types WHERE merged_into = '' \
             AND kind IN ('log', 'span') AND last_seen >= $1 ORDER BY service",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("service").map_err(StoreError::from))
            .collect()
    }

    /// How many services (the one of `service`, if given) have a recent
    /// metric inventory or log/span event types active since `since`:
    /// what the analyst can analyse.
    pub async fn count_analysable_services(
        &self,
        since: i64,
        service: &str,
    ) -> Result<u32, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (\
               SELECT service FROM inventory_reports WHERE window_end > $1 \
                 AND ($2 = '' OR service = $2) \
               UNION \
               SELECT service FROM event_types WHERE merged_into = '' \
                 AND kind IN ('log', 'span') AND last_seen >= $1 AND ($2 = '' OR service = $2)\
             ) AS analysable",
        )
        .bind(since)
        .bind(service)
        .fetch_one(&self.pool)
        .await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// When an edge report carrying log templates or span patterns was
    /// last counted; `None` when none was (or its receipt was pruned).
    pub async fn last_event_report_at(&self) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT MAX(received_at) FROM log_reports")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// A service's log event types, aliases included, for recognising the
    /// templates a report names.
    pub async fn log_event_types_with_aliases(
        &self,
        service: &str,
    ) -> Result<Vec<StoredEventType>, StoreError> {
        self.event_types_with_aliases(service, "log").await
    }

    /// A service's event types of `kind`, aliases included.
    pub async fn event_types_with_aliases(
        &self,
        service: &str,
        kind: &str,
    ) -> Result<Vec<StoredEventType>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM event_types WHERE service = $1 AND kind = $2 \
             ORDER BY fingerprint"
        ))
        .bind(service)
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_event_type).collect()
    }

    /// Saves a classification as the cache entry for (fingerprint,
    /// classifier), replacing an older one.
    pub async fn put_classification(
        &self,
        fingerprint: &str,
        definition: &str,
        classification: &Classification,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO classifications (fingerprint, classifier, definition, category, verdict, \
             classified_at, body) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (fingerprint, classifier) DO UPDATE SET definition = excluded.definition, \
             category = excluded.category, verdict = excluded.verdict, \
             classified_at = excluded.classified_at, body = excluded.body",
        )
        .bind(fingerprint)
        .bind(&classification.classifier)
        .bind(definition)
        .bind(&classification.category)
        .bind(&classification.verdict)
        .bind(classification.classified_at_unix_ms)
        .bind(classification.encode_to_vec())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every cached classification, by fingerprint, newest first.
    pub async fn classifications(
        &self,
    ) -> Result<HashMap<String, Vec<StoredClassification>>, StoreError> {
        let rows = sqlx::query(
            "SELECT fingerprint, classifier, definition, body FROM classifications \
             ORDER BY classified_at DESC, classifier",
        )
        .fetch_all(&self.pool)
        .await?;
        decode_classifications(rows)
    }

    /// The cached classifications of one service's event types, by
    /// fingerprint, newest first (what the issue analyst reads per service,
    /// without loading every service's).
    pub async fn classifications_of_service(
        &self,
        service: &str,
    ) -> Result<HashMap<String, Vec<StoredClassification>>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.fingerprint, c.classifier, c.definition, c.body FROM classifications c \
             JOIN event_types e ON e.fingerprint = c.fingerprint WHERE e.service = $1 \
             ORDER BY c.classified_at DESC, c.classifier",
        )
        .bind(service)
        .fetch_all(&self.pool)
        .await?;
        decode_classifications(rows)
    }

    /// Starts a run record and returns its id.
    pub async fn start_classification_run(&self, started_at: i64) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO classification_runs (started_at, body) VALUES ($1, $2) RETURNING id",
        )
        .bind(started_at)
        .bind(Vec::<u8>::new())
        .fetch_one(&self.pool)
        .await?;
        let id: i64 = row.try_get("id")?;
        Ok(id as u64)
    }

    /// Stores a finished run and adds its usage to the per-classifier
    /// totals, in one transaction so totals never count a run twice.
    pub async fn finish_classification_run(
        &self,
        run: &ClassificationRun,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE classification_runs SET body = $2 WHERE id = $1")
            .bind(run.id as i64)
            .bind(run.encode_to_vec())
            .execute(&mut *tx)
            .await?;
        for usage in &run.usage {
            sqlx::query(
                "INSERT INTO classification_usage (classifier, input_tokens, output_tokens, \
                 requests) VALUES ($1, $2, $3, $4) ON CONFLICT (classifier) DO UPDATE SET \
                 input_tokens = classification_usage.input_tokens + excluded.input_tokens, \
                 output_tokens = classification_usage.output_tokens + excluded.output_tokens, \
                 requests = classification_usage.requests + excluded.requests",
            )
            .bind(&usage.classifier)
            .bind(clamp(usage.input_tokens))
            .bind(clamp(usage.output_tokens))
            .bind(clamp(usage.requests))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The newest finished runs, newest first.
    pub async fn recent_classification_runs(
        &self,
        limit: u32,
    ) -> Result<Vec<ClassificationRun>, StoreError> {
        let rows = sqlx::query("SELECT body FROM classification_runs ORDER BY id DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut runs = Vec::with_capacity(rows.len());
        for row in rows {
            let body: Vec<u8> = row.try_get("body")?;
            if body.is_empty() {
                // Started and not finished (running, or its replica died).
                continue;
            }
            runs.push(
                ClassificationRun::decode(body.as_slice())
                    .map_err(|e| StoreError::corrupt("classification run", e))?,
            );
        }
        Ok(runs)
    }

    /// Tokens billed per classifier over all runs.
    pub async fn classification_usage(&self) -> Result<Vec<ProviderUsage>, StoreError> {
        let rows = sqlx::query(
            "SELECT classifier, input_tokens, output_tokens, requests FROM classification_usage \
             ORDER BY classifier",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ProviderUsage {
                    classifier: r.try_get("classifier")?,
                    input_tokens: r.try_get::<i64, _>("input_tokens")?.max(0) as u64,
                    output_tokens: r.try_get::<i64, _>("output_tokens")?.max(0) as u64,
                    requests: r.try_get::<i64, _>("requests")?.max(0) as u64,
                })
            })
            .collect()
    }

    /// Takes (or renews) lease `name` for `holder` until `now + ttl_ms`;
    /// `false` while another holder's lease is unexpired.
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at <= $4",
        )
        .bind(name)
        .bind(holder)
        .bind(now.saturating_add(ttl_ms))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Gives lease `name` up if `holder` has it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// One log template or span pattern to count; see [`Store::apply_templates`].
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateWrite {
    /// Fingerprint, text, severity and this report's activity.
    pub event: EventType,
    pub definition: String,
    /// The stored event type this template is another name of: its
    /// activity goes there, and the fingerprint is kept as an alias.
    pub alias_of: Option<String>,
}

async fn put_event_type<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    event: &EventType,
    definition: &str,
    activity: Activity,
    now: i64,
) -> Result<(), StoreError> {
    let mut body = event.clone();
    body.classification = None;
    body.unclassified_reason.clear();
    body.count = 0;
    body.bytes = 0;
    body.first_seen_unix_ms = 0;
    body.last_seen_unix_ms = 0;
    let on_conflict = match activity {
        Activity::Add => {
            "count = event_types.count + excluded.count, \
             bytes = event_types.bytes + excluded.bytes, \
             first_seen = CASE WHEN excluded.first_seen < event_types.first_seen \
               THEN excluded.first_seen ELSE event_types.first_seen END, \
             last_seen = CASE WHEN excluded.last_seen > event_types.last_seen \
               THEN excluded.last_seen ELSE event_types.last_seen END"
        }
        Activity::Replace => {
            "count = excluded.count, bytes = excluded.bytes, \
             first_seen = CASE WHEN excluded.first_seen < event_types.first_seen \
               THEN excluded.first_seen ELSE event_types.first_seen END, \
             last_seen = excluded.last_seen"
        }
    };
    let sql = format!(
        "INSERT INTO event_types (fingerprint, kind, service, definition, count, bytes, \
         first_seen, last_seen, updated_at, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (fingerprint) DO UPDATE SET definition = excluded.definition, \
         updated_at = excluded.updated_at, body = excluded.body, {on_conflict}"
    );
    sqlx::query(&sql)
        .bind(&event.fingerprint)
        .bind(&event.kind)
        .bind(&event.service)
        .bind(definition)
        .bind(clamp(event.count))
        .bind(clamp(event.bytes))
        .bind(event.first_seen_unix_ms)
        .bind(event.last_seen_unix_ms)
        .bind(now)
        .bind(body.encode_to_vec())
        .execute(executor)
        .await?;
    Ok(())
}

/// The stored body of event type `fingerprint` (without its activity).
async fn event_body<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    fingerprint: &str,
) -> Result<Option<EventType>, StoreError> {
    let row = sqlx::query("SELECT body FROM event_types WHERE fingerprint = $1")
        .bind(fingerprint)
        .fetch_optional(executor)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let body: Vec<u8> = row.try_get("body")?;
    EventType::decode(body.as_slice())
        .map(Some)
        .map_err(|e| StoreError::corrupt("event type", e))
}

/// Replaces the body of event type `fingerprint`, activity untouched.
async fn set_event_body<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    fingerprint: &str,
    event: &EventType,
) -> Result<(), StoreError> {
    let mut body = event.clone();
    body.classification = None;
    body.unclassified_reason.clear();
    body.count = 0;
    body.bytes = 0;
    body.first_seen_unix_ms = 0;
    body.last_seen_unix_ms = 0;
    sqlx::query("UPDATE event_types SET body = $2 WHERE fingerprint = $1")
        .bind(fingerprint)
        .bind(body.encode_to_vec())
        .execute(executor)
        .await?;
    Ok(())
}

/// Moves the accumulated observations of `from` into `into`, leaving the
/// rest of `into` (name, severity, activity) as it is.
fn take_observations(into: &mut EventType, from: EventType) {
    into.examples = from.examples;
    into.attributes = from.attributes;
    into.sensitive = from.sensitive;
    into.duplicate_fields = from.duplicate_fields;
    into.edges = from.edges;
    into.errors = from.errors;
}

/// Adds log activity to the event type `fingerprint` if it exists.
async fn add_event_activity<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    fingerprint: &str,
    count: u64,
    bytes: u64,
    first_seen: i64,
    last_seen: i64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE event_types SET count = count + $2, bytes = bytes + $3, \
         first_seen = CASE WHEN $4 < first_seen THEN $4 ELSE first_seen END, \
         last_seen = CASE WHEN $5 > last_seen THEN $5 ELSE last_seen END, \
         updated_at = $6 WHERE fingerprint = $1",
    )
    .bind(fingerprint)
    .bind(clamp(count))
    .bind(clamp(bytes))
    .bind(first_seen)
    .bind(last_seen)
    .bind(now)
    .execute(executor)
    .await?;
    Ok(())
}

/// Records that `alias.fingerprint` names the event type `into`, creating
/// the alias row when the fingerprint was never stored.
async fn merge_event_type<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    alias: &EventType,
    into: &str,
    now: i64,
) -> Result<(), StoreError> {
    if alias.fingerprint == into {
        return Ok(());
    }
    let mut body = alias.clone();
    body.classification = None;
    body.count = 0;
    body.bytes = 0;
    sqlx::query(
        "INSERT INTO event_types (fingerprint, kind, service, definition, merged_into, \
         first_seen, last_seen, updated_at, body) VALUES ($1, $2, $3, '', $4, $5, $5, $5, $6) \
         ON CONFLICT (fingerprint) DO UPDATE SET merged_into = excluded.merged_into, \
         updated_at = excluded.updated_at",
    )
    .bind(&alias.fingerprint)
    .bind(&alias.kind)
    .bind(&alias.service)
    .bind(into)
    .bind(now)
    .bind(body.encode_to_vec())
    .execute(executor)
    .await?;
    Ok(())
}

fn decode_classifications(
    rows: Vec<sqlx::any::AnyRow>,
) -> Result<HashMap<String, Vec<StoredClassification>>, StoreError> {
    let mut out: HashMap<String, Vec<StoredClassification>> = HashMap::new();
    for row in rows {
        let body: Vec<u8> = row.try_get("body")?;
        let classification = Classification::decode(body.as_slice())
            .map_err(|e| StoreError::corrupt("classification", e))?;
        let fingerprint: String = row.try_get("fingerprint")?;
        out.entry(fingerprint.clone())
            .or_default()
            .push(StoredClassification {
                fingerprint,
                classifier: row.try_get("classifier")?,
                definition: row.try_get("definition")?,
                classification,
            });
    }
    Ok(out)
}

/// BIGINT columns hold at most `i64::MAX`.
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

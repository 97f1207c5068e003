//! The background loop that keeps issues current: re-runs the detectors for
//! a service when its inventory, its log templates or span patterns, its
//! edges' volume, the classifications or the usage sources change, and
//! checks the impact of accepted issues' policies as statistics arrive.
//!
//! Metric detectors read the service's inventories; log and trace
//! detectors read its classified event types and its edges' volume
//! ([`EventInventory`]). Each family is reconciled against the existing
//! issues of its own kinds only, and only when it was analysed: a service
//! whose inventories aged out keeps its metric issues while its event
//! types are analysed, and the other way round.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tero_proto::controlplane::{Issue, ListEventTypesRequest, PolicyImpact, ServiceInventory};
use tero_proto::policy::Policy;
use tero_usage::{ParsedSource, UsageIndex};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::detect::events::{self, ClassifiedEvent, EventInventory, ServiceVolume};
use super::impact::{self, verdict};
use super::window::{Activation, activation};
use super::{IssueConfig, merge, reconcile, status};
use crate::classify::Classifications;
use crate::classify::catalog::{KIND_LOG, KIND_SPAN};
use crate::store::{Store, StoreError, now_ms};

/// Changes arriving within this window are analysed together.
const DEBOUNCE: Duration = Duration::from_millis(500);
/// How often accepted issues' impact is re-checked.
const VERIFY_EVERY: Duration = Duration::from_secs(15);
/// How often old inventory reports are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Volume arrives with every statistics report (every 10 to 30 s per
/// edge): the services of the edges that reported some are analysed at
/// most this often.
const VOLUME_EVERY: Duration = Duration::from_secs(60);
/// Edges remembered as having reported volume between two volume passes;
/// beyond, the next pass analyses every service.
const MAX_VOLUME_EDGES: usize = 100_000;
const DAY_MS: f64 = 86_400_000.0;
const MINUTE_MS: i64 = 60_000;
/// Log and span event types last seen longer ago than this raise nothing:
/// a template emitted a few times a day stays analysed, one gone for a
/// day has its issues resolved. (Edges report a template only in the
/// reports after it was seen, every few minutes.)
const EVENT_HORIZON_MS: i64 = 24 * 60 * 60 * 1000;
/// Services whose event types were last seen within this are re-analysed
/// by full passes, so the issues of one that went quiet are resolved.
const EVENT_SERVICES_MS: i64 = 7 * EVENT_HORIZON_MS;

#[derive(Debug)]
pub struct Analyst {
    store: Store,
    config: IssueConfig,
    dirty: Mutex<Dirty>,
    wake: Notify,
    /// Where classified event types come from; set once at start-up.
    /// Without it, only metrics are analysed.
    classifications: OnceLock<Arc<Classifications>>,
    /// Edges that reported volume since the last volume pass.
    volume: Mutex<VolumeDirty>,
}

#[derive(Debug, Default)]
struct VolumeDirty {
    edges: BTreeSet<String>,
    overflowed: bool,
}

#[derive(Debug, Default)]
struct Dirty {
    services: BTreeSet<String>,
    all: bool,
}

impl Analyst {
    pub fn new(store: Store, config: IssueConfig) -> Arc<Analyst> {
        Arc::new(Analyst {
            store,
            config,
            dirty: Mutex::default(),
            wake: Notify::new(),
            classifications: OnceLock::new(),
            volume: Mutex::default(),
        })
    }

    /// Lets the analyst read classified log and span event types (and
    /// re-analyse after each classification run). Set once; later calls
    /// are ignored.
    pub fn set_classifications(&self, classifications: Arc<Classifications>) {
        let _ = self.classifications.set(classifications);
    }

    /// A service's log templates or span patterns were counted: analyse
    /// it soon.
    pub fn events_changed(&self, service: &str) {
        self.service_changed(service);
    }

    /// Edge `instance` reported volume: its service is analysed on the
    /// next volume pass (at most once a minute).
    pub fn volume_reported(&self, instance: &str) {
        let mut volume = self.volume.lock().unwrap_or_else(PoisonError::into_inner);
        if volume.edges.len() >= MAX_VOLUME_EDGES {
            volume.overflowed = true;
        } else {
            volume.edges.insert(instance.to_owned());
        }
    }

    /// Marks the services of the edges that reported volume as dirty.
    async fn volume_pass(&self) -> Result<(), StoreError> {
        let pending =
            std::mem::take(&mut *self.volume.lock().unwrap_or_else(PoisonError::into_inner));
        if pending.overflowed {
            self.all_changed();
            return Ok(());
        }
        if pending.edges.is_empty() {
            return Ok(());
        }
        let mut services = BTreeSet::new();
        for instance in &pending.edges {
            match self.store.get_edge(instance).await {
                Ok(edge) if !edge.service_name.is_empty() => {
                    services.insert(edge.service_name);
                }
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        // Only services with event types: metric issues do not read volume.
        let since = now_ms() - EVENT_HORIZON_MS;
        let with_events: BTreeSet<String> = self
            .store
            .event_services(since)
            .await?
            .into_iter()
            .collect();
        for service in services.intersection(&with_events) {
            self.service_changed(service);
        }
        Ok(())
    }

    pub fn config(&self) -> &IssueConfig {
        &self.config
    }

    /// A service's inventory changed: analyse it soon.
    pub fn service_changed(&self, service: &str) {
        self.dirty
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .services
            .insert(service.to_owned());
        self.wake.notify_one();
    }

    /// Usage sources changed: every service's findings may have.
    pub fn all_changed(&self) {
        self.dirty
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .all = true;
        self.wake.notify_one();
    }

    /// Runs until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        // Issues may be stale after a restart (inventories arrived while
        // another replica ran, or detectors changed): start with a full run.
        self.all_changed();
        let mut verify = tokio::time::interval(VERIFY_EVERY);
        verify.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut volume = tokio::time::interval(VOLUME_EVERY);
        volume.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut runs = self.classifications.get().map(|c| c.subscribe_runs());
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = next_run(&mut runs) => {
                    if changed {
                        // New classifications can raise or clear log and
                        // span issues anywhere.
                        self.all_changed();
                    } else {
                        runs = None;
                    }
                }
                _ = volume.tick() => {
                    if let Err(e) = self.volume_pass().await {
                        tracing::warn!(error = %e, "volume-triggered analysis failed");
                    }
                }
                _ = self.wake.notified() => {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(DEBOUNCE) => {}
                    }
                    if let Err(e) = self.analyse_dirty().await {
                        tracing::warn!(error = %e, "issue analysis failed; retrying on the next change");
                    }
                }
                _ = verify.tick() => {
                    if let Err(e) = self.verify_all().await {
                        tracing::warn!(error = %e, "impact verification failed");
                    }
                }
                _ = prune.tick() => {
                    let cutoff = now_ms() - self.config.inventory_retention_ms;
                    match self.store.prune_inventories(cutoff).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(reports = n, "old inventory reports deleted"),
                        Err(e) => tracing::warn!(error = %e, "inventory retention failed"),
                    }
                }
            }
        }
    }

    async fn analyse_dirty(&self) -> Result<(), StoreError> {
        let dirty = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(PoisonError::into_inner));
        let services: Vec<String> = if dirty.all {
            let since = now_ms() - self.config.lookback_ms;
            let mut all: BTreeSet<String> = self
                .store
                .inventoried_services(since)
                .await?
                .into_iter()
                .collect();
            if self.classifications.get().is_some() {
                all.extend(
                    self.store
                        .event_services(now_ms() - EVENT_SERVICES_MS)
                        .await?,
                );
            }
            all.into_iter().collect()
        } else {
            dirty.services.into_iter().collect()
        };
        for service in services {
            self.analyse(&service).await?;
        }
        Ok(())
    }

    /// The service's merged inventory over the lookback window.
    pub async fn inventory(&self, service: &str) -> Result<ServiceInventory, StoreError> {
        let reports = self
            .store
            .latest_inventories(service, now_ms() - self.config.lookback_ms)
            .await?;
        Ok(merge::merge(service, &reports))
    }

    /// Every stored usage source, indexed.
    pub async fn usage_index(&self) -> Result<UsageIndex, StoreError> {
        let mut sources = Vec::new();
        for stored in self.store.list_usage().await? {
            let parsed: ParsedSource =
                serde_json::from_str(&stored.parsed).map_err(|e| StoreError::Corrupt {
                    what: "usage source",
                    reason: e.to_string(),
                })?;
            sources.push((stored.name, parsed));
        }
        Ok(UsageIndex::new(sources))
    }

    /// One service's canonical log and span event types seen in the last
    /// day, with their classification for the current chain, and its
    /// edges' volume over the lookback window, per day. `None` when the
    /// service has no log or span event types at all (or classification is
    /// not wired in); with only older ones, an inventory without events, so
    /// that their issues resolve.
    pub async fn event_inventory(
        &self,
        service: &str,
        now: i64,
    ) -> Result<Option<EventInventory>, StoreError> {
        let Some(classifications) = self.classifications.get() else {
            return Ok(None);
        };
        let mut events = Vec::new();
        let mut known = false;
        let active_since = now - EVENT_HORIZON_MS.max(self.config.lookback_ms);
        for kind in [KIND_LOG, KIND_SPAN] {
            let listed = classifications
                .list(&ListEventTypesRequest {
                    service: service.to_owned(),
                    kind: kind.to_owned(),
                    ..Default::default()
                })
                .await?;
            known |= !listed.is_empty();
            events.extend(
                listed
                    .into_iter()
                    .filter(|event| event.last_seen_unix_ms >= active_since)
                    .map(|event| ClassifiedEvent {
                        run_id: event.classification.as_ref().map_or(0, |c| c.run_id),
                        classification: event.classification.clone(),
                        event: with_span_attributes(event),
                    }),
            );
        }
        if !known {
            return Ok(None);
        }
        let (volume, from) = self.service_volume(service, now).await?;
        Ok(Some(EventInventory {
            service: service.to_owned(),
            events,
            volume,
            from_unix_ms: from,
            to_unix_ms: now,
        }))
    }

    /// What the service's edges (those seen in the lookback window)
    /// reported as volume, scaled to a day over the part of the window they
    /// covered: from the first minute any of them reported, so an edge
    /// started ten minutes ago is not diluted over an hour. Returns the
    /// volume and the start of the window it covers.
    async fn service_volume(
        &self,
        service: &str,
        now: i64,
    ) -> Result<(ServiceVolume, i64), StoreError> {
        let from = now - self.config.lookback_ms;
        let mut volume = ServiceVolume {
            edges: self
                .service_edges(service, from)
                .await?
                .into_iter()
                .collect(),
            ..ServiceVolume::default()
        };
        let (mut records, mut bytes, mut spans, mut span_bytes) = (0f64, 0f64, 0f64, 0f64);
        let mut first: Option<i64> = None;
        for edge in &volume.edges {
            let buckets = self.store.edge_volume(edge, from, i64::MAX).await?;
            let mut reported = false;
            for bucket in buckets {
                let c = bucket.counts;
                if c.log_records == 0 && c.spans == 0 && c.log_bytes == 0 && c.span_bytes == 0 {
                    continue;
                }
                reported = true;
                first = Some(first.map_or(bucket.minute, |f| f.min(bucket.minute)));
                records += c.log_records as f64;
                bytes += c.log_bytes as f64;
                spans += c.spans as f64;
                span_bytes += c.span_bytes as f64;
            }
            if reported {
                volume.edges_reporting += 1;
            }
        }
        let start = first.map_or(from, |f| f.max(from));
        // At least a minute: the first bucket's minute may be the current one.
        let covered = (now - start).max(MINUTE_MS) as f64;
        let per_day = DAY_MS / covered;
        volume.log_records_per_day = records * per_day;
        volume.log_bytes_per_day = bytes * per_day;
        volume.spans_per_day = spans * per_day;
        volume.span_bytes_per_day = span_bytes * per_day;
        Ok((volume, start))
    }

    /// Runs the detectors over one service and saves what changed.
    pub async fn analyse(&self, service: &str) -> Result<Vec<Issue>, StoreError> {
        let now = now_ms();
        let inventory = self.inventory(service).await?;
        let events = self.event_inventory(service, now).await?;
        if inventory.instances.is_empty() && events.is_none() {
            // No recent inventory nor event types: nothing to confirm or
            // resolve.
            return Ok(Vec::new());
        }
        let existing = self.store.issues_of_service(service).await?;
        let (event_issues, metric_issues): (Vec<Issue>, Vec<Issue>) = existing
            .iter()
            .cloned()
            .partition(|i| is_event_kind(&i.kind));
        let mut changes = Vec::new();
        if !inventory.instances.is_empty() {
            let usage = self.usage_index().await?;
            let findings = super::detect::detect(
                &inventory,
                &usage,
                &self.config.thresholds,
                &self.config.prices,
            );
            changes.extend(reconcile::reconcile(&metric_issues, findings, now));
        }
        if let Some(events) = &events {
            let findings = events::detect(
                events,
                &self.config.events,
                &self.config.thresholds,
                &self.config.prices,
            );
            changes.extend(reconcile::reconcile(&event_issues, findings, now));
        }
        // Merged changes point at issues saved before them: metric changes
        // come first, each family with its plain changes ahead of its
        // merged ones, and winners are always of the same family.
        changes.sort_by_key(|c| c.merged_into.is_some());
        let mut ids: HashMap<reconcile::Key, String> = existing
            .iter()
            .map(|i| ((i.kind.clone(), i.subject.clone()), i.id.clone()))
            .collect();
        let mut saved = Vec::with_capacity(changes.len());
        for change in changes {
            let mut issue = change.issue;
            if let Some(winner) = change.merged_into {
                // Winners are saved first, so a new one has its id by now.
                let into = ids.get(&winner).cloned().unwrap_or_default();
                let before = existing.iter().find(|i| i.id == issue.id);
                if before.is_some_and(|b| b.status == issue.status && b.merged_into == into) {
                    continue;
                }
                issue.merged_into = into;
                issue.updated_at_unix_ms = now_ms();
            }
            tracing::info!(
                service, kind = %issue.kind, subject = %issue.subject, status = %issue.status,
                merged_into = %issue.merged_into, "issue updated"
            );
            let issue = self.store.save_issue(issue).await?;
            ids.insert(
                (issue.kind.clone(), issue.subject.clone()),
                issue.id.clone(),
            );
            saved.push(issue);
        }
        Ok(saved)
    }

    /// The impact of the policy an issue was accepted with, if any.
    pub async fn impact(&self, issue: &Issue) -> Result<Option<PolicyImpact>, StoreError> {
        if issue.policy_id.is_empty() {
            return Ok(None);
        }
        let history = match self.store.policy_history(&issue.policy_id).await {
            Ok(history) => history,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(period) = activation(&history) else {
            return Ok(None);
        };
        let policy = history.first().and_then(|r| r.policy.as_ref());
        let impact = self.measure(issue, period, policy).await?;
        // Whoever sees the verdict first moves the issue along, so `tero
        // impact` never says verified of an issue still in progress.
        if issue.status == status::IN_PROGRESS {
            self.settle(issue, Ok((period, impact.clone()))).await?;
        }
        Ok(Some(impact))
    }

    /// The impact of the issue's policy (`policy`, its current revision)
    /// over its current period.
    async fn measure(
        &self,
        issue: &Issue,
        period: Activation,
        policy: Option<&Policy>,
    ) -> Result<PolicyImpact, StoreError> {
        let from = period.measured_from();
        let buckets = self
            .store
            .policy_stats(&issue.policy_id, from, i64::MAX)
            .await?;
        let signal = impact::signal_of(policy);
        if signal == impact::signal::METRIC {
            return Ok(PolicyImpact {
                // Shown so that a reader seeing 0 scrapes after a promotion or
                // a re-enable knows when counting begins.
                measured_since_unix_ms: from,
                ..impact::measure(
                    issue,
                    &issue.policy_id,
                    period.shadow,
                    period.since,
                    &buckets,
                    &self.config,
                )
            });
        }
        let now = now_ms();
        let service_records = self
            .service_records(&issue.service, signal, from, now)
            .await?;
        Ok(impact::measure_events(
            issue,
            &issue.policy_id,
            signal,
            impact::rewrites_only(policy),
            period.shadow,
            period.since,
            impact::EventWindow {
                measured_since: from,
                now,
                service_records,
            },
            &buckets,
            &self.config,
        ))
    }

    /// Records of `signal` (`log` or `trace`) the service's edges reported
    /// as volume from `from` on; `None` when none reported any.
    async fn service_records(
        &self,
        service: &str,
        signal: &str,
        from: i64,
        now: i64,
    ) -> Result<Option<f64>, StoreError> {
        if from >= now {
            return Ok(None);
        }
        let edges = self.service_edges(service, from).await?;
        if edges.is_empty() {
            return Ok(None);
        }
        let volumes = self.store.volume_by_edge(None, from, i64::MAX).await?;
        let seen: f64 = volumes
            .iter()
            .filter(|(instance, _)| edges.contains(*instance))
            .map(|(_, c)| {
                if signal == impact::signal::TRACE {
                    c.spans as f64
                } else {
                    c.log_records as f64
                }
            })
            .sum();
        Ok((seen > 0.0).then_some(seen))
    }

    /// Instance ids of the service's edges seen since `since`.
    async fn service_edges(
        &self,
        service: &str,
        since: i64,
    ) -> Result<BTreeSet<String>, StoreError> {
        let mut edges = BTreeSet::new();
        let mut after = String::new();
        loop {
            let page = self
                .store
                .list_edges(Some(service), since, &after, 1000)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.instance_id.clone();
            edges.extend(page.into_iter().map(|edge| edge.instance_id));
        }
        Ok(edges)
    }

    /// Moves accepted issues along as their policies' impact is measured,
    /// and reopens resolved ones whose policy was revoked.
    pub async fn verify_all(&self) -> Result<(), StoreError> {
        // One snapshot: what a pass changes is seen by the next one. An
        // issue this pass resolves has an active policy, so rechecking it
        // in the same pass would change nothing.
        let statuses = [status::IN_PROGRESS, status::OPEN, status::RESOLVED];
        for issue in self.store.list_issues_in("", &statuses, "").await? {
            match issue.status.as_str() {
                status::IN_PROGRESS => self.verify(issue).await?,
                // Reopened because the policy was revoked: back in progress
                // once it is active again.
                status::OPEN
                    if !issue.policy_id.is_empty() && issue.remediation == status::REVOKED =>
                {
                    self.verify(issue).await?
                }
                status::RESOLVED if !issue.policy_id.is_empty() => {
                    self.recheck_resolved(issue).await?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A resolution verified by a policy holds only while the policy runs:
    /// deleted or disabled, the waste is back (control-plane.md §2.4, resolved → open).
    async fn recheck_resolved(&self, issue: Issue) -> Result<(), StoreError> {
        let active = match self.store.policy_history(&issue.policy_id).await {
            Err(StoreError::NotFound { .. }) => false,
            Err(e) => return Err(e),
            Ok(history) => activation(&history).is_some(),
        };
        if active {
            return Ok(());
        }
        let mut reopened = issue;
        let now = now_ms();
        reopened.status = status::OPEN.into();
        reopened.remediation = status::REVOKED.into();
        reopened.resolution = String::new();
        reopened.resolved_at_unix_ms = 0;
        reopened.updated_at_unix_ms = now;
        tracing::info!(
            issue = %reopened.id, policy = %reopened.policy_id,
            "policy revoked after the issue was resolved; issue reopened"
        );
        self.store.save_issue(reopened).await?;
        Ok(())
    }

    async fn verify(&self, issue: Issue) -> Result<(), StoreError> {
        let history = match self.store.policy_history(&issue.policy_id).await {
            Err(StoreError::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
            Ok(history) => history,
        };
        let measured = match activation(&history) {
            Some(period) => {
                let policy = history.first().and_then(|r| r.policy.as_ref());
                Ok((period, self.measure(&issue, period, policy).await?))
            }
            // Drafts are not revoked: they were never active (a deleted
            // policy has no history, and a draft's was never enabled).
            None if history.is_empty() => Err(Some(status::REVOKED)),
            None => Err((issue.remediation != status::DRAFT).then_some(status::REVOKED)),
        };
        self.settle(&issue, measured).await
    }

    /// Saves what a measurement (or the policy's absence: `Err`, with the
    /// remediation to record, if any) means for the issue.
    async fn settle(
        &self,
        issue: &Issue,
        measured: Result<(Activation, PolicyImpact), Option<&str>>,
    ) -> Result<(), StoreError> {
        let mut updated = issue.clone();
        match measured {
            Err(Some(remediation)) => updated.remediation = remediation.into(),
            Err(None) => {}
            Ok((period, impact)) => {
                // An issue reopened by a revocation is back in progress.
                updated.status = status::IN_PROGRESS.into();
                match (impact.verdict.as_str(), period.shadow) {
                    (verdict::VERIFIED, false) => {
                        updated.status = status::RESOLVED.into();
                        updated.remediation = status::VERIFIED.into();
                        updated.resolved_at_unix_ms = now_ms();
                        updated.resolution = if impact.signal == impact::signal::METRIC {
                            format!(
                                "policy {} removes {:.0}% of the estimated volume ({} scrapes \
                                 measured)",
                                impact.policy_id,
                                impact.ratio * 100.0,
                                impact.scrapes
                            )
                        } else {
                            format!(
                                "policy {} removes {:.0}% of the estimated {} records ({:.0} \
                                 minutes measured)",
                                impact.policy_id,
                                impact.ratio * 100.0,
                                impact.signal,
                                impact.minutes_measured
                            )
                        };
                    }
                    (verdict::BELOW_ESTIMATE, false) => {
                        updated.remediation = status::VERIFICATION_FAILED.into();
                    }
                    (_, true) => updated.remediation = status::SHADOW.into(),
                    _ => updated.remediation = status::ACTIVE.into(),
                }
            }
        }
        if updated != *issue {
            updated.updated_at_unix_ms = now_ms();
            tracing::info!(
                issue = %issue.id, status = %updated.status, remediation = %updated.remediation,
                "issue remediation updated"
            );
            self.store.save_issue(updated).await?;
        }
        Ok(())
    }
}

/// Whether `kind` is a log or trace detector's (the family reconciled
/// against event types rather than inventories).
pub fn is_event_kind(kind: &str) -> bool {
    events::kind::ALL.contains(&kind)
}

/// The next classification run's notice: `true` when one finished, `false`
/// when the sender is gone; never resolves without a receiver.
async fn next_run(runs: &mut Option<tokio::sync::watch::Receiver<u64>>) -> bool {
    match runs {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// A span event type's attribute keys (its labels) as key-only attribute
/// profiles, the form the detectors read to choose between `http.route`,
/// `url.path` and the user-agent keys. Log event types carry real profiles
/// and are returned as they are.
fn with_span_attributes(
    mut event: tero_proto::controlplane::EventType,
) -> tero_proto::controlplane::EventType {
    if event.kind == crate::classify::catalog::KIND_SPAN && event.attributes.is_empty() {
        event.attributes = event
            .labels
            .iter()
            .map(|key| tero_proto::controlplane::AttributeProfile {
                key: key.clone(),
                ..Default::default()
            })
            .collect();
    }
    event
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tero_classify::{Chain, Embedded};
    use tero_proto::controlplane::{InventoryReport, LogTemplate, Transport};
    use tero_proto::policy::ClientMetadata;

    use super::*;
    use crate::store::EdgeRecord;

    fn edge(instance: &str, service: &str) -> EdgeRecord {
        EdgeRecord {
            instance_id: instance.into(),
            service_name: service.into(),
            service_namespace: String::new(),
            service_version: String::new(),
            metadata: ClientMetadata::default(),
            transport: Transport::Poll,
            replica: "r".into(),
            api_key_id: "k".into(),
            first_seen: now_ms(),
            last_seen: now_ms(),
            connected: false,
            desired_hash: String::new(),
            applied_hash: String::new(),
            last_failed_hash: String::new(),
            policy_errors: BTreeMap::new(),
            refusal: None,
            conflict_key_id: String::new(),
            conflict_at: 0,
        }
    }

    #[tokio::test]
    async fn volume_marks_only_services_with_event_types_and_at_most_once_per_pass() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/a.db?mode=rwc", dir.path().display());
        let store = Store::open(&url).await.unwrap();
        let classifications =
            Classifications::new(store.clone(), Chain::new(Box::new(Embedded::new())), None);
        let analyst = Analyst::new(store.clone(), IssueConfig::default());
        analyst.set_classifications(Arc::clone(&classifications));
        store
            .upsert_edges(&[edge("e-logs", "checkout"), edge("e-metrics", "cart")])
            .await
            .unwrap();
        let report = InventoryReport {
            session: "s".into(),
            seq: 1,
            log_templates: vec![LogTemplate {
                fingerprint: "fp".into(),
                text: "order <num> paid".into(),
                count: 1,
                last_seen_unix_ms: now_ms(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(
            classifications
                .record_report("e-logs", "checkout", &report)
                .await
                .unwrap()
        );

        for _ in 0..3 {
            analyst.volume_reported("e-logs");
        }
        analyst.volume_reported("e-metrics");
        analyst.volume_reported("e-unknown");
        analyst.volume_pass().await.unwrap();
        let dirty = std::mem::take(&mut *analyst.dirty.lock().unwrap());
        assert_eq!(dirty.services.into_iter().collect::<Vec<_>>(), ["checkout"]);
        assert!(!dirty.all);
        // Nothing new since: the next pass marks nothing.
        analyst.volume_pass().await.unwrap();
        assert!(analyst.dirty.lock().unwrap().services.is_empty());
    }
}

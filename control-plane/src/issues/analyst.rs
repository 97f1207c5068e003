//! The background loop that keeps issues current: re-runs the detectors for
//! a service when its inventory or the usage sources change, and checks the
//! impact of accepted issues' policies as statistics arrive.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tero_proto::controlplane::{Issue, PolicyImpact, ServiceInventory};
use tero_usage::{ParsedSource, UsageIndex};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::impact::{self, verdict};
use super::window::{Activation, activation};
use super::{IssueConfig, merge, reconcile, status};
use crate::store::{Store, StoreError, now_ms};

/// Changes arriving within this window are analysed together.
const DEBOUNCE: Duration = Duration::from_millis(500);
/// How often accepted issues' impact is re-checked.
const VERIFY_EVERY: Duration = Duration::from_secs(15);
/// How often old inventory reports are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct Analyst {
    store: Store,
    config: IssueConfig,
    dirty: Mutex<Dirty>,
    wake: Notify,
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
        })
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
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
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
        let services = if dirty.all {
            self.store
                .inventoried_services(now_ms() - self.config.lookback_ms)
                .await?
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

    /// Runs the detectors over one service and saves what changed.
    pub async fn analyse(&self, service: &str) -> Result<Vec<Issue>, StoreError> {
        let inventory = self.inventory(service).await?;
        if inventory.instances.is_empty() {
            // No recent inventory: nothing to confirm or resolve.
            return Ok(Vec::new());
        }
        let usage = self.usage_index().await?;
        let findings = super::detect::detect(
            &inventory,
            &usage,
            &self.config.thresholds,
            &self.config.prices,
        );
        let existing = self.store.issues_of_service(service).await?;
        let changes = reconcile::reconcile(&existing, findings, now_ms());
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
        let impact = self.measure(issue, period).await?;
        // Whoever sees the verdict first moves the issue along, so `tero
        // impact` never says verified of an issue still in progress.
        if issue.status == status::IN_PROGRESS {
            self.settle(issue, Ok((period, impact.clone()))).await?;
        }
        Ok(Some(impact))
    }

    /// The impact of the issue's policy over its current period.
    async fn measure(&self, issue: &Issue, period: Activation) -> Result<PolicyImpact, StoreError> {
        let from = period.measured_from();
        let buckets = self
            .store
            .policy_stats(&issue.policy_id, from, i64::MAX)
            .await?;
        Ok(PolicyImpact {
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
        })
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
        let active = match self.store.policy_history(&issue.policy_id).await {
            Err(StoreError::NotFound { .. }) => Err(Some(status::REVOKED)),
            Err(e) => return Err(e),
            Ok(history) => activation(&history).ok_or_else(|| {
                // Drafts are not revoked: they were never active.
                (issue.remediation != status::DRAFT).then_some(status::REVOKED)
            }),
        };
        let measured = match active {
            Ok(period) => Ok((period, self.measure(&issue, period).await?)),
            Err(revoked) => Err(revoked),
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
                        updated.resolution = format!(
                            "policy {} removes {:.0}% of the estimated volume ({} scrapes measured)",
                            impact.policy_id,
                            impact.ratio * 100.0,
                            impact.scrapes
                        );
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

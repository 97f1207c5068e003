//! Classification runs: gather the event types (metric families from the
//! latest inventories, stored log templates), answer what the cache can,
//! send the rest through the [`Chain`], store the results and the run's
//! token usage.
//!
//! The cache is keyed by (fingerprint, classifier id) and valid while the
//! event type's definition is the one it was classified under (control-plane.md §6.5),
//! so a second run over the same event types makes no provider call, on any
//! replica and after any restart. A lease in the database keeps two
//! replicas from running at once, which would pay twice for new types.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tero_classify::intake::{Examples, Intake};
use tero_classify::{Chain, Classification};
use tero_proto::controlplane::{
    Classification as StoredClassification, ClassificationRun, ClassificationStatus,
    EventType as StoredEvent, InventoryReport, ListEventTypesRequest, LogSample, LogTemplate,
    ProviderUsage, SpanPattern, SubmitLogsResponse, UnclassifiedEventType,
};
use tokio_util::sync::CancellationToken;

use super::catalog::{self, definition};
use crate::store::{Activity, Store, StoreError, now_ms};

/// The database lease runs take.
const LEASE: &str = "classification-run";
/// Longer than any run should take; a replica that dies mid-run blocks
/// others for at most this long.
const LEASE_TTL: Duration = Duration::from_secs(30 * 60);
/// Inventories older than this no longer define metric event types.
const INVENTORY_HORIZON: Duration = Duration::from_secs(24 * 3600);
/// Receipts of counted edge reports are kept this long (edges retry for
/// minutes).
const RECEIPT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Unclassified event types listed in a run record.
const MAX_UNCLASSIFIED_LISTED: usize = 100;
/// Runs a status shows by default, and at most.
const DEFAULT_STATUS_RUNS: u32 = 10;
const MAX_STATUS_RUNS: u32 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("another classification run is in progress; try again when it has finished")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who asked for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Api,
    Schedule,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Api => "api",
            Trigger::Schedule => "schedule",
        }
    }
}

/// Classification for the whole control plane: intake, runs, status.
pub struct Classifications {
    store: Store,
    chain: Chain,
    intake: Intake,
    examples: Examples,
    /// This process, as lease holder.
    holder: String,
    /// Scheduled runs; `None` runs only on request.
    interval: Option<Duration>,
    /// Latest run's unclassified event types, with reasons, for listings.
    last_unclassified: std::sync::Mutex<HashMap<String, String>>,
    /// The id of the latest run this process finished, for whoever acts
    /// on new classifications (the issue analyst).
    runs: tokio::sync::watch::Sender<u64>,
}

impl Classifications {
    pub fn new(store: Store, chain: Chain, interval: Option<Duration>) -> Arc<Classifications> {
        let mut id = [0u8; 8];
        // A random holder id; a failure leaves zeros plus the pid, which is
        // still distinct enough between replicas on different hosts.
        let _ = getrandom::fill(&mut id);
        Arc::new(Classifications {
            store,
            chain,
            intake: Intake::new(),
            examples: Examples::default(),
            holder: format!("{}-{}", hex::encode(id), std::process::id()),
            interval,
            last_unclassified: Default::default(),
            runs: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Changes whenever this process finishes a classification run (the
    /// value is the run's id).
    pub fn subscribe_runs(&self) -> tokio::sync::watch::Receiver<u64> {
        self.runs.subscribe()
    }

    /// Classifier ids the cache answers for: the primary's and the
    /// fallback's (an event type the fallback classified is not sent to the
    /// primary again).
    fn chain_ids(&self) -> Vec<String> {
        let mut ids = vec![self.chain.primary.id()];
        if let Some(f) = &self.chain.fallback {
            ids.push(f.id());
        }
        ids
    }

    /// Mines submitted samples and counts their templates.
    pub async fn submit_logs(
        &self,
        service: &str,
        records: &[LogSample],
    ) -> Result<SubmitLogsResponse, StoreError> {
        let now = now_ms();
        let mined = self.intake.mine(service, records, now);
        self.count_templates(service, &mined.report, None, now)
            .await?;
        Ok(SubmitLogsResponse {
            accepted: mined.accepted,
            templates: mined.templates,
            new_templates: mined.new_templates,
        })
    }

    /// Counts the log templates and span patterns of an edge's report once:
    /// `false` when this report was counted before (a retry) or carried
    /// neither.
    pub async fn record_report(
        &self,
        instance: &str,
        service: &str,
        report: &InventoryReport,
    ) -> Result<bool, StoreError> {
        if report.log_templates.is_empty() && report.span_patterns.is_empty() {
            return Ok(false);
        }
        let receipt = (instance, report.session.as_str(), report.seq);
        self.count_events(
            service,
            &report.log_templates,
            &report.span_patterns,
            Some(receipt),
            now_ms(),
        )
        .await
    }

    async fn count_templates(
        &self,
        service: &str,
        templates: &[LogTemplate],
        receipt: Option<(&str, &str, u64)>,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.count_events(service, templates, &[], receipt, now)
            .await
    }

    /// Counts templates and span patterns in one transaction behind the
    /// report's receipt (when it has one: an edge's report).
    async fn count_events(
        &self,
        service: &str,
        templates: &[LogTemplate],
        spans: &[SpanPattern],
        receipt: Option<(&str, &str, u64)>,
        now: i64,
    ) -> Result<bool, StoreError> {
        if templates.is_empty() && spans.is_empty() {
            return Ok(false);
        }
        let mut writes = Vec::new();
        if !templates.is_empty() {
            let known = self.store.log_event_types_with_aliases(service).await?;
            writes.extend(catalog::template_writes(service, templates, &known));
        }
        if !spans.is_empty() {
            let known = self
                .store
                .event_types_with_aliases(service, catalog::KIND_SPAN)
                .await?;
            writes.extend(catalog::span_writes(service, spans, &known));
        }
        if let Some((instance, _, _)) = receipt {
            for write in &mut writes {
                write.event.edges = vec![instance.to_owned()];
            }
        }
        let counted = self.store.apply_templates(receipt, &writes, now).await?;
        if counted {
            // Examples are looked up under the fingerprint a run sees: the
            // template's own, or the event type it is an alias of.
            for write in &writes {
                let Some(template) = templates
                    .iter()
                    .find(|t| t.fingerprint == write.event.fingerprint)
                else {
                    continue;
                };
                let fingerprint = write.alias_of.as_ref().unwrap_or(&template.fingerprint);
                self.examples.remember(fingerprint, &template.examples);
            }
        }
        Ok(counted)
    }

    /// Stores the metric families of every recently inventoried service as
    /// event types.
    async fn refresh_metric_event_types(&self, now: i64) -> Result<(), StoreError> {
        let since = now - INVENTORY_HORIZON.as_millis() as i64;
        for service in self.store.inventoried_services(since).await? {
            let inventories = self.store.latest_inventories(&service, since).await?;
            for event in catalog::metric_event_types(&service, &inventories) {
                let definition = definition(&event);
                self.store
                    .put_event_type(&event, &definition, Activity::Replace, now)
                    .await?;
            }
        }
        Ok(())
    }

    /// The valid cached classification of `event` for this chain, newest
    /// first among the chain's classifiers.
    fn cached<'a>(
        ids: &[String],
        event: &StoredEvent,
        definition: &str,
        cache: &'a HashMap<String, Vec<crate::store::StoredClassification>>,
    ) -> Option<&'a StoredClassification> {
        cache.get(&event.fingerprint)?.iter().find_map(|c| {
            (ids.contains(&c.classifier) && c.definition == definition).then_some(&c.classification)
        })
    }

    /// One run. `force` ignores the cache.
    pub async fn run(
        &self,
        trigger: Trigger,
        requested_by: &str,
        force: bool,
    ) -> Result<ClassificationRun, RunError> {
        let started = now_ms();
        if !self
            .store
            .try_lease(LEASE, &self.holder, started, LEASE_TTL.as_millis() as i64)
            .await?
        {
            return Err(RunError::Busy);
        }
        let result = self.run_leased(trigger, requested_by, force, started).await;
        if let Err(e) = self.store.release_lease(LEASE, &self.holder).await {
            tracing::warn!(error = %e, "could not release the classification lease; it expires on its own");
        }
        result
    }

    async fn run_leased(
        &self,
        trigger: Trigger,
        requested_by: &str,
        force: bool,
        started: i64,
    ) -> Result<ClassificationRun, RunError> {
        self.refresh_metric_event_types(started).await?;
        let events = self.store.event_types("", "").await?;
        let cache = self.store.classifications().await?;
        let ids = self.chain_ids();
        let mut definitions = HashMap::new();
        let mut submit = Vec::new();
        let mut cached = 0u64;
        for stored in &events {
            let event = &stored.event;
            if !force && Self::cached(&ids, event, &stored.definition, &cache).is_some() {
                cached += 1;
                continue;
            }
            definitions.insert(event.fingerprint.clone(), stored.definition.clone());
            submit.push(catalog::to_classifier_input(
                event,
                self.examples.get(&event.fingerprint),
            ));
        }
        let mut run = ClassificationRun {
            started_at_unix_ms: started,
            trigger: trigger.as_str().to_string(),
            requested_by: requested_by.to_string(),
            event_types: events.len() as u64,
            cached,
            submitted: submit.len() as u64,
            budget_tokens: self.chain.budget.unwrap_or(0),
            ..Default::default()
        };
        if trigger == Trigger::Schedule && submit.is_empty() {
            // Nothing new: a scheduled run leaves no record.
            return Ok(run);
        }
        run.id = self.store.start_classification_run(started).await?;
        let output = self.chain.run(&submit).await;
        let now = now_ms();
        for c in &output.classifications {
            let definition = definitions
                .get(&c.fingerprint)
                .map(String::as_str)
                .unwrap_or_default();
            self.store
                .put_classification(&c.fingerprint, definition, &to_stored(c, now, run.id))
                .await?;
        }
        run.finished_at_unix_ms = now;
        run.classified = output.report.classified as u64;
        run.unclassified = output.report.unclassified as u64;
        run.fallbacks = output.report.fallbacks;
        run.stopped_by_budget = output.report.stopped_by_budget;
        run.usage = output
            .report
            .per_provider
            .iter()
            .map(|(id, u)| ProviderUsage {
                classifier: id.clone(),
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
                requests: u.requests,
            })
            .collect();
        run.unclassified_examples = output
            .unclassified
            .iter()
            .take(MAX_UNCLASSIFIED_LISTED)
            .map(|(fingerprint, reason)| UnclassifiedEventType {
                fingerprint: fingerprint.clone(),
                reason: reason.clone(),
            })
            .collect();
        *self
            .last_unclassified
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = output.unclassified.into_iter().collect();
        self.store.finish_classification_run(&run).await?;
        self.runs.send_replace(run.id);
        tracing::info!(
            run = run.id,
            event_types = run.event_types,
            cached = run.cached,
            classified = run.classified,
            unclassified = run.unclassified,
            fallbacks = run.fallbacks,
            tokens = run
                .usage
                .iter()
                .map(|u| u.input_tokens + u.output_tokens)
                .sum::<u64>(),
            "classification run finished"
        );
        Ok(run)
    }

    /// Event types with their valid classification (for this chain).
    pub async fn list(&self, req: &ListEventTypesRequest) -> Result<Vec<StoredEvent>, StoreError> {
        let events = self.store.event_types(&req.service, &req.kind).await?;
        // One service's cache entries when the listing is of one service
        // (the issue analyst asks per service).
        let cache = if req.service.is_empty() {
            self.store.classifications().await?
        } else {
            self.store.classifications_of_service(&req.service).await?
        };
        let ids = self.chain_ids();
        let reasons = self
            .last_unclassified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = Vec::with_capacity(events.len());
        for stored in events {
            let mut event = stored.event;
            event.classification = Self::cached(&ids, &event, &stored.definition, &cache).cloned();
            if event.classification.is_none() {
                event.unclassified_reason =
                    reasons.get(&event.fingerprint).cloned().unwrap_or_default();
            }
            let c = event.classification.as_ref();
            let keep = (req.category.is_empty() || c.is_some_and(|c| c.category == req.category))
                && (req.verdict.is_empty() || c.is_some_and(|c| c.verdict == req.verdict))
                && (!req.unclassified || c.is_none());
            if keep {
                out.push(event);
            }
        }
        Ok(out)
    }

    /// Configuration, counts, token usage and recent runs.
    pub async fn status(&self, runs: u32) -> Result<ClassificationStatus, StoreError> {
        let runs = match runs {
            0 => DEFAULT_STATUS_RUNS,
            n => n.min(MAX_STATUS_RUNS),
        };
        let events = self.list(&ListEventTypesRequest::default()).await?;
        let mut categories: BTreeMap<String, u64> = BTreeMap::new();
        let mut classified = 0;
        for e in &events {
            if let Some(c) = &e.classification {
                classified += 1;
                *categories.entry(c.category.clone()).or_default() += 1;
            }
        }
        Ok(ClassificationStatus {
            primary: self.chain.primary.id(),
            fallback: self
                .chain
                .fallback
                .as_ref()
                .map(|f| f.id())
                .unwrap_or_default(),
            budget_tokens: self.chain.budget.unwrap_or(0),
            event_types: events.len() as u64,
            classified,
            unclassified: events.len() as u64 - classified,
            usage: self.store.classification_usage().await?,
            runs: self.store.recent_classification_runs(runs).await?,
            categories,
        })
    }

    /// Scheduled runs (when configured) and receipt pruning, until
    /// `shutdown`.
    pub async fn run_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(interval) = self.interval else {
            return;
        };
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let run = tokio::select! {
                _ = shutdown.cancelled() => {
                    // Abandoned mid-run: let another replica take over now
                    // rather than when the lease expires.
                    let _ = self.store.release_lease(LEASE, &self.holder).await;
                    return;
                }
                run = self.run(Trigger::Schedule, "schedule", false) => run,
            };
            match run {
                Ok(_) | Err(RunError::Busy) => {}
                Err(e) => tracing::warn!(error = %e, "scheduled classification run failed"),
            }
            let before = now_ms() - RECEIPT_RETENTION.as_millis() as i64;
            if let Err(e) = self.store.prune_log_reports(before).await {
                tracing::warn!(error = %e, "pruning log report receipts failed");
            }
        }
    }
}

impl std::fmt::Debug for Classifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifications")
            .field("primary", &self.chain.primary.id())
            .field("fallback", &self.chain.fallback.as_ref().map(|c| c.id()))
            .field("budget", &self.chain.budget)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

fn to_stored(c: &Classification, now: i64, run_id: u64) -> StoredClassification {
    StoredClassification {
        category: c.category.as_str().to_string(),
        verdict: c.verdict.as_str().to_string(),
        confidence: c.confidence,
        rationale: c.rationale.clone(),
        classifier: c.classifier.clone(),
        classified_at_unix_ms: now,
        run_id,
    }
}

//! A classification run: the primary classifier, an optional fallback and
//! an optional token budget (control-plane.md §6.6).
//!
//! The fallback takes over only when the primary cannot serve at all
//! ([`ClassifyError::falls_back`]: unavailable after its retries, or an
//! authentication / permission failure). Rate limits, invalid requests and
//! malformed replies leave the batch unclassified with the reason instead:
//! the provider is up, and the same request would be throttled or rejected
//! elsewhere too.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{
    BatchResult, Classification, Classifier, ClassifyError, EventType, TokenUsage, all_unclassified,
};

/// Primary, optional fallback and an optional budget in tokens per run.
pub struct Chain {
    pub primary: Box<dyn Classifier>,
    pub fallback: Option<Box<dyn Classifier>>,
    /// Input plus output tokens across both classifiers for one [`Chain::run`].
    pub budget: Option<u64>,
}

/// What a run cost and how it went.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunReport {
    /// Keyed by [`Classifier::id`]; a classifier that was called but billed
    /// nothing appears with zeros.
    pub per_provider: BTreeMap<String, TokenUsage>,
    pub classified: usize,
    pub unclassified: usize,
    /// Batches handed to the fallback classifier.
    pub fallbacks: u64,
    pub stopped_by_budget: bool,
}

impl RunReport {
    /// Usage summed over all classifiers.
    pub fn total(&self) -> TokenUsage {
        let mut total = TokenUsage::default();
        for usage in self.per_provider.values() {
            total += *usage;
        }
        total
    }
}

/// The outcome of a run. Every distinct fingerprint of the input is in
/// exactly one of `classifications` and `unclassified`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOutput {
    pub classifications: Vec<Classification>,
    /// `(fingerprint, reason)`.
    pub unclassified: Vec<(String, String)>,
    pub report: RunReport,
}

impl Chain {
    pub fn new(primary: Box<dyn Classifier>) -> Chain {
        Chain {
            primary,
            fallback: None,
            budget: None,
        }
    }

    pub fn with_fallback(mut self, fallback: Box<dyn Classifier>) -> Chain {
        self.fallback = Some(fallback);
        self
    }

    pub fn with_budget(mut self, tokens: u64) -> Chain {
        self.budget = Some(tokens);
        self
    }

    /// Classifies `events` in batches of the primary's batch size. Never
    /// fails: what could not be classified comes back with a reason.
    pub async fn run(&self, events: &[EventType]) -> RunOutput {
        // One classification per event type (control-plane.md §6.5): a repeated
        // fingerprint would be paid for twice.
        let mut seen = BTreeSet::new();
        let unique: Vec<EventType> = events
            .iter()
            .filter(|e| seen.insert(e.fingerprint.as_str()))
            .cloned()
            .collect();
        let mut run = Run {
            chain: self,
            out: RunOutput::default(),
            spent: 0,
            observed: BTreeMap::new(),
            primary_down: None,
            fallback_down: None,
        };
        for batch in unique.chunks(self.primary.batch_size().max(1)) {
            run.batch(batch).await;
        }
        let mut out = run.out;
        out.report.classified = out.classifications.len();
        out.report.unclassified = out.unclassified.len();
        out
    }
}

/// The state of one run.
struct Run<'c> {
    chain: &'c Chain,
    out: RunOutput,
    /// Tokens billed so far, all classifiers.
    spent: u64,
    /// Per classifier id: (tokens billed, event types sent), to predict the
    /// next batch's cost from real numbers rather than a guess.
    observed: BTreeMap<String, (u64, u64)>,
    /// Why the primary (or fallback) failed unrecoverably. Sticky for the
    /// run: each new attempt would cost the full retry schedule again, and a
    /// rejected key or an outage does not heal between two batches.
    primary_down: Option<String>,
    fallback_down: Option<String>,
}

enum Attempt {
    Done,
    OverBudget,
    Failed(ClassifyError),
}

impl Run<'_> {
    async fn batch(&mut self, batch: &[EventType]) {
        if self.out.report.stopped_by_budget {
            return self.unclassify(batch, &ClassifyError::BudgetExceeded.to_string());
        }
        let chain = self.chain;
        if self.primary_down.is_none() {
            match self.attempt(&*chain.primary, batch, false).await {
                Attempt::Done => return,
                Attempt::OverBudget => return self.stop(batch),
                Attempt::Failed(e) if e.falls_back() => {
                    self.primary_down = Some(format!("{}: {e}", chain.primary.id()));
                }
                Attempt::Failed(e) => {
                    return self.unclassify(batch, &format!("{}: {e}", chain.primary.id()));
                }
            }
        }
        let primary = self.primary_down.clone().unwrap_or_default();
        let Some(fallback) = chain.fallback.as_deref() else {
            return self.unclassify(batch, &primary);
        };
        if let Some(reason) = self.fallback_down.clone() {
            return self.unclassify(batch, &format!("{primary}; fallback {reason}"));
        }
        match self.attempt(fallback, batch, true).await {
            Attempt::Done => {}
            Attempt::OverBudget => self.stop(batch),
            Attempt::Failed(e) => {
                let reason = format!("{}: {e}", fallback.id());
                if e.falls_back() {
                    self.fallback_down = Some(reason.clone());
                }
                self.unclassify(batch, &format!("{primary}; fallback {reason}"));
            }
        }
    }

    async fn attempt(
        &mut self,
        classifier: &dyn Classifier,
        batch: &[EventType],
        is_fallback: bool,
    ) -> Attempt {
        let id = classifier.id();
        if !self.affordable(&id, classifier, batch) {
            return Attempt::OverBudget;
        }
        if is_fallback {
            self.out.report.fallbacks += 1;
        }
        self.out.report.per_provider.entry(id.clone()).or_default();
        match classifier.classify(batch).await {
            Ok(result) => {
                self.absorb(&id, batch, result);
                Attempt::Done
            }
            Err(e) => {
                tracing::warn!(classifier = %id, error = %e, event_types = batch.len(), "classification batch failed");
                Attempt::Failed(e)
            }
        }
    }

    /// Whether the budget allows sending `batch` to `classifier`: spent
    /// tokens plus the expected cost must stay within it. The expected cost
    /// is this run's average per event type for that classifier once it has
    /// answered, its own estimate before. A single reply can still overshoot
    /// (its size is only known afterwards); the run stops at the next batch.
    fn affordable(&self, id: &str, classifier: &dyn Classifier, batch: &[EventType]) -> bool {
        let Some(budget) = self.chain.budget else {
            return true;
        };
        let expected = match self.observed.get(id) {
            Some(&(tokens, events)) if tokens > 0 && events > 0 => {
                tokens.div_ceil(events).saturating_mul(batch.len() as u64)
            }
            _ => classifier.estimate_tokens(batch),
        };
        // A classifier that costs nothing (the embedded one) is never
        // stopped by a budget others have spent.
        expected == 0 || self.spent.saturating_add(expected) <= budget
    }

    /// Takes in a classifier's result, holding it to the contract: only the
    /// batch's fingerprints, each once; anything it skipped is unclassified.
    fn absorb(&mut self, id: &str, batch: &[EventType], result: BatchResult) {
        let usage = result.usage;
        *self
            .out
            .report
            .per_provider
            .entry(id.to_string())
            .or_default() += usage;
        self.spent = self.spent.saturating_add(usage.total());
        let seen = self.observed.entry(id.to_string()).or_default();
        seen.0 = seen.0.saturating_add(usage.total());
        seen.1 = seen.1.saturating_add(batch.len() as u64);

        let mut pending: BTreeSet<&str> = batch.iter().map(|e| e.fingerprint.as_str()).collect();
        for c in result.classifications {
            if pending.remove(c.fingerprint.as_str()) {
                self.out.classifications.push(c);
            } else {
                tracing::warn!(classifier = %id, fingerprint = %c.fingerprint, "classification outside the batch ignored");
            }
        }
        for (fingerprint, reason) in result.unclassified {
            if pending.remove(fingerprint.as_str()) {
                self.out.unclassified.push((fingerprint, reason));
            }
        }
        for fingerprint in pending {
            self.out.unclassified.push((
                fingerprint.to_string(),
                format!("{id} returned nothing for it"),
            ));
        }
    }

    fn stop(&mut self, batch: &[EventType]) {
        tracing::info!(
            spent = self.spent,
            budget = self.chain.budget,
            "classification run stopped by its token budget"
        );
        self.out.report.stopped_by_budget = true;
        self.unclassify(batch, &ClassifyError::BudgetExceeded.to_string());
    }

    fn unclassify(&mut self, batch: &[EventType], reason: &str) {
        self.out
            .unclassified
            .extend(all_unclassified(batch, reason));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::{Category, ClassifyFuture, Embedded, Verdict};

    /// A scripted classifier: answers each call with the next scripted
    /// outcome (the last one repeats), billing `tokens_per_event`.
    struct Scripted {
        id: &'static str,
        batch_size: usize,
        tokens_per_event: u64,
        script: Mutex<Vec<Option<ClassifyError>>>,
        calls: Mutex<Vec<usize>>,
    }

    impl Scripted {
        fn new(id: &'static str, script: Vec<Option<ClassifyError>>) -> Scripted {
            Scripted {
                id,
                batch_size: 2,
                tokens_per_event: 10,
                script: Mutex::new(script),
                calls: Mutex::new(Vec::new()),
            }
        }
    }

    impl Classifier for Scripted {
        fn id(&self) -> String {
            self.id.to_string()
        }
        fn batch_size(&self) -> usize {
            self.batch_size
        }
        fn estimate_tokens(&self, batch: &[EventType]) -> u64 {
            self.tokens_per_event * batch.len() as u64
        }
        fn classify<'a>(&'a self, batch: &'a [EventType]) -> ClassifyFuture<'a> {
            let outcome = {
                let mut script = self.script.lock().unwrap_or_else(|p| p.into_inner());
                if script.len() > 1 {
                    script.remove(0)
                } else {
                    script.first().cloned().flatten()
                }
            };
            self.calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(batch.len());
            let result = match outcome {
                Some(e) => Err(e),
                None => Ok(BatchResult {
                    classifications: batch
                        .iter()
                        .map(|e| Classification {
                            fingerprint: e.fingerprint.clone(),
                            category: Category::Operational,
                            verdict: Verdict::Keep,
                            confidence: 0.5,
                            rationale: "scripted".into(),
                            classifier: self.id.into(),
                        })
                        .collect(),
                    unclassified: Vec::new(),
                    usage: TokenUsage {
                        input_tokens: self.tokens_per_event * batch.len() as u64,
                        output_tokens: 0,
                        requests: 1,
                    },
                }),
            };
            Box::pin(std::future::ready(result))
        }
    }

    fn events(n: usize) -> Vec<EventType> {
        (0..n)
            .map(|i| EventType::metric(&format!("fp{i}"), "svc", &format!("family_{i}")))
            .collect()
    }

    fn calls(c: &Scripted) -> Vec<usize> {
        c.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    #[tokio::test]
    async fn falls_back_only_on_unavailable_and_auth() {
        for (error, falls_back) in [
            (ClassifyError::Unavailable("down".into()), true),
            (ClassifyError::Auth("401".into()), true),
            (ClassifyError::RateLimited { retry_after: None }, false),
            (ClassifyError::InvalidRequest("400".into()), false),
            (ClassifyError::Malformed("x".into()), false),
        ] {
            let chain = Chain::new(Box::new(Scripted::new("p", vec![Some(error.clone())])))
                .with_fallback(Box::new(Embedded));
            let out = chain.run(&events(3)).await;
            if falls_back {
                assert_eq!(out.report.classified, 3, "{error}");
                assert_eq!(out.report.fallbacks, 2, "{error}");
                assert!(
                    out.classifications
                        .iter()
                        .all(|c| c.classifier == "embedded/3")
                );
            } else {
                assert_eq!(out.report.classified, 0, "{error}");
                assert_eq!(out.report.fallbacks, 0, "{error}");
                assert_eq!(out.unclassified.len(), 3);
                assert!(out.unclassified[0].1.contains(&error.to_string()));
            }
        }
    }

    #[tokio::test]
    async fn an_unrecoverable_primary_is_not_retried_within_the_run() {
        let primary = Scripted::new("p", vec![Some(ClassifyError::Auth("401".into())), None]);
        let chain = Chain {
            primary: Box::new(primary),
            fallback: None,
            budget: None,
        };
        let out = chain.run(&events(5)).await;
        assert_eq!(out.report.unclassified, 5);
        assert!(out.unclassified.iter().all(|(_, r)| r.contains("401")));
    }

    #[tokio::test]
    async fn budget_stops_the_run() {
        // 10 tokens per event, batches of 2: 20 + 20 fit in 45, a third
        // batch would not.
        let chain = Chain::new(Box::new(Scripted::new("p", vec![None]))).with_budget(45);
        let out = chain.run(&events(7)).await;
        assert!(out.report.stopped_by_budget);
        assert_eq!(out.report.classified, 4);
        assert_eq!(out.report.unclassified, 3);
        assert!(
            out.unclassified
                .iter()
                .all(|(_, r)| r == "budget exhausted")
        );
        assert_eq!(out.report.total().total(), 40);
    }

    #[tokio::test]
    async fn fallback_mid_run_is_accounted_separately() {
        // Batch 1 costs 20, batch 2 (expected 20, fits in 40) finds the
        // primary down; the free fallback takes batches 2 and 3.
        let primary = Scripted::new(
            "p",
            vec![None, Some(ClassifyError::Unavailable("x".into()))],
        );
        let chain = Chain::new(Box::new(primary))
            .with_fallback(Box::new(Embedded))
            .with_budget(40);
        let out = chain.run(&events(6)).await;
        assert!(!out.report.stopped_by_budget);
        assert_eq!(out.report.classified, 6);
        assert_eq!(out.report.fallbacks, 2);
        assert_eq!(
            out.report.per_provider.get("p").map(|u| u.total()),
            Some(20)
        );
        assert_eq!(
            out.report.per_provider.get("embedded/3"),
            Some(&TokenUsage::default())
        );
    }

    #[tokio::test]
    async fn duplicates_are_classified_once() {
        let mut input = events(3);
        input.push(input[0].clone());
        let primary = Arc::new(Scripted::new("p", vec![None]));
        let chain = Chain::new(Box::new(primary.clone()));
        let out = chain.run(&input).await;
        assert_eq!(out.report.classified, 3);
        assert_eq!(out.report.unclassified, 0);
        assert_eq!(calls(&primary), [2, 1]);
    }

    /// A classifier that answers for fingerprints it was not given and
    /// skips one it was.
    struct Sloppy;

    impl Classifier for Sloppy {
        fn id(&self) -> String {
            "sloppy".into()
        }
        fn classify<'a>(&'a self, batch: &'a [EventType]) -> ClassifyFuture<'a> {
            let mut result = BatchResult::default();
            for fingerprint in ["intruder", batch[0].fingerprint.as_str()] {
                result.classifications.push(Classification {
                    fingerprint: fingerprint.into(),
                    category: Category::Unknown,
                    verdict: Verdict::Keep,
                    confidence: 0.1,
                    rationale: String::new(),
                    classifier: "sloppy".into(),
                });
            }
            Box::pin(std::future::ready(Ok(result)))
        }
    }

    #[tokio::test]
    async fn classifier_contract_is_enforced() {
        let out = Chain::new(Box::new(Sloppy)).run(&events(2)).await;
        assert_eq!(out.classifications.len(), 1);
        assert_eq!(out.classifications[0].fingerprint, "fp0");
        assert_eq!(
            out.unclassified,
            [(
                "fp1".to_string(),
                "sloppy returned nothing for it".to_string()
            )]
        );
    }
}

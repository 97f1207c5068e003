//! What one scrape owes the Edge's self-metrics, settled exactly once.
//!
//! A scrape can end in many places: refused before upstream is asked,
//! failed before the first byte, broken mid-body, completed, or dropped by
//! a client that went away. Each of those used to count itself; the guard
//! is now the one owner. It lives as long as the response, so dropping it
//! is the scrape's end: its outcome (aborted unless someone said
//! otherwise) and duration are recorded then, and its bytes are added once
//! by [`ScrapeGuard::account`], at the body's end or its drop, whichever
//! comes first. It also carries the scrape's [`Deadline`], so everything
//! that waits on upstream waits under the same one.

use std::sync::Arc;
use std::time::Instant;

use super::layers::Deadline;
use crate::telemetry::{EdgeMetrics, ScrapeResult};

pub struct ScrapeGuard {
    metrics: Arc<EdgeMetrics>,
    started: Instant,
    deadline: Deadline,
    result: Option<ScrapeResult>,
    accounted: bool,
    /// The scrape's span (the one the trace layer opened), to record the
    /// outcome on.
    span: tracing::Span,
}

impl ScrapeGuard {
    /// Starts a scrape in the current span.
    pub fn new(metrics: Arc<EdgeMetrics>, deadline: Deadline) -> Self {
        ScrapeGuard {
            metrics,
            started: Instant::now(),
            deadline,
            result: None,
            accounted: false,
            span: tracing::Span::current(),
        }
    }

    pub fn metrics(&self) -> &EdgeMetrics {
        &self.metrics
    }

    pub fn deadline(&self) -> &Deadline {
        &self.deadline
    }

    /// Sets the outcome; the first one set stands.
    pub fn finish(&mut self, result: ScrapeResult) {
        if self.result.is_none() {
            self.result = Some(result);
        }
    }

    /// A relayed response ended: a success if upstream's status was one.
    pub fn finish_relayed(&mut self, status_ok: bool) {
        self.finish(if status_ok {
            ScrapeResult::Ok
        } else {
            ScrapeResult::UpstreamError
        });
    }

    /// Runs `add` on the metrics the first time it is called and never
    /// again, so a body that ends and is then dropped counts once.
    pub fn account(&mut self, add: impl FnOnce(&EdgeMetrics)) {
        if !self.accounted {
            self.accounted = true;
            add(&self.metrics);
        }
    }
}

impl Drop for ScrapeGuard {
    fn drop(&mut self) {
        let result = self.result.unwrap_or(ScrapeResult::Aborted);
        self.span.record("result", result.label());
        self.metrics.scrape_finished(result, self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn scrapes(metrics: &EdgeMetrics, result: &str) -> bool {
        let registry = crate::registry::PolicyRegistry::new(&[]);
        metrics
            .render(&registry)
            .contains(&format!("edge_scrapes_total{{result=\"{result}\"}} 1\n"))
    }

    #[test]
    fn a_scrape_nobody_finished_counts_as_aborted() {
        let metrics = Arc::new(EdgeMetrics::default());
        drop(ScrapeGuard::new(
            metrics.clone(),
            Deadline::after(Duration::from_secs(1)),
        ));
        assert!(scrapes(&metrics, "aborted"));
    }

    #[test]
    fn the_first_outcome_stands_and_bytes_count_once() {
        let metrics = Arc::new(EdgeMetrics::default());
        let mut guard = ScrapeGuard::new(metrics.clone(), Deadline::after(Duration::from_secs(1)));
        guard.finish(ScrapeResult::Truncated);
        guard.finish(ScrapeResult::Ok);
        let mut added = 0;
        guard.account(|_| added += 1);
        guard.account(|_| added += 1);
        drop(guard);
        assert_eq!(added, 1);
        assert!(scrapes(&metrics, "truncated"));
    }
}

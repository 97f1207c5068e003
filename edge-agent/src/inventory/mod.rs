//! The metric inventory: what this Edge sees upstream, before any policy,
//! reported to the control plane (`tero.controlplane.v1.InventoryService`)
//! for its issue detectors.
//!
//! Scrapes feed an [`Inventory`]: every scrape is counted with an atomic,
//! and at most one per `sample_every` has its upstream body teed into a
//! [`ScrapeInventory`] (the check is one atomic load, so scrapes between
//! samples pay nothing else). A [`Reporter`] task takes the window every
//! `interval` and sends it. The first report goes out
//! [`FIRST_REPORT_DELAY`] after the first inventoried scrape rather than a
//! whole interval after start (300 s by default), so issues appear within
//! seconds of an edge's first scrapes; the interval runs from that report.
//!
//! Reports are sealed like the statistics outbox's: a report gets the next
//! `seq` of this process's random `session` when it is first sent and never
//! changes after. One that fails is retried unchanged (same seq) at the
//! next interval, since the failure may have been a lost answer to a report
//! the control plane stored; meanwhile the window keeps merging scrapes, so
//! nothing seen is lost and memory stays bounded by the window's limits.
//!
//! Log templates mined from `POST /_edge/logs` ([`crate::logs`]) ride in
//! the same reports: taking a report takes the miner's activity since the
//! previous one, so a retried report repeats its templates' counts under
//! the same seq and lines that arrive meanwhile go into the next seq; each
//! line is counted in exactly one report. Span patterns of sampled pushed
//! traces ([`crate::spans`]) ride the same way: taking a report takes them
//! all, and a retry repeats them under its seq. A report goes out when it
//! has an inventoried scrape, log or span activity; one without an
//! inventoried scrape lists no families and says so with
//! `scrapes_inventoried: 0` (its window is the log and span window; the
//! scrapes served meanwhile stay counted in the metric window, for the
//! next report that has one).

mod sink;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use flate2::write::GzDecoder;
use tero_prometheus::inventory::{
    CollectorOptions, InventoryWindow, ScrapeInventory, WindowOptions,
};
use tero_proto::controlplane::InventoryReport;
use tero_proto::policy::ClientMetadata;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, InventoryConfig};
use crate::exposition::Format;
use crate::logs::LogIntake;
use crate::providers::ClientIdentity;
use crate::spans::SpanPatterns;

pub use sink::{ControlPlaneSink, GrpcSink, HttpSink, ReportSink, SendError};

/// How long one report may take to send.
const SEND_TIMEOUT: Duration = Duration::from_secs(20);
/// On shutdown, how long the last report may take.
const FINAL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long after the first inventoried scrape the first report goes out:
/// long enough for scrapes of a short interval to be counted with it, short
/// enough that a newcomer sees issues within seconds.
pub const FIRST_REPORT_DELAY: Duration = Duration::from_secs(10);

/// The inventory shared by the scrapes and the reporter.
pub struct Inventory {
    window: Mutex<InventoryWindow>,
    collector: CollectorOptions,
    sample_every: Duration,
    /// Origin of `next_due_ms`.
    epoch: Instant,
    /// When the next scrape is due for inventory, in ms since `epoch`:
    /// lets scrapes skip the lock until then.
    next_due_ms: AtomicI64,
    /// Scrapes served since the last report, counted without the lock.
    scrapes: AtomicU64,
    /// Log-sample intake whose templates ride in the reports.
    logs: Option<Arc<LogIntake>>,
    /// Span patterns that ride in the reports.
    spans: Option<Arc<SpanPatterns>>,
    /// Set by the first inventoried scrape; wakes the reporter for the
    /// first report.
    sampled: AtomicBool,
    first_sample: Notify,
}

impl Inventory {
    pub fn new(settings: &InventoryConfig) -> Self {
        let opts = WindowOptions {
            sample_every: settings.sample_every,
            max_report_families: settings.max_report_families,
            ..WindowOptions::default()
        };
        let mut collector = CollectorOptions::new(Format::Text);
        collector.max_families = settings.max_families;
        Inventory {
            window: Mutex::new(InventoryWindow::new(opts, SystemTime::now())),
            collector,
            sample_every: settings.sample_every,
            epoch: Instant::now(),
            next_due_ms: AtomicI64::new(0),
            scrapes: AtomicU64::new(0),
            logs: None,
            spans: None,
            sampled: AtomicBool::new(false),
            first_sample: Notify::new(),
        }
    }

    /// Returns once a scrape has been inventoried.
    async fn first_sampled(&self) {
        // `notify_one` keeps a permit when nobody waits yet, so a scrape
        // absorbed before the reporter starts waiting is not missed.
        if !self.sampled.load(Relaxed) {
            self.first_sample.notified().await;
        }
    }

    /// Reports `logs`' templates too.
    pub fn with_logs(mut self, logs: Option<Arc<LogIntake>>) -> Self {
        self.logs = logs;
        self
    }

    pub fn logs(&self) -> Option<&Arc<LogIntake>> {
        self.logs.as_ref()
    }

    /// Reports `spans`' patterns too.
    pub fn with_spans(mut self, spans: Option<Arc<SpanPatterns>>) -> Self {
        self.spans = spans;
        self
    }

    pub fn spans(&self) -> Option<&Arc<SpanPatterns>> {
        self.spans.as_ref()
    }

    /// The window, even if a panicking holder poisoned the lock: its data
    /// is a best-effort summary, never worth failing scrapes over.
    fn window(&self) -> MutexGuard<'_, InventoryWindow> {
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn ms_since_epoch(&self, now: Instant) -> i64 {
        i64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(i64::MAX)
    }

    /// Counts a scrape served.
    pub fn record_scrape(&self) {
        self.scrapes.fetch_add(1, Relaxed);
    }

    /// A collector for this scrape's body when it is due for inventory.
    pub fn start(&self, format: Format) -> Option<ScrapeInventory> {
        let now = Instant::now();
        let now_ms = self.ms_since_epoch(now);
        if now_ms < self.next_due_ms.load(Relaxed) {
            return None;
        }
        if !self.window().should_inventory(now) {
            return None;
        }
        let every = i64::try_from(self.sample_every.as_millis()).unwrap_or(i64::MAX);
        self.next_due_ms
            .store(now_ms.saturating_add(every), Relaxed);
        let mut opts = self.collector;
        opts.format = format;
        Some(ScrapeInventory::new(opts))
    }

    /// Merges a scrape whose body ended cleanly.
    pub fn absorb(&self, scrape: ScrapeInventory) {
        self.window().absorb(scrape, SystemTime::now());
        if !self.sampled.swap(true, Relaxed) {
            self.first_sample.notify_one();
        }
    }

    /// The report of the window so far, with the log templates' and span
    /// patterns' activity since the previous report, and all start over;
    /// `None` when there is neither an inventoried scrape nor log or span
    /// activity.
    ///
    /// Without an inventoried scrape the metric window is left as it is: a
    /// report of it would list no families, which the control plane would
    /// read as every family gone; its scrapes stay counted for the next
    /// report that has one. Log or span activity alone still makes a
    /// report, with no families, `scrapes: 0` and `scrapes_inventoried: 0`.
    pub fn take_report(&self) -> Option<InventoryReport> {
        let scrapes = self.scrapes.swap(0, Relaxed);
        let logs = self
            .logs
            .as_ref()
            .map(|l| l.take_report())
            .filter(|l| !l.is_empty());
        let spans = self
            .spans
            .as_ref()
            .map(|s| s.take_report())
            .filter(|s| !s.is_empty());
        let mut window = self.window();
        window.record_scrapes(scrapes);
        let mut report = if window.scrapes_inventoried() > 0 {
            window.take_report(SystemTime::now())
        } else {
            // The window the log and span activity covers.
            let windows = [
                logs.as_ref()
                    .map(|l| (l.window_start_unix_ms, l.window_end_unix_ms)),
                spans
                    .as_ref()
                    .map(|s| (s.window_start_unix_ms, s.window_end_unix_ms)),
            ];
            let (start, end) = windows
                .into_iter()
                .flatten()
                .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))?;
            InventoryReport {
                window_start_unix_ms: start,
                window_end_unix_ms: end,
                ..InventoryReport::default()
            }
        };
        if let Some(logs) = logs {
            report.log_templates = logs.templates;
            report.log_lines_overflowed = logs.overflowed;
        }
        if let Some(spans) = spans {
            report.span_patterns = spans.patterns;
            report.spans_overflowed = spans.overflowed;
        }
        Some(report)
    }
}

/// Writes decompressed bytes straight into a collector.
struct Feed(ScrapeInventory);

impl Write for Feed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum TeeInner {
    Plain(Box<ScrapeInventory>),
    Gzip(Box<GzDecoder<Feed>>),
}

/// An inventory of a body relayed as it came from upstream (no policies
/// loaded: nothing is decoded for the client), from its wire bytes.
pub(crate) struct WireTee {
    inner: Option<TeeInner>,
}

impl WireTee {
    /// `None` for encodings not worth decoding on the side.
    pub(crate) fn new(scrape: ScrapeInventory, content_encoding: Option<&str>) -> Option<Self> {
        let coding = content_encoding.map(str::trim).unwrap_or_default();
        let inner = if coding.is_empty() || coding.eq_ignore_ascii_case("identity") {
            TeeInner::Plain(Box::new(scrape))
        } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            TeeInner::Gzip(Box::new(GzDecoder::new(Feed(scrape))))
        } else {
            return None;
        };
        Some(WireTee { inner: Some(inner) })
    }

    /// Whether a relay with this `Content-Encoding` could be inventoried.
    pub(crate) fn supports(content_encoding: Option<&str>) -> bool {
        let coding = content_encoding.map(str::trim).unwrap_or_default();
        ["", "identity", "gzip", "x-gzip"]
            .iter()
            .any(|c| coding.eq_ignore_ascii_case(c))
    }

    pub(crate) fn push(&mut self, wire: &[u8]) {
        let failed = match &mut self.inner {
            None => false,
            Some(TeeInner::Plain(scrape)) => {
                scrape.push(wire);
                false
            }
            Some(TeeInner::Gzip(decoder)) => decoder.write_all(wire).is_err(),
        };
        if failed {
            // A body the client may still read, but not one to inventory.
            self.inner = None;
        }
    }

    /// The collector, if the body decoded to its end.
    pub(crate) fn finish(self) -> Option<ScrapeInventory> {
        match self.inner? {
            TeeInner::Plain(scrape) => Some(*scrape),
            TeeInner::Gzip(decoder) => decoder.finish().ok().map(|feed| feed.0),
        }
    }
}

/// Sends the inventory every interval, holding at most one unsent report.
pub struct Reporter<S> {
    inventory: Arc<Inventory>,
    sink: S,
    interval: Duration,
    /// See [`FIRST_REPORT_DELAY`].
    first_delay: Duration,
    client_metadata: ClientMetadata,
    session: String,
    next_seq: u64,
    /// Sealed and not yet stored: sent again, unchanged, until it is.
    pending: Option<InventoryReport>,
    failures: u32,
}

impl<S> Drop for Reporter<S> {
    /// Log samples posted after the last report would reach nobody: the
    /// intake refuses them from now on.
    fn drop(&mut self) {
        if let Some(logs) = self.inventory.logs() {
            logs.set_reporting(false);
        }
        if let Some(spans) = self.inventory.spans() {
            spans.set_reporting(false);
        }
    }
}

impl<S: ReportSink> Reporter<S> {
    pub fn new(
        inventory: Arc<Inventory>,
        sink: S,
        interval: Duration,
        client_metadata: ClientMetadata,
    ) -> Self {
        let mut session = [0u8; 8];
        for b in &mut session {
            *b = fastrand::u8(..);
        }
        if let Some(logs) = inventory.logs() {
            logs.set_reporting(true);
        }
        if let Some(spans) = inventory.spans() {
            spans.set_reporting(true);
        }
        Reporter {
            inventory,
            sink,
            interval,
            first_delay: FIRST_REPORT_DELAY,
            client_metadata,
            session: hex::encode(session),
            next_seq: 1,
            pending: None,
            failures: 0,
        }
    }

    /// The delay of the first report after the first inventoried scrape.
    pub fn with_first_delay(mut self, delay: Duration) -> Self {
        self.first_delay = delay;
        self
    }

    /// Reports [`Self::with_first_delay`] after the first inventoried
    /// scrape, then every interval until `shutdown`, then makes one last
    /// short attempt so the final minutes are not lost.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let start = tokio::time::Instant::now() + self.interval;
        let mut ticks = tokio::time::interval_at(start, self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // With an interval this short, the regular report comes first anyway.
        let mut first_pending = self.first_delay < self.interval;
        let first = {
            let inventory = self.inventory.clone();
            let delay = self.first_delay;
            async move {
                inventory.first_sampled().await;
                tokio::time::sleep(delay).await;
            }
        };
        let mut first = std::pin::pin!(first);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = &mut first, if first_pending => {
                    first_pending = false;
                    // The interval runs from the first report.
                    ticks.reset();
                }
                () = shutdown.cancelled() => break,
            }
            // A send in progress at shutdown is abandoned; its report stays
            // pending and goes out in the final attempt.
            tokio::select! {
                () = self.flush(SEND_TIMEOUT) => {}
                () = shutdown.cancelled() => break,
            }
        }
        if tokio::time::timeout(FINAL_TIMEOUT, self.flush(FINAL_TIMEOUT))
            .await
            .is_err()
        {
            tracing::warn!("final inventory report not sent within {FINAL_TIMEOUT:?}");
        }
    }

    /// Sends the pending report if any, then (if that worked) the window.
    pub async fn flush(&mut self, timeout: Duration) {
        loop {
            let fresh = self.pending.is_none();
            if fresh {
                let Some(report) = self.inventory.take_report() else {
                    return;
                };
                self.pending = Some(self.seal(report));
            }
            let Some(report) = &self.pending else {
                return;
            };
            let seq = report.seq;
            match self.sink.send(report, timeout).await {
                Ok(()) => {
                    tracing::debug!(
                        seq,
                        families = report.families.len(),
                        scrapes = report.scrapes,
                        log_templates = report.log_templates.len(),
                        span_patterns = report.span_patterns.len(),
                        "inventory report stored"
                    );
                    self.pending = None;
                    self.failures = 0;
                }
                Err(e) if e.permanent => {
                    tracing::warn!(seq, error = %e.reason, "inventory report refused; dropped");
                    self.pending = None;
                }
                Err(e) => {
                    self.failures += 1;
                    tracing::warn!(
                        seq,
                        error = %e.reason,
                        failures = self.failures,
                        "inventory report not sent; retrying at the next interval"
                    );
                    return;
                }
            }
            if fresh {
                return;
            }
            // A retried report got through: what accumulated since follows.
        }
    }

    fn seal(&mut self, mut report: InventoryReport) -> InventoryReport {
        report.client_metadata = Some(self.client_metadata.clone());
        report.session.clone_from(&self.session);
        report.seq = self.next_seq;
        self.next_seq += 1;
        report
    }
}

/// Starts the reporter when inventory is on and has somewhere to go.
pub fn spawn(
    config: &Config,
    inventory: Arc<Inventory>,
    identity: &ClientIdentity,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    let (Some(interval), Some(destination)) = (
        config.inventory.interval,
        config.inventory.destination(config),
    ) else {
        return;
    };
    let sink = match ControlPlaneSink::new(destination) {
        Ok(sink) => sink,
        Err(e) => {
            tracing::warn!(provider = %destination.id(), error = %e, "inventory cannot reach the control plane; not reported");
            return;
        }
    };
    tracing::info!(
        provider = %destination.id(),
        transport = sink.transport(),
        interval_secs = interval.as_secs_f64(),
        "metric inventory reported to the control plane"
    );
    if let Some(logs) = inventory.logs() {
        tracing::info!(
            service = logs.service(),
            "log samples accepted at POST /_edge/logs; their templates are reported with the inventory"
        );
    }
    if inventory.spans().is_some() && config.intake.span_samples_per_second > 0 {
        tracing::info!(
            per_second = config.intake.span_samples_per_second,
            "spans of pushed traces sampled; their patterns are reported with the inventory"
        );
    }
    let reporter = Reporter::new(inventory, sink, interval, identity.metadata());
    tasks.spawn(reporter.run(shutdown));
}

#[cfg(test)]
mod tests;

//! The metric inventory: what this Edge sees upstream, before any policy,
//! reported to the control plane (`tero.controlplane.v1.InventoryService`)
//! for its issue detectors.
//!
//! Scrapes feed an [`Inventory`]: every scrape is counted with an atomic,
//! and at most one per `sample_every` has its upstream body teed into a
//! [`ScrapeInventory`] (the check is one atomic load, so scrapes between
//! samples pay nothing else). A [`Reporter`] task takes the window every
//! `interval` and sends it.
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
//! line is counted in exactly one report. A report goes out when it has an
//! inventoried scrape or log activity; one with only log activity lists no
//! families and says so with `scrapes_inventoried: 0` (its window is the
//! log window; the scrapes served meanwhile stay counted in the metric
//! window, for the next report that has one).

mod sink;

use std::io::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use flate2::write::GzDecoder;
use tero_prometheus::inventory::{
    CollectorOptions, InventoryWindow, ScrapeInventory, WindowOptions,
};
use tero_proto::controlplane::InventoryReport;
use tero_proto::policy::ClientMetadata;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, InventoryConfig};
use crate::exposition::Format;
use crate::logs::LogIntake;
use crate::providers::ClientIdentity;

pub use sink::{ControlPlaneSink, GrpcSink, HttpSink, ReportSink, SendError};

/// How long one report may take to send.
const SEND_TIMEOUT: Duration = Duration::from_secs(20);
/// On shutdown, how long the last report may take.
const FINAL_TIMEOUT: Duration = Duration::from_secs(3);

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
    }

    /// The report of the window so far, with the log templates' activity
    /// since the previous report, and both start over; `None` when there is
    /// neither an inventoried scrape nor log activity.
    ///
    /// Without an inventoried scrape the metric window is left as it is: a
    /// report of it would list no families, which the control plane would
    /// read as every family gone; its scrapes stay counted for the next
    /// report that has one. Log activity alone still makes a report, with
    /// no families, `scrapes: 0` and `scrapes_inventoried: 0`.
    pub fn take_report(&self) -> Option<InventoryReport> {
        let scrapes = self.scrapes.swap(0, Relaxed);
        let logs = self
            .logs
            .as_ref()
            .map(|l| l.take_report())
            .filter(|l| !l.is_empty());
        let mut window = self.window();
        window.record_scrapes(scrapes);
        let mut report = if window.scrapes_inventoried() > 0 {
            window.take_report(SystemTime::now())
        } else {
            let logs = logs.as_ref()?;
            InventoryReport {
                window_start_unix_ms: logs.window_start_unix_ms,
                window_end_unix_ms: logs.window_end_unix_ms,
                ..InventoryReport::default()
            }
        };
        if let Some(logs) = logs {
            report.log_templates = logs.templates;
            report.log_lines_overflowed = logs.overflowed;
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
        Reporter {
            inventory,
            sink,
            interval,
            client_metadata,
            session: hex::encode(session),
            next_seq: 1,
            pending: None,
            failures: 0,
        }
    }

    /// Reports every interval until `shutdown`, then makes one last short
    /// attempt so the final minutes are not lost.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let start = tokio::time::Instant::now() + self.interval;
        let mut ticks = tokio::time::interval_at(start, self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
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
    let reporter = Reporter::new(inventory, sink, interval, identity.metadata());
    tasks.spawn(reporter.run(shutdown));
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex as StdMutex;

    use super::*;
    use crate::config::{GrpcProviderConfig, ReportDestination};

    fn grpc_settings(config: &Config) -> &GrpcProviderConfig {
        match config.inventory.destination(config) {
            Some(ReportDestination::Grpc(settings)) => settings,
            other => panic!("expected a grpc destination, got {other:?}"),
        }
    }

    /// Answers from a script; records what it was sent.
    #[derive(Clone, Default)]
    struct Script {
        answers: Arc<StdMutex<VecDeque<Result<(), SendError>>>>,
        sent: Arc<StdMutex<Vec<InventoryReport>>>,
    }

    impl Script {
        fn answer(&self, answer: Result<(), SendError>) {
            self.answers.lock().unwrap().push_back(answer);
        }

        fn sent(&self) -> Vec<InventoryReport> {
            std::mem::take(&mut *self.sent.lock().unwrap())
        }
    }

    impl ReportSink for Script {
        async fn send(&mut self, report: &InventoryReport, _: Duration) -> Result<(), SendError> {
            self.sent.lock().unwrap().push(report.clone());
            self.answers.lock().unwrap().pop_front().unwrap_or(Ok(()))
        }
    }

    fn down() -> Result<(), SendError> {
        Err(SendError {
            reason: "Unavailable".into(),
            permanent: false,
        })
    }

    fn settings(sample_every: Duration) -> InventoryConfig {
        InventoryConfig {
            interval: Some(Duration::from_secs(300)),
            sample_every,
            ..InventoryConfig::default()
        }
    }

    fn scrape(inventory: &Inventory, body: &str) {
        inventory.record_scrape();
        if let Some(mut s) = inventory.start(Format::Text) {
            s.push(body.as_bytes());
            inventory.absorb(s);
        }
    }

    fn names(report: &InventoryReport) -> Vec<&str> {
        let mut names: Vec<&str> = report.families.iter().map(|f| f.name.as_str()).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn scrapes_are_sampled_without_the_lock_between_samples() {
        let inventory = Inventory::new(&settings(Duration::from_secs(60)));
        assert!(inventory.start(Format::Text).is_some(), "the first scrape");
        assert!(inventory.start(Format::Text).is_none());
        let every_scrape = Inventory::new(&settings(Duration::ZERO));
        assert!(every_scrape.start(Format::Text).is_some());
        assert!(every_scrape.start(Format::OpenMetrics).is_some());
    }

    #[tokio::test]
    async fn a_window_without_a_sampled_scrape_waits_for_one() {
        let inventory = Arc::new(Inventory::new(&settings(Duration::from_secs(60))));
        let script = Script::default();
        let mut reporter = Reporter::new(
            inventory.clone(),
            script.clone(),
            Duration::from_secs(300),
            ClientMetadata::default(),
        );
        scrape(&inventory, "a 1\n");
        reporter.flush(SEND_TIMEOUT).await;
        assert_eq!(script.sent().len(), 1);
        // Within the sampling period: scraped, not inventoried. An empty
        // report would read as every family gone.
        scrape(&inventory, "a 1\n");
        scrape(&inventory, "a 1\n");
        reporter.flush(SEND_TIMEOUT).await;
        assert!(
            script.sent().is_empty(),
            "nothing sent without a sampled scrape"
        );
        assert!(inventory.take_report().is_none());
        // Its scrapes are not lost: they count in the next report.
        let every = Arc::new(Inventory::new(&settings(Duration::ZERO)));
        every.record_scrape();
        assert!(every.take_report().is_none());
        scrape(&every, "b 1\n");
        let report = every.take_report().expect("a sampled scrape");
        assert_eq!((report.scrapes, report.scrapes_inventoried), (2, 1));
    }

    #[tokio::test]
    async fn a_failed_report_is_retried_unchanged_and_nothing_is_lost() {
        let inventory = Arc::new(Inventory::new(&settings(Duration::ZERO)));
        let script = Script::default();
        let mut reporter = Reporter::new(
            inventory.clone(),
            script.clone(),
            Duration::from_secs(300),
            ClientMetadata::default(),
        );
        // Nothing scraped: nothing sent.
        reporter.flush(SEND_TIMEOUT).await;
        assert!(script.sent().is_empty());

        scrape(&inventory, "a 1\n");
        script.answer(down());
        reporter.flush(SEND_TIMEOUT).await;
        let first = script.sent();
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].seq, names(&first[0])), (1, vec!["a"]));
        assert_eq!(first[0].session.len(), 16);
        assert!(first[0].client_metadata.is_some());

        // Still down: the same report again; the window keeps what came.
        scrape(&inventory, "b 1\n");
        script.answer(down());
        reporter.flush(SEND_TIMEOUT).await;
        assert_eq!(
            script.sent(),
            first,
            "a retry repeats the report and its seq"
        );

        // Back: the retry is stored, then everything since, as seq 2.
        scrape(&inventory, "c 1\n");
        reporter.flush(SEND_TIMEOUT).await;
        let sent = script.sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0], first[0]);
        assert_eq!((sent[1].seq, names(&sent[1])), (2, vec!["b", "c"]));
        assert_eq!(sent[1].scrapes, 2);
        assert_eq!(sent[1].session, first[0].session);
        assert_eq!(sent[1].window_start_unix_ms, first[0].window_end_unix_ms);

        // A report the control plane refuses for good is not retried.
        scrape(&inventory, "d 1\n");
        script.answer(Err(SendError {
            reason: "InvalidArgument".into(),
            permanent: true,
        }));
        reporter.flush(SEND_TIMEOUT).await;
        scrape(&inventory, "e 1\n");
        reporter.flush(SEND_TIMEOUT).await;
        let sent = script.sent();
        assert_eq!(
            sent.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [3, 4],
            "{sent:?}"
        );
        assert_eq!(names(&sent[1]), ["e"]);
    }

    #[tokio::test]
    async fn shutdown_sends_what_is_left() {
        let inventory = Arc::new(Inventory::new(&settings(Duration::ZERO)));
        let script = Script::default();
        let reporter = Reporter::new(
            inventory.clone(),
            script.clone(),
            Duration::from_secs(3600),
            ClientMetadata::default(),
        );
        scrape(&inventory, "late 1\n");
        let stop = CancellationToken::new();
        stop.cancel();
        reporter.run(stop).await;
        let sent = script.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(names(&sent[0]), ["late"]);
    }

    /// Reports stored, each with the `authorization` it came with.
    type Stored = Arc<StdMutex<Vec<(Option<String>, InventoryReport)>>>;

    #[derive(Clone, Default)]
    struct ControlPlane {
        stored: Stored,
    }

    impl ControlPlane {
        /// Serves `InventoryService` on a free loopback port until aborted.
        async fn serve() -> (Self, std::net::SocketAddr, tokio::task::JoinHandle<()>) {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let control_plane = ControlPlane::default();
            let service =
                tero_proto::controlplane::inventory_service_server::InventoryServiceServer::new(
                    control_plane.clone(),
                );
            let server = tokio::spawn(async move {
                let _ = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                    .await;
            });
            (control_plane, addr, server)
        }
    }

    #[tonic::async_trait]
    impl tero_proto::controlplane::inventory_service_server::InventoryService for ControlPlane {
        async fn report(
            &self,
            request: tonic::Request<InventoryReport>,
        ) -> Result<tonic::Response<tero_proto::controlplane::InventoryAck>, tonic::Status>
        {
            let auth = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let report = request.into_inner();
            let seq = report.seq;
            self.stored.lock().unwrap().push((auth, report));
            Ok(tonic::Response::new(
                tero_proto::controlplane::InventoryAck { seq },
            ))
        }
    }

    #[tokio::test]
    async fn reports_reach_the_control_plane_with_the_api_key() {
        let (control_plane, addr, server) = ControlPlane::serve().await;
        let (config, _) = Config::from_value(
            serde_json::json!({
                "upstream_url": "http://127.0.0.1:1",
                "policy_providers": [{"id": "cp", "type": "grpc", "url": format!("http://{addr}"),
                    "headers": [{"name": "Authorization", "value": "Bearer edge-key"}]}],
                "inventory": {"interval_secs": 60, "sample_every_secs": 0}
            }),
            &|_| None,
        )
        .unwrap();
        let destination = grpc_settings(&config);
        let inventory = Arc::new(Inventory::new(&config.inventory));
        scrape(
            &inventory,
            "# TYPE jobs_total counter\njobs_total{queue=\"a\"} 1\n",
        );
        let mut reporter = Reporter::new(
            inventory,
            GrpcSink::new(destination).unwrap(),
            Duration::from_secs(60),
            ClientIdentity::default().metadata(),
        );
        reporter.flush(SEND_TIMEOUT).await;
        let stored = control_plane.stored.lock().unwrap().clone();
        server.abort();
        assert_eq!(stored.len(), 1);
        let (auth, report) = &stored[0];
        assert_eq!(auth.as_deref(), Some("Bearer edge-key"));
        assert_eq!((report.seq, report.scrapes), (1, 1));
        assert_eq!(report.families[0].name, "jobs_total");
        assert_eq!(report.families[0].r#type, "counter");
        assert!(reporter.pending.is_none());
    }

    fn with_logs(settings: &InventoryConfig) -> (Arc<Inventory>, Arc<LogIntake>) {
        let logs =
            Arc::new(LogIntake::new("checkout", &crate::config::LogsConfig::default()).unwrap());
        let inventory = Inventory::new(settings).with_logs(Some(logs.clone()));
        (Arc::new(inventory), logs)
    }

    fn post_lines(logs: &LogIntake, lines: &str) {
        logs.ingest(crate::logs::BodyFormat::Text, None, lines.as_bytes())
            .unwrap();
    }

    /// `(text, count)` of a report's templates, by text.
    fn log_counts(report: &InventoryReport) -> Vec<(String, u64)> {
        let mut counts: Vec<(String, u64)> = report
            .log_templates
            .iter()
            .map(|t| (t.text.clone(), t.count))
            .collect();
        counts.sort();
        counts
    }

    #[tokio::test]
    async fn no_report_without_a_sampled_scrape_or_log_lines() {
        let (inventory, logs) = with_logs(&settings(Duration::from_secs(60)));
        let script = Script::default();
        let mut reporter = Reporter::new(
            inventory.clone(),
            script.clone(),
            Duration::from_secs(300),
            ClientMetadata::default(),
        );
        reporter.flush(SEND_TIMEOUT).await;
        // Blank lines and a scrape that is not sampled are nothing to say.
        post_lines(&logs, "\n   \n");
        scrape(&inventory, "a 1\n");
        let first = inventory
            .take_report()
            .expect("the first scrape is sampled");
        assert!(first.log_templates.is_empty());
        scrape(&inventory, "a 1\n");
        reporter.flush(SEND_TIMEOUT).await;
        assert!(
            script.sent().is_empty(),
            "neither scrape nor logs: no report"
        );

        // Log lines alone make a report, without families.
        post_lines(&logs, "cache miss for key 1\ncache miss for key 2\n");
        reporter.flush(SEND_TIMEOUT).await;
        let sent = script.sent();
        assert_eq!(sent.len(), 1);
        let report = &sent[0];
        assert_eq!(report.seq, 1);
        assert_eq!(
            (
                report.scrapes,
                report.scrapes_inventoried,
                report.families.len()
            ),
            (0, 0, 0),
            "the unsampled scrape waits for a report with an inventory"
        );
        assert_eq!(
            log_counts(report),
            [("cache miss for key <num>".to_string(), 2)]
        );
        assert!(report.window_start_unix_ms <= report.window_end_unix_ms);
        reporter.flush(SEND_TIMEOUT).await;
        assert!(script.sent().is_empty(), "nothing new: no report");
    }

    #[tokio::test]
    async fn a_failed_report_keeps_its_log_counts_and_its_seq() {
        let (inventory, logs) = with_logs(&settings(Duration::ZERO));
        let script = Script::default();
        let mut reporter = Reporter::new(
            inventory.clone(),
            script.clone(),
            Duration::from_secs(300),
            ClientMetadata::default(),
        );
        post_lines(&logs, "job 1 done\njob 2 done\njob 3 done\n");
        script.answer(down());
        reporter.flush(SEND_TIMEOUT).await;
        let first = script.sent();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].seq, 1);
        assert_eq!(log_counts(&first[0]), [("job <num> done".to_string(), 3)]);

        // Still down: the same report, same seq, same counts; the lines
        // that arrive meanwhile wait for the next seq.
        post_lines(&logs, "job 4 done\nqueue empty\n");
        script.answer(down());
        reporter.flush(SEND_TIMEOUT).await;
        assert_eq!(script.sent(), first, "a retry repeats the report");

        post_lines(&logs, "job 5 done\n");
        scrape(&inventory, "a 1\n");
        reporter.flush(SEND_TIMEOUT).await;
        let sent = script.sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0], first[0]);
        assert_eq!(sent[1].seq, 2);
        assert_eq!(names(&sent[1]), ["a"]);
        assert_eq!(
            log_counts(&sent[1]),
            [
                ("job <num> done".to_string(), 2),
                ("queue empty".to_string(), 1)
            ]
        );

        // What a control plane storing each seq once counts: every line,
        // once.
        let mut stored = std::collections::BTreeMap::new();
        for report in first.iter().chain(&sent) {
            stored.insert((report.session.clone(), report.seq), report.clone());
        }
        let total: u64 = stored
            .values()
            .flat_map(|r| &r.log_templates)
            .map(|t| t.count)
            .sum();
        assert_eq!(total, 6);
        assert!(reporter.pending.is_none());
    }

    #[tokio::test]
    async fn a_refused_report_is_dropped_with_its_log_counts() {
        let (inventory, logs) = with_logs(&settings(Duration::ZERO));
        let script = Script::default();
        let mut reporter = Reporter::new(
            inventory.clone(),
            script.clone(),
            Duration::from_secs(300),
            ClientMetadata::default(),
        );
        assert!(logs.is_reporting(), "a reporter takes the samples");
        post_lines(&logs, "x 1\n");
        script.answer(Err(SendError {
            reason: "InvalidArgument".into(),
            permanent: true,
        }));
        reporter.flush(SEND_TIMEOUT).await;
        post_lines(&logs, "x 2\n");
        reporter.flush(SEND_TIMEOUT).await;
        let sent = script.sent();
        assert_eq!(sent.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(log_counts(&sent[1]), [("x <num>".to_string(), 1)]);
        drop(reporter);
        assert!(!logs.is_reporting(), "no reporter, no samples");
    }

    #[tokio::test]
    async fn posted_log_lines_reach_the_control_plane_as_templates() {
        let (control_plane, addr, server) = ControlPlane::serve().await;
        let (config, _) = Config::from_value(
            serde_json::json!({
                "upstream_url": "http://127.0.0.1:1",
                "service": {"name": "checkout"},
                "policy_providers": [{"id": "cp", "type": "grpc", "url": format!("http://{addr}"),
                    "headers": [{"name": "Authorization", "value": "Bearer edge-key"}]}],
                "inventory": {"interval_secs": 60, "sample_every_secs": 0},
                "logs": {"max_records_per_request": 100}
            }),
            &|_| None,
        )
        .unwrap();
        let destination = grpc_settings(&config).clone();
        let edge = crate::proxy::testing::TestEdge::start(config).await;
        let post = |query: &'static str, ct: &'static str, body: &'static str| {
            edge.request(http::Method::POST, query, Some(ct), body)
        };
        let (status, body) = post("/_edge/logs", "text/plain", "a 1\n").await;
        assert_eq!(
            status,
            http::StatusCode::SERVICE_UNAVAILABLE,
            "no reporter yet: {body}"
        );
        assert!(body.contains("needs a control plane"), "{body}");

        let inventory = edge.state.inventory.clone().unwrap();
        let mut reporter = Reporter::new(
            inventory.clone(),
            GrpcSink::new(&destination).unwrap(),
            Duration::from_secs(60),
            ClientIdentity::default().metadata(),
        );
        let (status, body) = post(
            "/_edge/logs?severity=INFO",
            "text/plain",
            "user 1 logged in from 10.0.0.1\nuser 2 logged in from 10.0.0.2\n\npayment 7 failed\n",
        )
        .await;
        assert_eq!(status, http::StatusCode::ACCEPTED, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            answer,
            serde_json::json!({"accepted": 3, "templates": 2, "new_templates": 2})
        );
        let (status, body) = post(
            "/_edge/logs",
            "application/x-ndjson",
            "{\"msg\": \"user 3 logged in from 10.0.0.3\", \"level\": \"DEBUG\", \"time_unix_ms\": 1700000000000}\n",
        )
        .await;
        assert_eq!(status, http::StatusCode::ACCEPTED, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            answer,
            serde_json::json!({"accepted": 1, "templates": 1, "new_templates": 0})
        );
        reporter.flush(SEND_TIMEOUT).await;

        // Then a scrape and more lines: the next report has both, with the
        // lines since the first.
        scrape(&inventory, "# TYPE jobs_total counter\njobs_total 1\n");
        let (status, body) = post(
            "/_edge/logs",
            "application/json",
            r#"{"records": [{"body": "payment 8 failed", "severity": "ERROR"}, {"body": ""}]}"#,
        )
        .await;
        assert_eq!(status, http::StatusCode::ACCEPTED, "{body}");
        assert!(body.contains("\"accepted\": 1"), "{body}");
        reporter.flush(SEND_TIMEOUT).await;

        let stored = control_plane.stored.lock().unwrap().clone();
        server.abort();
        assert_eq!(stored.len(), 2, "{stored:?}");
        let (auth, first) = &stored[0];
        assert_eq!(auth.as_deref(), Some("Bearer edge-key"));
        assert_eq!(first.seq, 1);
        assert_eq!(
            (first.scrapes_inventoried, first.families.len()),
            (0, 0),
            "log lines alone are reported"
        );
        assert_eq!(
            log_counts(first),
            [
                ("payment <num> failed".to_string(), 1),
                ("user <num> logged in from <ip>".to_string(), 3),
            ]
        );
        let users = first
            .log_templates
            .iter()
            .find(|t| t.text.starts_with("user"))
            .unwrap();
        assert_eq!(users.severity, "INFO", "the first severity given");
        assert_eq!(
            users.first_seen_unix_ms, 1_700_000_000_000,
            "the record's time"
        );
        assert!(
            users.last_seen_unix_ms > users.first_seen_unix_ms,
            "lines without one: now"
        );
        assert!(!users.examples.is_empty());
        assert_eq!(
            users.fingerprint,
            tero_sdk::templates::fingerprint("checkout", "user <num> logged in from <ip>"),
            "fingerprinted under the edge's service"
        );
        let (_, second) = &stored[1];
        assert_eq!(second.seq, 2);
        assert_eq!(second.session, first.session);
        assert_eq!(second.families[0].name, "jobs_total");
        assert_eq!(
            log_counts(second),
            [("payment <num> failed".to_string(), 1)],
            "only what came since the first report"
        );
        let payments = &second.log_templates[0];
        let first_payments = first
            .log_templates
            .iter()
            .find(|t| t.text.starts_with("payment"))
            .unwrap();
        assert_eq!(payments.fingerprint, first_payments.fingerprint);
        assert!(reporter.pending.is_none());

        let metrics = edge
            .request(http::Method::GET, "/_edge/metrics", None, "")
            .await
            .1;
        assert!(
            metrics.contains("edge_log_records_total{result=\"accepted\"} 5"),
            "{metrics}"
        );
        assert!(
            metrics.contains("edge_log_records_total{result=\"empty\"} 1"),
            "{metrics}"
        );
        assert!(metrics.contains("edge_log_templates 2"), "{metrics}");
    }

    #[test]
    fn relayed_bodies_are_inventoried_from_their_wire_bytes() {
        let body = b"# TYPE x counter\nx_total{a=\"1\"} 1\nx_total{a=\"2\"} 1\n";
        let collector = || ScrapeInventory::new(CollectorOptions::new(Format::Text));
        let mut plain = WireTee::new(collector(), None).unwrap();
        plain.push(body);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(body).unwrap();
        let compressed = gz.finish().unwrap();
        let mut zipped = WireTee::new(collector(), Some("gzip")).unwrap();
        for chunk in compressed.chunks(7) {
            zipped.push(chunk);
        }
        for tee in [plain, zipped] {
            let mut scrape = tee.finish().unwrap();
            scrape.finish();
            assert_eq!(scrape.family("x").unwrap().series, 2);
        }
        let mut broken = WireTee::new(collector(), Some("gzip")).unwrap();
        broken.push(b"not gzip at all");
        assert!(broken.finish().is_none());
        assert!(WireTee::new(collector(), Some("zstd")).is_none());
        assert!(WireTee::supports(Some("GZIP")) && !WireTee::supports(Some("br")));
    }
}

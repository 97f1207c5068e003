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
    ) -> Result<tonic::Response<tero_proto::controlplane::InventoryAck>, tonic::Status> {
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
    let logs = Arc::new(LogIntake::new("checkout", &crate::config::LogsConfig::default()).unwrap());
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

#[tokio::test]
async fn the_first_report_follows_the_first_sampled_scrape_not_the_interval() {
    let inventory = Arc::new(Inventory::new(&settings(Duration::from_secs(60))));
    let script = Script::default();
    let reporter = Reporter::new(
        inventory.clone(),
        script.clone(),
        Duration::from_secs(300),
        ClientMetadata::default(),
    )
    .with_first_delay(Duration::from_millis(200));
    let stop = CancellationToken::new();
    let task = tokio::spawn(reporter.run(stop.clone()));

    // Nothing scraped yet: nothing to report, however long it waits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(script.sent().is_empty());

    scrape(&inventory, "first 1\n");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let sent = loop {
        let sent = script.sent();
        if !sent.is_empty() || tokio::time::Instant::now() > deadline {
            break sent;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sent.len(), 1, "one report soon after the first scrape");
    assert_eq!(names(&sent[0]), ["first"]);

    // Then the interval (300 s) rules: no second early report.
    scrape(&inventory, "first 1\n");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(script.sent().is_empty());
    stop.cancel();
    task.await.expect("reporter");
}

/// `count` spans named `name` on route `route`, as sampled.
fn spans_of(name: &str, route: &str, count: usize) -> Vec<crate::spans::SpanSample> {
    (0..count)
        .map(|_| crate::spans::SpanSample {
            name: name.into(),
            kind: "server",
            route: route.into(),
            user_agent: String::new(),
            error: false,
            bytes: 100,
            attribute_keys: vec!["http.route".into()],
            example: format!("{name} kind=server status=unset"),
            time_unix_ms: 0,
        })
        .collect()
}

fn span_counts(report: &InventoryReport) -> Vec<(String, u64)> {
    let mut counts: Vec<(String, u64)> = report
        .span_patterns
        .iter()
        .map(|p| (p.name.clone(), p.count))
        .collect();
    counts.sort();
    counts
}

#[tokio::test]
async fn span_patterns_ride_in_reports_exactly_once_across_failed_sends() {
    let spans = Arc::new(SpanPatterns::new("checkout"));
    let inventory = Arc::new(
        Inventory::new(&settings(Duration::from_secs(60))).with_spans(Some(spans.clone())),
    );
    let script = Script::default();
    let mut reporter = Reporter::new(
        inventory.clone(),
        script.clone(),
        Duration::from_secs(300),
        ClientMetadata::default(),
    );
    assert!(spans.is_reporting(), "a reporter takes the samples");
    reporter.flush(SEND_TIMEOUT).await;
    assert!(script.sent().is_empty(), "no spans: no report");

    // Spans alone make a report; it fails, and is retried unchanged while
    // the spans that arrive meanwhile wait for the next seq.
    spans.observe(&spans_of("GET /healthz", "/healthz", 3));
    script.answer(down());
    reporter.flush(SEND_TIMEOUT).await;
    let first = script.sent();
    assert_eq!(first.len(), 1);
    assert_eq!(
        (
            first[0].seq,
            first[0].scrapes_inventoried,
            first[0].families.len()
        ),
        (1, 0, 0)
    );
    assert_eq!(span_counts(&first[0]), [("GET /healthz".to_string(), 3)]);
    spans.observe(&spans_of("GET /healthz", "/healthz", 2));
    spans.observe(&spans_of("POST /pay", "/pay", 1));
    script.answer(down());
    reporter.flush(SEND_TIMEOUT).await;
    assert_eq!(script.sent(), first, "a retry repeats the report");

    reporter.flush(SEND_TIMEOUT).await;
    let sent = script.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], first[0]);
    assert_eq!(sent[1].seq, 2);
    assert_eq!(
        span_counts(&sent[1]),
        [
            ("GET /healthz".to_string(), 2),
            ("POST /pay".to_string(), 1)
        ]
    );
    assert_eq!(
        sent[1].span_patterns[0].fingerprint, first[0].span_patterns[0].fingerprint,
        "a pattern keeps its fingerprint across reports"
    );
    // Stored once per seq: every sampled span counted once.
    let mut stored = std::collections::BTreeMap::new();
    for report in first.iter().chain(&sent) {
        stored.insert((report.session.clone(), report.seq), report.clone());
    }
    let total: u64 = stored
        .values()
        .flat_map(|r| &r.span_patterns)
        .map(|p| p.count)
        .sum();
    assert_eq!(total, 6);
    assert!(reporter.pending.is_none());
    drop(reporter);
    assert!(!spans.is_reporting(), "no reporter, no samples");
}

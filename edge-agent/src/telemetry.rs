//! The Edge's own metrics, rendered in Prometheus text at `/_edge/metrics`.
//!
//! Counters are plain atomics updated once per scrape (a scrape sums its
//! line counts locally), so self-metrics cost nothing per line.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tero_observability::metrics::{LatencyHistogram, counter, family, label_value};
use tero_observability::process;
use tero_sdk::engine::StatsDelta;

use crate::filter::{Limit, ScrapeCounters};
use crate::registry::PolicyRegistry;

/// How a scrape ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrapeResult {
    Ok,
    UpstreamError,
    Timeout,
    Aborted,
    Truncated,
    Rejected,
}

impl ScrapeResult {
    const ALL: [ScrapeResult; 6] = [
        ScrapeResult::Ok,
        ScrapeResult::UpstreamError,
        ScrapeResult::Timeout,
        ScrapeResult::Aborted,
        ScrapeResult::Truncated,
        ScrapeResult::Rejected,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ScrapeResult::Ok => "ok",
            ScrapeResult::UpstreamError => "upstream_error",
            ScrapeResult::Timeout => "timeout",
            ScrapeResult::Aborted => "aborted",
            ScrapeResult::Truncated => "truncated",
            ScrapeResult::Rejected => "rejected",
        }
    }
}

/// Why a scrape was relayed without filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfiltered {
    NoPolicies,
    ContentType,
    Encoding,
    Status,
}

impl Unfiltered {
    const ALL: [Unfiltered; 4] = [
        Unfiltered::NoPolicies,
        Unfiltered::ContentType,
        Unfiltered::Encoding,
        Unfiltered::Status,
    ];

    fn label(self) -> &'static str {
        match self {
            Unfiltered::NoPolicies => "no_policies",
            Unfiltered::ContentType => "content_type",
            Unfiltered::Encoding => "encoding",
            Unfiltered::Status => "upstream_status",
        }
    }
}

/// How the format of a 2xx body was known while policies are loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatSource {
    /// From its Content-Type (a missing one is text, as for Prometheus).
    ContentType,
    /// Served under a type naming no format, and read like text.
    Sniffed,
    /// Neither: relayed unfiltered.
    Unrecognized,
}

impl FormatSource {
    const ALL: [FormatSource; 3] = [
        FormatSource::ContentType,
        FormatSource::Sniffed,
        FormatSource::Unrecognized,
    ];

    fn label(self) -> &'static str {
        match self {
            FormatSource::ContentType => "content_type",
            FormatSource::Sniffed => "sniffed",
            FormatSource::Unrecognized => "unrecognized",
        }
    }
}

/// Upstream failure kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    Connect,
    Timeout,
    Reset,
    Decode,
    Status,
}

impl UpstreamError {
    const ALL: [UpstreamError; 5] = [
        UpstreamError::Connect,
        UpstreamError::Timeout,
        UpstreamError::Reset,
        UpstreamError::Decode,
        UpstreamError::Status,
    ];

    fn label(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Reset => "reset",
            UpstreamError::Decode => "decode",
            UpstreamError::Status => "status",
        }
    }
}

/// Why the Edge closed a client connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionClosed {
    /// A request head took longer than `header_read_timeout_secs`.
    HeaderReadTimeout,
    /// No request for `idle_timeout_secs`.
    IdleTimeout,
}

impl ConnectionClosed {
    const ALL: [ConnectionClosed; 2] = [
        ConnectionClosed::HeaderReadTimeout,
        ConnectionClosed::IdleTimeout,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ConnectionClosed::HeaderReadTimeout => "header_read_timeout",
            ConnectionClosed::IdleTimeout => "idle_timeout",
        }
    }
}

#[derive(Default)]
pub struct EdgeMetrics {
    scrapes: [AtomicU64; 6],
    duration: LatencyHistogram,
    bytes_in_wire: AtomicU64,
    bytes_in_decoded: AtomicU64,
    bytes_out_decoded: AtomicU64,
    bytes_out_wire: AtomicU64,
    series_kept: AtomicU64,
    series_dropped: AtomicU64,
    lines_sample: AtomicU64,
    lines_metadata: AtomicU64,
    lines_comment: AtomicU64,
    lines_unparsed: AtomicU64,
    lines_oversized: AtomicU64,
    lines_dropped: AtomicU64,
    eval_errors: AtomicU64,
    truncated_input: AtomicU64,
    truncated_output: AtomicU64,
    unfiltered: [AtomicU64; 4],
    formats: [AtomicU64; 3],
    upstream_errors: [AtomicU64; 5],
    rejected_busy: AtomicU64,
    /// Log records posted to `/_edge/logs`: accepted, overflowed, empty.
    log_records: [AtomicU64; 3],
    log_templates: AtomicU64,
    /// Client connections: open now, refused at `max_connections`, closed
    /// by a deadline.
    connections_open: AtomicU64,
    connections_refused: AtomicU64,
    connections_closed: [AtomicU64; 2],
    /// The push intake's.
    pub intake: crate::intake::metrics::IntakeMetrics,
}

impl EdgeMetrics {
    pub fn scrape_finished(&self, result: ScrapeResult, elapsed: Duration) {
        let i = ScrapeResult::ALL
            .iter()
            .position(|r| *r == result)
            .unwrap_or(0);
        self.scrapes[i].fetch_add(1, Relaxed);
        self.duration.observe(elapsed);
    }

    pub fn add_filter(&self, c: &ScrapeCounters) {
        self.series_kept.fetch_add(c.series_kept, Relaxed);
        self.series_dropped.fetch_add(c.series_dropped, Relaxed);
        self.lines_sample.fetch_add(c.lines_sample, Relaxed);
        self.lines_metadata.fetch_add(c.lines_metadata, Relaxed);
        self.lines_comment.fetch_add(c.lines_comment, Relaxed);
        self.lines_unparsed.fetch_add(c.lines_unparsed, Relaxed);
        self.lines_oversized.fetch_add(c.lines_oversized, Relaxed);
        self.lines_dropped.fetch_add(c.lines_dropped, Relaxed);
        self.eval_errors.fetch_add(c.eval_errors, Relaxed);
        match c.truncated {
            Some(Limit::Input) => self.truncated_input.fetch_add(1, Relaxed),
            Some(Limit::Output) => self.truncated_output.fetch_add(1, Relaxed),
            None => 0,
        };
    }

    pub fn add_bytes(&self, in_wire: u64, in_decoded: u64, out_decoded: u64, out_wire: u64) {
        self.bytes_in_wire.fetch_add(in_wire, Relaxed);
        self.bytes_in_decoded.fetch_add(in_decoded, Relaxed);
        self.bytes_out_decoded.fetch_add(out_decoded, Relaxed);
        self.bytes_out_wire.fetch_add(out_wire, Relaxed);
    }

    pub fn unfiltered(&self, reason: Unfiltered) {
        let i = Unfiltered::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.unfiltered[i].fetch_add(1, Relaxed);
    }

    pub fn body_format(&self, source: FormatSource) {
        let i = FormatSource::ALL
            .iter()
            .position(|s| *s == source)
            .unwrap_or(0);
        self.formats[i].fetch_add(1, Relaxed);
    }

    pub fn upstream_error(&self, kind: UpstreamError) {
        let i = UpstreamError::ALL
            .iter()
            .position(|r| *r == kind)
            .unwrap_or(0);
        self.upstream_errors[i].fetch_add(1, Relaxed);
    }

    pub fn rejected_busy(&self) {
        self.rejected_busy.fetch_add(1, Relaxed);
    }

    /// One `/_edge/logs` request's records, and the templates the miner
    /// holds after it.
    pub fn log_records(&self, accepted: u64, overflowed: u64, empty: u64, live_templates: u64) {
        for (counter, n) in self.log_records.iter().zip([accepted, overflowed, empty]) {
            counter.fetch_add(n, Relaxed);
        }
        self.log_templates.store(live_templates, Relaxed);
    }

    /// Takes one of `max` connection slots; false (counted as refused) when
    /// all are taken.
    pub fn connection_opened(&self, max: usize) -> bool {
        let open = self.connections_open.fetch_add(1, Relaxed);
        if open >= max as u64 {
            self.connections_open.fetch_sub(1, Relaxed);
            self.connections_refused.fetch_add(1, Relaxed);
            false
        } else {
            true
        }
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    pub fn connection_timed_out(&self, reason: ConnectionClosed) {
        let i = ConnectionClosed::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.connections_closed[i].fetch_add(1, Relaxed);
    }

    /// Renders everything in Prometheus text 0.0.4.
    pub fn render(&self, registry: &PolicyRegistry) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let w = &mut out;
        process::render_build_info(w, "edge", env!("CARGO_PKG_VERSION"));
        process::render(w);

        let results = ScrapeResult::ALL.iter().map(|r| r.label());
        counter(
            w,
            "edge_scrapes_total",
            "Scrapes served, by result.",
            "result",
            results.zip(&self.scrapes),
        );
        let single = [("", &self.rejected_busy)];
        counter(
            w,
            "edge_scrape_rejected_total",
            "Scrapes refused with 503 because too many were in flight.",
            "",
            single,
        );

        family(
            w,
            "edge_scrape_duration_seconds",
            "histogram",
            "Time from request to the last response byte.",
        );
        self.duration.render(w, "edge_scrape_duration_seconds", "");

        let bytes = [
            ("in_wire", &self.bytes_in_wire),
            ("in_decoded", &self.bytes_in_decoded),
            ("out_decoded", &self.bytes_out_decoded),
            ("out_wire", &self.bytes_out_wire),
        ];
        counter(
            w,
            "edge_scrape_bytes_total",
            "Scrape bytes: read from upstream (wire, decoded) and written (decoded, wire).",
            "direction",
            bytes,
        );
        let series = [
            ("kept", &self.series_kept),
            ("dropped", &self.series_dropped),
        ];
        counter(
            w,
            "edge_scrape_series_total",
            "Series judged, by decision.",
            "decision",
            series,
        );
        let lines = [
            ("sample", &self.lines_sample),
            ("metadata", &self.lines_metadata),
            ("comment", &self.lines_comment),
            ("unparsed", &self.lines_unparsed),
            ("oversized", &self.lines_oversized),
        ];
        counter(
            w,
            "edge_scrape_lines_total",
            "Lines read, by kind.",
            "kind",
            lines,
        );
        let dropped = [("", &self.lines_dropped)];
        counter(
            w,
            "edge_scrape_lines_dropped_total",
            "Sample lines dropped by policies.",
            "",
            dropped,
        );
        let errors = [("", &self.eval_errors)];
        counter(
            w,
            "edge_eval_errors_total",
            "Series kept because evaluation failed.",
            "",
            errors,
        );
        let limits = [
            ("input", &self.truncated_input),
            ("output", &self.truncated_output),
        ];
        counter(
            w,
            "edge_scrape_truncated_total",
            "Scrapes cut by a byte cap.",
            "limit",
            limits,
        );
        let reasons = Unfiltered::ALL.iter().map(|r| r.label());
        counter(
            w,
            "edge_scrape_unfiltered_total",
            "Scrapes relayed without filtering, by reason.",
            "reason",
            reasons.zip(&self.unfiltered),
        );
        let sources = FormatSource::ALL.iter().map(|s| s.label());
        counter(
            w,
            "edge_scrape_format_total",
            "Successful upstream answers while metric policies are loaded, by how the body's format was known: its Content-Type, sniffing a body served under a type naming no format, or neither (relayed unfiltered).",
            "by",
            sources.zip(&self.formats),
        );
        let kinds = UpstreamError::ALL.iter().map(|k| k.label());
        counter(
            w,
            "edge_upstream_errors_total",
            "Upstream failures, by kind.",
            "kind",
            kinds.zip(&self.upstream_errors),
        );
        let results = ["accepted", "overflowed", "empty"];
        counter(
            w,
            "edge_log_records_total",
            "Log records posted to /_edge/logs, by result: mined into a template, overflowed (the miner was full) or empty (skipped).",
            "result",
            results.into_iter().zip(&self.log_records),
        );
        family(
            w,
            "edge_log_templates",
            "gauge",
            "Log templates the miner holds (at most logs.max_templates).",
        );
        let _ = writeln!(w, "edge_log_templates {}", self.log_templates.load(Relaxed));
        family(
            w,
            "edge_connections_open",
            "gauge",
            "Client connections open (at most max_connections).",
        );
        let _ = writeln!(
            w,
            "edge_connections_open {}",
            self.connections_open.load(Relaxed)
        );
        let refused = [("", &self.connections_refused)];
        counter(
            w,
            "edge_connections_refused_total",
            "Client connections closed at once because max_connections were open.",
            "",
            refused,
        );
        let reasons = ConnectionClosed::ALL.iter().map(|r| r.label());
        counter(
            w,
            "edge_connections_closed_total",
            "Client connections the Edge closed, by reason: a request head slower than header_read_timeout_secs, or idle for idle_timeout_secs.",
            "reason",
            reasons.zip(&self.connections_closed),
        );
        self.intake.render(w);
        render_policies(w, registry);
        render_volume(w, registry);
        out
    }
}

/// What the data planes saw before any policy (the volume reported to
/// control planes), since start.
fn render_volume(w: &mut String, registry: &PolicyRegistry) {
    let v = registry.volume_totals();
    family(
        w,
        "edge_volume_records_total",
        "counter",
        "Records that entered policy evaluation, by signal (metric: one data point per series per scrape or per OTLP data point).",
    );
    for (signal, n) in [
        ("log", v.log_records),
        ("metric", v.metric_data_points),
        ("trace", v.spans),
    ] {
        let _ = writeln!(w, "edge_volume_records_total{{signal=\"{signal}\"}} {n}");
    }
    family(
        w,
        "edge_volume_bytes_total",
        "counter",
        "Uncompressed OTLP protobuf bytes of those records, by signal (0 for records received in another encoding).",
    );
    for (signal, n) in [
        ("log", v.log_bytes),
        ("metric", v.metric_bytes),
        ("trace", v.span_bytes),
    ] {
        let _ = writeln!(w, "edge_volume_bytes_total{{signal=\"{signal}\"}} {n}");
    }
}

fn render_policies(w: &mut String, registry: &PolicyRegistry) {
    let engine = registry.engine();
    family(
        w,
        "edge_policies_loaded",
        "gauge",
        "Valid, enabled policies in the active set, by signal.",
    );
    let invalid = engine
        .policies()
        .iter()
        .filter(|p| !p.errors.is_empty())
        .count();
    let _ = writeln!(
        w,
        "edge_policies_loaded{{signal=\"metric\"}} {}",
        engine.metric_policy_count()
    );
    let _ = writeln!(
        w,
        "edge_policies_loaded{{signal=\"log\"}} {}",
        engine.log_policy_count()
    );
    let _ = writeln!(
        w,
        "edge_policies_loaded{{signal=\"trace\"}} {}",
        engine.trace_policy_count()
    );
    family(
        w,
        "edge_policy_errors",
        "gauge",
        "Policies in the active set that are invalid (inert).",
    );
    let _ = writeln!(w, "edge_policy_errors {invalid}");

    let providers = registry.providers();
    family(
        w,
        "edge_policy_sync_total",
        "counter",
        "Policy provider syncs, by result.",
    );
    for p in &providers {
        let id = label_value(&p.id);
        let _ = writeln!(
            w,
            "edge_policy_sync_total{{provider=\"{id}\",result=\"ok\"}} {}",
            p.syncs_ok
        );
        let _ = writeln!(
            w,
            "edge_policy_sync_total{{provider=\"{id}\",result=\"error\"}} {}",
            p.syncs_failed
        );
    }
    family(
        w,
        "edge_policy_sync_last_success_timestamp_seconds",
        "gauge",
        "When each provider last delivered policies.",
    );
    for p in &providers {
        let ts = p
            .last_success
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        let _ = writeln!(
            w,
            "edge_policy_sync_last_success_timestamp_seconds{{provider=\"{}\"}} {ts}",
            label_value(&p.id)
        );
    }
    family(
        w,
        "edge_policy_provider_up",
        "gauge",
        "1 if the provider's last sync succeeded.",
    );
    for p in &providers {
        let up = u8::from(p.loaded && p.last_error.is_none());
        let _ = writeln!(
            w,
            "edge_policy_provider_up{{provider=\"{}\",transport=\"{}\"}} {up}",
            label_value(&p.id),
            p.transport
        );
    }

    // Every active policy appears, with zeros until it matches.
    let mut totals = registry.totals();
    for p in engine.policies() {
        totals.entry(p.id.clone()).or_default();
    }
    type Read = fn(&StatsDelta) -> u64;
    let per_policy: [(&str, &str, Read); 4] = [
        (
            "edge_policy_match_hits_total",
            "Series a policy matched and decided or agreed with.",
            |d| d.match_hits,
        ),
        (
            "edge_policy_match_misses_total",
            "Series a policy matched but lost to a stricter one.",
            |d| d.match_misses,
        ),
        (
            "edge_policy_series_dropped_total",
            "Series this policy dropped.",
            |d| d.records_dropped,
        ),
        (
            "edge_policy_bytes_dropped_total",
            "Exposition bytes this policy dropped.",
            |d| d.bytes_dropped,
        ),
    ];
    // A shadow policy's drops are what it would drop: reported apart, so a
    // dashboard summing drops never counts what was kept.
    let shadow: std::collections::HashSet<&str> = engine
        .policies()
        .iter()
        .filter(|p| p.shadow)
        .map(|p| p.id.as_str())
        .collect();
    for (name, help, get) in per_policy {
        let drops = name.ends_with("_dropped_total");
        family(w, name, "counter", help);
        for (id, d) in &totals {
            if drops && shadow.contains(id.as_str()) {
                continue;
            }
            let _ = writeln!(w, "{name}{{policy_id=\"{}\"}} {}", label_value(id), get(d));
        }
    }
    let would: [(&str, &str, Read); 2] = [
        (
            "edge_policy_series_would_drop_total",
            "Series a shadow policy would have dropped (kept: shadow policies never drop).",
            |d| d.records_dropped,
        ),
        (
            "edge_policy_bytes_would_drop_total",
            "Exposition bytes a shadow policy would have dropped.",
            |d| d.bytes_dropped,
        ),
    ];
    for (name, help, get) in would {
        family(w, name, "counter", help);
        for (id, d) in totals.iter().filter(|(id, _)| shadow.contains(id.as_str())) {
            let _ = writeln!(w, "{name}{{policy_id=\"{}\"}} {}", label_value(id), get(d));
        }
    }
}

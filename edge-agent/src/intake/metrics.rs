//! The push intake's self-metrics, rendered with the rest of
//! `/_edge/metrics`. Plain atomics, added once per request.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tero_observability::metrics::{counter, family};
use tero_otlp::{Counts, Format, Signal};

use super::route::format_label;

const FORMATS: [Format; 4] = [
    Format::OtlpProtobuf,
    Format::OtlpJson,
    Format::DatadogLogs,
    Format::DatadogSeries,
];
const SIGNALS: [Signal; 3] = [Signal::Log, Signal::Trace, Signal::Metric];

/// How a push ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sent upstream (whatever upstream answered).
    Forwarded,
    /// Policies dropped every record: answered without upstream.
    AllDropped,
    /// Refused by the Edge (too large, unsupported encoding, bad framing).
    Refused,
    /// Upstream could not be reached or did not answer in time.
    UpstreamFailed,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Forwarded,
        Outcome::AllDropped,
        Outcome::Refused,
        Outcome::UpstreamFailed,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::AllDropped => "all_dropped",
            Outcome::Refused => "refused",
            Outcome::UpstreamFailed => "upstream_failed",
        }
    }
}

#[derive(Default)]
pub struct IntakeMetrics {
    requests: [[AtomicU64; 4]; 4],
    undecodable: [AtomicU64; 4],
    /// Per signal: records seen, records dropped by policies.
    records: [[AtomicU64; 2]; 3],
    bytes_in_wire: AtomicU64,
    bytes_in_decoded: AtomicU64,
    bytes_out_wire: AtomicU64,
    rejected_busy: AtomicU64,
    relayed: [AtomicU64; 2],
    tap_records_dropped: AtomicU64,
    log_samples: AtomicU64,
    span_samples: AtomicU64,
}

fn index<T: PartialEq>(all: &[T], item: &T) -> usize {
    all.iter().position(|x| x == item).unwrap_or(0)
}

impl IntakeMetrics {
    pub fn request(&self, format: Format, outcome: Outcome) {
        self.requests[index(&FORMATS, &format)][index(&Outcome::ALL, &outcome)]
            .fetch_add(1, Relaxed);
    }

    /// A body the codecs could not read, forwarded as it came.
    pub fn undecodable(&self, format: Format) {
        self.undecodable[index(&FORMATS, &format)].fetch_add(1, Relaxed);
    }

    pub fn records(&self, signal: Signal, counts: &Counts) {
        let row = &self.records[index(&SIGNALS, &signal)];
        row[0].fetch_add(counts.records_in, Relaxed);
        row[1].fetch_add(counts.records_dropped, Relaxed);
    }

    pub fn bytes(&self, in_wire: u64, in_decoded: u64, out_wire: u64) {
        self.bytes_in_wire.fetch_add(in_wire, Relaxed);
        self.bytes_in_decoded.fetch_add(in_decoded, Relaxed);
        self.bytes_out_wire.fetch_add(out_wire, Relaxed);
    }

    pub fn rejected_busy(&self) {
        self.rejected_busy.fetch_add(1, Relaxed);
    }

    pub fn relayed(&self, ok: bool) {
        self.relayed[usize::from(!ok)].fetch_add(1, Relaxed);
    }

    pub fn tap_records_dropped(&self, n: u64) {
        self.tap_records_dropped.fetch_add(n, Relaxed);
    }

    pub fn log_samples(&self, n: u64) {
        self.log_samples.fetch_add(n, Relaxed);
    }

    pub fn span_samples(&self, n: u64) {
        self.span_samples.fetch_add(n, Relaxed);
    }

    pub fn render(&self, w: &mut String) {
        family(
            w,
            "edge_intake_requests_total",
            "counter",
            "Pushes (OTLP/HTTP, OTLP/gRPC, Datadog), by payload format and outcome: forwarded upstream, all records dropped (answered without upstream), refused by the Edge, or upstream unreachable or late.",
        );
        for (format, row) in FORMATS.iter().zip(&self.requests) {
            for (outcome, count) in Outcome::ALL.iter().zip(row) {
                let _ = writeln!(
                    w,
                    "edge_intake_requests_total{{format=\"{}\",outcome=\"{}\"}} {}",
                    format_label(*format),
                    outcome.label(),
                    count.load(Relaxed)
                );
            }
        }
        let formats = FORMATS.iter().map(|f| format_label(*f));
        counter(
            w,
            "edge_intake_undecodable_total",
            "Push bodies the Edge could not decode (or decompress), forwarded unchanged and unfiltered.",
            "format",
            formats.zip(&self.undecodable),
        );
        family(
            w,
            "edge_intake_records_total",
            "counter",
            "Records in decoded pushes (log records, spans, metric data points), seen and dropped by policies.",
        );
        for (signal, row) in SIGNALS.iter().zip(&self.records) {
            for (decision, count) in ["seen", "dropped"].iter().zip(row) {
                let _ = writeln!(
                    w,
                    "edge_intake_records_total{{signal=\"{}\",decision=\"{decision}\"}} {}",
                    signal.as_str(),
                    count.load(Relaxed)
                );
            }
        }
        let bytes = [
            ("in_wire", &self.bytes_in_wire),
            ("in_decoded", &self.bytes_in_decoded),
            ("out_wire", &self.bytes_out_wire),
        ];
        counter(
            w,
            "edge_intake_bytes_total",
            "Push body bytes: received (as sent, decoded) and sent upstream.",
            "direction",
            bytes,
        );
        counter(
            w,
            "edge_intake_rejected_total",
            "Pushes answered 503 (gRPC UNAVAILABLE) for want of room: intake.max_concurrent_requests in flight, or no room in intake.max_buffered_bytes before the deadline.",
            "",
            [("", &self.rejected_busy)],
        );
        counter(
            w,
            "edge_intake_relayed_total",
            "Requests to other paths relayed unchanged to upstream_url, by result.",
            "result",
            [("ok", &self.relayed[0]), ("failed", &self.relayed[1])],
        );
        counter(
            w,
            "edge_intake_tap_dropped_total",
            "Tap payloads a slow tap client missed (the intake never waits for one).",
            "",
            [("", &self.tap_records_dropped)],
        );
        counter(
            w,
            "edge_intake_log_samples_total",
            "Pushed log records handed to the template miner (at most intake.log_samples_per_second).",
            "",
            [("", &self.log_samples)],
        );
        counter(
            w,
            "edge_intake_span_samples_total",
            "Pushed spans read into span patterns (at most intake.span_samples_per_second).",
            "",
            [("", &self.span_samples)],
        );
    }
}

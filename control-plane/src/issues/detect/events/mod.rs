//! Log and trace detectors: pure functions from one service's classified
//! event types (log templates, span patterns) and its edges' volume to
//! findings, each with evidence, an estimate and a recommended policy.
//!
//! CONTRACT (issue 20; the detector helper fills in the bodies, the wiring
//! helper builds [`EventInventory`] from the store): the types below are
//! shared; do not change their shape without telling the other side.

use tero_proto::controlplane::{Classification, EventType};

use super::{Finding, Prices, Thresholds};

/// Detector names for logs and traces (`Issue.kind`).
pub mod kind {
    pub const DEBUG_LOGS: &str = "debug_logs";
    pub const HEALTH_CHECK_LOGS: &str = "health_check_logs";
    pub const SYNTHETIC_LOGS: &str = "synthetic_logs";
    pub const BOT_LOGS: &str = "bot_logs";
    pub const DUPLICATE_LOGS: &str = "duplicate_logs";
    /// A `mixed` verdict: sample, never drop.
    pub const NOISY_LOGS: &str = "noisy_logs";
    pub const SENSITIVE_LOG_DATA: &str = "sensitive_log_data";
    pub const DUPLICATED_LOG_FIELDS: &str = "duplicated_log_fields";
    pub const HEALTH_CHECK_SPANS: &str = "health_check_spans";
    pub const SYNTHETIC_SPANS: &str = "synthetic_spans";
    pub const BOT_SPANS: &str = "bot_spans";
    pub const ALL: [&str; 11] = [
        DEBUG_LOGS,
        HEALTH_CHECK_LOGS,
        SYNTHETIC_LOGS,
        BOT_LOGS,
        DUPLICATE_LOGS,
        NOISY_LOGS,
        SENSITIVE_LOG_DATA,
        DUPLICATED_LOG_FIELDS,
        HEALTH_CHECK_SPANS,
        SYNTHETIC_SPANS,
        BOT_SPANS,
    ];
}

/// One stored log or span event type (`event.kind` is `log` or `span`;
/// canonical ones only, never aliases) with its classification valid for
/// the current classifier chain, if any.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClassifiedEvent {
    pub event: EventType,
    pub classification: Option<Classification>,
    /// The classification run that decided it (`Classification.run_id`).
    pub run_id: u64,
}

/// What the service's edges reported as volume (spec 1.7.1 `VolumeStats`)
/// over the window, per day. Zero when no edge of the service reported any.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceVolume {
    pub log_records_per_day: f64,
    pub log_bytes_per_day: f64,
    pub spans_per_day: f64,
    pub span_bytes_per_day: f64,
    /// Instance ids of the service's edges, and how many reported volume.
    pub edges: Vec<String>,
    pub edges_reporting: u32,
}

/// One service's log and span event types, as the detectors see them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventInventory {
    pub service: String,
    pub events: Vec<ClassifiedEvent>,
    pub volume: ServiceVolume,
    /// The window the volume covers (Unix ms).
    pub from_unix_ms: i64,
    pub to_unix_ms: i64,
}

/// What makes a log or span finding worth an issue.
#[derive(Debug, Clone, PartialEq)]
pub struct EventThresholds {
    /// Classifications below this confidence raise nothing
    /// (`--issue-min-confidence`). Default 0.7.
    pub min_confidence: f64,
}

impl Default for EventThresholds {
    fn default() -> Self {
        EventThresholds {
            min_confidence: 0.7,
        }
    }
}

/// Runs every log and trace detector over one service. `thresholds` gives
/// the severity bands shared with metrics; `prices.per_gb_logs` prices
/// log and span bytes.
pub fn detect(
    inventory: &EventInventory,
    events: &EventThresholds,
    thresholds: &Thresholds,
    prices: &Prices,
) -> Vec<Finding> {
    let _ = (inventory, events, thresholds, prices);
    Vec::new()
}

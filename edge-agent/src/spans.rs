//! Span patterns: what the spans of pushed traces are, so the control plane
//! can tell health checks and synthetic traffic from real requests
//! (`InventoryReport.span_patterns`).
//!
//! Spans of OTLP trace pushes (protobuf or JSON) are sampled under their
//! own budget, `intake.span_samples_per_second`, the way log records are
//! ([`crate::intake::samples`]): a payload is read for samples only while
//! the second has budget, and spans are taken evenly across it. Reading
//! splits the payload into its encoded spans without decoding them (their
//! length is a span's bytes) and decodes only the few sampled: name, kind,
//! start time, scalar attributes and status.
//!
//! A pattern is one (name, route, user-agent product): the route is
//! `http.route`, else the path of `url.path` / `http.target` with ids
//! masked ([`tero_sdk::templates::mask_line`]: `/users/<num>`); the user
//! agent is the first product token of `user_agent.original` /
//! `http.user_agent` (`kube-probe/1.29`; for `Mozilla/5.0 (compatible;
//! Googlebot/2.1; …)` the compatible product). Names, routes, agents and
//! example lines are redacted before they are kept. Its fingerprint is
//! `fingerprint(service, "\u{1e}span " + name + " " + route + " " + agent)`.
//!
//! # Bounds and reports
//!
//! At most [`MAX_PATTERNS`] patterns are held; spans of a pattern that
//! finds no room are counted in `spans_overflowed`. Each pattern keeps at
//! most [`MAX_ATTRIBUTE_KEYS`] keys and [`MAX_EXAMPLES`] examples. A report
//! takes every pattern active since the previous one (all fit: the report
//! bound is the memory bound), so none waits to be carried; the inventory
//! [`Reporter`](crate::inventory::Reporter) seals the report and resends
//! it unchanged until stored, so each sampled span is counted in exactly
//! one stored report.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message as _;
use tero_otlp::Format;
use tero_proto::controlplane::SpanPattern;
use tero_sdk::templates::{fingerprint, mask_line, redact, redacted_example, truncate};

use crate::intake::samples::otlp_value::{self, KeyValue};
use crate::intake::samples::{SampleBudget, spread};

/// Patterns held at once.
pub const MAX_PATTERNS: usize = 1000;
/// Attribute keys kept per pattern.
pub const MAX_ATTRIBUTE_KEYS: usize = 32;
/// Example lines per pattern, and their bytes.
pub const MAX_EXAMPLES: usize = 3;
pub const MAX_EXAMPLE_BYTES: usize = 256;
/// Bytes kept of a span name, a route and a user-agent product.
pub const MAX_NAME_BYTES: usize = 256;
pub const MAX_ROUTE_BYTES: usize = 256;
pub const MAX_AGENT_BYTES: usize = 128;

const ROUTE: &str = "http.route";
/// Where a path is read from when there is no route, first found wins.
const PATH_KEYS: [&str; 2] = ["url.path", "http.target"];
const AGENT_KEYS: [&str; 2] = ["user_agent.original", "http.user_agent"];
const STATUS_KEYS: [&str; 2] = ["http.response.status_code", "http.status_code"];

/// OTLP `Status.code` of an error.
const STATUS_ERROR: i32 = 2;

/// One sampled span, as its pattern sees it (already redacted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanSample {
    pub name: String,
    pub kind: &'static str,
    pub route: String,
    pub user_agent: String,
    pub error: bool,
    /// Encoded size.
    pub bytes: u64,
    pub attribute_keys: Vec<String>,
    pub example: String,
    /// Start time, Unix milliseconds; 0 for "when received".
    pub time_unix_ms: i64,
}

/// The few fields of an OTLP `Span` a pattern needs.
#[derive(Clone, PartialEq, prost::Message)]
struct SpanFields {
    #[prost(bytes = "vec", tag = "5")]
    name: Vec<u8>,
    #[prost(int32, tag = "6")]
    kind: i32,
    #[prost(fixed64, tag = "7")]
    start_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    attributes: Vec<KeyValue>,
    #[prost(message, optional, tag = "15")]
    status: Option<Status>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Status {
    #[prost(int32, tag = "3")]
    code: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TracesData {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResourceSpans {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ScopeSpans {
    /// Left encoded: only sampled spans are decoded.
    #[prost(bytes = "bytes", repeated, tag = "2")]
    spans: Vec<Bytes>,
}

/// The encoded spans of a trace payload; `None` when it is not one or
/// cannot be read.
pub fn encoded_spans(format: Format, payload: &Bytes) -> Option<Vec<Bytes>> {
    let data = match format {
        Format::OtlpProtobuf => TracesData::decode(payload.clone()).ok()?,
        // Through `tero_otlp`'s reader (camelCase or snake_case, hex ids,
        // enums by name), affordable at the sampling rate.
        Format::OtlpJson => {
            let document: serde_json::Value = serde_json::from_slice(payload).ok()?;
            let encoded =
                tero_otlp::convert::json_to_protobuf(tero_otlp::Signal::Trace, &document).ok()?;
            TracesData::decode(Bytes::from(encoded)).ok()?
        }
        Format::DatadogLogs | Format::DatadogSeries => return None,
    };
    Some(
        data.resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .collect(),
    )
}

/// A span as its pattern sees it; `None` when it cannot be decoded.
pub fn sample(encoded: &Bytes) -> Option<SpanSample> {
    let span = SpanFields::decode(encoded.clone()).ok()?;
    let attributes = otlp_value::attributes(&span.attributes);
    let get = |keys: &[&str]| {
        keys.iter().find_map(|k| {
            attributes
                .iter()
                .find(|a| a.key == *k && !a.value.trim().is_empty())
                .map(|a| (a.key.as_str(), a.value.as_str()))
        })
    };
    let name = redact(truncate(
        &String::from_utf8_lossy(&span.name),
        MAX_NAME_BYTES,
    ));
    let (route_key, route) = match get(&[ROUTE]) {
        Some((key, route)) => (key, redact(truncate(route, MAX_ROUTE_BYTES))),
        None => match get(&PATH_KEYS) {
            Some((key, path)) => (key, masked_path(path)),
            None => ("", String::new()),
        },
    };
    let user_agent = get(&AGENT_KEYS)
        .map(|(_, ua)| product(ua))
        .unwrap_or_default();
    let kind = match span.kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "",
    };
    let code = span.status.as_ref().map_or(0, |s| s.code);
    let mut line = format!(
        "{name} kind={} status={}",
        if kind.is_empty() { "unspecified" } else { kind },
        match code {
            1 => "ok",
            STATUS_ERROR => "error",
            _ => "unset",
        }
    );
    if !route.is_empty() {
        line.push_str(&format!(" {route_key}={route}"));
    }
    if let Some((key, status)) = get(&STATUS_KEYS) {
        line.push_str(&format!(" {key}={status}"));
    }
    if !user_agent.is_empty() {
        line.push_str(&format!(" user_agent={user_agent}"));
    }
    let ms = span.start_time_unix_nano / 1_000_000;
    Some(SpanSample {
        example: redacted_example(&line, MAX_EXAMPLE_BYTES),
        name,
        kind,
        route,
        user_agent,
        error: code == STATUS_ERROR,
        bytes: encoded.len() as u64,
        attribute_keys: attributes.into_iter().map(|a| a.key).collect(),
        time_unix_ms: i64::try_from(ms).unwrap_or(0),
    })
}

/// The path of a URL path or request target (no query, no fragment), ids
/// masked as in log templates, redacted.
fn masked_path(target: &str) -> String {
    let path = target.split(['?', '#']).next().unwrap_or_default().trim();
    let (_, masked) = mask_line(truncate(path, MAX_ROUTE_BYTES));
    redact(&masked)
}

/// The product a user agent names: its first product token
/// (`kube-probe/1.29`), or the one a browser-like agent says it is
/// compatible with (`Mozilla/5.0 (compatible; Googlebot/2.1; …)`).
fn product(user_agent: &str) -> String {
    let ua = user_agent.trim();
    let compatible = ua
        .split_once("(compatible;")
        .and_then(|(_, rest)| rest.split([';', ')']).next())
        .map(str::trim)
        .filter(|p| !p.is_empty());
    let first = ua.split_whitespace().next().unwrap_or_default();
    let product = compatible.unwrap_or(first);
    redact(truncate(product, MAX_AGENT_BYTES))
}

/// Feeds up to the budget's worth of a trace payload's spans to
/// `patterns`; returns how many were sampled.
pub fn feed(
    budget: &SampleBudget,
    patterns: &SpanPatterns,
    format: Format,
    payload: &Bytes,
) -> u64 {
    if !budget.has_room() {
        return 0;
    }
    let Some(spans) = encoded_spans(format, payload) else {
        return 0;
    };
    let n = budget.take(spans.len());
    if n == 0 {
        return 0;
    }
    let samples: Vec<SpanSample> = spread(&spans, n).filter_map(sample).collect();
    patterns.observe(&samples)
}

#[derive(Debug, Clone, Default)]
struct Accumulated {
    kind: &'static str,
    count: u64,
    bytes: u64,
    errors: u64,
    attribute_keys: BTreeSet<String>,
    examples: Vec<String>,
    first_seen: i64,
    last_seen: i64,
}

/// `(name, route, user agent)`.
type Key = (String, String, String);

struct State {
    patterns: HashMap<Key, Accumulated>,
    overflowed: u64,
    since_ms: i64,
}

/// The span part of an inventory report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanReport {
    /// Activity since the previous report, most spans first.
    pub patterns: Vec<SpanPattern>,
    pub overflowed: u64,
    pub window_start_unix_ms: i64,
    pub window_end_unix_ms: i64,
}

impl SpanReport {
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty() && self.overflowed == 0
    }
}

/// The edge's span patterns, for its service.
pub struct SpanPatterns {
    service: String,
    state: Mutex<State>,
    /// Whether a reporter sends the patterns; without one nothing is fed.
    reporting: AtomicBool,
}

impl SpanPatterns {
    pub fn new(service: impl Into<String>) -> Self {
        SpanPatterns {
            service: service.into(),
            state: Mutex::new(State {
                patterns: HashMap::new(),
                overflowed: 0,
                since_ms: now_ms(),
            }),
            reporting: AtomicBool::new(false),
        }
    }

    /// The state, even if a panicking holder poisoned the lock: the
    /// patterns are a best-effort summary.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn is_reporting(&self) -> bool {
        self.reporting.load(Relaxed)
    }

    /// Set by the inventory reporter while it runs.
    pub(crate) fn set_reporting(&self, on: bool) {
        self.reporting.store(on, Relaxed);
    }

    /// Patterns held.
    pub fn len(&self) -> usize {
        self.state().patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts `samples` into their patterns; returns how many found one.
    pub fn observe(&self, samples: &[SpanSample]) -> u64 {
        let now = now_ms();
        let mut state = self.state();
        let mut counted = 0;
        for s in samples {
            let key = (s.name.clone(), s.route.clone(), s.user_agent.clone());
            let room = state.patterns.len() < MAX_PATTERNS;
            let acc = match state.patterns.get_mut(&key) {
                Some(acc) => acc,
                None if room => state.patterns.entry(key).or_insert_with(|| Accumulated {
                    kind: s.kind,
                    ..Accumulated::default()
                }),
                None => {
                    state.overflowed += 1;
                    continue;
                }
            };
            let at = if s.time_unix_ms > 0 {
                s.time_unix_ms
            } else {
                now
            };
            if acc.count == 0 {
                acc.first_seen = at;
                acc.last_seen = at;
            } else {
                acc.first_seen = acc.first_seen.min(at);
                acc.last_seen = acc.last_seen.max(at);
            }
            acc.count += 1;
            acc.bytes += s.bytes;
            acc.errors += u64::from(s.error);
            for key in &s.attribute_keys {
                if acc.attribute_keys.len() >= MAX_ATTRIBUTE_KEYS {
                    break;
                }
                if !acc.attribute_keys.contains(key) {
                    acc.attribute_keys.insert(key.clone());
                }
            }
            if acc.examples.len() < MAX_EXAMPLES && !acc.examples.contains(&s.example) {
                acc.examples.push(s.example.clone());
            }
            counted += 1;
        }
        counted
    }

    /// Every pattern's activity since the previous call, and the spans
    /// that found none; both start over.
    pub fn take_report(&self) -> SpanReport {
        let now = now_ms();
        let mut state = self.state();
        let window_start_unix_ms = std::mem::replace(&mut state.since_ms, now).min(now);
        let overflowed = std::mem::take(&mut state.overflowed);
        if overflowed > 0 {
            tracing::warn!(
                spans = overflowed,
                limit = MAX_PATTERNS,
                "sampled spans found no span pattern (the edge holds at most the limit); counted as overflow"
            );
        }
        let mut patterns: Vec<SpanPattern> = state
            .patterns
            .drain()
            .map(|((name, route, user_agent), acc)| SpanPattern {
                fingerprint: fingerprint(
                    &self.service,
                    &format!("\u{1e}span {name} {route} {user_agent}"),
                ),
                name,
                kind: acc.kind.to_owned(),
                route,
                user_agent,
                count: acc.count,
                bytes: acc.bytes,
                errors: acc.errors,
                attribute_keys: acc.attribute_keys.into_iter().collect(),
                examples: acc.examples,
                first_seen_unix_ms: acc.first_seen,
                last_seen_unix_ms: acc.last_seen,
            })
            .collect();
        patterns.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(b.bytes.cmp(&a.bytes))
                .then_with(|| a.fingerprint.cmp(&b.fingerprint))
        });
        SpanReport {
            patterns,
            overflowed,
            window_start_unix_ms,
            window_end_unix_ms: now,
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;

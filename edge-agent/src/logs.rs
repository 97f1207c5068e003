//! Log-sample intake: records posted to `POST /_edge/logs` are reduced to
//! templates by a streaming miner ([`tero_sdk::templates`], Drain-style),
//! and the templates travel to the control plane with the inventory report.
//!
//! Mining happens here, next to the application, so that only templates
//! leave the edge: a stable fingerprint, counts and bytes, the first
//! severity and a few redacted examples, never the lines themselves. The
//! control plane classifies each template once, whatever the volume.
//!
//! Everything is bounded, whatever callers post: the request body
//! (`logs.max_body_bytes`) and its records (`logs.max_records_per_request`)
//! are refused whole, before anything is mined; the miner keeps at most
//! `logs.max_templates` templates (lines that would start another are
//! counted as overflow); severities are cut to [`MAX_SEVERITY_BYTES`]; and a
//! report carries at most `logs.max_report_templates` templates.
//!
//! # Reports
//!
//! [`LogIntake::take_report`] takes the miner's activity since the previous
//! call. When more templates were active than a report may carry, the most
//! active (lines, then bytes) go out and the others are *carried*: their
//! counts are added to the next call's, so every line is counted in exactly
//! one report. The inventory [`Reporter`](crate::inventory::Reporter) seals
//! what it gets under a `seq` and resends it unchanged until the control
//! plane stores it, while the miner keeps counting into the next report: a
//! failed send neither loses nor double-counts a line, since the control
//! plane stores each `(instance, session, seq)` once.
//!
//! # What else a report says about a template
//!
//! Records may carry attributes (OTLP attributes, the other fields of a
//! Datadog or NDJSON record) and a trace id. For each template, its report
//! also profiles them since the previous report ([`profile`]): per key, the
//! records and bytes and a few redacted examples; values the sdk's
//! recognisers flag (e-mails, card numbers, tokens…) as findings per kind
//! and location, with a redacted example, never the value; and pairs of
//! fields that repeat each other. A profile travels with its template: a
//! template carried to the next report keeps accumulating its profile
//! until it is reported, so a profile covers exactly the records its
//! template's counts do.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};
use tero_proto::controlplane::{LogSample, LogTemplate};
use tero_sdk::templates::{ConfigError, Miner, MinerConfig, Template, truncate};

use crate::config::LogsConfig;

pub mod profile;

pub use profile::Attribute;
use profile::{Facts, Profile};

/// Templates whose records are profiled at once (those active since the
/// previous report); records of others are counted but not profiled. With
/// [`profile`]'s per-template bounds (some 25 KiB at worst) this caps the
/// profiles' memory at about 12 MiB, whatever is posted or pushed.
pub const MAX_PROFILED_TEMPLATES: usize = 500;

/// Bytes kept of a record's severity: a level name, not a payload.
pub const MAX_SEVERITY_BYTES: usize = 64;

/// Fields an NDJSON record's body is read from, the first present wins.
const BODY_FIELDS: [&str; 4] = ["body", "message", "msg", "log"];
/// Fields its severity is read from.
const SEVERITY_FIELDS: [&str; 3] = ["severity", "severity_text", "level"];
const TIME_FIELD: &str = "time_unix_ms";
/// An NDJSON record's member whose object holds its attributes (the
/// record's other members are attributes too).
const ATTRIBUTES_FIELD: &str = "attributes";

/// Why a request's samples were refused, as a whole: nothing of a refused
/// request is mined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntakeError {
    #[error("request body larger than {limit} bytes (logs.max_body_bytes); send smaller batches")]
    BodyTooLarge { limit: u64 },
    #[error(
        "more than {limit} records in one request (logs.max_records_per_request); send smaller batches"
    )]
    TooManyRecords { limit: usize },
    #[error(
        "unsupported Content-Type {0:?}: send text/plain (one record per line), application/x-ndjson or application/jsonl (one JSON object per line), or application/json"
    )]
    UnsupportedType(String),
    #[error("line {line}: {reason}")]
    BadLine { line: usize, reason: String },
    #[error("invalid JSON body: {0}")]
    BadJson(String),
}

impl IntakeError {
    /// The HTTP status that answers it.
    pub fn status(&self) -> StatusCode {
        match self {
            IntakeError::BodyTooLarge { .. } | IntakeError::TooManyRecords { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            IntakeError::UnsupportedType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IntakeError::BadLine { .. } | IntakeError::BadJson(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// How a request body is split into records, chosen by its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `text/plain`, no Content-Type, or `application/x-www-form-urlencoded`
    /// (what `curl --data-binary` sends unless told otherwise): one record
    /// per non-blank line.
    Text,
    /// `application/x-ndjson`, `application/ndjson`, `application/jsonl`:
    /// one JSON object per non-blank line.
    Ndjson,
    /// `application/json`: `{"records": [...]}` (the control plane's
    /// `SubmitLogs` JSON) or an array of records.
    Json,
}

impl BodyFormat {
    pub fn from_content_type(content_type: Option<&str>) -> Result<Self, IntakeError> {
        let raw = content_type.unwrap_or_default();
        let media = raw.split(';').next().unwrap_or_default().trim();
        let is = |name: &str| media.eq_ignore_ascii_case(name);
        // A log line is never form-encoded: the type is curl's default for
        // `--data-binary`, whose body is the file as it is.
        if media.is_empty() || is("text/plain") || is("application/x-www-form-urlencoded") {
            Ok(BodyFormat::Text)
        } else if is("application/x-ndjson") || is("application/ndjson") || is("application/jsonl")
        {
            Ok(BodyFormat::Ndjson)
        } else if is("application/json") {
            Ok(BodyFormat::Json)
        } else {
            Err(IntakeError::UnsupportedType(truncate(raw, 100).to_owned()))
        }
    }
}

/// One log record of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub body: Cow<'a, str>,
    pub severity: Option<String>,
    /// When it was written, Unix milliseconds; 0 for "when received".
    pub time_unix_ms: i64,
    /// Its attributes, bounded ([`profile::MAX_RECORD_ATTRIBUTES`]).
    pub attributes: Vec<Attribute>,
    /// Its trace id, as lower-case hex, when it has one.
    pub trace_id: Option<String>,
}

impl<'a> Record<'a> {
    pub fn line(body: Cow<'a, str>) -> Self {
        Record {
            body,
            severity: None,
            time_unix_ms: 0,
            attributes: Vec::new(),
            trace_id: None,
        }
    }
}

/// Splits a body into records; more than `max_records` is an error.
/// Invalid UTF-8 is decoded lossily (U+FFFD), line by line.
pub fn parse(
    format: BodyFormat,
    body: &[u8],
    max_records: usize,
) -> Result<Vec<Record<'_>>, IntakeError> {
    let mut records = Vec::new();
    // Checked before each record, so a huge body stops at the bound.
    let room = |len: usize| {
        if len >= max_records {
            Err(IntakeError::TooManyRecords { limit: max_records })
        } else {
            Ok(())
        }
    };
    match format {
        BodyFormat::Text => {
            for (_, line) in lines(body) {
                room(records.len())?;
                records.push(Record::line(line));
            }
        }
        BodyFormat::Ndjson => {
            for (number, line) in lines(body) {
                room(records.len())?;
                let value: Value =
                    serde_json::from_str(&line).map_err(|e| IntakeError::BadLine {
                        line: number,
                        reason: json_reason(&e),
                    })?;
                let Value::Object(object) = value else {
                    return Err(IntakeError::BadLine {
                        line: number,
                        reason: "expected a JSON object".into(),
                    });
                };
                let record = from_object(object).map_err(|reason| IntakeError::BadLine {
                    line: number,
                    reason,
                })?;
                records.push(record);
            }
        }
        BodyFormat::Json => {
            let text = String::from_utf8_lossy(body);
            if text.trim().is_empty() {
                return Ok(records);
            }
            let samples = parse_json(&text)?;
            if samples.len() > max_records {
                return Err(IntakeError::TooManyRecords { limit: max_records });
            }
            records.extend(samples.into_iter().map(|s| Record {
                severity: Some(s.severity).filter(|s| !s.is_empty()),
                time_unix_ms: s.time_unix_ms,
                ..Record::line(Cow::Owned(s.body))
            }));
        }
    }
    Ok(records)
}

/// The non-blank lines of a body, numbered from 1, without `\r\n`.
fn lines(body: &[u8]) -> impl Iterator<Item = (usize, Cow<'_, str>)> {
    body.split(|&b| b == b'\n')
        .enumerate()
        .filter_map(|(i, raw)| {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line = String::from_utf8_lossy(raw);
            (!line.trim().is_empty()).then_some((i + 1, line))
        })
}

/// serde_json's message without its position (one line is parsed at a
/// time, so its "line 1" would mislead), with the column.
fn json_reason(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(m, _)| m);
    format!("invalid JSON at column {}: {message}", e.column())
}

/// The `{"records": [...]}` of `SubmitLogs`; the `service` it may name is
/// ignored: an edge reports for its own service.
#[derive(Deserialize)]
struct Batch {
    records: Vec<LogSample>,
}

fn parse_json(text: &str) -> Result<Vec<LogSample>, IntakeError> {
    let parsed = if text.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<LogSample>>(text)
    } else {
        serde_json::from_str::<Batch>(text).map(|b| b.records)
    };
    parsed.map_err(|e| {
        IntakeError::BadJson(format!(
            "{e}; expected {{\"records\": [{{\"body\": …, \"severity\": …, \"time_unix_ms\": …}}]}} or an array of such records"
        ))
    })
}

/// An NDJSON object as a record; `Err` names the field of the wrong type.
fn from_object(mut object: Map<String, Value>) -> Result<Record<'static>, String> {
    let mut take = |names: &[&'static str]| {
        names.iter().find_map(|&name| {
            object
                .remove(name)
                .filter(|v| !v.is_null())
                .map(|v| (name, v))
        })
    };
    let body = match take(&BODY_FIELDS) {
        None => String::new(),
        Some((_, Value::String(s))) => s,
        // A structured body is still a record: its JSON text is mined.
        Some((_, other)) => other.to_string(),
    };
    let severity = match take(&SEVERITY_FIELDS) {
        None => None,
        Some((_, Value::String(s))) => Some(s),
        Some((_, Value::Number(n))) => Some(n.to_string()),
        Some((name, _)) => return Err(format!("{name} must be a string or a number")),
    };
    let time_unix_ms = match take(&[TIME_FIELD]) {
        None => 0,
        Some((_, Value::Number(n))) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .ok_or_else(|| format!("{TIME_FIELD} is out of range"))?,
        // Proto3 JSON writes 64-bit integers as strings.
        Some((_, Value::String(s))) => s
            .trim()
            .parse()
            .map_err(|_| format!("{TIME_FIELD} must be a number (Unix milliseconds)"))?,
        Some(_) => return Err(format!("{TIME_FIELD} must be a number (Unix milliseconds)")),
    };
    // What is left are the record's attributes; an `attributes` object
    // holds more of them.
    let mut attributes = Vec::new();
    if let Some(Value::Object(inner)) = object.remove(ATTRIBUTES_FIELD) {
        profile::json_attributes("", &inner, &mut attributes);
    }
    profile::json_attributes("", &object, &mut attributes);
    Ok(Record {
        severity,
        time_unix_ms,
        attributes,
        ..Record::line(Cow::Owned(body))
    })
}

/// What one request did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Records mined into a template.
    pub accepted: u64,
    /// Records with an empty (or blank) body, skipped.
    pub empty: u64,
    /// Records that found no template because the miner was full.
    pub overflowed: u64,
    /// Distinct templates the accepted records fell into, and how many of
    /// them this request created.
    pub templates: usize,
    pub new_templates: usize,
    /// Templates the miner holds after the request.
    pub live_templates: usize,
}

/// The log part of an inventory report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogReport {
    /// Activity since the previous report, most active first.
    pub templates: Vec<LogTemplate>,
    /// Lines that found no template.
    pub overflowed: u64,
    /// The period covered: since the previous report, Unix milliseconds.
    pub window_start_unix_ms: i64,
    pub window_end_unix_ms: i64,
}

impl LogReport {
    /// Nothing worth a report.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty() && self.overflowed == 0
    }
}

struct State {
    miner: Miner,
    /// Per template fingerprint (as it was when the records came), what
    /// its records carried since it was last reported.
    profiles: HashMap<String, Profile>,
    /// Records not profiled because [`MAX_PROFILED_TEMPLATES`] were.
    unprofiled: u64,
    /// Activity left out of earlier reports by `max_report_templates`,
    /// added to the next one.
    carried: Vec<LogTemplate>,
    /// When the previous report was taken.
    since_ms: i64,
}

/// The edge's log-sample intake: one miner for the edge's service.
pub struct LogIntake {
    service: String,
    limits: LogsConfig,
    state: Mutex<State>,
    /// Whether a reporter sends what is mined; without one, samples are
    /// refused rather than mined for nobody.
    reporting: AtomicBool,
}

impl LogIntake {
    /// An intake for `service` (the `service.name` the edge reports under,
    /// which is part of every fingerprint).
    pub fn new(service: impl Into<String>, limits: &LogsConfig) -> Result<Self, ConfigError> {
        let miner = Miner::new(MinerConfig {
            max_clusters: limits.max_templates,
            ..MinerConfig::default()
        })?;
        Ok(LogIntake {
            service: service.into(),
            limits: limits.clone(),
            state: Mutex::new(State {
                miner,
                profiles: HashMap::new(),
                unprofiled: 0,
                carried: Vec::new(),
                since_ms: now_ms(),
            }),
            reporting: AtomicBool::new(false),
        })
    }

    /// The miner, even if a panicking holder poisoned the lock: counts are
    /// a best-effort summary, never worth refusing samples over.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn max_body_bytes(&self) -> u64 {
        self.limits.max_body_bytes
    }

    pub fn is_reporting(&self) -> bool {
        self.reporting.load(Relaxed)
    }

    /// Set by the inventory reporter while it runs.
    pub(crate) fn set_reporting(&self, on: bool) {
        self.reporting.store(on, Relaxed);
    }

    /// Templates the miner holds.
    pub fn live_templates(&self) -> usize {
        self.state().miner.len()
    }

    /// Mines one request body. `query` is the request's query string:
    /// `severity=LEVEL` applies to records that carry none (every line of
    /// a text body).
    pub fn ingest(
        &self,
        format: BodyFormat,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Accepted, IntakeError> {
        if body.len() as u64 > self.limits.max_body_bytes {
            return Err(IntakeError::BodyTooLarge {
                limit: self.limits.max_body_bytes,
            });
        }
        let default_severity = query_param(query, "severity");
        let records = parse(format, body, self.limits.max_records_per_request)?;
        Ok(self.mine(&records, default_severity.as_deref()))
    }

    /// Mines `records`; `default_severity` applies to those that carry
    /// none. The push intake hands its samples here.
    pub fn mine(&self, records: &[Record<'_>], default_severity: Option<&str>) -> Accepted {
        let now = now_ms();
        let mut out = Accepted::default();
        let mut touched: HashSet<String> = HashSet::new();
        let mut created: HashSet<String> = HashSet::new();
        // The recognisers and comparisons run before the lock is taken.
        let facts: Vec<Option<Facts>> = records
            .iter()
            .map(|r| {
                (!r.body.trim().is_empty())
                    .then(|| Facts::of(&r.body, &r.attributes, r.trace_id.as_deref()))
            })
            .collect();
        let mut state = self.state();
        for (record, facts) in records.iter().zip(facts) {
            let Some(facts) = facts else {
                out.empty += 1;
                continue;
            };
            let severity = record
                .severity
                .as_deref()
                .or(default_severity)
                .map(|s| truncate(s.trim(), MAX_SEVERITY_BYTES))
                .filter(|s| !s.is_empty());
            let at = if record.time_unix_ms == 0 {
                now
            } else {
                record.time_unix_ms
            };
            let State {
                miner,
                profiles,
                unprofiled,
                ..
            } = &mut *state;
            match miner.observe(&self.service, &record.body, severity, at) {
                Some(template) => {
                    out.accepted += 1;
                    if !touched.contains(&template.fingerprint) {
                        touched.insert(template.fingerprint.clone());
                    }
                    // Its first line is this one: the request created it.
                    if template.count == 1 {
                        created.insert(template.fingerprint.clone());
                    }
                    let room = profiles.len() < MAX_PROFILED_TEMPLATES;
                    match profiles.get_mut(&template.fingerprint) {
                        Some(profile) => profile.add(&facts),
                        None if room => {
                            let mut profile = Profile::default();
                            profile.add(&facts);
                            profiles.insert(template.fingerprint.clone(), profile);
                        }
                        None => *unprofiled += 1,
                    }
                }
                None => out.overflowed += 1,
            }
        }
        // Templates may have merged during the request: count survivors.
        let miner = &state.miner;
        let live: HashSet<&str> = touched
            .iter()
            .filter_map(|fp| miner.get(fp).map(|t| t.fingerprint.as_str()))
            .collect();
        out.templates = live.len();
        out.new_templates = created
            .iter()
            .filter(|fp| live.contains(fp.as_str()))
            .count();
        out.live_templates = miner.len();
        out
    }

    /// The templates' activity since the previous call (and what earlier
    /// calls carried), at most `max_report_templates` of them.
    pub fn take_report(&self) -> LogReport {
        let mut state = self.state();
        let now = now_ms();
        let window_start_unix_ms = std::mem::replace(&mut state.since_ms, now).min(now);
        let State {
            miner,
            carried,
            profiles,
            unprofiled,
            ..
        } = &mut *state;
        let delta = miner.take_delta();
        let mut by_fingerprint: HashMap<String, LogTemplate> = HashMap::new();
        // A carried template may have merged into another since: its
        // counts go to the template now holding its fingerprint.
        for old in std::mem::take(carried) {
            let entry = match miner.get(&old.fingerprint) {
                Some(t) => by_fingerprint
                    .entry(t.fingerprint.clone())
                    .or_insert_with(|| describe(t)),
                None => by_fingerprint
                    .entry(old.fingerprint.clone())
                    .or_insert_with(|| LogTemplate {
                        count: 0,
                        bytes: 0,
                        first_seen_unix_ms: 0,
                        last_seen_unix_ms: 0,
                        ..old.clone()
                    }),
            };
            add(
                entry,
                old.count,
                old.bytes,
                old.first_seen_unix_ms,
                old.last_seen_unix_ms,
            );
        }
        for d in &delta.templates {
            let entry = match miner.get(&d.fingerprint) {
                Some(t) => by_fingerprint
                    .entry(t.fingerprint.clone())
                    .or_insert_with(|| describe(t)),
                // Not expected: the delta names live templates. Keep the
                // counts under the fingerprint rather than lose them.
                None => by_fingerprint
                    .entry(d.fingerprint.clone())
                    .or_insert_with(|| LogTemplate {
                        fingerprint: d.fingerprint.clone(),
                        ..LogTemplate::default()
                    }),
            };
            add(entry, d.count, d.bytes, d.first_seen, d.last_seen);
        }
        let mut templates: Vec<LogTemplate> = by_fingerprint.into_values().collect();
        templates.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(b.bytes.cmp(&a.bytes))
                .then_with(|| a.fingerprint.cmp(&b.fingerprint))
        });
        let mut overflowed = delta.overflow.count;
        if templates.len() > self.limits.max_report_templates {
            let mut rest = templates.split_off(self.limits.max_report_templates);
            // Carried entries are the live templates (at most
            // max_templates); only fingerprints merged out of every list
            // could add more. Those few are counted, not kept.
            if rest.len() > self.limits.max_templates {
                let dropped: u64 = rest
                    .drain(self.limits.max_templates..)
                    .map(|t| t.count)
                    .sum();
                tracing::warn!(
                    lines = dropped,
                    "log templates beyond what the miner holds could not be carried; counted as overflow"
                );
                overflowed += dropped;
            }
            tracing::debug!(
                reported = templates.len(),
                carried = rest.len(),
                "more active log templates than a report carries; the rest wait for the next"
            );
            *carried = rest;
        }
        attach_profiles(miner, profiles, &mut templates, carried);
        let unprofiled = std::mem::take(unprofiled);
        if unprofiled > 0 {
            tracing::warn!(
                records = unprofiled,
                limit = MAX_PROFILED_TEMPLATES,
                "log records of more active templates than are profiled at once; counted without their attributes"
            );
        }
        LogReport {
            templates,
            overflowed,
            window_start_unix_ms,
            window_end_unix_ms: now,
        }
    }
}

/// Gives each reported template its profile, and keeps those of carried
/// templates for the report that carries their counts. Profiles are kept
/// under the fingerprint a record's template had; one whose template has
/// merged since joins the survivor's.
fn attach_profiles(
    miner: &Miner,
    profiles: &mut HashMap<String, Profile>,
    reported: &mut [LogTemplate],
    carried: &[LogTemplate],
) {
    let mut merged: HashMap<String, Profile> = HashMap::with_capacity(profiles.len());
    for (fingerprint, profile) in profiles.drain() {
        let current = miner
            .get(&fingerprint)
            .map_or(fingerprint, |t| t.fingerprint.clone());
        match merged.get_mut(&current) {
            Some(survivor) => survivor.absorb(profile),
            None => {
                merged.insert(current, profile);
            }
        }
    }
    let mut overflowed = 0;
    for template in reported.iter_mut() {
        if let Some(profile) = merged.remove(&template.fingerprint) {
            overflowed += profile.overflowed();
            let (attributes, sensitive, duplicates) = profile.report();
            template.attributes = attributes;
            template.sensitive = sensitive;
            template.duplicate_fields = duplicates;
        }
    }
    if overflowed > 0 {
        tracing::debug!(
            overflowed,
            "attribute keys, findings or duplicate candidates beyond a template's bounds were left out"
        );
    }
    for template in carried {
        if let Some(profile) = merged.remove(&template.fingerprint) {
            profiles.insert(template.fingerprint.clone(), profile);
        }
    }
    // Left: templates counted as overflow, whose records no report carries.
    if !merged.is_empty() {
        tracing::debug!(
            templates = merged.len(),
            "profiles of templates no report carries dropped"
        );
    }
}

/// A template's description, without activity.
fn describe(t: &Template) -> LogTemplate {
    LogTemplate {
        fingerprint: t.fingerprint.clone(),
        text: t.text.clone(),
        count: 0,
        bytes: 0,
        severity: t.severity.clone().unwrap_or_default(),
        examples: t.examples.clone(),
        first_seen_unix_ms: 0,
        last_seen_unix_ms: 0,
        merged_from: t.merged_from.clone(),
        ..LogTemplate::default()
    }
}

/// Adds activity; first and last seen cover only periods with lines.
fn add(t: &mut LogTemplate, count: u64, bytes: u64, first: i64, last: i64) {
    if count == 0 {
        return;
    }
    if t.count == 0 {
        t.first_seen_unix_ms = first;
        t.last_seen_unix_ms = last;
    } else {
        t.first_seen_unix_ms = t.first_seen_unix_ms.min(first);
        t.last_seen_unix_ms = t.last_seen_unix_ms.max(last);
    }
    t.count += count;
    t.bytes += bytes;
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The first non-empty value of `name` in a query string
/// (`application/x-www-form-urlencoded`).
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(key) == name)
            .then(|| form_decode(value))
            .filter(|v| !v.trim().is_empty())
    })
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

/// Decodes `+` and `%XX`; a malformed escape stays as written.
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && let Some(&[hi, lo]) = bytes.get(i + 1..i + 3)
            && let (Some(hi), Some(lo)) = (hex(hi), hex(lo))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(if b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;

//! Log samples the control plane receives itself (`SubmitLogs`): mined into
//! templates here, then counted like an edge's report. Also the examples
//! cache: redacted example lines kept in memory only (control-plane.md §6.4: samples are
//! not retained), bounded, for the next classification run of this process.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tero_proto::controlplane::{LogSample, LogTemplate};
use tero_sdk::templates::{Miner, MinerConfig};

/// Records one request may carry.
pub const MAX_RECORDS: usize = 10_000;
/// Templates the control plane's own miner holds across services; lines
/// beyond are counted as overflow (the edges mine the bulk of the logs).
pub const MAX_TEMPLATES: usize = 20_000;
/// Event types whose examples are kept.
const MAX_EXAMPLE_SETS: usize = 20_000;

/// What one `SubmitLogs` call mined.
#[derive(Debug, Default, PartialEq)]
pub struct Mined {
    pub accepted: u64,
    /// Distinct templates the records fell into, and how many are new.
    pub templates: u32,
    pub new_templates: u32,
    /// Activity of every template touched since the previous call.
    pub report: Vec<LogTemplate>,
}

/// The control plane's template miner.
pub struct Intake {
    miner: Mutex<Miner>,
}

impl Intake {
    pub fn new() -> Intake {
        let config = MinerConfig {
            max_clusters: MAX_TEMPLATES,
            ..MinerConfig::default()
        };
        Intake {
            miner: Mutex::new(
                Miner::new(config).expect("the default configuration with a larger bound is valid"),
            ),
        }
    }

    /// Mines `records` of `service`. Empty bodies are skipped.
    pub fn mine(&self, service: &str, records: &[LogSample], now: i64) -> Mined {
        let mut miner = self.miner.lock().unwrap_or_else(|p| p.into_inner());
        let mut touched = std::collections::BTreeSet::new();
        let mut accepted = 0u64;
        for record in records {
            if record.body.trim().is_empty() {
                continue;
            }
            let at = if record.time_unix_ms > 0 {
                record.time_unix_ms
            } else {
                now
            };
            let severity = (!record.severity.is_empty()).then_some(record.severity.as_str());
            if let Some(t) = miner.observe(service, &record.body, severity, at) {
                touched.insert(t.fingerprint.clone());
                accepted += 1;
            }
        }
        let delta = miner.take_delta();
        let mut mined = Mined {
            accepted,
            templates: touched.len() as u32,
            ..Mined::default()
        };
        for d in delta.templates {
            let Some(t) = miner.get(&d.fingerprint) else {
                continue;
            };
            if d.created && touched.contains(&d.fingerprint) {
                mined.new_templates += 1;
            }
            mined.report.push(LogTemplate {
                fingerprint: d.fingerprint,
                text: t.text.clone(),
                count: d.count,
                bytes: d.bytes,
                severity: t.severity.clone().unwrap_or_default(),
                examples: t.examples.clone(),
                first_seen_unix_ms: d.first_seen,
                last_seen_unix_ms: d.last_seen,
                merged_from: t.merged_from.clone(),
                ..LogTemplate::default()
            });
        }
        mined
    }
}

impl Default for Intake {
    fn default() -> Self {
        Intake::new()
    }
}

/// Redacted examples per fingerprint, newest event types kept.
#[derive(Default)]
pub struct Examples {
    inner: Mutex<ExampleSets>,
}

#[derive(Default)]
struct ExampleSets {
    by_fingerprint: HashMap<String, Vec<String>>,
    order: VecDeque<String>,
}

impl Examples {
    pub fn remember(&self, fingerprint: &str, examples: &[String]) {
        if examples.is_empty() {
            return;
        }
        let mut sets = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !sets.by_fingerprint.contains_key(fingerprint) {
            while sets.order.len() >= MAX_EXAMPLE_SETS {
                if let Some(old) = sets.order.pop_front() {
                    sets.by_fingerprint.remove(&old);
                }
            }
            sets.order.push_back(fingerprint.to_string());
        }
        sets.by_fingerprint
            .insert(fingerprint.to_string(), examples.to_vec());
    }

    pub fn get(&self, fingerprint: &str) -> Vec<String> {
        let sets = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        sets.by_fingerprint
            .get(fingerprint)
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(body: &str) -> LogSample {
        LogSample {
            body: body.to_string(),
            severity: "INFO".to_string(),
            time_unix_ms: 0,
        }
    }

    #[test]
    fn records_become_templates_with_counts_and_news() {
        let intake = Intake::new();
        let mined = intake.mine(
            "svc",
            &[
                sample("user 17 logged in from 10.0.0.1"),
                sample("user 18 logged in from 10.0.0.2"),
                sample(""),
                sample("disk /dev/sda1 is 91% full"),
            ],
            1_000,
        );
        assert_eq!(mined.accepted, 3);
        assert_eq!((mined.templates, mined.new_templates), (2, 2));
        let counts: u64 = mined.report.iter().map(|t| t.count).sum();
        assert_eq!(counts, 3);
        assert!(mined.report.iter().all(|t| t.first_seen_unix_ms == 1_000));
        let again = intake.mine("svc", &[sample("user 19 logged in from 10.0.0.3")], 2_000);
        assert_eq!((again.templates, again.new_templates), (1, 0));
        assert_eq!(again.report.len(), 1);
        assert_eq!(again.report[0].count, 1);
    }

    #[test]
    fn examples_are_bounded_and_replaced() {
        let examples = Examples::default();
        examples.remember("a", &["one".to_string()]);
        examples.remember("a", &["two".to_string()]);
        assert_eq!(examples.get("a"), vec!["two".to_string()]);
        for i in 0..MAX_EXAMPLE_SETS + 5 {
            examples.remember(&format!("fp{i}"), &["x".to_string()]);
        }
        assert!(examples.get("a").is_empty(), "the oldest set is evicted");
        assert_eq!(
            examples.get(&format!("fp{}", MAX_EXAMPLE_SETS + 4)).len(),
            1
        );
    }
}

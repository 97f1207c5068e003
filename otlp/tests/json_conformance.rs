//! The OTLP JSON codec against every testcase of the public conformance
//! suite (file mode): each input filtered with a fresh engine, as the runner
//! does once per process, the output compared with the expected document
//! after check.py's normalisation, and match hits and misses summed over a
//! compound case's batches compared with the expected statistics.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tero_otlp::Signal;
use tero_otlp::json::filter_document;
use tero_sdk::engine::{Engine, StatsRegistry};
use tero_sdk::policy;

fn read_json(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn signal_from_name(name: &str) -> Option<Signal> {
    [
        ("logs_", Signal::Log),
        ("metrics_", Signal::Metric),
        ("traces_", Signal::Trace),
    ]
    .into_iter()
    .find(|(prefix, _)| name.starts_with(prefix))
    .map(|(_, s)| s)
}

fn signal_from_content(doc: &Value) -> Option<Signal> {
    [
        ("resourceLogs", Signal::Log),
        ("resourceMetrics", Signal::Metric),
        ("resourceSpans", Signal::Trace),
    ]
    .into_iter()
    .find(|(key, _)| !matches!(doc.get(key), None | Some(Value::Null | Value::Bool(false))))
    .map(|(_, s)| s)
}

/// (input, expected output) pairs of a testcase, in batch order.
fn batches(case: &Path) -> Vec<(PathBuf, PathBuf)> {
    if case.join("input.json").is_file() {
        return vec![(case.join("input.json"), case.join("expected.json"))];
    }
    let mut inputs: Vec<(u64, PathBuf)> = std::fs::read_dir(case)
        .expect("testcase dir")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let tag = path
                .file_name()?
                .to_str()?
                .strip_prefix("input_")?
                .strip_suffix(".json")?;
            Some((tag.parse().ok()?, path))
        })
        .collect();
    inputs.sort();
    inputs
        .into_iter()
        .map(|(n, input)| (input, case.join(format!("expected_{n}.json"))))
        .collect()
}

/// Runs one testcase; returns what differs.
fn check_case(case: &Path) -> Result<(), String> {
    let name = case
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let loaded = policy::load_file(&case.join("policies.json")).map_err(|e| e.to_string())?;
    let mut hits: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let batches = batches(case);
    if batches.is_empty() {
        return Err("no inputs".into());
    }
    for (input, expected) in batches {
        let payload = std::fs::read(&input).map_err(|e| e.to_string())?;
        let doc: Value = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
        let Some(signal) = signal_from_name(name).or_else(|| signal_from_content(&doc)) else {
            continue;
        };
        let registry = StatsRegistry::new();
        let engine = Engine::compile(&loaded.policies, &registry);
        let filtered = filter_document(&engine, signal, &payload)
            .map_err(|e| format!("{}: {e}", input.display()))?;
        let output: Value =
            serde_json::from_slice(filtered.rewritten.as_deref().unwrap_or(&payload))
                .map_err(|e| format!("{}: output is not JSON: {e}", input.display()))?;
        if expected.is_file() {
            let want = common::normalize(&read_json(&expected));
            let got = common::normalize(&output);
            if want != got {
                return Err(format!(
                    "{} differs:\nexpected {want:#}\nactual   {got:#}",
                    input.display()
                ));
            }
        }
        for info in engine.policies() {
            let d = info.runtime.stats.peek();
            let entry = hits.entry(info.id.clone()).or_default();
            entry.0 += d.match_hits;
            entry.1 += d.match_misses;
        }
    }
    let expected_stats = read_json(&case.join("expected_stats.json"));
    let mut want: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for entry in expected_stats["policies"].as_array().into_iter().flatten() {
        let id = entry["policy_id"].as_str().unwrap_or_default().to_owned();
        let h = entry["hits"].as_u64().unwrap_or(0);
        let m = entry["misses"].as_u64().unwrap_or(0);
        if h + m > 0 {
            want.insert(id, (h, m));
        }
    }
    hits.retain(|_, (h, m)| *h + *m > 0);
    if want != hits {
        return Err(format!("stats differ: expected {want:?}, actual {hits:?}"));
    }
    Ok(())
}

#[test]
fn every_conformance_testcase_filters_as_expected() {
    let dir = common::conformance_dir().join("testcases");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("testcases")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_dir() && !p.join("provider_only").exists() && !p.join("go_only").exists())
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    let mut signals = [0usize; 4];
    for case in &cases {
        let name = case
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let slot = ["logs_", "metrics_", "traces_", "compound_"]
            .iter()
            .position(|p| name.starts_with(p))
            .unwrap_or(3);
        signals[slot] += 1;
        if let Err(e) = check_case(case) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // Every signal and the multi-batch cases ran.
    assert!(
        signals.iter().all(|&n| n > 0),
        "testcases per kind: {signals:?}"
    );
    assert!(cases.len() >= 150, "only {} testcases ran", cases.len());
}

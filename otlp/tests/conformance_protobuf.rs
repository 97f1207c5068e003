//! The whole policy conformance suite through the binary protobuf codec.
//!
//! Every log, trace and metric testcase (compound ones batch by batch, each
//! batch with a fresh engine as the harness runs a fresh runner) is
//! converted to an export request, filtered by `tero_otlp::protobuf`,
//! converted back and compared with the expected document after check.py's
//! normalisation. Hits and misses are compared per policy, summed over the
//! batches. The codec's counts are checked against the documents too.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use tero_otlp::{Format, Output, Signal, convert};
use tero_sdk::policy::Format as PolicyFormat;

use common::{conformance_testcases, engine_from, normalize, pretty, record_count, signal_of};

type HitsMisses = BTreeMap<String, (u64, u64)>;

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
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

fn empty_document(signal: Signal) -> Value {
    match signal {
        Signal::Log => json!({"resourceLogs": []}),
        Signal::Trace => json!({"resourceSpans": []}),
        Signal::Metric => json!({"resourceMetrics": []}),
    }
}

/// Runs one batch; returns its stats or what went wrong.
fn run_batch(
    policies: &str,
    signal: Signal,
    input: &Value,
    expected: Option<&Value>,
) -> Result<HitsMisses, String> {
    let (engine, _registry) = engine_from(policies, PolicyFormat::Json);
    let payload = convert::json_to_protobuf(signal, input).map_err(|e| format!("input: {e}"))?;
    let filtered = tero_otlp::filter(&engine, Format::OtlpProtobuf, signal, &payload)
        .map_err(|e| format!("filter: {e}"))?;
    let actual = match &filtered.output {
        Output::Unchanged => convert::protobuf_to_json(signal, &payload),
        Output::Rewritten(bytes) => convert::protobuf_to_json(signal, bytes),
        Output::AllDropped => Ok(empty_document(signal)),
    }
    .map_err(|e| format!("output does not decode: {e}"))?;

    let records_in = record_count(signal, input);
    let records_out = record_count(signal, &actual);
    let counts = filtered.counts;
    if counts.records_in != records_in || counts.records_in - counts.records_dropped != records_out
    {
        return Err(format!(
            "counts {counts:?}, but the input holds {records_in} records and the output {records_out}"
        ));
    }
    if counts.records_in > 0 && counts.protobuf_bytes_in == 0 {
        return Err("records seen but no protobuf bytes counted".into());
    }
    if let Some(expected) = expected {
        let (want, got) = (pretty(&normalize(expected)), pretty(&normalize(&actual)));
        if want != got {
            return Err(format!("output differs\nexpected: {want}\nactual:   {got}"));
        }
    }
    let mut stats = HitsMisses::new();
    for info in engine.policies() {
        let delta = info.runtime.stats.peek();
        if delta.match_hits + delta.match_misses > 0 {
            stats.insert(info.id.clone(), (delta.match_hits, delta.match_misses));
        }
    }
    Ok(stats)
}

fn expected_stats(path: &Path) -> Result<HitsMisses, String> {
    let doc = read_json(path)?;
    let mut stats = HitsMisses::new();
    for entry in doc["policies"].as_array().into_iter().flatten() {
        let id = entry["policy_id"].as_str().unwrap_or_default().to_owned();
        let hits = entry["hits"].as_f64().unwrap_or(0.0) as u64;
        let misses = entry["misses"].as_f64().unwrap_or(0.0) as u64;
        if hits + misses > 0 {
            let slot = stats.entry(id).or_insert((0, 0));
            slot.0 += hits;
            slot.1 += misses;
        }
    }
    Ok(stats)
}

/// Runs a testcase; `Ok(false)` when it has nothing this codec can run.
fn run_case(case: &Path) -> Result<bool, String> {
    let name = case.file_name().unwrap_or_default().to_string_lossy();
    if case.join("provider_only").exists() || case.join("go_only").exists() {
        return Ok(false);
    }
    let policies = std::fs::read_to_string(case.join("policies.json"))
        .map_err(|e| format!("policies.json: {e}"))?;
    // (input, expected, signal from the name?) per batch, in order.
    let mut batches = Vec::new();
    if case.join("input.json").is_file() {
        batches.push((
            case.join("input.json"),
            Some(case.join("expected.json")),
            true,
        ));
    } else {
        let mut numbered: Vec<(u64, String)> = std::fs::read_dir(case)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|f| {
                let tag = f.strip_prefix("input_")?.strip_suffix(".json")?;
                Some((tag.parse().ok()?, tag.to_owned()))
            })
            .collect();
        numbered.sort();
        for (_, tag) in numbered {
            let expected = case.join(format!("expected_{tag}.json"));
            batches.push((
                case.join(format!("input_{tag}.json")),
                expected.is_file().then_some(expected),
                false,
            ));
        }
    }
    let mut total = HitsMisses::new();
    let mut ran = 0;
    for (input_path, expected_path, simple) in batches {
        let input = read_json(&input_path)?;
        let signal = simple
            .then(|| signal_from_name(&name))
            .flatten()
            .or_else(|| signal_of(&input));
        let Some(signal) = signal else { continue };
        let expected = expected_path.map(|p| read_json(&p)).transpose()?;
        let label = input_path.file_name().unwrap_or_default().to_string_lossy();
        let stats = run_batch(&policies, signal, &input, expected.as_ref())
            .map_err(|e| format!("{label}: {e}"))?;
        for (id, (hits, misses)) in stats {
            let slot = total.entry(id).or_insert((0, 0));
            slot.0 += hits;
            slot.1 += misses;
        }
        ran += 1;
    }
    if ran == 0 {
        return Ok(false);
    }
    let want = expected_stats(&case.join("expected_stats.json"))?;
    if want != total {
        return Err(format!(
            "stats (hits, misses) differ\nexpected: {want:?}\nactual:   {total:?}"
        ));
    }
    Ok(true)
}

#[test]
fn every_conformance_testcase_passes_through_protobuf() {
    let dir = conformance_testcases();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "conformance testcases not found at {} ({e}): set TERO_CONFORMANCE_DIR",
                dir.display()
            )
        })
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    let mut passed = 0;
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap_or_default().to_string_lossy();
        match run_case(case) {
            Ok(true) => passed += 1,
            Ok(false) => {}
            Err(problem) => failures.push(format!("{name}: {problem}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} testcases failed through protobuf:\n\n{}",
        failures.len(),
        failures.len() + passed,
        failures.join("\n\n")
    );
    // The suite copy holds 160 runnable testcases; a handful fewer would
    // mean the walk above silently skipped some.
    assert!(passed >= 150, "only {passed} testcases ran");
}

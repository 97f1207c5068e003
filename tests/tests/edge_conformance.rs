//! The conformance suite through the Edge's push intake: every log, trace
//! and metric testcase's input is POSTed as OTLP JSON to a real `tero-edge`
//! whose file provider holds the testcase's policies, and what the Edge
//! forwards upstream must be what the suite expects (and what
//! `tero-conformance` outputs), compared by the suite's own harness.
//!
//! The adapter `tests/fixtures/edge_conformance_runner.py` answers the
//! harness's runner contract through the Edge (see its doc). Compound
//! testcases are left to `tero-conformance`: they run batches in separate
//! runner processes, which is how the harness defines them, not how one
//! long-lived Edge sees traffic.

use std::path::PathBuf;
use std::process::Command;

use tero_e2e::binary;

fn conformance_dir() -> PathBuf {
    let dir = std::env::var_os("TERO_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance")
        });
    assert!(
        dir.join("check.py").is_file(),
        "conformance suite not found at {}: check out shared/ next to the repository or set TERO_CONFORMANCE_DIR",
        dir.display()
    );
    dir
}

#[test]
fn every_log_trace_and_metric_testcase_through_the_edge_http_path() {
    let dir = conformance_dir();
    let runner =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/edge_conformance_runner.py");
    let cases: Vec<String> = std::fs::read_dir(dir.join("testcases"))
        .expect("testcases folder")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            ["logs_", "traces_", "metrics_"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect();
    assert!(
        cases.len() >= 100,
        "too few testcases found: {}",
        cases.len()
    );

    let output = Command::new("python3")
        .arg(dir.join("check.py"))
        .arg("--runner")
        .arg(&runner)
        .args([
            "--only",
            "logs_*",
            "--only",
            "traces_*",
            "--only",
            "metrics_*",
        ])
        .env("TERO_EDGE_BIN", binary("tero-edge"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.lines().last().unwrap_or_default().to_owned();
    assert!(
        output.status.success() && summary.contains(" 0 failed"),
        "testcases through the Edge failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let count = |word: &str| -> usize {
        let words: Vec<&str> = summary.split_whitespace().collect();
        words
            .iter()
            .position(|w| w.trim_end_matches(',') == word)
            .and_then(|i| words.get(i.wrapping_sub(1)))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    // Every selected testcase ran, except those the harness itself skips
    // (they need a policy server).
    assert_eq!(
        count("passed") + count("skipped"),
        cases.len(),
        "unexpected summary: {summary}"
    );
    assert!(count("passed") >= 100, "too few testcases ran: {summary}");
}

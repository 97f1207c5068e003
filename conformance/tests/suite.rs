//! Runs the public policy conformance suite (file mode) against the built
//! runner, so `cargo test` fails when any testcase does.
//!
//! The suite lives outside this repository (`../shared/conformance` next to
//! the checkout, or `TERO_CONFORMANCE_DIR`).

use std::path::PathBuf;
use std::process::Command;

#[test]
fn every_conformance_testcase_passes() {
    let dir = std::env::var_os("TERO_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance")
        });
    let check = dir.join("check.py");
    assert!(
        check.is_file(),
        "conformance suite not found at {}: check out shared/ next to the repository or set TERO_CONFORMANCE_DIR",
        dir.display()
    );
    let output = Command::new("python3")
        .arg(&check)
        .arg("--runner")
        .arg(env!("CARGO_BIN_EXE_tero-conformance"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        output.status.success(),
        "conformance failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        summary.contains(" 0 failed"),
        "unexpected summary: {summary}"
    );
    let passed: u32 = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passed >= 100, "too few testcases ran: {summary}");
}

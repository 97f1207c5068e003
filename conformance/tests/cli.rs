//! The runner's command line: the README's example as written, and a
//! `--stats` that would overwrite the output refused before anything is
//! written.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tero-conformance-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(name)
}

/// Runs the runner on the repository's example with `extra` arguments and
/// stdout redirected to a file, as `… > out.json` does.
fn run_to_file(extra: &[&str], stdout_file: &Path) -> std::process::Output {
    let file = std::fs::File::create(stdout_file).expect("stdout file");
    Command::new(env!("CARGO_BIN_EXE_tero-conformance"))
        .current_dir(root())
        .args([
            "--policies",
            "examples/policies.yaml",
            "--input",
            "examples/metrics.json",
            "--signal",
            "metric",
        ])
        .args(extra)
        .stdout(Stdio::from(file))
        .output()
        .expect("run tero-conformance")
}

#[test]
fn stats_on_the_redirected_stdout_are_refused_before_writing() {
    let out = scratch("clobber.json");
    let run = run_to_file(&["--output", "-", "--stats", "/dev/stdout"], &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(stderr.contains("--stats /dev/stdout"), "{stderr}");
    assert!(stderr.contains("own file"), "{stderr}");

    let same = scratch("same.json");
    let path = same.to_str().expect("utf-8 path");
    let run = run_to_file(&["--output", path, "--stats", path], &scratch("unused"));
    assert!(!run.status.success());
}

#[test]
fn the_readme_example_keeps_output_and_stats_apart() {
    let out = scratch("filtered.json");
    let stats = scratch("stats.json");
    let run = run_to_file(
        &["--output", "-", "--stats", stats.to_str().expect("utf-8")],
        &out,
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("output")).expect("output is JSON");
    assert!(document.get("resourceMetrics").is_some(), "{document}");
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&stats).expect("stats")).expect("stats are JSON");
    assert!(stats["policies"].is_array(), "{stats}");
}

//! `tero` without a server: usage errors, version, and local validation.
//! The commands that talk to a control plane are tested end to end in
//! `tests/tests/cli.rs`. (Living in this package also makes `cargo test`
//! build the `tero` binary those tests run.)

use std::process::{Command, Output};

fn tero(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tero"))
        .args(args)
        .env_remove("TERO_ENDPOINT")
        .env_remove("TERO_TOKEN")
        .output()
        .expect("run tero")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn usage_errors_exit_2_and_version_exits_0() {
    assert_eq!(tero(&["no-such-command"]).status.code(), Some(2));
    assert_eq!(
        tero(&["policy", "validate"]).status.code(),
        Some(2),
        "-f is required"
    );
    assert_eq!(
        tero(&["-o", "xml", "policy", "list"]).status.code(),
        Some(2)
    );
    let version = tero(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert_eq!(
        text(&version.stdout).trim(),
        format!("tero {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn validate_checks_files_locally_and_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "policies:\n  - id: drop-debug\n    name: d\n    metric:\n      match:\n        - metric_field: name\n          starts_with: debug_\n      keep: false\n",
    )
    .unwrap();
    let out = tero(&["policy", "validate", "-f", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "1 policy valid");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "policies:\n  - id: bad-regex\n    name: b\n    metric:\n      match:\n        - metric_field: name\n          regex: \"(\"\n      keep: false\n",
    )
    .unwrap();
    let out = tero(&["policy", "validate", "-f", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bad.yaml"), "{stderr}");
    assert!(stderr.contains("bad-regex"), "{stderr}");
    assert!(stderr.contains("metric.match[0].regex"), "{stderr}");
    assert!(!stderr.contains("good.yaml"), "{stderr}");
}

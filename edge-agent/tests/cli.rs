//! `tero-edge` as an operator meets it: `--check-config`, and start-up
//! refusing a broken config with one line naming the key.
//!
//! (Living in this package also makes `cargo test` build the `tero-edge`
//! binary, which the end-to-end tests in `tests/` run.)

use std::process::Command;

fn run(config: &str, args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tero-edge"))
        .arg(&path)
        .args(args)
        .env_remove("TERO_LISTEN_PORT")
        .output()
        .expect("run tero-edge");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_a_valid_file_and_warns_about_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("p.yaml");
    std::fs::write(&policies, "policies: []\n").unwrap();
    let config = |path: &std::path::Path| {
        format!(
            r#"{{"upstream_url": "http://127.0.0.1:8080", "listen_port": 9191, "colour": "blue",
                "policy_providers": [{{"id": "f", "type": "file", "path": {:?}}}]}}"#,
            path.display().to_string()
        )
    };
    let (code, stdout, stderr) = run(&config(&policies), &["--check-config"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("OK"), "{stdout}");
    assert!(stdout.contains("http://127.0.0.1:8080/metrics"), "{stdout}");
    assert!(stderr.contains("colour: unknown key"), "{stderr}");

    // A referenced file that is missing is not OK.
    let (code, _, stderr) = run(&config(&dir.path().join("gone.yaml")), &["--check-config"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("gone.yaml"), "{stderr}");
}

#[test]
fn check_config_does_not_print_credentials_of_the_upstream_url() {
    let (code, stdout, stderr) = run(
        r#"{"upstream_url": "http://scraper:s3cret@127.0.0.1:8080/metrics?token=s3cret&module=x"}"#,
        &["--check-config"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("s3cret"), "{stdout}");
    assert!(
        stdout.contains("http://***@127.0.0.1:8080/metrics?token=***&module=***"),
        "{stdout}"
    );
    // Nor does the error of a config that does not validate.
    let (code, stdout, stderr) = run(
        r#"{"upstream_url": "ftp://scraper:s3cret@127.0.0.1:8080/metrics?token=s3cret"}"#,
        &["--check-config"],
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(stderr.contains("upstream_url"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

#[test]
fn an_absurd_drain_timeout_is_refused_not_a_panic() {
    for value in ["inf", "-1", "1e300", "NaN"] {
        let (code, _, stderr) = run(
            r#"{"upstream_url": "http://127.0.0.1:8080", "listen_port": 0}"#,
            &[&format!("--drain-timeout={value}")],
        );
        assert_eq!(code, 1, "{value}: {stderr}");
        assert!(stderr.contains("--drain-timeout"), "{value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{value}: {stderr}");
    }
}

#[test]
fn a_broken_config_stops_start_up_with_one_line_naming_the_key() {
    let cases = [
        (r#"{"listen_port": 9191}"#, "upstream_url"),
        (
            r#"{"upstream_url": "http://a:1", "listen_port": "ninety"}"#,
            "listen_port",
        ),
        (
            r#"{"upstream_url": "http://a:1", "policy_providers": [{"id": "x", "type": "carrier-pigeon"}]}"#,
            "policy_providers[0].type",
        ),
        (r#"{"upstream_url": "#, "not valid JSON"),
    ];
    for (config, key) in cases {
        for args in [&["--check-config"][..], &[][..]] {
            let (code, _, stderr) = run(config, args);
            assert_eq!(code, 1, "{config} {args:?}: {stderr}");
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "one line: {stderr}");
            assert!(lines[0].contains(key), "{key} in {stderr}");
        }
    }
}

#[test]
fn an_unreadable_config_file_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_tero-edge"))
        .arg("/nonexistent/tero/config.json")
        .output()
        .expect("run tero-edge");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/tero/config.json"), "{stderr}");
}

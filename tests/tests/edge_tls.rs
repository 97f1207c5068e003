//! An Edge reaching a control plane that serves TLS: the push stream and
//! the poller over https://, trusting a private CA through `ca_file`, and
//! refusing a server its roots do not vouch for.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tero_e2e::control_plane::ControlPlane;
use tero_e2e::fixtures::{EXPOSITION, TEXT, WITHOUT_DEBUG};
use tero_e2e::upstream::{Compression, Upstream};
use tero_e2e::{Edge, Process, binary, http_get, wait_for};

/// A control plane prepared over plain HTTP (a key and a policy), then
/// restarted on the same port and data directory serving TLS for
/// `localhost` with a self-signed certificate. Returns the process, port,
/// key and the certificate's path.
fn tls_control_plane(dir: &Arc<tempfile::TempDir>) -> (Process, u16, String, std::path::PathBuf) {
    let mut cp = ControlPlane::start(dir.clone(), "cp");
    let key = cp.create_key("tls-edge");
    let (status, body) = cp.api(
        "POST",
        "/api/v1/policies",
        Some(&json!({"policy": {
            "id": "drop-debug", "name": "Drop debug families",
            "metric": {"match": [{"metricField": 1, "startsWith": "debug_"}], "keep": false}
        }})),
    );
    assert_eq!(status, 200, "{body}");
    let port = cp.port;
    assert!(cp.process.terminate(Duration::from_secs(10)).is_some());

    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key_pem = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key_pem, certified.signing_key.serialize_pem()).unwrap();
    let mut cmd = Command::new(binary("tero-control-plane"));
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("cp"))
        .args(["--sync-interval-secs", "1", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key_pem)
        .env("TERO_ADMIN_TOKEN", "test-admin-cp");
    let process = Process::spawn("cp-tls", &mut cmd, dir.path());
    wait_for(Duration::from_secs(30), "TLS listener", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    (process, port, key, cert)
}

fn edge(dir: &Arc<tempfile::TempDir>, up: &Upstream, name: &str, provider: Value) -> Edge {
    Edge::start(
        json!({
            "upstream_url": up.url(),
            "service": {"name": "checkout", "instance_id": name},
            "policy_providers": [provider],
        }),
        dir.clone(),
        name,
    )
}

fn scrape(edge: &Edge) -> String {
    http_get(&edge.url("/metrics"), &[]).expect("scrape").text()
}

fn provider_state(edge: &Edge) -> Value {
    edge.policies()["providers"][0].clone()
}

#[test]
fn the_stream_and_the_poller_speak_tls_with_a_private_ca() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (_cp, port, key, cert) = tls_control_plane(&dir);
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let auth = json!([{"name": "Authorization", "value": format!("Bearer {key}")}]);

    let streaming = edge(
        &dir,
        &up,
        "edge-grpc",
        json!({"id": "cp", "type": "grpc", "url": format!("https://localhost:{port}"),
               "headers": auth, "ca_file": cert, "stats_interval_secs": 1}),
    );
    wait_for(
        Duration::from_secs(10),
        "policy over the TLS stream",
        || (scrape(&streaming) == WITHOUT_DEBUG).then_some(()),
    );
    assert_eq!(provider_state(&streaming)["transport"], "stream");

    let polling = edge(
        &dir,
        &up,
        "edge-http",
        json!({"id": "cp", "type": "http", "url": format!("https://localhost:{port}"),
               "headers": auth, "ca_file": cert, "poll_interval_secs": 1, "encoding": "protobuf"}),
    );
    wait_for(Duration::from_secs(10), "policy over TLS polling", || {
        (scrape(&polling) == WITHOUT_DEBUG).then_some(())
    });
    assert_eq!(provider_state(&polling)["transport"], "http");
}

#[test]
fn a_server_the_roots_do_not_vouch_for_is_refused() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (_cp, port, key, _cert) = tls_control_plane(&dir);
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let untrusting = edge(
        &dir,
        &up,
        "edge-untrusting",
        json!({"id": "cp", "type": "http", "url": format!("https://localhost:{port}"),
               "headers": [{"name": "Authorization", "value": format!("Bearer {key}")}],
               "poll_interval_secs": 1}),
    );
    let error = wait_for(Duration::from_secs(10), "the refusal", || {
        provider_state(&untrusting)["last_error"]
            .as_str()
            .map(str::to_owned)
    });
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert_eq!(
        scrape(&untrusting),
        EXPOSITION,
        "no policy from an untrusted server"
    );
}

#[test]
fn a_ca_file_without_certificates_stops_start_up_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("not-a-ca.pem");
    std::fs::write(&bogus, "hello").unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({
            "upstream_url": "http://127.0.0.1:1",
            "policy_providers": [{"id": "cp", "type": "grpc", "url": "https://cp:7070", "ca_file": bogus}],
        })
        .to_string(),
    )
    .unwrap();
    let out = Command::new(binary("tero-edge"))
        .arg(&config)
        .arg("--check-config")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("policy_providers[0].ca_file"), "{text}");
}

//! How the control plane serves: TLS with ALPN (HTTP/1.1 and h2 on one
//! port), the standard gRPC health and reflection services, and start-up
//! errors that name what to fix.

use std::io::{Read, Write};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tero_e2e::control_plane::ControlPlane;
use tero_e2e::{Process, binary, free_port, wait_for};

fn tempdir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().expect("tempdir"))
}

/// A self-signed certificate for `localhost`, written as PEM files.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let cert_pem = certified.cert.pem();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, &cert_pem).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    (cert_path, key_path, certified.cert.der().to_vec())
}

fn tls_client(cert_der: &[u8], alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(cert_der.to_vec()))
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Handshakes with `localhost:port`; returns the negotiated ALPN protocol
/// and, for HTTP/1.1, the raw answer to `GET path`.
fn tls_get(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    path: Option<&str>,
) -> (Option<Vec<u8>>, String) {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let mut answer = String::new();
    match path {
        Some(path) => {
            write!(
                tls,
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut buf = Vec::new();
            let _ = tls.read_to_end(&mut buf);
            answer = String::from_utf8_lossy(&buf).into_owned();
        }
        None => {
            // Completing the handshake is enough to learn the protocol.
            tls.flush().unwrap();
            while tls.conn.is_handshaking() {
                tls.conn.complete_io(tls.sock).unwrap();
            }
        }
    }
    (conn.alpn_protocol().map(<[u8]>::to_vec), answer)
}

#[test]
fn tls_serves_http1_and_h2_on_one_port() {
    let dir = tempdir();
    let (cert, key, der) = self_signed(dir.path());
    let port = free_port();
    let mut cmd = Command::new(binary("tero-control-plane"));
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("TERO_ADMIN_TOKEN", "tls-admin");
    let _cp = Process::spawn("cp-tls", &mut cmd, dir.path());
    let answer = wait_for(Duration::from_secs(30), "TLS listener", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        let (alpn, answer) = tls_get(port, tls_client(&der, &[b"http/1.1"]), Some("/healthz"));
        (alpn.as_deref() == Some(b"http/1.1".as_slice()) && answer.starts_with("HTTP/1.1 200"))
            .then_some(answer)
    });
    assert!(answer.ends_with("ok\n"), "{answer}");

    let (alpn, _) = tls_get(port, tls_client(&der, &[b"h2", b"http/1.1"]), None);
    assert_eq!(
        alpn.as_deref(),
        Some(b"h2".as_slice()),
        "gRPC clients negotiate h2"
    );

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = tero_e2e::http_get(&format!("http://127.0.0.1:{port}/healthz"), &[]);
    assert!(plain.map(|r| r.status != 200).unwrap_or(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_and_reflection_are_served() {
    let dir = tempdir();
    let cp = tokio::task::spawn_blocking(move || ControlPlane::start(dir, "cp-health"))
        .await
        .unwrap();
    let channel = tonic::transport::Endpoint::from_shared(cp.endpoint())
        .unwrap()
        .connect()
        .await
        .expect("connect");

    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut health = HealthClient::new(channel.clone());
    for service in [
        "tero.policy.v1.PolicyService",
        "tero.controlplane.v1.AdminService",
        "tero.controlplane.v1.EdgeService",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health of {service}: {e}"))
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner();
    let ServerReflectionResponse {
        message_response: Some(MessageResponse::ListServicesResponse(list)),
        ..
    } = responses.message().await.unwrap().expect("one answer")
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "tero.controlplane.v1.AdminService",
        "tero.controlplane.v1.EdgeService",
        "tero.policy.v1.PolicyService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == service),
            "{service} missing from {names:?}"
        );
    }
    drop(cp);
}

fn run_to_exit(args: &[&str], dir: &std::path::Path) -> (i32, String) {
    let output = Command::new(binary("tero-control-plane"))
        .args(args)
        .current_dir(dir)
        .env_remove("TERO_DATABASE_URL")
        .output()
        .expect("run tero-control-plane");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn start_up_errors_name_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = run_to_exit(&["--version"], dir.path());
    assert_eq!(code, 0);
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");

    let listen = format!("127.0.0.1:{}", free_port());
    let (code, out) = run_to_exit(
        &["--listen", &listen, "--database-url", "mysql://x/y"],
        dir.path(),
    );
    assert_ne!(code, 0);
    assert!(
        out.contains("unsupported database URL") && out.contains("postgres://"),
        "{out}"
    );

    let (code, out) = run_to_exit(
        &[
            "--listen",
            &listen,
            "--tls-cert",
            "missing-cert.pem",
            "--tls-key",
            "missing-key.pem",
        ],
        dir.path(),
    );
    assert_ne!(code, 0);
    assert!(out.contains("missing-cert.pem"), "{out}");

    let (code, out) = run_to_exit(
        &["--listen", &listen, "--tls-cert", "only-cert.pem"],
        dir.path(),
    );
    assert_eq!(code, 2, "a usage error: {out}");
    assert!(out.contains("--tls-key"), "{out}");

    // The password of a database URL never reaches the logs.
    let (code, out) = run_to_exit(
        &[
            "--listen",
            &listen,
            "--database-timeout-secs",
            "1",
            "--database-url",
            "postgres://tero:hunter2@127.0.0.1:1/tero",
        ],
        dir.path(),
    );
    assert_ne!(code, 0);
    assert!(
        !out.contains("hunter2") && out.contains("tero:***@"),
        "{out}"
    );
}

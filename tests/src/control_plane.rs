//! A running `tero-control-plane` for end-to-end tests, and throwaway
//! PostgreSQL databases for the multi-replica variants.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::{Process, binary, free_port, wait_for};

/// A control plane on a run-time port with its own data directory.
pub struct ControlPlane {
    pub process: Process,
    pub port: u16,
    pub admin_token: String,
    pub dir: Arc<tempfile::TempDir>,
    pub name: String,
}

impl ControlPlane {
    /// Starts on SQLite in `dir/name` and waits until `/readyz` answers.
    pub fn start(dir: Arc<tempfile::TempDir>, name: &str) -> ControlPlane {
        Self::start_with(dir, name, None, &[])
    }

    /// Starts with an optional database URL and extra flags.
    pub fn start_with(
        dir: Arc<tempfile::TempDir>,
        name: &str,
        database_url: Option<&str>,
        extra_args: &[&str],
    ) -> ControlPlane {
        Self::start_on(free_port(), dir, name, database_url, extra_args)
    }

    /// Starts on SQLite with extra flags and environment variables. The
    /// `OTEL_*` variables this test process inherited are not passed on, so
    /// only `env` decides whether and where spans are exported.
    pub fn start_with_env(
        dir: Arc<tempfile::TempDir>,
        name: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> ControlPlane {
        Self::spawn(free_port(), dir, name, None, extra_args, Some(env))
    }

    /// Starts on a given port (to restart a replica where its edges look).
    pub fn start_on(
        port: u16,
        dir: Arc<tempfile::TempDir>,
        name: &str,
        database_url: Option<&str>,
        extra_args: &[&str],
    ) -> ControlPlane {
        Self::spawn(port, dir, name, database_url, extra_args, None)
    }

    fn spawn(
        port: u16,
        dir: Arc<tempfile::TempDir>,
        name: &str,
        database_url: Option<&str>,
        extra_args: &[&str],
        env: Option<&[(&str, &str)]>,
    ) -> ControlPlane {
        let data_dir = dir.path().join(name);
        let admin_token = format!("test-admin-{name}");
        let mut cmd = Command::new(binary("tero-control-plane"));
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--replica-id")
            .arg(name)
            .args(extra_args)
            .env("TERO_ADMIN_TOKEN", &admin_token)
            .env(
                "RUST_LOG",
                "info,tero_control_plane=debug,tero_classify=debug",
            );
        if let Some(url) = database_url {
            cmd.arg("--database-url").arg(url);
        }
        if let Some(env) = env {
            crate::set_env(&mut cmd, env);
        }
        let process = Process::spawn(name, &mut cmd, dir.path());
        let cp = ControlPlane {
            process,
            port,
            admin_token,
            dir,
            name: name.to_owned(),
        };
        wait_for(Duration::from_secs(30), "control plane ready", || {
            crate::http_get(&cp.url("/readyz"), &[])
                .ok()
                .filter(|r| r.status == 200)
        });
        cp
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The gRPC endpoint for tonic clients.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.admin_token)
    }

    /// An admin JSON call: `(status, body)`; the body is `null` when empty.
    pub fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let bearer = self.bearer();
        request_json(method, &self.url(path), &[("authorization", &bearer)], body)
    }

    /// Creates an edge API key and returns its secret.
    pub fn create_key(&self, name: &str) -> String {
        let (status, body) = self.api(
            "POST",
            "/api/v1/keys",
            Some(&serde_json::json!({ "name": name })),
        );
        assert_eq!(status, 200, "create key: {body}");
        body["secret"].as_str().expect("secret").to_owned()
    }

    /// An Edge's `grpc` policy provider on this control plane with edge key
    /// `key`, syncing and reporting every second, as most tests want.
    pub fn grpc_provider(&self, key: &str) -> serde_json::Value {
        serde_json::json!({
            "id": "cp",
            "type": "grpc",
            "url": self.endpoint(),
            "headers": [{"name": "Authorization", "value": format!("Bearer {key}")}],
            "poll_interval_secs": 1,
            "stats_interval_secs": 1,
        })
    }
}

/// The value of label `key` of a policy (proto3 JSON `labels`).
pub fn policy_label<'a>(policy: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    policy["labels"]
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)?["value"]["stringValue"]
        .as_str()
}

/// Any HTTP call with a JSON body; returns `(status, parsed body)`.
pub fn request_json(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let bytes = body.map(|b| serde_json::to_vec(b).expect("json"));
    let resp = request_bytes(method, url, headers, bytes.as_deref()).expect("request");
    let parsed = if resp.body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&resp.body)
            .unwrap_or_else(|_| serde_json::Value::String(resp.text()))
    };
    (resp.status, parsed)
}

/// Any HTTP call with raw bytes.
pub fn request_bytes(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<crate::HttpResponse, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let method = http::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let mut builder = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    if body.is_some()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        builder = builder.header("content-type", "application/json");
    }
    let request = builder
        .body(body.map(<[u8]>::to_vec).unwrap_or_default())
        .map_err(|e| e.to_string())?;
    let resp = agent.run(request).map_err(|e| e.to_string())?;
    crate::read_response(resp)
}

/// A fresh PostgreSQL database, dropped with this value.
pub struct PgDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

/// The server tests use: `TERO_TEST_POSTGRES_URL`, default the local one.
fn postgres_admin_url() -> String {
    std::env::var("TERO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

impl PgDatabase {
    /// Creates a database, or returns `None` when no server answers and
    /// `TERO_REQUIRE_POSTGRES` is unset (CI sets it, so there the
    /// PostgreSQL variants always run).
    pub fn create(prefix: &str) -> Option<PgDatabase> {
        use sqlx::Connection;
        let admin_url = postgres_admin_url();
        let name = format!("{prefix}_{}_{}", std::process::id(), free_port());
        let created = block_on(async {
            let mut conn = sqlx::PgConnection::connect(&admin_url).await?;
            sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut conn)
                .await?;
            conn.close().await
        });
        match created {
            Ok(()) => {}
            Err(e) if std::env::var_os("TERO_REQUIRE_POSTGRES").is_none() => {
                eprintln!(
                    "SKIPPED: PostgreSQL at {admin_url} unavailable ({e}); set TERO_REQUIRE_POSTGRES=1 to fail instead"
                );
                return None;
            }
            Err(e) => panic!("PostgreSQL at {admin_url} unavailable: {e}"),
        }
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&admin_url);
        Some(PgDatabase {
            url: format!("{base}/{name}"),
            admin_url,
            name,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        use sqlx::Connection;
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Best effort, on a thread of its own: drop may run inside a runtime.
        let _ = std::thread::spawn(move || {
            block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                    let _ = conn.close().await;
                }
            })
        })
        .join();
    }
}

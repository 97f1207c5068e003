//! Helpers for end-to-end tests: start the real binaries and their
//! neighbours on loopback ports chosen at run time, and clean up on drop.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod ack_cutter;
pub mod cli;
pub mod control_plane;
pub mod cutting_proxy;
pub mod fake_openai;
pub mod fixtures;
pub mod otel;
pub mod prometheus;
pub mod push_sink;
pub mod sync_server;
pub mod upstream;

/// A free loopback port (bound and released), never one this process
/// handed out before: tests restart servers on the port they were given
/// (a crashed replica comes back where its edges look), and another test
/// running meanwhile must not be given that port while it is briefly free.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind an ephemeral port");
        let mut handed_out = HANDED_OUT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// A workspace binary built by `cargo test --workspace`.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo test --workspace` (or `cargo build --bin {name}`) first",
        path.display()
    );
    path
}

/// A child process killed (and reaped) on drop; its stderr goes to a file
/// printed when a test fails.
pub struct Process {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    pub fn spawn(name: &str, command: &mut Command, log_dir: &Path) -> Process {
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("create log file");
        let err = file.try_clone().expect("clone log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process {
            name: name.to_owned(),
            child,
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- {} log -----\n{}", self.name, self.log());
        }
    }
}

/// Sets `env` on `cmd` after removing the `OTEL_*` variables inherited
/// from the test process (a developer's collector settings must not leak
/// into a test, nor override what it asks for).
pub fn set_env(cmd: &mut Command, env: &[(&str, &str)]) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(key);
        }
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A response as the tests see it.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A plain HTTP GET (ureq here decodes no content encoding, so the body
/// is what was on the wire).
pub fn http_get(url: &str, headers: &[(&str, &str)]) -> Result<HttpResponse, String> {
    http_request("GET", url, headers)
}

/// A bodyless request (`GET` or `HEAD`); the body is what was on the wire.
/// A body that ends early (connection reset, missing final chunk) is an
/// error.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<HttpResponse, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut req = match method {
        "GET" => agent.get(url),
        "HEAD" => agent.head(url),
        other => panic!("http_request: unsupported method {other}"),
    };
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.call().map_err(|e| e.to_string())?;
    read_response(resp)
}

/// A request with a body (`POST`, `PUT`, …); the response body is what
/// was on the wire.
pub fn http_send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let request = http::Request::builder().method(method).uri(url);
    let request = headers
        .iter()
        .fold(request, |r, (k, v)| r.header(*k, *v))
        .body(body.to_vec())
        .map_err(|e| e.to_string())?;
    let resp = agent.run(request).map_err(|e| e.to_string())?;
    read_response(resp)
}

/// `POST` with `body`.
pub fn http_post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<HttpResponse, String> {
    http_send("POST", url, headers, body)
}

/// Status, headers and the whole body (up to 1 GiB) of a ureq response.
pub fn read_response(mut resp: http::Response<ureq::Body>) -> Result<HttpResponse, String> {
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// The value of one series (`name` or `name{labels}`, exactly as rendered)
/// in a Prometheus text exposition.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.starts_with(' ').then(|| rest.trim().parse().ok())?
    })
}

/// A running `tero-edge` with its config in a temporary directory.
pub struct Edge {
    pub process: Process,
    pub port: u16,
    pub dir: Arc<tempfile::TempDir>,
}

impl Edge {
    /// Starts `tero-edge` with `config` (the listen port is filled in) and
    /// waits until `/_ready` answers 200.
    pub fn start(config: serde_json::Value, dir: Arc<tempfile::TempDir>, name: &str) -> Edge {
        Self::spawn(config, dir, name, None)
    }

    /// As [`Edge::start`], with environment variables (`TERO_LOG_FORMAT`,
    /// `OTEL_*`, …). The `OTEL_*` variables this test process inherited are
    /// not passed on, so only `env` decides whether spans are exported.
    pub fn start_with_env(
        config: serde_json::Value,
        dir: Arc<tempfile::TempDir>,
        name: &str,
        env: &[(&str, &str)],
    ) -> Edge {
        Self::spawn(config, dir, name, Some(env))
    }

    fn spawn(
        mut config: serde_json::Value,
        dir: Arc<tempfile::TempDir>,
        name: &str,
        env: Option<&[(&str, &str)]>,
    ) -> Edge {
        let port = free_port();
        if config.get("listen_address").is_none() {
            config["listen_address"] = "127.0.0.1".into();
        }
        config["listen_port"] = port.into();
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let mut cmd = Command::new(binary("tero-edge"));
        cmd.arg(&path).env("RUST_LOG", "info");
        if let Some(env) = env {
            set_env(&mut cmd, env);
        }
        let process = Process::spawn(name, &mut cmd, dir.path());
        let edge = Edge { process, port, dir };
        wait_for(Duration::from_secs(20), "tero-edge /_ready", || {
            http_get(&edge.url("/_ready"), &[])
                .ok()
                .filter(|r| r.status == 200)
        });
        edge
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `/_edge/metrics` as text.
    pub fn self_metrics(&self) -> String {
        let r = http_get(&self.url("/_edge/metrics"), &[]).expect("GET /_edge/metrics");
        assert_eq!(r.status, 200, "/_edge/metrics: {}", r.text());
        r.text()
    }

    /// One self-metric series (`name{labels}` exactly as rendered).
    pub fn self_metric(&self, series: &str) -> f64 {
        let text = self.self_metrics();
        metric_value(&text, series)
            .unwrap_or_else(|| panic!("{series} missing in self-metrics:\n{text}"))
    }

    /// `/_edge/policies` as JSON.
    pub fn policies(&self) -> serde_json::Value {
        let r = http_get(&self.url("/_edge/policies"), &[]).expect("GET /_edge/policies");
        assert_eq!(r.status, 200, "/_edge/policies: {}", r.text());
        serde_json::from_slice(&r.body).expect("/_edge/policies is JSON")
    }
}

//! `tero quickstart`: the whole loop on one machine. A control plane on
//! SQLite, a sample application exposing realistic metrics (with the waste
//! Tero exists to find), a `tero-edge` in front of it on the push stream,
//! example policies applied, and the measured effect printed. Ctrl-C stops
//! everything: the edge and the control plane get SIGTERM and drain.
//!
//! The servers run as the real binaries, found next to `tero` (as a
//! release ships them, and as `cargo build --release` leaves them).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tero_sdk::client::{Client, ClientError, RetryPolicy};
use tero_sdk::policy::{Format, parse_policies};
use tero_sdk::proto::controlplane::{
    CreatePolicyRequest, GetPolicyStatsRequest, ListEdgesRequest, UpdatePolicyRequest,
};
use tokio::process::{Child, Command};

use crate::output::{self, Table};

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Where the control plane's database, the configs and the logs go.
    #[arg(long, default_value = "tero-quickstart")]
    pub dir: PathBuf,
    /// The control plane's port (gRPC and HTTP).
    #[arg(long, default_value_t = 7070)]
    pub control_plane_port: u16,
    /// The sample application's port.
    #[arg(long, default_value_t = 8080)]
    pub app_port: u16,
    /// The edge's port, where Prometheus would scrape.
    #[arg(long, default_value_t = 9090)]
    pub edge_port: u16,
    /// Set everything up, print the summary and stop (for scripts and tests).
    #[arg(long)]
    pub no_wait: bool,
}

const EXAMPLE_POLICIES: &str = r#"
policies:
  - id: quickstart-drop-debug
    name: Drop debug metric families
    description: Debug instrumentation left on in production.
    metric:
      match:
        - metric_field: name
          starts_with: debug_
      keep: false
  - id: quickstart-drop-per-user
    name: Drop the per-user request counter
    description: One series per user id; the per-route counter carries the signal.
    metric:
      match:
        - metric_field: name
          exact: app_user_requests_total
      keep: false
"#;

/// A realistic exposition: request counters and a latency histogram by
/// route, process metrics, a debug family and a per-user counter.
fn sample_metrics(tick: u64) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(64 * 1024);
    s.push_str("# HELP http_requests_total Requests served.\n# TYPE http_requests_total counter\n");
    for (route, weight) in [
        ("/", 50),
        ("/api/orders", 30),
        ("/api/cart", 15),
        ("/healthz", 120),
    ] {
        for (code, share) in [("200", 97), ("404", 2), ("500", 1)] {
            let n = (tick + 1) * weight * share;
            let _ = writeln!(
                s,
                "http_requests_total{{route=\"{route}\",method=\"GET\",code=\"{code}\"}} {n}"
            );
        }
    }
    s.push_str("# HELP http_request_duration_seconds Request latency.\n# TYPE http_request_duration_seconds histogram\n");
    for route in ["/", "/api/orders", "/api/cart"] {
        let mut cumulative = 0;
        for (le, n) in [
            ("0.005", 40),
            ("0.01", 80),
            ("0.05", 200),
            ("0.1", 60),
            ("0.5", 15),
            ("1", 4),
            ("+Inf", 1),
        ] {
            cumulative += n * (tick + 1);
            let _ = writeln!(
                s,
                "http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            s,
            "http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
            12.5 * (tick + 1) as f64
        );
        let _ = writeln!(
            s,
            "http_request_duration_seconds_count{{route=\"{route}\"}} {cumulative}"
        );
    }
    s.push_str("# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 52428800\n");
    s.push_str("# HELP debug_cache_lookups_total Cache lookups by key (debug).\n# TYPE debug_cache_lookups_total counter\n");
    for key in 0..40 {
        let _ = writeln!(
            s,
            "debug_cache_lookups_total{{cache=\"sessions\",key=\"k{key:03}\"}} {}",
            tick * 3 + key
        );
    }
    s.push_str("# HELP app_user_requests_total Requests per user.\n# TYPE app_user_requests_total counter\n");
    for user in 0..200u64 {
        let _ = writeln!(
            s,
            "app_user_requests_total{{user_id=\"{:08x}-{:04x}\"}} {}",
            user.wrapping_mul(2_654_435_761) & 0xffff_ffff,
            user,
            tick + user % 7
        );
    }
    s
}

async fn serve_sample_app(addr: SocketAddr) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("the sample application cannot listen on {addr} (--app-port)"))?;
    let tick = Arc::new(std::sync::atomic::AtomicU64::new(0));
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tick = tick.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req| {
                    let n = tick.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    async move {
                        let mut response =
                            http::Response::new(Full::new(Bytes::from(sample_metrics(n))));
                        response.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static(
                                "text/plain; version=0.0.4; charset=utf-8",
                            ),
                        );
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }))
}

/// `tero-control-plane` or `tero-edge`: next to this executable, else on
/// the PATH.
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "{name} not found next to tero or on the PATH: build the workspace first \
         (cargo build --release) and run target/release/tero quickstart"
    )
}

fn spawn(binary: &Path, args: &[&str], env: &[(&str, &str)], log: &Path) -> anyhow::Result<Child> {
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file))
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

async fn http_get(url: &str) -> anyhow::Result<(u16, Bytes)> {
    let fetched = crate::http_get::get(url, &[], Duration::from_secs(10)).await?;
    Ok((fetched.status, fetched.body))
}

async fn wait_ready(url: &str, what: &str, child: &mut Child, log: &Path) -> anyhow::Result<()> {
    for _ in 0..200 {
        if let Ok((200, _)) = http_get(url).await {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            bail!(
                "{what} exited ({status}) before it was ready; its log ({}):\n{tail}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what} was not ready within 20 s; see {}", log.display())
}

/// 24 random bytes from the OS, hex-encoded.
fn random_token() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for the admin token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

async fn terminate(child: &mut Child, what: &str) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .is_ok()
        {
            println!("{what} stopped");
            return;
        }
    }
    let _ = child.kill().await;
}

async fn apply_examples(client: &Client) -> anyhow::Result<Vec<String>> {
    let loaded = parse_policies(EXAMPLE_POLICIES, Format::Yaml)?;
    let mut ids = Vec::new();
    for policy in loaded.policies {
        ids.push(policy.id.clone());
        let created = client
            .create_policy(CreatePolicyRequest {
                policy: Some(policy.clone()),
                scope: None,
                reason: "tero quickstart".into(),
            })
            .await;
        match created {
            Ok(_) => {}
            Err(ClientError::AlreadyExists { .. }) => {
                let current = client.get_policy(&policy.id).await?;
                client
                    .update_policy(UpdatePolicyRequest {
                        policy: Some(policy),
                        scope: current.scope,
                        expected_revision: current.revision,
                        reason: "tero quickstart".into(),
                    })
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ids)
}

fn series(body: &[u8]) -> usize {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
        .count()
}

pub async fn run(args: QuickstartArgs) -> anyhow::Result<()> {
    let control_plane_bin = sibling("tero-control-plane")?;
    let edge_bin = sibling("tero-edge")?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let cp_addr = format!("127.0.0.1:{}", args.control_plane_port);
    let endpoint = format!("http://{cp_addr}");

    let token_file = dir.join("admin-token");
    let token = match std::fs::read_to_string(&token_file) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
        _ => {
            let t = random_token()?;
            std::fs::write(&token_file, &t)?;
            t
        }
    };

    println!(
        "starting the control plane on {endpoint} (SQLite in {})",
        dir.join("data").display()
    );
    let cp_log = dir.join("control-plane.log");
    let data_dir = dir.join("data");
    let mut control_plane = spawn(
        &control_plane_bin,
        &[
            "--listen",
            &cp_addr,
            "--data-dir",
            &data_dir.to_string_lossy(),
            "--sync-interval-secs",
            "5",
        ],
        &[("TERO_ADMIN_TOKEN", &token)],
        &cp_log,
    )?;
    wait_ready(
        &format!("{endpoint}/readyz"),
        "the control plane",
        &mut control_plane,
        &cp_log,
    )
    .await?;

    let app_addr: SocketAddr = ([127, 0, 0, 1], args.app_port).into();
    let app = serve_sample_app(app_addr).await?;
    println!("sample application on http://{app_addr}/metrics");

    let client = Client::connect(&endpoint)?
        .with_token(token.clone())
        .with_retry(RetryPolicy::default());
    let key = client.create_api_key("quickstart-edge").await?;
    let edge_config = serde_json::json!({
        "listen_address": "127.0.0.1",
        "listen_port": args.edge_port,
        "upstream_url": format!("http://{app_addr}"),
        "service": {"name": "quickstart-app", "instance_id": "quickstart-edge-1"},
        "policy_providers": [{
            "id": "control-plane",
            "type": "grpc",
            "url": endpoint,
            "headers": [{"name": "Authorization", "value": "Bearer ${TERO_EDGE_KEY}"}],
            "stats_interval_secs": 2,
            "state_dir": dir.join("edge-state"),
        }],
    });
    let edge_config_path = dir.join("edge-config.json");
    std::fs::write(&edge_config_path, serde_json::to_vec_pretty(&edge_config)?)?;
    let edge_log = dir.join("edge.log");
    let mut edge = spawn(
        &edge_bin,
        &[&edge_config_path.to_string_lossy()],
        &[("TERO_EDGE_KEY", &key.secret)],
        &edge_log,
    )?;
    let edge_url = format!("http://127.0.0.1:{}", args.edge_port);
    wait_ready(
        &format!("{edge_url}/_ready"),
        "tero-edge",
        &mut edge,
        &edge_log,
    )
    .await?;
    println!("tero-edge on {edge_url}/metrics, subscribed to the control plane");

    let ids = apply_examples(&client).await?;
    println!("applied example policies: {}", ids.join(", "));
    // Until the edge runs the set the control plane wants it to run.
    let mut converged = false;
    for _ in 0..100 {
        let edges = client.list_all_edges(ListEdgesRequest::default()).await?;
        if edges.iter().any(|e| {
            e.instance_id == "quickstart-edge-1"
                && !e.desired_hash.is_empty()
                && e.applied_hash == e.desired_hash
        }) {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !converged {
        bail!(
            "the edge did not apply the policies within 10 s; see {}",
            edge_log.display()
        );
    }

    let (_, direct) = http_get(&format!("http://{app_addr}/metrics")).await?;
    let (_, filtered) = http_get(&format!("{edge_url}/metrics")).await?;
    let (before, after) = (direct.len(), filtered.len());
    println!(
        "\none scrape: {} series, {} bytes from the application; {} series, {} bytes through the edge ({:.0}% less)",
        series(&direct),
        before,
        series(&filtered),
        after,
        100.0 * (before.saturating_sub(after)) as f64 / before.max(1) as f64
    );
    // The edge reports every 2 s; show what the control plane measured.
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    };
    let mut measured = Vec::new();
    for _ in 0..50 {
        measured.clear();
        for id in &ids {
            let stats = client
                .policy_stats(GetPolicyStatsRequest {
                    id: id.clone(),
                    from_unix_ms: now_ms() - 3_600_000,
                    to_unix_ms: now_ms() + 60_000,
                })
                .await?;
            measured.push((id.clone(), stats.total.unwrap_or_default()));
        }
        if measured.iter().all(|(_, t)| t.series_dropped > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut table = Table::new(&["POLICY", "SERIES DROPPED", "BYTES DROPPED"]);
    for (id, total) in &measured {
        table.row(vec![
            id.clone(),
            total.series_dropped.to_string(),
            output::bytes(total.bytes_dropped),
        ]);
    }
    println!("\nmeasured by the control plane so far:");
    table.print();
    println!(
        "\nPrometheus scrapes:   {edge_url}/metrics\n\
         edge self-metrics:    {edge_url}/_edge/metrics\n\
         control plane API:    {endpoint}  (admin token in {})\n\
         try:\n  export TERO_ENDPOINT={endpoint} TERO_TOKEN=$(cat {})\n  tero policy list\n  tero edges list\n  tero stats quickstart-drop-per-user --since 1h\n\
         logs: {} and {}",
        token_file.display(),
        token_file.display(),
        cp_log.display(),
        edge_log.display(),
    );

    if !args.no_wait {
        println!("\nrunning; Ctrl-C stops everything");
        wait_for_signal().await;
        println!();
    }
    terminate(&mut edge, "tero-edge").await;
    terminate(&mut control_plane, "the control plane").await;
    app.abort();
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

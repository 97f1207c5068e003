//! `tero quickstart`: the whole loop on one machine. A control plane on
//! SQLite, the sample application (`tero sample-app`) with the waste Tero
//! exists to find, a `tero-edge` in front of it on the push stream with
//! short inventory intervals, the application's rules imported as a usage
//! source; then the issues found, one accepted in shadow and then made
//! active, and its measured impact against the estimate. Ctrl-C stops
//! everything: the edge and the control plane get SIGTERM and drain.
//!
//! The servers run as the real binaries, found next to `tero` (as a
//! release ships them, and as `cargo build --release` leaves them).

mod procs;
mod walk;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tero_sdk::client::{Client, RetryPolicy};
use tero_sdk::proto::controlplane::ListEdgesRequest;

pub use procs::wait_for_signal;
use procs::{check_free, http_get, random_token, sibling, spawn, terminate, wait_ready};

use crate::outln;

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
    /// Walk the loop, print the summary and stop everything (for scripts
    /// and tests); the database stays in --dir.
    #[arg(long)]
    pub no_wait: bool,
}

const SERVICE: &str = "quickstart-app";
const INSTANCE: &str = "quickstart-edge-1";

/// Sample lines (neither comments nor blank) of an exposition: one per
/// series, histogram buckets included.
fn sample_lines(body: &[u8]) -> usize {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
        .count()
}

/// Removes the previous run's database and edge state: every run walks
/// the loop from the start (an issue accepted last time would not be open
/// again). Only the files quickstart itself creates are removed.
fn fresh_start(dir: &Path) -> anyhow::Result<()> {
    for name in ["tero.db", "tero.db-wal", "tero.db-shm"] {
        let file = dir.join("data").join(name);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", file.display())),
        }
    }
    let state = dir.join("edge-state");
    if state.is_dir() {
        std::fs::remove_dir_all(&state)
            .with_context(|| format!("cannot remove {}", state.display()))?;
    }
    Ok(())
}

pub async fn run(args: QuickstartArgs) -> anyhow::Result<()> {
    let control_plane_bin = sibling("tero-control-plane")?;
    let edge_bin = sibling("tero-edge")?;
    let ports = [
        (args.control_plane_port, "--control-plane-port"),
        (args.app_port, "--app-port"),
        (args.edge_port, "--edge-port"),
    ];
    for (i, (port, flag)) in ports.iter().enumerate() {
        if let Some((_, other)) = ports[..i].iter().find(|(p, _)| p == port) {
            bail!("{flag} and {other} are both {port}: give each its own port");
        }
        check_free(*port, flag)?;
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = std::fs::canonicalize(&args.dir)?;
    fresh_start(&dir)?;
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

    let data_dir = dir.join("data");
    outln!(
        "starting the control plane on {endpoint} (SQLite in {})",
        data_dir.display()
    );
    let cp_log = dir.join("control-plane.log");
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
    let app = super::sample_app::serve(app_addr)
        .await
        .context("--app-port")?;
    outln!("sample application on http://{app_addr}/metrics");

    let client = Client::connect(&endpoint)?
        .with_token(token.clone())
        .with_retry(RetryPolicy::default());
    // Before the edge starts, so its first inventory is read with them.
    walk::import_rules(&client).await?;
    let key = client.create_api_key("quickstart-edge").await?;
    let edge_config = serde_json::json!({
        "listen_address": "127.0.0.1",
        "listen_port": args.edge_port,
        "upstream_url": format!("http://{app_addr}"),
        "service": {"name": SERVICE, "instance_id": INSTANCE},
        "policy_providers": [{
            "id": "control-plane",
            "type": "grpc",
            "url": endpoint,
            "headers": [{"name": "Authorization", "value": "Bearer ${TERO_EDGE_KEY}"}],
            "stats_interval_secs": 1,
            "state_dir": dir.join("edge-state"),
        }],
        // Seconds instead of the production minutes, so that issues show
        // while you watch.
        "inventory": {"interval_secs": 2, "sample_every_secs": 1},
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
    outln!("tero-edge on {edge_url}/metrics, subscribed to the control plane, inventory every 2 s");

    // Prometheus' part: scrape through the edge twice a second.
    let scrape_url = format!("{edge_url}/metrics");
    let scraper = tokio::spawn(async move {
        loop {
            let _ = http_get(&scrape_url).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });

    let walked = walk_the_loop(&client).await;
    let (issue_id, policy_id) = match walked {
        Ok(ids) => ids,
        Err(e) => {
            scraper.abort();
            return Err(e.context(format!(
                "see the logs: {} and {}",
                cp_log.display(),
                edge_log.display()
            )));
        }
    };
    wait_converged(&client, &edge_log).await?;

    let (_, direct) = http_get(&format!("http://{app_addr}/metrics")).await?;
    let (_, filtered) = http_get(&format!("{edge_url}/metrics")).await?;
    let (before, after) = (direct.len(), filtered.len());
    outln!(
        "\none scrape: {} sample lines, {} bytes from the application; {} sample lines, \
         {} bytes through the edge ({:.0}% less)",
        sample_lines(&direct),
        before,
        sample_lines(&filtered),
        after,
        100.0 * (before.saturating_sub(after)) as f64 / before.max(1) as f64
    );
    let tero = this_tero();
    let try_commands = format!(
        "  export TERO_ENDPOINT={endpoint} TERO_TOKEN=$(cat {token})\n\
         \x20 {tero} issues list\n\
         \x20 {tero} issues show {issue_id}\n\
         \x20 {tero} impact\n\
         \x20 {tero} usage list\n\
         \x20 {tero} stats {policy_id} --since 1h\n\
         \x20 {tero} edges get {INSTANCE}",
        token = token_file.display(),
    );
    outln!("\nlogs: {} and {}", cp_log.display(), edge_log.display());

    if !args.no_wait {
        outln!(
            "\nPrometheus would scrape {edge_url}/metrics (quickstart scrapes it twice a \
             second meanwhile); edge self-metrics: {edge_url}/_edge/metrics\n\
             try, in another shell:\n{try_commands}\n\nrunning; Ctrl-C stops everything"
        );
        wait_for_signal().await;
        outln!();
    }
    scraper.abort();
    terminate(&mut edge, "tero-edge").await;
    terminate(&mut control_plane, "the control plane").await;
    app.abort();
    if args.no_wait {
        outln!(
            "\neverything stopped (--no-wait); the database stays in {data}. To look at it \
             again, start the control plane on it:\n\
             \x20 TERO_ADMIN_TOKEN=$(cat {token}) {cp} --listen {cp_addr} --data-dir {data} &\n\
             then:\n{try_commands}",
            data = data_dir.display(),
            token = token_file.display(),
            cp = control_plane_bin.display(),
        );
    }
    Ok(())
}

/// How to run this `tero` from a shell: `tero` when that is what the PATH
/// finds, else its full path (`target/release/tero` is rarely on it).
fn this_tero() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "tero".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::canonicalize(dir.join("tero")).ok() == std::fs::canonicalize(&exe).ok()
        })
    });
    if on_path {
        "tero".into()
    } else {
        exe.display().to_string()
    }
}

/// Issues, one accepted in shadow, then active; returns the issue's id and
/// its policy's.
async fn walk_the_loop(client: &Client) -> anyhow::Result<(String, String)> {
    let issues = walk::issues(client, SERVICE).await?;
    let issue = walk::pick(&issues)
        .context("none of the issues found has a policy to recommend")?
        .clone();
    let policy_id = walk::accept_in_shadow(client, &issue).await?;
    let shadow = walk::impact(client, &policy_id, None).await?;
    walk::activate(client, &issue.id).await?;
    let impact = walk::impact(client, &policy_id, Some(&shadow.mode)).await?;
    outln!(
        "\nverdict: {} ({:.0}% of the estimate measured)",
        impact.verdict,
        impact.ratio * 100.0
    );
    Ok((issue.id, policy_id))
}

/// Until the edge runs the set the control plane wants it to run.
async fn wait_converged(client: &Client, edge_log: &Path) -> anyhow::Result<()> {
    for _ in 0..100 {
        let edges = client.list_all_edges(ListEdgesRequest::default()).await?;
        if edges.iter().any(|e| {
            e.instance_id == INSTANCE
                && !e.desired_hash.is_empty()
                && e.applied_hash == e.desired_hash
        }) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "the edge did not apply the policies within 10 s; see {}",
        edge_log.display()
    )
}

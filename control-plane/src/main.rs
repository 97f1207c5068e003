//! `tero-control-plane`: runs with no flags (SQLite under ./tero-data,
//! listening on 0.0.0.0:7070); every flag has a `TERO_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tero_classify::{ClassifierSettings, ProviderKind, ProviderSettings};
use tero_control_plane::api::AppState;
use tero_control_plane::auth::{AdminTokenSource, Authenticator, bootstrap_admin_token};
use tero_control_plane::classify::Classifications;
use tero_control_plane::feed::Feed;
use tero_control_plane::ingest::{Ingest, prune_loop};
use tero_control_plane::issues::{Analyst, IssueConfig};
use tero_control_plane::metrics::Metrics;
use tero_control_plane::runtime::Runtime;
use tero_control_plane::server;
use tero_control_plane::store::{Backend, Store, redact_url};
use tero_observability::logging::{LogFormat, Service, Telemetry};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Parser)]
#[command(
    name = "tero-control-plane",
    version,
    about = "Tero control plane: policies, admin API, Sync and push streams for Edge fleets"
)]
struct Args {
    /// Address for gRPC and HTTP (one port).
    #[arg(long, env = "TERO_LISTEN", default_value = "0.0.0.0:7070")]
    listen: SocketAddr,
    /// Directory for the SQLite database and the generated admin token.
    #[arg(long, env = "TERO_DATA_DIR", default_value = "./tero-data")]
    data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://USER@HOST/DB` (default: SQLite in the data directory).
    #[arg(long, env = "TERO_DATABASE_URL")]
    database_url: Option<String>,
    /// Seconds to wait for the database, at start-up and for a connection.
    #[arg(long, env = "TERO_DATABASE_TIMEOUT_SECS", default_value_t = 30)]
    database_timeout_secs: u64,
    /// PEM certificate chain; with --tls-key, serves TLS.
    #[arg(long, env = "TERO_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, env = "TERO_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Poll interval recommended to syncing edges, in seconds.
    #[arg(long, env = "TERO_SYNC_INTERVAL_SECS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3600))]
    sync_interval_secs: u32,
    /// Heartbeat interval on push streams, in seconds.
    #[arg(long, env = "TERO_HEARTBEAT_SECS", default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=600))]
    heartbeat_secs: u32,
    /// Days of per-minute policy statistics to keep.
    #[arg(long, env = "TERO_STATS_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    stats_retention_days: u32,
    /// Push streams this replica holds at most.
    #[arg(long, env = "TERO_MAX_STREAMS", default_value_t = 50_000)]
    max_streams: usize,
    /// Connections this replica holds at most (keep it above --max-streams:
    /// each streaming edge holds one); beyond, new ones are closed at once.
    #[arg(long, env = "TERO_MAX_CONNECTIONS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Seconds a connection has for its TLS handshake and its first
    /// request's headers (and an HTTP/1.1 one for each request's headers).
    #[arg(long, env = "TERO_HEADER_READ_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_read_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in flight (an
    /// open push stream is a request in flight).
    #[arg(long, env = "TERO_IDLE_TIMEOUT_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    idle_timeout_secs: u64,
    /// Name of this replica in the runtime view (default: host name and port).
    #[arg(long, env = "TERO_REPLICA_ID")]
    replica_id: Option<String>,
    /// Seconds to let connections finish on SIGTERM.
    #[arg(long, env = "TERO_DRAIN_TIMEOUT_SECS", default_value_t = 10)]
    drain_timeout: u64,
    /// Log format: text or json.
    #[arg(long, env = "TERO_LOG_FORMAT", default_value = "text", value_parser = clap::value_parser!(LogFormat))]
    log_format: LogFormat,
    /// Cost basis of impact estimates: USD per GB of metric samples ingested.
    #[arg(long, env = "TERO_PRICE_PER_GB", default_value_t = 0.50)]
    price_per_gb: f64,
    /// Cost basis of log and trace estimates: USD per GB of log records and
    /// spans ingested.
    #[arg(long, env = "TERO_PRICE_PER_GB_LOGS", default_value_t = 0.50)]
    price_per_gb_logs: f64,
    /// Cost basis of impact estimates: USD per active series per month.
    #[arg(long, env = "TERO_PRICE_PER_SERIES_MONTH", default_value_t = 0.01)]
    price_per_series_month: f64,
    /// Distinct values from which an unused label is high-cardinality.
    #[arg(long, env = "TERO_HIGH_CARDINALITY", default_value_t = 1000)]
    high_cardinality: u64,
    /// Histogram buckets beyond which a histogram is excessive.
    #[arg(long, env = "TERO_MAX_HISTOGRAM_BUCKETS", default_value_t = 30)]
    max_histogram_buckets: u32,
    /// Classification confidence (0 to 1) from which a log template or span
    /// pattern classified as waste raises an issue.
    #[arg(long, env = "TERO_ISSUE_MIN_CONFIDENCE", default_value_t = 0.7)]
    issue_min_confidence: f64,
    /// Share of the estimate a policy's measured reduction must reach for
    /// its issue's resolution to be verified.
    #[arg(long, env = "TERO_VERIFY_RATIO", default_value_t = 0.8)]
    verify_ratio: f64,
    /// Classifier of event types: embedded (rules, no network), openai or
    /// anthropic.
    #[arg(long, env = "TERO_CLASSIFIER", default_value = "embedded")]
    classifier: ProviderKind,
    /// Model for --classifier (default gpt-4o-mini / claude-3-5-haiku-latest).
    #[arg(long, env = "TERO_CLASSIFIER_MODEL", default_value = "")]
    classifier_model: String,
    /// API key for --classifier (default: OPENAI_API_KEY / ANTHROPIC_API_KEY).
    #[arg(
        long,
        env = "TERO_CLASSIFIER_API_KEY",
        default_value = "",
        hide_env_values = true
    )]
    classifier_api_key: String,
    /// Base URL for --classifier: another OpenAI-compatible server, a proxy;
    /// with or without the trailing /v1 (http://host:11434/v1 works).
    #[arg(long, env = "TERO_CLASSIFIER_BASE_URL", default_value = "")]
    classifier_base_url: String,
    /// Classifier taking over when --classifier is unavailable or rejects
    /// its key (never on rate limits): none, embedded, openai or anthropic.
    #[arg(long, env = "TERO_CLASSIFIER_FALLBACK", default_value = "none")]
    classifier_fallback: String,
    #[arg(long, env = "TERO_CLASSIFIER_FALLBACK_MODEL", default_value = "")]
    classifier_fallback_model: String,
    #[arg(
        long,
        env = "TERO_CLASSIFIER_FALLBACK_API_KEY",
        default_value = "",
        hide_env_values = true
    )]
    classifier_fallback_api_key: String,
    #[arg(long, env = "TERO_CLASSIFIER_FALLBACK_BASE_URL", default_value = "")]
    classifier_fallback_base_url: String,
    /// Seconds per classifier request attempt.
    #[arg(long, env = "TERO_CLASSIFIER_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600))]
    classifier_timeout_secs: u64,
    /// Tokens one classification run may spend (input plus output, all
    /// classifiers); 0 for no limit.
    #[arg(long, env = "TERO_CLASSIFY_BUDGET_TOKENS", default_value_t = 1_000_000)]
    classify_budget_tokens: u64,
    /// Seconds between scheduled classification runs (only new or changed
    /// event types cost anything); 0 runs only on request.
    #[arg(long, env = "TERO_CLASSIFY_INTERVAL_SECS", default_value_t = 300)]
    classify_interval_secs: u64,
}

impl Args {
    fn issue_config(&self) -> anyhow::Result<IssueConfig> {
        let mut config = IssueConfig::default();
        for (name, value) in [
            ("--price-per-gb", self.price_per_gb),
            ("--price-per-gb-logs", self.price_per_gb_logs),
            ("--price-per-series-month", self.price_per_series_month),
            ("--verify-ratio", self.verify_ratio),
        ] {
            if !value.is_finite() || value < 0.0 {
                anyhow::bail!("{name} must be a number of zero or more, not {value}");
            }
        }
        if self.verify_ratio > 1.0 {
            anyhow::bail!(
                "--verify-ratio is a share of the estimate: at most 1.0, not {}",
                self.verify_ratio
            );
        }
        if !(0.0..=1.0).contains(&self.issue_min_confidence) {
            anyhow::bail!(
                "--issue-min-confidence is a classifier confidence: from 0 to 1, not {}",
                self.issue_min_confidence
            );
        }
        config.prices.per_gb = self.price_per_gb;
        config.prices.per_gb_logs = self.price_per_gb_logs;
        config.events.min_confidence = self.issue_min_confidence;
        config.prices.per_series_month = self.price_per_series_month;
        config.thresholds.high_cardinality = self.high_cardinality;
        config.thresholds.max_buckets = self.max_histogram_buckets;
        config.verify_ratio = self.verify_ratio;
        Ok(config)
    }
}

impl Args {
    fn classifier_settings(&self) -> anyhow::Result<ClassifierSettings> {
        let timeout = Duration::from_secs(self.classifier_timeout_secs);
        let primary = ProviderSettings {
            kind: self.classifier,
            model: self.classifier_model.clone(),
            api_key: self.classifier_api_key.clone(),
            base_url: self.classifier_base_url.clone(),
            timeout,
        };
        let fallback = match self.classifier_fallback.trim() {
            "" | "none" => None,
            name => Some(ProviderSettings {
                kind: name
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("--classifier-fallback: {e}, or none"))?,
                model: self.classifier_fallback_model.clone(),
                api_key: self.classifier_fallback_api_key.clone(),
                base_url: self.classifier_fallback_base_url.clone(),
                timeout,
            }),
        };
        Ok(ClassifierSettings {
            primary,
            fallback,
            budget_tokens: self.classify_budget_tokens,
        })
    }
}

fn default_replica(listen: SocketAddr) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", listen.port())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tero_observability::process::mark_start();
    let args = Args::parse();
    let telemetry = Telemetry::init(Service {
        name: "tero-control-plane",
        version: env!("CARGO_PKG_VERSION"),
        default_filter: "info".into(),
        format: args.log_format,
    })?;
    let result = run(args).await;
    if let Err(e) = &result {
        tracing::error!("{e:#}");
    }
    telemetry.shutdown().await;
    result
}

async fn run(args: Args) -> anyhow::Result<()> {
    let database_url = args.database_url.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rwc",
            args.data_dir.join("tero.db").display()
        )
    });
    let backend = Backend::of_url(&database_url)?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let store = Store::open_with_timeout(
        &database_url,
        Duration::from_secs(args.database_timeout_secs),
    )
    .await
    .with_context(|| format!("cannot open the database {}", redact_url(&database_url)))?;
    tracing::info!(database = %redact_url(&database_url), "database ready");

    let (admin_token, source) =
        bootstrap_admin_token(std::env::var("TERO_ADMIN_TOKEN").ok(), &args.data_dir)
            .with_context(|| {
                format!(
                    "cannot set up the admin token in {}",
                    args.data_dir.display()
                )
            })?;
    match &source {
        AdminTokenSource::Environment => tracing::info!("admin token taken from TERO_ADMIN_TOKEN"),
        AdminTokenSource::File(path) => {
            tracing::info!(path = %path.display(), "admin token read from file")
        }
        AdminTokenSource::Generated(path) => {
            tracing::info!(path = %path.display(), "admin token generated; read it from this file (mode 0600)")
        }
    }

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let replica = args
        .replica_id
        .clone()
        .unwrap_or_else(|| default_replica(args.listen));
    store.disconnect_replica_edges(&replica).await?;

    let auth = Arc::new(Authenticator::new(&admin_token, store.clone()));
    let feed = Feed::start(store.clone(), args.sync_interval_secs).await?;
    let runtime = Runtime::new(
        replica.clone(),
        store.clone(),
        args.sync_interval_secs,
        args.heartbeat_secs,
    );
    let stats_shutdown = CancellationToken::new();
    let stats_store = store
        .for_ingest(
            &database_url,
            Duration::from_secs(args.database_timeout_secs),
        )
        .await
        .context("cannot connect the statistics writer to the database")?;
    let (ingest, ingest_task) = Ingest::start(stats_store.clone(), stats_shutdown.clone());

    tasks.spawn(Arc::clone(&feed).run(shutdown.clone()));
    let registry = tasks.spawn(Arc::clone(&runtime).run(shutdown.clone()));
    tasks.spawn(prune_loop(
        stats_store.clone(),
        args.stats_retention_days,
        shutdown.clone(),
    ));
    {
        let auth = Arc::clone(&auth);
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if let Err(e) = auth.flush_last_used().await {
                    tracing::warn!(error = %e, "recording API key use failed");
                }
            }
            let _ = auth.flush_last_used().await;
        });
    }
    if backend == Backend::Postgres {
        tasks.spawn(Arc::clone(&feed).follow_replicas(
            database_url.clone(),
            Arc::clone(&auth),
            shutdown.clone(),
        ));
    }

    let analyst = Analyst::new(store.clone(), args.issue_config()?);

    let chain = args.classifier_settings()?.chain()?;
    tracing::info!(
        primary = %chain.primary.id(),
        fallback = chain.fallback.as_ref().map(|f| f.id()).unwrap_or_default(),
        budget_tokens = args.classify_budget_tokens,
        "classification configured"
    );
    let interval =
        (args.classify_interval_secs > 0).then(|| Duration::from_secs(args.classify_interval_secs));
    let classifications = Classifications::new(store.clone(), chain, interval);
    tasks.spawn(Arc::clone(&classifications).run_loop(shutdown.clone()));
    // Before the analyst starts: it subscribes to classification runs.
    analyst.set_classifications(Arc::clone(&classifications));
    tasks.spawn(Arc::clone(&analyst).run(shutdown.clone()));

    let state = Arc::new(AppState {
        store: store.clone(),
        feed,
        auth,
        runtime,
        ingest,
        heartbeat: Duration::from_secs(u64::from(args.heartbeat_secs)),
        stream_slots: Arc::new(Semaphore::new(args.max_streams)),
        max_streams: args.max_streams,
        metrics: Metrics::default(),
        analyst,
        classifications,
        shutdown: shutdown.clone(),
    });
    let connections = Arc::clone(&state.metrics.connections);
    let limits = server::ConnectionLimits {
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        header_read_timeout: Duration::from_secs(args.header_read_timeout_secs),
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
    };
    if limits.max_connections <= args.max_streams {
        tracing::warn!(
            max_connections = limits.max_connections,
            max_streams = args.max_streams,
            "--max-connections is not above --max-streams: streams will be refused as connections, without a retry hint"
        );
    }
    let app = server::app(state).await?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(server::tls_acceptor(cert, key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        tls = tls.is_some(),
        replica,
        "tero-control-plane serving gRPC and HTTP"
    );

    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tero_observability::shutdown::signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
        });
    }
    server::serve(
        listener,
        tls,
        app,
        shutdown.clone(),
        Duration::from_secs(args.drain_timeout),
        limits,
        connections,
    )
    .await;
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    // Statistics last: requests that were draining may still have queued some.
    stats_shutdown.cancel();
    let _ = ingest_task.await;
    stats_store.close().await;
    store.close().await;
    tracing::info!("stopped");
    // The edge registry's last flush failed (already logged): the stored
    // runtime view misses this replica's last changes, which an exit status
    // tells a supervisor.
    if let Ok(Err(e)) = registry.await {
        return Err(e).context("the edge registry was not written at shutdown");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Args;

    fn config(args: &[&str]) -> anyhow::Result<tero_control_plane::issues::IssueConfig> {
        let args =
            Args::try_parse_from(std::iter::once("tero-control-plane").chain(args.iter().copied()))
                .expect("parses");
        args.issue_config()
    }

    #[test]
    fn log_issue_flags_reach_the_config_and_are_checked() {
        let defaults = config(&[]).expect("defaults are valid");
        assert!((defaults.events.min_confidence - 0.7).abs() < 1e-12);
        assert!((defaults.prices.per_gb_logs - 0.50).abs() < 1e-12);
        let set = config(&[
            "--issue-min-confidence",
            "0.9",
            "--price-per-gb-logs",
            "1.25",
        ])
        .expect("valid");
        assert!((set.events.min_confidence - 0.9).abs() < 1e-12);
        assert!((set.prices.per_gb_logs - 1.25).abs() < 1e-12);
        for bad in ["1.5", "-0.1", "NaN"] {
            let flag = format!("--issue-min-confidence={bad}");
            let err = config(&[&flag]).expect_err(bad).to_string();
            assert!(err.contains("--issue-min-confidence"), "{err}");
        }
        let err = config(&["--price-per-gb-logs=-1"])
            .expect_err("negative")
            .to_string();
        assert!(err.contains("--price-per-gb-logs"), "{err}");
        let help = Args::command().render_long_help().to_string();
        assert!(
            help.contains("--issue-min-confidence") && help.contains("--price-per-gb-logs"),
            "{help}"
        );
    }
}

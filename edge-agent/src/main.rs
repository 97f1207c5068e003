//! `tero-edge CONFIG`: start the sidecar.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tero_edge::config::{Config, Redacted, check_policy_files};
use tero_edge::filter::Resource;
use tero_edge::inventory;
use tero_edge::providers::{self, ClientIdentity};
use tero_edge::proxy::{self, EdgeState};
use tero_observability::logging::{LogFormat, Service, Telemetry};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Tero Edge: filters Prometheus scrapes and OTLP / Datadog pushes through
/// tero.policy.v1 policies.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The JSON config file.
    #[arg(default_value = "/etc/tero/config.json")]
    config: PathBuf,
    /// Validate the config and exit.
    #[arg(long)]
    check_config: bool,
    /// Log line format: text or json.
    #[arg(long, default_value = "text", env = "TERO_LOG_FORMAT", value_parser = clap::value_parser!(LogFormat))]
    log_format: LogFormat,
    /// How long in-flight scrapes may take to finish on shutdown.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    drain_timeout: f64,
}

fn main() -> ExitCode {
    tero_observability::process::mark_start();
    let args = Args::parse();
    // `inf` or `1e20` parse as f64 but are no Duration.
    let Ok(drain) = Duration::try_from_secs_f64(args.drain_timeout) else {
        eprintln!("tero-edge: --drain-timeout: must be a number of seconds from 0 to about 1e19");
        return ExitCode::FAILURE;
    };
    let (config, warnings) = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tero-edge: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.check_config {
        for w in &warnings {
            eprintln!("warning: {w}");
        }
        // What the config references is checked too: a config pointing at
        // a missing file or an invalid policy is not OK to deploy.
        let files = check_policy_files(&config);
        for w in &files.warnings {
            eprintln!("warning: {w}");
        }
        if !files.errors.is_empty() {
            for e in &files.errors {
                eprintln!("tero-edge: {e}");
            }
            eprintln!(
                "tero-edge: {}: {} problem(s) in referenced policy files",
                args.config.display(),
                files.errors.len()
            );
            return ExitCode::FAILURE;
        }
        println!(
            "{}: OK (listen {}, upstream {}, pushes to {}, {} policy provider(s), {} policies in files compiled)",
            args.config.display(),
            config.listen(),
            Redacted(&config.upstream),
            config.intake.destinations(),
            config.providers.len(),
            files.policies
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tero-edge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let telemetry = match Telemetry::init(Service {
            name: "tero-edge",
            version: env!("CARGO_PKG_VERSION"),
            default_filter: config.log_level.clone(),
            format: args.log_format,
        }) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("tero-edge: {e}");
                return ExitCode::FAILURE;
            }
        };
        for w in &warnings {
            tracing::warn!(config = %args.config.display(), "{w}");
        }
        let result = run(config, drain).await;
        telemetry.shutdown().await;
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                eprintln!("tero-edge: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn run(config: Config, drain: Duration) -> anyhow::Result<()> {
    let env = |k: &str| std::env::var(k).ok();
    let instance_id = config.instance_id(&env);
    let mut resource_attributes: Vec<(String, String)> = config
        .service
        .resource_attributes
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, value) in [
        ("service.instance.id", Some(instance_id.clone())),
        ("service.name", config.service.name.clone()),
        ("service.namespace", config.service.namespace.clone()),
        ("service.version", config.service.version.clone()),
    ] {
        resource_attributes.retain(|(k, _)| k != key);
        resource_attributes.push((key.to_owned(), value.unwrap_or_default()));
    }
    let identity = ClientIdentity {
        resource_attributes: resource_attributes.clone(),
        labels: config
            .service
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    let resource = Arc::new(Resource::new(
        resource_attributes
            .into_iter()
            .filter(|(_, v)| !v.is_empty()),
    ));
    let registry = Arc::new(providers::registry_for(&config));
    let listen = config.listen();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (listen_address/listen_port)"))?;
    let local = listener.local_addr()?;
    let config = Arc::new(config);
    tracing::info!(
        listen = %local,
        upstream = %Redacted(&config.upstream),
        pushes = %config.intake.destinations(),
        providers = config.providers.len(),
        instance = %instance_id,
        "tero-edge started"
    );

    let stop_providers = CancellationToken::new();
    let mut tasks = JoinSet::new();
    providers::spawn_all(
        &config,
        identity.clone(),
        registry.clone(),
        stop_providers.clone(),
        &mut tasks,
    );

    let stop_serving = CancellationToken::new();
    let signal = stop_serving.clone();
    tokio::spawn(async move {
        tero_observability::shutdown::signal().await;
        tracing::info!("shutdown requested; draining in-flight scrapes");
        signal.cancel();
    });
    let state = Arc::new(EdgeState::new(config.clone(), registry, resource));
    if let Some(inv) = &state.inventory {
        // Stopped with the providers, after the last scrape, so its final
        // report carries it.
        inventory::spawn(
            &config,
            inv.clone(),
            &identity,
            stop_providers.clone(),
            &mut tasks,
        );
    }
    proxy::serve(listener, state, stop_serving, drain).await?;

    // Providers stop after the last scrape so their final sync carries it.
    stop_providers.cancel();
    let flushed = tokio::time::timeout(drain.max(Duration::from_secs(1)), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if flushed.is_err() {
        tracing::warn!("providers did not stop within the drain timeout");
        tasks.abort_all();
    }
    tracing::info!("tero-edge stopped");
    Ok(())
}

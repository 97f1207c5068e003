//! `tero`: the command line for Tero's control plane, and local policy
//! checks that need no server (`policy validate`, `policy test`).
//!
//! Exit codes: 0 success, 1 failure, 2 usage error (clap's own).

mod commands;
mod http_get;
mod output;
mod policy_files;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use tero_sdk::client::Client;

use crate::output::Format;

/// Tero: manage telemetry policies, the edge fleet and its keys.
#[derive(Debug, Parser)]
#[command(name = "tero", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The control plane, http://host:port or https://host:port.
    #[arg(
        long,
        global = true,
        env = "TERO_ENDPOINT",
        default_value = "http://127.0.0.1:7070"
    )]
    pub endpoint: String,
    /// The admin token (the control plane writes one to <data-dir>/admin-token).
    #[arg(long, global = true, env = "TERO_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A PEM CA to trust for https endpoints, beyond the public roots.
    #[arg(long, global = true, env = "TERO_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Output: aligned tables for people, json or yaml for scripts.
    #[arg(short, long, global = true, value_enum, default_value = "table")]
    pub output: Format,
}

impl Global {
    pub fn client(&self) -> anyhow::Result<Client> {
        let mut client = Client::connect(&self.endpoint)?;
        if let Some(token) = &self.token {
            client = client.with_token(token.clone());
        }
        if let Some(ca) = &self.ca_file {
            client = client.with_ca_file(ca)?;
        }
        Ok(client)
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Policies: apply files, inspect, enable, disable, test locally.
    #[command(subcommand)]
    Policy(commands::policy::PolicyCommand),
    /// The runtime view of the edge fleet.
    #[command(subcommand)]
    Edges(commands::edges::EdgesCommand),
    /// Edge API keys.
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    /// Measured activity of a policy: hits, misses, series and bytes dropped.
    Stats(commands::stats::StatsArgs),
    /// Issues the detectors found: evidence, estimate, recommended policy.
    #[command(subcommand)]
    Issues(commands::issues::IssuesCommand),
    /// Usage sources: rule files, dashboards and Prometheus servers.
    #[command(subcommand)]
    Usage(commands::usage::UsageCommand),
    /// Measured impact of policies created from issues, next to their
    /// estimates.
    Impact {
        /// One policy; all policies created from issues when omitted.
        policy_id: Option<String>,
    },
    /// Prints a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Starts a control plane, a sample application and an edge in front of
    /// it, applies example policies and shows what they drop.
    Quickstart(commands::quickstart::QuickstartArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "tero", &mut script);
        output::write_stdout(format_args!("{}", String::from_utf8_lossy(&script)));
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tero: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let global = &cli.global;
        match cli.command {
            Command::Policy(cmd) => commands::policy::run(cmd, global).await,
            Command::Edges(cmd) => commands::edges::run(cmd, global).await,
            Command::Keys(cmd) => commands::keys::run(cmd, global).await,
            Command::Stats(args) => commands::stats::run(args, global).await,
            Command::Issues(cmd) => commands::issues::run(cmd, global).await,
            Command::Usage(cmd) => commands::usage::run(cmd, global).await,
            Command::Impact { policy_id } => commands::issues::impact(policy_id, global).await,
            Command::Quickstart(args) => commands::quickstart::run(args).await,
            Command::Completions { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tero: {e:#}");
            ExitCode::FAILURE
        }
    }
}

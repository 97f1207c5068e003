//! `tero`: the command line for Tero's control plane, and local policy
//! checks that need no server (`policy validate`, `policy test`).
//!
//! Exit codes: 0 success, 1 failure, 2 usage error (clap's own).

mod commands;
mod http_get;
mod output;
mod policy_files;
mod policy_view;
mod scrape_input;

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

/// The options every command takes. Their environment variables are read
/// here rather than by clap: clap counts a value from the environment as
/// given on the command line, and its usage lines would then show
/// `--token <TOKEN>` as if the flag were required.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The control plane, http://host:port or https://host:port
    /// [env: TERO_ENDPOINT] [default: http://127.0.0.1:7070]
    #[arg(long, global = true)]
    pub endpoint: Option<String>,
    /// The admin token (the control plane writes one to
    /// <data-dir>/admin-token) [env: TERO_TOKEN]
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// A PEM CA to trust for https endpoints, beyond the public roots
    /// [env: TERO_CA_FILE]
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
    /// Output: aligned tables for people, json or yaml for scripts.
    #[arg(short, long, global = true, value_enum, default_value = "table")]
    pub output: Format,
}

/// `flag`, else the non-empty environment variable `var`.
fn flag_or_env(flag: &Option<String>, var: &str) -> Option<String> {
    flag.clone()
        .or_else(|| std::env::var(var).ok().filter(|v| !v.is_empty()))
}

impl Global {
    pub fn client(&self) -> anyhow::Result<Client> {
        let endpoint = flag_or_env(&self.endpoint, "TERO_ENDPOINT")
            .unwrap_or_else(|| "http://127.0.0.1:7070".into());
        let mut client = Client::connect(&endpoint)?;
        if let Some(token) = flag_or_env(&self.token, "TERO_TOKEN") {
            client = client.with_token(token);
        }
        let ca_file = self.ca_file.clone().or_else(|| {
            std::env::var_os("TERO_CA_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        if let Some(ca) = &ca_file {
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
    /// Measured activity of a policy: hits, misses, series and bytes dropped,
    /// and the share of its signal's volume that is.
    Stats(commands::stats::StatsArgs),
    /// Issues the detectors found: evidence, estimate, recommended policy.
    #[command(subcommand)]
    Issues(commands::issues::IssuesCommand),
    /// Usage sources: rule files, dashboards and Prometheus servers.
    #[command(subcommand)]
    Usage(commands::usage::UsageCommand),
    /// Classification of event types (metric families, log templates):
    /// status and cost, runs, results.
    #[command(subcommand)]
    Classify(commands::classify::ClassifyCommand),
    /// Log samples for the control plane's template miner.
    #[command(subcommand)]
    Logs(commands::logs::LogsCommand),
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
    /// it, shows the issues found, accepts one (in shadow, then active) and
    /// prints its measured impact.
    Quickstart(commands::quickstart::QuickstartArgs),
    /// Serves the quickstart's sample application (metrics with planted
    /// waste) on its own, as the Kubernetes example's image runs it.
    SampleApp(commands::sample_app::SampleAppArgs),
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
            Command::Classify(cmd) => commands::classify::run(cmd, global).await,
            Command::Logs(cmd) => commands::logs::run(cmd, global).await,
            Command::Impact { policy_id } => commands::issues::impact(policy_id, global).await,
            Command::Quickstart(args) => commands::quickstart::run(args).await,
            Command::SampleApp(args) => commands::sample_app::run(args).await,
            Command::Completions { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::errln!("tero: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tero").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_help_names_the_environment_variables_of_the_global_options() {
        let help = Cli::command().render_long_help().to_string();
        for var in ["TERO_ENDPOINT", "TERO_TOKEN", "TERO_CA_FILE"] {
            assert!(help.contains(&format!("[env: {var}]")), "{help}");
        }
    }

    #[test]
    fn enum_like_flags_are_checked_locally_and_list_the_allowed_values() {
        let err = parse(&["classify", "list", "--kind", "trace"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string()
                .contains("[possible values: metric, log, span]"),
            "{err}"
        );

        let err = parse(&["classify", "list", "--category", "noise"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
        assert!(
            err.to_string().contains(
                "[possible values: debug_noise, health_check, synthetic_test, bot_traffic, \
                 duplicate, business_event, error_signal, operational, unknown]"
            ),
            "{err}"
        );

        let err = parse(&["classify", "list", "--verdict", "drop"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("[possible values: keep, waste, mixed]"),
            "{err}"
        );

        let Command::Classify(commands::classify::ClassifyCommand::List {
            kind,
            category,
            verdict,
            ..
        }) = parse(&[
            "classify",
            "list",
            "--kind",
            "LOG",
            "--category",
            "debug_noise",
            "--verdict",
            "Waste",
        ])
        .unwrap()
        .command
        else {
            panic!("not classify list");
        };
        assert_eq!(commands::classify::api_name(kind), "log");
        assert_eq!(category.map(|c| c.as_str()), Some("debug_noise"));
        assert_eq!(verdict.map(|v| v.as_str()), Some("waste"));

        let err = parse(&["classify", "list", "--unclassified", "--verdict", "keep"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn logs_submit_needs_a_service_and_a_bounded_batch() {
        let err = parse(&["logs", "submit", "app.log"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(err.exit_code(), 2);
        let err = parse(&["logs", "submit", "--service", "s"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        for batch in ["0", "10001", "-1", "many"] {
            let err =
                parse(&["logs", "submit", "a", "--service", "s", "--batch", batch]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "--batch {batch}");
        }
        let Command::Logs(commands::logs::LogsCommand::Submit { files, batch, .. }) = parse(&[
            "logs",
            "submit",
            "a.log",
            "-",
            "--service",
            "s",
            "--batch",
            "10000",
        ])
        .unwrap()
        .command
        else {
            panic!("not logs submit");
        };
        assert_eq!(files, [PathBuf::from("a.log"), PathBuf::from("-")]);
        assert_eq!(batch, 10_000);
        let Command::Logs(commands::logs::LogsCommand::Submit { batch, .. }) =
            parse(&["logs", "submit", "a.log", "--service", "s"])
                .unwrap()
                .command
        else {
            panic!("not logs submit");
        };
        assert_eq!(batch, 1000);
    }

    #[test]
    fn classify_status_and_run_have_defaults() {
        let Command::Classify(commands::classify::ClassifyCommand::Status { runs }) =
            parse(&["classify", "status"]).unwrap().command
        else {
            panic!("not classify status");
        };
        assert_eq!(runs, 10);
        assert!(parse(&["classify", "status", "--runs", "0"]).is_err());
        let Command::Classify(commands::classify::ClassifyCommand::Run { force, timeout }) =
            parse(&["classify", "run", "--force"]).unwrap().command
        else {
            panic!("not classify run");
        };
        assert!(force);
        assert_eq!(timeout, std::time::Duration::from_secs(600));
    }

    #[test]
    fn completions_know_the_new_commands_and_their_values() {
        let mut script = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "tero",
            &mut script,
        );
        let script = String::from_utf8(script).unwrap();
        for word in [
            "classify",
            "logs",
            "--unclassified",
            "debug_noise",
            "--batch",
        ] {
            assert!(script.contains(word), "{word}");
        }
    }
}

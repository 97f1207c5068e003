//! `tero-conformance`: the runner contract of the public policy conformance
//! suite.
//!
//! ```text
//! tero-conformance --policies P.json --input IN.json --output OUT.json \
//!                  --stats STATS.json --signal log|metric|trace
//! ```
//!
//! Loads the policies with the SDK's file loader, evaluates every record of
//! the OTLP JSON input with the compiled engine, drops what the winning keep
//! drops, applies transforms, prunes emptied scope and resource entries and
//! writes the document and per-policy statistics. Diagnostics go to stderr.

mod same_file;

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use tero_sdk::Signal;
use tero_sdk::engine::{Engine, StatsRegistry};
use tero_sdk::policy;

#[derive(Parser)]
#[command(
    version,
    about = "Run tero.policy.v1 policies over an OTLP JSON document"
)]
struct Args {
    /// Policy file (YAML or JSON, authoring or wire form).
    #[arg(long)]
    policies: PathBuf,
    /// OTLP JSON input (LogsData, MetricsData or TracesData).
    #[arg(long)]
    input: PathBuf,
    /// Where to write the filtered OTLP JSON ("-" for stdout).
    #[arg(long)]
    output: PathBuf,
    /// Where to write per-policy statistics: a file of its own (one that
    /// --output also writes to, /dev/stdout with "--output -" redirected to
    /// a file included, is refused: it would overwrite the output).
    #[arg(long)]
    stats: Option<PathBuf>,
    /// The signal of the input.
    #[arg(long, value_enum)]
    signal: SignalArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum SignalArg {
    Log,
    Metric,
    Trace,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("tero-conformance: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    if let Some(stats) = &args.stats {
        same_file::refuse_shared_target(&args.output, stats)?;
    }
    let loaded = policy::load_file(&args.policies)
        .with_context(|| format!("loading {}", args.policies.display()))?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    for rejected in &loaded.rejected {
        eprintln!("parse error: {rejected}");
    }
    let registry = StatsRegistry::new();
    let engine = Engine::compile(&loaded.policies, &registry);
    for info in engine.policies().iter().filter(|p| !p.errors.is_empty()) {
        eprintln!(
            "compile error: policy {:?}: {}",
            info.id,
            info.error_messages().join("; ")
        );
    }
    // The initial load does not count.
    registry.take_all();

    let input =
        std::fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let signal = match args.signal {
        SignalArg::Log => Signal::Log,
        SignalArg::Metric => Signal::Metric,
        SignalArg::Trace => Signal::Trace,
    };
    let filtered = tero_otlp::json::filter_document(&engine, signal, &input)
        .with_context(|| format!("{} is not an OTLP JSON document", args.input.display()))?;
    // Unchanged input is written as it came; a rewritten document is
    // compact JSON (the suite compares documents, not their layout).
    let document = filtered.rewritten.as_deref().unwrap_or(&input);
    if args.output.as_os_str() == "-" {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(document)
            .and_then(|()| stdout.write_all(b"\n"))
            .and_then(|()| stdout.flush())
            .context("writing the output to stdout")?;
    } else {
        std::fs::write(&args.output, document)
            .with_context(|| format!("writing {}", args.output.display()))?;
    }

    if let Some(path) = &args.stats {
        let stats = stats_document(&engine, &loaded.rejected);
        std::fs::write(path, serde_json::to_string_pretty(&stats)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `{"policies": [{"policy_id", "hits", "misses"?, "errors"?}]}`, sorted by
/// id, listing policies with activity or errors.
fn stats_document(engine: &Engine, rejected: &[policy::RejectedPolicy]) -> Value {
    let mut entries: Vec<(String, Value)> = Vec::new();
    for info in engine.policies() {
        let delta = info.runtime.stats.peek();
        let errors = info.error_messages();
        if delta.match_hits == 0 && delta.match_misses == 0 && errors.is_empty() {
            continue;
        }
        let mut entry = json!({"policy_id": info.id, "hits": delta.match_hits});
        if delta.match_misses > 0 {
            entry["misses"] = json!(delta.match_misses);
        }
        if !errors.is_empty() {
            entry["errors"] = json!(errors);
        }
        entries.push((info.id.clone(), entry));
    }
    for r in rejected {
        if let Some(id) = &r.id {
            let errors: Vec<String> = r.errors.iter().map(|e| e.status_message()).collect();
            entries.push((
                id.clone(),
                json!({"policy_id": id, "hits": 0, "errors": errors}),
            ));
        }
    }
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    json!({"policies": entries.into_iter().map(|(_, v)| v).collect::<Vec<_>>()})
}

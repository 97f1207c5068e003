//! `tero usage import|list`: the rule files, dashboards and Prometheus
//! servers whose queries say which metrics and labels are used.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use tero_sdk::proto::controlplane::{ImportUsageRequest, UsageSource};

use crate::Global;
use crate::outln;
use crate::output::{self, Table, structured};

#[derive(Debug, Subcommand)]
pub enum UsageCommand {
    /// Uploads Prometheus rule files (YAML) and Grafana dashboards (JSON):
    /// one FILE, or every .yml/.yaml/.json file under DIR; and/or the rules
    /// of a running Prometheus server.
    Import {
        /// Files or directories.
        paths: Vec<PathBuf>,
        /// A Prometheus server whose rules (GET /api/v1/rules) are imported.
        #[arg(long)]
        prometheus_url: Option<String>,
    },
    /// Lists imported sources with their query counts and unparsed queries.
    List,
}

pub async fn run(cmd: UsageCommand, global: &Global) -> anyhow::Result<()> {
    let client = global.client()?;
    match cmd {
        UsageCommand::Import {
            paths,
            prometheus_url,
        } => {
            if paths.is_empty() && prometheus_url.is_none() {
                anyhow::bail!("nothing to import: give FILE or DIR arguments, or --prometheus-url");
            }
            let mut requests = Vec::new();
            for path in &paths {
                collect(path, &mut requests)?;
            }
            if let Some(url) = &prometheus_url {
                requests.push(prometheus_rules(url).await?);
            }
            let mut imported = Vec::new();
            for request in requests {
                let name = request.name.clone();
                let source = client
                    .import_usage(request)
                    .await
                    .with_context(|| format!("importing {name}"))?;
                imported.push(source);
            }
            if !structured(global.output, &imported)? {
                print(&imported);
            }
        }
        UsageCommand::List => {
            let sources = client.list_usage_sources().await?;
            if !structured(global.output, &sources)? {
                print(&sources);
            }
        }
    }
    Ok(())
}

fn collect(path: &Path, out: &mut Vec<ImportUsageRequest>) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            let usable = entry
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yml" | "yaml" | "json"));
            if entry.is_dir() || usable {
                collect(&entry, out)?;
            }
        }
        return Ok(());
    }
    let content = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))?;
    out.push(ImportUsageRequest {
        name: path.display().to_string(),
        kind: String::new(),
        content,
    });
    Ok(())
}

async fn prometheus_rules(url: &str) -> anyhow::Result<ImportUsageRequest> {
    let rules_url = format!("{}/api/v1/rules", url.trim_end_matches('/'));
    let fetched = crate::http_get::get(&rules_url, &[], Duration::from_secs(30))
        .await
        .with_context(|| format!("cannot fetch {rules_url}"))?;
    if fetched.status != 200 {
        anyhow::bail!(
            "{rules_url} answered HTTP {}: is it a Prometheus server?",
            fetched.status
        );
    }
    let content = String::from_utf8(fetched.body.to_vec())
        .with_context(|| format!("{rules_url} did not answer UTF-8 text"))?;
    Ok(ImportUsageRequest {
        name: format!("prometheus:{}", url.trim_end_matches('/')),
        kind: "prometheus_rules".into(),
        content,
    })
}

fn print(sources: &[UsageSource]) {
    let mut table = Table::new(&["NAME", "KIND", "QUERIES", "METRICS", "UNPARSED", "IMPORTED"]);
    for source in sources {
        table.row(vec![
            source.name.clone(),
            source.kind.clone(),
            source.queries.to_string(),
            source.metrics.len().to_string(),
            source.unparsed.len().to_string(),
            output::time(source.imported_at_unix_ms),
        ]);
    }
    table.print();
    for source in sources.iter().filter(|s| !s.unparsed.is_empty()) {
        outln!();
        outln!(
            "{}: {} queries could not be parsed; the metrics they name count as used:",
            source.name,
            source.unparsed.len()
        );
        for query in &source.unparsed {
            outln!("  {query}");
        }
    }
}

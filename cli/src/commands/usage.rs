//! `tero usage import|list|delete`: the rule files, dashboards and
//! Prometheus servers whose queries say which metrics and labels are used.
//!
//! A source is known by a stable name, not by the path it was read from:
//! the file's name, so importing the same file again from elsewhere (another
//! directory, a checkout's absolute path) replaces it instead of counting
//! its queries twice.

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
    ///
    /// Each source is stored under a name: a file's name (`alerts.yml`,
    /// wherever it was read from), a server as `prometheus:URL`, or --name.
    /// Importing under a name that exists replaces that source.
    Import {
        /// Files or directories.
        paths: Vec<PathBuf>,
        /// A Prometheus server whose rules (GET /api/v1/rules) are imported.
        #[arg(long)]
        prometheus_url: Option<String>,
        /// The name to store the source under, instead of the default
        /// (only when importing a single file or server).
        #[arg(long)]
        name: Option<String>,
    },
    /// Lists imported sources with their query counts and unparsed queries.
    List,
    /// Removes a source; the detectors run again without its queries.
    Delete {
        /// The source's name, as `tero usage list` shows it.
        name: String,
    },
}

pub async fn run(cmd: UsageCommand, global: &Global) -> anyhow::Result<()> {
    let client = global.client()?;
    match cmd {
        UsageCommand::Import {
            paths,
            prometheus_url,
            name,
        } => {
            if paths.is_empty() && prometheus_url.is_none() {
                anyhow::bail!("nothing to import: give FILE or DIR arguments, or --prometheus-url");
            }
            let mut requests = Vec::new();
            let mut read_from = Vec::new();
            for path in &paths {
                collect(path, &mut requests, &mut read_from)?;
            }
            if let Some(url) = &prometheus_url {
                requests.push(prometheus_rules(url).await?);
            }
            name_sources(&mut requests, &read_from, name)?;
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
        UsageCommand::Delete { name } => {
            let source = client.delete_usage_source(&name).await?;
            if !structured(global.output, &source)? {
                outln!(
                    "usage source {} deleted ({} queries); the detectors run again without it",
                    source.name,
                    source.queries
                );
            }
        }
    }
    Ok(())
}

/// The last component of `path` (`.` and `..` resolved first), or the path
/// as written when it has none.
fn file_name(path: &Path) -> String {
    std::fs::canonicalize(path)
        .ok()
        .as_deref()
        .unwrap_or(path)
        .file_name()
        .map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
}

/// Applies `--name`, and refuses two sources of one import under one name
/// (the second would silently replace the first). `read_from` holds each
/// request's path, for the message; a server's request has none.
fn name_sources(
    requests: &mut [ImportUsageRequest],
    read_from: &[PathBuf],
    name: Option<String>,
) -> anyhow::Result<()> {
    if let Some(name) = name {
        match requests {
            [one] => one.name = name,
            _ => anyhow::bail!(
                "--name names one source, but this import has {}: import the files one by one, \
                 or drop --name to name each by its file name",
                requests.len()
            ),
        }
    }
    let mut seen = std::collections::BTreeMap::new();
    for (i, request) in requests.iter().enumerate() {
        if let Some(first) = seen.insert(request.name.as_str(), i) {
            let path = |i: usize| {
                read_from
                    .get(i)
                    .map_or_else(|| "--prometheus-url".into(), |p| p.display().to_string())
            };
            anyhow::bail!(
                "{} and {} would both be imported as {:?}: import one of them separately \
                 with --name",
                path(first),
                path(i),
                request.name
            );
        }
    }
    Ok(())
}

/// Reads FILE, or the usable files under DIR, each named by its file name.
fn collect(
    path: &Path,
    out: &mut Vec<ImportUsageRequest>,
    read_from: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
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
                collect(&entry, out, read_from)?;
            }
        }
        return Ok(());
    }
    let content = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))?;
    read_from.push(path.to_owned());
    out.push(ImportUsageRequest {
        name: file_name(path),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(paths: &[PathBuf], name: Option<&str>) -> anyhow::Result<Vec<String>> {
        let (mut requests, mut read_from) = (Vec::new(), Vec::new());
        for path in paths {
            collect(path, &mut requests, &mut read_from)?;
        }
        name_sources(&mut requests, &read_from, name.map(str::to_owned))?;
        Ok(requests.into_iter().map(|r| r.name).collect())
    }

    #[test]
    fn sources_are_named_by_file_name_wherever_they_are_read_from() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("team/rules");
        std::fs::create_dir_all(rules.join("sub")).unwrap();
        std::fs::write(rules.join("alerts.yml"), "groups: []\n").unwrap();
        std::fs::write(rules.join("sub/board.json"), "{}").unwrap();
        std::fs::write(rules.join("notes.txt"), "not a source").unwrap();

        let direct = rules.join("alerts.yml");
        let roundabout = rules.join("sub/../alerts.yml");
        assert_eq!(
            names(std::slice::from_ref(&direct), None).unwrap(),
            ["alerts.yml"]
        );
        assert_eq!(names(&[roundabout], None).unwrap(), ["alerts.yml"]);
        assert_eq!(
            names(std::slice::from_ref(&rules), None).unwrap(),
            ["alerts.yml", "board.json"]
        );
        assert_eq!(
            names(std::slice::from_ref(&direct), Some("team-alerts")).unwrap(),
            ["team-alerts"]
        );

        let err = names(std::slice::from_ref(&rules), Some("x"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--name names one source, but this import has 2"),
            "{err}"
        );
        let err = names(&[direct, rules], None).unwrap_err().to_string();
        assert!(
            err.contains("would both be imported as \"alerts.yml\""),
            "{err}"
        );
    }
}

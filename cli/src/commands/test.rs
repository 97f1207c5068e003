//! `tero policy test`: runs policies over a saved scrape (or a live
//! `/metrics`) with the Edge's own filter and reports what they would drop,
//! per policy and in total. Nothing is sent anywhere.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use serde::Serialize;
use tero_prometheus::exposition::Format;
use tero_prometheus::filter::{FilterOptions, Resource, ScrapeFilter};
use tero_sdk::Engine;
use tero_sdk::engine::StatsRegistry;

use crate::Global;
use crate::output::{Table, structured};
use crate::policy_files;
use crate::scrape_input::{self, sniff};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("scrape").required(true).args(["input", "url"])))]
pub struct TestArgs {
    /// Policy files or directories; repeatable.
    #[arg(short = 'f', long = "file", required = true, value_name = "FILE|DIR")]
    pub files: Vec<PathBuf>,
    /// A saved scrape (Prometheus text or OpenMetrics; OTLP JSON and other
    /// inputs are refused, naming what they are).
    #[arg(long, value_name = "SCRAPE_FILE")]
    pub input: Option<PathBuf>,
    /// A live endpoint to scrape once, e.g. http://127.0.0.1:8080/metrics.
    #[arg(long)]
    pub url: Option<String>,
    /// Read the input as OpenMetrics (default: from the URL's
    /// Content-Type, or Prometheus text for files).
    #[arg(long)]
    pub openmetrics: bool,
    /// Also write the scrape as the policies leave it to this file.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
    /// Resource attributes the policies can match (key=value); repeatable.
    #[arg(long = "resource", value_name = "KEY=VALUE")]
    pub resource: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyFigures {
    id: String,
    hits: u64,
    series_dropped: u64,
    bytes_dropped: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    bytes_in: u64,
    bytes_out: u64,
    series_in: u64,
    series_dropped: u64,
    reduction_percent: f64,
    policies: Vec<PolicyFigures>,
}

async fn fetch(url: &str) -> anyhow::Result<(Bytes, Option<String>)> {
    if !url.starts_with("http://") {
        bail!(
            "--url {url:?}: only http:// is supported; save an https scrape with curl and pass --input"
        );
    }
    let accept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4";
    let fetched = crate::http_get::get(
        url,
        &[
            (http::header::ACCEPT, accept),
            (http::header::ACCEPT_ENCODING, "identity"),
        ],
        Duration::from_secs(30),
    )
    .await?;
    if !(200..300).contains(&fetched.status) {
        bail!("{url} answered {}", fetched.status);
    }
    Ok((fetched.body, fetched.content_type))
}

pub async fn run(args: TestArgs, global: &Global) -> anyhow::Result<()> {
    let files = policy_files::load_valid(&args.files, "nothing was tested")?;
    let (body, content_type) = match (&args.input, &args.url) {
        (Some(path), _) => {
            let body =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            if let Some(why) = scrape_input::refusal(&path.display().to_string(), sniff(&body)) {
                bail!(why);
            }
            (Bytes::from(body), None)
        }
        (None, Some(url)) => fetch(url).await?,
        (None, None) => bail!("pass --input SCRAPE_FILE or --url URL"),
    };
    let format = if args.openmetrics {
        Format::OpenMetrics
    } else {
        match content_type {
            Some(ct) => Format::from_content_type(Some(&ct)).with_context(|| {
                format!("the scrape's Content-Type {ct:?} is not a text format the filter reads")
            })?,
            None => Format::Text,
        }
    };
    let mut attributes = Vec::new();
    for kv in &args.resource {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--resource {kv:?}: expected KEY=VALUE"))?;
        attributes.push((k.to_owned(), v.to_owned()));
    }

    let policies: Vec<_> = files.into_iter().map(|s| s.policy).collect();
    let stats = StatsRegistry::new();
    let engine = Arc::new(Engine::compile(&policies, &stats));
    let mut filter = ScrapeFilter::new(
        engine,
        Arc::new(Resource::new(attributes)),
        FilterOptions::new(format),
    );
    let mut kept: Vec<Bytes> = Vec::new();
    // Chunks of the size a socket read gives, so the test runs the filter
    // the way the Edge does.
    const CHUNK: usize = 64 * 1024;
    let mut offset = 0;
    while offset < body.len() {
        let end = (offset + CHUNK).min(body.len());
        filter.push(&body.slice(offset..end), &mut kept);
        offset = end;
    }
    filter.finish(&mut kept);
    let counters = *filter.counters();
    let bytes_out: u64 = kept.iter().map(|b| b.len() as u64).sum();
    if let Some(path) = &args.output_file {
        let joined: Vec<u8> = kept.iter().flat_map(|b| b.iter().copied()).collect();
        std::fs::write(path, joined).with_context(|| format!("cannot write {}", path.display()))?;
    }

    let mut figures: Vec<PolicyFigures> = policies
        .iter()
        .map(|p| {
            let d = stats.runtime(&p.id).stats.peek();
            PolicyFigures {
                id: p.id.clone(),
                hits: d.match_hits,
                series_dropped: d.records_dropped,
                bytes_dropped: d.bytes_dropped,
            }
        })
        .collect();
    figures.sort_by(|a, b| b.bytes_dropped.cmp(&a.bytes_dropped).then(a.id.cmp(&b.id)));
    let bytes_in = body.len() as u64;
    let series_in = counters.series_kept + counters.series_dropped;
    if series_in == 0 {
        // Nothing was evaluated: "0 of 0 dropped" would read as a pass.
        let what = match (&args.input, &args.url) {
            (Some(path), _) => path.display().to_string(),
            (None, Some(url)) => url.clone(),
            (None, None) => "the input".into(),
        };
        bail!(
            "{what} holds no series ({bytes_in} bytes), so the policies were not tested: \
             expected a Prometheus text or OpenMetrics scrape"
        );
    }
    let report = Report {
        bytes_in,
        bytes_out,
        series_in,
        series_dropped: counters.series_dropped,
        reduction_percent: if bytes_in == 0 {
            0.0
        } else {
            ((bytes_in - bytes_out.min(bytes_in)) as f64 * 1000.0 / bytes_in as f64).round() / 10.0
        },
        policies: figures,
    };
    if structured(global.output, &report)? {
        return Ok(());
    }
    let mut table = Table::new(&["POLICY", "HITS", "SERIES DROPPED", "BYTES DROPPED"]);
    for p in &report.policies {
        table.row(vec![
            p.id.clone(),
            p.hits.to_string(),
            p.series_dropped.to_string(),
            p.bytes_dropped.to_string(),
        ]);
    }
    table.print();
    crate::outln!(
        "\n{} of {} series dropped; {} -> {} bytes ({}% less)",
        report.series_dropped,
        report.series_in,
        report.bytes_in,
        report.bytes_out,
        report.reduction_percent
    );
    Ok(())
}

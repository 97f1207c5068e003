//! A real Prometheus server scraping targets on loopback, and its HTTP API.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::{Process, free_port, http_get};

/// The `prometheus` binary: on `PATH`, or where the Debian package puts it.
pub fn binary() -> String {
    for candidate in ["prometheus", "/usr/bin/prometheus"] {
        if Command::new(candidate).arg("--version").output().is_ok() {
            return candidate.to_owned();
        }
    }
    panic!(
        "the `prometheus` binary is required (Debian package `prometheus`; .ci/run installs it)"
    );
}

/// A running Prometheus (killed on drop) and the base URL of its API.
pub struct Prometheus {
    pub process: Process,
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub url: String,
}

impl Prometheus {
    /// Writes `dir/prometheus.yml` with one job a `(name, target)` pair,
    /// scraped every second with a one-second timeout, and starts
    /// Prometheus with its TSDB in `dir/tsdb` on a free loopback port. Does
    /// not wait for it: callers poll the API for what they need.
    pub fn start(dir: &Path, jobs: &[(&str, SocketAddr)]) -> Prometheus {
        let scrape_configs: String = jobs
            .iter()
            .map(|(job, target)| {
                format!("  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n")
            })
            .collect();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{scrape_configs}"
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let process = Process::spawn(
            "prometheus",
            Command::new(binary())
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("tsdb").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn"),
            dir,
        );
        Prometheus {
            process,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A GET of `path_and_query` (already URL-encoded): the JSON body of a
    /// 200 answer, `None` for anything else (not up yet, an error status,
    /// not JSON).
    pub fn api(&self, path_and_query: &str) -> Option<Value> {
        let r = http_get(&format!("{}{path_and_query}", self.url), &[]).ok()?;
        (r.status == 200).then(|| serde_json::from_slice(&r.body).ok())?
    }

    /// An instant query (`/api/v1/query`), `promql` URL-encoded here.
    pub fn query(&self, promql: &str) -> Option<Value> {
        self.api(&format!("/api/v1/query?query={}", url_encode(promql)))
    }

    /// The series matching `selector` (`/api/v1/series?match[]=…`).
    pub fn series(&self, selector: &str) -> Option<Value> {
        self.api(&format!(
            "/api/v1/series?match%5B%5D={}",
            url_encode(selector)
        ))
    }

    /// An instant query's first value; `Some(None)` for an empty result,
    /// `None` when Prometheus did not answer.
    pub fn value(&self, promql: &str) -> Option<Option<f64>> {
        let v = self.query(promql)?;
        let result = v["data"]["result"].as_array()?;
        match result.first() {
            None => Some(None),
            Some(first) => Some(first["value"][1].as_str()?.parse().ok()),
        }
    }
}

/// Percent-encodes everything but the unreserved characters of RFC 3986.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

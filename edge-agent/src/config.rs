//! The Edge configuration file: a JSON document compatible with existing
//! Tero Edge configs, validated once at start-up.
//!
//! Loading goes: read → `${VAR}` substitution in every string → `TERO_*`
//! environment overrides → typed decoding (errors name the key path) →
//! semantic checks. Unknown keys are warnings with their path, not errors,
//! so a config written for a newer Edge still starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use serde::Deserialize;
use serde_json::Value;

const MIB: u64 = 1024 * 1024;

/// A config problem that stops start-up, naming the key to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid JSON: {source}")]
    Syntax {
        path: String,
        source: serde_json::Error,
    },
    #[error("{key}: {reason}")]
    Key { key: String, reason: String },
}

impl ConfigError {
    fn key(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen_address: String,
    pub listen_port: u16,
    /// Client connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// How long a client may take to send a request head (from the accept
    /// or the head's first byte).
    pub header_read_timeout: Duration,
    /// How long a client connection may stay without a request.
    pub idle_timeout: Duration,
    /// The full upstream metrics URL (`/metrics` appended to a bare base).
    pub upstream: Uri,
    pub log_level: String,
    pub service: ServiceConfig,
    pub prometheus: PrometheusConfig,
    pub providers: Vec<ProviderConfig>,
    pub inventory: InventoryConfig,
    pub logs: LogsConfig,
    /// The push intake (OTLP and Datadog) and where it forwards.
    pub intake: IntakeConfig,
}

/// Where a push goes: a base URL that the request's path is appended to,
/// or a URL used as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushTarget {
    /// `upstream_url`, or a per-signal URL naming only a server: the
    /// request's path is appended to its path.
    Base(Uri),
    /// A per-signal URL with a path: every push of its signal goes there.
    Exact(Uri),
}

impl PushTarget {
    pub fn uri(&self) -> &Uri {
        match self {
            PushTarget::Base(u) | PushTarget::Exact(u) => u,
        }
    }
}

/// The push intake: `POST /v1/{logs,traces,metrics}` (OTLP/HTTP), the
/// OTLP/gRPC Export services, and Datadog's `/api/v2/logs` and
/// `/api/v2/series`, filtered and forwarded; other paths are relayed.
#[derive(Debug, Clone, PartialEq)]
pub struct IntakeConfig {
    /// `upstream_url` as written: the base pushes and relayed requests go
    /// to. `None` for a config that names only `metrics_url` (the older
    /// scrape-only form).
    pub upstream: Option<PushTarget>,
    /// Per-signal destinations (`logs_url`, `metrics_url`, `traces_url`).
    pub logs: Option<PushTarget>,
    pub metrics: Option<PushTarget>,
    pub traces: Option<PushTarget>,
    /// Request body bytes as they arrive (compressed); more is refused
    /// with 413.
    pub max_body_size: u64,
    /// Request body bytes after decompression; more is refused with 413.
    pub max_decoded_bytes: u64,
    /// How long a push may wait for upstream (gRPC's `grpc-timeout` may
    /// shorten it).
    pub upstream_timeout: Duration,
    /// Pushes in flight at once; more are answered 503 (gRPC
    /// `UNAVAILABLE`) with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Push body bytes held in memory at once; a push waits (unread) for
    /// room.
    pub max_buffered_bytes: u64,
    /// Log records per second handed to the template miner.
    pub log_samples_per_second: u32,
    /// Spans of pushed traces per second read into span patterns.
    pub span_samples_per_second: u32,
    /// `GET /_edge/tap/{pre,post}`.
    pub tap_enabled: bool,
    /// Whether the tap answers clients that are not on loopback.
    pub tap_allow_remote: bool,
    /// Whether paths that are neither scrapes, pushes nor the Edge's own
    /// are relayed to `upstream_url` (else 404).
    pub relay_other_paths: bool,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            upstream: None,
            logs: None,
            metrics: None,
            traces: None,
            max_body_size: MIB,
            max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
            upstream_timeout: Duration::from_secs(8),
            max_concurrent_requests: 64,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            log_samples_per_second: 20,
            span_samples_per_second: 20,
            tap_enabled: false,
            tap_allow_remote: false,
            relay_other_paths: true,
        }
    }
}

impl IntakeConfig {
    /// Where pushes go, credentials masked: `upstream_url`'s base and
    /// each per-signal URL.
    pub fn destinations(&self) -> String {
        let mut out = match &self.upstream {
            Some(t) => Redacted(t.uri()).to_string(),
            None => "nowhere (no upstream_url)".to_owned(),
        };
        for (signal, target) in [
            ("logs", &self.logs),
            ("metrics", &self.metrics),
            ("traces", &self.traces),
        ] {
            if let Some(t) = target {
                out.push_str(&format!(", {signal} to {}", Redacted(t.uri())));
            }
        }
        out
    }
}

/// A 1 MiB compressed request commonly decodes to 5-10 MiB of OTLP: a
/// ceiling at the compressed limit (the Tero Edge default) would refuse
/// ordinary batches, which exporters then drop.
pub const DEFAULT_MAX_DECODED_BYTES: u64 = 16 * MIB;

/// Sixteen 1 MiB pushes in memory at once keep a loaded Edge well under
/// 64 MiB and loopback throughput at its peak.
pub const DEFAULT_MAX_BUFFERED_BYTES: u64 = 16 * MIB;

/// The metric inventory reported to the control plane (what this Edge saw
/// upstream, before filtering).
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryConfig {
    /// How often a report is sent; `None` when inventory is off (disabled,
    /// `interval_secs: 0`, or no control-plane provider to send it to).
    pub interval: Option<Duration>,
    /// At most one scrape inventoried per period.
    pub sample_every: Duration,
    /// Families inventoried per scrape.
    pub max_families: usize,
    /// Families per report (the largest by bytes).
    pub max_report_families: usize,
    /// The id of the grpc or http provider whose control plane receives
    /// reports.
    pub provider: Option<String>,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            interval: None,
            sample_every: Duration::from_secs(60),
            max_families: 2000,
            max_report_families: 1000,
            provider: None,
        }
    }
}

impl InventoryConfig {
    /// The provider reports go to, when inventory is on.
    pub fn destination<'a>(&self, config: &'a Config) -> Option<ReportDestination<'a>> {
        self.interval?;
        let id = self.provider.as_deref()?;
        config.providers.iter().find_map(|p| match p {
            ProviderConfig::Grpc(g) if g.poll.id == id => Some(ReportDestination::Grpc(g)),
            ProviderConfig::Http(h) if h.id == id => Some(ReportDestination::Http(h)),
            _ => None,
        })
    }
}

/// The control plane inventory reports go to, named by a provider.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReportDestination<'a> {
    /// `InventoryService/Report` over gRPC, and `POST /api/v1/inventory`
    /// beside the provider's poll URL when gRPC cannot be reached: the
    /// same fallback its policies take.
    Grpc(&'a GrpcProviderConfig),
    /// `POST /api/v1/inventory` beside the sync URL.
    Http(&'a HttpProviderConfig),
}

impl ReportDestination<'_> {
    pub fn id(&self) -> &str {
        match self {
            ReportDestination::Grpc(g) => &g.poll.id,
            ReportDestination::Http(h) => &h.id,
        }
    }
}

/// Log-sample intake (`POST /_edge/logs`): lines are mined into templates
/// and the templates reported with the inventory, so the bounds here are
/// what one edge holds and sends, whatever its callers post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsConfig {
    /// Off, the endpoint answers 404. On, it still needs the inventory
    /// reporter (a control plane to report to), or it answers 503.
    pub enabled: bool,
    /// Templates the miner keeps; lines that would start another are
    /// reported as overflow.
    pub max_templates: usize,
    /// Request body bytes, before parsing; more is refused with 413.
    pub max_body_bytes: u64,
    /// Records per request; more is refused with 413.
    pub max_records_per_request: usize,
    /// Templates per inventory report (the most active); the others' counts
    /// wait for the next report.
    pub max_report_templates: usize,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            enabled: true,
            max_templates: 5000,
            max_body_bytes: 4 * MIB,
            max_records_per_request: 10_000,
            max_report_templates: 2000,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServiceConfig {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub version: Option<String>,
    /// `service.instance.id`; defaults to `$POD_NAME`, then the host name.
    pub instance_id: Option<String>,
    pub resource_attributes: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PrometheusConfig {
    /// Decompressed bytes read from upstream per scrape; 0 = unlimited.
    pub max_input_bytes_per_scrape: u64,
    /// Uncompressed bytes written per scrape; 0 = unlimited.
    pub max_output_bytes_per_scrape: u64,
    /// Lines longer than this pass whole and unfiltered.
    pub max_line_bytes: usize,
    /// Scrapes served at once; more get 503 with Retry-After.
    pub max_concurrent_scrapes: usize,
    /// Upstream deadline when Prometheus sends no scrape timeout header.
    pub scrape_timeout_secs: f64,
    /// Upstream connect timeout.
    pub connect_timeout_secs: f64,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            max_input_bytes_per_scrape: 10 * MIB,
            max_output_bytes_per_scrape: 10 * MIB,
            max_line_bytes: 4096,
            max_concurrent_scrapes: 64,
            scrape_timeout_secs: 10.0,
            connect_timeout_secs: 2.0,
        }
    }
}

impl PrometheusConfig {
    pub fn scrape_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.scrape_timeout_secs)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.connect_timeout_secs)
    }
}

/// A header sent with provider requests.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// How an HTTP provider encodes sync requests.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyncEncoding {
    #[default]
    Json,
    Protobuf,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProviderConfig {
    File { id: String, path: PathBuf },
    Http(HttpProviderConfig),
    Grpc(GrpcProviderConfig),
}

/// A validated `type: "grpc"` provider: a push stream, with HTTP polling
/// as its fallback.
#[derive(Debug, Clone, PartialEq)]
pub struct GrpcProviderConfig {
    /// The control plane's gRPC address (`http://host:port`).
    pub url: Uri,
    /// Polling while the stream is down: `poll_url` (default: `url` with
    /// `/v1/policy/sync`), the same headers, `poll_interval_secs`,
    /// `encoding` (default protobuf) and `state_dir`.
    pub poll: HttpProviderConfig,
    /// How often statistics are reported on the stream.
    pub stats_interval: Duration,
    /// Bounds of the reconnect backoff (exponential, full jitter).
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
}

/// A validated `type: "http"` provider.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpProviderConfig {
    pub id: String,
    /// The sync endpoint (`/v1/policy/sync` appended to a bare base).
    pub url: Uri,
    pub headers: Vec<Header>,
    pub poll_interval: Duration,
    pub encoding: SyncEncoding,
    /// Where the last applied set is kept across restarts.
    pub state_dir: Option<PathBuf>,
    /// PEM certificates trusted for https:// besides the public roots (a
    /// private CA), read and checked when the config is loaded.
    pub ca_pem: Option<Vec<u8>>,
}

impl ProviderConfig {
    pub fn id(&self) -> &str {
        match self {
            ProviderConfig::File { id, .. } => id,
            ProviderConfig::Http(http) => &http.id,
            ProviderConfig::Grpc(grpc) => &grpc.poll.id,
        }
    }
}

/// The file as written, before checks.
#[derive(Debug, Deserialize)]
struct RawConfig {
    #[serde(default = "default_listen_address")]
    listen_address: String,
    #[serde(default = "default_listen_port")]
    listen_port: u16,
    max_connections: Option<usize>,
    header_read_timeout_secs: Option<f64>,
    idle_timeout_secs: Option<f64>,
    upstream_url: Option<String>,
    /// Older configs name the full metrics URL instead.
    metrics_url: Option<String>,
    #[serde(default = "default_log_level")]
    log_level: String,
    #[serde(default)]
    service: ServiceConfig,
    #[serde(default)]
    prometheus: PrometheusConfig,
    #[serde(default)]
    policy_providers: Vec<RawProvider>,
    inventory: Option<RawInventory>,
    logs: Option<RawLogs>,
    logs_url: Option<String>,
    traces_url: Option<String>,
    max_body_size: Option<u64>,
    max_decoded_bytes: Option<u64>,
    tap_enabled: Option<bool>,
    intake: Option<RawIntake>,
    /// Tero Edge settings this Edge has no use for: accepted, so such a
    /// config runs unchanged, and named in a warning.
    workspace_id: Option<Value>,
    max_upstream_retries: Option<Value>,
    worker_count: Option<Value>,
    thread_pool_count: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawIntake {
    upstream_timeout_secs: Option<f64>,
    max_concurrent_requests: Option<usize>,
    max_buffered_bytes: Option<u64>,
    log_samples_per_second: Option<u32>,
    span_samples_per_second: Option<u32>,
    tap_allow_remote: Option<bool>,
    relay_other_paths: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawLogs {
    enabled: Option<bool>,
    max_templates: Option<usize>,
    max_body_bytes: Option<u64>,
    max_records_per_request: Option<usize>,
    max_report_templates: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawInventory {
    enabled: Option<bool>,
    interval_secs: Option<f64>,
    sample_every_secs: Option<f64>,
    max_families: Option<usize>,
    max_report_families: Option<usize>,
    provider: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawProvider {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    path: Option<String>,
    url: Option<String>,
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(alias = "poll_interval")]
    poll_interval_secs: Option<f64>,
    encoding: Option<SyncEncoding>,
    state_dir: Option<String>,
    poll_url: Option<String>,
    stats_interval_secs: Option<f64>,
    reconnect_min_secs: Option<f64>,
    reconnect_max_secs: Option<f64>,
    ca_file: Option<String>,
}

fn default_listen_address() -> String {
    "0.0.0.0".into()
}

fn default_listen_port() -> u16 {
    9090
}

fn default_log_level() -> String {
    "info".into()
}

/// A non-fatal finding, e.g. an unknown key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning(pub String);

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Config {
    /// Loads and validates a config file with the process environment.
    pub fn load(path: &Path) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|source| ConfigError::Syntax {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_value(value, &|k| std::env::var(k).ok())
    }

    /// Validates a parsed document; `env` answers `${VAR}` and `TERO_*`.
    pub fn from_value(
        mut value: Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        if !value.is_object() {
            return Err(ConfigError::key(
                "(root)",
                "the config must be a JSON object",
            ));
        }
        substitute(&mut value, &mut Vec::new(), env)?;
        apply_overrides(&mut value, env);

        let mut warnings = Vec::new();
        let raw: RawConfig = {
            let mut on_unknown = |path: serde_ignored::Path<'_>| {
                warnings.push(ConfigWarning(format!(
                    "{}: unknown key, ignored",
                    display_path(&path.to_string())
                )));
            };
            let de = serde_ignored::Deserializer::new(&value, &mut on_unknown);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let key = display_path(&e.path().to_string());
                ConfigError::key(key, e.into_inner().to_string())
            })?
        };
        let config = validate(raw, &mut warnings)?;
        Ok((config, warnings))
    }

    /// The address the proxy listens on.
    pub fn listen(&self) -> String {
        if self.listen_address.contains(':') {
            format!("[{}]:{}", self.listen_address, self.listen_port)
        } else {
            format!("{}:{}", self.listen_address, self.listen_port)
        }
    }

    /// `service.instance.id`: configured, else the pod name, else the host
    /// name; all stable across restarts of the same pod or host.
    pub fn instance_id(&self, env: &dyn Fn(&str) -> Option<String>) -> String {
        self.service
            .instance_id
            .clone()
            .or_else(|| env("POD_NAME"))
            .or_else(|| env("HOSTNAME"))
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("tero-edge-{}", self.listen_port))
    }
}

fn display_path(path: &str) -> String {
    if path.is_empty() || path == "." {
        "(root)".into()
    } else {
        // serde_path_to_error writes sequence indices as `.0`.
        let mut out = String::new();
        // `?` is serde_ignored's step into an `Option` (a section that
        // may be absent): not a key anyone wrote.
        for seg in path.split('.').filter(|seg| *seg != "?") {
            if seg.chars().all(|c| c.is_ascii_digit()) && !out.is_empty() {
                out.push_str(&format!("[{seg}]"));
            } else {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(seg);
            }
        }
        out
    }
}

mod env;
mod intake;
mod policy_files;
mod url;
mod validate;

use env::{apply_overrides, substitute};
use intake::intake_settings;
pub use policy_files::{PolicyFileError, PolicyFileReport, check_policy_files};
pub use url::{Redacted, redact_url};
use url::{server_url, upstream_url};
use validate::{seconds, validate};

#[cfg(test)]
mod tests;

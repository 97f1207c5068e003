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
}

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

/// Replaces `${VAR}` (and `${VAR:-default}`) in every string; `$${` is a
/// literal `${`.
fn substitute(
    value: &mut Value,
    path: &mut Vec<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        Value::String(s) if s.contains('$') => {
            *s = expand(s, env).map_err(|var| {
                ConfigError::key(
                    display_path(&path.join(".")),
                    format!("environment variable {var} is not set (write $${{ for a literal ${{)"),
                )
            })?;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                substitute(item, path, env)?;
                path.pop();
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                path.push(k.clone());
                substitute(v, path, env)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("${")
            && let Some(close) = inner.find('}')
        {
            let expr = &inner[..close];
            let (var, default) = match expr.split_once(":-") {
                Some((v, d)) => (v, Some(d)),
                None => (expr, None),
            };
            match env(var).or_else(|| default.map(str::to_owned)) {
                Some(v) => out.push_str(&v),
                None => return Err(var.to_owned()),
            }
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `TERO_<FIELD_PATH>` overrides for scalar keys, e.g. `TERO_LISTEN_PORT`
/// or `TERO_PROMETHEUS_MAX_INPUT_BYTES_PER_SCRAPE`.
fn apply_overrides(value: &mut Value, env: &dyn Fn(&str) -> Option<String>) {
    const KEYS: &[&[&str]] = &[
        &["listen_address"],
        &["listen_port"],
        &["max_connections"],
        &["header_read_timeout_secs"],
        &["idle_timeout_secs"],
        &["upstream_url"],
        &["metrics_url"],
        &["log_level"],
        &["service", "name"],
        &["service", "namespace"],
        &["service", "version"],
        &["service", "instance_id"],
        &["prometheus", "max_input_bytes_per_scrape"],
        &["prometheus", "max_output_bytes_per_scrape"],
        &["prometheus", "max_line_bytes"],
        &["prometheus", "max_concurrent_scrapes"],
        &["prometheus", "scrape_timeout_secs"],
        &["prometheus", "connect_timeout_secs"],
        &["inventory", "enabled"],
        &["inventory", "interval_secs"],
        &["inventory", "sample_every_secs"],
        &["inventory", "max_families"],
        &["inventory", "max_report_families"],
        &["inventory", "provider"],
        &["logs", "enabled"],
        &["logs", "max_templates"],
        &["logs", "max_body_bytes"],
        &["logs", "max_records_per_request"],
        &["logs", "max_report_templates"],
    ];
    for key in KEYS {
        let var = format!("TERO_{}", key.join("_").to_ascii_uppercase());
        let Some(raw) = env(&var) else { continue };
        // Numbers and booleans keep their JSON type; anything else is text.
        let parsed = serde_json::from_str::<Value>(&raw)
            .ok()
            .filter(|v| v.is_number() || v.is_boolean())
            .unwrap_or(Value::String(raw));
        let mut node = &mut *value;
        for (i, seg) in key.iter().enumerate() {
            let Some(map) = node.as_object_mut() else {
                break;
            };
            if i + 1 == key.len() {
                map.insert((*seg).to_owned(), parsed);
                break;
            }
            node = map
                .entry((*seg).to_owned())
                .or_insert_with(|| Value::Object(Default::default()));
        }
    }
}

fn validate(raw: RawConfig, warnings: &mut Vec<ConfigWarning>) -> Result<Config, ConfigError> {
    let (key, url) = match (raw.upstream_url, raw.metrics_url) {
        (Some(u), _) => ("upstream_url", u),
        (None, Some(u)) => ("metrics_url", u),
        (None, None) => {
            return Err(ConfigError::key(
                "upstream_url",
                "required: the application's base URL, e.g. \"http://127.0.0.1:8080\"",
            ));
        }
    };
    let upstream = http_url(key, &url, "/metrics")?;
    if raw.listen_address.trim().is_empty() {
        return Err(ConfigError::key("listen_address", "must not be empty"));
    }
    let max_connections = raw.max_connections.unwrap_or(256);
    if !(1..=100_000).contains(&max_connections) {
        return Err(ConfigError::key(
            "max_connections",
            "must be between 1 and 100000",
        ));
    }
    let header_read_timeout = seconds(
        "header_read_timeout_secs".into(),
        raw.header_read_timeout_secs,
        10.0,
        0.1..=300.0,
    )?;
    let idle_timeout = seconds(
        "idle_timeout_secs".into(),
        raw.idle_timeout_secs,
        120.0,
        0.1..=86_400.0,
    )?;
    let p = &raw.prometheus;
    if p.max_line_bytes < 256 {
        return Err(ConfigError::key(
            "prometheus.max_line_bytes",
            "must be at least 256",
        ));
    }
    if p.max_concurrent_scrapes == 0 {
        return Err(ConfigError::key(
            "prometheus.max_concurrent_scrapes",
            "must be at least 1",
        ));
    }
    for (k, v) in [
        ("prometheus.scrape_timeout_secs", p.scrape_timeout_secs),
        ("prometheus.connect_timeout_secs", p.connect_timeout_secs),
    ] {
        if !(v > 0.0 && v <= 3600.0) {
            return Err(ConfigError::key(k, "must be between 0 and 3600 seconds"));
        }
    }
    let mut providers = Vec::with_capacity(raw.policy_providers.len());
    let mut ids = std::collections::HashSet::new();
    for (i, p) in raw.policy_providers.into_iter().enumerate() {
        let at = |field: &str| format!("policy_providers[{i}].{field}");
        let id =
            p.id.clone()
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| ConfigError::key(at("id"), "required"))?;
        if !ids.insert(id.clone()) {
            return Err(ConfigError::key(
                at("id"),
                format!("duplicate provider id {id:?}"),
            ));
        }
        let kind = p.kind.clone().ok_or_else(|| {
            ConfigError::key(at("type"), "required: \"file\", \"http\" or \"grpc\"")
        })?;
        // Keys another provider type uses are ignored here: say so.
        let set = [
            ("path", p.path.is_some(), &["file"][..]),
            ("url", p.url.is_some(), &["http", "grpc"][..]),
            ("headers", !p.headers.is_empty(), &["http", "grpc"][..]),
            (
                "poll_interval_secs",
                p.poll_interval_secs.is_some(),
                &["http", "grpc"][..],
            ),
            ("encoding", p.encoding.is_some(), &["http", "grpc"][..]),
            ("state_dir", p.state_dir.is_some(), &["http", "grpc"][..]),
            ("ca_file", p.ca_file.is_some(), &["http", "grpc"][..]),
            ("poll_url", p.poll_url.is_some(), &["grpc"][..]),
            (
                "stats_interval_secs",
                p.stats_interval_secs.is_some(),
                &["grpc"][..],
            ),
            (
                "reconnect_min_secs",
                p.reconnect_min_secs.is_some(),
                &["grpc"][..],
            ),
            (
                "reconnect_max_secs",
                p.reconnect_max_secs.is_some(),
                &["grpc"][..],
            ),
        ];
        for (key, present, types) in set {
            if present && !types.contains(&kind.as_str()) {
                warnings.push(ConfigWarning(format!(
                    "{}: {kind} providers do not use it; ignored",
                    at(key)
                )));
            }
        }
        let provider = match kind.as_str() {
            "file" => {
                let path = p
                    .path
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| ConfigError::key(at("path"), "required for a file provider"))?;
                ProviderConfig::File {
                    id,
                    path: PathBuf::from(path),
                }
            }
            "http" => {
                let url = p
                    .url
                    .clone()
                    .ok_or_else(|| ConfigError::key(at("url"), "required for an http provider"))?;
                let url = server_url(&at("url"), &url, "/v1/policy/sync")?;
                ProviderConfig::Http(poll_settings(&p, &at, id, url, SyncEncoding::Json)?)
            }
            "grpc" => {
                let raw_url = p
                    .url
                    .clone()
                    .ok_or_else(|| ConfigError::key(at("url"), "required for a grpc provider"))?;
                let url = server_url(&at("url"), &raw_url, "/")?;
                let poll_url = match &p.poll_url {
                    Some(u) => server_url(&at("poll_url"), u, "/v1/policy/sync")?,
                    None => server_url(&at("url"), &raw_url, "/v1/policy/sync").and_then(|u| {
                        // `url` names the server; polling goes to its sync path.
                        let base = format!(
                            "{}://{}/v1/policy/sync",
                            u.scheme_str().unwrap_or("http"),
                            u.authority().map(|a| a.as_str()).unwrap_or("")
                        );
                        base.parse()
                            .map_err(|e| ConfigError::key(at("url"), format!("{e}")))
                    })?,
                };
                let secs = |key: &str, v, default, range| seconds(at(key), v, default, range);
                let stats_interval = secs(
                    "stats_interval_secs",
                    p.stats_interval_secs,
                    10.0,
                    1.0..=3600.0,
                )?;
                let reconnect_min = secs(
                    "reconnect_min_secs",
                    p.reconnect_min_secs,
                    1.0,
                    0.05..=600.0,
                )?;
                let reconnect_max = secs(
                    "reconnect_max_secs",
                    p.reconnect_max_secs,
                    60.0,
                    0.05..=3600.0,
                )?;
                if reconnect_max < reconnect_min {
                    return Err(ConfigError::key(
                        at("reconnect_max_secs"),
                        "must not be below reconnect_min_secs",
                    ));
                }
                ProviderConfig::Grpc(GrpcProviderConfig {
                    url,
                    poll: poll_settings(&p, &at, id, poll_url, SyncEncoding::Protobuf)?,
                    stats_interval,
                    reconnect_min,
                    reconnect_max,
                })
            }
            other => {
                return Err(ConfigError::key(
                    at("type"),
                    format!(
                        "unknown provider type {other:?}; expected \"file\", \"http\" or \"grpc\""
                    ),
                ));
            }
        };
        providers.push(provider);
    }
    let inventory = inventory_settings(raw.inventory, &providers, warnings)?;
    let logs = logs_settings(raw.logs, &inventory, warnings)?;
    Ok(Config {
        listen_address: raw.listen_address,
        listen_port: raw.listen_port,
        max_connections,
        header_read_timeout,
        idle_timeout,
        upstream,
        log_level: raw.log_level,
        service: raw.service,
        prometheus: raw.prometheus,
        providers,
        inventory,
        logs,
    })
}

/// The `inventory` section. On by default wherever a grpc or http provider
/// names a control plane to report to (the first grpc one, else the first
/// http one); a section written out for an Edge with nowhere to send it
/// says so.
fn inventory_settings(
    raw: Option<RawInventory>,
    providers: &[ProviderConfig],
    warnings: &mut Vec<ConfigWarning>,
) -> Result<InventoryConfig, ConfigError> {
    let written = raw.is_some();
    let raw = raw.unwrap_or_default();
    let defaults = InventoryConfig::default();
    let interval_secs = raw.interval_secs.unwrap_or(300.0);
    if !(interval_secs == 0.0 || (1.0..=86_400.0).contains(&interval_secs)) {
        return Err(ConfigError::key(
            "inventory.interval_secs",
            "must be 0 (off) or between 1 and 86400 seconds",
        ));
    }
    let on = raw.enabled.unwrap_or(true) && interval_secs > 0.0;
    let interval = Duration::from_secs_f64(interval_secs);
    // By default a short interval samples as often as it reports.
    let default_sample = defaults.sample_every.as_secs_f64().min(interval_secs);
    let sample_every = seconds(
        "inventory.sample_every_secs".into(),
        raw.sample_every_secs,
        default_sample,
        0.0..=3600.0,
    )?;
    if on && sample_every > interval {
        return Err(ConfigError::key(
            "inventory.sample_every_secs",
            "must not exceed interval_secs: every report needs an inventoried scrape",
        ));
    }
    let count = |key: &str, value: Option<usize>, default: usize, max: usize| {
        let v = value.unwrap_or(default);
        if (1..=max).contains(&v) {
            Ok(v)
        } else {
            Err(ConfigError::key(
                format!("inventory.{key}"),
                format!("must be between 1 and {max}"),
            ))
        }
    };
    let max_families = count(
        "max_families",
        raw.max_families,
        defaults.max_families,
        100_000,
    )?;
    let max_report_families = count(
        "max_report_families",
        raw.max_report_families,
        defaults.max_report_families,
        10_000,
    )?;
    // A stream is the better transport, so a grpc provider comes first.
    let mut control_planes: Vec<&str> = providers
        .iter()
        .filter_map(|p| match p {
            ProviderConfig::Grpc(g) => Some(g.poll.id.as_str()),
            _ => None,
        })
        .collect();
    control_planes.extend(providers.iter().filter_map(|p| match p {
        ProviderConfig::Http(h) => Some(h.id.as_str()),
        _ => None,
    }));
    let provider = match raw.provider.filter(|p| !p.is_empty()) {
        Some(id) if control_planes.contains(&id.as_str()) => Some(id),
        Some(id) => {
            return Err(ConfigError::key(
                "inventory.provider",
                format!("{id:?} is not the id of a grpc or http provider"),
            ));
        }
        None => control_planes.first().map(|id| (*id).to_owned()),
    };
    if on && provider.is_none() && written {
        warnings.push(ConfigWarning(
            "inventory: no grpc or http provider to report to; inventory is off".into(),
        ));
    }
    Ok(InventoryConfig {
        interval: (on && provider.is_some()).then_some(interval),
        sample_every,
        max_families,
        max_report_families,
        provider,
    })
}

/// The `logs` section. On by default; its templates travel with the
/// inventory, so a section written out for an Edge whose inventory is off
/// says that the endpoint will refuse samples.
fn logs_settings(
    raw: Option<RawLogs>,
    inventory: &InventoryConfig,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<LogsConfig, ConfigError> {
    let written = raw.is_some();
    let raw = raw.unwrap_or_default();
    let defaults = LogsConfig::default();
    fn bounded<T: Copy + PartialOrd + std::fmt::Display>(
        key: &str,
        value: Option<T>,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError> {
        let v = value.unwrap_or(default);
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(ConfigError::key(
                format!("logs.{key}"),
                format!("must be between {} and {}", range.start(), range.end()),
            ))
        }
    }
    let enabled = raw.enabled.unwrap_or(defaults.enabled);
    let logs = LogsConfig {
        enabled,
        max_templates: bounded(
            "max_templates",
            raw.max_templates,
            defaults.max_templates,
            1..=100_000,
        )?,
        max_body_bytes: bounded(
            "max_body_bytes",
            raw.max_body_bytes,
            defaults.max_body_bytes,
            1024..=256 * MIB,
        )?,
        max_records_per_request: bounded(
            "max_records_per_request",
            raw.max_records_per_request,
            defaults.max_records_per_request,
            1..=1_000_000,
        )?,
        max_report_templates: bounded(
            "max_report_templates",
            raw.max_report_templates,
            defaults.max_report_templates,
            1..=10_000,
        )?,
    };
    if written && enabled && inventory.interval.is_none() {
        warnings.push(ConfigWarning(
            "logs: the inventory is off, so there is nothing to report log templates with; POST /_edge/logs answers 503".into(),
        ));
    }
    Ok(logs)
}

/// A duration in seconds, `default` when absent, within `range`.
fn seconds(
    key: String,
    value: Option<f64>,
    default: f64,
    range: std::ops::RangeInclusive<f64>,
) -> Result<Duration, ConfigError> {
    let v = value.unwrap_or(default);
    if range.contains(&v) {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(ConfigError::key(
            key,
            format!(
                "must be between {} and {} seconds",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// The polling settings of an http provider, or of a grpc provider's
/// fallback.
fn poll_settings(
    p: &RawProvider,
    at: &dyn Fn(&str) -> String,
    id: String,
    url: Uri,
    default_encoding: SyncEncoding,
) -> Result<HttpProviderConfig, ConfigError> {
    let poll_interval = seconds(
        at("poll_interval_secs"),
        p.poll_interval_secs,
        30.0,
        1.0..=86_400.0,
    )?;
    for (h, header) in p.headers.iter().enumerate() {
        if http::HeaderName::from_bytes(header.name.as_bytes()).is_err() {
            return Err(ConfigError::key(
                at(&format!("headers[{h}].name")),
                format!("{:?} is not a valid HTTP header name", header.name),
            ));
        }
        if http::HeaderValue::from_str(&header.value).is_err() {
            return Err(ConfigError::key(
                at(&format!("headers[{h}].value")),
                "not a valid HTTP header value",
            ));
        }
    }
    let ca_pem = match p.ca_file.as_deref().filter(|f| !f.is_empty()) {
        None => None,
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| ConfigError::key(at("ca_file"), format!("cannot read {path}: {e}")))?;
            use rustls_pki_types::pem::PemObject;
            let has_certificate =
                rustls_pki_types::CertificateDer::pem_slice_iter(&pem).any(|c| c.is_ok());
            if !has_certificate {
                return Err(ConfigError::key(
                    at("ca_file"),
                    format!("{path} holds no PEM certificate"),
                ));
            }
            Some(pem)
        }
    };
    Ok(HttpProviderConfig {
        id,
        url,
        ca_pem,
        headers: p.headers.clone(),
        poll_interval,
        encoding: p.encoding.unwrap_or(default_encoding),
        state_dir: p
            .state_dir
            .clone()
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
    })
}

/// `url` as it may be shown (error bodies, logs, `--check-config`):
/// credentials it can carry are masked. Userinfo becomes `***`, every query
/// value `***` (names stay, they say what was configured), a fragment
/// `***`. Works on text that is not a valid URL, so config errors can show
/// what was written without its secrets.
pub fn redact_url(url: &str) -> String {
    let (head, fragment) = match url.split_once('#') {
        Some((h, _)) => (h, true),
        None => (url, false),
    };
    let (head, query) = match head.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (head, None),
    };
    let (scheme, rest) = match head.find("://") {
        Some(i) => head.split_at(i + 3),
        None => ("", head),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            out.push_str("***@");
            out.push_str(&rest[at + 1..]);
        }
        None => out.push_str(rest),
    }
    if let Some(query) = query {
        out.push('?');
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) => format!("{name}=***"),
                None if pair.is_empty() => String::new(),
                None => "***".to_owned(),
            })
            .collect();
        out.push_str(&masked.join("&"));
    }
    if fragment {
        out.push_str("#***");
    }
    out
}

/// Displays a URL through [`redact_url`].
pub struct Redacted<'a>(pub &'a Uri);

impl std::fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.0.to_string()))
    }
}

/// A control plane's URL (http:// or https://), with `default_path` added
/// when it has none.
fn server_url(key: &str, url: &str, default_path: &str) -> Result<Uri, ConfigError> {
    absolute_url(key, url, default_path, true)
}

/// An upstream URL: http:// only (the application's port on loopback or
/// the pod network).
fn http_url(key: &str, url: &str, default_path: &str) -> Result<Uri, ConfigError> {
    absolute_url(key, url, default_path, false)
}

fn absolute_url(
    key: &str,
    url: &str,
    default_path: &str,
    allow_https: bool,
) -> Result<Uri, ConfigError> {
    let uri: Uri = url.parse().map_err(|e| {
        ConfigError::key(
            key,
            format!("{:?} is not a valid URL: {e}", redact_url(url)),
        )
    })?;
    match (uri.scheme_str(), allow_https) {
        (Some("http"), _) | (Some("https"), true) => {}
        (Some("https"), false) => {
            return Err(ConfigError::key(
                key,
                "https is not supported here; use http:// (the Edge talks to its neighbours on loopback or the pod network)",
            ));
        }
        _ => {
            let schemes = if allow_https {
                "http:// or https://"
            } else {
                "http://"
            };
            return Err(ConfigError::key(
                key,
                format!("{:?} must be an absolute {schemes} URL", redact_url(url)),
            ));
        }
    }
    if uri.authority().is_none() {
        return Err(ConfigError::key(
            key,
            format!("{:?} has no host", redact_url(url)),
        ));
    }
    let has_path = !matches!(uri.path(), "" | "/");
    if has_path {
        return Ok(uri);
    }
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let full = format!(
        "{}://{}{}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map(|a| a.as_str()).unwrap_or(""),
        default_path,
        query
    );
    full.parse()
        .map_err(|e| ConfigError::key(key, format!("{:?}: {e}", redact_url(url))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(v: Value) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        Config::from_value(v, &|k| match k {
            "EDGE_KEY" => Some("secret".into()),
            "TERO_LISTEN_PORT" => None,
            _ => None,
        })
    }

    #[test]
    fn redaction_masks_userinfo_query_values_and_fragments() {
        let cases = [
            ("http://app:8080/metrics", "http://app:8080/metrics"),
            (
                "http://user:s3cret@app:8080/metrics",
                "http://***@app:8080/metrics",
            ),
            ("http://t0ken@app/metrics", "http://***@app/metrics"),
            (
                "http://app/metrics?token=s3cret&module=x",
                "http://app/metrics?token=***&module=***",
            ),
            ("http://app/m?s3cret", "http://app/m?***"),
            ("http://app/m?a=1&&b=", "http://app/m?a=***&&b=***"),
            ("http://app/m#s3cret", "http://app/m#***"),
            // The path may hold an `@`; only the authority's is userinfo.
            ("http://app/x@y", "http://app/x@y"),
            ("http://u:p@a@app/m?k=v=w", "http://***@app/m?k=***"),
            // Not a URL at all: still no secret.
            ("u:s3cret@app?key=s3cret", "***@app?key=***"),
            ("", ""),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        let uri: Uri = "http://user:s3cret@app:8080/metrics?key=s3cret"
            .parse()
            .unwrap();
        assert_eq!(
            Redacted(&uri).to_string(),
            "http://***@app:8080/metrics?key=***"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        #[test]
        fn redaction_never_panics_and_hides_what_it_masks(
            text in "[ -~]{0,80}",
            user in "[A-Za-z0-9]{1,8}",
            secret in "[A-Z]{12}",
            name in "[a-z]{1,6}",
        ) {
            let _ = redact_url(&text);
            for url in [
                format!("http://{user}:{secret}@app:8080/metrics"),
                format!("http://{secret}@app/metrics?{name}=1"),
                format!("http://app/metrics?{name}={secret}&x={secret}"),
                format!("http://app/metrics?{secret}"),
                format!("http://app/metrics#{secret}"),
            ] {
                let shown = redact_url(&url);
                proptest::prop_assert!(!shown.contains(&secret), "{url} -> {shown}");
            }
        }
    }

    #[test]
    fn config_errors_do_not_repeat_credentials() {
        let e = load(json!({"upstream_url": "ftp://user:s3cret@app/metrics?key=s3cret"}))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("upstream_url: "), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        assert!(e.contains("***@app"), "{e}");
    }

    #[test]
    fn connection_bounds_default_and_are_checked() {
        let (c, _) = load(json!({"upstream_url": "http://127.0.0.1:8080"})).unwrap();
        assert_eq!(c.max_connections, 256);
        assert_eq!(c.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Duration::from_secs(120));
        let (c, w) = load(json!({"upstream_url": "http://a:1", "max_connections": 8,
            "header_read_timeout_secs": 0.5, "idle_timeout_secs": 30}))
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            (c.max_connections, c.header_read_timeout, c.idle_timeout),
            (8, Duration::from_millis(500), Duration::from_secs(30))
        );
        for (key, value, message) in [
            (
                "max_connections",
                json!(0),
                "max_connections: must be between 1 and 100000",
            ),
            (
                "max_connections",
                json!(-1),
                "max_connections: invalid value",
            ),
            (
                "header_read_timeout_secs",
                json!(0),
                "header_read_timeout_secs: must be between 0.1 and 300 seconds",
            ),
            (
                "idle_timeout_secs",
                json!(1e20),
                "idle_timeout_secs: must be between 0.1 and 86400 seconds",
            ),
            (
                "idle_timeout_secs",
                json!("soon"),
                "idle_timeout_secs: invalid type",
            ),
        ] {
            let mut doc = json!({"upstream_url": "http://a:1"});
            doc[key] = value;
            let e = load(doc).unwrap_err().to_string();
            assert!(e.starts_with(message), "{key}: {e}");
        }
        let env = |k: &str| (k == "TERO_MAX_CONNECTIONS").then(|| "12".to_owned());
        let (c, _) = Config::from_value(json!({"upstream_url": "http://a:1"}), &env).unwrap();
        assert_eq!(c.max_connections, 12);
    }

    #[test]
    fn defaults_and_metrics_path() {
        let (c, w) = load(json!({"upstream_url": "http://127.0.0.1:8080"})).unwrap();
        assert!(w.is_empty());
        assert_eq!(c.listen(), "0.0.0.0:9090");
        assert_eq!(c.upstream.to_string(), "http://127.0.0.1:8080/metrics");
        assert_eq!(c.log_level, "info");
        assert_eq!(c.prometheus.max_input_bytes_per_scrape, 10 * MIB);
        assert_eq!(c.prometheus.max_output_bytes_per_scrape, 10 * MIB);
        let (c, _) = load(json!({"upstream_url": "http://app:9100/custom?module=x"})).unwrap();
        assert_eq!(c.upstream.to_string(), "http://app:9100/custom?module=x");
    }

    #[test]
    fn providers_and_env_substitution() {
        let (c, _) = load(json!({
            "upstream_url": "http://127.0.0.1:8080",
            "policy_providers": [
                {"id": "local", "type": "file", "path": "/etc/tero/policies.yaml"},
                {"id": "cp", "type": "http", "url": "http://cp:7070",
                 "headers": [{"name": "Authorization", "value": "Bearer ${EDGE_KEY}"}],
                 "poll_interval_secs": 15, "encoding": "protobuf"},
                {"id": "lit", "type": "file", "path": "/x/$${NOT_EXPANDED}/${MISSING:-dflt}"}
            ]
        }))
        .unwrap();
        assert_eq!(c.providers.len(), 3);
        match &c.providers[1] {
            ProviderConfig::Http(HttpProviderConfig {
                url,
                headers,
                poll_interval,
                encoding,
                ..
            }) => {
                assert_eq!(url.to_string(), "http://cp:7070/v1/policy/sync");
                assert_eq!(headers[0].value, "Bearer secret");
                assert_eq!(*poll_interval, Duration::from_secs(15));
                assert_eq!(*encoding, SyncEncoding::Protobuf);
            }
            other => panic!("{other:?}"),
        }
        match &c.providers[2] {
            ProviderConfig::File { path, .. } => {
                assert_eq!(path, &PathBuf::from("/x/${NOT_EXPANDED}/dflt"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn grpc_providers_poll_the_same_server_by_default() {
        let (c, _) = load(json!({
            "upstream_url": "http://127.0.0.1:8080",
            "policy_providers": [
                {"id": "cp", "type": "grpc", "url": "http://cp:7070",
                 "headers": [{"name": "Authorization", "value": "Bearer k"}],
                 "poll_interval_secs": 5, "state_dir": "/var/lib/tero"},
                {"id": "cp2", "type": "grpc", "url": "http://cp-a:7070",
                 "poll_url": "http://cp-b:7070", "encoding": "json",
                 "stats_interval_secs": 2, "reconnect_min_secs": 0.5, "reconnect_max_secs": 5}
            ]
        }))
        .unwrap();
        let ProviderConfig::Grpc(g) = &c.providers[0] else {
            panic!("{:?}", c.providers[0])
        };
        assert_eq!(c.providers[0].id(), "cp");
        assert_eq!(g.url.to_string(), "http://cp:7070/");
        assert_eq!(g.poll.url.to_string(), "http://cp:7070/v1/policy/sync");
        assert_eq!(
            g.poll.encoding,
            SyncEncoding::Protobuf,
            "the control plane speaks it"
        );
        assert_eq!(g.poll.poll_interval, Duration::from_secs(5));
        assert_eq!(g.poll.headers[0].value, "Bearer k");
        assert_eq!(g.poll.state_dir, Some(PathBuf::from("/var/lib/tero")));
        assert_eq!(
            (g.stats_interval, g.reconnect_min, g.reconnect_max),
            (
                Duration::from_secs(10),
                Duration::from_secs(1),
                Duration::from_secs(60)
            )
        );
        let ProviderConfig::Grpc(g) = &c.providers[1] else {
            panic!("{:?}", c.providers[1])
        };
        assert_eq!(g.poll.url.to_string(), "http://cp-b:7070/v1/policy/sync");
        assert_eq!(g.poll.encoding, SyncEncoding::Json);
        assert_eq!(
            (g.stats_interval, g.reconnect_min, g.reconnect_max),
            (
                Duration::from_secs(2),
                Duration::from_millis(500),
                Duration::from_secs(5)
            )
        );

        for (bad, key) in [
            (
                json!({"id": "g", "type": "grpc"}),
                "policy_providers[0].url",
            ),
            (
                json!({"id": "g", "type": "grpc", "url": "http://a", "stats_interval_secs": 0}),
                "policy_providers[0].stats_interval_secs",
            ),
            (
                json!({"id": "g", "type": "grpc", "url": "http://a", "reconnect_min_secs": 9, "reconnect_max_secs": 2}),
                "policy_providers[0].reconnect_max_secs",
            ),
            (
                json!({"id": "g", "type": "grpc", "url": "http://a", "poll_url": "ftp://b"}),
                "policy_providers[0].poll_url",
            ),
        ] {
            let err = load(json!({"upstream_url": "http://a:1", "policy_providers": [bad]}))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn keys_of_another_provider_type_warn() {
        let (_, w) = load(json!({
            "upstream_url": "http://a:1",
            "policy_providers": [
                {"id": "h", "type": "http", "url": "http://cp", "poll_url": "http://b", "stats_interval_secs": 5},
                {"id": "f", "type": "file", "path": "/p.yaml", "url": "http://cp"}
            ]
        }))
        .unwrap();
        let w: Vec<String> = w.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            w,
            [
                "policy_providers[0].poll_url: http providers do not use it; ignored",
                "policy_providers[0].stats_interval_secs: http providers do not use it; ignored",
                "policy_providers[1].url: file providers do not use it; ignored",
            ]
        );
    }

    #[test]
    fn unknown_keys_warn_with_their_path() {
        let (_, w) = load(json!({
            "upstream_url": "http://a:1",
            "colour": "blue",
            "prometheus": {"max_input_bytes_per_scrap": 1},
            "inventory": {"intervl_secs": 1},
            "policy_providers": [{"id": "f", "type": "file", "path": "p", "pth": 1}]
        }))
        .unwrap();
        let w: Vec<String> = w.into_iter().map(|w| w.0).collect();
        assert!(
            w.contains(&"colour: unknown key, ignored".to_string()),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|x| x.starts_with("prometheus.max_input_bytes_per_scrap")),
            "{w:?}"
        );
        assert!(
            w.iter().any(|x| x.starts_with("policy_providers[0].pth")),
            "{w:?}"
        );
        assert!(
            w.contains(&"inventory.intervl_secs: unknown key, ignored".to_string()),
            "{w:?}"
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (json!({}), "upstream_url"),
            (json!({"upstream_url": "ftp://x"}), "upstream_url"),
            (
                json!({"upstream_url": "http://a:1", "listen_port": "x"}),
                "listen_port",
            ),
            (
                json!({"upstream_url": "http://a:1", "prometheus": {"max_input_bytes_per_scrape": -1}}),
                "prometheus.max_input_bytes_per_scrape",
            ),
            (
                json!({"upstream_url": "http://a:1", "policy_providers": [{"id": "x", "type": "ftp"}]}),
                "policy_providers[0].type",
            ),
            (
                json!({"upstream_url": "http://a:1", "policy_providers": [{"id": "x", "type": "file"}]}),
                "policy_providers[0].path",
            ),
            (
                json!({"upstream_url": "http://a:1", "policy_providers": [{"type": "file", "path": "p"}]}),
                "policy_providers[0].id",
            ),
            (
                json!({"upstream_url": "http://a:1", "policy_providers": [
                    {"id": "h", "type": "http", "url": "http://x", "headers": [{"name": "A", "value": "${NOPE}"}]}]}),
                "policy_providers[0].headers[0].value",
            ),
        ];
        for (doc, key) in cases {
            let err = load(doc.clone()).unwrap_err().to_string();
            assert!(err.starts_with(key), "{doc}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn inventory_reports_to_the_first_grpc_provider_by_default() {
        let grpc = |id: &str| json!({"id": id, "type": "grpc", "url": "http://cp:7070"});
        let (c, w) = load(json!({"upstream_url": "http://a:1", "policy_providers": [
            {"id": "f", "type": "file", "path": "p"}, grpc("cp"), grpc("cp2")]}))
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c.inventory,
            InventoryConfig {
                interval: Some(Duration::from_secs(300)),
                sample_every: Duration::from_secs(60),
                max_families: 2000,
                max_report_families: 1000,
                provider: Some("cp".into()),
            }
        );
        assert_eq!(
            c.inventory.destination(&c).map(|d| d.id().to_owned()),
            Some("cp".into())
        );

        let (c, _) = load(
            json!({"upstream_url": "http://a:1", "policy_providers": [grpc("cp"), grpc("cp2")],
            "inventory": {"interval_secs": 30, "max_families": 50, "provider": "cp2"}}),
        )
        .unwrap();
        assert_eq!(c.inventory.interval, Some(Duration::from_secs(30)));
        assert_eq!(c.inventory.sample_every, Duration::from_secs(30));
        assert_eq!(c.inventory.max_families, 50);
        assert_eq!(
            c.inventory.destination(&c).map(|d| d.id().to_owned()),
            Some("cp2".into())
        );

        // A grpc provider is preferred; an http one serves when it is alone.
        let http = |id: &str| json!({"id": id, "type": "http", "url": "http://cp:7070"});
        let (c, _) = load(
            json!({"upstream_url": "http://a:1", "policy_providers": [http("poll"), grpc("cp")]}),
        )
        .unwrap();
        assert!(
            matches!(c.inventory.destination(&c), Some(ReportDestination::Grpc(g)) if g.poll.id == "cp")
        );
        let (c, w) =
            load(json!({"upstream_url": "http://a:1", "policy_providers": [http("poll")]}))
                .unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert!(
            matches!(c.inventory.destination(&c), Some(ReportDestination::Http(h)) if h.id == "poll")
        );
        let err = load(json!({"upstream_url": "http://a:1",
            "policy_providers": [{"id": "f", "type": "file", "path": "p"}],
            "inventory": {"provider": "f"}}))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("inventory.provider") && err.contains("grpc or http"),
            "{err}"
        );

        for off in [json!({"interval_secs": 0}), json!({"enabled": false})] {
            let (c, _) = load(json!({"upstream_url": "http://a:1", "policy_providers": [grpc("cp")], "inventory": off}))
                .unwrap();
            assert_eq!(c.inventory.interval, None);
            assert!(c.inventory.destination(&c).is_none());
        }
        let (c, w) = load(json!({"upstream_url": "http://a:1", "inventory": {}})).unwrap();
        assert_eq!(c.inventory.interval, None);
        assert_eq!(
            w[0].0,
            "inventory: no grpc or http provider to report to; inventory is off"
        );
        let (_, w) = load(json!({"upstream_url": "http://a:1"})).unwrap();
        assert!(w.is_empty(), "nothing asked for, nothing to say");

        let (c, _) = Config::from_value(
            json!({"upstream_url": "http://a:1", "policy_providers": [grpc("cp")]}),
            &|k| (k == "TERO_INVENTORY_INTERVAL_SECS").then(|| "120".into()),
        )
        .unwrap();
        assert_eq!(c.inventory.interval, Some(Duration::from_secs(120)));

        for (inventory, key) in [
            (json!({"interval_secs": -1}), "inventory.interval_secs"),
            (json!({"interval_secs": 0.5}), "inventory.interval_secs"),
            (
                json!({"interval_secs": 60, "sample_every_secs": 120}),
                "inventory.sample_every_secs",
            ),
            (json!({"max_families": 0}), "inventory.max_families"),
            (
                json!({"max_report_families": 100000}),
                "inventory.max_report_families",
            ),
            (json!({"provider": "nope"}), "inventory.provider"),
            (json!({"enabled": "yes"}), "inventory.enabled"),
        ] {
            let err = load(json!({"upstream_url": "http://a:1", "policy_providers": [grpc("cp")], "inventory": inventory}))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(key), "{err}");
        }
    }

    #[test]
    fn logs_are_on_by_default_and_bounded() {
        let grpc = json!({"id": "cp", "type": "grpc", "url": "http://cp:7070"});
        let (c, w) =
            load(json!({"upstream_url": "http://a:1", "policy_providers": [grpc.clone()]}))
                .unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.logs, LogsConfig::default());
        assert_eq!(
            (c.logs.max_body_bytes, c.logs.max_records_per_request),
            (4 * MIB, 10_000)
        );

        let (c, w) = load(
            json!({"upstream_url": "http://a:1", "policy_providers": [grpc.clone()],
            "logs": {"enabled": true, "max_templates": 50, "max_body_bytes": 2048,
                     "max_records_per_request": 7, "max_report_templates": 3, "colour": 1}}),
        )
        .unwrap();
        assert_eq!(
            c.logs,
            LogsConfig {
                enabled: true,
                max_templates: 50,
                max_body_bytes: 2048,
                max_records_per_request: 7,
                max_report_templates: 3,
            }
        );
        assert_eq!(
            w.iter().map(|w| w.0.as_str()).collect::<Vec<_>>(),
            ["logs.colour: unknown key, ignored"]
        );

        let (c, _) = Config::from_value(json!({"upstream_url": "http://a:1"}), &|k| {
            (k == "TERO_LOGS_ENABLED").then(|| "false".into())
        })
        .unwrap();
        assert!(!c.logs.enabled);

        // Written out for an Edge with nowhere to report: said at start-up.
        let (_, w) =
            load(json!({"upstream_url": "http://a:1", "logs": {"enabled": true}})).unwrap();
        assert!(w[0].0.contains("POST /_edge/logs answers 503"), "{w:?}");
        let (_, w) =
            load(json!({"upstream_url": "http://a:1", "logs": {"enabled": false}})).unwrap();
        assert!(w.is_empty(), "{w:?}");

        for (logs, key) in [
            (json!({"max_templates": 0}), "logs.max_templates"),
            (json!({"max_body_bytes": 10}), "logs.max_body_bytes"),
            (
                json!({"max_records_per_request": 0}),
                "logs.max_records_per_request",
            ),
            (
                json!({"max_report_templates": 100_000}),
                "logs.max_report_templates",
            ),
            (json!({"enabled": "yes"}), "logs.enabled"),
        ] {
            let err = load(json!({"upstream_url": "http://a:1", "policy_providers": [grpc.clone()], "logs": logs}))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(key), "{err}");
        }
    }

    #[test]
    fn tero_environment_overrides() {
        let (c, _) = Config::from_value(json!({"upstream_url": "http://a:1"}), &|k| match k {
            "TERO_LISTEN_PORT" => Some("9191".into()),
            "TERO_PROMETHEUS_MAX_OUTPUT_BYTES_PER_SCRAPE" => Some("0".into()),
            "TERO_SERVICE_NAME" => Some("checkout".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.listen_port, 9191);
        assert_eq!(c.prometheus.max_output_bytes_per_scrape, 0);
        assert_eq!(c.service.name.as_deref(), Some("checkout"));
    }
}

//! The semantic checks: a decoded raw config becomes the typed [`Config`]
//! the rest of the Edge takes, or an error naming the key and the fix.

use super::*;

pub(super) fn validate(
    mut raw: RawConfig,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Config, ConfigError> {
    // `metrics_url` alone is the older scrape-only form: the full metrics
    // URL. Beside `upstream_url` it is where metric pushes go (the Tero
    // Edge meaning), so a config of either kind runs unchanged.
    let (key, url) = match (&raw.upstream_url, &raw.metrics_url) {
        (Some(u), _) => ("upstream_url", u.clone()),
        (None, Some(u)) => ("metrics_url", u.clone()),
        (None, None) => {
            return Err(ConfigError::key(
                "upstream_url",
                "required: the application's base URL, e.g. \"http://127.0.0.1:8080\"",
            ));
        }
    };
    let upstream = upstream_url(key, &url, "/metrics")?;
    if upstream.scheme_str() == Some("https") {
        warnings.push(ConfigWarning(format!(
            "{key}: https:// is for the push intake; the scrape path (/metrics) speaks http:// only, so scrapes through this Edge answer 502"
        )));
    }
    let intake = intake_settings(&mut raw, warnings)?;
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
        log_level: tero_edge_log_level(raw.log_level),
        service: raw.service,
        prometheus: raw.prometheus,
        providers,
        inventory,
        logs,
        intake,
    })
}

/// The `inventory` section. On by default wherever a grpc or http provider
/// names a control plane to report to (the first grpc one, else the first
/// http one); a section written out for an Edge with nowhere to send it
/// says so.
pub(super) fn inventory_settings(
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
pub(super) fn logs_settings(
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
pub(super) fn seconds(
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
pub(super) fn poll_settings(
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

/// Tero Edge writes the error level `err`; `tracing` reads that as a
/// target name, which would silence every log line.
fn tero_edge_log_level(level: String) -> String {
    if level.trim().eq_ignore_ascii_case("err") {
        "error".into()
    } else {
        level
    }
}

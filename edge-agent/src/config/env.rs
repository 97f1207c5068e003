//! Where the environment enters a config: `${VAR}` substitution in every
//! string, then `TERO_*` overrides of single keys, both before decoding so
//! that a substituted value is checked like a written one.

use super::*;

/// Replaces `${VAR}` (and `${VAR:-default}`) in every string; `$${` is a
/// literal `${`.
pub(super) fn substitute(
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

pub(super) fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
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
pub(super) fn apply_overrides(value: &mut Value, env: &dyn Fn(&str) -> Option<String>) {
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
        &["logs_url"],
        &["traces_url"],
        &["max_body_size"],
        &["max_decoded_bytes"],
        &["tap_enabled"],
        &["intake", "upstream_timeout_secs"],
        &["intake", "max_concurrent_requests"],
        &["intake", "max_buffered_bytes"],
        &["intake", "log_samples_per_second"],
        &["intake", "span_samples_per_second"],
        &["intake", "tap_allow_remote"],
        &["intake", "relay_other_paths"],
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

//! The push intake's settings: where pushes go and what a request may
//! cost. The destination and limit keys are the Tero Edge's own, at the top
//! level, so an `edge-otlp` or `edge-datadog` config runs unchanged; keys
//! of ours alone live in the `intake` section.

use super::*;

/// Bounds of the body limits: below 1 KiB no real batch fits, above 1 GiB
/// one request could hold the Edge's memory.
const MIN_BODY: u64 = 1024;
const MAX_BODY: u64 = 1024 * MIB;
/// Samples per second beyond which sampling would cost more than it tells.
const MAX_SAMPLES_PER_SECOND: u32 = 100_000;

pub(super) fn intake_settings(
    raw: &mut RawConfig,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<IntakeConfig, ConfigError> {
    let defaults = IntakeConfig::default();
    // `upstream_url` as written (no `/metrics` added): the base every push
    // without its own URL, and every relayed request, goes to.
    let upstream = match &raw.upstream_url {
        Some(url) => Some(PushTarget::Base(upstream_url("upstream_url", url, "/")?)),
        None => None,
    };
    let per_signal = |key: &str, url: &Option<String>| -> Result<Option<PushTarget>, ConfigError> {
        let Some(url) = url else { return Ok(None) };
        let uri = upstream_url(key, url, "/")?;
        Ok(Some(if matches!(uri.path(), "" | "/") {
            PushTarget::Base(uri)
        } else {
            PushTarget::Exact(uri)
        }))
    };
    let logs = per_signal("logs_url", &raw.logs_url)?;
    let traces = per_signal("traces_url", &raw.traces_url)?;
    // Alone, `metrics_url` is the older form of `upstream_url` (the
    // scrape's URL) and names no push destination.
    let metrics = if raw.upstream_url.is_some() {
        per_signal("metrics_url", &raw.metrics_url)?
    } else {
        None
    };

    let max_body_size = raw.max_body_size.unwrap_or(defaults.max_body_size);
    if !(MIN_BODY..=MAX_BODY).contains(&max_body_size) {
        return Err(ConfigError::key(
            "max_body_size",
            format!("must be between {MIN_BODY} and {MAX_BODY} bytes"),
        ));
    }
    // A raised body limit raises the decoded one with it: an identity body
    // the first admits must not be refused by the second.
    let max_decoded_bytes = raw
        .max_decoded_bytes
        .unwrap_or(defaults.max_decoded_bytes.max(max_body_size));
    if !(MIN_BODY..=MAX_BODY).contains(&max_decoded_bytes) {
        return Err(ConfigError::key(
            "max_decoded_bytes",
            format!("must be between {MIN_BODY} and {MAX_BODY} bytes"),
        ));
    }
    if max_decoded_bytes < max_body_size {
        return Err(ConfigError::key(
            "max_decoded_bytes",
            format!(
                "must not be below max_body_size ({max_body_size}): a body is never smaller decoded than on the wire"
            ),
        ));
    }

    let section = raw.intake.take().unwrap_or_default();
    let upstream_timeout = seconds(
        "intake.upstream_timeout_secs".into(),
        section.upstream_timeout_secs,
        defaults.upstream_timeout.as_secs_f64(),
        0.1..=600.0,
    )?;
    let max_concurrent_requests = section
        .max_concurrent_requests
        .unwrap_or(defaults.max_concurrent_requests);
    if !(1..=100_000).contains(&max_concurrent_requests) {
        return Err(ConfigError::key(
            "intake.max_concurrent_requests",
            "must be between 1 and 100000",
        ));
    }
    let max_buffered_bytes = section
        .max_buffered_bytes
        .unwrap_or(defaults.max_buffered_bytes.max(max_body_size));
    if !(MIN_BODY..=4 * MAX_BODY).contains(&max_buffered_bytes) {
        return Err(ConfigError::key(
            "intake.max_buffered_bytes",
            format!("must be between {MIN_BODY} and {} bytes", 4 * MAX_BODY),
        ));
    }
    if max_buffered_bytes < max_body_size {
        return Err(ConfigError::key(
            "intake.max_buffered_bytes",
            format!(
                "must not be below max_body_size ({max_body_size}): a body of that size could never be held"
            ),
        ));
    }
    let samples_per_second = |key: &str, value: Option<u32>, default: u32| {
        let value = value.unwrap_or(default);
        if value > MAX_SAMPLES_PER_SECOND {
            return Err(ConfigError::key(
                key,
                format!("must be between 0 (off) and {MAX_SAMPLES_PER_SECOND}"),
            ));
        }
        Ok(value)
    };
    let log_samples_per_second = samples_per_second(
        "intake.log_samples_per_second",
        section.log_samples_per_second,
        defaults.log_samples_per_second,
    )?;
    let span_samples_per_second = samples_per_second(
        "intake.span_samples_per_second",
        section.span_samples_per_second,
        defaults.span_samples_per_second,
    )?;
    let tap_enabled = raw.tap_enabled.unwrap_or(false);
    let tap_allow_remote = section.tap_allow_remote.unwrap_or(false);
    if tap_allow_remote && !tap_enabled {
        warnings.push(ConfigWarning(
            "intake.tap_allow_remote: the tap is off (tap_enabled: false); ignored".into(),
        ));
    }

    for (key, present, why) in [
        (
            "workspace_id",
            raw.workspace_id.is_some(),
            "the control plane knows an Edge by its service identity",
        ),
        (
            "max_upstream_retries",
            raw.max_upstream_retries.is_some(),
            "this Edge never retries a push itself; a failed push answers 502/503/504 with Retry-After and the client's exporter retries, so nothing is sent twice",
        ),
        (
            "worker_count",
            raw.worker_count.is_some(),
            "the runtime sizes its threads to the CPUs",
        ),
        (
            "thread_pool_count",
            raw.thread_pool_count.is_some(),
            "the runtime sizes its threads to the CPUs",
        ),
    ] {
        if present {
            warnings.push(ConfigWarning(format!(
                "{key}: a Tero Edge setting this Edge does not use ({why}); ignored"
            )));
        }
    }

    Ok(IntakeConfig {
        upstream,
        logs,
        metrics,
        traces,
        max_body_size,
        max_decoded_bytes,
        upstream_timeout,
        max_concurrent_requests,
        max_buffered_bytes,
        log_samples_per_second,
        span_samples_per_second,
        tap_enabled,
        tap_allow_remote,
        relay_other_paths: section
            .relay_other_paths
            .unwrap_or(defaults.relay_other_paths),
    })
}

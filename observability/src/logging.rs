//! Log output and span export, set up once at start-up.
//!
//! Logs go to stderr as text or JSON lines. Spans are exported over OTLP
//! only when the operator asks for it with the standard variables
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`;
//! `OTEL_EXPORTER_OTLP_PROTOCOL` picks `grpc` or `http/protobuf`), so a
//! sidecar without a collector pays nothing for tracing.

use std::str::FromStr;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?}: use text or json")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP trace exporter ({endpoint}): {reason}")]
    Exporter { endpoint: String, reason: String },
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// What a binary says about itself when it sets up telemetry.
#[derive(Debug, Clone)]
pub struct Service {
    /// `service.name` unless `OTEL_SERVICE_NAME` overrides it.
    pub name: &'static str,
    pub version: &'static str,
    /// The log filter when `RUST_LOG` is unset, e.g. `info`.
    pub default_filter: String,
    pub format: LogFormat,
}

/// Keeps the span pipeline alive; call [`Telemetry::shutdown`] before exit
/// so the last spans are sent.
#[must_use = "dropping Telemetry without shutdown loses the last spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("exporting_spans", &self.provider.is_some())
            .finish()
    }
}

/// The endpoint the operator configured for traces, if any.
pub fn otlp_endpoint() -> Option<String> {
    if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .into_iter()
    .filter_map(|k| std::env::var(k).ok())
    .find(|v| !v.trim().is_empty())
}

impl Telemetry {
    /// Installs the global subscriber. Must run inside a Tokio runtime: the
    /// span exporter's batches are sent from a task on it.
    pub fn init(service: Service) -> Result<Telemetry, TelemetryError> {
        let filter = EnvFilter::try_from_default_env()
            .or_else(|_| EnvFilter::try_new(&service.default_filter))
            .unwrap_or_else(|_| EnvFilter::new("info"));
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(colour_logs(
                std::io::IsTerminal::is_terminal(&std::io::stderr()),
                std::env::var_os("NO_COLOR").as_deref(),
            ));
        let fmt = match service.format {
            LogFormat::Text => fmt.boxed(),
            LogFormat::Json => fmt.json().boxed(),
        };
        let endpoint = otlp_endpoint();
        let provider = match &endpoint {
            Some(endpoint) => Some(tracer_provider(&service, endpoint)?),
            None => None,
        };
        let otel = provider
            .as_ref()
            .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service.name)));
        tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .with(otel)
            .try_init()
            .map_err(|_| TelemetryError::AlreadyInstalled)?;
        if let Some(endpoint) = endpoint {
            tracing::info!(%endpoint, "exporting spans over OTLP");
        }
        Ok(Telemetry { provider })
    }

    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans still queued and stops the exporter.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // The SDK's shutdown blocks until the batch task answers, so it
        // must not hold a runtime worker that task might need.
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = done {
            eprintln!("OTLP span exporter shutdown: {e}");
        }
    }
}

/// Colour only for a person at a terminal: a log file or a pipe would keep
/// the escape codes as noise, and `NO_COLOR` (any non-empty value, per
/// no-color.org) turns colour off everywhere.
fn colour_logs(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

fn tracer_provider(service: &Service, endpoint: &str) -> Result<SdkTracerProvider, TelemetryError> {
    // The exporter reads the protocol, headers, timeout and compression
    // from the OTEL_EXPORTER_OTLP_* variables itself.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .build()
        .map_err(|e| TelemetryError::Exporter {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        })?;
    let name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| service.name.to_owned());
    // The default builder adds OTEL_RESOURCE_ATTRIBUTES and the SDK's own
    // attributes; ours are set explicitly so they win.
    let resource = Resource::builder()
        .with_service_name(name)
        .with_attribute(KeyValue::new("service.version", service.version))
        .build();
    let processor = BatchSpanProcessor::builder(exporter, Tokio).build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_coloured_only_at_a_terminal_without_no_color() {
        assert!(colour_logs(true, None));
        assert!(colour_logs(true, Some("".as_ref())));
        assert!(!colour_logs(true, Some("1".as_ref())));
        assert!(!colour_logs(false, None));
    }
}

//! How Tero's binaries observe themselves, and how they are asked to stop.
//!
//! Both `tero-edge` and `tero-control-plane` log with `tracing`, export
//! their spans over OTLP when the standard `OTEL_EXPORTER_OTLP_*`
//! variables ask for it, and render Prometheus self-metrics. This crate is
//! the one place that wiring lives, so the two binaries behave the same
//! way and the SDK library stays free of exporter dependencies.

pub mod logging;
pub mod metrics;
pub mod process;
pub mod propagation;
pub mod shutdown;

pub use logging::{LogFormat, Telemetry, TelemetryError};

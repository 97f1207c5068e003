//! Tero Edge: a sidecar that sits between Prometheus and an application's
//! `/metrics`, streams every scrape through the loaded `tero.policy.v1`
//! metric policies and returns what they keep.
//!
//! The scrape path, one module per arrow:
//! [`proxy`] (routes, upstream, negotiation, compression) →
//! [`filter`] (line splitting, family tracking, series decisions, caps) →
//! [`exposition`] (what a line is); the last two live in the
//! `tero-prometheus` crate, shared with the `tero` command line. Policies arrive through
//! [`providers`] into the [`registry`], which compiles and swaps them
//! atomically; [`telemetry`] holds the self-metrics; [`inventory`] reports
//! what upstream exposes, before filtering, to the control plane, with the
//! log templates [`logs`] mines from samples posted to the Edge and the
//! span patterns [`spans`] finds in sampled pushed traces.
//!
//! The push path: [`intake`] takes OTLP (HTTP and gRPC) and Datadog pushes
//! on the same port, runs them through the `tero-otlp` codecs with the same
//! engine, and forwards what the policies keep; other paths are relayed.

pub mod config;
pub mod intake;
pub use tero_prometheus::{exposition, filter};
pub mod inventory;
pub mod logs;
pub mod providers;
pub mod proxy;
pub mod registry;
pub mod spans;
#[doc(hidden)]
pub mod synthetic;
pub mod telemetry;

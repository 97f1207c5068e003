//! The control plane's self-metrics (`GET /metrics`, Prometheus text) and
//! the request layer that feeds them and opens one span per request.
//!
//! Per-request figures are kept by route, never by raw path, so a scanner
//! probing random URLs cannot grow the series count: unknown paths share
//! one `unmatched` route, and gRPC methods beyond a fixed number share
//! `other`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State as AxState};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header;
use tero_observability::metrics::{LatencyHistogram, counter, family, label_value};
use tero_observability::{process, propagation};
use tracing::Instrument as _;

use crate::api::State;

/// Distinct routes tracked before new ones are counted as `other`.
const MAX_ROUTES: usize = 256;

#[derive(Debug, Default)]
struct RouteFigures {
    /// By response code: HTTP status, or the gRPC status when the answer
    /// carries it in its headers (errors, and streams refused at once).
    codes: HashMap<String, u64>,
    latency: LatencyHistogram,
}

/// `(protocol, route)`.
type RouteKey = (&'static str, String);

/// Request counts and latencies by protocol and route.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    routes: Mutex<HashMap<RouteKey, Arc<Mutex<RouteFigures>>>>,
    in_flight: AtomicU64,
}

impl RequestMetrics {
    fn figures(&self, protocol: &'static str, route: String) -> Arc<Mutex<RouteFigures>> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let key = if routes.len() >= MAX_ROUTES && !routes.contains_key(&(protocol, route.clone()))
        {
            (protocol, "other".to_owned())
        } else {
            (protocol, route)
        };
        routes.entry(key).or_default().clone()
    }

    fn render(&self, out: &mut String) {
        let routes: Vec<_> = {
            let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
            let mut v: Vec<_> = routes.iter().map(|(k, f)| (k.clone(), f.clone())).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        family(
            out,
            "tero_cp_requests_total",
            "counter",
            "Requests answered, by protocol, route and response code.",
        );
        for ((protocol, route), figures) in &routes {
            let figures = figures.lock().unwrap_or_else(|p| p.into_inner());
            let mut codes: Vec<_> = figures.codes.iter().collect();
            codes.sort();
            for (code, n) in codes {
                let _ = writeln!(
                    out,
                    "tero_cp_requests_total{{protocol=\"{protocol}\",route=\"{}\",code=\"{}\"}} {n}",
                    label_value(route),
                    label_value(code)
                );
            }
        }
        family(
            out,
            "tero_cp_request_duration_seconds",
            "histogram",
            "Time to the response headers, by protocol and route (for push streams: to the stream's start).",
        );
        for ((protocol, route), figures) in &routes {
            let figures = figures.lock().unwrap_or_else(|p| p.into_inner());
            let labels = format!("protocol=\"{protocol}\",route=\"{}\"", label_value(route));
            figures
                .latency
                .render(out, "tero_cp_request_duration_seconds", &labels);
        }
        family(
            out,
            "tero_cp_requests_in_flight",
            "gauge",
            "Requests whose response headers are not sent yet.",
        );
        let _ = writeln!(
            out,
            "tero_cp_requests_in_flight {}",
            self.in_flight.load(Relaxed)
        );
    }
}

fn is_grpc(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Middleware: a span per request (continuing the caller's trace), and
/// the request figures.
pub async fn observe(AxState(state): AxState<State>, req: Request, next: Next) -> Response {
    let grpc = is_grpc(&req);
    let matched = req.extensions().get::<MatchedPath>();
    let (protocol, route) = match (grpc, matched) {
        // One route per gRPC method of a served service (made-up methods
        // are folded into `unmatched` below); MAX_ROUTES is a last bound.
        (true, Some(_)) => ("grpc", req.uri().path().to_owned()),
        (true, None) => ("grpc", "unmatched".to_owned()),
        (false, Some(m)) => ("http", m.as_str().to_owned()),
        (false, None) => ("http", "unmatched".to_owned()),
    };
    let span = tracing::info_span!(
        "request",
        otel.kind = "server",
        otel.name = %format!("{} {route}", req.method()),
        http.request.method = %req.method(),
        http.route = %route,
        rpc.system = grpc.then_some("grpc"),
        http.response.status_code = tracing::field::Empty,
        rpc.grpc.status_code = tracing::field::Empty,
    );
    propagation::continue_trace(&span, req.headers());
    let metrics = &state.metrics.requests;
    metrics.in_flight.fetch_add(1, Relaxed);
    let started = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    metrics.in_flight.fetch_sub(1, Relaxed);
    let status = response.status().as_u16();
    // As i64: tracing-opentelemetry exports unsigned values as strings,
    // and the conventions make status codes integers.
    span.record("http.response.status_code", i64::from(status));
    let code = match response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
    {
        Some(grpc_status) => {
            match grpc_status.parse::<i64>() {
                Ok(code) => span.record("rpc.grpc.status_code", code),
                Err(_) => span.record("rpc.grpc.status_code", grpc_status),
            };
            grpc_status.to_owned()
        }
        // A gRPC answer without a status in its headers carries it in the
        // trailers; at this point it has started successfully.
        None if grpc && status == 200 => "0".to_owned(),
        None => status.to_string(),
    };
    // A made-up method of a served gRPC service is UNIMPLEMENTED: it must
    // not become a route of its own.
    let route = if grpc && code == "12" {
        "unmatched".to_owned()
    } else {
        route
    };
    let figures = metrics.figures(protocol, route);
    let mut figures = figures.lock().unwrap_or_else(|p| p.into_inner());
    *figures.codes.entry(code).or_default() += 1;
    figures.latency.observe(started.elapsed());
    response
}

/// Counters of the policy-change path, bumped where the events happen.
#[derive(Debug, Default)]
pub struct FleetCounters {
    pub snapshots_offered: AtomicU64,
    pub snapshots_acked: AtomicU64,
    pub snapshots_nacked: AtomicU64,
    pub stats_reports_stored: AtomicU64,
    pub stats_reports_duplicate: AtomicU64,
    pub stats_reports_failed: AtomicU64,
    pub streams_refused: AtomicU64,
    /// Per-policy entries of edges' reports not stored, by reason.
    pub statuses_unknown_policy: AtomicU64,
    pub statuses_invalid_counter: AtomicU64,
    pub statuses_too_many: AtomicU64,
    /// Volumes (spec 1.7.1) of edges' reports not stored: a count was
    /// negative or absurd.
    pub volumes_refused: AtomicU64,
    /// Syncs and streams refused: their instance id is bound to another key.
    pub instance_claims_refused: AtomicU64,
}

/// Everything `GET /metrics` renders that is not read from elsewhere.
#[derive(Debug, Default)]
pub struct Metrics {
    pub requests: RequestMetrics,
    pub fleet: FleetCounters,
    /// Shared with the listener, which counts them.
    pub connections: Arc<crate::server::ConnectionCounters>,
}

/// `GET /metrics`: unauthenticated, like every Prometheus target; it holds
/// counts, never policy content or credentials.
pub async fn handler(AxState(state): AxState<State>) -> Response {
    let mut out = String::with_capacity(16 * 1024);
    render(&state, &mut out);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

fn render(state: &State, out: &mut String) {
    process::render_build_info(out, "tero_cp", env!("CARGO_PKG_VERSION"));
    process::render(out);
    state.metrics.requests.render(out);

    let fleet = &state.metrics.fleet;
    counter(
        out,
        "tero_cp_snapshots_total",
        "Snapshots offered on push streams, and the edges' answers.",
        "event",
        [
            ("offered", &fleet.snapshots_offered),
            ("acked", &fleet.snapshots_acked),
            ("nacked", &fleet.snapshots_nacked),
        ],
    );
    counter(
        out,
        "tero_cp_stats_reports_total",
        "Statistics reports from edges, by outcome (duplicate: a resent report already stored).",
        "outcome",
        [
            ("stored", &fleet.stats_reports_stored),
            ("duplicate", &fleet.stats_reports_duplicate),
            ("failed", &fleet.stats_reports_failed),
        ],
    );
    counter(
        out,
        "tero_cp_edge_statuses_ignored_total",
        "Per-policy entries of edges' statistics reports and syncs not stored: for a policy that does not exist, with a negative or absurd counter, or in a stream report of too many entries.",
        "reason",
        [
            ("unknown_policy", &fleet.statuses_unknown_policy),
            ("invalid_counter", &fleet.statuses_invalid_counter),
            ("too_many", &fleet.statuses_too_many),
        ],
    );
    counter(
        out,
        "tero_cp_edge_volumes_refused_total",
        "Volumes (what an edge saw, spec 1.7.1) in edges' statistics reports and syncs not stored because a count was negative or absurd; the rest of the report was.",
        "",
        [("", &fleet.volumes_refused)],
    );
    counter(
        out,
        "tero_cp_instance_claims_refused_total",
        "Syncs and push streams refused because their service.instance.id is bound to another API key.",
        "",
        [("", &fleet.instance_claims_refused)],
    );
    counter(
        out,
        "tero_cp_streams_refused_total",
        "Push streams refused because --max-streams were open.",
        "",
        [("", &fleet.streams_refused)],
    );

    let connections = &state.metrics.connections;
    family(
        out,
        "tero_cp_connections",
        "gauge",
        "Connections open on this replica.",
    );
    let _ = writeln!(
        out,
        "tero_cp_connections {}",
        connections.open.load(Relaxed)
    );
    counter(
        out,
        "tero_cp_connections_refused_total",
        "Connections closed on accept because --max-connections were open.",
        "",
        [("", &connections.refused)],
    );
    counter(
        out,
        "tero_cp_connections_closed_total",
        "Connections closed by the server: no request within --header-read-timeout-secs (header_timeout), or none for --idle-timeout-secs (idle).",
        "reason",
        [
            ("header_timeout", &connections.closed_header_timeout),
            ("idle", &connections.closed_idle),
        ],
    );

    family(
        out,
        "tero_cp_push_streams",
        "gauge",
        "Push streams open on this replica.",
    );
    let open = state
        .max_streams
        .saturating_sub(state.stream_slots.available_permits());
    let _ = writeln!(out, "tero_cp_push_streams {open}");

    family(
        out,
        "tero_cp_edges",
        "gauge",
        "Edges this replica has heard from within their interval, by transport.",
    );
    let live = state.runtime.live_by_transport();
    for (transport, n) in [("stream", live.stream), ("poll", live.poll)] {
        let _ = writeln!(out, "tero_cp_edges{{transport=\"{transport}\"}} {n}");
    }

    let catalog = state.feed.current();
    family(
        out,
        "tero_cp_policies",
        "gauge",
        "Enabled policies in the catalog being served.",
    );
    let _ = writeln!(out, "tero_cp_policies {}", catalog.len());
    family(
        out,
        "tero_cp_catalog_generation",
        "gauge",
        "Catalog reloads since start; rises with every policy change.",
    );
    let _ = writeln!(out, "tero_cp_catalog_generation {}", catalog.generation());
}

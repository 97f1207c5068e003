//! `InventoryService/Report`: edges' metric inventories, authenticated with
//! their API key like Sync, over gRPC or `POST /api/v1/inventory`.

use axum::Router;
use axum::extract::State as AxState;
use axum::routing::post;
use tero_proto::controlplane::inventory_service_server::InventoryService;
use tero_proto::controlplane::{InventoryAck, InventoryReport};
use tonic::{Request, Response, Status};

use super::http::{EdgeAuth, EdgeBody, EdgeMessage, respond};
use super::{ApiError, State};
use crate::runtime::instance_id;
use crate::scope::lookup;
use crate::store::now_ms;

/// Families per report beyond this are refused: edges bound their reports
/// well below it, so more means a misbehaving client.
pub const MAX_FAMILIES: usize = 20_000;
/// Log templates per report beyond this are refused, for the same reason.
pub const MAX_LOG_TEMPLATES: usize = 20_000;
/// Span patterns one report may carry (edges bound theirs far lower).
pub const MAX_SPAN_PATTERNS: usize = 20_000;
/// Encoded report bytes accepted on either transport.
pub const MAX_REPORT_BYTES: usize = 64 * 1024 * 1024;

/// Checks and stores one report, then tells the analyst.
pub async fn report(state: &State, report: InventoryReport) -> Result<InventoryAck, ApiError> {
    let meta = report
        .client_metadata
        .as_ref()
        .ok_or_else(|| ApiError::invalid("client_metadata", "is required"))?;
    let instance = instance_id(meta).ok_or_else(|| {
        ApiError::invalid(
            "client_metadata.resource_attributes",
            "service.instance.id is required",
        )
    })?;
    let service = lookup(meta, "service.name")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "client_metadata.resource_attributes",
                "service.name is required",
            )
        })?;
    if report.session.is_empty() || report.seq == 0 {
        return Err(ApiError::invalid(
            "session",
            "a report needs a session and a seq from 1, so a retry is stored once",
        ));
    }
    if report.families.len() > MAX_FAMILIES {
        return Err(ApiError::invalid(
            "families",
            format!("{} families; at most {MAX_FAMILIES}", report.families.len()),
        ));
    }
    if report.window_end_unix_ms < report.window_start_unix_ms {
        return Err(ApiError::invalid(
            "window_end_unix_ms",
            "is before window_start_unix_ms",
        ));
    }
    if report.log_templates.len() > MAX_LOG_TEMPLATES {
        return Err(ApiError::invalid(
            "log_templates",
            format!(
                "{} templates; at most {MAX_LOG_TEMPLATES}",
                report.log_templates.len()
            ),
        ));
    }
    if report.span_patterns.len() > MAX_SPAN_PATTERNS {
        return Err(ApiError::invalid(
            "span_patterns",
            format!(
                "{} span patterns; at most {MAX_SPAN_PATTERNS}",
                report.span_patterns.len()
            ),
        ));
    }
    // Log templates and span patterns are counted once per report, whether
    // or not it also carries a scrape's inventory.
    if (!report.log_templates.is_empty() || !report.span_patterns.is_empty())
        && state
            .classifications
            .record_report(&instance, &service, &report)
            .await?
    {
        tracing::debug!(
            %instance, %service, templates = report.log_templates.len(),
            span_patterns = report.span_patterns.len(), "log templates and span patterns counted"
        );
        state.analyst.events_changed(&service);
    }
    if report.scrapes_inventoried == 0 {
        // No scrape was inventoried: it lists no families, and storing it
        // as the instance's latest would read as every family gone.
        tracing::debug!(%instance, %service, "inventory report without an inventoried scrape ignored");
        return Ok(InventoryAck { seq: report.seq });
    }
    let stored = state
        .store
        .put_inventory(&instance, &service, &report, now_ms())
        .await?;
    if stored {
        tracing::debug!(%instance, %service, families = report.families.len(), "inventory stored");
        state.analyst.service_changed(&service);
    }
    Ok(InventoryAck { seq: report.seq })
}

pub struct InventoryGrpc(pub State);

#[tonic::async_trait]
impl InventoryService for InventoryGrpc {
    async fn report(
        &self,
        request: Request<InventoryReport>,
    ) -> Result<Response<InventoryAck>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.0
            .auth
            .authenticate(header)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(report(&self.0, request.into_inner()).await?))
    }
}

impl EdgeMessage for InventoryReport {
    const NAME: &'static str = "InventoryReport";
}

/// The HTTP face of [`report`], for edges that reach the control plane over
/// HTTP only (an `http` provider, or a grpc provider whose stream is
/// blocked): authenticated with the edge's key like Sync, the body a
/// protobuf or JSON `InventoryReport`.
pub fn http_routes() -> Router<State> {
    Router::new().route(
        "/api/v1/inventory",
        post(
            |AxState(state): AxState<State>,
             _: EdgeAuth,
             EdgeBody(message): EdgeBody<InventoryReport, MAX_REPORT_BYTES>| async move {
                respond(report(&state, message).await)
            },
        ),
    )
}

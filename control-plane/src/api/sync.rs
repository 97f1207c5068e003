//! `tero.policy.v1.PolicyService/Sync`: the polling protocol every Tero
//! client speaks. Answers with the edge's scoped snapshot (cached per group
//! of edges) and stores the statistics deltas before answering, so an
//! answered sync's counters are durable.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Router;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::post;
use tero_proto::policy::policy_service_server::PolicyService;
use tero_proto::policy::{SyncRequest, SyncResponse, SyncType};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use super::admin::{check_identity, errors_by_policy};
use super::http::{EdgeAuth, EdgeBody, EdgeMessage, PROTOBUF, names_protobuf};
use super::{ApiError, State};
use crate::auth::Principal;
use crate::catalog::Snapshot;
use crate::ingest::DeltaBuilder;
use crate::runtime::instance_id;

/// Statuses beyond this in one request are refused: an edge sends one per
/// policy it runs, this is twice the largest set the edge is benchmarked
/// with (10,000), and the work per request must stay bounded.
pub const MAX_STATUSES: usize = 20_000;

pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Names the statistics report a sync carries (`SESSION/SEQ`): a Tero
/// extension of the protocol that makes poll statistics exactly-once. Other
/// clients do not send it and get the protocol's at-least-once deltas.
///
/// A sync that names its report is answered with the same header: the
/// client then knows this server stores each report once, and may resend a
/// report's volume with it (which the spec forbids towards servers that
/// cannot tell a replay). Volume sent with a named report is stored with
/// it, once; volume without one is stored as received, as the spec's
/// clients never replay it.
pub const STATS_REPORT_HEADER: &str = "tero-stats-report";

/// Parses a `tero-stats-report` value.
/// The report an edge named in its `tero-stats-report` header (gRPC
/// metadata or HTTP header, as text), if it named one.
fn report_named<E>(value: Option<Result<&str, E>>) -> Result<Option<(String, u64)>, ApiError> {
    value
        .map(|v| {
            v.map_err(|_| ApiError::invalid(STATS_REPORT_HEADER, "not text"))
                .and_then(parse_report_id)
        })
        .transpose()
}

pub fn parse_report_id(value: &str) -> Result<(String, u64), ApiError> {
    let bad = || {
        ApiError::invalid(
            STATS_REPORT_HEADER,
            format!("{value:?} is not SESSION/SEQ (a session name and a sequence number from 1)"),
        )
    };
    let (session, seq) = value.trim().split_once('/').ok_or_else(bad)?;
    let seq: u64 = seq.parse().map_err(|_| bad())?;
    if session.is_empty() || session.len() > 128 || seq == 0 {
        return Err(bad());
    }
    Ok((session.to_owned(), seq))
}

/// What a sync is answered with.
pub struct Synced {
    pub snapshot: Arc<Snapshot>,
    /// The report the request named, as `SESSION/SEQ`, when it was stored
    /// under that name (or found stored already): echoed to the client.
    pub report_stored_once: Option<String>,
}

/// Handles one Sync and returns the snapshot to answer with. `report`
/// names the statistics the request carries, when the client says.
pub async fn sync(
    state: &State,
    principal: &Principal,
    req: SyncRequest,
    report: Option<(String, u64)>,
) -> Result<Synced, ApiError> {
    if req.policy_statuses.len() > MAX_STATUSES {
        state
            .metrics
            .fleet
            .statuses_too_many
            .fetch_add(req.policy_statuses.len() as u64, Relaxed);
        return Err(ApiError::invalid(
            "policy_statuses",
            format!(
                "{} entries; at most {MAX_STATUSES}",
                req.policy_statuses.len()
            ),
        ));
    }
    tracing::debug!(
        statuses = req.policy_statuses.len(),
        last_hash = %req.last_successful_hash,
        "sync"
    );
    let meta = req.client_metadata.unwrap_or_default();
    let instance = instance_id(&meta);
    if let Some(instance) = &instance {
        check_identity(instance, &meta)?;
        if let Err(conflict) = state.runtime.claim(instance, principal.key_id()).await {
            state
                .metrics
                .fleet
                .instance_claims_refused
                .fetch_add(1, Relaxed);
            return Err(ApiError::PermissionDenied(conflict.to_string()));
        }
    }
    let catalog = state.feed.current();
    // Shadow policies only if this request's metadata declares the
    // capability: a poller that does not would enforce them.
    let snapshot = catalog.snapshot_for(&meta);

    // Only statuses of stored policies count: an edge key must not be able
    // to create rows for ids that never existed.
    let known = |id: &str| catalog.knows(id);
    let mut deltas = DeltaBuilder::default();
    for s in &req.policy_statuses {
        let _ = deltas.add_reported(
            known,
            &s.id,
            [
                s.match_hits,
                s.match_misses,
                s.tero_bytes_dropped,
                s.tero_records_dropped,
                s.tero_scrapes,
            ],
        );
    }
    // Volume needs an edge to belong to; a client without an instance id
    // is not one the runtime view can show.
    if let (Some(instance), Some(volume)) = (&instance, &req.volume) {
        let _ = deltas.add_volume(instance, volume);
    }
    state.note_refused(instance.as_deref().unwrap_or(""), &deltas);
    let identity = match (report, instance.clone()) {
        (Some((session, seq)), Some(instance)) => Some((instance, session, seq)),
        _ => None,
    };
    let report_stored_once = identity
        .as_ref()
        .map(|(_, session, seq)| format!("{session}/{seq}"));
    if !deltas.is_empty() {
        state.store_stats(deltas.build(identity)).await?;
    }
    if let Some(instance) = instance {
        let errors = errors_by_policy(
            known,
            req.policy_statuses
                .iter()
                .map(|s| (s.id.as_str(), s.errors.as_slice())),
        );
        state.runtime.polled(
            &instance,
            &meta,
            principal.key_id(),
            &snapshot.hash,
            &req.last_successful_hash,
            errors,
        );
    }
    Ok(Synced {
        snapshot,
        report_stored_once,
    })
}

/// The gRPC face of [`sync`].
#[derive(Debug, Clone)]
pub struct SyncGrpc(pub State);

#[tonic::async_trait]
impl PolicyService for SyncGrpc {
    async fn sync(&self, request: Request<SyncRequest>) -> Result<Response<SyncResponse>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let principal = self
            .0
            .auth
            .authenticate(header)
            .await
            .map_err(ApiError::from)?;
        let report = report_named(
            request
                .metadata()
                .get(STATS_REPORT_HEADER)
                .map(|v| v.to_str()),
        )?;
        let Synced {
            snapshot,
            report_stored_once,
        } = sync(&self.0, &principal, request.into_inner(), report).await?;
        let mut response = Response::new(SyncResponse {
            policies: snapshot.policies.clone(),
            hash: snapshot.hash.clone(),
            sync_timestamp_unix_nano: now_nanos(),
            recommended_sync_interval_seconds: self.0.feed.current().recommended_interval_secs(),
            sync_type: SyncType::Full as i32,
            error_message: String::new(),
            extension_configs: Vec::new(),
        });
        if let Some(value) = report_stored_once.and_then(|r| MetadataValue::try_from(r).ok()) {
            response.metadata_mut().insert(STATS_REPORT_HEADER, value);
        }
        Ok(response)
    }
}

impl EdgeMessage for SyncRequest {
    const NAME: &'static str = "SyncRequest";
}

/// The HTTP face of [`sync`], `POST /v1/policy/sync`: protobuf or proto3
/// JSON both ways, as the request's content type and accept headers say.
pub fn http_routes() -> Router<State> {
    Router::new().route("/v1/policy/sync", post(sync_http))
}

async fn sync_http(
    AxState(state): AxState<State>,
    EdgeAuth(principal): EdgeAuth,
    headers: HeaderMap,
    EdgeBody(request): EdgeBody<SyncRequest>,
) -> Result<HttpResponse, ApiError> {
    let report = report_named(headers.get(STATS_REPORT_HEADER).map(|v| v.to_str()))?;
    let Synced {
        snapshot,
        report_stored_once,
    } = sync(&state, &principal, request, report).await?;
    let mut response = if names_protobuf(&headers, header::ACCEPT) {
        (
            [(header::CONTENT_TYPE, PROTOBUF)],
            snapshot.protobuf_at(now_nanos()),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json")],
            snapshot.json_at(now_nanos()),
        )
            .into_response()
    };
    if let Some(value) = report_stored_once.and_then(|r| HeaderValue::try_from(r).ok()) {
        response.headers_mut().insert(STATS_REPORT_HEADER, value);
    }
    Ok(response)
}

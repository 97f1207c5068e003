//! `tero.policy.v1.PolicyService/Sync`: the polling protocol every Tero
//! client speaks. Answers with the edge's scoped snapshot (cached per group
//! of edges) and stores the statistics deltas before answering, so an
//! answered sync's counters are durable.

use std::sync::Arc;

use tero_proto::policy::policy_service_server::PolicyService;
use tero_proto::policy::{SyncRequest, SyncResponse, SyncType};
use tonic::{Request, Response, Status};

use super::admin::errors_by_policy;
use super::{ApiError, State};
use crate::auth::Principal;
use crate::catalog::Snapshot;
use crate::ingest::DeltaBuilder;
use crate::runtime::instance_id;

/// Statuses beyond this in one request are refused: no edge has that many
/// policies, and the work per request must stay bounded.
const MAX_STATUSES: usize = 100_000;

pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Handles one Sync and returns the snapshot to answer with.
pub async fn sync(
    state: &State,
    principal: &Principal,
    req: SyncRequest,
) -> Result<Arc<Snapshot>, ApiError> {
    if req.policy_statuses.len() > MAX_STATUSES {
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
    let catalog = state.feed.current();
    let snapshot = catalog.snapshot_for(&meta);

    let mut deltas = DeltaBuilder::default();
    for s in &req.policy_statuses {
        deltas.add(&s.id, s.match_hits, s.match_misses, 0, 0);
    }
    if !deltas.is_empty() {
        state.ingest.submit(deltas.build(None)).await?;
    }
    if let Some(instance) = instance_id(&meta) {
        let errors = errors_by_policy(
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
    Ok(snapshot)
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
        let snapshot = sync(&self.0, &principal, request.into_inner()).await?;
        Ok(Response::new(SyncResponse {
            policies: snapshot.policies.clone(),
            hash: snapshot.hash.clone(),
            sync_timestamp_unix_nano: now_nanos(),
            recommended_sync_interval_seconds: self.0.feed.current().recommended_interval_secs(),
            sync_type: SyncType::Full as i32,
            error_message: String::new(),
            extension_configs: Vec::new(),
        }))
    }
}

//! The admin API: policies, the fleet, statistics, keys and the audit log.

use std::collections::{BTreeMap, HashSet};

use tero_proto::controlplane::admin_service_server::AdminService;
use tero_proto::controlplane::*;
use tero_sdk::engine::is_shadow;
use tero_sdk::policy::{Signal, signal_of, validate};
use tonic::{Request, Response, Status};

use super::http::{
    Bare, CarriesPolicy, PathParam, PolicyJson, ProtoJson, ProtoQuery, QueryParams, admin_routes,
    parse_bool, parse_num, path_params, unknown_param,
};
use super::{ApiError, State};
use crate::auth::Principal;
use crate::catalog::{self, MAX_POLICY_ID_BYTES};
use crate::runtime::Runtime;
use crate::scope;
use crate::store::{PolicyChange, PolicyFilter, StoreError, VolumeCounts, now_ms};

/// The runtime view's volume windows, in minutes: `volume_last_5m` and
/// `volume_last_hour`, each ending with the current minute.
const RECENT_VOLUME_MINUTES: [i64; 2] = [5, 60];

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

fn page_size(requested: u32) -> usize {
    let size = match requested {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    size as usize
}

fn require_id(id: &str, field: &str) -> Result<(), ApiError> {
    if id.trim().is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    Ok(())
}

/// Checks a submitted policy and scope with the same validator the edges
/// compile with; the error names the policy and the first wrong field.
fn check_policy(
    policy: Option<tero_proto::policy::Policy>,
    scope: Option<Scope>,
) -> Result<(tero_proto::policy::Policy, Scope), ApiError> {
    let policy = policy.ok_or_else(|| ApiError::invalid("policy", "is required"))?;
    if policy.id.len() > MAX_POLICY_ID_BYTES {
        return Err(ApiError::invalid(
            "policy.id",
            format!(
                "{} bytes; a policy id is at most {MAX_POLICY_ID_BYTES}",
                policy.id.len()
            ),
        ));
    }
    if let Err(invalid) = validate(&policy) {
        let first = invalid.errors.first();
        let field = first.map(|e| format!("policy.{}", e.field_path()));
        let reasons: Vec<String> = invalid.errors.iter().map(|e| e.to_string()).collect();
        let id = (!invalid.policy_id.is_empty()).then(|| invalid.policy_id.clone());
        return Err(ApiError::InvalidArgument {
            message: format!(
                "policy {:?} is invalid: {}",
                invalid.policy_id,
                reasons.join("; ")
            ),
            policy_id: id,
            field,
        });
    }
    let scope = scope.unwrap_or_default();
    if let Err(e) = scope::validate(&scope) {
        return Err(ApiError::InvalidArgument {
            message: format!("policy {:?}: {e}", policy.id),
            policy_id: Some(policy.id.clone()),
            field: Some(e.path),
        });
    }
    Ok((policy, scope))
}

/// An update as a transport received it. Proto3 cannot tell a policy's
/// absent `enabled` from false; JSON can, and an update that leaves it out
/// keeps the stored state, so re-applying a file does not undo an
/// operator's disable.
pub struct PolicyUpdate {
    pub request: UpdatePolicyRequest,
    pub keep_enabled: bool,
}

impl From<UpdatePolicyRequest> for PolicyUpdate {
    fn from(request: UpdatePolicyRequest) -> Self {
        PolicyUpdate {
            request,
            keep_enabled: false,
        }
    }
}

/// The admin operations, independent of transport.
pub struct Admin<'a> {
    pub state: &'a State,
    pub principal: Principal,
}

impl Admin<'_> {
    fn actor(&self) -> String {
        self.principal.actor()
    }

    pub async fn create_policy(&self, req: CreatePolicyRequest) -> Result<ManagedPolicy, ApiError> {
        let (policy, scope) = check_policy(req.policy, req.scope)?;
        let created = self
            .state
            .store
            .create_policy(PolicyChange {
                policy,
                scope,
                actor: self.actor(),
                reason: req.reason,
            })
            .await?;
        self.state.feed.request_and_wait().await;
        Ok(created)
    }

    pub async fn update_policy(
        &self,
        update: impl Into<PolicyUpdate>,
    ) -> Result<ManagedPolicy, ApiError> {
        let PolicyUpdate {
            request: mut req,
            keep_enabled,
        } = update.into();
        if keep_enabled && let Some(policy) = req.policy.as_mut() {
            // The revision check makes this safe: if the state changed
            // since expected_revision, the update fails as stale.
            let current = self.state.store.get_policy(&policy.id).await?;
            policy.enabled = current.policy.is_some_and(|p| p.enabled);
        }
        let (policy, scope) = check_policy(req.policy, req.scope)?;
        if req.expected_revision == 0 {
            return Err(ApiError::InvalidArgument {
                message: "expected_revision: is required: send the revision you read (GetPolicy)"
                    .into(),
                policy_id: Some(policy.id.clone()),
                field: Some("expected_revision".into()),
            });
        }
        let updated = self
            .state
            .store
            .update_policy(
                PolicyChange {
                    policy,
                    scope,
                    actor: self.actor(),
                    reason: req.reason,
                },
                req.expected_revision,
            )
            .await?;
        self.state.feed.request_and_wait().await;
        Ok(updated)
    }

    pub async fn get_policy(&self, req: GetPolicyRequest) -> Result<ManagedPolicy, ApiError> {
        require_id(&req.id, "id")?;
        Ok(self.state.store.get_policy(&req.id).await?)
    }

    pub async fn list_policies(
        &self,
        req: ListPoliciesRequest,
    ) -> Result<ListPoliciesResponse, ApiError> {
        let target = match req.target.as_str() {
            "" => None,
            "log" => Some(Signal::Log),
            "metric" => Some(Signal::Metric),
            "trace" => Some(Signal::Trace),
            other => {
                return Err(ApiError::invalid(
                    "target",
                    format!("{other:?} is not one of log, metric, trace"),
                ));
            }
        };
        let labels = req
            .labels
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.trim().to_owned(), Some(v.trim().to_owned())),
                None => (l.trim().to_owned(), None),
            })
            .collect();
        let filter = PolicyFilter {
            labels,
            target,
            enabled: req.enabled,
            page_size: page_size(req.page_size),
            after_id: (!req.page_token.is_empty()).then_some(req.page_token),
        };
        let (policies, next) = self.state.store.list_policies(&filter).await?;
        Ok(ListPoliciesResponse {
            policies,
            next_page_token: next.unwrap_or_default(),
        })
    }

    pub async fn set_policy_enabled(
        &self,
        req: SetPolicyEnabledRequest,
    ) -> Result<ManagedPolicy, ApiError> {
        require_id(&req.id, "id")?;
        let changed = self
            .state
            .store
            .set_policy_enabled(
                &req.id,
                req.enabled,
                req.expected_revision,
                &self.actor(),
                &req.reason,
            )
            .await?;
        self.state.feed.request_and_wait().await;
        Ok(changed)
    }

    pub async fn delete_policy(
        &self,
        req: DeletePolicyRequest,
    ) -> Result<DeletePolicyResponse, ApiError> {
        require_id(&req.id, "id")?;
        let revision = self
            .state
            .store
            .delete_policy(&req.id, req.expected_revision, &self.actor(), &req.reason)
            .await?;
        self.state.feed.request_and_wait().await;
        Ok(DeletePolicyResponse { revision })
    }

    pub async fn policy_history(
        &self,
        req: GetPolicyHistoryRequest,
    ) -> Result<GetPolicyHistoryResponse, ApiError> {
        require_id(&req.id, "id")?;
        Ok(GetPolicyHistoryResponse {
            revisions: self.state.store.policy_history(&req.id).await?,
        })
    }

    /// Where a policy runs, from every edge seen within the last hour.
    pub async fn policy_deployment(
        &self,
        req: GetPolicyDeploymentRequest,
    ) -> Result<PolicyDeployment, ApiError> {
        require_id(&req.id, "id")?;
        self.state.store.get_policy(&req.id).await?;
        let catalog = self.state.feed.current();
        let seen_since = now_ms() - Runtime::gone_after_ms();
        let mut deployment = PolicyDeployment {
            policy_id: req.id.clone(),
            ..Default::default()
        };
        let mut after = String::new();
        loop {
            let edges = self
                .state
                .store
                .list_edges(None, seen_since, &after, 1000)
                .await?;
            let Some(last) = edges.last() else { break };
            after = last.instance_id.clone();
            for edge in edges {
                let snapshot = catalog.snapshot_for(&edge.metadata);
                if !snapshot.contains(&req.id) {
                    continue;
                }
                deployment.targeted += 1;
                if let Some(errors) = edge.policy_errors.get(&req.id) {
                    deployment.failed.push(PolicyFailure {
                        instance_id: edge.instance_id,
                        errors: errors.clone(),
                    });
                } else if edge.applied_hash == snapshot.hash {
                    deployment.applied += 1;
                } else {
                    deployment.pending += 1;
                }
            }
        }
        Ok(deployment)
    }

    pub async fn policy_stats(
        &self,
        req: GetPolicyStatsRequest,
    ) -> Result<GetPolicyStatsResponse, ApiError> {
        require_id(&req.id, "id")?;
        let to = if req.to_unix_ms > 0 {
            req.to_unix_ms
        } else {
            now_ms() + 60_000
        };
        let from = if req.from_unix_ms > 0 {
            req.from_unix_ms
        } else {
            to - 86_400_000
        };
        if from >= to {
            return Err(ApiError::invalid(
                "from_unix_ms",
                "must be before to_unix_ms",
            ));
        }
        // Deleted policies keep their statistics; ids never used have none.
        self.state.store.policy_ever_existed(&req.id).await?;
        let buckets = self.state.store.policy_stats(&req.id, from, to).await?;
        let mut total = StatsBucket {
            minute_unix_ms: from,
            ..Default::default()
        };
        for b in &buckets {
            total.hits = total.hits.saturating_add(b.hits);
            total.misses = total.misses.saturating_add(b.misses);
            total.bytes_dropped = total.bytes_dropped.saturating_add(b.bytes_dropped);
            total.series_dropped = total.series_dropped.saturating_add(b.series_dropped);
            total.scrapes = total.scrapes.saturating_add(b.scrapes);
        }
        let volume_share = self
            .volume_share(&req.id, total.series_dropped, from, to)
            .await?;
        Ok(GetPolicyStatsResponse {
            policy_id: req.id,
            from_unix_ms: from,
            to_unix_ms: to,
            total: Some(total),
            buckets,
            volume_share,
        })
    }

    /// What `dropped` is a share of: the volume of the policy's signal that
    /// the edges it runs on reported in `[from, to)`. Those edges are the
    /// ones its current scope, stage and mode reach among the edges heard
    /// from in the window (a scope changed within the window is not
    /// replayed). `None` for a policy that no longer exists.
    async fn volume_share(
        &self,
        id: &str,
        dropped: i64,
        from: i64,
        to: i64,
    ) -> Result<Option<VolumeShare>, ApiError> {
        let managed = match self.state.store.get_policy(id).await {
            Ok(managed) => managed,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(policy) = managed.policy.as_ref() else {
            return Ok(None);
        };
        let Some(signal) = signal_of(policy) else {
            return Ok(None);
        };
        let mut runs_on = HashSet::new();
        let mut after = String::new();
        loop {
            let edges = self
                .state
                .store
                .list_edges(None, from, &after, 1000)
                .await?;
            let Some(last) = edges.last() else { break };
            after = last.instance_id.clone();
            runs_on.extend(
                edges
                    .into_iter()
                    .filter(|e| catalog::reaches(policy, managed.scope.as_ref(), &e.metadata))
                    .map(|e| e.instance_id),
            );
        }
        let volumes = self.state.store.volume_by_edge(None, from, to).await?;
        let mut seen: i64 = 0;
        let mut reporting: u32 = 0;
        for (instance, counts) in &volumes {
            let records = counts.records(signal);
            if records > 0 && runs_on.contains(instance) {
                seen = seen.saturating_add(records);
                reporting += 1;
            }
        }
        Ok(Some(VolumeShare {
            signal: signal.as_str().to_owned(),
            records_dropped: dropped,
            records_seen: seen,
            edges: u32::try_from(runs_on.len()).unwrap_or(u32::MAX),
            edges_reporting: reporting,
            shadow: is_shadow(policy),
            share: (seen > 0).then(|| (dropped as f64 / seen as f64).min(1.0)),
        }))
    }

    pub async fn list_edges(&self, req: ListEdgesRequest) -> Result<ListEdgesResponse, ApiError> {
        let now = now_ms();
        let seen_since = if req.include_gone {
            0
        } else {
            now - Runtime::gone_after_ms()
        };
        let limit = page_size(req.page_size);
        let service = (!req.service_name.is_empty()).then_some(req.service_name.as_str());
        let mut records = self
            .state
            .store
            .list_edges(service, seen_since, &req.page_token, limit + 1)
            .await?;
        let more = records.len() > limit;
        records.truncate(limit);
        let next = if more {
            records
                .last()
                .map(|r| r.instance_id.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let mut edges: Vec<Edge> = records
            .into_iter()
            .map(|r| self.state.runtime.view(r, now))
            .collect();
        self.add_recent_volume(&mut edges, now).await?;
        Ok(ListEdgesResponse {
            edges,
            next_page_token: next,
        })
    }

    pub async fn get_edge(&self, req: GetEdgeRequest) -> Result<Edge, ApiError> {
        require_id(&req.instance_id, "instance_id")?;
        let record = self.state.store.get_edge(&req.instance_id).await?;
        let now = now_ms();
        let mut edge = [self.state.runtime.view(record, now)];
        self.add_recent_volume(&mut edge, now).await?;
        let [edge] = edge;
        Ok(edge)
    }

    /// Fills in the volume each edge reported over the recent windows. The
    /// edges are a page of the listing, ordered by instance id, so one
    /// range query per window covers them.
    async fn add_recent_volume(&self, edges: &mut [Edge], now: i64) -> Result<(), ApiError> {
        let (Some(first), Some(last)) = (edges.first(), edges.last()) else {
            return Ok(());
        };
        let range = (first.instance_id.clone(), last.instance_id.clone());
        let minute = now / 60_000 * 60_000;
        let mut windows = Vec::with_capacity(RECENT_VOLUME_MINUTES.len());
        for minutes in RECENT_VOLUME_MINUTES {
            let from = minute - (minutes - 1) * 60_000;
            windows.push(
                self.state
                    .store
                    .volume_by_edge(Some((&range.0, &range.1)), from, i64::MAX)
                    .await?,
            );
        }
        for edge in edges {
            let of = |window: &BTreeMap<String, VolumeCounts>| {
                window.get(&edge.instance_id).and_then(|v| v.to_proto())
            };
            edge.volume_last_5m = of(&windows[0]);
            edge.volume_last_hour = of(&windows[1]);
        }
        Ok(())
    }

    pub async fn create_api_key(
        &self,
        req: CreateApiKeyRequest,
    ) -> Result<CreateApiKeyResponse, ApiError> {
        if req.name.trim().is_empty() {
            return Err(ApiError::invalid(
                "name",
                "is required (e.g. the deployment using the key)",
            ));
        }
        let (key, secret) = self
            .state
            .auth
            .create_key(req.name.trim(), &self.actor())
            .await?;
        Ok(CreateApiKeyResponse {
            key: Some(key),
            secret,
        })
    }

    pub async fn list_api_keys(
        &self,
        req: ListApiKeysRequest,
    ) -> Result<ListApiKeysResponse, ApiError> {
        Ok(ListApiKeysResponse {
            keys: self.state.store.list_api_keys(req.include_revoked).await?,
        })
    }

    pub async fn revoke_api_key(&self, req: RevokeApiKeyRequest) -> Result<ApiKey, ApiError> {
        require_id(&req.id, "id")?;
        Ok(self.state.auth.revoke_key(&req.id, &self.actor()).await?)
    }

    pub async fn list_audit(
        &self,
        req: ListAuditEventsRequest,
    ) -> Result<ListAuditEventsResponse, ApiError> {
        let target = (!req.target.is_empty()).then_some(req.target.as_str());
        Ok(ListAuditEventsResponse {
            events: self
                .state
                .store
                .list_audit(target, req.after_seq, page_size(req.page_size))
                .await?,
        })
    }
}

/// The gRPC face of [`Admin`].
#[derive(Debug, Clone)]
pub struct AdminGrpc(pub State);

/// Authenticates a gRPC call as an administrator.
pub(crate) async fn admin_of<'a, T>(
    state: &'a State,
    req: &Request<T>,
) -> Result<Admin<'a>, Status> {
    let header = req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let principal = state
        .auth
        .authenticate_admin(header)
        .await
        .map_err(ApiError::from)?;
    Ok(Admin { state, principal })
}

macro_rules! grpc_methods {
    ($($method:ident($req:ty) -> $resp:ty => $call:ident;)*) => {
        #[tonic::async_trait]
        impl AdminService for AdminGrpc {
            $(
                async fn $method(&self, request: Request<$req>) -> Result<Response<$resp>, Status> {
                    let admin = admin_of(&self.0, &request).await?;
                    Ok(Response::new(admin.$call(request.into_inner()).await?))
                }
            )*
        }
    };
}

grpc_methods! {
    create_policy(CreatePolicyRequest) -> ManagedPolicy => create_policy;
    update_policy(UpdatePolicyRequest) -> ManagedPolicy => update_policy;
    get_policy(GetPolicyRequest) -> ManagedPolicy => get_policy;
    list_policies(ListPoliciesRequest) -> ListPoliciesResponse => list_policies;
    set_policy_enabled(SetPolicyEnabledRequest) -> ManagedPolicy => set_policy_enabled;
    delete_policy(DeletePolicyRequest) -> DeletePolicyResponse => delete_policy;
    get_policy_history(GetPolicyHistoryRequest) -> GetPolicyHistoryResponse => policy_history;
    get_policy_deployment(GetPolicyDeploymentRequest) -> PolicyDeployment => policy_deployment;
    get_policy_stats(GetPolicyStatsRequest) -> GetPolicyStatsResponse => policy_stats;
    list_edges(ListEdgesRequest) -> ListEdgesResponse => list_edges;
    get_edge(GetEdgeRequest) -> Edge => get_edge;
    create_api_key(CreateApiKeyRequest) -> CreateApiKeyResponse => create_api_key;
    list_api_keys(ListApiKeysRequest) -> ListApiKeysResponse => list_api_keys;
    revoke_api_key(RevokeApiKeyRequest) -> ApiKey => revoke_api_key;
    list_audit_events(ListAuditEventsRequest) -> ListAuditEventsResponse => list_audit;
}

// The HTTP face of [`Admin`].
admin_routes! {
    get "/api/v1/policies" => list_policies(ProtoQuery<ListPoliciesRequest>);
    post "/api/v1/policies" => create_policy(PolicyJson<CreatePolicyRequest>);
    get "/api/v1/policies/{id}" => get_policy(Bare<GetPolicyRequest>, id);
    put "/api/v1/policies/{id}" => update_policy(PolicyJson<PolicyUpdate>, id);
    delete "/api/v1/policies/{id}" => delete_policy(ProtoQuery<DeletePolicyRequest>, id);
    post "/api/v1/policies/{id}/enable" =>
        set_policy_enabled(ProtoJson<SetPolicyEnabledRequest>, id) { enabled: true };
    post "/api/v1/policies/{id}/disable" =>
        set_policy_enabled(ProtoJson<SetPolicyEnabledRequest>, id) { enabled: false };
    get "/api/v1/policies/{id}/history" => policy_history(Bare<GetPolicyHistoryRequest>, id);
    get "/api/v1/policies/{id}/deployment" =>
        policy_deployment(Bare<GetPolicyDeploymentRequest>, id);
    get "/api/v1/policies/{id}/stats" => policy_stats(ProtoQuery<GetPolicyStatsRequest>, id);
    get "/api/v1/edges" => list_edges(ProtoQuery<ListEdgesRequest>);
    get "/api/v1/edges/{id}" => get_edge(Bare<GetEdgeRequest>, id);
    get "/api/v1/keys" => list_api_keys(ProtoQuery<ListApiKeysRequest>);
    post "/api/v1/keys" => create_api_key(ProtoJson<CreateApiKeyRequest>);
    delete "/api/v1/keys/{id}" => revoke_api_key(Bare<RevokeApiKeyRequest>, id);
    get "/api/v1/audit" => list_audit(ProtoQuery<ListAuditEventsRequest>);
}

path_params! {
    GetPolicyRequest => id,
    DeletePolicyRequest => id,
    SetPolicyEnabledRequest => id,
    GetPolicyHistoryRequest => id,
    GetPolicyDeploymentRequest => id,
    GetPolicyStatsRequest => id,
    GetEdgeRequest => instance_id,
    RevokeApiKeyRequest => id,
}

impl CarriesPolicy for CreatePolicyRequest {
    type Message = Self;

    /// Absent means enabled, as the policy format defines.
    fn from_message(mut message: Self, enabled_absent: bool) -> Self {
        if enabled_absent && let Some(policy) = message.policy.as_mut() {
            policy.enabled = true;
        }
        message
    }
}

impl CarriesPolicy for PolicyUpdate {
    type Message = UpdatePolicyRequest;

    fn from_message(request: UpdatePolicyRequest, enabled_absent: bool) -> Self {
        PolicyUpdate {
            request,
            keep_enabled: enabled_absent,
        }
    }
}

/// The URL names the policy; a body that names another is refused.
impl PathParam for PolicyUpdate {
    fn set_path_param(&mut self, id: String) -> Result<(), ApiError> {
        let policy = self.request.policy.get_or_insert_with(Default::default);
        if policy.id.is_empty() {
            policy.id = id;
        } else if policy.id != id {
            return Err(ApiError::invalid(
                "policy.id",
                format!("{:?} does not match the URL's {id:?}", policy.id),
            ));
        }
        Ok(())
    }
}

impl QueryParams for ListPoliciesRequest {
    fn set(&mut self, key: &str, value: String) -> Result<(), ApiError> {
        match key {
            "label" | "labels" => self.labels.push(value),
            "target" => self.target = value,
            "enabled" => self.enabled = Some(parse_bool(key, &value)?),
            "page_size" | "pageSize" => self.page_size = parse_num(key, &value)?,
            "page_token" | "pageToken" => self.page_token = value,
            _ => return Err(unknown_param(key)),
        }
        Ok(())
    }
}

impl QueryParams for DeletePolicyRequest {
    fn set(&mut self, key: &str, value: String) -> Result<(), ApiError> {
        match key {
            "expected_revision" | "expectedRevision" => {
                self.expected_revision = parse_num(key, &value)?
            }
            "reason" => self.reason = value,
            _ => return Err(unknown_param(key)),
        }
        Ok(())
    }
}

impl QueryParams for GetPolicyStatsRequest {
    fn set(&mut self, key: &str, value: String) -> Result<(), ApiError> {
        match key {
            "from_unix_ms" | "fromUnixMs" => self.from_unix_ms = parse_num(key, &value)?,
            "to_unix_ms" | "toUnixMs" => self.to_unix_ms = parse_num(key, &value)?,
            _ => return Err(unknown_param(key)),
        }
        Ok(())
    }
}

impl QueryParams for ListEdgesRequest {
    fn set(&mut self, key: &str, value: String) -> Result<(), ApiError> {
        match key {
            "service_name" | "serviceName" => self.service_name = value,
            "include_gone" | "includeGone" => self.include_gone = parse_bool(key, &value)?,
            "page_size" | "pageSize" => self.page_size = parse_num(key, &value)?,
            "page_token" | "pageToken" => self.page_token = value,
            _ => return Err(unknown_param(key)),
        }
        Ok(())
    }
}

impl QueryParams for ListApiKeysRequest {
    fn set(&mut self, key: &str, value: String) -> Result<(), ApiError> {
        match key {
            "include_revoked" | "includeRevoked" => self.include_revoked = parse_bool(key, &value)?,
            _ => return Err(unknown_param(key)),
        }
        Ok(())
    }
}

impl QueryParams for ListAuditEventsRequest {
    fn set(&mut self, key: &str, value: String) -> Result<(), ApiError> {
        match key {
            "target" => self.target = value,
            "after_seq" | "afterSeq" => self.after_seq = parse_num(key, &value)?,
            "page_size" | "pageSize" => self.page_size = parse_num(key, &value)?,
            _ => return Err(unknown_param(key)),
        }
        Ok(())
    }
}

/// Errors kept per policy of an edge, and bytes kept per error: what an
/// edge reports is stored in its registry row, so it must stay small.
const MAX_ERRORS_PER_POLICY: usize = 8;
pub(crate) const MAX_ERROR_BYTES: usize = 1024;
/// The longest `service.instance.id`, and the largest `ClientMetadata`
/// (encoded) an edge may declare: both are stored in its registry row.
pub const MAX_INSTANCE_ID_BYTES: usize = 1024;
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

/// Refuses an edge identity the registry would not store.
pub(crate) fn check_identity(
    instance: &str,
    meta: &tero_proto::policy::ClientMetadata,
) -> Result<(), ApiError> {
    use prost::Message as _;
    if instance.len() > MAX_INSTANCE_ID_BYTES {
        return Err(ApiError::invalid(
            "client_metadata.resource_attributes",
            format!(
                "service.instance.id is {} bytes; at most {MAX_INSTANCE_ID_BYTES}",
                instance.len()
            ),
        ));
    }
    let size = meta.encoded_len();
    if size > MAX_METADATA_BYTES {
        return Err(ApiError::invalid(
            "client_metadata",
            format!("{size} bytes encoded; at most {MAX_METADATA_BYTES}"),
        ));
    }
    Ok(())
}

/// Per-policy errors as the runtime keeps them, from a sync's statuses or
/// a NACK: only for policies `known` accepts, bounded in number and length.
pub(crate) fn errors_by_policy<'a>(
    known: impl Fn(&str) -> bool,
    items: impl Iterator<Item = (&'a str, &'a [String])>,
) -> BTreeMap<String, Vec<String>> {
    items
        .filter(|(id, errors)| !errors.is_empty() && known(id))
        .map(|(id, errors)| {
            let kept = errors
                .iter()
                .take(MAX_ERRORS_PER_POLICY)
                .map(|e| truncate(e, MAX_ERROR_BYTES))
                .collect();
            (id.to_owned(), kept)
        })
        .collect()
}

pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::{FromRequest, Request};

    async fn policy_json<T: CarriesPolicy>(body: &'static str) -> T {
        let request = Request::builder()
            .uri("/x")
            .body(axum::body::Body::from(body))
            .expect("a request");
        match PolicyJson::<T>::from_request(request, &()).await {
            Ok(PolicyJson(message)) => message,
            Err(e) => panic!("{body}: {e}"),
        }
    }

    #[tokio::test]
    async fn a_policy_without_enabled_is_created_enabled_and_updated_as_stored() {
        let enabled = |r: CreatePolicyRequest| r.policy.is_some_and(|p| p.enabled);
        assert!(enabled(policy_json(r#"{"policy": {"id": "p"}}"#).await));
        assert!(!enabled(
            policy_json(r#"{"policy": {"id": "p", "enabled": false}}"#).await
        ));
        let update: PolicyUpdate = policy_json(r#"{"policy": {"id": "p"}}"#).await;
        assert!(update.keep_enabled);
        let update: PolicyUpdate =
            policy_json(r#"{"policy": {"id": "p", "enabled": false}}"#).await;
        assert!(!update.keep_enabled);
        // Over gRPC, false is all proto3 can say.
        assert!(!PolicyUpdate::from(UpdatePolicyRequest::default()).keep_enabled);
    }

    #[test]
    fn an_update_takes_its_policy_id_from_the_url_and_refuses_another() {
        let mut update = PolicyUpdate::from(UpdatePolicyRequest::default());
        update.set_path_param("p1".into()).expect("filled");
        assert_eq!(update.request.policy.map(|p| p.id).as_deref(), Some("p1"));

        let mut update = PolicyUpdate::from(UpdatePolicyRequest {
            policy: Some(tero_proto::policy::Policy {
                id: "p2".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        update.set_path_param("p2".into()).expect("the same id");
        let err = update.set_path_param("p1".into()).expect_err("another id");
        assert!(
            matches!(&err, ApiError::InvalidArgument { field: Some(f), .. } if f == "policy.id"),
            "{err:?}"
        );
    }

    #[test]
    fn an_edges_errors_are_kept_for_known_policies_and_bounded() {
        let many: Vec<String> = (0..20).map(|i| format!("e{i}")).collect();
        let long = vec!["é".repeat(2_000)];
        let none: Vec<String> = Vec::new();
        let errors = errors_by_policy(
            |id| id != "ghost",
            [
                ("p1", many.as_slice()),
                ("p2", long.as_slice()),
                ("ghost", many.as_slice()),
                ("p3", none.as_slice()),
            ]
            .into_iter(),
        );
        assert_eq!(errors.keys().collect::<Vec<_>>(), ["p1", "p2"]);
        assert_eq!(errors["p1"].len(), MAX_ERRORS_PER_POLICY);
        let cut = &errors["p2"][0];
        assert!(
            cut.len() <= MAX_ERROR_BYTES + '…'.len_utf8(),
            "{}",
            cut.len()
        );
        assert!(cut.ends_with('…'));
    }
}

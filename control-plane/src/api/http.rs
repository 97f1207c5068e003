//! HTTP/1.1 JSON: the admin API under `/api/v1/` and the Sync endpoint at
//! `POST /v1/policy/sync`.
//!
//! Request and response bodies are the proto3 JSON mapping of the gRPC
//! messages, so a JSON body can be written from the .proto files. One
//! convenience differs: a policy sent without `enabled` is created enabled,
//! as the policy format defines, where proto3 would read false.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tero_proto::controlplane::*;
use tero_proto::policy::SyncRequest;

use super::admin::Admin;
use super::sync::{STATS_REPORT_HEADER, now_nanos, parse_report_id, sync};
use super::{ApiError, State};

const PROTOBUF: &str = "application/x-protobuf";
/// Request bodies of the JSON API and of Sync, at most (inventory reports
/// and log samples have their own bounds).
pub const MAX_BODY_BYTES: usize = 2 << 20;

/// A request body, read only when the handler asks: after authentication,
/// so a caller without credentials learns nothing but 401 whatever it
/// sends, and an oversize body is the API's JSON error, not plain text.
pub struct Body(axum::body::Body);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: axum::extract::Request, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Body(req.into_body()))
    }
}

impl Body {
    /// The whole body, or `RESOURCE_EXHAUSTED`/413 beyond `limit` bytes.
    pub async fn read(self, limit: usize) -> Result<Bytes, ApiError> {
        let too_large = || {
            ApiError::TooLarge(format!(
                "request body: larger than {limit} bytes, the most this endpoint accepts"
            ))
        };
        if hyper::body::Body::size_hint(&self.0)
            .exact()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(too_large());
        }
        axum::body::to_bytes(self.0, limit).await.map_err(|e| {
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = cause {
                if err.is::<http_body_util::LengthLimitError>() {
                    return too_large();
                }
                cause = err.source();
            }
            ApiError::invalid("body", format!("could not be read: {e}"))
        })
    }
}

pub fn router(state: State) -> Router {
    Router::new()
        .route("/v1/policy/sync", post(sync_http))
        .route("/api/v1/policies", get(list_policies).post(create_policy))
        .route(
            "/api/v1/policies/{id}",
            get(get_policy).put(update_policy).delete(delete_policy),
        )
        .route("/api/v1/policies/{id}/enable", post(enable_policy))
        .route("/api/v1/policies/{id}/disable", post(disable_policy))
        .route("/api/v1/policies/{id}/history", get(policy_history))
        .route("/api/v1/policies/{id}/deployment", get(policy_deployment))
        .route("/api/v1/policies/{id}/stats", get(policy_stats))
        .route("/api/v1/edges", get(list_edges))
        .route("/api/v1/edges/{id}", get(get_edge))
        .route("/api/v1/keys", get(list_keys).post(create_key))
        .route("/api/v1/keys/{id}", axum::routing::delete(revoke_key))
        .route("/api/v1/audit", get(list_audit))
        .route("/api/v1/issues", get(list_issues))
        .route("/api/v1/issues/{id}", get(get_issue))
        .route("/api/v1/issues/{id}/accept", post(accept_issue))
        .route("/api/v1/issues/{id}/ignore", post(ignore_issue))
        .route("/api/v1/usage", get(list_usage).post(import_usage))
        .route("/api/v1/impact", get(get_impact))
        .route("/api/v1/inventory", post(report_inventory))
        .route("/api/v1/inventory/{service}", get(get_inventory))
        .route("/api/v1/logs", post(submit_logs))
        .route("/api/v1/event-types", get(list_event_types))
        .route("/api/v1/classify/runs", post(run_classification))
        .route("/api/v1/classify/status", get(classification_status))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(crate::metrics::handler))
        .with_state(state)
}

fn json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => ApiError::Internal(format!("response encoding failed: {e}")).into_response(),
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

async fn admin<'a>(state: &'a State, headers: &HeaderMap) -> Result<Admin<'a>, ApiError> {
    let principal = state
        .auth
        .authenticate_admin(authorization(headers))
        .await?;
    Ok(Admin { state, principal })
}

fn body_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::InvalidArgument {
        message: format!("request body is not valid JSON for this call: {e}"),
        policy_id: None,
        field: None,
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return serde_json::from_slice(b"{}").map_err(body_error);
    }
    serde_json::from_slice(body).map_err(body_error)
}

/// Decodes a request carrying a policy. When the policy says nothing about
/// `enabled`, `absent_enabled` decides: true on create (the policy format's
/// default); on update, `None` keeps the stored state, so re-applying a file
/// does not undo an operator's disable.
fn decode_with_policy<T: DeserializeOwned>(
    body: &[u8],
    absent_enabled: Option<bool>,
) -> Result<(T, bool), ApiError> {
    let mut value: serde_json::Value = serde_json::from_slice(body).map_err(body_error)?;
    let mut absent = false;
    if let Some(policy) = value.get_mut("policy").and_then(|p| p.as_object_mut())
        && !policy.contains_key("enabled")
    {
        absent = true;
        if let Some(enabled) = absent_enabled {
            policy.insert("enabled".into(), enabled.into());
        }
    }
    Ok((serde_json::from_value(value).map_err(body_error)?, absent))
}

/// Query parameters in order; repeated keys stay repeated.
fn query_pairs(raw: Option<String>) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::invalid("query", e.to_string()))
}

fn parse_num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::invalid(key, format!("{value:?} is not a number")))
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::invalid(
            key,
            format!("{value:?} is not true or false"),
        )),
    }
}

async fn ready(AxState(state): AxState<State>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database unreachable: {e}\n"),
        )
            .into_response(),
    }
}

/// Whether a header (`content-type`, `accept`) names protobuf.
fn names_protobuf(headers: &HeaderMap, name: header::HeaderName) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(PROTOBUF))
}

/// An edge's message, protobuf when its content type says so, else its
/// proto3 JSON; `what` names the message in the error.
fn decode_message<T: Message + Default + DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    if names_protobuf(headers, header::CONTENT_TYPE) {
        T::decode(body)
            .map_err(|e| ApiError::invalid("body", format!("not a protobuf {what}: {e}")))
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid("body", format!("not a JSON {what}: {e}")))
    }
}

async fn sync_http(AxState(state): AxState<State>, headers: HeaderMap, body: Body) -> Response {
    let principal = match state.auth.authenticate(authorization(&headers)).await {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let body = match body.read(MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let request: SyncRequest = match decode_message(&headers, &body, "SyncRequest") {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let report = match headers.get(STATS_REPORT_HEADER).map(|v| {
        v.to_str()
            .map_err(|_| ApiError::invalid(STATS_REPORT_HEADER, "not text"))
            .and_then(parse_report_id)
    }) {
        None => None,
        Some(Ok(report)) => Some(report),
        Some(Err(e)) => return e.into_response(),
    };
    match sync(&state, &principal, request, report).await {
        Ok(snapshot) => {
            if names_protobuf(&headers, header::ACCEPT) {
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
            }
        }
        Err(e) => e.into_response(),
    }
}

macro_rules! respond {
    ($e:expr) => {
        match $e {
            Ok(v) => json(&v),
            Err(e) => ApiError::from(e).into_response(),
        }
    };
}

async fn create_policy(AxState(state): AxState<State>, headers: HeaderMap, body: Body) -> Response {
    respond!(
        async {
            let admin = admin(&state, &headers).await?;
            let body = body.read(MAX_BODY_BYTES).await?;
            let (req, _): (CreatePolicyRequest, bool) = decode_with_policy(&body, Some(true))?;
            admin.create_policy(req).await
        }
        .await
    )
}

async fn update_policy(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond!(
        async {
            let admin = admin(&state, &headers).await?;
            let body = body.read(MAX_BODY_BYTES).await?;
            let (mut req, enabled_absent): (UpdatePolicyRequest, bool) =
                decode_with_policy(&body, None)?;
            let policy = req.policy.get_or_insert_with(Default::default);
            if policy.id.is_empty() {
                policy.id.clone_from(&id);
            } else if policy.id != id {
                return Err(ApiError::invalid(
                    "policy.id",
                    format!("{:?} does not match the URL's {id:?}", policy.id),
                ));
            }
            if enabled_absent {
                // The revision check makes this safe: if the state changed
                // since expectedRevision, the update fails as stale.
                let current = state.store.get_policy(&id).await?;
                policy.enabled = current.policy.is_some_and(|p| p.enabled);
            }
            admin.update_policy(req).await
        }
        .await
    )
}

async fn get_policy(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond!(
        async {
            admin(&state, &headers)
                .await?
                .get_policy(GetPolicyRequest { id })
                .await
        }
        .await
    )
}

async fn list_policies(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    respond!(
        async {
            let admin = admin(&state, &headers).await?;
            let mut req = ListPoliciesRequest::default();
            for (k, v) in query_pairs(q)? {
                match k.as_str() {
                    "label" | "labels" => req.labels.push(v),
                    "target" => req.target = v,
                    "enabled" => req.enabled = Some(parse_bool(&k, &v)?),
                    "page_size" | "pageSize" => req.page_size = parse_num(&k, &v)?,
                    "page_token" | "pageToken" => req.page_token = v,
                    other => return Err(ApiError::invalid(other, "unknown query parameter")),
                }
            }
            admin.list_policies(req).await
        }
        .await
    )
}

async fn set_enabled(
    state: State,
    id: String,
    headers: HeaderMap,
    body: Body,
    enabled: bool,
) -> Response {
    respond!(
        async {
            let admin = admin(&state, &headers).await?;
            let body = body.read(MAX_BODY_BYTES).await?;
            let mut req: SetPolicyEnabledRequest = decode(&body)?;
            req.id = id;
            req.enabled = enabled;
            admin.set_policy_enabled(req).await
        }
        .await
    )
}

async fn enable_policy(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    set_enabled(state, id, headers, body, true).await
}

async fn disable_policy(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    set_enabled(state, id, headers, body, false).await
}

async fn delete_policy(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    respond!(
        async {
            let admin = admin(&state, &headers).await?;
            let mut req = DeletePolicyRequest {
                id,
                ..Default::default()
            };
            for (k, v) in query_pairs(q)? {
                match k.as_str() {
                    "expected_revision" | "expectedRevision" => {
                        req.expected_revision = parse_num(&k, &v)?
                    }
                    "reason" => req.reason = v,
                    other => return Err(ApiError::invalid(other, "unknown query parameter")),
                }
            }
            admin.delete_policy(req).await
        }
        .await
    )
}

async fn policy_history(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond!(
        async {
            admin(&state, &headers)
                .await?
                .policy_history(GetPolicyHistoryRequest { id })
                .await
        }
        .await
    )
}

async fn policy_deployment(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond!(
        async {
            admin(&state, &headers)
                .await?
                .policy_deployment(GetPolicyDeploymentRequest { id })
                .await
        }
        .await
    )
}

async fn policy_stats(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    respond!(
        async {
            let admin = admin(&state, &headers).await?;
            let mut req = GetPolicyStatsRequest {
                id,
                ..Default::default()
            };
            for (k, v) in query_pairs(q)? {
                match k.as_str() {
                    "from_unix_ms" | "fromUnixMs" => req.from_unix_ms = parse_num(&k, &v)?,
                    "to_unix_ms" | "toUnixMs" => req.to_unix_ms = parse_num(&k, &v)?,
                    other => return Err(ApiError::invalid(other, "unknown query parameter")),
                }
            }
            admin.policy_stats(req).await
        }
        .await
    )
}

async fn list_edges(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    respond!(
        async {
            let admin = admin(&state, &headers).await?;
            let mut req = ListEdgesRequest::default();
            for (k, v) in query_pairs(q)? {
                match k.as_str() {
                    "service_name" | "serviceName" => req.service_name = v,
                    "include_gone" | "includeGone" => req.include_gone = parse_bool(&k, &v)?,
                    "page_size" | "pageSize" => req.page_size = parse_num(&k, &v)?,
                    "page_token" | "pageToken" => req.page_token = v,
                    other => return Err(ApiError::invalid(other, "unknown query parameter")),
                }
            }
            admin.list_edges(req).await
        }
        .await
    )
}

async fn get_edge(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond!(
        async {
            admin(&state, &headers)
                .await?
                .get_edge(GetEdgeRequest { instance_id: id })
                .await
        }
        .await
    )
}

async fn list_keys(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    respond!(
        async {
            let admin = admin(&state, &headers).await?;
            let mut req = ListApiKeysRequest::default();
            for (k, v) in query_pairs(q)? {
                match k.as_str() {
                    "include_revoked" | "includeRevoked" => {
                        req.include_revoked = parse_bool(&k, &v)?
                    }
                    other => return Err(ApiError::invalid(other, "unknown query parameter")),
                }
            }
            admin.list_api_keys(req).await
        }
        .await
    )
}

async fn create_key(AxState(state): AxState<State>, headers: HeaderMap, body: Body) -> Response {
    respond!(
        async {
            let admin = admin(&state, &headers).await?;
            let body = body.read(MAX_BODY_BYTES).await?;
            admin.create_api_key(decode(&body)?).await
        }
        .await
    )
}

async fn revoke_key(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond!(
        async {
            admin(&state, &headers)
                .await?
                .revoke_api_key(RevokeApiKeyRequest { id })
                .await
        }
        .await
    )
}

async fn list_audit(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    respond!(
        async {
            let admin = admin(&state, &headers).await?;
            let mut req = ListAuditEventsRequest::default();
            for (k, v) in query_pairs(q)? {
                match k.as_str() {
                    "target" => req.target = v,
                    "after_seq" | "afterSeq" => req.after_seq = parse_num(&k, &v)?,
                    "page_size" | "pageSize" => req.page_size = parse_num(&k, &v)?,
                    other => return Err(ApiError::invalid(other, "unknown query parameter")),
                }
            }
            admin.list_audit(req).await
        }
        .await
    )
}

// ----- issues, usage, impact, inventory --------------------------------------

async fn list_issues(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    respond!(
        async {
            let admin = admin(&state, &headers).await?;
            let mut req = ListIssuesRequest::default();
            for (k, v) in query_pairs(q)? {
                match k.as_str() {
                    "service" => req.service = v,
                    "status" => req.status = v,
                    "kind" => req.kind = v,
                    other => return Err(ApiError::invalid(other, "unknown query parameter")),
                }
            }
            admin.list_issues(req).await
        }
        .await
    )
}

async fn get_issue(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond!(
        async {
            admin(&state, &headers)
                .await?
                .get_issue(GetIssueRequest { id })
                .await
        }
        .await
    )
}

async fn accept_issue(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond!(
        async {
            let admin = admin(&state, &headers).await?;
            let body = body.read(MAX_BODY_BYTES).await?;
            let mut req: AcceptIssueRequest = decode(&body)?;
            req.id = id;
            admin.accept_issue(req).await
        }
        .await
    )
}

async fn ignore_issue(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond!(
        async {
            let admin = admin(&state, &headers).await?;
            let body = body.read(MAX_BODY_BYTES).await?;
            let mut req: IgnoreIssueRequest = decode(&body)?;
            req.id = id;
            admin.ignore_issue(req).await
        }
        .await
    )
}

async fn list_usage(AxState(state): AxState<State>, headers: HeaderMap) -> Response {
    respond!(
        async {
            admin(&state, &headers)
                .await?
                .list_usage_sources(ListUsageSourcesRequest {})
                .await
        }
        .await
    )
}

async fn import_usage(AxState(state): AxState<State>, headers: HeaderMap, body: Body) -> Response {
    respond!(
        async {
            let admin = admin(&state, &headers).await?;
            let body = body.read(MAX_BODY_BYTES).await?;
            let req: ImportUsageRequest = decode(&body)?;
            admin.import_usage(req).await
        }
        .await
    )
}

async fn get_impact(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    respond!(
        async {
            let admin = admin(&state, &headers).await?;
            let mut req = GetImpactRequest::default();
            for (k, v) in query_pairs(q)? {
                match k.as_str() {
                    "policy_id" | "policyId" => req.policy_id = v,
                    other => return Err(ApiError::invalid(other, "unknown query parameter")),
                }
            }
            admin.get_impact(req).await
        }
        .await
    )
}

/// `InventoryService/Report` for edges that reach the control plane over
/// HTTP only (an `http` provider, or a grpc provider whose stream is
/// blocked): authenticated with the edge's key like Sync, the body a
/// protobuf or JSON `InventoryReport`.
async fn report_inventory(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond!(
        async {
            state.auth.authenticate(authorization(&headers)).await?;
            let body = body.read(super::inventory::MAX_REPORT_BYTES).await?;
            let report = decode_message(&headers, &body, "InventoryReport")?;
            super::inventory::report(&state, report).await
        }
        .await
    )
}

async fn get_inventory(
    AxState(state): AxState<State>,
    Path(service): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond!(
        async {
            admin(&state, &headers)
                .await?
                .get_inventory(GetInventoryRequest { service })
                .await
        }
        .await
    )
}

// ----- classification ----------------------------------------------------

async fn submit_logs(AxState(state): AxState<State>, headers: HeaderMap, body: Body) -> Response {
    respond!(
        async {
            let admin = admin(&state, &headers).await?;
            let body = body.read(super::classify::MAX_REQUEST_BYTES).await?;
            let req: SubmitLogsRequest = decode(&body)?;
            admin.submit_logs(req).await
        }
        .await
    )
}

async fn list_event_types(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    respond!(
        async {
            let admin = admin(&state, &headers).await?;
            let mut req = ListEventTypesRequest::default();
            for (k, v) in query_pairs(q)? {
                match k.as_str() {
                    "service" => req.service = v,
                    "kind" => req.kind = v,
                    "category" => req.category = v,
                    "verdict" => req.verdict = v,
                    "unclassified" => {
                        req.unclassified = v
                            .parse()
                            .map_err(|_| ApiError::invalid("unclassified", "is true or false"))?
                    }
                    other => return Err(ApiError::invalid(other, "unknown query parameter")),
                }
            }
            admin.list_event_types(req).await
        }
        .await
    )
}

async fn run_classification(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond!(
        async {
            let admin = admin(&state, &headers).await?;
            let body = body.read(MAX_BODY_BYTES).await?;
            let req: RunClassificationRequest = decode(&body)?;
            admin.run_classification(req).await
        }
        .await
    )
}

async fn classification_status(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    respond!(
        async {
            let admin = admin(&state, &headers).await?;
            let mut req = GetClassificationStatusRequest::default();
            for (k, v) in query_pairs(q)? {
                match k.as_str() {
                    "runs" => {
                        req.runs = v
                            .parse()
                            .map_err(|_| ApiError::invalid("runs", "is a number of runs"))?
                    }
                    other => return Err(ApiError::invalid(other, "unknown query parameter")),
                }
            }
            admin.classification_status(req).await
        }
        .await
    )
}

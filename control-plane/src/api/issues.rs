//! The issues API: issues with their evidence, accepting (creates the
//! recommended policy) and ignoring them, usage sources, impact, and the
//! merged inventory detectors read.

use tero_proto::controlplane::issues_service_server::IssuesService;
use tero_proto::controlplane::*;
use tero_sdk::engine::is_shadow;
use tero_usage::{SourceKind, parse_source};
use tonic::{Request, Response, Status};

use super::admin::Admin;
use super::http::{
    Bare, ProtoJson, ProtoQuery, QueryParams, admin_routes, path_params, unknown_param,
};
use super::{ApiError, State};
use crate::issues::{ISSUE_LABEL, MODE_LABEL, SHADOW_MODE, status, string_label};
use crate::store::{StoreError, StoredUsage, now_ms};

/// Usage sources larger than this are refused (a dashboard is kilobytes).
pub const MAX_USAGE_BYTES: usize = 8 * 1024 * 1024;

fn check_choice(field: &str, value: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if value.is_empty() || allowed.contains(&value) {
        return Ok(());
    }
    Err(ApiError::invalid(
        field,
        format!("{value:?} is not one of {}", allowed.join(", ")),
    ))
}

/// A `kind` filter names a detector, metric or log/trace (empty: any).
fn check_kind(kind: &str) -> Result<(), ApiError> {
    let mut kinds: Vec<&str> = crate::issues::detect::kind::ALL.to_vec();
    kinds.extend(crate::issues::detect::events::kind::ALL);
    check_choice("kind", kind, &kinds)
}

impl Admin<'_> {
    /// Issues matching the filters, with what a client needs to say why a
    /// list is empty: counts per status, usage sources, inventories.
    pub async fn list_issues(
        &self,
        req: ListIssuesRequest,
    ) -> Result<ListIssuesResponse, ApiError> {
        let statuses = parse_statuses(&req.status)?;
        check_kind(&req.kind)?;
        let store = &self.state.store;
        let issues = store
            .list_issues_in(&req.service, &statuses, &req.kind)
            .await?;
        let status_counts = store
            .count_issues(&req.service, &req.kind)
            .await?
            .into_iter()
            .collect();
        let since = now_ms() - self.state.analyst.config().lookback_ms;
        // Log templates and span patterns are an inventory too: a service
        // whose edges report only those is analysed.
        let last_inventory = store
            .last_inventory_at()
            .await?
            .max(store.last_event_report_at().await?);
        Ok(ListIssuesResponse {
            issues,
            status_counts,
            usage_sources: store.count_usage_sources().await?,
            last_inventory_unix_ms: last_inventory.unwrap_or(0),
            inventoried_services: store.count_analysable_services(since, &req.service).await?,
        })
    }

    pub async fn get_issue(&self, req: GetIssueRequest) -> Result<Issue, ApiError> {
        Ok(self.state.store.get_issue(&req.id).await?)
    }

    /// Creates the issue's recommended policy, linked to it by label, and
    /// marks the issue in progress.
    pub async fn accept_issue(
        &self,
        req: AcceptIssueRequest,
    ) -> Result<AcceptIssueResponse, ApiError> {
        check_choice("mode", &req.mode, &["active", "draft", "shadow"])?;
        let mut issue = self.state.store.get_issue(&req.id).await?;
        if issue.status == status::MERGED {
            return Err(ApiError::Aborted {
                message: format!(
                    "issue {} was merged into {}, which recommends the same change: accept {} \
                     instead",
                    issue.id,
                    display_or(&issue.merged_into, "another issue"),
                    display_or(&issue.merged_into, "that issue"),
                ),
                current_revision: 0,
            });
        }
        if !issue.policy_id.is_empty() {
            // A policy deleted since (the issue was reopened) may be
            // replaced by accepting again; a live one may not.
            match self.state.store.get_policy(&issue.policy_id).await {
                Err(StoreError::NotFound { .. }) => issue.policy_id.clear(),
                Err(e) => return Err(e.into()),
                Ok(current) if req.mode == "active" && !enforced(&current) => {
                    return self.promote(issue, current, &req.reason).await;
                }
                Ok(_) => {
                    return Err(ApiError::AlreadyExists(format!(
                        "issue {} was already accepted as policy {:?}; enable or update that policy instead",
                        issue.id, issue.policy_id
                    )));
                }
            }
        }
        if issue.status != status::OPEN {
            return Err(ApiError::Aborted {
                message: format!(
                    "issue {} is {}: only open issues can be accepted",
                    issue.id, issue.status
                ),
                current_revision: 0,
            });
        }
        let event_issue = crate::issues::is_event_kind(&issue.kind);
        let no_policy = || ApiError::Aborted {
            message: if event_issue {
                format!(
                    "issue {} has no recommended policy (see its summary for why); nothing to \
                     accept",
                    issue.id
                )
            } else {
                format!(
                    "issue {} has no recommended policy: dropping its series would remove data \
                     that queries read or may read (see its summary for the lossless fix); \
                     nothing to accept",
                    issue.id
                )
            },
            current_revision: 0,
        };
        let mut recommended = issue.recommended.clone().ok_or_else(no_policy)?;
        let policy = recommended.policy.as_mut().ok_or_else(no_policy)?;
        policy
            .labels
            .retain(|kv| kv.key != ISSUE_LABEL && kv.key != MODE_LABEL);
        policy.labels.push(string_label(ISSUE_LABEL, &issue.id));
        // Shadow unless asked: the impact is seen before anything is dropped.
        let mode = if req.mode.is_empty() {
            "shadow"
        } else {
            req.mode.as_str()
        };
        policy.enabled = mode != "draft";
        if mode == "shadow" {
            policy.labels.push(string_label(MODE_LABEL, SHADOW_MODE));
        }
        recommended.reason = if req.reason.is_empty() {
            format!("accepted issue {}: {}", issue.id, issue.title)
        } else {
            format!("accepted issue {}: {}", issue.id, req.reason)
        };
        let created = self.create_policy(recommended).await?;
        issue.policy_id = created
            .policy
            .as_ref()
            .map(|p| p.id.clone())
            .unwrap_or_default();
        let remediation = match mode {
            "draft" => status::DRAFT,
            "shadow" => status::SHADOW,
            _ => status::ACTIVE,
        };
        let audit =
            serde_json::json!({ "policy_id": issue.policy_id, "mode": mode, "reason": req.reason });
        self.record_acceptance(issue, remediation, audit, created)
            .await
    }

    /// The issue's side of an accept: in progress with its remediation,
    /// saved and audited, answered with the policy the accept made.
    async fn record_acceptance(
        &self,
        mut issue: Issue,
        remediation: &str,
        audit: serde_json::Value,
        policy: ManagedPolicy,
    ) -> Result<AcceptIssueResponse, ApiError> {
        issue.status = status::IN_PROGRESS.into();
        issue.remediation = remediation.into();
        issue.updated_at_unix_ms = now_ms();
        let issue = self.state.store.save_issue(issue).await?;
        self.state
            .store
            .audit(&self.principal.actor(), "issue.accept", &issue.id, audit)
            .await?;
        Ok(AcceptIssueResponse {
            issue: Some(issue),
            policy: Some(policy),
        })
    }

    /// `accept --mode active` of an issue accepted in shadow (or as a
    /// draft): its policy is enforced from now on, and its impact measured
    /// anew.
    async fn promote(
        &self,
        issue: Issue,
        current: ManagedPolicy,
        reason: &str,
    ) -> Result<AcceptIssueResponse, ApiError> {
        let mut policy = current.policy.clone().unwrap_or_default();
        policy.labels.retain(|kv| kv.key != MODE_LABEL);
        policy.enabled = true;
        let updated = self
            .update_policy(UpdatePolicyRequest {
                policy: Some(policy),
                scope: current.scope.clone(),
                expected_revision: current.revision,
                reason: if reason.is_empty() {
                    format!("issue {} accepted as active", issue.id)
                } else {
                    format!("issue {} accepted as active: {reason}", issue.id)
                },
            })
            .await?;
        let audit = serde_json::json!({ "policy_id": issue.policy_id, "mode": "active", "promoted": true, "reason": reason });
        self.record_acceptance(issue, status::ACTIVE, audit, updated)
            .await
    }

    /// Dismisses an issue without remediation; who and why are recorded.
    pub async fn ignore_issue(&self, req: IgnoreIssueRequest) -> Result<Issue, ApiError> {
        if req.reason.trim().is_empty() {
            return Err(ApiError::invalid(
                "reason",
                "is required: say why the issue is ignored, for whoever reviews it next",
            ));
        }
        let mut issue = self.state.store.get_issue(&req.id).await?;
        issue.status = status::IGNORED.into();
        issue.ignored_by = self.principal.actor();
        issue.ignored_reason = req.reason.clone();
        issue.updated_at_unix_ms = now_ms();
        let issue = self.state.store.save_issue(issue).await?;
        self.state
            .store
            .audit(
                &self.principal.actor(),
                "issue.ignore",
                &issue.id,
                serde_json::json!({ "reason": req.reason }),
            )
            .await?;
        Ok(issue)
    }

    /// Parses and stores a usage source, then re-runs the detectors.
    pub async fn import_usage(&self, req: ImportUsageRequest) -> Result<UsageSource, ApiError> {
        if req.name.trim().is_empty() {
            return Err(ApiError::invalid(
                "name",
                "is required (e.g. the file name)",
            ));
        }
        if req.content.len() > MAX_USAGE_BYTES {
            return Err(ApiError::invalid(
                "content",
                format!("{} bytes; at most {MAX_USAGE_BYTES}", req.content.len()),
            ));
        }
        let kind = match req.kind.as_str() {
            "" => None,
            other => Some(SourceKind::from_name(other).ok_or_else(|| {
                ApiError::invalid(
                    "kind",
                    format!("{other:?} is not prometheus_rules or grafana_dashboard"),
                )
            })?),
        };
        let parsed = parse_source(&req.name, kind, &req.content)
            .map_err(|e| ApiError::invalid("content", e.to_string()))?;
        let stored = StoredUsage {
            name: req.name.clone(),
            kind: parsed.kind.name().to_owned(),
            imported_at: now_ms(),
            imported_by: self.principal.actor(),
            parsed: serde_json::to_string(&parsed)
                .map_err(|e| ApiError::Internal(format!("usage encoding failed: {e}")))?,
        };
        self.state.store.put_usage(&stored).await?;
        self.state.analyst.all_changed();
        Ok(usage_source(&stored, &parsed))
    }

    pub async fn list_usage_sources(
        &self,
        _req: ListUsageSourcesRequest,
    ) -> Result<ListUsageSourcesResponse, ApiError> {
        let mut sources = Vec::new();
        for stored in self.state.store.list_usage().await? {
            let parsed = serde_json::from_str(&stored.parsed).map_err(|e| {
                ApiError::Internal(format!(
                    "stored usage source {:?} is unreadable: {e}",
                    stored.name
                ))
            })?;
            sources.push(usage_source(&stored, &parsed));
        }
        Ok(ListUsageSourcesResponse { sources })
    }

    /// Removes a usage source, then re-runs the detectors: what only it
    /// used may now be unused, and the issues say so.
    pub async fn delete_usage_source(
        &self,
        req: DeleteUsageSourceRequest,
    ) -> Result<DeleteUsageSourceResponse, ApiError> {
        if req.name.trim().is_empty() {
            return Err(ApiError::invalid(
                "name",
                "is required: see `tero usage list` for the names",
            ));
        }
        let stored = self.state.store.delete_usage(&req.name).await?;
        self.state.analyst.all_changed();
        self.state
            .store
            .audit(
                &self.principal.actor(),
                "usage.delete",
                &stored.name,
                serde_json::json!({ "kind": stored.kind }),
            )
            .await?;
        let source = serde_json::from_str(&stored.parsed)
            .map(|parsed| usage_source(&stored, &parsed))
            .unwrap_or_else(|_| UsageSource {
                name: stored.name.clone(),
                kind: stored.kind.clone(),
                imported_at_unix_ms: stored.imported_at,
                imported_by: stored.imported_by.clone(),
                ..UsageSource::default()
            });
        Ok(DeleteUsageSourceResponse {
            source: Some(source),
        })
    }

    pub async fn get_impact(&self, req: GetImpactRequest) -> Result<GetImpactResponse, ApiError> {
        let analyst = &self.state.analyst;
        let issues = if req.policy_id.is_empty() {
            self.state.store.list_issues("", "", "").await?
        } else {
            match self.state.store.issue_of_policy(&req.policy_id).await? {
                Some(issue) => vec![issue],
                None => {
                    // A policy that exists but came from no issue has no
                    // estimate to measure against.
                    self.state.store.get_policy(&req.policy_id).await?;
                    return Err(ApiError::NotFound(format!(
                        "policy {:?} was not created from an issue, so it has no estimate to \
                         compare with; see `tero stats {}` for its activity",
                        req.policy_id, req.policy_id
                    )));
                }
            }
        };
        let mut policies = Vec::new();
        for issue in issues.iter().filter(|i| !i.policy_id.is_empty()) {
            if let Some(impact) = analyst.impact(issue).await? {
                policies.push(impact);
            }
        }
        Ok(GetImpactResponse { policies })
    }

    pub async fn get_inventory(
        &self,
        req: GetInventoryRequest,
    ) -> Result<ServiceInventory, ApiError> {
        if req.service.trim().is_empty() {
            return Err(ApiError::invalid("service", "is required"));
        }
        let inventory = self.state.analyst.inventory(&req.service).await?;
        if inventory.instances.is_empty() {
            return Err(ApiError::NotFound(format!(
                "no recent inventory for service {:?}: edges report one every few minutes",
                req.service
            )));
        }
        Ok(inventory)
    }
}

/// Whether a policy is enabled and not in shadow: edges drop what it
/// matches.
fn enforced(managed: &ManagedPolicy) -> bool {
    managed
        .policy
        .as_ref()
        .is_some_and(|p| p.enabled && !is_shadow(p))
}

fn display_or<'a>(value: &'a str, empty: &'a str) -> &'a str {
    if value.is_empty() { empty } else { value }
}

/// `status` of a list request: empty or `all` for every status, else one
/// status or several separated by commas.
fn parse_statuses(status: &str) -> Result<Vec<&str>, ApiError> {
    let status = status.trim();
    if status.is_empty() || status == "all" {
        return Ok(Vec::new());
    }
    status
        .split(',')
        .map(str::trim)
        .map(|s| {
            if status::ALL.contains(&s) {
                Ok(s)
            } else {
                Err(ApiError::invalid(
                    "status",
                    format!("{s:?} is not one of {}, or all", status::ALL.join(", ")),
                ))
            }
        })
        .collect()
}

fn usage_source(stored: &StoredUsage, parsed: &tero_usage::ParsedSource) -> UsageSource {
    UsageSource {
        name: stored.name.clone(),
        kind: stored.kind.clone(),
        imported_at_unix_ms: stored.imported_at,
        queries: parsed.queries,
        unparsed: parsed.unparsed.clone(),
        metrics: parsed.metric_names(),
        imported_by: stored.imported_by.clone(),
    }
}

/// The gRPC face of the issues API.
pub struct IssuesGrpc(pub State);

macro_rules! grpc_methods {
    ($($method:ident($req:ty) -> $resp:ty => $call:ident;)*) => {
        #[tonic::async_trait]
        impl IssuesService for IssuesGrpc {
            $(
                async fn $method(&self, request: Request<$req>) -> Result<Response<$resp>, Status> {
                    let admin = super::admin::admin_of(&self.0, &request).await?;
                    Ok(Response::new(admin.$call(request.into_inner()).await?))
                }
            )*
        }
    };
}

grpc_methods! {
    list_issues(ListIssuesRequest) -> ListIssuesResponse => list_issues;
    get_issue(GetIssueRequest) -> Issue => get_issue;
    accept_issue(AcceptIssueRequest) -> AcceptIssueResponse => accept_issue;
    ignore_issue(IgnoreIssueRequest) -> Issue => ignore_issue;
    import_usage(ImportUsageRequest) -> UsageSource => import_usage;
    list_usage_sources(ListUsageSourcesRequest) -> ListUsageSourcesResponse => list_usage_sources;
    get_impact(GetImpactRequest) -> GetImpactResponse => get_impact;
    get_inventory(GetInventoryRequest) -> ServiceInventory => get_inventory;
    delete_usage_source(DeleteUsageSourceRequest) -> DeleteUsageSourceResponse => delete_usage_source;
}

// The HTTP face of the issues API.
admin_routes! {
    get "/api/v1/issues" => list_issues(ProtoQuery<ListIssuesRequest>);
    get "/api/v1/issues/{id}" => get_issue(Bare<GetIssueRequest>, id);
    post "/api/v1/issues/{id}/accept" => accept_issue(ProtoJson<AcceptIssueRequest>, id);
    post "/api/v1/issues/{id}/ignore" => ignore_issue(ProtoJson<IgnoreIssueRequest>, id);
    get "/api/v1/usage" => list_usage_sources(Bare<ListUsageSourcesRequest>);
    post "/api/v1/usage" => import_usage(ProtoJson<ImportUsageRequest>);
    delete "/api/v1/usage/{name}" => delete_usage_source(Bare<DeleteUsageSourceRequest>, name);
    get "/api/v1/impact" => get_impact(ProtoQuery<GetImpactRequest>);
    get "/api/v1/inventory/{service}" => get_inventory(Bare<GetInventoryRequest>, service);
}

path_params! {
    GetIssueRequest => id,
    AcceptIssueRequest => id,
    IgnoreIssueRequest => id,
    GetInventoryRequest => service,
    DeleteUsageSourceRequest => name,
}

impl QueryParams for ListIssuesRequest {
    fn set(&mut self, key: &str, value: String) -> Result<(), ApiError> {
        match key {
            "service" => self.service = value,
            "status" => self.status = value,
            "kind" => self.kind = value,
            _ => return Err(unknown_param(key)),
        }
        Ok(())
    }
}

impl QueryParams for GetImpactRequest {
    fn set(&mut self, key: &str, value: String) -> Result<(), ApiError> {
        match key {
            "policy_id" | "policyId" => self.policy_id = value,
            _ => return Err(unknown_param(key)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_filter_knows_metric_and_event_detectors() {
        assert!(check_kind("").is_ok());
        assert!(check_kind("unused_metric").is_ok());
        assert!(check_kind("health_check_logs").is_ok());
        assert!(check_kind("sensitive_log_data").is_ok());
        let err = check_kind("noise").unwrap_err().to_string();
        assert!(
            err.contains("debug_logs") && err.contains("unused_metric"),
            "{err}"
        );
    }

    #[test]
    fn statuses_take_all_one_or_a_list() {
        assert!(parse_statuses("").unwrap().is_empty());
        assert!(parse_statuses("all").unwrap().is_empty());
        assert_eq!(parse_statuses("merged").unwrap(), ["merged"]);
        assert_eq!(
            parse_statuses("open, in_progress").unwrap(),
            ["open", "in_progress"]
        );
        let err = parse_statuses("open,closed").unwrap_err().to_string();
        assert!(
            err.contains("\"closed\"") && err.contains("or all"),
            "{err}"
        );
    }
}

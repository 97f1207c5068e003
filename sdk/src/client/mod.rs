//! A typed async client for the control plane: the whole admin API and
//! `Sync`, over gRPC (enable the `client` feature).
//!
//! ```no_run
//! # async fn example() -> Result<(), tero_sdk::client::ClientError> {
//! use tero_sdk::client::Client;
//! let client = Client::connect("http://127.0.0.1:7070")?.with_token("…");
//! for managed in client.list_all_policies(Default::default()).await? {
//!     println!("{}", managed.policy.unwrap_or_default().id);
//! }
//! # Ok(()) }
//! ```
//!
//! Transient failures (the server unreachable or overloaded, a deadline
//! passed) are retried with exponential backoff and full jitter, honouring
//! the server's `retry-after`. Calls that change state are retried only
//! when the request certainly never left (the connection could not be
//! made), so a retry never applies a change twice.

mod error;

use std::future::Future;
use std::time::Duration;

use tero_proto::controlplane::admin_service_client::AdminServiceClient;
use tero_proto::controlplane::classify_service_client::ClassifyServiceClient;
use tero_proto::controlplane::issues_service_client::IssuesServiceClient;
use tero_proto::controlplane::*;
use tero_proto::policy::policy_service_client::PolicyServiceClient;
use tero_proto::policy::{SyncRequest, SyncResponse};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

pub use error::ClientError;

/// How transient failures are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 disables retries.
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// A control-plane client. Cheap to clone: clones share one connection.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: String,
    channel: Channel,
    token: Option<String>,
    retry: RetryPolicy,
    timeout: Duration,
}

/// Whether a call may be repeated after the server might have acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    Safe,
    OnlyIfNeverSent,
}

fn endpoint_for(url: &str, ca_pem: Option<&[u8]>) -> Result<Endpoint, ClientError> {
    let invalid = |reason: String| ClientError::InvalidEndpoint {
        endpoint: url.to_owned(),
        reason,
    };
    let uri: http::Uri = url.parse().map_err(|e| invalid(format!("{e}")))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(invalid("the scheme must be http or https".into())),
    };
    if uri.host().is_none() {
        return Err(invalid("no host".into()));
    }
    let mut endpoint = Endpoint::from(uri)
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    if tls {
        let mut config = ClientTlsConfig::new().with_webpki_roots();
        if let Some(pem) = ca_pem {
            config = config.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| invalid(format!("TLS: {e}")))?;
    }
    Ok(endpoint)
}

impl Client {
    /// A client for `url` (`http://host:port` or `https://host:port`). No
    /// connection is made until the first call, so this fails only on a
    /// malformed URL.
    pub fn connect(url: &str) -> Result<Client, ClientError> {
        let endpoint = endpoint_for(url, None)?;
        Ok(Client {
            endpoint: url.to_owned(),
            channel: endpoint.connect_lazy(),
            token: None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
        })
    }

    /// Sends `Authorization: Bearer <token>` with every call.
    pub fn with_token(mut self, token: impl Into<String>) -> Client {
        let token = token.into();
        self.token = (!token.trim().is_empty()).then(|| token.trim().to_owned());
        self
    }

    /// Trusts this PEM CA (a private CA) in addition to the public roots.
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<Client, ClientError> {
        self.channel = endpoint_for(&self.endpoint, Some(pem))?.connect_lazy();
        Ok(self)
    }

    /// Reads [`Client::with_ca_pem`]'s certificate from a file.
    pub fn with_ca_file(self, path: &std::path::Path) -> Result<Client, ClientError> {
        let pem = std::fs::read(path).map_err(|e| ClientError::CaFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        self.with_ca_pem(&pem)
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Client {
        self.retry = retry;
        self
    }

    /// The deadline of each attempt (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn request<T>(&self, message: T) -> Result<tonic::Request<T>, ClientError> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        if let Some(token) = &self.token {
            let value: MetadataValue<_> = format!("Bearer {token}").parse().map_err(|_| {
                ClientError::InvalidToken("it holds characters a header cannot carry".into())
            })?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }

    /// One call with retries. `call` gets a fresh request each attempt.
    async fn call<M, R, F, Fut>(
        &self,
        repeat: Repeat,
        message: M,
        call: F,
    ) -> Result<R, ClientError>
    where
        M: Clone,
        F: Fn(Channel, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let mut backoff = self.retry.initial_backoff;
        let mut attempt = 1;
        loop {
            let request = self.request(message.clone())?;
            let err = match call(self.channel.clone(), request).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => ClientError::from_status(status, &self.endpoint),
            };
            let may_repeat = err.is_transient()
                && (repeat == Repeat::Safe || err.never_sent())
                && attempt < self.retry.attempts;
            if !may_repeat {
                return Err(err);
            }
            // Full jitter, but never sooner than the server asked.
            let jittered = backoff.mul_f64(fastrand::f64());
            let wait = err
                .retry_after()
                .map_or(jittered, |hint| hint.max(jittered));
            tracing::debug!(attempt, ?wait, error = %err, "retrying");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(self.retry.max_backoff);
            attempt += 1;
        }
    }

    // ----- policies --------------------------------------------------------

    pub async fn create_policy(
        &self,
        request: CreatePolicyRequest,
    ) -> Result<ManagedPolicy, ClientError> {
        self.call(Repeat::OnlyIfNeverSent, request, |ch, r| async move {
            AdminServiceClient::new(ch).create_policy(r).await
        })
        .await
    }

    /// Replaces a policy; `expected_revision` must be the revision read.
    pub async fn update_policy(
        &self,
        request: UpdatePolicyRequest,
    ) -> Result<ManagedPolicy, ClientError> {
        self.call(Repeat::OnlyIfNeverSent, request, |ch, r| async move {
            AdminServiceClient::new(ch).update_policy(r).await
        })
        .await
    }

    pub async fn get_policy(&self, id: &str) -> Result<ManagedPolicy, ClientError> {
        let request = GetPolicyRequest { id: id.to_owned() };
        self.call(Repeat::Safe, request, |ch, r| async move {
            AdminServiceClient::new(ch).get_policy(r).await
        })
        .await
    }

    /// One page; see [`Client::list_all_policies`].
    pub async fn list_policies(
        &self,
        request: ListPoliciesRequest,
    ) -> Result<ListPoliciesResponse, ClientError> {
        self.call(Repeat::Safe, request, |ch, r| async move {
            AdminServiceClient::new(ch).list_policies(r).await
        })
        .await
    }

    /// Every page of [`Client::list_policies`].
    pub async fn list_all_policies(
        &self,
        mut request: ListPoliciesRequest,
    ) -> Result<Vec<ManagedPolicy>, ClientError> {
        let mut all = Vec::new();
        loop {
            let page = self.list_policies(request.clone()).await?;
            all.extend(page.policies);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            request.page_token = page.next_page_token;
        }
    }

    /// Enables or disables a policy (`expected_revision` 0: whatever is
    /// current).
    pub async fn set_policy_enabled(
        &self,
        request: SetPolicyEnabledRequest,
    ) -> Result<ManagedPolicy, ClientError> {
        // Setting the state it already has is a no-op, unless a revision
        // is expected: then a repeat would report a conflict.
        let repeat = if request.expected_revision == 0 {
            Repeat::Safe
        } else {
            Repeat::OnlyIfNeverSent
        };
        self.call(repeat, request, |ch, r| async move {
            AdminServiceClient::new(ch).set_policy_enabled(r).await
        })
        .await
    }

    pub async fn delete_policy(
        &self,
        request: DeletePolicyRequest,
    ) -> Result<DeletePolicyResponse, ClientError> {
        self.call(Repeat::OnlyIfNeverSent, request, |ch, r| async move {
            AdminServiceClient::new(ch).delete_policy(r).await
        })
        .await
    }

    /// Revisions, newest first.
    pub async fn policy_history(&self, id: &str) -> Result<Vec<PolicyRevision>, ClientError> {
        let request = GetPolicyHistoryRequest { id: id.to_owned() };
        let response = self
            .call(Repeat::Safe, request, |ch, r| async move {
                AdminServiceClient::new(ch).get_policy_history(r).await
            })
            .await?;
        Ok(response.revisions)
    }

    pub async fn policy_deployment(&self, id: &str) -> Result<PolicyDeployment, ClientError> {
        let request = GetPolicyDeploymentRequest { id: id.to_owned() };
        self.call(Repeat::Safe, request, |ch, r| async move {
            AdminServiceClient::new(ch).get_policy_deployment(r).await
        })
        .await
    }

    /// One-minute buckets of a policy's measured activity.
    pub async fn policy_stats(
        &self,
        request: GetPolicyStatsRequest,
    ) -> Result<GetPolicyStatsResponse, ClientError> {
        self.call(Repeat::Safe, request, |ch, r| async move {
            AdminServiceClient::new(ch).get_policy_stats(r).await
        })
        .await
    }

    // ----- runtime ---------------------------------------------------------

    pub async fn list_edges(
        &self,
        request: ListEdgesRequest,
    ) -> Result<ListEdgesResponse, ClientError> {
        self.call(Repeat::Safe, request, |ch, r| async move {
            AdminServiceClient::new(ch).list_edges(r).await
        })
        .await
    }

    /// Every page of [`Client::list_edges`].
    pub async fn list_all_edges(
        &self,
        mut request: ListEdgesRequest,
    ) -> Result<Vec<Edge>, ClientError> {
        let mut all = Vec::new();
        loop {
            let page = self.list_edges(request.clone()).await?;
            all.extend(page.edges);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            request.page_token = page.next_page_token;
        }
    }

    pub async fn get_edge(&self, instance_id: &str) -> Result<Edge, ClientError> {
        let request = GetEdgeRequest {
            instance_id: instance_id.to_owned(),
        };
        self.call(Repeat::Safe, request, |ch, r| async move {
            AdminServiceClient::new(ch).get_edge(r).await
        })
        .await
    }

    // ----- credentials and audit -------------------------------------------

    /// A new edge API key; its secret is in the answer and nowhere else.
    pub async fn create_api_key(&self, name: &str) -> Result<CreateApiKeyResponse, ClientError> {
        let request = CreateApiKeyRequest {
            name: name.to_owned(),
        };
        self.call(Repeat::OnlyIfNeverSent, request, |ch, r| async move {
            AdminServiceClient::new(ch).create_api_key(r).await
        })
        .await
    }

    pub async fn list_api_keys(&self, include_revoked: bool) -> Result<Vec<ApiKey>, ClientError> {
        let request = ListApiKeysRequest { include_revoked };
        let response = self
            .call(Repeat::Safe, request, |ch, r| async move {
                AdminServiceClient::new(ch).list_api_keys(r).await
            })
            .await?;
        Ok(response.keys)
    }

    pub async fn revoke_api_key(&self, id: &str) -> Result<ApiKey, ClientError> {
        let request = RevokeApiKeyRequest { id: id.to_owned() };
        self.call(Repeat::Safe, request, |ch, r| async move {
            AdminServiceClient::new(ch).revoke_api_key(r).await
        })
        .await
    }

    pub async fn list_audit_events(
        &self,
        request: ListAuditEventsRequest,
    ) -> Result<Vec<AuditEvent>, ClientError> {
        let response = self
            .call(Repeat::Safe, request, |ch, r| async move {
                AdminServiceClient::new(ch).list_audit_events(r).await
            })
            .await?;
        Ok(response.events)
    }

    // ----- issues, usage and impact ---------------------------------------

    pub async fn list_issues(&self, request: ListIssuesRequest) -> Result<Vec<Issue>, ClientError> {
        Ok(self.list_issues_response(request).await?.issues)
    }

    /// The issues with the counts that explain an empty list (per status,
    /// usage sources, inventories).
    pub async fn list_issues_response(
        &self,
        request: ListIssuesRequest,
    ) -> Result<ListIssuesResponse, ClientError> {
        self.call(Repeat::Safe, request, |ch, r| async move {
            IssuesServiceClient::new(ch).list_issues(r).await
        })
        .await
    }

    pub async fn get_issue(&self, id: &str) -> Result<Issue, ClientError> {
        let request = GetIssueRequest { id: id.to_owned() };
        self.call(Repeat::Safe, request, |ch, r| async move {
            IssuesServiceClient::new(ch).get_issue(r).await
        })
        .await
    }

    /// Creates the issue's recommended policy (`mode`: `active`, `draft` or
    /// `shadow`). Not repeated once sent: a second accept is refused.
    pub async fn accept_issue(
        &self,
        request: AcceptIssueRequest,
    ) -> Result<AcceptIssueResponse, ClientError> {
        self.call(Repeat::OnlyIfNeverSent, request, |ch, r| async move {
            IssuesServiceClient::new(ch).accept_issue(r).await
        })
        .await
    }

    pub async fn ignore_issue(&self, id: &str, reason: &str) -> Result<Issue, ClientError> {
        let request = IgnoreIssueRequest {
            id: id.to_owned(),
            reason: reason.to_owned(),
        };
        // Ignoring twice records the same thing: safe to repeat.
        self.call(Repeat::Safe, request, |ch, r| async move {
            IssuesServiceClient::new(ch).ignore_issue(r).await
        })
        .await
    }

    /// Uploads a rule file or dashboard; the same name replaces it, so a
    /// repeat is harmless.
    pub async fn import_usage(
        &self,
        request: ImportUsageRequest,
    ) -> Result<UsageSource, ClientError> {
        self.call(Repeat::Safe, request, |ch, r| async move {
            IssuesServiceClient::new(ch).import_usage(r).await
        })
        .await
    }

    pub async fn list_usage_sources(&self) -> Result<Vec<UsageSource>, ClientError> {
        let response = self
            .call(
                Repeat::Safe,
                ListUsageSourcesRequest {},
                |ch, r| async move { IssuesServiceClient::new(ch).list_usage_sources(r).await },
            )
            .await?;
        Ok(response.sources)
    }

    /// Removes a usage source and returns it as it was.
    pub async fn delete_usage_source(&self, name: &str) -> Result<UsageSource, ClientError> {
        let request = DeleteUsageSourceRequest {
            name: name.to_owned(),
        };
        let response = self
            .call(Repeat::OnlyIfNeverSent, request, |ch, r| async move {
                IssuesServiceClient::new(ch).delete_usage_source(r).await
            })
            .await?;
        Ok(response.source.unwrap_or_default())
    }

    /// Measured impact of one policy, or (empty id) of every policy created
    /// from an issue.
    pub async fn impact(&self, policy_id: &str) -> Result<Vec<PolicyImpact>, ClientError> {
        let request = GetImpactRequest {
            policy_id: policy_id.to_owned(),
        };
        let response = self
            .call(Repeat::Safe, request, |ch, r| async move {
                IssuesServiceClient::new(ch).get_impact(r).await
            })
            .await?;
        Ok(response.policies)
    }

    /// A service's merged metric inventory.
    pub async fn inventory(&self, service: &str) -> Result<ServiceInventory, ClientError> {
        let request = GetInventoryRequest {
            service: service.to_owned(),
        };
        self.call(Repeat::Safe, request, |ch, r| async move {
            IssuesServiceClient::new(ch).get_inventory(r).await
        })
        .await
    }

    // ----- classification --------------------------------------------------

    /// Offers log records of `service` to the control plane's template
    /// miner (at most 10,000 per call). Not repeated once sent: the server
    /// counts every record it receives, so a repeat would count the batch
    /// twice.
    pub async fn submit_logs(
        &self,
        service: &str,
        records: Vec<LogSample>,
    ) -> Result<SubmitLogsResponse, ClientError> {
        let request = SubmitLogsRequest {
            service: service.to_owned(),
            records,
        };
        self.call(Repeat::OnlyIfNeverSent, request, |ch, r| async move {
            ClassifyServiceClient::new(ch).submit_logs(r).await
        })
        .await
    }

    /// Metric families and log templates with their classification; the
    /// request's fields filter (empty: all).
    pub async fn list_event_types(
        &self,
        request: ListEventTypesRequest,
    ) -> Result<Vec<EventType>, ClientError> {
        let response = self
            .call(Repeat::Safe, request, |ch, r| async move {
                ClassifyServiceClient::new(ch).list_event_types(r).await
            })
            .await?;
        Ok(response.event_types)
    }

    /// Runs the classifier chain now over the event types without a cached
    /// classification, or (`force`) over all of them, and returns the run
    /// once it has finished: give the client a deadline
    /// ([`Client::with_timeout`]) long enough for AI providers to answer.
    /// Not repeated once sent: a repeat would start a second run and, with
    /// `force`, spend the tokens twice.
    pub async fn run_classification(&self, force: bool) -> Result<ClassificationRun, ClientError> {
        let request = RunClassificationRequest { force };
        self.call(Repeat::OnlyIfNeverSent, request, |ch, r| async move {
            ClassifyServiceClient::new(ch).run_classification(r).await
        })
        .await
    }

    /// The configured classifiers, totals, token usage and the `runs` most
    /// recent runs, newest first (0: the server's default, 10).
    pub async fn classification_status(
        &self,
        runs: u32,
    ) -> Result<ClassificationStatus, ClientError> {
        let request = GetClassificationStatusRequest { runs };
        self.call(Repeat::Safe, request, |ch, r| async move {
            ClassifyServiceClient::new(ch)
                .get_classification_status(r)
                .await
        })
        .await
    }

    // ----- the edge side ---------------------------------------------------

    /// `tero.policy.v1.PolicyService/Sync`, as an edge polls. A request
    /// carrying statistics is not repeated once sent (it would count them
    /// twice), unless it names its report (see the control plane's
    /// `tero-stats-report`), which this method does not.
    pub async fn sync(&self, request: SyncRequest) -> Result<SyncResponse, ClientError> {
        let repeat = if request
            .policy_statuses
            .iter()
            .all(|s| s.match_hits == 0 && s.match_misses == 0)
        {
            Repeat::Safe
        } else {
            Repeat::OnlyIfNeverSent
        };
        self.call(repeat, request, |ch, r| async move {
            PolicyServiceClient::new(ch).sync(r).await
        })
        .await
    }
}

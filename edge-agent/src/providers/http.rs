//! The HTTP provider: `POST /v1/policy/sync` on an interval
//! (policy-format §2.2–2.6).
//!
//! Every request carries the full `SyncRequest`: the Edge's identity, the
//! hash of the set it applied, and per-policy statistics since the last
//! acknowledged request. A failed request gives its statistics back to the
//! registry, so the next one carries them: nothing is lost, nothing counted
//! twice (except when a request times out after the server processed it,
//! which the protocol cannot tell apart).

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prost::Message;
use std::sync::Arc;
use tero_proto::otel::{AnyValue, KeyValue, any_value};
use tero_proto::policy::{ClientMetadata, PolicyStage, SyncRequest, SyncResponse};
use tokio_util::sync::CancellationToken;

use super::Backoff;
use super::last_good::LastGood;
use crate::config::{Header, HttpProviderConfig, SyncEncoding};
use crate::registry::PolicyRegistry;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
const MIN_INTERVAL: Duration = Duration::from_secs(1);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
const PROTOBUF: &str = "application/x-protobuf";

/// Who this Edge is, as sent in every sync.
#[derive(Debug, Clone, Default)]
pub struct ClientIdentity {
    pub resource_attributes: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
}

impl ClientIdentity {
    fn metadata(&self) -> ClientMetadata {
        let kv = |(k, v): &(String, String)| KeyValue {
            key: k.clone(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.clone())),
            }),
        };
        ClientMetadata {
            supported_policy_stages: vec![PolicyStage::MetricFilter as i32],
            labels: self.labels.iter().map(kv).collect(),
            resource_attributes: self.resource_attributes.iter().map(kv).collect(),
            supported_extensions: Vec::new(),
        }
    }
}

/// Why a sync failed, and how long the server asked us to wait.
struct SyncFailure {
    reason: String,
    retry_after: Option<Duration>,
}

pub struct HttpProvider {
    id: String,
    url: Uri,
    headers: Vec<Header>,
    interval: Duration,
    encoding: SyncEncoding,
    identity: ClientIdentity,
    registry: Arc<PolicyRegistry>,
    client: Client<HttpConnector, Full<Bytes>>,
    applied_hash: Option<String>,
    last_sync_timestamp: u64,
    last_recommended: u32,
    last_good: Option<LastGood>,
}

impl HttpProvider {
    pub fn new(
        settings: HttpProviderConfig,
        identity: ClientIdentity,
        registry: Arc<PolicyRegistry>,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let last_good = settings
            .state_dir
            .map(|dir| LastGood::new(&dir, &settings.id));
        HttpProvider {
            id: settings.id,
            url: settings.url,
            headers: settings.headers,
            interval: settings.poll_interval,
            encoding: settings.encoding,
            identity,
            registry,
            client: Client::builder(TokioExecutor::new()).build(connector),
            applied_hash: None,
            last_sync_timestamp: 0,
            last_recommended: 0,
            last_good,
        }
    }

    /// Applies the persisted set, if any, before the first sync, so a
    /// restart while the server is down keeps filtering.
    fn restore_last_good(&mut self) {
        let Some(store) = &self.last_good else { return };
        match store.load() {
            Ok(Some(response)) => {
                tracing::warn!(
                    provider = %self.id,
                    path = %store.path().display(),
                    hash = %response.hash,
                    policies = response.policies.len(),
                    "serving the persisted policy set until the server answers"
                );
                self.registry.set_transport(&self.id, "persisted");
                self.apply(response, false);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(provider = %self.id, error = %e, "persisted policy set ignored")
            }
        }
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        self.restore_last_good();
        let mut backoff = Backoff::new(Duration::from_secs(1), self.interval.max(MIN_INTERVAL));
        loop {
            let wait = match self.sync_once().await {
                Ok(next) => {
                    backoff.reset();
                    next
                }
                Err(f) => {
                    tracing::warn!(provider = %self.id, url = %self.url, error = %f.reason, "policy sync failed; keeping the current policies");
                    self.registry.record_sync(&self.id, Err(f.reason));
                    let jittered = backoff.next_delay().max(MIN_INTERVAL);
                    f.retry_after.map_or(jittered, |r| r.max(jittered))
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => break,
            }
        }
        // Flush the last interval's statistics.
        match self.sync_once().await {
            Ok(_) => tracing::info!(provider = %self.id, "final statistics sync sent"),
            Err(f) => {
                tracing::warn!(provider = %self.id, error = %f.reason, "final statistics sync failed")
            }
        }
    }

    /// One sync round trip; returns the delay before the next one.
    async fn sync_once(&mut self) -> Result<Duration, SyncFailure> {
        let deltas = self.registry.take_unsent(&self.id);
        let request = SyncRequest {
            client_metadata: Some(self.identity.metadata()),
            full_sync: self.applied_hash.is_none(),
            last_sync_timestamp_unix_nano: self.last_sync_timestamp,
            last_successful_hash: self.applied_hash.clone().unwrap_or_default(),
            policy_statuses: self.registry.statuses(&self.id, &deltas),
        };
        match self.exchange(&request).await {
            Ok(response) => {
                self.registry.set_transport(&self.id, "http");
                self.apply(response, true);
                let next = match self.last_recommended {
                    0 => self.interval,
                    secs => Duration::from_secs(secs.into()).clamp(MIN_INTERVAL, MAX_INTERVAL),
                };
                Ok(next)
            }
            Err(failure) => {
                self.registry.restore_unsent(&self.id, deltas);
                Err(failure)
            }
        }
    }

    async fn exchange(&mut self, request: &SyncRequest) -> Result<SyncResponse, SyncFailure> {
        let fail = |reason: String| SyncFailure {
            reason,
            retry_after: None,
        };
        let (body, content_type) = match self.encoding {
            SyncEncoding::Json => (
                serde_json::to_vec(request)
                    .map_err(|e| fail(format!("cannot encode request: {e}")))?,
                "application/json",
            ),
            SyncEncoding::Protobuf => (request.encode_to_vec(), PROTOBUF),
        };
        let mut builder = Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, content_type)
            .header(header::ACCEPT, content_type)
            .header(
                header::USER_AGENT,
                concat!("tero-edge/", env!("CARGO_PKG_VERSION")),
            );
        for h in &self.headers {
            builder = builder.header(h.name.as_str(), h.value.as_str());
        }
        let req = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail(format!("cannot build request: {e}")))?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| fail(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())))?
            .map_err(|e| fail(format!("request failed: {e}")))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let is_protobuf = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with(PROTOBUF));
        let body = tokio::time::timeout(
            REQUEST_TIMEOUT,
            Limited::new(response.into_body(), MAX_RESPONSE_BYTES).collect(),
        )
        .await
        .map_err(|_| fail("response body timed out".into()))?
        .map_err(|e| fail(format!("cannot read response: {e}")))?
        .to_bytes();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)])
                .trim()
                .to_owned();
            return Err(SyncFailure {
                reason: format!("server answered {status}: {text}"),
                retry_after: retry_after.filter(|_| {
                    status == StatusCode::TOO_MANY_REQUESTS
                        || status == StatusCode::SERVICE_UNAVAILABLE
                }),
            });
        }
        let response: SyncResponse = if is_protobuf {
            SyncResponse::decode(body)
                .map_err(|e| fail(format!("malformed protobuf response: {e}")))?
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| fail(format!("malformed JSON response: {e}")))?
        };
        if !response.error_message.is_empty() {
            return Err(fail(format!("server reported: {}", response.error_message)));
        }
        Ok(response)
    }

    /// Applies a response; `fresh` when it came from the server (it is then
    /// recorded as a successful sync and persisted when it changed).
    fn apply(&mut self, mut response: SyncResponse, fresh: bool) {
        self.last_sync_timestamp = response.sync_timestamp_unix_nano;
        self.last_recommended = response.recommended_sync_interval_seconds;
        // A server that sends no hash gets one computed here, and the
        // comparison uses it: the same set resent is not recompiled.
        if response.hash.is_empty() {
            response.hash = tero_sdk::policy::policy_set_hash(&response.policies);
        }
        let hash = response.hash.clone();
        if self.applied_hash.as_deref() != Some(hash.as_str()) {
            if fresh
                && let Some(store) = &self.last_good
                && let Err(e) = store.store(&response)
            {
                tracing::warn!(provider = %self.id, path = %store.path().display(), error = %e, "cannot persist the policy set");
            }
            tracing::info!(provider = %self.id, policies = response.policies.len(), %hash, "new policy set applied");
            self.registry
                .update(&self.id, response.policies, hash.clone(), Vec::new());
            self.applied_hash = Some(hash);
        }
        // Recorded after the update: the first recorded attempt makes the
        // Edge ready, and ready must mean the delivered set is applied.
        if fresh {
            self.registry.record_sync(&self.id, Ok(()));
        }
    }
}

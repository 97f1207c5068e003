//! The HTTP provider: `POST /v1/policy/sync` on an interval
//! (policy-format.md §2.2–2.6).
//!
//! Every request carries the full `SyncRequest`: the Edge's identity, the
//! hash of the set it applied, and one sealed statistics report (see
//! [`Outbox`]). A failed request keeps its report, and the next request
//! repeats it unchanged with the same `tero-stats-report: SESSION/SEQ`
//! header; a Tero control plane stores each (session, seq) once, so
//! statistics are exact even when a request times out after the server
//! processed it. Other servers ignore the header and get the protocol's
//! usual at-least-once deltas.
//!
//! Volume (spec 1.7.1 `SyncRequest.volume`) is sealed into the same report,
//! but the spec forbids replaying the volume of a failed sync: a server that
//! knows only the spec cannot tell a replay from new telemetry. So a
//! report's volume goes out with its first attempt only, and a retry carries
//! none (volume is then a lower bound, as the spec says) — unless the
//! server has shown that it stores each named report once: a Tero control
//! plane answers a sync with the `tero-stats-report` header echoed, and
//! while its answers do, a retry repeats the report's volume too, counted
//! once, so volume is exact. A grpc provider's fallback poller talks to a Tero
//! control plane by construction and is exact from the start.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use prost::Message;
use std::sync::Arc;
use tero_proto::otel::{AnyValue, KeyValue, any_value};
use tero_proto::policy::{ClientMetadata, PolicyStage, SyncRequest, SyncResponse, VolumeStats};
use tero_sdk::engine::VolumeDelta;
use tokio_util::sync::CancellationToken;

use super::Backoff;
use super::last_good::LastGood;
use super::outbox::Outbox;
use crate::config::{Header, HttpProviderConfig, Redacted, SyncEncoding};
use crate::registry::PolicyRegistry;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
const MIN_INTERVAL: Duration = Duration::from_secs(1);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
const PROTOBUF: &str = "application/x-protobuf";
/// Names the statistics report a sync carries: `SESSION/SEQ`.
pub const STATS_REPORT_HEADER: &str = "tero-stats-report";

/// Who this Edge is, as sent in every sync.
#[derive(Debug, Clone, Default)]
pub struct ClientIdentity {
    pub resource_attributes: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
}

impl ClientIdentity {
    pub(crate) fn metadata(&self) -> ClientMetadata {
        let kv = |(k, v): &(String, String)| KeyValue {
            key: k.clone(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.clone())),
            }),
        };
        ClientMetadata {
            // The scrape path runs metric policies; the push intake runs
            // log filters and transforms and trace sampling.
            supported_policy_stages: vec![
                PolicyStage::MetricFilter as i32,
                PolicyStage::LogFilter as i32,
                PolicyStage::LogTransform as i32,
                PolicyStage::TraceSampling as i32,
            ],
            labels: self.labels.iter().map(kv).collect(),
            resource_attributes: self.resource_attributes.iter().map(kv).collect(),
            // The filter counts shadow policies without enforcing them; a
            // control plane sends them only to clients that say so.
            supported_extensions: vec![tero_sdk::engine::shadow::shadow_capability()],
        }
    }
}

/// A POST to the control plane with a provider's headers (its API key
/// among them) and this Edge's user agent.
pub(crate) fn control_plane_post(
    url: &Uri,
    headers: &[Header],
    content_type: &str,
    accept: &str,
) -> http::request::Builder {
    let mut builder = Request::post(url.clone())
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ACCEPT, accept)
        .header(
            header::USER_AGENT,
            concat!("tero-edge/", env!("CARGO_PKG_VERSION")),
        );
    for h in headers {
        builder = builder.header(h.name.as_str(), h.value.as_str());
    }
    builder
}

/// The start of an error answer's body, enough to say why.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(300)])
        .trim()
        .to_owned()
}

/// The proto3 JSON of a request with only the reference schema's fields:
/// servers that reject unknown fields would refuse the Tero extensions
/// (`teroRecordsDropped`, `teroBytesDropped`, `teroScrapes`), which only
/// protobuf carries.
fn reference_json(request: &SyncRequest) -> Result<Vec<u8>, serde_json::Error> {
    let mut value = serde_json::to_value(request)?;
    if let Some(statuses) = value
        .get_mut("policyStatuses")
        .and_then(|s| s.as_array_mut())
    {
        for status in statuses.iter_mut().filter_map(|s| s.as_object_mut()) {
            status.remove("teroRecordsDropped");
            status.remove("teroBytesDropped");
            status.remove("teroScrapes");
        }
    }
    serde_json::to_vec(&value)
}

/// The provider kind a poller works for: its own (`http`), or a `grpc`
/// provider's fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    Http,
    Grpc,
}

impl Owner {
    /// What a successful sync shows as the transport: "http", or "poll"
    /// when the poller is a grpc provider's fallback.
    pub(crate) fn transport(self) -> &'static str {
        match self {
            Owner::Http => "http",
            Owner::Grpc => "poll",
        }
    }
}

/// Logs under the target of the provider kind that owns the poller, not
/// this module's: a grpc provider's applies and persisted sets go through
/// this code, and must read (and filter with `RUST_LOG`) as
/// `providers::grpc`.
macro_rules! owner_log {
    ($owner:expr, $level:ident, $($arg:tt)+) => {
        match $owner {
            Owner::Grpc => tracing::$level!(target: "tero_edge::providers::grpc", $($arg)+),
            Owner::Http => tracing::$level!(target: "tero_edge::providers::http", $($arg)+),
        }
    };
}

/// Why a sync failed, and how long the server asked us to wait.
pub(crate) struct SyncFailure {
    pub(crate) reason: String,
    pub(crate) retry_after: Option<Duration>,
}

pub struct HttpProvider {
    id: String,
    url: Uri,
    headers: Vec<Header>,
    interval: Duration,
    encoding: SyncEncoding,
    identity: ClientIdentity,
    registry: Arc<PolicyRegistry>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    applied_hash: Option<String>,
    last_sync_timestamp: u64,
    last_recommended: u32,
    last_good: Option<LastGood>,
    /// Whose logs this poller writes, and the transport a successful sync
    /// shows ([`Owner::transport`]).
    pub(crate) owner: Owner,
    /// Statistics not yet acknowledged; shared with the push stream when
    /// this poller is a stream's fallback.
    pub(crate) outbox: Outbox,
    /// The server echoed a report's name: it stores each report once, so
    /// resending a report's volume cannot count it twice.
    server_stores_reports_once: bool,
    /// The report whose volume was sent once (to a server not known to
    /// store reports once, a retry of it carries no volume).
    volume_sent_with: Option<u64>,
}

impl HttpProvider {
    pub fn new(
        settings: HttpProviderConfig,
        identity: ClientIdentity,
        registry: Arc<PolicyRegistry>,
    ) -> Self {
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
            client: super::tls::https_client(settings.ca_pem.as_deref()),
            applied_hash: None,
            last_sync_timestamp: 0,
            last_recommended: 0,
            last_good,
            owner: Owner::Http,
            outbox: Outbox::new(),
            server_stores_reports_once: false,
            volume_sent_with: None,
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn applied_hash(&self) -> Option<&str> {
        self.applied_hash.as_deref()
    }

    pub(crate) fn registry(&self) -> &Arc<PolicyRegistry> {
        &self.registry
    }

    /// Applies the persisted set, if any, before the first sync, so a
    /// restart while the server is down keeps filtering.
    pub(crate) fn restore_last_good(&mut self) {
        let Some(store) = &self.last_good else { return };
        match store.load() {
            Ok(Some(response)) => {
                owner_log!(
                    self.owner,
                    warn,
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
                owner_log!(self.owner, warn, provider = %self.id, error = %e, "persisted policy set ignored")
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
                    tracing::warn!(provider = %self.id, url = %Redacted(&self.url), error = %f.reason, "policy sync failed; keeping the current policies");
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
        self.final_sync().await;
    }

    /// On shutdown: syncs until no statistics are left. One sync carries
    /// one report, so a report still unacknowledged from a failed sync
    /// takes one and what was counted since takes another.
    pub(crate) async fn final_sync(&mut self) {
        for _ in 0..3 {
            if let Err(f) = self.sync_once().await {
                owner_log!(self.owner, warn, provider = %self.id, error = %f.reason, "final statistics sync failed");
                return;
            }
            self.fill_outbox();
            if self.outbox.is_empty() {
                break;
            }
        }
        owner_log!(self.owner, info, provider = %self.id, "final statistics sync sent");
    }

    /// Moves what the registry counted for this provider (policy deltas
    /// and volume) into the outbox's open report.
    pub(crate) fn fill_outbox(&mut self) {
        self.outbox.add(self.registry.take_unsent(&self.id));
        self.outbox
            .add_volume(&self.registry.take_unsent_volume(&self.id));
    }

    /// The volume a request carrying report `seq` sends: all of it, except
    /// on a retry to a server not known to store reports once (see the
    /// module's doc).
    fn volume_for(&mut self, seq: u64, volume: &VolumeDelta) -> Option<VolumeStats> {
        let exact = self.owner == Owner::Grpc || self.server_stores_reports_once;
        if !exact && self.volume_sent_with == Some(seq) {
            return None;
        }
        self.volume_sent_with = Some(seq);
        volume.to_proto()
    }

    /// One sync round trip; returns the delay before the next one.
    pub(crate) async fn sync_once(&mut self) -> Result<Duration, SyncFailure> {
        self.fill_outbox();
        self.outbox.seal();
        let report = self
            .outbox
            .oldest()
            .map(|r| (r.seq, r.deltas.clone(), r.volume));
        let deltas = report
            .as_ref()
            .map(|(_, d, _)| d.clone())
            .unwrap_or_default();
        let volume = match &report {
            Some((seq, _, volume)) => self.volume_for(*seq, volume),
            None => None,
        };
        let request = SyncRequest {
            client_metadata: Some(self.identity.metadata()),
            full_sync: self.applied_hash.is_none(),
            last_sync_timestamp_unix_nano: self.last_sync_timestamp,
            last_successful_hash: self.applied_hash.clone().unwrap_or_default(),
            policy_statuses: self.registry.statuses(&self.id, &deltas),
            volume,
        };
        let report_id = report
            .as_ref()
            .map(|(seq, _, _)| format!("{}/{seq}", self.outbox.session()));
        let (response, echoed) = self.exchange(&request, report_id.as_deref()).await?;
        // Each answer to a named report says it again: a server replaced by
        // one that does not store reports once stops being trusted with
        // resent volume at its first answer.
        if report_id.is_some() && echoed != self.server_stores_reports_once {
            self.server_stores_reports_once = echoed;
            owner_log!(self.owner, debug, provider = %self.id, stores_reports_once = echoed, "the server's handling of resent statistics reports changed");
        }
        if let Some((seq, _, _)) = report {
            self.outbox.acknowledge(seq);
        }
        // Applied (and recorded as a success) before the transport changes:
        // whoever sees the new transport also sees the provider up.
        self.apply(response, true);
        self.registry
            .set_transport(&self.id, self.owner.transport());
        Ok(self.interval_after_success())
    }

    /// The configured interval, or the server's recommendation, clamped.
    pub(crate) fn interval_after_success(&self) -> Duration {
        match self.last_recommended {
            0 => self.interval,
            secs => Duration::from_secs(secs.into()).clamp(MIN_INTERVAL, MAX_INTERVAL),
        }
    }

    /// Sends `request`; returns the answer, and whether the server echoed
    /// `report_id` (it stores each named report once).
    async fn exchange(
        &mut self,
        request: &SyncRequest,
        report_id: Option<&str>,
    ) -> Result<(SyncResponse, bool), SyncFailure> {
        let fail = |reason: String| SyncFailure {
            reason,
            retry_after: None,
        };
        let (body, content_type) = match self.encoding {
            SyncEncoding::Json => (
                reference_json(request).map_err(|e| fail(format!("cannot encode request: {e}")))?,
                "application/json",
            ),
            SyncEncoding::Protobuf => (request.encode_to_vec(), PROTOBUF),
        };
        let mut builder = control_plane_post(&self.url, &self.headers, content_type, content_type);
        if let Some(id) = report_id {
            builder = builder.header(STATS_REPORT_HEADER, id);
        }
        let req = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail(format!("cannot build request: {e}")))?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| fail(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())))?
            .map_err(|e| fail(format!("request failed: {}", super::with_causes(&e))))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let echoed = report_id.is_some_and(|id| {
            response
                .headers()
                .get(STATS_REPORT_HEADER)
                .is_some_and(|v| v.as_bytes() == id.as_bytes())
        });
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
            return Err(SyncFailure {
                reason: format!("server answered {status}: {}", body_excerpt(&body)),
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
        Ok((response, echoed))
    }

    /// Applies a response; `fresh` when it came from the server (it is then
    /// recorded as a successful sync and persisted when it changed).
    pub(crate) fn apply(&mut self, mut response: SyncResponse, fresh: bool) {
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
                owner_log!(self.owner, warn, provider = %self.id, path = %store.path().display(), error = %e, "cannot persist the policy set");
            }
            owner_log!(self.owner, info, provider = %self.id, policies = response.policies.len(), %hash, "new policy set applied");
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

#[cfg(test)]
mod tests {
    use super::*;
    use tero_proto::policy::PolicySyncStatus;

    #[test]
    fn json_requests_carry_only_reference_fields_and_protobuf_carries_all() {
        let request = SyncRequest {
            policy_statuses: vec![PolicySyncStatus {
                id: "p".into(),
                match_hits: 3,
                tero_records_dropped: 3,
                tero_bytes_dropped: 120,
                tero_scrapes: 4,
                ..Default::default()
            }],
            ..Default::default()
        };
        let json: serde_json::Value =
            serde_json::from_slice(&reference_json(&request).unwrap()).unwrap();
        let status = &json["policyStatuses"][0];
        assert_eq!(status["matchHits"], "3");
        assert!(
            status.get("teroRecordsDropped").is_none()
                && status.get("teroBytesDropped").is_none()
                && status.get("teroScrapes").is_none(),
            "{json}"
        );
        let decoded = SyncRequest::decode(request.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.policy_statuses[0].tero_bytes_dropped, 120);
        assert_eq!(decoded.policy_statuses[0].tero_scrapes, 4);
    }
}

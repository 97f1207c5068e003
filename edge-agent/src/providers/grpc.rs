//! The grpc provider: a push stream to the control plane
//! (`tero.controlplane.v1.EdgeService/Subscribe`), with HTTP polling as its
//! fallback.
//!
//! While the stream is up the control plane pushes a snapshot whenever this
//! Edge's set changes; each is applied atomically and answered with an ACK,
//! or a NACK naming the policies that did not compile (the others run) or
//! why the snapshot was refused as a whole (malformed, hash mismatch: the
//! current set keeps running). Statistics go up every `stats_interval` as
//! sealed reports (see [`Outbox`](super::outbox::Outbox)) and are kept until
//! acknowledged; each carries the volume the Edge saw in its interval, so
//! volume sent over the stream is exact too.
//!
//! When the stream cannot be opened or breaks, the provider reconnects once
//! at once, then polls `/v1/policy/sync` while retrying the stream with
//! exponential backoff and full jitter; polls carry the same outbox, so a
//! report is never counted twice whichever path delivers it. A refusal with
//! a retry hint (`UNAVAILABLE` + `retry-after`, HTTP 429/503 +
//! `Retry-After`) is honoured.

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use prost::Message;
use tero_proto::controlplane::edge_message::Message as EdgeMsg;
use tero_proto::controlplane::edge_service_client::EdgeServiceClient;
use tero_proto::controlplane::server_message::Message as ServerMsg;
use tero_proto::controlplane::{
    Ack, EdgeMessage, Heartbeat, Hello, Nack, PolicyCounters, PolicyError, Snapshot, StatsReport,
};
use tero_proto::policy::SyncResponse;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{MetadataKey, MetadataValue};

use super::Backoff;
use super::http::{ClientIdentity, HttpProvider, Owner};
use crate::config::{GrpcProviderConfig, Redacted};
use crate::registry::PolicyRegistry;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HEARTBEAT: Duration = Duration::from_secs(15);
/// A stream silent for this long (no snapshot, heartbeat or ack) is dead.
const SILENCE: Duration = Duration::from_secs(60);
/// How long a new stream waits for the server's first message before the
/// Edge counts as synced anyway.
const READY_GRACE: Duration = Duration::from_secs(2);
/// A stream up this long was healthy: its end resets the reconnect backoff.
const STABLE: Duration = Duration::from_secs(10);
/// On shutdown, how long to wait for the last report's acknowledgement.
const FLUSH_WAIT: Duration = Duration::from_secs(3);

/// How a stream ended.
enum StreamEnd {
    Shutdown,
    /// `lasted`: how long the stream was up (`None`: it never opened).
    Broken {
        reason: String,
        lasted: Option<Duration>,
        retry_after: Option<Duration>,
    },
}

pub struct GrpcProvider {
    url: Uri,
    headers: Vec<(
        MetadataKey<tonic::metadata::Ascii>,
        MetadataValue<tonic::metadata::Ascii>,
    )>,
    stats_interval: Duration,
    reconnect_min: Duration,
    reconnect_max: Duration,
    identity: ClientIdentity,
    /// The fallback poller; it also owns the applied hash, the persisted
    /// last good set and the statistics outbox, shared with the stream.
    poller: HttpProvider,
    last_failed_hash: String,
    /// Backoff of failed fallback polls, up to the poll interval.
    poll_backoff: Backoff,
    /// When the server's previous heartbeat was sent (its clock, ms).
    last_server_beat: Option<i64>,
    /// For an https:// url: the public roots plus the provider's ca_file.
    tls: Option<tonic::transport::ClientTlsConfig>,
}

impl GrpcProvider {
    pub fn new(
        settings: GrpcProviderConfig,
        identity: ClientIdentity,
        registry: Arc<PolicyRegistry>,
    ) -> Self {
        let headers = settings
            .poll
            .headers
            .iter()
            .filter_map(|h| {
                let key = MetadataKey::from_bytes(h.name.to_ascii_lowercase().as_bytes()).ok()?;
                let value = MetadataValue::try_from(h.value.as_str()).ok()?;
                Some((key, value))
            })
            .collect();
        let tls = (settings.url.scheme_str() == Some("https")).then(|| {
            let mut tls = tonic::transport::ClientTlsConfig::new().with_webpki_roots();
            if let Some(pem) = &settings.poll.ca_pem {
                tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
            }
            tls
        });
        let poll_backoff = Backoff::new(
            Duration::from_secs(1),
            settings.poll.poll_interval.max(Duration::from_secs(1)),
        );
        let mut poller = HttpProvider::new(settings.poll, identity.clone(), registry);
        poller.owner = Owner::Grpc;
        GrpcProvider {
            url: settings.url,
            headers,
            stats_interval: settings.stats_interval,
            reconnect_min: settings.reconnect_min,
            reconnect_max: settings.reconnect_max,
            poller,
            identity,
            last_failed_hash: String::new(),
            poll_backoff,
            last_server_beat: None,
            tls,
        }
    }

    fn id(&self) -> String {
        self.poller.id().to_owned()
    }

    fn registry(&self) -> Arc<PolicyRegistry> {
        Arc::clone(self.poller.registry())
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        self.poller.restore_last_good();
        let id = self.id();
        let mut backoff = Backoff::new(self.reconnect_min, self.reconnect_max);
        let mut retried_at_once = false;
        loop {
            match self.stream(&shutdown).await {
                StreamEnd::Shutdown => return,
                StreamEnd::Broken {
                    reason,
                    lasted,
                    retry_after,
                } => {
                    tracing::warn!(provider = %id, url = %Redacted(&self.url), error = %reason, "policy stream unavailable; polling until it is back");
                    let registry = self.registry();
                    registry.record_sync(&id, Err(format!("stream: {reason}")));
                    // Nothing delivers policies now: the stream is gone and
                    // no poll has succeeded yet (one that does says "poll").
                    // A persisted set being served still says so.
                    let was_stream = registry
                        .providers()
                        .iter()
                        .any(|p| p.id == id && p.transport == "stream");
                    if was_stream {
                        registry.set_transport(&id, "none");
                    }
                    // Only a stream that stayed up resets the backoff: a
                    // server that accepts and at once drops streams must
                    // not be hammered at the minimum delay.
                    if lasted.is_some_and(|l| l >= STABLE) {
                        backoff.reset();
                        retried_at_once = false;
                    }
                    if lasted.is_some() && !retried_at_once && retry_after.is_none() {
                        // A broken stream is often a restart: try once at once.
                        retried_at_once = true;
                        continue;
                    }
                    let wait = backoff.next_delay();
                    let wait = retry_after.map_or(wait, |r| r.max(wait));
                    if !self.poll_for(wait, &shutdown).await {
                        self.final_poll().await;
                        return;
                    }
                }
            }
        }
    }

    /// Polls until `wait` has passed; false on shutdown. Failed polls back
    /// off too (with jitter), so an outage does not turn a fleet's fallback
    /// into a request per second per edge.
    async fn poll_for(&mut self, wait: Duration, shutdown: &CancellationToken) -> bool {
        let id = self.id();
        let deadline = Instant::now() + wait;
        loop {
            let next = match self.poller.sync_once().await {
                Ok(next) => {
                    self.poll_backoff.reset();
                    next
                }
                Err(f) => {
                    tracing::warn!(provider = %id, error = %f.reason, "fallback poll failed; keeping the current policies");
                    self.registry().record_sync(&id, Err(f.reason));
                    let delay = self.poll_backoff.next_delay();
                    f.retry_after.map_or(delay, |r| r.max(delay))
                }
            };
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline.min(now + next)) => {}
                () = shutdown.cancelled() => return false,
            }
            if Instant::now() >= deadline {
                return true;
            }
        }
    }

    /// On shutdown without a stream: polls carry the last statistics.
    async fn final_poll(&mut self) {
        self.poller.final_sync().await;
    }

    fn hello(&self) -> EdgeMessage {
        EdgeMessage {
            message: Some(EdgeMsg::Hello(Hello {
                client_metadata: Some(self.identity.metadata()),
                last_hash: self.poller.applied_hash().unwrap_or_default().to_owned(),
                last_failed_hash: self.last_failed_hash.clone(),
            })),
        }
    }

    /// Opens a stream and serves it until it ends.
    async fn stream(&mut self, shutdown: &CancellationToken) -> StreamEnd {
        let broken = |reason: String, retry_after: Option<Duration>| StreamEnd::Broken {
            reason,
            lasted: None,
            retry_after,
        };
        let endpoint = match tonic::transport::Endpoint::from_shared(self.url.to_string()) {
            Ok(e) => e.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true),
            Err(e) => return broken(format!("bad url: {e}"), None),
        };
        let endpoint = match &self.tls {
            None => endpoint,
            Some(tls) => match endpoint.tls_config(tls.clone()) {
                Ok(e) => e,
                Err(e) => return broken(format!("TLS setup: {e}"), None),
            },
        };
        let channel = tokio::select! {
            c = endpoint.connect() => match c {
                Ok(c) => c,
                Err(e) => return broken(format!("cannot connect: {}", super::with_causes(&e)), None),
            },
            () = shutdown.cancelled() => {
                self.final_poll().await;
                return StreamEnd::Shutdown;
            }
        };
        let (tx, rx) = mpsc::channel::<EdgeMessage>(16);
        // Room for 16: the hello cannot block.
        let _ = tx.try_send(self.hello());
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        for (k, v) in &self.headers {
            request.metadata_mut().insert(k.clone(), v.clone());
        }
        let mut client = EdgeServiceClient::new(channel);
        let opened = tokio::select! {
            r = tokio::time::timeout(CONNECT_TIMEOUT * 2, client.subscribe(request)) => r,
            () = shutdown.cancelled() => {
                self.final_poll().await;
                return StreamEnd::Shutdown;
            }
        };
        let mut inbound = match opened {
            Err(_) => return broken("no answer to subscribe".into(), None),
            Ok(Err(status)) => return broken(describe(&status), retry_hint(&status)),
            Ok(Ok(response)) => response.into_inner(),
        };
        let id = self.id();
        let registry = self.registry();
        tracing::info!(provider = %id, url = %Redacted(&self.url), "policy stream open");
        let opened_at = Instant::now();
        // Synced at the first message: a Tero control plane answers a hello
        // with the snapshot the Edge lacks (if any), then a heartbeat. A
        // server that says nothing is taken to agree after a grace period,
        // so readiness never hangs on it.
        let mut synced = false;
        let ready_anyway = opened_at + READY_GRACE;
        // A stream is dead after three of the server's heartbeat intervals
        // without a message (at least SILENCE), whatever interval it uses.
        let mut last_message = Instant::now();
        let mut server_beat = Duration::ZERO;

        let mut stats = tokio::time::interval(self.stats_interval);
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beat = tokio::time::interval_at(Instant::now() + HEARTBEAT, HEARTBEAT);
        let mut silent_until = Instant::now() + SILENCE;
        // The report sent on this stream and not yet acknowledged.
        let mut sent: Option<(u64, Instant)> = None;
        let end = |reason: String, retry_after| StreamEnd::Broken {
            reason,
            lasted: Some(opened_at.elapsed()),
            retry_after,
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    self.flush(&tx, &mut inbound).await;
                    return StreamEnd::Shutdown;
                }
                _ = stats.tick() => {
                    // One report in flight; one left unacknowledged (the
                    // server could not store it) is sent again.
                    let due = sent.is_none_or(|(_, at): (u64, Instant)| at.elapsed() >= self.stats_interval * 3);
                    if due
                        && let Some(seq) = self.send_report(&tx).await
                    {
                        sent = Some((seq, Instant::now()));
                    }
                }
                _ = beat.tick() => {
                    let hb = heartbeat();
                    if tx.send(hb).await.is_err() {
                        return end("stream closed".into(), None);
                    }
                }
                () = tokio::time::sleep_until(ready_anyway), if !synced => {
                    synced = true;
                    // Up first, then the transport: whoever sees "stream"
                    // sees the provider up.
                    registry.record_sync(&id, Ok(()));
                    registry.set_transport(&id, "stream");
                }
                () = tokio::time::sleep_until(silent_until) => {
                    return end(format!("no message from the control plane for {:?}", silent_until - last_message), None);
                }
                message = inbound.message() => {
                    last_message = Instant::now();
                    silent_until = last_message + SILENCE.max(server_beat * 3);
                    if !synced && matches!(message, Ok(Some(_))) {
                        synced = true;
                        registry.record_sync(&id, Ok(()));
                        registry.set_transport(&id, "stream");
                    }
                    match message {
                        Ok(Some(m)) => match m.message {
                            Some(ServerMsg::Snapshot(snapshot)) => {
                                let answer = self.apply_snapshot(snapshot);
                                if tx.send(answer).await.is_err() {
                                    return end("stream closed".into(), None);
                                }
                            }
                            Some(ServerMsg::StatsAck(ack)) => {
                                self.poller.outbox.acknowledge(ack.seq);
                                if sent.is_some_and(|(s, _)| s <= ack.seq) {
                                    sent = None;
                                }
                            }
                            Some(ServerMsg::Heartbeat(beat)) => {
                                if let Some(gap) = beat_gap(&mut self.last_server_beat, beat.sent_at_unix_ms) {
                                    server_beat = server_beat.max(gap);
                                }
                                // Answered at once: the server drops an edge
                                // silent for three of *its* heartbeat
                                // intervals, which may be shorter than ours.
                                let hb = heartbeat();
                                if tx.send(hb).await.is_err() {
                                    return end("stream closed".into(), None);
                                }
                            }
                            None => {}
                        },
                        Ok(None) => return end("closed by the control plane".into(), None),
                        Err(status) => return end(describe(&status), retry_hint(&status)),
                    }
                }
            }
        }
    }

    /// Seals pending statistics and sends the oldest unacknowledged report.
    async fn send_report(&mut self, tx: &mpsc::Sender<EdgeMessage>) -> Option<u64> {
        let id = self.id();
        let registry = self.registry();
        self.poller.fill_outbox();
        self.poller.outbox.seal();
        let report = self.poller.outbox.oldest()?;
        let errors = registry.compile_errors(&id);
        // The mode a policy runs in now: a report spanning a change of mode
        // is labelled by the newer one.
        let shadows = registry.shadow_ids();
        let policies = report
            .deltas
            .iter()
            .map(|(policy_id, d)| PolicyCounters {
                policy_id: policy_id.clone(),
                hits: d.match_hits as i64,
                misses: d.match_misses as i64,
                bytes_dropped: d.bytes_dropped as i64,
                series_dropped: d.records_dropped as i64,
                errors: errors.get(policy_id).cloned().unwrap_or_default(),
                scrapes: d.scrapes as i64,
                shadow: shadows.contains(policy_id),
            })
            .collect();
        let seq = report.seq;
        let message = EdgeMessage {
            message: Some(EdgeMsg::Stats(StatsReport {
                seq,
                policies,
                session: self.poller.outbox.session().to_owned(),
                volume: report.volume.to_proto(),
            })),
        };
        tx.send(message).await.ok()?;
        Some(seq)
    }

    /// On shutdown: send what is left and wait briefly for it to be stored.
    async fn flush(
        &mut self,
        tx: &mpsc::Sender<EdgeMessage>,
        inbound: &mut tonic::Streaming<tero_proto::controlplane::ServerMessage>,
    ) {
        // A report still in flight goes first (the server recognises a
        // resent one), then what was counted since: one per acknowledgement.
        let id = self.id();
        let deadline = Instant::now() + FLUSH_WAIT;
        let mut sent_any = false;
        while let Some(seq) = self.send_report(tx).await {
            sent_any = true;
            let mut stored = false;
            while let Ok(Ok(Some(m))) = tokio::time::timeout_at(deadline, inbound.message()).await {
                if let Some(ServerMsg::StatsAck(ack)) = m.message {
                    self.poller.outbox.acknowledge(ack.seq);
                    if ack.seq >= seq {
                        stored = true;
                        break;
                    }
                }
            }
            if !stored {
                tracing::warn!(provider = %id, "final statistics report not acknowledged");
                return;
            }
        }
        if sent_any {
            tracing::info!(provider = %id, "final statistics report stored");
        }
    }

    /// Applies a pushed snapshot and returns the ACK or NACK for it.
    fn apply_snapshot(&mut self, snapshot: Snapshot) -> EdgeMessage {
        let id = self.id();
        let refuse = |this: &mut Self, message: String| {
            tracing::warn!(provider = %id, hash = %snapshot.hash, error = %message, "snapshot refused; the current policies keep running");
            this.last_failed_hash.clone_from(&snapshot.hash);
            EdgeMessage {
                message: Some(EdgeMsg::Nack(Nack {
                    nonce: snapshot.nonce,
                    hash: snapshot.hash.clone(),
                    errors: Vec::new(),
                    message,
                })),
            }
        };
        let mut response = match SyncResponse::decode(snapshot.sync_response.clone()) {
            Ok(r) => r,
            Err(e) => return refuse(self, format!("malformed snapshot: {e}")),
        };
        let content_hash = tero_sdk::policy::policy_set_hash(&response.policies);
        if response.hash.is_empty() {
            response.hash.clone_from(&content_hash);
        }
        if snapshot.hash != content_hash || response.hash != content_hash {
            return refuse(
                self,
                format!(
                    "hash mismatch: snapshot says {}, its policies hash to {content_hash}",
                    snapshot.hash
                ),
            );
        }
        self.poller.apply(response, true);
        self.last_failed_hash.clear();
        let errors: Vec<PolicyError> = self
            .registry()
            .compile_errors(&id)
            .into_iter()
            .map(|(policy_id, errors)| PolicyError { policy_id, errors })
            .collect();
        let message = if errors.is_empty() {
            EdgeMsg::Ack(Ack {
                nonce: snapshot.nonce,
                hash: snapshot.hash,
            })
        } else {
            tracing::warn!(provider = %id, invalid = errors.len(), "snapshot applied except invalid policies");
            EdgeMsg::Nack(Nack {
                nonce: snapshot.nonce,
                hash: snapshot.hash,
                errors,
                message: String::new(),
            })
        };
        EdgeMessage {
            message: Some(message),
        }
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn heartbeat() -> EdgeMessage {
    EdgeMessage {
        message: Some(EdgeMsg::Heartbeat(Heartbeat {
            sent_at_unix_ms: unix_ms(),
        })),
    }
}

/// The interval between two server heartbeats, from their send times (the
/// server's clock, so no skew); `None` for the first or a nonsensical one.
fn beat_gap(previous: &mut Option<i64>, sent_at_ms: i64) -> Option<Duration> {
    let gap = previous.map(|p| sent_at_ms - p);
    *previous = Some(sent_at_ms);
    gap.filter(|g| *g > 0 && *g < 3_600_000)
        .map(|g| Duration::from_millis(g as u64))
}

fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// The server's request to wait (`retry-after` seconds) on UNAVAILABLE or
/// RESOURCE_EXHAUSTED.
fn retry_hint(status: &tonic::Status) -> Option<Duration> {
    if !matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::ResourceExhausted
    ) {
        return None;
    }
    let secs: f64 = status
        .metadata()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

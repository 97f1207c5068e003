//! `tero.controlplane.v1.EdgeService/Subscribe`: the push stream.
//!
//! One task per stream holds the edge's side of the protocol:
//! - the edge says hello with its identity and the hash it runs;
//! - whenever the catalog changes, the edge's group snapshot is compared
//!   with what it holds, and sent only if it differs and is not a hash the
//!   edge already refused;
//! - at most one snapshot is un-acknowledged: changes made meanwhile are
//!   coalesced into the next offer, made when the ACK or NACK arrives;
//! - heartbeats go both ways; an edge silent for three intervals is dropped;
//! - statistics reports are stored, then acknowledged by seq; a retried
//!   report is recognised by (instance, session, seq) and counted once.
//!
//! The stream ends on shutdown (UNAVAILABLE, reconnect elsewhere), when its
//! API key is revoked (UNAUTHENTICATED), or when the edge goes away.

use std::time::Duration;

use tero_proto::controlplane::edge_message::Message as EdgeMsg;
use tero_proto::controlplane::edge_service_server::EdgeService;
use tero_proto::controlplane::server_message::Message as ServerMsg;
use tero_proto::controlplane::{
    EdgeMessage, Heartbeat, Hello, ServerMessage, Snapshot as SnapshotMsg, StatsAck, StatsReport,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::admin::errors_by_policy;
use super::{ApiError, State};
use crate::auth::Principal;
use crate::ingest::DeltaBuilder;
use crate::runtime::instance_id;
use crate::store::now_ms;

/// How long a new stream may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct EdgeGrpc(pub State);

type Outbound = mpsc::Sender<Result<ServerMessage, Status>>;

#[tonic::async_trait]
impl EdgeService for EdgeGrpc {
    type SubscribeStream = ReceiverStream<Result<ServerMessage, Status>>;

    async fn subscribe(
        &self,
        request: Request<Streaming<EdgeMessage>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
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
        let Ok(slot) = self.0.stream_slots.clone().try_acquire_owned() else {
            return Err(ApiError::Unavailable {
                message: "too many open streams on this replica; poll, or retry later".into(),
                retry_after_secs: 10,
            }
            .into());
        };
        let (tx, rx) = mpsc::channel(4);
        let state = self.0.clone();
        let inbound = request.into_inner();
        tokio::spawn(async move {
            let _slot = slot;
            run(state, principal, inbound, tx).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

fn server(message: ServerMsg) -> Result<ServerMessage, Status> {
    Ok(ServerMessage {
        message: Some(message),
    })
}

async fn first_hello(inbound: &mut Streaming<EdgeMessage>) -> Result<Hello, Status> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| Status::deadline_exceeded("no hello within 30 s"))??;
    match first.and_then(|m| m.message) {
        Some(EdgeMsg::Hello(hello)) => Ok(hello),
        _ => Err(Status::invalid_argument(
            "the first message on a stream must be a hello",
        )),
    }
}

/// One stream's state.
struct Session {
    instance: String,
    hello: Hello,
    /// The hash the edge runs.
    held: String,
    /// A hash it refused; not offered again until the set changes.
    refused: String,
    nonce: u64,
    in_flight: Option<(u64, String)>,
}

async fn run(
    state: State,
    principal: Principal,
    mut inbound: Streaming<EdgeMessage>,
    out: Outbound,
) {
    let hello = match first_hello(&mut inbound).await {
        Ok(hello) => hello,
        Err(status) => {
            let _ = out.send(Err(status)).await;
            return;
        }
    };
    let meta = hello.client_metadata.clone().unwrap_or_default();
    let Some(instance) = instance_id(&meta) else {
        let _ = out
            .send(Err(Status::invalid_argument(
                "hello.client_metadata.resource_attributes: service.instance.id is required",
            )))
            .await;
        return;
    };
    state
        .runtime
        .stream_opened(&instance, &meta, principal.key_id(), &hello.last_hash);
    tracing::debug!(instance, "edge stream opened");
    let mut session = Session {
        instance: instance.clone(),
        held: hello.last_hash.clone(),
        refused: hello.last_failed_hash.clone(),
        hello,
        nonce: 0,
        in_flight: None,
    };
    let end = serve(&state, &principal, &mut session, &mut inbound, &out).await;
    if let Some(status) = end {
        let _ = out.send(Err(status)).await;
    }
    state.runtime.stream_closed(&instance);
    tracing::debug!(instance, "edge stream closed");
}

/// Serves until the stream ends; returns the status to end it with.
async fn serve(
    state: &State,
    principal: &Principal,
    session: &mut Session,
    inbound: &mut Streaming<EdgeMessage>,
    out: &Outbound,
) -> Option<Status> {
    let mut catalog = state.feed.subscribe();
    let mut revocations = state.auth.revocations();
    let heartbeat = state.heartbeat;
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut silent_until = tokio::time::Instant::now() + heartbeat * 3;

    catalog.mark_changed();
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => {
                return Some(Status::unavailable("control plane shutting down; reconnect"));
            }
            revoked = revocations.recv() => {
                if let Ok(id) = revoked && id == principal.key_id() {
                    return Some(Status::unauthenticated("API key revoked"));
                }
            }
            changed = catalog.changed() => {
                if changed.is_err() {
                    return Some(Status::unavailable("control plane shutting down; reconnect"));
                }
                if !offer(state, session, out).await {
                    return None;
                }
            }
            _ = beat.tick() => {
                let msg = server(ServerMsg::Heartbeat(Heartbeat { sent_at_unix_ms: now_ms() }));
                if out.send(msg).await.is_err() {
                    return None;
                }
            }
            _ = tokio::time::sleep_until(silent_until) => {
                return Some(Status::deadline_exceeded("no heartbeat from the edge for three intervals"));
            }
            message = inbound.message() => {
                let message = match message {
                    Ok(Some(m)) => m,
                    Ok(None) | Err(_) => return None,
                };
                silent_until = tokio::time::Instant::now() + heartbeat * 3;
                match message.message {
                    Some(EdgeMsg::Ack(ack))
                        if session.in_flight.as_ref().is_some_and(|(n, _)| *n == ack.nonce) =>
                    {
                        session.in_flight = None;
                        session.held = ack.hash.clone();
                        session.refused.clear();
                        state.runtime.applied(&session.instance, &ack.hash, Default::default());
                        if !offer(state, session, out).await {
                            return None;
                        }
                    }
                    Some(EdgeMsg::Nack(nack))
                        if session.in_flight.as_ref().is_some_and(|(n, _)| *n == nack.nonce) =>
                    {
                        session.in_flight = None;
                        if nack.errors.is_empty() {
                            // Refused as a whole: it keeps running what it held.
                            session.refused = nack.hash.clone();
                            state.runtime.refused(&session.instance, &nack.hash, &nack.message);
                        } else {
                            // Applied, except the policies that failed.
                            session.held = nack.hash.clone();
                            let errors = errors_by_policy(
                                nack.errors.iter().map(|e| (e.policy_id.as_str(), e.errors.as_slice())),
                            );
                            state.runtime.applied(&session.instance, &nack.hash, errors);
                        }
                        if !offer(state, session, out).await {
                            return None;
                        }
                    }
                    // Answers to an older snapshot than the one in flight.
                    Some(EdgeMsg::Ack(_)) | Some(EdgeMsg::Nack(_)) => {}
                    Some(EdgeMsg::Heartbeat(_)) => state.runtime.heard_from(&session.instance),
                    Some(EdgeMsg::Stats(report)) => {
                        if let Some(ack) = store_report(state, session, report).await
                            && out.send(server(ServerMsg::StatsAck(ack))).await.is_err()
                        {
                            return None;
                        }
                    }
                    Some(EdgeMsg::Hello(hello)) => {
                        // Identity changed (e.g. new labels): re-evaluate its set.
                        session.hello = hello;
                        if !offer(state, session, out).await {
                            return None;
                        }
                    }
                    None => {}
                }
            }
        }
    }
}

/// Offers the edge its current snapshot if it differs from what it holds.
/// Returns false when the edge is gone.
async fn offer(state: &State, session: &mut Session, out: &Outbound) -> bool {
    if session.in_flight.is_some() {
        // Coalesced: the newest set is offered when the edge answers.
        return true;
    }
    let catalog = state.feed.current();
    let meta = session.hello.client_metadata.clone().unwrap_or_default();
    let snapshot = catalog.snapshot_for(&meta);
    state.runtime.offered(&session.instance, &snapshot.hash);
    if snapshot.hash == session.held || snapshot.hash == session.refused {
        return true;
    }
    session.nonce += 1;
    session.in_flight = Some((session.nonce, snapshot.hash.clone()));
    let message = server(ServerMsg::Snapshot(SnapshotMsg {
        nonce: session.nonce,
        hash: snapshot.hash.clone(),
        sync_response: snapshot.protobuf.clone(),
    }));
    out.send(message).await.is_ok()
}

async fn store_report(state: &State, session: &Session, report: StatsReport) -> Option<StatsAck> {
    let mut deltas = DeltaBuilder::default();
    for p in &report.policies {
        deltas.add(
            &p.policy_id,
            p.hits,
            p.misses,
            p.bytes_dropped,
            p.series_dropped,
        );
    }
    // Without a session and seq the report cannot be recognised when
    // retried: it is stored at least once, like a poll's deltas.
    let identity = (!report.session.is_empty() && report.seq > 0)
        .then(|| (session.instance.clone(), report.session.clone(), report.seq));
    match state.ingest.submit(deltas.build(identity)).await {
        Ok(applied) => {
            if !applied {
                tracing::debug!(
                    instance = session.instance,
                    seq = report.seq,
                    "duplicate statistics report acknowledged"
                );
            }
            Some(StatsAck { seq: report.seq })
        }
        Err(e) => {
            // Unacknowledged: the edge keeps the report and sends it again.
            tracing::warn!(instance = session.instance, error = %e, "statistics report not stored");
            None
        }
    }
}

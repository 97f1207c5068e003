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

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::State as AxState;
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use hyper::body::{Body as HttpBody, Frame};
use prost::Message;
use tero_proto::controlplane::edge_message::Message as EdgeMsg;
use tero_proto::controlplane::server_message::Message as ServerMsg;
use tero_proto::controlplane::{
    EdgeMessage, Heartbeat, Hello, ServerMessage, Snapshot as SnapshotMsg, StatsAck, StatsReport,
};
use tokio::sync::{broadcast, mpsc};
use tonic::codec::BufferSettings;
use tonic::{Status, Streaming};

use super::admin::{MAX_ERROR_BYTES, check_identity, errors_by_policy, truncate};
use super::sync::MAX_STATUSES;
use super::{ApiError, State};
use crate::auth::Principal;
use crate::ingest::DeltaBuilder;
use crate::runtime::{EdgeEvent, EdgeStream, instance_id};
use crate::store::now_ms;

/// How long a new stream may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// The gRPC method this module serves.
pub const SUBSCRIBE_PATH: &str = "/tero.controlplane.v1.EdgeService/Subscribe";

/// Initial size of a stream's inbound buffer: edges send ACKs and
/// heartbeats of a few bytes; a larger statistics report grows it.
const INBOUND_BUFFER: usize = 1024;

/// `EdgeService/Subscribe`, served without tonic's response encoder.
///
/// tonic encodes each outgoing message into a buffer that the stream keeps
/// for its whole life, sized by the largest message it has sent: with
/// snapshots of tens of KiB, every open stream would hold a private copy of
/// its snapshot (57 KiB for 1,000 policies: over half a GiB for 10,000
/// edges), and every change would copy the snapshot once per stream. Here the
/// group's encoded `SyncResponse`, shared by all its streams, goes to HTTP/2
/// as it is, behind a few bytes of framing. Requests are still decoded by
/// tonic.
pub async fn subscribe(
    AxState(state): AxState<State>,
    request: axum::extract::Request,
) -> Response {
    // Subscribed before authenticating: a revocation from then on,
    // even while the stream waits for its hello, closes it.
    let revocations = state.auth.revocations();
    let header = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = match state.auth.authenticate(header).await {
        Ok(principal) => principal,
        Err(e) => return grpc_error(ApiError::from(e).into()),
    };
    if let Some(encoding) = request.headers().get("grpc-encoding")
        && encoding != "identity"
    {
        return grpc_error(Status::unimplemented(format!(
            "request compression {encoding:?} is not supported"
        )));
    }
    let Ok(slot) = state.stream_slots.clone().try_acquire_owned() else {
        state.metrics.fleet.streams_refused.fetch_add(1, Relaxed);
        return grpc_error(
            ApiError::Unavailable {
                message: "too many open streams on this replica; poll, or retry later".into(),
                retry_after_secs: 10,
            }
            .into(),
        );
    };
    let (tx, rx) = mpsc::channel(4);
    let decoder = tonic_prost::ProstDecoder::<EdgeMessage>::new(BufferSettings::new(
        INBOUND_BUFFER,
        32 * 1024,
    ));
    let inbound = Streaming::new_request(decoder, request.into_body(), None, None);
    tokio::spawn(async move {
        let _slot = slot;
        run(state, principal, revocations, inbound, Outbound(tx)).await;
    });
    (
        [(http::header::CONTENT_TYPE, "application/grpc")],
        axum::body::Body::new(OutboundBody { rx, done: false }),
    )
        .into_response()
}

/// A call refused before it starts: a trailers-only gRPC response.
fn grpc_error(status: Status) -> Response {
    status.into_http::<axum::body::Body>()
}

/// The stream task's end of the response body.
#[derive(Debug, Clone)]
struct Outbound(mpsc::Sender<Frame<Bytes>>);

/// The response body is gone: the edge went away.
#[derive(Debug)]
struct Closed;

impl Outbound {
    /// Sends a message, or ends the stream with a status.
    async fn send(&self, message: Result<ServerMessage, Status>) -> Result<(), Closed> {
        let frame = match message {
            Ok(message) => Frame::data(grpc_message(&message)),
            Err(status) => Frame::trailers(trailers(&status)),
        };
        self.0.send(frame).await.map_err(|_| Closed)
    }

    /// Sends a snapshot. `sync_response` is not copied: the same bytes go
    /// to every stream of the group.
    async fn send_snapshot(
        &self,
        nonce: u64,
        hash: &str,
        sync_response: &Bytes,
    ) -> Result<(), Closed> {
        let head = snapshot_head(nonce, hash, sync_response.len());
        self.0.send(Frame::data(head)).await.map_err(|_| Closed)?;
        if !sync_response.is_empty() {
            let body = Frame::data(sync_response.clone());
            self.0.send(body).await.map_err(|_| Closed)?;
        }
        Ok(())
    }
}

/// gRPC length-prefixed message framing: uncompressed flag, u32 length.
const GRPC_HEADER: usize = 5;
/// `ServerMessage.snapshot` (1) and `Snapshot.sync_response` (3), both
/// length-delimited (wire type 2).
const SNAPSHOT_KEY: u8 = (1 << 3) | 2;
const SYNC_RESPONSE_KEY: u8 = (3 << 3) | 2;

fn grpc_message(message: &ServerMessage) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(GRPC_HEADER + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    // BytesMut grows as needed: encoding cannot fail.
    let _ = message.encode(&mut buf);
    buf.freeze()
}

/// Everything of a framed `ServerMessage { snapshot }` before the bytes of
/// its `sync_response`, which follow it unchanged: the same bytes as prost
/// encoding the whole message (fields in tag order).
fn snapshot_head(nonce: u64, hash: &str, sync_response_len: usize) -> Bytes {
    // An empty bytes field is not encoded: this is fields 1 and 2.
    let fields = SnapshotMsg {
        nonce,
        hash: hash.to_owned(),
        sync_response: Default::default(),
    };
    let body_field = if sync_response_len == 0 {
        0
    } else {
        1 + prost::length_delimiter_len(sync_response_len) + sync_response_len
    };
    let snapshot_len = fields.encoded_len() + body_field;
    let message_len = 1 + prost::length_delimiter_len(snapshot_len) + snapshot_len;
    let mut buf = BytesMut::with_capacity(GRPC_HEADER + message_len - sync_response_len);
    buf.put_u8(0);
    buf.put_u32(message_len as u32);
    buf.put_u8(SNAPSHOT_KEY);
    // Into a BytesMut, which grows as needed: encoding cannot fail.
    let _ = prost::encode_length_delimiter(snapshot_len, &mut buf);
    let _ = fields.encode(&mut buf);
    if sync_response_len > 0 {
        buf.put_u8(SYNC_RESPONSE_KEY);
        let _ = prost::encode_length_delimiter(sync_response_len, &mut buf);
    }
    buf.freeze()
}

fn trailers(status: &Status) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        headers.clear();
        let _ = Status::internal("unencodable status").add_header(&mut headers);
    }
    headers
}

/// The response body: what the stream task sends, then its status; a task
/// that ends without one (the edge went away) ends the call with OK, as
/// tonic does when a response stream ends.
struct OutboundBody {
    rx: mpsc::Receiver<Frame<Bytes>>,
    done: bool,
}

impl HttpBody for OutboundBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let frame = match self.rx.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(frame)) => frame,
            Poll::Ready(None) => Frame::trailers(trailers(&Status::new(tonic::Code::Ok, ""))),
        };
        if frame.is_trailers() {
            self.done = true;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.done
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

/// Resolves when the key `principal` authenticated with is revoked (never
/// for an admin token). Cancel-safe: dropping it loses no revocation of this key.
async fn revoked(
    state: &State,
    principal: &Principal,
    revocations: &mut broadcast::Receiver<String>,
) {
    loop {
        match revocations.recv().await {
            Ok(id) if !id.is_empty() && id == principal.key_id() => return,
            Ok(_) => {}
            // Announcements were missed: ask the store about our own key.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                if !principal.key_id().is_empty()
                    && state
                        .store
                        .api_key_revoked(principal.key_id())
                        .await
                        .unwrap_or(false)
                {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

/// One stream's state.
struct Session {
    instance: String,
    /// Its edge in the runtime view; dropped with the session, which closes
    /// the stream there.
    edge: EdgeStream,
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
    mut revocations: broadcast::Receiver<String>,
    mut inbound: Streaming<EdgeMessage>,
    out: Outbound,
) {
    let hello = tokio::select! {
        // A revocation that arrived first wins even when the hello is also
        // ready by the time this task runs (a busy server): a revoked key
        // must not get a stream.
        biased;
        () = revoked(&state, &principal, &mut revocations) => {
            let _ = out.send(Err(Status::unauthenticated("API key revoked"))).await;
            return;
        }
        hello = first_hello(&mut inbound) => match hello {
            Ok(hello) => hello,
            Err(status) => {
                let _ = out.send(Err(status)).await;
                return;
            }
        },
        // A stream yet to say hello must not hold the drain up.
        () = state.shutdown.cancelled() => {
            let _ = out
                .send(Err(Status::unavailable("control plane shutting down; reconnect")))
                .await;
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
    if let Err(e) = check_identity(&instance, &meta) {
        let _ = out.send(Err(e.into())).await;
        return;
    }
    if let Err(conflict) = state.runtime.claim(&instance, principal.key_id()).await {
        state
            .metrics
            .fleet
            .instance_claims_refused
            .fetch_add(1, Relaxed);
        let _ = out
            .send(Err(Status::permission_denied(conflict.to_string())))
            .await;
        return;
    }
    let edge = state
        .runtime
        .stream_opened(&instance, &meta, principal.key_id(), &hello.last_hash);
    tracing::debug!(instance, "edge stream opened");
    let mut session = Session {
        instance: instance.clone(),
        edge,
        held: hello.last_hash.clone(),
        refused: hello.last_failed_hash.clone(),
        hello,
        nonce: 0,
        in_flight: None,
    };
    let end = serve(
        &state,
        &principal,
        &mut revocations,
        &mut session,
        &mut inbound,
        &out,
    )
    .await;
    if let Some(status) = end {
        let _ = out.send(Err(status)).await;
    }
    drop(session);
    tracing::debug!(instance, "edge stream closed");
}

/// Serves until the stream ends; returns the status to end it with.
async fn serve(
    state: &State,
    principal: &Principal,
    revocations: &mut broadcast::Receiver<String>,
    session: &mut Session,
    inbound: &mut Streaming<EdgeMessage>,
    out: &Outbound,
) -> Option<Status> {
    let mut catalog = state.feed.subscribe();
    let heartbeat = state.heartbeat;
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut silent_until = tokio::time::Instant::now() + heartbeat * 3;

    // The first offer, then a heartbeat: an edge knows its hello was
    // processed (and that whatever it lacked came first) at the first
    // message, so it can call itself synced without waiting an interval.
    catalog.borrow_and_update();
    if !offer(state, session, out).await {
        return None;
    }
    let hello_done = server(ServerMsg::Heartbeat(Heartbeat {
        sent_at_unix_ms: now_ms(),
    }));
    if out.send(hello_done).await.is_err() {
        return None;
    }
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => {
                return Some(Status::unavailable("control plane shutting down; reconnect"));
            }
            () = revoked(state, principal, revocations) => {
                return Some(Status::unauthenticated("API key revoked"));
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
                        // What was applied is what was sent under that nonce.
                        let hash = session.in_flight.take().map_or(ack.hash, |(_, h)| h);
                        state.metrics.fleet.snapshots_acked.fetch_add(1, Relaxed);
                        session.edge.record(EdgeEvent::Applied { hash: &hash, errors: Default::default() });
                        session.held = hash;
                        session.refused.clear();
                        if !offer(state, session, out).await {
                            return None;
                        }
                    }
                    Some(EdgeMsg::Nack(nack))
                        if session.in_flight.as_ref().is_some_and(|(n, _)| *n == nack.nonce) =>
                    {
                        let hash = session.in_flight.take().map_or(nack.hash, |(_, h)| h);
                        state.metrics.fleet.snapshots_nacked.fetch_add(1, Relaxed);
                        if nack.errors.is_empty() {
                            // Refused as a whole: it keeps running what it held.
                            let message = truncate(&nack.message, MAX_ERROR_BYTES);
                            session.edge.record(EdgeEvent::Refused { hash: &hash, message });
                            session.refused = hash;
                        } else {
                            // Applied, except the policies that failed.
                            session.held = hash.clone();
                            let catalog = state.feed.current();
                            let errors = errors_by_policy(
                                |id| catalog.knows(id),
                                nack.errors.iter().map(|e| (e.policy_id.as_str(), e.errors.as_slice())),
                            );
                            session.edge.record(EdgeEvent::Applied { hash: &hash, errors });
                        }
                        if !offer(state, session, out).await {
                            return None;
                        }
                    }
                    // Answers to an older snapshot than the one in flight.
                    Some(EdgeMsg::Ack(_)) | Some(EdgeMsg::Nack(_)) => {}
                    Some(EdgeMsg::Heartbeat(_)) => session.edge.record(EdgeEvent::Heard),
                    Some(EdgeMsg::Stats(report)) => {
                        if let Some(ack) = store_report(state, session, report).await
                            && out.send(server(ServerMsg::StatsAck(ack))).await.is_err()
                        {
                            return None;
                        }
                    }
                    Some(EdgeMsg::Hello(hello)) => {
                        // Identity changed (e.g. new labels): re-evaluate its
                        // set, and show the new identity in the registry (the
                        // deployment view scopes edges by what is stored).
                        let meta = hello.client_metadata.clone().unwrap_or_default();
                        if instance_id(&meta).as_deref() != Some(session.instance.as_str()) {
                            return Some(Status::invalid_argument(
                                "hello.client_metadata: service.instance.id cannot change on an open stream",
                            ));
                        }
                        if let Err(e) = check_identity(&session.instance, &meta) {
                            return Some(e.into());
                        }
                        session.edge.record(EdgeEvent::Identified(&meta));
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
    let catalog = state.feed.current();
    let snapshot = match session.hello.client_metadata.as_ref() {
        Some(meta) => catalog.snapshot_for(meta),
        None => catalog.snapshot_for(&Default::default()),
    };
    session.edge.record(EdgeEvent::Offered {
        hash: &snapshot.hash,
    });
    if session.in_flight.is_some() {
        // Coalesced: the newest set is offered when the edge answers.
        return true;
    }
    if snapshot.hash == session.held || snapshot.hash == session.refused {
        return true;
    }
    session.nonce += 1;
    session.in_flight = Some((session.nonce, snapshot.hash.clone()));
    state.metrics.fleet.snapshots_offered.fetch_add(1, Relaxed);
    out.send_snapshot(session.nonce, &snapshot.hash, &snapshot.protobuf)
        .await
        .is_ok()
}

async fn store_report(state: &State, session: &Session, report: StatsReport) -> Option<StatsAck> {
    if report.policies.len() > MAX_STATUSES {
        // Acknowledged but not stored: a report this large is no edge's,
        // and left unacknowledged it would be sent again for ever.
        tracing::warn!(
            instance = session.instance,
            policies = report.policies.len(),
            "statistics report refused: more than {MAX_STATUSES} policies"
        );
        state
            .metrics
            .fleet
            .statuses_too_many
            .fetch_add(report.policies.len() as u64, Relaxed);
        return Some(StatsAck { seq: report.seq });
    }
    let catalog = state.feed.current();
    let known = |id: &str| catalog.knows(id);
    let mut deltas = DeltaBuilder::default();
    for p in &report.policies {
        let _ = deltas.add_counters(known, p);
    }
    if let Some(volume) = &report.volume {
        let _ = deltas.add_volume(&session.instance, volume);
    }
    state.note_refused(&session.instance, &deltas);
    // Without a session and seq the report cannot be recognised when
    // retried: it is stored at least once, like a poll's deltas.
    let identity = (!report.session.is_empty() && report.seq > 0)
        .then(|| (session.instance.clone(), report.session.clone(), report.seq));
    match state.store_stats(deltas.build(identity)).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn full(nonce: u64, hash: &str, sync_response: &[u8]) -> Vec<u8> {
        let message = ServerMessage {
            message: Some(ServerMsg::Snapshot(SnapshotMsg {
                nonce,
                hash: hash.into(),
                sync_response: Bytes::copy_from_slice(sync_response),
            })),
        };
        grpc_message(&message).to_vec()
    }

    #[test]
    fn a_snapshot_head_and_its_shared_body_are_the_encoded_message() {
        for (nonce, hash, len) in [
            (1, "abc", 0),
            (7, "", 10),
            (u64::MAX, &"f".repeat(64)[..], 127),
            (300, "h", 128),
            (2, "h2", 57_000),
            (3, "h3", 3 << 20),
        ] {
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut wire = snapshot_head(nonce, hash, body.len()).to_vec();
            wire.extend_from_slice(&body);
            assert_eq!(wire, full(nonce, hash, &body), "nonce {nonce}, {len} bytes");
            let decoded = ServerMessage::decode(&wire[GRPC_HEADER..]).unwrap();
            let Some(ServerMsg::Snapshot(s)) = decoded.message else {
                panic!("not a snapshot")
            };
            assert_eq!(
                (s.nonce, s.hash.as_str(), &s.sync_response[..]),
                (nonce, hash, &body[..])
            );
        }
    }

    #[tokio::test]
    async fn the_body_ends_with_the_status_sent_or_ok_when_the_task_ends() {
        use http_body_util::BodyExt;
        let (tx, rx) = mpsc::channel(4);
        let out = Outbound(tx);
        out.send_snapshot(1, "h", &Bytes::from_static(b"xyz"))
            .await
            .unwrap();
        out.send(Err(Status::unauthenticated("API key revoked")))
            .await
            .unwrap();
        let collected = OutboundBody { rx, done: false }.collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        let status = Status::from_header_map(&trailers).unwrap();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert_eq!(collected.to_bytes().to_vec(), full(1, "h", b"xyz"));

        let (tx, rx) = mpsc::channel(4);
        drop(tx);
        let collected = OutboundBody { rx, done: false }.collect().await.unwrap();
        let status = Status::from_header_map(collected.trailers().unwrap()).unwrap();
        assert_eq!(status.code(), tonic::Code::Ok);
    }
}

//! The runtime view: which edges exist, how they connect, what they run.
//!
//! Every replica keeps the edges it talks to in memory and writes the ones
//! that changed to the store in batches; the API reads the store, so the
//! view covers the edges of every replica. Heartbeats alone refresh the
//! stored last-seen time at most every `TOUCH_EVERY`, which bounds the write
//! load of a large, quiet fleet.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tero_proto::controlplane::{Edge, EdgeState, PolicyError, Transport};
use tero_proto::policy::ClientMetadata;
use tokio_util::sync::CancellationToken;

use crate::scope::lookup;
use crate::store::{EdgeRecord, Store, now_ms};

/// How often a quiet, connected edge's last-seen time is persisted.
const TOUCH_EVERY_MS: i64 = 30_000;
/// An edge not heard from for this long is gone.
const GONE_AFTER_MS: i64 = 3_600_000;

#[derive(Debug)]
struct LiveEdge {
    record: EdgeRecord,
    persisted_last_seen: i64,
    dirty: bool,
    streams: u32,
}

/// This replica's live edges.
#[derive(Debug)]
pub struct Runtime {
    replica: String,
    store: Store,
    poll_interval_ms: i64,
    stream_interval_ms: i64,
    edges: Mutex<HashMap<String, LiveEdge>>,
}

/// A claim of an instance id bound to another API key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "service.instance.id {instance:?} is registered to another API key: give this edge an \
     instance id of its own, or revoke the other key to move the instance to this one"
)]
pub struct Conflict {
    pub instance: String,
}

/// The instance id an edge declares (`service.instance.id`).
pub fn instance_id(meta: &ClientMetadata) -> Option<String> {
    lookup(meta, "service.instance.id").filter(|id| !id.is_empty())
}

impl Runtime {
    pub fn new(
        replica: String,
        store: Store,
        poll_interval_secs: u32,
        heartbeat_secs: u32,
    ) -> Arc<Self> {
        Arc::new(Runtime {
            replica,
            store,
            poll_interval_ms: i64::from(poll_interval_secs.max(1)) * 1000,
            stream_interval_ms: (i64::from(heartbeat_secs.max(1)) * 1000).max(TOUCH_EVERY_MS),
            edges: Mutex::new(HashMap::new()),
        })
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LiveEdge>> {
        self.edges.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(
        &self,
        instance: &str,
        meta: Option<&ClientMetadata>,
        change: impl FnOnce(&mut LiveEdge),
    ) {
        let now = now_ms();
        let mut edges = self.lock();
        let live = edges
            .entry(instance.to_owned())
            .or_insert_with(|| LiveEdge {
                record: EdgeRecord {
                    instance_id: instance.to_owned(),
                    service_name: String::new(),
                    service_namespace: String::new(),
                    service_version: String::new(),
                    metadata: ClientMetadata::default(),
                    transport: "poll".into(),
                    replica: self.replica.clone(),
                    api_key_id: String::new(),
                    first_seen: now,
                    last_seen: now,
                    connected: false,
                    desired_hash: String::new(),
                    applied_hash: String::new(),
                    last_failed_hash: String::new(),
                    policy_errors: BTreeMap::new(),
                    conflict_key_id: String::new(),
                    conflict_at: 0,
                },
                persisted_last_seen: 0,
                dirty: true,
                streams: 0,
            });
        if let Some(meta) = meta
            && live.record.metadata != *meta
        {
            live.record.service_name = lookup(meta, "service.name").unwrap_or_default();
            live.record.service_namespace = lookup(meta, "service.namespace").unwrap_or_default();
            live.record.service_version = lookup(meta, "service.version").unwrap_or_default();
            live.record.metadata = meta.clone();
            live.dirty = true;
        }
        let before = live.record.clone();
        change(live);
        let changed = live.record != before;
        live.record.last_seen = now;
        // Only news is written at once; mere liveness waits for TOUCH_EVERY,
        // or for half a poll interval for a poller: the view calls a poller
        // stale after three intervals, which may be well under TOUCH_EVERY.
        let touch_every = if live.record.transport == "stream" {
            TOUCH_EVERY_MS
        } else {
            TOUCH_EVERY_MS.min(self.poll_interval_ms / 2)
        };
        if changed || now - live.persisted_last_seen >= touch_every {
            live.dirty = true;
        }
    }

    /// Checks that `key_id` may speak for `instance`. An instance id is
    /// bound to the key that registered it, so that another edge key cannot
    /// take its record over (and with it the policies its scope gets, and
    /// the deployment view); the binding ends when that key is revoked or
    /// the edge is gone. The admin token may claim any instance. A refused
    /// claim is recorded on the instance for the runtime view.
    pub async fn claim(&self, instance: &str, key_id: &str) -> Result<(), Conflict> {
        if key_id.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let known = self
            .lock()
            .get(instance)
            .map(|l| (l.record.api_key_id.clone(), l.record.last_seen));
        let (bound, last_seen) = match known {
            Some(known) => known,
            None => match self.store.get_edge(instance).await {
                Ok(stored) => {
                    let known = (stored.api_key_id.clone(), stored.last_seen);
                    // Kept, so that a refusal can be recorded on it.
                    self.lock()
                        .entry(instance.to_owned())
                        .or_insert_with(|| LiveEdge {
                            persisted_last_seen: stored.last_seen,
                            record: stored,
                            dirty: false,
                            streams: 0,
                        });
                    known
                }
                Err(crate::store::StoreError::NotFound { .. }) => return Ok(()),
                Err(e) => {
                    // The registry is a view: an unreadable one must not
                    // stop edges from syncing.
                    tracing::warn!(instance, error = %e, "edge registry unreadable; claim not checked");
                    return Ok(());
                }
            },
        };
        if bound.is_empty() || bound == key_id || now - last_seen >= GONE_AFTER_MS {
            return Ok(());
        }
        if self.store.api_key_revoked(&bound).await.unwrap_or(false) {
            return Ok(());
        }
        tracing::warn!(
            instance,
            key_id,
            bound_key_id = bound,
            "instance id claimed by another API key; refused"
        );
        if let Some(live) = self.lock().get_mut(instance) {
            // Not `update`: a refused claim is no sign of the edge's life.
            live.record.conflict_key_id = key_id.to_owned();
            live.record.conflict_at = now;
            live.dirty = true;
        }
        Err(Conflict {
            instance: instance.to_owned(),
        })
    }

    /// A poll (Sync) from an edge.
    pub fn polled(
        &self,
        instance: &str,
        meta: &ClientMetadata,
        key_id: &str,
        desired_hash: &str,
        reported_hash: &str,
        errors: BTreeMap<String, Vec<String>>,
    ) {
        self.update(instance, Some(meta), |live| {
            let r = &mut live.record;
            if live.streams == 0 {
                r.transport = "poll".into();
                r.connected = false;
            }
            r.api_key_id = key_id.to_owned();
            r.desired_hash = desired_hash.to_owned();
            r.applied_hash = reported_hash.to_owned();
            r.policy_errors = errors;
        });
    }

    pub fn stream_opened(
        &self,
        instance: &str,
        meta: &ClientMetadata,
        key_id: &str,
        held_hash: &str,
    ) {
        self.update(instance, Some(meta), |live| {
            live.streams += 1;
            let r = &mut live.record;
            r.transport = "stream".into();
            r.connected = true;
            r.api_key_id = key_id.to_owned();
            r.applied_hash = held_hash.to_owned();
        });
    }

    /// A streaming edge declared new metadata (a later hello).
    pub fn identified(&self, instance: &str, meta: &ClientMetadata) {
        self.update(instance, Some(meta), |_| {});
    }

    pub fn offered(&self, instance: &str, desired_hash: &str) {
        self.update(instance, None, |live| {
            live.record.desired_hash = desired_hash.to_owned();
        });
    }

    /// The edge runs `hash`, with these per-policy errors (empty: all applied).
    pub fn applied(&self, instance: &str, hash: &str, errors: BTreeMap<String, Vec<String>>) {
        self.update(instance, None, |live| {
            live.record.applied_hash = hash.to_owned();
            live.record.policy_errors = errors;
        });
    }

    /// The edge refused `hash` as a whole.
    pub fn refused(&self, instance: &str, hash: &str, message: &str) {
        self.update(instance, None, |live| {
            live.record.last_failed_hash = hash.to_owned();
            live.record
                .policy_errors
                .insert(String::new(), vec![message.to_owned()]);
        });
    }

    /// Edges heard from within their interval, by transport (`stream`,
    /// `poll`).
    pub fn live_by_transport(&self) -> HashMap<&'static str, usize> {
        let now = now_ms();
        let mut counts = HashMap::new();
        for live in self.lock().values() {
            // An edge whose stream closed is not a poller: it counts again
            // when it reconnects or polls.
            let transport = if live.streams > 0 {
                "stream"
            } else if live.record.transport == "poll"
                && now - live.record.last_seen <= 3 * self.poll_interval_ms
            {
                "poll"
            } else {
                continue;
            };
            *counts.entry(transport).or_default() += 1;
        }
        counts
    }

    pub fn heard_from(&self, instance: &str) {
        self.update(instance, None, |_| {});
    }

    pub fn stream_closed(&self, instance: &str) {
        self.update(instance, None, |live| {
            live.streams = live.streams.saturating_sub(1);
            if live.streams == 0 {
                live.record.connected = false;
            }
        });
    }

    /// Writes changed edges to the store and forgets disconnected ones that
    /// were written.
    pub async fn flush(&self) -> Result<(), crate::store::StoreError> {
        let batch: Vec<EdgeRecord> = {
            let mut edges = self.lock();
            edges
                .values_mut()
                .filter(|l| l.dirty)
                .map(|l| {
                    l.dirty = false;
                    l.persisted_last_seen = l.record.last_seen;
                    l.record.clone()
                })
                .collect()
        };
        if let Err(e) = self.store.upsert_edges(&batch).await {
            let mut edges = self.lock();
            for r in &batch {
                if let Some(l) = edges.get_mut(&r.instance_id) {
                    l.dirty = true;
                }
            }
            return Err(e);
        }
        let mut edges = self.lock();
        let now = now_ms();
        edges.retain(|_, l| {
            l.streams > 0 || l.dirty || now - l.record.last_seen < self.poll_interval_ms * 3
        });
        Ok(())
    }

    /// Flushes every second until cancelled, then once more.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.flush().await {
                tracing::warn!(error = %e, "edge registry flush failed; will retry");
            }
        }
        let _ = self.flush().await;
    }

    /// The API view of a stored edge, with its state derived from its age.
    pub fn view(&self, r: EdgeRecord, now: i64) -> Edge {
        let interval = if r.transport == "stream" {
            self.stream_interval_ms
        } else {
            self.poll_interval_ms
        };
        let age = now - r.last_seen;
        let live = r.connected || r.transport != "stream";
        let state = if age >= GONE_AFTER_MS {
            EdgeState::Gone
        } else if live && age < interval * 3 {
            EdgeState::Connected
        } else {
            EdgeState::Stale
        };
        Edge {
            instance_id: r.instance_id,
            service_name: r.service_name,
            service_namespace: r.service_namespace,
            service_version: r.service_version,
            client_metadata: Some(r.metadata),
            transport: if r.transport == "stream" {
                Transport::Stream as i32
            } else {
                Transport::Poll as i32
            },
            replica: r.replica,
            first_seen_unix_ms: r.first_seen,
            last_seen_unix_ms: r.last_seen,
            desired_hash: r.desired_hash,
            applied_hash: r.applied_hash,
            last_failed_hash: r.last_failed_hash,
            policy_errors: r
                .policy_errors
                .into_iter()
                .map(|(policy_id, errors)| PolicyError { policy_id, errors })
                .collect(),
            state: state as i32,
            api_key_id: r.api_key_id,
            conflicting_key_id: r.conflict_key_id,
            conflict_unix_ms: r.conflict_at,
        }
    }

    pub fn gone_after_ms() -> i64 {
        GONE_AFTER_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tero_proto::otel::{AnyValue, KeyValue, any_value::Value};

    fn meta(instance: &str) -> ClientMetadata {
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(v.into())),
            }),
        };
        ClientMetadata {
            resource_attributes: vec![
                kv("service.instance.id", instance),
                kv("service.name", "checkout"),
            ],
            ..Default::default()
        }
    }

    async fn runtime(dir: &tempfile::TempDir) -> (Arc<Runtime>, Store) {
        let url = format!("sqlite://{}/r.db?mode=rwc", dir.path().display());
        let store = Store::open(&url).await.unwrap();
        // Poll every 10 s, heartbeat every 15 s (liveness window 30 s at least).
        (Runtime::new("r1".into(), store.clone(), 10, 15), store)
    }

    #[tokio::test]
    async fn states_follow_transport_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, store) = runtime(&dir).await;
        rt.polled("p", &meta("p"), "key_1", "want", "have", BTreeMap::new());
        rt.stream_opened("s", &meta("s"), "key_1", "held");
        rt.flush().await.unwrap();
        let now = now_ms();
        let view = |id: &str, at: i64| {
            let store = store.clone();
            let rt = Arc::clone(&rt);
            let id = id.to_owned();
            async move { rt.view(store.get_edge(&id).await.unwrap(), at) }
        };
        let p = view("p", now).await;
        assert_eq!(p.state, EdgeState::Connected as i32);
        assert_eq!(p.transport, Transport::Poll as i32);
        assert_eq!(
            (p.desired_hash.as_str(), p.applied_hash.as_str()),
            ("want", "have")
        );
        assert_eq!(p.service_name, "checkout");
        // A poller is stale after three of its intervals, gone after an hour.
        assert_eq!(view("p", now + 31_000).await.state, EdgeState::Stale as i32);
        assert_eq!(
            view("p", now + GONE_AFTER_MS).await.state,
            EdgeState::Gone as i32
        );

        let s = view("s", now).await;
        assert_eq!(
            (s.state, s.transport),
            (EdgeState::Connected as i32, Transport::Stream as i32)
        );
        // A closed stream is stale at once, whatever its age.
        rt.stream_closed("s");
        rt.flush().await.unwrap();
        assert_eq!(view("s", now_ms()).await.state, EdgeState::Stale as i32);
    }

    #[tokio::test]
    async fn a_steady_pollers_last_seen_is_written_every_half_interval() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, _store) = runtime(&dir).await;
        let poll = |rt: &Runtime| rt.polled("p", &meta("p"), "key_1", "h", "h", BTreeMap::new());
        poll(&rt);
        rt.flush().await.unwrap();
        poll(&rt);
        assert!(!rt.lock()["p"].dirty, "a poll moments later is not news");
        // Half a poll interval (5 s) later, well before TOUCH_EVERY: the
        // view calls a poller stale after three intervals.
        rt.lock().get_mut("p").unwrap().persisted_last_seen -= 5_000;
        poll(&rt);
        assert!(rt.lock()["p"].dirty);
    }

    #[tokio::test]
    async fn only_news_is_written_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, store) = runtime(&dir).await;
        rt.stream_opened("s", &meta("s"), "key_1", "h1");
        rt.flush().await.unwrap();
        let first = store.get_edge("s").await.unwrap();
        // A heartbeat is not news: nothing to write until TOUCH_EVERY.
        rt.heard_from("s");
        assert!(!rt.lock()["s"].dirty);
        // An applied hash is.
        rt.applied(
            "s",
            "h2",
            BTreeMap::from([("p1".to_owned(), vec!["bad regex".to_owned()])]),
        );
        assert!(rt.lock()["s"].dirty);
        rt.flush().await.unwrap();
        let second = store.get_edge("s").await.unwrap();
        assert_eq!(second.applied_hash, "h2");
        assert_eq!(second.policy_errors["p1"], ["bad regex"]);
        assert_eq!(second.first_seen, first.first_seen);
        // A closed stream stays in memory while it was seen recently.
        rt.stream_closed("s");
        rt.flush().await.unwrap();
        assert!(rt.lock().contains_key("s"), "seen moments ago");
    }
}

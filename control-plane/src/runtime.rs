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
        live.record.last_seen = now;
        live.record.replica.clone_from(&self.replica);
        if live.record != before_with_time(&before, now, &self.replica)
            || now - live.persisted_last_seen >= TOUCH_EVERY_MS
        {
            live.dirty = true;
        }
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
        }
    }

    pub fn gone_after_ms() -> i64 {
        GONE_AFTER_MS
    }
}

fn before_with_time(before: &EdgeRecord, now: i64, replica: &str) -> EdgeRecord {
    let mut r = before.clone();
    r.last_seen = now;
    r.replica = replica.to_owned();
    r
}

//! The runtime view: which edges exist, how they connect, what they run.
//!
//! Every replica keeps the edges it talks to in memory and writes the ones
//! that changed to the store in batches; the API reads the store, so the
//! view covers the edges of every replica. Heartbeats alone refresh the
//! stored last-seen time at most every `TOUCH_EVERY`, which bounds the write
//! load of a large, quiet fleet.
//!
//! Each edge's state sits behind a lock of its own. A stream holds its
//! edge through an [`EdgeStream`], so its offers, answers and heartbeats
//! lock that edge alone; polls, claims and the flush find edges through the
//! registry's map. Events are typed, and each marks the edge dirty only
//! when it changes a field the store holds, so that telling news from mere
//! liveness costs a few comparisons, not a copy of the record.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tero_proto::controlplane::{Edge, EdgeState, PolicyError, Transport};
use tero_proto::policy::ClientMetadata;
use tokio_util::sync::CancellationToken;

use crate::scope::lookup;
use crate::store::{EdgeRecord, PolicyErrors, Store, StoreError, now_ms};

/// How often a quiet, connected edge's last-seen time is persisted.
const TOUCH_EVERY_MS: i64 = 30_000;
/// An edge not heard from for this long is gone.
const GONE_AFTER_MS: i64 = 3_600_000;

/// What a stream learns about its edge.
#[derive(Debug, Clone, PartialEq)]
pub enum EdgeEvent<'a> {
    /// A later hello declared this identity.
    Identified(&'a ClientMetadata),
    /// The edge's scope resolves to this snapshot (sent or not).
    Offered { hash: &'a str },
    /// The edge runs `hash`, with these per-policy errors (empty: all
    /// applied).
    Applied { hash: &'a str, errors: PolicyErrors },
    /// The edge refused `hash` as a whole, and keeps what it held.
    Refused { hash: &'a str, message: String },
    /// A heartbeat: the edge is alive, nothing else.
    Heard,
}

/// One edge as this replica knows it.
#[derive(Debug)]
struct LiveEdge {
    record: EdgeRecord,
    persisted_last_seen: i64,
    /// The record holds news the store has not been given yet.
    dirty: bool,
    streams: u32,
}

type Entry = Arc<Mutex<LiveEdge>>;

fn lock(entry: &Mutex<LiveEdge>) -> MutexGuard<'_, LiveEdge> {
    entry.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sets `field` to `value`; true if that changed it.
fn set<T: PartialEq>(field: &mut T, value: T) -> bool {
    if *field == value {
        return false;
    }
    *field = value;
    true
}

/// [`set`] for text, reusing the field's allocation.
fn set_str(field: &mut String, value: &str) -> bool {
    if field == value {
        return false;
    }
    field.clear();
    field.push_str(value);
    true
}

impl LiveEdge {
    fn new(instance: &str, replica: &str, now: i64) -> Self {
        LiveEdge {
            record: EdgeRecord {
                instance_id: instance.to_owned(),
                service_name: String::new(),
                service_namespace: String::new(),
                service_version: String::new(),
                metadata: ClientMetadata::default(),
                transport: Transport::Poll,
                replica: replica.to_owned(),
                api_key_id: String::new(),
                first_seen: now,
                last_seen: now,
                connected: false,
                desired_hash: String::new(),
                applied_hash: String::new(),
                last_failed_hash: String::new(),
                policy_errors: BTreeMap::new(),
                refusal: None,
                conflict_key_id: String::new(),
                conflict_at: 0,
            },
            persisted_last_seen: 0,
            dirty: true,
            streams: 0,
        }
    }

    /// An edge known only from the store (kept to record a refused claim).
    fn stored(record: EdgeRecord) -> Self {
        LiveEdge {
            persisted_last_seen: record.last_seen,
            record,
            dirty: false,
            streams: 0,
        }
    }

    /// Takes the identity `meta` declares; true if it changed.
    fn identify(&mut self, meta: &ClientMetadata) -> bool {
        if self.record.metadata == *meta {
            return false;
        }
        let r = &mut self.record;
        r.service_name = lookup(meta, "service.name").unwrap_or_default();
        r.service_namespace = lookup(meta, "service.namespace").unwrap_or_default();
        r.service_version = lookup(meta, "service.version").unwrap_or_default();
        r.metadata = meta.clone();
        true
    }

    /// Applies `event`; true if it changed what the store holds. (`|`, not
    /// `||`: every field is set.)
    fn apply(&mut self, event: EdgeEvent<'_>) -> bool {
        let r = &mut self.record;
        match event {
            EdgeEvent::Identified(meta) => self.identify(meta),
            EdgeEvent::Offered { hash } => set_str(&mut r.desired_hash, hash),
            EdgeEvent::Applied { hash, errors } => {
                set_str(&mut r.applied_hash, hash)
                    | set(&mut r.policy_errors, errors)
                    | set(&mut r.refusal, None)
            }
            EdgeEvent::Refused { hash, message } => {
                set_str(&mut r.last_failed_hash, hash) | set(&mut r.refusal, Some(message))
            }
            EdgeEvent::Heard => false,
        }
    }

    fn polled(&mut self, key_id: &str, desired: &str, applied: &str, errors: PolicyErrors) -> bool {
        let streaming = self.streams > 0;
        let r = &mut self.record;
        let mut changed = false;
        if !streaming {
            changed |= set(&mut r.transport, Transport::Poll) | set(&mut r.connected, false);
        }
        changed
            | set_str(&mut r.api_key_id, key_id)
            | set_str(&mut r.desired_hash, desired)
            | set_str(&mut r.applied_hash, applied)
            | set(&mut r.policy_errors, errors)
            | set(&mut r.refusal, None)
    }

    fn opened(&mut self, key_id: &str, held_hash: &str) -> bool {
        self.streams += 1;
        let r = &mut self.record;
        set(&mut r.transport, Transport::Stream)
            | set(&mut r.connected, true)
            | set_str(&mut r.api_key_id, key_id)
            | set_str(&mut r.applied_hash, held_hash)
    }

    fn closed(&mut self) -> bool {
        self.streams = self.streams.saturating_sub(1);
        self.streams == 0 && set(&mut self.record.connected, false)
    }

    /// The edge was heard from at `now`, with news or not. Only news is
    /// written at once; mere liveness waits for TOUCH_EVERY, or for half a
    /// poll interval for a poller: the view calls a poller stale after
    /// three intervals, which may be well under TOUCH_EVERY.
    fn seen(&mut self, news: bool, now: i64, poll_interval_ms: i64) {
        self.record.last_seen = now;
        let touch_every = if self.record.transport == Transport::Stream {
            TOUCH_EVERY_MS
        } else {
            TOUCH_EVERY_MS.min(poll_interval_ms / 2)
        };
        if news || now - self.persisted_last_seen >= touch_every {
            self.dirty = true;
        }
    }
}

/// An open stream's hold on its edge: the stream's events lock this edge
/// only. Dropping it closes the stream in the registry, however the stream
/// ended.
#[derive(Debug)]
pub struct EdgeStream {
    entry: Entry,
    poll_interval_ms: i64,
}

impl EdgeStream {
    pub fn record(&self, event: EdgeEvent<'_>) {
        let mut live = lock(&self.entry);
        let news = live.apply(event);
        live.seen(news, now_ms(), self.poll_interval_ms);
    }
}

impl Drop for EdgeStream {
    fn drop(&mut self) {
        let mut live = lock(&self.entry);
        let news = live.closed();
        live.seen(news, now_ms(), self.poll_interval_ms);
    }
}

/// Edges heard from within their interval, by transport.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LiveCounts {
    pub stream: usize,
    pub poll: usize,
}

/// This replica's live edges.
#[derive(Debug)]
pub struct Runtime {
    replica: String,
    store: Store,
    poll_interval_ms: i64,
    stream_interval_ms: i64,
    edges: Mutex<HashMap<String, Entry>>,
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

    /// The map of entries. Lock order: the map, then an entry; never an
    /// entry, then the map.
    fn map(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.edges.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry of `instance`, created if new. The caller's clone keeps
    /// it in the map until dropped (see [`Runtime::flush`]).
    fn entry(&self, instance: &str) -> Entry {
        let mut edges = self.map();
        if let Some(entry) = edges.get(instance) {
            return Arc::clone(entry);
        }
        let entry = Arc::new(Mutex::new(LiveEdge::new(instance, &self.replica, now_ms())));
        edges.insert(instance.to_owned(), Arc::clone(&entry));
        entry
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
        let known = self.map().get(instance).map(|entry| {
            let live = lock(entry);
            (live.record.api_key_id.clone(), live.record.last_seen)
        });
        let (bound, last_seen) = match known {
            Some(known) => known,
            None => match self.store.get_edge(instance).await {
                Ok(stored) => {
                    let known = (stored.api_key_id.clone(), stored.last_seen);
                    // Kept, so that a refusal can be recorded on it.
                    self.map()
                        .entry(instance.to_owned())
                        .or_insert_with(|| Arc::new(Mutex::new(LiveEdge::stored(stored))));
                    known
                }
                Err(StoreError::NotFound { .. }) => return Ok(()),
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
        if let Some(entry) = self.map().get(instance) {
            // Not `seen`: a refused claim is no sign of the edge's life.
            let mut live = lock(entry);
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
        errors: PolicyErrors,
    ) {
        let entry = self.entry(instance);
        let mut live = lock(&entry);
        let news = live.identify(meta) | live.polled(key_id, desired_hash, reported_hash, errors);
        live.seen(news, now_ms(), self.poll_interval_ms);
    }

    /// A stream said hello: its events go through the handle returned,
    /// which closes the stream when dropped.
    pub fn stream_opened(
        &self,
        instance: &str,
        meta: &ClientMetadata,
        key_id: &str,
        held_hash: &str,
    ) -> EdgeStream {
        let entry = self.entry(instance);
        {
            let mut live = lock(&entry);
            let news = live.identify(meta) | live.opened(key_id, held_hash);
            live.seen(news, now_ms(), self.poll_interval_ms);
        }
        EdgeStream {
            entry,
            poll_interval_ms: self.poll_interval_ms,
        }
    }

    /// Edges heard from within their interval, by transport.
    pub fn live_by_transport(&self) -> LiveCounts {
        let now = now_ms();
        let mut counts = LiveCounts::default();
        for entry in self.map().values() {
            let live = lock(entry);
            // An edge whose stream closed is not a poller: it counts again
            // when it reconnects or polls.
            if live.streams > 0 {
                counts.stream += 1;
            } else if live.record.transport == Transport::Poll
                && now - live.record.last_seen <= 3 * self.poll_interval_ms
            {
                counts.poll += 1;
            }
        }
        counts
    }

    /// Writes changed edges to the store and forgets disconnected ones that
    /// were written.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (entries, batch): (Vec<Entry>, Vec<EdgeRecord>) = self
            .map()
            .values()
            .filter_map(|entry| {
                let mut live = lock(entry);
                if !live.dirty {
                    return None;
                }
                live.dirty = false;
                live.persisted_last_seen = live.record.last_seen;
                Some((Arc::clone(entry), live.record.clone()))
            })
            .unzip();
        if let Err(e) = self.store.upsert_edges(&batch).await {
            for entry in &entries {
                lock(entry).dirty = true;
            }
            return Err(e);
        }
        drop(entries);
        let now = now_ms();
        // An entry someone else holds (an open stream, a poll being
        // recorded) stays: they hold it to write to it, and it was found
        // through this map. Clones are only made under the map's lock.
        self.map().retain(|_, entry| {
            let live = lock(entry);
            Arc::strong_count(entry) > 1
                || live.streams > 0
                || live.dirty
                || now - live.record.last_seen < self.poll_interval_ms * 3
        });
        Ok(())
    }

    /// Flushes every second until cancelled, then once more. The last
    /// flush's error is logged and returned: the view then keeps these
    /// edges' previous state.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), StoreError> {
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
        self.flush().await.inspect_err(|e| {
            tracing::error!(
                error = %e,
                "edge registry flush failed at shutdown; the runtime view keeps these edges' previous state"
            );
        })
    }

    /// The API view of a stored edge, with its state derived from its age.
    pub fn view(&self, r: EdgeRecord, now: i64) -> Edge {
        let streaming = r.transport == Transport::Stream;
        let interval = if streaming {
            self.stream_interval_ms
        } else {
            self.poll_interval_ms
        };
        let age = now - r.last_seen;
        let live = r.connected || !streaming;
        let state = if age >= GONE_AFTER_MS {
            EdgeState::Gone
        } else if live && age < interval * 3 {
            EdgeState::Connected
        } else {
            EdgeState::Stale
        };
        // A whole-snapshot refusal shows as the errors of policy id "",
        // first, as it always has.
        let refusal = r.refusal.map(|message| PolicyError {
            policy_id: String::new(),
            errors: vec![message],
        });
        let per_policy = r
            .policy_errors
            .into_iter()
            .map(|(policy_id, errors)| PolicyError { policy_id, errors });
        Edge {
            instance_id: r.instance_id,
            service_name: r.service_name,
            service_namespace: r.service_namespace,
            service_version: r.service_version,
            client_metadata: Some(r.metadata),
            transport: if streaming {
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
            policy_errors: refusal.into_iter().chain(per_policy).collect(),
            state: state as i32,
            api_key_id: r.api_key_id,
            conflicting_key_id: r.conflict_key_id,
            conflict_unix_ms: r.conflict_at,
            // From the store's volume buckets, by the admin API.
            volume_last_5m: None,
            volume_last_hour: None,
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

    /// `instance`'s live state (the entry is not held past the statement).
    fn live<T>(rt: &Runtime, instance: &str, read: impl FnOnce(&mut LiveEdge) -> T) -> T {
        let entry = Arc::clone(&rt.map()[instance]);
        read(&mut lock(&entry))
    }

    #[tokio::test]
    async fn states_follow_transport_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, store) = runtime(&dir).await;
        rt.polled("p", &meta("p"), "key_1", "want", "have", BTreeMap::new());
        let s = rt.stream_opened("s", &meta("s"), "key_1", "held");
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

        let sv = view("s", now).await;
        assert_eq!(
            (sv.state, sv.transport),
            (EdgeState::Connected as i32, Transport::Stream as i32)
        );
        // A closed stream is stale at once, whatever its age.
        drop(s);
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
        assert!(
            !live(&rt, "p", |l| l.dirty),
            "a poll moments later is not news"
        );
        // Half a poll interval (5 s) later, well before TOUCH_EVERY: the
        // view calls a poller stale after three intervals.
        live(&rt, "p", |l| l.persisted_last_seen -= 5_000);
        poll(&rt);
        assert!(live(&rt, "p", |l| l.dirty));
    }

    #[tokio::test]
    async fn only_news_is_written_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, store) = runtime(&dir).await;
        let s = rt.stream_opened("s", &meta("s"), "key_1", "h1");
        rt.flush().await.unwrap();
        let first = store.get_edge("s").await.unwrap();
        // A heartbeat is not news: nothing to write until TOUCH_EVERY.
        s.record(EdgeEvent::Heard);
        assert!(!live(&rt, "s", |l| l.dirty));
        // An applied hash is.
        s.record(EdgeEvent::Applied {
            hash: "h2",
            errors: BTreeMap::from([("p1".to_owned(), vec!["bad regex".to_owned()])]),
        });
        assert!(live(&rt, "s", |l| l.dirty));
        rt.flush().await.unwrap();
        let second = store.get_edge("s").await.unwrap();
        assert_eq!(second.applied_hash, "h2");
        assert_eq!(second.policy_errors["p1"], ["bad regex"]);
        assert_eq!(second.first_seen, first.first_seen);
        // A closed stream stays in memory while it was seen recently.
        drop(s);
        rt.flush().await.unwrap();
        assert!(rt.map().contains_key("s"), "seen moments ago");
    }

    #[test]
    fn an_event_is_news_only_when_it_changes_a_stored_field() {
        let mut edge = LiveEdge::new("s", "r1", 0);
        assert!(edge.opened("key_1", "h1"));
        assert!(
            !edge.opened("key_1", "h1"),
            "a second stream of the same edge"
        );
        assert!(edge.apply(EdgeEvent::Identified(&meta("s"))));
        assert!(!edge.apply(EdgeEvent::Identified(&meta("s"))));
        assert!(edge.apply(EdgeEvent::Offered { hash: "h2" }));
        assert!(!edge.apply(EdgeEvent::Offered { hash: "h2" }));
        assert!(!edge.apply(EdgeEvent::Heard));
        let refused = || EdgeEvent::Refused {
            hash: "h2",
            message: "no".into(),
        };
        assert!(edge.apply(refused()));
        assert!(!edge.apply(refused()));
        assert!(
            edge.apply(EdgeEvent::Applied {
                hash: "h1",
                errors: BTreeMap::new()
            }),
            "the refusal is cleared"
        );
        assert_eq!(edge.record.refusal, None);
        assert!(!edge.closed(), "the other stream is open");
        assert!(edge.closed());
        assert!(!edge.closed());
    }

    #[tokio::test]
    async fn a_whole_refusal_is_shown_as_the_errors_of_policy_id_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, store) = runtime(&dir).await;
        let s = rt.stream_opened("s", &meta("s"), "key_1", "h1");
        s.record(EdgeEvent::Applied {
            hash: "h1",
            errors: BTreeMap::from([("p1".to_owned(), vec!["bad regex".to_owned()])]),
        });
        s.record(EdgeEvent::Refused {
            hash: "h2",
            message: "too many policies".into(),
        });
        rt.flush().await.unwrap();
        let stored = store.get_edge("s").await.unwrap();
        assert_eq!(stored.refusal.as_deref(), Some("too many policies"));
        assert_eq!(stored.last_failed_hash, "h2");
        let view = rt.view(stored, now_ms());
        assert_eq!(
            view.policy_errors,
            [
                PolicyError {
                    policy_id: String::new(),
                    errors: vec!["too many policies".into()],
                },
                PolicyError {
                    policy_id: "p1".into(),
                    errors: vec!["bad regex".into()],
                },
            ]
        );
        // Applying a snapshot ends it; a poll would too.
        s.record(EdgeEvent::Applied {
            hash: "h3",
            errors: BTreeMap::new(),
        });
        rt.flush().await.unwrap();
        let stored = store.get_edge("s").await.unwrap();
        assert_eq!((stored.refusal, stored.policy_errors.len()), (None, 0));
    }

    #[tokio::test]
    async fn a_disconnected_edge_is_forgotten_once_written_unless_held() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, _store) = runtime(&dir).await;
        rt.polled("p", &meta("p"), "key_1", "h", "h", BTreeMap::new());
        let s = rt.stream_opened("s", &meta("s"), "key_1", "h");
        rt.flush().await.unwrap();
        for id in ["p", "s"] {
            live(&rt, id, |l| l.record.last_seen -= 60_000);
        }
        rt.flush().await.unwrap();
        assert!(!rt.map().contains_key("p"));
        assert!(rt.map().contains_key("s"), "its stream is open");
        // Held while a poll is being recorded: a poll must not land on an
        // entry the map has forgotten.
        rt.polled("q", &meta("q"), "key_1", "h", "h", BTreeMap::new());
        rt.flush().await.unwrap();
        live(&rt, "q", |l| l.record.last_seen -= 60_000);
        let held = rt.entry("q");
        rt.flush().await.unwrap();
        assert!(rt.map().contains_key("q"));
        drop((held, s));
    }

    #[tokio::test]
    async fn the_last_flush_reports_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, store) = runtime(&dir).await;
        rt.polled("p", &meta("p"), "key_1", "h", "h", BTreeMap::new());
        store.close().await;
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        assert!(rt.run(shutdown).await.is_err());
    }
}

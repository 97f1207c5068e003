//! The snapshot builder: what each edge should run, built once per group of
//! edges that receive the same set.
//!
//! A catalog is an immutable view of every stored policy at one generation.
//! Edges are grouped by what decides their set, the stages they support,
//! whether they run shadow policies, and which of the catalog's distinct
//! scopes they fall in, never by instance id; so ten thousand replicas of
//! one service share one snapshot, one hash and one encoded response. A
//! change replaces the whole catalog; nothing in it is ever mutated except
//! the lazily filled snapshot cache.
//!
//! Shadow policies (labelled `tero.mode=shadow`) go only to edges that
//! declare the `tero.shadow` capability: a client that does not know the
//! label would enforce the policy. Others get the set without them, so a
//! different hash.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use tero_proto::controlplane::{ManagedPolicy, Scope};
use tero_proto::policy::{ClientMetadata, Policy, PolicyStage, SyncResponse, SyncType};
use tero_sdk::engine::{declares_shadow, is_shadow};
use tero_sdk::policy::{Signal, policy_set_hash, signal_of};

use crate::scope;

/// The inputs that decide an edge's set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKey {
    /// Bit per `PolicyStage`; all bits when the edge declared none.
    stages: u8,
    /// Bit per distinct scope of the catalog: set when the edge is in it.
    scopes: Vec<u64>,
    /// The edge runs shadow policies without enforcing them. Always false
    /// in a catalog without shadow policies, so capable and other edges
    /// keep sharing one snapshot.
    shadow: bool,
}

/// One group's policy set, ready to send.
#[derive(Debug)]
pub struct Snapshot {
    pub hash: String,
    pub policies: Vec<Policy>,
    /// `SyncResponse` without `sync_timestamp_unix_nano`: a poll appends the
    /// timestamp field; a stream sends it as is.
    pub protobuf: Bytes,
    /// The proto3 JSON `SyncResponse`, split around its timestamp value.
    json_head: Bytes,
    json_tail: Bytes,
}

impl Snapshot {
    /// The binary protobuf SyncResponse stamped with `now_nanos`. Fields may
    /// come in any order on the wire, so the timestamp is appended.
    pub fn protobuf_at(&self, now_nanos: u64) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.protobuf.len() + 9);
        buf.put_slice(&self.protobuf);
        // Field 3 (sync_timestamp_unix_nano), wire type 1 (fixed64).
        buf.put_u8((3 << 3) | 1);
        buf.put_u64_le(now_nanos);
        buf.freeze()
    }

    /// The proto3 JSON SyncResponse stamped with `now_nanos`.
    pub fn json_at(&self, now_nanos: u64) -> Bytes {
        let stamp = now_nanos.to_string();
        let mut buf =
            BytesMut::with_capacity(self.json_head.len() + stamp.len() + self.json_tail.len());
        buf.put_slice(&self.json_head);
        buf.put_slice(stamp.as_bytes());
        buf.put_slice(&self.json_tail);
        buf.freeze()
    }

    pub fn contains(&self, policy_id: &str) -> bool {
        self.policies.iter().any(|p| p.id == policy_id)
    }
}

/// The longest policy id: the control plane refuses longer ones, and
/// ignores edges' statistics and errors naming one.
pub const MAX_POLICY_ID_BYTES: usize = 1024;

struct Entry {
    policy: Policy,
    /// Index into `Catalog::scopes`; `None` for an unscoped policy.
    scope: Option<usize>,
    stages: u8,
    /// Labelled `tero.mode=shadow`.
    shadow: bool,
}

/// Every policy at one generation, and the snapshots built from it so far.
pub struct Catalog {
    generation: u64,
    entries: Vec<Entry>,
    /// Every stored policy, disabled ones included: the ids an edge's
    /// statistics may name (it may report a policy's last counts after
    /// it was disabled).
    known: HashSet<String>,
    scopes: Vec<Scope>,
    /// Some entry is a shadow policy.
    has_shadow: bool,
    recommended_interval_secs: u32,
    snapshots: Mutex<HashMap<GroupKey, Arc<Snapshot>>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("generation", &self.generation)
            .field("policies", &self.entries.len())
            .finish()
    }
}

const ALL_STAGES: u8 = 0b1_1110;

fn stage_bit(stage: PolicyStage) -> u8 {
    1 << (stage as i32 as u8)
}

fn stages_of(policy: &Policy) -> u8 {
    match signal_of(policy) {
        Some(Signal::Metric) => stage_bit(PolicyStage::MetricFilter),
        Some(Signal::Trace) => stage_bit(PolicyStage::TraceSampling),
        Some(Signal::Log) => {
            stage_bit(PolicyStage::LogFilter) | stage_bit(PolicyStage::LogTransform)
        }
        None => 0,
    }
}

/// The stages an edge declares it runs; all when it declares none.
fn declared_stages(meta: &ClientMetadata) -> u8 {
    let declared = meta
        .supported_policy_stages
        .iter()
        .filter_map(|s| PolicyStage::try_from(*s).ok())
        .filter(|s| *s != PolicyStage::Unspecified)
        .fold(0u8, |acc, s| acc | stage_bit(s));
    if declared == 0 { ALL_STAGES } else { declared }
}

/// Whether an edge with `meta` runs `policy` when it is enabled: by the
/// rules snapshots are built with (its scope holds, the edge runs its
/// stage, a shadow policy only on edges that declare shadows), whether or
/// not the policy is enabled now.
pub fn reaches(policy: &Policy, scope: Option<&Scope>, meta: &ClientMetadata) -> bool {
    stages_of(policy) & declared_stages(meta) != 0
        && (!is_shadow(policy) || declares_shadow(meta))
        && scope.is_none_or(|s| s.matchers.is_empty() || scope::matches(s, meta))
}

impl Catalog {
    /// Builds the catalog of `generation` from the stored policies. Disabled
    /// policies are left out: the state is delivered by absence, which every
    /// client understands.
    pub fn new(
        generation: u64,
        policies: Vec<ManagedPolicy>,
        recommended_interval_secs: u32,
    ) -> Self {
        let mut scopes: Vec<Scope> = Vec::new();
        let mut entries = Vec::new();
        let mut known = HashSet::new();
        for managed in policies {
            let Some(policy) = managed.policy else {
                continue;
            };
            known.insert(policy.id.clone());
            if !policy.enabled {
                continue;
            }
            let scope = managed.scope.filter(|s| !s.matchers.is_empty()).map(|s| {
                scopes
                    .iter()
                    .position(|known| *known == s)
                    .unwrap_or_else(|| {
                        scopes.push(s);
                        scopes.len() - 1
                    })
            });
            entries.push(Entry {
                stages: stages_of(&policy),
                shadow: is_shadow(&policy),
                policy,
                scope,
            });
        }
        entries.sort_by(|a, b| a.policy.id.cmp(&b.policy.id));
        Catalog {
            generation,
            has_shadow: entries.iter().any(|e| e.shadow),
            entries,
            known,
            scopes,
            recommended_interval_secs,
            snapshots: Mutex::new(HashMap::new()),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether a policy of this id is stored (enabled or not). An id longer
    /// than any policy may have is unknown without a look-up.
    pub fn knows(&self, policy_id: &str) -> bool {
        policy_id.len() <= MAX_POLICY_ID_BYTES && self.known.contains(policy_id)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn recommended_interval_secs(&self) -> u32 {
        self.recommended_interval_secs
    }

    pub fn group_of(&self, meta: &ClientMetadata) -> GroupKey {
        let declared = declared_stages(meta);
        let mut bits = vec![0u64; self.scopes.len().div_ceil(64)];
        for (i, s) in self.scopes.iter().enumerate() {
            if scope::matches(s, meta) {
                bits[i / 64] |= 1 << (i % 64);
            }
        }
        GroupKey {
            stages: declared,
            scopes: bits,
            shadow: self.has_shadow && declares_shadow(meta),
        }
    }

    /// The snapshot for an edge with this metadata.
    pub fn snapshot_for(&self, meta: &ClientMetadata) -> Arc<Snapshot> {
        self.snapshot(&self.group_of(meta))
    }

    pub fn snapshot(&self, key: &GroupKey) -> Arc<Snapshot> {
        if let Some(found) = self.lock().get(key) {
            return Arc::clone(found);
        }
        // Built outside the lock: concurrent first requests of one group may
        // build it twice, which is cheaper than making every group wait.
        let built = Arc::new(self.build(key));
        Arc::clone(self.lock().entry(key.clone()).or_insert(built))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<GroupKey, Arc<Snapshot>>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.snapshots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn build(&self, key: &GroupKey) -> Snapshot {
        let policies: Vec<Policy> = self
            .entries
            .iter()
            .filter(|e| e.stages & key.stages != 0)
            .filter(|e| !e.shadow || key.shadow)
            .filter(|e| match e.scope {
                None => true,
                Some(i) => key.scopes[i / 64] & (1 << (i % 64)) != 0,
            })
            .map(|e| e.policy.clone())
            .collect();
        let hash = policy_set_hash(&policies);
        let response = SyncResponse {
            policies,
            hash,
            sync_timestamp_unix_nano: 0,
            recommended_sync_interval_seconds: self.recommended_interval_secs,
            sync_type: SyncType::Full as i32,
            error_message: String::new(),
            extension_configs: Vec::new(),
        };
        let protobuf = Bytes::from(response.encode_to_vec());
        let json = compatible_json(&response);
        const STAMP: &[u8] = b"\"syncTimestampUnixNano\":\"0\"";
        let (json_head, json_tail) = match memchr::memmem::find(&json, STAMP) {
            Some(at) => {
                let value_at = at + STAMP.len() - 2;
                (
                    Bytes::copy_from_slice(&json[..value_at]),
                    Bytes::copy_from_slice(&json[value_at + 1..]),
                )
            }
            // Not reachable with fields emitted; stamping 0 keeps it valid.
            None => (Bytes::from(json), Bytes::new()),
        };
        Snapshot {
            hash: response.hash,
            policies: response.policies,
            protobuf,
            json_head,
            json_tail,
        }
    }
}

/// The proto3 JSON of a SyncResponse as reference clients accept it.
///
/// Some clients (policy-rs among them) reject fields they do not know, and
/// `Policy.extensions` and `SyncResponse.extension_configs` are Tero
/// additions to the reference schema. Empty, they carry nothing, so they are
/// left out; a policy that does use extensions still sends them.
fn compatible_json(response: &SyncResponse) -> Vec<u8> {
    let Ok(mut value) = serde_json::to_value(response) else {
        return Vec::new();
    };
    let is_empty =
        |v: Option<&serde_json::Value>| v.and_then(|v| v.as_array()).is_some_and(Vec::is_empty);
    if let Some(root) = value.as_object_mut() {
        if is_empty(root.get("extensionConfigs")) {
            root.remove("extensionConfigs");
        }
        if let Some(policies) = root.get_mut("policies").and_then(|p| p.as_array_mut()) {
            for policy in policies.iter_mut().filter_map(|p| p.as_object_mut()) {
                if is_empty(policy.get("extensions")) {
                    policy.remove("extensions");
                }
            }
        }
    }
    serde_json::to_vec(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tero_proto::controlplane::{ScopeMatcher, ScopeOperator};
    use tero_proto::otel::{AnyValue, KeyValue, any_value::Value};
    use tero_proto::policy::{LogTarget, MetricTarget, policy::Target};

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(v.into())),
            }),
        }
    }

    fn managed(id: &str, metric: bool, enabled: bool, service: Option<&str>) -> ManagedPolicy {
        ManagedPolicy {
            policy: Some(Policy {
                id: id.into(),
                name: id.into(),
                enabled,
                target: Some(if metric {
                    Target::Metric(MetricTarget::default())
                } else {
                    Target::Log(LogTarget::default())
                }),
                ..Default::default()
            }),
            scope: Some(Scope {
                matchers: service
                    .map(|s| ScopeMatcher {
                        key: "service.name".into(),
                        operator: ScopeOperator::In as i32,
                        values: vec![s.into()],
                    })
                    .into_iter()
                    .collect(),
            }),
            revision: 1,
            ..Default::default()
        }
    }

    fn edge(service: &str, instance: &str, stages: &[PolicyStage]) -> ClientMetadata {
        ClientMetadata {
            resource_attributes: vec![
                kv("service.name", service),
                kv("service.instance.id", instance),
            ],
            supported_policy_stages: stages.iter().map(|s| *s as i32).collect(),
            ..Default::default()
        }
    }

    fn ids(s: &Snapshot) -> Vec<&str> {
        s.policies.iter().map(|p| p.id.as_str()).collect()
    }

    #[test]
    fn edges_get_their_scope_their_stages_and_no_disabled_policy() {
        let catalog = Catalog::new(
            1,
            vec![
                managed("b-all", true, true, None),
                managed("a-checkout", true, true, Some("checkout")),
                managed("c-cart", true, true, Some("cart")),
                managed("d-off", true, false, None),
                managed("e-logs", false, true, None),
            ],
            30,
        );
        let metrics = [PolicyStage::MetricFilter];
        let checkout = catalog.snapshot_for(&edge("checkout", "1", &metrics));
        assert_eq!(ids(&checkout), ["a-checkout", "b-all"]);
        let cart = catalog.snapshot_for(&edge("cart", "2", &metrics));
        assert_eq!(ids(&cart), ["b-all", "c-cart"]);
        let undeclared = catalog.snapshot_for(&edge("other", "3", &[]));
        assert_eq!(ids(&undeclared), ["b-all", "e-logs"]);
        assert_ne!(checkout.hash, cart.hash);
    }

    #[test]
    fn replicas_of_a_service_share_one_snapshot() {
        let catalog = Catalog::new(1, vec![managed("a", true, true, Some("checkout"))], 30);
        let one = catalog.snapshot_for(&edge("checkout", "1", &[]));
        let two = catalog.snapshot_for(&edge("checkout", "2", &[]));
        assert!(Arc::ptr_eq(&one, &two));
    }

    #[test]
    fn stamped_encodings_decode_to_the_full_response() {
        let catalog = Catalog::new(1, vec![managed("a", true, true, None)], 45);
        let snap = catalog.snapshot_for(&edge("x", "1", &[]));
        let decoded = SyncResponse::decode(snap.protobuf_at(1234)).unwrap();
        assert_eq!(decoded.sync_timestamp_unix_nano, 1234);
        assert_eq!(decoded.hash, snap.hash);
        assert_eq!(decoded.recommended_sync_interval_seconds, 45);
        assert_eq!(decoded.sync_type, SyncType::Full as i32);
        assert_eq!(decoded.policies.len(), 1);
        let json: SyncResponse = serde_json::from_slice(&snap.json_at(98765)).unwrap();
        assert_eq!(json.sync_timestamp_unix_nano, 98765);
        assert_eq!(json, decoded.clone().tap_ts(98765));
    }

    trait TapTs {
        fn tap_ts(self, ts: u64) -> Self;
    }
    impl TapTs for SyncResponse {
        fn tap_ts(mut self, ts: u64) -> Self {
            self.sync_timestamp_unix_nano = ts;
            self
        }
    }

    fn shadow(mut m: ManagedPolicy) -> ManagedPolicy {
        if let Some(p) = m.policy.as_mut() {
            p.labels.push(kv("tero.mode", "shadow"));
        }
        m
    }

    fn capable(mut meta: ClientMetadata) -> ClientMetadata {
        meta.supported_extensions
            .push(tero_sdk::engine::shadow::shadow_capability());
        meta
    }

    #[test]
    fn shadow_policies_reach_only_edges_that_declare_the_capability() {
        let catalog = Catalog::new(
            1,
            vec![
                managed("a-enforced", true, true, None),
                shadow(managed("b-shadow", true, true, None)),
                shadow(managed("c-shadow-cart", true, true, Some("cart"))),
            ],
            30,
        );
        let metrics = [PolicyStage::MetricFilter];
        let plain = catalog.snapshot_for(&edge("checkout", "1", &metrics));
        assert_eq!(ids(&plain), ["a-enforced"]);
        let able = catalog.snapshot_for(&capable(edge("checkout", "2", &metrics)));
        assert_eq!(ids(&able), ["a-enforced", "b-shadow"]);
        assert_ne!(plain.hash, able.hash);
        assert_eq!(plain.hash, policy_set_hash(&plain.policies));
        assert_eq!(able.hash, policy_set_hash(&able.policies));
        // Scopes still apply to shadows.
        let cart = catalog.snapshot_for(&capable(edge("cart", "3", &metrics)));
        assert_eq!(ids(&cart), ["a-enforced", "b-shadow", "c-shadow-cart"]);
        // Capable replicas share one snapshot, as do the others.
        let able_too = catalog.snapshot_for(&capable(edge("checkout", "4", &metrics)));
        assert!(Arc::ptr_eq(&able, &able_too));
        let plain_too = catalog.snapshot_for(&edge("checkout", "5", &metrics));
        assert!(Arc::ptr_eq(&plain, &plain_too));
    }

    #[test]
    fn reaches_agrees_with_the_snapshots_and_ignores_the_enabled_state() {
        let policies = vec![
            managed("a-all", true, true, None),
            managed("b-checkout", true, true, Some("checkout")),
            managed("c-logs", false, true, None),
            shadow(managed("d-shadow", true, true, None)),
        ];
        let catalog = Catalog::new(1, policies.clone(), 30);
        let metrics = [PolicyStage::MetricFilter];
        for meta in [
            edge("checkout", "1", &metrics),
            edge("cart", "2", &metrics),
            edge("other", "3", &[]),
            capable(edge("checkout", "4", &metrics)),
        ] {
            let snapshot = catalog.snapshot_for(&meta);
            for m in &policies {
                let p = m.policy.as_ref().unwrap();
                assert_eq!(
                    reaches(p, m.scope.as_ref(), &meta),
                    snapshot.contains(&p.id),
                    "{} on {meta:?}",
                    p.id
                );
            }
        }
        let off = managed("e-off", true, false, Some("checkout"));
        let p = off.policy.as_ref().unwrap();
        assert!(reaches(
            p,
            off.scope.as_ref(),
            &edge("checkout", "1", &metrics)
        ));
        assert!(!reaches(
            p,
            off.scope.as_ref(),
            &edge("cart", "2", &metrics)
        ));
    }

    #[test]
    fn without_shadow_policies_the_capability_splits_no_group() {
        let catalog = Catalog::new(1, vec![managed("a", true, true, None)], 30);
        let plain = edge("checkout", "1", &[]);
        let able = capable(edge("checkout", "2", &[]));
        assert_eq!(catalog.group_of(&plain), catalog.group_of(&able));
        assert!(Arc::ptr_eq(
            &catalog.snapshot_for(&plain),
            &catalog.snapshot_for(&able)
        ));
    }

    #[test]
    fn content_changes_change_the_hash() {
        let one = Catalog::new(1, vec![managed("a", true, true, None)], 30);
        let mut changed = managed("a", true, true, None);
        changed.policy.as_mut().unwrap().description = "edited".into();
        let two = Catalog::new(2, vec![changed], 30);
        let m = edge("x", "1", &[]);
        assert_ne!(one.snapshot_for(&m).hash, two.snapshot_for(&m).hash);
    }
}

//! The policy registry: merges what every provider delivered into one
//! compiled engine, and keeps the books on policy statistics.
//!
//! Providers never compile or swap engines themselves: they hand their
//! whole set to [`PolicyRegistry::update`], which merges all providers in
//! config order (a later provider wins a duplicate id, and the loser is
//! listed as shadowed), compiles, and swaps atomically. Scrapes hold the
//! engine they started with, so an update applies from the next scrape.
//!
//! Statistics have two readers: self-metrics want totals since start, sync
//! providers want deltas since their last acknowledged report. The ledger
//! takes every delta from the engine's counters exactly once and credits it
//! to both, so neither reader can steal counts from the other.
//!
//! Volume (what the data planes saw, whatever the policies: the spec's
//! `VolumeStats`) is kept the same way, but belongs to no policy: every
//! provider that syncs with a server (`http`, `grpc`) is credited all of
//! it, as each of those servers is a client of its own to report to.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tero_proto::policy::{PolicySyncStatus, TransformStageStatus};
use tero_sdk::engine::{StatsDelta, VolumeCounters, VolumeDelta};
use tero_sdk::policy::policy_set_hash;
use tero_sdk::{Engine, EngineHandle, Policy};

/// What one provider last delivered and how its syncs went.
#[derive(Debug, Clone, Default)]
pub struct ProviderState {
    pub id: String,
    pub kind: &'static str,
    pub policies: Vec<Policy>,
    pub hash: String,
    /// Policies the provider could not even decode, as messages.
    pub rejected: Vec<String>,
    /// Set once the provider delivered a set (possibly empty).
    pub loaded: bool,
    pub last_attempt: Option<SystemTime>,
    pub last_success: Option<SystemTime>,
    pub last_error: Option<String>,
    pub syncs_ok: u64,
    pub syncs_failed: u64,
    /// How the provider currently receives policies (e.g. "file", "http").
    pub transport: &'static str,
}

#[derive(Default)]
struct State {
    providers: Vec<ProviderState>,
    /// Content hash of each active policy, by id.
    policy_hashes: HashMap<String, String>,
    /// The provider whose copy of a policy id is active, or was until it
    /// was removed with counts still to report.
    owners: HashMap<String, String>,
    /// (policy id, provider whose copy lost to a later provider).
    shadowed: Vec<(String, String)>,
}

#[derive(Default)]
struct Ledger {
    /// Totals since start of the active policies: a removed policy's
    /// series leave `/_edge/metrics` with it.
    totals: BTreeMap<String, StatsDelta>,
    /// Deltas not yet acknowledged by each provider, by policy id.
    unsent: HashMap<String, BTreeMap<String, StatsDelta>>,
    /// Volume since start.
    volume_totals: VolumeDelta,
    /// Volume not yet taken into a report, by syncing provider.
    unsent_volume: HashMap<String, VolumeDelta>,
}

pub struct PolicyRegistry {
    handle: EngineHandle,
    state: Mutex<State>,
    ledger: Mutex<Ledger>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PolicyRegistry {
    /// A registry for providers `(id, kind)` in priority order (later wins).
    pub fn new(providers: &[(String, &'static str)]) -> Self {
        let providers = providers
            .iter()
            .map(|(id, kind)| ProviderState {
                id: id.clone(),
                kind,
                transport: kind,
                ..Default::default()
            })
            .collect();
        PolicyRegistry {
            handle: EngineHandle::new(),
            state: Mutex::new(State {
                providers,
                ..Default::default()
            }),
            ledger: Mutex::default(),
        }
    }

    /// The current engine; hold it for one scrape.
    pub fn engine(&self) -> Arc<Engine> {
        self.handle.load()
    }

    /// Ready once every provider has finished its first attempt (or there
    /// are no providers): a scrape does not run on a half-loaded set at
    /// start-up, and an unreachable provider cannot keep the Edge unready
    /// (it fails open with what it has).
    pub fn ready(&self) -> bool {
        lock(&self.state)
            .providers
            .iter()
            .all(|p| p.loaded || p.last_attempt.is_some())
    }

    /// Replaces `provider`'s whole set and recompiles the merged set.
    pub fn update(
        &self,
        provider: &str,
        policies: Vec<Policy>,
        hash: String,
        rejected: Vec<String>,
    ) {
        // Credit pending counts to the owners they were earned under
        // before ownership can move.
        self.collect();
        let mut state = lock(&self.state);
        let Some(slot) = state.providers.iter_mut().find(|p| p.id == provider) else {
            tracing::error!(provider, "update from an unknown provider ignored");
            return;
        };
        slot.policies = policies;
        slot.hash = hash;
        slot.rejected = rejected;
        slot.loaded = true;
        let mut merged: BTreeMap<String, (&Policy, &str)> = BTreeMap::new();
        let mut shadowed = Vec::new();
        for p in &state.providers {
            for policy in &p.policies {
                if let Some((_, loser)) = merged.insert(policy.id.clone(), (policy, &p.id)) {
                    shadowed.push((policy.id.clone(), loser.to_owned()));
                }
            }
        }
        let owners: Vec<(String, String)> = merged
            .iter()
            .map(|(id, (_, owner))| (id.clone(), (*owner).to_owned()))
            .collect();
        let set: Vec<Policy> = merged.into_values().map(|(p, _)| p.clone()).collect();
        for (id, owner) in &shadowed {
            tracing::warn!(policy = %id, shadowed_provider = %owner, "duplicate policy id: the later provider's copy wins");
        }
        state.shadowed = shadowed;
        state.policy_hashes = set
            .iter()
            .map(|p| (p.id.clone(), policy_set_hash(std::slice::from_ref(p))))
            .collect();
        {
            // Removed ids are forgotten, except by the provider that still
            // has to report their last counts.
            let mut ledger = lock(&self.ledger);
            let state = &mut *state;
            let active = &state.policy_hashes;
            ledger.totals.retain(|id, _| active.contains_key(id));
            let unsent = &ledger.unsent;
            state.owners.retain(|id, _| {
                active.contains_key(id) || unsent.values().any(|d| d.contains_key(id))
            });
        }
        state.owners.extend(owners);
        let engine = self.handle.replace(&set);
        let invalid = engine
            .policies()
            .iter()
            .filter(|p| !p.errors.is_empty())
            .count();
        tracing::info!(
            provider,
            policies = set.len(),
            metric_policies = engine.metric_policy_count(),
            invalid,
            "policy set applied"
        );
    }

    /// Records the outcome of a sync attempt (success or the reason).
    pub fn record_sync(&self, provider: &str, result: Result<(), String>) {
        let mut state = lock(&self.state);
        if let Some(p) = state.providers.iter_mut().find(|p| p.id == provider) {
            let now = SystemTime::now();
            p.last_attempt = Some(now);
            match result {
                Ok(()) => {
                    p.last_success = Some(now);
                    p.last_error = None;
                    p.syncs_ok += 1;
                }
                Err(e) => {
                    p.last_error = Some(e);
                    p.syncs_failed += 1;
                }
            }
        }
    }

    pub fn set_transport(&self, provider: &str, transport: &'static str) {
        let mut state = lock(&self.state);
        if let Some(p) = state.providers.iter_mut().find(|p| p.id == provider) {
            p.transport = transport;
        }
    }

    /// The hash of the set `provider` last delivered.
    pub fn provider_hash(&self, provider: &str) -> Option<String> {
        let state = lock(&self.state);
        state
            .providers
            .iter()
            .find(|p| p.id == provider && p.loaded)
            .map(|p| p.hash.clone())
    }

    pub fn providers(&self) -> Vec<ProviderState> {
        lock(&self.state).providers.clone()
    }

    pub fn shadowed(&self) -> Vec<(String, String)> {
        lock(&self.state).shadowed.clone()
    }

    /// The content hash of the active policy `id`.
    pub fn policy_hash(&self, id: &str) -> Option<String> {
        lock(&self.state).policy_hashes.get(id).cloned()
    }

    /// The provider whose copy of `id` is active.
    pub fn owner(&self, id: &str) -> Option<String> {
        lock(&self.state).owners.get(id).cloned()
    }

    /// Where data planes add what they see (records and bytes per signal,
    /// before any policy).
    pub fn volume(&self) -> &VolumeCounters {
        self.handle.registry().volume()
    }

    /// Moves every counter delta from the engine into the books.
    pub fn collect(&self) {
        let deltas = self.handle.registry().take_all();
        let volume = self.volume().take();
        if deltas.is_empty() && volume.is_zero() {
            return;
        }
        let state = lock(&self.state);
        let mut ledger = lock(&self.ledger);
        for (id, delta) in deltas {
            // Counts a scrape still running on a replaced set made for a
            // removed policy go to its provider's report, not to totals.
            if state.policy_hashes.contains_key(&id) {
                ledger.totals.entry(id.clone()).or_default().merge(&delta);
            }
            if let Some(owner) = state.owners.get(&id) {
                ledger
                    .unsent
                    .entry(owner.clone())
                    .or_default()
                    .entry(id)
                    .or_default()
                    .merge(&delta);
            }
        }
        if !volume.is_zero() {
            ledger.volume_totals.merge(&volume);
            for p in state.providers.iter().filter(|p| reports_volume(p.kind)) {
                ledger
                    .unsent_volume
                    .entry(p.id.clone())
                    .or_default()
                    .merge(&volume);
            }
        }
    }

    /// Volume since start.
    pub fn volume_totals(&self) -> VolumeDelta {
        self.collect();
        lock(&self.ledger).volume_totals
    }

    /// Takes the volume `provider` has not yet put in a report.
    pub fn take_unsent_volume(&self, provider: &str) -> VolumeDelta {
        self.collect();
        lock(&self.ledger)
            .unsent_volume
            .remove(provider)
            .unwrap_or_default()
    }

    /// Totals since start, by policy id.
    pub fn totals(&self) -> BTreeMap<String, StatsDelta> {
        self.collect();
        lock(&self.ledger).totals.clone()
    }

    /// Takes `provider`'s unreported deltas for a sync request. Give them
    /// back with [`PolicyRegistry::restore_unsent`] if the request fails.
    pub fn take_unsent(&self, provider: &str) -> BTreeMap<String, StatsDelta> {
        self.collect();
        lock(&self.ledger)
            .unsent
            .remove(provider)
            .unwrap_or_default()
    }

    /// Merges deltas of a failed report back, so the next report carries
    /// them: nothing lost, nothing counted twice.
    pub fn restore_unsent(&self, provider: &str, deltas: BTreeMap<String, StatsDelta>) {
        let mut ledger = lock(&self.ledger);
        let unsent = ledger.unsent.entry(provider.to_owned()).or_default();
        for (id, delta) in deltas {
            unsent.entry(id).or_default().merge(&delta);
        }
    }

    /// The `policy_statuses` of a sync request: `deltas` plus an entry for
    /// every policy of this provider with compile errors.
    pub fn statuses(
        &self,
        provider: &str,
        deltas: &BTreeMap<String, StatsDelta>,
    ) -> Vec<PolicySyncStatus> {
        let mut out: BTreeMap<String, PolicySyncStatus> = BTreeMap::new();
        // A delta of scrapes alone is reported too: a scrape in which the
        // policy dropped nothing still counts in its per-scrape impact.
        for (id, d) in deltas.iter().filter(|(_, d)| !d.is_zero()) {
            out.insert(id.clone(), status_of(id, d));
        }
        for (id, errors) in self.compile_errors(provider) {
            out.entry(id.clone())
                .or_insert_with(|| status_of(&id, &StatsDelta::default()))
                .errors = errors;
        }
        out.into_values().collect()
    }

    /// The ids of the active set's shadow policies (`tero.mode=shadow`):
    /// their drops are counted, not made.
    pub fn shadow_ids(&self) -> HashSet<String> {
        self.engine()
            .policies()
            .iter()
            .filter(|info| info.shadow)
            .map(|info| info.id.clone())
            .collect()
    }

    /// The policies of `provider` that did not compile, with their errors in
    /// the sync protocol's wording.
    pub fn compile_errors(&self, provider: &str) -> BTreeMap<String, Vec<String>> {
        let engine = self.engine();
        let owners = lock(&self.state).owners.clone();
        engine
            .policies()
            .iter()
            .filter(|info| {
                !info.errors.is_empty()
                    && owners.get(&info.id).map(String::as_str) == Some(provider)
            })
            .map(|info| (info.id.clone(), info.error_messages()))
            .collect()
    }
}

/// Providers that sync with a server report volume to it; a file has no
/// one to report to.
fn reports_volume(kind: &str) -> bool {
    matches!(kind, "http" | "grpc")
}

fn status_of(id: &str, d: &StatsDelta) -> PolicySyncStatus {
    let stage = |hits: u64, misses: u64| {
        (hits > 0 || misses > 0).then_some(TransformStageStatus {
            hits: hits as i64,
            misses: misses as i64,
        })
    };
    PolicySyncStatus {
        id: id.to_owned(),
        match_hits: d.match_hits as i64,
        match_misses: d.match_misses as i64,
        errors: Vec::new(),
        remove: stage(d.remove_hits, d.remove_misses),
        redact: stage(d.redact_hits, d.redact_misses),
        rename: stage(d.rename_hits, d.rename_misses),
        add: stage(d.add_hits, d.add_misses),
        tero_records_dropped: d.records_dropped as i64,
        tero_bytes_dropped: d.bytes_dropped as i64,
        tero_scrapes: d.scrapes as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tero_sdk::engine::{FieldValue, MetricSelector, MetricView};
    use tero_sdk::policy::{Format, parse_policies};

    struct Named(&'static str);
    impl MetricView for Named {
        fn get(&self, s: &MetricSelector) -> Option<FieldValue<'_>> {
            matches!(
                s,
                MetricSelector::Field(tero_proto::policy::MetricField::Name)
            )
            .then(|| FieldValue::str(self.0))
        }
    }

    fn drop_named(id: &str, name: &str) -> Policy {
        let yaml = format!(
            "id: {id}\nname: {id}\nmetric:\n  match:\n    - metric_field: name\n      exact: {name}\n  keep: false\n"
        );
        parse_policies(&yaml, Format::Yaml)
            .unwrap()
            .policies
            .remove(0)
    }

    fn registry() -> PolicyRegistry {
        PolicyRegistry::new(&[("file".into(), "file"), ("remote".into(), "http")])
    }

    #[test]
    fn a_later_provider_wins_a_duplicate_id_and_the_loser_is_listed() {
        let r = registry();
        r.update(
            "file",
            vec![drop_named("p", "a"), drop_named("q", "x")],
            "h1".into(),
            vec![],
        );
        r.update("remote", vec![drop_named("p", "b")], "h2".into(), vec![]);
        let engine = r.engine();
        assert!(
            engine.evaluate_metric(&Named("a")),
            "file's copy of p is shadowed"
        );
        assert!(
            !engine.evaluate_metric(&Named("b")),
            "remote's copy of p is active"
        );
        assert!(!engine.evaluate_metric(&Named("x")));
        assert_eq!(r.shadowed(), vec![("p".to_string(), "file".to_string())]);
        assert_eq!(r.owner("p").as_deref(), Some("remote"));
        assert_eq!(r.owner("q").as_deref(), Some("file"));
        assert!(r.policy_hash("p").is_some());
    }

    #[test]
    fn ready_after_every_provider_tried_once() {
        let r = registry();
        assert!(!r.ready());
        r.update("file", vec![], "h".into(), vec![]);
        assert!(!r.ready());
        r.record_sync("remote", Err("unreachable".into()));
        assert!(r.ready());
        assert!(PolicyRegistry::new(&[]).ready());
    }

    #[test]
    fn every_count_reaches_totals_and_its_owner_exactly_once() {
        let r = registry();
        r.update("file", vec![drop_named("f", "a")], "h1".into(), vec![]);
        r.update("remote", vec![drop_named("g", "b")], "h2".into(), vec![]);
        for _ in 0..3 {
            assert!(!r.engine().evaluate_metric(&Named("a")));
        }
        for _ in 0..5 {
            assert!(!r.engine().evaluate_metric(&Named("b")));
        }
        // A failed report is given back and merged with later counts.
        let first = r.take_unsent("remote");
        assert_eq!(first["g"].match_hits, 5);
        r.restore_unsent("remote", first);
        assert!(!r.engine().evaluate_metric(&Named("b")));
        let second = r.take_unsent("remote");
        assert_eq!(second["g"].match_hits, 6);
        assert!(!second.contains_key("f"), "f belongs to the file provider");
        assert!(r.take_unsent("remote").is_empty(), "taken once");
        assert_eq!(r.take_unsent("file")["f"].match_hits, 3);
        // Totals saw everything once, whatever the providers did.
        let totals = r.totals();
        assert_eq!(totals["f"].match_hits, 3);
        assert_eq!(totals["g"].match_hits, 6);
    }

    #[test]
    fn a_removed_policy_leaves_the_totals_and_its_last_counts_reach_its_provider() {
        let r = registry();
        r.update(
            "file",
            vec![drop_named("f", "a"), drop_named("gone", "b")],
            "h1".into(),
            vec![],
        );
        let old = r.engine();
        assert!(!old.evaluate_metric(&Named("b")));
        assert_eq!(r.totals()["gone"].match_hits, 1);
        r.update("file", vec![drop_named("f", "a")], "h2".into(), vec![]);
        assert!(!r.totals().contains_key("gone"), "{:?}", r.totals());
        // A scrape that started on the old set counts after the update.
        assert!(!old.evaluate_metric(&Named("b")));
        drop(old);
        assert!(!r.totals().contains_key("gone"), "late counts stay out");
        assert_eq!(
            r.take_unsent("file")["gone"].match_hits,
            1,
            "the provider still reports the removed policy's counts"
        );
        // Once reported, the removed id is forgotten at the next update.
        r.update("file", vec![drop_named("f", "a")], "h3".into(), vec![]);
        assert_eq!(r.owner("gone"), None);
    }

    #[test]
    fn statuses_carry_deltas_and_compile_errors_of_own_policies() {
        let r = registry();
        let mut broken = drop_named("bad", "a");
        if let Some(tero_proto::policy::policy::Target::Metric(m)) = &mut broken.target {
            m.r#match[0].r#match =
                Some(tero_proto::policy::metric_matcher::Match::Regex("(".into()));
        }
        r.update(
            "remote",
            vec![broken, drop_named("ok", "b")],
            "h".into(),
            vec![],
        );
        assert!(!r.engine().evaluate_metric(&Named("b")));
        let deltas = r.take_unsent("remote");
        let statuses = r.statuses("remote", &deltas);
        let bad = statuses
            .iter()
            .find(|s| s.id == "bad")
            .expect("errors reported");
        assert!(!bad.errors.is_empty());
        let ok = statuses.iter().find(|s| s.id == "ok").unwrap();
        assert_eq!(ok.match_hits, 1);
        assert!(r.statuses("file", &BTreeMap::new()).is_empty());
    }

    #[test]
    fn volume_reaches_every_syncing_provider_once_and_the_totals() {
        let r = PolicyRegistry::new(&[
            ("file".into(), "file"),
            ("a".into(), "http"),
            ("b".into(), "grpc"),
        ]);
        r.volume().add_metric_data_points(7, 0);
        r.volume().add_logs(2, 300);
        let a = r.take_unsent_volume("a");
        assert_eq!(
            (a.metric_data_points, a.log_records, a.log_bytes),
            (7, 2, 300)
        );
        r.volume().add_metric_data_points(1, 0);
        assert_eq!(r.take_unsent_volume("a").metric_data_points, 1);
        assert!(r.take_unsent_volume("a").is_zero(), "taken once");
        // The other server is told everything too, in one delta.
        assert_eq!(r.take_unsent_volume("b").metric_data_points, 8);
        assert!(
            r.take_unsent_volume("file").is_zero(),
            "a file reports nothing"
        );
        assert_eq!(r.volume_totals().metric_data_points, 8);
    }

    #[test]
    fn shadow_policies_are_named_and_scrapes_reach_the_ledger() {
        let r = registry();
        let mut shadow = drop_named("s", "a");
        shadow.labels.push(tero_proto::otel::KeyValue {
            key: "tero.mode".into(),
            value: Some(tero_proto::otel::AnyValue {
                value: Some(tero_proto::otel::any_value::Value::StringValue(
                    "shadow".into(),
                )),
            }),
        });
        r.update(
            "remote",
            vec![shadow, drop_named("e", "b")],
            "h".into(),
            vec![],
        );
        assert_eq!(r.shadow_ids(), HashSet::from(["s".to_string()]));
        let engine = r.engine();
        assert!(engine.evaluate_metric(&Named("a")), "a shadow never drops");
        engine.record_scrape();
        engine.record_scrape();
        let deltas = r.take_unsent("remote");
        assert_eq!((deltas["s"].scrapes, deltas["s"].match_hits), (2, 1));
        assert_eq!((deltas["e"].scrapes, deltas["e"].match_hits), (2, 0));
        // Polls carry scrapes in the Tero extension field, even alone.
        let statuses = r.statuses("remote", &deltas);
        let got: Vec<(&str, i64, i64)> = statuses
            .iter()
            .map(|s| (s.id.as_str(), s.match_hits, s.tero_scrapes))
            .collect();
        assert_eq!(got, [("e", 0, 2), ("s", 1, 2)]);
    }
}

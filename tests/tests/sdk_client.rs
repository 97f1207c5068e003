//! `tero_sdk::client`, the typed control-plane client, against a real
//! `tero-control-plane` (and a real `tero-edge` reporting to it): every
//! method round-trips, every refusal arrives as the variant a caller acts
//! on, and retries repeat exactly what is safe to repeat — a call that
//! never left, or a read — and nothing else.
//!
//! Fakes stand in only where a real process cannot misbehave on cue: a
//! listener that drops every connection (a connection that never carries a
//! request), and a `PolicyService` that answers UNAVAILABLE or too late.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tero_e2e::control_plane::ControlPlane;
use tero_e2e::fixtures::{EXPOSITION, TEXT, WITHOUT_DEBUG};
use tero_e2e::upstream::{Compression, Upstream};
use tero_e2e::{Edge, Process, binary, free_port, http_get, wait_for};
use tero_proto::controlplane as pb;
use tero_proto::policy::policy_service_server::{PolicyService, PolicyServiceServer};
use tero_proto::policy::{ClientMetadata, Policy, PolicySyncStatus, SyncRequest, SyncResponse};
use tero_sdk::client::{Client, ClientError, RetryPolicy};
use tero_sdk::policy::policy_set_hash;
use tonic::Code;

// ---------------------------------------------------------------- helpers

fn temp_dir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().expect("temp dir"))
}

/// A metric policy from its target (proto3 JSON), with `team` labels.
fn policy(id: &str, metric: Value, labels: &[(&str, &str)]) -> Policy {
    let labels: Vec<Value> = labels
        .iter()
        .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
        .collect();
    serde_json::from_value(json!({
        "id": id,
        "name": format!("policy {id}"),
        "enabled": true,
        "labels": labels,
        "metric": metric,
    }))
    .expect("a Policy")
}

/// Drops the metrics whose name equals `name`.
fn drop_exact(id: &str, name: &str, labels: &[(&str, &str)]) -> Policy {
    policy(
        id,
        json!({"match": [{"metricField": 1, "exact": name}], "keep": false}),
        labels,
    )
}

/// Edges whose `service.name` is `service`.
fn service_scope(service: &str) -> pb::Scope {
    pb::Scope {
        matchers: vec![pb::ScopeMatcher {
            key: "service.name".into(),
            operator: pb::ScopeOperator::In as i32,
            values: vec![service.into()],
        }],
    }
}

fn create(policy: Policy, scope: Option<pb::Scope>) -> pb::CreatePolicyRequest {
    pb::CreatePolicyRequest {
        policy: Some(policy),
        scope,
        reason: "sdk e2e".into(),
    }
}

/// An edge's identity as Sync carries it.
fn edge_meta(instance: &str, service: &str) -> ClientMetadata {
    let kv = |k: &str, v: &str| json!({"key": k, "value": {"stringValue": v}});
    serde_json::from_value(json!({"resourceAttributes": [
        kv("service.instance.id", instance),
        kv("service.name", service),
        kv("service.namespace", "shop"),
        kv("service.version", "1.2.3"),
    ]}))
    .expect("ClientMetadata")
}

fn sync_request(instance: &str, service: &str) -> SyncRequest {
    SyncRequest {
        client_metadata: Some(edge_meta(instance, service)),
        full_sync: true,
        ..Default::default()
    }
}

fn ids(policies: &[pb::ManagedPolicy]) -> Vec<String> {
    policies
        .iter()
        .map(|p| p.policy.as_ref().expect("policy").id.clone())
        .collect()
}

fn synced_ids(resp: &SyncResponse) -> Vec<&str> {
    let mut ids: Vec<&str> = resp.policies.iter().map(|p| p.id.as_str()).collect();
    ids.sort_unstable();
    ids
}

/// Polls the async `check` until it returns `Some` (15 s at most).
async fn eventually<T, Fut>(what: &str, mut check: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn scrape(edge: &Edge) -> String {
    let r = http_get(&edge.url("/metrics"), &[]).expect("scrape through the Edge");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

fn quick_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(100),
    }
}

// ------------------------------------------------------------ round trip

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_round_trips_against_a_real_control_plane_and_edge() {
    let dir = temp_dir();
    let cp = ControlPlane::start_with(dir.clone(), "cp-sdk", None, &["--sync-interval-secs", "1"]);
    let admin = Client::connect(&cp.endpoint())
        .expect("a valid URL")
        .with_token(&cp.admin_token);
    assert_eq!(admin.endpoint(), cp.endpoint());

    // Create (scoped), read back, update against the revision read.
    let created = admin
        .create_policy(create(
            policy(
                "drop-debug",
                json!({"match": [{"metricField": 1, "startsWith": "debug_"}], "keep": false}),
                &[("team", "obs")],
            ),
            Some(service_scope("checkout")),
        ))
        .await
        .expect("create");
    assert_eq!(created.revision, 1);
    assert_eq!(created.created_by, "admin");
    assert_eq!(created.scope, Some(service_scope("checkout")));
    assert!(created.policy.as_ref().unwrap().enabled);
    let got = admin.get_policy("drop-debug").await.expect("get");
    assert_eq!(got, created);

    let mut changed = got.policy.clone().unwrap();
    changed.description = "debug families cost more than they tell".into();
    let updated = admin
        .update_policy(pb::UpdatePolicyRequest {
            policy: Some(changed.clone()),
            scope: got.scope.clone(),
            expected_revision: got.revision,
            reason: "describe".into(),
        })
        .await
        .expect("update");
    assert_eq!(updated.revision, 2);
    assert_eq!(
        updated.policy.as_ref().unwrap().description,
        changed.description
    );
    assert_eq!(updated.scope, Some(service_scope("checkout")));
    assert_eq!(updated.updated_by, "admin");

    // Four more, so that five page in twos.
    for (p, scope) in [
        (
            drop_exact("p-cart", "cart_only", &[("team", "cart")]),
            Some(service_scope("cart")),
        ),
        (drop_exact("p-five", "nothing_here", &[]), None),
        (
            drop_exact("p-four", "nothing_either", &[("team", "cart")]),
            None,
        ),
        (
            drop_exact("p-three", "nothing_at_all", &[("team", "obs")]),
            None,
        ),
    ] {
        admin.create_policy(create(p, scope)).await.expect("create");
    }

    // Enable and disable: by the revision read, and "whatever is current".
    let off = admin
        .set_policy_enabled(pb::SetPolicyEnabledRequest {
            id: "drop-debug".into(),
            enabled: false,
            expected_revision: 2,
            reason: "pause".into(),
        })
        .await
        .expect("disable");
    assert_eq!(off.revision, 3);
    assert!(!off.policy.unwrap().enabled);
    let on = admin
        .set_policy_enabled(pb::SetPolicyEnabledRequest {
            id: "drop-debug".into(),
            enabled: true,
            expected_revision: 3,
            reason: "resume".into(),
        })
        .await
        .expect("enable");
    assert_eq!(on.revision, 4);
    assert!(on.policy.unwrap().enabled);
    let four = admin
        .set_policy_enabled(pb::SetPolicyEnabledRequest {
            id: "p-four".into(),
            enabled: false,
            expected_revision: 0,
            reason: String::new(),
        })
        .await
        .expect("disable p-four");
    assert_eq!(four.revision, 2);

    // Paging by hand: 2 + 2 + 1, the last page without a token.
    let page = |token: &str| pb::ListPoliciesRequest {
        page_size: 2,
        page_token: token.into(),
        ..Default::default()
    };
    let first = admin.list_policies(page("")).await.expect("page 1");
    assert_eq!(ids(&first.policies), ["drop-debug", "p-cart"]);
    assert!(!first.next_page_token.is_empty());
    let second = admin
        .list_policies(page(&first.next_page_token))
        .await
        .expect("page 2");
    assert_eq!(ids(&second.policies), ["p-five", "p-four"]);
    assert!(!second.next_page_token.is_empty());
    let third = admin
        .list_policies(page(&second.next_page_token))
        .await
        .expect("page 3");
    assert_eq!(ids(&third.policies), ["p-three"]);
    assert_eq!(third.next_page_token, "");

    // Every page at once, with filters, paging one by one to prove the
    // loop follows the tokens.
    let all = admin.list_all_policies(page("")).await.expect("list all");
    assert_eq!(
        ids(&all),
        ["drop-debug", "p-cart", "p-five", "p-four", "p-three"]
    );
    let by = |labels: &[&str], enabled: Option<bool>| pb::ListPoliciesRequest {
        labels: labels.iter().map(|l| l.to_string()).collect(),
        enabled,
        page_size: 1,
        ..Default::default()
    };
    let obs = admin
        .list_all_policies(by(&["team=obs"], None))
        .await
        .unwrap();
    assert_eq!(ids(&obs), ["drop-debug", "p-three"]);
    let labelled = admin.list_all_policies(by(&["team"], None)).await.unwrap();
    assert_eq!(
        ids(&labelled),
        ["drop-debug", "p-cart", "p-four", "p-three"]
    );
    let disabled = admin.list_all_policies(by(&[], Some(false))).await.unwrap();
    assert_eq!(ids(&disabled), ["p-four"]);
    let enabled = admin.list_all_policies(by(&[], Some(true))).await.unwrap();
    assert_eq!(ids(&enabled), ["drop-debug", "p-cart", "p-five", "p-three"]);
    let cart_on = admin
        .list_all_policies(by(&["team=cart"], Some(true)))
        .await
        .unwrap();
    assert_eq!(ids(&cart_on), ["p-cart"]);

    // History, newest first.
    let history = admin.policy_history("drop-debug").await.expect("history");
    let actions: Vec<(u64, &str)> = history
        .iter()
        .map(|r| (r.revision, r.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        [(4, "enable"), (3, "disable"), (2, "update"), (1, "create")]
    );
    assert_eq!(history[2].reason, "describe");
    assert_eq!(history[2].author, "admin");
    assert_eq!(
        history[2].policy.as_ref().unwrap().description,
        changed.description
    );

    // Keys: one for a real edge, one to sync by hand.
    let edge_key = admin.create_api_key("edge").await.expect("edge key");
    let sync_key = admin.create_api_key("by-hand").await.expect("sync key");
    let edge_key_meta = edge_key.key.clone().expect("key");
    let sync_key_meta = sync_key.key.clone().expect("key");
    assert_eq!(edge_key_meta.name, "edge");
    assert_eq!(edge_key_meta.created_by, "admin");
    assert!(edge_key.secret.starts_with(&edge_key_meta.prefix));
    assert_ne!(edge_key.secret, sync_key.secret);

    // A real edge polling with its key, scoped in as `checkout`.
    // (The upstream runs its own runtime: start it off this one.)
    let up =
        tokio::task::spawn_blocking(|| Upstream::start(EXPOSITION.into(), TEXT, Compression::None))
            .await
            .unwrap();
    let instance = "sdk-edge-0";
    let edge = Edge::start(
        json!({
            "upstream_url": up.url(),
            "service": {"name": "checkout", "namespace": "shop", "version": "1.0.0", "instance_id": instance},
            "policy_providers": [{
                "id": "cp",
                "type": "http",
                "url": cp.url("/v1/policy/sync"),
                "headers": [{"name": "Authorization", "value": format!("Bearer {}", edge_key.secret)}],
                "poll_interval_secs": 1,
                "encoding": "protobuf",
            }],
        }),
        dir.clone(),
        "edge-sdk",
    );
    wait_for(Duration::from_secs(10), "the scoped policy applied", || {
        (scrape(&edge) == WITHOUT_DEBUG).then_some(())
    });
    // Each filtered scrape is two hits (two debug series).
    let mut filtered = 1;
    for _ in 0..2 {
        assert_eq!(scrape(&edge), WITHOUT_DEBUG);
        filtered += 1;
    }
    let client = &admin;
    let stats_request = || pb::GetPolicyStatsRequest {
        id: "drop-debug".into(),
        ..Default::default()
    };
    let stats = eventually("the edge's hits stored", move || async move {
        let stats = client.policy_stats(stats_request()).await.expect("stats");
        (stats.total.as_ref()?.hits >= 2 * filtered).then_some(stats)
    })
    .await;
    let total = stats.total.unwrap();
    assert_eq!(total.hits, 2 * filtered, "{stats:?}");
    assert_eq!(total.misses, 0, "{stats:?}");
    assert_eq!(stats.policy_id, "drop-debug");
    assert!(stats.from_unix_ms < stats.to_unix_ms);
    assert_eq!(
        stats.buckets.iter().map(|b| b.hits).sum::<i64>(),
        total.hits,
        "the total is the sum of the buckets"
    );
    assert_eq!(
        edge.self_metric("edge_policy_match_hits_total{policy_id=\"drop-debug\"}") as i64,
        total.hits,
        "the control plane stores what the edge counted"
    );
    let quiet = admin
        .policy_stats(pb::GetPolicyStatsRequest {
            id: "p-cart".into(),
            ..Default::default()
        })
        .await
        .expect("stats of a policy no edge runs");
    assert_eq!(quiet.total.unwrap().hits, 0);
    assert!(quiet.buckets.is_empty());

    // The fleet view of that edge.
    let seen = eventually("the edge running its set", move || async move {
        let e = client.get_edge(instance).await.ok()?;
        (!e.applied_hash.is_empty() && e.applied_hash == e.desired_hash).then_some(e)
    })
    .await;
    assert_eq!(seen.service_name, "checkout");
    assert_eq!(seen.service_namespace, "shop");
    assert_eq!(seen.transport, pb::Transport::Poll as i32);
    assert_eq!(seen.state, pb::EdgeState::Connected as i32);
    assert_eq!(seen.api_key_id, edge_key_meta.id);
    assert_eq!(seen.replica, "cp-sdk");
    let listed = admin
        .list_edges(pb::ListEdgesRequest::default())
        .await
        .expect("list edges");
    assert_eq!(listed.edges.len(), 1, "{listed:?}");
    assert_eq!(listed.edges[0].instance_id, instance);
    assert_eq!(listed.next_page_token, "");
    let none = admin
        .list_edges(pb::ListEdgesRequest {
            service_name: "cart".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.edges.is_empty(), "{none:?}");
    let deployed = admin
        .policy_deployment("drop-debug")
        .await
        .expect("deployment");
    assert_eq!(
        (deployed.targeted, deployed.applied, deployed.pending),
        (1, 1, 0),
        "{deployed:?}"
    );
    assert!(deployed.failed.is_empty());
    let elsewhere = admin.policy_deployment("p-cart").await.unwrap();
    assert_eq!(elsewhere.targeted, 0, "scoped to cart: {elsewhere:?}");

    // Sync by hand with the other key: each service gets its scoped set.
    let by_hand = Client::connect(&cp.endpoint())
        .unwrap()
        .with_token(&sync_key.secret);
    let checkout = by_hand
        .sync(sync_request("by-hand-1", "checkout"))
        .await
        .expect("sync as checkout");
    assert_eq!(synced_ids(&checkout), ["drop-debug", "p-five", "p-three"]);
    assert_eq!(checkout.hash, policy_set_hash(&checkout.policies));
    assert_eq!(checkout.hash, seen.desired_hash, "the same set as the edge");
    let synced = checkout
        .policies
        .iter()
        .find(|p| p.id == "drop-debug")
        .unwrap();
    assert_eq!(synced.description, changed.description);
    let cart = by_hand
        .sync(sync_request("by-hand-2", "cart"))
        .await
        .expect("sync as cart");
    assert_eq!(synced_ids(&cart), ["p-cart", "p-five", "p-three"]);
    assert_ne!(cart.hash, checkout.hash);

    // Both now show in the fleet view; list_all_edges pages one by one.
    let fleet = eventually("three edges listed", move || async move {
        let all = client
            .list_all_edges(pb::ListEdgesRequest {
                page_size: 1,
                ..Default::default()
            })
            .await
            .expect("list all edges");
        (all.len() == 3).then_some(all)
    })
    .await;
    let instances: Vec<&str> = fleet.iter().map(|e| e.instance_id.as_str()).collect();
    assert_eq!(instances, ["by-hand-1", "by-hand-2", instance]);
    assert_eq!(fleet[0].api_key_id, sync_key_meta.id);
    // by-hand-1 is targeted too, but never reported applying anything.
    let deployed = eventually("by-hand-1 targeted", move || async move {
        let d = client.policy_deployment("drop-debug").await.unwrap();
        (d.targeted == 2).then_some(d)
    })
    .await;
    assert_eq!((deployed.applied, deployed.pending), (1, 1), "{deployed:?}");

    // Revoking a key locks its holder out of Sync; the list hides it
    // unless asked.
    let revoked = admin
        .revoke_api_key(&sync_key_meta.id)
        .await
        .expect("revoke");
    assert_eq!(revoked.id, sync_key_meta.id);
    assert!(revoked.revoked_at_unix_ms > 0);
    let refused = by_hand
        .sync(sync_request("by-hand-1", "checkout"))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ClientError::Unauthenticated { .. }),
        "{refused:?}"
    );
    let live = admin.list_api_keys(false).await.expect("keys");
    assert_eq!(
        live.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
        ["edge"]
    );
    assert_eq!(live[0].id, edge_key_meta.id);
    let every = admin.list_api_keys(true).await.expect("all keys");
    assert_eq!(every.len(), 2);
    let gone = every.iter().find(|k| k.id == sync_key_meta.id).unwrap();
    assert_eq!(gone.revoked_at_unix_ms, revoked.revoked_at_unix_ms);

    // The audit log: who did what to which target.
    let audit = admin
        .list_audit_events(pb::ListAuditEventsRequest {
            target: "drop-debug".into(),
            ..Default::default()
        })
        .await
        .expect("audit");
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "policy.create",
            "policy.update",
            "policy.disable",
            "policy.enable"
        ]
    );
    assert!(audit.iter().all(|e| e.actor == "admin"), "{audit:?}");
    assert!(audit.windows(2).all(|w| w[0].seq < w[1].seq));
    let later = admin
        .list_audit_events(pb::ListAuditEventsRequest {
            target: "drop-debug".into(),
            after_seq: audit[1].seq,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(later, audit[2..]);
    let key_events = admin
        .list_audit_events(pb::ListAuditEventsRequest {
            target: sync_key_meta.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = key_events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["api_key.create", "api_key.revoke"]);

    // Delete: gone from reads, recorded in history, its statistics kept,
    // and gone from the edge.
    let deleted = admin
        .delete_policy(pb::DeletePolicyRequest {
            id: "drop-debug".into(),
            expected_revision: 4,
            reason: "done".into(),
        })
        .await
        .expect("delete");
    assert_eq!(deleted.revision, 5);
    let missing = admin.get_policy("drop-debug").await.unwrap_err();
    assert!(
        matches!(missing, ClientError::NotFound { .. }),
        "{missing:?}"
    );
    let history = admin.policy_history("drop-debug").await.unwrap();
    assert_eq!(
        (history[0].revision, history[0].action.as_str()),
        (5, "delete")
    );
    assert_eq!(history.len(), 5);
    let kept = admin.policy_stats(stats_request()).await.unwrap();
    assert_eq!(kept.total.unwrap().hits, total.hits);
    assert_eq!(
        ids(&admin.list_all_policies(Default::default()).await.unwrap()),
        ["p-cart", "p-five", "p-four", "p-three"]
    );
    wait_for(
        Duration::from_secs(10),
        "the deletion reaches the edge",
        || (scrape(&edge) == EXPOSITION).then_some(()),
    );
}

// --------------------------------------------------------- error mapping

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_map_to_the_variant_a_caller_acts_on() {
    let cp = ControlPlane::start(temp_dir(), "cp-errors");
    let connect = || Client::connect(&cp.endpoint()).expect("a valid URL");
    let admin = connect().with_token(&cp.admin_token);

    // No token, a blank one, a wrong one.
    for client in [
        connect(),
        connect().with_token("   "),
        connect().with_token("nope"),
    ] {
        let err = client.list_policies(Default::default()).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Unauthenticated { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("TERO_TOKEN"), "{err}");
        let err = client
            .sync(sync_request("e-1", "checkout"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::Unauthenticated { .. }),
            "{err:?}"
        );
    }
    // A token no header can carry is refused before anything is sent.
    let err = connect()
        .with_token("bad\ntoken")
        .get_policy("x")
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::InvalidToken(_)), "{err:?}");

    // An edge key syncs, but the admin API is not for it.
    let edge_key = cp.create_key("fleet");
    let edge = connect().with_token(&edge_key);
    edge.sync(sync_request("e-1", "checkout"))
        .await
        .expect("an edge key may sync");
    for err in [
        edge.list_policies(Default::default()).await.unwrap_err(),
        edge.create_api_key("more").await.map(|_| ()).unwrap_err(),
        edge.get_policy("x").await.map(|_| ()).unwrap_err(),
    ] {
        assert!(
            matches!(err, ClientError::PermissionDenied { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("admin token"), "{err}");
    }

    // Invalid policies and scopes name the policy and the field.
    let bad_regex = policy(
        "bad-regex",
        json!({"match": [{"metricField": 1, "regex": "([bad"}], "keep": false}),
        &[],
    );
    let err = admin
        .create_policy(create(bad_regex, None))
        .await
        .unwrap_err();
    match &err {
        ClientError::InvalidArgument {
            message,
            policy_id,
            field,
        } => {
            assert_eq!(field.as_deref(), Some("policy.metric.match[0].regex"));
            assert_eq!(policy_id.as_deref(), Some("bad-regex"));
            assert!(message.contains("([bad"), "{message}");
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    let empty_scope = pb::Scope {
        matchers: vec![pb::ScopeMatcher {
            key: "service.name".into(),
            operator: pb::ScopeOperator::In as i32,
            values: vec![],
        }],
    };
    let err = admin
        .create_policy(create(drop_exact("scoped", "x", &[]), Some(empty_scope)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ClientError::InvalidArgument { field: Some(f), policy_id: Some(id), .. }
                if f == "scope.matchers[0].values" && id == "scoped"
        ),
        "{err:?}"
    );
    let err = admin.get_policy(" ").await.unwrap_err();
    assert!(
        matches!(
            &err,
            ClientError::InvalidArgument { field: Some(f), policy_id: None, .. } if f == "id"
        ),
        "{err:?}"
    );

    // Duplicates, stale revisions, unknown ids.
    let p = drop_exact("dup", "dup_metric", &[]);
    admin
        .create_policy(create(p.clone(), None))
        .await
        .expect("create");
    let err = admin
        .create_policy(create(p.clone(), None))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::AlreadyExists { .. }), "{err:?}");
    let update = |expected_revision: u64| pb::UpdatePolicyRequest {
        policy: Some(p.clone()),
        scope: None,
        expected_revision,
        reason: String::new(),
    };
    admin.update_policy(update(1)).await.expect("update at 1");
    admin
        .set_policy_enabled(pb::SetPolicyEnabledRequest {
            id: "dup".into(),
            enabled: false,
            expected_revision: 0,
            reason: String::new(),
        })
        .await
        .expect("disable");
    let current = admin.get_policy("dup").await.unwrap().revision;
    assert_eq!(current, 3);
    let err = admin.update_policy(update(1)).await.unwrap_err();
    match &err {
        ClientError::Conflict {
            current_revision, ..
        } => assert_eq!(*current_revision, Some(current)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let err = admin
        .delete_policy(pb::DeletePolicyRequest {
            id: "dup".into(),
            expected_revision: 2,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Conflict {
                current_revision: Some(3),
                ..
            }
        ),
        "{err:?}"
    );
    let err = admin
        .set_policy_enabled(pb::SetPolicyEnabledRequest {
            id: "dup".into(),
            enabled: true,
            expected_revision: 1,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Conflict {
                current_revision: Some(3),
                ..
            }
        ),
        "{err:?}"
    );
    let err = admin.update_policy(update(0)).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::InvalidArgument { field: Some(f), .. } if f == "expected_revision"),
        "{err:?}"
    );
    assert_eq!(
        admin.get_policy("dup").await.unwrap().revision,
        3,
        "no refused change applied"
    );

    let not_found = [
        admin.get_policy("nope").await.map(|_| ()).unwrap_err(),
        admin.policy_history("nope").await.map(|_| ()).unwrap_err(),
        admin
            .policy_deployment("nope")
            .await
            .map(|_| ())
            .unwrap_err(),
        admin
            .policy_stats(pb::GetPolicyStatsRequest {
                id: "nope".into(),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .unwrap_err(),
        admin.get_edge("nobody").await.map(|_| ()).unwrap_err(),
        admin
            .revoke_api_key("no-such-key")
            .await
            .map(|_| ())
            .unwrap_err(),
        admin
            .delete_policy(pb::DeletePolicyRequest {
                id: "nope".into(),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .unwrap_err(),
    ];
    for err in not_found {
        assert!(matches!(err, ClientError::NotFound { .. }), "{err:?}");
    }
}

#[test]
fn malformed_urls_and_ca_files_fail_before_any_call() {
    for url in [
        "",
        "not a url",
        "127.0.0.1:7070",
        "ftp://127.0.0.1:7070",
        "grpc://control-plane:7070",
        "http://",
        "http:///policies",
    ] {
        match Client::connect(url) {
            Err(err @ ClientError::InvalidEndpoint { .. }) => {
                let ClientError::InvalidEndpoint { endpoint, .. } = &err else {
                    unreachable!()
                };
                assert_eq!(endpoint, url);
                assert!(err.to_string().contains("http://host:port"), "{err}");
            }
            Err(other) => panic!("{url:?}: expected InvalidEndpoint, got {other:?}"),
            Ok(_) => panic!("{url:?}: accepted"),
        }
    }
    // Valid URLs need no server (nothing is dialled yet), but do need a
    // runtime for the lazy connection.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    for url in [
        "http://127.0.0.1:1",
        "https://cp.example:443",
        "http://[::1]:7070",
    ] {
        Client::connect(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let err = Client::connect("https://localhost:1")
        .unwrap()
        .with_ca_file(&missing)
        .unwrap_err();
    match &err {
        ClientError::CaFile { path, .. } => assert_eq!(path, &missing.display().to_string()),
        other => panic!("expected CaFile, got {other:?}"),
    }
}

// ------------------------------------------------------------------- TLS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca_and_a_refusal_without_it() {
    let dir = temp_dir();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let port = free_port();
    let mut cmd = std::process::Command::new(binary("tero-control-plane"));
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("cp-tls"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("TERO_ADMIN_TOKEN", "tls-admin");
    let _cp = Process::spawn("cp-tls", &mut cmd, dir.path());
    let url = format!("https://localhost:{port}");

    // The client's own retries carry it over the server's start-up.
    let trusting = Client::connect(&url)
        .unwrap()
        .with_ca_file(&cert)
        .expect("a PEM CA")
        .with_token("tls-admin")
        .with_retry(RetryPolicy {
            attempts: 100,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(200),
        });
    let created = trusting
        .create_policy(create(drop_exact("over-tls", "x", &[]), None))
        .await
        .expect("create over TLS");
    assert_eq!(created.revision, 1);
    let listed = trusting
        .list_all_policies(Default::default())
        .await
        .unwrap();
    assert_eq!(ids(&listed), ["over-tls"]);

    // The public roots do not vouch for this server.
    let untrusting = Client::connect(&url)
        .unwrap()
        .with_token("tls-admin")
        .with_retry(quick_retries(1));
    let err = untrusting.get_policy("over-tls").await.unwrap_err();
    match &err {
        ClientError::Unreachable { endpoint, reason } => {
            assert_eq!(endpoint, &url);
            assert!(reason.to_lowercase().contains("certificate"), "{reason}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    // Plain HTTP to a TLS port is no gRPC answer either.
    let plain = Client::connect(&format!("http://localhost:{port}"))
        .unwrap()
        .with_token("tls-admin")
        .with_retry(quick_retries(1))
        .with_timeout(Duration::from_secs(5));
    plain
        .get_policy("over-tls")
        .await
        .expect_err("h2c to a TLS listener");
}

// --------------------------------------------------------------- retries

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_unreachable_after_the_attempts() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let client = Client::connect(&url)
        .unwrap()
        .with_token("t")
        .with_retry(quick_retries(3));
    let started = Instant::now();
    let err = client.get_policy("x").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "3 attempts with ≤ 100 ms backoff took {:?}",
        started.elapsed()
    );
    match &err {
        ClientError::Unreachable { endpoint, reason } => {
            assert_eq!(endpoint, &url);
            assert!(!reason.is_empty());
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(err.to_string().contains(&url), "{err}");
    assert!(err.is_transient());
    // A change that never left is retried (and fails) the same way.
    let err = client
        .create_policy(create(drop_exact("x", "x", &[]), None))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
}

/// A listener that accepts and drops every connection, counting them: to
/// an `https://` client each is a failed handshake, a request never sent.
fn dropping_listener() -> (u16, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicU32::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_never_sent_is_tried_exactly_attempts_times() {
    for attempts in [1, 3] {
        for mutating in [false, true] {
            let (port, accepted) = dropping_listener();
            let client = Client::connect(&format!("https://127.0.0.1:{port}"))
                .unwrap()
                .with_token("t")
                .with_retry(quick_retries(attempts));
            let err = if mutating {
                client
                    .create_policy(create(drop_exact("x", "x", &[]), None))
                    .await
                    .map(|_| ())
                    .unwrap_err()
            } else {
                client
                    .list_policies(Default::default())
                    .await
                    .map(|_| ())
                    .unwrap_err()
            };
            assert!(
                matches!(err, ClientError::Unreachable { .. }),
                "{attempts} attempts, mutating {mutating}: {err:?}"
            );
            assert_eq!(
                accepted.load(Ordering::SeqCst),
                attempts,
                "mutating {mutating}: one connection per attempt"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_bridge_a_control_plane_that_is_still_starting() {
    let port = free_port();
    let dir = temp_dir();
    let client = Client::connect(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .with_token("test-admin-cp-late")
        .with_retry(RetryPolicy {
            attempts: 100,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_millis(200),
        });
    let started = Instant::now();
    let starter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        ControlPlane::start_on(port, dir, "cp-late", None, &[])
    });
    // A create before anything listens: never sent, so retried until the
    // server is up, and applied once.
    let created = client
        .create_policy(create(drop_exact("early", "x", &[]), None))
        .await
        .expect("the retries bridge the start-up");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "nothing listened before 500 ms"
    );
    assert_eq!(created.revision, 1);
    let cp = tokio::task::spawn_blocking(move || starter.join().expect("started"))
        .await
        .unwrap();
    let history = client.policy_history("early").await.unwrap();
    assert_eq!(history.len(), 1, "applied exactly once: {history:?}");
    let listed = client.list_all_policies(Default::default()).await.unwrap();
    assert_eq!(ids(&listed), ["early"]);
    let (status, body) = cp.api("GET", "/api/v1/policies/early", None);
    assert_eq!(status, 200, "{body}");
}

/// A `PolicyService` that answers UNAVAILABLE (with `retry-after`) or
/// answers after `delay`, counting calls.
#[derive(Clone)]
struct Misbehaving {
    calls: Arc<AtomicU32>,
    retry_after: Option<&'static str>,
    delay: Duration,
}

#[tonic::async_trait]
impl PolicyService for Misbehaving {
    async fn sync(
        &self,
        _request: tonic::Request<SyncRequest>,
    ) -> Result<tonic::Response<SyncResponse>, tonic::Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        if let Some(secs) = self.retry_after {
            let mut status = tonic::Status::unavailable("draining");
            status
                .metadata_mut()
                .insert("retry-after", secs.parse().unwrap());
            return Err(status);
        }
        Ok(tonic::Response::new(SyncResponse::default()))
    }
}

/// Serves `service` on a loopback port of this runtime; returns its URL.
async fn serve(service: Misbehaving) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = futures_util::stream::unfold(listener, |l| async move {
        Some((l.accept().await.map(|(s, _)| s), l))
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(PolicyServiceServer::new(service))
            .serve_with_incoming(incoming),
    );
    format!("http://{addr}")
}

fn misbehaving(retry_after: Option<&'static str>, delay: Duration) -> Misbehaving {
    Misbehaving {
        calls: Arc::new(AtomicU32::new(0)),
        retry_after,
        delay,
    }
}

fn with_stats(mut request: SyncRequest) -> SyncRequest {
    request.policy_statuses = vec![PolicySyncStatus {
        id: "p".into(),
        match_hits: 5,
        ..Default::default()
    }];
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_unavailable_is_retried_only_where_a_repeat_is_harmless() {
    let service = misbehaving(Some("0"), Duration::ZERO);
    let calls = service.calls.clone();
    let url = serve(service).await;
    let client = Client::connect(&url)
        .unwrap()
        .with_token("t")
        .with_retry(quick_retries(3));

    // A poll without statistics is a read: every attempt is made.
    let err = client.sync(sync_request("e", "s")).await.unwrap_err();
    match &err {
        ClientError::Unavailable {
            message,
            retry_after,
        } => {
            assert_eq!(message, "draining");
            assert_eq!(*retry_after, Some(Duration::ZERO));
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(calls.swap(0, Ordering::SeqCst), 3);

    // Statistics reached a server that may have counted them: once only.
    let err = client
        .sync(with_stats(sync_request("e", "s")))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unavailable { .. }), "{err:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "statistics sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_sets_the_least_wait() {
    let service = misbehaving(Some("1"), Duration::ZERO);
    let calls = service.calls.clone();
    let url = serve(service).await;
    let client = Client::connect(&url)
        .unwrap()
        .with_token("t")
        .with_retry(quick_retries(2));
    let started = Instant::now();
    let err = client.sync(sync_request("e", "s")).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Unavailable { retry_after: Some(d), .. } if d == Duration::from_secs(1)),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the server asked for 1 s, the client waited {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_deadline_is_retried_for_reads_only() {
    let service = misbehaving(None, Duration::from_secs(5));
    let calls = service.calls.clone();
    let url = serve(service).await;
    let client = Client::connect(&url)
        .unwrap()
        .with_token("t")
        .with_timeout(Duration::from_millis(300))
        .with_retry(quick_retries(2));

    let started = Instant::now();
    let err = client.sync(sync_request("e", "s")).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "each attempt ends at the deadline: {:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            err,
            ClientError::Other {
                code: Code::DeadlineExceeded,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(calls.swap(0, Ordering::SeqCst), 2, "a read is retried");

    let err = client
        .sync(with_stats(sync_request("e", "s")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Other {
                code: Code::DeadlineExceeded,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "statistics sent once");
}

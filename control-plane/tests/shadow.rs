//! Shadow (dry-run) policies through the store, the catalog and the HTTP
//! Sync endpoint: a policy labelled `tero.mode=shadow` reaches only edges
//! that declare the `tero.shadow` capability, because any other client
//! would enforce it. Also: per-scrape statistics from stream reports.

use axum::body::Body;
use http_body_util::BodyExt;
use prost::Message;
use tero_control_plane::api::State;
use tero_control_plane::ingest::DeltaBuilder;
use tero_control_plane::server;
use tero_control_plane::store::{PolicyChange, Store};
use tero_proto::controlplane::{PolicyCounters, Scope};
use tero_proto::otel::{AnyValue, KeyValue, any_value};
use tero_proto::policy::{
    ClientMetadata, MetricField, MetricMatcher, MetricTarget, Policy, PolicyStage, SyncRequest,
    SyncResponse, metric_matcher, policy,
};
use tero_sdk::engine::shadow::shadow_capability;
use tower::ServiceExt;

mod common;

const TOKEN: &str = "test-admin-shadow";

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

fn drop_prefix(id: &str, prefix: &str, shadow: bool) -> PolicyChange {
    PolicyChange {
        policy: Policy {
            id: id.into(),
            name: id.into(),
            enabled: true,
            labels: if shadow {
                vec![kv("tero.mode", "shadow")]
            } else {
                Vec::new()
            },
            target: Some(policy::Target::Metric(MetricTarget {
                r#match: vec![MetricMatcher {
                    field: Some(metric_matcher::Field::MetricField(MetricField::Name as i32)),
                    r#match: Some(metric_matcher::Match::StartsWith(prefix.into())),
                    ..Default::default()
                }],
                keep: false,
            })),
            ..Default::default()
        },
        scope: Scope::default(),
        actor: "test".into(),
        reason: "shadow test".into(),
    }
}

/// A control plane over a fresh SQLite store holding one enforced and one
/// shadow policy.
async fn control_plane(dir: &tempfile::TempDir) -> State {
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    let store = Store::open(&url).await.expect("open SQLite store");
    store
        .create_policy(drop_prefix("a-enforced", "debug_", false))
        .await
        .expect("create");
    store
        .create_policy(drop_prefix("b-shadow", "go_", true))
        .await
        .expect("create");
    common::app_state(&store, TOKEN).await
}

fn metadata(instance: &str, shadow: bool) -> ClientMetadata {
    ClientMetadata {
        supported_policy_stages: vec![PolicyStage::MetricFilter as i32],
        resource_attributes: vec![
            kv("service.name", "checkout"),
            kv("service.instance.id", instance),
        ],
        supported_extensions: if shadow {
            vec![shadow_capability()]
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

async fn post(app: &axum::Router, content_type: &str, body: Vec<u8>) -> SyncResponse {
    let request = http::Request::post("/v1/policy/sync")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", content_type)
        .header("accept", content_type)
        .body(Body::from(body))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
    assert_eq!(response.status(), 200);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    if content_type == "application/json" {
        serde_json::from_slice(&bytes).expect("JSON SyncResponse")
    } else {
        SyncResponse::decode(bytes).expect("protobuf SyncResponse")
    }
}

async fn sync_protobuf(app: &axum::Router, meta: ClientMetadata) -> SyncResponse {
    let request = SyncRequest {
        client_metadata: Some(meta),
        full_sync: true,
        ..Default::default()
    };
    post(app, "application/x-protobuf", request.encode_to_vec()).await
}

fn ids(r: &SyncResponse) -> Vec<&str> {
    r.policies.iter().map(|p| p.id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sync_delivers_shadow_policies_only_to_capable_edges() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let state = control_plane(&dir).await;
    let app = server::app(state.clone()).await.expect("app");

    let plain = sync_protobuf(&app, metadata("plain-1", false)).await;
    assert_eq!(ids(&plain), ["a-enforced"], "it would enforce the shadow");
    let able = sync_protobuf(&app, metadata("able-1", true)).await;
    assert_eq!(ids(&able), ["a-enforced", "b-shadow"]);
    assert_ne!(plain.hash, able.hash);
    for r in [&plain, &able] {
        assert_eq!(r.hash, tero_sdk::policy::policy_set_hash(&r.policies));
    }
    // The label survives the store: the edge recognises the shadow.
    assert!(tero_sdk::engine::is_shadow(&able.policies[1]));

    // Replicas of each kind share their group's hash.
    assert_eq!(
        sync_protobuf(&app, metadata("plain-2", false)).await.hash,
        plain.hash
    );
    assert_eq!(
        sync_protobuf(&app, metadata("able-2", true)).await.hash,
        able.hash
    );

    // JSON clients declare the capability the same way.
    let json = |meta: ClientMetadata| {
        serde_json::to_vec(&SyncRequest {
            client_metadata: Some(meta),
            full_sync: true,
            ..Default::default()
        })
        .expect("JSON request")
    };
    let r = post(&app, "application/json", json(metadata("able-3", true))).await;
    assert_eq!((ids(&r), &r.hash), (ids(&able), &able.hash));
    let r = post(&app, "application/json", json(metadata("plain-3", false))).await;
    assert_eq!((ids(&r), &r.hash), (ids(&plain), &plain.hash));
    state.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_reports_store_scrapes_per_minute() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let state = control_plane(&dir).await;
    let counters = |id: &str, scrapes: i64| PolicyCounters {
        policy_id: id.into(),
        hits: 3,
        bytes_dropped: 120,
        series_dropped: 3,
        scrapes,
        shadow: id == "b-shadow",
        ..Default::default()
    };
    let mut deltas = DeltaBuilder::default();
    deltas
        .add_counters(|_| true, &counters("b-shadow", 2))
        .unwrap();
    deltas
        .add_counters(|_| true, &counters("b-shadow", 1))
        .unwrap();
    // A policy that matched nothing still reports its scrapes.
    deltas
        .add_counters(
            |_| true,
            &PolicyCounters {
                policy_id: "a-enforced".into(),
                scrapes: 3,
                ..Default::default()
            },
        )
        .unwrap();
    // Negative counts are a client bug: the entry is refused.
    assert!(
        deltas
            .add_counters(
                |_| true,
                &PolicyCounters {
                    policy_id: "a-enforced".into(),
                    scrapes: -5,
                    ..Default::default()
                }
            )
            .is_err()
    );
    let batch = deltas.build(Some(("edge-1".into(), "s".into(), 1)));
    let minute = batch.deltas[0].minute;
    assert!(state.store_stats(batch).await.expect("stored"));

    let buckets = |id: &'static str| {
        let store = state.store.clone();
        async move {
            store
                .policy_stats(id, minute, minute + 60_000)
                .await
                .expect("stats")
        }
    };
    let shadow = buckets("b-shadow").await;
    assert_eq!(shadow.len(), 1);
    assert_eq!(
        (shadow[0].hits, shadow[0].bytes_dropped, shadow[0].scrapes),
        (6, 240, 3)
    );
    let enforced = buckets("a-enforced").await;
    assert_eq!((enforced[0].hits, enforced[0].scrapes), (0, 3));
    state.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_statuses_carry_scrapes_in_the_tero_extension() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let state = control_plane(&dir).await;
    let app = server::app(state.clone()).await.expect("app");
    let request = SyncRequest {
        client_metadata: Some(metadata("edge-poll", true)),
        full_sync: true,
        policy_statuses: vec![tero_proto::policy::PolicySyncStatus {
            id: "a-enforced".into(),
            match_hits: 4,
            tero_records_dropped: 4,
            tero_bytes_dropped: 160,
            tero_scrapes: 2,
            ..Default::default()
        }],
        ..Default::default()
    };
    post(&app, "application/x-protobuf", request.encode_to_vec()).await;
    let buckets = state
        .store
        .policy_stats("a-enforced", 0, i64::MAX)
        .await
        .expect("stats");
    let total: (i64, i64, i64) = buckets.iter().fold((0, 0, 0), |(h, b, s), x| {
        (h + x.hits, b + x.bytes_dropped, s + x.scrapes)
    });
    assert_eq!(total, (4, 160, 2));
    state.shutdown.cancel();
}

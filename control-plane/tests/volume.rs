//! Volume (spec 1.7.1 `SyncRequest.volume`: what an edge saw, whatever its
//! policies) through the HTTP Sync endpoint, in both encodings: stored per
//! edge per minute, once per named report; hostile counts refused without
//! losing the rest of the sync; shown in the runtime view and as the share
//! of its signal's volume a policy drops.

use axum::body::Body;
use http_body_util::BodyExt;
use prost::Message;
use serde_json::{Value, json};
use tero_control_plane::api::State;
use tero_control_plane::server;
use tero_control_plane::store::{PolicyChange, Store, VolumeCounts};
use tero_proto::controlplane::{Scope, ScopeMatcher, ScopeOperator};
use tero_proto::otel::{AnyValue, KeyValue, any_value};
use tero_proto::policy::{
    ClientMetadata, MetricField, MetricMatcher, MetricTarget, Policy, PolicyStage,
    PolicySyncStatus, SyncRequest, VolumeStats, metric_matcher, policy,
};
use tero_sdk::engine::shadow::shadow_capability;
use tower::ServiceExt;

mod common;

const TOKEN: &str = "test-admin-volume";
const REPORT_HEADER: &str = "tero-stats-report";

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

/// A metric policy dropping names starting with `prefix`, on the edges of
/// service `service` (every edge when empty).
fn drop_prefix(id: &str, prefix: &str, service: &str, shadow: bool) -> PolicyChange {
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
        scope: Scope {
            matchers: if service.is_empty() {
                Vec::new()
            } else {
                vec![ScopeMatcher {
                    key: "service.name".into(),
                    operator: ScopeOperator::In as i32,
                    values: vec![service.into()],
                }]
            },
        },
        actor: "test".into(),
        reason: "volume test".into(),
    }
}

async fn control_plane(dir: &tempfile::TempDir) -> (State, axum::Router) {
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    let store = Store::open(&url).await.expect("open SQLite store");
    for change in [
        drop_prefix("drop-debug", "debug_", "checkout", false),
        drop_prefix("shadow-go", "go_", "checkout", true),
        drop_prefix("drop-cart", "cart_", "cart", false),
    ] {
        store.create_policy(change).await.expect("create");
    }
    let state = common::app_state(&store, TOKEN).await;
    let app = server::app(state.clone()).await.expect("app");
    (state, app)
}

fn metadata(instance: &str, service: &str) -> ClientMetadata {
    ClientMetadata {
        supported_policy_stages: vec![PolicyStage::MetricFilter as i32],
        resource_attributes: vec![
            kv("service.name", service),
            kv("service.instance.id", instance),
        ],
        supported_extensions: vec![shadow_capability()],
        ..Default::default()
    }
}

fn points(n: i64) -> VolumeStats {
    VolumeStats {
        metric_data_points: n,
        ..Default::default()
    }
}

/// One sync: status and response headers.
async fn sync(
    app: &axum::Router,
    content_type: &str,
    body: Vec<u8>,
    report: Option<&str>,
) -> (u16, http::HeaderMap, String) {
    let mut request = http::Request::post("/v1/policy/sync")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", content_type)
        .header("accept", content_type);
    if let Some(report) = report {
        request = request.header(REPORT_HEADER, report);
    }
    let request = request.body(Body::from(body)).expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

async fn sync_protobuf(app: &axum::Router, request: &SyncRequest, report: Option<&str>) {
    let (status, _, body) = sync(
        app,
        "application/x-protobuf",
        request.encode_to_vec(),
        report,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn admin_get(app: &axum::Router, path: &str) -> Value {
    let request = http::Request::get(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("JSON")
}

async fn volume_of(state: &State, instance: &str) -> VolumeCounts {
    state
        .store
        .volume_by_edge(None, 0, i64::MAX)
        .await
        .expect("volume")
        .remove(instance)
        .unwrap_or_default()
}

fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(-1),
        other => other.as_i64().unwrap_or(-1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_volume_is_stored_per_edge_once_per_named_report_in_both_encodings() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (state, app) = control_plane(&dir).await;

    // Proto3 JSON as the spec's clients send it: camelCase, int64 as
    // strings; snake_case and numbers are accepted too.
    let json_sync = |volume: Value| {
        serde_json::to_vec(&json!({
            "clientMetadata": {"resourceAttributes": [
                {"key": "service.name", "value": {"stringValue": "checkout"}},
                {"key": "service.instance.id", "value": {"stringValue": "edge-json"}},
            ]},
            "volume": volume,
        }))
        .unwrap()
    };
    let (status, headers, body) = sync(
        &app,
        "application/json",
        json_sync(json!({"logRecords": "7", "logBytes": "700", "metricDataPoints": "3"})),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        headers.get(REPORT_HEADER).is_none(),
        "nothing to echo for an unnamed report"
    );
    let (status, _, body) = sync(
        &app,
        "application/json",
        json_sync(json!({"log_records": 1, "spans": 2, "span_bytes": "20"})),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Unnamed: each sync's volume is new telemetry (the spec's clients
    // never resend it).
    assert_eq!(
        volume_of(&state, "edge-json").await,
        VolumeCounts {
            log_records: 8,
            log_bytes: 700,
            metric_data_points: 3,
            metric_bytes: 0,
            spans: 2,
            span_bytes: 20,
        }
    );

    // Protobuf with a named report: the name is echoed, and a resent report
    // (a timeout after the server stored it) adds its volume once.
    let request = SyncRequest {
        client_metadata: Some(metadata("edge-pb", "checkout")),
        volume: Some(points(40)),
        ..Default::default()
    };
    for _ in 0..2 {
        let (status, headers, _) = sync(
            &app,
            "application/x-protobuf",
            request.encode_to_vec(),
            Some("s1/1"),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            headers.get(REPORT_HEADER).and_then(|v| v.to_str().ok()),
            Some("s1/1")
        );
    }
    assert_eq!(volume_of(&state, "edge-pb").await.metric_data_points, 40);
    sync_protobuf(&app, &request, Some("s1/2")).await;
    assert_eq!(volume_of(&state, "edge-pb").await.metric_data_points, 80);
    // A client without an instance id has no edge to keep volume for.
    let anonymous = SyncRequest {
        volume: Some(points(5)),
        ..Default::default()
    };
    sync_protobuf(&app, &anonymous, None).await;
    let all = state.store.volume_by_edge(None, 0, i64::MAX).await.unwrap();
    assert_eq!(
        all.keys().collect::<Vec<_>>(),
        ["edge-json", "edge-pb"],
        "{all:?}"
    );
    state.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_volume_is_refused_whole_and_the_rest_of_the_sync_is_stored() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (state, app) = control_plane(&dir).await;
    let hostile = [
        VolumeStats {
            metric_data_points: -1,
            ..Default::default()
        },
        VolumeStats {
            log_records: 10,
            log_bytes: i64::MAX,
            ..Default::default()
        },
        VolumeStats {
            spans: i64::MIN,
            ..Default::default()
        },
    ];
    for (i, volume) in hostile.into_iter().enumerate() {
        let request = SyncRequest {
            client_metadata: Some(metadata("edge-bad", "checkout")),
            policy_statuses: vec![PolicySyncStatus {
                id: "drop-debug".into(),
                match_hits: 1,
                ..Default::default()
            }],
            volume: Some(volume),
            ..Default::default()
        };
        sync_protobuf(&app, &request, Some(&format!("s/{}", i + 1))).await;
    }
    assert!(volume_of(&state, "edge-bad").await.is_zero());
    let hits: i64 = state
        .store
        .policy_stats("drop-debug", 0, i64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|b| b.hits)
        .sum();
    assert_eq!(hits, 3, "the statuses of every sync were stored");
    let metrics = {
        let request = http::Request::get("/metrics")
            .body(Body::empty())
            .expect("request");
        let response = app.clone().oneshot(request).await.expect("response");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    };
    assert!(
        metrics.contains("tero_cp_edge_volumes_refused_total 3"),
        "{metrics}"
    );
    // A JSON count beyond int64 is not a number the protocol has: refused
    // with a 400 saying so and where, never a panic.
    let (status, _, body) = sync(
        &app,
        "application/json",
        br#"{"volume": {"metricDataPoints": "99999999999999999999"}}"#.to_vec(),
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("number too large"), "{body}");
    state.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_view_shows_recent_volume_and_stats_the_share_a_policy_drops() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (state, app) = control_plane(&dir).await;
    // Two checkout edges (drop-debug and shadow-go run there) and a cart
    // edge (drop-cart only); the cart edge's volume is not checkout's.
    let statuses = |dropped: i64| {
        vec![
            PolicySyncStatus {
                id: "drop-debug".into(),
                match_hits: dropped,
                tero_records_dropped: dropped,
                ..Default::default()
            },
            PolicySyncStatus {
                id: "shadow-go".into(),
                match_hits: 2 * dropped,
                tero_records_dropped: 2 * dropped,
                ..Default::default()
            },
        ]
    };
    for (instance, service, seen, dropped) in [
        ("edge-a", "checkout", 60, 10),
        ("edge-b", "checkout", 40, 15),
        ("edge-c", "cart", 1000, 0),
    ] {
        let request = SyncRequest {
            client_metadata: Some(metadata(instance, service)),
            policy_statuses: if dropped > 0 {
                statuses(dropped)
            } else {
                Vec::new()
            },
            volume: Some(points(seen)),
            ..Default::default()
        };
        sync_protobuf(&app, &request, Some(&format!("{instance}/1"))).await;
    }
    state.runtime.flush().await.expect("edges stored");

    let edge = admin_get(&app, "/api/v1/edges/edge-a").await;
    assert_eq!(int(&edge["volumeLast5m"]["metricDataPoints"]), 60, "{edge}");
    assert_eq!(
        int(&edge["volumeLastHour"]["metricDataPoints"]),
        60,
        "{edge}"
    );
    let listed = admin_get(&app, "/api/v1/edges").await;
    let by_instance: Vec<(String, i64)> = listed["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            (
                e["instanceId"].as_str().unwrap_or_default().to_owned(),
                int(&e["volumeLast5m"]["metricDataPoints"]),
            )
        })
        .collect();
    assert_eq!(
        by_instance,
        [
            ("edge-a".to_owned(), 60),
            ("edge-b".to_owned(), 40),
            ("edge-c".to_owned(), 1000)
        ]
    );

    // 25 of the 100 data points the two checkout edges saw.
    let stats = admin_get(&app, "/api/v1/policies/drop-debug/stats").await;
    let share = &stats["volumeShare"];
    assert_eq!(share["signal"], "metric", "{stats}");
    assert_eq!(
        (
            int(&share["recordsDropped"]),
            int(&share["recordsSeen"]),
            share["edges"].as_u64(),
            share["edgesReporting"].as_u64(),
            share["shadow"].as_bool()
        ),
        (25, 100, Some(2), Some(2), Some(false)),
        "{stats}"
    );
    assert_eq!(share["share"].as_f64(), Some(0.25), "{stats}");
    // A shadow policy's would-drops, as such.
    let stats = admin_get(&app, "/api/v1/policies/shadow-go/stats").await;
    assert_eq!(stats["volumeShare"]["shadow"], true, "{stats}");
    assert_eq!(stats["volumeShare"]["share"].as_f64(), Some(0.5), "{stats}");
    // The cart edge saw data points but drop-cart dropped none: 0 %, known.
    let stats = admin_get(&app, "/api/v1/policies/drop-cart/stats").await;
    assert_eq!(stats["volumeShare"]["share"].as_f64(), Some(0.0), "{stats}");
    // Outside the window nobody saw anything: unknown, not 0 %.
    let stats = admin_get(
        &app,
        "/api/v1/policies/drop-debug/stats?from_unix_ms=1000&to_unix_ms=2000",
    )
    .await;
    let share = &stats["volumeShare"];
    assert_eq!(int(&share["recordsSeen"]), 0, "{stats}");
    assert!(
        share.get("share").is_none_or(Value::is_null),
        "no share without volume: {stats}"
    );
    state.shutdown.cancel();
}

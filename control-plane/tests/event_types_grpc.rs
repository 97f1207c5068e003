//! Log templates and span patterns from an edge's `InventoryReport`, over
//! gRPC against the real server on 127.0.0.1: stored as event types of
//! kinds `log` and `span` with their redacted examples, attributes,
//! sensitive values, duplicate fields and reporting edge, counted once
//! however often the report is resent, and classified by the embedded
//! classifier.

use std::sync::Arc;
use std::time::Duration;

use tero_control_plane::server;
use tero_control_plane::store::{Store, now_ms};
use tero_proto::controlplane::classify_service_client::ClassifyServiceClient;
use tero_proto::controlplane::inventory_service_client::InventoryServiceClient;
use tero_proto::controlplane::{
    AttributeProfile, DuplicateField, EventType, InventoryReport, ListEventTypesRequest,
    LogTemplate, RunClassificationRequest, SensitiveFinding, SpanPattern,
};
use tero_proto::otel::{AnyValue, KeyValue, any_value};
use tero_proto::policy::ClientMetadata;
use tonic::Request;
use tonic::transport::Channel;

mod common;

const TOKEN: &str = "test-admin-event-types";

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

fn authed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {TOKEN}").parse().expect("a valid header"),
    );
    request
}

fn edge_report(seq: u64) -> InventoryReport {
    let now = now_ms();
    InventoryReport {
        client_metadata: Some(ClientMetadata {
            resource_attributes: vec![
                kv("service.name", "checkout"),
                kv("service.instance.id", "edge-1"),
            ],
            ..Default::default()
        }),
        session: "session-1".into(),
        seq,
        window_start_unix_ms: now - 10_000,
        window_end_unix_ms: now,
        log_templates: vec![
            LogTemplate {
                fingerprint: tero_sdk::templates::fingerprint("checkout", "DEBUG cache miss <num>"),
                text: "DEBUG cache miss <num>".into(),
                count: 120,
                bytes: 6_000,
                severity: "DEBUG".into(),
                examples: vec!["DEBUG cache miss 42".into()],
                first_seen_unix_ms: now - 10_000,
                last_seen_unix_ms: now,
                ..Default::default()
            },
            LogTemplate {
                fingerprint: tero_sdk::templates::fingerprint("checkout", "login by <*>"),
                text: "login by <*>".into(),
                count: 30,
                bytes: 3_000,
                severity: "INFO".into(),
                examples: vec!["login by <email>".into()],
                first_seen_unix_ms: now - 10_000,
                last_seen_unix_ms: now,
                attributes: vec![AttributeProfile {
                    key: "user_id".into(),
                    records: 30,
                    bytes: 600,
                    examples: vec!["<num>".into()],
                    more_values: true,
                }],
                sensitive: vec![SensitiveFinding {
                    kind: "email".into(),
                    location: "body".into(),
                    records: 30,
                    example: "login by <email>".into(),
                }],
                duplicate_fields: vec![DuplicateField {
                    keep: "attribute:user_id".into(),
                    duplicate: "attribute:userId".into(),
                    records: 30,
                    bytes: 240,
                }],
                ..Default::default()
            },
        ],
        span_patterns: vec![SpanPattern {
            fingerprint: "span-healthz".into(),
            name: "GET /healthz".into(),
            kind: "server".into(),
            route: "/healthz".into(),
            user_agent: "kube-probe/1.29".into(),
            count: 60,
            bytes: 12_000,
            errors: 0,
            attribute_keys: vec!["http.route".into(), "user_agent.original".into()],
            examples: vec![
                "GET /healthz kind=server status=ok http.route=/healthz user_agent=kube-probe/1.29"
                    .into(),
            ],
            first_seen_unix_ms: now - 10_000,
            last_seen_unix_ms: now,
        }],
        ..Default::default()
    }
}

fn find<'a>(events: &'a [EventType], name: &str) -> &'a EventType {
    events
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{name} not listed in {events:?}"))
}

#[tokio::test]
async fn an_edge_reports_log_templates_and_span_patterns_that_become_classified_event_types() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    let store = Store::open(&url).await.expect("open SQLite store");
    let state = common::app_state(&store, TOKEN).await;
    let app = server::app(state.clone()).await.expect("app");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn(server::serve(
        listener,
        None,
        app,
        state.shutdown.clone(),
        Duration::from_secs(1),
        server::ConnectionLimits {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        },
        Arc::clone(&state.metrics.connections),
    ));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut inventory = InventoryServiceClient::new(channel.clone());
    let mut classify = ClassifyServiceClient::new(channel);

    // Sent, then resent (its answer was lost): counted once.
    for _ in 0..2 {
        let ack = inventory
            .report(authed(edge_report(1)))
            .await
            .expect("report accepted")
            .into_inner();
        assert_eq!(ack.seq, 1);
    }
    let run = classify
        .run_classification(authed(RunClassificationRequest { force: false }))
        .await
        .expect("run")
        .into_inner();
    assert_eq!(run.event_types, 3, "{run:?}");

    let listed = |kind: &str| {
        let mut classify = classify.clone();
        let kind = kind.to_owned();
        async move {
            classify
                .list_event_types(authed(ListEventTypesRequest {
                    service: "checkout".into(),
                    kind,
                    ..Default::default()
                }))
                .await
                .expect("list")
                .into_inner()
                .event_types
        }
    };
    let logs = listed("log").await;
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert!(logs.iter().all(|e| e.kind == "log"));
    let debug = find(&logs, "DEBUG cache miss <num>");
    assert_eq!((debug.count, debug.bytes), (120, 6_000), "counted once");
    assert_eq!(debug.examples, ["DEBUG cache miss 42"]);
    assert_eq!(debug.edges, ["edge-1"]);
    let login = find(&logs, "login by <*>");
    assert_eq!(login.examples, ["login by <email>"]);
    assert_eq!(login.attributes.len(), 1);
    assert_eq!(
        (
            login.attributes[0].key.as_str(),
            login.attributes[0].records
        ),
        ("user_id", 30)
    );
    assert_eq!(login.sensitive.len(), 1);
    assert_eq!(
        (login.sensitive[0].kind.as_str(), login.sensitive[0].records),
        ("email", 30)
    );
    assert_eq!(login.duplicate_fields[0].duplicate, "attribute:userId");

    let spans = listed("span").await;
    assert_eq!(spans.len(), 1, "{spans:?}");
    let span = &spans[0];
    assert_eq!(span.kind, "span");
    assert_eq!(span.fingerprint, "span-healthz");
    assert_eq!(
        (
            span.route.as_str(),
            span.span_kind.as_str(),
            span.user_agent.as_str()
        ),
        ("/healthz", "server", "kube-probe/1.29")
    );
    assert_eq!(span.labels, ["http.route", "user_agent.original"]);
    assert_eq!((span.count, span.bytes), (60, 12_000));
    assert_eq!(span.examples.len(), 1);
    assert_eq!(span.edges, ["edge-1"]);

    // The embedded classifier decided every one of them in that run.
    for e in logs.iter().chain(&spans) {
        let c = e
            .classification
            .as_ref()
            .unwrap_or_else(|| panic!("{} unclassified: {}", e.name, e.unclassified_reason));
        assert_eq!(c.run_id, run.id);
        assert!(c.classifier.starts_with("embedded"), "{c:?}");
    }

    // The next report adds up; the same report from another edge names it.
    inventory
        .report(authed(edge_report(2)))
        .await
        .expect("second report");
    let logs = listed("log").await;
    let debug = find(&logs, "DEBUG cache miss <num>");
    assert_eq!((debug.count, debug.bytes), (240, 12_000));
    assert_eq!(
        debug.examples,
        ["DEBUG cache miss 42"],
        "examples stay distinct"
    );

    state.shutdown.cancel();
    server.await.expect("server stopped");
}

//! What a real `tero-edge` reports about pushed log records and spans: a
//! pushed OTLP request's attributes, sensitive values and duplicate fields
//! in its log templates, and span patterns of pushed traces, as a fake
//! control plane receives them in inventory reports (`POST
//! /api/v1/inventory`), on ports chosen at run time.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use serde_json::json;
use tero_e2e::push_sink::PushSink;
use tero_e2e::sync_server::{InventoryReceived, SyncServer};
use tero_e2e::{Edge, http_post, wait_for};
use tero_proto::controlplane::{LogTemplate, SpanPattern};
use tero_proto::otel::{AnyValue, KeyValue, any_value::Value};
use tero_proto::otlp_collector::logs::v1::ExportLogsServiceRequest;
use tero_proto::otlp_logs::{LogRecord, ResourceLogs, ScopeLogs};
use tero_proto::policy::SyncResponse;

const SERVICE: &str = "shop";

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
    }
}

/// Checkout records: the customer's e-mail in `contact`, the customer id
/// twice (`user_id` and `userId`) and the record's trace id copied into a
/// `trace_id` attribute.
fn checkout_logs(n: u8) -> ExportLogsServiceRequest {
    let records = (0..n)
        .map(|i| {
            let trace_id = [i + 1; 16];
            let customer = format!("customer-{:04}", u32::from(i) * 7);
            LogRecord {
                body: Some(AnyValue {
                    value: Some(Value::StringValue(format!(
                        "checkout completed for order {}",
                        1000 + u32::from(i)
                    ))),
                }),
                severity_text: "INFO".into(),
                trace_id: trace_id.to_vec(),
                attributes: vec![
                    string("contact", &format!("jane.doe{i}@example.com")),
                    string("user_id", &customer),
                    string("userId", &customer),
                    string("trace_id", &hex(&trace_id)),
                    string("http.route", "/checkout"),
                ],
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Kubernetes probing `/healthz`, as OTLP JSON.
fn probe_traces(n: u8) -> serde_json::Value {
    let spans: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            json!({
                "traceId": hex(&[0x10 + i; 16]),
                "spanId": hex(&[0x20 + i; 8]),
                "name": "GET /healthz",
                "kind": 2,
                "startTimeUnixNano": "1700000000000000000",
                "endTimeUnixNano": "1700000000001000000",
                "attributes": [
                    {"key": "http.route", "value": {"stringValue": "/healthz"}},
                    {"key": "user_agent.original", "value": {"stringValue": "kube-probe/1.29"}},
                    {"key": "http.response.status_code", "value": {"intValue": "200"}}
                ],
                "status": {"code": 1}
            })
        })
        .collect();
    json!({"resourceSpans": [{"resource": {}, "scopeSpans": [{"scope": {}, "spans": spans}]}]})
}

fn templates(reports: &[InventoryReceived]) -> Vec<&LogTemplate> {
    reports
        .iter()
        .flat_map(|r| &r.report.log_templates)
        .collect()
}

fn patterns(reports: &[InventoryReceived]) -> Vec<&SpanPattern> {
    reports
        .iter()
        .flat_map(|r| &r.report.span_patterns)
        .collect()
}

#[test]
fn pushed_records_and_spans_reach_inventory_reports_without_their_secrets() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let sink = PushSink::start();
    let control_plane = SyncServer::start(SyncResponse::default());
    let edge = Edge::start(
        json!({
            "upstream_url": sink.url(),
            "service": {"name": SERVICE, "instance_id": "shop-0"},
            "policy_providers": [{
                "id": "cp", "type": "http", "url": control_plane.url(),
                "poll_interval_secs": 1, "encoding": "protobuf",
            }],
            "inventory": {"interval_secs": 1, "provider": "cp"},
            "intake": {"log_samples_per_second": 1000, "span_samples_per_second": 1000},
        }),
        dir,
        "edge-events",
    );

    let r = http_post(
        &edge.url("/v1/logs"),
        &[("content-type", "application/x-protobuf")],
        &checkout_logs(10).encode_to_vec(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = http_post(
        &edge.url("/v1/traces"),
        &[("content-type", "application/json")],
        &serde_json::to_vec(&probe_traces(5)).unwrap(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    let reports = wait_for(
        Duration::from_secs(30),
        "the pushed records and spans in inventory reports",
        || {
            let reports = control_plane.inventory_reports();
            let lines: u64 = templates(&reports).iter().map(|t| t.count).sum();
            let spans: u64 = patterns(&reports).iter().map(|p| p.count).sum();
            (lines == 10 && spans == 5).then_some(reports)
        },
    );

    // One template, its ten records profiled.
    let all = templates(&reports);
    assert_eq!(all.len(), 1, "{all:#?}");
    let checkout = all[0];
    assert_eq!(checkout.text, "checkout completed for order <num>");
    let attribute = |key: &str| {
        checkout
            .attributes
            .iter()
            .find(|a| a.key == key)
            .unwrap_or_else(|| panic!("no attribute {key}: {:#?}", checkout.attributes))
    };
    let contact = attribute("contact");
    assert_eq!(contact.records, 10);
    assert!(
        contact.examples.is_empty(),
        "a flagged value is never an example: {contact:?}"
    );
    let route = attribute("http.route");
    assert_eq!(
        (route.records, route.examples.clone()),
        (10, vec!["/checkout".to_owned()])
    );
    assert_eq!(
        route.bytes,
        10 * ("http.route".len() + "/checkout".len()) as u64
    );
    let user_id = attribute("user_id");
    assert_eq!(user_id.examples.len(), 5);
    assert!(user_id.more_values);

    let email = checkout
        .sensitive
        .iter()
        .find(|f| f.kind == "email")
        .unwrap_or_else(|| panic!("no email finding: {:#?}", checkout.sensitive));
    assert_eq!(
        (
            email.location.as_str(),
            email.records,
            email.example.as_str()
        ),
        ("attribute:contact", 10, "<email>")
    );

    let mut duplicates: Vec<(&str, &str, u64)> = checkout
        .duplicate_fields
        .iter()
        .map(|d| (d.keep.as_str(), d.duplicate.as_str(), d.records))
        .collect();
    duplicates.sort();
    assert_eq!(
        duplicates,
        [
            ("attribute:user_id", "attribute:userId", 10),
            ("trace_id", "attribute:trace_id", 10),
        ]
    );
    let user_ids = checkout
        .duplicate_fields
        .iter()
        .find(|d| d.duplicate == "attribute:userId")
        .unwrap();
    assert_eq!(
        user_ids.bytes,
        10 * ("userId".len() + "customer-0000".len()) as u64,
        "what removing userId saves"
    );

    // The kube-probe health check, as a span pattern.
    let all = patterns(&reports);
    assert_eq!(all.len(), 1, "{all:#?}");
    let probe = all[0];
    assert_eq!(
        (
            probe.name.as_str(),
            probe.kind.as_str(),
            probe.route.as_str(),
            probe.user_agent.as_str()
        ),
        ("GET /healthz", "server", "/healthz", "kube-probe/1.29")
    );
    assert_eq!((probe.count, probe.errors), (5, 0));
    assert!(probe.bytes > 0);
    assert_eq!(
        probe.examples,
        [
            "GET /healthz kind=server status=ok http.route=/healthz http.response.status_code=200 user_agent=kube-probe/1.29"
        ]
    );
    assert_eq!(
        probe.fingerprint,
        tero_sdk::templates::fingerprint(
            SERVICE,
            "\u{1e}span GET /healthz /healthz kube-probe/1.29"
        )
    );
    assert_eq!(probe.first_seen_unix_ms, 1_700_000_000_000);

    // The e-mails went upstream with the records, never to the control
    // plane.
    for received in &reports {
        assert!(
            !received
                .body
                .windows(b"@example.com".len())
                .any(|w| w == b"@example.com"),
            "an e-mail in report seq {}",
            received.report.seq
        );
    }
    assert!(
        edge.self_metric("edge_intake_span_samples_total") >= 5.0,
        "span samples counted"
    );
}

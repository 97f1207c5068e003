//! Malformed, truncated and deeply nested input: the protobuf codec never
//! panics, refuses what is not a valid export request with a message that
//! says what is wrong, and counts nothing for a refused payload (the caller
//! forwards it unchanged).

mod common;

use proptest::prelude::*;
use prost::Message as _;
use serde_json::json;
use tero_otlp::{DecodeError, Format, Output, Signal, convert};
use tero_sdk::engine::{Engine, StatsRegistry};
use tero_sdk::policy::Format as PolicyFormat;

const POLICIES: &str = r#"{"policies": [
  {"id": "drop-debug", "name": "d", "log": {"match": [{"log_field": "severity_text", "exact": "DEBUG"}], "keep": "none"}},
  {"id": "redact", "name": "r", "log": {"match": [{"log_attribute": "user", "exists": true}], "keep": "all",
   "transform": {"redact": [{"log_attribute": "user"}], "add": [{"log_attribute": "seen", "value": "1"}]}}},
  {"id": "drop-metric", "name": "m", "metric": {"match": [{"metric_field": "name", "exact": "x"}], "keep": false}},
  {"id": "drop-span", "name": "s", "trace": {"match": [{"trace_field": "name", "exact": "x"}], "keep": {"percentage": 0}}}
]}"#;

fn logs_request() -> Vec<u8> {
    let doc = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
        "scopeLogs": [{"scope": {"name": "s"}, "logRecords": [
            {"severityText": "DEBUG", "body": {"stringValue": "noise"}},
            {"severityText": "INFO", "body": {"kvlistValue": {"values": [
                {"key": "a", "value": {"arrayValue": {"values": [{"intValue": "1"}]}}}]}},
             "attributes": [{"key": "user", "value": {"stringValue": "bob"}}],
             "traceId": "0102030405060708090a0b0c0d0e0f10"},
            {"severityText": "WARN", "body": {"stringValue": "kept"}}
        ]}]
    }]});
    convert::json_to_protobuf(Signal::Log, &doc).unwrap()
}

fn traces_request() -> Vec<u8> {
    let doc = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"name": "x", "traceId": "0102030405060708090a0b0c0d0e0f10"},
        {"name": "y", "events": [{"name": "e", "attributes": [{"key": "k", "value": {"boolValue": true}}]}],
         "links": [{"traceId": "0102030405060708090a0b0c0d0e0f10"}], "status": {"code": 2}}
    ]}]}]});
    convert::json_to_protobuf(Signal::Trace, &doc).unwrap()
}

fn metrics_request() -> Vec<u8> {
    let doc = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "x", "gauge": {"dataPoints": [{"asDouble": 1.0}]}},
        {"name": "y", "histogram": {"dataPoints": [{"count": "2", "bucketCounts": ["1", "1"],
            "explicitBounds": [1.0]}], "aggregationTemporality": 2}},
        {"name": "z", "exponentialHistogram": {"dataPoints": [{"positive": {"bucketCounts": ["3"]}}]}}
    ]}]}]});
    convert::json_to_protobuf(Signal::Metric, &doc).unwrap()
}

/// Filters with fresh counters; on an error, checks that nothing was
/// counted.
fn filter(signal: Signal, payload: &[u8]) -> Result<Output, DecodeError> {
    let (engine, registry) = common::engine_from(POLICIES, PolicyFormat::Json);
    let result = tero_otlp::filter(&engine, Format::OtlpProtobuf, signal, payload);
    match result {
        Ok(filtered) => {
            if let Output::Rewritten(bytes) = &filtered.output {
                // Whatever the codec writes is valid protobuf.
                convert::protobuf_to_json(signal, bytes).expect("rewritten output decodes");
            }
            Ok(filtered.output)
        }
        Err(e) => {
            let counted = registry.take_all();
            assert!(counted.is_empty(), "refused payload counted: {counted:?}");
            Err(e)
        }
    }
}

fn protobuf_error(result: Result<Output, DecodeError>) -> String {
    match result {
        Err(DecodeError::Protobuf(message)) => message,
        other => panic!("expected a protobuf error, got {other:?}"),
    }
}

#[test]
fn every_truncation_is_either_refused_or_a_valid_prefix() {
    for (signal, payload) in [
        (Signal::Log, logs_request()),
        (Signal::Trace, traces_request()),
        (Signal::Metric, metrics_request()),
    ] {
        assert!(
            filter(signal, &payload).is_ok(),
            "{signal:?} sample is valid"
        );
        for cut in 0..payload.len() {
            let prefix = &payload[..cut];
            // A cut between resource entries is a shorter valid request;
            // anything else must be refused, never panic.
            let valid = match signal {
                Signal::Log => {
                    tero_proto::otlp_collector::logs::v1::ExportLogsServiceRequest::decode(prefix)
                        .is_ok()
                }
                Signal::Trace => {
                    tero_proto::otlp_collector::trace::v1::ExportTraceServiceRequest::decode(prefix)
                        .is_ok()
                }
                Signal::Metric => {
                    tero_proto::otlp_collector::metrics::v1::ExportMetricsServiceRequest::decode(
                        prefix,
                    )
                    .is_ok()
                }
            };
            let result = filter(signal, prefix);
            assert_eq!(
                result.is_ok(),
                valid,
                "{signal:?} cut at {cut}: codec says {result:?}, prost says valid={valid}"
            );
        }
    }
}

#[test]
fn truncation_errors_say_where() {
    let payload = logs_request();
    let message = protobuf_error(filter(Signal::Log, &payload[..payload.len() - 3]));
    assert!(message.contains("truncated"), "{message}");
    assert!(message.contains("resource_logs"), "{message}");
}

/// A log record whose body is an AnyValue nested `depth` kvlists deep.
fn nested_body(depth: usize) -> Vec<u8> {
    // Encoded by hand: serde_json and prost both stop far earlier.
    fn any_value(depth: usize) -> Vec<u8> {
        let mut inner = vec![0x0a, 4, b'l', b'e', b'a', b'f'];
        for _ in 0..depth {
            let mut kv = vec![0x0a, 1, b'k'];
            push_len(&mut kv, 2, &inner);
            let mut list = Vec::new();
            push_len(&mut list, 1, &kv);
            let mut any = Vec::new();
            push_len(&mut any, 6, &list);
            inner = any;
        }
        inner
    }
    let mut record = Vec::new();
    push_len(&mut record, 5, &any_value(depth));
    let mut scope = Vec::new();
    push_len(&mut scope, 2, &record);
    let mut resource = Vec::new();
    push_len(&mut resource, 2, &scope);
    let mut request = Vec::new();
    push_len(&mut request, 1, &resource);
    request
}

fn push_len(out: &mut Vec<u8>, number: u8, content: &[u8]) {
    out.push(number << 3 | 2);
    let mut len = content.len();
    while len >= 0x80 {
        out.push(len as u8 | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(content);
}

#[test]
fn deep_nesting_is_refused_before_it_costs_the_stack() {
    // Request > ResourceLogs > ScopeLogs > LogRecord > AnyValue, then three
    // levels per kvlist: 31 kvlists stay within the 100-level limit.
    assert!(filter(Signal::Log, &nested_body(31)).is_ok());
    let message = protobuf_error(filter(Signal::Log, &nested_body(40)));
    assert!(message.contains("nested deeper than 100"), "{message}");
    // Far beyond any limit: an error, not a stack overflow.
    let message = protobuf_error(filter(Signal::Log, &nested_body(5_000)));
    assert!(message.contains("nested deeper"), "{message}");
}

#[test]
fn accepted_depth_decodes_with_prost_too() {
    let payload = nested_body(31);
    assert!(
        tero_proto::otlp_collector::logs::v1::ExportLogsServiceRequest::decode(payload.as_slice())
            .is_ok()
    );
}

#[test]
fn known_fields_with_the_wrong_wire_type_are_refused() {
    // LogRecord.body (5) as a varint.
    let record = [0x28, 0x01];
    let mut scope = Vec::new();
    push_len(&mut scope, 2, &record);
    let mut resource = Vec::new();
    push_len(&mut resource, 2, &scope);
    let mut request = Vec::new();
    push_len(&mut request, 1, &resource);
    let message = protobuf_error(filter(Signal::Log, &request));
    assert!(message.contains("LogRecord"), "{message}");
    assert!(message.contains("body"), "{message}");
    assert!(
        message.contains("expected a length-delimited value"),
        "{message}"
    );
}

#[test]
fn invalid_utf8_in_a_known_string_is_refused() {
    let mut record = Vec::new();
    push_len(&mut record, 3, &[b'O', 0xff, b'K']);
    let mut scope = Vec::new();
    push_len(&mut scope, 2, &record);
    let mut resource = Vec::new();
    push_len(&mut resource, 2, &scope);
    let mut request = Vec::new();
    push_len(&mut request, 1, &resource);
    let message = protobuf_error(filter(Signal::Log, &request));
    assert!(message.contains("UTF-8"), "{message}");
    assert!(message.contains("severity_text"), "{message}");
}

#[test]
fn invalid_utf8_in_an_attribute_is_refused() {
    // A plain string attribute (the shape validation checks in one go)
    // whose value is not UTF-8.
    let mut any_value = Vec::new();
    push_len(&mut any_value, 1, &[0xc3, 0x28]);
    let mut kv = Vec::new();
    push_len(&mut kv, 1, b"user");
    push_len(&mut kv, 2, &any_value);
    let mut record = Vec::new();
    push_len(&mut record, 6, &kv);
    let mut scope = Vec::new();
    push_len(&mut scope, 2, &record);
    let mut resource = Vec::new();
    push_len(&mut resource, 2, &scope);
    let mut request = Vec::new();
    push_len(&mut request, 1, &resource);
    let message = protobuf_error(filter(Signal::Log, &request));
    assert!(message.contains("UTF-8"), "{message}");
    assert!(
        message.contains("attributes.value.string_value"),
        "{message}"
    );
}

#[test]
fn framing_errors_are_refused() {
    for (bytes, expected) in [
        (vec![0x0a, 0x05, 0x01], "truncated"),
        (vec![0xff; 11], "varint"),
        (vec![0x00, 0x01], "field number 0"),
        (vec![0x0e], "wire type 6"),
        (vec![0x0c], "end of group"),
        (vec![0xab, 0x01, 0x08, 0x01], "never closed"),
    ] {
        let message = protobuf_error(filter(Signal::Log, &bytes));
        assert!(message.contains(expected), "{bytes:?}: {message}");
    }
}

#[test]
fn unknown_groups_are_skipped_and_kept() {
    // An unknown field 21 as a group holding a varint, then the request.
    let mut payload = vec![0xab, 0x01, 0x08, 0x07, 0xac, 0x01];
    payload.extend_from_slice(&logs_request());
    let output = filter(Signal::Log, &payload).expect("a group in an unknown field is fine");
    let Output::Rewritten(bytes) = output else {
        panic!("the DEBUG record is dropped: {output:?}");
    };
    assert!(bytes.starts_with(&[0xab, 0x01, 0x08, 0x07, 0xac, 0x01]));
}

#[test]
fn an_empty_request_is_unchanged() {
    for signal in [Signal::Log, Signal::Trace, Signal::Metric] {
        assert_eq!(filter(signal, &[]).unwrap(), Output::Unchanged);
    }
}

#[test]
fn an_engine_without_policies_changes_nothing() {
    let engine = Engine::compile(&[], &StatsRegistry::new());
    let payload = logs_request();
    let filtered = tero_otlp::filter(&engine, Format::OtlpProtobuf, Signal::Log, &payload).unwrap();
    assert_eq!(filtered.output, Output::Unchanged);
    assert_eq!(filtered.counts.records_in, 3);
    assert_eq!(filtered.counts.records_dropped, 0);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Corrupted requests (bytes changed, inserted, removed) never panic;
    /// when accepted, the output decodes.
    #[test]
    fn corrupted_requests_never_panic(
        signal in prop_oneof![Just(Signal::Log), Just(Signal::Trace), Just(Signal::Metric)],
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut payload = match signal {
            Signal::Log => logs_request(),
            Signal::Trace => traces_request(),
            Signal::Metric => metrics_request(),
        };
        for (at, byte, how) in edits {
            let i = at.index(payload.len().max(1));
            match how {
                0 if i < payload.len() => payload[i] = byte,
                1 => payload.insert(i.min(payload.len()), byte),
                _ if i < payload.len() => {
                    payload.remove(i);
                }
                _ => {}
            }
        }
        let _ = filter(signal, &payload);
    }

    /// Arbitrary bytes never panic either.
    #[test]
    fn arbitrary_bytes_never_panic(
        signal in prop_oneof![Just(Signal::Log), Just(Signal::Trace), Just(Signal::Metric)],
        payload in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let _ = filter(signal, &payload);
    }
}

//! Proto3 JSON (policy-format.md §2.2, §8.2) and binary protobuf round trips of the
//! generated `tero.policy.v1` types.

use prost::Message;
use serde_json::{Value, json};
use tero_proto::otel;
use tero_proto::policy::{
    self as pb, log_matcher, metric_matcher, numeric_value, policy::Target, trace_matcher, value,
};

fn attr_path(segments: &[&str]) -> pb::AttributePath {
    pb::AttributePath {
        path: segments.iter().map(|s| s.to_string()).collect(),
    }
}

fn metric_policy() -> pb::Policy {
    use metric_matcher::{Field as F, Match as M};
    pb::Policy {
        id: "metric-1".into(),
        name: "Drop go metrics".into(),
        description: "d".into(),
        enabled: true,
        created_at_unix_nano: 1_700_000_000_000_000_001,
        modified_at_unix_nano: 0,
        labels: vec![otel::KeyValue {
            key: "team".into(),
            value: Some(otel::AnyValue {
                value: Some(otel::any_value::Value::StringValue("obs".into())),
            }),
        }],
        extensions: vec![],
        target: Some(Target::Metric(pb::MetricTarget {
            r#match: vec![
                pb::MetricMatcher {
                    field: Some(F::MetricField(pb::MetricField::Name as i32)),
                    r#match: Some(M::StartsWith("go_".into())),
                    negate: false,
                    case_insensitive: false,
                },
                pb::MetricMatcher {
                    field: Some(F::DatapointAttribute(attr_path(&["route"]))),
                    r#match: Some(M::Regex("^/healthz$".into())),
                    negate: true,
                    case_insensitive: true,
                },
                pb::MetricMatcher {
                    field: Some(F::MetricType(pb::MetricType::Gauge as i32)),
                    r#match: Some(M::Exists(true)),
                    negate: false,
                    case_insensitive: false,
                },
                pb::MetricMatcher {
                    field: Some(F::AggregationTemporality(
                        pb::AggregationTemporality::Cumulative as i32,
                    )),
                    r#match: Some(M::Exists(false)),
                    negate: false,
                    case_insensitive: false,
                },
                pb::MetricMatcher {
                    field: Some(F::ResourceAttribute(attr_path(&["k8s", "namespace"]))),
                    r#match: Some(M::Gte(pb::NumericValue {
                        value: Some(numeric_value::Value::IntValue(1_700_000_000_000_000_001)),
                    })),
                    negate: false,
                    case_insensitive: false,
                },
            ],
            keep: false,
        })),
    }
}

fn log_policy() -> pb::Policy {
    use log_matcher::{Field as F, Match as M};
    let matcher = |field, m| pb::LogMatcher {
        field: Some(field),
        r#match: Some(m),
        negate: false,
        case_insensitive: false,
    };
    pb::Policy {
        id: "log-1".into(),
        name: "Sample logs".into(),
        enabled: true,
        target: Some(Target::Log(pb::LogTarget {
            r#match: vec![
                matcher(
                    F::LogField(pb::LogField::SeverityText as i32),
                    M::Equals(pb::Value {
                        value: Some(value::Value::StringValue("INFO".into())),
                    }),
                ),
                matcher(
                    F::LogAttribute(attr_path(&["http", "status"])),
                    M::Equals(pb::Value {
                        value: Some(value::Value::IntValue(-200)),
                    }),
                ),
                matcher(
                    F::LogField(pb::LogField::TraceId as i32),
                    M::Equals(pb::Value {
                        value: Some(value::Value::BytesValue(vec![0xde, 0xad, 0xbe, 0xef])),
                    }),
                ),
                matcher(
                    F::LogField(pb::LogField::SpanId as i32),
                    M::Equals(pb::Value {
                        value: Some(value::Value::HexValue("00f067aa0ba902b7".into())),
                    }),
                ),
                matcher(
                    F::ScopeAttribute(attr_path(&["ratio"])),
                    M::Lt(pb::NumericValue {
                        value: Some(numeric_value::Value::DoubleValue(0.25)),
                    }),
                ),
            ],
            keep: "5%".into(),
            transform: Some(pb::LogTransform {
                remove: vec![pb::LogRemove {
                    field: Some(pb::log_remove::Field::LogAttribute(attr_path(&["secret"]))),
                }],
                redact: vec![pb::LogRedact {
                    field: Some(pb::log_redact::Field::LogField(pb::LogField::Body as i32)),
                    replacement: "[REDACTED]".into(),
                    regex: Some("\\d{4}".into()),
                }],
                rename: vec![pb::LogRename {
                    from: Some(pb::log_rename::From::FromLogAttribute(attr_path(&["a"]))),
                    to: "b".into(),
                    upsert: true,
                }],
                add: vec![pb::LogAdd {
                    field: Some(pb::log_add::Field::ResourceAttribute(attr_path(&["tag"]))),
                    value: "v".into(),
                    upsert: false,
                }],
            }),
            sample_key: Some(pb::LogSampleKey {
                field: Some(pb::log_sample_key::Field::LogField(
                    pb::LogField::TraceId as i32,
                )),
            }),
        })),
        ..Default::default()
    }
}

fn trace_policy() -> pb::Policy {
    use trace_matcher::{Field as F, Match as M};
    let matcher = |field, m| pb::TraceMatcher {
        field: Some(field),
        r#match: Some(m),
        negate: false,
        case_insensitive: false,
    };
    pb::Policy {
        id: "trace-1".into(),
        name: "Sample traces".into(),
        enabled: true,
        extensions: vec![pb::Extension {
            r#type: "com.usetero/s3-dump".into(),
            version: "1.0.0".into(),
            config: b"{\"bucket\":\"b\"}".to_vec(),
            mode: pb::ExtensionMode::Dropped as i32,
        }],
        target: Some(Target::Trace(pb::TraceTarget {
            r#match: vec![
                matcher(F::SpanKind(pb::SpanKind::Server as i32), M::Exists(true)),
                matcher(
                    F::SpanStatus(pb::SpanStatusCode::Error as i32),
                    M::Exists(true),
                ),
                matcher(
                    F::TraceField(pb::TraceField::Name as i32),
                    M::Contains("GET".into()),
                ),
                matcher(F::EventName("exception".into()), M::Exists(true)),
                matcher(
                    F::LinkTraceId("0af7651916cd43dd8448eb211c80319c".into()),
                    M::Exists(true),
                ),
            ],
            keep: Some(pb::TraceSamplingConfig {
                percentage: 12.5,
                mode: Some(pb::SamplingMode::Proportional as i32),
                sampling_precision: Some(6),
                hash_seed: Some(7),
                fail_closed: Some(false),
            }),
        })),
        ..Default::default()
    }
}

fn sync_response() -> pb::SyncResponse {
    pb::SyncResponse {
        policies: vec![metric_policy(), log_policy(), trace_policy()],
        hash: "abc123".into(),
        sync_timestamp_unix_nano: 1_700_000_000_000_000_123,
        recommended_sync_interval_seconds: 30,
        sync_type: pb::SyncType::Full as i32,
        error_message: String::new(),
        extension_configs: vec![pb::ExtensionConfig {
            r#type: "com.usetero/s3-dump".into(),
            config: vec![b"dest".to_vec()],
        }],
    }
}

fn sync_request() -> pb::SyncRequest {
    pb::SyncRequest {
        client_metadata: Some(pb::ClientMetadata {
            supported_policy_stages: vec![
                pb::PolicyStage::MetricFilter as i32,
                pb::PolicyStage::LogFilter as i32,
            ],
            labels: vec![],
            resource_attributes: vec![otel::KeyValue {
                key: "service.name".into(),
                value: Some(otel::AnyValue {
                    value: Some(otel::any_value::Value::StringValue("edge".into())),
                }),
            }],
            supported_extensions: vec![],
        }),
        full_sync: true,
        last_sync_timestamp_unix_nano: 18_446_744_073_709_551_615,
        last_successful_hash: "abc123".into(),
        policy_statuses: vec![pb::PolicySyncStatus {
            id: "log-1".into(),
            match_hits: 3,
            match_misses: 9_007_199_254_740_993,
            errors: vec!["log: match[0]: attribute has empty path".into()],
            remove: Some(pb::TransformStageStatus { hits: 1, misses: 2 }),
            redact: None,
            rename: None,
            add: None,
            tero_records_dropped: 0,
            tero_bytes_dropped: 0,
            tero_scrapes: 0,
        }],
        volume: Some(pb::VolumeStats {
            log_records: 12,
            log_bytes: 9_007_199_254_740_993,
            metric_data_points: 4,
            ..Default::default()
        }),
    }
}

/// Every object key in `v`, recursively.
fn keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, inner) in map {
                out.push(k.clone());
                keys(inner, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| keys(i, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// output

#[test]
fn sync_response_serialises_as_proto3_json() {
    let v = serde_json::to_value(sync_response()).unwrap();

    assert_eq!(v["hash"], json!("abc123"));
    assert_eq!(v["syncTimestampUnixNano"], json!("1700000000000000123"));
    assert_eq!(v["recommendedSyncIntervalSeconds"], json!(30));
    assert_eq!(v["syncType"], json!(1));
    assert_eq!(v["errorMessage"], json!(""));
    assert_eq!(
        v["extensionConfigs"],
        json!([{"type": "com.usetero/s3-dump", "config": ["ZGVzdA=="]}])
    );

    let mut all_keys = Vec::new();
    keys(&v, &mut all_keys);
    let snake: Vec<&String> = all_keys.iter().filter(|k| k.contains('_')).collect();
    assert!(snake.is_empty(), "non-camelCase keys: {snake:?}");

    let policies = v["policies"].as_array().unwrap();
    assert_eq!(policies.len(), 3);
    for p in policies {
        assert_eq!(p["enabled"], json!(true), "{p}");
    }
}

#[test]
fn metric_policy_json_shape() {
    let v = serde_json::to_value(metric_policy()).unwrap();
    assert_eq!(v["createdAtUnixNano"], json!("1700000000000000001"));
    assert_eq!(v["modifiedAtUnixNano"], json!("0"));
    assert_eq!(
        v["labels"],
        json!([{"key": "team", "value": {"stringValue": "obs"}}])
    );
    let m = &v["metric"];
    assert_eq!(m["keep"], json!(false));
    assert_eq!(
        m["match"],
        json!([
            {"metricField": 1, "startsWith": "go_", "negate": false, "caseInsensitive": false},
            {"datapointAttribute": {"path": ["route"]}, "regex": "^/healthz$",
             "negate": true, "caseInsensitive": true},
            {"metricType": 1, "exists": true, "negate": false, "caseInsensitive": false},
            {"aggregationTemporality": 2, "exists": false, "negate": false, "caseInsensitive": false},
            {"resourceAttribute": {"path": ["k8s", "namespace"]},
             "gte": {"intValue": "1700000000000000001"}, "negate": false, "caseInsensitive": false}
        ])
    );
}

#[test]
fn log_policy_json_shape() {
    let v = serde_json::to_value(log_policy()).unwrap();
    let l = &v["log"];
    assert_eq!(l["keep"], json!("5%"));
    assert_eq!(l["sampleKey"], json!({"logField": 3}));
    let m = &l["match"];
    assert_eq!(m[0]["logField"], json!(2));
    assert_eq!(m[0]["equals"], json!({"stringValue": "INFO"}));
    assert_eq!(m[1]["logAttribute"], json!({"path": ["http", "status"]}));
    assert_eq!(m[1]["equals"], json!({"intValue": "-200"}));
    assert_eq!(m[2]["equals"], json!({"bytesValue": "3q2+7w=="}));
    assert_eq!(m[3]["equals"], json!({"hexValue": "00f067aa0ba902b7"}));
    assert_eq!(m[4]["lt"], json!({"doubleValue": 0.25}));
    assert_eq!(
        l["transform"],
        json!({
            "remove": [{"logAttribute": {"path": ["secret"]}}],
            "redact": [{"logField": 1, "replacement": "[REDACTED]", "regex": "\\d{4}"}],
            "rename": [{"fromLogAttribute": {"path": ["a"]}, "to": "b", "upsert": true}],
            "add": [{"resourceAttribute": {"path": ["tag"]}, "value": "v", "upsert": false}]
        })
    );
}

#[test]
fn trace_policy_json_shape() {
    let v = serde_json::to_value(trace_policy()).unwrap();
    assert_eq!(
        v["extensions"],
        json!([{"type": "com.usetero/s3-dump", "version": "1.0.0",
                "config": "eyJidWNrZXQiOiJiIn0=", "mode": 2}])
    );
    let t = &v["trace"];
    assert_eq!(
        t["keep"],
        json!({"percentage": 12.5, "mode": 2, "samplingPrecision": 6, "hashSeed": 7,
               "failClosed": false})
    );
    let m = &t["match"];
    assert_eq!(m[0]["spanKind"], json!(2));
    assert_eq!(m[1]["spanStatus"], json!(2));
    assert_eq!(m[2]["traceField"], json!(1));
    assert_eq!(m[3]["eventName"], json!("exception"));
    assert_eq!(
        m[4]["linkTraceId"],
        json!("0af7651916cd43dd8448eb211c80319c")
    );
}

#[test]
fn sync_request_serialises_int64_counters_as_strings() {
    let v = serde_json::to_value(sync_request()).unwrap();
    assert_eq!(v["fullSync"], json!(true));
    assert_eq!(
        v["lastSyncTimestampUnixNano"],
        json!("18446744073709551615")
    );
    assert_eq!(v["lastSuccessfulHash"], json!("abc123"));
    assert_eq!(v["clientMetadata"]["supportedPolicyStages"], json!([3, 1]));
    let status = &v["policyStatuses"][0];
    assert_eq!(status["id"], json!("log-1"));
    assert_eq!(status["matchHits"], json!("3"));
    assert_eq!(status["matchMisses"], json!("9007199254740993"));
    assert_eq!(
        status["errors"],
        json!(["log: match[0]: attribute has empty path"])
    );
    assert_eq!(status["remove"], json!({"hits": "1", "misses": "2"}));

    let mut all_keys = Vec::new();
    keys(&v, &mut all_keys);
    assert!(all_keys.iter().all(|k| !k.contains('_')), "{all_keys:?}");
}

#[test]
fn disabled_policy_still_carries_enabled_false() {
    let mut p = metric_policy();
    p.enabled = false;
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["enabled"], json!(false));
}

// ---------------------------------------------------------------------------
// input

#[test]
fn parses_snake_case_names_enum_names_and_int64_numbers() {
    let text = r#"{
      "policies": [{
        "id": "metric-1", "name": "Drop go metrics", "description": "d", "enabled": true,
        "created_at_unix_nano": 1700000000000000001,
        "modified_at_unix_nano": "0",
        "labels": [{"key": "team", "value": {"string_value": "obs"}}],
        "metric": {"match": [
          {"metric_field": "METRIC_FIELD_NAME", "starts_with": "go_"},
          {"datapoint_attribute": {"path": ["route"]}, "regex": "^/healthz$",
           "negate": true, "case_insensitive": true},
          {"metric_type": "METRIC_TYPE_GAUGE", "exists": true},
          {"aggregation_temporality": 2, "exists": false},
          {"resource_attribute": {"path": ["k8s", "namespace"]},
           "gte": {"int_value": 1700000000000000001}}
        ], "keep": false}
      }],
      "hash": "abc123",
      "sync_timestamp_unix_nano": 1700000000000000123,
      "recommended_sync_interval_seconds": 30,
      "sync_type": "SYNC_TYPE_FULL",
      "error_message": ""
    }"#;
    let parsed: pb::SyncResponse = serde_json::from_str(text).unwrap();
    let mut expected = sync_response();
    expected.policies.truncate(1);
    expected.extension_configs.clear();
    assert_eq!(parsed, expected);
}

#[test]
fn parses_camel_case_names_enum_numbers_and_int64_strings() {
    let text = r#"{
      "policies": [{
        "id": "trace-1", "name": "Sample traces", "enabled": true,
        "extensions": [{"type": "com.usetero/s3-dump", "version": "1.0.0",
                        "config": "eyJidWNrZXQiOiJiIn0=", "mode": "EXTENSION_MODE_DROPPED"}],
        "trace": {"match": [
          {"spanKind": 2, "exists": true},
          {"spanStatus": "SPAN_STATUS_CODE_ERROR", "exists": true},
          {"traceField": "TRACE_FIELD_NAME", "contains": "GET"},
          {"eventName": "exception", "exists": true},
          {"linkTraceId": "0af7651916cd43dd8448eb211c80319c", "exists": true}
        ], "keep": {"percentage": 12.5, "mode": "SAMPLING_MODE_PROPORTIONAL",
                    "samplingPrecision": 6, "hashSeed": 7, "failClosed": false}}
      }],
      "syncTimestampUnixNano": "1700000000000000123",
      "syncType": 1
    }"#;
    let parsed: pb::SyncResponse = serde_json::from_str(text).unwrap();
    assert_eq!(parsed.policies, vec![trace_policy()]);
    assert_eq!(parsed.sync_timestamp_unix_nano, 1_700_000_000_000_000_123);
    assert_eq!(parsed.sync_type, pb::SyncType::Full as i32);
    // Absent fields take their proto3 defaults.
    assert_eq!(parsed.hash, "");
    assert_eq!(parsed.recommended_sync_interval_seconds, 0);
}

#[test]
fn int64_fields_accept_strings_and_numbers_alike() {
    let as_strings: pb::SyncRequest = serde_json::from_str(
        r#"{"lastSyncTimestampUnixNano": "42",
            "policyStatuses": [{"id": "p", "matchHits": "3", "matchMisses": "-4",
                                "remove": {"hits": "5", "misses": "6"}}]}"#,
    )
    .unwrap();
    let as_numbers: pb::SyncRequest = serde_json::from_str(
        r#"{"last_sync_timestamp_unix_nano": 42,
            "policy_statuses": [{"id": "p", "match_hits": 3, "match_misses": -4,
                                 "remove": {"hits": 5, "misses": 6}}]}"#,
    )
    .unwrap();
    assert_eq!(as_strings, as_numbers);
    let status = &as_strings.policy_statuses[0];
    assert_eq!((status.match_hits, status.match_misses), (3, -4));
    assert_eq!(
        status.remove,
        Some(pb::TransformStageStatus { hits: 5, misses: 6 })
    );
    assert_eq!(as_strings.last_sync_timestamp_unix_nano, 42);
}

#[test]
fn enum_names_and_numbers_decode_alike() {
    let by_name: pb::MetricMatcher =
        serde_json::from_str(r#"{"metricType": "METRIC_TYPE_SUMMARY", "exists": true}"#).unwrap();
    let by_number: pb::MetricMatcher =
        serde_json::from_str(r#"{"metric_type": 5, "exists": true}"#).unwrap();
    assert_eq!(by_name, by_number);
    assert_eq!(
        by_name.field,
        Some(metric_matcher::Field::MetricType(
            pb::MetricType::Summary as i32
        ))
    );

    let stages: pb::ClientMetadata =
        serde_json::from_str(r#"{"supportedPolicyStages": ["POLICY_STAGE_METRIC_FILTER", 4]}"#)
            .unwrap();
    assert_eq!(
        stages.supported_policy_stages,
        [
            pb::PolicyStage::MetricFilter as i32,
            pb::PolicyStage::TraceSampling as i32
        ]
    );
}

#[test]
fn absent_enabled_decodes_as_false() {
    // Proto3 default: why servers must send `enabled: true` explicitly.
    let p: pb::Policy = serde_json::from_str(
        r#"{"id": "p", "name": "p", "metric": {"match": [{"metricType": 1}], "keep": false}}"#,
    )
    .unwrap();
    assert!(!p.enabled);
    // An omitted enum-selector match stays omitted on the wire.
    assert_eq!(metric_target(&p).r#match[0].r#match, None);
}

fn metric_target(p: &pb::Policy) -> &pb::MetricTarget {
    match &p.target {
        Some(Target::Metric(t)) => t,
        other => panic!("expected a metric target, got {other:?}"),
    }
}

#[test]
fn empty_attribute_path_decodes_rather_than_failing() {
    // `{}` and `{"path": []}` are compile errors for the validator, not
    // decode failures.
    for path in ["{}", r#"{"path": []}"#] {
        let m: pb::LogMatcher =
            serde_json::from_str(&format!(r#"{{"logAttribute": {path}, "exists": true}}"#))
                .unwrap();
        assert_eq!(
            m.field,
            Some(log_matcher::Field::LogAttribute(pb::AttributePath {
                path: vec![]
            }))
        );
    }
}

#[test]
fn unknown_fields_are_ignored() {
    let parsed: pb::SyncResponse = serde_json::from_str(
        r#"{"hash": "h", "futureField": {"x": 1}, "policies": [{"id": "p", "shiny": true}]}"#,
    )
    .unwrap();
    assert_eq!(parsed.hash, "h");
    assert_eq!(parsed.policies[0].id, "p");
}

#[test]
fn malformed_values_fail_to_decode() {
    for text in [
        r#"{"syncType": "SYNC_TYPE_BOGUS"}"#,
        r#"{"syncTimestampUnixNano": "12abc"}"#,
        r#"{"syncTimestampUnixNano": -1}"#,
        r#"{"policies": {}}"#,
    ] {
        assert!(
            serde_json::from_str::<pb::SyncResponse>(text).is_err(),
            "{text} should not decode"
        );
    }
}

// ---------------------------------------------------------------------------
// round trips

#[test]
fn json_round_trip_is_stable() {
    let original = sync_response();
    let first = serde_json::to_string(&original).unwrap();
    let parsed: pb::SyncResponse = serde_json::from_str(&first).unwrap();
    assert_eq!(parsed, original);
    let second = serde_json::to_string(&parsed).unwrap();
    assert_eq!(first, second);

    let request = sync_request();
    let text = serde_json::to_string(&request).unwrap();
    let back: pb::SyncRequest = serde_json::from_str(&text).unwrap();
    assert_eq!(back, request);
    assert_eq!(serde_json::to_string(&back).unwrap(), text);
}

#[test]
fn json_round_trip_of_extreme_values() {
    let mut response = sync_response();
    response.sync_timestamp_unix_nano = u64::MAX;
    if let Some(Target::Metric(m)) = response.policies[0].target.as_mut() {
        m.r#match[4].r#match = Some(metric_matcher::Match::Lte(pb::NumericValue {
            value: Some(numeric_value::Value::IntValue(i64::MIN)),
        }));
    }
    let text = serde_json::to_string(&response).unwrap();
    assert!(text.contains("\"18446744073709551615\""), "{text}");
    assert!(text.contains("\"-9223372036854775808\""), "{text}");
    let back: pb::SyncResponse = serde_json::from_str(&text).unwrap();
    assert_eq!(back, response);
}

#[test]
fn binary_round_trip() {
    let response = sync_response();
    let bytes = response.encode_to_vec();
    let decoded = pb::SyncResponse::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded, response);
    // Deterministic: the same message encodes to the same bytes (hashing
    // relies on it), and JSON-decoded copies encode identically.
    assert_eq!(decoded.encode_to_vec(), bytes);
    let via_json: pb::SyncResponse =
        serde_json::from_str(&serde_json::to_string(&response).unwrap()).unwrap();
    assert_eq!(via_json.encode_to_vec(), bytes);

    let request = sync_request();
    let decoded = pb::SyncRequest::decode(request.encode_to_vec().as_slice()).unwrap();
    assert_eq!(decoded, request);
}

#[test]
fn binary_absent_fields_decode_to_proto3_defaults() {
    let mut p = metric_policy();
    p.enabled = false;
    let decoded = pb::Policy::decode(p.encode_to_vec().as_slice()).unwrap();
    assert!(!decoded.enabled);
    let empty = pb::Policy::decode(&[][..]).unwrap();
    assert!(!empty.enabled);
    assert_eq!(empty.target, None);
}

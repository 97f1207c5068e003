//! The OTLP JSON codec's promises beyond policy semantics: what it does not
//! touch stays byte for byte, what it counts, and that no payload panics it.

mod common;

use common::{engine, stats};
use serde_json::{Value, json};
use tero_otlp::json::{filter, filter_document};
use tero_otlp::{Counts, DecodeError, Output, Signal};

fn rewritten(output: Output) -> String {
    match output {
        Output::Rewritten(bytes) => String::from_utf8(bytes).expect("UTF-8 output"),
        other => panic!("expected a rewritten payload, got {other:?}"),
    }
}

const DROP_DEBUG: &str = "
id: drop-debug
name: drop debug
log:
  match:
    - log_field: severity_text
      exact: DEBUG
  keep: none
";

/// Two kept records laid out unusually (whitespace, member order, unknown
/// members) around a dropped one, inside an envelope with unknown members.
const LOGS: &str = r#"{ "x-first": {"keep": [1, 2.50, "me"]},
  "resourceLogs": [ {
    "x-resource-extra": true,
    "resource": { "attributes": [ {"key":"service.name","value":{"stringValue":"cart"}} ], "droppedAttributesCount": 0 },
    "scopeLogs": [ { "scope": {"name": "app"}, "logRecords": [
      {  "x-unknown" : [ 1 , 2 ],   "body" : {"stringValue":"kept one"}, "severityText":"INFO" },
      {"severityText":"DEBUG","body":{"stringValue":"dropped"}},
      {"timeUnixNano":"1700000000000000000","severityText":"WARN","body":{"stringValue":"kept two"},"zz":null}
    ], "schemaUrl": "https://example.com/scope" } ]
  } ],
  "x-last": 1e2 }"#;

const KEPT_ONE: &str =
    r#"{  "x-unknown" : [ 1 , 2 ],   "body" : {"stringValue":"kept one"}, "severityText":"INFO" }"#;
const KEPT_TWO: &str = r#"{"timeUnixNano":"1700000000000000000","severityText":"WARN","body":{"stringValue":"kept two"},"zz":null}"#;
const DROPPED: &str = r#"{"severityText":"DEBUG","body":{"stringValue":"dropped"}}"#;

#[test]
fn kept_records_and_unknown_members_are_copied_byte_for_byte() {
    let engine = engine(DROP_DEBUG);
    let filtered = filter(&engine, Signal::Log, LOGS.as_bytes()).expect("valid OTLP JSON");
    let out = rewritten(filtered.output);
    assert!(out.contains(KEPT_ONE), "{out}");
    assert!(out.contains(KEPT_TWO), "{out}");
    assert!(!out.contains(r#""stringValue":"dropped""#), "{out}");
    for verbatim in [
        r#"{"keep": [1, 2.50, "me"]}"#,
        r#"{ "attributes": [ {"key":"service.name","value":{"stringValue":"cart"}} ], "droppedAttributesCount": 0 }"#,
        r#""https://example.com/scope""#,
        "1e2",
    ] {
        assert!(out.contains(verbatim), "{verbatim} missing from {out}");
    }
    // Members keep their order, unknown ones included.
    let order = [
        "x-first",
        "resourceLogs",
        "x-resource-extra",
        "resource",
        "scopeLogs",
        "scope",
        "logRecords",
        "schemaUrl",
        "x-last",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|key| {
            out.find(&format!("\"{key}\""))
                .unwrap_or_else(|| panic!("{key} missing"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{out}");
    assert_eq!(
        filtered.counts,
        Counts {
            records_in: 3,
            records_dropped: 1,
            protobuf_bytes_in: 0
        }
    );
}

#[test]
fn drops_are_counted_with_the_records_json_length() {
    let engine = engine(DROP_DEBUG);
    filter(&engine, Signal::Log, LOGS.as_bytes()).expect("valid OTLP JSON");
    let st = stats(&engine, "drop-debug");
    assert_eq!(
        (
            st.match_hits,
            st.records_dropped,
            st.bytes_dropped,
            st.scrapes
        ),
        (1, 1, DROPPED.len() as u64, 1),
        "one hit, one record of {} bytes, one batch",
        DROPPED.len()
    );
}

#[test]
fn a_payload_nothing_happens_to_is_unchanged() {
    let engine = engine(
        "id: keep-warn\nname: k\nlog:\n  match:\n    - log_field: severity_text\n      exact: WARN\n  keep: all\n",
    );
    let filtered = filter(&engine, Signal::Log, LOGS.as_bytes()).expect("valid OTLP JSON");
    assert_eq!(filtered.output, Output::Unchanged);
    assert_eq!(filtered.counts.records_in, 3);
    assert_eq!(stats(&engine, "keep-warn").match_hits, 1);
}

#[test]
fn dropping_every_record_prunes_scopes_and_resources() {
    let engine = engine(
        "id: all\nname: all\nlog:\n  match:\n    - log_field: body\n      exists: true\n  keep: none\n",
    );
    let filtered = filter(&engine, Signal::Log, LOGS.as_bytes()).expect("valid OTLP JSON");
    assert_eq!(filtered.output, Output::AllDropped);
    let document = filter_document(&engine, Signal::Log, LOGS.as_bytes()).expect("valid");
    assert!(document.all_dropped);
    let out: Value = serde_json::from_slice(&document.rewritten.expect("rewritten")).expect("JSON");
    assert_eq!(
        out,
        json!({"x-first": {"keep": [1, 2.5, "me"]}, "resourceLogs": [], "x-last": 100.0})
    );
}

#[test]
fn a_scope_keeps_its_place_while_it_has_records() {
    let engine = engine(DROP_DEBUG);
    let input = r#"{"resourceLogs":[
        {"resource":{},"scopeLogs":[{"scope":{"name":"a"},"logRecords":[{"severityText":"DEBUG"}]},{"scope":{"name":"b"},"logRecords":[{"severityText":"INFO"}]},{"scope":{"name":"empty"},"logRecords":[]}]},
        {"resource":{"attributes":[]},"scopeLogs":[{"logRecords":[{"severityText":"DEBUG"}]}]},
        {"resource":{"attributes":[]}}]}"#;
    let out: Value = serde_json::from_str(&rewritten(
        filter(&engine, Signal::Log, input.as_bytes())
            .expect("valid")
            .output,
    ))
    .expect("JSON");
    assert_eq!(
        out,
        json!({"resourceLogs": [
            {"resource": {}, "scopeLogs": [{"scope": {"name": "b"}, "logRecords": [{"severityText": "INFO"}]}, {"scope": {"name": "empty"}, "logRecords": []}]},
            {"resource": {"attributes": []}}
        ]}),
        "the emptied scope and resource go; an entry that was empty stays"
    );
}

#[test]
fn escaped_strings_are_matched_as_the_text_they_spell() {
    let engine = engine(
        r#"
id: drop-root
name: drop root
log:
  match:
    - log_attribute: user
      exact: 'admin "root" é'
  keep: none
"#,
    );
    let input = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
        {"attributes":[{"key":"us\u0065r","value":{"stringValue":"admin \"root\" \u00e9"}}]},
        {"attributes":[{"key":"user","value":{"stringValue":"admin root"}}]}]}]}]}"#;
    let out = rewritten(
        filter(&engine, Signal::Log, input.as_bytes())
            .expect("valid")
            .output,
    );
    assert!(!out.contains(r#"\"root\""#), "{out}");
    assert!(out.contains(r#""admin root""#), "{out}");
}

#[test]
fn a_transform_rewrites_only_the_record_it_changes() {
    let engine = engine(
        r#"
id: redact-tokens
name: redact tokens
log:
  match:
    - log_field: body
      contains: token
  keep: all
  transform:
    redact:
      - log_field: body
        regex: 'token=\w+'
        replacement: 'token=***'
    remove:
      - log_attribute: secret
"#,
    );
    let untouched = r#"{"body": {"stringValue": "no secrets here"}, "attributes": [{"key":"secret","value":{"stringValue":"s"}}]}"#;
    let input = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{untouched},
        {{"body":{{"stringValue":"login token=abc123 \"ok\""}},"attributes":[{{"key":"secret","value":{{"stringValue":"s"}}}},{{"key":"kept","value":{{"intValue":"1"}}}}],"x-unknown":{{"b":1,"a":2}}}}]}}]}}]}}"#
    );
    let out = rewritten(
        filter(&engine, Signal::Log, input.as_bytes())
            .expect("valid")
            .output,
    );
    assert!(
        out.contains(untouched),
        "an untouched record stays as it was: {out}"
    );
    let doc: Value = serde_json::from_str(&out).expect("JSON");
    let changed = &doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][1];
    assert_eq!(
        changed,
        &json!({
            "body": {"stringValue": "login token=*** \"ok\""},
            "attributes": [{"key": "kept", "value": {"intValue": "1"}}],
            "x-unknown": {"a": 2, "b": 1}
        })
    );
    let st = stats(&engine, "redact-tokens");
    assert_eq!((st.redact_hits, st.remove_hits), (1, 1));
}

#[test]
fn resource_changes_carry_over_to_the_records_after() {
    let engine = engine(
        r#"
id: a-tag
name: tag the resource once
log:
  match:
    - log_field: body
      exists: true
  keep: all
  transform:
    add:
      - resource_attribute: tagged
        value: "yes"
        upsert: false
---
id: b-drop-tagged-later
name: drop records whose resource is tagged, and whose body is late
log:
  match:
    - resource_attribute: tagged
      exact: "yes"
    - log_field: body
      exact: late
  keep: none
"#,
    );
    let input = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}]},
        "scopeLogs":[{"logRecords":[{"body":{"stringValue":"early"}},{"body":{"stringValue":"late"}}]}]},
        {"resource":{"attributes":[]},"scopeLogs":[{"logRecords":[{"body":{"stringValue":"other"}}]}]}]}"#;
    let filtered = filter(&engine, Signal::Log, input.as_bytes()).expect("valid");
    let doc: Value = serde_json::from_str(&rewritten(filtered.output)).expect("JSON");
    assert_eq!(
        doc,
        json!({"resourceLogs": [
            {"resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "cart"}},
                {"key": "tagged", "value": {"stringValue": "yes"}}]},
             "scopeLogs": [{"logRecords": [{"body": {"stringValue": "early"}}]}]},
            {"resource": {"attributes": [{"key": "tagged", "value": {"stringValue": "yes"}}]},
             "scopeLogs": [{"logRecords": [{"body": {"stringValue": "other"}}]}]}
        ]}),
        "the second record saw the tag the first added; each resource is tagged once"
    );
    assert_eq!(stats(&engine, "a-tag").add_hits, 2);
    assert_eq!(
        stats(&engine, "a-tag").add_misses,
        0,
        "the dropped record runs no transform"
    );
    assert_eq!(filtered.counts.records_dropped, 1);
}

#[test]
fn shadow_policies_count_would_drops_and_drop_nothing() {
    let engine = engine(
        "id: shadow-debug\nname: s\nlabels: {tero.mode: shadow}\nlog:\n  match:\n    - log_field: severity_text\n      exact: DEBUG\n  keep: none\n",
    );
    let filtered = filter(&engine, Signal::Log, LOGS.as_bytes()).expect("valid");
    assert_eq!(filtered.output, Output::Unchanged);
    assert_eq!(filtered.counts.records_dropped, 0);
    let st = stats(&engine, "shadow-debug");
    assert_eq!(
        (st.match_hits, st.records_dropped, st.bytes_dropped),
        (1, 1, DROPPED.len() as u64)
    );
}

#[test]
fn a_dropped_metric_drops_and_counts_all_its_points() {
    let engine = engine(
        "id: drop-go\nname: g\nmetric:\n  match:\n    - metric_field: name\n      starts_with: go_\n  keep: false\n",
    );
    let dropped = r#"{"name":"go_goroutines","gauge":{"dataPoints":[{"asInt":"1"},{"asInt":"2"},{"asInt":"3"}]}}"#;
    let kept = r#"{"name":"http_requests","sum":{"aggregationTemporality":1,"dataPoints":[{"asInt":"9"}, {"asInt":"10"}]}}"#;
    let input = format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{dropped},{kept},{{"name":"no_points"}}]}}]}}]}}"#
    );
    let filtered = filter(&engine, Signal::Metric, input.as_bytes()).expect("valid");
    assert_eq!(
        (filtered.counts.records_in, filtered.counts.records_dropped),
        (5, 3),
        "records are data points"
    );
    let out = rewritten(filtered.output);
    assert!(
        out.contains(kept) && !out.contains("go_goroutines"),
        "{out}"
    );
    let st = stats(&engine, "drop-go");
    assert_eq!(
        (st.records_dropped, st.bytes_dropped),
        (3, dropped.len() as u64)
    );
}

#[test]
fn a_metrics_type_and_temporality_come_from_its_data_member() {
    let engine = engine(
        r#"
id: drop-cumulative
name: c
metric:
  match:
    - aggregation_temporality: cumulative
  keep: false
---
id: drop-summaries
name: s
metric:
  match:
    - metric_type: summary
  keep: false
"#,
    );
    let metrics = [
        // Dropped: cumulative by name, by number, and as a numeric string.
        (
            r#"{"name":"a","sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","dataPoints":[{},{}]}}"#,
            false,
        ),
        (
            r#"{"histogram":{"dataPoints":[{}],"aggregationTemporality":2},"name":"b"}"#,
            false,
        ),
        (
            r#"{"name":"c","exponentialHistogram":{"aggregationTemporality":"2"}}"#,
            false,
        ),
        // A summary, even one whose data is not an object.
        (r#"{"name":"d","summary":5}"#, false),
        // Kept: delta; a gauge has no temporality; gauge is looked for before sum.
        (
            r#"{"name":"e","sum":{"aggregationTemporality":1,"dataPoints":{"not":"an array"}}}"#,
            true,
        ),
        (
            r#"{"name":"f","gauge":{"aggregationTemporality":2,"dataPoints":[{}]}}"#,
            true,
        ),
        (
            r#"{"name":"g","sum":{"aggregationTemporality":2},"gauge":{"dataPoints":[{},{},{}]}}"#,
            true,
        ),
        // Of a repeated data member, the last counts.
        (
            r#"{"name":"h","sum":{"aggregationTemporality":2},"sum":{"aggregationTemporality":1,"dataPoints":[{}]}}"#,
            true,
        ),
    ];
    let list: Vec<&str> = metrics.iter().map(|(m, _)| *m).collect();
    let input = format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{}]}}]}}]}}"#,
        list.join(",")
    );
    let filtered = filter(&engine, Signal::Metric, input.as_bytes()).expect("valid");
    assert_eq!(
        (filtered.counts.records_in, filtered.counts.records_dropped),
        // a 2 + b 1 + e 0 (not an array) + f 1 + g 3 (gauge) + h 1.
        (8, 3),
        "points counted in the deciding data member"
    );
    let out = rewritten(filtered.output);
    for (metric, kept) in metrics {
        assert_eq!(out.contains(metric), kept, "{metric} in {out}");
    }
}

#[test]
fn a_sampled_span_carries_the_threshold_and_nothing_else_changes() {
    let engine = engine(
        "id: all-spans\nname: t\ntrace:\n  match:\n    - trace_field: name\n      exists: true\n  keep:\n    percentage: 100\n",
    );
    let already =
        r#"{"name":"b","traceId":"0af7651916cd43dd8448eb211c80319c","traceState":"ot=th:0"}"#;
    let input = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"name":"a","traceId":"0af7651916cd43dd8448eb211c80319c","kind":2,"x":[1]}},{already}]}}]}}]}}"#
    );
    let out = rewritten(
        filter(&engine, Signal::Trace, input.as_bytes())
            .expect("valid")
            .output,
    );
    assert!(
        out.contains(already),
        "a span whose tracestate is already right is copied: {out}"
    );
    let doc: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0],
        json!({"name": "a", "traceId": "0af7651916cd43dd8448eb211c80319c", "kind": 2, "x": [1], "traceState": "ot=th:0"})
    );
    let only_right = format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{already}]}}]}}]}}"#);
    let filtered = filter(&engine, Signal::Trace, only_right.as_bytes()).expect("valid");
    assert_eq!(filtered.output, Output::Unchanged);
}

#[test]
fn malformed_payloads_are_errors() {
    let engine = engine(DROP_DEBUG);
    let deep = "[".repeat(100_000);
    let cases: Vec<(&[u8], &str)> = vec![
        (b"", "json"),
        (b"{", "json"),
        (b"{\"resourceLogs\":[", "json"),
        (
            b"{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"body\":}]}]}]}",
            "json",
        ),
        (b"{} trailing", "json"),
        (b"{\"a\":1,}", "json"),
        (
            b"{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[\"\xff\"]}]}]}",
            "json",
        ),
        (deep.as_bytes(), "shape"),
        (b"[]", "shape"),
        (b"5", "shape"),
        (b"\"resourceLogs\"", "shape"),
    ];
    for (payload, kind) in cases {
        let result = filter(&engine, Signal::Log, payload);
        let shown = String::from_utf8_lossy(&payload[..payload.len().min(60)]);
        match (kind, result) {
            ("json", Err(DecodeError::Json(_))) | ("shape", Err(DecodeError::Shape(_))) => {}
            (_, other) => panic!("{shown}: expected a {kind} error, got {other:?}"),
        }
    }
    let st = stats(&engine, "drop-debug");
    assert_eq!(
        (st.match_hits, st.scrapes),
        (0, 0),
        "a payload that fails counts nothing"
    );
}

#[test]
fn a_deeply_nested_record_passes_and_is_never_rebuilt() {
    // Records are skipped over without recursion, so any depth passes; a
    // record too deep to become a tree is left as it is rather than lost.
    let engine = engine(
        "id: touch\nname: t\nlog:\n  match:\n    - log_field: body\n      exists: true\n  keep: all\n  transform:\n    add:\n      - log_attribute: seen\n        value: yes\n",
    );
    let deep = format!(
        r#"{{"body":{{"stringValue":"b"}},"x":{}1{}}}"#,
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let input = format!(r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{deep}]}}]}}]}}"#);
    let filtered = filter(&engine, Signal::Log, input.as_bytes()).expect("valid JSON");
    assert_eq!(filtered.output, Output::Unchanged);
    let st = stats(&engine, "touch");
    assert_eq!((st.match_hits, st.add_hits, st.add_misses), (1, 0, 1));
}

#[test]
fn shapes_otlp_does_not_expect_pass_through() {
    let engine = engine(
        "id: all\nname: all\nlog:\n  match:\n    - log_attribute: missing\n      exists: false\n  keep: none\n",
    );
    let input = r#"{"resourceLogs":[5,"x",null,[1],{"scopeLogs":{"not":"an array"}},{"scopeLogs":[7,{"logRecords":"nope"}]},
        {"resource":5,"scopeLogs":[{"scope":[],"logRecords":[1,"s",null,[],{"body":{"stringValue":"b"}}]}]}],"resourceSpans":[1]}"#;
    let document = filter_document(&engine, Signal::Log, input.as_bytes()).expect("valid JSON");
    assert!(document.all_dropped, "every record was dropped");
    let out: Value = serde_json::from_slice(&document.rewritten.expect("rewritten")).expect("JSON");
    assert_eq!(
        out,
        json!({"resourceLogs": [5, "x", null, [1], {"scopeLogs": {"not": "an array"}}, {"scopeLogs": [7, {"logRecords": "nope"}]}],
               "resourceSpans": [1]}),
        "records of any type are evaluated (and here dropped); other shapes pass as they are"
    );
}

#[test]
fn no_truncation_or_corruption_of_a_payload_panics() {
    let engine = engine(
        r#"
id: t
name: t
log:
  match:
    - log_field: body
      contains: o
  keep: all
  transform:
    redact:
      - log_attribute: service.name
    add:
      - resource_attribute: seen
        value: "1"
"#,
    );
    let bytes = LOGS.as_bytes();
    for end in 0..bytes.len() {
        let result = filter(&engine, Signal::Log, &bytes[..end]);
        assert!(
            result.is_err(),
            "a truncated document is malformed (at {end})"
        );
    }
    for at in 0..bytes.len() {
        for replacement in [b'"', b'{', b']', b'\\', b',', 0xC3, b'0'] {
            let mut corrupted = bytes.to_vec();
            corrupted[at] = replacement;
            // Either outcome is fine; reaching the next iteration is the test.
            let _ = filter(&engine, Signal::Log, &corrupted);
        }
    }
}

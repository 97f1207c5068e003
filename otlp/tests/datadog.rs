//! Datadog logs and series through policies: the field mapping of
//! docs/datadog.md, drops, transforms, counts, and malformed bodies.

mod common;

use common::{engine, stats};
use serde_json::{Value, json};
use tero_otlp::datadog::filter;
use tero_otlp::{DecodeError, Format, Output};

fn rewritten(output: Output) -> Value {
    match output {
        Output::Rewritten(bytes) => serde_json::from_slice(&bytes).expect("JSON output"),
        other => panic!("expected a rewritten payload, got {other:?}"),
    }
}

fn rewritten_text(output: Output) -> String {
    match output {
        Output::Rewritten(bytes) => String::from_utf8(bytes).expect("UTF-8"),
        other => panic!("expected a rewritten payload, got {other:?}"),
    }
}

const DEBUG_LOG: &str = r#"{"message":"cache miss","status":"debug","service":"cart","hostname":"node-1","ddsource":"java","ddtags":"env:staging,team:core"}"#;
const ERROR_LOG: &str = r#"{ "status" : "error", "message" : "payment failed", "service":"payments","hostname":"node-2", "ddtags":"env:prod,version:1.4", "http": {"status_code": 502, "method": "POST"}, "usr": {"id": 7} }"#;
const INFO_LOG: &str = r#"{"message":"GET /healthz 200","status":"info","service":"cart","hostname":"node-1","ddtags":"env:prod,kube_probe","custom.flat":"yes"}"#;

fn logs() -> String {
    format!("[{DEBUG_LOG}, {ERROR_LOG},\n {INFO_LOG}]")
}

fn drop_where(selector: &str, operand: &str) -> tero_sdk::engine::Engine {
    engine(&format!(
        "id: d\nname: d\nlog:\n  match:\n    - {selector}\n      {operand}\n  keep: none\n"
    ))
}

/// Which of the three logs a policy dropping on `selector` removes.
fn dropped_by(selector: &str, operand: &str) -> Vec<&'static str> {
    let engine = drop_where(selector, operand);
    let filtered = filter(&engine, Format::DatadogLogs, logs().as_bytes()).expect("valid");
    let kept = match filtered.output {
        Output::Unchanged => return Vec::new(),
        Output::AllDropped => return vec!["debug", "error", "info"],
        Output::Rewritten(bytes) => String::from_utf8(bytes).expect("UTF-8"),
    };
    [
        ("debug", DEBUG_LOG),
        ("error", ERROR_LOG),
        ("info", INFO_LOG),
    ]
    .into_iter()
    .filter(|(_, log)| !kept.contains(log))
    .map(|(name, _)| name)
    .collect()
}

#[test]
fn datadog_fields_map_onto_policy_fields() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("log_field: body", "contains: payment", &["error"]),
        ("log_field: severity_text", "exact: debug", &["debug"]),
        ("log_attribute: service", "exact: cart", &["debug", "info"]),
        ("log_attribute: ddsource", "exists: true", &["debug"]),
        ("log_attribute: hostname", "exact: node-2", &["error"]),
        (
            "resource_attribute: service.name",
            "exact: payments",
            &["error"],
        ),
        (
            "resource_attribute: host.name",
            "exact: node-1",
            &["debug", "info"],
        ),
        (
            "log_attribute: [ddtags, env]",
            "exact: prod",
            &["error", "info"],
        ),
        ("log_attribute: ddtags.team", "exact: core", &["debug"]),
        ("log_attribute: ddtags", "contains: kube_probe", &["info"]),
        // A tag without a value is present but empty, which counts as missing.
        ("log_attribute: [ddtags, kube_probe]", "exists: true", &[]),
        ("log_attribute: [http, method]", "exact: POST", &["error"]),
        ("log_attribute: http.status_code", "equals: 502", &["error"]),
        ("log_attribute: usr.id", "gte: 7", &["error"]),
        ("log_attribute: http", "exists: true", &["error"]),
        ("log_attribute: custom.flat", "exact: yes", &["info"]),
        // message and status are fields, not attributes.
        ("log_attribute: message", "exists: true", &[]),
        ("log_attribute: status", "exists: true", &[]),
        ("log_field: trace_id", "exists: true", &[]),
        ("scope_attribute: service", "exists: true", &[]),
        ("resource_attribute: ddsource", "exists: true", &[]),
    ];
    for (selector, operand, want) in cases {
        assert_eq!(dropped_by(selector, operand), *want, "{selector} {operand}");
    }
}

#[test]
fn drops_remove_array_elements_and_leave_the_rest_verbatim() {
    let engine = drop_where("log_field: severity_text", "exact: debug");
    let payload = logs();
    let filtered = filter(&engine, Format::DatadogLogs, payload.as_bytes()).expect("valid");
    assert_eq!(
        (filtered.counts.records_in, filtered.counts.records_dropped),
        (3, 1)
    );
    assert_eq!(
        filtered.counts.protobuf_bytes_in, 0,
        "no OTLP bytes for Datadog"
    );
    assert_eq!(
        rewritten_text(filtered.output),
        format!("[{ERROR_LOG},{INFO_LOG}]")
    );
    let st = stats(&engine, "d");
    assert_eq!(
        (
            st.match_hits,
            st.records_dropped,
            st.bytes_dropped,
            st.scrapes
        ),
        (1, 1, DEBUG_LOG.len() as u64, 1)
    );
}

#[test]
fn a_single_object_payload_is_filtered_as_one_log() {
    let dropping = drop_where("log_field: severity_text", "exact: debug");
    let dropped = filter(&dropping, Format::DatadogLogs, DEBUG_LOG.as_bytes()).expect("valid");
    assert_eq!(dropped.output, Output::AllDropped);
    let kept = filter(&dropping, Format::DatadogLogs, INFO_LOG.as_bytes()).expect("valid");
    assert_eq!(kept.output, Output::Unchanged);
    let redacting = engine(
        "id: r\nname: r\nlog:\n  match:\n    - log_field: body\n      exists: true\n  keep: all\n  transform:\n    redact:\n      - log_field: body\n",
    );
    let changed = filter(&redacting, Format::DatadogLogs, INFO_LOG.as_bytes()).expect("valid");
    assert_eq!(
        rewritten(changed.output)["message"],
        "[REDACTED]",
        "still one object"
    );
}

#[test]
fn transforms_change_the_log_object() {
    let engine = engine(
        r#"
id: t
name: t
log:
  match:
    - log_attribute: service
      exact: payments
  keep: all
  transform:
    remove:
      - log_attribute: usr.id
      - log_attribute: [ddtags, version]
    redact:
      - log_field: body
        regex: 'payment (\w+)'
        replacement: 'payment [$1]'
      - resource_attribute: host.name
        replacement: host
    rename:
      - from_log_attribute: [http, method]
        to: verb
      - from_log_field: severity_text
        to: level
    add:
      - log_attribute: [ddtags, redacted]
        value: "true"
      - log_attribute: [meta, edge]
        value: tero
      - log_attribute: service
        value: ignored
"#,
    );
    let payload = logs();
    let filtered = filter(&engine, Format::DatadogLogs, payload.as_bytes()).expect("valid");
    let text = rewritten_text(filtered.output);
    assert!(text.starts_with(&format!("[{DEBUG_LOG},")), "{text}");
    assert!(text.ends_with(&format!(",{INFO_LOG}]")), "{text}");
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        doc[1],
        json!({
            "message": "payment [failed]",
            "level": "error",
            "service": "payments",
            "hostname": "host",
            "ddtags": "env:prod,redacted:true",
            "http": {"status_code": 502, "verb": "POST"},
            "usr": {},
            "meta": {"edge": "tero"}
        })
    );
    let st = stats(&engine, "t");
    assert_eq!(
        (
            st.remove_hits,
            st.redact_hits,
            st.rename_hits,
            st.add_hits,
            st.add_misses
        ),
        (2, 2, 2, 2, 1),
        "adding an existing key without upsert is a miss"
    );
}

#[test]
fn transforms_that_change_nothing_leave_the_log_as_it_came() {
    let engine = engine(
        "id: t\nname: t\nlog:\n  match:\n    - log_field: body\n      exists: true\n  keep: all\n  transform:\n    remove:\n      - log_attribute: absent\n      - log_attribute: [ddtags, absent]\n      - log_field: severity_text\n    add:\n      - log_attribute: service\n        value: x\n",
    );
    let payload = r#"[{"z":1,"message":"m","service":"s","ddtags":"a:b"}]"#;
    let filtered = filter(&engine, Format::DatadogLogs, payload.as_bytes()).expect("valid");
    assert_eq!(filtered.output, Output::Unchanged);
    let st = stats(&engine, "t");
    assert_eq!((st.remove_misses, st.add_misses), (3, 1));
}

#[test]
fn rename_rules_follow_the_spec() {
    let engine = engine(
        r#"
id: t
name: t
log:
  match:
    - log_field: body
      exists: true
  keep: all
  transform:
    rename:
      - from_log_attribute: service
        to: hostname
      - from_resource_attribute: host.name
        to: service.name
        upsert: true
      - from_log_attribute: [ddtags, env]
        to: environment
      - from_log_attribute: missing
        to: x
"#,
    );
    let filtered = filter(&engine, Format::DatadogLogs, DEBUG_LOG.as_bytes()).expect("valid");
    assert_eq!(
        rewritten(filtered.output),
        json!({"message": "cache miss", "status": "debug", "service": "node-1", "ddsource": "java",
               "ddtags": "environment:staging,team:core"}),
        "service -> hostname refused (taken); host.name -> service.name upserted; tag key renamed"
    );
    let st = stats(&engine, "t");
    assert_eq!((st.rename_hits, st.rename_misses), (2, 2));
}

#[test]
fn escaped_strings_match_decoded_and_tags_with_escapes_are_read() {
    let engine = drop_where("log_attribute: [ddtags, owner]", "exact: \"a\\\"b\"");
    let payload =
        r#"[{"message":"x","ddtags":"env:prod,owner:a\"b"},{"message":"y","ddtags":"owner:ab"}]"#;
    let filtered = filter(&engine, Format::DatadogLogs, payload.as_bytes()).expect("valid");
    assert_eq!(
        rewritten_text(filtered.output),
        r#"[{"message":"y","ddtags":"owner:ab"}]"#
    );
}

const SERIES: &str = r#"{"series":[
  {"metric":"system.load.1","type":0,"points":[{"timestamp":1700000000,"value":0.7}],"resources":[{"name":"node-1","type":"host"}],"tags":["env:prod"]},
  {"metric":"http.requests","type":1,"points":[{"timestamp":1700000000,"value":12},{"timestamp":1700000010,"value":3}],"tags":["env:staging","route:/healthz","canary"],"unit":"request"},
  {"metric":"queue.depth","type":3,"points":[{"timestamp":1700000000,"value":5}],"resources":[{"name":"q-1","type":"queue"}],"tags":["url:http://x:80"]},
  {"metric":"jobs.rate","type":"rate","points":[],"interval":10}
], "x-extra": {"kept": true}}"#;

/// Which series (by name) a metric policy dropping on `selector` removes.
fn series_dropped_by(selector: &str, operand: &str) -> Vec<String> {
    let engine = engine(&format!(
        "id: d\nname: d\nmetric:\n  match:\n    - {selector}\n      {operand}\n  keep: false\n"
    ));
    let filtered = filter(&engine, Format::DatadogSeries, SERIES.as_bytes()).expect("valid");
    let before: Value = serde_json::from_str(SERIES).expect("JSON");
    let after: Value = match filtered.output {
        Output::Unchanged => before.clone(),
        Output::AllDropped => json!({"series": []}),
        Output::Rewritten(bytes) => serde_json::from_slice(&bytes).expect("JSON"),
    };
    let names = |doc: &Value| -> Vec<String> {
        doc["series"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s["metric"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let kept = names(&after);
    names(&before)
        .into_iter()
        .filter(|n| !kept.contains(n))
        .collect()
}

#[test]
fn series_fields_map_onto_metric_policy_fields() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "metric_field: name",
            "starts_with: http.",
            &["http.requests"],
        ),
        ("metric_field: unit", "exact: request", &["http.requests"]),
        (
            "datapoint_attribute: env",
            "exact: prod",
            &["system.load.1"],
        ),
        (
            "datapoint_attribute: route",
            "regex: ^/healthz$",
            &["http.requests"],
        ),
        (
            "datapoint_attribute: url",
            "exact: 'http://x:80'",
            &["queue.depth"],
        ),
        // A tag without ':' has an empty value: present, but empty is missing.
        ("datapoint_attribute: canary", "exists: true", &[]),
        (
            "resource_attribute: host.name",
            "exact: node-1",
            &["system.load.1"],
        ),
        (
            "resource_attribute: host",
            "exact: node-1",
            &["system.load.1"],
        ),
        (
            "resource_attribute: queue",
            "exists: true",
            &["queue.depth"],
        ),
        ("metric_type: sum", "exists: true", &["http.requests"]),
        (
            "metric_type: gauge",
            "exists: true",
            &["queue.depth", "jobs.rate"],
        ),
        (
            "aggregation_temporality: delta",
            "exists: true",
            &["http.requests"],
        ),
        ("metric_field: description", "exists: true", &[]),
        ("scope_attribute: env", "exists: true", &[]),
    ];
    for (selector, operand, want) in cases {
        assert_eq!(
            series_dropped_by(selector, operand),
            *want,
            "{selector} {operand}"
        );
    }
}

#[test]
fn series_drops_count_points_and_keep_the_rest_verbatim() {
    let engine = engine(
        "id: d\nname: d\nmetric:\n  match:\n    - metric_field: name\n      exact: http.requests\n  keep: false\n",
    );
    let filtered = filter(&engine, Format::DatadogSeries, SERIES.as_bytes()).expect("valid");
    assert_eq!(
        (
            filtered.counts.records_in,
            filtered.counts.records_dropped,
            filtered.counts.protobuf_bytes_in
        ),
        (4, 2, 0),
        "records are points"
    );
    let text = rewritten_text(filtered.output);
    let dropped = r#"{"metric":"http.requests","type":1,"points":[{"timestamp":1700000000,"value":12},{"timestamp":1700000010,"value":3}],"tags":["env:staging","route:/healthz","canary"],"unit":"request"}"#;
    assert!(!text.contains("http.requests"), "{text}");
    for line in SERIES.lines().filter(|l| l.starts_with("  {")) {
        let series = line.trim().trim_end_matches(',');
        if series != dropped {
            assert!(text.contains(series), "{series} missing from {text}");
        }
    }
    assert!(text.contains(r#""x-extra":{"kept": true}"#), "{text}");
    let st = stats(&engine, "d");
    assert_eq!(
        (st.records_dropped, st.bytes_dropped),
        (2, dropped.len() as u64)
    );

    let everything = engine_dropping_all();
    let all = filter(&everything, Format::DatadogSeries, SERIES.as_bytes()).expect("valid");
    assert_eq!(all.output, Output::AllDropped);
}

fn engine_dropping_all() -> tero_sdk::engine::Engine {
    engine(
        "id: a\nname: a\nmetric:\n  match:\n    - metric_field: name\n      exists: true\n  keep: false\n",
    )
}

#[test]
fn malformed_bodies_are_errors() {
    let engine = engine_dropping_all();
    let cases: &[(Format, &[u8], &str)] = &[
        (Format::DatadogLogs, b"", "json"),
        (Format::DatadogLogs, b"[{\"message\":\"x\"}", "json"),
        (Format::DatadogLogs, b"[{\"message\":}]", "json"),
        (Format::DatadogLogs, b"[1,]", "json"),
        (Format::DatadogLogs, b"[\"\xff\"]", "json"),
        (Format::DatadogLogs, b"{} {}", "json"),
        (Format::DatadogLogs, b"5", "shape"),
        (Format::DatadogLogs, b"\"log\"", "shape"),
        (Format::DatadogLogs, b"null", "shape"),
        (Format::DatadogSeries, b"", "json"),
        (Format::DatadogSeries, b"{\"series\":[", "json"),
        (Format::DatadogSeries, b"[]", "shape"),
        (Format::DatadogSeries, b"7", "shape"),
    ];
    for (format, payload, kind) in cases {
        let shown = String::from_utf8_lossy(payload);
        match (*kind, filter(&engine, *format, payload)) {
            ("json", Err(DecodeError::Json(_))) | ("shape", Err(DecodeError::Shape(_))) => {}
            (_, other) => panic!("{format:?} {shown}: expected a {kind} error, got {other:?}"),
        }
    }
    assert_eq!(
        stats(&engine, "a").scrapes,
        0,
        "a failed payload counts nothing"
    );
}

#[test]
fn odd_shapes_are_evaluated_or_passed_through() {
    let engine = drop_where("log_field: body", "exists: true");
    let logs = r#"[1, "text", null, [], {"message": 5}, {"message": {"nested": true}}, {"status": "info"}]"#;
    let filtered = filter(&engine, Format::DatadogLogs, logs.as_bytes()).expect("valid JSON");
    assert_eq!(
        rewritten_text(filtered.output),
        r#"[1,"text",null,[],{"status": "info"}]"#,
        "a message of any type is a body; elements that are not objects have none"
    );
    let engine = engine_dropping_all();
    for series in [
        r#"{"series": 5}"#,
        r#"{"series": {"metric": "x"}}"#,
        r#"{"other": []}"#,
        r#"{"series": [1, null, {"points": 3}]}"#,
    ] {
        let filtered =
            filter(&engine, Format::DatadogSeries, series.as_bytes()).expect("valid JSON");
        assert_eq!(
            filtered.output,
            Output::Unchanged,
            "{series}: nothing has a name"
        );
    }
}

#[test]
fn no_corruption_of_a_payload_panics() {
    let log_engine = engine(
        "id: t\nname: t\nlog:\n  match:\n    - log_attribute: service\n      exists: true\n  keep: all\n  transform:\n    remove:\n      - log_attribute: [ddtags, env]\n    add:\n      - log_attribute: [a, b]\n        value: c\n",
    );
    let metric_engine = engine_dropping_all();
    let payloads = [
        (Format::DatadogLogs, logs()),
        (Format::DatadogSeries, SERIES.to_owned()),
    ];
    for (format, payload) in payloads {
        let engine = if format == Format::DatadogLogs {
            &log_engine
        } else {
            &metric_engine
        };
        let bytes = payload.as_bytes();
        for end in 0..bytes.len() {
            assert!(
                filter(engine, format, &bytes[..end]).is_err(),
                "{format:?} cut at {end}"
            );
        }
        for at in 0..bytes.len() {
            for replacement in [b'"', b'{', b'[', b':', b'\\', b',', 0xE2] {
                let mut corrupted = bytes.to_vec();
                corrupted[at] = replacement;
                let _ = filter(engine, format, &corrupted);
            }
        }
    }
}

use super::*;

fn limits() -> LogsConfig {
    LogsConfig::default()
}

fn intake(limits: &LogsConfig) -> LogIntake {
    LogIntake::new("checkout", limits).expect("valid limits")
}

fn bodies(records: &[Record<'_>]) -> Vec<String> {
    records.iter().map(|r| r.body.to_string()).collect()
}

#[test]
fn content_types_choose_the_format() {
    for (ct, format) in [
        (None, BodyFormat::Text),
        (Some("text/plain; charset=utf-8"), BodyFormat::Text),
        (Some("application/x-www-form-urlencoded"), BodyFormat::Text),
        (Some("Application/X-NDJSON"), BodyFormat::Ndjson),
        (Some("application/jsonl"), BodyFormat::Ndjson),
        (Some("application/json;charset=utf-8"), BodyFormat::Json),
    ] {
        assert_eq!(BodyFormat::from_content_type(ct), Ok(format), "{ct:?}");
    }
    let err = BodyFormat::from_content_type(Some("application/xml")).unwrap_err();
    assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(err.to_string().contains("application/x-ndjson"), "{err}");
}

#[test]
fn text_bodies_are_one_record_per_non_blank_line() {
    let body = b"first line\r\n\n   \nsecond \xff line\nlast without newline";
    let records = parse(BodyFormat::Text, body, 10).unwrap();
    assert_eq!(
        bodies(&records),
        ["first line", "second \u{fffd} line", "last without newline"]
    );
    assert!(records.iter().all(|r| r.severity.is_none()));
    assert!(parse(BodyFormat::Text, b"", 10).unwrap().is_empty());
}

#[test]
fn ndjson_reads_the_usual_field_names() {
    let body = br#"{"body": "a", "severity": "WARN", "time_unix_ms": 1700000000000}

{"message": "b", "level": 30}
{"msg": "c", "severity_text": "ERROR", "time_unix_ms": "1700000000001"}
{"log": {"structured": true}}
{"msg": null, "log": "e", "level": null}
{"other": "no body"}
"#;
    let body = [&body[..], b"{\"body\": \"bad \xff byte\"}\n"].concat();
    let records = parse(BodyFormat::Ndjson, &body, 100).unwrap();
    assert_eq!(
        bodies(&records),
        [
            "a",
            "b",
            "c",
            r#"{"structured":true}"#,
            "e",
            "",
            "bad \u{fffd} byte"
        ]
    );
    let severities: Vec<Option<&str>> = records.iter().map(|r| r.severity.as_deref()).collect();
    assert_eq!(
        severities,
        [
            Some("WARN"),
            Some("30"),
            Some("ERROR"),
            None,
            None,
            None,
            None
        ]
    );
    assert_eq!(records[0].time_unix_ms, 1_700_000_000_000);
    assert_eq!(records[1].time_unix_ms, 0);
    assert_eq!(records[2].time_unix_ms, 1_700_000_000_001);
}

#[test]
fn ndjson_errors_name_the_line() {
    let cases: [(&[u8], usize, &str); 4] = [
        (
            b"{\"body\": \"ok\"}\n\n{\"body\": \"x\"",
            3,
            "invalid JSON at column",
        ),
        (b"{\"body\": \"ok\"}\n[1, 2]", 2, "expected a JSON object"),
        (b"{\"body\": \"x\", \"level\": [1]}", 1, "level must be"),
        (
            b"\n{\"body\": \"x\", \"time_unix_ms\": \"soon\"}",
            2,
            "time_unix_ms must be a number",
        ),
    ];
    for (body, line, reason) in cases {
        let err = parse(BodyFormat::Ndjson, body, 10).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let IntakeError::BadLine {
            line: at,
            reason: why,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(*at, line, "{err}");
        assert!(why.contains(reason), "{err}");
        assert!(
            err.to_string().starts_with(&format!("line {line}: ")),
            "{err}"
        );
    }
}

#[test]
fn json_bodies_are_submit_logs_records_or_an_array() {
    let batch = br#"{"service": "ignored", "records": [
            {"body": "a", "severity": "INFO", "time_unix_ms": 5},
            {"body": "b", "timeUnixMs": "6"},
            {"body": ""}]}"#;
    let records = parse(BodyFormat::Json, batch, 10).unwrap();
    assert_eq!(bodies(&records), ["a", "b", ""]);
    assert_eq!(records[0].severity.as_deref(), Some("INFO"));
    assert_eq!(records[1].severity, None);
    assert_eq!((records[0].time_unix_ms, records[1].time_unix_ms), (5, 6));

    let array = br#"[{"body": "x"}, {"body": "y", "severity": "DEBUG"}]"#;
    assert_eq!(
        bodies(&parse(BodyFormat::Json, array, 10).unwrap()),
        ["x", "y"]
    );
    assert!(parse(BodyFormat::Json, b"  \n", 10).unwrap().is_empty());

    for bad in [
        &b"{\"records\": [{\"body\": 1}]}"[..],
        b"{\"body\": \"a single record\"}",
        b"{\"records\": [",
        b"\"text\"",
    ] {
        let err = parse(BodyFormat::Json, bad, 10).unwrap_err();
        assert!(matches!(err, IntakeError::BadJson(_)), "{err:?}");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
    let err = parse(BodyFormat::Json, b"{}", 10).unwrap_err();
    assert!(err.to_string().contains("records"), "{err}");
}

#[test]
fn requests_are_bounded_before_anything_is_mined() {
    let small = LogsConfig {
        max_body_bytes: 1024,
        max_records_per_request: 3,
        ..limits()
    };
    let logs = intake(&small);
    let four = b"a 1\nb 2\nc 3\nd 4\n";
    for format in [BodyFormat::Text, BodyFormat::Ndjson, BodyFormat::Json] {
        let body: Vec<u8> = match format {
            BodyFormat::Text => four.to_vec(),
            BodyFormat::Ndjson => b"{\"body\":\"a\"}\n".repeat(4),
            BodyFormat::Json => {
                br#"[{"body":"a"},{"body":"b"},{"body":"c"},{"body":"d"}]"#.to_vec()
            }
        };
        let err = logs.ingest(format, None, &body).unwrap_err();
        assert_eq!(err, IntakeError::TooManyRecords { limit: 3 }, "{format:?}");
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    let err = logs
        .ingest(BodyFormat::Text, None, &[b'x'; 1025])
        .unwrap_err();
    assert_eq!(err, IntakeError::BodyTooLarge { limit: 1024 });
    assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(err.to_string().contains("logs.max_body_bytes"), "{err}");
    // Blank lines are not records: three records pass.
    let ok = logs
        .ingest(BodyFormat::Text, None, b"a 1\n\n\nb 2\n\nc 3\n")
        .unwrap();
    assert_eq!(ok.accepted, 3);
    assert_eq!(logs.live_templates(), 3);
    let report = logs.take_report();
    assert_eq!(report.templates.iter().map(|t| t.count).sum::<u64>(), 3);
}

#[test]
fn ingest_counts_templates_and_new_ones() {
    let logs = intake(&limits());
    let body =
        b"user 1 logged in from 10.0.0.1\nuser 2 logged in from 10.0.0.2\ncache miss for key abc\n";
    let first = logs
        .ingest(BodyFormat::Text, Some("severity=INFO"), body)
        .unwrap();
    assert_eq!(
        (first.accepted, first.templates, first.new_templates),
        (3, 2, 2)
    );
    let again = logs
        .ingest(
            BodyFormat::Text,
            None,
            b"user 3 logged in from 10.0.0.3\ndisk full on /dev/sda1\n",
        )
        .unwrap();
    assert_eq!(
        (again.accepted, again.templates, again.new_templates),
        (2, 2, 1)
    );
    let empty = logs
        .ingest(
            BodyFormat::Ndjson,
            None,
            b"{\"body\": \"   \"}\n{\"level\": \"INFO\"}\n",
        )
        .unwrap();
    assert_eq!(
        (empty.accepted, empty.empty, empty.templates),
        (0, 2, 0),
        "empty bodies are skipped"
    );
    assert_eq!(empty.live_templates, 3);
}

#[test]
fn the_query_severity_applies_to_records_without_one() {
    let logs = intake(&limits());
    logs.ingest(
        BodyFormat::Text,
        Some("x=1&severity=warn%20ing+x"),
        b"a b c\n",
    )
    .unwrap();
    logs.ingest(
        BodyFormat::Ndjson,
        Some("severity=INFO"),
        b"{\"body\": \"d e f\", \"level\": \"ERROR\"}\n{\"body\": \"g h i\"}\n",
    )
    .unwrap();
    let long = "L".repeat(500);
    logs.ingest(
        BodyFormat::Text,
        Some(&format!("severity={long}")),
        b"j k l\n",
    )
    .unwrap();
    let report = logs.take_report();
    let severity = |text: &str| {
        report
            .templates
            .iter()
            .find(|t| t.text == text)
            .map(|t| t.severity.clone())
    };
    assert_eq!(severity("a b c").as_deref(), Some("warn ing x"));
    assert_eq!(severity("d e f").as_deref(), Some("ERROR"));
    assert_eq!(severity("g h i").as_deref(), Some("INFO"));
    assert_eq!(
        severity("j k l").map(|s| s.len()),
        Some(MAX_SEVERITY_BYTES),
        "severities are bounded"
    );
}

#[test]
fn a_report_describes_each_template_with_its_activity_since_the_last() {
    let logs = intake(&limits());
    let lines = "user 1 logged in from 10.0.0.1\nuser 22 logged in from 10.0.0.2\n";
    let body = concat!(
        r#"{"body":"user 1 logged in from 10.0.0.1","severity":"INFO","time_unix_ms":1000}"#,
        "\n",
        r#"{"body":"user 22 logged in from 10.0.0.2","time_unix_ms":3000}"#,
        "\n",
        r#"{"body":"password=hunter2 rejected","severity":"WARN","time_unix_ms":2000}"#,
        "\n",
    );
    logs.ingest(BodyFormat::Ndjson, None, body.as_bytes())
        .unwrap();
    let first = logs.take_report();
    assert_eq!(first.templates.len(), 2, "{first:?}");
    assert_eq!(first.overflowed, 0);
    assert!(first.window_start_unix_ms <= first.window_end_unix_ms);
    let login = &first.templates[0];
    assert_eq!(login.count, 2, "the most active first");
    assert_eq!(login.bytes, lines.len() as u64 - 2);
    assert_eq!(login.severity, "INFO");
    assert_eq!(
        (login.first_seen_unix_ms, login.last_seen_unix_ms),
        (1000, 3000)
    );
    assert_eq!(login.examples.len(), 2);
    assert!(login.text.contains("<ip>"), "{}", login.text);
    assert_eq!(login.fingerprint.len(), 16);
    let secret = &first.templates[1];
    assert_eq!((secret.count, secret.severity.as_str()), (1, "WARN"));
    assert!(
        secret.examples.iter().all(|e| !e.contains("hunter2")),
        "examples are redacted: {:?}",
        secret.examples
    );

    // The next report counts only what came since.
    assert!(logs.take_report().is_empty());
    logs.ingest(
            BodyFormat::Text,
            None,
            b"user 7 logged in from 10.0.0.7\nuser 8 logged in from 10.0.0.8\nuser 9 logged in from 10.0.0.9\n",
        )
        .unwrap();
    let second = logs.take_report();
    assert_eq!(second.templates.len(), 1);
    assert_eq!(second.templates[0].fingerprint, login.fingerprint);
    assert_eq!(second.templates[0].count, 3);
    assert_eq!(second.templates[0].text, login.text);
    assert!(second.window_start_unix_ms >= first.window_end_unix_ms);
}

#[test]
fn a_full_miner_reports_overflow() {
    let logs = intake(&LogsConfig {
        max_templates: 1,
        ..limits()
    });
    let ok = logs
        .ingest(
            BodyFormat::Text,
            None,
            b"alpha beta\nsomething else entirely here\nalpha beta\n",
        )
        .unwrap();
    assert_eq!((ok.accepted, ok.overflowed, ok.templates), (2, 1, 1));
    let report = logs.take_report();
    assert_eq!(report.templates.len(), 1);
    assert_eq!(report.overflowed, 1);
    assert!(!report.is_empty());
    assert!(logs.take_report().is_empty(), "overflow is reported once");
}

#[test]
fn templates_beyond_the_report_bound_are_carried_not_lost() {
    let logs = intake(&LogsConfig {
        max_report_templates: 2,
        ..limits()
    });
    let body = "busy one\nbusy one\nbusy one\nmiddle two\nmiddle two\nquiet three\n";
    logs.ingest(BodyFormat::Text, None, body.as_bytes())
        .unwrap();
    let first = logs.take_report();
    let counts = |r: &LogReport| -> Vec<(String, u64)> {
        r.templates
            .iter()
            .map(|t| (t.text.clone(), t.count))
            .collect()
    };
    assert_eq!(
        counts(&first),
        [("busy one".into(), 3), ("middle two".into(), 2)],
        "the most active"
    );
    logs.ingest(BodyFormat::Text, None, b"quiet three\n")
        .unwrap();
    let second = logs.take_report();
    assert_eq!(
        counts(&second),
        [("quiet three".into(), 2)],
        "carried counts join the new ones"
    );
    assert!(logs.take_report().is_empty());
}

#[test]
fn forms_decode() {
    assert_eq!(form_decode("a+b%20c%2x%"), "a b c%2x%");
    assert_eq!(form_decode("%C3%A9"), "é");
    assert_eq!(
        query_param(Some("severity=&severity=ERROR"), "severity").as_deref(),
        Some("ERROR")
    );
    assert_eq!(query_param(None, "severity"), None);
    assert_eq!(query_param(Some("sev=1"), "severity"), None);
}

#[test]
fn ndjson_fields_become_attributes_profiled_with_their_template() {
    let logs = intake(&limits());
    let body = br#"{"body": "order 1 placed", "severity": "INFO", "user_id": "u-10000001", "userId": "u-10000001", "attributes": {"contact": "jane@example.com"}}
{"body": "order 2 placed", "user_id": "u-10000002", "userId": "u-10000002", "attributes": {"contact": "bob@example.com"}}
"#;
    let records = parse(BodyFormat::Ndjson, body, 10).unwrap();
    let keys: Vec<&str> = records[0]
        .attributes
        .iter()
        .map(|a| a.key.as_str())
        .collect();
    assert_eq!(
        keys,
        ["contact", "userId", "user_id"],
        "body and severity are not attributes"
    );
    logs.ingest(BodyFormat::Ndjson, None, body).unwrap();
    let report = logs.take_report();
    let t = &report.templates[0];
    assert_eq!(t.count, 2);
    let keys: Vec<(&str, u64)> = t
        .attributes
        .iter()
        .map(|a| (a.key.as_str(), a.records))
        .collect();
    assert_eq!(keys, [("contact", 2), ("userId", 2), ("user_id", 2)]);
    assert_eq!(t.sensitive.len(), 1);
    assert_eq!(
        (
            t.sensitive[0].kind.as_str(),
            t.sensitive[0].location.as_str()
        ),
        ("email", "attribute:contact")
    );
    let pairs: Vec<(&str, &str)> = t
        .duplicate_fields
        .iter()
        .map(|d| (d.keep.as_str(), d.duplicate.as_str()))
        .collect();
    assert_eq!(pairs, [("attribute:user_id", "attribute:userId")]);
    let text = format!("{report:?}");
    assert!(!text.contains("jane@") && !text.contains("bob@"), "{text}");
    // Reported once: the next report has nothing.
    assert!(logs.take_report().is_empty());
}

#[test]
fn a_carried_template_carries_its_profile_with_its_counts() {
    let logs = intake(&LogsConfig {
        max_report_templates: 1,
        ..limits()
    });
    let body = "{\"body\": \"busy one\", \"k\": \"a\"}\n{\"body\": \"busy one\", \"k\": \"a\"}\n{\"body\": \"quiet two\", \"q\": \"x\"}\n";
    logs.ingest(BodyFormat::Ndjson, None, body.as_bytes())
        .unwrap();
    let first = logs.take_report();
    assert_eq!(first.templates.len(), 1);
    assert_eq!(first.templates[0].text, "busy one");
    assert_eq!(first.templates[0].attributes[0].records, 2);
    logs.ingest(
        BodyFormat::Ndjson,
        None,
        b"{\"body\": \"quiet two\", \"q\": \"y\"}\n",
    )
    .unwrap();
    let second = logs.take_report();
    let quiet = &second.templates[0];
    assert_eq!((quiet.text.as_str(), quiet.count), ("quiet two", 2));
    let q = &quiet.attributes[0];
    assert_eq!(
        (q.key.as_str(), q.records, q.examples.clone()),
        ("q", 2, vec!["x".to_owned(), "y".to_owned()]),
        "the profile covers the same records as the counts"
    );
    assert!(logs.take_report().is_empty());
}

#[test]
fn profiles_stay_bounded_when_records_bring_endless_templates_and_keys() {
    let logs = intake(&limits());
    // Distinct first words: one template each, each with its own keys.
    let lines: String = (0..profile_bound() + 50)
        .map(|i| {
            // Two leading words: the miner's tree keeps 100 children a
            // node, so the variety is spread over two levels.
            let w = format!("{} {}", word(i % 26), word(i / 26));
            format!(
                "{{\"body\": \"{w} started\", \"k{i}a\": \"v\", \"k{i}b\": \"secret-{i}@example.com\"}}\n"
            )
        })
        .collect();
    let accepted = logs
        .ingest(BodyFormat::Ndjson, None, lines.as_bytes())
        .unwrap();
    assert_eq!(accepted.accepted as usize, profile_bound() + 50);
    let report = logs.take_report();
    let profiled = report
        .templates
        .iter()
        .filter(|t| !t.attributes.is_empty())
        .count();
    assert_eq!(profiled, profile_bound(), "the rest counted, not profiled");
    let lines_reported: u64 = report.templates.iter().map(|t| t.count).sum();
    assert_eq!(lines_reported as usize, profile_bound() + 50);
    let text = format!("{report:?}");
    assert!(!text.contains("@example.com"), "flagged values stay here");
    // The bound is per window: the next one profiles again.
    logs.ingest(
        BodyFormat::Ndjson,
        None,
        b"{\"body\": \"b a started\", \"k\": \"v\"}\n",
    )
    .unwrap();
    assert_eq!(logs.take_report().templates[0].attributes.len(), 1);
}

/// A word of letters only (digits would be masked into one template).
fn word(mut i: usize) -> String {
    let mut w = String::new();
    loop {
        w.push((b'a' + (i % 26) as u8) as char);
        i /= 26;
        if i == 0 {
            return w;
        }
    }
}

fn profile_bound() -> usize {
    MAX_PROFILED_TEMPLATES
}

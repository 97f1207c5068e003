//! What a file handed to `tero policy test` holds, told from its first
//! bytes: the filter reads only text expositions, and anything else used to
//! pass as "0 of 0 series dropped".

/// The kinds of input worth naming in an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Prometheus text or OpenMetrics (or something to try as such).
    Exposition,
    /// OTLP JSON of this signal (`metrics`, `logs`, `spans`).
    OtlpJson(&'static str),
    /// JSON, but not OTLP.
    OtherJson,
    /// Compressed or binary (protobuf) data.
    Binary,
}

/// Sniffs `body`. JSON is recognised by its first non-blank byte and then
/// parsed only far enough to find OTLP's top-level key.
pub fn sniff(body: &[u8]) -> Input {
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Input::Exposition;
    };
    if body.starts_with(&[0x1f, 0x8b]) || body.contains(&0) {
        return Input::Binary;
    }
    if !matches!(body[start], b'{' | b'[') {
        return if std::str::from_utf8(body).is_ok() {
            Input::Exposition
        } else {
            Input::Binary
        };
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) else {
        return Input::OtherJson;
    };
    for (key, signal) in [
        ("resourceMetrics", "metrics"),
        ("resource_metrics", "metrics"),
        ("resourceLogs", "logs"),
        ("resource_logs", "logs"),
        ("resourceSpans", "spans"),
        ("resource_spans", "spans"),
    ] {
        if map.contains_key(key) {
            return Input::OtlpJson(signal);
        }
    }
    Input::OtherJson
}

/// Why `what` cannot be tested, for an input that is not an exposition.
pub fn refusal(what: &str, input: Input) -> Option<String> {
    const HINT: &str = "`tero policy test` runs the Edge's filter, which reads Prometheus \
                        text and OpenMetrics scrapes (save one with `curl -s URL/metrics > \
                        scrape.prom`, or see examples/scrape.prom)";
    Some(match input {
        Input::Exposition => return None,
        Input::OtlpJson(signal) => format!(
            "{what} is OTLP JSON ({signal}), not a scrape: {HINT}. To evaluate policies on \
             OTLP JSON, use the conformance runner: `cargo run -p tero-conformance -- \
             --policies POLICIES --input {what} --output - --signal {}`",
            signal.trim_end_matches('s').replace("span", "trace")
        ),
        Input::OtherJson => format!("{what} is JSON, not a scrape: {HINT}"),
        Input::Binary => {
            format!("{what} is binary (compressed or protobuf), not a text scrape: {HINT}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_expositions_from_otlp_json_and_binary() {
        assert_eq!(sniff(b"# HELP x X.\nx 1\n"), Input::Exposition);
        assert_eq!(sniff(b"x{a=\"b\"} 1\n"), Input::Exposition);
        assert_eq!(sniff(b""), Input::Exposition);
        assert_eq!(
            sniff(b"\xef\xbb\xbf {\"resourceMetrics\": []}"),
            Input::OtlpJson("metrics")
        );
        assert_eq!(sniff(br#"{"resourceLogs": []}"#), Input::OtlpJson("logs"));
        assert_eq!(
            sniff(br#"{"resource_spans": []}"#),
            Input::OtlpJson("spans")
        );
        assert_eq!(sniff(br#"{"data": {"result": []}}"#), Input::OtherJson);
        assert_eq!(sniff(b"[1, 2"), Input::OtherJson);
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Input::Binary);
        assert_eq!(sniff(&[0x0a, 0x02, 0x08, 0x00, 0xff]), Input::Binary);
    }

    #[test]
    fn refusals_say_what_the_input_is_and_what_to_do() {
        let otlp = refusal("m.json", Input::OtlpJson("metrics")).unwrap();
        assert!(otlp.contains("OTLP JSON (metrics)"), "{otlp}");
        assert!(otlp.contains("--signal metric`"), "{otlp}");
        assert!(otlp.contains("examples/scrape.prom"), "{otlp}");
        let spans = refusal("t.json", Input::OtlpJson("spans")).unwrap();
        assert!(spans.contains("--signal trace`"), "{spans}");
        assert_eq!(refusal("s.prom", Input::Exposition), None);
    }
}

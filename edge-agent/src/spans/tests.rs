use prost::Message as _;
use tero_proto::otel::any_value::Value as V;
use tero_proto::otel::{AnyValue, KeyValue as Kv};
use tero_proto::otlp_collector::trace::v1::ExportTraceServiceRequest;
use tero_proto::otlp_trace::{ResourceSpans, ScopeSpans, Span, Status as SpanStatus};

use super::*;

fn attr(key: &str, value: &str) -> Kv {
    Kv {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(V::StringValue(value.into())),
        }),
    }
}

fn span(name: &str, kind: i32, attributes: Vec<Kv>, error: bool) -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: name.into(),
        kind,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_001_000_000,
        attributes,
        status: error.then(|| SpanStatus {
            code: 2,
            message: "boom".into(),
        }),
        ..Default::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn probe() -> Span {
    span(
        "GET /healthz",
        2,
        vec![
            attr("http.route", "/healthz"),
            attr("user_agent.original", "kube-probe/1.29"),
            Kv {
                key: "http.response.status_code".into(),
                value: Some(AnyValue {
                    value: Some(V::IntValue(200)),
                }),
            },
        ],
        false,
    )
}

#[test]
fn a_span_is_reduced_to_its_pattern_and_a_redacted_example() {
    let encoded = Bytes::from(probe().encode_to_vec());
    let s = sample(&encoded).unwrap();
    assert_eq!(
        (
            s.name.as_str(),
            s.kind,
            s.route.as_str(),
            s.user_agent.as_str()
        ),
        ("GET /healthz", "server", "/healthz", "kube-probe/1.29")
    );
    assert_eq!(s.bytes, encoded.len() as u64);
    assert_eq!(
        s.example,
        "GET /healthz kind=server status=unset http.route=/healthz http.response.status_code=200 user_agent=kube-probe/1.29"
    );
    assert_eq!(s.time_unix_ms, 1_700_000_000_000);

    // No route: the path, ids masked, query left out; secrets redacted.
    let s = sample(&Bytes::from(
        span(
            "GET",
            3,
            vec![
                attr("http.target", "/users/12345/orders?token=abc"),
                attr(
                    "http.user_agent",
                    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                ),
                attr("peer", "jane@example.com"),
            ],
            true,
        )
        .encode_to_vec(),
    ))
    .unwrap();
    assert_eq!(s.route, "/users/<num>/orders");
    assert_eq!(s.user_agent, "Googlebot/2.1");
    assert_eq!(s.kind, "client");
    assert!(s.error);
    assert_eq!(s.attribute_keys, ["http.target", "http.user_agent", "peer"]);
    assert!(!s.example.contains("jane"), "{}", s.example);
    assert!(sample(&Bytes::from_static(b"\xff\xff")).is_none());
}

#[test]
fn user_agents_reduce_to_their_product() {
    for (ua, want) in [
        ("kube-probe/1.29", "kube-probe/1.29"),
        ("ELB-HealthChecker/2.0", "ELB-HealthChecker/2.0"),
        ("GoogleHC/1.0", "GoogleHC/1.0"),
        ("curl/8.5.0", "curl/8.5.0"),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
            "Mozilla/5.0",
        ),
        ("", ""),
    ] {
        assert_eq!(product(ua), want, "{ua}");
    }
}

#[test]
fn patterns_accumulate_and_are_reported_once() {
    let patterns = SpanPatterns::new("checkout");
    let budget = SampleBudget::new(100);
    let mut spans: Vec<Span> = (0..4).map(|_| probe()).collect();
    spans.push(span("POST /pay", 2, vec![attr("http.route", "/pay")], true));
    let payload = Bytes::from(request(spans).encode_to_vec());
    assert_eq!(feed(&budget, &patterns, Format::OtlpProtobuf, &payload), 5);
    let json =
        serde_json::to_vec(&tero_otlp::convert::traces_to_json(&request(vec![probe()]))).unwrap();
    assert_eq!(
        feed(&budget, &patterns, Format::OtlpJson, &Bytes::from(json)),
        1
    );
    assert_eq!(patterns.len(), 2);
    let report = patterns.take_report();
    assert_eq!(report.overflowed, 0);
    let p = &report.patterns[0];
    assert_eq!(
        (p.name.as_str(), p.route.as_str(), p.user_agent.as_str()),
        ("GET /healthz", "/healthz", "kube-probe/1.29")
    );
    assert_eq!((p.count, p.errors, p.kind.as_str()), (5, 0, "server"));
    assert_eq!(p.bytes, 5 * probe().encoded_len() as u64);
    assert_eq!(p.examples.len(), 1, "identical lines kept once");
    assert_eq!(
        p.fingerprint,
        fingerprint(
            "checkout",
            "\u{1e}span GET /healthz /healthz kube-probe/1.29"
        )
    );
    assert_eq!(
        p.attribute_keys,
        [
            "http.response.status_code",
            "http.route",
            "user_agent.original"
        ]
    );
    assert_eq!(
        (p.first_seen_unix_ms, p.last_seen_unix_ms),
        (1_700_000_000_000, 1_700_000_000_000)
    );
    let pay = &report.patterns[1];
    assert_eq!((pay.count, pay.errors, pay.user_agent.as_str()), (1, 1, ""));
    assert!(patterns.take_report().is_empty(), "reported once");
    // Not a trace payload: nothing.
    assert_eq!(
        feed(
            &budget,
            &patterns,
            Format::DatadogLogs,
            &Bytes::from_static(b"[]")
        ),
        0
    );
}

#[test]
fn the_budget_bounds_sampling_and_the_pattern_bound_counts_overflow() {
    let patterns = SpanPatterns::new("svc");
    let budget = SampleBudget::new(3);
    let payload = Bytes::from(request((0..10).map(|_| probe()).collect()).encode_to_vec());
    assert_eq!(feed(&budget, &patterns, Format::OtlpProtobuf, &payload), 3);
    assert_eq!(feed(&budget, &patterns, Format::OtlpProtobuf, &payload), 0);
    assert_eq!(
        feed(
            &SampleBudget::new(0),
            &patterns,
            Format::OtlpProtobuf,
            &payload
        ),
        0,
        "0: off"
    );
    patterns.take_report();

    // Random names: the pattern bound holds and the rest is counted.
    let samples: Vec<SpanSample> = (0..MAX_PATTERNS + 10)
        .map(|i| {
            let mut s = sample(&Bytes::from(probe().encode_to_vec())).unwrap();
            s.name = format!("op-{i}");
            s
        })
        .collect();
    assert_eq!(patterns.observe(&samples), MAX_PATTERNS as u64);
    let report = patterns.take_report();
    assert_eq!(report.patterns.len(), MAX_PATTERNS);
    assert_eq!(report.overflowed, 10);
}

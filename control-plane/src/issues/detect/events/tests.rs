//! The log and trace detectors end to end over an inventory: which findings,
//! their estimates, and what their policies do in the sdk engine.

use tero_proto::controlplane::{DuplicateField, SensitiveFinding};
use tero_proto::policy::policy::Target;
use tero_sdk::engine::Decision;
use tero_sdk::templates::{Miner, MinerConfig};

use super::testing::*;
use super::*;

const HEALTH: &str = "GET /healthz 200 <num>";
const DEBUG: &str = "cache miss key=<hex> shard=<num>";
const ORDER: &str = "order <num> placed by customer <num>";

/// A service: a probe log, a debug log, business logs, a mixed template,
/// a low-confidence one, an unclassified one, a health-check span and an
/// ordinary span.
fn service() -> EventInventory {
    let health = log(
        "f-health",
        HEALTH,
        &["GET /healthz 200 3ms", "GET /healthz 200 12ms"],
        200,
        Some(classification("waste", "health_check", 0.95)),
    );
    let mut debug = log(
        "f-debug",
        DEBUG,
        &["cache miss key=0x1f shard=2", "cache miss key=0xab shard=7"],
        300,
        Some(classification("waste", "debug_noise", 0.9)),
    );
    debug.event.severity = "DEBUG".into();
    let order = log(
        "f-order",
        ORDER,
        &["order 12 placed by customer 7"],
        100,
        Some(classification("keep", "business_event", 0.99)),
    );
    let retry = log(
        "f-retry",
        "retrying request to <ip> attempt <num>",
        &["retrying request to <ip> attempt 2"],
        250,
        Some(classification("mixed", "operational", 0.8)),
    );
    let unsure = log(
        "f-unsure",
        "tick <num>",
        &["tick 1"],
        100,
        Some(classification("waste", "debug_noise", 0.5)),
    );
    let unknown = log(
        "f-unknown",
        "something happened <num>",
        &["something happened 1"],
        50,
        Some(classification("unknown", "unknown", 0.9)),
    );
    let probe_span = span(
        "s-health",
        "GET /healthz",
        "/healthz",
        "kube-probe/1.29",
        600,
        Some(classification("waste", "health_check", 0.97)),
    );
    let api_span = span(
        "s-orders",
        "POST /orders",
        "/orders",
        "",
        400,
        Some(classification("keep", "business_event", 0.9)),
    );
    inventory(vec![
        health, debug, order, retry, unsure, unknown, probe_span, api_span,
    ])
}

#[test]
fn a_service_yields_exactly_its_findings() {
    let findings = run(&service());
    assert_eq!(
        kinds(&findings),
        [
            ("debug_logs", "f-debug"),
            ("health_check_logs", "f-health"),
            ("noisy_logs", "f-retry"),
            ("health_check_spans", "s-health"),
        ]
    );
    let noisy = find(&findings, kind::NOISY_LOGS, "f-retry");
    assert_eq!(noisy.domain, "signal_quality");
    for f in &findings {
        assert!(f.recommended.is_some(), "{}: {}", f.kind, f.summary);
    }
}

#[test]
fn output_does_not_depend_on_input_order() {
    let mut reversed = service();
    reversed.events.reverse();
    assert_eq!(run(&service()), run(&reversed));
}

#[test]
fn estimates_take_the_share_of_the_sample_and_the_reported_volume() {
    let findings = run(&service());
    let health = find(&findings, kind::HEALTH_CHECK_LOGS, "f-health");
    // 200 of 1000 sampled log records, 20 000 of 100 000 sampled bytes:
    // a fifth of 1e6 records and of 2e8 bytes a day.
    assert_eq!(health.evidence.records_per_day, 200_000);
    assert_eq!(health.evidence.bytes_per_day, 40_000_000);
    assert!((health.evidence.volume_share - 0.2).abs() < 1e-12);
    // `none` removes all of it: 4e7 × 30 / 1e9 × $0.50 = $0.60.
    assert_eq!(health.estimate.records_per_day, 200_000);
    assert_eq!(health.estimate.bytes_per_day, 40_000_000);
    assert!((health.estimate.cost_per_month - 0.6).abs() < 1e-9);
    assert_eq!(health.estimate.confidence, "medium");
    assert_eq!(health.estimate.series, 0);
    assert_eq!(health.severity, "low");

    // Mixed: a 10% sample removes 90%. 250 of 1000 → 250 000 a day.
    let noisy = find(&findings, kind::NOISY_LOGS, "f-retry");
    assert_eq!(noisy.evidence.records_per_day, 250_000);
    assert_eq!(noisy.estimate.records_per_day, 225_000);

    // Spans: 600 of 1000 sampled spans of 100 000 a day.
    let span = find(&findings, kind::HEALTH_CHECK_SPANS, "s-health");
    assert_eq!(span.evidence.records_per_day, 60_000);
    assert_eq!(span.estimate.records_per_day, 60_000);
    assert_eq!(span.evidence.bytes_per_day, 24_000_000);
}

#[test]
fn failing_spans_are_left_out_of_the_estimate() {
    let mut inv = service();
    let probe = inv
        .events
        .iter_mut()
        .find(|e| e.event.fingerprint == "s-health")
        .unwrap();
    probe.event.errors = 60;
    let findings = run(&inv);
    let span = find(&findings, kind::HEALTH_CHECK_SPANS, "s-health");
    assert_eq!(span.estimate.records_per_day, 54_000);
}

#[test]
fn evidence_and_provenance_name_the_classification() {
    let findings = run(&service());
    let health = find(&findings, kind::HEALTH_CHECK_LOGS, "f-health");
    let e = &health.evidence;
    assert_eq!(e.template, HEALTH);
    assert_eq!(e.example_records.len(), 2);
    assert_eq!(e.severities, ["INFO"]);
    assert_eq!(e.edges, ["edge-1"]);
    assert_eq!(e.category, "health_check");
    assert_eq!(e.verdict, "waste");
    assert!((e.confidence - 0.95).abs() < 1e-12);
    assert_eq!(e.rationale, "looks like health_check");
    let p = &health.provenance;
    assert_eq!(p.classifier, "embedded/1");
    assert_eq!(p.classification_run, 7);
    assert_eq!(p.instances, ["edge-1"]);
    assert_eq!(
        (p.inventory_from_unix_ms, p.inventory_to_unix_ms),
        (1_000, 3_601_000)
    );
    for t in [
        "min_confidence=0.7",
        "per_gb_logs=0.5",
        "high_cost_per_month=100",
        "medium_cost_per_month=10",
    ] {
        assert!(
            p.thresholds.contains(&t.to_owned()),
            "{t}: {:?}",
            p.thresholds
        );
    }
    let span = find(&findings, kind::HEALTH_CHECK_SPANS, "s-health");
    assert_eq!(span.evidence.template, "GET /healthz");
}

#[test]
fn the_confidence_threshold_is_inclusive_and_configurable() {
    let at = |confidence: f64| {
        inventory(vec![log(
            "f-1",
            HEALTH,
            &["GET /healthz 200 3ms"],
            10,
            Some(classification("waste", "health_check", confidence)),
        )])
    };
    assert!(run(&at(0.69)).is_empty());
    assert_eq!(run(&at(0.7)).len(), 1);
    let strict = EventThresholds {
        min_confidence: 0.9,
    };
    assert!(run_with(&at(0.8), &strict).is_empty());
}

#[test]
fn mixed_never_drops_and_unknown_or_keep_raise_nothing() {
    for (verdict, category) in [
        ("mixed", "debug_noise"),
        ("mixed", "health_check"),
        ("mixed", "operational"),
    ] {
        let inv = inventory(vec![log(
            "f-1",
            HEALTH,
            &["GET /healthz 200 3ms"],
            10,
            Some(classification(verdict, category, 0.99)),
        )]);
        let findings = run(&inv);
        assert_eq!(kinds(&findings), [("noisy_logs", "f-1")]);
        let policy = findings[0]
            .recommended
            .as_ref()
            .unwrap()
            .policy
            .as_ref()
            .unwrap();
        let Some(Target::Log(t)) = &policy.target else {
            panic!("a log policy")
        };
        assert!(t.keep.ends_with('%') && t.keep != "0%", "{}", t.keep);
        assert!(findings[0].estimate.records_per_day < findings[0].evidence.records_per_day);
    }
    for (verdict, category) in [
        ("unknown", "unknown"),
        ("keep", "debug_noise"),
        ("keep", "health_check"),
    ] {
        let inv = inventory(vec![log(
            "f-1",
            HEALTH,
            &["GET /healthz 200 3ms"],
            10,
            Some(classification(verdict, category, 0.99)),
        )]);
        assert!(run(&inv).is_empty(), "{verdict}/{category}");
    }
    // Not classified at all.
    let inv = inventory(vec![log(
        "f-1",
        HEALTH,
        &["GET /healthz 200 3ms"],
        10,
        None,
    )]);
    assert!(run(&inv).is_empty());
}

#[test]
fn without_reported_volume_the_sample_rate_stands_in_at_low_confidence() {
    let mut inv = service();
    inv.volume = ServiceVolume::default();
    let findings = run(&inv);
    let health = find(&findings, kind::HEALTH_CHECK_LOGS, "f-health");
    // 200 records in an hour.
    assert_eq!(health.evidence.records_per_day, 4_800);
    assert_eq!(health.estimate.confidence, "low");

    // Seen at one instant only: nothing measurable, no issue.
    for e in &mut inv.events {
        e.event.last_seen_unix_ms = e.event.first_seen_unix_ms;
    }
    assert!(run(&inv).is_empty());
}

/// The strongest check: every recommended log policy, compiled by the sdk
/// engine, acts on its own event type's examples and on no other event
/// type's; span policies likewise on spans.
#[test]
fn policies_act_on_their_own_examples_and_nothing_else() {
    let inv = service();
    let findings = run(&inv);
    for f in &findings {
        let request = f.recommended.as_ref().unwrap();
        let engine = engine(&[request]);
        for ce in &inv.events {
            let own = ce.event.fingerprint == f.subject;
            if ce.event.kind == "log" {
                for example in &ce.event.examples {
                    let outcome = engine.decide_log(&mut Record::new(example));
                    if !own {
                        assert_eq!(outcome.decision, Decision::NoMatch, "{}: {example}", f.kind);
                    } else {
                        assert!(outcome.winner.is_some(), "{}: {example}", f.kind);
                    }
                }
            } else {
                let s = Span::new(
                    &ce.event.name,
                    &[
                        ("http.route", ce.event.route.as_str()),
                        ("user_agent.original", ce.event.user_agent.as_str()),
                    ],
                    0,
                );
                let d = engine.evaluate_span(&mut s.clone());
                if own {
                    assert_eq!(d, Decision::Drop, "{}", f.kind);
                } else {
                    assert_eq!(d, Decision::NoMatch, "{}", f.kind);
                }
            }
        }
    }
    // Drops are drops; the debug log at DEBUG level is dropped too.
    let health = find(&findings, kind::HEALTH_CHECK_LOGS, "f-health");
    let debug = find(&findings, kind::DEBUG_LOGS, "f-debug");
    let engine = engine(&[
        health.recommended.as_ref().unwrap(),
        debug.recommended.as_ref().unwrap(),
    ]);
    for body in ["GET /healthz 200 1ms", "cache miss key=0x00ff shard=12"] {
        assert_eq!(engine.evaluate_log(&mut Record::new(body)), Decision::Drop);
    }
    // Another service's identical records are untouched.
    let mut elsewhere = Record::new("GET /healthz 200 1ms");
    elsewhere.service = "billing".into();
    assert_eq!(engine.evaluate_log(&mut elsewhere), Decision::NoMatch);
}

#[test]
fn failing_health_check_spans_are_kept() {
    let findings = run(&service());
    let span = find(&findings, kind::HEALTH_CHECK_SPANS, "s-health");
    let engine = engine(&[span.recommended.as_ref().unwrap()]);
    let probe = |status| Span::new("GET /healthz", &[("http.route", "/healthz")], status);
    assert_eq!(engine.evaluate_span(&mut probe(0)), Decision::Drop);
    assert_eq!(engine.evaluate_span(&mut probe(1)), Decision::Drop);
    assert_eq!(engine.evaluate_span(&mut probe(2)), Decision::NoMatch);
    let other_route = Span::new("GET /healthz", &[("http.route", "/ready")], 0);
    assert_eq!(
        engine.evaluate_span(&mut other_route.clone()),
        Decision::NoMatch
    );
}

/// A named stream of raw lines and its classification (verdict, category).
type Stream = (
    &'static str,
    Vec<String>,
    Option<(&'static str, &'static str)>,
);

/// Raw lines through the real template miner: the templates and redacted
/// examples the edges would store, then the policies on the raw lines.
#[test]
fn policies_built_from_mined_templates_drop_the_raw_lines_they_stand_for() {
    let names = ["alice", "bob", "carol", "dave"];
    let streams: [Stream; 5] = [
        (
            "probe",
            (0..40)
                .map(|i| {
                    format!(
                        "10.0.{}.{} - - [01/Jan/2026:00:00:{:02} +0000] \"GET /healthz HTTP/1.1\" 200 2 \"-\" \"kube-probe/1.29\"",
                        i % 3,
                        i,
                        i % 60
                    )
                })
                .collect(),
            Some(("waste", "health_check")),
        ),
        (
            "debug",
            (0..40)
                .map(|i| format!("2026-01-01T00:00:{:02}Z DEBUG cache miss for key user:{i} took {}ms", i % 60, i * 3))
                .collect(),
            Some(("waste", "debug_noise")),
        ),
        (
            "logfmt",
            (0..40)
                .map(|i| {
                    format!(
                        "level=debug took={}ms msg=\"cache lookup for user {}\"",
                        i,
                        names[i % 4]
                    )
                })
                .collect(),
            Some(("waste", "debug_noise")),
        ),
        (
            "login",
            (0..40)
                .map(|i| format!("2026-01-01T00:00:{:02}Z INFO user{i}@example.com logged in from 10.1.2.{i}", i % 60))
                .collect(),
            Some(("keep", "business_event")),
        ),
        (
            "json",
            (0..40)
                .map(|i| format!(r#"{{"level":"info","msg":"payment accepted","order":{i},"amount":"{}.50"}}"#, i * 7))
                .collect(),
            Some(("keep", "business_event")),
        ),
    ];
    let mut miner = Miner::new(MinerConfig::default()).unwrap();
    let mut by_template: Vec<(String, &str)> = Vec::new();
    for (name, lines, _) in &streams {
        for l in lines {
            let t = miner.observe(SERVICE, l, None, 0).expect("room");
            by_template.push((t.fingerprint.clone(), name));
        }
    }
    let mut events = Vec::new();
    for t in miner.templates() {
        let stream = streams
            .iter()
            .find(|(n, _, _)| {
                by_template
                    .iter()
                    .any(|(f, s)| *f == t.fingerprint && s == n)
            })
            .expect("a stream");
        let c = stream.2.map(|(v, c)| classification(v, c, 0.9));
        let examples: Vec<&str> = t.examples.iter().map(String::as_str).collect();
        let mut event = log(&t.fingerprint, &t.text, &examples, t.count, c);
        if stream.0 == "debug" {
            event.event.severity = "DEBUG".into();
        }
        events.push(event);
    }
    assert_eq!(
        events.len(),
        5,
        "{:?}",
        miner.templates().map(|t| &t.text).collect::<Vec<_>>()
    );
    let inv = inventory(events);
    let findings = run(&inv);
    assert_eq!(findings.len(), 3, "{:?}", kinds(&findings));
    let requests: Vec<_> = findings
        .iter()
        .map(|f| {
            f.recommended
                .as_ref()
                .unwrap_or_else(|| panic!("{}: {}", f.kind, f.summary))
        })
        .collect();
    let engine = engine(&requests);
    for (name, lines, _) in &streams {
        for l in lines {
            let d = engine.evaluate_log(&mut Record::new(l));
            match *name {
                "probe" | "debug" | "logfmt" => assert_eq!(d, Decision::Drop, "{l}"),
                _ => assert_eq!(d, Decision::NoMatch, "{l}"),
            }
        }
    }
}

#[test]
fn debug_noise_not_at_debug_level_is_sampled_or_rate_limited() {
    let steady = inventory(vec![
        log(
            "f-debug",
            DEBUG,
            &["cache miss key=0x1f shard=2"],
            1,
            Some(classification("waste", "debug_noise", 0.9)),
        ),
        log(
            "f-other",
            ORDER,
            &["order 1 placed by customer 2"],
            999,
            None,
        ),
    ]);
    let findings = run(&steady);
    let f = find(&findings, kind::DEBUG_LOGS, "f-debug");
    let keep = |f: &Finding| match &f
        .recommended
        .as_ref()
        .unwrap()
        .policy
        .as_ref()
        .unwrap()
        .target
    {
        Some(Target::Log(t)) => t.keep.clone(),
        _ => panic!("a log policy"),
    };
    // 1 000 a day: about 0.01 a second.
    assert_eq!(keep(f), "10%");
    assert!(f.summary.contains("10% sample"), "{}", f.summary);

    // 900 000 a day on one edge: about 10.4 a second, a flood.
    let mut flood = steady.clone();
    flood.events[0].event.count = 900;
    flood.events[1].event.count = 100;
    let findings = run(&flood);
    let f = find(&findings, kind::DEBUG_LOGS, "f-debug");
    assert_eq!(keep(f), "1/s");
    // 86 400 kept of 900 000.
    assert_eq!(f.estimate.records_per_day, 813_600);
    let engine = engine(&[f.recommended.as_ref().unwrap()]);
    let outcomes: Vec<Decision> = (0..50)
        .map(|_| engine.evaluate_log(&mut Record::new("cache miss key=0x1f shard=2")))
        .collect();
    assert!(
        outcomes.contains(&Decision::Drop),
        "the limit drops the excess"
    );
}

#[test]
fn without_a_checked_matcher_nothing_is_recommended_and_the_summary_says_why() {
    // Two event types whose examples the same regex would match.
    let inv = inventory(vec![
        log(
            "f-a",
            "GET <*> <num>",
            &["GET /healthz 200", "GET /ping 200"],
            10,
            Some(classification("waste", "health_check", 0.9)),
        ),
        log("f-b", "GET <*> <num> <num>", &["GET /orders 200"], 10, None),
    ]);
    let findings = run(&inv);
    let f = find(&findings, kind::HEALTH_CHECK_LOGS, "f-a");
    assert!(f.recommended.is_none());
    assert!(
        f.summary.contains("No policy is recommended"),
        "{}",
        f.summary
    );
    assert!(
        f.summary.contains("also matches example records"),
        "{}",
        f.summary
    );

    // No examples stored.
    let inv = inventory(vec![log(
        "f-a",
        HEALTH,
        &[],
        10,
        Some(classification("waste", "health_check", 0.9)),
    )]);
    let f = &run(&inv)[0];
    assert!(f.recommended.is_none());
    assert!(f.summary.contains("no example records"), "{}", f.summary);
}

#[test]
fn an_attribute_tells_apart_what_the_body_cannot() {
    let mut probe = log(
        "f-probe",
        "request completed in <num>",
        &["request completed in 2ms"],
        50,
        Some(classification("waste", "health_check", 0.9)),
    );
    probe.event.attributes = vec![profile("http.route", 50, &["/healthz"])];
    let mut api = log(
        "f-api",
        "request completed in <num>",
        &["request completed in 40ms"],
        50,
        None,
    );
    api.event.attributes = vec![profile("http.route", 50, &["/orders", "/cart"])];
    let findings = run(&inventory(vec![probe, api]));
    let f = find(&findings, kind::HEALTH_CHECK_LOGS, "f-probe");
    let engine = engine(&[f.recommended.as_ref().unwrap()]);
    let line = "request completed in 3ms";
    assert_eq!(
        engine.evaluate_log(&mut Record::new(line).with("http.route", "/healthz")),
        Decision::Drop
    );
    assert_eq!(
        engine.evaluate_log(&mut Record::new(line).with("http.route", "/orders")),
        Decision::NoMatch
    );
}

fn sensitive(kind: &str, location: &str, records: u64, example: &str) -> SensitiveFinding {
    SensitiveFinding {
        kind: kind.into(),
        location: location.into(),
        records,
        example: example.into(),
    }
}

#[test]
fn sensitive_values_are_redacted_never_dropped() {
    let mut signup = log(
        "f-signup",
        "signup from <email> card <card>",
        &["signup from <email> card <card>"],
        100,
        None,
    );
    signup.event.sensitive = vec![
        sensitive("email", "body", 100, "signup from <email> card"),
        sensitive("card_number", "body", 40, "card <card>"),
        sensitive("ip_address", "body", 100, "from <ip>"),
        sensitive("email", "attribute:message", 30, "contact <email>"),
    ];
    let mut login = log("f-login", "login <*>", &["login ok"], 300, None);
    login.event.sensitive = vec![
        sensitive("email", "attribute:message", 60, "mail <email> now"),
        sensitive("credential", "attribute:password", 300, "<redacted>"),
        sensitive("ip_address", "attribute:client", 300, "<ip>"),
    ];
    let findings = run(&inventory(vec![signup, login]));
    assert_eq!(
        kinds(&findings),
        [
            ("sensitive_log_data", "attribute:message"),
            ("sensitive_log_data", "attribute:password"),
            ("sensitive_log_data", "body"),
        ],
        "ip addresses raise nothing"
    );
    for f in &findings {
        assert_eq!(f.domain, "compliance");
        let policy = f.recommended.as_ref().unwrap().policy.as_ref().unwrap();
        let Some(Target::Log(t)) = &policy.target else {
            panic!("a log policy")
        };
        assert_eq!(t.keep, "all", "never a drop");
        assert!(!t.transform.as_ref().unwrap().redact.is_empty());
        assert_eq!(f.estimate.bytes_per_day, 0);
    }
    let body = find(&findings, kind::SENSITIVE_LOG_DATA, "body");
    assert_eq!(body.severity, "high", "card numbers");
    // Per event type, the most frequent kind: 100 of 400 sampled records.
    assert_eq!(body.estimate.records_per_day, 250_000);
    assert_eq!(body.evidence.sensitive.len(), 2);
    let message = find(&findings, kind::SENSITIVE_LOG_DATA, "attribute:message");
    assert_eq!(message.severity, "medium");
    assert_eq!(message.estimate.records_per_day, 225_000);

    let all: Vec<_> = findings
        .iter()
        .map(|f| f.recommended.as_ref().unwrap())
        .collect();
    let engine = engine(&all);
    let record = Record::new("signup from jane.doe@example.com card 4111 1111 1111 1234 ok")
        .with("message", "contact bob@mail.example.org please")
        .with("password", "hunter2")
        .with("client", "10.0.0.1");
    let (d, out) = through(&engine, &record);
    assert_eq!(d, Decision::Keep);
    assert_eq!(
        out.body,
        "signup from <redacted>@example.com card <card ****1234> ok"
    );
    assert_eq!(
        out.attribute("message"),
        Some("contact <redacted>@mail.example.org please")
    );
    assert_eq!(out.attribute("password"), Some("<redacted>"));
    assert_eq!(out.attribute("client"), Some("10.0.0.1"));
    // A record without such values is not matched at all.
    let (d, out) = through(
        &engine,
        &Record::new("nothing to see").with("message", "hi"),
    );
    assert_eq!(d, Decision::NoMatch);
    assert_eq!(out.body, "nothing to see");
}

#[test]
fn every_redaction_rule_compiles_and_keeps_what_it_says() {
    for (kind, raw, want) in [
        ("email", "to a.b@example.com.", "to <redacted>@example.com."),
        (
            "card_number",
            "card 4111-1111-1111-1111",
            "card <card ****1111>",
        ),
        (
            "jwt",
            "t eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_x ok",
            "t <jwt> ok",
        ),
        (
            "bearer_token",
            "Authorization: Bearer abcdef0123456789",
            "Authorization: Bearer <redacted>",
        ),
        (
            "url_credentials",
            "https://admin:pa55@db.internal/x",
            "https://<redacted>@db.internal/x",
        ),
        (
            "credential",
            "connect password=hunter2 user=bob",
            "connect password=<redacted> user=bob",
        ),
        (
            "api_key",
            "key AKIAxyzQ0123456789abcdefGHIJKLmnop used",
            "key AKIA<redacted> used",
        ),
        (
            "phone_number",
            "call +44 20 7946 0958 now",
            "call <phone> now",
        ),
    ] {
        let mut e = log("f-1", "x <*>", &["x y"], 10, None);
        e.event.sensitive = vec![sensitive(kind, "body", 10, "")];
        let findings = run(&inventory(vec![e]));
        assert_eq!(findings.len(), 1, "{kind}");
        let engine = engine(&[findings[0].recommended.as_ref().unwrap()]);
        let (d, out) = through(&engine, &Record::new(raw));
        assert_eq!(d, Decision::Keep, "{kind}");
        assert_eq!(out.body, want, "{kind}");
    }
}

#[test]
fn duplicated_attributes_are_removed_and_body_duplicates_explained() {
    let mut a = log(
        "f-a",
        "user <num> viewed cart",
        &["user 1 viewed cart"],
        100,
        None,
    );
    a.event.attributes = vec![profile("userId", 100, &[]), profile("user_id", 100, &[])];
    a.event.duplicate_fields = vec![
        DuplicateField {
            keep: "attribute:user_id".into(),
            duplicate: "attribute:userId".into(),
            records: 100,
            bytes: 2_000,
        },
        DuplicateField {
            keep: "attribute:trace_id".into(),
            duplicate: "body".into(),
            records: 50,
            bytes: 1_600,
        },
    ];
    let b = log("f-b", "other <num>", &["other 1"], 100, None);
    let findings = run(&inventory(vec![a.clone(), b.clone()]));
    assert_eq!(
        kinds(&findings),
        [
            ("duplicated_log_fields", "attribute:userId"),
            ("duplicated_log_fields", "body"),
        ]
    );
    let user = find(&findings, kind::DUPLICATED_LOG_FIELDS, "attribute:userId");
    // 2 000 of 20 000 sampled log bytes: a tenth of 2e8 bytes a day.
    assert_eq!(user.estimate.bytes_per_day, 20_000_000);
    assert_eq!(user.estimate.records_per_day, 500_000);
    assert!((user.estimate.cost_per_month - 0.3).abs() < 1e-9);
    assert!(
        user.summary.contains("10.00% of the service's log bytes"),
        "{}",
        user.summary
    );
    assert_eq!(user.evidence.duplicate_fields.len(), 1);
    let engine = engine(&[user.recommended.as_ref().unwrap()]);
    let (d, out) = through(
        &engine,
        &Record::new("user 1 viewed cart")
            .with("user_id", "1")
            .with("userId", "1"),
    );
    assert_eq!(d, Decision::Keep);
    assert_eq!(out.attributes, [("user_id".to_string(), "1".to_string())]);
    // Without the field to keep, the duplicate stays.
    let (_, out) = through(&engine, &Record::new("x").with("userId", "1"));
    assert_eq!(out.attribute("userId"), Some("1"));

    let body = find(&findings, kind::DUPLICATED_LOG_FIELDS, "body");
    assert!(body.recommended.is_none());

    // Equal on too few of the records carrying it: no removal.
    let mut rare = a;
    rare.event.attributes[0].records = 100;
    rare.event.duplicate_fields[0].records = 50;
    let findings = run(&inventory(vec![rare, b]));
    let user = find(&findings, kind::DUPLICATED_LOG_FIELDS, "attribute:userId");
    assert!(user.recommended.is_none());
    assert!(
        user.summary.contains("equal on only 50%"),
        "{}",
        user.summary
    );
}

#[test]
fn findings_recommending_one_change_are_folded() {
    let finding = |kind: &'static str, subject: &str| {
        let rec = recommend::Recommendation {
            kind,
            service: SERVICE,
            subject,
            name: "n".into(),
            why: "w".into(),
        };
        Candidate {
            finding: Finding {
                kind,
                domain: "cost",
                severity: "low",
                title: format!("{kind} {subject}"),
                summary: String::new(),
                service: SERVICE.into(),
                subject: subject.into(),
                evidence: Default::default(),
                provenance: Default::default(),
                estimate: Default::default(),
                recommended: Some(rec.log(vec![matcher::body_matcher("^x$")], "none", None)),
                absorbed: Vec::new(),
            },
            rank: if kind == kind::HEALTH_CHECK_LOGS {
                0
            } else {
                4
            },
        }
    };
    let settled = settle(vec![
        finding(kind::DEBUG_LOGS, "a"),
        finding(kind::HEALTH_CHECK_LOGS, "b"),
    ]);
    assert_eq!(kinds(&settled), [("health_check_logs", "b")]);
    assert_eq!(settled[0].absorbed, [(kind::DEBUG_LOGS, "a".to_owned())]);
}

#[test]
fn field_findings_do_not_depend_on_input_order_either() {
    let mut inv = service();
    for (i, e) in inv.events.iter_mut().enumerate() {
        if e.event.kind != "log" {
            continue;
        }
        e.event.sensitive = vec![
            sensitive(
                "email",
                "attribute:message",
                10 + i as u64,
                &format!("x{i} <email>"),
            ),
            sensitive("jwt", "body", 5, "token <jwt>"),
        ];
        e.event.duplicate_fields = vec![DuplicateField {
            keep: "attribute:user_id".into(),
            duplicate: "attribute:userId".into(),
            records: 5,
            bytes: 50,
        }];
    }
    let forward = run(&inv);
    assert!(
        forward
            .iter()
            .any(|f| f.kind == kind::SENSITIVE_LOG_DATA && f.subject == "attribute:message")
    );
    assert!(
        forward
            .iter()
            .any(|f| f.kind == kind::DUPLICATED_LOG_FIELDS)
    );
    let mut reversed = inv.clone();
    reversed.events.reverse();
    for e in &mut reversed.events {
        e.event.sensitive.reverse();
    }
    assert_eq!(forward, run(&reversed));
}

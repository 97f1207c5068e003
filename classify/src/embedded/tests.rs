use super::*;

fn log(template: &str, severity: Option<&str>) -> EventType {
    EventType::log("fp", "svc", template, severity)
}

fn metric(name: &str) -> EventType {
    EventType::metric("fp", "svc", name)
}

fn decide(event: &EventType) -> Classification {
    Embedded.classify_one(event)
}

#[track_caller]
fn assert_category(event: &EventType, category: Category, verdict: Verdict) {
    let c = decide(event);
    assert_eq!(
        (c.category, c.verdict),
        (category, verdict),
        "{}: {}",
        event.name,
        c.rationale
    );
    assert!((0.0..=1.0).contains(&c.confidence));
    assert_eq!(c.classifier, ID);
    assert!(!c.rationale.is_empty());
}

#[test]
fn health_check_paths_and_probes() {
    for template in [
        "GET /health 200",
        "GET /healthz HTTP/1.1 200",
        "GET /ready?verbose=1 200",
        "request path=/livez status=200",
        "GET /api/ping 200",
    ] {
        assert_category(
            &log(template, Some("INFO")),
            Category::HealthCheck,
            Verdict::Waste,
        );
    }
    let probe = EventType {
        examples: vec!["10.0.0.1 - - \"GET / HTTP/1.1\" 200 ua=kube-probe/1.29".into()],
        ..log("<*> - - \"GET / HTTP/1.1\" <*> ua=<*>", Some("info"))
    };
    assert_category(&probe, Category::HealthCheck, Verdict::Waste);
    assert_category(
        &metric("grpc_health_check_total"),
        Category::HealthCheck,
        Verdict::Mixed,
    );
}

#[test]
fn health_check_negatives() {
    for template in [
        "GET /healthcare/claims 200",
        "GET /already-paid 200",
        "user ready to proceed",
    ] {
        assert_ne!(decide(&log(template, None)).category, Category::HealthCheck);
    }
}

#[test]
fn failing_health_check_is_an_error_signal() {
    assert_category(
        &log("readiness probe failed: connection refused", Some("WARN")),
        Category::ErrorSignal,
        Verdict::Keep,
    );
    assert_category(
        &log("GET /healthz 200", Some("ERROR")),
        Category::ErrorSignal,
        Verdict::Keep,
    );
}

#[test]
fn debug_severity_and_markers() {
    for sev in ["DEBUG", "debug", "TRACE", "Verbose", "FINEST"] {
        assert_category(
            &log("cache lookup key=<*>", Some(sev)),
            Category::DebugNoise,
            Verdict::Waste,
        );
    }
    // Debug level wins over alarming words: nobody alerts on DEBUG.
    assert_category(
        &log("retrying after error", Some("debug")),
        Category::DebugNoise,
        Verdict::Waste,
    );
    for template in ["got here 3", "TODO remove: user=<*>", "DEBUG: state=<*>"] {
        assert_category(
            &log(template, Some("INFO")),
            Category::DebugNoise,
            Verdict::Waste,
        );
    }
    assert_category(
        &metric("debug_cache_probe_total"),
        Category::DebugNoise,
        Verdict::Waste,
    );
}

#[test]
fn debug_severity_written_in_plain_text() {
    for template in [
        "DEBUG cache lookup key=<*>",
        "<*> DEBUG cache lookup key=<*>",
        "<timestamp> DEBUG cache lookup key=<*>",
        "level=debug msg=\"cache lookup\" key=<*>",
        "<*> <*> DEBUG [main] c.e.Cache - lookup <*>",
        "host DEBUG [worker-1] c.e.Cache - lookup <*>",
        "D1201 <*> <*> cache.go:42] lookup <*>",
    ] {
        let c = decide(&log(template, None));
        assert_eq!(
            (c.category, c.verdict),
            (Category::DebugNoise, Verdict::Waste),
            "{template}: {}",
            c.rationale
        );
        assert!(c.rationale.contains("written in the message"), "{c:?}");
    }
    // The template masked the level's line prefix; an example still has it.
    let masked = EventType {
        examples: vec!["D1201 10:00:00.123456 1 cache.go:42] lookup k1".into()],
        ..log("<*> <*> <*> cache.go:42] lookup <*>", None)
    };
    assert_category(&masked, Category::DebugNoise, Verdict::Waste);
    // An error level written in the text keeps the record.
    assert_category(
        &log("<*> ERROR [main] c.e.Pay - declined <*>", None),
        Category::ErrorSignal,
        Verdict::Keep,
    );
    // A severity field wins over the text.
    assert_category(
        &log("level=debug msg=<*>", Some("ERROR")),
        Category::ErrorSignal,
        Verdict::Keep,
    );
}

#[test]
fn the_word_debug_in_a_message_is_no_severity() {
    for template in [
        "user enabled debug mode",
        "debug session opened by <*>",
        "the DEBUG flag is off for <*>",
        "GET /debug/vars <*>",
        "received debug=true from <*>",
    ] {
        assert_ne!(
            decide(&log(template, None)).category,
            Category::DebugNoise,
            "{template}"
        );
    }
    // Metric names and HELP text are not log lines.
    let help = EventType {
        description: "DEBUG cache size".into(),
        ..metric("cache_size_bytes")
    };
    assert_ne!(decide(&help).category, Category::DebugNoise);
}

#[test]
fn debug_negatives() {
    for (template, sev) in [
        ("user logged in", Some("INFO")),
        ("debugger attached to worker", Some("info")),
        ("here is the report", None),
    ] {
        assert_ne!(
            decide(&log(template, sev)).category,
            Category::DebugNoise,
            "{template}"
        );
    }
    assert_ne!(
        decide(&metric("http_debugger_sessions")).category,
        Category::DebugNoise
    );
}

#[test]
fn synthetic_tests() {
    for template in [
        "test_checkout completed",
        "synthetic check us-east-1 ok",
        "canary request served",
        "request from k6/0.49 ok",
    ] {
        assert_category(
            &log(template, Some("INFO")),
            Category::SyntheticTest,
            Verdict::Waste,
        );
    }
    assert_category(
        &metric("test_requests_total"),
        Category::SyntheticTest,
        Verdict::Waste,
    );
    let labelled = EventType {
        labels: vec!["route".into(), "synthetic".into()],
        ..metric("http_requests_total")
    };
    assert_category(&labelled, Category::SyntheticTest, Verdict::Waste);
}

#[test]
fn synthetic_negatives() {
    for name in [
        "latest_version_info",
        "contest_entries_total",
        "fastest_route_seconds",
    ] {
        assert_ne!(
            decide(&metric(name)).category,
            Category::SyntheticTest,
            "{name}"
        );
    }
}

#[test]
fn bot_traffic() {
    for example in [
        "GET /products/12 200 ua=\"Mozilla/5.0 (compatible; Googlebot/2.1)\"",
        "GET /a 200 ua=\"Mozilla/5.0 (compatible; SomeNewBot/0.3)\"",
        "GET /robots.txt 200",
    ] {
        let e = EventType {
            examples: vec![example.into()],
            ..log("GET <*> <*> ua=<*>", Some("info"))
        };
        assert_category(&e, Category::BotTraffic, Verdict::Waste);
    }
}

#[test]
fn bot_negatives() {
    for template in [
        "chatbot session opened",
        "robot arm calibrated",
        "GET /bots 200",
    ] {
        assert_ne!(
            decide(&log(template, None)).category,
            Category::BotTraffic,
            "{template}"
        );
    }
}

#[test]
fn error_signals() {
    for template in [
        "payment provider call failed",
        "unhandled exception in worker",
        "thread panicked at <*>",
        "\"GET /api HTTP/1.1\" 503 12",
        "request done status=502 duration=<*>",
    ] {
        assert_category(
            &log(template, Some("INFO")),
            Category::ErrorSignal,
            Verdict::Keep,
        );
    }
    assert_category(
        &log("request aborted", Some("ERROR")),
        Category::ErrorSignal,
        Verdict::Keep,
    );
    assert_category(
        &metric("http_client_errors_total"),
        Category::ErrorSignal,
        Verdict::Keep,
    );
    let help = EventType {
        description: "Number of failed jobs.".into(),
        ..metric("jobs_outcome_total")
    };
    assert_category(&help, Category::ErrorSignal, Verdict::Keep);
}

#[test]
fn error_negatives() {
    for template in [
        "request took 503ms",
        "uploaded 500 bytes",
        "terror level raised in game",
        "status=200 size=512",
    ] {
        assert_ne!(
            decide(&log(template, Some("INFO"))).category,
            Category::ErrorSignal,
            "{template}"
        );
    }
    assert_ne!(
        decide(&log("disk almost full", Some("WARN"))).category,
        Category::ErrorSignal
    );
}

#[test]
fn business_events() {
    for template in [
        "order <*> placed",
        "OrderPlaced id=<*>",
        "payment captured amount=<*>",
        "checkout completed",
        "user signup from <*>",
        "purchase recorded",
    ] {
        assert_category(
            &log(template, Some("INFO")),
            Category::BusinessEvent,
            Verdict::Keep,
        );
    }
    assert_category(
        &metric("shop_orders_total"),
        Category::BusinessEvent,
        Verdict::Keep,
    );
    let labelled = EventType {
        labels: vec!["order_id".into()],
        ..log("item reserved", Some("INFO"))
    };
    assert_category(&labelled, Category::BusinessEvent, Verdict::Keep);
}

#[test]
fn business_negatives() {
    for template in [
        "border radius recomputed",
        "recorder flushed",
        "reordering queue",
    ] {
        assert_ne!(
            decide(&log(template, None)).category,
            Category::BusinessEvent,
            "{template}"
        );
    }
}

#[test]
fn runtime_families_are_operational() {
    for name in [
        "go_goroutines",
        "go_gc_duration_seconds",
        "process_cpu_seconds_total",
        "jvm_memory_used_bytes",
    ] {
        assert_category(&metric(name), Category::Operational, Verdict::Mixed);
    }
    assert_category(
        &log("server listening on <*>", Some("INFO")),
        Category::Operational,
        Verdict::Keep,
    );
}

#[test]
fn operational_negatives() {
    // A `go` or `process` *word* is not the runtime collector's prefix.
    for name in ["cargo_shipments_total", "processed_items_total"] {
        assert_ne!(
            decide(&metric(name)).category,
            Category::Operational,
            "{name}"
        );
    }
    // The log-only lifecycle rule does not apply to metric names.
    assert_ne!(
        decide(&metric("jobs_started_total")).category,
        Category::Operational
    );
}

#[test]
fn unknown_is_kept_with_low_confidence() {
    let c = decide(&metric("widget_flux_ratio"));
    assert_eq!(c.category, Category::Unknown);
    assert_eq!(c.verdict, Verdict::Keep);
    assert!(c.confidence < 0.5);
}

#[test]
fn deterministic_and_complete() {
    let batch = [
        EventType::metric("a", "svc", "go_goroutines"),
        EventType::log("b", "svc", "GET /healthz 200", Some("INFO")),
        EventType::log("c", "svc", "widget <*> frobbed", None),
    ];
    let first: Vec<_> = batch.iter().map(|e| Embedded.classify_one(e)).collect();
    let second: Vec<_> = batch.iter().map(|e| Embedded.classify_one(e)).collect();
    assert_eq!(first, second);
    let fingerprints: Vec<_> = first.iter().map(|c| c.fingerprint.as_str()).collect();
    assert_eq!(fingerprints, ["a", "b", "c"]);
}

#[tokio::test]
async fn classifier_trait_costs_nothing() {
    let batch = vec![EventType::log("x", "svc", "GET /ready 200", None)];
    let result = Embedded.classify(&batch).await;
    let Ok(result) = result else {
        panic!("embedded classifier failed: {result:?}");
    };
    assert_eq!(result.classifications.len(), 1);
    assert!(result.unclassified.is_empty());
    assert_eq!(result.usage, TokenUsage::default());
    assert_eq!(Embedded.id(), "embedded/3");
}

#[test]
fn words_split_on_case_and_punctuation() {
    assert_eq!(
        split_words("OrderPlaced http_requests-total v2Beta"),
        ["order", "placed", "http", "requests", "total", "v2", "beta"]
    );
}

/// A log event as the control plane builds it from a plain line: the
/// template as the name (here the line itself) and the line as example.
fn line(text: &str) -> EventType {
    EventType {
        examples: vec![text.into()],
        ..log(text, None)
    }
}

fn span(name: &str, example: &str) -> EventType {
    EventType {
        kind: EventKind::Span,
        labels: vec!["http.route".into(), "user_agent.original".into()],
        examples: vec![example.into()],
        ..EventType::metric("fp", "svc", name)
    }
}

#[test]
fn debug_levels_in_every_written_form() {
    for text in [
        "DEBUG cache lookup key=42",
        "2026-01-01T00:00:00Z DEBUG cache lookup",
        "level=debug msg=\"cache lookup\"",
        "[DEBUG] cache lookup",
        "D1201 12:00:00.000 1 cache.go:42] lookup",
        "<7>Dec  1 12:00:00 web-1 app[1]: cache lookup",
        "<15>1 2026-12-01T12:00:00Z web-1 app 1 - - cache lookup",
        "DEBUG:root:cache lookup",
        "DEBU[0000] cache lookup",
        "[12:00:00 DBG] cache lookup",
        "dbug: Acme.Api.OrdersController[0] lookup",
        "D, [2026-12-01T12:00:00.123456 #1] DEBUG -- : lookup",
        "{\"level\":20,\"msg\":\"lookup\"}",
    ] {
        let c = decide(&line(text));
        assert_eq!(
            (c.category, c.verdict),
            (Category::DebugNoise, Verdict::Waste),
            "{text}: {}",
            c.rationale
        );
    }
}

#[test]
fn syslog_error_priorities_are_kept() {
    for text in [
        "<11>Dec  1 12:00:00 web-1 app[1]: payment provider unreachable",
        "<3>1 2026-12-01T12:00:00Z web-1 app 1 - - disk gone",
        "<129>Dec  1 12:00:00 lb-1 haproxy[3]: Server be/api-2 is DOWN",
    ] {
        assert_category(&line(text), Category::ErrorSignal, Verdict::Keep);
    }
}

#[test]
fn debug_markers_do_not_override_a_warning() {
    assert_category(
        &line("2026-12-01T12:00:00Z ERROR debug: dump failed for job 7"),
        Category::ErrorSignal,
        Verdict::Keep,
    );
    assert_ne!(
        decide(&log("temp debug output enabled", Some("WARN"))).verdict,
        Verdict::Waste
    );
}

#[test]
fn probe_routes_and_agents() {
    for text in [
        "GET /readyz 200",
        "GET /-/healthy 200",
        "GET /-/ready 200",
        "GET /_health 200",
        "GET /heartbeat 200",
        "\"GET /up HTTP/1.1\" 200 2",
        "\"GET /actuator/health/liveness HTTP/1.1\" 200 2",
        "\"GET / HTTP/1.1\" 200 2 \"-\" \"Envoy/HC\"",
        "\"GET / HTTP/1.1\" 200 2 \"-\" \"GoogleHC/1.0\"",
        "\"GET / HTTP/1.1\" 200 2 \"-\" \"ELB-HealthChecker/2.0\"",
        "\"GET /v1/status HTTP/1.1\" 200 2 \"-\" \"Consul Health Check\"",
    ] {
        assert_category(&line(text), Category::HealthCheck, Verdict::Waste);
    }
}

#[test]
fn routes_that_only_look_like_probes() {
    for text in [
        "GET /live/stream/8812.m3u8 200",
        "GET /ready-meals/vegan 200",
        "GET /live-scores/football 200",
        "GET /help/health-and-safety 200",
        "GET /api/v1/heartbeats/device-77 200",
        "GET /upload 200",
        "GET /pingback/settings 200",
    ] {
        assert_ne!(
            decide(&line(text)).category,
            Category::HealthCheck,
            "{text}"
        );
    }
}

#[test]
fn failing_and_slow_probes_stay_visible() {
    for text in [
        "\"GET /healthz HTTP/1.1\" 503 19 \"-\" \"kube-probe/1.29\"",
        "method=GET path=/health status=500 user_agent=ELB-HealthChecker/2.0",
    ] {
        assert_category(&line(text), Category::ErrorSignal, Verdict::Keep);
    }
    // A warning about a probe is a signal, not a probe.
    let slow = decide(&line(
        "2026-12-01T12:00:00Z WARN health check endpoint slow",
    ));
    assert_ne!(slow.verdict, Verdict::Waste, "{}", slow.rationale);
}

#[test]
fn uptime_monitors_and_canary_traffic() {
    for text in [
        "\"GET / HTTP/1.1\" 200 \"Mozilla/5.0+(compatible; UptimeRobot/2.0)\"",
        "\"GET /login HTTP/1.1\" 200 \"Pingdom.com_bot_version_1.4\"",
        "\"GET / HTTP/1.1\" 200 \"Mozilla/5.0 (compatible; Site24x7)\"",
        "canary request served in 12ms",
    ] {
        assert_category(&line(text), Category::SyntheticTest, Verdict::Waste);
    }
    // A canary *deployment* is a rollout event.
    assert_ne!(
        decide(&line("INFO canary deployment promoted to 50% of traffic")).category,
        Category::SyntheticTest
    );
}

#[test]
fn more_crawlers() {
    for text in [
        "\"GET /blog HTTP/1.1\" 200 \"Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)\"",
        "\"GET /p/1 HTTP/1.1\" 200 \"WhatsApp/2.23.20.0\"",
        "\"GET / HTTP/1.1\" 200 \"Mozilla/5.0 (compatible; SeznamBot/4.0)\"",
        "\"GET / HTTP/1.1\" 200 \"Mozilla/5.0 (compatible; Bytespider; x)\"",
        "\"GET / HTTP/1.1\" 200 \"Mozilla/5.0 (compatible; NewCrawler; +https://x)\"",
    ] {
        assert_category(&line(text), Category::BotTraffic, Verdict::Waste);
    }
    for text in [
        "POST /api/v1/bot-detection/report 204",
        "chatbot reply generated in 812ms",
        "POST /api/chatbot/messages 201",
    ] {
        assert_ne!(decide(&line(text)).category, Category::BotTraffic, "{text}");
    }
}

#[test]
fn spans_of_probes_crawlers_and_tests_are_waste() {
    for (name, example, category) in [
        (
            "GET /healthz",
            "GET /healthz kind=server status=ok http.route=/healthz user_agent=kube-probe/1.29",
            Category::HealthCheck,
        ),
        (
            "GET",
            "GET kind=server status=unset url.path=/ user_agent=GoogleHC/1.0",
            Category::HealthCheck,
        ),
        (
            "grpc.health.v1.Health/Check",
            "grpc.health.v1.Health/Check kind=server status=ok rpc.system=grpc",
            Category::HealthCheck,
        ),
        (
            "GET /products/{id}",
            "GET /products/{id} kind=server status=ok http.route=/products/{id} user_agent=Mozilla/5.0 (compatible; Googlebot/2.1)",
            Category::BotTraffic,
        ),
        (
            "POST /api/cart",
            "POST /api/cart kind=server status=ok http.route=/api/cart user_agent=k6/0.49.0",
            Category::SyntheticTest,
        ),
    ] {
        assert_category(&span(name, example), category, Verdict::Waste);
    }
}

#[test]
fn failed_and_ordinary_spans_are_kept() {
    for (name, example) in [
        (
            "GET /healthz",
            "GET /healthz kind=server status=error http.route=/healthz user_agent=kube-probe/1.29",
        ),
        (
            "GET /products/{id}",
            "GET /products/{id} kind=server status=error http.route=/products/{id} user_agent=Googlebot/2.1",
        ),
        (
            "SELECT shop.items",
            "SELECT shop.items kind=client status=error db.system=postgresql",
        ),
    ] {
        let c = decide(&span(name, example));
        assert_eq!(
            (c.category, c.verdict),
            (Category::ErrorSignal, Verdict::Keep),
            "{example}"
        );
        assert!(c.rationale.contains("span status"), "{}", c.rationale);
    }
    for (name, example) in [
        (
            "GET /api/v1/items/{id}",
            "GET /api/v1/items/{id} kind=server status=ok http.route=/api/v1/items/{id} user_agent=Mozilla/5.0 (X11; Linux x86_64)",
        ),
        (
            "PING",
            "PING kind=client status=unset db.system=redis db.operation=PING",
        ),
        (
            "GET /healthcare/providers",
            "GET /healthcare/providers kind=server status=ok http.route=/healthcare/providers",
        ),
    ] {
        assert_ne!(
            decide(&span(name, example)).verdict,
            Verdict::Waste,
            "{example}"
        );
    }
}

#[test]
fn metric_families_keep_their_rules() {
    // The user-agent rules read records, not family names.
    for name in ["slackbot_messages_total", "pingdom_checks_total"] {
        assert_eq!(decide(&metric(name)).category, Category::Unknown, "{name}");
    }
    assert_category(
        &metric("canary_deploy_requests_total"),
        Category::SyntheticTest,
        Verdict::Waste,
    );
    assert_category(
        &metric("grpc_health_check_total"),
        Category::HealthCheck,
        Verdict::Mixed,
    );
}

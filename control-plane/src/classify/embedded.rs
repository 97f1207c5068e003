//! The embedded classifier: rules over names, templates, HELP text,
//! severities and label keys. No key, no network, deterministic — the
//! default when no provider is configured and the cheapest first stage
//! (spec §6.3: garbage and intrinsic value are decided before anything
//! costs tokens).
//!
//! Rule order matters and follows the spec's "cheapest and most certain
//! first": debug noise, then error signals (so a *failing* health check or
//! canary stays visible), then health checks, synthetic tests, bot traffic,
//! business events, operational runtime families, and finally `unknown`
//! with a low confidence and a `keep` verdict — nothing is recommended for
//! dropping on a guess.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;

use super::{
    BatchResult, Category, Classification, Classifier, ClassifyFuture, EventKind, EventType,
    TokenUsage, Verdict,
};

/// Bumped whenever a rule changes, so cached verdicts are recomputed.
pub const ID: &str = "embedded/1";

/// The rule-based classifier. Stateless; cheap to construct.
#[derive(Debug, Clone, Copy, Default)]
pub struct Embedded;

impl Embedded {
    pub fn new() -> Embedded {
        Embedded
    }

    /// Classifies one event type. Always decides (possibly `unknown`).
    pub fn classify_one(&self, event: &EventType) -> Classification {
        let text = Text::new(event);
        let (category, verdict, confidence, rationale) = RULES
            .iter()
            .find_map(|rule| rule(event, &text))
            .unwrap_or_else(|| {
                (
                    Category::Unknown,
                    Verdict::Keep,
                    0.2,
                    "no rule matched; kept until reviewed".to_string(),
                )
            });
        Classification {
            fingerprint: event.fingerprint.clone(),
            category,
            verdict,
            confidence,
            rationale,
            classifier: ID.to_string(),
        }
    }
}

impl Classifier for Embedded {
    fn id(&self) -> String {
        ID.to_string()
    }

    fn classify<'a>(&'a self, batch: &'a [EventType]) -> ClassifyFuture<'a> {
        let result = BatchResult {
            classifications: batch.iter().map(|e| self.classify_one(e)).collect(),
            unclassified: Vec::new(),
            usage: TokenUsage::default(),
        };
        Box::pin(std::future::ready(Ok(result)))
    }
}

type Decision = (Category, Verdict, f64, String);
type Rule = fn(&EventType, &Text) -> Option<Decision>;

const RULES: [Rule; 7] = [
    debug_noise,
    error_signal,
    health_check,
    synthetic_test,
    bot_traffic,
    business_event,
    operational,
];

/// The event type's text, lowercased once, plus its words.
struct Text {
    /// Name (template) and examples: what the records themselves say.
    body: String,
    /// `body` plus the description, for rules where HELP text is evidence.
    all: String,
    words: BTreeSet<String>,
    labels: BTreeSet<String>,
}

impl Text {
    fn new(event: &EventType) -> Text {
        let mut body = event.name.to_lowercase();
        for example in &event.examples {
            body.push('\n');
            body.push_str(&example.to_lowercase());
        }
        let all = format!("{body}\n{}", event.description.to_lowercase());
        let mut words = BTreeSet::new();
        for source in std::iter::once(&event.name)
            .chain(std::iter::once(&event.description))
            .chain(&event.examples)
        {
            words.extend(split_words(source));
        }
        Text {
            body,
            all,
            words,
            labels: event.labels.iter().map(|l| l.to_lowercase()).collect(),
        }
    }

    /// The first of `stems` present as a word, allowing the plural and the
    /// `-ed` / `-ing` forms (`orders`, `failed`) but not arbitrary
    /// substrings (`border`, `recorder`).
    fn word(&self, stems: &[&'static str]) -> Option<&'static str> {
        stems.iter().copied().find(|stem| {
            self.words.iter().any(|w| {
                w.strip_prefix(stem)
                    .is_some_and(|rest| matches!(rest, "" | "s" | "es" | "ed" | "d" | "ing"))
            })
        })
    }
}

/// Words of `s`, lowercased: split on anything not alphanumeric and on
/// camelCase boundaries (`OrderPlaced` → `order`, `placed`), since metric
/// names, span names and templates use all three conventions.
fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for c in s.chars() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

fn severity(event: &EventType) -> Option<String> {
    event
        .severity
        .as_deref()
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
}

fn is_debug_severity(s: &str) -> bool {
    ["debug", "trace", "verbose", "fine"]
        .iter()
        .any(|p| s.starts_with(p))
}

fn is_error_severity(s: &str) -> bool {
    [
        "error", "err", "fatal", "critical", "crit", "alert", "emerg", "panic", "severe",
    ]
    .iter()
    .any(|p| s.starts_with(p))
}

/// Leftovers of someone debugging in production.
const DEBUG_MARKERS: [&str; 11] = [
    "got here",
    "todo remove",
    "todo: remove",
    "todo - remove",
    "remove me",
    "remove this",
    "temporary debug",
    "temp debug",
    "debug:",
    "[debug]",
    "dumping ",
];

fn debug_noise(event: &EventType, text: &Text) -> Option<Decision> {
    if let Some(sev) = severity(event).filter(|s| is_debug_severity(s)) {
        return Some((
            Category::DebugNoise,
            Verdict::Waste,
            0.9,
            format!("severity `{sev}` is below the production logging level"),
        ));
    }
    if let Some(marker) = DEBUG_MARKERS.iter().find(|m| text.body.contains(*m)) {
        return Some((
            Category::DebugNoise,
            Verdict::Waste,
            0.8,
            format!("debug marker `{}` left in the message", marker.trim()),
        ));
    }
    let name = event.name.to_lowercase();
    if event.kind == EventKind::Metric && (name.starts_with("debug_") || name.contains("_debug_")) {
        return Some((
            Category::DebugNoise,
            Verdict::Waste,
            0.7,
            "metric family named as a debug instrument".to_string(),
        ));
    }
    None
}

/// An HTTP 5xx status in a log line, with enough context that a latency or
/// size that happens to be 500-something does not count.
static STATUS_5XX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(\b(status|status_code|http_status|code)\b"?\s*[=:]\s*"?5\d\d\b|http/\d(\.\d)?"?\s+5\d\d\b)"#)
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

const ERROR_WORDS: [&str; 10] = [
    "error",
    "exception",
    "fail",
    "failure",
    "fatal",
    "panic",
    "panicked",
    "traceback",
    "crash",
    "5xx",
];

fn error_signal(event: &EventType, text: &Text) -> Option<Decision> {
    if let Some(sev) = severity(event).filter(|s| is_error_severity(s)) {
        return Some((
            Category::ErrorSignal,
            Verdict::Keep,
            0.9,
            format!("severity `{sev}` reports a failure"),
        ));
    }
    if let Some(word) = text.word(&ERROR_WORDS) {
        let confidence = if event.kind == EventKind::Metric {
            0.8
        } else {
            0.75
        };
        return Some((
            Category::ErrorSignal,
            Verdict::Keep,
            confidence,
            format!("mentions `{word}`: failures are kept"),
        ));
    }
    if STATUS_5XX.is_match(&text.body) {
        return Some((
            Category::ErrorSignal,
            Verdict::Keep,
            0.75,
            "HTTP 5xx status: server errors are kept".to_string(),
        ));
    }
    None
}

/// Probe endpoints as whole path segments (`/health` but not
/// `/healthcare`).
static HEALTH_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)/(healthz?|health[-_]?check|readyz?|readiness|livez?|liveness|ping)([^a-z0-9_]|$)",
    )
    .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

const HEALTH_MARKERS: [&str; 8] = [
    "kube-probe",
    "elb-healthchecker",
    "googlehc",
    "health check",
    "healthcheck",
    "health-check",
    "readiness probe",
    "liveness probe",
];

fn health_check(event: &EventType, text: &Text) -> Option<Decision> {
    let evidence = HEALTH_PATH
        .captures(&text.body)
        .and_then(|c| c.get(1))
        .map(|m| format!("probe endpoint `/{}`", m.as_str()))
        .or_else(|| {
            HEALTH_MARKERS
                .iter()
                .find(|m| text.body.contains(*m))
                .map(|m| format!("health-check marker `{m}`"))
        })
        .or_else(|| {
            let name = split_words(&event.name);
            name.windows(2)
                .any(|w| w[0] == "health" && w[1] == "check")
                .then(|| "named as a health check".to_string())
        })?;
    // A health metric is a signal in itself (is the service up?); what is
    // waste is one record per probe request.
    if event.kind == EventKind::Metric {
        Some((
            Category::HealthCheck,
            Verdict::Mixed,
            0.6,
            format!("{evidence}: keep the aggregate, not per-probe detail"),
        ))
    } else {
        Some((
            Category::HealthCheck,
            Verdict::Waste,
            0.9,
            format!("{evidence}: one record per probe carries no information while it succeeds"),
        ))
    }
}

/// `test_` as the start of a word: `test_checkout` but not `latest_version`
/// or `contest_entries`.
static TEST_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(^|[^a-z0-9])test_").unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

const SYNTHETIC_MARKERS: [&str; 9] = [
    "synthetic",
    "canary",
    "smoke test",
    "smoke-test",
    "load test",
    "loadtest",
    "k6/",
    "locust",
    "jmeter",
];

const SYNTHETIC_LABELS: [&str; 4] = ["synthetic", "test_run", "test_run_id", "test_id"];

fn synthetic_test(_event: &EventType, text: &Text) -> Option<Decision> {
    let evidence = if TEST_PREFIX.is_match(&text.body) {
        "`test_` prefix".to_string()
    } else if let Some(m) = SYNTHETIC_MARKERS.iter().find(|m| text.all.contains(*m)) {
        format!("synthetic-traffic marker `{}`", m.trim_end_matches('/'))
    } else if let Some(l) = SYNTHETIC_LABELS.iter().find(|l| text.labels.contains(**l)) {
        format!("label `{l}`")
    } else {
        return None;
    };
    Some((
        Category::SyntheticTest,
        Verdict::Waste,
        0.75,
        format!("{evidence}: test traffic, not user traffic"),
    ))
}

/// Crawler user agents: well-known names, or any `…bot/1.2`-style product
/// token (the version keeps `chatbot` service names out).
static BOT_AGENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(googlebot|bingbot|slurp|duckduckbot|baiduspider|yandexbot|ahrefsbot|semrushbot|mj12bot|dotbot|petalbot|applebot|amazonbot|gptbot|ccbot|claudebot|bytespider|facebookexternalhit|[a-z0-9_-]*(bot|crawler|spider)/\d)",
    )
    .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

fn bot_traffic(_event: &EventType, text: &Text) -> Option<Decision> {
    let evidence = if let Some(m) = BOT_AGENT.find(&text.body) {
        format!("crawler user agent `{}`", m.as_str())
    } else if text.body.contains("/robots.txt") {
        "request for `/robots.txt`".to_string()
    } else {
        return None;
    };
    Some((
        Category::BotTraffic,
        Verdict::Waste,
        0.7,
        format!("{evidence}: automated traffic; drop unless security needs it"),
    ))
}

const BUSINESS_WORDS: [&str; 9] = [
    "order",
    "payment",
    "checkout",
    "signup",
    "purchase",
    "invoice",
    "refund",
    "subscription",
    "cart",
];

const BUSINESS_LABELS: [&str; 4] = ["order_id", "payment_id", "invoice_id", "checkout_id"];

fn business_event(_event: &EventType, text: &Text) -> Option<Decision> {
    let evidence = if let Some(word) = text.word(&BUSINESS_WORDS) {
        format!("business term `{word}`")
    } else if text.body.contains("sign up") || text.body.contains("sign_up") {
        "business term `sign up`".to_string()
    } else if let Some(l) = BUSINESS_LABELS.iter().find(|l| text.labels.contains(**l)) {
        format!("label `{l}`")
    } else {
        return None;
    };
    Some((
        Category::BusinessEvent,
        Verdict::Keep,
        0.7,
        format!("{evidence}: business events are left alone"),
    ))
}

/// Families client libraries export for every process: useful in an
/// incident, rarely all of them all the time.
const RUNTIME_PREFIXES: [&str; 7] = [
    "go_",
    "process_",
    "jvm_",
    "python_",
    "nodejs_",
    "dotnet_",
    "promhttp_",
];

/// Lifecycle and state changes: rare and informative.
const LIFECYCLE_MARKERS: [&str; 7] = [
    "starting",
    "started",
    "listening on",
    "shutting down",
    "stopped",
    "configuration reloaded",
    "config reloaded",
];

fn operational(event: &EventType, text: &Text) -> Option<Decision> {
    let name = event.name.to_lowercase();
    if event.kind == EventKind::Metric {
        let prefix = RUNTIME_PREFIXES.iter().find(|p| name.starts_with(*p))?;
        return Some((
            Category::Operational,
            Verdict::Mixed,
            0.8,
            format!("runtime family `{prefix}*`: keep what dashboards and alerts use"),
        ));
    }
    let marker = LIFECYCLE_MARKERS.iter().find(|m| text.body.contains(*m))?;
    Some((
        Category::Operational,
        Verdict::Keep,
        0.5,
        format!("lifecycle message (`{marker}`): state changes are left alone"),
    ))
}

#[cfg(test)]
mod tests {
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
        assert_eq!(Embedded.id(), "embedded/1");
    }

    #[test]
    fn words_split_on_case_and_punctuation() {
        assert_eq!(
            split_words("OrderPlaced http_requests-total v2Beta"),
            ["order", "placed", "http", "requests", "total", "v2", "beta"]
        );
    }
}

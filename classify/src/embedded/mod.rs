//! The embedded classifier: rules over names, templates, HELP text,
//! severities and label keys. No key, no network, deterministic — the
//! default when no provider is configured and the cheapest first stage
//! (control-plane.md §6.3: garbage and intrinsic value are decided before anything
//! costs tokens).
//!
//! Rule order matters and follows the spec's "cheapest and most certain
//! first": debug noise, then error signals (so a *failing* health check or
//! canary stays visible), then health checks, synthetic tests, bot traffic,
//! business events, operational runtime families, and finally `unknown`
//! with a low confidence and a `keep` verdict — nothing is recommended for
//! dropping on a guess.
//!
//! Log records without a severity field are read for the level their
//! logger wrote in the text (`severity.rs`: plain, logfmt, JSON, log4j,
//! glog/klog, syslog priorities, …). Spans are judged on their name,
//! attribute keys and example lines (`GET /healthz kind=server status=ok
//! http.route=/healthz user_agent=kube-probe/1.29`): `status=error` keeps a
//! span, a probe route or agent makes it a health check, crawler and
//! uptime-monitor agents make it bot or synthetic traffic. A warning about
//! a probe or a synthetic check is a signal and is not judged waste.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;

mod severity;

use super::{
    BatchResult, Category, Classification, Classifier, ClassifyFuture, EventKind, EventType,
    TokenUsage, Verdict,
};

/// Bumped whenever a rule changes, so cached verdicts are recomputed.
pub const ID: &str = "embedded/3";

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
    /// The record's severity and how it was found (see [`severity`]),
    /// read once: the debug and error rules both ask for it.
    severity: Option<(String, &'static str)>,
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
            severity: severity(event),
        }
    }

    /// Whether the record's severity is a warning or worse.
    fn warning_or_worse(&self) -> bool {
        self.severity
            .as_ref()
            .is_some_and(|(s, _)| is_warning_or_worse(s))
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

/// The record's severity: its severity field, else the level written in
/// its text (plain lines carry it there), with how it was found for the
/// rationale.
fn severity(event: &EventType) -> Option<(String, &'static str)> {
    let field = event
        .severity
        .as_deref()
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty());
    if let Some(field) = field {
        return Some((field, ""));
    }
    if event.kind != EventKind::Log {
        return None;
    }
    std::iter::once(&event.name)
        .chain(&event.examples)
        .find_map(|line| severity::written(line))
        .map(|s| (s, " (written in the message)"))
}

fn is_debug_severity(s: &str) -> bool {
    ["debug", "trace", "verbose", "fine", "dbg", "trc", "vrb"]
        .iter()
        .any(|p| s.starts_with(p))
}

/// Warnings and worse: a record someone meant to be noticed, which the
/// health-check and synthetic rules leave alone (`health check endpoint
/// slow` is a signal, not a probe).
fn is_warning_or_worse(s: &str) -> bool {
    is_error_severity(s) || s.starts_with("warn") || s.starts_with("wrn")
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
    if let Some((sev, how)) = text.severity.as_ref().filter(|(s, _)| is_debug_severity(s)) {
        return Some((
            Category::DebugNoise,
            Verdict::Waste,
            0.9,
            format!("severity `{sev}`{how} is below the production logging level"),
        ));
    }
    if let Some(marker) = DEBUG_MARKERS
        .iter()
        .find(|m| text.body.contains(*m))
        .filter(|_| !text.warning_or_worse())
    {
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

/// A span's status as the control plane writes it in the example lines.
static SPAN_ERROR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(^|\s)(status|otel\.status_code)=(error|STATUS_CODE_ERROR)(\s|$)")
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

fn error_signal(event: &EventType, text: &Text) -> Option<Decision> {
    if event.kind == EventKind::Span && event.examples.iter().any(|e| SPAN_ERROR.is_match(e)) {
        return Some((
            Category::ErrorSignal,
            Verdict::Keep,
            0.9,
            "span status `error`: failed operations are kept".to_string(),
        ));
    }
    if let Some((sev, how)) = text.severity.as_ref().filter(|(s, _)| is_error_severity(s)) {
        return Some((
            Category::ErrorSignal,
            Verdict::Keep,
            0.9,
            format!("severity `{sev}`{how} reports a failure"),
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
/// `/healthcare` or `/health-insurance`): names only probes use may have
/// sub-paths (`/health/db`, `/actuator/health/liveness`); common words
/// (`/ready`, `/live`, `/ping`, Rails' `/up`) must end the path, so
/// `/live/stream` and `/ready-meals` are not probes.
static HEALTH_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r#"(?i)/_{0,2}(?:(healthz?|healthy|health[-_]?check|readyz|livez|readiness|liveness|heartbeat)(?:[/?#\s"'&,;)\]]|$)"#,
        r#"|(ready|live|ping|up)(?:[?#\s"'&,;)\]]|$))"#,
    ))
    .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// Probe user agents (Kubernetes, AWS and Google load balancers, Envoy;
/// Consul's and Route 53's contain "health check") and what applications
/// write about their own probes.
const HEALTH_MARKERS: [&str; 9] = [
    "kube-probe",
    "elb-healthchecker",
    "googlehc",
    "envoy/hc",
    "health check",
    "healthcheck",
    "health-check",
    "readiness probe",
    "liveness probe",
];

fn health_check(event: &EventType, text: &Text) -> Option<Decision> {
    if text.warning_or_worse() {
        return None;
    }
    let evidence = HEALTH_PATH
        .captures(&text.body)
        .and_then(|c| c.get(1).or_else(|| c.get(2)))
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

const SYNTHETIC_MARKERS: [&str; 8] = [
    "synthetic",
    "smoke test",
    "smoke-test",
    "load test",
    "loadtest",
    "k6/",
    "locust",
    "jmeter",
];

const SYNTHETIC_LABELS: [&str; 4] = ["synthetic", "test_run", "test_run_id", "test_id"];

/// Uptime monitors' and load generators' user agents, read in log lines
/// and span examples (metric families keep the rules they had).
const SYNTHETIC_AGENTS: [&str; 11] = [
    "gatling",
    "uptimerobot",
    "pingdom",
    "statuscake",
    "site24x7",
    "uptimechecks",
    "checklyhq",
    "uptime-kuma",
    "betteruptime",
    "better uptime",
    "blackbox exporter",
];

/// Canary *traffic* (`canary request served`), not a canary *deployment*
/// (`canary deployment promoted to 50%`), which is a rollout event. For log
/// lines and spans; any "canary" marks a metric family, as before.
static CANARY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"canar(?:y|ies)(?:[\s_-]+(deploy|release|rollout|analysis|promot|version|build|weight|stage|step))?",
    )
    .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

fn synthetic_test(event: &EventType, text: &Text) -> Option<Decision> {
    if text.warning_or_worse() {
        return None;
    }
    let records = event.kind != EventKind::Metric;
    let canary = if records {
        CANARY.captures_iter(&text.all).any(|c| c.get(1).is_none())
    } else {
        text.all.contains("canary")
    };
    let evidence = if TEST_PREFIX.is_match(&text.body) {
        "`test_` prefix".to_string()
    } else if let Some(m) = SYNTHETIC_MARKERS.iter().find(|m| text.all.contains(*m)) {
        format!("synthetic-traffic marker `{}`", m.trim_end_matches('/'))
    } else if let Some(m) = SYNTHETIC_AGENTS
        .iter()
        .find(|m| records && text.body.contains(*m))
    {
        format!("uptime-monitor or load-test agent `{m}`")
    } else if canary {
        "synthetic-traffic marker `canary`".to_string()
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

/// More crawlers and link-preview fetchers, and the `(compatible; …Bot`
/// comment crawlers put in their user agent: read in log lines and span
/// examples only, where user agents appear (a metric family named after a
/// Slack bot is not crawler traffic).
static BOT_AGENT_MORE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)\b(slackbot|discordbot|telegrambot|twitterbot|linkedinbot|whatsapp/|ia_archiver|archive\.org_bot|seznambot|sogou|exabot|blexbot|dataforseobot|barkrowler",
        r"|mediapartners-google|adsbot-google|google-inspectiontool|perplexitybot|oai-searchbot|chatgpt-user|meta-externalagent",
        r"|compatible;\s*[a-z0-9 ._-]*(bot|crawler|spider)\b)",
    ))
    .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

fn bot_traffic(event: &EventType, text: &Text) -> Option<Decision> {
    let more = || {
        (event.kind != EventKind::Metric)
            .then(|| BOT_AGENT_MORE.find(&text.body))
            .flatten()
    };
    let evidence = if let Some(m) = BOT_AGENT.find(&text.body).or_else(more) {
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
mod tests;

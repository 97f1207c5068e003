//! `debug_metric`: families whose name or HELP says they are debug, test,
//! temporary or fake telemetry.
//!
//! Names are split into tokens on `_`, `:`, `.` and `-`, and only whole
//! tokens count, never substrings (`latest_build` is not `test`). Tokens
//! are of two sorts:
//!
//! - markers — `debug`, `test`, `synthetic`, `dummy`, `fake` — count
//!   anywhere, except `test` right after `ab` (A/B-test metrics are
//!   product telemetry);
//! - namespace words — `tmp`, `temp`, `sample`, `example`, `demo` — count
//!   only as the first token (`tmp_…`, `demo_api_…`): inside a name they
//!   are ordinary nouns (`pg_stat_database_temp_bytes`,
//!   `node_hwmon_temp_celsius`, `…_sample_rate`). `temp` never counts next
//!   to a temperature unit.
//!
//! HELP text matches whole phrases ("for debugging", "test only", "do not
//! use", "temporary metric", "synthetic data", …), not single words, since
//! HELP routinely describes debug logs or temporary files.
//!
//! A family that is read gets one severity step less and the signal quality
//! domain: the problem is then dashboards reading test data, not spend.

use super::recommend::DropPolicy;
use super::{Candidate, Ctx, Family, Finding, domain, estimate, kind, volume_clause};

const MARKERS: [&str; 5] = ["debug", "test", "synthetic", "dummy", "fake"];
const NAMESPACES: [&str; 5] = ["tmp", "temp", "sample", "example", "demo"];
const TEMPERATURE_UNITS: [&str; 3] = ["celsius", "fahrenheit", "kelvin"];

const HELP_PHRASES: &[&str] = &[
    "debug only",
    "debugging only",
    "for debug",
    "for debugging",
    "debug purposes",
    "debugging purposes",
    "debug metric",
    "test only",
    "testing only",
    "for testing",
    "testing purposes",
    "test metric",
    "temporary metric",
    "temporary counter",
    "temporary gauge",
    "temporary histogram",
    "temporary debug",
    "temporary hack",
    "temporary instrumentation",
    "do not use",
    "don t use",
    "dont use",
    "do not rely",
    "synthetic data",
    "synthetic metric",
    "synthetic values",
    "fake data",
    "dummy data",
    "dummy metric",
    "dummy value",
    "remove me",
    "remove before",
];

/// The name tokens that mark `name` as debug telemetry.
pub(super) fn name_tokens(name: &str) -> Vec<String> {
    let tokens: Vec<String> = name
        .split(['_', ':', '.', '-'])
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let temperature = tokens
        .iter()
        .any(|t| TEMPERATURE_UNITS.contains(&t.as_str()));
    let mut found: Vec<String> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let t = token.as_str();
        let hit = if MARKERS.contains(&t) {
            !(t == "test" && i > 0 && tokens[i - 1] == "ab")
        } else if NAMESPACES.contains(&t) {
            i == 0 && !(t == "temp" && temperature)
        } else {
            false
        };
        if hit && !found.contains(token) {
            found.push(token.clone());
        }
    }
    found
}

/// The HELP phrases that mark the family as debug telemetry.
pub(super) fn help_phrases(help: &str) -> Vec<&'static str> {
    let normalised: String = help
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect();
    let padded = format!(
        " {} ",
        normalised.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    HELP_PHRASES
        .iter()
        .copied()
        .filter(|p| padded.contains(&format!(" {p} ")))
        .collect()
}

pub(super) fn detect(ctx: &Ctx, family: &Family) -> Option<Candidate> {
    let name = family.name();
    let tokens = name_tokens(name);
    let phrases = help_phrases(&family.inv.help);
    if tokens.is_empty() && phrases.is_empty() {
        return None;
    }
    let mut reasons: Vec<String> = tokens.iter().map(|t| format!("name token `{t}`")).collect();
    reasons.extend(phrases.iter().map(|p| format!("HELP says \"{p}\"")));

    let estimate = estimate::family(family.inv, ctx.inventory.scrapes_per_minute, ctx.prices);
    let mut severity = ctx.severity_for_cost(estimate.cost_per_month);
    let mut evidence = ctx.family_evidence(family);
    evidence.notes.extend(reasons.iter().cloned());
    if !family.inv.help.is_empty() {
        evidence.notes.push(format!("HELP: {}", family.inv.help));
    }
    let mut summary = format!(
        "`{name}` looks like debug or test telemetry ({}); it costs {}.",
        reasons.join("; "),
        volume_clause(&estimate),
    );
    let domain = if family.used() {
        domain::SIGNAL_QUALITY
    } else {
        domain::COST
    };
    if family.possibly_used() {
        severity = severity.lower();
        summary.push(' ');
        summary.push_str(&family.usage_sentence());
        if family.used() {
            summary.push_str(
                " Dashboards or alerts reading debug or test data may be misleading: check them \
                 before dropping it.",
            );
        }
    }
    let recommended = DropPolicy {
        kind: kind::DEBUG_METRIC,
        service: ctx.service(),
        subject: name,
        family: name,
        family_type: &family.inv.r#type,
        label: None,
        short: "debug or test metric",
        why: &format!(
            "it looks like debug or test telemetry ({})",
            reasons.join("; ")
        ),
    }
    .request();
    Some(Candidate {
        finding: Finding {
            kind: kind::DEBUG_METRIC,
            domain,
            severity: severity.as_str(),
            title: format!("`{name}` looks like a debug or test metric"),
            summary,
            service: ctx.service().to_owned(),
            subject: name.to_owned(),
            evidence,
            provenance: ctx.provenance(
                kind::DEBUG_METRIC,
                vec![
                    format!("name_tokens={}", MARKERS.join(",")),
                    format!("leading_name_tokens={}", NAMESPACES.join(",")),
                ],
            ),
            estimate,
            recommended: Some(recommended),
            absorbed: Vec::new(),
        },
        family: name.to_owned(),
        label: None,
        change: Vec::new(),
        possibly_used: family.possibly_used(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn tokens_are_whole_words() {
        assert!(name_tokens("latest_build_info").is_empty());
        assert!(name_tokens("contest_entries_total").is_empty());
        assert!(name_tokens("debugger_attached").is_empty());
        assert_eq!(name_tokens("build_test_runs"), ["test"]);
        assert_eq!(name_tokens("checkout_debug_cart_size"), ["debug"]);
        assert_eq!(name_tokens("job:fake:rate5m"), ["fake"]);
        assert_eq!(name_tokens("DUMMY_gauge"), ["dummy"]);
        assert_eq!(name_tokens("test_debug_test"), ["test", "debug"]);
    }

    #[test]
    fn namespace_words_count_only_as_a_prefix() {
        assert_eq!(name_tokens("tmp_orders"), ["tmp"]);
        assert_eq!(name_tokens("demo_api_request_duration_seconds"), ["demo"]);
        assert_eq!(name_tokens("example_counter"), ["example"]);
        assert!(name_tokens("pg_stat_database_temp_bytes").is_empty());
        assert!(name_tokens("node_hwmon_temp_celsius").is_empty());
        assert!(name_tokens("temp_celsius").is_empty());
        assert!(name_tokens("tracer_sample_rate").is_empty());
        assert!(name_tokens("scrape_samples_scraped").is_empty());
        assert!(name_tokens("checkout_ab_test_assignments_total").is_empty());
    }

    #[test]
    fn help_phrases_are_whole_phrases() {
        assert_eq!(
            help_phrases("For debugging only."),
            ["debugging only", "for debugging"]
        );
        assert_eq!(
            help_phrases("TEMPORARY metric - remove me"),
            ["temporary metric", "remove me"]
        );
        assert_eq!(
            help_phrases("Don't use: synthetic data"),
            ["don t use", "synthetic data"]
        );
        assert!(help_phrases("Bytes written to temporary files by queries.").is_empty());
        assert!(help_phrases("Number of debug log lines.").is_empty());
        assert!(help_phrases("Latest test-only").contains(&"test only"));
        assert!(help_phrases("contest only").is_empty());
    }

    #[test]
    fn latest_is_not_test() {
        let usage = FakeUsage::none();
        let latest = run(&inventory(vec![family("latest_build", "gauge", 3)]), &usage);
        assert!(latest.is_empty());
        let test = run(&inventory(vec![family("test_build", "gauge", 3)]), &usage);
        assert_eq!(kinds(&test), [("debug_metric", "test_build")]);
        assert_eq!(test[0].domain, "cost");
        assert!(
            test[0]
                .evidence
                .notes
                .contains(&"name token `test`".to_owned())
        );
    }

    #[test]
    fn help_text_alone_is_enough() {
        let mut f = family("cart_size", "gauge", 3);
        f.help = "Cart size. For debugging only, do not use.".into();
        let findings = run(&inventory(vec![f]), &FakeUsage::none());
        assert_eq!(kinds(&findings), [("debug_metric", "cart_size")]);
        assert!(
            findings[0].summary.contains("do not use"),
            "{}",
            findings[0].summary
        );
    }

    #[test]
    fn a_used_debug_metric_is_a_lower_signal_quality_finding() {
        // 1 000 series: $10 + $2.16 a month, medium by cost.
        let inv = inventory(vec![family("debug_cart_size", "gauge", 1_000)]);
        let unread = run(&inv, &FakeUsage::imported().unknown("debug_cart_size"));
        assert_eq!(unread[0].severity, "low");
        assert_eq!(unread[0].domain, "cost");
        let used = run(&inv, &FakeUsage::imported().used("debug_cart_size", &[]));
        assert_eq!(kinds(&used), [("debug_metric", "debug_cart_size")]);
        let f = &used[0];
        assert_eq!(f.domain, "signal_quality");
        assert_eq!(f.severity, "low");
        assert!(f.summary.contains("It is used by 1 query"), "{}", f.summary);
        assert_eq!(f.evidence.used_in, ["rules.yaml: debug_cart_size:rate5m"]);
    }

    #[test]
    fn an_unused_debug_metric_is_reported_once_as_unused() {
        let inv = inventory(vec![family("debug_cart_size", "gauge", 1_000)]);
        let findings = run(&inv, &FakeUsage::imported());
        assert_eq!(kinds(&findings), [("unused_metric", "debug_cart_size")]);
        // Not lowered: nobody reads it.
        assert_eq!(findings[0].severity, "medium");
        assert!(
            findings[0]
                .evidence
                .notes
                .iter()
                .any(|n| n.starts_with("also debug_metric"))
        );
    }
}

//! `tero classify status|run|list`: the classification of event types
//! (metric families and log templates), what it cost, and its results.

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::anyhow;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Subcommand, ValueEnum};
use tero_sdk::classification::{Category, Verdict};
use tero_sdk::proto::controlplane::{
    ClassificationRun, ClassificationStatus, EventType, ListEventTypesRequest, ProviderUsage,
};

use crate::Global;
use crate::out;
use crate::output::{self, Table, structured};

#[derive(Debug, Subcommand)]
pub enum ClassifyCommand {
    /// Shows the configured classifiers, the token budget, totals per
    /// category, token usage per classifier and the recent runs.
    Status {
        /// How many recent runs to show.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
        runs: u32,
    },
    /// Classifies the event types that have no cached classification now,
    /// and prints the run's summary. Exits 0 even when some stay
    /// unclassified (their reasons are listed).
    Run {
        /// Classify every event type again, cached ones included (after a
        /// classifier upgrade); costs tokens for each of them.
        #[arg(long)]
        force: bool,
        /// How long to wait for the run to finish: a number with s, m, h or d.
        #[arg(long, default_value = "10m", value_parser = parse_timeout)]
        timeout: Duration,
    },
    /// Lists event types with their classification.
    List {
        /// Only event types of this service.
        #[arg(long)]
        service: Option<String>,
        /// Only metric families (metric), log templates (log) or span
        /// patterns (span).
        #[arg(long, value_enum, ignore_case = true)]
        kind: Option<Kind>,
        /// Only event types classified in this category.
        #[arg(long, value_parser = category_values(), ignore_case = true)]
        category: Option<Category>,
        /// Only event types with this verdict.
        #[arg(long, value_parser = verdict_values(), ignore_case = true)]
        verdict: Option<Verdict>,
        /// Only event types without a classification.
        #[arg(long, conflicts_with_all = ["category", "verdict"])]
        unclassified: bool,
    },
}

/// What an event type is a pattern of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Kind {
    Metric,
    Log,
    Span,
}

/// Parses a category flag against the vocabulary the control plane uses.
fn category_values() -> impl TypedValueParser<Value = Category> {
    PossibleValuesParser::new(Category::ALL.map(Category::as_str)).try_map(|name| name.parse())
}

fn verdict_values() -> impl TypedValueParser<Value = Verdict> {
    PossibleValuesParser::new(Verdict::ALL.map(Verdict::as_str)).try_map(|name| name.parse())
}

/// The API's spelling of a flag value (`debug_noise`), empty for none.
pub fn api_name<T: ValueEnum>(value: Option<T>) -> String {
    value
        .and_then(|v| v.to_possible_value())
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    super::stats::parse_since(text).map_err(|e| e.replace("--since", "--timeout"))
}

/// The `ListEventTypes` request for `tero classify list`'s flags.
pub fn list_request(
    service: Option<String>,
    kind: Option<Kind>,
    category: Option<Category>,
    verdict: Option<Verdict>,
    unclassified: bool,
) -> ListEventTypesRequest {
    ListEventTypesRequest {
        service: service.unwrap_or_default().trim().to_owned(),
        kind: api_name(kind),
        category: category.map(|c| c.as_str().to_owned()).unwrap_or_default(),
        verdict: verdict.map(|v| v.as_str().to_owned()).unwrap_or_default(),
        unclassified,
    }
}

pub async fn run(cmd: ClassifyCommand, global: &Global) -> anyhow::Result<()> {
    let client = global.client()?;
    match cmd {
        ClassifyCommand::Status { runs } => {
            let status = client.classification_status(runs).await?;
            if !structured(global.output, &status)? {
                out!("{}", render_status(&status));
            }
        }
        ClassifyCommand::Run { force, timeout } => {
            if std::io::stderr().is_terminal() {
                crate::errln!(
                    "classifying{}…",
                    if force { " everything again" } else { "" }
                );
            }
            let run = client
                .with_timeout(timeout)
                .run_classification(force)
                .await
                .map_err(|e| {
                    if e.is_deadline_exceeded() {
                        anyhow!(
                            "the run did not finish within --timeout {} ({e}): give it longer \
                             with a larger --timeout, and see `tero classify status` for what it \
                             did",
                            humantime(timeout)
                        )
                    } else {
                        e.into()
                    }
                })?;
            if !structured(global.output, &run)? {
                out!("{}", render_run(&run));
            }
        }
        ClassifyCommand::List {
            service,
            kind,
            category,
            verdict,
            unclassified,
        } => {
            let request = list_request(service, kind, category, verdict, unclassified);
            let event_types = client.list_event_types(request).await?;
            if !structured(global.output, &event_types)? {
                out!("{}", render_event_types(&event_types));
            }
        }
    }
    Ok(())
}

/// `10m`, `90s`: a `--timeout` as it was probably written.
fn humantime(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn budget(tokens: u64) -> String {
    if tokens == 0 {
        "none".into()
    } else {
        format!("{tokens} tokens per run")
    }
}

/// Input plus output tokens.
fn tokens(usage: &[ProviderUsage]) -> u64 {
    usage
        .iter()
        .map(|u| u.input_tokens.saturating_add(u.output_tokens))
        .fold(0, u64::saturating_add)
}

/// At most `max` characters, the cut marked with `…`; control characters
/// (a tab in a log template) become spaces so rows stay on one line.
pub fn truncate(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= max {
        return clean;
    }
    let mut cut: String = clean.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Characters of a name shown in a table; `-o json` has the full name.
const NAME_WIDTH: usize = 60;

fn usage_table(usage: &[ProviderUsage]) -> String {
    let mut table = Table::new(&["CLASSIFIER", "INPUT TOKENS", "OUTPUT TOKENS", "REQUESTS"]);
    for u in usage {
        table.row(vec![
            u.classifier.clone(),
            u.input_tokens.to_string(),
            u.output_tokens.to_string(),
            u.requests.to_string(),
        ]);
    }
    table.render()
}

/// `tero classify status` as a table.
pub fn render_status(status: &ClassificationStatus) -> String {
    let mut out = String::new();
    let mut fields = Table::new(&["FIELD", "VALUE"]);
    let mut row = |k: &str, v: String| fields.row(vec![k.into(), v]);
    row("primary", output::dash(&status.primary));
    row("fallback", output::dash(&status.fallback));
    row("budget", budget(status.budget_tokens));
    row("event types", status.event_types.to_string());
    row("classified", status.classified.to_string());
    row("unclassified", status.unclassified.to_string());
    out.push_str(&fields.render());

    out.push_str("\nCategories\n");
    if status.categories.is_empty() {
        out.push_str("  none classified yet\n");
    } else {
        let mut categories: Vec<(&String, &u64)> = status.categories.iter().collect();
        categories.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let mut table = Table::new(&["CATEGORY", "EVENT TYPES"]);
        for (category, count) in categories {
            table.row(vec![category.clone(), count.to_string()]);
        }
        out.push_str(&table.render());
    }

    out.push_str("\nToken usage (all runs)\n");
    if status.usage.is_empty() {
        out.push_str("  none: no classifier has been paid yet\n");
    } else {
        out.push_str(&usage_table(&status.usage));
    }

    out.push_str("\nRecent runs\n");
    if status.runs.is_empty() {
        out.push_str("  none yet: `tero classify run` starts one\n");
    } else {
        let mut table = Table::new(&[
            "ID",
            "STARTED",
            "TRIGGER",
            "EVENT TYPES",
            "CACHED",
            "SUBMITTED",
            "CLASSIFIED",
            "UNCLASSIFIED",
            "FALLBACKS",
            "TOKENS",
            "BUDGET STOP",
        ]);
        for run in &status.runs {
            table.row(vec![
                run.id.to_string(),
                output::time(run.started_at_unix_ms),
                output::dash(&run.trigger),
                run.event_types.to_string(),
                run.cached.to_string(),
                run.submitted.to_string(),
                run.classified.to_string(),
                run.unclassified.to_string(),
                run.fallbacks.to_string(),
                tokens(&run.usage).to_string(),
                yes_no(run.stopped_by_budget),
            ]);
        }
        out.push_str(&table.render());
    }
    out
}

/// `tero classify run`'s summary.
pub fn render_run(run: &ClassificationRun) -> String {
    let mut out = String::new();
    let mut fields = Table::new(&["FIELD", "VALUE"]);
    let mut row = |k: &str, v: String| fields.row(vec![k.into(), v]);
    row("run", run.id.to_string());
    row("started", output::time(run.started_at_unix_ms));
    row("finished", output::time(run.finished_at_unix_ms));
    row("trigger", output::dash(&run.trigger));
    row("requested by", output::dash(&run.requested_by));
    row("event types", run.event_types.to_string());
    row("cached", run.cached.to_string());
    row("submitted", run.submitted.to_string());
    row("classified", run.classified.to_string());
    row("unclassified", run.unclassified.to_string());
    row("fallbacks", run.fallbacks.to_string());
    row("tokens", tokens(&run.usage).to_string());
    row("budget", budget(run.budget_tokens));
    row("budget stop", yes_no(run.stopped_by_budget));
    out.push_str(&fields.render());

    if !run.usage.is_empty() {
        out.push('\n');
        out.push_str(&usage_table(&run.usage));
    }
    if run.stopped_by_budget {
        out.push_str(
            "\nThe run's token budget was spent: the remaining event types stay \
             unclassified until the next run (or raise the control plane's budget).\n",
        );
    }
    if !run.unclassified_examples.is_empty() {
        out.push('\n');
        let shown = run.unclassified_examples.len() as u64;
        if run.unclassified > shown {
            out.push_str(&format!(
                "Unclassified ({shown} of {}; `tero classify list --unclassified` lists all)\n",
                run.unclassified
            ));
        } else {
            out.push_str("Unclassified\n");
        }
        let mut table = Table::new(&["FINGERPRINT", "REASON"]);
        for u in &run.unclassified_examples {
            table.row(vec![u.fingerprint.clone(), output::dash(&u.reason)]);
        }
        out.push_str(&table.render());
    }
    out
}

/// `tero classify list` as a table.
pub fn render_event_types(event_types: &[EventType]) -> String {
    let mut table = Table::new(&[
        "FINGERPRINT",
        "KIND",
        "SERVICE",
        "NAME",
        "CATEGORY",
        "VERDICT",
        "CONFIDENCE",
        "CLASSIFIER",
        "COUNT",
    ]);
    for e in event_types {
        let c = e.classification.as_ref();
        table.row(vec![
            e.fingerprint.clone(),
            output::dash(&e.kind),
            output::dash(&e.service),
            output::dash(&truncate(&e.name, NAME_WIDTH)),
            c.map_or("-".into(), |c| output::dash(&c.category)),
            c.map_or("-".into(), |c| output::dash(&c.verdict)),
            c.map_or("-".into(), |c| format!("{:.2}", c.confidence)),
            c.map_or("-".into(), |c| output::dash(&c.classifier)),
            e.count.to_string(),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use tero_sdk::proto::controlplane::{Classification, UnclassifiedEventType};

    use super::*;

    fn usage(classifier: &str, input: u64, output: u64, requests: u64) -> ProviderUsage {
        ProviderUsage {
            classifier: classifier.into(),
            input_tokens: input,
            output_tokens: output,
            requests,
        }
    }

    fn sample_run() -> ClassificationRun {
        ClassificationRun {
            id: 7,
            started_at_unix_ms: 1_796_093_465_000,
            finished_at_unix_ms: 1_796_093_475_000,
            trigger: "api".into(),
            requested_by: "admin".into(),
            event_types: 120,
            cached: 100,
            submitted: 20,
            classified: 17,
            unclassified: 3,
            fallbacks: 1,
            stopped_by_budget: false,
            budget_tokens: 50_000,
            usage: vec![usage("openai/gpt-4o-mini/prompt-1", 1200, 300, 2)],
            unclassified_examples: vec![UnclassifiedEventType {
                fingerprint: "00a1b2c3d4e5f607".into(),
                reason: "provider unavailable".into(),
            }],
        }
    }

    #[test]
    fn status_renders_every_section_with_known_values() {
        let status = ClassificationStatus {
            primary: "openai/gpt-4o-mini/prompt-1".into(),
            fallback: "embedded/1".into(),
            budget_tokens: 50_000,
            event_types: 120,
            classified: 117,
            unclassified: 3,
            usage: vec![
                usage("openai/gpt-4o-mini/prompt-1", 1200, 300, 2),
                usage("embedded/1", 0, 0, 0),
            ],
            runs: vec![sample_run()],
            categories: [
                ("operational".to_owned(), 40),
                ("debug_noise".to_owned(), 77),
            ]
            .into_iter()
            .collect(),
        };
        let expected = "\
FIELD         VALUE
primary       openai/gpt-4o-mini/prompt-1
fallback      embedded/1
budget        50000 tokens per run
event types   120
classified    117
unclassified  3

Categories
CATEGORY     EVENT TYPES
debug_noise  77
operational  40

Token usage (all runs)
CLASSIFIER                   INPUT TOKENS  OUTPUT TOKENS  REQUESTS
openai/gpt-4o-mini/prompt-1  1200          300            2
embedded/1                   0             0              0

Recent runs
ID  STARTED               TRIGGER  EVENT TYPES  CACHED  SUBMITTED  CLASSIFIED  UNCLASSIFIED  FALLBACKS  TOKENS  BUDGET STOP
7   2026-12-01 02:51:05Z  api      120          100     20         17          3             1          1500    no
";
        assert_eq!(render_status(&status), expected);
    }

    #[test]
    fn an_empty_status_says_what_is_missing() {
        let text = render_status(&ClassificationStatus::default());
        assert!(text.contains("primary       -\n"), "{text}");
        assert!(text.contains("budget        none\n"), "{text}");
        assert!(text.contains("none classified yet"), "{text}");
        assert!(text.contains("`tero classify run` starts one"), "{text}");
    }

    #[test]
    fn a_run_lists_its_unclassified_event_types_and_says_when_more_exist() {
        let text = render_run(&sample_run());
        assert!(text.contains("run           7\n"), "{text}");
        assert!(text.contains("requested by  admin\n"), "{text}");
        assert!(text.contains("tokens        1500\n"), "{text}");
        assert!(text.contains("budget stop   no\n"), "{text}");
        assert!(
            text.contains("Unclassified (1 of 3; `tero classify list --unclassified` lists all)"),
            "{text}"
        );
        assert!(
            text.contains("00a1b2c3d4e5f607  provider unavailable\n"),
            "{text}"
        );
        assert!(!text.contains("budget was spent"), "{text}");

        let mut stopped = sample_run();
        stopped.stopped_by_budget = true;
        stopped.unclassified = 1;
        let text = render_run(&stopped);
        assert!(text.contains("budget stop   yes\n"), "{text}");
        assert!(text.contains("budget was spent"), "{text}");
        assert!(text.contains("\nUnclassified\n"), "{text}");
    }

    #[test]
    fn event_types_show_a_truncated_name_and_dashes_when_unclassified() {
        let long = format!("User <num> logged in from <ip> {}", "x".repeat(100));
        let classified = EventType {
            fingerprint: "1111222233334444".into(),
            kind: "log".into(),
            service: "checkout".into(),
            name: long.clone(),
            count: 42,
            classification: Some(Classification {
                category: "business_event".into(),
                verdict: "keep".into(),
                confidence: 0.875,
                classifier: "embedded/1".into(),
                ..Classification::default()
            }),
            ..EventType::default()
        };
        let unclassified = EventType {
            fingerprint: "5555666677778888".into(),
            kind: "metric".into(),
            service: "checkout".into(),
            name: "http_requests_total".into(),
            count: 12,
            ..EventType::default()
        };
        let text = render_event_types(&[classified, unclassified]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("FINGERPRINT       KIND    SERVICE   NAME"));
        let name = truncate(&long, NAME_WIDTH);
        assert_eq!(name.chars().count(), NAME_WIDTH);
        assert!(name.ends_with('…'));
        assert!(lines[1].contains(&name), "{text}");
        assert!(
            lines[1].ends_with("business_event  keep     0.88        embedded/1  42"),
            "{text}"
        );
        let cells: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "5555666677778888",
                "metric",
                "checkout",
                "http_requests_total",
                "-",
                "-",
                "-",
                "-",
                "12"
            ]
        );
    }

    #[test]
    fn truncation_counts_characters_and_flattens_control_characters() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("a\tb", 10), "a b");
        assert_eq!(truncate("ééééé", 3), "éé…");
    }

    #[test]
    fn flag_values_are_sent_in_the_api_spelling() {
        let request = list_request(
            Some(" checkout ".into()),
            Some(Kind::Log),
            Some(Category::DebugNoise),
            Some(Verdict::Waste),
            false,
        );
        assert_eq!(request.service, "checkout");
        assert_eq!(request.kind, "log");
        assert_eq!(request.category, "debug_noise");
        assert_eq!(request.verdict, "waste");
        assert!(!request.unclassified);
        assert_eq!(list_request(None, None, None, None, true).kind, "");
    }

    #[test]
    fn timeouts_read_like_since() {
        assert_eq!(parse_timeout("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_timeout("0s").unwrap_err().contains("--timeout"));
        assert_eq!(humantime(Duration::from_secs(600)), "10m");
        assert_eq!(humantime(Duration::from_secs(90)), "90s");
    }
}

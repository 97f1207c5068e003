//! One usage source as a whole: what kind it is, the JSON or YAML document
//! it is written in, and the [`Collector`] that folds the references of its
//! queries into a [`ParsedSource`]. The formats themselves are read in
//! [`crate::rules`] and [`crate::grafana`].

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::promql::{self, Extraction, SelectorName, Templating};
use crate::{grafana, rules};

/// What a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A rule file (`groups[].rules[]`, also as a Kubernetes
    /// `PrometheusRule`), or the JSON of Prometheus' `GET /api/v1/rules`.
    PrometheusRules,
    /// A dashboard's JSON model, bare or wrapped as `{"dashboard": …}`.
    GrafanaDashboard,
}

impl SourceKind {
    /// The name the API and the store use.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::PrometheusRules => "prometheus_rules",
            SourceKind::GrafanaDashboard => "grafana_dashboard",
        }
    }

    /// How people call it, for messages.
    pub fn title(self) -> &'static str {
        match self {
            SourceKind::PrometheusRules => "Prometheus rule file",
            SourceKind::GrafanaDashboard => "Grafana dashboard",
        }
    }

    /// The kind `name` names (as [`SourceKind::name`] spells it, or a short
    /// alias such as `rules` or `grafana`).
    pub fn from_name(name: &str) -> Option<SourceKind> {
        match name {
            "prometheus_rules" | "prometheus-rules" | "rules" => Some(SourceKind::PrometheusRules),
            "grafana_dashboard" | "grafana-dashboard" | "grafana" | "dashboard" => {
                Some(SourceKind::GrafanaDashboard)
            }
            _ => None,
        }
    }

    /// Which kind `content` is, from its shape.
    pub fn detect(content: &str) -> Result<SourceKind, UsageError> {
        kind_of(&Document::parse(content)?)
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SourceKind {
    type Err = UsageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SourceKind::from_name(s).ok_or_else(|| UsageError::UnknownKind(s.to_string()))
    }
}

/// Why a source could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("not JSON or YAML: {}", at_line(*.line, .message))]
    Syntax {
        line: Option<usize>,
        message: String,
    },
    #[error(
        "not a Grafana dashboard or Prometheus rule file: expected `groups` or `panels`{found}"
    )]
    UnknownFormat { found: String },
    #[error("invalid {}: {}", kind.title(), at_line(*.line, .message))]
    Invalid {
        kind: SourceKind,
        line: Option<usize>,
        message: String,
    },
    #[error("unknown source kind `{0}`: expected `prometheus_rules` or `grafana_dashboard`")]
    UnknownKind(String),
}

fn at_line(line: Option<usize>, message: &str) -> String {
    match line {
        Some(line) => format!("line {line}: {message}"),
        None => message.to_string(),
    }
}

/// One metric name a query reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricReference {
    pub metric: String,
    /// Labels the query reads explicitly about this metric.
    pub labels: BTreeSet<String>,
    /// `<source>: <rule or panel>`.
    pub location: String,
    /// Taken from a query that does not parse: the name may not be a metric
    /// at all.
    pub possible: bool,
    /// A template variable, an ad hoc filter or an unparsed query may read
    /// any label of the metric.
    #[serde(default, skip_serializing_if = "is_false")]
    pub any_label: bool,
}

/// A regex a query selects metric names by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamePattern {
    /// Anchored as PromQL anchors: `^(?:…)$`.
    pub regex: String,
    pub location: String,
    /// The names are not in the text (a template variable, selection by
    /// labels alone, an unparsed query): a match is only a possibility, and
    /// `^(?:.*)$` matches anything.
    pub wildcard: bool,
    /// Labels the query reads about the metrics it matches.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub labels: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub any_label: bool,
    /// Why a wildcard is one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// What one source's queries read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsedSource {
    pub kind: SourceKind,
    /// Query expressions read (rules, panel targets, variable queries,
    /// annotations).
    pub queries: u32,
    pub references: Vec<MetricReference>,
    pub name_patterns: Vec<NamePattern>,
    /// Query texts that did not parse.
    pub unparsed: Vec<String>,
    /// Names recording rules define: metrics later queries may read, which
    /// make nothing used by themselves.
    pub recorded: Vec<String>,
    /// Labels read across every metric (`label_values(job)`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub unscoped_labels: BTreeSet<String>,
}

impl ParsedSource {
    fn empty(kind: SourceKind) -> Self {
        Self {
            kind,
            queries: 0,
            references: Vec::new(),
            name_patterns: Vec::new(),
            unparsed: Vec::new(),
            recorded: Vec::new(),
            unscoped_labels: BTreeSet::new(),
        }
    }

    /// The distinct metric names the source's queries read for certain.
    pub fn metric_names(&self) -> Vec<String> {
        self.names_where(false)
    }

    /// The distinct identifiers of unparsed queries, which may be metric
    /// names.
    pub fn possible_metric_names(&self) -> Vec<String> {
        self.names_where(true)
    }

    fn names_where(&self, possible: bool) -> Vec<String> {
        let names: BTreeSet<&str> = self
            .references
            .iter()
            .filter(|r| r.possible == possible)
            .map(|r| r.metric.as_str())
            .collect();
        names.into_iter().map(str::to_string).collect()
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Reads one source. `name` prefixes every location; `kind` is detected
/// when not given.
pub fn parse_source(
    name: &str,
    kind: Option<SourceKind>,
    content: &str,
) -> Result<ParsedSource, UsageError> {
    let document = Document::parse(content)?;
    let kind = match kind {
        Some(kind) => kind,
        None => kind_of(&document)?,
    };
    let mut collector = Collector::new(name, kind);
    match kind {
        SourceKind::PrometheusRules => rules::read(&mut collector, &document, content)?,
        SourceKind::GrafanaDashboard => grafana::read(&mut collector, &document)?,
    }
    Ok(collector.finish())
}

/// The content as a JSON value, whichever syntax it came in.
pub(crate) struct Document {
    pub(crate) value: Value,
    /// Written as JSON (else YAML): which parser reports errors best.
    pub(crate) json: bool,
}

impl Document {
    fn parse(content: &str) -> Result<Document, UsageError> {
        if content.trim().is_empty() {
            return Err(UsageError::Syntax {
                line: None,
                message: "the source is empty".to_string(),
            });
        }
        let json_error = match serde_json::from_str::<Value>(content) {
            Ok(value) => return Ok(Document { value, json: true }),
            Err(e) => e,
        };
        match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(content) {
            Ok(yaml) => {
                let value = serde_json::to_value(&yaml).map_err(|e| UsageError::Syntax {
                    line: None,
                    message: format!("YAML that has no JSON form: {e}"),
                })?;
                Ok(Document { value, json: false })
            }
            // Text that opens like JSON was meant as JSON: its error is the
            // useful one.
            Err(_) if content.trim_start().starts_with(['{', '[']) => Err(UsageError::Syntax {
                line: Some(json_error.line()),
                message: strip_position(&json_error.to_string()),
            }),
            Err(e) => Err(UsageError::Syntax {
                line: e.location().map(|l| l.line()),
                message: strip_position(&e.to_string()),
            }),
        }
    }
}

/// serde errors end in " at line L column C"; the line is reported on its
/// own.
pub(crate) fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

fn kind_of(document: &Document) -> Result<SourceKind, UsageError> {
    let Some(object) = document.value.as_object() else {
        return Err(UsageError::UnknownFormat {
            found: format!(", found {}", json_type(&document.value)),
        });
    };
    if ["panels", "rows", "dashboard"]
        .iter()
        .any(|k| object.contains_key(*k))
    {
        return Ok(SourceKind::GrafanaDashboard);
    }
    let api_groups = object.get("data").and_then(|d| d.get("groups")).is_some();
    let crd_groups = object.get("spec").and_then(|s| s.get("groups")).is_some();
    // An API answer that is an error still says what was asked for.
    let api_error = object.get("status").and_then(Value::as_str) == Some("error")
        && object.contains_key("errorType");
    if object.contains_key("groups") || api_groups || crd_groups || api_error {
        return Ok(SourceKind::PrometheusRules);
    }
    let mut keys: Vec<&str> = object.keys().map(String::as_str).take(8).collect();
    keys.sort_unstable();
    Err(UsageError::UnknownFormat {
        found: if keys.is_empty() {
            ", found an empty object".to_string()
        } else {
            format!(", found keys {}", keys.join(", "))
        },
    })
}

pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Gathers the references of every query of a source, merging repeats of
/// one metric at one location.
pub(crate) struct Collector {
    source: String,
    pub(crate) parsed: ParsedSource,
    references: HashMap<(String, String, bool), usize>,
    patterns: HashMap<(String, String, bool), usize>,
    /// Every query of the dashboard may be filtered by any label (an ad hoc
    /// filter variable).
    pub(crate) any_label: bool,
}

impl Collector {
    fn new(source: &str, kind: SourceKind) -> Self {
        Self {
            source: source.to_string(),
            parsed: ParsedSource::empty(kind),
            references: HashMap::new(),
            patterns: HashMap::new(),
            any_label: false,
        }
    }

    pub(crate) fn location(&self, what: &str) -> String {
        format!("{}: {what}", self.source)
    }

    /// Reads one query; `extra_labels` are labels read of its results
    /// (legend templates).
    pub(crate) fn query(
        &mut self,
        location: &str,
        expr: &str,
        templating: &Templating,
        extra_labels: &BTreeSet<String>,
    ) {
        if expr.trim().is_empty() {
            return;
        }
        self.parsed.queries += 1;
        match promql::extract_with(expr, templating) {
            Extraction::Parsed(selectors) => {
                for selector in selectors {
                    let mut labels = selector.labels;
                    labels.extend(extra_labels.iter().cloned());
                    let any_label = selector.any_label || self.any_label;
                    match selector.name {
                        SelectorName::Metric(metric) => {
                            self.reference(metric, location, false, labels, any_label)
                        }
                        SelectorName::Pattern(regex) => self.pattern(NamePattern {
                            regex,
                            location: location.to_string(),
                            wildcard: false,
                            labels,
                            any_label,
                            reason: String::new(),
                        }),
                        SelectorName::Unknown { regex, reason } => self.pattern(NamePattern {
                            regex,
                            location: location.to_string(),
                            wildcard: true,
                            labels,
                            any_label,
                            reason,
                        }),
                    }
                }
            }
            Extraction::Unparsed {
                possible_names,
                possible_patterns,
                ..
            } => {
                if !self.parsed.unparsed.iter().any(|q| q == expr) {
                    self.parsed.unparsed.push(expr.to_string());
                }
                for name in possible_names {
                    // Which labels an unparsed query reads is unknown.
                    self.reference(name, location, true, extra_labels.clone(), true);
                }
                for regex in possible_patterns {
                    self.pattern(NamePattern {
                        regex,
                        location: location.to_string(),
                        wildcard: true,
                        labels: extra_labels.clone(),
                        any_label: true,
                        reason: "a query that could not be parsed selects names by a pattern or \
                                 template variable"
                            .to_string(),
                    });
                }
            }
        }
    }

    fn reference(
        &mut self,
        metric: String,
        location: &str,
        possible: bool,
        labels: BTreeSet<String>,
        any_label: bool,
    ) {
        let key = (metric.clone(), location.to_string(), possible);
        if let Some(&at) = self.references.get(&key) {
            let existing = &mut self.parsed.references[at];
            existing.labels.extend(labels);
            existing.any_label |= any_label;
            return;
        }
        self.references.insert(key, self.parsed.references.len());
        self.parsed.references.push(MetricReference {
            metric,
            labels,
            location: location.to_string(),
            possible,
            any_label,
        });
    }

    pub(crate) fn pattern(&mut self, pattern: NamePattern) {
        let key = (
            pattern.regex.clone(),
            pattern.location.clone(),
            pattern.wildcard,
        );
        if let Some(&at) = self.patterns.get(&key) {
            let existing = &mut self.parsed.name_patterns[at];
            existing.labels.extend(pattern.labels);
            existing.any_label |= pattern.any_label;
            return;
        }
        self.patterns.insert(key, self.parsed.name_patterns.len());
        self.parsed.name_patterns.push(pattern);
    }

    pub(crate) fn recorded(&mut self, name: &str) {
        if !self.parsed.recorded.iter().any(|r| r == name) {
            self.parsed.recorded.push(name.to_string());
        }
    }

    fn finish(self) -> ParsedSource {
        self.parsed
    }
}

pub(crate) fn invalid(kind: SourceKind, line: Option<usize>, message: String) -> UsageError {
    UsageError::Invalid {
        kind,
        line,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{DASHBOARD, RULES};

    #[test]
    fn detect_each_format() {
        assert_eq!(SourceKind::detect(RULES), Ok(SourceKind::PrometheusRules));
        assert_eq!(
            SourceKind::detect(DASHBOARD),
            Ok(SourceKind::GrafanaDashboard)
        );
        assert_eq!(
            SourceKind::detect(r#"{"groups": [{"name": "g", "rules": []}]}"#),
            Ok(SourceKind::PrometheusRules)
        );
        assert_eq!(
            SourceKind::detect("panels: []\n"),
            Ok(SourceKind::GrafanaDashboard)
        );
    }

    #[test]
    fn malformed_input_says_what_is_wrong() {
        let err = SourceKind::detect("groups:\n  - name: [unclosed\n").expect_err("bad YAML");
        assert!(
            matches!(err, UsageError::Syntax { line: Some(_), .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with("not JSON or YAML: line "),
            "{err}"
        );

        let err = SourceKind::detect("{\"panels\": [}").expect_err("bad JSON");
        assert_eq!(
            err.to_string().split(':').take(2).collect::<Vec<_>>(),
            ["not JSON or YAML", " line 1"]
        );

        let err = parse_source("x.yml", None, "scrape_configs: []\n").expect_err("wrong shape");
        assert_eq!(
            err.to_string(),
            "not a Grafana dashboard or Prometheus rule file: expected `groups` or `panels`, found keys scrape_configs"
        );
        let err = parse_source("x", None, "   ").expect_err("empty");
        assert!(err.to_string().contains("empty"), "{err}");

        let err =
            parse_source("d.json", None, r#"{"panels": {"title": "x"}}"#).expect_err("not a list");
        assert_eq!(
            err.to_string(),
            "invalid Grafana dashboard: panels is an object, not a list"
        );

        let err = parse_source(
            "r.yml",
            Some(SourceKind::PrometheusRules),
            r#"{"panels": []}"#,
        )
        .expect_err("kind mismatch");
        assert!(err.to_string().contains("expected `groups`"), "{err}");
        let err = parse_source("d.json", Some(SourceKind::GrafanaDashboard), RULES)
            .expect_err("kind mismatch");
        assert_eq!(
            err.to_string(),
            "invalid Grafana dashboard: expected `panels`"
        );
    }

    #[test]
    fn parsed_source_round_trips_through_json() {
        let parsed = parse_source("dash.json", None, DASHBOARD).expect("parses");
        let json = serde_json::to_string(&parsed).expect("encodes");
        let back: ParsedSource = serde_json::from_str(&json).expect("decodes");
        assert_eq!(back, parsed);
        assert!(json.contains("\"kind\":\"grafana_dashboard\""), "{json}");
    }

    #[test]
    fn kind_names() {
        for kind in [SourceKind::PrometheusRules, SourceKind::GrafanaDashboard] {
            assert_eq!(SourceKind::from_name(kind.name()), Some(kind));
            assert_eq!(kind.name().parse::<SourceKind>(), Ok(kind));
        }
        assert_eq!(SourceKind::from_name("loki"), None);
    }
}

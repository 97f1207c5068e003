//! Whole usage sources: Prometheus rule files (and the rules a Prometheus
//! server reports), and Grafana dashboards, reduced to the metric names,
//! name patterns and labels their queries read.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::promql::{self, Extraction, SelectorName, Templating, VariableHint};

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
        SourceKind::PrometheusRules => read_rules(&mut collector, &document, content)?,
        SourceKind::GrafanaDashboard => read_dashboard(&mut collector, &document)?,
    }
    Ok(collector.finish())
}

/// The content as a JSON value, whichever syntax it came in.
struct Document {
    value: Value,
    /// Written as JSON (else YAML): which parser reports errors best.
    json: bool,
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
fn strip_position(message: &str) -> String {
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

fn json_type(value: &Value) -> &'static str {
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
struct Collector {
    source: String,
    parsed: ParsedSource,
    references: HashMap<(String, String, bool), usize>,
    patterns: HashMap<(String, String, bool), usize>,
    /// Every query of the dashboard may be filtered by any label (an ad hoc
    /// filter variable).
    any_label: bool,
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

    fn location(&self, what: &str) -> String {
        format!("{}: {what}", self.source)
    }

    /// Reads one query; `extra_labels` are labels read of its results
    /// (legend templates).
    fn query(
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

    fn pattern(&mut self, pattern: NamePattern) {
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

    fn recorded(&mut self, name: &str) {
        if !self.parsed.recorded.iter().any(|r| r == name) {
            self.parsed.recorded.push(name.to_string());
        }
    }

    fn finish(self) -> ParsedSource {
        self.parsed
    }
}

// ---------------------------------------------------------------------------
// Prometheus rules

/// A rule file as Prometheus reads it.
#[derive(Deserialize)]
struct RuleFile {
    #[serde(default)]
    groups: Option<Vec<RuleGroup>>,
}

/// A Kubernetes `PrometheusRule` resource (prometheus-operator).
#[derive(Deserialize)]
struct RuleResource {
    spec: RuleFile,
}

#[derive(Deserialize)]
struct RuleGroup {
    name: String,
    #[serde(default)]
    rules: Option<Vec<Rule>>,
}

#[derive(Deserialize)]
struct Rule {
    #[serde(default)]
    record: Option<String>,
    #[serde(default)]
    alert: Option<String>,
    expr: ExprText,
}

/// `expr` as Prometheus takes it: YAML may give `expr: 1` as a number.
struct ExprText(String);

impl<'de> Deserialize<'de> for ExprText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ExprText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a PromQL expression")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ExprText, E> {
                Ok(ExprText(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ExprText, E> {
                Ok(ExprText(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ExprText, E> {
                Ok(ExprText(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ExprText, E> {
                Ok(ExprText(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

fn read_rules(
    collector: &mut Collector,
    document: &Document,
    content: &str,
) -> Result<(), UsageError> {
    let object = document.value.as_object();
    if let Some(error) = object
        .filter(|o| o.get("status").and_then(Value::as_str) == Some("error"))
        .map(|o| {
            o.get("error")
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
        })
    {
        return Err(invalid(
            SourceKind::PrometheusRules,
            None,
            format!("the Prometheus API answered with an error: {error}"),
        ));
    }
    if let Some(data) = object.and_then(|o| o.get("data")) {
        return read_api_rules(collector, data);
    }
    let groups = rule_groups(document, content)?;
    let templating = Templating::none();
    for group in groups {
        for (index, rule) in group.rules.unwrap_or_default().into_iter().enumerate() {
            let what = match (&rule.alert, &rule.record) {
                (Some(alert), _) => format!("group {} / alert {alert}", group.name),
                (None, Some(record)) => format!("group {} / record {record}", group.name),
                (None, None) => format!("group {} / rule {index}", group.name),
            };
            let location = collector.location(&what);
            if let Some(record) = &rule.record {
                collector.recorded(record);
            }
            collector.query(&location, &rule.expr.0, &templating, &BTreeSet::new());
        }
    }
    Ok(())
}

/// The groups of a rule file, deserialised again from the text, typed, so
/// that errors carry the line (and from YAML the path, `groups[0].rules[2]`)
/// of what is wrong.
fn rule_groups(document: &Document, content: &str) -> Result<Vec<RuleGroup>, UsageError> {
    let kind = SourceKind::PrometheusRules;
    let resource = document
        .value
        .as_object()
        .is_some_and(|o| o.contains_key("spec") && !o.contains_key("groups"));
    // Prometheus' own wording for the commonest mistake.
    let reword = |message: String| match message.strip_suffix("missing field `expr`") {
        Some("") => "a rule has no expr".to_string(),
        Some(path) => format!("{} has no expr", path.trim_end_matches(": ")),
        None => message,
    };
    let groups = if document.json {
        let parsed = if resource {
            serde_json::from_str::<RuleResource>(content).map(|r| r.spec.groups)
        } else {
            serde_json::from_str::<RuleFile>(content).map(|f| f.groups)
        };
        parsed.map_err(|e| invalid(kind, Some(e.line()), reword(strip_position(&e.to_string()))))?
    } else {
        let parsed = if resource {
            serde_yaml_ng::from_str::<RuleResource>(content).map(|r| r.spec.groups)
        } else {
            serde_yaml_ng::from_str::<RuleFile>(content).map(|f| f.groups)
        };
        parsed.map_err(|e| {
            let line = e.location().map(|l| l.line());
            invalid(kind, line, reword(strip_position(&e.to_string())))
        })?
    };
    groups.ok_or_else(|| invalid(kind, None, "expected `groups`".to_string()))
}

/// `GET /api/v1/rules`: `{"status": "success", "data": {"groups": [{"name",
/// "rules": [{"name", "query", "type"}]}]}}`.
fn read_api_rules(collector: &mut Collector, data: &Value) -> Result<(), UsageError> {
    let kind = SourceKind::PrometheusRules;
    let groups = data
        .get("groups")
        .ok_or_else(|| invalid(kind, None, "data has no groups".to_string()))?
        .as_array()
        .ok_or_else(|| invalid(kind, None, "data.groups is not a list".to_string()))?;
    let templating = Templating::none();
    for (g, group) in groups.iter().enumerate() {
        let group_name = group.get("name").and_then(Value::as_str).unwrap_or("");
        let rules = match group.get("rules") {
            None | Some(Value::Null) => continue,
            Some(Value::Array(rules)) => rules,
            Some(_) => {
                return Err(invalid(
                    kind,
                    None,
                    format!("data.groups[{g}].rules is not a list"),
                ));
            }
        };
        for (r, rule) in rules.iter().enumerate() {
            let query = rule.get("query").and_then(Value::as_str).ok_or_else(|| {
                invalid(
                    kind,
                    None,
                    format!("data.groups[{g}].rules[{r}] has no query"),
                )
            })?;
            let name = rule.get("name").and_then(Value::as_str).unwrap_or("");
            let recording = rule.get("type").and_then(Value::as_str) == Some("recording");
            let what = if recording {
                collector.recorded(name);
                format!("group {group_name} / record {name}")
            } else {
                format!("group {group_name} / alert {name}")
            };
            let location = collector.location(&what);
            collector.query(&location, query, &templating, &BTreeSet::new());
        }
    }
    Ok(())
}

fn invalid(kind: SourceKind, line: Option<usize>, message: String) -> UsageError {
    UsageError::Invalid {
        kind,
        line,
        message,
    }
}

// ---------------------------------------------------------------------------
// Grafana dashboards

fn read_dashboard(collector: &mut Collector, document: &Document) -> Result<(), UsageError> {
    let kind = SourceKind::GrafanaDashboard;
    let root = match document.value.get("dashboard") {
        Some(inner @ Value::Object(_)) => inner,
        Some(_) => {
            return Err(invalid(
                kind,
                None,
                "dashboard is not an object".to_string(),
            ));
        }
        None => &document.value,
    };
    // An object holding none of these is something else entirely.
    let dashboard_keys = ["panels", "rows", "templating"];
    if !root
        .as_object()
        .is_some_and(|o| dashboard_keys.iter().any(|k| o.contains_key(*k)))
    {
        return Err(invalid(kind, None, "expected `panels`".to_string()));
    }
    let variables = list(root, &["templating", "list"], "templating.list")?;
    let templating = templating_of(&variables);
    // An ad hoc filter adds matchers on labels chosen while viewing, to
    // every query.
    collector.any_label = variables
        .iter()
        .any(|v| v.get("type").and_then(Value::as_str) == Some("adhoc"));

    for (index, variable) in variables.iter().enumerate() {
        read_variable(collector, variable, index, &templating);
    }
    let annotations = list(root, &["annotations", "list"], "annotations.list")?;
    for annotation in annotations {
        let Some(expr) = annotation.get("expr").and_then(Value::as_str) else {
            continue;
        };
        if !prometheus_datasource(annotation.get("datasource")) {
            continue;
        }
        let title = annotation.get("name").and_then(Value::as_str).unwrap_or("");
        let location = collector.location(&format!("annotation {title:?}"));
        collector.query(&location, expr, &templating, &BTreeSet::new());
    }
    for (index, panel) in list(root, &["panels"], "panels")?.iter().enumerate() {
        read_panel(collector, panel, &format!("panels[{index}]"), &templating)?;
    }
    for (r, row) in list(root, &["rows"], "rows")?.iter().enumerate() {
        let path = format!("rows[{r}]");
        for (index, panel) in list(row, &["panels"], &format!("{path}.panels"))?
            .iter()
            .enumerate()
        {
            read_panel(
                collector,
                panel,
                &format!("{path}.panels[{index}]"),
                &templating,
            )?;
        }
    }
    Ok(())
}

/// The list at `keys` under `value`; absent is empty.
fn list<'v>(value: &'v Value, keys: &[&str], path: &str) -> Result<Vec<&'v Value>, UsageError> {
    let mut at = Some(value);
    for key in keys {
        at = at.and_then(|v| v.get(key));
    }
    match at {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items.iter().collect()),
        Some(other) => Err(invalid(
            SourceKind::GrafanaDashboard,
            None,
            format!("{path} is {}, not a list", json_type(other)),
        )),
    }
}

fn read_panel(
    collector: &mut Collector,
    panel: &Value,
    path: &str,
    templating: &Templating,
) -> Result<(), UsageError> {
    let kind = SourceKind::GrafanaDashboard;
    if !panel.is_object() {
        return Err(invalid(kind, None, format!("{path} is not an object")));
    }
    let title = panel.get("title").and_then(Value::as_str).unwrap_or("");
    let what = if title.is_empty() {
        match panel.get("id").and_then(Value::as_i64) {
            Some(id) => format!("panel #{id}"),
            None => format!("panel {path}"),
        }
    } else {
        format!("panel {title:?}")
    };
    let location = collector.location(&what);
    let panel_datasource = panel.get("datasource");
    for (t, target) in list(panel, &["targets"], &format!("{path}.targets"))?
        .iter()
        .enumerate()
    {
        let expr = match target.get("expr") {
            None | Some(Value::Null) => continue,
            Some(Value::String(expr)) => expr,
            Some(other) => {
                return Err(invalid(
                    kind,
                    None,
                    format!(
                        "{path}.targets[{t}].expr is {}, not a string",
                        json_type(other)
                    ),
                ));
            }
        };
        let datasource = target.get("datasource").or(panel_datasource);
        if !prometheus_datasource(datasource) {
            continue;
        }
        let legend = target
            .get("legendFormat")
            .and_then(Value::as_str)
            .map(legend_labels)
            .unwrap_or_default();
        collector.query(&location, expr, templating, &legend);
    }
    // Rows hold their panels while collapsed.
    for (index, inner) in list(panel, &["panels"], &format!("{path}.panels"))?
        .iter()
        .enumerate()
    {
        read_panel(
            collector,
            inner,
            &format!("{path}.panels[{index}]"),
            templating,
        )?;
    }
    Ok(())
}

/// The labels a legend template (`{{instance}} {{ job }}`) prints.
fn legend_labels(legend: &str) -> BTreeSet<String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}").expect("a literal regex compiles")
    });
    re.captures_iter(legend)
        .filter_map(|c| c.get(1))
        .map(|m| m.as_str().to_string())
        .filter(|l| l != "__name__")
        .collect()
}

/// Data sources whose `expr` is not PromQL (LogQL, TraceQL, …). Anything
/// else counts as Prometheus: reading a foreign query as PromQL errs
/// towards "used".
const FOREIGN_DATASOURCES: &[&str] = &[
    "loki",
    "tempo",
    "pyroscope",
    "phlare",
    "elasticsearch",
    "opensearch",
    "influx",
    "graphite",
    "testdata",
    "jaeger",
    "zipkin",
    "cloudwatch",
];

fn prometheus_datasource(datasource: Option<&Value>) -> bool {
    let foreign = |s: &str| {
        let s = s.to_ascii_lowercase();
        !s.starts_with('$') && FOREIGN_DATASOURCES.iter().any(|f| s.contains(f))
    };
    match datasource {
        Some(Value::String(name)) => !foreign(name),
        Some(Value::Object(ds)) => !ds.get("type").and_then(Value::as_str).is_some_and(foreign),
        _ => true,
    }
}

/// What the dashboard's variables are known to expand to.
fn templating_of(variables: &[&Value]) -> Templating {
    let mut templating = Templating::grafana();
    for variable in variables {
        let Some(name) = variable.get("name").and_then(Value::as_str) else {
            continue;
        };
        if let Some(hint) = variable_hint(variable) {
            templating = templating.with_hint(name, hint);
        }
    }
    templating
}

fn variable_hint(variable: &Value) -> Option<VariableHint> {
    let kind = variable.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "custom" | "constant" | "textbox" => {
            let mut values: Vec<String> = Vec::new();
            if let Some(query) = variable.get("query").and_then(Value::as_str) {
                if kind == "custom" {
                    // `a,b` or `label : value` pairs.
                    values.extend(query.split(',').map(|v| {
                        let v = v.rsplit_once(" : ").map_or(v, |(_, value)| value);
                        v.trim().to_string()
                    }));
                } else {
                    values.push(query.trim().to_string());
                }
            }
            for option in variable
                .get("options")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(v) = option.get("value").and_then(Value::as_str) {
                    values.push(v.trim().to_string());
                }
            }
            let numeric = !values.is_empty()
                && values
                    .iter()
                    .all(|v| v.is_empty() || v.parse::<f64>().is_ok())
                && values.iter().any(|v| !v.is_empty());
            numeric.then_some(VariableHint::Number)
        }
        "query" => {
            // A `regex` filter may rewrite the values through capture
            // groups: the names are then no longer bounded by the query.
            let filtered = variable
                .get("regex")
                .and_then(Value::as_str)
                .is_some_and(|r| !r.trim().is_empty());
            if filtered {
                return None;
            }
            match classify_variable_query(&variable_query(variable)?) {
                VariableQuery::Metrics(regex) => {
                    // Grafana filters names with an unanchored match.
                    Some(VariableHint::MetricNames(promql::anchor(&format!(
                        ".*(?:{regex}).*"
                    ))))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// The query of a `query` variable: a string, or since Grafana 10 an object
/// whose `query` is the string; `definition` is the display form.
fn variable_query(variable: &Value) -> Option<String> {
    let query = match variable.get("query") {
        Some(Value::String(q)) if !q.trim().is_empty() => Some(q.clone()),
        Some(Value::Object(o)) => o
            .get("query")
            .and_then(Value::as_str)
            .filter(|q| !q.trim().is_empty())
            .map(str::to_string),
        _ => None,
    };
    query.or_else(|| {
        variable
            .get("definition")
            .and_then(Value::as_str)
            .filter(|q| !q.trim().is_empty())
            .map(str::to_string)
    })
}

/// The forms of Grafana's Prometheus variable queries.
#[derive(Debug, PartialEq, Eq)]
enum VariableQuery {
    /// `label_names()` or `label_names(selector)`.
    LabelNames(Option<String>),
    /// `label_values(label)` or `label_values(selector, label)`.
    LabelValues {
        selector: Option<String>,
        label: String,
    },
    /// `metrics(regex)`.
    Metrics(String),
    /// `query_result(expr)`, or anything else, read as PromQL.
    Expr(String),
}

fn classify_variable_query(query: &str) -> VariableQuery {
    let query = query.trim();
    let call = |name: &str| -> Option<String> {
        let rest = query.strip_prefix(name)?.trim_start();
        let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
        Some(inner.trim().to_string())
    };
    if let Some(inner) = call("label_names") {
        return VariableQuery::LabelNames((!inner.is_empty()).then_some(inner));
    }
    if let Some(inner) = call("label_values") {
        // The label comes last and holds no comma; the selector may.
        return match inner.rsplit_once(',') {
            Some((selector, label)) => VariableQuery::LabelValues {
                selector: Some(selector.trim().to_string()),
                label: label.trim().trim_matches('"').to_string(),
            },
            None => VariableQuery::LabelValues {
                selector: None,
                label: inner.trim_matches('"').to_string(),
            },
        };
    }
    if let Some(inner) = call("metrics") {
        return VariableQuery::Metrics(inner);
    }
    if let Some(inner) = call("query_result") {
        return VariableQuery::Expr(inner);
    }
    VariableQuery::Expr(query.to_string())
}

fn read_variable(
    collector: &mut Collector,
    variable: &Value,
    index: usize,
    templating: &Templating,
) {
    let kind = variable
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("query");
    if kind != "query" || !prometheus_datasource(variable.get("datasource")) {
        return;
    }
    let Some(query) = variable_query(variable) else {
        return;
    };
    let name = variable
        .get("name")
        .and_then(Value::as_str)
        .map_or_else(|| format!("#{index}"), |n| format!("{n:?}"));
    let location = collector.location(&format!("variable {name}"));
    match classify_variable_query(&query) {
        VariableQuery::LabelNames(selector) => {
            if let Some(selector) = selector {
                collector.query(&location, &selector, templating, &BTreeSet::new());
            } else {
                collector.parsed.queries += 1;
            }
        }
        VariableQuery::LabelValues { selector, label } => {
            let labels: BTreeSet<String> = if promql_label_name(&label) {
                [label.clone()].into_iter().collect()
            } else {
                BTreeSet::new()
            };
            match selector {
                Some(selector) => collector.query(&location, &selector, templating, &labels),
                None => {
                    collector.parsed.queries += 1;
                    collector.parsed.unscoped_labels.extend(labels);
                }
            }
        }
        VariableQuery::Metrics(regex) => {
            collector.parsed.queries += 1;
            collector.pattern(NamePattern {
                regex: promql::anchor(&format!(".*(?:{regex}).*")),
                location,
                wildcard: true,
                labels: BTreeSet::new(),
                any_label: false,
                reason: format!("template variable {name} lists metric names matching {regex}"),
            });
        }
        VariableQuery::Expr(expr) => {
            collector.query(&location, &expr, templating, &BTreeSet::new())
        }
    }
}

fn promql_label_name(label: &str) -> bool {
    let mut bytes = label.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
groups:
  - name: api
    interval: 30s
    rules:
      - record: job:http_requests:rate5m
        expr: sum by (job) (rate(http_requests_total[5m]))
      - alert: HighErrorRate
        expr: |
          sum by (job) (rate(http_requests_total{code=~"5.."}[5m]))
            / job:http_requests:rate5m > 0.05
        for: 10m
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.job }} errors at {{ $value }}"
  - name: nodes
    rules:
      - alert: NodeDown
        expr: up{job="node"} == 0
      - record: instance:cpu:ratio
        expr: 1 - avg without (cpu) (rate(node_cpu_seconds_total{mode="idle"}[5m]))
"#;

    fn reference<'a>(
        parsed: &'a ParsedSource,
        metric: &str,
        location: &str,
    ) -> &'a MetricReference {
        parsed
            .references
            .iter()
            .find(|r| r.metric == metric && r.location == location)
            .unwrap_or_else(|| panic!("no {metric} at {location}: {:#?}", parsed.references))
    }

    fn set(labels: &[&str]) -> BTreeSet<String> {
        labels.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn rule_file_references_alerts_and_recordings() {
        let parsed = parse_source("rules.yml", None, RULES).expect("parses");
        assert_eq!(parsed.kind, SourceKind::PrometheusRules);
        assert_eq!(parsed.queries, 4);
        assert!(parsed.unparsed.is_empty());
        assert_eq!(
            parsed.recorded,
            ["job:http_requests:rate5m", "instance:cpu:ratio"]
        );
        let alert = reference(
            &parsed,
            "http_requests_total",
            "rules.yml: group api / alert HighErrorRate",
        );
        assert_eq!(alert.labels, set(&["code", "job"]));
        assert!(!alert.possible);
        let record = reference(
            &parsed,
            "http_requests_total",
            "rules.yml: group api / record job:http_requests:rate5m",
        );
        assert_eq!(record.labels, set(&["job"]));
        // A recorded name read by a later rule is a reference like any other.
        reference(
            &parsed,
            "job:http_requests:rate5m",
            "rules.yml: group api / alert HighErrorRate",
        );
        assert_eq!(
            reference(
                &parsed,
                "node_cpu_seconds_total",
                "rules.yml: group nodes / record instance:cpu:ratio"
            )
            .labels,
            set(&["cpu", "mode"])
        );
        assert_eq!(
            parsed.metric_names(),
            [
                "http_requests_total",
                "job:http_requests:rate5m",
                "node_cpu_seconds_total",
                "up"
            ]
        );
    }

    #[test]
    fn rule_without_expr_is_reported_with_its_line_and_path() {
        let content = "groups:\n  - name: api\n    rules:\n      - alert: A\n        expr: up == 0\n      - alert: B\n        for: 5m\n";
        let err = parse_source("rules.yml", None, content).expect_err("no expr");
        assert_eq!(
            err.to_string(),
            "invalid Prometheus rule file: line 6: groups[0].rules[1] has no expr"
        );
    }

    #[test]
    fn json_rule_file_errors_carry_the_line() {
        let content = "{\n\t\"groups\": [{\"name\": \"g\", \"rules\": [\n\t\t{\"alert\": \"A\", \"expr\": \"up == 0\"},\n\t\t{\"alert\": \"B\"}\n\t]}]\n}";
        let err = parse_source("rules.json", None, content).expect_err("no expr");
        assert_eq!(
            err.to_string(),
            "invalid Prometheus rule file: line 4: a rule has no expr"
        );
        let fixed = content.replace(r#"{"alert": "B"}"#, r#"{"alert": "B", "expr": "down"}"#);
        let parsed = parse_source("rules.json", None, &fixed).expect("parses");
        assert_eq!(parsed.metric_names(), ["down", "up"]);
    }

    #[test]
    fn numeric_expr_and_kubernetes_resource_are_rules() {
        let content = r#"
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: always
spec:
  groups:
    - name: watchdog
      rules:
        - alert: Watchdog
          expr: 1
        - alert: QueueFull
          expr: queue_length > queue_capacity
"#;
        assert_eq!(SourceKind::detect(content), Ok(SourceKind::PrometheusRules));
        let parsed = parse_source("crd.yaml", None, content).expect("parses");
        assert_eq!(parsed.queries, 2);
        assert_eq!(parsed.metric_names(), ["queue_capacity", "queue_length"]);
    }

    #[test]
    fn prometheus_api_rules_json() {
        let content = r#"{"status":"success","data":{"groups":[{"name":"api","file":"/etc/prometheus/rules.yml","interval":30,
            "rules":[
              {"name":"job:errors:rate5m","query":"sum by (job) (rate(errors_total[5m]))","type":"recording","health":"ok"},
              {"state":"inactive","name":"Errors","query":"job:errors:rate5m > 1","duration":300,"type":"alerting"}
            ]}]}}"#;
        assert_eq!(SourceKind::detect(content), Ok(SourceKind::PrometheusRules));
        let parsed = parse_source("prom", None, content).expect("parses");
        assert_eq!(parsed.queries, 2);
        assert_eq!(parsed.recorded, ["job:errors:rate5m"]);
        assert_eq!(
            reference(
                &parsed,
                "errors_total",
                "prom: group api / record job:errors:rate5m"
            )
            .labels,
            set(&["job"])
        );
        reference(
            &parsed,
            "job:errors:rate5m",
            "prom: group api / alert Errors",
        );
        let err = parse_source(
            "prom",
            None,
            r#"{"status":"success","data":{"groups":[{"name":"g","rules":[{"name":"x"}]}]}}"#,
        )
        .expect_err("no query");
        assert!(
            err.to_string()
                .contains("data.groups[0].rules[0] has no query"),
            "{err}"
        );
        let err = parse_source(
            "prom",
            None,
            r#"{"status":"error","errorType":"bad_data","error":"boom"}"#,
        )
        .expect_err("API error");
        assert!(
            err.to_string()
                .ends_with("the Prometheus API answered with an error: boom"),
            "{err}"
        );
    }

    const DASHBOARD: &str = r#"{
  "title": "API",
  "uid": "api",
  "templating": {"list": [
    {"name": "job", "type": "query", "datasource": {"type": "prometheus", "uid": "prom"},
     "query": {"query": "label_values(up{env=\"prod\"}, job)", "refId": "A"},
     "definition": "label_values(up{env=\"prod\"}, job)"},
    {"name": "instance", "type": "query", "query": "label_values(instance)"},
    {"name": "metric", "type": "query", "query": "metrics(^api_.*)", "regex": ""},
    {"name": "top", "type": "custom", "query": "5,10,20"},
    {"name": "build", "type": "query", "definition": "query_result(max by (version) (build_info{job=\"$job\"}))"}
  ]},
  "annotations": {"list": [
    {"name": "Deploys", "datasource": "Prometheus", "expr": "changes(deploy_timestamp_seconds{job=\"$job\"}[5m]) > 0"}
  ]},
  "panels": [
    {"id": 1, "type": "timeseries", "title": "Requests",
     "datasource": {"type": "prometheus", "uid": "prom"},
     "targets": [
       {"refId": "A", "expr": "sum by (route) (rate(http_requests_total{job=\"$job\"}[$__rate_interval]))", "legendFormat": "{{route}} {{ user_id }}"},
       {"refId": "B", "expr": "topk($top, rate(http_requests_total[5m]))"}
     ]},
    {"id": 2, "type": "row", "title": "Latency", "collapsed": true, "panels": [
      {"id": 3, "title": "p99", "targets": [
        {"expr": "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[$__interval])))"}
      ]}
    ]},
    {"id": 4, "title": "Logs", "datasource": {"type": "loki", "uid": "logs"},
     "targets": [{"expr": "sum(rate({app=\"api\"} |= \"error\" [5m]))"}]},
    {"id": 5, "title": "Picked", "targets": [{"expr": "rate($metric[5m])"}]},
    {"id": 6, "title": "Broken", "targets": [{"expr": "sum(rate(queue_depth[5m]) by (queue)"}]}
  ]
}"#;

    #[test]
    fn dashboard_panels_targets_and_legends() {
        let parsed = parse_source("dash.json", None, DASHBOARD).expect("parses");
        assert_eq!(parsed.kind, SourceKind::GrafanaDashboard);
        let requests = reference(
            &parsed,
            "http_requests_total",
            "dash.json: panel \"Requests\"",
        );
        // `route` from `by`, `job` from the matcher, `user_id` from the legend.
        assert!(
            set(&["job", "route", "user_id"]).is_subset(&requests.labels),
            "{requests:?}"
        );
        // The `topk($top, …)` target parsed as a number, not a wildcard.
        assert!(
            !parsed
                .name_patterns
                .iter()
                .any(|p| p.location == "dash.json: panel \"Requests\"")
        );
        assert_eq!(
            reference(
                &parsed,
                "http_request_duration_seconds_bucket",
                "dash.json: panel \"p99\""
            )
            .labels,
            set(&["le"])
        );
        // Loki's LogQL is not read as PromQL.
        assert!(
            !parsed
                .references
                .iter()
                .any(|r| r.location.contains("Logs"))
        );
        assert!(
            !parsed
                .name_patterns
                .iter()
                .any(|p| p.location.contains("Logs"))
        );
        reference(
            &parsed,
            "deploy_timestamp_seconds",
            "dash.json: annotation \"Deploys\"",
        );
    }

    #[test]
    fn dashboard_variables() {
        let parsed = parse_source("dash.json", None, DASHBOARD).expect("parses");
        assert_eq!(
            reference(&parsed, "up", "dash.json: variable \"job\"").labels,
            set(&["env", "job"])
        );
        assert_eq!(parsed.unscoped_labels, set(&["instance"]));
        assert_eq!(
            reference(&parsed, "build_info", "dash.json: variable \"build\"").labels,
            set(&["job", "version"])
        );
        let listed = parsed
            .name_patterns
            .iter()
            .find(|p| p.location == "dash.json: variable \"metric\"")
            .expect("metrics() pattern");
        assert!(listed.wildcard);
        assert_eq!(listed.regex, "^(?:.*(?:^api_.*).*)$");
        // `$metric` is bounded by what its variable lists.
        let picked = parsed
            .name_patterns
            .iter()
            .find(|p| p.location == "dash.json: panel \"Picked\"")
            .expect("wildcard");
        assert!(picked.wildcard);
        assert_eq!(picked.regex, "^(?:.*(?:^api_.*).*)$");
        assert!(picked.reason.contains("$metric"), "{}", picked.reason);
    }

    #[test]
    fn dashboard_unparsed_query_gives_possible_names() {
        let parsed = parse_source("dash.json", None, DASHBOARD).expect("parses");
        assert_eq!(parsed.unparsed, ["sum(rate(queue_depth[5m]) by (queue)"]);
        let possible = reference(&parsed, "queue_depth", "dash.json: panel \"Broken\"");
        assert!(possible.possible);
        assert!(possible.any_label);
        assert_eq!(parsed.possible_metric_names(), ["queue_depth"]);
        assert!(!parsed.metric_names().contains(&"queue_depth".to_string()));
        // 5 targets (Loki's skipped), 4 query variables (not the custom
        // one), 1 annotation.
        assert_eq!(parsed.queries, 10);
    }

    #[test]
    fn wrapped_and_legacy_row_dashboards() {
        let wrapped = r#"{"meta": {"slug": "x"}, "dashboard": {"title": "x", "rows": [
            {"title": "r", "panels": [{"title": "Old", "targets": [{"expr": "node_load1"}]}]}]}}"#;
        assert_eq!(
            SourceKind::detect(wrapped),
            Ok(SourceKind::GrafanaDashboard)
        );
        let parsed = parse_source("old.json", None, wrapped).expect("parses");
        reference(&parsed, "node_load1", "old.json: panel \"Old\"");
    }

    #[test]
    fn adhoc_filters_read_any_label() {
        let content = r#"{"templating": {"list": [{"name": "filters", "type": "adhoc"}]},
            "panels": [{"title": "T", "targets": [{"expr": "sum(rate(x_total[5m]))"}]}]}"#;
        let parsed = parse_source("d.json", None, content).expect("parses");
        assert!(reference(&parsed, "x_total", "d.json: panel \"T\"").any_label);
    }

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

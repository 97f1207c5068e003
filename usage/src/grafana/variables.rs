//! Grafana template variables: what each is known to expand to (numbers,
//! metric names matching a regex), so a query using one parses as
//! Prometheus would see it, and the queries `query` variables run
//! themselves (`label_values`, `label_names`, `metrics`, `query_result`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::prometheus_datasource;
use crate::promql::{self, Templating, VariableHint};
use crate::source::{Collector, NamePattern};

/// What the dashboard's variables are known to expand to.
pub(super) fn templating_of(variables: &[&Value]) -> Templating {
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

pub(super) fn read_variable(
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
    use crate::fixtures::{DASHBOARD, reference, set};
    use crate::parse_source;

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
}

//! Grafana dashboards: the Prometheus queries of panels (collapsed rows
//! included), annotations and query variables, with the labels legend
//! templates print. Template variables are read in [`variables`].

mod variables;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

use crate::promql::Templating;
use crate::source::{Collector, Document, SourceKind, UsageError, invalid, json_type};
use variables::{read_variable, templating_of};

/// Reads a dashboard, bare or wrapped as `{"dashboard": …}`, into
/// `collector`.
pub(crate) fn read(collector: &mut Collector, document: &Document) -> Result<(), UsageError> {
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

pub(super) fn prometheus_datasource(datasource: Option<&Value>) -> bool {
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

#[cfg(test)]
mod tests {
    use crate::fixtures::{DASHBOARD, reference, set};
    use crate::{SourceKind, parse_source};

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
}

//! Prometheus rule files as Prometheus reads them (also wrapped in a
//! Kubernetes `PrometheusRule`), and the rules a Prometheus server reports
//! from `GET /api/v1/rules`: every `expr` is one query, and recording rules
//! name the metrics they define.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::promql::Templating;
use crate::source::{Collector, Document, SourceKind, UsageError, invalid, strip_position};

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

/// Reads a rule file, a `PrometheusRule` or an API answer into `collector`.
pub(crate) fn read(
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

#[cfg(test)]
mod tests {
    use crate::fixtures::{RULES, reference, set};
    use crate::{SourceKind, parse_source};

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
}

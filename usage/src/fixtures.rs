//! Sources and helpers the tests of the format readers share.

use std::collections::BTreeSet;

use crate::{MetricReference, ParsedSource};

pub(crate) const RULES: &str = r#"
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

pub(crate) const DASHBOARD: &str = r#"{
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

pub(crate) fn reference<'a>(
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

pub(crate) fn set(labels: &[&str]) -> BTreeSet<String> {
    labels.iter().map(|l| l.to_string()).collect()
}

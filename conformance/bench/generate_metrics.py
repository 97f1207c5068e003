#!/usr/bin/env python3
"""Writes the conformance runner's benchmark input: an OTLP JSON MetricsData
document of 200,000 metric data points (about 82 MB), and 10 metric
policies that read names, data point and resource attributes, metric types
and temporality.

    python3 conformance/bench/generate_metrics.py OUT_DIR

writes OUT_DIR/metrics.json and OUT_DIR/policies.json. The output is
deterministic (fixed seed), so figures taken on different days compare.
"""

import json
import random
import sys
from pathlib import Path

RESOURCES = 2_000
METRICS_PER_RESOURCE = 25
POINTS_PER_METRIC = 4  # 2,000 x 25 x 4 = 200,000 data points

SERVICES = ["checkout", "cart", "payments", "search", "frontend", "inventory", "shipping", "auth"]
ROUTES = ["/healthz", "/readyz", "/api/cart", "/api/orders/{id}", "/api/search", "/login", "/metrics"]
METHODS = ["GET", "POST", "PUT", "DELETE"]
NAMES = [
    ("http_server_request_duration_seconds", "histogram", "s"),
    ("http_server_requests_total", "sum", "1"),
    ("go_memstats_heap_alloc_bytes", "gauge", "By"),
    ("go_goroutines", "gauge", "1"),
    ("process_cpu_seconds_total", "sum", "s"),
    ("db_client_connections_usage", "gauge", "1"),
    ("queue_depth", "gauge", "1"),
    ("rpc_server_duration_ms", "histogram", "ms"),
]


def string_attr(key, value):
    return {"key": key, "value": {"stringValue": value}}


def point(rng, kind, t):
    attrs = [
        string_attr("http.route", rng.choice(ROUTES)),
        string_attr("http.request.method", rng.choice(METHODS)),
        string_attr("http.response.status_code", str(rng.choice([200, 200, 200, 404, 500]))),
        string_attr("server.address", f"10.0.{rng.randrange(256)}.{rng.randrange(256)}"),
    ]
    p = {
        "attributes": attrs,
        "startTimeUnixNano": str(1_700_000_000_000_000_000 + t),
        "timeUnixNano": str(1_700_000_060_000_000_000 + t),
    }
    if kind == "histogram":
        counts = [rng.randrange(50) for _ in range(5)]
        p.update(
            count=str(sum(counts)),
            sum=round(rng.random() * 100, 3),
            bucketCounts=[str(c) for c in counts],
            explicitBounds=[0.005, 0.05, 0.5, 5],
        )
    elif kind == "sum":
        p["asInt"] = str(rng.randrange(1_000_000))
    else:
        p["asDouble"] = round(rng.random() * 1e6, 3)
    return p


def metric(rng, t):
    name, kind, unit = rng.choice(NAMES)
    points = [point(rng, kind, t + i) for i in range(POINTS_PER_METRIC)]
    data = {"dataPoints": points}
    if kind == "sum":
        data.update(aggregationTemporality=2, isMonotonic=True)
    elif kind == "histogram":
        data["aggregationTemporality"] = 2
    return {"name": name, "description": f"{name} of the service", "unit": unit, kind: data}


def document(rng):
    resources = []
    t = 0
    for r in range(RESOURCES):
        metrics = []
        for _ in range(METRICS_PER_RESOURCE):
            metrics.append(metric(rng, t))
            t += POINTS_PER_METRIC
        resources.append(
            {
                "resource": {
                    "attributes": [
                        string_attr("service.name", SERVICES[r % len(SERVICES)]),
                        string_attr("service.instance.id", f"instance-{r}"),
                        string_attr("host.name", f"node-{r % 97}.cluster.local"),
                        string_attr("deployment.environment", "prod" if r % 5 else "staging"),
                    ]
                },
                "scopeMetrics": [
                    {"scope": {"name": "io.opentelemetry.sdk", "version": "1.38.0"}, "metrics": metrics}
                ],
                "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
            }
        )
    return {"resourceMetrics": resources}


def match(selector, **op):
    return {**selector, **op}


POLICIES = {
    "policies": [
        {"id": "drop-go-runtime", "name": "drop go runtime", "metric": {"match": [
            match({"metricField": "METRIC_FIELD_NAME"}, startsWith="go_")], "keep": False}},
        {"id": "drop-probe-latency", "name": "drop probe latency", "metric": {"match": [
            match({"metricField": "METRIC_FIELD_NAME"}, exact="http_server_request_duration_seconds"),
            match({"datapointAttribute": {"path": ["http.route"]}}, regex="^/(healthz|readyz)$")], "keep": False}},
        {"id": "keep-checkout", "name": "keep checkout", "metric": {"match": [
            match({"resourceAttribute": {"path": ["service.name"]}}, exact="checkout")], "keep": True}},
        {"id": "drop-staging", "name": "drop staging", "metric": {"match": [
            match({"resourceAttribute": {"path": ["deployment.environment"]}}, exact="staging")], "keep": False}},
        {"id": "drop-queue-depth", "name": "drop queue depth", "metric": {"match": [
            match({"metricField": "METRIC_FIELD_NAME"}, exact="queue_depth"),
            match({"resourceAttribute": {"path": ["host.name"]}}, endsWith="7.cluster.local")], "keep": False}},
        {"id": "keep-errors", "name": "keep errors", "metric": {"match": [
            match({"datapointAttribute": {"path": ["http.response.status_code"]}}, exact="500")], "keep": True}},
        {"id": "drop-metrics-route", "name": "drop /metrics", "metric": {"match": [
            match({"datapointAttribute": {"path": ["http.route"]}}, exact="/metrics")], "keep": False}},
        {"id": "drop-cumulative-rpc", "name": "drop cumulative rpc", "metric": {"match": [
            match({"metricField": "METRIC_FIELD_NAME"}, contains="rpc_"),
            {"aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE", "exists": True}], "keep": False}},
        {"id": "keep-gauges-with-unit", "name": "keep gauges", "metric": {"match": [
            {"metricType": "METRIC_TYPE_GAUGE", "exists": True},
            match({"metricField": "METRIC_FIELD_UNIT"}, exact="By")], "keep": True}},
        {"id": "drop-sdk-scope-deletes", "name": "drop deletes", "metric": {"match": [
            match({"scopeAttribute": {"path": ["none"]}}, exists=False),
            match({"datapointAttribute": {"path": ["http.request.method"]}}, exact="DELETE")], "keep": False}},
    ]
}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(19)
    with open(out / "metrics.json", "w") as fh:
        json.dump(document(rng), fh, separators=(",", ":"))
    with open(out / "policies.json", "w") as fh:
        json.dump(POLICIES, fh, indent=2)


if __name__ == "__main__":
    main()

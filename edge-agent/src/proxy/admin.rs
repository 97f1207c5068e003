//! The Edge's own endpoints: liveness, readiness, self-metrics and the
//! active policy set. None of them touches upstream.

use std::time::{SystemTime, UNIX_EPOCH};

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::{EdgeState, ResponseBody, full_response};

fn json_response(status: StatusCode, body: &Value) -> Response<ResponseBody> {
    let bytes = serde_json::to_vec_pretty(body).unwrap_or_default();
    full_response(status, "application/json", bytes)
}

pub fn health() -> Response<ResponseBody> {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

pub fn ready(state: &EdgeState) -> Response<ResponseBody> {
    if state.registry.ready() {
        json_response(StatusCode::OK, &json!({"status": "ready"}))
    } else {
        let waiting: Vec<String> = state
            .registry
            .providers()
            .into_iter()
            .filter(|p| !p.loaded)
            .map(|p| p.id)
            .collect();
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "waiting for policies", "providers": waiting}),
        )
    }
}

pub fn metrics(state: &EdgeState) -> Response<ResponseBody> {
    let body = state.metrics.render(&state.registry);
    full_response(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        body,
    )
}

fn unix(t: Option<SystemTime>) -> Value {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(Value::Null, |d| json!(d.as_secs_f64()))
}

pub fn policies(state: &EdgeState) -> Response<ResponseBody> {
    let registry = &state.registry;
    let engine = registry.engine();
    let totals = registry.totals();
    let providers: Vec<Value> = registry
        .providers()
        .into_iter()
        .map(|p| {
            json!({
                "id": p.id,
                "type": p.kind,
                "transport": p.transport,
                "loaded": p.loaded,
                "hash": p.hash,
                "policies": p.policies.len(),
                "rejected": p.rejected,
                "last_attempt_unix": unix(p.last_attempt),
                "last_success_unix": unix(p.last_success),
                "last_error": p.last_error,
                "syncs_ok": p.syncs_ok,
                "syncs_failed": p.syncs_failed,
            })
        })
        .collect();
    let policies: Vec<Value> = engine
        .policies()
        .iter()
        .map(|p| {
            let stats = totals.get(&p.id).copied().unwrap_or_default();
            json!({
                "id": p.id,
                "name": p.name,
                "signal": p.signal.map(|s| s.as_str()),
                "enabled": p.enabled,
                "provider": registry.owner(&p.id),
                "hash": registry.policy_hash(&p.id),
                "applied": p.errors.is_empty() && p.enabled && p.signal == Some(tero_sdk::Signal::Metric),
                "errors": p.error_messages(),
                "stats": {
                    "match_hits": stats.match_hits,
                    "match_misses": stats.match_misses,
                    "series_dropped": stats.records_dropped,
                    "bytes_dropped": stats.bytes_dropped,
                },
            })
        })
        .collect();
    let shadowed: Vec<Value> = registry
        .shadowed()
        .into_iter()
        .map(|(id, provider)| {
            json!({"id": id, "provider": provider, "overridden_by": registry.owner(&id)})
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "generation": engine.generation(),
            "ready": registry.ready(),
            "providers": providers,
            "policies": policies,
            "shadowed": shadowed,
        }),
    )
}

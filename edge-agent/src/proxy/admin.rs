//! The Edge's own endpoints: liveness, readiness, self-metrics, the
//! active policy set and log-sample intake. None of them touches upstream.

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::{EdgeState, ResponseBody, full_response, text_response};
use crate::logs::{BodyFormat, IntakeError};

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
                // In the words of `tero policy list` and `tero issues accept
                // --mode`: shadow policies count what they would drop and
                // never drop.
                "mode": tero_sdk::engine::mode_word(p.enabled, p.shadow),
                "provider": registry.owner(&p.id),
                "hash": registry.policy_hash(&p.id),
                // Metric policies run on scrapes, log and trace ones on pushes.
                "applied": p.errors.is_empty() && p.enabled && p.signal.is_some(),
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

const NO_CONTROL_PLANE: &str = "tero-edge: log intake needs a control plane to report to: \
configure a grpc or http policy provider and leave the inventory on (inventory.enabled, inventory.interval_secs)\n";

fn refused(e: &IntakeError) -> Response<ResponseBody> {
    tracing::debug!(error = %e, "log samples refused");
    text_response(e.status(), format!("tero-edge: {e}\n"))
}

/// `POST /_edge/logs`: log samples, mined into templates that the next
/// inventory report carries. A request is taken whole or refused whole.
pub async fn logs(state: &EdgeState, req: Request<Incoming>) -> Response<ResponseBody> {
    if req.method() != Method::POST {
        let mut resp = text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "tero-edge: log samples are POSTed\n".into(),
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    let intake = match &state.logs {
        Some(intake) if intake.is_reporting() => intake.clone(),
        // Mined for nobody: say why rather than accept and drop.
        Some(_) => {
            return text_response(StatusCode::SERVICE_UNAVAILABLE, NO_CONTROL_PLANE.into());
        }
        None if !state.config.logs.enabled => {
            return text_response(
                StatusCode::NOT_FOUND,
                "tero-edge: log intake is off (logs.enabled: false)\n".into(),
            );
        }
        None => {
            return text_response(StatusCode::SERVICE_UNAVAILABLE, NO_CONTROL_PLANE.into());
        }
    };
    let headers = req.headers();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let format = match BodyFormat::from_content_type(content_type) {
        Ok(f) => f,
        Err(e) => return refused(&e),
    };
    if let Some(coding) = headers.get(header::CONTENT_ENCODING) {
        let coding = coding.to_str().unwrap_or_default().trim();
        if !coding.is_empty() && !coding.eq_ignore_ascii_case("identity") {
            return text_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "tero-edge: compressed log samples are not supported; send them without Content-Encoding\n".into(),
            );
        }
    }
    let limit = intake.max_body_bytes();
    let too_large = IntakeError::BodyTooLarge { limit };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return refused(&too_large);
    }
    let query = req.uri().query().map(str::to_owned);
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    let body = match Limited::new(req.into_body(), cap).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return refused(&too_large),
        Err(e) => {
            return text_response(
                StatusCode::BAD_REQUEST,
                format!("tero-edge: could not read the request body: {e}\n"),
            );
        }
    };
    // Parsing and mining a large batch is CPU work: off the async workers.
    let mined =
        tokio::task::spawn_blocking(move || intake.ingest(format, query.as_deref(), &body)).await;
    match mined {
        Ok(Ok(done)) => {
            state.metrics.log_records(
                done.accepted,
                done.overflowed,
                done.empty,
                done.live_templates as u64,
            );
            tracing::debug!(
                accepted = done.accepted,
                overflowed = done.overflowed,
                templates = done.templates,
                new_templates = done.new_templates,
                "log samples mined"
            );
            json_response(
                StatusCode::ACCEPTED,
                &json!({
                    "accepted": done.accepted,
                    "templates": done.templates,
                    "new_templates": done.new_templates,
                }),
            )
        }
        Ok(Err(e)) => refused(&e),
        Err(e) => {
            tracing::error!(error = %e, "log sample mining failed");
            text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "tero-edge: log samples could not be mined\n".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{Method, StatusCode};
    use tero_proto::policy::ClientMetadata;

    use crate::config::Config;
    use crate::inventory::{ReportSink, Reporter, SendError};
    use crate::proxy::testing::TestEdge;

    struct Nowhere;

    impl ReportSink for Nowhere {
        async fn send(
            &mut self,
            _: &tero_proto::controlplane::InventoryReport,
            _: Duration,
        ) -> Result<(), SendError> {
            Ok(())
        }
    }

    fn config(extra: serde_json::Value) -> Config {
        let mut doc = serde_json::json!({"upstream_url": "http://127.0.0.1:1"});
        if let (Some(doc), Some(extra)) = (doc.as_object_mut(), extra.as_object()) {
            doc.extend(extra.clone());
        }
        Config::from_value(doc, &|_| None).unwrap().0
    }

    fn with_control_plane(logs: serde_json::Value) -> Config {
        config(serde_json::json!({
            "policy_providers": [{"id": "cp", "type": "grpc", "url": "http://127.0.0.1:1"}],
            "logs": logs,
        }))
    }

    #[tokio::test]
    async fn the_logs_endpoint_says_why_it_refuses() {
        let edge = TestEdge::start(with_control_plane(serde_json::json!({
            "max_body_bytes": 1024, "max_records_per_request": 2
        })))
        .await;
        let reporter = Reporter::new(
            edge.state.inventory.clone().unwrap(),
            Nowhere,
            Duration::from_secs(60),
            ClientMetadata::default(),
        );
        let post = |ct: Option<&'static str>, body: Vec<u8>| {
            edge.request(Method::POST, "/_edge/logs", ct, body)
        };
        let cases: Vec<(Option<&str>, Vec<u8>, StatusCode, &str)> = vec![
            (
                None,
                b"one line\n".to_vec(),
                StatusCode::ACCEPTED,
                "\"accepted\": 1",
            ),
            (
                Some("text/plain"),
                b"a\nb\nc\n".to_vec(),
                StatusCode::PAYLOAD_TOO_LARGE,
                "logs.max_records_per_request",
            ),
            (
                Some("text/plain"),
                vec![b'x'; 2000],
                StatusCode::PAYLOAD_TOO_LARGE,
                "logs.max_body_bytes",
            ),
            (
                Some("application/xml"),
                b"<a/>".to_vec(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "application/x-ndjson",
            ),
            (
                Some("application/jsonl"),
                b"{\"body\": 1}\nnot json\n".to_vec(),
                StatusCode::BAD_REQUEST,
                "line 2: invalid JSON",
            ),
            (
                Some("application/json"),
                b"{\"records\": 3}".to_vec(),
                StatusCode::BAD_REQUEST,
                "invalid JSON body",
            ),
        ];
        for (ct, body, status, says) in cases {
            let (got, text) = post(ct, body).await;
            assert_eq!(got, status, "{ct:?}: {text}");
            assert!(text.contains(says), "{ct:?}: {text}");
        }
        let (status, _) = edge.request(Method::GET, "/_edge/logs", None, "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

        // Without a reporter, samples would be mined for nobody.
        drop(reporter);
        let (status, text) = post(None, b"late line\n".to_vec()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    }

    #[tokio::test]
    async fn policies_are_listed_with_the_mode_words_of_the_cli() {
        use tero_sdk::policy::{Format, parse_policies};

        let edge = TestEdge::start(with_control_plane(serde_json::json!({}))).await;
        let yaml = "policies:\n\
            - {id: on, name: on, metric: {match: [{metric_field: name, exact: a}], keep: false}}\n\
            - {id: off, name: off, enabled: false, metric: {match: [{metric_field: name, exact: b}], keep: false}}\n\
            - {id: would, name: would, metric: {match: [{metric_field: name, exact: c}], keep: false}}\n";
        let mut policies = parse_policies(yaml, Format::Yaml).unwrap().policies;
        policies[2].labels.push(tero_proto::otel::KeyValue {
            key: "tero.mode".into(),
            value: Some(tero_proto::otel::AnyValue {
                value: Some(tero_proto::otel::any_value::Value::StringValue(
                    "shadow".into(),
                )),
            }),
        });
        edge.state
            .registry
            .update("cp", policies, "h".into(), Vec::new());
        let (status, text) = edge.request(Method::GET, "/_edge/policies", None, "").await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        let modes: Vec<(&str, &str)> = body["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["id"].as_str().unwrap(), p["mode"].as_str().unwrap()))
            .collect();
        let mut modes = modes;
        modes.sort_unstable();
        assert_eq!(
            modes,
            [("off", "disabled"), ("on", "active"), ("would", "shadow")],
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_logs_endpoint_needs_a_control_plane() {
        let edge = TestEdge::start(config(serde_json::json!({}))).await;
        assert!(edge.state.logs.is_none());
        let (status, text) = edge
            .request(Method::POST, "/_edge/logs", None, "a line\n")
            .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
        assert!(
            text.contains("log intake needs a control plane to report to"),
            "{text}"
        );

        let edge = TestEdge::start(with_control_plane(serde_json::json!({"enabled": false}))).await;
        assert!(edge.state.inventory.is_some() && edge.state.logs.is_none());
        let (status, text) = edge
            .request(Method::POST, "/_edge/logs", None, "a line\n")
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
        assert!(text.contains("logs.enabled"), "{text}");
    }
}

//! The HTTP classification providers against local servers that speak the
//! OpenAI Chat Completions and Anthropic Messages formats: request shape,
//! strict reply parsing, retries, fallback and token accounting.
//!
//! Every case runs once per provider (see `per_api!` at the bottom); the
//! fallback in a case is always the other provider.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tero_classify::{
    Anthropic, Chain, Classifier, EventKind, EventType, OpenAi, ProviderConfig, RetryPolicy,
    RunOutput, TokenUsage,
};

const OPENAI_KEY: &str = "sk-test-openai";
const ANTHROPIC_KEY: &str = "sk-ant-test";
const OPENAI_MODEL: &str = "gpt-test-mini";
const ANTHROPIC_MODEL: &str = "claude-test-haiku";

/// What [`EventType`] may contribute to a prompt (control-plane.md §6.4).
const ALLOWED_EVENT_FIELDS: [&str; 9] = [
    "fingerprint",
    "kind",
    "service",
    "name",
    "description",
    "metric_type",
    "labels",
    "severity",
    "examples",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    OpenAi,
    Anthropic,
}

impl Api {
    fn other(self) -> Api {
        match self {
            Api::OpenAi => Api::Anthropic,
            Api::Anthropic => Api::OpenAi,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Api::OpenAi => "/v1/chat/completions",
            Api::Anthropic => "/v1/messages",
        }
    }

    fn id(self) -> String {
        match self {
            Api::OpenAi => format!("openai/{OPENAI_MODEL}/prompt-1"),
            Api::Anthropic => format!("anthropic/{ANTHROPIC_MODEL}/prompt-1"),
        }
    }
}

/// What the mock does with one request.
#[derive(Debug, Clone)]
enum Step {
    /// Classifies every fingerprint of the request.
    Good,
    /// Classifies all but the last fingerprint.
    Partial,
    /// A reply whose payload is not the schema.
    Malformed,
    /// Classifies a fingerprint that was not asked about.
    Foreign,
    /// An error status, with an optional `Retry-After` and an optional
    /// OpenAI error code.
    Status(u16, Option<&'static str>, Option<&'static str>),
    /// Sleeps, then answers [`Step::Good`].
    Sleep(Duration),
}

struct Recorded {
    at: Instant,
    headers: HeaderMap,
    body: Value,
}

struct Mock {
    api: Api,
    script: Mutex<VecDeque<Step>>,
    /// Once the script is used up.
    default: Step,
    /// Billed per answered call: (input, output).
    usage: (u64, u64),
    requests: Mutex<Vec<Recorded>>,
}

impl Mock {
    fn calls(&self) -> usize {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Gaps between consecutive requests.
    fn gaps(&self) -> Vec<Duration> {
        let requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        requests
            .windows(2)
            .map(|w| w[1].at.duration_since(w[0].at))
            .collect()
    }

    /// Asserts the shape of every request received, returning the
    /// fingerprints asked about per request.
    fn assert_requests(&self) -> Vec<Vec<String>> {
        let requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        requests
            .iter()
            .map(|r| assert_request_shape(self.api, &r.headers, &r.body))
            .collect()
    }
}

async fn serve(api: Api, script: Vec<Step>, default: Step) -> (Arc<Mock>, String) {
    serve_billing(api, script, default, (100, 20)).await
}

async fn serve_billing(
    api: Api,
    script: Vec<Step>,
    default: Step,
    usage: (u64, u64),
) -> (Arc<Mock>, String) {
    let mock = Arc::new(Mock {
        api,
        script: Mutex::new(script.into()),
        default,
        usage,
        requests: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route(api.path(), post(handle))
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (mock, format!("http://{addr}"))
}

async fn handle(State(mock): State<Arc<Mock>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let step = {
        let mut script = mock.script.lock().unwrap_or_else(PoisonError::into_inner);
        script.pop_front().unwrap_or_else(|| mock.default.clone())
    };
    mock.requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Recorded {
            at: Instant::now(),
            headers,
            body: body.clone(),
        });
    let fingerprints = requested_fingerprints(&body);
    let item = |fp: &str| {
        json!({"fingerprint": fp, "category": "operational", "verdict": "keep",
               "confidence": 0.9, "rationale": "mock says so"})
    };
    let classifications: Vec<Value> = match &step {
        Step::Good | Step::Sleep(_) => fingerprints.iter().map(|fp| item(fp)).collect(),
        Step::Partial => fingerprints
            .iter()
            .take(fingerprints.len().saturating_sub(1))
            .map(|fp| item(fp))
            .collect(),
        Step::Foreign => vec![item("not-in-the-batch")],
        Step::Malformed => Vec::new(),
        Step::Status(status, retry_after, code) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::IM_A_TEAPOT);
            let error = match mock.api {
                Api::OpenAi => json!({"error": {"message": format!("mock {status}"),
                    "type": code.unwrap_or("mock_error"), "code": code}}),
                Api::Anthropic => json!({"type": "error", "error": {"type": "mock_error",
                    "message": format!("mock {status}")}}),
            };
            let mut response = (status, axum::Json(error)).into_response();
            if let Some(after) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", after.parse().expect("valid header value"));
            }
            return response;
        }
    };
    if let Step::Sleep(d) = step {
        tokio::time::sleep(d).await;
    }
    let malformed = matches!(step, Step::Malformed);
    let payload = json!({ "classifications": classifications });
    let reply = match mock.api {
        Api::OpenAi => {
            let content = if malformed {
                "Sure! Here are the classifications: {".to_string()
            } else {
                payload.to_string()
            };
            json!({
                "id": "chatcmpl-mock", "object": "chat.completion", "model": OPENAI_MODEL,
                "choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content, "refusal": null}}],
                "usage": {"prompt_tokens": mock.usage.0, "completion_tokens": mock.usage.1,
                    "total_tokens": mock.usage.0 + mock.usage.1}
            })
        }
        Api::Anthropic => {
            let content = if malformed {
                json!([{"type": "text", "text": "I would rather chat."}])
            } else {
                json!([{"type": "tool_use", "id": "toolu_mock", "name": "record_classifications",
                    "input": payload}])
            };
            json!({
                "id": "msg_mock", "type": "message", "role": "assistant", "model": ANTHROPIC_MODEL,
                "content": content, "stop_reason": if malformed { "end_turn" } else { "tool_use" },
                "usage": {"input_tokens": mock.usage.0, "output_tokens": mock.usage.1}
            })
        }
    };
    axum::Json(reply).into_response()
}

/// The user message: the batch as JSON (both APIs carry it as the user
/// turn's text).
fn user_content(body: &Value) -> Value {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let user = messages
        .iter()
        .find(|m| m["role"] == "user")
        .map(|m| m["content"].clone());
    let text = user.as_ref().and_then(Value::as_str).unwrap_or_default();
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn requested_fingerprints(body: &Value) -> Vec<String> {
    user_content(body)["event_types"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["fingerprint"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[track_caller]
fn assert_request_shape(api: Api, headers: &HeaderMap, body: &Value) -> Vec<String> {
    assert_eq!(header(headers, "content-type"), Some("application/json"));
    match api {
        Api::OpenAi => {
            assert_eq!(
                header(headers, "authorization"),
                Some(format!("Bearer {OPENAI_KEY}").as_str())
            );
            assert_eq!(header(headers, "x-api-key"), None);
            assert_eq!(
                keys(body),
                ["messages", "model", "response_format"]
                    .map(String::from)
                    .into()
            );
            assert_eq!(body["model"], OPENAI_MODEL);
            let format = &body["response_format"];
            assert_eq!(format["type"], "json_schema");
            assert_eq!(format["json_schema"]["strict"], true);
            assert!(
                format["json_schema"]["name"]
                    .as_str()
                    .is_some_and(|n| !n.is_empty())
            );
            assert_schema(&format["json_schema"]["schema"]);
            let roles: Vec<&str> = body["messages"]
                .as_array()
                .map(|m| m.iter().filter_map(|m| m["role"].as_str()).collect())
                .unwrap_or_default();
            assert_eq!(roles, ["system", "user"]);
        }
        Api::Anthropic => {
            assert_eq!(header(headers, "x-api-key"), Some(ANTHROPIC_KEY));
            assert_eq!(header(headers, "anthropic-version"), Some("2023-06-01"));
            assert_eq!(header(headers, "authorization"), None);
            assert_eq!(
                keys(body),
                [
                    "max_tokens",
                    "messages",
                    "model",
                    "system",
                    "tool_choice",
                    "tools"
                ]
                .map(String::from)
                .into()
            );
            assert_eq!(body["model"], ANTHROPIC_MODEL);
            assert!(body["max_tokens"].as_u64().is_some_and(|n| n > 0));
            assert!(body["system"].as_str().is_some_and(|s| !s.is_empty()));
            let tools = body["tools"].as_array().cloned().unwrap_or_default();
            assert_eq!(tools.len(), 1);
            assert_eq!(tools[0]["name"], "record_classifications");
            assert_schema(&tools[0]["input_schema"]);
            assert_eq!(
                body["tool_choice"],
                json!({"type": "tool", "name": "record_classifications"})
            );
            assert_eq!(body["messages"].as_array().map(Vec::len), Some(1));
        }
    }
    let content = user_content(body);
    assert_eq!(keys(&content), ["event_types".to_string()].into());
    let events = content["event_types"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!events.is_empty());
    for event in &events {
        for key in keys(event) {
            assert!(
                ALLOWED_EVENT_FIELDS.contains(&key.as_str()),
                "field {key:?} must not be sent"
            );
        }
    }
    requested_fingerprints(body)
}

#[track_caller]
fn assert_schema(schema: &Value) {
    assert_eq!(schema["type"], "object");
    let item = &schema["properties"]["classifications"]["items"];
    assert_eq!(
        keys(&item["properties"]),
        [
            "category",
            "confidence",
            "fingerprint",
            "rationale",
            "verdict"
        ]
        .map(String::from)
        .into()
    );
}

/// Fast retries so the suite stays quick; `Retry-After` is still honoured.
fn config(api: Api, base: &str) -> ProviderConfig {
    let (key, model) = match api {
        Api::OpenAi => (OPENAI_KEY, OPENAI_MODEL),
        Api::Anthropic => (ANTHROPIC_KEY, ANTHROPIC_MODEL),
    };
    ProviderConfig {
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            rate_limit_attempts: 3,
            unavailable_attempts: 3,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
            retry_after_cap: Duration::from_secs(5),
        },
        ..ProviderConfig::new(base, key, model)
    }
}

fn build(api: Api, config: ProviderConfig) -> Box<dyn Classifier> {
    match api {
        Api::OpenAi => Box::new(OpenAi::new(config).expect("valid OpenAI config")),
        Api::Anthropic => Box::new(Anthropic::new(config).expect("valid Anthropic config")),
    }
}

fn provider(api: Api, base: &str) -> Box<dyn Classifier> {
    build(api, config(api, base))
}

/// A mix of kinds, with every optional field filled somewhere.
fn events(n: usize) -> Vec<EventType> {
    (0..n)
        .map(|i| match i % 3 {
            0 => EventType {
                description: "Requests served.".into(),
                metric_type: "counter".into(),
                labels: vec!["route".into(), "status".into()],
                ..EventType::metric(&format!("m{i}"), "checkout", "http_requests_total")
            },
            1 => EventType {
                examples: vec!["order <redacted> placed by <email>".into()],
                ..EventType::log(
                    &format!("l{i}"),
                    "checkout",
                    "order <*> placed by <*>",
                    Some("INFO"),
                )
            },
            _ => EventType {
                kind: EventKind::Span,
                labels: vec!["http.route".into()],
                ..EventType::metric(&format!("s{i}"), "checkout", "GET /cart")
            },
        })
        .collect()
}

fn fingerprints(events: &[EventType]) -> Vec<String> {
    events.iter().map(|e| e.fingerprint.clone()).collect()
}

fn usage(input: u64, output: u64, requests: u64) -> TokenUsage {
    TokenUsage {
        input_tokens: input,
        output_tokens: output,
        requests,
    }
}

#[track_caller]
fn assert_complete(out: &RunOutput, input: &[EventType]) {
    let mut seen: Vec<String> = out
        .classifications
        .iter()
        .map(|c| c.fingerprint.clone())
        .chain(out.unclassified.iter().map(|(fp, _)| fp.clone()))
        .collect();
    seen.sort();
    let mut want = fingerprints(input);
    want.sort();
    assert_eq!(seen, want, "every fingerprint exactly once");
    assert_eq!(out.report.classified, out.classifications.len());
    assert_eq!(out.report.unclassified, out.unclassified.len());
}

// ---------------------------------------------------------------- cases

async fn success(api: Api) {
    let (mock, base) = serve(api, vec![], Step::Good).await;
    let input = events(3);
    let out = Chain::new(provider(api, &base)).run(&input).await;
    assert_complete(&out, &input);
    assert_eq!(out.report.classified, 3);
    assert_eq!(mock.calls(), 1);
    assert_eq!(mock.assert_requests(), [fingerprints(&input)]);
    for (c, e) in out.classifications.iter().zip(&input) {
        assert_eq!(c.fingerprint, e.fingerprint, "batch order");
        assert_eq!(c.classifier, api.id());
        assert_eq!(c.rationale, "mock says so");
    }
    assert_eq!(
        out.report.per_provider.get(&api.id()),
        Some(&usage(100, 20, 1))
    );
    assert_eq!(out.report.fallbacks, 0);
}

async fn malformed_twice_stays_unclassified(api: Api) {
    let (mock, base) = serve(api, vec![], Step::Malformed).await;
    let (fallback, fallback_base) = serve(api.other(), vec![], Step::Good).await;
    let input = events(2);
    let out = Chain::new(provider(api, &base))
        .with_fallback(provider(api.other(), &fallback_base))
        .run(&input)
        .await;
    assert_complete(&out, &input);
    assert_eq!(mock.calls(), 2, "one retry, no more");
    assert_eq!(fallback.calls(), 0, "malformed replies do not fall back");
    assert_eq!(out.report.unclassified, 2);
    for (_, reason) in &out.unclassified {
        assert!(reason.contains("malformed reply"), "{reason}");
    }
    // Malformed replies were billed all the same.
    assert_eq!(
        out.report.per_provider.get(&api.id()),
        Some(&usage(200, 40, 2))
    );
    mock.assert_requests();
}

async fn malformed_then_good_succeeds(api: Api) {
    let (mock, base) = serve(api, vec![Step::Malformed], Step::Good).await;
    let input = events(3);
    let out = Chain::new(provider(api, &base)).run(&input).await;
    assert_complete(&out, &input);
    assert_eq!(out.report.classified, 3);
    assert_eq!(mock.calls(), 2);
    assert_eq!(
        out.report.per_provider.get(&api.id()),
        Some(&usage(200, 40, 2))
    );
    mock.assert_requests();
}

async fn foreign_fingerprint_is_malformed(api: Api) {
    let (mock, base) = serve(api, vec![Step::Foreign], Step::Good).await;
    let input = events(2);
    let out = Chain::new(provider(api, &base)).run(&input).await;
    assert_complete(&out, &input);
    assert_eq!(out.report.classified, 2);
    assert_eq!(mock.calls(), 2);
    assert!(
        out.classifications
            .iter()
            .all(|c| c.fingerprint != "not-in-the-batch")
    );
}

async fn missing_fingerprint_is_unclassified(api: Api) {
    let (mock, base) = serve(api, vec![], Step::Partial).await;
    let input = events(3);
    let out = Chain::new(provider(api, &base)).run(&input).await;
    assert_complete(&out, &input);
    assert_eq!(mock.calls(), 1, "a partial reply is not retried");
    assert_eq!(out.report.classified, 2);
    assert_eq!(
        out.unclassified,
        [("s2".to_string(), "not in the provider's reply".to_string())]
    );
}

async fn rate_limit_waits_and_never_falls_back(api: Api) {
    let limited = Step::Status(429, Some("1"), None);
    let (mock, base) = serve(api, vec![limited.clone(), limited], Step::Good).await;
    let (fallback, fallback_base) = serve(api.other(), vec![], Step::Good).await;
    let input = events(2);
    let started = Instant::now();
    let out = Chain::new(provider(api, &base))
        .with_fallback(provider(api.other(), &fallback_base))
        .run(&input)
        .await;
    let elapsed = started.elapsed();
    assert_complete(&out, &input);
    assert_eq!(out.report.classified, 2);
    assert_eq!(mock.calls(), 3);
    assert_eq!(fallback.calls(), 0);
    assert_eq!(out.report.fallbacks, 0);
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
    for gap in mock.gaps() {
        assert!(
            gap >= Duration::from_secs(1),
            "Retry-After honoured: {gap:?}"
        );
    }
    assert!(out.classifications.iter().all(|c| c.classifier == api.id()));
    mock.assert_requests();
}

async fn rate_limit_exhausted_stays_unclassified(api: Api) {
    let (mock, base) = serve(api, vec![], Step::Status(429, Some("0"), None)).await;
    let (fallback, fallback_base) = serve(api.other(), vec![], Step::Good).await;
    let input = events(2);
    let out = Chain::new(provider(api, &base))
        .with_fallback(provider(api.other(), &fallback_base))
        .run(&input)
        .await;
    assert_complete(&out, &input);
    assert_eq!(mock.calls(), 3, "rate_limit_attempts");
    assert_eq!(fallback.calls(), 0, "rate limits never fall back");
    for (_, reason) in &out.unclassified {
        assert!(reason.contains("rate limited"), "{reason}");
    }
}

async fn auth_failure_falls_back(api: Api) {
    for status in [401, 403] {
        let (mock, base) = serve(api, vec![], Step::Status(status, None, None)).await;
        let (fallback, fallback_base) = serve(api.other(), vec![], Step::Good).await;
        let input = events(3);
        let out = Chain::new(provider(api, &base))
            .with_fallback(provider(api.other(), &fallback_base))
            .run(&input)
            .await;
        assert_complete(&out, &input);
        assert_eq!(mock.calls(), 1, "{status} is not retried");
        assert_eq!(fallback.calls(), 1);
        assert_eq!(out.report.classified, 3);
        assert_eq!(out.report.fallbacks, 1);
        assert!(
            out.classifications
                .iter()
                .all(|c| c.classifier == api.other().id())
        );
        assert_eq!(
            out.report.per_provider.get(&api.id()),
            Some(&TokenUsage::default())
        );
        assert_eq!(
            out.report.per_provider.get(&api.other().id()),
            Some(&usage(100, 20, 1))
        );
        mock.assert_requests();
        fallback.assert_requests();
    }
}

async fn persistent_5xx_falls_back_after_retries(api: Api) {
    let (mock, base) = serve(api, vec![], Step::Status(503, None, None)).await;
    let (fallback, fallback_base) = serve(api.other(), vec![], Step::Good).await;
    let input = events(3);
    let out = Chain::new(provider(api, &base))
        .with_fallback(provider(api.other(), &fallback_base))
        .run(&input)
        .await;
    assert_complete(&out, &input);
    assert_eq!(mock.calls(), 3, "unavailable_attempts");
    assert_eq!(fallback.calls(), 1);
    assert_eq!(out.report.classified, 3);
    assert_eq!(out.report.fallbacks, 1);
}

async fn timeout_is_retried_then_falls_back(api: Api) {
    let (mock, base) = serve(api, vec![], Step::Sleep(Duration::from_secs(3))).await;
    let (fallback, fallback_base) = serve(api.other(), vec![], Step::Good).await;
    let primary = build(
        api,
        ProviderConfig {
            timeout: Duration::from_millis(200),
            retry: RetryPolicy {
                unavailable_attempts: 2,
                ..config(api, &base).retry
            },
            ..config(api, &base)
        },
    );
    let input = events(2);
    let out = Chain::new(primary)
        .with_fallback(provider(api.other(), &fallback_base))
        .run(&input)
        .await;
    assert_complete(&out, &input);
    assert_eq!(mock.calls(), 2, "timed out, retried once, then gave up");
    assert_eq!(fallback.calls(), 1);
    assert_eq!(out.report.classified, 2);
    assert_eq!(out.report.fallbacks, 1);
}

async fn invalid_request_does_not_fall_back(api: Api) {
    for status in [400, 404, 422] {
        let (mock, base) = serve(api, vec![], Step::Status(status, None, None)).await;
        let (fallback, fallback_base) = serve(api.other(), vec![], Step::Good).await;
        let input = events(2);
        let out = Chain::new(provider(api, &base))
            .with_fallback(provider(api.other(), &fallback_base))
            .run(&input)
            .await;
        assert_complete(&out, &input);
        assert_eq!(mock.calls(), 1, "{status} is not retried");
        assert_eq!(fallback.calls(), 0, "{status} does not fall back");
        for (_, reason) in &out.unclassified {
            assert!(reason.contains("invalid request"), "{reason}");
        }
    }
}

async fn budget_exhaustion_stops_the_run(api: Api) {
    let (mock, base) = serve_billing(api, vec![], Step::Good, (1000, 200)).await;
    let primary = build(
        api,
        ProviderConfig {
            batch_size: 1,
            ..config(api, &base)
        },
    );
    // 1200 tokens per request: two fit in 3000, a third would not.
    let input = events(5);
    let out = Chain::new(primary).with_budget(3000).run(&input).await;
    assert_complete(&out, &input);
    assert!(out.report.stopped_by_budget);
    assert_eq!(mock.calls(), 2);
    assert_eq!(out.report.classified, 2);
    assert_eq!(out.report.unclassified, 3);
    assert!(
        out.unclassified
            .iter()
            .all(|(_, reason)| reason == "budget exhausted")
    );
    assert_eq!(out.report.total(), usage(2000, 400, 2));
}

async fn token_accounting_sums_per_provider(api: Api) {
    // Batch 1 succeeds at the primary; from batch 2 on it is down, and the
    // fallback takes batches 2 and 3.
    let down = Step::Status(500, None, None);
    let (mock, base) = serve(api, vec![Step::Good], down).await;
    let (fallback, fallback_base) = serve(api.other(), vec![], Step::Good).await;
    let primary = build(
        api,
        ProviderConfig {
            batch_size: 20,
            ..config(api, &base)
        },
    );
    let input = events(45);
    let out = Chain::new(primary)
        .with_fallback(provider(api.other(), &fallback_base))
        .with_budget(1_000_000)
        .run(&input)
        .await;
    assert_complete(&out, &input);
    assert_eq!(out.report.classified, 45);
    assert_eq!(mock.calls(), 1 + 3);
    assert_eq!(fallback.calls(), 2);
    assert_eq!(out.report.fallbacks, 2);
    assert!(!out.report.stopped_by_budget);
    assert_eq!(
        out.report.per_provider.get(&api.id()),
        Some(&usage(100, 20, 1))
    );
    assert_eq!(
        out.report.per_provider.get(&api.other().id()),
        Some(&usage(200, 40, 2))
    );
    assert_eq!(out.report.total(), usage(300, 60, 3));
    let sizes: Vec<usize> = mock
        .assert_requests()
        .iter()
        .chain(&fallback.assert_requests())
        .map(Vec::len)
        .collect();
    assert_eq!(sizes, [20, 20, 20, 20, 20, 5], "batches of batch_size");
}

/// The base URL as the OpenAI and Anthropic SDKs, Ollama and vLLM write
/// it (ending in `/v1`) and as the bare host: both reach the endpoint.
async fn base_url_with_or_without_the_version(api: Api) {
    let (mock, base) = serve(api, vec![], Step::Good).await;
    let input = events(1);
    for (i, variant) in [
        base.clone(),
        format!("{base}/"),
        format!("{base}/v1"),
        format!("{base}/v1/"),
    ]
    .iter()
    .enumerate()
    {
        let out = Chain::new(provider(api, variant)).run(&input).await;
        assert_eq!(out.report.classified, 1, "base URL {variant}");
        assert_eq!(mock.calls(), i + 1, "base URL {variant}");
    }
}

macro_rules! per_api {
    ($($case:ident),* $(,)?) => {
        mod openai {
            $(#[tokio::test] async fn $case() { super::$case(super::Api::OpenAi).await })*
        }
        mod anthropic {
            $(#[tokio::test] async fn $case() { super::$case(super::Api::Anthropic).await })*
        }
    };
}

per_api!(
    success,
    malformed_twice_stays_unclassified,
    malformed_then_good_succeeds,
    foreign_fingerprint_is_malformed,
    missing_fingerprint_is_unclassified,
    rate_limit_waits_and_never_falls_back,
    rate_limit_exhausted_stays_unclassified,
    auth_failure_falls_back,
    persistent_5xx_falls_back_after_retries,
    timeout_is_retried_then_falls_back,
    invalid_request_does_not_fall_back,
    budget_exhaustion_stops_the_run,
    token_accounting_sums_per_provider,
    base_url_with_or_without_the_version,
);

/// OpenAI reports an exhausted quota as 429 `insufficient_quota`: waiting
/// does not help, so it is treated as the account's permission failure.
#[tokio::test]
async fn openai_insufficient_quota_falls_back() {
    let quota = Step::Status(429, None, Some("insufficient_quota"));
    let (mock, base) = serve(Api::OpenAi, vec![], quota).await;
    let (fallback, fallback_base) = serve(Api::Anthropic, vec![], Step::Good).await;
    let input = events(2);
    let out = Chain::new(provider(Api::OpenAi, &base))
        .with_fallback(provider(Api::Anthropic, &fallback_base))
        .run(&input)
        .await;
    assert_eq!(mock.calls(), 1);
    assert_eq!(fallback.calls(), 1);
    assert_eq!(out.report.classified, 2);
}

/// An unreachable primary (nothing listens) is a connection failure.
#[tokio::test]
async fn connection_refused_falls_back() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("address"))
    };
    let (fallback, fallback_base) = serve(Api::Anthropic, vec![], Step::Good).await;
    let input = events(2);
    let out = Chain::new(provider(Api::OpenAi, &closed))
        .with_fallback(provider(Api::Anthropic, &fallback_base))
        .run(&input)
        .await;
    assert_eq!(fallback.calls(), 1);
    assert_eq!(out.report.classified, 2);
    assert_eq!(out.report.fallbacks, 1);
}

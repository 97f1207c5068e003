//! A local server speaking OpenAI's Chat Completions API, for end-to-end
//! tests of classification: the real API cannot be reached from here (and
//! costs money), so this stands in for it as the guide allows for
//! third-party SaaS. It answers every event type of a request with a
//! schema-valid classification, bills tokens, counts requests and keeps
//! their bodies so tests can check what left the control plane.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

/// Billed per event type in a request, and per reply.
pub const INPUT_TOKENS_PER_EVENT: u64 = 100;
pub const OUTPUT_TOKENS_PER_REPLY: u64 = 25;

pub struct FakeOpenAi {
    pub addr: SocketAddr,
    requests: Arc<AtomicU64>,
    bodies: Arc<Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeOpenAi {
    pub fn start() -> FakeOpenAi {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("fake OpenAI runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the fake OpenAI server");
        let addr = listener.local_addr().expect("local address");
        let requests = Arc::new(AtomicU64::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (counter, log) = (requests.clone(), bodies.clone());
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (counter, log) = (counter.clone(), log.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (counter, log) = (counter.clone(), log.clone());
                        async move { Ok::<_, Infallible>(answer(req, &counter, &log).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeOpenAi {
            addr,
            requests,
            bodies,
            _runtime: runtime,
        }
    }

    /// The base URL to configure (`--classifier-base-url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Chat completion requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Every request body received, as text.
    pub fn bodies(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

async fn answer(
    req: Request<Incoming>,
    counter: &AtomicU64,
    log: &Mutex<Vec<String>>,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/v1/chat/completions" {
        return reply(
            StatusCode::NOT_FOUND,
            json!({"error": {"message": "no such path"}}),
        );
    }
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer "));
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": {"message": "body"}}),
            );
        }
    };
    counter.fetch_add(1, Ordering::SeqCst);
    let text = String::from_utf8_lossy(&body).into_owned();
    log.lock().unwrap_or_else(|p| p.into_inner()).push(text);
    if !authorized {
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"message": "missing key", "type": "invalid_request_error"}}),
        );
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // The event types travel as JSON in the user message.
    let events: Vec<Value> = request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_str())
        .filter_map(|c| serde_json::from_str::<Value>(c).ok())
        .flat_map(|v| v["event_types"].as_array().cloned().unwrap_or_default())
        .collect();
    let classifications: Vec<Value> = events
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap_or_default();
            let (category, verdict) = if name.contains("health") {
                ("health_check", "waste")
            } else if name.starts_with("debug") || name.contains("DEBUG") {
                ("debug_noise", "waste")
            } else {
                ("operational", "keep")
            };
            json!({
                "fingerprint": e["fingerprint"], "category": category, "verdict": verdict,
                "confidence": 0.8, "rationale": format!("fake model on {name}")
            })
        })
        .collect();
    let input = INPUT_TOKENS_PER_EVENT * events.len() as u64;
    reply(
        StatusCode::OK,
        json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "model": request["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "refusal": null,
                "content": json!({"classifications": classifications}).to_string()}}],
            "usage": {"prompt_tokens": input, "completion_tokens": OUTPUT_TOKENS_PER_REPLY,
                "total_tokens": input + OUTPUT_TOKENS_PER_REPLY}
        }),
    )
}

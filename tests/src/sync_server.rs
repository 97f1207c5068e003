//! A fake policy control plane: `POST /v1/policy/sync` on loopback, and
//! `POST /api/v1/inventory`, whose protobuf `InventoryReport`s it stores
//! (decoded, and as the bytes received) and acknowledges.
//!
//! It decodes every `SyncRequest` (proto3 JSON, or binary protobuf when the
//! request says `application/x-protobuf`), records it, and answers with a
//! configurable `SyncResponse` in the request's encoding. It can be told to
//! fail the next requests (503 with `Retry-After`, or 500); failed requests
//! are recorded too, marked as not acknowledged.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message as _;
use tero_proto::controlplane::{InventoryAck, InventoryReport};
use tero_proto::otel::any_value;
use tero_proto::policy::{SyncRequest, SyncResponse};

const PROTOBUF: &str = "application/x-protobuf";

/// How the server fails one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 503 with `Retry-After: secs`.
    Unavailable { retry_after_secs: u32 },
    /// 500 without `Retry-After`.
    Internal,
}

/// What the server answered a request with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200 with the configured response.
    Acknowledged,
    Failed(Failure),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub request: SyncRequest,
    pub outcome: Outcome,
    pub protobuf: bool,
    pub at: Instant,
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    pub fn acknowledged(&self) -> bool {
        self.outcome == Outcome::Acknowledged
    }

    /// `match_hits` reported for `policy_id` (0 when absent).
    pub fn hits(&self, policy_id: &str) -> i64 {
        self.request
            .policy_statuses
            .iter()
            .filter(|s| s.id == policy_id)
            .map(|s| s.match_hits)
            .sum()
    }

    /// A string resource attribute from the client metadata.
    pub fn resource_attribute(&self, key: &str) -> Option<String> {
        let meta = self.request.client_metadata.as_ref()?;
        meta.resource_attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
    }
}

struct State {
    response: SyncResponse,
    failures: VecDeque<Failure>,
    recorded: Vec<Recorded>,
    inventory: Vec<InventoryReceived>,
}

/// One inventory report as received.
#[derive(Debug, Clone)]
pub struct InventoryReceived {
    pub report: InventoryReport,
    /// The request body exactly as it arrived.
    pub body: Bytes,
}

pub struct SyncServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// A full-sync response carrying the policies of an authoring YAML
/// document, with the given hash.
pub fn response_from_yaml(yaml: &str, hash: &str) -> SyncResponse {
    let loaded = tero_sdk::policy::parse_policies(yaml, tero_sdk::policy::Format::Yaml)
        .expect("test policies parse");
    assert!(
        loaded.rejected.is_empty(),
        "test policies rejected: {:?}",
        loaded.rejected
    );
    SyncResponse {
        policies: loaded.policies,
        hash: hash.to_owned(),
        sync_timestamp_unix_nano: 1_700_000_000_000_000_000,
        recommended_sync_interval_seconds: 0,
        sync_type: tero_proto::policy::SyncType::Full as i32,
        error_message: String::new(),
        extension_configs: Vec::new(),
    }
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

async fn inventory(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, "text/plain", e.to_string().into()),
    };
    let report = match InventoryReport::decode(body.clone()) {
        Ok(r) => r,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                "text/plain",
                format!("bad InventoryReport: {e}\n").into(),
            );
        }
    };
    let ack = InventoryAck { seq: report.seq };
    state
        .lock()
        .unwrap()
        .inventory
        .push(InventoryReceived { report, body });
    reply(StatusCode::OK, PROTOBUF, ack.encode_to_vec())
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() == Method::POST && req.uri().path() == "/api/v1/inventory" {
        return inventory(state, req).await;
    }
    if req.uri().path() != "/v1/policy/sync" {
        return reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec());
    }
    if req.method() != Method::POST {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            b"POST only\n".to_vec(),
        );
    }
    let protobuf = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with(PROTOBUF));
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, "text/plain", e.to_string().into()),
    };
    let decoded = if protobuf {
        SyncRequest::decode(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<SyncRequest>(&body).map_err(|e| e.to_string())
    };
    let request = match decoded {
        Ok(r) => r,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                "text/plain",
                format!("bad SyncRequest: {e}\n").into(),
            );
        }
    };
    let mut state = state.lock().unwrap();
    let failure = state.failures.pop_front();
    state.recorded.push(Recorded {
        request,
        outcome: failure.map_or(Outcome::Acknowledged, Outcome::Failed),
        protobuf,
        at: Instant::now(),
        headers,
    });
    match failure {
        Some(Failure::Unavailable { retry_after_secs }) => Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header(header::RETRY_AFTER, retry_after_secs.to_string())
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Full::new(Bytes::from_static(b"control plane busy\n")))
            .expect("response"),
        Some(Failure::Internal) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            b"control plane broke\n".to_vec(),
        ),
        None if protobuf => reply(StatusCode::OK, PROTOBUF, state.response.encode_to_vec()),
        None => reply(
            StatusCode::OK,
            "application/json",
            serde_json::to_vec(&state.response).expect("encode SyncResponse"),
        ),
    }
}

impl SyncServer {
    pub fn start(response: SyncResponse) -> SyncServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("sync server runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind sync server");
        let addr = listener.local_addr().expect("sync server address");
        let state = Arc::new(Mutex::new(State {
            response,
            failures: VecDeque::new(),
            recorded: Vec::new(),
            inventory: Vec::new(),
        }));
        let shared = state.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(state, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        SyncServer {
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    /// The base URL (the Edge appends `/v1/policy/sync`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers later requests with `response`.
    pub fn set_response(&self, response: SyncResponse) {
        self.state.lock().unwrap().response = response;
    }

    /// Fails the next requests, one failure each, in order.
    pub fn fail_next(&self, failures: &[Failure]) {
        self.state.lock().unwrap().failures.extend(failures);
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().recorded.clone()
    }

    /// Every inventory report received so far, oldest first.
    pub fn inventory_reports(&self) -> Vec<InventoryReceived> {
        self.state.lock().unwrap().inventory.clone()
    }
}

impl Drop for SyncServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

//! Requests to paths the Edge does not serve, relayed unchanged to
//! `upstream_url` (as the Tero Edge does): a Datadog agent's
//! `/api/v1/validate` or an exporter's other calls keep working through
//! it. Bodies stream both ways, never held whole and never cut at a body
//! cap; `intake.relay_other_paths: false` answers 404 instead.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use super::forward::{self, ForwardError};
use crate::proxy::{BoxError, Deadline, EdgeState, ResponseBody, text_response};

/// Relays a request through the intake's layers.
pub async fn handle(state: Arc<EdgeState>, req: Request<Incoming>) -> Response<ResponseBody> {
    let span = tracing::info_span!(
        "relay",
        otel.kind = "server",
        http.request.method = %req.method(),
        url.path = req.uri().path(),
    );
    let budget = state.config.intake.upstream_timeout;
    super::layered(state, req, span, super::http::busy, budget, relay).await
}

async fn relay(state: Arc<EdgeState>, req: Request<Incoming>) -> Response<ResponseBody> {
    let deadline = req
        .extensions()
        .get::<Deadline>()
        .copied()
        .unwrap_or_else(|| Deadline::after(state.config.intake.upstream_timeout));
    let config = &state.config.intake;
    let (parts, incoming) = req.into_parts();
    let upstream = config
        .relay_other_paths
        .then(|| forward::destination(config, None, parts.uri.path(), parts.uri.query()))
        .flatten();
    let Some(upstream) = upstream else {
        return text_response(
            StatusCode::NOT_FOUND,
            format!(
                "tero-edge: not found; scrape /metrics ({})\n",
                if config.relay_other_paths {
                    "other paths are relayed to upstream_url, which is not configured"
                } else {
                    "relaying other paths is off: intake.relay_other_paths"
                }
            ),
        );
    };
    let failed = |e: ForwardError| {
        state.metrics.intake.relayed(false);
        forward::failure_response(&e)
    };
    let headers = match forward::upstream_headers(&parts.headers) {
        Ok(h) => h,
        Err(e) => return failed(e),
    };
    let body = incoming.map_err(BoxError::from).boxed_unsync();
    let mut request = Request::new(body);
    *request.method_mut() = parts.method;
    *request.uri_mut() = upstream;
    *request.headers_mut() = headers;
    match forward::send(&state.intake.client, request, &deadline).await {
        Ok(response) => {
            state.metrics.intake.relayed(true);
            forward::pass_back(response, &deadline)
        }
        Err(e) => {
            tracing::debug!(error = %e, "relay failed");
            failed(e)
        }
    }
}

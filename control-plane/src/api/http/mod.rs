//! HTTP/1.1 JSON: the admin API under `/api/v1/` and the Sync endpoint at
//! `POST /v1/policy/sync`.
//!
//! Request and response bodies are the proto3 JSON mapping of the gRPC
//! messages, so a JSON body can be written from the .proto files. Two
//! conveniences differ: a policy sent without `enabled` is created enabled,
//! as the policy format defines, where proto3 would read false; and a policy
//! that is not proto3 JSON is read in the authoring form of policy files
//! (`metric_field: name`, `equals: 200`), as `tero` shows policies.
//!
//! Each service lists its own routes (`http_routes`), next to its gRPC
//! methods; this module assembles them and holds what they share.

mod extract;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

pub(crate) use extract::path_params;
pub use extract::{
    AdminAuth, Bare, CarriesPolicy, EdgeAuth, EdgeBody, EdgeMessage, PROTOBUF, PathParam,
    PolicyJson, ProtoJson, ProtoQuery, QueryParams, names_protobuf, parse_bool, parse_num,
    unknown_param,
};

use super::{ApiError, State};

/// Request bodies of the JSON API and of Sync, at most (inventory reports
/// and log samples have their own bounds).
pub const MAX_BODY_BYTES: usize = 2 << 20;

pub fn router(state: State) -> Router {
    Router::new()
        .merge(super::sync::http_routes())
        .merge(super::admin::http_routes())
        .merge(super::issues::http_routes())
        .merge(super::inventory::http_routes())
        .merge(super::classify::http_routes())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(crate::metrics::handler))
        .with_state(state)
}

impl<T: Serialize, const LIMIT: usize> IntoResponse for ProtoJson<T, LIMIT> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(e) => ApiError::Internal(format!("response encoding failed: {e}")).into_response(),
        }
    }
}

/// A call's answer: its response message as JSON, or the API's error.
pub fn respond<T: Serialize>(result: Result<T, ApiError>) -> Response {
    match result {
        Ok(message) => ProtoJson::<T>(message).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn ready(axum::extract::State(state): axum::extract::State<State>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database unreachable: {e}\n"),
        )
            .into_response(),
    }
}

/// A service's admin routes, one line per call as `grpc_methods!` lists the
/// gRPC methods: `verb "path" => call(Input)`, where `Input` is the
/// extractor the request message comes from. A route with a path parameter
/// names it after the input (`call(Input, id)`) and the message takes it by
/// [`PathParam`]; fields the route fixes follow in braces
/// (`{ enabled: true }`). A path's methods are listed in the order a 405
/// names them in `Allow`.
///
/// Each handler extracts the path, then the admin's credentials, then the
/// input: the order the routes had when written out by hand, so a caller
/// without credentials is refused before its query or body is read.
macro_rules! admin_routes {
    (@handler $call:ident($input:ty)) => {
        |auth: $crate::api::http::AdminAuth, input: $input| async move {
            $crate::api::http::respond(auth.admin().$call(input.0).await)
        }
    };
    (@handler $call:ident($input:ty, $param:ident) $({ $($field:ident: $value:expr),* })?) => {
        |axum::extract::Path($param): axum::extract::Path<String>,
         auth: $crate::api::http::AdminAuth,
         input: $input| async move {
            $crate::api::http::respond(
                async move {
                    let mut request = input.0;
                    $crate::api::http::PathParam::set_path_param(&mut request, $param)?;
                    $($(request.$field = $value;)*)?
                    auth.admin().$call(request).await
                }
                .await,
            )
        }
    };
    ($($verb:ident $path:literal => $call:ident($input:ty $(, $param:ident)?)
        $({ $($field:ident: $value:expr),* $(,)? })?;)*) => {
        /// This service's HTTP routes.
        pub fn http_routes() -> axum::Router<$crate::api::State> {
            axum::Router::new()
            $(
                .route($path, axum::routing::$verb(
                    $crate::api::http::admin_routes!(
                        @handler $call($input $(, $param)?) $({ $($field: $value),* })?
                    )
                ))
            )*
        }
    };
}
pub(crate) use admin_routes;

//! The extractors every HTTP route is built from: who calls (`AdminAuth`,
//! `EdgeAuth`) and what the call's request message is (`ProtoJson`,
//! `PolicyJson`, `ProtoQuery`, `Bare`, `EdgeBody`).
//!
//! Order is the contract here. The credential extractors read headers
//! only and reject early; the body extractors consume the request, so axum
//! runs them last: a caller without credentials learns nothing but 401
//! whatever it sends, and an oversize body is the API's JSON 413 naming the
//! limit, not plain text.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use prost::Message;
use serde::Deserialize as _;
use serde::de::DeserializeOwned;

use super::MAX_BODY_BYTES;
use crate::api::admin::Admin;
use crate::api::{ApiError, State};
use crate::auth::Principal;

pub const PROTOBUF: &str = "application/x-protobuf";

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// An administrator's call: the admin API's credential check.
pub struct AdminAuth {
    state: State,
    principal: Principal,
}

impl AdminAuth {
    /// The admin operations, as this caller.
    pub fn admin(&self) -> Admin<'_> {
        Admin {
            state: &self.state,
            principal: self.principal.clone(),
        }
    }
}

impl FromRequestParts<State> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, ApiError> {
        let principal = state
            .auth
            .authenticate_admin(authorization(&parts.headers))
            .await?;
        Ok(AdminAuth {
            state: state.clone(),
            principal,
        })
    }
}

/// An edge's call (Sync, inventory reports): any valid key.
pub struct EdgeAuth(pub Principal);

impl FromRequestParts<State> for EdgeAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, ApiError> {
        Ok(EdgeAuth(
            state
                .auth
                .authenticate(authorization(&parts.headers))
                .await?,
        ))
    }
}

/// The whole body, or `RESOURCE_EXHAUSTED`/413 beyond `limit` bytes.
async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::TooLarge(format!(
            "request body: larger than {limit} bytes, the most this endpoint accepts"
        ))
    };
    if hyper::body::Body::size_hint(&body)
        .exact()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = cause {
            if err.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            cause = err.source();
        }
        ApiError::invalid("body", format!("could not be read: {e}"))
    })
}

fn body_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::InvalidArgument {
        message: format!("request body is not valid JSON for this call: {e}"),
        policy_id: None,
        field: None,
    }
}

/// A request message as its proto3 JSON, at most `LIMIT` bytes; an empty
/// body is the empty message. As a response, the message's JSON.
pub struct ProtoJson<T, const LIMIT: usize = MAX_BODY_BYTES>(pub T);

impl<T: DeserializeOwned, S: Send + Sync, const LIMIT: usize> FromRequest<S>
    for ProtoJson<T, LIMIT>
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let body = read_body(req.into_body(), LIMIT).await?;
        let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &body
        };
        serde_json::from_slice(body)
            .map(ProtoJson)
            .map_err(body_error)
    }
}

/// A request carrying a policy, which JSON may send without `enabled` where
/// proto3 would read false.
pub trait CarriesPolicy: Sized {
    /// The message the body decodes as.
    type Message: DeserializeOwned;
    /// The request, told whether the policy left `enabled` out.
    fn from_message(message: Self::Message, enabled_absent: bool) -> Self;
}

/// A request carrying a policy: see [`CarriesPolicy`]. The policy may be
/// its proto3 JSON or the authoring form of policy files (`metric_field:
/// name`, `equals: 200`), so a policy shown by `tero` can be sent as is.
pub struct PolicyJson<T>(pub T);

impl<T: CarriesPolicy, S: Send + Sync> FromRequest<S> for PolicyJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let body = read_body(req.into_body(), MAX_BODY_BYTES).await?;
        let mut value: serde_json::Value = serde_json::from_slice(&body).map_err(body_error)?;
        let absent = value
            .get("policy")
            .and_then(|p| p.as_object())
            .is_some_and(|p| !p.contains_key("enabled"));
        let message = match T::Message::deserialize(&value) {
            Ok(message) => message,
            Err(wire_error) => {
                // Not proto3 JSON: read the policy as the authoring form,
                // whose decoder also names the policy and field at fault.
                let Some(policy) = value.get_mut("policy") else {
                    return Err(body_error(wire_error));
                };
                let decoded = tero_sdk::policy::parse_policy_value(policy)
                    .map_err(|rejected| authoring_error(&wire_error, rejected))?;
                *policy = serde_json::to_value(decoded).map_err(body_error)?;
                serde_json::from_value(value).map_err(body_error)?
            }
        };
        Ok(PolicyJson(T::from_message(message, absent)))
    }
}

/// A policy that is neither valid proto3 JSON nor a valid authoring form:
/// the authoring decoder's first error, which names the field.
fn authoring_error(
    wire_error: &serde_json::Error,
    rejected: tero_sdk::policy::RejectedPolicy,
) -> ApiError {
    let field = rejected
        .errors
        .first()
        .map(|e| format!("policy.{}", e.field_path()));
    ApiError::InvalidArgument {
        message: format!(
            "request body: {rejected} (read as the authoring form; as proto3 JSON: {wire_error})"
        ),
        policy_id: rejected.id,
        field,
    }
}

/// A request message read from the query string, one pair at a time in
/// order, so a repeated key stays repeated.
pub trait QueryParams: Default {
    fn set(&mut self, key: &str, value: String) -> Result<(), ApiError>;
}

/// A request message from the query string: see [`QueryParams`].
pub struct ProtoQuery<T>(pub T);

impl<T: QueryParams, S: Send + Sync> FromRequestParts<S> for ProtoQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
                .map_err(|e| ApiError::invalid("query", e.to_string()))?;
        let mut message = T::default();
        for (key, value) in pairs {
            message.set(&key, value)?;
        }
        Ok(ProtoQuery(message))
    }
}

/// The error for a query parameter the call does not take.
pub fn unknown_param(key: &str) -> ApiError {
    ApiError::invalid(key, "unknown query parameter")
}

pub fn parse_num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::invalid(key, format!("{value:?} is not a number")))
}

pub fn parse_bool(key: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::invalid(
            key,
            format!("{value:?} is not true or false"),
        )),
    }
}

/// A request message with nothing read from the request but the path:
/// the query and the body, if any, are ignored.
pub struct Bare<T>(pub T);

impl<T: Default, S: Send + Sync> FromRequestParts<S> for Bare<T> {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(_: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Bare(T::default()))
    }
}

/// A request message that names its resource in the path (`{id}`).
pub trait PathParam {
    fn set_path_param(&mut self, value: String) -> Result<(), ApiError>;
}

/// Implements [`PathParam`] for messages whose path parameter is one field.
macro_rules! path_params {
    ($($message:ty => $field:ident),* $(,)?) => {$(
        impl $crate::api::http::PathParam for $message {
            fn set_path_param(&mut self, value: String) -> Result<(), $crate::api::ApiError> {
                self.$field = value;
                Ok(())
            }
        }
    )*};
}
pub(crate) use path_params;

/// Whether a header (`content-type`, `accept`) names protobuf.
pub fn names_protobuf(headers: &HeaderMap, name: header::HeaderName) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(PROTOBUF))
}

/// A message edges send, named in errors.
pub trait EdgeMessage: Message + Default + DeserializeOwned {
    const NAME: &'static str;
}

/// An edge's message, protobuf when its content type says so, else its
/// proto3 JSON; at most `LIMIT` bytes.
pub struct EdgeBody<T, const LIMIT: usize = MAX_BODY_BYTES>(pub T);

impl<T: EdgeMessage, S: Send + Sync, const LIMIT: usize> FromRequest<S> for EdgeBody<T, LIMIT> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let protobuf = names_protobuf(req.headers(), header::CONTENT_TYPE);
        let body = read_body(req.into_body(), LIMIT).await?;
        let what = T::NAME;
        let message = if protobuf {
            T::decode(body)
                .map_err(|e| ApiError::invalid("body", format!("not a protobuf {what}: {e}")))?
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::invalid("body", format!("not a JSON {what}: {e}")))?
        };
        Ok(EdgeBody(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tero_proto::controlplane::SetPolicyEnabledRequest;

    fn request(body: impl Into<axum::body::Body>) -> Request {
        Request::builder()
            .uri("/x")
            .body(body.into())
            .expect("a request")
    }

    fn streamed(bytes: usize) -> Request {
        let chunks = (0..bytes.div_ceil(1024))
            .map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 1024])));
        request(axum::body::Body::from_stream(futures_util::stream::iter(
            chunks,
        )))
    }

    #[tokio::test]
    async fn an_empty_json_body_is_the_empty_message() {
        let ProtoJson(message) =
            ProtoJson::<SetPolicyEnabledRequest>::from_request(request(" \n"), &())
                .await
                .expect("empty is {}");
        assert_eq!(message, SetPolicyEnabledRequest::default());
    }

    #[tokio::test]
    async fn a_body_that_is_not_the_calls_json_is_invalid() {
        let err = ProtoJson::<SetPolicyEnabledRequest>::from_request(request("{"), &())
            .await
            .err()
            .expect("refused");
        assert!(
            err.to_string()
                .starts_with("request body is not valid JSON for this call"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_body_over_the_limit_names_it_announced_or_streamed() {
        for req in [request(vec![b' '; 2048]), streamed(2048)] {
            let err = ProtoJson::<SetPolicyEnabledRequest, 1000>::from_request(req, &())
                .await
                .err()
                .expect("refused");
            assert!(matches!(err, ApiError::TooLarge(_)), "{err:?}");
            assert!(err.to_string().contains("1000 bytes"), "{err}");
        }
    }

    #[tokio::test]
    async fn query_pairs_are_read_in_order_and_unknown_keys_refused() {
        #[derive(Default)]
        struct Listing {
            labels: Vec<String>,
            page_size: u32,
        }
        impl QueryParams for Listing {
            fn set(&mut self, key: &str, value: String) -> Result<(), ApiError> {
                match key {
                    "label" => self.labels.push(value),
                    "page_size" => self.page_size = parse_num(key, &value)?,
                    _ => return Err(unknown_param(key)),
                }
                Ok(())
            }
        }
        let parts = |uri: &str| {
            Request::builder()
                .uri(uri)
                .body(())
                .expect("a request")
                .into_parts()
                .0
        };
        let ProtoQuery(message) = ProtoQuery::<Listing>::from_request_parts(
            &mut parts("/x?label=a&label=b%3Dc&page_size=7"),
            &(),
        )
        .await
        .expect("read");
        assert_eq!(message.labels, ["a", "b=c"]);
        assert_eq!(message.page_size, 7);
        for (uri, field) in [("/x?page_size=many", "page_size"), ("/x?nope=1", "nope")] {
            let err = ProtoQuery::<Listing>::from_request_parts(&mut parts(uri), &())
                .await
                .err()
                .expect("refused");
            assert!(
                matches!(&err, ApiError::InvalidArgument { field: Some(f), .. } if f == field),
                "{err:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_edge_body_is_protobuf_when_its_content_type_says_so() {
        use tero_proto::policy::SyncRequest;
        let sent = SyncRequest {
            last_successful_hash: "h1".into(),
            ..Default::default()
        };
        let protobuf = |body: Vec<u8>| {
            Request::builder()
                .uri("/x")
                .header(header::CONTENT_TYPE, PROTOBUF)
                .body(axum::body::Body::from(body))
                .expect("a request")
        };
        let json = request(r#"{"lastSuccessfulHash": "h1"}"#);
        for req in [protobuf(sent.encode_to_vec()), json] {
            let EdgeBody(got) = EdgeBody::<SyncRequest>::from_request(req, &())
                .await
                .expect("decoded");
            assert_eq!(got, sent);
        }
        let err = EdgeBody::<SyncRequest>::from_request(protobuf(vec![0xff; 4]), &())
            .await
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("not a protobuf SyncRequest"),
            "{err}"
        );
    }
}

//! API errors, and how each transport shows them.
//!
//! gRPC gets the canonical status code with a message naming what to change,
//! plus `tero-*` metadata for programs (the field path, the current
//! revision). HTTP gets the matching status and a JSON body with the same
//! facts: `{"code": "ABORTED", "message": …, "currentRevision": 7}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tonic::{Code, Status};

use crate::auth::AuthError;
use crate::ingest::IngestError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{message}")]
    InvalidArgument {
        message: String,
        /// The policy at fault, when the request carried one.
        policy_id: Option<String>,
        /// The dotted path of the wrong field.
        field: Option<String>,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{message}")]
    Aborted {
        message: String,
        current_revision: u64,
    },
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_secs: u32,
    },
    /// A request body over the endpoint's limit.
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::InvalidArgument {
            message: format!("{field}: {}", message.into()),
            policy_id: None,
            field: Some(field.to_owned()),
        }
    }

    fn code(&self) -> Code {
        match self {
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
            ApiError::PermissionDenied(_) => Code::PermissionDenied,
            ApiError::InvalidArgument { .. } => Code::InvalidArgument,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::AlreadyExists(_) => Code::AlreadyExists,
            ApiError::Aborted { .. } => Code::Aborted,
            ApiError::Unavailable { .. } => Code::Unavailable,
            ApiError::TooLarge(_) => Code::ResourceExhausted,
            ApiError::Internal(_) => Code::Internal,
        }
    }

    fn http_status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            ApiError::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists(_) | ApiError::Aborted { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code_name(&self) -> &'static str {
        match self.code() {
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::Aborted => "ABORTED",
            Code::Unavailable => "UNAVAILABLE",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            _ => "INTERNAL",
        }
    }

    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({ "code": self.code_name(), "message": self.to_string() });
        match self {
            ApiError::InvalidArgument {
                policy_id, field, ..
            } => {
                if let Some(id) = policy_id {
                    body["policyId"] = id.clone().into();
                }
                if let Some(field) = field {
                    body["field"] = field.clone().into();
                }
            }
            ApiError::Aborted {
                current_revision, ..
            } => {
                body["currentRevision"] = (*current_revision).into();
            }
            ApiError::Unavailable {
                retry_after_secs, ..
            } => {
                body["retryAfterSeconds"] = (*retry_after_secs).into();
            }
            _ => {}
        }
        body
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Status {
        let mut status = Status::new(err.code(), err.to_string());
        let md = status.metadata_mut();
        let mut put = |key: &'static str, value: String| {
            if let Ok(v) = value.parse() {
                md.insert(key, v);
            }
        };
        match &err {
            ApiError::InvalidArgument {
                policy_id, field, ..
            } => {
                if let Some(id) = policy_id {
                    put("tero-policy-id", id.clone());
                }
                if let Some(field) = field {
                    put("tero-field", field.clone());
                }
            }
            ApiError::Aborted {
                current_revision, ..
            } => {
                put("tero-current-revision", current_revision.to_string());
            }
            ApiError::Unavailable {
                retry_after_secs, ..
            } => {
                put("retry-after", retry_after_secs.to_string());
            }
            _ => {}
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.http_status();
        let mut response = (status, axum::Json(self.body())).into_response();
        if let ApiError::Unavailable {
            retry_after_secs, ..
        } = &self
            && let Ok(v) = retry_after_secs.to_string().parse()
        {
            response.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        if let ApiError::Unauthenticated(_) = &self {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { .. } => ApiError::NotFound(err.to_string()),
            StoreError::AlreadyExists { .. } => ApiError::AlreadyExists(format!(
                "{err}: update it (with its current revision) or choose another id"
            )),
            StoreError::StaleRevision { current, .. } => ApiError::Aborted {
                message: err.to_string(),
                current_revision: current,
            },
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::Internal(other.to_string())
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Missing | AuthError::Invalid => ApiError::Unauthenticated(err.to_string()),
            AuthError::AdminRequired => ApiError::PermissionDenied(err.to_string()),
            AuthError::Store(e) => ApiError::from(e),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(err: IngestError) -> Self {
        ApiError::Unavailable {
            message: err.to_string(),
            retry_after_secs: 5,
        }
    }
}

//! What can go wrong talking to a control plane, in terms a caller can act
//! on: each variant says what to change.

use std::time::Duration;

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "invalid endpoint {endpoint:?}: {reason} (expected http://host:port or https://host:port)"
    )]
    InvalidEndpoint { endpoint: String, reason: String },

    #[error("invalid token: {0}")]
    InvalidToken(String),

    #[error("cannot read the CA certificate {path}: {reason}")]
    CaFile { path: String, reason: String },

    #[error("cannot reach the control plane at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },

    #[error(
        "the control plane refused the credentials: {message} (set the admin token: --token or TERO_TOKEN)"
    )]
    Unauthenticated { message: String },

    #[error(
        "not allowed: {message} (an edge API key cannot use the admin API; use the admin token)"
    )]
    PermissionDenied { message: String },

    #[error("{message}")]
    NotFound { message: String },

    /// The request was refused as invalid; `field` is the path of the
    /// offending field when the server named one.
    #[error("{message}")]
    InvalidArgument {
        message: String,
        policy_id: Option<String>,
        field: Option<String>,
    },

    #[error("{message}")]
    AlreadyExists { message: String },

    /// Someone else changed the policy since `expected_revision` was read.
    #[error("{message}")]
    Conflict {
        message: String,
        current_revision: Option<u64>,
    },

    /// The connection broke after the request was sent and before the
    /// answer arrived: the server may or may not have carried it out.
    #[error(
        "the connection to the control plane at {endpoint} was lost before it answered ({reason}); whether the request took effect is unknown"
    )]
    ConnectionLost { endpoint: String, reason: String },

    #[error("the control plane is unavailable: {message}")]
    Unavailable {
        message: String,
        retry_after: Option<Duration>,
    },

    #[error("the control plane answered {code:?}: {message}")]
    Other { code: Code, message: String },
}

impl ClientError {
    /// Whether retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. }
                | ClientError::Unavailable { .. }
                | ClientError::ConnectionLost { .. }
        ) || matches!(
            self,
            ClientError::Other { code, .. }
                if matches!(code, Code::DeadlineExceeded | Code::ResourceExhausted)
        )
    }

    pub(crate) fn from_status(status: Status, endpoint: &str) -> ClientError {
        let message = status.message().to_owned();
        let meta = |key: &str| {
            status
                .metadata()
                .get(key)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        match status.code() {
            Code::Unauthenticated => ClientError::Unauthenticated { message },
            Code::PermissionDenied => ClientError::PermissionDenied { message },
            Code::NotFound => ClientError::NotFound { message },
            Code::InvalidArgument => ClientError::InvalidArgument {
                message,
                policy_id: meta("tero-policy-id"),
                field: meta("tero-field"),
            },
            Code::AlreadyExists => ClientError::AlreadyExists { message },
            Code::Aborted | Code::FailedPrecondition => ClientError::Conflict {
                message,
                current_revision: meta("tero-current-revision").and_then(|v| v.parse().ok()),
            },
            Code::Unavailable if caused_by::<tonic::ConnectError>(&status) => {
                ClientError::Unreachable {
                    endpoint: endpoint.to_owned(),
                    reason: cause_chain(&status),
                }
            }
            // tonic enforces the call's deadline on both ends and reports it
            // as CANCELLED: it is the deadline passing, not a cancellation.
            // The client's own timer leaves a `TimeoutExpired` cause; when
            // the server's copy of the deadline (`grpc-timeout`) fires first,
            // only its message crosses the wire.
            Code::Cancelled
                if caused_by::<tonic::TimeoutExpired>(&status)
                    || message == TONIC_DEADLINE_MESSAGE =>
            {
                ClientError::Other {
                    code: Code::DeadlineExceeded,
                    message,
                }
            }
            // A status the server sent is decoded from its headers and has
            // no cause; one with a cause was made here, from a connection
            // that failed after the request went out.
            Code::Unavailable | Code::Unknown | Code::Internal
                if std::error::Error::source(&status).is_some() =>
            {
                ClientError::ConnectionLost {
                    endpoint: endpoint.to_owned(),
                    reason: cause_chain(&status),
                }
            }
            Code::Unavailable => ClientError::Unavailable {
                message,
                retry_after: meta("retry-after")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs),
            },
            code => ClientError::Other { code, message },
        }
    }

    /// Whether the call's deadline ([`super::Client::with_timeout`]) passed
    /// before the server answered: the server may have done part of the
    /// work, so the caller may need a longer deadline rather than a repeat.
    pub fn is_deadline_exceeded(&self) -> bool {
        matches!(
            self,
            ClientError::Other {
                code: Code::DeadlineExceeded,
                ..
            }
        )
    }

    /// Whether the server may have carried out the request although the
    /// call failed: the connection was lost, or the deadline passed, after
    /// the request was sent.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, ClientError::ConnectionLost { .. }) || self.is_deadline_exceeded()
    }

    /// The retry hint the server gave, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the request certainly never reached the server (so even a
    /// non-idempotent call may be repeated).
    pub(crate) fn never_sent(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }
}

/// What a tonic server answers, with CANCELLED, when a call outlives the
/// deadline its client sent in `grpc-timeout`.
const TONIC_DEADLINE_MESSAGE: &str = "Timeout expired";

/// Whether an error of type `E` caused this status. tonic reports a
/// failed connection (TCP, or the TLS handshake) as UNAVAILABLE caused by a
/// [`tonic::ConnectError`]; the server's own UNAVAILABLE has no cause. Only
/// a failure to connect proves the request was never sent: a connection
/// lost mid-call is UNAVAILABLE too, but the server may have acted.
fn caused_by<E: std::error::Error + 'static>(status: &Status) -> bool {
    use std::error::Error as _;
    let mut source = status.source();
    while let Some(e) = source {
        if e.is::<E>() {
            return true;
        }
        source = e.source();
    }
    false
}

fn cause_chain(status: &Status) -> String {
    use std::error::Error as _;
    let mut reason = status.message().to_owned();
    let mut source = status.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !reason.contains(&text) {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        source = e.source();
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_locally_made_status_means_the_connection_was_lost() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset");
        let lost = ClientError::from_status(Status::from_error(Box::new(io)), "http://cp:7070");
        assert!(
            matches!(lost, ClientError::ConnectionLost { .. }),
            "{lost:?}"
        );
        assert!(lost.outcome_unknown() && lost.is_transient() && !lost.never_sent());
        assert!(lost.to_string().contains("connection reset"), "{lost}");

        // The server's own UNAVAILABLE: it said so, nothing was lost.
        let sent = ClientError::from_status(Status::unavailable("draining"), "x");
        assert!(matches!(sent, ClientError::Unavailable { .. }), "{sent:?}");
        assert!(!sent.outcome_unknown());
        let internal = ClientError::from_status(Status::internal("bug"), "x");
        assert!(
            matches!(internal, ClientError::Other { .. }),
            "{internal:?}"
        );
    }

    #[test]
    fn a_deadline_enforced_by_the_server_is_a_deadline_not_a_cancellation() {
        let err = ClientError::from_status(Status::cancelled("Timeout expired"), "x");
        assert!(
            matches!(
                err,
                ClientError::Other {
                    code: Code::DeadlineExceeded,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.is_transient());
        assert!(err.is_deadline_exceeded());

        let err = ClientError::from_status(Status::cancelled("client went away"), "x");
        assert!(
            matches!(
                err,
                ClientError::Other {
                    code: Code::Cancelled,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.is_transient());
        assert!(!err.is_deadline_exceeded());
    }
}

//! Where inventory reports go: the control plane's `InventoryService`
//! over gRPC, or `POST /api/v1/inventory` on its HTTP port.
//!
//! An edge reaches its control plane the way its provider does. A grpc
//! provider's reports take gRPC and, when that fails for a reason that may
//! pass (the port blocked by an HTTP/1.1-only proxy, the stream's listener
//! down), the HTTP endpoint beside the provider's poll URL, as its policies
//! do. An http provider's reports take HTTP only. Either way a report keeps
//! its (session, seq), so one that reaches the control plane twice is
//! stored once.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use prost::Message;
use tero_proto::controlplane::InventoryReport;
use tero_proto::controlplane::inventory_service_client::InventoryServiceClient;
use tonic::metadata::{Ascii, MetadataKey, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::config::{GrpcProviderConfig, Header, HttpProviderConfig, Redacted, ReportDestination};
use crate::providers::{body_excerpt, control_plane_post};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const PROTOBUF: &str = "application/x-protobuf";
/// Enough of a refusal's body to say why.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Why a report was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub reason: String,
    /// The control plane will never accept this report: retrying it would
    /// only block the ones after it.
    pub permanent: bool,
}

/// Where reports go.
pub trait ReportSink {
    fn send(
        &mut self,
        report: &InventoryReport,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// The control plane's `InventoryService`, reached like the grpc
/// provider's stream: same URL, TLS roots and headers (the API key).
pub struct GrpcSink {
    client: InventoryServiceClient<Channel>,
    headers: Vec<(MetadataKey<Ascii>, MetadataValue<Ascii>)>,
}

impl GrpcSink {
    /// A lazily connected client; the connection is made (and remade) on
    /// the first call. Must run inside the runtime.
    pub fn new(settings: &GrpcProviderConfig) -> Result<Self, String> {
        let endpoint = control_plane_endpoint(settings)?;
        Ok(GrpcSink {
            client: InventoryServiceClient::new(endpoint.connect_lazy()),
            headers: grpc_metadata(&settings.poll.headers),
        })
    }
}

/// The endpoint of a grpc provider's control plane, with the provider's
/// TLS trust (public roots plus its `ca_file`).
pub(crate) fn control_plane_endpoint(settings: &GrpcProviderConfig) -> Result<Endpoint, String> {
    let endpoint = Endpoint::from_shared(settings.url.to_string())
        .map_err(|e| format!("bad url: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if settings.url.scheme_str() != Some("https") {
        return Ok(endpoint);
    }
    let mut tls = ClientTlsConfig::new().with_webpki_roots();
    if let Some(pem) = &settings.poll.ca_pem {
        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
    }
    endpoint
        .tls_config(tls)
        .map_err(|e| format!("TLS setup: {e}"))
}

/// A provider's configured headers (the API key's `authorization: Bearer`
/// among them) as gRPC metadata; names are lower-cased as gRPC requires.
pub(crate) fn grpc_metadata(headers: &[Header]) -> Vec<(MetadataKey<Ascii>, MetadataValue<Ascii>)> {
    headers
        .iter()
        .filter_map(|h| {
            let key = MetadataKey::from_bytes(h.name.to_ascii_lowercase().as_bytes()).ok()?;
            let value = MetadataValue::try_from(h.value.as_str()).ok()?;
            Some((key, value))
        })
        .collect()
}

impl ReportSink for GrpcSink {
    async fn send(&mut self, report: &InventoryReport, timeout: Duration) -> Result<(), SendError> {
        let mut request = tonic::Request::new(report.clone());
        request.set_timeout(timeout);
        for (k, v) in &self.headers {
            request.metadata_mut().insert(k.clone(), v.clone());
        }
        match tokio::time::timeout(timeout, self.client.report(request)).await {
            Ok(Ok(_ack)) => Ok(()),
            Ok(Err(status)) => Err(SendError {
                reason: format!("{:?}: {}", status.code(), status.message()),
                permanent: status.code() == tonic::Code::InvalidArgument,
            }),
            Err(_) => Err(SendError {
                reason: format!("no answer within {timeout:?}"),
                permanent: false,
            }),
        }
    }
}

/// `POST /api/v1/inventory` with a protobuf body, authenticated with the
/// provider's headers like its syncs.
pub struct HttpSink {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: Uri,
    headers: Vec<Header>,
}

impl HttpSink {
    pub fn new(settings: &HttpProviderConfig) -> Result<Self, String> {
        Ok(HttpSink {
            client: crate::providers::https_client(settings.ca_pem.as_deref()),
            url: inventory_url(&settings.url)?,
            headers: settings.headers.clone(),
        })
    }

    pub fn url(&self) -> &Uri {
        &self.url
    }
}

/// The inventory endpoint beside a sync URL: the sync path's prefix (a
/// control plane served under `/tero/v1/policy/sync` keeps `/tero`) plus
/// `/api/v1/inventory`.
pub(crate) fn inventory_url(sync_url: &Uri) -> Result<Uri, String> {
    let authority = sync_url
        .authority()
        .ok_or_else(|| format!("{sync_url} names no host"))?;
    let scheme = sync_url.scheme_str().unwrap_or("http");
    let prefix = sync_url
        .path()
        .strip_suffix("/v1/policy/sync")
        .unwrap_or("")
        .trim_end_matches('/');
    format!("{scheme}://{authority}{prefix}/api/v1/inventory")
        .parse()
        .map_err(|e| format!("inventory url from {sync_url}: {e}"))
}

/// Answers that no retry will change: the report itself is refused, or
/// the server has no inventory endpoint (not a Tero control plane).
fn refused_for_good(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST
            | StatusCode::NOT_FOUND
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNPROCESSABLE_ENTITY
    )
}

impl ReportSink for HttpSink {
    async fn send(&mut self, report: &InventoryReport, timeout: Duration) -> Result<(), SendError> {
        let transient = |reason: String| SendError {
            reason,
            permanent: false,
        };
        let request = control_plane_post(&self.url, &self.headers, PROTOBUF, "application/json")
            .body(Full::new(Bytes::from(report.encode_to_vec())))
            .map_err(|e| SendError {
                reason: format!("cannot build the request: {e}"),
                permanent: true,
            })?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| transient(crate::providers::with_causes(&e)))?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let body = Limited::new(response.into_body(), MAX_ERROR_BODY)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Err(SendError {
                reason: format!(
                    "{} answered {status}: {}",
                    Redacted(&self.url),
                    body_excerpt(&body)
                ),
                permanent: refused_for_good(status),
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| transient(format!("no answer within {timeout:?}")))?
    }
}

/// The sink for a configured destination.
pub enum ControlPlaneSink {
    /// gRPC first, HTTP when gRPC fails for a reason that may pass.
    Grpc {
        grpc: GrpcSink,
        http: HttpSink,
    },
    Http(HttpSink),
}

impl ControlPlaneSink {
    /// Must run inside the runtime (the gRPC channel is lazy).
    pub fn new(destination: ReportDestination<'_>) -> Result<Self, String> {
        Ok(match destination {
            ReportDestination::Grpc(settings) => ControlPlaneSink::Grpc {
                grpc: GrpcSink::new(settings)?,
                http: HttpSink::new(&settings.poll)?,
            },
            ReportDestination::Http(settings) => ControlPlaneSink::Http(HttpSink::new(settings)?),
        })
    }

    /// How reports travel, for the logs.
    pub fn transport(&self) -> &'static str {
        match self {
            ControlPlaneSink::Grpc { .. } => "grpc, http fallback",
            ControlPlaneSink::Http(_) => "http",
        }
    }
}

impl ReportSink for ControlPlaneSink {
    async fn send(&mut self, report: &InventoryReport, timeout: Duration) -> Result<(), SendError> {
        match self {
            ControlPlaneSink::Http(http) => http.send(report, timeout).await,
            ControlPlaneSink::Grpc { grpc, http } => {
                // Half the time each, so a black-holed gRPC port leaves the
                // fallback time to answer.
                let half = timeout / 2;
                let grpc_error = match grpc.send(report, half).await {
                    Ok(()) => return Ok(()),
                    Err(e) if e.permanent => return Err(e),
                    Err(e) => e,
                };
                match http.send(report, half).await {
                    Ok(()) => {
                        tracing::debug!(grpc_error = %grpc_error.reason, "inventory report sent over HTTP");
                        Ok(())
                    }
                    // gRPC may come back: only both failing for good would
                    // make the report hopeless, and gRPC's failure was not.
                    Err(http_error) => Err(SendError {
                        reason: format!(
                            "gRPC: {}; HTTP fallback: {}",
                            grpc_error.reason, http_error.reason
                        ),
                        permanent: false,
                    }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inventory_endpoint_sits_beside_the_sync_endpoint() {
        for (sync, expected) in [
            (
                "http://cp:7070/v1/policy/sync",
                "http://cp:7070/api/v1/inventory",
            ),
            (
                "https://cp.example/tero/v1/policy/sync",
                "https://cp.example/tero/api/v1/inventory",
            ),
            (
                "http://cp:7070/custom/sync",
                "http://cp:7070/api/v1/inventory",
            ),
        ] {
            let url = inventory_url(&sync.parse().unwrap()).unwrap();
            assert_eq!(url.to_string(), expected, "{sync}");
        }
        assert!(inventory_url(&"/v1/policy/sync".parse().unwrap()).is_err());
    }

    #[test]
    fn only_answers_no_retry_can_change_drop_a_report() {
        for status in [400, 404, 405, 413, 422] {
            assert!(
                refused_for_good(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
        for status in [401, 403, 408, 429, 500, 502, 503, 504] {
            assert!(
                !refused_for_good(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
    }
}

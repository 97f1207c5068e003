//! TLS to the control plane: the public web roots, plus the certificates of
//! a private CA when a provider names a `ca_file`.

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The client configuration for https:// polling; the connector sets ALPN.
/// gRPC channels build their own from the same roots.
pub fn client_config(ca_pem: Option<&[u8]>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem).flatten() {
            if let Err(e) = roots.add(cert) {
                tracing::warn!(error = %e, "a ca_file certificate is not usable; skipped");
            }
        }
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// An HTTP/1.1 client for the control plane's HTTP endpoints, trusting
/// `ca_pem` besides the public roots.
pub fn https_client(
    ca_pem: Option<&[u8]>,
) -> hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
> {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
    connector.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(ca_pem))
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector)
}

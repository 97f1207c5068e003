//! Policy providers: where policies come from.
//!
//! Each provider is a cancellable task that delivers its whole policy set
//! to the [`PolicyRegistry`](crate::registry::PolicyRegistry) whenever it
//! changes and keeps the last good set on any failure. Scrapes never wait
//! on a provider.

mod backoff;
mod file;
mod grpc;
mod http;
mod last_good;
mod outbox;
mod tls;

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ProviderConfig};
use crate::registry::PolicyRegistry;

pub use backoff::Backoff;
pub use file::FileProvider;
pub use grpc::GrpcProvider;
pub use http::{ClientIdentity, HttpProvider};
pub(crate) use http::{body_excerpt, control_plane_post};
pub(crate) use tls::{client_config, https_client};

/// The registry entries for the configured providers, in priority order.
pub fn registry_for(config: &Config) -> PolicyRegistry {
    let ids: Vec<(String, &'static str)> = config
        .providers
        .iter()
        .map(|p| {
            let kind = match p {
                ProviderConfig::File { .. } => "file",
                ProviderConfig::Http(_) => "http",
                ProviderConfig::Grpc(_) => "grpc",
            };
            (p.id().to_owned(), kind)
        })
        .collect();
    PolicyRegistry::new(&ids)
}

/// Starts one task per configured provider.
pub fn spawn_all(
    config: &Config,
    identity: ClientIdentity,
    registry: Arc<PolicyRegistry>,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    for provider in &config.providers {
        match provider {
            ProviderConfig::File { id, path } => {
                let p = FileProvider::new(id.clone(), path.clone(), registry.clone());
                tasks.spawn(p.run(shutdown.clone()));
            }
            ProviderConfig::Http(settings) => {
                let p = HttpProvider::new(settings.clone(), identity.clone(), registry.clone());
                tasks.spawn(p.run(shutdown.clone()));
            }
            ProviderConfig::Grpc(settings) => {
                let p = GrpcProvider::new(settings.clone(), identity.clone(), registry.clone());
                tasks.spawn(p.run(shutdown.clone()));
            }
        }
    }
}

/// An error with its causes: hyper's own message ("client error
/// (Connect)") hides what users need, such as an untrusted certificate.
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

//! The file provider: a YAML or JSON policy file, re-read when it changes.
//!
//! The file is polled (read and hashed once a second) rather than watched
//! with inotify: Kubernetes updates a mounted ConfigMap by swapping a
//! symlink, which silently detaches inotify watches, and a missing file
//! at start-up has nothing to watch yet. A change is applied once the
//! content has been stable for a short debounce, so a half-written file
//! is not loaded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tero_sdk::policy::{Format, parse_policies, policy_set_hash};
use tokio_util::sync::CancellationToken;

use crate::registry::PolicyRegistry;

const POLL: Duration = Duration::from_secs(1);
const DEBOUNCE: Duration = Duration::from_millis(200);

pub struct FileProvider {
    id: String,
    path: PathBuf,
    registry: Arc<PolicyRegistry>,
}

/// What the provider last saw, to log each state change once.
#[derive(PartialEq, Eq)]
enum Seen {
    Nothing,
    Missing,
    Content([u8; 32]),
}

impl FileProvider {
    pub fn new(id: String, path: PathBuf, registry: Arc<PolicyRegistry>) -> Self {
        FileProvider { id, path, registry }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut seen = Seen::Nothing;
        loop {
            self.poll(&mut seen).await;
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    async fn read_stable(&self) -> std::io::Result<(Vec<u8>, [u8; 32])> {
        let mut bytes = tokio::fs::read(&self.path).await?;
        let mut digest: [u8; 32] = Sha256::digest(&bytes).into();
        for _ in 0..10 {
            tokio::time::sleep(DEBOUNCE).await;
            let again = tokio::fs::read(&self.path).await?;
            let d: [u8; 32] = Sha256::digest(&again).into();
            if d == digest {
                break;
            }
            (bytes, digest) = (again, d);
        }
        Ok((bytes, digest))
    }

    async fn poll(&self, seen: &mut Seen) {
        let id = self.id.as_str();
        let path = self.path.display();
        let first = match tokio::fs::read(&self.path).await {
            Ok(bytes) => bytes,
            Err(e) => {
                if *seen != Seen::Missing {
                    tracing::warn!(provider = id, %path, error = %e, "policy file unreadable; keeping the current policies and retrying every second");
                    self.registry
                        .record_sync(id, Err(format!("cannot read {path}: {e}")));
                    *seen = Seen::Missing;
                }
                return;
            }
        };
        let digest: [u8; 32] = Sha256::digest(&first).into();
        if *seen == Seen::Content(digest) {
            return;
        }
        let (bytes, digest) = match self.read_stable().await {
            Ok(r) => r,
            Err(_) => return,
        };
        *seen = Seen::Content(digest);
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                self.fail(format!("{path} is not UTF-8 text"));
                return;
            }
        };
        match parse_policies(&text, Format::from_path(&self.path)) {
            Ok(loaded) => {
                let rejected: Vec<String> =
                    loaded.rejected.iter().map(ToString::to_string).collect();
                for r in &rejected {
                    tracing::warn!(provider = id, %path, "policy skipped: {r}");
                }
                let hash = policy_set_hash(&loaded.policies);
                tracing::info!(provider = id, %path, policies = loaded.policies.len(), %hash, "policy file loaded");
                self.registry.update(id, loaded.policies, hash, rejected);
                self.registry.record_sync(id, Ok(()));
            }
            Err(e) => self.fail(format!("{path}: {e}")),
        }
    }

    fn fail(&self, reason: String) {
        tracing::error!(provider = %self.id, error = %reason, "policy file rejected; keeping the last good policies");
        self.registry.record_sync(&self.id, Err(reason));
    }
}

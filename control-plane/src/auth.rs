//! Who may call what: admin tokens for the admin API, edge API keys for Sync
//! and the push stream (an admin token is accepted there too).
//!
//! Secrets are compared by their SHA-256 only. Edge keys are cached by hash
//! after their first use; a revocation (local, or announced by another
//! replica) removes the key from the cache and is broadcast so that every
//! open stream authenticated by it is closed at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use sha2::{Digest, Sha256};
use tero_proto::controlplane::ApiKey;
use tokio::sync::broadcast;

use crate::store::{Store, StoreError, StoredKey, now_ms};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Edge { key_id: String },
}

impl Principal {
    /// The name recorded as author in revisions and the audit log.
    pub fn actor(&self) -> String {
        match self {
            Principal::Admin => "admin".to_owned(),
            Principal::Edge { key_id } => format!("api-key:{key_id}"),
        }
    }

    pub fn key_id(&self) -> &str {
        match self {
            Principal::Admin => "",
            Principal::Edge { key_id } => key_id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("invalid credentials")]
    Invalid,
    #[error("this API needs an admin token; an edge API key is not enough")]
    AdminRequired,
    #[error("credentials could not be checked: {0}")]
    Store(#[from] StoreError),
}

const EDGE_KEY_PREFIX: &str = "tero_ek_";
const ADMIN_TOKEN_PREFIX: &str = "tero_at_";

fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_hex(bytes: usize) -> Result<String, std::io::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(hex::encode(buf))
}

/// Where the admin token came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminTokenSource {
    Environment,
    File(PathBuf),
    Generated(PathBuf),
}

/// The admin token: `TERO_ADMIN_TOKEN` if given, else the one in
/// `<data_dir>/admin-token`, else a new one written there with mode 0600.
pub fn bootstrap_admin_token(
    from_env: Option<String>,
    data_dir: &Path,
) -> std::io::Result<(String, AdminTokenSource)> {
    if let Some(token) = from_env.filter(|t| !t.trim().is_empty()) {
        return Ok((token.trim().to_owned(), AdminTokenSource::Environment));
    }
    let path = data_dir.join("admin-token");
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => {
            return Ok((token.trim().to_owned(), AdminTokenSource::File(path)));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let token = format!("{ADMIN_TOKEN_PREFIX}{}", random_hex(32)?);
    write_private(&path, &token)?;
    Ok((token, AdminTokenSource::Generated(path)))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[derive(Debug, Clone)]
struct CachedKey {
    id: String,
}

/// Checks credentials and tracks edge keys.
#[derive(Debug)]
pub struct Authenticator {
    admin_hash: String,
    store: Store,
    /// Valid keys by secret hash.
    keys: RwLock<HashMap<String, CachedKey>>,
    /// Key id → last use (ms), written to the store in batches.
    last_used: Mutex<HashMap<String, i64>>,
    revocations: broadcast::Sender<String>,
}

impl Authenticator {
    pub fn new(admin_token: &str, store: Store) -> Self {
        Self {
            admin_hash: sha256_hex(admin_token),
            store,
            keys: RwLock::new(HashMap::new()),
            last_used: Mutex::new(HashMap::new()),
            revocations: broadcast::channel(1024).0,
        }
    }

    /// Resolves an `Authorization` header value.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let token = header
            .and_then(|h| {
                let h = h.trim();
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let hash = sha256_hex(token);
        if constant_time_eq(hash.as_bytes(), self.admin_hash.as_bytes()) {
            return Ok(Principal::Admin);
        }
        if !token.starts_with(EDGE_KEY_PREFIX) {
            return Err(AuthError::Invalid);
        }
        let cached = self.read_keys().get(&hash).cloned();
        let key_id = match cached {
            Some(key) => key.id,
            None => {
                // First use on this replica, or created through another one.
                let stored = self.store.find_api_key_by_hash(&hash).await?;
                match stored {
                    Some(stored) if stored.key.revoked_at_unix_ms == 0 => {
                        self.write_keys().insert(
                            hash,
                            CachedKey {
                                id: stored.key.id.clone(),
                            },
                        );
                        stored.key.id
                    }
                    _ => return Err(AuthError::Invalid),
                }
            }
        };
        self.last_used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key_id.clone(), now_ms());
        Ok(Principal::Edge { key_id })
    }

    /// Like [`authenticate`](Self::authenticate), but only an admin passes.
    pub async fn authenticate_admin(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        match self.authenticate(header).await? {
            Principal::Admin => Ok(Principal::Admin),
            Principal::Edge { .. } => Err(AuthError::AdminRequired),
        }
    }

    /// Creates a key; the returned secret is never stored.
    pub async fn create_key(
        &self,
        name: &str,
        actor: &str,
    ) -> Result<(ApiKey, String), StoreError> {
        let secret = format!(
            "{EDGE_KEY_PREFIX}{}",
            random_hex(32).map_err(|e| StoreError::Corrupt {
                what: "random source",
                reason: e.to_string()
            })?
        );
        let id = format!(
            "key_{}",
            random_hex(8).map_err(|e| StoreError::Corrupt {
                what: "random source",
                reason: e.to_string()
            })?
        );
        let key = ApiKey {
            id,
            name: name.to_owned(),
            prefix: secret[..EDGE_KEY_PREFIX.len() + 8].to_owned(),
            created_at_unix_ms: now_ms(),
            created_by: actor.to_owned(),
            last_used_unix_ms: 0,
            revoked_at_unix_ms: 0,
        };
        self.store
            .insert_api_key(&StoredKey {
                key: key.clone(),
                secret_hash: sha256_hex(&secret),
            })
            .await?;
        Ok((key, secret))
    }

    pub async fn revoke_key(&self, id: &str, actor: &str) -> Result<ApiKey, StoreError> {
        let key = self.store.revoke_api_key(id, actor).await?;
        self.forget(id);
        Ok(key)
    }

    /// Drops a revoked key from the cache and closes its streams. Called for
    /// local revocations and for those other replicas announce.
    pub fn forget(&self, key_id: &str) {
        self.write_keys().retain(|_, k| k.id != key_id);
        // No receivers is fine: no stream was using any key.
        let _ = self.revocations.send(key_id.to_owned());
    }

    /// Re-checks every cached key against the store, after a gap in
    /// cross-replica notifications.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        for id in self.store.revoked_key_ids().await? {
            if self.read_keys().values().any(|k| k.id == id) {
                self.forget(&id);
            }
        }
        Ok(())
    }

    pub fn revocations(&self) -> broadcast::Receiver<String> {
        self.revocations.subscribe()
    }

    /// Persists last-use times gathered since the previous call.
    pub async fn flush_last_used(&self) -> Result<(), StoreError> {
        let used: Vec<(String, i64)> =
            std::mem::take(&mut *self.last_used.lock().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .collect();
        self.store.touch_api_keys(&used).await
    }

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, CachedKey>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_keys(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, CachedKey>> {
        self.keys.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_token_is_generated_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let (token, source) = bootstrap_admin_token(None, dir.path()).unwrap();
        assert!(token.starts_with(ADMIN_TOKEN_PREFIX));
        assert_eq!(
            source,
            AdminTokenSource::Generated(dir.path().join("admin-token"))
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("admin-token"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, source) = bootstrap_admin_token(None, dir.path()).unwrap();
        assert_eq!(again, token);
        assert!(matches!(source, AdminTokenSource::File(_)));
        let (env, source) = bootstrap_admin_token(Some("from-env".into()), dir.path()).unwrap();
        assert_eq!(
            (env.as_str(), source),
            ("from-env", AdminTokenSource::Environment)
        );
    }

    #[tokio::test]
    async fn keys_authenticate_until_revoked_and_only_admins_pass_admin_checks() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        let store = Store::open(&url).await.unwrap();
        let auth = Authenticator::new("admin-secret", store);
        assert!(matches!(
            auth.authenticate(None).await,
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            auth.authenticate(Some("Bearer nope")).await,
            Err(AuthError::Invalid)
        ));
        assert_eq!(
            auth.authenticate(Some("Bearer admin-secret"))
                .await
                .unwrap(),
            Principal::Admin
        );

        let (key, secret) = auth.create_key("fleet", "admin").await.unwrap();
        assert!(secret.starts_with(&key.prefix));
        let header = format!("Bearer {secret}");
        assert_eq!(
            auth.authenticate(Some(&header)).await.unwrap(),
            Principal::Edge {
                key_id: key.id.clone()
            }
        );
        assert!(matches!(
            auth.authenticate_admin(Some(&header)).await,
            Err(AuthError::AdminRequired)
        ));

        let mut revoked = auth.revocations();
        auth.revoke_key(&key.id, "admin").await.unwrap();
        assert_eq!(revoked.recv().await.unwrap(), key.id);
        assert!(matches!(
            auth.authenticate(Some(&header)).await,
            Err(AuthError::Invalid)
        ));
    }
}

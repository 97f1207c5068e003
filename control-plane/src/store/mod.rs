//! Durable state: policies with their revisions, the audit log, API keys, the
//! edge registry, per-policy statistics, per-edge volume, metric
//! inventories, usage sources, issues, and event types with their
//! classifications.
//!
//! One type serves both backends through sqlx's `Any` driver: the queries
//! are written in the SQL both SQLite and PostgreSQL accept (`$n` parameters,
//! `ON CONFLICT … DO UPDATE`, `RETURNING`), and only the schema differs, as
//! one migration directory per backend. Times are Unix milliseconds in
//! BIGINT columns so that neither backend's date types leak into the code.
//!
//! The store knows nothing of gRPC or HTTP; it speaks in the API's message
//! types because they are the product's vocabulary, and returns typed errors
//! the API layer maps to status codes.

mod audit;
mod classify;
mod edges;
mod inventory;
mod issues;
mod keys;
mod policies;
mod stats;
mod volume;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use audit::AuditEntry;
pub use classify::{Activity, StoredClassification, StoredEventType, TemplateWrite};
pub use edges::{EdgeRecord, PolicyErrors};
pub use inventory::StoredInventory;
pub use issues::{StoredUsage, issue_key};
pub use keys::StoredKey;
pub use policies::{PolicyChange, PolicyFilter};
pub use stats::{CounterDelta, StatsBatch};
pub use volume::{EdgeVolume, VolumeCounts};

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} {id:?} already exists")]
    AlreadyExists { kind: &'static str, id: String },
    #[error(
        "policy {id:?} is at revision {current}, not {expected}: fetch it again and reapply the change"
    )]
    StaleRevision {
        id: String,
        expected: u64,
        current: u64,
    },
    #[error("stored {what} could not be decoded: {reason}")]
    Corrupt { what: &'static str, reason: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    fn corrupt(what: &'static str, err: impl std::fmt::Display) -> Self {
        StoreError::Corrupt {
            what,
            reason: err.to_string(),
        }
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The handle every part of the control plane shares. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Connects and brings the schema up to date. A SQLite file (and its
    /// directory) is created when missing.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with_timeout(url, Duration::from_secs(30)).await
    }

    /// Like [`open`](Self::open), waiting at most `timeout` for the
    /// database (at start-up, and later for a pooled connection).
    pub async fn open_with_timeout(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let url = &with_create_mode(url, backend);
        let options = AnyConnectOptions::from_str(url)?;
        let pool = match backend {
            Backend::Sqlite => {
                if let Some(dir) = sqlite_path(url).and_then(|p| p.parent().map(Path::to_owned))
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(&dir).map_err(|e| {
                        StoreError::Database(sqlx::Error::Configuration(
                            format!("cannot create {}: {e}", dir.display()).into(),
                        ))
                    })?;
                }
                // One connection: SQLite has one writer anyway, and a single
                // connection can never see SQLITE_BUSY from its own pool.
                AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(timeout)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(timeout)
                    .connect_with(options)
                    .await?
            }
        };
        let store = Store { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    /// The handle the statistics writer uses. On PostgreSQL it has a pool
    /// of its own, so that edges' reports never take a connection an admin
    /// call is waiting for. On SQLite it shares the one connection: a second
    /// writer would make admin transactions fail with `SQLITE_BUSY`; the
    /// writer keeps its transactions short instead (see `ingest`).
    pub async fn for_ingest(&self, url: &str, timeout: Duration) -> Result<Store, StoreError> {
        match self.backend {
            Backend::Sqlite => Ok(self.clone()),
            Backend::Postgres => {
                // One writer task, one transaction at a time; the second
                // connection serves pruning.
                let pool = AnyPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(timeout)
                    .connect_with(AnyConnectOptions::from_str(url)?)
                    .await?;
                Ok(Store {
                    pool,
                    backend: self.backend,
                })
            }
        }
    }

    /// Runs one statement as written, for tests that must plant what the
    /// store itself never writes (a bucket corrupted by an older version).
    #[doc(hidden)]
    pub async fn execute_unchecked(&self, sql: &str) -> Result<u64, StoreError> {
        Ok(sqlx::query(sql).execute(&self.pool).await?.rows_affected())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Liveness of the database connection, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Tells other replicas sharing a PostgreSQL database that `topic`
    /// changed. Sent inside the transaction, so it is delivered on commit
    /// and never for a change that rolled back. SQLite has no other replicas.
    async fn notify(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        topic: &str,
        payload: &str,
    ) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(topic)
                .bind(payload)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

/// The PostgreSQL channel policy changes are announced on.
pub const POLICY_CHANNEL: &str = "tero_policies";
/// The PostgreSQL channel API key revocations are announced on.
pub const KEY_CHANNEL: &str = "tero_api_keys";

/// A SQLite URL that names no `mode` gets `mode=rwc`: the documented
/// `sqlite://PATH` must create the database as the default data directory
/// does, where the driver's default (`rw`) would refuse a missing file.
/// An explicit `mode` (`ro`, `rw`, `memory`) is the operator's choice.
fn with_create_mode(url: &str, backend: Backend) -> String {
    if backend != Backend::Sqlite || sqlite_path(url).is_none() {
        return url.to_owned();
    }
    let query = url.split_once('?').map_or("", |(_, q)| q);
    if query.split('&').any(|kv| kv.starts_with("mode=")) {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}mode=rwc")
}

fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

/// The URL with any password replaced, fit for logs and error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact_url("postgres://tero:s3cret@db:5432/tero"),
            "postgres://tero:***@db:5432/tero"
        );
        assert_eq!(
            redact_url("postgres://tero@db/tero"),
            "postgres://tero@db/tero"
        );
        assert_eq!(
            redact_url("sqlite://./tero-data/tero.db"),
            "sqlite://./tero-data/tero.db"
        );
    }

    #[test]
    fn sqlite_paths_come_from_the_url() {
        assert_eq!(
            sqlite_path("sqlite://./tero-data/tero.db?mode=rwc"),
            Some("./tero-data/tero.db".into())
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert!(Backend::of_url("mysql://x").is_err());
    }

    #[test]
    fn sqlite_urls_without_a_mode_create_the_file() {
        let create = |url| with_create_mode(url, Backend::of_url(url).unwrap());
        assert_eq!(create("sqlite://a/t.db"), "sqlite://a/t.db?mode=rwc");
        assert_eq!(
            create("sqlite://a/t.db?cache=shared"),
            "sqlite://a/t.db?cache=shared&mode=rwc"
        );
        assert_eq!(create("sqlite://a/t.db?mode=ro"), "sqlite://a/t.db?mode=ro");
        assert_eq!(create("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(create("postgres://db/tero"), "postgres://db/tero");
    }

    #[tokio::test]
    async fn a_missing_sqlite_file_and_its_directory_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/sub/tero.db");
        let store = Store::open(&format!("sqlite://{}", path.display()))
            .await
            .expect("open a missing sqlite file");
        store.ping().await.unwrap();
        assert!(path.is_file());
    }
}

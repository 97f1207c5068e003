//! The control plane's services. Each has one implementation, called from
//! both transports: the gRPC service traits and the HTTP JSON routes are
//! thin adapters over the same functions, so the two can never disagree.

pub mod admin;
pub mod error;
pub mod http;
pub mod stream;
pub mod sync;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::feed::Feed;
use crate::ingest::Ingest;
use crate::runtime::Runtime;
use crate::store::Store;

pub use error::ApiError;

/// Everything a request handler may need. Shared behind an `Arc`.
#[derive(Debug)]
pub struct AppState {
    pub store: Store,
    pub feed: Arc<Feed>,
    pub auth: Arc<Authenticator>,
    pub runtime: Arc<Runtime>,
    pub ingest: Ingest,
    pub heartbeat: Duration,
    /// Open push streams at most; beyond, new ones are told to retry later.
    pub stream_slots: Arc<Semaphore>,
    pub shutdown: CancellationToken,
}

pub type State = Arc<AppState>;

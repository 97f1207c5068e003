//! What the control plane's in-process tests share.

use std::sync::Arc;
use std::time::Duration;

use tero_classify::{Chain, Embedded};
use tero_control_plane::api::{AppState, State};
use tero_control_plane::auth::Authenticator;
use tero_control_plane::classify::Classifications;
use tero_control_plane::feed::Feed;
use tero_control_plane::ingest::Ingest;
use tero_control_plane::issues::{Analyst, IssueConfig};
use tero_control_plane::metrics::Metrics;
use tero_control_plane::runtime::Runtime;
use tero_control_plane::store::Store;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The state `main` would build over `store`, with defaults, the embedded
/// classifier and `admin_token`. Its feed and ingest loops run until
/// `state.shutdown` is cancelled (policy writes wait for the feed).
pub async fn app_state(store: &Store, admin_token: &str) -> State {
    let feed = Feed::start(store.clone(), 30).await.expect("feed");
    let shutdown = CancellationToken::new();
    tokio::spawn(feed.clone().run(shutdown.clone()));
    let (ingest, _task) = Ingest::start(store.clone(), shutdown.clone());
    let analyst = Analyst::new(store.clone(), IssueConfig::default());
    let classifications =
        Classifications::new(store.clone(), Chain::new(Box::new(Embedded::new())), None);
    analyst.set_classifications(Arc::clone(&classifications));
    Arc::new(AppState {
        auth: Arc::new(Authenticator::new(admin_token, store.clone())),
        runtime: Runtime::new("test".into(), store.clone(), 30, 15),
        store: store.clone(),
        feed,
        ingest,
        heartbeat: Duration::from_secs(15),
        stream_slots: Arc::new(Semaphore::new(16)),
        max_streams: 16,
        metrics: Metrics::default(),
        analyst,
        classifications,
        shutdown,
    })
}

//! The change feed: turns committed policy changes into a new catalog that
//! every Sync handler and stream sees.
//!
//! Changes are requested, not applied inline: one reload task coalesces
//! bursts (a `policy apply` of fifty files is one reload, not fifty) and
//! publishes catalogs in order. Writers wait for the reload that includes
//! their change, so an API call returns only once its change is what edges
//! are offered. Across replicas the requests come from PostgreSQL
//! LISTEN/NOTIFY; a periodic check of the audit log's high-water mark covers
//! notifications lost while the listener reconnected.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::catalog::Catalog;
use crate::store::{KEY_CHANNEL, POLICY_CHANNEL, Store};

/// How long a reload waits for more changes to join it.
const COALESCE: Duration = Duration::from_millis(20);

#[derive(Debug)]
pub struct Feed {
    store: Store,
    catalog: watch::Sender<Arc<Catalog>>,
    /// Reload requests made so far, and the latest one a published catalog
    /// includes.
    requested: watch::Sender<u64>,
    loaded: watch::Sender<u64>,
    wake: Notify,
    interval_secs: u32,
}

impl Feed {
    /// Loads the first catalog.
    pub async fn start(
        store: Store,
        interval_secs: u32,
    ) -> Result<Arc<Self>, crate::store::StoreError> {
        let policies = store.all_policies().await?;
        let catalog = Arc::new(Catalog::new(1, policies, interval_secs));
        Ok(Arc::new(Feed {
            store,
            catalog: watch::channel(catalog).0,
            requested: watch::channel(0).0,
            loaded: watch::channel(0).0,
            wake: Notify::new(),
            interval_secs,
        }))
    }

    pub fn current(&self) -> Arc<Catalog> {
        Arc::clone(&self.catalog.borrow())
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Catalog>> {
        self.catalog.subscribe()
    }

    /// Asks for a reload without waiting for it.
    pub fn request(&self) -> u64 {
        let mut ticket = 0;
        self.requested.send_modify(|n| {
            *n += 1;
            ticket = *n;
        });
        self.wake.notify_one();
        ticket
    }

    /// Asks for a reload and waits until a catalog including it is published.
    pub async fn request_and_wait(&self) {
        let ticket = self.request();
        let mut loaded = self.loaded.subscribe();
        // The sender lives as long as self, so this only ends when loaded.
        let _ = loaded.wait_for(|n| *n >= ticket).await;
    }

    /// Runs the reload loop until cancelled.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
            }
            tokio::time::sleep(COALESCE).await;
            let ticket = *self.requested.borrow();
            if ticket <= *self.loaded.borrow() {
                continue;
            }
            match self.store.all_policies().await {
                Ok(policies) => {
                    let generation = self.catalog.borrow().generation() + 1;
                    let catalog = Arc::new(Catalog::new(generation, policies, self.interval_secs));
                    tracing::debug!(
                        generation,
                        policies = catalog.len(),
                        "policy catalog reloaded"
                    );
                    self.catalog.send_replace(catalog);
                    self.loaded.send_replace(ticket);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "policy catalog reload failed; retrying in 1 s");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    self.wake.notify_one();
                }
            }
        }
    }

    /// Follows other replicas' changes through PostgreSQL notifications,
    /// with a periodic high-water-mark check as the safety net.
    pub async fn follow_replicas(
        self: Arc<Self>,
        database_url: String,
        auth: Arc<Authenticator>,
        shutdown: CancellationToken,
    ) {
        let mut high_water = self.store.audit_high_water().await.unwrap_or(0);
        let mut listener: Option<sqlx::postgres::PgListener> = None;
        let mut check = tokio::time::interval(Duration::from_secs(5));
        loop {
            if listener.is_none() {
                match sqlx::postgres::PgListener::connect(&database_url).await {
                    Ok(mut l) => match l.listen_all([POLICY_CHANNEL, KEY_CHANNEL]).await {
                        Ok(()) => {
                            listener = Some(l);
                            // Anything may have happened while we were not listening.
                            self.request();
                            if let Err(e) = auth.refresh().await {
                                tracing::warn!(error = %e, "API key refresh failed");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "LISTEN failed; retrying"),
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "change listener cannot connect; retrying")
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = check.tick() => {
                    if let Ok(mark) = self.store.audit_high_water().await
                        && mark != high_water
                    {
                        high_water = mark;
                        self.request();
                        if let Err(e) = auth.refresh().await {
                            tracing::warn!(error = %e, "API key refresh failed");
                        }
                    }
                }
                note = async { listener.as_mut().expect("checked above").recv().await }, if listener.is_some() => {
                    match note {
                        Ok(note) if note.channel() == KEY_CHANNEL => auth.forget(note.payload()),
                        Ok(_) => { self.request(); }
                        Err(e) => {
                            tracing::warn!(error = %e, "change listener lost its connection; reconnecting");
                            listener = None;
                        }
                    }
                }
            }
        }
    }
}

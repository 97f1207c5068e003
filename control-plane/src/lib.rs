//! The Tero control plane: the durable home of policies and the server the
//! Edge fleet syncs with.
//!
//! ```text
//! admin API ─▶ validate (sdk) ─▶ store (revision, audit) ─▶ change feed
//!           ─▶ catalog (per-scope snapshots, canonical hash) ─▶ Sync / push streams
//!           ─▶ edges ─▶ ACK/NACK, statistics ─▶ runtime view
//! ```
//!
//! Reading usage sources (`tero_usage`) and classifying event types
//! (`tero_classify`) are libraries of their own; this crate keeps what
//! needs the store: the sources and caches it holds, the classification
//! runs ([`classify`]) and the detectors that ask about usage ([`issues`]).

pub mod api;
pub mod auth;
pub mod catalog;
pub mod classify;
pub mod feed;
pub mod ingest;
pub mod issues;
pub mod metrics;
pub mod runtime;
pub mod scope;
pub mod server;
pub mod store;

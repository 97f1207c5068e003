//! Classification inside the control plane: the store-facing half of
//! [`tero_classify`], which holds the classifiers, providers, prompts and
//! the fallback chain and knows nothing of the store.
//!
//! ```text
//! stored inventories, log templates ─▶ catalog ─▶ event types ─┐
//! cache (fingerprint, classifier id) ◀──────────── runner ◀───┴▶ tero_classify::Chain
//! ```
//!
//! [`catalog`] turns inventories and log templates into event types under
//! stable fingerprints, and [`runner::Classifications`] runs the chain over
//! what the cache (keyed by fingerprint and classifier id) cannot answer.

pub mod catalog;
pub mod runner;

pub use runner::{Classifications, RunError, Trigger};

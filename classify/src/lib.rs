//! Classification of event types (control-plane.md §6): metric families, log templates
//! and span patterns, never individual records, so cost scales with the
//! diversity of the telemetry rather than its volume.
//!
//! ```text
//! event types ─▶ Chain ─▶ primary classifier ──(unavailable / auth)──▶ fallback
//!                  │            │ rate limited: retried, never falls back
//!                  │            ▼
//!                  └──▶ classifications + unclassified (with reasons) + RunReport
//! ```
//!
//! Classifiers: [`embedded::Embedded`] (rules, no key, no network) and the
//! HTTP providers [`openai::OpenAi`] and [`anthropic::Anthropic`], built
//! from the operator's [`settings`]; [`intake`] mines the log samples the
//! control plane receives and keeps their redacted examples.
//!
//! A library of its own: it knows nothing of the server or the store. The
//! control plane turns stored inventories and templates into [`EventType`]s,
//! runs the [`Chain`] over what its cache cannot answer and stores the
//! results (`tero_control_plane::classify`).

use std::future::Future;
use std::ops::AddAssign;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod anthropic;
pub mod chain;
pub mod embedded;
pub mod intake;
pub mod openai;
mod prompt;
mod provider;
pub mod settings;

pub use anthropic::Anthropic;
pub use chain::{Chain, RunOutput, RunReport};
pub use embedded::Embedded;
pub use openai::OpenAi;
pub use provider::{ProviderConfig, RetryPolicy};
pub use settings::{ClassifierSettings, ProviderKind, ProviderSettings};

/// What an event type is a pattern of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Metric,
    Log,
    Span,
}

/// One event type: the unit of classification. Everything in it may be sent
/// to an AI provider (control-plane.md §6.4), so callers put only redacted examples here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventType {
    /// Stable identity of the pattern; the cache key and the handle a
    /// provider's reply must echo back.
    pub fingerprint: String,
    pub kind: EventKind,
    pub service: String,
    /// Metric family name, log template text or span name.
    pub name: String,
    /// Metric HELP (or a user-edited description).
    pub description: String,
    /// `counter`, `gauge`, `histogram`, … for metrics; empty otherwise.
    pub metric_type: String,
    /// Label / attribute keys only: values never leave the process.
    pub labels: Vec<String>,
    pub severity: Option<String>,
    /// Sample records, already redacted by the caller.
    pub examples: Vec<String>,
}

impl EventType {
    /// A metric family with no HELP, labels or examples; tests and simple
    /// callers fill in the rest with struct update syntax.
    pub fn metric(fingerprint: &str, service: &str, name: &str) -> EventType {
        EventType {
            fingerprint: fingerprint.to_string(),
            kind: EventKind::Metric,
            service: service.to_string(),
            name: name.to_string(),
            description: String::new(),
            metric_type: String::new(),
            labels: Vec::new(),
            severity: None,
            examples: Vec::new(),
        }
    }

    /// A log template with an optional severity.
    pub fn log(
        fingerprint: &str,
        service: &str,
        template: &str,
        severity: Option<&str>,
    ) -> EventType {
        EventType {
            kind: EventKind::Log,
            severity: severity.map(str::to_string),
            ..EventType::metric(fingerprint, service, template)
        }
    }
}

// The vocabulary lives in the sdk, where the CLI parses the same names.
pub use tero_sdk::classification::{Category, Verdict};

/// The decision for one event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub fingerprint: String,
    pub category: Category,
    pub verdict: Verdict,
    /// 0..=1.
    pub confidence: f64,
    pub rationale: String,
    /// [`Classifier::id`] of whoever decided: `embedded/3`,
    /// `openai/gpt-4o-mini/prompt-1`, …
    pub classifier: String,
}

/// Tokens a provider billed. `requests` counts answered (2xx) calls, the
/// ones that cost tokens; failed attempts (429, 5xx, timeouts) are not in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub requests: u64,
}

impl TokenUsage {
    /// What a token budget is measured in.
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

impl AddAssign for TokenUsage {
    fn add_assign(&mut self, other: TokenUsage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.requests = self.requests.saturating_add(other.requests);
    }
}

/// The outcome of one [`Classifier::classify`] call. Every fingerprint of
/// the batch is in exactly one of `classifications` and `unclassified`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchResult {
    pub classifications: Vec<Classification>,
    /// `(fingerprint, reason)`.
    pub unclassified: Vec<(String, String)>,
    pub usage: TokenUsage,
}

/// Why a batch could not be classified at all. The variants decide what
/// [`Chain`] does next (control-plane.md §6.6): only [`ClassifyError::falls_back`] ones
/// move the work to the fallback provider.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClassifyError {
    /// Still rate limited after the provider's retries. Never falls back: a
    /// rate limit is the provider working as agreed.
    #[error("rate limited{}", retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    /// Connection failure, timeout or 5xx after the retries.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// 401 / 403: the key is wrong, revoked or lacks permission.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// 400 / 404 / 422: the same request would fail at any provider.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The reply could not be used.
    #[error("malformed reply: {0}")]
    Malformed(String),
    /// The run's token budget is spent.
    #[error("budget exhausted")]
    BudgetExceeded,
    /// The classifier cannot be built from its configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl ClassifyError {
    /// Whether the fallback provider should take over: only when the
    /// primary cannot serve at all, never for rate limits or bad requests.
    pub fn falls_back(&self) -> bool {
        matches!(self, ClassifyError::Unavailable(_) | ClassifyError::Auth(_))
    }
}

/// What [`Classifier::classify`] returns; boxed so `dyn Classifier` works.
pub type ClassifyFuture<'a> =
    Pin<Box<dyn Future<Output = Result<BatchResult, ClassifyError>> + Send + 'a>>;

/// Something that turns event types into classifications.
pub trait Classifier: Send + Sync {
    /// Model plus prompt (or rule set) version: part of the cache key, so a
    /// change here reclassifies everything.
    fn id(&self) -> String;

    /// How many event types one request should carry; [`Chain`] splits runs
    /// into batches of this size.
    fn batch_size(&self) -> usize {
        usize::MAX
    }

    /// A guess at the tokens classifying `batch` costs, for budgets; zero
    /// for classifiers that cost nothing.
    fn estimate_tokens(&self, batch: &[EventType]) -> u64 {
        let _ = batch;
        0
    }

    /// Classifies `batch`. `Ok` may still leave event types unclassified
    /// (with a reason); `Err` means none of the batch was classified.
    fn classify<'a>(&'a self, batch: &'a [EventType]) -> ClassifyFuture<'a>;
}

// Lets one classifier serve several chains (and tests keep a handle on
// one they gave away).
impl<T: Classifier + ?Sized> Classifier for std::sync::Arc<T> {
    fn id(&self) -> String {
        (**self).id()
    }

    fn batch_size(&self) -> usize {
        (**self).batch_size()
    }

    fn estimate_tokens(&self, batch: &[EventType]) -> u64 {
        (**self).estimate_tokens(batch)
    }

    fn classify<'a>(&'a self, batch: &'a [EventType]) -> ClassifyFuture<'a> {
        (**self).classify(batch)
    }
}

/// Every fingerprint of `batch` left unclassified for `reason`.
pub(crate) fn all_unclassified(batch: &[EventType], reason: &str) -> Vec<(String, String)> {
    batch
        .iter()
        .map(|e| (e.fingerprint.clone(), reason.to_string()))
        .collect()
}

//! What the HTTP providers share: configuration, the retry schedule, the
//! mapping of HTTP outcomes onto [`ClassifyError`] and the "malformed reply
//! is retried once" rule. Each provider only supplies its wire format
//! ([`Wire`]).

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::RETRY_AFTER;
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use serde_json::Value;

use super::prompt::{self, PROMPT_VERSION};
use super::{BatchResult, ClassifyError, EventType, TokenUsage, all_unclassified};

/// Implements [`super::Classifier`] for a provider type holding a
/// `provider: Provider<_>` field: every HTTP provider behaves alike and
/// differs only in its [`Wire`].
macro_rules! delegate_classifier {
    ($ty:ty) => {
        impl $crate::Classifier for $ty {
            fn id(&self) -> String {
                self.provider.id()
            }

            fn batch_size(&self) -> usize {
                self.provider.config().batch_size
            }

            fn estimate_tokens(&self, batch: &[$crate::EventType]) -> u64 {
                self.provider.estimate_tokens(batch)
            }

            fn classify<'a>(
                &'a self,
                batch: &'a [$crate::EventType],
            ) -> $crate::ClassifyFuture<'a> {
                Box::pin(self.provider.classify(batch))
            }
        }
    };
}
pub(crate) use delegate_classifier;

/// Connection, model and limits of one provider.
#[derive(Clone)]
pub struct ProviderConfig {
    /// Scheme, host and optional path prefix; the API path (`/v1/…`) is
    /// appended. Tests and OpenAI-compatible servers point it elsewhere.
    pub base_url: String,
    /// Sent only in the provider's auth header, never logged. Empty sends no
    /// auth header (local OpenAI-compatible servers).
    pub api_key: String,
    pub model: String,
    /// Event types per request.
    pub batch_size: usize,
    /// Per attempt, connection to last byte.
    pub timeout: Duration,
    /// Cap on the reply's length where the API requires one (Anthropic).
    pub max_output_tokens: u32,
    pub retry: RetryPolicy,
}

impl ProviderConfig {
    pub const DEFAULT_BATCH_SIZE: usize = 20;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 4096;

    pub fn new(base_url: &str, api_key: &str, model: &str) -> ProviderConfig {
        ProviderConfig {
            base_url: base_url.to_string(),
            api_key: api_key.to_string(),
            model: model.to_string(),
            batch_size: Self::DEFAULT_BATCH_SIZE,
            timeout: Self::DEFAULT_TIMEOUT,
            max_output_tokens: Self::DEFAULT_MAX_OUTPUT_TOKENS,
            retry: RetryPolicy::default(),
        }
    }
}

// By hand so the key never reaches a log line through `{:?}`.
impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("base_url", &self.base_url)
            .field(
                "api_key",
                &if self.api_key.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("model", &self.model)
            .field("batch_size", &self.batch_size)
            .field("timeout", &self.timeout)
            .field("max_output_tokens", &self.max_output_tokens)
            .field("retry", &self.retry)
            .finish()
    }
}

/// How long to keep trying. Attempts count every try, the first included;
/// rate limits and outages are counted separately because they mean
/// different things (control-plane.md §6.6): a rate limit is waited out and never falls
/// back, an outage falls back once the attempts are spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries while answered with 429.
    pub rate_limit_attempts: u32,
    /// Tries while failing with connection errors, timeouts or 5xx.
    pub unavailable_attempts: u32,
    /// First backoff when the server gives no `Retry-After`; doubles per
    /// retry up to `backoff_max`, with jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// `Retry-After` is honoured up to this; a server asking for an hour
    /// must not stall a run for an hour.
    pub retry_after_cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            rate_limit_attempts: 5,
            unavailable_attempts: 3,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            retry_after_cap: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Wait before retry number `retry` (1 for the first retry): exponential,
    /// with "equal jitter" — half fixed, half random — so replicas hitting
    /// the same limit spread out but never retry immediately.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX);
        let full = self
            .backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max);
        let half = full / 2;
        let jitter_ms = fastrand::u64(0..=u64::try_from(half.as_millis()).unwrap_or(u64::MAX));
        half + Duration::from_millis(jitter_ms)
    }

    /// The wait a server asked for, capped.
    fn honour(&self, retry_after: Duration) -> Duration {
        retry_after.min(self.retry_after_cap)
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3). A date
/// in the past means "now".
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A 2xx reply read by a provider: what it billed, and the payload that
/// should hold the classifications (or why it does not).
pub(crate) struct Answer {
    pub usage: TokenUsage,
    pub payload: Result<Value, String>,
}

/// One provider's wire format.
pub(crate) trait Wire: Send + Sync + fmt::Debug {
    /// First part of the classifier id, and the `provider` in logs.
    fn name(&self) -> &'static str;
    /// The endpoint under the API root, starting with the API version
    /// (`/v1/...`); see [`endpoint_url`] for how it joins the base URL.
    fn path(&self) -> &'static str;
    fn authorize(&self, request: RequestBuilder, api_key: &str) -> RequestBuilder;
    fn body(&self, config: &ProviderConfig, batch: &[EventType]) -> Value;
    fn answer(&self, body: &[u8]) -> Answer;
    /// A provider-specific reading of an error status, before the generic
    /// mapping applies.
    fn error_for(&self, status: StatusCode, body: &[u8]) -> Option<ClassifyError> {
        let _ = (status, body);
        None
    }
}

/// The request URL for `path` (`/v1/...`) under `base`. The OpenAI and
/// Anthropic SDKs, Ollama and vLLM document base URLs that already end in
/// the version (`http://host:11434/v1`), while the bare host is also
/// common: a base ending in that version segment does not get it twice.
/// Trailing slashes are ignored.
pub(crate) fn endpoint_url(base: &str, path: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    let version = path
        .strip_prefix('/')
        .and_then(|p| p.split('/').next())
        .filter(|v| !v.is_empty());
    // The last segment of the base URL's path, not of the string: a host
    // named `v1` is no version.
    let last_segment = Url::parse(base).ok().and_then(|u| {
        u.path_segments()?
            .rfind(|s| !s.is_empty())
            .map(str::to_owned)
    });
    match version {
        Some(v) if last_segment.as_deref() == Some(v) => {
            format!("{base}{}", &path[1 + v.len()..])
        }
        _ => format!("{base}{path}"),
    }
}

/// A provider: a wire format plus the shared HTTP behaviour.
#[derive(Debug)]
pub(crate) struct Provider<W> {
    wire: W,
    config: ProviderConfig,
    url: Url,
    client: Client,
}

/// How one attempt failed, before deciding whether to retry.
enum Failure {
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
        body: Bytes,
    },
    Transport(String),
}

impl<W: Wire> Provider<W> {
    pub(crate) fn new(wire: W, config: ProviderConfig) -> Result<Provider<W>, ClassifyError> {
        let raw = endpoint_url(&config.base_url, wire.path());
        let url = Url::parse(&raw)
            .map_err(|e| ClassifyError::Config(format!("base URL {:?}: {e}", config.base_url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClassifyError::Config(format!(
                "base URL {:?}: scheme must be http or https",
                config.base_url
            )));
        }
        if config.model.trim().is_empty() {
            return Err(ClassifyError::Config("model is empty".to_string()));
        }
        if config.batch_size == 0 {
            return Err(ClassifyError::Config(
                "batch size must be at least 1".to_string(),
            ));
        }
        let client = Client::builder()
            // API endpoints do not redirect; one that does is a wrong base
            // URL, and following it could carry the key somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClassifyError::Config(format!("HTTP client: {e}")))?;
        Ok(Provider {
            wire,
            config,
            url,
            client,
        })
    }

    pub(crate) fn id(&self) -> String {
        format!(
            "{}/{}/prompt-{PROMPT_VERSION}",
            self.wire.name(),
            self.config.model
        )
    }

    pub(crate) fn config(&self) -> &ProviderConfig {
        &self.config
    }

    pub(crate) fn estimate_tokens(&self, batch: &[EventType]) -> u64 {
        batch
            .chunks(self.config.batch_size.max(1))
            .map(prompt::estimate_tokens)
            .sum()
    }

    /// Classifies `batch` in requests of at most `batch_size` event types.
    /// An error in any request fails the whole call: [`super::Chain`] calls
    /// with one batch at a time, so nothing is lost there.
    pub(crate) async fn classify(&self, batch: &[EventType]) -> Result<BatchResult, ClassifyError> {
        let mut result = BatchResult::default();
        for chunk in batch.chunks(self.config.batch_size.max(1)) {
            let part = self.classify_chunk(chunk).await?;
            result.classifications.extend(part.classifications);
            result.unclassified.extend(part.unclassified);
            result.usage += part.usage;
        }
        Ok(result)
    }

    /// One request, and one more if the reply is malformed: models do
    /// occasionally emit a bad reply that a second sample gets right, but a
    /// model that fails twice on the same batch will keep failing.
    async fn classify_chunk(&self, batch: &[EventType]) -> Result<BatchResult, ClassifyError> {
        let id = self.id();
        let body = self.wire.body(&self.config, batch);
        let mut usage = TokenUsage::default();
        let mut reason = String::new();
        for attempt in 0..2 {
            let started = Instant::now();
            let reply = match self.send(&body).await {
                Ok(reply) => reply,
                Err(e) if attempt == 0 => return Err(e),
                // Tokens were already spent on the first reply: report them
                // (with the batch unclassified) instead of an error that
                // would drop the accounting. The provider answered a moment
                // ago, so this is no outage to fall back on.
                Err(e) => {
                    return Ok(BatchResult {
                        classifications: Vec::new(),
                        unclassified: all_unclassified(
                            batch,
                            &format!("malformed reply ({reason}); the retry failed: {e}"),
                        ),
                        usage,
                    });
                }
            };
            let answer = self.wire.answer(&reply);
            usage += TokenUsage {
                requests: 1,
                ..answer.usage
            };
            let outcome = answer
                .payload
                .and_then(|payload| prompt::parse_reply(batch, payload, &id));
            tracing::debug!(
                provider = self.wire.name(),
                model = %self.config.model,
                event_types = batch.len(),
                input_tokens = answer.usage.input_tokens,
                output_tokens = answer.usage.output_tokens,
                latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                outcome = if outcome.is_ok() { "ok" } else { "malformed" },
                "classification request"
            );
            match outcome {
                Ok((classifications, unclassified)) => {
                    return Ok(BatchResult {
                        classifications,
                        unclassified,
                        usage,
                    });
                }
                Err(why) => reason = why,
            }
        }
        Ok(BatchResult {
            classifications: Vec::new(),
            unclassified: all_unclassified(
                batch,
                &format!("{} (after one retry)", ClassifyError::Malformed(reason)),
            ),
            usage,
        })
    }

    /// Posts `body` until a 2xx reply, retrying rate limits and outages as
    /// the policy allows.
    async fn send(&self, body: &Value) -> Result<Bytes, ClassifyError> {
        let policy = &self.config.retry;
        let mut rate_limited = 0u32;
        let mut failed = 0u32;
        loop {
            let request = self
                .wire
                .authorize(self.client.post(self.url.clone()), &self.config.api_key)
                .timeout(self.config.timeout)
                .json(body);
            let failure = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    match response.bytes().await {
                        Ok(bytes) if status.is_success() => return Ok(bytes),
                        Ok(body) => Failure::Status {
                            status,
                            retry_after,
                            body,
                        },
                        Err(e) => Failure::Transport(describe(&e, self.config.timeout)),
                    }
                }
                Err(e) => Failure::Transport(describe(&e, self.config.timeout)),
            };
            if let Failure::Status { status, body, .. } = &failure
                && let Some(error) = self.wire.error_for(*status, body)
            {
                return Err(error);
            }
            let (what, wait) = match failure {
                Failure::Status {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    retry_after,
                    ..
                } => {
                    rate_limited += 1;
                    if rate_limited >= policy.rate_limit_attempts {
                        return Err(ClassifyError::RateLimited { retry_after });
                    }
                    let wait = retry_after
                        .map(|d| policy.honour(d))
                        .unwrap_or_else(|| policy.backoff(rate_limited));
                    ("rate limited".to_string(), wait)
                }
                Failure::Status { status, body, .. }
                    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) =>
                {
                    return Err(ClassifyError::Auth(format!(
                        "HTTP {status}: {}",
                        error_message(&body)
                    )));
                }
                Failure::Status {
                    status,
                    retry_after,
                    body,
                } if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT => {
                    failed += 1;
                    let what = format!("HTTP {status}: {}", error_message(&body));
                    if failed >= policy.unavailable_attempts {
                        return Err(ClassifyError::Unavailable(format!(
                            "{what} (after {failed} attempts)"
                        )));
                    }
                    let wait = retry_after
                        .map(|d| policy.honour(d))
                        .unwrap_or_else(|| policy.backoff(failed));
                    (what, wait)
                }
                Failure::Status { status, body, .. } if status.is_redirection() => {
                    return Err(ClassifyError::InvalidRequest(format!(
                        "HTTP {status} redirect: check the base URL ({})",
                        error_message(&body)
                    )));
                }
                Failure::Status { status, body, .. } => {
                    return Err(ClassifyError::InvalidRequest(format!(
                        "HTTP {status}: {}",
                        error_message(&body)
                    )));
                }
                Failure::Transport(what) => {
                    failed += 1;
                    if failed >= policy.unavailable_attempts {
                        return Err(ClassifyError::Unavailable(format!(
                            "{what} (after {failed} attempts)"
                        )));
                    }
                    (what, policy.backoff(failed))
                }
            };
            tracing::warn!(
                provider = self.wire.name(),
                model = %self.config.model,
                failure = %what,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "classification request retried"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// A transport error with its causes: reqwest's own message alone ("error
/// sending request") does not say what went wrong.
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("timed out after {timeout:?}");
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The human-readable part of an API error body. Both APIs put it in
/// `error.message`; anything else is shown truncated.
pub(crate) fn error_message(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None if text.is_empty() => "(no body)".to_string(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_with_or_without_the_version_reach_one_endpoint() {
        for base in [
            "http://llm:8000",
            "http://llm:8000/",
            "http://llm:8000/v1",
            "http://llm:8000/v1/",
        ] {
            assert_eq!(
                endpoint_url(base, "/v1/chat/completions"),
                "http://llm:8000/v1/chat/completions",
                "{base}"
            );
        }
        // A proxy prefix is kept, with or without the version after it.
        for base in ["https://gw/openai", "https://gw/openai/v1/"] {
            assert_eq!(
                endpoint_url(base, "/v1/messages"),
                "https://gw/openai/v1/messages",
                "{base}"
            );
        }
        // Only a whole `v1` path segment counts.
        assert_eq!(
            endpoint_url("http://v1:8000", "/v1/messages"),
            "http://v1:8000/v1/messages"
        );
        assert_eq!(
            endpoint_url("http://llm/apiv1", "/v1/messages"),
            "http://llm/apiv1/v1/messages"
        );
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn retry_after_is_capped() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.honour(Duration::from_secs(3600)),
            policy.retry_after_cap
        );
        assert_eq!(
            policy.honour(Duration::from_secs(2)),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let policy = RetryPolicy {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = policy.backoff(40);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(br#"{"error":{"message":"bad key","type":"x"}}"#),
            "bad key"
        );
        assert_eq!(error_message(b""), "(no body)");
        assert_eq!(error_message(b"upstream down"), "upstream down");
        assert_eq!(error_message(&[b'x'; 1000]).chars().count(), 301);
    }

    #[test]
    fn debug_redacts_the_key() {
        let config = ProviderConfig::new("https://api.example", "sk-secret", "m");
        let shown = format!("{config:?}");
        assert!(!shown.contains("sk-secret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}

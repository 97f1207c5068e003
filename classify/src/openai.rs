//! OpenAI's Chat Completions API with structured outputs: the reply is
//! constrained to the classification schema (`strict: true`), so a
//! malformed reply is rare and a retry usually fixes it. Works with
//! OpenAI-compatible servers (local models) through the base URL.

use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};

use super::prompt::{self, SYSTEM_PROMPT};
use super::provider::{Answer, Provider, Wire, error_message};
use super::{ClassifyError, EventType, ProviderConfig, TokenUsage};

/// An OpenAI (or OpenAI-compatible) classifier.
#[derive(Debug)]
pub struct OpenAi {
    provider: Provider<OpenAiWire>,
}

impl OpenAi {
    pub const DEFAULT_BASE_URL: &'static str = "https://api.openai.com";
    /// The name the reply schema is registered under in the request.
    pub const SCHEMA_NAME: &'static str = "event_type_classifications";

    /// Fails on an unusable configuration (base URL, empty model, batch size
    /// 0); the key is only checked by the API.
    pub fn new(config: ProviderConfig) -> Result<OpenAi, ClassifyError> {
        Ok(OpenAi {
            provider: Provider::new(OpenAiWire, config)?,
        })
    }

    pub fn config(&self) -> &ProviderConfig {
        self.provider.config()
    }
}

super::provider::delegate_classifier!(OpenAi);

#[derive(Debug)]
struct OpenAiWire;

impl Wire for OpenAiWire {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn path(&self) -> &'static str {
        "/v1/chat/completions"
    }

    fn authorize(&self, request: RequestBuilder, api_key: &str) -> RequestBuilder {
        if api_key.is_empty() {
            request
        } else {
            request.bearer_auth(api_key)
        }
    }

    // No temperature or token cap: reasoning models reject non-default
    // temperatures, and the strict schema already bounds the reply's shape.
    fn body(&self, config: &ProviderConfig, batch: &[EventType]) -> Value {
        json!({
            "model": config.model,
            "messages": [
                { "role": "system", "content": SYSTEM_PROMPT },
                { "role": "user", "content": prompt::user_message(batch) }
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": OpenAi::SCHEMA_NAME,
                    "strict": true,
                    "schema": prompt::reply_schema()
                }
            }
        })
    }

    fn answer(&self, body: &[u8]) -> Answer {
        let reply: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return Answer {
                    usage: TokenUsage::default(),
                    payload: Err(format!("response is not JSON: {e}")),
                };
            }
        };
        let usage = TokenUsage {
            input_tokens: reply["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
            output_tokens: reply["usage"]["completion_tokens"].as_u64().unwrap_or(0),
            requests: 0,
        };
        let choice = &reply["choices"][0];
        let message = &choice["message"];
        let payload = if let Some(refusal) = message["refusal"].as_str() {
            Err(format!("the model refused: {refusal}"))
        } else if let Some(content) = message["content"].as_str() {
            serde_json::from_str(content).map_err(|e| {
                let cut = if choice["finish_reason"] == "length" {
                    " (cut off at the token limit)"
                } else {
                    ""
                };
                format!("message content is not JSON{cut}: {e}")
            })
        } else {
            Err("no choices[0].message.content in the response".to_string())
        };
        Answer { usage, payload }
    }

    /// OpenAI answers an exhausted quota or unpaid account with 429
    /// `insufficient_quota`. Unlike a rate limit it does not pass with time,
    /// so waiting it out is pointless: it is a permission failure of the
    /// account, and falls back like one.
    fn error_for(&self, status: StatusCode, body: &[u8]) -> Option<ClassifyError> {
        if status != StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        let error: Value = serde_json::from_slice(body).ok()?;
        let quota = [&error["error"]["code"], &error["error"]["type"]]
            .iter()
            .any(|v| v.as_str() == Some("insufficient_quota"));
        quota.then(|| ClassifyError::Auth(format!("insufficient quota: {}", error_message(body))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Classifier;

    #[test]
    fn reads_content_and_usage() {
        let body = json!({
            "choices": [{"message": {"role": "assistant",
                "content": "{\"classifications\": []}"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
        });
        let answer = OpenAiWire.answer(body.to_string().as_bytes());
        assert_eq!(answer.usage.input_tokens, 12);
        assert_eq!(answer.usage.output_tokens, 3);
        assert_eq!(answer.payload, Ok(json!({"classifications": []})));
    }

    #[test]
    fn malformed_responses_are_reasons_not_panics() {
        for body in [
            "not json".to_string(),
            json!({"choices": []}).to_string(),
            json!({"choices": [{"message": {"content": null, "refusal": "no"}}]}).to_string(),
            json!({"choices": [{"message": {"content": "{\"classif"}, "finish_reason": "length"}]})
                .to_string(),
        ] {
            assert!(
                OpenAiWire.answer(body.as_bytes()).payload.is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn insufficient_quota_is_not_a_rate_limit() {
        let quota = json!({"error": {"message": "You exceeded your current quota",
            "type": "insufficient_quota", "code": "insufficient_quota"}});
        let error =
            OpenAiWire.error_for(StatusCode::TOO_MANY_REQUESTS, quota.to_string().as_bytes());
        assert!(matches!(error, Some(ClassifyError::Auth(_))), "{error:?}");
        let limit = json!({"error": {"message": "Rate limit reached", "type": "requests",
            "code": "rate_limit_exceeded"}});
        assert_eq!(
            OpenAiWire.error_for(StatusCode::TOO_MANY_REQUESTS, limit.to_string().as_bytes()),
            None
        );
    }

    #[test]
    fn config_is_validated() {
        let bad = [
            ProviderConfig::new("not a url", "k", "m"),
            ProviderConfig::new("ftp://host", "k", "m"),
            ProviderConfig::new(OpenAi::DEFAULT_BASE_URL, "k", " "),
            ProviderConfig {
                batch_size: 0,
                ..ProviderConfig::new(OpenAi::DEFAULT_BASE_URL, "k", "m")
            },
        ];
        for config in bad {
            assert!(matches!(OpenAi::new(config), Err(ClassifyError::Config(_))));
        }
        let ok = OpenAi::new(ProviderConfig::new(
            OpenAi::DEFAULT_BASE_URL,
            "k",
            "gpt-4o-mini",
        ));
        assert_eq!(
            ok.map(|c| c.id()).ok().as_deref(),
            Some("openai/gpt-4o-mini/prompt-1")
        );
    }
}

//! Anthropic's Messages API. The classifications come back as the input of
//! a forced tool call (`tool_choice` names the one tool), which is how the
//! API constrains a reply to a JSON schema.

use reqwest::RequestBuilder;
use serde_json::{Value, json};

use super::prompt::{self, SYSTEM_PROMPT};
use super::provider::{Answer, Provider, Wire};
use super::{ClassifyError, EventType, ProviderConfig, TokenUsage};

/// An Anthropic classifier.
#[derive(Debug)]
pub struct Anthropic {
    provider: Provider<AnthropicWire>,
}

impl Anthropic {
    pub const DEFAULT_BASE_URL: &'static str = "https://api.anthropic.com";
    /// The API version the request and response shapes follow.
    pub const API_VERSION: &'static str = "2023-06-01";
    /// The tool the model is made to call with its classifications.
    pub const TOOL_NAME: &'static str = "record_classifications";

    /// Fails on an unusable configuration (base URL, empty model, batch size
    /// 0); the key is only checked by the API.
    pub fn new(config: ProviderConfig) -> Result<Anthropic, ClassifyError> {
        Ok(Anthropic {
            provider: Provider::new(AnthropicWire, config)?,
        })
    }

    pub fn config(&self) -> &ProviderConfig {
        self.provider.config()
    }
}

super::provider::delegate_classifier!(Anthropic);

#[derive(Debug)]
struct AnthropicWire;

impl Wire for AnthropicWire {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn path(&self) -> &'static str {
        "/v1/messages"
    }

    fn authorize(&self, request: RequestBuilder, api_key: &str) -> RequestBuilder {
        request
            .header("x-api-key", api_key)
            .header("anthropic-version", Anthropic::API_VERSION)
    }

    fn body(&self, config: &ProviderConfig, batch: &[EventType]) -> Value {
        json!({
            "model": config.model,
            "max_tokens": config.max_output_tokens,
            "system": SYSTEM_PROMPT,
            "messages": [
                { "role": "user", "content": prompt::user_message(batch) }
            ],
            "tools": [{
                "name": Anthropic::TOOL_NAME,
                "description": "Record one classification per event type.",
                "input_schema": prompt::reply_schema()
            }],
            "tool_choice": { "type": "tool", "name": Anthropic::TOOL_NAME }
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
            input_tokens: reply["usage"]["input_tokens"].as_u64().unwrap_or(0),
            output_tokens: reply["usage"]["output_tokens"].as_u64().unwrap_or(0),
            requests: 0,
        };
        let tool_use = reply["content"].as_array().and_then(|blocks| {
            blocks
                .iter()
                .find(|b| b["type"] == "tool_use" && b["name"] == Anthropic::TOOL_NAME)
        });
        let payload = match tool_use {
            Some(block) if block["input"].is_object() => Ok(block["input"].clone()),
            Some(_) => Err("the tool_use block has no input object".to_string()),
            None if reply["stop_reason"] == "max_tokens" => {
                Err("no tool_use block: cut off at max_tokens".to_string())
            }
            None => Err(format!(
                "no {} tool_use block in the response",
                Anthropic::TOOL_NAME
            )),
        };
        Answer { usage, payload }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Classifier;

    #[test]
    fn reads_tool_input_and_usage() {
        let body = json!({
            "type": "message", "role": "assistant", "stop_reason": "tool_use",
            "content": [
                {"type": "text", "text": "Here you go."},
                {"type": "tool_use", "id": "toolu_1", "name": "record_classifications",
                 "input": {"classifications": []}}
            ],
            "usage": {"input_tokens": 20, "output_tokens": 7}
        });
        let answer = AnthropicWire.answer(body.to_string().as_bytes());
        assert_eq!(answer.usage.input_tokens, 20);
        assert_eq!(answer.usage.output_tokens, 7);
        assert_eq!(answer.payload, Ok(json!({"classifications": []})));
    }

    #[test]
    fn malformed_responses_are_reasons_not_panics() {
        for body in [
            "<html>".to_string(),
            json!({"content": []}).to_string(),
            json!({"content": [{"type": "text", "text": "{}"}], "stop_reason": "max_tokens"})
                .to_string(),
            json!({"content": [{"type": "tool_use", "name": "other", "input": {}}]}).to_string(),
            json!({"content": [{"type": "tool_use", "name": "record_classifications",
                "input": "x"}]})
            .to_string(),
        ] {
            assert!(
                AnthropicWire.answer(body.as_bytes()).payload.is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn id_names_model_and_prompt() {
        let c = Anthropic::new(ProviderConfig::new(
            Anthropic::DEFAULT_BASE_URL,
            "k",
            "claude-haiku",
        ));
        assert_eq!(
            c.map(|c| c.id()).ok().as_deref(),
            Some("anthropic/claude-haiku/prompt-1")
        );
    }
}

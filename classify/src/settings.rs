//! Which classifiers run, as the operator configures them, checked at
//! start-up so that a missing key or a typo in a provider name stops the
//! control plane with a message naming the flag rather than surfacing as
//! failed runs later.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::{Anthropic, Chain, Classifier, ClassifyError, Embedded, OpenAi, ProviderConfig};

/// A classifier implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Rules over names, templates, severities and labels; no network.
    Embedded,
    /// OpenAI chat completions (or any server speaking that API).
    OpenAi,
    /// Anthropic messages API.
    Anthropic,
}

impl ProviderKind {
    pub const NAMES: &'static str = "embedded, openai, anthropic";

    fn default_model(self) -> &'static str {
        match self {
            ProviderKind::Embedded => "",
            ProviderKind::OpenAi => "gpt-4o-mini",
            ProviderKind::Anthropic => "claude-3-5-haiku-latest",
        }
    }

    fn default_base_url(self) -> &'static str {
        match self {
            ProviderKind::Embedded => "",
            ProviderKind::OpenAi => OpenAi::DEFAULT_BASE_URL,
            ProviderKind::Anthropic => Anthropic::DEFAULT_BASE_URL,
        }
    }

    /// The provider's conventional key variable, read when no key is given.
    pub fn key_env(self) -> Option<&'static str> {
        match self {
            ProviderKind::Embedded => None,
            ProviderKind::OpenAi => Some("OPENAI_API_KEY"),
            ProviderKind::Anthropic => Some("ANTHROPIC_API_KEY"),
        }
    }
}

impl FromStr for ProviderKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "embedded" => Ok(ProviderKind::Embedded),
            "openai" => Ok(ProviderKind::OpenAi),
            "anthropic" => Ok(ProviderKind::Anthropic),
            other => Err(format!(
                "{other:?} is not a classifier: use one of {}",
                ProviderKind::NAMES
            )),
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProviderKind::Embedded => "embedded",
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
        })
    }
}

/// One classifier's settings.
#[derive(Clone)]
pub struct ProviderSettings {
    pub kind: ProviderKind,
    /// Empty for the provider's default model.
    pub model: String,
    /// Empty: the provider's conventional variable is read
    /// ([`ProviderKind::key_env`]).
    pub api_key: String,
    /// Empty for the provider's public endpoint.
    pub base_url: String,
    pub timeout: Duration,
}

impl ProviderSettings {
    pub fn embedded() -> ProviderSettings {
        ProviderSettings {
            kind: ProviderKind::Embedded,
            model: String::new(),
            api_key: String::new(),
            base_url: String::new(),
            timeout: ProviderConfig::DEFAULT_TIMEOUT,
        }
    }

    /// Builds the classifier; `flag` prefixes errors (`--classifier`).
    pub fn build(&self, flag: &str) -> Result<Box<dyn Classifier>, ClassifyError> {
        let kind = self.kind;
        if kind == ProviderKind::Embedded {
            return Ok(Box::new(Embedded::new()));
        }
        let base_url = if self.base_url.is_empty() {
            kind.default_base_url()
        } else {
            self.base_url.as_str()
        };
        let model = if self.model.is_empty() {
            kind.default_model()
        } else {
            self.model.as_str()
        };
        let mut api_key = self.api_key.clone();
        if api_key.is_empty()
            && let Some(var) = kind.key_env()
        {
            api_key = std::env::var(var).unwrap_or_default();
        }
        // A local OpenAI-compatible server may need no key; the public
        // endpoints always do (control-plane.md §6.6: keys are checked when configured).
        if api_key.is_empty() && base_url == kind.default_base_url() {
            return Err(ClassifyError::Config(format!(
                "{flag} {kind} needs an API key: set {flag}-api-key or {}",
                kind.key_env().unwrap_or_default()
            )));
        }
        let config = ProviderConfig {
            timeout: self.timeout,
            ..ProviderConfig::new(base_url, &api_key, model)
        };
        let classifier: Box<dyn Classifier> = match kind {
            ProviderKind::OpenAi => Box::new(OpenAi::new(config)?),
            ProviderKind::Anthropic => Box::new(Anthropic::new(config)?),
            ProviderKind::Embedded => Box::new(Embedded::new()),
        };
        Ok(classifier)
    }
}

/// The whole classification configuration.
#[derive(Clone)]
pub struct ClassifierSettings {
    pub primary: ProviderSettings,
    pub fallback: Option<ProviderSettings>,
    /// Tokens per run; 0 for no limit.
    pub budget_tokens: u64,
}

impl Default for ClassifierSettings {
    fn default() -> Self {
        ClassifierSettings {
            primary: ProviderSettings::embedded(),
            fallback: None,
            budget_tokens: 0,
        }
    }
}

impl ClassifierSettings {
    pub fn chain(&self) -> Result<Chain, ClassifyError> {
        let mut chain = Chain::new(self.primary.build("--classifier")?);
        if let Some(fallback) = &self.fallback {
            if fallback.kind == self.primary.kind
                && fallback.model == self.primary.model
                && fallback.base_url == self.primary.base_url
            {
                return Err(ClassifyError::Config(
                    "--classifier-fallback is the same classifier as --classifier: \
                     pick another provider or model, or no fallback"
                        .to_string(),
                ));
            }
            chain = chain.with_fallback(fallback.build("--classifier-fallback")?);
        }
        if self.budget_tokens > 0 {
            chain = chain.with_budget(self.budget_tokens);
        }
        Ok(chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(kind: ProviderKind, key: &str, base_url: &str) -> ProviderSettings {
        ProviderSettings {
            kind,
            api_key: key.to_string(),
            base_url: base_url.to_string(),
            ..ProviderSettings::embedded()
        }
    }

    #[test]
    fn names_parse_and_typos_list_the_choices() {
        assert_eq!("OpenAI".parse(), Ok(ProviderKind::OpenAi));
        assert_eq!("anthropic".parse(), Ok(ProviderKind::Anthropic));
        let err = "gpt".parse::<ProviderKind>().unwrap_err();
        assert!(err.contains("embedded, openai, anthropic"), "{err}");
    }

    #[test]
    fn the_default_is_the_embedded_classifier_alone() {
        let chain = ClassifierSettings::default().chain().expect("valid");
        assert_eq!(chain.primary.id(), Embedded::new().id());
        assert!(chain.fallback.is_none());
        assert!(chain.budget.is_none());
    }

    #[test]
    fn public_endpoints_need_a_key_local_ones_do_not() {
        // The conventional variables may be set where the tests run, so the
        // missing-key case goes through Anthropic only when its variable is
        // absent.
        if std::env::var_os("ANTHROPIC_API_KEY").is_none() {
            let err = provider(ProviderKind::Anthropic, "", "")
                .build("--classifier")
                .err()
                .expect("a key is required");
            assert!(err.to_string().contains("--classifier-api-key"), "{err}");
        }
        let local = provider(ProviderKind::OpenAi, "", "http://127.0.0.1:9");
        let c = local
            .build("--classifier")
            .expect("a local server needs no key");
        assert!(c.id().starts_with("openai/gpt-4o-mini"), "{}", c.id());
    }

    #[test]
    fn fallback_and_budget_are_wired() {
        let settings = ClassifierSettings {
            primary: provider(ProviderKind::OpenAi, "k", ""),
            fallback: Some(ProviderSettings::embedded()),
            budget_tokens: 500,
        };
        let chain = settings.chain().expect("valid");
        assert!(chain.primary.id().starts_with("openai/"));
        assert_eq!(
            chain.fallback.as_ref().map(|f| f.id()),
            Some(Embedded::new().id())
        );
        assert_eq!(chain.budget, Some(500));
        let same = ClassifierSettings {
            fallback: Some(provider(ProviderKind::OpenAi, "k", "")),
            ..settings
        };
        assert!(same.chain().is_err());
    }
}

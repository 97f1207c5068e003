//! The classification vocabulary: what an event type is, and whether it is
//! worth its cost. The control plane's classifiers decide between these;
//! the CLI and API filters parse the same names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A name that is not one of a vocabulary's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a {what}; expected one of: {expected}")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
    pub expected: String,
}

fn parse_name<T: Copy>(
    what: &'static str,
    all: &[T],
    name: fn(T) -> &'static str,
    text: &str,
) -> Result<T, UnknownName> {
    all.iter()
        .copied()
        .find(|v| name(*v).eq_ignore_ascii_case(text.trim()))
        .ok_or_else(|| UnknownName {
            what,
            value: text.to_owned(),
            expected: all.iter().map(|v| name(*v)).collect::<Vec<_>>().join(", "),
        })
}

/// Why an event type exists, as far as telemetry value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    DebugNoise,
    HealthCheck,
    SyntheticTest,
    BotTraffic,
    Duplicate,
    BusinessEvent,
    ErrorSignal,
    Operational,
    Unknown,
}

impl Category {
    pub const ALL: [Category; 9] = [
        Category::DebugNoise,
        Category::HealthCheck,
        Category::SyntheticTest,
        Category::BotTraffic,
        Category::Duplicate,
        Category::BusinessEvent,
        Category::ErrorSignal,
        Category::Operational,
        Category::Unknown,
    ];

    /// The serialized (snake_case) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::DebugNoise => "debug_noise",
            Category::HealthCheck => "health_check",
            Category::SyntheticTest => "synthetic_test",
            Category::BotTraffic => "bot_traffic",
            Category::Duplicate => "duplicate",
            Category::BusinessEvent => "business_event",
            Category::ErrorSignal => "error_signal",
            Category::Operational => "operational",
            Category::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the event type is worth its cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Keep,
    Waste,
    /// Worth keeping in part: sample, aggregate or trim rather than drop.
    Mixed,
}

impl Verdict {
    pub const ALL: [Verdict; 3] = [Verdict::Keep, Verdict::Waste, Verdict::Mixed];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Keep => "keep",
            Verdict::Waste => "waste",
            Verdict::Mixed => "mixed",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = UnknownName;

    /// The snake_case name, in any case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_name("category", &Category::ALL, Category::as_str, text)
    }
}

impl FromStr for Verdict {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_name("verdict", &Verdict::ALL, Verdict::as_str, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_serde() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>(), Ok(c));
            assert_eq!(c.as_str().to_uppercase().parse::<Category>(), Ok(c));
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
        for v in Verdict::ALL {
            assert_eq!(v.to_string().parse::<Verdict>(), Ok(v));
            assert_eq!(
                serde_json::from_str::<Verdict>(&format!("\"{v}\"")).unwrap(),
                v
            );
        }
        let err = "noise".parse::<Category>().unwrap_err().to_string();
        assert_eq!(
            err,
            "\"noise\" is not a category; expected one of: debug_noise, health_check, \
             synthetic_test, bot_traffic, duplicate, business_event, error_signal, \
             operational, unknown"
        );
        assert!("drop".parse::<Verdict>().is_err());
    }
}

//! Keep actions and their restrictiveness.
//!
//! Exactly one policy wins per record (policy-format.md §5.1): the most restrictive keep,
//! ties broken by the lowest id. [`Rank`] orders keeps so that the winner is
//! simply the minimum.

use std::cmp::Ordering;

use tero_proto::policy as pb;

/// A log keep string, parsed (policy-format.md §4.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum LogKeep {
    All,
    None,
    /// Keep ≈ this percentage, strictly between 0 and 100.
    Percent(f64),
    /// At most `limit` records per `window_ms` fixed window.
    Rate {
        limit: u32,
        window_ms: u64,
    },
}

impl LogKeep {
    /// Parses a keep string; `None` if it is malformed.
    pub(crate) fn parse(text: &str) -> Option<LogKeep> {
        let t = text.trim().to_ascii_lowercase();
        match t.as_str() {
            "" | "all" => return Some(LogKeep::All),
            "none" => return Some(LogKeep::None),
            _ => {}
        }
        if let Some(number) = t.strip_suffix('%') {
            let number = number.trim();
            let well_formed = !number.is_empty()
                && number.chars().all(|c| c.is_ascii_digit() || c == '.')
                && number.chars().filter(|&c| c == '.').count() <= 1
                && number != ".";
            let p: f64 = number.parse().ok().filter(|_| well_formed)?;
            return match p {
                p if !(0.0..=100.0).contains(&p) => None,
                0.0 => Some(LogKeep::None),
                100.0 => Some(LogKeep::All),
                p => Some(LogKeep::Percent(p)),
            };
        }
        let (count, window) = t.split_once('/')?;
        let limit = positive_integer(count.trim())?;
        let window = window.trim();
        let (digits, unit_ms) = if let Some(d) = window.strip_suffix('s') {
            (d, 1_000)
        } else if let Some(d) = window.strip_suffix('m') {
            (d, 60_000)
        } else {
            return None;
        };
        let multiplier = if digits.is_empty() {
            1
        } else {
            positive_integer(digits)?
        };
        let limit = u32::try_from(limit).ok()?;
        Some(LogKeep::Rate {
            limit,
            window_ms: multiplier.checked_mul(unit_ms)?,
        })
    }

    pub(crate) fn rank(self) -> Rank {
        match self {
            LogKeep::None => Rank::new(0, 0.0),
            LogKeep::Rate { limit, window_ms } => {
                Rank::new(1, f64::from(limit) * 1000.0 / window_ms as f64)
            }
            LogKeep::Percent(p) => Rank::new(2, p),
            LogKeep::All => Rank::new(3, 0.0),
        }
    }
}

fn positive_integer(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&n| n > 0)
}

/// Restrictiveness: lower is more restrictive. Compared by class, then by
/// the class's own measure (rate, percentage); the caller breaks ties by id.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rank {
    class: u8,
    measure: f64,
}

impl Rank {
    pub(crate) fn new(class: u8, measure: f64) -> Self {
        Self { class, measure }
    }

    pub(crate) fn drop_all() -> Self {
        Rank::new(0, 0.0)
    }

    pub(crate) fn keep_all() -> Self {
        Rank::new(3, 0.0)
    }

    pub(crate) fn cmp(&self, other: &Rank) -> Ordering {
        self.class
            .cmp(&other.class)
            .then(self.measure.total_cmp(&other.measure))
    }
}

/// How a trace policy's winner decides (policy-format.md §1.6).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum TraceKeep {
    /// No sampling config: keep, tracestate untouched.
    Unconfigured,
    /// 0 %: drop.
    None,
    /// ≥ 100 %: keep and record `th:0`.
    All,
    Sample(SamplingConfig),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SamplingConfig {
    pub(crate) probability: f64,
    pub(crate) threshold: u64,
    pub(crate) mode: pb::SamplingMode,
    pub(crate) precision: u32,
    pub(crate) hash_seed: u32,
    pub(crate) fail_closed: bool,
}

impl TraceKeep {
    pub(crate) fn rank(&self) -> Rank {
        match self {
            TraceKeep::None => Rank::drop_all(),
            TraceKeep::Sample(cfg) => Rank::new(2, cfg.probability * 100.0),
            TraceKeep::All | TraceKeep::Unconfigured => Rank::keep_all(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_strings() {
        assert_eq!(LogKeep::parse("all"), Some(LogKeep::All));
        assert_eq!(LogKeep::parse(""), Some(LogKeep::All));
        assert_eq!(LogKeep::parse(" NONE "), Some(LogKeep::None));
        assert_eq!(LogKeep::parse("0%"), Some(LogKeep::None));
        assert_eq!(LogKeep::parse("100%"), Some(LogKeep::All));
        assert_eq!(LogKeep::parse("0.5%"), Some(LogKeep::Percent(0.5)));
        assert_eq!(LogKeep::parse(".01%"), Some(LogKeep::Percent(0.01)));
        assert_eq!(
            LogKeep::parse("5/s"),
            Some(LogKeep::Rate {
                limit: 5,
                window_ms: 1000
            })
        );
        assert_eq!(
            LogKeep::parse("1/m"),
            Some(LogKeep::Rate {
                limit: 1,
                window_ms: 60_000
            })
        );
        assert_eq!(
            LogKeep::parse("10/5m"),
            Some(LogKeep::Rate {
                limit: 10,
                window_ms: 300_000
            })
        );
        assert_eq!(
            LogKeep::parse("1/300s"),
            Some(LogKeep::Rate {
                limit: 1,
                window_ms: 300_000
            })
        );
        for bad in [
            "bogus", "1.5/s", "0/s", "5/h", "101%", "-1%", "%", "1/0s", "a/s", "1e2%", "1/1.5s",
            "5/",
        ] {
            assert_eq!(LogKeep::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn restrictiveness_order() {
        let none = LogKeep::None.rank();
        let slow = LogKeep::parse("1/10s").unwrap().rank();
        let fast = LogKeep::parse("3/5s").unwrap().rank();
        let ten = LogKeep::Percent(10.0).rank();
        let fifty = LogKeep::Percent(50.0).rank();
        let all = LogKeep::All.rank();
        let order = [none, slow, fast, ten, fifty, all];
        for w in order.windows(2) {
            assert_eq!(w[0].cmp(&w[1]), Ordering::Less);
        }
    }
}

//! Log event types the classifier calls waste (or mixed): drop or sample
//! the records of the template.
//!
//! What to keep:
//!
//! - health checks, bot and synthetic traffic, duplicates: `none`; the
//!   records say nothing the service's metrics and its other logs do not.
//! - debug noise at a debug level (severity `DEBUG`, `TRACE`, …, or every
//!   example tagged so in plain text: `[DEBUG]`, `level=debug`, `<7>`):
//!   `none`, which is what running the service at INFO would do.
//! - debug noise at another level, or none (the classifier read the
//!   content, the application did not mark it): the application may count
//!   on seeing it, so some stays. From [`RATE_LIMIT_FROM_PER_EDGE`] records
//!   a second per edge on average (a flood, or floods in bursts) a rate
//!   limit of `1/s`, which caps the output whatever the flood; below it a
//!   `10%` sample, which keeps the shape of a steady stream.
//! - `mixed` (some records matter): a `10%` sample, never a drop.

use tero_proto::controlplane::{Classification, EventType};

use super::super::{Finding, domain};
use super::estimate::{self, Removal, Signal};
use super::matcher;
use super::recommend::Recommendation;
use super::{
    Candidate, ClassifiedEvent, Ctx, cost_severity, event_evidence, kind, no_policy, short,
    volume_clause,
};

/// Average records a second per edge from which debug noise that is not at
/// a debug level is rate-limited rather than sampled.
pub const RATE_LIMIT_FROM_PER_EDGE: f64 = 10.0;
/// The rate limit kept of such floods, per edge.
const RATE_LIMIT: &str = "1/s";
const RATE_LIMIT_PER_SECOND: f64 = 1.0;
/// The sample kept of steady debug noise and of mixed event types.
const SAMPLE: &str = "10%";
const SAMPLE_KEPT: f64 = 0.10;

/// What the finding is called, given the classification.
fn kind_of(c: &Classification) -> Option<&'static str> {
    match (c.verdict.as_str(), c.category.as_str()) {
        ("waste", "debug_noise") => Some(kind::DEBUG_LOGS),
        ("waste", "health_check") => Some(kind::HEALTH_CHECK_LOGS),
        ("waste", "synthetic_test") => Some(kind::SYNTHETIC_LOGS),
        ("waste", "bot_traffic") => Some(kind::BOT_LOGS),
        ("waste", "duplicate") => Some(kind::DUPLICATE_LOGS),
        ("mixed", _) => Some(kind::NOISY_LOGS),
        _ => None,
    }
}

/// Lower is more certain (see [`super::settle`]).
fn rank(kind: &str) -> u8 {
    match kind {
        kind::HEALTH_CHECK_LOGS => 0,
        kind::BOT_LOGS => 1,
        kind::SYNTHETIC_LOGS => 2,
        kind::DUPLICATE_LOGS => 3,
        kind::DEBUG_LOGS => 4,
        _ => 5,
    }
}

/// Whether a severity text names a debug level.
pub fn debug_level(severity: &str) -> bool {
    let s = severity.trim().to_ascii_lowercase();
    ["debug", "trace", "dbg", "trc", "verbose", "fine"]
        .iter()
        .any(|p| s.starts_with(p))
}

/// Whether a log line carries a debug-level tag in its first tokens, as
/// plain-text formats write it: `DEBUG …`, `[DEBUG]`, `level=debug`,
/// `"level":"debug"`, a syslog priority `<7>` (any facility), a glog/klog
/// `D1201` prefix. A bare lower-case word is not a tag (`trace exported`).
pub fn debug_tagged(line: &str) -> bool {
    line.split_whitespace().take(3).any(|token| {
        let structured = token.contains(['=', ':', '[', '<', '{']);
        if let Some(priority) = token
            .strip_prefix('<')
            .and_then(|t| t.split_once('>'))
            .and_then(|(n, _)| n.parse::<u32>().ok())
        {
            return priority % 8 == 7;
        }
        if token.len() == 5
            && token.starts_with('D')
            && token[1..].bytes().all(|b| b.is_ascii_digit())
        {
            return true;
        }
        token
            .split([
                '=', ':', '"', '\'', '[', ']', '(', ')', '{', '}', '<', '>', ',',
            ])
            .any(|part| {
                let upper = !part.is_empty() && part.bytes().all(|b| b.is_ascii_uppercase());
                (upper || structured) && debug_level(part) && part.len() <= 7
            })
    })
}

/// Whether the event type is logged at a debug level: its severity says
/// so, or every example line carries a debug tag.
fn at_debug_level(event: &EventType) -> bool {
    debug_level(&event.severity)
        || (!event.examples.is_empty() && event.examples.iter().all(|e| debug_tagged(e)))
}

/// The keep for `kind` and why, given the event type's rate per edge.
fn choose_keep(kind: &str, event: &EventType, per_edge_per_second: f64, edges: u32) -> Keep {
    match kind {
        kind::NOISY_LOGS => Keep {
            keep: SAMPLE,
            removal: Removal::Fraction(1.0 - SAMPLE_KEPT),
            why: "The classifier judged its records of mixed value, so the policy keeps a 10% \
                  sample rather than dropping them."
                .into(),
        },
        kind::DEBUG_LOGS if at_debug_level(event) => Keep {
            keep: "none",
            removal: Removal::All,
            why: format!(
                "Its records are logged at a debug level ({}), so the policy drops them, as \
                 running the service at INFO would.",
                if debug_level(&event.severity) {
                    format!("severity {}", event.severity)
                } else {
                    "tagged in the line".to_owned()
                }
            ),
        },
        kind::DEBUG_LOGS if per_edge_per_second >= RATE_LIMIT_FROM_PER_EDGE => Keep {
            keep: RATE_LIMIT,
            removal: Removal::Rate {
                per_second: RATE_LIMIT_PER_SECOND,
                edges,
            },
            why: format!(
                "It reads as debug output but is not logged at a debug level, and it comes at \
                 about {per_edge_per_second:.0} records a second per edge (at least \
                 {RATE_LIMIT_FROM_PER_EDGE:.0}): the policy keeps at most 1 a second per edge, \
                 which caps floods and bursts whatever their size while showing it still \
                 happens."
            ),
        },
        kind::DEBUG_LOGS => Keep {
            keep: SAMPLE,
            removal: Removal::Fraction(1.0 - SAMPLE_KEPT),
            why: format!(
                "It reads as debug output but is not logged at a debug level, and it comes \
                 steadily at about {per_edge_per_second:.2} records a second per edge (below \
                 {RATE_LIMIT_FROM_PER_EDGE:.0}): the policy keeps a 10% sample, which keeps \
                 its shape over time."
            ),
        },
        _ => Keep {
            keep: "none",
            removal: Removal::All,
            why: "Such records tell nothing the service's metrics and its other logs do not, \
                  so the policy drops them."
                .into(),
        },
    }
}

struct Keep {
    keep: &'static str,
    removal: Removal,
    why: String,
}

fn title(kind: &str, service: &str, template: &str) -> String {
    let what = match kind {
        kind::DEBUG_LOGS => "Debug logs",
        kind::HEALTH_CHECK_LOGS => "Health-check logs",
        kind::SYNTHETIC_LOGS => "Synthetic-traffic logs",
        kind::BOT_LOGS => "Bot-traffic logs",
        kind::DUPLICATE_LOGS => "Duplicate logs",
        _ => "Noisy logs",
    };
    format!("{what} in {service}: `{}`", short(template))
}

pub(super) fn detect(ctx: &Ctx, event: &ClassifiedEvent) -> Option<Candidate> {
    let c = ctx.confident(event)?;
    let kind = kind_of(c)?;
    let volume = ctx.volume(event, Signal::Log)?;
    let e = &event.event;
    let edges = ctx
        .inventory
        .volume
        .edges_reporting
        .max(e.edges.len() as u32)
        .max(1);
    let per_edge = volume.records_per_day / 86_400.0 / f64::from(edges);
    let keep = choose_keep(kind, e, per_edge, edges);
    let estimate = estimate::estimate(volume, keep.removal, 0.0, ctx.prices);
    let severity = cost_severity(ctx, estimate.cost_per_month);
    let others = ctx.others(event, Signal::Log);
    let matched = matcher::log_match(e, &others);

    let mut summary = format!(
        "{} classified `{}` as {} (verdict {}, confidence {:.2}): {}. It makes up {:.1}% of \
         the service's log records: {}.",
        if c.classifier.is_empty() {
            "The classifier"
        } else {
            c.classifier.as_str()
        },
        short(&e.name),
        c.category,
        c.verdict,
        c.confidence,
        c.rationale.trim_end_matches('.'),
        volume.share * 100.0,
        volume_clause(
            estimate::round(volume.records_per_day),
            estimate::round(volume.bytes_per_day),
            estimate::cost_per_month(estimate::round(volume.bytes_per_day), ctx.prices)
        ),
    );
    let mut evidence = event_evidence(event, &volume, e.name.clone());
    let recommended = match &matched {
        Ok(m) => {
            summary.push_str(&format!(
                " {} The policy (keep `{}`) selects {}; it removes about {} records/day.",
                keep.why, keep.keep, m.described, estimate.records_per_day
            ));
            evidence.notes.push(format!("matcher: {}", m.described));
            let rec = Recommendation {
                kind,
                service: ctx.service(),
                subject: &e.fingerprint,
                name: format!("{} `{}` ({})", verb(keep.keep), short(&e.name), c.category),
                why: keep.why.clone(),
            };
            Some(rec.log(m.matchers.clone(), keep.keep, None))
        }
        Err(why) => {
            summary.push_str(&format!(" {}", keep.why));
            summary.push_str(&no_policy(&format!(
                "no matcher could be checked to select exactly these records ({why})"
            )));
            None
        }
    };
    evidence.notes.push(format!(
        "volume: {:.2}% of the service's sampled log records ({} of {}){}",
        volume.share * 100.0,
        e.count,
        ctx.log_totals.count,
        if ctx.inventory.volume.log_records_per_day > 0.0 {
            " applied to the log volume its edges reported".to_owned()
        } else {
            ", no edge reported volume: the sample's own rate stands in".to_owned()
        }
    ));
    let finding = Finding {
        kind,
        domain: if kind == kind::NOISY_LOGS {
            domain::SIGNAL_QUALITY
        } else {
            domain::COST
        },
        severity: severity.as_str(),
        title: title(kind, ctx.service(), &e.name),
        summary,
        service: ctx.service().to_owned(),
        subject: e.fingerprint.clone(),
        evidence,
        provenance: ctx.provenance(
            kind,
            vec![format!(
                "debug_rate_limit_from_per_edge_per_second={RATE_LIMIT_FROM_PER_EDGE}"
            )],
            Some((c, event.run_id)),
            super::sorted_unique(e.edges.iter().cloned()),
        ),
        estimate,
        recommended,
        absorbed: Vec::new(),
    };
    Some(Candidate {
        finding,
        rank: rank(kind),
    })
}

fn verb(keep: &str) -> &'static str {
    match keep {
        "none" => "Drop",
        RATE_LIMIT => "Rate-limit",
        _ => "Sample",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_levels() {
        for s in ["DEBUG", "debug", "Trace", "DEBUG2", "dbg", "VERBOSE"] {
            assert!(debug_level(s), "{s}");
        }
        for s in ["INFO", "", "WARN", "error", "notice"] {
            assert!(!debug_level(s), "{s}");
        }
    }

    #[test]
    fn debug_tags_in_plain_text() {
        for line in [
            "DEBUG cache miss",
            "2026-01-01T00:00:00Z DEBUG cache miss",
            "level=debug msg=x",
            "[DEBUG] x",
            "[main] TRACE x",
            r#"{"level":"debug","msg":"x"}"#,
            "<7>Jan 1 x",
            "<15>Jan 1 x",
            "D1201 12:00:00.000000 1 x.go:1] x",
        ] {
            assert!(debug_tagged(line), "{line}");
        }
        for line in [
            "trace exported to collector",
            "INFO debug endpoint enabled later in the line",
            "<6>Jan 1 x",
            "Done 1201 items",
            "DEBUGGING is fun",
        ] {
            assert!(!debug_tagged(line), "{line}");
        }
        let tagged = EventType {
            severity: "INFO".into(),
            examples: vec!["DEBUG a".into(), "DEBUG b".into()],
            ..Default::default()
        };
        assert_eq!(choose_keep(kind::DEBUG_LOGS, &tagged, 0.1, 1).keep, "none");
    }

    #[test]
    fn the_keep_follows_the_documented_rule() {
        let at = |severity: &str| EventType {
            severity: severity.into(),
            ..Default::default()
        };
        assert_eq!(
            choose_keep(kind::DEBUG_LOGS, &at("DEBUG"), 500.0, 2).keep,
            "none"
        );
        assert_eq!(
            choose_keep(kind::DEBUG_LOGS, &at("INFO"), 10.0, 2).keep,
            "1/s"
        );
        assert_eq!(
            choose_keep(kind::DEBUG_LOGS, &at("INFO"), 9.99, 2).keep,
            "10%"
        );
        assert_eq!(choose_keep(kind::DEBUG_LOGS, &at(""), 0.1, 2).keep, "10%");
        // Mixed never drops, whatever the level or the rate.
        for (sev, rate) in [("DEBUG", 500.0), ("INFO", 0.1)] {
            let k = choose_keep(kind::NOISY_LOGS, &at(sev), rate, 1);
            assert_eq!(k.keep, "10%");
            assert!(!matches!(k.removal, Removal::All));
        }
        for kind in [
            kind::HEALTH_CHECK_LOGS,
            kind::BOT_LOGS,
            kind::SYNTHETIC_LOGS,
            kind::DUPLICATE_LOGS,
        ] {
            assert_eq!(choose_keep(kind, &at("INFO"), 1.0, 1).keep, "none");
        }
    }

    #[test]
    fn only_waste_and_mixed_raise_findings() {
        let c = |verdict: &str, category: &str| Classification {
            verdict: verdict.into(),
            category: category.into(),
            ..Default::default()
        };
        assert_eq!(
            kind_of(&c("waste", "health_check")),
            Some(kind::HEALTH_CHECK_LOGS)
        );
        assert_eq!(kind_of(&c("mixed", "debug_noise")), Some(kind::NOISY_LOGS));
        assert_eq!(kind_of(&c("keep", "debug_noise")), None);
        assert_eq!(kind_of(&c("unknown", "unknown")), None);
        assert_eq!(kind_of(&c("waste", "business_event")), None);
    }
}

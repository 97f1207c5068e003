//! Secrets and personal data in log records: one compliance finding per
//! field (`body`, `attribute:<key>`) where the edges' recognisers flagged
//! values, with a policy that keeps every record and redacts those values.
//!
//! Kinds raised, by severity: secrets and card numbers (`credential`,
//! `api_key`, `bearer_token`, `jwt`, `url_credentials`, `card_number`) are
//! high: anyone reading the logs can use them. Personal data (`email`,
//! `phone_number`) is medium. `ip_address` raises nothing: a client
//! address in a request log is what rate limiting, abuse handling and
//! incident work read, the edges already keep it out of the control plane,
//! and redacting it everywhere would blind them; a field full of IPs that
//! must go is a decision for a person, not a detector.
//!
//! Each kind gets an RE2 redaction that keeps what is safe and useful: an
//! e-mail keeps its domain (`<redacted>@example.com`), a card its last four
//! digits, a URL its scheme and host, an auth header its scheme, a
//! `password=` its key. A value the recognisers flagged as a credential in
//! an attribute is the attribute's whole value, so that attribute is
//! replaced whole. The policy matches only records whose field holds such a
//! value (the kinds' patterns as one regex), so its hits count the records
//! it rewrites.
//!
//! The patterns cannot run the recognisers' checksums (Luhn for cards,
//! key-likeness for API keys), so they are wider: any run of 13 to 19
//! digits is redacted as a card, any 32-character token as a key. In a
//! field where such values were found that errs on the safe side.

use std::collections::{BTreeMap, BTreeSet};

use tero_proto::controlplane::{EventType, SensitiveFinding};
use tero_proto::policy::{LogField, LogMatcher, LogRedact, LogTransform, log_matcher, log_redact};

use super::super::{Finding, Severity, domain};
use super::estimate::{self, Removal, Signal, Volume};
use super::matcher::{attribute_matcher, path};
use super::recommend::Recommendation;
use super::{Candidate, ClassifiedEvent, Ctx, kind, no_policy, sorted_unique};

/// Recognised kinds that raise a finding, and their severity.
pub fn severity_of(kind: &str) -> Option<Severity> {
    match kind {
        "credential" | "api_key" | "bearer_token" | "jwt" | "url_credentials" | "card_number" => {
            Some(Severity::High)
        }
        "email" | "phone_number" => Some(Severity::Medium),
        _ => None,
    }
}

/// A redaction: what finds the value, what replaces it.
pub struct Rule {
    /// Finds the values (RE2); also what the policy matches.
    pub find: &'static str,
    /// The regex the redaction runs, with the groups `replacement` keeps.
    pub regex: &'static str,
    pub replacement: &'static str,
    pub words: &'static str,
}

pub fn rule(kind: &str) -> Option<Rule> {
    Some(match kind {
        "email" => Rule {
            find: r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
            regex: r"[A-Za-z0-9._%+-]+@([A-Za-z0-9.-]+\.[A-Za-z]{2,})",
            replacement: "<redacted>@${1}",
            words: "e-mail addresses (the domain is kept)",
        },
        "card_number" => Rule {
            find: r"\b[0-9](?:[ -]?[0-9]){12,18}\b",
            regex: r"\b[0-9](?:[ -]?[0-9]){8,14}[ -]?([0-9]{4})\b",
            replacement: "<card ****${1}>",
            words: "card numbers (the last four digits are kept)",
        },
        "jwt" => Rule {
            find: r"eyJ[A-Za-z0-9_=-]+\.[A-Za-z0-9_=-]+(?:\.[A-Za-z0-9_=-]*)?",
            regex: r"eyJ[A-Za-z0-9_=-]+\.[A-Za-z0-9_=-]+(?:\.[A-Za-z0-9_=-]*)?",
            replacement: "<jwt>",
            words: "JSON Web Tokens",
        },
        "bearer_token" => Rule {
            find: r"(?i)\b(?:bearer|basic|digest)\s+[A-Za-z0-9._~+/=-]{6,}",
            regex: r"(?i)\b(bearer|basic|digest)\s+[A-Za-z0-9._~+/=-]{6,}",
            replacement: "${1} <redacted>",
            words: "bearer and basic credentials (the scheme is kept)",
        },
        "url_credentials" => Rule {
            find: r"://[^/\s:@]+:[^/\s@]+@",
            regex: r"(://)[^/\s:@]+:[^/\s@]+@",
            replacement: "${1}<redacted>@",
            words: "credentials in URLs (scheme and host are kept)",
        },
        "credential" => Rule {
            find: r#"(?i)(?:password|passwd|pwd|pass|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|client[_-]?secret|credentials?|authorization|auth|session[_-]?id|sessionid|cookie)["']?\s*[=:]\s*["']?[^\s"'&,;}\]]+"#,
            regex: r#"(?i)((?:password|passwd|pwd|pass|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|client[_-]?secret|credentials?|authorization|auth|session[_-]?id|sessionid|cookie)["']?\s*[=:]\s*["']?(?:(?:bearer|basic|digest|token)\s+)?)[^\s"'&,;}\]]+"#,
            replacement: "${1}<redacted>",
            words: "values of credential-like keys (the key is kept)",
        },
        "api_key" => Rule {
            find: r"[A-Za-z0-9+/_=-]{32,}",
            regex: r"([A-Za-z0-9]{4})[A-Za-z0-9+/_=-]{28,}",
            replacement: "${1}<redacted>",
            words: "long key-like tokens (the first four characters are kept)",
        },
        "phone_number" => Rule {
            find: r"\+[0-9][0-9 ().-]{6,}[0-9]",
            regex: r"\+[0-9][0-9 ().-]{6,}[0-9]",
            replacement: "<phone>",
            words: "phone numbers",
        },
        _ => return None,
    })
}

/// A field location as a redact selector, and as a matcher selector.
enum Location {
    Body,
    Attribute(String),
}

impl Location {
    fn parse(location: &str) -> Option<Location> {
        if location == "body" {
            return Some(Location::Body);
        }
        location
            .strip_prefix("attribute:")
            .filter(|k| !k.is_empty())
            .map(|k| Location::Attribute(k.to_owned()))
    }

    fn redact_field(&self) -> log_redact::Field {
        match self {
            Location::Body => log_redact::Field::LogField(LogField::Body as i32),
            Location::Attribute(k) => log_redact::Field::LogAttribute(path(k)),
        }
    }

    fn matcher(&self, m: log_matcher::Match) -> LogMatcher {
        match self {
            Location::Body => LogMatcher {
                field: Some(log_matcher::Field::LogField(LogField::Body as i32)),
                r#match: Some(m),
                ..Default::default()
            },
            Location::Attribute(k) => attribute_matcher(k, m),
        }
    }
}

/// The findings of one location, per event type.
type ByLocation<'a> = BTreeMap<String, Vec<(&'a ClassifiedEvent, Vec<&'a SensitiveFinding>)>>;

pub(super) fn detect(ctx: &Ctx) -> Vec<Candidate> {
    let mut by_location: ByLocation = BTreeMap::new();
    for event in &ctx.logs {
        let mut here: BTreeMap<&str, Vec<&SensitiveFinding>> = BTreeMap::new();
        for f in &event.event.sensitive {
            if severity_of(&f.kind).is_some() && f.records > 0 {
                here.entry(f.location.as_str()).or_default().push(f);
            }
        }
        for (location, mut findings) in here {
            findings.sort_by(|a, b| a.kind.cmp(&b.kind).then(b.records.cmp(&a.records)));
            by_location
                .entry(location.to_owned())
                .or_default()
                .push((event, findings));
        }
    }
    by_location
        .into_iter()
        .filter_map(|(location, events)| finding(ctx, &location, &events))
        .collect()
}

fn finding(
    ctx: &Ctx,
    location: &str,
    events: &[(&ClassifiedEvent, Vec<&SensitiveFinding>)],
) -> Option<Candidate> {
    let place = Location::parse(location)?;
    let kinds: BTreeSet<&str> = events
        .iter()
        .flat_map(|(_, fs)| fs.iter().map(|f| f.kind.as_str()))
        .collect();
    let severity = kinds
        .iter()
        .filter_map(|k| severity_of(k))
        .max()
        .unwrap_or(Severity::Medium);
    // Records rewritten: per event type, the records of its most frequent
    // kind here (kinds can share records, so their sum could overcount).
    let mut volume = Volume::ZERO;
    let mut measured = false;
    for (event, fs) in events {
        let e: &EventType = &event.event;
        let records = fs.iter().map(|f| f.records).max().unwrap_or(0).min(e.count);
        let bytes = if e.count == 0 {
            0
        } else {
            (e.bytes as f64 * records as f64 / e.count as f64) as u64
        };
        if let Some(v) = estimate::part_of(
            e,
            records,
            bytes,
            Signal::Log,
            ctx.log_totals,
            &ctx.inventory.volume,
        ) {
            volume = volume.plus(v);
            measured = true;
        }
    }
    if !measured {
        volume.confidence = estimate::LOW;
    }
    let estimate = estimate::estimate(volume, Removal::Nothing, 0.0, ctx.prices);

    let names: Vec<&str> = kinds.iter().map(|k| words(k)).collect();
    let whole_value = matches!(place, Location::Attribute(_)) && kinds.contains("credential");
    let rules: Vec<(&str, Rule)> = kinds
        .iter()
        .filter_map(|k| rule(k).map(|r| (*k, r)))
        .collect();
    let (matcher, redact, how) = if whole_value {
        (
            place.matcher(log_matcher::Match::Exists(true)),
            vec![LogRedact {
                field: Some(place.redact_field()),
                replacement: "<redacted>".into(),
                regex: None,
            }],
            format!(
                "replaces the whole value of `{}` (a credential-like key) with `<redacted>`",
                location.trim_start_matches("attribute:")
            ),
        )
    } else {
        let find = rules
            .iter()
            .map(|(_, r)| format!("(?:{})", r.find))
            .collect::<Vec<_>>()
            .join("|");
        (
            place.matcher(log_matcher::Match::Regex(find)),
            rules
                .iter()
                .map(|(_, r)| LogRedact {
                    field: Some(place.redact_field()),
                    replacement: r.replacement.into(),
                    regex: Some(r.regex.into()),
                })
                .collect(),
            format!(
                "redacts {}",
                rules
                    .iter()
                    .map(|(_, r)| r.words)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    };

    let mut sensitive: Vec<SensitiveFinding> = events
        .iter()
        .flat_map(|(_, fs)| fs.iter().map(|f| (*f).clone()))
        .collect();
    sensitive.sort_by(|a, b| {
        a.kind
            .cmp(&b.kind)
            .then(b.records.cmp(&a.records))
            .then(a.example.cmp(&b.example))
    });
    let templates: Vec<String> = events
        .iter()
        .map(|(e, _)| format!("`{}`", super::short(&e.event.name)))
        .collect();
    let edges = sorted_unique(
        events
            .iter()
            .flat_map(|(e, _)| e.event.edges.iter().cloned()),
    );
    let example_records: Vec<String> = sorted_unique(
        sensitive
            .iter()
            .map(|f| f.example.clone())
            .filter(|x| !x.is_empty()),
    )
    .into_iter()
    .take(super::MAX_EXAMPLES)
    .collect();
    let summary = format!(
        "The edges' recognisers found {} in the {} of {} log event type(s) of {} ({}): \
         about {} records/day carry them. The policy keeps every record and {}; nothing is \
         dropped.{}",
        names.join(", "),
        if location == "body" {
            "body".to_owned()
        } else {
            format!("attribute `{}`", location.trim_start_matches("attribute:"))
        },
        events.len(),
        ctx.service(),
        templates
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        estimate.records_per_day,
        how,
        if measured {
            String::new()
        } else {
            " (No volume is measurable for these event types yet.)".to_owned()
        }
    );
    let evidence = tero_proto::controlplane::Evidence {
        example_records,
        edges: edges.clone(),
        records_per_day: estimate.records_per_day,
        bytes_per_day: estimate::round(volume.bytes_per_day),
        volume_share: volume.share,
        sensitive,
        notes: events
            .iter()
            .map(|(e, _)| format!("event type {}: `{}`", e.event.fingerprint, e.event.name))
            .collect(),
        ..Default::default()
    };
    let subject = location.to_owned();
    let rec = Recommendation {
        kind: kind::SENSITIVE_LOG_DATA,
        service: ctx.service(),
        subject: &subject,
        name: format!("Redact {} in log {}", names.join(", "), location),
        why: format!("the policy {how}; nothing is dropped."),
    };
    let recommended = if redact.is_empty() {
        None
    } else {
        Some(rec.log(
            vec![matcher],
            "all",
            Some(LogTransform {
                redact,
                ..Default::default()
            }),
        ))
    };
    let summary = if recommended.is_none() {
        summary + &no_policy("no redaction is known for these kinds")
    } else {
        summary
    };
    Some(Candidate {
        finding: Finding {
            kind: kind::SENSITIVE_LOG_DATA,
            domain: domain::COMPLIANCE,
            severity: severity.as_str(),
            title: format!(
                "Sensitive data in log {} of {}: {}",
                location,
                ctx.service(),
                kinds.iter().copied().collect::<Vec<_>>().join(", ")
            ),
            summary,
            service: ctx.service().to_owned(),
            subject,
            evidence,
            provenance: ctx.provenance(
                kind::SENSITIVE_LOG_DATA,
                vec![format!(
                    "kinds={}",
                    [
                        "api_key",
                        "bearer_token",
                        "card_number",
                        "credential",
                        "email",
                        "jwt",
                        "phone_number",
                        "url_credentials"
                    ]
                    .join(",")
                )],
                None,
                edges,
            ),
            estimate,
            recommended,
            absorbed: Vec::new(),
        },
        rank: 0,
    })
}

fn words(kind: &str) -> &'static str {
    match kind {
        "email" => "e-mail addresses",
        "card_number" => "card numbers",
        "jwt" => "JSON Web Tokens",
        "bearer_token" => "bearer tokens",
        "url_credentials" => "credentials in URLs",
        "credential" => "credentials",
        "api_key" => "API keys",
        "phone_number" => "phone numbers",
        _ => "sensitive values",
    }
}

//! Matchers for log records of one event type, built from what is stored
//! about it and checked against its examples before anything is
//! recommended.
//!
//! **Body regex.** A template is the masked, generalised, redacted body
//! (`tero_sdk::templates`): tokens joined by single spaces, placeholders
//! where values vary. [`body_regex`] turns it back into an RE2 pattern
//! anchored at both ends: literals escaped, whitespace between tokens
//! `\s+` (`\s*` after a comma of a JSON body, which the tokenizer splits
//! there), and each placeholder a pattern confined to one token that
//! accepts both the raw values it stands for (what the edge sees) and the
//! placeholders redaction leaves in stored examples (what the check sees):
//! `<num>` accepts `12ms` and `<card>`, `<ip>` accepts `10.0.0.1:80` and
//! `<ip>:80`. Typed placeholders have bounded shapes (a UUID is 36
//! characters, a number at most 48 and a unit), cheap enough that a full
//! 128-token line of them stays within the engine's regex budget; `<*>`
//! and `<redacted>` accept any token, a quoted one included, or within
//! quotes any text up to the closing quote. A 128-token template ends in a `<*>` that stands for the
//! rest of the line, which becomes `(?s:.*)`. RE2 (and the sdk's engine)
//! match in linear time, so no pattern can be made slow by its input.
//!
//! Stored examples are cut at 512 bytes (marked `…`). When one is, the end
//! of the line cannot be checked, so the pattern covers the longest prefix
//! of the template (in tokens) that every example matches, followed by a
//! token boundary, and stays anchored at the start.
//!
//! **The check** ([`Probe`]) compiles the candidate with the sdk engine the
//! edges run and evaluates the examples as log bodies: the matcher must
//! match every example of the event type and no example of the service's
//! other log event types. A template with fewer than three literal letters
//! (`<*> <num>`) is not specific enough on its own, whatever the check says:
//! the examples are a handful of lines.
//!
//! **Attributes.** When the body is not enough, an attribute that every
//! sampled record carried with one single value (`http.route: /healthz`)
//! can narrow it or replace it. Its check uses the attribute profiles: the
//! other event types must be known not to carry that value (no record with
//! the key, or a complete list of values without it).

use std::sync::Arc;

use tero_proto::controlplane::{AttributeProfile, EventType};
use tero_proto::policy::{
    AttributePath, LogField, LogMatcher, LogTarget, Policy, log_matcher, policy::Target,
};
use tero_sdk::Engine;
use tero_sdk::engine::{Decision, FieldValue, LogSelector, LogView, LogViewMut, StatsRegistry};
use tero_sdk::templates::MAX_TOKENS;

use super::super::recommend::regex_escape;

/// Literal letters a body template needs to identify its lines alone.
pub const MIN_LITERAL_LETTERS: usize = 3;
/// What marks a stored example as cut (`tero_sdk::templates` examples).
const CUT_MARK: char = '…';

/// Placeholders redaction leaves in stored examples, wherever a template
/// has a typed placeholder: `[<ip>]:443`, `<card>`, `<redacted>`.
const REDACTED_ANY: &str = r"\[?<(?:redacted|jwt|email|card|phone|ip)>\]?(?::[0-9]{1,5})?";
/// Any token outside quotes: non-space characters, or quoted spans with
/// their spaces.
const ANY_TOKEN: &str = r#"(?:"(?:[^"\\]|\\.)*"|\S)"#;
/// Any text inside a quoted span, up to its closing quote.
const ANY_QUOTED: &str = r#"(?:[^"\\]|\\.)"#;

/// The raw shape of each typed placeholder of `tero_sdk::templates`.
fn raw_shape(placeholder: &str) -> Option<&'static str> {
    Some(match placeholder {
        "<num>" => r"[-+]?\.?[0-9][0-9A-Za-z.%+-]{0,47}(?:µs)?",
        "<hex>" => r"(?:0[xX])?[0-9A-Fa-f]+",
        "<uuid>" => r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}",
        "<ip>" => r"[0-9A-Fa-f:.\[\]/%]{2,64}",
        "<email>" => r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]+",
        "<ts>" => r"[0-9][0-9A-Za-z:./,+_-]{0,63}",
        "<b64>" | "<jwt>" => r"[A-Za-z0-9+/=_.-]+",
        "<card>" => r"[0-9][0-9 -]{11,36}[0-9]",
        "<phone>" => r"\+[0-9][0-9 ().-]{6,30}[0-9]",
        _ => return None,
    })
}

/// Every placeholder a template may hold.
const PLACEHOLDERS: [&str; 12] = [
    "<*>",
    "<redacted>",
    "<num>",
    "<hex>",
    "<uuid>",
    "<ip>",
    "<email>",
    "<ts>",
    "<b64>",
    "<jwt>",
    "<card>",
    "<phone>",
];

/// True when `value` holds a placeholder: a redacted or masked value that
/// an exact matcher cannot name.
pub fn has_placeholder(value: &str) -> bool {
    PLACEHOLDERS.iter().any(|p| value.contains(p))
}

/// A body pattern and how specific it is.
#[derive(Debug, Clone, PartialEq)]
pub struct BodyRegex {
    pub pattern: String,
    /// ASCII letters outside placeholders.
    pub literal_letters: usize,
    /// Tokens the pattern covers.
    pub tokens: usize,
    /// Tokens of the template.
    pub template_tokens: usize,
}

/// The anchored pattern of `template`, or of its first `prefix` tokens
/// (followed by a token boundary) when given.
pub fn body_regex(template: &str, prefix: Option<usize>) -> BodyRegex {
    // The tokenizer splits on ASCII whitespace only; other spaces are text.
    let template = template.trim_matches(|c: char| c.is_ascii_whitespace());
    let json = template.starts_with('{');
    let template_tokens = count_tokens(template);
    let limit = prefix.unwrap_or(usize::MAX).min(template_tokens);
    let truncated_tail = template_tokens >= MAX_TOKENS && template.ends_with(" <*>");
    let mut out = String::from(r"^\s*");
    let mut letters = 0;
    let mut tokens = 1;
    let mut in_quote = false;
    let mut prev: Option<char> = None;
    let mut rest = template;
    let mut complete = true;
    while let Some(c) = rest.chars().next() {
        if c.is_ascii_whitespace() {
            let run = rest.len()
                - rest
                    .trim_start_matches(|c: char| c.is_ascii_whitespace())
                    .len();
            if !in_quote {
                if prefix.is_some() && tokens == limit {
                    complete = false;
                    break;
                }
                tokens += 1;
                if truncated_tail && tokens == template_tokens {
                    out.push_str(r"\s+(?s:.*)");
                    rest = "";
                    break;
                }
            }
            out.push_str(if json && !in_quote && prev == Some(',') {
                r"\s*"
            } else {
                r"\s+"
            });
            prev = Some(' ');
            rest = &rest[run..];
            continue;
        }
        if let Some(p) = PLACEHOLDERS.iter().find(|p| rest.starts_with(**p)) {
            match *p {
                "<*>" if in_quote => out.push_str(&format!("{ANY_QUOTED}*")),
                "<*>" => out.push_str(&format!("{ANY_TOKEN}*")),
                "<redacted>" if in_quote => out.push_str(&format!("{ANY_QUOTED}+")),
                "<redacted>" => out.push_str(&format!("{ANY_TOKEN}+")),
                other => {
                    let shape = raw_shape(other).unwrap_or(r"\S+");
                    out.push_str(&format!("(?:{shape}|{REDACTED_ANY})"));
                }
            }
            prev = Some('>');
            rest = &rest[p.len()..];
            continue;
        }
        if c == '"' && !escaped(template, template.len() - rest.len()) {
            in_quote = !in_quote;
        }
        if c.is_ascii_alphabetic() {
            letters += 1;
        }
        out.push_str(&regex_escape(c.encode_utf8(&mut [0; 4])));
        prev = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    if complete || rest.is_empty() {
        out.push_str(r"\s*$");
    } else {
        out.push_str(r"(?:\s|$)");
    }
    BodyRegex {
        pattern: out,
        literal_letters: letters,
        tokens: tokens.min(template_tokens),
        template_tokens,
    }
}

/// Whether the byte at `at` follows an odd run of backslashes.
fn escaped(s: &str, at: usize) -> bool {
    s.as_bytes()[..at]
        .iter()
        .rev()
        .take_while(|b| **b == b'\\')
        .count()
        % 2
        == 1
}

/// Tokens of a template: whitespace runs outside quotes separate them.
fn count_tokens(template: &str) -> usize {
    let mut tokens = usize::from(!template.is_empty());
    let mut in_quote = false;
    let mut prev_space = false;
    for (i, c) in template.char_indices() {
        if c == '"' && !escaped(template, i) {
            in_quote = !in_quote;
        }
        let space = c.is_ascii_whitespace() && !in_quote;
        if space && !prev_space {
            tokens += 1;
        }
        prev_space = space;
    }
    tokens
}

/// A log record as the check sees a stored example: a body and the
/// service. Mutations are not needed: the probe never transforms.
struct ExampleRecord<'a> {
    body: &'a str,
}

impl LogView for ExampleRecord<'_> {
    fn get(&self, selector: &LogSelector) -> Option<FieldValue<'_>> {
        match selector {
            LogSelector::Field(LogField::Body) => Some(FieldValue::str(self.body)),
            _ => None,
        }
    }
}

impl LogViewMut for ExampleRecord<'_> {
    fn remove(&mut self, _: &LogSelector) -> bool {
        false
    }
    fn set(&mut self, _: &LogSelector, _: &str, _: bool) -> bool {
        false
    }
    fn rename(&mut self, _: &LogSelector, _: &str, _: bool) -> bool {
        false
    }
}

/// A body matcher compiled by the sdk engine, to evaluate stored examples.
pub struct Probe {
    engine: Engine,
}

impl Probe {
    /// `None` when the pattern does not compile (or exceeds the engine's
    /// budget): such a matcher is never recommended.
    pub fn body(pattern: &str) -> Option<Probe> {
        let policy = Policy {
            id: "probe".into(),
            name: "probe".into(),
            enabled: true,
            target: Some(Target::Log(LogTarget {
                r#match: vec![body_matcher(pattern)],
                keep: "none".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        tero_sdk::policy::validate(&policy).ok()?;
        let engine = Engine::compile(&[policy], &Arc::new(StatsRegistry::new()));
        Some(Probe { engine })
    }

    pub fn matches(&self, body: &str) -> bool {
        let mut record = ExampleRecord { body };
        self.engine.evaluate_log(&mut record) == Decision::Drop
    }
}

pub fn body_matcher(pattern: &str) -> LogMatcher {
    LogMatcher {
        field: Some(log_matcher::Field::LogField(LogField::Body as i32)),
        r#match: Some(log_matcher::Match::Regex(pattern.to_owned())),
        ..Default::default()
    }
}

pub fn attribute_matcher(key: &str, m: log_matcher::Match) -> LogMatcher {
    LogMatcher {
        field: Some(log_matcher::Field::LogAttribute(path(key))),
        r#match: Some(m),
        ..Default::default()
    }
}

pub fn path(key: &str) -> AttributePath {
    AttributePath {
        path: vec![key.to_owned()],
    }
}

fn is_cut(example: &str) -> bool {
    example.ends_with(CUT_MARK)
}

fn uncut(example: &str) -> &str {
    example.strip_suffix(CUT_MARK).unwrap_or(example)
}

/// The body pattern of `event` that matches every one of its examples, or
/// why there is none.
pub fn own_body_regex(event: &EventType) -> Result<(BodyRegex, Probe), String> {
    if event.examples.is_empty() {
        return Err("no example records are stored to check a matcher against".into());
    }
    let full = body_regex(&event.name, None);
    let all_match = |regex: &BodyRegex| -> Option<Probe> {
        let probe = Probe::body(&regex.pattern)?;
        event
            .examples
            .iter()
            .all(|e| probe.matches(uncut(e)))
            .then_some(probe)
    };
    if !event.examples.iter().any(|e| is_cut(e)) {
        if Probe::body(&full.pattern).is_none() {
            return Err(format!(
                "the regex built from the template `{}` is more than the policy engine accepts",
                event.name
            ));
        }
        return match all_match(&full) {
            Some(probe) => Ok((full, probe)),
            None => Err(format!(
                "the template `{}` does not match its own example records",
                event.name
            )),
        };
    }
    // Cut examples: the longest prefix every example holds (matching is
    // monotone in the prefix length, so a binary search finds it).
    let (mut lo, mut hi) = (0usize, full.template_tokens);
    let mut best = None;
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        let regex = body_regex(&event.name, Some(mid));
        match all_match(&regex) {
            Some(probe) => {
                best = Some((regex, probe));
                lo = mid;
            }
            None => hi = mid - 1,
        }
    }
    best.ok_or_else(|| {
        format!(
            "no prefix of the template `{}` matches its own (cut) example records",
            event.name
        )
    })
}

/// An attribute of `event` that every sampled record carried with one
/// value a policy can name exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct SingleValue {
    pub key: String,
    pub value: String,
}

/// Keys tried first, most telling first; then the others by name.
const PREFERRED_KEYS: [&str; 6] = [
    "http.route",
    "url.path",
    "http.target",
    "event.name",
    "logger.name",
    "code.function",
];

/// Attributes of `event` with a single nameable value on every sampled
/// record, preferred keys first.
pub fn single_values(event: &EventType) -> Vec<SingleValue> {
    let mut out: Vec<(usize, SingleValue)> = event
        .attributes
        .iter()
        .filter(|p| {
            !p.key.is_empty()
                && !p.more_values
                && p.examples.len() == 1
                && p.records >= event.count
                && event.count > 0
        })
        .filter_map(|p| {
            let value = &p.examples[0];
            let nameable = !value.is_empty()
                && value.len() < 128
                && !is_cut(value)
                && !has_placeholder(value)
                // Numbers and booleans may be typed values, which string
                // matchers never match.
                && value.parse::<f64>().is_err()
                && value != "true"
                && value != "false";
            nameable.then(|| {
                let rank = PREFERRED_KEYS
                    .iter()
                    .position(|k| *k == p.key)
                    .unwrap_or(PREFERRED_KEYS.len());
                (
                    rank,
                    SingleValue {
                        key: p.key.clone(),
                        value: value.clone(),
                    },
                )
            })
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.key.cmp(&b.1.key)));
    out.into_iter().map(|(_, v)| v).collect()
}

/// Whether records of `other` are known never to carry `key: value`.
pub fn excludes(other: &EventType, single: &SingleValue) -> bool {
    match other
        .attributes
        .iter()
        .find(|p: &&AttributeProfile| p.key == single.key)
    {
        None => true,
        Some(p) => !p.more_values && !p.examples.contains(&single.value),
    }
}

/// The matchers chosen for a log event type and how they were chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct LogMatch {
    pub matchers: Vec<LogMatcher>,
    /// One sentence for summaries and notes.
    pub described: String,
}

/// The matchers that select `event`'s records and none of `others`'
/// examples, or why there are none.
pub fn log_match(event: &EventType, others: &[&EventType]) -> Result<LogMatch, String> {
    let singles = single_values(event);
    let attribute_only = |why: String| -> Result<LogMatch, String> {
        for single in &singles {
            if others.iter().all(|o| excludes(o, single)) {
                return Ok(LogMatch {
                    matchers: vec![exact(single)],
                    described: format!(
                        "records whose `{}` is `{}` ({why}; every sampled record of this \
                         event type carries that one value, and no other event type of the \
                         service does)",
                        single.key, single.value
                    ),
                });
            }
        }
        Err(why)
    };
    let (regex, probe) = match own_body_regex(event) {
        Ok(found) => found,
        Err(why) => return attribute_only(why),
    };
    if regex.literal_letters < MIN_LITERAL_LETTERS {
        return attribute_only(format!(
            "the template `{}` has too little literal text to identify its records",
            event.name
        ));
    }
    let clashing: Vec<&EventType> = others
        .iter()
        .copied()
        .filter(|o| o.examples.iter().any(|e| probe.matches(uncut(e))))
        .collect();
    let prefix = if regex.tokens < regex.template_tokens {
        format!(
            " (its first {} of {} tokens: stored examples are cut)",
            regex.tokens, regex.template_tokens
        )
    } else {
        String::new()
    };
    if clashing.is_empty() {
        return Ok(LogMatch {
            matchers: vec![body_matcher(&regex.pattern)],
            described: format!(
                "bodies matching the template{prefix} as an anchored regex, checked against \
                 the stored examples: all {} of this event type match, none of the {} other \
                 log event types' do",
                event.examples.len(),
                others.len()
            ),
        });
    }
    for single in &singles {
        if clashing.iter().all(|o| excludes(o, single)) {
            return Ok(LogMatch {
                matchers: vec![body_matcher(&regex.pattern), exact(single)],
                described: format!(
                    "bodies matching the template{prefix} as an anchored regex, and `{}` = \
                     `{}` (the regex alone also matches examples of {}; that value tells \
                     them apart)",
                    single.key,
                    single.value,
                    names(&clashing)
                ),
            });
        }
    }
    attribute_only(format!(
        "a regex from the template also matches example records of {}",
        names(&clashing)
    ))
}

fn exact(single: &SingleValue) -> LogMatcher {
    attribute_matcher(&single.key, log_matcher::Match::Exact(single.value.clone()))
}

fn names(events: &[&EventType]) -> String {
    let shown: Vec<String> = events
        .iter()
        .take(3)
        .map(|e| format!("`{}`", e.name))
        .collect();
    let more = events.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use tero_sdk::templates::{Miner, MinerConfig};

    use super::*;

    fn matches(pattern: &str, body: &str) -> bool {
        Probe::body(pattern).expect("compiles").matches(body)
    }

    /// Mines `lines` and returns the single template's text and examples.
    fn mined(lines: &[&str]) -> (String, Vec<String>) {
        let mut miner = Miner::new(MinerConfig::default()).unwrap();
        for l in lines {
            miner.observe("svc", l, None, 0);
        }
        let templates: Vec<_> = miner.templates().collect();
        assert_eq!(templates.len(), 1, "{templates:?}");
        (templates[0].text.clone(), templates[0].examples.clone())
    }

    #[test]
    fn literals_are_escaped_and_the_pattern_is_anchored() {
        let r = body_regex("GET /a.b?x=1 (ok) [x] $5 ^", None);
        assert!(matches(&r.pattern, "GET /a.b?x=1 (ok) [x] $5 ^"));
        assert!(matches(&r.pattern, "  GET   /a.b?x=1 (ok) [x] $5 ^  "));
        assert!(!matches(&r.pattern, "GET /aXb?x=1 (ok) [x] $5 ^"));
        assert!(!matches(&r.pattern, "x GET /a.b?x=1 (ok) [x] $5 ^"));
        assert!(!matches(&r.pattern, "GET /a.b?x=1 (ok) [x] $5 ^ more"));
        assert_eq!(r.tokens, 6);
        assert_eq!(r.literal_letters, 9);
        // Only ASCII whitespace separates tokens, as in the tokenizer.
        let r = body_regex("café\u{a0}au lait", None);
        assert_eq!(r.tokens, 2);
        assert!(matches(&r.pattern, "café\u{a0}au  lait"));
        assert!(!matches(&r.pattern, "café au lait"));
    }

    #[test]
    fn placeholders_match_raw_values_and_redacted_examples() {
        for (template, raw, redacted) in [
            (
                "took <num> for <uuid>",
                "took 12.5ms for 550e8400-e29b-41d4-a716-446655440000",
                "",
            ),
            (
                "login failed for <email> from <ip>",
                "login failed for jane.doe@example.com from 10.1.2.3:5000",
                "login failed for <email> from <ip>:5000",
            ),
            (
                "peer <ip> closed",
                "peer [2001:db8::1]:443 closed",
                "peer [<ip>]:443 closed",
            ),
            ("cache miss key=<hex>", "cache miss key=0x1f2e", ""),
            ("at <ts> done", "at 2024-01-15T10:00:00.123Z done", ""),
            (
                "connect password=<redacted> user=bob",
                "connect password=hunter2 user=bob",
                "connect password=<redacted> user=bob",
            ),
            (
                "token <b64>",
                "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
                "token <jwt>",
            ),
            ("paid <num>", "paid 4111111111111111", "paid <card>"),
            ("user=<*> done", r#"user="jane doe" done"#, "user=bob done"),
            (
                r#"msg="order <*>" id=<num>"#,
                r#"msg="order was placed" id=7"#,
                r#"msg="order placed" id=8"#,
            ),
        ] {
            let r = body_regex(template, None);
            assert!(
                matches(&r.pattern, raw),
                "{template}: raw {raw} / {}",
                r.pattern
            );
            if !redacted.is_empty() {
                assert!(
                    matches(&r.pattern, redacted),
                    "{template}: example {redacted}"
                );
            }
        }
        // A placeholder stays in its token.
        let r = body_regex("took <num> ms", None);
        assert!(!matches(&r.pattern, "took 12 34 ms"));
        assert!(!matches(&r.pattern, "took abc ms"));
    }

    #[test]
    fn json_bodies_may_omit_the_space_after_commas() {
        let (text, examples) = mined(&[
            r#"{"level":"debug","msg":"cache miss","key":"a1b2c3d4e5"}"#,
            r#"{"level":"debug","msg":"cache miss","key":"ffee00112233"}"#,
        ]);
        let r = body_regex(&text, None);
        for e in &examples {
            assert!(matches(&r.pattern, e), "{text} / {e} / {}", r.pattern);
        }
        assert!(!matches(
            &r.pattern,
            r#"{"level":"debug","msg":"cache hit","key":"a1b2c3d4e5"}"#
        ));
    }

    #[test]
    fn mined_templates_match_their_raw_lines() {
        let lines = [
            "2026-01-01T00:00:00Z DEBUG cache miss for key user:42 took 3ms",
            "2026-01-01T00:00:01Z DEBUG cache miss for key user:7 took 12ms",
            "2026-01-01T00:00:02Z DEBUG cache miss for key user:1234 took 0.5ms",
        ];
        let (text, examples) = mined(&lines);
        let r = body_regex(&text, None);
        for l in lines.iter().map(|l| l.to_string()).chain(examples) {
            assert!(matches(&r.pattern, &l), "{text} / {l} / {}", r.pattern);
        }
        assert!(!matches(
            &r.pattern,
            "2026-01-01T00:00:02Z INFO cache miss for key user:1 took 1ms"
        ));
    }

    #[test]
    fn a_prefix_pattern_stops_at_a_token_boundary() {
        let r = body_regex("a b c d", Some(2));
        assert_eq!(r.tokens, 2);
        assert!(matches(&r.pattern, "a b"));
        assert!(matches(&r.pattern, "a b x y"));
        assert!(!matches(&r.pattern, "a bc"));
        assert!(!matches(&r.pattern, "x a b"));
    }

    #[test]
    fn cut_examples_are_checked_on_the_prefix_they_hold() {
        let long = "x".repeat(40);
        let event = EventType {
            name: format!("request done status=<num> path=/a {long} tail=<num>"),
            examples: vec![
                "request done status=200 path=/a xxxx…".into(),
                format!("request done status=500 path=/a {long} tail=3"),
            ],
            ..Default::default()
        };
        let (regex, _) = own_body_regex(&event).unwrap();
        // The cut example holds four whole tokens and a part of the fifth.
        assert_eq!(regex.tokens, 4, "{regex:?}");
        assert!(matches(
            &regex.pattern,
            &format!("request done status=1 path=/a {long} tail=9")
        ));
    }

    #[test]
    fn the_trailing_wildcard_of_a_long_line_takes_the_rest() {
        let body: Vec<String> = (0..200).map(|i| format!("w{i}x")).collect();
        let body = body.join(" ");
        let (text, _) = mined(&[&body]);
        let r = body_regex(&text, None);
        assert!(matches(&r.pattern, &body), "{}", r.pattern);
    }

    #[test]
    fn the_body_must_be_specific_and_tell_event_types_apart() {
        let event = |name: &str, examples: &[&str]| EventType {
            name: name.into(),
            count: 10,
            examples: examples.iter().map(|e| e.to_string()).collect(),
            ..Default::default()
        };
        let health = event(
            "GET /healthz <num>",
            &["GET /healthz 200", "GET /healthz 503"],
        );
        let other = event("GET /orders <num>", &["GET /orders 200"]);
        let m = log_match(&health, &[&other]).unwrap();
        assert_eq!(m.matchers.len(), 1);

        // Too little literal text, and no attribute to fall back on.
        let vague = event("<*> <num>", &["a 1", "b 2"]);
        let err = log_match(&vague, &[&other]).unwrap_err();
        assert!(err.contains("too little literal text"), "{err}");

        // The same body as another event type: an attribute tells them apart.
        let mut probe = event("request done in <num>", &["request done in 3ms"]);
        let mut api = event("request done in <num> ms", &["request done in 3ms"]);
        probe.attributes = vec![AttributeProfile {
            key: "http.route".into(),
            records: 10,
            bytes: 100,
            examples: vec!["/healthz".into()],
            more_values: false,
        }];
        api.attributes = vec![AttributeProfile {
            key: "http.route".into(),
            records: 10,
            bytes: 100,
            examples: vec!["/orders".into(), "/cart".into()],
            more_values: false,
        }];
        let m = log_match(&probe, &[&api]).unwrap();
        assert_eq!(m.matchers.len(), 2, "{m:?}");
        assert!(
            m.described.contains("`http.route` = `/healthz`"),
            "{}",
            m.described
        );

        // An attribute whose values elsewhere are unknown tells nothing.
        api.attributes[0].more_values = true;
        let err = log_match(&probe, &[&api]).unwrap_err();
        assert!(err.contains("also matches example records"), "{err}");
    }

    #[test]
    fn the_largest_templates_stay_within_the_engine_budget() {
        // A full line of one placeholder, as `key=<p>` tokens.
        for (p, value) in [
            ("<num>", "12.5ms"),
            ("<email>", "a@b.example"),
            ("<ip>", "10.0.0.1:80"),
            ("<ts>", "2026-01-01T00:00:00Z"),
            ("<uuid>", "550e8400-e29b-41d4-a716-446655440000"),
            ("<hex>", "0xdeadbeef"),
            ("<b64>", "QUJDREVGR0hJSktMTU5PUA=="),
            ("<*>", "anything"),
            ("<redacted>", "hunter2"),
        ] {
            let event = EventType {
                name: vec![format!("k={p}"); MAX_TOKENS].join(" "),
                count: 1,
                examples: vec![vec![format!("k={value}"); MAX_TOKENS].join(" ")],
                ..Default::default()
            };
            if let Err(why) = own_body_regex(&event) {
                panic!("{p}: {why}");
            }
        }
    }

    #[test]
    fn no_examples_means_no_body_matcher() {
        let event = EventType {
            name: "GET /healthz".into(),
            count: 3,
            ..Default::default()
        };
        assert!(
            log_match(&event, &[])
                .unwrap_err()
                .contains("no example records")
        );
    }

    #[test]
    fn attribute_values_must_be_nameable() {
        let mut event = EventType {
            count: 10,
            ..Default::default()
        };
        let profile = |key: &str, value: &str, records: u64| AttributeProfile {
            key: key.into(),
            records,
            bytes: 0,
            examples: vec![value.into()],
            more_values: false,
        };
        event.attributes = vec![
            profile("zz", "x", 10),
            profile("http.route", "/healthz", 10),
            profile("partial", "/a", 5),
            profile("email", "<email>", 10),
            profile("status", "200", 10),
        ];
        let keys: Vec<String> = single_values(&event).into_iter().map(|s| s.key).collect();
        assert_eq!(keys, ["http.route", "zz"]);
    }
}

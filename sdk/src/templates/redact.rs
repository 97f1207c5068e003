//! Secrets and personal data masked out of example lines and template text
//! before they leave the process.
//!
//! Unlike masking for templates, redaction keeps the line readable (a
//! classifier reads examples) and hides only what must not travel: emails,
//! IP addresses, phone numbers, card numbers, JWTs, credentials after
//! `Bearer`/`Basic`, values of credential-like keys (`password=`,
//! `"api_key":`, `Authorization:`), URL user-info and long random tokens.
//! The shape checks follow the Prometheus inventory's label masking
//! (`prometheus/src/inventory/mask.rs`), applied to free text.
//!
//! It runs a few times per template (its examples and each new text), never
//! per line, so it can afford regular expressions.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use regex::{Captures, Regex, RegexSet};

use super::mask::{is_jwt, truncate};

pub(crate) const REDACTED: &str = "<redacted>";

struct Rules {
    userinfo: Regex,
    credential_key: Regex,
    auth_scheme: Regex,
    jwt: Regex,
    email: Regex,
    card: Regex,
    phone: Regex,
    ipv4: Regex,
    ipv6: Regex,
    long_token: Regex,
    /// The same patterns in one automaton: most text matches none of them,
    /// and one pass tells so instead of ten.
    any: RegexSet,
}

const USERINFO: &str = r"(://)[^/\s:@]+:[^/\s@]+@";
// A credential-like key, its separator and optional quote, and an optional
// auth scheme: the value after them goes.
const CREDENTIAL_KEY: &str = r#"(?i)((?:password|passwd|pwd|pass|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|client[_-]?secret|credentials?|authorization|auth|session[_-]?id|sessionid|cookie)["']?\s*[=:]\s*["']?(?:(?:bearer|basic|digest|token)\s+)?)[^\s"'&,;}\]]+"#;
const AUTH_SCHEME: &str = r"(?i)\b(bearer|basic|digest)\s+[A-Za-z0-9._~+/=-]{6,}";
const JWT: &str = r"eyJ[A-Za-z0-9_=-]{7,}\.[A-Za-z0-9_=-]+(?:\.[A-Za-z0-9_=-]*)?";
const EMAIL: &str = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}";
const CARD: &str = r"\b\d(?:[ -]?\d){12,18}\b";
const PHONE: &str = r"\+\d[\d ().-]{6,}\d";
const IPV4: &str = r"\b\d{1,3}(?:\.\d{1,3}){3}\b";
const IPV6: &str = r"(?i)[0-9a-f]*:[0-9a-f:.]*:[0-9a-f:.]*";
const LONG_TOKEN: &str = r"[A-Za-z0-9+/_=-]{32,}";

fn rules() -> Option<&'static Rules> {
    static RULES: LazyLock<Option<Rules>> = LazyLock::new(|| {
        let re = |p: &str| Regex::new(p).ok();
        Some(Rules {
            userinfo: re(USERINFO)?,
            credential_key: re(CREDENTIAL_KEY)?,
            auth_scheme: re(AUTH_SCHEME)?,
            jwt: re(JWT)?,
            email: re(EMAIL)?,
            card: re(CARD)?,
            phone: re(PHONE)?,
            ipv4: re(IPV4)?,
            ipv6: re(IPV6)?,
            long_token: re(LONG_TOKEN)?,
            any: RegexSet::new([
                USERINFO,
                CREDENTIAL_KEY,
                AUTH_SCHEME,
                JWT,
                EMAIL,
                CARD,
                PHONE,
                IPV4,
                IPV6,
                LONG_TOKEN,
            ])
            .ok()?,
        })
    });
    RULES.as_ref()
}

// The checks behind the shapes, shared by `redact` and `recognise` so the
// two never disagree about what a match is.

fn is_card(m: &str) -> bool {
    crate::pii::card_digits(m).is_some()
}

fn is_phone(m: &str) -> bool {
    let digits = m.bytes().filter(u8::is_ascii_digit).count();
    (8..=15).contains(&digits)
}

fn is_ipv4(m: &str) -> bool {
    m.parse::<Ipv4Addr>().is_ok()
}

/// The length of the IPv6 address a match starts with (trailing `.`/`:`
/// are punctuation, not address), if it is one.
fn ipv6_len(m: &str) -> Option<usize> {
    let trimmed = m.trim_end_matches(['.', ':']);
    trimmed.parse::<Ipv6Addr>().is_ok().then_some(trimmed.len())
}

fn is_key(m: &str) -> bool {
    crate::pii::is_key_like(m.as_bytes())
}

/// `body` with secrets and personal data replaced by placeholders.
pub fn redact(body: &str) -> String {
    let Some(r) = rules() else {
        // The rules are constants; failing to build them is a bug that must
        // not leak data, so nothing of the body goes out.
        return REDACTED.to_owned();
    };
    if !r.any.is_match(body) {
        return body.to_owned();
    }
    let keep_unless = |ok: fn(&str) -> bool, placeholder: &'static str| {
        move |c: &Captures| {
            if ok(&c[0]) {
                placeholder.to_owned()
            } else {
                c[0].to_owned()
            }
        }
    };
    let s = r.userinfo.replace_all(body, format!("${{1}}{REDACTED}@"));
    let s = r
        .credential_key
        .replace_all(&s, format!("${{1}}{REDACTED}"));
    let s = r.auth_scheme.replace_all(&s, format!("${{1}} {REDACTED}"));
    let s = r
        .jwt
        .replace_all(&s, keep_unless(|m| is_jwt(m.as_bytes()), "<jwt>"));
    let s = r.email.replace_all(&s, "<email>");
    let s = r.card.replace_all(&s, keep_unless(is_card, "<card>"));
    let s = r.phone.replace_all(&s, keep_unless(is_phone, "<phone>"));
    let s = r.ipv4.replace_all(&s, keep_unless(is_ipv4, "<ip>"));
    let s = r
        .ipv6
        .replace_all(&s, |c: &Captures| match ipv6_len(&c[0]) {
            Some(len) => format!("<ip>{}", &c[0][len..]),
            None => c[0].to_owned(),
        });
    let s = r.long_token.replace_all(&s, keep_unless(is_key, REDACTED));
    s.into_owned()
}

/// What a recogniser of [`redact`] looks for. The names
/// ([`Sensitive::name`]) are those of `SensitiveFinding.kind` in the
/// control plane's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sensitive {
    Email,
    CardNumber,
    Jwt,
    /// A credential after `Bearer` (alone, or as an `Authorization` value).
    BearerToken,
    /// `user:password@` in a URL.
    UrlCredentials,
    /// The value of a credential-like key (`password=`, `"api_key":`,
    /// `Authorization: Basic …`).
    Credential,
    /// A long random key-like token.
    ApiKey,
    IpAddress,
    PhoneNumber,
}

impl Sensitive {
    pub const ALL: [Sensitive; 9] = [
        Sensitive::Email,
        Sensitive::CardNumber,
        Sensitive::Jwt,
        Sensitive::BearerToken,
        Sensitive::UrlCredentials,
        Sensitive::Credential,
        Sensitive::ApiKey,
        Sensitive::IpAddress,
        Sensitive::PhoneNumber,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Sensitive::Email => "email",
            Sensitive::CardNumber => "card_number",
            Sensitive::Jwt => "jwt",
            Sensitive::BearerToken => "bearer_token",
            Sensitive::UrlCredentials => "url_credentials",
            Sensitive::Credential => "credential",
            Sensitive::ApiKey => "api_key",
            Sensitive::IpAddress => "ip_address",
            Sensitive::PhoneNumber => "phone_number",
        }
    }
}

/// One value a recogniser fired on: its kind and its byte range in the
/// text (the part [`redact`] replaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: Sensitive,
    pub range: std::ops::Range<usize>,
}

/// Which recognisers of [`redact`] fire in `text`, and where, in the
/// order of the text. The same rules, applied in the same order: a value
/// an earlier rule takes (the token after `password=`) is not reported
/// again by a later one (as an API key), as `redact` would have replaced
/// it first. `text` is redacted by `redact` exactly when this is non-empty
/// (the rules cannot be built: everything is redacted, and the whole text
/// is reported as a credential).
pub fn recognise(text: &str) -> Vec<Finding> {
    let mut found: Vec<Finding> = Vec::new();
    let Some(r) = rules() else {
        if !text.is_empty() {
            found.push(Finding {
                kind: Sensitive::Credential,
                range: 0..text.len(),
            });
        }
        return found;
    };
    if !r.any.is_match(text) {
        return found;
    }
    let mut add = |kind: Sensitive, range: std::ops::Range<usize>| {
        if range.is_empty()
            || found
                .iter()
                .any(|f| f.range.start < range.end && range.start < f.range.end)
        {
            return;
        }
        found.push(Finding { kind, range });
    };
    for c in r.userinfo.captures_iter(text) {
        if let (Some(all), Some(scheme)) = (c.get(0), c.get(1)) {
            // `user:password`, between `://` and `@`.
            add(Sensitive::UrlCredentials, scheme.end()..all.end() - 1);
        }
    }
    for c in r.credential_key.captures_iter(text) {
        if let (Some(all), Some(prefix)) = (c.get(0), c.get(1)) {
            let scheme = prefix.as_str().trim_end().to_ascii_lowercase();
            let kind = if scheme.ends_with("bearer") {
                Sensitive::BearerToken
            } else {
                Sensitive::Credential
            };
            add(kind, prefix.end()..all.end());
        }
    }
    for c in r.auth_scheme.captures_iter(text) {
        if let (Some(all), Some(scheme)) = (c.get(0), c.get(1)) {
            let kind = if scheme.as_str().eq_ignore_ascii_case("bearer") {
                Sensitive::BearerToken
            } else {
                Sensitive::Credential
            };
            // The token after the scheme and its blanks.
            let token = all.as_str()[scheme.len()..].trim_start();
            add(kind, all.end() - token.len()..all.end());
        }
    }
    type Rule<'r> = (&'r Regex, Sensitive, fn(&str) -> bool);
    let plain: [Rule<'_>; 5] = [
        (&r.jwt, Sensitive::Jwt, |m| is_jwt(m.as_bytes())),
        (&r.email, Sensitive::Email, |_| true),
        (&r.card, Sensitive::CardNumber, is_card),
        (&r.phone, Sensitive::PhoneNumber, is_phone),
        (&r.ipv4, Sensitive::IpAddress, is_ipv4),
    ];
    for (re, kind, ok) in plain {
        for m in re.find_iter(text) {
            if ok(m.as_str()) {
                add(kind, m.range());
            }
        }
    }
    for m in r.ipv6.find_iter(text) {
        if let Some(len) = ipv6_len(m.as_str()) {
            add(Sensitive::IpAddress, m.start()..m.start() + len);
        }
    }
    for m in r.long_token.find_iter(text) {
        if is_key(m.as_str()) {
            add(Sensitive::ApiKey, m.range());
        }
    }
    found.sort_by_key(|f| f.range.start);
    found
}

/// Whether any recogniser fires in `text`.
pub fn is_sensitive(text: &str) -> bool {
    !recognise(text).is_empty()
}

/// An example as stored: redacted, then cut to `max` bytes.
pub fn example(body: &str, max: usize) -> String {
    // Redact before cutting: a cut could leave half a secret unrecognised.
    let mut s = redact(truncate(body, super::mask::MAX_BODY_BYTES));
    if s.len() > max {
        let keep = truncate(&s, max.saturating_sub('…'.len_utf8())).len();
        s.truncate(keep);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_personal_data_are_masked() {
        for (input, want) in [
            (
                "login failed for jane.doe@example.com from 10.1.2.3:5000",
                "login failed for <email> from <ip>:5000",
            ),
            (
                "peer 2001:db8::1 closed, retry at 10:00:00",
                "peer <ip> closed, retry at 10:00:00",
            ),
            (
                "Authorization: Bearer abcdef0123456789",
                "Authorization: Bearer <redacted>",
            ),
            ("header bearer abcdef0123456789", "header bearer <redacted>"),
            (
                "connect password=hunter2 user=bob",
                "connect password=<redacted> user=bob",
            ),
            (
                r#"{"user":"bob","api_key":"k-1234","db_password":"s3cr3t"}"#,
                r#"{"user":"bob","api_key":"<redacted>","db_password":"<redacted>"}"#,
            ),
            (
                "GET https://admin:pa55@db.internal/x?token=abc&page=2",
                "GET https://<redacted>@db.internal/x?token=<redacted>&page=2",
            ),
            ("paid with 4111 1111 1111 1111 ok", "paid with <card> ok"),
            ("paid with 4111-1111-1111-1111", "paid with <card>"),
            ("call +44 20 7946 0958 now", "call <phone> now"),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                "jwt <jwt>",
            ),
            (
                "key AKIAxyzQ0123456789abcdefGHIJKLmnop used",
                "key <redacted> used",
            ),
        ] {
            assert_eq!(redact(input), want, "{input}");
        }
    }

    #[test]
    fn ordinary_text_is_kept() {
        for input in [
            "order 1234567890123 placed",
            "took 12ms at 2024-01-15T10:00:00Z",
            "request 550e8400-e29b-41d4-a716-446655440000 done",
            "version 1.22.3 of payments-api-deployment-7d4b9c8f6d-x2x4k",
            "tokens=5 author=jane passport=ok",
            "User <num> logged in from <ip>",
            "cache miss key=<hex>",
        ] {
            assert_eq!(redact(input), input);
        }
    }

    #[test]
    fn recognisers_say_what_fired_and_where() {
        let kinds = |text: &str| -> Vec<(&'static str, String)> {
            recognise(text)
                .into_iter()
                .map(|f| (f.kind.name(), text[f.range].to_owned()))
                .collect()
        };
        let owned = |pairs: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
            pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
        };
        for (input, want) in [
            (
                "login failed for jane.doe@example.com from 10.1.2.3:5000",
                owned(&[
                    ("email", "jane.doe@example.com"),
                    ("ip_address", "10.1.2.3"),
                ]),
            ),
            (
                "peer 2001:db8::1 closed",
                owned(&[("ip_address", "2001:db8::1")]),
            ),
            (
                "Authorization: Bearer abcdef0123456789",
                owned(&[("bearer_token", "abcdef0123456789")]),
            ),
            (
                "header bearer abcdef0123456789",
                owned(&[("bearer_token", "abcdef0123456789")]),
            ),
            (
                "Authorization: Basic dXNlcjpwYXNz",
                owned(&[("credential", "dXNlcjpwYXNz")]),
            ),
            (
                "connect password=hunter2 user=bob",
                owned(&[("credential", "hunter2")]),
            ),
            (
                "GET https://admin:pa55@db.internal/x?page=2",
                owned(&[("url_credentials", "admin:pa55")]),
            ),
            (
                "paid with 4111 1111 1111 1111 ok",
                owned(&[("card_number", "4111 1111 1111 1111")]),
            ),
            (
                "call +44 20 7946 0958 now",
                owned(&[("phone_number", "+44 20 7946 0958")]),
            ),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                owned(&[(
                    "jwt",
                    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                )]),
            ),
            (
                "key AKIAxyzQ0123456789abcdefGHIJKLmnop used",
                owned(&[("api_key", "AKIAxyzQ0123456789abcdefGHIJKLmnop")]),
            ),
            // A value the credential rule took is not an API key too.
            (
                "token=AKIAxyzQ0123456789abcdefGHIJKLmnop",
                owned(&[("credential", "AKIAxyzQ0123456789abcdefGHIJKLmnop")]),
            ),
        ] {
            assert_eq!(kinds(input), want, "{input}");
        }
    }

    #[test]
    fn recognise_fires_exactly_where_redact_changes_the_text() {
        let texts = [
            "login failed for jane.doe@example.com",
            "order 1234567890123 placed",
            "took 12ms at 2024-01-15T10:00:00Z",
            "request 550e8400-e29b-41d4-a716-446655440000 done",
            "tokens=5 author=jane passport=ok",
            "User <num> logged in from <ip>",
            "retry at 10:00:00",
            "paid with 4111-1111-1111-1111",
            "secret: s3cr3t",
            "kube-probe/1.29",
            "/users/42/orders",
            "GET https://admin:pa55@db.internal/x",
        ];
        for text in texts {
            assert_eq!(
                is_sensitive(text),
                redact(text) != text,
                "{text}: {:?}",
                recognise(text)
            );
        }
        assert!(recognise("").is_empty());
        let names: Vec<&str> = Sensitive::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "email",
                "card_number",
                "jwt",
                "bearer_token",
                "url_credentials",
                "credential",
                "api_key",
                "ip_address",
                "phone_number"
            ]
        );
    }

    #[test]
    fn examples_are_cut_after_redaction() {
        let body = format!("password=hunter2 {}", "x".repeat(1000));
        let ex = example(&body, 40);
        assert!(ex.starts_with("password=<redacted> "), "{ex}");
        assert!(ex.len() <= 40 && ex.ends_with('…'), "{ex}");
        assert_eq!(example("short", 40), "short");
    }
}

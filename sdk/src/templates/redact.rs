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

use regex::{Captures, Regex};

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
}

fn rules() -> Option<&'static Rules> {
    static RULES: LazyLock<Option<Rules>> = LazyLock::new(|| {
        let re = |p: &str| Regex::new(p).ok();
        Some(Rules {
            userinfo: re(r"(://)[^/\s:@]+:[^/\s@]+@")?,
            // A credential-like key, its separator and optional quote, and
            // an optional auth scheme: the value after them goes.
            credential_key: re(
                r#"(?i)((?:password|passwd|pwd|pass|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|client[_-]?secret|credentials?|authorization|auth|session[_-]?id|sessionid|cookie)["']?\s*[=:]\s*["']?(?:(?:bearer|basic|digest|token)\s+)?)[^\s"'&,;}\]]+"#,
            )?,
            auth_scheme: re(r"(?i)\b(bearer|basic|digest)\s+[A-Za-z0-9._~+/=-]{6,}")?,
            jwt: re(r"eyJ[A-Za-z0-9_=-]{7,}\.[A-Za-z0-9_=-]+(?:\.[A-Za-z0-9_=-]*)?")?,
            email: re(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")?,
            card: re(r"\b\d(?:[ -]?\d){12,18}\b")?,
            phone: re(r"\+\d[\d ().-]{6,}\d")?,
            ipv4: re(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")?,
            ipv6: re(r"(?i)[0-9a-f]*:[0-9a-f:.]*:[0-9a-f:.]*")?,
            long_token: re(r"[A-Za-z0-9+/_=-]{32,}")?,
        })
    });
    RULES.as_ref()
}

/// `body` with secrets and personal data replaced by placeholders.
pub fn redact(body: &str) -> String {
    let Some(r) = rules() else {
        // The rules are constants; failing to build them is a bug that must
        // not leak data, so nothing of the body goes out.
        return REDACTED.to_owned();
    };
    let s = r.userinfo.replace_all(body, format!("${{1}}{REDACTED}@"));
    let s = r
        .credential_key
        .replace_all(&s, format!("${{1}}{REDACTED}"));
    let s = r.auth_scheme.replace_all(&s, format!("${{1}} {REDACTED}"));
    let s = r.jwt.replace_all(&s, |c: &Captures| {
        if is_jwt(c[0].as_bytes()) {
            "<jwt>".to_owned()
        } else {
            c[0].to_owned()
        }
    });
    let s = r.email.replace_all(&s, "<email>");
    let s = r.card.replace_all(&s, |c: &Captures| {
        if crate::pii::card_digits(&c[0]).is_some() {
            "<card>".to_owned()
        } else {
            c[0].to_owned()
        }
    });
    let s = r.phone.replace_all(&s, |c: &Captures| {
        let digits = c[0].bytes().filter(u8::is_ascii_digit).count();
        if (8..=15).contains(&digits) {
            "<phone>".to_owned()
        } else {
            c[0].to_owned()
        }
    });
    let s = r.ipv4.replace_all(&s, |c: &Captures| {
        if c[0].parse::<Ipv4Addr>().is_ok() {
            "<ip>".to_owned()
        } else {
            c[0].to_owned()
        }
    });
    let s = r.ipv6.replace_all(&s, |c: &Captures| {
        let m = c[0].trim_end_matches(['.', ':']);
        if m.parse::<Ipv6Addr>().is_ok() {
            format!("<ip>{}", &c[0][m.len()..])
        } else {
            c[0].to_owned()
        }
    });
    let s = r.long_token.replace_all(&s, |c: &Captures| {
        if crate::pii::is_key_like(c[0].as_bytes()) {
            REDACTED.to_owned()
        } else {
            c[0].to_owned()
        }
    });
    s.into_owned()
}

/// An example as stored: redacted, then cut to `max` bytes.
pub(crate) fn example(body: &str, max: usize) -> String {
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
    fn examples_are_cut_after_redaction() {
        let body = format!("password=hunter2 {}", "x".repeat(1000));
        let ex = example(&body, 40);
        assert!(ex.starts_with("password=<redacted> "), "{ex}");
        assert!(ex.len() <= 40 && ex.ends_with('…'), "{ex}");
        assert_eq!(example("short", 40), "short");
    }
}

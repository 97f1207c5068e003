//! Example label values that look like secrets or personal data are masked
//! before they leave the edge.
//!
//! A masked value keeps its *shape* (`<uuid>`, `<int:6 digits>`,
//! `u***@***.com`, `<ipv4>`) but not its content: the control plane's
//! detectors read shapes to tell an id from a name, and must never receive
//! the value itself. UUIDs and plain numbers stay visible under ordinary
//! label names, because they are what those detectors look for; under a
//! personal label name (`user_id`, `email`) only their shape goes out.

use std::net::{IpAddr, SocketAddr};

/// Label-name fragments that mark personal data or credentials wherever
/// they appear in a name (after lower-casing and dropping separators, so
/// `api_key`, `apiKey` and `API-KEY` all read `apikey`).
const SENSITIVE_FRAGMENTS: &[&str] = &[
    "email", "username", "password", "passwd", "secret", "token", "apikey", "session", "cookie",
    "phone", "address",
];

/// Short fragments that only count as a whole word of the name: as
/// substrings they would match `zip`, `author` or `cardinality`.
const SENSITIVE_WORDS: &[&str] = &[
    "user",
    "users",
    "userid",
    "userids",
    "login",
    "auth",
    "authn",
    "authz",
    "authorization",
    "ssn",
    "card",
    "cardno",
    "cardnumber",
    "creditcard",
    "ip",
    "ips",
    "ipaddr",
    "ipv4",
    "ipv6",
    "addr",
    "clientip",
    "remoteip",
    "sourceip",
    "srcip",
    "dstip",
];

/// The masked form of `value` when it, or the label it is the value of,
/// looks like a secret or personal data; `None` when it may be shown.
pub fn mask_value(label_name: &str, value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if let Some(masked) = mask_by_shape(value) {
        return Some(masked);
    }
    if !is_sensitive_name(label_name) {
        return None;
    }
    // A personal label: hide the content, keep the shape detectors read.
    Some(if is_uuid(value) {
        "<uuid>".to_owned()
    } else if value.bytes().all(|b| b.is_ascii_digit()) {
        format!("<int:{} digits>", value.len())
    } else {
        redacted(value)
    })
}

/// True for label names that hold personal data or credentials.
pub fn is_sensitive_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let compact: String = lower.chars().filter(char::is_ascii_alphanumeric).collect();
    if SENSITIVE_FRAGMENTS.iter().any(|f| compact.contains(f)) {
        return true;
    }
    lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| SENSITIVE_WORDS.contains(&word))
}

/// Masks values that are secrets or personal data whatever their label.
fn mask_by_shape(value: &str) -> Option<String> {
    if let Some(masked) = mask_email(value) {
        return Some(masked);
    }
    if is_jwt(value) {
        return Some("<jwt>".to_owned());
    }
    if is_bearer(value) {
        return Some("<bearer>".to_owned());
    }
    if let Some(ip) = ip_shape(value) {
        return Some(ip.to_owned());
    }
    if let Some(digits) = tero_sdk::pii::card_digits(value) {
        return Some(format!("<card:{digits} digits>"));
    }
    if is_phone(value) {
        return Some("<phone>".to_owned());
    }
    if is_long_secret(value) {
        return Some(redacted(value));
    }
    None
}

fn redacted(value: &str) -> String {
    format!("<redacted:{} chars>", value.chars().count())
}

/// `user@example.com` → `u***@***.com`: the first letter and the top-level
/// domain say what kind of address it is, not whose.
fn mask_email(value: &str) -> Option<String> {
    let (local, domain) = value.split_once('@')?;
    if local.is_empty() || domain.contains('@') || value.chars().any(char::is_whitespace) {
        return None;
    }
    let (host, tld) = domain.rsplit_once('.')?;
    let tld_ok = tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic());
    if host.is_empty() || !tld_ok {
        return None;
    }
    let first = local.chars().next()?;
    Some(format!("{first}***@***.{tld}"))
}

fn is_base64url(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='))
}

/// A JSON Web Token: three base64url segments, the header starting `eyJ`
/// (`{"` encoded).
fn is_jwt(value: &str) -> bool {
    let mut parts = value.split('.');
    let (Some(header), Some(payload), signature) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    parts.next().is_none()
        && header.starts_with("eyJ")
        && header.len() >= 10
        && is_base64url(header)
        && is_base64url(payload)
        && signature.is_none_or(|s| s.is_empty() || is_base64url(s))
}

fn is_bearer(value: &str) -> bool {
    let Some((scheme, token)) = value.split_once(' ') else {
        return false;
    };
    matches!(
        scheme.to_ascii_lowercase().as_str(),
        "bearer" | "basic" | "token"
    ) && token.trim().len() >= 8
}

fn ip_shape(value: &str) -> Option<&'static str> {
    // Addresses with a port or a prefix length are as personal as bare ones.
    let bare = match value.rsplit_once('/') {
        Some((addr, prefix))
            if !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit()) =>
        {
            addr
        }
        _ => value,
    };
    let ip = bare
        .parse::<IpAddr>()
        .ok()
        .or_else(|| bare.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
    Some(match ip {
        IpAddr::V4(_) => "<ipv4>",
        IpAddr::V6(_) => "<ipv6>",
    })
}

/// A telephone number as people write one: `+44 20 7946 0958`,
/// `(555) 123-4567`, `555.123.4567`. Plain digit strings are ids, and
/// dates or versions have short last groups, so neither matches.
fn is_phone(value: &str) -> bool {
    if !value
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b' ' | b'-' | b'.' | b'(' | b')'))
    {
        return false;
    }
    let digits = value.bytes().filter(u8::is_ascii_digit).count();
    if !(7..=15).contains(&digits) {
        return false;
    }
    let plus = value.starts_with('+') && !value[1..].contains('+');
    if value[1..].contains('+') {
        return false;
    }
    let parens = value.contains('(') && value.contains(')');
    let groups: Vec<&str> = value
        .split([' ', '-', '.', '(', ')', '+'])
        .filter(|g| !g.is_empty())
        .collect();
    let separators = groups.len().saturating_sub(1);
    let last_long = groups.last().is_some_and(|g| g.len() >= 4);
    if plus {
        return digits >= 8;
    }
    if parens {
        return digits >= 10 && last_long;
    }
    separators >= 2 && digits >= 10 && last_long
}

/// A long token: 32+ hex digits, or 32+ base64 characters mixing upper
/// case, lower case and digits. Names and paths of that length rarely
/// mix all three without separators; keys almost always do.
fn is_long_secret(value: &str) -> bool {
    if value.len() < 32 {
        return false;
    }
    let bytes = value.as_bytes();
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'))
    {
        return false;
    }
    tero_sdk::pii::is_key_like(bytes)
}

/// `8-4-4-4-12` hex digits.
pub fn is_uuid(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(name: &str, value: &str) -> String {
        mask_value(name, value).unwrap_or_else(|| panic!("{name}={value:?} not masked"))
    }

    #[test]
    fn secrets_and_personal_values_are_masked_whatever_the_label() {
        assert_eq!(masked("to", "jane.doe@example.com"), "j***@***.com");
        assert_eq!(
            masked(
                "x",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
            ),
            "<jwt>"
        );
        assert_eq!(masked("header", "Bearer abcdef0123456789"), "<bearer>");
        assert_eq!(masked("peer", "10.1.2.3"), "<ipv4>");
        assert_eq!(masked("peer", "10.1.2.3:8080"), "<ipv4>");
        assert_eq!(masked("net", "10.0.0.0/8"), "<ipv4>");
        assert_eq!(masked("peer", "2001:db8::1"), "<ipv6>");
        assert_eq!(masked("peer", "[2001:db8::1]:443"), "<ipv6>");
        assert_eq!(masked("pan", "4111 1111 1111 1111"), "<card:16 digits>");
        assert_eq!(masked("pan", "4111111111111111"), "<card:16 digits>");
        assert_eq!(masked("pan", "378282246310005"), "<card:15 digits>");
        assert_eq!(masked("contact", "+44 20 7946 0958"), "<phone>");
        assert_eq!(masked("contact", "(555) 123-4567"), "<phone>");
        assert_eq!(masked("contact", "555-123-4567"), "<phone>");
        assert_eq!(
            masked("k", "d41d8cd98f00b204e9800998ecf8427e"),
            "<redacted:32 chars>"
        );
        assert_eq!(
            masked("k", "AKIAxyzQ0123456789abcdefGHIJKLmnop"),
            "<redacted:34 chars>"
        );
    }

    #[test]
    fn ids_names_and_numbers_stay_visible_under_ordinary_labels() {
        for (name, value) in [
            ("request_id", "550e8400-e29b-41d4-a716-446655440000"),
            ("order_id", "123456"),
            ("ts", "1700000000000"),
            ("ts", "1700000000003"),
            ("code", "200"),
            ("method", "GET"),
            ("path", "/api/v1/orders/{id}"),
            ("pod", "payments-api-deployment-7d4b9c8f6d-x2x4k"),
            ("date", "2024-01-15"),
            ("version", "1.22.3"),
            ("le", "0.005"),
            ("ratio", "1234567.8901"),
            ("reason", "CrashLoopBackOff"),
            ("zip", "90210"),
            ("cardinality", "high"),
            ("author", "jane"),
            ("description", "connection pool exhausted"),
            ("target", "some@thing"),
            ("x", ""),
        ] {
            assert_eq!(mask_value(name, value), None, "{name}={value:?}");
        }
    }

    #[test]
    fn personal_label_names_hide_content_but_keep_the_shape() {
        assert_eq!(
            masked("user_id", "550e8400-e29b-41d4-a716-446655440000"),
            "<uuid>"
        );
        assert_eq!(masked("userId", "123456"), "<int:6 digits>");
        assert_eq!(masked("customer_email", "someone"), "<redacted:7 chars>");
        assert_eq!(masked("email", "a@b.io"), "a***@***.io");
        assert_eq!(masked("session_id", "abc"), "<redacted:3 chars>");
        assert_eq!(masked("API_KEY", "k1"), "<redacted:2 chars>");
        assert_eq!(masked("client_ip", "unknown"), "<redacted:7 chars>");
        assert_eq!(masked("remote_addr", "10.0.0.1"), "<ipv4>");
        assert_eq!(masked("phone_number", "12345"), "<int:5 digits>");
        assert_eq!(masked("auth", "basic"), "<redacted:5 chars>");
        assert_eq!(masked("username", "jdoé"), "<redacted:4 chars>");
    }

    #[test]
    fn label_name_detection() {
        for name in [
            "email",
            "user",
            "user_id",
            "username",
            "password",
            "db_passwd",
            "client_secret",
            "access_token",
            "api_key",
            "apikey",
            "auth",
            "session",
            "cookie_name",
            "ssn",
            "card",
            "phone",
            "ip",
            "pod_ip",
            "ip_address",
            "address",
        ] {
            assert!(is_sensitive_name(name), "{name}");
        }
        for name in [
            "zip",
            "author",
            "cardinality",
            "discard_reason",
            "pipeline",
            "description",
            "ship_method",
            "method",
            "code",
            "le",
        ] {
            assert!(!is_sensitive_name(name), "{name}");
        }
    }
}

//! What a token is, by its shape alone: numbers with or without units,
//! ids (UUIDs, hex, base64, JWTs), addresses, emails, dates and times. Each
//! recogniser reads bytes once, without regexes, since every token of every
//! mined line goes through them.

use super::*;

/// The mask for a value that is wholly one shape.
pub(crate) fn classify(s: &str) -> Option<Mask> {
    let b = s.as_bytes();
    let cls = classes(b);
    if cls & AT != 0 {
        return is_email(b).then_some(Mask::Email);
    }
    if cls & DIGIT == 0 || cls & SPACE != 0 {
        return None;
    }
    let first = *b.first()?;
    if first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.') {
        if is_number(b) {
            return Some(Mask::Num);
        }
        if b.len() > 2 && b[0] == b'0' && (b[1] | 0x20) == b'x' {
            return b[2..]
                .iter()
                .all(u8::is_ascii_hexdigit)
                .then_some(Mask::Hex);
        }
        if is_timestamp(b) {
            return Some(Mask::Ts);
        }
        if is_ip(s) {
            return Some(Mask::Ip);
        }
        if is_dotted_number(b) {
            return Some(Mask::Num);
        }
    }
    if is_uuid(b) {
        return Some(Mask::Uuid);
    }
    if is_hex_id(b) {
        return Some(Mask::Hex);
    }
    if cls & COLON != 0 && is_ip(s) {
        return Some(Mask::Ip);
    }
    if is_b64(b) {
        return Some(Mask::B64);
    }
    None
}

pub(super) const UNITS: &[&[u8]] = &[
    b"ns",
    b"us",
    "µs".as_bytes(),
    b"ms",
    b"s",
    b"sec",
    b"secs",
    b"m",
    b"min",
    b"mins",
    b"h",
    b"hr",
    b"hrs",
    b"d",
    b"b",
    b"k",
    b"g",
    b"t",
    b"kb",
    b"mb",
    b"gb",
    b"tb",
    b"pb",
    b"kib",
    b"mib",
    b"gib",
    b"tib",
    b"bps",
    b"kbps",
    b"mbps",
    b"gbps",
    b"%",
    b"x",
    b"rps",
    b"qps",
];

/// `-12`, `3.5`, `.5`, `1e-3`, with an optional unit.
pub(super) fn is_number(b: &[u8]) -> bool {
    let mut i = 0;
    if matches!(b.first(), Some(b'-' | b'+')) {
        i = 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    if i < b.len() && b[i] == b'.' {
        let frac_start = i + 1;
        let mut j = frac_start;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > frac_start {
            digits += j - frac_start;
            i = j;
        }
    }
    if digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] | 0x20) == b'e' {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'-' | b'+')) {
            j += 1;
        }
        let exp_start = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_start {
            i = j;
        }
    }
    let unit = &b[i..];
    unit.is_empty() || UNITS.iter().any(|u| u.eq_ignore_ascii_case(unit))
}

/// Versions and other dotted numbers that are not addresses: `1.22.3`.
pub(super) fn is_dotted_number(b: &[u8]) -> bool {
    b.first().is_some_and(u8::is_ascii_digit)
        && b.last().is_some_and(u8::is_ascii_digit)
        && b.iter().all(|c| c.is_ascii_digit() || *c == b'.')
        && !b.windows(2).any(|w| w == b"..")
}

pub(super) fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// 8+ hex digits with at least one digit and one letter: all-digit runs are
/// numbers, and all-letter runs are words (`deadbeef`, `facade`).
pub(super) fn is_hex_id(b: &[u8]) -> bool {
    b.len() >= 8
        && b.iter().all(u8::is_ascii_hexdigit)
        && b.iter().any(u8::is_ascii_digit)
        && b.iter().any(u8::is_ascii_alphabetic)
}

pub(crate) fn is_ip(s: &str) -> bool {
    let b = s.as_bytes();
    if b.iter()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b':' | b'/'))
    {
        let addr = strip_prefix_len(s);
        let addr = match addr.rsplit_once(':') {
            Some((a, port)) if is_port(port) => a,
            _ => addr,
        };
        return addr.parse::<Ipv4Addr>().is_ok();
    }
    if b.iter().filter(|c| **c == b':').count() < 2
        || !b
            .iter()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, b':' | b'.' | b'[' | b']' | b'/' | b'%'))
    {
        return false;
    }
    let addr = strip_prefix_len(s);
    let addr = match addr.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((inner, "")) => inner,
            Some((inner, port)) if port.strip_prefix(':').is_some_and(is_port) => inner,
            _ => return false,
        },
        None => addr,
    };
    let addr = addr.split_once('%').map_or(addr, |(a, _)| a);
    addr.parse::<Ipv6Addr>().is_ok()
}

pub(super) fn strip_prefix_len(s: &str) -> &str {
    match s.rsplit_once('/') {
        Some((addr, len)) if !len.is_empty() && len.len() <= 3 && is_digits(len) => addr,
        _ => s,
    }
}

pub(super) fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && is_digits(p)
}

pub(super) fn is_digits(s: &str) -> bool {
    s.bytes().all(|c| c.is_ascii_digit())
}

pub(super) fn is_email(b: &[u8]) -> bool {
    let Some(at) = b.iter().position(|c| *c == b'@') else {
        return false;
    };
    let (local, domain) = (&b[..at], &b[at + 1..]);
    let Some(dot) = domain.iter().rposition(|c| *c == b'.') else {
        return false;
    };
    let tld = &domain[dot + 1..];
    !local.is_empty()
        && local
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-'))
        && dot > 0
        && domain[..dot]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-'))
        && tld.len() >= 2
        && tld.iter().all(u8::is_ascii_alphabetic)
}

/// Consecutive digits from `i`, between `min` and `max` of them; the
/// position after them.
pub(super) fn digits(b: &[u8], i: usize, min: usize, max: usize) -> Option<usize> {
    let n = b
        .get(i..)?
        .iter()
        .take(max)
        .take_while(|c| c.is_ascii_digit())
        .count();
    (n >= min).then_some(i + n)
}

pub(super) fn byte_at(b: &[u8], i: usize, want: &[u8]) -> Option<u8> {
    b.get(i).copied().filter(|c| want.contains(c))
}

/// `2024-01-15`, `2024/01/15`, `2024.01.15`.
pub(super) fn date_ymd(b: &[u8]) -> Option<usize> {
    let i = digits(b, 0, 4, 4)?;
    let sep = byte_at(b, i, b"-/.")?;
    let i = digits(b, i + 1, 1, 2)?;
    byte_at(b, i, &[sep])?;
    digits(b, i + 1, 1, 2)
}

/// `15/01/2024`, `15.01.2024`, `15-01-2024`.
pub(super) fn date_dmy(b: &[u8]) -> Option<usize> {
    let i = digits(b, 0, 1, 2)?;
    let sep = byte_at(b, i, b"-/.")?;
    let i = digits(b, i + 1, 1, 2)?;
    byte_at(b, i, &[sep])?;
    digits(b, i + 1, 4, 4)
}

/// `12/Mar/2024`, as access logs write it.
pub(super) fn date_apache(b: &[u8]) -> Option<usize> {
    let i = digits(b, 0, 1, 2)?;
    byte_at(b, i, b"/")?;
    let month = b.get(i + 1..i + 4)?;
    if !month.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    byte_at(b, i + 4, b"/")?;
    digits(b, i + 5, 4, 4)
}

/// `10:00`, `10:00:00`, `10:00:00.123456`, `10:00:00,123`.
pub(super) fn time(b: &[u8], i: usize) -> Option<usize> {
    let i = digits(b, i, 1, 2)?;
    byte_at(b, i, b":")?;
    let mut i = digits(b, i + 1, 2, 2)?;
    if byte_at(b, i, b":").is_some() {
        i = digits(b, i + 1, 2, 2)?;
    }
    if byte_at(b, i, b".,").is_some() {
        i = digits(b, i + 1, 1, 9)?;
    }
    Some(i)
}

/// `Z`, `+02:00`, `-0500`, or nothing, then the end.
pub(super) fn zone_ends(b: &[u8], i: usize) -> bool {
    match b.get(i) {
        None => true,
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            let Some(mut j) = digits(b, i + 1, 2, 2) else {
                return false;
            };
            if byte_at(b, j, b":").is_some() {
                j += 1;
            }
            if j < b.len() {
                match digits(b, j, 2, 2) {
                    Some(k) => j = k,
                    None => return false,
                }
            }
            j == b.len()
        }
        _ => false,
    }
}

pub(super) fn is_timestamp(b: &[u8]) -> bool {
    let time_from = if let Some(i) = date_ymd(b).or_else(|| date_dmy(b)) {
        match b.get(i) {
            None => return true,
            Some(b'T' | b't' | b'_') => i + 1,
            _ => return false,
        }
    } else if let Some(i) = date_apache(b) {
        match b.get(i) {
            None => return true,
            Some(b':') => i + 1,
            _ => return false,
        }
    } else {
        0
    };
    time(b, time_from).is_some_and(|i| zone_ends(b, i))
}

pub(super) fn is_base64url(b: &[u8]) -> bool {
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'='))
}

/// Three base64url segments, the header starting `eyJ` (`{"` encoded).
pub(crate) fn is_jwt(b: &[u8]) -> bool {
    let mut parts = b.split(|c| *c == b'.');
    let (Some(header), Some(payload), signature) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    parts.next().is_none()
        && header.starts_with(b"eyJ")
        && header.len() >= 10
        && is_base64url(header)
        && is_base64url(payload)
        && signature.is_none_or(|s| s.is_empty() || is_base64url(s))
}

/// Random bytes in base64 switch between upper case, lower case and digits
/// at about two characters in three; identifiers such as
/// `Log4j2ConfigurationFactory` switch far less often. The threshold (9 in
/// 20) keeps both apart from 16 characters on.
pub(super) fn is_b64(b: &[u8]) -> bool {
    if is_jwt(b) {
        return true;
    }
    if b.len() < 16 {
        return false;
    }
    let (mut upper, mut lower, mut digit, mut seps, mut changes) = (false, false, false, 0, 0);
    let mut prev = 0u8;
    for &c in b {
        let class = match c {
            b'A'..=b'Z' => {
                upper = true;
                1
            }
            b'a'..=b'z' => {
                lower = true;
                2
            }
            b'0'..=b'9' => {
                digit = true;
                3
            }
            b'+' | b'/' | b'=' => 4,
            b'-' | b'_' => {
                seps += 1;
                5
            }
            _ => return false,
        };
        if prev != 0 && class != prev {
            changes += 1;
        }
        prev = class;
    }
    upper && lower && digit && seps * 8 <= b.len() && changes * 20 >= b.len() * 9
}

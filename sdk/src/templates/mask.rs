//! Tokenising a log body and masking its variable tokens.
//!
//! A body splits on ASCII whitespace, except inside a closed double-quoted
//! span: `msg="order placed"` or `"GET /a HTTP/1.1"` stay one token, so a
//! quoted value never changes the token count of its line. Bodies that start
//! with `{` also split after each comma outside quotes, so a JSON object
//! yields one token per field.
//!
//! Within a token, values with a recognisable shape become typed
//! placeholders; everything else is copied, so the masked token reads like
//! the original: `key=` prefixes, JSON keys, brackets, paths and hostnames
//! stay. Quoted strings are *not* masked as a whole: in logfmt and JSON the
//! quoted message is what tells one event from another. Their words are
//! masked one by one instead (`"took 12ms"` → `"took <num>"`), and the
//! miner generalises a quoted value that varies.
//!
//! Masking is the first half of the fingerprint contract: changing what a
//! shape masks to changes the fingerprints of templates holding it.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

/// Tokens kept per line; the rest of a longer line becomes one `<*>` token,
/// so a template's size stays bounded whatever the line.
pub const MAX_TOKENS: usize = 128;
/// Bytes of a body that are tokenised; the rest counts in the template's
/// bytes but not in its text.
pub const MAX_BODY_BYTES: usize = 8 * 1024;

/// A typed placeholder for a variable value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mask {
    /// Integers, decimals, exponents, with an optional unit (`12ms`, `3.5s`,
    /// `200KB`, `50%`), and dotted version numbers (`1.22.3`).
    Num,
    /// `0x`-prefixed hex, or 8+ hex digits mixing digits and letters.
    Hex,
    /// `8-4-4-4-12` hex digits.
    Uuid,
    /// IPv4 or IPv6, with an optional port or prefix length.
    Ip,
    /// `local@domain.tld`.
    Email,
    /// Dates, times and date-times (ISO 8601, `2024/01/15`, `15/01/2024`,
    /// `12/Mar/2024:10:00:00`, `10:00:00.123`).
    Ts,
    /// JSON Web Tokens and 16+ character base64 runs that mix letter case
    /// and digits the way random bytes do.
    B64,
}

impl Mask {
    /// The placeholder text, as it appears in templates.
    pub const fn placeholder(self) -> &'static str {
        match self {
            Mask::Num => "<num>",
            Mask::Hex => "<hex>",
            Mask::Uuid => "<uuid>",
            Mask::Ip => "<ip>",
            Mask::Email => "<email>",
            Mask::Ts => "<ts>",
            Mask::B64 => "<b64>",
        }
    }
}

/// What a masked token holds, which decides its branch in the prefix tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// No digit and no placeholder: likely a constant of the event.
    Word,
    /// Exactly one placeholder and nothing else.
    Masked(Mask),
    /// Digits or placeholders among other text: `key=<num>`, `v2`, `db-3`,
    /// `(Main.java:<num>)`.
    Mixed,
}

/// One token of a masked line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Byte range in the original body.
    pub raw: Range<usize>,
    /// Byte range in the masked line.
    pub masked: Range<usize>,
    pub kind: TokenKind,
}

impl Token {
    /// True when the token may vary between lines of one event: the prefix
    /// tree sends such tokens down its `<*>` branch.
    pub fn is_variable(&self) -> bool {
        self.kind != TokenKind::Word
    }
}

/// The tokens of `body` and its masked form: the masked tokens joined by
/// single spaces, each [`Token::masked`] range pointing into it.
pub fn mask_line(body: &str) -> (Vec<Token>, String) {
    let mut line = MaskedLine::default();
    line.fill(body);
    (line.tokens, line.text)
}

/// A reusable buffer for masked lines: the miner masks every line into the
/// same one, so the hot path does not allocate.
#[derive(Debug, Default)]
pub(crate) struct MaskedLine {
    pub(crate) tokens: Vec<Token>,
    pub(crate) text: String,
}

impl MaskedLine {
    pub(crate) fn fill(&mut self, body: &str) {
        self.tokens.clear();
        self.text.clear();
        let body = truncate(body, MAX_BODY_BYTES);
        let bytes = body.as_bytes();
        let json = bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{');
        let mut tokenizer = Tokenizer {
            bytes,
            pos: 0,
            json,
            quotes_closed: true,
        };
        while let Some(raw) = tokenizer.next_token() {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            let start = self.text.len();
            if self.tokens.len() == MAX_TOKENS - 1 {
                // Everything from here on is one wildcard token.
                self.text.push_str("<*>");
                self.tokens.push(Token {
                    raw: raw.start..bytes.len(),
                    masked: start..self.text.len(),
                    kind: TokenKind::Mixed,
                });
                break;
            }
            let mut acc = Acc::default();
            mask_token(&body[raw.clone()], &mut self.text, 0, &mut acc);
            let masked = start..self.text.len();
            let kind = match acc.only {
                Some(m) if acc.masks == 1 && masked.len() == m.placeholder().len() => {
                    TokenKind::Masked(m)
                }
                _ if acc.masks > 0 || acc.digits => TokenKind::Mixed,
                _ => TokenKind::Word,
            };
            self.tokens.push(Token { raw, masked, kind });
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.tokens.len()
    }

    pub(crate) fn token(&self, i: usize) -> &str {
        self.tokens
            .get(i)
            .and_then(|t| self.text.get(t.masked.clone()))
            .unwrap_or("")
    }
}

/// The longest prefix of `s` of at most `max` bytes ending on a character
/// boundary (`str::floor_char_boundary` needs a newer Rust than the sdk's
/// minimum).
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

struct Tokenizer<'a> {
    bytes: &'a [u8],
    pos: usize,
    json: bool,
    /// False once a quote was found without a closing one: no later quote can
    /// close either, and searching again would make long bodies quadratic.
    quotes_closed: bool,
}

impl Tokenizer<'_> {
    fn next_token(&mut self) -> Option<Range<usize>> {
        let b = self.bytes;
        let mut i = self.pos;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            self.pos = i;
            return None;
        }
        let start = i;
        while i < b.len() {
            let c = b[i];
            if c.is_ascii_whitespace() {
                break;
            }
            if c == b'"' && self.quotes_closed {
                match closing_quote(b, i + 1) {
                    Some(end) => {
                        i = end + 1;
                        continue;
                    }
                    None => self.quotes_closed = false,
                }
            }
            i += 1;
            if self.json && c == b',' {
                break;
            }
        }
        self.pos = i;
        Some(start..i)
    }
}

/// The next unescaped `"` at or after `from`.
fn closing_quote(b: &[u8], from: usize) -> Option<usize> {
    let mut k = from;
    while let Some(off) = b.get(k..).and_then(|rest| memchr::memchr(b'"', rest)) {
        let j = k + off;
        let backslashes = b[..j].iter().rev().take_while(|c| **c == b'\\').count();
        if backslashes % 2 == 0 {
            return Some(j);
        }
        k = j + 1;
    }
    None
}

// Byte classes, looked up once per byte so that plain words (most tokens)
// are recognised in one pass and copied.
const DIGIT: u8 = 1;
const AT: u8 = 1 << 1;
const QUERY: u8 = 1 << 2;
const SPACE: u8 = 1 << 3;
const DELIM: u8 = 1 << 4;
const UPPER: u8 = 1 << 5;
const LOWER: u8 = 1 << 6;
const COLON: u8 = 1 << 7;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = if c.is_ascii_digit() {
            DIGIT
        } else if c.is_ascii_uppercase() {
            UPPER
        } else if c.is_ascii_lowercase() {
            LOWER
        } else if c.is_ascii_whitespace() {
            SPACE
        } else if c == b'@' {
            AT
        } else if c == b'?' {
            QUERY | DELIM
        } else if c == b':' {
            COLON | DELIM
        } else if c.is_ascii_punctuation() {
            // `.-_+%~` stay inside segments: they join the parts of floats,
            // addresses, dates, uuids, names and units.
            match c {
                b'.' | b'-' | b'_' | b'+' | b'%' | b'~' => 0,
                _ => DELIM,
            }
        } else {
            0
        };
        i += 1;
    }
    t
};

fn classes(b: &[u8]) -> u8 {
    b.iter().fold(0, |acc, c| acc | CLASS[*c as usize])
}

fn is_delim(c: u8) -> bool {
    CLASS[c as usize] & DELIM != 0
}

#[derive(Default)]
struct Acc {
    digits: bool,
    masks: u32,
    only: Option<Mask>,
}

impl Acc {
    fn push(&mut self, out: &mut String, mask: Mask) {
        out.push_str(mask.placeholder());
        self.masks += 1;
        self.only = Some(mask);
    }

    fn push_wild(&mut self, out: &mut String) {
        out.push_str("<*>");
        self.masks += 1;
        self.only = None;
    }
}

/// Structured values nest (`k="a=1 b=2"`); deeper than this they are
/// split into segments without further structure.
const MAX_DEPTH: u8 = 4;

fn mask_token(tok: &str, out: &mut String, depth: u8, acc: &mut Acc) {
    let b = tok.as_bytes();
    if b.is_empty() {
        return;
    }
    let cls = classes(b);
    if cls & (DIGIT | AT | QUERY) == 0 {
        out.push_str(tok);
        return;
    }
    // `[2001:db8::1]:443` would lose its brackets to the stripping below.
    if b[0] == b'[' && is_ip(tok) {
        acc.push(out, Mask::Ip);
        return;
    }
    let (lead, core, trail) = strip(tok);
    if core.is_empty() {
        out.push_str(tok);
        acc.digits |= cls & DIGIT != 0;
        return;
    }
    out.push_str(lead);
    mask_core(core, out, depth, acc);
    out.push_str(trail);
}

fn mask_core(core: &str, out: &mut String, depth: u8, acc: &mut Acc) {
    if let Some(mask) = classify(core) {
        acc.push(out, mask);
        return;
    }
    let b = core.as_bytes();
    let cls = classes(b);
    if depth < MAX_DEPTH {
        if cls & SPACE != 0 {
            // The inside of a quoted span: mask word by word.
            let mut i = 0;
            while i < b.len() {
                let start = i;
                let space = b[i].is_ascii_whitespace();
                while i < b.len() && b[i].is_ascii_whitespace() == space {
                    i += 1;
                }
                if space {
                    out.push_str(&core[start..i]);
                } else {
                    mask_token(&core[start..i], out, depth + 1, acc);
                }
            }
            return;
        }
        if let Some(sep) = split_kv(b) {
            out.push_str(&core[..=sep]);
            mask_token(&core[sep + 1..], out, depth + 1, acc);
            return;
        }
        if cls & QUERY != 0
            && let Some(q) = core.find('?')
            && core[q..].contains('=')
        {
            mask_segments(&core[..q], out, acc);
            out.push('?');
            mask_query(&core[q + 1..], out, acc);
            return;
        }
    }
    mask_segments(core, out, acc);
}

/// `a=1&b=x`: every value is a parameter, typed when it has a shape.
fn mask_query(query: &str, out: &mut String, acc: &mut Acc) {
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((key, value)) => {
                out.push_str(key);
                out.push('=');
                if value.is_empty() {
                } else if let Some(mask) = classify(value) {
                    acc.push(out, mask);
                } else {
                    acc.push_wild(out);
                }
            }
            None => mask_segments(pair, out, acc),
        }
    }
}

/// Masks each run between delimiters (`/`, `:`, `=`, `,`, brackets,
/// quotes…) on its own: `/api/orders/123` → `/api/orders/<num>`,
/// `(Main.java:42)` → `(Main.java:<num>)`.
fn mask_segments(s: &str, out: &mut String, acc: &mut Acc) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let delim = is_delim(b[i]);
        while i < b.len() && is_delim(b[i]) == delim {
            i += 1;
        }
        let seg = &s[start..i];
        if delim {
            out.push_str(seg);
        } else if let Some(mask) = classify(seg) {
            acc.push(out, mask);
        } else {
            acc.digits |= classes(seg.as_bytes()) & DIGIT != 0;
            out.push_str(seg);
        }
    }
}

/// Splits punctuation that wraps a value: `(10.0.0.1)`, `"12ms",`, `5s.`
fn strip(tok: &str) -> (&str, &str, &str) {
    let b = tok.as_bytes();
    let mut start = 0;
    while start < b.len() && matches!(b[start], b'(' | b'[' | b'{' | b'"' | b'\'') {
        start += 1;
    }
    let mut end = b.len();
    while end > start
        && matches!(
            b[end - 1],
            b')' | b']' | b'}' | b'"' | b'\'' | b',' | b';' | b':' | b'.' | b'!' | b'?'
        )
    {
        end -= 1;
    }
    (&tok[..start], &tok[start..end], &tok[end..])
}

/// The position of the separator of `key=value`, `"key":value` or
/// `key:value` (the key holding a letter, the value not starting a URL).
fn split_kv(b: &[u8]) -> Option<usize> {
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'=' => return (i > 0).then_some(i),
            b':' => {
                let key = &b[..i];
                let next = b.get(i + 1).copied();
                let ok = key.iter().any(u8::is_ascii_alphabetic)
                    && next.is_some_and(|n| n != b'/' && n != b':');
                return ok.then_some(i);
            }
            c if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'"' | b'\'') => {}
            _ => return None,
        }
    }
    None
}

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

const UNITS: &[&[u8]] = &[
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
fn is_number(b: &[u8]) -> bool {
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
fn is_dotted_number(b: &[u8]) -> bool {
    b.first().is_some_and(u8::is_ascii_digit)
        && b.last().is_some_and(u8::is_ascii_digit)
        && b.iter().all(|c| c.is_ascii_digit() || *c == b'.')
        && !b.windows(2).any(|w| w == b"..")
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// 8+ hex digits with at least one digit and one letter: all-digit runs are
/// numbers, and all-letter runs are words (`deadbeef`, `facade`).
fn is_hex_id(b: &[u8]) -> bool {
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

fn strip_prefix_len(s: &str) -> &str {
    match s.rsplit_once('/') {
        Some((addr, len)) if !len.is_empty() && len.len() <= 3 && is_digits(len) => addr,
        _ => s,
    }
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && is_digits(p)
}

fn is_digits(s: &str) -> bool {
    s.bytes().all(|c| c.is_ascii_digit())
}

fn is_email(b: &[u8]) -> bool {
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
fn digits(b: &[u8], i: usize, min: usize, max: usize) -> Option<usize> {
    let n = b
        .get(i..)?
        .iter()
        .take(max)
        .take_while(|c| c.is_ascii_digit())
        .count();
    (n >= min).then_some(i + n)
}

fn byte_at(b: &[u8], i: usize, want: &[u8]) -> Option<u8> {
    b.get(i).copied().filter(|c| want.contains(c))
}

/// `2024-01-15`, `2024/01/15`, `2024.01.15`.
fn date_ymd(b: &[u8]) -> Option<usize> {
    let i = digits(b, 0, 4, 4)?;
    let sep = byte_at(b, i, b"-/.")?;
    let i = digits(b, i + 1, 1, 2)?;
    byte_at(b, i, &[sep])?;
    digits(b, i + 1, 1, 2)
}

/// `15/01/2024`, `15.01.2024`, `15-01-2024`.
fn date_dmy(b: &[u8]) -> Option<usize> {
    let i = digits(b, 0, 1, 2)?;
    let sep = byte_at(b, i, b"-/.")?;
    let i = digits(b, i + 1, 1, 2)?;
    byte_at(b, i, &[sep])?;
    digits(b, i + 1, 4, 4)
}

/// `12/Mar/2024`, as access logs write it.
fn date_apache(b: &[u8]) -> Option<usize> {
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
fn time(b: &[u8], i: usize) -> Option<usize> {
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
fn zone_ends(b: &[u8], i: usize) -> bool {
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

fn is_timestamp(b: &[u8]) -> bool {
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

fn is_base64url(b: &[u8]) -> bool {
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
fn is_b64(b: &[u8]) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(body: &str) -> String {
        mask_line(body).1
    }

    #[test]
    fn numbers_with_units_and_versions() {
        for (input, want) in [
            ("took 12ms", "took <num>"),
            ("took 3.5s", "took <num>"),
            ("read 200KB", "read <num>"),
            ("cpu 50%", "cpu <num>"),
            ("delta -12", "delta <num>"),
            ("ratio 1e-3", "ratio <num>"),
            ("count 0", "count <num>"),
            ("version 1.22.3", "version <num>"),
            ("HTTP/1.1 200", "HTTP/<num> <num>"),
            ("retry in 5m.", "retry in <num>."),
        ] {
            assert_eq!(masked(input), want, "{input}");
        }
    }

    #[test]
    fn words_with_digits_are_not_numbers() {
        for word in [
            "v2", "http2", "utf-8", "x86_64", "h2c", "ipv4", "base64", "sha256", "log4j", "k8s",
            "e2e", "1st", "2nd", "s3", "deadbeef", "facade",
        ] {
            let (tokens, text) = mask_line(word);
            assert_eq!(text, word, "{word}");
            assert_eq!(tokens.len(), 1);
        }
        let (tokens, _) = mask_line("v2 ready");
        assert_eq!(
            tokens[0].kind,
            TokenKind::Mixed,
            "digits go to the <*> branch"
        );
        assert_eq!(tokens[1].kind, TokenKind::Word);
    }

    #[test]
    fn ids_addresses_and_times() {
        for (input, want) in [
            ("0x1f", "<hex>"),
            ("a1b2c3d4e5f6", "<hex>"),
            ("d41d8cd98f00b204e9800998ecf8427e", "<hex>"),
            ("550e8400-e29b-41d4-a716-446655440000", "<uuid>"),
            ("10.1.2.3", "<ip>"),
            ("10.1.2.3:8080", "<ip>"),
            ("10.0.0.0/8", "<ip>"),
            ("2001:db8::1", "<ip>"),
            ("[2001:db8::1]:443", "<ip>"),
            ("fe80::1ff:fe23:4567:890a", "<ip>"),
            ("jane.doe@example.com", "<email>"),
            ("2024-01-15", "<ts>"),
            ("2024-01-15T10:00:00Z", "<ts>"),
            ("2024-01-15T10:00:00.123+02:00", "<ts>"),
            ("10:00:00,123", "<ts>"),
            ("[12/Mar/2024:10:00:00", "[<ts>"),
            ("15/01/2024", "<ts>"),
            (
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                "<b64>",
            ),
            ("dGhpcyBpcyBhIHRlc3QgMTIz", "<b64>"),
            ("Log4j2ConfigurationFactory", "Log4j2ConfigurationFactory"),
            (
                "payments-api-7d4b9c8f6d-x2x4k",
                "payments-api-7d4b9c8f6d-x2x4k",
            ),
        ] {
            assert_eq!(masked(input), want, "{input}");
        }
    }

    #[test]
    fn structure_around_values_is_kept() {
        for (input, want) in [
            ("key=0x1f", "key=<hex>"),
            ("user=alice", "user=alice"),
            ("dur=12ms,", "dur=<num>,"),
            ("peer=10.0.0.1:443", "peer=<ip>"),
            ("(10.0.0.1)", "(<ip>)"),
            ("/api/orders/123", "/api/orders/<num>"),
            (
                "https://api.example.com:8443/v1/orders/550e8400-e29b-41d4-a716-446655440000?expand=items&page=2",
                "https://api.example.com:<num>/v1/orders/<uuid>?expand=<*>&page=<num>",
            ),
            ("/search?q=shoes", "/search?q=<*>"),
            (
                "at com.example.Orders.place(Orders.java:42)",
                "at com.example.Orders.place(Orders.java:<num>)",
            ),
            ("status:200", "status:<num>"),
            (
                r#"msg="took 12ms from 10.0.0.1" ok"#,
                r#"msg="took <num> from <ip>" ok"#,
            ),
        ] {
            assert_eq!(masked(input), want, "{input}");
        }
    }

    #[test]
    fn quoted_spans_and_json_fields_are_single_tokens() {
        let (tokens, text) = mask_line(r#"Failed to open "/tmp/a b.txt": denied"#);
        assert_eq!(tokens.len(), 5);
        assert_eq!(text, r#"Failed to open "/tmp/a b.txt": denied"#);
        let (tokens, text) =
            mask_line(r#"{"level":"info","msg":"order placed","order_id":123,"at":"2024-01-15"}"#);
        assert_eq!(
            text,
            r#"{"level":"info", "msg":"order placed", "order_id":<num>, "at":"<ts>"}"#
        );
        assert_eq!(tokens.len(), 4);
        // An unclosed quote is an ordinary character.
        let (tokens, _) = mask_line(r#"a 5" screen"#);
        assert_eq!(tokens.len(), 3);
        let (tokens, _) = mask_line(r#"say "a \" b" now"#);
        assert_eq!(tokens.len(), 3);
    }

    #[test]
    fn token_ranges_and_kinds() {
        let body = "  GET /a/1   took 12ms ";
        let (tokens, text) = mask_line(body);
        assert_eq!(text, "GET /a/<num> took <num>");
        let raw: Vec<&str> = tokens.iter().map(|t| &body[t.raw.clone()]).collect();
        assert_eq!(raw, ["GET", "/a/1", "took", "12ms"]);
        let kinds: Vec<TokenKind> = tokens.iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            [
                TokenKind::Word,
                TokenKind::Mixed,
                TokenKind::Word,
                TokenKind::Masked(Mask::Num)
            ]
        );
        assert_eq!(&text[tokens[3].masked.clone()], "<num>");
    }

    #[test]
    fn long_lines_are_bounded() {
        let body = "w ".repeat(1000);
        let (tokens, text) = mask_line(&body);
        assert_eq!(tokens.len(), MAX_TOKENS);
        assert!(text.ends_with(" <*>"));
        let (tokens, _) = mask_line(&"é".repeat(MAX_BODY_BYTES));
        assert_eq!(tokens.len(), 1);
        assert_eq!(mask_line("").0.len(), 0);
    }
}

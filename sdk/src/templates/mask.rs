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

mod shapes;

pub(crate) use shapes::{classify, is_ip, is_jwt};

#[cfg(test)]
mod tests;

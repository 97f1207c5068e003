//! Label sections: `a="1",b="x\"y"` as a sequence of borrowed pairs.
//!
//! Values may hold `{`, `}`, `,`, `=`, `#`, spaces and escaped quotes, so the
//! scanner tracks quotes and escapes instead of splitting on delimiters.
//! Values stay escaped until a policy asks for one ([`LabelPair::value`]).

use std::borrow::Cow;

/// One `name="value"` pair, with its byte range inside the label section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelPair<'a> {
    /// The name as written (without quotes when quoted).
    pub raw_name: &'a [u8],
    pub quoted_name: bool,
    /// The value between its quotes, still escaped.
    pub raw_value: &'a [u8],
    /// `start..end` of the pair in the section, including a trailing comma.
    pub start: usize,
    pub end: usize,
}

impl<'a> LabelPair<'a> {
    /// True if the pair's (decoded) name is `name`.
    pub fn name_is(&self, name: &str) -> bool {
        if self.quoted_name && self.raw_name.contains(&b'\\') {
            decode_escapes(self.raw_name, true).as_deref() == Some(name)
        } else {
            self.raw_name == name.as_bytes()
        }
    }

    /// The decoded value; `None` if it is not UTF-8.
    pub fn value(&self) -> Option<Cow<'a, str>> {
        decode_escapes(self.raw_value, true)
    }
}

/// Decodes `\\`, `\n` and (when `quotes`) `\"`. Other escapes stay as
/// written. Borrows when there is nothing to decode.
pub fn decode_escapes(raw: &[u8], quotes: bool) -> Option<Cow<'_, str>> {
    if memchr::memchr(b'\\', raw).is_none() {
        return std::str::from_utf8(raw).ok().map(Cow::Borrowed);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'\\' && i + 1 < raw.len() {
            match raw[i + 1] {
                b'\\' => out.push(b'\\'),
                b'n' => out.push(b'\n'),
                b'"' if quotes => out.push(b'"'),
                other => {
                    out.push(b'\\');
                    out.push(other);
                }
            }
            i += 2;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// Iterates the pairs of a label section (the bytes between `{` and `}`).
/// A malformed section ends the iteration with [`LabelIter::failed`] set.
pub struct LabelIter<'a> {
    section: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> LabelIter<'a> {
    pub fn new(section: &'a [u8]) -> Self {
        LabelIter {
            section,
            pos: 0,
            failed: false,
        }
    }

    /// True if iteration stopped at a syntax error.
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn fail(&mut self) -> Option<LabelPair<'a>> {
        self.failed = true;
        self.pos = self.section.len();
        None
    }
}

/// Finds the closing quote of a string whose content starts at `from`,
/// honouring backslash escapes. Returns the index of the quote.
pub(crate) fn closing_quote(bytes: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let at = from + memchr::memchr2(b'"', b'\\', &bytes[from..])?;
        if bytes[at] == b'"' {
            return Some(at);
        }
        from = at + 2;
        if from > bytes.len() {
            return None;
        }
    }
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn skip_blanks(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
        i += 1;
    }
    i
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = LabelPair<'a>;

    fn next(&mut self) -> Option<LabelPair<'a>> {
        let s = self.section;
        let start = skip_blanks(s, self.pos);
        if start >= s.len() {
            return None;
        }
        let (raw_name, quoted_name, after_name) = if s[start] == b'"' {
            let Some(q) = closing_quote(s, start + 1) else {
                return self.fail();
            };
            (&s[start + 1..q], true, q + 1)
        } else if is_name_start(s[start]) {
            let mut e = start + 1;
            while e < s.len() && is_name_char(s[e]) {
                e += 1;
            }
            (&s[start..e], false, e)
        } else {
            return self.fail();
        };
        let eq = skip_blanks(s, after_name);
        if eq >= s.len() || s[eq] != b'=' {
            return self.fail();
        }
        let open = skip_blanks(s, eq + 1);
        if open >= s.len() || s[open] != b'"' {
            return self.fail();
        }
        let Some(close) = closing_quote(s, open + 1) else {
            return self.fail();
        };
        let mut end = skip_blanks(s, close + 1);
        if end < s.len() {
            if s[end] != b',' {
                return self.fail();
            }
            end += 1;
        }
        self.pos = end;
        Some(LabelPair {
            raw_name,
            quoted_name,
            raw_value: &s[open + 1..close],
            start,
            end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(section: &str) -> (Vec<(String, String)>, bool) {
        let mut it = LabelIter::new(section.as_bytes());
        let v = it
            .by_ref()
            .map(|p| {
                (
                    String::from_utf8(p.raw_name.to_vec()).unwrap(),
                    p.value().unwrap().into_owned(),
                )
            })
            .collect();
        (v, it.failed())
    }

    #[test]
    fn values_may_hold_delimiters_and_escaped_quotes() {
        let (v, failed) = pairs(r#"a="x,y}{=#z",b="say \"hi\"",c="C:\\tmp",d="l1\nl2""#);
        assert!(!failed);
        assert_eq!(
            v,
            vec![
                ("a".into(), "x,y}{=#z".into()),
                ("b".into(), "say \"hi\"".into()),
                ("c".into(), "C:\\tmp".into()),
                ("d".into(), "l1\nl2".into()),
            ]
        );
    }

    #[test]
    fn trailing_comma_spaces_and_quoted_names_are_accepted() {
        let (v, failed) = pairs(r#" "my.label" = "v" , b="2","#);
        assert!(!failed);
        assert_eq!(
            v,
            vec![("my.label".into(), "v".into()), ("b".into(), "2".into())]
        );
    }

    #[test]
    fn malformed_sections_fail() {
        for bad in [
            r#"a="unterminated"#,
            r#"a=1"#,
            r#"a="1" b="2""#,
            r#"1a="x""#,
        ] {
            assert!(pairs(bad).1, "{bad} should fail");
        }
    }

    #[test]
    fn escapes_decode_only_when_needed() {
        assert!(matches!(
            decode_escapes(b"plain", true),
            Some(Cow::Borrowed("plain"))
        ));
        assert_eq!(
            decode_escapes(br#"a\\b\nc\"d"#, true).unwrap(),
            "a\\b\nc\"d"
        );
        assert_eq!(decode_escapes(br#"a\"d"#, false).unwrap(), "a\\\"d");
        assert_eq!(decode_escapes(br"odd\x", true).unwrap(), "odd\\x");
    }
}

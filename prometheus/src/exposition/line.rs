//! One exposition line: what it is, its metric name and label section.
//!
//! The parser stops after the label section: values, timestamps and
//! exemplars are never read, because policies cannot select on them and a
//! kept line is emitted as the bytes it arrived as.

use std::borrow::Cow;

use super::labels::{closing_quote, decode_escapes};

/// A metric or family name as written: bare, or quoted UTF-8 (text 1.0,
/// OpenMetrics 2) whose escapes are decoded on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name<'a> {
    pub raw: &'a [u8],
    pub quoted: bool,
}

impl<'a> Name<'a> {
    /// The name as policies see it; `None` if it is not UTF-8.
    pub fn decoded(&self) -> Option<Cow<'a, str>> {
        if self.quoted {
            decode_escapes(self.raw, true)
        } else {
            std::str::from_utf8(self.raw).ok().map(Cow::Borrowed)
        }
    }
}

/// A sample line: `name{labels} value [timestamp] [# exemplar]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample<'a> {
    pub name: Name<'a>,
    /// The pairs between the braces (after the quoted name, if the name is
    /// inside them); empty when the sample has no labels.
    pub labels: &'a [u8],
    /// Where the `le` and `quantile` pairs are in `labels` (with their
    /// trailing comma), found during the one scan of the line, so that
    /// series identity needs no second pass.
    pub le: Option<(usize, usize)>,
    pub quantile: Option<(usize, usize)>,
}

impl Sample<'_> {
    /// The series this line belongs to: its labels without the family's
    /// structural label (`le` of a histogram, `quantile` of a summary), so
    /// that every line of one series has the same identity. Borrows when
    /// the structural label is last (the usual case); otherwise assembles
    /// the identity in `scratch`.
    pub fn series_identity<'s>(
        &'s self,
        kind: super::FamilyType,
        scratch: &'s mut Vec<u8>,
    ) -> &'s [u8] {
        use super::family::StructuralLabel;
        let labels = self.labels;
        let cut = match kind.structural_label() {
            Some(StructuralLabel::Le) => self.le,
            Some(StructuralLabel::Quantile) => self.quantile,
            None => None,
        };
        match cut {
            Some((start, end)) if trim_separators(&labels[end..]).is_empty() => {
                trim_separators(&labels[..start])
            }
            Some((start, end)) => {
                scratch.clear();
                scratch.extend_from_slice(&labels[..start]);
                scratch.extend_from_slice(&labels[end..]);
                trim_separators(scratch)
            }
            None => trim_separators(labels),
        }
    }
}

/// A label section without trailing separators, so `a="1",le="2"` minus
/// its `le` pair and `a="1"` name the same series.
pub fn trim_separators(labels: &[u8]) -> &[u8] {
    let end = labels
        .iter()
        .rposition(|&b| !matches!(b, b',' | b' ' | b'\t'))
        .map_or(0, |i| i + 1);
    &labels[..end]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKind {
    Help,
    Type,
    Unit,
}

/// `# HELP name text`, `# TYPE name type` or `# UNIT name unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata<'a> {
    pub kind: MetaKind,
    pub name: Name<'a>,
    /// The rest of the line after the name, as written (HELP still escaped).
    pub value: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    Blank,
    Sample(Sample<'a>),
    Metadata(Metadata<'a>),
    /// Any other `#` line.
    Comment,
    /// OpenMetrics' terminator.
    Eof,
    /// Not understood: emitted verbatim, never judged.
    Invalid,
}

/// Byte classes of the name grammar, as one table lookup per byte.
const METRIC_START: u8 = 1;
const METRIC_CHAR: u8 = 2;
const LABEL_CHAR: u8 = 4;
const CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let alpha = c.is_ascii_alphabetic() || c == b'_';
        let digit = c.is_ascii_digit();
        if alpha || c == b':' {
            t[b] |= METRIC_START | METRIC_CHAR;
        }
        if digit {
            t[b] |= METRIC_CHAR;
        }
        if alpha || digit {
            t[b] |= LABEL_CHAR;
        }
        b += 1;
    }
    t
};

fn is_metric_name_start(b: u8) -> bool {
    CLASSES[b as usize] & METRIC_START != 0
}

fn is_metric_name_char(b: u8) -> bool {
    CLASSES[b as usize] & METRIC_CHAR != 0
}

fn is_label_char(b: u8) -> bool {
    CLASSES[b as usize] & LABEL_CHAR != 0
}

/// The index of the first `"` or `\` at or after `i`, eight bytes at a
/// time: label values are mostly 5–40 bytes, too short for a vectorised
/// search to pay off and long enough for a byte loop to dominate.
#[inline]
fn quote_or_escape(line: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = ONES * b'"' as u64;
    const SLASHES: u64 = ONES * b'\\' as u64;
    while let Some(word) = line.get(i..i + 8) {
        let w = u64::from_le_bytes(word.try_into().ok()?);
        let q = w ^ QUOTES;
        let e = w ^ SLASHES;
        // Bytes that became zero: exact for the lowest set bit.
        let hits = (q.wrapping_sub(ONES) & !q | e.wrapping_sub(ONES) & !e) & HIGHS;
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    line[i..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|p| i + p)
}

/// The end of a bare metric name starting at `from` (exclusive).
fn bare_name_end(bytes: &[u8], from: usize) -> Option<usize> {
    if from >= bytes.len() || !is_metric_name_start(bytes[from]) {
        return None;
    }
    let mut e = from + 1;
    while e < bytes.len() && is_metric_name_char(bytes[e]) {
        e += 1;
    }
    Some(e)
}

fn skip_blanks(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
        i += 1;
    }
    i
}

/// Reads a bare or quoted name at `from`; returns it and where it ends.
fn read_name(bytes: &[u8], from: usize) -> Option<(Name<'_>, usize)> {
    if bytes.get(from) == Some(&b'"') {
        let close = closing_quote(bytes, from + 1)?;
        let name = Name {
            raw: &bytes[from + 1..close],
            quoted: true,
        };
        return Some((name, close + 1));
    }
    let end = bare_name_end(bytes, from)?;
    Some((
        Name {
            raw: &bytes[from..end],
            quoted: false,
        },
        end,
    ))
}

/// Classifies one line. `line` excludes the LF; a trailing CR is ignored.
pub fn parse_line(line: &[u8]) -> Line<'_> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let start = skip_blanks(line, 0);
    match line.get(start) {
        None => Line::Blank,
        Some(b'#') => parse_comment(&line[start..]),
        Some(_) => parse_sample(&line[start..]).map_or(Line::Invalid, Line::Sample),
    }
}

fn parse_comment(line: &[u8]) -> Line<'_> {
    if line == b"# EOF" {
        return Line::Eof;
    }
    let Some(rest) = line.strip_prefix(b"# ") else {
        return Line::Comment;
    };
    let (kind, rest) = if let Some(r) = rest.strip_prefix(b"HELP ") {
        (MetaKind::Help, r)
    } else if let Some(r) = rest.strip_prefix(b"TYPE ") {
        (MetaKind::Type, r)
    } else if let Some(r) = rest.strip_prefix(b"UNIT ") {
        (MetaKind::Unit, r)
    } else {
        return Line::Comment;
    };
    let from = skip_blanks(rest, 0);
    let Some((name, end)) = read_name(rest, from) else {
        return Line::Invalid;
    };
    let value = match rest.get(end) {
        None => &rest[end..],
        Some(b' ' | b'\t') => &rest[end + 1..],
        Some(_) => return Line::Invalid,
    };
    Line::Metadata(Metadata { kind, name, value })
}

fn parse_sample(line: &[u8]) -> Option<Sample<'_>> {
    let (name, after_name, labels_from) = if line[0] == b'{' {
        // `{"quoted.name", label="v"} 1`: the name is the first element.
        let at = skip_blanks(line, 1);
        let (name, end) = read_name(line, at)?;
        if !name.quoted {
            return None;
        }
        let next = skip_blanks(line, end);
        match line.get(next)? {
            b',' => (name, None, next + 1),
            b'}' => (name, Some(next + 1), next),
            _ => return None,
        }
    } else {
        let (name, end) = read_name(line, 0)?;
        if name.quoted {
            return None;
        }
        match line.get(end) {
            Some(b'{') => (name, None, end + 1),
            _ => (name, Some(end), end),
        }
    };
    let (labels, rest_from, le, quantile) = match after_name {
        Some(end) => (&line[labels_from..labels_from], end, None, None),
        None => {
            let scan = scan_labels(line, labels_from)?;
            (
                &line[labels_from..scan.close],
                scan.close + 1,
                scan.le,
                scan.quantile,
            )
        }
    };
    // A value must follow, separated by whitespace.
    let value_at = skip_blanks(line, rest_from);
    if value_at == rest_from || value_at >= line.len() {
        return None;
    }
    Some(Sample {
        name,
        labels,
        le,
        quantile,
    })
}

struct LabelScan {
    close: usize,
    le: Option<(usize, usize)>,
    quantile: Option<(usize, usize)>,
}

/// Validates the pairs of a label section starting at `from` in one pass
/// and finds its closing `}`. Ranges are relative to `from`. This is the
/// hot loop of the filter: plain byte loops, because label names and
/// values are short and a vectorised search costs more to set up than it
/// saves on them.
fn scan_labels(line: &[u8], from: usize) -> Option<LabelScan> {
    let len = line.len();
    let mut scan = LabelScan {
        close: 0,
        le: None,
        quantile: None,
    };
    let mut i = from;
    loop {
        i = skip_blanks(line, i);
        let pair_start = i;
        match *line.get(i)? {
            b'}' => {
                scan.close = i;
                return Some(scan);
            }
            b'"' => {
                i = closing_quote(line, i + 1)? + 1;
            }
            b if b.is_ascii_alphabetic() || b == b'_' => {
                i += 1;
                while i < len && is_label_char(line[i]) {
                    i += 1;
                }
            }
            _ => return None,
        }
        let name = &line[pair_start..i];
        i = skip_blanks(line, i);
        if line.get(i) != Some(&b'=') {
            return None;
        }
        i = skip_blanks(line, i + 1);
        if line.get(i) != Some(&b'"') {
            return None;
        }
        i += 1;
        loop {
            i = quote_or_escape(line, i)?;
            if line[i] == b'"' {
                break;
            }
            i += 2;
        }
        i = skip_blanks(line, i + 1);
        let pair_end = match *line.get(i)? {
            b',' => {
                i += 1;
                i
            }
            b'}' => i,
            _ => return None,
        };
        let range = Some((pair_start - from, pair_end - from));
        match name {
            b"le" | b"\"le\"" => scan.le = range,
            b"quantile" | b"\"quantile\"" => scan.quantile = range,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(line: &str) -> (String, String) {
        match parse_line(line.as_bytes()) {
            Line::Sample(s) => (
                s.name.decoded().unwrap().into_owned(),
                String::from_utf8(s.labels.to_vec()).unwrap(),
            ),
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn samples_with_and_without_labels() {
        assert_eq!(sample("up 1"), ("up".into(), "".into()));
        assert_eq!(
            sample(r#"http_requests_total{code="200",path="/a b"} 12 1700000000000"#),
            (
                "http_requests_total".into(),
                r#"code="200",path="/a b""#.into()
            )
        );
        assert_eq!(sample("ns:rule_x\t3.5\r"), ("ns:rule_x".into(), "".into()));
        assert_eq!(sample("  indented 1"), ("indented".into(), "".into()));
    }

    #[test]
    fn quoted_utf8_names_inside_braces() {
        assert_eq!(
            sample(r#"{"my.metric", "my.label"="v"} 1"#),
            ("my.metric".into(), r#" "my.label"="v""#.into())
        );
        assert_eq!(
            sample(r#"{"only.name"} 2"#),
            ("only.name".into(), "".into())
        );
        assert_eq!(
            sample(r#"{"esc\"aped"} 2"#),
            ("esc\"aped".into(), "".into())
        );
    }

    #[test]
    fn a_hash_inside_a_label_value_is_not_an_exemplar() {
        let line = r##"foo_bucket{le="1",note="a # b"} 6 # {trace_id="abc"} 0.5 1.6e9"##;
        assert_eq!(sample(line).1, r##"le="1",note="a # b""##);
    }

    #[test]
    fn metadata_lines() {
        let Line::Metadata(m) = parse_line(br"# HELP foo Some \\ help") else {
            panic!()
        };
        assert_eq!(
            (m.kind, m.name.raw, m.value),
            (MetaKind::Help, &b"foo"[..], &br"Some \\ help"[..])
        );
        let Line::Metadata(m) = parse_line(br#"# TYPE "my.metric" counter"#) else {
            panic!()
        };
        assert_eq!(
            (m.kind, m.name.raw, m.value),
            (MetaKind::Type, &b"my.metric"[..], &b"counter"[..])
        );
        assert!(m.name.quoted);
        let Line::Metadata(m) = parse_line(b"# HELP bare") else {
            panic!()
        };
        assert_eq!(m.value, b"");
        assert_eq!(
            parse_line(b"# UNIT foo_seconds seconds").to_owned(),
            parse_line(b"# UNIT foo_seconds seconds")
        );
    }

    #[test]
    fn other_lines() {
        assert_eq!(parse_line(b"# EOF"), Line::Eof);
        assert_eq!(parse_line(b"# EOF\r"), Line::Eof);
        assert_eq!(parse_line(b"# just a comment"), Line::Comment);
        assert_eq!(parse_line(b"#HELP x"), Line::Comment);
        assert_eq!(parse_line(b""), Line::Blank);
        assert_eq!(parse_line(b"  \r"), Line::Blank);
        for bad in [
            "foo",
            "foo{",
            r#"foo{a="1" 1"#,
            r#"foo{a="1"}"#,
            "1foo 2",
            r#"foo{a=1} 2"#,
            r#"{bare} 1"#,
            "# TYPE 9bad counter",
        ] {
            assert_eq!(parse_line(bad.as_bytes()), Line::Invalid, "{bad}");
        }
    }
}

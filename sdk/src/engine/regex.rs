//! RE2 semantics on top of Rust's `regex`.
//!
//! Policies are written in RE2 syntax. Rust's `regex` accepts nearly the
//! same language but makes `\d`, `\w`, `\s` and `\b` Unicode-aware, where RE2
//! keeps them ASCII: `\d` would match `٣` here and not in every other Tero
//! implementation. [`translate`] rewrites those escapes to explicit ASCII
//! classes, located through the parsed syntax tree (so escapes inside
//! character classes and escaped backslashes are handled), before compiling.
//! Look-around and backreferences are rejected by the parser, as RE2 does.

use regex_syntax::ast::{self, Ast, ClassPerlKind, ClassSetItem, Visitor};

/// A regex compiled with RE2 semantics.
pub(crate) fn build(pattern: &str, case_insensitive: bool) -> Result<regex::Regex, String> {
    let translated = translate(pattern, case_insensitive)?;
    regex::RegexBuilder::new(&translated)
        .size_limit(16 << 20)
        .build()
        .map_err(|e| error_detail(&e.to_string()))
}

/// Rewrites an RE2 pattern into an equivalent Rust pattern; the syntax check
/// happens here, so an invalid pattern fails with the parser's explanation.
pub(crate) fn translate(pattern: &str, case_insensitive: bool) -> Result<String, String> {
    let parsed = ast::parse::Parser::new()
        .parse(pattern)
        .map_err(|e| error_detail(&e.to_string()))?;
    let mut edits = Vec::new();
    ast::visit(&parsed, AsciiEscapes { edits: &mut edits })?;
    edits.sort_by_key(|e: &(usize, usize, &str)| e.0);
    let mut out = String::with_capacity(pattern.len() + 16);
    if case_insensitive {
        out.push_str("(?i)");
    }
    let mut last = 0;
    for (start, end, replacement) in edits {
        out.push_str(&pattern[last..start]);
        out.push_str(replacement);
        last = end;
    }
    out.push_str(&pattern[last..]);
    // Semantic errors (e.g. a class range out of order) surface only when
    // translating to HIR.
    regex_syntax::ParserBuilder::new()
        .build()
        .parse(&out)
        .map_err(|e| error_detail(&e.to_string()))?;
    Ok(out)
}

/// The last line of a regex error is the explanation; the lines before it
/// repeat the pattern with a caret, which does not fit a one-line message.
fn error_detail(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim()
        .trim_start_matches("error: ")
        .to_owned()
}

struct AsciiEscapes<'a> {
    edits: &'a mut Vec<(usize, usize, &'static str)>,
}

fn perl_replacement(kind: &ClassPerlKind, negated: bool) -> &'static str {
    // Bracketed forms are valid both at top level and nested in a class.
    match (kind, negated) {
        (ClassPerlKind::Digit, false) => "[0-9]",
        (ClassPerlKind::Digit, true) => "[^0-9]",
        (ClassPerlKind::Word, false) => "[0-9A-Za-z_]",
        (ClassPerlKind::Word, true) => "[^0-9A-Za-z_]",
        (ClassPerlKind::Space, false) => r"[\t\n\f\r ]",
        (ClassPerlKind::Space, true) => r"[^\t\n\f\r ]",
    }
}

impl Visitor for AsciiEscapes<'_> {
    type Output = ();
    type Err = String;

    fn finish(self) -> Result<(), String> {
        Ok(())
    }

    fn visit_pre(&mut self, node: &Ast) -> Result<(), String> {
        match node {
            // RE2 rejects what Rust accepts here: a repetition of a bare
            // repetition (`a**`, `a{2}{3}`) and counts above 1000.
            Ast::Repetition(rep) => {
                if matches!(*rep.ast, Ast::Repetition(_)) {
                    return Err("bad repetition operator".to_owned());
                }
                if let ast::RepetitionKind::Range(range) = &rep.op.kind {
                    let (ast::RepetitionRange::Exactly(n)
                    | ast::RepetitionRange::AtLeast(n)
                    | ast::RepetitionRange::Bounded(_, n)) = range;
                    let max = match range {
                        ast::RepetitionRange::Bounded(a, b) => (*a).max(*b),
                        _ => *n,
                    };
                    if max > 1000 {
                        return Err(format!(
                            "bad repetition count {max} (RE2 allows at most 1000)"
                        ));
                    }
                }
            }
            Ast::ClassPerl(class) => {
                self.edits.push((
                    class.span.start.offset,
                    class.span.end.offset,
                    perl_replacement(&class.kind, class.negated),
                ));
            }
            Ast::Assertion(a) => {
                let replacement = match a.kind {
                    ast::AssertionKind::WordBoundary => r"(?-u:\b)",
                    ast::AssertionKind::NotWordBoundary => r"(?-u:\B)",
                    _ => return Ok(()),
                };
                self.edits
                    .push((a.span.start.offset, a.span.end.offset, replacement));
            }
            _ => {}
        }
        Ok(())
    }

    fn visit_class_set_item_pre(&mut self, item: &ClassSetItem) -> Result<(), String> {
        if let ClassSetItem::Perl(class) = item {
            self.edits.push((
                class.span.start.offset,
                class.span.end.offset,
                perl_replacement(&class.kind, class.negated),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_match(pattern: &str, haystack: &str) -> bool {
        build(pattern, false).unwrap().is_match(haystack)
    }

    #[test]
    fn perl_classes_are_ascii_like_re2() {
        assert!(is_match(r"^\d+$", "123"));
        assert!(
            !is_match(r"^\d+$", "١٢٣"),
            "Arabic-Indic digits are not \\d in RE2"
        );
        assert!(is_match(r"^\D$", "é"));
        assert!(!is_match(r"^\w+$", "héllo"));
        assert!(is_match(r"^[\w.]+$", "a.b_c"));
        assert!(!is_match(r"^[\w.]+$", "a.bé"));
        assert!(is_match(r"^\s$", "\t"));
        assert!(!is_match(r"^\s$", "\u{00a0}"));
        assert!(is_match(r"\bfoo\b", "a foo b"));
        // An escaped backslash followed by `d` is a literal, not a class.
        assert!(is_match(r"^\\d$", r"\d"));
    }

    #[test]
    fn unanchored_search_and_flags() {
        assert!(is_match("err", "an error happened"));
        assert!(build("ERROR", true).unwrap().is_match("error"));
        assert!(is_match("(?i)warn", "WARNING"));
    }

    #[test]
    fn rejects_what_re2_rejects() {
        assert!(build("([bad", false).is_err());
        assert!(build(r"(?=x)", false).is_err(), "look-ahead");
        assert!(build(r"(a)\1", false).is_err(), "backreference");
        let err = build("([bad", false).unwrap_err();
        assert!(!err.contains('\n'), "one-line detail: {err}");
    }
}

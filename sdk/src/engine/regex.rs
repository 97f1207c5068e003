//! RE2 semantics on top of Rust's `regex`, within a memory budget.
//!
//! Policies are written in RE2 syntax. Rust's `regex` accepts nearly the
//! same language but makes `\d`, `\w`, `\s` and `\b` Unicode-aware, where RE2
//! keeps them ASCII: `\d` would match `٣` here and not in every other Tero
//! implementation. [`translate`] rewrites those escapes to explicit ASCII
//! classes, located through the parsed syntax tree (so escapes inside
//! character classes and escaped backslashes are handled), before compiling.
//! Look-around and backreferences are rejected by the parser, as RE2 does.
//!
//! Memory: a Unicode class such as `.` compiles to a UTF-8 automaton many
//! times the size of its ASCII counterpart, and `.{0,200}` repeats it 200
//! times. Metric names are ASCII and most label values are too, so a
//! [`Matcher`] first compiles its patterns with every class cut down to
//! ASCII, which answers exactly for ASCII text, and builds the full Unicode
//! automaton only when a non-ASCII value shows up. A single pattern, only
//! ever asked whether it matches, runs as a forward lazy DFA with a bounded
//! per-thread cache; sets of patterns use the meta engine without its
//! eagerly built one-pass DFA. A policy's regexes may compile to at most
//! [`POLICY_REGEX_BUDGET`] bytes.

use std::sync::OnceLock;

use regex_automata::hybrid;
use regex_automata::nfa::thompson::{self, WhichCaptures, pikevm::PikeVM};
use regex_automata::util::pool::Pool;
use regex_automata::{Input, MatchKind, PatternSet, meta};
use regex_syntax::ast::{self, Ast, ClassPerlKind, ClassSetItem, Visitor};
use regex_syntax::hir::{
    Capture, Class, ClassBytes, ClassBytesRange, ClassUnicode, ClassUnicodeRange, Hir, HirKind,
    Repetition,
};

/// What the regexes of one policy may compile to, in bytes of automaton
/// (the Thompson NFA of the full Unicode pattern): 1 MiB. Ordinary
/// patterns take a few KiB; a pattern over the budget is refused by
/// validation, naming its field.
pub const POLICY_REGEX_BUDGET: usize = 1 << 20;

/// What the regexes of one field that have no usable literal (and so run
/// on every value of the field, as one automaton) may compile to together
/// on an Edge: 4 MiB. Policies are added in id order; one that would push
/// the automaton over is left out and reported, and the others run.
pub const SHARED_REGEX_BUDGET: usize = 4 << 20;

/// Lazy DFA transition cache of one compiled automaton, per thread that
/// uses it. The cache is cleared and refilled when full; an automaton too
/// large for it runs on the NFA simulation instead (slower, same answers).
pub(crate) const LAZY_DFA_CACHE: usize = 64 << 10;

/// A regex compiled with RE2 semantics, for log redaction (which needs
/// captures and replacement, so it uses `regex` itself).
pub(crate) fn build(pattern: &str, case_insensitive: bool) -> Result<regex::Regex, String> {
    let translated = translate(pattern, case_insensitive)?;
    // The budget was checked on the compiled size; this limit applies to
    // the compiler's working memory, about 1.5 times that.
    regex::RegexBuilder::new(&translated)
        .size_limit(POLICY_REGEX_BUDGET.saturating_mul(2))
        .dfa_size_limit(LAZY_DFA_CACHE)
        .build()
        .map_err(|e| error_detail(&e.to_string()))
}

/// Parses a translated pattern (see [`translate`]) into its syntax tree.
pub(crate) fn parse(translated: &str) -> Result<Hir, String> {
    regex_syntax::ParserBuilder::new()
        .build()
        .parse(translated)
        .map_err(|e| error_detail(&e.to_string()))
}

/// The compiled size of a translated pattern at full Unicode (the most an
/// Edge holds for it), or an error when it exceeds `limit` bytes.
pub(crate) fn compiled_size(translated: &str, limit: usize) -> Result<usize, SizeError> {
    let hir = parse(translated).map_err(SizeError::Invalid)?;
    // The compiler's own limit applies to its working memory, about 1.5
    // times the result: it only bounds the work, the result is measured.
    let nfa = thompson::Compiler::new()
        .configure(
            thompson::Config::new()
                .nfa_size_limit(Some(limit.saturating_mul(2)))
                .which_captures(WhichCaptures::Implicit),
        )
        .build_from_hir(&hir)
        .map_err(|e| {
            if e.size_limit().is_some() {
                SizeError::TooLarge
            } else {
                SizeError::Invalid(error_detail(&e.to_string()))
            }
        })?;
    match nfa.memory_usage() {
        size if size > limit => Err(SizeError::TooLarge),
        size => Ok(size),
    }
}

#[derive(Debug)]
pub(crate) enum SizeError {
    TooLarge,
    Invalid(String),
}

/// The engine of pattern sets. A set must report every pattern that
/// matches anywhere, which only all-match semantics guarantee (as
/// `regex::RegexSet` does).
fn set_config(nfa_limit: usize) -> meta::Config {
    meta::Config::new()
        .match_kind(MatchKind::All)
        .nfa_size_limit(Some(nfa_limit))
        .which_captures(WhichCaptures::Implicit)
        // Only pattern sets are asked for: the one-pass DFA and the
        // backtracker serve capture searches, and would each hold memory
        // per regex (eagerly) or per thread.
        .onepass(false)
        .backtrack(false)
        .hybrid_cache_capacity(LAZY_DFA_CACHE)
}

/// One or more patterns compiled together, matched ASCII-first.
pub(crate) struct Matcher {
    /// Every class cut down to ASCII: exact for ASCII text.
    ascii: Automaton,
    /// The patterns as written, when cutting changed them; compiled on the
    /// first non-ASCII value.
    unicode: Option<Unicode>,
}

struct Unicode {
    hirs: Vec<Hir>,
    nfa_limit: usize,
    built: OnceLock<Option<Automaton>>,
}

impl Unicode {
    fn automaton(&self) -> Option<&Automaton> {
        self.built
            .get_or_init(|| {
                Automaton::new(&self.hirs, self.nfa_limit)
                    .inspect_err(|e| tracing::error!(error = %e, "regex could not be compiled for non-ASCII values; they do not match it"))
                    .ok()
            })
            .as_ref()
    }
}

/// A compiled pattern, or a set of them.
enum Automaton {
    /// One pattern, only ever asked "does it match": a forward lazy DFA
    /// is enough, without the reverse automaton and the per-thread caches
    /// of the other engines that a general regex carries.
    Forward(Box<Forward>),
    /// Several patterns, asked which of them match.
    Set(meta::Regex),
}

type CacheFn = Box<dyn Fn() -> ForwardCache + Send + Sync>;

struct Forward {
    /// `None` when the NFA is too large for the cache capacity: the NFA
    /// simulation answers alone.
    dfa: Option<hybrid::dfa::DFA>,
    pikevm: PikeVM,
    caches: Pool<ForwardCache, CacheFn>,
}

struct ForwardCache {
    dfa: Option<hybrid::dfa::Cache>,
    /// Made only when the lazy DFA gives up (its cache thrashing).
    pikevm: Option<thompson::pikevm::Cache>,
}

impl Automaton {
    fn new(hirs: &[Hir], nfa_limit: usize) -> Result<Automaton, String> {
        if hirs.len() != 1 {
            return meta::Builder::new()
                .configure(set_config(nfa_limit))
                .build_many_from_hir(hirs)
                .map(Automaton::Set)
                .map_err(|e| error_detail(&e.to_string()));
        }
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .nfa_size_limit(Some(nfa_limit))
                    .which_captures(WhichCaptures::Implicit),
            )
            .build_from_hir(&hirs[0])
            .map_err(|e| error_detail(&e.to_string()))?;
        let dfa = hybrid::dfa::DFA::builder()
            .configure(
                hybrid::dfa::DFA::config()
                    .cache_capacity(LAZY_DFA_CACHE)
                    // As the meta engine does: give up on a cache that is
                    // cleared over and over, and use the NFA simulation.
                    .minimum_cache_clear_count(Some(3))
                    .minimum_bytes_per_state(Some(10)),
            )
            .build_from_nfa(nfa.clone())
            .ok();
        let pikevm = PikeVM::new_from_nfa(nfa).map_err(|e| error_detail(&e.to_string()))?;
        let for_caches = dfa.clone();
        let create: CacheFn = Box::new(move || ForwardCache {
            dfa: for_caches.as_ref().map(hybrid::dfa::DFA::create_cache),
            pikevm: None,
        });
        Ok(Automaton::Forward(Box::new(Forward {
            dfa,
            pikevm,
            caches: Pool::new(create),
        })))
    }

    fn is_match(&self, text: &str) -> bool {
        let forward = match self {
            Automaton::Set(set) => return set.is_match(text),
            Automaton::Forward(forward) => forward,
        };
        let input = Input::new(text).earliest(true);
        let mut cache = forward.caches.get();
        if let (Some(dfa), Some(dfa_cache)) = (&forward.dfa, cache.dfa.as_mut())
            && let Ok(found) = dfa.try_search_fwd(dfa_cache, &input)
        {
            return found.is_some();
        }
        let pikevm_cache = cache
            .pikevm
            .get_or_insert_with(|| forward.pikevm.create_cache());
        forward.pikevm.is_match(pikevm_cache, input)
    }

    fn each_match(&self, text: &str, mut f: impl FnMut(usize)) {
        match self {
            Automaton::Forward(_) => {
                if self.is_match(text) {
                    f(0);
                }
            }
            Automaton::Set(set) => {
                let mut found = PatternSet::new(set.pattern_len());
                set.which_overlapping_matches(&Input::new(text), &mut found);
                found.iter().for_each(|p| f(p.as_usize()));
            }
        }
    }
}

impl Matcher {
    /// Compiles translated patterns (pattern `i` reports as `i`), each
    /// within [`POLICY_REGEX_BUDGET`].
    pub(crate) fn new(translated: &[&str]) -> Result<Matcher, String> {
        let hirs = translated
            .iter()
            .map(|p| parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        let ascii: Vec<Hir> = hirs.iter().map(ascii_only).collect();
        // Each pattern was measured against the budget; the limit here
        // leaves room for the compiler's working memory.
        let nfa_limit = POLICY_REGEX_BUDGET.saturating_mul(2 * hirs.len().max(1));
        let automaton = Automaton::new(&ascii, nfa_limit)?;
        let unicode = (ascii != hirs).then(|| Unicode {
            hirs,
            nfa_limit,
            built: OnceLock::new(),
        });
        Ok(Matcher {
            ascii: automaton,
            unicode,
        })
    }

    fn automaton_for(&self, text: &str) -> Option<&Automaton> {
        match &self.unicode {
            Some(unicode) if !text.is_ascii() => unicode.automaton(),
            _ => Some(&self.ascii),
        }
    }

    pub(crate) fn is_match(&self, text: &str) -> bool {
        self.automaton_for(text).is_some_and(|a| a.is_match(text))
    }

    /// Calls `f` with the index of every pattern that matches `text`.
    pub(crate) fn each_match(&self, text: &str, f: impl FnMut(usize)) {
        if let Some(automaton) = self.automaton_for(text) {
            automaton.each_match(text, f);
        }
    }
}

/// `hir` with every class intersected with ASCII. On ASCII text it matches
/// exactly where `hir` does: a match there consumes only ASCII characters.
fn ascii_only(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Class(Class::Unicode(class)) => {
            let mut class = class.clone();
            class.intersect(&ClassUnicode::new([ClassUnicodeRange::new('\0', '\x7f')]));
            Hir::class(Class::Unicode(class))
        }
        HirKind::Class(Class::Bytes(class)) => {
            let mut class = class.clone();
            class.intersect(&ClassBytes::new([ClassBytesRange::new(0, 0x7f)]));
            Hir::class(Class::Bytes(class))
        }
        HirKind::Repetition(rep) => Hir::repetition(Repetition {
            sub: Box::new(ascii_only(&rep.sub)),
            ..rep.clone()
        }),
        HirKind::Capture(cap) => Hir::capture(Capture {
            sub: Box::new(ascii_only(&cap.sub)),
            ..cap.clone()
        }),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(ascii_only).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(ascii_only).collect()),
        HirKind::Empty | HirKind::Literal(_) | HirKind::Look(_) => hir.clone(),
    }
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
    parse(&out)?;
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

#[cfg(test)]
mod matcher_tests {
    use super::*;

    fn matcher(pattern: &str, ci: bool) -> Matcher {
        Matcher::new(&[&translate(pattern, ci).unwrap()]).unwrap()
    }

    #[test]
    fn ascii_first_matching_keeps_unicode_semantics() {
        // `.` is a character, not a byte: two characters, whatever they are.
        let two = matcher("^.{2}$", false);
        assert!(two.is_match("ab"));
        assert!(
            two.is_match("éa"),
            "non-ASCII text uses the Unicode automaton"
        );
        assert!(two.is_match("日本"));
        assert!(!two.is_match("abc"));
        assert!(!two.is_match("a\n"), "`.` excludes newline");
        // Case folding reaches beyond ASCII (K, KELVIN SIGN).
        let k = matcher("^k$", true);
        assert!(k.is_match("K"));
        assert!(k.is_match("\u{212a}"));
        // A negated class matches non-ASCII characters.
        let not_digit = matcher(r"^[^0-9]+$", false);
        assert!(not_digit.is_match("é"));
        assert!(not_digit.is_match("x"));
        // A non-ASCII literal never matches ASCII text, and does match itself.
        let literal = matcher("^é+$", false);
        assert!(!literal.is_match("e"));
        assert!(literal.is_match("éé"));
    }

    #[test]
    fn forward_search_is_unanchored_and_falls_back_on_large_automata() {
        let m = matcher("foo.*bar", false);
        assert!(m.is_match("xx foo yy bar zz"));
        assert!(!m.is_match("bar then foo"));
        // Too large for the lazy DFA cache: the NFA simulation answers.
        let big = matcher(r"^a(\w{100}){30}$", false);
        assert!(big.is_match(&format!("a{}", "x".repeat(3000))));
        assert!(!big.is_match(&format!("a{}", "x".repeat(2999))));
        assert!(!big.is_match(&format!("a{}é", "x".repeat(2999))));
    }

    #[test]
    fn pattern_sets_report_every_matching_pattern() {
        let patterns: Vec<String> = ["^.{3}$", "[0-9]", "^[^a]"]
            .iter()
            .map(|p| translate(p, false).unwrap())
            .collect();
        let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
        let set = Matcher::new(&refs).unwrap();
        let matches = |text: &str| {
            let mut out = Vec::new();
            set.each_match(text, |i| out.push(i));
            out.sort_unstable();
            out
        };
        assert_eq!(matches("b12"), [0, 1, 2]);
        assert_eq!(matches("aé1"), [0, 1]);
        assert_eq!(matches("aaaa"), Vec::<usize>::new());
    }

    #[test]
    fn compiled_size_is_bounded_and_measured_at_full_unicode() {
        let any = compiled_size(&translate("^.{0,200}$", false).unwrap(), 1 << 20).unwrap();
        let ascii = compiled_size(&translate("^[ -~]{0,200}$", false).unwrap(), 1 << 20).unwrap();
        assert!(any > ascii, "`.` is measured as Unicode: {any} vs {ascii}");
        assert!(matches!(
            compiled_size(&translate(r"(\w{1000}){1000}", false).unwrap(), 1 << 20),
            Err(SizeError::TooLarge)
        ));
    }
}

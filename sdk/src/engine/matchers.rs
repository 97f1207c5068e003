//! All matchers of one field, compiled into a handful of automata.
//!
//! Evaluation must not loop over policies. Every matcher that reads the same
//! field is grouped into one [`FieldIndex`]: exact values into a hash map,
//! prefixes and suffixes into anchored Aho-Corasick automata, substrings
//! into one unanchored automaton, regexes behind a literal prefilter, typed
//! values into a hash map and numeric bounds into sorted arrays. Looking up
//! one value then costs a few automaton passes over that value, and the work
//! after that is proportional to the matchers that actually fire.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Anchored, Input, MatchKind, StartKind};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use rustc_hash::FxHashMap;

use super::regex::{Matcher, SHARED_REGEX_BUDGET, SizeError, compiled_size};
use super::scratch::Scratch;
use super::value::{FieldValue, Number, TypedKey};

/// Index of a matcher in the compiled engine.
pub(crate) type MatcherId = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextOp {
    Exact,
    Prefix,
    Suffix,
    Contains,
    Regex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// The inner condition of one matcher, before negation.
#[derive(Debug, Clone)]
pub(crate) enum Pattern {
    /// The field is present (non-empty).
    Exists,
    /// A string condition. Regex patterns are already translated to RE2
    /// semantics; `case_insensitive` is handled by folding (or `(?i)`).
    Text {
        op: TextOp,
        pattern: String,
        case_insensitive: bool,
    },
    /// Typed equality with a non-string operand.
    Typed(TypedKey),
    /// A numeric comparison.
    Compare(CmpOp, Number),
    /// Can never hold (e.g. `equals` NaN).
    Never,
}

/// Matchers of one field.
#[derive(Default)]
pub(crate) struct FieldIndex {
    exists: Vec<MatcherId>,
    sensitive: TextIndex,
    insensitive: Option<TextIndex>,
    regexes: Option<RegexIndex>,
    typed: FxHashMap<TypedKey, Vec<MatcherId>>,
    bounds: Bounds,
}

#[derive(Default)]
struct TextIndex {
    exact: FxHashMap<Box<str>, Vec<MatcherId>>,
    prefix: Option<Automaton>,
    suffix: Option<Automaton>,
    contains: Option<Automaton>,
}

/// An Aho-Corasick automaton and the matchers each of its patterns serves.
struct Automaton {
    ac: AhoCorasick,
    ids: Vec<Vec<MatcherId>>,
}

#[derive(Default)]
struct Bounds {
    /// Each list sorted ascending by operand.
    gt: Vec<(Number, MatcherId)>,
    gte: Vec<(Number, MatcherId)>,
    lt: Vec<(Number, MatcherId)>,
    lte: Vec<(Number, MatcherId)>,
}

/// Regexes behind a literal prefilter: a regex whose every match must
/// contain one of a few literals runs only when a prefilter automaton finds
/// such a literal in the value. Literals of `^`-anchored regexes can only
/// occur at the start, so they go into an anchored automaton that stops at
/// the first byte no literal shares. The rest (no usable literal) run as one
/// set.
struct RegexIndex {
    prefiltered: Vec<(Arc<Matcher>, MatcherId)>,
    anchored: Option<Automaton>,
    unanchored: Option<Automaton>,
    residual: Option<(Matcher, Vec<MatcherId>)>,
}

/// Compiled regexes by translated pattern, so that a pattern many policies
/// share is compiled (and held) once per engine.
#[derive(Default)]
pub(crate) struct RegexCache {
    compiled: FxHashMap<String, Arc<Matcher>>,
}

impl RegexCache {
    pub(crate) fn get(&mut self, pattern: &str) -> Result<Arc<Matcher>, String> {
        if let Some(m) = self.compiled.get(pattern) {
            return Ok(m.clone());
        }
        let m = Arc::new(Matcher::new(&[pattern])?);
        self.compiled.insert(pattern.to_owned(), m.clone());
        Ok(m)
    }
}

impl FieldIndex {
    /// Builds the index, leaving out (and returning, with the reason) the
    /// matchers that do not fit in the field's shared regex automaton.
    pub(crate) fn build(
        patterns: Vec<(MatcherId, Pattern)>,
        cache: &mut RegexCache,
    ) -> Result<(Self, Vec<(MatcherId, String)>), String> {
        let mut index = FieldIndex::default();
        let mut sensitive = TextPatterns::default();
        let mut insensitive = TextPatterns::default();
        let mut regexes: Vec<(String, MatcherId)> = Vec::new();
        for (id, pattern) in patterns {
            match pattern {
                Pattern::Exists => index.exists.push(id),
                Pattern::Never => {}
                Pattern::Typed(key) => index.typed.entry(key).or_default().push(id),
                Pattern::Compare(op, operand) => {
                    let list = match op {
                        CmpOp::Gt => &mut index.bounds.gt,
                        CmpOp::Gte => &mut index.bounds.gte,
                        CmpOp::Lt => &mut index.bounds.lt,
                        CmpOp::Lte => &mut index.bounds.lte,
                    };
                    list.push((operand, id));
                }
                Pattern::Text {
                    op: TextOp::Regex,
                    pattern,
                    ..
                } => regexes.push((pattern, id)),
                Pattern::Text {
                    op,
                    pattern,
                    case_insensitive: false,
                } => sensitive.push(op, pattern, id),
                Pattern::Text {
                    op,
                    pattern,
                    case_insensitive: true,
                } => insensitive.push(op, fold_case(&pattern), id),
            }
        }
        for list in [
            &mut index.bounds.gt,
            &mut index.bounds.gte,
            &mut index.bounds.lt,
            &mut index.bounds.lte,
        ] {
            list.sort_by(|a, b| a.0.cmp(b.0));
        }
        index.sensitive = sensitive.build()?;
        if !insensitive.is_empty() {
            index.insensitive = Some(insensitive.build()?);
        }
        let mut left_out = Vec::new();
        if !regexes.is_empty() {
            let (regex_index, rejected) = RegexIndex::build(regexes, cache)?;
            index.regexes = Some(regex_index);
            left_out = rejected;
        }
        Ok((index, left_out))
    }

    /// Reports every matcher whose inner condition holds for `value`.
    pub(crate) fn collect(&self, value: Option<&FieldValue<'_>>, scratch: &mut Scratch) {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return;
        };
        for &id in &self.exists {
            scratch.fire(id);
        }
        if let Some(text) = value.text() {
            self.sensitive.collect(&text, scratch);
            if let Some(ci) = &self.insensitive {
                let mut folded = std::mem::take(&mut scratch.folded);
                folded.clear();
                folded.extend(text.chars().flat_map(char::to_lowercase));
                ci.collect(&folded, scratch);
                scratch.folded = folded;
            }
            if let Some(regexes) = &self.regexes {
                regexes.collect(&text, scratch);
            }
        }
        if !self.typed.is_empty()
            && let Some(ids) = TypedKey::of(value).and_then(|k| self.typed.get(&k))
        {
            ids.iter().for_each(|&id| scratch.fire(id));
        }
        if let Some(n) = value.number() {
            self.bounds.collect(n, scratch);
        }
    }
}

/// One matcher compiled on its own, for the non-anchor matchers of a
/// policy that are checked only once its anchor fired.
pub(crate) enum Single {
    Exists,
    Text {
        op: TextOp,
        pattern: String,
        case_insensitive: bool,
        regex: Option<Arc<Matcher>>,
    },
    Typed(TypedKey),
    Compare(CmpOp, Number),
    Never,
}

impl Single {
    pub(crate) fn build(pattern: Pattern, cache: &mut RegexCache) -> Result<Single, String> {
        Ok(match pattern {
            Pattern::Exists => Single::Exists,
            Pattern::Never => Single::Never,
            Pattern::Typed(k) => Single::Typed(k),
            Pattern::Compare(op, n) => Single::Compare(op, n),
            Pattern::Text {
                op: TextOp::Regex,
                pattern,
                case_insensitive,
            } => {
                let regex = cache.get(&pattern)?;
                Single::Text {
                    op: TextOp::Regex,
                    pattern,
                    case_insensitive,
                    regex: Some(regex),
                }
            }
            Pattern::Text {
                op,
                pattern,
                case_insensitive,
            } => {
                let pattern = if case_insensitive {
                    fold_case(&pattern)
                } else {
                    pattern
                };
                Single::Text {
                    op,
                    pattern,
                    case_insensitive,
                    regex: None,
                }
            }
        })
    }

    /// The matcher's inner condition (before negation) on `value`.
    pub(crate) fn holds(&self, value: Option<&FieldValue<'_>>) -> bool {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return false;
        };
        match self {
            Single::Exists => true,
            Single::Never => false,
            Single::Typed(key) => TypedKey::of(value).as_ref() == Some(key),
            Single::Compare(op, operand) => value.number().is_some_and(|n| {
                let ord = n.cmp(*operand);
                match op {
                    CmpOp::Gt => ord.is_gt(),
                    CmpOp::Gte => ord.is_ge(),
                    CmpOp::Lt => ord.is_lt(),
                    CmpOp::Lte => ord.is_le(),
                }
            }),
            Single::Text {
                op,
                pattern,
                case_insensitive,
                regex,
            } => {
                let Some(text) = value.text() else {
                    return false;
                };
                if let Some(regex) = regex {
                    return regex.is_match(&text);
                }
                let folded;
                let text: &str = if *case_insensitive {
                    folded = fold_case(&text);
                    &folded
                } else {
                    &text
                };
                match op {
                    TextOp::Exact => text == pattern,
                    TextOp::Prefix => text.starts_with(pattern.as_str()),
                    TextOp::Suffix => text.ends_with(pattern.as_str()),
                    TextOp::Contains => {
                        memchr::memmem::find(text.as_bytes(), pattern.as_bytes()).is_some()
                    }
                    TextOp::Regex => false,
                }
            }
        }
    }
}

/// Case folding for `case_insensitive`: full Unicode lowercase of both sides.
fn fold_case(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

#[derive(Default)]
struct TextPatterns {
    exact: Vec<(String, MatcherId)>,
    prefix: Vec<(String, MatcherId)>,
    suffix: Vec<(String, MatcherId)>,
    contains: Vec<(String, MatcherId)>,
}

impl TextPatterns {
    fn push(&mut self, op: TextOp, pattern: String, id: MatcherId) {
        match op {
            TextOp::Exact => self.exact.push((pattern, id)),
            TextOp::Prefix => self.prefix.push((pattern, id)),
            // Suffixes are matched as prefixes of the reversed value.
            TextOp::Suffix => self.suffix.push((pattern.chars().rev().collect(), id)),
            TextOp::Contains => self.contains.push((pattern, id)),
            TextOp::Regex => unreachable!("regexes are indexed separately"),
        }
    }

    fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.prefix.is_empty()
            && self.suffix.is_empty()
            && self.contains.is_empty()
    }

    fn build(self) -> Result<TextIndex, String> {
        let mut exact: FxHashMap<Box<str>, Vec<MatcherId>> = FxHashMap::default();
        for (p, id) in self.exact {
            exact.entry(p.into_boxed_str()).or_default().push(id);
        }
        Ok(TextIndex {
            exact,
            prefix: Automaton::build(self.prefix, StartKind::Anchored)?,
            suffix: Automaton::build(self.suffix, StartKind::Anchored)?,
            contains: Automaton::build(self.contains, StartKind::Unanchored)?,
        })
    }
}

impl TextIndex {
    fn collect(&self, text: &str, scratch: &mut Scratch) {
        if let Some(ids) = self.exact.get(text) {
            ids.iter().for_each(|&id| scratch.fire(id));
        }
        if let Some(prefix) = &self.prefix {
            prefix.collect_overlapping(Input::new(text).anchored(Anchored::Yes), scratch);
        }
        if let Some(suffix) = &self.suffix {
            let mut reversed = std::mem::take(&mut scratch.reversed);
            reversed.clear();
            reversed.extend(text.chars().rev());
            suffix.collect_overlapping(
                Input::new(reversed.as_str()).anchored(Anchored::Yes),
                scratch,
            );
            scratch.reversed = reversed;
        }
        if let Some(contains) = &self.contains {
            contains.collect_overlapping(Input::new(text), scratch);
        }
    }
}

impl Automaton {
    fn build(patterns: Vec<(String, MatcherId)>, start: StartKind) -> Result<Option<Self>, String> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let mut unique: FxHashMap<String, usize> = FxHashMap::default();
        let mut literals: Vec<String> = Vec::new();
        let mut ids: Vec<Vec<MatcherId>> = Vec::new();
        for (p, id) in patterns {
            let slot = *unique.entry(p.clone()).or_insert_with(|| {
                literals.push(p);
                ids.push(Vec::new());
                literals.len() - 1
            });
            ids[slot].push(id);
        }
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .start_kind(start)
            .build(&literals)
            .map_err(|e| format!("cannot build matcher automaton: {e}"))?;
        Ok(Some(Automaton { ac, ids }))
    }

    /// Calls `f` with the matcher ids of every pattern occurrence in
    /// `input`. The empty pattern is a prefix, suffix and substring of
    /// everything, which the overlapping search reports as well.
    fn each_match(&self, input: Input<'_>, mut f: impl FnMut(&[MatcherId])) {
        let mut state = aho_corasick::automaton::OverlappingState::start();
        loop {
            self.ac.find_overlapping(input.clone(), &mut state);
            let Some(m) = state.get_match() else { break };
            f(&self.ids[m.pattern().as_usize()]);
        }
    }

    /// Fires the matchers of every pattern occurring in `input`.
    fn collect_overlapping(&self, input: Input<'_>, scratch: &mut Scratch) {
        self.each_match(input, |ids| ids.iter().for_each(|&id| scratch.fire(id)));
    }
}

impl RegexIndex {
    fn build(
        patterns: Vec<(String, MatcherId)>,
        cache: &mut RegexCache,
    ) -> Result<(Self, Vec<(MatcherId, String)>), String> {
        let mut shared_bytes = 0;
        let mut rejected = Vec::new();
        let mut prefiltered = Vec::new();
        let mut anchored_literals: Vec<(String, MatcherId)> = Vec::new();
        let mut unanchored_literals: Vec<(String, MatcherId)> = Vec::new();
        let mut residual_patterns = Vec::new();
        let mut residual_ids = Vec::new();
        for (pattern, id) in patterns {
            match required_literals(&pattern) {
                Some(Literals { texts, at_start }) => {
                    let slot = u32::try_from(prefiltered.len()).expect("fewer than 2^32 regexes");
                    prefiltered.push((cache.get(&pattern)?, id));
                    let owner = if at_start {
                        &mut anchored_literals
                    } else {
                        &mut unanchored_literals
                    };
                    owner.extend(texts.into_iter().map(|l| (l, slot)));
                }
                // Added in order while the shared automaton stays within its
                // budget; a regex that would push it over is left out alone,
                // and every other policy keeps running.
                None => match compiled_size(&pattern, SHARED_REGEX_BUDGET - shared_bytes) {
                    Ok(size) => {
                        shared_bytes += size;
                        residual_patterns.push(pattern);
                        residual_ids.push(id);
                    }
                    Err(SizeError::TooLarge) => rejected.push((
                        id,
                        format!(
                            "regex does not fit in this field's shared automaton: the regexes without a literal prefix or suffix of one field compile together to at most {} KiB on an Edge, and policies with lower ids already use {} KiB; this policy is not run",
                            SHARED_REGEX_BUDGET >> 10,
                            shared_bytes >> 10
                        ),
                    )),
                    Err(SizeError::Invalid(detail)) => return Err(detail),
                },
            }
        }
        let residual = if residual_patterns.is_empty() {
            None
        } else {
            let patterns: Vec<&str> = residual_patterns.iter().map(String::as_str).collect();
            Some((Matcher::new(&patterns)?, residual_ids))
        };
        let index = RegexIndex {
            prefiltered,
            anchored: Automaton::build(anchored_literals, StartKind::Anchored)?,
            unanchored: Automaton::build(unanchored_literals, StartKind::Unanchored)?,
            residual,
        };
        Ok((index, rejected))
    }

    fn collect(&self, text: &str, scratch: &mut Scratch) {
        if self.anchored.is_some() || self.unanchored.is_some() {
            let mut candidates = std::mem::take(&mut scratch.candidates);
            candidates.clear();
            for (automaton, mode) in [
                (&self.anchored, Anchored::Yes),
                (&self.unanchored, Anchored::No),
            ] {
                let Some(automaton) = automaton else { continue };
                automaton.each_match(Input::new(text).anchored(mode), |slots| {
                    candidates.extend_from_slice(slots)
                });
            }
            candidates.sort_unstable();
            candidates.dedup();
            for &slot in &candidates {
                let (regex, id) = &self.prefiltered[slot as usize];
                if regex.is_match(text) {
                    scratch.fire(*id);
                }
            }
            scratch.candidates = candidates;
        }
        if let Some((set, ids)) = &self.residual {
            set.each_match(text, |i| scratch.fire(ids[i]));
        }
    }
}

struct Literals {
    texts: Vec<String>,
    /// The literals can only occur at the start of the value.
    at_start: bool,
}

/// Literals of which every match of `pattern` contains at least one, if a
/// small set of reasonably long ones exists.
fn required_literals(pattern: &str) -> Option<Literals> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .ok()?;
    let starts_anchored = hir
        .properties()
        .look_set_prefix()
        .contains(regex_syntax::hir::Look::Start);
    let mut best: Option<(usize, Literals)> = None;
    for kind in [ExtractKind::Prefix, ExtractKind::Suffix] {
        let at_start = starts_anchored && matches!(kind, ExtractKind::Prefix);
        let seq = Extractor::new().kind(kind).extract(&hir);
        let Some(literals) = seq.literals() else {
            continue;
        };
        if literals.is_empty() || literals.len() > 64 {
            continue;
        }
        let min_len = literals
            .iter()
            .map(|l| l.as_bytes().len())
            .min()
            .unwrap_or(0);
        if min_len < 2 {
            continue;
        }
        let Ok(texts) = literals
            .iter()
            .map(|l| String::from_utf8(l.as_bytes().to_vec()))
            .collect::<Result<Vec<_>, _>>()
        else {
            continue;
        };
        // Prefer literals pinned to the start, then longer ones.
        let score = min_len + if at_start { 1 << 16 } else { 0 };
        if best.as_ref().is_none_or(|(b, _)| score > *b) {
            best = Some((score, Literals { texts, at_start }));
        }
    }
    best.map(|(_, l)| l)
}

impl Bounds {
    fn collect(&self, n: Number, scratch: &mut Scratch) {
        use std::cmp::Ordering::*;
        // value > operand: the operands strictly below the value.
        let end = self.gt.partition_point(|(op, _)| op.cmp(n) == Less);
        self.gt[..end].iter().for_each(|&(_, id)| scratch.fire(id));
        let end = self.gte.partition_point(|(op, _)| op.cmp(n) != Greater);
        self.gte[..end].iter().for_each(|&(_, id)| scratch.fire(id));
        // value < operand: the operands strictly above the value.
        let start = self.lt.partition_point(|(op, _)| op.cmp(n) != Greater);
        self.lt[start..]
            .iter()
            .for_each(|&(_, id)| scratch.fire(id));
        let start = self.lte.partition_point(|(op, _)| op.cmp(n) == Less);
        self.lte[start..]
            .iter()
            .for_each(|&(_, id)| scratch.fire(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl FieldIndex {
        fn build_for_test(patterns: Vec<(MatcherId, Pattern)>) -> Result<Self, String> {
            FieldIndex::build(patterns, &mut RegexCache::default()).map(|(index, _)| index)
        }
    }

    fn fired(index: &FieldIndex, value: FieldValue<'_>) -> Vec<MatcherId> {
        let mut scratch = Scratch::default();
        scratch.begin(64);
        index.collect(Some(&value), &mut scratch);
        let mut ids = scratch.fired.clone();
        ids.sort_unstable();
        ids
    }

    fn text(op: TextOp, p: &str, ci: bool) -> Pattern {
        Pattern::Text {
            op,
            pattern: p.to_owned(),
            case_insensitive: ci,
        }
    }

    #[test]
    fn each_text_operator() {
        let index = FieldIndex::build_for_test(vec![
            (0, text(TextOp::Exact, "http_requests_total", false)),
            (1, text(TextOp::Prefix, "http_", false)),
            (2, text(TextOp::Prefix, "http_requests", false)),
            (3, text(TextOp::Suffix, "_total", false)),
            (4, text(TextOp::Contains, "requests", false)),
            (5, text(TextOp::Regex, "^http_.*_total$", false)),
            (6, text(TextOp::Regex, "t{2}", false)),
            (7, text(TextOp::Prefix, "go_", false)),
            (8, text(TextOp::Exact, "HTTP_REQUESTS_TOTAL", true)),
            (9, text(TextOp::Suffix, "TOTAL", true)),
            (10, text(TextOp::Contains, "", false)),
            (11, Pattern::Exists),
        ])
        .unwrap();
        assert_eq!(
            fired(&index, FieldValue::str("http_requests_total")),
            vec![0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11]
        );
        assert_eq!(
            fired(&index, FieldValue::str("go_goroutines")),
            vec![7, 10, 11]
        );
    }

    #[test]
    fn missing_and_empty_values_fire_nothing() {
        let index = FieldIndex::build_for_test(vec![
            (0, Pattern::Exists),
            (1, text(TextOp::Contains, "", false)),
        ])
        .unwrap();
        let mut scratch = Scratch::default();
        scratch.begin(4);
        index.collect(None, &mut scratch);
        index.collect(Some(&FieldValue::str("")), &mut scratch);
        assert!(scratch.fired.is_empty());
    }

    #[test]
    fn typed_and_numeric() {
        let index = FieldIndex::build_for_test(vec![
            (0, Pattern::Typed(TypedKey::Int(200))),
            (1, Pattern::Compare(CmpOp::Gt, Number::Int(100))),
            (2, Pattern::Compare(CmpOp::Gte, Number::Double(200.0))),
            (3, Pattern::Compare(CmpOp::Lt, Number::Int(200))),
            (4, Pattern::Compare(CmpOp::Lte, Number::Int(200))),
            (5, text(TextOp::Exact, "200", false)),
        ])
        .unwrap();
        assert_eq!(fired(&index, FieldValue::Int(200)), vec![0, 1, 2, 4]);
        assert_eq!(fired(&index, FieldValue::Double(200.0)), vec![0, 1, 2, 4]);
        assert_eq!(fired(&index, FieldValue::Double(150.5)), vec![1, 3, 4]);
        assert_eq!(
            fired(&index, FieldValue::str("200")),
            vec![5],
            "strings never meet typed or numeric matchers"
        );
    }

    #[test]
    fn regex_prefilter_agrees_with_plain_matching() {
        let patterns = [
            "^api_(get|post)_",
            "_seconds$",
            "[0-9]+ms",
            "(?i)error",
            "x",
            "foo.*bar",
        ];
        let index = FieldIndex::build_for_test(
            patterns
                .iter()
                .enumerate()
                .map(|(i, p)| (i as u32, text(TextOp::Regex, p, false)))
                .collect(),
        )
        .unwrap();
        for value in [
            "api_get_latency_seconds",
            "took 15ms",
            "ERROR here",
            "xylophone",
            "foo then bar",
            "nothing",
        ] {
            let expected: Vec<u32> = patterns
                .iter()
                .enumerate()
                .filter(|(_, p)| regex::Regex::new(p).unwrap().is_match(value))
                .map(|(i, _)| i as u32)
                .collect();
            assert_eq!(
                fired(&index, FieldValue::str(value)),
                expected,
                "value {value}"
            );
        }
    }

    #[test]
    fn bytes_meet_string_matchers_as_lowercase_hex() {
        let index = FieldIndex::build_for_test(vec![
            (0, text(TextOp::Exact, "0aff", false)),
            (1, Pattern::Typed(TypedKey::Bytes(vec![0x0a, 0xff].into()))),
        ])
        .unwrap();
        assert_eq!(
            fired(&index, FieldValue::Bytes(vec![0x0a, 0xff].into())),
            vec![0, 1]
        );
    }
}

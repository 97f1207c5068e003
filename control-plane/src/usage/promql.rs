//! The metrics and labels one PromQL expression reads.
//!
//! Expressions are parsed with `promql-parser`, so a name is only taken for a
//! metric where Prometheus would take it for one. Grafana's template
//! variables are not PromQL: they are replaced before parsing by something of
//! the right shape for where they stand, and a variable that stands where a
//! metric name goes makes the selector match an unknown set of metrics.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use promql_parser::label::{METRIC_NAME, MatchOp, Matcher};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    self, Expr, Function, LabelModifier, VectorMatchCardinality, VectorSelector,
};
use regex::Regex;

/// What a selector says about the names of the metrics it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectorName {
    /// `foo`, `{__name__="foo"}` or `{"foo"}`.
    Metric(String),
    /// `{__name__=~"foo_.*"}`: the regex anchored as PromQL anchors it.
    Pattern(String),
    /// The name is not in the text: a template variable stands for it, or
    /// the selector picks series by their labels alone. `regex` (anchored)
    /// bounds the names it may read; `.*` when nothing is known.
    Unknown { regex: String, reason: String },
}

/// One vector or matrix selector and the labels read explicitly about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub name: SelectorName,
    /// Its own matchers plus the labels named around it: `by`/`without`,
    /// `on`/`ignoring`, `group_left`/`group_right`, label functions.
    pub labels: BTreeSet<String>,
    /// A label position holds a template variable (`by ($label)`), so any
    /// label of the metric may be read.
    pub any_label: bool,
}

/// The outcome for one expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extraction {
    Parsed(Vec<Selector>),
    /// Not PromQL even after template variables were replaced. Every
    /// identifier in it might be a metric name.
    Unparsed {
        error: String,
        possible_names: Vec<String>,
        /// Anchored regexes the query might select names by (`__name__=~`,
        /// names built from template variables).
        possible_patterns: Vec<String>,
    },
}

/// What a Grafana template variable is known to expand to; it lets a
/// variable be replaced by a value of the right type instead of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariableHint {
    /// Every value is a number (`topk($n, …)`, `> $threshold`).
    Number,
    /// Values are metric names matching this anchored regex (a
    /// `metrics(regex)` variable).
    MetricNames(String),
}

/// How template variables in an expression are treated.
#[derive(Debug, Clone, Default)]
pub struct Templating {
    enabled: bool,
    hints: HashMap<String, VariableHint>,
}

impl Templating {
    /// Prometheus rule files: `$` is never a variable there (`"$1"` in
    /// `label_replace` is a regex group reference).
    pub fn none() -> Self {
        Self::default()
    }

    /// Grafana queries: `$var`, `${var}`, `${var:fmt}`, `[[var]]` and the
    /// `$__…` built-ins are variables.
    pub fn grafana() -> Self {
        Self {
            enabled: true,
            hints: HashMap::new(),
        }
    }

    pub fn with_hint(mut self, variable: &str, hint: VariableHint) -> Self {
        self.hints.insert(variable.to_string(), hint);
        self
    }

    pub fn hint(&self, variable: &str) -> Option<&VariableHint> {
        self.hints.get(variable)
    }
}

/// The selectors of a plain PromQL expression (no template variables).
pub fn extract(expr: &str) -> Extraction {
    extract_with(expr, &Templating::none())
}

/// The selectors of one expression, with template variables handled as
/// `templating` says.
pub fn extract_with(expr: &str, templating: &Templating) -> Extraction {
    register_legacy_functions();
    if operators(expr) > MAX_OPERATORS {
        let (possible_names, possible_patterns) = identifiers(expr, templating);
        return Extraction::Unparsed {
            error: format!("more than {MAX_OPERATORS} operators: too deep to parse safely"),
            possible_names,
            possible_patterns,
        };
    }
    let mut first_error = None;
    // Bare variables are first taken for metric names, which is safe for
    // `$metric` alone; only if that does not parse (`topk($n, …)`) are they
    // tried as numbers.
    let attempts: &[bool] = if templating.enabled {
        &[false, true]
    } else {
        &[false]
    };
    for &bare_numbers in attempts {
        let substituted = substitute(expr, templating, bare_numbers);
        if bare_numbers && !substituted.changed_bare {
            break;
        }
        match parse_guarded(&substituted.text) {
            Ok(ast) => {
                let mut walker = Walker {
                    variables: &substituted.variables,
                    templating,
                    selectors: Vec::new(),
                };
                walker.walk(&ast, &Context::default());
                return Extraction::Parsed(walker.selectors);
            }
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    let (possible_names, possible_patterns) = identifiers(expr, templating);
    Extraction::Unparsed {
        error: first_error.unwrap_or_else(|| "invalid promql query".to_string()),
        possible_names,
        possible_patterns,
    }
}

/// The parser and its syntax tree recurse once per operator and
/// parenthesis; a pathological query must not overflow the stack (which
/// aborts the process). Real queries stay far below this.
const MAX_OPERATORS: usize = 1000;

/// Operator characters, brackets and set operators outside strings and
/// comments: a bound on the depth of the syntax tree.
fn operators(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut count = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' | b'`' => {
                i = string_end(bytes, i).1;
                continue;
            }
            b'#' => {
                i = text[i..].find('\n').map_or(text.len(), |n| i + n);
                continue;
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' | b'=' | b'!' | b'(' | b'['
            | b'{' => count += 1,
            b if b.is_ascii_alphabetic() => {
                let len = bytes[i..].iter().take_while(|b| is_ident_byte(**b)).count();
                let word = &text[i..i + len];
                if ["and", "or", "unless"]
                    .iter()
                    .any(|op| word.eq_ignore_ascii_case(op))
                {
                    count += 1;
                }
                i += len;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    count
}

/// Anchors a PromQL regex the way Prometheus does (fully anchored).
pub fn anchor(regex: &str) -> String {
    format!("^(?:{regex})$")
}

/// Any name at all: the regex of a selector whose name is not known.
pub const ANY_NAME: &str = "^(?:.*)$";

/// Functions Prometheus has renamed or dropped but that old rule files and
/// dashboards still call; without them such queries would fall back to
/// guessing.
fn register_legacy_functions() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // An error only means the name became built in: nothing to add.
        let _ = parser::register_extra_functions(vec![Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        )]);
    });
}

/// A parser bug on one query must cost that query, not the whole import.
fn parse_guarded(text: &str) -> Result<Expr, String> {
    match std::panic::catch_unwind(|| parser::parse(text)) {
        Ok(result) => result,
        Err(_) => Err("the PromQL parser failed on this query".to_string()),
    }
}

const PLACEHOLDER_PREFIX: &str = "__tero_var_";
const PLACEHOLDER_SUFFIX: &str = "__";
/// What a variable becomes inside `[...]` or after `offset`.
const DURATION_STANDIN: &str = "5m";
/// What a numeric variable becomes.
const NUMBER_STANDIN: &str = "1";

fn placeholder_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // A literal pattern: cannot fail to compile.
        Regex::new(r"__tero_var_([0-9]+)__").expect("a literal regex compiles")
    })
}

struct Substituted {
    text: String,
    /// Placeholder index → the variable's name.
    variables: Vec<String>,
    /// Whether a bare variable was turned into a number because of the
    /// `bare_numbers` retry (if none was, the retry is pointless).
    changed_bare: bool,
}

/// A template variable found at some position of the text.
struct VariableToken {
    name: String,
    /// Bytes it spans.
    len: usize,
}

/// Recognises Grafana's three variable syntaxes at `at` (the same forms as
/// Grafana's own interpolation regex).
fn variable_at(text: &str, at: usize) -> Option<VariableToken> {
    let rest = &text[at..];
    let word_len = |s: &str| {
        s.bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count()
    };
    if let Some(after) = rest.strip_prefix("${") {
        let name_len = word_len(after);
        let close = after.find('}')?;
        if name_len == 0 || close < name_len || after[name_len..close].contains('{') {
            return None;
        }
        let tail = &after[name_len..close];
        if !(tail.is_empty() || tail.starts_with(':') || tail.starts_with('.')) {
            return None;
        }
        return Some(VariableToken {
            name: after[..name_len].to_string(),
            len: 2 + close + 1,
        });
    }
    if let Some(after) = rest.strip_prefix('$') {
        let name_len = word_len(after);
        let name = &after[..name_len];
        // `$1` is a regex group reference in `label_replace`, not a variable.
        if name_len == 0 || name.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return Some(VariableToken {
            name: name.to_string(),
            len: 1 + name_len,
        });
    }
    if let Some(after) = rest.strip_prefix("[[") {
        let name_len = word_len(after);
        if name_len == 0 {
            return None;
        }
        let mut tail = &after[name_len..];
        if let Some(fmt) = tail.strip_prefix(':') {
            let fmt_len = word_len(fmt);
            if fmt_len == 0 {
                return None;
            }
            tail = &fmt[fmt_len..];
        }
        if !tail.starts_with("]]") {
            return None;
        }
        let len = rest.len() - tail.len() + 2;
        return Some(VariableToken {
            name: after[..name_len].to_string(),
            len,
        });
    }
    None
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

fn is_builtin(name: &str) -> bool {
    name.starts_with("__")
}

/// Replaces every template variable with something that parses where it
/// stands: a duration in ranges and after `offset`, a number where the
/// variable is known (or, on retry, guessed) to be one, a numbered
/// placeholder identifier elsewhere, so a variable in a name position stays
/// recognisable after parsing.
fn substitute(text: &str, templating: &Templating, bare_numbers: bool) -> Substituted {
    let mut out = Substituted {
        text: String::with_capacity(text.len() + 16),
        variables: Vec::new(),
        changed_bare: false,
    };
    if !templating.enabled {
        out.text.push_str(text);
        return out;
    }
    #[derive(PartialEq)]
    enum Last {
        Offset,
        At,
        Other,
    }
    let bytes = text.as_bytes();
    let mut quote: Option<u8> = None;
    let mut brackets = 0usize;
    let mut last = Last::Other;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(q) = quote {
            if let Some(var) = variable_at(text, i) {
                push_placeholder(&mut out, var.name);
                i += var.len;
                continue;
            }
            if b == b'\\' && q != b'`' {
                let next = text[i + 1..].chars().next().map_or(0, char::len_utf8);
                out.text.push_str(&text[i..i + 1 + next]);
                i += 1 + next;
                continue;
            }
            if b == q {
                quote = None;
            }
            let len = text[i..].chars().next().map_or(1, char::len_utf8);
            out.text.push_str(&text[i..i + len]);
            i += len;
            continue;
        }
        if let Some(var) = variable_at(text, i) {
            let before = i.checked_sub(1).map(|p| bytes[p]);
            let after = bytes.get(i + var.len).copied();
            let glued = before.is_some_and(is_ident_byte) || after.is_some_and(is_ident_byte);
            let next_sig = text[i + var.len..].trim_start().bytes().next();
            let names_something = matches!(next_sig, Some(b'{') | Some(b'['));
            if brackets > 0 || last == Last::Offset {
                out.text.push_str(DURATION_STANDIN);
            } else if last == Last::At {
                out.text.push_str(NUMBER_STANDIN);
            } else if is_builtin(&var.name) && !glued {
                // `$__interval_ms`, `$__range_s`: numbers, never metric names.
                out.text.push_str(NUMBER_STANDIN);
            } else if !glued && templating.hint(&var.name) == Some(&VariableHint::Number) {
                out.text.push_str(NUMBER_STANDIN);
            } else if bare_numbers && !glued && !names_something {
                out.text.push_str(NUMBER_STANDIN);
                out.changed_bare = true;
            } else {
                push_placeholder(&mut out, var.name);
            }
            last = Last::Other;
            i += var.len;
            continue;
        }
        match b {
            b'"' | b'\'' | b'`' => {
                quote = Some(b);
                last = Last::Other;
            }
            b'#' => {
                // A comment runs to the end of the line; variables in it are
                // irrelevant.
                let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
                out.text.push_str(&text[i..end]);
                i = end;
                continue;
            }
            b'[' => {
                brackets += 1;
                last = Last::Other;
            }
            b']' => {
                brackets = brackets.saturating_sub(1);
                last = Last::Other;
            }
            b'@' => last = Last::At,
            b'-' if last == Last::Offset => {}
            b if b.is_ascii_whitespace() => {}
            b if is_ident_byte(b) => {
                let len = bytes[i..].iter().take_while(|b| is_ident_byte(**b)).count();
                let word = &text[i..i + len];
                last = if word.eq_ignore_ascii_case("offset") {
                    Last::Offset
                } else {
                    Last::Other
                };
                out.text.push_str(word);
                i += len;
                continue;
            }
            _ => last = Last::Other,
        }
        let len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.text.push_str(&text[i..i + len]);
        i += len;
    }
    out
}

fn push_placeholder(out: &mut Substituted, name: String) {
    let index = out.variables.len();
    out.variables.push(name);
    out.text.push_str(PLACEHOLDER_PREFIX);
    out.text.push_str(&index.to_string());
    out.text.push_str(PLACEHOLDER_SUFFIX);
}

#[derive(Default, Clone)]
struct Context {
    labels: BTreeSet<String>,
    any_label: bool,
}

impl Context {
    fn with_labels<'l>(&self, labels: impl IntoIterator<Item = &'l String>) -> Context {
        let mut next = self.clone();
        for label in labels {
            next.add(label);
        }
        next
    }

    fn add(&mut self, label: &str) {
        if placeholder_regex().is_match(label) {
            self.any_label = true;
        } else if !label.is_empty() {
            self.labels.insert(label.to_string());
        }
    }
}

struct Walker<'a> {
    variables: &'a [String],
    templating: &'a Templating,
    selectors: Vec<Selector>,
}

impl Walker<'_> {
    fn walk(&mut self, expr: &Expr, ctx: &Context) {
        match expr {
            Expr::Aggregate(agg) => {
                let inner = match &agg.modifier {
                    Some(modifier) => ctx.with_labels(modifier_labels(modifier)),
                    None => ctx.clone(),
                };
                if let Some(param) = &agg.param {
                    self.walk(param, &inner);
                }
                self.walk(&agg.expr, &inner);
            }
            Expr::Unary(unary) => self.walk(&unary.expr, ctx),
            Expr::Binary(binary) => {
                let mut inner = ctx.clone();
                if let Some(modifier) = &binary.modifier {
                    if let Some(matching) = &modifier.matching {
                        inner = inner.with_labels(modifier_labels(matching));
                    }
                    if let VectorMatchCardinality::ManyToOne(labels)
                    | VectorMatchCardinality::OneToMany(labels) = &modifier.card
                    {
                        inner = inner.with_labels(&labels.labels);
                    }
                }
                self.walk(&binary.lhs, &inner);
                self.walk(&binary.rhs, &inner);
            }
            Expr::Paren(paren) => self.walk(&paren.expr, ctx),
            Expr::Subquery(sub) => self.walk(&sub.expr, ctx),
            Expr::VectorSelector(vs) => self.record(vs, ctx),
            Expr::MatrixSelector(ms) => self.record(&ms.vs, ctx),
            Expr::Call(call) => self.walk_call(call.func.name, &call.args.args, ctx),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn walk_call(&mut self, func: &str, args: &[Box<Expr>], ctx: &Context) {
        let string_arg = |index: usize| match args.get(index).map(|a| a.as_ref()) {
            Some(Expr::StringLiteral(s)) => Some(s.val.clone()),
            _ => None,
        };
        let label_args: Vec<String> = match func {
            // label_replace(v, dst, replacement, src, regex)
            "label_replace" => [1, 3].iter().filter_map(|i| string_arg(*i)).collect(),
            // label_join(v, dst, separator, src...)
            "label_join" => std::iter::once(1)
                .chain(3..args.len())
                .filter_map(string_arg)
                .collect(),
            "sort_by_label" | "sort_by_label_desc" => {
                (1..args.len()).filter_map(string_arg).collect()
            }
            // Classic histograms are read through their `le` label even when
            // the query never names it.
            "histogram_quantile" | "histogram_fraction" | "histogram_quantiles" => {
                vec!["le".to_string()]
            }
            _ => Vec::new(),
        };
        let inner = ctx.with_labels(&label_args);
        if func == "info" {
            self.walk_info(args, &inner);
            return;
        }
        for arg in args {
            self.walk(arg, &inner);
        }
    }

    /// `info(v, {data labels})` joins `v` with info metrics on their
    /// identifying labels; the second selector names `target_info` unless it
    /// says otherwise.
    fn walk_info(&mut self, args: &[Box<Expr>], ctx: &Context) {
        if let Some(first) = args.first() {
            self.walk(first, ctx);
        }
        let joined = ctx.with_labels(&["instance".to_string(), "job".to_string()]);
        match args.get(1).map(|a| a.as_ref()) {
            Some(Expr::VectorSelector(vs)) if vs.name.is_none() && !has_name_matcher(vs) => {
                let mut named = vs.clone();
                named.name = Some("target_info".to_string());
                self.record(&named, &joined);
            }
            Some(other) => self.walk(other, &joined),
            None => self.selectors.push(Selector {
                name: SelectorName::Metric("target_info".to_string()),
                labels: joined.labels,
                any_label: joined.any_label,
            }),
        }
    }

    fn record(&mut self, vs: &VectorSelector, ctx: &Context) {
        let mut own = ctx.clone();
        let all = vs
            .matchers
            .matchers
            .iter()
            .chain(vs.matchers.or_matchers.iter().flatten());
        for m in all {
            if m.name != METRIC_NAME {
                own.add(&m.name);
            }
        }
        let names = match &vs.name {
            Some(name) => vec![self.name_from_equality(name)],
            None => {
                let groups: Vec<&[Matcher]> = if vs.matchers.or_matchers.is_empty() {
                    vec![&vs.matchers.matchers]
                } else {
                    let mut groups: Vec<&[Matcher]> =
                        vs.matchers.or_matchers.iter().map(Vec::as_slice).collect();
                    if !vs.matchers.matchers.is_empty() {
                        groups.push(&vs.matchers.matchers);
                    }
                    groups
                };
                groups
                    .into_iter()
                    .flat_map(|group| self.names_of_group(group, vs))
                    .collect()
            }
        };
        for name in names {
            self.selectors.push(Selector {
                name,
                labels: own.labels.clone(),
                any_label: own.any_label,
            });
        }
    }

    /// The names one `or` group of matchers selects. Equality wins over
    /// regexes (the selection is their intersection); with neither, the
    /// group selects by labels alone.
    fn names_of_group(&self, group: &[Matcher], vs: &VectorSelector) -> Vec<SelectorName> {
        let equal: Vec<&Matcher> = group
            .iter()
            .filter(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal)
            .collect();
        if !equal.is_empty() {
            return equal
                .into_iter()
                .map(|m| self.name_from_equality(&m.value))
                .collect();
        }
        let regexes: Vec<SelectorName> = group
            .iter()
            .filter(|m| m.name == METRIC_NAME && matches!(m.op, MatchOp::Re(_)))
            .map(|m| self.name_from_regex(&m.value))
            .collect();
        if !regexes.is_empty() {
            return regexes;
        }
        vec![SelectorName::Unknown {
            regex: ANY_NAME.to_string(),
            reason: format!("selects series by labels alone: {vs}"),
        }]
    }

    /// A name given literally; a variable in it makes it a pattern with the
    /// variable's part unknown.
    fn name_from_equality(&self, name: &str) -> SelectorName {
        if !placeholder_regex().is_match(name) {
            return SelectorName::Metric(name.to_string());
        }
        let reason = self.variable_reason(name);
        if let Some(regex) = self.whole_variable_hint(name) {
            return SelectorName::Unknown { regex, reason };
        }
        let mut regex = String::new();
        let mut last = 0;
        for m in placeholder_regex().find_iter(name) {
            regex.push_str(&regex::escape(&name[last..m.start()]));
            regex.push_str(".*");
            last = m.end();
        }
        regex.push_str(&regex::escape(&name[last..]));
        SelectorName::Unknown {
            regex: anchor(&regex),
            reason,
        }
    }

    fn name_from_regex(&self, value: &str) -> SelectorName {
        if !placeholder_regex().is_match(value) {
            return SelectorName::Pattern(anchor(value));
        }
        // A variable's value spliced into a regex can change its structure
        // (`a|b`), so nothing short of "anything" bounds it.
        let regex = self
            .whole_variable_hint(value)
            .unwrap_or_else(|| ANY_NAME.to_string());
        SelectorName::Unknown {
            regex,
            reason: self.variable_reason(value),
        }
    }

    /// The hint's regex when `text` is exactly one metric-name variable.
    fn whole_variable_hint(&self, text: &str) -> Option<String> {
        let caps = placeholder_regex().captures(text)?;
        if caps.get(0)?.as_str() != text {
            return None;
        }
        let name = self
            .variables
            .get(caps.get(1)?.as_str().parse::<usize>().ok()?)?;
        match self.templating.hint(name)? {
            VariableHint::MetricNames(regex) => Some(regex.clone()),
            VariableHint::Number => None,
        }
    }

    fn variable_reason(&self, text: &str) -> String {
        let names: Vec<String> = placeholder_regex()
            .captures_iter(text)
            .filter_map(|c| c.get(1)?.as_str().parse::<usize>().ok())
            .filter_map(|i| self.variables.get(i))
            .map(|n| format!("${n}"))
            .collect();
        format!(
            "metric name comes from template variable {}",
            names.join(", ")
        )
    }
}

fn modifier_labels(modifier: &LabelModifier) -> &Vec<String> {
    &modifier.labels().labels
}

fn has_name_matcher(vs: &VectorSelector) -> bool {
    vs.matchers
        .matchers
        .iter()
        .chain(vs.matchers.or_matchers.iter().flatten())
        .any(|m| m.name == METRIC_NAME)
}

/// Words that are PromQL, never metric names.
const PROMQL_WORDS: &[&str] = &[
    // Operators, aggregators, keywords, special numbers.
    "and",
    "or",
    "unless",
    "atan2",
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "count_values",
    "quantile",
    "limitk",
    "limit_ratio",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "smoothed",
    "anchored",
    "fill",
    "fill_left",
    "fill_right",
    "start",
    "end",
    "inf",
    "nan",
    // Functions.
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "deg",
    "delta",
    "deriv",
    "exp",
    "first_over_time",
    "floor",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_quantiles",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "info",
    "double_exponential_smoothing",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "integral",
    "irate",
    "label_replace",
    "label_join",
    "max_of",
    "last_over_time",
    "min_of",
    "ln",
    "log10",
    "log2",
    "mad_over_time",
    "max_over_time",
    "min_over_time",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
    "minute",
    "month",
    "pi",
    "range",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "start_timestamp",
    "step",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sort_by_label",
    "sort_by_label_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// Words after which a parenthesised list holds label names.
const LABEL_LIST_WORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The identifiers of a query that does not parse, as possible metric
/// names, plus the name regexes it may select by. Label names (inside
/// braces before a matcher, in `by (...)` lists), PromQL words, numbers,
/// durations and function names are left out.
fn identifiers(text: &str, templating: &Templating) -> (Vec<String>, Vec<String>) {
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    let mut patterns = BTreeSet::new();
    let mut braces = 0usize;
    let mut label_list = false;
    let mut after_list_word = false;
    let mut i = 0;
    // `__name__` followed by a matcher: the next string names the metric.
    let mut name_matcher: Option<bool> = None;
    while i < bytes.len() {
        let b = bytes[i];
        // `$x` is never PromQL; outside Grafana it is not a variable either,
        // but still no metric name.
        if let Some(var) = variable_at(text, i) {
            let before = i.checked_sub(1).map(|p| bytes[p]);
            let after = bytes.get(i + var.len).copied();
            let glued = before.is_some_and(is_ident_byte) || after.is_some_and(is_ident_byte);
            let next_sig = text[i + var.len..].trim_start().bytes().next();
            let naming = braces == 0 && matches!(next_sig, Some(b'{'));
            if templating.enabled
                && !is_builtin(&var.name)
                && (glued || naming)
                && braces == 0
                && !label_list
            {
                patterns.insert(ANY_NAME.to_string());
            }
            i += var.len;
            continue;
        }
        match b {
            b'"' | b'\'' | b'`' => {
                let (content_end, end) = string_end(bytes, i);
                let literal = &text[i + 1..content_end];
                if let Some(regex) = name_matcher.take() {
                    if templating.enabled && variable_in(literal) {
                        patterns.insert(ANY_NAME.to_string());
                    } else if regex {
                        patterns.insert(anchor(literal));
                    } else {
                        names.insert(literal.to_string());
                    }
                } else if braces > 0 {
                    // A quoted metric name (`{"my.metric"}`) is followed by
                    // `,` or `}`, a quoted label name by a matcher.
                    let rest = text[end..].trim_start();
                    if !rest.starts_with(['=', '!']) && quoted_name_position(text, i) {
                        names.insert(literal.to_string());
                    }
                }
                i = end;
                continue;
            }
            b'#' => {
                i = text[i..].find('\n').map_or(text.len(), |n| i + n);
                continue;
            }
            b'{' => braces += 1,
            b'}' => braces = braces.saturating_sub(1),
            b'[' => {
                // Ranges and subquery steps hold durations only.
                i = text[i..].find(']').map_or(text.len(), |n| i + n + 1);
                continue;
            }
            b'(' => {
                label_list = after_list_word;
                after_list_word = false;
            }
            b')' => label_list = false,
            b if b.is_ascii_digit() || b == b'.' => {
                // Numbers, durations (`5m`), hex: none are names.
                let len = bytes[i..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || **b == b'.' || **b == b'_')
                    .count();
                i += len;
                continue;
            }
            b if is_ident_byte(b) => {
                let len = bytes[i..].iter().take_while(|b| is_ident_byte(**b)).count();
                let word = &text[i..i + len];
                i += len;
                let rest = text[i..].trim_start();
                let lower = word.to_ascii_lowercase();
                if LABEL_LIST_WORDS.contains(&lower.as_str()) {
                    after_list_word = true;
                    continue;
                }
                after_list_word = false;
                if braces > 0 && rest.starts_with(['=', '!']) {
                    if word == METRIC_NAME {
                        // Negative matchers do not say which names are read.
                        if rest.starts_with('=') {
                            name_matcher = Some(rest.starts_with("=~"));
                        }
                    }
                    continue;
                }
                if label_list
                    || rest.starts_with('(')
                    || PROMQL_WORDS.contains(&lower.as_str())
                    || !word.bytes().any(|b| b.is_ascii_alphabetic())
                {
                    continue;
                }
                names.insert(word.to_string());
                continue;
            }
            _ => {}
        }
        if !b.is_ascii_whitespace() && !matches!(b, b'(') {
            after_list_word = false;
        }
        i += text[i..].chars().next().map_or(1, char::len_utf8);
    }
    (names.into_iter().collect(), patterns.into_iter().collect())
}

/// Whether the string starting at `at` sits where a quoted metric name may:
/// right after `{` or `,` inside braces.
fn quoted_name_position(text: &str, at: usize) -> bool {
    matches!(
        text[..at].trim_end().bytes().last(),
        Some(b'{') | Some(b',')
    )
}

fn variable_in(text: &str) -> bool {
    (0..text.len()).any(|i| text.is_char_boundary(i) && variable_at(text, i).is_some())
}

/// Where the contents of the string literal that opens at `start` end, and
/// the byte just past its closing quote (the end of the text if unclosed).
fn string_end(bytes: &[u8], start: usize) -> (usize, usize) {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == b'\\' && quote != b'`' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            return (i, i + 1);
        }
        i += 1;
    }
    (bytes.len(), bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selectors(expr: &str) -> Vec<Selector> {
        match extract(expr) {
            Extraction::Parsed(s) => s,
            other => panic!("{expr} did not parse: {other:?}"),
        }
    }

    fn grafana(expr: &str, templating: &Templating) -> Vec<Selector> {
        match extract_with(expr, templating) {
            Extraction::Parsed(s) => s,
            other => panic!("{expr} did not parse: {other:?}"),
        }
    }

    fn metric(selectors: &[Selector], name: &str) -> Selector {
        selectors
            .iter()
            .find(|s| s.name == SelectorName::Metric(name.to_string()))
            .cloned()
            .unwrap_or_else(|| panic!("no selector for {name} in {selectors:?}"))
    }

    fn labels(s: &Selector) -> Vec<&str> {
        s.labels.iter().map(String::as_str).collect()
    }

    fn unknown_regex(s: &Selector) -> &str {
        match &s.name {
            SelectorName::Unknown { regex, .. } => regex,
            other => panic!("expected an unknown name, got {other:?}"),
        }
    }

    #[test]
    fn histogram_quantile_reads_bucket_with_grouping_labels_and_le() {
        let s = selectors(
            "histogram_quantile(0.9, sum by (le, job) (rate(http_request_duration_seconds_bucket[5m])))",
        );
        assert_eq!(s.len(), 1);
        let bucket = metric(&s, "http_request_duration_seconds_bucket");
        assert_eq!(labels(&bucket), ["job", "le"]);
        assert!(!bucket.any_label);
    }

    #[test]
    fn histogram_quantile_needs_le_even_when_not_grouped() {
        let s = selectors("histogram_quantile(0.99, rate(rpc_seconds_bucket[1m]))");
        assert_eq!(labels(&metric(&s, "rpc_seconds_bucket")), ["le"]);
    }

    #[test]
    fn aggregation_by_and_without_and_matchers_are_read() {
        let s = selectors(
            r#"sum without (instance, pod) (rate(http_requests_total{code=~"5..", method!="GET"}[5m]))
               / ignoring (code) sum by (job) (rate(http_requests_total[5m]))"#,
        );
        let r = metric(&s, "http_requests_total");
        // Both sides are read, and each side keeps its own grouping.
        let all: BTreeSet<&str> = s
            .iter()
            .flat_map(|s| s.labels.iter().map(String::as_str))
            .collect();
        assert_eq!(
            all.into_iter().collect::<Vec<_>>(),
            ["code", "instance", "job", "method", "pod"]
        );
        assert!(r.labels.contains("code"));
        let rhs = &s[1];
        assert_eq!(labels(rhs), ["code", "job"]);
    }

    #[test]
    fn binary_matching_labels_reach_both_sides() {
        let s = selectors(
            "sum by (job) (rate(errors_total[5m])) * on (job) group_left (team, owner) service_info",
        );
        assert_eq!(
            labels(&metric(&s, "errors_total")),
            ["job", "owner", "team"]
        );
        assert_eq!(
            labels(&metric(&s, "service_info")),
            ["job", "owner", "team"]
        );
        let s = selectors("a > on (x) group_right (y) b");
        assert_eq!(labels(&metric(&s, "a")), ["x", "y"]);
    }

    #[test]
    fn nested_subqueries_and_functions_reach_their_selectors() {
        let s = selectors(
            r#"max_over_time(deriv(rate(queue_depth_total{queue="q"}[1m])[10m:30s])[1h:]) + absent(up{job="x"} offset 5m)"#,
        );
        assert_eq!(s.len(), 2);
        assert_eq!(labels(&metric(&s, "queue_depth_total")), ["queue"]);
        assert_eq!(labels(&metric(&s, "up")), ["job"]);
    }

    #[test]
    fn label_functions_name_labels() {
        let s = selectors(r#"label_replace(up{job="api"}, "host", "$1", "instance", "(.*):.*")"#);
        assert_eq!(labels(&metric(&s, "up")), ["host", "instance", "job"]);
        let s = selectors(r#"label_join(node_info, "id", "/", "cluster", "node")"#);
        assert_eq!(labels(&metric(&s, "node_info")), ["cluster", "id", "node"]);
        // `count_values` names an output label, not one that is read.
        let s = selectors(r#"count_values("version", build_info)"#);
        assert!(metric(&s, "build_info").labels.is_empty());
    }

    #[test]
    fn name_matchers_give_names_and_patterns() {
        let s = selectors(r#"{__name__="up", job="x"} + {"my.metric"}"#);
        assert_eq!(labels(&metric(&s, "up")), ["job"]);
        metric(&s, "my.metric");
        let s = selectors(r#"sum by (job) ({__name__=~"node_cpu_.*|node_load1"})"#);
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[0].name,
            SelectorName::Pattern("^(?:node_cpu_.*|node_load1)$".to_string())
        );
        assert_eq!(labels(&s[0]), ["job"]);
    }

    #[test]
    fn selection_by_labels_alone_reads_unknown_names() {
        let s = selectors(r#"count({job="batch"})"#);
        assert_eq!(unknown_regex(&s[0]), ANY_NAME);
        assert_eq!(labels(&s[0]), ["job"]);
    }

    #[test]
    fn or_matchers_read_every_group() {
        let s = selectors(r#"foo{a="1" or b="2"}"#);
        assert_eq!(labels(&metric(&s, "foo")), ["a", "b"]);
    }

    #[test]
    fn info_reads_target_info() {
        let s = selectors(r#"info(rate(http_server_requests_total[5m]))"#);
        metric(&s, "http_server_requests_total");
        assert_eq!(labels(&metric(&s, "target_info")), ["instance", "job"]);
        let s = selectors(r#"info(up, {k8s_cluster_name=~".+"})"#);
        assert_eq!(
            labels(&metric(&s, "target_info")),
            ["instance", "job", "k8s_cluster_name"]
        );
    }

    #[test]
    fn legacy_holt_winters_still_parses() {
        let s = selectors("holt_winters(disk_free_bytes[1h], 0.3, 0.3)");
        metric(&s, "disk_free_bytes");
    }

    #[test]
    fn template_variables_in_ranges_offsets_and_values() {
        let t = Templating::grafana();
        let s = grafana(
            r#"sum by (pod) (rate(container_cpu_usage_seconds_total{namespace=~"$namespace", pod="${pod:regex}"}[$__rate_interval] offset $shift))"#,
            &t,
        );
        assert_eq!(s.len(), 1);
        assert_eq!(
            labels(&metric(&s, "container_cpu_usage_seconds_total")),
            ["namespace", "pod"]
        );
        for expr in [
            "rate(x_total[[[interval]]])",
            "rate(x_total[${__range}])",
            "max_over_time(x_total[$__range:$__interval])",
            "increase(x_total[$__auto_interval_period]) / $__interval_ms",
            "x_total @ $__to",
        ] {
            let s = grafana(expr, &t);
            assert_eq!(s.len(), 1, "{expr}");
            metric(&s, "x_total");
        }
    }

    #[test]
    fn grafana_regex_group_references_are_not_variables() {
        let t = Templating::grafana();
        let s = grafana(r#"label_replace(up, "host", "$1", "instance", "(.*)")"#, &t);
        assert_eq!(labels(&metric(&s, "up")), ["host", "instance"]);
    }

    #[test]
    fn variable_in_the_name_position_is_unknown() {
        let t = Templating::grafana();
        let s = grafana(r#"sum(rate({__name__=~"$metric", job="x"}[5m]))"#, &t);
        assert_eq!(s.len(), 1);
        assert_eq!(unknown_regex(&s[0]), ANY_NAME);
        match &s[0].name {
            SelectorName::Unknown { reason, .. } => assert!(reason.contains("$metric"), "{reason}"),
            _ => unreachable!(),
        }
        let s = grafana(r#"$metric{job="x"}"#, &t);
        assert_eq!(unknown_regex(&s[0]), ANY_NAME);
        let s = grafana(r#"rate(${prefix}_requests_total[5m])"#, &t);
        assert_eq!(unknown_regex(&s[0]), "^(?:.*_requests_total)$");
        let s = grafana(r#"{__name__="node_${resource}_bytes"}"#, &t);
        assert_eq!(unknown_regex(&s[0]), "^(?:node_.*_bytes)$");
        let s = grafana("$metric", &t);
        assert_eq!(unknown_regex(&s[0]), ANY_NAME);
    }

    #[test]
    fn metric_name_variable_hint_bounds_the_names() {
        let t = Templating::grafana().with_hint(
            "metric",
            VariableHint::MetricNames("^(?:node_.*)$".to_string()),
        );
        let s = grafana(r#"rate($metric[5m])"#, &t);
        assert_eq!(unknown_regex(&s[0]), "^(?:node_.*)$");
    }

    #[test]
    fn numeric_variables_are_not_metric_names() {
        let t = Templating::grafana();
        // Known only by trying: `topk` needs a scalar.
        let s = grafana("topk($n, rate(requests_total[5m]))", &t);
        assert_eq!(s.len(), 1);
        metric(&s, "requests_total");
        // Without a hint a bare comparison operand may be a metric.
        let s = grafana("requests_total > $threshold", &t);
        assert_eq!(s.len(), 2);
        let t = t.with_hint("threshold", VariableHint::Number);
        let s = grafana("requests_total > $threshold", &t);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn variable_label_reads_any_label() {
        let t = Templating::grafana();
        let s = grafana("sum by ($group) (rate(requests_total[5m]))", &t);
        assert!(metric(&s, "requests_total").any_label);
        let s = grafana(r#"requests_total{$key="x", job="a"}"#, &t);
        let r = metric(&s, "requests_total");
        assert!(r.any_label);
        assert_eq!(labels(&r), ["job"]);
        let s = grafana("sum by (job) (rate(requests_total[5m]))", &t);
        assert!(!metric(&s, "requests_total").any_label);
    }

    #[test]
    fn pathological_nesting_does_not_overflow_the_stack() {
        // Tokio's worker threads have 2 MiB stacks.
        let run = |expr: String| {
            std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || extract(&expr))
                .expect("spawns")
                .join()
                .expect("no overflow")
        };
        let limit = vec!["a"; MAX_OPERATORS / 2].join(" + ");
        let deep = format!(
            "{}b{}",
            "(".repeat(MAX_OPERATORS / 2),
            ")".repeat(MAX_OPERATORS / 2)
        );
        for expr in [limit.clone(), format!("{limit} + {deep}")] {
            match run(expr) {
                Extraction::Parsed(s) => assert!(!s.is_empty()),
                other => panic!("{other:?}"),
            }
        }
        match run(vec!["a"; 100_000].join(" + ")) {
            Extraction::Unparsed { possible_names, .. } => assert_eq!(possible_names, ["a"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn arbitrary_input_never_panics() {
        // Fragments that exercise every scanner state, glued at random
        // (a fixed LCG, so failures reproduce).
        const PIECES: &[&str] = &[
            "$",
            "${",
            "}",
            "[[",
            "]]",
            "[",
            "]",
            "\\",
            "\"",
            "'",
            "`",
            "é",
            "€",
            "#",
            "\n",
            "{",
            "(",
            ")",
            "=~",
            "!=",
            ",",
            " ",
            "by",
            "offset",
            "@",
            "-",
            "x",
            "__name__",
            "5m",
            ":",
            "$__interval",
            "[[v]]",
            "${v:raw}",
            "rate",
            "sum",
        ];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let grafana = Templating::grafana();
        for _ in 0..3000 {
            let mut text = String::new();
            for _ in 0..(state % 24) {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                text.push_str(PIECES[(state >> 33) as usize % PIECES.len()]);
            }
            let _ = extract(&text);
            let _ = extract_with(&text, &grafana);
        }
    }

    #[test]
    fn rule_files_have_no_template_variables() {
        match extract("rate(x_total[$__rate_interval])") {
            Extraction::Unparsed { possible_names, .. } => assert_eq!(possible_names, ["x_total"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unparsable_query_yields_its_identifiers() {
        match extract(
            r#"sum(rate(api_errors_total{code="500"}[5m]) by (job) / on(job) api_requests_total"#,
        ) {
            Extraction::Unparsed {
                error,
                possible_names,
                possible_patterns,
            } => {
                assert!(!error.is_empty());
                assert_eq!(possible_names, ["api_errors_total", "api_requests_total"]);
                assert!(possible_patterns.is_empty());
            }
            other => panic!("{other:?}"),
        }
        match extract(r#"sum({__name__=~"node_.*"}) by (job))"#) {
            Extraction::Unparsed {
                possible_names,
                possible_patterns,
                ..
            } => {
                assert!(possible_names.is_empty(), "{possible_names:?}");
                assert_eq!(possible_patterns, ["^(?:node_.*)$"]);
            }
            other => panic!("{other:?}"),
        }
        let t = Templating::grafana();
        match extract_with(r#"rate($metric{job="$job"}[$__interval]"#, &t) {
            Extraction::Unparsed {
                possible_names,
                possible_patterns,
                ..
            } => {
                assert!(possible_names.is_empty(), "{possible_names:?}");
                assert_eq!(possible_patterns, [ANY_NAME]);
            }
            other => panic!("{other:?}"),
        }
    }
}

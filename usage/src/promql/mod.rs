//! The metrics and labels one PromQL expression reads.
//!
//! Expressions are parsed with `promql-parser`, so a name is only taken for a
//! metric where Prometheus would take it for one. Grafana's template
//! variables are not PromQL: they are replaced before parsing by something of
//! the right shape for where they stand, and a variable that stands where a
//! metric name goes makes the selector match an unknown set of metrics.
//!
//! `template` replaces the variables, `walk` reads the parsed expression,
//! and `unparsed` says what a query that still does not parse might read.

mod template;
mod unparsed;
mod walk;

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr, Function};

use template::substitute;
use unparsed::identifiers;
use walk::{Context, Walker};

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
                let mut walker = Walker::new(&substituted.variables, templating);
                walker.walk(&ast, &Context::default());
                return Extraction::Parsed(walker.into_selectors());
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

/// A byte of a PromQL identifier (metric names may hold `:`).
fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
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
mod tests;

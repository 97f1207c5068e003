//! A query that does not parse: its identifiers are taken as possible
//! metric names (and its name matchers and variables as possible name
//! patterns), so that nothing it may read is ever called unused.

use std::collections::BTreeSet;

use promql_parser::label::METRIC_NAME;

use super::template::{is_builtin, variable_at, variable_in};
use super::{ANY_NAME, Templating, anchor, is_ident_byte, string_end};

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
pub(super) fn identifiers(text: &str, templating: &Templating) -> (Vec<String>, Vec<String>) {
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

//! The walk over a parsed expression: every selector with the labels read
//! about it, where a label counts as read when a matcher, a grouping, a
//! vector matching or a label function names it.

use std::collections::BTreeSet;

use promql_parser::label::{METRIC_NAME, MatchOp, Matcher};
use promql_parser::parser::{Expr, LabelModifier, VectorMatchCardinality, VectorSelector};

use super::template::placeholder_regex;
use super::{ANY_NAME, Selector, SelectorName, Templating, VariableHint, anchor};

#[derive(Default, Clone)]
pub(super) struct Context {
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

pub(super) struct Walker<'a> {
    variables: &'a [String],
    templating: &'a Templating,
    selectors: Vec<Selector>,
}

impl<'a> Walker<'a> {
    /// `variables`: the substituted text's placeholder index → name.
    pub(super) fn new(variables: &'a [String], templating: &'a Templating) -> Self {
        Walker {
            variables,
            templating,
            selectors: Vec::new(),
        }
    }

    pub(super) fn into_selectors(self) -> Vec<Selector> {
        self.selectors
    }

    pub(super) fn walk(&mut self, expr: &Expr, ctx: &Context) {
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

//! Compiling one policy: from the wire type to matcher patterns and a keep
//! action, collecting every policy-format.md §7.1 error with its location.
//!
//! This module is also the validator (see `policy::validate`), so the
//! errors here are the ones users, the control plane and the sync protocol
//! all see.

use std::sync::Arc;

use tero_proto::policy::{self as pb, policy::Target};

use super::keep::{LogKeep, SamplingConfig, TraceKeep};
use super::matchers::{CmpOp, Pattern, TextOp};
use super::regex::{POLICY_REGEX_BUDGET, SizeError};
use super::sampling;
use super::selector::{AttrPath, LogSelector, MetricSelector, TraceSelector};
use super::transform::{Add, Redact, Rename, Transform};
use super::value::{Number, TypedKey};
use crate::policy::{PathSeg, PolicyError, Signal};

/// One compiled matcher: where to look, what must hold, and whether the
/// result is inverted.
#[derive(Clone)]
pub(crate) struct MatcherSpec<S> {
    pub(crate) selector: S,
    pub(crate) pattern: Pattern,
    pub(crate) negated: bool,
    /// Where the matcher is in the policy (`match[i]`), for errors the
    /// engine finds only when it indexes the policy with the others.
    pub(crate) location: Vec<PathSeg>,
}

pub(crate) enum CompiledTarget {
    Metric {
        matchers: Vec<MatcherSpec<MetricSelector>>,
        keep: bool,
    },
    Log {
        matchers: Vec<MatcherSpec<LogSelector>>,
        keep: LogKeep,
        sample_key: Option<LogSelector>,
        transform: Transform,
    },
    Trace {
        matchers: Vec<MatcherSpec<TraceSelector>>,
        keep: TraceKeep,
    },
}

/// Compiled sizes of the translated patterns measured so far: a pattern
/// many policies of a set share is measured once.
#[derive(Default)]
pub(crate) struct SizeMemo(std::collections::HashMap<String, usize>);

/// Compiles the target of `policy`, or returns all of its errors.
pub(crate) fn compile_policy(policy: &pb::Policy) -> Result<CompiledTarget, Vec<PolicyError>> {
    compile_policy_with(policy, &mut SizeMemo::default())
}

/// [`compile_policy`] for one policy of a set.
pub(crate) fn compile_policy_with(
    policy: &pb::Policy,
    memo: &mut SizeMemo,
) -> Result<CompiledTarget, Vec<PolicyError>> {
    let mut c = Compiler {
        signal: None,
        errors: Vec::new(),
        regex_bytes: 0,
        memo,
    };
    let compiled = c.target(policy);
    match compiled {
        Some(t) if c.errors.is_empty() => Ok(t),
        _ => Err(c.errors),
    }
}

/// Every error of `policy` under the engine's rules (envelope included).
pub(crate) fn check_policy(policy: &pb::Policy) -> Vec<PolicyError> {
    let mut errors = envelope_errors(policy);
    if let Err(mut e) = compile_policy(policy) {
        errors.append(&mut e);
    }
    errors
}

/// A blank id counts as missing: the engine orders and reports by id.
pub(crate) fn missing_id(policy: &pb::Policy) -> Option<PolicyError> {
    policy
        .id
        .trim()
        .is_empty()
        .then(|| PolicyError::new(None, Vec::new(), Some("id"), "required"))
}

/// Envelope rules of the API validator: an id to order by and report under,
/// printable wherever ids are shown (a terminal, a log line, a table).
fn envelope_errors(policy: &pb::Policy) -> Vec<PolicyError> {
    let mut errors: Vec<PolicyError> = missing_id(policy).into_iter().collect();
    if policy.id.chars().any(char::is_control) {
        errors.push(PolicyError::new(
            None,
            Vec::new(),
            Some("id"),
            "contains control characters",
        ));
    }
    if policy.name.trim().is_empty() {
        errors.push(PolicyError::new(None, Vec::new(), Some("name"), "required"));
    }
    errors
}

struct Compiler<'m> {
    signal: Option<Signal>,
    errors: Vec<PolicyError>,
    /// Compiled size of the policy's regexes so far, against
    /// [`POLICY_REGEX_BUDGET`].
    regex_bytes: usize,
    memo: &'m mut SizeMemo,
}

/// A match member, borrowed from any of the three matcher messages.
enum MatchRef<'a> {
    Exact(&'a str),
    Regex(&'a str),
    Exists(bool),
    StartsWith(&'a str),
    EndsWith(&'a str),
    Contains(&'a str),
    Equals(&'a pb::Value),
    Compare(CmpOp, &'a pb::NumericValue),
}

macro_rules! match_ref {
    ($m:expr, $path:path) => {{
        use $path as M;
        $m.as_ref().map(|m| match m {
            M::Exact(s) => MatchRef::Exact(s),
            M::Regex(s) => MatchRef::Regex(s),
            M::Exists(b) => MatchRef::Exists(*b),
            M::StartsWith(s) => MatchRef::StartsWith(s),
            M::EndsWith(s) => MatchRef::EndsWith(s),
            M::Contains(s) => MatchRef::Contains(s),
            M::Equals(v) => MatchRef::Equals(v),
            M::Gt(v) => MatchRef::Compare(CmpOp::Gt, v),
            M::Gte(v) => MatchRef::Compare(CmpOp::Gte, v),
            M::Lt(v) => MatchRef::Compare(CmpOp::Lt, v),
            M::Lte(v) => MatchRef::Compare(CmpOp::Lte, v),
        })
    }};
}

/// What a selector resolved to, before its match is compiled.
enum Resolved<S> {
    /// A value field; the match is required.
    Value(S),
    /// An enum selector carrying its operand; only `exists` is allowed.
    Enum(S, i64),
}

impl Compiler<'_> {
    fn err(
        &mut self,
        location: Vec<PathSeg>,
        field: Option<&'static str>,
        reason: impl Into<String>,
    ) {
        self.errors
            .push(PolicyError::new(self.signal, location, field, reason));
    }

    fn target(&mut self, policy: &pb::Policy) -> Option<CompiledTarget> {
        match &policy.target {
            None => {
                self.err(
                    Vec::new(),
                    Some("target"),
                    "one of log, metric or trace is required",
                );
                None
            }
            Some(Target::Metric(t)) => {
                self.signal = Some(Signal::Metric);
                self.metric(t)
            }
            Some(Target::Log(t)) => {
                self.signal = Some(Signal::Log);
                self.log(t)
            }
            Some(Target::Trace(t)) => {
                self.signal = Some(Signal::Trace);
                self.trace(t)
            }
        }
    }

    /// Charges a translated regex to the policy's budget; false (with an
    /// error naming the field) when it does not fit.
    fn charge_regex(&mut self, translated: &str, written: &str, loc: &[PathSeg]) -> bool {
        let left = POLICY_REGEX_BUDGET.saturating_sub(self.regex_bytes);
        let measured = match self.memo.0.get(translated) {
            Some(&size) => Ok(size),
            None => super::regex::compiled_size(translated, POLICY_REGEX_BUDGET).inspect(|&size| {
                self.memo.0.insert(translated.to_owned(), size);
            }),
        };
        let fits = match measured {
            Ok(size) if size > left => Err(SizeError::TooLarge),
            other => other,
        };
        match fits {
            Ok(size) => {
                self.regex_bytes += size;
                true
            }
            Err(SizeError::TooLarge) => {
                let whose = if self.regex_bytes == 0 {
                    "it compiles"
                } else {
                    "with this policy's other regexes, it compiles"
                };
                self.err(
                    loc.to_vec(),
                    Some("regex"),
                    format!(
                        "regex {written:?} is too large: {whose} to more than {} KiB, the per-policy budget; use smaller repetition counts or fewer alternatives",
                        POLICY_REGEX_BUDGET >> 10
                    ),
                );
                false
            }
            Err(SizeError::Invalid(detail)) => {
                self.err(
                    loc.to_vec(),
                    Some("regex"),
                    format!("invalid regex {written:?}: {detail}"),
                );
                false
            }
        }
    }

    fn check_non_empty(&mut self, len: usize) {
        if len == 0 {
            self.err(vec![PathSeg::Key("match")], None, "empty match list");
        }
    }

    fn path(
        &mut self,
        path: &pb::AttributePath,
        loc: &[PathSeg],
        field: &'static str,
    ) -> Option<AttrPath> {
        if path.path.is_empty() {
            self.err(loc.to_vec(), Some(field), "attribute has empty path");
            return None;
        }
        Some(path.path.clone().into())
    }

    fn enum_field<E>(&mut self, raw: i32, loc: &[PathSeg], field: &'static str) -> Option<E>
    where
        E: TryFrom<i32> + Copy + PartialEq + Default,
    {
        match E::try_from(raw) {
            Ok(v) if v != E::default() => Some(v),
            Ok(_) => {
                self.err(loc.to_vec(), Some(field), "unspecified enum");
                None
            }
            Err(_) => {
                self.err(
                    loc.to_vec(),
                    Some(field),
                    format!("unknown enum value {raw}"),
                );
                None
            }
        }
    }

    /// Compiles one matcher's match member against its resolved selector.
    fn matcher<S>(
        &mut self,
        resolved: Option<Resolved<S>>,
        m: Option<MatchRef<'_>>,
        negate: bool,
        ci: bool,
        loc: Vec<PathSeg>,
    ) -> Option<MatcherSpec<S>> {
        let resolved = resolved?;
        let (selector, operand) = match resolved {
            Resolved::Value(s) => (s, None),
            Resolved::Enum(s, v) => (s, Some(v)),
        };
        if let Some(enum_value) = operand {
            // Enum selectors: the operand is in the selector; an omitted match
            // means `exists: true`; `exists: false` means "differs".
            return match m {
                None => Some(MatcherSpec {
                    selector,
                    pattern: Pattern::Typed(TypedKey::Int(enum_value)),
                    negated: negate,
                    location: loc,
                }),
                Some(MatchRef::Exists(exists)) => Some(MatcherSpec {
                    selector,
                    pattern: Pattern::Typed(TypedKey::Int(enum_value)),
                    negated: negate ^ !exists,
                    location: loc,
                }),
                Some(_) => {
                    self.err(loc, None, "enum selectors support only `exists`");
                    None
                }
            };
        }
        let Some(m) = m else {
            self.err(loc, None, "missing match");
            return None;
        };
        let text = |op: TextOp, s: &str| Pattern::Text {
            op,
            pattern: s.to_owned(),
            case_insensitive: ci,
        };
        let (pattern, negated) = match m {
            MatchRef::Exact(s) => (text(TextOp::Exact, s), negate),
            MatchRef::StartsWith(s) => (text(TextOp::Prefix, s), negate),
            MatchRef::EndsWith(s) => (text(TextOp::Suffix, s), negate),
            MatchRef::Contains(s) => (text(TextOp::Contains, s), negate),
            MatchRef::Regex(s) => match super::regex::translate(s, ci) {
                Ok(translated) if !self.charge_regex(&translated, s, &loc) => return None,
                Ok(translated) => (
                    Pattern::Text {
                        op: TextOp::Regex,
                        pattern: translated,
                        case_insensitive: ci,
                    },
                    negate,
                ),
                Err(detail) => {
                    self.err(loc, Some("regex"), format!("invalid regex {s:?}: {detail}"));
                    return None;
                }
            },
            MatchRef::Exists(exists) => (Pattern::Exists, negate ^ !exists),
            MatchRef::Equals(v) => {
                use pb::value::Value as V;
                let pattern = match &v.value {
                    None => {
                        self.err(loc, Some("equals"), "missing value");
                        return None;
                    }
                    Some(V::StringValue(s)) => text(TextOp::Exact, s),
                    Some(V::BoolValue(b)) => Pattern::Typed(TypedKey::Bool(*b)),
                    Some(V::IntValue(i)) => Pattern::Typed(TypedKey::Int(*i)),
                    Some(V::DoubleValue(d)) => {
                        TypedKey::from_double(*d).map_or(Pattern::Never, Pattern::Typed)
                    }
                    Some(V::BytesValue(b)) => Pattern::Typed(TypedKey::Bytes(b.clone().into())),
                    Some(V::HexValue(h)) => match decode_hex(h) {
                        Some(bytes) => Pattern::Typed(TypedKey::Bytes(bytes.into())),
                        None => {
                            self.err(loc, Some("equals"), format!("invalid hex value {h:?}"));
                            return None;
                        }
                    },
                };
                (pattern, negate)
            }
            MatchRef::Compare(op, n) => {
                use pb::numeric_value::Value as N;
                let pattern = match n.value {
                    None => {
                        self.err(loc, Some(cmp_name(op)), "missing numeric value");
                        return None;
                    }
                    Some(N::IntValue(i)) => Pattern::Compare(op, Number::Int(i)),
                    Some(N::DoubleValue(d)) if d.is_nan() => Pattern::Never,
                    Some(N::DoubleValue(d)) => Pattern::Compare(op, Number::Double(d)),
                };
                (pattern, negate)
            }
        };
        Some(MatcherSpec {
            selector,
            pattern,
            negated,
            location: loc,
        })
    }

    // ---- metric ----

    fn metric(&mut self, t: &pb::MetricTarget) -> Option<CompiledTarget> {
        use pb::metric_matcher::Field as F;
        self.check_non_empty(t.r#match.len());
        let mut matchers = Vec::new();
        for (i, m) in t.r#match.iter().enumerate() {
            let loc = vec![PathSeg::Index("match", i)];
            let resolved = match &m.field {
                None => {
                    self.err(loc.clone(), None, "missing field selector");
                    None
                }
                Some(F::MetricField(f)) => self
                    .enum_field::<pb::MetricField>(*f, &loc, "metric_field")
                    .map(|f| Resolved::Value(MetricSelector::Field(f))),
                Some(F::DatapointAttribute(p)) => self
                    .path(p, &loc, "datapoint_attribute")
                    .map(|p| Resolved::Value(MetricSelector::DatapointAttribute(p))),
                Some(F::ResourceAttribute(p)) => self
                    .path(p, &loc, "resource_attribute")
                    .map(|p| Resolved::Value(MetricSelector::ResourceAttribute(p))),
                Some(F::ScopeAttribute(p)) => self
                    .path(p, &loc, "scope_attribute")
                    .map(|p| Resolved::Value(MetricSelector::ScopeAttribute(p))),
                Some(F::MetricType(v)) => self
                    .enum_field::<pb::MetricType>(*v, &loc, "metric_type")
                    .map(|v| Resolved::Enum(MetricSelector::Type, v as i64)),
                Some(F::AggregationTemporality(v)) => self
                    .enum_field::<pb::AggregationTemporality>(*v, &loc, "aggregation_temporality")
                    .map(|v| Resolved::Enum(MetricSelector::Temporality, v as i64)),
            };
            let spec = self.matcher(
                resolved,
                match_ref!(m.r#match, pb::metric_matcher::Match),
                m.negate,
                m.case_insensitive,
                loc,
            );
            matchers.extend(spec);
        }
        Some(CompiledTarget::Metric {
            matchers,
            keep: t.keep,
        })
    }

    // ---- log ----

    fn log_selector(&mut self, field: Option<LogSel<'_>>, loc: &[PathSeg]) -> Option<LogSelector> {
        self.log_selector_named(
            field,
            loc,
            [
                "log_field",
                "log_attribute",
                "resource_attribute",
                "scope_attribute",
            ],
        )
    }

    /// `names` are the proto field names of the oneof members (they differ
    /// for `LogRename.from`), so errors name the field the user wrote.
    fn log_selector_named(
        &mut self,
        field: Option<LogSel<'_>>,
        loc: &[PathSeg],
        names: [&'static str; 4],
    ) -> Option<LogSelector> {
        match field {
            None => {
                self.err(loc.to_vec(), None, "missing field selector");
                None
            }
            Some(LogSel::Field(f)) => self
                .enum_field::<pb::LogField>(f, loc, names[0])
                .map(LogSelector::Field),
            Some(LogSel::Log(p)) => self.path(p, loc, names[1]).map(LogSelector::LogAttribute),
            Some(LogSel::Resource(p)) => self
                .path(p, loc, names[2])
                .map(LogSelector::ResourceAttribute),
            Some(LogSel::Scope(p)) => self.path(p, loc, names[3]).map(LogSelector::ScopeAttribute),
        }
    }

    fn log(&mut self, t: &pb::LogTarget) -> Option<CompiledTarget> {
        self.check_non_empty(t.r#match.len());
        let mut matchers = Vec::new();
        for (i, m) in t.r#match.iter().enumerate() {
            let loc = vec![PathSeg::Index("match", i)];
            let resolved = self
                .log_selector(m.field.as_ref().map(LogSel::from_matcher), &loc)
                .map(Resolved::Value);
            let spec = self.matcher(
                resolved,
                match_ref!(m.r#match, pb::log_matcher::Match),
                m.negate,
                m.case_insensitive,
                loc,
            );
            matchers.extend(spec);
        }
        let keep = LogKeep::parse(&t.keep).unwrap_or_else(|| {
            self.err(
                vec![PathSeg::Key("keep")],
                None,
                format!("invalid value {:?}", t.keep),
            );
            LogKeep::All
        });
        let sample_key = t.sample_key.as_ref().and_then(|k| {
            let loc = vec![PathSeg::Key("sample_key")];
            self.log_selector(k.field.as_ref().map(LogSel::from_sample_key), &loc)
        });
        let transform = t
            .transform
            .as_ref()
            .map(|tr| self.transform(tr))
            .unwrap_or_default();
        Some(CompiledTarget::Log {
            matchers,
            keep,
            sample_key,
            transform,
        })
    }

    fn transform(&mut self, t: &pb::LogTransform) -> Transform {
        let at = |stage: &'static str, i: usize| {
            vec![PathSeg::Key("transform"), PathSeg::Index(stage, i)]
        };
        let mut out = Transform::default();
        for (i, op) in t.remove.iter().enumerate() {
            out.remove.extend(
                self.log_selector(op.field.as_ref().map(LogSel::from_remove), &at("remove", i)),
            );
        }
        for (i, op) in t.redact.iter().enumerate() {
            let loc = at("redact", i);
            let selector = self.log_selector(op.field.as_ref().map(LogSel::from_redact), &loc);
            let regex = match &op.regex {
                None => None,
                Some(pattern) => {
                    let built = super::regex::translate(pattern, false).map(|t| {
                        self.charge_regex(&t, pattern, &loc)
                            .then(|| super::regex::build(pattern, false))
                    });
                    match built {
                        // Over the budget: charge_regex reported it.
                        Ok(None) => continue,
                        Ok(Some(Ok(r))) => Some(r),
                        Ok(Some(Err(detail))) | Err(detail) => {
                            self.err(
                                loc,
                                Some("regex"),
                                format!("invalid regex {pattern:?}: {detail}"),
                            );
                            continue;
                        }
                    }
                }
            };
            if let Some(selector) = selector {
                out.redact.push(Redact {
                    selector,
                    replacement: op.replacement.clone(),
                    regex,
                });
            }
        }
        for (i, op) in t.rename.iter().enumerate() {
            let loc = at("rename", i);
            let from = self.log_selector_named(
                op.from.as_ref().map(LogSel::from_rename),
                &loc,
                [
                    "from_log_field",
                    "from_log_attribute",
                    "from_resource_attribute",
                    "from_scope_attribute",
                ],
            );
            if op.to.is_empty() {
                self.err(loc, Some("to"), "empty target");
                continue;
            }
            if let Some(from) = from {
                out.rename.push(Rename {
                    from,
                    to: op.to.clone(),
                    upsert: op.upsert,
                });
            }
        }
        for (i, op) in t.add.iter().enumerate() {
            if let Some(selector) =
                self.log_selector(op.field.as_ref().map(LogSel::from_add), &at("add", i))
            {
                out.add.push(Add {
                    selector,
                    value: op.value.clone(),
                    upsert: op.upsert,
                });
            }
        }
        out
    }

    // ---- trace ----

    fn trace(&mut self, t: &pb::TraceTarget) -> Option<CompiledTarget> {
        use pb::trace_matcher::Field as F;
        self.check_non_empty(t.r#match.len());
        let mut matchers = Vec::new();
        for (i, m) in t.r#match.iter().enumerate() {
            let loc = vec![PathSeg::Index("match", i)];
            let resolved = match &m.field {
                None => {
                    self.err(loc.clone(), None, "missing field selector");
                    None
                }
                Some(F::TraceField(f)) => self
                    .enum_field::<pb::TraceField>(*f, &loc, "trace_field")
                    .map(|f| Resolved::Value(TraceSelector::Field(f))),
                Some(F::SpanAttribute(p)) => self
                    .path(p, &loc, "span_attribute")
                    .map(|p| Resolved::Value(TraceSelector::SpanAttribute(p))),
                Some(F::ResourceAttribute(p)) => self
                    .path(p, &loc, "resource_attribute")
                    .map(|p| Resolved::Value(TraceSelector::ResourceAttribute(p))),
                Some(F::ScopeAttribute(p)) => self
                    .path(p, &loc, "scope_attribute")
                    .map(|p| Resolved::Value(TraceSelector::ScopeAttribute(p))),
                Some(F::EventAttribute(p)) => self
                    .path(p, &loc, "event_attribute")
                    .map(|p| Resolved::Value(TraceSelector::EventAttribute(p))),
                Some(F::SpanKind(v)) => self
                    .enum_field::<pb::SpanKind>(*v, &loc, "span_kind")
                    .map(|v| Resolved::Enum(TraceSelector::Kind, v as i64)),
                // UNSPECIFIED is OTLP's "unset", a status worth matching.
                Some(F::SpanStatus(v)) => match pb::SpanStatusCode::try_from(*v) {
                    Ok(s) => Some(Resolved::Enum(TraceSelector::Status, s as i64)),
                    Err(_) => {
                        self.err(
                            loc.clone(),
                            Some("span_status"),
                            format!("unknown enum value {v}"),
                        );
                        None
                    }
                },
                Some(F::EventName(name)) if name.is_empty() => {
                    self.err(loc.clone(), Some("event_name"), "empty event name");
                    None
                }
                Some(F::EventName(name)) => Some(Resolved::Value(TraceSelector::EventName(
                    Arc::from(name.as_str()),
                ))),
                Some(F::LinkTraceId(h)) => match decode_hex(h).filter(|b| !b.is_empty()) {
                    Some(bytes) => Some(Resolved::Value(TraceSelector::LinkTraceId(bytes.into()))),
                    None => {
                        self.err(
                            loc.clone(),
                            Some("link_trace_id"),
                            format!("invalid hex value {h:?}"),
                        );
                        None
                    }
                },
            };
            let spec = self.matcher(
                resolved,
                match_ref!(m.r#match, pb::trace_matcher::Match),
                m.negate,
                m.case_insensitive,
                loc,
            );
            matchers.extend(spec);
        }
        let keep = match &t.keep {
            None => TraceKeep::Unconfigured,
            Some(cfg) => self.sampling(cfg).unwrap_or(TraceKeep::Unconfigured),
        };
        Some(CompiledTarget::Trace { matchers, keep })
    }

    fn sampling(&mut self, cfg: &pb::TraceSamplingConfig) -> Option<TraceKeep> {
        let loc = vec![PathSeg::Key("keep")];
        let pct = f64::from(cfg.percentage);
        if !(0.0..=100.0).contains(&pct) {
            self.err(
                loc.clone(),
                Some("percentage"),
                format!("percentage out of range ({pct}, expected 0 to 100)"),
            );
        }
        let mode = match cfg.mode.unwrap_or(0) {
            0 => Some(pb::SamplingMode::HashSeed),
            m => pb::SamplingMode::try_from(m).ok().or_else(|| {
                self.err(
                    loc.clone(),
                    Some("mode"),
                    format!("unknown sampling mode {m}"),
                );
                None
            }),
        };
        let precision = cfg.sampling_precision.unwrap_or(4);
        if !(1..=14).contains(&precision) {
            self.err(
                loc.clone(),
                Some("sampling_precision"),
                format!("sampling precision {precision} out of range (1 to 14)"),
            );
        }
        let mode = mode?;
        if !(0.0..=100.0).contains(&pct) || !(1..=14).contains(&precision) {
            return None;
        }
        Some(if pct <= 0.0 {
            TraceKeep::None
        } else if pct >= 100.0 {
            TraceKeep::All
        } else {
            let probability = pct / 100.0;
            TraceKeep::Sample(SamplingConfig {
                probability,
                threshold: sampling::threshold(probability),
                mode,
                precision,
                hash_seed: cfg.hash_seed.unwrap_or(0),
                fail_closed: cfg.fail_closed.unwrap_or(true),
            })
        })
    }
}

fn cmp_name(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Gt => "gt",
        CmpOp::Gte => "gte",
        CmpOp::Lt => "lt",
        CmpOp::Lte => "lte",
    }
}

/// Hex decoding that accepts either case and requires even length.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    hex::decode(text.trim()).ok()
}

/// The shape shared by the log selector oneofs; the policy encoder
/// (`policy::encode`) reads them through it too.
pub(crate) enum LogSel<'a> {
    Field(i32),
    Log(&'a pb::AttributePath),
    Resource(&'a pb::AttributePath),
    Scope(&'a pb::AttributePath),
}

macro_rules! log_sel_from {
    ($name:ident, $ty:path, $f:ident, $l:ident, $r:ident, $s:ident) => {
        pub(crate) fn $name(field: &'a $ty) -> Self {
            use $ty as T;
            match field {
                T::$f(f) => LogSel::Field(*f),
                T::$l(p) => LogSel::Log(p),
                T::$r(p) => LogSel::Resource(p),
                T::$s(p) => LogSel::Scope(p),
            }
        }
    };
}

impl<'a> LogSel<'a> {
    log_sel_from!(
        from_matcher,
        pb::log_matcher::Field,
        LogField,
        LogAttribute,
        ResourceAttribute,
        ScopeAttribute
    );
    log_sel_from!(
        from_sample_key,
        pb::log_sample_key::Field,
        LogField,
        LogAttribute,
        ResourceAttribute,
        ScopeAttribute
    );
    log_sel_from!(
        from_remove,
        pb::log_remove::Field,
        LogField,
        LogAttribute,
        ResourceAttribute,
        ScopeAttribute
    );
    log_sel_from!(
        from_redact,
        pb::log_redact::Field,
        LogField,
        LogAttribute,
        ResourceAttribute,
        ScopeAttribute
    );
    log_sel_from!(
        from_add,
        pb::log_add::Field,
        LogField,
        LogAttribute,
        ResourceAttribute,
        ScopeAttribute
    );
    log_sel_from!(
        from_rename,
        pb::log_rename::From,
        FromLogField,
        FromLogAttribute,
        FromResourceAttribute,
        FromScopeAttribute
    );
}

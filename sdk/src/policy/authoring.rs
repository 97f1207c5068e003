//! The lenient authoring decoder: YAML, JSON and proto3 JSON → [`Policy`].
//!
//! One decoder serves all three encodings of the spec, because they differ
//! only in spelling: snake_case or camelCase keys, enum names, suffixes or
//! numbers, attribute paths as a bare string, an array or `{path: [...]}`,
//! typed literals as scalars or `{int_value: …}` objects. Files may hold one
//! policy, several YAML documents, a `{policies: [...]}` wrapper or a whole
//! `SyncResponse` in wire form.
//!
//! A policy that cannot be decoded is rejected on its own with errors naming
//! its id and the field path; the other policies of the file stay usable.
//! Semantic checks (regex syntax, keep strings, empty paths…) are not made
//! here but in [`super::validate`], so that policies arriving over the wire
//! in binary protobuf get exactly the same checks.

use std::path::Path;

use base64::Engine as _;
use serde_json::{Map, Value as Json};
use tero_proto::otel;
use tero_proto::policy::{self as pb, policy::Target};

use super::enums::{LenientEnum, parse_enum_str};
use super::error::{PathSeg, PolicyError, Signal};

/// The encoding of a policy document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    /// Picks the format from a file extension; YAML is a superset of JSON, so
    /// anything that is not `.json` is read as YAML.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// A document that could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("{0}")]
    Shape(String),
}

/// A policy that was skipped because it could not be decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedPolicy {
    /// Position in the document (zero-based), for policies without an id.
    pub index: usize,
    /// The id, when it could be read.
    pub id: Option<String>,
    pub errors: Vec<PolicyError>,
}

impl std::fmt::Display for RejectedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.id {
            Some(id) => write!(f, "policy {id:?}: ")?,
            None => write!(f, "policy #{}: ", self.index)?,
        }
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The outcome of decoding one document.
#[derive(Debug, Clone, Default)]
pub struct LoadedPolicies {
    pub policies: Vec<pb::Policy>,
    pub rejected: Vec<RejectedPolicy>,
    /// Keys that were not understood, with their path. Not fatal: a newer
    /// writer may know fields this reader does not.
    pub warnings: Vec<String>,
}

/// The replacement of a `redact` transform that names none (the spec's
/// default). The loader fills it in and the encoder leaves it out, so a
/// policy reads back the same through both.
pub(crate) const DEFAULT_REDACTION: &str = "[REDACTED]";

/// Reads and decodes a policy file (format from its extension).
pub fn load_file(path: &Path) -> Result<LoadedPolicies, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_policies(&text, Format::from_path(path))
}

/// Decodes a policy document.
pub fn parse_policies(text: &str, format: Format) -> Result<LoadedPolicies, LoadError> {
    let documents: Vec<Json> = match format {
        Format::Json => vec![serde_json::from_str(text)?],
        Format::Yaml => {
            let mut docs = Vec::new();
            for doc in serde_yaml_ng::Deserializer::from_str(text) {
                let value: Json = serde::Deserialize::deserialize(doc)?;
                if !value.is_null() {
                    docs.push(value);
                }
            }
            docs
        }
    };
    let mut out = LoadedPolicies::default();
    let mut index = 0;
    for doc in documents {
        for item in policy_items(doc)? {
            decode_into(&item, index, &mut out);
            index += 1;
        }
    }
    Ok(out)
}

/// Decodes one policy object (e.g. an API request body).
pub fn parse_policy_value(value: &Json) -> Result<pb::Policy, RejectedPolicy> {
    let mut out = LoadedPolicies::default();
    decode_into(value, 0, &mut out);
    match out.rejected.pop() {
        Some(rejected) => Err(rejected),
        None => Ok(out
            .policies
            .pop()
            .expect("decode_into yields a policy or a rejection")),
    }
}

fn policy_items(doc: Json) -> Result<Vec<Json>, LoadError> {
    match doc {
        Json::Array(items) => Ok(items),
        Json::Object(mut map) => match map.remove("policies") {
            Some(Json::Array(items)) => Ok(items),
            Some(Json::Null) => Ok(Vec::new()),
            Some(_) => Err(LoadError::Shape(
                "`policies` must be a list of policies".into(),
            )),
            None => Ok(vec![Json::Object(map)]),
        },
        other => Err(LoadError::Shape(format!(
            "expected a policy, a list of policies or {{policies: [...]}}, found {}",
            kind(&other)
        ))),
    }
}

fn decode_into(value: &Json, index: usize, out: &mut LoadedPolicies) {
    let mut d = Decoder {
        errors: Vec::new(),
        warnings: Vec::new(),
        signal: None,
    };
    let policy = d.policy(value);
    out.warnings.extend(d.warnings);
    if d.errors.is_empty() {
        out.policies.push(policy);
    } else {
        let id = (!policy.id.is_empty()).then_some(policy.id);
        out.rejected.push(RejectedPolicy {
            index,
            id,
            errors: d.errors,
        });
    }
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// An object whose keys are looked up in either spelling; keys never looked
/// up are reported as unknown.
struct Obj<'a> {
    map: &'a Map<String, Json>,
    used: Vec<&'a str>,
}

impl<'a> Obj<'a> {
    fn new(map: &'a Map<String, Json>) -> Self {
        Self {
            map,
            used: Vec::new(),
        }
    }

    fn get(&mut self, snake: &str) -> Option<&'a Json> {
        let (key, value) = self
            .map
            .get_key_value(snake)
            .or_else(|| self.map.get_key_value(camel(snake).as_str()))?;
        self.used.push(key.as_str());
        Some(value)
    }

    fn unknown_keys(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.map
            .keys()
            .map(String::as_str)
            .filter(|k| !self.used.contains(k))
    }
}

struct Decoder {
    errors: Vec<PolicyError>,
    warnings: Vec<String>,
    signal: Option<Signal>,
}

type Loc = Vec<PathSeg>;

fn at(loc: &Loc, seg: PathSeg) -> Loc {
    let mut l = loc.clone();
    l.push(seg);
    l
}

/// Selector keys shared by log matchers and log transform ops.
const LOG_SELECTORS: &[&str] = &[
    "log_field",
    "log_attribute",
    "resource_attribute",
    "scope_attribute",
];
const MATCH_KEYS: &[&str] = &[
    "exact",
    "regex",
    "exists",
    "starts_with",
    "ends_with",
    "contains",
    "equals",
    "gt",
    "gte",
    "lt",
    "lte",
];

/// The decoded match member, identical across the three matcher messages.
enum MatchSpec {
    Exact(String),
    Regex(String),
    Exists(bool),
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    Equals(pb::Value),
    Gt(pb::NumericValue),
    Gte(pb::NumericValue),
    Lt(pb::NumericValue),
    Lte(pb::NumericValue),
}

macro_rules! into_match {
    ($spec:expr, $m:path) => {{
        use $m as M;
        match $spec {
            MatchSpec::Exact(s) => M::Exact(s),
            MatchSpec::Regex(s) => M::Regex(s),
            MatchSpec::Exists(b) => M::Exists(b),
            MatchSpec::StartsWith(s) => M::StartsWith(s),
            MatchSpec::EndsWith(s) => M::EndsWith(s),
            MatchSpec::Contains(s) => M::Contains(s),
            MatchSpec::Equals(v) => M::Equals(v),
            MatchSpec::Gt(v) => M::Gt(v),
            MatchSpec::Gte(v) => M::Gte(v),
            MatchSpec::Lt(v) => M::Lt(v),
            MatchSpec::Lte(v) => M::Lte(v),
        }
    }};
}

impl Decoder {
    fn err(&mut self, loc: &Loc, field: Option<&'static str>, reason: impl Into<String>) {
        self.errors
            .push(PolicyError::new(self.signal, loc.clone(), field, reason));
    }

    fn warn_unknown(&mut self, obj: &Obj<'_>, loc: &Loc) {
        for key in obj.unknown_keys() {
            let mut path: Vec<String> = self.signal.iter().map(|s| s.as_str().to_owned()).collect();
            path.extend(loc.iter().map(ToString::to_string));
            path.push(key.to_owned());
            self.warnings
                .push(format!("unknown key `{}` ignored", path.join(".")));
        }
    }

    fn object<'a>(
        &mut self,
        v: &'a Json,
        loc: &Loc,
        field: Option<&'static str>,
    ) -> Option<Obj<'a>> {
        match v {
            Json::Object(map) => Some(Obj::new(map)),
            other => {
                self.err(
                    loc,
                    field,
                    format!("expected an object, found {}", kind(other)),
                );
                None
            }
        }
    }

    fn string(&mut self, v: &Json, loc: &Loc, field: &'static str) -> String {
        match v {
            Json::String(s) => s.clone(),
            // YAML turns unquoted `200` or `true` into scalars; they are still
            // meant as text where the schema says string.
            Json::Number(n) => n.to_string(),
            Json::Bool(b) => b.to_string(),
            Json::Null => String::new(),
            other => {
                self.err(
                    loc,
                    Some(field),
                    format!("expected a string, found {}", kind(other)),
                );
                String::new()
            }
        }
    }

    fn boolean(&mut self, v: &Json, loc: &Loc, field: &'static str) -> bool {
        match v {
            Json::Bool(b) => *b,
            Json::Null => false,
            Json::String(s) if s.eq_ignore_ascii_case("true") => true,
            Json::String(s) if s.eq_ignore_ascii_case("false") => false,
            other => {
                self.err(
                    loc,
                    Some(field),
                    format!("expected true or false, found {}", kind(other)),
                );
                false
            }
        }
    }

    fn u64_value(&mut self, v: &Json, loc: &Loc, field: &'static str) -> u64 {
        let parsed = match v {
            Json::Number(n) => n.as_u64(),
            Json::String(s) => s.trim().parse().ok(),
            Json::Null => Some(0),
            _ => None,
        };
        parsed.unwrap_or_else(|| {
            self.err(
                loc,
                Some(field),
                format!("expected an unsigned integer, found {v}"),
            );
            0
        })
    }

    fn enumeration<E: LenientEnum>(&mut self, v: &Json, loc: &Loc, field: &'static str) -> i32 {
        let parsed = match v {
            Json::String(s) => parse_enum_str::<E>(s),
            Json::Number(n) => n
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .and_then(E::from_i32),
            _ => None,
        };
        match parsed {
            Some(e) => e.to_i32(),
            None => {
                self.err(
                    loc,
                    Some(field),
                    format!("unknown value {v} (expected a {}* name)", E::PREFIX),
                );
                0
            }
        }
    }

    fn policy(&mut self, value: &Json) -> pb::Policy {
        let root: Loc = Vec::new();
        let mut policy = pb::Policy {
            enabled: true,
            ..Default::default()
        };
        let Some(mut obj) = self.object(value, &root, None) else {
            return policy;
        };
        match obj.get("id") {
            Some(Json::String(s)) => policy.id = s.clone(),
            Some(Json::Number(n)) => policy.id = n.to_string(),
            Some(other) => self.err(
                &root,
                Some("id"),
                format!("expected a string, found {}", kind(other)),
            ),
            None => {}
        }
        if let Some(v) = obj.get("name") {
            policy.name = self.string(v, &root, "name");
        }
        if let Some(v) = obj.get("description") {
            policy.description = self.string(v, &root, "description");
        }
        if let Some(v) = obj.get("enabled").filter(|v| !v.is_null()) {
            policy.enabled = self.boolean(v, &root, "enabled");
        }
        if let Some(v) = obj.get("created_at_unix_nano") {
            policy.created_at_unix_nano = self.u64_value(v, &root, "created_at_unix_nano");
        }
        if let Some(v) = obj.get("modified_at_unix_nano") {
            policy.modified_at_unix_nano = self.u64_value(v, &root, "modified_at_unix_nano");
        }
        if let Some(v) = obj.get("labels") {
            policy.labels = self.labels(v, &root);
        }
        if let Some(v) = obj.get("extensions") {
            policy.extensions = self.extensions(v);
        }

        let targets = [
            ("log", Signal::Log),
            ("metric", Signal::Metric),
            ("trace", Signal::Trace),
        ];
        let mut found: Vec<(&'static str, Signal, &Json)> = Vec::new();
        for (key, signal) in targets {
            if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
                found.push((key, signal, v));
            }
        }
        if found.len() > 1 {
            let names: Vec<&str> = found.iter().map(|f| f.0).collect();
            self.err(
                &root,
                Some("target"),
                format!(
                    "exactly one of log, metric or trace may be set, found {}",
                    names.join(" and ")
                ),
            );
        }
        if let Some(&(_, signal, v)) = found.first() {
            self.signal = Some(signal);
            policy.target = match signal {
                Signal::Log => self.log_target(v).map(Target::Log),
                Signal::Metric => self.metric_target(v).map(Target::Metric),
                Signal::Trace => self.trace_target(v).map(Target::Trace),
            };
            self.signal = None;
        }
        self.warn_unknown(&obj, &root);
        policy
    }

    fn labels(&mut self, v: &Json, loc: &Loc) -> Vec<otel::KeyValue> {
        match v {
            // The authoring shorthand: a plain map of scalars.
            Json::Object(map) => map
                .iter()
                .map(|(k, v)| otel::KeyValue {
                    key: k.clone(),
                    value: Some(any_value_from_scalar(v)),
                })
                .collect(),
            // OTLP JSON: [{key, value: {stringValue: …}}].
            Json::Array(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    match serde_json::from_value::<otel::KeyValue>(item.clone()) {
                        Ok(kv) => Some(kv),
                        Err(e) => {
                            self.err(
                                &at(loc, PathSeg::Index("labels", i)),
                                None,
                                format!("invalid key/value: {e}"),
                            );
                            None
                        }
                    }
                })
                .collect(),
            Json::Null => Vec::new(),
            other => {
                self.err(
                    loc,
                    Some("labels"),
                    format!("expected a map of labels, found {}", kind(other)),
                );
                Vec::new()
            }
        }
    }

    fn extensions(&mut self, v: &Json) -> Vec<pb::Extension> {
        let Json::Array(items) = v else {
            self.err(
                &Vec::new(),
                Some("extensions"),
                format!("expected a list, found {}", kind(v)),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let loc = vec![PathSeg::Index("extensions", i)];
            let Some(mut obj) = self.object(item, &loc, None) else {
                continue;
            };
            let mut ext = pb::Extension::default();
            if let Some(v) = obj.get("type") {
                ext.r#type = self.string(v, &loc, "type");
            }
            if let Some(v) = obj.get("version") {
                ext.version = self.string(v, &loc, "version");
            }
            if let Some(v) = obj.get("mode") {
                ext.mode = self.enumeration::<pb::ExtensionMode>(v, &loc, "mode");
            }
            match obj.get("config") {
                // Wire form: base64 bytes.
                Some(Json::String(s)) => match decode_base64(s) {
                    Ok(bytes) => ext.config = bytes,
                    Err(_) => ext.config = s.as_bytes().to_vec(),
                },
                // Authoring form: a nested object, handed to the handler as JSON.
                Some(Json::Null) | None => {}
                Some(other) => ext.config = other.to_string().into_bytes(),
            }
            self.warn_unknown(&obj, &loc);
            out.push(ext);
        }
        out
    }

    fn matchers<'a>(&mut self, obj: &mut Obj<'a>) -> Vec<(Loc, Obj<'a>)> {
        let loc: Loc = Vec::new();
        match obj.get("match") {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let loc = vec![PathSeg::Index("match", i)];
                    self.object(item, &loc, None).map(|o| (loc, o))
                })
                .collect(),
            Some(other) => {
                self.err(
                    &loc,
                    Some("match"),
                    format!("expected a list of matchers, found {}", kind(other)),
                );
                Vec::new()
            }
        }
    }

    /// Finds the single key of `choices` present in `obj`. More than one is
    /// an error (a oneof holds one member).
    fn one_of<'a>(
        &mut self,
        obj: &mut Obj<'a>,
        choices: &[&'static str],
        loc: &Loc,
        what: &str,
    ) -> Option<(&'static str, &'a Json)> {
        let present: Vec<(&'static str, &'a Json)> = choices
            .iter()
            .filter_map(|&c| obj.get(c).filter(|v| !v.is_null()).map(|v| (c, v)))
            .collect();
        if present.len() > 1 {
            let names: Vec<&str> = present.iter().map(|p| p.0).collect();
            self.err(
                loc,
                None,
                format!("only one {what} may be set, found {}", names.join(", ")),
            );
        }
        present.into_iter().next()
    }

    fn match_spec(&mut self, obj: &mut Obj<'_>, loc: &Loc) -> Option<MatchSpec> {
        let (key, v) = self.one_of(obj, MATCH_KEYS, loc, "match type")?;
        Some(match key {
            "exact" => MatchSpec::Exact(self.string(v, loc, key)),
            "regex" => MatchSpec::Regex(self.string(v, loc, key)),
            "starts_with" => MatchSpec::StartsWith(self.string(v, loc, key)),
            "ends_with" => MatchSpec::EndsWith(self.string(v, loc, key)),
            "contains" => MatchSpec::Contains(self.string(v, loc, key)),
            "exists" => MatchSpec::Exists(self.boolean(v, loc, key)),
            "equals" => MatchSpec::Equals(self.typed_value(v, loc)?),
            "gt" => MatchSpec::Gt(self.numeric_value(v, loc, "gt")?),
            "gte" => MatchSpec::Gte(self.numeric_value(v, loc, "gte")?),
            "lt" => MatchSpec::Lt(self.numeric_value(v, loc, "lt")?),
            "lte" => MatchSpec::Lte(self.numeric_value(v, loc, "lte")?),
            _ => unreachable!("MATCH_KEYS lists every member"),
        })
    }

    fn flags(&mut self, obj: &mut Obj<'_>, loc: &Loc) -> (bool, bool) {
        let negate = obj
            .get("negate")
            .map(|v| self.boolean(v, loc, "negate"))
            .unwrap_or(false);
        let ci = obj
            .get("case_insensitive")
            .map(|v| self.boolean(v, loc, "case_insensitive"))
            .unwrap_or(false);
        (negate, ci)
    }
}

/// The four log selector oneofs share one shape; these convert between them.
mod log_sel {
    use tero_proto::policy as pb;

    pub(super) enum Sel {
        Field(i32),
        Log(pb::AttributePath),
        Resource(pb::AttributePath),
        Scope(pb::AttributePath),
    }

    macro_rules! conv {
        ($name:ident, $ty:path, $f:ident, $l:ident, $r:ident, $s:ident) => {
            pub(super) fn $name(sel: Sel) -> $ty {
                use $ty as T;
                match sel {
                    Sel::Field(f) => T::$f(f),
                    Sel::Log(p) => T::$l(p),
                    Sel::Resource(p) => T::$r(p),
                    Sel::Scope(p) => T::$s(p),
                }
            }
        };
    }

    conv!(
        matcher,
        pb::log_matcher::Field,
        LogField,
        LogAttribute,
        ResourceAttribute,
        ScopeAttribute
    );
    conv!(
        sample_key,
        pb::log_sample_key::Field,
        LogField,
        LogAttribute,
        ResourceAttribute,
        ScopeAttribute
    );
    conv!(
        remove,
        pb::log_remove::Field,
        LogField,
        LogAttribute,
        ResourceAttribute,
        ScopeAttribute
    );
    conv!(
        redact,
        pb::log_redact::Field,
        LogField,
        LogAttribute,
        ResourceAttribute,
        ScopeAttribute
    );
    conv!(
        add,
        pb::log_add::Field,
        LogField,
        LogAttribute,
        ResourceAttribute,
        ScopeAttribute
    );
    conv!(
        rename,
        pb::log_rename::From,
        FromLogField,
        FromLogAttribute,
        FromResourceAttribute,
        FromScopeAttribute
    );
}

/// Proto3 JSON accepts standard and URL-safe base64, padded or not.
fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(&base64::alphabet::STANDARD, config)
        .decode(text)
        .or_else(|_| GeneralPurpose::new(&base64::alphabet::URL_SAFE, config).decode(text))
}

fn any_value_from_scalar(v: &Json) -> otel::AnyValue {
    use otel::any_value::Value as A;
    let value = match v {
        Json::Bool(b) => A::BoolValue(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) if !n.is_f64() => A::IntValue(i),
            _ => A::DoubleValue(n.as_f64().unwrap_or_default()),
        },
        Json::String(s) => A::StringValue(s.clone()),
        other => A::StringValue(other.to_string()),
    };
    otel::AnyValue { value: Some(value) }
}

// After `into_match!`, which they use: a macro is in scope only below its
// definition.
mod targets;
mod values;

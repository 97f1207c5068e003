//! Errors that name the policy and the exact field that is wrong.
//!
//! One error renders two ways: [`PolicyError`]'s `Display` is the field path
//! users act on (`metric.match[1].regex: invalid regex "([bad": …`), and
//! [`PolicyError::status_message`] is the form the sync protocol reports in
//! `PolicySyncStatus.errors` (`metric: match[1]: invalid regex "([bad": …`),
//! which existing Tero servers and the conformance suite compare verbatim.

use std::fmt;

/// The three telemetry signals a policy can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    Log,
    Metric,
    Trace,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Log => "log",
            Signal::Metric => "metric",
            Signal::Trace => "trace",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    /// A message field, e.g. `keep`.
    Key(&'static str),
    /// An element of a repeated field, e.g. `match[1]`.
    Index(&'static str, usize),
}

impl fmt::Display for PathSeg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathSeg::Key(k) => f.write_str(k),
            PathSeg::Index(k, i) => write!(f, "{k}[{i}]"),
        }
    }
}

/// A problem with one field of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The target the field belongs to; `None` for envelope fields (`id`).
    pub signal: Option<Signal>,
    /// Where the problem is, e.g. `[match[1]]` or `[transform, redact[0]]`.
    pub location: Vec<PathSeg>,
    /// The member of that location at fault (`regex`, `to`), when one is.
    pub field: Option<&'static str>,
    pub reason: String,
}

impl PolicyError {
    pub fn new(
        signal: Option<Signal>,
        location: Vec<PathSeg>,
        field: Option<&'static str>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            signal,
            location,
            field,
            reason: reason.into(),
        }
    }

    /// The dotted path of the offending field: `metric.match[1].regex`.
    pub fn field_path(&self) -> String {
        let mut parts: Vec<String> = Vec::with_capacity(self.location.len() + 2);
        if let Some(signal) = self.signal {
            parts.push(signal.as_str().to_owned());
        }
        parts.extend(self.location.iter().map(ToString::to_string));
        if let Some(field) = self.field {
            parts.push(field.to_owned());
        }
        parts.join(".")
    }

    /// The sync-protocol form: `<signal>: <location>: <reason>`.
    pub fn status_message(&self) -> String {
        let mut out = String::new();
        if let Some(signal) = self.signal {
            out.push_str(signal.as_str());
            out.push_str(": ");
        }
        for seg in &self.location {
            out.push_str(&seg.to_string());
            out.push_str(": ");
        }
        if self.signal.is_none()
            && self.location.is_empty()
            && let Some(field) = self.field
        {
            out.push_str(field);
            out.push_str(": ");
        }
        out.push_str(&self.reason);
        out
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.field_path();
        if path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{path}: {}", self.reason)
        }
    }
}

/// Every problem found in one policy. Validation collects all of them, not
/// only the first, so a user can fix a policy in one pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidPolicy {
    pub policy_id: String,
    pub errors: Vec<PolicyError>,
}

impl InvalidPolicy {
    /// The errors in the form `PolicySyncStatus.errors` carries.
    pub fn status_messages(&self) -> Vec<String> {
        self.errors
            .iter()
            .map(PolicyError::status_message)
            .collect()
    }
}

impl fmt::Display for InvalidPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy {:?}: ", self.policy_id)?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

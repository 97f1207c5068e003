//! Recommended log and trace policies: complete `tero.policy.v1` policies
//! scoped to the service like the metric ones (a `service.name` resource
//! attribute matcher in the target, a `service.name in [service]` scope,
//! labels `tero.source=issue` and `tero.issue_kind`), with the event type
//! or field they act on as a label too.

use tero_proto::controlplane::CreatePolicyRequest;
use tero_proto::policy::{
    LogMatcher, LogTarget, LogTransform, SpanStatusCode, TraceField, TraceMatcher,
    TraceSamplingConfig, TraceTarget, log_matcher, policy::Target, trace_matcher,
};

use super::super::recommend::{Recommended, SERVICE_ATTRIBUTE};
use super::matcher::path;

/// The label naming the event type (fingerprint) or field a policy acts
/// on, like `metric_family` for metric policies.
pub const SUBJECT_LABEL: &str = "tero.issue_subject";

/// What a recommended policy does and why.
pub struct Recommendation<'a> {
    pub kind: &'static str,
    pub service: &'a str,
    pub subject: &'a str,
    /// The policy name.
    pub name: String,
    /// One sentence for the description.
    pub why: String,
}

impl Recommendation<'_> {
    fn request(&self, target: Target) -> CreatePolicyRequest {
        Recommended {
            kind: self.kind,
            service: self.service,
            subject: self.subject,
            name: self.name.clone(),
            why: &self.why,
            label: (SUBJECT_LABEL, self.subject),
        }
        .request(target)
    }

    /// A log policy: the service matcher, then `matchers`.
    pub fn log(
        &self,
        matchers: Vec<LogMatcher>,
        keep: &str,
        transform: Option<LogTransform>,
    ) -> CreatePolicyRequest {
        let mut all = vec![LogMatcher {
            field: Some(log_matcher::Field::ResourceAttribute(path(
                SERVICE_ATTRIBUTE,
            ))),
            r#match: Some(log_matcher::Match::Exact(self.service.to_owned())),
            ..Default::default()
        }];
        all.extend(matchers);
        self.request(Target::Log(LogTarget {
            r#match: all,
            keep: keep.to_owned(),
            transform,
            sample_key: None,
        }))
    }

    /// A trace policy keeping `percentage` of the matched spans.
    pub fn trace(&self, matchers: Vec<TraceMatcher>, percentage: f32) -> CreatePolicyRequest {
        let mut all = vec![TraceMatcher {
            field: Some(trace_matcher::Field::ResourceAttribute(path(
                SERVICE_ATTRIBUTE,
            ))),
            r#match: Some(trace_matcher::Match::Exact(self.service.to_owned())),
            ..Default::default()
        }];
        all.extend(matchers);
        self.request(Target::Trace(TraceTarget {
            r#match: all,
            keep: Some(TraceSamplingConfig {
                percentage,
                ..Default::default()
            }),
        }))
    }
}

pub fn span_name(name: &str) -> TraceMatcher {
    TraceMatcher {
        field: Some(trace_matcher::Field::TraceField(TraceField::Name as i32)),
        r#match: Some(trace_matcher::Match::Exact(name.to_owned())),
        ..Default::default()
    }
}

pub fn span_attribute(key: &str, m: trace_matcher::Match) -> TraceMatcher {
    TraceMatcher {
        field: Some(trace_matcher::Field::SpanAttribute(path(key))),
        r#match: Some(m),
        ..Default::default()
    }
}

/// Spans whose status is not ERROR (`exists: false` on an enum selector
/// means "differs", spec §3.6): failing spans stay.
pub fn not_error() -> TraceMatcher {
    TraceMatcher {
        field: Some(trace_matcher::Field::SpanStatus(
            SpanStatusCode::Error as i32,
        )),
        r#match: Some(trace_matcher::Match::Exists(false)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use tero_sdk::policy::validate;

    use super::*;
    use crate::issues::detect::recommend::{KIND_LABEL, SOURCE_LABEL};
    use crate::issues::label_of;
    use crate::scope;

    #[test]
    fn log_and_trace_policies_are_complete_and_scoped() {
        let r = Recommendation {
            kind: "health_check_logs",
            service: "checkout",
            subject: "0123456789abcdef",
            name: "Drop health-check logs".into(),
            why: "a probe".into(),
        };
        let log = r.log(Vec::new(), "none", None);
        let trace = r.trace(vec![span_name("GET /healthz"), not_error()], 0.0);
        for request in [&log, &trace] {
            let policy = request.policy.as_ref().unwrap();
            validate(policy).unwrap();
            assert_eq!(
                policy.id,
                "tero-health_check_logs-checkout-0123456789abcdef"
            );
            assert_eq!(label_of(&policy.labels, SOURCE_LABEL), Some("issue"));
            assert_eq!(
                label_of(&policy.labels, KIND_LABEL),
                Some("health_check_logs")
            );
            assert_eq!(
                label_of(&policy.labels, SUBJECT_LABEL),
                Some("0123456789abcdef")
            );
            scope::validate(request.scope.as_ref().unwrap()).unwrap();
            assert_eq!(
                request.scope.as_ref().unwrap().matchers[0].values,
                ["checkout"]
            );
        }
    }
}

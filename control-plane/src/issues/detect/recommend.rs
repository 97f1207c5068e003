//! Recommended policies: complete, valid `tero.policy.v1` metric policies
//! that make exactly the change a finding calls for, scoped to the service.
//!
//! Matchers are what the Prometheus edge shows policies (prometheus-edge.md
//! §2): `metric_field: NAME` is the family name, which covers every sample
//! line of a histogram or summary (`_bucket`, `_sum`, `_count`, …), so a
//! family drop needs no per-sample matchers. Counters are the exception:
//! their family is `foo_total` in text 0.0.4 and `foo` in OpenMetrics
//! so a counter is matched by `^foo(_total)?$` plus `metric_type:
//! sum`, which keeps the widened name from catching a gauge called `foo`.

use sha2::{Digest, Sha256};
use tero_proto::controlplane::{CreatePolicyRequest, Scope, ScopeMatcher, ScopeOperator};
use tero_proto::policy::{
    AttributePath, MetricField, MetricMatcher, MetricTarget, MetricType, Policy, metric_matcher,
    policy::Target,
};

use crate::issues::string_label;

/// Label keys linking a policy back to its finding (the caller adds
/// `tero.issue_id`).
pub const SOURCE_LABEL: &str = "tero.source";
pub const SOURCE_ISSUE: &str = "issue";
pub const KIND_LABEL: &str = "tero.issue_kind";
pub const FAMILY_LABEL: &str = "metric_family";
/// The resource attribute (and scope key) that names a service.
pub const SERVICE_ATTRIBUTE: &str = "service.name";

/// Ids longer than this are cut and made unique with a hash.
const MAX_ID_LEN: usize = 128;

/// What a recommended policy drops and why.
pub struct DropPolicy<'a> {
    pub kind: &'static str,
    pub service: &'a str,
    pub subject: &'a str,
    pub family: &'a str,
    /// The family's type (`counter`, `histogram`, …).
    pub family_type: &'a str,
    /// Only the series carrying this label; `None` for the whole family.
    pub label: Option<&'a str>,
    /// A few words for the policy name: "Drop <family> (<short>)".
    pub short: &'a str,
    /// One sentence for the description.
    pub why: &'a str,
}

impl DropPolicy<'_> {
    pub fn request(&self) -> CreatePolicyRequest {
        let mut matchers = vec![
            attribute(
                metric_matcher::Field::ResourceAttribute(path(SERVICE_ATTRIBUTE)),
                metric_matcher::Match::Exact(self.service.to_owned()),
            ),
            family_name(self.family, self.family_type),
        ];
        if self.family_type == "counter" {
            matchers.push(MetricMatcher {
                field: Some(metric_matcher::Field::MetricType(MetricType::Sum as i32)),
                r#match: Some(metric_matcher::Match::Exists(true)),
                ..Default::default()
            });
        }
        let name = match self.label {
            Some(label) => {
                matchers.push(attribute(
                    metric_matcher::Field::DatapointAttribute(path(label)),
                    metric_matcher::Match::Exists(true),
                ));
                format!(
                    "Drop {} series carrying {label} ({})",
                    self.family, self.short
                )
            }
            None => format!("Drop {} ({})", self.family, self.short),
        };
        let target = Target::Metric(MetricTarget {
            r#match: matchers,
            keep: false,
        });
        Recommended {
            kind: self.kind,
            service: self.service,
            subject: self.subject,
            name,
            why: self.why,
            label: (FAMILY_LABEL, self.family),
        }
        .request(target)
    }
}

/// What every recommended policy shares, metric, log or trace: an id
/// derived from the finding, a description naming the issue, the labels
/// linking it back (`tero.source`, `tero.issue_kind`, and one naming what
/// it acts on), and a `service.name in [service]` scope.
pub struct Recommended<'a> {
    pub kind: &'static str,
    pub service: &'a str,
    pub subject: &'a str,
    pub name: String,
    /// One sentence for the description.
    pub why: &'a str,
    /// The label naming what the policy acts on (`metric_family`,
    /// `tero.issue_subject`) and its value.
    pub label: (&'static str, &'a str),
}

impl Recommended<'_> {
    /// The complete request for a policy with `target`.
    pub fn request(self, target: Target) -> CreatePolicyRequest {
        let policy = Policy {
            id: policy_id(self.kind, self.service, self.subject),
            name: self.name,
            description: format!(
                "Recommended for the {} issue on {}/{}: {}",
                self.kind, self.service, self.subject, self.why
            ),
            enabled: true,
            labels: vec![
                string_label(SOURCE_LABEL, SOURCE_ISSUE),
                string_label(KIND_LABEL, self.kind),
                string_label(self.label.0, self.label.1),
            ],
            target: Some(target),
            ..Default::default()
        };
        CreatePolicyRequest {
            policy: Some(policy),
            scope: Some(Scope {
                matchers: vec![ScopeMatcher {
                    key: SERVICE_ATTRIBUTE.to_owned(),
                    operator: ScopeOperator::In as i32,
                    values: vec![self.service.to_owned()],
                }],
            }),
            reason: format!("{} issue on {}/{}", self.kind, self.service, self.subject),
        }
    }
}

fn path(key: &str) -> AttributePath {
    AttributePath {
        path: vec![key.to_owned()],
    }
}

fn attribute(field: metric_matcher::Field, m: metric_matcher::Match) -> MetricMatcher {
    MetricMatcher {
        field: Some(field),
        r#match: Some(m),
        ..Default::default()
    }
}

fn family_name(family: &str, family_type: &str) -> MetricMatcher {
    let m = if family_type == "counter" {
        let base = family.strip_suffix("_total").unwrap_or(family);
        metric_matcher::Match::Regex(format!("^{}(_total)?$", regex_escape(base)))
    } else {
        metric_matcher::Match::Exact(family.to_owned())
    };
    attribute(
        metric_matcher::Field::MetricField(MetricField::Name as i32),
        m,
    )
}

/// Escapes every RE2 metacharacter. Metric names are usually plain, but
/// quoted UTF-8 names can hold anything.
pub fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `tero-<kind>-<service>-<subject>`, with the subject's `{label}` and `a=b`
/// structure turned into `-` separators.
///
/// The id must be unique per finding and readable in a file name and a
/// URL, so only `[A-Za-z0-9._-]` is kept. Service names may contain `-`;
/// family and label names cannot (except quoted UTF-8 names), so an id
/// still splits unambiguously from the right. Whenever a character had to
/// be replaced — or the id is too long — distinct subjects could collide, so
/// a short hash of the exact (kind, service, subject) is appended.
pub fn policy_id(kind: &str, service: &str, subject: &str) -> String {
    let mut lossy = false;
    let mut out = format!("tero-{kind}-");
    for c in service.chars() {
        out.push(sanitize(c, true, &mut lossy));
    }
    out.push('-');
    let subject_part = subject
        .strip_suffix('}')
        .and_then(|s| s.split_once('{'))
        .map(|(family, label)| vec![family, label])
        .or_else(|| subject.split_once('=').map(|(a, b)| vec![a, b]))
        .unwrap_or_else(|| vec![subject]);
    for (i, part) in subject_part.iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        for c in part.chars() {
            out.push(sanitize(c, false, &mut lossy));
        }
    }
    if lossy || out.len() > MAX_ID_LEN {
        let digest = Sha256::digest(format!("{kind}\0{service}\0{subject}").as_bytes());
        let hash = hex::encode(&digest[..4]);
        out.truncate(MAX_ID_LEN - hash.len() - 1);
        out.push('-');
        out.push_str(&hash);
    }
    out
}

fn sanitize(c: char, dash_ok: bool, lossy: &mut bool) -> char {
    if c.is_ascii_alphanumeric() || c == '_' || c == '.' || (dash_ok && c == '-') {
        c
    } else {
        *lossy = true;
        '-'
    }
}

#[cfg(test)]
mod tests {
    use tero_sdk::policy::validate;

    use super::super::testing::{Series, drops};
    use super::*;
    use crate::issues::label_of;
    use crate::scope;

    fn drop_of<'a>(
        family: &'a str,
        family_type: &'a str,
        label: Option<&'a str>,
    ) -> DropPolicy<'a> {
        DropPolicy {
            kind: "unused_metric",
            service: "checkout-api",
            subject: family,
            family,
            family_type,
            label,
            short: "unused",
            why: "no query reads it",
        }
    }

    #[test]
    fn a_family_drop_is_a_complete_scoped_policy() {
        let request = drop_of("queue_depth", "gauge", None).request();
        let policy = request.policy.as_ref().unwrap();
        validate(policy).unwrap();
        assert_eq!(policy.id, "tero-unused_metric-checkout-api-queue_depth");
        assert_eq!(policy.name, "Drop queue_depth (unused)");
        assert!(policy.enabled);
        assert!(policy.description.contains("checkout-api/queue_depth"));
        assert_eq!(label_of(&policy.labels, SOURCE_LABEL), Some("issue"));
        assert_eq!(label_of(&policy.labels, KIND_LABEL), Some("unused_metric"));
        assert_eq!(label_of(&policy.labels, FAMILY_LABEL), Some("queue_depth"));
        let Some(Target::Metric(target)) = &policy.target else {
            panic!("metric target");
        };
        assert!(!target.keep);
        let scope = request.scope.as_ref().unwrap();
        scope::validate(scope).unwrap();
        assert_eq!(scope.matchers[0].key, "service.name");
        assert_eq!(scope.matchers[0].operator, ScopeOperator::In as i32);
        assert_eq!(scope.matchers[0].values, ["checkout-api"]);

        let series = |service, family| Series {
            service,
            family,
            metric_type: MetricType::Gauge,
            labels: &[("queue", "a")],
        };
        assert!(drops(&request, &series("checkout-api", "queue_depth")));
        assert!(!drops(&request, &series("checkout-api", "queue_depth_max")));
        assert!(!drops(&request, &series("billing", "queue_depth")));
    }

    #[test]
    fn a_counter_matches_with_or_without_total_but_only_counters() {
        for family in ["http_requests_total", "http_requests"] {
            let request = drop_of(family, "counter", None).request();
            let counter = |family| Series {
                service: "checkout-api",
                family,
                metric_type: MetricType::Sum,
                labels: &[],
            };
            assert!(drops(&request, &counter("http_requests_total")), "{family}");
            assert!(drops(&request, &counter("http_requests")), "{family}");
            assert!(!drops(&request, &counter("http_requests_totals")));
            assert!(!drops(&request, &counter("xhttp_requests")));
            let gauge = Series {
                metric_type: MetricType::Gauge,
                ..counter("http_requests")
            };
            assert!(!drops(&request, &gauge));
        }
    }

    #[test]
    fn a_label_drop_keeps_the_series_without_the_label() {
        let request = drop_of("rpc_latency_seconds", "histogram", Some("user_id")).request();
        let policy = request.policy.as_ref().unwrap();
        assert_eq!(
            policy.name,
            "Drop rpc_latency_seconds series carrying user_id (unused)"
        );
        let with = Series {
            service: "checkout-api",
            family: "rpc_latency_seconds",
            metric_type: MetricType::Histogram,
            labels: &[("user_id", "42"), ("method", "get")],
        };
        let without = Series {
            labels: &[("method", "get")],
            ..with
        };
        assert!(drops(&request, &with));
        assert!(!drops(&request, &without));
    }

    #[test]
    fn regex_metacharacters_in_names_are_literal() {
        let request = drop_of("weird.name+x_total", "counter", None).request();
        let s = |family| Series {
            service: "checkout-api",
            family,
            metric_type: MetricType::Sum,
            labels: &[],
        };
        assert!(drops(&request, &s("weird.name+x")));
        assert!(!drops(&request, &s("weirdXnamex")));
        assert_eq!(regex_escape("a.b"), "a\\.b");
    }

    #[test]
    fn ids_are_readable_and_unique() {
        assert_eq!(
            policy_id("high_cardinality_label", "api", "req{user}"),
            "tero-high_cardinality_label-api-req-user"
        );
        assert_eq!(
            policy_id("duplicate_metric", "api", "a_total=b_total"),
            "tero-duplicate_metric-api-a_total-b_total"
        );
        // Replaced characters get a hash, so these two cannot collide.
        let colon = policy_id("unused_metric", "api", "job:rate5m");
        let underscore = policy_id("unused_metric", "api", "job_rate5m");
        assert!(
            colon.starts_with("tero-unused_metric-api-job-rate5m-"),
            "{colon}"
        );
        assert_eq!(underscore, "tero-unused_metric-api-job_rate5m");
        assert_ne!(
            policy_id("unused_metric", "my svc", "x"),
            policy_id("unused_metric", "my/svc", "x")
        );
        let long = policy_id("unused_metric", "api", &"a".repeat(300));
        assert_eq!(long.len(), MAX_ID_LEN);
        assert_ne!(long, policy_id("unused_metric", "api", &"a".repeat(301)));
        for id in [colon, long] {
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
                "{id}"
            );
        }
    }
}

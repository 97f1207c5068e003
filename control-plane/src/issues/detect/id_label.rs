//! `id_label`: labels whose values are identifiers — every request, user or
//! trace a new series — with at least `id_label_cardinality` values.
//!
//! A label qualifies when at least half of its examples (and at least one)
//! have an id shape: a UUID, ≥ 16 hex digits (trace and span ids), ≥ 5
//! decimal digits, a ULID, an alphanumeric token of ≥ 16 characters mixing
//! letters and digits, one of these behind a short prefix (`req_…`,
//! `user-…`, `ord:…`), an e-mail address, or a value the edge masked as one
//! of these (`<uuid>`, `<hex:32>`, `<int:6 digits>`, `<email>`, …).
//!
//! The domain is compliance when the label name suggests people (user,
//! email, customer, account, session, …) or an example is an e-mail
//! address: identifiers of people in metric labels end up in every backend
//! and cannot be redacted by a v1 metric policy, only dropped. Compliance
//! findings are high severity whatever their cost.
//!
//! Overlap with `high_cardinality_label`: both recommend dropping the series
//! that carry the label, so only one is kept (see the module docs of
//! `detect`). A compliance `id_label` wins, because the domain decides who
//! must review it; a cost `id_label` on a label that is also past the
//! high-cardinality threshold and unread is folded into
//! `high_cardinality_label`, whose usage check makes it the stronger cost
//! finding. A cost `id_label` is still reported when the label is read by
//! queries (one severity step lower: the ids are wanted, but the cost is
//! real) or below the high-cardinality threshold.

use tero_proto::controlplane::LabelInventory;

use super::recommend::DropPolicy;
use super::{Candidate, Ctx, Family, Finding, Severity, domain, estimate, kind, volume_clause};

/// Name tokens that suggest the label identifies a person.
const PERSONAL: &[&str] = &[
    "user",
    "users",
    "username",
    "userid",
    "email",
    "mail",
    "customer",
    "customerid",
    "account",
    "accountid",
    "session",
    "sessionid",
    "person",
    "member",
    "memberid",
    "patient",
    "phone",
    "login",
    "ssn",
];

/// Masks an edge may put in place of a value, taken as id-shaped.
const MASKS: &[&str] = &[
    "uuid",
    "hex",
    "id",
    "ulid",
    "token",
    "trace_id",
    "span_id",
    "request_id",
    "email",
];

/// The id shape of `value`, if it has one.
pub(super) fn id_shape(value: &str) -> Option<&'static str> {
    let v = value.trim();
    if let Some(inner) = v.strip_prefix('<').and_then(|s| s.strip_suffix('>')) {
        return masked(inner);
    }
    if is_email(v) {
        return Some("email");
    }
    if let Some(shape) = bare_shape(v) {
        return Some(shape);
    }
    // A short alphabetic prefix and a separator, then an id.
    let split = v.find(['_', '-', ':'])?;
    let (prefix, rest) = (&v[..split], &v[split + 1..]);
    if prefix.is_empty() || prefix.len() > 12 || !prefix.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    bare_shape(rest)
        .or_else(|| is_token(rest, 10).then_some("token"))
        .map(|_| "prefixed id")
}

fn bare_shape(v: &str) -> Option<&'static str> {
    if is_uuid(v) {
        Some("uuid")
    } else if is_hex(v) {
        Some("hex")
    } else if v.len() >= 5 && v.bytes().all(|b| b.is_ascii_digit()) {
        Some("numeric")
    } else if is_ulid(v) {
        Some("ulid")
    } else if is_token(v, 16) {
        Some("token")
    } else {
        None
    }
}

/// `<uuid>`, `<hex:32>`, `<int:6 digits>`: a mask tag with an optional
/// detail. Numeric masks count from five digits, hex from sixteen.
fn masked(inner: &str) -> Option<&'static str> {
    let (tag, detail) = match inner.split_once(':') {
        Some((tag, detail)) => (tag.trim(), Some(detail.trim())),
        None => (inner.trim(), None),
    };
    let tag = tag.to_ascii_lowercase();
    let length = detail.and_then(|d| d.split_whitespace().next()?.parse::<usize>().ok());
    match tag.as_str() {
        "int" | "num" | "number" | "digits" => {
            length.is_none_or(|n| n >= 5).then_some("masked numeric")
        }
        "hex" => length.is_none_or(|n| n >= 16).then_some("masked hex"),
        "email" => Some("email"),
        t => MASKS.contains(&t).then_some("masked id"),
    }
}

fn is_uuid(v: &str) -> bool {
    v.len() == 36
        && v.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_hex(v: &str) -> bool {
    let digits = v.strip_prefix("0x").unwrap_or(v);
    digits.len() >= 16 && digits.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Crockford base32, 26 characters, as ULIDs are written.
fn is_ulid(v: &str) -> bool {
    v.len() == 26
        && v.bytes().any(|b| b.is_ascii_digit())
        && v.bytes()
            .all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"ILOU".contains(&b)))
}

/// Opaque alphanumeric ids mix letters and digits; words do not.
fn is_token(v: &str, min_len: usize) -> bool {
    v.len() >= min_len
        && v.bytes().all(|b| b.is_ascii_alphanumeric())
        && v.bytes().any(|b| b.is_ascii_digit())
        && v.bytes().any(|b| b.is_ascii_alphabetic())
}

fn is_email(v: &str) -> bool {
    let Some((local, host)) = v.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !local.contains(char::is_whitespace)
        && host.contains('.')
        && !host.starts_with('.')
        && !host.ends_with('.')
        && !host.contains(['@', ' '])
}

/// Lower-case name tokens, splitting `_`, `.`, `-` and camelCase.
fn name_tokens(name: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                tokens.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower && !current.is_empty() {
            tokens.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

/// Whether the label name suggests it identifies people.
pub(super) fn personal_name(name: &str) -> bool {
    name_tokens(name)
        .iter()
        .any(|t| PERSONAL.contains(&t.as_str()))
}

/// The shapes of the examples, if at least half of them are ids.
fn id_examples(label: &LabelInventory) -> Option<Vec<&'static str>> {
    let shapes: Vec<&'static str> = label.examples.iter().filter_map(|e| id_shape(e)).collect();
    (!shapes.is_empty() && shapes.len() * 2 >= label.examples.len()).then_some(shapes)
}

pub(super) fn detect(ctx: &Ctx, family: &Family) -> Vec<Candidate> {
    let threshold = ctx.thresholds.id_label_cardinality;
    family
        .policy_labels()
        .filter(|l| l.cardinality >= threshold)
        .filter_map(|label| {
            let mut shapes = id_examples(label)?;
            shapes.sort_unstable();
            shapes.dedup();
            let personal_by_name = personal_name(&label.name);
            let compliance = personal_by_name || shapes.contains(&"email");
            let name = family.name();
            let subject = format!("{name}{{{}}}", label.name);
            let estimate = estimate::label(
                family.inv,
                label,
                ctx.inventory.scrapes_per_minute,
                ctx.prices,
            );
            let label_used = ctx.label_used(family, &label.name);
            let mut evidence = ctx.label_evidence(family, label);
            evidence
                .notes
                .push(format!("id-shaped examples: {}", shapes.join(", ")));
            if label.masked {
                evidence
                    .notes
                    .push("the edge masked some examples as sensitive".to_owned());
            }
            let mut summary = format!(
                "Label `{}` of `{name}` holds identifiers ({}; about {} distinct values), so \
                 each new id is a new series ({}).",
                label.name,
                shapes.join(", "),
                label.cardinality,
                volume_clause(&estimate),
            );
            let severity = if compliance {
                summary.push_str(&format!(
                    " {} Identifiers of people in metric labels are stored by every metrics \
                     backend downstream, and a metric policy cannot redact a label, only drop the \
                     series; the lasting fix is to remove the label from the instrumentation \
                     (put ids in traces or logs, where they can be redacted).",
                    if personal_by_name {
                        "The label name suggests personal data."
                    } else {
                        "The values are e-mail addresses."
                    }
                ));
                Severity::High
            } else {
                summary.push_str(
                    " Ids belong in traces, logs or exemplars; the lasting fix is to remove the \
                     label from the instrumentation or aggregate it away with a recording rule.",
                );
                let severity = ctx.severity_for_cost(estimate.cost_per_month);
                if label_used != Some(false) || family.possibly_used() {
                    severity.lower()
                } else {
                    severity
                }
            };
            match label_used {
                Some(true) => summary.push_str(&format!(" Queries read `{}`.", label.name)),
                _ if family.possibly_used() => {
                    summary.push(' ');
                    summary.push_str(&family.usage_sentence());
                }
                _ => {}
            }
            let why = format!("label {} carries identifiers", label.name);
            let recommended = DropPolicy {
                kind: kind::ID_LABEL,
                service: ctx.service(),
                subject: &subject,
                family: name,
                family_type: &family.inv.r#type,
                label: Some(&label.name),
                short: if compliance {
                    "personal identifiers"
                } else {
                    "id label"
                },
                why: &why,
            }
            .request();
            Some(Candidate {
                finding: Finding {
                    kind: kind::ID_LABEL,
                    domain: if compliance {
                        domain::COMPLIANCE
                    } else {
                        domain::COST
                    },
                    severity: severity.as_str(),
                    title: if compliance {
                        format!(
                            "`{name}` label `{}` carries personal identifiers",
                            label.name
                        )
                    } else {
                        format!("`{name}` label `{}` carries ids", label.name)
                    },
                    summary,
                    service: ctx.service().to_owned(),
                    subject,
                    evidence,
                    provenance: ctx.provenance(
                        kind::ID_LABEL,
                        vec![format!("id_label_cardinality={threshold}")],
                    ),
                    estimate,
                    recommended: Some(recommended),
                    absorbed: Vec::new(),
                },
                family: name.to_owned(),
                label: Some(label.name.clone()),
                change: Vec::new(),
                possibly_used: family.possibly_used(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use tero_proto::controlplane::FamilyInventory;
    use tero_proto::policy::MetricType;

    use super::super::testing::*;
    use super::*;

    #[test]
    fn id_shapes() {
        for (value, shape) in [
            ("3f2a9c1e-8b4d-4e6f-9a0b-1c2d3e4f5a6b", "uuid"),
            ("4bf92f3577b34da6a3ce929d0e0e4736", "hex"),
            ("00f067aa0ba902b7", "hex"),
            ("12345", "numeric"),
            ("01ARZ3NDEKTSV4RRFFQ69G5FAV", "ulid"),
            ("N8dKx92hQm1zA7pL", "token"),
            ("req_8f3a9b2c1d4e", "prefixed id"),
            ("user-12345", "prefixed id"),
            ("cus:3f2a9c1e-8b4d-4e6f-9a0b-1c2d3e4f5a6b", "prefixed id"),
            ("jane@example.com", "email"),
            ("<uuid>", "masked id"),
            ("<int:6 digits>", "masked numeric"),
            ("<int>", "masked numeric"),
            ("<hex:32>", "masked hex"),
            ("<email>", "email"),
        ] {
            assert_eq!(id_shape(value), Some(shape), "{value}");
        }
        for value in [
            "1234",
            "/api/orders",
            "GET",
            "200",
            "00f067aa0ba902b",
            "<int:4 digits>",
            "<hex:8>",
            "<redacted>",
            "us-east-1",
            "checkout-7d9f8b6c5-x2k4p",
            "kubernetesnodepool",
            "worker-1",
            "ab@cd",
        ] {
            assert_eq!(id_shape(value), None, "{value}");
        }
    }

    #[test]
    fn personal_names() {
        for name in [
            "user_id",
            "userId",
            "customer",
            "email_address",
            "session",
            "AccountID",
        ] {
            assert!(personal_name(name), "{name}");
        }
        for name in [
            "request_id",
            "trace_id",
            "order",
            "superuserx",
            "mailbox_size",
        ] {
            assert!(!personal_name(name), "{name}");
        }
    }

    fn orders(label_name: &str, cardinality: u64, examples: &[&str]) -> FamilyInventory {
        let mut f = family("orders_total", "counter", 400);
        f.labels = vec![label(label_name, cardinality, 200, examples)];
        f
    }

    fn ids(findings: &[super::super::Finding]) -> Vec<(&str, &str)> {
        findings
            .iter()
            .filter(|f| f.kind == "id_label")
            .map(|f| (f.subject.as_str(), f.domain))
            .collect()
    }

    #[test]
    fn the_cardinality_threshold_is_inclusive() {
        let usage = FakeUsage::imported().used("orders_total", &[]);
        let examples = ["12345", "67890"];
        let below = run(&inventory(vec![orders("order_id", 99, &examples)]), &usage);
        assert!(ids(&below).is_empty());
        let at = run(&inventory(vec![orders("order_id", 100, &examples)]), &usage);
        assert_eq!(ids(&at), [("orders_total{order_id}", "cost")]);
    }

    #[test]
    fn most_examples_must_look_like_ids() {
        let usage = FakeUsage::imported().used("orders_total", &[]);
        let half = orders("ref", 500, &["12345", "GET"]);
        assert_eq!(ids(&run(&inventory(vec![half]), &usage)).len(), 1);
        let minority = orders("ref", 500, &["12345", "GET", "POST"]);
        assert!(ids(&run(&inventory(vec![minority]), &usage)).is_empty());
        let none = orders("ref", 500, &[]);
        assert!(ids(&run(&inventory(vec![none]), &usage)).is_empty());
    }

    #[test]
    fn personal_identifiers_are_high_severity_compliance() {
        let usage = FakeUsage::imported().used("orders_total", &["user_id"]);
        let findings = run(
            &inventory(vec![orders(
                "user_id",
                150,
                &["<int:6 digits>", "<int:7 digits>"],
            )]),
            &usage,
        );
        let f = find(&findings, "id_label", "orders_total{user_id}").unwrap();
        assert_eq!(f.domain, "compliance");
        assert_eq!(f.severity, "high");
        assert!(f.summary.contains("personal data"), "{}", f.summary);
        // Queries read the family: dropping the series carrying `user_id`
        // would empty them, so nothing executable is recommended.
        assert!(f.recommended.is_none());
        assert!(
            f.summary.contains("No policy is recommended")
                && f.summary.contains("aggregate `user_id` away"),
            "{}",
            f.summary
        );

        let emails = run(
            &inventory(vec![orders("buyer", 150, &["<email>", "a@b.io"])]),
            &usage,
        );
        assert_eq!(ids(&emails), [("orders_total{buyer}", "compliance")]);
    }

    #[test]
    fn a_cost_id_label_past_the_high_cardinality_threshold_is_reported_once() {
        let usage = FakeUsage::imported().used("orders_total", &[]);
        let inv = inventory(vec![orders("request_id", 5_000, &["req_8f3a9b2c1d4e"])]);
        let findings = run(&inv, &usage);
        assert_eq!(
            kinds(&findings),
            [("high_cardinality_label", "orders_total{request_id}")]
        );
        assert!(
            findings[0]
                .evidence
                .notes
                .iter()
                .any(|n| n.starts_with("also id_label")),
            "{:?}",
            findings[0].evidence.notes
        );
    }

    #[test]
    fn a_compliance_id_label_wins_over_high_cardinality() {
        let usage = FakeUsage::imported().used("orders_total", &[]);
        let inv = inventory(vec![orders("session_id", 5_000, &["<uuid>"])]);
        let findings = run(&inv, &usage);
        assert_eq!(kinds(&findings), [("id_label", "orders_total{session_id}")]);
        assert_eq!(findings[0].domain, "compliance");
        assert!(
            findings[0]
                .evidence
                .notes
                .iter()
                .any(|n| n.starts_with("also high_cardinality_label"))
        );
    }

    #[test]
    fn a_read_id_label_is_still_a_lower_cost_finding() {
        // $0.15 + $2 a month: low; read by queries, so lowered anyway.
        let usage = FakeUsage::imported().used("orders_total", &["order_id"]);
        let inv = inventory(vec![orders("order_id", 5_000, &["12345678"])]);
        let findings = run(&inv, &usage);
        assert_eq!(kinds(&findings), [("id_label", "orders_total{order_id}")]);
        assert_eq!(findings[0].severity, "low");
        assert!(findings[0].evidence.labels[0].used_in_queries);
    }

    #[test]
    fn a_label_of_a_family_read_by_a_rule_gets_no_policy() {
        // The newcomer's case: `user_id` on a counter a recording rule sums.
        // Dropping every series carrying it would empty the rule.
        for usage in [
            FakeUsage::imported().used("orders_total", &[]),
            FakeUsage::imported().unknown("orders_total"),
            FakeUsage::none(),
        ] {
            let findings = run(
                &inventory(vec![orders("user_id", 150, &["12345", "67890"])]),
                &usage,
            );
            let f = find(&findings, "id_label", "orders_total{user_id}").unwrap();
            assert!(f.recommended.is_none(), "{}", f.summary);
            assert!(
                f.summary.contains("aggregate `user_id` away"),
                "{}",
                f.summary
            );
        }
    }

    #[test]
    fn an_unread_familys_personal_label_gets_a_policy_dropping_only_its_series() {
        let mut f = family("orders_total", "counter", 400);
        f.labels = vec![label("user_id", 150, 200, &["12345"])];
        let findings = run(&inventory(vec![f]), &FakeUsage::imported());
        let f = find(&findings, "id_label", "orders_total{user_id}").unwrap();
        let series = |labels| Series {
            service: SERVICE,
            family: "orders_total",
            metric_type: MetricType::Sum,
            labels,
        };
        assert!(drops(recommended(f), &series(&[("user_id", "123456")])));
        assert!(!drops(recommended(f), &series(&[("status", "ok")])));
    }

    #[test]
    fn compliance_survives_an_unused_family_cost_findings_do_not() {
        let mut f = family("orders_total", "counter", 400);
        f.labels = vec![
            label("user_id", 150, 200, &["12345"]),
            label("order_id", 150, 200, &["67890"]),
        ];
        let findings = run(&inventory(vec![f]), &FakeUsage::imported());
        assert_eq!(
            kinds(&findings),
            [
                ("unused_metric", "orders_total"),
                ("id_label", "orders_total{user_id}")
            ]
        );
    }
}

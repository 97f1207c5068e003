//! Scopes: which edges receive a policy, decided from the identity an edge
//! declares (resource attributes and labels of its ClientMetadata).

use tero_proto::controlplane::{Scope, ScopeMatcher, ScopeOperator};
use tero_proto::otel::KeyValue;
use tero_proto::otel::any_value::Value;
use tero_proto::policy::ClientMetadata;

/// Keys with this prefix name a ClientMetadata label rather than a resource
/// attribute.
pub const LABEL_PREFIX: &str = "label.";

/// A scope problem, with the path of the matcher at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct InvalidScope {
    pub path: String,
    pub reason: String,
}

pub fn validate(scope: &Scope) -> Result<(), InvalidScope> {
    for (i, m) in scope.matchers.iter().enumerate() {
        let err = |field: &str, reason: &str| InvalidScope {
            path: format!("scope.matchers[{i}]{field}"),
            reason: reason.to_owned(),
        };
        if m.key.trim().is_empty() || m.key == LABEL_PREFIX {
            return Err(err(".key", "must name a resource attribute or label.NAME"));
        }
        match operator(m) {
            Some(ScopeOperator::In | ScopeOperator::NotIn) if m.values.is_empty() => {
                return Err(err(".values", "IN and NOT_IN need at least one value"));
            }
            Some(ScopeOperator::Exists | ScopeOperator::NotExists) if !m.values.is_empty() => {
                return Err(err(".values", "EXISTS and NOT_EXISTS take no values"));
            }
            None => return Err(err(".operator", "unknown operator")),
            _ => {}
        }
    }
    Ok(())
}

fn operator(m: &ScopeMatcher) -> Option<ScopeOperator> {
    match ScopeOperator::try_from(m.operator).ok()? {
        ScopeOperator::Unspecified => Some(ScopeOperator::In),
        op => Some(op),
    }
}

/// An attribute's value as text (strings, booleans and numbers), as scopes
/// and label filters compare it.
pub fn string_value(kv: &KeyValue) -> Option<String> {
    match kv.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

/// The value an edge declares for a scope key.
pub fn lookup(meta: &ClientMetadata, key: &str) -> Option<String> {
    let (list, name) = match key.strip_prefix(LABEL_PREFIX) {
        Some(name) => (&meta.labels, name),
        None => (&meta.resource_attributes, key),
    };
    list.iter().find(|kv| kv.key == name).and_then(string_value)
}

/// Whether an edge with this metadata is in the scope. An empty scope holds
/// every edge.
pub fn matches(scope: &Scope, meta: &ClientMetadata) -> bool {
    scope.matchers.iter().all(|m| {
        let value = lookup(meta, &m.key);
        match operator(m) {
            Some(ScopeOperator::In) | Some(ScopeOperator::Unspecified) => {
                value.is_some_and(|v| m.values.contains(&v))
            }
            Some(ScopeOperator::NotIn) => !value.is_some_and(|v| m.values.contains(&v)),
            Some(ScopeOperator::Exists) => value.is_some(),
            Some(ScopeOperator::NotExists) => value.is_none(),
            None => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tero_proto::otel::AnyValue;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(v.into())),
            }),
        }
    }

    fn meta() -> ClientMetadata {
        ClientMetadata {
            resource_attributes: vec![
                kv("service.name", "checkout"),
                kv("deployment.environment", "prod"),
            ],
            labels: vec![kv("team", "payments")],
            ..Default::default()
        }
    }

    fn matcher(key: &str, op: ScopeOperator, values: &[&str]) -> ScopeMatcher {
        ScopeMatcher {
            key: key.into(),
            operator: op as i32,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn every_operator_decides_on_the_declared_identity() {
        let m = meta();
        let scope = |ms: Vec<ScopeMatcher>| Scope { matchers: ms };
        assert!(matches(&scope(vec![]), &m));
        assert!(matches(
            &scope(vec![matcher(
                "service.name",
                ScopeOperator::In,
                &["checkout"]
            )]),
            &m
        ));
        assert!(matches(
            &scope(vec![matcher(
                "service.name",
                ScopeOperator::Unspecified,
                &["checkout"]
            )]),
            &m
        ));
        assert!(!matches(
            &scope(vec![matcher("service.name", ScopeOperator::In, &["cart"])]),
            &m
        ));
        assert!(matches(
            &scope(vec![matcher(
                "service.name",
                ScopeOperator::NotIn,
                &["cart"]
            )]),
            &m
        ));
        assert!(matches(
            &scope(vec![matcher(
                "label.team",
                ScopeOperator::In,
                &["payments"]
            )]),
            &m
        ));
        assert!(!matches(
            &scope(vec![matcher("team", ScopeOperator::Exists, &[])]),
            &m
        ));
        assert!(matches(
            &scope(vec![matcher("region", ScopeOperator::NotExists, &[])]),
            &m
        ));
        assert!(!matches(
            &scope(vec![
                matcher("service.name", ScopeOperator::In, &["checkout"]),
                matcher("deployment.environment", ScopeOperator::In, &["staging"]),
            ]),
            &m
        ));
    }

    #[test]
    fn invalid_matchers_name_their_path() {
        let bad = Scope {
            matchers: vec![
                matcher("service.name", ScopeOperator::In, &["a"]),
                matcher("service.name", ScopeOperator::In, &[]),
            ],
        };
        assert_eq!(validate(&bad).unwrap_err().path, "scope.matchers[1].values");
        let bad = Scope {
            matchers: vec![matcher(" ", ScopeOperator::Exists, &[])],
        };
        assert_eq!(validate(&bad).unwrap_err().path, "scope.matchers[0].key");
        let bad = Scope {
            matchers: vec![ScopeMatcher {
                key: "a".into(),
                operator: 99,
                values: vec![],
            }],
        };
        assert_eq!(
            validate(&bad).unwrap_err().path,
            "scope.matchers[0].operator"
        );
    }
}

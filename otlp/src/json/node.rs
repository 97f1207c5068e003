//! A log record, resource or scope that stays a slice of the payload until
//! a transform changes it, and is then an owned `Value`.

use serde_json::Value;
use serde_json::value::RawValue;
use tero_sdk::engine::FieldValue;
use tero_sdk::proto::policy::LogField;

use super::mutate::{self, Target};
use super::raw;
use super::read::{self, RawObject};

pub(crate) enum Node<'a> {
    /// A resource or scope the payload does not have.
    Absent,
    Raw(RawObject<'a>),
    /// Converted for a transform: written out re-serialized.
    Owned(Value),
}

impl<'a> Node<'a> {
    pub(crate) fn new(raw: Option<&'a RawValue>) -> Self {
        raw.map_or(Node::Absent, |raw| Node::Raw(RawObject::new(raw)))
    }

    /// The owned value when a transform changed this node.
    pub(crate) fn into_owned(self) -> Option<Value> {
        match self {
            Node::Owned(v) => Some(v),
            _ => None,
        }
    }

    /// A top-level string member, non-empty (resource and scope names).
    pub(crate) fn non_empty_str(&self, key: &str) -> Option<FieldValue<'_>> {
        match self {
            Node::Absent => None,
            Node::Raw(o) => o.non_empty_str(key),
            Node::Owned(v) => read::non_empty_str(v, key),
        }
    }

    /// The value of a log record field or of an attribute path.
    pub(crate) fn get(&self, target: Target<'_>) -> Option<FieldValue<'_>> {
        match (self, target) {
            (Node::Absent, _) => None,
            (Node::Raw(o), Target::Field(field)) => match field {
                LogField::Body => o.member("body").and_then(read::raw_any_value),
                LogField::SeverityText => o.non_empty_str("severityText"),
                LogField::TraceId => o.hex("traceId"),
                LogField::SpanId => o.hex("spanId"),
                LogField::EventName => o.non_empty_str("eventName"),
                _ => None,
            },
            (Node::Raw(o), Target::Attribute(path)) => o.attribute(path),
            (Node::Owned(v), Target::Field(field)) => match field {
                LogField::Body => v.get("body").and_then(read::any_value),
                LogField::SeverityText => read::non_empty_str(v, "severityText"),
                LogField::TraceId => read::hex_field(v, "traceId"),
                LogField::SpanId => read::hex_field(v, "spanId"),
                LogField::EventName => read::non_empty_str(v, "eventName"),
                _ => None,
            },
            (Node::Owned(v), Target::Attribute(path)) => read::attribute(v, path),
        }
    }

    /// Whether an AnyValue is at `path` of the attributes (for renames: is
    /// the target taken?).
    pub(crate) fn has_attribute_value(&self, path: &[String]) -> bool {
        match self {
            Node::Absent => false,
            Node::Raw(o) => o.lookup(path).is_some(),
            Node::Owned(v) => read::lookup(v.get("attributes"), path).is_some(),
        }
    }

    /// False only when removing `target` certainly changes nothing, so the
    /// node can stay raw.
    fn may_hold(&self, target: Target<'_>) -> bool {
        match (self, target) {
            (Node::Absent, _) => false,
            (Node::Owned(_), _) => true,
            (Node::Raw(o), Target::Field(field)) => {
                mutate::field_key(field).is_some_and(|key| o.member(key).is_some())
            }
            (Node::Raw(o), Target::Attribute(path)) => {
                path.first().is_some_and(|first| o.has_entry(first))
            }
        }
    }

    /// The node as an owned value, converting it on the first change;
    /// `None` for an absent node or one too deep to convert (it stays as
    /// it is, and the change is not made).
    fn owned(&mut self) -> Option<&mut Value> {
        if let Node::Raw(o) = self {
            *self = Node::Owned(raw::to_value(o.raw())?);
        }
        match self {
            Node::Owned(v) => Some(v),
            _ => None,
        }
    }

    /// `LogViewMut::remove` on this node.
    pub(crate) fn remove(&mut self, target: Target<'_>) -> bool {
        if !self.may_hold(target) {
            return false;
        }
        self.owned()
            .is_some_and(|v| mutate::take(v, target).is_some())
    }

    /// `LogViewMut::set` on this node.
    pub(crate) fn set(&mut self, target: Target<'_>, value: &str, overwrite: bool) -> bool {
        let present = match target {
            Target::Field(_) => self.get(target).is_some(),
            Target::Attribute(path) => self.has_attribute_value(path),
        };
        // Nothing changes: the field is there and may not be overwritten
        // (or, for fields, is not one a transform may write).
        if present && !overwrite {
            return false;
        }
        if let Target::Field(field) = target
            && mutate::field_key(field).is_none()
        {
            return false;
        }
        let present = matches!(target, Target::Field(_)) && present;
        self.owned()
            .is_some_and(|v| mutate::set(v, target, value, overwrite, present))
    }

    /// `LogViewMut::rename` on this node.
    pub(crate) fn rename(&mut self, from: Target<'_>, to: &str, upsert: bool) -> bool {
        if self.get(from).is_none() {
            return false;
        }
        if !upsert && self.has_attribute_value(&mutate::rename_target(from, to)) {
            return false;
        }
        self.owned()
            .is_some_and(|v| mutate::rename(v, from, to, upsert))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records whose shapes stray from OTLP in every way a reader could
    /// trip on: duplicate members, several AnyValue members, numbers and
    /// strings where the other is expected, escapes, nested kvlists.
    const RECORDS: &[&str] = &[
        r#"{"body":{"stringValue":"plain"},"severityText":"INFO","traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","eventName":"login",
            "attributes":[{"key":"a","value":{"stringValue":"x"}},{"key":"n","value":{"intValue":"42"}},{"key":"f","value":{"doubleValue":1.5}},
            {"key":"b","value":{"boolValue":true}},{"key":"y","value":{"bytesValue":"aGk="}},{"key":"arr","value":{"arrayValue":{"values":[]}}},
            {"key":"kv","value":{"kvlistValue":{"values":[{"key":"inner","value":{"stringValue":"deep"}},{"key":"kv2","value":{"kvlistValue":{"values":[{"key":"z","value":{"intValue":7}}]}}}]}}}]}"#,
        r#"{"body":{"stringValue":"esc \"quoted\" \u00e9\n"},"severityText":"W\u0041RN","attributes":[{"key":"k\u0065y","value":{"stringValue":"v\\al"}}]}"#,
        r#"{"body":{"stringValue":"first","boolValue":false},"severityText":"","traceId":"not-hex","spanId":5,"eventName":null}"#,
        r#"{"body":{"zzz":1,"intValue":"-9"},"body":{"doubleValue":"NaN"},"attributes":[{"key":"d","value":{"doubleValue":"1e3"}},{"key":"d","value":{"stringValue":"second"}}]}"#,
        r#"{"body":{"intValue":1.5},"attributes":[{"value":{"stringValue":"keyless"}},{"key":5,"value":{"stringValue":"numeric key"}},{"key":"nov"},7,null]}"#,
        r#"{"body":{"bytesValue":"***"},"attributes":{"key":"a"}}"#,
        r#"{"body":"not an AnyValue","attributes":[{"key":"kv","value":{"kvlistValue":{"values":"nope"}}},{"key":"kv2","value":{"kvlistValue":[]}}]}"#,
        r#"{"body":{"intValue":99999999999999999999},"attributes":[{"key":"u","value":{"intValue":18446744073709551615}}]}"#,
        r#"[1,2]"#,
        r#""a string record""#,
        r#"{}"#,
    ];

    fn paths(value: &Value, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let Some(list) = value.get("attributes").or_else(|| value.get("values")) else {
            return;
        };
        for kv in list.as_array().into_iter().flatten() {
            let mut path = prefix.to_vec();
            path.push(read::str_field(kv, "key").to_owned());
            out.push(path.clone());
            if let Some(inner) = kv.get("value").and_then(|v| v.get("kvlistValue")) {
                paths(inner, &path, out);
            }
        }
    }

    #[test]
    fn raw_and_owned_readers_answer_alike() {
        let fields = [
            LogField::Body,
            LogField::SeverityText,
            LogField::TraceId,
            LogField::SpanId,
            LogField::EventName,
            LogField::ResourceSchemaUrl,
        ];
        for text in RECORDS {
            let raw: &RawValue = serde_json::from_str(text).expect("valid JSON");
            let raw_node = Node::new(Some(raw));
            let owned_node = Node::Owned(raw::to_value(raw).expect("shallow"));
            for field in fields {
                // Compared as text: NaN is not equal to itself.
                assert_eq!(
                    format!("{:?}", raw_node.get(Target::Field(field))),
                    format!("{:?}", owned_node.get(Target::Field(field))),
                    "{field:?} of {text}"
                );
            }
            let mut all = vec![vec!["missing".to_owned()], vec![String::new()]];
            if let Node::Owned(v) = &owned_node {
                paths(v, &[], &mut all);
            }
            for path in &all {
                assert_eq!(
                    format!("{:?}", raw_node.get(Target::Attribute(path))),
                    format!("{:?}", owned_node.get(Target::Attribute(path))),
                    "attribute {path:?} of {text}"
                );
                assert_eq!(
                    raw_node.has_attribute_value(path),
                    owned_node.has_attribute_value(path),
                    "presence of {path:?} in {text}"
                );
            }
        }
    }

    #[test]
    fn a_change_that_changes_nothing_leaves_the_node_raw() {
        let raw: &RawValue =
            serde_json::from_str(r#"{"attributes":[{"key":"a","value":{"stringValue":"x"}}]}"#)
                .expect("valid JSON");
        let mut node = Node::new(Some(raw));
        let a = ["a".to_owned()];
        let b = ["b".to_owned()];
        assert!(!node.remove(Target::Attribute(&b)));
        assert!(!node.remove(Target::Field(LogField::Body)));
        assert!(!node.set(Target::Attribute(&a), "y", false));
        assert!(!node.rename(Target::Attribute(&b), "c", true));
        assert!(matches!(node, Node::Raw(_)), "still raw");
        assert!(node.set(Target::Attribute(&a), "y", true));
        let value = node.into_owned().expect("changed");
        assert_eq!(value["attributes"][0]["value"]["stringValue"], "y");
    }
}

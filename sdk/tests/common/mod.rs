//! Fixtures shared by the SDK's integration tests.

use tero_sdk::engine::{FieldValue, MetricSelector, MetricView};
use tero_sdk::proto::policy as pb;

/// A metric as policies see it: a name, a type and flat labels.
pub struct TestMetric {
    pub name: &'static str,
    pub kind: pb::MetricType,
    pub attrs: Vec<(&'static str, &'static str)>,
}

impl MetricView for TestMetric {
    fn get(&self, selector: &MetricSelector) -> Option<FieldValue<'_>> {
        match selector {
            MetricSelector::Field(pb::MetricField::Name) => Some(FieldValue::str(self.name)),
            MetricSelector::DatapointAttribute(path) if path.len() == 1 => self
                .attrs
                .iter()
                .find(|(k, _)| *k == path[0])
                .map(|(_, v)| FieldValue::str(v)),
            MetricSelector::Type => Some(FieldValue::Int(self.kind as i64)),
            _ => None,
        }
    }
}

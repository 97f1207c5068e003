//! A series as the policy engine sees it.
//!
//! Fields are read lazily: a policy on the name never makes the filter
//! decode a label, and a label is decoded (escapes and all) only when a
//! policy asks for it.

use tero_proto::policy::MetricField;
use tero_sdk::engine::{FieldValue, MetricSelector, MetricView};

use crate::exposition::family::StructuralLabel;
use crate::exposition::{FamilyType, LabelIter};

/// Edge-wide resource attributes (`service.name`, `k8s.pod.name`, …) that
/// `resource_attribute` matchers read.
#[derive(Debug, Clone, Default)]
pub struct Resource {
    attributes: Vec<(String, String)>,
}

impl Resource {
    pub fn new(attributes: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut attributes: Vec<_> = attributes.into_iter().collect();
        attributes.sort();
        attributes.dedup_by(|a, b| a.0 == b.0);
        Resource { attributes }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What the filter knows of the current family when it judges a series.
#[derive(Debug, Default)]
pub struct FamilyFacts {
    pub name: String,
    pub kind: FamilyType,
    /// Decoded HELP, kept only when a policy reads descriptions.
    pub help: Option<String>,
    /// OpenMetrics UNIT.
    pub unit: Option<String>,
}

pub struct SeriesView<'a> {
    pub family: &'a FamilyFacts,
    /// The label section of the line being judged.
    pub labels: &'a [u8],
    pub resource: &'a Resource,
}

impl SeriesView<'_> {
    fn label(&self, key: &str) -> Option<FieldValue<'_>> {
        let structural = self
            .family
            .kind
            .structural_label()
            .map(StructuralLabel::name);
        if structural == Some(key) {
            return None;
        }
        LabelIter::new(self.labels)
            .find(|pair| pair.name_is(key))
            .and_then(|pair| pair.value())
            .map(FieldValue::Str)
    }
}

impl MetricView for SeriesView<'_> {
    fn get(&self, selector: &MetricSelector) -> Option<FieldValue<'_>> {
        match selector {
            MetricSelector::Field(MetricField::Name) => Some(FieldValue::str(&self.family.name)),
            MetricSelector::Field(MetricField::Description) => {
                self.family.help.as_deref().map(FieldValue::str)
            }
            MetricSelector::Field(MetricField::Unit) => {
                self.family.unit.as_deref().map(FieldValue::str)
            }
            MetricSelector::Field(_) => None,
            MetricSelector::Type => Some(FieldValue::Int(self.family.kind.metric_type().into())),
            MetricSelector::Temporality => self
                .family
                .kind
                .temporality()
                .map(|t| FieldValue::Int(t.into())),
            MetricSelector::DatapointAttribute(path) => match &path[..] {
                [key] => self.label(key),
                _ => None,
            },
            MetricSelector::ResourceAttribute(path) => match &path[..] {
                [key] => self.resource.get(key).map(FieldValue::str),
                _ => None,
            },
            MetricSelector::ScopeAttribute(_) => None,
        }
    }
}

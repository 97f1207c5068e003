//! OTLP JSON metrics as engine views.
//!
//! A metric is evaluated once, as a whole (policy-format.md §3.7):
//! `datapoint_attribute` reads its first data point, and all its points are
//! kept or dropped together. Its points are the records counted.

use serde_json::value::RawValue;
use tero_sdk::engine::{Engine, FieldValue, MetricSelector, MetricView};
use tero_sdk::proto::policy::MetricField;

use super::envelope::{Fate, Record};
use super::mutate::Target;
use super::raw;
use super::read::{self, RawObject};
use super::walk::Context;
use crate::Counts;

/// The data members a metric may carry, with their `MetricType` numbers,
/// in the order they are looked for.
const METRIC_KINDS: [(&str, i64); 5] = [
    ("gauge", 1),
    ("sum", 2),
    ("histogram", 3),
    ("exponentialHistogram", 4),
    ("summary", 5),
];

const TEMPORALITIES: [(&str, i64); 2] = [
    ("AGGREGATION_TEMPORALITY_DELTA", 1),
    ("AGGREGATION_TEMPORALITY_CUMULATIVE", 2),
];

/// Evaluates one metric; a dropped metric drops all its data points.
pub(crate) fn filter_record<'a>(
    engine: &Engine,
    resource: &Context<'a>,
    scope: &Context<'a>,
    record: &mut Record<'a>,
    counts: &mut Counts,
) {
    let view = Metric::new(record.raw, resource, scope);
    let points = view.points as u64;
    counts.records_in += points;
    let decision = engine.decide_metric(&view);
    let bytes = record.raw.get().len() as u64;
    if let Some(shadow) = decision.shadow {
        engine.shadow_stats(shadow).record_drop(points, bytes);
    }
    if !decision.keep {
        if let Some(winner) = decision.winner {
            engine.metric_stats(winner).record_drop(points, bytes);
        }
        counts.records_dropped += points;
        record.fate = Fate::Dropped;
    }
}

pub(crate) struct Metric<'c, 'a> {
    metric: RawObject<'a>,
    /// The data object and the metric's type number.
    data: Option<(RawObject<'a>, i64)>,
    first_point: Option<RawObject<'a>>,
    points: usize,
    resource: &'c Context<'a>,
    scope: &'c Context<'a>,
}

impl<'c, 'a> Metric<'c, 'a> {
    pub(crate) fn new(
        raw: &'a RawValue,
        resource: &'c Context<'a>,
        scope: &'c Context<'a>,
    ) -> Self {
        let metric = RawObject::new(raw);
        let data = METRIC_KINDS
            .iter()
            .find_map(|(key, t)| metric.member(key).map(|d| (RawObject::new(d), *t)));
        let (first, points) = data
            .as_ref()
            .and_then(|(d, _)| d.member("dataPoints"))
            .map_or((None, 0), raw::first_and_len);
        Metric {
            metric,
            data,
            first_point: first.map(RawObject::new),
            points,
            resource,
            scope,
        }
    }
}

impl MetricView for Metric<'_, '_> {
    fn get(&self, selector: &MetricSelector) -> Option<FieldValue<'_>> {
        match selector {
            MetricSelector::Field(MetricField::Name) => self.metric.non_empty_str("name"),
            MetricSelector::Field(MetricField::Description) => {
                self.metric.non_empty_str("description")
            }
            MetricSelector::Field(MetricField::Unit) => self.metric.non_empty_str("unit"),
            MetricSelector::Field(MetricField::ResourceSchemaUrl) => {
                Some(FieldValue::str(&self.resource.schema))
            }
            MetricSelector::Field(MetricField::ScopeSchemaUrl) => {
                Some(FieldValue::str(&self.scope.schema))
            }
            MetricSelector::Field(MetricField::ScopeName) => self.scope.node.non_empty_str("name"),
            MetricSelector::Field(MetricField::ScopeVersion) => {
                self.scope.node.non_empty_str("version")
            }
            MetricSelector::Field(_) => None,
            MetricSelector::DatapointAttribute(p) => self.first_point.as_ref()?.attribute(p),
            MetricSelector::ResourceAttribute(p) => self.resource.node.get(Target::Attribute(p)),
            MetricSelector::ScopeAttribute(p) => self.scope.node.get(Target::Attribute(p)),
            MetricSelector::Type => self.data.as_ref().map(|(_, t)| FieldValue::Int(*t)),
            MetricSelector::Temporality => {
                let (data, t) = self.data.as_ref()?;
                if *t == 1 || *t == 5 {
                    return None;
                }
                read::raw_enum_number(data.member("aggregationTemporality")?, &TEMPORALITIES)
                    .filter(|&n| n != 0)
                    .map(FieldValue::Int)
            }
        }
    }
}

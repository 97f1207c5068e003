//! OTLP JSON metrics as engine views.
//!
//! A metric is evaluated once, as a whole (policy-format.md §3.7):
//! `datapoint_attribute` reads its first data point, and all its points are
//! kept or dropped together. Its points are the records counted.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use tero_sdk::engine::{Engine, FieldValue, MetricSelector, MetricView};
use tero_sdk::proto::policy::MetricField;

use super::envelope::{Fate, Record};
use super::mutate::Target;
use super::raw::{self, CowStr, Kind, Members};
use super::read::{self, RawObject, other_types_are_default};
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
    parts: MetricParts<'a>,
    /// Which of `parts.data` decides the type, and the type's number.
    data: Option<(usize, i64)>,
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
        let parts = MetricParts::parse(raw);
        // The first kind present, in METRIC_KINDS order; of a repeated
        // member, the last (as a parsed map keeps it).
        let data = METRIC_KINDS.iter().find_map(|(key, t)| {
            let at = parts.data.iter().rposition(|(k, _)| k == key)?;
            Some((at, *t))
        });
        let (first, points) = data.map_or((None, 0), |(at, _)| {
            let d = &parts.data[at].1;
            (d.first_point, d.points)
        });
        Metric {
            parts,
            data,
            first_point: first.map(RawObject::new),
            points,
            resource,
            scope,
        }
    }

    fn non_empty_str(&self, key: &str) -> Option<FieldValue<'a>> {
        read::raw_non_empty_str(raw::member(&self.parts.members, key))
    }
}

impl MetricView for Metric<'_, '_> {
    fn get(&self, selector: &MetricSelector) -> Option<FieldValue<'_>> {
        match selector {
            MetricSelector::Field(MetricField::Name) => self.non_empty_str("name"),
            MetricSelector::Field(MetricField::Description) => self.non_empty_str("description"),
            MetricSelector::Field(MetricField::Unit) => self.non_empty_str("unit"),
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
            MetricSelector::Type => self.data.map(|(_, t)| FieldValue::Int(t)),
            MetricSelector::Temporality => {
                let (at, t) = self.data?;
                if t == 1 || t == 5 {
                    return None;
                }
                let data = &self.parts.data[at].1;
                read::raw_enum_number(
                    raw::member(&data.members, "aggregationTemporality")?,
                    &TEMPORALITIES,
                )
                .filter(|&n| n != 0)
                .map(FieldValue::Int)
            }
        }
    }
}

/// A metric taken apart in one pass: what policies read of it is its own
/// members, its data object's members and the data points' first element
/// and count, so the data points are skipped over once.
#[derive(Default)]
struct MetricParts<'a> {
    /// Every member but the data ones.
    members: Members<'a>,
    /// The data members (`gauge`, `sum`, …), in document order.
    data: Vec<(Cow<'a, str>, DataParts<'a>)>,
}

#[derive(Default)]
struct DataParts<'a> {
    /// Every member but `dataPoints`.
    members: Members<'a>,
    first_point: Option<&'a RawValue>,
    points: usize,
}

impl<'a> MetricParts<'a> {
    fn parse(raw: &'a RawValue) -> Self {
        if raw::kind(raw) != Kind::Object {
            return MetricParts::default();
        }
        let mut de = serde_json::Deserializer::from_str(raw.get());
        // The slice was validated when it was cut out of the payload.
        de.deserialize_map(MetricVisitor).unwrap_or_default()
    }
}

struct MetricVisitor;

impl<'de> Visitor<'de> for MetricVisitor {
    type Value = MetricParts<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a metric")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut parts = MetricParts::default();
        while let Some(CowStr(key)) = map.next_key()? {
            if METRIC_KINDS.iter().any(|(kind, _)| key == *kind) {
                let data = map.next_value_seed(DataSeed)?;
                parts.data.push((key, data));
            } else {
                parts.members.push((key, map.next_value()?));
            }
        }
        Ok(parts)
    }
}

struct DataSeed;

impl<'de> DeserializeSeed<'de> for DataSeed {
    type Value = DataParts<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DataSeed {
    type Value = DataParts<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a metric's data")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut data = DataParts::default();
        while let Some(CowStr(key)) = map.next_key()? {
            if key == "dataPoints" {
                (data.first_point, data.points) = map.next_value_seed(PointsSeed)?;
            } else {
                data.members.push((key, map.next_value()?));
            }
        }
        Ok(data)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| DataParts::default())
    }

    other_types_are_default!();
}

/// The data points: the first, and how many.
struct PointsSeed;

impl<'de> DeserializeSeed<'de> for PointsSeed {
    type Value = (Option<&'de RawValue>, usize);
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PointsSeed {
    type Value = (Option<&'de RawValue>, usize);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("data points")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        raw::FirstAndLen.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map).map(|_| (None, 0))
    }

    other_types_are_default!();
}

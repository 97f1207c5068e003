//! Datadog series (`POST /api/v2/series`): `{"series": [{"metric", "type",
//! "points": [{"timestamp", "value"}], "tags": ["k:v"], "resources":
//! [{"name", "type"}], "unit", …}]}`.
//!
//! Each series is evaluated once, as an OTLP metric is (the mapping is in
//! `docs/datadog.md`): `metric` is the name, tags are data point
//! attributes, resources are resource attributes, and the Datadog type maps
//! onto a metric type. Its points are the records counted; a dropped series
//! leaves the array, and every other byte of the payload stays as it was.

use std::borrow::Cow;
use std::cell::OnceCell;

use tero_sdk::engine::{Engine, FieldValue, MetricSelector, MetricView};
use tero_sdk::proto::policy::MetricField;

use super::tags;
use crate::json::envelope::{self, Element, Fate, Member, Record};
use crate::json::raw::{self, Kind};
use crate::json::read::{RawObject, raw_non_empty_str};
use crate::json::{json_error, utf8};
use crate::{Counts, DecodeError, Filtered, Output, Signal};

/// `MetricType` numbers (policy.proto).
const GAUGE: i64 = 1;
const SUM: i64 = 2;
/// `AggregationTemporality::Delta`.
const DELTA: i64 = 1;

pub(crate) fn filter(engine: &Engine, payload: &[u8]) -> Result<Filtered, DecodeError> {
    let text = utf8(payload)?;
    let mut document = envelope::parse(text, &["series"])
        .map_err(|e| json_error(e, "a Datadog series payload is an object"))?;
    let mut counts = Counts::default();
    let (mut evaluated, mut kept) = (0u64, 0u64);
    for (key, member) in &mut document.members {
        let Member::Array(elements) = member else {
            continue;
        };
        if key != "series" {
            continue;
        }
        for element in elements {
            if let Element::Record(record) = element {
                filter_series(engine, record, &mut counts);
                evaluated += 1;
                kept += u64::from(!matches!(record.fate, Fate::Dropped));
            }
        }
    }
    engine.record_batch(Signal::Metric);

    let output = if kept == evaluated {
        Output::Unchanged
    } else if kept == 0 {
        Output::AllDropped
    } else {
        Output::Rewritten(envelope::render(&document, payload.len()))
    };
    Ok(Filtered { output, counts })
}

fn filter_series(engine: &Engine, record: &mut Record<'_>, counts: &mut Counts) {
    let series = Series::new(RawObject::plain(record.raw));
    let points = series.object.member("points").map_or(0, raw::len) as u64;
    counts.records_in += points;
    let decision = engine.decide_metric(&series);
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

/// One series, read lazily.
struct Series<'a> {
    object: RawObject<'a>,
    /// `tags`, the strings of the array (other elements ignored).
    tags: OnceCell<Vec<Cow<'a, str>>>,
}

impl<'a> Series<'a> {
    fn new(object: RawObject<'a>) -> Self {
        Series {
            object,
            tags: OnceCell::new(),
        }
    }

    fn tags(&self) -> &[Cow<'a, str>] {
        self.tags.get_or_init(|| {
            self.object
                .member("tags")
                .map(raw::elements)
                .unwrap_or_default()
                .into_iter()
                .filter_map(raw::as_str)
                .collect()
        })
    }

    /// The Datadog type: 0 unspecified, 1 count, 2 rate, 3 gauge (numbers,
    /// or their names).
    fn datadog_type(&self) -> Option<i64> {
        let raw = self.object.member("type")?;
        match raw::kind(raw) {
            Kind::Scalar => raw::scalar(raw)?.as_i64(),
            Kind::String => {
                let name = raw::as_str(raw)?;
                ["unspecified", "count", "rate", "gauge"]
                    .iter()
                    .position(|n| name.eq_ignore_ascii_case(n))
                    .map(|p| p as i64)
            }
            _ => None,
        }
    }

    /// The `name` of the first resource of type `kind`.
    fn resource(&self, kind: &str) -> Option<FieldValue<'a>> {
        let resources = self.object.member("resources")?;
        raw::elements(resources).into_iter().find_map(|r| {
            let resource = RawObject::plain(r);
            let t = resource.member("type").and_then(raw::as_str)?;
            (t == kind).then(|| raw_non_empty_str(resource.member("name")))?
        })
    }
}

impl MetricView for Series<'_> {
    fn get(&self, selector: &MetricSelector) -> Option<FieldValue<'_>> {
        match selector {
            MetricSelector::Field(MetricField::Name) => self.object.non_empty_str("metric"),
            MetricSelector::Field(MetricField::Unit) => self.object.non_empty_str("unit"),
            MetricSelector::Field(_) => None,
            MetricSelector::DatapointAttribute(path) => {
                let [key] = &path[..] else { return None };
                self.tags().iter().find_map(|tag| {
                    let (k, v) = tags::split(tag);
                    (k == key).then(|| FieldValue::str(v))
                })
            }
            MetricSelector::ResourceAttribute(path) => match &path[..] {
                [name] if name == "host.name" => self.resource("host"),
                [name] => self.resource(name),
                _ => None,
            },
            MetricSelector::ScopeAttribute(_) => None,
            MetricSelector::Type => match self.datadog_type()? {
                1 => Some(FieldValue::Int(SUM)),
                2 | 3 => Some(FieldValue::Int(GAUGE)),
                _ => None,
            },
            MetricSelector::Temporality => {
                (self.datadog_type()? == 1).then_some(FieldValue::Int(DELTA))
            }
        }
    }
}

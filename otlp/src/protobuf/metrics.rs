//! Metrics as the engine sees them: one `Metric` message is one unit of
//! evaluation, kept or dropped whole.
//!
//! As in the conformance runner: the type is the number of the data field
//! set (gauge 1, sum 2, histogram 3, exponential histogram 4, summary 5),
//! temporality is absent for gauges and summaries and when unspecified, and
//! datapoint attributes are those of the first data point.

use tero_sdk::engine::{Engine, FieldValue, MetricSelector, MetricView};
use tero_sdk::proto::policy::MetricField;

use super::message::{Message, attribute_in};
use super::walk::{Changes, Context, RecordChange, walk};
use super::wire::{self, Value};
use crate::Counts;

// Metric field numbers.
const NAME: u32 = 1;
const DESCRIPTION: u32 = 2;
const UNIT: u32 = 3;
/// The `data` oneof: (field number, metric type, attribute field of its
/// data points).
const DATA_KINDS: [(u32, i64, u32); 5] = [
    (5, 1, 7),  // gauge: NumberDataPoint.attributes
    (7, 2, 7),  // sum: NumberDataPoint.attributes
    (9, 3, 9),  // histogram: HistogramDataPoint.attributes
    (10, 4, 1), // exponential histogram: ExponentialHistogramDataPoint.attributes
    (11, 5, 7), // summary: SummaryDataPoint.attributes
];
// Fields of Gauge, Sum, Histogram, ExponentialHistogram and Summary.
const DATA_POINTS: u32 = 1;
const AGGREGATION_TEMPORALITY: u32 = 2;
// InstrumentationScope field numbers.
const SCOPE_NAME: u32 = 1;
const SCOPE_VERSION: u32 = 2;

/// Evaluates every metric of a validated `ExportMetricsServiceRequest`.
pub(crate) fn evaluate(engine: &Engine, payload: &[u8], counts: &mut Counts) -> Changes {
    walk(payload, 0, |ctx, metric| {
        let view = MetricRecordView { ctx, metric };
        let size = view.metric.original_len() as u64;
        let points = view.data().map_or(0, |data| {
            wire::fields(data.content)
                .filter(|f| f.number == DATA_POINTS && f.is_len())
                .count() as u64
        });
        counts.records_in += points;
        counts.protobuf_bytes_in += size;
        let decision = engine.decide_metric(&view);
        if let Some(shadow) = decision.shadow {
            engine.shadow_stats(shadow).record_drop(points, size);
        }
        if decision.keep {
            return None;
        }
        if let Some(winner) = decision.winner {
            engine.metric_stats(winner).record_drop(points, size);
        }
        counts.records_dropped += points;
        Some(RecordChange::Drop)
    })
}

struct MetricRecordView<'v, 'a> {
    ctx: &'v Context<'a>,
    metric: &'v Message<'a>,
}

/// The data of a metric: its message content and what kind it is.
struct Data<'m> {
    content: &'m [u8],
    metric_type: i64,
    point_attributes: u32,
}

impl MetricRecordView<'_, '_> {
    /// The data field protobuf reads: the one of the oneof set last.
    fn data(&self) -> Option<Data<'_>> {
        let bytes = self.metric.bytes()?;
        let mut found = None;
        for f in wire::fields(bytes) {
            if let Some(&(_, metric_type, point_attributes)) =
                DATA_KINDS.iter().find(|(n, ..)| *n == f.number)
                && f.is_len()
            {
                found = Some(Data {
                    content: f.content(bytes),
                    metric_type,
                    point_attributes,
                });
            }
        }
        found
    }
}

impl MetricView for MetricRecordView<'_, '_> {
    fn get(&self, selector: &MetricSelector) -> Option<FieldValue<'_>> {
        match selector {
            MetricSelector::Field(MetricField::Name) => self.metric.text(NAME),
            MetricSelector::Field(MetricField::Description) => self.metric.text(DESCRIPTION),
            MetricSelector::Field(MetricField::Unit) => self.metric.text(UNIT),
            MetricSelector::Field(MetricField::ResourceSchemaUrl) => {
                Some(FieldValue::str(self.ctx.resource_schema))
            }
            MetricSelector::Field(MetricField::ScopeSchemaUrl) => {
                Some(FieldValue::str(self.ctx.scope_schema))
            }
            MetricSelector::Field(MetricField::ScopeName) => self.ctx.scope.text(SCOPE_NAME),
            MetricSelector::Field(MetricField::ScopeVersion) => self.ctx.scope.text(SCOPE_VERSION),
            MetricSelector::Field(_) => None,
            MetricSelector::DatapointAttribute(p) => {
                let data = self.data()?;
                let first = wire::fields(data.content)
                    .find(|f| f.number == DATA_POINTS && f.is_len())?
                    .content(data.content);
                attribute_in(first, data.point_attributes, p)
            }
            MetricSelector::ResourceAttribute(p) => self.ctx.resource.attribute(p),
            MetricSelector::ScopeAttribute(p) => self.ctx.scope.attribute(p),
            MetricSelector::Type => self.data().map(|d| FieldValue::Int(d.metric_type)),
            MetricSelector::Temporality => {
                let data = self.data()?;
                if matches!(data.metric_type, 1 | 5) {
                    return None;
                }
                wire::fields(data.content)
                    .filter(|f| f.number == AGGREGATION_TEMPORALITY)
                    .filter_map(|f| match f.value {
                        Value::Varint(v) => Some(i64::from(v as i32)),
                        _ => None,
                    })
                    .last()
                    .filter(|&t| t != 0)
                    .map(FieldValue::Int)
            }
        }
    }
}

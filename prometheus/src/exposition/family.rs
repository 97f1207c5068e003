//! Metric families: declared types, their OTel mapping, and which sample
//! names belong to a family.
//!
//! Membership is exact by declared type, never a prefix test: family
//! `http_requests` must not swallow `http_requests_in_flight`.

use tero_proto::policy::{AggregationTemporality, MetricType};

/// A family's declared type. `Untyped` covers `untyped`, `unknown`, an
/// unrecognised word and a family without TYPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FamilyType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    #[default]
    Untyped,
}

/// The label that is structure, not identity, in a family's samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StructuralLabel {
    Le,
    Quantile,
}

impl StructuralLabel {
    pub fn name(self) -> &'static str {
        match self {
            StructuralLabel::Le => "le",
            StructuralLabel::Quantile => "quantile",
        }
    }
}

impl FamilyType {
    /// The type a TYPE line's value declares.
    pub fn from_word(word: &[u8]) -> FamilyType {
        let word = word.trim_ascii();
        match word {
            b"counter" => FamilyType::Counter,
            b"gauge" => FamilyType::Gauge,
            b"histogram" => FamilyType::Histogram,
            b"gaugehistogram" => FamilyType::GaugeHistogram,
            b"summary" => FamilyType::Summary,
            b"info" => FamilyType::Info,
            b"stateset" => FamilyType::StateSet,
            _ => FamilyType::Untyped,
        }
    }

    /// The OTel `MetricType` number policies match on.
    pub fn metric_type(self) -> i32 {
        match self {
            FamilyType::Counter | FamilyType::Info | FamilyType::StateSet => MetricType::Sum as i32,
            FamilyType::Histogram | FamilyType::GaugeHistogram => MetricType::Histogram as i32,
            FamilyType::Summary => MetricType::Summary as i32,
            FamilyType::Gauge | FamilyType::Untyped => MetricType::Gauge as i32,
        }
    }

    /// The OTel aggregation temporality, absent where the type has none.
    pub fn temporality(self) -> Option<i32> {
        match self {
            FamilyType::Counter
            | FamilyType::Histogram
            | FamilyType::Info
            | FamilyType::StateSet => Some(AggregationTemporality::Cumulative as i32),
            _ => None,
        }
    }

    /// True if `sample` is a member name of family `family` of this type.
    /// Compares bytes: the filter asks this for every sample line.
    pub fn is_member(self, family: &[u8], sample: &[u8]) -> bool {
        if sample == family {
            return !matches!(
                self,
                FamilyType::Histogram | FamilyType::GaugeHistogram | FamilyType::Info
            );
        }
        let Some(suffix) = sample.strip_prefix(family) else {
            return false;
        };
        match self {
            FamilyType::Counter => matches!(suffix, b"_total" | b"_created"),
            FamilyType::Histogram => {
                matches!(suffix, b"_bucket" | b"_count" | b"_sum" | b"_created")
            }
            FamilyType::GaugeHistogram => matches!(suffix, b"_bucket" | b"_gcount" | b"_gsum"),
            FamilyType::Summary => matches!(suffix, b"_count" | b"_sum" | b"_created"),
            FamilyType::Info => suffix == b"_info",
            FamilyType::Gauge | FamilyType::StateSet | FamilyType::Untyped => false,
        }
    }

    /// The label excluded from series identity: `le` of histogram buckets,
    /// `quantile` of summary quantiles.
    pub fn structural_label(self) -> Option<StructuralLabel> {
        match self {
            FamilyType::Histogram | FamilyType::GaugeHistogram => Some(StructuralLabel::Le),
            FamilyType::Summary => Some(StructuralLabel::Quantile),
            _ => None,
        }
    }

    /// True if one series spans several lines (`_count`, `_created`, …).
    pub fn multi_line(self) -> bool {
        matches!(
            self,
            FamilyType::Counter
                | FamilyType::Histogram
                | FamilyType::GaugeHistogram
                | FamilyType::Summary
        )
    }
}

#[cfg(test)]
mod tests {
    use super::FamilyType::*;
    use super::*;

    #[test]
    fn membership_follows_the_declared_type() {
        assert!(Counter.is_member(b"foo", b"foo_total"));
        assert!(Counter.is_member(b"foo", b"foo_created"));
        assert!(Counter.is_member(b"foo_total", b"foo_total"));
        assert!(!Counter.is_member(b"foo", b"foo_bucket"));
        assert!(Histogram.is_member(b"h", b"h_bucket"));
        assert!(Histogram.is_member(b"h", b"h_created"));
        assert!(!Histogram.is_member(b"h", b"h"));
        assert!(GaugeHistogram.is_member(b"g", b"g_gsum"));
        assert!(!GaugeHistogram.is_member(b"g", b"g_sum"));
        assert!(Summary.is_member(b"s", b"s"));
        assert!(Summary.is_member(b"s", b"s_count"));
        assert!(Info.is_member(b"build", b"build_info"));
        assert!(!Info.is_member(b"build", b"build"));
        assert!(Gauge.is_member(b"g", b"g"));
        assert!(!Gauge.is_member(b"http_requests", b"http_requests_in_flight"));
        assert!(!Untyped.is_member(b"a", b"a_total"));
    }

    #[test]
    fn types_map_to_the_otel_vocabulary() {
        assert_eq!(
            FamilyType::from_word(b"counter").metric_type(),
            MetricType::Sum as i32
        );
        assert_eq!(FamilyType::from_word(b"gauge").temporality(), None);
        assert_eq!(
            FamilyType::from_word(b"histogram").temporality(),
            Some(AggregationTemporality::Cumulative as i32)
        );
        assert_eq!(FamilyType::from_word(b"gaugehistogram").temporality(), None);
        assert_eq!(
            FamilyType::from_word(b"gaugehistogram").metric_type(),
            MetricType::Histogram as i32
        );
        assert_eq!(FamilyType::from_word(b"unknown"), Untyped);
        assert_eq!(
            FamilyType::from_word(b"summary").metric_type(),
            MetricType::Summary as i32
        );
        assert_eq!(
            FamilyType::from_word(b"stateset").metric_type(),
            MetricType::Sum as i32
        );
    }
}

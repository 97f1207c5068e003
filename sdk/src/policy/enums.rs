//! Lenient enum spelling for the authoring formats.
//!
//! An enum value may be written as its full proto name
//! (`METRIC_TYPE_GAUGE`), as the suffix after the type prefix in any case
//! (`gauge`, `Gauge`), or as its number. Proto3 JSON uses the first and last
//! forms; humans use the middle one.

use tero_proto::policy as pb;

/// An enum type known to the authoring decoder.
pub(crate) trait LenientEnum: Sized {
    /// The shared prefix of the proto value names, e.g. `METRIC_TYPE_`.
    const PREFIX: &'static str;
    fn from_str_name(name: &str) -> Option<Self>;
    fn from_i32(value: i32) -> Option<Self>;
    fn to_i32(self) -> i32;
    /// The full proto name, e.g. `METRIC_TYPE_GAUGE`.
    fn as_str_name(&self) -> &'static str;
    /// Extra accepted spellings (e.g. `unset` for the unspecified status).
    fn alias(_name: &str) -> Option<Self> {
        None
    }
}

/// Parses a lenient enum from text; `None` if nothing matches.
pub(crate) fn parse_enum_str<E: LenientEnum>(text: &str) -> Option<E> {
    let trimmed = text.trim();
    if let Ok(n) = trimmed.parse::<i32>() {
        return E::from_i32(n);
    }
    let upper = trimmed.to_ascii_uppercase();
    if let Some(v) = E::from_str_name(&upper) {
        return Some(v);
    }
    if let Some(v) = E::from_str_name(&format!("{}{}", E::PREFIX, upper)) {
        return Some(v);
    }
    E::alias(&upper)
}

/// The spelling authors write: the lower-case suffix (`gauge`), which
/// [`parse_enum_str`] reads back as the same value. `None` for a number
/// that names no value.
pub(crate) fn authoring_name<E: LenientEnum>(value: i32) -> Option<String> {
    let e = E::from_i32(value)?;
    let full = e.as_str_name();
    Some(
        full.strip_prefix(E::PREFIX)
            .unwrap_or(full)
            .to_ascii_lowercase(),
    )
}

macro_rules! lenient {
    ($ty:ty, $prefix:literal) => {
        lenient!($ty, $prefix, |_n: &str| None);
    };
    ($ty:ty, $prefix:literal, $alias:expr) => {
        impl LenientEnum for $ty {
            const PREFIX: &'static str = $prefix;
            fn from_str_name(name: &str) -> Option<Self> {
                <$ty>::from_str_name(name)
            }
            fn from_i32(value: i32) -> Option<Self> {
                <$ty>::try_from(value).ok()
            }
            fn to_i32(self) -> i32 {
                self as i32
            }
            fn as_str_name(&self) -> &'static str {
                <$ty>::as_str_name(self)
            }
            fn alias(name: &str) -> Option<Self> {
                let f: fn(&str) -> Option<Self> = $alias;
                f(name)
            }
        }
    };
}

lenient!(pb::LogField, "LOG_FIELD_");
lenient!(pb::MetricField, "METRIC_FIELD_");
lenient!(pb::MetricType, "METRIC_TYPE_");
lenient!(pb::AggregationTemporality, "AGGREGATION_TEMPORALITY_");
lenient!(pb::TraceField, "TRACE_FIELD_");
lenient!(pb::SpanKind, "SPAN_KIND_");
lenient!(pb::SpanStatusCode, "SPAN_STATUS_CODE_", |n: &str| match n {
    "UNSET" | "SPAN_STATUS_CODE_UNSET" | "STATUS_CODE_UNSET" =>
        Some(pb::SpanStatusCode::Unspecified),
    "STATUS_CODE_OK" => Some(pb::SpanStatusCode::Ok),
    "STATUS_CODE_ERROR" => Some(pb::SpanStatusCode::Error),
    _ => None,
});
lenient!(pb::SamplingMode, "SAMPLING_MODE_");
lenient!(pb::ExtensionMode, "EXTENSION_MODE_");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_full_names_suffixes_and_numbers() {
        assert_eq!(
            parse_enum_str::<pb::MetricType>("METRIC_TYPE_GAUGE"),
            Some(pb::MetricType::Gauge)
        );
        assert_eq!(
            parse_enum_str::<pb::MetricType>("exponential_histogram"),
            Some(pb::MetricType::ExponentialHistogram)
        );
        assert_eq!(
            parse_enum_str::<pb::MetricType>("2"),
            Some(pb::MetricType::Sum)
        );
        assert_eq!(
            parse_enum_str::<pb::SpanKind>("CONSUMER"),
            Some(pb::SpanKind::Consumer)
        );
        assert_eq!(
            parse_enum_str::<pb::SpanStatusCode>("unset"),
            Some(pb::SpanStatusCode::Unspecified)
        );
        assert_eq!(
            parse_enum_str::<pb::SpanStatusCode>("error"),
            Some(pb::SpanStatusCode::Error)
        );
        assert_eq!(
            parse_enum_str::<pb::LogField>("severity_text"),
            Some(pb::LogField::SeverityText)
        );
        assert_eq!(parse_enum_str::<pb::MetricType>("gauges"), None);
        assert_eq!(parse_enum_str::<pb::MetricType>("99"), None);
    }
}

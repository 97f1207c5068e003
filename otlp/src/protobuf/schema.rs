//! The OTLP message types as validation needs them: for each field
//! number, how the field is encoded and which message it holds.
//!
//! Written out from `proto/proto/opentelemetry/proto/**` (the field numbers
//! there are normative); a field not listed is an unknown field, skipped
//! and kept.

/// How a known field is encoded.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Unknown,
    Varint,
    Fixed64,
    Fixed32,
    Str,
    Bytes,
    Message(&'static Schema),
    /// `repeated fixed64`/`double`: packed or one value per field.
    RepeatedFixed64,
    /// `repeated uint64`: packed or one value per field.
    RepeatedVarint,
}

/// The fields of one message type, by number. Every OTLP field number is
/// below 17.
pub(crate) struct Schema {
    pub(crate) name: &'static str,
    pub(crate) kinds: [Kind; 17],
    pub(crate) field_names: [&'static str; 17],
}

const fn schema(name: &'static str, list: &[(u32, &'static str, Kind)]) -> Schema {
    let mut kinds = [Kind::Unknown; 17];
    let mut field_names = [""; 17];
    let mut i = 0;
    while i < list.len() {
        let (number, field_name, kind) = list[i];
        kinds[number as usize] = kind;
        field_names[number as usize] = field_name;
        i += 1;
    }
    Schema {
        name,
        kinds,
        field_names,
    }
}

use Kind::{Bytes, Fixed32, Fixed64, Message as Msg, RepeatedFixed64, RepeatedVarint, Str, Varint};

static ANY_VALUE: Schema = schema(
    "AnyValue",
    &[
        (1, "string_value", Str),
        (2, "bool_value", Varint),
        (3, "int_value", Varint),
        (4, "double_value", Fixed64),
        (5, "array_value", Msg(&ARRAY_VALUE)),
        (6, "kvlist_value", Msg(&KEY_VALUE_LIST)),
        (7, "bytes_value", Bytes),
    ],
);
static ARRAY_VALUE: Schema = schema("ArrayValue", &[(1, "values", Msg(&ANY_VALUE))]);
static KEY_VALUE_LIST: Schema = schema("KeyValueList", &[(1, "values", Msg(&KEY_VALUE))]);
pub(crate) static KEY_VALUE: Schema = schema(
    "KeyValue",
    &[(1, "key", Str), (2, "value", Msg(&ANY_VALUE))],
);
static SCOPE: Schema = schema(
    "InstrumentationScope",
    &[
        (1, "name", Str),
        (2, "version", Str),
        (3, "attributes", Msg(&KEY_VALUE)),
        (4, "dropped_attributes_count", Varint),
    ],
);
static ENTITY_REF: Schema = schema(
    "EntityRef",
    &[
        (1, "schema_url", Str),
        (2, "type", Str),
        (3, "id_keys", Str),
        (4, "description_keys", Str),
    ],
);
static RESOURCE: Schema = schema(
    "Resource",
    &[
        (1, "attributes", Msg(&KEY_VALUE)),
        (2, "dropped_attributes_count", Varint),
        (3, "entity_refs", Msg(&ENTITY_REF)),
    ],
);

// Logs.
pub(crate) static LOGS_REQUEST: Schema = schema(
    "ExportLogsServiceRequest",
    &[(1, "resource_logs", Msg(&RESOURCE_LOGS))],
);
static RESOURCE_LOGS: Schema = schema(
    "ResourceLogs",
    &[
        (1, "resource", Msg(&RESOURCE)),
        (2, "scope_logs", Msg(&SCOPE_LOGS)),
        (3, "schema_url", Str),
    ],
);
static SCOPE_LOGS: Schema = schema(
    "ScopeLogs",
    &[
        (1, "scope", Msg(&SCOPE)),
        (2, "log_records", Msg(&LOG_RECORD)),
        (3, "schema_url", Str),
    ],
);
static LOG_RECORD: Schema = schema(
    "LogRecord",
    &[
        (1, "time_unix_nano", Fixed64),
        (11, "observed_time_unix_nano", Fixed64),
        (2, "severity_number", Varint),
        (3, "severity_text", Str),
        (5, "body", Msg(&ANY_VALUE)),
        (6, "attributes", Msg(&KEY_VALUE)),
        (7, "dropped_attributes_count", Varint),
        (8, "flags", Fixed32),
        (9, "trace_id", Bytes),
        (10, "span_id", Bytes),
        (12, "event_name", Str),
    ],
);

// Traces.
pub(crate) static TRACES_REQUEST: Schema = schema(
    "ExportTraceServiceRequest",
    &[(1, "resource_spans", Msg(&RESOURCE_SPANS))],
);
static RESOURCE_SPANS: Schema = schema(
    "ResourceSpans",
    &[
        (1, "resource", Msg(&RESOURCE)),
        (2, "scope_spans", Msg(&SCOPE_SPANS)),
        (3, "schema_url", Str),
    ],
);
static SCOPE_SPANS: Schema = schema(
    "ScopeSpans",
    &[
        (1, "scope", Msg(&SCOPE)),
        (2, "spans", Msg(&SPAN)),
        (3, "schema_url", Str),
    ],
);
static SPAN: Schema = schema(
    "Span",
    &[
        (1, "trace_id", Bytes),
        (2, "span_id", Bytes),
        (3, "trace_state", Str),
        (4, "parent_span_id", Bytes),
        (16, "flags", Fixed32),
        (5, "name", Str),
        (6, "kind", Varint),
        (7, "start_time_unix_nano", Fixed64),
        (8, "end_time_unix_nano", Fixed64),
        (9, "attributes", Msg(&KEY_VALUE)),
        (10, "dropped_attributes_count", Varint),
        (11, "events", Msg(&SPAN_EVENT)),
        (12, "dropped_events_count", Varint),
        (13, "links", Msg(&SPAN_LINK)),
        (14, "dropped_links_count", Varint),
        (15, "status", Msg(&STATUS)),
    ],
);
static SPAN_EVENT: Schema = schema(
    "Span.Event",
    &[
        (1, "time_unix_nano", Fixed64),
        (2, "name", Str),
        (3, "attributes", Msg(&KEY_VALUE)),
        (4, "dropped_attributes_count", Varint),
    ],
);
static SPAN_LINK: Schema = schema(
    "Span.Link",
    &[
        (1, "trace_id", Bytes),
        (2, "span_id", Bytes),
        (3, "trace_state", Str),
        (4, "attributes", Msg(&KEY_VALUE)),
        (5, "dropped_attributes_count", Varint),
        (6, "flags", Fixed32),
    ],
);
static STATUS: Schema = schema("Status", &[(2, "message", Str), (3, "code", Varint)]);

// Metrics.
pub(crate) static METRICS_REQUEST: Schema = schema(
    "ExportMetricsServiceRequest",
    &[(1, "resource_metrics", Msg(&RESOURCE_METRICS))],
);
static RESOURCE_METRICS: Schema = schema(
    "ResourceMetrics",
    &[
        (1, "resource", Msg(&RESOURCE)),
        (2, "scope_metrics", Msg(&SCOPE_METRICS)),
        (3, "schema_url", Str),
    ],
);
static SCOPE_METRICS: Schema = schema(
    "ScopeMetrics",
    &[
        (1, "scope", Msg(&SCOPE)),
        (2, "metrics", Msg(&METRIC)),
        (3, "schema_url", Str),
    ],
);
static METRIC: Schema = schema(
    "Metric",
    &[
        (1, "name", Str),
        (2, "description", Str),
        (3, "unit", Str),
        (5, "gauge", Msg(&GAUGE)),
        (7, "sum", Msg(&SUM)),
        (9, "histogram", Msg(&HISTOGRAM)),
        (10, "exponential_histogram", Msg(&EXPONENTIAL_HISTOGRAM)),
        (11, "summary", Msg(&SUMMARY)),
        (12, "metadata", Msg(&KEY_VALUE)),
    ],
);
static GAUGE: Schema = schema("Gauge", &[(1, "data_points", Msg(&NUMBER_POINT))]);
static SUM: Schema = schema(
    "Sum",
    &[
        (1, "data_points", Msg(&NUMBER_POINT)),
        (2, "aggregation_temporality", Varint),
        (3, "is_monotonic", Varint),
    ],
);
static HISTOGRAM: Schema = schema(
    "Histogram",
    &[
        (1, "data_points", Msg(&HISTOGRAM_POINT)),
        (2, "aggregation_temporality", Varint),
    ],
);
static EXPONENTIAL_HISTOGRAM: Schema = schema(
    "ExponentialHistogram",
    &[
        (1, "data_points", Msg(&EXPONENTIAL_POINT)),
        (2, "aggregation_temporality", Varint),
    ],
);
static SUMMARY: Schema = schema("Summary", &[(1, "data_points", Msg(&SUMMARY_POINT))]);
static NUMBER_POINT: Schema = schema(
    "NumberDataPoint",
    &[
        (7, "attributes", Msg(&KEY_VALUE)),
        (2, "start_time_unix_nano", Fixed64),
        (3, "time_unix_nano", Fixed64),
        (4, "as_double", Fixed64),
        (6, "as_int", Fixed64),
        (5, "exemplars", Msg(&EXEMPLAR)),
        (8, "flags", Varint),
    ],
);
static HISTOGRAM_POINT: Schema = schema(
    "HistogramDataPoint",
    &[
        (9, "attributes", Msg(&KEY_VALUE)),
        (2, "start_time_unix_nano", Fixed64),
        (3, "time_unix_nano", Fixed64),
        (4, "count", Fixed64),
        (5, "sum", Fixed64),
        (6, "bucket_counts", RepeatedFixed64),
        (7, "explicit_bounds", RepeatedFixed64),
        (8, "exemplars", Msg(&EXEMPLAR)),
        (10, "flags", Varint),
        (11, "min", Fixed64),
        (12, "max", Fixed64),
    ],
);
static EXPONENTIAL_POINT: Schema = schema(
    "ExponentialHistogramDataPoint",
    &[
        (1, "attributes", Msg(&KEY_VALUE)),
        (2, "start_time_unix_nano", Fixed64),
        (3, "time_unix_nano", Fixed64),
        (4, "count", Fixed64),
        (5, "sum", Fixed64),
        (6, "scale", Varint),
        (7, "zero_count", Fixed64),
        (8, "positive", Msg(&BUCKETS)),
        (9, "negative", Msg(&BUCKETS)),
        (10, "flags", Varint),
        (11, "exemplars", Msg(&EXEMPLAR)),
        (12, "min", Fixed64),
        (13, "max", Fixed64),
        (14, "zero_threshold", Fixed64),
    ],
);
static BUCKETS: Schema = schema(
    "ExponentialHistogramDataPoint.Buckets",
    &[(1, "offset", Varint), (2, "bucket_counts", RepeatedVarint)],
);
static SUMMARY_POINT: Schema = schema(
    "SummaryDataPoint",
    &[
        (7, "attributes", Msg(&KEY_VALUE)),
        (2, "start_time_unix_nano", Fixed64),
        (3, "time_unix_nano", Fixed64),
        (4, "count", Fixed64),
        (5, "sum", Fixed64),
        (6, "quantile_values", Msg(&VALUE_AT_QUANTILE)),
        (8, "flags", Varint),
    ],
);
static VALUE_AT_QUANTILE: Schema = schema(
    "SummaryDataPoint.ValueAtQuantile",
    &[(1, "quantile", Fixed64), (2, "value", Fixed64)],
);
static EXEMPLAR: Schema = schema(
    "Exemplar",
    &[
        (7, "filtered_attributes", Msg(&KEY_VALUE)),
        (2, "time_unix_nano", Fixed64),
        (3, "as_double", Fixed64),
        (6, "as_int", Fixed64),
        (4, "span_id", Bytes),
        (5, "trace_id", Bytes),
    ],
);

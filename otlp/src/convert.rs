//! OTLP JSON to binary protobuf and back, through the generated types.
//!
//! For tests and tools that hold OTLP JSON (the conformance testcases, a
//! curl-able sample) and need to send or read the protobuf form. It is not
//! on any hot path: it builds the full `tero_proto` message trees.
//!
//! Reading accepts what OTLP/JSON producers write: camelCase or snake_case
//! member names, trace and span ids as hex, 64-bit integers as strings or
//! numbers, enums as names or numbers, `bytesValue` as base64, doubles as
//! numbers or the strings `NaN`, `Infinity`, `-Infinity`; `null` counts as
//! absent and unknown members are ignored. Writing produces OTLP JSON:
//! camelCase, hex ids, 64-bit integers as strings, enums as numbers,
//! default scalars left out, present messages kept (even when empty).

mod read;
mod write;

use prost::Message as _;
use serde_json::Value;
use tero_proto::otlp_collector::logs::v1::ExportLogsServiceRequest;
use tero_proto::otlp_collector::metrics::v1::ExportMetricsServiceRequest;
use tero_proto::otlp_collector::trace::v1::ExportTraceServiceRequest;

use crate::Signal;

pub use read::{logs_from_json, metrics_from_json, traces_from_json};
pub use write::{logs_to_json, metrics_to_json, traces_to_json};

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The JSON is not OTLP JSON; `path` names the offending member.
    #[error("{path}: {problem}")]
    Json { path: String, problem: String },
    /// The bytes are not the protobuf message of the signal.
    #[error("not a valid {message}: {source}")]
    Protobuf {
        message: &'static str,
        source: prost::DecodeError,
    },
}

type Result<T> = std::result::Result<T, ConvertError>;

/// An OTLP JSON document (`LogsData`, `TracesData` or `MetricsData`) of
/// `signal` as the encoded export request.
pub fn json_to_protobuf(signal: Signal, document: &Value) -> Result<Vec<u8>> {
    Ok(match signal {
        Signal::Log => logs_from_json(document)?.encode_to_vec(),
        Signal::Trace => traces_from_json(document)?.encode_to_vec(),
        Signal::Metric => metrics_from_json(document)?.encode_to_vec(),
    })
}

/// An encoded export request of `signal` as an OTLP JSON document.
pub fn protobuf_to_json(signal: Signal, payload: &[u8]) -> Result<Value> {
    let failed = |message| move |source| ConvertError::Protobuf { message, source };
    Ok(match signal {
        Signal::Log => logs_to_json(
            &ExportLogsServiceRequest::decode(payload)
                .map_err(failed("ExportLogsServiceRequest"))?,
        ),
        Signal::Trace => traces_to_json(
            &ExportTraceServiceRequest::decode(payload)
                .map_err(failed("ExportTraceServiceRequest"))?,
        ),
        Signal::Metric => metrics_to_json(
            &ExportMetricsServiceRequest::decode(payload)
                .map_err(failed("ExportMetricsServiceRequest"))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn logs_round_trip_with_names_numbers_and_hex() {
        let doc = json!({"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
            "scopeLogs": [{
                "scope": {"name": "lib", "version": "1"},
                "logRecords": [{
                    "timeUnixNano": "1700000000000000001",
                    "severityNumber": "SEVERITY_NUMBER_WARN",
                    "severityText": "WARN",
                    "body": {"kvlistValue": {"values": [{"key": "n", "value": {"intValue": 7}}]}},
                    "traceId": "0102030405060708090a0b0c0d0e0f10",
                    "span_id": "0102030405060708",
                    "attributes": [{"key": "b", "value": {"bytesValue": "AAE="}}]
                }],
                "schemaUrl": "https://s"
            }]
        }]});
        let bytes = json_to_protobuf(Signal::Log, &doc).unwrap();
        let back = protobuf_to_json(Signal::Log, &bytes).unwrap();
        let record = &back["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(record["timeUnixNano"], "1700000000000000001");
        assert_eq!(record["severityNumber"], 13);
        assert_eq!(record["traceId"], "0102030405060708090a0b0c0d0e0f10");
        assert_eq!(record["spanId"], "0102030405060708");
        assert_eq!(
            record["body"]["kvlistValue"]["values"][0]["value"]["intValue"],
            "7"
        );
        assert_eq!(record["attributes"][0]["value"]["bytesValue"], "AAE=");
        assert_eq!(
            back["resourceLogs"][0]["scopeLogs"][0]["schemaUrl"],
            "https://s"
        );
    }

    #[test]
    fn bad_members_are_named() {
        let doc = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]});
        let err = json_to_protobuf(Signal::Trace, &doc)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("$.resourceSpans[0].scopeSpans[0].spans[0].traceId:"),
            "{err}"
        );
        let doc = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"sum": {"aggregationTemporality": "SOMETIMES"}}]}]}]});
        let err = json_to_protobuf(Signal::Metric, &doc)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("aggregationTemporality") && err.contains("SOMETIMES"),
            "{err}"
        );
    }

    #[test]
    fn garbage_bytes_are_an_error() {
        assert!(matches!(
            protobuf_to_json(Signal::Log, &[0x0a, 0x05, 1]),
            Err(ConvertError::Protobuf { .. })
        ));
    }
}

//! Datadog JSON values as field values: strings as they are, integers and
//! other numbers, booleans; arrays and objects are present but opaque, and
//! `null` is absent.

use serde_json::Value;
use serde_json::value::RawValue;
use tero_sdk::engine::FieldValue;

use crate::json::raw::{self, Kind};

pub(crate) fn raw_leaf(raw: &RawValue) -> Option<FieldValue<'_>> {
    match raw::kind(raw) {
        Kind::String => raw::as_str(raw).map(FieldValue::Str),
        Kind::Object | Kind::Array => Some(FieldValue::Opaque),
        Kind::Scalar => match raw::scalar(raw)? {
            Value::Bool(b) => Some(FieldValue::Bool(b)),
            Value::Number(n) => number(&n),
            _ => None,
        },
    }
}

pub(crate) fn value_leaf(value: &Value) -> Option<FieldValue<'_>> {
    match value {
        Value::String(s) => Some(FieldValue::str(s)),
        Value::Object(_) | Value::Array(_) => Some(FieldValue::Opaque),
        Value::Bool(b) => Some(FieldValue::Bool(*b)),
        Value::Number(n) => number(n),
        Value::Null => None,
    }
}

fn number(n: &serde_json::Number) -> Option<FieldValue<'static>> {
    match n.as_i64() {
        Some(i) => Some(FieldValue::Int(i)),
        None => n.as_f64().map(FieldValue::Double),
    }
}

//! Typed literals and attribute paths in every spelling the encodings
//! allow: scalars or `{int_value: …}` objects, numbers as JSON numbers or
//! proto3 JSON strings, paths as a string, an array or `{path: [...]}`.

use super::*;

impl Decoder {
    pub(super) fn typed_value(&mut self, v: &Json, loc: &Loc) -> Option<pb::Value> {
        use pb::value::Value as V;
        let value = match v {
            Json::Bool(b) => V::BoolValue(*b),
            Json::String(s) => V::StringValue(s.clone()),
            Json::Number(n) => match n.as_i64() {
                Some(i) if !n.is_f64() => V::IntValue(i),
                _ => V::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
            },
            Json::Object(map) => {
                let mut obj = Obj::new(map);
                let choices = [
                    "bool_value",
                    "int_value",
                    "double_value",
                    "bytes_value",
                    "hex_value",
                    "string_value",
                ];
                let Some((key, inner)) = self.one_of(&mut obj, &choices, loc, "value") else {
                    self.err(loc, Some("equals"), "empty typed value");
                    return None;
                };
                match key {
                    "bool_value" => V::BoolValue(self.boolean(inner, loc, "equals")),
                    "string_value" => V::StringValue(self.string(inner, loc, "equals")),
                    "hex_value" => V::HexValue(self.string(inner, loc, "equals")),
                    "int_value" => V::IntValue(self.integer(inner, loc, "equals")?),
                    "double_value" => V::DoubleValue(self.double(inner, loc, "equals")?),
                    "bytes_value" => {
                        let text = self.string(inner, loc, "equals");
                        match decode_base64(&text) {
                            Ok(bytes) => V::BytesValue(bytes),
                            Err(e) => {
                                self.err(
                                    loc,
                                    Some("equals"),
                                    format!("bytes_value is not base64: {e}"),
                                );
                                return None;
                            }
                        }
                    }
                    _ => unreachable!(),
                }
            }
            other => {
                self.err(
                    loc,
                    Some("equals"),
                    format!("expected a scalar or a typed value, found {}", kind(other)),
                );
                return None;
            }
        };
        Some(pb::Value { value: Some(value) })
    }

    pub(super) fn integer(&mut self, v: &Json, loc: &Loc, field: &'static str) -> Option<i64> {
        let parsed = match v {
            Json::Number(n) => n.as_i64(),
            Json::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.err(loc, Some(field), format!("expected an integer, found {v}"));
        }
        parsed
    }

    pub(super) fn double(&mut self, v: &Json, loc: &Loc, field: &'static str) -> Option<f64> {
        let parsed = match v {
            Json::Number(n) => n.as_f64(),
            Json::String(s) => match s.trim() {
                "NaN" => Some(f64::NAN),
                "Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                t => t.parse().ok(),
            },
            _ => None,
        };
        if parsed.is_none() {
            self.err(loc, Some(field), format!("expected a number, found {v}"));
        }
        parsed
    }

    /// Comparator operands must be numbers: `gt: "abc"` is rejected here
    /// because the wire type cannot even represent it.
    pub(super) fn numeric_value(
        &mut self,
        v: &Json,
        loc: &Loc,
        field: &'static str,
    ) -> Option<pb::NumericValue> {
        use pb::numeric_value::Value as N;
        let value = match v {
            Json::Number(n) => match n.as_i64() {
                Some(i) if !n.is_f64() => N::IntValue(i),
                _ => N::DoubleValue(n.as_f64()?),
            },
            Json::String(s) => {
                let t = s.trim();
                if let Ok(i) = t.parse::<i64>() {
                    N::IntValue(i)
                } else if let Some(d) = t.parse::<f64>().ok().filter(|d| d.is_finite()) {
                    N::DoubleValue(d)
                } else {
                    self.err(
                        loc,
                        Some(field),
                        format!("comparator literal {s:?} is not a number"),
                    );
                    return None;
                }
            }
            Json::Object(map) => {
                let mut obj = Obj::new(map);
                match self.one_of(
                    &mut obj,
                    &["int_value", "double_value"],
                    loc,
                    "numeric value",
                ) {
                    Some(("int_value", inner)) => N::IntValue(self.integer(inner, loc, field)?),
                    Some((_, inner)) => N::DoubleValue(self.double(inner, loc, field)?),
                    None => {
                        self.err(loc, Some(field), "empty numeric value");
                        return None;
                    }
                }
            }
            other => {
                self.err(
                    loc,
                    Some(field),
                    format!("comparator literal must be a number, found {}", kind(other)),
                );
                return None;
            }
        };
        Some(pb::NumericValue { value: Some(value) })
    }

    pub(super) fn path(&mut self, v: &Json, loc: &Loc, field: &'static str) -> pb::AttributePath {
        let segments = |items: &Vec<Json>, this: &mut Self| -> Vec<String> {
            items.iter().map(|s| this.string(s, loc, field)).collect()
        };
        let path = match v {
            Json::String(s) => vec![s.clone()],
            Json::Array(items) => segments(items, self),
            Json::Object(map) => match map.get("path") {
                Some(Json::Array(items)) => segments(items, self),
                Some(Json::String(s)) => vec![s.clone()],
                // `{}` and `{path: null}` are empty paths: a validation error,
                // not a decode failure, as the spec asks.
                None | Some(Json::Null) => Vec::new(),
                Some(other) => {
                    self.err(
                        loc,
                        Some(field),
                        format!("path must be a list of strings, found {}", kind(other)),
                    );
                    Vec::new()
                }
            },
            Json::Null => Vec::new(),
            other => {
                self.err(
                    loc,
                    Some(field),
                    format!("expected an attribute path, found {}", kind(other)),
                );
                Vec::new()
            }
        };
        pb::AttributePath { path }
    }
}

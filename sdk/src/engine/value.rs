//! Field values as the engine sees them.
//!
//! A record view answers a selector with a [`FieldValue`] borrowed from the
//! record wherever it can, so the hot path allocates nothing.

use std::borrow::Cow;
use std::cmp::Ordering;

/// The value of a selected field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Raw bytes (trace and span ids). String matchers see the lowercase hex
    /// rendering; `equals` with `bytes_value`/`hex_value` compares the bytes.
    Bytes(Cow<'a, [u8]>),
    /// Arrays and maps: present for `exists`, never equal to anything.
    Opaque,
}

impl<'a> FieldValue<'a> {
    pub fn str(s: &'a str) -> Self {
        FieldValue::Str(Cow::Borrowed(s))
    }

    /// Empty strings and empty bytes count as missing (policy-format.md §3.2).
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            FieldValue::Str(s) => s.is_empty(),
            FieldValue::Bytes(b) => b.is_empty(),
            _ => false,
        }
    }

    /// The text string matchers run against, if the value has one.
    pub(crate) fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            FieldValue::Str(s) => Some(Cow::Borrowed(s.as_ref())),
            FieldValue::Bytes(b) => Some(Cow::Owned(hex::encode(b))),
            _ => None,
        }
    }

    /// The text a sample key hashes: strings as they are, ids as lowercase
    /// hex, numbers and booleans in their canonical rendering.
    pub(crate) fn key_text(&self) -> Option<Cow<'_, str>> {
        match self {
            FieldValue::Int(i) => Some(Cow::Owned(i.to_string())),
            FieldValue::Double(d) => Some(Cow::Owned(d.to_string())),
            FieldValue::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            FieldValue::Opaque => None,
            other => other.text(),
        }
    }

    pub(crate) fn number(&self) -> Option<Number> {
        match self {
            FieldValue::Int(i) => Some(Number::Int(*i)),
            FieldValue::Double(d) if !d.is_nan() => Some(Number::Double(*d)),
            _ => None,
        }
    }
}

/// A numeric operand or field value. Ints and doubles compare exactly, so
/// nanosecond timestamps beyond 2^53 keep their precision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Int(i64),
    Double(f64),
}

impl Number {
    /// Total order for non-NaN numbers across the two representations.
    pub(crate) fn cmp(self, other: Number) -> Ordering {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => a.cmp(&b),
            (Number::Double(a), Number::Double(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
            (Number::Int(a), Number::Double(b)) => cmp_int_double(a, b),
            (Number::Double(a), Number::Int(b)) => cmp_int_double(b, a).reverse(),
        }
    }
}

fn cmp_int_double(a: i64, b: f64) -> Ordering {
    // 2^63 as f64 is exact; anything at or beyond it exceeds every i64.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if b >= LIMIT {
        return Ordering::Less;
    }
    if b < -LIMIT {
        return Ordering::Greater;
    }
    let floor = b.floor();
    let whole = floor as i64;
    match a.cmp(&whole) {
        Ordering::Equal if b > floor => Ordering::Less,
        ord => ord,
    }
}

/// The key under which typed `equals` operands are indexed: ints and
/// integral doubles share one representation so `200` equals `200.0`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum TypedKey {
    Int(i64),
    Double(u64),
    Bool(bool),
    Bytes(Box<[u8]>),
}

impl TypedKey {
    pub(crate) fn from_double(d: f64) -> Option<TypedKey> {
        if d.is_nan() {
            return None;
        }
        if d.fract() == 0.0 && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&d) {
            return Some(TypedKey::Int(d as i64));
        }
        Some(TypedKey::Double(d.to_bits()))
    }

    /// The key of a field value, if typed equality can apply to it.
    pub(crate) fn of(value: &FieldValue<'_>) -> Option<TypedKey> {
        match value {
            FieldValue::Int(i) => Some(TypedKey::Int(*i)),
            FieldValue::Double(d) => TypedKey::from_double(*d),
            FieldValue::Bool(b) => Some(TypedKey::Bool(*b)),
            FieldValue::Bytes(b) => Some(TypedKey::Bytes(b.as_ref().into())),
            FieldValue::Str(_) | FieldValue::Opaque => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_and_double_compare_exactly() {
        assert_eq!(Number::Int(200).cmp(Number::Double(200.0)), Ordering::Equal);
        assert_eq!(Number::Int(200).cmp(Number::Double(200.5)), Ordering::Less);
        assert_eq!(
            Number::Int(201).cmp(Number::Double(200.5)),
            Ordering::Greater
        );
        assert_eq!(Number::Int(-3).cmp(Number::Double(-2.5)), Ordering::Less);
        // Beyond 2^53 an f64 conversion would call these equal.
        let big = 1_700_000_000_000_000_001_i64;
        assert_eq!(
            Number::Int(big).cmp(Number::Int(big - 1)),
            Ordering::Greater
        );
        assert_eq!(
            Number::Int(big).cmp(Number::Double(1.7e18)),
            Ordering::Greater
        );
        assert_eq!(
            Number::Int(i64::MAX).cmp(Number::Double(9.3e18)),
            Ordering::Less
        );
    }

    #[test]
    fn typed_keys_unify_integral_doubles() {
        assert_eq!(
            TypedKey::of(&FieldValue::Double(200.0)),
            Some(TypedKey::Int(200))
        );
        assert_ne!(
            TypedKey::of(&FieldValue::Double(200.5)),
            Some(TypedKey::Int(200))
        );
        assert_eq!(TypedKey::of(&FieldValue::Double(f64::NAN)), None);
        assert_eq!(TypedKey::of(&FieldValue::str("200")), None);
    }
}

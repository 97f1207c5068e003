//! Checks a whole export request before any policy sees it.
//!
//! Evaluation counts hits, misses and drops as it goes, so a payload found
//! malformed halfway would leave counters that describe records nobody
//! forwarded. One validating pass first, with no side effects, keeps that
//! simple: a payload is either walked completely or refused untouched (and
//! the caller forwards it as it came).
//!
//! The pass checks what a protobuf decoder of these messages (prost, the
//! collector) checks: framing, wire types of known fields, UTF-8 of known
//! string fields, and nesting depth. It allocates nothing and reads every
//! tag once; record values are not interpreted.

use crate::{DecodeError, Signal};

use super::schema::{KEY_VALUE, Kind, LOGS_REQUEST, METRICS_REQUEST, Schema, TRACES_REQUEST};
use super::wire::{self, Problem, Reader, Value, WireError};

/// Deepest message nesting accepted, counted from the request (depth 0).
/// Prost's default limit, so that everything accepted here also decodes
/// with the generated types; only AnyValue arrays and kvlists can nest that
/// deep.
pub const MAX_DEPTH: usize = 100;

/// What is wrong, in which message type, and the chain of fields leading
/// there (innermost first while unwinding).
struct Invalid {
    offset: usize,
    problem: String,
    message_type: Option<&'static str>,
    path: Vec<&'static str>,
}

impl Invalid {
    fn at(offset: usize, problem: impl Into<String>) -> Self {
        Invalid {
            offset,
            problem: problem.into(),
            message_type: None,
            path: Vec::new(),
        }
    }

    fn into_error(mut self) -> DecodeError {
        self.path.reverse();
        let place = if self.path.is_empty() {
            "at the top level".to_owned()
        } else {
            format!("at {}", self.path.join("."))
        };
        DecodeError::Protobuf(format!(
            "{}: {} ({place}, byte {})",
            self.message_type.unwrap_or("message"),
            self.problem,
            self.offset
        ))
    }
}

/// Validates an `Export{Logs,Trace,Metrics}ServiceRequest` of `signal`.
pub(crate) fn request(payload: &[u8], signal: Signal) -> Result<(), DecodeError> {
    let root = match signal {
        Signal::Log => &LOGS_REQUEST,
        Signal::Trace => &TRACES_REQUEST,
        Signal::Metric => &METRICS_REQUEST,
    };
    message(payload, 0, payload.len(), root, 0).map_err(|e| e.into_error())
}

/// A failed check; boxed so the `Ok` path passes a pointer-sized result.
type Checked = Result<(), Box<Invalid>>;

#[cold]
#[inline(never)]
fn invalid(offset: usize, problem: String) -> Box<Invalid> {
    Box::new(Invalid::at(offset, problem))
}

#[cold]
#[inline(never)]
fn framing(e: WireError) -> Box<Invalid> {
    invalid(e.offset, e.problem.to_string())
}

#[cold]
#[inline(never)]
fn wrong_type(start: usize, number: u64, value: Value, expected: &str) -> Box<Invalid> {
    invalid(
        start,
        format!(
            "field {number} has {}, expected {expected}",
            describe(value)
        ),
    )
}

#[cold]
#[inline(never)]
fn within(mut e: Box<Invalid>, schema: &'static Schema, number: u64) -> Box<Invalid> {
    e.message_type.get_or_insert(schema.name);
    match schema.field_names.get(number as usize) {
        Some(name) if !name.is_empty() => e.path.push(name),
        _ => e.path.push("(unknown field)"),
    }
    e
}

/// Strings are mostly ASCII: check that word by word before the general
/// UTF-8 validation.
#[inline]
fn is_utf8(bytes: &[u8]) -> bool {
    bytes.is_ascii() || std::str::from_utf8(bytes).is_ok()
}

/// Checks the shape nearly every attribute has, a key and a string value
/// with one-byte tags and lengths, in one go: `Some(valid UTF-8)`, or
/// `None` for any other shape (which the general walk then checks).
#[inline]
fn simple_string_attribute(kv: &[u8]) -> Option<bool> {
    let [0x0a, key_len, rest @ ..] = kv else {
        return None;
    };
    if *key_len >= 0x80 {
        return None;
    }
    let (key, rest) = rest.split_at_checked(usize::from(*key_len))?;
    let [0x12, value_len, 0x0a, string_len, string @ ..] = rest else {
        return None;
    };
    if *value_len >= 0x80
        || *string_len >= 0x80
        || usize::from(*value_len) != string.len() + 2
        || usize::from(*string_len) != string.len()
    {
        return None;
    }
    Some(is_utf8(key) && is_utf8(string))
}

/// Validates the message at `buf[pos..end]`. A tight loop over tags rather
/// than [`Reader`]: this pass reads every field of the payload.
fn message(
    buf: &[u8],
    mut pos: usize,
    end: usize,
    schema: &'static Schema,
    depth: usize,
) -> Checked {
    while pos < end {
        let start = pos;
        let key = wire::read_varint(buf, &mut pos, end).map_err(framing)?;
        let number = key >> 3;
        if number == 0 || number > 0x1fff_ffff {
            let problem = if number == 0 {
                Problem::FieldNumberZero
            } else {
                Problem::FieldNumberTooLarge(number)
            };
            return Err(within(
                framing(WireError {
                    offset: start,
                    problem,
                }),
                schema,
                number,
            ));
        }
        let kind = match schema.kinds.get(number as usize) {
            Some(kind) => *kind,
            None => Kind::Unknown,
        };
        let checked = match key & 7 {
            2 => {
                let len = wire::read_varint(buf, &mut pos, end).map_err(framing)?;
                let left = end - pos;
                if len > left as u64 {
                    return Err(within(
                        framing(WireError {
                            offset: start,
                            problem: Problem::Truncated { needed: len, left },
                        }),
                        schema,
                        number,
                    ));
                }
                let body = pos;
                pos += len as usize;
                length_delimited(buf, start, body, pos, number, kind, depth)
            }
            0 => {
                wire::read_varint(buf, &mut pos, end).map_err(framing)?;
                match kind {
                    Kind::Unknown | Kind::Varint | Kind::RepeatedVarint => Ok(()),
                    _ => Err(wrong_type(start, number, Value::Varint(0), expected(kind))),
                }
            }
            1 | 5 => {
                let (width, value) = if key & 7 == 1 {
                    (8, Value::Fixed64(0))
                } else {
                    (4, Value::Fixed32(0))
                };
                let left = end - pos;
                if left < width {
                    return Err(within(
                        framing(WireError {
                            offset: start,
                            problem: Problem::Truncated {
                                needed: width as u64,
                                left,
                            },
                        }),
                        schema,
                        number,
                    ));
                }
                pos += width;
                match (kind, width) {
                    (Kind::Unknown, _)
                    | (Kind::Fixed64 | Kind::RepeatedFixed64, 8)
                    | (Kind::Fixed32, 4) => Ok(()),
                    _ => Err(wrong_type(start, number, value, expected(kind))),
                }
            }
            _ => {
                // Groups, stray end-of-group markers, invalid wire types and
                // bad field numbers: the general reader knows them all.
                let mut reader = Reader::range(buf, start, end);
                let field = reader.read_field().map_err(framing)?;
                pos = field.end;
                match kind {
                    Kind::Unknown => Ok(()),
                    _ => Err(wrong_type(start, number, field.value, expected(kind))),
                }
            }
        };
        if let Err(e) = checked {
            return Err(within(e, schema, number));
        }
    }
    Ok(())
}

fn expected(kind: Kind) -> &'static str {
    match kind {
        Kind::Unknown => "anything",
        Kind::Varint => "a varint",
        Kind::Fixed64 => "a fixed64",
        Kind::Fixed32 => "a fixed32",
        Kind::Str | Kind::Bytes | Kind::Message(_) => "a length-delimited value",
        Kind::RepeatedFixed64 => "fixed64 values",
        Kind::RepeatedVarint => "varints",
    }
}

#[inline]
fn length_delimited(
    buf: &[u8],
    start: usize,
    body: usize,
    end: usize,
    number: u64,
    kind: Kind,
    depth: usize,
) -> Checked {
    let content = buf.get(body..end).unwrap_or_default();
    match kind {
        Kind::Unknown | Kind::Bytes => Ok(()),
        Kind::Str => {
            if is_utf8(content) {
                Ok(())
            } else {
                let valid = std::str::from_utf8(content).map_or_else(|e| e.valid_up_to(), |_| 0);
                Err(invalid(
                    body + valid,
                    "string is not valid UTF-8".to_owned(),
                ))
            }
        }
        Kind::Message(inner) => {
            if std::ptr::eq(inner, &KEY_VALUE)
                && depth + 2 < MAX_DEPTH
                && simple_string_attribute(content) == Some(true)
            {
                return Ok(());
            }
            if depth + 1 >= MAX_DEPTH {
                return Err(invalid(
                    start,
                    format!(
                        "messages nested deeper than {MAX_DEPTH} levels (AnyValue arrays or kvlists nested too deep)"
                    ),
                ));
            }
            message(buf, body, end, inner, depth + 1)
        }
        Kind::RepeatedFixed64 => {
            if content.len().is_multiple_of(8) {
                Ok(())
            } else {
                Err(invalid(
                    start,
                    "packed fixed64 values are not a multiple of 8 bytes".to_owned(),
                ))
            }
        }
        Kind::RepeatedVarint => {
            let mut pos = 0;
            while pos < content.len() {
                if let Err(e) = wire::read_varint(content, &mut pos, content.len()) {
                    return Err(invalid(
                        body + e.offset,
                        format!("packed varints: {}", e.problem),
                    ));
                }
            }
            Ok(())
        }
        Kind::Varint | Kind::Fixed64 | Kind::Fixed32 => {
            Err(wrong_type(start, number, Value::Len, expected(kind)))
        }
    }
}

fn describe(value: Value) -> &'static str {
    match value {
        Value::Varint(_) => "a varint",
        Value::Fixed64(_) => "a fixed64",
        Value::Fixed32(_) => "a fixed32",
        Value::Len => "a length-delimited value",
        Value::Group => "a group",
    }
}

//! The protobuf wire format, read in place and written by hand.
//!
//! A [`Reader`] walks the fields of one message inside a borrowed buffer and
//! reports each field's value together with where it sits (absolute
//! offsets), so callers can copy a field's bytes unchanged or skip it. Only
//! the framing is checked here; what a field *means* is the caller's
//! business.

use std::fmt;

/// Deepest nesting of groups inside unknown fields that is skipped.
const MAX_GROUP_DEPTH: usize = 100;

/// A field's value as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    /// Length-delimited: the content is `buf[body..end]` of the field.
    Len,
    /// A (deprecated) group; only ever skipped.
    Group,
}

/// One field of a message: its number, value and position in the buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub(crate) number: u32,
    pub(crate) value: Value,
    /// Where the tag starts.
    pub(crate) start: usize,
    /// Where the value starts (for `Len`, after the length prefix).
    pub(crate) body: usize,
    /// One past the field's last byte.
    pub(crate) end: usize,
}

impl Field {
    /// The whole field, tag included: what a copy of the field takes.
    pub(crate) fn range(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }

    /// The content of a length-delimited field (empty for other kinds).
    pub(crate) fn content<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        match self.value {
            Value::Len => buf.get(self.body..self.end).unwrap_or_default(),
            _ => &[],
        }
    }

    pub(crate) fn is_len(&self) -> bool {
        matches!(self.value, Value::Len)
    }
}

/// Why a buffer is not well-formed protobuf, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError {
    /// Offset in the buffer being read.
    pub(crate) offset: usize,
    pub(crate) problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    TruncatedVarint,
    VarintTooLong,
    FieldNumberZero,
    FieldNumberTooLarge(u64),
    InvalidWireType(u8),
    Truncated { needed: u64, left: usize },
    UnexpectedEndGroup(u32),
    UnterminatedGroup(u32),
    GroupsTooDeep,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::TruncatedVarint => write!(f, "varint cut off by the end of its message"),
            Problem::VarintTooLong => write!(f, "varint longer than 10 bytes"),
            Problem::FieldNumberZero => write!(f, "field number 0"),
            Problem::FieldNumberTooLarge(n) => {
                write!(f, "field number {n} above the maximum 536870911")
            }
            Problem::InvalidWireType(t) => write!(f, "invalid wire type {t}"),
            Problem::Truncated { needed, left } => write!(
                f,
                "field needs {needed} bytes but its message has {left} left (truncated payload?)"
            ),
            Problem::UnexpectedEndGroup(n) => write!(f, "end of group {n} without its start"),
            Problem::UnterminatedGroup(n) => write!(f, "group {n} is never closed"),
            Problem::GroupsTooDeep => {
                write!(f, "groups nested deeper than {MAX_GROUP_DEPTH} levels")
            }
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.problem, self.offset)
    }
}

/// Decodes a varint at `*pos`, advancing past it. Errors leave `*pos`
/// where the varint began.
#[inline]
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize, limit: usize) -> Result<u64, WireError> {
    let start = *pos;
    let Some(&first) = buf.get(start).filter(|_| start < limit) else {
        return Err(WireError {
            offset: start,
            problem: Problem::TruncatedVarint,
        });
    };
    if first < 0x80 {
        *pos = start + 1;
        return Ok(u64::from(first));
    }
    let mut value = 0u64;
    for i in 0..10 {
        let at = start + i;
        let Some(&byte) = buf.get(at).filter(|_| at < limit) else {
            return Err(WireError {
                offset: start,
                problem: Problem::TruncatedVarint,
            });
        };
        if i == 9 && byte > 1 {
            return Err(WireError {
                offset: start,
                problem: Problem::VarintTooLong,
            });
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            *pos = at + 1;
            return Ok(value);
        }
    }
    Err(WireError {
        offset: start,
        problem: Problem::VarintTooLong,
    })
}

/// Walks the fields of the message at `buf[start..end]`.
///
/// An iterator of `Result`s: after the first error it yields nothing more.
#[derive(Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// A reader over the whole of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    /// A reader over the content of `field`, a length-delimited field of
    /// this reader's buffer. Offsets stay those of the whole buffer.
    pub(crate) fn nested(&self, field: &Field) -> Reader<'a> {
        let (pos, end) = match field.value {
            Value::Len => (field.body, field.end),
            _ => (field.end, field.end),
        };
        Reader {
            buf: self.buf,
            pos,
            end,
        }
    }

    /// The buffer the offsets refer to.
    pub(crate) fn buf(&self) -> &'a [u8] {
        self.buf
    }

    fn fail(&mut self, offset: usize, problem: Problem) -> Option<Result<Field, WireError>> {
        self.pos = self.end;
        Some(Err(WireError { offset, problem }))
    }

    fn read_field(&mut self) -> Result<Field, WireError> {
        let start = self.pos;
        let key = read_varint(self.buf, &mut self.pos, self.end)?;
        let number = key >> 3;
        if number == 0 {
            return Err(WireError {
                offset: start,
                problem: Problem::FieldNumberZero,
            });
        }
        if number > 0x1fff_ffff {
            return Err(WireError {
                offset: start,
                problem: Problem::FieldNumberTooLarge(number),
            });
        }
        let number = number as u32;
        let left = self.end - self.pos;
        let take = |n: u64, pos: &mut usize| -> Result<(), WireError> {
            if n > left as u64 {
                return Err(WireError {
                    offset: start,
                    problem: Problem::Truncated { needed: n, left },
                });
            }
            *pos += n as usize;
            Ok(())
        };
        let body;
        let value = match (key & 7) as u8 {
            0 => {
                body = self.pos;
                Value::Varint(read_varint(self.buf, &mut self.pos, self.end)?)
            }
            1 => {
                body = self.pos;
                take(8, &mut self.pos)?;
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&self.buf[body..self.pos]);
                Value::Fixed64(u64::from_le_bytes(bytes))
            }
            2 => {
                let len = read_varint(self.buf, &mut self.pos, self.end)?;
                let left = self.end - self.pos;
                body = self.pos;
                if len > left as u64 {
                    return Err(WireError {
                        offset: start,
                        problem: Problem::Truncated { needed: len, left },
                    });
                }
                self.pos += len as usize;
                Value::Len
            }
            3 => {
                body = self.pos;
                self.skip_group(number, 1)?;
                Value::Group
            }
            4 => {
                return Err(WireError {
                    offset: start,
                    problem: Problem::UnexpectedEndGroup(number),
                });
            }
            5 => {
                body = self.pos;
                take(4, &mut self.pos)?;
                let mut bytes = [0u8; 4];
                bytes.copy_from_slice(&self.buf[body..self.pos]);
                Value::Fixed32(u32::from_le_bytes(bytes))
            }
            other => {
                return Err(WireError {
                    offset: start,
                    problem: Problem::InvalidWireType(other),
                });
            }
        };
        Ok(Field {
            number,
            value,
            start,
            body,
            end: self.pos,
        })
    }

    /// Skips the fields of a group up to and including its end marker.
    fn skip_group(&mut self, number: u32, depth: usize) -> Result<(), WireError> {
        let start = self.pos;
        if depth > MAX_GROUP_DEPTH {
            return Err(WireError {
                offset: start,
                problem: Problem::GroupsTooDeep,
            });
        }
        loop {
            if self.pos >= self.end {
                return Err(WireError {
                    offset: start,
                    problem: Problem::UnterminatedGroup(number),
                });
            }
            let at = self.pos;
            let key = read_varint(self.buf, &mut self.pos, self.end)?;
            if key >> 3 == 0 {
                return Err(WireError {
                    offset: at,
                    problem: Problem::FieldNumberZero,
                });
            }
            if key & 7 == 4 {
                if key >> 3 == u64::from(number) {
                    return Ok(());
                }
                return Err(WireError {
                    offset: at,
                    problem: Problem::UnexpectedEndGroup((key >> 3) as u32),
                });
            }
            if key & 7 == 3 {
                self.skip_group((key >> 3) as u32, depth + 1)?;
                continue;
            }
            // Any other field: reread it as a field from its tag.
            self.pos = at;
            self.read_field()?;
        }
    }
}

impl Iterator for Reader<'_> {
    type Item = Result<Field, WireError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let start = self.pos;
        match self.read_field() {
            Ok(field) => Some(Ok(field)),
            Err(e) => {
                let offset = e.offset.max(start);
                self.fail(offset, e.problem)
            }
        }
    }
}

/// The fields of a buffer that [`crate::protobuf::validate`] accepted: any
/// error (impossible after validation) simply ends the walk.
pub(crate) fn fields(buf: &[u8]) -> impl Iterator<Item = Field> + '_ {
    Reader::new(buf).map_while(Result::ok)
}

/// The fields of the message held by `field` (a length-delimited field of
/// `buf`), with offsets in `buf`.
pub(crate) fn fields_in<'b>(buf: &'b [u8], field: &Field) -> impl Iterator<Item = Field> + 'b {
    let base = field.body;
    fields(field.content(buf)).map(move |f| Field {
        start: base + f.start,
        body: base + f.body,
        end: base + f.end,
        ..f
    })
}

/// The content of the last occurrence of length-delimited field `number`
/// (the value protobuf gives a repeated singular field), with its offset.
pub(crate) fn last_len(buf: &[u8], number: u32) -> Option<&[u8]> {
    let mut found = None;
    for f in fields(buf) {
        if f.number == number && f.is_len() {
            found = Some(f.body..f.end);
        }
    }
    found.and_then(|r| buf.get(r))
}

// ---------------------------------------------------------------- writing

pub(crate) fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits, at least 1.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The tag of a length-delimited field.
pub(crate) fn len_key(number: u32) -> u64 {
    (u64::from(number) << 3) | 2
}

/// Bytes a length-delimited field of `len` content bytes takes.
pub(crate) fn len_field_size(number: u32, len: usize) -> usize {
    varint_len(len_key(number)) + varint_len(len as u64) + len
}

pub(crate) fn put_len_header(out: &mut Vec<u8>, number: u32, len: usize) {
    put_varint(out, len_key(number));
    put_varint(out, len as u64);
}

pub(crate) fn put_len_field(out: &mut Vec<u8>, number: u32, content: &[u8]) {
    put_len_header(out, number, content.len());
    out.extend_from_slice(content);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_sizes_agree() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut pos = 0;
            assert_eq!(read_varint(&out, &mut pos, out.len()), Ok(v));
            assert_eq!(pos, out.len());
        }
    }

    #[test]
    fn overlong_and_cut_varints_are_errors() {
        let eleven = [0xffu8; 11];
        let mut pos = 0;
        assert_eq!(
            read_varint(&eleven, &mut pos, 11).map_err(|e| e.problem),
            Err(Problem::VarintTooLong)
        );
        let cut = [0x80u8, 0x80];
        let mut pos = 0;
        assert_eq!(
            read_varint(&cut, &mut pos, 2).map_err(|e| e.problem),
            Err(Problem::TruncatedVarint)
        );
    }

    #[test]
    fn reader_reports_positions_and_skips_groups() {
        // field 1 varint 150; field 2 "hi"; group 3 { field 1 fixed32 } ; field 4 fixed64
        let buf = [
            0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x1b, 0x0d, 1, 2, 3, 4, 0x1c, 0x21, 1, 2, 3,
            4, 5, 6, 7, 8,
        ];
        let got: Vec<Field> = Reader::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].value, Value::Varint(150));
        assert_eq!(got[1].content(&buf), b"hi");
        assert_eq!(got[1].range(), 3..7);
        assert_eq!(got[2].value, Value::Group);
        assert_eq!(got[2].range(), 7..14);
        assert_eq!(got[3].value, Value::Fixed64(0x0807060504030201));
    }

    #[test]
    fn reader_stops_at_the_first_error() {
        let buf = [0x12, 0x05, b'a'];
        let mut r = Reader::new(&buf);
        let err = r.next().unwrap().unwrap_err();
        assert_eq!(err.problem, Problem::Truncated { needed: 5, left: 1 });
        assert!(r.next().is_none());
    }
}

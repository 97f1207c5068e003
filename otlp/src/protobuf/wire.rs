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

#[cold]
#[inline(never)]
fn fail(offset: usize, problem: Problem) -> WireError {
    WireError { offset, problem }
}

/// Decodes a varint at `*pos` (below `limit`), advancing past it. Errors
/// leave `*pos` where the varint began.
#[inline]
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize, limit: usize) -> Result<u64, WireError> {
    let start = *pos;
    // Tags and most lengths and values take one byte.
    if start < limit
        && let Some(&byte) = buf.get(start)
        && byte < 0x80
    {
        *pos = start + 1;
        return Ok(u64::from(byte));
    }
    read_long_varint(buf, pos, limit)
}

#[inline(never)]
fn read_long_varint(buf: &[u8], pos: &mut usize, limit: usize) -> Result<u64, WireError> {
    let start = *pos;
    let window = buf.get(start..limit.min(buf.len())).unwrap_or_default();
    let mut value = 0u64;
    for (i, &byte) in window.iter().take(10).enumerate() {
        if i == 9 && byte > 1 {
            return Err(fail(start, Problem::VarintTooLong));
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            *pos = start + i + 1;
            return Ok(value);
        }
    }
    if window.len() >= 10 {
        Err(fail(start, Problem::VarintTooLong))
    } else {
        Err(fail(start, Problem::TruncatedVarint))
    }
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

    /// A reader over `buf[start..end]` (offsets stay those of `buf`).
    pub(crate) fn range(buf: &'a [u8], start: usize, end: usize) -> Self {
        Reader {
            buf,
            pos: start,
            end: end.min(buf.len()),
        }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.end
    }

    /// Advances over `n` bytes, which must be there.
    #[inline]
    fn take(&mut self, n: u64, field_start: usize) -> Result<usize, WireError> {
        let at = self.pos;
        let left = self.end - at;
        if n > left as u64 {
            return Err(fail(field_start, Problem::Truncated { needed: n, left }));
        }
        self.pos = at + n as usize;
        Ok(at)
    }

    /// Reads the next field; on error the reader's position is unspecified.
    ///
    /// The common shapes (a one-byte tag with a length below 16 KiB, a
    /// one-byte varint or a fixed value) are read inline; everything else, errors included,
    /// goes through [`Reader::read_any_field`].
    #[inline(always)]
    pub(crate) fn read_field(&mut self) -> Result<Field, WireError> {
        let start = self.pos;
        let (Some(&key), Some(&next)) = (self.buf.get(start), self.buf.get(start + 1)) else {
            return self.read_any_field();
        };
        if !(8..0x80).contains(&key) || start + 1 >= self.end {
            return self.read_any_field();
        }
        let number = u32::from(key >> 3);
        let value_at = start + 1;
        let (body, end, value) = match key & 7 {
            2 => {
                // Lengths up to 16 KiB (two bytes) cover nearly every record.
                let (body, len) = if next < 0x80 {
                    (value_at + 1, usize::from(next))
                } else {
                    match self.buf.get(value_at + 1) {
                        Some(&high) if high < 0x80 => (
                            value_at + 2,
                            usize::from(next & 0x7f) | usize::from(high) << 7,
                        ),
                        _ => return self.read_any_field(),
                    }
                };
                let end = body + len;
                if end > self.end {
                    return self.read_any_field();
                }
                (body, end, Value::Len)
            }
            0 if next < 0x80 => (value_at, value_at + 1, Value::Varint(u64::from(next))),
            1 => match self.buf.get(value_at..value_at + 8) {
                Some(bytes) if value_at + 8 <= self.end => {
                    let value = u64::from_le_bytes(bytes.try_into().unwrap_or_default());
                    (value_at, value_at + 8, Value::Fixed64(value))
                }
                _ => return self.read_any_field(),
            },
            5 => match self.buf.get(value_at..value_at + 4) {
                Some(bytes) if value_at + 4 <= self.end => {
                    let value = u32::from_le_bytes(bytes.try_into().unwrap_or_default());
                    (value_at, value_at + 4, Value::Fixed32(value))
                }
                _ => return self.read_any_field(),
            },
            _ => return self.read_any_field(),
        };
        self.pos = end;
        Ok(Field {
            number,
            value,
            start,
            body,
            end,
        })
    }

    /// Reads any field from its tag: long tags, lengths and varints,
    /// groups, and every malformed case.
    #[inline(never)]
    fn read_any_field(&mut self) -> Result<Field, WireError> {
        let start = self.pos;
        let key = read_varint(self.buf, &mut self.pos, self.end)?;
        let number = key >> 3;
        if number == 0 {
            return Err(fail(start, Problem::FieldNumberZero));
        }
        if number > 0x1fff_ffff {
            return Err(fail(start, Problem::FieldNumberTooLarge(number)));
        }
        let number = number as u32;
        let (body, value) = match key & 7 {
            0 => {
                let body = self.pos;
                (
                    body,
                    Value::Varint(read_varint(self.buf, &mut self.pos, self.end)?),
                )
            }
            2 => {
                let len = read_varint(self.buf, &mut self.pos, self.end)?;
                (self.take(len, start)?, Value::Len)
            }
            1 => {
                let body = self.take(8, start)?;
                let bytes = self.buf.get(body..body + 8).unwrap_or_default();
                let value = u64::from_le_bytes(bytes.try_into().unwrap_or_default());
                (body, Value::Fixed64(value))
            }
            5 => {
                let body = self.take(4, start)?;
                let bytes = self.buf.get(body..body + 4).unwrap_or_default();
                let value = u32::from_le_bytes(bytes.try_into().unwrap_or_default());
                (body, Value::Fixed32(value))
            }
            3 => {
                let body = self.pos;
                self.skip_group(number, 1)?;
                (body, Value::Group)
            }
            4 => return Err(fail(start, Problem::UnexpectedEndGroup(number))),
            other => return Err(fail(start, Problem::InvalidWireType(other as u8))),
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
    #[inline(never)]
    fn skip_group(&mut self, number: u32, depth: usize) -> Result<(), WireError> {
        let start = self.pos;
        if depth > MAX_GROUP_DEPTH {
            return Err(fail(start, Problem::GroupsTooDeep));
        }
        loop {
            if self.pos >= self.end {
                return Err(fail(start, Problem::UnterminatedGroup(number)));
            }
            let at = self.pos;
            let key = read_varint(self.buf, &mut self.pos, self.end)?;
            if key >> 3 == 0 {
                return Err(fail(at, Problem::FieldNumberZero));
            }
            if key & 7 == 4 {
                if key >> 3 == u64::from(number) {
                    return Ok(());
                }
                return Err(fail(at, Problem::UnexpectedEndGroup((key >> 3) as u32)));
            }
            if key & 7 == 3 {
                self.skip_group((key >> 3) as u32, depth + 1)?;
                continue;
            }
            // Any other field: reread it as a field from its tag.
            self.pos = at;
            self.read_any_field()?;
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
        let field = self.read_field();
        if field.is_err() {
            self.pos = self.end;
        }
        Some(field)
    }
}

/// Fields of a buffer that validation accepted: any error (impossible
/// there) simply ends the walk.
pub(crate) struct Fields<'a>(Reader<'a>);

impl Iterator for Fields<'_> {
    type Item = Field;

    #[inline(always)]
    fn next(&mut self) -> Option<Field> {
        if self.0.at_end() {
            return None;
        }
        match self.0.read_field() {
            Ok(field) => Some(field),
            Err(_) => {
                self.0.pos = self.0.end;
                None
            }
        }
    }
}

/// The fields of a buffer that [`crate::protobuf::validate`] accepted.
#[inline]
pub(crate) fn fields(buf: &[u8]) -> Fields<'_> {
    Fields(Reader::new(buf))
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

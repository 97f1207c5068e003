//! A body that arrives in chunks, read as lines.
//!
//! The filter and the inventory read the same scrape bodies and must agree
//! on what a line is, however the body was chunked: both read through this
//! reader. A line is at most `max_line_bytes` long, LF not counted; the
//! start of a line is carried across chunks up to that size, so memory
//! stays bounded whatever the body. A longer line is never gathered: it is
//! reported as it arrives, its start and then the rest up to its LF, and
//! what becomes of its bytes is the caller's policy (the filter streams
//! them, or holds them until the LF when its input may be cut; the
//! inventory skips them).
//!
//! Lines found whole in a chunk come out as ranges of it, so a caller that
//! owns the chunk as [`Bytes`] can pass them on without a copy.

use bytes::{Bytes, BytesMut};

/// What the reader found next in a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A whole line at `start..end` of the chunk, its LF at `end - 1`.
    Line { start: usize, end: usize },
    /// A whole line that began in an earlier chunk, ending with its LF.
    Joined(Bytes),
    /// The start of a line longer than `max_line_bytes`: what earlier
    /// chunks held of it (`carried`), then `start..end` of this chunk.
    /// `ends` when the line's LF is in the chunk (at `end - 1`); otherwise
    /// the rest follows as [`Piece::LongMore`].
    Long {
        carried: Option<Bytes>,
        start: usize,
        end: usize,
        ends: bool,
    },
    /// More of a long line begun in an earlier chunk, at `start..end` of
    /// this one; `ends` as for [`Piece::Long`].
    LongMore {
        start: usize,
        end: usize,
        ends: bool,
    },
}

/// What the body left unfinished when it ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Tail {
    /// A last line without LF, at most `max_line_bytes` and never empty.
    Line(BytesMut),
    /// A long line whose LF never came.
    Long,
}

/// Splits chunks into lines, carrying a partial line from one chunk to the
/// next.
#[derive(Debug)]
pub struct LineReader {
    max_line_bytes: usize,
    /// A line begun in an earlier chunk (at most `max_line_bytes`).
    carry: BytesMut,
    /// Inside a long line: the next chunk continues it up to its LF.
    in_long: bool,
}

impl LineReader {
    pub fn new(max_line_bytes: usize) -> Self {
        LineReader {
            max_line_bytes,
            carry: BytesMut::new(),
            in_long: false,
        }
    }

    /// True between the start of a long line and its LF.
    pub fn in_long_line(&self) -> bool {
        self.in_long
    }

    /// The next piece of `chunk` from `*pos` on, advancing `*pos` past it;
    /// `None` once the chunk is used up (its unfinished last line is then
    /// carried). Call it until `None` before passing the next chunk; a
    /// caller that stops early must not pass another chunk.
    #[inline(always)]
    pub fn next(&mut self, chunk: &[u8], pos: &mut usize) -> Option<Piece> {
        let start = *pos;
        let rest = chunk.get(start..).filter(|rest| !rest.is_empty())?;
        let lf = memchr::memchr(b'\n', rest);
        let max = self.max_line_bytes;
        if self.in_long {
            self.in_long = lf.is_none();
            let end = lf.map_or(chunk.len(), |i| start + i + 1);
            *pos = end;
            return Some(Piece::LongMore {
                start,
                end,
                ends: lf.is_some(),
            });
        }
        if !self.carry.is_empty() {
            return self.join(chunk.len(), rest, lf, pos);
        }
        match lf {
            Some(i) => {
                let end = start + i + 1;
                *pos = end;
                Some(if i > max {
                    Piece::Long {
                        carried: None,
                        start,
                        end,
                        ends: true,
                    }
                } else {
                    Piece::Line { start, end }
                })
            }
            None => {
                *pos = chunk.len();
                if rest.len() > max {
                    self.in_long = true;
                    Some(Piece::Long {
                        carried: None,
                        start,
                        end: chunk.len(),
                        ends: false,
                    })
                } else {
                    self.carry.extend_from_slice(rest);
                    None
                }
            }
        }
    }

    /// Continues the carried line with `rest`, the chunk from `*pos` on.
    /// Once per chunk at most: kept out of the per-line path.
    #[cold]
    #[inline(never)]
    fn join(
        &mut self,
        chunk_len: usize,
        rest: &[u8],
        lf: Option<usize>,
        pos: &mut usize,
    ) -> Option<Piece> {
        let start = *pos;
        let carried = self.carry.len();
        let max = self.max_line_bytes;
        match lf {
            Some(i) if carried + i <= max => {
                self.carry.extend_from_slice(&rest[..=i]);
                *pos = start + i + 1;
                Some(Piece::Joined(self.carry.split().freeze()))
            }
            Some(i) => {
                *pos = start + i + 1;
                Some(Piece::Long {
                    carried: Some(self.carry.split().freeze()),
                    start,
                    end: start + i + 1,
                    ends: true,
                })
            }
            None if carried + rest.len() <= max => {
                self.carry.extend_from_slice(rest);
                *pos = chunk_len;
                None
            }
            None => {
                self.in_long = true;
                *pos = chunk_len;
                Some(Piece::Long {
                    carried: Some(self.carry.split().freeze()),
                    start,
                    end: chunk_len,
                    ends: false,
                })
            }
        }
    }

    /// The body ended: what it left unfinished, if anything. The reader is
    /// then empty.
    pub fn finish(&mut self) -> Option<Tail> {
        if std::mem::take(&mut self.in_long) {
            self.carry.clear();
            return Some(Tail::Long);
        }
        (!self.carry.is_empty()).then(|| Tail::Line(self.carry.split()))
    }

    /// The caller stopped reading mid-body: the unfinished line is not a
    /// line, and is forgotten.
    pub fn cut(&mut self) {
        self.carry.clear();
        self.in_long = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything the reader reports for `chunks`, with the chunk ranges
    /// resolved to bytes: whole lines, and each long line as one piece
    /// (marked `Long`), then the tail.
    fn read(max: usize, chunks: &[&[u8]]) -> (Vec<(bool, Vec<u8>)>, Option<Tail>) {
        let mut reader = LineReader::new(max);
        let mut out: Vec<(bool, Vec<u8>)> = Vec::new();
        for chunk in chunks {
            let mut pos = 0;
            while let Some(piece) = reader.next(chunk, &mut pos) {
                match piece {
                    Piece::Line { start, end } => {
                        assert_eq!(chunk[end - 1], b'\n');
                        out.push((false, chunk[start..end].to_vec()));
                    }
                    Piece::Joined(line) => {
                        assert_eq!(line.last(), Some(&b'\n'));
                        out.push((false, line.to_vec()));
                    }
                    Piece::Long {
                        carried,
                        start,
                        end,
                        ends,
                    } => {
                        let mut line = carried.map(|c| c.to_vec()).unwrap_or_default();
                        line.extend_from_slice(&chunk[start..end]);
                        assert_eq!(ends, line.last() == Some(&b'\n'));
                        assert_eq!(reader.in_long_line(), !ends);
                        out.push((true, line));
                    }
                    Piece::LongMore { start, end, ends } => {
                        let (long, line) = out.last_mut().expect("a long line was started");
                        assert!(*long);
                        line.extend_from_slice(&chunk[start..end]);
                        assert_eq!(ends, chunk[end - 1] == b'\n');
                    }
                }
            }
            assert_eq!(pos, chunk.len(), "every chunk is used up");
        }
        (out, reader.finish())
    }

    #[test]
    fn chunking_does_not_change_the_lines() {
        let body = b"a 1\n\nlonger_name{x=\"y\"} 2\nb 3\r\nthe_last";
        let (whole, tail) = read(32, &[body]);
        assert_eq!(
            whole,
            [
                (false, b"a 1\n".to_vec()),
                (false, b"\n".to_vec()),
                (false, b"longer_name{x=\"y\"} 2\n".to_vec()),
                (false, b"b 3\r\n".to_vec()),
            ]
        );
        assert_eq!(tail, Some(Tail::Line(BytesMut::from(&b"the_last"[..]))));
        for size in 1..body.len() {
            let chunks: Vec<&[u8]> = body.chunks(size).collect();
            let (lines, split_tail) = read(32, &chunks);
            assert_eq!(lines, whole, "chunks of {size}");
            assert_eq!(split_tail, tail, "chunks of {size}");
        }
    }

    #[test]
    fn long_lines_are_reported_as_they_arrive_and_never_carried() {
        let long = format!("big{{v=\"{}\"}} 1\n", "x".repeat(40));
        let body = format!("a 1\n{long}b 2\n{long}");
        for size in 1..body.len() {
            let chunks: Vec<&[u8]> = body.as_bytes().chunks(size).collect();
            let (lines, tail) = read(16, &chunks);
            let expect = [
                (false, b"a 1\n".to_vec()),
                (true, long.as_bytes().to_vec()),
                (false, b"b 2\n".to_vec()),
                (true, long.as_bytes().to_vec()),
            ];
            assert_eq!(lines, expect, "chunks of {size}");
            assert_eq!(tail, None);
        }
        // A line exactly at the limit is a line; one byte more is long.
        let (lines, _) = read(4, &[b"abcd\nabcde\n"]);
        assert_eq!(
            lines,
            [(false, b"abcd\n".to_vec()), (true, b"abcde\n".to_vec())]
        );
        let (lines, _) = read(4, &[b"ab", b"cd\nab", b"cde\n"]);
        assert_eq!(
            lines,
            [(false, b"abcd\n".to_vec()), (true, b"abcde\n".to_vec())]
        );
    }

    #[test]
    fn the_end_reports_what_was_unfinished() {
        let (_, tail) = read(4, &[b"ok\nabcdefgh"]);
        assert_eq!(tail, Some(Tail::Long));
        let (_, tail) = read(4, &[b"ok\n"]);
        assert_eq!(tail, None);

        let mut reader = LineReader::new(4);
        let mut pos = 0;
        assert_eq!(
            reader.next(b"ok\nhalf", &mut pos),
            Some(Piece::Line { start: 0, end: 3 })
        );
        assert_eq!(reader.next(b"ok\nhalf", &mut pos), None);
        reader.cut();
        assert_eq!(reader.finish(), None, "a cut line is forgotten");
        let mut pos = 0;
        reader.next(b"abcdefgh", &mut pos);
        assert!(reader.in_long_line());
        reader.cut();
        assert!(!reader.in_long_line());
        let mut pos = 0;
        assert_eq!(
            reader.next(b"x 1\n", &mut pos),
            Some(Piece::Line { start: 0, end: 4 }),
            "after a cut, a chunk starts a line"
        );
        // An empty chunk changes nothing.
        let mut pos = 0;
        assert_eq!(reader.next(b"", &mut pos), None);
    }
}

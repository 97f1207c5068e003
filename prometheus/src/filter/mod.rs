//! The streaming scrape filter: exposition chunks in, kept byte ranges out.
//!
//! The filter is synchronous and knows nothing of HTTP: the proxy feeds it
//! decoded chunks and sends on what it returns. Kept lines leave as slices
//! of the input chunk (runs of adjacent kept lines as one slice), so nothing
//! is re-serialised. Memory per scrape is the line buffer, the metadata
//! buffer of one family and a small decision memo, whatever the scrape's
//! size.
//!
//! What it guarantees (see `docs/spec/prometheus-edge.md`): HELP/TYPE/UNIT leave
//! only in front of their family's first kept line; all lines of one
//! histogram or summary series get one decision, counted once; a line longer
//! than the line buffer passes whole and unfiltered; the output cap cuts on
//! a line boundary; OpenMetrics output ends with exactly one `# EOF`. With
//! [`FilterOptions::hold_long_lines`] the input cap also cuts on a line
//! boundary: a long line is held until its LF, so a cut inside it drops it
//! whole instead of leaving half of it sent.
//!
//! Shadow policies never change what leaves: a kept series that a shadow
//! policy would drop is counted on that policy (series once, bytes per
//! line) and sent. A series the enforced set drops is not counted as a
//! shadow drop (the shadow policy still gets its hit or miss), so shadow
//! figures are what enforcing the policy would remove on top of what is
//! removed already.
//!
//! A scrape counts (`Engine::record_scrape`) once, when its response is
//! complete: at [`ScrapeFilter::finish`] or at a successful
//! [`ScrapeFilter::cut_input`]. A scrape aborted mid-body (upstream error,
//! timeout, [`CutMidLine`]) does not count, though the series evaluated
//! before the abort do, as no filter can take back a hit.
//!
//! What a scrape drops (series and bytes, per policy) is added to the
//! policies' counters in one go when the scrape ends, together with the
//! scrape itself. Added line by line, a statistics report taken in the
//! middle of a scrape would carry that scrape's bytes without the scrape,
//! and per-scrape figures (impact) would be off by up to one scrape.

mod series;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use rustc_hash::FxBuildHasher;
use tero_proto::policy::MetricField;
use tero_sdk::Engine;
use tero_sdk::engine::{MetricSelector, SeriesDecision};

use crate::exposition::{
    FamilyType, Format, Line, LineReader, MetaKind, Metadata, Piece, Sample, Tail,
};
pub use series::{FamilyFacts, Resource, SeriesView};

const EOF_LINE: &[u8] = b"# EOF\n";
/// Distinct multi-line series remembered per family (non-contiguous lines).
const MEMO_CAPACITY: usize = 4096;

/// Limits of one scrape filter.
#[derive(Debug, Clone, Copy)]
pub struct FilterOptions {
    pub format: Format,
    /// A line longer than this (without its LF) passes whole, unfiltered.
    pub max_line_bytes: usize,
    /// Pending metadata beyond this is emitted unfiltered.
    pub max_metadata_bytes: usize,
    /// Uncompressed output cap; 0 = unlimited.
    pub max_output_bytes: u64,
    /// Hold a line longer than `max_line_bytes` until its LF instead of
    /// streaming it, so that [`ScrapeFilter::cut_input`] can always cut on
    /// a line boundary. Costs up to that line's length in memory (bounded
    /// by the caller's input cap); set it when the input may be cut.
    pub hold_long_lines: bool,
}

impl FilterOptions {
    pub fn new(format: Format) -> Self {
        FilterOptions {
            format,
            max_line_bytes: 4096,
            max_metadata_bytes: 64 * 1024,
            max_output_bytes: 0,
            hold_long_lines: false,
        }
    }
}

/// Which cap cut a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Input,
    Output,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Input => "input",
            Limit::Output => "output",
        }
    }
}

/// What one scrape did, added to the Edge's self-metrics when it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrapeCounters {
    pub lines_sample: u64,
    pub lines_metadata: u64,
    pub lines_comment: u64,
    pub lines_unparsed: u64,
    pub lines_oversized: u64,
    pub lines_dropped: u64,
    pub series_kept: u64,
    pub series_dropped: u64,
    pub eval_errors: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub truncated: Option<Limit>,
}

/// The input ended inside a line that was already partly sent (possible
/// only without [`FilterOptions::hold_long_lines`]): the response cannot be
/// completed validly and must be aborted.
#[derive(Debug, thiserror::Error)]
#[error("the input cap was reached inside an oversized line that was already partly sent")]
pub struct CutMidLine;

/// Where a line's bytes live.
enum Src {
    /// A range of the current input chunk.
    Range(usize, usize),
    /// Bytes of their own (a line assembled across chunks).
    Owned(Bytes),
}

/// Output of one `push`: coalesces adjacent chunk ranges into one slice.
struct Out<'a> {
    segments: &'a mut Vec<Bytes>,
    chunk: &'a Bytes,
    run: Option<(usize, usize)>,
}

impl<'a> Out<'a> {
    fn new(segments: &'a mut Vec<Bytes>, chunk: &'a Bytes) -> Self {
        Out {
            segments,
            chunk,
            run: None,
        }
    }

    fn range(&mut self, start: usize, end: usize) {
        match &mut self.run {
            Some((_, run_end)) if *run_end == start => *run_end = end,
            _ => {
                self.flush();
                self.run = Some((start, end));
            }
        }
    }

    fn bytes(&mut self, bytes: Bytes) {
        self.flush();
        self.segments.push(bytes);
    }

    fn src(&mut self, src: &Src) {
        match src {
            Src::Range(s, e) => self.range(*s, *e),
            Src::Owned(b) => self.bytes(b.clone()),
        }
    }

    fn to_bytes(&self, src: &Src) -> Bytes {
        match src {
            Src::Range(s, e) => self.chunk.slice(*s..*e),
            Src::Owned(b) => b.clone(),
        }
    }

    fn flush(&mut self) {
        if let Some((s, e)) = self.run.take() {
            self.segments.push(self.chunk.slice(s..e));
        }
    }
}

/// The family being read: its facts, unsent metadata and decision memo.
#[derive(Default)]
struct Family {
    facts: FamilyFacts,
    /// False until the first line (metadata or sample) names a family.
    named: bool,
    pending: Vec<Bytes>,
    pending_len: usize,
    /// Metadata already went out (a series was kept, or it overflowed).
    emitted: bool,
    /// The identity of the last judged series and its decision: the lines
    /// of one series are almost always adjacent.
    last_identity: Vec<u8>,
    last: Option<SeriesDecision>,
    /// Decisions of earlier multi-line series, for non-adjacent lines.
    memo: HashMap<u64, SeriesDecision, FxBuildHasher>,
}

impl Family {
    fn start(&mut self, name: &str, kind: FamilyType) {
        self.facts.name.clear();
        self.facts.name.push_str(name);
        self.facts.kind = kind;
        self.facts.help = None;
        self.facts.unit = None;
        self.named = true;
        self.pending.clear();
        self.pending_len = 0;
        self.emitted = false;
        self.last_identity.clear();
        self.last = None;
        self.memo.clear();
    }
}

/// Filters one scrape body.
pub struct ScrapeFilter {
    engine: Arc<Engine>,
    resource: Arc<Resource>,
    opts: FilterOptions,
    needs_description: bool,
    needs_unit: bool,
    /// Lines of at most `max_line_bytes`; the rest of an oversized line
    /// passes through up to its LF (or, with `hold_long_lines`, is held in
    /// `held` until it).
    reader: LineReader,
    /// The oversized line read so far, as slices of the input chunks.
    held: Vec<Bytes>,
    held_len: usize,
    family: Family,
    identity: Vec<u8>,
    /// `# EOF` sent or output cut: everything after is ignored.
    done: bool,
    eof_sent: bool,
    /// The scrape was counted on the engine's policies.
    scrape_counted: bool,
    drops: PendingDrops,
    counters: ScrapeCounters,
}

/// Series and bytes this scrape dropped, per winning policy, until the
/// scrape ends (see the module's doc).
#[derive(Default)]
struct PendingDrops {
    metric: HashMap<u32, (u64, u64), FxBuildHasher>,
    shadow: HashMap<u32, (u64, u64), FxBuildHasher>,
}

impl PendingDrops {
    fn metric(&mut self, winner: u32, series: u64, bytes: u64) {
        let entry = self.metric.entry(winner).or_default();
        entry.0 += series;
        entry.1 += bytes;
    }

    fn shadow(&mut self, shadow: u32, series: u64, bytes: u64) {
        let entry = self.shadow.entry(shadow).or_default();
        entry.0 += series;
        entry.1 += bytes;
    }

    fn flush(&mut self, engine: &Engine) {
        for (winner, (series, bytes)) in self.metric.drain() {
            engine.metric_stats(winner).record_drop(series, bytes);
        }
        for (shadow, (series, bytes)) in self.shadow.drain() {
            engine.shadow_stats(shadow).record_drop(series, bytes);
        }
    }
}

impl Drop for ScrapeFilter {
    /// An aborted scrape does not count as a scrape, but what it dropped
    /// before the abort was dropped.
    fn drop(&mut self) {
        self.drops.flush(&self.engine);
    }
}

impl ScrapeFilter {
    pub fn new(engine: Arc<Engine>, resource: Arc<Resource>, opts: FilterOptions) -> Self {
        let reads = |field| {
            engine
                .metric_selectors()
                .any(|s| *s == MetricSelector::Field(field))
        };
        let needs_description = reads(MetricField::Description);
        let needs_unit = reads(MetricField::Unit);
        ScrapeFilter {
            engine,
            resource,
            opts,
            needs_description,
            needs_unit,
            reader: LineReader::new(opts.max_line_bytes),
            held: Vec::new(),
            held_len: 0,
            family: Family::default(),
            identity: Vec::new(),
            done: false,
            eof_sent: false,
            scrape_counted: false,
            drops: PendingDrops::default(),
            counters: ScrapeCounters::default(),
        }
    }

    pub fn counters(&self) -> &ScrapeCounters {
        &self.counters
    }

    /// True once nothing more will be written (EOF sent or output cut):
    /// the caller may stop reading upstream.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Filters `chunk`, appending output slices to `segments`.
    pub fn push(&mut self, chunk: &Bytes, segments: &mut Vec<Bytes>) {
        self.counters.bytes_in += chunk.len() as u64;
        if self.done {
            return;
        }
        let mut out = Out::new(segments, chunk);
        let bytes = &chunk[..];
        let mut pos = 0;
        while !self.done
            && let Some(piece) = self.reader.next(bytes, &mut pos)
        {
            match piece {
                Piece::Line { start, end } => {
                    self.line(&mut out, &bytes[start..end], Src::Range(start, end));
                }
                Piece::Joined(line) => self.line(&mut out, &line, Src::Owned(line.clone())),
                Piece::Long {
                    carried,
                    start,
                    end,
                    ends,
                } => self.long_line(&mut out, chunk, carried, (start, end), ends),
                Piece::LongMore { start, end, ends } if self.opts.hold_long_lines => {
                    self.hold(chunk.slice(start..end));
                    if ends {
                        self.release_held(&mut out);
                    }
                }
                Piece::LongMore { start, end, .. } => self.raw(&mut out, Src::Range(start, end)),
            }
        }
        out.flush();
    }

    /// The body ended cleanly: completes a final line without LF and, for
    /// OpenMetrics, makes sure `# EOF` is last.
    pub fn finish(&mut self, segments: &mut Vec<Bytes>) {
        let empty = Bytes::new();
        let mut out = Out::new(segments, &empty);
        if !self.done {
            match self.reader.finish() {
                Some(Tail::Long) if self.opts.hold_long_lines => {
                    self.hold(Bytes::from_static(b"\n"));
                    self.release_held(&mut out);
                }
                Some(Tail::Long) => self.raw(&mut out, Src::Owned(Bytes::from_static(b"\n"))),
                Some(Tail::Line(mut line)) => {
                    line.extend_from_slice(b"\n");
                    let line = line.freeze();
                    self.line(&mut out, &line, Src::Owned(line.clone()));
                }
                None => {}
            }
        }
        self.close_openmetrics(&mut out);
        out.flush();
        self.count_scrape();
    }

    /// The input cap was reached after the bytes pushed so far: drops the
    /// unfinished line (held or carried) and ends the output validly, or
    /// reports that it cannot because an oversized line is half sent.
    pub fn cut_input(&mut self, segments: &mut Vec<Bytes>) -> Result<(), CutMidLine> {
        // A long line the output cap refused was not sent at all: only one
        // that streamed (the filter not done) is half sent.
        if self.reader.in_long_line() && !self.opts.hold_long_lines && !self.done {
            return Err(CutMidLine);
        }
        self.reader.cut();
        self.held.clear();
        self.held_len = 0;
        if !self.done {
            self.counters.truncated = Some(Limit::Input);
            self.done = true;
        }
        let empty = Bytes::new();
        let mut out = Out::new(segments, &empty);
        self.close_openmetrics(&mut out);
        out.flush();
        self.count_scrape();
        Ok(())
    }

    /// Counts this scrape once, whichever way it ended and however often
    /// the caller ends it.
    fn count_scrape(&mut self) {
        if !self.scrape_counted {
            self.scrape_counted = true;
            self.drops.flush(&self.engine);
            self.engine.record_scrape();
        }
    }

    fn close_openmetrics(&mut self, out: &mut Out<'_>) {
        if self.opts.format == Format::OpenMetrics && !self.eof_sent {
            self.eof_sent = true;
            self.done = true;
            self.counters.bytes_out += EOF_LINE.len() as u64;
            out.bytes(Bytes::from_static(EOF_LINE));
        }
    }

    /// The start of an oversized line: what earlier chunks held of it
    /// (`carried`), then `range` of `chunk`; `ends` when that range holds
    /// its LF. Streamed at once, or held until its LF.
    fn long_line(
        &mut self,
        out: &mut Out<'_>,
        chunk: &Bytes,
        carried: Option<Bytes>,
        (start, end): (usize, usize),
        ends: bool,
    ) {
        if self.opts.hold_long_lines && !ends {
            if let Some(prefix) = carried {
                self.hold(prefix);
            }
            self.hold(chunk.slice(start..end));
            return;
        }
        let rest = &chunk[start..end];
        match carried {
            Some(prefix) => {
                let head = self.head(&prefix, rest);
                let total = prefix.len() + rest.len();
                if self.oversized(out, &head, Src::Owned(prefix), total) {
                    self.raw(out, Src::Range(start, end));
                }
            }
            None => {
                self.oversized(out, rest, Src::Range(start, end), rest.len());
            }
        }
    }

    /// Keeps a piece of an oversized line until its LF.
    fn hold(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            self.held_len += piece.len();
            self.held.push(piece);
        }
    }

    /// The held oversized line is complete: it goes out whole (or the
    /// output cap stops it), as a streamed one would have.
    fn release_held(&mut self, out: &mut Out<'_>) {
        let pieces = std::mem::take(&mut self.held);
        let total = std::mem::replace(&mut self.held_len, 0);
        if self.done {
            return;
        }
        let mut head = Vec::with_capacity(self.opts.max_line_bytes);
        for piece in &pieces {
            let want = self.opts.max_line_bytes - head.len();
            head.extend_from_slice(&piece[..want.min(piece.len())]);
            if head.len() == self.opts.max_line_bytes {
                break;
            }
        }
        let mut pieces = pieces.into_iter();
        let first = pieces.next().unwrap_or_default();
        if self.oversized(out, &head, Src::Owned(first), total) {
            for piece in pieces {
                self.raw(out, Src::Owned(piece));
            }
        }
    }

    /// The first `max_line_bytes` of a line split across chunks.
    fn head(&self, carried: &[u8], rest: &[u8]) -> Vec<u8> {
        let want = self
            .opts
            .max_line_bytes
            .saturating_sub(carried.len())
            .min(rest.len());
        let mut head = Vec::with_capacity(carried.len() + want);
        head.extend_from_slice(carried);
        head.extend_from_slice(&rest[..want]);
        head
    }

    /// Bytes of the current family's metadata still waiting for a kept
    /// series.
    fn unsent_metadata(&self) -> usize {
        if self.family.emitted {
            0
        } else {
            self.family.pending_len
        }
    }

    /// Room for `len` more bytes, keeping space for a final `# EOF`.
    fn fits(&self, len: usize) -> bool {
        let cap = self.opts.max_output_bytes;
        if cap == 0 {
            return true;
        }
        let reserve = if self.opts.format == Format::OpenMetrics {
            EOF_LINE.len() as u64
        } else {
            0
        };
        self.counters.bytes_out + len as u64 + reserve <= cap
    }

    fn cut_output(&mut self, out: &mut Out<'_>) {
        self.counters.truncated = Some(Limit::Output);
        self.done = true;
        self.close_openmetrics(out);
    }

    /// Writes bytes that bypass the cap (the rest of an oversized line).
    fn raw(&mut self, out: &mut Out<'_>, src: Src) {
        let len = match &src {
            Src::Range(s, e) => e - s,
            Src::Owned(b) => b.len(),
        };
        self.counters.bytes_out += len as u64;
        out.src(&src);
    }

    /// Writes a line if it fits under the output cap; cuts otherwise.
    fn write(&mut self, out: &mut Out<'_>, src: Src, len: usize) -> bool {
        if !self.fits(len) {
            self.cut_output(out);
            return false;
        }
        self.raw(out, src);
        true
    }

    fn flush_metadata(&mut self, out: &mut Out<'_>) {
        self.family.emitted = true;
        self.counters.bytes_out += self.family.pending_len as u64;
        self.family.pending_len = 0;
        for line in self.family.pending.drain(..) {
            out.bytes(line);
        }
    }

    /// One complete line (with its LF) of at most `max_line_bytes`.
    fn line(&mut self, out: &mut Out<'_>, line: &[u8], src: Src) {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        match crate::exposition::parse_line(content) {
            Line::Sample(sample) => self.sample(out, sample, line.len(), src),
            Line::Metadata(meta) => self.metadata(out, meta, line.len(), src),
            Line::Eof if self.opts.format == Format::OpenMetrics => {
                let cap = self.opts.max_output_bytes;
                if cap == 0 || self.counters.bytes_out + line.len() as u64 <= cap {
                    self.raw(out, src);
                    self.eof_sent = true;
                    self.done = true;
                } else {
                    // `# EOF\r\n` is a byte longer than the reserved room.
                    self.cut_output(out);
                }
            }
            Line::Blank | Line::Comment | Line::Eof => {
                self.counters.lines_comment += 1;
                self.write(out, src, line.len());
            }
            Line::Invalid => {
                self.counters.lines_unparsed += 1;
                self.write(out, src, line.len());
            }
        }
    }

    fn metadata(&mut self, out: &mut Out<'_>, meta: Metadata<'_>, len: usize, src: Src) {
        self.counters.lines_metadata += 1;
        let Some(name) = meta.name.decoded() else {
            self.counters.lines_unparsed += 1;
            self.write(out, src, len);
            return;
        };
        if !self.family.named || self.family.facts.name != name {
            self.family.start(&name, FamilyType::Untyped);
        }
        match meta.kind {
            MetaKind::Type => self.family.facts.kind = FamilyType::from_word(meta.value),
            MetaKind::Help if self.needs_description => {
                let quotes = self.opts.format == Format::OpenMetrics;
                self.family.facts.help = crate::exposition::decode_escapes(meta.value, quotes)
                    .filter(|h| !h.is_empty())
                    .map(|h| h.into_owned());
            }
            MetaKind::Unit if self.needs_unit && self.opts.format == Format::OpenMetrics => {
                let unit = meta.value.trim_ascii();
                self.family.facts.unit =
                    (!unit.is_empty()).then(|| String::from_utf8_lossy(unit).into_owned());
            }
            MetaKind::Help | MetaKind::Unit => {}
        }
        if self.family.emitted {
            self.write(out, src, len);
            return;
        }
        let bytes = out.to_bytes(&src);
        self.family.pending_len += bytes.len();
        self.family.pending.push(bytes);
        if self.family.pending_len > self.opts.max_metadata_bytes {
            // Never truncate metadata: send it all, unfiltered.
            if self.fits(self.family.pending_len) {
                self.flush_metadata(out);
            } else {
                self.cut_output(out);
            }
        }
    }

    fn sample(&mut self, out: &mut Out<'_>, sample: Sample<'_>, len: usize, src: Src) {
        // Bare names are ASCII by the grammar, so only quoted names need
        // decoding before the (byte-wise) membership test.
        let decoded = if sample.name.quoted {
            let Some(name) = sample.name.decoded() else {
                self.counters.lines_unparsed += 1;
                self.write(out, src, len);
                return;
            };
            Some(name)
        } else {
            None
        };
        let name: &[u8] = decoded.as_deref().map_or(sample.name.raw, str::as_bytes);
        self.counters.lines_sample += 1;
        let family = &mut self.family;
        if !family.named
            || !family
                .facts
                .kind
                .is_member(family.facts.name.as_bytes(), name)
        {
            family.start(&String::from_utf8_lossy(name), FamilyType::Untyped);
        }
        let decision = self.decide(&sample);
        if decision.keep {
            if !self.fits(self.unsent_metadata() + len) {
                self.cut_output(out);
                return;
            }
            if !self.family.emitted {
                self.flush_metadata(out);
            }
            self.raw(out, src);
            if let Some(shadow) = decision.shadow {
                self.drops.shadow(shadow, 0, len as u64);
            }
        } else {
            self.counters.lines_dropped += 1;
            if let Some(winner) = decision.winner {
                self.drops.metric(winner, 0, len as u64);
            }
        }
    }

    /// The decision for the series a sample line belongs to, evaluated and
    /// counted once per series.
    fn decide(&mut self, sample: &Sample<'_>) -> SeriesDecision {
        let labels = sample.labels;
        let kind = self.family.facts.kind;
        let identity = sample.series_identity(kind, &mut self.identity);
        if let Some(last) = self.family.last
            && self.family.last_identity == identity
        {
            return last;
        }
        // Lines of one series that are not adjacent find their
        // decision here instead of being evaluated and counted again.
        let memo_key = kind.multi_line().then(|| FxBuildHasher.hash_one(identity));
        if let Some(key) = memo_key
            && let Some(&decision) = self.family.memo.get(&key)
        {
            remember(&mut self.family, identity, decision);
            return decision;
        }
        let view = SeriesView {
            family: &self.family.facts,
            labels,
            resource: &self.resource,
        };
        let engine = &self.engine;
        let decision =
            match std::panic::catch_unwind(AssertUnwindSafe(|| engine.decide_metric(&view))) {
                Ok(decision) => decision,
                Err(_) => {
                    // Fail open: an evaluation failure keeps the series.
                    self.counters.eval_errors += 1;
                    SeriesDecision {
                        keep: true,
                        winner: None,
                        shadow: None,
                    }
                }
            };
        if decision.keep {
            self.counters.series_kept += 1;
            if let Some(shadow) = decision.shadow {
                self.drops.shadow(shadow, 1, 0);
            }
        } else {
            self.counters.series_dropped += 1;
            if let Some(winner) = decision.winner {
                self.drops.metric(winner, 1, 0);
            }
        }
        if let Some(key) = memo_key {
            if self.family.memo.len() >= MEMO_CAPACITY {
                self.family.memo.clear();
            }
            self.family.memo.insert(key, decision);
        }
        remember(&mut self.family, identity, decision);
        decision
    }

    /// A line longer than the line buffer: passes whole and unfiltered
    /// . `head` is at least its first `max_line_bytes` (or all of
    /// it), for reading its name; `src` is what to emit now and `total` the
    /// bytes of the line known so far. Returns false if the output cap
    /// stopped it.
    fn oversized(&mut self, out: &mut Out<'_>, head: &[u8], src: Src, total: usize) -> bool {
        let head = &head[..head.len().min(self.opts.max_line_bytes)];
        // family tracking advances when the name is readable.
        let name = match crate::exposition::parse_line(head) {
            Line::Metadata(m) => m.name.decoded().map(|n| (n.into_owned(), false)),
            _ => leading_name(head).map(|n| (n, true)),
        };
        let new_family = name.as_ref().filter(|(name, is_sample)| {
            !self.family.named
                || if *is_sample {
                    !self
                        .family
                        .facts
                        .kind
                        .is_member(self.family.facts.name.as_bytes(), name.as_bytes())
                } else {
                    self.family.facts.name != *name
                }
        });
        // A new family drops the old one's unsent metadata; the
        // line's own family sends its metadata first.
        let pending = if new_family.is_some() {
            0
        } else {
            self.unsent_metadata()
        };
        if !self.fits(pending + total) {
            self.cut_output(out);
            return false;
        }
        self.counters.lines_oversized += 1;
        if let Some((name, _)) = new_family {
            let name = name.clone();
            self.family.start(&name, FamilyType::Untyped);
        } else if self.family.named && !self.family.emitted {
            self.flush_metadata(out);
        }
        if name.is_some() {
            self.family.emitted = true;
            self.family.last = None;
        }
        self.raw(out, src);
        true
    }
}

fn remember(family: &mut Family, identity: &[u8], decision: SeriesDecision) {
    family.last_identity.clear();
    family.last_identity.extend_from_slice(identity);
    family.last = Some(decision);
}

/// The bare or quoted metric name at the start of a sample line.
fn leading_name(line: &[u8]) -> Option<String> {
    let line = line.trim_ascii_start();
    if line.first() == Some(&b'{') {
        let rest = line[1..].trim_ascii_start();
        let inner = rest.strip_prefix(b"\"")?;
        let close = crate::exposition::labels::closing_quote(inner, 0)?;
        return crate::exposition::decode_escapes(&inner[..close], true).map(|n| n.into_owned());
    }
    let end = line
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b':'))
        .unwrap_or(line.len());
    (end > 0 && !line[0].is_ascii_digit())
        .then(|| String::from_utf8_lossy(&line[..end]).into_owned())
}

#[cfg(test)]
mod tests;

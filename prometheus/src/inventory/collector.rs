//! The inventory of one scrape: per metric family, what it costs (series,
//! lines, bytes) and what its labels look like (distinct values, examples).
//!
//! It reads the raw upstream body, before any policy, with the filter's own
//! line reader ([`LineReader`]) and family rules ([`crate::exposition`]), so
//! a family here is exactly the family a policy would see. It reads the
//! body on its own, next to the filter: a line longer than the filter's
//! limit is still inventoried up to this collector's (larger) one. Memory is bounded whatever the
//! body: the carried line, at most `max_families` families of at most
//! `max_labels` labels, one sketch per label and a capped set of series
//! identities. What does not fit is counted, never silently lost.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use rustc_hash::FxBuildHasher;

use crate::exposition::family::StructuralLabel;
use crate::exposition::line::trim_separators;
use crate::exposition::{
    FamilyType, Format, LabelIter, Line, LineReader, MetaKind, Metadata, Piece, Sample, Tail,
    decode_escapes, parse_line,
};
use tero_sdk::sketch::{self, CardinalitySketch};

/// Lines longer than this (without their LF) are skipped whole.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;
pub const DEFAULT_MAX_FAMILIES: usize = 2000;
pub const DEFAULT_MAX_LABELS: usize = 32;
/// Series identities remembered exactly per scrape, over all families;
/// past it a series counts as new when its lines are not adjacent.
pub const DEFAULT_MAX_SERIES_TRACKED: usize = 250_000;
/// HELP text kept, in characters.
pub const HELP_MAX_CHARS: usize = 256;
pub const MAX_EXAMPLES: usize = 3;
/// Example values kept, in characters (longer ones are cut).
pub const EXAMPLE_MAX_CHARS: usize = 256;
pub const MAX_BUCKET_BOUNDS: usize = 64;
/// Distinct omitted names remembered for counting; the count saturates.
const OMITTED_NAMES_CAP: usize = 4096;

/// Limits of one scrape's inventory.
#[derive(Debug, Clone, Copy)]
pub struct CollectorOptions {
    /// Decides how HELP is unescaped (OpenMetrics also escapes `"`) and
    /// whether `# EOF` ends the body.
    pub format: Format,
    pub max_line_bytes: usize,
    pub max_families: usize,
    pub max_labels: usize,
    pub max_series_tracked: usize,
}

impl CollectorOptions {
    pub fn new(format: Format) -> Self {
        CollectorOptions {
            format,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_families: DEFAULT_MAX_FAMILIES,
            max_labels: DEFAULT_MAX_LABELS,
            max_series_tracked: DEFAULT_MAX_SERIES_TRACKED,
        }
    }
}

/// One label of a family in one scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelStats {
    pub name: String,
    /// Distinct values, mergeable across scrapes and edges.
    pub values: CardinalitySketch,
    /// Series carrying the label.
    pub series: u64,
    /// Up to [`MAX_EXAMPLES`] distinct values, unmasked: the window masks
    /// them before they are kept.
    pub examples: Vec<String>,
}

/// One metric family in one scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyStats {
    pub name: String,
    pub kind: FamilyType,
    pub unit: String,
    pub help: String,
    /// Distinct series: the lines of one histogram or summary series
    /// (buckets, quantiles, `_sum`, `_count`) count once.
    pub series: u64,
    pub samples: u64,
    /// Bytes of the sample lines, LF included: what dropping the family
    /// would save.
    pub sample_bytes: u64,
    /// Bytes of its HELP, TYPE and UNIT lines.
    pub metadata_bytes: u64,
    pub labels: Vec<LabelStats>,
    /// Distinct label names left out past `max_labels`.
    pub labels_omitted: u32,
    /// Distinct `le` bounds in exposition order, the first
    /// [`MAX_BUCKET_BOUNDS`] of them.
    pub bucket_bounds: Vec<String>,
    /// All distinct `le` bounds.
    pub bucket_count: u32,
    /// Wrapping sum of a hash of each sample line without its metric name:
    /// independent of line order, equal for two families that export the
    /// same series under different names.
    pub content_hash: u64,
}

impl FamilyStats {
    fn new(name: &str) -> Self {
        FamilyStats {
            name: name.to_owned(),
            kind: FamilyType::Untyped,
            unit: String::new(),
            help: String::new(),
            series: 0,
            samples: 0,
            sample_bytes: 0,
            metadata_bytes: 0,
            labels: Vec::new(),
            labels_omitted: 0,
            bucket_bounds: Vec::new(),
            bucket_count: 0,
            content_hash: 0,
        }
    }

    /// The TYPE word of the family's type; `unknown` when untyped.
    pub fn type_word(&self) -> &'static str {
        type_word(self.kind)
    }

    pub fn label(&self, name: &str) -> Option<&LabelStats> {
        self.labels.iter().find(|l| l.name == name)
    }
}

/// The TYPE word for `kind`, `unknown` for untyped families.
pub fn type_word(kind: FamilyType) -> &'static str {
    match kind {
        FamilyType::Counter => "counter",
        FamilyType::Gauge => "gauge",
        FamilyType::Histogram => "histogram",
        FamilyType::GaugeHistogram => "gaugehistogram",
        FamilyType::Summary => "summary",
        FamilyType::Info => "info",
        FamilyType::StateSet => "stateset",
        FamilyType::Untyped => "unknown",
    }
}

/// A family's scratch state next to its public statistics.
struct FamilyAcc {
    stats: FamilyStats,
    /// Identities of the series seen (hashes), to count each once.
    seen: HashSet<u64, FxBuildHasher>,
    /// The previous line's identity: a series' lines are almost always
    /// adjacent, so most lines need no set lookup.
    last_identity: Option<u64>,
    omitted_labels: HashSet<u64, FxBuildHasher>,
    bounds: CardinalitySketch,
}

/// The family the current line belongs to, as the filter tracks it.
#[derive(Default)]
struct Current {
    named: bool,
    name: String,
    kind: FamilyType,
    /// `None` for a family left out past `max_families`.
    index: Option<usize>,
}

/// Builds the inventory of one scrape body fed in chunks.
pub struct ScrapeInventory {
    opts: CollectorOptions,
    /// Lines of at most `max_line_bytes`; longer ones are skipped whole.
    reader: LineReader,
    families: Vec<FamilyAcc>,
    index: HashMap<String, usize>,
    current: Current,
    omitted_families: HashSet<u64, FxBuildHasher>,
    series_tracked: usize,
    /// `# EOF` read or `finish` called: later bytes are ignored.
    done: bool,
    finished: bool,
    bytes: u64,
    lines_oversized: u64,
    lines_invalid: u64,
    /// Reused buffers for a series identity and a content-hash key.
    identity: Vec<u8>,
    key: Vec<u8>,
}

impl ScrapeInventory {
    pub fn new(opts: CollectorOptions) -> Self {
        ScrapeInventory {
            opts,
            reader: LineReader::new(opts.max_line_bytes),
            families: Vec::new(),
            index: HashMap::new(),
            current: Current::default(),
            omitted_families: HashSet::default(),
            series_tracked: 0,
            done: false,
            finished: false,
            bytes: 0,
            lines_oversized: 0,
            lines_invalid: 0,
            identity: Vec::new(),
            key: Vec::new(),
        }
    }

    /// Reads the next chunk of the (decoded) body.
    pub fn push(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        if self.done {
            return;
        }
        let mut pos = 0;
        while !self.done
            && let Some(piece) = self.reader.next(chunk, &mut pos)
        {
            match piece {
                Piece::Line { start, end } => self.line(&chunk[start..end - 1], end - start),
                Piece::Joined(line) => self.line(&line[..line.len() - 1], line.len()),
                Piece::Long { .. } => self.lines_oversized += 1,
                Piece::LongMore { .. } => {}
            }
        }
    }

    /// The body ended cleanly: reads a last line without LF and completes
    /// the counts. Calling it again does nothing.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let tail = self.reader.finish();
        if !self.done
            && let Some(Tail::Line(line)) = tail
        {
            self.line(&line, line.len());
        }
        self.done = true;
        for family in &mut self.families {
            family.stats.bucket_count = saturate(family.bounds.estimate());
        }
    }

    /// The caller stopped reading before the body ended (a size cap): an
    /// unfinished last line is dropped rather than read as a whole one.
    pub fn cut_input(&mut self) {
        self.reader.cut();
        self.finish();
    }

    pub fn families(&self) -> impl Iterator<Item = &FamilyStats> {
        self.families.iter().map(|f| &f.stats)
    }

    pub fn family(&self, name: &str) -> Option<&FamilyStats> {
        self.index.get(name).map(|&i| &self.families[i].stats)
    }

    /// The families, in order of first appearance.
    pub fn into_families(self) -> Vec<FamilyStats> {
        self.families.into_iter().map(|f| f.stats).collect()
    }

    /// Distinct families left out past `max_families`.
    pub fn families_omitted(&self) -> u32 {
        self.omitted_families.len() as u32
    }

    /// Body bytes read.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Lines skipped for being longer than `max_line_bytes`.
    pub fn lines_oversized(&self) -> u64 {
        self.lines_oversized
    }

    /// Lines that are not valid exposition.
    pub fn lines_invalid(&self) -> u64 {
        self.lines_invalid
    }

    /// One line without its LF; `len` is its size in the body.
    fn line(&mut self, content: &[u8], len: usize) {
        match parse_line(content) {
            Line::Sample(sample) => self.sample(content, &sample, len),
            Line::Metadata(meta) => self.metadata(&meta, len),
            Line::Eof if self.opts.format == Format::OpenMetrics => self.done = true,
            Line::Blank | Line::Comment | Line::Eof => {}
            Line::Invalid => self.lines_invalid += 1,
        }
    }

    /// Makes `name` the current family, creating it if there is room.
    fn start_family(&mut self, name: &str) {
        let index = match self.index.get(name) {
            Some(&i) => Some(i),
            None if self.families.len() < self.opts.max_families => {
                self.families.push(FamilyAcc {
                    stats: FamilyStats::new(name),
                    seen: HashSet::default(),
                    last_identity: None,
                    omitted_labels: HashSet::default(),
                    bounds: CardinalitySketch::new(),
                });
                self.index.insert(name.to_owned(), self.families.len() - 1);
                Some(self.families.len() - 1)
            }
            None => {
                if self.omitted_families.len() < OMITTED_NAMES_CAP {
                    self.omitted_families.insert(sketch::hash(name.as_bytes()));
                }
                None
            }
        };
        let current = &mut self.current;
        current.named = true;
        current.name.clear();
        current.name.push_str(name);
        // A family met again (lines of it further down) keeps its type.
        current.kind = index.map_or(FamilyType::Untyped, |i| self.families[i].stats.kind);
        current.index = index;
    }

    fn metadata(&mut self, meta: &Metadata<'_>, len: usize) {
        let Some(name) = meta.name.decoded() else {
            self.lines_invalid += 1;
            return;
        };
        if !self.current.named || self.current.name != name {
            self.start_family(&name);
        }
        if meta.kind == MetaKind::Type {
            self.current.kind = FamilyType::from_word(meta.value);
        }
        let Some(index) = self.current.index else {
            return;
        };
        let stats = &mut self.families[index].stats;
        stats.metadata_bytes += len as u64;
        match meta.kind {
            MetaKind::Type => stats.kind = self.current.kind,
            MetaKind::Help => {
                let quotes = self.opts.format == Format::OpenMetrics;
                let help = decode_escapes(meta.value, quotes)
                    .unwrap_or_else(|| String::from_utf8_lossy(meta.value));
                stats.help = truncate_chars(&help, HELP_MAX_CHARS);
            }
            MetaKind::Unit => {
                stats.unit = String::from_utf8_lossy(meta.value.trim_ascii()).into_owned();
            }
        }
    }

    fn sample(&mut self, content: &[u8], sample: &Sample<'_>, len: usize) {
        // Bare names are ASCII by the grammar; only quoted ones decode.
        let decoded = if sample.name.quoted {
            let Some(name) = sample.name.decoded() else {
                self.lines_invalid += 1;
                return;
            };
            Some(name)
        } else {
            None
        };
        let name: &[u8] = decoded.as_deref().map_or(sample.name.raw, str::as_bytes);
        let current = &self.current;
        if !current.named || !current.kind.is_member(current.name.as_bytes(), name) {
            self.start_family(&String::from_utf8_lossy(name));
        }
        let Some(index) = self.current.index else {
            return;
        };
        let kind = self.current.kind;
        let suffix = name
            .strip_prefix(self.current.name.as_bytes())
            .unwrap_or_default();
        let labels = sample.labels;
        let family = &mut self.families[index];
        family.stats.samples += 1;
        family.stats.sample_bytes += len as u64;

        // The name goes, its member suffix stays: `_bucket{le="1"} 3`.
        self.key.clear();
        self.key.extend_from_slice(suffix);
        self.key.push(b'{');
        self.key
            .extend_from_slice(trim_separators(labels).trim_ascii_start());
        self.key.extend_from_slice(b"} ");
        self.key.extend_from_slice(value_token(content, labels));
        family.stats.content_hash = family
            .stats
            .content_hash
            .wrapping_add(sketch::wide_hash(&self.key));

        let structural = kind.structural_label();
        let identity = sample.series_identity(kind, &mut self.identity);
        let id = FxBuildHasher.hash_one(identity);
        let new_series = if family.last_identity == Some(id) {
            false
        } else {
            family.last_identity = Some(id);
            if self.series_tracked < self.opts.max_series_tracked {
                let inserted = family.seen.insert(id);
                self.series_tracked += usize::from(inserted);
                inserted
            } else {
                !family.seen.contains(&id)
            }
        };

        if structural == Some(StructuralLabel::Le)
            && let Some((start, end)) = sample.le
            && let Some(pair) = LabelIter::new(&labels[start..end]).next()
        {
            // Borrowed: a bucket line allocates only for a bound not seen yet.
            let bound = pair
                .value()
                .unwrap_or_else(|| String::from_utf8_lossy(pair.raw_value));
            family.bounds.insert(bound.as_bytes());
            if family.stats.bucket_bounds.len() < MAX_BUCKET_BOUNDS
                && !family.stats.bucket_bounds.iter().any(|b| *b == bound)
            {
                family.stats.bucket_bounds.push(bound.into_owned());
            }
        }
        if !new_series {
            // The same series' labels: nothing new to learn from them.
            return;
        }
        family.stats.series += 1;
        let max_labels = self.opts.max_labels;
        for pair in LabelIter::new(labels) {
            if pair.name_is("le") || pair.name_is("quantile") {
                continue;
            }
            let found = family
                .stats
                .labels
                .iter()
                .position(|l| pair.name_is(&l.name));
            let at = match found {
                Some(at) => at,
                None if family.stats.labels.len() < max_labels => {
                    let name = if pair.quoted_name {
                        decode_escapes(pair.raw_name, true).map(|n| n.into_owned())
                    } else {
                        Some(String::from_utf8_lossy(pair.raw_name).into_owned())
                    };
                    let Some(name) = name else { continue };
                    family.stats.labels.push(LabelStats {
                        name,
                        values: CardinalitySketch::new(),
                        series: 0,
                        examples: Vec::new(),
                    });
                    family.stats.labels.len() - 1
                }
                None => {
                    if family.omitted_labels.len() < OMITTED_NAMES_CAP {
                        family.omitted_labels.insert(sketch::hash(pair.raw_name));
                        family.stats.labels_omitted = family.omitted_labels.len() as u32;
                    }
                    continue;
                }
            };
            let label = &mut family.stats.labels[at];
            label.series += 1;
            let value = pair.value();
            match &value {
                Some(v) => label.values.insert(v.as_bytes()),
                None => label.values.insert(pair.raw_value),
            }
            if label.examples.len() < MAX_EXAMPLES {
                let text = value.unwrap_or_else(|| String::from_utf8_lossy(pair.raw_value));
                let text = truncate_chars(&text, EXAMPLE_MAX_CHARS);
                if !label.examples.contains(&text) {
                    label.examples.push(text);
                }
            }
        }
    }
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => s[..cut].to_owned(),
        None => s.to_owned(),
    }
}

/// The value of a sample line: the first token after the label section
/// (or after the name when there is none). Timestamps and exemplars are
/// left out: they differ between two exports of the same data.
fn value_token<'a>(content: &'a [u8], labels: &[u8]) -> &'a [u8] {
    // `labels` borrows from `content`, so where it ends is where the
    // value's part of the line begins.
    let start = labels
        .as_ptr()
        .addr()
        .checked_sub(content.as_ptr().addr())
        .map(|offset| offset + labels.len())
        .filter(|end| *end <= content.len());
    let Some(start) = start else {
        return &[];
    };
    let rest = &content[start..];
    let rest = rest.strip_prefix(b"}").unwrap_or(rest).trim_ascii_start();
    let end = rest
        .iter()
        .position(|b| matches!(b, b' ' | b'\t'))
        .unwrap_or(rest.len());
    &rest[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(format: Format, chunks: &[&[u8]]) -> ScrapeInventory {
        let mut inv = ScrapeInventory::new(CollectorOptions::new(format));
        for c in chunks {
            inv.push(c);
        }
        inv.finish();
        inv
    }

    fn text(body: &str) -> ScrapeInventory {
        inventory(Format::Text, &[body.as_bytes()])
    }

    /// Bytes of the lines of `body` for which `pick` holds, LF included.
    fn bytes_of(body: &str, pick: impl Fn(&str) -> bool) -> u64 {
        body.lines()
            .filter(|l| pick(l))
            .map(|l| l.len() as u64 + 1)
            .sum()
    }

    fn realistic() -> String {
        let mut body = String::new();
        body.push_str("# HELP http_requests_total Requests served.\n");
        body.push_str("# TYPE http_requests_total counter\n");
        for (method, code) in [("GET", "200"), ("GET", "500"), ("POST", "200")] {
            body.push_str(&format!(
                "http_requests_total{{method=\"{method}\",code=\"{code}\"}} 12\n"
            ));
        }
        body.push_str("# HELP temperature_celsius Room temperature, \"inside\".\n");
        body.push_str("# TYPE temperature_celsius gauge\n");
        body.push_str("temperature_celsius 21.5\n");
        body.push_str("# HELP request_seconds Latency.\n");
        body.push_str("# TYPE request_seconds histogram\n");
        for path in ["/a", "/b", "/c"] {
            for le in ["0.1", "0.5", "1", "5", "+Inf"] {
                body.push_str(&format!(
                    "request_seconds_bucket{{path=\"{path}\",le=\"{le}\"}} 3\n"
                ));
            }
            body.push_str(&format!("request_seconds_sum{{path=\"{path}\"}} 1.5\n"));
            body.push_str(&format!("request_seconds_count{{path=\"{path}\"}} 3\n"));
        }
        body.push_str("# TYPE rpc_duration summary\n");
        for q in ["0.5", "0.9", "0.99"] {
            body.push_str(&format!(
                "rpc_duration{{service=\"api\",quantile=\"{q}\"}} 0.1\n"
            ));
        }
        body.push_str("rpc_duration_sum{service=\"api\"} 10\n");
        body.push_str("rpc_duration_count{service=\"api\"} 100\n");
        body.push_str("# TYPE logins_total counter\n");
        for i in 0..5 {
            body.push_str(&format!(
                "logins_total{{email=\"user{i}@example.com\"}} 1\n"
            ));
        }
        body
    }

    #[test]
    fn a_realistic_scrape() {
        let body = realistic();
        let inv = text(&body);
        assert_eq!(inv.families().count(), 5);
        assert_eq!(inv.families_omitted(), 0);

        let c = inv.family("http_requests_total").unwrap();
        assert_eq!(c.type_word(), "counter");
        assert_eq!(c.help, "Requests served.");
        assert_eq!((c.series, c.samples), (3, 3));
        assert_eq!(
            c.sample_bytes,
            bytes_of(&body, |l| l.starts_with("http_requests_total{"))
        );
        assert_eq!(
            c.metadata_bytes,
            bytes_of(&body, |l| l.starts_with("# ")
                && l.contains(" http_requests_total "))
        );
        let method = c.label("method").unwrap();
        assert_eq!(
            (method.values.estimate(), method.series),
            (2, 3),
            "GET twice, POST once"
        );
        assert_eq!(method.examples, ["GET", "POST"]);
        assert_eq!(c.label("code").unwrap().values.estimate(), 2);

        let g = inv.family("temperature_celsius").unwrap();
        assert_eq!(g.type_word(), "gauge");
        // Text format: `\"` is not an escape in HELP.
        assert_eq!(g.help, "Room temperature, \"inside\".");
        assert_eq!((g.series, g.samples, g.labels.len()), (1, 1, 0));

        let h = inv.family("request_seconds").unwrap();
        assert_eq!(h.type_word(), "histogram");
        assert_eq!(h.series, 3, "one per path, whatever its bucket lines");
        assert_eq!(h.samples, 3 * 7);
        assert_eq!(
            h.sample_bytes,
            bytes_of(&body, |l| l.starts_with("request_seconds_"))
        );
        assert_eq!(h.bucket_bounds, ["0.1", "0.5", "1", "5", "+Inf"]);
        assert_eq!(h.bucket_count, 5);
        assert_eq!(h.labels.len(), 1, "le is structure, not a label");
        let path = h.label("path").unwrap();
        assert_eq!((path.values.estimate(), path.series), (3, 3));
        assert_eq!(path.examples, ["/a", "/b", "/c"], "three examples at most");

        let s = inv.family("rpc_duration").unwrap();
        assert_eq!(s.type_word(), "summary");
        assert_eq!((s.series, s.samples), (1, 5));
        assert!(s.label("quantile").is_none());
        assert!(s.bucket_bounds.is_empty());

        let l = inv.family("logins_total").unwrap();
        let email = l.label("email").unwrap();
        assert_eq!((email.values.estimate(), email.series), (5, 5));
        assert_eq!(email.examples.len(), MAX_EXAMPLES);
        assert_eq!(email.examples[0], "user0@example.com", "masking is later");
    }

    #[test]
    fn chunking_does_not_change_the_result() {
        let body = realistic();
        let whole = text(&body);
        for size in [1, 2, 7, 64, 333] {
            let chunks: Vec<&[u8]> = body.as_bytes().chunks(size).collect();
            let split = inventory(Format::Text, &chunks);
            let a: Vec<&FamilyStats> = whole.families().collect();
            let b: Vec<&FamilyStats> = split.families().collect();
            assert_eq!(a, b, "chunks of {size}");
        }
    }

    #[test]
    fn openmetrics_unit_eof_and_a_last_line_without_lf() {
        let body = "# TYPE build info\n\
                    # HELP build Build \\\"facts\\\".\n\
                    build_info{version=\"1.2\"} 1\n\
                    # TYPE latency_seconds gaugehistogram\n\
                    # UNIT latency_seconds seconds\n\
                    latency_seconds_bucket{le=\"1\"} 1\n\
                    latency_seconds_bucket{le=\"+Inf\"} 2\n\
                    latency_seconds_gcount 2\n\
                    latency_seconds_gsum 1.5\n\
                    # EOF\n\
                    after_eof 1\n";
        let inv = inventory(Format::OpenMetrics, &[body.as_bytes()]);
        assert_eq!(inv.families().count(), 2);
        let b = inv.family("build").unwrap();
        assert_eq!(
            (b.type_word(), b.help.as_str()),
            ("info", "Build \"facts\".")
        );
        assert_eq!(b.series, 1);
        let l = inv.family("latency_seconds").unwrap();
        assert_eq!(
            (l.type_word(), l.unit.as_str(), l.series, l.samples),
            ("gaugehistogram", "seconds", 1, 4)
        );
        assert_eq!(l.bucket_bounds, ["1", "+Inf"]);
        assert!(inv.family("after_eof").is_none());

        let mut cut = ScrapeInventory::new(CollectorOptions::new(Format::Text));
        cut.push(b"up 1\nup 2\nhalf{a=\"x\"} 1");
        cut.cut_input();
        assert!(cut.family("half").is_none(), "a cut line is not a line");
        assert_eq!(cut.family("up").unwrap().samples, 2);

        let unterminated = inventory(Format::Text, &[b"up 1\nlast", b"_one{a=\"x\"} 2"]);
        let last = unterminated.family("last_one").unwrap();
        assert_eq!((last.samples, last.sample_bytes), (1, 17), "no LF to count");
        assert_eq!(last.label("a").unwrap().examples, ["x"]);
    }

    #[test]
    fn oversized_lines_are_skipped_whole() {
        let mut opts = CollectorOptions::new(Format::Text);
        opts.max_line_bytes = 64;
        let long = format!("big{{v=\"{}\"}} 1\n", "x".repeat(100));
        let body = format!("a 1\n{long}b 2\n{long}");
        for size in [1, 5, 30, 1000] {
            let mut inv = ScrapeInventory::new(opts);
            for c in body.as_bytes().chunks(size) {
                inv.push(c);
            }
            inv.finish();
            assert_eq!(inv.lines_oversized(), 2, "chunks of {size}");
            assert!(inv.family("big").is_none());
            assert_eq!(inv.family("a").unwrap().samples, 1);
            assert_eq!(inv.family("b").unwrap().samples, 1);
        }
        // The default cap is 64 KiB.
        let huge = format!("huge{{v=\"{}\"}} 1\nok 1\n", "y".repeat(70 * 1024));
        let inv = text(&huge);
        assert_eq!(inv.lines_oversized(), 1);
        assert!(inv.family("huge").is_none() && inv.family("ok").is_some());
    }

    #[test]
    fn renamed_identical_families_hash_alike() {
        let series = |name: &str, last: &str| {
            format!(
                "# TYPE {name} histogram\n\
                 {name}_bucket{{path=\"/a\",le=\"1\"}} 3\n\
                 {name}_bucket{{path=\"/a\",le=\"+Inf\"}} {last}\n\
                 {name}_sum{{path=\"/a\"}} 1.5\n\
                 {name}_count{{path=\"/a\"}} 4\n"
            )
        };
        let body = format!(
            "{}{}{}",
            series("old_latency", "4"),
            series("new_latency", "4"),
            series("other_latency", "5")
        );
        let inv = text(&body);
        let hash = |n: &str| inv.family(n).unwrap().content_hash;
        assert_eq!(hash("old_latency"), hash("new_latency"));
        assert_ne!(hash("old_latency"), hash("other_latency"));
        // Line order does not matter; timestamps are not content.
        let reordered = text(
            "# TYPE new_latency histogram\n\
             new_latency_count{path=\"/a\"} 4\n\
             new_latency_bucket{path=\"/a\",le=\"+Inf\"} 4 1700000000000\n\
             new_latency_sum{path=\"/a\"} 1.5\n\
             new_latency_bucket{path=\"/a\",le=\"1\"} 3\n",
        );
        assert_eq!(
            reordered.family("new_latency").unwrap().content_hash,
            hash("old_latency")
        );
        // Quoted names strip the same way.
        let plain = text("a_total{x=\"1\"} 2\n");
        let quoted = text("{\"b.total\", x=\"1\"} 2\n");
        assert_eq!(
            plain.family("a_total").unwrap().content_hash,
            quoted.family("b.total").unwrap().content_hash
        );
    }

    #[test]
    fn bounds_hold_and_count_what_was_left_out() {
        let mut opts = CollectorOptions::new(Format::Text);
        opts.max_families = 2;
        opts.max_labels = 2;
        let body = "f1{a=\"1\",b=\"2\",c=\"3\",d=\"4\"} 1\n\
                    f1{a=\"1\",b=\"2\",c=\"5\",e=\"4\"} 1\n\
                    f2 1\nf3 1\nf4 1\nf3 2\n";
        let mut inv = ScrapeInventory::new(opts);
        inv.push(body.as_bytes());
        inv.finish();
        assert_eq!(inv.families().count(), 2);
        assert_eq!(inv.families_omitted(), 2, "f3 and f4, f3 once");
        let f1 = inv.family("f1").unwrap();
        assert_eq!(f1.labels.len(), 2);
        assert_eq!(f1.labels_omitted, 3, "c, d and e");
        assert_eq!(f1.series, 2);

        let mut body = String::from("# TYPE h histogram\n");
        for i in 0..100 {
            body.push_str(&format!("h_bucket{{le=\"{i}\"}} 1\n"));
        }
        let inv = text(&body);
        let h = inv.family("h").unwrap();
        assert_eq!(h.bucket_bounds.len(), MAX_BUCKET_BOUNDS);
        assert_eq!(h.bucket_count, 100);
        assert_eq!(h.series, 1);
    }

    #[test]
    fn non_adjacent_lines_of_a_series_count_once() {
        let body = "# TYPE s summary\n\
                    s{x=\"1\",quantile=\"0.5\"} 1\n\
                    s{x=\"2\",quantile=\"0.5\"} 1\n\
                    s_sum{x=\"1\"} 1\n\
                    s_sum{x=\"2\"} 1\n\
                    s_count{x=\"1\"} 1\n";
        let s = text(body);
        let s = s.family("s").unwrap();
        assert_eq!((s.series, s.samples), (2, 5));
        assert_eq!(s.label("x").unwrap().series, 2);
        // Past the tracking budget, only adjacency is known.
        let mut opts = CollectorOptions::new(Format::Text);
        opts.max_series_tracked = 0;
        let mut inv = ScrapeInventory::new(opts);
        inv.push(body.as_bytes());
        inv.finish();
        assert_eq!(inv.family("s").unwrap().series, 5);
    }

    #[test]
    fn help_is_truncated_and_escapes_decoded() {
        let long = "é".repeat(300);
        let inv = text(&format!(
            "# HELP a {long}\n# HELP b line\\nbreak \\\\ done\na 1\nb 1\n"
        ));
        assert_eq!(
            inv.family("a").unwrap().help.chars().count(),
            HELP_MAX_CHARS
        );
        assert_eq!(inv.family("b").unwrap().help, "line\nbreak \\ done");
        assert_eq!(inv.family("a").unwrap().type_word(), "unknown");
    }
}

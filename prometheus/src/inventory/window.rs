//! The inventory of a reporting interval: inventoried scrapes merged into
//! one bounded [`InventoryReport`].
//!
//! Inventorying every scrape would cost a parse of every body; one scrape
//! per `sample_every` is enough, because what the detectors read changes
//! slowly. Label sketches merge over the window (a value seen in any scrape
//! counts); series, bytes and examples are those of the latest scrape that
//! had the family. Example values are masked when absorbed, so secrets
//! never outlive the scrape they came in.
//!
//! A report that could not be sent can be [`restore`](InventoryWindow::restore)d:
//! it is merged back into the window, sketches and counts included, and goes
//! out again inside the next report. (The edge itself instead retries the
//! unsent report unchanged under its sequence number, like its statistics
//! outbox, and lets the window keep accumulating meanwhile: a failure may
//! be ambiguous, and a control plane that stored the first attempt must
//! not drop newer data as a duplicate.)

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use rustc_hash::FxBuildHasher;
use tero_proto::controlplane::{FamilyInventory, InventoryReport, LabelInventory};

use super::collector::{FamilyStats, ScrapeInventory};
use super::mask::mask_value;
use tero_sdk::sketch::{self, CardinalitySketch};

pub const DEFAULT_SAMPLE_EVERY: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_REPORT_FAMILIES: usize = 1000;
/// Families held between reports: scrapes may churn names, so the union
/// of a window's scrapes is bounded too.
pub const DEFAULT_MAX_WINDOW_FAMILIES: usize = 4000;
pub const DEFAULT_MAX_WINDOW_LABELS: usize = 32;
/// Under gRPC's default 4 MiB message limit, with room to spare.
pub const DEFAULT_MAX_REPORT_BYTES: usize = 3 * 1024 * 1024;
const OMITTED_NAMES_CAP: usize = 4096;

/// Limits of a window and of the report it becomes.
#[derive(Debug, Clone, Copy)]
pub struct WindowOptions {
    /// At most one scrape inventoried per period.
    pub sample_every: Duration,
    /// Families in a report: the largest by sample bytes.
    pub max_report_families: usize,
    /// Families held at once.
    pub max_window_families: usize,
    /// Labels held per family.
    pub max_labels: usize,
    /// Approximate encoded size of a report.
    pub max_report_bytes: usize,
}

impl Default for WindowOptions {
    fn default() -> Self {
        WindowOptions {
            sample_every: DEFAULT_SAMPLE_EVERY,
            max_report_families: DEFAULT_MAX_REPORT_FAMILIES,
            max_window_families: DEFAULT_MAX_WINDOW_FAMILIES,
            max_labels: DEFAULT_MAX_WINDOW_LABELS,
            max_report_bytes: DEFAULT_MAX_REPORT_BYTES,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct WindowLabel {
    name: String,
    sketch: CardinalitySketch,
    series: u64,
    /// Already masked.
    examples: Vec<String>,
    masked: bool,
}

#[derive(Debug, Clone, Default)]
struct WindowFamily {
    type_word: String,
    unit: String,
    help: String,
    series: u64,
    samples: u64,
    sample_bytes: u64,
    metadata_bytes: u64,
    labels: Vec<WindowLabel>,
    labels_omitted: u32,
    bucket_bounds: Vec<String>,
    bucket_count: u32,
    content_hash: u64,
    /// When the scrape behind the latest-scrape fields was taken (unix
    /// ms): a slower scrape finishing later must not overwrite a newer one.
    latest_ms: i64,
}

impl WindowFamily {
    /// Room for a label; `None` (and counted) when the family is full.
    fn label_mut(&mut self, name: &str, max_labels: usize) -> Option<&mut WindowLabel> {
        let at = match self.labels.iter().position(|l| l.name == name) {
            Some(at) => at,
            None if self.labels.len() < max_labels => {
                self.labels.push(WindowLabel {
                    name: name.to_owned(),
                    ..WindowLabel::default()
                });
                self.labels.len() - 1
            }
            None => {
                self.labels_omitted = self.labels_omitted.saturating_add(1);
                return None;
            }
        };
        Some(&mut self.labels[at])
    }
}

/// Masks `examples` of label `name`; returns them and whether any was.
fn masked_examples(name: &str, examples: &[String]) -> (Vec<String>, bool) {
    let mut out: Vec<String> = Vec::with_capacity(examples.len());
    let mut masked = false;
    for value in examples {
        let shown = match mask_value(name, value) {
            Some(m) => {
                masked = true;
                m
            }
            None => value.clone(),
        };
        // Masking can make two examples equal (`<ipv4>`): keep one.
        if !out.contains(&shown) {
            out.push(shown);
        }
    }
    (out, masked)
}

/// The inventory of one reporting interval. Not thread-safe by itself:
/// the edge holds it behind a lock.
#[derive(Debug)]
pub struct InventoryWindow {
    opts: WindowOptions,
    start_ms: i64,
    scrapes: u64,
    scrapes_inventoried: u64,
    /// When the last scrape was chosen; survives `take_report`, so the
    /// sampling cadence does not restart with each window.
    last_sampled: Option<Instant>,
    families: HashMap<String, WindowFamily>,
    /// The most families one scrape left out.
    scrape_omitted: u32,
    /// Names left out because the window was full.
    window_omitted: HashSet<u64, FxBuildHasher>,
}

pub fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl InventoryWindow {
    /// A window starting at `now`.
    pub fn new(opts: WindowOptions, now: SystemTime) -> Self {
        InventoryWindow {
            opts,
            start_ms: unix_ms(now),
            scrapes: 0,
            scrapes_inventoried: 0,
            last_sampled: None,
            families: HashMap::new(),
            scrape_omitted: 0,
            window_omitted: HashSet::default(),
        }
    }

    pub fn options(&self) -> &WindowOptions {
        &self.opts
    }

    /// Counts a scrape served, inventoried or not.
    pub fn record_scrape(&mut self) {
        self.record_scrapes(1);
    }

    /// Counts `n` scrapes (a caller that counts without the lock).
    pub fn record_scrapes(&mut self, n: u64) {
        self.scrapes = self.scrapes.saturating_add(n);
    }

    /// Whether the scrape starting `now` should be inventoried: the first
    /// one always, then at most one per `sample_every`. A yes claims the
    /// period, so concurrent scrapes do not all parse; a claimed scrape
    /// that fails leaves its period without inventory.
    pub fn should_inventory(&mut self, now: Instant) -> bool {
        let due = self
            .last_sampled
            .is_none_or(|last| now.saturating_duration_since(last) >= self.opts.sample_every);
        if due {
            self.last_sampled = Some(now);
        }
        due
    }

    /// When the next scrape will be inventoried (`None`: the next one).
    pub fn next_due(&self) -> Option<Instant> {
        self.last_sampled.map(|last| last + self.opts.sample_every)
    }

    pub fn scrapes(&self) -> u64 {
        self.scrapes
    }

    pub fn scrapes_inventoried(&self) -> u64 {
        self.scrapes_inventoried
    }

    pub fn family_count(&self) -> usize {
        self.families.len()
    }

    /// True when nothing was recorded since the window started.
    pub fn is_empty(&self) -> bool {
        self.scrapes == 0 && self.scrapes_inventoried == 0 && self.families.is_empty()
    }

    /// Merges an inventoried scrape taken at `at`. The scrape is finished
    /// first if the caller has not.
    pub fn absorb(&mut self, mut scrape: ScrapeInventory, at: SystemTime) {
        scrape.finish();
        let at_ms = unix_ms(at);
        self.scrapes_inventoried += 1;
        self.scrape_omitted = self.scrape_omitted.max(scrape.families_omitted());
        for stats in scrape.into_families() {
            self.absorb_family(stats, at_ms);
        }
    }

    fn absorb_family(&mut self, stats: FamilyStats, at_ms: i64) {
        let max_labels = self.opts.max_labels;
        if !self.families.contains_key(&stats.name) {
            if self.families.len() >= self.opts.max_window_families {
                if self.window_omitted.len() < OMITTED_NAMES_CAP {
                    self.window_omitted
                        .insert(sketch::hash(stats.name.as_bytes()));
                }
                return;
            }
            self.families.insert(
                stats.name.clone(),
                WindowFamily {
                    latest_ms: i64::MIN,
                    ..WindowFamily::default()
                },
            );
        }
        let Some(family) = self.families.get_mut(&stats.name) else {
            return;
        };
        let latest = at_ms >= family.latest_ms;
        if latest {
            family.latest_ms = at_ms;
            if stats.type_word() != "unknown" || family.type_word.is_empty() {
                family.type_word = stats.type_word().to_owned();
            }
            if !stats.unit.is_empty() {
                family.unit = stats.unit.clone();
            }
            if !stats.help.is_empty() {
                family.help = stats.help.clone();
            }
            family.series = stats.series;
            family.samples = stats.samples;
            family.sample_bytes = stats.sample_bytes;
            family.metadata_bytes = stats.metadata_bytes;
            family.bucket_bounds = stats.bucket_bounds;
            family.bucket_count = stats.bucket_count;
            family.content_hash = stats.content_hash;
            family.labels_omitted = family.labels_omitted.max(stats.labels_omitted);
            // Series counts are the latest scrape's: a label it lacked
            // had none there.
            for label in &mut family.labels {
                label.series = 0;
            }
        }
        for label in stats.labels {
            let Some(held) = family.label_mut(&label.name, max_labels) else {
                continue;
            };
            held.sketch.merge(&label.values);
            if latest || held.examples.is_empty() {
                let (examples, masked) = masked_examples(&label.name, &label.examples);
                held.examples = examples;
                held.masked = masked;
            }
            if latest {
                held.series = label.series;
            }
        }
    }

    /// The report of the window so far, bounded, and a fresh window from
    /// `now`. `client_metadata`, `session` and `seq` are the sender's.
    pub fn take_report(&mut self, now: SystemTime) -> InventoryReport {
        let end_ms = unix_ms(now);
        let mut families: Vec<(String, WindowFamily)> = self.families.drain().collect();
        // Largest first, then by name so equal sizes report stably.
        families.sort_unstable_by(|(an, a), (bn, b)| {
            b.sample_bytes.cmp(&a.sample_bytes).then_with(|| an.cmp(bn))
        });
        let mut omitted = u64::from(self.scrape_omitted) + self.window_omitted.len() as u64;
        let mut kept = Vec::with_capacity(families.len().min(self.opts.max_report_families));
        let mut size = 0usize;
        for (name, family) in families {
            if kept.len() >= self.opts.max_report_families {
                omitted += 1;
                continue;
            }
            let entry = to_proto(name, family);
            let entry_size = approximate_size(&entry);
            if !kept.is_empty() && size + entry_size > self.opts.max_report_bytes {
                omitted += 1;
                continue;
            }
            size += entry_size;
            kept.push(entry);
        }
        let report = InventoryReport {
            client_metadata: None,
            session: String::new(),
            seq: 0,
            window_start_unix_ms: self.start_ms,
            window_end_unix_ms: end_ms.max(self.start_ms),
            scrapes: self.scrapes,
            scrapes_inventoried: self.scrapes_inventoried,
            families: kept,
            families_omitted: u32::try_from(omitted).unwrap_or(u32::MAX),
            // The edge's log intake fills these in.
            log_templates: Vec::new(),
            log_lines_overflowed: 0,
            span_patterns: Vec::new(),
            spans_overflowed: 0,
        };
        self.start_ms = end_ms;
        self.scrapes = 0;
        self.scrapes_inventoried = 0;
        self.scrape_omitted = 0;
        self.window_omitted.clear();
        report
    }

    /// Merges back a report that could not be sent, so the next report
    /// carries its contents: the window then starts at the report's start,
    /// its scrapes add up, its sketches merge, and what was seen since it
    /// wins for the latest-scrape fields.
    pub fn restore(&mut self, report: InventoryReport) {
        self.start_ms = self.start_ms.min(report.window_start_unix_ms);
        self.scrapes = self.scrapes.saturating_add(report.scrapes);
        self.scrapes_inventoried = self
            .scrapes_inventoried
            .saturating_add(report.scrapes_inventoried);
        self.scrape_omitted = self.scrape_omitted.max(report.families_omitted);
        let max_labels = self.opts.max_labels;
        for f in report.families {
            // Restored families are taken even past the window's bound: the
            // report that held them was bounded, and they must not be lost.
            let family = self.families.entry(f.name).or_insert_with(|| WindowFamily {
                latest_ms: i64::MIN,
                ..WindowFamily::default()
            });
            let newer = family.latest_ms != i64::MIN;
            if !newer {
                family.latest_ms = report.window_end_unix_ms;
                family.type_word = f.r#type;
                family.unit = f.unit;
                family.help = f.help;
                family.series = f.series;
                family.samples = f.samples;
                family.sample_bytes = f.sample_bytes;
                family.metadata_bytes = f.metadata_bytes;
                family.bucket_bounds = f.bucket_bounds;
                family.bucket_count = f.bucket_count;
                family.content_hash = f.content_hash;
            }
            family.labels_omitted = family.labels_omitted.max(f.labels_omitted);
            for l in f.labels {
                let Some(held) = family.label_mut(&l.name, max_labels) else {
                    continue;
                };
                // The window wrote these sketches; one that does not decode
                // still keeps its label and examples.
                if let Ok(restored) = CardinalitySketch::decode(&l.sketch) {
                    held.sketch.merge(&restored);
                }
                if !newer {
                    held.series = l.series;
                }
                if held.examples.is_empty() {
                    held.examples = l.examples;
                    held.masked = l.masked;
                }
            }
        }
    }
}

fn to_proto(name: String, family: WindowFamily) -> FamilyInventory {
    let type_word = if family.type_word.is_empty() {
        "unknown".to_owned()
    } else {
        family.type_word
    };
    FamilyInventory {
        name,
        r#type: type_word,
        unit: family.unit,
        help: family.help,
        series: family.series,
        samples: family.samples,
        sample_bytes: family.sample_bytes,
        metadata_bytes: family.metadata_bytes,
        labels: family
            .labels
            .into_iter()
            .map(|l| LabelInventory {
                cardinality: l.sketch.estimate(),
                sketch: l.sketch.encode(),
                name: l.name,
                examples: l.examples,
                masked: l.masked,
                series: l.series,
            })
            .collect(),
        bucket_bounds: family.bucket_bounds,
        bucket_count: family.bucket_count,
        content_hash: family.content_hash,
        labels_omitted: family.labels_omitted,
    }
}

/// About the encoded size of a family: its bytes plus a few per field.
fn approximate_size(f: &FamilyInventory) -> usize {
    let strings = f.name.len() + f.r#type.len() + f.unit.len() + f.help.len();
    let bounds: usize = f.bucket_bounds.iter().map(|b| b.len() + 2).sum();
    let labels: usize = f
        .labels
        .iter()
        .map(|l| {
            let examples: usize = l.examples.iter().map(|e| e.len() + 2).sum();
            l.name.len() + l.sketch.len() + examples + 32
        })
        .sum();
    strings + bounds + labels + 64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::Format;
    use crate::inventory::collector::CollectorOptions;

    fn scrape(body: &str) -> ScrapeInventory {
        let mut inv = ScrapeInventory::new(CollectorOptions::new(Format::Text));
        inv.push(body.as_bytes());
        inv.finish();
        inv
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn uuid(i: u32) -> String {
        format!("{i:08x}-0000-4000-8000-{:012x}", u64::from(i) * 7919)
    }

    /// A scrape of `users` sessions, each with its own uuid.
    fn sessions(from: u32, to: u32) -> String {
        let mut body = String::from("# TYPE active_sessions gauge\n");
        for i in from..to {
            body.push_str(&format!(
                "active_sessions{{user_id=\"{}\",region=\"eu\"}} 1\n",
                uuid(i)
            ));
        }
        body.push_str("# TYPE up gauge\nup{instance=\"10.0.0.7:9100\"} 1\n");
        body
    }

    fn family<'a>(report: &'a InventoryReport, name: &str) -> &'a FamilyInventory {
        report
            .families
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    fn label<'a>(family: &'a FamilyInventory, name: &str) -> &'a LabelInventory {
        family.labels.iter().find(|l| l.name == name).unwrap()
    }

    #[test]
    fn sampling_takes_the_first_scrape_then_one_per_period() {
        let mut w = InventoryWindow::new(WindowOptions::default(), t(0));
        let start = Instant::now();
        assert_eq!(w.next_due(), None);
        assert!(w.should_inventory(start));
        assert!(!w.should_inventory(start), "claimed");
        assert!(!w.should_inventory(start + Duration::from_secs(59)));
        assert!(w.should_inventory(start + Duration::from_secs(60)));
        assert_eq!(w.next_due(), Some(start + Duration::from_secs(120)));
        // A new window keeps the cadence.
        let _ = w.take_report(t(300));
        assert!(!w.should_inventory(start + Duration::from_secs(61)));
    }

    #[test]
    fn uuids_over_scrapes_merge_and_examples_are_masked() {
        let mut w = InventoryWindow::new(WindowOptions::default(), t(0));
        for s in 0..5u32 {
            w.record_scrape();
            w.record_scrape();
            // 100 users per scrape, 500 over the window.
            w.absorb(
                scrape(&sessions(s * 100, s * 100 + 100)),
                t(u64::from(s) * 60),
            );
        }
        let report = w.take_report(t(300));
        assert_eq!(report.scrapes, 10);
        assert_eq!(report.scrapes_inventoried, 5);
        assert_eq!(
            (report.window_start_unix_ms, report.window_end_unix_ms),
            (unix_ms(t(0)), unix_ms(t(300)))
        );
        let f = family(&report, "active_sessions");
        assert_eq!(
            (f.r#type.as_str(), f.series, f.samples),
            ("gauge", 100, 100)
        );
        let users = label(f, "user_id");
        let error = (users.cardinality as f64 - 500.0).abs() / 500.0;
        assert!(error < 0.05, "{}", users.cardinality);
        assert_eq!(
            CardinalitySketch::decode(&users.sketch).unwrap().estimate(),
            users.cardinality
        );
        assert_eq!(users.series, 100);
        assert!(users.masked);
        assert_eq!(users.examples, ["<uuid>"], "three uuids, one shape");
        let region = label(f, "region");
        assert_eq!(
            (
                region.cardinality,
                region.examples.as_slice(),
                region.masked
            ),
            (1, &["eu".to_owned()][..], false)
        );
        let up = label(family(&report, "up"), "instance");
        assert_eq!(
            (up.examples.as_slice(), up.masked),
            (&["<ipv4>".to_owned()][..], true)
        );

        // The window starts over.
        let next = w.take_report(t(600));
        assert!(next.families.is_empty());
        assert_eq!(
            (next.scrapes, next.window_start_unix_ms),
            (0, unix_ms(t(300)))
        );
    }

    #[test]
    fn the_latest_scrape_wins_even_if_it_finishes_first() {
        let mut w = InventoryWindow::new(WindowOptions::default(), t(0));
        w.absorb(scrape("x{a=\"new\"} 1\nx{a=\"new2\"} 1\n"), t(120));
        w.absorb(scrape("x{a=\"old\"} 1\n"), t(60));
        let report = w.take_report(t(300));
        let x = family(&report, "x");
        assert_eq!(x.series, 2);
        let a = label(x, "a");
        assert_eq!(a.cardinality, 3, "sketches merge whatever the order");
        assert_eq!(a.examples, ["new", "new2"]);
    }

    #[test]
    fn reports_keep_the_largest_families_and_count_the_rest() {
        let opts = WindowOptions {
            max_report_families: 3,
            ..WindowOptions::default()
        };
        let mut w = InventoryWindow::new(opts, t(0));
        let mut body = String::new();
        for i in 0..10 {
            for j in 0..=i {
                body.push_str(&format!("family_{i}{{n=\"{j}\"}} 1\n"));
            }
        }
        w.absorb(scrape(&body), t(1));
        let report = w.take_report(t(2));
        let names: Vec<&str> = report.families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["family_9", "family_8", "family_7"]);
        assert_eq!(report.families_omitted, 7);

        // The size budget bounds reports too; the largest always goes.
        let opts = WindowOptions {
            max_report_bytes: 1,
            ..WindowOptions::default()
        };
        let mut w = InventoryWindow::new(opts, t(0));
        w.absorb(scrape(&body), t(1));
        let report = w.take_report(t(2));
        assert_eq!(report.families.len(), 1);
        assert_eq!(report.families_omitted, 9);

        // Families a scrape or the window left out are counted.
        let opts = WindowOptions {
            max_window_families: 2,
            ..WindowOptions::default()
        };
        let mut w = InventoryWindow::new(opts, t(0));
        let mut limited = CollectorOptions::new(Format::Text);
        limited.max_families = 4;
        let mut inv = ScrapeInventory::new(limited);
        inv.push(body.as_bytes());
        w.absorb(inv, t(1));
        let report = w.take_report(t(2));
        assert_eq!(report.families.len(), 2);
        assert_eq!(report.families_omitted, 6 + 2);
    }

    #[test]
    fn restore_loses_nothing() {
        let mut w = InventoryWindow::new(WindowOptions::default(), t(0));
        w.record_scrapes(4);
        w.absorb(scrape(&sessions(0, 300)), t(10));
        let failed = w.take_report(t(300));

        // Meanwhile: more scrapes, other users, a new family.
        w.record_scrapes(3);
        w.absorb(scrape(&format!("{}extra 1\n", sessions(300, 320))), t(400));
        w.restore(failed.clone());
        let merged = w.take_report(t(600));
        assert_eq!(merged.window_start_unix_ms, failed.window_start_unix_ms);
        assert_eq!(merged.window_end_unix_ms, unix_ms(t(600)));
        assert_eq!((merged.scrapes, merged.scrapes_inventoried), (7, 2));
        let f = family(&merged, "active_sessions");
        assert_eq!(f.series, 20, "the newer scrape's count");
        let users = label(f, "user_id");
        let error = (users.cardinality as f64 - 320.0).abs() / 320.0;
        assert!(error < 0.05, "{}", users.cardinality);
        assert!(family(&merged, "extra").labels.is_empty());
        assert_eq!(merged.families.len(), 3);

        // A report restored into an empty window comes back as it was.
        let mut empty = InventoryWindow::new(WindowOptions::default(), t(700));
        empty.restore(failed.clone());
        let mut again = empty.take_report(t(300));
        let mut original = failed;
        again.families.sort_by(|a, b| a.name.cmp(&b.name));
        original.families.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(again, original);
    }
}

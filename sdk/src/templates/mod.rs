//! Streaming log-template mining (Drain), so that log records are
//! classified once per event type rather than once per line.
//!
//! [`Miner::observe`] masks a body ([`mask_line`]: numbers, ids, addresses,
//! times become `<num>`, `<uuid>`, `<ip>`, `<ts>`…), walks a fixed-depth
//! prefix tree to a leaf of candidate clusters, and joins the most similar
//! one if at least `similarity` of the positions match (a `<*>` matches any
//! token); the positions that differ become `<*>`. Otherwise the line starts
//! a new cluster. Memory is bounded: at most `max_clusters` templates (lines
//! that would start another are counted as overflow), `max_examples` short
//! redacted examples each, bodies tokenised up to
//! [`MAX_BODY_BYTES`](mask::MAX_BODY_BYTES) and [`MAX_TOKENS`](mask::MAX_TOKENS).
//!
//! # Fingerprints
//!
//! A template's fingerprint is [`fingerprint`]`(service, text)` of its text
//! *when the cluster was created*, and never changes afterwards, even as the
//! text generalises: the control plane caches classifications under it. It
//! is a fixed function of the service and the masked, redacted text, so
//! every edge, replica and version that starts the template from the same
//! masked line gets the same value. A cluster started from a line whose
//! variable part is an unmasked word (`user=alice` rather than `user=bob`)
//! gets another one; [`Template::text_fingerprint`] fingerprints the current
//! text instead and converges once the templates have generalised.
//!
//! # Merging clusters
//!
//! When a template generalises until it covers another cluster of its leaf
//! (every line of one would now match the other), the two merge: the older
//! cluster survives with the more general text and the summed counts, and
//! lists the other's fingerprint in [`Template::merged_from`];
//! [`Miner::get`] resolves either fingerprint, and [`Delta::merges`] reports
//! the merge once. Without it the specific cluster would keep its own lines
//! and two fingerprints would name one event type.
//!
//! # What the miner does not do
//!
//! Drain only compares lines of the same length, and only under the same
//! first `depth - 2` words: an event type whose leading words vary
//! (`alice logged in`, `bob logged in`) yields a template per word up to
//! `max_children`, and lines that differ by a constant word further along
//! (`payment for order <num> accepted` / `… declined`) merge into one
//! template with `<*>` there when the rest is similar enough.

mod mask;
mod pattern;
mod redact;
mod tree;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

pub use mask::{MAX_BODY_BYTES, MAX_TOKENS, Mask, Token, TokenKind, mask_line, truncate};
pub use redact::{
    Finding, Sensitive, example as redacted_example, is_sensitive, recognise, redact,
};

use mask::MaskedLine;
use pattern::Pattern;
use tree::Tree;

/// Bytes kept of each example line.
pub const MAX_EXAMPLE_BYTES: usize = 512;
/// Fingerprints of merged clusters a template keeps in `merged_from`.
pub const MAX_MERGED_FROM: usize = 32;

/// The miner's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MinerConfig {
    /// Depth of the prefix tree, root and length levels included: lines
    /// are only compared under the same first `depth - 2` tokens.
    pub depth: usize,
    /// Fraction of equal positions from which a line joins a template.
    pub similarity: f64,
    /// Children of a tree node before new words share its `<*>` child.
    pub max_children: usize,
    /// Templates kept; lines that would start another count as overflow.
    pub max_clusters: usize,
    /// Redacted example lines kept per template.
    pub max_examples: usize,
}

impl Default for MinerConfig {
    fn default() -> Self {
        MinerConfig {
            depth: 4,
            similarity: 0.5,
            max_children: 100,
            max_clusters: 10_000,
            max_examples: 3,
        }
    }
}

/// A [`MinerConfig`] value out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("depth must be between 3 and 16, got {0}")]
    Depth(usize),
    #[error("similarity must be in (0, 1], got {0}")]
    Similarity(f64),
    #[error("max_children must be at least 2, got {0}")]
    MaxChildren(usize),
    #[error("max_clusters must be between 1 and {max}, got {0}", max = u32::MAX / 2)]
    MaxClusters(usize),
    #[error("max_examples must be at most 100, got {0}")]
    MaxExamples(usize),
}

impl MinerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(3..=16).contains(&self.depth) {
            return Err(ConfigError::Depth(self.depth));
        }
        if !(self.similarity > 0.0 && self.similarity <= 1.0) {
            return Err(ConfigError::Similarity(self.similarity));
        }
        if self.max_children < 2 {
            return Err(ConfigError::MaxChildren(self.max_children));
        }
        if self.max_clusters == 0 || self.max_clusters > (u32::MAX / 2) as usize {
            return Err(ConfigError::MaxClusters(self.max_clusters));
        }
        if self.max_examples > 100 {
            return Err(ConfigError::MaxExamples(self.max_examples));
        }
        Ok(())
    }
}

/// One event type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// 16 hex digits, fixed when the template was created: see the module
    /// documentation.
    pub fingerprint: String,
    pub service: String,
    /// The current template: masked, generalised, redacted.
    pub text: String,
    /// Lines seen.
    pub count: u64,
    /// Body bytes seen.
    pub bytes: u64,
    /// The first severity given with a line of the template.
    pub severity: Option<String>,
    /// Up to `max_examples` distinct lines, redacted and cut to
    /// [`MAX_EXAMPLE_BYTES`].
    pub examples: Vec<String>,
    /// Earliest and latest caller-supplied times, Unix milliseconds.
    pub first_seen: i64,
    pub last_seen: i64,
    /// Fingerprints of clusters merged into this one, oldest first, at most
    /// [`MAX_MERGED_FROM`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
}

impl Template {
    /// The fingerprint of the current text: equal for replicas whose
    /// templates generalised alike, whatever line each started from.
    pub fn text_fingerprint(&self) -> String {
        fingerprint(&self.service, &self.text)
    }
}

/// The stable fingerprint of a template: the 64-bit hash
/// [`crate::sketch::hash`] (FNV-1a, then the splitmix64 finaliser) of the
/// UTF-8 bytes of `service`, a 0x1F unit separator, and `text`, as 16
/// lower-case hex digits. Fixed across builds, versions and replicas;
/// changing it invalidates every cached classification.
pub fn fingerprint(service: &str, text: &str) -> String {
    let mut bytes = Vec::with_capacity(service.len() + 1 + text.len());
    bytes.extend_from_slice(service.as_bytes());
    bytes.push(0x1f);
    bytes.extend_from_slice(text.as_bytes());
    format!("{:016x}", crate::sketch::hash(&bytes))
}

/// Whether template text `general` accepts every line `specific` accepts:
/// both have the same tokens, except where `general` has a wildcard
/// (`<*>`, or `user=<*>` keeping a fixed prefix and suffix) that the
/// corresponding token of `specific` fits.
///
/// The control plane uses it to recognise a template that a restarted or
/// another miner started from a different line of a known event type, so
/// the event type keeps its stored fingerprint (and its classification).
pub fn covers(general: &str, specific: &str) -> bool {
    let mut g = general.split(' ');
    let mut s = specific.split(' ');
    loop {
        match (g.next(), s.next()) {
            (None, None) => return true,
            (Some(gt), Some(st)) => {
                let fits = match gt.find(pattern::WILDCARD) {
                    None => gt == st,
                    Some(at) => {
                        let (prefix, suffix) = (&gt[..at], &gt[at + pattern::WILDCARD.len()..]);
                        st.len() >= prefix.len() + suffix.len()
                            && st.starts_with(prefix)
                            && st.ends_with(suffix)
                    }
                };
                if !fits {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// Lines that found no template because the miner was full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overflow {
    pub count: u64,
    pub bytes: u64,
}

/// A template's activity since the previous [`Miner::take_delta`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateDelta {
    pub fingerprint: String,
    pub count: u64,
    pub bytes: u64,
    /// Earliest and latest times of the lines in this delta (0 when none).
    pub first_seen: i64,
    pub last_seen: i64,
    /// The template is new since the previous delta.
    pub created: bool,
    /// Its text changed or it absorbed another cluster since the previous
    /// delta: fetch it again with [`Miner::get`].
    pub changed: bool,
}

/// Cluster `from` merged into cluster `into`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merge {
    pub from: String,
    pub into: String,
}

/// What happened since the previous [`Miner::take_delta`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// Templates with lines, new or changed, oldest first.
    pub templates: Vec<TemplateDelta>,
    pub merges: Vec<Merge>,
    pub overflow: Overflow,
}

#[derive(Debug, Default)]
struct Window {
    count: u64,
    bytes: u64,
    first_seen: i64,
    last_seen: i64,
    created: bool,
    changed: bool,
}

impl Window {
    fn add(&mut self, count: u64, bytes: u64, first: i64, last: i64) {
        if self.count == 0 {
            self.first_seen = first;
            self.last_seen = last;
        } else {
            self.first_seen = self.first_seen.min(first);
            self.last_seen = self.last_seen.max(last);
        }
        self.count += count;
        self.bytes += bytes;
    }
}

#[derive(Debug)]
struct Cluster {
    template: Template,
    pattern: Pattern,
    service: u32,
    leaf: u32,
    /// Creation order, which decides the survivor of a merge.
    seq: u64,
    window: Window,
}

/// A streaming template miner. Not shared between threads: run one per
/// stream and compare fingerprints.
#[derive(Debug)]
pub struct Miner {
    config: MinerConfig,
    tree: Tree,
    services: FxHashMap<Box<str>, u32>,
    slots: Vec<Option<Cluster>>,
    free: Vec<u32>,
    live: usize,
    next_seq: u64,
    /// Live and merged fingerprints to the slot that now holds them.
    by_fingerprint: FxHashMap<String, u32>,
    /// Masked line (hash) to the cluster it last joined. Repeated lines are
    /// most of any stream; this skips the leaf scan for them and keeps a
    /// masked line in one cluster.
    recent: FxHashMap<u64, u32>,
    recent_cap: usize,
    overflow: Overflow,
    window_overflow: Overflow,
    merges: Vec<Merge>,
    line: MaskedLine,
}

impl Miner {
    pub fn new(config: MinerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Miner {
            tree: Tree::new(config.depth, config.max_children),
            recent_cap: (config.max_clusters * 4).clamp(1024, 1 << 20),
            config,
            services: FxHashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            next_seq: 0,
            by_fingerprint: FxHashMap::default(),
            recent: FxHashMap::default(),
            overflow: Overflow::default(),
            window_overflow: Overflow::default(),
            merges: Vec::new(),
            line: MaskedLine::default(),
        })
    }

    pub fn config(&self) -> &MinerConfig {
        &self.config
    }

    /// Adds one line and returns its template, or `None` when the miner is
    /// full and the line counted as overflow.
    pub fn observe(
        &mut self,
        service: &str,
        body: &str,
        severity: Option<&str>,
        at_unix_ms: i64,
    ) -> Option<&Template> {
        let mut line = std::mem::take(&mut self.line);
        line.fill(body);
        let slot = self.place(service, &line);
        self.line = line;
        let Some(slot) = slot else {
            let bytes = body.len() as u64;
            for o in [&mut self.overflow, &mut self.window_overflow] {
                o.count += 1;
                o.bytes += bytes;
            }
            return None;
        };
        let max_examples = self.config.max_examples;
        let c = self.slots.get_mut(slot as usize)?.as_mut()?;
        record(c, body, severity, at_unix_ms, max_examples);
        Some(&c.template)
    }

    /// The live templates, oldest first.
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.slots
            .iter()
            .flatten()
            .map(|c| (c.seq, &c.template))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_values()
    }

    /// The template holding `fingerprint`, its own or one merged into it.
    pub fn get(&self, fingerprint: &str) -> Option<&Template> {
        let slot = *self.by_fingerprint.get(fingerprint)?;
        Some(&self.cluster(slot)?.template)
    }

    /// Live templates.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Lines counted as overflow since the miner started.
    pub fn overflow(&self) -> Overflow {
        self.overflow
    }

    /// Counts, new and changed templates, and merges since the previous
    /// call.
    pub fn take_delta(&mut self) -> Delta {
        let mut templates: Vec<(u64, TemplateDelta)> = Vec::new();
        for c in self.slots.iter_mut().flatten() {
            let w = std::mem::take(&mut c.window);
            if w.count == 0 && !w.created && !w.changed {
                continue;
            }
            templates.push((
                c.seq,
                TemplateDelta {
                    fingerprint: c.template.fingerprint.clone(),
                    count: w.count,
                    bytes: w.bytes,
                    first_seen: w.first_seen,
                    last_seen: w.last_seen,
                    created: w.created,
                    changed: w.changed,
                },
            ));
        }
        templates.sort_by_key(|(seq, _)| *seq);
        Delta {
            templates: templates.into_iter().map(|(_, t)| t).collect(),
            merges: std::mem::take(&mut self.merges),
            overflow: std::mem::take(&mut self.window_overflow),
        }
    }

    fn cluster(&self, slot: u32) -> Option<&Cluster> {
        self.slots.get(slot as usize)?.as_ref()
    }

    fn cluster_mut(&mut self, slot: u32) -> Option<&mut Cluster> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    /// The slot of the cluster `line` joins, after joining it.
    fn place(&mut self, service: &str, line: &MaskedLine) -> Option<u32> {
        if let Some(&sid) = self.services.get(service) {
            let key = recent_key(sid, &line.text);
            if let Some(&slot) = self.recent.get(&key)
                && self
                    .cluster(slot)
                    .is_some_and(|c| c.service == sid && c.pattern.matches_fully(line))
            {
                return Some(slot);
            }
            if let Some(slot) = self.best_match(sid, line) {
                let slot = if self.join(slot, line) {
                    self.fold(slot)
                } else {
                    slot
                };
                self.remember(key, slot);
                return Some(slot);
            }
        }
        let slot = self.create(service, line)?;
        let sid = self.cluster(slot)?.service;
        self.remember(recent_key(sid, &line.text), slot);
        Some(slot)
    }

    fn remember(&mut self, key: u64, slot: u32) {
        if self.recent.len() >= self.recent_cap {
            self.recent.clear();
        }
        self.recent.insert(key, slot);
    }

    fn best_match(&self, sid: u32, line: &MaskedLine) -> Option<u32> {
        let leaf = self.tree.find(sid, line)?;
        let needed = self.config.similarity * line.len() as f64;
        let mut best: Option<(pattern::Score, u32)> = None;
        for &slot in self.tree.clusters(leaf) {
            let Some(c) = self.cluster(slot) else {
                continue;
            };
            let score = c.pattern.score(line);
            if (score.matched as f64) < needed {
                continue;
            }
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, slot));
            }
        }
        best.map(|(_, slot)| slot)
    }

    /// Generalises `slot`'s template to cover `line`; true if it changed.
    fn join(&mut self, slot: u32, line: &MaskedLine) -> bool {
        let Some(c) = self.cluster_mut(slot) else {
            return false;
        };
        let changed = c.pattern.absorb(line);
        if changed {
            c.template.text = redact(c.pattern.text());
            c.window.changed = true;
        }
        changed
    }

    fn create(&mut self, service: &str, line: &MaskedLine) -> Option<u32> {
        let pattern = Pattern::from_line(line);
        let text = redact(pattern.text());
        let fp = fingerprint(service, &text);
        // Another cluster already published this text (two lines whose
        // differences were redacted away): one fingerprint, one template.
        if let Some(&slot) = self.by_fingerprint.get(&fp)
            && self
                .cluster(slot)
                .is_some_and(|c| c.pattern.token_count() == line.len())
        {
            return Some(if self.join(slot, line) {
                self.fold(slot)
            } else {
                slot
            });
        }
        if self.live >= self.config.max_clusters {
            return None;
        }
        let sid = match self.services.get(service) {
            Some(sid) => *sid,
            None => {
                let sid = self.services.len() as u32;
                self.services.insert(service.into(), sid);
                sid
            }
        };
        let leaf = self.tree.insert(sid, line);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_fingerprint.entry(fp.clone()).or_insert(slot);
        self.slots[slot as usize] = Some(Cluster {
            template: Template {
                fingerprint: fp,
                service: service.to_owned(),
                text,
                count: 0,
                bytes: 0,
                severity: None,
                examples: Vec::new(),
                first_seen: 0,
                last_seen: 0,
                merged_from: Vec::new(),
            },
            pattern,
            service: sid,
            leaf,
            seq,
            window: Window {
                created: true,
                ..Window::default()
            },
        });
        self.tree.add(leaf, slot);
        self.live += 1;
        Some(slot)
    }

    /// Merges clusters of `slot`'s leaf that its template now covers, or
    /// that cover it; returns the surviving slot.
    fn fold(&mut self, mut slot: u32) -> u32 {
        loop {
            let Some(c) = self.cluster(slot) else {
                return slot;
            };
            let partner = self.tree.clusters(c.leaf).iter().copied().find(|&o| {
                o != slot
                    && self.cluster(o).is_some_and(|other| {
                        c.pattern.subsumes(&other.pattern) || other.pattern.subsumes(&c.pattern)
                    })
            });
            let Some(other) = partner else {
                return slot;
            };
            slot = self.merge(slot, other);
        }
    }

    /// Merges two clusters of one leaf; returns the survivor, the older.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        let (Some(ca), Some(cb)) = (self.cluster(a), self.cluster(b)) else {
            return a;
        };
        let (keep, gone) = if ca.seq <= cb.seq { (a, b) } else { (b, a) };
        let Some(g) = self.slots.get_mut(gone as usize).and_then(Option::take) else {
            return a;
        };
        self.tree.remove(g.leaf, gone);
        self.free.push(gone);
        self.live -= 1;
        let max_examples = self.config.max_examples;
        let Some(k) = self.cluster_mut(keep) else {
            return keep;
        };
        if g.pattern.subsumes(&k.pattern) {
            k.pattern = g.pattern;
            k.template.text.clone_from(&g.template.text);
        }
        let (kt, gt) = (&mut k.template, g.template);
        if gt.count > 0 {
            if kt.count == 0 {
                kt.first_seen = gt.first_seen;
                kt.last_seen = gt.last_seen;
            } else {
                kt.first_seen = kt.first_seen.min(gt.first_seen);
                kt.last_seen = kt.last_seen.max(gt.last_seen);
            }
        }
        kt.count += gt.count;
        kt.bytes += gt.bytes;
        if kt.severity.is_none() {
            kt.severity = gt.severity;
        }
        for ex in gt.examples {
            if kt.examples.len() < max_examples && !kt.examples.contains(&ex) {
                kt.examples.push(ex);
            }
        }
        kt.merged_from.push(gt.fingerprint.clone());
        kt.merged_from.extend(gt.merged_from.iter().cloned());
        let mut dropped = Vec::new();
        if kt.merged_from.len() > MAX_MERGED_FROM {
            let excess = kt.merged_from.len() - MAX_MERGED_FROM;
            dropped = kt.merged_from.drain(..excess).collect();
        }
        let w = &mut k.window;
        if g.window.count > 0 {
            w.add(
                g.window.count,
                g.window.bytes,
                g.window.first_seen,
                g.window.last_seen,
            );
        }
        w.changed = true;
        let into = k.template.fingerprint.clone();
        for fp in dropped {
            self.by_fingerprint.remove(&fp);
        }
        for fp in std::iter::once(&gt.fingerprint).chain(&gt.merged_from) {
            if let Some(s) = self.by_fingerprint.get_mut(fp.as_str()) {
                *s = keep;
            }
        }
        self.merges.push(Merge {
            from: gt.fingerprint,
            into,
        });
        keep
    }
}

fn record(c: &mut Cluster, body: &str, severity: Option<&str>, at: i64, max_examples: usize) {
    let t = &mut c.template;
    if t.count == 0 {
        t.first_seen = at;
        t.last_seen = at;
    } else {
        t.first_seen = t.first_seen.min(at);
        t.last_seen = t.last_seen.max(at);
    }
    t.count += 1;
    t.bytes += body.len() as u64;
    if t.severity.is_none()
        && let Some(s) = severity
    {
        t.severity = Some(s.to_owned());
    }
    if t.examples.len() < max_examples {
        let ex = redact::example(body, MAX_EXAMPLE_BYTES);
        if !t.examples.contains(&ex) {
            t.examples.push(ex);
        }
    }
    c.window.add(1, body.len() as u64, at, at);
}

fn recent_key(service: u32, text: &str) -> u64 {
    crate::sketch::wide_hash(text.as_bytes())
        ^ u64::from(service).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[cfg(test)]
mod tests;

//! Statistics reports that must reach the control plane exactly once.
//!
//! Deltas taken from the registry are collected into an *open* report.
//! When a report is about to be sent it is *sealed*: it gets the next
//! sequence number of this process's session and never changes again, so a
//! retry (after a broken stream, a failed poll, a restarted control plane)
//! repeats the same `(session, seq)` and the control plane, which stores a
//! report and its sequence number in one transaction, counts it once.
//!
//! Sealed reports wait until acknowledged. At most [`MAX_SEALED`] wait (one:
//! like a snapshot, one report is in flight at a time); meanwhile new deltas
//! accumulate in the open report, merged, never dropped, so the buffer's size
//! is bounded by the number of policies, not by how long the control plane
//! has been away.
//!
//! A report also carries the volume the Edge saw in its interval (spec
//! 1.7.1 `VolumeStats`), sealed with it: a report of volume alone is a
//! report too, and its volume is repeated exactly when the report is.

use std::collections::{BTreeMap, VecDeque};

use tero_sdk::engine::{StatsDelta, VolumeDelta};

/// Sealed, unacknowledged reports kept at most.
pub const MAX_SEALED: usize = 1;

/// One report: per policy id, the deltas it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub seq: u64,
    pub deltas: BTreeMap<String, StatsDelta>,
    pub volume: VolumeDelta,
}

#[derive(Debug)]
pub struct Outbox {
    session: String,
    next_seq: u64,
    sealed: VecDeque<Report>,
    open: BTreeMap<String, StatsDelta>,
    open_volume: VolumeDelta,
}

impl Outbox {
    /// A new session: random, so a restarted Edge starting again at seq 1
    /// is not mistaken for a retry.
    pub fn new() -> Self {
        let mut bytes = [0u8; 8];
        for b in &mut bytes {
            *b = fastrand::u8(..);
        }
        Self::with_session(hex::encode(bytes))
    }

    pub fn with_session(session: String) -> Self {
        Outbox {
            session,
            next_seq: 1,
            sealed: VecDeque::new(),
            open: BTreeMap::new(),
            open_volume: VolumeDelta::default(),
        }
    }

    pub fn session(&self) -> &str {
        &self.session
    }

    /// Adds deltas to the open report.
    pub fn add(&mut self, deltas: BTreeMap<String, StatsDelta>) {
        for (id, delta) in deltas {
            if !delta.is_zero() {
                self.open.entry(id).or_default().merge(&delta);
            }
        }
    }

    /// Adds volume to the open report.
    pub fn add_volume(&mut self, volume: &VolumeDelta) {
        self.open_volume.merge(volume);
    }

    fn open_is_empty(&self) -> bool {
        self.open.is_empty() && self.open_volume.is_zero()
    }

    /// Seals the open report if it holds anything and there is room.
    pub fn seal(&mut self) {
        if self.open_is_empty() || self.sealed.len() >= MAX_SEALED {
            return;
        }
        let report = Report {
            seq: self.next_seq,
            deltas: std::mem::take(&mut self.open),
            volume: std::mem::take(&mut self.open_volume),
        };
        self.next_seq += 1;
        self.sealed.push_back(report);
    }

    /// The oldest unacknowledged report.
    pub fn oldest(&self) -> Option<&Report> {
        self.sealed.front()
    }

    /// Every unacknowledged report, oldest first.
    #[cfg(test)]
    pub fn pending(&self) -> impl Iterator<Item = &Report> {
        self.sealed.iter()
    }

    /// Reports up to and including `seq` are stored.
    pub fn acknowledge(&mut self, seq: u64) {
        while self.sealed.front().is_some_and(|r| r.seq <= seq) {
            self.sealed.pop_front();
        }
    }

    /// Nothing sealed nor open.
    pub fn is_empty(&self) -> bool {
        self.sealed.is_empty() && self.open_is_empty()
    }

    #[cfg(test)]
    pub fn sealed_len(&self) -> usize {
        self.sealed.len()
    }
}

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(id: &str, n: u64) -> BTreeMap<String, StatsDelta> {
        BTreeMap::from([(
            id.to_owned(),
            StatsDelta {
                match_hits: n,
                ..Default::default()
            },
        )])
    }

    #[test]
    fn sealed_reports_never_change_and_leave_only_when_acknowledged() {
        let mut out = Outbox::with_session("s".into());
        out.seal();
        assert!(out.oldest().is_none(), "nothing to seal");
        out.add(hits("a", 2));
        out.add(hits("a", 3));
        out.seal();
        out.add(hits("b", 1));
        assert_eq!(out.oldest().unwrap().seq, 1);
        assert_eq!(out.oldest().unwrap().deltas["a"].match_hits, 5);
        out.seal();
        out.add(hits("a", 7));
        // A retry resends seq 1 unchanged: the new hits wait in the open report.
        assert_eq!(out.oldest().unwrap().deltas.len(), 1);
        assert_eq!(out.sealed_len(), 1);
        out.acknowledge(1);
        assert!(out.oldest().is_none());
        assert!(!out.is_empty(), "the open report is still there");
        out.seal();
        let second = out.oldest().unwrap();
        assert_eq!(second.seq, 2);
        assert_eq!(
            (second.deltas["a"].match_hits, second.deltas["b"].match_hits),
            (7, 1)
        );
        out.acknowledge(5);
        assert!(out.is_empty());
    }

    #[test]
    fn past_the_bound_deltas_are_merged_not_dropped() {
        let mut out = Outbox::with_session("s".into());
        for _ in 0..MAX_SEALED + 10 {
            out.add(hits("a", 1));
            out.seal();
        }
        assert_eq!(out.sealed_len(), MAX_SEALED);
        let sealed: u64 = out.pending().map(|r| r.deltas["a"].match_hits).sum();
        assert_eq!(sealed, MAX_SEALED as u64);
        out.acknowledge(MAX_SEALED as u64);
        out.seal();
        assert_eq!(
            out.oldest().unwrap().deltas["a"].match_hits,
            10,
            "merged while full"
        );
    }

    fn points(n: u64) -> VolumeDelta {
        VolumeDelta {
            metric_data_points: n,
            ..Default::default()
        }
    }

    #[test]
    fn volume_is_sealed_with_its_report_and_alone_makes_one() {
        let mut out = Outbox::with_session("s".into());
        out.add_volume(&points(4));
        assert!(!out.is_empty());
        out.seal();
        let first = out.oldest().unwrap();
        assert_eq!((first.seq, first.volume.metric_data_points), (1, 4));
        assert!(first.deltas.is_empty(), "a report of volume alone");
        // While it waits, new volume goes to the next report, merged.
        out.add_volume(&points(2));
        out.add(hits("a", 1));
        out.seal();
        out.add_volume(&points(3));
        assert_eq!(out.oldest().unwrap().volume.metric_data_points, 4);
        out.acknowledge(1);
        out.seal();
        let second = out.oldest().unwrap();
        assert_eq!((second.seq, second.volume.metric_data_points), (2, 5));
        assert_eq!(second.deltas["a"].match_hits, 1);
        out.acknowledge(2);
        assert!(out.is_empty());
    }

    #[test]
    fn sessions_differ_per_process() {
        assert_ne!(Outbox::new().session(), Outbox::new().session());
    }
}

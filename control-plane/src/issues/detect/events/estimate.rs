//! How much of a service's log or span volume an event type (or a field of
//! it) is, and what a policy acting on it removes.
//!
//! Edges sample records under a budget, so an event type's `count` and
//! `bytes` say how it compares with the other event types of its service,
//! not how many records it has. The volume the service's edges reported
//! (`VolumeStats`) says that, so:
//!
//! - records/day = (count ÷ Σ count of the service's event types of the same
//!   kind) × the service's log records (or spans) per day;
//! - bytes/day = (bytes ÷ Σ bytes of those event types) × the service's log
//!   (or span) bytes per day, or the record share when no bytes were
//!   sampled.
//!
//! Confidence is `medium` (a share of a sample, applied to measured volume),
//! or `low` when some of the service's edges reported no volume. When none
//! did, the rate at which the edges sampled the event type stands in:
//! count ÷ (last seen − first seen, at least a minute) per day, at `low`
//! confidence; an event type seen at one instant only has no measurable
//! rate, and raises nothing.
//!
//! What a policy removes is that volume times the fraction its keep drops
//! ([`Removal`]); its cost per month is bytes/day × 30 ÷ 1e9 ×
//! `--price-per-gb-logs`.

use tero_proto::controlplane::{EventType, ImpactEstimate};

pub use super::super::estimate::{LOW, MEDIUM};
use super::super::{Prices, Severity, Thresholds};
use super::ServiceVolume;

const MS_PER_DAY: f64 = 86_400_000.0;
const SECONDS_PER_DAY: f64 = 86_400.0;
const DAYS_PER_MONTH: f64 = 30.0;
const BYTES_PER_GB: f64 = 1e9;
/// The shortest activity a fallback rate is computed over, so that a few
/// records a millisecond apart are not extrapolated to millions a day.
const MIN_FALLBACK_MS: i64 = 60_000;

/// Log records or spans: which half of [`ServiceVolume`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Log,
    Span,
}

/// The sampled totals of one signal over the service's event types: the
/// denominators of every share.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub count: u64,
    pub bytes: u64,
}

impl Totals {
    pub fn add(&mut self, event: &EventType) {
        self.count = self.count.saturating_add(event.count);
        self.bytes = self.bytes.saturating_add(event.bytes);
    }
}

/// A subject's measured volume.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Volume {
    pub records_per_day: f64,
    pub bytes_per_day: f64,
    /// Share of the service's sampled records of the signal (0..1).
    pub share: f64,
    pub confidence: &'static str,
}

impl Volume {
    pub const ZERO: Volume = Volume {
        records_per_day: 0.0,
        bytes_per_day: 0.0,
        share: 0.0,
        confidence: MEDIUM,
    };

    /// Sums the volumes of several event types' parts; the confidence is
    /// the lowest.
    pub fn plus(self, other: Volume) -> Volume {
        Volume {
            records_per_day: self.records_per_day + other.records_per_day,
            bytes_per_day: self.bytes_per_day + other.bytes_per_day,
            share: self.share + other.share,
            confidence: if self.confidence == LOW || other.confidence == LOW {
                LOW
            } else {
                MEDIUM
            },
        }
    }

    pub fn measurable(&self) -> bool {
        self.records_per_day.is_finite() && self.records_per_day > 0.0
    }
}

/// The volume of `records` sampled records carrying `bytes` bytes out of
/// `event`'s (the whole event type: `event.count`, `event.bytes`), given
/// the service's totals and reported volume. `None` when nothing is
/// measurable.
pub fn part_of(
    event: &EventType,
    records: u64,
    bytes: u64,
    signal: Signal,
    totals: Totals,
    volume: &ServiceVolume,
) -> Option<Volume> {
    if records == 0 || totals.count == 0 {
        return None;
    }
    let (service_records, service_bytes) = match signal {
        Signal::Log => (volume.log_records_per_day, volume.log_bytes_per_day),
        Signal::Span => (volume.spans_per_day, volume.span_bytes_per_day),
    };
    let share = records as f64 / totals.count as f64;
    let bytes_share = if totals.bytes > 0 {
        bytes as f64 / totals.bytes as f64
    } else {
        share
    };
    let v = if service_records.is_finite() && service_records > 0.0 {
        let complete = volume.edges_reporting as usize >= volume.edges.len();
        Volume {
            records_per_day: share * service_records,
            bytes_per_day: if service_bytes.is_finite() {
                bytes_share * service_bytes.max(0.0)
            } else {
                0.0
            },
            share,
            confidence: if complete { MEDIUM } else { LOW },
        }
    } else {
        let active = event
            .last_seen_unix_ms
            .saturating_sub(event.first_seen_unix_ms);
        if active <= 0 {
            return None;
        }
        let days = active.max(MIN_FALLBACK_MS) as f64 / MS_PER_DAY;
        Volume {
            records_per_day: records as f64 / days,
            bytes_per_day: bytes as f64 / days,
            share,
            confidence: LOW,
        }
    };
    v.measurable().then_some(v)
}

/// The whole event type.
pub fn event_volume(
    event: &EventType,
    signal: Signal,
    totals: Totals,
    volume: &ServiceVolume,
) -> Option<Volume> {
    part_of(event, event.count, event.bytes, signal, totals, volume)
}

/// What a keep removes of the records it matches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Removal {
    /// `none`, or a trace `percentage: 0`: everything matched.
    All,
    /// A fraction (0..1) of the matched records: `N%` keeps 1 − N/100.
    Fraction(f64),
    /// A rate limit of `per_second` records a second on each of `edges`
    /// edges: whatever exceeds it.
    Rate { per_second: f64, edges: u32 },
    /// Nothing: a transform that rewrites records.
    Nothing,
}

impl Removal {
    /// The fraction of `records_per_day` removed.
    pub fn fraction(self, records_per_day: f64) -> f64 {
        match self {
            Removal::All => 1.0,
            Removal::Fraction(f) => f.clamp(0.0, 1.0),
            Removal::Rate { per_second, edges } => {
                if records_per_day <= 0.0 {
                    return 0.0;
                }
                let kept = per_second * SECONDS_PER_DAY * f64::from(edges.max(1));
                ((records_per_day - kept) / records_per_day).clamp(0.0, 1.0)
            }
            Removal::Nothing => 0.0,
        }
    }
}

/// The estimate of a policy that matches `matched` and removes per
/// `removal`. A rewrite ([`Removal::Nothing`]) counts the records it
/// rewrites and saves `saved_bytes_per_day`.
pub fn estimate(
    matched: Volume,
    removal: Removal,
    saved_bytes_per_day: f64,
    prices: &Prices,
) -> ImpactEstimate {
    let (records, bytes) = match removal {
        Removal::Nothing => (matched.records_per_day, saved_bytes_per_day),
        _ => {
            let f = removal.fraction(matched.records_per_day);
            (matched.records_per_day * f, matched.bytes_per_day * f)
        }
    };
    let bytes = round(bytes);
    ImpactEstimate {
        series: 0,
        bytes_per_day: bytes,
        cost_per_month: cost_per_month(bytes, prices),
        confidence: matched.confidence.to_owned(),
        records_per_day: round(records),
    }
}

pub fn cost_per_month(bytes_per_day: u64, prices: &Prices) -> f64 {
    bytes_per_day as f64 * DAYS_PER_MONTH / BYTES_PER_GB * prices.per_gb_logs
}

/// The shared severity bands (see the metric estimate).
pub fn severity(cost_per_month: f64, thresholds: &Thresholds) -> Severity {
    super::super::estimate::severity(cost_per_month, thresholds)
}

pub fn round(x: f64) -> u64 {
    if x.is_finite() && x > 0.0 {
        x.round() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(count: u64, bytes: u64) -> EventType {
        EventType {
            count,
            bytes,
            first_seen_unix_ms: 0,
            last_seen_unix_ms: 3_600_000,
            ..Default::default()
        }
    }

    fn reported(records: f64, bytes: f64) -> ServiceVolume {
        ServiceVolume {
            log_records_per_day: records,
            log_bytes_per_day: bytes,
            edges: vec!["e-1".into(), "e-2".into()],
            edges_reporting: 2,
            ..Default::default()
        }
    }

    #[test]
    fn a_share_of_the_sample_applies_to_the_reported_volume() {
        let totals = Totals {
            count: 1_000,
            bytes: 200_000,
        };
        let v = event_volume(
            &event(250, 20_000),
            Signal::Log,
            totals,
            &reported(1e6, 4e8),
        )
        .unwrap();
        // A quarter of the records, a tenth of the bytes.
        assert!((v.records_per_day - 250_000.0).abs() < 1e-6);
        assert!((v.bytes_per_day - 4e7).abs() < 1e-3);
        assert!((v.share - 0.25).abs() < 1e-12);
        assert_eq!(v.confidence, MEDIUM);

        // Spans use the span half of the volume, which is zero here: the
        // sample's own rate stands in.
        let v = event_volume(
            &event(250, 20_000),
            Signal::Span,
            totals,
            &reported(1e6, 4e8),
        )
        .unwrap();
        // 250 records over an hour.
        assert!((v.records_per_day - 6_000.0).abs() < 1e-6);
        assert_eq!(v.confidence, LOW);
    }

    #[test]
    fn missing_edges_lower_the_confidence() {
        let mut volume = reported(1e6, 4e8);
        volume.edges_reporting = 1;
        let v = event_volume(
            &event(1, 1),
            Signal::Log,
            Totals { count: 2, bytes: 2 },
            &volume,
        )
        .unwrap();
        assert_eq!(v.confidence, LOW);
    }

    #[test]
    fn no_measurable_rate_means_no_volume() {
        let totals = Totals {
            count: 10,
            bytes: 10,
        };
        let none = ServiceVolume::default();
        let mut instant = event(10, 10);
        instant.last_seen_unix_ms = 0;
        assert_eq!(event_volume(&instant, Signal::Log, totals, &none), None);
        assert_eq!(event_volume(&event(0, 0), Signal::Log, totals, &none), None);
        // A few records a millisecond apart count over a minute.
        let mut burst = event(10, 100);
        burst.last_seen_unix_ms = 5;
        let v = event_volume(&burst, Signal::Log, totals, &none).unwrap();
        assert!((v.records_per_day - 14_400.0).abs() < 1e-6);
    }

    #[test]
    fn removals() {
        assert_eq!(Removal::All.fraction(10.0), 1.0);
        assert!((Removal::Fraction(0.9).fraction(10.0) - 0.9).abs() < 1e-12);
        // 1/s on two edges keeps 172 800 a day of 1 728 000.
        let rate = Removal::Rate {
            per_second: 1.0,
            edges: 2,
        };
        assert!((rate.fraction(1_728_000.0) - 0.9).abs() < 1e-12);
        assert_eq!(rate.fraction(1_000.0), 0.0);
        assert_eq!(Removal::Nothing.fraction(10.0), 0.0);
    }

    #[test]
    fn estimates_price_removed_bytes() {
        let matched = Volume {
            records_per_day: 1e6,
            bytes_per_day: 2e9,
            share: 0.5,
            confidence: MEDIUM,
        };
        let e = estimate(matched, Removal::Fraction(0.9), 0.0, &Prices::default());
        assert_eq!(e.records_per_day, 900_000);
        assert_eq!(e.bytes_per_day, 1_800_000_000);
        // 1.8 GB a day for 30 days at $0.50/GB.
        assert!((e.cost_per_month - 27.0).abs() < 1e-9);
        assert_eq!(e.series, 0);

        let rewrite = estimate(matched, Removal::Nothing, 1e8, &Prices::default());
        assert_eq!(rewrite.records_per_day, 1_000_000);
        assert_eq!(rewrite.bytes_per_day, 100_000_000);
    }
}

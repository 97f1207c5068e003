//! Impact estimates: what a recommended policy would remove, per day and per
//! month, priced with [`Prices`].
//!
//! - bytes/day = sample bytes per scrape × scrapes per minute × 1440. HELP
//!   and TYPE lines are left out: they are a small constant per family, and
//!   an estimate that errs low is verified sooner than one that errs high.
//! - A label-scoped drop removes the series carrying the label; their bytes
//!   are taken as that share of the family's bytes (series carrying the
//!   label ÷ family series), which assumes those series are of average size.
//! - cost/month = bytes/day × 30 ÷ 1e9 × per GB + series × per series-month.
//!
//! Confidence: `high` when every input is an exact count from the inventory
//! (family drops), `medium` when bytes are apportioned by share (label
//! drops), `low` when an input is missing (no scrape rate, or an edge that
//! does not report series per label, where the value count stands in).

use tero_proto::controlplane::{FamilyInventory, ImpactEstimate, LabelInventory};

use super::{Prices, Severity, Thresholds};

pub const HIGH: &str = "high";
pub const MEDIUM: &str = "medium";
pub const LOW: &str = "low";

const MINUTES_PER_DAY: f64 = 1440.0;
const DAYS_PER_MONTH: f64 = 30.0;
const BYTES_PER_GB: f64 = 1e9;

/// Bytes per day of `bytes_per_scrape` scraped `scrapes_per_minute` times a
/// minute.
pub fn bytes_per_day(bytes_per_scrape: u64, scrapes_per_minute: f64) -> u64 {
    if !scrapes_per_minute.is_finite() || scrapes_per_minute <= 0.0 {
        return 0;
    }
    (bytes_per_scrape as f64 * scrapes_per_minute * MINUTES_PER_DAY).round() as u64
}

pub fn cost_per_month(bytes_per_day: u64, series: u64, prices: &Prices) -> f64 {
    bytes_per_day as f64 * DAYS_PER_MONTH / BYTES_PER_GB * prices.per_gb
        + series as f64 * prices.per_series_month
}

/// Dropping the whole family.
pub fn family(
    family: &FamilyInventory,
    scrapes_per_minute: f64,
    prices: &Prices,
) -> ImpactEstimate {
    let bytes = bytes_per_day(family.sample_bytes, scrapes_per_minute);
    ImpactEstimate {
        series: family.series,
        bytes_per_day: bytes,
        cost_per_month: cost_per_month(bytes, family.series, prices),
        confidence: if bytes_per_day(1, scrapes_per_minute) == 0 {
            LOW
        } else {
            HIGH
        }
        .to_owned(),
        ..ImpactEstimate::default()
    }
}

/// Dropping the series of `family` that carry `label`.
pub fn label(
    family: &FamilyInventory,
    label: &LabelInventory,
    scrapes_per_minute: f64,
    prices: &Prices,
) -> ImpactEstimate {
    let (series, exact) = if label.series > 0 {
        (label.series.min(family.series), true)
    } else {
        // Every value needs at least one series, so the value count bounds
        // the series from below.
        (label.cardinality.min(family.series), false)
    };
    let share = if family.series == 0 {
        0.0
    } else {
        series as f64 / family.series as f64
    };
    let family_bytes = bytes_per_day(family.sample_bytes, scrapes_per_minute);
    let bytes = (family_bytes as f64 * share).round() as u64;
    let confidence = if !exact || bytes_per_day(1, scrapes_per_minute) == 0 {
        LOW
    } else if series == family.series {
        // The whole family: nothing was apportioned.
        HIGH
    } else {
        MEDIUM
    };
    ImpactEstimate {
        series,
        bytes_per_day: bytes,
        cost_per_month: cost_per_month(bytes, series, prices),
        confidence: confidence.to_owned(),
        ..ImpactEstimate::default()
    }
}

/// Severity bands by estimated monthly cost: ≥ `high_cost_per_month` is
/// high, ≥ `medium_cost_per_month` medium, else low. Detectors lower it one
/// step where acting needs a review (the telemetry may be read).
pub fn severity(cost_per_month: f64, thresholds: &Thresholds) -> Severity {
    if cost_per_month >= thresholds.high_cost_per_month {
        Severity::High
    } else if cost_per_month >= thresholds.medium_cost_per_month {
        Severity::Medium
    } else {
        Severity::Low
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fam(series: u64, sample_bytes: u64) -> FamilyInventory {
        FamilyInventory {
            name: "f".into(),
            series,
            samples: series,
            sample_bytes,
            ..Default::default()
        }
    }

    #[test]
    fn family_drop_is_priced_exactly() {
        // 10 000 bytes per scrape, 2 scrapes a minute: 28.8 MB a day.
        let e = family(&fam(200, 10_000), 2.0, &Prices::default());
        assert_eq!(e.series, 200);
        assert_eq!(e.bytes_per_day, 28_800_000);
        // 28.8e6 × 30 / 1e9 × 0.5 = 0.432; 200 × 0.01 = 2.
        assert!(
            (e.cost_per_month - 2.432).abs() < 1e-9,
            "{}",
            e.cost_per_month
        );
        assert_eq!(e.confidence, HIGH);
    }

    #[test]
    fn label_drop_takes_the_share_of_series_carrying_it() {
        let f = fam(200, 10_000);
        let l = LabelInventory {
            name: "user".into(),
            cardinality: 150,
            series: 50,
            ..Default::default()
        };
        let e = label(&f, &l, 2.0, &Prices::default());
        assert_eq!(e.series, 50);
        assert_eq!(e.bytes_per_day, 7_200_000);
        // 7.2e6 × 30 / 1e9 × 0.5 = 0.108; 50 × 0.01 = 0.5.
        assert!(
            (e.cost_per_month - 0.608).abs() < 1e-9,
            "{}",
            e.cost_per_month
        );
        assert_eq!(e.confidence, MEDIUM);

        // Merged counts can disagree; a share never exceeds the family.
        let more = LabelInventory {
            series: 250,
            ..l.clone()
        };
        assert_eq!(label(&f, &more, 2.0, &Prices::default()).series, 200);
        assert_eq!(
            label(&f, &more, 2.0, &Prices::default()).bytes_per_day,
            28_800_000
        );

        let everywhere = LabelInventory {
            series: 200,
            ..l.clone()
        };
        assert_eq!(
            label(&f, &everywhere, 2.0, &Prices::default()).confidence,
            HIGH
        );

        // An edge that does not count series per label: the value count
        // stands in, at low confidence.
        let unknown = LabelInventory { series: 0, ..l };
        let e = label(&f, &unknown, 2.0, &Prices::default());
        assert_eq!(e.series, 150);
        assert_eq!(e.bytes_per_day, 21_600_000);
        assert_eq!(e.confidence, LOW);
    }

    #[test]
    fn no_scrape_rate_means_no_bytes_and_low_confidence() {
        let e = family(&fam(10, 1_000), 0.0, &Prices::default());
        assert_eq!(e.bytes_per_day, 0);
        assert!((e.cost_per_month - 0.1).abs() < 1e-9);
        assert_eq!(e.confidence, LOW);
        assert_eq!(bytes_per_day(1_000, f64::NAN), 0);
    }

    #[test]
    fn prices_are_configurable() {
        let prices = Prices {
            per_gb: 2.0,
            per_series_month: 0.0,
            per_gb_logs: 0.5,
        };
        // 1e9 bytes a day for 30 days at $2/GB.
        assert!((cost_per_month(1_000_000_000, 5, &prices) - 60.0).abs() < 1e-9);
    }

    #[test]
    fn severity_bands_are_inclusive_lower_bounds() {
        let t = Thresholds::default();
        assert_eq!(severity(100.0, &t), Severity::High);
        assert_eq!(severity(99.99, &t), Severity::Medium);
        assert_eq!(severity(10.0, &t), Severity::Medium);
        assert_eq!(severity(9.99, &t), Severity::Low);
        assert_eq!(Severity::High.lower(), Severity::Medium);
        assert_eq!(Severity::Low.lower(), Severity::Low);
    }
}

//! Distinct-value counting in bounded memory: exact while small, then a
//! HyperLogLog.
//!
//! Most labels take a handful of values, so a sketch starts as an exact set
//! of hashes and only becomes a HyperLogLog (4,096 one-byte registers) past
//! [`EXACT_LIMIT`] values. Its relative standard error is at most about
//! 1.6 % (1.04/√4096) at every size, so about one estimate in twenty is off
//! by more than twice that. The hash is fixed
//! (FNV-1a with a splitmix64 finaliser) so that sketches built by different
//! edges, builds and versions merge into the estimate of the union.
//!
//! It lives in the sdk because both sides use it: edges build and encode
//! sketches in their metric inventories, the control plane decodes and
//! merges them across instances.

use std::collections::HashSet;

/// Distinct values kept exactly before switching to registers.
pub const EXACT_LIMIT: usize = 256;
/// log2 of the register count.
const PRECISION: u32 = 12;
const REGISTERS: usize = 1 << PRECISION;

/// A stable 64-bit hash of a value.
pub fn hash(value: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in value {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV alone leaves the high bits poorly mixed for short inputs; the
    // finaliser spreads every input bit over the whole word.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Bytes that are not an encoded sketch.
/// A stable 64-bit hash of a long value (whole sample lines), eight bytes
/// at a time: the byte-wise [`hash`] would cost more than parsing the line.
/// Fixed like [`hash`], so edges of any version agree on it.
pub fn wide_hash(value: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = (value.len() as u64) ^ 0x9e37_79b9_7f4a_7c15;
    let mut words = value.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a cardinality sketch: {0}")]
pub struct SketchError(&'static str);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Repr {
    Exact(HashSet<u64>),
    Registers(Box<[u8]>),
}

/// An estimate of the number of distinct values inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardinalitySketch {
    repr: Repr,
}

impl Default for CardinalitySketch {
    fn default() -> Self {
        CardinalitySketch {
            repr: Repr::Exact(HashSet::new()),
        }
    }
}

fn register_update(registers: &mut [u8], h: u64) {
    let index = (h >> (64 - PRECISION)) as usize;
    // Position of the first set bit in the remaining bits, 1-based; the
    // sentinel bit caps it when they are all zero.
    let rest = (h << PRECISION) | (1 << (PRECISION - 1));
    let rank = rest.leading_zeros() as u8 + 1;
    if registers[index] < rank {
        registers[index] = rank;
    }
}

/// Ertl's improved raw estimator ("New cardinality estimation algorithms
/// for HyperLogLog sketches", 2017, algorithm 6) over the register
/// histogram. Unlike the classic estimator with its switch to linear
/// counting at 2.5 m, it has no bias bump in the mid range (a few thousand
/// values for 4,096 registers) and a relative standard error of about
/// 1.04/√m = 1.6 % throughout, less for small counts.
fn improved_estimate(registers: &[u8]) -> f64 {
    const Q: usize = 64 - PRECISION as usize;
    let m = registers.len() as f64;
    let mut histogram = [0u32; Q + 2];
    for r in registers {
        // Decoded registers are checked to be at most Q + 1.
        histogram[usize::from(*r).min(Q + 1)] += 1;
    }
    let mut z = m * tau(1.0 - f64::from(histogram[Q + 1]) / m);
    for count in histogram[1..=Q].iter().rev() {
        z = 0.5 * (z + f64::from(*count));
    }
    z += m * sigma(f64::from(histogram[0]) / m);
    m * m / (2.0 * std::f64::consts::LN_2 * z)
}

/// σ(x) = x + Σ_{k≥1} x^(2^k)·2^(k−1), summed until it stops changing.
fn sigma(mut x: f64) -> f64 {
    if x >= 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if z == before {
            return z;
        }
    }
}

/// τ(x) = (1 − x − Σ_{k≥1} (1 − x^(2^−k))²·2^−k) / 3, summed until it stops
/// changing.
fn tau(mut x: f64) -> f64 {
    if x <= 0.0 || x >= 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == before {
            return z / 3.0;
        }
    }
}

impl CardinalitySketch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, value: &[u8]) {
        self.insert_hash(hash(value));
    }

    pub fn insert_hash(&mut self, h: u64) {
        match &mut self.repr {
            Repr::Exact(set) => {
                set.insert(h);
                if set.len() > EXACT_LIMIT {
                    self.promote();
                }
            }
            Repr::Registers(registers) => register_update(registers, h),
        }
    }

    fn promote(&mut self) {
        if let Repr::Exact(set) = &self.repr {
            let mut registers = vec![0u8; REGISTERS].into_boxed_slice();
            for h in set {
                register_update(&mut registers, *h);
            }
            self.repr = Repr::Registers(registers);
        }
    }

    /// Whether the count is exact (at most [`EXACT_LIMIT`] values seen).
    pub fn is_exact(&self) -> bool {
        matches!(self.repr, Repr::Exact(_))
    }

    /// The estimated number of distinct values.
    pub fn estimate(&self) -> u64 {
        match &self.repr {
            Repr::Exact(set) => set.len() as u64,
            Repr::Registers(registers) => improved_estimate(registers).round() as u64,
        }
    }

    /// The wire form: `0` then the sorted hashes (8 bytes each, little
    /// endian) while exact, or `1` then the 4,096 registers.
    pub fn encode(&self) -> Vec<u8> {
        match &self.repr {
            Repr::Exact(set) => {
                let mut hashes: Vec<u64> = set.iter().copied().collect();
                hashes.sort_unstable();
                let mut out = Vec::with_capacity(1 + 8 * hashes.len());
                out.push(0);
                for h in hashes {
                    out.extend_from_slice(&h.to_le_bytes());
                }
                out
            }
            Repr::Registers(registers) => {
                let mut out = Vec::with_capacity(1 + REGISTERS);
                out.push(1);
                out.extend_from_slice(registers);
                out
            }
        }
    }

    /// Reads [`CardinalitySketch::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<CardinalitySketch, SketchError> {
        match bytes.split_first() {
            None => Ok(CardinalitySketch::new()),
            Some((0, hashes)) if hashes.len() % 8 == 0 && hashes.len() / 8 <= EXACT_LIMIT => {
                let mut sketch = CardinalitySketch::new();
                for chunk in hashes.chunks_exact(8) {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(chunk);
                    sketch.insert_hash(u64::from_le_bytes(word));
                }
                Ok(sketch)
            }
            Some((1, registers)) if registers.len() == REGISTERS => {
                if registers.iter().any(|r| u32::from(*r) > 64 - PRECISION + 1) {
                    return Err(SketchError("a register holds an impossible rank"));
                }
                Ok(CardinalitySketch {
                    repr: Repr::Registers(registers.into()),
                })
            }
            Some((0 | 1, _)) => Err(SketchError("wrong length for its kind")),
            Some(_) => Err(SketchError("unknown kind byte")),
        }
    }

    /// Folds `other` in: the result estimates the union of both inputs.
    pub fn merge(&mut self, other: &CardinalitySketch) {
        match &other.repr {
            Repr::Exact(theirs) => {
                for h in theirs {
                    self.insert_hash(*h);
                }
            }
            Repr::Registers(theirs) => {
                self.promote();
                if let Repr::Registers(ours) = &mut self.repr {
                    for (o, t) in ours.iter_mut().zip(theirs.iter()) {
                        *o = (*o).max(*t);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(range: std::ops::Range<u64>) -> CardinalitySketch {
        let mut s = CardinalitySketch::new();
        for i in range {
            s.insert(format!("user-{i}").as_bytes());
        }
        s
    }

    #[test]
    fn small_sets_are_counted_exactly_and_duplicates_once() {
        let mut s = CardinalitySketch::new();
        for _ in 0..3 {
            for v in ["GET", "POST", "PUT"] {
                s.insert(v.as_bytes());
            }
        }
        assert!(s.is_exact());
        assert_eq!(s.estimate(), 3);
        let at_limit = filled(0..EXACT_LIMIT as u64);
        assert!(at_limit.is_exact());
        assert_eq!(at_limit.estimate(), EXACT_LIMIT as u64);
        assert!(!filled(0..EXACT_LIMIT as u64 + 1).is_exact());
    }

    /// The documented accuracy, measured: over many independent sets per
    /// size, from just past the exact range through the mid range where
    /// the classic estimator's switch to linear counting (at 2.5 m ≈
    /// 10,000) made it 2.8 % off on average, the root-mean-square relative
    /// error stays under 1.75 % (1.04/√4096 = 1.6 % plus sampling noise).
    #[test]
    fn the_relative_standard_error_is_about_one_point_six_percent_at_every_size() {
        for n in [300u64, 1_500, 5_000, 10_000, 20_000] {
            let sets = 100;
            let squares: f64 = (0..sets)
                .map(|set| {
                    let mut s = CardinalitySketch::new();
                    for i in 0..n {
                        s.insert(format!("v{set}-{i}").as_bytes());
                    }
                    let error = (s.estimate() as f64 - n as f64) / n as f64;
                    error * error
                })
                .sum();
            let rms = (squares / f64::from(sets)).sqrt();
            assert!(rms < 0.0175, "{n} values: RMS relative error {rms:.4}");
        }
    }

    #[test]
    fn large_sets_are_estimated_within_a_few_percent() {
        for n in [300u64, 1_000, 10_000, 100_000, 1_000_000] {
            let estimate = filled(0..n).estimate() as f64;
            let error = (estimate - n as f64).abs() / n as f64;
            assert!(error < 0.05, "{n} distinct values estimated as {estimate}");
        }
    }

    #[test]
    fn merging_estimates_the_union() {
        for (a, b) in [
            (0..100, 50..200),
            (0..5_000, 2_500..20_000),
            (0..100, 0..50_000),
        ] {
            let union = a.start.min(b.start)..a.end.max(b.end);
            let mut merged = filled(a.clone());
            merged.merge(&filled(b.clone()));
            let truth = (union.end - union.start) as f64;
            let error = (merged.estimate() as f64 - truth).abs() / truth;
            assert!(
                error < 0.05,
                "{a:?} ∪ {b:?}: {} vs {truth}",
                merged.estimate()
            );
            // Merging is symmetric.
            let mut other_way = filled(b);
            other_way.merge(&filled(a));
            assert_eq!(other_way.estimate(), merged.estimate());
        }
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        for sketch in [filled(0..0), filled(0..100), filled(0..10_000)] {
            let decoded = CardinalitySketch::decode(&sketch.encode()).unwrap();
            assert_eq!(decoded, sketch);
        }
        assert!(CardinalitySketch::decode(&[0, 1, 2]).is_err());
        assert!(CardinalitySketch::decode(&[1, 0]).is_err());
        assert!(CardinalitySketch::decode(&[7]).is_err());
        let mut bad = vec![1u8; REGISTERS + 1];
        bad[5] = 200;
        assert!(CardinalitySketch::decode(&bad).is_err());
    }

    #[test]
    fn the_wide_hash_is_pinned_and_sees_every_byte() {
        // Pinned: edges of different versions must agree on content hashes.
        assert_eq!(wide_hash(b""), wide_hash(b""));
        let pinned = wide_hash(b"_bucket{le=\"1\"} 3");
        assert_eq!(pinned, 0x0f07_5695_ce20_fae2, "{pinned:#x}");
        let base = b"{code=\"200\",method=\"GET\"} 1027".to_vec();
        for i in 0..base.len() {
            let mut changed = base.clone();
            changed[i] ^= 1;
            assert_ne!(wide_hash(&changed), wide_hash(&base), "byte {i}");
        }
        assert_ne!(wide_hash(b"a"), wide_hash(b"a\0"), "the length counts");
    }

    #[test]
    fn the_hash_is_the_documented_one() {
        // Sketches from other builds and versions must merge, so the hash
        // is part of the format: FNV-1a 64 then the splitmix64 finaliser.
        // Values computed by an independent implementation of the two.
        assert_eq!(hash(b""), 0xf52a_15e9_a9b5_e89b);
        assert_eq!(hash(b"user-1"), 0xc499_b5f8_a721_df58);
    }
}

//! Consistent probability sampling (OpenTelemetry's threshold algorithm).
//!
//! A record carries 56 bits of randomness R (from a trace id, the tracestate
//! `rv` value or a hash of a sample key); a probability p gives a rejection
//! threshold T = (1 − p) · 2^56, and the record is kept iff R ≥ T. Because T
//! falls as p rises, a key kept at p is kept at every p′ > p.

pub(crate) const MAX_THRESHOLD: u64 = 1 << 56;
const RANDOMNESS_MASK: u64 = MAX_THRESHOLD - 1;

/// T for a probability in [0, 1].
pub(crate) fn threshold(probability: f64) -> u64 {
    if probability >= 1.0 {
        0
    } else if probability <= 0.0 || probability.is_nan() {
        MAX_THRESHOLD
    } else {
        ((1.0 - probability) * MAX_THRESHOLD as f64) as u64
    }
}

pub(crate) fn probability(threshold: u64) -> f64 {
    if threshold >= MAX_THRESHOLD {
        0.0
    } else {
        1.0 - threshold as f64 / MAX_THRESHOLD as f64
    }
}

/// The `th` encoding: 14 hex digits cut to `precision`, trailing zeros
/// trimmed; zero is "0".
pub(crate) fn encode_threshold(threshold: u64, precision: u32) -> String {
    if threshold == 0 {
        return "0".to_owned();
    }
    let hex = format!("{:014x}", threshold.min(RANDOMNESS_MASK));
    let cut = &hex[..(precision.clamp(1, 14) as usize)];
    let trimmed = cut.trim_end_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// 64-bit FNV-1a.
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// R for a sample-key value: the low 56 bits of an id-shaped value (its last
/// 14 characters are hex digits), else its FNV-1a hash. Using the id bits
/// keeps log sampling consistent with trace sampling on the same trace id.
pub(crate) fn key_randomness(value: &str) -> u64 {
    id_randomness(value).unwrap_or_else(|| fnv1a(&[value.as_bytes()]) & RANDOMNESS_MASK)
}

/// The low 56 bits of a hex id, if its last 14 characters are hex digits.
pub(crate) fn id_randomness(hex_id: &str) -> Option<u64> {
    let bytes = hex_id.as_bytes();
    if bytes.len() < 14 {
        return None;
    }
    let tail = &bytes[bytes.len() - 14..];
    if !tail.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let tail = std::str::from_utf8(tail).ok()?;
    u64::from_str_radix(tail, 16)
        .ok()
        .map(|v| v & RANDOMNESS_MASK)
}

/// The `ot` entry's sub-key `key` (`rv` or `th`) as a 56-bit value: 1–14 hex
/// digits, left-aligned.
pub(crate) fn ot_value(trace_state: &str, key: &str) -> Option<u64> {
    let ot = trace_state
        .split(',')
        .map(str::trim)
        .find_map(|e| e.strip_prefix("ot="))?;
    let raw = ot
        .split(';')
        .find_map(|sub| sub.strip_prefix(key)?.strip_prefix(':'))?;
    if raw.is_empty() || raw.len() > 14 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let padded = format!("{raw:0<14}");
    u64::from_str_radix(&padded, 16).ok()
}

/// The tracestate with `th` set in the `ot` entry: other `ot` sub-keys keep
/// their order, `th` goes last, and the `ot` entry moves to the front (W3C:
/// a modified entry is moved to the left); other vendors' entries are kept.
pub(crate) fn with_threshold(trace_state: &str, th: &str) -> String {
    let mut ot_parts: Vec<&str> = Vec::new();
    let mut others: Vec<&str> = Vec::new();
    for entry in trace_state
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        match entry.strip_prefix("ot=") {
            Some(value) => ot_parts.extend(
                value
                    .split(';')
                    .filter(|s| !s.is_empty() && !s.starts_with("th:")),
            ),
            None => others.push(entry),
        }
    }
    let mut out = String::from("ot=");
    for part in ot_parts {
        out.push_str(part);
        out.push(';');
    }
    out.push_str("th:");
    out.push_str(th);
    for other in others {
        out.push(',');
        out.push_str(other);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_and_encoding() {
        assert_eq!(threshold(1.0), 0);
        assert_eq!(threshold(0.0), MAX_THRESHOLD);
        assert_eq!(threshold(0.5), MAX_THRESHOLD / 2);
        assert_eq!(encode_threshold(threshold(0.5), 4), "8");
        assert_eq!(encode_threshold(threshold(0.25), 4), "c");
        assert_eq!(encode_threshold(threshold(0.1), 4), "e666");
        assert_eq!(encode_threshold(threshold(0.1), 2), "e6");
        assert_eq!(encode_threshold(0, 4), "0");
    }

    #[test]
    fn randomness_sources() {
        assert_eq!(
            id_randomness("aabbccdd0000000002c0000000000000"),
            Some(0xc0000000000000)
        );
        assert_eq!(id_randomness("short"), None);
        assert_eq!(
            ot_value("ot=rv:ffffffffffffff;th:8,vendor=x", "rv"),
            Some(0xffffffffffffff)
        );
        assert_eq!(
            ot_value("ot=rv:ffffffffffffff;th:8,vendor=x", "th"),
            Some(0x80000000000000)
        );
        assert_eq!(ot_value("vendor=x", "th"), None);
        assert_eq!(ot_value("ot=th:zz", "th"), None);
    }

    #[test]
    fn superset_property() {
        for i in 0..500 {
            let r = key_randomness(&format!("request-{i}"));
            let mut kept_before = false;
            for p in [0.01, 0.1, 0.25, 0.5, 0.75, 0.99] {
                let kept = r >= threshold(p);
                assert!(
                    !kept_before || kept,
                    "kept at a lower probability, dropped at {p}"
                );
                kept_before |= kept;
            }
        }
    }

    #[test]
    fn tracestate_rewrite() {
        assert_eq!(with_threshold("", "8"), "ot=th:8");
        assert_eq!(
            with_threshold("vendor=existing", "8"),
            "ot=th:8,vendor=existing"
        );
        assert_eq!(
            with_threshold("ot=th:c,vendor=existing", "8"),
            "ot=th:8,vendor=existing"
        );
        assert_eq!(
            with_threshold("ot=th:4;rv:abc123", "8"),
            "ot=rv:abc123;th:8"
        );
        assert_eq!(
            with_threshold("a=1,ot=rv:ffffffffffffff", "8"),
            "ot=rv:ffffffffffffff;th:8,a=1"
        );
    }
}

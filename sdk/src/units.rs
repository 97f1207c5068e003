//! Byte counts for people. One function for every surface that prints
//! them (the CLI's tables, an issue's summary written by the control
//! plane), so the same count never reads in two unit systems.

/// `512 B`, `1.5 KiB`, `13.7 MiB`: binary units with one decimal, as the
/// CLI shows every byte count. Negative counts (deltas) keep their sign.
pub fn binary_bytes(n: impl Into<i128>) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let n = n.into();
    let mut value = n as f64;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::binary_bytes;

    #[test]
    fn counts_read_in_binary_units() {
        assert_eq!(binary_bytes(1_023u64), "1023 B");
        assert_eq!(binary_bytes(1_536i64), "1.5 KiB");
        assert_eq!(binary_bytes(-2_048i64), "-2.0 KiB");
        assert_eq!(binary_bytes(u64::MAX), "16777216.0 TiB");
    }
}

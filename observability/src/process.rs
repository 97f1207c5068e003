//! The standard `process_*` self-metrics, read from `/proc/self`.
//!
//! Names and meanings follow the Prometheus client libraries, so existing
//! dashboards and alerts for memory, CPU and file descriptors work as-is.
//! On systems without `/proc` the families are simply left out.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::metrics::{family, label_value};

/// Linux reports CPU time in USER_HZ ticks, which the kernel ABI fixes at
/// 100 on every architecture Tero ships for.
const TICKS_PER_SECOND: f64 = 100.0;

static STARTED: OnceLock<f64> = OnceLock::new();

/// Records the start time; call early in `main`. Later calls keep the
/// first value.
pub fn mark_start() {
    STARTED.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    });
}

/// `<prefix>_build_info{version="…"} 1`.
pub fn render_build_info(out: &mut String, prefix: &str, version: &str) {
    let name = format!("{prefix}_build_info");
    family(
        out,
        &name,
        "gauge",
        "Always 1; the version is in the label.",
    );
    let _ = writeln!(out, "{name}{{version=\"{}\"}} 1", label_value(version));
}

/// Appends the `process_*` families that can be read on this system.
pub fn render(out: &mut String) {
    if let Some(start) = STARTED.get() {
        family(
            out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
        );
        let _ = writeln!(out, "process_start_time_seconds {start}");
    }
    if let Some(cpu) = cpu_seconds() {
        family(
            out,
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
        );
        let _ = writeln!(out, "process_cpu_seconds_total {cpu}");
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
        };
        for (key, name, help) in [
            (
                "VmRSS:",
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            (
                "VmSize:",
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
        ] {
            if let Some(kib) = field(key) {
                family(out, name, "gauge", help);
                let _ = writeln!(out, "{name} {}", kib * 1024);
            }
        }
        if let Some(threads) = field("Threads:") {
            family(
                out,
                "process_threads",
                "gauge",
                "OS threads in the process.",
            );
            let _ = writeln!(out, "process_threads {threads}");
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        family(out, "process_open_fds", "gauge", "Open file descriptors.");
        let _ = writeln!(out, "process_open_fds {}", fds.count());
    }
    if let Some(max) = max_fds() {
        family(
            out,
            "process_max_fds",
            "gauge",
            "Limit on open file descriptors.",
        );
        let _ = writeln!(out, "process_max_fds {max}");
    }
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields after its closing
    // parenthesis are space separated: utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

fn max_fds() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn reads_this_process() {
        mark_start();
        let mut out = String::new();
        render(&mut out);
        let value = |name: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing in {out}"))
        };
        assert!(value("process_resident_memory_bytes") > 1_000_000.0);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_start_time_seconds") > 1.7e9);
        assert!(value("process_cpu_seconds_total") >= 0.0);
        assert!(value("process_threads") >= 1.0);
    }

    #[test]
    fn build_info_carries_the_version() {
        let mut out = String::new();
        render_build_info(&mut out, "tero_x", "1.2.3");
        assert!(
            out.contains("tero_x_build_info{version=\"1.2.3\"} 1\n"),
            "{out}"
        );
    }
}

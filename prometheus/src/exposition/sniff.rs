//! Whether the start of a body reads like the text exposition format, for
//! bodies served under a Content-Type that names no format (a static file
//! server's `application/octet-stream`). Prometheus 2 parses those as
//! text, so a filter that let them pass would leave policies doing nothing.
//!
//! The test is deliberately narrow: the first line that is not blank or a
//! plain comment must be a `# HELP` / `# TYPE` line or a sample with a
//! numeric value. Anything else (binary data, JSON, HTML, a partial first
//! line) is not an exposition, and the body passes as it came.

use super::line::{MetaKind, Metadata};
use super::{Line, parse_line};

/// How many bytes of a body [`looks_like_text`] wants to see: enough for a
/// long HELP line, and the bound of what a scrape holds back to decide.
pub const SNIFF_BYTES: usize = 4096;

/// True if `prefix`, the start of a body (the whole body when shorter),
/// reads like the text exposition format.
pub fn looks_like_text(prefix: &[u8]) -> bool {
    let complete = match prefix.iter().rposition(|b| *b == b'\n') {
        Some(end) => &prefix[..end],
        // A body of one line without LF is whole only when short.
        None if prefix.len() < SNIFF_BYTES => prefix,
        None => return false,
    };
    for line in complete.split(|b| *b == b'\n') {
        if std::str::from_utf8(line).is_err() {
            return false;
        }
        match parse_line(line) {
            Line::Blank | Line::Comment => continue,
            Line::Metadata(Metadata {
                kind: MetaKind::Help | MetaKind::Type,
                ..
            }) => return true,
            Line::Sample(_) => return has_numeric_value(line),
            _ => return false,
        }
    }
    false
}

/// The token after the name and labels parses as a number (`1`, `1e3`,
/// `+Inf`, `NaN`).
fn has_numeric_value(line: &[u8]) -> bool {
    let Ok(line) = std::str::from_utf8(line) else {
        return false;
    };
    let line = line.trim();
    let rest = match line.rfind('}') {
        Some(close) => &line[close + 1..],
        None => line.split_once([' ', '\t']).map_or("", |(_, rest)| rest),
    };
    rest.split_whitespace()
        .next()
        .is_some_and(|value| value.parse::<f64>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expositions_are_recognised() {
        for body in [
            "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n",
            "# TYPE up gauge\nup 1\n",
            "http_requests_total{code=\"200\",path=\"/a b}\"} 1027\n",
            "up 1",
            "process_start_time_seconds 1.7e9 1700000000000\n",
            "\n\n# a comment first\nnode_load1 +Inf\n",
            "go_gc_duration_seconds{quantile=\"0.5\"} NaN\r\n",
        ] {
            assert!(looks_like_text(body.as_bytes()), "{body:?}");
        }
    }

    #[test]
    fn other_bodies_are_not() {
        let mut protobuf = vec![0x0a, 0x13];
        protobuf.extend_from_slice(b"debug_cache_entries\n");
        let long_line = "x".repeat(SNIFF_BYTES + 10);
        for body in [
            protobuf.as_slice(),
            b"{\"status\": \"ok\"}\n",
            b"<html><body>metrics</body></html>\n",
            b"hello world\n",
            b"up yes\n",
            b"",
            b"\n\n",
            b"# just a comment\n",
            b"\xff\xfe up 1\n",
            long_line.as_bytes(),
        ] {
            assert!(
                !looks_like_text(body),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

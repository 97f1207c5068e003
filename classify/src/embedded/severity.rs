//! Severities written in the log text itself, for records that arrive
//! without a severity field (plain lines posted to an edge, files tailed
//! as text): `DEBUG …`, `<timestamp> DEBUG …`, `level=debug …`,
//! `… DEBUG [main] …` (log4j, logback) and glog/klog's `D1201 …`.
//!
//! A severity is only read where a logger puts it: at the start of the
//! line (after timestamps, placeholders and bracketed fields), under a
//! level key, or before a Java-style `[thread]`. A word such as "debug"
//! elsewhere in a message is the message's, not a level.

use std::sync::LazyLock;

use regex::Regex;

/// Level names as loggers print them, upper case.
const LEVELS: [&str; 21] = [
    "TRACE",
    "DEBUG",
    "DBG",
    "VERBOSE",
    "FINE",
    "FINER",
    "FINEST",
    "INFO",
    "NOTICE",
    "WARN",
    "WARNING",
    "ERROR",
    "ERR",
    "FATAL",
    "CRITICAL",
    "CRIT",
    "ALERT",
    "EMERG",
    "EMERGENCY",
    "PANIC",
    "SEVERE",
];

/// Leading tokens a line's level may follow.
const MAX_PREFIX_TOKENS: usize = 5;

/// `level=debug`, `"level":"debug"`, `severity: WARN`, `lvl=dbug`.
static LEVEL_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(?:^|[\s{,;(\[])"?(?:level|lvl|severity|log[._]?level)"?\s*[=:]\s*"?([a-z]+)\b"#,
    )
    .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// A level followed by a bracketed thread name: `… DEBUG [main] …`.
static JAVA_STYLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|\s)([A-Z]{3,9})\s+\[[^\]\s]*\]")
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// glog/klog's header: level letter, month and day, then the time (or the
/// placeholder the miner put in its place).
static GLOG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([DIWEFV])(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\s+(?:\d{2}:\d{2}:\d{2}|<[^>]*>)")
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// The severity written in `line`, lowercased (`debug`, `error`, …).
pub(super) fn written(line: &str) -> Option<String> {
    let line = line.trim_start();
    leading(line)
        .or_else(|| glog(line))
        .or_else(|| keyed(line))
        .or_else(|| java_style(line))
}

fn level(token: &str) -> Option<String> {
    LEVELS.contains(&token).then(|| token.to_ascii_lowercase())
}

/// The level among the line's first tokens, after what loggers write
/// before it.
fn leading(line: &str) -> Option<String> {
    for token in line.split_whitespace().take(MAX_PREFIX_TOKENS) {
        let bare = token
            .trim_end_matches(':')
            .trim_start_matches(['[', '<', '('])
            .trim_end_matches([']', '>', ')', ':']);
        if let Some(level) = level(bare) {
            return Some(level);
        }
        if !is_prefix_token(token) {
            return None;
        }
    }
    None
}

/// Timestamps, the miner's placeholders and bracketed fields (`[main]`,
/// `[2024-12-01 10:00:00]`): what precedes a level in common layouts.
fn is_prefix_token(token: &str) -> bool {
    let bracketed = token.starts_with('[') || token.ends_with(']');
    let placeholder = token.starts_with('<') && token.ends_with('>');
    let timestamp = token.chars().any(|c| c.is_ascii_digit())
        && token
            .chars()
            .all(|c| c.is_ascii_digit() || "-:.,/+TZ[]()".contains(c));
    bracketed || placeholder || timestamp
}

fn glog(line: &str) -> Option<String> {
    let letter = GLOG.captures(line)?.get(1)?.as_str();
    let level = match letter {
        "D" => "debug",
        "V" => "verbose",
        "I" => "info",
        "W" => "warning",
        "E" => "error",
        _ => "fatal",
    };
    Some(level.to_owned())
}

fn keyed(line: &str) -> Option<String> {
    LEVEL_KEY.captures_iter(line).find_map(|c| {
        let value = c.get(1)?.as_str().to_ascii_uppercase();
        // logrus and zap abbreviate: `dbug`, `eror`, `warn`.
        let value = match value.as_str() {
            "DBUG" => "DEBUG".to_owned(),
            "EROR" => "ERROR".to_owned(),
            "TRAC" => "TRACE".to_owned(),
            _ => value,
        };
        level(&value)
    })
}

fn java_style(line: &str) -> Option<String> {
    JAVA_STYLE
        .captures_iter(line)
        .find_map(|c| level(c.get(1)?.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_where_loggers_write_them() {
        for (line, want) in [
            ("DEBUG cache lookup key=42", "debug"),
            ("2024-12-01T10:00:00.123Z DEBUG cache lookup", "debug"),
            (
                "2024-12-01 10:00:00,123 DEBUG [main] c.e.Cache - lookup",
                "debug",
            ),
            ("<*> <*> DEBUG cache lookup", "debug"),
            ("<timestamp> TRACE entering handler", "trace"),
            ("[2024-12-01 10:00:00] [DEBUG] cache lookup", "debug"),
            ("10:00:00.123 [main] DEBUG c.e.Cache - lookup", "debug"),
            ("DEBUG: state dumped", "debug"),
            (
                "time=2024-12-01T10:00:00Z level=debug msg=\"cache lookup\"",
                "debug",
            ),
            ("ts=1.7e9 caller=main.go:12 lvl=dbug msg=lookup", "debug"),
            ("{\"ts\":1,\"level\":\"debug\",\"msg\":\"lookup\"}", "debug"),
            ("severity: WARN disk almost full", "warn"),
            (
                "myhost checkout DEBUG [pool-1-thread-3] c.e.Cache - miss",
                "debug",
            ),
            ("D1201 10:00:00.123456 1 cache.go:42] lookup", "debug"),
            ("D1201 <*> <*> cache.go:42] lookup", "debug"),
            ("I1201 10:00:00.123456 1 server.go:7] serving", "info"),
            ("E0315 23:59:59.000001 7 db.go:9] connection lost", "error"),
            ("ERROR payment declined", "error"),
            ("2024-12-01 10:00:00 FATAL out of memory", "fatal"),
        ] {
            assert_eq!(written(line).as_deref(), Some(want), "{line}");
        }
    }

    #[test]
    fn words_in_messages_are_not_levels() {
        for line in [
            "user enabled debug mode",
            "debug session started by admin",
            "Debug build deployed",
            "the DEBUG flag is off",
            "opened ticket about an ERROR page",
            "received debug=true from client",
            "GET /debug/vars 200",
            "D123 is a part number",
            "D1301 10:00:00 not a month",
            "releveled=debug is not a key",
            "request info sent",
        ] {
            assert_eq!(written(line), None, "{line}");
        }
    }
}

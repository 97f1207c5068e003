//! Severities written in the log text itself, for records that arrive
//! without a severity field (plain lines posted to an edge, files tailed
//! as text): `DEBUG …`, `<timestamp> DEBUG …`, `[DEBUG] …`, `level=debug …`,
//! `… DEBUG [main] …` (log4j, logback), glog/klog's `D1201 …`, Python's
//! `DEBUG:name:…` and `… - name - DEBUG - …`, logrus' `DEBU[0000]`,
//! Serilog's `[12:00:00 DBG]`, .NET's `dbug:`, Ruby's `D, […] DEBUG --`,
//! and the priority of a syslog header (`<15>Dec  1 …`, `<15>1 2026-…`).
//!
//! A severity is only read where a logger puts it: at the start of the
//! line (after timestamps, placeholders and bracketed fields), under a
//! level key, before a Java-style `[thread]` or between ` - ` separators.
//! A word such as "debug" elsewhere in a message is the message's, not a
//! level. Lower-case level words count only where loggers write them so
//! (`[debug]` as nginx does, `dbug:` as .NET does, `level=debug`).

use std::sync::LazyLock;

use regex::Regex;

/// Level names and abbreviations as loggers print them (upper case), with
/// the name the classifier reasons about.
const LEVELS: [(&str, &str); 42] = [
    ("TRACE", "trace"),
    ("TRAC", "trace"),
    ("TRC", "trace"),
    ("TRCE", "trace"),
    ("FINEST", "trace"),
    // winston's npm levels.
    ("SILLY", "trace"),
    ("FINER", "trace"),
    ("FINE", "fine"),
    ("VERBOSE", "verbose"),
    ("VRB", "verbose"),
    ("DEBUG", "debug"),
    ("DEBU", "debug"),
    ("DBUG", "debug"),
    ("DBG", "debug"),
    ("INFO", "info"),
    ("INF", "info"),
    ("INFORMATION", "info"),
    ("NOTICE", "notice"),
    ("WARN", "warn"),
    ("WRN", "warn"),
    ("WARNING", "warning"),
    ("ERROR", "error"),
    ("ERRO", "error"),
    ("EROR", "error"),
    ("ERR", "error"),
    ("FATAL", "fatal"),
    ("FATA", "fatal"),
    ("FTL", "fatal"),
    ("CRITICAL", "critical"),
    ("CRIT", "critical"),
    ("CRT", "critical"),
    ("ALERT", "alert"),
    ("EMERG", "emerg"),
    ("EMERGENCY", "emerg"),
    ("PANIC", "panic"),
    ("PANI", "panic"),
    ("SEVERE", "severe"),
    // PostgreSQL's debug levels.
    ("DEBUG1", "debug"),
    ("DEBUG2", "debug"),
    ("DEBUG3", "debug"),
    ("DEBUG4", "debug"),
    ("DEBUG5", "debug"),
];

/// .NET's console logger: four lower-case letters and a colon, first on
/// the line.
const DOTNET: [(&str, &str); 6] = [
    ("trce:", "trace"),
    ("dbug:", "debug"),
    ("info:", "info"),
    ("warn:", "warn"),
    ("fail:", "error"),
    ("crit:", "critical"),
];

/// syslog severities by number: the priority modulo 8 (RFC 5424 §6.2.1).
const SYSLOG: [&str; 8] = [
    "emerg", "alert", "critical", "error", "warning", "notice", "info", "debug",
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

/// pino and bunyan write the level as a number under `"level"`.
static PINO_LEVEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?:^|[{,])\s*"level"\s*:\s*(\d{2})\s*[,}]"#)
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// A level followed by a bracketed thread name: `… DEBUG [main] …`.
static JAVA_STYLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|\s)([A-Z]{3,9})\s+\[[^\]\s]*\]")
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// A level between separators, as Python's cookbook format
/// (`%(asctime)s - %(name)s - %(levelname)s - …`) and loguru
/// (`… | DEBUG    | …`) write it.
static SEPARATED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\s[-|]\s+([A-Z]{3,9})\s+[-|]\s")
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// glog/klog's header: level letter, month and day, then the time (or the
/// placeholder the miner put in its place).
static GLOG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([DIWEFV])(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\s+(?:\d{2}:\d{2}:\d{2}|<[^>]*>)")
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// A syslog header: the priority, then RFC 5424's version, timestamp,
/// host, app, process id, message id and structured data, RFC 3164's
/// timestamp, host and tag, or the kernel's `[seconds]` (`/dev/kmsg`,
/// `dmesg -r`). Group 1 is the priority, group 2 (5424), 3 (3164) or 4
/// (kernel) the message. A bare `<123>` before other text is not a header.
static SYSLOG_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r#"^<(\d{1,3})>(?:"#,
        r#"1 \S+ \S+ \S+ \S+ \S+ (?:-|(?:\[(?:[^\]"\\]|\\.|"(?:[^"\\]|\\.)*")*\])+)(?: (.*))?"#,
        r#"|(?:[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}|\d{4}-\d{2}-\d{2}T\S+) (?:\S+ )?[^\s:\[]+(?:\[\d+\])?: ?(.*)"#,
        r#"|(\[\s*\d+\.\d+\].*)"#,
        r#"|$)"#,
    ))
    .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// The severity written in `line`, lowercased (`debug`, `error`, …).
pub(super) fn written(line: &str) -> Option<String> {
    let line = line.trim_start();
    syslog(line).or_else(|| in_message(line))
}

/// The level a logger wrote in a line (or in a syslog message).
fn in_message(line: &str) -> Option<String> {
    let line = line.trim_start_matches(['\u{feff}', ' ', '\t']);
    leading(line)
        .or_else(|| glog(line))
        .or_else(|| keyed(line))
        .or_else(|| java_style(line))
        .or_else(|| separated(line))
}

fn level(token: &str) -> Option<String> {
    LEVELS
        .iter()
        .find(|(written, _)| *written == token)
        .map(|(_, name)| (*name).to_owned())
}

/// A syslog line's severity: the level the application wrote in its
/// message if it wrote one (a logger behind a syslog transport often sends
/// everything at one priority), else the header's priority.
fn syslog(line: &str) -> Option<String> {
    let header = SYSLOG_HEADER.captures(line)?;
    let priority: u16 = header.get(1)?.as_str().parse().ok()?;
    // Facilities go up to 23 (local7): 23 * 8 + 7.
    if priority > 191 {
        return None;
    }
    let message = [2, 3, 4]
        .into_iter()
        .find_map(|i| header.get(i))
        .map_or("", |m| m.as_str());
    in_message(message).or_else(|| Some(SYSLOG[usize::from(priority % 8)].to_owned()))
}

/// The level among the line's first tokens, after what loggers write
/// before it.
fn leading(line: &str) -> Option<String> {
    let mut tokens = line.split_whitespace().take(MAX_PREFIX_TOKENS);
    let first = tokens.next()?;
    if let Some((_, name)) = DOTNET.iter().find(|(t, _)| *t == first) {
        return Some((*name).to_owned());
    }
    // Elasticsearch glues its fields: `[2024-12-01T10:00:00,123][DEBUG][o.e.…]`.
    for token in std::iter::once(first)
        .chain(tokens)
        .flat_map(|t| t.split("]["))
    {
        if let Some(level) = token_level(token) {
            return Some(level);
        }
        if !is_prefix_token(token) {
            return None;
        }
    }
    None
}

/// The level a token spells: `DEBUG`, `DEBUG:`, `[DEBUG]`, `DBG]`,
/// `DEBU[0000]` (logrus), `DEBUG:root:…` (Python); lower case only in
/// brackets (`[debug]`).
fn token_level(token: &str) -> Option<String> {
    let bracketed = token.starts_with('[') && token.ends_with(']');
    let inner = token.trim_start_matches(['[', '<', '(']);
    let end = inner
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(inner.len());
    let (word, rest) = inner.split_at(end);
    if !(rest.is_empty() || rest.starts_with([']', '>', ')', ':', '[', ',', '|', '/'])) {
        return None;
    }
    level(word).or_else(|| {
        (bracketed && word.chars().all(|c| c.is_ascii_lowercase()))
            .then(|| level(&word.to_ascii_uppercase()))
            .flatten()
    })
}

/// Timestamps, the miner's placeholders, bracketed fields (`[main]`,
/// `[2024-12-01 10:00:00]`), separators and Ruby's severity letter (`D,`):
/// what precedes a level in common layouts.
fn is_prefix_token(token: &str) -> bool {
    let bracketed = token.starts_with('[') || token.ends_with(']');
    let placeholder = token.starts_with('<') && token.ends_with('>');
    let timestamp = token.chars().any(|c| c.is_ascii_digit())
        && token
            .chars()
            .all(|c| c.is_ascii_digit() || "-:.,/+TZ[]()".contains(c));
    let separator = matches!(token, "-" | "--" | "|" | "UTC" | "GMT");
    let ruby = token.len() == 2 && token.ends_with(',') && token.starts_with(char::is_uppercase);
    bracketed || placeholder || timestamp || separator || ruby
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
    LEVEL_KEY
        .captures_iter(line)
        .find_map(|c| level(&c.get(1)?.as_str().to_ascii_uppercase()))
        .or_else(|| numeric(line))
}

/// pino's and bunyan's numeric levels: `"level":20`.
fn numeric(line: &str) -> Option<String> {
    let value = PINO_LEVEL.captures(line)?.get(1)?.as_str();
    let name = match value {
        "10" => "trace",
        "20" => "debug",
        "30" => "info",
        "40" => "warn",
        "50" => "error",
        "60" => "fatal",
        _ => return None,
    };
    Some(name.to_owned())
}

fn java_style(line: &str) -> Option<String> {
    JAVA_STYLE
        .captures_iter(line)
        .find_map(|c| level(c.get(1)?.as_str()))
}

fn separated(line: &str) -> Option<String> {
    SEPARATED
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
    fn syslog_priority_is_the_severity() {
        // PRI = facility * 8 + severity; RFC 3164 and RFC 5424 headers.
        for (line, want) in [
            ("<7>Dec  1 12:00:00 web-1 app[12]: cache lookup", "debug"),
            ("<15>Dec  1 12:00:00 web-1 app[12]: cache lookup", "debug"),
            ("<191>Dec 11 12:00:00 web-1 app: cache lookup", "debug"),
            ("<14>Dec  1 12:00:00 web-1 app[12]: user logged in", "info"),
            (
                "<13>Dec  1 12:00:00 web-1 app[12]: config changed",
                "notice",
            ),
            ("<12>Dec  1 12:00:00 web-1 app[12]: disk at 85%", "warning"),
            ("<11>Dec  1 12:00:00 web-1 app[12]: write failed", "error"),
            (
                "<10>Dec  1 12:00:00 web-1 app[12]: raid degraded",
                "critical",
            ),
            ("<9>Dec  1 12:00:00 web-1 app[12]: fix now", "alert"),
            ("<0>Dec  1 12:00:00 web-1 kernel: panic", "emerg"),
            ("<30>2026-12-01T12:00:00Z web-1 dockerd[9]: loaded", "info"),
            (
                "<7>1 2026-01-01T00:00:00Z web-1 app 12 - - cache lookup",
                "debug",
            ),
            (
                "<15>1 2026-12-01T12:00:00.000Z web-1 app 12 ID47 - lookup",
                "debug",
            ),
            (
                "<167>1 2026-12-01T12:00:00Z h app 1 - [ex@1 a=\"x]y\" b=\"2\"] lookup",
                "debug",
            ),
            ("<11>1 2026-12-01T12:00:00Z web-1 app 12 - -", "error"),
            (
                "<7>[  812.112233] usb 1-1: new high-speed USB device",
                "debug",
            ),
            ("<3>[  813.000000] EXT4-fs error (device sda1)", "error"),
        ] {
            assert_eq!(written(line).as_deref(), Some(want), "{line}");
        }
    }

    #[test]
    fn a_level_in_the_syslog_message_wins_over_the_priority() {
        // Docker's syslog driver sends all of stderr at daemon.err.
        for (line, want) in [
            (
                "<27>Dec  1 12:00:00 web-1 app[9]: level=debug msg=lookup",
                "debug",
            ),
            (
                "<14>1 2026-12-01T12:00:00Z web-1 app 9 - - DEBUG lookup",
                "debug",
            ),
            (
                "<14>1 2026-12-01T12:00:00Z h app 9 - [m k=\"v\"] ERROR [main] c.A - x",
                "error",
            ),
        ] {
            assert_eq!(written(line).as_deref(), Some(want), "{line}");
        }
    }

    #[test]
    fn application_layouts() {
        for (line, want) in [
            // The issue's forms.
            ("D1201 12:00:00.000 1 cache.go:42] lookup", "debug"),
            ("2026-01-01T00:00:00Z DEBUG cache lookup", "debug"),
            ("[DEBUG] cache lookup", "debug"),
            ("level=debug cache lookup", "debug"),
            // Python: basicConfig and the cookbook format; loguru.
            ("DEBUG:root:cache lookup", "debug"),
            ("WARNING:urllib3.connectionpool:Retrying", "warning"),
            (
                "2026-12-01 12:00:00,123 - app.views - DEBUG - cache lookup",
                "debug",
            ),
            (
                "2026-12-01 12:00:00.123 | DEBUG    | app.cache:get:12 - lookup",
                "debug",
            ),
            // logrus on a terminal, Serilog, .NET console, Ruby Logger.
            ("DEBU[0000] cache lookup  key=42", "debug"),
            ("ERRO[0012] write failed", "error"),
            ("[12:00:00 DBG] cache lookup", "debug"),
            ("[12:00:00 VRB] entering", "verbose"),
            ("[12:00:00 INF] served", "info"),
            ("[12:00:00 FTL] giving up", "fatal"),
            ("dbug: Acme.Api.OrdersController[0] lookup", "debug"),
            ("trce: Acme.Api.OrdersController[0] entering", "trace"),
            ("fail: Acme.Api.OrdersController[0] declined", "error"),
            (
                "D, [2026-12-01T12:00:00.123456 #1234] DEBUG -- : lookup",
                "debug",
            ),
            // nginx's error log, PostgreSQL, Elasticsearch, Celery.
            (
                "2026/12/01 10:20:01 [debug] 31#31: *1042 http cl:-1",
                "debug",
            ),
            (
                "2026/12/01 10:20:07 [error] 31#31: *1050 connect() failed",
                "error",
            ),
            (
                "2026-12-01 10:14:03.118 UTC [4411] DEBUG:  StartTransaction",
                "debug",
            ),
            (
                "2026-12-01 10:15:44.902 UTC [88] DEBUG2:  autovacuum",
                "debug",
            ),
            (
                "[2026-12-01T11:35:00,200][DEBUG][o.e.a.s.Search] [es-0] x",
                "debug",
            ),
            (
                "[2026-12-01T11:35:00,123][INFO ][o.e.c.m.Create] [es-0] x",
                "info",
            ),
            (
                "[2026-12-01 11:00:00,114: DEBUG/MainProcess] bootsteps",
                "debug",
            ),
            // pino and bunyan's numbers, winston's `silly`.
            ("{\"level\":20,\"time\":1,\"msg\":\"lookup\"}", "debug"),
            ("{\"level\":10,\"msg\":\"entering\"}", "trace"),
            ("{\"level\":50,\"msg\":\"threw\"}", "error"),
            ("{\"message\":\"tick\",\"level\":\"silly\"}", "trace"),
        ] {
            assert_eq!(written(line).as_deref(), Some(want), "{line}");
        }
    }

    #[test]
    fn lookalikes_are_not_levels() {
        for line in [
            // Not a syslog header: no timestamp, tag or kernel time after it.
            "<123> items in cart",
            "<192>Dec  1 12:00:00 web-1 app[1]: out of range",
            "<html><body>DEBUG</body></html>",
            "Debugger listening on ws://127.0.0.1:9229/x",
            "ERR_CONNECTION_REFUSED seen by client",
            "N/A values skipped",
            "[Note] [MY-010914] aborted connection",
            "count=3 DEBUG pages",
            "debug: lower case outside brackets is a word",
            "{\"level\":35,\"msg\":\"custom\"}",
            "{\"user_level\":20}",
            "INFORMED the user",
        ] {
            assert_eq!(written(line), None, "{line}");
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

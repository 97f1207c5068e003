//! Printing results: aligned tables for people, JSON or YAML for scripts.
//! Scripts get the API's own proto3 JSON mapping, so what `-o json` prints
//! is what the HTTP API returns.

use std::io::Write as _;

use serde::Serialize;

/// Writes to stdout; when the reader has gone (`tero … | head`), exits
/// quietly with success instead of panicking, as Unix tools do.
///
/// Much of what the CLI prints comes from the control plane, and part of
/// that from edges holding a low-trust key (instance ids, service names).
/// Control characters other than line breaks and tabs are escaped on the
/// way out, so no such text can clear the screen, set the terminal's title
/// or move the cursor; table cells escape line breaks too ([`Table::row`]).
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    let text = match args.as_str() {
        Some(text) => std::borrow::Cow::Borrowed(text),
        None => std::borrow::Cow::Owned(args.to_string()),
    };
    write_raw(&escape_terminal(&text, Keep::LineBreaks));
}

/// Writes text that is already safe for a terminal.
fn write_raw(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("tero: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Writes a diagnostic to stderr, escaped like [`write_stdout`]: error
/// messages quote ids and names that came from elsewhere.
pub fn write_stderr(args: std::fmt::Arguments<'_>) {
    let text = args.to_string();
    let text = escape_terminal(&text, Keep::LineBreaks);
    // Nothing sensible is left to do when stderr itself is gone.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `eprintln!` through [`write_stderr`].
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::output::write_stderr(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` through [`write_stdout`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write_stdout(format_args!($($arg)*)) };
}

/// `println!` through [`write_stdout`].
#[macro_export]
macro_rules! outln {
    () => { $crate::output::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Prints `value` as JSON or YAML; returns false for `Table`, which the
/// caller renders itself.
///
/// Scripts must get exact values, so unsafe characters are escaped in the
/// format's own syntax rather than in [`escape_terminal`]'s: JSON as
/// `\uXXXX`. YAML's emitter escapes C0 and C1 controls itself; in the rare
/// document where something unsafe is left (a bidirectional override), the
/// document is printed as JSON instead, which every YAML 1.2 reader reads.
pub fn structured<T: Serialize + ?Sized>(format: Format, value: &T) -> anyhow::Result<bool> {
    match format {
        Format::Table => Ok(false),
        Format::Json => {
            write_raw(&json_text(value)?);
            Ok(true)
        }
        Format::Yaml => {
            let yaml = serde_yaml_ng::to_string(value)?;
            if yaml.chars().any(|c| unsafe_char(c, Keep::LineBreaks)) {
                write_raw(&json_text(value)?);
            } else {
                write_raw(&yaml);
            }
            Ok(true)
        }
    }
}

/// Pretty JSON with a final newline, terminal-safe and exact: raw control
/// and bidirectional characters can only stand inside strings, where
/// `\uXXXX` means the same character (all of them are in the BMP).
fn json_text<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    let json = serde_json::to_string_pretty(value)?;
    let mut out = String::with_capacity(json.len() + 1);
    for c in json.chars() {
        if unsafe_char(c, Keep::LineBreaks) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out.push('\n');
    Ok(out)
}

/// Columns padded to their widest cell, two spaces apart.
#[derive(Debug)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Adds a row. Cells are escaped ([`escape_terminal`]): a newline in a
    /// value sent by an edge must not forge a row of its own.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|cell| escape_terminal(&cell, Keep::Nothing).into_owned())
                .collect(),
        );
    }

    pub fn print(&self) {
        crate::out!("{}", self.render());
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Which layout characters [`escape_terminal`] leaves alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Free text: `\n` and `\t` lay it out.
    LineBreaks,
    /// A table cell or a one-line value: everything is escaped.
    Nothing,
}

/// Makes text safe to print on a terminal: C0 and C1 control characters
/// (ESC starts every terminal escape sequence; C1's CSI does the same on
/// some terminals), DEL, and the Unicode bidirectional overrides and
/// isolates (which reorder what is shown, e.g. to make an id read as
/// another) are written as Rust-style escapes such as `\u{1b}`. Borrows
/// when there is nothing to escape, which is almost always.
pub fn escape_terminal(text: &str, keep: Keep) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| unsafe_char(c, keep)) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c, keep) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn unsafe_char(c: char, keep: Keep) -> bool {
    match c {
        '\n' | '\t' => keep == Keep::Nothing,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        c => c.is_control(),
    }
}

/// `2026-12-01 03:04:05Z` from Unix milliseconds; `-` for 0.
pub fn time(unix_ms: i64) -> String {
    if unix_ms <= 0 {
        return "-".into();
    }
    let secs = unix_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A table cell for a value that may be empty: `-` says "none" where a
/// blank cell would shift the eye to the next column.
pub fn dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

/// Human-readable bytes, in the units the control plane writes into
/// issue summaries.
pub use tero_sdk::units::binary_bytes as bytes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_the_widest_cell() {
        let mut t = Table::new(&["ID", "NAME"]);
        t.row(vec!["a-long-id".into(), "x".into()]);
        t.row(vec!["b".into(), "y".into()]);
        assert_eq!(t.render(), "ID         NAME\na-long-id  x\nb          y\n");
    }

    #[test]
    fn table_cells_cannot_forge_rows_or_drive_the_terminal() {
        let mut t = Table::new(&["INSTANCE", "SERVICE"]);
        t.row(vec![
            "evil\nforged-row  checkout".into(),
            "\u{1b}]0;pwned\u{7}\u{1b}[2J".into(),
        ]);
        t.row(vec!["ok".into(), "\u{9b}31m\u{202e}gnp.exe".into()]);
        let rendered = t.render();
        assert_eq!(rendered.lines().count(), 3, "{rendered}");
        assert!(!rendered.chars().any(|c| c.is_control() && c != '\n'));
        assert!(rendered.contains(r"evil\nforged-row"), "{rendered}");
        assert!(
            rendered.contains(r"\u{1b}]0;pwned\u{7}\u{1b}[2J"),
            "{rendered}"
        );
        assert!(rendered.contains(r"\u{9b}31m\u{202e}gnp.exe"), "{rendered}");
    }

    #[test]
    fn free_text_keeps_its_layout_and_loses_its_escapes() {
        assert_eq!(
            escape_terminal("a\tb\nc", Keep::LineBreaks),
            std::borrow::Cow::Borrowed("a\tb\nc")
        );
        assert_eq!(
            escape_terminal("id \u{1b}[2J\r\n", Keep::LineBreaks),
            r"id \u{1b}[2J\r".to_owned() + "\n"
        );
        assert_eq!(escape_terminal("a\tb", Keep::Nothing), r"a\tb");
        assert_eq!(escape_terminal("héllo ✓", Keep::Nothing), "héllo ✓");
    }

    #[test]
    fn json_output_is_exact_and_terminal_safe() {
        let value = serde_json::json!({"id": "a\u{1b}[2J\u{9b}\u{202e}\n"});
        let text = json_text(&value).unwrap();
        assert!(!text.trim_end().chars().any(|c| c.is_control() && c != '\n'));
        assert!(!text.contains('\u{202e}'), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(0), "-");
        assert_eq!(time(1_796_093_465_000), "2026-12-01 02:51:05Z");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00Z");
    }

    #[test]
    fn bytes_pick_a_unit() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(10 * 1024 * 1024), "10.0 MiB");
    }
}

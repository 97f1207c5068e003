//! `tero logs submit`: log files offered to the control plane's template
//! miner, so their templates can be classified without an edge.

use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde::Serialize;
use tero_sdk::client::ClientError;
use tero_sdk::proto::controlplane::{LogSample, SubmitLogsResponse};

use crate::Global;
use crate::output::{Table, structured};

/// Records one `SubmitLogs` call may carry (the control plane's limit).
pub const MAX_BATCH_RECORDS: u32 = 10_000;
/// Bytes of records in one call: under gRPC's default 4 MiB message limit
/// (the control plane accepts more), so long lines make smaller batches
/// rather than a refused request.
pub const MAX_BATCH_BYTES: usize = 3 * 1024 * 1024;
/// A longer body is cut here, at a character boundary: the control plane
/// refuses a larger one, and a template needs only the start of a line.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Sends log lines to the control plane's template miner: one record per
    /// non-empty line. A line holding a JSON object gives its body (`body`,
    /// `message`, `msg` or `log`) and severity (`severity`, `severity_text`
    /// or `level`); any other line is the body as it is.
    Submit {
        /// Log files; `-` reads standard input.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The service the logs come from.
        #[arg(long, required = true)]
        service: String,
        /// The severity of lines that carry none (`INFO`, `DEBUG`, …).
        #[arg(long, value_name = "LEVEL")]
        severity: Option<String>,
        /// Records per request, at most 10000.
        #[arg(
            long,
            default_value_t = 1000,
            value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_BATCH_RECORDS))
        )]
        batch: u32,
    },
}

pub async fn run(cmd: LogsCommand, global: &Global) -> anyhow::Result<()> {
    match cmd {
        LogsCommand::Submit {
            files,
            service,
            severity,
            batch,
        } => {
            let service = service.trim().to_owned();
            if service.is_empty() {
                bail!("--service is empty: name the service the logs come from");
            }
            let severity = severity
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty());
            // Every input is opened before anything is sent, so a mistyped
            // name does not leave half the files submitted.
            let inputs = open_inputs(&files)?;
            let client = global.client()?;
            let totals = submit_all(
                inputs,
                severity.as_deref(),
                batch as usize,
                MAX_BATCH_BYTES,
                |records| client.submit_logs(&service, records),
            )
            .await?;
            if totals.records_sent == 0 {
                crate::errln!("tero: no records sent: the input holds no non-empty lines");
            }
            let summary = Summary {
                service,
                totals: &totals,
            };
            if !structured(global.output, &summary)? {
                crate::out!("{}", render_totals(&totals));
            }
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct Summary<'a> {
    service: String,
    #[serde(flatten)]
    totals: &'a Totals,
}

/// An input: its name for messages, and its lines.
pub struct Input {
    pub name: String,
    pub reader: Box<dyn BufRead>,
}

/// Opens every path (`-`: standard input, at most once).
pub fn open_inputs(paths: &[PathBuf]) -> anyhow::Result<Vec<Input>> {
    let mut inputs = Vec::with_capacity(paths.len());
    let mut stdin = false;
    for path in paths {
        if path == Path::new("-") {
            if stdin {
                bail!("`-` (standard input) is given twice; it can be read only once");
            }
            stdin = true;
            inputs.push(Input {
                name: "standard input".into(),
                reader: Box::new(BufReader::new(std::io::stdin())),
            });
            continue;
        }
        let name = path.display().to_string();
        let file = File::open(path).with_context(|| format!("cannot open the log file {name}"))?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            bail!("{name} is a directory: give the log files in it");
        }
        inputs.push(Input {
            name,
            reader: Box::new(BufReader::with_capacity(256 * 1024, file)),
        });
    }
    Ok(inputs)
}

/// The record a line stands for, and whether its body was cut to
/// [`MAX_BODY_BYTES`]; `None` for a blank line. See [`LogsCommand::Submit`]
/// for the JSON fields read. `severity` is the severity of lines that carry
/// none.
pub fn parse_line(line: &str, severity: Option<&str>) -> Option<(LogSample, bool)> {
    let line = line.trim_end_matches(['\n', '\r']);
    if line.trim().is_empty() {
        return None;
    }
    let mut body = None;
    let mut level = None;
    if line.trim_start().starts_with('{')
        && let Ok(serde_json::Value::Object(object)) = serde_json::from_str(line)
    {
        body = first_present(&object, &["body", "message", "msg", "log"]);
        level = first_present(&object, &["severity", "severity_text", "level"]);
    }
    let mut body = body.unwrap_or_else(|| line.to_owned());
    let truncated = truncate_at_boundary(&mut body, MAX_BODY_BYTES);
    let record = LogSample {
        body,
        severity: level
            .or_else(|| severity.map(str::to_owned))
            .unwrap_or_default(),
        time_unix_ms: 0,
    };
    Some((record, truncated))
}

/// The first of `keys` with a value: strings as they are, numbers and
/// other values as JSON text; null and empty strings count as absent.
fn first_present(
    object: &serde_json::Map<String, serde_json::Value>,
    keys: &[&str],
) -> Option<String> {
    keys.iter().find_map(|key| match object.get(*key)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) if s.trim().is_empty() => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    })
}

/// Whether `body` was cut.
fn truncate_at_boundary(body: &mut String, max: usize) -> bool {
    if body.len() <= max {
        return false;
    }
    let keep = tero_sdk::templates::truncate(body, max).len();
    body.truncate(keep);
    true
}

/// Bytes a record adds to a request: its strings and a little framing.
fn encoded_size(record: &LogSample) -> usize {
    record.body.len() + record.severity.len() + 16
}

/// Groups records into requests of at most `max_records` records and
/// about `max_bytes` bytes (a single larger record goes alone).
#[derive(Debug)]
pub struct Batcher {
    max_records: usize,
    max_bytes: usize,
    records: Vec<LogSample>,
    bytes: usize,
}

impl Batcher {
    pub fn new(max_records: usize, max_bytes: usize) -> Batcher {
        Batcher {
            max_records: max_records.max(1),
            max_bytes,
            records: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds `record`; returns a batch when one is full.
    pub fn push(&mut self, record: LogSample) -> Option<Vec<LogSample>> {
        let size = encoded_size(&record);
        let full = if !self.records.is_empty() && self.bytes + size > self.max_bytes {
            Some(self.take())
        } else {
            None
        };
        self.bytes += size;
        self.records.push(record);
        if full.is_some() {
            return full;
        }
        (self.records.len() >= self.max_records).then(|| self.take())
    }

    /// What is left.
    pub fn finish(mut self) -> Option<Vec<LogSample>> {
        (!self.records.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> Vec<LogSample> {
        self.bytes = 0;
        std::mem::take(&mut self.records)
    }
}

/// What `tero logs submit` did.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    pub batches: u64,
    /// Records in the requests the control plane answered.
    pub records_sent: u64,
    pub accepted: u64,
    /// Distinct templates, at least: the control plane counts them per
    /// request, so with several batches this is the largest count of one
    /// batch (or the new ones, if more).
    pub templates: u64,
    pub new_templates: u64,
    /// Bodies cut to [`MAX_BODY_BYTES`].
    pub truncated: u64,
}

impl Totals {
    fn add(&mut self, records: usize, response: &SubmitLogsResponse) {
        self.batches += 1;
        self.records_sent += records as u64;
        self.accepted += response.accepted;
        self.new_templates += u64::from(response.new_templates);
        self.templates = self
            .templates
            .max(u64::from(response.templates))
            .max(self.new_templates);
    }
}

/// Reads every input in order and hands `send` one batch at a time. A
/// failure stops everything, with an error saying what was already
/// submitted (sending it again would count it twice).
pub async fn submit_all<F, Fut>(
    inputs: Vec<Input>,
    severity: Option<&str>,
    max_records: usize,
    max_bytes: usize,
    send: F,
) -> anyhow::Result<Totals>
where
    F: FnMut(Vec<LogSample>) -> Fut,
    Fut: Future<Output = Result<SubmitLogsResponse, ClientError>>,
{
    let mut totals = Totals::default();
    match read_and_send(inputs, severity, max_records, max_bytes, send, &mut totals).await {
        Ok(()) => Ok(totals),
        Err(e) if totals.batches == 0 => Err(e),
        Err(e) => Err(e.context(format!(
            "stopped after {} ({} records, {} accepted) had been submitted; sending the same \
             input again would count those records twice, so resend only what follows them",
            batches(totals.batches),
            totals.records_sent,
            totals.accepted
        ))),
    }
}

fn batches(n: u64) -> String {
    if n == 1 {
        "1 batch".into()
    } else {
        format!("{n} batches")
    }
}

async fn read_and_send<F, Fut>(
    inputs: Vec<Input>,
    severity: Option<&str>,
    max_records: usize,
    max_bytes: usize,
    mut send: F,
    totals: &mut Totals,
) -> anyhow::Result<()>
where
    F: FnMut(Vec<LogSample>) -> Fut,
    Fut: Future<Output = Result<SubmitLogsResponse, ClientError>>,
{
    let mut batcher = Batcher::new(max_records, max_bytes);
    let mut line = Vec::new();
    for mut input in inputs {
        loop {
            line.clear();
            let read = input
                .reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("cannot read {}", input.name))?;
            if read == 0 {
                break;
            }
            let Some((record, truncated)) = parse_line(&String::from_utf8_lossy(&line), severity)
            else {
                continue;
            };
            totals.truncated += u64::from(truncated);
            if let Some(batch) = batcher.push(record) {
                send_batch(&mut send, batch, totals).await?;
            }
        }
    }
    if let Some(batch) = batcher.finish() {
        send_batch(&mut send, batch, totals).await?;
    }
    Ok(())
}

async fn send_batch<F, Fut>(
    send: &mut F,
    batch: Vec<LogSample>,
    totals: &mut Totals,
) -> anyhow::Result<()>
where
    F: FnMut(Vec<LogSample>) -> Fut,
    Fut: Future<Output = Result<SubmitLogsResponse, ClientError>>,
{
    let records = batch.len();
    let response = send(batch)
        .await
        .with_context(|| format!("sending batch {} ({records} records)", totals.batches + 1))?;
    totals.add(records, &response);
    Ok(())
}

pub fn render_totals(totals: &Totals) -> String {
    let mut table = Table::new(&["FIELD", "VALUE"]);
    let mut row = |k: &str, v: String| table.row(vec![k.into(), v]);
    row("records sent", totals.records_sent.to_string());
    row("accepted", totals.accepted.to_string());
    row(
        "templates",
        if totals.batches > 1 {
            format!(
                "at least {} (counted per batch; {})",
                totals.templates,
                batches(totals.batches)
            )
        } else {
            totals.templates.to_string()
        },
    );
    row("new templates", totals.new_templates.to_string());
    if totals.truncated > 0 {
        row(
            "truncated",
            format!(
                "{} bodies cut to {} KiB",
                totals.truncated,
                MAX_BODY_BYTES / 1024
            ),
        );
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn record(body: &str, severity: &str) -> LogSample {
        LogSample {
            body: body.into(),
            severity: severity.into(),
            time_unix_ms: 0,
        }
    }

    fn parse(line: &str, severity: Option<&str>) -> Option<LogSample> {
        parse_line(line, severity).map(|(record, _)| record)
    }

    fn input(name: &str, text: &str) -> Input {
        Input {
            name: name.into(),
            reader: Box::new(Cursor::new(text.as_bytes().to_vec())),
        }
    }

    #[test]
    fn a_plain_line_is_the_body_and_takes_the_flag_severity() {
        assert_eq!(
            parse("User 42 logged in\r\n", Some("INFO")),
            Some(record("User 42 logged in", "INFO"))
        );
        assert_eq!(
            parse("  indented line", None),
            Some(record("  indented line", ""))
        );
        assert_eq!(parse("", Some("INFO")), None);
        assert_eq!(parse("   \t\r\n", Some("INFO")), None);
    }

    #[test]
    fn a_json_object_gives_body_and_severity_by_field_precedence() {
        let line = r#"{"msg":"second","message":"first","level":"warn","severity_text":"ERROR"}"#;
        assert_eq!(parse(line, Some("INFO")), Some(record("first", "ERROR")));
        let line = r#"{"log":"from docker","stream":"stdout"}"#;
        assert_eq!(
            parse(line, Some("DEBUG")),
            Some(record("from docker", "DEBUG")),
            "the flag's severity when the object carries none"
        );
        let line = r#"{"body":"b","severity":"INFO","level":"debug"}"#;
        assert_eq!(parse(line, None), Some(record("b", "INFO")));
        // Null and empty values are absent; other values are their JSON.
        let line = r#"{"body":null,"message":"","msg":"m","level":30}"#;
        assert_eq!(parse(line, None), Some(record("m", "30")));
        let line = r#"{"message":{"text":"nested"}}"#;
        assert_eq!(parse(line, None), Some(record(r#"{"text":"nested"}"#, "")));
    }

    #[test]
    fn json_without_a_body_field_and_non_objects_are_the_whole_line() {
        let line = r#"{"event":"checkout","level":"info"}"#;
        assert_eq!(parse(line, None), Some(record(line, "info")));
        for line in [r#"{"broken": "#, r#"["an","array"]"#, "42", r#""string""#] {
            assert_eq!(
                parse(line, Some("WARN")),
                Some(record(line, "WARN")),
                "{line}"
            );
        }
    }

    #[test]
    fn long_bodies_are_cut_at_a_character_boundary() {
        let line = format!("a{}", "é".repeat(MAX_BODY_BYTES));
        let (sample, truncated) = parse_line(&line, None).unwrap();
        assert!(truncated);
        assert!(sample.body.len() <= MAX_BODY_BYTES);
        assert!(sample.body.len() > MAX_BODY_BYTES - 2);
        let (_, truncated) = parse_line("short", None).unwrap();
        assert!(!truncated);
    }

    #[test]
    fn batches_hold_at_most_the_record_count() {
        let mut batcher = Batcher::new(1000, MAX_BATCH_BYTES);
        let mut sizes = Vec::new();
        for i in 0..2500 {
            if let Some(batch) = batcher.push(record(&format!("line {i}"), "")) {
                sizes.push(batch.len());
            }
        }
        sizes.extend(batcher.finish().map(|b| b.len()));
        assert_eq!(sizes, [1000, 1000, 500]);
        assert!(Batcher::new(10, 1024).finish().is_none());
    }

    #[test]
    fn batches_stay_under_the_byte_bound_and_a_huge_record_goes_alone() {
        let hundred = "x".repeat(100 - 16);
        let mut batcher = Batcher::new(1000, 350);
        let mut sizes = Vec::new();
        for _ in 0..7 {
            if let Some(batch) = batcher.push(record(&hundred, "")) {
                sizes.push(batch.len());
            }
        }
        if let Some(batch) = batcher.push(record(&"y".repeat(1000), "")) {
            sizes.push(batch.len());
        }
        if let Some(batch) = batcher.push(record("after", "")) {
            sizes.push(batch.len());
        }
        sizes.extend(batcher.finish().map(|b| b.len()));
        assert_eq!(sizes, [3, 3, 1, 1, 1]);
    }

    fn answer(accepted: u64, templates: u32, new_templates: u32) -> SubmitLogsResponse {
        SubmitLogsResponse {
            accepted,
            templates,
            new_templates,
        }
    }

    #[tokio::test]
    async fn every_input_is_read_in_order_and_sent_in_batches() {
        let inputs = vec![
            input("a.log", "one\n\ntwo\nthree"),
            input("b.log", "{\"msg\":\"four\",\"level\":\"debug\"}\nfive\n"),
        ];
        let mut sent: Vec<Vec<LogSample>> = Vec::new();
        let totals = submit_all(inputs, Some("INFO"), 2, MAX_BATCH_BYTES, |batch| {
            let n = batch.len() as u64;
            sent.push(batch);
            std::future::ready(Ok(answer(n, 2, 1)))
        })
        .await
        .unwrap();
        let bodies: Vec<Vec<&str>> = sent
            .iter()
            .map(|b| b.iter().map(|r| r.body.as_str()).collect())
            .collect();
        assert_eq!(
            bodies,
            [vec!["one", "two"], vec!["three", "four"], vec!["five"]]
        );
        assert_eq!(sent[1][1].severity, "debug");
        assert_eq!(sent[2][0].severity, "INFO");
        assert_eq!(
            totals,
            Totals {
                batches: 3,
                records_sent: 5,
                accepted: 5,
                templates: 3,
                new_templates: 3,
                truncated: 0,
            }
        );
        let text = render_totals(&totals);
        assert!(text.contains("records sent   5\n"), "{text}");
        assert!(
            text.contains("templates      at least 3 (counted per batch; 3 batches)\n"),
            "{text}"
        );
        assert!(text.contains("new templates  3\n"), "{text}");
    }

    #[tokio::test]
    async fn a_single_batch_reports_exact_templates() {
        let totals = submit_all(
            vec![input("a", "x\ny\n")],
            None,
            1000,
            MAX_BATCH_BYTES,
            |b| std::future::ready(Ok(answer(b.len() as u64, 2, 0))),
        )
        .await
        .unwrap();
        assert_eq!(totals.templates, 2);
        assert!(render_totals(&totals).contains("templates      2\n"));
    }

    #[tokio::test]
    async fn a_failed_batch_says_what_was_already_submitted() {
        let mut calls = 0;
        let err = submit_all(
            vec![input("a.log", "1\n2\n3\n4\n5\n")],
            None,
            2,
            MAX_BATCH_BYTES,
            |b| {
                calls += 1;
                std::future::ready(if calls == 2 {
                    Err(ClientError::Unavailable {
                        message: "overloaded".into(),
                        retry_after: None,
                    })
                } else {
                    Ok(answer(b.len() as u64, 1, 1))
                })
            },
        )
        .await
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.starts_with("stopped after 1 batch (2 records, 2 accepted) had been submitted"),
            "{text}"
        );
        assert!(text.contains("count those records twice"), "{text}");
        assert!(text.contains("sending batch 2 (2 records)"), "{text}");
        assert!(text.contains("overloaded"), "{text}");
        assert_eq!(calls, 2, "nothing is sent after a failure");

        let err = submit_all(
            vec![input("a.log", "1\n")],
            None,
            2,
            MAX_BATCH_BYTES,
            |_| {
                std::future::ready(Err(ClientError::NotFound {
                    message: "no such service".into(),
                }))
            },
        )
        .await
        .unwrap_err();
        assert!(!format!("{err:#}").contains("stopped after"), "{err:#}");
    }

    #[test]
    fn inputs_are_checked_before_anything_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("present.log");
        std::fs::write(&present, "line\n").unwrap();
        let missing = dir.path().join("missing.log");
        let err = open_inputs(&[present.clone(), missing.clone()])
            .err()
            .expect("a missing file is an error");
        let text = format!("{err:#}");
        assert!(text.contains(&missing.display().to_string()), "{text}");
        assert!(text.contains("cannot open the log file"), "{text}");

        let err = open_inputs(&[dir.path().to_path_buf()]).err().unwrap();
        assert!(format!("{err:#}").contains("is a directory"), "{err:#}");

        let dash = PathBuf::from("-");
        let err = open_inputs(&[dash.clone(), dash]).err().unwrap();
        assert!(format!("{err:#}").contains("given twice"), "{err:#}");

        assert_eq!(open_inputs(&[present]).unwrap().len(), 1);
    }
}

//! `tero`, the command line, as an operator meets it: the real binary
//! against a real `tero-control-plane` (and a real `tero-edge` reporting to
//! it), on loopback ports chosen at run time.
//!
//! Declarative apply/diff/prune round trips over a directory of policy
//! files, the inspection and state commands in every output format, edge
//! keys and the runtime view, measured statistics, every error path a user
//! meets (with its exit code), local validation and `policy test` with
//! figures computed independently from the input, and `quickstart` leaving
//! nothing behind.
//!
//! Every child `tero` runs without the caller's `TERO_*` variables: each
//! test says which endpoint and token it uses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tero_e2e::cli::{Run, tero_with_timeout};
use tero_e2e::control_plane::{ControlPlane, policy_label};
use tero_e2e::fixtures::{DROP_DEBUG, EXPOSITION, TEXT, WITHOUT_DEBUG};
use tero_e2e::upstream::{Compression, Upstream};
use tero_e2e::{Edge, binary, free_port, http_get, wait_for};

// ---------------------------------------------------------------- helpers

/// `tero args` with no server settings at all.
fn tero(args: &[&str]) -> Run {
    tero_e2e::cli::tero(args, &[])
}

/// `tero args` against `cp` with its admin token, both from the
/// environment, as a user's shell would set them.
fn cli(cp: &ControlPlane, args: &[&str]) -> Run {
    let endpoint = cp.endpoint();
    tero_e2e::cli::tero(
        args,
        &[
            ("TERO_ENDPOINT", &endpoint),
            ("TERO_TOKEN", &cp.admin_token),
        ],
    )
}

/// `cli(cp, args -o json)`, asserting success.
fn cli_json(cp: &ControlPlane, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    cli(cp, &args).json()
}

fn temp_dir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().expect("temp dir"))
}

fn start(name: &str) -> ControlPlane {
    ControlPlane::start(temp_dir(), name)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create dir");
    }
    std::fs::write(path, text).expect("write file");
}

/// One item of a `policies:` list: drops metrics whose name matches
/// `op: value` (`exact`, `starts_with`, `regex`).
fn drop_item(id: &str, name: &str, op: &str, value: &str) -> String {
    format!(
        "  - id: {id}\n    name: {name}\n    metric:\n      match:\n        - metric_field: name\n          {op}: \"{value}\"\n      keep: false\n"
    )
}

fn policies_file(items: &[String]) -> String {
    format!("policies:\n{}", items.concat())
}

/// A proto3 JSON 64-bit integer (a string) or a plain number, as i64.
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("not a number: {v}")),
        Value::Number(n) => n.as_i64().unwrap_or_else(|| panic!("not an i64: {v}")),
        other => panic!("not a number: {other}"),
    }
}

/// `policy list -o json`: id → managed policy.
fn listed(cp: &ControlPlane) -> BTreeMap<String, Value> {
    let list = cli_json(cp, &["policy", "list"]);
    list.as_array()
        .unwrap_or_else(|| panic!("policy list -o json is not an array: {list}"))
        .iter()
        .map(|m| {
            let id = m["policy"]["id"].as_str().expect("policy.id").to_owned();
            (id, m.clone())
        })
        .collect()
}

fn ids(map: &BTreeMap<String, Value>) -> BTreeSet<&str> {
    map.keys().map(String::as_str).collect()
}

fn set<'a>(items: &[&'a str]) -> BTreeSet<&'a str> {
    items.iter().copied().collect()
}

/// Lines of `text` starting with `prefix`.
fn lines_starting<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// Parses an aligned table by the positions of its header's column names:
/// every row's cell must start exactly under its column name (after a
/// space), so a misaligned table fails here. Returns the data rows.
fn table(text: &str, header: &[&str]) -> Vec<Vec<String>> {
    let mut lines = text.lines();
    let head = lines
        .next()
        .unwrap_or_else(|| panic!("no table in {text:?}"));
    let mut starts = Vec::new();
    let mut from = 0;
    for name in header {
        let at = head[from..]
            .find(name)
            .unwrap_or_else(|| panic!("column {name} missing from header {head:?}"))
            + from;
        assert!(
            at == 0 || head[..at].ends_with("  "),
            "column {name} not separated by two spaces in {head:?}"
        );
        starts.push(at);
        from = at + name.len();
    }
    assert_eq!(starts[0], 0, "the header is the first line: {text}");
    let trailing = &head[from..];
    assert!(
        trailing.is_empty(),
        "header has more than {header:?}: {head:?}"
    );
    let mut rows = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            break;
        }
        let mut cells = Vec::new();
        for (i, &at) in starts.iter().enumerate() {
            if at > 0 && line.len() > at {
                assert!(
                    line.as_bytes()[at - 1] == b' ',
                    "cell {} of {line:?} does not start under {:?}:\n{text}",
                    i,
                    header[i]
                );
            }
            let end = starts
                .get(i + 1)
                .copied()
                .unwrap_or(line.len())
                .min(line.len());
            let cell = line.get(at.min(line.len())..end).unwrap_or("");
            if i + 1 < starts.len() && line.len() > end {
                assert!(
                    cell.ends_with(' '),
                    "cell {i} of {line:?} runs into the next column:\n{text}"
                );
            }
            cells.push(cell.trim().to_owned());
        }
        rows.push(cells);
    }
    rows
}

// ---------------------------------------------- 1. apply, diff and prune

#[test]
fn apply_diff_and_prune_round_trip_a_directory_of_policy_files() {
    let cp = start("cp-apply");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("team-policies");
    let dir_arg = path_str(&dir).to_owned();
    let debug_file = dir.join("debug.yaml");
    let fds_file = dir.join("fds.yaml");
    let more_file = dir.join("nested").join("more.yml");
    write(&debug_file, DROP_DEBUG);
    // One bare policy (no `policies:` wrapper).
    let fds = "id: drop-fds\nname: Drop the fd gauge\nmetric:\n  match:\n    - metric_field: name\n      exact: process_open_fds\n  keep: false\n";
    write(&fds_file, fds);
    write(
        &more_file,
        &policies_file(&[
            drop_item("drop-go-gc", "Drop go gc", "starts_with", "go_gc_"),
            drop_item("drop-tmp", "Drop tmp", "regex", "^tmp_.*"),
        ]),
    );
    let files: BTreeMap<&str, &Path> = [
        ("drop-debug", debug_file.as_path()),
        ("drop-fds", fds_file.as_path()),
        ("drop-go-gc", more_file.as_path()),
        ("drop-tmp", more_file.as_path()),
    ]
    .into();
    let all = set(&["drop-debug", "drop-fds", "drop-go-gc", "drop-tmp"]);

    // diff: every policy to create, with its file; nothing changes.
    let out = cli(&cp, &["policy", "diff", "-f", &dir_arg]).ok();
    let creates = lines_starting(&out, "+ create policy ");
    assert_eq!(creates.len(), all.len(), "{out}");
    for (id, file) in &files {
        assert!(
            creates
                .iter()
                .any(|l| *l == format!("+ create policy {id} ({})", file.display())),
            "no create line for {id} from {}:\n{out}",
            file.display()
        );
    }
    assert!(lines_starting(&out, "~ ").is_empty(), "{out}");
    assert!(lines_starting(&out, "- delete").is_empty(), "{out}");
    assert!(listed(&cp).is_empty(), "diff changed the server");

    // apply: creates them all, labelled with the directory's name.
    let out = cli(&cp, &["policy", "apply", "-f", &dir_arg]).ok();
    assert_eq!(
        lines_starting(&out, "+ create policy ").len(),
        all.len(),
        "{out}"
    );
    assert!(
        out.contains(&format!("applied {} change(s)", all.len())),
        "{out}"
    );
    let now = listed(&cp);
    assert_eq!(ids(&now), all);
    for (id, managed) in &now {
        assert_eq!(
            policy_label(&managed["policy"], "tero.source"),
            Some("team-policies"),
            "{id}: {managed}"
        );
        assert_eq!(int(&managed["revision"]), 1, "{managed}");
    }
    assert_eq!(
        now["drop-tmp"]["policy"]["metric"]["match"][0]["regex"], "^tmp_.*",
        "{}",
        now["drop-tmp"]
    );

    // Re-applying the same files changes nothing.
    let out = cli(&cp, &["policy", "apply", "-f", &dir_arg]).ok();
    assert!(out.contains("no changes"), "{out}");
    let out = cli(&cp, &["policy", "diff", "-f", &dir_arg]).ok();
    assert!(out.contains("no changes"), "{out}");
    assert!(
        listed(&cp).values().all(|m| int(&m["revision"]) == 1),
        "a no-op apply wrote revisions"
    );

    // An edited match: diff shows exactly the changed line, and changes
    // nothing; apply updates it to revision 2.
    write(
        &fds_file,
        &fds.replace("exact: process_open_fds", "exact: process_max_fds"),
    );
    let out = cli(&cp, &["policy", "diff", "-f", &dir_arg]).ok();
    assert_eq!(
        lines_starting(&out, "~ update policy "),
        [format!("~ update policy drop-fds ({})", fds_file.display())],
        "{out}"
    );
    let removed = lines_starting(&out, "- ");
    let added = lines_starting(&out, "+ ");
    assert!(
        removed.len() == 1 && removed[0].contains("exact: process_open_fds"),
        "{out}"
    );
    assert!(
        added.len() == 1 && added[0].contains("exact: process_max_fds"),
        "{out}"
    );
    let before = cli_json(&cp, &["policy", "get", "drop-fds"]);
    assert_eq!(int(&before["revision"]), 1, "diff changed the server");
    assert_eq!(
        before["policy"]["metric"]["match"][0]["exact"],
        "process_open_fds"
    );

    let report = cli_json(&cp, &["policy", "apply", "-f", &dir_arg]);
    assert_eq!(report["applied"], true, "{report}");
    assert_eq!(report["source"], "team-policies", "{report}");
    let changes = report["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1, "{report}");
    assert_eq!(changes[0]["action"], "update", "{report}");
    assert_eq!(changes[0]["id"], "drop-fds", "{report}");
    assert_eq!(
        changes[0]["file"].as_str(),
        Some(path_str(&fds_file)),
        "{report}"
    );
    let diff = changes[0]["diff"].as_str().expect("diff text");
    assert!(
        diff.lines()
            .any(|l| l.starts_with('-') && l.contains("process_open_fds"))
            && diff
                .lines()
                .any(|l| l.starts_with('+') && l.contains("process_max_fds")),
        "{diff}"
    );
    let after = cli_json(&cp, &["policy", "get", "drop-fds"]);
    assert_eq!(int(&after["revision"]), 2, "{after}");
    assert_eq!(
        after["policy"]["metric"]["match"][0]["exact"],
        "process_max_fds"
    );

    // Policies made elsewhere: by hand, and by another source.
    let (status, body) = cp.api(
        "POST",
        "/api/v1/policies",
        Some(&json!({"policy": {
            "id": "manual",
            "name": "made by hand",
            "metric": {"match": [{"metricField": 1, "exact": "x"}], "keep": false}
        }})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = cp.api(
        "POST",
        "/api/v1/policies",
        Some(&json!({"policy": {
            "id": "other-team",
            "name": "another repository's",
            "labels": [{"key": "tero.source", "value": {"stringValue": "other"}}],
            "metric": {"match": [{"metricField": 1, "exact": "y"}], "keep": false}
        }})),
    );
    assert_eq!(status, 200, "{body}");

    // A file removed: without --prune nothing is deleted.
    std::fs::remove_file(&debug_file).unwrap();
    let out = cli(&cp, &["policy", "apply", "-f", &dir_arg]).ok();
    assert!(out.contains("no changes"), "{out}");
    assert!(listed(&cp).contains_key("drop-debug"));

    // --prune --dry-run shows the delete and changes nothing.
    let out = cli(
        &cp,
        &[
            "policy",
            "apply",
            "-f",
            &dir_arg,
            "--prune",
            "--source",
            "team-policies",
            "--dry-run",
        ],
    )
    .ok();
    assert_eq!(
        lines_starting(&out, "- delete policy "),
        ["- delete policy drop-debug"],
        "{out}"
    );
    assert!(lines_starting(&out, "+ create").is_empty(), "{out}");
    let dry = cli_json(
        &cp,
        &[
            "policy",
            "apply",
            "-f",
            &dir_arg,
            "--prune",
            "--source",
            "team-policies",
            "--dry-run",
        ],
    );
    assert_eq!(dry["applied"], false, "{dry}");
    assert_eq!(
        dry["changes"],
        json!([{"action": "delete", "id": "drop-debug", "diff": dry["changes"][0]["diff"]}]),
        "{dry}"
    );
    let now = listed(&cp);
    assert!(now.contains_key("drop-debug"), "--dry-run deleted");
    assert_eq!(int(&now["drop-debug"]["revision"]), 1);

    // --prune deletes only what this source applied.
    let report = cli_json(
        &cp,
        &[
            "policy",
            "apply",
            "-f",
            &dir_arg,
            "--prune",
            "--source",
            "team-policies",
        ],
    );
    assert_eq!(report["applied"], true, "{report}");
    let actions: Vec<(&str, &str)> = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| (c["action"].as_str().unwrap(), c["id"].as_str().unwrap()))
        .collect();
    assert_eq!(actions, [("delete", "drop-debug")], "{report}");
    assert_eq!(
        ids(&listed(&cp)),
        set(&["drop-fds", "drop-go-gc", "drop-tmp", "manual", "other-team"])
    );
    cli(&cp, &["policy", "get", "drop-debug"]).fails(1);

    // --prune without --source is refused: the directory's name alone
    // could be shared by another repository's policies.
    cli(&cp, &["policy", "apply", "-f", &dir_arg, "--prune"]).fails(2);

    // Nothing left to do.
    let out = cli(
        &cp,
        &[
            "policy",
            "diff",
            "-f",
            &dir_arg,
            "--prune",
            "--source",
            "team-policies",
        ],
    )
    .ok();
    assert!(out.contains("no changes"), "{out}");
}

// ------------------------ 2. list, get, enable, disable, history, delete

#[test]
fn inspection_and_state_commands_in_every_output_format() {
    let cp = start("cp-inspect");
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("policies.yaml");
    write(
        &file,
        &policies_file(&[
            drop_item("drop-debug", "Drop debug families", "starts_with", "debug_"),
            drop_item(
                "drop-a-rather-long-policy-id",
                "Long",
                "exact",
                "process_open_fds",
            ),
            drop_item("x", "Short id", "exact", "x_total"),
            drop_item("shadowed", "Shadow", "exact", "y_total").replace(
                "    metric:",
                "    labels: {tero.mode: shadow}\n    metric:",
            ),
        ]),
    );
    cli(&cp, &["policy", "apply", "-f", path_str(&file)]).ok();
    let json_list = cli_json(&cp, &["policy", "list"]);

    // The table: a header and one aligned row per policy, agreeing with
    // the JSON.
    let out = cli(&cp, &["policy", "list"]).ok();
    let header = [
        "ID", "NAME", "TARGET", "MODE", "REVISION", "SCOPE", "UPDATED",
    ];
    let rows = table(&out, &header);
    let listed_json = listed(&cp);
    assert_eq!(rows.len(), listed_json.len(), "{out}");
    for row in &rows {
        let managed = listed_json
            .get(&row[0])
            .unwrap_or_else(|| panic!("row {row:?} is no policy:\n{out}"));
        let policy = &managed["policy"];
        assert_eq!(row[1], policy["name"].as_str().unwrap(), "{out}");
        assert_eq!(row[2], "metric", "{out}");
        // The mode edges run it in, as `tero issues accept --mode` says it.
        let mode = if row[0] == "shadowed" {
            "shadow"
        } else {
            "active"
        };
        assert_eq!(row[3], mode, "{out}");
        assert_eq!(row[4], int(&managed["revision"]).to_string(), "{out}");
        assert_eq!(row[5], "all", "{out}");
        assert!(row[6].ends_with('Z') && row[6].len() == 20, "{out}");
    }

    // YAML carries what JSON does, with each policy as its file holds it.
    let mut yaml_list: Value =
        serde_yaml_ng::from_str(&cli(&cp, &["policy", "list", "-o", "yaml"]).ok())
            .expect("policy list -o yaml is YAML");
    let mut json_list = json_list;
    for (from_yaml, from_json) in yaml_list
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(json_list.as_array_mut().unwrap())
    {
        let policy = from_yaml["policy"].take();
        assert_eq!(
            policy["metric"]["match"][0]["metric_field"], "name",
            "{policy}"
        );
        from_json["policy"].take();
    }
    assert_eq!(yaml_list, json_list);

    // Disable: stored, shown, filterable.
    let out = cli(
        &cp,
        &["policy", "disable", "drop-debug", "--reason", "too noisy"],
    )
    .ok();
    assert!(
        out.contains("drop-debug") && out.contains("disabled"),
        "{out}"
    );
    let got = cli_json(&cp, &["policy", "get", "drop-debug"]);
    assert_eq!(got["policy"]["enabled"], false, "{got}");
    assert_eq!(int(&got["revision"]), 2, "{got}");
    let off = cli_json(&cp, &["policy", "list", "--enabled", "false"]);
    let off_ids: Vec<&str> = off
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["policy"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(off_ids, ["drop-debug"], "{off}");
    let rows = table(&cli(&cp, &["policy", "list"]).ok(), &header);
    for row in &rows {
        let expected = match row[0].as_str() {
            "drop-debug" => "disabled",
            "shadowed" => "shadow",
            _ => "active",
        };
        assert_eq!(row[3], expected, "{row:?}");
    }

    let enabled = cli_json(&cp, &["policy", "enable", "drop-debug"]);
    assert_eq!(enabled["policy"]["enabled"], true, "{enabled}");
    assert_eq!(int(&enabled["revision"]), 3, "{enabled}");

    // History: newest first, with the reason given.
    let history = cli_json(&cp, &["policy", "history", "drop-debug"]);
    let revisions: Vec<i64> = history
        .as_array()
        .expect("history is a list")
        .iter()
        .map(|r| int(&r["revision"]))
        .collect();
    assert_eq!(revisions, [3, 2, 1], "{history}");
    assert_eq!(history[1]["reason"], "too noisy", "{history}");
    assert_eq!(history[1]["policy"]["enabled"], false, "{history}");
    assert_eq!(history[2]["action"], "create", "{history}");
    let at: Vec<i64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| int(&r["atUnixMs"]))
        .collect();
    assert!(at.windows(2).all(|w| w[0] >= w[1]), "{history}");
    let rows = table(
        &cli(&cp, &["policy", "history", "drop-debug"]).ok(),
        &["REVISION", "ACTION", "AUTHOR", "AT", "REASON"],
    );
    let column: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(column, ["3", "2", "1"], "{rows:?}");
    assert_eq!(rows[1][1], history[1]["action"].as_str().unwrap());
    assert_eq!(rows[1][4], "too noisy");

    // Delete.
    let out = cli(&cp, &["policy", "delete", "x", "--reason", "obsolete"]).ok();
    assert!(out.contains("deleted"), "{out}");
    let stderr = cli(&cp, &["policy", "get", "x"]).fails(1);
    assert!(stderr.contains("not found"), "{stderr}");
    assert_eq!(
        ids(&listed(&cp)),
        set(&["drop-debug", "drop-a-rather-long-policy-id", "shadowed"])
    );
}

/// Policies of every kind, as an author writes them.
const AUTHORED: &str = r#"
policies:
  - id: probes
    name: Drop probe latency
    labels: {team: web, tero.mode: shadow}
    metric:
      match:
        - metric_field: name
          exact: http_server_request_duration_seconds
        - datapoint_attribute: route
          regex: '^/(healthz|readyz)$'
        - datapoint_attribute: code
          equals: 200
        - metric_type: histogram
      keep: false
  - id: quiet-logs
    name: Sample debug logs and hide passwords
    enabled: false
    log:
      match:
        - log_field: severity_text
          exact: DEBUG
        - log_attribute: [http, status]
          gte: 500
          negate: true
      keep: 10%
      sample_key: {log_attribute: user_id}
      transform:
        redact: [{log_attribute: password}]
        rename: [{from_log_attribute: usr, to: user, upsert: true}]
        add: [{log_attribute: filtered, value: 'true'}]
  - id: slow-spans
    name: Keep a quarter of server spans
    trace:
      match:
        - span_kind: server
        - span_attribute: http.route
          starts_with: /api/
      keep: {percentage: 25, mode: proportional}
"#;

#[test]
fn policies_are_shown_as_files_and_get_yaml_applies_back_unchanged() {
    let cp = start("cp-authoring");
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo.yaml");
    write(&repo, AUTHORED);
    cli(&cp, &["policy", "apply", "-f", path_str(&repo)]).ok();

    // `get -o yaml` is the file: re-applying it under the same source is a
    // no-op, for every kind of policy.
    for id in ["probes", "quiet-logs", "slow-spans"] {
        let yaml = cli(&cp, &["policy", "get", id, "-o", "yaml"]).ok();
        for wire in [
            "metricField",
            "datapointAttribute",
            "intValue",
            "logField",
            "spanKind",
        ] {
            assert!(!yaml.contains(wire), "{wire} in\n{yaml}");
        }
        assert!(!yaml.contains("tero.source"), "{yaml}");
        let file = work.path().join(format!("{id}.yaml"));
        write(&file, &yaml);
        tero(&["policy", "validate", "-f", path_str(&file)]).ok();
        let out = cli(
            &cp,
            &["policy", "apply", "-f", path_str(&file), "--source", "repo"],
        )
        .ok();
        assert!(out.contains("no changes"), "{id}:\n{yaml}\n{out}");
    }
    let yaml = cli(&cp, &["policy", "get", "probes", "-o", "yaml"]).ok();
    for line in [
        "- metric_field: name",
        "- datapoint_attribute: route",
        "equals: 200",
        "- metric_type: histogram",
        "tero.mode: shadow",
        "keep: false",
    ] {
        assert!(yaml.contains(line), "{line:?} not in\n{yaml}");
    }

    // A policy made through the API in proto3 JSON (as an accepted issue's
    // is): shown in the authoring form, and adopted into a repository by
    // saving it; the only change is the owner label.
    let (status, body) = cp.api(
        "POST",
        "/api/v1/policies",
        Some(&json!({"policy": {
            "id": "from-api",
            "name": "made elsewhere",
            "metric": {"match": [
                {"metricField": 1, "exact": "api_requests_total"},
                {"datapointAttribute": {"path": ["code"]}, "equals": {"intValue": "200"}}
            ], "keep": false}
        }})),
    );
    assert_eq!(status, 200, "{body}");
    let yaml = cli(&cp, &["policy", "get", "from-api", "-o", "yaml"]).ok();
    assert!(
        yaml.contains("- metric_field: name\n")
            && yaml.contains("- datapoint_attribute: code\n")
            && yaml.contains("equals: 200\n"),
        "{yaml}"
    );
    let adopted = work.path().join("adopted.yaml");
    write(&adopted, &yaml);
    let out = cli(&cp, &["policy", "apply", "-f", path_str(&adopted)]).ok();
    let changed: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("+ ") || l.starts_with("- "))
        .collect();
    assert_eq!(changed, ["+ labels:", "+   tero.source: adopted"], "{out}");
    let out = cli(&cp, &["policy", "diff", "-f", path_str(&adopted)]).ok();
    assert!(out.contains("no changes"), "{out}");

    // Diffs read as edits of the file.
    write(&repo, &AUTHORED.replace("equals: 200", "equals: 404"));
    let out = cli(&cp, &["policy", "diff", "-f", path_str(&repo)]).ok();
    assert_eq!(
        lines_starting(&out, "- ")
            .into_iter()
            .chain(lines_starting(&out, "+ "))
            .map(str::trim_end)
            .collect::<Vec<_>>(),
        ["-     equals: 200", "+     equals: 404"],
        "{out}"
    );

    // `get` in table form shows the object: its fields, then its spec.
    let out = cli(&cp, &["policy", "get", "probes"]).ok();
    let rows = table(&out, &["FIELD", "VALUE"]);
    let field = |name: &str| {
        rows.iter()
            .find(|r| r[0] == name)
            .map(|r| r[1].clone())
            .unwrap_or_else(|| panic!("no {name} row:\n{out}"))
    };
    assert_eq!(field("id"), "probes");
    assert_eq!(field("target"), "metric");
    assert_eq!(field("revision"), "1");
    assert_eq!(field("scope"), "all");
    assert_eq!(field("source"), "repo");
    assert!(out.contains("\n    - metric_field: name\n"), "{out}");
    assert!(
        !out.contains("REVISION"),
        "the list row is not repeated:\n{out}"
    );

    // Every -o yaml shows its policies so; -o json stays the API's JSON.
    for args in [
        &["policy", "list", "-o", "yaml"][..],
        &["policy", "history", "probes", "-o", "yaml"],
        &["policy", "disable", "probes", "-o", "yaml"],
    ] {
        let yaml = cli(&cp, args).ok();
        assert!(
            yaml.contains("- metric_field: name\n") && !yaml.contains("metricField"),
            "{args:?}:\n{yaml}"
        );
    }
    let json = cli_json(&cp, &["policy", "get", "probes"]);
    assert_eq!(
        json["policy"]["metric"]["match"][0]["metricField"], 1,
        "{json}"
    );
}

// ------------------------------------------ 3. keys, edges and statistics

#[test]
fn keys_edges_and_statistics_with_a_real_edge() {
    let dir = temp_dir();
    let cp = ControlPlane::start(dir.clone(), "cp-edges");

    // Keys: the secret once, never in a listing.
    let created = cli_json(&cp, &["keys", "create", "edge-key"]);
    let edge_secret = created["secret"].as_str().expect("secret").to_owned();
    let edge_key_id = created["key"]["id"].as_str().expect("key id").to_owned();
    assert!(!edge_secret.is_empty());
    let out = cli(&cp, &["keys", "create", "spare-key"]).ok();
    let mut lines = out.lines();
    let first = lines.next().unwrap_or_default();
    let spare_secret = lines.next().unwrap_or_default().trim().to_owned();
    assert!(first.contains("spare-key"), "{out}");
    assert!(
        !spare_secret.is_empty() && spare_secret != edge_secret,
        "{out}"
    );
    let listing = cli(&cp, &["keys", "list", "-o", "json"]).ok();
    for secret in [&edge_secret, &spare_secret] {
        assert!(
            !listing.contains(secret.as_str()),
            "a secret listed:\n{listing}"
        );
    }
    let keys: Value = serde_json::from_str(&listing).unwrap();
    let by_name: BTreeMap<&str, &Value> = keys
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| (k["name"].as_str().unwrap(), k))
        .collect();
    assert_eq!(
        by_name.keys().copied().collect::<Vec<_>>(),
        ["edge-key", "spare-key"]
    );
    assert_eq!(by_name["edge-key"]["id"], edge_key_id.as_str());
    let spare_id = by_name["spare-key"]["id"].as_str().unwrap().to_owned();
    for (name, secret) in [("edge-key", &edge_secret), ("spare-key", &spare_secret)] {
        let prefix = by_name[name]["prefix"].as_str().unwrap();
        assert!(
            !prefix.is_empty() && secret.starts_with(prefix),
            "{name}: {prefix} / {secret}"
        );
    }
    let table_out = cli(&cp, &["keys", "list"]).ok();
    assert!(!table_out.contains(edge_secret.as_str()));
    let rows = table(
        &table_out,
        &["ID", "NAME", "PREFIX", "CREATED", "LAST USED", "REVOKED"],
    );
    assert_eq!(rows.len(), 2, "{table_out}");

    // Revoke the spare: gone from the list, there with revoked ones.
    let out = cli(&cp, &["keys", "revoke", &spare_id]).ok();
    assert!(out.contains("revoked"), "{out}");
    let keys = cli_json(&cp, &["keys", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(keys[0]["id"], edge_key_id.as_str());
    let all_keys = cli_json(&cp, &["keys", "list", "--include-revoked"]);
    let spare = all_keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == spare_id.as_str())
        .unwrap_or_else(|| panic!("revoked key missing: {all_keys}"));
    assert!(int(&spare["revokedAtUnixMs"]) > 0, "{spare}");

    // A policy from a file, and an edge on the push stream with the key
    // the CLI made.
    let policy_file = dir.path().join("debug.yaml");
    write(&policy_file, DROP_DEBUG);
    cli(&cp, &["policy", "apply", "-f", path_str(&policy_file)]).ok();
    let up = Upstream::start(EXPOSITION.into(), TEXT, Compression::None);
    let instance = "cli-edge-0";
    let edge = Edge::start(
        json!({
            "upstream_url": up.url(),
            "service": {"name": "checkout", "instance_id": instance},
            "policy_providers": [cp.grpc_provider(&edge_secret)],
        }),
        dir.clone(),
        "edge-cli",
    );
    let scrape = || {
        let r = http_get(&edge.url("/metrics"), &[]).expect("scrape through the edge");
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    };
    wait_for(Duration::from_secs(10), "the policy applied", || {
        (scrape() == WITHOUT_DEBUG).then_some(())
    });
    for _ in 0..3 {
        assert_eq!(scrape(), WITHOUT_DEBUG);
    }

    // The runtime view.
    let view = wait_for(Duration::from_secs(10), "the edge in sync", || {
        let edges = cli_json(&cp, &["edges", "list"]);
        edges
            .as_array()?
            .iter()
            .find(|e| {
                e["instanceId"] == instance
                    && e["appliedHash"] != ""
                    && e["appliedHash"] == e["desiredHash"]
            })
            .cloned()
    });
    assert_eq!(view["serviceName"], "checkout", "{view}");
    assert_eq!(view["transport"], "TRANSPORT_STREAM", "{view}");
    assert_eq!(view["state"], "EDGE_STATE_CONNECTED", "{view}");
    let one = cli_json(&cp, &["edges", "get", instance]);
    assert_eq!(one["instanceId"], instance, "{one}");
    assert_eq!(one["appliedHash"], view["appliedHash"], "{one}");
    let out = cli(&cp, &["edges", "list"]).ok();
    let rows = table(
        &out,
        &[
            "INSTANCE",
            "SERVICE",
            "STATE",
            "TRANSPORT",
            "APPLIED",
            "IN SYNC",
            "LAST SEEN",
            "SEEN (5M)",
            "ERRORS",
        ],
    );
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(
        rows[0][..6],
        [
            instance,
            "checkout",
            "connected",
            "stream",
            &view["appliedHash"].as_str().unwrap()[..12],
            "yes"
        ],
        "{out}"
    );
    assert_eq!(rows[0][8], "-", "{out}");
    // `get` shows the object, one field per row, hashes whole.
    let out = cli(&cp, &["edges", "get", instance]).ok();
    let fields: BTreeMap<String, String> = table(&out, &["FIELD", "VALUE"])
        .into_iter()
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect();
    assert_eq!(fields["instance"], instance, "{out}");
    assert_eq!(fields["state"], "connected", "{out}");
    assert_eq!(
        fields["applied hash"],
        view["appliedHash"].as_str().unwrap(),
        "{out}"
    );
    assert_eq!(fields["in sync"], "yes", "{out}");
    assert_eq!(fields["api key"], edge_key_id, "{out}");
    assert!(out.contains("\nErrors: none\n"), "{out}");
    let stderr = cli(&cp, &["edges", "get", "no-such-edge"]).fails(1);
    assert!(stderr.contains("no-such-edge"), "{stderr}");

    // Statistics: what the edge counted, stored and shown. Each filtered
    // scrape matched the two debug series and dropped their lines.
    let counted = edge.self_metric("edge_policy_match_hits_total{policy_id=\"drop-debug\"}") as i64;
    assert!(counted >= 8 && counted % 2 == 0, "{counted}");
    let stats = wait_for(Duration::from_secs(10), "statistics stored", || {
        let stats = cli_json(&cp, &["stats", "drop-debug", "--since", "1h"]);
        (int(&stats["total"]["hits"]) >= counted).then_some(stats)
    });
    let total = &stats["total"];
    assert_eq!(stats["policyId"], "drop-debug", "{stats}");
    assert_eq!(int(&total["hits"]), counted, "{stats}");
    assert_eq!(int(&total["seriesDropped"]), counted, "{stats}");
    let debug_bytes: i64 = EXPOSITION
        .lines()
        .filter(|l| l.starts_with("debug_cache_entries{"))
        .map(|l| l.len() as i64 + 1)
        .sum();
    assert_eq!(
        int(&total["bytesDropped"]),
        counted / 2 * debug_bytes,
        "{stats}"
    );
    let buckets = stats["buckets"].as_array().expect("buckets");
    assert_eq!(
        buckets.iter().map(|b| int(&b["hits"])).sum::<i64>(),
        counted,
        "{stats}"
    );
    // The share of the metric volume it dropped: the edge saw 5 series
    // per scrape (its volume, reported with the statistics) and the policy
    // dropped 2 of them.
    let seen = counted / 2 * 5;
    let stats = wait_for(Duration::from_secs(10), "volume stored", || {
        let stats = cli_json(&cp, &["stats", "drop-debug", "--since", "1h"]);
        (int(&stats["volumeShare"]["recordsSeen"]) >= seen).then_some(stats)
    });
    let share = &stats["volumeShare"];
    assert_eq!(int(&share["recordsSeen"]), seen, "{stats}");
    assert_eq!(int(&share["recordsDropped"]), counted, "{stats}");
    assert_eq!(share["share"].as_f64(), Some(0.4), "{stats}");
    let out = cli(&cp, &["stats", "drop-debug", "--since", "1h"]).ok();
    assert!(out.contains(&format!("{counted} hits")), "{out}");
    assert!(
        out.contains(&format!(
            "\nshare of metric volume it dropped: 40.0% ({counted} of {seen} data points seen by the 1 edge it runs on)\n"
        )),
        "{out}"
    );
    // The runtime view shows what the edge saw.
    let out = cli(&cp, &["edges", "list"]).ok();
    let rows = table(
        &out,
        &[
            "INSTANCE",
            "SERVICE",
            "STATE",
            "TRANSPORT",
            "APPLIED",
            "IN SYNC",
            "LAST SEEN",
            "SEEN (5M)",
            "ERRORS",
        ],
    );
    assert_eq!(rows[0][7], format!("{seen} data points"), "{out}");
    let out = cli(&cp, &["edges", "get", instance]).ok();
    let fields: BTreeMap<String, String> = table(&out, &["FIELD", "VALUE"])
        .into_iter()
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect();
    assert_eq!(
        fields["volume, last hour"],
        format!("{seen} data points"),
        "{out}"
    );
    // The rows speak the header's units: bytes as "N B" or "N.N KiB".
    let out = cli(&cp, &["stats", "drop-debug", "--since", "1h"]).ok();
    let minutes = out
        .split_once("\nMINUTE")
        .map(|(_, t)| format!("MINUTE{t}"))
        .unwrap_or_default();
    let minutes = minutes.as_str();
    let rows = table(
        minutes,
        &[
            "MINUTE",
            "HITS",
            "MISSES",
            "SERIES DROPPED",
            "BYTES DROPPED",
        ],
    );
    assert!(!rows.is_empty(), "{out}");
    for row in &rows {
        assert!(
            row[4].ends_with(" B") || row[4].ends_with(" KiB"),
            "{row:?} has no unit:\n{out}"
        );
    }
    drop(edge);
}

// ------------------------------------------------------------ 4. errors

/// Whether `text` holds anything a terminal would act on beyond laying out
/// lines: C0/C1 controls other than `\n`, or DEL.
fn drives_the_terminal(text: &str) -> bool {
    text.chars().any(|c| c.is_control() && c != '\n')
}

#[test]
fn text_from_edges_and_authors_cannot_drive_the_terminal() {
    // An edge key is low-trust: whoever holds one chooses the instance id
    // and service name that every operator's `tero edges list` shows.
    let cp = start("cp-escape");
    let (status, body) = cp.api("POST", "/api/v1/keys", Some(&json!({"name": "shady"})));
    assert_eq!(status, 200, "{body}");
    let secret = body["secret"].as_str().expect("secret").to_owned();
    let instance = "evil\n-forged-row  checkout  connected";
    let service = "svc\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}1;1H\u{202e}";
    let kv = |k: &str, v: &str| json!({"key": k, "value": {"stringValue": v}});
    let sync = json!({"clientMetadata": {"resourceAttributes": [
        kv("service.instance.id", instance),
        kv("service.name", service),
    ]}});
    let bearer = format!("Bearer {secret}");
    let (status, body) = tero_e2e::control_plane::request_json(
        "POST",
        &cp.url("/v1/policy/sync"),
        &[("authorization", &bearer)],
        Some(&sync),
    );
    assert_eq!(status, 200, "{body}");
    wait_for(Duration::from_secs(10), "the edge registered", || {
        let edges = cli_json(&cp, &["edges", "list"]);
        (edges.as_array()?.len() == 1).then_some(())
    });

    let out = cli(&cp, &["edges", "list"]).ok();
    assert!(!drives_the_terminal(&out), "{out:?}");
    assert_eq!(out.lines().count(), 2, "one header, one row: {out}");
    assert!(out.contains(r"evil\n-forged-row"), "{out}");
    assert!(
        out.contains(r"svc\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}1;1H\u{202e}"),
        "{out}"
    );
    // Scripts still get the exact value, in JSON's own escaping.
    let edges = cli_json(&cp, &["edges", "list"]);
    assert_eq!(edges[0]["instanceId"], instance, "{edges}");
    assert_eq!(edges[0]["serviceName"], service, "{edges}");
    let yaml = cli(&cp, &["edges", "list", "-o", "yaml"]).ok();
    assert!(!drives_the_terminal(&yaml), "{yaml:?}");
    let parsed: Value = serde_yaml_ng::from_str(&yaml).expect("YAML");
    assert_eq!(parsed[0]["instanceId"], instance, "{yaml}");
    assert_eq!(parsed[0]["serviceName"], service, "{yaml}");
    // Errors quote what the user typed, escaped as well.
    let stderr = cli(&cp, &["edges", "get", "gone\u{1b}[2J"]).fails(1);
    assert!(!drives_the_terminal(&stderr), "{stderr:?}");

    // A policy's name is free text; its id may hold no control character.
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("policies.yaml");
    write(
        &file,
        &policies_file(&[drop_item(
            "named",
            "\"\\e]0;title\\a\\e[2J\"",
            "exact",
            "x_total",
        )]),
    );
    cli(&cp, &["policy", "apply", "-f", path_str(&file)]).ok();
    let out = cli(&cp, &["policy", "list"]).ok();
    assert!(!drives_the_terminal(&out), "{out:?}");
    assert!(out.contains(r"\u{1b}]0;title\u{7}\u{1b}[2J"), "{out}");
    write(
        &file,
        &policies_file(&[drop_item("\"bad\\e[2Jid\"", "n", "exact", "x_total")]),
    );
    let stderr = cli(&cp, &["policy", "validate", "-f", path_str(&file)]).fails(1);
    assert!(stderr.contains("id"), "{stderr}");
    assert!(!drives_the_terminal(&stderr), "{stderr:?}");
}

#[test]
fn a_change_whose_answer_was_lost_is_reported_as_unknown_and_safe_to_reapply() {
    // The control plane commits the create, then the connection is lost
    // before the answer arrives, as when it dies mid-apply.
    let cp = start("cp-lost-answer");
    let proxy = tero_e2e::cutting_proxy::CuttingProxy::start(cp.addr(), "CreatePolicy", 1);
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("policies.yaml");
    write(
        &file,
        &policies_file(&[drop_item(
            "drop-debug",
            "Drop debug",
            "starts_with",
            "debug_",
        )]),
    );
    let via_proxy = |args: &[&str]| {
        tero_e2e::cli::tero(
            args,
            &[
                ("TERO_ENDPOINT", &proxy.endpoint()),
                ("TERO_TOKEN", &cp.admin_token),
            ],
        )
    };
    let stderr = via_proxy(&["policy", "apply", "-f", path_str(&file)]).fails(1);
    assert_eq!(proxy.cut.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(stderr.contains("create policy drop-debug"), "{stderr}");
    assert!(
        stderr.contains("unknown"),
        "the outcome is unknown: {stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("re-applying is safe"),
        "tells the user what to do: {stderr}"
    );
    assert!(!stderr.contains("answered Unknown"), "{stderr}");
    // It was committed; applying again finds nothing left to do.
    assert!(listed(&cp).contains_key("drop-debug"));
    let out = via_proxy(&["policy", "apply", "-f", path_str(&file)]).ok();
    assert!(out.contains("no changes"), "{out}");
    assert_eq!(listed(&cp).len(), 1);
}

#[test]
fn errors_name_the_file_the_policy_and_the_field_and_set_the_exit_code() {
    let cp = start("cp-errors");
    let work = tempfile::tempdir().unwrap();

    // Invalid YAML: the file is named, nothing is applied.
    let broken_dir = work.path().join("broken");
    let broken = broken_dir.join("broken.yaml");
    write(&broken, "policies:\n  - id: x\n    name: [unclosed\n");
    write(&broken_dir.join("good.yaml"), DROP_DEBUG);
    let stderr = tero(&["policy", "validate", "-f", path_str(&broken_dir)]).fails(1);
    assert!(stderr.contains(path_str(&broken)), "{stderr}");
    let stderr = cli(&cp, &["policy", "apply", "-f", path_str(&broken_dir)]).fails(1);
    assert!(stderr.contains(path_str(&broken)), "{stderr}");
    assert!(
        listed(&cp).is_empty(),
        "an apply with a broken file applied"
    );

    // An invalid policy next to a valid one: file, id and field path, for
    // the local check and for apply, which applies nothing.
    let bad_dir = work.path().join("bad");
    let bad = bad_dir.join("regex.yaml");
    write(
        &bad,
        &policies_file(&[drop_item("bad-regex", "Bad regex", "regex", "([bad")]),
    );
    write(&bad_dir.join("good.yaml"), DROP_DEBUG);
    let check = |stderr: &str| {
        let line = stderr
            .lines()
            .find(|l| l.contains("bad-regex"))
            .unwrap_or_else(|| panic!("the policy is not named:\n{stderr}"));
        assert!(line.contains(path_str(&bad)), "{stderr}");
        assert!(line.contains("metric.match[0].regex"), "{stderr}");
    };
    check(&tero(&["policy", "validate", "-f", path_str(&bad_dir)]).fails(1));
    let report = tero(&["policy", "validate", "-f", path_str(&bad_dir), "-o", "json"]);
    assert_eq!(report.code, 1, "{report}");
    let report: Value = serde_json::from_str(&report.stdout).expect("JSON report");
    assert_eq!(report["valid"], false, "{report}");
    let errors = report["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{report}");
    check(errors[0].as_str().unwrap());
    for command in ["apply", "diff"] {
        check(&cli(&cp, &["policy", command, "-f", path_str(&bad_dir)]).fails(1));
    }
    assert!(
        listed(&cp).is_empty(),
        "an apply with an invalid policy applied"
    );

    // The same id in two files: the second file is named, with the first.
    let dup_dir = work.path().join("dup");
    write(&dup_dir.join("a.yaml"), DROP_DEBUG);
    write(&dup_dir.join("b.yaml"), DROP_DEBUG);
    let stderr = tero(&["policy", "validate", "-f", path_str(&dup_dir)]).fails(1);
    let line = stderr
        .lines()
        .find(|l| l.contains("duplicate"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let (a, b) = (dup_dir.join("a.yaml"), dup_dir.join("b.yaml"));
    assert!(
        line.starts_with(&format!("error: {}: ", b.display())) && line.contains(path_str(&a)),
        "{stderr}"
    );

    // A file that is not there.
    let missing = work.path().join("missing.yaml");
    let stderr = tero(&["policy", "validate", "-f", path_str(&missing)]).fails(1);
    assert!(stderr.contains(path_str(&missing)), "{stderr}");

    // Nothing listening.
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let run = tero_with_timeout(
        &["policy", "list", "--endpoint", &endpoint, "--token", "t"],
        &[],
        Duration::from_secs(30),
    );
    let stderr = run.fails(1);
    assert!(
        stderr.contains("cannot reach") && stderr.contains(&endpoint),
        "{stderr}"
    );

    // Credentials: wrong, absent, and right (from the flags this time).
    let endpoint = cp.endpoint();
    let stderr = tero(&[
        "--endpoint",
        &endpoint,
        "--token",
        "wrong",
        "policy",
        "list",
    ])
    .fails(1);
    assert!(stderr.contains("TERO_TOKEN"), "{stderr}");
    let stderr = tero(&["--endpoint", &endpoint, "policy", "list"]).fails(1);
    assert!(stderr.contains("TERO_TOKEN"), "{stderr}");
    let stderr = tero_with_timeout(
        &["policy", "list"],
        &[("TERO_ENDPOINT", &endpoint), ("TERO_TOKEN", "")],
        Duration::from_secs(30),
    )
    .fails(1);
    assert!(stderr.contains("TERO_TOKEN"), "{stderr}");
    let out = tero(&[
        "--endpoint",
        &endpoint,
        "--token",
        &cp.admin_token,
        "policy",
        "list",
        "-o",
        "json",
    ])
    .json();
    assert_eq!(out, json!([]));

    // Usage errors are clap's: exit 2.
    tero(&["policy", "frobnicate"]).fails(2);
    tero(&["no-such-command"]).fails(2);
    tero(&["policy", "apply"]).fails(2);
    tero(&["policy", "test", "-f", path_str(&bad_dir)]).fails(2);
    tero(&["policy", "list", "-o", "xml"]).fails(2);
    tero(&["stats", "drop-debug", "--since", "5w"]).fails(2);
    // A number without a unit is refused, never read as hours.
    let stderr = tero(&["stats", "drop-debug", "--since", "2"]).fails(2);
    assert!(stderr.contains("write 2s, 2m, 2h or 2d"), "{stderr}");
    // A token from the environment is not shown as a required flag.
    let stderr = tero_e2e::cli::tero(&["policy", "get"], &[("TERO_TOKEN", "t")]).fails(2);
    assert!(stderr.contains("Usage: tero policy get <ID>\n"), "{stderr}");
    // Too long to count in seconds: refused, not a panic.
    let stderr = tero(&["stats", "drop-debug", "--since", "99999999999999999d"]).fails(2);
    assert!(stderr.contains("--since"), "{stderr}");

    // An endpoint without a scheme says what it expects.
    let stderr = tero(&[
        "--endpoint",
        "127.0.0.1:7070",
        "--token",
        "t",
        "policy",
        "list",
    ])
    .fails(1);
    assert!(stderr.contains("http://host:port"), "{stderr}");

    // Unknown ids.
    let stderr = cli(&cp, &["policy", "get", "unknown-id"]).fails(1);
    assert!(stderr.contains("unknown-id"), "{stderr}");
    cli(&cp, &["policy", "disable", "unknown-id"]).fails(1);
    cli(&cp, &["policy", "delete", "unknown-id"]).fails(1);
    cli(&cp, &["policy", "history", "unknown-id"]).fails(1);
    cli(&cp, &["keys", "revoke", "key_unknown"]).fails(1);
}

// ---------------------------------------------------------- 5. validate

#[test]
fn the_readmes_invalid_policy_example_is_what_validate_prints() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let example = readme
        .split_once("With this `bad.yaml`:\n\n```yaml\n")
        .map(|(_, rest)| rest)
        .expect("the README's invalid policy example");
    let (file, rest) = example.split_once("```").expect("the file's end");
    let (_, rest) = rest
        .split_once("$ tero policy validate -f bad.yaml\n")
        .expect("the command");
    let (expected, _) = rest.split_once("```").expect("the output's end");

    let work = tempfile::tempdir().unwrap();
    let bad = work.path().join("bad.yaml");
    write(&bad, file);
    let stderr = tero(&["policy", "validate", "-f", path_str(&bad)]).fails(1);
    assert_eq!(stderr.replace(path_str(&bad), "bad.yaml"), expected);
}

#[test]
fn validate_accepts_valid_files_and_counts_them() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("ok");
    write(&dir.join("debug.yaml"), DROP_DEBUG);
    write(
        &dir.join("sub").join("more.yml"),
        &policies_file(&[
            drop_item("drop-a", "A", "exact", "a_total"),
            drop_item("drop-b", "B", "regex", "^b_[a-z]+$"),
        ]),
    );
    write(
        &dir.join("one.json"),
        r#"{"id": "drop-c", "name": "C", "metric": {"match": [{"metricField": 1, "exact": "c"}], "keep": false}}"#,
    );
    // Neither a policy file nor visible: ignored.
    write(&dir.join("README.md"), "not a policy");
    write(&dir.join(".hidden.yaml"), "not: [valid");
    let expected = set(&["drop-debug", "drop-a", "drop-b", "drop-c"]);

    let out = tero(&["policy", "validate", "-f", path_str(&dir)]).ok();
    assert!(
        out.contains(&format!("{} policies valid", expected.len())),
        "{out}"
    );
    let report = tero(&["policy", "validate", "-f", path_str(&dir), "-o", "json"]).json();
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["errors"], json!([]), "{report}");
    let found: BTreeSet<&str> = report["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(found, expected, "{report}");
    let one = report["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "drop-c")
        .unwrap();
    assert_eq!(one["file"].as_str(), Some(path_str(&dir.join("one.json"))));

    // A single file works as well as a directory.
    let out = tero(&[
        "policy",
        "validate",
        "-f",
        path_str(&dir.join("debug.yaml")),
    ])
    .ok();
    assert!(out.contains("1 policy valid"), "{out}");
}

/// Issue 16: a regex that parses but compiles over the per-policy budget
/// used to pass `validate` and `test`, then disabled every metric policy of
/// an Edge. Both commands now refuse it, naming the file, policy and field.
#[test]
fn validate_and_test_refuse_a_regex_over_the_budget() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("huge");
    let file = dir.join("huge.yaml");
    write(
        &file,
        &policies_file(&[drop_item("huge", "Huge", "regex", r"(\\w{1000}){1000}")]),
    );
    let scrape = work.path().join("scrape.txt");
    write(&scrape, EXPOSITION);
    let check = |stderr: &str| {
        let line = stderr
            .lines()
            .find(|l| l.contains("\"huge\""))
            .unwrap_or_else(|| panic!("the policy is not named:\n{stderr}"));
        assert!(line.contains(path_str(&file)), "{stderr}");
        assert!(line.contains("metric.match[0].regex"), "{stderr}");
        assert!(line.contains("too large"), "{stderr}");
    };
    check(&tero(&["policy", "validate", "-f", path_str(&dir)]).fails(1));
    check(
        &tero(&[
            "policy",
            "test",
            "-f",
            path_str(&dir),
            "--input",
            path_str(&scrape),
        ])
        .fails(1),
    );
}

// ------------------------------------------------------- 6. policy test

/// A family of `n` counter series with its HELP and TYPE.
fn generated_family(name: &str, n: usize) -> String {
    let mut s = format!("# HELP {name} Requests per user.\n# TYPE {name} counter\n");
    for i in 0..n {
        s.push_str(&format!("{name}{{user_id=\"u{i:05}\"}} {}\n", i * 7 + 1));
    }
    s
}

/// The metric family a line belongs to (metadata names it second).
fn family_of(line: &str) -> &str {
    if let Some(rest) = line.strip_prefix("# ") {
        rest.split_whitespace().nth(1).unwrap_or("")
    } else {
        line.split(['{', ' ']).next().unwrap_or("")
    }
}

#[test]
fn policy_test_reports_exactly_what_the_policies_drop() {
    let work = tempfile::tempdir().unwrap();
    const USERS: usize = 137;
    let input = format!(
        "{EXPOSITION}{}",
        generated_family("app_user_requests_total", USERS)
    );
    let scrape = work.path().join("scrape.txt");
    write(&scrape, &input);
    let policies = work.path().join("policies");
    write(&policies.join("debug.yaml"), DROP_DEBUG);
    write(
        &policies.join("more.yaml"),
        &policies_file(&[
            drop_item("drop-users", "Per-user", "exact", "app_user_requests_total"),
            drop_item("drop-nothing", "Nothing", "exact", "no_such_metric"),
        ]),
    );

    // Independently: which policy drops which family, and what is left.
    let dropping: BTreeMap<&str, &str> = [
        ("debug_cache_entries", "drop-debug"),
        ("app_user_requests_total", "drop-users"),
    ]
    .into();
    let mut series_in = 0u64;
    let mut per_policy: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut expected_out = String::new();
    for line in input.lines() {
        let family = family_of(line);
        let sample = !line.starts_with('#');
        series_in += u64::from(sample);
        match dropping.get(family) {
            // Every series of these families is dropped, so their
            // metadata is not emitted either.
            Some(policy) => {
                if sample {
                    let e = per_policy.entry(policy).or_default();
                    e.0 += 1;
                    e.1 += line.len() as u64 + 1;
                }
            }
            None => {
                expected_out.push_str(line);
                expected_out.push('\n');
            }
        }
    }
    assert_eq!(per_policy["drop-debug"].0, 2);
    assert_eq!(per_policy["drop-users"].0, USERS as u64);
    let series_dropped: u64 = per_policy.values().map(|(n, _)| n).sum();
    let bytes_in = input.len() as u64;
    let bytes_out = expected_out.len() as u64;

    let output_file = work.path().join("filtered.txt");
    let report = tero(&[
        "policy",
        "test",
        "-f",
        path_str(&policies),
        "--input",
        path_str(&scrape),
        "--output-file",
        path_str(&output_file),
        "-o",
        "json",
    ])
    .json();
    let check = |report: &Value| {
        assert_eq!(report["bytesIn"].as_u64(), Some(bytes_in), "{report}");
        assert_eq!(report["bytesOut"].as_u64(), Some(bytes_out), "{report}");
        assert_eq!(report["seriesIn"].as_u64(), Some(series_in), "{report}");
        assert_eq!(
            report["seriesDropped"].as_u64(),
            Some(series_dropped),
            "{report}"
        );
        let percent = (bytes_in - bytes_out) as f64 * 100.0 / bytes_in as f64;
        let reported = report["reductionPercent"].as_f64().expect("percent");
        assert!(
            (reported - percent).abs() <= 0.05 + 1e-9,
            "{percent}: {report}"
        );
        let figures: BTreeMap<&str, (u64, u64, u64)> = report["policies"]
            .as_array()
            .expect("policies")
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap(),
                    (
                        p["hits"].as_u64().unwrap(),
                        p["seriesDropped"].as_u64().unwrap(),
                        p["bytesDropped"].as_u64().unwrap(),
                    ),
                )
            })
            .collect();
        let expected: BTreeMap<&str, (u64, u64, u64)> = [
            ("drop-debug", per_policy["drop-debug"]),
            ("drop-users", per_policy["drop-users"]),
            ("drop-nothing", (0, 0)),
        ]
        .into_iter()
        .map(|(id, (n, bytes))| (id, (n, n, bytes)))
        .collect();
        assert_eq!(figures, expected, "{report}");
    };
    check(&report);
    let written = std::fs::read_to_string(&output_file).expect("--output-file written");
    assert_eq!(written.len() as u64, bytes_out);
    assert!(
        !written.lines().any(|l| dropping.contains_key(family_of(l))),
        "a dropped family's line is in the output:\n{written}"
    );
    assert_eq!(written, expected_out);

    // The table says the same.
    let out = tero(&[
        "policy",
        "test",
        "-f",
        path_str(&policies),
        "--input",
        path_str(&scrape),
    ])
    .ok();
    let rows = table(&out, &["POLICY", "HITS", "SERIES DROPPED", "BYTES DROPPED"]);
    let users = rows
        .iter()
        .find(|r| r[0] == "drop-users")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(users[1], USERS.to_string(), "{out}");
    assert_eq!(users[3], per_policy["drop-users"].1.to_string(), "{out}");
    assert!(
        out.contains(&format!(
            "{series_dropped} of {series_in} series dropped; {bytes_in} -> {bytes_out} bytes"
        )),
        "{out}"
    );

    // The same scrape served over HTTP gives the same figures.
    let up = Upstream::start(input.clone().into_bytes(), TEXT, Compression::None);
    let url = format!("{}/metrics", up.url());
    let live = tero(&[
        "policy",
        "test",
        "-f",
        path_str(&policies),
        "--url",
        &url,
        "-o",
        "json",
    ])
    .json();
    check(&live);
    assert_eq!(live, report);
    assert_eq!(up.requests.load(std::sync::atomic::Ordering::Relaxed), 1);

    // An invalid policy file stops it.
    let bad = work.path().join("bad.yaml");
    write(
        &bad,
        &policies_file(&[drop_item("bad-regex", "Bad", "regex", "(")]),
    );
    let stderr = tero(&[
        "policy",
        "test",
        "-f",
        path_str(&bad),
        "--input",
        path_str(&scrape),
    ])
    .fails(1);
    assert!(
        stderr.contains(path_str(&bad)) && stderr.contains("metric.match[0].regex"),
        "{stderr}"
    );
}

// ------------------------------------------- 7. completions and version

#[test]
fn policy_test_runs_the_readmes_example_and_refuses_what_is_not_a_scrape() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let policies = root.join("examples/policies.yaml");
    let scrape = root.join("examples/scrape.prom");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let expected = readme
        .split_once("$ tero policy test -f examples/policies.yaml --input examples/scrape.prom\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(output, _)| output)
        .expect("the README's policy test example");
    let out = tero(&[
        "policy",
        "test",
        "-f",
        path_str(&policies),
        "--input",
        path_str(&scrape),
    ])
    .ok();
    assert_eq!(out, expected);
    // The example policies do act on the example scrape.
    let report = tero(&[
        "policy",
        "test",
        "-f",
        path_str(&policies),
        "--input",
        path_str(&scrape),
        "-o",
        "json",
    ])
    .json();
    assert!(int(&report["seriesDropped"]) > 0, "{report}");

    // The repository's OTLP JSON sample: refused, saying what it is.
    let otlp = root.join("examples/metrics.json");
    let stderr = tero(&[
        "policy",
        "test",
        "-f",
        path_str(&policies),
        "--input",
        path_str(&otlp),
    ])
    .fails(1);
    assert!(
        stderr.contains("is OTLP JSON (metrics), not a scrape")
            && stderr.contains("tero-conformance"),
        "{stderr}"
    );
    // Nothing to evaluate is an error, not "0 of 0 series dropped".
    let work = tempfile::tempdir().unwrap();
    for (name, body) in [
        ("empty.prom", &b""[..]),
        ("comments.prom", b"# only a comment\n"),
    ] {
        let file = work.path().join(name);
        std::fs::write(&file, body).unwrap();
        let stderr = tero(&[
            "policy",
            "test",
            "-f",
            path_str(&policies),
            "--input",
            path_str(&file),
        ])
        .fails(1);
        assert!(stderr.contains("holds no series"), "{stderr}");
    }
    let gz = work.path().join("scrape.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
    let stderr = tero(&[
        "policy",
        "test",
        "-f",
        path_str(&policies),
        "--input",
        path_str(&gz),
    ])
    .fails(1);
    assert!(stderr.contains("is binary"), "{stderr}");
}

#[test]
fn completions_and_version() {
    let out = tero(&["completions", "bash"]).ok();
    assert!(out.contains("_tero") && out.contains("complete"), "{out}");
    for word in ["policy", "edges", "keys", "stats", "quickstart"] {
        assert!(out.contains(word), "{word} missing from the script");
    }
    let out = tero(&["--version"]).ok();
    assert_eq!(
        out.trim_end(),
        format!("tero {}", env!("CARGO_PKG_VERSION"))
    );
    // Subcommands carry the version too.
    let out = tero(&["policy", "--version"]).ok();
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    tero(&["completions", "no-such-shell"]).fails(2);
}

// ------------------------------------------------------ 7b. usage sources

const USAGE_RULES: &str = r#"groups:
  - name: checkout
    rules:
      - record: code:http_requests:rate5m
        expr: sum by (code) (rate(http_requests_total[5m]))
      - alert: DebugCacheEmpty
        expr: sum(debug_cache_entries) == 0
"#;

/// The issues of `service` of one kind and subject, as the API lists them.
fn issue_status(cp: &ControlPlane, kind: &str, subject: &str) -> Option<String> {
    let (status, body) = cp.api("GET", "/api/v1/issues?service=checkout", None);
    assert_eq!(status, 200, "{body}");
    body["issues"]
        .as_array()?
        .iter()
        .find(|i| i["kind"] == kind && i["subject"] == subject)
        .and_then(|i| i["status"].as_str().map(str::to_owned))
}

#[test]
fn usage_sources_have_stable_names_and_deleting_one_reruns_the_detectors() {
    let dir = temp_dir();
    // The documented `sqlite://PATH`, for a file (and directory) that does
    // not exist yet.
    let db = dir.path().join("fresh/state/tero.db");
    assert!(!db.exists());
    let url = format!("sqlite://{}", db.display());
    let cp = ControlPlane::start_with(dir.clone(), "cp-usage", Some(&url), &[]);
    assert!(db.is_file(), "{} was not created", db.display());

    // The same file through two paths is one source, named by its file name.
    let rules_dir = dir.path().join("repo/rules");
    std::fs::create_dir_all(rules_dir.join("old")).unwrap();
    let rules = rules_dir.join("alerts.yml");
    write(&rules, USAGE_RULES);
    let roundabout = rules_dir.join("old/../alerts.yml");
    for path in [&rules, &roundabout] {
        let imported = cli_json(&cp, &["usage", "import", path_str(path)]);
        assert_eq!(imported[0]["name"], "alerts.yml", "{imported}");
    }
    let listed = cli_json(&cp, &["usage", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    // --name chooses another name; re-importing under it replaces it.
    for _ in 0..2 {
        let imported = cli_json(
            &cp,
            &["usage", "import", path_str(&rules), "--name", "team-a"],
        );
        assert_eq!(imported[0]["name"], "team-a", "{imported}");
    }
    let names: Vec<String> = cli_json(&cp, &["usage", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["alerts.yml", "team-a"]);

    // An edge inventories an application: process_open_fds is read by no
    // query, so it is unused.
    let key = cp.create_key("usage-edge");
    let up = Upstream::start(EXPOSITION.as_bytes().to_vec(), TEXT, Compression::None);
    let edge = Edge::start(
        json!({
            "upstream_url": up.url(),
            "service": {"name": "checkout", "instance_id": "checkout-usage-0"},
            "policy_providers": [cp.grpc_provider(&key)],
            "inventory": {"interval_secs": 1, "sample_every_secs": 1},
        }),
        dir.clone(),
        "edge-usage",
    );
    wait_for(Duration::from_secs(30), "the unused-metric issue", || {
        let _ = http_get(&edge.url("/metrics"), &[]);
        (issue_status(&cp, "unused_metric", "process_open_fds").as_deref() == Some("open"))
            .then_some(())
    });

    // Deleting: over HTTP, then with the CLI; an unknown name is an error.
    let (status, body) = cp.api("DELETE", "/api/v1/usage/team-a", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"]["name"], "team-a", "{body}");
    let (status, body) = cp.api("DELETE", "/api/v1/usage/team-a", None);
    assert_eq!(status, 404, "{body}");
    let out = cli(&cp, &["usage", "delete", "alerts.yml"]).ok();
    assert!(
        out.contains("usage source alerts.yml deleted (2 queries)"),
        "{out}"
    );
    let stderr = cli(&cp, &["usage", "delete", "alerts.yml"]).fails(1);
    assert!(
        stderr.contains("alerts.yml") && stderr.contains("not found"),
        "{stderr}"
    );
    assert_eq!(cli_json(&cp, &["usage", "list"]), json!([]));

    // With no usage source left, nothing can be called unused: the
    // detectors ran again and the issue no longer holds.
    wait_for(
        Duration::from_secs(30),
        "the unused-metric issue resolved",
        || {
            let _ = http_get(&edge.url("/metrics"), &[]);
            (issue_status(&cp, "unused_metric", "process_open_fds").as_deref() == Some("resolved"))
                .then_some(())
        },
    );
}

// --------------------------------------------------------- 8. quickstart

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// The text after the first line containing `marker`.
fn after<'a>(text: &'a str, marker: &str) -> &'a str {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} missing from:\n{text}"));
    let rest = &text[at..];
    rest.split_once('\n').map_or("", |(_, r)| r)
}

const IMPACT_HEADER: [&str; 10] = [
    "POLICY",
    "ISSUE",
    "MODE",
    "MEASURED SINCE",
    "SCRAPES",
    "DROPPED/SCRAPE",
    "DROPPED/DAY",
    "ESTIMATE/DAY",
    "RATIO",
    "VERDICT",
];

#[test]
fn quickstart_walks_from_issue_to_verified_impact_and_leaves_nothing_running() {
    // The servers it starts live next to `tero`.
    for name in ["tero-control-plane", "tero-edge"] {
        let _: PathBuf = binary(name);
    }
    let work = temp_dir();
    let qs_dir = work.path().join("qs");
    let mut ports = BTreeSet::new();
    while ports.len() < 3 {
        ports.insert(free_port());
    }
    let ports: Vec<u16> = ports.into_iter().collect();
    let (cp_port, app_port, edge_port) = (ports[0], ports[1], ports[2]);
    let (p1, p2, p3) = (
        cp_port.to_string(),
        app_port.to_string(),
        edge_port.to_string(),
    );
    let args = [
        "quickstart",
        "--no-wait",
        "--dir",
        path_str(&qs_dir),
        "--control-plane-port",
        &p1,
        "--app-port",
        &p2,
        "--edge-port",
        &p3,
    ];
    let started = Instant::now();
    let run = tero_with_timeout(&args, &[], Duration::from_secs(180));
    let took = started.elapsed();
    let log = |f: &str| std::fs::read_to_string(qs_dir.join(f)).unwrap_or_default();
    let logs = || {
        format!(
            "--- control plane ---\n{}--- edge ---\n{}",
            log("control-plane.log"),
            log("edge.log")
        )
    };
    assert_eq!(run.code, 0, "{run}\n{}", logs());
    // The active measurement starts on a fresh minute, up to 90 s after
    // the promotion.
    assert!(took < Duration::from_secs(150), "took {took:?}");
    let out = run.stdout;

    // The issues, found from the edge's inventory and the imported rules.
    assert!(
        out.contains("imported usage source quickstart-rules.yaml"),
        "{out}"
    );
    let issues = table(
        after(&out, "issues found in "),
        &[
            "ID",
            "SEVERITY",
            "STATUS",
            "KIND",
            "SERVICE",
            "SUBJECT",
            "COST/MONTH",
            "POLICY",
        ],
    );
    let debug = issues
        .iter()
        .find(|row| row[5] == "debug_cache_lookups_total")
        .unwrap_or_else(|| panic!("no issue about the debug family:\n{out}"));
    let issue_id = debug[0].clone();
    assert!(
        issue_id.starts_with("ISS-") && debug[2] == "open",
        "{debug:?}"
    );

    // Accepted in shadow, explicitly, then made active; each measured.
    assert!(
        out.contains(&format!("$ tero issues accept {issue_id} --mode shadow")),
        "{out}"
    );
    let impacts: Vec<Vec<String>> = out
        .match_indices("$ tero impact ")
        .map(|(at, _)| {
            let rows = table(after(&out[at..], "$ tero impact "), &IMPACT_HEADER);
            assert_eq!(rows.len(), 1, "{out}");
            rows.into_iter().next().unwrap()
        })
        .collect();
    assert_eq!(impacts.len(), 2, "{out}");
    let (shadow, enforced) = (&impacts[0], &impacts[1]);
    assert_eq!(
        (shadow[1].as_str(), shadow[2].as_str()),
        (issue_id.as_str(), "shadow"),
        "{out}"
    );
    assert!(!enforced[2].is_empty() && enforced[2] != "shadow", "{out}");
    assert_eq!(enforced[9], "verified", "{out}");
    let scrapes = |row: &Vec<String>| row[4].parse::<u64>().unwrap_or_else(|_| panic!("{row:?}"));
    assert!(scrapes(shadow) >= 3 && scrapes(enforced) >= 3, "{out}");
    assert!(out.contains("verdict: verified"), "{out}");

    // One scrape through the edge, in sample lines: the debug family's 40
    // lines are gone.
    let (lines_before, lines_after) = out
        .split_once("one scrape: ")
        .and_then(|(_, rest)| {
            let mut numbers = rest
                .split(' ')
                .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok());
            let before = numbers.next()?;
            let _bytes = numbers.next()?;
            Some((before, numbers.next()?))
        })
        .unwrap_or_else(|| panic!("no scrape comparison in:\n{out}"));
    assert!(
        out.contains(&format!("one scrape: {lines_before} sample lines,")),
        "{out}"
    );
    assert_eq!(lines_before - lines_after, 40, "{out}");

    // Logs written to files carry no colour codes.
    for f in ["control-plane.log", "edge.log"] {
        let text = log(f);
        assert!(!text.is_empty() && !text.contains('\u{1b}'), "{f}:\n{text}");
    }

    // Everything it started is gone.
    for port in [cp_port, app_port, edge_port] {
        assert!(
            !listening(port),
            "something still listens on {port} after quickstart:\n{out}"
        );
    }

    // What it printed works in the state it left: the control plane
    // started again on its database shows the issue, resolved by the policy.
    let data = qs_dir.join("data");
    assert!(
        out.contains(&format!(
            "--listen 127.0.0.1:{cp_port} --data-dir {}",
            data.display()
        )),
        "{out}"
    );
    let policy_id = shadow[0].clone();
    assert!(out.contains(&format!(" issues show {issue_id}\n")), "{out}");
    assert!(
        out.contains(&format!(" stats {policy_id} --since 1h\n")),
        "{out}"
    );
    let url = format!("sqlite://{}/tero.db", data.display());
    let cp = ControlPlane::start_with(work.clone(), "cp-after-quickstart", Some(&url), &[]);
    let issue = cli_json(&cp, &["issues", "show", &issue_id]);
    assert_eq!(issue["policyId"], policy_id.as_str(), "{issue}");
    // Resolved by the `tero impact` that said verified, not left in
    // progress until the analyst's next pass.
    assert_eq!(issue["status"], "resolved", "{issue}");
    assert_eq!(issue["remediation"], "resolution_verified", "{issue}");
    drop(cp);

    // Run again on the same directory: a fresh walk, not a half-accepted one.
    let again = tero_with_timeout(&args, &[], Duration::from_secs(180));
    assert_eq!(again.code, 0, "{again}\n{}", logs());
    assert!(again.stdout.contains("verdict: verified"), "{again}");
}

#[test]
fn sample_app_serves_the_quickstart_metrics_on_its_own() {
    // What the Kubernetes example's sample-app image runs.
    let dir = temp_dir();
    let port = free_port();
    let mut cmd = std::process::Command::new(binary("tero"));
    cmd.args(["sample-app", "--listen", &format!("127.0.0.1:{port}")]);
    let mut app = tero_e2e::Process::spawn("sample-app", &mut cmd, dir.path());
    let body = wait_for(Duration::from_secs(20), "sample-app /metrics", || {
        http_get(&format!("http://127.0.0.1:{port}/metrics"), &[])
            .ok()
            .filter(|r| r.status == 200)
    })
    .text();
    for family in [
        "http_requests_total{",
        "http_request_duration_seconds_bucket{",
        "debug_cache_lookups_total{",
        "app_user_requests_total{",
    ] {
        assert!(body.contains(family), "{family} missing:\n{body}");
    }
    // It stops cleanly on SIGTERM, as a container runtime stops it.
    let status = app
        .terminate(Duration::from_secs(10))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn quickstart_names_a_port_already_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let work = temp_dir();
    let (app, edge) = (free_port().to_string(), free_port().to_string());
    let run = tero_with_timeout(
        &[
            "quickstart",
            "--no-wait",
            "--dir",
            path_str(&work.path().join("qs")),
            "--control-plane-port",
            &port,
            "--app-port",
            &app,
            "--edge-port",
            &edge,
        ],
        &[],
        Duration::from_secs(30),
    );
    let stderr = run.fails(1);
    assert!(
        stderr.contains(&format!("port {port} on 127.0.0.1 is already in use"))
            && stderr.contains("--control-plane-port"),
        "{stderr}"
    );
    // Nothing was started on the other ports.
    assert!(!listening(app.parse().unwrap()) && !listening(edge.parse().unwrap()));
}

//! Issues and impact for metrics, end to end: an application planted with
//! waste (an unused family, a user-id label with 1200 values, a debug
//! family) behind a real `tero-edge` on the push stream, a real
//! `tero-control-plane` detecting issues from the edge's inventory and an
//! imported rule file, a real Prometheus scraping the edge, and the real
//! `tero` CLI accepting (in shadow by default, then active), refusing to
//! accept what would remove read series, and ignoring the issues.
//!
//! Every figure asserted is computed here from the body the application
//! serves: the bytes of the planted sample lines (LF included), their
//! series, the label's distinct values; nothing is read back from the
//! product to compare with itself.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tero_e2e::cli::{json_u64, tero_at, tero_json_at};
use tero_e2e::control_plane::{ControlPlane, policy_label, request_json};
use tero_e2e::fixtures::TEXT;
use tero_e2e::prometheus::Prometheus;
use tero_e2e::upstream::{Compression, Upstream};
use tero_e2e::{Edge, http_get, wait_for};

const SERVICE: &str = "checkout";
const INSTANCE: &str = "checkout-edge-0";
const QUEUES: usize = 20;
const USERS: usize = 1200;
const DEBUG_CACHES: usize = 5;

// ------------------------------------------------------------ the app

/// What the application serves, with the figures the test expects.
struct App {
    body: String,
    /// Bytes of the `legacy_queue_depth` sample lines, LF included.
    queue_bytes: u64,
    /// Bytes of the `debug_cache_entries` sample lines.
    debug_bytes: u64,
    /// The raw `user_id` values, none of which may leave the edge.
    user_ids: Vec<String>,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A version-4 UUID, deterministic in `i`.
fn uuid(i: u64) -> String {
    let (a, b) = (splitmix(2 * i), splitmix(2 * i + 1));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// Bytes of the lines of `body` for which `pick` holds, LF included.
fn line_bytes(body: &str, pick: impl Fn(&str) -> bool) -> u64 {
    body.lines()
        .filter(|l| pick(l))
        .map(|l| l.len() as u64 + 1)
        .sum()
}

fn app() -> App {
    let mut s = String::new();
    s.push_str(
        "# HELP http_requests_total Requests served.\n# TYPE http_requests_total counter\n\
         http_requests_total{method=\"GET\",code=\"200\"} 1027\n\
         http_requests_total{method=\"POST\",code=\"200\"} 88\n\
         http_requests_total{method=\"GET\",code=\"500\"} 3\n\
         # HELP request_duration_seconds Request latency.\n\
         # TYPE request_duration_seconds histogram\n",
    );
    for (le, n) in [
        ("0.05", 21),
        ("0.1", 30),
        ("0.5", 38),
        ("1", 40),
        ("+Inf", 41),
    ] {
        s.push_str(&format!(
            "request_duration_seconds_bucket{{le=\"{le}\"}} {n}\n"
        ));
    }
    s.push_str("request_duration_seconds_sum 9.75\nrequest_duration_seconds_count 41\n");
    s.push_str(
        "# HELP legacy_queue_depth Jobs waiting in the legacy queue.\n\
         # TYPE legacy_queue_depth gauge\n",
    );
    for q in 0..QUEUES {
        s.push_str(&format!(
            "legacy_queue_depth{{queue=\"jobs-{q:02}\"}} {}\n",
            q * 3 + 1
        ));
    }
    s.push_str(
        "# HELP api_sessions Open API sessions.\n# TYPE api_sessions gauge\n\
         api_sessions{region=\"eu\"} 17\napi_sessions{region=\"us\"} 23\n",
    );
    let user_ids: Vec<String> = (0..USERS as u64).map(uuid).collect();
    for (i, id) in user_ids.iter().enumerate() {
        let region = if i % 2 == 0 { "eu" } else { "us" };
        s.push_str(&format!(
            "api_sessions{{region=\"{region}\",user_id=\"{id}\"}} {}\n",
            i % 4 + 1
        ));
    }
    s.push_str(
        "# HELP debug_cache_entries Entries in the debug cache.\n\
         # TYPE debug_cache_entries gauge\n",
    );
    for c in 0..DEBUG_CACHES {
        s.push_str(&format!(
            "debug_cache_entries{{cache=\"shard-{c}\"}} {}\n",
            100 + c
        ));
    }
    assert_eq!(
        user_ids.iter().collect::<BTreeSet<_>>().len(),
        USERS,
        "distinct ids"
    );
    App {
        queue_bytes: line_bytes(&s, |l| l.starts_with("legacy_queue_depth{")),
        debug_bytes: line_bytes(&s, |l| l.starts_with("debug_cache_entries{")),
        body: s,
        user_ids,
    }
}

/// A rule file reading the request counter, the latency histogram by
/// `le`, and `api_sessions` summed by `service` (never by `user_id`).
const RULES: &str = r#"groups:
  - name: checkout
    rules:
      - record: checkout:http_requests:rate5m
        expr: sum by (code) (rate(http_requests_total[5m]))
      - alert: CheckoutSlow
        expr: histogram_quantile(0.99, sum by (le) (rate(request_duration_seconds_bucket[5m]))) > 1
        for: 10m
      - record: checkout:api_sessions:sum
        expr: sum by (service) (api_sessions)
"#;

// ------------------------------------------------------------ the CLI

// ------------------------------------------------------------ helpers

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("a string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn within(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= expected * tolerance
}

/// The issue of `kind` on `subject` in a list.
fn find<'a>(issues: &'a [Value], kind: &str, subject: &str) -> Option<&'a Value> {
    issues
        .iter()
        .find(|i| i["kind"] == kind && i["subject"] == subject)
}

fn http_issues(cp: &ControlPlane) -> Vec<Value> {
    let (status, body) = cp.api("GET", &format!("/api/v1/issues?service={SERVICE}"), None);
    assert_eq!(status, 200, "{body}");
    body["issues"].as_array().cloned().unwrap_or_default()
}

fn http_issue(cp: &ControlPlane, id: &str) -> Value {
    let (status, body) = cp.api("GET", &format!("/api/v1/issues/{id}"), None);
    assert_eq!(status, 200, "{body}");
    body
}

/// One policy's impact, from `tero impact POLICY -o json`.
fn impact(cp: &ControlPlane, policy_id: &str) -> Value {
    let all = tero_json_at(cp, &["impact", policy_id]);
    let list = all.as_array().expect("impact -o json is an array");
    assert_eq!(list.len(), 1, "{all}");
    list[0].clone()
}

fn scrape(edge: &Edge) -> String {
    let r = http_get(&edge.url("/metrics"), &[]).expect("scrape through the edge");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

fn count_lines(text: &str, prefix: &str) -> usize {
    text.lines().filter(|l| l.starts_with(prefix)).count()
}

/// Whether the edge runs `policy_id` in `mode` (`active` or `shadow`).
fn edge_runs(edge: &Edge, policy_id: &str, mode: &str) -> bool {
    edge.policies()["policies"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["id"] == policy_id && p["mode"] == mode))
}

// ------------------------------------------------------------ the test

#[test]
fn planted_waste_is_found_accepted_measured_and_resolved() {
    let app = app();
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));

    // 1-2. The app, a control plane with an edge key, the edge on the push
    // stream reporting its inventory every second, and Prometheus.
    let up = Upstream::start(app.body.clone().into_bytes(), TEXT, Compression::None);
    let cp = ControlPlane::start(dir.clone(), "cp-issues");
    let key = cp.create_key("checkout-edge");
    let edge = Edge::start(
        json!({
            "upstream_url": up.url(),
            "service": {"name": SERVICE, "instance_id": INSTANCE},
            "policy_providers": [cp.grpc_provider(&key)],
            // One sampled scrape per report, as the defaults pair them.
            "inventory": {"interval_secs": 1, "sample_every_secs": 1},
        }),
        dir.clone(),
        "edge-checkout",
    );
    let prom = Prometheus::start(dir.path(), &[(SERVICE, edge.addr())]);

    // 3. What people query: one rule file.
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    // Sources are named by their file name, wherever they are read from.
    let rules_name = String::from("rules.yml");
    let imported = tero_json_at(&cp, &["usage", "import", &rules.display().to_string()]);
    assert_eq!(imported.as_array().map(Vec::len), Some(1), "{imported}");
    assert_eq!(imported[0]["name"], rules_name.as_str(), "{imported}");
    assert_eq!(imported[0]["kind"], "prometheus_rules", "{imported}");
    assert_eq!(json_u64(&imported[0]["queries"]), 3, "{imported}");
    assert!(strings(&imported[0]["unparsed"]).is_empty(), "{imported}");
    let metrics: BTreeSet<String> = strings(&imported[0]["metrics"]).into_iter().collect();
    for m in [
        "http_requests_total",
        "request_duration_seconds_bucket",
        "api_sessions",
    ] {
        assert!(metrics.contains(m), "{m} missing from {imported}");
    }
    let listed = tero_json_at(&cp, &["usage", "list"]);
    assert_eq!(listed[0]["name"], rules_name.as_str(), "{listed}");

    // Prometheus ingests every planted series through the edge.
    wait_for(
        Duration::from_secs(60),
        "Prometheus holding every series",
        || {
            let queues = prom.value("count(legacy_queue_depth)")??;
            let sessions = prom.value("count(api_sessions)")??;
            (queues == QUEUES as f64 && sessions == (USERS + 2) as f64).then_some(())
        },
    );

    // 4. The issues, once the edge's inventory and the rules are analysed.
    let wanted = [
        ("id_label", "api_sessions{user_id}"),
        ("unused_metric", "debug_cache_entries"),
        ("unused_metric", "legacy_queue_depth"),
    ];
    wait_for(Duration::from_secs(60), "the planted issues", || {
        let issues = http_issues(&cp);
        wanted
            .iter()
            .all(|(kind, subject)| {
                find(&issues, kind, subject).is_some_and(|i| {
                    i["status"] == "open"
                        && strings(&i["evidence"]["usageSources"]) == [rules_name.clone()]
                })
            })
            .then_some(())
    });
    // The app keeps serving the same body, so every inventory report that
    // follows must confirm the issues: none may flip to resolved and back.
    let watch = Instant::now() + Duration::from_secs(5);
    while Instant::now() < watch {
        let issues = http_issues(&cp);
        for (kind, subject) in wanted {
            let status = find(&issues, kind, subject).map(|i| i["status"].clone());
            assert_eq!(
                status,
                Some(json!("open")),
                "issue {kind} on {subject} left `open` while the app served the same \
                 exposition: {issues:#?}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let listed = tero_json_at(&cp, &["issues", "list", "--service", SERVICE]);
    let issues = listed.as_array().expect("issues list -o json is an array");
    let found: BTreeSet<(String, String)> = issues
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_owned(),
                i["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = wanted
        .iter()
        .map(|(k, s)| (k.to_string(), s.to_string()))
        .collect();
    assert_eq!(found, expected, "exactly the planted issues: {listed}");
    assert!(
        issues.iter().all(|i| !i["subject"]
            .as_str()
            .unwrap()
            .starts_with("http_requests_total")),
        "{listed}"
    );
    for issue in issues {
        let id = issue["id"].as_str().expect("id");
        assert!(id.starts_with("ISS-"), "{issue}");
        assert_eq!(issue["service"], SERVICE, "{issue}");
        assert_eq!(issue["remediation"], "ready_to_deploy", "{issue}");
        assert_eq!(
            strings(&issue["provenance"]["instances"]),
            [INSTANCE],
            "provenance names the edge: {issue}"
        );
        assert!(
            json_u64(&issue["provenance"]["inventoryToUnixMs"]) > 0,
            "{issue}"
        );
        assert!(
            json_u64(&issue["estimate"]["bytesPerDay"]) > 0,
            "an estimate: {issue}"
        );
        // `show` tells the same.
        let shown = tero_json_at(&cp, &["issues", "show", id]);
        assert_eq!(shown["id"], id, "{shown}");
        assert_eq!(shown["subject"], issue["subject"], "{shown}");
        if issue["kind"] == "id_label" {
            // Its family feeds a rule: checked below, it recommends nothing.
            continue;
        }
        // The recommended policy drops, scoped to the service.
        let policy = &issue["recommended"]["policy"];
        assert_ne!(policy["metric"]["keep"], true, "keep: false: {issue}");
        assert!(
            policy["metric"]["match"]
                .as_array()
                .is_some_and(|m| !m.is_empty()),
            "{issue}"
        );
        assert_eq!(
            issue["recommended"]["scope"]["matchers"][0]["values"],
            json!([SERVICE]),
            "{issue}"
        );
    }

    // The unused family: its series and bytes exactly as served.
    let queue = find(issues, "unused_metric", "legacy_queue_depth").unwrap();
    let queue_id = queue["id"].as_str().unwrap().to_owned();
    let evidence = &queue["evidence"];
    assert_eq!(json_u64(&evidence["series"]), QUEUES as u64, "{queue}");
    assert_eq!(
        json_u64(&evidence["sampleBytesPerScrape"]),
        app.queue_bytes,
        "{queue}"
    );
    assert!(
        evidence["scrapesPerMinute"].as_f64().unwrap_or(0.0) > 0.0,
        "{queue}"
    );
    assert!(strings(&evidence["usedIn"]).is_empty(), "{queue}");
    assert_eq!(queue["domain"], "cost", "{queue}");
    assert_eq!(queue["provenance"]["detector"], "unused_metric", "{queue}");
    assert_eq!(
        json_u64(&queue["estimate"]["series"]),
        QUEUES as u64,
        "{queue}"
    );
    assert_eq!(queue["estimate"]["confidence"], "high", "{queue}");
    let queue_policy = &queue["recommended"]["policy"];
    assert!(
        queue_policy.to_string().contains("\"legacy_queue_depth\""),
        "the policy names the family: {queue}"
    );
    assert_eq!(
        policy_label(queue_policy, "tero.issue_kind"),
        Some("unused_metric")
    );

    // The user-id label: a compliance finding (its name says people), with
    // the high-cardinality finding folded in, about 1200 values, and no raw
    // id anywhere in the issue.
    let sessions = find(issues, "id_label", "api_sessions{user_id}").unwrap();
    let sessions_id = sessions["id"].as_str().unwrap().to_owned();
    assert_eq!(sessions["domain"], "compliance", "{sessions}");
    assert_eq!(sessions["severity"], "high", "{sessions}");
    let evidence = &sessions["evidence"];
    assert_eq!(
        json_u64(&evidence["series"]),
        USERS as u64 + 2,
        "{sessions}"
    );
    let user_label = &evidence["labels"][0];
    assert_eq!(user_label["name"], "user_id", "{sessions}");
    let cardinality = json_u64(&user_label["cardinality"]) as f64;
    assert!(
        within(cardinality, USERS as f64, 0.03),
        "cardinality {cardinality} not within 3% of {USERS}: {sessions}"
    );
    assert_ne!(user_label["usedInQueries"], true, "{sessions}");
    let examples = strings(&user_label["examples"]);
    assert!(!examples.is_empty(), "{sessions}");
    assert!(
        examples.iter().all(|e| e == "<uuid>"),
        "examples masked: {examples:?}"
    );
    let notes = strings(&evidence["notes"]);
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("also high_cardinality_label")),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("masked")),
        "the edge masked the examples: {notes:?}"
    );
    assert!(
        !strings(&evidence["usedIn"]).is_empty(),
        "the family is used: {sessions}"
    );
    let sessions_text = tero_at(&cp, &["issues", "show", &sessions_id]).stdout;
    // The table form shows the issue's fields, and offers no accept.
    for field in [
        "kind", "domain", "severity", "status", "subject", "opened", "estimate",
    ] {
        assert!(
            sessions_text
                .lines()
                .any(|l| l.starts_with(&format!("{field} "))),
            "no {field} row: {sessions_text}"
        );
    }
    assert!(
        sessions_text.contains("No recommended policy"),
        "{sessions_text}"
    );
    assert!(!sessions_text.contains("issues accept"), "{sessions_text}");
    for text in [sessions.to_string(), sessions_text] {
        for id in &app.user_ids {
            assert!(
                !text.contains(id.as_str()),
                "raw user id {id} leaked: {text}"
            );
        }
    }
    // The rule sums `api_sessions`: dropping the series carrying `user_id`
    // (all but two) would empty it, so nothing executable is recommended,
    // the summary says why and what the lossless fix is, and accepting is
    // refused with the reason.
    assert!(sessions["recommended"].is_null(), "{sessions}");
    let summary = sessions["summary"].as_str().unwrap_or("");
    assert!(
        summary.contains("No policy is recommended")
            && summary.contains("aggregate `user_id` away"),
        "{summary}"
    );
    let stderr = tero_at(&cp, &["issues", "accept", &sessions_id]).fails(1);
    assert!(stderr.contains("no recommended policy"), "{stderr}");
    // Units agree: the summary's MiB/day is the estimate's.
    let shown = tero_at(&cp, &["issues", "show", &queue_id]).stdout;
    let per_day = shown
        .lines()
        .find_map(|l| l.strip_prefix("estimate"))
        .and_then(|l| l.split(", ").nth(1))
        .unwrap_or_else(|| panic!("no estimate row: {shown}"))
        .to_owned();
    assert!(
        per_day.ends_with("/day") && !per_day.contains(" MB"),
        "{per_day}"
    );
    assert!(
        shown.contains(&format!(
            "`tero issues accept {queue_id}` creates it, in shadow"
        )),
        "{shown}"
    );
    assert!(
        queue["summary"].as_str().unwrap_or("").contains(&per_day),
        "summary and estimate disagree on {per_day}: {queue}"
    );

    // The debug family: nobody reads it, so it is one unused issue that
    // says it is debug telemetry.
    let debug = find(issues, "unused_metric", "debug_cache_entries").unwrap();
    let debug_id = debug["id"].as_str().unwrap().to_owned();
    assert_eq!(json_u64(&debug["evidence"]["series"]), DEBUG_CACHES as u64);
    assert_eq!(
        json_u64(&debug["evidence"]["sampleBytesPerScrape"]),
        app.debug_bytes,
        "{debug}"
    );
    let notes = strings(&debug["evidence"]["notes"]);
    assert!(
        notes.iter().any(|n| n.starts_with("also debug_metric")),
        "{notes:?}"
    );

    // The merged inventory the detectors read.
    let (status, inventory) = cp.api("GET", &format!("/api/v1/inventory/{SERVICE}"), None);
    assert_eq!(status, 200, "{inventory}");
    assert_eq!(strings(&inventory["instances"]), [INSTANCE], "{inventory}");
    assert!(
        !inventory.to_string().contains(app.user_ids[0].as_str()),
        "raw id in the inventory"
    );

    // 5. Accept the unused family, active (shadow is the default): the
    // policy is created, linked, and the edge enforces it.
    let accepted = tero_json_at(&cp, &["issues", "accept", &queue_id, "--mode", "active"]);
    let queue_policy_id = accepted["issue"]["policyId"]
        .as_str()
        .expect("policy id")
        .to_owned();
    assert_eq!(accepted["issue"]["status"], "in_progress", "{accepted}");
    assert_eq!(
        accepted["issue"]["remediation"], "policy_active",
        "{accepted}"
    );
    let created = &accepted["policy"]["policy"];
    assert_eq!(created["id"], queue_policy_id.as_str(), "{accepted}");
    assert_eq!(
        policy_label(created, "tero.issue_id"),
        Some(queue_id.as_str())
    );
    assert_eq!(policy_label(created, "tero.mode"), None, "{accepted}");
    let (status, stored) = cp.api("GET", &format!("/api/v1/policies/{queue_policy_id}"), None);
    assert_eq!(status, 200, "{stored}");
    assert_eq!(
        policy_label(&stored["policy"], "tero.issue_id"),
        Some(queue_id.as_str())
    );

    wait_for(Duration::from_secs(30), "the edge enforcing it", || {
        edge_runs(&edge, &queue_policy_id, "active").then_some(())
    });
    let filtered = scrape(&edge);
    assert_eq!(
        count_lines(&filtered, "legacy_queue_depth"),
        0,
        "{filtered}"
    );
    assert!(!filtered.contains("legacy_queue_depth"));
    assert_eq!(count_lines(&filtered, "api_sessions{"), USERS + 2);
    assert_eq!(count_lines(&filtered, "debug_cache_entries{"), DEBUG_CACHES);
    assert_eq!(count_lines(&filtered, "http_requests_total{"), 3);
    wait_for(
        Duration::from_secs(30),
        "Prometheus no longer receiving legacy_queue_depth",
        || {
            let queues = prom.value("count(legacy_queue_depth)")?;
            let requests = prom.value("count(http_requests_total)")??;
            (queues.is_none() && requests == 3.0).then_some(())
        },
    );

    // 6. Accept the debug issue with the default mode, shadow: delivered
    // and counted as "would drop", never enforced.
    let shadowed = tero_json_at(
        &cp,
        &[
            "issues",
            "accept",
            &debug_id,
            "--reason",
            "measure before dropping",
        ],
    );
    let debug_policy_id = shadowed["issue"]["policyId"]
        .as_str()
        .expect("policy id")
        .to_owned();
    assert_eq!(
        shadowed["issue"]["remediation"], "policy_shadow",
        "{shadowed}"
    );
    let created = &shadowed["policy"]["policy"];
    assert_eq!(
        policy_label(created, "tero.issue_id"),
        Some(debug_id.as_str())
    );
    assert_eq!(
        policy_label(created, "tero.mode"),
        Some("shadow"),
        "{shadowed}"
    );
    wait_for(
        Duration::from_secs(30),
        "the edge running the shadow",
        || edge_runs(&edge, &debug_policy_id, "shadow").then_some(()),
    );
    // `policy list` shows each policy's mode.
    let listed = tero_at(&cp, &["policy", "list"]).ok();
    let mode_of = |id: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .map(|l| l.split_whitespace().any(|w| w == "shadow"))
    };
    assert_eq!(mode_of(&debug_policy_id), Some(true), "{listed}");
    assert_eq!(mode_of(&queue_policy_id), Some(false), "{listed}");

    // Both measured over a few scrapes.
    let (queue_impact, debug_impact) =
        wait_for(Duration::from_secs(60), "impact over 3+ scrapes", || {
            let q = impact(&cp, &queue_policy_id);
            let d = impact(&cp, &debug_policy_id);
            (json_u64(&q["scrapes"]) >= 3 && json_u64(&d["scrapes"]) >= 3).then_some((q, d))
        });
    assert_eq!(queue_impact["mode"], "active", "{queue_impact}");
    assert_eq!(queue_impact["issueId"], queue_id.as_str(), "{queue_impact}");
    let per_scrape = json_u64(&queue_impact["droppedBytesPerScrape"]) as f64;
    assert!(
        within(per_scrape, app.queue_bytes as f64, 0.05),
        "dropped {per_scrape} B/scrape, planted {} B: {queue_impact}",
        app.queue_bytes
    );
    assert!(json_u64(&queue_impact["seriesDropped"]) >= 3 * QUEUES as u64);

    assert_eq!(debug_impact["mode"], "shadow", "{debug_impact}");
    assert_eq!(debug_impact["issueId"], debug_id.as_str());
    assert_ne!(debug_impact["verdict"], "verified", "{debug_impact}");
    let per_scrape = json_u64(&debug_impact["droppedBytesPerScrape"]) as f64;
    assert!(
        within(per_scrape, app.debug_bytes as f64, 0.05),
        "would drop {per_scrape} B/scrape, planted {} B: {debug_impact}",
        app.debug_bytes
    );
    // The table says "would drop" for the shadow, never "verified".
    let table = tero_at(&cp, &["impact", &debug_policy_id]).ok();
    assert!(table.contains("would drop"), "{table}");
    assert!(!table.contains("verified"), "{table}");
    // Nothing was dropped for real: every debug series still arrives.
    assert_eq!(
        count_lines(&scrape(&edge), "debug_cache_entries{"),
        DEBUG_CACHES
    );
    let all = tero_json_at(&cp, &["impact"]);
    let ids: BTreeSet<&str> = all
        .as_array()
        .expect("impacts")
        .iter()
        .filter_map(|i| i["policyId"].as_str())
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from([queue_policy_id.as_str(), debug_policy_id.as_str()]),
        "{all}"
    );

    // 7. Ignore the user-id issue: a reason is required, by the CLI and the API.
    let stderr = tero_at(&cp, &["issues", "ignore", &sessions_id]).fails(2);
    assert!(stderr.contains("--reason"), "{stderr}");
    let bearer = cp.bearer();
    let (status, body) = request_json(
        "POST",
        &cp.url(&format!("/api/v1/issues/{sessions_id}/ignore")),
        &[("authorization", &bearer)],
        Some(&json!({"reason": ""})),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "reason", "{body}");
    assert!(
        body["message"].as_str().unwrap_or("").contains("reason"),
        "{body}"
    );
    assert_eq!(http_issue(&cp, &sessions_id)["status"], "open");
    let reason = "the aggregate issue will recommend aggregating user_id away";
    let ignored = tero_json_at(&cp, &["issues", "ignore", &sessions_id, "--reason", reason]);
    assert_eq!(ignored["status"], "ignored", "{ignored}");
    assert_eq!(ignored["ignoredBy"], "admin", "{ignored}");
    assert_eq!(ignored["ignoredReason"], reason, "{ignored}");
    let ignored_list = tero_json_at(&cp, &["issues", "list", "--status", "ignored"]);
    assert_eq!(
        ignored_list
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [sessions_id.as_str()],
        "{ignored_list}"
    );
    // The default list shows what still needs someone, and says what it hid.
    let default_list = tero_at(&cp, &["issues", "list"]).ok();
    assert!(
        !default_list.contains(&format!("{sessions_id} ")),
        "{default_list}"
    );
    assert!(default_list.contains("1 ignored"), "{default_list}");
    let every = tero_json_at(&cp, &["issues", "list", "--status", "all"]);
    assert_eq!(every.as_array().map(Vec::len), Some(3), "{every}");

    // 8. Errors: accepting twice, an unknown issue.
    let stderr = tero_at(&cp, &["issues", "accept", &queue_id]).fails(1);
    assert!(stderr.contains("already accepted"), "{stderr}");
    for args in [
        &["issues", "accept", "ISS-99999"][..],
        &["issues", "show", "ISS-99999"][..],
    ] {
        let stderr = tero_at(&cp, args).fails(1);
        assert!(stderr.contains("not found"), "{args:?}: {stderr}");
    }

    // 5 (end). The active policy's impact is verified: the issue is
    // resolved. The shadow one stays in progress, in shadow.
    let resolved = wait_for(Duration::from_secs(60), "the issue resolved", || {
        let issue = http_issue(&cp, &queue_id);
        (issue["status"] == "resolved").then_some(issue)
    });
    assert_eq!(resolved["remediation"], "resolution_verified", "{resolved}");
    assert!(
        resolved["resolution"]
            .as_str()
            .unwrap_or("")
            .contains(queue_policy_id.as_str()),
        "{resolved}"
    );
    let debug_now = http_issue(&cp, &debug_id);
    assert_eq!(debug_now["status"], "in_progress", "{debug_now}");
    assert_eq!(debug_now["remediation"], "policy_shadow", "{debug_now}");

    // 6 (end). Accepting the shadowed issue again, active, enforces its
    // policy: the edge drops the family and the issue is verified.
    let promoted = tero_json_at(&cp, &["issues", "accept", &debug_id, "--mode", "active"]);
    assert_eq!(
        promoted["issue"]["policyId"],
        debug_policy_id.as_str(),
        "{promoted}"
    );
    assert_eq!(
        promoted["issue"]["remediation"], "policy_active",
        "{promoted}"
    );
    assert_eq!(
        policy_label(&promoted["policy"]["policy"], "tero.mode"),
        None
    );
    wait_for(Duration::from_secs(30), "the edge enforcing it", || {
        edge_runs(&edge, &debug_policy_id, "active").then_some(())
    });
    assert_eq!(count_lines(&scrape(&edge), "debug_cache_entries{"), 0);
    // The measurement restarts on the first full minute 30 s after the
    // promotion (up to 90 s), then needs 3 scrapes.
    let resolved = wait_for(Duration::from_secs(150), "the debug issue resolved", || {
        let issue = http_issue(&cp, &debug_id);
        (issue["status"] == "resolved").then_some(issue)
    });
    assert_eq!(resolved["remediation"], "resolution_verified", "{resolved}");
    assert_eq!(http_issue(&cp, &sessions_id)["status"], "ignored");
}

//! A newcomer's first minutes with issues: with default inventory settings
//! (a report every 300 s), the edge's first inventory reaches the control
//! plane seconds after its first scrape, and until there are issues,
//! `tero issues list` says why the list is empty instead of printing an
//! empty table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tero_e2e::cli::tero_at;
use tero_e2e::control_plane::ControlPlane;
use tero_e2e::fixtures::TEXT;
use tero_e2e::upstream::{Compression, Upstream};
use tero_e2e::{Edge, http_get, wait_for};

const BODY: &str = "# TYPE http_requests_total counter\n\
    http_requests_total{code=\"200\"} 1027\n\
    http_requests_total{code=\"500\"} 3\n";

const RULES: &str = r#"groups:
  - name: app
    rules:
      - record: app:http_requests:rate5m
        expr: sum by (code) (rate(http_requests_total[5m]))
"#;

fn list(cp: &ControlPlane) -> String {
    tero_at(cp, &["issues", "list"]).ok()
}

#[test]
fn the_first_inventory_arrives_within_seconds_and_an_empty_list_says_why() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let up = Upstream::start(BODY.as_bytes().to_vec(), TEXT, Compression::None);
    let cp = ControlPlane::start(dir.clone(), "cp-first");
    let key = cp.create_key("app-edge");

    let before = list(&cp);
    assert!(
        before.contains("no edge has reported an inventory yet")
            && before.contains("about 10 s after their first scrape"),
        "{before}"
    );

    // Default inventory settings: interval_secs 300.
    let edge = Edge::start(
        json!({
            "upstream_url": up.url(),
            "service": {"name": "app", "instance_id": "app-edge-0"},
            "policy_providers": [cp.grpc_provider(&key)],
        }),
        dir.clone(),
        "edge-first",
    );
    let scraped = Instant::now();
    let r = http_get(&edge.url("/metrics"), &[]).expect("scrape through the edge");
    assert_eq!(r.status, 200, "{}", r.text());

    let after = wait_for(Duration::from_secs(40), "the first inventory", || {
        let out = list(&cp);
        (!out.contains("no edge has reported")).then_some(out)
    });
    let waited = scraped.elapsed();
    assert!(
        waited < Duration::from_secs(30),
        "the first report took {waited:?}, not seconds"
    );
    // Nothing found yet, and why: no usage source says what is read.
    assert!(
        after.contains("No issues found in 1 service")
            && after.contains("No usage source is imported"),
        "{after}"
    );

    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    tero_at(&cp, &["usage", "import", rules.to_str().unwrap()]).ok();
    let nothing = wait_for(Duration::from_secs(20), "the usage counted", || {
        let out = list(&cp);
        out.starts_with("Nothing found").then_some(out)
    });
    assert!(nothing.contains("1 service"), "{nothing}");
}

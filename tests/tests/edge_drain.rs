//! SIGTERM with a scrape in flight: the Edge stops accepting, lets the
//! scrape finish with its filtered answer, then exits cleanly. This is what
//! a rolling update of a pod does to every sidecar.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tero_e2e::fixtures::{DROP_DEBUG, EXPOSITION, TEXT, WITHOUT_DEBUG};
use tero_e2e::upstream::{Behaviour, UpstreamSpec};
use tero_e2e::{Edge, http_get};

#[test]
fn sigterm_drains_an_in_flight_scrape_and_refuses_new_ones() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let slow = Duration::from_millis(1500);
    let up = UpstreamSpec::new(EXPOSITION, TEXT)
        .behaviour(Behaviour::Delay(slow))
        .start();
    let policies = dir.path().join("policies.yaml");
    std::fs::write(&policies, DROP_DEBUG).unwrap();
    let config = json!({
        "upstream_url": up.url(),
        "service": {"name": "drain"},
        "policy_providers": [{"id": "local", "type": "file", "path": policies}],
    });
    let mut edge = Edge::start(config, dir.clone(), "edge-drain");
    let addr = edge.addr();
    let url = edge.url("/metrics");

    let started = Instant::now();
    let scrape = std::thread::spawn(move || http_get(&url, &[]));
    // The scrape is waiting on the slow upstream when SIGTERM arrives.
    std::thread::sleep(Duration::from_millis(400));
    let probe = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        TcpStream::connect_timeout(&addr, Duration::from_secs(1))
    });
    let exit = edge
        .process
        .terminate(Duration::from_secs(15))
        .expect("tero-edge exits after SIGTERM");
    let exited_after = started.elapsed();

    let response = scrape
        .join()
        .expect("scrape thread")
        .expect("the in-flight scrape is answered");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text(), WITHOUT_DEBUG, "filtered as usual");
    assert!(exit.success(), "clean exit, got {exit:?}");
    assert!(
        exited_after >= slow,
        "the Edge exited after {exited_after:?}, before its scrape could finish ({slow:?})"
    );
    assert!(
        probe.join().expect("probe thread").is_err(),
        "a new connection during the drain was accepted"
    );
    assert_eq!(up.recorded().len(), 1, "upstream asked once");
}

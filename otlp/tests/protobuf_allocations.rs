//! The keep path allocates nothing per record: filtering ten times more
//! kept records costs no more allocations.
//!
//! A test binary of its own, because it installs a counting allocator.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde_json::{Value, json};
use tero_otlp::{Format, Output, Signal, convert};
use tero_sdk::policy::Format as PolicyFormat;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Policies that read the body, the severity, record and resource
/// attributes; some match the records and keep them, none drops them.
const POLICIES: &str = r#"{"policies": [
  {"id": "a", "name": "a", "log": {"match": [{"log_field": "body", "contains": "timeout"}], "keep": "none"}},
  {"id": "b", "name": "b", "log": {"match": [{"log_field": "body", "regex": "^GET /health"}], "keep": "none"}},
  {"id": "c", "name": "c", "log": {"match": [{"log_attribute": "http.route", "exact": "/api/cart"}], "keep": "all"}},
  {"id": "d", "name": "d", "log": {"match": [{"resource_attribute": "service.name", "exact": "api"},
                                              {"log_field": "severity_text", "exact": "DEBUG"}], "keep": "none"}},
  {"id": "e", "name": "e", "log": {"match": [{"log_attribute": "user", "exists": true}], "keep": "all"}}
]}"#;

fn request(records: usize) -> Vec<u8> {
    let records: Vec<Value> = (0..records)
        .map(|i| {
            json!({
                "severityText": "INFO",
                "body": {"stringValue": format!("GET /api/cart/{i} 200")},
                "attributes": [
                    {"key": "http.route", "value": {"stringValue": "/api/cart"}},
                    {"key": "user", "value": {"stringValue": format!("u{i}")}},
                    {"key": "nested", "value": {"kvlistValue": {"values": [
                        {"key": "k", "value": {"intValue": "1"}}]}}}
                ],
                "traceId": "0102030405060708090a0b0c0d0e0f10"
            })
        })
        .collect();
    let doc = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
        "scopeLogs": [{"scope": {"name": "lib"}, "logRecords": records}]
    }]});
    convert::json_to_protobuf(Signal::Log, &doc).unwrap()
}

fn allocations_to_filter(records: usize) -> u64 {
    let (engine, _registry) = common::engine_from(POLICIES, PolicyFormat::Json);
    let payload = request(records);
    // Warm up per-thread scratch buffers first.
    tero_otlp::filter(&engine, Format::OtlpProtobuf, Signal::Log, &payload).unwrap();
    let before = ALLOCATIONS.load(Relaxed);
    let filtered = tero_otlp::filter(&engine, Format::OtlpProtobuf, Signal::Log, &payload).unwrap();
    let after = ALLOCATIONS.load(Relaxed);
    assert_eq!(filtered.output, Output::Unchanged);
    assert_eq!(filtered.counts.records_in, records as u64);
    after - before
}

#[test]
fn kept_records_cost_no_allocation_each() {
    let few = allocations_to_filter(100);
    let many = allocations_to_filter(1_000);
    assert_eq!(
        few, many,
        "filtering 1,000 kept records allocated {many} times, 100 records {few} times"
    );
}

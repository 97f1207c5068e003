//! Scrape bodies and policies shared by the Edge tests, with the output
//! each policy must produce, written out by hand.

pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A small exposition: a counter, a debug gauge family, a plain gauge.
pub const EXPOSITION: &str = r#"# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{code="200"} 1027
http_requests_total{code="500"} 3
# HELP debug_cache_entries Entries in the debug cache.
# TYPE debug_cache_entries gauge
debug_cache_entries{cache="a"} 12
debug_cache_entries{cache="b"} 7
# HELP process_open_fds Open file descriptors.
# TYPE process_open_fds gauge
process_open_fds 42
"#;

/// Drops the two `debug_cache_entries` series.
pub const DROP_DEBUG: &str = r#"
policies:
  - id: drop-debug
    name: Drop debug families
    metric:
      match:
        - metric_field: name
          starts_with: debug_
      keep: false
"#;

/// [`EXPOSITION`] under [`DROP_DEBUG`]: the debug family is gone,
/// metadata included.
pub const WITHOUT_DEBUG: &str = r#"# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{code="200"} 1027
http_requests_total{code="500"} 3
# HELP process_open_fds Open file descriptors.
# TYPE process_open_fds gauge
process_open_fds 42
"#;

//! Prometheus scrapes through `tero.policy.v1` metric policies, with no I/O.
//!
//! [`filter`] takes a scrape body in chunks and returns the byte ranges the
//! policies keep; [`exposition`] says what each line is. Both are
//! synchronous and know nothing of HTTP, so the Edge streams live scrapes
//! through them and the `tero` command line evaluates saved ones with the
//! very same code.

pub mod exposition;
pub mod filter;
pub mod inventory;

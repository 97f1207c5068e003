//! One module per command group.

pub mod apply;
pub mod classify;
pub mod edges;
pub mod issues;
pub mod keys;
pub mod logs;
pub mod policy;
pub mod quickstart;
pub mod sample_app;
pub mod stats;
pub mod test;
pub mod usage;

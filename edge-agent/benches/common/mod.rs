//! What the scrape benchmarks share: the workload, cut into chunks as the
//! proxy would read it, the synthetic policy set, the filter run and
//! best-of timing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tero_edge::exposition::Format;
use tero_edge::filter::{FilterOptions, Resource, ScrapeFilter};
use tero_edge::synthetic;
use tero_sdk::Engine;
use tero_sdk::engine::StatsRegistry;
use tero_sdk::policy::{Format as PolicyFormat, parse_policies};

pub const SIZE: usize = 10 * 1024 * 1024;
pub const CHUNK: usize = 64 * 1024;

pub fn chunks(body: &[u8]) -> Vec<Bytes> {
    let all = Bytes::copy_from_slice(body);
    (0..all.len())
        .step_by(CHUNK)
        .map(|s| all.slice(s..(s + CHUNK).min(all.len())))
        .collect()
}

pub fn engine(policies: usize) -> Arc<Engine> {
    let loaded = parse_policies(&synthetic::policies_yaml(policies), PolicyFormat::Yaml)
        .expect("synthetic policies parse");
    assert!(loaded.rejected.is_empty());
    Arc::new(Engine::compile(&loaded.policies, &StatsRegistry::new()))
}

/// Filters the whole body; returns the bytes kept.
pub fn filter_once(engine: &Arc<Engine>, input: &[Bytes], out: &mut Vec<Bytes>) -> usize {
    let resource = Arc::new(Resource::default());
    let mut filter = ScrapeFilter::new(engine.clone(), resource, FilterOptions::new(Format::Text));
    let mut kept = 0;
    for chunk in input {
        filter.push(chunk, out);
        kept += out.iter().map(Bytes::len).sum::<usize>();
        out.clear();
    }
    filter.finish(out);
    kept
}

pub fn best_of<F: FnMut()>(runs: usize, mut f: F) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

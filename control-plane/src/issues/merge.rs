//! One service's inventory from the latest report of each of its instances.
//!
//! Instances of a service export the same families with their own series,
//! so counts and bytes add up; label sketches merge into the estimate of
//! the union (a user id seen by two replicas counts once); content hashes
//! add, so families identical on every instance stay identical after the
//! merge.

use std::collections::BTreeMap;

use tero_proto::controlplane::{FamilyInventory, LabelInventory, ServiceInventory};
use tero_sdk::sketch::CardinalitySketch;

use crate::store::StoredInventory;

/// Examples kept per label after merging.
const MAX_EXAMPLES: usize = 5;
/// Bucket bounds kept per histogram after merging.
const MAX_BOUNDS: usize = 64;

pub fn merge(service: &str, reports: &[StoredInventory]) -> ServiceInventory {
    let mut families: BTreeMap<String, FamilyInventory> = BTreeMap::new();
    let mut sketches: BTreeMap<(String, String), CardinalitySketch> = BTreeMap::new();
    let mut rates = Vec::new();
    let mut from = i64::MAX;
    let mut to = 0;
    for stored in reports {
        let report = &stored.report;
        from = from.min(report.window_start_unix_ms);
        to = to.max(report.window_end_unix_ms);
        let minutes = (report.window_end_unix_ms - report.window_start_unix_ms) as f64 / 60_000.0;
        if minutes > 0.0 && report.scrapes > 0 {
            rates.push(report.scrapes as f64 / minutes);
        }
        for family in &report.families {
            let merged = families
                .entry(family.name.clone())
                .or_insert_with(|| FamilyInventory {
                    name: family.name.clone(),
                    r#type: family.r#type.clone(),
                    unit: family.unit.clone(),
                    help: family.help.clone(),
                    ..Default::default()
                });
            merged.series += family.series;
            merged.samples += family.samples;
            merged.sample_bytes += family.sample_bytes;
            merged.metadata_bytes += family.metadata_bytes;
            merged.content_hash = merged.content_hash.wrapping_add(family.content_hash);
            merged.labels_omitted = merged.labels_omitted.max(family.labels_omitted);
            merged.bucket_count = merged.bucket_count.max(family.bucket_count);
            for bound in &family.bucket_bounds {
                if merged.bucket_bounds.len() < MAX_BOUNDS && !merged.bucket_bounds.contains(bound)
                {
                    merged.bucket_bounds.push(bound.clone());
                }
            }
            for label in &family.labels {
                let key = (family.name.clone(), label.name.clone());
                let sketch = sketches.entry(key).or_default();
                match CardinalitySketch::decode(&label.sketch) {
                    Ok(theirs) => sketch.merge(&theirs),
                    Err(e) => tracing::debug!(
                        family = %family.name, label = %label.name, error = %e,
                        "unreadable label sketch; its estimate is used alone"
                    ),
                }
                let target = match merged.labels.iter_mut().find(|l| l.name == label.name) {
                    Some(existing) => existing,
                    None => {
                        merged.labels.push(LabelInventory {
                            name: label.name.clone(),
                            ..Default::default()
                        });
                        merged.labels.last_mut().expect("just pushed")
                    }
                };
                target.series += label.series;
                target.masked |= label.masked;
                // A sketch that could not be read still bounds from below.
                target.cardinality = target.cardinality.max(label.cardinality);
                for example in &label.examples {
                    if target.examples.len() < MAX_EXAMPLES && !target.examples.contains(example) {
                        target.examples.push(example.clone());
                    }
                }
            }
        }
    }
    for family in families.values_mut() {
        for label in &mut family.labels {
            if let Some(sketch) = sketches.get(&(family.name.clone(), label.name.clone())) {
                label.cardinality = label.cardinality.max(sketch.estimate());
                label.sketch = sketch.encode();
            }
        }
    }
    let scrapes_per_minute = if rates.is_empty() {
        0.0
    } else {
        rates.iter().sum::<f64>() / rates.len() as f64
    };
    ServiceInventory {
        service: service.to_owned(),
        instances: reports.iter().map(|r| r.instance_id.clone()).collect(),
        from_unix_ms: if from == i64::MAX { 0 } else { from },
        to_unix_ms: to,
        scrapes_per_minute,
        families: families.into_values().collect(),
    }
}

#[cfg(test)]
mod tests {
    use tero_proto::controlplane::InventoryReport;

    use super::*;

    fn label(name: &str, values: std::ops::Range<u32>, examples: &[&str]) -> LabelInventory {
        let mut sketch = CardinalitySketch::new();
        for v in values.clone() {
            sketch.insert(format!("v{v}").as_bytes());
        }
        LabelInventory {
            name: name.into(),
            cardinality: sketch.estimate(),
            sketch: sketch.encode(),
            examples: examples.iter().map(|e| e.to_string()).collect(),
            masked: false,
            series: values.len() as u64,
        }
    }

    fn report(instance: &str, users: std::ops::Range<u32>, hash: u64) -> StoredInventory {
        StoredInventory {
            instance_id: instance.into(),
            received_at: 0,
            report: InventoryReport {
                window_start_unix_ms: 0,
                window_end_unix_ms: 300_000,
                scrapes: 20,
                families: vec![FamilyInventory {
                    name: "sessions".into(),
                    r#type: "gauge".into(),
                    series: users.len() as u64,
                    samples: users.len() as u64,
                    sample_bytes: 40 * users.len() as u64,
                    content_hash: hash,
                    labels: vec![label("user", users, &["a", "b"])],
                    ..Default::default()
                }],
                ..Default::default()
            },
        }
    }

    #[test]
    fn instances_add_up_and_label_values_count_once() {
        let merged = merge(
            "api",
            &[report("i-1", 0..100, 7), report("i-2", 50..150, 9)],
        );
        assert_eq!(merged.instances, vec!["i-1", "i-2"]);
        assert_eq!(merged.scrapes_per_minute, 4.0);
        let family = &merged.families[0];
        assert_eq!((family.series, family.sample_bytes), (200, 8000));
        assert_eq!(family.content_hash, 16);
        let user = &family.labels[0];
        // 0..150: the overlap counts once.
        assert_eq!(user.cardinality, 150);
        assert_eq!(user.series, 200);
        assert_eq!(user.examples, vec!["a", "b"]);
    }

    #[test]
    fn nothing_reported_is_an_empty_inventory() {
        let merged = merge("api", &[]);
        assert!(merged.families.is_empty());
        assert_eq!((merged.from_unix_ms, merged.scrapes_per_minute), (0, 0.0));
    }
}

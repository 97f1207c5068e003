//! Attributes that repeat another field of the same records (`userId` next
//! to `user_id`, `trace_id` as an attribute and in the body): one finding
//! per duplicate field, recommending a `remove` of it that keeps every
//! record.
//!
//! Only an attribute can be removed: a body that repeats an attribute's
//! value cannot lose just that value without knowing where it sits, so such
//! a finding recommends nothing and says what to change in the code.
//!
//! A removal is recommended only when the two fields were equal on at least
//! [`MIN_EQUAL_SHARE`] of the sampled records carrying the duplicate (its
//! attribute profile): where they differ, the duplicate carries information
//! of its own. When every event type names the same field to keep, the
//! policy also requires that field to be present, so a record that only
//! has the duplicate keeps it.
//!
//! The estimate counts the records rewritten and the bytes saved: the
//! duplicate's bytes over the sampled bytes of the service's log event
//! types, times the log bytes per day the edges reported.

use std::collections::{BTreeMap, BTreeSet};

use tero_proto::controlplane::{DuplicateField, Evidence};
use tero_proto::policy::{LogRemove, LogTransform, log_matcher, log_remove};

use super::super::{Finding, domain};
use super::estimate::{self, Removal, Signal, Volume};
use super::matcher::{attribute_matcher, path};
use super::recommend::Recommendation;
use super::{Candidate, ClassifiedEvent, Ctx, cost_severity, kind, no_policy, sorted_unique};

/// Share of the records carrying the duplicate on which both fields must
/// be equal for a removal to be recommended.
pub const MIN_EQUAL_SHARE: f64 = 0.99;

fn attribute_key(field: &str) -> Option<&str> {
    field.strip_prefix("attribute:").filter(|k| !k.is_empty())
}

pub(super) fn detect(ctx: &Ctx) -> Vec<Candidate> {
    let mut by_duplicate: BTreeMap<&str, Vec<(&ClassifiedEvent, &DuplicateField)>> =
        BTreeMap::new();
    for event in &ctx.logs {
        for d in &event.event.duplicate_fields {
            if d.records > 0 && !d.duplicate.is_empty() && d.duplicate != d.keep {
                by_duplicate
                    .entry(d.duplicate.as_str())
                    .or_default()
                    .push((event, d));
            }
        }
    }
    by_duplicate
        .into_iter()
        .filter_map(|(duplicate, found)| finding(ctx, duplicate, &found))
        .collect()
}

fn finding(
    ctx: &Ctx,
    duplicate: &str,
    found: &[(&ClassifiedEvent, &DuplicateField)],
) -> Option<Candidate> {
    let mut volume = Volume::ZERO;
    let mut measured = false;
    let mut equal = 0u64;
    let mut carrying = 0u64;
    let mut dup_bytes = 0u64;
    for (event, d) in found {
        let e = &event.event;
        let records = if e.count > 0 {
            d.records.min(e.count)
        } else {
            d.records
        };
        equal += records;
        dup_bytes += d.bytes;
        carrying += attribute_key(duplicate)
            .and_then(|k| e.attributes.iter().find(|p| p.key == k))
            .map_or(records, |p| p.records.max(records));
        if let Some(v) = estimate::part_of(
            e,
            records,
            d.bytes,
            Signal::Log,
            ctx.log_totals,
            &ctx.inventory.volume,
        ) {
            volume = volume.plus(v);
            measured = true;
        }
    }
    if !measured {
        return None;
    }
    let byte_share = if ctx.log_totals.bytes > 0 {
        dup_bytes as f64 / ctx.log_totals.bytes as f64
    } else {
        0.0
    };
    let estimate = estimate::estimate(volume, Removal::Nothing, volume.bytes_per_day, ctx.prices);
    let keeps: BTreeSet<&str> = found.iter().map(|(_, d)| d.keep.as_str()).collect();
    let equal_share = equal as f64 / carrying.max(1) as f64;

    let mut duplicate_fields: Vec<DuplicateField> =
        found.iter().map(|(_, d)| (*d).clone()).collect();
    duplicate_fields.sort_by(|a, b| a.keep.cmp(&b.keep).then(b.records.cmp(&a.records)));
    let edges = sorted_unique(
        found
            .iter()
            .flat_map(|(e, _)| e.event.edges.iter().cloned()),
    );
    let keep_list = keeps.iter().copied().collect::<Vec<_>>().join(", ");
    let mut summary = format!(
        "`{duplicate}` repeats {keep_list} on {} sampled records of {} log event type(s) of {}: \
         about {} records/day carry both. Removing it saves {}/day ({:.2}% of the service's \
         log bytes), ${:.2}/month.",
        equal,
        found.len(),
        ctx.service(),
        estimate.records_per_day,
        super::human_bytes(estimate.bytes_per_day),
        byte_share * 100.0,
        estimate.cost_per_month
    );
    let recommended = match attribute_key(duplicate) {
        None => {
            summary.push_str(&no_policy(&format!(
                "the body repeats the value of {keep_list}, and a policy can only remove the \
                 body whole; drop the value from the message where it is logged"
            )));
            None
        }
        Some(_) if equal_share < MIN_EQUAL_SHARE => {
            summary.push_str(&no_policy(&format!(
                "the two were equal on only {:.0}% of the sampled records carrying \
                 `{duplicate}`, so elsewhere it carries a value of its own",
                equal_share * 100.0
            )));
            None
        }
        Some(key) => {
            let mut matchers = vec![attribute_matcher(key, log_matcher::Match::Exists(true))];
            let single_keep = keeps
                .iter()
                .copied()
                .filter_map(attribute_key)
                .collect::<BTreeSet<_>>();
            if keeps.len() == 1 && single_keep.len() == 1 {
                let keep = single_keep.into_iter().next().expect("one");
                matchers.push(attribute_matcher(keep, log_matcher::Match::Exists(true)));
            }
            summary.push_str(&format!(
                " The policy keeps every record and removes `{key}`{}.",
                if matchers.len() == 2 {
                    format!(" from those that also carry {keep_list}")
                } else {
                    String::new()
                }
            ));
            let rec = Recommendation {
                kind: kind::DUPLICATED_LOG_FIELDS,
                service: ctx.service(),
                subject: duplicate,
                name: format!("Remove the duplicate attribute {key}"),
                why: format!("`{key}` repeats {keep_list}; nothing is dropped."),
            };
            Some(rec.log(
                matchers,
                "all",
                Some(LogTransform {
                    remove: vec![LogRemove {
                        field: Some(log_remove::Field::LogAttribute(path(key))),
                    }],
                    ..Default::default()
                }),
            ))
        }
    };
    let evidence = Evidence {
        edges: edges.clone(),
        records_per_day: estimate.records_per_day,
        bytes_per_day: estimate.bytes_per_day,
        volume_share: volume.share,
        duplicate_fields,
        notes: std::iter::once(format!(
            "bytes saved: {:.4} of the service's sampled log bytes; equal on {:.1}% of the \
             sampled records carrying it",
            byte_share,
            equal_share * 100.0
        ))
        .chain(
            found
                .iter()
                .map(|(e, _)| format!("event type {}: `{}`", e.event.fingerprint, e.event.name)),
        )
        .collect(),
        ..Default::default()
    };
    Some(Candidate {
        finding: Finding {
            kind: kind::DUPLICATED_LOG_FIELDS,
            domain: domain::COST,
            severity: cost_severity(ctx, estimate.cost_per_month).as_str(),
            title: format!(
                "Duplicated log field in {}: {duplicate} repeats {keep_list}",
                ctx.service()
            ),
            summary,
            service: ctx.service().to_owned(),
            subject: duplicate.to_owned(),
            evidence,
            provenance: ctx.provenance(
                kind::DUPLICATED_LOG_FIELDS,
                vec![format!("min_equal_share={MIN_EQUAL_SHARE}")],
                None,
                edges,
            ),
            estimate,
            recommended,
            absorbed: Vec::new(),
        },
        rank: 0,
    })
}

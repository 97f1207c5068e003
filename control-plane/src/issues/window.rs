//! Which statistics belong to a policy's current period.
//!
//! A policy's impact is measured over its current period: since it was last
//! enabled, promoted from shadow or put back in shadow. Statistics are kept
//! in one-minute buckets stamped when an edge's report arrives, so the
//! minute of a change, and reports that arrive shortly after it, can hold
//! counts of the previous period (what a shadow would have dropped, what an
//! earlier enabled run dropped). The measurement starts at the first minute
//! that cannot hold any.

use tero_proto::controlplane::PolicyRevision;
use tero_sdk::engine::is_shadow;

const MINUTE_MS: i64 = 60_000;
/// How long after a change counts made before it may still arrive: edges
/// report every 10 s on the stream and with each poll (every 30 s) by
/// default.
pub const REPORT_LAG_MS: i64 = 30_000;

/// The current period of an enabled policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activation {
    /// When the period began (Unix ms).
    pub since: i64,
    /// Whether the policy runs in shadow.
    pub shadow: bool,
    /// When the policy last stopped counting in another period (Unix ms):
    /// the change itself after a promotion, the disabling before a
    /// re-enable. `None` when it never counted before.
    pub previous_end: Option<i64>,
}

impl Activation {
    /// The first statistics minute holding only counts of this period.
    pub fn measured_from(&self) -> i64 {
        let first = floor_minute(self.since);
        match self.previous_end {
            None => first,
            Some(end) => first.max(ceil_minute(end.saturating_add(REPORT_LAG_MS))),
        }
    }
}

fn floor_minute(ms: i64) -> i64 {
    ms - ms.rem_euclid(MINUTE_MS)
}

fn ceil_minute(ms: i64) -> i64 {
    let floor = floor_minute(ms);
    if floor == ms {
        ms
    } else {
        floor.saturating_add(MINUTE_MS)
    }
}

/// The policy's current period: the oldest revision of the newest unbroken
/// run of enabled revisions in the same mode. `None` when it is not
/// enabled now.
pub fn activation(history: &[PolicyRevision]) -> Option<Activation> {
    let mode = |r: &PolicyRevision| r.policy.as_ref().filter(|p| p.enabled).map(is_shadow);
    // History is newest first.
    let shadow = mode(history.first()?)?;
    let run = history
        .iter()
        .take_while(|r| mode(r) == Some(shadow))
        .count();
    let since = history[run - 1].at_unix_ms;
    let previous_end = match history.get(run) {
        None => None,
        // Enabled in the other mode until this period began.
        Some(before) if mode(before).is_some() => Some(since),
        // Disabled (or deleted) before: counting stopped at the revision
        // that followed its last enabled one.
        Some(_) => history[run..]
            .iter()
            .position(|r| mode(r).is_some())
            .map(|i| history[run + i - 1].at_unix_ms),
    };
    Some(Activation {
        since,
        shadow,
        previous_end,
    })
}

#[cfg(test)]
mod tests {
    use tero_proto::policy::Policy;

    use super::*;
    use crate::issues::{MODE_LABEL, SHADOW_MODE, string_label};

    fn revision(at: i64, enabled: Option<bool>, shadow: bool) -> PolicyRevision {
        PolicyRevision {
            at_unix_ms: at,
            policy: enabled.map(|enabled| Policy {
                id: "p".into(),
                enabled,
                labels: if shadow {
                    vec![string_label(MODE_LABEL, SHADOW_MODE)]
                } else {
                    Vec::new()
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn at(since: i64, shadow: bool, previous_end: Option<i64>) -> Option<Activation> {
        Some(Activation {
            since,
            shadow,
            previous_end,
        })
    }

    #[test]
    fn activation_is_the_start_of_the_current_enabled_run_in_one_mode() {
        // Newest first: active since 40 (promoted from shadow at 40).
        let history = [
            revision(50, Some(true), false),
            revision(40, Some(true), false),
            revision(30, Some(true), true),
            revision(20, Some(false), false),
            revision(10, Some(true), false),
        ];
        assert_eq!(activation(&history), at(40, false, Some(40)));
        assert_eq!(
            activation(&history[2..]),
            at(30, true, Some(20)),
            "re-enabled in shadow: the earlier run stopped when it was disabled"
        );
        assert_eq!(activation(&history[3..]), None, "disabled now");
        assert_eq!(activation(&history[4..]), at(10, false, None), "created");
        assert_eq!(activation(&[revision(60, None, false)]), None, "deleted");
        assert_eq!(activation(&[]), None);
    }

    #[test]
    fn the_measurement_leaves_out_every_minute_the_previous_period_can_reach() {
        let minute = 60_000 * 1_000;
        // A new policy counted nothing before: its minute is all its own.
        let created = activation(&[revision(minute + 50_000, Some(true), false)]).unwrap();
        assert_eq!(created.measured_from(), minute);
        // Promoted early in a minute: that minute still holds shadow
        // counts; reports made before the change arrive within the lag.
        let promoted = activation(&[
            revision(minute + 10_000, Some(true), false),
            revision(minute - 300_000, Some(true), true),
        ])
        .unwrap();
        assert_eq!(promoted.measured_from(), minute + 60_000);
        // Promoted late in a minute: late reports reach into the next one.
        let late = activation(&[
            revision(minute + 50_000, Some(true), false),
            revision(minute - 300_000, Some(true), true),
        ])
        .unwrap();
        assert_eq!(late.measured_from(), minute + 120_000);
        // Re-enabled long after it was disabled: nothing counted meanwhile.
        let reenabled = activation(&[
            revision(minute + 50_000, Some(true), false),
            revision(minute - 600_000, Some(false), false),
            revision(minute - 900_000, Some(true), false),
        ])
        .unwrap();
        assert_eq!(reenabled.measured_from(), minute);
        // Re-enabled right after: the earlier run's last reports are left out.
        let quickly = activation(&[
            revision(minute + 20_000, Some(true), false),
            revision(minute + 5_000, Some(false), false),
            revision(minute - 900_000, Some(true), false),
        ])
        .unwrap();
        assert_eq!(quickly.measured_from(), minute + 60_000);
    }
}

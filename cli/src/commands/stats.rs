//! `tero stats POLICY_ID [--since 24h]`: what a policy measurably did,
//! and the share of its signal's volume that is.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use clap::Args;
use tero_sdk::proto::controlplane::{GetPolicyStatsRequest, VolumeShare};

use crate::Global;
use crate::output::{self, Table, structured};

#[derive(Debug, Args)]
pub struct StatsArgs {
    pub policy_id: String,
    /// How far back: a number with s, m, h or d (e.g. 90m, 24h, 7d).
    #[arg(long, default_value = "24h", value_parser = parse_since)]
    pub since: Duration,
}

pub fn parse_since(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit, like 24h"))?;
    // A bare number is refused rather than read in some unit: `2` meant as
    // two days must not silently become two hours.
    let per_unit: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "" => {
            return Err(format!(
                "{text:?} has no unit: write {n}s, {n}m, {n}h or {n}d"
            ));
        }
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use s, m, h or d"
            ));
        }
    };
    let secs = n
        .checked_mul(per_unit)
        .ok_or_else(|| format!("{text:?}: too long"))?;
    if secs == 0 {
        return Err("--since must be more than 0".into());
    }
    Ok(Duration::from_secs(secs))
}

pub async fn run(args: StatsArgs, global: &Global) -> anyhow::Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let from = i64::try_from(args.since.as_millis())
        .ok()
        .and_then(|since| now.checked_sub(since))
        .filter(|from| *from >= 0);
    let Some(from) = from else {
        bail!("--since reaches before 1970");
    };
    let stats = global
        .client()?
        .policy_stats(GetPolicyStatsRequest {
            id: args.policy_id.clone(),
            from_unix_ms: from,
            to_unix_ms: now,
        })
        .await?;
    if structured(global.output, &stats)? {
        return Ok(());
    }
    let total = stats.total.unwrap_or_default();
    crate::outln!(
        "policy {} from {} to {}: {} hits, {} misses, {} series and {} dropped",
        stats.policy_id,
        output::time(stats.from_unix_ms),
        output::time(stats.to_unix_ms),
        total.hits,
        total.misses,
        total.series_dropped,
        output::bytes(total.bytes_dropped),
    );
    if let Some(share) = &stats.volume_share {
        crate::outln!("{}", share_line(share));
    }
    if !stats.buckets.is_empty() {
        let mut table = Table::new(&[
            "MINUTE",
            "HITS",
            "MISSES",
            "SERIES DROPPED",
            "BYTES DROPPED",
        ]);
        for b in &stats.buckets {
            table.row(vec![
                output::time(b.minute_unix_ms),
                b.hits.to_string(),
                b.misses.to_string(),
                b.series_dropped.to_string(),
                output::bytes(b.bytes_dropped),
            ]);
        }
        table.print();
    }
    Ok(())
}

/// What a signal's records are called.
fn records_of(signal: &str) -> &'static str {
    match signal {
        "log" => "log records",
        "trace" => "spans",
        _ => "data points",
    }
}

/// The share of its signal's volume the policy dropped (or would drop, in
/// shadow), with what it is made of. Unknown (`—`), never 0 %, when the
/// edges it runs on reported no volume.
fn share_line(v: &VolumeShare) -> String {
    let records = records_of(&v.signal);
    let verb = if v.shadow {
        "would drop (shadow)"
    } else {
        "dropped"
    };
    let edges = match v.edges {
        1 => "the 1 edge it runs on".to_owned(),
        n => format!("the {n} edges it runs on"),
    };
    let Some(share) = v.share.filter(|_| v.records_seen > 0) else {
        return format!(
            "share of {} volume it {verb}: — ({edges} reported no volume in this window)",
            v.signal
        );
    };
    let detail = if v.records_dropped > v.records_seen {
        format!(
            "{} {records} against {} reported seen: some of {edges} do not report volume",
            v.records_dropped, v.records_seen
        )
    } else {
        format!(
            "{} of {} {records} seen by {edges}",
            v.records_dropped, v.records_seen
        )
    };
    format!(
        "share of {} volume it {verb}: {} ({detail})",
        v.signal,
        percent(share)
    )
}

/// A share as a percentage: one decimal, and a share that is not 0 never
/// reads as 0.
fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p > 0.0 && p < 0.05 {
        "<0.1%".into()
    } else {
        format!("{p:.1}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(dropped: i64, seen: i64) -> VolumeShare {
        VolumeShare {
            signal: "metric".into(),
            records_dropped: dropped,
            records_seen: seen,
            edges: 2,
            edges_reporting: 2,
            shadow: false,
            share: (seen > 0).then(|| (dropped as f64 / seen as f64).min(1.0)),
        }
    }

    #[test]
    fn the_share_reads_as_a_percentage_of_what_was_seen() {
        assert_eq!(
            share_line(&share(25, 100)),
            "share of metric volume it dropped: 25.0% (25 of 100 data points seen by the 2 edges it runs on)"
        );
        assert_eq!(
            share_line(&share(0, 100)),
            "share of metric volume it dropped: 0.0% (0 of 100 data points seen by the 2 edges it runs on)"
        );
        assert!(share_line(&share(1, 1_000_000)).contains(": <0.1% ("));
        let mut shadow = share(50, 100);
        shadow.shadow = true;
        shadow.signal = "log".into();
        assert_eq!(
            share_line(&shadow),
            "share of log volume it would drop (shadow): 50.0% (50 of 100 log records seen by the 2 edges it runs on)"
        );
    }

    #[test]
    fn without_volume_the_share_is_unknown_not_zero() {
        let line = share_line(&share(7, 0));
        assert_eq!(
            line,
            "share of metric volume it dropped: — (the 2 edges it runs on reported no volume in this window)"
        );
        assert!(!line.contains('%'));
        // More dropped than reported seen: capped, and said why.
        let line = share_line(&share(130, 100));
        assert!(
            line.contains(": 100.0% (130 data points against 100 reported seen"),
            "{line}"
        );
    }

    #[test]
    fn since_takes_a_number_and_a_unit() {
        assert_eq!(parse_since("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_since("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_since("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_since("0h").is_err());
        assert!(parse_since("h").is_err());
        assert!(
            parse_since("2")
                .unwrap_err()
                .contains("no unit: write 2s, 2m, 2h or 2d")
        );
        assert!(parse_since("5w").unwrap_err().contains("unknown unit"));
        assert!(
            parse_since("99999999999999999d")
                .unwrap_err()
                .contains("too long")
        );
    }
}

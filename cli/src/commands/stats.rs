//! `tero stats POLICY_ID [--since 24h]`: what a policy measurably did.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use clap::Args;
use tero_sdk::proto::controlplane::GetPolicyStatsRequest;

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

#[cfg(test)]
mod tests {
    use super::*;

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

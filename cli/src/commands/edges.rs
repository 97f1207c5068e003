//! `tero edges list|get`: the runtime view.

use clap::Subcommand;
use tero_sdk::proto::controlplane::{Edge, EdgeState, ListEdgesRequest, Transport};
use tero_sdk::proto::policy::VolumeStats;

use crate::output::{self, Table, structured};
use crate::{Global, outln};

#[derive(Debug, Subcommand)]
pub enum EdgesCommand {
    /// Lists edges: state, transport, applied hash, last seen, the records
    /// they saw in the last 5 minutes, errors.
    List {
        /// Only edges of this service.
        #[arg(long)]
        service: Option<String>,
        /// Include edges not heard from for an hour.
        #[arg(long)]
        include_gone: bool,
    },
    /// Shows one edge.
    Get { instance_id: String },
}

pub async fn run(cmd: EdgesCommand, global: &Global) -> anyhow::Result<()> {
    let client = global.client()?;
    let edges = match cmd {
        EdgesCommand::List {
            service,
            include_gone,
        } => {
            let edges = client
                .list_all_edges(ListEdgesRequest {
                    service_name: service.unwrap_or_default(),
                    include_gone,
                    page_size: 500,
                    page_token: String::new(),
                })
                .await?;
            if structured(global.output, &edges)? {
                return Ok(());
            }
            edges
        }
        EdgesCommand::Get { instance_id } => {
            let edge = client.get_edge(&instance_id).await?;
            if !structured(global.output, &edge)? {
                print_one(&edge);
            }
            return Ok(());
        }
    };
    print(&edges);
    Ok(())
}

fn state_name(edge: &Edge) -> String {
    EdgeState::try_from(edge.state)
        .unwrap_or(EdgeState::Unspecified)
        .as_str_name()
        .trim_start_matches("EDGE_STATE_")
        .to_lowercase()
}

fn transport_name(edge: &Edge) -> String {
    Transport::try_from(edge.transport)
        .unwrap_or(Transport::Unspecified)
        .as_str_name()
        .trim_start_matches("TRANSPORT_")
        .to_lowercase()
}

fn in_sync(edge: &Edge) -> &'static str {
    if edge.desired_hash.is_empty() {
        "-"
    } else if edge.applied_hash == edge.desired_hash {
        "yes"
    } else {
        "no"
    }
}

/// One edge as an object: every field, whole hashes, and its errors one
/// policy per line (the list squeezes them into one cell).
fn print_one(edge: &Edge) {
    let mut table = Table::new(&["FIELD", "VALUE"]);
    let mut row = |k: &str, v: String| table.row(vec![k.into(), v]);
    row("instance", edge.instance_id.clone());
    row("service", edge.service_name.clone());
    row("namespace", output::dash(&edge.service_namespace));
    row("version", output::dash(&edge.service_version));
    row("state", state_name(edge));
    row("transport", transport_name(edge));
    row("replica", output::dash(&edge.replica));
    row("first seen", output::time(edge.first_seen_unix_ms));
    row("last seen", output::time(edge.last_seen_unix_ms));
    row("desired hash", output::dash(&edge.desired_hash));
    row("applied hash", output::dash(&edge.applied_hash));
    row("in sync", in_sync(edge).into());
    row("refused hash", output::dash(&edge.last_failed_hash));
    row("api key", output::dash(&edge.api_key_id));
    row(
        "volume, last 5 min",
        volume(edge.volume_last_5m.as_ref(), true),
    );
    row(
        "volume, last hour",
        volume(edge.volume_last_hour.as_ref(), true),
    );
    if !edge.conflicting_key_id.is_empty() {
        row(
            "conflict",
            format!(
                "instance id claimed by key {} at {} (refused)",
                edge.conflicting_key_id,
                output::time(edge.conflict_unix_ms)
            ),
        );
    }
    table.print();
    outln!();
    if edge.policy_errors.is_empty() {
        outln!("Errors: none");
        return;
    }
    let mut errors = Table::new(&["POLICY", "ERROR"]);
    for e in &edge.policy_errors {
        let who = if e.policy_id.is_empty() {
            "(the set)".to_owned()
        } else {
            e.policy_id.clone()
        };
        for error in &e.errors {
            errors.row(vec![who.clone(), error.clone()]);
        }
    }
    outln!("Errors");
    errors.print();
}

/// What an edge saw before its policies, per signal: records, and with
/// `bytes` their OTLP size where it reports one; `-` when it reported
/// nothing (idle, or an edge that does not report volume).
fn volume(v: Option<&VolumeStats>, bytes: bool) -> String {
    let Some(v) = v else { return "-".into() };
    let mut parts = Vec::new();
    for (records, unit, size) in [
        (v.log_records, "log records", v.log_bytes),
        (v.metric_data_points, "data points", v.metric_bytes),
        (v.spans, "spans", v.span_bytes),
    ] {
        if records == 0 && size == 0 {
            continue;
        }
        let mut part = format!("{records} {unit}");
        if bytes && size > 0 {
            part.push_str(&format!(" ({})", output::bytes(size)));
        }
        parts.push(part);
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

fn short(hash: &str) -> String {
    if hash.is_empty() {
        "-".into()
    } else {
        hash.chars().take(12).collect()
    }
}

fn print(edges: &[Edge]) {
    let mut table = Table::new(&[
        "INSTANCE",
        "SERVICE",
        "STATE",
        "TRANSPORT",
        "APPLIED",
        "IN SYNC",
        "LAST SEEN",
        "SEEN (5M)",
        "ERRORS",
    ]);
    for edge in edges {
        let mut errors: Vec<String> = edge
            .policy_errors
            .iter()
            .map(|e| {
                let who = if e.policy_id.is_empty() {
                    "set"
                } else {
                    e.policy_id.as_str()
                };
                format!("{who}: {}", e.errors.join("; "))
            })
            .collect();
        if !edge.conflicting_key_id.is_empty() {
            errors.push(format!(
                "instance id claimed by key {} (refused)",
                edge.conflicting_key_id
            ));
        }
        table.row(vec![
            edge.instance_id.clone(),
            edge.service_name.clone(),
            state_name(edge),
            transport_name(edge),
            short(&edge.applied_hash),
            in_sync(edge).into(),
            output::time(edge.last_seen_unix_ms),
            volume(edge.volume_last_5m.as_ref(), false),
            if errors.is_empty() {
                "-".into()
            } else {
                errors.join(" | ")
            },
        ]);
    }
    table.print();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_each_signal_seen_and_a_dash_for_none() {
        assert_eq!(volume(None, true), "-");
        assert_eq!(volume(Some(&VolumeStats::default()), true), "-");
        let v = VolumeStats {
            log_records: 1200,
            log_bytes: 2048,
            metric_data_points: 300,
            ..Default::default()
        };
        assert_eq!(
            volume(Some(&v), true),
            "1200 log records (2.0 KiB), 300 data points"
        );
        assert_eq!(volume(Some(&v), false), "1200 log records, 300 data points");
    }
}

//! `tero edges list|get`: the runtime view.

use clap::Subcommand;
use tero_sdk::proto::controlplane::{Edge, EdgeState, ListEdgesRequest, Transport};

use crate::Global;
use crate::output::{self, Table, structured};

#[derive(Debug, Subcommand)]
pub enum EdgesCommand {
    /// Lists edges: state, transport, applied hash, last seen, errors.
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
            if structured(global.output, &edge)? {
                return Ok(());
            }
            vec![edge]
        }
    };
    print(&edges);
    Ok(())
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
        "ERRORS",
    ]);
    for edge in edges {
        let state = EdgeState::try_from(edge.state).unwrap_or(EdgeState::Unspecified);
        let transport = Transport::try_from(edge.transport).unwrap_or(Transport::Unspecified);
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
            state
                .as_str_name()
                .trim_start_matches("EDGE_STATE_")
                .to_lowercase(),
            transport
                .as_str_name()
                .trim_start_matches("TRANSPORT_")
                .to_lowercase(),
            short(&edge.applied_hash),
            if edge.desired_hash.is_empty() {
                "-"
            } else if edge.applied_hash == edge.desired_hash {
                "yes"
            } else {
                "no"
            }
            .into(),
            output::time(edge.last_seen_unix_ms),
            if errors.is_empty() {
                "-".into()
            } else {
                errors.join(" | ")
            },
        ]);
    }
    table.print();
}

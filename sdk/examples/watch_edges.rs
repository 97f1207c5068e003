//! Prints the fleet every few seconds: each edge's state, transport and
//! whether it runs the policy set it should.
//!
//! ```sh
//! TERO_TOKEN=$(cat tero-data/admin-token) \
//!   cargo run -p tero-sdk --features client --example watch_edges -- http://127.0.0.1:7070
//! ```

use std::time::Duration;

use tero_sdk::client::Client;
use tero_sdk::proto::controlplane::{EdgeState, ListEdgesRequest, Transport};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:7070".into());
    let token = std::env::var("TERO_TOKEN").unwrap_or_default();
    let client = Client::connect(&endpoint)?.with_token(token);
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let edges = client.list_all_edges(ListEdgesRequest::default()).await?;
        println!("{} edge(s)", edges.len());
        for edge in edges {
            let state = EdgeState::try_from(edge.state).unwrap_or(EdgeState::Unspecified);
            let transport = Transport::try_from(edge.transport).unwrap_or(Transport::Unspecified);
            let in_sync = if edge.applied_hash == edge.desired_hash {
                "in sync"
            } else {
                "pending"
            };
            println!(
                "  {:<32} {:<16} {:<10} {:<7} {in_sync}",
                edge.instance_id,
                edge.service_name,
                state.as_str_name().trim_start_matches("EDGE_STATE_"),
                transport.as_str_name().trim_start_matches("TRANSPORT_"),
            );
        }
    }
}

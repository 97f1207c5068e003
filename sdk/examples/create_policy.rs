//! Creates (or updates) a policy that drops debug metrics of one service.
//!
//! ```sh
//! TERO_TOKEN=$(cat tero-data/admin-token) \
//!   cargo run -p tero-sdk --features client --example create_policy -- http://127.0.0.1:7070 checkout
//! ```

use tero_sdk::client::{Client, ClientError};
use tero_sdk::policy::{Format, parse_policies};
use tero_sdk::proto::controlplane::{
    CreatePolicyRequest, Scope, ScopeMatcher, ScopeOperator, UpdatePolicyRequest,
};

const POLICY: &str = r#"
policies:
  - id: drop-debug-metrics
    name: Drop debug metrics
    metric:
      match:
        - metric_field: name
          starts_with: debug_
      keep: false
"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let endpoint = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:7070".into());
    let service = args.next().unwrap_or_else(|| "checkout".into());
    let token = std::env::var("TERO_TOKEN").unwrap_or_default();
    let client = Client::connect(&endpoint)?.with_token(token);

    // The same loader and validation the control plane uses.
    let loaded = parse_policies(POLICY, Format::Yaml)?;
    let policy = loaded
        .policies
        .into_iter()
        .next()
        .ok_or("no policy in the document")?;
    let scope = Scope {
        matchers: vec![ScopeMatcher {
            key: "service.name".into(),
            operator: ScopeOperator::In as i32,
            values: vec![service.clone()],
        }],
    };

    let created = client
        .create_policy(CreatePolicyRequest {
            policy: Some(policy.clone()),
            scope: Some(scope.clone()),
            reason: "example: drop debug metrics".into(),
        })
        .await;
    let managed = match created {
        Ok(managed) => managed,
        // Already there: update it, naming the revision we read.
        Err(ClientError::AlreadyExists { .. }) => {
            let current = client.get_policy(&policy.id).await?;
            client
                .update_policy(UpdatePolicyRequest {
                    policy: Some(policy),
                    scope: Some(scope),
                    expected_revision: current.revision,
                    reason: "example: drop debug metrics".into(),
                })
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    let id = managed.policy.map(|p| p.id).unwrap_or_default();
    println!(
        "{id} at revision {} for service {service}",
        managed.revision
    );
    Ok(())
}

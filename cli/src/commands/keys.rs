//! `tero keys create|list|revoke`: edge API keys.

use clap::Subcommand;
use tero_sdk::proto::controlplane::ApiKey;

use crate::Global;
use crate::output::{self, Table, structured};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Creates a key; its secret is printed once and stored nowhere.
    Create { name: String },
    /// Lists keys (never their secrets).
    List {
        #[arg(long)]
        include_revoked: bool,
    },
    /// Revokes a key: edges using it are refused at once, on every replica.
    Revoke { id: String },
}

pub async fn run(cmd: KeysCommand, global: &Global) -> anyhow::Result<()> {
    let client = global.client()?;
    match cmd {
        KeysCommand::Create { name } => {
            let created = client.create_api_key(&name).await?;
            if !structured(global.output, &created)? {
                let id = created.key.as_ref().map(|k| k.id.as_str()).unwrap_or("");
                crate::outln!("key {id} ({name}) created; its secret, shown only now:");
                crate::outln!("{}", created.secret);
            }
        }
        KeysCommand::List { include_revoked } => {
            let keys = client.list_api_keys(include_revoked).await?;
            if !structured(global.output, &keys)? {
                print(&keys);
            }
        }
        KeysCommand::Revoke { id } => {
            let key = client.revoke_api_key(&id).await?;
            if !structured(global.output, &key)? {
                crate::outln!("key {} ({}) revoked", key.id, key.name);
            }
        }
    }
    Ok(())
}

fn print(keys: &[ApiKey]) {
    let mut table = Table::new(&["ID", "NAME", "PREFIX", "CREATED", "LAST USED", "REVOKED"]);
    for key in keys {
        table.row(vec![
            key.id.clone(),
            key.name.clone(),
            key.prefix.clone(),
            output::time(key.created_at_unix_ms),
            output::time(key.last_used_unix_ms),
            output::time(key.revoked_at_unix_ms),
        ]);
    }
    table.print();
}

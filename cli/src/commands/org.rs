//! `credledger org …`: organizations.

use clap::{Args, Subcommand};
use serde_json::json;

use crate::client::{Api, CliResult, Global, output};

#[derive(Debug, Args)]
pub struct OrgArgs {
    #[command(subcommand)]
    command: OrgCommand,
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// Create an organization and its first owner (server-admin token); the owner's token is shown
    /// once.
    ///
    /// Example: credledger org create --name acme --owner-email ops@acme.example
    Create {
        /// A lowercase slug, e.g. `acme`.
        #[arg(long)]
        name: String,
        /// The email of the organization's first owner.
        #[arg(long)]
        owner_email: String,
    },
    /// Show the organization (`--org`, else the credential's own).
    ///
    /// Example: credledger org get --org ORG_ID
    Get,
}

pub async fn run(global: &Global, args: OrgArgs) -> CliResult<()> {
    let api = Api::connect(global).await?;
    match args.command {
        OrgCommand::Create { name, owner_email } => {
            let created = api.post("/v1/orgs", Some(json!({ "name": name, "ownerEmail": owner_email }))).await?;
            output::say(global, "✓ Organization created");
            output::secret(global, "Owner token", &created["ownerToken"]);
            output::say(global, "⚠ Store it now: it cannot be shown again. Hand it to the owner.");
            output::object(global, &created);
        }
        OrgCommand::Get => {
            let org = api.org().await?;
            output::object(global, &api.get(&format!("/v1/orgs/{org}")).await?);
        }
    }
    Ok(())
}

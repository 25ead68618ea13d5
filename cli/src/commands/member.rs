//! `credledger member …`: the humans of an organization.

use clap::{Args, Subcommand};
use serde_json::json;

use crate::client::{Api, CliResult, Global, output};

#[derive(Debug, Args)]
pub struct MemberArgs {
    #[command(subcommand)]
    command: MemberCommand,
}

/// Columns of `member list`.
const COLUMNS: &[&str] = &["id", "email", "role", "removed"];

/// The roles a member can have.
const ROLES: [&str; 3] = ["owner", "admin", "member"];

#[derive(Debug, Subcommand)]
enum MemberCommand {
    /// List the organization's members, removed ones included.
    ///
    /// Example: credledger member list
    List,
    /// Add a member; its first personal access token (valid 7 days) is shown once, to hand over.
    ///
    /// Example: credledger member add dev@acme.example --role admin
    Add {
        /// The new member's email.
        email: String,
        /// The member's role; only owners add owners.
        #[arg(long, default_value = "member", value_parser = ROLES)]
        role: String,
    },
    /// Change a member's role; an organization keeps at least one owner.
    ///
    /// Example: credledger member set-role MEMBER_ID --role owner
    SetRole {
        /// The member's id or email.
        id: String,
        /// The new role.
        #[arg(long, value_parser = ROLES)]
        role: String,
    },
    /// Remove a member: every credential it owns gets flagged and its PATs are revoked.
    ///
    /// Example: credledger member remove MEMBER_ID
    Remove {
        /// The member's id or email.
        id: String,
    },
}

pub async fn run(global: &Global, args: MemberArgs) -> CliResult<()> {
    let api = Api::connect(global).await?;
    let org = api.org().await?;
    let base = format!("/v1/orgs/{org}/members");
    match args.command {
        MemberCommand::List => output::list(global, &api.get(&base).await?, COLUMNS),
        MemberCommand::Add { email, role } => {
            let added = api.post(&base, Some(json!({ "email": email, "role": role }))).await?;
            output::say(global, &format!("✓ Member {email} added as {role}"));
            output::secret(global, "Initial token", &added["initialToken"]);
            output::say(
                global,
                "⚠ Store it now: it cannot be shown again. It expires in 7 days; hand it to the member, \
                 who should create its own PAT (credledger pat create) and revoke this one.",
            );
            output::object(global, &added);
        }
        MemberCommand::SetRole { id, role } => {
            let id = api.resolve(&base, "email", &id, "member").await?;
            let member = api.patch(&format!("{base}/{id}"), json!({ "role": role })).await?;
            output::say(global, &format!("✓ Role changed to {role}"));
            output::object(global, &member);
        }
        MemberCommand::Remove { id } => {
            let id = api.resolve(&base, "email", &id, "member").await?;
            let member = api.delete(&format!("{base}/{id}")).await?;
            output::say(global, "✓ Member removed");
            output::say(
                global,
                "⚠ Its PATs are revoked, and every credential it owns gets flagged `owner_removed`: transfer those \
                 that must keep working (credledger token list --flagged).",
            );
            output::object(global, &member);
        }
    }
    Ok(())
}

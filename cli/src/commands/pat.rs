//! `credledger pat …`: personal access tokens, the credentials of humans.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{Api, CliError, CliResult, Global, output};
use crate::commands::token::expiry_days;

#[derive(Debug, Args)]
pub struct PatArgs {
    #[command(subcommand)]
    command: PatCommand,
}

/// Columns of `pat list`.
const COLUMNS: &[&str] = &["id", "name", "state", "tokenPrefix", "createdAt", "expiresAt"];

#[derive(Debug, Subcommand)]
enum PatCommand {
    /// List a member's personal access tokens (prefixes, never secrets).
    ///
    /// Example: credledger pat list --member MEMBER_ID
    List {
        /// The member (owners and admins); default: the caller.
        #[arg(long)]
        member: Option<String>,
    },
    /// Create a personal access token for yourself; its value is shown once.
    ///
    /// Example: credledger pat create --name laptop --expires 30d
    Create {
        /// A label, e.g. `laptop` (default: `personal token`).
        #[arg(long)]
        name: Option<String>,
        /// When it expires: a number of days with its unit (`30d`), or `never`.
        #[arg(long, default_value = "never", value_name = "DAYS|never")]
        expires: String,
    },
    /// Revoke a personal access token at once.
    ///
    /// Example: credledger pat revoke TOKEN_ID --member MEMBER_ID
    Revoke {
        /// The token's id.
        id: String,
        /// The member the token belongs to (owners and admins); default: the caller.
        #[arg(long)]
        member: Option<String>,
    },
}

pub async fn run(global: &Global, args: PatArgs) -> CliResult<()> {
    let api = Api::connect(global).await?;
    let me = api.get("/v1/whoami").await?;
    let org = match (&global.org, me["orgId"].as_str()) {
        (Some(org), _) => org.clone(),
        (None, Some(org)) => org.to_owned(),
        (None, None) => {
            return Err(CliError::usage(
                "the credential in use belongs to no organization: pass --org or set CREDLEDGER_ORG",
            ));
        }
    };
    let base = format!("/v1/orgs/{org}/members");
    match args.command {
        PatCommand::List { member } => {
            let member = member_or_caller(member, &me)?;
            output::list(global, &api.get(&format!("{base}/{member}/tokens")).await?, COLUMNS);
        }
        PatCommand::Create { name, expires } => {
            let member = me["memberId"].as_str().ok_or_else(|| {
                CliError::usage("members create their own PATs: use a member's PAT (credledger login)")
            })?;
            let mut body = json!({ "expiresInDays": expiry_days("expires", &expires)? });
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            let created = api.post(&format!("{base}/{member}/tokens"), Some(body)).await?;
            output::say(global, "✓ Personal access token created");
            output::secret(global, "Token", &created["token"]);
            output::say(global, "⚠ Store it now: it cannot be shown again.");
            output::object(global, &created);
        }
        PatCommand::Revoke { id, member } => {
            let member = member_or_caller(member, &me)?;
            let token = api.delete(&format!("{base}/{member}/tokens/{id}")).await?;
            output::say(global, "✓ Personal access token revoked");
            output::object(global, &token);
        }
    }
    Ok(())
}

/// `--member`, else the member the credential in use belongs to (from `GET /v1/whoami`; the
/// server refuses machine credentials itself).
fn member_or_caller(member: Option<String>, me: &Value) -> CliResult<String> {
    match (member, me["memberId"].as_str()) {
        (Some(member), _) => Ok(member),
        (None, Some(member)) => Ok(member.to_owned()),
        (None, None) => Err(CliError::usage("the credential in use is no member's: pass --member")),
    }
}

//! `credledger service-credential …`: OAuth2 confidential clients for pipelines (owners only).

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{Api, CliResult, Global, output};
use crate::commands::token::{Conditions, SCOPES, expiry_days, seconds};

#[derive(Debug, Args)]
pub struct ServiceCredentialArgs {
    #[command(subcommand)]
    command: ServiceCredentialCommand,
}

/// Columns of `service-credential list`.
const COLUMNS: &[&str] =
    &["id", "clientId", "name", "state", "owner", "expiresAt", "lastUsedAt", "useCount", "flagged"];

#[derive(Debug, Subcommand)]
enum ServiceCredentialCommand {
    /// Create a service credential; its client secret is shown once.
    ///
    /// Example: credledger service-credential create --name deploy-bot --scopes credledger-api/read --expires 90d
    Create {
        /// What it is for, e.g. the pipeline that uses it.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes its access tokens may carry [default: read and write].
        #[arg(long, value_delimiter = ',', value_parser = SCOPES)]
        scopes: Vec<String>,
        /// When it expires: a number of days with its unit (`90d`), or `never`.
        #[arg(long, default_value = "never", value_name = "DAYS|never")]
        expires: String,
        /// The owning member (id or email); you by default.
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        conditions: Conditions,
    },
    /// List service credentials.
    ///
    /// Example: credledger service-credential list -o json
    List,
    /// Show one service credential with its last use.
    ///
    /// Example: credledger service-credential get CREDENTIAL_ID
    Get {
        /// The service credential's id, or its name where no other one that is not revoked has it.
        id: String,
    },
    /// Replace the client secret; the new one is shown once.
    ///
    /// Example: credledger service-credential rotate CREDENTIAL_ID --grace 10m
    Rotate {
        /// The service credential's id, or its name where no other one that is not revoked has it.
        id: String,
        /// Keep the old secret working this long (e.g. `10m`, at most `24h`); at once by default.
        #[arg(long)]
        grace: Option<String>,
    },
    /// Revoke at once: the secret and every access token issued with it stop working.
    ///
    /// Example: credledger service-credential revoke CREDENTIAL_ID
    Revoke {
        /// The service credential's id, or its name where no other one that is not revoked has it.
        id: String,
    },
    /// Give a service credential to another member.
    ///
    /// Example: credledger service-credential transfer CREDENTIAL_ID --to user@example.com
    Transfer {
        /// The service credential's id, or its name where no other one that is not revoked has it.
        id: String,
        /// The new owner: a member id or email.
        #[arg(long)]
        to: String,
    },
}

/// The two variables a CI system needs, after the secret was shown.
fn say_ci_lines(global: &Global, credential: &Value) {
    output::say(global, "Set these in your CI/CD secrets:");
    output::say(global, &format!("CREDLEDGER_CLIENT_ID={}", credential["clientId"].as_str().unwrap_or_default()));
    output::secret_line(
        global,
        &format!("CREDLEDGER_CLIENT_SECRET={}", credential["clientSecret"].as_str().unwrap_or_default()),
    );
}

pub async fn run(global: &Global, args: ServiceCredentialArgs) -> CliResult<()> {
    let api = Api::connect(global).await?;
    let org = api.org().await?;
    let base = format!("/v1/service-credentials/{org}");
    match args.command {
        ServiceCredentialCommand::Create { name, scopes, expires, owner, conditions } => {
            let mut body = json!({ "name": name, "expiresInDays": expiry_days("expires", &expires)? });
            if !scopes.is_empty() {
                body["scopes"] = json!(scopes);
            }
            if let Some(owner) = owner {
                body["owner"] = json!(owner);
            }
            if !conditions.is_empty() {
                body["conditions"] = conditions.to_json()?;
            }
            let created = api.post(&base, Some(body)).await?;
            output::say(global, "✓ Service credential created");
            say_ci_lines(global, &created);
            output::say(global, "⚠ The secret is shown once: store it now.");
            output::object(global, &created);
        }
        ServiceCredentialCommand::List => {
            let mut items = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut query = vec!["limit=500".to_owned()];
                if let Some(cursor) = &cursor {
                    query.push(format!("cursor={cursor}"));
                }
                let page = api.get(&format!("{base}?{}", query.join("&"))).await?;
                items.extend(page["items"].as_array().cloned().unwrap_or_default());
                match page["nextCursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => break,
                }
            }
            output::owners_as_emails(global, &api, &org, &mut items).await;
            output::list(global, &json!({ "items": items }), COLUMNS);
        }
        ServiceCredentialCommand::Get { id } => {
            let id = api.resolve(&base, "name", &id, "service credential").await?;
            output::object_with_owner(global, &api, &org, api.get(&format!("{base}/{id}")).await?).await;
        }
        ServiceCredentialCommand::Rotate { id, grace } => {
            let id = api.resolve(&base, "name", &id, "service credential").await?;
            let grace = grace.map(|grace| seconds("grace", &grace)).transpose()?;
            let body = grace.map(|s| json!({ "gracePeriodSeconds": s }));
            let rotated = api.post(&format!("{base}/{id}/rotate"), body).await?;
            output::say(global, "✓ Client secret rotated");
            say_ci_lines(global, &rotated);
            output::say(global, "⚠ The secret is shown once: store it now.");
            match grace.filter(|s| *s > 0) {
                Some(grace) => output::say(
                    global,
                    &format!("⚠ The old secret keeps working until about {}. Update your CI/CD secrets.", until(grace)),
                ),
                None => output::say(global, "⚠ The old secret is now revoked. Update your CI/CD secrets."),
            }
            output::object(global, &rotated);
        }
        ServiceCredentialCommand::Revoke { id } => {
            let id = api.resolve(&base, "name", &id, "service credential").await?;
            let credential = api.post(&format!("{base}/{id}/revoke"), None).await?;
            output::say(global, "✓ Service credential revoked");
            output::object(global, &credential);
        }
        ServiceCredentialCommand::Transfer { id, to } => {
            let id = api.resolve(&base, "name", &id, "service credential").await?;
            let credential = api.post(&format!("{base}/{id}/transfer"), Some(json!({ "to": to }))).await?;
            output::say(global, &format!("✓ Service credential transferred to {to}"));
            output::object(global, &credential);
        }
    }
    Ok(())
}

/// When a grace period of `seconds` from now ends, by this machine's clock (RFC 3339, UTC).
fn until(seconds: u32) -> String {
    let at = chrono::Utc::now() + chrono::TimeDelta::seconds(i64::from(seconds));
    credledger_domain::time_format::format(&chrono::SubsecRound::trunc_subsecs(at, 0))
        .unwrap_or_else(|| format!("{seconds} s from now"))
}

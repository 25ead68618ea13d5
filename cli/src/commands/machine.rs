//! `credledger machine …`: machine identities. The Ed25519 key pair is generated here; the server
//! only ever receives the public key. The private key goes into a machine key string
//! (`credledger-machine-v1:…`), saved 0600 in the user's config directory and printed once for CI.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Args, Subcommand};
use credledger_domain::machine_key::MachineKey;
use credledger_domain::names::Slug;
use credledger_domain::{CredentialId, OrgId};
use serde_json::{Value, json};

use crate::client::{Api, CliError, CliResult, Format, Global, credentials, output};
use crate::commands::token::Conditions;

#[derive(Debug, Args)]
pub struct MachineArgs {
    #[command(subcommand)]
    command: MachineCommand,
}

/// Columns of `machine list`.
const COLUMNS: &[&str] = &["name", "environment", "state", "id", "lastUsedAt", "lastUsedIp"];

#[derive(Debug, Subcommand)]
enum MachineCommand {
    /// Create a machine: a key pair is generated here and only its public key is registered.
    ///
    /// The private key is saved (0600) to the config directory's `machines/NAME` and printed as the
    /// CREDLEDGER_MACHINE_KEY line to put in your CI/CD secrets.
    ///
    /// Example: credledger machine create deploy-prod --project my-api --env production
    Create {
        /// Lowercase letters, digits and dashes; unique among machines that are not revoked.
        name: String,
        /// The project (id or name).
        #[arg(long)]
        project: String,
        /// One of the project's environments.
        #[arg(long = "env")]
        env: String,
        /// The owning member (id or email); you by default.
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        conditions: Conditions,
    },
    /// List machines.
    ///
    /// Example: credledger machine list
    List,
    /// Show one machine with its last use.
    ///
    /// Example: credledger machine get MACHINE_ID
    Get {
        /// The machine's id, or the name of a machine that is not revoked.
        id: String,
    },
    /// Revoke a machine at once: new exchanges fail, and its access tokens stop working.
    ///
    /// Example: credledger machine revoke MACHINE_ID
    Revoke {
        /// The machine's id, or the name of a machine that is not revoked.
        id: String,
    },
    /// Replace a machine's key pair; the old key stops working at once.
    ///
    /// The new private key is saved (0600) to the config directory's `machines/NAME.{unix time}`.
    ///
    /// Example: credledger machine rotate-key MACHINE_ID
    RotateKey {
        /// The machine's id, or the name of a machine that is not revoked.
        id: String,
    },
    /// Give a machine to another member.
    ///
    /// Example: credledger machine transfer MACHINE_ID --to user@example.com
    Transfer {
        /// The machine's id, or the name of a machine that is not revoked.
        id: String,
        /// A member id or email.
        #[arg(long)]
        to: String,
    },
}

pub async fn run(global: &Global, args: MachineArgs) -> CliResult<()> {
    let api = Api::connect(global).await?;
    let org = api.org().await?;
    let base = format!("/v1/machines/{org}");
    match args.command {
        MachineCommand::Create { name, project, env, owner, conditions } => {
            let org_id = org_id(&org)?;
            Slug::parse(&name).map_err(|error| CliError::usage(format!("machine name `{name}`: {error}")))?;
            // Checked before registering, so that a machine is never left without its key.
            let path = new_key_file(&name)?;
            let (seed, public_key) = generate()?;
            let mut body = json!({ "name": name, "project": project, "environment": env, "publicKey": public_key });
            if let Some(owner) = owner {
                body["owner"] = json!(owner);
            }
            if has_conditions(&conditions) {
                body["conditions"] = conditions.to_json()?;
            }
            let machine = api.post(&base, Some(body)).await?;
            let key = MachineKey::new(org_id, machine_id(&machine)?, seed).encode();
            let saved = credentials::create_private(&path, key.as_bytes());
            output::say(
                global,
                &format!("✓ Created machine {name} (ID: {})", machine["id"].as_str().unwrap_or_default()),
            );
            show_key(global, machine, &key, &path, saved)?;
        }
        MachineCommand::List => {
            output::list(global, &api.get(&base).await?, COLUMNS);
        }
        MachineCommand::Get { id } => {
            let id = resolve(&api, &base, &id).await?;
            output::object_with_owner(global, &api, &org, api.get(&format!("{base}/{id}")).await?).await;
        }
        MachineCommand::Revoke { id } => {
            let id = resolve(&api, &base, &id).await?;
            let machine = api.post(&format!("{base}/{id}/revoke"), None).await?;
            output::say(
                global,
                &format!("✓ Revoked machine {} (ID: {id})", machine["name"].as_str().unwrap_or_default()),
            );
            output::object(global, &machine);
        }
        MachineCommand::RotateKey { id } => {
            let org_id = org_id(&org)?;
            let id = resolve(&api, &base, &id).await?;
            let current = api.get(&format!("{base}/{id}")).await?;
            let name = current["name"].as_str().unwrap_or_default().to_owned();
            Slug::parse(&name).map_err(|_| CliError::server(format!("the server named the machine `{name}`")))?;
            let stamp = chrono::Utc::now().timestamp();
            let path = new_key_file(&format!("{name}.{stamp}"))?;
            let (seed, public_key) = generate()?;
            let machine =
                api.post(&format!("{base}/{id}/rotate-key"), Some(json!({ "publicKey": public_key }))).await?;
            let key = MachineKey::new(org_id, machine_id(&machine)?, seed).encode();
            let saved = credentials::create_private(&path, key.as_bytes());
            output::say(global, &format!("✓ Rotated the key of machine {name} (ID: {id})"));
            output::say(global, "⚠ The old key stopped working at once. Update your CI/CD secrets.");
            show_key(global, machine, &key, &path, saved)?;
        }
        MachineCommand::Transfer { id, to } => {
            let id = resolve(&api, &base, &id).await?;
            let machine = api.post(&format!("{base}/{id}/transfer"), Some(json!({ "to": to }))).await?;
            output::say(global, &format!("✓ Machine transferred to {to}"));
            output::object(global, &machine);
        }
    }
    Ok(())
}

/// Whether any conditional access flag was given.
fn has_conditions(conditions: &Conditions) -> bool {
    !conditions.ip_allow.is_empty() || !conditions.time_windows.is_empty() || conditions.user_agent.is_some()
}

fn org_id(org: &str) -> CliResult<OrgId> {
    OrgId::parse(org).map_err(|error| CliError::usage(format!("--org: {error}: machine keys need the organization id")))
}

fn machine_id(machine: &Value) -> CliResult<CredentialId> {
    machine["id"]
        .as_str()
        .and_then(|id| CredentialId::parse(id).ok())
        .ok_or_else(|| CliError::server("the server answered without the machine's id"))
}

/// A fresh Ed25519 key pair: the 32-byte private seed, and the public key as base64url.
fn generate() -> CliResult<([u8; 32], String)> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|error| CliError::server(format!("generating a key pair: {error}")))?;
    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    Ok((seed, URL_SAFE_NO_PAD.encode(public.as_bytes())))
}

/// `{config dir}/machines/{file}`, which must not exist yet (a key is never overwritten); the
/// directory is made now, so that a machine is not registered when its key cannot be saved.
fn new_key_file(file: &str) -> CliResult<PathBuf> {
    let dir = credentials::config_dir()
        .ok_or_else(|| CliError::usage("no configuration directory for the private key: set CREDLEDGER_CONFIG_DIR"))?;
    let machines = dir.join("machines");
    std::fs::create_dir_all(&machines)
        .map_err(|error| CliError::usage(format!("creating {}: {error}", machines.display())))?;
    let path = machines.join(file);
    if std::fs::symlink_metadata(&path).is_ok() {
        return Err(CliError::usage(format!(
            "{} exists: a machine key is never overwritten; move it away or choose another name",
            path.display()
        )));
    }
    Ok(path)
}

/// Says where the private key was saved and prints the line for CI. The machine is registered by
/// now, so if the file could not be written the key is still printed (on standard error too)
/// rather than lost, and the command fails.
fn show_key(global: &Global, mut machine: Value, key: &str, path: &Path, saved: CliResult<()>) -> CliResult<()> {
    match &saved {
        Ok(()) => {
            output::say(global, &format!("✓ Private key saved to {}", path.display()));
            machine["keyFile"] = json!(path.display().to_string());
        }
        Err(error) => {
            eprintln!("⚠ The private key was not saved ({}); copy it now, it cannot be shown again:", error.message);
            eprintln!("CREDLEDGER_MACHINE_KEY={key}");
        }
    }
    let line = format!("CREDLEDGER_MACHINE_KEY={key}");
    match (global.quiet, global.output, output::format(global)) {
        // Only ids on standard output: the key goes to standard error rather than being lost.
        (true, ..) => eprintln!("{line}"),
        (false, _, Format::Table) => {
            output::say(global, "");
            output::say(global, "To use this machine, set:");
            output::secret_line(global, &line);
        }
        // JSON because standard output is a pipe: the person at the terminal sees the line on
        // standard error, whole.
        (false, None, Format::Json) => {
            eprintln!();
            eprintln!("To use this machine, set:");
            eprintln!("{line}");
        }
        // JSON asked for: the key is only in the document (standard error often lands in logs).
        (false, Some(_), Format::Json) => {}
    }
    machine["machineKey"] = json!(key);
    output::object(global, &machine);
    saved
}

/// A machine id as given, or the id of the machine that is not revoked and has this name.
async fn resolve(api: &Api, base: &str, machine: &str) -> CliResult<String> {
    api.resolve(base, "name", machine, "machine").await
}

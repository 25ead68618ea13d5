//! `credledger signing-key rotate`: makes a new access-token signing key current on a running
//! server. Tokens signed with the old key keep working until they expire.

use clap::{Args, Subcommand};

use crate::client::{Api, CliResult, Global, output};

#[derive(Debug, Args)]
pub struct SigningKeyArgs {
    #[command(subcommand)]
    command: SigningKeyCommand,
}

#[derive(Debug, Subcommand)]
enum SigningKeyCommand {
    /// Rotate the key that signs access tokens (server-admin token required).
    ///
    /// Example: CREDLEDGER_TOKEN=$ADMIN_TOKEN credledger signing-key rotate
    Rotate,
}

pub async fn run(global: &Global, args: SigningKeyArgs) -> CliResult<()> {
    let SigningKeyCommand::Rotate = args.command;
    let api = Api::connect(global).await?;
    let rotated = api.post("/v1/signing-keys/rotate", None).await?;
    let kid = rotated["kid"].as_str().unwrap_or_default();
    let published = rotated["jwks"]["keys"].as_array().map_or(0, Vec::len);
    output::say(global, &format!("✓ Signing key rotated: new key {kid}"));
    output::say(
        global,
        &format!("  {published} key(s) published; tokens signed with the old key keep working until they expire."),
    );
    output::object(global, &rotated);
    Ok(())
}

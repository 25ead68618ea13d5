//! `credledger signing-key rotate`: makes a new access-token signing key current on a running
//! server. Tokens signed with the old key keep working until they expire.

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct SigningKeyArgs {
    #[command(subcommand)]
    command: SigningKeyCommand,
}

#[derive(Debug, Subcommand)]
enum SigningKeyCommand {
    /// Rotate the key that signs access tokens (server-admin token required).
    Rotate {
        /// The server's URL.
        #[arg(long, env = "CREDLEDGER_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The server-admin token.
        #[arg(long, env = "CREDLEDGER_TOKEN", hide_env_values = true)]
        token: String,
    },
}

pub fn run(args: SigningKeyArgs) -> anyhow::Result<()> {
    let SigningKeyCommand::Rotate { url, token } = args.command;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let endpoint = format!("{}/v1/signing-keys/rotate", url.trim_end_matches('/'));
        let response = reqwest::Client::new()
            .post(&endpoint)
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("calling {endpoint}"))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            let detail = body["detail"].as_str().unwrap_or("no detail");
            let code = body["code"].as_str().unwrap_or("error");
            bail!("the server refused the rotation ({status}, {code}): {detail}");
        }
        let kid = body["kid"].as_str().unwrap_or_default();
        let published = body["jwks"]["keys"].as_array().map_or(0, Vec::len);
        println!("✓ Signing key rotated: new key {kid}");
        println!("  {published} key(s) published; tokens signed with the old key keep working until they expire.");
        Ok(())
    })
}

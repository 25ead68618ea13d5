//! The `credledger` binary: `serve` runs the server; client subcommands drive its API.

mod serve;
mod signing_key;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "credledger", version, about = "An event-sourced credential ledger")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: the ledger, its projections and the HTTP API.
    Serve(serve::ServeArgs),
    /// Manage the key that signs access tokens.
    SigningKey(signing_key::SigningKeyArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::SigningKey(args) => signing_key::run(args),
    }
}

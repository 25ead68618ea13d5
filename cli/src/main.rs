//! The `credledger` binary: `serve` runs the server; client subcommands drive its API.

mod client;
mod commands;
mod serve;
mod signing_key;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "credledger", version, about = "An event-sourced credential ledger")]
struct Cli {
    #[command(flatten)]
    global: client::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: the ledger, its projections and the HTTP API.
    Serve(serve::ServeArgs),
    /// Manage the key that signs access tokens.
    SigningKey(signing_key::SigningKeyArgs),
    /// Machine tokens: create, list, get, update, disable, enable, revoke, roll, transfer.
    Token(commands::token::TokenArgs),
    /// Organizations: create (server admin), get.
    Org(commands::org::OrgArgs),
    /// Members of the organization: list, add, set-role, remove.
    Member(commands::member::MemberArgs),
    /// Projects and their environments: list, create, add-env.
    Project(commands::project::ProjectArgs),
    /// Personal access tokens: list, create, revoke.
    Pat(commands::pat::PatArgs),
    /// Service credentials (OAuth2 clients, owners only): create, list, get, rotate, revoke, transfer.
    ServiceCredential(commands::service_credential::ServiceCredentialArgs),
    /// Machine identities (key pairs made here): create, list, get, revoke, rotate-key, transfer.
    Machine(commands::machine::MachineArgs),
    /// Print a shell completion script for bash, zsh or fish.
    ///
    /// Example: credledger completions zsh > ~/.zfunc/_credledger
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Save a personal access token for later commands (0600, in the user's config directory).
    Login(commands::session::LoginArgs),
    /// Forget the saved login.
    Logout,
    /// Show the credential in use.
    Whoami,
    /// TEMP wiring until `audit` lands: verify the ledger.
    Audit {
        #[command(subcommand)]
        command: TempAudit,
    },
}

/// TEMP wiring until `audit` lands.
#[derive(Debug, Subcommand)]
enum TempAudit {
    /// Verify the ledger: an export offline, or the server's latest checkpoint (monitor mode).
    Verify(commands::audit_verify::VerifyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => exit_code(serve::run(args)),
        Command::SigningKey(args) => client::run(&cli.global, signing_key::run(&cli.global, args)),
        Command::Token(args) => client::run(&cli.global, commands::token::run(&cli.global, args)),
        Command::Org(args) => client::run(&cli.global, commands::org::run(&cli.global, args)),
        Command::Member(args) => client::run(&cli.global, commands::member::run(&cli.global, args)),
        Command::Project(args) => client::run(&cli.global, commands::project::run(&cli.global, args)),
        Command::Pat(args) => client::run(&cli.global, commands::pat::run(&cli.global, args)),
        Command::ServiceCredential(args) => {
            client::run(&cli.global, commands::service_credential::run(&cli.global, args))
        }
        Command::Machine(args) => client::run(&cli.global, commands::machine::run(&cli.global, args)),
        Command::Completions { shell } => {
            commands::completions::run(shell, &mut <Cli as clap::CommandFactory>::command())
        }
        Command::Login(args) => client::run(&cli.global, commands::session::login(&cli.global, args)),
        Command::Logout => client::run(&cli.global, async { commands::session::logout(&cli.global) }),
        Command::Whoami => client::run(&cli.global, commands::session::whoami(&cli.global)),
        Command::Audit { command: TempAudit::Verify(args) } => {
            client::run(&cli.global, commands::audit_verify::run(&cli.global, args))
        }
    }
}

fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(client::exit::SERVER)
        }
    }
}

//! The `credledger` binary: `serve` runs the server; client subcommands drive its API.

mod client;
mod commands;
mod http_server;
mod serve;
mod signing_key;
mod store_admin;

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
    /// Create or upgrade an event store's tables (servers also do this when they start).
    ///
    /// Example: credledger migrate --store postgres://credledger@db.internal/credledger
    Migrate(store_admin::MigrateArgs),
    /// Copy a whole ledger between event stores, positions, hashes and checkpoints intact, then
    /// verify the copy.
    ///
    /// Example: credledger copy --from sqlite://./credledger-data/events.db --to postgres://credledger@db.internal/credledger
    Copy(store_admin::CopyArgs),
    /// Go on from a log that lost acknowledged events (restored from an older copy, or its last
    /// writes lost): record the decision in the ledger and rebuild this node's read models.
    /// Run it with the server stopped.
    ///
    /// Example: credledger accept-rollback --data-dir /var/lib/credledger --reason "restored from last night's backup"
    AcceptRollback(store_admin::AcceptRollbackArgs),
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
    /// Audit: replay the inventory as of a past moment, verify the ledger.
    Audit(commands::audit::AuditArgs),
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
    /// Print a link that signs you in to the web dashboard: it works once, within a minute.
    ///
    /// Example: credledger dashboard
    Dashboard,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => exit_code(serve::run(args)),
        Command::Migrate(args) => exit_code(store_admin::migrate(&args)),
        Command::Copy(args) => exit_code(store_admin::copy(&args)),
        Command::AcceptRollback(args) => exit_code(store_admin::accept_rollback(&args)),
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
        Command::Audit(args) => client::run(&cli.global, commands::audit::run(&cli.global, args)),
        Command::Completions { shell } => {
            commands::completions::run(shell, &mut <Cli as clap::CommandFactory>::command())
        }
        Command::Login(args) => client::run(&cli.global, commands::session::login(&cli.global, args)),
        Command::Logout => client::run(&cli.global, async { commands::session::logout(&cli.global) }),
        Command::Whoami => client::run(&cli.global, commands::session::whoami(&cli.global)),
        Command::Dashboard => client::run(&cli.global, commands::dashboard::run(&cli.global)),
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

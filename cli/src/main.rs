//! The `credledger` binary: `serve` runs the server; client subcommands drive its API.

mod client;
mod commands;
mod serve;
mod signing_key;
mod store_admin;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// One allocator for the server and the client: per request the server allocates and frees many
/// small buffers across its threads, which mimalloc serves from per-thread pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Serve(Box<serve::ServeArgs>),
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
    /// Audit: the trail (log), the inventory as of a past moment (replay), the verifiable ledger
    /// (key, checkpoint, export, verify).
    Audit(commands::audit::AuditArgs),
    /// Secrets of a project's environment: set, unset, push, list, history, reads.
    Secrets(commands::secrets::SecretsArgs),
    /// Print the values of an environment's secrets (the read is recorded in the ledger).
    ///
    /// Example: credledger pull --project api --env production --format dotenv > .env
    Pull(commands::secrets::PullArgs),
    /// Run a command with an environment's secrets in its environment; nothing is written to
    /// disk, and the command's exit code is this one's.
    ///
    /// Example: credledger run --project api --env production -- ./deploy.sh
    Run(commands::secrets::RunArgs),
    /// Access tokens for other services.
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// Print a shell completion script for bash, zsh or fish.
    ///
    /// Example: credledger completions zsh > ~/.zfunc/_credledger
    Completions {
        /// The shell.
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

#[derive(Debug, Subcommand)]
enum AuthCommand {
    /// Print a short-lived access token of the machine credential in use (client credentials or
    /// a machine key), for a service that verifies it against this server's JWKS.
    ///
    /// Example: curl -H "Authorization: Bearer $(credledger auth print-access-token)" https://internal.example/api
    PrintAccessToken,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => exit_code(serve::run(*args)),
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
        Command::Secrets(args) => client::run(&cli.global, commands::secrets::run(&cli.global, args)),
        Command::Pull(args) => client::run(&cli.global, commands::secrets::pull(&cli.global, args)),
        Command::Run(args) => client::run_for_code(&cli.global, commands::secrets::run_with(&cli.global, args)),
        Command::Auth { command: AuthCommand::PrintAccessToken } => {
            client::run(&cli.global, commands::secrets::print_access_token(&cli.global))
        }
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
            // A setting that cannot be used is the caller's to fix, like a bad flag.
            if error.downcast_ref::<serve::SettingsError>().is_some() {
                ExitCode::from(client::exit::USAGE)
            } else {
                ExitCode::from(client::exit::SERVER)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    /// Every subcommand, with the names leading to it.
    fn every_command(command: &clap::Command, path: &str, found: &mut Vec<(String, clap::Command)>) {
        for sub in command.get_subcommands() {
            let path = format!("{path} {}", sub.get_name());
            found.push((path.clone(), sub.clone()));
            every_command(sub, &path, found);
        }
    }

    #[test]
    fn every_option_and_argument_says_what_it_is() {
        let mut commands = vec![("credledger".to_owned(), Cli::command())];
        every_command(&Cli::command(), "credledger", &mut commands);
        let mut silent = Vec::new();
        for (path, command) in &commands {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_hide_set() && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    silent.push(format!("{path}: {}", arg.get_id()));
                }
            }
        }
        assert!(silent.is_empty(), "options and arguments without help text: {silent:#?}");
    }

    #[test]
    fn options_with_a_fixed_set_of_values_list_them() {
        let command = Cli::command();
        let values = |path: &[&str], arg: &str| -> Vec<String> {
            let mut command = &command;
            for name in path {
                command = command.find_subcommand(name).unwrap_or_else(|| panic!("no subcommand {name}"));
            }
            let arg = command.get_arguments().find(|a| a.get_id() == arg).unwrap_or_else(|| panic!("no {arg}"));
            arg.get_possible_values().iter().map(|value| value.get_name().to_owned()).collect()
        };
        assert_eq!(values(&["token", "list"], "state"), ["active", "disabled", "expired", "revoked"]);
        assert_eq!(values(&["token", "create"], "scopes"), ["credledger-api/read", "credledger-api/write"]);
        assert_eq!(values(&["audit", "log"], "outcome"), ["success", "denied"]);
        assert_eq!(values(&["audit", "replay"], "kind"), ["machine-tokens", "service-credentials", "machines", "all"]);
        assert_eq!(values(&["member", "add"], "role"), ["owner", "admin", "member"]);
        assert_eq!(values(&["serve"], "log_format"), ["text", "json"]);
        assert_eq!(values(&[], "output"), ["table", "json"]);
    }
}

//! `credledger secrets …`, `credledger pull` and `credledger run`: the secrets of a project's
//! environment, as people manage them and as pipelines use them. In machine mode with a machine
//! key, `--project` and `--env` default to the machine's own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::client::{Api, CliError, CliResult, Credentials, Global, output};

/// The environment a command works on.
#[derive(Debug, Args)]
pub struct Target {
    /// The project (its id or name) [default: the machine's own, with CREDLEDGER_MACHINE_KEY].
    #[arg(long, env = "CREDLEDGER_PROJECT", value_name = "PROJECT")]
    project: Option<String>,
    /// The environment (e.g. production) [default: the machine's own, with CREDLEDGER_MACHINE_KEY].
    #[arg(long = "env", env = "CREDLEDGER_ENV", value_name = "ENVIRONMENT")]
    environment: Option<String>,
}

#[derive(Debug, Args)]
pub struct SecretsArgs {
    #[command(subcommand)]
    command: SecretsCommand,
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Set one or more secrets (a new version).
    ///
    /// Example: credledger secrets set DATABASE_URL=postgres://… API_KEY=… --project api --env production
    Set {
        /// NAME=VALUE pairs; names are A-Z, 0-9 and _, not starting with a digit.
        #[arg(required = true, value_name = "NAME=VALUE")]
        pairs: Vec<String>,
        #[command(flatten)]
        target: Target,
        /// Why, recorded with the version.
        #[arg(long, short)]
        message: Option<String>,
    },
    /// Remove one or more secrets (a new version).
    ///
    /// Example: credledger secrets unset OLD_TOKEN --project api --env production
    Unset {
        /// The names to remove.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        #[command(flatten)]
        target: Target,
        /// Why, recorded with the version.
        #[arg(long, short)]
        message: Option<String>,
    },
    /// Set every secret of a dotenv file (`NAME=value` lines) as one new version.
    ///
    /// Example: credledger secrets push .env.production --project api --env production
    Push {
        /// The file to read (`-` for standard input).
        file: PathBuf,
        #[command(flatten)]
        target: Target,
        /// Make the file the whole set: names it lacks are removed.
        #[arg(long)]
        replace: bool,
        /// Why, recorded with the version.
        #[arg(long, short)]
        message: Option<String>,
    },
    /// The names of the latest version (never values; no read is recorded).
    ///
    /// Example: credledger secrets list --project api --env production
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Every version: who changed which names, when.
    ///
    /// Example: credledger secrets history --project api --env production
    History {
        #[command(flatten)]
        target: Target,
    },
    /// Every read: which credential read which version, when, from where.
    ///
    /// Example: credledger secrets reads --project api --env production
    Reads {
        #[command(flatten)]
        target: Target,
    },
}

/// How `pull` prints the values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PullFormat {
    /// `NAME="value"` lines, for a `.env` file.
    Dotenv,
    /// One JSON object.
    Json,
    /// `export NAME='value'` lines, for `eval` in a shell.
    Shell,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(flatten)]
    target: Target,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PullFormat::Dotenv)]
    format: PullFormat,
    /// A past version [default: the latest].
    #[arg(long)]
    version: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// The command and its arguments, after `--`; it runs with the secrets in its environment
    /// and its exit code is this command's.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// `/v1/secrets/ORG/PROJECT/ENV`, resolved from the flags or the machine's own.
async fn path(api: &Api, target: &Target) -> CliResult<String> {
    let org = api.org().await?;
    let (project, environment) = match (&target.project, &target.environment) {
        (Some(project), Some(environment)) => (project.clone(), environment.clone()),
        (project, environment) => {
            if !matches!(Credentials::from_environment()?, Credentials::MachineKey(_)) {
                return Err(CliError::usage("pass --project and --env (a machine key defaults to its own)"));
            }
            let me = api.get("/v1/whoami").await?;
            let own = |field: &str| me[field].as_str().map(str::to_owned);
            match (project.clone().or_else(|| own("projectId")), environment.clone().or_else(|| own("environment"))) {
                (Some(project), Some(environment)) => (project, environment),
                _ => return Err(CliError::usage("pass --project and --env")),
            }
        }
    };
    Ok(format!("/v1/secrets/{org}/{project}/{environment}"))
}

fn pairs(pairs: &[String]) -> CliResult<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=').map(|(name, value)| (name.to_owned(), value.to_owned())).ok_or_else(|| {
                CliError::usage(format!("`{}` is not NAME=VALUE", pair.split('=').next().unwrap_or(pair)))
            })
        })
        .collect()
}

fn read_dotenv(file: &PathBuf) -> CliResult<BTreeMap<String, String>> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|error| CliError::usage(format!("reading standard input: {error}")))?
    } else {
        std::fs::read_to_string(file)
            .map_err(|error| CliError::usage(format!("reading {}: {error}", file.display())))?
    };
    let mut set = BTreeMap::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        let (name, value) = item.map_err(|error| CliError::usage(format!("{}: {error}", file.display())))?;
        set.insert(name, value);
    }
    Ok(set)
}

pub async fn run(global: &Global, args: SecretsArgs) -> CliResult<()> {
    let api = Api::connect(global).await?;
    match args.command {
        SecretsCommand::Set { pairs: given, target, message } => {
            let path = path(&api, &target).await?;
            let changed = api.patch(&path, json!({ "set": pairs(&given)?, "message": message })).await?;
            output::say(global, &format!("✓ Secrets at version {}", changed["version"]));
            output::object(global, &changed);
        }
        SecretsCommand::Unset { names, target, message } => {
            let path = path(&api, &target).await?;
            let changed = api.patch(&path, json!({ "unset": names, "message": message })).await?;
            output::say(global, &format!("✓ Secrets at version {}", changed["version"]));
            output::object(global, &changed);
        }
        SecretsCommand::Push { file, target, replace, message } => {
            let set = read_dotenv(&file)?;
            let path = path(&api, &target).await?;
            let changed = if replace {
                api.put(&path, json!({ "secrets": set, "message": message })).await?
            } else {
                api.patch(&path, json!({ "set": set, "message": message })).await?
            };
            output::say(global, &format!("✓ {} secrets pushed: version {}", set.len(), changed["version"]));
            output::object(global, &changed);
        }
        SecretsCommand::List { target } => {
            let path = path(&api, &target).await?;
            let versions = api.get(&format!("{path}/versions")).await?;
            let latest = versions["items"].as_array().and_then(|items| items.first()).cloned();
            let names = latest.as_ref().map_or(Value::Array(Vec::new()), |latest| latest["names"].clone());
            let items: Vec<Value> =
                names.as_array().into_iter().flatten().map(|name| json!({ "name": name })).collect();
            let version = latest.as_ref().map_or(json!(0), |latest| latest["version"].clone());
            output::list(global, &json!({ "items": items, "version": version }), &["name"]);
        }
        SecretsCommand::History { target } => {
            let path = path(&api, &target).await?;
            let versions = api.get(&format!("{path}/versions")).await?;
            output::list(global, &versions, &["version", "at", "author", "changed", "removed", "message"]);
        }
        SecretsCommand::Reads { target } => {
            let path = path(&api, &target).await?;
            let reads = api.get(&format!("{path}/reads")).await?;
            output::list(global, &reads, &["at", "kind", "credentialId", "version", "ip", "userAgent"]);
        }
    }
    Ok(())
}

/// The values of a version, fetched (and so recorded as read).
async fn values(api: &Api, target: &Target, version: Option<u64>) -> CliResult<BTreeMap<String, String>> {
    let path = path(api, target).await?;
    let query = version.map(|version| format!("?version={version}")).unwrap_or_default();
    let read = api.get(&format!("{path}{query}")).await?;
    serde_json::from_value(read["secrets"].clone())
        .map_err(|error| CliError::server(format!("an unreadable answer: {error}")))
}

pub async fn pull(global: &Global, args: PullArgs) -> CliResult<()> {
    let api = Api::connect(global).await?;
    let values = values(&api, &args.target, args.version).await?;
    let text = match args.format {
        PullFormat::Json => format!("{}\n", serde_json::to_string_pretty(&values).unwrap_or_default()),
        PullFormat::Dotenv => values.iter().fold(String::new(), |mut text, (name, value)| {
            let _ = writeln!(text, "{name}={}", serde_json::to_string(value).unwrap_or_default());
            text
        }),
        PullFormat::Shell => values.iter().fold(String::new(), |mut text, (name, value)| {
            let _ = writeln!(text, "export {name}='{}'", value.replace('\'', r"'\''"));
            text
        }),
    };
    print!("{text}");
    Ok(())
}

/// Runs a command with the secrets in its environment; nothing is written to disk. Returns the
/// command's exit code.
pub async fn run_with(global: &Global, args: RunArgs) -> CliResult<i32> {
    let api = Api::connect(global).await?;
    let values = values(&api, &args.target, None).await?;
    let (program, arguments) = args.command.split_first().ok_or_else(|| CliError::usage("name a command after --"))?;
    // Nothing else runs on this thread while the command does.
    let status = std::process::Command::new(program)
        .args(arguments)
        .envs(&values)
        .status()
        .map_err(|error| CliError::usage(format!("cannot run `{program}`: {error}")))?;
    drop(values);
    // A command killed by a signal exits as a shell reports it: 128 + the signal.
    Ok(status.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)))
}

/// `credledger auth print-access-token`: a short-lived access token for other services.
pub async fn print_access_token(global: &Global) -> CliResult<()> {
    if !matches!(Credentials::from_environment()?, Credentials::Client { .. } | Credentials::MachineKey(_)) {
        return Err(CliError::usage(
            "print-access-token needs a machine mode that obtains access tokens: CREDLEDGER_CLIENT_ID and \
             CREDLEDGER_CLIENT_SECRET, or CREDLEDGER_MACHINE_KEY (a machine token is itself the bearer)",
        ));
    }
    let api = Api::connect(global).await?;
    println!("{}", api.bearer());
    Ok(())
}

//! `credledger project …`: projects and their environments.

use clap::{Args, Subcommand};
use serde_json::json;

use crate::client::{Api, CliError, CliResult, Global, output};

#[derive(Debug, Args)]
pub struct ProjectArgs {
    #[command(subcommand)]
    command: ProjectCommand,
}

/// Columns of `project list`.
const COLUMNS: &[&str] = &["id", "name", "environments", "createdAt"];

#[derive(Debug, Subcommand)]
enum ProjectCommand {
    /// List the organization's projects with their environments.
    ///
    /// Example: credledger project list
    List,
    /// Create a project (names are lowercase slugs).
    ///
    /// Example: credledger project create payments --env production --env staging
    Create {
        /// The project's name (a lowercase slug).
        name: String,
        /// An environment of the project; repeatable.
        #[arg(long = "env")]
        environments: Vec<String>,
    },
    /// Add an environment to a project.
    ///
    /// Example: credledger project add-env payments qa
    AddEnv {
        /// The project's id or name.
        project: String,
        /// The new environment (a lowercase slug).
        name: String,
    },
}

pub async fn run(global: &Global, args: ProjectArgs) -> CliResult<()> {
    let api = Api::connect(global).await?;
    let org = api.org().await?;
    let base = format!("/v1/projects/{org}");
    match args.command {
        ProjectCommand::List => output::list(global, &api.get(&base).await?, COLUMNS),
        ProjectCommand::Create { name, environments } => {
            let project = api.post(&base, Some(json!({ "name": name, "environments": environments }))).await?;
            output::say(global, "✓ Project created");
            output::object(global, &project);
        }
        ProjectCommand::AddEnv { project, name } => {
            let id = project_id(&api, &base, &project).await?;
            let project = api.post(&format!("{base}/{id}/environments"), Some(json!({ "name": name }))).await?;
            output::say(global, &format!("✓ Environment {name} added"));
            output::object(global, &project);
        }
    }
    Ok(())
}

/// A project id as given, or the id of the project with that name.
async fn project_id(api: &Api, base: &str, project: &str) -> CliResult<String> {
    if uuid::Uuid::parse_str(project).is_ok() {
        return Ok(project.to_owned());
    }
    let projects = api.get(base).await?;
    projects["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|item| item["name"].as_str() == Some(project))
        .and_then(|item| item["id"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| CliError::usage(format!("no project named `{project}` (credledger project list)")))
}

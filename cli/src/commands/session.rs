//! `credledger login`, `logout` and `whoami`: a human's saved credential, and who the CLI acts as.

use std::io::IsTerminal as _;

use clap::Args;

use crate::client::credentials::SavedLogin;
use crate::client::{Api, CliError, CliResult, Global, credentials, output};

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The personal access token (`cl_pat_…`); read from standard input when absent.
    #[arg(long, env = "CREDLEDGER_LOGIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Stores a PAT, the server's URL and the organization in the user's configuration directory
/// (0600) after checking the token works. On a terminal the token is read without echo.
///
/// Example: credledger login --url https://ledger.example.com < my-pat.txt
pub async fn login(global: &Global, args: LoginArgs) -> CliResult<()> {
    let token = if let Some(token) = args.token {
        token
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Personal access token (input hidden): ")
            .map_err(|e| CliError::usage(format!("reading the token: {e}")))?
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| CliError::usage(format!("reading the token: {e}")))?;
        line
    };
    let token = token.trim().to_owned();
    if !token.starts_with("cl_pat_") {
        return Err(CliError::usage("credledger login takes a personal access token (cl_pat_…)"));
    }
    let api = Api::with_token(global, &token)?;
    let me = api.get("/v1/whoami").await?;
    let login = SavedLogin { token, url: Some(api.base().to_owned()), org_id: me["orgId"].as_str().map(str::to_owned) };
    let path = credentials::save_login(&login)?;
    output::say(
        global,
        &format!(
            "✓ Logged in as member {} ({}); later commands use {}",
            me["memberId"].as_str().unwrap_or("-"),
            path.display(),
            api.base()
        ),
    );
    Ok(())
}

/// Removes the saved login. Example: credledger logout
pub fn logout(global: &Global) -> CliResult<()> {
    if credentials::remove_login()? {
        output::say(global, "✓ Logged out");
    } else {
        output::say(global, "Not logged in");
    }
    Ok(())
}

/// Shows the credential in use. Example: credledger whoami -o json
pub async fn whoami(global: &Global) -> CliResult<()> {
    let api = Api::connect(global).await?;
    output::object(global, &api.get("/v1/whoami").await?);
    Ok(())
}

//! `credledger dashboard`: a one-time link that signs the saved login (or `CREDLEDGER_TOKEN`, a
//! personal access token) in to the web dashboard. The link works once, within a minute; on a
//! desktop (a `DISPLAY` or `WAYLAND_DISPLAY` is set) it is also opened in the browser.

use crate::client::{Api, CliError, CliResult, Global, output};

/// Prints a one-time sign-in link. Example: credledger dashboard
pub async fn run(global: &Global) -> CliResult<()> {
    let api = Api::connect(global).await?;
    let link = api.post("/v1/dashboard/sign-in-links", None).await?;
    let url = link["url"].as_str().ok_or_else(|| CliError::server("the server answered without a link"))?;
    if output::format(global) == crate::client::Format::Json {
        output::object(global, &link);
    } else {
        output::secret_line(global, &format!("Sign-in link (works once, for 60 seconds): {url}"));
    }
    let desktop = std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if desktop {
        // Best effort: without a browser the printed link is enough.
        let _ = std::process::Command::new("xdg-open")
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    Ok(())
}
